//! Custody of the per-vault key: the custodians' recipients file, wrapping
//! the vault key for them, and unwrapping it with their identities.
//!
//! Recipients file: one custodian per line, `#` starts a comment.
//! `age1… [label]` or `ssh-ed25519 AAAA… [label]`.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypt::VaultKey;
use crate::error::{Error, Result};
use crate::vault::{self, AtomicFile};

/// One custodian, as recorded (public information only) in the manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Custodian {
    pub label: String,
    /// `age1…` or `ssh-ed25519 AAAA…` (without comment).
    pub recipient: String,
}

/// The manifest's custody section.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CustodyInfo {
    /// "any-one": any one custodian's identity unwraps the vault key.
    pub scheme: String,
    pub threshold: u32,
    pub custodians: Vec<Custodian>,
    /// Files holding the wrapped key (relative to the vault).
    pub wraps: Vec<String>,
}

pub enum ParsedRecipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl ParsedRecipient {
    pub fn as_dyn(&self) -> &dyn age::Recipient {
        match self {
            ParsedRecipient::X25519(r) => r,
            ParsedRecipient::Ssh(r) => r,
        }
    }
}

/// Parses a recipients file. Errors name the file and line, never the content.
pub fn parse_recipients(path: &Path) -> Result<Vec<(Custodian, ParsedRecipient)>> {
    let text =
        std::fs::read(path).map_err(|e| Error::io(path, "cannot read recipients file", e))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::input(format!("{}: recipients file is not UTF-8", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let mut parts = l.split_whitespace();
        let first = parts.next().unwrap_or_default();
        let (recipient, parsed) = if first.starts_with("age1") {
            let r = age::x25519::Recipient::from_str(first)
                .map_err(|_| Error::input(format!("{}: not a valid age recipient", at())))?;
            (first.to_string(), ParsedRecipient::X25519(r))
        } else if first == "ssh-ed25519" {
            let b64 = parts
                .next()
                .ok_or_else(|| Error::input(format!("{}: ssh-ed25519 line without a key", at())))?;
            let s = format!("ssh-ed25519 {b64}");
            let r = age::ssh::Recipient::from_str(&s).map_err(|_| {
                Error::input(format!("{}: not a valid ssh-ed25519 public key", at()))
            })?;
            (s, ParsedRecipient::Ssh(r))
        } else if first.starts_with("ssh-") || first.starts_with("ecdsa-") {
            return Err(Error::input(format!(
                "{}: only age1… and ssh-ed25519 custodian keys are accepted",
                at()
            )));
        } else {
            return Err(Error::input(format!(
                "{}: expected an age1… or ssh-ed25519 recipient",
                at()
            )));
        };
        let label: Vec<&str> = parts.collect();
        let label = if label.is_empty() {
            format!("custodian-{}", out.len() + 1)
        } else {
            label.join(" ")
        };
        if out
            .iter()
            .any(|(c, _): &(Custodian, _)| c.recipient == recipient)
        {
            return Err(Error::input(format!(
                "{}: the same custodian key is listed twice",
                at()
            )));
        }
        out.push((Custodian { label, recipient }, parsed));
    }
    if out.is_empty() {
        return Err(Error::input(format!(
            "{}: no custodian recipients in file",
            path.display()
        )));
    }
    Ok(out)
}

/// Writes `custody/vault-key.age`: the vault key, encrypted to every custodian.
pub fn wrap_vault_key(
    vault_root: &Path,
    key: &VaultKey,
    vault_id: &str,
    recipients: &[(Custodian, ParsedRecipient)],
) -> Result<CustodyInfo> {
    let path = vault_root.join(vault::VAULT_KEY_WRAP);
    let file = AtomicFile::create(&path, 0o600)?;
    let dyns: Vec<&dyn age::Recipient> = recipients.iter().map(|(_, r)| r.as_dyn()).collect();
    let mut w = crate::crypt::encrypt_stream(&dyns, file)?;
    w.write_all(key.to_file_text(vault_id).as_bytes())
        .map_err(|e| Error::io(&path, "cannot write", e))?;
    let file = w
        .finish()
        .map_err(|e| Error::io(&path, "cannot write", e))?;
    file.commit()?;
    Ok(CustodyInfo {
        scheme: "any-one".into(),
        threshold: 1,
        custodians: recipients.iter().map(|(c, _)| c.clone()).collect(),
        wraps: vec![vault::VAULT_KEY_WRAP.into()],
    })
}

/// Unwraps the vault key with the custodians' identities.
pub fn unwrap_vault_key(
    vault_root: &Path,
    identities: &[Box<dyn age::Identity>],
) -> Result<VaultKey> {
    let path = vault_root.join(vault::VAULT_KEY_WRAP);
    let f = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::state(format!(
                "{}: the wrapped vault key is gone (was the vault destroyed?)",
                vault::VAULT_KEY_WRAP
            ))
        } else {
            Error::io(&path, "cannot open", e)
        }
    })?;
    let d = age::Decryptor::new_buffered(std::io::BufReader::new(f)).map_err(|e| {
        Error::integrity(format!(
            "{}: not a valid age file ({e})",
            vault::VAULT_KEY_WRAP
        ))
    })?;
    let mut r = d
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::key(format!(
                "none of the given identities is a custodian of this vault ({})",
                vault::VAULT_KEY_WRAP
            )),
            e => Error::integrity(format!(
                "{}: cannot unwrap the vault key ({e})",
                vault::VAULT_KEY_WRAP
            )),
        })?;
    let mut text = Zeroizing::new(String::new());
    r.read_to_string(&mut text)
        .map_err(|e| Error::integrity(format!("{}: damaged ({e})", vault::VAULT_KEY_WRAP)))?;
    VaultKey::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_example_parses_with_labels() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys.example");
        let r = parse_recipients(&p).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].0.label, "legal-counsel");
        assert_eq!(r[2].0.label, "dpo (hardware token)");
        assert!(r[2].0.recipient.starts_with("ssh-ed25519 "));
    }

    #[test]
    fn junk_and_duplicates_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r");
        std::fs::write(&p, "# c\n\nnot-a-key x\n").unwrap();
        let e = parse_recipients(&p).err().unwrap();
        assert!(
            e.msg
                .ends_with(":3: expected an age1… or ssh-ed25519 recipient"),
            "{}",
            e.msg
        );
        let k = age::x25519::Identity::generate().to_public().to_string();
        std::fs::write(&p, format!("{k} a\n{k} b\n")).unwrap();
        assert!(parse_recipients(&p)
            .err()
            .unwrap()
            .msg
            .contains(":2: the same custodian key is listed twice"));
        std::fs::write(&p, "ssh-rsa AAAAB3NzaC1yc2E x\n").unwrap();
        assert!(parse_recipients(&p)
            .err()
            .unwrap()
            .msg
            .contains(":1: only age1"));
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(parse_recipients(&p)
            .err()
            .unwrap()
            .msg
            .contains("no custodian"));
    }
}
