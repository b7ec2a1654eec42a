//! A message-oriented client connection (legacy HTTP+SSE, WebSocket): one
//! handshake-era session per connection, opened by the `initialize` the
//! client sends over it and ended with it. In: parsed `Envelope`s from the
//! transport. Out: JSON text on one bounded outbound queue that carries the
//! responses, the messages about each call and the session's unrelated
//! messages. Never waits for the client: a full queue ends the connection
//! (`End::Slow`), so a client that stops reading costs at most
//! `limits.max_queued_messages` messages.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Reject, sse};
use crate::auth::Principal;
use crate::mcp::envelope::to_raw;
use crate::mcp::{Envelope, Kind};
use crate::router::Route;
use crate::session::{Gateway, Session, SessionError, backend_error_response, new_session_id};

/// Where a connection's outbound messages go.
pub(crate) enum Outbox {
    /// The body of the legacy SSE stream: one `event: message` each.
    Sse(mpsc::Sender<Result<Bytes, Infallible>>),
    /// The WebSocket writer task: one text frame each.
    WebSocket(mpsc::Sender<Arc<str>>),
}

impl Outbox {
    fn try_push(&self, json: Arc<str>) -> Result<(), TrySendError<()>> {
        match self {
            Outbox::Sse(body) => body
                .try_send(Ok(sse::message_event(&json, None)))
                .map_err(forget),
            Outbox::WebSocket(frames) => frames.try_send(json).map_err(forget),
        }
    }

    /// SSE comments keep proxies from timing the stream out; WebSocket
    /// pings are the writer task's.
    fn try_keepalive(&self) -> Result<(), TrySendError<()>> {
        match self {
            Outbox::Sse(body) => body.try_send(Ok(sse::keepalive())).map_err(forget),
            Outbox::WebSocket(_) => Ok(()),
        }
    }
}

fn forget<T>(e: TrySendError<T>) -> TrySendError<()> {
    match e {
        TrySendError::Full(_) => TrySendError::Full(()),
        TrySendError::Closed(_) => TrySendError::Closed(()),
    }
}

/// Why a connection ended. The first reason wins; each transport maps it
/// once (WebSocket: a close code, `websocket::close_frame`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client closed the connection or went away.
    ClientClosed,
    /// The client stopped reading and its queue filled up.
    Slow { queued: usize },
    /// The session was ended on the gateway's side (e.g. revoked).
    SessionEnded,
    /// The gateway is shutting down.
    Shutdown,
    /// WebSocket: no frame, not even a pong, for two ping intervals.
    Silent { for_s: u64 },
    /// WebSocket: a binary frame (JSON-RPC travels as text).
    Binary,
    /// WebSocket: a text frame that is not UTF-8.
    InvalidUtf8,
    /// WebSocket: a message over `limits.max_message_bytes`.
    TooLarge { limit: usize },
    /// WebSocket: a frame that breaks RFC 6455.
    Protocol,
}

impl fmt::Display for End {
    // Short: a WebSocket close reason holds at most 123 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::ClientClosed => f.write_str("the client closed the connection"),
            End::Slow { queued } => {
                write!(f, "the client stopped reading ({queued} messages queued)")
            }
            End::SessionEnded => f.write_str("the session has ended"),
            End::Shutdown => f.write_str("the gateway is shutting down"),
            End::Silent { for_s } => write!(f, "no answer to pings for {for_s}s"),
            End::Binary => f.write_str("binary frames are not accepted; send JSON-RPC as text"),
            End::InvalidUtf8 => f.write_str("a text frame was not valid UTF-8"),
            End::TooLarge { limit } => write!(f, "a message was larger than {limit} bytes"),
            End::Protocol => f.write_str("WebSocket protocol error"),
        }
    }
}

#[derive(Clone)]
enum State {
    New,
    Initializing,
    Ready(Arc<Session>),
}

