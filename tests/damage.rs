//! A gallery of damaged vaults, each with the exact verdict it must get:
//! keyless verify names the file and the damaged 64 KiB blocks and says
//! whether parity can rebuild them; deep verify names the records; and
//! `verify --repair` (no custodian key) rebuilds what parity covers,
//! byte-exact, records it in the audit log, and leaves anything it cannot
//! repair exactly as it was.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

const BLOCK: usize = 64 * 1024;
const RECORDS: u64 = 600;
const PER_SHARD: u64 = 200;

/// 600 records of ~4 KiB in 3 shards of ~1.1 MB (about 17 blocks each).
fn vault(extra: &[&str]) -> Fixture {
    let mut args = vec!["--shard-records", "200"];
    args.extend_from_slice(extra);
    Fixture::packed(RECORDS, 4096, 91, &args)
}

fn shard(n: u32) -> String {
    format!("shards/{n:06}.tar.zst.age")
}

fn keyless(f: &Fixture, code: i32) -> Value {
    json_of(&run_code(f.verify_cmd().arg("--json"), code))
}

fn deep(f: &Fixture, code: i32) -> Value {
    json_of(&run_code(f.deep_verify_cmd().arg("--json"), code))
}

fn repair_cmd(f: &Fixture) -> assert_cmd::Command {
    let mut c = f.verify_cmd();
    c.arg("--repair").arg("--sign-key").arg(&f.keys.sign_key);
    c
}

/// The verdict of one file in `verify --json`.
fn check<'a>(v: &'a Value, path: &str) -> &'a Value {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in the report: {v}"))
}

/// The paths that failed the keyless check.
fn failed(v: &Value) -> Vec<String> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect()
}

