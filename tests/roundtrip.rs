//! Round trip: what goes into a vault comes out byte-exact, with its
//! metadata and a receipt that verifies offline; lookups find records by
//! every supported field and nothing else.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// Records appended to the synthetic set: the awkward cases.
const ODD_EMPTY: &str = "odd-empty";
const ODD_JAPANESE: &str = "odd-日本語";
const ODD_LONG_NAME: &str = "odd-long-name";
const ODD_BIG: &str = "odd-big";
const ODD_ESCAPE: &str = "../../../escape/evil";
const ODD_INT: &str = "4242";
const ODD_WS: &str = "odd-ws";
const ODD_SECOND: &str = "odd-second";
const BIG_LEN: usize = 5 * 1024 * 1024 + 7;
const SYNTH_COUNT: u64 = 300;

/// 300 synthetic records (images 512..1536 bytes) plus the odd ones: an
/// empty image, a Japanese file name, a 200-byte file name, a ~5 MB image,
/// a record id that looks like a path escape, integer ids, a line with
/// extra white space and CRLF, a blank line, and a member id with spaces.
fn roundtrip_set() -> Fixture {
    let f = Fixture::synth(SYNTH_COUNT, 1024, 7);
    let input = &f.input;
    add_record(
        input,
        &json!({"record_id": ODD_EMPTY, "member_id": "ODD-M-1", "doc_type": "passport",
                "document_number": "XZ0000001", "image": "odd/empty.jpg"}),
        b"",
    );
    add_record(
        input,
        &json!({"record_id": ODD_JAPANESE, "member_id": "ODD-M-2", "name_kana": "ヤマダ タロウ",
                "image": "odd/運転免許証/山田_太郎_表面（再提出）.jpeg"}),
        &noise(700, 1),
    );
    let long = format!("odd/{}.png", "n".repeat(196));
    assert_eq!(long.len() - "odd/".len(), 200);
    add_record(
        input,
        &json!({"record_id": ODD_LONG_NAME, "image": long}),
        &noise(900, 2),
    );
    append_line(input, "");
    add_record(
        input,
        &json!({"record_id": ODD_BIG, "member_id": "ODD-M-3", "image": "odd/big scan (1).TIFF"}),
        &noise(BIG_LEN, 3),
    );
    add_record(
        input,
        &json!({"record_id": ODD_ESCAPE, "image": "odd/e.gif"}),
        &noise(300, 4),
    );
    // Integer record and member ids, a full-width document number.
    fs::write(input.join("odd/int.jpg"), noise(400, 5)).unwrap();
    append_line(
        input,
        r#"{"record_id":4242,"member_id":77,"document_number":"ＡＢ-１２３４","image":"odd/int.jpg"}"#,
    );
    // Verbatim source: odd white space, nested values, CRLF line ending.
    fs::write(input.join("odd/ws.jpg"), noise(500, 6)).unwrap();
    append_line(
        input,
        "{ \"record_id\" : \"odd-ws\",  \"image\":\"odd/ws.jpg\" , \"extra\": {\"b\":1,\"a\":[1, 2.5e0, null]} }\r",
    );
    add_record(
        input,
        &json!({"record_id": ODD_SECOND, "member_id": "  ODD-M-1 ", "image": "odd/second.jpg"}),
        &noise(600, 7),
    );
    f
}

const ODD_COUNT: usize = 8;

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

