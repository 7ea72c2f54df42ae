//! Shards: `age(zstd(tar))` files.
//!
//! Each record is two tar entries, `r/<ordinal>/meta.json` and
//! `r/<ordinal>/image[.ext]`, with deterministic ustar headers, compressed as
//! one independent zstd frame (content size and checksum set). The shard's
//! last frame is the tar end-of-archive (two zero blocks). The frames
//! concatenated are one valid zstd stream of one valid tar archive, so
//! `age -d -i KEY shard | zstd -d | tar -t` lists every record, while
//! kakuri seeks straight to one frame.

use std::io::{Read, Write};
use std::path::Path;

use crate::crypt::{self, EncryptedFile, SeekableReader, VaultKey};
use crate::error::{Error, Result};
use crate::index::RecordLoc;

const BLOCK: usize = 512;

/// Tar entry names of record `ordinal`.
pub fn entry_dir(ordinal: u64) -> String {
    format!("r/{ordinal:010}")
}

/// A safe image extension from the input name: 1–5 ASCII alphanumerics.
pub fn image_ext(image_path: &str) -> Option<String> {
    let name = image_path.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty()
        || ext.is_empty()
        || ext.len() > 5
        || !ext.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

pub fn image_entry_name(ordinal: u64, ext: Option<&str>) -> String {
    match ext {
        Some(e) => format!("{}/image.{e}", entry_dir(ordinal)),
        None => format!("{}/image", entry_dir(ordinal)),
    }
}

fn push_entry(out: &mut Vec<u8>, name: &str, data: &[u8], mtime: u64) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .map_err(|e| Error::internal(format!("tar name: {e}")))?;
    h.set_size(data.len() as u64);
    h.set_mode(0o400);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.resize(out.len() + pad, 0);
    Ok(())
}

/// The tar bytes of one record.
pub fn record_tar(
    ordinal: u64,
    meta: &[u8],
    image: &[u8],
    ext: Option<&str>,
    mtime: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(3 * BLOCK + meta.len() + image.len() + 2 * BLOCK);
    push_entry(
        &mut out,
        &format!("{}/meta.json", entry_dir(ordinal)),
        meta,
        mtime,
    )?;
    push_entry(&mut out, &image_entry_name(ordinal, ext), image, mtime)?;
    Ok(out)
}

/// Writes one shard.
pub struct ShardWriter {
    enc: EncryptedFile,
    comp: zstd::bulk::Compressor<'static>,
    pos: u64,
    mtime: u64,
    pub records: u64,
}

impl ShardWriter {
    pub fn create(
        vault: &Path,
        shard: u32,
        key: &VaultKey,
        level: i32,
        mtime: u64,
        parity: Option<crate::parity::Params>,
    ) -> Result<Self> {
        let enc = EncryptedFile::create_with_parity(
            vault,
            &crate::vault::shard_path(shard),
            key,
            parity,
        )?;
        let mut comp = zstd::bulk::Compressor::new(level)
            .map_err(|e| Error::internal(format!("zstd: {e}")))?;
        comp.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(|e| Error::internal(format!("zstd: {e}")))?;
        Ok(ShardWriter {
            enc,
            comp,
            pos: 0,
            mtime,
            records: 0,
        })
    }

    fn write_frame(&mut self, plain: &[u8]) -> Result<(u64, u32)> {
        let frame = self
            .comp
            .compress(plain)
            .map_err(|e| Error::internal(format!("zstd: {e}")))?;
        let off = self.pos;
        self.enc
            .write_all(&frame)
            .map_err(|e| Error::io_ctx(format!("cannot write {}", self.enc.name()), e))?;
        self.pos += frame.len() as u64;
        Ok((off, frame.len() as u32))
    }

    /// Appends one record; returns where it went (hash filled by caller).
    pub fn add(
        &mut self,
        ordinal: u64,
        meta: &[u8],
        image: &[u8],
        ext: Option<&str>,
    ) -> Result<(u64, u32, u32)> {
        let tar = record_tar(ordinal, meta, image, ext, self.mtime)?;
        let plain_len =
            u32::try_from(tar.len()).map_err(|_| Error::input("a record is larger than 4 GiB"))?;
        let (off, len) = self.write_frame(&tar)?;
        self.records += 1;
        Ok((off, len, plain_len))
    }

    /// Writes the end-of-archive frame, seals and commits the file (and
    /// its parity file, if any).
    pub fn finish(
        mut self,
    ) -> Result<(crate::manifest::FileInfo, Option<crate::manifest::FileInfo>)> {
        self.write_frame(&[0u8; 2 * BLOCK])?;
        self.enc.finish_with_parity()
    }
}

/// One record read back from a shard.
pub struct RecordBytes {
    pub meta: Vec<u8>,
    pub image: Vec<u8>,
    /// The image's tar entry name (for its extension).
    pub image_name: String,
}

