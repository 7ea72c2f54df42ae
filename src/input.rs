//! The input set as incident response hands it over: a directory with
//! `records.jsonl` and the files it names, or (without `records.jsonl`) a
//! directory whose every regular file is a record.
//!
//! Errors name the line (or the entry number in directory mode) and the
//! problem, never a value from the line: record ids, names and file names
//! of leaked images are personal data.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::record::{normalize_document_number, normalize_member_id, scalar_text, Fields};

pub const RECORDS_JSONL: &str = "records.jsonl";
/// Longest accepted records.jsonl line.
pub const MAX_LINE: u64 = 1 << 20;

/// Reads one line (with its newline) into `buf`, never holding more than
/// [`MAX_LINE`] bytes of it; `Ok(false)` at the end. `place` names the
/// line in errors (e.g. "records.jsonl line 7").
pub fn read_bounded_line(r: &mut impl BufRead, buf: &mut Vec<u8>, place: &str) -> Result<bool> {
    buf.clear();
    let n = r
        .take(MAX_LINE + 1)
        .read_until(b'\n', buf)
        .map_err(|e| Error::io_ctx(place, e))?;
    if buf.len() as u64 > MAX_LINE {
        return Err(Error::input(format!(
            "{place}: longer than {MAX_LINE} bytes"
        )));
    }
    Ok(n > 0)
}

/// The input directory, held open so that image files are opened beneath
/// it: with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (Linux 5.6+),
/// no path component can be a symbolic link or lead out of it, even one
/// swapped in after [`InputReader`] checked the path. Where the kernel
/// lacks `openat2` (or a sandbox forbids it) the path is opened as before
/// with `O_NOFOLLOW`, which guards only its last component.
pub struct InputDir {
    dir: fs::File,
    path: PathBuf,
}

/// `openat2` is tried until the kernel says it does not have it.
static OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

impl InputDir {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(InputDir {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Opens an image for reading: never through a symlink, never outside
    /// the input directory, never blocking (a FIFO opens but the caller
    /// refuses anything that is not a regular file).
    pub fn open_image(&self, rel: &str) -> std::io::Result<fs::File> {
        use std::sync::atomic::Ordering;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        if OPENAT2.load(Ordering::Relaxed) {
            match self.openat2(rel, flags) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    OPENAT2.store(false, Ordering::Relaxed);
                }
                r => return r,
            }
        }
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.path.join(rel))
    }

    fn openat2(&self, rel: &str, flags: libc::c_int) -> std::io::Result<fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let c = std::ffi::CString::new(rel)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: open_how is plain data; zeroed is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        how.resolve =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: valid directory descriptor, NUL-terminated path, and a
        // struct of the size passed; the kernel writes nothing back.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us alone.
        Ok(unsafe { fs::File::from_raw_fd(fd as libc::c_int) })
    }
}

/// Whether an error from [`InputDir::open_image`] means the path now goes
/// through a symlink or out of the input directory.
pub fn is_escape(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EXDEV))
}

/// Walks `dir` depth-first without following symlinks, each directory's
/// entries in byte order of their names: the one order in which kakuri
/// numbers files (directory-mode input, `match --dir`).
pub fn walk_sorted(dir: &Path) -> walkdir::IntoIter {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        })
        .into_iter()
}

/// Where an input record came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// 1-based line of records.jsonl.
    Line(u64),
    /// 1-based file number in directory mode.
    File(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Line(n) => write!(f, "{RECORDS_JSONL} line {n}"),
            Place::File(n) => write!(
                f,
                "input file #{n} (counting files depth-first, each directory's entries in byte order of their names)"
            ),
        }
    }
}

/// One record to seal, before its image is read.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub ordinal: u64,
    /// Where it came from, for messages: "records.jsonl line 12" or "input file #12".
    pub place: Place,
    pub record_id: String,
    pub image_rel: String,
    pub image_size: u64,
    /// The records.jsonl line verbatim (a synthesized object in directory mode).
    pub source: Box<RawValue>,
    pub fields: Fields,
}