#[test]
fn every_record_exports_byte_exact_with_its_source_line_and_a_verifying_receipt() {
    let f = roundtrip_set();
    let summary = f.pack(&["--shard-records", "64"]);
    let lines = f.lines();
    assert_eq!(lines.len(), SYNTH_COUNT as usize + ODD_COUNT);
    assert_eq!(summary["records"], lines.len() as u64);
    assert!(summary["shards"].as_u64().unwrap() >= 5, "{summary}");

    let exports = f.root.join("exports");
    fs::create_dir(&exports).unwrap();
    let workers = 8;
    std::thread::scope(|s| {
        for w in 0..workers {
            let (f, lines, exports) = (&f, &lines, &exports);
            s.spawn(move || {
                for line in lines.iter().skip(w).step_by(workers) {
                    check_export(f, line, &exports.join(format!("{:04}", line.ordinal)));
                }
            });
        }
    });
    // Nothing but the export directories was written.
    let mut dirs: Vec<String> = fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let want: Vec<String> = (0..lines.len()).map(|i| format!("{i:04}")).collect();
    assert_eq!(dirs, want);
    assert!(!f.root.join("escape").exists());
}

fn check_export(f: &Fixture, line: &InputLine, out: &Path) {
    let rid = line.record_id();
    let o = run_ok(f.export_cmd(&rid, out).arg("--json"));
    let rep = json_of(&o);
    assert_eq!(rep["ordinal"], line.ordinal, "ordinal of {rid}");
    let input_image = fs::read(f.input.join(line.image())).unwrap();

    // The directory holds exactly the fixed file names.
    let image_path = exported_image(out);
    let image_name = image_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut want = vec![
        image_name.clone(),
        "manifest.json".to_string(),
        "manifest.json.sig".to_string(),
        "meta.json".to_string(),
        "receipt.json".to_string(),
    ];
    want.sort();
    assert_eq!(files_under(out), want, "files of the export of {rid}");
    let expected_name = match kakuri::shard::image_ext(&line.image()) {
        Some(ext) => format!("image.{ext}"),
        None => "image".to_string(),
    };
    assert_eq!(image_name, expected_name, "image name for {}", line.image());

    // Byte-exact image.
    let got = fs::read(&image_path).unwrap();
    assert!(
        got == input_image,
        "image of {rid} differs from the input ({} vs {} bytes)",
        got.len(),
        input_image.len()
    );

    // meta.json: the input line verbatim, and the image's size and hash.
    let meta_text = fs::read_to_string(out.join("meta.json")).unwrap();
    let meta: Value = serde_json::from_str(&meta_text).unwrap();
    assert_eq!(meta["source"], line.json, "source of {rid}");
    assert!(
        meta_text.contains(&format!("\"source\":{}", line.text)),
        "meta.json of {rid} does not hold the input line verbatim:\n{meta_text}\n{}",
        line.text
    );
    assert_eq!(meta["record_id"], rid.as_str());
    assert_eq!(meta["ordinal"], line.ordinal);
    assert_eq!(meta["image_path"], line.image().as_str());
    assert_eq!(meta["image_size"], input_image.len() as u64);
    assert_eq!(meta["image_blake3"], blake3_hex(&input_image).as_str());

    // The receipt verifies offline, also pinned to the operator's key.
    run_ok(kakuri().arg("receipt").arg("verify").arg(out));
    run_ok(
        kakuri()
            .arg("receipt")
            .arg("verify")
            .arg(out)
            .arg("--signer")
            .arg(&f.keys.sign_pub),
    );
}

#[test]
fn tampered_export_fails_receipt_verify() {
    let f = roundtrip_set();
    f.pack(&[]);
    let rid = f.record(3).record_id;
    let out = f.root.join("ev");
    run_ok(&mut f.export_cmd(&rid, &out));
    run_ok(kakuri().arg("receipt").arg("verify").arg(&out));

    // A changed image byte is caught.
    let img = exported_image(&out);
    let orig = fs::read(&img).unwrap();
    flip_byte(&img, orig.len() / 2);
    let o = run_code(kakuri().arg("receipt").arg("verify").arg(&out), 4);
    assert!(stderr(&o).starts_with("kakuri: error:"), "{}", show(&o));
    fs::write(&img, &orig).unwrap();
    run_ok(kakuri().arg("receipt").arg("verify").arg(&out));

    // A changed metadata byte is caught.
    let meta = out.join("meta.json");
    let orig = fs::read(&meta).unwrap();
    let text = String::from_utf8(orig.clone()).unwrap();
    fs::write(&meta, text.replace("rec-00000003", "rec-00000004")).unwrap();
    run_code(kakuri().arg("receipt").arg("verify").arg(&out), 4);
    fs::write(&meta, &orig).unwrap();

    // A receipt pinned to another operator key is refused.
    let other = f.root.join("other-operator");
    keygen_signing(&other);
    run_code(
        kakuri()
            .arg("receipt")
            .arg("verify")
            .arg(&out)
            .arg("--signer")
            .arg(f.root.join("other-operator.pub")),
        4,
    );
}

