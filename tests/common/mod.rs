//! Shared helpers for the integration tests: run the real `kakuri` binary,
//! make keys, build synthetic input sets, pack vaults, and tamper with files.
//!
//! Everything lives in a per-test `TempDir`, so tests are independent and
//! can run in parallel.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use kakuri::synth::{self, SynthSpec};
use serde_json::Value;
use tempfile::TempDir;

/// A retention date far in the future.
pub const RETAIN: &str = "2099-12-31";
/// Plaintext bytes of one age payload chunk.
pub const AGE_CHUNK: u64 = 64 * 1024;
/// Ciphertext bytes of one age payload chunk (plaintext + Poly1305 tag).
pub const AGE_CHUNK_CT: u64 = AGE_CHUNK + 16;
/// No single command of the suite should take anywhere near this long; a
/// hang (e.g. opening a FIFO) fails the test instead of blocking the run.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(180);

/// A binary of the package under test, with a timeout.
fn binary(name: &str) -> Command {
    let mut c = Command::cargo_bin(name).unwrap_or_else(|e| panic!("{name} is built: {e}"));
    c.timeout(CMD_TIMEOUT);
    c
}

/// The `kakuri` binary under test, with a timeout.
pub fn kakuri() -> Command {
    binary("kakuri")
}

/// The `kakuri-lookup` binary under test (`kakuri lookup` alone), with a timeout.
pub fn kakuri_lookup() -> Command {
    binary("kakuri-lookup")
}

/// Human-readable description of a finished command, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `cmd` and asserts its exit code.
pub fn run_code(cmd: &mut Command, code: i32) -> Output {
    let o = cmd.output().expect("command runs");
    assert_eq!(
        o.status.code(),
        Some(code),
        "unexpected exit code (wanted {code})\n{}",
        show(&o)
    );
    o
}

pub fn run_ok(cmd: &mut Command) -> Output {
    run_code(cmd, 0)
}

/// Parses a command's stdout as one JSON document.
pub fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", show(o)))
}

/// Creates a directory with mode 0700.
pub fn private_dir(p: &Path) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// `kakuri keygen --identity PATH`; returns the age recipient.
pub fn keygen_identity(path: &Path) -> String {
    let o = run_ok(
        kakuri()
            .arg("--json")
            .arg("keygen")
            .arg("--identity")
            .arg(path),
    );
    let v = json_of(&o);
    let r = v["recipient"].as_str().expect("recipient in keygen output");
    assert!(r.starts_with("age1"), "not an age recipient: {r}");
    r.to_string()
}

/// `kakuri keygen --signing-key PATH`; returns the public key line.
pub fn keygen_signing(path: &Path) -> String {
    let o = run_ok(
        kakuri()
            .arg("--json")
            .arg("keygen")
            .arg("--signing-key")
            .arg(path),
    );
    let v = json_of(&o);
    let k = v["signing_public_key"]
        .as_str()
        .expect("signing_public_key in keygen output");
    assert!(k.starts_with("ssh-ed25519 "), "not an ed25519 key: {k}");
    k.to_string()
}

/// One custodian identity, an operator signing key and a recipients file.
pub struct Keys {
    pub dir: PathBuf,
    pub identity: PathBuf,
    pub recipient: String,
    pub sign_key: PathBuf,
    pub sign_pub: PathBuf,
    pub recipients: PathBuf,
}

impl Keys {
    pub fn new(dir: &Path) -> Keys {
        private_dir(dir);
        let identity = dir.join("custodian.age");
        let recipient = keygen_identity(&identity);
        let sign_key = dir.join("operator");
        keygen_signing(&sign_key);
        let sign_pub = dir.join("operator.pub");
        assert!(sign_pub.is_file(), "keygen wrote no .pub file");
        let recipients = dir.join("recipients.txt");
        fs::write(
            &recipients,
            format!("# custodians of the test vault\n{recipient} alice\n"),
        )
        .unwrap();
        Keys {
            dir: dir.to_path_buf(),
            identity,
            recipient,
            sign_key,
            sign_pub,
            recipients,
        }
    }
}

