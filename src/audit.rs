//! The audit log: append-only, hash-chained, every entry signed.
//!
//! `audit/log.jsonl` holds one line per command that touched the vault:
//! `ENTRY_JSON <TAB> SIGNATURE_BASE64 <LF>`. `ENTRY_JSON` is compact JSON
//! whose `prev` is the BLAKE3 of the previous line's `ENTRY_JSON` bytes
//! (64 zeros for the first); `SIGNATURE_BASE64` is the base64 of the
//! armored SSHSIG (namespace [`NAMESPACE`]) by the operator's key over
//! `ENTRY_JSON`. `audit/head.json` (+ `.sig`) names the last entry's
//! sequence number and hash, so truncating the log is detected too.
//!
//! No personal data is ever written here: queries appear only as keyed
//! BLAKE3 hashes (key derived from the vault key, so they cannot be tested
//! without it — and after destroy, not at all), records only by position.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use ssh_key::{PrivateKey, PublicKey};

use crate::error::{Error, Result};
use crate::manifest;
use crate::vault;

pub const NAMESPACE: &str = "kakuri-audit@v1";
pub const DIR: &str = "audit";
pub const LOG: &str = "audit/log.jsonl";
pub const HEAD: &str = "audit/head.json";
pub const HEAD_SIG: &str = "audit/head.json.sig";
pub const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    pub vault_id: String,
    pub prev: String,
    pub action: String,
    pub operator: String,
    /// OpenSSH public key of the signer.
    pub signer: String,
    #[serde(default)]
    pub case: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Counts and outcomes; never record content.
    pub result: serde_json::Value,
    /// Keyed hashes of the queries (field:hex).
    #[serde(default)]
    pub queries: Vec<String>,
    pub tool: String,
}

/// What a command wants recorded.
pub struct Event<'a> {
    pub action: &'a str,
    pub operator: &'a str,
    pub case: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub result: serde_json::Value,
    pub queries: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Head {
    vault_id: String,
    seq: u64,
    hash: String,
    time: String,
}

/// The operator's name from `$USER` (or, if that is unset, `$LOGNAME`),
/// if not empty: what [`default_operator`] tries first, without touching
/// a file.
pub fn operator_from_env() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
}

/// The operator name: `--operator`, else the OS user.
pub fn default_operator() -> String {
    if let Some(u) = operator_from_env() {
        return u;
    }
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let from_passwd = uid.and_then(|uid| {
        fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
    });
    from_passwd.unwrap_or_else(|| {
        uid.map(|u| format!("uid {u}"))
            .unwrap_or_else(|| "unknown".into())
    })
}

/// Keyed hash of one query value for the log.
pub fn query_hash(
    key: &crate::crypt::VaultKey,
    field: crate::record::Field,
    value: &[u8],
) -> String {
    let k = key.derive("kakuri 2026-11 audit query v1");
    let mut h = blake3::Hasher::new_keyed(&k);
    h.update(&[field as u8]);
    h.update(&(value.len() as u64).to_le_bytes());
    h.update(value);
    format!("{}:{}", field.name(), &h.finalize().to_hex()[..32])
}

