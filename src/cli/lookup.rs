//! `lookup`: find records by member id, document number, record id or
//! image, and print their metadata verified against the signed root.

use std::path::PathBuf;

use kakuri::error::{Error, ExitCode, Result};
use kakuri::lookup::{Lookup, Query};

use super::{print_json, record, warn_retention, Access};

/// One query as given on the command line.
pub enum QueryArg {
    MemberId(String),
    DocumentNumber(String),
    RecordId(String),
    /// An image file, matched by its content hash.
    Image(PathBuf),
}

/// A lookup as parsed from the command line: queries in command-line
/// order (they are numbered that way).
pub struct Request {
    pub vault: PathBuf,
    pub access: Access,
    pub queries: Vec<QueryArg>,
}

/// Runs one lookup; `operator` is the `--operator` given, if any.
pub fn run(a: Request, json: bool, operator: Option<String>) -> Result<ExitCode> {
    // A lookup runs a dozen short threads, and glibc gives each thread
    // that allocates an arena of its own (a new mapping, faulted in page
    // by page): one shared arena costs them nothing.
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // The operator's name, for the audit entry: --operator or $USER at
    // once; else /etc/passwd, which may have to come from disk, looked up
    // on a thread while the lookup runs.
    let operator = operator
        .or_else(kakuri::audit::operator_from_env)
        .ok_or_else(|| std::thread::spawn(kakuri::audit::default_operator));
    let qs = a
        .queries
        .into_iter()
        .map(|q| {
            Ok(match q {
                QueryArg::MemberId(v) => Query::MemberId(v),
                QueryArg::DocumentNumber(v) => Query::DocumentNumber(v),
                QueryArg::RecordId(v) => Query::RecordId(v),
                QueryArg::Image(p) => Query::from_image_file(&p)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if qs.is_empty() {
        return Err(Error::usage(
            "lookup needs at least one of --member-id, --document-number, --record-id, --image",
        ));
    }
    let (o, pre) = a.access.open_for_lookup(&a.vault)?;
    warn_retention(o.loaded.manifest.days_left().unwrap_or(0));
    let mut lk = Lookup::prefetched(&o, pre)?;
    let read = lk.find_recorded(&qs, |counts| {
        let operator = operator.unwrap_or_else(|passwd| {
            passwd
                .join()
                .unwrap_or_else(|_| kakuri::audit::default_operator())
        });
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