/// Splits a record's tar bytes into meta.json and image, strictly: exactly
/// two regular entries with the names kakuri writes for `ordinal`.
pub fn parse_record_tar(ordinal: u64, tar_bytes: &[u8], shard_name: &str) -> Result<RecordBytes> {
    let bad = |what: &str| Error::integrity(format!("{shard_name}: record {ordinal}: {what}"));
    let mut ar = tar::Archive::new(tar_bytes);
    let mut entries = ar.entries().map_err(|_| bad("tar entries unreadable"))?;
    let mut next = |want_meta: bool| -> Result<(String, Vec<u8>)> {
        let mut e = entries
            .next()
            .ok_or_else(|| bad("tar entry missing"))?
            .map_err(|_| bad("tar header damaged"))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            return Err(bad("unexpected tar entry type"));
        }
        let name = String::from_utf8(e.path_bytes().into_owned())
            .map_err(|_| bad("tar entry name is not UTF-8"))?;
        let dir = entry_dir(ordinal);
        let ok = if want_meta {
            name == format!("{dir}/meta.json")
        } else {
            name.strip_prefix(&format!("{dir}/image"))
                .map(|rest| {
                    rest.is_empty()
                        || image_ext(&format!("x{rest}")).is_some_and(|x| format!(".{x}") == rest)
                })
                .unwrap_or(false)
        };
        if !ok {
            return Err(bad("unexpected tar entry name"));
        }
        let size = e.size();
        if size > tar_bytes.len() as u64 {
            return Err(bad("tar entry larger than its frame"));
        }
        let mut data = Vec::with_capacity(size as usize);
        e.read_to_end(&mut data)
            .map_err(|_| bad("tar entry truncated"))?;
        Ok((name, data))
    };
    let (_, meta) = next(true)?;
    let (image_name, image) = next(false)?;
    Ok(RecordBytes {
        meta,
        image,
        image_name,
    })
}

/// Frames claiming more than this are decompressed as a stream, so memory
/// follows what the frame really yields rather than what the index claims.
const EAGER_PLAIN: u32 = 16 << 20;

/// Decompresses one frame, never to more than `plain_len` bytes.
pub fn decompress_frame(frame: &[u8], plain_len: u32, what: &str) -> Result<Vec<u8>> {
    let too_big = |e: std::io::Error| {
        Error::integrity(format!(
            "{what}: zstd frame does not decompress within its recorded size ({e})"
        ))
    };
    let out = if plain_len <= EAGER_PLAIN {
        zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress(frame, plain_len as usize))
            .map_err(too_big)?
    } else {
        let mut v = Vec::new();
        zstd::stream::read::Decoder::with_buffer(frame)
            .map(|d| d.single_frame())
            .and_then(|d| d.take(plain_len as u64 + 1).read_to_end(&mut v))
            .map_err(too_big)?;
        v
    };
    if out.len() != plain_len as usize {
        return Err(Error::integrity(format!(
            "{what}: zstd frame decompresses to the wrong size"
        )));
    }
    Ok(out)
}

/// Reads one record's frame from an open shard of `shard_size` bytes (as
/// stored; its plaintext is shorter), refusing a location outside it.
pub fn read_record(
    r: &mut SeekableReader,
    loc: &RecordLoc,
    ordinal: u64,
    shard_size: u64,
) -> Result<RecordBytes> {
    let name = crate::vault::shard_path(loc.shard);
    if loc
        .frame_offset
        .checked_add(loc.frame_len as u64)
        .is_none_or(|end| end > shard_size)
    {
        return Err(Error::integrity(format!(
            "{name}: record {ordinal}: the record table places it outside the shard"
        )));
    }
    let mut frame = vec![0u8; loc.frame_len as usize];
    crypt::read_at(r, &name, loc.frame_offset, &mut frame)?;
    let tar = decompress_frame(&frame, loc.plain_len, &format!("{name}: record {ordinal}"))?;
    parse_record_tar(ordinal, &tar, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_safe() {
        assert_eq!(image_ext("a/b/免許証.JPG").as_deref(), Some("jpg"));
        assert_eq!(image_ext("x.tar.gz").as_deref(), Some("gz"));
        assert_eq!(image_ext(".hidden"), None);
        assert_eq!(image_ext("noext"), None);
        assert_eq!(image_ext("a.j/pg"), None);
        assert_eq!(image_ext("a.toolong"), None);
        assert_eq!(image_ext("a.ｊｐｇ"), None);
    }

    #[test]
    fn record_tar_round_trips() {
        let t = record_tar(
            42,
            b"{}",
            b"\xff\xd8img\xff\xd9",
            Some("jpg"),
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(t.len() % 512, 0);
        let r = parse_record_tar(42, &t, "s").unwrap();
        assert_eq!(r.meta, b"{}");
        assert_eq!(r.image, b"\xff\xd8img\xff\xd9");
        assert_eq!(r.image_name, "r/0000000042/image.jpg");
        assert!(parse_record_tar(43, &t, "s").is_err());
    }

    #[test]
    fn large_claims_are_decompressed_as_a_stream_and_still_bounded() {
        let big = vec![7u8; 20 << 20];
        let frame = zstd::bulk::compress(&big, 3).unwrap();
        assert_eq!(
            decompress_frame(&frame, 20 << 20, "t").unwrap().len(),
            20 << 20
        );
        assert!(decompress_frame(&frame, (20 << 20) - 1, "t").is_err());
        // A tiny frame claiming 4 GiB gets what it yields, then is refused.
        let small = zstd::bulk::compress(b"hello", 3).unwrap();
        assert!(decompress_frame(&small, u32::MAX, "t").is_err());
    }

    #[test]
    fn legacy_format_frames_are_refused() {
        // A valid zstd v0.7 frame of "hello" (one raw block, then the end
        // block): `zstd -d` from Debian, built with legacy support, prints
        // "hello". kakuri's zstd has no legacy decoders and must refuse it.
        let frame = b"\x27\xb5\x2f\xfd\x20\x05\x40\x00\x05hello\xc0\x00\x00";
        let e = decompress_frame(frame, 5, "t").unwrap_err();
        assert!(e.to_string().contains("does not decompress"), "{e}");
        let e = decompress_frame(frame, 20 << 20, "t").unwrap_err();
        assert!(e.to_string().contains("does not decompress"), "{e}");
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![0u8; 1 << 20];
        let frame = zstd::bulk::compress(&big, 3).unwrap();
        assert!(decompress_frame(&frame, 1000, "t").is_err());
        assert_eq!(
            decompress_frame(&frame, 1 << 20, "t").unwrap().len(),
            1 << 20
        );
    }
}