fn blocks(c: &Value) -> Vec<(u64, u64)> {
    c["damage"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

fn bad_ordinals(v: &Value) -> BTreeSet<u64> {
    v["deep"]["bad_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ordinal"].as_u64().unwrap())
        .collect()
}

/// Rewrites a (read-only) vault file with `edit` applied.
fn edit(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut b = fs::read(path).unwrap();
    edit(&mut b);
    chmod(path, 0o600);
    fs::write(path, &b).unwrap();
    chmod(path, 0o444);
}

fn audit_entries(f: &Fixture) -> Vec<Value> {
    let o = run_ok(kakuri().arg("audit").arg(&f.vault).arg("--json"));
    json_of(&o)
        .as_array()
        .expect("audit --json is an array")
        .clone()
}

/// Repairs, then checks the vault is whole again: the files are their
/// original bytes, keyless and deep verify pass, the audit log records
/// the repair and still verifies.
fn repair_and_check_whole(f: &Fixture, originals: &[(&str, Vec<u8>)]) -> Value {
    let o = run_ok(repair_cmd(f).arg("--json"));
    let v = json_of(&o);
    assert_eq!(v["ok"], true, "{v}");
    for (rel, bytes) in originals {
        assert!(
            fs::read(f.vault.join(rel)).unwrap() == *bytes,
            "{rel} is not byte-exact after repair"
        );
    }
    assert!(files_under(&f.vault).iter().all(|p| !p.ends_with(".tmp")));
    keyless(f, 0);
    let d = deep(f, 0);
    assert_eq!(d["deep"]["records_checked"], RECORDS);
    let log = audit_entries(f);
    let e = log
        .iter()
        .rev()
        .find(|e| e["action"] == "repair")
        .expect("a repair entry");
    assert!(e["result"]["failed"].as_array().unwrap().is_empty(), "{e}");
    run_ok(kakuri().arg("audit").arg("verify").arg(&f.vault));
    v
}

#[test]
fn a_flipped_byte_in_a_shard_is_located_to_its_block_and_repaired_without_a_key() {
    let f = vault(&[]);
    let p = f.vault.join(shard(1));
    let orig = fs::read(&p).unwrap();
    edit(&p, |b| b[5 * BLOCK + 77] ^= 0x40);
    let v = keyless(&f, 4);
    assert_eq!(failed(&v), vec![shard(1)]);
    let c = check(&v, &shard(1));
    assert_eq!(blocks(c), vec![(5, 5)]);
    assert_eq!(c["damage"]["repairable"], true);
    // The human report says the same in one line.
    let o = run_code(&mut f.verify_cmd(), 4);
    assert!(
        stdout(&o).contains(&format!(
            "{}: FAILED (BLAKE3 differs from the manifest; 1 damaged block(s) of 64 KiB: 5; repairable from parity",
            shard(1)
        )),
        "{}",
        show(&o)
    );
    let r = repair_and_check_whole(&f, &[(&shard(1), orig)]);
    assert_eq!(r["repair"]["repaired"][0]["path"], shard(1));
    assert_eq!(
        r["repair"]["repaired"][0]["blocks"],
        serde_json::json!([[5, 5]])
    );
    let o = run_ok(
        f.verify_cmd()
            .arg("--repair")
            .arg("--sign-key")
            .arg(&f.keys.sign_key),
    );
    assert!(stdout(&o).contains("vault OK"), "{}", show(&o));
}

#[test]
fn a_zero_filled_range_over_three_blocks_is_repaired() {
    let f = vault(&[]);
    let p = f.vault.join(shard(0));
    let orig = fs::read(&p).unwrap();
    // 150 KiB of zeros from the middle of block 2 to the middle of block 4.
    edit(&p, |b| {
        b[2 * BLOCK + 1000..2 * BLOCK + 1000 + 150 * 1024].fill(0)
    });
    let v = keyless(&f, 4);
    assert_eq!(blocks(check(&v, &shard(0))), vec![(2, 4)]);
    // Deep verify names the records of those blocks, and only those.
    let d = deep(&f, 4);
    let bad = bad_ordinals(&d);
    assert!(
        !bad.is_empty() && bad.iter().all(|o| *o < PER_SHARD),
        "{bad:?}"
    );
    assert!(bad.len() < PER_SHARD as usize / 2, "{bad:?}");
    repair_and_check_whole(&f, &[(&shard(0), orig)]);
}

#[test]
fn a_truncated_shard_is_rebuilt_and_junk_appended_to_one_is_cut_off() {
    let f = vault(&[]);
    let p = f.vault.join(shard(2));
    let orig = fs::read(&p).unwrap();
    let len = orig.len();
    edit(&p, |b| b.truncate(len - 100 * 1024));
    let v = keyless(&f, 4);
    let c = check(&v, &shard(2));
    assert!(c["problem"].as_str().unwrap().contains("size"), "{c}");
    let last = (len as u64 - 1) / BLOCK as u64;
    let first = (len as u64 - 100 * 1024) / BLOCK as u64;
    assert_eq!(blocks(c), vec![(first, last)]);
    repair_and_check_whole(&f, &[(&shard(2), orig.clone())]);

    edit(&p, |b| b.extend_from_slice(b"appended junk"));
    let v = keyless(&f, 4);
    let c = check(&v, &shard(2));
    assert!(blocks(c).is_empty());
    assert_eq!(c["damage"]["extra_bytes"], 13);
    let r = repair_and_check_whole(&f, &[(&shard(2), orig)]);
    assert_eq!(r["repair"]["repaired"][0]["extra_bytes_removed"], 13);
}

#[test]
fn a_deleted_small_index_file_is_rebuilt_entirely_from_parity() {
    let f = vault(&[]);
    let p = f.vault.join("index/records.age");
    let orig = fs::read(&p).unwrap();
    assert!(
        orig.len() <= 4 * BLOCK,
        "records.age has {} bytes",
        orig.len()
    );
    fs::remove_file(&p).unwrap();
    let v = keyless(&f, 4);
    let c = check(&v, "index/records.age");
    assert_eq!(c["problem"], "missing");
    assert_eq!(c["damage"]["repairable"], true);
    // Without it no record can be read; lookups say which file is missing.
    let o = run_code(
        &mut f.lookup_cmd(&["--record-id", &f.record(3).record_id]),
        4,
    );
    assert!(stderr(&o).contains("index/records.age"), "{}", show(&o));
    repair_and_check_whole(&f, &[("index/records.age", orig)]);
}

#[test]
fn index_damage_names_exactly_the_records_it_costs_and_is_repaired() {
    let f = vault(&[]);
    // The record table: a 64 KiB chunk holds 1,024 slots of 64 bytes after
    // a one-page header, so damage in its payload's second chunk costs
    // records 0..1024 (all 600 here).
    let p = f.vault.join("index/records.age");
    let orig_records = fs::read(&p).unwrap();
    let start = age_payload_start(&orig_records);
    edit(&p, |b| b[start + (64 * 1024 + 16) + 500] ^= 1);
    let d = deep(&f, 4);
    assert_eq!(bad_ordinals(&d), (0..RECORDS).collect::<BTreeSet<u64>>());
    repair_and_check_whole(&f, &[("index/records.age", orig_records)]);

    // The Merkle tree: damage in its first tile costs the proofs of the
    // records under it.
    let p = f.vault.join("index/tree.age");
    let orig_tree = fs::read(&p).unwrap();
    let start = age_payload_start(&orig_tree);
    edit(&p, |b| b[start + (64 * 1024 + 16) + 40] ^= 1);
    let d = deep(&f, 4);
    assert_eq!(d["deep"]["root_ok"], false);
    assert_eq!(bad_ordinals(&d), (0..RECORDS).collect::<BTreeSet<u64>>());
    assert!(d["deep"]["bad_records"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("Merkle proof"));
    repair_and_check_whole(&f, &[("index/tree.age", orig_tree)]);
}

#[test]
fn a_damaged_blind_index_page_names_the_records_it_hides_from_lookups() {
    let f = vault(&[]);
    let p = f.vault.join("index/keys.age");
    let orig = fs::read(&p).unwrap();
    let start = age_payload_start(&orig);
    // Entry page 0 is the file's second 64 KiB of plaintext (after the header page).
    edit(&p, |b| b[start + (64 * 1024 + 16) + 9] ^= 1);
    let d = deep(&f, 4);
    assert_eq!(d["deep"]["index_ok"], false);
    let bad = bad_ordinals(&d);
    // 600 records have 2,400 entries: all on page 0, so every record loses
    // at least one of its lookups.
    assert_eq!(bad.len() as u64, RECORDS);
    // Lookups that need that page fail, naming the file.
    let o = run_code(
        &mut f.lookup_cmd(&["--record-id", &f.record(5).record_id]),
        4,
    );
    assert!(stderr(&o).contains("index/keys.age"), "{}", show(&o));
    repair_and_check_whole(&f, &[("index/keys.age", orig)]);
    f.lookup_json(&["--record-id", &f.record(5).record_id], 0);
}

#[test]
fn swapped_shards_are_named_as_holding_each_others_content() {
    let f = vault(&[]);
    let (a, b) = (f.vault.join(shard(0)), f.vault.join(shard(1)));
    let tmp = f.vault.join("swap");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    let v = keyless(&f, 4);
    assert_eq!(failed(&v), vec![shard(0), shard(1)]);
    let p0 = check(&v, &shard(0))["problem"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        p0.contains(&format!("holds the content of {}", shard(1))),
        "{p0}"
    );
    assert_eq!(check(&v, &shard(0))["damage"]["repairable"], false);
    // Deep verify: every record of both shards, and no other.
    let d = deep(&f, 4);
    assert_eq!(
        bad_ordinals(&d),
        (0..2 * PER_SHARD).collect::<BTreeSet<u64>>()
    );
    // Parity does not pretend: nothing is changed.
    let before = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let o = run_code(&mut repair_cmd(&f), 4);
    assert!(stdout(&o).contains("NOT REPAIRED"), "{}", show(&o));
    assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), before);
    // Swapped back by hand, the vault is whole.
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    keyless(&f, 0);
}

