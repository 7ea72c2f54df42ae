//! No plaintext of a record, and no personal data, anywhere kakuri writes:
//! a unique canary planted in records' metadata and image bytes is looked
//! for, in every encoding it could take, in the vault (shards, index,
//! manifest, audit log, certificate), in the temporary directory kakuri was
//! given, and in every command's stdout/stderr. It may appear only in the
//! input, in the export directory, and in lookup's answer on stdout (which
//! is the point of a lookup).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::*;

fn encodings(canary: &str) -> Vec<(String, Vec<u8>)> {
    let raw = canary.as_bytes().to_vec();
    let mut out = vec![
        ("utf-8".to_string(), raw.clone()),
        ("hex".into(), hex::encode(&raw).into_bytes()),
        ("HEX".into(), hex::encode_upper(&raw).into_bytes()),
        (
            "utf-16le".into(),
            canary
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect(),
        ),
        (
            "utf-16be".into(),
            canary
                .encode_utf16()
                .flat_map(|u| u.to_be_bytes())
                .collect(),
        ),
        (
            "json-escaped".into(),
            serde_json::to_string(canary)
                .unwrap()
                .trim_matches('"')
                .as_bytes()
                .to_vec(),
        ),
        (
            "json-ascii-escaped".into(),
            canary
                .chars()
                .map(|c| {
                    if c.is_ascii() {
                        c.to_string()
                    } else {
                        format!("\\u{:04x}", c as u32)
                    }
                })
                .collect::<String>()
                .into_bytes(),
        ),
    ];
    // base64 at each of the three alignments, without the edge characters
    // that depend on neighbouring bytes.
    for shift in 0..3 {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(&raw);
        let b = base64::engine::general_purpose::STANDARD.encode(&padded);
        let skip = (shift * 4).div_ceil(3) + 1;
        let core = &b[skip..b.len().saturating_sub(4)];
        out.push((format!("base64+{shift}"), core.as_bytes().to_vec()));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every (file, encoding) under `dir` that holds a canary encoding.
fn scan_dir(dir: &Path, encs: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut hits = Vec::new();
    for ent in walk(dir) {
        let bytes = fs::read(&ent).unwrap_or_default();
        for (name, e) in encs {
            if contains(&bytes, e) {
                hits.push(format!("{} ({name})", ent.display()));
            }
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&p));
        } else if ft.is_file() {
            out.push(p);
        }
    }
    out
}

fn scan_output(
    what: &str,
    o: &std::process::Output,
    encs: &[(String, Vec<u8>)],
    check_stdout: bool,
) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, e) in encs {
        if check_stdout && contains(&o.stdout, e) {
            hits.push(format!("{what} stdout ({name})"));
        }
        if contains(&o.stderr, e) {
            hits.push(format!("{what} stderr ({name})"));
        }
    }
    hits
}

