//! `mcp-gateway audit verify FILE...`

use std::path::PathBuf;

use clap::{Args, Subcommand};

use mcp_gateway::audit::chain;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of audit log files (rotated files in any
    /// order); print the first broken record and exit 1, or a summary.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The log files: the current one and any rotated `FILE.N`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Accept a chain that does not start at seq 1 (older files removed).
    #[arg(long)]
    partial: bool,
    /// The hash the last record must have (from the gateway's "audit log
    /// closed" line, or an earlier verify): detects records cut off the end.
    #[arg(long)]
    head: Option<String>,
}

pub fn run(command: &AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args),
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    match chain::verify(&args.files, args.partial) {
        Ok(summary) => {
            if let Some(head) = &args.head
                && !head.eq_ignore_ascii_case(&summary.last_hash)
            {
                eprintln!(
                    "audit log does not end at the expected record: last is seq {} with hash {}, \
                     expected hash {head} (records cut off the end?)",
                    summary.last_seq, summary.last_hash
                );
                std::process::exit(1);
            }
            println!(
                "ok: {} records in {} file(s), seq {}..{}, last hash {}",
                summary.records,
                summary.files,
                summary.first_seq,
                summary.last_seq,
                summary.last_hash
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("audit log broken: {e}");
            std::process::exit(1);
        }
    }
}
