//! One audit line as a typed value, built on the request path without a
//! JSON map, and written twice by the writer: in canonical form (keys
//! sorted, no whitespace: what `hash` covers, see `chain`) and as the line
//! itself, in CONTRACT.md's field order. `chain::record_hash` of the
//! written line, parsed back, equals the hash computed here (tested), so
//! `audit verify` needs no knowledge of this type.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

/// The fields the request path knows; the writer adds `seq`, `prev_hash`
/// and `hash`.
#[derive(Debug, Clone)]
pub struct Fields {
    pub ts: String,
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub transport: &'static str,
    pub tenant: Option<String>,
    pub sub: String,
    pub client_id: Option<String>,
    pub actors: Vec<String>,
    pub auth: &'static str,
    pub method: String,
    pub target: Target,
    pub backend: Option<String>,
    pub decision: &'static str,
    pub policies: Vec<String>,
    pub reason: String,
    pub outcome: &'static str,
    pub error_code: Option<i64>,
    pub latency_us: u64,
    pub args_sha256: Option<String>,
    /// Only when `audit.redact_arguments = false`.
    pub arguments: Option<Value>,
    pub origin: Option<String>,
    pub remote_addr: Option<String>,
    /// The replica writing this log (`[state] replica_id`).
    pub replica: std::sync::Arc<str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    // Sorted: this object is written as is in both forms.
    pub kind: &'static str,
    pub name: Option<String>,
}

/// The line as written: CONTRACT.md's order.
#[derive(Serialize)]
struct Written<'a> {
    ts: &'a str,
    seq: u64,
    prev_hash: &'a str,
    hash: &'a str,
    request_id: &'a Option<String>,
    session_id: &'a Option<String>,
    transport: &'a str,
    tenant: &'a Option<String>,
    sub: &'a str,
    client_id: &'a Option<String>,
    actors: &'a [String],
    auth: &'a str,
    method: &'a str,
    target: &'a Target,
    backend: &'a Option<String>,
    decision: &'a str,
    policies: &'a [String],
    reason: &'a str,
    outcome: &'a str,
    error_code: Option<i64>,
    latency_us: u64,
    args_sha256: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: &'a Option<Value>,
    origin: &'a Option<String>,
    remote_addr: &'a Option<String>,
    replica: &'a str,
}

/// What `hash` covers: every key but `hash`, sorted bytewise.
#[derive(Serialize)]
struct Hashed<'a> {
    actors: &'a [String],
    args_sha256: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<Canonical<'a>>,
    auth: &'a str,
    backend: &'a Option<String>,
    client_id: &'a Option<String>,
    decision: &'a str,
    error_code: Option<i64>,
    latency_us: u64,
    method: &'a str,
    origin: &'a Option<String>,
    outcome: &'a str,
    policies: &'a [String],
    prev_hash: &'a str,
    reason: &'a str,
    remote_addr: &'a Option<String>,
    replica: &'a str,
    request_id: &'a Option<String>,
    seq: u64,
    session_id: &'a Option<String>,
    sub: &'a str,
    target: &'a Target,
    tenant: &'a Option<String>,
    transport: &'a str,
    ts: &'a str,
}

/// Any JSON with its object keys sorted at every level.
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    out.serialize_entry(k, &Canonical(v))?;
                }
                out.end()
            }
            Value::Array(items) => s.collect_seq(items.iter().map(Canonical)),
            other => other.serialize(s),
        }
    }
}

