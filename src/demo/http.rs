//! Streamable HTTP transport at `/mcp`, both eras on one endpoint:
//! - 2026-07-28 (a non-handshake `MCP-Protocol-Version`, or a `_meta` protocol version
//!   without a session): stateless POSTs, routing headers checked (`-32020`), no session
//!   id minted, GET/DELETE → 405; closing a response stream cancels its request.
//! - handshake era: `initialize` mints `Mcp-Session-Id`; GET opens the session's change
//!   stream; server→client requests ride the POST's SSE stream; DELETE ends the session.
//!
//! The GET stream is resumable: every event has an id, the session keeps
//! the last `EVENT_LOG` of them (also those sent while no GET stream was
//! open), and a GET with `Last-Event-ID` replays what followed. POST
//! response streams have no ids and never batch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::core::{self, Ctx, Demo, EnvelopeCheck, Era, PendingRequests, RpcError, Session};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
/// SSE comment interval: keeps idle streams open behind proxies and lets us notice a
/// closed connection (hyper only sees it on write).
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A `tools/call` that emits nothing for this long gets its SSE stream committed anyway.
const COMMIT_SSE_AFTER: Duration = Duration::from_secs(2);
const STREAM_QUEUE: usize = 64;
/// GET-stream events a session keeps for `Last-Event-ID`.
const EVENT_LOG: usize = 256;

struct HttpState {
    demo: Arc<Demo>,
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
}

impl HttpState {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<HttpSession>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A handshake-era session plus its HTTP-side bookkeeping.
struct HttpSession {
    session: Arc<Session>,
    /// Requests `notifications/cancelled` may cancel, by serialized JSON-RPC id.
    in_flight: Mutex<HashMap<String, CancellationToken>>,
    /// The open GET stream, replaced when the client opens another.
    get_stream: Mutex<Option<CancellationToken>>,
    /// What the session's GET stream carried or would have carried.
    events: Mutex<EventLog>,
    /// Cancelled when the session ends (stops its event logger).
    ended: CancellationToken,
}

/// The GET stream's numbered events, and where live ones go.
#[derive(Default)]
struct EventLog {
    next_id: u64,
    entries: std::collections::VecDeque<(u64, Value)>,
    live: Option<mpsc::Sender<(u64, Value)>>,
}

impl HttpSession {
    fn in_flight(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get_stream(&self) -> MutexGuard<'_, Option<CancellationToken>> {
        self.get_stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn events(&self) -> MutexGuard<'_, EventLog> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn log_event(&self, message: Value) {
        let mut log = self.events();
        log.next_id += 1;
        let id = log.next_id;
        if log.entries.len() == EVENT_LOG {
            log.entries.pop_front();
        }
        log.entries.push_back((id, message.clone()));
        if let Some(live) = &log.live
            && live.try_send((id, message)).is_err()
        {
            // A slow or gone listener resumes from the log.
            log.live = None;
        }
    }

    fn close(&self) {
        self.ended.cancel();
        if let Some(stream) = self.get_stream().take() {
            stream.cancel();
        }
        for (_, request) in self.in_flight().drain() {
            request.cancel();
        }
        self.session.pending.fail_all();
    }
}

pub(crate) fn router(demo: Arc<Demo>) -> Router {
    let state = Arc::new(HttpState {
        demo,
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .with_state(state)
}

// ---- responses ----

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, id: &Value, error: RpcError) -> Response {
    json_response(status, &core::response(id, Err(error)))
}

fn empty(status: StatusCode) -> Response {
    status.into_response()
}

fn sse_frame(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

struct SseState {
    first: Option<Value>,
    messages: mpsc::Receiver<Value>,
    keep_alive: tokio::time::Interval,
    /// Dropped with the body: when the client goes away, the work stops.
    _cancel_on_drop: DropGuard,
}

/// The GET stream: numbered events, keep-alives.
fn sse_response_with_ids(messages: mpsc::Receiver<(u64, Value)>, guard: DropGuard) -> Response {
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let keep_alive = tokio::time::interval_at(start, KEEP_ALIVE);
    let stream = futures::stream::unfold(
        (messages, keep_alive, guard),
        |(mut messages, mut keep_alive, guard)| async move {
            let frame = tokio::select! {
                message = messages.recv() => {
                    let (id, message) = message?;
                    Bytes::from(format!("id: {id}\nevent: message\ndata: {message}\n\n"))
                }
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok::<_, Infallible>(frame), (messages, keep_alive, guard)))
        },
    );
    event_stream(stream)
}

fn sse_response(
    first: Option<Value>,
    messages: mpsc::Receiver<Value>,
    guard: DropGuard,
) -> Response {
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let state = SseState {
        first,
        messages,
        keep_alive: tokio::time::interval_at(start, KEEP_ALIVE),
        _cancel_on_drop: guard,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        if let Some(first) = state.first.take() {
            return Some((Ok::<_, Infallible>(sse_frame(&first)), state));
        }
        tokio::select! {
            message = state.messages.recv() => message.map(|message| (Ok(sse_frame(&message)), state)),
            _ = state.keep_alive.tick() => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), state)),
        }
    });
    event_stream(stream)
}