#[test]
fn damage_beyond_the_parity_budget_is_refused_and_the_file_left_as_it_was() {
    // 2 recovery blocks per 8: five damaged blocks in one group are too many.
    let f = vault(&["--parity", "2/8"]);
    let p = f.vault.join(shard(1));
    edit(&p, |b| {
        for blk in [8, 9, 10] {
            b[blk * BLOCK + 3] ^= 1;
        }
        b[BLOCK] ^= 1; // group 0: one block, repairable
    });
    let damaged = fs::read(&p).unwrap();
    let v = keyless(&f, 4);
    let c = check(&v, &shard(1));
    assert_eq!(blocks(c), vec![(1, 1), (8, 10)]);
    assert_eq!(c["damage"]["repairable"], false);
    assert!(
        c["damage"]["summary"]
            .as_str()
            .unwrap()
            .contains("group(s) 1"),
        "{c}"
    );
    let o = run_code(repair_cmd(&f).arg("--json"), 4);
    let r = json_of(&o);
    assert_eq!(r["repair"]["failed"][0][0], shard(1));
    assert!(r["repair"]["failed"][0][1]
        .as_str()
        .unwrap()
        .contains("group 1 has 3 damaged"));
    assert_eq!(
        fs::read(&p).unwrap(),
        damaged,
        "a failed repair changed the file"
    );
    assert!(files_under(&f.vault).iter().all(|p| !p.ends_with(".tmp")));
    let log = audit_entries(&f);
    let e = log.iter().rev().find(|e| e["action"] == "repair").unwrap();
    assert_eq!(e["result"]["failed"][0][0], shard(1));
}