enum Mode {
    Jsonl {
        reader: BufReader<fs::File>,
        line_no: u64,
    },
    Dir {
        walker: walkdir::IntoIter,
        entry_no: u64,
    },
}

/// Streams the input's records in order, validating each.
pub struct InputReader {
    root: PathBuf,
    mode: Mode,
    ordinal: u64,
    /// 64-bit fingerprints of the record ids seen so far (8 bytes each,
    /// about 19 MiB at 1.7 M records); a hit is confirmed by re-reading
    /// records.jsonl, so a fingerprint collision never rejects good input.
    seen: HashSet<u64>,
    jsonl_path: Option<PathBuf>,
    last_parent: Option<PathBuf>,
}

impl InputReader {
    pub fn open(dir: &Path) -> Result<Self> {
        let md = fs::metadata(dir).map_err(|e| Error::io(dir, "cannot read input", e))?;
        if !md.is_dir() {
            return Err(Error::input(format!(
                "{}: input must be a directory",
                dir.display()
            )));
        }
        let root = dir
            .canonicalize()
            .map_err(|e| Error::io(dir, "cannot resolve input", e))?;
        let jl = root.join(RECORDS_JSONL);
        let mut is_jsonl = false;
        let mode = match fs::symlink_metadata(&jl) {
            Ok(m) if m.is_file() => {
                is_jsonl = true;
                Mode::Jsonl {
                    reader: BufReader::with_capacity(
                        1 << 16,
                        fs::File::open(&jl).map_err(|e| Error::io(&jl, "cannot open", e))?,
                    ),
                    line_no: 0,
                }
            }
            Ok(_) => {
                return Err(Error::input(format!(
                    "{}: not a regular file",
                    jl.display()
                )))
            }
            Err(_) => Mode::Dir {
                walker: walk_sorted(&root),
                entry_no: 0,
            },
        };
        Ok(InputReader {
            root,
            mode,
            ordinal: 0,
            seen: HashSet::new(),
            jsonl_path: Some(jl).filter(|_| is_jsonl),
            last_parent: None,
        })
    }

