//! A full disk (ENOSPC) on a real file system: a small tmpfs mounted in a
//! private mount namespace (`unshare -m` as root, `unshare -rm` in a user
//! namespace otherwise), visible only to the command under test. pack and
//! export into it stop with exit 7 and a one-line "no space left on
//! device" naming the file, and leave nothing behind that looks like a
//! vault or an export.
//!
//! Needs `unshare` and `mount` (a failure under KAKURI_REQUIRE_TOOLS=1, as
//! in CI). Skips with a printed reason when the kernel refuses the
//! namespace or the mount (some sandboxes do), unless
//! KAKURI_REQUIRE_TMPFS=1, in which case it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::*;
use serde_json::json;

/// Runs `script` (sh) with a fresh tmpfs of `size` at `mnt`; afterwards
/// (the tmpfs disappears with the namespace) the paths found under it,
/// relative and sorted, are written to `listing`. In the script,
/// `$KAKURI` is the binary under test and `$MNT` the mount point.
const WRAPPER: &str = r#"
mnt=$1 size=$2 listing=$3 script=$4
mount -t tmpfs -o "size=$size,mode=0755" tmpfs "$mnt" || exit 97
MNT=$mnt sh -c "$script"
rc=$?
(cd "$mnt" && find . -mindepth 1 | sort) > "$listing"
du -sk "$mnt" | cut -f1 > "$listing.kib"
exit $rc
"#;

/// The `unshare` options that let this process mount a tmpfs privately,
/// or None (after printing why; see the module comment for when it panics).
fn namespace() -> Option<&'static [&'static str]> {
    static NS: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *NS.get_or_init(|| {
        if !have_tool("unshare") || !have_tool("mount") {
            return None;
        }
        let probe = scratch_dir();
        let mnt = probe.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let candidates: [&'static [&'static str]; 2] = [&["-m"], &["-r", "-m"]];
        for c in candidates {
            let ok = std::process::Command::new("unshare")
                .args(c)
                .arg("sh")
                .arg("-c")
                .arg(r#"mount -t tmpfs -o size=64k tmpfs "$1" && : > "$1/probe""#)
                .arg("sh")
                .arg(&mnt)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                assert!(
                    !mnt.join("probe").exists(),
                    "the tmpfs must be private to the namespace"
                );
                return Some(c);
            }
        }
        // The tools are there (checked above, and required in CI); what is
        // missing is the kernel's permission, which some sandboxes refuse.
        // The RLIMIT_FSIZE test in tests/interrupted.rs covers a failing
        // write everywhere.
        let why = "the kernel refuses to mount a tmpfs in a private mount namespace here (neither `unshare -m` nor `unshare -rm` works)";
        if std::env::var("KAKURI_REQUIRE_TMPFS").as_deref() == Ok("1") {
            panic!("{why} (KAKURI_REQUIRE_TMPFS=1)");
        }
        eprintln!("SKIPPED: {why}; set KAKURI_REQUIRE_TMPFS=1 to fail instead");
        None
    })
}