#[test]
fn a_planted_canary_appears_only_in_the_input_the_export_and_the_lookup_answer() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let canary = format!("KKCANARY{}隔離", hex::encode(rand_bytes()));
    let member = format!("MCANARY{}", hex::encode(rand_bytes()));
    let encs = encodings(&canary);
    let member_encs = encodings(&member);

    // Input: a few ordinary records plus one carrying the canary in its
    // metadata (name, document number, an extra field) and image bytes.
    let input = r.join("input");
    fs::create_dir_all(input.join("img")).unwrap();
    let mut lines = String::new();
    for i in 0..30 {
        let mut img = b"\xff\xd8\xff\xe0 ordinary image ".to_vec();
        img.extend_from_slice(format!("{i}").as_bytes());
        if i == 7 {
            img.extend_from_slice(canary.as_bytes());
        }
        img.extend_from_slice(b"\xff\xd9");
        fs::write(input.join(format!("img/{i}.jpg")), &img).unwrap();
        let (name, mid) = if i == 7 {
            (canary.clone(), member.clone())
        } else {
            (format!("ヤマダ {i}"), format!("M{i:08}"))
        };
        lines.push_str(
            &serde_json::json!({
                "record_id": format!("rec-{i}"),
                "member_id": mid,
                "doc_type": "drivers_license",
                "document_number": format!("DN{i:06}"),
                "name_kana": name,
                "note": if i == 7 { canary.clone() } else { String::new() },
                "image": format!("img/{i}.jpg"),
            })
            .to_string(),
        );
        lines.push('\n');
    }
    fs::write(input.join("records.jsonl"), lines).unwrap();

    let keys = r.join("keys");
    private_dir(&keys);
    let id = keys.join("custodian.key");
    let op = keys.join("op");
    let o = run_ok(kakuri().arg("keygen").arg("--identity").arg(&id));
    let recipient = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("recipient: ").map(str::to_string))
        .unwrap();
    run_ok(kakuri().arg("keygen").arg("--signing-key").arg(&op));
    fs::write(keys.join("recipients"), format!("{recipient} custodian\n")).unwrap();
    let stranger = keys.join("stranger.key");
    run_ok(kakuri().arg("keygen").arg("--identity").arg(&stranger));

    // kakuri gets its own TMPDIR so anything it writes there is scanned.
    let tmp = r.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let vault = r.join("vault");
    let ev = r.join("evidence");
    let k = || {
        let mut c = kakuri();
        c.env("TMPDIR", &tmp);
        c
    };
    let access = |c: &mut assert_cmd::Command, ident: &Path| {
        c.arg(&vault)
            .arg("-i")
            .arg(ident)
            .arg("--sign-key")
            .arg(&op)
            .arg("--case")
            .arg("CASE-1")
            .arg("--reason")
            .arg("canary test");
    };

    let mut hits = Vec::new();
    let o = run_ok(
        k().arg("pack")
            .arg(&input)
            .arg("--recipients")
            .arg(keys.join("recipients"))
            .arg("--sign-key")
            .arg(&op)
            .arg("--retain-until")
            .arg(RETAIN)
            .arg("--out")
            .arg(&vault)
            // Force the blind-index sort to spill runs to disk.
            .arg("--sort-run-entries")
            .arg("8"),
    );
    hits.extend(scan_output("pack", &o, &encs, true));
    hits.extend(scan_output("pack", &o, &member_encs, true));

    // Lookup: its stdout is the answer and may show the metadata.
    let mut c = k();
    c.arg("lookup");
    access(&mut c, &id);
    let o = run_ok(c.arg("--member-id").arg(&member));
    assert!(stdout(&o).contains("rec-7"), "{}", show(&o));
    hits.extend(scan_output("lookup", &o, &encs, false));
    hits.extend(scan_output("lookup", &o, &member_encs, false));

    // The same lookup by a stranger fails, and the error names no member id.
    let mut c = k();
    c.arg("lookup");
    access(&mut c, &stranger);
    let o = run_code(c.arg("--member-id").arg(&member), 5);
    hits.extend(scan_output("refused lookup", &o, &member_encs, true));

    let mut c = k();
    c.arg("export");
    access(&mut c, &id);
    let o = run_ok(c.arg("--record-id").arg("rec-7").arg("--out").arg(&ev));
    hits.extend(scan_output("export", &o, &encs, true));
    assert!(
        !scan_dir(&ev, &encs).is_empty(),
        "the export must hold the record"
    );

    let mut c = k();
    c.arg("match");
    access(&mut c, &id);
    fs::write(r.join("q.csv"), format!("m\n{member}\n")).unwrap();
    let o = run_ok(
        c.arg("--table")
            .arg(r.join("q.csv"))
            .arg("--column")
            .arg("m")
            .arg("--field")
            .arg("member_id"),
    );
    hits.extend(scan_output("match", &o, &encs, true));

    for args in [
        vec!["verify".into(), vault.clone().into_os_string()],
        vec![
            "verify".into(),
            vault.clone().into_os_string(),
            "--deep".into(),
            "-i".into(),
            id.clone().into_os_string(),
            "--sign-key".into(),
            op.clone().into_os_string(),
        ],
        vec!["status".into(), vault.clone().into_os_string()],
        vec!["audit".into(), vault.clone().into_os_string()],
        vec![
            "audit".into(),
            "verify".into(),
            vault.clone().into_os_string(),
        ],
    ] {
        let o = run_ok(k().args(&args));
        hits.extend(scan_output(&format!("{args:?}"), &o, &encs, true));
        hits.extend(scan_output(&format!("{args:?}"), &o, &member_encs, true));
    }

    // The sealed vault, its audit log and the temp dir hold no trace.
    hits.extend(scan_dir(&vault, &encs));
    hits.extend(scan_dir(&vault, &member_encs));
    hits.extend(scan_dir(&tmp, &encs));

    // Destroy, then scan what survives (manifest, audit log, certificate).
    let vid = json_of(&run_ok(k().arg("status").arg(&vault).arg("--json")))["vault_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = run_ok(
        k().arg("destroy")
            .arg(&vault)
            .arg("--confirm")
            .arg(&vid)
            .arg("--sign-key")
            .arg(&op)
            .arg("--early")
            .arg("--reason")
            .arg("canary test done"),
    );
    hits.extend(scan_output("destroy", &o, &encs, true));
    hits.extend(scan_dir(&vault, &encs));
    hits.extend(scan_dir(&vault, &member_encs));
    hits.extend(scan_dir(&tmp, &encs));

    assert!(
        hits.is_empty(),
        "canary found where it must not be:\n{}",
        hits.join("\n")
    );
    // And it is still in the input (the scan works).
    assert!(!scan_dir(&input, &encs).is_empty());
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    b.copy_from_slice(&blake3::hash(&t.to_le_bytes()).as_bytes()[..8]);
    b
}
