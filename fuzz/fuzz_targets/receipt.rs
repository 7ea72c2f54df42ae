//! An export directory checked offline by `kakuri receipt verify`:
//! receipt.json, meta.json, the image, and the manifest copy with its
//! signature.
//!
//! `Raw` writes fuzz bytes under the fixed names. `Built` assembles an
//! export from fuzzed parts (the tree's other leaves and the record's
//! position in it, or a raw position, size and audit path; image, file
//! names) and fixes up, as the input chooses, each value a checker
//! compares against (record hash, image hash, manifest hash, root,
//! signature), so that every check is reached; when everything is fixed
//! up and the names are the ones export writes, the receipt must verify.

#![no_main]

mod common;

use arbitrary::Arbitrary;
use kakuri::{manifest, merkle, receipt, record, vault};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw {
        receipt: Vec<u8>,
        meta: Vec<u8>,
        image: Vec<u8>,
        manifest: Vec<u8>,
        sig: Vec<u8>,
    },
    Built(Built),
}

#[derive(Arbitrary, Debug)]
struct Built {
    /// The other leaves of the tree; the record's leaf goes in at
    /// `ordinal` (modulo the size) and its audit path is computed.
    others: Vec<[u8; 32]>,
    ordinal: u16,
    /// Flip a byte of the computed audit path (entry, byte).
    proof_edit: Option<(u8, u8)>,
    /// Or: a position, tree size and audit path taken as they come.
    wide: Option<(u64, u64, Vec<[u8; 32]>)>,
    image: Vec<u8>,
    names: Names,
    /// Bit i set: value i is fixed up (0 record hash, 1 image hash,
    /// 2 manifest hash, 3 root, 4 signature, 5 meta.json ordinal).
    fix: u8,
    junk: [u8; 32],
    pin_signer: bool,
}

#[derive(Arbitrary, Debug)]
enum Names {
    Standard {
        ext: bool,
    },
    Fuzzed {
        image: String,
        manifest: String,
        signature: String,
    },
}

