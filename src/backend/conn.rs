//! One live connection to a server, whatever its transport: id mapping,
//! pending calls, progress tokens, server→client requests, the handshake.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::http::HttpLink;
use super::sse::SseLink;
use super::stdio::StdioLink;
use super::ws::WsLink;
use super::{Backend, BackendError, ClientBound, ConnectParams, ServerFacts, Sink};
use crate::config::BackendTransport;
use crate::mcp::envelope::{error_object, to_raw};
use crate::mcp::meta::{edit_params, meta_mut};
use crate::mcp::{self, Envelope, Era, JsonRpcId, Kind, ResponsePayload};

/// How long a server→client request may wait for the client's answer.
const SERVER_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The `server/discover` probe of `protocol = "auto"` gives up after this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum Link {
    Stdio(StdioLink),
    Http(HttpLink),
    Sse(SseLink),
    WebSocket(WsLink),
}

/// A cheap handle on a live connection.
#[derive(Clone)]
pub struct Connection {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) backend: String,
    timeout: Duration,
    pub(super) link: Link,
    facts: OnceLock<ServerFacts>,
    pub(super) params: ConnectParams,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Backend-side progress token → (the caller's token, its sink).
    progress: Mutex<HashMap<String, (Box<RawValue>, Sink)>>,
    /// Sessions that receive messages unrelated to any call.
    attached: Mutex<Vec<(u64, Sink)>>,
    next_attach: AtomicU64,
    pub(super) closed: CancellationToken,
    pub(super) tool_headers: Arc<super::params::ToolHeaders>,
    /// `"_meta":{…}` of the 2026-07-28 envelope for this client, as text.
    envelope_meta: OnceLock<String>,
}

struct Pending {
    tx: Option<oneshot::Sender<ResponsePayload>>,
    sink: Option<Sink>,
    progress_token: Option<String>,
}

/// Handed to the session: a guard that detaches on drop.
pub struct Attachment {
    inner: Weak<Inner>,
    id: u64,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade()
            && let Ok(mut a) = inner.attached.lock()
        {
            a.retain(|(id, _)| *id != self.id);
        }
    }
}

