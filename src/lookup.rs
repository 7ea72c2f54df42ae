//! `lookup`: find records by blind index and serve them verified.
//!
//! A lookup decrypts a constant number of 64 KiB age chunks: the index
//! header and one page per directory level and entry page in keys.age, one
//! slot of records.age, one tile block per tree level (three levels at
//! 1.7 M records), and the chunks that hold the record's own zstd frame.
//! Every record served is checked: its meta.json hashes to the record hash,
//! the image hashes to the value in meta.json, and the record hash is
//! proven to the signed Merkle root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::crypt::{open_encrypted, Hinted, SeekableReader, VaultKey};
use crate::error::{Error, Result};
use crate::index::{
    tree_proof_ranges, IdsReader, KeysReader, RecordLoc, RecordsReader, TreeReader, KEY_LEN,
    RECORD_SLOT,
};
use crate::manifest::{self, Loaded};
use crate::merkle::{self, Hash};
use crate::record::{self, Field};
use crate::shard;
use crate::vault::{self, VaultDir};

/// A vault opened with its key.
pub struct Opened {
    pub dir: VaultDir,
    pub loaded: Loaded,
    pub key: VaultKey,
}

impl Opened {
    pub fn open(
        path: &Path,
        identity_files: &[PathBuf],
        trusted: Option<&ssh_key::PublicKey>,
    ) -> Result<Self> {
        Self::open_with(path, identity_files, trusted, |_, _| ())
    }

    /// Like [`Opened::open`], for a one-off lookup, where most of the time
    /// is waiting on the disk for small reads that do not depend on each
    /// other. Before it reads anything, threads open the index files
    /// (queueing the chunks every lookup reads: headers, the top of the
    /// blind index and of the Merkle tree) and queue the small files it
    /// reads next: the identities and `key_files` (the signing key), the
    /// manifest and its signature, the audit head and the log's tail, and
    /// the shard directory. Each open of a file whose directory and inode
    /// are not cached waits for the disk; from separate threads those
    /// waits overlap (see [`Prefetched`]).
    pub fn open_for_lookup(
        path: &Path,
        identity_files: &[PathBuf],
        key_files: &[PathBuf],
        trusted: Option<&ssh_key::PublicKey>,
    ) -> Result<(Self, Prefetched)> {
        let keys: Vec<PathBuf> = identity_files.iter().chain(key_files).cloned().collect();
        crate::crypt::prefetch_in_background(keys.into_iter().map(|p| (p, None)).collect());
        crate::crypt::prefetch_in_background(vec![
            (path.join(vault::MANIFEST), None),
            (path.join(vault::MANIFEST_SIG), None),
        ]);
        crate::crypt::prefetch_in_background(crate::audit::prefetch_list(path));
        crate::crypt::prefetch_dir_inodes(path.join(vault::SHARDS_DIR));
        let opening = Opening::start(path);
        let mut pre = None;
        let o = Self::open_with(path, identity_files, trusted, |dir, loaded| {
            pre = Some(opening.finish(dir, loaded));
        })?;
        Ok((o, pre.expect("set before the key is unwrapped")))
    }

    fn open_with(
        path: &Path,
        identity_files: &[PathBuf],
        trusted: Option<&ssh_key::PublicKey>,
        before_unwrap: impl FnOnce(&VaultDir, &Loaded),
    ) -> Result<Self> {
        let dir = VaultDir::open(path)?;
        crate::destroy::refuse_if_destroyed(&dir.root)?;
        let loaded = manifest::load(&dir, trusted)?;
        before_unwrap(&dir, &loaded);
        let ids = crate::keys::load_identities(identity_files)?;
        let m = &loaded.manifest;
        let key = crate::custody::unwrap(&dir.root, &m.custody, &m.vault_id, &ids)?;
        Ok(Opened { dir, loaded, key })
    }

    pub fn open_file(&self, rel: &str) -> Result<SeekableReader> {
        open_encrypted(&self.dir.path(rel), rel, &self.key)
    }
}

/// What to look for.
#[derive(Clone, Debug)]
pub enum Query {
    RecordId(String),
    MemberId(String),
    DocumentNumber(String),
    /// BLAKE3 of image bytes (from `--image FILE`).
    ImageHash(Hash),
}