fn is_error_response(message: &Value) -> bool {
    message.get("method").is_none() && message.get("error").is_some()
}

/// How a request's reply is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `application/json` (the request emits nothing before its response).
    Json,
    /// `text/event-stream`, unless the request fails before emitting anything.
    Stream,
}

/// Runs one request in its own task and frames its messages as the reply.
async fn serve_request(
    demo: Arc<Demo>,
    era: Era,
    id: Value,
    method: String,
    params: Value,
    framing: Framing,
    cancellable: Option<(Arc<HttpSession>, String)>,
) -> Response {
    let modern = matches!(era, Era::Modern(_));
    let cancel = CancellationToken::new();
    if let Some((http_session, key)) = &cancellable {
        http_session.in_flight().insert(key.clone(), cancel.clone());
    }
    let (out, mut messages) = mpsc::channel(STREAM_QUEUE);
    let task_cancel = cancel.clone();
    tokio::spawn(async move {
        let ctx = Ctx::new(era.clone(), id.clone(), out.clone());
        let outcome = tokio::select! {
            // Cancellation that arrived first wins over a result that became ready with it.
            biased;
            () = task_cancel.cancelled() => {
                tracing::debug!(rpc.method = %method, rpc.id = %id, "demo http request cancelled");
                None
            }
            outcome = core::handle_request(&demo, &ctx, &method, &params) => Some(outcome),
        };
        if let Some((http_session, key)) = cancellable {
            http_session.in_flight().remove(&key);
        }
        if let Some(outcome) = outcome {
            let outcome = outcome.map(|result| core::finish(&era, &method, &params, result));
            let _ = out.send(core::response(&id, outcome)).await;
        }
    });
    // From here on, dropping this future (client gone) cancels the request.
    let guard = cancel.drop_guard();
    let first = match framing {
        Framing::Json => messages.recv().await,
        Framing::Stream => match tokio::time::timeout(COMMIT_SSE_AFTER, messages.recv()).await {
            Ok(first) => first,
            Err(_) => return sse_response(None, messages, guard),
        },
    };
    let Some(first) = first else {
        // Cancelled before answering (session deleted): nothing to say.
        return empty(StatusCode::ACCEPTED);
    };
    if framing == Framing::Json || is_error_response(&first) {
        let status = match first.get("error") {
            // Error status mapping is a 2026-07-28 rule; the handshake era answers 200.
            Some(_) if modern => first
                .get("error")
                .and_then(|e| e.get("code"))
                .and_then(Value::as_i64)
                .map(status_for_code)
                .unwrap_or(StatusCode::OK),
            _ => StatusCode::OK,
        };
        return json_response(status, &first);
    }
    sse_response(Some(first), messages, guard)
}

/// HTTP status of a 2026-07-28 error reply (`S2026-07-28/basic/index.mdx`, Error Codes);
/// codes the table does not name keep 200, as the Python SDK does.
fn status_for_code(code: i64) -> StatusCode {
    match code {
        -32601 => StatusCode::NOT_FOUND,
        -32603 => StatusCode::INTERNAL_SERVER_ERROR,
        -32700 | -32600 | -32602 | -32020 | -32021 | -32022 => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

// ---- request checks ----

/// `Origin`, when present, must be a loopback origin (DNS-rebinding defence; 403).
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "[::1]"
    )
}