/// One line of an input's records.jsonl.
#[derive(Debug, Clone)]
pub struct InputLine {
    /// Position among the non-blank lines: the record's ordinal.
    pub ordinal: u64,
    /// The line without its line ending.
    pub text: String,
    pub json: Value,
}

impl InputLine {
    /// `record_id` as kakuri reads it (strings, or integers as decimal).
    pub fn record_id(&self) -> String {
        match &self.json["record_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            v => panic!("unexpected record_id {v}"),
        }
    }
    pub fn image(&self) -> String {
        self.json["image"].as_str().expect("image").to_string()
    }
}

/// Reads DIR/records.jsonl.
pub fn input_lines(input: &Path) -> Vec<InputLine> {
    let text = fs::read_to_string(input.join("records.jsonl")).unwrap();
    text.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| InputLine {
            ordinal: i as u64,
            text: l.to_string(),
            json: serde_json::from_str(l).unwrap(),
        })
        .collect()
}

/// Appends one record to DIR/records.jsonl and writes its image.
pub fn add_record(input: &Path, line: &Value, image: &[u8]) {
    let rel = line["image"].as_str().expect("image path");
    let p = input.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, image).unwrap();
    append_line(input, &line.to_string());
}

/// Appends raw text plus "\n" to DIR/records.jsonl.
pub fn append_line(input: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(input.join("records.jsonl"))
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.write_all(b"\n").unwrap();
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Full-width variant of an ASCII string (U+FF01..U+FF5E).
pub fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            c => c,
        })
        .collect()
}

/// An input set, keys and (once packed) a vault, in one temp directory.
pub struct Fixture {
    pub tmp: TempDir,
    pub root: PathBuf,
    pub input: PathBuf,
    pub keys: Keys,
    pub vault: PathBuf,
    pub spec: SynthSpec,
}

impl Fixture {
    /// Keys plus an empty input directory.
    pub fn empty() -> Fixture {
        let tmp = scratch_dir();
        let root = tmp.path().to_path_buf();
        let input = root.join("input");
        fs::create_dir(&input).unwrap();
        let keys = Keys::new(&root.join("keys"));
        Fixture {
            vault: root.join("vault"),
            input,
            keys,
            root,
            tmp,
            spec: SynthSpec {
                count: 0,
                image_size: 0,
                seed: 0,
            },
        }
    }

    /// Keys plus a synthetic input set of `count` records.
    pub fn synth(count: u64, image_size: u64, seed: u64) -> Fixture {
        let mut f = Fixture::empty();
        f.spec = SynthSpec {
            count,
            image_size,
            seed,
        };
        let s = synth::generate(&f.input, &f.spec, &mut |_| {}).unwrap();
        assert_eq!(s.records, count);
        f
    }

    /// `kakuri pack` of this fixture's input into its vault path.
    pub fn pack_cmd(&self, extra: &[&str]) -> Command {
        let mut c = kakuri();
        c.args(self.pack_argv(&self.input, &self.keys.sign_key))
            .args(extra);
        c
    }

    /// `pack INPUT --recipients … --sign-key KEY --retain-until … --out VAULT`
    /// with this fixture's recipients and vault, for commands built by hand.
    pub fn pack_argv(&self, input: &Path, sign_key: &Path) -> Vec<OsString> {
        vec![
            "pack".into(),
            input.into(),
            "--recipients".into(),
            self.keys.recipients.clone().into(),
            "--sign-key".into(),
            sign_key.into(),
            "--retain-until".into(),
            RETAIN.into(),
            "--out".into(),
            self.vault.clone().into(),
        ]
    }

    /// Packs and returns pack's `--json` summary.
    pub fn pack(&self, extra: &[&str]) -> Value {
        let o = run_ok(self.pack_cmd(extra).arg("--json"));
        let v = json_of(&o);
        assert!(self.vault.join("manifest.json").is_file());
        v
    }

