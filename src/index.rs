//! The encrypted index: three age files laid out in 64 KiB pages so that
//! every page is exactly one age chunk and a lookup decrypts a constant
//! number of chunks whatever the vault's size.
//!
//! * `keys.age`    — blind index: sorted (16-byte keyed BLAKE3, ordinal)
//!   entries, then directory pages of each entry page's first key.
//! * `records.age` — one 64-byte slot per record, in ordinal order.
//! * `tree.age`    — Merkle tree tiles (see [`crate::merkle`]).
//!
//! Every file starts with one header page; all files are padded to whole
//! pages. Byte layouts are in docs/FORMAT.md.

use std::io::Write;

use crate::crypt::{read_at, SeekableReader};
use crate::error::{Error, Result};
use crate::merkle::{self, Hash, TILE};

pub const PAGE: usize = 65536;
pub const KEY_LEN: usize = 16;
pub const ENTRY_LEN: usize = KEY_LEN + 8;
pub const ENTRIES_PER_PAGE: usize = PAGE / ENTRY_LEN; // 2730
pub const DIR_KEYS_PER_PAGE: usize = PAGE / KEY_LEN; // 4096
pub const RECORD_SLOT: usize = 64;
pub const SLOTS_PER_PAGE: usize = PAGE / RECORD_SLOT; // 1024

pub const KEYS_MAGIC: &[u8; 8] = b"KKRI-KEY";
pub const RECORDS_MAGIC: &[u8; 8] = b"KKRI-REC";
pub const TREE_MAGIC: &[u8; 8] = b"KKRI-TRE";
pub const INDEX_VERSION: u32 = 1;

pub type BlindKey = [u8; KEY_LEN];

/// One blind-index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub key: BlindKey,
    pub ordinal: u64,
}

impl Entry {
    pub fn encode(&self, out: &mut [u8]) {
        out[..KEY_LEN].copy_from_slice(&self.key);
        out[KEY_LEN..ENTRY_LEN].copy_from_slice(&self.ordinal.to_le_bytes());
    }
    pub fn decode(b: &[u8]) -> Self {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&b[..KEY_LEN]);
        Entry {
            key,
            ordinal: u64::from_le_bytes(b[KEY_LEN..ENTRY_LEN].try_into().unwrap()),
        }
    }
}

/// Where a record lives and what it hashes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc {
    pub shard: u32,
    /// Offset of the record's zstd frame in the shard's plaintext.
    pub frame_offset: u64,
    /// Compressed length of the frame.
    pub frame_len: u32,
    /// Decompressed length (the record's tar bytes); bounds decompression.
    pub plain_len: u32,
    pub record_hash: Hash,
    /// Where the record id is in `ids.age` (offset after its header page)
    /// and its length: batch answers need ids without reading shards.
    pub id_offset: u64,
    pub id_len: u32,
}

