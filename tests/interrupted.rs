//! A pack killed at any point, or stopped by a file-size limit, never
//! leaves a vault that verifies with records missing: it is reported as
//! incomplete (or removed), and every data command refuses it.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::*;

const SIGABRT: i32 = 6;

fn assert_refused_as_incomplete(f: &Fixture, what: &str) {
    let o = run_code(kakuri().arg("status").arg(&f.vault), 6);
    assert!(stderr(&o).contains("incomplete"), "{what}: {}", show(&o));
    run_code(&mut f.verify_cmd(), 6);
    run_code(&mut f.deep_verify_cmd(), 6);
    let o = run_code(
        &mut f.lookup_cmd(&["--record-id", &f.record(0).record_id]),
        6,
    );
    assert!(o.stdout.is_empty(), "{what}: {}", show(&o));
}

#[test]
fn pack_killed_at_each_point_leaves_an_incomplete_vault_that_nothing_accepts() {
    for fault in [
        "pack-shard-sealed:1",
        "pack-shard-sealed:4",
        "pack-before-keys:1",
        "pack-before-manifest:1",
        "pack-signature-written:1",
    ] {
        let f = Fixture::synth(120, 200, 51);
        let o = f
            .pack_cmd(&["--shard-records", "20"])
            .env("KAKURI_FAULT", fault)
            .output()
            .unwrap();
        assert_eq!(o.status.signal(), Some(SIGABRT), "{fault}: {}", show(&o));
        assert!(
            f.vault.is_dir(),
            "{fault}: the half-built vault is left for inspection"
        );
        assert!(!f.vault.join("manifest.json").exists(), "{fault}");
        assert_refused_as_incomplete(&f, fault);
        // pack never writes over it; a fresh pack of the same input works.
        run_code(&mut f.pack_cmd(&[]), 8);
        std::fs::remove_dir_all(&f.vault).unwrap();
        f.pack(&["--shard-records", "20"]);
        run_ok(&mut f.deep_verify_cmd());
    }
}

#[test]
fn a_file_size_limit_during_pack_is_a_clear_error_and_leaves_nothing() {
    let f = Fixture::synth(200, 4000, 52);
    // 256 KiB per file: the first shard cannot be written.
    let bin = assert_cmd::cargo::cargo_bin("kakuri");
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 256; exec \"$@\"")
        .arg("bash")
        .arg(&bin)
        .args(f.pack_argv(&f.input, &f.keys.sign_key))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("kakuri: error:") && err.contains("file too large"),
        "{}",
        show(&o)
    );
    assert_eq!(err.lines().count(), 1, "{}", show(&o));
    assert!(!f.vault.exists(), "the half-built vault must be removed");
}

#[test]
fn pack_resumed_after_a_kill_at_each_point_ends_with_the_same_root() {
    // The root of an uninterrupted pack of the same input.
    let reference = Fixture::synth(120, 200, 53);
    let want = reference.pack(&["--shard-records", "20"])["root"].clone();
    for fault in [
        "pack-shard-sealed:1",
        "pack-shard-sealed:3",
        "pack-before-keys:1",
        "pack-before-manifest:1",
        "pack-signature-written:1",
    ] {
        let f = Fixture::synth(120, 200, 53);
        let o = f
            .pack_cmd(&["--shard-records", "20"])
            .env("KAKURI_FAULT", fault)
            .output()
            .unwrap();
        assert_eq!(o.status.signal(), Some(SIGABRT), "{fault}: {}", show(&o));
        let o = run_code(kakuri().arg("status").arg(&f.vault), 6);
        assert!(stderr(&o).contains("--resume"), "{fault}: {}", show(&o));
        // Shards sealed before the kill (age ciphertext differs on every
        // encryption) must be kept as they are, not sealed again.
        let before: Vec<(String, Vec<u8>)> = files_under(&f.vault)
            .into_iter()
            .filter(|p| p.starts_with("shards/"))
            .map(|p| (p.clone(), std::fs::read(f.vault.join(&p)).unwrap()))
            .collect();
        // Resuming needs the same options.
        let o = run_code(
            f.pack_cmd(&["--shard-records", "21", "--resume", "-i"])
                .arg(&f.keys.identity),
            8,
        );
        assert!(
            stderr(&o).contains("--shard-records"),
            "{fault}: {}",
            show(&o)
        );
        let o = run_ok(
            f.pack_cmd(&["--shard-records", "20", "--resume", "--json", "-i"])
                .arg(&f.keys.identity),
        );
        assert_eq!(
            json_of(&o)["root"],
            want,
            "{fault}: same root as an uninterrupted pack"
        );
        assert_eq!(json_of(&o)["records"], 120);
        let kept = before
            .iter()
            .filter(|(p, b)| std::fs::read(f.vault.join(p)).ok().as_ref() == Some(b))
            .count();
        if fault == "pack-shard-sealed:3" || fault.starts_with("pack-before") {
            assert!(kept >= 3, "{fault}: only {kept} sealed shards kept");
        }
        run_ok(&mut f.verify_cmd());
        run_ok(&mut f.deep_verify_cmd());
        run_ok(kakuri().arg("audit").arg("verify").arg(&f.vault));
        for i in [0u64, 59, 119] {
            let r = f.record(i);
            assert_eq!(
                matched_ids(&f.lookup_json(&["--record-id", &r.record_id], 0), 0),
                vec![r.record_id.clone()]
            );
        }
        // Resuming a complete vault is refused.
        run_code(
            f.pack_cmd(&["--shard-records", "20", "--resume", "-i"])
                .arg(&f.keys.identity),
            6,
        );
    }
}

