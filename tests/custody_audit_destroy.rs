//! Custody (k-of-n, rewrap), the audit log (contents, tamper detection) and
//! destruction (refusals, certificate, co-signed orders, crash and resume),
//! all through the real `kakuri` binary.
//!
//! Self-contained: every helper lives in this file.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use kakuri::synth::{self, SynthSpec};
use serde_json::Value;
use tempfile::TempDir;

/// A retention date far in the future.
const RETAIN: &str = "2099-12-31";
/// A hang fails the test instead of blocking the run.
const CMD_TIMEOUT: Duration = Duration::from_secs(180);
const CASE: &str = "CASE-CAD-7";
const REASON: &str = "member asked whether their licence leaked";
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
/// What `KAKURI_FAULT` kills the process with (`std::process::abort`).
const SIGABRT: i32 = 6;

// ---------------------------------------------------------------- helpers

fn kakuri() -> Command {
    let mut c = Command::cargo_bin("kakuri").expect("kakuri binary is built");
    c.timeout(CMD_TIMEOUT);
    c
}

fn show(o: &Output) -> String {
    format!(
        "exit status: {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        o.status.signal(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `cmd` and asserts its exit code.
fn run_code(cmd: &mut Command, code: i32) -> Output {
    let o = cmd.output().expect("command runs");
    assert_eq!(
        o.status.code(),
        Some(code),
        "unexpected exit code (wanted {code})\n{}",
        show(&o)
    );
    o
}

fn run_ok(cmd: &mut Command) -> Output {
    run_code(cmd, 0)
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", show(o)))
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A temp dir on tmpfs when available (kakuri fsyncs a lot).
fn scratch_dir() -> TempDir {
    let b = tempfile::Builder::new().prefix("kakuri-cad-").to_owned();
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = b.tempdir_in(shm) {
            return d;
        }
    }
    b.tempdir().unwrap()
}

/// `kakuri keygen --identity PATH`; returns the age recipient.
fn keygen_identity(path: &Path) -> String {
    let o = run_ok(kakuri().arg("keygen").arg("--identity").arg(path));
    let out = stdout(&o);
    let r = out
        .lines()
        .find_map(|l| l.strip_prefix("recipient: "))
        .unwrap_or_else(|| panic!("no recipient line\n{}", show(&o)))
        .trim()
        .to_string();
    assert!(r.starts_with("age1"), "not an age recipient: {r}");
    r
}

/// `kakuri keygen --signing-key PATH` (writes PATH and PATH.pub).
fn keygen_signing(path: &Path) {
    run_ok(kakuri().arg("keygen").arg("--signing-key").arg(path));
    assert!(path.is_file());
    assert!(pub_of(path).is_file(), "keygen wrote no .pub");
}

fn pub_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

/// Recursively copies a directory, keeping every file (copies are made
/// owner-writable so they can be tampered with).
fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_dir(&e.path(), &to);
        } else if ft.is_file() {
            fs::copy(e.path(), &to).unwrap();
            chmod(&to, 0o600);
        }
    }
}