impl RecordLoc {
    pub fn encode(&self) -> [u8; RECORD_SLOT] {
        let mut b = [0u8; RECORD_SLOT];
        b[0..4].copy_from_slice(&self.shard.to_le_bytes());
        b[4..8].copy_from_slice(&self.id_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.frame_offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.frame_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.plain_len.to_le_bytes());
        b[24..56].copy_from_slice(&self.record_hash);
        b[56..64].copy_from_slice(&self.id_offset.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let mut record_hash = [0u8; 32];
        record_hash.copy_from_slice(&b[24..56]);
        RecordLoc {
            shard: u32_at(0),
            frame_offset: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            frame_len: u32_at(16),
            plain_len: u32_at(20),
            record_hash,
            id_offset: u64::from_le_bytes(b[56..64].try_into().unwrap()),
            id_len: u32_at(4),
        }
    }
}

/// The header page: magic, version, a layout parameter. Counts are not
/// here: they come from the signed manifest, so files can be streamed.
fn header(magic: &[u8; 8], param: u32) -> Vec<u8> {
    let mut h = vec![0u8; PAGE];
    h[0..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&param.to_le_bytes());
    h
}

/// Checks a header page; returns the layout parameter.
fn check_header(page: &[u8], magic: &[u8; 8], name: &str) -> Result<u32> {
    if &page[0..8] != magic {
        return Err(Error::integrity(format!(
            "{name}: wrong magic (not this kind of index file)"
        )));
    }
    let v = u32::from_le_bytes(page[8..12].try_into().unwrap());
    if v != INDEX_VERSION {
        return Err(Error::integrity(format!(
            "{name}: unsupported index version {v}"
        )));
    }
    Ok(u32::from_le_bytes(page[12..16].try_into().unwrap()))
}

fn pad_to_page<W: Write>(w: &mut W, written: usize) -> std::io::Result<()> {
    let rem = written % PAGE;
    if rem != 0 {
        w.write_all(&vec![0u8; PAGE - rem])?;
    }
    Ok(())
}

// ---------------------------------------------------------------- keys.age

/// Page counts of keys.age for `entries` entries: (entry pages, directory
/// pages per level bottom-up).
pub fn keys_layout(entries: u64) -> (u64, Vec<u64>) {
    let p0 = entries.div_ceil(ENTRIES_PER_PAGE as u64);
    let mut levels = Vec::new();
    let mut keys = p0;
    while keys > 1 {
        let pages = keys.div_ceil(DIR_KEYS_PER_PAGE as u64);
        levels.push(pages);
        keys = pages;
    }
    (p0, levels)
}

/// Writes keys.age from entries sorted by (key, ordinal); returns the count.
pub fn write_keys<W: Write>(w: &mut W, sorted: impl Iterator<Item = Result<Entry>>) -> Result<u64> {
    let io = |e| Error::io_ctx("cannot write index/keys.age", e);
    w.write_all(&header(KEYS_MAGIC, ENTRY_LEN as u32))
        .map_err(io)?;
    let mut page = vec![0u8; PAGE];
    let mut firsts: Vec<BlindKey> = Vec::new();
    let mut in_page = 0usize;
    let mut count = 0u64;
    let mut prev: Option<Entry> = None;
    for e in sorted {
        let e = e?;
        if prev.is_some_and(|p| p > e) {
            return Err(Error::internal("index entries out of order"));
        }
        prev = Some(e);
        if in_page == 0 {
            firsts.push(e.key);
        }
        e.encode(&mut page[in_page * ENTRY_LEN..]);
        in_page += 1;
        count += 1;
        if in_page == ENTRIES_PER_PAGE {
            w.write_all(&page).map_err(io)?;
            page.fill(0);
            in_page = 0;
        }
    }
    if in_page > 0 {
        w.write_all(&page).map_err(io)?;
    }
    while firsts.len() > 1 {
        let mut next = Vec::new();
        for chunk in firsts.chunks(DIR_KEYS_PER_PAGE) {
            page.fill(0);
            for (i, k) in chunk.iter().enumerate() {
                page[i * KEY_LEN..(i + 1) * KEY_LEN].copy_from_slice(k);
            }
            next.push(chunk[0]);
            w.write_all(&page).map_err(io)?;
        }
        firsts = next;
    }
    Ok(count)
}

/// Sorts blind-index entries in bounded memory: runs of at most
/// `run_entries` are sorted and spilled, age-encrypted to the vault key,
/// to `index/.sort-N.tmp`, then merged. Nothing but keyed hashes and
/// ordinals is ever spilled, and only encrypted.
pub struct EntrySorter<'a> {
    dir: std::path::PathBuf,
    key: &'a crate::crypt::VaultKey,
    buf: Vec<Entry>,
    run_entries: usize,
    runs: Vec<std::path::PathBuf>,
    pub count: u64,
}

impl<'a> EntrySorter<'a> {
    pub fn new(dir: &std::path::Path, key: &'a crate::crypt::VaultKey, run_entries: usize) -> Self {
        EntrySorter {
            dir: dir.to_path_buf(),
            key,
            buf: Vec::new(),
            run_entries: run_entries.max(1),
            runs: Vec::new(),
            count: 0,
        }
    }