/// Appends one signed entry and moves the signed head. Takes an exclusive
/// lock on the log so concurrent commands chain correctly.
pub fn append(vault_root: &Path, vault_id: &str, key: &PrivateKey, ev: Event<'_>) -> Result<Entry> {
    let dir = vault_root.join(DIR);
    if !dir.exists() {
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, "cannot create", e))?;
    }
    let lp = vault_root.join(LOG);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&lp)
        .map_err(|e| Error::io(&lp, "cannot open audit log", e))?;
    f.lock()
        .map_err(|e| Error::io(&lp, "cannot lock audit log", e))?;
    // The chain continues from the last line actually in the log; a log
    // that does not match its signed head is refused (audit verify names why).
    let (seq, prev) = match last_entry(vault_root)? {
        None => (0, ZERO.to_string()),
        Some((e, h)) => (e.seq + 1, h),
    };
    check_head_matches(vault_root, seq, &prev)?;
    let entry = Entry {
        seq,
        time: vault::now_rfc3339(),
        vault_id: vault_id.to_string(),
        prev,
        action: ev.action.into(),
        operator: ev.operator.into(),
        signer: key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::internal(format!("public key: {e}")))?,
        case: ev.case.map(str::to_string),
        reason: ev.reason.map(str::to_string),
        result: ev.result,
        queries: ev.queries,
        tool: format!("kakuri {}", env!("CARGO_PKG_VERSION")),
    };
    let json = serde_json::to_vec(&entry).expect("entry serializes");
    let sig = manifest::sign_ns(&json, key, NAMESPACE)?;
    let mut line = json.clone();
    line.push(b'\t');
    line.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(sig.as_bytes())
            .as_bytes(),
    );
    line.push(b'\n');
    f.write_all(&line)
        .map_err(|e| Error::io(&lp, "cannot append to audit log", e))?;
    let head = Head {
        vault_id: vault_id.into(),
        seq,
        hash: blake3::hash(&json).to_hex().to_string(),
        time: entry.time.clone(),
    };
    let hb = serde_json::to_vec_pretty(&head).expect("head serializes");
    let hs = manifest::sign_ns(&hb, key, NAMESPACE)?;
    // Four syncs instead of five (one directory sync, not one per head
    // file), and no new kind of crash state:
    // 1. the entry and both new head files are written (the head files
    //    under temporary names) and each is synced: nothing names the
    //    entry yet, so a crash here leaves the log one entry ahead of its
    //    head, which `audit verify` names, as a crash right after the
    //    append always did;
    // 2. the two renames come only after those syncs, so whichever head
    //    file survives a crash is whole and never names an entry that is
    //    not on disk;
    // 3. one directory sync makes both renames durable. A crash before it
    //    leaves each head file old or new: both old is case 1, both new is
    //    done, and a mixed pair is a head whose signature does not verify,
    //    which `audit verify` names (a crash between the two renames of
    //    the previous code left the same kind of pair).
    let staged = |name: &str, bytes: &[u8]| -> Result<vault::AtomicFile> {
        let dest = vault_root.join(name);
        let mut w = vault::AtomicFile::replacing(&dest, 0o644)?;
        w.write_all(bytes)
            .map_err(|e| Error::io(&dest, "cannot write", e))?;
        Ok(w)
    };
    let sig = staged(HEAD_SIG, hs.as_bytes())?;
    let hd = staged(HEAD, &hb)?;
    // One after another: issued from three threads they took about as long
    // (0.31–0.44 ms against 0.39–0.41 ms, BENCHMARKS.md "Cold lookup").
    f.sync_all()
        .map_err(|e| Error::io(&lp, "cannot append to audit log", e))?;
    sig.sync()?;
    hd.sync()?;
    sig.rename()?;
    hd.rename()?;
    vault::fsync_dir(&dir)?;
    Ok(entry)
}

fn check_head_matches(vault_root: &Path, next_seq: u64, last_hash: &str) -> Result<()> {
    let hp = vault_root.join(HEAD);
    match fs::read(&hp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if next_seq == 0 {
                Ok(())
            } else {
                Err(Error::integrity(format!(
                    "{HEAD} is missing; run `kakuri audit verify`"
                )))
            }
        }
        Err(e) => Err(Error::io(&hp, "cannot read", e)),
        Ok(b) => {
            let h: Head = serde_json::from_slice(&b)
                .map_err(|_| Error::integrity(format!("{HEAD}: not valid")))?;
            if next_seq == 0 || h.seq.checked_add(1) != Some(next_seq) || h.hash != last_hash {
                return Err(Error::integrity(format!(
                    "{LOG} does not end where its signed head says (entry {}); it was truncated or edited — run `kakuri audit verify`",
                    h.seq
                )));
            }
            Ok(())
        }
    }
}

/// Bytes of the log's tail read first when looking for its last entry (an
/// entry is about 1 KiB); [`last_entry`] reads further back only if the
/// last line is longer.
const TAIL: u64 = 16 << 10;

/// The reads [`append`] makes (the head and the log's tail), as (path,
/// tail) for [`crate::crypt::prefetch_file`]: a command which records
/// itself at the end queues them first and finds them in memory.
pub fn prefetch_list(vault_root: &Path) -> Vec<(std::path::PathBuf, Option<u64>)> {
    vec![
        (vault_root.join(HEAD), None),
        (vault_root.join(LOG), Some(TAIL)),
    ]
}

