//! Parity files: Reed–Solomon recovery blocks over the ciphertext of the
//! shards and index files, so that damage is located without any key and
//! repaired, not only found.
//!
//! A data file `D` of `S` bytes is cut into `n = ⌈S / B⌉` blocks of
//! `B` = 65,536 bytes (the last one zero-padded for coding). Runs of `k`
//! consecutive blocks form groups (blocks past the end of the file are
//! virtual zero blocks, so every group codes `k` blocks); each group gets
//! `r` recovery blocks, computed with `reed-solomon-simd` (GF(2^16),
//! the Leopard-RS construction). Any `r` damaged blocks of a group can be
//! rebuilt from the rest. `parity/<D>.par` holds, in this order:
//!
//! ```text
//! recovery blocks   G·r blocks of B bytes, group by group (G = ⌈n / k⌉)
//! meta, copy A      header ‖ table ‖ BLAKE3(header ‖ table)
//! meta, copy B      the same bytes again
//! header (72 B)     "kakuri-parity/1\n" ‖ B, k, r, 0 (u32 LE) ‖ S (u64 LE) ‖ BLAKE3(D)
//! table             BLAKE3 of each data block (unpadded), then of each recovery block
//! ```
//!
//! Every offset follows from `B`, `k`, `r` (in the signed manifest) and
//! `S` (the data file's size in the manifest), so a damaged header costs
//! nothing. The table locates damage block by block; the repaired file is
//! accepted only if its BLAKE3 equals the signed manifest's.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use reed_solomon_simd::ReedSolomonEncoder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::FileInfo;
use crate::vault::{AtomicFile, HashingWriter};

/// Bytes per block (data and recovery).
pub const BLOCK: usize = 64 * 1024;
/// The coding algorithm, as named in the manifest.
pub const ALG: &str = "reed-solomon-gf16-leopard/reed-solomon-simd-3";
/// First bytes of the header.
pub const MAGIC: &[u8; 16] = b"kakuri-parity/1\n";
pub const HEADER_LEN: usize = 72;
/// Directory of the parity files.
pub const DIR: &str = "parity";
/// Most data blocks per group (bounds the coder's memory: k × 64 KiB).
pub const MAX_GROUP: u32 = 1024;

/// Parity settings of a vault, in the signed manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ParityInfo {
    pub alg: String,
    /// Bytes per block.
    pub block: u32,
    /// Data blocks per group (`k`).
    pub group_data: u32,
    /// Recovery blocks per group (`r`).
    pub group_parity: u32,
}

impl ParityInfo {
    pub fn new(p: Params) -> Self {
        ParityInfo {
            alg: ALG.into(),
            block: BLOCK as u32,
            group_data: p.k as u32,
            group_parity: p.r as u32,
        }
    }

    /// The coding parameters, refusing anything this version cannot code.
    pub fn params(&self) -> Result<Params> {
        if self.alg != ALG || self.block as usize != BLOCK {
            return Err(Error::integrity(format!(
                "{}: parity algorithm or block size this kakuri does not know ({} / {})",
                crate::vault::MANIFEST,
                self.alg,
                self.block
            )));
        }
        Params::new(self.group_parity, self.group_data)
            .map_err(|e| Error::integrity(format!("{}: parity: {}", crate::vault::MANIFEST, e.msg)))
    }
}

/// Coding parameters: `r` recovery blocks for every `k` data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub k: usize,
    pub r: usize,
}

impl Params {
    /// The default: 4 recovery blocks per 64 data blocks (6.25 %): any
    /// 4 damaged blocks of 64 KiB in every 4 MiB of a file are repaired.
    pub const DEFAULT: Params = Params { k: 64, r: 4 };

    pub fn new(r: u32, k: u32) -> Result<Self> {
        if k == 0 || k > MAX_GROUP || r == 0 || r > k {
            return Err(Error::usage(format!(
                "parity {r}/{k}: need 1 <= R <= K <= {MAX_GROUP}"
            )));
        }
        Ok(Params {
            k: k as usize,
            r: r as usize,
        })
    }

