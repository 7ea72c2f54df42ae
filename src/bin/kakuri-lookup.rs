//! `kakuri-lookup`: `kakuri lookup` in a binary that holds only the read
//! path. A lookup is a short-lived process, and with the page cache cold
//! most of its time is the kernel reading the binary from disk before
//! `main` runs: this one is about half the size of `kakuri` (no pack,
//! verify, destroy or zstd compressor). Same arguments, output, exit codes
//! and audit entry as `kakuri lookup`.

use std::process::ExitCode as ProcessExit;

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kakuri-lookup",
    version,
    about = "Find records in a kakuri vault and print their verified metadata (kakuri lookup)."
)]
struct Cli {
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Operator name recorded in the audit log (default: the OS user).
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
    #[command(flatten)]
    lookup: cli::lookup::LookupArgs,
}

fn main() -> ProcessExit {
    cli::init_process();
    let (c, matches) = cli::parse::<Cli>();
    cli::exit(cli::lookup::run(c.lookup, &matches, c.json, c.operator))
}