    pub fn push(&mut self, e: Entry) -> Result<()> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.run_entries);
        }
        self.buf.push(e);
        self.count += 1;
        if self.buf.len() >= self.run_entries {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        self.buf.sort_unstable();
        let path = self.dir.join(format!(".sort-{}.tmp", self.runs.len()));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, "cannot create", e))?;
        self.runs.push(path.clone());
        let recipient = self.key.recipient();
        let mut w = crate::crypt::encrypt_stream(
            &[&recipient],
            std::io::BufWriter::with_capacity(1 << 20, f),
        )?;
        let mut b = [0u8; ENTRY_LEN];
        let io = |e| Error::io(&path, "cannot write", e);
        for e in &self.buf {
            e.encode(&mut b);
            w.write_all(&b).map_err(io)?;
        }
        w.finish().and_then(|mut b| b.flush()).map_err(io)?;
        self.buf.clear();
        Ok(())
    }

    /// All entries in order. Spilled runs are removed when the iterator is dropped.
    pub fn finish(mut self) -> Result<SortedEntries> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return Ok(SortedEntries::Memory(
                std::mem::take(&mut self.buf).into_iter(),
            ));
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        self.buf = Vec::new();
        let mut readers = Vec::new();
        let mut heap = std::collections::BinaryHeap::new();
        for (i, p) in self.runs.iter().enumerate() {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, "cannot reopen", e))?;
            let d = age::Decryptor::new_buffered(std::io::BufReader::with_capacity(1 << 16, f))
                .map_err(|e| Error::integrity(format!("sort run: {e}")))?;
            let r = d
                .decrypt(std::iter::once(self.key.identity() as &dyn age::Identity))
                .map_err(|e| Error::integrity(format!("sort run: {e}")))?;
            let mut r = std::io::BufReader::with_capacity(1 << 16, r);
            if let Some(e) = read_entry(&mut r)? {
                heap.push(std::cmp::Reverse((e, i)));
            }
            readers.push(r);
        }
        Ok(SortedEntries::Merge {
            heap,
            readers,
            runs: std::mem::take(&mut self.runs),
        })
    }
}

impl Drop for EntrySorter<'_> {
    fn drop(&mut self) {
        for p in &self.runs {
            let _ = std::fs::remove_file(p);
        }
    }
}

type RunReader = std::io::BufReader<age::stream::StreamReader<std::io::BufReader<std::fs::File>>>;

fn read_entry(r: &mut RunReader) -> Result<Option<Entry>> {
    use std::io::Read;
    let mut b = [0u8; ENTRY_LEN];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(Entry::decode(&b))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io_ctx("cannot read a sort run", e)),
    }
}

pub enum SortedEntries {
    Memory(std::vec::IntoIter<Entry>),
    Merge {
        heap: std::collections::BinaryHeap<std::cmp::Reverse<(Entry, usize)>>,
        readers: Vec<RunReader>,
        runs: Vec<std::path::PathBuf>,
    },
}

impl Iterator for SortedEntries {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Result<Entry>> {
        match self {
            SortedEntries::Memory(it) => it.next().map(Ok),
            SortedEntries::Merge { heap, readers, .. } => {
                let std::cmp::Reverse((e, i)) = heap.pop()?;
                match read_entry(&mut readers[i]) {
                    Ok(Some(n)) => heap.push(std::cmp::Reverse((n, i))),
                    Ok(None) => {}
                    Err(err) => return Some(Err(err)),
                }
                Some(Ok(e))
            }
        }
    }
}