fn forbidden_origin() -> Response {
    let error = RpcError::InvalidRequest("origin not allowed".into());
    error_response(StatusCode::FORBIDDEN, &Value::Null, error)
}

fn media_types(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|item| {
            item.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect()
}

/// `(accepts JSON, accepts SSE)`, wildcards included.
fn accepts(headers: &HeaderMap) -> (bool, bool) {
    let types = media_types(headers, header::ACCEPT);
    let any = types.iter().any(|t| t == "*/*");
    let json = any
        || types
            .iter()
            .any(|t| t == "application/json" || t == "application/*");
    let sse = any
        || types
            .iter()
            .any(|t| t == "text/event-stream" || t == "text/*");
    (json, sse)
}

/// A header as text: `Ok(None)` when absent, `Err` when not visible ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    headers
        .get(name)
        .map(|value| value.to_str().map_err(|_| ()))
        .transpose()
}

/// Decodes the `=?base64?…?=` sentinel of `Mcp-Name`/`Mcp-Param-*`; `None` if malformed.
fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(payload) => {
            let bytes = BASE64.decode(payload).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// SEP-2243 routing-header checks for a 2026-07-28 request.
fn check_routing_headers(
    headers: &HeaderMap,
    body_version: &str,
    method: &str,
    params: &Value,
) -> Result<(), RpcError> {
    let mismatch = |what: &'static str| Err(RpcError::HeaderMismatch(what.into()));
    for name in [VERSION_HEADER, METHOD_HEADER, NAME_HEADER] {
        if headers.get_all(name).iter().count() > 1 {
            return mismatch("a routing header appears more than once");
        }
    }
    if header_text(headers, VERSION_HEADER) != Ok(Some(body_version)) {
        return mismatch(
            "MCP-Protocol-Version header does not match params._meta protocol version",
        );
    }
    if header_text(headers, METHOD_HEADER) != Ok(Some(method)) {
        return mismatch("Mcp-Method header does not match the request method");
    }
    let name_key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    if let Some(body_name) = params.get(name_key).and_then(Value::as_str) {
        let header_name = header_text(headers, NAME_HEADER)
            .ok()
            .flatten()
            .and_then(decode_header_value);
        if header_name.as_deref() != Some(body_name) {
            return mismatch("Mcp-Name header does not match the request body");
        }
    }
    Ok(())
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to something unique, if guessable (demo only).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    hex::encode(bytes)
}

fn id_key(id: &Value) -> Option<String> {
    (id.is_string() || id.is_number()).then(|| id.to_string())
}

// ---- handlers ----

async fn post_mcp(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !origin_allowed(&headers) {
        return forbidden_origin();
    }
    if media_types(&headers, header::CONTENT_TYPE)
        .first()
        .map(String::as_str)
        != Some("application/json")
    {
        return empty(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let (accepts_json, accepts_sse) = accepts(&headers);
    if !(accepts_json && accepts_sse) {
        return empty(StatusCode::NOT_ACCEPTABLE);
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(_) => return error_response(StatusCode::BAD_REQUEST, &Value::Null, RpcError::Parse),
    };
    if !message.is_object() {
        let error =
            RpcError::InvalidRequest("expected one JSON-RPC message object (no batches)".into());
        return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
    }
    let method = message.get("method").and_then(Value::as_str);
    let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
    let Ok(version_header) = header_text(&headers, VERSION_HEADER) else {
        let error =
            RpcError::HeaderMismatch("MCP-Protocol-Version header is not visible ASCII".into());
        return error_response(
            StatusCode::BAD_REQUEST,
            message.get("id").unwrap_or(&Value::Null),
            error,
        );
    };
    let session_header = header_text(&headers, SESSION_HEADER)
        .ok()
        .flatten()
        .map(str::to_owned);
    let body_has_version = params
        .get("_meta")
        .and_then(|meta| meta.get(core::META_PROTOCOL_VERSION))
        .is_some();
    // Dual-era routing: a modern version header (or a modern body on a session-less POST).
    let modern = method != Some("initialize")
        && (version_header.is_some_and(|v| !core::HANDSHAKE_VERSIONS.contains(&v))
            || (session_header.is_none() && body_has_version));
    if modern {
        post_modern(state, &headers, message, version_header, params).await
    } else {
        post_handshake(state, message, session_header, params).await
    }
}

async fn post_modern(
    state: Arc<HttpState>,
    headers: &HeaderMap,
    message: Value,
    version_header: Option<&str>,
    params: Value,
) -> Response {
    let Some(id) = message.get("id").cloned() else {
        if message.get("method").and_then(Value::as_str).is_none() {
            let error = RpcError::InvalidRequest("message has no method".into());
            return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
        }
        // No client→server notification means anything over 2026-07-28 HTTP: accept and drop.
        if let Some(version) = version_header.filter(|v| *v != core::MODERN_VERSION) {
            let error = RpcError::UnsupportedVersion {
                requested: version.to_owned(),
            };
            return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
        }
        return empty(StatusCode::ACCEPTED);
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        let error =
            RpcError::InvalidRequest("clients must not POST responses at 2026-07-28".into());
        return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
    };
    if id_key(&id).is_none() {
        let error = RpcError::InvalidRequest("id must be a string or a number".into());
        return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
    }
    let fail = |error: RpcError| error_response(status_for_code(error.code()), &id, error);
    let envelope = match core::read_envelope(&params) {
        Ok(EnvelopeCheck::Absent) => return fail(core::missing_envelope()),
        Ok(envelope) => envelope,
        Err(error) => return fail(error),
    };
    let body_version = match &envelope {
        EnvelopeCheck::Modern(_) | EnvelopeCheck::Absent => core::MODERN_VERSION,
        EnvelopeCheck::Other(version) => version.as_str(),
    };
    if let Err(error) = check_routing_headers(headers, body_version, method, &params) {
        return fail(error);
    }
    let envelope = match envelope {
        EnvelopeCheck::Modern(envelope) => envelope,
        EnvelopeCheck::Other(requested) => return fail(RpcError::UnsupportedVersion { requested }),
        EnvelopeCheck::Absent => return fail(core::missing_envelope()),
    };
    tracing::debug!(rpc.method = method, rpc.id = %id, "demo http 2026-07-28 request");
    let framing = match method {
        "tools/call" | "subscriptions/listen" => Framing::Stream,
        _ => Framing::Json,
    };
    let era = Era::Modern(envelope);
    serve_request(
        state.demo.clone(),
        era,
        id,
        method.to_owned(),
        params,
        framing,
        None,
    )
    .await
}

async fn post_handshake(
    state: Arc<HttpState>,
    message: Value,
    session_header: Option<String>,
    params: Value,
) -> Response {
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str);
    if method == Some("initialize") {
        let Some(id) = id.filter(|id| id_key(id).is_some()) else {
            let error = RpcError::InvalidRequest(
                "initialize must be a request with a string or number id".into(),
            );
            return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
        };
        let (session, result) = core::initialize(&params, Arc::new(PendingRequests::default()));
        let session_id = new_session_id();
        tracing::debug!(session.id = %session_id, version = session.protocol_version(), "demo http session created");
        let http_session = Arc::new(HttpSession {
            session,
            in_flight: Mutex::new(HashMap::new()),
            get_stream: Mutex::new(None),
            events: Mutex::new(EventLog::default()),
            ended: CancellationToken::new(),
        });
        // The session's change events are logged from the start, so a
        // client resuming its GET stream gets what happened in between.
        let mut events = state.demo.subscribe();
        let logger = Arc::downgrade(&http_session);
        let ended = http_session.ended.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = ended.cancelled() => return,
                    event = events.recv() => event,
                };
                let event = match event {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(http_session) = logger.upgrade() else {
                    return;
                };
                if let Some(message) = core::handshake_notification(&http_session.session, &event) {
                    http_session.log_event(message);
                }
            }
        });
        state.sessions().insert(session_id.clone(), http_session);
        let mut response = json_response(StatusCode::OK, &core::response(&id, Ok(result)));
        if let Ok(value) = HeaderValue::from_str(&session_id) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
        return response;
    }
    let reply_id = id.clone().unwrap_or(Value::Null);
    let Some(session_id) = session_header else {
        // Neither a session nor a 2026-07-28 envelope: the client skipped both eras' entry.
        return error_response(StatusCode::BAD_REQUEST, &reply_id, core::missing_envelope());
    };
    let Some(http_session) = state.sessions().get(&session_id).cloned() else {
        // Unknown session → 404 so the client starts a new one (Streamable HTTP).
        return error_response(StatusCode::NOT_FOUND, &reply_id, RpcError::SessionNotFound);
    };
    let Some(method) = method else {
        if id.is_some() && (message.get("result").is_some() || message.get("error").is_some()) {
            // The answer to an elicitation/sampling request we sent on a POST stream.
            http_session.session.pending.resolve(&message);
            return empty(StatusCode::ACCEPTED);
        }
        let error = RpcError::InvalidRequest("message has no method".into());
        return error_response(StatusCode::BAD_REQUEST, &reply_id, error);
    };
    let Some(id) = id else {
        if method == "notifications/cancelled"
            && let Some(key) = params.get("requestId").and_then(id_key)
            && let Some(request) = http_session.in_flight().remove(&key)
        {
            request.cancel();
        }
        return empty(StatusCode::ACCEPTED);
    };
    let Some(key) = id_key(&id) else {
        let error = RpcError::InvalidRequest("id must be a string or a number".into());
        return error_response(StatusCode::BAD_REQUEST, &Value::Null, error);
    };
    tracing::debug!(rpc.method = method, rpc.id = %id, session.id = %session_id, "demo http request");
    let framing = if method == "tools/call" {
        Framing::Stream
    } else {
        Framing::Json
    };
    let era = Era::Handshake(http_session.session.clone());
    let cancellable = Some((http_session, key));
    serve_request(
        state.demo.clone(),
        era,
        id,
        method.to_owned(),
        params,
        framing,
        cancellable,
    )
    .await
}

