//! `verify`: keyless (signature and ciphertext hashes) and deep (decrypt
//! every shard, re-hash every record, rebuild the Merkle root, check the
//! index against the shards). Every problem names the file and, when deep,
//! the records affected; other records are still checked.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::index::{BlindKey, Entry, KeysReader, RecordsReader, TreeReader, ENTRY_LEN, KEY_LEN};
use crate::lookup::Opened;
use crate::manifest::{FileInfo, Loaded};
use crate::merkle::{self, Hash};
use crate::record;
use crate::shard;
use crate::vault::{self, VaultDir};

#[derive(Serialize, Debug)]
pub struct FileCheck {
    pub path: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// For a damaged file: where, and whether parity can repair it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<crate::repair::Damage>,
}

#[derive(Serialize, Debug)]
pub struct BadRecord {
    pub ordinal: u64,
    pub shard: String,
    pub problem: String,
}

#[derive(Serialize, Debug, Default)]
pub struct DeepReport {
    /// `i/n` for a rolling (`--subset`) run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Shards decrypted and re-hashed (all of them for a full run).
    pub shards_checked: Vec<String>,
    pub records_checked: u64,
    pub bytes_decrypted: u64,
    pub bad_records: Vec<BadRecord>,
    pub problems: Vec<String>,
    pub root_ok: bool,
    pub index_ok: bool,
}

#[derive(Serialize, Debug)]
pub struct VerifyReport {
    pub vault_id: String,
    pub signature_ok: bool,
    pub signer_fingerprint: String,
    pub files: Vec<FileCheck>,
    pub unexpected_files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<DeepReport>,
    /// What `--repair` did (before the checks above were made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<crate::repair::RepairReport>,
    pub ok: bool,
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut h = blake3::Hasher::new();
    let f = fs::File::open(path)?;
    h.update_reader(f)?;
    Ok((h.count(), h.finalize().to_hex().to_string()))
}

/// Checks one file; also returns its BLAKE3 when it could be read.
fn check_file(root: &Path, f: &FileInfo) -> (FileCheck, Option<String>) {
    let res = hash_file(&root.join(&f.path));
    let problem = match &res {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_string()),
        Err(e) => Some(format!("unreadable ({})", crate::error::io_reason(e))),
        Ok((size, _)) if *size != f.size => Some(format!("size {size}, manifest says {}", f.size)),
        Ok((_, h)) if !constant_time_eq_str(h, &f.blake3) => {
            Some("BLAKE3 differs from the manifest".into())
        }
        Ok(_) => None,
    };
    (
        FileCheck {
            path: f.path.clone(),
            ok: problem.is_none(),
            problem,
            damage: None,
        },
        res.ok().map(|(_, h)| h),
    )
}

/// Says more about each failed file: whose content it holds (files
/// swapped or copied over each other), and, with parity, which blocks are
/// damaged and whether `verify --repair` can rebuild them.
fn explain_failures(
    root: &Path,
    m: &crate::manifest::Manifest,
    checks: &mut [(FileCheck, Option<String>)],
) {
    let ok_paths: BTreeSet<String> = checks
        .iter()
        .filter(|(c, _)| c.ok)
        .map(|(c, _)| c.path.clone())
        .collect();
    let params = m.parity.as_ref().and_then(|p| p.params().ok());
    for (c, got) in checks.iter_mut().filter(|(c, _)| !c.ok) {
        if let Some(h) = got {
            if let Some(other) = m
                .files
                .iter()
                .find(|f| f.path != c.path && constant_time_eq_str(&f.blake3, h))
            {
                c.problem = Some(format!(
                    "{}; it holds the content of {} (files swapped or copied over each other?)",
                    c.problem.take().unwrap_or_default(),
                    other.path
                ));
            }
        }
        let Some(p) = params else { continue };
        if let Some(data_rel) = c
            .path
            .strip_prefix(&format!("{}/", crate::parity::DIR))
            .and_then(|s| s.strip_suffix(".par"))
        {
            let data_ok = ok_paths.contains(data_rel);
            c.damage = Some(crate::repair::Damage {
                blocks: Vec::new(),
                bytes: Vec::new(),
                extra_bytes: 0,
                repairable: data_ok,
                summary: if data_ok {
                    "parity file damaged; `kakuri verify --repair` rebuilds it from its intact data file".into()
                } else {
                    format!("parity file damaged, and so is {data_rel}")
                },
            });
        } else if crate::parity::covers(&c.path) {
            let data = m.file(&c.path);
            let par = m.file(&crate::parity::parity_path(&c.path));
            if let (Some(d), Some(pf)) = (data, par) {
                c.damage = Some(crate::repair::diagnose(root, d, pf, p));
            }
        }
    }
}

