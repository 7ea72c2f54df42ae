//! A destruction certificate checked by `kakuri certificate verify`:
//! certificate.json, its signature, and an optional co-signed order.
//!
//! `Raw`: fuzz bytes and a fuzz signature. `Signed`: fuzz bytes in which
//! `SIGNER` stands for the fuzz signer's key, signed by it, so parsing and
//! the consistency checks run on arbitrary documents. `Built`: a
//! certificate assembled from fuzzed parts with chosen defects; whether it
//! verifies must be exactly whether it has none.

#![no_main]

mod common;

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use kakuri::certificate::{
    self, Approvals, Certificate, CoSign, Order, Retention, Sealed, Verification,
};
use kakuri::erase::Erased;
use kakuri::manifest::FileInfo;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw { cert: Vec<u8>, sig: Vec<u8> },
    Signed { cert: Vec<u8>, pin: bool },
    Built(Built),
}

#[derive(Arbitrary, Debug)]
struct Built {
    sealed: Vec<(String, u64, [u8; 4])>,
    old_wraps: Vec<(String, u64)>,
    /// A defect to introduce, if any.
    defect: Option<Defect>,
    co_sign: bool,
    pin_signer: bool,
    pin_co_signer: bool,
    text: String,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Defect {
    Signature,
    Fingerprint,
    DropDestroyed(u8),
    ChangeSize(u8),
    Unconfirmed(u8),
    NotPassed,
    AgeFileLeft,
    KeyMaterialOutsideCustody,
    OrderForAnotherVault,
    OrderSignature,
}

fn erased(path: &str, size: u64, blake3: &str) -> Erased {
    Erased {
        path: path.into(),
        size,
        blake3: blake3.into(),
        method: "m".into(),
    }
}

fn built(b: &Built) {
    let d = common::fresh_dir("cert");
    let mut sealed: Vec<FileInfo> = b
        .sealed
        .iter()
        .take(12)
        .map(|(p, size, h)| FileInfo {
            path: p.clone(),
            size: *size,
            blake3: hex::encode(h),
        })
        .collect();
    sealed.sort_by(|a, b| a.path.cmp(&b.path));
    sealed.dedup_by(|a, b| a.path == b.path);
    let mut key_material: Vec<Erased> = sealed
        .iter()
        .filter(|f| f.path.starts_with("custody/"))
        .map(|f| erased(&f.path, f.size, &f.blake3))
        .collect();
    let mut files_destroyed: Vec<Erased> = sealed
        .iter()
        .filter(|f| !f.path.starts_with("custody/"))
        .map(|f| erased(&f.path, f.size, &f.blake3))
        .collect();
    for (p, size) in b.old_wraps.iter().take(4) {
        // Sealed custody/ files are in key_material already.
        let path = format!("custody/old-{p}");
        if key_material.iter().any(|e| e.path == path) {
            continue;
        }
        key_material.push(erased(&path, *size, ""));
    }
    let mut confirmed: Vec<String> = sealed.iter().map(|f| f.path.clone()).collect();
    let mut passed = true;
    let mut age_left = Vec::new();
    let mut fingerprint = common::signer_fingerprint();
    let mut effective = b.defect;
    let n = files_destroyed.len();
    match b.defect {
        Some(Defect::DropDestroyed(i)) if n > 0 => {
            files_destroyed.remove(i as usize % n);
        }
        Some(Defect::ChangeSize(i)) if n > 0 => {
            let e = &mut files_destroyed[i as usize % n];
            e.size = e.size.wrapping_add(1);
        }
        Some(Defect::Unconfirmed(i)) if !confirmed.is_empty() => {
            let k = i as usize % confirmed.len();
            confirmed.remove(k);
        }
        Some(Defect::NotPassed) => passed = false,
        Some(Defect::AgeFileLeft) => age_left.push("shards/x.age".to_string()),
        Some(Defect::KeyMaterialOutsideCustody) => {
            key_material.push(erased("index/keys.age", 1, ""))
        }
        Some(Defect::Fingerprint) => fingerprint.push('x'),
        Some(Defect::OrderForAnotherVault | Defect::OrderSignature) if !b.co_sign => {
            effective = None
        }
        Some(Defect::DropDestroyed(_) | Defect::ChangeSize(_) | Defect::Unconfirmed(_)) => {
            effective = None
        }
        _ => {}
    }
    let co_signer = b.co_sign.then(|| {
        let order = Order {
            format: certificate::ORDER_FORMAT.into(),
            vault_id: if effective == Some(Defect::OrderForAnotherVault) {
                "other".into()
            } else {
                "v".into()
            },
            manifest_root: "root".into(),
            manifest_blake3: "mb3".into(),
            records: 1,
            retain_until: "2099-01-01".into(),
            created: b.text.clone(),
            instruction: b.text.clone(),
        };
        let text = serde_json::to_string(&order).unwrap();
        let signature = if effective == Some(Defect::OrderSignature) {
            common::sign(text.as_bytes(), certificate::NAMESPACE)
        } else {
            common::sign(text.as_bytes(), certificate::ORDER_NAMESPACE)
        };
        CoSign {
            fingerprint: common::signer_fingerprint(),
            public_key: common::signer_line().into(),
            order: text,
            signature,
        }
    });
    let c = Certificate {
        format: certificate::FORMAT.into(),
        certificate_id: b.text.clone(),
        tool: "kakuri".into(),
        vault_id: "v".into(),
        sealed: Sealed {
            created: b.text.clone(),
            manifest_root: "root".into(),
            manifest_blake3: "mb3".into(),
            records: 1,
            image_bytes: 1,
            doc_types: BTreeMap::new(),
            files: sealed,
        },
        retention: Retention {
            retain_until: "2099-01-01".into(),
            early: false,
            reason: Some(b.text.clone()),
            legal_basis: None,
        },
        approvals: Approvals {
            operator: b.text.clone(),
            operator_key: common::signer_line().into(),
            operator_fingerprint: fingerprint,
            co_signer,
        },
        key_material_erased: key_material,
        files_destroyed,
        methods: certificate::methods(),
        verification: Verification {
            method: "m".into(),
            passed,
            files_confirmed_gone: confirmed,
            files_remaining: Vec::new(),
            age_files_remaining: age_left,
        },
        audit_head_at_destruction: "h".into(),
        started: b.text.clone(),
        completed: b.text.clone(),
        limits: certificate::limits(),
    };
    let _ = certificate::to_html(&c);
    let bytes = serde_json::to_vec_pretty(&c).unwrap();
    let ns = if effective == Some(Defect::Signature) {
        certificate::ORDER_NAMESPACE
    } else {
        certificate::NAMESPACE
    };
    common::write_signed(&d, "certificate.json", &bytes, ns);
    let pin = b.pin_signer.then(common::signer_pub);
    let co_pin = b.pin_co_signer.then(common::signer_pub);
    let res = certificate::verify(&d.join("certificate.json"), pin, co_pin);
    let want_ok = effective.is_none() && (b.co_sign || !b.pin_co_signer);
    match (&res, want_ok) {
        (Ok(_), true) | (Err(_), false) => {}
        (Ok(_), false) => panic!("a certificate with {effective:?} verifies"),
        (Err(e), true) => panic!("a sound certificate does not verify: {}", e.msg),
    }
}

fuzz_target!(|input: Input| match input {
    Input::Raw { cert, sig } => {
        let d = common::fresh_dir("cert");
        common::write(&d, "certificate.json", &cert);
        common::write(&d, "certificate.json.sig", &sig);
        let _ = certificate::verify(&d.join("certificate.json"), None, None);
    }
    Input::Signed { cert, pin } => {
        let d = common::fresh_dir("cert");
        let cert = common::subst(&cert, "SIGNER", common::signer_line());
        let cert = common::subst(&cert, "FINGERPRINT", &common::signer_fingerprint());
        common::write_signed(&d, "certificate.json", &cert, certificate::NAMESPACE);
        let pin = pin.then(common::signer_pub);
        if let Ok(c) = certificate::verify(&d.join("certificate.json"), pin, None) {
            assert!(c.ok);
        }
    }
    Input::Built(b) => built(&b),
});
