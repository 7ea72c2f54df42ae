//! An export killed at any step never leaves an export directory that
//! looks complete but is not: `--out` is absent (or still the empty
//! directory it was) until the one rename that makes it whole. What a kill
//! leaves is the hidden staging directory, which `receipt verify` refuses
//! and the next export to the same `--out` removes. The audit log stays
//! valid throughout.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;
use serde_json::Value;

const SIGABRT: i32 = 6;

/// Every fault point of an export, in the order they are reached, and how
/// many files the staging directory holds when the process dies there.
const POINTS: [(&str, usize); 7] = [
    ("export-file-written:1", 1),
    ("export-file-written:2", 2),
    ("export-file-written:3", 3),
    ("export-file-written:4", 4),
    ("export-file-written:5", 5),
    ("export-before-rename:1", 5),
    ("export-renamed:1", 0),
];

fn export_actions(f: &Fixture) -> usize {
    let o = run_ok(kakuri().arg("audit").arg(&f.vault).arg("--json"));
    json_of(&o)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "export")
        .count()
}

fn assert_audit_log_verifies(f: &Fixture, what: &str) {
    let o = kakuri()
        .arg("audit")
        .arg("verify")
        .arg(&f.vault)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{what}: {}", show(&o));
}

/// The five files of a complete export of `rid`, verifying.
fn assert_complete(out: &Path, rid: &str, what: &str) {
    let names = files_under(out);
    assert_eq!(names.len(), 5, "{what}: {names:?}");
    for n in [
        "manifest.json",
        "manifest.json.sig",
        "meta.json",
        "receipt.json",
    ] {
        assert!(names.iter().any(|x| x == n), "{what}: no {n} in {names:?}");
    }
    let o = receipt_verify_cmd(out).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{what}: {}", show(&o));
    let meta: Value = serde_json::from_slice(&fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["record_id"], rid, "{what}");
    let mode = fs::metadata(out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{what}: export directory mode");
    for n in &names {
        let m = fs::metadata(out.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{what}: mode of {n}");
    }
}

/// Kills an export at every point, with `--out` absent or an existing
/// empty directory, and checks what is left, that nothing partial passes
/// `receipt verify`, and that running the export again works.
fn kill_export_at_every_point(out_exists: bool) {
    let f = Fixture::packed(24, 3000, 61, &["--shard-records", "8"]);
    let r = f.record(13);
    let mut exports = export_actions(&f);
    for (i, (fault, staged_files)) in POINTS.iter().enumerate() {
        let what = format!(
            "{fault} (--out {})",
            if out_exists { "empty" } else { "absent" }
        );
        let out = f.root.join(format!("evidence-{i}"));
        if out_exists {
            fs::create_dir(&out).unwrap();
        }
        let staging = staging_of(&out);
        let o = f
            .export_cmd(&r.record_id, &out)
            .env("KAKURI_FAULT", fault)
            .output()
            .unwrap();
        assert_eq!(o.status.signal(), Some(SIGABRT), "{what}: {}", show(&o));
        exports += 1;
        assert_eq!(
            export_actions(&f),
            exports,
            "{what}: the export was audited first"
        );
        assert_audit_log_verifies(&f, &what);

        if fault.starts_with("export-renamed") {
            // Killed after the rename: the export is whole.
            assert!(!staging.exists(), "{what}");
            assert_complete(&out, &r.record_id, &what);
            // Running it again into the same directory is refused; the
            // complete export is untouched.
            let o = run_code(&mut f.export_cmd(&r.record_id, &out), 8);
            assert!(stderr(&o).contains("not empty"), "{what}: {}", show(&o));
            assert_complete(&out, &r.record_id, &what);
            continue;
        }

        // Before the rename: --out is as it was, the plaintext is only in
        // the private staging directory.
        if out_exists {
            assert!(out.is_dir(), "{what}");
            assert!(files_under(&out).is_empty(), "{what}: --out is not empty");
            let o = receipt_verify_cmd(&out).output().unwrap();
            assert_eq!(o.status.code(), Some(4), "{what}: {}", show(&o));
            assert!(
                stderr(&o).contains("receipt.json is missing"),
                "{what}: {}",
                show(&o)
            );
        } else {
            assert!(out.symlink_metadata().is_err(), "{what}: --out exists");
            let o = receipt_verify_cmd(&out).output().unwrap();
            assert_ne!(o.status.code(), Some(0), "{what}: {}", show(&o));
        }
        assert!(staging.is_dir(), "{what}: no staging directory");
        let mode = fs::metadata(&staging).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{what}: staging directory mode");
        let staged = files_under(&staging);
        assert_eq!(staged.len(), *staged_files, "{what}: {staged:?}");
        // Even complete, the staging directory is not an export.
        let o = receipt_verify_cmd(&staging).output().unwrap();
        assert_eq!(o.status.code(), Some(4), "{what}: {}", show(&o));
        assert!(
            stderr(&o).contains("interrupted export"),
            "{what}: {}",
            show(&o)
        );

        // The next export to the same --out removes the leftover, says so
        // in one line, and finishes.
        let o = run_ok(&mut f.export_cmd(&r.record_id, &out));
        exports += 1;
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{what}: {}", show(&o));
        assert!(
            err.starts_with("kakuri: removed ") && err.contains("interrupted export"),
            "{what}: {}",
            show(&o)
        );
        for secret in [&r.member_id, &r.document_number] {
            assert!(
                !err.contains(secret.as_str()),
                "{what}: stderr names the record"
            );
        }
        assert!(!staging.exists(), "{what}: staging directory left");
        assert_complete(&out, &r.record_id, &what);
        assert_audit_log_verifies(&f, &what);
    }
    assert_eq!(export_actions(&f), exports);
    // No staging directory is left anywhere (each export directory was
    // checked complete above).
    let left: Vec<String> = fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".kakuri-partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn export_killed_at_every_point_into_a_new_directory_is_absent_or_complete() {
    kill_export_at_every_point(false);
}

#[test]
fn export_killed_at_every_point_into_an_empty_directory_leaves_it_empty_or_complete() {
    kill_export_at_every_point(true);
}

#[test]
fn receipt_verify_rejects_an_export_with_any_file_missing() {
    let f = Fixture::packed(10, 2000, 62, &[]);
    let out = f.root.join("ev");
    run_ok(&mut f.export_cmd(&f.record(4).record_id, &out));
    run_ok(&mut receipt_verify_cmd(&out));
    let names = files_under(&out);
    assert_eq!(names.len(), 5);
    for n in &names {
        let copy = f.root.join(format!("without-{n}"));
        copy_dir(&out, &copy);
        fs::remove_file(copy.join(n)).unwrap();
        let o = run_code(&mut receipt_verify_cmd(&copy), 4);
        let err = stderr(&o);
        assert!(
            err.starts_with("kakuri: error:") && err.contains(&format!("{n} is missing")),
            "without {n}: {}",
            show(&o)
        );
        assert_eq!(err.lines().count(), 1, "{}", show(&o));
    }
    // An empty directory, and a complete export under a staging name.
    let empty = f.root.join("empty");
    fs::create_dir(&empty).unwrap();
    run_code(&mut receipt_verify_cmd(&empty), 4);
    let staged = staging_of(&f.root.join("ev2"));
    copy_dir(&out, &staged);
    let o = run_code(&mut receipt_verify_cmd(&staged), 4);
    assert!(stderr(&o).contains("staging directory"), "{}", show(&o));
    // Also when checked from inside it (`receipt verify .`).
    let o = run_code(receipt_verify_cmd(Path::new(".")).current_dir(&staged), 4);
    assert!(stderr(&o).contains("staging directory"), "{}", show(&o));
}

#[test]
fn a_leftover_that_is_not_an_exports_staging_directory_is_left_alone() {
    let f = Fixture::packed(10, 2000, 63, &[]);
    let out = f.root.join("ev");
    let staging = staging_of(&out);
    // A directory holding a file an export never writes.
    fs::create_dir(&staging).unwrap();
    fs::write(staging.join("notes.txt"), b"the operator's own notes").unwrap();
    let o = run_code(&mut f.export_cmd(&f.record(1).record_id, &out), 8);
    assert!(stderr(&o).contains("leaves it alone"), "{}", show(&o));
    assert_eq!(
        fs::read(staging.join("notes.txt")).unwrap(),
        b"the operator's own notes"
    );
    assert!(!out.exists());
    fs::remove_dir_all(&staging).unwrap();
    // A symlink in its place (it is never followed).
    let elsewhere = f.root.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("meta.json"), b"{}").unwrap();
    std::os::unix::fs::symlink(&elsewhere, &staging).unwrap();
    run_code(&mut f.export_cmd(&f.record(1).record_id, &out), 8);
    assert!(elsewhere.join("meta.json").exists());
    assert!(!out.exists());
    fs::remove_file(&staging).unwrap();
    run_ok(&mut f.export_cmd(&f.record(1).record_id, &out));
    run_ok(&mut receipt_verify_cmd(&out));
}

#[test]
fn export_needs_a_directory_name() {
    let f = Fixture::packed(4, 500, 64, &[]);
    let empty = f.root.join("empty");
    fs::create_dir(&empty).unwrap();
    // `--out .` in an empty directory: the export would have to replace
    // the working directory itself.
    let o = run_code(
        f.export_cmd(&f.record(1).record_id, Path::new("."))
            .current_dir(&empty),
        2,
    );
    assert!(stderr(&o).contains("name the directory"), "{}", show(&o));
    assert!(files_under(&empty).is_empty());
}