/// Runs `script` with a tmpfs of `size` at `mnt` (which must exist) and
/// returns its output, what was left in the tmpfs and the KiB it used.
fn in_small_tmpfs(
    ns: &[&str],
    mnt: &Path,
    size: &str,
    script: &str,
    env: &[(&str, PathBuf)],
) -> (Output, Vec<String>, u64) {
    let listing = mnt.with_extension("listing");
    let _ = std::fs::remove_file(&listing);
    let _ = std::fs::remove_file(listing.with_extension("listing.kib"));
    let mut c = std::process::Command::new("unshare");
    c.args(ns)
        .arg("sh")
        .arg("-c")
        .arg(WRAPPER)
        .arg("sh")
        .arg(mnt)
        .arg(size)
        .arg(&listing)
        .arg(script)
        .env("KAKURI", assert_cmd::cargo::cargo_bin("kakuri"));
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert_ne!(o.status.code(), Some(97), "mount failed: {}", show(&o));
    let left = std::fs::read_to_string(&listing)
        .unwrap_or_else(|e| panic!("no listing ({e}): {}", show(&o)))
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    let kib = std::fs::read_to_string(listing.with_extension("listing.kib"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no usage: {}", show(&o)));
    (o, left, kib)
}

/// Exit 7 and one line saying the disk is full and naming the file (one
/// of `files`, as the message spells it).
fn one_line_enospc(o: &Output, files: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(7), "{}", show(o));
    assert_eq!(err.lines().count(), 1, "{}", show(o));
    assert!(
        err.starts_with("kakuri: error:") && err.contains("no space left on device"),
        "{}",
        show(o)
    );
    assert!(
        files.iter().any(|f| err.contains(f)),
        "names the file ({files:?}): {}",
        show(o)
    );
}

/// How pack names the files of the vault it writes.
const VAULT_FILES: &[&str] = &[
    "shards/",
    "index/",
    "custody/",
    "audit/",
    "manifest.json",
    "allowed_signers",
    "pack.json",
];

fn pack_script(f: &Fixture) -> (String, Vec<(&'static str, PathBuf)>) {
    let script = format!(
        r#"exec "$KAKURI" pack "$INPUT" --recipients "$RECIPIENTS" --sign-key "$SIGN_KEY" --retain-until {RETAIN} --out "$MNT/vault" --shard-records 50 --jobs 1"#
    );
    (
        script,
        vec![
            ("INPUT", f.input.clone()),
            ("RECIPIENTS", f.keys.recipients.clone()),
            ("SIGN_KEY", f.keys.sign_key.clone()),
        ],
    )
}

/// What [`export_sh`] needs in the environment.
fn export_env(f: &Fixture) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("VAULT", f.vault.clone()),
        ("ID", f.keys.identity.clone()),
        ("SIGN_KEY", f.keys.sign_key.clone()),
    ]
}

/// A shell command exporting record `rid` to `out` (e.g. `"$MNT/small"`).
fn export_sh(rid: &str, out: &str) -> String {
    format!(
        r#""$KAKURI" export "$VAULT" -i "$ID" --sign-key "$SIGN_KEY" --case C-1 --reason test --record-id {rid} --out "{out}""#
    )
}

#[test]
fn pack_into_a_full_tmpfs_fails_cleanly_and_leaves_no_vault() {
    let Some(ns) = namespace() else { return };
    let f = Fixture::synth(200, 4000, 71);
    let mnt = f.root.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (script, env) = pack_script(&f);

    // Control: with room enough, the same command packs a vault there.
    let (o, left, used_kib) = in_small_tmpfs(ns, &mnt, "64m", &script, &env);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(left.iter().any(|p| p == "vault/manifest.json"), "{left:?}");

    // A quarter of the room the vault takes: the shards do not fit.
    let (o, left, _) = in_small_tmpfs(ns, &mnt, &format!("{}k", used_kib / 4), &script, &env);
    one_line_enospc(&o, &["shards/"]);
    assert!(left.is_empty(), "half-built vault left: {left:?}");

    // Then the disk filling at every later step: 4 KiB (one tmpfs page)
    // more room each time, until the vault fits. Every run either ends
    // with a whole vault or fails cleanly and leaves nothing.
    let mut failed_at = Vec::new();
    let mut fitted = 0;
    let mut kib = used_kib * 3 / 4 / 4 * 4;
    while fitted < 3 {
        assert!(kib < used_kib * 2, "pack still fails with {kib} KiB");
        let (o, left, _) = in_small_tmpfs(ns, &mnt, &format!("{kib}k"), &script, &env);
        if o.status.code() == Some(0) {
            assert!(
                left.iter().any(|p| p == "vault/manifest.json"),
                "{kib}k: {left:?}"
            );
            fitted += 1;
        } else {
            one_line_enospc(&o, VAULT_FILES);
            assert!(left.is_empty(), "{kib}k: half-built vault left: {left:?}");
            failed_at.push(stderr(&o));
            fitted = 0;
        }
        kib += 4;
    }
    // The sweep reached the index and the files written after it (audit
    // entry, signature, manifest).
    let hit = |names: &[&str]| {
        failed_at
            .iter()
            .any(|e| names.iter().any(|n| e.contains(n)))
    };
    assert!(hit(&["index/"]), "{failed_at:#?}");
    assert!(
        hit(&["manifest.json", "allowed_signers", "audit/"]),
        "{failed_at:#?}"
    );
}

