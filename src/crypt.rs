//! The per-vault key and age streams over vault files.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Bytes of plaintext in one age payload chunk.
pub const AGE_CHUNK: u64 = 64 * 1024;
/// Bytes of ciphertext in one age payload chunk (plaintext + Poly1305 tag).
pub const AGE_CHUNK_CT: u64 = AGE_CHUNK + 16;

/// Bytes read from vault files by this process (for `--json` I/O reports
/// and for tests that check that a lookup reads O(1) chunks). Bytes a
/// lookup asks the kernel to read ahead count as read, each byte of a
/// file once (see [`Hinted`]).
static BYTES_READ: AtomicU64 = AtomicU64::new(0);

pub fn bytes_read() -> u64 {
    BYTES_READ.load(Ordering::Relaxed)
}

/// The per-vault key: an age X25519 identity, and keys derived from it.
pub struct VaultKey {
    identity: age::x25519::Identity,
    secret: Zeroizing<String>,
    index_key: Zeroizing<[u8; 32]>,
}

impl VaultKey {
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let secret = Zeroizing::new(identity.to_string().expose_secret().to_string());
        let index_key = Zeroizing::new(blake3::derive_key(
            "kakuri 2026-11 blind index v1",
            secret.as_bytes(),
        ));
        VaultKey {
            identity,
            secret,
            index_key,
        }
    }

    /// Parses the plaintext of the wrapped vault-key file (age-keygen form).
    pub fn parse(text: &str) -> Result<Self> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .ok_or_else(|| Error::integrity("the unwrapped vault key is not an age identity"))?;
        let id = age::x25519::Identity::from_str(line)
            .map_err(|_| Error::integrity("the unwrapped vault key is not a valid age identity"))?;
        Ok(Self::from_identity(id))
    }

    /// The vault key as an age-keygen style file (what custodians unwrap).
    pub fn to_file_text(&self, vault_id: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# kakuri vault key for vault {vault_id}\n# public key: {}\n{}\n",
            self.identity.to_public(),
            self.secret.as_str()
        ))
    }

    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }

    pub fn recipient(&self) -> age::x25519::Recipient {
        self.identity.to_public()
    }

    /// Keyed BLAKE3 of one lookup field; truncated to 16 bytes in the index.
    pub fn blind(&self, field: crate::record::Field, value: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.index_key);
        h.update(&[field as u8]);
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value);
        *h.finalize().as_bytes()
    }

    /// A key for other keyed hashes (audit queries), domain-separated.
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, self.secret.as_bytes()))
    }
}

/// Starts an age stream to `recipient` over `out`.
pub fn encrypt_stream<W: Write>(
    recipients: &[&dyn age::Recipient],
    out: W,
) -> Result<age::stream::StreamWriter<W>> {
    let enc = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|e| Error::internal(format!("cannot set up encryption: {e}")))?;
    enc.wrap_output(out)
        .map_err(|e| Error::io_ctx("cannot start encrypted stream", e))
}

/// A file reader that counts bytes into [`bytes_read`]. A file opened
/// through [`Hinted`] counts each byte once, whether it was read or
/// queued for reading ahead.
pub struct CountingFile {
    file: Arc<File>,
    pos: u64,
    seen: Option<Arc<Mutex<Coverage>>>,
}

impl Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*self.file).read(buf)?;
        let new = match &self.seen {
            None => n as u64,
            Some(c) => lock(c).add(self.pos, self.pos + n as u64),
        };
        self.pos += n as u64;
        BYTES_READ.fetch_add(new, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for CountingFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = (&*self.file).seek(pos)?;
        Ok(self.pos)
    }
}

pub type SeekableReader = age::stream::StreamReader<BufReader<CountingFile>>;

fn open_vault_file(path: &Path, name: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::integrity(format!("{name} is missing from the vault"))
        } else {
            Error::io(path, "cannot open", e)
        }
    })
}

