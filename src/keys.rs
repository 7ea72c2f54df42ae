//! Key files: custodian identities (age or OpenSSH ed25519), operator
//! signing keys (OpenSSH ed25519), and `keygen`.
//!
//! Secret key files are created 0600 and refused when group or others can
//! read them, as OpenSSH does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use age::secrecy::ExposeSecret;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::vault::AtomicFile;

/// Refuses a secret key file that group or others may read.
pub fn check_private_perms(path: &Path) -> Result<()> {
    let md = fs::metadata(path).map_err(|e| Error::io(path, "cannot read key file", e))?;
    if !md.is_file() {
        return Err(Error::key(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::key(format!(
            "{}: permissions {mode:04o} are too open for a secret key; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>> {
    check_private_perms(path)?;
    let bytes =
        Zeroizing::new(fs::read(path).map_err(|e| Error::io(path, "cannot read key file", e))?);
    let s = std::str::from_utf8(&bytes)
        .map_err(|_| Error::key(format!("{}: key file is not UTF-8 text", path.display())))?;
    Ok(Zeroizing::new(s.to_string()))
}

/// Loads custodian identities from `-i` files: age-keygen files (one or
/// more `AGE-SECRET-KEY-1…` lines) or unencrypted OpenSSH ed25519 keys.
pub fn load_identities(paths: &[std::path::PathBuf]) -> Result<Vec<Box<dyn age::Identity>>> {
    if paths.is_empty() {
        return Err(Error::usage(
            "this command needs a custodian identity: pass -i FILE",
        ));
    }
    let mut out: Vec<Box<dyn age::Identity>> = Vec::new();
    for p in paths {
        let text = read_secret_file(p)?;
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            let id =
                age::ssh::Identity::from_buffer(text.as_bytes(), Some(p.display().to_string()))
                    .map_err(|_| {
                        Error::key(format!("{}: not a valid OpenSSH private key", p.display()))
                    })?;
            match id {
                age::ssh::Identity::Unencrypted(_) => out.push(Box::new(id)),
                age::ssh::Identity::Encrypted(_) => {
                    return Err(Error::key(format!(
                        "{}: passphrase-protected SSH keys are not supported yet; use an age identity or an unencrypted key on the air-gapped host",
                        p.display()
                    )))
                }
                age::ssh::Identity::Unsupported(_) => {
                    return Err(Error::key(format!(
                        "{}: unsupported SSH key type (use ssh-ed25519)",
                        p.display()
                    )))
                }
            }
        } else {
            let f = age::IdentityFile::from_buffer(text.as_bytes())
                .map_err(|e| Error::key(format!("{}: {e}", p.display())))?;
            let ids = f
                .into_identities()
                .map_err(|e| Error::key(format!("{}: {e}", p.display())))?;
            if ids.is_empty() {
                return Err(Error::key(format!("{}: no identity in file", p.display())));
            }
            out.extend(ids);
        }
    }
    Ok(out)
}

/// Loads the operator's OpenSSH ed25519 signing key.
pub fn load_signing_key(path: &Path) -> Result<PrivateKey> {
    let text = read_secret_file(path)?;
    let key = PrivateKey::from_openssh(text.as_bytes())
        .map_err(|_| Error::key(format!("{}: not an OpenSSH private key", path.display())))?;
    if key.is_encrypted() {
        return Err(Error::key(format!(
            "{}: passphrase-protected signing keys are not supported yet",
            path.display()
        )));
    }
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(Error::key(format!(
            "{}: the signing key must be ssh-ed25519",
            path.display()
        )));
    }
    Ok(key)
}

/// Reads a public key (`.pub` line or allowed_signers line) for pinning.
pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let text =
        fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read public key", e))?;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        // Accept "ssh-ed25519 AAAA… comment" or "principal [options] ssh-ed25519 AAAA…".
        if let Some(i) = l.find("ssh-ed25519 ") {
            if let Ok(k) = PublicKey::from_openssh(&l[i..]) {
                return Ok(k);
            }
        }
    }
    Err(Error::key(format!(
        "{}: no ssh-ed25519 public key found",
        path.display()
    )))
}

pub fn fingerprint(k: &PublicKey) -> String {
    k.fingerprint(HashAlg::Sha256).to_string()
}

/// What keygen made.
pub struct Generated {
    pub identity_file: Option<(std::path::PathBuf, String)>,
    pub signing_key: Option<(std::path::PathBuf, String)>,
}

/// Writes an age-keygen compatible identity; returns its recipient.
pub fn generate_age_identity(path: &Path) -> Result<String> {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let now = crate::vault::now_rfc3339();
    let text = Zeroizing::new(format!(
        "# created: {now}\n# public key: {recipient}\n{}\n",
        id.to_string().expose_secret()
    ));
    let mut f = AtomicFile::create(path, 0o600)?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, "cannot write", e))?;
    f.commit()?;
    Ok(recipient)
}

/// Writes an OpenSSH ed25519 key pair (`path` 0600, `path.pub`); returns
/// the public key line.
pub fn generate_signing_key(path: &Path, comment: &str) -> Result<String> {
    let mut key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| Error::internal(format!("key generation failed: {e}")))?;
    key.set_comment(comment);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Error::internal(format!("key encoding failed: {e}")))?;
    let pub_line = key
        .public_key()
        .to_openssh()
        .map_err(|e| Error::internal(format!("key encoding failed: {e}")))?;
    let pub_path = path.with_file_name(format!(
        "{}.pub",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    if pub_path.exists() {
        return Err(Error::refused(format!(
            "{} already exists",
            pub_path.display()
        )));
    }
    let mut f = AtomicFile::create(path, 0o600)?;
    f.write_all(pem.as_bytes())
        .map_err(|e| Error::io(path, "cannot write", e))?;
    f.commit()?;
    crate::vault::write_atomic(&pub_path, format!("{pub_line}\n").as_bytes(), 0o644)?;
    Ok(pub_line)
}