#[test]
fn lookup_finds_records_by_member_id_document_number_record_id_and_image() {
    let f = roundtrip_set();
    f.pack(&["--shard-records", "100"]);

    // A member with two documents: records 8 and 9 of the synthetic set.
    assert!(kakuri::synth::is_second_document(9));
    let m = f.record(8).member_id;
    assert_eq!(f.record(9).member_id, m);
    for q in [m.clone(), format!("  {m} ")] {
        let v = f.lookup_json(&["--member-id", &q], 0);
        assert_eq!(v["found"], 2, "{v}");
        let mut ids = matched_ids(&v, 0);
        ids.sort();
        assert_eq!(ids, vec![f.record(8).record_id, f.record(9).record_id]);
        for r in v["results"][0]["matches"].as_array().unwrap() {
            assert_eq!(r["verified"], true);
            assert_eq!(r["source"]["member_id"], m.as_str());
        }
    }
    // A member with one document.
    let v = f.lookup_json(&["--member-id", &f.record(11).member_id], 0);
    assert_eq!(matched_ids(&v, 0), vec![f.record(11).record_id]);
    // Hand-made member ids, one written with surrounding spaces.
    let v = f.lookup_json(&["--member-id", "ODD-M-1"], 0);
    let mut ids = matched_ids(&v, 0);
    ids.sort();
    assert_eq!(ids, vec![ODD_EMPTY.to_string(), ODD_SECOND.to_string()]);
    let v = f.lookup_json(&["--member-id", "77"], 0);
    assert_eq!(matched_ids(&v, 0), vec![ODD_INT.to_string()]);

    // Record ids, including non-ASCII, path-like and integer ones.
    for rid in [
        f.record(0).record_id,
        f.record(123).record_id,
        f.record(SYNTH_COUNT - 1).record_id,
        ODD_JAPANESE.into(),
        ODD_ESCAPE.into(),
        ODD_INT.into(),
        ODD_WS.into(),
        ODD_BIG.into(),
    ] {
        let v = f.lookup_json(&["--record-id", &rid], 0);
        assert_eq!(matched_ids(&v, 0), vec![rid.clone()], "{v}");
    }

    // Several queries in one call: one result list per query.
    let (a, b) = (f.record(40).record_id, f.record(41).record_id);
    let v = f.lookup_json(&["--record-id", &a, "--record-id", &b], 0);
    assert_eq!(v["found"], 2);
    assert_eq!(matched_ids(&v, 0), vec![a]);
    assert_eq!(matched_ids(&v, 1), vec![b]);

    // An image found elsewhere, under another name.
    let r5 = f.record(5);
    let elsewhere = f.root.join("found-on-a-forum.bin");
    fs::copy(f.input.join(&r5.image_path), &elsewhere).unwrap();
    let v = f.lookup_json(&["--image", elsewhere.to_str().unwrap()], 0);
    assert_eq!(matched_ids(&v, 0), vec![r5.record_id]);
    assert_eq!(v["results"][0]["field"], "image");
    // The empty image.
    let empty = f.root.join("empty");
    fs::write(&empty, b"").unwrap();
    let v = f.lookup_json(&["--image", empty.to_str().unwrap()], 0);
    assert_eq!(matched_ids(&v, 0), vec![ODD_EMPTY.to_string()]);
    // The 5 MB image.
    let v = f.lookup_json(
        &[
            "--image",
            f.input.join("odd/big scan (1).TIFF").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(matched_ids(&v, 0), vec![ODD_BIG.to_string()]);
    assert_eq!(v["results"][0]["matches"][0]["image_size"], BIG_LEN as u64);
}

#[test]
fn document_number_lookup_folds_full_width_spaces_hyphens_and_case() {
    let f = roundtrip_set();
    f.pack(&[]);
    let find = |kind: &str| {
        (0..SYNTH_COUNT)
            .map(|i| f.record(i))
            .find(|r| r.doc_type == kind)
            .unwrap_or_else(|| panic!("no {kind} in the synthetic set"))
    };

    // Driver's licence: 12 digits. As written, full-width, with separators.
    let dl = find("drivers_license");
    let n = dl.document_number.clone();
    assert!(n.bytes().all(|b| b.is_ascii_digit()), "{n}");
    let spaced = format!("{}-{} {}", &n[..4], &n[4..8], &n[8..]);
    let wide = format!(
        "{}－{}\u{3000}{}",
        full_width(&n[..4]),
        full_width(&n[4..8]),
        full_width(&n[8..])
    );
    for q in [n.clone(), spaced, wide.clone(), format!(" {wide} ")] {
        let v = f.lookup_json(&["--document-number", &q], 0);
        assert_eq!(
            matched_ids(&v, 0),
            vec![dl.record_id.clone()],
            "query {q:?}"
        );
    }
    // One digit off does not match.
    let mut off = n.clone().into_bytes();
    off[5] = if off[5] == b'9' { b'0' } else { off[5] + 1 };
    let off = String::from_utf8(off).unwrap();
    let v = f.lookup_json(&["--document-number", &full_width(&off)], 1);
    assert_eq!(v["found"], 0);

    // Passport: letters are upper-cased, full-width lower case too.
    let pp = find("passport");
    let lower = pp.document_number.to_ascii_lowercase();
    for q in [lower.clone(), full_width(&lower)] {
        let v = f.lookup_json(&["--document-number", &q], 0);
        assert_eq!(
            matched_ids(&v, 0),
            vec![pp.record_id.clone()],
            "query {q:?}"
        );
    }

    // Health insurance "記号NNNNN 番号NNN": without the space, full-width digits.
    let hi = find("health_insurance");
    let q: String = hi
        .document_number
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| {
            if c.is_ascii_digit() {
                char::from_u32(c as u32 + 0xFEE0).unwrap()
            } else {
                c
            }
        })
        .collect();
    let v = f.lookup_json(&["--document-number", &q], 0);
    assert_eq!(
        matched_ids(&v, 0),
        vec![hi.record_id.clone()],
        "query {q:?}"
    );

    // Stored full-width with a hyphen ("ＡＢ-１２３４"), queried in ASCII.
    let v = f.lookup_json(&["--document-number", "ab 1234"], 0);
    assert_eq!(matched_ids(&v, 0), vec![ODD_INT.to_string()]);
}

#[test]
fn lookup_of_unknown_values_exits_1_and_prints_not_found() {
    let f = roundtrip_set();
    f.pack(&[]);
    let o = run_code(&mut f.lookup_cmd(&["--record-id", "rec-99999999"]), 1);
    assert!(stdout(&o).contains("not found"), "{}", show(&o));
    let o = run_code(&mut f.lookup_cmd(&["--member-id", "M99999999"]), 1);
    assert!(stdout(&o).contains("not found"), "{}", show(&o));

    // Fields are kept apart: a document number is not a member id or a
    // record id, and a record id is not a member id.
    let r = f.record(3);
    run_code(&mut f.lookup_cmd(&["--member-id", &r.document_number]), 1);
    run_code(&mut f.lookup_cmd(&["--record-id", &r.document_number]), 1);
    run_code(&mut f.lookup_cmd(&["--member-id", &r.record_id]), 1);
    run_code(&mut f.lookup_cmd(&["--document-number", &r.member_id]), 1);

    // An image that is not in the vault.
    let stranger = f.root.join("stranger.jpg");
    fs::write(&stranger, noise(1000, 99)).unwrap();
    let v = f.lookup_json(&["--image", stranger.to_str().unwrap()], 1);
    assert_eq!(v["found"], 0);
    assert_eq!(v["results"][0]["matches"], json!([]));

    // One hit among misses is success.
    let v = f.lookup_json(&["--record-id", "nope", "--record-id", &r.record_id], 0);
    assert_eq!(v["found"], 1);
    assert_eq!(matched_ids(&v, 0), Vec::<String>::new());
    assert_eq!(matched_ids(&v, 1), vec![r.record_id.clone()]);

    // Export of an unknown record writes nothing.
    let out = f.root.join("never");
    let o = run_code(&mut f.export_cmd("rec-99999999", &out), 1);
    assert!(stdout(&o).contains("not found"), "{}", show(&o));
    assert!(!out.exists());
}

/// The last entry of the vault's audit log (a line is the entry's JSON and
/// then its signature), without what differs between two runs: its place
/// in the chain and its time.
fn last_audit_entry(f: &Fixture) -> Value {
    let log = fs::read_to_string(f.vault.join("audit/log.jsonl")).unwrap();
    let line = log.lines().last().unwrap();
    let mut e: Value = serde_json::Deserializer::from_str(line)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let o = e.as_object_mut().unwrap();
    for k in ["seq", "time", "prev"] {
        o.remove(k);
    }
    e
}

/// `kakuri-lookup` is `kakuri lookup` in a binary holding only the read
/// path: the same output (text and JSON), exit code and audit entry for
/// hits, misses, several queries in command-line order, and errors.
#[test]
fn kakuri_lookup_answers_exactly_as_kakuri_lookup_does() {
    let f = roundtrip_set();
    f.pack(&[]);
    let (a, b) = (f.record(5), f.record(17));
    let stranger = f.root.join("stranger.jpg");
    fs::write(&stranger, noise(1000, 98)).unwrap();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--record-id", &a.record_id], 0),
        (
            vec![
                "--document-number",
                &b.document_number,
                "--member-id",
                &a.member_id,
            ],
            0,
        ),
        (vec!["--record-id", "rec-99999999"], 1),
        (
            vec![
                "--image",
                stranger.to_str().unwrap(),
                "--record-id",
                &b.record_id,
            ],
            0,
        ),
        (vec!["--member-id", &b.member_id, "--json"], 0),
        (vec!["--record-id", "missing", "--json"], 1),
    ];
    for (args, code) in cases {
        let both = [
            ("kakuri lookup", f.lookup_cmd(&args)),
            ("kakuri-lookup", f.lookup_only_cmd(&args)),
        ];
        let mut seen = Vec::new();
        for (name, mut cmd) in both {
            let o = run_code(cmd.args(["--operator", "same-operator"]), code);
            seen.push((name, stdout(&o), stderr(&o), last_audit_entry(&f)));
        }
        let (k, l) = (&seen[0], &seen[1]);
        assert_eq!(k.1, l.1, "stdout of {} and {} for {args:?}", k.0, l.0);
        assert_eq!(k.2, l.2, "stderr of {} and {} for {args:?}", k.0, l.0);
        assert_eq!(k.3, l.3, "audit entry of {} and {} for {args:?}", k.0, l.0);
        assert_eq!(l.3["action"], "lookup");
    }

    // Errors: the same message and exit code, and nothing recorded.
    let before = fs::read(f.vault.join("audit/log.jsonl")).unwrap();
    let stranger_key = f.root.join("stranger.key");
    keygen_identity(&stranger_key);
    let mut k = kakuri();
    k.arg("lookup")
        .arg(&f.vault)
        .args(f.access(&stranger_key))
        .args(["--record-id", &a.record_id]);
    let mut l = kakuri_lookup();
    l.arg(&f.vault)
        .args(f.access(&stranger_key))
        .args(["--record-id", &a.record_id]);
    let (ko, lo) = (k.output().unwrap(), l.output().unwrap());
    assert_ne!(ko.status.code(), Some(0), "{}", show(&ko));
    assert_eq!(
        ko.status.code(),
        lo.status.code(),
        "{}\n{}",
        show(&ko),
        show(&lo)
    );
    assert_eq!(stderr(&ko), stderr(&lo));
    assert!(stderr(&lo).starts_with("kakuri: error: "), "{}", show(&lo));
    let o = run_code(&mut f.lookup_only_cmd(&[]), 2);
    assert!(
        stderr(&o).contains("lookup needs at least one of"),
        "{}",
        show(&o)
    );
    assert_eq!(fs::read(f.vault.join("audit/log.jsonl")).unwrap(), before);
}

