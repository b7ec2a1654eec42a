//! core: one JSON-RPC request plus a [`Ctx`] → a result. Shared by the stdio and
//! HTTP transports so both behave identically; the only I/O is through `Ctx.out`
//! (request-scoped notifications and, in the handshake era, server→client requests).
//! Never decides framing, HTTP status or session lifetime: that is the transports' job.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

pub(crate) const SERVER_NAME: &str = "mcp-gateway-demo";
pub(crate) const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The stateless (per-request `_meta`) revision.
pub(crate) const MODERN_VERSION: &str = "2026-07-28";
/// `initialize`-handshake revisions, oldest first.
pub(crate) const HANDSHAKE_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Counter-offer when the client asks for a handshake version we do not serve.
pub(crate) const LATEST_HANDSHAKE_VERSION: &str = "2025-11-25";

pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

const COUNTER_URI: &str = "demo://counter";
const README_URI: &str = "demo://readme";
const ITEM_URI_PREFIX: &str = "demo://items/";
const ITEM_URI_TEMPLATE: &str = "demo://items/{id}";
/// Freshness hint for results that only change on a server restart.
const STATIC_TTL_MS: u64 = 60_000;
/// How long a handshake-era server→client request may stay unanswered.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_SLOW_COUNT_STEPS: i64 = 10_000;
const MAX_SLOW_COUNT_DELAY_MS: i64 = 60_000;

/// A JSON-RPC error this server sends. One exhaustive mapping to a code
/// ([`RpcError::code`]); the HTTP transport maps it to a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RpcError {
    #[error("parse error")]
    Parse,
    #[error("invalid request: {0}")]
    InvalidRequest(Cow<'static, str>),
    #[error("method not found: {0}")]
    MethodNotFound(String),
    #[error("{0}")]
    InvalidParams(Cow<'static, str>),
    /// `-32002` in the handshake era, `-32602` from 2026-07-28 on (which forbids `-32002`).
    #[error("Resource not found")]
    ResourceNotFound { uri: String, handshake: bool },
    #[error("header mismatch: {0}")]
    HeaderMismatch(Cow<'static, str>),
    #[error("unsupported protocol version {requested:?}")]
    UnsupportedVersion { requested: String },
    /// Handshake-era HTTP request naming an `Mcp-Session-Id` we do not know.
    #[error("session not found")]
    SessionNotFound,
}

impl RpcError {
    pub(crate) fn code(&self) -> i64 {
        match self {
            RpcError::Parse => -32700,
            RpcError::InvalidRequest(_) => -32600,
            RpcError::MethodNotFound(_) => -32601,
            RpcError::InvalidParams(_) => -32602,
            RpcError::ResourceNotFound {
                handshake: true, ..
            } => -32002,
            RpcError::ResourceNotFound {
                handshake: false, ..
            } => -32602,
            RpcError::HeaderMismatch(_) => -32020,
            RpcError::UnsupportedVersion { .. } => -32022,
            RpcError::SessionNotFound => -32600,
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            RpcError::ResourceNotFound { uri, .. } => Some(json!({ "uri": uri })),
            RpcError::UnsupportedVersion { requested } => {
                Some(json!({ "supported": supported_versions(), "requested": requested }))
            }
            RpcError::Parse
            | RpcError::InvalidRequest(_)
            | RpcError::MethodNotFound(_)
            | RpcError::InvalidParams(_)
            | RpcError::HeaderMismatch(_)
            | RpcError::SessionNotFound => None,
        }
    }

    /// The JSON-RPC `error` object.
    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(data) = self.data() {
            error["data"] = data;
        }
        error
    }

    fn invalid_params(message: impl Into<Cow<'static, str>>) -> Self {
        RpcError::InvalidParams(message.into())
    }
}

/// Every version `server/discover` advertises, newest first.
pub(crate) fn supported_versions() -> Vec<&'static str> {
    let mut versions = vec![MODERN_VERSION];
    versions.extend(HANDSHAKE_VERSIONS.iter().rev());
    versions
}

pub(crate) fn response(id: &Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() }),
    }
}

pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// Log levels in RFC 5424 order, least severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        Some(match text {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "notice" => Level::Notice,
            "warning" => Level::Warning,
            "error" => Level::Error,
            "critical" => Level::Critical,
            "alert" => Level::Alert,
            "emergency" => Level::Emergency,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Alert => "alert",
            Level::Emergency => "emergency",
        }
    }
}

/// Something every listener may care about; fanned out on [`Demo::subscribe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    ToolsListChanged,
    ResourceUpdated(String),
}

/// Process-wide demo state: one per server, shared by every client (2026-07-28:
/// lists MUST NOT vary by connection).
pub(crate) struct Demo {
    state: Mutex<DemoState>,
    events: broadcast::Sender<Event>,
    next_client_request: AtomicU64,
}

#[derive(Default)]
struct DemoState {
    extra_tool: bool,
    counter: u64,
}

impl Demo {
    pub(crate) fn new() -> Arc<Demo> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Demo {
            state: Mutex::new(DemoState::default()),
            events,
            next_client_request: AtomicU64::new(1),
        })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn state(&self) -> MutexGuard<'_, DemoState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: Event) {
        // No receivers is fine: nobody is listening.
        let _ = self.events.send(event);
    }
}