/// A name is written only if it stays inside the directory.
fn writable(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

const MANIFEST: &str = r#"{"format":"kakuri-vault","version":1,"vault_id":"v","created":"2026-01-01T00:00:00Z","retain_until":"2099-01-01","tool":"kakuri","records":0,"image_bytes":1,"doc_types":{},"merkle":{"alg":"blake3-rfc6962","size":0,"root":""},"index":{"keys":"index/keys.age","records":"index/records.age","tree":"index/tree.age","ids":"index/ids.age","entries":2,"page":65536,"tree_tile":2048},"custody":{"scheme":"any-one","threshold":1,"generation":1,"custodians":[],"wraps":[],"key_check":""},"signer":"","zstd_level":3,"shards":[],"files":[]}"#;

fn built(b: &Built) {
    let fixed = |i: u8| b.fix & (1 << i) != 0;
    let junk = hex::encode(b.junk);

    let (image_file, manifest_file, signature_file) = match &b.names {
        Names::Standard { ext } => (
            if *ext { "image.jpg" } else { "image" }.to_string(),
            vault::MANIFEST.to_string(),
            vault::MANIFEST_SIG.to_string(),
        ),
        Names::Fuzzed {
            image,
            manifest,
            signature,
        } => (image.clone(), manifest.clone(), signature.clone()),
    };
    let standard = matches!(b.names, Names::Standard { .. });
    let others: Vec<merkle::Hash> = b.others.iter().take(40).copied().collect();
    let ordinal = match &b.wide {
        Some((o, _, _)) => *o,
        None => (b.ordinal as usize % (others.len() + 1)) as u64,
    };
    let image_blake3 = blake3::hash(&b.image).to_hex().to_string();
    let meta = serde_json::to_vec(&json!({
        "format": record::META_FORMAT,
        "ordinal": if fixed(5) { ordinal } else { ordinal ^ 1 },
        "record_id": "r",
        "image_path": "a.jpg",
        "image_size": b.image.len(),
        "image_blake3": if fixed(1) { image_blake3.clone() } else { junk.clone() },
        "source": {"record_id": "r", "image": "a.jpg"},
    }))
    .unwrap();
    let record_hash = if fixed(0) {
        record::record_hash(&meta)
    } else {
        b.junk
    };
    let (tree_size, proof, computed) = match &b.wide {
        Some((o, t, proof)) => {
            let r = merkle::root_from_path(*o, *t, &merkle::leaf_hash(&record_hash), proof);
            (*t, proof.clone(), r)
        }
        None => {
            let mut nodes = others;
            let at = ordinal as usize;
            nodes.insert(at, merkle::leaf_hash(&record_hash));
            let mut proof = merkle::path_in(at, &nodes);
            let mut root = Some(merkle::root_of(&nodes));
            if let Some((i, j)) = b.proof_edit {
                if !proof.is_empty() {
                    let n = proof.len();
                    proof[i as usize % n][j as usize % 32] ^= 1;
                    root = None;
                }
            }
            (nodes.len() as u64, proof, root)
        }
    };
    let root = match computed {
        Some(r) if fixed(3) => r,
        _ => b.junk,
    };
    let mut m: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
    m["records"] = json!(tree_size);
    m["merkle"]["size"] = json!(tree_size);
    m["merkle"]["root"] = json!(hex::encode(root));
    m["index"]["entries"] = json!(tree_size);
    m["shards"] = json!([{"file": vault::shard_path(0), "first_ordinal": 0, "records": tree_size}]);
    m["signer"] = json!(common::signer_line());
    let mbytes = serde_json::to_vec_pretty(&m).unwrap();
    let sig = if fixed(4) {
        common::sign(&mbytes, manifest::NAMESPACE)
    } else {
        junk.clone()
    };
    let rc = receipt::Receipt {
        format: receipt::RECEIPT_FORMAT.into(),
        vault_id: "v".into(),
        ordinal,
        tree_size,
        record_hash: hex::encode(record_hash),
        image_file,
        image_blake3,
        proof: proof.iter().map(hex::encode).collect(),
        root: hex::encode(root),
        manifest_file,
        manifest_blake3: if fixed(2) {
            blake3::hash(&mbytes).to_hex().to_string()
        } else {
            junk.clone()
        },
        signature_file,
        signer: common::signer_line().into(),
        signer_fingerprint: common::signer_fingerprint(),
        exported_at: "2026-01-01T00:00:00Z".into(),
        case: "C-1".into(),
    };
    let d = common::fresh_dir("receipt");
    common::write(
        &d,
        receipt::RECEIPT_FILE,
        &serde_json::to_vec_pretty(&rc).unwrap(),
    );
    common::write(&d, receipt::META_FILE, &meta);
    for (name, bytes) in [
        (&rc.image_file, &b.image[..]),
        (&rc.manifest_file, &mbytes[..]),
        (&rc.signature_file, sig.as_bytes()),
    ] {
        if writable(name) {
            common::write(&d, name, bytes);
        }
    }
    let pin = b.pin_signer.then(common::signer_pub);
    let res = receipt::verify_dir(&d, pin);
    if standard && b.fix & 0x3f == 0x3f && computed.is_some() && tree_size <= manifest::MAX_RECORDS
    {
        if let Err(e) = &res {
            panic!("a receipt built correctly does not verify: {}", e.msg);
        }
    }
    if res.is_ok() {
        assert!(
            computed.is_some() && ordinal < tree_size,
            "a receipt with a broken audit path verifies"
        );
        assert!(
            b.fix & 0x3f == 0x3f,
            "a receipt with a wrong hash, root, signature or position verifies"
        );
    }
}

fuzz_target!(|input: Input| match input {
    Input::Raw {
        receipt,
        meta,
        image,
        manifest,
        sig,
    } => {
        let d = common::fresh_dir("receipt");
        common::write(&d, receipt::RECEIPT_FILE, &receipt);
        common::write(&d, receipt::META_FILE, &meta);
        common::write(&d, "image.jpg", &image);
        common::write(&d, vault::MANIFEST, &manifest);
        common::write(&d, vault::MANIFEST_SIG, &sig);
        let _ = receipt::verify_dir(&d, None);
    }
    Input::Built(b) => built(&b),
});
