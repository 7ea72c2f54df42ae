//! A lookup reads a bounded number of age chunks, whatever the size of the
//! vault: it must never decrypt a whole index file or a whole shard.

mod common;

use common::*;

/// Upper bound on the bytes one `lookup --record-id` process may read from
/// vault files: 16 age chunks. Per encrypted file a lookup touches (keys,
/// records, tree, one shard), the age reader fills its buffer once for the
/// header, reads the first and the last chunk, then the pages it needs (one
/// per keys directory level and entry page, one records slot page, one tree
/// tile per level) and the chunk(s) of the record's frame.
const MAX_LOOKUP_BYTES: u64 = 16 * AGE_CHUNK_CT;

/// `bytes_read` of one `lookup --json --record-id RID` process, checking
/// that it found exactly that record.
fn lookup_bytes(f: &Fixture, rid: &str) -> u64 {
    let v = f.lookup_json(&["--record-id", rid], 0);
    assert_eq!(matched_ids(&v, 0), vec![rid.to_string()]);
    assert_eq!(v["results"][0]["matches"][0]["verified"], true);
    v["io"]["bytes_read"]
        .as_u64()
        .unwrap_or_else(|| panic!("no io.bytes_read in {v}"))
}

fn vault_bytes(f: &Fixture) -> u64 {
    files_under(&f.vault)
        .iter()
        .map(|p| std::fs::metadata(f.vault.join(p)).unwrap().len())
        .sum()
}

#[test]
fn lookup_reads_a_bounded_number_of_chunks_whatever_the_vault_size() {
    const BIG: u64 = 20_000;
    const SMALL: u64 = 1_000;
    let shard = ["--shard-records", "4096"];
    let big = Fixture::synth(BIG, 128, 21);
    let s = big.pack(&shard);
    assert_eq!(s["records"], BIG);
    assert_eq!(s["shards"], 5);
    let small = Fixture::synth(SMALL, 128, 21);
    small.pack(&shard);

    // First, middle and last records of shards, and a few in between.
    let big_ords = [0, 1, 2_729, 4_095, 4_096, 9_999, 12_345, 16_384, BIG - 1];
    let small_ords = [0, 1, 500, SMALL - 1];
    let mut big_max = 0;
    for ord in big_ords {
        let b = lookup_bytes(&big, &big.record(ord).record_id);
        assert!(
            b <= MAX_LOOKUP_BYTES,
            "lookup of record {ord} of {BIG} read {b} bytes (> {MAX_LOOKUP_BYTES}, {:.1} chunks)",
            b as f64 / AGE_CHUNK_CT as f64
        );
        big_max = big_max.max(b);
    }
    let mut small_max = 0;
    for ord in small_ords {
        let b = lookup_bytes(&small, &small.record(ord).record_id);
        assert!(b <= MAX_LOOKUP_BYTES, "record {ord} of {SMALL}: {b} bytes");
        small_max = small_max.max(b);
    }
    // Twenty times the records, (almost) the same reads.
    assert!(
        big_max <= small_max + 3 * AGE_CHUNK_CT,
        "lookups read {big_max} bytes in a {BIG}-record vault but {small_max} in a {SMALL}-record one"
    );
    // A lookup reads a small fraction of the vault.
    let total = vault_bytes(&big);
    assert!(
        total >= 10 * big_max,
        "vault of {total} bytes, a lookup read {big_max}"
    );
    // Not a vacuous count: a lookup does read its pages.
    assert!(small_max >= 4 * AGE_CHUNK_CT, "{small_max}");
}

#[test]
fn member_and_document_lookups_also_read_a_bounded_number_of_chunks() {
    let f = Fixture::synth(6_000, 1024, 22);
    f.pack(&["--shard-records", "1500"]);
    let total = vault_bytes(&f);
    // Member 8 has two documents (records 8 and 9).
    for args in [
        vec!["--member-id".to_string(), f.record(8).member_id],
        vec![
            "--document-number".to_string(),
            f.record(4_321).document_number,
        ],
        vec!["--member-id".to_string(), f.record(5_998).member_id],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = f.lookup_json(&a, 0);
        let b = v["io"]["bytes_read"].as_u64().unwrap();
        // A second match may cost its own frame chunks, and two equal
        // blind keys may straddle an index page boundary.
        assert!(
            b <= MAX_LOOKUP_BYTES + 3 * AGE_CHUNK_CT,
            "{args:?}: {b} bytes"
        );
        assert!(total >= 5 * b, "{args:?}: {b} of {total} bytes");
    }
}
