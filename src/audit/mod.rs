//! audit: one record per decided message, written once its outcome is
//! known (one line per message: decision and outcome together). Never drops
//! a record.
//!
//! Callers hand records to a bounded queue (`audit.queue_depth`); when it is
//! full they wait (back-pressure) rather than drop. One writer thread owns
//! the sink: it numbers the records (`seq`), chains them (`prev_hash`,
//! `hash`, see `chain`), writes JSON Lines to a file (rotated at
//! `audit.rotate_bytes`, the chain continuing in the next file and across
//! restarts) or to stdout, and syncs per `audit.fsync`. `flush` waits until
//! everything queued before it is written: shutdown calls it last.

pub mod chain;
mod line;
mod syslog;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::auth::Principal;
use crate::config::AuditConfig;
use crate::mcp::{Call, Target};
use crate::policy::Decision;
use crate::telemetry::Histogram;

#[derive(Debug, Clone)]
pub struct Record {
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub transport: &'static str,
    pub principal: Principal,
    /// The JSON-RPC method as the client sent it.
    pub method: String,
    pub call: Call,
    pub backend: Option<String>,
    pub decision: Decision,
    /// Tool or prompt arguments; hashed (`args_sha256`) unless
    /// `audit.redact_arguments = false`.
    pub arguments: Option<Value>,
    pub origin: Option<String>,
    pub remote_addr: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error(i64),
    Timeout,
    Cancelled,
}

/// Why the audit log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {path}: {error}")]
    Open { path: String, error: std::io::Error },
}

enum Entry {
    Record(Box<line::Fields>),
    Flush(oneshot::Sender<()>),
}

/// Counters the writer keeps, rendered on `/metrics`.
#[derive(Default)]
pub struct AuditStats {
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
    pub write_seconds: Histogram,
    pub last_seq: AtomicU64,
}

pub struct AuditSink {
    tx: Option<mpsc::Sender<Entry>>,
    capacity: usize,
    redact: bool,
    /// `replica` of every record: which replica's chain it belongs to.
    replica: Arc<str>,
    stats: Arc<AuditStats>,
}

/// This replica's name (audit records, sealed session ids, the replica
/// registry): `[state] replica_id` when set, else the host name (a pod's or
/// VM's own name, cut to what ids allow) and a random suffix chosen now, so
/// replicas sharing a host, or a replica and its restarted self, differ.
pub fn replica_id(configured: Option<&str>) -> String {
    if let Some(id) = configured {
        return id.to_owned();
    }
    let hostname: String = hostname()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(48)
        .collect();
    let mut bytes = [0u8; 4];
    // Without randomness the id is still a valid (if shared) name.
    let _ = getrandom::fill(&mut bytes);
    let host = if hostname.is_empty() {
        "replica"
    } else {
        hostname.as_str()
    };
    format!("{host}-{}", hex::encode(bytes))
}

/// This machine's name (Linux, else `$HOSTNAME`), trimmed; `None` when
/// unknown or empty.
pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

impl AuditSink {
    /// A sink that writes nothing (unit tests, tools).
    pub fn disabled() -> Arc<AuditSink> {
        Arc::new(AuditSink {
            tx: None,
            capacity: 0,
            redact: true,
            replica: Arc::from(""),
            stats: Arc::default(),
        })
    }

    /// Opens the log (continuing its chain) and starts the writer thread;
    /// every record names `replica` (`replica_id`).
    pub fn start(config: &AuditConfig, replica: &str) -> Result<Arc<AuditSink>, AuditError> {
        let stats = Arc::new(AuditStats::default());
        let capacity = config.queue_depth.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        writer::spawn(config, rx, stats.clone())?;
        Ok(Arc::new(AuditSink {
            tx: Some(tx),
            capacity,
            redact: config.redact_arguments,
            replica: Arc::from(replica),
            stats,
        }))
    }

    /// Queues the record of a decided message with its outcome; waits while
    /// the queue is full.
    pub async fn record(&self, record: &Record, outcome: Outcome, latency_us: u64) {
        let Some(tx) = &self.tx else { return };
        let entry = Entry::Record(Box::new(self.line(record, outcome, latency_us)));
        if tx.send(entry).await.is_err() {
            tracing::error!("the audit writer has stopped; a record could not be written");
        }
    }

