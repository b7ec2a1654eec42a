//! record: the messages of a session → one JSON Lines fixture file
//! (`fixtures/README.md`, `schemas/fixture.schema.json`).
//!
//! In: what `session` sees on both hops — client→gateway, gateway→client,
//! gateway→backend, backend→gateway — with the policy decision of each
//! client request. Out: files under `[record] dir`, written by one writer
//! thread fed by a bounded queue. Never blocks the request path: when the
//! queue is full the message is dropped, counted, and the fixture gets a
//! `gap` line (replay refuses such a fixture). Never sees an HTTP header, so
//! tokens and API keys cannot reach a fixture; tool arguments are replaced by
//! their SHA-256 unless `record.include_arguments` is set.
//!
//! One fixture per handshake-era session. Stateless (2026-07-28) clients
//! share a context per principal, route and declared capabilities
//! (`Gateway::stateless_context`); its exchanges go to one fixture until
//! `record.group_window_s` pass without a message, then a new fixture
//! starts (same header, same backend lines).

mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::backend::{ClientBound, ServerFacts};
use crate::config::{BackendTransport, Config, ProtocolPreference, RecordConfig};
use crate::mcp::{Envelope, Era, ResponsePayload};
use crate::policy::Decision;

/// The fixture format this build writes and replays.
pub const FORMAT: &str = "mcp-gateway-fixture";
pub const FORMAT_VERSION: u64 = 1;
/// Key of the object standing in for redacted tool arguments.
pub const REDACTED_KEY: &str = "_redacted_sha256";

/// The direction of a recorded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ClientToGateway,
    GatewayToClient,
    GatewayToBackend,
    BackendToGateway,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::ClientToGateway => "client_to_gateway",
            Dir::GatewayToClient => "gateway_to_client",
            Dir::GatewayToBackend => "gateway_to_backend",
            Dir::BackendToGateway => "backend_to_gateway",
        }
    }

    pub fn parse(s: &str) -> Option<Dir> {
        Some(match s {
            "client_to_gateway" => Dir::ClientToGateway,
            "gateway_to_client" => Dir::GatewayToClient,
            "gateway_to_backend" => Dir::GatewayToBackend,
            "backend_to_gateway" => Dir::BackendToGateway,
            _ => return None,
        })
    }
}

enum Job {
    Line {
        key: Arc<str>,
        at: Instant,
        line: Value,
    },
    /// A header or backend line, repeated at the top of every file of the key.
    Sticky {
        key: Arc<str>,
        line: Value,
        stateless: bool,
    },
    Close {
        key: Arc<str>,
    },
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The gateway's recorder: hands out one `Tape` per session.
pub struct Recorder {
    tx: mpsc::Sender<Job>,
    include_arguments: bool,
    config_digest: String,
}

impl Recorder {
    /// Starts the writer thread; `None` when recording is off or the
    /// directory cannot be created (logged).
    pub fn start(config: &Config) -> Option<Arc<Recorder>> {
        Self::start_with(config, &config.record)
    }

    pub fn start_with(config: &Config, record: &RecordConfig) -> Option<Arc<Recorder>> {
        let dir = record.dir.clone()?;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the record directory; recording is off");
            return None;
        }
        let (tx, rx) = mpsc::channel(record.queue_messages);
        let window = record.group_window;
        let spawned = std::thread::Builder::new()
            .name("mcp-record".into())
            .spawn(move || writer::run(rx, dir, window));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the record writer; recording is off");
            return None;
        }
        Some(Arc::new(Recorder {
            tx,
            include_arguments: record.include_arguments,
            config_digest: config_digest(config),
        }))
    }

    /// A tape for one session (or stateless context).
    pub fn tape(self: &Arc<Self>, info: TapeInfo<'_>) -> Arc<Tape> {
        let key: Arc<str> = Arc::from(info.session_id);
        let backends: Vec<Value> = info
            .backends
            .iter()
            .map(|b| {
                json!({
                    "name": b.name.as_str(),
                    "transport": transport_name(&b.transport),
                    "protocol": match &b.protocol {
                        ProtocolPreference::Auto => "auto",
                        ProtocolPreference::Fixed(v) => v.as_str(),
                    },
                })
            })
            .collect();
        let header = json!({
            "type": "header",
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "gateway_version": env!("CARGO_PKG_VERSION"),
            "config_digest": self.config_digest,
            "session": info.session_id,
            "era": era_name(info.era),
            "protocol_version": info.protocol_version,
            "transport": info.transport,
            "route": info.route,
            "principal": {
                "sub": info.principal.sub,
                "tenant": info.principal.tenant,
                "client_id": info.principal.client_id,
                "scopes": info.principal.scopes,
                "auth": info.principal.auth,
            },
            "include_arguments": self.include_arguments,
            "backends": backends,
        });
        let tape = Arc::new(Tape {
            recorder: self.clone(),
            key: key.clone(),
            stateless: info.era == Era::Stateless,
            lost: AtomicU64::new(0),
            next_call: AtomicU64::new(1),
        });
        tape.send_sticky(header);
        tape
    }

    /// Waits until everything queued so far is on disk.
    pub async fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Job::Flush(tx)).await.is_ok() {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }
}