/// The last entry and its hash, reading only the log's tail.
pub fn last_entry(vault_root: &Path) -> Result<Option<(Entry, String)>> {
    use std::io::{Read, Seek, SeekFrom};
    let lp = vault_root.join(LOG);
    let mut f = match fs::File::open(&lp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&lp, "cannot read", e)),
    };
    let len = f
        .metadata()
        .map_err(|e| Error::io(&lp, "cannot read", e))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // Read back from the end, doubling the window, until the window holds
    // the whole last line (a newline before it, or the start of the log).
    let mut want = TAIL;
    let mut tail = Vec::new();
    loop {
        let start = len.saturating_sub(want);
        f.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(&lp, "cannot read", e))?;
        tail.resize((len - start) as usize, 0);
        f.read_exact(&mut tail)
            .map_err(|e| Error::io(&lp, "cannot read", e))?;
        if tail.last() != Some(&b'\n') {
            return Err(Error::integrity(format!(
                "{LOG}: last line is incomplete (interrupted write or truncation)"
            )));
        }
        let body = &tail[..tail.len() - 1];
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                let (e, h, _) = parse_line(&body[i + 1..], 0)?;
                return Ok(Some((e, h)));
            }
            None if start == 0 => {
                let (e, h, _) = parse_line(body, 0)?;
                return Ok(Some((e, h)));
            }
            None => want = want.saturating_mul(2),
        }
    }
}

fn parse_line(line: &[u8], n: u64) -> Result<(Entry, String, String)> {
    let bad = |what: &str| Error::integrity(format!("{LOG} entry {n}: {what}"));
    let tab = line
        .iter()
        .position(|&b| b == b'\t')
        .ok_or_else(|| bad("no signature"))?;
    let json = &line[..tab];
    let e: Entry = serde_json::from_slice(json).map_err(|_| bad("not a valid entry"))?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&line[tab + 1..])
        .map_err(|_| bad("signature is not base64"))?;
    let sig = String::from_utf8(sig).map_err(|_| bad("signature is not text"))?;
    Ok((e, blake3::hash(json).to_hex().to_string(), sig))
}

/// Reads the whole log (for `audit` and `audit verify`).
pub fn read_all(vault_root: &Path) -> Result<Vec<Entry>> {
    let lp = vault_root.join(LOG);
    let f = match fs::File::open(&lp) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&lp, "cannot read", e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io(&lp, "cannot read", e))?;
        out.push(parse_line(&line, i as u64)?.0);
    }
    Ok(out)
}

#[derive(Serialize, Debug)]
pub struct AuditCheck {
    pub entries: u64,
    pub head_hash: String,
    pub ok: bool,
    /// The first broken entry and why, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub signers: Vec<String>,
}

