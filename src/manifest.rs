//! The manifest: the signed, clear-text description of a vault.
//!
//! `manifest.json` holds counts, the retention date, the Merkle root over
//! the record hashes, the custodians' public keys, and the size and BLAKE3
//! of every ciphertext file. `manifest.json.sig` is an SSHSIG over the exact
//! bytes of `manifest.json` with namespace [`NAMESPACE`], so
//! `ssh-keygen -Y verify -n kakuri-manifest@v1 …` checks it. Nothing in it
//! lets anyone test a guess about a person: no record hashes, no names.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::custody::CustodyInfo;
use crate::error::{Error, Result};
use crate::merkle::Hash;
use crate::vault::{self, VaultDir};

/// SSHSIG namespace of manifest signatures.
pub const NAMESPACE: &str = "kakuri-manifest@v1";
pub const FORMAT: &str = "kakuri-vault";
pub const VERSION: u32 = 1;
/// More records than any vault holds (2^40); larger counts are refused.
pub const MAX_RECORDS: u64 = 1 << 40;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MerkleInfo {
    /// "blake3-rfc6962"
    pub alg: String,
    pub size: u64,
    pub root: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexInfo {
    pub keys: String,
    pub records: String,
    pub tree: String,
    /// Record ids in ordinal order (their offsets are in records.age).
    pub ids: String,
    /// Number of blind-index entries in keys.age.
    pub entries: u64,
    pub page: u32,
    pub tree_tile: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ShardInfo {
    pub file: String,
    pub first_ordinal: u64,
    pub records: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub vault_id: String,
    pub created: String,
    pub retain_until: String,
    pub tool: String,
    pub records: u64,
    pub image_bytes: u64,
    pub doc_types: BTreeMap<String, u64>,
    pub merkle: MerkleInfo,
    pub index: IndexInfo,
    pub custody: CustodyInfo,
    pub signer: String,
    pub zstd_level: i32,
    pub shards: Vec<ShardInfo>,
    pub files: Vec<FileInfo>,
    /// Reed–Solomon parity over the shards and index files (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<crate::parity::ParityInfo>,
    /// Set when this manifest replaced an earlier one (custody rewrap):
    /// BLAKE3 of the manifest it supersedes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
}

impl Manifest {
    pub fn root(&self) -> Result<Hash> {
        parse_hash(&self.merkle.root)
            .ok_or_else(|| Error::integrity("manifest: merkle root is not 32 hex bytes"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
            Error::integrity(format!(
                "{}: not a valid manifest (line {}: {})",
                vault::MANIFEST,
                e.line(),
                e.classify_name()
            ))
        })?;
        if m.format != FORMAT {
            return Err(Error::integrity(format!(
                "{}: not a kakuri manifest",
                vault::MANIFEST
            )));
        }
        if m.version != VERSION {
            return Err(Error::integrity(format!(
                "{}: unsupported format version {} (this kakuri reads version {VERSION})",
                vault::MANIFEST,
                m.version
            )));
        }
        if m.index.page != crate::index::PAGE as u32
            || m.index.tree_tile != crate::merkle::TILE as u32
            || m.index.keys != vault::KEYS_FILE
            || m.index.records != vault::RECORDS_FILE
            || m.index.tree != vault::TREE_FILE
            || m.index.ids != vault::IDS_FILE
            || m.merkle.alg != "blake3-rfc6962"
        {
            return Err(Error::integrity(format!(
                "{}: index layout or hash algorithm differs from format version {VERSION}",
                vault::MANIFEST
            )));
        }
        if m.merkle.size != m.records {
            return Err(Error::integrity(format!(
                "{}: merkle size differs from record count",
                vault::MANIFEST
            )));
        }
        // Counts bound every offset a reader computes from them.
        let bad = |what: &str| Error::integrity(format!("{}: {what}", vault::MANIFEST));
        if m.records == 0 || m.records > MAX_RECORDS {
            return Err(bad("record count out of range"));
        }
        if m.index.entries < m.records || m.index.entries > 4 * m.records {
            return Err(bad("blind-index entry count out of range"));
        }
        let mut next = 0u64;
        for s in &m.shards {
            if s.first_ordinal != next || s.records == 0 {
                return Err(bad("shards do not cover the records contiguously"));
            }
            next = next.saturating_add(s.records);
        }
        if next != m.records {
            return Err(bad("shards do not cover the records contiguously"));
        }
        m.root()?;
        if let Some(p) = &m.parity {
            p.params()?;
        }
        Ok(m)
    }

    pub fn signer_key(&self) -> Result<PublicKey> {
        PublicKey::from_openssh(&self.signer).map_err(|_| {
            Error::integrity(format!(
                "{}: signer is not an OpenSSH public key",
                vault::MANIFEST
            ))
        })
    }

    pub fn file(&self, path: &str) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Days from today (UTC) until the retention date; negative once passed.
    pub fn days_left(&self) -> Result<i64> {
        let d = parse_date(&self.retain_until)?;
        Ok((d - time::OffsetDateTime::now_utc().date()).whole_days())
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong or missing field",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

pub fn parse_hash(s: &str) -> Option<Hash> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

pub fn parse_date(s: &str) -> Result<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| Error::usage(format!("not a date (expected YYYY-MM-DD): {s}")))
}

/// Signs manifest bytes; returns the armored SSHSIG.
pub fn sign(bytes: &[u8], key: &PrivateKey) -> Result<String> {
    sign_ns(bytes, key, NAMESPACE)
}

/// Signs `bytes` in namespace `ns`; returns the armored SSHSIG.
///
/// The message hash is SHA-256: every lookup verifies the manifest's
/// signature (about 100 KB at 1.7 M records), and SHA-256 runs on the
/// CPU's SHA extensions where there are any, three to four times faster
/// than SHA-512 here. [`verify_sig`] accepts either (the signature names
/// its hash, and `ssh-keygen -Y verify` accepts both), so vaults signed
/// with SHA-512 still verify.
pub fn sign_ns(bytes: &[u8], key: &PrivateKey, ns: &str) -> Result<String> {
    let sig = key
        .sign(ns, HashAlg::Sha256, bytes)
        .map_err(|e| Error::internal(format!("signing failed: {e}")))?;
    sig.to_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("signature encoding failed: {e}")))
}

