//! Overwrite-then-unlink of files kakuri owns (NIST SP 800-88 "clear" on
//! the file system level), used for key wraps, shards and index files.
//!
//! On SSDs, copy-on-write and journaling file systems an overwrite may not
//! reach the old blocks; that is why the vault key is erased *first*:
//! without it, any surviving ciphertext is useless (cryptographic erase).

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Vault-relative path.
    pub path: String,
    pub size: u64,
    /// BLAKE3 of the file as it was before erasure.
    pub blake3: String,
    /// "overwrite (1 pass, random) + fsync + unlink"
    pub method: String,
}

pub const METHOD: &str = "overwrite (1 pass, random data) + fsync + unlink + directory fsync";

/// Overwrites `root/rel` with random bytes, syncs, unlinks and syncs the
/// directory. Returns what was there.
pub fn erase_file(root: &Path, rel: &str) -> Result<Erased> {
    let p = root.join(rel);
    let md = fs::symlink_metadata(&p).map_err(|e| Error::io(&p, "cannot erase", e))?;
    if !md.is_file() {
        return Err(Error::refused(format!(
            "{rel}: not a regular file; refusing to erase it"
        )));
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(&p).map_err(|e| Error::io(&p, "cannot read", e))?)
        .map_err(|e| Error::io(&p, "cannot read", e))?;
    let size = md.len();
    let mut perms = md.permissions();
    {
        use std::os::unix::fs::PermissionsExt;
        perms.set_mode(0o600);
    }
    fs::set_permissions(&p, perms).map_err(|e| Error::io(&p, "cannot make writable", e))?;
    let mut f = OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| Error::io(&p, "cannot open for overwrite", e))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(&p, "cannot overwrite", e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rand_core::OsRng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])
            .map_err(|e| Error::io(&p, "cannot overwrite", e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| Error::io(&p, "cannot sync", e))?;
    drop(f);
    fs::remove_file(&p).map_err(|e| Error::io(&p, "cannot unlink", e))?;
    if let Some(d) = p.parent() {
        crate::vault::fsync_dir(d)?;
    }
    Ok(Erased {
        path: rel.to_string(),
        size,
        blake3: h.finalize().to_hex().to_string(),
        method: METHOD.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erase_reports_the_old_hash_and_removes_the_file() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("k"), b"secret").unwrap();
        let e = erase_file(d.path(), "k").unwrap();
        assert_eq!(e.size, 6);
        assert_eq!(e.blake3, blake3::hash(b"secret").to_hex().as_str());
        assert!(!d.path().join("k").exists());
        assert!(erase_file(d.path(), "k").is_err());
    }
}
