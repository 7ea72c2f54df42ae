//! Bad input: every refusal exits with the documented code, prints one
//! line that names the place (file and line), never the offending record's
//! values (they are personal data), and leaves no vault directory behind.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::*;

/// Marker planted in every value of an offending record: record ids,
/// member ids, document numbers and file names. No message may show it.
const SECRET: &str = "SECRET";
const RID: &str = "SECRET-RID-7f3a";
const MEMBER: &str = "SECRET-MEMBER-7f3a";
const DOC: &str = "SECRET-DOC-7f3a";
const IMG: &str = "img/SECRET-IMG-7f3a.jpg";

/// An input whose records.jsonl is: two good lines around a blank one,
/// then line 4 as returned by `bad`, which may also add files to the input.
fn input_with_line_4(bad: impl FnOnce(&Path) -> Vec<u8>) -> Fixture {
    let f = Fixture::empty();
    let img = f.input.join("img");
    fs::create_dir(&img).unwrap();
    fs::write(img.join("ok1.jpg"), noise(300, 1)).unwrap();
    fs::write(img.join("ok2.jpg"), noise(300, 2)).unwrap();
    fs::write(f.input.join(IMG), noise(300, 3)).unwrap();
    let bad = bad(&f.input);
    let mut text = Vec::new();
    text.extend_from_slice(br#"{"record_id":"ok-1","member_id":"M1","image":"img/ok1.jpg"}"#);
    text.extend_from_slice(b"\n\n");
    text.extend_from_slice(br#"{"record_id":"ok-2","member_id":"M2","image":"img/ok2.jpg"}"#);
    text.push(b'\n');
    text.extend_from_slice(&bad);
    text.push(b'\n');
    fs::write(f.input.join("records.jsonl"), text).unwrap();
    f
}

/// A typical offending line with the secret values and `image`.
fn line_with_image(image: &str) -> Vec<u8> {
    serde_json::json!({
        "record_id": RID, "member_id": MEMBER, "document_number": DOC, "image": image
    })
    .to_string()
    .into_bytes()
}

/// Exit `code`, exactly one stderr line "kakuri: error: …" that contains
/// every string in `names` and no secret, nothing on stdout, no vault.
fn assert_refused(f: &Fixture, o: &Output, code: i32, names: &[&str]) -> String {
    assert_eq!(o.status.code(), Some(code), "{}", show(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line on stderr:\n{}", show(o));
    assert!(err.starts_with("kakuri: error: "), "{}", show(o));
    for n in names {
        assert!(err.contains(n), "stderr does not name {n:?}:\n{}", show(o));
    }
    assert!(
        !err.contains(SECRET),
        "stderr leaks a value of the record:\n{}",
        show(o)
    );
    assert!(o.stdout.is_empty(), "{}", show(o));
    assert!(
        fs::symlink_metadata(&f.vault).is_err(),
        "a vault directory was left behind at {}",
        f.vault.display()
    );
    err
}

/// Packs and asserts an input error that names records.jsonl line 4.
fn assert_line_4_refused(f: &Fixture) -> String {
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(f, &o, 3, &["records.jsonl line 4:"])
}

#[test]
fn invalid_json_is_refused_by_line_number() {
    let mut bad = line_with_image(IMG);
    bad.pop(); // drop the closing brace
    bad.extend_from_slice(br#","trailing":}"#);
    let f = input_with_line_4(|_| bad);
    let e = assert_line_4_refused(&f);
    assert!(e.contains("JSON"), "{e}");
}

#[test]
fn invalid_utf8_is_refused_without_echoing_the_bytes() {
    let bad =
        format!(r#"{{"record_id":"{RID}-","member_id":"{MEMBER}","image":"{IMG}"}}"#).into_bytes();
    // An invalid byte inside the record id (after "SECRET-RID-7f3a-").
    let at = bad.windows(4).position(|w| w == b"7f3a").unwrap() + 5;
    let mut bad2 = bad[..at].to_vec();
    bad2.extend_from_slice(b"\xff\xfe");
    bad2.extend_from_slice(&bad[at..]);
    let f = input_with_line_4(|_| bad2);
    let e = assert_line_4_refused(&f);
    assert!(e.contains("UTF-8"), "{e}");
}

#[test]
fn missing_record_id_is_refused() {
    let bad = serde_json::json!({"member_id": MEMBER, "document_number": DOC, "image": IMG});
    let f = input_with_line_4(|_| bad.to_string().as_bytes().to_vec());
    let e = assert_line_4_refused(&f);
    assert!(e.contains("record_id"), "{e}");
}

#[test]
fn empty_record_id_is_refused() {
    let bad = serde_json::json!({"record_id": "", "member_id": MEMBER, "image": IMG});
    let f = input_with_line_4(|_| bad.to_string().as_bytes().to_vec());
    assert_line_4_refused(&f);
}

#[test]
fn missing_image_field_is_refused() {
    let bad = serde_json::json!({"record_id": RID, "member_id": MEMBER, "document_number": DOC});
    let f = input_with_line_4(|_| bad.to_string().as_bytes().to_vec());
    let e = assert_line_4_refused(&f);
    assert!(e.contains("image"), "{e}");
}

#[test]
fn non_string_image_field_is_refused() {
    let bad = serde_json::json!({"record_id": RID, "member_id": MEMBER, "image": ["SECRET-IMG"]});
    let f = input_with_line_4(|_| bad.to_string().as_bytes().to_vec());
    assert_line_4_refused(&f);
}

#[test]
fn duplicate_record_id_is_refused_naming_both_lines() {
    let f = Fixture::empty();
    let img = f.input.join("img");
    fs::create_dir(&img).unwrap();
    for i in 1..=4 {
        fs::write(img.join(format!("SECRET-IMG-{i}.jpg")), noise(100, i)).unwrap();
    }
    let line = |rid: &str, i: u32| {
        serde_json::json!({"record_id": rid, "member_id": MEMBER, "image": format!("img/SECRET-IMG-{i}.jpg")})
            .to_string()
    };
    let text = format!(
        "{}\n{}\n\n{}\n{}\n",
        line("ok-1", 1),
        line(RID, 2),
        line("ok-3", 3),
        line(RID, 4)
    );
    fs::write(f.input.join("records.jsonl"), text).unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    let e = assert_refused(
        &f,
        &o,
        3,
        &["records.jsonl line 5:", "records.jsonl line 2"],
    );
    assert!(e.contains("duplicate"), "{e}");
}

#[test]
fn duplicate_integer_and_string_record_id_is_refused() {
    // 4242 and "4242" are the same record id once read.
    let f = input_with_line_4(|_| {
        br#"{"record_id":4242,"member_id":"SECRET-MEMBER","image":"img/SECRET-IMG-7f3a.jpg"}"#
            .to_vec()
    });
    // Make line 3 the string form.
    let text = fs::read_to_string(f.input.join("records.jsonl")).unwrap();
    let text = text.replace(r#""record_id":"ok-2""#, r#""record_id":"4242""#);
    fs::write(f.input.join("records.jsonl"), text).unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    let e = assert_refused(
        &f,
        &o,
        3,
        &["records.jsonl line 4:", "records.jsonl line 3"],
    );
    assert!(!e.contains("4242"), "{e}");
}

#[test]
fn image_path_with_dotdot_is_refused_even_when_it_stays_inside() {
    // Escaping the input directory to a file that exists next to it.
    let f = input_with_line_4(|input| {
        fs::write(input.parent().unwrap().join("SECRET-IMG-outside.jpg"), b"x").unwrap();
        line_with_image("../SECRET-IMG-outside.jpg")
    });
    let e = assert_line_4_refused(&f);
    assert!(e.contains(".."), "{e}");
    // Going up and back down again.
    let f = input_with_line_4(|_| line_with_image("img/../img/SECRET-IMG-7f3a.jpg"));
    assert_line_4_refused(&f);
}

#[test]
fn absolute_image_path_is_refused() {
    let f = input_with_line_4(|input| {
        let abs = input.join(IMG);
        assert!(abs.is_absolute() && abs.is_file());
        line_with_image(abs.to_str().unwrap())
    });
    let e = assert_line_4_refused(&f);
    assert!(e.contains("absolute"), "{e}");
}

#[test]
fn image_that_is_a_symlink_is_refused() {
    let f = input_with_line_4(|input| {
        std::os::unix::fs::symlink("ok1.jpg", input.join("img/SECRET-IMG-link.jpg")).unwrap();
        line_with_image("img/SECRET-IMG-link.jpg")
    });
    let e = assert_line_4_refused(&f);
    assert!(e.contains("symbolic link"), "{e}");
}

#[test]
fn image_path_through_a_symlinked_directory_is_refused() {
    // A directory symlink leading outside the input.
    let f = input_with_line_4(|input| {
        let outside = input.parent().unwrap().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("SECRET-IMG-7f3a.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, input.join("SECRET-DIR-link")).unwrap();
        line_with_image("SECRET-DIR-link/SECRET-IMG-7f3a.jpg")
    });
    let e = assert_line_4_refused(&f);
    assert!(e.contains("symbolic link"), "{e}");
    // A directory symlink that stays inside, two levels deep.
    let f = input_with_line_4(|input| {
        fs::create_dir(input.join("a")).unwrap();
        std::os::unix::fs::symlink("../img", input.join("a/SECRET-DIR-link")).unwrap();
        line_with_image("a/SECRET-DIR-link/SECRET-IMG-7f3a.jpg")
    });
    assert_line_4_refused(&f);
}

#[test]
fn missing_image_file_is_refused() {
    let f = input_with_line_4(|_| line_with_image("img/SECRET-IMG-missing.jpg"));
    let e = assert_line_4_refused(&f);
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn image_that_is_a_fifo_is_refused_without_blocking() {
    if !have_tool("mkfifo") {
        return;
    }
    let f = input_with_line_4(|input| {
        let o = ext(
            "mkfifo",
            &[input.join("img/SECRET-IMG-fifo.jpg").as_os_str()],
        );
        assert!(o.status.success(), "{}", show(&o));
        line_with_image("img/SECRET-IMG-fifo.jpg")
    });
    assert_line_4_refused(&f);
}

#[test]
fn image_that_is_a_directory_is_refused() {
    let f = input_with_line_4(|_| line_with_image("img"));
    assert_line_4_refused(&f);
}

#[test]
fn json_array_instead_of_object_is_refused() {
    let bad = serde_json::json!([RID, MEMBER, IMG]);
    let f = input_with_line_4(|_| bad.to_string().as_bytes().to_vec());
    let e = assert_line_4_refused(&f);
    assert!(e.contains("object"), "{e}");
}

#[test]
fn float_record_id_is_refused() {
    let f = input_with_line_4(|_| {
        format!(r#"{{"record_id":1.5,"member_id":"{MEMBER}","image":"{IMG}"}}"#).into_bytes()
    });
    let e = assert_line_4_refused(&f);
    assert!(e.contains("record_id"), "{e}");
}

#[test]
fn line_longer_than_the_limit_is_refused() {
    let filler = "SECRET".repeat((1 << 20) / 6 + 10);
    let f = input_with_line_4(|_| {
        format!(r#"{{"record_id":"{RID}","note":"{filler}","image":"{IMG}"}}"#).into_bytes()
    });
    assert_line_4_refused(&f);
}

#[test]
fn a_bad_line_after_sealed_shards_leaves_no_vault() {
    // Line 251 of 300 is bad; by then several shards have been sealed.
    let f = Fixture::synth(300, 256, 11);
    let p = f.input.join("records.jsonl");
    let text = fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let rid = f.record(250).record_id;
    lines[250] =
        serde_json::json!({"record_id": rid, "image": "images/SECRET-missing.jpg"}).to_string();
    fs::write(&p, lines.join("\n") + "\n").unwrap();
    let o = f
        .pack_cmd(&["--shard-records", "20", "--jobs", "2"])
        .output()
        .unwrap();
    let e = assert_refused(&f, &o, 3, &["records.jsonl line 251:"]);
    assert!(!e.contains(&rid), "{e}");
}

#[test]
fn directory_mode_refuses_symlinks_and_fifos_without_naming_them() {
    let f = Fixture::empty();
    fs::write(f.input.join("a.jpg"), b"a").unwrap();
    std::os::unix::fs::symlink("a.jpg", f.input.join("b-SECRET-link.jpg")).unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(&f, &o, 3, &["input file #2"]);

    if !have_tool("mkfifo") {
        return;
    }
    let f = Fixture::empty();
    fs::write(f.input.join("a.jpg"), b"a").unwrap();
    let o = ext("mkfifo", &[f.input.join("b-SECRET-fifo").as_os_str()]);
    assert!(o.status.success(), "{}", show(&o));
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(&f, &o, 3, &["input file #2"]);
}

#[test]
fn recipients_file_with_a_junk_line_is_refused_naming_file_and_line() {
    let f = Fixture::synth(5, 256, 1);
    let text = fs::read_to_string(&f.keys.recipients).unwrap();
    // Line 1 comment, 2 the custodian, 3 blank, 4 junk.
    assert_eq!(text.lines().count(), 2);
    fs::write(
        &f.keys.recipients,
        format!("{text}\nSECRET-not-a-key bob\n"),
    )
    .unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    let at = format!("{}:4", f.keys.recipients.display());
    assert_refused(&f, &o, 3, &[&at]);

    // A recipient that looks like one but is not valid.
    fs::write(
        &f.keys.recipients,
        format!("{text}age1SECRETinvalid carol\n"),
    )
    .unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    let at = format!("{}:3", f.keys.recipients.display());
    assert_refused(&f, &o, 3, &[&at]);

    // The same custodian twice.
    fs::write(
        &f.keys.recipients,
        format!("{text}{} again\n", f.keys.recipient),
    )
    .unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    let at = format!("{}:3", f.keys.recipients.display());
    assert_refused(&f, &o, 3, &[&at]);

    // No custodian at all.
    fs::write(&f.keys.recipients, "# nobody\n\n").unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(&f, &o, 3, &[]);
}

#[test]
fn retention_date_in_the_past_or_today_or_invalid_is_a_usage_error() {
    let f = Fixture::synth(5, 256, 1);
    let today = time::OffsetDateTime::now_utc().date();
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    for date in [
        "2001-01-01".to_string(),
        today.format(&fmt).unwrap(),
        (today - time::Duration::days(1)).format(&fmt).unwrap(),
        "2099-02-30".to_string(),
        "31.12.2099".to_string(),
    ] {
        let o = kakuri()
            .arg("pack")
            .arg(&f.input)
            .arg("--recipients")
            .arg(&f.keys.recipients)
            .arg("--sign-key")
            .arg(&f.keys.sign_key)
            .arg("--retain-until")
            .arg(&date)
            .arg("--out")
            .arg(&f.vault)
            .output()
            .unwrap();
        assert_refused(&f, &o, 2, &[]);
    }
    // Tomorrow is accepted.
    let tomorrow = (today + time::Duration::days(1)).format(&fmt).unwrap();
    run_ok(
        kakuri()
            .arg("pack")
            .arg(&f.input)
            .arg("--recipients")
            .arg(&f.keys.recipients)
            .arg("--sign-key")
            .arg(&f.keys.sign_key)
            .arg("--retain-until")
            .arg(&tomorrow)
            .arg("--out")
            .arg(&f.vault),
    );
}

#[test]
fn existing_out_path_is_refused_and_left_untouched() {
    let f = Fixture::synth(5, 256, 1);
    fs::create_dir(&f.vault).unwrap();
    fs::write(f.vault.join("precious"), b"keep me").unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", show(&o));
    assert!(stderr(&o).starts_with("kakuri: error: "), "{}", show(&o));
    assert_eq!(files_under(&f.vault), vec!["precious".to_string()]);
    assert_eq!(fs::read(f.vault.join("precious")).unwrap(), b"keep me");

    // An empty directory and a regular file are refused too.
    fs::remove_file(f.vault.join("precious")).unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", show(&o));
    assert!(files_under(&f.vault).is_empty());
    fs::remove_dir(&f.vault).unwrap();
    fs::write(&f.vault, b"file").unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", show(&o));
    assert_eq!(fs::read(&f.vault).unwrap(), b"file");
}

#[test]
fn signing_key_readable_by_others_is_refused_as_too_open() {
    let f = Fixture::synth(5, 256, 1);
    chmod(&f.keys.sign_key, 0o644);
    let o = f.pack_cmd(&[]).output().unwrap();
    let e = assert_refused(&f, &o, 5, &["too open"]);
    assert!(e.contains(f.keys.sign_key.to_str().unwrap()), "{e}");
    chmod(&f.keys.sign_key, 0o640);
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(&f, &o, 5, &["too open"]);
    chmod(&f.keys.sign_key, 0o600);
    run_ok(&mut f.pack_cmd(&[]));
}

#[test]
fn signing_key_that_is_not_a_key_is_refused() {
    let f = Fixture::synth(5, 256, 1);
    // An age identity is not an OpenSSH signing key.
    let o = kakuri()
        .args(f.pack_argv(&f.input, &f.keys.identity))
        .output()
        .unwrap();
    assert_refused(&f, &o, 5, &[]);
}

#[test]
fn empty_input_is_refused() {
    // An empty directory (directory mode).
    let f = Fixture::empty();
    fs::create_dir(f.input.join("only-a-subdir")).unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(&f, &o, 3, &["no records"]);
    // A records.jsonl with only blank lines.
    fs::write(f.input.join("records.jsonl"), "\n  \n\n").unwrap();
    let o = f.pack_cmd(&[]).output().unwrap();
    assert_refused(&f, &o, 3, &["no records"]);
}

#[test]
fn input_that_is_not_a_directory_is_refused() {
    let f = Fixture::empty();
    let file = f.root.join("records.jsonl");
    fs::write(&file, b"{}\n").unwrap();
    let o = kakuri()
        .args(f.pack_argv(&file, &f.keys.sign_key))
        .output()
        .unwrap();
    assert_refused(&f, &o, 3, &[]);
}

#[test]
fn directory_mode_pack_into_the_input_directory_does_not_seal_the_vault_itself() {
    let f = Fixture::empty();
    for i in 0..30 {
        fs::write(f.input.join(format!("img-{i:02}.jpg")), noise(500, i)).unwrap();
    }
    // "zz-vault" sorts after the images, so the walk reaches it last.
    let out = f.input.join("zz-vault");
    let o = kakuri()
        .arg("--json")
        .arg("pack")
        .arg(&f.input)
        .arg("--recipients")
        .arg(&f.keys.recipients)
        .arg("--sign-key")
        .arg(&f.keys.sign_key)
        .arg("--retain-until")
        .arg(RETAIN)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    if o.status.success() {
        // Accepted: then the vault holds the 30 input files and nothing else.
        assert_eq!(json_of(&o)["records"], 30, "{}", show(&o));
    } else {
        // Refused: with a message and no vault left behind.
        assert!(stderr(&o).starts_with("kakuri: error:"), "{}", show(&o));
        assert!(!out.exists());
    }
}

/// Runs `match --table NAME --column n` over `body`, expects the table to
/// be refused (exit 3) in one line, and returns that line.
fn match_table_refused(f: &Fixture, name: &str, body: &[u8]) -> String {
    let t = f.root.join(name);
    fs::write(&t, body).unwrap();
    let o = run_code(&mut f.match_table_cmd(&t, "n"), 3);
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{}", show(&o));
    e
}

#[test]
fn a_match_table_line_longer_than_the_limit_is_refused_by_line_number() {
    let f = Fixture::packed(20, 256, 61, &[]);
    let mut body = b"{\"n\": \"A1\"}\n".to_vec();
    body.extend_from_slice(b"{\"n\": \"");
    body.extend(std::iter::repeat_n(b'7', 2 << 20));
    body.extend_from_slice(b"\"}\n");
    let e = match_table_refused(&f, "list.jsonl", &body);
    assert!(e.contains("line 2: longer than"), "{e}");
}

#[test]
fn a_match_table_csv_record_longer_than_the_limit_is_refused_without_holding_it() {
    let f = Fixture::packed(20, 256, 61, &[]);
    // One field of 2 MiB on one line.
    let mut body = b"n,other\nA1,x\n".to_vec();
    body.extend(std::iter::repeat_n(b'7', 2 << 20));
    body.extend_from_slice(b",y\n");
    let e = match_table_refused(&f, "list.csv", &body);
    assert!(
        e.contains("after line 2 is longer than 1048576 bytes"),
        "{e}"
    );
    // A quoted field spanning many short lines: a line limit would not see it.
    let mut body = b"n,other\nA1,x\nA2,x\n\"".to_vec();
    for _ in 0..(3 << 20) / 8 {
        body.extend_from_slice(b"1234567\n");
    }
    body.extend_from_slice(b"\",y\n");
    let e = match_table_refused(&f, "list.csv", &body);
    assert!(
        e.contains("after line 3 is longer than 1048576 bytes"),
        "{e}"
    );
    // A header longer than the limit.
    let mut body = vec![b'h'; 2 << 20];
    body.extend_from_slice(b",n\nA1,x\n");
    let e = match_table_refused(&f, "list.csv", &body);
    assert!(e.contains("the CSV header is longer than"), "{e}");
}

#[test]
fn a_match_table_csv_record_just_under_the_limit_is_read() {
    let f = Fixture::packed(20, 256, 61, &[]);
    let t = f.root.join("list.csv");
    // A long (ignored) column next to the queried one: 1 MiB less a little.
    let mut body = b"n,other\n".to_vec();
    body.extend_from_slice(b"ZZ0,");
    body.extend(std::iter::repeat_n(b'7', (1 << 20) - 64));
    body.extend_from_slice(b"\nZZ1,x\n");
    fs::write(&t, &body).unwrap();
    // Exit 1: read to the end, and nothing in the table is in the vault.
    let o = run_code(&mut f.match_table_cmd(&t, "n"), 1);
    assert!(stderr(&o).contains("2 queries: 0 matched"), "{}", show(&o));
}