pub(crate) struct Conn {
    /// Minted here: the legacy SSE `session_id` the client POSTs with; a
    /// log field for WebSocket. Not the engine's session id.
    pub id: String,
    pub principal: Principal,
    pub route: Route,
    transport: &'static str,
    gw: Arc<Gateway>,
    /// `None` once the connection is finished, so the SSE body ends.
    outbox: Mutex<Option<Outbox>>,
    queue: usize,
    state: Mutex<State>,
    ended: CancellationToken,
    end: Mutex<Option<End>>,
    /// `initialize` and the relays of calls: shutdown waits for them.
    calls: TaskTracker,
}

impl Conn {
    pub(crate) fn new(
        gw: Arc<Gateway>,
        principal: Principal,
        route: Route,
        transport: &'static str,
        outbox: Outbox,
    ) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: new_session_id(),
            principal,
            route,
            transport,
            queue: gw.config.limits.max_queued_messages,
            gw,
            outbox: Mutex::new(Some(outbox)),
            state: Mutex::new(State::New),
            ended: CancellationToken::new(),
            end: Mutex::new(None),
            calls: TaskTracker::new(),
        });
        // Shutdown: new requests are refused at once; the connection closes
        // when its calls have finished (or their session is closed after
        // `listen.drain_s`).
        let weak = Arc::downgrade(&conn);
        let closing = conn.gw.closing.clone();
        let ended = conn.ended.clone();
        let calls = conn.calls.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = closing.cancelled() => {}
                _ = ended.cancelled() => return,
            }
            calls.close();
            tokio::select! {
                _ = calls.wait() => {}
                _ = ended.cancelled() => return,
            }
            if let Some(conn) = weak.upgrade() {
                conn.end(End::Shutdown);
            }
        });
        conn
    }

    pub(crate) fn ended_token(&self) -> CancellationToken {
        self.ended.clone()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Ends the connection; the transport closes it and calls `finish`.
    pub(crate) fn end(&self, why: End) {
        if let Ok(mut end) = self.end.lock()
            && end.is_none()
        {
            *end = Some(why);
        }
        self.ended.cancel();
    }

    pub(crate) fn reason(&self) -> End {
        self.end
            .lock()
            .ok()
            .and_then(|e| *e)
            .unwrap_or(End::ClientClosed)
    }

    fn state(&self) -> State {
        self.state.lock().map(|s| s.clone()).unwrap_or(State::New)
    }

    fn set_state(&self, state: State) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    /// Queues one message for the client; `false` when the connection has
    /// ended, or ends now because the client stopped reading.
    pub(crate) fn push(&self, json: Arc<str>) -> bool {
        if self.is_ended() {
            return false;
        }
        let sent = match self.outbox.lock() {
            Ok(outbox) => match outbox.as_ref() {
                Some(outbox) => outbox.try_push(json),
                None => Err(TrySendError::Closed(())),
            },
            Err(_) => Err(TrySendError::Closed(())),
        };
        self.sent(sent)
    }

    fn sent(&self, sent: Result<(), TrySendError<()>>) -> bool {
        match sent {
            Ok(()) => true,
            Err(TrySendError::Full(())) => {
                self.end(End::Slow { queued: self.queue });
                false
            }
            Err(TrySendError::Closed(())) => {
                self.end(End::ClientClosed);
                false
            }
        }
    }

    fn push_env(&self, env: &Envelope) -> bool {
        self.push(Arc::from(env.to_json()))
    }

    /// A refusal of a message whose id could not be read: JSON-RPC answers
    /// it with `"id": null`.
    pub(crate) fn refuse_unreadable(&self, reject: &Reject) {
        let mut error: Value =
            serde_json::from_str(&reject.to_envelope(None).to_json()).unwrap_or(Value::Null);
        if let Value::Object(obj) = &mut error {
            obj.insert("id".into(), Value::Null);
        }
        self.push(Arc::from(error.to_string()));
    }

    /// Periodic: an SSE keep-alive comment, and the session kept from
    /// expiring while its connection is open and alive.
    pub(crate) fn keepalive(&self) {
        if let State::Ready(session) = self.state() {
            // Looking the session up marks it as used.
            let _ = self.gw.session(&session.id, &self.principal);
        }
        let sent = match self.outbox.lock() {
            Ok(outbox) => match outbox.as_ref() {
                Some(outbox) => outbox.try_keepalive(),
                None => Err(TrySendError::Closed(())),
            },
            Err(_) => Err(TrySendError::Closed(())),
        };
        self.sent(sent);
    }

    /// One message from the client. Handshake-era semantics: `initialize`
    /// first (only `ping` is answered before it), then the session.
    pub(crate) async fn receive(self: &Arc<Self>, env: Envelope) {
        let state = self.state();
        match env.kind() {
            Kind::Request => self.request(state, env),
            Kind::Notification => match state {
                State::Ready(session) => session.handle_notification(env).await,
                State::New | State::Initializing => {
                    tracing::debug!(conn.id = %self.id, method = env.method.as_deref().unwrap_or(""), "notification before initialize ignored");
                }
            },
            Kind::Response => match state {
                State::Ready(session) => session.handle_response(env),
                State::New | State::Initializing => {
                    tracing::debug!(conn.id = %self.id, "response before initialize ignored");
                }
            },
        }
    }

    fn request(self: &Arc<Self>, state: State, env: Envelope) {
        let id = env.id.clone();
        if self.gw.closing.is_cancelled() {
            self.push_env(&Reject::ShuttingDown.to_envelope(id));
            return;
        }
        match (state, env.method.as_deref().unwrap_or("")) {
            (State::New, "initialize") => self.initialize(env),
            (State::Initializing | State::Ready(_), "initialize") => {
                self.push_env(&Reject::AlreadyInitialized.to_envelope(id));
            }
            // The lifecycle allows ping before initialization.
            (State::New | State::Initializing, "ping") => {
                if let Some(id) = id {
                    self.push_env(&Envelope::result(id, to_raw(&serde_json::json!({}))));
                }
            }
            // server/discover lands here too: its error makes a 2026-07-28
            // client fall back to initialize.
            (State::New | State::Initializing, _) => {
                self.push_env(&Reject::NotInitialized.to_envelope(id));
            }
            (State::Ready(session), _) => self.call(session, env),
        }
    }

    fn initialize(self: &Arc<Self>, env: Envelope) {
        self.set_state(State::Initializing);
        let conn = self.clone();
        // Spawned: opening the backends must not stop the transport from
        // reading (pongs, a close) meanwhile.
        self.calls.spawn(async move {
            let id = env.id.clone();
            let opened = conn
                .gw
                .initialize(
                    conn.principal.clone(),
                    conn.route.clone(),
                    conn.transport,
                    &env,
                )
                .await;
            match opened {
                Ok((session, response)) => {
                    let events = session.subscribe_stream(None);
                    conn.set_state(State::Ready(session.clone()));
                    if conn.is_ended() {
                        // The client left while the backends were opening.
                        conn.gw.end_session(&session.id);
                        return;
                    }
                    tracing::info!(conn.id = %conn.id, session.id = %session.id, transport = conn.transport, protocol_version = %session.client.protocol_version, "session opened");
                    if conn.push_env(&response) {
                        tokio::spawn(conn.clone().relay_stream(session, events));
                    }
                }
                Err(e) => {
                    conn.set_state(State::New);
                    let error = match e {
                        SessionError::TooMany { limit } => {
                            Reject::TooManySessions(limit).to_envelope(id)
                        }
                        SessionError::Backend(e) => backend_error_response(id, &e),
                        SessionError::NotFound => Reject::UnknownSession.to_envelope(id),
                        SessionError::Forbidden(decision) => decision.forbidden(id),
                    };
                    conn.push_env(&error);
                }
            }
        });
    }

    fn call(self: &Arc<Self>, session: Arc<Session>, env: Envelope) {
        let (tx, rx) = mpsc::channel(self.queue);
        let task = session.spawn_request(env, tx);
        self.calls.spawn(self.clone().relay_call(task, rx));
    }

    /// The call's own messages (progress, server→client requests), then its
    /// response, onto the connection's queue without ever waiting on it.
    async fn relay_call(
        self: Arc<Self>,
        mut task: JoinHandle<Option<Envelope>>,
        mut rx: mpsc::Receiver<Envelope>,
    ) {
        loop {
            tokio::select! {
                biased;
                Some(msg) = rx.recv() => {
                    if !self.push_env(&msg) {
                        return;
                    }
                }
                done = &mut task => {
                    while let Ok(msg) = rx.try_recv() {
                        if !self.push_env(&msg) {
                            return;
                        }
                    }
                    // None: cancelled by the client, nothing to answer.
                    if let Ok(Some(response)) = done {
                        self.push_env(&response);
                    }
                    return;
                }
                _ = self.ended.cancelled() => return,
            }
        }
    }

    /// Messages no call claims (list_changed, resources/updated, unrelated
    /// server requests).
    async fn relay_stream(
        self: Arc<Self>,
        session: Arc<Session>,
        mut events: mpsc::Receiver<crate::session::stream::Event>,
    ) {
        let closed = session.closed_token();
        loop {
            tokio::select! {
                _ = self.ended.cancelled() => return,
                _ = closed.cancelled() => break,
                event = events.recv() => match event {
                    Some((_, _, json)) => {
                        if !self.push(json) {
                            return;
                        }
                    }
                    None if session.is_closed() => break,
                    // The session cut this listener: it fell `queue` behind.
                    None => {
                        self.end(End::Slow { queued: self.queue });
                        return;
                    }
                },
            }
        }
        if self.gw.closing.is_cancelled() {
            // Shutdown closes sessions once their calls are done; the
            // connection ends when its relays have delivered the last
            // responses (see `Conn::new`), not before.
            return;
        }
        self.end(End::SessionEnded);
    }

    /// The transport is done with the connection: the session ends with it
    /// (a client gone is a session gone on these transports).
    pub(crate) fn finish(&self) {
        self.end(End::ClientClosed);
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.take();
        }
        let why = self.reason();
        let session = match self.state() {
            State::Ready(session) => Some(session),
            State::New | State::Initializing => None,
        };
        if let Some(session) = &session {
            self.gw.end_session(&session.id);
        }
        let session_id = session.as_ref().map(|s| s.id.as_str()).unwrap_or("");
        match why {
            End::ClientClosed | End::SessionEnded | End::Shutdown => {
                tracing::info!(conn.id = %self.id, session.id = session_id, transport = self.transport, reason = %why, "connection closed");
            }
            End::Slow { .. }
            | End::Silent { .. }
            | End::Binary
            | End::InvalidUtf8
            | End::TooLarge { .. }
            | End::Protocol => {
                tracing::warn!(conn.id = %self.id, session.id = session_id, transport = self.transport, reason = %why, "disconnected the client");
            }
        }
    }
}

/// The open legacy SSE and WebSocket connections: POSTs find theirs by id,
/// and a principal may hold at most `limits.max_sessions_per_principal`
/// (initialized or not).
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
}

impl Registry {
    pub(crate) fn admit(&self, principal: &Principal, limit: usize) -> Result<(), Reject> {
        let key = principal.binding_key();
        let held = self
            .conns
            .lock()
            .map(|c| {
                c.values()
                    .filter(|c| c.principal.binding_key() == key)
                    .count()
            })
            .unwrap_or(0);
        if held >= limit {
            return Err(Reject::TooManySessions(limit));
        }
        Ok(())
    }

    pub(crate) fn insert(&self, conn: &Arc<Conn>) {
        if let Ok(mut c) = self.conns.lock() {
            c.insert(conn.id.clone(), conn.clone());
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.conns.lock().ok().and_then(|c| c.get(id).cloned())
    }

    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(id);
        }
    }
}