/// `kakuri-lookup` reads its arguments with its own parser (no `clap`, to
/// keep the binary small): every option `kakuri lookup --help` lists is in
/// its help with the same text, and the usage line names the same
/// required arguments.
#[test]
fn kakuri_lookup_help_lists_every_option_of_kakuri_lookup() {
    let k = stdout(&run_code(kakuri().args(["lookup", "--help"]), 0));
    let l = stdout(&run_code(kakuri_lookup().arg("--help"), 0));
    let options: Vec<&str> = k
        .lines()
        .filter(|line| line.trim_start().starts_with('-'))
        .collect();
    assert!(options.len() >= 12, "{k}");
    for o in options {
        assert!(
            l.lines().any(|line| line == o),
            "missing from kakuri-lookup --help: {o}\n{l}"
        );
    }
    let usage = |s: &str, prog: &str| {
        s.lines()
            .find_map(|line| line.strip_prefix(&format!("Usage: {prog} ")))
            .map(str::to_string)
    };
    assert_eq!(usage(&k, "kakuri lookup"), usage(&l, "kakuri-lookup"));
    let v = stdout(&run_code(kakuri_lookup().arg("--version"), 0));
    assert_eq!(v, format!("kakuri-lookup {}\n", env!("CARGO_PKG_VERSION")));
    let o = run_code(kakuri_lookup().arg("--no-such-option"), 2);
    assert!(stderr(&o).contains("--no-such-option"), "{}", show(&o));
}