    pub fn packed(count: u64, image_size: u64, seed: u64, extra: &[&str]) -> Fixture {
        let f = Fixture::synth(count, image_size, seed);
        f.pack(extra);
        f
    }

    /// The synthetic record `i`.
    pub fn record(&self, i: u64) -> synth::SynthRecord {
        synth::record(&self.spec, i)
    }

    pub fn lines(&self) -> Vec<InputLine> {
        input_lines(&self.input)
    }

    /// `-i IDENTITY --case … --reason … --sign-key OPERATOR_KEY` (the
    /// operator key signs the audit entry every read appends).
    pub fn access(&self, identity: &Path) -> Vec<OsString> {
        vec![
            "-i".into(),
            identity.into(),
            "--case".into(),
            "CASE-TEST-1".into(),
            "--reason".into(),
            "integration test".into(),
            "--sign-key".into(),
            self.keys.sign_key.clone().into(),
        ]
    }

    /// `kakuri lookup VAULT <access> ARGS…` with the fixture's identity.
    pub fn lookup_cmd(&self, args: &[&str]) -> Command {
        let mut c = kakuri();
        c.arg("lookup")
            .arg(&self.vault)
            .args(self.access(&self.keys.identity))
            .args(args);
        c
    }

    /// `kakuri-lookup VAULT <access> ARGS…`: the same lookup from the
    /// lookup-only binary.
    pub fn lookup_only_cmd(&self, args: &[&str]) -> Command {
        let mut c = kakuri_lookup();
        c.arg(&self.vault)
            .args(self.access(&self.keys.identity))
            .args(args);
        c
    }

    /// `lookup --json`, asserting `code`; returns the parsed output.
    pub fn lookup_json(&self, args: &[&str], code: i32) -> Value {
        let o = run_code(self.lookup_cmd(args).arg("--json"), code);
        json_of(&o)
    }

    pub fn export_cmd(&self, record_id: &str, out: &Path) -> Command {
        let mut c = kakuri();
        c.arg("export")
            .arg(&self.vault)
            .args(self.access(&self.keys.identity))
            .arg("--record-id")
            .arg(record_id)
            .arg("--out")
            .arg(out);
        c
    }

    /// `kakuri match VAULT <access>` with the fixture's identity.
    pub fn match_cmd(&self) -> Command {
        let mut c = kakuri();
        c.arg("match")
            .arg(&self.vault)
            .args(self.access(&self.keys.identity));
        c
    }

    /// `kakuri match VAULT <access> --table TABLE --column COLUMN --field document_number`.
    pub fn match_table_cmd(&self, table: &Path, column: &str) -> Command {
        let mut c = self.match_cmd();
        c.arg("--table")
            .arg(table)
            .arg("--column")
            .arg(column)
            .arg("--field")
            .arg("document_number");
        c
    }

    pub fn verify_cmd(&self) -> Command {
        let mut c = kakuri();
        c.arg("verify").arg(&self.vault);
        c
    }

    pub fn deep_verify_cmd(&self) -> Command {
        let mut c = kakuri();
        c.arg("verify")
            .arg(&self.vault)
            .arg("--deep")
            .arg("-i")
            .arg(&self.keys.identity);
        c
    }

    pub fn manifest(&self) -> Value {
        serde_json::from_slice(&fs::read(self.vault.join("manifest.json")).unwrap()).unwrap()
    }

    /// The wrapped vault key of an any-one vault (`custody.wraps[0]`).
    pub fn vault_key_wrap(&self) -> String {
        let m = self.manifest();
        assert_eq!(m["custody"]["scheme"], "any-one", "{}", m["custody"]);
        let w = m["custody"]["wraps"].as_array().unwrap();
        assert_eq!(w.len(), 1, "{}", m["custody"]);
        let rel = w[0].as_str().unwrap().to_string();
        assert!(
            rel.starts_with("custody/") && rel.ends_with(".age"),
            "{rel}"
        );
        rel
    }