pub(super) async fn open(
    backend: &Arc<Backend>,
    params: &ConnectParams,
    known_era: Option<Era>,
) -> Result<Connection, BackendError> {
    let name = backend.name().to_owned();
    let timeout = backend.config.timeout;
    let inner = match &backend.config.transport {
        BackendTransport::Stdio {
            command, env, cwd, ..
        } => {
            let child =
                super::stdio::spawn_child(&name, command, env, cwd.as_deref()).map_err(|e| {
                    backend.unavailable(format!("cannot start {:?}: {e}", command.first()))
                })?;
            let shutdown = backend.shutdown.child_token();
            Arc::new_cyclic(|weak: &Weak<Inner>| {
                let link = super::stdio::start(child, name.clone(), weak.clone(), shutdown.clone());
                Inner::new(
                    name.clone(),
                    timeout,
                    Link::Stdio(link),
                    params.clone(),
                    shutdown,
                    backend.tool_headers.clone(),
                )
            })
        }
        BackendTransport::StreamableHttp { url, headers } => {
            let link = HttpLink::new(
                backend.http.clone(),
                url.clone(),
                headers.clone(),
                None,
                params.resumable,
            );
            Arc::new(Inner::new(
                name.clone(),
                timeout,
                Link::Http(link),
                params.clone(),
                backend.shutdown.child_token(),
                backend.tool_headers.clone(),
            ))
        }
        BackendTransport::Sse { url, headers } => {
            let authorization = params.credentials.authorization();
            let opened = super::sse::open(&backend.http, url, headers, authorization, timeout)
                .await
                .map_err(|reason| backend.unavailable(reason))?;
            let closed = backend.shutdown.child_token();
            Arc::new_cyclic(|weak: &Weak<Inner>| {
                let link = super::sse::start(
                    opened,
                    backend.http.clone(),
                    headers.clone(),
                    timeout,
                    name.clone(),
                    weak.clone(),
                    closed.clone(),
                );
                Inner::new(
                    name.clone(),
                    timeout,
                    Link::Sse(link),
                    params.clone(),
                    closed,
                    backend.tool_headers.clone(),
                )
            })
        }
        BackendTransport::WebSocket { url, headers, ping } => {
            let authorization = params.credentials.authorization();
            let socket = super::ws::open(url, headers, authorization, timeout)
                .await
                .map_err(|reason| backend.unavailable(reason))?;
            let closed = backend.shutdown.child_token();
            Arc::new_cyclic(|weak: &Weak<Inner>| {
                let link =
                    super::ws::start(socket, name.clone(), weak.clone(), closed.clone(), *ping);
                Inner::new(
                    name.clone(),
                    timeout,
                    Link::WebSocket(link),
                    params.clone(),
                    closed,
                    backend.tool_headers.clone(),
                )
            })
        }
    };
    let conn = Connection { inner };
    // Legacy HTTP+SSE servers predate `server/discover`: the transport
    // itself says handshake era (unless a revision is configured).
    let known_era = known_era.or(match &backend.config.transport {
        BackendTransport::Sse { .. } => Some(Era::Handshake),
        BackendTransport::Stdio { .. }
        | BackendTransport::StreamableHttp { .. }
        | BackendTransport::WebSocket { .. } => None,
    });
    let facts = match known_era {
        Some(Era::Stateless) => conn.discover(timeout).await?,
        Some(Era::Handshake) => conn.initialize().await?,
        None => match conn.discover(PROBE_TIMEOUT.min(timeout)).await {
            Ok(facts) => facts,
            Err(_) if conn.is_alive() => conn.initialize().await?,
            Err(e) => return Err(e),
        },
    };
    tracing::info!(
        backend = %name,
        era = ?facts.era,
        protocol_version = %facts.protocol_version,
        "backend connected"
    );
    let handshake = facts.era == Era::Handshake;
    let _ = conn.inner.facts.set(facts);
    // A resumable session's GET stream opens only while the client's GET
    // stream is attached to this replica (`Connection::open_get_stream`):
    // a backend sends each message on one stream, which must be the one
    // whose replica holds the client's.
    if handshake
        && !params.resumable
        && let Link::Http(link) = &conn.inner.link
    {
        link.start_get_stream(Arc::downgrade(&conn.inner), conn.inner.closed.clone(), None);
    }
    Ok(conn)
}

/// A Streamable HTTP connection continuing a backend session another
/// replica opened: no handshake, the facts are the sealed ones.
pub(super) fn resume(
    backend: &Arc<Backend>,
    params: &ConnectParams,
    session_id: Option<String>,
    facts: ServerFacts,
) -> Option<Connection> {
    let BackendTransport::StreamableHttp { url, headers } = &backend.config.transport else {
        return None;
    };
    let link = HttpLink::new(
        backend.http.clone(),
        url.clone(),
        headers.clone(),
        session_id,
        true,
    );
    let inner = Arc::new(Inner::new(
        backend.name().to_owned(),
        backend.config.timeout,
        Link::Http(link),
        params.clone(),
        backend.shutdown.child_token(),
        backend.tool_headers.clone(),
    ));
    let _ = inner.facts.set(facts);
    Some(Connection { inner })
}

impl Inner {
    fn new(
        backend: String,
        timeout: Duration,
        link: Link,
        params: ConnectParams,
        closed: CancellationToken,
        tool_headers: Arc<super::params::ToolHeaders>,
    ) -> Inner {
        Inner {
            backend,
            timeout,
            link,
            facts: OnceLock::new(),
            params,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            attached: Mutex::new(Vec::new()),
            next_attach: AtomicU64::new(1),
            closed,
            tool_headers,
            envelope_meta: OnceLock::new(),
        }
    }

    pub(super) fn unavailable(&self, reason: impl Into<String>) -> BackendError {
        BackendError::Unavailable {
            backend: self.backend.clone(),
            reason: reason.into(),
        }
    }

    pub(super) fn era(&self) -> Option<Era> {
        self.facts.get().map(|f| f.era)
    }

    pub(super) fn protocol_version(&self) -> Option<&str> {
        self.facts.get().map(|f| f.protocol_version.as_str())
    }

