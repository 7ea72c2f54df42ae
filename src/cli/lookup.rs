//! `lookup`: find records by member id, document number, record id or
//! image, and print their metadata verified against the signed root.

use std::path::PathBuf;

use clap::Args;
use kakuri::error::{Error, ExitCode, Result};
use kakuri::lookup::{Lookup, Query};

use super::{print_json, record, warn_retention, Access};

#[derive(Args)]
pub struct LookupArgs {
    pub vault: PathBuf,
    #[command(flatten)]
    pub access: Access,
    /// Records of this member id (each query may be given several times).
    #[arg(long, value_name = "ID")]
    pub member_id: Vec<String>,
    /// Records with this document number (spaces, hyphens, full-width
    /// forms and case are folded).
    #[arg(long, value_name = "NUMBER")]
    pub document_number: Vec<String>,
    /// The record with this record id.
    #[arg(long, value_name = "ID")]
    pub record_id: Vec<String>,
    /// An image file found elsewhere: match by its content hash.
    #[arg(long, value_name = "FILE")]
    pub image: Vec<PathBuf>,
}

/// Runs one lookup; `matches` are the lookup's own argument matches (they
/// give the command-line order the queries are numbered in), `operator`
/// the `--operator` given, if any.
pub fn run(
    a: LookupArgs,
    matches: &clap::ArgMatches,
    json: bool,
    operator: Option<String>,
) -> Result<ExitCode> {
    // A lookup runs a dozen short threads, and glibc gives each thread
    // that allocates an arena of its own (a new mapping, faulted in page
    // by page): one shared arena costs them nothing.
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // The operator's name, for the audit entry: without --operator, $USER
    // or else /etc/passwd, which may have to come from disk; looked up
    // while the lookup runs.
    let operator =
        std::thread::spawn(move || operator.unwrap_or_else(kakuri::audit::default_operator));
    // Queries are numbered in command-line order.
    let at = |id: &str| -> Vec<usize> {
        matches
            .indices_of(id)
            .map(|i| i.collect())
            .unwrap_or_default()
    };
    let mut ordered: Vec<(usize, Query)> = Vec::new();
    ordered.extend(
        at("member_id")
            .into_iter()
            .zip(a.member_id)
            .map(|(i, v)| (i, Query::MemberId(v))),
    );
    ordered.extend(
        at("document_number")
            .into_iter()
            .zip(a.document_number)
            .map(|(i, v)| (i, Query::DocumentNumber(v))),
    );
    ordered.extend(
        at("record_id")
            .into_iter()
            .zip(a.record_id)
            .map(|(i, v)| (i, Query::RecordId(v))),
    );
    for (i, p) in at("image").into_iter().zip(&a.image) {
        ordered.push((i, Query::from_image_file(p)?));
    }
    ordered.sort_by_key(|(i, _)| *i);
    let qs: Vec<Query> = ordered.into_iter().map(|(_, q)| q).collect();
    if qs.is_empty() {
        return Err(Error::usage(
            "lookup needs at least one of --member-id, --document-number, --record-id, --image",
        ));
    }
    let (o, pre) = a.access.open_for_lookup(&a.vault)?;
    warn_retention(o.loaded.manifest.days_left().unwrap_or(0));
    let mut lk = Lookup::prefetched(&o, pre)?;
    let read = lk.find_recorded(&qs, |counts| {
        let operator = operator
            .join()
            .unwrap_or_else(|_| kakuri::audit::default_operator());
        let hashes = qs
            .iter()
            .map(|q| kakuri::audit::query_hash(&o.key, q.field(), &q.value()))
            .collect();
        record(
            &o.dir.root,
            &o.loaded.manifest.vault_id,
            &a.access.sign_key,
            &operator,
            "lookup",
            Some(&a.access.case),
            Some(&a.access.reason),
            serde_json::json!({
                "queries": qs.len(),
                "found_per_query": counts,
                "found": counts.iter().sum::<usize>(),
            }),
            hashes,
        )
        .map(|_| ())
    })?;
    let mut results = Vec::new();
    let mut found = 0usize;
    for (i, (q, recs)) in qs.iter().zip(read).enumerate() {
        found += recs.len();
        let reports = recs
            .iter()
            .map(|v| v.report())
            .collect::<Result<Vec<_>>>()?;
        results.push(
            serde_json::json!({"query": i + 1, "field": q.field().name(), "matches": reports}),
        );
    }
    let root = o.loaded.manifest.merkle.root.clone();
    if json {
        print_json(&serde_json::json!({
            "vault_id": o.loaded.manifest.vault_id,
            "root": root,
            "case": a.access.case,
            "found": found,
            "results": results,
            "io": {"bytes_read": kakuri::crypt::bytes_read()},
        }));
    } else {
        for r in &results {
            let m = r["matches"].as_array().map(Vec::len).unwrap_or(0);
            println!(
                "query {} ({}): {}",
                r["query"],
                r["field"].as_str().unwrap_or(""),
                if m == 0 {
                    "not found".to_string()
                } else {
                    format!("{m} record(s), each verified against the signed root")
                }
            );
            for rec in r["matches"].as_array().into_iter().flatten() {
                println!("  record_id    {}", rec["record_id"].as_str().unwrap_or(""));
                println!(
                    "  position     {} in {}",
                    rec["ordinal"],
                    rec["shard"].as_str().unwrap_or("")
                );
                println!(
                    "  record hash  {}",
                    rec["record_hash"].as_str().unwrap_or("")
                );
                println!(
                    "  image        {} bytes, BLAKE3 {}",
                    rec["image_size"],
                    rec["image_blake3"].as_str().unwrap_or("")
                );
                println!("  metadata     {}", rec["source"]);
            }
        }
        println!("merkle root {root}");
    }
    Ok(if found > 0 {
        ExitCode::Ok
    } else {
        ExitCode::NotFound
    })
}
