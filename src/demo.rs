//! `demo` and `synth`: the whole job on a synthetic leak set.

use std::path::Path;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::lookup::{Lookup, Opened, Query};
use crate::synth::{self, SynthSpec, SynthSummary};

/// Writes a synthetic set into `out` (created; must be new or empty).
pub fn synth(
    out: &Path,
    count: u64,
    image_size: u64,
    seed: u64,
    progress: bool,
) -> Result<SynthSummary> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, "cannot read", e))?
            .next()
            .is_some()
    {
        return Err(Error::refused(format!("{}: not empty", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, "cannot create", e))?;
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(count);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} records [{elapsed_precise}]",
            )
            .expect("template"),
        );
        b
    });
    let spec = SynthSpec {
        count,
        image_size,
        seed,
    };
    let s = synth::generate(out, &spec, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    })
    .map_err(|e| Error::io(out, "cannot write synthetic set", e))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(s)
}

fn step(json: bool, t: Instant, what: impl std::fmt::Display) {
    if !json {
        println!("[{:>7.2} s] {what}", t.elapsed().as_secs_f64());
    }
}

/// Runs the demo: synthesize, keygen, pack, status, lookup, export, verify.
pub fn run(records: u64, image_size: u64, keep: Option<&Path>, json: bool) -> Result<()> {
    let t = Instant::now();
    let tmp;
    let base = match keep {
        Some(p) => {
            std::fs::create_dir_all(p).map_err(|e| Error::io(p, "cannot create", e))?;
            p.to_path_buf()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("kakuri-demo-")
                .tempdir()
                .map_err(|e| Error::io_ctx("cannot create a temporary directory", e))?;
            tmp.path().to_path_buf()
        }
    };
    let input = base.join("leak");
    let keys = base.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| Error::io(&keys, "cannot create", e))?;
    step(json, t, format!("working in {}", base.display()));

    let s = synth(&input, records, image_size, 2021, false)?;
    step(
        json,
        t,
        format!(
            "synthetic leak set: {} records, {} members, {} image bytes {:?}",
            s.records, s.members, s.bytes, s.doc_types
        ),
    );

    let alice = crate::keys::generate_age_identity(&keys.join("custodian-alice.key"))?;
    let bob = crate::keys::generate_age_identity(&keys.join("custodian-bob.key"))?;
    let signer =
        crate::keys::generate_signing_key(&keys.join("operator_ed25519"), "demo-operator")?;
    let recipients = keys.join("recipients.txt");
    crate::vault::write_atomic(
        &recipients,
        format!("# custodians of the demo vault\n{alice} alice (legal)\n{bob} bob (security)\n")
            .as_bytes(),
        0o644,
    )?;
    step(
        json,
        t,
        format!(
            "keys: two custodians (age), operator signing key {}",
            signer
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(40)
                .collect::<String>()
        ),
    );

    let vault = base.join("vault");
    let retain = (time::OffsetDateTime::now_utc().date() + time::Duration::days(90)).to_string();
    let mut o = crate::pack::PackOptions::new(
        input.clone(),
        recipients,
        keys.join("operator_ed25519"),
        retain,
        vault.clone(),
    );
    o.shard_bytes = 64 << 20;
    let p = crate::pack::pack(&o)?;
    step(
        json,
        t,
        format!(
            "pack: {} records into {} shards, {:.1} MB/s, root {}",
            p.records,
            p.shards,
            p.image_bytes as f64 / 1e6 / p.seconds,
            &p.root[..16]
        ),
    );

    let st = crate::status::status(&vault, None)?;
    step(
        json,
        t,
        format!(
            "status: signature OK, {} records, retain until {} ({} days left)",
            st.records, st.retain_until, st.days_left
        ),
    );

    let opened = Opened::open(&vault, &[keys.join("custodian-bob.key")], None)?;
    let mut lk = Lookup::new(&opened)?;
    let spec = SynthSpec {
        count: records,
        image_size,
        seed: 2021,
    };
    let i = (9..records).step_by(10).next().unwrap_or(0);
    let r = synth::record(&spec, i);
    let t0 = Instant::now();
    let by_member = lk.find(&Query::MemberId(r.member_id.clone()))?;
    step(
        json,
        t,
        format!(
            "lookup by member id: {} record(s) verified in {:.2} ms (a member with two documents)",
            by_member.len(),
            t0.elapsed().as_secs_f64() * 1e3
        ),
    );
    let by_doc = lk.find(&Query::DocumentNumber(r.document_number.clone()))?;
    step(
        json,
        t,
        format!("lookup by document number: {} record(s)", by_doc.len()),
    );
    let by_image = lk.find(&Query::from_image_file(&input.join(&r.image_path))?)?;
    step(
        json,
        t,
        format!(
            "lookup by image content (a file found elsewhere): {} record(s)",
            by_image.len()
        ),
    );
    let none = lk.find(&Query::MemberId("M-NOT-IN-THE-LEAK".into()))?;
    step(
        json,
        t,
        format!(
            "lookup of a member who was not in the leak: {} record(s)",
            none.len()
        ),
    );
    if by_member.is_empty() || by_doc.len() != 1 || by_image.len() != 1 || !none.is_empty() {
        return Err(Error::internal(
            "demo lookups did not return what the synthetic set holds",
        ));
    }

    let ev = base.join("evidence");
    let e = crate::export::export(&mut lk, &r.record_id, &ev, "DEMO-1", |_| Ok(()))?
        .ok_or_else(|| Error::internal("demo export found nothing"))?;
    let rc = crate::receipt::verify_dir(&ev, None)?;
    step(
        json,
        t,
        format!(
            "export: record {} with receipt; receipt verify: OK under root {}",
            e.ordinal,
            &rc.root[..16]
        ),
    );

    let dir = crate::vault::VaultDir::open(&vault)?;
    let loaded = crate::manifest::load(&dir, None)?;
    let kl = crate::verify::verify_keyless(&dir, &loaded, 2);
    step(
        json,
        t,
        format!(
            "verify (no key): {} files, {}",
            kl.files.len(),
            if kl.ok { "OK" } else { "FAILED" }
        ),
    );
    let d = crate::verify::verify_deep(&opened, 2)?;
    let deep_ok = d.bad_records.is_empty() && d.problems.is_empty() && d.root_ok && d.index_ok;
    step(
        json,
        t,
        format!(
            "verify --deep: {} records re-hashed, root and index {}",
            d.records_checked,
            if deep_ok { "OK" } else { "FAILED" }
        ),
    );
    if !kl.ok || !deep_ok {
        return Err(Error::integrity("demo vault failed verification"));
    }

    // Bit rot: 100 KiB of a shard zeroed on disk. Keyless verify locates
    // the damaged blocks; parity rebuilds them without any key.
    let shard = loaded.manifest.shards[0].file.clone();
    let sp = vault.join(&shard);
    let mut bytes = std::fs::read(&sp).map_err(|e| Error::io(&sp, "cannot read", e))?;
    let at = bytes.len() / 3;
    let len = (100 * 1024).min(bytes.len() / 3);
    bytes[at..at + len].fill(0);
    let _ = std::fs::set_permissions(&sp, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    std::fs::write(&sp, &bytes).map_err(|e| Error::io(&sp, "cannot write", e))?;
    let _ = std::fs::set_permissions(&sp, std::os::unix::fs::PermissionsExt::from_mode(0o444));
    let kl = crate::verify::verify_keyless(&dir, &loaded, 2);
    let damage = kl
        .files
        .iter()
        .find(|f| f.path == shard)
        .and_then(|f| f.damage.clone())
        .ok_or_else(|| Error::internal("demo: the damage was not found"))?;
    step(
        json,
        t,
        format!(
            "bit rot: 100 KiB of {shard} zeroed; verify (no key) finds block(s) {} damaged, {}",
            crate::repair::ranges_text(&damage.blocks),
            if damage.repairable {
                "repairable from parity"
            } else {
                "NOT repairable"
            }
        ),
    );
    let rr = crate::repair::repair_vault(&vault, &loaded.manifest, std::slice::from_ref(&shard));
    let kl = crate::verify::verify_keyless(&dir, &loaded, 2);
    step(
        json,
        t,
        format!(
            "verify --repair: {} file(s) rebuilt from parity, no key needed; verify (no key): {}",
            rr.repaired.len(),
            if kl.ok { "OK" } else { "FAILED" }
        ),
    );
    if !kl.ok || !rr.failed.is_empty() {
        return Err(Error::integrity("demo vault failed to repair"));
    }

    // A batch check: a list of document numbers, most of them leaked.
    let list = base.join("police-list.csv");
    let mut csv = String::from("licence_no\n");
    for i in (0..records)
        .step_by((records / 100).max(1) as usize)
        .take(90)
    {
        csv.push_str(&format!("{}\n", synth::record(&spec, i).document_number));
    }
    for j in 0..10 {
        csv.push_str(&format!("99999999{j:04}\n"));
    }
    crate::vault::write_atomic(&list, csv.as_bytes(), 0o600)?;
    let src = crate::batch::Source::Table {
        path: list,
        column: "licence_no".into(),
        field: crate::record::Field::DocumentNumber,
    };
    let ms = crate::batch::run(&opened, &src, 2, crate::batch::Depth::Content, |_| Ok(()))?;
    step(
        json,
        t,
        format!(
            "match: {} document numbers, {} in the vault (each verified), {} not",
            ms.queries, ms.queries_matched, ms.queries_not_found
        ),
    );

    // Every read is recorded; the log verifies.
    let op = crate::keys::load_signing_key(&keys.join("operator_ed25519"))?;
    for (action, result) in [
        (
            "lookup",
            serde_json::json!({"queries": 4, "found": by_member.len() + by_doc.len() + by_image.len()}),
        ),
        (
            "repair",
            serde_json::json!({"repaired": rr.repaired, "failed": rr.failed}),
        ),
        (
            "match",
            serde_json::json!({"queries": ms.queries, "queries_matched": ms.queries_matched}),
        ),
    ] {
        crate::audit::append(
            &vault,
            &p.vault_id,
            &op,
            crate::audit::Event {
                action,
                operator: "demo",
                case: Some("DEMO-1"),
                reason: Some("demonstration"),
                result,
                queries: Vec::new(),
            },
        )?;
    }
    let ac = crate::audit::verify(&vault, &p.vault_id, &[])?;
    step(
        json,
        t,
        format!(
            "audit log: {} signed, hash-chained entries, {}",
            ac.entries,
            if ac.ok { "OK" } else { "FAILED" }
        ),
    );

    // The end of the set's life: destroy with a certificate.
    drop(lk);
    drop(opened);
    let out = crate::destroy::destroy(&crate::destroy::DestroyOptions {
        vault: vault.clone(),
        confirm: p.vault_id.clone(),
        sign_key: keys.join("operator_ed25519"),
        operator: "demo".into(),
        early: true,
        reason: Some("demonstration finished".into()),
        legal_basis: None,
        co_sign: None,
        co_signer: None,
        dry_run: false,
    })?;
    let cert = base.join("vault").join(crate::destroy::CERT);
    let cc = crate::certificate::verify(&cert, None, None)?;
    if let crate::destroy::Outcome::Destroyed { certificate, .. } = out {
        step(json, t, format!(
            "destroy: key erased first, {} files overwritten and unlinked; certificate {} verifies ({})",
            certificate.files_destroyed.len() + certificate.key_material_erased.len(),
            &cc.certificate_id[..8],
            crate::destroy::CERT
        ));
    }
    if !ac.ok {
        return Err(Error::integrity("demo audit log failed verification"));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "records": p.records, "vault_id": p.vault_id, "root": p.root, "pack_seconds": p.seconds})
        );
    } else if keep.is_some() {
        println!("kept everything in {}", base.display());
    } else {
        println!("done; the temporary directory is removed");
    }
    Ok(())
}