#[test]
fn a_damaged_parity_file_is_rebuilt_from_its_shard() {
    let f = vault(&[]);
    let rel = format!("parity/{}.par", shard(0));
    let p = f.vault.join(&rel);
    let orig = fs::read(&p).unwrap();
    edit(&p, |b| b[100] ^= 1);
    let v = keyless(&f, 4);
    assert_eq!(failed(&v), vec![rel.clone()]);
    assert_eq!(check(&v, &rel)["damage"]["repairable"], true);
    let r = repair_and_check_whole(&f, &[(&rel, orig.clone())]);
    assert_eq!(r["repair"]["repaired"][0]["parity_rebuilt"], true);
    // And a deleted one too.
    fs::remove_file(&p).unwrap();
    repair_and_check_whole(&f, &[(&rel, orig)]);
}

#[test]
fn a_repair_killed_before_its_rename_leaves_the_file_as_it_was_and_reruns() {
    let f = vault(&[]);
    let p = f.vault.join(shard(1));
    let orig = fs::read(&p).unwrap();
    edit(&p, |b| b[3 * BLOCK] ^= 1);
    let damaged = fs::read(&p).unwrap();
    let o = repair_cmd(&f)
        .env("KAKURI_FAULT", "repair-staged:1")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(fs::read(&p).unwrap(), damaged);
    // The staged copy is reported, not taken for the shard.
    let v = keyless(&f, 4);
    assert_eq!(failed(&v), vec![shard(1)]);
    let stray = format!("shards/.{}.tmp", &shard(1)["shards/".len()..]);
    assert_eq!(v["unexpected_files"], serde_json::json!([stray]), "{v}");
    // A stray temporary file beside an intact file, and one that is not
    // kakuri's: the first is removed, the second left for a person.
    fs::write(f.vault.join("index/.keys.age.tmp"), b"half-written").unwrap();
    fs::write(f.vault.join("index/notes.txt"), b"?").unwrap();
    let o = run_code(&mut repair_cmd(&f), 4);
    assert!(
        stdout(&o).contains("index/.keys.age.tmp: REMOVED"),
        "{}",
        show(&o)
    );
    assert!(f.vault.join("index/notes.txt").exists());
    fs::remove_file(f.vault.join("index/notes.txt")).unwrap();
    assert!(fs::read(&p).unwrap() == orig);
    repair_and_check_whole(&f, &[(&shard(1), orig)]);
}