/// Outstanding server→client requests of one handshake-era peer, keyed by our id.
#[derive(Default)]
pub(crate) struct PendingRequests {
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>,
}

impl PendingRequests {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Result<Value, Value>>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes a client's JSON-RPC response to the waiting request. False if nobody waits.
    pub(crate) fn resolve(&self, message: &Value) -> bool {
        let Some(id) = message.get("id").and_then(Value::as_str) else {
            return false;
        };
        let Some(waiter) = self.lock().remove(id) else {
            return false;
        };
        let outcome = match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = waiter.send(outcome);
        true
    }

    /// Fails every waiting request (the peer is gone).
    pub(crate) fn fail_all(&self) {
        self.lock().clear();
    }
}

/// Removes a pending entry when the waiting request is dropped (cancelled).
struct ForgetOnDrop<'a> {
    pending: &'a PendingRequests,
    id: String,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

/// A handshake-era session: created by `initialize`, one per stdio connection or
/// per `Mcp-Session-Id`.
pub(crate) struct Session {
    protocol_version: String,
    client_capabilities: Value,
    pub(crate) pending: Arc<PendingRequests>,
    state: Mutex<SessionState>,
}

#[derive(Default)]
struct SessionState {
    /// `None` until `logging/setLevel`: keeps SDK output clean by default.
    log_level: Option<Level>,
    subscriptions: BTreeSet<String>,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, SessionState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn protocol_version(&self) -> &str {
        &self.protocol_version
    }
}

/// The 2026-07-28 per-request envelope.
#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    client_capabilities: Value,
    log_level: Option<Level>,
}

/// Which protocol era a request is served under.
#[derive(Clone)]
pub(crate) enum Era {
    Handshake(Arc<Session>),
    Modern(Envelope),
}

impl Era {
    fn client_capabilities(&self) -> &Value {
        match self {
            Era::Handshake(session) => &session.client_capabilities,
            Era::Modern(envelope) => &envelope.client_capabilities,
        }
    }

    fn log_level(&self) -> Option<Level> {
        match self {
            Era::Handshake(session) => session.state().log_level,
            Era::Modern(envelope) => envelope.log_level,
        }
    }

    fn is_handshake(&self) -> bool {
        matches!(self, Era::Handshake(_))
    }
}

/// What a request's `params._meta` says about its era.
#[derive(Debug)]
pub(crate) enum EnvelopeCheck {
    /// No `_meta` protocol version: a handshake-era request (or a malformed modern one).
    Absent,
    Modern(Envelope),
    /// A protocol version we do not serve statelessly.
    Other(String),
}

pub(crate) fn read_envelope(params: &Value) -> Result<EnvelopeCheck, RpcError> {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return Ok(EnvelopeCheck::Absent);
    };
    let Some(version) = meta.get(META_PROTOCOL_VERSION) else {
        return Ok(EnvelopeCheck::Absent);
    };
    let Some(version) = version.as_str() else {
        return Err(RpcError::invalid_params(format!(
            "params._meta[{META_PROTOCOL_VERSION:?}] must be a string"
        )));
    };
    if version != MODERN_VERSION {
        return Ok(EnvelopeCheck::Other(version.to_owned()));
    }
    let client_capabilities = match meta.get(META_CLIENT_CAPABILITIES) {
        Some(capabilities @ Value::Object(_)) => capabilities.clone(),
        Some(_) => {
            return Err(RpcError::invalid_params(format!(
                "params._meta[{META_CLIENT_CAPABILITIES:?}] must be an object"
            )));
        }
        None => {
            return Err(RpcError::invalid_params(format!(
                "params._meta is missing the required {META_CLIENT_CAPABILITIES:?}"
            )));
        }
    };
    let log_level = match meta.get(META_LOG_LEVEL) {
        None | Some(Value::Null) => None,
        Some(level) => Some(level.as_str().and_then(Level::parse).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "params._meta[{META_LOG_LEVEL:?}] is not a log level"
            ))
        })?),
    };
    Ok(EnvelopeCheck::Modern(Envelope {
        client_capabilities,
        log_level,
    }))
}

/// The era of a non-`initialize` request on a connection that may carry a
/// handshake session (stdio). A modern envelope always wins (dual-era server).
pub(crate) fn route_era(params: &Value, session: Option<&Arc<Session>>) -> Result<Era, RpcError> {
    match (read_envelope(params), session) {
        (Ok(EnvelopeCheck::Modern(envelope)), _) => Ok(Era::Modern(envelope)),
        (_, Some(session)) => Ok(Era::Handshake(session.clone())),
        (Ok(EnvelopeCheck::Other(requested)), None) => {
            Err(RpcError::UnsupportedVersion { requested })
        }
        (Ok(EnvelopeCheck::Absent), None) => Err(missing_envelope()),
        (Err(error), None) => Err(error),
    }
}

pub(crate) fn missing_envelope() -> RpcError {
    RpcError::invalid_params(format!(
        "params._meta[{META_PROTOCOL_VERSION:?}] is required (send {MODERN_VERSION:?}, or `initialize` first)"
    ))
}