    /// The link died: fail every pending call so callers get -32010 now.
    pub(super) fn fail_all(&self, reason: &str) {
        self.closed.cancel();
        let drained: Vec<Pending> = match self.pending.lock() {
            Ok(mut p) => p.drain().map(|(_, v)| v).collect(),
            Err(_) => Vec::new(),
        };
        for mut p in drained {
            if let Some(tx) = p.tx.take() {
                let _ = tx.send(ResponsePayload::Error(error_object(
                    mcp::code::BACKEND_UNAVAILABLE,
                    &format!("backend {:?} is unavailable", self.backend),
                    Some(serde_json::json!({"backend": self.backend, "reason": reason})),
                )));
            }
        }
    }

    /// Routes one message read from the server. `related` is the backend id of
    /// the call whose response stream carried it, when the transport says so.
    pub(super) fn dispatch(self: &Arc<Self>, env: Envelope, related: Option<u64>) {
        match env.kind() {
            Kind::Response => {
                let Some(JsonRpcId::Num(id)) = env.id else {
                    tracing::debug!(backend = %self.backend, "response with a foreign id dropped");
                    return;
                };
                let Ok(id) = u64::try_from(id) else { return };
                let pending = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                if let Some(mut pending) = pending {
                    if let Some(token) = pending.progress_token.take()
                        && let Ok(mut progress) = self.progress.lock()
                    {
                        progress.remove(&token);
                    }
                    if let (Some(tx), Some(payload)) = (pending.tx.take(), env.payload) {
                        let _ = tx.send(payload);
                    }
                }
            }
            Kind::Notification => self.on_notification(env, related),
            Kind::Request => self.on_server_request(env, related),
        }
    }

    fn sink_of(&self, id: u64) -> Option<Sink> {
        self.pending.lock().ok()?.get(&id)?.sink.clone()
    }

    /// The sink of the most recent call still in flight: where a server
    /// request goes when the transport does not say which call it belongs
    /// to (stdio).
    fn latest_sink(&self) -> Option<Sink> {
        let pending = self.pending.lock().ok()?;
        pending
            .iter()
            .filter(|(_, p)| p.sink.is_some())
            .max_by_key(|(id, _)| **id)
            .and_then(|(_, p)| p.sink.clone())
    }