impl Query {
    pub fn field(&self) -> Field {
        match self {
            Query::RecordId(_) => Field::RecordId,
            Query::MemberId(_) => Field::MemberId,
            Query::DocumentNumber(_) => Field::DocumentNumber,
            Query::ImageHash(_) => Field::ImageHash,
        }
    }
    /// The normalised bytes that were blinded for the index.
    pub fn value(&self) -> Vec<u8> {
        match self {
            Query::RecordId(s) => s.as_bytes().to_vec(),
            Query::MemberId(s) => record::normalize_member_id(s).into_bytes(),
            Query::DocumentNumber(s) => record::normalize_document_number(s).into_bytes(),
            Query::ImageHash(h) => h.to_vec(),
        }
    }
    pub fn from_image_file(p: &Path) -> Result<Self> {
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(p).map_err(|e| Error::io(p, "cannot read", e))?)
            .map_err(|e| Error::io(p, "cannot read", e))?;
        Ok(Query::ImageHash(*h.finalize().as_bytes()))
    }
}

/// A record read back and verified against the signed root.
pub struct Verified {
    pub ordinal: u64,
    pub shard: String,
    pub record_hash: Hash,
    pub meta: Vec<u8>,
    pub image: Vec<u8>,
    pub image_entry: String,
    pub proof: Vec<Hash>,
}

#[derive(Serialize)]
pub struct RecordReport {
    pub record_id: String,
    pub ordinal: u64,
    pub shard: String,
    pub record_hash: String,
    pub image_size: u64,
    pub image_blake3: String,
    pub image_path: String,
    pub source: serde_json::Value,
    pub verified: bool,
}

impl Verified {
    pub fn report(&self) -> Result<RecordReport> {
        let m = record::parse_meta(&self.meta)?;
        Ok(RecordReport {
            record_id: m.record_id.clone(),
            ordinal: self.ordinal,
            shard: self.shard.clone(),
            record_hash: hex::encode(self.record_hash),
            image_size: m.image_size,
            image_blake3: m.image_blake3.clone(),
            image_path: m.image_path.clone(),
            source: serde_json::from_str(m.source.get()).unwrap_or(serde_json::Value::Null),
            verified: true,
        })
    }
}

/// Index files opened for a one-off lookup, with the reads every lookup
/// makes already queued (see [`Hinted`]). A file that cannot be opened is
/// reported where [`Lookup::new`] would report it, after the key is
/// unwrapped.
pub struct Prefetched {
    keys: Result<Hinted>,
    records: Result<Hinted>,
    tree: Result<Hinted>,
}

/// The index files being opened on their own threads (see
/// [`Opened::open_for_lookup`]).
struct Opening {
    keys: std::thread::JoinHandle<Result<Hinted>>,
    records: std::thread::JoinHandle<Result<Hinted>>,
    tree: std::thread::JoinHandle<Result<Hinted>>,
}

impl Opening {
    fn start(root: &Path) -> Self {
        // `last`: the top page of the blind index and of the tree is in
        // the file's last chunk.
        let open = |rel: &'static str, last: bool| {
            let p = root.join(rel);
            std::thread::spawn(move || {
                let f = Hinted::open(&p, rel)?;
                f.willneed_head();
                if last {
                    f.willneed_last();
                }
                Ok(f)
            })
        };
        Opening {
            keys: open(vault::KEYS_FILE, true),
            records: open(vault::RECORDS_FILE, false),
            tree: open(vault::TREE_FILE, true),
        }
    }

    /// Once the manifest is verified: queues the custody wrap and the tree
    /// blocks every proof reads, and collects the opened files.
    fn finish(self, dir: &VaultDir, loaded: &Loaded) -> Prefetched {
        let m = &loaded.manifest;
        // The wrapped vault key (or the shares) are read next.
        for w in &m.custody.wraps {
            crate::crypt::prefetch_file(&dir.path(w), None);
        }
        let join = |h: std::thread::JoinHandle<Result<Hinted>>| {
            h.join()
                .unwrap_or_else(|_| Err(Error::internal("opening an index file failed")))
        };
        let (keys, records, tree) = (join(self.keys), join(self.records), join(self.tree));
        if let Ok(t) = &tree {
            for (o, l) in tree_proof_ranges(m.records, None) {
                t.willneed_plain(o, l);
            }
        }
        Prefetched {
            keys,
            records,
            tree,
        }
    }
}

