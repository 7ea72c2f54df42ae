//! The destruction certificate: what was sealed, what was destroyed, how,
//! how it was checked, who approved it, and what cannot be proven.
//!
//! `destroy/certificate.json` is signed by the operator (SSHSIG, namespace
//! [`NAMESPACE`]) in `destroy/certificate.json.sig`, so
//! `ssh-keygen -Y verify -n kakuri-destruction@v1` checks it without
//! kakuri; `destroy/certificate.html` is a readable rendering for sign-off.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::erase::Erased;
use crate::error::{Error, Result};
use crate::manifest::{self, FileInfo};

pub const NAMESPACE: &str = "kakuri-destruction@v1";
pub const ORDER_NAMESPACE: &str = "kakuri-destroy-order@v1";
pub const FORMAT: &str = "kakuri-destruction-certificate-v1";
pub const ORDER_FORMAT: &str = "kakuri-destroy-order-v1";

/// What the compliance officer signs with `ssh-keygen -Y sign`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub format: String,
    pub vault_id: String,
    pub manifest_root: String,
    pub manifest_blake3: String,
    pub records: u64,
    pub retain_until: String,
    pub created: String,
    pub instruction: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Sealed {
    pub created: String,
    pub manifest_root: String,
    pub manifest_blake3: String,
    pub records: u64,
    pub image_bytes: u64,
    pub doc_types: BTreeMap<String, u64>,
    pub files: Vec<FileInfo>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Retention {
    pub retain_until: String,
    pub early: bool,
    pub reason: Option<String>,
    pub legal_basis: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CoSign {
    pub fingerprint: String,
    pub public_key: String,
    /// The order exactly as signed, and its armored SSHSIG.
    pub order: String,
    pub signature: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Approvals {
    pub operator: String,
    pub operator_key: String,
    pub operator_fingerprint: String,
    pub co_signer: Option<CoSign>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Verification {
    pub method: String,
    pub passed: bool,
    pub files_confirmed_gone: Vec<String>,
    pub files_remaining: Vec<String>,
    pub age_files_remaining: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Certificate {
    pub format: String,
    pub certificate_id: String,
    pub tool: String,
    pub vault_id: String,
    pub sealed: Sealed,
    pub retention: Retention,
    pub approvals: Approvals,
    pub key_material_erased: Vec<Erased>,
    pub files_destroyed: Vec<Erased>,
    pub methods: BTreeMap<String, String>,
    pub verification: Verification,
    pub audit_head_at_destruction: String,
    pub started: String,
    pub completed: String,
    pub limits: Vec<String>,
}

pub fn limits() -> Vec<String> {
    [
        "Only files kakuri created in this vault directory were destroyed. Copies made outside kakuri (backups, snapshots, copies of the vault on other media) are not covered; because every copy's vault key wraps were erased here only, those copies stay encrypted, but any copy of the custody files (custody/*.age) made before destruction together with a custodian's private key could still open them.",
        "On SSDs, flash media and RAID controllers an overwrite is not guaranteed to reach the physical blocks that held the data (wear levelling, remapping, over-provisioning). NIST SP 800-88 Rev. 1 names cryptographic erase as the method for such media: the vault key was erased first, so remnants are ciphertext without a key.",
        "On copy-on-write or journaling file systems (btrfs, ZFS, APFS, ext4 with data journaling) and under file-system snapshots, earlier versions of overwritten blocks may survive; the overwrite claim is limited to what the file system exposes.",
        "Custodians' own private keys (their identity files or tokens) are outside the vault and were not destroyed; without the vault's wraps they open nothing of this vault.",
        "The original leaked files given to `kakuri pack` (the input directory) and any exported evidence directories are not destroyed by kakuri and must be disposed of separately.",
        "Memory of processes that handled the data, swap space and crash dumps are outside kakuri's reach.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn methods() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "key_material".into(),
        "cryptographic erase (NIST SP 800-88 Rev. 1): every wrap or share of the per-vault key was overwritten, synced and unlinked; kakuri keeps no other copy of the key on disk".into(),
    );
    m.insert(
        "files".into(),
        format!(
            "clear by overwrite on the file system: {}",
            crate::erase::METHOD
        ),
    );
    m
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML rendering for sign-off.
pub fn to_html(c: &Certificate) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Destruction certificate ");
    h.push_str(&esc(&c.certificate_id));
    h.push_str("</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:.25em .5em;text-align:left;font-size:.9em}code{word-break:break-all}.sig{margin-top:3em;display:flex;gap:4em}.sig div{border-top:1px solid #000;padding-top:.3em;width:18em}</style></head><body>");
    h.push_str(&format!(
        "<h1>Certificate of destruction</h1><p>Certificate <code>{}</code>, issued by {} on {}.</p>",
        esc(&c.certificate_id),
        esc(&c.tool),
        esc(&c.completed)
    ));
    h.push_str(&format!(
        "<h2>What was sealed</h2><table><tr><th>Vault id</th><td><code>{}</code></td></tr><tr><th>Sealed on</th><td>{}</td></tr><tr><th>Records</th><td>{}</td></tr><tr><th>Image bytes</th><td>{}</td></tr><tr><th>Merkle root</th><td><code>{}</code></td></tr><tr><th>Manifest BLAKE3</th><td><code>{}</code></td></tr>",
        esc(&c.vault_id), esc(&c.sealed.created), c.sealed.records, c.sealed.image_bytes, esc(&c.sealed.manifest_root), esc(&c.sealed.manifest_blake3)
    ));
    for (k, v) in &c.sealed.doc_types {
        h.push_str(&format!(
            "<tr><th>&nbsp;&nbsp;{}</th><td>{v}</td></tr>",
            esc(k)
        ));
    }
    h.push_str("</table>");
    h.push_str(&format!(
        "<h2>Retention and approval</h2><table><tr><th>Retain until</th><td>{}</td></tr><tr><th>Destroyed early</th><td>{}</td></tr><tr><th>Reason</th><td>{}</td></tr><tr><th>Legal basis</th><td>{}</td></tr><tr><th>Operator</th><td>{} (<code>{}</code>)</td></tr><tr><th>Co-signer</th><td>{}</td></tr></table>",
        esc(&c.retention.retain_until),
        if c.retention.early { "yes" } else { "no" },
        esc(c.retention.reason.as_deref().unwrap_or("-")),
        esc(c.retention.legal_basis.as_deref().unwrap_or("-")),
        esc(&c.approvals.operator),
        esc(&c.approvals.operator_fingerprint),
        c.approvals.co_signer.as_ref().map(|s| format!("signed destroy order, key <code>{}</code>", esc(&s.fingerprint))).unwrap_or_else(|| "none".into())
    ));
    h.push_str("<h2>Key material erased (cryptographic erase)</h2><table><tr><th>File</th><th>Bytes</th><th>BLAKE3 before erasure</th></tr>");
    for e in &c.key_material_erased {
        h.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&e.path),
            e.size,
            esc(&e.blake3)
        ));
    }
    h.push_str("</table><h2>Files destroyed</h2><table><tr><th>File</th><th>Bytes</th><th>BLAKE3 as sealed</th></tr>");
    for e in &c.files_destroyed {
        h.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&e.path),
            e.size,
            esc(&e.blake3)
        ));
    }
    h.push_str("</table><h2>Methods</h2><ul>");
    for (k, v) in &c.methods {
        h.push_str(&format!("<li><b>{}</b>: {}</li>", esc(k), esc(v)));
    }
    h.push_str(&format!(
        "</ul><h2>Verification</h2><p>{}</p><p>Result: <b>{}</b>. {} files confirmed gone; files remaining in the vault directory: {}; age-encrypted files remaining: {}.</p><p>Audit log head at destruction: <code>{}</code></p>",
        esc(&c.verification.method),
        if c.verification.passed { "PASSED" } else { "FAILED" },
        c.verification.files_confirmed_gone.len(),
        esc(&c.verification.files_remaining.join(", ")),
        c.verification.age_files_remaining.len(),
        esc(&c.audit_head_at_destruction)
    ));
    h.push_str("<h2>Limits: what this certificate cannot prove</h2><ul>");
    for l in &c.limits {
        h.push_str(&format!("<li>{}</li>", esc(l)));
    }
    h.push_str(&format!(
        "</ul><p>Started {} · completed {}. This page renders <code>certificate.json</code>; the signed original is <code>certificate.json</code> with <code>certificate.json.sig</code> (check with <code>ssh-keygen -Y verify -n {NAMESPACE}</code>).</p><div class=\"sig\"><div>Operator</div><div>Compliance officer</div></div></body></html>\n",
        esc(&c.started),
        esc(&c.completed)
    ));
    h
}