    fn attached_sinks(&self) -> Vec<Sink> {
        self.attached
            .lock()
            .map(|a| a.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    fn on_notification(self: &Arc<Self>, env: Envelope, related: Option<u64>) {
        let method = env.method.unwrap_or_default();
        let probe = env
            .params
            .as_deref()
            .map(mcp::ParamsProbe::parse)
            .unwrap_or_default();
        let mut params = env.params;
        let mut target: Vec<Sink> = Vec::new();
        if method == "notifications/progress" {
            // Map our namespaced token back to the caller's.
            #[derive(serde::Deserialize)]
            struct Token {
                #[serde(rename = "progressToken")]
                progress_token: Value,
            }
            let token = params
                .as_deref()
                .and_then(|p| serde_json::from_str::<Token>(p.get()).ok())
                .and_then(|t| t.progress_token.as_str().map(str::to_owned));
            let route = token.and_then(|t| self.progress.lock().ok()?.get(&t).cloned());
            let Some((original, sink)) = route else {
                tracing::debug!(backend = %self.backend, "progress for an unknown token dropped");
                return;
            };
            params = Some(edit_params(params.as_deref(), |obj| {
                let original: Value = serde_json::from_str(original.get()).unwrap_or(Value::Null);
                obj.insert("progressToken".into(), original);
            }));
            target.push(sink);
        } else if let Some(sub_id) = probe.meta.as_ref().and_then(|m| m.subscription_id.as_ref()) {
            // 2026-07-28 listen streams: the subscription id is our request id.
            if let Some(sink) = serde_json::from_str::<u64>(sub_id.get())
                .ok()
                .and_then(|id| self.sink_of(id))
            {
                target.push(sink);
            }
        } else if let Some(sink) = related.and_then(|id| self.sink_of(id)) {
            target.push(sink);
        } else if method == "notifications/cancelled"
            && let Some(sink) = self.latest_sink()
        {
            // Follows the server request it cancels, which went to the
            // latest call in flight (see on_server_request).
            target.push(sink);
        } else {
            target = self.attached_sinks();
        }
        for sink in target {
            let msg = ClientBound::Notification {
                method: method.clone(),
                params: params.clone(),
            };
            // A full client queue loses this notification for that client
            // only; the client's own stream is cut for back-pressure there.
            if sink.try_send(msg).is_err() {
                tracing::debug!(backend = %self.backend, %method, "client queue full, notification dropped");
            }
        }
    }

    fn on_server_request(self: &Arc<Self>, env: Envelope, related: Option<u64>) {
        let (Some(id), Some(method)) = (env.id, env.method) else {
            return;
        };
        let sink = related
            .and_then(|r| self.sink_of(r))
            .or_else(|| self.latest_sink())
            .or_else(|| self.attached_sinks().into_iter().next());
        let (tx, rx) = oneshot::channel();
        let msg = ClientBound::Request {
            server_id: Some(id.clone()),
            from: Some(self.backend.clone()),
            method,
            params: env.params,
            reply: tx,
        };
        // Delivered in order with the server's notifications (a cancellation
        // of this very request may follow at once); only a full queue waits.
        let queued = match sink {
            None => Err(()),
            Some(sink) => match sink.try_send(msg) {
                Ok(()) => Ok(None),
                Err(mpsc::error::TrySendError::Full(msg)) => Ok(Some((sink, msg))),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
            },
        };
        let inner = self.clone();
        tokio::spawn(async move {
            let payload = match queued {
                Err(()) => ResponsePayload::Error(error_object(
                    mcp::code::METHOD_NOT_FOUND,
                    "no client is connected to answer this request",
                    None,
                )),
                Ok(waiting) => {
                    let sent = match waiting {
                        None => true,
                        Some((sink, msg)) => sink.send(msg).await.is_ok(),
                    };
                    match (sent, tokio::time::timeout(SERVER_REQUEST_TIMEOUT, rx).await) {
                        (true, Ok(Ok(payload))) => payload,
                        _ => ResponsePayload::Error(error_object(
                            mcp::code::INTERNAL_ERROR,
                            "the client did not answer",
                            None,
                        )),
                    }
                }
            };
            let reply = Envelope::response(Some(id), payload);
            if let Err(e) = inner.send_message(&reply).await {
                tracing::debug!(backend = %inner.backend, error = %e, "reply to server request lost");
            }
        });
    }

    /// Sends a notification or a response (no answer expected).
    async fn send_message(self: &Arc<Self>, env: &Envelope) -> Result<(), BackendError> {
        match &self.link {
            Link::Stdio(link) => link
                .send(env.to_json())
                .await
                .map_err(|_| self.unavailable("process exited")),
            Link::Http(link) => link.post_message(self, env).await,
            Link::Sse(link) => link.post(self, env.to_json()).await,
            Link::WebSocket(link) => link
                .send(env.to_json())
                .await
                .map_err(|_| self.unavailable("connection closed")),
        }
    }
}

/// Removes the pending call when the caller stops waiting (timeout, client
/// cancel, stream closed) and tells the server, so it can stop working.
struct CancelGuard {
    inner: Arc<Inner>,
    id: u64,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = self
            .inner
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&self.id));
        let Some(pending) = removed else { return };
        if let Some(token) = pending.progress_token
            && let Ok(mut progress) = self.inner.progress.lock()
        {
            progress.remove(&token);
        }
        // 2026-07-28 over HTTP: closing the stream is the cancellation.
        let stateless_http =
            self.inner.era() == Some(Era::Stateless) && matches!(self.inner.link, Link::Http(_));
        if stateless_http || self.inner.closed.is_cancelled() {
            return;
        }
        let inner = self.inner.clone();
        let id = self.id;
        tokio::spawn(async move {
            let params =
                to_raw(&serde_json::json!({"requestId": id, "reason": "cancelled by the gateway"}));
            let _ = inner
                .send_message(&Envelope::notification(
                    "notifications/cancelled",
                    Some(params),
                ))
                .await;
        });
    }
}