/// `initialize`: negotiates the version and creates the handshake session.
pub(crate) fn initialize(params: &Value, pending: Arc<PendingRequests>) -> (Arc<Session>, Value) {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let protocol_version = if HANDSHAKE_VERSIONS.contains(&requested) {
        requested
    } else {
        LATEST_HANDSHAKE_VERSION
    };
    let client_capabilities = match params.get("capabilities") {
        Some(capabilities @ Value::Object(_)) => capabilities.clone(),
        _ => json!({}),
    };
    let session = Arc::new(Session {
        protocol_version: protocol_version.to_owned(),
        client_capabilities,
        pending,
        state: Mutex::new(SessionState::default()),
    });
    let result = json!({
        "protocolVersion": protocol_version,
        "capabilities": server_capabilities(),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    });
    (session, result)
}

const INSTRUCTIONS: &str = "Demo server of mcp-gateway: echo, progress, elicitation, sampling, \
                            resources, prompts and completions for trying the gateway out.";

fn server_info() -> Value {
    json!({ "name": SERVER_NAME, "title": "mcp-gateway demo server", "version": SERVER_VERSION })
}

fn server_capabilities() -> Value {
    json!({
        "tools": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": true },
        "completions": {},
        "logging": {},
    })
}

/// The notification a handshake session receives for `event`, if any (it gets
/// `resources/updated` only for URIs it subscribed to).
pub(crate) fn handshake_notification(session: &Session, event: &Event) -> Option<Value> {
    match event {
        Event::ToolsListChanged => {
            Some(notification("notifications/tools/list_changed", json!({})))
        }
        Event::ResourceUpdated(uri) => session
            .state()
            .subscriptions
            .contains(uri)
            .then(|| notification("notifications/resources/updated", json!({ "uri": uri }))),
    }
}

/// The request being served: its era, id, and the channel to "this client".
pub(crate) struct Ctx {
    pub(crate) era: Era,
    pub(crate) request_id: Value,
    /// Request-scoped messages: progress, logs, listen notifications and (handshake
    /// era only) server→client requests. stdio: stdout; HTTP: this POST's SSE stream.
    pub(crate) out: mpsc::Sender<Value>,
}

impl Ctx {
    pub(crate) fn new(era: Era, request_id: Value, out: mpsc::Sender<Value>) -> Ctx {
        Ctx {
            era,
            request_id,
            out,
        }
    }

    async fn send(&self, message: Value) {
        // A closed channel means the client went away; the transport cancels us.
        let _ = self.out.send(message).await;
    }

    async fn log(&self, level: Level, data: Value) {
        if self.era.log_level().is_some_and(|minimum| level >= minimum) {
            let params = json!({ "level": level.as_str(), "logger": "demo", "data": data });
            self.send(notification("notifications/message", params))
                .await;
        }
    }

    /// A server→client request (handshake era). `Err` carries a short reason.
    async fn request(&self, demo: &Demo, method: &str, params: Value) -> Result<Value, String> {
        let Era::Handshake(session) = &self.era else {
            debug_assert!(false, "server→client requests are handshake-era only");
            return Err("server-to-client requests need a handshake session".to_owned());
        };
        let id = format!(
            "demo-{}",
            demo.next_client_request.fetch_add(1, Ordering::Relaxed)
        );
        let (waiter, answer) = oneshot::channel();
        session.pending.lock().insert(id.clone(), waiter);
        let _forget = ForgetOnDrop {
            pending: &session.pending,
            id: id.clone(),
        };
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        if self.out.send(request).await.is_err() {
            return Err("client connection closed".to_owned());
        }
        match tokio::time::timeout(CLIENT_REQUEST_TIMEOUT, answer).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("client returned an error")
                .to_owned()),
            Ok(Err(_)) => Err("client connection closed".to_owned()),
            Err(_) => Err(format!("client did not answer {method} in time")),
        }
    }
}

/// Adds the 2026-07-28 result fields (`resultType`, `_meta` serverInfo, caching
/// hints); handshake-era results pass through untouched.
pub(crate) fn finish(era: &Era, method: &str, params: &Value, result: Value) -> Value {
    if era.is_handshake() {
        return result;
    }
    let mut result = match result {
        Value::Object(map) => map,
        other => {
            debug_assert!(false, "results are objects");
            let mut map = Map::new();
            map.insert("value".to_owned(), other);
            map
        }
    };
    let complete = result
        .entry("resultType")
        .or_insert_with(|| json!("complete"))
        .as_str()
        == Some("complete");
    let meta = result.entry("_meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(META_SERVER_INFO.to_owned(), server_info());
    }
    // Caching hints go on complete results of the cacheable methods only (MRTR interim
    // results carry none).
    if complete && let Some(ttl_ms) = cache_ttl_ms(method, params) {
        result.insert("ttlMs".to_owned(), json!(ttl_ms));
        result.insert("cacheScope".to_owned(), json!("public"));
    }
    Value::Object(result)
}

