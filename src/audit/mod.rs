//! audit: one record per decided message, with the decision and then the
//! outcome. Never drops a record.
//!
//! This build writes nothing (the seam); the audit issue gives `AuditSink` a
//! bounded queue and a hash-chained file writer. Every routed message already
//! produces a `Record` and reports its outcome here.

use std::sync::Arc;

use crate::auth::Principal;
use crate::mcp::Call;
use crate::policy::Decision;

#[derive(Debug, Clone)]
pub struct Record {
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub transport: &'static str,
    pub principal: Principal,
    pub call: Call,
    pub backend: Option<String>,
    pub decision: Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error(i64),
    Timeout,
    Cancelled,
}

pub struct AuditSink {
    _private: (),
}

impl AuditSink {
    pub fn disabled() -> Arc<AuditSink> {
        Arc::new(AuditSink { _private: () })
    }

    pub async fn record(&self, _record: &Record, _outcome: Outcome, _latency_us: u64) {}
}
