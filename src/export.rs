//! `export`: write one record's exact bytes and a receipt into a new
//! directory. Names inside the directory are fixed by kakuri, never taken
//! from the vault or the input, so nothing can be written outside it.
//!
//! The directory appears whole or not at all. Every file is written and
//! synced inside a private staging directory next to the target,
//! `.<NAME>.kakuri-partial` (mode 0700, created fresh, locked with
//! `flock` while in use); the staging directory is synced and then renamed
//! to `NAME` in one `rename(2)`, and the parent directory is synced. When
//! `NAME` already exists as an empty directory the rename replaces it (the
//! kernel refuses to replace a directory that is not empty), so the
//! operator sees either the empty directory or the complete export. A
//! mount point cannot be replaced that way, and staging next to it would
//! put plaintext on another file system, so an empty mount point is
//! refused with a hint to name a new directory inside it.
//!
//! A process killed mid-export leaves only the staging directory, holding
//! some of the plaintext the operator asked for. The next export to the
//! same `--out` finds it, checks that it is one (a directory owned by this
//! user holding only names an export writes, and not locked by a running
//! export), unlinks it, says so on stderr, and goes on. `kakuri receipt
//! verify` refuses a staging directory and any directory without a
//! receipt or with a missing file.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::lookup::{Lookup, Query};
use crate::receipt::{Receipt, META_FILE, RECEIPT_FILE, RECEIPT_FORMAT};
use crate::vault;

/// Name suffix of the staging directory an export is written in.
pub const PARTIAL_SUFFIX: &str = ".kakuri-partial";

#[derive(Serialize, Debug)]
pub struct ExportReport {
    pub dir: String,
    pub ordinal: u64,
    pub record_hash: String,
    pub files: Vec<String>,
}

/// Where an export goes and where it is staged.
#[derive(Debug)]
struct Target {
    out: PathBuf,
    parent: PathBuf,
    staging: PathBuf,
}

/// The staging directory for `out`: `.<NAME>.kakuri-partial` next to it.
pub fn staging_dir(out: &Path) -> Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| {
        Error::usage(format!(
            "--out {}: name the directory to create (e.g. {}/evidence)",
            out.display(),
            out.display()
        ))
    })?;
    let mut s = OsString::from(".");
    s.push(name);
    s.push(PARTIAL_SUFFIX);
    Ok(out.with_file_name(s))
}

/// Checks `out` (absent, or an empty directory that is not a mount
/// point) and names its staging directory.
fn target(out: &Path) -> Result<Target> {
    let staging = staging_dir(out)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::symlink_metadata(out) {
        Ok(md) if md.is_dir() => {
            if fs::read_dir(out)
                .map_err(|e| Error::io(out, "cannot read", e))?
                .next()
                .is_some()
            {
                return Err(Error::refused(format!(
                    "{}: not empty; export refuses to overwrite",
                    out.display()
                )));
            }
            let pmd = fs::metadata(&parent).map_err(|e| Error::io(&parent, "cannot read", e))?;
            if pmd.dev() != md.dev() {
                return Err(Error::refused(format!(
                    "{}: a mount point; export writes a new directory, so name one inside it (e.g. {}/evidence)",
                    out.display(),
                    out.display()
                )));
            }
        }
        Ok(_) => {
            return Err(Error::refused(format!(
                "{}: exists and is not a directory",
                out.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(out, "cannot read", e)),
    }
    Ok(Target {
        out: out.to_path_buf(),
        parent,
        staging,
    })
}

/// Whether `name` is one an export writes.
fn export_file_name(name: &str) -> bool {
    matches!(
        name,
        META_FILE | RECEIPT_FILE | vault::MANIFEST | vault::MANIFEST_SIG | "image"
    ) || name
        .strip_prefix("image.")
        .is_some_and(|ext| crate::shard::image_ext(name).as_deref() == Some(ext))
}

/// Opens a directory and takes an exclusive, non-blocking lock on it (the
/// standard library's `File::try_lock`, as the audit log is locked);
/// `Ok(None)` when another process holds the lock.
fn lock_dir(dir: &Path) -> Result<Option<fs::File>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|e| Error::io(dir, "cannot open", e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(dir, "cannot lock", e)),
    }
}

/// Removes the staging directory a killed export left for `t.out`, after
/// checking that it is one. Returns whether there was one.
fn remove_leftover(t: &Target) -> Result<bool> {
    let st = &t.staging;
    let md = match fs::symlink_metadata(st) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(st, "cannot read", e)),
    };
    let not_ours = |why: &str| {
        Error::refused(format!(
            "{}: {why}; it is not an export's staging directory, so kakuri leaves it alone (move it away and export again)",
            st.display()
        ))
    };
    if !md.is_dir() {
        return Err(not_ours("not a directory"));
    }
    // SAFETY: geteuid has no preconditions.
    if md.uid() != unsafe { libc::geteuid() } {
        return Err(not_ours("owned by another user"));
    }
    let Some(lock) = lock_dir(st)? else {
        return Err(Error::refused(format!(
            "{}: another export into {} is running",
            st.display(),
            t.out.display()
        )));
    };
    let mut files = Vec::new();
    for e in fs::read_dir(st).map_err(|e| Error::io(st, "cannot read", e))? {
        let e = e.map_err(|e| Error::io(st, "cannot read", e))?;
        let regular = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        match e.file_name().to_str() {
            Some(n) if regular && export_file_name(n) => files.push(e.path()),
            _ => return Err(not_ours("it holds a file an export does not write")),
        }
    }
    for p in &files {
        fs::remove_file(p).map_err(|e| Error::io(p, "cannot remove", e))?;
    }
    fs::remove_dir(st).map_err(|e| Error::io(st, "cannot remove", e))?;
    drop(lock);
    vault::fsync_dir(&t.parent)?;
    Ok(true)
}

