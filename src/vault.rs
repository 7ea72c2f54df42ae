//! The vault directory: file names, atomic writes, and opening a vault.
//!
//! ```text
//! VAULT/
//!   manifest.json          signed description of everything below (written last)
//!   manifest.json.sig      SSHSIG over manifest.json, namespace "kakuri-manifest@v1"
//!   allowed_signers        the signer's key in ssh-keygen allowed_signers form
//!   custody/gG-vault-key.age  the per-vault age identity, wrapped for the custodians
//!   custody/gG-share-NN.age   (k-of-n) one Shamir share per custodian
//!   shards/NNNNNN.tar.zst.age
//!   index/keys.age         blind index: keyed BLAKE3 of lookup fields -> ordinal
//!   index/records.age      ordinal -> shard, frame offset/length, record hash
//!   index/tree.age         Merkle tree tiles over the record hashes
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.json.sig";
pub const ALLOWED_SIGNERS: &str = "allowed_signers";
pub const CUSTODY_DIR: &str = "custody";
pub const SHARDS_DIR: &str = "shards";
pub const INDEX_DIR: &str = "index";
pub const KEYS_FILE: &str = "index/keys.age";
pub const RECORDS_FILE: &str = "index/records.age";
pub const TREE_FILE: &str = "index/tree.age";
pub const IDS_FILE: &str = "index/ids.age";

/// The current UTC time in RFC 3339, to the second: the one timestamp
/// format of manifests, audit entries, receipts and certificates.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds is valid")
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Relative path of shard `n`.
pub fn shard_path(n: u32) -> String {
    format!("{SHARDS_DIR}/{n:06}.tar.zst.age")
}

/// fsync a directory so that renames inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "cannot sync directory", e))
}

/// A file written under a temporary name and renamed into place only after
/// its contents are synced: a crash leaves either no file or a whole one.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    written: u64,
    flushed: u64,
}

/// Bytes between early-writeback requests (see [`AtomicFile::write`]).
const WRITEBACK_STEP: u64 = 16 << 20;

impl AtomicFile {
    /// Creates `dest` atomically; refuses if `dest` exists. `mode` is the
    /// final permission (0o600 for key material, 0o444 for vault files).
    pub fn create(dest: &Path, mode: u32) -> Result<Self> {
        if dest.symlink_metadata().is_ok() {
            return Err(Error::refused(format!(
                "{} already exists; refusing to overwrite it",
                dest.display()
            )));
        }
        Self::staged(dest, mode)
    }

    /// Like [`AtomicFile::create`], but [`AtomicFile::commit`] replaces an
    /// existing `dest` (the rename is atomic, so readers see the old file
    /// or the new one).
    pub fn replacing(dest: &Path, mode: u32) -> Result<Self> {
        Self::staged(dest, mode)
    }

    fn staged(dest: &Path, mode: u32) -> Result<Self> {
        let name = dest
            .file_name()
            .ok_or_else(|| Error::internal("atomic file without a name"))?
            .to_string_lossy()
            .into_owned();
        let tmp = dest.with_file_name(format!(".{name}{TMP_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "cannot create", e))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
            written: 0,
            flushed: 0,
        })
    }

    /// Flushes, syncs and renames into place, then syncs the directory.
    pub fn commit(self) -> Result<()> {
        self.sync()?;
        let dir = match self.dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.rename()?;
        fsync_dir(&dir)
    }

    /// Syncs the contents: the first half of [`AtomicFile::commit`], for a
    /// caller that syncs several files before it renames any of them.
    pub fn sync(&self) -> Result<()> {
        self.file
            .as_ref()
            .expect("file present until renamed")
            .sync_all()
            .map_err(|e| Error::io(&self.tmp, "cannot sync", e))
    }

    /// Renames into place after [`AtomicFile::sync`]. The directory is not
    /// synced: the caller syncs it once for all the files it renamed.
    pub fn rename(mut self) -> Result<()> {
        drop(self.file.take());
        fs::rename(&self.tmp, &self.dest).map_err(|e| {
            let _ = fs::remove_file(&self.tmp);
            Error::io(&self.dest, "cannot move into place", e)
        })
    }
}

/// Removes a directory tree that is being built (a new vault, an export's
/// staging directory) when dropped while still armed, so an error leaves
/// nothing half-written behind; disarm it once the tree is complete.
pub struct RemoveOnDrop<'a> {
    pub dir: &'a Path,
    pub armed: bool,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(self.dir);
        }
    }
}

/// Suffix of the temporary name `.NAME.tmp` an [`AtomicFile`] is written
/// under before it is renamed to `NAME`.
const TMP_SUFFIX: &str = ".tmp";

/// For a file name `.NAME.tmp`, the `NAME` whose atomic write left it.
pub fn atomic_tmp_target(file_name: &str) -> Option<&str> {
    file_name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(TMP_SUFFIX))
        .filter(|n| !n.is_empty())
}

impl Write for AtomicFile {
    /// Writes, and every 16 MiB asks the kernel to start writing back what
    /// was written so far (`sync_file_range`, asynchronous), so the
    /// `fsync` at commit finds little left to do and large shards do not
    /// stall at the end.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().expect("open");
        let n = f.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK_STEP {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor and a range inside the file;
            // the call only schedules writeback and has no memory effects.
            unsafe {
                libc::sync_file_range(
                    f.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.written - self.flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `dest` (which may exist) atomically with `bytes`.
pub fn replace_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = AtomicFile::replacing(dest, mode)?;
    f.write_all(bytes)
        .map_err(|e| Error::io(dest, "cannot write", e))?;
    f.commit()
}

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = AtomicFile::create(dest, mode)?;
    f.write_all(bytes)
        .map_err(|e| Error::io(dest, "cannot write", e))?;
    f.commit()
}

/// A writer that counts and BLAKE3-hashes everything written through it, so
/// that a ciphertext file's hash is known without reading it back.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
        }
    }
    pub fn finish(self) -> (W, u64, [u8; 32]) {
        (self.inner, self.len, *self.hasher.finalize().as_bytes())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A vault directory on disk.
#[derive(Clone, Debug)]
pub struct VaultDir {
    pub root: PathBuf,
}

impl VaultDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        VaultDir { root: root.into() }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    /// Opens an existing, complete vault (one with a manifest).
    pub fn open(root: &Path) -> Result<Self> {
        let md = fs::metadata(root).map_err(|e| {
            Error::state(format!(
                "{}: not a vault ({})",
                root.display(),
                crate::error::io_reason(&e)
            ))
        })?;
        if !md.is_dir() {
            return Err(Error::state(format!(
                "{}: not a vault (not a directory)",
                root.display()
            )));
        }
        let v = VaultDir::new(root);
        if !v.path(MANIFEST).exists() {
            if v.path(crate::pack::PACK_JOURNAL).exists() {
                return Err(Error::state(format!(
                    "{}: incomplete vault: pack did not finish; continue it with `kakuri pack INPUT --resume -i IDENTITY --out {} …` (same input and options)",
                    root.display(),
                    root.display()
                )));
            }
            if v.path(SHARDS_DIR).exists() || v.path(CUSTODY_DIR).exists() {
                return Err(Error::state(format!(
                    "{}: incomplete vault: it has no signed manifest (pack did not finish)",
                    root.display()
                )));
            }
            return Err(Error::state(format!(
                "{}: not a vault (no {MANIFEST})",
                root.display()
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_leaves_nothing_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        {
            let mut f = AtomicFile::create(&p, 0o600).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert!(!p.exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        write_atomic(&p, b"whole", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"whole");
        assert!(write_atomic(&p, b"again", 0o600).is_err());
    }
}
