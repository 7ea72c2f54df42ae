//! Interoperability: a vault can be opened, listed, extracted and checked
//! with standard tools alone (age, zstd, GNU tar, ssh-keygen, b3sum), as
//! docs promise for the day kakuri is no longer around.
//!
//! Each test skips (with a printed reason) when a tool is missing, unless
//! KAKURI_REQUIRE_TOOLS=1, in which case it fails.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

fn have_tools(names: &[&str]) -> bool {
    names.iter().all(|t| have_tool(t))
}

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// The extension kakuri keeps for a sealed image, per docs/FORMAT.md:
/// 1–5 ASCII alphanumerics after the last dot of the file name (with a
/// non-empty stem), lower-cased.
fn expected_ext(image_path: &str) -> Option<String> {
    let name = image_path.rsplit('/').next().unwrap();
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()
        && (1..=5).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then(|| ext.to_ascii_lowercase())
}

/// A synthetic set plus an empty image, a file without extension, and a
/// Japanese name, packed into three shards.
fn interop_vault() -> Fixture {
    let f = Fixture::synth(120, 512, 31);
    add_record(
        &f.input,
        &json!({"record_id": "odd-empty", "image": "odd/empty.png"}),
        b"",
    );
    add_record(
        &f.input,
        &json!({"record_id": "odd-noext", "image": "odd/scan_without_extension"}),
        &noise(700, 1),
    );
    add_record(
        &f.input,
        &json!({"record_id": "odd-jp", "image": "odd/保険証_裏面.JPEG"}),
        &noise(900, 2),
    );
    let s = f.pack(&["--shard-records", "50"]);
    assert_eq!(s["shards"], 3);
    f
}

/// Holds the vault key's plaintext in a 0700 directory, as a 0600 file,
/// and deletes it when dropped.
struct SecretKeyFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SecretKeyFile {
    fn new(plaintext: &[u8]) -> SecretKeyFile {
        // In RAM (tmpfs) when available: the plaintext key never hits a disk.
        let dir = tempfile::Builder::new()
            .prefix("kakuri-vault-key-")
            .tempdir_in(scratch_base())
            .unwrap();
        chmod(dir.path(), 0o700);
        let path = dir.path().join("vault-key.txt");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(plaintext).unwrap();
        f.sync_all().unwrap();
        SecretKeyFile { _dir: dir, path }
    }
}