    /// The input directory, resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Next record, `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<InputRecord>> {
        let rec = match &mut self.mode {
            Mode::Jsonl { reader, line_no } => loop {
                let mut buf = Vec::new();
                *line_no += 1;
                if !read_bounded_line(reader, &mut buf, &format!("{RECORDS_JSONL} line {line_no}"))?
                {
                    return Ok(None);
                }
                if buf.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                break parse_line(&buf, Place::Line(*line_no))?;
            },
            Mode::Dir { walker, entry_no } => loop {
                let Some(ent) = walker.next() else {
                    return Ok(None);
                };
                let ent = ent.map_err(|e| {
                    Error::input(format!(
                        "input directory: cannot walk ({})",
                        e.io_error()
                            .map(crate::error::io_reason)
                            .unwrap_or_else(|| "loop".into())
                    ))
                })?;
                if ent.depth() == 0 {
                    continue;
                }
                let ft = ent.file_type();
                if ft.is_dir() {
                    continue;
                }
                *entry_no += 1;
                let place_id = Place::File(*entry_no);
                let place = place_id.to_string();
                if ft.is_symlink() {
                    return Err(Error::input(format!(
                        "{place}: is a symbolic link; symlinks are refused"
                    )));
                }
                if !ft.is_file() {
                    return Err(Error::input(format!(
                        "{place}: not a regular file (device, FIFO or socket)"
                    )));
                }
                let rel = ent
                    .path()
                    .strip_prefix(&self.root)
                    .map_err(|_| Error::internal("walk left the input directory"))?;
                let rel = rel
                    .to_str()
                    .ok_or_else(|| Error::input(format!("{place}: file name is not valid UTF-8")))?
                    .to_string();
                let obj = serde_json::json!({ "record_id": rel, "image": rel });
                let raw = RawValue::from_string(obj.to_string()).expect("valid json");
                break Parsed {
                    record_id: rel.clone(),
                    image_rel: rel,
                    source: raw,
                    fields: Fields::default(),
                    place,
                    place_id,
                };
            },
        };
        // Directory mode: ids are distinct paths by construction.
        if let Some(jl) = &self.jsonl_path {
            let fp = u64::from_le_bytes(
                blake3::hash(rec.record_id.as_bytes()).as_bytes()[..8]
                    .try_into()
                    .unwrap(),
            );
            if !self.seen.insert(fp) {
                if let Some(first) = earlier_line_with_id(jl, &rec.record_id, self.line_no())? {
                    return Err(Error::input(format!(
                        "{}: duplicate record_id (first used at {RECORDS_JSONL} line {first})",
                        rec.place
                    )));
                }
            }
        }
        let (_, image_size) = self.check_image(&rec.image_rel, &rec.place)?;
        let ordinal = self.ordinal;
        self.ordinal += 1;
        Ok(Some(InputRecord {
            ordinal,
            place: rec.place_id,
            record_id: rec.record_id,
            image_rel: rec.image_rel,
            image_size,
            source: rec.source,
            fields: rec.fields,
        }))
    }

    /// The image path must stay inside the input directory, contain no
    /// symlink, and name a regular file.
    fn check_image(&mut self, rel: &str, place: &str) -> Result<(PathBuf, u64)> {
        let p = Path::new(rel);
        if rel.is_empty() {
            return Err(Error::input(format!("{place}: \"image\" is empty")));
        }
        if rel.contains('\0') {
            return Err(Error::input(format!(
                "{place}: \"image\" contains a NUL byte"
            )));
        }
        for c in p.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(Error::input(format!("{place}: \"image\" contains `..`; paths must stay inside the input directory")))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(Error::input(format!("{place}: \"image\" is an absolute path; it must be relative to the input directory")))
                }
            }
        }
        let full = self.root.join(p);
        let md = fs::symlink_metadata(&full).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::input(format!("{place}: image file not found"))
            } else {
                Error::input(format!(
                    "{place}: image file cannot be read ({})",
                    crate::error::io_reason(&e)
                ))
            }
        })?;
        if md.file_type().is_symlink() {
            return Err(Error::input(format!(
                "{place}: image is a symbolic link; symlinks are refused"
            )));
        }
        if !md.is_file() {
            return Err(Error::input(format!(
                "{place}: image is not a regular file (directory, device, FIFO or socket)"
            )));
        }
        let parent = full.parent().map(Path::to_path_buf);
        if parent != self.last_parent {
            let canon = parent
                .as_deref()
                .map(fs::canonicalize)
                .transpose()
                .map_err(|e| {
                    Error::input(format!(
                        "{place}: image directory cannot be resolved ({})",
                        crate::error::io_reason(&e)
                    ))
                })?;
            if canon != parent {
                return Err(Error::input(format!(
                    "{place}: image path goes through a symbolic link; symlinks are refused"
                )));
            }
            self.last_parent = parent;
        }
        Ok((full, md.len()))
    }
}

impl InputReader {
    fn line_no(&self) -> u64 {
        match &self.mode {
            Mode::Jsonl { line_no, .. } => *line_no,
            Mode::Dir { .. } => 0,
        }
    }
}