#[test]
fn a_damaged_custody_wrap_has_no_parity_and_says_to_restore_a_copy() {
    let f = vault(&[]);
    let rel = f.vault_key_wrap();
    edit(&f.vault.join(&rel), |b| {
        let n = b.len();
        b[n - 5] ^= 1
    });
    let v = keyless(&f, 4);
    assert_eq!(failed(&v), vec![rel.clone()]);
    assert!(check(&v, &rel)["damage"].is_null());
    let o = run_code(&mut repair_cmd(&f), 4);
    assert!(
        stdout(&o).contains(&format!(
            "{rel}: NOT REPAIRED (no parity covers this file; restore it from a copy of the vault)"
        )),
        "{}",
        show(&o)
    );
}

#[test]
fn a_vault_without_parity_is_found_damaged_but_not_repaired() {
    let f = vault(&["--parity", "none"]);
    let st = json_of(&run_ok(kakuri().arg("--json").arg("status").arg(&f.vault)));
    assert_eq!(st["parity"], "none");
    assert!(files_under(&f.vault)
        .iter()
        .all(|p| !p.starts_with("parity")));
    edit(&f.vault.join(shard(0)), |b| b[10] ^= 1);
    let v = keyless(&f, 4);
    assert!(check(&v, &shard(0))["damage"].is_null());
    let o = run_code(&mut repair_cmd(&f), 4);
    assert!(
        stdout(&o).contains("this vault has no parity"),
        "{}",
        show(&o)
    );
}

#[test]
fn repair_needs_a_sign_key_to_record_itself() {
    let f = vault(&[]);
    let o = run_code(f.verify_cmd().arg("--repair"), 2);
    assert!(stderr(&o).contains("--sign-key"), "{}", show(&o));
}

#[test]
fn export_recovers_every_record_of_a_damaged_shard_outside_its_damaged_chunk() {
    // 60 records of ~4 KiB per shard: 4 or 5 age chunks per shard.
    let f = Fixture::packed(
        120,
        4096,
        93,
        &["--shard-records", "60", "--parity", "none"],
    );
    let p = f.vault.join(shard(1));
    let bytes = fs::read(&p).unwrap();
    let start = age_payload_start(&bytes);
    // Damage the middle of age chunk 1 (plaintext bytes 65536 … 131071).
    edit(&p, |b| b[start + (64 * 1024 + 16) + 30_000] ^= 1);
    let d = deep(&f, 4);
    let lost = bad_ordinals(&d);
    assert!(!lost.is_empty() && lost.len() < 30, "{lost:?}");
    for ord in 60..120 {
        let rid = f.record(ord).record_id;
        let out = f.root.join(format!("ex-{ord}"));
        let o = f.export_cmd(&rid, &out).output().unwrap();
        if lost.contains(&ord) {
            assert_eq!(o.status.code(), Some(4), "record {ord}: {}", show(&o));
            assert!(stderr(&o).contains(&shard(1)), "{}", show(&o));
            assert!(
                stderr(&o).contains("`kakuri verify VAULT --repair`"),
                "{}",
                show(&o)
            );
            assert_eq!(stderr(&o).lines().count(), 1, "{}", show(&o));
            assert!(!out.exists() || fs::read_dir(&out).unwrap().next().is_none());
        } else {
            assert_eq!(o.status.code(), Some(0), "record {ord}: {}", show(&o));
            run_ok(&mut receipt_verify_cmd(&out));
        }
    }
}