#[test]
fn pack_interrupted_by_ctrl_c_resumes_to_the_same_root() {
    let f = Fixture::synth(3000, 2000, 54);
    let bin = assert_cmd::cargo::cargo_bin("kakuri");
    let mut child = std::process::Command::new(&bin)
        .args(f.pack_argv(&f.input, &f.keys.sign_key))
        .args(["--shard-records", "50", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the first shard is sealed.
    let t0 = std::time::Instant::now();
    let sealed = || {
        std::fs::read_dir(f.vault.join("index"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".done-"))
            })
            .unwrap_or(false)
    };
    while !sealed() && t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = child.id() as i32;
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    if status.success() {
        eprintln!("pack finished before the interrupt arrived; nothing to resume on this machine");
        return;
    }
    assert_eq!(status.signal(), Some(libc::SIGINT));
    run_code(kakuri().arg("status").arg(&f.vault), 6);
    let o = run_ok(
        f.pack_cmd(&[
            "--shard-records",
            "50",
            "--jobs",
            "1",
            "--resume",
            "--json",
            "-i",
        ])
        .arg(&f.keys.identity),
    );
    let reference = Fixture::synth(3000, 2000, 54);
    let want = reference.pack(&["--shard-records", "50"])["root"].clone();
    assert_eq!(json_of(&o)["root"], want);
    run_ok(&mut f.deep_verify_cmd());
}

/// Three custodians a, b, c; a rewrap to {a, b} killed at `fault`.
fn rewrap_killed_at(fault: &str, new_set_in_force: bool) {
    let f = Fixture::synth(40, 200, 55);
    let b = f.keys.dir.join("b.age");
    let c = f.keys.dir.join("c.age");
    let rb = keygen_identity(&b);
    let rc = keygen_identity(&c);
    std::fs::write(
        &f.keys.recipients,
        format!("{} a\n{rb} b\n{rc} c\n", f.keys.recipient),
    )
    .unwrap();
    f.pack(&[]);
    let new_set = f.root.join("new-recipients.txt");
    std::fs::write(&new_set, format!("{} a\n{rb} b\n", f.keys.recipient)).unwrap();
    let rewrap = |id: &std::path::Path| {
        let mut cmd = kakuri();
        cmd.arg("custody")
            .arg("rewrap")
            .arg(&f.vault)
            .arg("-i")
            .arg(id)
            .arg("--recipients")
            .arg(&new_set)
            .arg("--sign-key")
            .arg(&f.keys.sign_key);
        cmd
    };
    let o = rewrap(&f.keys.identity)
        .env("KAKURI_FAULT", fault)
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(SIGABRT), "{fault}: {}", show(&o));
    // The manifest is whole and signed either way (rolled forward if needed).
    run_ok(kakuri().arg("status").arg(&f.vault));
    let opens = |id: &std::path::Path| {
        let mut cmd = kakuri();
        cmd.arg("lookup")
            .arg(&f.vault)
            .args(f.access(id))
            .arg("--record-id")
            .arg(f.record(1).record_id);
        cmd.output().unwrap().status.code()
    };
    assert_eq!(
        opens(&f.keys.identity),
        Some(0),
        "{fault}: a is in both sets"
    );
    let c_code = opens(&c);
    if new_set_in_force {
        assert_eq!(c_code, Some(5), "{fault}: c was removed");
        // c's old wrap may still be on disk: verify says so until a rewrap runs.
    } else {
        assert_eq!(c_code, Some(0), "{fault}: the old set is still in force");
    }
    // Running the rewrap again finishes the job cleanly.
    run_ok(&mut rewrap(&f.keys.identity));
    assert_eq!(opens(&c), Some(5), "{fault}");
    run_ok(&mut f.verify_cmd());
    run_ok(&mut f.deep_verify_cmd());
    let st = json_of(&run_ok(kakuri().arg("status").arg(&f.vault).arg("--json")));
    assert!(
        st["stale_custody_files"].as_array().unwrap().is_empty(),
        "{fault}: {st}"
    );
}

#[test]
fn rewrap_killed_before_the_new_manifest_keeps_the_old_custodians() {
    rewrap_killed_at("rewrap-wrapped:1", false);
}

#[test]
fn rewrap_killed_after_the_new_manifest_keeps_the_new_custodians() {
    // Once both staged files are written, the next read rolls forward.
    rewrap_killed_at("manifest-staged:1", true);
    rewrap_killed_at("manifest-sig-renamed:1", true);
    rewrap_killed_at("rewrap-replaced:1", true);
    rewrap_killed_at("rewrap-erased-one:1", true);
}
