//! Scale features through the binary: the spilled (external) index sort,
//! rolling `verify --subset`, and batch `match`.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;

#[test]
fn an_index_sorted_through_many_spilled_runs_equals_the_in_memory_one() {
    // Same input, same keys would differ per vault; compare behaviour: every
    // lookup kind works and deep verify rebuilds the same index digest.
    let f = Fixture::synth(400, 200, 31);
    f.pack(&["--sort-run-entries", "7", "--shard-records", "50"]);
    run_ok(f.deep_verify_cmd().arg("--sign-key").arg(&f.keys.sign_key));
    for i in [0u64, 9, 199, 399] {
        let r = f.record(i);
        let v = f.lookup_json(
            &[
                "--record-id",
                &r.record_id,
                "--member-id",
                &r.member_id,
                "--document-number",
                &r.document_number,
            ],
            0,
        );
        assert_eq!(matched_ids(&v, 0), vec![r.record_id.clone()]);
        assert!(matched_ids(&v, 1).contains(&r.record_id));
        assert_eq!(matched_ids(&v, 2), vec![r.record_id.clone()]);
    }
    // No sort run is left behind in the vault.
    let leftovers: Vec<String> = files_under(&f.vault)
        .into_iter()
        .filter(|p| p.contains(".sort-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn subset_runs_together_cover_every_shard_once_and_are_audited() {
    let f = Fixture::packed(300, 200, 32, &["--shard-records", "40"]);
    let shards: BTreeSet<String> = f.shards().into_iter().map(|s| s.0).collect();
    assert!(shards.len() >= 7);
    let mut covered = Vec::new();
    let mut records = 0;
    for i in 0..3 {
        let o = run_ok(
            f.deep_verify_cmd()
                .arg("--subset")
                .arg(format!("{i}/3"))
                .arg("--sign-key")
                .arg(&f.keys.sign_key)
                .arg("--json"),
        );
        let v = json_of(&o);
        assert_eq!(v["deep"]["subset"], format!("{i}/3"));
        records += v["deep"]["records_checked"].as_u64().unwrap();
        covered.extend(
            v["deep"]["shards_checked"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(records, 300);
    assert_eq!(covered.len(), shards.len(), "each shard exactly once");
    assert_eq!(covered.into_iter().collect::<BTreeSet<_>>(), shards);
    let audit = json_of(&run_ok(kakuri().arg("audit").arg(&f.vault).arg("--json")));
    let subsets: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "verify")
        .map(|e| e["result"]["subset"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(subsets, vec!["0/3", "1/3", "2/3"]);
    run_code(f.deep_verify_cmd().arg("--subset").arg("3/3"), 2);
}

#[test]
fn a_damaged_shard_fails_only_the_subset_that_covers_it() {
    let f = Fixture::packed(200, 200, 33, &["--shard-records", "50"]);
    let (file, _, _) = f.shards()[1].clone();
    let p = f.vault.join(&file);
    let len = fs::metadata(&p).unwrap().len() as usize;
    flip_byte(&p, len / 2);
    let part = |i: u32| {
        let o = f
            .deep_verify_cmd()
            .arg("--subset")
            .arg(format!("{i}/2"))
            .arg("--json")
            .output()
            .unwrap();
        json_of(&o)
    };
    // Keyless file hashes fail either way; the deep part names records only in its shards.
    let even = part(0);
    assert!(
        even["deep"]["bad_records"].as_array().unwrap().is_empty(),
        "{even}"
    );
    let odd = part(1);
    let bad = odd["deep"]["bad_records"].as_array().unwrap();
    assert!(!bad.is_empty());
    assert!(bad.iter().all(|b| b["shard"] == file.as_str()), "{odd}");
}

#[test]
fn match_answers_a_csv_column_and_a_directory_of_found_files() {
    let f = Fixture::packed(120, 300, 34, &[]);
    let csv = f.root.join("list.csv");
    let mut text = String::from("licence_no,comment\n");
    let want: Vec<u64> = vec![3, 17, 64];
    for i in &want {
        text.push_str(&format!("{},seen\n", f.record(*i).document_number));
    }
    text.push_str("999999999999,not in the leak\n");
    fs::write(&csv, text).unwrap();
    let mut c = f.match_table_cmd(&csv, "licence_no");
    let o = run_ok(&mut c);
    let hits: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<String> = hits
        .iter()
        .map(|h| h["record_id"].as_str().unwrap().to_string())
        .collect();
    let expect: Vec<String> = want.iter().map(|i| f.record(*i).record_id).collect();
    assert_eq!(ids, expect);
    assert!(hits
        .iter()
        .all(|h| h["verified"] == true && h["record_hash"].as_str().unwrap().len() == 64));
    assert_eq!(
        hits.iter()
            .map(|h| h["query"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3, 4],
        "CSV line numbers"
    );
    assert!(stderr(&o).contains("4 queries: 3 matched"), "{}", show(&o));
    // Reading every hit's record from its shard gives the same answer.
    let mut c = f.match_table_cmd(&csv, "licence_no");
    c.arg("--verify-content");
    assert_eq!(run_ok(&mut c).stdout, o.stdout);

    // A dump of images found elsewhere, one of them not from the leak.
    let dump = f.root.join("dump");
    fs::create_dir(&dump).unwrap();
    for i in [5u64, 77] {
        let r = f.record(i);
        fs::copy(
            f.input.join(&r.image_path),
            dump.join(format!("found-{i}.jpg")),
        )
        .unwrap();
    }
    fs::write(
        dump.join("other.jpg"),
        b"\xff\xd8 not from the leak \xff\xd9",
    )
    .unwrap();
    let out = f.root.join("hits.csv");
    let mut c = f.match_cmd();
    c.arg("--dir")
        .arg(&dump)
        .arg("--csv")
        .arg("--out")
        .arg(&out);
    run_ok(&mut c);
    let text = fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "query,file,record_id,ordinal,shard,record_hash,verified"
    );
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[1].contains("found-5.jpg") && rows[1].contains(&f.record(5).record_id));
    assert!(rows[2].contains("found-77.jpg") && rows[2].contains(&f.record(77).record_id));
    // Nothing matched: exit 1, still audited.
    fs::write(&csv, "licence_no\n000\n").unwrap();
    let mut c = f.match_table_cmd(&csv, "licence_no");
    run_code(&mut c, 1);
    let audit = json_of(&run_ok(kakuri().arg("audit").arg(&f.vault).arg("--json")));
    let matches: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "match")
        .collect();
    assert_eq!(matches.len(), 4);
    assert_eq!(matches[0]["result"]["queries_matched"], 3);
    // The audit log holds no queried value.
    let log = fs::read_to_string(f.vault.join("audit/log.jsonl")).unwrap();
    assert!(!log.contains(&f.record(3).document_number));
    // A missing column is a clear input error.
    let mut c = f.match_table_cmd(&csv, "nope");
    let o = run_code(&mut c, 3);
    assert!(stderr(&o).contains("no column named"), "{}", show(&o));
}