    /// The manifest's shard list: (file, first_ordinal, records).
    pub fn shards(&self) -> Vec<(String, u64, u64)> {
        self.manifest()["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["file"].as_str().unwrap().to_string(),
                    s["first_ordinal"].as_u64().unwrap(),
                    s["records"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// Names of the matches of query `q` (0-based) in `lookup --json` output.
pub fn matched_ids(v: &Value, q: usize) -> Vec<String> {
    v["results"][q]["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("no results[{q}].matches in {v}"))
        .iter()
        .map(|m| m["record_id"].as_str().unwrap().to_string())
        .collect()
}

/// Offset of the first payload byte of an age file: after the header's
/// "---" MAC line and the 16-byte stream nonce.
pub fn age_payload_start(bytes: &[u8]) -> usize {
    let pat = b"\n--- ";
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("age header end");
    let eol = at + 1 + bytes[at + 1..].iter().position(|&b| b == b'\n').unwrap();
    eol + 1 + 16
}

/// XORs one byte of a (possibly read-only) vault file.
pub fn flip_byte(path: &Path, offset: usize) {
    let mode = fs::metadata(path).unwrap().permissions().mode();
    chmod(path, 0o600);
    let mut b = fs::read(path).unwrap();
    assert!(offset < b.len(), "offset beyond {}", path.display());
    b[offset] ^= 0x01;
    fs::write(path, &b).unwrap();
    chmod(path, mode);
}

/// Where test data goes: $KAKURI_TEST_TMPDIR if set, else tmpfs
/// (/dev/shm) when it has at least 1 GiB free — kakuri fsyncs every file
/// it writes and creating tens of thousands of input files is slow on some
/// disks — else the system temp directory.
pub fn scratch_base() -> PathBuf {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(d) = std::env::var_os("KAKURI_TEST_TMPDIR") {
            return PathBuf::from(d);
        }
        let shm = Path::new("/dev/shm");
        let free_kib = std::process::Command::new("df")
            .args(["-Pk", "/dev/shm"])
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8(o.stdout).ok()?;
                text.lines()
                    .nth(1)?
                    .split_whitespace()
                    .nth(3)?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        if shm.is_dir() && free_kib >= 1 << 20 {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// A fresh temporary directory under [`scratch_base`].
pub fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("kakuri-it-")
        .tempdir_in(scratch_base())
        .unwrap()
}

/// The image file of an export directory (`image` or `image.EXT`).
pub fn exported_image(dir: &Path) -> PathBuf {
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n == "image" || n.starts_with("image."))
        .collect();
    assert_eq!(names.len(), 1, "one image file in {}", dir.display());
    dir.join(&names[0])
}

/// Relative paths of all regular files under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Whether the external tool `name` is on PATH. When it is not, prints a
/// skip reason and returns false, or panics if KAKURI_REQUIRE_TOOLS=1.
pub fn have_tool(name: &str) -> bool {
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

/// Runs an external program with `input` on stdin; returns its output.
pub fn pipe(program: &str, args: &[&std::ffi::OsStr], input: &[u8]) -> Output {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Runs an external program without stdin.
pub fn ext(program: &str, args: &[&std::ffi::OsStr]) -> Output {
    std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Recursively copies a directory (vault files are read-only; copies are
/// made owner-writable so tests can tamper with them).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
            chmod(&to, 0o600);
        }
    }
}

/// `kakuri receipt verify DIR`.
pub fn receipt_verify_cmd(dir: &Path) -> Command {
    let mut c = kakuri();
    c.arg("receipt").arg("verify").arg(dir);
    c
}

/// The staging directory an export into `out` is written in.
pub fn staging_of(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        ".{}.kakuri-partial",
        out.file_name().unwrap().to_string_lossy()
    ))
}
