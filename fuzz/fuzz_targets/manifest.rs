//! manifest.json and its signature, as every command reads them.
//!
//! Input: one mode byte, then bytes. Mode 0: `Manifest::parse` and what
//! commands call on a parsed manifest; a manifest that parses must
//! serialize and parse again to the same value. Mode 1: the bytes are the
//! signature file (`manifest.json.sig`). Mode 2: a vault directory whose
//! manifest names the fuzz signer and is signed by it (`SIGNER` in the
//! bytes stands for its key), read with `manifest::load` as commands do.
//! Mode 3: a valid manifest edited by the input (3 bytes per edit: a
//! position and a value; the value 0 cuts the document there), signed
//! and loaded as in mode 2, so that edits deep in a valid document are
//! reached without a seed corpus.

#![no_main]

mod common;

use kakuri::manifest::{self, Manifest};
use kakuri::vault::{self, VaultDir};
use libfuzzer_sys::fuzz_target;

fn use_parsed(m: &Manifest) {
    let _ = m.root();
    let _ = m.signer_key();
    let _ = m.days_left();
    let _ = m.file("index/keys.age");
    let _ = m.custody.labels();
    let again =
        Manifest::parse(&m.to_bytes()).expect("a parsed manifest parses after a round trip");
    assert_eq!(again.to_bytes(), m.to_bytes());
}

const VALID: &str = r#"{
  "format": "kakuri-vault",
  "version": 1,
  "vault_id": "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99",
  "created": "2026-01-01T00:00:00Z",
  "retain_until": "2099-12-31",
  "tool": "kakuri 0.1.0",
  "records": 3,
  "image_bytes": 300,
  "doc_types": {"drivers_licence": 2, "passport": 1},
  "merkle": {"alg": "blake3-rfc6962", "size": 3, "root": "6b2b7d7c6a1f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0918273645"},
  "index": {"keys": "index/keys.age", "records": "index/records.age", "tree": "index/tree.age", "ids": "index/ids.age", "entries": 12, "page": 65536, "tree_tile": 2048},
  "custody": {"scheme": "threshold", "threshold": 2, "generation": 1,
    "custodians": [{"label": "a", "recipient": "age1a"}, {"label": "b", "recipient": "age1b"}],
    "wraps": ["custody/g1-share-01.age", "custody/g1-share-02.age"],
    "shares": [{"file": "custody/g1-share-01.age", "custodian": "a", "commitment": "00"}, {"file": "custody/g1-share-02.age", "custodian": "b", "commitment": "11"}],
    "key_check": "22"},
  "signer": "SIGNER",
  "zstd_level": 3,
  "shards": [{"file": "shards/000000.tar.zst.age", "first_ordinal": 0, "records": 3}],
  "files": [{"path": "shards/000000.tar.zst.age", "size": 1000, "blake3": "33"}],
  "supersedes": null
}
"#;

fn load_signed(bytes: &[u8]) {
    let bytes = common::subst(bytes, "SIGNER", common::signer_line());
    let d = common::fresh_dir("vault");
    common::write_signed(&d, vault::MANIFEST, &bytes, manifest::NAMESPACE);
    if let Ok(l) = manifest::load(&VaultDir::new(&d), Some(common::signer_pub())) {
        use_parsed(&l.manifest);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(m) = Manifest::parse(rest) {
                use_parsed(&m);
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = manifest::verify_sig(
                    b"{}",
                    text,
                    common::signer_pub(),
                    manifest::NAMESPACE,
                    "manifest.json",
                );
            }
        }
        2 => load_signed(rest),
        _ => load_signed(&common::edited(VALID, rest)),
    }
});