fn cache_ttl_ms(method: &str, params: &Value) -> Option<u64> {
    match method {
        "server/discover" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            Some(STATIC_TTL_MS)
        }
        // `toggle_extra_tool` and `bump_counter` change these at any time.
        "tools/list" => Some(0),
        "resources/read" if params.get("uri").and_then(Value::as_str) == Some(COUNTER_URI) => {
            Some(0)
        }
        "resources/read" => Some(STATIC_TTL_MS),
        _ => None,
    }
}

/// Serves one request (anything but `initialize`, which the transports own because it
/// creates the session). Cancellation = the transport drops this future.
pub(crate) async fn handle_request(
    demo: &Demo,
    ctx: &Ctx,
    method: &str,
    params: &Value,
) -> Result<Value, RpcError> {
    let handshake = ctx.era.is_handshake();
    match method {
        "server/discover" if !handshake => Ok(json!({
            "supportedVersions": supported_versions(),
            "capabilities": server_capabilities(),
            "instructions": INSTRUCTIONS,
        })),
        "subscriptions/listen" if !handshake => listen(demo, ctx, params).await,
        "ping" if handshake => Ok(json!({})),
        "logging/setLevel" if handshake => set_level(&ctx.era, params),
        "resources/subscribe" if handshake => subscribe(&ctx.era, params, true),
        "resources/unsubscribe" if handshake => subscribe(&ctx.era, params, false),
        "tools/list" => {
            check_cursor(params)?;
            Ok(json!({ "tools": tool_list(demo) }))
        }
        "tools/call" => call_tool(demo, ctx, params).await,
        "resources/list" => {
            check_cursor(params)?;
            Ok(json!({ "resources": resource_list() }))
        }
        "resources/templates/list" => {
            check_cursor(params)?;
            Ok(json!({ "resourceTemplates": [{
                "uriTemplate": ITEM_URI_TEMPLATE,
                "name": "item",
                "title": "Demo item",
                "description": "A demo item by id; reading demo://items/42 returns \"item 42\"",
                "mimeType": "text/plain",
            }] }))
        }
        "resources/read" => read_resource(demo, &ctx.era, params),
        "prompts/list" => {
            check_cursor(params)?;
            Ok(json!({ "prompts": [greet_prompt()] }))
        }
        "prompts/get" => get_prompt(params),
        "completion/complete" => complete(params),
        _ => Err(RpcError::MethodNotFound(method.to_owned())),
    }
}

/// We never hand out cursors, so only the first page (`""` in 2026-07-28) exists.
fn check_cursor(params: &Value) -> Result<(), RpcError> {
    match params.get("cursor") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(cursor)) if cursor.is_empty() => Ok(()),
        Some(_) => Err(RpcError::invalid_params("invalid cursor")),
    }
}

fn set_level(era: &Era, params: &Value) -> Result<Value, RpcError> {
    let Era::Handshake(session) = era else {
        return Err(RpcError::MethodNotFound("logging/setLevel".to_owned()));
    };
    let level = params
        .get("level")
        .and_then(Value::as_str)
        .and_then(Level::parse)
        .ok_or_else(|| RpcError::invalid_params("params.level is not a log level"))?;
    session.state().log_level = Some(level);
    Ok(json!({}))
}

fn subscribe(era: &Era, params: &Value, add: bool) -> Result<Value, RpcError> {
    let Era::Handshake(session) = era else {
        return Err(RpcError::MethodNotFound("resources/subscribe".to_owned()));
    };
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("params.uri must be a string"))?;
    if add {
        if Resource::parse(uri).is_none() {
            return Err(RpcError::ResourceNotFound {
                uri: uri.to_owned(),
                handshake: true,
            });
        }
        session.state().subscriptions.insert(uri.to_owned());
    } else {
        session.state().subscriptions.remove(uri);
    }
    Ok(json!({}))
}

// ---- subscriptions/listen (2026-07-28) ----

#[derive(Debug, Default, PartialEq, Eq)]
struct ListenFilter {
    tools_list_changed: bool,
    prompts_list_changed: bool,
    resources_list_changed: bool,
    resource_subscriptions: Vec<String>,
}

