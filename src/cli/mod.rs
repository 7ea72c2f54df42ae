//! Command-line pieces shared by `kakuri` and `kakuri-lookup` (the same
//! lookup in a binary that holds only the read path): the arguments every
//! read of record data takes, the audit entry a command appends, and the
//! lookup command itself. Included by both binaries; it parses, calls the
//! library and prints, like the rest of the command line.

pub mod lookup;

use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

use clap::Args;
use kakuri::error::{Error, Result};
use kakuri::lookup::{Opened, Prefetched};

#[derive(Args)]
pub struct Trust {
    /// Require the manifest to be signed by this public key (.pub or allowed_signers line).
    #[arg(long, value_name = "PUBKEY")]
    pub signer: Option<PathBuf>,
}

impl Trust {
    pub fn key(&self) -> Result<Option<ssh_key::PublicKey>> {
        self.signer
            .as_deref()
            .map(kakuri::keys::load_public_key)
            .transpose()
    }
}

#[derive(Args)]
pub struct Access {
    /// Custodian identity file(s): age-keygen or OpenSSH ed25519.
    #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
    pub identities: Vec<PathBuf>,
    /// Case this read belongs to.
    #[arg(long, value_name = "ID", required = true)]
    pub case: String,
    /// Why the data is read.
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
    /// Operator's OpenSSH ed25519 key that signs the audit entry.
    #[arg(long, value_name = "KEY", env = "KAKURI_SIGN_KEY", required = true)]
    pub sign_key: PathBuf,
    #[command(flatten)]
    pub trust: Trust,
}

impl Access {
    pub fn check(&self) -> Result<()> {
        if self.case.trim().is_empty() || self.reason.trim().is_empty() {
            return Err(Error::usage("--case and --reason must not be empty"));
        }
        Ok(())
    }

    /// Opens the vault for one lookup, with the reads it makes queued
    /// ahead (see [`Opened::open_for_lookup`]).
    pub fn open_for_lookup(&self, vault: &std::path::Path) -> Result<(Opened, Prefetched)> {
        self.check()?;
        Opened::open_for_lookup(
            vault,
            &self.identities,
            std::slice::from_ref(&self.sign_key),
            self.trust.key()?.as_ref(),
        )
    }
}

/// Appends one signed audit entry; a read that cannot be recorded is refused.
#[allow(clippy::too_many_arguments)]
pub fn record(
    root: &std::path::Path,
    vault_id: &str,
    sign_key: &std::path::Path,
    operator: &str,
    action: &str,
    case: Option<&str>,
    reason: Option<&str>,
    result: serde_json::Value,
    queries: Vec<String>,
) -> Result<kakuri::audit::Entry> {
    let key = kakuri::keys::load_signing_key(sign_key)?;
    kakuri::audit::append(
        root,
        vault_id,
        &key,
        kakuri::audit::Event {
            action,
            operator,
            case,
            reason,
            result,
            queries,
        },
    )
    .map_err(|e| e.context("cannot record this command in the audit log; nothing is shown"))
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

pub fn warn_retention(days_left: i64) {
    if days_left < 0 {
        eprintln!("kakuri: warning: the retention date passed {} days ago; this vault should be destroyed", -days_left);
    }
}

/// What every command does before parsing its arguments.
pub fn init_process() {
    // Die quietly on a closed pipe (`kakuri audit VAULT | head`), as
    // command-line tools do, instead of panicking on the next print.
    // SAFETY: restoring the default disposition of SIGPIPE before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // A file-size limit (RLIMIT_FSIZE) then fails the write with EFBIG,
        // reported and cleaned up like a full disk, instead of killing us.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// The process exit status of a command's result; an error is printed as
/// one line on standard error.
pub fn exit(r: Result<kakuri::error::ExitCode>) -> ProcessExit {
    match r {
        Ok(c) => ProcessExit::from(c as u8),
        Err(e) => {
            eprintln!("kakuri: error: {}", e.msg);
            ProcessExit::from(e.kind as u8)
        }
    }
}
