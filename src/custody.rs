//! Custody of the per-vault key: the custodians' recipients file, wrapping
//! the vault key for them (any one custodian, or k of n with Shamir shares),
//! unwrapping it with their identities, and re-wrapping for a new set.
//!
//! Recipients file: one custodian per line, `#` starts a comment.
//! `age1… [label]` or `ssh-ed25519 AAAA… [label]`.
//!
//! Any-one: `custody/gG-vault-key.age`, the vault key file age-encrypted to
//! every custodian. k-of-n: `custody/gG-share-NN.age`, one Shamir share
//! (GF(256), `blahaj`) of the vault key per custodian, age-encrypted to that
//! custodian alone. The signed manifest holds BLAKE3 of each share's
//! plaintext, so a share from another vault or an altered one is named
//! before anything is combined, and `key_check` confirms the combined key.
//! `G` is the custody generation, raised by every rewrap.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypt::VaultKey;
use crate::error::{Error, Result};
use crate::vault::AtomicFile;

pub const SHARE_FORMAT: &str = "kakuri-share-v1";

/// One custodian, as recorded (public information only) in the manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Custodian {
    pub label: String,
    /// `age1…` or `ssh-ed25519 AAAA…` (without comment).
    pub recipient: String,
}

/// One k-of-n share file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    pub file: String,
    /// Label of the custodian it is encrypted to.
    pub custodian: String,
    /// BLAKE3 of the share file's plaintext.
    pub commitment: String,
}

/// The manifest's custody section.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CustodyInfo {
    /// "any-one" or "threshold".
    pub scheme: String,
    /// Custodians needed to open the vault (1 for any-one).
    pub threshold: u32,
    /// Raised by every rewrap; part of the wrap file names.
    pub generation: u32,
    pub custodians: Vec<Custodian>,
    /// Files holding the wrapped key or its shares (relative to the vault).
    pub wraps: Vec<String>,
    /// Threshold scheme: one entry per share file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareInfo>,
    /// BLAKE3 derive_key("kakuri 2026-11 vault key check v1", vault key
    /// file secret line): confirms an unwrapped or combined key.
    pub key_check: String,
}

