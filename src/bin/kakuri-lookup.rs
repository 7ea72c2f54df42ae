//! `kakuri-lookup`: `kakuri lookup` in a binary that holds only the read
//! path. A lookup is a short-lived process, and with the page cache cold
//! most of its time is the kernel reading the binary from disk before
//! `main` runs: this one is about half the size of `kakuri` (no pack,
//! verify, destroy or zstd compressor, and its arguments are read with
//! `lexopt` instead of `clap`). Same arguments, output, exit codes and
//! audit entry as `kakuri lookup`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

#[path = "../cli/mod.rs"]
mod cli;

use cli::lookup::{QueryArg, Request};
use cli::{Access, Trust};

/// The usage line, in the help and in usage errors.
macro_rules! usage {
    () => {
        "Usage: kakuri-lookup [OPTIONS] --identity <FILE> --case <ID> --reason <TEXT> --sign-key <KEY> <VAULT>"
    };
}

const USAGE: &str = usage!();

const HELP: &str = concat!(
    "Find records in a kakuri vault and print their verified metadata (kakuri lookup).\n\n",
    usage!(),
    "\n\n\
Arguments:
  <VAULT>  

Options:
      --json                      Machine-readable JSON on stdout
      --operator <NAME>           Operator name recorded in the audit log (default: the OS user)
  -i, --identity <FILE>           Custodian identity file(s): age-keygen or OpenSSH ed25519
      --case <ID>                 Case this read belongs to
      --reason <TEXT>             Why the data is read
      --sign-key <KEY>            Operator's OpenSSH ed25519 key that signs the audit entry [env: KAKURI_SIGN_KEY=]
      --signer <PUBKEY>           Require the manifest to be signed by this public key (.pub or allowed_signers line)
      --member-id <ID>            Records of this member id (each query may be given several times)
      --document-number <NUMBER>  Records with this document number (spaces, hyphens, full-width forms and case are folded)
      --record-id <ID>            The record with this record id
      --image <FILE>              An image file found elsewhere: match by its content hash
  -h, --help                      Print help
  -V, --version                   Print version
"
);

/// A parsed command line.
enum Parsed {
    Lookup {
        request: Request,
        json: bool,
        operator: Option<String>,
    },
    Help,
    Version,
}

/// Sets a single-valued option once, as `kakuri lookup` (clap) does.
fn once<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<(), String> {
    if slot.replace(v).is_some() {
        return Err(format!(
            "the argument '{name}' cannot be used multiple times"
        ));
    }
    Ok(())
}

/// The value of the option just read.
fn value(p: &mut lexopt::Parser) -> Result<OsString, String> {
    p.value().map_err(|e| e.to_string())
}

/// Parses `args` (without the program name). `sign_key_env` is
/// `KAKURI_SIGN_KEY`, used when `--sign-key` is not given.
fn parse(
    args: impl IntoIterator<Item = OsString>,
    sign_key_env: Option<OsString>,
) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let (mut vault, mut case, mut reason, mut sign_key) = (None, None, None, None);
    let (mut signer, mut operator, mut json) = (None, None, None);
    let mut identities = Vec::new();
    let mut queries = Vec::new();
    let text = |v: OsString| v.string().map_err(|e| e.to_string());
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Long("json") => once(&mut json, "--json", true)?,
            Long("operator") => once(&mut operator, "--operator <NAME>", text(value(&mut p)?)?)?,
            Short('i') | Long("identity") => identities.push(PathBuf::from(value(&mut p)?)),
            Long("case") => once(&mut case, "--case <ID>", text(value(&mut p)?)?)?,
            Long("reason") => once(&mut reason, "--reason <TEXT>", text(value(&mut p)?)?)?,
            Long("sign-key") => once(
                &mut sign_key,
                "--sign-key <KEY>",
                PathBuf::from(value(&mut p)?),
            )?,
            Long("signer") => once(
                &mut signer,
                "--signer <PUBKEY>",
                PathBuf::from(value(&mut p)?),
            )?,
            Long("member-id") => queries.push(QueryArg::MemberId(text(value(&mut p)?)?)),
            Long("document-number") => {
                queries.push(QueryArg::DocumentNumber(text(value(&mut p)?)?))
            }
            Long("record-id") => queries.push(QueryArg::RecordId(text(value(&mut p)?)?)),
            Long("image") => queries.push(QueryArg::Image(PathBuf::from(value(&mut p)?))),
            Value(v) if vault.is_none() => vault = Some(PathBuf::from(v)),
            Value(v) => {
                return Err(format!(
                    "unexpected argument '{}' found",
                    v.to_string_lossy()
                ))
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let sign_key = sign_key.or_else(|| sign_key_env.filter(|v| !v.is_empty()).map(PathBuf::from));
    let missing: Vec<&str> = [
        (identities.is_empty(), "--identity <FILE>"),
        (case.is_none(), "--case <ID>"),
        (reason.is_none(), "--reason <TEXT>"),
        (sign_key.is_none(), "--sign-key <KEY>"),
        (vault.is_none(), "<VAULT>"),
    ]
    .into_iter()
    .filter_map(|(m, name)| m.then_some(name))
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the following required arguments were not provided:\n  {}",
            missing.join("\n  ")
        ));
    }
    let (Some(vault), Some(case), Some(reason), Some(sign_key)) = (vault, case, reason, sign_key)
    else {
        unreachable!("checked above");
    };
    Ok(Parsed::Lookup {
        request: Request {
            vault,
            access: Access {
                identities,
                case,
                reason,
                sign_key,
                trust: Trust { signer },
            },
            queries,
        },
        json: json.unwrap_or(false),
        operator,
    })
}

