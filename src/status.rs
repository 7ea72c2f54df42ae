//! `status`: what a vault is, without any key.

use serde::Serialize;

use crate::error::Result;
use crate::manifest;
use crate::vault::VaultDir;

#[derive(Serialize, Debug)]
pub struct Status {
    pub vault_id: String,
    pub format_version: u32,
    pub created: String,
    pub records: u64,
    pub image_bytes: u64,
    pub vault_bytes: u64,
    pub shards: usize,
    pub doc_types: std::collections::BTreeMap<String, u64>,
    pub merkle_root: String,
    pub retain_until: String,
    pub days_left: i64,
    pub retention_passed: bool,
    pub signature_ok: bool,
    pub signer_fingerprint: String,
    pub custody_scheme: String,
    pub custodians: Vec<String>,
    pub custody_generation: u32,
    pub tool: String,
    /// "sealed", "destroyed" or "destroy interrupted".
    pub state: String,
    pub audit_entries: u64,
    /// Custody files of an earlier generation left by an interrupted rewrap.
    pub stale_custody_files: Vec<String>,
    /// Parity settings (`R/K`), or "none".
    pub parity: String,
    /// Bytes of parity files (included in `vault_bytes`).
    pub parity_bytes: u64,
}

pub fn status(path: &std::path::Path, trusted: Option<&ssh_key::PublicKey>) -> Result<Status> {
    let dir = VaultDir::open(path)?;
    let l = manifest::load(&dir, trusted)?;
    let m = &l.manifest;
    let days_left = m.days_left()?;
    Ok(Status {
        vault_id: m.vault_id.clone(),
        format_version: m.version,
        created: m.created.clone(),
        records: m.records,
        image_bytes: m.image_bytes,
        vault_bytes: m.files.iter().map(|f| f.size).sum(),
        shards: m.shards.len(),
        doc_types: m.doc_types.clone(),
        merkle_root: m.merkle.root.clone(),
        retain_until: m.retain_until.clone(),
        days_left,
        retention_passed: days_left < 0,
        signature_ok: true,
        signer_fingerprint: crate::keys::fingerprint(&l.signer),
        custody_scheme: m.custody.scheme.clone(),
        custodians: m.custody.labels(),
        custody_generation: m.custody.generation,
        tool: m.tool.clone(),
        state: crate::destroy::state(&dir.root)
            .unwrap_or("sealed")
            .to_string(),
        audit_entries: crate::audit::read_all(&dir.root)
            .map(|v| v.len() as u64)
            .unwrap_or(0),
        stale_custody_files: crate::custody::stale_wraps(&dir.root, &m.custody),
        parity: m
            .parity
            .as_ref()
            .map(|p| format!("{}/{}", p.group_parity, p.group_data))
            .unwrap_or_else(|| "none".into()),
        parity_bytes: m
            .files
            .iter()
            .filter(|f| f.path.starts_with("parity/"))
            .map(|f| f.size)
            .sum(),
    })
}