/// The first line before `before` whose record_id is `id`, if any.
fn earlier_line_with_id(jl: &Path, id: &str, before: u64) -> Result<Option<u64>> {
    let f = fs::File::open(jl).map_err(|e| Error::io(jl, "cannot re-read", e))?;
    let mut r = BufReader::new(f);
    let mut buf = Vec::new();
    for line in 1..before {
        buf.clear();
        if r.read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(jl, "cannot re-read", e))?
            == 0
        {
            break;
        }
        #[derive(serde::Deserialize)]
        struct Id {
            record_id: serde_json::Value,
        }
        if let Ok(v) = serde_json::from_slice::<Id>(&buf) {
            if scalar_text(Some(&v.record_id)).ok().flatten().as_deref() == Some(id) {
                return Ok(Some(line));
            }
        }
    }
    Ok(None)
}

struct Parsed {
    place_id: Place,
    record_id: String,
    image_rel: String,
    source: Box<RawValue>,
    fields: Fields,
    place: String,
}

fn parse_line(buf: &[u8], place_id: Place) -> Result<Parsed> {
    let place = place_id.to_string();
    let text = std::str::from_utf8(buf).map_err(|e| {
        Error::input(format!(
            "{place}: not valid UTF-8 (byte {})",
            e.valid_up_to() + 1
        ))
    })?;
    let text = text.trim_end_matches(['\n', '\r']);
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::input(format!("{place}: not valid JSON (column {})", e.column())))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::input(format!("{place}: not a JSON object")))?;
    let field = |k: &str| {
        scalar_text(obj.get(k)).map_err(|why| Error::input(format!("{place}: \"{k}\" {why}")))
    };
    let record_id = field("record_id")?
        .ok_or_else(|| Error::input(format!("{place}: \"record_id\" is missing")))?;
    if record_id.is_empty() {
        return Err(Error::input(format!("{place}: \"record_id\" is empty")));
    }
    let image = match obj.get("image") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::input(format!("{place}: \"image\" must be a string"))),
        None => return Err(Error::input(format!("{place}: \"image\" is missing"))),
    };
    let doc_type = match obj.get("doc_type") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Error::input(format!(
                "{place}: \"doc_type\" must be a string"
            )))
        }
    };
    let fields = Fields {
        member_id: field("member_id")?
            .map(|s| normalize_member_id(&s))
            .filter(|s| !s.is_empty()),
        document_number: field("document_number")?
            .map(|s| normalize_document_number(&s))
            .filter(|s| !s.is_empty()),
        doc_type,
    };
    let source = RawValue::from_string(text.to_string())
        .map_err(|e| Error::input(format!("{place}: not valid JSON (column {})", e.column())))?;
    Ok(Parsed {
        place_id,
        record_id,
        image_rel: image,
        source,
        fields,
        place,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn images_open_beneath_the_input_directory_and_never_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("in");
        fs::create_dir_all(root.join("a")).unwrap();
        fs::write(root.join("a/img.jpg"), b"jpeg").unwrap();
        fs::write(t.path().join("outside.jpg"), b"secret").unwrap();
        // A directory swapped for a symlink after the input was checked,
        // one leading outside, and a symlinked file.
        symlink(root.join("a"), root.join("b")).unwrap();
        symlink(t.path(), root.join("up")).unwrap();
        symlink(t.path().join("outside.jpg"), root.join("a/link.jpg")).unwrap();
        let dir = InputDir::open(&root).unwrap();
        let mut f = dir.open_image("a/img.jpg").unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"jpeg");
        let e = dir.open_image("a/link.jpg").unwrap_err();
        assert!(is_escape(&e), "{e}");
        // A symlinked directory component, or `..`: refused where openat2
        // exists (Linux 5.6+); O_NOFOLLOW alone guards only the last
        // component, and the input check refuses `..` before this.
        let rs = ["b/img.jpg", "up/outside.jpg", "../outside.jpg"].map(|p| dir.open_image(p));
        if OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
            for r in rs {
                assert!(is_escape(&r.unwrap_err()));
            }
        } else {
            eprintln!("openat2 unavailable here: directory symlinks rely on the input check");
        }
        assert!(
            dir.open_image("a/missing.jpg").unwrap_err().kind() == std::io::ErrorKind::NotFound
        );
    }
}