impl ListenFilter {
    fn from_params(params: &Value) -> Result<ListenFilter, RpcError> {
        let requested = match params.get("notifications") {
            None | Some(Value::Null) => return Ok(ListenFilter::default()),
            Some(Value::Object(requested)) => requested,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "params.notifications must be an object",
                ));
            }
        };
        let flag = |key: &str| requested.get(key).and_then(Value::as_bool).unwrap_or(false);
        let resource_subscriptions = match requested.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(uris)) => uris
                .iter()
                .map(|uri| {
                    uri.as_str().map(str::to_owned).ok_or_else(|| {
                        RpcError::invalid_params(
                            "resourceSubscriptions must be an array of strings",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "resourceSubscriptions must be an array of strings",
                ));
            }
        };
        Ok(ListenFilter {
            tools_list_changed: flag("toolsListChanged"),
            prompts_list_changed: flag("promptsListChanged"),
            resources_list_changed: flag("resourcesListChanged"),
            // Honour only URIs that name a resource we serve.
            resource_subscriptions: resource_subscriptions
                .into_iter()
                .filter(|uri| Resource::parse(uri).is_some())
                .collect(),
        })
    }

    /// The granted filter, as sent in the acknowledgement (ungranted types omitted).
    fn to_json(&self) -> Value {
        let mut granted = Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools_list_changed),
            ("promptsListChanged", self.prompts_list_changed),
            ("resourcesListChanged", self.resources_list_changed),
        ] {
            if on {
                granted.insert(key.to_owned(), json!(true));
            }
        }
        if !self.resource_subscriptions.is_empty() {
            granted.insert(
                "resourceSubscriptions".to_owned(),
                json!(self.resource_subscriptions),
            );
        }
        Value::Object(granted)
    }

    fn notification(&self, event: &Event, subscription_id: &Value) -> Option<Value> {
        let meta = json!({ META_SUBSCRIPTION_ID: subscription_id });
        match event {
            Event::ToolsListChanged if self.tools_list_changed => Some(notification(
                "notifications/tools/list_changed",
                json!({ "_meta": meta }),
            )),
            Event::ResourceUpdated(uri) if self.resource_subscriptions.contains(uri) => {
                Some(notification(
                    "notifications/resources/updated",
                    json!({ "_meta": meta, "uri": uri }),
                ))
            }
            Event::ToolsListChanged | Event::ResourceUpdated(_) => None,
        }
    }
}

/// Streams until cancelled (the transport drops this future). Returns only if the
/// server shuts the event source down: then the graceful "complete" result.
async fn listen(demo: &Demo, ctx: &Ctx, params: &Value) -> Result<Value, RpcError> {
    let filter = ListenFilter::from_params(params)?;
    // Subscribe before acknowledging so nothing between the two is lost.
    let mut events = demo.subscribe();
    let subscription_id = ctx.request_id.clone();
    let ack = json!({
        "_meta": { META_SUBSCRIPTION_ID: subscription_id },
        "notifications": filter.to_json(),
    });
    ctx.send(notification(
        "notifications/subscriptions/acknowledged",
        ack,
    ))
    .await;
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some(message) = filter.notification(&event, &subscription_id) {
                    ctx.send(message).await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    Ok(json!({ "_meta": { META_SUBSCRIPTION_ID: subscription_id } }))
}

// ---- tools ----

fn tool_list(demo: &Demo) -> Vec<Value> {
    let mut tools = vec![
        json!({
            "name": "echo",
            "title": "Echo",
            "description": "Echo a message back",
            "inputSchema": {
                "type": "object",
                "properties": { "message": { "type": "string", "description": "Text to echo" } },
                "required": ["message"],
            },
            "outputSchema": {
                "type": "object",
                "properties": { "message": { "type": "string" } },
                "required": ["message"],
            },
            "annotations": {
                "title": "Echo",
                "readOnlyHint": true,
                "destructiveHint": false,
                "idempotentHint": true,
                "openWorldHint": false,
            },
        }),
        json!({
            "name": "delete_item",
            "title": "Delete item",
            "description": "Pretend to delete an item (destructive, for policy tests)",
            "inputSchema": {
                "type": "object",
                "properties": { "id": { "type": "string", "description": "Item id" } },
                "required": ["id"],
            },
            "annotations": {
                "title": "Delete item",
                "readOnlyHint": false,
                "destructiveHint": true,
                "idempotentHint": true,
                "openWorldHint": false,
            },
        }),
        json!({
            "name": "slow_count",
            "title": "Slow count",
            "description": "Count to `steps`, sleeping `delay_ms` per step; reports progress and honours cancellation",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "steps": { "type": "integer", "minimum": 0, "maximum": MAX_SLOW_COUNT_STEPS, "default": 5 },
                    "delay_ms": { "type": "integer", "minimum": 0, "maximum": MAX_SLOW_COUNT_DELAY_MS, "default": 100 },
                },
            },
            "annotations": {
                "title": "Slow count",
                "readOnlyHint": true,
                "destructiveHint": false,
                "idempotentHint": true,
                "openWorldHint": false,
            },
        }),
        json!({
            "name": "ask_user",
            "title": "Ask the user",
            "description": "Ask the user a question through elicitation",
            "inputSchema": {
                "type": "object",
                "properties": { "question": { "type": "string" } },
                "required": ["question"],
            },
            "annotations": { "title": "Ask the user", "readOnlyHint": true, "openWorldHint": false },
        }),
        json!({
            "name": "summarize",
            "title": "Summarize",
            "description": "Summarize text through the client's LLM (sampling)",
            "inputSchema": {
                "type": "object",
                "properties": { "text": { "type": "string" } },
                "required": ["text"],
            },
            "annotations": { "title": "Summarize", "readOnlyHint": true, "openWorldHint": false },
        }),
        json!({
            "name": "toggle_extra_tool",
            "title": "Toggle extra_tool",
            "description": "Add or remove the tool `extra_tool` (sends notifications/tools/list_changed)",
            "inputSchema": { "type": "object", "properties": {} },
            "annotations": { "title": "Toggle extra_tool", "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false },
        }),
        json!({
            "name": "bump_counter",
            "title": "Bump counter",
            "description": "Increment demo://counter (sends notifications/resources/updated)",
            "inputSchema": { "type": "object", "properties": {} },
            "annotations": { "title": "Bump counter", "readOnlyHint": false, "destructiveHint": false, "openWorldHint": false },
        }),
    ];
    if demo.state().extra_tool {
        tools.push(json!({
            "name": "extra_tool",
            "title": "Extra tool",
            "description": "Exists only while toggled on by toggle_extra_tool",
            "inputSchema": { "type": "object", "properties": {} },
            "annotations": { "title": "Extra tool", "readOnlyHint": true, "openWorldHint": false },
        }));
    }
    tools
}