#[test]
fn json_outputs_parse() {
    let f = roundtrip_set();
    let pack = f.pack(&["--shard-records", "100"]);
    let n = (SYNTH_COUNT as usize + ODD_COUNT) as u64;
    assert_eq!(pack["records"], n);
    assert_eq!(pack["shards"], 4);
    assert_eq!(pack["retain_until"], RETAIN);

    let st = json_of(&run_ok(kakuri().arg("--json").arg("status").arg(&f.vault)));
    assert_eq!(st["records"], n);
    assert_eq!(st["signature_ok"], true);
    assert_eq!(st["vault_id"], pack["vault_id"]);
    assert_eq!(st["merkle_root"], pack["root"]);
    assert_eq!(st["custodians"], json!(["alice"]));

    let vr = json_of(&run_ok(f.verify_cmd().arg("--json")));
    assert_eq!(vr["ok"], true);
    // 4 shards, the custody wrap, 4 index files, and a parity file for
    // each shard and index file.
    assert_eq!(vr["files"].as_array().unwrap().len(), 4 + 5 + 8);
    assert_eq!(st["parity"], "4/64");
    let vd = json_of(&run_ok(f.deep_verify_cmd().arg("--json")));
    assert_eq!(vd["ok"], true);
    assert_eq!(vd["deep"]["records_checked"], n);
    assert_eq!(vd["deep"]["root_ok"], true);
    assert_eq!(vd["deep"]["index_ok"], true);

    let lk = f.lookup_json(&["--record-id", &f.record(1).record_id], 0);
    assert_eq!(lk["found"], 1);
    assert_eq!(lk["case"], "CASE-TEST-1");
    assert_eq!(lk["root"], pack["root"]);
    assert!(lk["io"]["bytes_read"].as_u64().unwrap() > 0);
    let nf = f.lookup_json(&["--record-id", "missing"], 1);
    assert_eq!(nf["found"], 0);

    let out = f.root.join("ex");
    let ex = json_of(&run_ok(f.export_cmd(ODD_JAPANESE, &out).arg("--json")));
    assert_eq!(ex["files"].as_array().unwrap().len(), 5);
    let rc = json_of(&run_ok(
        kakuri()
            .arg("--json")
            .arg("receipt")
            .arg("verify")
            .arg(&out),
    ));
    assert_eq!(rc["ok"], true);
    assert_eq!(rc["ordinal"], ex["ordinal"]);
    assert_eq!(rc["root"], pack["root"]);
    let nf = json_of(&run_code(
        f.export_cmd("missing", &f.root.join("ex2")).arg("--json"),
        1,
    ));
    assert_eq!(nf["found"], false);
}