impl CustodyInfo {
    /// The custodians' labels, in recipients-file order.
    pub fn labels(&self) -> Vec<String> {
        self.custodians.iter().map(|c| c.label.clone()).collect()
    }
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

fn key_check(key: &VaultKey) -> String {
    hex::encode(*key.derive("kakuri 2026-11 vault key check v1"))
}

/// What [`wrap`] wrote (files are in place, synced).
pub struct Wrapped {
    pub info: CustodyInfo,
    /// (relative path, size, BLAKE3 of ciphertext) of each wrap file.
    pub files: Vec<crate::manifest::FileInfo>,
}

fn write_age_file(
    root: &Path,
    rel: &str,
    recipients: &[&dyn age::Recipient],
    plain: &[u8],
) -> Result<crate::manifest::FileInfo> {
    let path = root.join(rel);
    let file = AtomicFile::create(&path, 0o600)?;
    let hw = crate::vault::HashingWriter::new(file);
    let mut w = crate::crypt::encrypt_stream(recipients, hw)?;
    w.write_all(plain)
        .map_err(|e| Error::io(&path, "cannot write", e))?;
    let hw = w
        .finish()
        .map_err(|e| Error::io(&path, "cannot write", e))?;
    let (file, size, hash) = hw.finish();
    file.commit()?;
    Ok(crate::manifest::FileInfo {
        path: rel.to_string(),
        size,
        blake3: hex::encode(hash),
    })
}

/// Wraps the vault key for `recipients`: any one of them (threshold 1) or
/// any `threshold` of them (Shamir shares).
pub fn wrap(
    vault_root: &Path,
    key: &VaultKey,
    vault_id: &str,
    recipients: &[(Custodian, ParsedRecipient)],
    threshold: u32,
    generation: u32,
) -> Result<Wrapped> {
    let n = recipients.len() as u32;
    if threshold == 0 || threshold > n {
        return Err(Error::usage(format!(
            "--threshold {threshold} needs between 1 and {n} custodians (the recipients file lists {n})"
        )));
    }
    if n > 255 {
        return Err(Error::usage("at most 255 custodians"));
    }
    let custodians: Vec<Custodian> = recipients.iter().map(|(c, _)| c.clone()).collect();
    if threshold == 1 {
        let rel = format!("custody/g{generation}-vault-key.age");
        let dyns: Vec<&dyn age::Recipient> = recipients.iter().map(|(_, r)| r.as_dyn()).collect();
        let f = write_age_file(
            vault_root,
            &rel,
            &dyns,
            key.to_file_text(vault_id).as_bytes(),
        )?;
        return Ok(Wrapped {
            info: CustodyInfo {
                scheme: "any-one".into(),
                threshold: 1,
                generation,
                custodians,
                wraps: vec![rel],
                shares: Vec::new(),
                key_check: key_check(key),
            },
            files: vec![f],
        });
    }
    let secret = key.to_file_text(vault_id);
    let dealer = blahaj::Sharks(threshold as u8).dealer(secret.as_bytes());
    let mut files = Vec::new();
    let mut shares = Vec::new();
    for (i, ((c, r), share)) in recipients.iter().zip(dealer).enumerate() {
        let bytes = Zeroizing::new(Vec::<u8>::from(&share));
        let plain = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "format": SHARE_FORMAT,
                "vault_id": vault_id,
                "generation": generation,
                "threshold": threshold,
                "shares": n,
                "index": i + 1,
                "share": hex::encode(&*bytes),
            }))
            .expect("share serializes"),
        );
        let rel = format!("custody/g{generation}-share-{:02}.age", i + 1);
        files.push(write_age_file(vault_root, &rel, &[r.as_dyn()], &plain)?);
        shares.push(ShareInfo {
            file: rel,
            custodian: c.label.clone(),
            commitment: blake3::hash(&plain).to_hex().to_string(),
        });
    }
    Ok(Wrapped {
        info: CustodyInfo {
            scheme: "threshold".into(),
            threshold,
            generation,
            custodians,
            wraps: shares.iter().map(|s| s.file.clone()).collect(),
            shares,
            key_check: key_check(key),
        },
        files,
    })
}

enum Unwrapped {
    NotMine,
    Plain(Zeroizing<Vec<u8>>),
}

fn try_decrypt(
    vault_root: &Path,
    rel: &str,
    identities: &[Box<dyn age::Identity>],
) -> Result<Unwrapped> {
    let path = vault_root.join(rel);
    let f = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::state(format!(
                "{rel}: the wrapped vault key is gone (was the vault destroyed?)"
            ))
        } else {
            Error::io(&path, "cannot open", e)
        }
    })?;
    let d = age::Decryptor::new_buffered(std::io::BufReader::new(f))
        .map_err(|e| Error::integrity(format!("{rel}: not a valid age file ({e})")))?;
    let mut r = match d.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => return Ok(Unwrapped::NotMine),
        Err(e) => return Err(Error::integrity(format!("{rel}: cannot unwrap ({e})"))),
    };
    let mut plain = Zeroizing::new(Vec::new());
    r.read_to_end(&mut plain)
        .map_err(|e| Error::integrity(format!("{rel}: damaged ({e})")))?;
    Ok(Unwrapped::Plain(plain))
}

