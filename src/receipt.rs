//! Evidence receipts written by `export` and checked offline by
//! `kakuri receipt verify` (or by hand, see docs/FORMAT.md).
//!
//! An export directory holds `meta.json` and the image exactly as sealed,
//! a copy of the vault's `manifest.json` and `manifest.json.sig`, and
//! `receipt.json` with the record hash and its RFC 6962 inclusion proof.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{self, parse_hash, Manifest};
use crate::merkle;

pub const RECEIPT_FORMAT: &str = "kakuri-receipt-v1";
pub const RECEIPT_FILE: &str = "receipt.json";
pub const META_FILE: &str = "meta.json";

#[derive(Serialize, Deserialize, Debug)]
pub struct Receipt {
    pub format: String,
    pub vault_id: String,
    pub ordinal: u64,
    pub tree_size: u64,
    /// BLAKE3 of meta.json.
    pub record_hash: String,
    pub image_file: String,
    pub image_blake3: String,
    /// Sibling hashes, leaf side first (RFC 6962 audit path).
    pub proof: Vec<String>,
    pub root: String,
    pub manifest_file: String,
    pub manifest_blake3: String,
    pub signature_file: String,
    pub signer: String,
    pub signer_fingerprint: String,
    pub exported_at: String,
    pub case: String,
}

#[derive(Serialize, Debug)]
pub struct ReceiptCheck {
    pub vault_id: String,
    pub ordinal: u64,
    pub root: String,
    pub signer_fingerprint: String,
    pub ok: bool,
}

/// Checks an export directory offline. A directory without a receipt or
/// with a file missing is an incomplete export, and the staging directory
/// of an interrupted export (`.NAME.kakuri-partial`) is never one: both
/// fail as integrity errors.
pub fn verify_dir(dir: &Path, trusted: Option<&ssh_key::PublicKey>) -> Result<ReceiptCheck> {
    let md = std::fs::metadata(dir).map_err(|e| Error::io(dir, "cannot read", e))?;
    if !md.is_dir() {
        return Err(Error::integrity(format!(
            "{}: not an export directory (not a directory)",
            dir.display()
        )));
    }
    let is_staging = dir.canonicalize().ok().is_some_and(|c| {
        c.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(crate::export::PARTIAL_SUFFIX))
    });
    if is_staging {
        return Err(Error::integrity(format!(
            "{}: the staging directory of an interrupted export, not an export (run the export again)",
            dir.display()
        )));
    }
    let read = |name: &str| -> Result<Vec<u8>> {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::integrity(format!(
                    "{}: {name} is missing (not a complete export)",
                    dir.display()
                ))
            } else {
                Error::io(&p, "cannot read", e)
            }
        })
    };
    let rb = read(RECEIPT_FILE)?;
    let r: Receipt = serde_json::from_slice(&rb).map_err(|e| {
        Error::integrity(format!(
            "{RECEIPT_FILE}: not a valid receipt (line {})",
            e.line()
        ))
    })?;
    if r.format != RECEIPT_FORMAT {
        return Err(Error::integrity(format!(
            "{RECEIPT_FILE}: unknown receipt format"
        )));
    }
    for name in [&r.image_file, &r.manifest_file, &r.signature_file] {
        if name.contains('/') || name.starts_with('.') {
            return Err(Error::integrity(format!(
                "{RECEIPT_FILE}: names a file outside its directory"
            )));
        }
    }
    let fail = |what: &str| Error::integrity(format!("{}: {what}", dir.display()));
    let meta = read(META_FILE)?;
    let rh = parse_hash(&r.record_hash).ok_or_else(|| fail("record_hash is not a hash"))?;
    if !merkle::ct_eq(&crate::record::record_hash(&meta), &rh) {
        return Err(fail("meta.json does not hash to the receipt's record_hash"));
    }
    let m = crate::record::parse_meta(&meta)?;
    let image = read(&r.image_file)?;
    if blake3::hash(&image).to_hex().as_str() != m.image_blake3 || m.image_blake3 != r.image_blake3
    {
        return Err(fail(
            "the image does not hash to the value sealed in meta.json",
        ));
    }
    if m.ordinal != r.ordinal {
        return Err(fail(
            "meta.json and the receipt disagree on the record's position",
        ));
    }
    let proof: Vec<merkle::Hash> = r
        .proof
        .iter()
        .map(|h| parse_hash(h).ok_or_else(|| fail("proof holds a value that is not a hash")))
        .collect::<Result<_>>()?;
    let mbytes = read(&r.manifest_file)?;
    if blake3::hash(&mbytes).to_hex().as_str() != r.manifest_blake3 {
        return Err(fail(
            "the manifest copy differs from the one the receipt names",
        ));
    }
    let man = Manifest::parse(&mbytes)?;
    let root = man.root()?;
    if man.vault_id != r.vault_id || man.merkle.root != r.root || man.records != r.tree_size {
        return Err(fail(
            "the receipt does not match the manifest (vault id, root or size)",
        ));
    }
    if !merkle::verify_inclusion(r.ordinal, r.tree_size, &rh, &proof, &root) {
        return Err(fail("the inclusion proof does not reach the signed root"));
    }
    let signer = man.signer_key()?;
    if let Some(t) = trusted {
        if t.key_data() != signer.key_data() {
            return Err(fail("the manifest is not signed by the trusted signer"));
        }
    }
    let sig = String::from_utf8(read(&r.signature_file)?)
        .map_err(|_| fail("signature file is not text"))?;
    manifest::verify_sig(
        &mbytes,
        &sig,
        &signer,
        manifest::NAMESPACE,
        &r.manifest_file,
    )?;
    Ok(ReceiptCheck {
        vault_id: r.vault_id,
        ordinal: r.ordinal,
        root: r.root,
        signer_fingerprint: crate::keys::fingerprint(&signer),
        ok: true,
    })
}