    /// Parses `R/K` (e.g. `4/64`); `none` gives `None`.
    pub fn parse(s: &str) -> Result<Option<Self>> {
        if s == "none" {
            return Ok(None);
        }
        let (r, k) = s
            .split_once('/')
            .and_then(|(r, k)| Some((r.trim().parse().ok()?, k.trim().parse().ok()?)))
            .ok_or_else(|| {
                Error::usage(format!("--parity {s}: expected R/K (e.g. 4/64) or none"))
            })?;
        Self::new(r, k).map(Some)
    }
}

/// Relative path of the parity file of vault file `data_rel`.
pub fn parity_path(data_rel: &str) -> String {
    format!("{DIR}/{data_rel}.par")
}

/// Whether vault file `rel` carries parity (shards and index files do;
/// custody files never: every copy of key material is one more thing
/// destroy would have to find).
pub fn covers(rel: &str) -> bool {
    rel.starts_with("shards/") || rel.starts_with("index/")
}

/// Where everything is in a parity file, from the parameters and the data
/// file's size alone.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub p: Params,
    pub size: u64,
    /// Data blocks.
    pub n: u64,
    /// Groups.
    pub groups: u64,
}

impl Layout {
    pub fn new(p: Params, size: u64) -> Self {
        let n = size.div_ceil(BLOCK as u64);
        Layout {
            p,
            size,
            n,
            groups: n.div_ceil(p.k as u64),
        }
    }
    /// Real length of data block `i` (the last may be short).
    pub fn block_len(&self, i: u64) -> usize {
        let start = i * BLOCK as u64;
        (self.size.saturating_sub(start)).min(BLOCK as u64) as usize
    }
    pub fn recovery_blocks(&self) -> u64 {
        self.groups * self.p.r as u64
    }
    /// Offset of recovery block `j` of group `g` in the parity file.
    pub fn recovery_offset(&self, g: u64, j: usize) -> u64 {
        (g * self.p.r as u64 + j as u64) * BLOCK as u64
    }
    pub fn table_entries(&self) -> u64 {
        self.n + self.recovery_blocks()
    }
    pub fn meta_len(&self) -> u64 {
        HEADER_LEN as u64 + 32 * self.table_entries() + 32
    }
    /// Offset of meta copy `c` (0 or 1).
    pub fn meta_offset(&self, c: u64) -> u64 {
        self.recovery_blocks() * BLOCK as u64 + c * self.meta_len()
    }
    pub fn file_size(&self) -> u64 {
        self.meta_offset(2)
    }
}

/// The header of the parity file of a data file of `size` bytes whose
/// BLAKE3 is `data_hash`.
pub fn header(p: Params, size: u64, data_hash: &[u8; 32]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..16].copy_from_slice(MAGIC);
    h[16..20].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    h[20..24].copy_from_slice(&(p.k as u32).to_le_bytes());
    h[24..28].copy_from_slice(&(p.r as u32).to_le_bytes());
    h[32..40].copy_from_slice(&size.to_le_bytes());
    h[40..72].copy_from_slice(data_hash);
    h
}

fn rs_err(rel: &str, e: reed_solomon_simd::Error) -> Error {
    Error::internal(format!("{rel}: Reed-Solomon coding failed ({e})"))
}

/// Builds a parity file from a data file's bytes as they stream past
/// (written by [`crate::crypt::EncryptedFile`], or read back by
/// [`build_from_file`]). Memory: one group being coded (k × 64 KiB).
pub struct ParityBuilder {
    p: Params,
    rel: String,
    enc: ReedSolomonEncoder,
    block: Vec<u8>,
    filled: usize,
    in_group: usize,
    size: u64,
    data_hashes: Vec<[u8; 32]>,
    rec_hashes: Vec<[u8; 32]>,
    out: HashingWriter<BufWriter<AtomicFile>>,
}

