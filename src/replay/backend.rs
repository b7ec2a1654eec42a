//! A fixture-driven MCP server: answers as the recorded backend did.
//!
//! Requests are matched to recorded gateway→backend requests by method and
//! normalized params (`normalize::match_key`), never by position, so calls
//! that arrive in another order still find their answers. A recorded
//! answer is used once while unused ones with the same key remain, then
//! reused (a client listing twice). The handshake (`initialize`,
//! `server/discover`) is answered from the fixture's `backend` lines;
//! `initialize` is answered for a stateless-era recording too (dual era).
//! Notifications the backend sent about a call are sent again, on the
//! call's own SSE stream (HTTP) or before the response (stdio), with the
//! progress token of the request being answered.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::fixture::{BackendFacts, Fixture};
use super::normalize::match_key;
use crate::mcp;
use crate::record::Dir;

enum Answer {
    Result(Value),
    Error(Value),
    Failure(String),
}

struct Recorded {
    method: String,
    key: Value,
    answer: Option<Answer>,
    notifications: Vec<Value>,
    used: bool,
}

struct Script {
    facts: Option<BackendFacts>,
    calls: Mutex<Vec<Recorded>>,
}

/// The backends of one fixture, ready to answer.
pub struct Scripted {
    backends: HashMap<String, Script>,
}

/// What to send back for one request: the backend's own messages about it
/// (notifications, and requests to the client) in recorded order, then the
/// response.
pub struct Reply {
    pub notifications: Vec<Value>,
    pub response: Value,
}

impl Scripted {
    pub fn from_fixture(fixture: &Fixture) -> Scripted {
        let mut backends: HashMap<String, Script> = HashMap::new();
        for facts in &fixture.backends {
            backends.insert(
                facts.backend.clone(),
                Script {
                    facts: Some(facts.clone()),
                    calls: Mutex::new(Vec::new()),
                },
            );
        }
        for b in &fixture.header.backends {
            backends.entry(b.name.clone()).or_insert_with(|| Script {
                facts: None,
                calls: Mutex::new(Vec::new()),
            });
        }
        // (backend, call) → index in that backend's list.
        let mut index: HashMap<(String, u64), usize> = HashMap::new();
        let mut lists: HashMap<String, Vec<Recorded>> = HashMap::new();
        // Requests first, then what the backend sent about each: the two
        // need not be in order in the file.
        for m in &fixture.messages {
            let (Some(backend), Some(call), Some(method)) = (&m.backend, m.call, m.method()) else {
                continue;
            };
            if m.dir != Dir::GatewayToBackend {
                continue;
            }
            let list = lists.entry(backend.clone()).or_default();
            index.insert((backend.clone(), call), list.len());
            list.push(Recorded {
                method: method.to_owned(),
                key: match_key(m.message.get("params")),
                answer: None,
                notifications: Vec::new(),
                used: false,
            });
        }
        for m in &fixture.messages {
            let (Some(backend), Some(call)) = (&m.backend, m.call) else {
                continue;
            };
            if m.dir != Dir::BackendToGateway {
                continue;
            }
            let Some(rec) = index
                .get(&(backend.clone(), call))
                .and_then(|i| lists.get_mut(backend)?.get_mut(*i))
            else {
                continue;
            };
            if let Some(f) = &m.failure {
                rec.answer = Some(Answer::Failure(f.clone()));
            } else if let Some(r) = m.message.get("result") {
                rec.answer = Some(Answer::Result(r.clone()));
            } else if let Some(e) = m.message.get("error") {
                rec.answer = Some(Answer::Error(e.clone()));
            } else if m.method().is_some() {
                // Notifications and server→client requests, in order.
                rec.notifications.push(m.message.clone());
            }
        }
        for (name, list) in lists {
            let script = backends.entry(name).or_insert_with(|| Script {
                facts: None,
                calls: Mutex::new(Vec::new()),
            });
            if let Ok(mut calls) = script.calls.lock() {
                *calls = list;
            }
        }
        Scripted { backends }
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.backends.keys().cloned().collect();
        v.sort();
        v
    }