/// Shard readers a [`Lookup`] keeps open at once.
const OPEN_SHARDS: usize = 4;

/// Readers over an opened vault, kept open across queries.
pub struct Lookup<'a> {
    pub opened: &'a Opened,
    keys: KeysReader,
    records: RecordsReader,
    /// `None` only while a proof is being computed on another thread (or
    /// after the tree file failed to open).
    tree: Option<TreeState>,
    /// Open shards, with their size as the signed manifest lists it.
    shards: HashMap<u32, (SeekableReader, u64)>,
    ids: Option<IdsReader>,
    root: Hash,
    /// Set for a one-off lookup: the files whose next reads are queued
    /// as soon as their places are known.
    hints: Option<Hints>,
}

struct Hints {
    records: Hinted,
    tree: Hinted,
    shards: HashMap<u32, Hinted>,
}

/// The Merkle tree's reader, opened when first used: a one-off lookup
/// opens it (an X25519 agreement and a header chunk) on the core that
/// computes the inclusion proof.
enum TreeState {
    Open(Box<TreeReader>),
    Pending(Hinted),
}

impl TreeState {
    fn open(self, key: &VaultKey, records: u64) -> Result<Box<TreeReader>> {
        match self {
            TreeState::Open(t) => Ok(t),
            TreeState::Pending(h) => Ok(Box::new(TreeReader::open(h.reader(key)?, records)?)),
        }
    }
}

impl<'a> Lookup<'a> {
    pub fn new(opened: &'a Opened) -> Result<Self> {
        let m = &opened.loaded.manifest;
        Ok(Lookup {
            keys: KeysReader::open(opened.open_file(vault::KEYS_FILE)?, m.index.entries)?,
            records: RecordsReader::open(opened.open_file(vault::RECORDS_FILE)?, m.records)?,
            tree: Some(TreeState::Open(Box::new(TreeReader::open(
                opened.open_file(vault::TREE_FILE)?,
                m.records,
            )?))),
            shards: HashMap::new(),
            ids: None,
            root: m.root()?,
            opened,
            hints: None,
        })
    }

    /// A lookup over index files opened by [`Opened::open_for_lookup`]:
    /// each record's slot, tree blocks and shard chunks are queued for
    /// reading together as soon as the blind index names the record.
    pub fn prefetched(opened: &'a Opened, p: Prefetched) -> Result<Self> {
        let m = &opened.loaded.manifest;
        let key = &opened.key;
        let (keys, records, tree) = (p.keys?, p.records?, p.tree?);
        // Each reader unwraps its file's key (an X25519 agreement) and
        // reads its header chunk: the record table's reader is opened on a
        // second core while this one opens the blind index (the tree's,
        // with the first proof).
        let (keys, records_reader) = std::thread::scope(|s| {
            let records_reader = s.spawn(|| RecordsReader::open(records.reader(key)?, m.records));
            let keys = keys
                .reader(key)
                .and_then(|r| KeysReader::open(r, m.index.entries));
            let records_reader = records_reader
                .join()
                .unwrap_or_else(|_| Err(Error::internal("opening the record table failed")));
            (keys, records_reader)
        });
        Ok(Lookup {
            keys: keys?,
            records: records_reader?,
            tree: Some(TreeState::Pending(tree.clone())),
            shards: HashMap::new(),
            ids: None,
            root: m.root()?,
            opened,
            hints: Some(Hints {
                records,
                tree,
                shards: HashMap::new(),
            }),
        })
    }

    /// Reads the record-table slots of `ords`. For a one-off lookup it
    /// first queues those slots and the records' tree blocks, and once the
    /// slots are read, their shards' first and frame chunks.
    fn locate(&mut self, ords: &[u64]) -> Result<Vec<RecordLoc>> {
        let m = &self.opened.loaded.manifest;
        if let Some(h) = &self.hints {
            for &o in ords.iter().filter(|&&o| o < m.records) {
                h.records
                    .willneed_plain(RecordsReader::slot_offset(o), RECORD_SLOT as u64);
                for (off, len) in tree_proof_ranges(m.records, Some(o)) {
                    h.tree.willneed_plain(off, len);
                }
            }
        }
        let locs = ords
            .iter()
            .map(|&o| self.records.get(o))
            .collect::<Result<Vec<_>>>()?;
        if let Some(h) = &mut self.hints {
            for loc in &locs {
                let Some(sh) = m.shards.get(loc.shard as usize) else {
                    continue; // fetch names the problem
                };
                if !h.shards.contains_key(&loc.shard) {
                    if h.shards.len() >= OPEN_SHARDS {
                        h.shards.clear();
                    }
                    let f = Hinted::open(&self.opened.dir.path(&sh.file), &sh.file)?;
                    f.willneed_head();
                    h.shards.insert(loc.shard, f);
                }
                h.shards[&loc.shard].willneed_plain(loc.frame_offset, loc.frame_len as u64);
            }
        }
        Ok(locs)
    }