/// Removes the 2026-07-28 envelope keys from `params._meta` (the object
/// is only rebuilt when one is there).
fn without_envelope_meta(params: Option<Box<RawValue>>) -> Option<Box<RawValue>> {
    let has_envelope = params
        .as_deref()
        .map(mcp::ParamsProbe::parse)
        .and_then(|p| p.meta)
        .is_some_and(|m| {
            m.protocol_version.is_some()
                || m.client_info.is_some()
                || m.client_capabilities.is_some()
        });
    let has_log_level = params
        .as_deref()
        .is_some_and(|p| p.get().contains(mcp::META_LOG_LEVEL));
    if !has_envelope && !has_log_level {
        return params;
    }
    Some(edit_params(params.as_deref(), |obj| {
        let meta = meta_mut(obj);
        for key in [
            mcp::META_PROTOCOL_VERSION,
            mcp::META_CLIENT_INFO,
            mcp::META_CLIENT_CAPABILITIES,
            mcp::META_LOG_LEVEL,
        ] {
            meta.remove(key);
        }
        if meta.is_empty() {
            obj.remove("_meta");
        }
    }))
}

impl Connection {
    pub fn facts(&self) -> &ServerFacts {
        // `open` sets the facts before handing the connection out.
        static EMPTY: OnceLock<ServerFacts> = OnceLock::new();
        self.inner.facts.get().unwrap_or_else(|| {
            EMPTY.get_or_init(|| ServerFacts {
                era: Era::Handshake,
                protocol_version: mcp::LATEST_HANDSHAKE.to_owned(),
                capabilities: Value::Null,
                server_info: Value::Null,
                instructions: None,
            })
        })
    }

    pub fn backend(&self) -> &str {
        &self.inner.backend
    }

    pub fn is_alive(&self) -> bool {
        !self.inner.closed.is_cancelled()
    }

    pub fn close(&self) {
        self.inner.closed.cancel();
    }

    /// The backend's `Mcp-Session-Id` (Streamable HTTP, handshake era).
    pub fn backend_session_id(&self) -> Option<String> {
        match &self.inner.link {
            Link::Http(link) => link.session_id(),
            Link::Stdio(_) | Link::Sse(_) | Link::WebSocket(_) => None,
        }
    }

    /// Opens the backend GET stream of a resumable session until `until`
    /// (or the connection) ends, resuming after the event id in `seen`.
    /// Its messages carry their event ids (`EVENT_TAG`) to the session,
    /// which records in `seen` how far the client got.
    pub fn open_get_stream(&self, until: &CancellationToken, seen: Arc<Mutex<Option<String>>>) {
        if self.facts().era != Era::Handshake {
            return;
        }
        if let Link::Http(link) = &self.inner.link {
            let closed = self.inner.closed.child_token();
            let until = until.clone();
            let stop = closed.clone();
            tokio::spawn(async move {
                until.cancelled().await;
                stop.cancel();
            });
            link.start_get_stream(Arc::downgrade(&self.inner), closed, Some(seen));
        }
    }

    /// Ends the backend session for good (the client's DELETE).
    pub async fn end_backend_session(&self) {
        if let Link::Http(link) = &self.inner.link {
            link.end_session(&self.inner).await;
        }
        self.close();
    }

    /// Sends the client's answer to a server→client request straight to
    /// the server, by the server's own id: the answer reached a replica
    /// other than the one that relayed the request.
    pub async fn answer_server_request(
        &self,
        server_id: JsonRpcId,
        payload: ResponsePayload,
    ) -> Result<(), BackendError> {
        self.inner
            .send_message(&Envelope::response(Some(server_id), payload))
            .await
    }

