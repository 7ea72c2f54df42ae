//! The `kakuri` command line: parses arguments, calls the library, prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;

use clap::{Parser, Subcommand};
use kakuri::error::{Error, ExitCode, Result};
use kakuri::lookup::{Lookup, Opened, Query};

mod cli;
use cli::lookup::QueryArg;
use cli::{print_json, record, warn_retention, Access, Trust};

#[derive(Parser)]
#[command(
    name = "kakuri",
    version,
    about = "Seal a leaked data set, answer verified lookups, destroy it provably."
)]
struct Cli {
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Operator name recorded in the audit log (default: the OS user).
    #[arg(long, global = true, value_name = "NAME")]
    operator: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `kakuri lookup` (`kakuri-lookup` reads the same arguments with its own
/// parser).
#[derive(clap::Args)]
struct LookupArgs {
    vault: PathBuf,
    #[command(flatten)]
    access: Access,
    /// Records of this member id (each query may be given several times).
    #[arg(long, value_name = "ID")]
    member_id: Vec<String>,
    /// Records with this document number (spaces, hyphens, full-width
    /// forms and case are folded).
    #[arg(long, value_name = "NUMBER")]
    document_number: Vec<String>,
    /// The record with this record id.
    #[arg(long, value_name = "ID")]
    record_id: Vec<String>,
    /// An image file found elsewhere: match by its content hash.
    #[arg(long, value_name = "FILE")]
    image: Vec<PathBuf>,
}

impl LookupArgs {
    /// The request, with the queries in command-line order; `matches` are
    /// the lookup's own argument matches.
    fn request(self, matches: &clap::ArgMatches) -> cli::lookup::Request {
        let at = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        let mut ordered: Vec<(usize, QueryArg)> = Vec::new();
        let mut add = |id: &str, qs: Vec<QueryArg>| ordered.extend(at(id).into_iter().zip(qs));
        add(
            "member_id",
            self.member_id.into_iter().map(QueryArg::MemberId).collect(),
        );
        add(
            "document_number",
            self.document_number
                .into_iter()
                .map(QueryArg::DocumentNumber)
                .collect(),
        );
        add(
            "record_id",
            self.record_id.into_iter().map(QueryArg::RecordId).collect(),
        );
        add(
            "image",
            self.image.into_iter().map(QueryArg::Image).collect(),
        );
        ordered.sort_by_key(|(i, _)| *i);
        cli::lookup::Request {
            vault: self.vault,
            access: self.access,
            queries: ordered.into_iter().map(|(_, q)| q).collect(),
        }
    }
}

/// Parses the command line into `C`, keeping the raw matches (a lookup
/// numbers its queries in command-line order); a usage error exits as
/// clap does.
fn parse<C: clap::Parser>() -> (C, clap::ArgMatches) {
    let matches = C::command().get_matches();
    match C::from_arg_matches(&matches) {
        Ok(c) => (c, matches),
        Err(e) => e.exit(),
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a custodian identity (age) and/or an operator signing key (OpenSSH ed25519).
    Keygen {
        /// Write an age identity (age-keygen format, mode 0600) here.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Write an OpenSSH ed25519 signing key here (and FILE.pub).
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
        /// Comment for the signing key.
        #[arg(long, default_value = "kakuri-operator")]
        comment: String,
    },
    /// Seal an input directory into a new vault.
    Pack {
        /// Directory with records.jsonl and the files it names (or only files).
        input: PathBuf,
        /// Custodians' recipients file (age1… / ssh-ed25519 lines).
        #[arg(long, value_name = "FILE", required_unless_present = "resume")]
        recipients: Option<PathBuf>,
        /// Operator's OpenSSH ed25519 private key that signs the manifest.
        #[arg(long, value_name = "KEY")]
        sign_key: PathBuf,
        /// Custodians needed to open the vault (k of the n in --recipients); 1 = any one.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// Date (YYYY-MM-DD) until which the set may be kept.
        #[arg(long, value_name = "DATE")]
        retain_until: String,
        /// The new vault directory (must not exist).
        #[arg(long, value_name = "VAULT")]
        out: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// zstd level for record frames. The default (-7, zstd's fastest
        /// here: little match search, no entropy coding of literals) suits
        /// ID images, which are JPEGs already and do not compress; raise it
        /// for uncompressed scans (BMP, TIFF).
        #[arg(long, default_value_t = -7, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-7..=19))]
        zstd_level: i32,
        /// Close a shard after this many image bytes (shards are packed and verified in parallel).
        #[arg(long, default_value_t = 256 << 20)]
        shard_bytes: u64,
        /// Close a shard after this many records.
        #[arg(long, default_value_t = 8192)]
        shard_records: u64,
        /// Refuse images larger than this.
        #[arg(long, default_value_t = 1 << 30)]
        max_record_bytes: u64,
        /// Reed–Solomon parity: R recovery blocks per K data blocks of 64 KiB
        /// in every shard and index file (`verify --repair` rebuilds up to R
        /// damaged blocks per group, without any key), or `none`.
        #[arg(long, value_name = "R/K", default_value = "4/64")]
        parity: String,
        /// Continue an interrupted pack into --out (same input and options;
        /// needs custodian identities, -i, to unwrap the vault key). Ends with
        /// the same Merkle root as an uninterrupted pack.
        #[arg(long)]
        resume: bool,
        /// Custodian identity file(s), for --resume.
        #[arg(
            short = 'i',
            long = "identity",
            value_name = "FILE",
            requires = "resume"
        )]
        identities: Vec<PathBuf>,
        /// Blind-index entries sorted in memory before a run is spilled (encrypted) to disk.
        #[arg(long, default_value_t = 1 << 18, hide = true)]
        sort_run_entries: usize,
    },
    /// Show what a vault holds, its retention date and signature (no key needed).
    Status {
        vault: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
    /// Check a vault: signature and file hashes; with -i and --deep, every record.
    Verify {
        vault: PathBuf,
        /// Custodian identity file(s), for --deep.
        #[arg(short = 'i', long = "identity", value_name = "FILE")]
        identities: Vec<PathBuf>,
        /// Decrypt everything, re-hash every record, rebuild the root, check the index.
        #[arg(long)]
        deep: bool,
        /// Rolling deep verification of part I of N (shards I, I+N, …); the
        /// audit log records each part, so N runs cover the whole vault.
        #[arg(long, value_name = "I/N", requires = "deep")]
        subset: Option<String>,
        /// Rebuild damaged shards and index files from their parity (and
        /// damaged parity files from their data) before checking; no key is
        /// needed. Recorded in the audit log, so it needs --sign-key.
        #[arg(long, requires = "sign_key")]
        repair: bool,
        #[arg(long)]
        jobs: Option<usize>,
        /// Operator key that signs the audit entry for this verification.
        #[arg(long, value_name = "KEY", env = "KAKURI_SIGN_KEY")]
        sign_key: Option<PathBuf>,
        #[command(flatten)]
        trust: Trust,
    },
    /// Find records and print their verified metadata.
    Lookup(LookupArgs),
    /// Batch match: which of many queries (files found elsewhere, or a column of ids) are in the vault.
    Match {
        vault: PathBuf,
        #[command(flatten)]
        access: Access,
        /// A directory of files found elsewhere: match each by its content hash.
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with = "table",
            required_unless_present = "table"
        )]
        dir: Option<PathBuf>,
        /// A CSV file with a header row (or a .jsonl file) of values to match.
        #[arg(long, value_name = "FILE", requires_all = ["column", "field"])]
        table: Option<PathBuf>,
        /// The CSV column (or JSONL key) holding the values.
        #[arg(long, value_name = "NAME")]
        column: Option<String>,
        /// What the values are: member_id, document_number or record_id.
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
        /// Write hits here (a new file) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Hits as CSV instead of JSON lines.
        #[arg(long)]
        csv: bool,
        /// Also read and re-hash every hit's record from its shard (as
        /// lookup does) instead of answering from the verified index alone.
        #[arg(long)]
        verify_content: bool,
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Write one record's exact image and metadata plus a receipt into a new directory.
    Export {
        vault: PathBuf,
        #[command(flatten)]
        access: Access,
        #[arg(long, value_name = "ID")]
        record_id: String,
        /// New (or empty) directory for the evidence.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show the vault's audit log (`audit VAULT`) or check it (`audit verify VAULT`).
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        cmd: Option<AuditCmd>,
        vault: Option<PathBuf>,
    },
    /// Custody of the vault key.
    Custody {
        #[command(subcommand)]
        cmd: CustodyCmd,
    },
    /// Destroy the vault: erase the key, the index and the shards; write a signed certificate.
    Destroy {
        vault: PathBuf,
        /// The vault id (from `kakuri status`), to confirm which vault goes.
        #[arg(long, value_name = "VAULT_ID", required_unless_present = "order")]
        confirm: Option<String>,
        /// Operator's OpenSSH ed25519 key that signs the certificate and audit entries.
        #[arg(
            long,
            value_name = "KEY",
            env = "KAKURI_SIGN_KEY",
            required_unless_present = "order"
        )]
        sign_key: Option<PathBuf>,
        /// Destroy before the retention date (needs --reason).
        #[arg(long)]
        early: bool,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Legal basis recorded on the certificate.
        #[arg(long, value_name = "TEXT")]
        legal_basis: Option<String>,
        /// A destroy order signed by a compliance officer (ORDER with ORDER.sig beside it).
        #[arg(long, value_name = "ORDER")]
        co_sign: Option<PathBuf>,
        /// Require the order to be signed by this key.
        #[arg(long, value_name = "PUBKEY")]
        co_signer: Option<PathBuf>,
        /// Print what would be destroyed and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write a destroy order for a compliance officer to sign, and stop.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["confirm", "dry_run", "early", "co_sign"])]
        order: Option<PathBuf>,
    },
    /// Destruction certificates.
    Certificate {
        #[command(subcommand)]
        cmd: CertificateCmd,
    },
    /// Receipts from `export`.
    Receipt {
        #[command(subcommand)]
        cmd: ReceiptCmd,
    },
    /// Generate a synthetic leak set (for rehearsal and benchmarks).
    Synth {
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Mean image size in bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        image_size: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory to create (must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run the whole job on a built-in synthetic set in a temporary directory.
    Demo {
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        #[arg(long, default_value_t = 16 * 1024)]
        image_size: u64,
        /// Keep the demo's files here instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain, every signature and the signed head; name the first broken entry.
    Verify {
        vault: PathBuf,
        /// Only accept entries signed by these keys (repeatable).
        #[arg(long = "signer", value_name = "PUBKEY")]
        signers: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CustodyCmd {
    /// Re-wrap the vault key for a new custodian set (shards are not touched); old wraps are erased.
    Rewrap {
        vault: PathBuf,
        /// Identities of current custodians (as many as the threshold needs).
        #[arg(short = 'i', long = "identity", value_name = "FILE", required = true)]
        identities: Vec<PathBuf>,
        /// The new custodians' recipients file.
        #[arg(long, value_name = "FILE")]
        recipients: PathBuf,
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// Operator key that signs the new manifest and the audit entry.
        #[arg(long, value_name = "KEY", env = "KAKURI_SIGN_KEY")]
        sign_key: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
}

#[derive(Subcommand)]
enum CertificateCmd {
    /// Check a destruction certificate's signatures and internal consistency.
    Verify {
        cert: PathBuf,
        /// Require the certificate to be signed by this operator key.
        #[arg(long, value_name = "PUBKEY")]
        signer: Option<PathBuf>,
        /// Require a co-signature by this key.
        #[arg(long, value_name = "PUBKEY")]
        co_signer: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReceiptCmd {
    /// Check an export directory offline: hashes, inclusion proof, manifest signature.
    Verify {
        dir: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
}

/// Opens the vault with the custodian identities an [`Access`] names.
fn open(access: &Access, vault: &std::path::Path) -> Result<Opened> {
    access.check()?;
    Opened::open(vault, &access.identities, access.trust.key()?.as_ref())
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let json = cli.json;
    // Resolved when a command first needs it (a lookup resolves its own
    // while it runs).
    let operator = std::cell::LazyCell::new(|| {
        cli.operator
            .clone()
            .unwrap_or_else(kakuri::audit::default_operator)
    });
    match cli.cmd {
        Cmd::Keygen {
            identity,
            signing_key,
            comment,
        } => {
            if identity.is_none() && signing_key.is_none() {
                return Err(Error::usage(
                    "keygen needs --identity FILE and/or --signing-key FILE",
                ));
            }
            let mut out = serde_json::Map::new();
            if let Some(p) = identity {
                let r = kakuri::keys::generate_age_identity(&p)?;
                if !json {
                    println!(
                        "identity written to {} (mode 0600)\nrecipient: {r}",
                        p.display()
                    );
                }
                out.insert("recipient".into(), r.into());
            }
            if let Some(p) = signing_key {
                let pubk = kakuri::keys::generate_signing_key(&p, &comment)?;
                if !json {
                    println!(
                        "signing key written to {} (mode 0600) and {}.pub\npublic key: {pubk}",
                        p.display(),
                        p.display()
                    );
                }
                out.insert("signing_public_key".into(), pubk.into());
            }
            if json {
                print_json(&out);
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Pack {
            input,
            recipients,
            sign_key,
            threshold,
            retain_until,
            out,
            jobs: j,
            zstd_level,
            shard_bytes,
            shard_records,
            max_record_bytes,
            sort_run_entries,
            resume,
            identities,
            parity,
        } => {
            let mut o = kakuri::pack::PackOptions::new(
                input,
                recipients.unwrap_or_default(),
                sign_key,
                retain_until,
                out,
            );
            o.resume = resume;
            o.identities = identities;
            o.jobs = jobs(j);
            o.zstd_level = zstd_level;
            o.threshold = threshold;
            o.operator = (*operator).clone();
            o.shard_bytes = shard_bytes;
            o.shard_records = shard_records.max(1);
            o.max_record_bytes = max_record_bytes;
            o.sort_run_entries = sort_run_entries.max(1);
            o.parity = kakuri::parity::Params::parse(&parity)?;
            o.progress = !json && std::io::stderr().is_terminal();
            let s = kakuri::pack::pack(&o)?;
            if json {
                print_json(&s);
            } else {
                println!(
                    "sealed {} records ({} image bytes) into {} shards at {}\nvault id:    {}\nmerkle root: {}\nvault size:  {} bytes\nretain until {}\ntook {:.1} s ({:.1} MB/s)",
                    s.records, s.image_bytes, s.shards, s.vault, s.vault_id, s.root, s.vault_bytes, s.retain_until, s.seconds,
                    s.image_bytes as f64 / 1e6 / s.seconds.max(1e-9)
                );
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Status { vault, trust } => {
            let s = kakuri::status::status(&vault, trust.key()?.as_ref())?;
            if json {
                print_json(&s);
            } else {
                println!(
                    "vault {} (format v{}, {})",
                    s.vault_id, s.format_version, s.tool
                );
                println!("created       {}", s.created);
                println!(
                    "records       {} ({} image bytes; {} bytes sealed in {} shards)",
                    s.records, s.image_bytes, s.vault_bytes, s.shards
                );
                for (k, v) in &s.doc_types {
                    println!("  {k:<20} {v}");
                }
                println!("merkle root   {}", s.merkle_root);
                if s.parity == "none" {
                    println!("parity        none (damage is found, not repaired)");
                } else {
                    println!(
                        "parity        {} blocks of 64 KiB per group ({} bytes); `verify --repair` rebuilds damage within it",
                        s.parity, s.parity_bytes
                    );
                }
                println!(
                    "retain until  {} ({} days left)",
                    s.retain_until, s.days_left
                );
                println!("signature     OK, signed by {}", s.signer_fingerprint);
                println!("state         {}", s.state);
                println!("audit log     {} entries", s.audit_entries);
                for f in &s.stale_custody_files {
                    println!("warning       {f}: an old key wrap left by an interrupted rewrap; the next rewrap or destroy erases it");
                }
                println!(
                    "custody       {} of: {}",
                    s.custody_scheme,
                    s.custodians.join(", ")
                );
            }
            warn_retention(s.days_left);
            Ok(ExitCode::Ok)
        }
        Cmd::Verify {
            vault,
            identities,
            deep,
            subset,
            repair,
            jobs: j,
            sign_key,
            trust,
        } => {
            let dir = kakuri::vault::VaultDir::open(&vault)?;
            kakuri::destroy::refuse_if_destroyed(&dir.root).map_err(|e| {
                e.context("nothing left to verify; check the certificate with `kakuri certificate verify`")
            })?;
            let trusted = trust.key()?;
            let loaded = kakuri::manifest::load(&dir, trusted.as_ref())?;
            warn_retention(loaded.manifest.days_left().unwrap_or(0));
            let mut rep = kakuri::verify::verify_keyless(&dir, &loaded, jobs(j));
            if repair {
                let bad: Vec<String> = rep
                    .files
                    .iter()
                    .filter(|f| !f.ok)
                    .map(|f| f.path.clone())
                    .collect();
                if !bad.is_empty() || !rep.unexpected_files.is_empty() {
                    let sk = sign_key.as_ref().expect("clap requires --sign-key");
                    // Fail on a bad signing key before anything is changed.
                    kakuri::keys::load_signing_key(sk)?;
                    let mut r = kakuri::repair::repair_vault(&dir.root, &loaded.manifest, &bad);
                    r.removed = kakuri::repair::remove_stray_temps(
                        &dir.root,
                        &loaded.manifest,
                        &rep.unexpected_files,
                    );
                    if r.repaired.is_empty() && r.failed.is_empty() && r.removed.is_empty() {
                        // Only files a person must look at: nothing changed.
                        rep.repair = Some(r);
                    } else {
                        record(
                            &dir.root,
                            &loaded.manifest.vault_id,
                            sk,
                            &operator,
                            "repair",
                            None,
                            None,
                            serde_json::json!({
                                "repaired": r.repaired,
                                "failed": r.failed,
                                "removed": r.removed,
                            }),
                            Vec::new(),
                        )
                        .map_err(|e| e.context("the repair was made but could not be recorded"))?;
                        rep = kakuri::verify::verify_keyless(&dir, &loaded, jobs(j));
                        rep.repair = Some(r);
                    }
                }
            }
            if deep {
                let o = Opened::open(&vault, &identities, trusted.as_ref())?;
                let d = match subset.as_deref() {
                    None => kakuri::verify::verify_deep(&o, jobs(j))?,
                    Some(s) => {
                        let (i, n) = s
                            .split_once('/')
                            .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
                            .ok_or_else(|| {
                                Error::usage(format!("--subset {s}: expected I/N, e.g. 0/7"))
                            })?;
                        kakuri::verify::verify_subset(&o, jobs(j), i, n)?
                    }
                };
                rep.ok &=
                    d.bad_records.is_empty() && d.problems.is_empty() && d.root_ok && d.index_ok;
                rep.deep = Some(d);
            } else if !identities.is_empty() {
                return Err(Error::usage("-i is only used with --deep"));
            }
            if let Some(sk) = &sign_key {
                let d = rep.deep.as_ref();
                let result = serde_json::json!({
                    "ok": rep.ok,
                    "deep": deep,
                    "files_checked": rep.files.len(),
                    "files_failed": rep.files.iter().filter(|f| !f.ok).count() + rep.unexpected_files.len(),
                    "records_checked": d.map(|d| d.records_checked),
                    "subset": d.and_then(|d| d.subset.clone()),
                    "shards_checked": d.map(|d| d.shards_checked.clone()),
                    "records_failed": d.map(|d| d.bad_records.len()),
                });
                record(
                    &dir.root,
                    &loaded.manifest.vault_id,
                    sk,
                    &operator,
                    "verify",
                    None,
                    None,
                    result,
                    Vec::new(),
                )?;
            } else if !json {
                eprintln!("kakuri: note: this verification is not in the audit log (pass --sign-key to record it)");
            }
            if json {
                print_json(&rep);
            } else {
                println!("signature OK (signed by {})", rep.signer_fingerprint);
                if let Some(r) = &rep.repair {
                    for x in &r.repaired {
                        let mut what = Vec::new();
                        if !x.blocks.is_empty() {
                            what.push(format!(
                                "block(s) {} rebuilt from parity",
                                kakuri::repair::ranges_text(&x.blocks)
                            ));
                        }
                        if x.extra_bytes_removed > 0 {
                            what.push(format!("{} stray byte(s) removed", x.extra_bytes_removed));
                        }
                        if x.parity_rebuilt {
                            what.push("parity file rebuilt".into());
                        }
                        println!("{}: REPAIRED ({})", x.path, what.join("; "));
                    }
                    for (p, why) in &r.failed {
                        println!("{p}: NOT REPAIRED ({why})");
                    }
                    for p in &r.removed {
                        println!("{p}: REMOVED (temporary file of an interrupted writer)");
                    }
                }
                for f in &rep.files {
                    match (&f.problem, &f.damage) {
                        (None, _) => println!("{}: OK", f.path),
                        (Some(p), None) => println!("{}: FAILED ({p})", f.path),
                        (Some(p), Some(d)) => {
                            println!("{}: FAILED ({p}; {})", f.path, d.summary)
                        }
                    }
                }
                for u in &rep.unexpected_files {
                    println!("{u}: FAILED (not listed in the manifest)");
                }
                if let Some(d) = &rep.deep {
                    println!(
                        "deep{}: {} records re-hashed in {} shard(s), {} bytes read",
                        d.subset
                            .as_deref()
                            .map(|s| format!(" (part {s})"))
                            .unwrap_or_default(),
                        d.records_checked,
                        d.shards_checked.len(),
                        d.bytes_decrypted
                    );
                    // One line per run of records; a problem that scatters
                    // over many runs (a damaged page of the blind index) is
                    // shown three times and counted (--json lists all).
                    let runs = kakuri::verify::runs(&d.bad_records);
                    let mut shown: std::collections::HashMap<String, (usize, u64)> =
                        Default::default();
                    for (first, last, b) in &runs {
                        let e = shown
                            .entry(kakuri::verify::problem_shape(&b.problem))
                            .or_default();
                        e.0 += 1;
                        if e.0 > 3 {
                            e.1 += last - first + 1;
                            continue;
                        }
                        if first == last {
                            println!("record {first} in {}: FAILED ({})", b.shard, b.problem);
                        } else {
                            println!(
                                "records {first}-{last} in {}: FAILED ({}, and the like for the others)",
                                b.shard, b.problem
                            );
                        }
                    }
                    for (first, _, b) in &runs {
                        let shape = kakuri::verify::problem_shape(&b.problem);
                        if let Some((_, more)) = shown.remove(&shape).filter(|(_, n)| *n > 0) {
                            println!(
                                "… and {more} more record(s) after record {first} with the same problem (--json lists every one)"
                            );
                        }
                    }
                    for p in &d.problems {
                        println!("FAILED: {p}");
                    }
                    println!("merkle root: {}", if d.root_ok { "OK" } else { "FAILED" });
                    println!("index: {}", if d.index_ok { "OK" } else { "FAILED" });
                }
                println!(
                    "{}",
                    if rep.ok {
                        "vault OK"
                    } else {
                        "vault FAILED verification"
                    }
                );
            }
            Ok(if rep.ok {
                ExitCode::Ok
            } else {
                ExitCode::Integrity
            })
        }
        Cmd::Lookup(a) => {
            let sub = matches
                .subcommand_matches("lookup")
                .expect("the lookup command's matches");
            cli::lookup::run(a.request(sub), json, cli.operator.clone())
        }
        Cmd::Match {
            vault,
            access,
            dir,
            table,
            column,
            field,
            out,
            csv,
            verify_content,
            jobs: j,
        } => {
            let depth = if verify_content {
                kakuri::batch::Depth::Content
            } else {
                kakuri::batch::Depth::Index
            };
            let src = match (dir, table) {
                (Some(d), _) => kakuri::batch::Source::Dir(d),
                (None, Some(t)) => kakuri::batch::Source::Table {
                    path: t,
                    column: column.unwrap_or_default(),
                    field: kakuri::batch::parse_field(field.as_deref().unwrap_or_default())?,
                },
                (None, None) => return Err(Error::usage("match needs --dir DIR or --table FILE")),
            };
            let o = open(&access, &vault)?;
            warn_retention(o.loaded.manifest.days_left().unwrap_or(0));
            // Hits are held until the run is recorded in the audit log.
            let mut staged = match &out {
                Some(p) => Some(kakuri::vault::AtomicFile::create(p, 0o600)?),
                None => None,
            };
            let mut mem = Vec::new();
            let summary = {
                let sink: Box<dyn std::io::Write> = match staged.as_mut() {
                    Some(f) => Box::new(std::io::BufWriter::new(f)),
                    None => Box::new(&mut mem),
                };
                let mut w = kakuri::batch::HitWriter::new(sink, csv);
                let s = kakuri::batch::run(&o, &src, jobs(j), depth, |h| w.write(h))?;
                w.finish()?;
                s
            };
            record(
                &o.dir.root,
                &o.loaded.manifest.vault_id,
                &access.sign_key,
                &operator,
                "match",
                Some(&access.case),
                Some(&access.reason),
                serde_json::json!({
                    "queries": summary.queries,
                    "queries_matched": summary.queries_matched,
                    "queries_not_found": summary.queries_not_found,
                    "content_read": verify_content,
                    "records_matched": summary.records_matched,
                }),
                vec![format!("source:{}", &summary.source_hash[..32])],
            )?;
            if let Some(f) = staged {
                f.commit()?;
            } else {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&mem)
                    .map_err(|e| Error::io_ctx("cannot write output", e))?;
            }
            let line = format!(
                "{} queries: {} matched ({} records, each verified), {} not in the vault",
                summary.queries,
                summary.queries_matched,
                summary.records_matched,
                summary.queries_not_found
            );
            if json && out.is_some() {
                print_json(&summary);
            } else {
                eprintln!("kakuri: {line}");
            }
            Ok(if summary.queries_matched > 0 {
                ExitCode::Ok
            } else {
                ExitCode::NotFound
            })
        }
        Cmd::Export {
            vault,
            access,
            record_id,
            out,
        } => {
            let o = open(&access, &vault)?;
            warn_retention(o.loaded.manifest.days_left().unwrap_or(0));
            let mut lk = Lookup::new(&o)?;
            let q = Query::RecordId(record_id.clone());
            let qh = vec![kakuri::audit::query_hash(&o.key, q.field(), &q.value())];
            let before_write = |ordinal: Option<u64>| {
                record(
                    &o.dir.root,
                    &o.loaded.manifest.vault_id,
                    &access.sign_key,
                    &operator,
                    "export",
                    Some(&access.case),
                    Some(&access.reason),
                    serde_json::json!({"found": ordinal.is_some(), "ordinal": ordinal}),
                    qh.clone(),
                )
                .map(|_| ())
            };
            match kakuri::export::export(&mut lk, &record_id, &out, &access.case, before_write)? {
                None => {
                    if json {
                        print_json(&serde_json::json!({"found": false}));
                    } else {
                        println!("record not found; nothing written");
                    }
                    Ok(ExitCode::NotFound)
                }
                Some(r) => {
                    if json {
                        print_json(&r);
                    } else {
                        println!("exported record {} to {} ({}); check it with `kakuri receipt verify {}`", r.ordinal, r.dir, r.files.join(", "), r.dir);
                    }
                    Ok(ExitCode::Ok)
                }
            }
        }
        Cmd::Audit {
            cmd: Some(AuditCmd::Verify { vault, signers }),
            ..
        } => {
            let dir = kakuri::vault::VaultDir::open(&vault)?;
            let loaded = kakuri::manifest::load(&dir, None)?;
            let trusted = signers
                .iter()
                .map(|p| kakuri::keys::load_public_key(p))
                .collect::<Result<Vec<_>>>()?;
            let c = kakuri::audit::verify(&dir.root, &loaded.manifest.vault_id, &trusted)?;
            if json {
                print_json(&c);
            } else if c.ok {
                println!(
                    "audit log OK: {} entries, head {}, signed by {}",
                    c.entries,
                    c.head_hash,
                    c.signers.join(", ")
                );
            } else {
                println!(
                    "audit log FAILED at entry {}: {}",
                    c.first_broken.unwrap_or(0),
                    c.problem.as_deref().unwrap_or("")
                );
            }
            Ok(if c.ok {
                ExitCode::Ok
            } else {
                ExitCode::Integrity
            })
        }
        Cmd::Audit { cmd: None, vault } => {
            let vault = vault.ok_or_else(|| {
                Error::usage("usage: kakuri audit VAULT | kakuri audit verify VAULT")
            })?;
            let dir = kakuri::vault::VaultDir::open(&vault)?;
            let entries = kakuri::audit::read_all(&dir.root)?;
            if json {
                print_json(&entries);
            } else {
                println!(
                    "{:>5}  {:<25} {:<8} {:<14} {:<16} {:<24} result",
                    "seq", "time", "action", "operator", "case", "reason"
                );
                for e in &entries {
                    println!(
                        "{:>5}  {:<25} {:<8} {:<14} {:<16} {:<24} {}",
                        e.seq,
                        e.time,
                        e.action,
                        e.operator,
                        e.case.as_deref().unwrap_or("-"),
                        e.reason.as_deref().unwrap_or("-"),
                        e.result
                    );
                }
                println!(
                    "{} entries; run `kakuri audit verify` to check the chain and signatures",
                    entries.len()
                );
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Custody {
            cmd:
                CustodyCmd::Rewrap {
                    vault,
                    identities,
                    recipients,
                    threshold,
                    sign_key,
                    trust,
                },
        } => {
            let o = Opened::open(&vault, &identities, trust.key()?.as_ref())?;
            let rs = kakuri::custody::parse_recipients(&recipients)?;
            let key = kakuri::keys::load_signing_key(&sign_key)?;
            let r = kakuri::custody::rewrap(&o, &rs, threshold, &key, &operator)?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "vault key re-wrapped (custody generation {}): {} of {} custodians ({}); erased {}",
                    r.generation,
                    r.threshold,
                    r.custodians.len(),
                    r.custodians.join(", "),
                    r.erased.iter().map(|e| e.path.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Destroy {
            vault,
            confirm,
            sign_key,
            early,
            reason,
            legal_basis,
            co_sign,
            co_signer,
            dry_run,
            order,
        } => {
            if let Some(out) = order {
                let o = kakuri::destroy::write_order(&vault, &out)?;
                if json {
                    print_json(&o);
                } else {
                    println!(
                        "destroy order written to {}; the compliance officer signs it with\n  ssh-keygen -Y sign -f OFFICER_KEY -n {} {}\nand the operator passes --co-sign {}",
                        out.display(),
                        kakuri::certificate::ORDER_NAMESPACE,
                        out.display(),
                        out.display()
                    );
                }
                return Ok(ExitCode::Ok);
            }
            let opts = kakuri::destroy::DestroyOptions {
                vault,
                confirm: confirm.unwrap_or_default(),
                sign_key: sign_key.ok_or_else(|| Error::usage("destroy needs --sign-key"))?,
                operator: (*operator).clone(),
                early,
                reason,
                legal_basis,
                co_sign,
                co_signer: co_signer
                    .as_deref()
                    .map(kakuri::keys::load_public_key)
                    .transpose()?,
                dry_run,
            };
            match kakuri::destroy::destroy(&opts)? {
                kakuri::destroy::Outcome::DryRun(plan) => {
                    if json {
                        print_json(&plan);
                    } else {
                        println!("dry run: these {} files would be destroyed, in this order (nothing was changed):", plan.len());
                        for p in &plan {
                            println!("  {:<13} {:>14} bytes  {}", p.kind, p.size, p.path);
                        }
                    }
                }
                kakuri::destroy::Outcome::Destroyed {
                    certificate,
                    path,
                    resumed,
                } => {
                    if json {
                        print_json(
                            &serde_json::json!({"certificate": path, "certificate_id": certificate.certificate_id, "resumed": resumed, "files_destroyed": certificate.files_destroyed.len(), "key_material_erased": certificate.key_material_erased.len()}),
                        );
                    } else {
                        println!(
                            "vault {} destroyed{}: key material erased ({} file(s)), {} files overwritten and unlinked, verified gone.\ncertificate: {} (+ .sig, and certificate.html for sign-off)\ncheck it: kakuri certificate verify {}",
                            certificate.vault_id,
                            if resumed { " (resumed)" } else { "" },
                            certificate.key_material_erased.len(),
                            certificate.files_destroyed.len(),
                            path,
                            path
                        );
                    }
                }
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Certificate {
            cmd:
                CertificateCmd::Verify {
                    cert,
                    signer,
                    co_signer,
                },
        } => {
            let s = signer
                .as_deref()
                .map(kakuri::keys::load_public_key)
                .transpose()?;
            let c = co_signer
                .as_deref()
                .map(kakuri::keys::load_public_key)
                .transpose()?;
            let r = kakuri::certificate::verify(&cert, s.as_ref(), c.as_ref())?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "certificate OK: {} for vault {}: {} key file(s) erased, {} files destroyed, signed by {}{}",
                    r.certificate_id,
                    r.vault_id,
                    r.key_material_erased,
                    r.files_destroyed,
                    r.operator_fingerprint,
                    r.co_signer_fingerprint.as_deref().map(|f| format!(", co-signed by {f}")).unwrap_or_default()
                );
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Receipt {
            cmd: ReceiptCmd::Verify { dir, trust },
        } => {
            let r = kakuri::receipt::verify_dir(&dir, trust.key()?.as_ref())?;
            if json {
                print_json(&r);
            } else {
                println!(
                    "receipt OK: record {} of vault {} is included under root {} signed by {}",
                    r.ordinal, r.vault_id, r.root, r.signer_fingerprint
                );
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Synth {
            count,
            image_size,
            seed,
            out,
        } => {
            let s = kakuri::demo::synth(
                &out,
                count,
                image_size,
                seed,
                !json && std::io::stderr().is_terminal(),
            )?;
            if json {
                print_json(
                    &serde_json::json!({"records": s.records, "members": s.members, "bytes": s.bytes, "doc_types": s.doc_types}),
                );
            } else {
                println!(
                    "wrote {} records ({} image bytes, {} members) to {}",
                    s.records,
                    s.bytes,
                    s.members,
                    out.display()
                );
            }
            Ok(ExitCode::Ok)
        }
        Cmd::Demo {
            records,
            image_size,
            keep,
        } => {
            kakuri::demo::run(records, image_size, keep.as_deref(), json)?;
            Ok(ExitCode::Ok)
        }
    }
}

fn main() -> ProcessExit {
    cli::init_process();
    let (cli, matches) = parse::<Cli>();
    cli::exit(run(cli, &matches))
}