#[test]
fn export_refuses_a_non_empty_directory_and_never_writes_outside_its_dir() {
    let f = roundtrip_set();
    f.pack(&[]);
    let area = f.root.join("evidence");
    fs::create_dir(&area).unwrap();

    // Non-empty directory: refused, untouched.
    let full = area.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("keep.txt"), b"do not touch").unwrap();
    let o = run_code(&mut f.export_cmd(&f.record(2).record_id, &full), 8);
    assert!(stderr(&o).starts_with("kakuri: error:"), "{}", show(&o));
    assert_eq!(files_under(&full), vec!["keep.txt".to_string()]);
    assert_eq!(fs::read(full.join("keep.txt")).unwrap(), b"do not touch");

    // A regular file, and a symlink to an empty directory: refused.
    let file = area.join("file");
    fs::write(&file, b"x").unwrap();
    run_code(&mut f.export_cmd(&f.record(2).record_id, &file), 8);
    assert_eq!(fs::read(&file).unwrap(), b"x");
    let target = area.join("target");
    fs::create_dir(&target).unwrap();
    let link = area.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    run_code(&mut f.export_cmd(&f.record(2).record_id, &link), 8);
    assert!(files_under(&target).is_empty());

    // An existing empty directory is fine.
    let empty = area.join("empty");
    fs::create_dir(&empty).unwrap();
    run_ok(&mut f.export_cmd(&f.record(2).record_id, &empty));
    assert_eq!(files_under(&empty).len(), 5);

    // A record id and an image path that look like paths: the export
    // still only writes its fixed names inside DIR.
    let esc = area.join("esc");
    run_ok(&mut f.export_cmd(ODD_ESCAPE, &esc));
    run_ok(&mut f.export_cmd(ODD_LONG_NAME, &area.join("long")));
    let mut all = files_under(&area);
    all.retain(|p| !p.starts_with("empty/") && !p.starts_with("full/"));
    assert_eq!(
        all,
        vec![
            "esc/image.gif",
            "esc/manifest.json",
            "esc/manifest.json.sig",
            "esc/meta.json",
            "esc/receipt.json",
            "file",
            "link",
            "long/image.png",
            "long/manifest.json",
            "long/manifest.json.sig",
            "long/meta.json",
            "long/receipt.json",
        ]
    );
    assert!(!f.root.join("escape").exists());
    assert!(!Path::new("/escape").exists());
    assert!(!f.root.parent().unwrap().join("escape").exists());
}