fn constant_time_eq_str(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Files in the vault that the manifest does not list.
fn unexpected(root: &Path, listed: &BTreeSet<&str>) -> Vec<String> {
    let known_top = [
        vault::MANIFEST,
        vault::MANIFEST_SIG,
        vault::ALLOWED_SIGNERS,
        crate::audit::LOG,
        crate::audit::HEAD,
        crate::audit::HEAD_SIG,
        crate::destroy::JOURNAL,
        crate::destroy::CERT,
        crate::destroy::CERT_SIG,
        crate::destroy::CERT_HTML,
        crate::pack::PACK_JOURNAL,
    ];
    let mut out = Vec::new();
    for ent in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let Ok(ent) = ent else { continue };
        if ent.file_type().is_dir() {
            continue;
        }
        let rel = ent
            .path()
            .strip_prefix(root)
            .unwrap_or(ent.path())
            .to_string_lossy()
            .into_owned();
        if !listed.contains(rel.as_str()) && !known_top.contains(&rel.as_str()) {
            out.push(rel);
        }
    }
    out
}

/// Keyless verification, using up to `jobs` threads for hashing.
pub fn verify_keyless(dir: &VaultDir, loaded: &Loaded, jobs: usize) -> VerifyReport {
    let m = &loaded.manifest;
    let files = &m.files;
    let jobs = jobs.max(1);
    let mut checks: Vec<(usize, (FileCheck, Option<String>))> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|j| {
                s.spawn(move || {
                    files
                        .iter()
                        .enumerate()
                        .skip(j)
                        .step_by(jobs)
                        .map(|(i, f)| (i, check_file(&dir.root, f)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("hash thread"))
            .collect()
    });
    checks.sort_by_key(|(i, _)| *i);
    let mut checks: Vec<(FileCheck, Option<String>)> = checks.into_iter().map(|(_, c)| c).collect();
    explain_failures(&dir.root, m, &mut checks);
    let listed: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let unexpected_files = unexpected(&dir.root, &listed);
    let files: Vec<FileCheck> = checks.into_iter().map(|(c, _)| c).collect();
    let ok = files.iter().all(|f| f.ok) && unexpected_files.is_empty();
    VerifyReport {
        vault_id: m.vault_id.clone(),
        signature_ok: true,
        signer_fingerprint: crate::keys::fingerprint(&loaded.signer),
        files,
        unexpected_files,
        deep: None,
        repair: None,
        ok,
    }
}

/// Sum of BLAKE3 of each entry, lane-wise mod 2^64: an order-independent
/// digest of a multiset of index entries.
#[derive(Default, PartialEq, Eq, Clone, Copy)]
struct MultisetDigest([u64; 4]);

impl MultisetDigest {
    fn add(&mut self, e: &Entry) {
        let mut b = [0u8; ENTRY_LEN];
        e.encode(&mut b);
        let h = blake3::hash(&b);
        for (i, lane) in self.0.iter_mut().enumerate() {
            *lane = lane.wrapping_add(u64::from_le_bytes(
                h.as_bytes()[i * 8..i * 8 + 8].try_into().unwrap(),
            ));
        }
    }
    fn merge(&mut self, o: &MultisetDigest) {
        for i in 0..4 {
            self.0[i] = self.0[i].wrapping_add(o.0[i]);
        }
    }
}

struct ShardOutcome {
    /// Records whose content re-hashed to their record hash.
    checked: u64,
    /// Every stored leaf of the shard proven to the root and equal to the
    /// leaf computed from its record.
    leaves_ok: bool,
    digest: MultisetDigest,
    entries: u64,
    bad: Vec<BadRecord>,
    problems: Vec<String>,
}

/// The shape of a problem text (without its numbers), to group records
/// that failed the same way.
pub fn problem_shape(p: &str) -> String {
    p.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Runs of consecutive bad records in the same shard with the same kind
/// of problem (the same text but for its numbers), for people: one line
/// per damaged chunk instead of one per record. Yields (first, last,
/// the first record's report).
pub fn runs(bad: &[BadRecord]) -> Vec<(u64, u64, &BadRecord)> {
    let shape = problem_shape;
    let mut out: Vec<(u64, u64, &BadRecord)> = Vec::new();
    for b in bad {
        match out.last_mut() {
            Some((_, last, first))
                if *last + 1 == b.ordinal
                    && first.shard == b.shard
                    && shape(&first.problem) == shape(&b.problem) =>
            {
                *last = b.ordinal
            }
            _ => out.push((b.ordinal, b.ordinal, b)),
        }
    }
    out
}

/// Inclusive ranges of blind-index keys that lay in damaged pages of
/// keys.age: records with an entry in one cannot be found by that entry.
type KeyRanges = [(BlindKey, BlindKey)];

/// Proves stored leaves to the signed root through the tree tiles (each
/// tile block once) and compares them with the leaves computed from the
/// records. One per verify thread, so memory does not grow with the
/// vault: a shard's leaves are checked as soon as its records are read.
struct LeafChecker<'a> {
    o: &'a Opened,
    root: Hash,
    tree: Result<TreeReader>,
    /// The tile block that failed last, and why (its other leaves fail
    /// the same way without being read again).
    failed_block: Option<(u64, String)>,
}

impl<'a> LeafChecker<'a> {
    fn new(o: &'a Opened) -> Result<Self> {
        Ok(LeafChecker {
            o,
            root: o.loaded.manifest.root()?,
            tree: Self::open(o),
            failed_block: None,
        })
    }

    fn open(o: &Opened) -> Result<TreeReader> {
        o.open_file(vault::TREE_FILE)
            .and_then(|r| TreeReader::open(r, o.loaded.manifest.records))
    }

    /// The problem with leaf `ord` (computed from its record), if any.
    fn check(&mut self, ord: u64, computed: &Hash) -> Option<String> {
        let block = ord / merkle::TILE as u64;
        let res = match (&mut self.tree, &self.failed_block) {
            (_, Some((b, msg))) if *b == block => Err(msg.clone()),
            (Ok(t), _) => t.verified_leaf(ord, &self.root).map_err(|e| e.msg),
            (Err(e), _) => Err(e.msg.clone()),
        };
        match res {
            Ok(leaf) => (!merkle::ct_eq(computed, &leaf))
                .then(|| "record hash differs from the Merkle tree's leaf".to_string()),
            Err(msg) => {
                if self.failed_block.as_ref().is_none_or(|(b, _)| *b != block) {
                    self.failed_block = Some((block, msg.clone()));
                    // A failed chunk leaves age's reader unusable.
                    self.tree = Self::open(self.o);
                }
                Some(format!("its Merkle proof cannot be read: {msg}"))
            }
        }
    }
}

/// Deep-checks shard `si`: every record, then its leaves in the tree.
fn deep_shard(
    o: &Opened,
    si: usize,
    damaged_keys: &KeyRanges,
    leaves_check: &mut LeafChecker<'_>,
) -> ShardOutcome {
    let sh = &o.loaded.manifest.shards[si];
    let (mut out, leaves) = deep_shard_records(o, si, damaged_keys);
    for (k, leaf) in leaves.iter().enumerate() {
        let Some(leaf) = leaf else { continue };
        out.checked += 1;
        let ord = sh.first_ordinal + k as u64;
        if let Some(problem) = leaves_check.check(ord, leaf) {
            out.leaves_ok = false;
            out.bad.push(BadRecord {
                ordinal: ord,
                shard: sh.file.clone(),
                problem,
            });
        }
    }
    out
}

/// Reads and checks every record of shard `si`; returns the outcome and
/// the leaves computed from the records (`None` for a record that failed).
fn deep_shard_records(
    o: &Opened,
    si: usize,
    damaged_keys: &KeyRanges,
) -> (ShardOutcome, Vec<Option<Hash>>) {
    let m = &o.loaded.manifest;
    let sh = &m.shards[si];
    let mut out = ShardOutcome {
        checked: 0,
        leaves_ok: true,
        digest: MultisetDigest::default(),
        entries: 0,
        bad: Vec::new(),
        problems: Vec::new(),
    };
    // This shard's leaves computed from its records (None: unreadable).
    let mut leaves: Vec<Option<Hash>> = Vec::with_capacity(sh.records as usize);
    let bad_all = |out: &mut ShardOutcome, leaves: &mut Vec<Option<Hash>>, why: String| {
        for ord in sh.first_ordinal + leaves.len() as u64..sh.first_ordinal + sh.records {
            out.bad.push(BadRecord {
                ordinal: ord,
                shard: sh.file.clone(),
                problem: why.clone(),
            });
            leaves.push(None);
        }
    };
    let mut records = match o
        .open_file(vault::RECORDS_FILE)
        .and_then(|r| RecordsReader::open(r, m.records))
    {
        Ok(r) => r,
        Err(e) => {
            bad_all(
                &mut out,
                &mut leaves,
                format!("record table unreadable: {e}"),
            );
            return (out, leaves);
        }
    };
    let mut r = match o.open_file(&sh.file) {
        Ok(r) => r,
        Err(e) => {
            bad_all(&mut out, &mut leaves, e.to_string());
            return (out, leaves);
        }
    };
    let mut ids = match o
        .open_file(vault::IDS_FILE)
        .and_then(crate::index::IdsReader::open)
    {
        Ok(r) => r,
        Err(e) => {
            bad_all(&mut out, &mut leaves, format!("record ids unreadable: {e}"));
            return (out, leaves);
        }
    };
    // Where the next frame must start; unknown after an unreadable slot.
    let mut expect_off = Some(0u64);
    let shard_size = m.file(&sh.file).map(|f| f.size).unwrap_or(0);
    for ord in sh.first_ordinal..sh.first_ordinal + sh.records {
        let res = (|| -> Result<(Hash, Vec<Entry>, u64)> {
            let loc = records.get(ord)?;
            if loc.shard as usize != si || expect_off.is_some_and(|o| loc.frame_offset != o) {
                return Err(Error::integrity(
                    "record table places it elsewhere".to_string(),
                ));
            }
            let next = loc.frame_offset + loc.frame_len as u64;
            let rec = shard::read_record(&mut r, &loc, ord, shard_size)?;
            let rh = record::record_hash(&rec.meta);
            if !merkle::ct_eq(&rh, &loc.record_hash) {
                return Err(Error::integrity("content does not match its record hash"));
            }
            let meta = record::parse_meta(&rec.meta)?;
            let ih = blake3::hash(&rec.image);
            if meta.ordinal != ord || ih.to_hex().as_str() != meta.image_blake3 {
                return Err(Error::integrity(
                    "image or position differs from its metadata",
                ));
            }
            if ids.get(&loc)? != meta.record_id {
                return Err(Error::integrity(format!(
                    "{} holds another record id for it",
                    vault::IDS_FILE
                )));
            }
            let f = record::fields_of(&meta);
            let entries =
                crate::pack::blind_entries(&o.key, ord, &meta.record_id, &f, ih.as_bytes());
            Ok((rh, entries, next))
        })();
        match res {
            Ok((rh, entries, next)) => {
                if entries.iter().any(|e| {
                    damaged_keys
                        .iter()
                        .any(|(lo, hi)| *lo <= e.key && e.key <= *hi)
                }) {
                    out.bad.push(BadRecord {
                        ordinal: ord,
                        shard: sh.file.clone(),
                        problem: format!(
                            "intact, but one of its blind-index entries lies in a damaged page of {}: some lookups cannot find it",
                            vault::KEYS_FILE
                        ),
                    });
                }
                leaves.push(Some(merkle::leaf_hash(&rh)));
                for e in &entries {
                    out.digest.add(e);
                }
                out.entries += entries.len() as u64;
                expect_off = Some(next);
            }
            Err(e) => {
                out.bad.push(BadRecord {
                    ordinal: ord,
                    shard: sh.file.clone(),
                    problem: e.msg,
                });
                leaves.push(None);
                // Continue with the next record: its location comes from
                // the record table.
                expect_off = records
                    .get(ord)
                    .ok()
                    .map(|loc| loc.frame_offset + loc.frame_len as u64);
                // A failed chunk leaves age's readers unusable: reopen
                // them, so one bad chunk (of the shard, the record table or
                // the id table) costs only the records it holds.
                let reopened = o.open_file(&sh.file).and_then(|nr| {
                    let nrec = RecordsReader::open(o.open_file(vault::RECORDS_FILE)?, m.records)?;
                    let nids = crate::index::IdsReader::open(o.open_file(vault::IDS_FILE)?)?;
                    Ok((nr, nrec, nids))
                });
                match reopened {
                    Ok((nr, nrec, nids)) => {
                        r = nr;
                        records = nrec;
                        ids = nids;
                    }
                    Err(e) => {
                        bad_all(&mut out, &mut leaves, e.to_string());
                        return (out, leaves);
                    }
                }
            }
        }
    }
    // The end-of-archive frame and nothing after it (where it starts is
    // unknown if the last record's slot is unreadable; that record is
    // reported already).
    let Some(expect_off) = expect_off else {
        return (out, leaves);
    };
    let mut tail = Vec::new();
    let tail_res = (|| -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        r.seek(SeekFrom::Start(expect_off))
            .map_err(|e| Error::integrity(e.to_string()))?;
        r.read_to_end(&mut tail)
            .map_err(|e| Error::integrity(e.to_string()))?;
        let z = shard::decompress_frame(&tail, 1024, "end-of-archive")?;
        if z.iter().any(|&b| b != 0) {
            return Err(Error::integrity(
                "end-of-archive frame is not two zero blocks",
            ));
        }
        Ok(())
    })();
    if let Err(e) = tail_res {
        out.problems.push(format!(
            "{}: end of shard damaged or extra data after the last record ({})",
            sh.file, e.msg
        ));
    }
    (out, leaves)
}

/// Deep verification with the vault key.
pub fn verify_deep(o: &Opened, jobs: usize) -> Result<DeepReport> {
    let m = &o.loaded.manifest;
    let start_bytes = crate::crypt::bytes_read();
    let n = m.shards.len();
    let jobs = jobs.max(1);
    verify_all(o, jobs, n, start_bytes)
}

/// Rolling verification: deep-checks shard `i`, `i + n`, `i + 2n`, … only
/// (`--subset i/n`), proving each record's hash to the signed root through
/// the tree tiles. Runs 0/n … (n-1)/n together cover the whole vault; the
/// audit log records which part each run covered.
pub fn verify_subset(o: &Opened, jobs: usize, part: u32, parts: u32) -> Result<DeepReport> {
    let m = &o.loaded.manifest;
    if parts == 0 || part >= parts {
        return Err(Error::usage(format!(
            "--subset {part}/{parts}: need 0 <= i < n"
        )));
    }
    let start_bytes = crate::crypt::bytes_read();
    let mine: Vec<usize> = (0..m.shards.len())
        .filter(|s| *s as u32 % parts == part)
        .collect();
    let jobs = jobs.max(1);
    let outcomes = deep_shards(o, jobs, &mine, &[])?;
    let mut rep = DeepReport::default();
    let mut leaves_ok = true;
    for (si, oc) in outcomes {
        rep.records_checked += oc.checked;
        leaves_ok &= oc.leaves_ok;
        rep.bad_records.extend(oc.bad);
        rep.problems.extend(oc.problems);
        rep.shards_checked.push(m.shards[si].file.clone());
    }
    rep.bad_records.sort_by_key(|b| b.ordinal);
    rep.root_ok = leaves_ok;
    // The blind index is checked by full runs only.
    rep.index_ok = true;
    rep.subset = Some(format!("{part}/{parts}"));
    rep.bytes_decrypted = crate::crypt::bytes_read() - start_bytes;
    Ok(rep)
}

/// Deep-checks the given shards on `jobs` threads; outcomes in shard order.
fn deep_shards(
    o: &Opened,
    jobs: usize,
    shards: &[usize],
    damaged_keys: &KeyRanges,
) -> Result<Vec<(usize, ShardOutcome)>> {
    let mut outcomes: Vec<(usize, ShardOutcome)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..jobs)
            .map(|j| {
                s.spawn(move || -> Result<Vec<(usize, ShardOutcome)>> {
                    let mut leaves = LeafChecker::new(o)?;
                    Ok(shards
                        .iter()
                        .skip(j)
                        .step_by(jobs)
                        .map(|&i| (i, deep_shard(o, i, damaged_keys, &mut leaves)))
                        .collect())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("verify thread"))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    outcomes.sort_by_key(|(i, _)| *i);
    Ok(outcomes)
}

/// keys.age read page by page: the multiset digest of its entries, their
/// count and order, and the key ranges of damaged pages.
struct KeysScan {
    digest: MultisetDigest,
    count: u64,
    sorted: bool,
    damaged: Vec<(BlindKey, BlindKey)>,
    problems: Vec<String>,
}

fn scan_keys(o: &Opened) -> KeysScan {
    let m = &o.loaded.manifest;
    let mut out = KeysScan {
        digest: MultisetDigest::default(),
        count: 0,
        sorted: true,
        damaged: Vec::new(),
        problems: Vec::new(),
    };
    let open = || {
        o.open_file(vault::KEYS_FILE)
            .and_then(|r| KeysReader::open(r, m.index.entries))
    };
    let mut keys = match open() {
        Ok(k) => k,
        Err(e) => {
            out.problems
                .push(format!("{}: {}", vault::KEYS_FILE, e.msg));
            out.damaged.push(([0; KEY_LEN], [0xff; KEY_LEN]));
            return out;
        }
    };
    let mut prev: Option<Entry> = None;
    // Start of a run of damaged pages: the last key before it.
    let mut run_from: Option<BlindKey> = None;
    for p in 0..keys.entry_pages() {
        match keys.entry_page(p) {
            Ok(entries) => {
                if let (Some(lo), Some(first)) = (run_from.take(), entries.first()) {
                    out.damaged.push((lo, first.key));
                }
                for e in entries {
                    if prev.is_some_and(|q| q > e) {
                        out.sorted = false;
                    }
                    prev = Some(e);
                    out.digest.add(&e);
                    out.count += 1;
                }
            }
            Err(e) => {
                if run_from.is_none() {
                    out.problems.push(e.msg);
                    run_from = Some(prev.map(|q| q.key).unwrap_or([0; KEY_LEN]));
                }
                // A failed chunk leaves age's reader unusable.
                match open() {
                    Ok(k) => keys = k,
                    Err(e) => {
                        out.problems
                            .push(format!("{}: {}", vault::KEYS_FILE, e.msg));
                        run_from.get_or_insert([0; KEY_LEN]);
                        break;
                    }
                }
            }
        }
    }
    if let Some(lo) = run_from {
        out.damaged.push((lo, [0xff; KEY_LEN]));
    }
    out
}

fn verify_all(o: &Opened, jobs: usize, n: usize, start_bytes: u64) -> Result<DeepReport> {
    let m = &o.loaded.manifest;
    let all: Vec<usize> = (0..n).collect();
    // The blind index first, so that records with entries in a damaged
    // page can be named while the shards are read.
    let keys = scan_keys(o);
    // Each shard's stored leaves are proven to the signed root through
    // their tile blocks and compared with the leaves computed from its
    // records as the shard is read; a damaged tile costs the records whose
    // proofs run through it.
    let outcomes = deep_shards(o, jobs, &all, &keys.damaged)?;
    let mut rep = DeepReport::default();
    let mut digest = MultisetDigest::default();
    let mut entries = 0u64;
    let mut leaves_ok = true;
    for (_, oc) in outcomes {
        digest.merge(&oc.digest);
        entries += oc.entries;
        rep.records_checked += oc.checked;
        leaves_ok &= oc.leaves_ok;
        rep.bad_records.extend(oc.bad);
        rep.problems.extend(oc.problems);
    }
    rep.shards_checked = m.shards.iter().map(|s| s.file.clone()).collect();
    rep.bad_records.sort_by_key(|b| b.ordinal);
    rep.root_ok = leaves_ok;
    if !leaves_ok {
        rep.problems.push(format!(
            "{}: the stored Merkle tree does not prove every record to the signed root",
            vault::TREE_FILE
        ));
    }
    // Index: sorted, complete, and exactly the entries the records imply.
    rep.problems.extend(keys.problems);
    let all_records_ok = rep.bad_records.is_empty();
    rep.index_ok = keys.sorted
        && keys.damaged.is_empty()
        && keys.count == m.index.entries
        && (!all_records_ok || (keys.digest == digest && entries == keys.count));
    if !rep.index_ok {
        rep.problems.push(format!(
            "{}: blind index does not match the records",
            vault::KEYS_FILE
        ));
    }
    rep.bytes_decrypted = crate::crypt::bytes_read() - start_bytes;
    Ok(rep)
}
