//! Helpers shared by the fuzz targets: a per-process scratch directory
//! (files the file-reading parsers open), a fixed signing key so a target
//! can make the signatures it fuzzes past valid, and a vault key for
//! encrypted inputs.
//!
//! The signing key is derived from a constant seed: it signs nothing but
//! fuzz inputs. The vault key is generated per process; only ciphertext
//! bytes depend on it, never what the code under test decides.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ssh_key::{private::Ed25519Keypair, PrivateKey, PublicKey};

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// A directory for this process's files, in RAM when /dev/shm exists. It
/// is removed when the process exits normally (libFuzzer's `exit`, after
/// `-runs=N` or `-max_total_time`); after a crash (`abort`) it is left for
/// the investigation. A static is never dropped, so a `TempDir` would
/// leave it either way.
pub fn scratch() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let b = tempfile::Builder::new().prefix("kakuri-fuzz-").clone();
        let d = if base.is_dir() {
            b.tempdir_in(base)
        } else {
            b.tempdir()
        }
        .expect("scratch directory")
        .keep();
        // SAFETY: registers a plain function to run at exit.
        let rc = unsafe { libc::atexit(remove_scratch) };
        assert_eq!(rc, 0, "atexit");
        d
    })
}

extern "C" fn remove_scratch() {
    if let Some(d) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `scratch()/name`, emptied and created afresh.
pub fn fresh_dir(name: &str) -> PathBuf {
    let d = scratch().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create fuzz dir");
    d
}

pub fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::write(p, bytes).expect("write fuzz file");
}

/// Writes `rel` and, at `{rel}.sig`, its signature by [`signer`] in
/// namespace `ns`.
pub fn write_signed(dir: &Path, rel: &str, bytes: &[u8], ns: &str) {
    write(dir, rel, bytes);
    write(dir, &format!("{rel}.sig"), sign(bytes, ns).as_bytes());
}

/// The fixed ed25519 key fuzz inputs are signed with.
pub fn signer() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from(Ed25519Keypair::from_seed(&[7u8; 32])))
}

pub fn signer_pub() -> &'static PublicKey {
    signer().public_key()
}

/// The signer as an OpenSSH public-key line (no comment).
pub fn signer_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| signer_pub().to_openssh().expect("openssh public key"))
}

pub fn signer_fingerprint() -> String {
    kakuri::keys::fingerprint(signer_pub())
}

/// Armored SSHSIG over `bytes` in namespace `ns` by [`signer`].
pub fn sign(bytes: &[u8], ns: &str) -> String {
    kakuri::manifest::sign_ns(bytes, signer(), ns).expect("sign")
}

pub fn vault_key() -> &'static kakuri::crypt::VaultKey {
    static KEY: OnceLock<kakuri::crypt::VaultKey> = OnceLock::new();
    KEY.get_or_init(kakuri::crypt::VaultKey::generate)
}

/// Writes `plain` age-encrypted to `recipient` at `path`.
pub fn write_age(path: &Path, recipient: &dyn age::Recipient, plain: &[u8]) {
    use std::io::Write;
    let f = std::fs::File::create(path).expect("create age file");
    let mut w = kakuri::crypt::encrypt_stream(&[recipient], f).expect("age stream");
    w.write_all(plain).expect("age write");
    w.finish().expect("age finish");
}

/// Replaces every occurrence of `from` in `s`.
pub fn subst(s: &[u8], from: &str, to: &str) -> Vec<u8> {
    let from = from.as_bytes();
    if from.is_empty() {
        return s.to_vec();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `base` edited by `edits`, 3 bytes per edit: a little-endian u16
/// position (modulo the current length) and a value written there; the
/// value 0 cuts the text at that position instead.
pub fn edited(base: &str, edits: &[u8]) -> Vec<u8> {
    let mut v = base.as_bytes().to_vec();
    for e in edits.chunks_exact(3) {
        let at = u16::from_le_bytes([e[0], e[1]]) as usize % v.len().max(1);
        if e[2] == 0 {
            v.truncate(at);
        } else if let Some(b) = v.get_mut(at) {
            *b = e[2];
        }
    }
    v
}