    /// Like `record`, from a place that cannot wait (a request dropped by
    /// its cancellation): queued now if there is room, else by a task
    /// that waits for room.
    pub fn record_detached(&self, record: &Record, outcome: Outcome, latency_us: u64) {
        let Some(tx) = &self.tx else { return };
        let entry = Entry::Record(Box::new(self.line(record, outcome, latency_us)));
        match tx.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(entry)) => {
                let tx = tx.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(async move {
                            let _ = tx.send(entry).await;
                        });
                    }
                    Err(_) => {
                        let _ = tx.blocking_send(entry);
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the audit writer has stopped; a record could not be written");
            }
        }
    }

    /// Waits until every record queued before this call is written (and
    /// synced unless `fsync = "never"`).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Entry::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Records waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx
            .as_ref()
            .map(|tx| self.capacity.saturating_sub(tx.capacity()))
            .unwrap_or(0)
    }

    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// The `seq` of the last record written.
    pub fn last_seq(&self) -> u64 {
        self.stats.last_seq.load(Ordering::Relaxed)
    }

    /// Prometheus text for the audit series.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP mcp_gateway_audit_queue_depth Audit records waiting for the writer.\n\
             # TYPE mcp_gateway_audit_queue_depth gauge\nmcp_gateway_audit_queue_depth {}",
            self.queue_depth()
        );
        let _ = writeln!(
            out,
            "# HELP mcp_gateway_audit_records_total Audit records written.\n\
             # TYPE mcp_gateway_audit_records_total counter\nmcp_gateway_audit_records_total {}",
            self.stats.written.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP mcp_gateway_audit_write_errors_total Failed audit writes (retried, never dropped).\n\
             # TYPE mcp_gateway_audit_write_errors_total counter\nmcp_gateway_audit_write_errors_total {}",
            self.stats.write_errors.load(Ordering::Relaxed)
        );
        self.stats.write_seconds.render(
            out,
            "mcp_gateway_audit_write_duration_seconds",
            "Time to write (and sync) one batch of audit records.",
            "",
        );
    }

    /// The record's fields; `seq`, `prev_hash` and `hash` are filled in by
    /// the writer.
    fn line(&self, r: &Record, outcome: Outcome, latency_us: u64) -> line::Fields {
        let ts = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let target = match &r.call.target {
            Target::None => line::Target {
                kind: "none",
                name: None,
            },
            t @ (Target::Tool(n) | Target::Resource(n) | Target::Prompt(n)) => line::Target {
                kind: t.kind(),
                name: Some(n.clone()),
            },
        };
        let (outcome_name, error_code) = match outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Error(code) => ("error", Some(code)),
            Outcome::Timeout => ("timeout", Some(crate::mcp::code::BACKEND_TIMEOUT)),
            Outcome::Cancelled => ("cancelled", None),
        };
        let (args_sha256, arguments) = match (&r.arguments, self.redact) {
            (Some(args), true) => (Some(chain::sha256_canonical(args)), None),
            (Some(args), false) => (None, Some(args.clone())),
            (None, _) => (None, None),
        };
        let p = &r.principal;
        line::Fields {
            ts,
            request_id: r.request_id.clone(),
            session_id: r.session_id.clone(),
            transport: r.transport,
            tenant: p.tenant.clone(),
            sub: p.sub.clone(),
            client_id: p.client_id.clone(),
            actors: p.actors.clone(),
            auth: p.auth,
            method: r.method.clone(),
            target,
            backend: r.backend.clone(),
            decision: if r.decision.allow { "allow" } else { "deny" },
            policies: r.decision.policies.clone(),
            reason: r.decision.reason.clone(),
            outcome: outcome_name,
            error_code,
            latency_us,
            args_sha256,
            arguments,
            origin: r.origin.clone(),
            remote_addr: r.remote_addr.clone(),
            replica: self.replica.clone(),
        }
    }
}

/// The arguments of a tools/call or prompts/get, for the audit record.
pub fn arguments_of(params: Option<&serde_json::value::RawValue>) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Probe {
        arguments: Option<Value>,
    }
    params
        .and_then(|p| serde_json::from_str::<Probe>(p.get()).ok())
        .and_then(|p| p.arguments)
}