/// Verifies an armored SSHSIG over `bytes` by `signer` in namespace `ns`.
pub fn verify_sig(
    bytes: &[u8],
    armored: &str,
    signer: &PublicKey,
    ns: &str,
    what: &str,
) -> Result<()> {
    judge(verify_by_own_key(bytes, armored, ns, what)?, signer, what)
}

/// Checks an armored SSHSIG over `bytes` in namespace `ns` against the
/// public key it carries; returns that key and whether the signature
/// verifies, for [`judge`] to compare with the signer it expects.
fn verify_by_own_key(
    bytes: &[u8],
    armored: &str,
    ns: &str,
    what: &str,
) -> Result<(ssh_key::public::KeyData, bool)> {
    let sig = SshSig::from_pem(armored)
        .map_err(|_| Error::integrity(format!("{what}: signature file is not an SSHSIG")))?;
    let key = PublicKey::from(sig.public_key().clone());
    let valid = key.verify(ns, bytes, &sig).is_ok();
    Ok((sig.public_key().clone(), valid))
}

/// The verdict on a signature checked by [`verify_by_own_key`]: made by
/// `signer`, and valid.
fn judge(
    (sig_key, valid): (ssh_key::public::KeyData, bool),
    signer: &PublicKey,
    what: &str,
) -> Result<()> {
    if sig_key != *signer.key_data() {
        return Err(Error::integrity(format!(
            "{what}: signed by a different key than the one it names"
        )));
    }
    if !valid {
        return Err(Error::integrity(format!(
            "{what}: signature does not verify (the file was changed after signing)"
        )));
    }
    Ok(())
}

/// A manifest read from a vault, with its signature checked.
pub struct Loaded {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub signer: PublicKey,
}

const STAGED: &str = ".manifest.json.next";
const STAGED_SIG: &str = ".manifest.json.sig.next";