#[derive(Serialize, Debug)]
pub struct CertificateCheck {
    pub certificate_id: String,
    pub vault_id: String,
    pub operator_fingerprint: String,
    pub co_signer_fingerprint: Option<String>,
    pub files_destroyed: usize,
    pub key_material_erased: usize,
    pub verification_passed: bool,
    pub ok: bool,
}

/// Checks a certificate: signature, co-signature, and internal consistency.
pub fn verify(
    cert_path: &Path,
    trusted: Option<&ssh_key::PublicKey>,
    co_signer: Option<&ssh_key::PublicKey>,
) -> Result<CertificateCheck> {
    let bytes = std::fs::read(cert_path).map_err(|e| Error::io(cert_path, "cannot read", e))?;
    let name = cert_path.display().to_string();
    let bad = |what: &str| Error::integrity(format!("{name}: {what}"));
    let c: Certificate = serde_json::from_slice(&bytes)
        .map_err(|e| bad(&format!("not a certificate (line {})", e.line())))?;
    if c.format != FORMAT {
        return Err(bad("unknown certificate format"));
    }
    let sig_path = cert_path.with_file_name(format!(
        "{}.sig",
        cert_path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let sig =
        std::fs::read_to_string(&sig_path).map_err(|e| Error::io(&sig_path, "cannot read", e))?;
    let op = ssh_key::PublicKey::from_openssh(&c.approvals.operator_key)
        .map_err(|_| bad("operator key is not an OpenSSH public key"))?;
    if let Some(t) = trusted {
        if t.key_data() != op.key_data() {
            return Err(bad("signed by a key other than the trusted signer"));
        }
    }
    manifest::verify_sig(&bytes, &sig, &op, NAMESPACE, &name)?;
    if crate::keys::fingerprint(&op) != c.approvals.operator_fingerprint {
        return Err(bad("operator fingerprint does not match the operator key"));
    }
    // Internal consistency: every sealed file destroyed exactly once with
    // the size and hash it was sealed with; the check passed.
    // Key material beyond the sealed files is allowed: wraps of an earlier
    // custody generation left by an interrupted rewrap, erased first.
    let sealed_paths: Vec<&str> = c.sealed.files.iter().map(|f| f.path.as_str()).collect();
    if let Some(e) = c
        .key_material_erased
        .iter()
        .find(|e| !e.path.starts_with("custody/"))
    {
        return Err(bad(&format!(
            "{}: listed as key material but is not a custody file",
            e.path
        )));
    }
    let mut destroyed: Vec<&Erased> = c
        .key_material_erased
        .iter()
        .filter(|e| sealed_paths.contains(&e.path.as_str()))
        .chain(c.files_destroyed.iter())
        .collect();
    destroyed.sort_by(|a, b| a.path.cmp(&b.path));
    let mut sealed: Vec<&FileInfo> = c.sealed.files.iter().collect();
    sealed.sort_by(|a, b| a.path.cmp(&b.path));
    if destroyed.len() != sealed.len() {
        return Err(bad("the destroyed files are not exactly the sealed files"));
    }
    for (d, s) in destroyed.iter().zip(&sealed) {
        if d.path != s.path || d.size != s.size || d.blake3 != s.blake3 {
            return Err(bad(&format!(
                "{}: destroyed file does not match what was sealed",
                s.path
            )));
        }
        if !c.verification.files_confirmed_gone.contains(&d.path) {
            return Err(bad(&format!("{}: not confirmed gone", d.path)));
        }
    }
    if !c.verification.passed || !c.verification.age_files_remaining.is_empty() {
        return Err(bad("the certificate records a failed verification"));
    }
    let mut co_fp = None;
    if let Some(cs) = &c.approvals.co_signer {
        let k = ssh_key::PublicKey::from_openssh(&cs.public_key)
            .map_err(|_| bad("co-signer key is not an OpenSSH public key"))?;
        if let Some(t) = co_signer {
            if t.key_data() != k.key_data() {
                return Err(bad("co-signed by a key other than the trusted co-signer"));
            }
        }
        manifest::verify_sig(
            cs.order.as_bytes(),
            &cs.signature,
            &k,
            ORDER_NAMESPACE,
            "destroy order",
        )?;
        let o: Order =
            serde_json::from_str(&cs.order).map_err(|_| bad("co-signed order is not valid"))?;
        if o.vault_id != c.vault_id
            || o.manifest_root != c.sealed.manifest_root
            || o.manifest_blake3 != c.sealed.manifest_blake3
        {
            return Err(bad("the co-signed order names another vault or manifest"));
        }
        co_fp = Some(crate::keys::fingerprint(&k));
    } else if co_signer.is_some() {
        return Err(bad("the certificate has no co-signature"));
    }
    Ok(CertificateCheck {
        certificate_id: c.certificate_id,
        vault_id: c.vault_id,
        operator_fingerprint: c.approvals.operator_fingerprint,
        co_signer_fingerprint: co_fp,
        files_destroyed: c.files_destroyed.len(),
        key_material_erased: c.key_material_erased.len(),
        verification_passed: true,
        ok: true,
    })
}