/// Writes `bytes` as a new file `name` in the staging directory and syncs
/// it. Errors name the file as it will be called in `out`.
fn stage_file(staging: &Path, out: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let p = staging.join(name);
    let shown = out.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .map_err(|e| Error::io(&shown, "cannot create", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&shown, "cannot write", e))?;
    crate::faults::point("export-file-written");
    Ok(())
}

/// Exports the record with `record_id` into `out` (which must not exist or
/// be an empty directory). `before_write` runs once the record is found
/// and verified (or found missing) and before anything is written: the
/// audit entry goes there, so an export that cannot be recorded writes
/// nothing.
///
/// Fault points (see [`crate::faults`]): `export-file-written` after each
/// of the five files is staged and synced, `export-before-rename` once the
/// staging directory is synced, `export-renamed` after the rename.
pub fn export(
    lk: &mut Lookup<'_>,
    record_id: &str,
    out: &Path,
    case: &str,
    before_write: impl FnOnce(Option<u64>) -> Result<()>,
) -> Result<Option<ExportReport>> {
    let t = target(out)?;
    if remove_leftover(&t)? {
        eprintln!(
            "kakuri: removed {}, the unfinished staging directory of an interrupted export (it held that export's plaintext)",
            t.staging.display()
        );
    }
    let found = lk.find(&Query::RecordId(record_id.to_string()))?;
    let Some(v) = found.into_iter().next() else {
        before_write(None)?;
        return Ok(None);
    };
    before_write(Some(v.ordinal))?;
    let o = lk.opened;
    let m = &o.loaded.manifest;
    let image_file = match v.image_entry.rsplit_once('.') {
        Some((_, ext)) if v.image_entry.ends_with(&format!("image.{ext}")) => {
            format!("image.{ext}")
        }
        _ => "image".to_string(),
    };
    let sig = fs::read(o.dir.path(vault::MANIFEST_SIG))
        .map_err(|e| Error::io(&o.dir.path(vault::MANIFEST_SIG), "cannot read", e))?;
    let meta = crate::record::parse_meta(&v.meta)?;
    let receipt = Receipt {
        format: RECEIPT_FORMAT.into(),
        vault_id: m.vault_id.clone(),
        ordinal: v.ordinal,
        tree_size: m.records,
        record_hash: hex::encode(v.record_hash),
        image_file: image_file.clone(),
        image_blake3: meta.image_blake3.clone(),
        proof: v.proof.iter().map(hex::encode).collect(),
        root: m.merkle.root.clone(),
        manifest_file: vault::MANIFEST.into(),
        manifest_blake3: blake3::hash(&o.loaded.bytes).to_hex().to_string(),
        signature_file: vault::MANIFEST_SIG.into(),
        signer: m.signer.clone(),
        signer_fingerprint: crate::keys::fingerprint(&o.loaded.signer),
        exported_at: vault::now_rfc3339(),
        case: case.to_string(),
    };
    let mut rb = serde_json::to_vec_pretty(&receipt).expect("receipt serializes");
    rb.push(b'\n');

    // `create` fails if the directory exists: a concurrent export into the
    // same --out (which then holds the lock) is never written into.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&t.staging)
        .map_err(|e| Error::io(&t.staging, "cannot create", e))?;
    // Removes the staging directory, and the plaintext in it, unless the
    // export was moved into place.
    let mut staged = vault::RemoveOnDrop {
        dir: &t.staging,
        armed: true,
    };
    let _lock = lock_dir(&t.staging)?.ok_or_else(|| {
        Error::refused(format!(
            "{}: another export into {} is running",
            t.staging.display(),
            out.display()
        ))
    })?;
    stage_file(&t.staging, out, META_FILE, &v.meta)?;
    stage_file(&t.staging, out, &image_file, &v.image)?;
    stage_file(&t.staging, out, vault::MANIFEST, &o.loaded.bytes)?;
    stage_file(&t.staging, out, vault::MANIFEST_SIG, &sig)?;
    stage_file(&t.staging, out, RECEIPT_FILE, &rb)?;
    vault::fsync_dir(&t.staging)?;
    crate::faults::point("export-before-rename");
    // Replaces `out` only if it is absent or an empty directory.
    fs::rename(&t.staging, out)
        .map_err(|e| Error::io(out, "cannot move the export into place", e))?;
    staged.armed = false;
    crate::faults::point("export-renamed");
    vault::fsync_dir(&t.parent)?;
    Ok(Some(ExportReport {
        dir: out.display().to_string(),
        ordinal: v.ordinal,
        record_hash: hex::encode(v.record_hash),
        files: vec![
            META_FILE.into(),
            image_file,
            vault::MANIFEST.into(),
            vault::MANIFEST_SIG.into(),
            RECEIPT_FILE.into(),
        ],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_dir_is_a_hidden_sibling() {
        assert_eq!(
            staging_dir(Path::new("/a/evidence")).unwrap(),
            Path::new("/a/.evidence.kakuri-partial")
        );
        assert_eq!(
            staging_dir(Path::new("evidence/")).unwrap(),
            Path::new(".evidence.kakuri-partial")
        );
        assert!(staging_dir(Path::new("/")).is_err());
        assert!(staging_dir(Path::new("a/..")).is_err());
    }

    #[test]
    fn only_names_an_export_writes_are_recognised() {
        for n in [
            "meta.json",
            "receipt.json",
            "manifest.json",
            "manifest.json.sig",
            "image",
            "image.jpg",
            "image.jpeg",
        ] {
            assert!(export_file_name(n), "{n}");
        }
        for n in [
            "notes.txt",
            "image.",
            "image.toolong",
            "image.a/b",
            ".x",
            "image.JPG",
        ] {
            assert!(!export_file_name(n), "{n}");
        }
    }

    #[test]
    fn a_foreign_directory_in_the_staging_place_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("ev");
        let t = target(&out).unwrap();
        fs::create_dir(&t.staging).unwrap();
        fs::write(t.staging.join("notes.txt"), b"mine").unwrap();
        let e = remove_leftover(&t).unwrap_err();
        assert_eq!(e.kind, crate::error::ExitCode::Refused);
        assert!(t.staging.join("notes.txt").exists());
        fs::remove_file(t.staging.join("notes.txt")).unwrap();
        fs::write(t.staging.join("meta.json"), b"{}").unwrap();
        fs::write(t.staging.join("image.png"), b"x").unwrap();
        assert!(remove_leftover(&t).unwrap());
        assert!(!t.staging.exists());
        assert!(!remove_leftover(&t).unwrap());
    }

    #[test]
    fn a_staging_directory_in_use_is_not_removed() {
        let d = tempfile::tempdir().unwrap();
        let t = target(&d.path().join("ev")).unwrap();
        fs::create_dir(&t.staging).unwrap();
        let held = lock_dir(&t.staging).unwrap().expect("lock");
        let e = remove_leftover(&t).unwrap_err();
        assert!(e.msg.contains("another export"), "{}", e.msg);
        drop(held);
        assert!(remove_leftover(&t).unwrap());
    }
}