/// Every regular file under `dir` (relative path -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// Whether the external tool `name` is on PATH; prints a skip reason when
/// not, or panics if KAKURI_REQUIRE_TOOLS=1.
fn have_tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).any(|d| {
                fs::metadata(d.join(name))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if !found {
        if std::env::var("KAKURI_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("required external tool `{name}` is not on PATH (KAKURI_REQUIRE_TOOLS=1)");
        }
        eprintln!(
            "SKIPPED: external tool `{name}` is not on PATH; set KAKURI_REQUIRE_TOOLS=1 to fail instead"
        );
    }
    found
}

/// `age -d -i IDENTITY FILE`.
fn age_decrypt(identity: &Path, file: &Path) -> Output {
    ext(
        "age",
        &[
            "-d".as_ref(),
            "-i".as_ref(),
            identity.as_os_str(),
            file.as_os_str(),
        ],
    )
}

fn ext(program: &str, args: &[&OsStr]) -> Output {
    std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Three custodians (a, b, c), an operator key, and a synthetic input set.
struct Env {
    _tmp: TempDir,
    root: PathBuf,
    input: PathBuf,
    spec: SynthSpec,
    ids: Vec<PathBuf>,
    recips: Vec<String>,
    op: PathBuf,
}

impl Env {
    fn new(count: u64, seed: u64) -> Env {
        let tmp = scratch_dir();
        let root = tmp.path().to_path_buf();
        let input = root.join("input");
        fs::create_dir(&input).unwrap();
        let spec = SynthSpec {
            count,
            image_size: 300,
            seed,
        };
        let s = synth::generate(&input, &spec, &mut |_| {}).unwrap();
        assert_eq!(s.records, count);
        let keys = root.join("keys");
        fs::create_dir(&keys).unwrap();
        chmod(&keys, 0o700);
        let mut ids = Vec::new();
        let mut recips = Vec::new();
        for n in ["a", "b", "c"] {
            let p = keys.join(format!("custodian-{n}.key"));
            recips.push(keygen_identity(&p));
            ids.push(p);
        }
        let op = keys.join("operator");
        keygen_signing(&op);
        Env {
            _tmp: tmp,
            root,
            input,
            spec,
            ids,
            recips,
            op,
        }
    }

    /// A recipients file for the custodians with these indices (0=a..2=c).
    fn recipients(&self, name: &str, which: &[usize]) -> PathBuf {
        let p = self.root.join(name);
        let mut s = String::from("# custodians\n");
        for &i in which {
            s.push_str(&format!("{} {}\n", self.recips[i], ["a", "b", "c"][i]));
        }
        fs::write(&p, s).unwrap();
        p
    }

    /// Packs the input into ROOT/NAME with custodians a, b, c.
    fn pack(&self, name: &str, threshold: u32, extra: &[&str]) -> PathBuf {
        let rf = self.recipients(&format!("{name}.recipients"), &[0, 1, 2]);
        let out = self.root.join(name);
        run_ok(
            kakuri()
                .arg("pack")
                .arg(&self.input)
                .arg("--recipients")
                .arg(&rf)
                .arg("--sign-key")
                .arg(&self.op)
                .arg("--threshold")
                .arg(threshold.to_string())
                .arg("--retain-until")
                .arg(RETAIN)
                .arg("--out")
                .arg(&out)
                .arg("--json")
                .args(extra),
        );
        assert!(out.join("manifest.json").is_file());
        out
    }

    fn record(&self, i: u64) -> synth::SynthRecord {
        synth::record(&self.spec, i)
    }

    /// `-i ID… --case --reason --sign-key OP`.
    fn access(&self, c: &mut Command, who: &[usize]) {
        for &i in who {
            c.arg("-i").arg(&self.ids[i]);
        }
        c.arg("--case")
            .arg(CASE)
            .arg("--reason")
            .arg(REASON)
            .arg("--sign-key")
            .arg(&self.op);
    }

    /// `lookup V --record-id ID` with the given custodians' identities.
    fn lookup(&self, vault: &Path, who: &[usize], record_id: &str) -> Command {
        let mut c = kakuri();
        c.arg("lookup").arg(vault);
        self.access(&mut c, who);
        c.arg("--record-id").arg(record_id).arg("--json");
        c
    }

    /// Asserts a lookup of record `i` with these custodians finds it.
    fn assert_opens(&self, vault: &Path, who: &[usize], i: u64) {
        let rid = self.record(i).record_id;
        let o = run_ok(&mut self.lookup(vault, who, &rid));
        let v = json_of(&o);
        let got = v["results"][0]["matches"][0]["record_id"].as_str();
        assert_eq!(got, Some(rid.as_str()), "custodians {who:?}: {v}");
    }

    fn destroy(&self, vault: &Path, id: &str) -> Command {
        let mut c = kakuri();
        c.arg("destroy")
            .arg(vault)
            .arg("--confirm")
            .arg(id)
            .arg("--sign-key")
            .arg(&self.op);
        c
    }
}

fn status(vault: &Path) -> Value {
    json_of(&run_ok(kakuri().arg("status").arg(vault).arg("--json")))
}

fn vault_id(vault: &Path) -> String {
    status(vault)["vault_id"].as_str().unwrap().to_string()
}

fn manifest(vault: &Path) -> Value {
    serde_json::from_slice(&fs::read(vault.join("manifest.json")).unwrap()).unwrap()
}

fn manifest_files(vault: &Path) -> Vec<String> {
    let mut v: Vec<String> = manifest(vault)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn audit_entries(vault: &Path) -> Vec<Value> {
    let o = run_ok(kakuri().arg("audit").arg(vault).arg("--json"));
    json_of(&o)
        .as_array()
        .expect("audit --json is an array")
        .clone()
}

fn actions(vault: &Path) -> Vec<String> {
    audit_entries(vault)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

fn certificate(vault: &Path) -> Value {
    serde_json::from_slice(&fs::read(vault.join("destroy/certificate.json")).unwrap()).unwrap()
}

/// Every manifest file appears exactly once across key_material_erased
/// and files_destroyed, and nothing else does.
fn assert_certificate_lists_manifest_once(vault: &Path) {
    let c = certificate(vault);
    let mut listed: Vec<String> = c["key_material_erased"]
        .as_array()
        .unwrap()
        .iter()
        .chain(c["files_destroyed"].as_array().unwrap())
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        manifest_files(vault),
        "certificate does not list every manifest file exactly once"
    );
    let wraps: Vec<String> = manifest(vault)["custody"]["wraps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let km: Vec<String> = c["key_material_erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(km, wraps, "key material erased is not the custody wraps");
}

fn cert_verify(vault: &Path) -> Command {
    let mut c = kakuri();
    c.arg("certificate")
        .arg("verify")
        .arg(vault.join("destroy/certificate.json"));
    c
}

/// `audit verify`, which must exit 4 and name entry `n`.
fn assert_audit_broken_at(vault: &Path, n: u64, what: &str) {
    let o = run_code(kakuri().arg("audit").arg("verify").arg(vault), 4);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("FAILED at entry {n}:")),
        "{what}: audit verify should name entry {n}\n{}",
        show(&o)
    );
    let o = run_code(
        kakuri().arg("audit").arg("verify").arg(vault).arg("--json"),
        4,
    );
    let v = json_of(&o);
    assert_eq!(v["ok"], false, "{what}: {v}");
    assert_eq!(v["first_broken"].as_u64(), Some(n), "{what}: {v}");
}

/// The audit log's lines (each without its "\n").
fn log_lines(vault: &Path) -> Vec<Vec<u8>> {
    let b = fs::read(vault.join("audit/log.jsonl")).unwrap();
    assert_eq!(b.last(), Some(&b'\n'));
    b[..b.len() - 1]
        .split(|&c| c == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_log(vault: &Path, lines: &[Vec<u8>], trailing_newline: bool) {
    let mut b = lines.join(&b'\n');
    if trailing_newline {
        b.push(b'\n');
    }
    let p = vault.join("audit/log.jsonl");
    chmod(&p, 0o600);
    fs::write(&p, b).unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- 1. k-of-n

#[test]
fn two_of_three_custody_opens_with_any_pair_refuses_one_and_names_a_swapped_share() {
    let env = Env::new(40, 11);
    let v = env.pack("vault", 2, &[]);
    let m = manifest(&v);
    assert_eq!(m["custody"]["scheme"], "threshold", "{}", m["custody"]);
    assert_eq!(m["custody"]["threshold"], 2);

    for pair in [[0, 1], [1, 2], [0, 2]] {
        env.assert_opens(&v, &pair, 5);
    }
    for one in 0..3 {
        let o = run_code(&mut env.lookup(&v, &[one], &env.record(5).record_id), 5);
        assert!(
            stderr(&o).contains("1 more needed"),
            "custodian {one} alone: the error should say how many more shares are needed\n{}",
            show(&o)
        );
        assert!(o.stdout.is_empty(), "nothing is shown\n{}", show(&o));
    }

    // A share of another vault (same custodians), swapped in under the same name.
    let other = env.pack("other", 2, &[]);
    let share = "custody/g1-share-02.age";
    assert!(v.join(share).is_file());
    let bad = env.root.join("bad");
    copy_dir(&v, &bad);
    fs::remove_file(bad.join(share)).unwrap();
    fs::copy(other.join(share), bad.join(share)).unwrap();
    for pair in [[0, 1], [1, 2]] {
        let o = run_code(&mut env.lookup(&bad, &pair, &env.record(5).record_id), 4);
        assert!(
            stderr(&o).contains(share),
            "custodians {pair:?}: the swapped share should be named\n{}",
            show(&o)
        );
    }
    // Without b, the swapped share is never opened: a and c still open it.
    env.assert_opens(&bad, &[0, 2], 5);
}

// ---------------------------------------------------------------- 2. rewrap

#[test]
fn custody_rewrap_drops_the_old_custodian_and_erases_old_shares() {
    let env = Env::new(40, 12);
    let v = env.pack("vault", 2, &[]);
    let old_wraps: Vec<String> = manifest(&v)["custody"]["wraps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert_eq!(old_wraps.len(), 3);
    for w in &old_wraps {
        assert!(v.join(w).is_file(), "{w}");
    }
    assert_eq!(status(&v)["custody_generation"], 1);

    let new_recips = env.recipients("ab.recipients", &[0, 1]);
    run_ok(
        kakuri()
            .arg("custody")
            .arg("rewrap")
            .arg(&v)
            .arg("-i")
            .arg(&env.ids[0])
            .arg("-i")
            .arg(&env.ids[1])
            .arg("--recipients")
            .arg(&new_recips)
            .arg("--threshold")
            .arg("1")
            .arg("--sign-key")
            .arg(&env.op),
    );

    // c no longer opens it; a alone does (threshold 1).
    let rid = env.record(3).record_id;
    let o = run_code(&mut env.lookup(&v, &[2], &rid), 5);
    assert!(o.stdout.is_empty(), "{}", show(&o));
    env.assert_opens(&v, &[0], 3);
    env.assert_opens(&v, &[1], 3);

    for w in &old_wraps {
        assert!(
            !v.join(w).exists(),
            "{w}: the old share is still in custody/"
        );
    }
    let left: Vec<String> = fs::read_dir(v.join("custody"))
        .unwrap()
        .map(|e| format!("custody/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let new_wraps: Vec<String> = manifest(&v)["custody"]["wraps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, new_wraps, "custody/ holds exactly the new wraps");

    run_ok(kakuri().arg("verify").arg(&v));
    let s = status(&v);
    assert_eq!(s["custody_generation"], 2, "{s}");
    assert_eq!(s["custody_scheme"], "any-one", "{s}");
    assert_eq!(
        s["stale_custody_files"].as_array().map(Vec::len),
        Some(0),
        "{s}"
    );
    let acts = actions(&v);
    assert!(acts.contains(&"rewrap".to_string()), "{acts:?}");
    run_ok(kakuri().arg("audit").arg("verify").arg(&v));
}

// ---------------------------------------------------------------- 3. audit

#[test]
fn audit_log_records_reads_without_personal_data_and_locates_every_tampering() {
    let env = Env::new(40, 13);
    let v = env.pack("vault", 1, &[]);
    let r = env.record(17);

    // A lookup by member id, document number and record id.
    let mut c = kakuri();
    c.arg("lookup").arg(&v);
    env.access(&mut c, &[0]);
    c.arg("--member-id")
        .arg(&r.member_id)
        .arg("--document-number")
        .arg(&r.document_number)
        .arg("--record-id")
        .arg(&r.record_id)
        .arg("--json");
    let o = run_ok(&mut c);
    assert!(json_of(&o)["found"].as_u64().unwrap() >= 1);

    // An export of the same record.
    let mut c = kakuri();
    c.arg("export").arg(&v);
    env.access(&mut c, &[1]);
    c.arg("--record-id")
        .arg(&r.record_id)
        .arg("--out")
        .arg(env.root.join("evidence"));
    run_ok(&mut c);

    // A recorded verification.
    run_ok(
        kakuri()
            .arg("verify")
            .arg(&v)
            .arg("--sign-key")
            .arg(&env.op),
    );

    let entries = audit_entries(&v);
    let acts: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(acts, ["pack", "lookup", "export", "verify"]);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64), "{e}");
    }
    for e in &entries[1..3] {
        assert_eq!(e["case"], CASE, "{e}");
        assert_eq!(e["reason"], REASON, "{e}");
    }
    let q = entries[1]["queries"].as_array().unwrap();
    assert_eq!(
        q.len(),
        3,
        "one keyed hash per lookup query: {}",
        entries[1]
    );

    let log = fs::read(v.join("audit/log.jsonl")).unwrap();
    for planted in [&r.member_id, &r.record_id, &r.document_number] {
        assert!(
            find(&log, planted.as_bytes()).is_none(),
            "the audit log contains a queried value in the clear"
        );
    }
    // Nor any other spelling of the member id (normalised or lower case).
    assert!(find(&log, r.member_id.to_lowercase().as_bytes()).is_none());
    run_ok(kakuri().arg("audit").arg("verify").arg(&v));

    let lines = log_lines(&v);
    assert_eq!(lines.len(), 4);
    let fresh = |name: &str| {
        let d = env.root.join(name);
        copy_dir(&v, &d);
        d
    };

    // A middle entry deleted.
    let d = fresh("t-delete");
    let mut l = lines.clone();
    l.remove(1);
    write_log(&d, &l, true);
    assert_audit_broken_at(&d, 1, "deleted entry");

    // One character of an entry's JSON changed (the reason text).
    let d = fresh("t-edit");
    let mut l = lines.clone();
    let at = find(&l[1], REASON.as_bytes()).expect("reason in entry 1") + 2;
    l[1][at] = if l[1][at] == b'X' { b'Y' } else { b'X' };
    write_log(&d, &l, true);
    assert_audit_broken_at(&d, 1, "edited entry");

    // Two entries swapped.
    let d = fresh("t-swap");
    let mut l = lines.clone();
    l.swap(1, 2);
    write_log(&d, &l, true);
    assert_audit_broken_at(&d, 1, "swapped entries");

    // The last entry removed entirely: the signed head still names it.
    let d = fresh("t-drop-last");
    let mut l = lines.clone();
    l.pop();
    write_log(&d, &l, true);
    assert_audit_broken_at(&d, 3, "last entry removed");
    let o = env.lookup(&d, &[0], &r.record_id).output().unwrap();
    assert_ne!(
        o.status.code(),
        Some(0),
        "a lookup on a vault whose log was truncated must be refused\n{}",
        show(&o)
    );
    assert!(
        !stdout(&o).contains(&r.record_id),
        "nothing is shown when the read cannot be recorded\n{}",
        show(&o)
    );
    assert_eq!(log_lines(&d), l, "the refused lookup appended nothing");

    // The file cut in the middle of the last line.
    let d = fresh("t-cut");
    let mut l = lines.clone();
    let n = l[3].len() / 2;
    l[3].truncate(n);
    write_log(&d, &l, false);
    assert_audit_broken_at(&d, 3, "cut mid-line");
    let o = env.lookup(&d, &[0], &r.record_id).output().unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!stdout(&o).contains(&r.record_id), "{}", show(&o));

    // The untouched original is still fine.
    run_ok(kakuri().arg("audit").arg("verify").arg(&v));
}

// ---------------------------------------------------------------- 4. destroy

#[test]
fn destroy_refuses_unsafely_then_erases_everything_and_certifies_it() {
    let env = Env::new(60, 14);
    let v = env.pack("vault", 1, &["--shard-records", "16"]);
    let id = vault_id(&v);
    let files = manifest_files(&v);
    assert!(files.iter().any(|f| f.starts_with("shards/")));
    assert!(files.iter().any(|f| f.starts_with("index/")));
    assert!(files.iter().any(|f| f.starts_with("custody/")));
    let before = snapshot(&v);
    // A copy of the ciphertext taken before destruction.
    let old = env.root.join("copy-before");
    copy_dir(&v, &old);

    // Before the retention date, without --early.
    let o = run_code(&mut env.destroy(&v, &id), 8);
    assert!(stderr(&o).contains("retention"), "{}", show(&o));
    assert_eq!(snapshot(&v), before, "a refused destroy changed the vault");
    // The wrong vault id.
    let wrong = format!("{}x", &id[..id.len() - 1]);
    run_code(
        env.destroy(&v, &wrong)
            .arg("--early")
            .arg("--reason")
            .arg("r"),
        8,
    );
    assert_eq!(snapshot(&v), before);
    // --early without --reason.
    run_code(env.destroy(&v, &id).arg("--early"), 2);
    assert_eq!(snapshot(&v), before);
    // A dry run lists every file and changes nothing.
    let o = run_ok(
        env.destroy(&v, &id)
            .arg("--dry-run")
            .arg("--early")
            .arg("--reason")
            .arg("case closed"),
    );
    for f in &files {
        assert!(
            stdout(&o).contains(f.as_str()),
            "dry run omits {f}\n{}",
            show(&o)
        );
    }
    assert_eq!(snapshot(&v), before, "a dry run changed the vault");

    run_ok(
        env.destroy(&v, &id)
            .arg("--early")
            .arg("--reason")
            .arg("case closed")
            .arg("--legal-basis")
            .arg("APPI art. 22"),
    );

    for d in ["shards", "index"] {
        assert!(!v.join(d).exists(), "{d}/ survived destroy");
    }
    for f in &files {
        assert!(!v.join(f).exists(), "{f} survived destroy");
    }
    assert!(
        !v.join("custody").exists() || fs::read_dir(v.join("custody")).unwrap().next().is_none(),
        "custody files survived destroy"
    );
    assert_eq!(status(&v)["state"], "destroyed");
    // Nothing left in the vault dir is an age file.
    for (rel, bytes) in snapshot(&v) {
        assert!(
            !bytes.starts_with(AGE_MAGIC),
            "{rel} is still an age file after destroy"
        );
    }

    let rid = env.record(4).record_id;
    let o = run_code(&mut env.lookup(&v, &[0], &rid), 6);
    assert!(stderr(&o).contains("destroyed"), "{}", show(&o));

    // The age CLI: the custodian's key has nothing in the vault to open,
    // and a shard copied before destruction only opens with the vault key.
    if have_tool("age") {
        let wrap = manifest(&v)["custody"]["wraps"][0]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!v.join(&wrap).exists());
        let o = age_decrypt(&env.ids[0], &v.join(&wrap));
        assert!(!o.status.success(), "{}", show(&o));
        let shard = files.iter().find(|f| f.starts_with("shards/")).unwrap();
        let old_shard = old.join(shard);
        let o = age_decrypt(&env.ids[0], &old_shard);
        assert!(
            !o.status.success(),
            "a custodian's key alone decrypted a shard\n{}",
            show(&o)
        );
        // Control: the pre-destroy wrap yields the vault key, which opens the
        // old shard; that key appears nowhere in the destroyed vault.
        let o = age_decrypt(&env.ids[0], &old.join(&wrap));
        assert!(o.status.success(), "{}", show(&o));
        let key_text = stdout(&o);
        let secret = key_text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .expect("vault key in the wrap")
            .to_string();
        let vk = env.root.join("vault-key.txt");
        fs::write(&vk, &key_text).unwrap();
        chmod(&vk, 0o600);
        let o = age_decrypt(&vk, &old_shard);
        assert!(
            o.status.success(),
            "the vault key should open the old shard\n{}",
            show(&o)
        );
        for (rel, bytes) in snapshot(&v) {
            assert!(
                find(&bytes, secret.as_bytes()).is_none(),
                "{rel} holds the vault key after destroy"
            );
        }
    }

    // Old ciphertext (shards, index, custody) copied back is not served.
    for d in ["shards", "index", "custody"] {
        copy_dir(&old.join(d), &v.join(d));
    }
    let o = run_code(&mut env.lookup(&v, &[0], &rid), 6);
    assert!(stderr(&o).contains("destroyed"), "{}", show(&o));
    for d in ["shards", "index", "custody"] {
        fs::remove_dir_all(v.join(d)).unwrap();
    }

    // The certificate.
    run_ok(&mut cert_verify(&v));
    run_ok(cert_verify(&v).arg("--signer").arg(pub_of(&env.op)));
    assert_certificate_lists_manifest_once(&v);
    let c = certificate(&v);
    assert_eq!(c["vault_id"], id.as_str());
    assert!(
        c["limits"].as_array().is_some_and(|l| !l.is_empty()),
        "no limits on the certificate: {}",
        c["limits"]
    );
    assert_eq!(c["retention"]["early"], true);
    assert_eq!(c["retention"]["reason"], "case closed");
    assert!(v.join("destroy/certificate.html").is_file());
    assert!(v.join("destroy/certificate.json.sig").is_file());
    let acts = actions(&v);
    assert_eq!(
        acts.iter().filter(|a| *a == "destroy").count(),
        1,
        "{acts:?}"
    );
    run_ok(kakuri().arg("audit").arg("verify").arg(&v));

    // ssh-keygen checks it without kakuri.
    let allowed = env.root.join("allowed_signers");
    let op_pub = fs::read_to_string(pub_of(&env.op)).unwrap();
    fs::write(
        &allowed,
        format!(
            "op namespaces=\"kakuri-destruction@v1\" {}\n",
            op_pub.trim()
        ),
    )
    .unwrap();
    let ssh_verify = |cert: &Path| -> Output {
        let sig = PathBuf::from(format!("{}.sig", cert.display()));
        std::process::Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", "op", "-n", "kakuri-destruction@v1", "-s"])
            .arg(&sig)
            .stdin(fs::File::open(cert).unwrap())
            .output()
            .unwrap()
    };
    let have_ssh = have_tool("ssh-keygen");
    if have_ssh {
        let o = ssh_verify(&v.join("destroy/certificate.json"));
        assert!(
            o.status.success(),
            "ssh-keygen -Y verify failed\n{}",
            show(&o)
        );
    }

    // One byte of the certificate edited (on a copy with its signature).
    let ed = env.root.join("cert-edit");
    fs::create_dir(&ed).unwrap();
    fs::copy(
        v.join("destroy/certificate.json"),
        ed.join("certificate.json"),
    )
    .unwrap();
    fs::copy(
        v.join("destroy/certificate.json.sig"),
        ed.join("certificate.json.sig"),
    )
    .unwrap();
    let cp = ed.join("certificate.json");
    chmod(&cp, 0o600);
    let mut b = fs::read(&cp).unwrap();
    let at = find(&b, b"case closed").unwrap();
    b[at] = b'C';
    fs::write(&cp, &b).unwrap();
    run_code(kakuri().arg("certificate").arg("verify").arg(&cp), 4);
    if have_ssh {
        let o = ssh_verify(&cp);
        assert!(
            !o.status.success(),
            "ssh-keygen accepted an edited certificate"
        );
    }
    // The original is untouched and still verifies.
    run_ok(&mut cert_verify(&v));
}

// ---------------------------------------------------------------- 5. co-sign

/// Signs ORDER into ORDER.sig with `ssh-keygen -Y sign`, or (without
/// ssh-keygen, unless KAKURI_REQUIRE_TOOLS=1) with the same SSHSIG format
/// through the library.
fn sign_order(officer: &Path, order: &Path) {
    if have_tool("ssh-keygen") {
        let o = ext(
            "ssh-keygen",
            &[
                "-Y".as_ref(),
                "sign".as_ref(),
                "-f".as_ref(),
                officer.as_os_str(),
                "-n".as_ref(),
                "kakuri-destroy-order@v1".as_ref(),
                order.as_os_str(),
            ],
        );
        assert!(
            o.status.success(),
            "ssh-keygen -Y sign failed\n{}",
            show(&o)
        );
    } else {
        let k = kakuri::keys::load_signing_key(officer).unwrap();
        let s = kakuri::manifest::sign_ns(&fs::read(order).unwrap(), &k, "kakuri-destroy-order@v1")
            .unwrap();
        fs::write(format!("{}.sig", order.display()), s).unwrap();
    }
    assert!(PathBuf::from(format!("{}.sig", order.display())).is_file());
}

#[test]
fn co_signed_destroy_order_is_bound_to_its_vault_and_shown_on_the_certificate() {
    let env = Env::new(40, 15);
    let v = env.pack("vault", 1, &[]);
    let other = env.pack("other", 1, &[]);
    let id = vault_id(&v);
    let officer = env.root.join("keys/officer");
    keygen_signing(&officer);

    let order = env.root.join("ORDER.json");
    run_ok(kakuri().arg("destroy").arg(&v).arg("--order").arg(&order));
    let ov: Value = serde_json::from_slice(&fs::read(&order).unwrap()).unwrap();
    assert_eq!(ov["vault_id"], id.as_str());
    sign_order(&officer, &order);

    // An order signed for the other vault is refused for this one.
    let other_order = env.root.join("OTHER-ORDER.json");
    run_ok(
        kakuri()
            .arg("destroy")
            .arg(&other)
            .arg("--order")
            .arg(&other_order),
    );
    sign_order(&officer, &other_order);
    let before = snapshot(&v);
    let o = run_code(
        env.destroy(&v, &id)
            .arg("--co-sign")
            .arg(&other_order)
            .arg("--co-signer")
            .arg(pub_of(&officer))
            .arg("--early")
            .arg("--reason")
            .arg("order received"),
        8,
    );
    assert!(!stderr(&o).is_empty());
    assert_eq!(
        snapshot(&v),
        before,
        "a refused co-signed destroy changed the vault"
    );

    run_ok(
        env.destroy(&v, &id)
            .arg("--co-sign")
            .arg(&order)
            .arg("--co-signer")
            .arg(pub_of(&officer))
            .arg("--early")
            .arg("--reason")
            .arg("order received"),
    );
    assert_eq!(status(&v)["state"], "destroyed");
    let o = run_ok(
        cert_verify(&v)
            .arg("--co-signer")
            .arg(pub_of(&officer))
            .arg("--json"),
    );
    let r = json_of(&o);
    assert!(r["co_signer_fingerprint"].is_string(), "{r}");
    // The co-signature is pinned: another key is not accepted as co-signer.
    run_code(cert_verify(&v).arg("--co-signer").arg(pub_of(&env.op)), 4);
    assert_certificate_lists_manifest_once(&v);
    // The other vault was not touched.
    run_ok(kakuri().arg("verify").arg(&other));
}

// ---------------------------------------------------------------- 6. crash

/// `state_after_crash`: the `status` state expected after the crash (None:
/// not pinned — see the report on the destroy-certified window).
fn crash_and_resume(fault: &str, seed: u64, state_after_crash: Option<&str>) {
    let env = Env::new(48, seed);
    let v = env.pack("vault", 1, &["--shard-records", "12"]);
    let id = vault_id(&v);
    let files = manifest_files(&v);
    assert!(files.len() >= 5, "{files:?}");
    let cmd = |c: &mut Command| {
        c.arg("--early").arg("--reason").arg("crash rehearsal");
    };

    let mut c = env.destroy(&v, &id);
    cmd(&mut c);
    c.env("KAKURI_FAULT", fault);
    let o = c.output().unwrap();
    assert!(
        !o.status.success(),
        "{fault}: destroy did not abort\n{}",
        show(&o)
    );
    assert_eq!(
        o.status.signal(),
        Some(SIGABRT),
        "{fault}: not killed by SIGABRT\n{}",
        show(&o)
    );
    if let Some(st) = state_after_crash {
        assert_eq!(status(&v)["state"], st, "{fault}");
    }
    if fault.starts_with("destroy-certified") {
        // Killed after the certificate, before its audit entry.
        assert!(v.join("destroy/certificate.json").is_file(), "{fault}");
        let acts = actions(&v);
        assert!(!acts.iter().any(|a| a == "destroy"), "{fault}: {acts:?}");
    }
    if fault.starts_with("destroy-recorded") {
        // Killed after the final audit entry, before the journal went: still
        // reported as interrupted, and the re-run must not record it twice.
        assert!(v.join("destroy/certificate.json").is_file(), "{fault}");
        assert_eq!(status(&v)["state"], "destroy interrupted", "{fault}");
        let acts = actions(&v);
        assert_eq!(
            acts.iter().filter(|a| *a == "destroy").count(),
            1,
            "{fault}: {acts:?}"
        );
    }
    if state_after_crash == Some("destroy interrupted") {
        assert!(!v.join("destroy/certificate.json").exists(), "{fault}");
        // Key material goes first (cryptographic erase): the wrap is gone
        // while ciphertext is still there.
        let wraps = manifest(&v)["custody"]["wraps"].clone();
        for w in wraps.as_array().unwrap() {
            let w = w.as_str().unwrap();
            assert!(!v.join(w).exists(), "{fault}: {w} not erased first");
        }
        assert!(
            files
                .iter()
                .any(|f| f.starts_with("shards/") && v.join(f).exists()),
            "{fault}: every shard was gone before the crash"
        );
    }
    let o = run_code(&mut env.lookup(&v, &[0], &env.record(1).record_id), 6);
    assert!(o.stdout.is_empty(), "{fault}: {}", show(&o));

    let mut c = env.destroy(&v, &id);
    cmd(&mut c);
    c.env_remove("KAKURI_FAULT");
    run_ok(&mut c);

    assert_eq!(status(&v)["state"], "destroyed", "{fault}");
    assert!(
        !v.join("destroy/journal.json").exists(),
        "{fault}: journal left"
    );
    for f in &files {
        assert!(!v.join(f).exists(), "{fault}: {f} survived");
    }
    assert_certificate_lists_manifest_once(&v);
    run_ok(&mut cert_verify(&v));
    let acts = actions(&v);
    assert_eq!(
        acts.iter().filter(|a| *a == "destroy").count(),
        1,
        "{fault}: {acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| *a == "destroy-start").count(),
        1,
        "{fault}: {acts:?}"
    );
    run_ok(kakuri().arg("audit").arg("verify").arg(&v));
    // Running it again now is refused as already destroyed.
    let mut c = env.destroy(&v, &id);
    cmd(&mut c);
    run_code(&mut c, 6);
}

#[test]
fn destroy_killed_after_journaling_two_files_resumes_to_one_complete_certificate() {
    crash_and_resume("destroy-journaled:2", 16, Some("destroy interrupted"));
}

#[test]
fn destroy_killed_between_erasing_and_journaling_a_file_resumes_and_certifies_it() {
    crash_and_resume("destroy-erased:1", 17, Some("destroy interrupted"));
}

#[test]
fn destroy_killed_after_the_certificate_resumes_by_recording_it_once() {
    crash_and_resume("destroy-certified:1", 18, None);
}

#[test]
fn destroy_killed_after_its_audit_entry_resumes_without_recording_it_twice() {
    crash_and_resume("destroy-recorded:1", 20, None);
}

// ---------------------------------------------------------------- 7. claims

#[test]
fn destroy_certifies_nothing_while_an_age_file_remains_in_the_vault_dir() {
    let env = Env::new(40, 19);
    let v = env.pack("vault", 1, &[]);
    let id = vault_id(&v);
    // A stray copy of the key wrap the operator left in the vault dir.
    let wrap = manifest(&v)["custody"]["wraps"][0]
        .as_str()
        .unwrap()
        .to_string();
    fs::copy(v.join(&wrap), v.join("wrap-backup.age")).unwrap();
    let o = run_code(
        env.destroy(&v, &id)
            .arg("--early")
            .arg("--reason")
            .arg("case closed"),
        4,
    );
    assert!(stderr(&o).contains("wrap-backup.age"), "{}", show(&o));
    assert!(
        !v.join("destroy/certificate.json").exists(),
        "a certificate was issued although an age file remains"
    );
    assert_ne!(status(&v)["state"], "destroyed");
    // Once the stray file is gone, the same command completes.
    fs::remove_file(v.join("wrap-backup.age")).unwrap();
    run_ok(
        env.destroy(&v, &id)
            .arg("--early")
            .arg("--reason")
            .arg("case closed"),
    );
    run_ok(&mut cert_verify(&v));
    assert_certificate_lists_manifest_once(&v);
    let acts = actions(&v);
    assert_eq!(
        acts.iter().filter(|a| *a == "destroy").count(),
        1,
        "{acts:?}"
    );
}
