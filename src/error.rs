//! Errors and exit codes.
//!
//! Every error carries a message that names *where* (a file, a line, a shard)
//! and never *what* a record contains: no record values, no member ids, no
//! document numbers, no original file names of leaked images.

use std::fmt;
use std::path::Path;

/// Process exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success; for lookup: at least one record found; for verify: passed.
    Ok = 0,
    /// lookup/match: nothing found. Not an error.
    NotFound = 1,
    /// Command-line usage error (clap also exits 2).
    Usage = 2,
    /// The input set (records.jsonl or its files) is invalid.
    Input = 3,
    /// Integrity failure: a signature, hash, proof or decryption check failed.
    Integrity = 4,
    /// Key problem: wrong identity, unreadable or unsafe key file.
    Key = 5,
    /// The vault is in the wrong state: missing, incomplete, already exists.
    VaultState = 6,
    /// Operating-system I/O failure (disk full, permission denied, ...).
    Io = 7,
    /// Refused to overwrite or otherwise act unsafely.
    Refused = 8,
    /// A bug: an invariant of kakuri itself failed.
    Internal = 9,
}

/// The one error type of the library.
#[derive(Debug)]
pub struct Error {
    pub kind: ExitCode,
    pub msg: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ExitCode, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
        }
    }
    pub fn input(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::Input, msg)
    }
    pub fn integrity(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::Integrity, msg)
    }
    pub fn key(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::Key, msg)
    }
    pub fn state(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::VaultState, msg)
    }
    pub fn refused(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::Refused, msg)
    }
    pub fn usage(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ExitCode::Internal, msg)
    }
    /// An I/O error on a path the operator chose or kakuri owns (vault
    /// files, key files). Never use this with a leaked record's file name.
    pub fn io(path: &Path, what: &str, e: std::io::Error) -> Self {
        Self::new(
            ExitCode::Io,
            format!("{what} {}: {}", path.display(), io_reason(&e)),
        )
    }
    /// An I/O error with a context string only.
    pub fn io_ctx(ctx: impl fmt::Display, e: std::io::Error) -> Self {
        Self::new(ExitCode::Io, format!("{ctx}: {}", io_reason(&e)))
    }
    /// Prefix the message with more context.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }
}

/// A short reason for an I/O error, naming disk-full plainly.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(28) => "no space left on device".into(),
        Some(27) => "file too large (size limit reached)".into(),
        _ => e.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}