    /// The answer to one message; `None` for notifications and responses.
    pub fn handle(&self, backend: &str, msg: &Value) -> Option<Reply> {
        let method = msg.get("method").and_then(Value::as_str)?;
        let id = msg.get("id").filter(|v| !v.is_null())?.clone();
        let params = msg.get("params");
        let script = self.backends.get(backend);
        let facts = script.and_then(|s| s.facts.as_ref());
        let respond = |payload: Result<Value, Value>| match payload {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
        };
        let plain = |response| {
            Some(Reply {
                notifications: Vec::new(),
                response,
            })
        };
        match (method, facts) {
            ("initialize", Some(f)) => {
                // A stateless-era recording answers the handshake too, so
                // handshake-era clients can use it (the server is dual-era).
                let requested = params
                    .and_then(|p| p.get("protocolVersion"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = if mcp::is_handshake_version(&f.protocol_version) {
                    f.protocol_version.as_str()
                } else if mcp::is_handshake_version(requested) {
                    requested
                } else {
                    mcp::LATEST_HANDSHAKE
                };
                let mut result = json!({
                    "protocolVersion": version,
                    "capabilities": f.capabilities,
                    "serverInfo": f.server_info,
                });
                if let (Some(i), Some(obj)) = (&f.instructions, result.as_object_mut()) {
                    obj.insert("instructions".into(), i.clone().into());
                }
                return plain(respond(Ok(result)));
            }
            ("server/discover", Some(f)) if f.era == "stateless" => {
                let mut result = json!({
                    "supportedVersions": [mcp::V2026],
                    "capabilities": f.capabilities,
                    "resultType": "complete",
                    "_meta": {mcp::META_SERVER_INFO: f.server_info},
                });
                if let (Some(i), Some(obj)) = (&f.instructions, result.as_object_mut()) {
                    obj.insert("instructions".into(), i.clone().into());
                }
                return plain(respond(Ok(result)));
            }
            ("initialize" | "server/discover", _) => {
                return plain(respond(Err(json!({
                    "code": mcp::code::METHOD_NOT_FOUND,
                    "message": format!("the recorded backend {backend:?} did not answer {method}"),
                }))));
            }
            ("ping", _) => return plain(respond(Ok(json!({})))),
            _ => {}
        }
        let key = match_key(params);
        let found = script.and_then(|s| {
            let mut calls = s.calls.lock().ok()?;
            let pick = calls
                .iter()
                .position(|c| !c.used && c.method == method && c.key == key)
                .or_else(|| {
                    calls
                        .iter()
                        .position(|c| c.method == method && c.key == key)
                })?;
            let c = calls.get_mut(pick)?;
            c.used = true;
            let answer = match &c.answer {
                Some(Answer::Result(r)) => Ok(r.clone()),
                Some(Answer::Error(e)) => Err(e.clone()),
                Some(Answer::Failure(f)) => Err(json!({
                    "code": mcp::code::INTERNAL_ERROR,
                    "message": format!("recorded backend failure: {f}"),
                })),
                None => Err(json!({
                    "code": mcp::code::INTERNAL_ERROR,
                    "message": "the recording has no answer to this request",
                })),
            };
            Some((answer, c.notifications.clone()))
        });
        let Some((answer, mut notifications)) = found else {
            return plain(respond(Err(json!({
                "code": mcp::code::INTERNAL_ERROR,
                "message": format!("no recorded answer for {method} on backend {backend:?}"),
                "data": {"method": method, "params": key},
            }))));
        };
        let token = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .cloned();
        for n in &mut notifications {
            if n.get("method").and_then(Value::as_str) == Some("notifications/progress")
                && let (Some(t), Some(p)) =
                    (&token, n.get_mut("params").and_then(Value::as_object_mut))
            {
                p.insert("progressToken".into(), t.clone());
            }
        }
        Some(Reply {
            notifications,
            response: respond(answer),
        })
    }
}

/// Streamable HTTP: `/{backend}/mcp` for every backend of the fixture, and
/// `/mcp` for `default`.
pub fn router(scripted: Arc<Scripted>, default: Option<String>) -> Router {
    let state = Arc::new(HttpState {
        scripted,
        default,
        asked: Mutex::new(HashMap::new()),
        next_ask: std::sync::atomic::AtomicU64::new(1),
    });
    Router::new()
        .route("/mcp", post(post_default).get(not_allowed).delete(deleted))
        .route(
            "/{backend}/mcp",
            post(post_named).get(not_allowed).delete(deleted),
        )
        .with_state(state)
}

struct HttpState {
    scripted: Arc<Scripted>,
    default: Option<String>,
    /// Requests sent to the client, waiting for its answer, by our id.
    asked: Mutex<HashMap<String, tokio::sync::oneshot::Sender<Value>>>,
    next_ask: std::sync::atomic::AtomicU64,
}

/// How long a recorded server→client request waits for the client.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn deleted() -> StatusCode {
    StatusCode::OK
}

async fn post_default(State(s): State<Arc<HttpState>>, body: Bytes) -> Response {
    let backend = s.default.clone().unwrap_or_default();
    answer_http(&s, &backend, &body)
}

async fn post_named(
    State(s): State<Arc<HttpState>>,
    Path(backend): Path<String>,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_http(&s, &backend, &body)
}

fn answer_http(state: &Arc<HttpState>, backend: &str, body: &[u8]) -> Response {
    let scripted = &state.scripted;
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": mcp::code::PARSE_ERROR, "message": "parse error"}});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    };
    let initialize = msg.get("method").and_then(Value::as_str) == Some("initialize");
    if msg.get("method").is_none()
        && let Some(id) = msg.get("id").and_then(Value::as_str)
        && let Some(waiting) = state.asked.lock().ok().and_then(|mut a| a.remove(id))
    {
        let _ = waiting.send(msg);
        return StatusCode::ACCEPTED.into_response();
    }
    let Some(reply) = scripted.handle(backend, &msg) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let asks = reply
        .notifications
        .iter()
        .any(|m| m.get("id").is_some_and(|i| !i.is_null()));
    let mut response = if reply.notifications.is_empty() {
        axum::Json(reply.response).into_response()
    } else if asks {
        // Requests to the client: each waits for its answer before the
        // stream goes on, as the recorded backend did.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
        let state = state.clone();
        tokio::spawn(async move {
            for mut m in reply.notifications {
                let waiting = match m.get("id") {
                    Some(id) if !id.is_null() => {
                        let n = state
                            .next_ask
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let ours = format!("fixture-{n}");
                        let (done, wait) = tokio::sync::oneshot::channel();
                        if let Ok(mut a) = state.asked.lock() {
                            a.insert(ours.clone(), done);
                        }
                        if let Some(obj) = m.as_object_mut() {
                            obj.insert("id".into(), ours.into());
                        }
                        Some(wait)
                    }
                    _ => None,
                };
                if tx.send(Ok(sse_event(&m))).await.is_err() {
                    return;
                }
                if let Some(wait) = waiting {
                    let _ = tokio::time::timeout(ASK_TIMEOUT, wait).await;
                }
            }
            let _ = tx.send(Ok(sse_event(&reply.response))).await;
        });
        let mut r =
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        let mut text = String::new();
        for m in reply
            .notifications
            .iter()
            .chain(std::iter::once(&reply.response))
        {
            text.push_str("event: message\ndata: ");
            text.push_str(&m.to_string());
            text.push_str("\n\n");
        }
        let chunks = futures::stream::iter([Ok::<_, Infallible>(Bytes::from(text))]);
        let mut r = Body::from_stream(chunks).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/event-stream"),
        );
        r
    };
    if initialize && let Ok(v) = header::HeaderValue::from_str(&crate::session::new_session_id()) {
        response.headers_mut().insert("mcp-session-id", v);
    }
    response
}

fn sse_event(m: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {m}\n\n"))
}

/// stdio: newline-delimited JSON-RPC for one backend until stdin closes.
/// Recorded requests to the client are sent, but the response does not
/// wait for their answers.
pub async fn serve_stdio(scripted: Arc<Scripted>, backend: String) -> std::io::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(reply) = scripted.handle(&backend, &msg) {
            for m in reply
                .notifications
                .iter()
                .chain(std::iter::once(&reply.response))
            {
                let mut text = m.to_string();
                text.push('\n');
                out.write_all(text.as_bytes()).await?;
            }
            out.flush().await?;
        }
    }
    Ok(())
}