fn decrypt_file(f: CountingFile, name: &str, key: &VaultKey) -> Result<SeekableReader> {
    let r = BufReader::with_capacity(AGE_CHUNK_CT as usize, f);
    let d = age::Decryptor::new_buffered(r)
        .map_err(|e| Error::integrity(format!("{name}: not a valid age file ({e})")))?;
    d.decrypt(std::iter::once(&key.identity as &dyn age::Identity))
        .map_err(|e| {
            Error::integrity(format!(
                "{name}: cannot be decrypted with this vault's key ({e})"
            ))
        })
}

/// Opens an encrypted vault file for seekable reading with the vault key.
/// `name` is the vault-relative name used in messages.
pub fn open_encrypted(path: &Path, name: &str, key: &VaultKey) -> Result<SeekableReader> {
    let f = open_vault_file(path, name)?;
    let f = CountingFile {
        file: Arc::new(f),
        pos: 0,
        seen: None,
    };
    decrypt_file(f, name, key)
}

/// Ciphertext bytes allowed for the age header (and its nonce) when the
/// place of a plaintext chunk is worked out before the header is read. A
/// vault file's header, for its one X25519 recipient, is about 250 bytes.
pub const HEADER_ALLOWANCE: u64 = 4096;

/// Sorted, disjoint byte ranges of one file already counted.
#[derive(Default)]
struct Coverage(Vec<(u64, u64)>);

impl Coverage {
    /// Adds `[start, end)`; returns how many of its bytes were new.
    fn add(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let (mut s, mut e, mut new) = (start, end, end - start);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < start || a > end {
                kept.push((a, b));
            } else {
                new -= b.min(end).saturating_sub(a.max(start));
                s = s.min(a);
                e = e.max(b);
            }
        }
        kept.push((s, e));
        kept.sort_unstable();
        self.0 = kept;
        new
    }
}

fn lock(c: &Mutex<Coverage>) -> std::sync::MutexGuard<'_, Coverage> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks the kernel to read `[start, end)` of `f` into the page cache in
/// the background (`POSIX_FADV_WILLNEED`). The call returns once the reads
/// are queued, so reads queued together are served by the disk together
/// instead of one after another. A hint: failure changes nothing but speed.
fn willneed(f: &File, start: u64, end: u64) {
    if end > start {
        advise(f, start, end - start, libc::POSIX_FADV_WILLNEED);
    }
}

/// `posix_fadvise(f, start, len, advice)`; `len` 0 means to the end of
/// the file. A hint: failure changes nothing but speed, so it is ignored.
pub fn advise(f: &File, start: u64, len: u64, advice: libc::c_int) {
    // SAFETY: posix_fadvise only reads its integer arguments.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            start as libc::off_t,
            len as libc::off_t,
            advice,
        );
    }
}

/// Queues a background read of a small plain file (a key file, the
/// manifest, the audit head), or of its last `tail` bytes; missing or
/// unreadable files are left to the code that reads them to report.
pub fn prefetch_file(path: &Path, tail: Option<u64>) {
    if let Ok(f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = tail.map_or(0, |t| len.saturating_sub(t));
        willneed(&f, start, len);
    }
}

/// [`prefetch_file`] for each of `files` (path, tail), on a thread of
/// its own that nothing waits for: opening a file whose directory entry
/// and inode are not cached waits for the disk, and the caller has other
/// files to open meanwhile.
pub fn prefetch_in_background(files: Vec<(std::path::PathBuf, Option<u64>)>) {
    std::thread::spawn(move || {
        for (p, tail) in files {
            prefetch_file(&p, tail);
        }
    });
}

/// Inode numbers apart at which [`prefetch_dir_inodes`] looks up another
/// file: filesystems read inode tables in runs (ext4 32 blocks, 512
/// inodes of 256 bytes, by default), so one lookup per 256 numbers
/// reaches every run.
const INODE_RUN: u64 = 256;