    /// Receives messages unrelated to any call until the attachment drops.
    pub fn attach(&self, sink: Sink) -> Attachment {
        let id = self.inner.next_attach.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut a) = self.inner.attached.lock() {
            a.push((id, sink));
        }
        Attachment {
            inner: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// Sends a notification to the server.
    pub async fn notify(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> Result<(), BackendError> {
        let params = self.with_envelope_meta(method, params);
        self.inner
            .send_message(&Envelope::notification(method, params))
            .await
    }

    /// Sends a request and waits for its response (or the configured
    /// timeout; `None` for streams such as `subscriptions/listen`). Messages
    /// the server sends about this call go to `sink`.
    pub async fn request(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
        sink: Option<Sink>,
        timeout: Option<Duration>,
    ) -> Result<ResponsePayload, BackendError> {
        let _timer = crate::telemetry::BackendTimer::start();
        if !self.is_alive() {
            return Err(self.inner.unavailable("connection closed"));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut params = self.with_envelope_meta(method, params);
        let mut progress_token = None;
        if let Some(sink) = &sink
            && let Some(original) = params
                .as_deref()
                .map(mcp::ParamsProbe::parse)
                .and_then(|p| p.meta)
                .and_then(|m| m.progress_token)
        {
            let token = format!("gw-{id}");
            params = Some(edit_params(params.as_deref(), |obj| {
                meta_mut(obj).insert("progressToken".into(), Value::String(token.clone()));
            }));
            if let Ok(mut progress) = self.inner.progress.lock() {
                progress.insert(token.clone(), (original, sink.clone()));
            }
            progress_token = Some(token);
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.insert(
                id,
                Pending {
                    tx: Some(tx),
                    sink,
                    progress_token,
                },
            );
        }
        let mut guard = CancelGuard {
            inner: self.inner.clone(),
            id,
            armed: true,
        };
        let env = Envelope::request(JsonRpcId::Num(id as i64), method, params);
        let wait = async {
            match &self.inner.link {
                Link::Stdio(link) => {
                    link.send(env.to_json())
                        .await
                        .map_err(|_| self.inner.unavailable("process exited"))?;
                    rx.await
                        .map_err(|_| self.inner.unavailable("connection closed"))
                }
                Link::Http(link) => link.request(&self.inner, id, &env, rx).await,
                Link::Sse(link) => {
                    link.post(&self.inner, env.to_json()).await?;
                    rx.await
                        .map_err(|_| self.inner.unavailable("connection closed"))
                }
                Link::WebSocket(link) => {
                    link.send(env.to_json())
                        .await
                        .map_err(|_| self.inner.unavailable("connection closed"))?;
                    rx.await
                        .map_err(|_| self.inner.unavailable("connection closed"))
                }
            }
        };
        let result = match timeout
            .or(Some(self.inner.timeout))
            .filter(|t| !t.is_zero())
        {
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(r) => r,
                Err(_) => Err(BackendError::Timeout {
                    backend: self.inner.backend.clone(),
                    timeout: limit,
                }),
            },
            None => wait.await,
        };
        if result.is_ok() {
            guard.armed = false;
        }
        if method == "tools/list"
            && let Ok(ResponsePayload::Result(r)) = &result
        {
            self.inner.tool_headers.learn(r);
        }
        result
    }

    /// For a stateless backend, every request carries the 2026-07-28
    /// envelope in `_meta`; the client's own values win when it sent them.
    /// A handshake-era backend never sees that envelope (a stateless
    /// client's request is bridged): dual-era servers such as the Python SDK
    /// refuse enveloped requests on a handshake connection.
    fn with_envelope_meta(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> Option<Box<RawValue>> {
        if self.inner.era() == Some(Era::Handshake) {
            return without_envelope_meta(params);
        }
        if self.inner.era() != Some(Era::Stateless) || method == "notifications/cancelled" {
            return params;
        }
        // Fast path, the common case of a handshake-era client: params
        // without any `_meta` get the envelope spliced in as text, so the
        // arguments are never parsed into a tree and written back.
        let text = params
            .as_deref()
            .map(RawValue::get)
            .unwrap_or("{}")
            .trim_start();
        if !text.contains("\"_meta\"")
            && let Some(rest) = text.strip_prefix('{')
        {
            let meta = self.inner.envelope_meta.get_or_init(|| {
                let p = &self.inner.params;
                format!(
                    "\"_meta\":{{\"{}\":\"{}\",\"{}\":{},\"{}\":{}}}",
                    mcp::META_PROTOCOL_VERSION,
                    mcp::V2026,
                    mcp::META_CLIENT_INFO,
                    p.client_info.get(),
                    mcp::META_CLIENT_CAPABILITIES,
                    p.client_capabilities.get()
                )
            });
            let spliced = if rest.trim_start().starts_with('}') {
                format!("{{{meta}}}")
            } else {
                format!("{{{meta},{rest}")
            };
            if let Ok(raw) = RawValue::from_string(spliced) {
                return Some(raw);
            }
        }
        if mcp::has_meta_version(params.as_deref()) {
            return params;
        }
        let p = &self.inner.params;
        Some(edit_params(params.as_deref(), |obj| {
            let meta = meta_mut(obj);
            meta.insert(
                mcp::META_PROTOCOL_VERSION.into(),
                Value::String(mcp::V2026.into()),
            );
            meta.entry(mcp::META_CLIENT_INFO).or_insert_with(|| {
                serde_json::from_str(p.client_info.get()).unwrap_or(Value::Null)
            });
            meta.entry(mcp::META_CLIENT_CAPABILITIES)
                .or_insert_with(|| {
                    serde_json::from_str(p.client_capabilities.get()).unwrap_or(Value::Null)
                });
        }))
    }

    async fn discover(&self, timeout: Duration) -> Result<ServerFacts, BackendError> {
        let p = &self.inner.params;
        let params = to_raw(&serde_json::json!({"_meta": {
            mcp::META_PROTOCOL_VERSION: mcp::V2026,
            mcp::META_CLIENT_INFO: serde_json::from_str::<Value>(p.client_info.get()).unwrap_or(Value::Null),
            mcp::META_CLIENT_CAPABILITIES: serde_json::from_str::<Value>(p.client_capabilities.get()).unwrap_or(Value::Null),
        }}));
        match self
            .request("server/discover", Some(params), None, Some(timeout))
            .await?
        {
            ResponsePayload::Result(result) => {
                let v: Value = serde_json::from_str(result.get()).unwrap_or(Value::Null);
                let supports_2026 = v
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(mcp::V2026)));
                if !supports_2026 {
                    return Err(self.inner.unavailable("server/discover without 2026-07-28"));
                }
                Ok(ServerFacts {
                    era: Era::Stateless,
                    protocol_version: mcp::V2026.to_owned(),
                    capabilities: v.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
                    server_info: v
                        .get("_meta")
                        .and_then(|m| m.get(mcp::META_SERVER_INFO))
                        .or_else(|| v.get("serverInfo"))
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({"name": self.inner.backend, "version": "unknown"})),
                    instructions: v.get("instructions").and_then(Value::as_str).map(str::to_owned),
                })
            }
            ResponsePayload::Error(_) => Err(self.inner.unavailable("server/discover refused")),
        }
    }