/// What a tape's header says about its session.
pub struct TapeInfo<'a> {
    pub session_id: &'a str,
    pub era: Era,
    pub protocol_version: &'a str,
    pub transport: &'a str,
    pub route: &'a str,
    /// Who: subject, tenant, client id, scopes and how they were proven
    /// (never the credential itself).
    pub principal: &'a crate::auth::Principal,
    pub backends: Vec<&'a crate::config::BackendConfig>,
}

/// The recording of one session.
pub struct Tape {
    recorder: Arc<Recorder>,
    key: Arc<str>,
    stateless: bool,
    /// Messages dropped since the last `gap` line.
    lost: AtomicU64,
    next_call: AtomicU64,
}

impl Drop for Tape {
    fn drop(&mut self) {
        let job = Job::Close {
            key: self.key.clone(),
        };
        if let Err(mpsc::error::TrySendError::Full(job)) = self.recorder.tx.try_send(job)
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let tx = self.recorder.tx.clone();
            handle.spawn(async move {
                let _ = tx.send(job).await;
            });
        }
    }
}

impl Tape {
    fn send_sticky(&self, line: Value) {
        let job = Job::Sticky {
            key: self.key.clone(),
            line,
            stateless: self.stateless,
        };
        if self.recorder.tx.try_send(job).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&self, line: Value) {
        let lost = self.lost.load(Ordering::Relaxed);
        if lost > 0 {
            let gap = Job::Line {
                key: self.key.clone(),
                at: Instant::now(),
                line: json!({"type": "gap", "lost": lost}),
            };
            if self.recorder.tx.try_send(gap).is_err() {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.lost.fetch_sub(lost, Ordering::Relaxed);
        }
        let job = Job::Line {
            key: self.key.clone(),
            at: Instant::now(),
            line,
        };
        if self.recorder.tx.try_send(job).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(session.id = %self.key, "record queue full, message dropped");
        }
    }

    /// A new number linking a gateway→backend request to what the backend
    /// sends about it.
    pub fn next_call(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// What a backend said about itself when the session connected to it.
    pub fn backend_facts(&self, backend: &str, facts: &ServerFacts) {
        self.send_sticky(json!({
            "type": "backend",
            "backend": backend,
            "era": era_name(facts.era),
            "protocol_version": facts.protocol_version,
            "server_info": facts.server_info,
            "capabilities": facts.capabilities,
            "instructions": facts.instructions,
        }));
    }

    /// A message on the client hop.
    pub fn client(&self, dir: Dir, env: &Envelope, decision: Option<&Decision>) {
        let mut line = self.message(dir, envelope_value(env), None, None);
        if let (Some(d), Some(obj)) = (decision, line.as_object_mut()) {
            obj.insert("decision".into(), decision_value(d));
        }
        self.send(line);
    }

    /// A request or notification the gateway sends to a backend.
    pub fn to_backend(
        &self,
        backend: &str,
        call: Option<u64>,
        method: &str,
        params: Option<&serde_json::value::RawValue>,
    ) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let (Some(p), Some(obj)) = (params, message.as_object_mut()) {
            obj.insert(
                "params".into(),
                serde_json::from_str(p.get()).unwrap_or(Value::Null),
            );
        }
        self.send(self.message(Dir::GatewayToBackend, message, Some(backend), call));
    }

    /// A backend's answer to call `call`.
    pub fn from_backend_result(
        &self,
        backend: &str,
        call: u64,
        result: &Result<ResponsePayload, crate::backend::BackendError>,
    ) {
        let message = match result {
            Ok(ResponsePayload::Result(r)) => {
                json!({"jsonrpc": "2.0", "result": serde_json::from_str::<Value>(r.get()).unwrap_or(Value::Null)})
            }
            Ok(ResponsePayload::Error(e)) => {
                json!({"jsonrpc": "2.0", "error": serde_json::from_str::<Value>(e.get()).unwrap_or(Value::Null)})
            }
            Err(e) => {
                let mut line = self.message(
                    Dir::BackendToGateway,
                    Value::Null,
                    Some(backend),
                    Some(call),
                );
                if let Some(obj) = line.as_object_mut() {
                    obj.remove("message");
                    obj.insert("failure".into(), e.to_string().into());
                }
                self.send(line);
                return;
            }
        };
        self.send(self.message(Dir::BackendToGateway, message, Some(backend), Some(call)));
    }