#[test]
fn directory_mode_packs_every_regular_file_keyed_by_relative_path() {
    let f = Fixture::empty();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a/b/c.jpg", noise(700, 1)),
        ("日本/写真（表）.png", noise(800, 2)),
        ("top.bin", Vec::new()),
        ("deep/x/y/z.JPG", noise(1500, 3)),
        ("name with spaces (2).jpeg", noise(300, 4)),
    ];
    for (rel, bytes) in &files {
        let p = f.input.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    fs::create_dir_all(f.input.join("empty-dir")).unwrap();
    let s = f.pack(&[]);
    assert_eq!(s["records"], files.len() as u64);

    for (rel, bytes) in &files {
        let v = f.lookup_json(&["--record-id", rel], 0);
        assert_eq!(matched_ids(&v, 0), vec![rel.to_string()]);
        let m = &v["results"][0]["matches"][0];
        assert_eq!(m["source"], json!({"record_id": rel, "image": rel}));
        assert_eq!(m["image_size"], bytes.len() as u64);
        let v = f.lookup_json(&["--image", f.input.join(rel).to_str().unwrap()], 0);
        assert_eq!(matched_ids(&v, 0), vec![rel.to_string()]);
    }
    run_code(&mut f.lookup_cmd(&["--record-id", "empty-dir"]), 1);
    run_code(&mut f.lookup_cmd(&["--record-id", "c.jpg"]), 1);

    let out = f.root.join("ex");
    run_ok(&mut f.export_cmd("日本/写真（表）.png", &out));
    assert_eq!(fs::read(out.join("image.png")).unwrap(), files[1].1);
    run_ok(kakuri().arg("receipt").arg("verify").arg(&out));
    run_ok(&mut f.deep_verify_cmd());
}