async fn get_mcp(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if !origin_allowed(&headers) {
        return forbidden_origin();
    }
    let Some(session_id) = header_text(&headers, SESSION_HEADER).ok().flatten() else {
        // 2026-07-28 has no GET stream; handshake clients need a session for one.
        return method_not_allowed();
    };
    let Some(http_session) = state.sessions().get(session_id).cloned() else {
        return error_response(
            StatusCode::NOT_FOUND,
            &Value::Null,
            RpcError::SessionNotFound,
        );
    };
    if !accepts(&headers).1 {
        return empty(StatusCode::NOT_ACCEPTABLE);
    }
    let cancel = CancellationToken::new();
    if let Some(previous) = http_session.get_stream().replace(cancel.clone()) {
        previous.cancel();
    }
    let last_event_id = header_text(&headers, "last-event-id")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (out, messages) = mpsc::channel(EVENT_LOG + STREAM_QUEUE);
    {
        let mut log = http_session.events();
        if let Some(last) = last_event_id {
            for (id, message) in log.entries.iter().filter(|(id, _)| *id > last) {
                let _ = out.try_send((*id, message.clone()));
            }
        }
        log.live = Some(out);
    }
    sse_response_with_ids(messages, cancel.drop_guard())
}

async fn delete_mcp(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if !origin_allowed(&headers) {
        return forbidden_origin();
    }
    let Some(session_id) = header_text(&headers, SESSION_HEADER).ok().flatten() else {
        return method_not_allowed();
    };
    let Some(http_session) = state.sessions().remove(session_id) else {
        return error_response(
            StatusCode::NOT_FOUND,
            &Value::Null,
            RpcError::SessionNotFound,
        );
    };
    http_session.close();
    tracing::debug!(session.id = %session_id, "demo http session deleted");
    empty(StatusCode::OK)
}

fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response()
}

/// A `text/event-stream` response whose body is `frames`.
fn event_stream<S>(frames: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache, no-transform")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(frames))
        .unwrap_or_else(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))
}