    async fn initialize(&self) -> Result<ServerFacts, BackendError> {
        let p = &self.inner.params;
        let version = if mcp::is_handshake_version(&p.client_version) {
            p.client_version.as_str()
        } else {
            mcp::LATEST_HANDSHAKE
        };
        let params = to_raw(&serde_json::json!({
            "protocolVersion": version,
            "capabilities": serde_json::from_str::<Value>(p.client_capabilities.get()).unwrap_or(Value::Null),
            "clientInfo": serde_json::from_str::<Value>(p.client_info.get()).unwrap_or(Value::Null),
        }));
        let result = match self.request("initialize", Some(params), None, None).await? {
            ResponsePayload::Result(r) => r,
            ResponsePayload::Error(e) => {
                return Err(self
                    .inner
                    .unavailable(format!("initialize failed: {}", e.get())));
            }
        };
        let v: Value = serde_json::from_str(result.get()).unwrap_or(Value::Null);
        let protocol_version = v
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(version)
            .to_owned();
        let facts = ServerFacts {
            era: Era::Handshake,
            protocol_version,
            capabilities: v
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            server_info: v.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: v
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let _ = self.inner.facts.set(facts.clone());
        self.inner
            .send_message(&Envelope::notification("notifications/initialized", None))
            .await?;
        Ok(facts)
    }
}
