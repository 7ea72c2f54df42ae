//! `destroy`: cryptographic erase of the vault key, then overwrite and
//! unlink of every index file and shard, a check that each is gone and
//! that nothing left can yield the key, and a signed certificate.
//!
//! Every step is recorded in `destroy/journal.json` before the next one
//! starts, so a destroy that is interrupted is completed by running it
//! again, and the certificate lists every file exactly once. The manifest,
//! its signature and the audit log stay as evidence (they hold no personal
//! data).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::certificate::{
    self, Approvals, Certificate, CoSign, Order, Retention, Sealed, Verification,
};
use crate::erase::{self, Erased};
use crate::error::{Error, Result};
use crate::manifest::{self, FileInfo};
use crate::vault::{self, VaultDir};

pub const DIR: &str = "destroy";
pub const JOURNAL: &str = "destroy/journal.json";
pub const CERT: &str = "destroy/certificate.json";
pub const CERT_SIG: &str = "destroy/certificate.json.sig";
pub const CERT_HTML: &str = "destroy/certificate.html";

pub struct DestroyOptions {
    pub vault: PathBuf,
    pub confirm: String,
    pub sign_key: PathBuf,
    pub operator: String,
    pub early: bool,
    pub reason: Option<String>,
    pub legal_basis: Option<String>,
    /// A destroy order signed by a compliance officer (`ORDER` + `ORDER.sig`).
    pub co_sign: Option<PathBuf>,
    /// Pin the co-signer's key.
    pub co_signer: Option<ssh_key::PublicKey>,
    pub dry_run: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PlannedFile {
    pub path: String,
    pub size: u64,
    pub blake3: String,
    /// "key-material", "index" or "shard"
    pub kind: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Journal {
    vault_id: String,
    started: String,
    plan: Vec<PlannedFile>,
    done: Vec<Erased>,
    retention: Retention,
    approvals: Approvals,
    audit_head: String,
}

#[derive(Serialize, Debug)]
pub enum Outcome {
    /// What would be destroyed, in order.
    DryRun(Vec<PlannedFile>),
    Destroyed {
        certificate: Box<Certificate>,
        path: String,
        resumed: bool,
    },
}

/// The destruction state of a vault directory, if any.
pub fn state(root: &Path) -> Option<&'static str> {
    if root.join(JOURNAL).exists() {
        Some("destroy interrupted")
    } else if root.join(CERT).exists() {
        Some("destroyed")
    } else {
        None
    }
}

/// Refuses data access to a destroyed (or half-destroyed) vault.
pub fn refuse_if_destroyed(root: &Path) -> Result<()> {
    match state(root) {
        Some("destroyed") => Err(Error::state(format!(
            "this vault was destroyed; its certificate is {}",
            root.join(CERT).display()
        ))),
        Some(_) => Err(Error::state(
            "a destroy of this vault was interrupted; run `kakuri destroy` again to complete it",
        )),
        None => Ok(()),
    }
}

/// Files to destroy, key material first.
pub fn plan(m: &manifest::Manifest) -> Vec<PlannedFile> {
    let kind = |f: &FileInfo| {
        if m.custody.wraps.contains(&f.path) {
            0
        } else if f.path.starts_with("index/") {
            1
        } else if f.path.starts_with("parity/") {
            3
        } else {
            2
        }
    };
    let mut files: Vec<&FileInfo> = m.files.iter().collect();
    files.sort_by_key(|f| (kind(f), f.path.clone()));
    files
        .into_iter()
        .map(|f| PlannedFile {
            path: f.path.clone(),
            size: f.size,
            blake3: f.blake3.clone(),
            kind: ["key-material", "index", "shard", "parity"][kind(f)].into(),
        })
        .collect()
}

/// Writes a destroy order for a compliance officer to sign with
/// `ssh-keygen -Y sign -f KEY -n kakuri-destroy-order@v1 ORDER`.
pub fn write_order(vault: &Path, out: &Path) -> Result<Order> {
    let dir = VaultDir::open(vault)?;
    let l = manifest::load(&dir, None)?;
    let m = &l.manifest;
    let o = Order {
        format: certificate::ORDER_FORMAT.into(),
        vault_id: m.vault_id.clone(),
        manifest_root: m.merkle.root.clone(),
        manifest_blake3: blake3::hash(&l.bytes).to_hex().to_string(),
        records: m.records,
        retain_until: m.retain_until.clone(),
        created: vault::now_rfc3339(),
        instruction: format!(
            "Destroy kakuri vault {} ({} records, root {}) and issue a certificate.",
            m.vault_id, m.records, m.merkle.root
        ),
    };
    let mut b = serde_json::to_vec_pretty(&o).expect("order serializes");
    b.push(b'\n');
    vault::write_atomic(out, &b, 0o644)?;
    Ok(o)
}

fn read_co_sign(
    p: &Path,
    m: &manifest::Manifest,
    manifest_bytes: &[u8],
    pinned: Option<&ssh_key::PublicKey>,
) -> Result<CoSign> {
    let order =
        std::fs::read_to_string(p).map_err(|e| Error::io(p, "cannot read destroy order", e))?;
    let sp = p.with_file_name(format!(
        "{}.sig",
        p.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let sig = std::fs::read_to_string(&sp)
        .map_err(|e| Error::io(&sp, "cannot read the order's signature", e))?;
    let parsed = ssh_key::SshSig::from_pem(&sig)
        .map_err(|_| Error::integrity(format!("{}: not an SSHSIG", sp.display())))?;
    let key = ssh_key::PublicKey::from(parsed.public_key().clone());
    if let Some(t) = pinned {
        if t.key_data() != key.key_data() {
            return Err(Error::integrity(
                "the destroy order is signed by a key other than --co-signer",
            ));
        }
    }
    manifest::verify_sig(
        order.as_bytes(),
        &sig,
        &key,
        certificate::ORDER_NAMESPACE,
        "destroy order",
    )?;
    let o: Order = serde_json::from_str(&order)
        .map_err(|_| Error::integrity("destroy order: not a kakuri destroy order"))?;
    if o.format != certificate::ORDER_FORMAT
        || o.vault_id != m.vault_id
        || o.manifest_root != m.merkle.root
        || o.manifest_blake3 != blake3::hash(manifest_bytes).to_hex().as_str()
    {
        return Err(Error::refused(
            "the destroy order names another vault or another manifest",
        ));
    }
    Ok(CoSign {
        fingerprint: crate::keys::fingerprint(&key),
        public_key: key
            .to_openssh()
            .map_err(|e| Error::internal(format!("key: {e}")))?,
        order,
        signature: sig,
    })
}

fn save_journal(root: &Path, j: &Journal) -> Result<()> {
    let b = serde_json::to_vec_pretty(j).expect("journal serializes");
    vault::replace_atomic(&root.join(JOURNAL), &b, 0o600)
}

fn is_age_file(p: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 21];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .map(|_| &b == b"age-encryption.org/v1")
        .unwrap_or(false)
}

pub fn destroy(o: &DestroyOptions) -> Result<Outcome> {
    let dir = VaultDir::open(&o.vault)?;
    let root = dir.root.clone();
    let loaded = manifest::load(&dir, None)?;
    let m = &loaded.manifest;
    if o.confirm != m.vault_id {
        return Err(Error::refused(format!(
            "--confirm {} does not match this vault's id (`kakuri status {}` shows it)",
            o.confirm,
            o.vault.display()
        )));
    }
    let key = crate::keys::load_signing_key(&o.sign_key)?;
    if root.join(CERT).exists() {
        if root.join(JOURNAL).exists() && !o.dry_run {
            // Interrupted after the certificate was written: record it.
            let cb = std::fs::read(root.join(CERT))
                .map_err(|e| Error::io(&root.join(CERT), "cannot read", e))?;
            let cert: Certificate = serde_json::from_slice(&cb)
                .map_err(|_| Error::integrity(format!("{CERT}: damaged")))?;
            record_destroyed(&root, m, &key, &o.operator, &cert, &cb, true)?;
            let _ = std::fs::remove_file(root.join(JOURNAL));
            return Ok(Outcome::Destroyed {
                path: root.join(CERT).display().to_string(),
                certificate: Box::new(cert),
                resumed: true,
            });
        }
        return Err(Error::state(format!(
            "this vault is already destroyed; its certificate is {}",
            root.join(CERT).display()
        )));
    }
    let resuming = root.join(JOURNAL).exists();
    let mut j: Journal = if resuming {
        let b = std::fs::read(root.join(JOURNAL))
            .map_err(|e| Error::io(&root.join(JOURNAL), "cannot read", e))?;
        let j: Journal = serde_json::from_slice(&b)
            .map_err(|_| Error::integrity(format!("{JOURNAL}: damaged")))?;
        if j.vault_id != m.vault_id {
            return Err(Error::integrity(format!(
                "{JOURNAL}: belongs to another vault"
            )));
        }
        j
    } else {
        let days_left = m.days_left()?;
        if days_left > 0 && !o.early {
            return Err(Error::refused(format!(
                "the retention date {} has not passed ({days_left} days left); pass --early --reason TEXT to destroy before it",
                m.retain_until
            )));
        }
        if o.early && o.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(Error::usage("--early needs --reason TEXT"));
        }
        let co_signer = o
            .co_sign
            .as_deref()
            .map(|p| read_co_sign(p, m, &loaded.bytes, o.co_signer.as_ref()))
            .transpose()?;
        let mut plan = plan(m);
        // Wraps of an earlier custody generation left by an interrupted
        // rewrap are key material for every copy of the vault: first to go.
        let mut stale = Vec::new();
        for rel in crate::custody::stale_wraps(&root, &m.custody) {
            let p = root.join(&rel);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, "cannot read", e))?;
            stale.push(PlannedFile {
                path: rel,
                size: bytes.len() as u64,
                blake3: blake3::hash(&bytes).to_hex().to_string(),
                kind: "key-material".into(),
            });
        }
        stale.append(&mut plan);
        let plan = stale;
        if o.dry_run {
            return Ok(Outcome::DryRun(plan));
        }
        let approvals = Approvals {
            operator: o.operator.clone(),
            operator_key: key
                .public_key()
                .to_openssh()
                .map_err(|e| Error::internal(format!("key: {e}")))?,
            operator_fingerprint: crate::keys::fingerprint(key.public_key()),
            co_signer,
        };
        let retention = Retention {
            retain_until: m.retain_until.clone(),
            early: o.early,
            reason: o.reason.clone(),
            legal_basis: o.legal_basis.clone(),
        };
        let start = crate::audit::append(
            &root,
            &m.vault_id,
            &key,
            crate::audit::Event {
                action: "destroy-start",
                operator: &o.operator,
                case: None,
                reason: o.reason.as_deref(),
                result: serde_json::json!({
                    "files": plan.len(),
                    "early": o.early,
                    "co_signed": approvals.co_signer.as_ref().map(|c| c.fingerprint.clone()),
                }),
                queries: Vec::new(),
            },
        )?;
        std::fs::create_dir_all(root.join(DIR))
            .map_err(|e| Error::io(&root.join(DIR), "cannot create", e))?;
        let j = Journal {
            vault_id: m.vault_id.clone(),
            started: start.time.clone(),
            plan,
            done: Vec::new(),
            retention,
            approvals,
            audit_head: blake3::hash(&serde_json::to_vec(&start).expect("entry serializes"))
                .to_hex()
                .to_string(),
        };
        save_journal(&root, &j)?;
        j
    };
    if o.dry_run {
        let left = j
            .plan
            .iter()
            .filter(|p| !j.done.iter().any(|d| d.path == p.path))
            .cloned()
            .collect();
        return Ok(Outcome::DryRun(left));
    }
    // Erase, key material first; the journal records each file before the next.
    for p in j.plan.clone() {
        if j.done.iter().any(|d| d.path == p.path) {
            continue;
        }
        let full = root.join(&p.path);
        let e = if full.symlink_metadata().is_ok() {
            let e = erase::erase_file(&root, &p.path)?;
            if e.blake3 != p.blake3 || e.size != p.size {
                // Erased all the same; the certificate shows what was sealed.
                eprintln!(
                    "kakuri: warning: {} differed from the manifest when erased",
                    p.path
                );
            }
            Erased {
                blake3: p.blake3.clone(),
                size: p.size,
                ..e
            }
        } else {
            // Gone already: erased before an interruption, not yet journaled.
            Erased {
                path: p.path.clone(),
                size: p.size,
                blake3: p.blake3.clone(),
                method: format!(
                    "{} (completed before an interruption; found gone on resume)",
                    erase::METHOD
                ),
            }
        };
        crate::faults::point("destroy-erased");
        j.done.push(e);
        save_journal(&root, &j)?;
        crate::faults::point("destroy-journaled");
    }
    for d in [
        vault::CUSTODY_DIR,
        vault::INDEX_DIR,
        vault::SHARDS_DIR,
        "parity/index",
        "parity/shards",
        crate::parity::DIR,
    ] {
        let _ = std::fs::remove_dir(root.join(d));
    }
    // Verify: every planned file is gone, and no remaining file is an age
    // file (nothing left can yield the key or the records).
    let mut gone = Vec::new();
    let mut still = Vec::new();
    for p in &j.plan {
        if root.join(&p.path).symlink_metadata().is_err() {
            gone.push(p.path.clone());
        } else {
            still.push(p.path.clone());
        }
    }
    let mut remaining = Vec::new();
    let mut age_left = Vec::new();
    for ent in walkdir::WalkDir::new(&root)
        .min_depth(1)
        .sort_by_file_name()
    {
        let Ok(ent) = ent else { continue };
        if ent.file_type().is_dir() {
            continue;
        }
        let rel = ent
            .path()
            .strip_prefix(&root)
            .unwrap_or(ent.path())
            .to_string_lossy()
            .into_owned();
        if is_age_file(ent.path()) {
            age_left.push(rel.clone());
        }
        if rel != JOURNAL {
            remaining.push(rel);
        }
    }
    age_left.extend(still.iter().cloned());
    let passed = still.is_empty() && age_left.is_empty();
    let verification = Verification {
        method: "each destroyed path checked absent with lstat(2); every file remaining in the vault directory read and checked not to be an age-encrypted file".into(),
        passed,
        files_confirmed_gone: gone,
        files_remaining: remaining,
        age_files_remaining: age_left,
    };
    if !passed {
        save_journal(&root, &j)?;
        return Err(Error::integrity(format!(
            "destroy could not confirm erasure: {} file(s) still present or age files remain ({}); nothing certified",
            verification.age_files_remaining.len(),
            verification.age_files_remaining.join(", ")
        )));
    }
    let (key_material, files): (Vec<Erased>, Vec<Erased>) = j
        .done
        .iter()
        .cloned()
        .partition(|e| e.path.starts_with("custody/"));
    let mut cert_id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut cert_id);
    let cert = Certificate {
        format: certificate::FORMAT.into(),
        certificate_id: hex::encode(cert_id),
        tool: format!("kakuri {}", env!("CARGO_PKG_VERSION")),
        vault_id: m.vault_id.clone(),
        sealed: Sealed {
            created: m.created.clone(),
            manifest_root: m.merkle.root.clone(),
            manifest_blake3: blake3::hash(&loaded.bytes).to_hex().to_string(),
            records: m.records,
            image_bytes: m.image_bytes,
            doc_types: m.doc_types.clone(),
            files: m.files.clone(),
        },
        retention: j.retention.clone(),
        approvals: j.approvals.clone(),
        key_material_erased: key_material,
        files_destroyed: files,
        methods: certificate::methods(),
        verification,
        audit_head_at_destruction: j.audit_head.clone(),
        started: j.started.clone(),
        completed: vault::now_rfc3339(),
        limits: certificate::limits(),
    };
    let mut cb = serde_json::to_vec_pretty(&cert).expect("certificate serializes");
    cb.push(b'\n');
    let sig = manifest::sign_ns(&cb, &key, certificate::NAMESPACE)?;
    vault::write_atomic(
        &root.join(CERT_HTML),
        certificate::to_html(&cert).as_bytes(),
        0o644,
    )?;
    vault::write_atomic(&root.join(CERT_SIG), sig.as_bytes(), 0o644)?;
    vault::write_atomic(&root.join(CERT), &cb, 0o644)?;
    crate::faults::point("destroy-certified");
    record_destroyed(&root, m, &key, &o.operator, &cert, &cb, resuming)?;
    crate::faults::point("destroy-recorded");
    let _ = std::fs::remove_file(root.join(JOURNAL));
    Ok(Outcome::Destroyed {
        path: root.join(CERT).display().to_string(),
        certificate: Box::new(cert),
        resumed: resuming,
    })
}

fn record_destroyed(
    root: &Path,
    m: &manifest::Manifest,
    key: &ssh_key::PrivateKey,
    operator: &str,
    cert: &Certificate,
    cert_bytes: &[u8],
    resumed: bool,
) -> Result<()> {
    // Already recorded (a crash came after the entry, before the journal
    // was removed): record it once only.
    let last = crate::audit::last_entry(root)?.map(|(e, _)| e);
    if last.is_some_and(|e| {
        e.action == "destroy" && e.result["certificate_id"] == cert.certificate_id.as_str()
    }) {
        return Ok(());
    }
    crate::audit::append(
        root,
        &m.vault_id,
        key,
        crate::audit::Event {
            action: "destroy",
            operator,
            case: None,
            reason: cert.retention.reason.as_deref(),
            result: serde_json::json!({
                "certificate_id": cert.certificate_id,
                "certificate_blake3": blake3::hash(cert_bytes).to_hex().to_string(),
                "files_destroyed": cert.files_destroyed.len(),
                "key_material_erased": cert.key_material_erased.len(),
                "resumed": resumed,
            }),
            queries: Vec::new(),
        },
    )
    .map(|_| ())
}