/// Unwraps (or combines) the vault key with the custodians' identities.
pub fn unwrap(
    vault_root: &Path,
    info: &CustodyInfo,
    vault_id: &str,
    identities: &[Box<dyn age::Identity>],
) -> Result<VaultKey> {
    let key = if info.scheme == "any-one" {
        let rel = info
            .wraps
            .first()
            .ok_or_else(|| Error::integrity("manifest: custody lists no wrap file"))?;
        match try_decrypt(vault_root, rel, identities)? {
            Unwrapped::NotMine => {
                return Err(Error::key(format!(
                    "none of the given identities is a custodian of this vault ({rel})"
                )))
            }
            Unwrapped::Plain(p) => {
                let text = std::str::from_utf8(&p)
                    .map_err(|_| Error::integrity(format!("{rel}: not a vault key")))?;
                VaultKey::parse(text)?
            }
        }
    } else if info.scheme == "threshold" {
        let mut got: Vec<(usize, blahaj::Share)> = Vec::new();
        for (i, s) in info.shares.iter().enumerate() {
            let plain = match try_decrypt(vault_root, &s.file, identities)? {
                Unwrapped::NotMine => continue,
                Unwrapped::Plain(p) => p,
            };
            let altered = || {
                Error::integrity(format!(
                    "{}: share is altered or belongs to another vault (it does not match the signed manifest)",
                    s.file
                ))
            };
            if blake3::hash(&plain).to_hex().as_str() != s.commitment {
                return Err(altered());
            }
            #[derive(Deserialize)]
            struct ShareFile {
                format: String,
                vault_id: String,
                index: usize,
                share: String,
            }
            let sf: ShareFile = serde_json::from_slice(&plain).map_err(|_| altered())?;
            if sf.format != SHARE_FORMAT || sf.vault_id != vault_id || sf.index != i + 1 {
                return Err(altered());
            }
            let bytes = Zeroizing::new(hex::decode(&sf.share).map_err(|_| altered())?);
            let share = blahaj::Share::try_from(&bytes[..]).map_err(|_| altered())?;
            got.push((i, share));
        }
        let k = info.threshold as usize;
        if got.len() < k {
            let have: Vec<&str> = got
                .iter()
                .map(|(i, _)| info.shares[*i].custodian.as_str())
                .collect();
            return Err(Error::key(format!(
                "this vault needs {k} of {} custodians; the given identities open {} share(s){}: {} more needed",
                info.shares.len(),
                got.len(),
                if have.is_empty() { String::new() } else { format!(" ({})", have.join(", ")) },
                k - got.len()
            )));
        }
        let shares: Vec<blahaj::Share> = got.into_iter().take(k).map(|(_, s)| s).collect();
        let secret = Zeroizing::new(
            blahaj::Sharks(k as u8)
                .recover(&shares)
                .map_err(|e| Error::integrity(format!("custody: shares do not combine ({e})")))?,
        );
        let text = std::str::from_utf8(&secret)
            .map_err(|_| Error::integrity("custody: combined shares are not a vault key"))?;
        VaultKey::parse(text)?
    } else {
        return Err(Error::integrity(format!(
            "manifest: unknown custody scheme {:?}",
            info.scheme
        )));
    };
    use subtle::ConstantTimeEq;
    if !bool::from(key_check(&key).as_bytes().ct_eq(info.key_check.as_bytes())) {
        return Err(Error::integrity(
            "custody: the unwrapped key does not match the manifest's key check",
        ));
    }
    Ok(key)
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

    fn custodians(
        n: usize,
    ) -> (
        Vec<age::x25519::Identity>,
        Vec<(Custodian, ParsedRecipient)>,
    ) {
        let ids: Vec<_> = (0..n).map(|_| age::x25519::Identity::generate()).collect();
        let rs = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    Custodian {
                        label: format!("c{i}"),
                        recipient: id.to_public().to_string(),
                    },
                    ParsedRecipient::X25519(id.to_public()),
                )
            })
            .collect();
        (ids, rs)
    }

    fn boxed(ids: &[&age::x25519::Identity]) -> Vec<Box<dyn age::Identity>> {
        ids.iter()
            .map(|i| Box::new((*i).clone()) as Box<dyn age::Identity>)
            .collect()
    }

    #[test]
    fn two_of_three_opens_with_any_two_and_names_the_missing_count() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("custody")).unwrap();
        let key = VaultKey::generate();
        let (ids, rs) = custodians(3);
        let w = wrap(d.path(), &key, "v1", &rs, 2, 1).unwrap();
        assert_eq!(w.files.len(), 3);
        for pair in [[0, 1], [1, 2], [0, 2]] {
            let k = unwrap(
                d.path(),
                &w.info,
                "v1",
                &boxed(&[&ids[pair[0]], &ids[pair[1]]]),
            )
            .unwrap();
            assert_eq!(k.derive("t").as_slice(), key.derive("t").as_slice());
        }
        let e = unwrap(d.path(), &w.info, "v1", &boxed(&[&ids[1]]))
            .err()
            .unwrap();
        assert!(
            e.msg.contains("needs 2 of 3") && e.msg.contains("1 more needed"),
            "{}",
            e.msg
        );
        // A share from another vault, swapped in under the same name, is named.
        let d2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(d2.path().join("custody")).unwrap();
        wrap(d2.path(), &VaultKey::generate(), "v2", &rs, 2, 1).unwrap();
        std::fs::remove_file(d.path().join("custody/g1-share-02.age")).unwrap();
        std::fs::copy(
            d2.path().join("custody/g1-share-02.age"),
            d.path().join("custody/g1-share-02.age"),
        )
        .unwrap();
        let e = unwrap(d.path(), &w.info, "v1", &boxed(&[&ids[0], &ids[1]]))
            .err()
            .unwrap();
        assert!(
            e.msg.contains("custody/g1-share-02.age: share is altered"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn threshold_out_of_range_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (_, rs) = custodians(2);
        assert!(wrap(d.path(), &VaultKey::generate(), "v", &rs, 3, 1).is_err());
        assert!(wrap(d.path(), &VaultKey::generate(), "v", &rs, 0, 1).is_err());
    }
}