impl ParityBuilder {
    /// Starts the parity file of vault file `data_rel` under `root`;
    /// with `replace`, an existing parity file is replaced on commit.
    pub fn create(root: &Path, data_rel: &str, p: Params, replace: bool) -> Result<Self> {
        let rel = parity_path(data_rel);
        let dest = root.join(&rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create", e))?;
        }
        let file = if replace {
            AtomicFile::replacing(&dest, 0o444)?
        } else {
            AtomicFile::create(&dest, 0o444)?
        };
        let enc = ReedSolomonEncoder::new(p.k, p.r, BLOCK).map_err(|e| rs_err(&rel, e))?;
        Ok(ParityBuilder {
            p,
            enc,
            block: vec![0u8; BLOCK],
            filled: 0,
            in_group: 0,
            size: 0,
            data_hashes: Vec::new(),
            rec_hashes: Vec::new(),
            out: HashingWriter::new(BufWriter::with_capacity(128 << 10, file)),
            rel,
        })
    }

    /// Feeds data-file bytes, in order.
    pub fn update(&mut self, mut buf: &[u8]) -> io::Result<()> {
        self.size += buf.len() as u64;
        while !buf.is_empty() {
            let take = (BLOCK - self.filled).min(buf.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&buf[..take]);
            self.filled += take;
            buf = &buf[take..];
            if self.filled == BLOCK {
                self.push_block()?;
            }
        }
        Ok(())
    }

    fn push_block(&mut self) -> io::Result<()> {
        let len = self.filled;
        self.data_hashes
            .push(*blake3::hash(&self.block[..len]).as_bytes());
        self.block[len..].fill(0);
        self.enc
            .add_original_shard(&self.block)
            .map_err(io::Error::other)?;
        self.filled = 0;
        self.in_group += 1;
        if self.in_group == self.p.k {
            self.encode_group()?;
        }
        Ok(())
    }

    fn encode_group(&mut self) -> io::Result<()> {
        if self.in_group < self.p.k {
            // Past the end of the file: virtual zero blocks.
            self.block.fill(0);
            while self.in_group < self.p.k {
                self.enc
                    .add_original_shard(&self.block)
                    .map_err(io::Error::other)?;
                self.in_group += 1;
            }
        }
        let res = self.enc.encode().map_err(io::Error::other)?;
        for rec in res.recovery_iter() {
            self.rec_hashes.push(*blake3::hash(rec).as_bytes());
            self.out.write_all(rec)?;
        }
        self.in_group = 0;
        Ok(())
    }

    /// Writes the tables and syncs the parity file. With `expect`, it is
    /// committed only if its BLAKE3 equals that (a rebuilt parity file
    /// must be the one the manifest lists).
    pub fn finish(mut self, data_hash: &[u8; 32], expect: Option<&FileInfo>) -> Result<FileInfo> {
        let rel = self.rel.clone();
        let io = |e| Error::io_ctx(format!("cannot write {rel}"), e);
        if self.filled > 0 {
            self.push_block().map_err(io)?;
        }
        if self.in_group > 0 {
            self.encode_group().map_err(io)?;
        }
        let mut meta = Vec::with_capacity(
            HEADER_LEN + 32 * (self.data_hashes.len() + self.rec_hashes.len()) + 32,
        );
        meta.extend_from_slice(&header(self.p, self.size, data_hash));
        for h in self.data_hashes.iter().chain(&self.rec_hashes) {
            meta.extend_from_slice(h);
        }
        let tag = *blake3::hash(&meta).as_bytes();
        meta.extend_from_slice(&tag);
        self.out.write_all(&meta).map_err(io)?;
        self.out.write_all(&meta).map_err(io)?;
        let (buf, size, hash) = self.out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io_ctx(format!("cannot flush {rel}"), e.into_error()))?;
        debug_assert_eq!(size, Layout::new(self.p, self.size).file_size());
        let info = FileInfo {
            path: rel.clone(),
            size,
            blake3: hex::encode(hash),
        };
        if let Some(want) = expect {
            if want.size != info.size || !crate::merkle::ct_eq_hex(&want.blake3, &info.blake3) {
                // Dropping the staged file removes it.
                return Err(Error::integrity(format!(
                    "{rel}: rebuilt parity differs from the manifest; not replaced"
                )));
            }
        }
        file.commit()?;
        Ok(info)
    }
}