impl Drop for SecretKeyFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `age -d -i IDENTITY custody/…vault-key.age`: the vault key in plain text.
fn unwrap_with_age(f: &Fixture, identity: &Path) -> Vec<u8> {
    let o = ext(
        "age",
        &[
            os("-d"),
            os("-i"),
            identity.as_os_str(),
            f.vault.join(f.vault_key_wrap()).as_os_str(),
        ],
    );
    assert!(o.status.success(), "age -d failed\n{}", show(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")),
        "the unwrapped vault key is not an age identity"
    );
    o.stdout
}

#[test]
fn age_cli_unwraps_the_vault_key_and_zstd_and_gnu_tar_read_every_shard() {
    if !have_tools(&["age", "zstd", "tar"]) {
        return;
    }
    let f = interop_vault();
    let lines = f.lines();
    let key = SecretKeyFile::new(&unwrap_with_age(&f, &f.keys.identity));
    // docs/FORMAT.md 16.3: the unwrapped key checks against the manifest.
    if have_tool("b3sum") {
        let text = fs::read_to_string(&key.path).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap();
        let o = pipe(
            "b3sum",
            &[
                os("--derive-key"),
                os("kakuri 2026-11 vault key check v1"),
                os("--no-names"),
            ],
            line.as_bytes(),
        );
        assert!(o.status.success(), "{}", show(&o));
        assert_eq!(
            stdout(&o).trim(),
            f.manifest()["custody"]["key_check"].as_str().unwrap()
        );
    }
    let extract = scratch_dir();
    let mut seen = 0u64;
    for (file, first, count) in f.shards() {
        // age -d -i VAULTKEY shard | zstd -d | tar -t
        let o = ext(
            "age",
            &[
                os("-d"),
                os("-i"),
                key.path.as_os_str(),
                f.vault.join(&file).as_os_str(),
            ],
        );
        assert!(o.status.success(), "age -d {file}\n{}", show(&o));
        let z = pipe("zstd", &[os("-d"), os("-q"), os("-c")], &o.stdout);
        assert!(z.status.success(), "zstd -d {file}\n{}", show(&z));
        assert!(z.stderr.is_empty(), "zstd -d {file}\n{}", show(&z));
        let tar = z.stdout;
        let t = pipe("tar", &[os("-t"), os("-f"), os("-")], &tar);
        assert!(t.status.success(), "tar -t {file}\n{}", show(&t));
        assert!(
            t.stderr.is_empty(),
            "GNU tar complained about {file}:\n{}",
            stderr(&t)
        );
        let listed: Vec<String> = stdout(&t).lines().map(str::to_string).collect();
        let mut want = Vec::new();
        for ord in first..first + count {
            let line = &lines[ord as usize];
            want.push(format!("r/{ord:010}/meta.json"));
            want.push(match expected_ext(&line.image()) {
                Some(e) => format!("r/{ord:010}/image.{e}"),
                None => format!("r/{ord:010}/image"),
            });
        }
        assert_eq!(listed, want, "tar -t of {file}");
        seen += count;

        // tar -x gives the exact input bytes and the sealed metadata.
        let x = pipe(
            "tar",
            &[
                os("-x"),
                os("-f"),
                os("-"),
                os("-C"),
                extract.path().as_os_str(),
            ],
            &tar,
        );
        assert!(x.status.success(), "tar -x {file}\n{}", show(&x));
        assert!(x.stderr.is_empty(), "tar -x {file}\n{}", show(&x));
        for ord in first..first + count {
            let line = &lines[ord as usize];
            let image_name = &want[2 * (ord - first) as usize + 1];
            let got = fs::read(extract.path().join(image_name)).unwrap();
            let input = fs::read(f.input.join(line.image())).unwrap();
            assert!(got == input, "image of record {ord} differs");
            let meta: Value = serde_json::from_slice(
                &fs::read(extract.path().join(format!("r/{ord:010}/meta.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(meta["ordinal"], ord);
            assert_eq!(meta["source"], line.json);
            assert_eq!(meta["image_blake3"], blake3::hash(&input).to_hex().as_str());
        }
    }
    assert_eq!(seen, lines.len() as u64);
    let kp = key.path.clone();
    drop(key);
    assert!(!kp.exists(), "the vault key plaintext was not deleted");
}

#[test]
fn age_cli_refuses_the_wrapped_key_to_a_non_custodian() {
    if !have_tool("age") {
        return;
    }
    let f = Fixture::packed(5, 256, 32, &[]);
    let stranger = f.root.join("stranger.age");
    keygen_identity(&stranger);
    let o = ext(
        "age",
        &[
            os("-d"),
            os("-i"),
            stranger.as_os_str(),
            f.vault.join(f.vault_key_wrap()).as_os_str(),
        ],
    );
    assert!(!o.status.success(), "{}", show(&o));
    assert!(o.stdout.is_empty());
    // The custodian's identity cannot open a shard directly: shards are
    // encrypted to the vault key only.
    let o = ext(
        "age",
        &[
            os("-d"),
            os("-i"),
            f.keys.identity.as_os_str(),
            f.vault.join("shards/000000.tar.zst.age").as_os_str(),
        ],
    );
    assert!(!o.status.success(), "{}", show(&o));
}

#[test]
fn ssh_keygen_verifies_the_manifest_signature_and_rejects_a_changed_copy() {
    if !have_tool("ssh-keygen") {
        return;
    }
    let f = Fixture::packed(20, 256, 33, &[]);
    let manifest = fs::read(f.vault.join("manifest.json")).unwrap();
    let verify = |bytes: &[u8], ns: &str| {
        pipe(
            "ssh-keygen",
            &[
                os("-Y"),
                os("verify"),
                os("-f"),
                f.vault.join("allowed_signers").as_os_str(),
                os("-I"),
                os("kakuri-operator"),
                os("-n"),
                os(ns),
                os("-s"),
                f.vault.join("manifest.json.sig").as_os_str(),
            ],
            bytes,
        )
    };
    let o = verify(&manifest, "kakuri-manifest@v1");
    assert!(o.status.success(), "ssh-keygen -Y verify\n{}", show(&o));

    // A copy with one byte changed does not verify.
    let copy = f.root.join("manifest-copy.json");
    fs::write(&copy, &manifest).unwrap();
    flip_byte(&copy, manifest.len() / 2);
    let changed = fs::read(&copy).unwrap();
    assert_ne!(changed, manifest);
    let o = verify(&changed, "kakuri-manifest@v1");
    assert!(
        !o.status.success(),
        "changed manifest verified\n{}",
        show(&o)
    );
    // Nor does the original under another namespace.
    let o = verify(&manifest, "file");
    assert!(
        !o.status.success(),
        "wrong namespace verified\n{}",
        show(&o)
    );

    // The allowed_signers key is the operator's key.
    let pubkey = fs::read_to_string(&f.keys.sign_pub).unwrap();
    let key_b64 = pubkey.split_whitespace().nth(1).unwrap();
    let signers = fs::read_to_string(f.vault.join("allowed_signers")).unwrap();
    assert!(signers.contains(key_b64), "{signers}");
}

#[test]
fn b3sum_of_every_vault_file_and_of_exported_evidence_matches() {
    if !have_tool("b3sum") {
        return;
    }
    let f = Fixture::packed(150, 512, 34, &["--shard-records", "60"]);
    let b3 = |p: &Path| -> String {
        let o = ext("b3sum", &[os("--no-names"), p.as_os_str()]);
        assert!(o.status.success(), "{}", show(&o));
        stdout(&o).trim().to_string()
    };
    let m = f.manifest();
    let files = m["files"].as_array().unwrap();
    // The custody wrap, 3 shards, 4 index files, and their 7 parity files.
    assert_eq!(files.len(), 1 + 3 + 4 + 7);
    for fi in files {
        let rel = fi["path"].as_str().unwrap();
        let p = f.vault.join(rel);
        assert_eq!(b3(&p), fi["blake3"].as_str().unwrap(), "{rel}");
        assert_eq!(
            fs::metadata(&p).unwrap().len(),
            fi["size"].as_u64().unwrap()
        );
    }

    // Exported evidence checks with b3sum alone: the record hash is the
    // BLAKE3 of meta.json, which names the image's BLAKE3.
    let rid = f.record(77).record_id;
    let lk = f.lookup_json(&["--record-id", &rid], 0);
    let out = f.root.join("evidence");
    run_ok(&mut f.export_cmd(&rid, &out));
    let record_hash = b3(&out.join("meta.json"));
    assert_eq!(
        lk["results"][0]["matches"][0]["record_hash"],
        record_hash.as_str()
    );
    let receipt: Value =
        serde_json::from_slice(&fs::read(out.join("receipt.json")).unwrap()).unwrap();
    assert_eq!(receipt["record_hash"], record_hash.as_str());
    let meta: Value = serde_json::from_slice(&fs::read(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["image_blake3"], b3(&exported_image(&out)).as_str());
    assert_eq!(
        receipt["manifest_blake3"],
        b3(&out.join("manifest.json")).as_str()
    );
    assert_eq!(
        b3(&out.join("manifest.json")),
        b3(&f.vault.join("manifest.json"))
    );
}

/// Whether python3 can import `modules`; skips (or fails under
/// KAKURI_REQUIRE_TOOLS=1) like [`have_tool`].
fn have_python_modules(modules: &[&str]) -> bool {
    if !have_tool("python3") {
        return false;
    }
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("KAKURI_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("python3 modules {modules:?} are required (KAKURI_REQUIRE_TOOLS=1): pip install reed-solomon-leopard blake3");
        }
        eprintln!(
            "SKIPPED: python3 cannot import {modules:?} (pip install reed-solomon-leopard blake3)"
        );
    }
    ok
}

#[test]
fn the_documented_python_script_repairs_a_damaged_shard_from_parity_without_kakuri() {
    if !have_python_modules(&["reed_solomon_leopard", "blake3"]) {
        return;
    }
    // Shards of ~570 KB: 9 blocks of 64 KiB, one parity group.
    let f = Fixture::packed(240, 4096, 35, &["--shard-records", "120"]);
    let rel = "shards/000001.tar.zst.age";
    let p = f.vault.join(rel);
    let orig = fs::read(&p).unwrap();
    let mut bad = orig.clone();
    bad[7] ^= 1; // block 0 (the age header)
    assert!(
        orig.len() > 8 * 65536 && orig.len() < 9 * 65536,
        "{}",
        orig.len()
    );
    bad[3 * 65536..3 * 65536 + 70_000].fill(0); // blocks 3 and 4
    bad.truncate(orig.len() - 10); // the last block, 8
    chmod(&p, 0o600);
    fs::write(&p, &bad).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/parity-repair.py");
    let o = ext(
        "python3",
        &[script.as_os_str(), f.vault.as_os_str(), os(rel)],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("4 damaged block(s)"), "{}", show(&o));
    let repaired = fs::read(f.vault.join(format!("{rel}.repaired"))).unwrap();
    assert!(repaired == orig, "the script's repair is not byte-exact");

    // Beyond the parity (5 damaged blocks in one group of 4 recovery
    // blocks), the script refuses, as kakuri does.
    fs::remove_file(f.vault.join(format!("{rel}.repaired"))).unwrap();
    let mut worse = orig.clone();
    for b in [0, 2, 4, 6, 8] {
        worse[b * 65536 + 1] ^= 1;
    }
    fs::write(&p, &worse).unwrap();
    let o = ext(
        "python3",
        &[script.as_os_str(), f.vault.as_os_str(), os(rel)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stdout(&o).contains("not repairable"), "{}", show(&o));
    assert!(!f.vault.join(format!("{rel}.repaired")).exists());
}
