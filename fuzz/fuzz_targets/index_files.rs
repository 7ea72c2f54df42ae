//! The encrypted index as a lookup reads it: keys.age (blind index),
//! records.age (record slots), ids.age (record ids), tree.age (Merkle
//! tiles) and a shard, with the counts a manifest gives. A vault can be
//! forged by anyone who knows the custodians' public recipients (and
//! opened unless `--signer` pins the operator), so decrypted index pages
//! are hostile input too.
//!
//! The plaintexts are built from the fuzz input (a well-formed header
//! page unless the input supplies raw header bytes, then up to three
//! pages of fuzz bytes), encrypted to a vault key, and read back through
//! the same readers and calls lookup and match use.

#![no_main]

mod common;

use arbitrary::Arbitrary;
use kakuri::crypt::open_encrypted;
use kakuri::index::{
    Entry, IdsReader, KeysReader, RecordsReader, TreeReader, ENTRY_LEN, IDS_MAGIC, INDEX_VERSION,
    KEYS_MAGIC, KEY_LEN, PAGE, RECORDS_MAGIC, RECORD_SLOT, TREE_MAGIC,
};
use kakuri::{merkle, shard};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Count {
    Small(u16),
    Any(u64),
}

/// Counts as a manifest can give them: `Manifest::parse` refuses more
/// than `MAX_RECORDS` records (a count of 2^59 once overflowed `n * 32` in
/// `index::tree_level_offsets`, found by this target).
impl Count {
    fn get(&self) -> u64 {
        match self {
            Count::Small(n) => *n as u64,
            Count::Any(n) => *n % (kakuri::manifest::MAX_RECORDS + 1),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct File {
    raw_header: Option<[u8; 16]>,
    pages: u8,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Count,
    records: Count,
    keys: File,
    recs: File,
    ids: File,
    tree: File,
    shard: Vec<u8>,
    queries: Vec<[u8; KEY_LEN]>,
    ordinals: Vec<u64>,
    root: [u8; 32],
}

fn plaintext(f: &File, magic: &[u8; 8], param: u32) -> Vec<u8> {
    let pages = (f.pages % 4) as usize;
    let mut v = vec![0u8; PAGE * (1 + pages)];
    match f.raw_header {
        Some(h) => v[..16].copy_from_slice(&h),
        None => {
            v[0..8].copy_from_slice(magic);
            v[8..12].copy_from_slice(&INDEX_VERSION.to_le_bytes());
            v[12..16].copy_from_slice(&param.to_le_bytes());
        }
    }
    let n = f.body.len().min(PAGE * pages);
    v[PAGE..PAGE + n].copy_from_slice(&f.body[..n]);
    v
}

fuzz_target!(|input: Input| {
    let d = common::fresh_dir("index");
    let key = common::vault_key();
    let r = key.recipient();
    let files = [
        (
            "keys.age",
            plaintext(&input.keys, KEYS_MAGIC, ENTRY_LEN as u32),
        ),
        (
            "records.age",
            plaintext(&input.recs, RECORDS_MAGIC, RECORD_SLOT as u32),
        ),
        ("ids.age", plaintext(&input.ids, IDS_MAGIC, 1)),
        (
            "tree.age",
            plaintext(&input.tree, TREE_MAGIC, merkle::TILE as u32),
        ),
        ("shard.age", input.shard.clone()),
    ];
    for (name, plain) in &files {
        common::write_age(&d.join(name), &r, plain);
    }
    let open = |name: &str| open_encrypted(&d.join(name), name, key).expect("own age file");
    let (entries, records) = (input.entries.get(), input.records.get());

    let mut ordinals: Vec<u64> = input.ordinals.iter().take(4).copied().collect();
    if let Ok(mut keys) = KeysReader::open(open("keys.age"), entries) {
        // The fuzz queries, and the first keys stored in the first entry page.
        let stored = input
            .keys
            .body
            .chunks_exact(ENTRY_LEN)
            .take(4)
            .map(|c| Entry::decode(c).key);
        for q in input.queries.iter().take(4).copied().chain(stored) {
            if let Ok(found) = keys.find(&q) {
                ordinals.extend(found.into_iter().take(4));
            }
        }
        // Deep verify reads the entry pages one by one.
        for p in 0..keys.entry_pages().min(8) {
            if let Ok(page) = keys.entry_page(p) {
                assert!(page.len() <= kakuri::index::ENTRIES_PER_PAGE);
            }
        }
    }

    let mut recs = RecordsReader::open(open("records.age"), records).ok();
    let mut tree = TreeReader::open(open("tree.age"), records).ok();
    let mut ids = IdsReader::open(open("ids.age")).ok();
    let mut sh = open("shard.age");
    // The shard's size as stored, as the manifest gives it to readers.
    let shard_size = std::fs::metadata(d.join("shard.age")).unwrap().len();
    for &ord in ordinals.iter().take(12) {
        if let Some(t) = tree.as_mut() {
            if let Ok((leaf, proof)) = t.proof(ord) {
                let _ = merkle::verify_inclusion(ord, records, &leaf, &proof, &input.root);
            }
            let _ = t.verified_leaf(ord, &input.root);
        }
        let Some(loc) = recs.as_mut().and_then(|r| r.get(ord).ok()) else {
            continue;
        };
        if let Some(i) = ids.as_mut() {
            let _ = i.get(&loc);
        }
        if let Ok(rec) = shard::read_record(&mut sh, &loc, ord, shard_size) {
            let _ = kakuri::record::parse_meta(&rec.meta);
        }
    }
    if let Some(t) = tree.as_mut() {
        let mut n = 0u64;
        let _ = t.for_each_leaf(|_, _| {
            n += 1;
            if n > 100_000 {
                return Err(kakuri::error::Error::internal("enough"));
            }
            Ok(())
        });
    }
});
