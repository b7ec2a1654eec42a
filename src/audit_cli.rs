//! `mcp-gateway audit verify FILE...`

use std::path::PathBuf;

use clap::{Args, Subcommand};

use mcp_gateway::audit::chain;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chains of audit log files: rotated files in any
    /// order, and files of several replicas (each its own chain); print
    /// the first broken record and exit 1, or a summary per chain.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The log files: each replica's current one and any rotated `FILE.N`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Accept chains that do not start at seq 1 (older files removed).
    #[arg(long)]
    partial: bool,
    /// The hash a chain's last record must have (from the gateway's "audit
    /// log closed" line, or an earlier verify): detects records cut off the
    /// end. Repeat it for several replicas; each must end one of the chains.
    #[arg(long)]
    head: Vec<String>,
}

pub fn run(command: &AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args),
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let chains = match chain::verify(&args.files, args.partial) {
        Ok(chains) => chains,
        Err(e) => {
            eprintln!("audit log broken: {e}");
            std::process::exit(1);
        }
    };
    for head in &args.head {
        if !chains
            .iter()
            .any(|c| head.eq_ignore_ascii_case(&c.last_hash))
        {
            let ends: Vec<String> = chains
                .iter()
                .map(|c| format!("seq {} with hash {}", c.last_seq, c.last_hash))
                .collect();
            eprintln!(
                "audit log does not end at the expected record: no chain ends with hash {head} \
                 (last records: {}; records cut off the end?)",
                ends.join(", ")
            );
            std::process::exit(1);
        }
    }
    if chains.len() > 1 {
        let records: u64 = chains.iter().map(|c| c.records).sum();
        println!(
            "ok: {} chains (one per replica), {records} records in {} file(s)",
            chains.len(),
            chains.iter().map(|c| c.files).sum::<usize>()
        );
    }
    for c in &chains {
        println!(
            "ok: {} records in {} file(s), seq {}..{}, last hash {}, replica {}",
            c.records,
            c.files,
            c.first_seq,
            c.last_seq,
            c.last_hash,
            c.replica.as_deref().unwrap_or("(none)")
        );
    }
    Ok(())
}
