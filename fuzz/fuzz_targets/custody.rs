//! Custody: the recipients file, the wrapped vault-key file (any-one) and
//! k-of-n share files, as pack, every opening command and rewrap read
//! them.
//!
//! A real 2-of-3 wrap and a real any-one wrap are made once per process.
//! Each input then replaces wrap files by fuzzed plaintexts (encrypted to
//! the custodian, with the manifest's commitment fixed up or not), by
//! real shares with fuzzed fields, or by raw bytes, and opens the vault
//! with some of the custodians. Whatever the files hold, an unwrap that
//! succeeds returns the vault's real key: a wrong key is never accepted.

#![no_main]

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kakuri::crypt::VaultKey;
use kakuri::custody::{self, CustodyInfo};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    key: VaultKey,
    ids: Vec<age::x25519::Identity>,
    threshold: (PathBuf, CustodyInfo, Vec<Vec<u8>>),
    any_one: (PathBuf, CustodyInfo, Vec<u8>),
}

fn decrypt(path: &std::path::Path, id: &age::x25519::Identity) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let d = age::Decryptor::new(f).unwrap();
    let mut r = d
        .decrypt(std::iter::once(id as &dyn age::Identity))
        .unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = VaultKey::generate();
        let ids: Vec<_> = (0..3).map(|_| age::x25519::Identity::generate()).collect();
        let rd = common::fresh_dir("template-recipients");
        let recipients = |n: usize| {
            let text: String = ids
                .iter()
                .take(n)
                .enumerate()
                .map(|(i, id)| format!("{} c{i}\n", id.to_public()))
                .collect();
            let path = rd.join(format!("recipients-{n}.txt"));
            std::fs::write(&path, text).unwrap();
            custody::parse_recipients(&path).unwrap()
        };
        let td = common::fresh_dir("template-threshold");
        std::fs::create_dir(td.join("custody")).unwrap();
        let w = custody::wrap(&td, &key, "v", &recipients(3), 2, 1).unwrap();
        let plains = w
            .info
            .shares
            .iter()
            .zip(&ids)
            .map(|(s, id)| decrypt(&td.join(&s.file), id))
            .collect();
        let ad = common::fresh_dir("template-any-one");
        std::fs::create_dir(ad.join("custody")).unwrap();
        let a = custody::wrap(&ad, &key, "v", &recipients(1), 1, 1).unwrap();
        // What wrap encrypts to the custodians when one of them suffices.
        let aplain = key.to_file_text("v").as_bytes().to_vec();
        Fixture {
            key,
            ids,
            threshold: (td, w.info, plains),
            any_one: (ad, a.info, aplain),
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Wrap {
    Keep,
    /// A new plaintext, encrypted to the custodian; the commitment in the
    /// manifest is fixed up to match it if `commit`.
    Plain {
        bytes: Vec<u8>,
        commit: bool,
    },
    /// The real share plaintext with fields changed (commitment fixed up).
    Edited(Edit),
    /// Raw bytes in place of the age file.
    Raw(Vec<u8>),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Index(u64),
    VaultId(String),
    Format(String),
    ShareHex(String),
    ShareBytes(Vec<u8>),
    FlipShareByte(u16, u8),
    TruncateShare(u16),
    ShareOf(u8),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Recipients(Vec<u8>),
    AnyOne { wrap: Wrap, with: bool },
    Threshold { wraps: [Wrap; 3], with: [bool; 3] },
}

/// `plain` with `e` applied: to the fields of a share file, or to the
/// bytes of the (non-JSON) vault-key file.
fn edited(plain: &[u8], e: &Edit, others: &[Vec<u8>]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(plain) else {
        let mut b = plain.to_vec();
        match e {
            Edit::FlipShareByte(at, x) if !b.is_empty() => {
                let n = b.len();
                b[*at as usize % n] ^= x | 1;
            }
            Edit::TruncateShare(n) => b.truncate(*n as usize % (b.len() + 1)),
            Edit::ShareBytes(x) => b.extend_from_slice(x),
            _ => {}
        }
        return b;
    };
    let share_hex = v["share"].as_str().unwrap().to_string();
    let mut share = hex::decode(&share_hex).unwrap();
    match e {
        Edit::Index(i) => v["index"] = (*i).into(),
        Edit::VaultId(s) => v["vault_id"] = s.clone().into(),
        Edit::Format(s) => v["format"] = s.clone().into(),
        Edit::ShareHex(s) => v["share"] = s.clone().into(),
        Edit::ShareBytes(b) => v["share"] = hex::encode(b).into(),
        Edit::FlipShareByte(at, x) => {
            if !share.is_empty() {
                let n = share.len();
                share[*at as usize % n] ^= x | 1;
            }
            v["share"] = hex::encode(&share).into();
        }
        Edit::TruncateShare(n) => {
            share.truncate(*n as usize % (share.len() + 1));
            v["share"] = hex::encode(&share).into();
        }
        Edit::ShareOf(i) => {
            let o: serde_json::Value =
                serde_json::from_slice(&others[*i as usize % others.len()]).unwrap();
            v["share"] = o["share"].clone();
        }
    }
    serde_json::to_vec(&v).unwrap()
}

/// Writes wrap `rel` for custodian `id` as `w` says; returns the
/// commitment to record (or None to keep the real one).
fn place(
    dir: &std::path::Path,
    rel: &str,
    src: &std::path::Path,
    id: &age::x25519::Identity,
    plain: &[u8],
    others: &[Vec<u8>],
    w: &Wrap,
) -> Option<String> {
    let dest = dir.join(rel);
    let put = |p: &[u8]| common::write_age(&dest, &id.to_public(), p);
    match w {
        Wrap::Keep => {
            std::fs::copy(src.join(rel), &dest).unwrap();
            None
        }
        Wrap::Plain { bytes, commit } => {
            put(bytes);
            commit.then(|| blake3::hash(bytes).to_hex().to_string())
        }
        Wrap::Edited(e) => {
            let p = edited(plain, e, others);
            put(&p);
            Some(blake3::hash(&p).to_hex().to_string())
        }
        Wrap::Raw(b) => {
            std::fs::write(&dest, b).unwrap();
            None
        }
        Wrap::Missing => None,
    }
}

fn check(res: kakuri::error::Result<VaultKey>) {
    if let Ok(k) = res {
        assert_eq!(
            *k.derive("fuzz"),
            *fixture().key.derive("fuzz"),
            "custody accepted a key that is not the vault's"
        );
    }
}

fuzz_target!(|input: Input| {
    let f = fixture();
    match input {
        Input::Recipients(bytes) => {
            let d = common::fresh_dir("recipients");
            common::write(&d, "recipients.txt", &bytes);
            if let Ok(rs) = custody::parse_recipients(&d.join("recipients.txt")) {
                assert!(!rs.is_empty());
                for (i, (c, _)) in rs.iter().enumerate() {
                    assert!(!c.label.is_empty());
                    assert!(rs[..i].iter().all(|(o, _)| o.recipient != c.recipient));
                }
            }
        }
        Input::AnyOne { wrap, with } => {
            let (src, info, plain) = &f.any_one;
            let d = common::fresh_dir("any-one");
            std::fs::create_dir(d.join("custody")).unwrap();
            // The any-one file has no commitment of its own; the key check
            // in the manifest is what rules out a wrong key.
            let rel = info.wraps[0].clone();
            let _ = place(
                &d,
                &rel,
                src,
                &f.ids[0],
                plain,
                std::slice::from_ref(plain),
                &wrap,
            );
            let ids: Vec<Box<dyn age::Identity>> = if with {
                vec![Box::new(f.ids[0].clone())]
            } else {
                vec![Box::new(f.ids[1].clone())]
            };
            let res = custody::unwrap(&d, info, "v", &ids);
            if with && matches!(wrap, Wrap::Keep) {
                if let Err(e) = &res {
                    panic!("the custodian cannot open an intact wrap: {}", e.msg);
                }
            }
            check(res);
        }
        Input::Threshold { wraps, with } => {
            let (src, info, plains) = &f.threshold;
            let d = common::fresh_dir("threshold");
            std::fs::create_dir(d.join("custody")).unwrap();
            let mut info = info.clone();
            for i in 0..3 {
                let rel = info.shares[i].file.clone();
                if let Some(c) = place(&d, &rel, src, &f.ids[i], &plains[i], plains, &wraps[i]) {
                    info.shares[i].commitment = c;
                }
            }
            let ids: Vec<Box<dyn age::Identity>> = (0..3)
                .filter(|&i| with[i])
                .map(|i| Box::new(f.ids[i].clone()) as Box<dyn age::Identity>)
                .collect();
            let res = custody::unwrap(&d, &info, "v", &ids);
            // Two or more intact shares in hand, and nothing else in the
            // way (a file that is not an age file, or a missing one, stops
            // the unwrap whoever it belongs to): the vault opens.
            let keep = |i: usize| matches!(wraps[i], Wrap::Keep);
            let in_hand = (0..3).filter(|&i| with[i] && keep(i)).count();
            let in_the_way = (0..3)
                .any(|i| (with[i] && !keep(i)) || matches!(wraps[i], Wrap::Raw(_) | Wrap::Missing));
            if in_hand >= 2 && !in_the_way {
                if let Err(e) = &res {
                    panic!("two intact shares do not open the vault: {}", e.msg);
                }
            }
            check(res);
        }
    }
});