/// Replaces the manifest and its signature crash-safely: both are staged
/// and synced first, then renamed (signature, then manifest). A crash
/// between the renames is rolled forward by [`load`], which finds the
/// staged pair still verifying.
pub fn replace_signed(root: &Path, m: &Manifest, key: &PrivateKey) -> Result<()> {
    if key.public_key().key_data() != m.signer_key()?.key_data() {
        return Err(Error::internal("manifest signer differs from signing key"));
    }
    let bytes = m.to_bytes();
    let sig = sign(&bytes, key)?;
    let _ = std::fs::remove_file(root.join(STAGED));
    let _ = std::fs::remove_file(root.join(STAGED_SIG));
    vault::write_atomic(&root.join(STAGED_SIG), sig.as_bytes(), 0o444)?;
    vault::write_atomic(&root.join(STAGED), &bytes, 0o444)?;
    crate::faults::point("manifest-staged");
    roll_forward(root)?;
    vault::replace_atomic(
        &root.join(vault::ALLOWED_SIGNERS),
        allowed_signers_line(key.public_key()).as_bytes(),
        0o444,
    )
}

/// Completes an interrupted [`replace_signed`]: if a staged manifest and
/// signature exist and verify together, move them into place; a lone
/// staged file (staging was interrupted) is removed.
fn roll_forward(root: &Path) -> Result<()> {
    let (mp, sp) = (root.join(STAGED), root.join(STAGED_SIG));
    let staged_pair_verifies = |sig_path: &Path| -> bool {
        let (Ok(bytes), Ok(sig)) = (std::fs::read(&mp), std::fs::read_to_string(sig_path)) else {
            return false;
        };
        Manifest::parse(&bytes)
            .and_then(|m| m.signer_key())
            .and_then(|k| verify_sig(&bytes, &sig, &k, NAMESPACE, STAGED))
            .is_ok()
    };
    match (mp.exists(), sp.exists()) {
        (false, false) => return Ok(()),
        // Both staged: move the signature, then the manifest.
        (true, true) if staged_pair_verifies(&sp) => {
            std::fs::rename(&sp, root.join(vault::MANIFEST_SIG))
                .map_err(|e| Error::io(&sp, "cannot move into place", e))?;
            crate::faults::point("manifest-sig-renamed");
        }
        // Interrupted between the two renames: the signature in place
        // already belongs to the staged manifest.
        (true, false) if staged_pair_verifies(&root.join(vault::MANIFEST_SIG)) => {}
        // Staging itself was interrupted: the old pair is still whole.
        _ => {
            let _ = std::fs::remove_file(&mp);
            let _ = std::fs::remove_file(&sp);
            return vault::fsync_dir(root);
        }
    }
    std::fs::rename(&mp, root.join(vault::MANIFEST))
        .map_err(|e| Error::io(&mp, "cannot move into place", e))?;
    vault::fsync_dir(root)
}

/// Reads and verifies the manifest. With `trusted`, the signer must be that key.
pub fn load(v: &VaultDir, trusted: Option<&PublicKey>) -> Result<Loaded> {
    roll_forward(&v.root)?;
    let mp = v.path(vault::MANIFEST);
    let bytes = std::fs::read(&mp).map_err(|e| Error::io(&mp, "cannot read", e))?;
    let sp = v.path(vault::MANIFEST_SIG);
    let armored = std::fs::read_to_string(&sp).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::integrity(format!(
            "{} is missing: the manifest cannot be checked",
            vault::MANIFEST_SIG
        )),
        std::io::ErrorKind::InvalidData => {
            Error::integrity(format!("{}: not an SSHSIG", vault::MANIFEST_SIG))
        }
        _ => Error::io(&sp, "cannot read", e),
    });
    // Parsing (about 100 KB of JSON at 1.7 M records) and checking the
    // signature (hashing the same bytes) do not depend on each other: the
    // signature is checked on a second core against the key it carries,
    // and that key is then compared with the manifest's signer. Problems
    // are reported in the order a reader would check them.
    let (parsed, checked) = std::thread::scope(|s| {
        let checked = armored.as_ref().ok().map(|a| {
            let bytes = &bytes;
            s.spawn(move || verify_by_own_key(bytes, a, NAMESPACE, vault::MANIFEST))
        });
        let parsed = Manifest::parse(&bytes);
        let checked = checked.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::internal("checking the manifest signature failed")))
        });
        (parsed, checked)
    });
    let manifest = parsed?;
    let signer = manifest.signer_key()?;
    if let Some(t) = trusted {
        if t.key_data() != signer.key_data() {
            return Err(Error::integrity(format!(
                "{}: signed by {}, not by the trusted signer {}",
                vault::MANIFEST,
                crate::keys::fingerprint(&signer),
                crate::keys::fingerprint(t)
            )));
        }
    }
    armored?;
    let checked = checked.expect("checked when the signature was read")?;
    judge(checked, &signer, vault::MANIFEST)?;
    Ok(Loaded {
        manifest,
        bytes,
        signer,
    })
}

