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

    /// Like [`Opened::open`], for a one-off lookup: as soon as the signed
    /// manifest is read, and before the vault key is unwrapped, the index
    /// files are opened and the chunks every lookup reads (headers, the
    /// top of the blind index and of the Merkle tree) are queued for
    /// reading together with the custody wrap (see [`Prefetched`]).
    pub fn open_for_lookup(
        path: &Path,
        identity_files: &[PathBuf],
        trusted: Option<&ssh_key::PublicKey>,
    ) -> Result<(Self, Prefetched)> {
        let mut pre = None;
        let o = Self::open_with(path, identity_files, trusted, |dir, loaded| {
            pre = Some(Prefetched::start(dir, loaded));
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

impl Prefetched {
    fn start(dir: &VaultDir, loaded: &Loaded) -> Self {
        let m = &loaded.manifest;
        // The wrapped vault key (or the shares) are read next.
        for w in &m.custody.wraps {
            crate::crypt::prefetch_file(&dir.path(w), None);
        }
        let open = |rel: &str| Hinted::open(&dir.path(rel), rel);
        let (keys, records, tree) = (
            open(vault::KEYS_FILE),
            open(vault::RECORDS_FILE),
            open(vault::TREE_FILE),
        );
        if let Ok(k) = &keys {
            // The top page of the blind index is its last page.
            k.willneed_head();
            k.willneed_last();
        }
        if let Ok(r) = &records {
            r.willneed_head();
        }
        if let Ok(t) = &tree {
            t.willneed_head();
            t.willneed_last();
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
    tree: TreeReader,
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

impl<'a> Lookup<'a> {
    pub fn new(opened: &'a Opened) -> Result<Self> {
        let m = &opened.loaded.manifest;
        Ok(Lookup {
            keys: KeysReader::open(opened.open_file(vault::KEYS_FILE)?, m.index.entries)?,
            records: RecordsReader::open(opened.open_file(vault::RECORDS_FILE)?, m.records)?,
            tree: TreeReader::open(opened.open_file(vault::TREE_FILE)?, m.records)?,
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
        Ok(Lookup {
            keys: KeysReader::open(keys.reader(key)?, m.index.entries)?,
            records: RecordsReader::open(records.reader(key)?, m.records)?,
            tree: TreeReader::open(tree.reader(key)?, m.records)?,
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

    /// Verified records matching `q`.
    pub fn find(&mut self, q: &Query) -> Result<Vec<Verified>> {
        let mut out = Vec::new();
        let ords = self.candidates(q)?;
        let locs = self.locate(&ords)?;
        for (ord, loc) in ords.into_iter().zip(locs) {
            let v = self.fetch_at(ord, loc, true)?;
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
        let leaf = self.tree.verified_leaf(ordinal, &self.root)?;
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
        self.fetch_at(ordinal, loc, false)
    }

    /// Reads record `ordinal`, found at `loc` in the record table, and
    /// proves it to the signed root (with an audit path if `full_proof`).
    fn fetch_at(&mut self, ordinal: u64, loc: RecordLoc, full_proof: bool) -> Result<Verified> {
        let m = &self.opened.loaded.manifest;
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
        if !self.shards.contains_key(&loc.shard) {
            // Each open shard holds ~200 KiB of buffers; batch reads go
            // shard by shard, so a few open at a time are enough.
            if self.shards.len() >= OPEN_SHARDS {
                self.shards.clear();
            }
            let r = match self.hints.as_ref().and_then(|h| h.shards.get(&loc.shard)) {
                Some(f) => f.reader(&self.opened.key)?,
                None => self.opened.open_file(&name)?,
            };
            let size = m.file(&name).map(|f| f.size).unwrap_or(0);
            self.shards.insert(loc.shard, (r, size));
        }
        let (r, size) = self.shards.get_mut(&loc.shard).expect("just inserted");
        let rec = shard::read_record(r, &loc, ordinal, *size)?;
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
        let proof = if full_proof {
            let (leaf, proof) = self.tree.proof(ordinal)?;
            if !merkle::ct_eq(&leaf, &merkle::leaf_hash(&loc.record_hash)) {
                return Err(bad("record hash differs from the Merkle tree's leaf"));
            }
            if !merkle::verify_inclusion(ordinal, m.records, &loc.record_hash, &proof, &self.root) {
                return Err(bad("inclusion proof does not reach the signed Merkle root"));
            }
            proof
        } else {
            let leaf = self.tree.verified_leaf(ordinal, &self.root)?;
            if !merkle::ct_eq(&leaf, &merkle::leaf_hash(&loc.record_hash)) {
                return Err(bad("record hash differs from the Merkle tree's leaf"));
            }
            Vec::new()
        };
        Ok(Verified {
            ordinal,
            shard: name,
            record_hash: loc.record_hash,
            meta: rec.meta,
            image: rec.image,
            image_entry: rec.image_name,
            proof,
        })
    }
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