/// Checks the chain, every signature, sequence numbers and the signed head.
/// `trusted`: if given, every entry must be signed by one of these keys.
pub fn verify(vault_root: &Path, vault_id: &str, trusted: &[PublicKey]) -> Result<AuditCheck> {
    use std::io::Read;
    let lp = vault_root.join(LOG);
    // A shared lock on the log for the whole check: an append holds it
    // exclusively until both head files are renamed into place, so the
    // check never reads the log, the head and its signature from
    // different moments of an append. Where the file system offers no
    // locks (some network mounts), no append can take one either, and the
    // check reads without it, as it did before it locked.
    let mut bytes = Vec::new();
    let _lock = match fs::File::open(&lp) {
        Ok(mut f) => {
            let _ = f.lock_shared();
            f.read_to_end(&mut bytes)
                .map_err(|e| Error::io(&lp, "cannot read", e))?;
            Some(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&lp, "cannot read", e)),
    };
    let mut check = AuditCheck {
        entries: 0,
        head_hash: ZERO.into(),
        ok: true,
        first_broken: None,
        problem: None,
        signers: Vec::new(),
    };
    let fail = |c: &mut AuditCheck, n: u64, why: String| {
        c.ok = false;
        c.first_broken = Some(n);
        c.problem = Some(why);
    };
    if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
        let n = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        fail(
            &mut check,
            n,
            "the last line is incomplete (truncated)".into(),
        );
        return Ok(check);
    }
    let mut prev = ZERO.to_string();
    for (i, line) in bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let n = i as u64;
        let (e, h, sig) = match parse_line(line, n) {
            Ok(x) => x,
            Err(err) => {
                fail(&mut check, n, err.msg);
                return Ok(check);
            }
        };
        let why = if e.seq != n {
            Some(format!(
                "sequence number {} where {n} was expected (entries deleted or reordered)",
                e.seq
            ))
        } else if n == 0 && e.action != "pack" {
            Some("the first entry is not the vault's pack entry".to_string())
        } else if e.prev != prev {
            Some("does not chain to the entry before it (an entry before it was edited, deleted or reordered)".to_string())
        } else if e.vault_id != vault_id {
            Some("belongs to another vault".to_string())
        } else {
            match PublicKey::from_openssh(&e.signer) {
                Err(_) => Some("signer is not an OpenSSH public key".to_string()),
                Ok(k) => {
                    let tab = line.iter().position(|&b| b == b'\t').unwrap_or(line.len());
                    if trusted.iter().all(|t| t.key_data() != k.key_data()) && !trusted.is_empty() {
                        Some(format!(
                            "signed by {}, which is not a trusted signer",
                            crate::keys::fingerprint(&k)
                        ))
                    } else if let Err(err) =
                        manifest::verify_sig(&line[..tab], &sig, &k, NAMESPACE, "entry")
                    {
                        Some(format!("signature does not verify ({})", err.msg))
                    } else {
                        let fp = crate::keys::fingerprint(&k);
                        if !check.signers.contains(&fp) {
                            check.signers.push(fp);
                        }
                        None
                    }
                }
            }
        };
        if let Some(w) = why {
            fail(&mut check, n, w);
            return Ok(check);
        }
        prev = h;
        check.entries += 1;
    }
    check.head_hash = prev.clone();
    // Every vault's log starts with its pack entry: an empty or missing log
    // was deleted (or pack was interrupted right after sealing).
    if check.entries == 0 {
        fail(
            &mut check,
            0,
            "the audit log is empty or missing; it should start with the vault's pack entry".into(),
        );
        return Ok(check);
    }
    // Nothing else belongs in audit/.
    if let Ok(rd) = fs::read_dir(vault_root.join(DIR)) {
        let mut extra: Vec<String> = rd
            .flatten()
            .map(|e| format!("{DIR}/{}", e.file_name().to_string_lossy()))
            .filter(|p| p != LOG && p != HEAD && p != HEAD_SIG)
            // Leftovers of an interrupted atomic write of the head.
            .filter(|p| {
                !(p.starts_with("audit/.head.json") && (p.ends_with(".tmp") || p.ends_with(".new")))
            })
            .collect();
        extra.sort();
        if let Some(x) = extra.first() {
            let n = check.entries;
            fail(
                &mut check,
                n,
                format!("{x}: a file that is not part of the audit log"),
            );
            return Ok(check);
        }
    }
    // The signed head must name the last entry.
    let count = check.entries;
    let hp = vault_root.join(HEAD);
    let sp = vault_root.join(HEAD_SIG);
    match (fs::read(&hp), fs::read_to_string(&sp)) {
        (Err(_), _) if count == 0 => {}
        (Ok(hb), Ok(sig)) => {
            let head: Option<Head> = serde_json::from_slice(&hb).ok();
            let signer_ok = bytes
                .split(|&b| b == b'\n')
                .rfind(|l| !l.is_empty())
                .and_then(|l| parse_line(l, 0).ok())
                .and_then(|(e, _, _)| PublicKey::from_openssh(&e.signer).ok())
                .map(|k| manifest::verify_sig(&hb, &sig, &k, NAMESPACE, HEAD).is_ok())
                .unwrap_or(false);
            match head {
                Some(h)
                    if signer_ok
                        && h.hash == prev
                        && h.seq.checked_add(1) == Some(count)
                        && h.vault_id == vault_id => {}
                Some(h) if signer_ok => fail(
                    &mut check,
                    count,
                    format!("the signed head names entry {} but the log ends at entry {} (entries after it were removed, or the head was replaced)", h.seq, count.saturating_sub(1)),
                ),
                _ => fail(&mut check, count, format!("{HEAD}: missing, invalid or not signed by the last entry's signer")),
            }
        }
        _ => fail(
            &mut check,
            count,
            format!("{HEAD} or its signature is missing"),
        ),
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_waits_for_an_append_in_progress() {
        let d = tempfile::tempdir().unwrap();
        let key = PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let event = Event {
            action: "pack",
            operator: "t",
            case: None,
            reason: None,
            result: serde_json::json!({}),
            queries: Vec::new(),
        };
        append(d.path(), "v", &key, event).unwrap();
        // An append holds this lock from before it reads the log's end
        // until its head files are in place.
        let held = fs::File::open(d.path().join(LOG)).unwrap();
        held.lock().unwrap();
        let root = d.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let check = std::thread::spawn(move || {
            let c = verify(&root, "v", &[]);
            tx.send(()).unwrap();
            c
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the check read the log while an append held it"
        );
        drop(held);
        let c = check.join().unwrap().unwrap();
        assert!(c.ok, "{c:?}");
    }
}