    /// A backend's own message (notification or server→client request),
    /// about call `call` when it came on that call's stream.
    pub fn from_backend(&self, backend: Option<&str>, call: Option<u64>, msg: &ClientBound) {
        let message = match msg {
            ClientBound::Notification { method, params } => {
                let mut m = json!({"jsonrpc": "2.0", "method": method});
                if let (Some(p), Some(obj)) = (params, m.as_object_mut()) {
                    obj.insert(
                        "params".into(),
                        serde_json::from_str(p.get()).unwrap_or(Value::Null),
                    );
                }
                m
            }
            ClientBound::Request {
                server_id,
                method,
                params,
                ..
            } => {
                let mut m = json!({"jsonrpc": "2.0", "id": server_id, "method": method});
                if let (Some(p), Some(obj)) = (params, m.as_object_mut()) {
                    obj.insert(
                        "params".into(),
                        serde_json::from_str(p.get()).unwrap_or(Value::Null),
                    );
                }
                m
            }
        };
        self.send(self.message(Dir::BackendToGateway, message, backend, call));
    }

    fn message(
        &self,
        dir: Dir,
        mut message: Value,
        backend: Option<&str>,
        call: Option<u64>,
    ) -> Value {
        if !self.recorder.include_arguments {
            redact_arguments(&mut message);
        }
        let mut line = json!({"type": "message", "dir": dir.as_str()});
        if let Some(obj) = line.as_object_mut() {
            if let Some(b) = backend {
                obj.insert("backend".into(), b.into());
            }
            if let Some(c) = call {
                obj.insert("call".into(), c.into());
            }
            obj.insert("message".into(), message);
        }
        line
    }
}

fn envelope_value(env: &Envelope) -> Value {
    serde_json::from_str(&env.to_json()).unwrap_or(Value::Null)
}

fn decision_value(d: &Decision) -> Value {
    json!({
        "allow": d.allow,
        "policies": d.policies,
        "reason": d.reason,
    })
}

/// `tools/call` arguments → `{"_redacted_sha256": "<hex of their JSON>"}`.
pub fn redact_arguments(message: &mut Value) {
    if message.get("method").and_then(Value::as_str) != Some("tools/call") {
        return;
    }
    let Some(args) = message
        .get_mut("params")
        .and_then(|p| p.get_mut("arguments"))
    else {
        return;
    };
    if args.get(REDACTED_KEY).is_some() {
        return;
    }
    let digest = hex::encode(Sha256::digest(args.to_string().as_bytes()));
    *args = json!({ REDACTED_KEY: digest });
}

pub fn era_name(era: Era) -> &'static str {
    match era {
        Era::Handshake => "handshake",
        Era::Stateless => "stateless",
    }
}

fn transport_name(t: &BackendTransport) -> &'static str {
    match t {
        BackendTransport::Stdio { .. } => "stdio",
        BackendTransport::StreamableHttp { .. } => "streamable_http",
        BackendTransport::Sse { .. } => "sse",
        BackendTransport::WebSocket { .. } => "websocket",
    }
}

/// SHA-256 of the validated config as the gateway sees it (secrets masked
/// by their `Debug`), so two fixtures tell whether the config changed.
fn config_digest(config: &Config) -> String {
    let mut c = config.clone();
    // Where the fixtures go is not part of the behaviour being recorded.
    c.record.dir = None;
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(format!("{c:?}").as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(capacity: usize) -> (Arc<Recorder>, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(capacity);
        let r = Arc::new(Recorder {
            tx,
            include_arguments: false,
            config_digest: "sha256:x".into(),
        });
        (r, rx)
    }

    fn tape(r: &Arc<Recorder>) -> Arc<Tape> {
        r.tape(TapeInfo {
            session_id: "s",
            era: Era::Handshake,
            protocol_version: "2025-06-18",
            transport: "streamable_http",
            route: "",
            principal: &crate::auth::Principal::anonymous(),
            backends: Vec::new(),
        })
    }

    fn line(job: Option<Job>) -> Value {
        match job {
            Some(Job::Line { line, .. }) | Some(Job::Sticky { line, .. }) => line,
            _ => Value::Null,
        }
    }

    #[test]
    fn a_full_queue_drops_and_the_fixture_says_how_many() {
        let (r, mut rx) = recorder(1);
        let t = tape(&r); // the header fills the queue
        let ping = Envelope::notification("notifications/message", None);
        t.client(Dir::GatewayToClient, &ping, None);
        t.client(Dir::GatewayToClient, &ping, None);
        assert_eq!(line(rx.try_recv().ok())["type"], "header");
        t.client(Dir::GatewayToClient, &ping, None);
        assert_eq!(line(rx.try_recv().ok()), json!({"type": "gap", "lost": 2}));
    }

    #[test]
    fn tool_arguments_are_hashed_unless_asked_for() {
        let mut m = json!({"method": "tools/call", "params": {"name": "x", "arguments": {"token": "hunter2"}}});
        redact_arguments(&mut m);
        let args = m["params"]["arguments"].to_string();
        assert!(!args.contains("hunter2"), "{args}");
        assert_eq!(
            m["params"]["arguments"][REDACTED_KEY]
                .as_str()
                .map(str::len),
            Some(64)
        );
        let before = m.clone();
        redact_arguments(&mut m);
        assert_eq!(m, before, "redacting twice changes nothing");
    }
}