impl Drop for SortedEntries {
    fn drop(&mut self) {
        if let SortedEntries::Merge { runs, .. } = self {
            for p in runs.iter() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Reads the blind index.
pub struct KeysReader {
    r: SeekableReader,
    entries: u64,
    entry_pages: u64,
    dir_levels: Vec<u64>,
    cache: Vec<(u64, Box<[u8]>)>,
}

/// Pages kept by a reader's cache (most recently used last).
const PAGE_CACHE: usize = 8;

const KEYS_NAME: &str = "index/keys.age";

impl KeysReader {
    pub fn open(mut r: SeekableReader, entries: u64) -> Result<Self> {
        let mut page = vec![0u8; 64];
        read_at(&mut r, KEYS_NAME, 0, &mut page)?;
        if check_header(&page, KEYS_MAGIC, KEYS_NAME)? != ENTRY_LEN as u32 {
            return Err(Error::integrity(format!(
                "{KEYS_NAME}: unexpected entry size"
            )));
        }
        let (entry_pages, dir_levels) = keys_layout(entries);
        Ok(KeysReader {
            r,
            entries,
            entry_pages,
            dir_levels,
            cache: Vec::new(),
        })
    }

    /// Reads a page through a small cache: batch lookups walk the index
    /// in key order, so neighbouring queries share pages.
    fn read_page(&mut self, page_no: u64, buf: &mut [u8]) -> Result<()> {
        if let Some(i) = self.cache.iter().position(|(n, _)| *n == page_no) {
            buf.copy_from_slice(&self.cache[i].1);
            let hit = self.cache.remove(i);
            self.cache.push(hit);
            return Ok(());
        }
        read_at(&mut self.r, KEYS_NAME, page_no * PAGE as u64, buf)?;
        if self.cache.len() >= PAGE_CACHE {
            self.cache.remove(0);
        }
        self.cache.push((page_no, buf.to_vec().into_boxed_slice()));
        Ok(())
    }

    /// All ordinals whose entry key equals `key`, ascending.
    pub fn find(&mut self, key: &BlindKey) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        if self.entries == 0 {
            return Ok(out);
        }
        let mut page = vec![0u8; PAGE];
        // Start of each directory level (top level last), after the header
        // page and the entry pages.
        let mut starts = Vec::new();
        let mut at = 1 + self.entry_pages;
        for &pages in &self.dir_levels {
            starts.push(at);
            at += pages;
        }
        // Keys in each directory level = pages of the level below.
        let mut idx = 0u64; // page index within the current level
        for lvl in (0..self.dir_levels.len()).rev() {
            let keys_in_level = if lvl == 0 {
                self.entry_pages
            } else {
                self.dir_levels[lvl - 1]
            };
            self.read_page(starts[lvl] + idx, &mut page)?;
            let first = idx * DIR_KEYS_PER_PAGE as u64;
            let n = (keys_in_level - first).min(DIR_KEYS_PER_PAGE as u64) as usize;
            let less = (0..n)
                .take_while(|&i| page[i * KEY_LEN..(i + 1) * KEY_LEN] < key[..])
                .count();
            idx = first + less.saturating_sub(1) as u64;
        }
        // Scan entry pages from `idx` while keys <= target.
        let mut p = idx;
        loop {
            if p >= self.entry_pages {
                break;
            }
            self.read_page(1 + p, &mut page)?;
            let first = p * ENTRIES_PER_PAGE as u64;
            let n = (self.entries - first).min(ENTRIES_PER_PAGE as u64) as usize;
            let start = (0..n)
                .position(|i| page[i * ENTRY_LEN..i * ENTRY_LEN + KEY_LEN] >= key[..])
                .unwrap_or(n);
            let mut i = start;
            while i < n {
                let e = Entry::decode(&page[i * ENTRY_LEN..]);
                if e.key != *key {
                    return Ok(out);
                }
                out.push(e.ordinal);
                i += 1;
            }
            p += 1;
        }
        Ok(out)
    }

    /// Number of entry pages.
    pub fn entry_pages(&self) -> u64 {
        self.entry_pages
    }

    /// The entries of entry page `p`, in file order (for deep verify,
    /// which reads page by page so that a damaged page costs only itself).
    pub fn entry_page(&mut self, p: u64) -> Result<Vec<Entry>> {
        let mut page = vec![0u8; PAGE];
        self.read_page(1 + p, &mut page)?;
        let first = p * ENTRIES_PER_PAGE as u64;
        let n = (self.entries - first).min(ENTRIES_PER_PAGE as u64) as usize;
        Ok((0..n)
            .map(|i| Entry::decode(&page[i * ENTRY_LEN..]))
            .collect())
    }
}

// ------------------------------------------------------------- records.age

/// Streams record slots in ordinal order.
pub struct RecordsWriter<W: Write> {
    w: W,
    count: u64,
}

impl<W: Write> RecordsWriter<W> {
    pub fn new(mut w: W) -> std::io::Result<Self> {
        w.write_all(&header(RECORDS_MAGIC, RECORD_SLOT as u32))?;
        Ok(RecordsWriter { w, count: 0 })
    }
    pub fn push(&mut self, loc: &RecordLoc) -> std::io::Result<()> {
        self.w.write_all(&loc.encode())?;
        self.count += 1;
        Ok(())
    }
    pub fn finish(mut self) -> std::io::Result<W> {
        pad_to_page(&mut self.w, self.count as usize * RECORD_SLOT)?;
        Ok(self.w)
    }
}

pub struct RecordsReader {
    r: SeekableReader,
    count: u64,
}

const RECORDS_NAME: &str = "index/records.age";

impl RecordsReader {
    pub fn open(mut r: SeekableReader, count: u64) -> Result<Self> {
        let mut page = vec![0u8; 64];
        read_at(&mut r, RECORDS_NAME, 0, &mut page)?;
        if check_header(&page, RECORDS_MAGIC, RECORDS_NAME)? != RECORD_SLOT as u32 {
            return Err(Error::integrity(format!(
                "{RECORDS_NAME}: unexpected slot size"
            )));
        }
        Ok(RecordsReader { r, count })
    }
    /// Plaintext offset of record `ordinal`'s slot.
    pub fn slot_offset(ordinal: u64) -> u64 {
        // Ordinals are below the manifest's record count, which
        // Manifest::parse bounds; saturate anyway rather than wrap.
        (PAGE as u64).saturating_add(ordinal.saturating_mul(RECORD_SLOT as u64))
    }

    pub fn get(&mut self, ordinal: u64) -> Result<RecordLoc> {
        if ordinal >= self.count {
            return Err(Error::integrity(format!(
                "{RECORDS_NAME}: ordinal {ordinal} out of range"
            )));
        }
        let mut b = [0u8; RECORD_SLOT];
        read_at(
            &mut self.r,
            RECORDS_NAME,
            Self::slot_offset(ordinal),
            &mut b,
        )?;
        Ok(RecordLoc::decode(&b))
    }
}

// ----------------------------------------------------------------- ids.age

pub const IDS_MAGIC: &[u8; 8] = b"KKRI-IDS";
const IDS_NAME: &str = "index/ids.age";

/// Streams record ids (UTF-8, back to back, in ordinal order) after a
/// header page; each record's slot in records.age holds its offset and
/// length.
pub struct IdsWriter<W: Write> {
    w: W,
    at: u64,
}

impl<W: Write> IdsWriter<W> {
    pub fn new(mut w: W) -> std::io::Result<Self> {
        w.write_all(&header(IDS_MAGIC, 1))?;
        Ok(IdsWriter { w, at: 0 })
    }
    /// Appends an id; returns its offset.
    pub fn push(&mut self, id: &[u8]) -> std::io::Result<u64> {
        self.w.write_all(id)?;
        let o = self.at;
        self.at += id.len() as u64;
        Ok(o)
    }
    pub fn finish(mut self) -> std::io::Result<W> {
        pad_to_page(&mut self.w, (self.at % PAGE as u64) as usize)?;
        Ok(self.w)
    }
}

pub struct IdsReader {
    r: SeekableReader,
}

impl IdsReader {
    pub fn open(mut r: SeekableReader) -> Result<Self> {
        let mut h = vec![0u8; 64];
        read_at(&mut r, IDS_NAME, 0, &mut h)?;
        check_header(&h, IDS_MAGIC, IDS_NAME)?;
        Ok(IdsReader { r })
    }
    /// The record id a slot points to.
    pub fn get(&mut self, loc: &RecordLoc) -> Result<String> {
        if loc.id_len > 1 << 20 {
            return Err(Error::integrity(format!(
                "{IDS_NAME}: implausible id length"
            )));
        }
        let mut b = vec![0u8; loc.id_len as usize];
        let at = (PAGE as u64)
            .checked_add(loc.id_offset)
            .ok_or_else(|| Error::integrity(format!("{IDS_NAME}: id offset out of range")))?;
        read_at(&mut self.r, IDS_NAME, at, &mut b)?;
        String::from_utf8(b)
            .map_err(|_| Error::integrity(format!("{IDS_NAME}: an id is not UTF-8")))
    }
}

// ---------------------------------------------------------------- tree.age

/// Byte offset of each tile level in tree.age (after the header page).
fn tree_level_offsets(levels: &[u64]) -> Vec<u64> {
    let mut at = PAGE as u64;
    levels
        .iter()
        .map(|&n| {
            let o = at;
            // Counts come from the signed manifest, which bounds them
            // (Manifest::parse); saturate anyway rather than wrap.
            at = at.saturating_add(n.saturating_mul(32).div_ceil(PAGE as u64) * PAGE as u64);
            o
        })
        .collect()
}

/// Streams leaf hashes into tree.age level 0 and keeps only the block
/// roots (1/2048 of the leaves) in memory for the levels above.
pub struct TreeWriter<W: Write> {
    w: W,
    block: Vec<Hash>,
    upper: Vec<Hash>,
    root: merkle::RootBuilder,
}

impl<W: Write> TreeWriter<W> {
    pub fn new(mut w: W) -> std::io::Result<Self> {
        w.write_all(&header(TREE_MAGIC, TILE as u32))?;
        Ok(TreeWriter {
            w,
            block: Vec::with_capacity(TILE),
            upper: Vec::new(),
            root: merkle::RootBuilder::new(),
        })
    }
    /// Adds the next record hash (in ordinal order).
    pub fn push(&mut self, record_hash: &Hash) -> std::io::Result<()> {
        let leaf = merkle::leaf_hash(record_hash);
        self.w.write_all(&leaf)?;
        self.root.push(leaf);
        self.block.push(leaf);
        if self.block.len() == TILE {
            self.upper.push(merkle::root_of(&self.block));
            self.block.clear();
        }
        Ok(())
    }
    /// Writes the upper levels; returns the writer and the tree root.
    pub fn finish(mut self) -> Result<(W, Hash)> {
        let total = self.root.count();
        let io = |e| Error::io_ctx("cannot write index/tree.age", e);
        if !self.block.is_empty() {
            self.upper.push(merkle::root_of(&self.block));
        }
        pad_to_page(&mut self.w, (total as usize * 32) % PAGE).map_err(io)?;
        let mut level = std::mem::take(&mut self.upper);
        if total > 1 {
            loop {
                for h in &level {
                    self.w.write_all(h).map_err(io)?;
                }
                pad_to_page(&mut self.w, level.len() * 32).map_err(io)?;
                if level.len() == 1 {
                    break;
                }
                level = level.chunks(TILE).map(merkle::root_of).collect();
            }
        }
        let root = self.root.root();
        if total > 1 && level[0] != root {
            return Err(Error::internal(
                "tree: tiled root differs from streaming root",
            ));
        }
        Ok((self.w, root))
    }
}

/// Plaintext ranges (offset, length) of tree.age that the audit path of
/// leaf `ordinal` is read from (one tile block per level below the root),
/// for a tree of `size` leaves. With `ordinal` None: only the blocks every
/// audit path reads (the levels that fit in one block).
pub fn tree_proof_ranges(size: u64, ordinal: Option<u64>) -> Vec<(u64, u64)> {
    let levels = merkle::tile_levels(size, TILE as u64);
    let offsets = tree_level_offsets(&levels);
    let top = levels.len().saturating_sub(1).max(1).min(levels.len());
    let mut idx = ordinal.unwrap_or(0);
    let mut out = Vec::new();
    for level in 0..top {
        let block = idx / TILE as u64;
        let start = block * TILE as u64;
        let end = (start + TILE as u64).min(levels[level]);
        if ordinal.is_some() || levels[level] <= TILE as u64 {
            out.push((offsets[level] + start * 32, (end - start) * 32));
        }
        idx = block;
    }
    out
}

pub struct TreeReader {
    r: SeekableReader,
    size: u64,
    levels: Vec<u64>,
    offsets: Vec<u64>,
    /// Tile blocks already proven to the signed root (batch match).
    verified: std::collections::HashSet<(usize, u64)>,
    blocks: Vec<((usize, u64), Vec<Hash>)>,
}

const TREE_NAME: &str = "index/tree.age";

impl TreeReader {
    pub fn open(mut r: SeekableReader, size: u64) -> Result<Self> {
        let mut h = vec![0u8; 64];
        read_at(&mut r, TREE_NAME, 0, &mut h)?;
        if check_header(&h, TREE_MAGIC, TREE_NAME)? != TILE as u32 {
            return Err(Error::integrity(format!(
                "{TREE_NAME}: unexpected tile size"
            )));
        }
        let levels = merkle::tile_levels(size, TILE as u64);
        let offsets = tree_level_offsets(&levels);
        Ok(TreeReader {
            r,
            size,
            levels,
            offsets,
            verified: Default::default(),
            blocks: Vec::new(),
        })
    }

    fn read_block(&mut self, level: usize, block: u64) -> Result<Vec<Hash>> {
        let n = self.levels[level];
        let start = block * TILE as u64;
        let end = (start + TILE as u64).min(n);
        let mut buf = vec![0u8; ((end - start) * 32) as usize];
        read_at(
            &mut self.r,
            TREE_NAME,
            self.offsets[level] + start * 32,
            &mut buf,
        )?;
        Ok(buf
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap())
            .collect())
    }

    fn cached_block(&mut self, level: usize, block: u64) -> Result<Vec<Hash>> {
        if let Some((_, b)) = self.blocks.iter().find(|(k, _)| *k == (level, block)) {
            return Ok(b.clone());
        }
        let b = self.read_block(level, block)?;
        if self.blocks.len() >= PAGE_CACHE {
            self.blocks.remove(0);
        }
        self.blocks.push(((level, block), b.clone()));
        Ok(b)
    }

    /// Proves tile block (`level`, `block`) to `root` once: its root must
    /// equal its entry one level up, itself proven the same way. After
    /// that, the block's hashes are trusted (each re-read is authenticated
    /// by age's AEAD), so a batch of N leaves costs one tile walk, not N
    /// proofs.
    fn prove_block(&mut self, level: usize, block: u64, root: &Hash) -> Result<Vec<Hash>> {
        let hashes = self.cached_block(level, block)?;
        if self.verified.contains(&(level, block)) {
            return Ok(hashes);
        }
        let r = merkle::root_of(&hashes);
        let ok = if level + 1 == self.levels.len() - 1 || self.levels.len() == 1 {
            merkle::ct_eq(&r, root)
        } else {
            let up = self.prove_block(level + 1, block / TILE as u64, root)?;
            merkle::ct_eq(&r, &up[(block % TILE as u64) as usize])
        };
        if !ok {
            return Err(Error::integrity(format!(
                "{TREE_NAME}: tile block {block} of level {level} does not hash to the signed root"
            )));
        }
        self.verified.insert((level, block));
        Ok(hashes)
    }

    /// The leaf hash of `ordinal`, proven to `root` (see [`Self::prove_block`]).
    pub fn verified_leaf(&mut self, ordinal: u64, root: &Hash) -> Result<Hash> {
        if ordinal >= self.size {
            return Err(Error::integrity(format!(
                "{TREE_NAME}: leaf {ordinal} out of range"
            )));
        }
        let block = ordinal / TILE as u64;
        let hashes = self.prove_block(0, block, root)?;
        Ok(hashes[(ordinal % TILE as u64) as usize])
    }

    /// The stored leaf hash of `ordinal` and its RFC 6962 audit path.
    pub fn proof(&mut self, ordinal: u64) -> Result<(Hash, Vec<Hash>)> {
        if ordinal >= self.size {
            return Err(Error::integrity(format!(
                "{TREE_NAME}: leaf {ordinal} out of range"
            )));
        }
        let mut path = Vec::new();
        let mut idx = ordinal;
        let mut leaf = None;
        for level in 0..self.levels.len() - 1 {
            let block = idx / TILE as u64;
            let hashes = self.read_block(level, block)?;
            let i = (idx - block * TILE as u64) as usize;
            if level == 0 {
                leaf = Some(hashes[i]);
            }
            path.extend(merkle::path_in(i, &hashes));
            idx = block;
        }
        if self.levels.len() == 1 {
            leaf = Some(self.read_block(0, 0)?[0]);
        }
        Ok((leaf.expect("at least one level"), path))
    }

    /// Streams level 0 (every leaf hash, in order) for deep verify.
    pub fn for_each_leaf(&mut self, mut f: impl FnMut(u64, Hash) -> Result<()>) -> Result<()> {
        let blocks = self.size.div_ceil(TILE as u64);
        for b in 0..blocks {
            for (i, h) in self.read_block(0, b)?.into_iter().enumerate() {
                f(b * TILE as u64 + i as u64, h)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_layout_counts() {
        assert_eq!(keys_layout(0), (0, vec![]));
        assert_eq!(keys_layout(1), (1, vec![]));
        assert_eq!(keys_layout(2731), (2, vec![1]));
        let (p0, d) = keys_layout(4 * 1_711_756);
        assert_eq!(p0, 2509);
        assert_eq!(d, vec![1]);
    }

    #[test]
    fn sorter_spills_merges_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let key = crate::crypt::VaultKey::generate();
        let mut want = Vec::new();
        let mut s = EntrySorter::new(d.path(), &key, 1000);
        for i in 0..5500u64 {
            let h = blake3::hash(&(i % 4000).to_le_bytes());
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(&h.as_bytes()[..KEY_LEN]);
            let e = Entry { key: k, ordinal: i };
            want.push(e);
            s.push(e).unwrap();
        }
        want.sort();
        let got: Vec<Entry> = s.finish().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(got, want);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "runs removed"
        );
    }

    #[test]
    fn tree_proof_ranges_are_the_blocks_proof_reads() {
        // 1,711,756 leaves: tiles of 2,048 leaves, then 836 block roots, then the root.
        let n: u64 = 1_711_756;
        let l1 = PAGE as u64 + (n * 32).div_ceil(PAGE as u64) * PAGE as u64;
        assert_eq!(tree_proof_ranges(n, None), vec![(l1, 836 * 32)]);
        let r = tree_proof_ranges(n, Some(5_000));
        assert_eq!(
            r,
            vec![(PAGE as u64 + 2 * PAGE as u64, PAGE as u64), (l1, 836 * 32)]
        );
        // The last, partial tile.
        let r = tree_proof_ranges(n, Some(n - 1));
        assert_eq!(
            r[0],
            (PAGE as u64 + 835 * PAGE as u64, (n - 835 * 2048) * 32)
        );
        // One tile: the proof reads it whole; one leaf: nothing above it.
        assert_eq!(tree_proof_ranges(10, None), vec![(PAGE as u64, 320)]);
        assert_eq!(tree_proof_ranges(1, Some(0)), vec![(PAGE as u64, 32)]);
    }

    #[test]
    fn record_slot_round_trip() {
        let l = RecordLoc {
            shard: 7,
            frame_offset: 1 << 40,
            frame_len: 123,
            plain_len: 456,
            record_hash: [9; 32],
            id_offset: 1 << 35,
            id_len: 17,
        };
        assert_eq!(RecordLoc::decode(&l.encode()), l);
    }
}