#[test]
fn export_larger_than_the_free_space_fails_cleanly_and_leaves_no_export() {
    let Some(ns) = namespace() else { return };
    let f = Fixture::synth(10, 1000, 72);
    // One record whose image (2 MiB, incompressible) is larger than the
    // tmpfs below.
    add_record(
        &f.input,
        &json!({"record_id": "big-one", "image": "big/scan.png", "member_id": "M-BIG-7731"}),
        &noise(2 << 20, 9),
    );
    f.pack(&[]);
    let mnt = f.root.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let env = export_env(&f);

    // Control: a small record exports and verifies in the same 1 MiB.
    let small = f.record(3).record_id;
    let script = format!(
        r#"{} >/dev/null && exec "$KAKURI" receipt verify "$MNT/small""#,
        export_sh(&small, "$MNT/small")
    );
    let (o, left, _) = in_small_tmpfs(ns, &mnt, "1m", &script, &env);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(left.len(), 6, "{left:?}");
    assert!(left.iter().any(|p| p == "small/receipt.json"), "{left:?}");

    // The big record does not fit: exit 7, one line naming the file,
    // and neither the export nor its staging directory is left.
    let script = format!("exec {}", export_sh("big-one", "$MNT/big"));
    let (o, left, _) = in_small_tmpfs(ns, &mnt, "1m", &script, &env);
    one_line_enospc(&o, &["big/image.png"]);
    assert!(!stderr(&o).contains("M-BIG-7731"), "{}", show(&o));
    assert!(left.is_empty(), "partial export left: {left:?}");

    // Next to an earlier export in the same tmpfs: that one is untouched.
    let script = format!(
        r#"{} >/dev/null || exit 90; {}; rc=$?; "$KAKURI" receipt verify "$MNT/small" >/dev/null || exit 91; exit $rc"#,
        export_sh(&small, "$MNT/small"),
        export_sh("big-one", "$MNT/big")
    );
    let (o, left, _) = in_small_tmpfs(ns, &mnt, "1m", &script, &env);
    one_line_enospc(&o, &["big/image.png"]);
    assert!(left.iter().all(|p| p.starts_with("small")), "{left:?}");
    assert_eq!(left.len(), 6, "{left:?}");

    // Every attempt was audited before anything was written, and the log
    // is intact.
    run_ok(kakuri().arg("audit").arg("verify").arg(&f.vault));
}

#[test]
fn export_into_an_empty_mount_point_is_refused() {
    let Some(ns) = namespace() else { return };
    let f = Fixture::packed(4, 500, 73, &[]);
    let mnt = f.root.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let env = export_env(&f);
    // --out is the mount point itself: staging next to it would put the
    // plaintext on the parent file system, and a mount point cannot be
    // replaced by a rename. A directory inside it works.
    let rid = f.record(1).record_id;
    let script = format!(
        r#"{}; rc=$?; [ "$rc" = 8 ] || exit 80; exec {}"#,
        export_sh(&rid, "$MNT"),
        export_sh(&rid, "$MNT/evidence")
    );
    let (o, left, _) = in_small_tmpfs(ns, &mnt, "1m", &script, &env);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains("a mount point"), "{}", show(&o));
    assert!(left.iter().all(|p| p.starts_with("evidence")), "{left:?}");
    assert_eq!(left.len(), 6, "{left:?}");
    // Nothing was staged on the parent file system.
    assert!(!staging_of(&mnt).exists());
    assert!(std::fs::read_dir(&mnt).unwrap().next().is_none());
}
