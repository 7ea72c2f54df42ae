//! Property tests for every parser that reads vault files or operator
//! input: arbitrary and mutated bytes must give an error (or a value),
//! never a panic, a hang or an unbounded allocation. Run in CI with a
//! bounded number of cases; `PROPTEST_CASES=100000 cargo test --release
//! --test parsers_fuzz` runs them longer.

use std::fs;
use std::path::Path;

use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid document to mutate, so the fuzzer gets past the first byte.
fn mutate(base: &[u8], flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut v = base.to_vec();
    for (i, b) in flips {
        if !v.is_empty() {
            let n = v.len();
            v[i % n] ^= b | 1;
        }
    }
    if let Some(c) = cut {
        let n = v.len();
        v.truncate(c % (n + 1));
    }
    v
}

const MANIFEST: &str = r#"{"format":"kakuri-vault","version":1,"vault_id":"v","created":"c","retain_until":"2099-01-01","tool":"t","records":1,"image_bytes":1,"doc_types":{},"merkle":{"alg":"blake3-rfc6962","size":1,"root":"0000000000000000000000000000000000000000000000000000000000000000"},"index":{"keys":"index/keys.age","records":"index/records.age","tree":"index/tree.age","ids":"index/ids.age","entries":2,"page":65536,"tree_tile":2048},"custody":{"scheme":"any-one","threshold":1,"generation":1,"custodians":[],"wraps":[],"key_check":""},"signer":"ssh-ed25519 AAAA","zstd_level":3,"shards":[{"file":"shards/000000.tar.zst.age","first_ordinal":0,"records":1}],"files":[]}"#;

const META: &str = r#"{"format":"kakuri-record-v1","ordinal":0,"record_id":"r","image_path":"a.jpg","image_size":1,"image_blake3":"00","source":{"record_id":"r","image":"a.jpg"}}"#;

fn write_input(dir: &Path, jsonl: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("records.jsonl"), jsonl).unwrap();
    fs::write(dir.join("a.jpg"), b"\xff\xd8x\xff\xd9").unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_parser_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in proptest::option::of(any::<usize>()), junk in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = kakuri::manifest::Manifest::parse(&mutate(MANIFEST.as_bytes(), &flips, cut));
        let _ = kakuri::manifest::Manifest::parse(&junk);
    }

    #[test]
    fn record_metadata_parser_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in proptest::option::of(any::<usize>())) {
        let b = mutate(META.as_bytes(), &flips, cut);
        if let Ok(m) = kakuri::record::parse_meta(&b) {
            let _ = kakuri::record::fields_of(&m);
        }
    }

    #[test]
    fn record_tar_and_frame_parsers_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in proptest::option::of(any::<usize>()), claimed in 0u32..100_000) {
        let tar = kakuri::shard::record_tar(3, META.as_bytes(), b"\xff\xd8img\xff\xd9", Some("jpg"), 0).unwrap();
        let _ = kakuri::shard::parse_record_tar(3, &mutate(&tar, &flips, cut), "s");
        let frame = zstd::bulk::compress(&tar, 3).unwrap();
        // A frame is never inflated beyond the size the index claims.
        if let Ok(v) = kakuri::shard::decompress_frame(&mutate(&frame, &flips, cut), claimed, "s") {
            prop_assert!(v.len() == claimed as usize);
        }
    }

    #[test]
    fn index_slot_decoders_accept_any_bytes(b in proptest::collection::vec(any::<u8>(), 64)) {
        let _ = kakuri::index::Entry::decode(&b);
        let _ = kakuri::index::RecordLoc::decode(&b);
    }

    #[test]
    fn records_jsonl_reader_never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..5), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let d = tempfile::tempdir().unwrap();
        let mut text = br#"{"record_id":"r1","image":"a.jpg","member_id":"M1"}"#.to_vec();
        text = mutate(&text, &flips, None);
        text.push(b'\n');
        for l in &lines {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        write_input(d.path(), &text);
        if let Ok(mut r) = kakuri::input::InputReader::open(d.path()) {
            for _ in 0..10 {
                match r.next_record() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn receipt_certificate_and_audit_readers_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), cut in proptest::option::of(any::<usize>())) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let receipt = br#"{"format":"kakuri-receipt-v1","vault_id":"v","ordinal":0,"tree_size":1,"record_hash":"00","image_file":"image.jpg","image_blake3":"00","proof":[],"root":"00","manifest_file":"manifest.json","manifest_blake3":"00","signature_file":"manifest.json.sig","signer":"","signer_fingerprint":"","exported_at":"","case":""}"#;
        fs::write(p.join("receipt.json"), mutate(receipt, &flips, cut)).unwrap();
        fs::write(p.join("meta.json"), META).unwrap();
        fs::write(p.join("image.jpg"), b"x").unwrap();
        fs::write(p.join("manifest.json"), mutate(MANIFEST.as_bytes(), &flips, None)).unwrap();
        fs::write(p.join("manifest.json.sig"), b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n").unwrap();
        prop_assert!(kakuri::receipt::verify_dir(p, None).is_err());
        let cert = mutate(br#"{"format":"kakuri-destruction-certificate-v1","certificate_id":"c"}"#, &flips, cut);
        fs::write(p.join("certificate.json"), cert).unwrap();
        fs::write(p.join("certificate.json.sig"), b"junk").unwrap();
        prop_assert!(kakuri::certificate::verify(&p.join("certificate.json"), None, None).is_err());
        fs::create_dir_all(p.join("audit")).unwrap();
        let line = mutate(br#"{"seq":0,"time":"t","vault_id":"v","prev":"00","action":"pack","operator":"o","signer":"s","result":{},"tool":"t"}	AAAA"#, &flips, cut);
        let mut log = line.clone();
        log.push(b'\n');
        fs::write(p.join("audit/log.jsonl"), log).unwrap();
        let c = kakuri::audit::verify(p, "v", &[]).unwrap();
        prop_assert!(!c.ok);
    }
}

/// Found by the cargo-fuzz target `audit_log`: a signed head claiming
/// sequence number u64::MAX overflowed `seq + 1` in `audit::verify`.
#[test]
fn an_audit_head_claiming_the_largest_sequence_number_fails_verification_without_panicking() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("audit")).unwrap();
    let key =
        ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    kakuri::audit::append(
        d.path(),
        "v",
        &key,
        kakuri::audit::Event {
            action: "pack",
            operator: "t",
            case: None,
            reason: None,
            result: serde_json::json!({}),
            queries: Vec::new(),
        },
    )
    .unwrap();
    let hp = d.path().join(kakuri::audit::HEAD);
    let mut head: serde_json::Value = serde_json::from_slice(&fs::read(&hp).unwrap()).unwrap();
    head["seq"] = serde_json::json!(u64::MAX);
    let hb = serde_json::to_vec_pretty(&head).unwrap();
    fs::write(&hp, &hb).unwrap();
    let sig = kakuri::manifest::sign_ns(&hb, &key, kakuri::audit::NAMESPACE).unwrap();
    fs::write(d.path().join(kakuri::audit::HEAD_SIG), sig).unwrap();
    let check = kakuri::audit::verify(d.path(), "v", &[]).unwrap();
    assert!(!check.ok);
    // Refused by the sequence check (the code that overflowed), not by
    // the signature check before it.
    let problem = check.problem.clone().unwrap_or_default();
    assert!(
        problem.contains(&format!("names entry {}", u64::MAX)),
        "{check:?}"
    );
}