    /// Candidate ordinals from the blind index (may include collisions;
    /// [`Lookup::matches`] rules them out after verification).
    pub fn candidates(&mut self, q: &Query) -> Result<Vec<u64>> {
        let h = self.opened.key.blind(q.field(), &q.value());
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&h[..KEY_LEN]);
        self.keys.find(&k)
    }

    /// Candidate ordinals for an already blinded key.
    pub fn candidates_by_key(&mut self, k: &[u8; KEY_LEN]) -> Result<Vec<u64>> {
        self.keys.find(k)
    }

    /// The tree's reader, taken out (to be put back by the caller).
    fn take_tree(&mut self) -> Result<TreeState> {
        self.tree
            .take()
            .ok_or_else(|| Error::integrity(format!("{}: cannot be read", vault::TREE_FILE)))
    }

    /// The tree's reader, once it is open.
    fn tree(&mut self) -> Result<&mut TreeReader> {
        let records = self.opened.loaded.manifest.records;
        let t = self.take_tree()?.open(&self.opened.key, records)?;
        Ok(match self.tree.insert(TreeState::Open(t)) {
            TreeState::Open(t) => t,
            TreeState::Pending(_) => unreachable!("just opened"),
        })
    }

    /// Verified records matching `q`, each with its inclusion proof.
    pub fn find(&mut self, q: &Query) -> Result<Vec<Verified>> {
        let ords = self.candidates(q)?;
        self.fetch(q, ords)
    }

    /// The verified records of each of `qs`, for a read that must be on
    /// record before it is shown. `record` gets the number of records the
    /// blind index names for each query and runs on a thread of its own
    /// while those records are read and verified (both mostly wait on the
    /// disk); nothing is returned unless both succeed. So what is recorded
    /// counts the records returned, unless the lookup then fails (a named
    /// record fails verification: nothing is returned) or a record under a
    /// colliding 128-bit blind key turns out to be another's (counted, not
    /// returned). A failure to record comes before a failure to read.
    pub fn find_recorded(
        &mut self,
        qs: &[Query],
        record: impl FnOnce(&[usize]) -> Result<()> + Send,
    ) -> Result<Vec<Vec<Verified>>> {
        let candidates = qs
            .iter()
            .map(|q| self.candidates(q))
            .collect::<Result<Vec<_>>>()?;
        let counts: Vec<usize> = candidates.iter().map(Vec::len).collect();
        let (recorded, read) = std::thread::scope(|s| {
            let recorded = s.spawn(|| record(&counts));
            let read = qs
                .iter()
                .zip(candidates)
                .map(|(q, c)| self.fetch(q, c))
                .collect::<Result<Vec<_>>>();
            let recorded = recorded
                .join()
                .unwrap_or_else(|_| Err(Error::internal("recording the lookup failed")));
            (recorded, read)
        });
        recorded?;
        read
    }

    /// The records `ords` (the candidates of `q`, from
    /// [`Lookup::candidates`]) read, verified and proven to the signed
    /// root; those that are not `q`'s are left out.
    fn fetch(&mut self, q: &Query, ords: Vec<u64>) -> Result<Vec<Verified>> {
        if ords.is_empty() {
            return Ok(Vec::new());
        }
        // The inclusion proofs (a tile of leaf hashes per tree level,
        // hashed up) depend on the ordinals alone: they are read and
        // computed on a second core while this one reads the records.
        let tree = self.take_tree()?;
        let opened = self.opened;
        let (read, proved) = std::thread::scope(|s| {
            let prover = s.spawn(
                || match tree.open(&opened.key, opened.loaded.manifest.records) {
                    Err(e) => (None, Err(e)),
                    Ok(mut t) => {
                        let proofs: Result<Vec<_>> = ords.iter().map(|&o| t.proof(o)).collect();
                        (Some(TreeState::Open(t)), proofs)
                    }
                },
            );
            let read = self.locate(&ords).and_then(|locs| {
                let hints = self.hints.as_ref();
                ords.iter()
                    .zip(locs)
                    .map(|(&o, loc)| {
                        read_checked(opened, &mut self.shards, hints, o, &loc).map(|r| (o, loc, r))
                    })
                    .collect::<Result<Vec<_>>>()
            });
            let proved = prover.join().unwrap_or_else(|_| {
                (
                    None,
                    Err(Error::internal("computing an inclusion proof failed")),
                )
            });
            (read, proved)
        });
        let (tree, proofs) = proved;
        self.tree = tree;
        let (read, proofs) = (read?, proofs?);
        let m = &self.opened.loaded.manifest;
        let mut out = Vec::new();
        for ((ord, loc, rec), (leaf, proof)) in read.into_iter().zip(proofs) {
            check_leaf(&rec.shard, ord, &loc, &leaf)?;
            if !merkle::verify_inclusion(ord, m.records, &loc.record_hash, &proof, &self.root) {
                return Err(Error::integrity(format!(
                    "{}: record {ord}: inclusion proof does not reach the signed Merkle root",
                    rec.shard
                )));
            }
            let v = rec.verified(ord, &loc, proof);
            if matches(&v, q)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Where record `ordinal` is stored (from the record table).
    pub fn location(&mut self, ordinal: u64) -> Result<crate::index::RecordLoc> {
        self.records.get(ordinal)
    }

    /// Batch answer from the index alone: the record hash proven to the
    /// signed root through the tree tiles, the record id from `ids.age`
    /// (authenticated by age like every index page), and no shard read.
    pub fn index_entry(&mut self, ordinal: u64) -> Result<Found> {
        let m = &self.opened.loaded.manifest;
        let loc = self.records.get(ordinal)?;
        let root = self.root;
        let leaf = self.tree()?.verified_leaf(ordinal, &root)?;
        if !merkle::ct_eq(&leaf, &merkle::leaf_hash(&loc.record_hash)) {
            return Err(Error::integrity(format!(
                "{}: record {ordinal}: hash differs from the Merkle tree's leaf",
                vault::RECORDS_FILE
            )));
        }
        if self.ids.is_none() {
            self.ids = Some(IdsReader::open(self.opened.open_file(vault::IDS_FILE)?)?);
        }
        let record_id = self.ids.as_mut().expect("just opened").get(&loc)?;
        let shard = m
            .shards
            .get(loc.shard as usize)
            .map(|s| s.file.clone())
            .ok_or_else(|| {
                Error::integrity(format!(
                    "{}: record {ordinal} names no shard",
                    vault::RECORDS_FILE
                ))
            })?;
        Ok(Found {
            ordinal,
            record_id,
            shard,
            record_hash: loc.record_hash,
            fields: record::Fields::default(),
            image_blake3: String::new(),
        })
    }

    /// Reads record `ordinal` and proves its record hash through tile
    /// blocks proven once per batch instead of building an audit path per
    /// record, as [`Lookup::find`] does (`proof` is then empty). Used by
    /// `match`.
    pub fn fetch_batch(&mut self, ordinal: u64) -> Result<Verified> {
        let loc = self.records.get(ordinal)?;
        let hints = self.hints.as_ref();
        let rec = read_checked(self.opened, &mut self.shards, hints, ordinal, &loc)?;
        let root = self.root;
        let leaf = self.tree()?.verified_leaf(ordinal, &root)?;
        check_leaf(&rec.shard, ordinal, &loc, &leaf)?;
        Ok(rec.verified(ordinal, &loc, Vec::new()))
    }
}

/// Reads record `ordinal` from its shard and checks it against its
/// slot: its metadata hashes to the slot's record hash and names this
/// position, and its image hashes to the value in the metadata.
fn read_checked(
    opened: &Opened,
    shards: &mut HashMap<u32, (SeekableReader, u64)>,
    hints: Option<&Hints>,
    ordinal: u64,
    loc: &RecordLoc,
) -> Result<CheckedRecord> {
    let m = &opened.loaded.manifest;
    let sh = m
        .shards
        .get(loc.shard as usize)
        .filter(|s| ordinal >= s.first_ordinal && ordinal < s.first_ordinal + s.records)
        .ok_or_else(|| {
            Error::integrity(format!(
                "{}: record {ordinal} points to a shard that does not hold it",
                vault::RECORDS_FILE
            ))
        })?;
    let name = sh.file.clone();
    if !shards.contains_key(&loc.shard) {
        // Each open shard holds ~200 KiB of buffers; batch reads go
        // shard by shard, so a few open at a time are enough.
        if shards.len() >= OPEN_SHARDS {
            shards.clear();
        }
        let r = match hints.and_then(|h| h.shards.get(&loc.shard)) {
            Some(f) => f.reader(&opened.key)?,
            None => opened.open_file(&name)?,
        };
        let size = m.file(&name).map(|f| f.size).unwrap_or(0);
        shards.insert(loc.shard, (r, size));
    }
    let (r, size) = shards.get_mut(&loc.shard).expect("just inserted");
    let rec = shard::read_record(r, loc, ordinal, *size)?;
    let bad = |what: &str| Error::integrity(format!("{name}: record {ordinal}: {what}"));
    if !merkle::ct_eq(&record::record_hash(&rec.meta), &loc.record_hash) {
        return Err(bad("metadata does not match its record hash"));
    }
    let meta = record::parse_meta(&rec.meta)?;
    if meta.ordinal != ordinal {
        return Err(bad("metadata names another position"));
    }
    let ih = blake3::hash(&rec.image);
    if ih.to_hex().as_str() != meta.image_blake3 || rec.image.len() as u64 != meta.image_size {
        return Err(bad("image does not match the hash in its metadata"));
    }
    Ok(CheckedRecord { shard: name, rec })
}

/// A record read from its shard and checked against its slot.
struct CheckedRecord {
    shard: String,
    rec: shard::RecordBytes,
}

impl CheckedRecord {
    fn verified(self, ordinal: u64, loc: &RecordLoc, proof: Vec<Hash>) -> Verified {
        Verified {
            ordinal,
            shard: self.shard,
            record_hash: loc.record_hash,
            meta: self.rec.meta,
            image: self.rec.image,
            image_entry: self.rec.image_name,
            proof,
        }
    }
}

/// The tree's leaf for `ordinal` must be the leaf hash of its record hash.
fn check_leaf(shard: &str, ordinal: u64, loc: &RecordLoc, leaf: &Hash) -> Result<()> {
    if !merkle::ct_eq(leaf, &merkle::leaf_hash(&loc.record_hash)) {
        return Err(Error::integrity(format!(
            "{shard}: record {ordinal}: record hash differs from the Merkle tree's leaf"
        )));
    }
    Ok(())
}

/// Rules out blind-index collisions: the verified record must carry the
/// queried value itself.
pub fn matches(v: &Verified, q: &Query) -> Result<bool> {
    Ok(Found::of(v)?.matches(q))
}

/// What a verified record is matched and reported by, without its bytes
/// (batch match keeps tens of thousands of these).
#[derive(Debug, Clone)]
pub struct Found {
    pub ordinal: u64,
    pub record_id: String,
    pub shard: String,
    pub record_hash: Hash,
    pub fields: record::Fields,
    pub image_blake3: String,
}

impl Found {
    pub fn of(v: &Verified) -> Result<Self> {
        let m = record::parse_meta(&v.meta)?;
        Ok(Found {
            ordinal: v.ordinal,
            record_id: m.record_id.clone(),
            shard: v.shard.clone(),
            record_hash: v.record_hash,
            fields: record::fields_of(&m),
            image_blake3: m.image_blake3.clone(),
        })
    }

    /// Rules out blind-index collisions: the record must carry the queried
    /// value itself.
    pub fn matches(&self, q: &Query) -> bool {
        let v = q.value();
        match q {
            Query::RecordId(s) => self.record_id == *s,
            Query::MemberId(_) => {
                self.fields.member_id.as_deref().map(str::as_bytes) == Some(&v[..])
            }
            Query::DocumentNumber(_) => {
                self.fields.document_number.as_deref().map(str::as_bytes) == Some(&v[..])
            }
            Query::ImageHash(h) => self.image_blake3 == hex::encode(h),
        }
    }
}