/// The allowed_signers line for ssh-keygen -Y verify.
pub fn allowed_signers_line(signer: &PublicKey) -> String {
    let mut k = signer.clone();
    k.set_comment("");
    format!(
        "kakuri-operator namespaces=\"{NAMESPACE}\" {}\n",
        k.to_openssh().unwrap_or_default().trim()
    )
}

pub fn write_signed(root: &Path, m: &Manifest, key: &PrivateKey) -> Result<()> {
    let bytes = m.to_bytes();
    let sig = sign(&bytes, key)?;
    vault::write_atomic(
        &root.join(vault::ALLOWED_SIGNERS),
        allowed_signers_line(key.public_key()).as_bytes(),
        0o444,
    )?;
    vault::write_atomic(&root.join(vault::MANIFEST_SIG), sig.as_bytes(), 0o444)?;
    crate::faults::point("pack-signature-written");
    // The manifest is written last: its presence marks a complete vault.
    vault::write_atomic(&root.join(vault::MANIFEST), &bytes, 0o444)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_interrupted_between_renames_rolls_forward() {
        let d = tempfile::tempdir().unwrap();
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": FORMAT, "version": VERSION, "vault_id": "v", "created": "c", "retain_until": "2099-01-01",
            "tool": "t", "records": 1, "image_bytes": 1, "doc_types": {},
            "merkle": {"alg": "blake3-rfc6962", "size": 1, "root": hex::encode([0u8; 32])},
            "index": {"keys": vault::KEYS_FILE, "records": vault::RECORDS_FILE, "tree": vault::TREE_FILE, "ids": vault::IDS_FILE,
                      "entries": 2, "page": crate::index::PAGE, "tree_tile": crate::merkle::TILE},
            "custody": {"scheme": "any-one", "threshold": 1, "generation": 1, "custodians": [], "wraps": [], "key_check": ""},
            "signer": key.public_key().to_openssh().unwrap(), "zstd_level": 3, "shards": [{"file": "shards/000000.tar.zst.age", "first_ordinal": 0, "records": 1}], "files": []
        }))
        .unwrap();
        write_signed(d.path(), &m, &key).unwrap();
        let v = VaultDir::new(d.path());
        assert_eq!(load(&v, None).unwrap().manifest.custody.generation, 1);
        // Stage generation 2, then "crash" after the signature rename.
        m.custody.generation = 2;
        let bytes = m.to_bytes();
        std::fs::write(d.path().join(STAGED), &bytes).unwrap();
        std::fs::write(
            d.path().join(vault::MANIFEST_SIG),
            sign(&bytes, &key).unwrap(),
        )
        .unwrap();
        assert_eq!(load(&v, None).unwrap().manifest.custody.generation, 2);
        assert!(!d.path().join(STAGED).exists());
        // A lone staged signature (staging interrupted) is dropped; the old pair stands.
        std::fs::write(d.path().join(STAGED_SIG), "junk").unwrap();
        assert_eq!(load(&v, None).unwrap().manifest.custody.generation, 2);
        assert!(!d.path().join(STAGED_SIG).exists());
    }
}