impl Fields {
    /// The hex `hash` of this record at `seq` after `prev_hash`.
    pub fn hash(&self, seq: u64, prev_hash: &str) -> String {
        use sha2::{Digest, Sha256};
        let hashed = Hashed {
            actors: &self.actors,
            args_sha256: &self.args_sha256,
            arguments: self.arguments.as_ref().map(Canonical),
            auth: self.auth,
            backend: &self.backend,
            client_id: &self.client_id,
            decision: self.decision,
            error_code: self.error_code,
            latency_us: self.latency_us,
            method: &self.method,
            origin: &self.origin,
            outcome: self.outcome,
            policies: &self.policies,
            prev_hash,
            reason: &self.reason,
            remote_addr: &self.remote_addr,
            replica: &self.replica,
            request_id: &self.request_id,
            seq,
            session_id: &self.session_id,
            sub: &self.sub,
            target: &self.target,
            tenant: &self.tenant,
            transport: self.transport,
            ts: &self.ts,
        };
        let mut text = Vec::with_capacity(1024);
        // Serializing plain values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut text, &hashed);
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(&text);
        hex::encode(hasher.finalize())
    }

    /// The line to write (with its newline).
    pub fn written(&self, seq: u64, prev_hash: &str, hash: &str) -> Vec<u8> {
        let line = Written {
            ts: &self.ts,
            seq,
            prev_hash,
            hash,
            request_id: &self.request_id,
            session_id: &self.session_id,
            transport: self.transport,
            tenant: &self.tenant,
            sub: &self.sub,
            client_id: &self.client_id,
            actors: &self.actors,
            auth: self.auth,
            method: &self.method,
            target: &self.target,
            backend: &self.backend,
            decision: self.decision,
            policies: &self.policies,
            reason: &self.reason,
            outcome: self.outcome,
            error_code: self.error_code,
            latency_us: self.latency_us,
            args_sha256: &self.args_sha256,
            arguments: &self.arguments,
            origin: &self.origin,
            remote_addr: &self.remote_addr,
            replica: &self.replica,
        };
        let mut out = Vec::with_capacity(1024);
        let _ = serde_json::to_writer(&mut out, &line);
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{GENESIS, record_hash};

    fn sample(arguments: Option<Value>) -> Fields {
        Fields {
            ts: "2026-11-28T16:00:00.123Z".into(),
            request_id: Some("7".into()),
            session_id: None,
            transport: "streamable_http",
            tenant: Some("acme".into()),
            sub: "alice \"q\" é".into(),
            client_id: None,
            actors: vec!["bot".into(), "ci".into()],
            auth: "jwt",
            method: "tools/call".into(),
            target: Target {
                kind: "tool",
                name: Some("echo".into()),
            },
            backend: Some("demo".into()),
            decision: "allow",
            policies: vec!["allow-all".into()],
            reason: "permitted by allow-all\n".into(),
            outcome: "error",
            error_code: Some(-32003),
            latency_us: 321,
            args_sha256: None,
            arguments,
            origin: None,
            remote_addr: Some("127.0.0.1:1".into()),
            replica: "gw-1".into(),
        }
    }

    #[test]
    fn the_written_line_verifies_with_the_generic_hash() {
        let nested = serde_json::json!({"z": [{"b": 1, "a": 2.5}], "a": null, "m": "x\u{1}"});
        for fields in [sample(None), sample(Some(nested))] {
            let hash = fields.hash(9, GENESIS);
            let line = fields.written(9, GENESIS, &hash);
            assert_eq!(line.last(), Some(&b'\n'));
            let parsed: serde_json::Map<String, Value> =
                serde_json::from_slice(&line).expect("a JSON object");
            assert_eq!(record_hash(GENESIS, &parsed), hash);
            assert_eq!(parsed["hash"], hash.as_str());
            assert_eq!(parsed["seq"], 9);
            let keys: Vec<&str> = parsed.keys().map(String::as_str).collect();
            assert_eq!(&keys[..4], ["ts", "seq", "prev_hash", "hash"]);
            assert_eq!(parsed.contains_key("arguments"), fields.arguments.is_some());
        }
        // Another prev_hash, another hash.
        let fields = sample(None);
        assert_ne!(fields.hash(9, GENESIS), fields.hash(9, &"1".repeat(64)));
    }
}
