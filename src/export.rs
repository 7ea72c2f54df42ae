//! `export`: write one record's exact bytes and a receipt into a new
//! directory. Names inside the directory are fixed by kakuri, never taken
//! from the vault or the input, so nothing can be written outside it.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lookup::{Lookup, Query};
use crate::receipt::{Receipt, META_FILE, RECEIPT_FILE, RECEIPT_FORMAT};
use crate::vault;

#[derive(Serialize, Debug)]
pub struct ExportReport {
    pub dir: String,
    pub ordinal: u64,
    pub record_hash: String,
    pub files: Vec<String>,
}

fn create_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let p = dir.join(name);
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .map_err(|e| Error::io(&p, "cannot create", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&p, "cannot write", e))
}

/// Exports the record with `record_id` into `out` (which must not exist or
/// be an empty directory). `before_write` runs once the record is found
/// and verified (or found missing) and before anything is written: the
/// audit entry goes there, so an export that cannot be recorded writes
/// nothing.
pub fn export(
    lk: &mut Lookup<'_>,
    record_id: &str,
    out: &Path,
    case: &str,
    before_write: impl FnOnce(Option<u64>) -> Result<()>,
) -> Result<Option<ExportReport>> {
    let create = match fs::symlink_metadata(out) {
        Ok(md) if md.is_dir() => {
            if fs::read_dir(out)
                .map_err(|e| Error::io(out, "cannot read", e))?
                .next()
                .is_some()
            {
                return Err(Error::refused(format!(
                    "{}: not empty; export refuses to overwrite",
                    out.display()
                )));
            }
            false
        }
        Ok(_) => {
            return Err(Error::refused(format!(
                "{}: exists and is not a directory",
                out.display()
            )))
        }
        Err(_) => true,
    };
    let found = lk.find(&Query::RecordId(record_id.to_string()))?;
    let Some(v) = found.into_iter().next() else {
        before_write(None)?;
        return Ok(None);
    };
    before_write(Some(v.ordinal))?;
    if create {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(out)
            .map_err(|e| Error::io(out, "cannot create", e))?;
    }
    let o = lk.opened;
    let m = &o.loaded.manifest;
    let image_file = match v.image_entry.rsplit_once('.') {
        Some((_, ext)) if v.image_entry.ends_with(&format!("image.{ext}")) => {
            format!("image.{ext}")
        }
        _ => "image".to_string(),
    };
    let sig = fs::read(o.dir.path(vault::MANIFEST_SIG))
        .map_err(|e| Error::io(&o.dir.path(vault::MANIFEST_SIG), "cannot read", e))?;
    let meta = crate::record::parse_meta(&v.meta)?;
    let receipt = Receipt {
        format: RECEIPT_FORMAT.into(),
        vault_id: m.vault_id.clone(),
        ordinal: v.ordinal,
        tree_size: m.records,
        record_hash: hex::encode(v.record_hash),
        image_file: image_file.clone(),
        image_blake3: meta.image_blake3.clone(),
        proof: v.proof.iter().map(hex::encode).collect(),
        root: m.merkle.root.clone(),
        manifest_file: vault::MANIFEST.into(),
        manifest_blake3: blake3::hash(&o.loaded.bytes).to_hex().to_string(),
        signature_file: vault::MANIFEST_SIG.into(),
        signer: m.signer.clone(),
        signer_fingerprint: crate::keys::fingerprint(&o.loaded.signer),
        exported_at: vault::now_rfc3339(),
        case: case.to_string(),
    };
    let mut rb = serde_json::to_vec_pretty(&receipt).expect("receipt serializes");
    rb.push(b'\n');
    create_new(out, META_FILE, &v.meta)?;
    create_new(out, &image_file, &v.image)?;
    create_new(out, vault::MANIFEST, &o.loaded.bytes)?;
    create_new(out, vault::MANIFEST_SIG, &sig)?;
    create_new(out, RECEIPT_FILE, &rb)?;
    vault::fsync_dir(out)?;
    Ok(Some(ExportReport {
        dir: out.display().to_string(),
        ordinal: v.ordinal,
        record_hash: hex::encode(v.record_hash),
        files: vec![
            META_FILE.into(),
            image_file,
            vault::MANIFEST.into(),
            vault::MANIFEST_SIG.into(),
            RECEIPT_FILE.into(),
        ],
    }))
}