fn text_result(text: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }] })
}

/// A tool execution error: reported in the result so a model can self-correct.
fn tool_error(text: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }], "isError": true })
}

async fn call_tool(demo: &Demo, ctx: &Ctx, params: &Value) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("params.name must be a string"))?;
    let empty = Map::new();
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(arguments)) => arguments,
        Some(_) => {
            return Err(RpcError::invalid_params(
                "params.arguments must be an object",
            ));
        }
    };
    let known = tool_list(demo)
        .iter()
        .any(|tool| tool.get("name").and_then(Value::as_str) == Some(name));
    if !known {
        return Err(RpcError::invalid_params(format!("unknown tool: {name}")));
    }
    ctx.log(Level::Info, json!(format!("tool {name} called")))
        .await;
    match name {
        "echo" => Ok(match arguments.get("message").and_then(Value::as_str) {
            Some(message) => json!({
                "content": [{ "type": "text", "text": message }],
                "structuredContent": { "message": message },
            }),
            None => tool_error("echo: argument `message` must be a string"),
        }),
        "delete_item" => Ok(match arguments.get("id") {
            Some(Value::String(id)) => text_result(format!("deleted {id}")),
            Some(Value::Number(id)) => text_result(format!("deleted {id}")),
            _ => tool_error("delete_item: argument `id` must be a string"),
        }),
        "slow_count" => slow_count(ctx, params, arguments).await,
        "ask_user" => ask_user(demo, ctx, params, arguments).await,
        "summarize" => summarize(demo, ctx, params, arguments).await,
        "toggle_extra_tool" => {
            let enabled = {
                let mut state = demo.state();
                state.extra_tool = !state.extra_tool;
                state.extra_tool
            };
            demo.emit(Event::ToolsListChanged);
            Ok(text_result(if enabled {
                "extra_tool added"
            } else {
                "extra_tool removed"
            }))
        }
        "bump_counter" => {
            let counter = {
                let mut state = demo.state();
                state.counter += 1;
                state.counter
            };
            demo.emit(Event::ResourceUpdated(COUNTER_URI.to_owned()));
            Ok(text_result(format!("counter = {counter}")))
        }
        "extra_tool" => Ok(text_result("extra tool called")),
        _ => Err(RpcError::invalid_params(format!("unknown tool: {name}"))),
    }
}

/// An optional integer argument within `0..=max`; `Err` is the tool error text.
fn int_argument(
    arguments: &Map<String, Value>,
    key: &str,
    default: i64,
    max: i64,
) -> Result<i64, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|v| v.fract() == 0.0)
                    .map(|v| v as i64)
            })
            .filter(|v| (0..=max).contains(v))
            .ok_or_else(|| format!("slow_count: argument `{key}` must be an integer in 0..={max}")),
    }
}

async fn slow_count(
    ctx: &Ctx,
    params: &Value,
    arguments: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let steps = match int_argument(arguments, "steps", 5, MAX_SLOW_COUNT_STEPS) {
        Ok(steps) => steps,
        Err(message) => return Ok(tool_error(message)),
    };
    let delay_ms = match int_argument(arguments, "delay_ms", 100, MAX_SLOW_COUNT_DELAY_MS) {
        Ok(delay_ms) => delay_ms,
        Err(message) => return Ok(tool_error(message)),
    };
    let progress_token = params
        .get("_meta")
        .and_then(|meta| meta.get("progressToken"))
        .cloned();
    for step in 1..=steps {
        tokio::time::sleep(Duration::from_millis(delay_ms.unsigned_abs())).await;
        if let Some(token) = progress_token
            .as_ref()
            .filter(|token| token.is_string() || token.is_number())
        {
            let progress = json!({
                "progressToken": token,
                "progress": step,
                "total": steps,
                "message": format!("step {step} of {steps}"),
            });
            ctx.send(notification("notifications/progress", progress))
                .await;
        }
    }
    Ok(text_result(format!("counted to {steps}")))
}

/// `requestState` for MRTR: base64 JSON naming the tool and its input. Tampering can
/// only make the retry fail, so no integrity protection (spec MAY).
fn encode_state(tool: &str, input: &str) -> String {
    BASE64.encode(json!({ "tool": tool, "input": input }).to_string())
}

fn decode_state(state: &str, tool: &str) -> Result<String, RpcError> {
    let invalid = || RpcError::invalid_params("invalid requestState");
    let bytes = BASE64.decode(state).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if value.get("tool").and_then(Value::as_str) != Some(tool) {
        return Err(invalid());
    }
    value
        .get("input")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(invalid)
}