fn main() -> ProcessExit {
    cli::init_process();
    let args = std::env::args_os().skip(1);
    match parse(args, std::env::var_os("KAKURI_SIGN_KEY")) {
        Ok(Parsed::Lookup {
            request,
            json,
            operator,
        }) => cli::exit(cli::lookup::run(request, json, operator)),
        Ok(Parsed::Help) => {
            print!("{HELP}");
            ProcessExit::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("kakuri-lookup {}", env!("CARGO_PKG_VERSION"));
            ProcessExit::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}\n\nFor more information, try '--help'.");
            ProcessExit::from(kakuri::error::ExitCode::Usage as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    const ACCESS: &[&str] = &[
        "-i",
        "id.key",
        "--case",
        "C",
        "--reason",
        "R",
        "--sign-key",
        "op",
    ];

    fn lookup(a: &[&str], env: Option<&str>) -> Result<(Request, bool, Option<String>), String> {
        match parse(args(a), env.map(OsString::from))? {
            Parsed::Lookup {
                request,
                json,
                operator,
            } => Ok((request, json, operator)),
            _ => Err("not a lookup".into()),
        }
    }

    #[test]
    fn queries_keep_command_line_order_and_every_option_is_read() {
        let mut a = vec!["vault", "--document-number", "TK 1", "--json"];
        a.extend_from_slice(ACCESS);
        a.extend_from_slice(&[
            "--member-id=M1",
            "--image",
            "x.jpg",
            "--record-id",
            "rec-1",
            "--identity",
            "second.key",
            "--signer",
            "op.pub",
            "--operator",
            "alice",
        ]);
        let (r, json, operator) = lookup(&a, None).unwrap();
        assert!(json);
        assert_eq!(operator.as_deref(), Some("alice"));
        assert_eq!(r.vault, PathBuf::from("vault"));
        assert_eq!(
            r.access.identities,
            vec![PathBuf::from("id.key"), PathBuf::from("second.key")]
        );
        assert_eq!(
            (r.access.case.as_str(), r.access.reason.as_str()),
            ("C", "R")
        );
        assert_eq!(r.access.sign_key, PathBuf::from("op"));
        assert_eq!(r.access.trust.signer, Some(PathBuf::from("op.pub")));
        let order: Vec<String> = r
            .queries
            .iter()
            .map(|q| match q {
                QueryArg::DocumentNumber(v) => format!("doc {v}"),
                QueryArg::MemberId(v) => format!("member {v}"),
                QueryArg::Image(p) => format!("image {}", p.display()),
                QueryArg::RecordId(v) => format!("record {v}"),
            })
            .collect();
        assert_eq!(
            order,
            ["doc TK 1", "member M1", "image x.jpg", "record rec-1"]
        );
    }

    #[test]
    fn sign_key_comes_from_the_environment_unless_given() {
        let a = [
            "v",
            "-i",
            "k",
            "--case",
            "C",
            "--reason",
            "R",
            "--record-id",
            "r",
        ];
        let (r, json, operator) = lookup(&a, Some("env.key")).unwrap();
        assert_eq!(r.access.sign_key, PathBuf::from("env.key"));
        assert!(!json && operator.is_none() && r.access.trust.signer.is_none());
        let mut given = a.to_vec();
        given.extend_from_slice(&["--sign-key", "flag.key"]);
        let (r, ..) = lookup(&given, Some("env.key")).unwrap();
        assert_eq!(r.access.sign_key, PathBuf::from("flag.key"));
        let e = lookup(&a, Some("")).err().unwrap();
        assert!(e.contains("not provided:\n  --sign-key <KEY>"), "{e}");
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let e = lookup(&["v"], None).err().unwrap();
        assert_eq!(
            e,
            "the following required arguments were not provided:\n  --identity <FILE>\n  --case <ID>\n  --reason <TEXT>\n  --sign-key <KEY>"
        );
        let mut a = ACCESS.to_vec();
        let e = lookup(&a, None).err().unwrap();
        assert!(e.ends_with("not provided:\n  <VAULT>"), "{e}");
        a.insert(0, "v");
        a.extend_from_slice(&["--case", "again"]);
        let e = lookup(&a, None).err().unwrap();
        assert_eq!(
            e,
            "the argument '--case <ID>' cannot be used multiple times"
        );
        let mut a = vec!["v", "w"];
        a.extend_from_slice(ACCESS);
        assert_eq!(
            lookup(&a, None).err().unwrap(),
            "unexpected argument 'w' found"
        );
        let mut a = vec!["v", "--bogus"];
        a.extend_from_slice(ACCESS);
        assert!(lookup(&a, None).err().unwrap().contains("--bogus"));
        let e = lookup(&["v", "--case"], None).err().unwrap();
        assert!(e.contains("--case"), "{e}");
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(args(&["--help"]), None), Ok(Parsed::Help)));
        assert!(matches!(parse(args(&["v", "-h"]), None), Ok(Parsed::Help)));
        assert!(matches!(parse(args(&["-V"]), None), Ok(Parsed::Version)));
        assert!(HELP.contains(USAGE));
    }
}