/// Records whose member id or document number is blank once normalised
/// ("  ", "-", full-width space and dash) have no index entry for that field.
fn blank_fields_vault() -> Fixture {
    let f = Fixture::empty();
    add_record(
        &f.input,
        &json!({"record_id": "r1", "member_id": "  ", "document_number": "-", "image": "a.jpg"}),
        &noise(300, 1),
    );
    add_record(
        &f.input,
        &json!({"record_id": "r2", "document_number": "\u{3000}－ ", "image": "b.jpg"}),
        &noise(300, 2),
    );
    add_record(
        &f.input,
        &json!({"record_id": "r3", "member_id": "M3", "document_number": "D3", "image": "c.jpg"}),
        &noise(300, 3),
    );
    f.pack(&[]);
    f
}

#[test]
fn records_with_blank_member_id_or_document_number_pack_and_serve() {
    let f = blank_fields_vault();
    for rid in ["r1", "r2", "r3"] {
        let v = f.lookup_json(&["--record-id", rid], 0);
        assert_eq!(matched_ids(&v, 0), vec![rid.to_string()]);
    }
    // A blank query matches nothing, not the blank records.
    f.lookup_json(&["--member-id", " "], 1);
    f.lookup_json(&["--document-number", "-"], 1);
    let v = f.lookup_json(&["--document-number", "d-3"], 0);
    assert_eq!(matched_ids(&v, 0), vec!["r3".to_string()]);
    run_ok(&mut f.verify_cmd());
}

#[test]
fn deep_verify_passes_on_records_with_blank_member_id_or_document_number() {
    let f = blank_fields_vault();
    let o = run_code(&mut f.deep_verify_cmd(), 0);
    assert!(stdout(&o).contains("index: OK"), "{}", show(&o));
}

#[test]
fn demo_runs_the_whole_job_end_to_end() {
    let tmp = scratch_dir();
    let o = run_ok(kakuri().env("TMPDIR", tmp.path()).args([
        "demo",
        "--records",
        "300",
        "--image-size",
        "512",
    ]));
    let out = stdout(&o);
    for step in [
        "pack:",
        "lookup by member id: 2 record(s)",
        "export:",
        "verify --deep",
        "match:",
        "audit log:",
        "destroy:",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", show(&o));
    }
    // The temporary directory is removed.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}
