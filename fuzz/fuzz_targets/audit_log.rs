//! The audit log as `audit verify`, `audit`, and every appending command
//! read it: audit/log.jsonl (one `ENTRY_JSON <TAB> base64(SSHSIG)` line
//! per entry, hash-chained) and the signed head.
//!
//! `Raw`: fuzz bytes for the log, the head and its signature. `Built`: a
//! log of fuzzed entries, chained and signed as kakuri writes it, with at
//! most one chosen defect; `audit verify` must pass exactly when there is
//! none.

#![no_main]

mod common;

use arbitrary::Arbitrary;
use base64::Engine;
use kakuri::audit::{self, Entry};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw {
        log: Vec<u8>,
        head: Vec<u8>,
        sig: Vec<u8>,
    },
    Built(Built),
}

#[derive(Arbitrary, Debug)]
struct Built {
    entries: Vec<Parts>,
    defect: Option<Defect>,
    pin: bool,
}

#[derive(Arbitrary, Debug)]
struct Parts {
    action: u8,
    operator: String,
    case: Option<String>,
    reason: Option<String>,
    count: u64,
    queries: Vec<String>,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Defect {
    Seq(u8, u64),
    FirstNotPack,
    Prev(u8),
    OtherVault(u8),
    Signature(u8),
    Truncated,
    HeadSeq(u64),
    HeadHash,
    HeadMissing,
    HeadSignature,
    ExtraFile,
    Untrusted,
    DropLine(u8),
}

const ACTIONS: [&str; 6] = ["pack", "lookup", "export", "verify", "match", "rewrap"];

fn built(b: &Built) {
    let d = common::fresh_dir("audit");
    let parts: Vec<&Parts> = b.entries.iter().take(8).collect();
    let n = parts.len();
    let at = |i: u8| if n == 0 { usize::MAX } else { i as usize % n };
    let mut effective = b.defect;
    let mut prev = audit::ZERO.to_string();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let seq = match b.defect {
            Some(Defect::Seq(j, s)) if at(j) == i => {
                if s == i as u64 {
                    effective = None;
                }
                s
            }
            _ => i as u64,
        };
        let action = if i == 0 && b.defect != Some(Defect::FirstNotPack) {
            "pack".to_string()
        } else {
            ACTIONS[1 + p.action as usize % (ACTIONS.len() - 1)].to_string()
        };
        let e = Entry {
            seq,
            time: "2026-01-01T00:00:00Z".into(),
            vault_id: match b.defect {
                Some(Defect::OtherVault(j)) if at(j) == i => "w".into(),
                _ => "v".into(),
            },
            prev: match b.defect {
                Some(Defect::Prev(j)) if at(j) == i => "11".repeat(32),
                _ => prev.clone(),
            },
            action,
            operator: p.operator.clone(),
            signer: common::signer_line().into(),
            case: p.case.clone(),
            reason: p.reason.clone(),
            result: serde_json::json!({"found": p.count}),
            queries: p.queries.clone(),
            tool: "kakuri".into(),
        };
        let json = serde_json::to_vec(&e).unwrap();
        let ns = match b.defect {
            Some(Defect::Signature(j)) if at(j) == i => kakuri::manifest::NAMESPACE,
            _ => audit::NAMESPACE,
        };
        let sig = common::sign(&json, ns);
        let mut line = json.clone();
        line.push(b'\t');
        line.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(sig)
                .as_bytes(),
        );
        lines.push(line);
        prev = blake3::hash(&json).to_hex().to_string();
    }
    let mut head_seq = (n as u64).wrapping_sub(1);
    if let Some(Defect::DropLine(j)) = b.defect {
        if n > 0 {
            let k = at(j);
            lines.remove(k);
            if k == n - 1 {
                // The log ends one entry early: the head keeps the removed
                // entry's seq, with the hash of the entry now last.
                prev = match lines.last() {
                    Some(l) => {
                        let tab = l.iter().position(|&c| c == b'\t').unwrap();
                        blake3::hash(&l[..tab]).to_hex().to_string()
                    }
                    None => audit::ZERO.to_string(),
                };
            }
        }
    }
    let mut log = Vec::new();
    for l in &lines {
        log.extend_from_slice(l);
        log.push(b'\n');
    }
    if b.defect == Some(Defect::Truncated) {
        log.pop();
    }
    if let Some(Defect::HeadSeq(s)) = b.defect {
        if s == head_seq {
            effective = None;
        }
        head_seq = s;
    }
    common::write(&d, audit::LOG, &log);
    let head = serde_json::to_vec(&serde_json::json!({
        "vault_id": "v",
        "seq": head_seq,
        "hash": if b.defect == Some(Defect::HeadHash) { audit::ZERO.to_string() } else { prev.clone() },
        "time": "2026-01-01T00:00:00Z",
    }))
    .unwrap();
    if b.defect != Some(Defect::HeadMissing) {
        let ns = if b.defect == Some(Defect::HeadSignature) {
            kakuri::manifest::NAMESPACE
        } else {
            audit::NAMESPACE
        };
        // At audit::HEAD_SIG, which is HEAD + ".sig".
        common::write_signed(&d, audit::HEAD, &head, ns);
    }
    if b.defect == Some(Defect::ExtraFile) {
        common::write(&d, "audit/notes.txt", b"x");
    }
    let other = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[8u8; 32]));
    let trusted: Vec<ssh_key::PublicKey> = match (b.pin, b.defect) {
        (_, Some(Defect::Untrusted)) => vec![other.public_key().clone()],
        (true, _) => vec![common::signer_pub().clone()],
        (false, _) => Vec::new(),
    };
    let c = audit::verify(&d, "v", &trusted).expect("verify reads the log");
    // An empty log never verifies: a vault's log starts with its pack entry.
    let want_ok = effective.is_none() && n > 0;
    assert_eq!(
        c.ok, want_ok,
        "audit verify says ok={} ({:?}) for {effective:?} with {n} entries",
        c.ok, c.problem
    );
    let _ = audit::read_all(&d);
    let _ = audit::last_entry(&d);
}

fuzz_target!(|input: Input| match input {
    Input::Raw { log, head, sig } => {
        let d = common::fresh_dir("audit");
        common::write(&d, audit::LOG, &log);
        common::write(&d, audit::HEAD, &head);
        common::write(&d, audit::HEAD_SIG, &sig);
        let _ = audit::verify(&d, "v", &[]);
        let _ = audit::read_all(&d);
        let _ = audit::last_entry(&d);
    }
    Input::Built(b) => built(&b),
});