/// MRTR retry inputs: `(inputResponses[key], requestState)`.
fn retry_inputs<'a>(params: &'a Value, key: &str) -> (Option<&'a Value>, Option<&'a str>) {
    let response = params
        .get("inputResponses")
        .and_then(|responses| responses.get(key));
    let state = params.get("requestState").and_then(Value::as_str);
    (response, state)
}

fn elicitation_request(era: &Era, question: &str) -> Value {
    let mut params = json!({
        "message": question,
        "requestedSchema": {
            "type": "object",
            "properties": { "answer": { "type": "string", "title": "Answer" } },
            "required": ["answer"],
        },
    });
    // `mode` exists from 2025-11-25 on; older clients validate without it.
    let has_mode = match era {
        Era::Handshake(session) => session.protocol_version.as_str() >= "2025-11-25",
        Era::Modern(_) => true,
    };
    if has_mode {
        params["mode"] = json!("form");
    }
    params
}

fn elicitation_outcome(result: &Value) -> Value {
    match result.get("action").and_then(Value::as_str) {
        Some("accept") => {
            let answer = match result
                .get("content")
                .and_then(|content| content.get("answer"))
            {
                Some(Value::String(answer)) => answer.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            text_result(format!("user said: {answer}"))
        }
        Some("decline") => text_result("user declined"),
        Some("cancel") => text_result("user cancelled"),
        _ => tool_error("ask_user: elicitation result has no valid action"),
    }
}

async fn ask_user(
    demo: &Demo,
    ctx: &Ctx,
    params: &Value,
    arguments: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let Some(question) = arguments.get("question").and_then(Value::as_str) else {
        return Ok(tool_error("ask_user: argument `question` must be a string"));
    };
    // Form elicitation: `elicitation: {}` (form implied) or `elicitation: {form: {}}`;
    // it exists from 2025-06-18 on, whatever older clients declare.
    let era_has_elicitation = match &ctx.era {
        Era::Handshake(session) => session.protocol_version.as_str() >= "2025-06-18",
        Era::Modern(_) => true,
    };
    let supports_form = era_has_elicitation
        && ctx
            .era
            .client_capabilities()
            .get("elicitation")
            .and_then(Value::as_object)
            .is_some_and(|elicitation| elicitation.is_empty() || elicitation.contains_key("form"));
    if !supports_form {
        return Ok(tool_error(
            "ask_user needs a client that declares the elicitation capability (form mode, protocol 2025-06-18 or later)",
        ));
    }
    match &ctx.era {
        Era::Handshake(_) => {
            let request = elicitation_request(&ctx.era, question);
            Ok(
                match ctx.request(demo, "elicitation/create", request).await {
                    Ok(result) => elicitation_outcome(&result),
                    Err(reason) => tool_error(format!("ask_user: elicitation failed: {reason}")),
                },
            )
        }
        Era::Modern(_) => match retry_inputs(params, "answer") {
            (Some(answer), state) => {
                if let Some(state) = state {
                    decode_state(state, "ask_user")?;
                }
                Ok(elicitation_outcome(answer))
            }
            (None, _) => Ok(json!({
                "resultType": "input_required",
                "inputRequests": { "answer": {
                    "method": "elicitation/create",
                    "params": elicitation_request(&ctx.era, question),
                } },
                "requestState": encode_state("ask_user", question),
            })),
        },
    }
}

fn sampling_request(text: &str) -> Value {
    json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": format!("Summarize: {text}") } }],
        "maxTokens": 100,
    })
}

/// The text of a `CreateMessageResult` (content is one block, or a list from 2025-11-25).
fn sampled_text(result: &Value) -> Option<&str> {
    let content = result.get("content")?;
    let text_of = |block: &'_ Value| -> Option<()> {
        (block.get("type").and_then(Value::as_str) == Some("text")).then_some(())
    };
    match content {
        Value::Array(blocks) => blocks
            .iter()
            .find(|block| text_of(block).is_some())
            .and_then(|block| block.get("text"))
            .and_then(Value::as_str),
        block => text_of(block)
            .and_then(|()| block.get("text"))
            .and_then(Value::as_str),
    }
}

fn summary_outcome(result: &Value) -> Value {
    match sampled_text(result) {
        Some(text) => text_result(format!("summary: {text}")),
        None => tool_error("summarize: the sampled message has no text"),
    }
}

async fn summarize(
    demo: &Demo,
    ctx: &Ctx,
    params: &Value,
    arguments: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let Some(text) = arguments.get("text").and_then(Value::as_str) else {
        return Ok(tool_error("summarize: argument `text` must be a string"));
    };
    let supports_sampling = ctx
        .era
        .client_capabilities()
        .get("sampling")
        .is_some_and(Value::is_object);
    if !supports_sampling {
        return Ok(tool_error(
            "summarize needs a client that declares the sampling capability",
        ));
    }
    match &ctx.era {
        Era::Handshake(_) => Ok(
            match ctx
                .request(demo, "sampling/createMessage", sampling_request(text))
                .await
            {
                Ok(result) => summary_outcome(&result),
                Err(reason) => tool_error(format!("summarize: sampling failed: {reason}")),
            },
        ),
        Era::Modern(_) => match retry_inputs(params, "summary") {
            (Some(sampled), state) => {
                if let Some(state) = state {
                    decode_state(state, "summarize")?;
                }
                Ok(summary_outcome(sampled))
            }
            (None, _) => Ok(json!({
                "resultType": "input_required",
                "inputRequests": { "summary": {
                    "method": "sampling/createMessage",
                    "params": sampling_request(text),
                } },
                "requestState": encode_state("summarize", text),
            })),
        },
    }
}