/// What `custody rewrap` did.
#[derive(Serialize, Debug)]
pub struct RewrapReport {
    pub generation: u32,
    pub scheme: String,
    pub threshold: u32,
    pub custodians: Vec<String>,
    pub erased: Vec<crate::erase::Erased>,
}

/// Custody files present but not listed in the manifest: wraps of an
/// earlier generation left by an interrupted rewrap. They are erased.
pub fn stale_wraps(root: &Path, info: &CustodyInfo) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.join(crate::vault::CUSTODY_DIR)) {
        for e in rd.flatten() {
            let rel = format!(
                "{}/{}",
                crate::vault::CUSTODY_DIR,
                e.file_name().to_string_lossy()
            );
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) && !info.wraps.contains(&rel) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Re-wraps the vault key for a new custodian set without touching the
/// shards: new wraps, a new signed manifest, then the old wraps erased.
pub fn rewrap(
    opened: &crate::lookup::Opened,
    recipients: &[(Custodian, ParsedRecipient)],
    threshold: u32,
    sign_key: &ssh_key::PrivateKey,
    operator: &str,
) -> Result<RewrapReport> {
    let root = &opened.dir.root;
    let old = &opened.loaded.manifest;
    // Leftovers of an interrupted earlier rewrap go first.
    let mut erased = Vec::new();
    for rel in stale_wraps(root, &old.custody) {
        erased.push(crate::erase::erase_file(root, &rel)?);
    }
    let generation = old.custody.generation + 1;
    let w = wrap(
        root,
        &opened.key,
        &old.vault_id,
        recipients,
        threshold,
        generation,
    )?;
    crate::faults::point("rewrap-wrapped");
    let mut m = old.clone();
    m.files.retain(|f| !old.custody.wraps.contains(&f.path));
    let mut files = w.files;
    files.extend(m.files);
    m.files = files;
    m.custody = w.info;
    m.signer = sign_key
        .public_key()
        .to_openssh()
        .map_err(|e| Error::internal(format!("key: {e}")))?;
    m.supersedes = Some(blake3::hash(&opened.loaded.bytes).to_hex().to_string());
    crate::manifest::replace_signed(root, &m, sign_key)?;
    crate::faults::point("rewrap-replaced");
    for rel in &old.custody.wraps {
        erased.push(crate::erase::erase_file(root, rel)?);
        crate::faults::point("rewrap-erased-one");
    }
    let report = RewrapReport {
        generation,
        scheme: m.custody.scheme.clone(),
        threshold: m.custody.threshold,
        custodians: m.custody.labels(),
        erased,
    };
    crate::audit::append(
        root,
        &m.vault_id,
        sign_key,
        crate::audit::Event {
            action: "rewrap",
            operator,
            case: None,
            reason: None,
            result: serde_json::json!({
                "generation": generation,
                "threshold": report.threshold,
                "custodians": report.custodians,
                "erased": report.erased.iter().map(|e| e.path.clone()).collect::<Vec<_>>(),
            }),
            queries: Vec::new(),
        },
    )?;
    Ok(report)
}
