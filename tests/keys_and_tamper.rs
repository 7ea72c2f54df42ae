//! Keys and tampering: only custodians open a vault, unsafe key files are
//! refused, and every kind of damage to a vault is detected and named.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use serde_json::{json, Value};

const RECORDS: u64 = 600;
const PER_SHARD: u64 = 200;

/// 600 records of ~1 KiB in three shards of several age chunks each.
fn vault() -> Fixture {
    let f = Fixture::synth(RECORDS, 1024, 5);
    let s = f.pack(&["--shard-records", &PER_SHARD.to_string()]);
    assert_eq!(s["shards"], 3);
    f
}

fn lookup_rid(f: &Fixture, identity: &Path, rid: &str) -> std::process::Output {
    kakuri()
        .arg("lookup")
        .arg(&f.vault)
        .args(f.access(identity))
        .arg("--record-id")
        .arg(rid)
        .output()
        .unwrap()
}

fn shard_file(n: u32) -> String {
    format!("shards/{n:06}.tar.zst.age")
}

/// Keyless verify's per-file verdicts: path -> problem (None when OK).
fn file_verdicts(v: &Value) -> Vec<(String, Option<String>)> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["problem"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Asserts that keyless verify fails, naming exactly `bad` as FAILED.
fn assert_only_file_fails(f: &Fixture, bad: &str, problem: &str) {
    let o = run_code(&mut f.verify_cmd(), 4);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{bad}: FAILED ({problem}")),
        "{}",
        show(&o)
    );
    assert_eq!(out.matches("FAILED (").count(), 1, "{}", show(&o));
    assert!(out.contains("vault FAILED verification"), "{}", show(&o));
    let v = json_of(&run_code(f.verify_cmd().arg("--json"), 4));
    assert_eq!(v["ok"], false);
    for (path, p) in file_verdicts(&v) {
        assert_eq!(p.is_some(), path == bad, "{path}: {p:?}");
    }
}

#[test]
fn wrong_identity_is_refused_with_a_clear_message() {
    let f = vault();
    let stranger = f.root.join("stranger.age");
    keygen_identity(&stranger);
    let o = lookup_rid(&f, &stranger, &f.record(1).record_id);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(stderr(&o).contains("custodian"), "{}", show(&o));
    assert!(o.stdout.is_empty(), "{}", show(&o));

    let out = f.root.join("ex");
    let o = kakuri()
        .arg("export")
        .arg(&f.vault)
        .args(f.access(&stranger))
        .arg("--record-id")
        .arg(f.record(1).record_id)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(!out.exists());

    let o = kakuri()
        .arg("verify")
        .arg(&f.vault)
        .arg("--deep")
        .arg("-i")
        .arg(&stranger)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));

    // The operator's signing key is no custodian either.
    let o = lookup_rid(&f, &f.keys.sign_key, &f.record(1).record_id);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));

    // A stranger's identity next to the custodian's is fine.
    let o = kakuri()
        .arg("lookup")
        .arg(&f.vault)
        .args(f.access(&stranger))
        .arg("-i")
        .arg(&f.keys.identity)
        .arg("--record-id")
        .arg(f.record(1).record_id)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn identity_file_readable_by_others_is_refused() {
    let f = vault();
    for mode in [0o644, 0o640, 0o604] {
        chmod(&f.keys.identity, mode);
        let o = lookup_rid(&f, &f.keys.identity, &f.record(1).record_id);
        assert_eq!(o.status.code(), Some(5), "mode {mode:o}: {}", show(&o));
        assert!(stderr(&o).contains("too open"), "{}", show(&o));
        assert!(o.stdout.is_empty(), "{}", show(&o));
    }
    chmod(&f.keys.identity, 0o400);
    let o = lookup_rid(&f, &f.keys.identity, &f.record(1).record_id);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn identity_file_that_is_not_a_key_is_refused() {
    let f = vault();
    let junk = f.root.join("junk.age");
    fs::write(&junk, "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
    chmod(&junk, 0o600);
    let o = lookup_rid(&f, &junk, &f.record(1).record_id);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
}

#[test]
fn ssh_ed25519_custodian_can_open_the_vault() {
    if !have_tool("ssh-keygen") {
        return;
    }
    let f = Fixture::synth(50, 512, 3);
    let key = f.keys.dir.join("custodian_ed25519");
    let o = ext(
        "ssh-keygen",
        &[
            "-q".as_ref(),
            "-t".as_ref(),
            "ed25519".as_ref(),
            "-N".as_ref(),
            "".as_ref(),
            "-C".as_ref(),
            "bob@example".as_ref(),
            "-f".as_ref(),
            key.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let pubkey = fs::read_to_string(key.with_file_name("custodian_ed25519.pub")).unwrap();
    let mut parts = pubkey.split_whitespace();
    let (kt, kb) = (parts.next().unwrap(), parts.next().unwrap());
    let recips = fs::read_to_string(&f.keys.recipients).unwrap();
    fs::write(&f.keys.recipients, format!("{recips}{kt} {kb} bob\n")).unwrap();
    f.pack(&[]);

    let st = json_of(&run_ok(kakuri().arg("--json").arg("status").arg(&f.vault)));
    assert_eq!(st["custodians"], serde_json::json!(["alice", "bob"]));

    // Bob alone opens it.
    let rid = f.record(7).record_id;
    let o = lookup_rid(&f, &key, &rid);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains(&rid), "{}", show(&o));
    let out = f.root.join("ex");
    run_ok(
        kakuri()
            .arg("export")
            .arg(&f.vault)
            .args(f.access(&key))
            .arg("--record-id")
            .arg(&rid)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(
        fs::read(exported_image(&out)).unwrap(),
        fs::read(f.input.join(f.record(7).image_path)).unwrap()
    );
    run_ok(
        kakuri()
            .arg("verify")
            .arg(&f.vault)
            .arg("--deep")
            .arg("-i")
            .arg(&key),
    );

    // Another SSH key is not a custodian.
    let other = f.keys.dir.join("other_ed25519");
    let o = ext(
        "ssh-keygen",
        &[
            "-q".as_ref(),
            "-t".as_ref(),
            "ed25519".as_ref(),
            "-N".as_ref(),
            "".as_ref(),
            "-f".as_ref(),
            other.as_os_str(),
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = lookup_rid(&f, &other, &rid);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    // An SSH custodian key readable by others is refused.
    chmod(&key, 0o644);
    let o = lookup_rid(&f, &key, &rid);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(stderr(&o).contains("too open"), "{}", show(&o));
}

#[test]
fn flipped_shard_byte_fails_keyless_verify_naming_the_shard() {
    let f = vault();
    run_ok(&mut f.verify_cmd());
    let p = f.vault.join(shard_file(1));
    let len = fs::metadata(&p).unwrap().len() as usize;
    flip_byte(&p, len / 2);
    assert_only_file_fails(&f, &shard_file(1), "BLAKE3 differs");
}

/// Ordinals of the records whose zstd frames overlap plaintext chunk
/// `chunk` of their shard, from the intact vault's record table.
fn records_in_chunk(f: &Fixture, ordinals: std::ops::Range<u64>, chunk: u64) -> BTreeSet<u64> {
    let o = kakuri::lookup::Opened::open(&f.vault, std::slice::from_ref(&f.keys.identity), None)
        .expect("vault opens with the custodian identity");
    let mut lk = kakuri::lookup::Lookup::new(&o).unwrap();
    let (lo, hi) = (chunk * AGE_CHUNK, (chunk + 1) * AGE_CHUNK);
    ordinals
        .filter(|&ord| {
            let l = lk.location(ord).unwrap();
            l.frame_offset < hi && l.frame_offset + l.frame_len as u64 > lo
        })
        .collect()
}

/// A middle age chunk of shard 1 (not the first, not the last).
fn middle_chunk_of_shard_1(f: &Fixture) -> u64 {
    let bytes = fs::read(f.vault.join(shard_file(1))).unwrap();
    let start = age_payload_start(&bytes);
    let chunks = ((bytes.len() - start) as u64).div_ceil(AGE_CHUNK_CT);
    assert!(chunks >= 3, "shard 1 has only {chunks} age chunks");
    chunks / 2
}

/// Flips a byte in the middle of age chunk `c` of shard 1.
fn damage_chunk_of_shard_1(f: &Fixture, c: u64) {
    let p = f.vault.join(shard_file(1));
    let start = age_payload_start(&fs::read(&p).unwrap());
    flip_byte(&p, start + (c * AGE_CHUNK_CT + AGE_CHUNK_CT / 2) as usize);
}

fn deep_bad_records(v: &Value) -> Vec<(u64, String)> {
    v["deep"]["bad_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["ordinal"].as_u64().unwrap(),
                b["shard"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn flipped_shard_byte_deep_verify_names_bad_records_and_other_records_still_serve() {
    let f = vault();
    let shard1 = PER_SHARD..2 * PER_SHARD;
    // Which records the damaged chunk holds, read before the damage.
    let c = middle_chunk_of_shard_1(&f);
    let hit = records_in_chunk(&f, shard1.clone(), c);
    assert!(!hit.is_empty());
    damage_chunk_of_shard_1(&f, c);
    let first_hit = *hit.iter().next().unwrap();

    // Keyless verify names the shard.
    assert_only_file_fails(&f, &shard_file(1), "BLAKE3 differs");

    // Deep verify names the shard and the damaged records.
    let v = json_of(&run_code(f.deep_verify_cmd().arg("--json"), 4));
    assert_eq!(v["ok"], false);
    let bad = deep_bad_records(&v);
    assert!(!bad.is_empty(), "{v}");
    let bad_set: BTreeSet<u64> = bad.iter().map(|(o, _)| *o).collect();
    for (ord, shard) in &bad {
        assert_eq!(shard, &shard_file(1), "record {ord}");
        assert!(shard1.contains(ord), "record {ord} is not in shard 1");
    }
    assert!(
        hit.is_subset(&bad_set),
        "records {hit:?} of the damaged chunk {c} are not all reported: {bad_set:?}"
    );
    assert!(
        bad_set.iter().all(|&o| o >= first_hit),
        "records before the damaged chunk reported: {bad_set:?}"
    );
    assert_eq!(
        v["deep"]["records_checked"].as_u64().unwrap(),
        RECORDS - bad.len() as u64
    );
    let o = run_code(&mut f.deep_verify_cmd(), 4);
    let out = stdout(&o);
    // One line per damaged run of records.
    let last_hit = *hit.iter().next_back().unwrap();
    let line = if first_hit == last_hit {
        format!("record {first_hit} in {}: FAILED", shard_file(1))
    } else {
        format!(
            "records {first_hit}-{last_hit} in {}: FAILED",
            shard_file(1)
        )
    };
    assert!(out.contains(&line), "{line}\n{}", show(&o));

    // Records of other shards, and of the damaged shard's other chunks,
    // are still served, verified.
    let last_of_shard_1 = 2 * PER_SHARD - 1;
    assert!(!hit.contains(&last_of_shard_1) && !hit.contains(&PER_SHARD));
    for ord in [
        0,
        1,
        PER_SHARD - 1,
        PER_SHARD,
        last_of_shard_1,
        2 * PER_SHARD,
        RECORDS - 1,
    ] {
        let rid = f.record(ord).record_id;
        let v = f.lookup_json(&["--record-id", &rid], 0);
        assert_eq!(matched_ids(&v, 0), vec![rid]);
    }
    // A record of the damaged chunk is refused, naming the shard.
    let entries = || {
        let log = json_of(&run_ok(kakuri().arg("audit").arg(&f.vault).arg("--json")));
        log.as_array().unwrap().clone()
    };
    let before = entries().len();
    let o = lookup_rid(&f, &f.keys.identity, &f.record(first_hit).record_id);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(stderr(&o).contains(&shard_file(1)), "{}", show(&o));
    assert!(stdout(&o).is_empty(), "{}", show(&o));
    // The attempt is on record: the entry is written while the record is
    // read, with the one record the blind index named.
    let log = entries();
    assert_eq!(log.len(), before + 1);
    let last = log.last().unwrap();
    assert_eq!(last["action"], "lookup", "{last}");
    assert_eq!(last["result"]["found_per_query"], json!([1]), "{last}");
    let out = f.root.join("ex");
    let o = f
        .export_cmd(&f.record(first_hit).record_id, &out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(!out.join("image.jpg").exists());
}

#[test]
fn deep_verify_flags_only_the_records_of_the_damaged_chunk() {
    let f = vault();
    let shard1 = PER_SHARD..2 * PER_SHARD;
    let c = middle_chunk_of_shard_1(&f);
    let hit = records_in_chunk(&f, shard1, c);
    damage_chunk_of_shard_1(&f, c);
    let v = json_of(&run_code(f.deep_verify_cmd().arg("--json"), 4));
    let bad_set: BTreeSet<u64> = deep_bad_records(&v).iter().map(|(o, _)| *o).collect();
    assert_eq!(bad_set, hit, "one bad chunk must cost only its records");
}

#[test]
fn flipped_byte_in_any_encrypted_file_fails_verify_naming_it() {
    let base = vault();
    let wrap = base.vault_key_wrap();
    for file in [
        "index/keys.age",
        "index/records.age",
        "index/tree.age",
        "index/ids.age",
        wrap.as_str(),
        "shards/000000.tar.zst.age",
    ] {
        let f = Fixture::empty();
        copy_dir(&base.vault, &f.vault);
        let p = f.vault.join(file);
        let len = fs::metadata(&p).unwrap().len() as usize;
        flip_byte(&p, len / 2);
        assert_only_file_fails(&f, file, "BLAKE3 differs");
        // Deep verification fails too and names the file somewhere.
        let o = kakuri()
            .arg("verify")
            .arg(&f.vault)
            .arg("--deep")
            .arg("-i")
            .arg(&base.keys.identity)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4), "{file}: {}", show(&o));
        assert!(
            stdout(&o).contains(file) || stderr(&o).contains(file),
            "{file}: {}",
            show(&o)
        );
    }
    // The original is untouched by all this.
    run_ok(&mut base.verify_cmd());
}

#[test]
fn truncated_or_extended_shard_fails_verify() {
    let f = vault();
    let p = f.vault.join(shard_file(2));
    let orig = fs::read(&p).unwrap();
    chmod(&p, 0o600);
    fs::write(&p, &orig[..orig.len() - 1]).unwrap();
    assert_only_file_fails(&f, &shard_file(2), "size");
    let mut longer = orig.clone();
    longer.extend_from_slice(b"\0");
    fs::write(&p, &longer).unwrap();
    assert_only_file_fails(&f, &shard_file(2), "size");
    fs::write(&p, &orig).unwrap();
    run_ok(&mut f.verify_cmd());
}

#[test]
fn edited_manifest_fails_the_signature_check_everywhere() {
    let f = vault();
    let mp = f.vault.join("manifest.json");
    let orig = fs::read_to_string(&mp).unwrap();
    let m: Value = serde_json::from_str(&orig).unwrap();
    // One character of the vault id, and one day of the retention date.
    let id = m["vault_id"].as_str().unwrap();
    let flipped_first = if id.starts_with('a') { "b" } else { "a" };
    let edits = [
        orig.replacen(id, &format!("{flipped_first}{}", &id[1..]), 1),
        orig.replacen(
            "\"retain_until\": \"2099-12-31\"",
            "\"retain_until\": \"2099-12-30\"",
            1,
        ),
    ];
    for edited in edits {
        assert_ne!(edited, orig);
        assert_eq!(edited.len(), orig.len());
        chmod(&mp, 0o600);
        fs::write(&mp, &edited).unwrap();
        for mut cmd in [
            {
                let mut c = kakuri();
                c.arg("status").arg(&f.vault);
                c
            },
            f.verify_cmd(),
            f.lookup_cmd(&["--record-id", &f.record(0).record_id]),
        ] {
            let o = run_code(&mut cmd, 4);
            assert!(stderr(&o).contains("signature"), "{}", show(&o));
            assert!(!stdout(&o).contains("OK"), "{}", show(&o));
        }
    }
    fs::write(&mp, &orig).unwrap();
    run_ok(kakuri().arg("status").arg(&f.vault));
}

#[test]
fn manifest_resigned_by_another_key_is_caught_by_signer_pinning() {
    let f = vault();
    // Another operator's vault: a self-consistent manifest and signature.
    let g = Fixture::packed(3, 256, 9, &[]);
    for name in ["manifest.json", "manifest.json.sig", "allowed_signers"] {
        let to = f.vault.join(name);
        chmod(&to, 0o600);
        fs::copy(g.vault.join(name), &to).unwrap();
    }
    // Without pinning, the signature is valid but the files do not match.
    run_ok(kakuri().arg("status").arg(&f.vault));
    run_code(&mut f.verify_cmd(), 4);
    // Pinned to the real operator's key, everything refuses it.
    let pin = |c: &mut assert_cmd::Command| {
        c.arg("--signer").arg(&f.keys.sign_pub);
    };
    let mut st = kakuri();
    st.arg("status").arg(&f.vault);
    pin(&mut st);
    let o = run_code(&mut st, 4);
    assert!(stderr(&o).contains("trusted signer"), "{}", show(&o));
    let mut v = f.verify_cmd();
    pin(&mut v);
    run_code(&mut v, 4);
    // Pinned to the other operator's key it is accepted (the pin is the check).
    run_ok(
        kakuri()
            .arg("status")
            .arg(&f.vault)
            .arg("--signer")
            .arg(&g.keys.sign_pub),
    );
    // The genuine vault passes with the pin.
    run_ok(
        kakuri()
            .arg("status")
            .arg(&g.vault)
            .arg("--signer")
            .arg(g.vault.join("allowed_signers")),
    );
}

#[test]
fn deleted_shard_is_reported_missing() {
    let f = vault();
    fs::remove_file(f.vault.join(shard_file(1))).unwrap();
    assert_only_file_fails(&f, &shard_file(1), "missing");
    // Records of the other shards still serve.
    let rid = f.record(RECORDS - 1).record_id;
    f.lookup_json(&["--record-id", &rid], 0);
}

#[test]
fn stray_file_in_the_vault_is_reported_unexpected() {
    let f = vault();
    fs::write(f.vault.join("shards/000003.tar.zst.age"), b"stray").unwrap();
    let o = run_code(&mut f.verify_cmd(), 4);
    assert!(
        stdout(&o).contains("shards/000003.tar.zst.age: FAILED (not listed"),
        "{}",
        show(&o)
    );
    let v = json_of(&run_code(f.verify_cmd().arg("--json"), 4));
    assert_eq!(
        v["unexpected_files"],
        serde_json::json!(["shards/000003.tar.zst.age"])
    );
    assert!(file_verdicts(&v).iter().all(|(_, p)| p.is_none()));
    fs::remove_file(f.vault.join("shards/000003.tar.zst.age")).unwrap();
    fs::write(f.vault.join("index/.hidden"), b"x").unwrap();
    let v = json_of(&run_code(f.verify_cmd().arg("--json"), 4));
    assert_eq!(v["unexpected_files"], serde_json::json!(["index/.hidden"]));
}

#[test]
fn vault_without_manifest_is_reported_incomplete() {
    let f = vault();
    fs::remove_file(f.vault.join("manifest.json")).unwrap();
    let mut st = kakuri();
    st.arg("status").arg(&f.vault);
    for mut cmd in [
        st,
        f.verify_cmd(),
        f.lookup_cmd(&["--record-id", &f.record(0).record_id]),
    ] {
        let o = run_code(&mut cmd, 6);
        assert!(stderr(&o).contains("incomplete"), "{}", show(&o));
    }
    // A directory that never was a vault is "not a vault", also exit 6.
    let o = run_code(kakuri().arg("status").arg(&f.input), 6);
    assert!(stderr(&o).contains("not a vault"), "{}", show(&o));
    let o = run_code(kakuri().arg("status").arg(f.root.join("nowhere")), 6);
    assert!(stderr(&o).contains("not a vault"), "{}", show(&o));
}

/// Regression: keygen used to write the key, then fail with exit 7
/// ("cannot sync directory : No such file or directory") for a bare file
/// name, leaving a key without its .pub and a refusal on retry.
#[test]
fn keygen_accepts_bare_relative_file_names() {
    let d = scratch_dir();
    let o = kakuri()
        .current_dir(d.path())
        .arg("keygen")
        .arg("--identity")
        .arg("id.age")
        .arg("--signing-key")
        .arg("op")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(d.path().join("id.age").is_file());
    assert!(d.path().join("op").is_file());
    assert!(d.path().join("op.pub").is_file());
}

#[test]
fn keygen_writes_private_files_0600_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch_dir();
    let id = d.path().join("id.age");
    let sk = d.path().join("op");
    keygen_identity(&id);
    keygen_signing(&sk);
    for p in [&id, &sk] {
        let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let before = fs::read(&id).unwrap();
    let o = run_code(kakuri().arg("keygen").arg("--identity").arg(&id), 8);
    assert!(stderr(&o).starts_with("kakuri: error:"), "{}", show(&o));
    assert_eq!(fs::read(&id).unwrap(), before);
    run_code(kakuri().arg("keygen").arg("--signing-key").arg(&sk), 8);
    run_code(kakuri().arg("keygen"), 2);
}

#[test]
fn stray_file_under_audit_is_reported() {
    let f = vault();
    fs::write(f.vault.join("audit/planted.bin"), b"not part of the vault").unwrap();
    let v = f.verify_cmd().output().unwrap();
    let a = kakuri()
        .arg("audit")
        .arg("verify")
        .arg(&f.vault)
        .output()
        .unwrap();
    assert!(
        v.status.code() == Some(4) || a.status.code() == Some(4),
        "verify:\n{}\naudit verify:\n{}",
        show(&v),
        show(&a)
    );
}

#[test]
fn vault_missing_its_manifest_signature_fails_as_damage() {
    let f = vault();
    fs::remove_file(f.vault.join("manifest.json.sig")).unwrap();
    let mut st = kakuri();
    st.arg("status").arg(&f.vault);
    for mut cmd in [st, f.verify_cmd()] {
        let o = run_code(&mut cmd, 4);
        assert!(stderr(&o).contains("manifest.json.sig"), "{}", show(&o));
    }
}

#[test]
fn deleting_the_whole_audit_log_is_detected() {
    let f = Fixture::packed(20, 200, 41, &[]);
    run_ok(kakuri().arg("audit").arg("verify").arg(&f.vault));
    fs::remove_file(f.vault.join("audit/log.jsonl")).unwrap();
    fs::remove_file(f.vault.join("audit/head.json")).unwrap();
    fs::remove_file(f.vault.join("audit/head.json.sig")).unwrap();
    let o = run_code(kakuri().arg("audit").arg("verify").arg(&f.vault), 4);
    assert!(stdout(&o).contains("empty or missing"), "{}", show(&o));
}