// ---- resources ----

enum Resource<'a> {
    Readme,
    Counter,
    Item(&'a str),
}

impl<'a> Resource<'a> {
    fn parse(uri: &'a str) -> Option<Resource<'a>> {
        match uri {
            README_URI => Some(Resource::Readme),
            COUNTER_URI => Some(Resource::Counter),
            _ => uri
                .strip_prefix(ITEM_URI_PREFIX)
                .filter(|id| !id.is_empty() && !id.contains(['/', '?', '#']))
                .map(Resource::Item),
        }
    }
}

const README: &str = "# mcp-gateway demo server\n\n\
Tools: echo, delete_item, slow_count, ask_user, summarize, toggle_extra_tool, bump_counter.\n\
Resources: demo://readme, demo://counter (subscribable), demo://items/{id}.\n\
Prompts: greet.\n";

fn resource_list() -> Value {
    json!([
        {
            "uri": README_URI,
            "name": "readme",
            "title": "Demo README",
            "description": "What this demo server offers",
            "mimeType": "text/markdown",
        },
        {
            "uri": COUNTER_URI,
            "name": "counter",
            "title": "Counter",
            "description": "A number bump_counter increments; subscribe to get notifications/resources/updated",
            "mimeType": "text/plain",
        },
    ])
}

fn read_resource(demo: &Demo, era: &Era, params: &Value) -> Result<Value, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("params.uri must be a string"))?;
    let (mime_type, text) = match Resource::parse(uri) {
        Some(Resource::Readme) => ("text/markdown", README.to_owned()),
        Some(Resource::Counter) => ("text/plain", demo.state().counter.to_string()),
        Some(Resource::Item(id)) => ("text/plain", format!("item {id}")),
        None => {
            return Err(RpcError::ResourceNotFound {
                uri: uri.to_owned(),
                handshake: era.is_handshake(),
            });
        }
    };
    Ok(json!({ "contents": [{ "uri": uri, "mimeType": mime_type, "text": text }] }))
}

// ---- prompts and completion ----

fn greet_prompt() -> Value {
    json!({
        "name": "greet",
        "title": "Greet someone",
        "description": "A greeting in a chosen style",
        "arguments": [
            { "name": "name", "description": "Who to greet", "required": true },
            { "name": "style", "description": "formal, friendly or pirate", "required": false },
        ],
    })
}

fn get_prompt(params: &Value) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("params.name must be a string"))?;
    if name != "greet" {
        return Err(RpcError::invalid_params(format!("unknown prompt: {name}")));
    }
    let arguments = params.get("arguments");
    let argument = |key: &str| arguments.and_then(|a| a.get(key)).and_then(Value::as_str);
    let who = argument("name")
        .filter(|who| !who.is_empty())
        .ok_or_else(|| {
            RpcError::invalid_params("prompt greet: missing required argument `name`")
        })?;
    let style = argument("style")
        .filter(|style| !style.is_empty())
        .unwrap_or("friendly");
    Ok(json!({
        "description": "A greeting in a chosen style",
        "messages": [{
            "role": "user",
            "content": { "type": "text", "text": format!("Say hello to {who} in a {style} way") },
        }],
    }))
}

fn complete(params: &Value) -> Result<Value, RpcError> {
    let reference = params
        .get("ref")
        .ok_or_else(|| RpcError::invalid_params("params.ref is required"))?;
    let argument = params
        .get("argument")
        .ok_or_else(|| RpcError::invalid_params("params.argument is required"))?;
    let argument_name = argument.get("name").and_then(Value::as_str).unwrap_or("");
    let prefix = argument.get("value").and_then(Value::as_str).unwrap_or("");
    let candidates: &[&str] = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => match reference.get("name").and_then(Value::as_str) {
            Some("greet") if argument_name == "style" => &["formal", "friendly", "pirate"],
            Some("greet") => &[],
            _ => return Err(RpcError::invalid_params("unknown prompt in params.ref")),
        },
        Some("ref/resource") => match reference.get("uri").and_then(Value::as_str) {
            Some(ITEM_URI_TEMPLATE) if argument_name == "id" => &["1", "2", "42"],
            Some(ITEM_URI_TEMPLATE) => &[],
            _ => {
                return Err(RpcError::invalid_params(
                    "unknown resource template in params.ref",
                ));
            }
        },
        _ => {
            return Err(RpcError::invalid_params(
                "params.ref.type must be ref/prompt or ref/resource",
            ));
        }
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|v| v.starts_with(prefix))
        .collect();
    Ok(json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }))
}