/// A writer that passes bytes on and feeds them to a [`ParityBuilder`]:
/// the parity of a file is built as the file is written.
pub struct ParityTee<W: Write> {
    inner: W,
    parity: Option<ParityBuilder>,
}

impl<W: Write> ParityTee<W> {
    pub fn new(inner: W, parity: Option<ParityBuilder>) -> Self {
        ParityTee { inner, parity }
    }
    pub fn into_parts(self) -> (W, Option<ParityBuilder>) {
        (self.inner, self.parity)
    }
}

impl<W: Write> Write for ParityTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(p) = &mut self.parity {
            p.update(&buf[..n])?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Builds the parity file of a committed data file by reading it back.
pub fn build_from_file(
    root: &Path,
    data: &FileInfo,
    p: Params,
    expect: Option<&FileInfo>,
) -> Result<FileInfo> {
    let path = root.join(&data.path);
    let mut f = File::open(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
    let mut b = ParityBuilder::create(root, &data.path, p, expect.is_some())?;
    let mut buf = vec![0u8; BLOCK];
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(&path, "cannot read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        b.update(&buf[..n])
            .map_err(|e| Error::io_ctx(format!("cannot write {}", parity_path(&data.path)), e))?;
    }
    let h = *hasher.finalize().as_bytes();
    if b.size != data.size || !crate::merkle::ct_eq_hex(&data.blake3, &hex::encode(h)) {
        return Err(Error::integrity(format!(
            "{}: differs from its recorded BLAKE3; parity not written",
            data.path
        )));
    }
    b.finish(&h, expect)
}

/// A parity file's block table, checked against one of its two copies.
pub struct Table {
    pub layout: Layout,
    pub data: Vec<[u8; 32]>,
    pub recovery: Vec<[u8; 32]>,
}

/// Reads the block table of the parity file at `par_path` for a data file
/// described by `data` (from the signed manifest). `None` if neither copy
/// is intact (or the file is missing).
pub fn read_table(par_path: &Path, data: &FileInfo, p: Params) -> Option<Table> {
    let layout = Layout::new(p, data.size);
    let data_hash: [u8; 32] = hex::decode(&data.blake3).ok()?.try_into().ok()?;
    let want_header = header(p, data.size, &data_hash);
    let mut f = File::open(par_path).ok()?;
    let len = layout.meta_len() as usize;
    let mut meta = vec![0u8; len];
    for c in 0..2 {
        if f.seek(SeekFrom::Start(layout.meta_offset(c))).is_err()
            || f.read_exact(&mut meta).is_err()
        {
            continue;
        }
        // The header is checked as the manifest says it must be, so a
        // damaged header byte in the file does not matter.
        let mut h = blake3::Hasher::new();
        h.update(&want_header);
        h.update(&meta[HEADER_LEN..len - 32]);
        if !crate::merkle::ct_eq(h.finalize().as_bytes(), meta[len - 32..].try_into().ok()?) {
            continue;
        }
        let mut hashes = meta[HEADER_LEN..len - 32]
            .chunks_exact(32)
            .map(|c| <[u8; 32]>::try_from(c).expect("32 bytes"));
        let data: Vec<[u8; 32]> = hashes.by_ref().take(layout.n as usize).collect();
        let recovery: Vec<[u8; 32]> = hashes.collect();
        return Some(Table {
            layout,
            data,
            recovery,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_bytes(p: Params, data: &[u8]) -> (tempfile::TempDir, FileInfo, FileInfo) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("shards")).unwrap();
        std::fs::write(d.path().join("shards/x"), data).unwrap();
        let info = FileInfo {
            path: "shards/x".into(),
            size: data.len() as u64,
            blake3: blake3::hash(data).to_hex().to_string(),
        };
        let par = build_from_file(d.path(), &info, p, None).unwrap();
        (d, info, par)
    }

    #[test]
    fn layout_offsets() {
        let l = Layout::new(Params { k: 4, r: 2 }, 9 * BLOCK as u64 + 5);
        assert_eq!(l.n, 10);
        assert_eq!(l.groups, 3);
        assert_eq!(l.block_len(9), 5);
        assert_eq!(l.block_len(0), BLOCK);
        assert_eq!(l.recovery_blocks(), 6);
        assert_eq!(l.table_entries(), 16);
        assert_eq!(l.meta_len(), 72 + 16 * 32 + 32);
        assert_eq!(l.file_size(), 6 * BLOCK as u64 + 2 * l.meta_len());
    }

    #[test]
    fn parse_params() {
        assert_eq!(Params::parse("4/64").unwrap(), Some(Params { k: 64, r: 4 }));
        assert_eq!(Params::parse("none").unwrap(), None);
        for bad in ["0/64", "65/64", "4/0", "4", "a/b", "4/4096"] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parity_file_has_the_documented_layout_and_both_tables() {
        let p = Params { k: 4, r: 2 };
        let data: Vec<u8> = (0..(5 * BLOCK + 100))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (d, info, par) = build_bytes(p, &data);
        let l = Layout::new(p, data.len() as u64);
        assert_eq!(par.size, l.file_size());
        let t = read_table(&d.path().join(&par.path), &info, p).unwrap();
        assert_eq!(t.data.len(), 6);
        assert_eq!(t.recovery.len(), 4);
        assert_eq!(t.data[5], *blake3::hash(&data[5 * BLOCK..]).as_bytes());
        let bytes = std::fs::read(d.path().join(&par.path)).unwrap();
        let a = l.meta_offset(0) as usize;
        assert_eq!(&bytes[a..a + 16], MAGIC);
        assert_eq!(
            &bytes[a..a + l.meta_len() as usize],
            &bytes[a + l.meta_len() as usize..]
        );
        // Recovery block 0 of group 1 is the coding of blocks 4, 5 and two zero blocks.
        let mut blocks: Vec<Vec<u8>> = (4..6)
            .map(|i| {
                let mut b = data[i * BLOCK..((i + 1) * BLOCK).min(data.len())].to_vec();
                b.resize(BLOCK, 0);
                b
            })
            .collect();
        blocks.push(vec![0; BLOCK]);
        blocks.push(vec![0; BLOCK]);
        let rec = reed_solomon_simd::encode(4, 2, &blocks).unwrap();
        let o = l.recovery_offset(1, 0) as usize;
        assert_eq!(&bytes[o..o + BLOCK], &rec[0][..]);
        // One damaged copy of the table: the other is used.
        let mut damaged = bytes.clone();
        damaged[a + 100] ^= 1;
        std::fs::write(d.path().join(&par.path), &damaged).unwrap();
        assert!(read_table(&d.path().join(&par.path), &info, p).is_some());
        damaged[a + l.meta_len() as usize + 100] ^= 1;
        std::fs::write(d.path().join(&par.path), &damaged).unwrap();
        assert!(read_table(&d.path().join(&par.path), &info, p).is_none());
    }

    /// Pins the coding: if a library update changed the recovery bytes,
    /// vaults written before it could no longer be repaired.
    #[test]
    fn test_vector() {
        let p = Params { k: 2, r: 1 };
        let data: Vec<u8> = (0..BLOCK + 10).map(|i| (i % 256) as u8).collect();
        let (d, _, par) = build_bytes(p, &data);
        let bytes = std::fs::read(d.path().join(&par.path)).unwrap();
        assert_eq!(
            blake3::hash(&bytes[..BLOCK]).to_hex().as_str(),
            "237d0bf6fcdc9273193e12c343864cd6034201aa3fd18daad51ebc39c6e8b03b"
        );
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            "f2317daadce623a2e52a5186124114317a89c73a599d231301daa7080191dd7b"
        );
    }
}