/// Reads the directory `dir` and looks up (`stat`) one of its files per
/// [`INODE_RUN`] inode numbers, on a thread of its own that nothing waits
/// for. Which file a lookup opens in `shards/` is known only once its
/// record's slot is read; with the directory's blocks and the inode
/// tables that hold its files already read, that open waits for no disk
/// read (here it waited 0.2–0.3 ms).
pub fn prefetch_dir_inodes(dir: std::path::PathBuf) {
    use std::os::unix::fs::DirEntryExt;
    std::thread::spawn(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<(u64, std::path::PathBuf)> = entries
            .filter_map(|e| e.ok())
            .map(|e| (e.ino(), e.path()))
            .collect();
        files.sort_unstable_by_key(|(ino, _)| *ino);
        let mut next = 0;
        for (ino, p) in files {
            if ino >= next {
                let _ = std::fs::symlink_metadata(p);
                next = ino.saturating_add(INODE_RUN);
            }
        }
    });
}

/// An encrypted vault file read at a few places known ahead (one lookup):
/// kernel readahead is turned off for it (`POSIX_FADV_RANDOM`: on this
/// kind of disk a lookup otherwise pulls in 512 KiB around the start of
/// each file), and the chunks it will need are queued for reading as soon
/// as their places are known, so that they arrive together. A clone shares
/// the open file and what has been queued.
#[derive(Clone)]
pub struct Hinted {
    file: Arc<File>,
    size: u64,
    seen: Arc<Mutex<Coverage>>,
    name: String,
}

impl Hinted {
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let f = open_vault_file(path, name)?;
        let size = f
            .metadata()
            .map_err(|e| Error::io(path, "cannot read", e))?
            .len();
        advise(&f, 0, 0, libc::POSIX_FADV_RANDOM);
        Ok(Hinted {
            file: Arc::new(f),
            size,
            seen: Arc::default(),
            name: name.to_string(),
        })
    }

    /// Queues ciphertext bytes `[start, end)` (counted in [`bytes_read`]).
    pub fn willneed(&self, start: u64, end: u64) {
        let end = end.min(self.size);
        if start < end {
            let new = lock(&self.seen).add(start, end);
            BYTES_READ.fetch_add(new, Ordering::Relaxed);
            willneed(&self.file, start, end);
        }
    }

    /// Queues the header and the first chunk (read when the file is opened).
    pub fn willneed_head(&self) {
        self.willneed(0, AGE_CHUNK_CT + HEADER_ALLOWANCE);
    }

    /// Queues the last chunk (the blind index and the Merkle tree keep
    /// their top page there).
    pub fn willneed_last(&self) {
        self.willneed(self.size.saturating_sub(AGE_CHUNK_CT), self.size);
    }

    /// Queues the chunks that hold plaintext bytes `[offset, offset + len)`.
    pub fn willneed_plain(&self, offset: u64, len: u64) {
        let first = offset / AGE_CHUNK;
        let last = (offset + len.max(1) - 1) / AGE_CHUNK;
        self.willneed(
            first * AGE_CHUNK_CT,
            (last + 1) * AGE_CHUNK_CT + HEADER_ALLOWANCE,
        );
    }

    /// A decrypting reader over the file (which it shares).
    pub fn reader(&self, key: &VaultKey) -> Result<SeekableReader> {
        let f = CountingFile {
            file: self.file.clone(),
            pos: 0,
            seen: Some(self.seen.clone()),
        };
        (&*self.file)
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io_ctx(format!("cannot read {}", self.name), e))?;
        decrypt_file(f, &self.name, key)
    }
}

/// Seeks `r` to plaintext `offset` for a read of `len` bytes. Seeking to
/// the first byte of a chunk, age's reader first authenticates the file's
/// last chunk to learn the plaintext length (for a read there that returns
/// nothing), which costs a read and a decryption of that chunk, and a
/// second decryption when the target is the last chunk itself (the top
/// page of the blind index and of the Merkle tree). A read of at least one
/// byte authenticates its chunk anyway: seeking one byte into the chunk
/// reads it once, and seeking back stays within it.
fn seek_for_read(r: &mut SeekableReader, offset: u64, len: usize) -> io::Result<()> {
    if len > 0 && offset.is_multiple_of(AGE_CHUNK) {
        r.seek(SeekFrom::Start(offset + 1))?;
    }
    r.seek(SeekFrom::Start(offset)).map(|_| ())
}

/// Reads exactly `buf.len()` plaintext bytes at `offset`, naming `name` in errors.
pub fn read_at(r: &mut SeekableReader, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
    seek_for_read(r, offset, buf.len())
        .and_then(|_| r.read_exact(buf))
        .map_err(|e| {
            // A chunk that fails authentication (or a last chunk that is
            // not one) is damage on disk: say what finds and fixes it.
            let hint = if e.kind() == io::ErrorKind::InvalidData {
                "; `kakuri verify VAULT` locates the damage, `kakuri verify VAULT --repair` rebuilds it from parity"
            } else {
                ""
            };
            Error::integrity(format!(
                "{name}: cannot read {} bytes at plaintext offset {offset} (age chunk {}): {e}{hint}",
                buf.len(),
                offset / AGE_CHUNK
            ))
        })
}

type EncInner = age::stream::StreamWriter<
    crate::vault::HashingWriter<
        crate::parity::ParityTee<std::io::BufWriter<crate::vault::AtomicFile>>,
    >,
>;

/// A vault file being written: age-encrypted to the vault key, hashed as
/// written, and moved into place atomically by [`EncryptedFile::finish`].
pub struct EncryptedFile {
    name: String,
    w: EncInner,
}

impl EncryptedFile {
    pub fn create(root: &Path, rel: &str, key: &VaultKey) -> Result<Self> {
        Self::create_with_parity(root, rel, key, None)
    }

    /// Like [`EncryptedFile::create`]; with `parity`, the file's parity
    /// file is built from the ciphertext as it is written.
    pub fn create_with_parity(
        root: &Path,
        rel: &str,
        key: &VaultKey,
        parity: Option<crate::parity::Params>,
    ) -> Result<Self> {
        let file = crate::vault::AtomicFile::create(&root.join(rel), 0o444)?;
        let builder = parity
            .map(|p| crate::parity::ParityBuilder::create(root, rel, p, false))
            .transpose()?;
        let out = crate::vault::HashingWriter::new(crate::parity::ParityTee::new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            builder,
        ));
        let recipient = key.recipient();
        let w = encrypt_stream(&[&recipient], out)?;
        Ok(EncryptedFile {
            name: rel.to_string(),
            w,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seals the age stream, syncs and renames; returns size and BLAKE3.
    pub fn finish(self) -> Result<crate::manifest::FileInfo> {
        Ok(self.finish_with_parity()?.0)
    }

    /// Like [`EncryptedFile::finish`], and also completes the parity file
    /// (if the file was created with parity) and returns its description.
    pub fn finish_with_parity(
        self,
    ) -> Result<(crate::manifest::FileInfo, Option<crate::manifest::FileInfo>)> {
        let name = self.name;
        let hw = self
            .w
            .finish()
            .map_err(|e| Error::io_ctx(format!("cannot finish {name}"), e))?;
        let (tee, size, hash) = hw.finish();
        let (buf, parity) = tee.into_parts();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io_ctx(format!("cannot flush {name}"), e.into_error()))?;
        file.commit()?;
        let parity = parity.map(|p| p.finish(&hash, None)).transpose()?;
        Ok((
            crate::manifest::FileInfo {
                path: name,
                size,
                blake3: hex::encode(hash),
            },
            parity,
        ))
    }
}

impl Write for EncryptedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_counts_each_byte_once() {
        let mut c = Coverage::default();
        assert_eq!(c.add(100, 200), 100);
        assert_eq!(c.add(150, 250), 50);
        assert_eq!(c.add(0, 100), 100);
        assert_eq!(c.add(0, 250), 0);
        assert_eq!(c.add(300, 300), 0);
        assert_eq!(c.add(400, 500), 100);
        assert_eq!(c.add(200, 450), 150);
        assert_eq!(c.0, vec![(0, 500)]);
    }
}
