//! One client session: routes each request to its backend, relays what the
//! backend sends back about it, and bridges the eras at this edge.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::stream::GetStream;
use super::{Gateway, backend_error_response, elapsed_us, lists, park};
use crate::audit::{Outcome, Record};
use crate::auth::Principal;
use crate::backend::{BackendError, ClientBound, ConnectParams, Connection, ServerFacts, Sink};
use crate::limits::{Refused, retry_after_ms};
use crate::mcp::envelope::{error_object, to_raw};
use crate::mcp::meta::{edit_params, result_type};
use crate::mcp::{self, Call, Envelope, Era, JsonRpcId, Method, ResponsePayload, Target};
use crate::router::Route;

/// Messages for the client on the stream of the request being handled.
pub type Out = mpsc::Sender<Envelope>;

/// A client request that runs where it is polled (see
/// [`Session::start_request`]); `None` when it was cancelled.
pub type PendingCall = Pin<Box<dyn Future<Output = Option<Envelope>> + Send>>;

/// How `notifications/cancelled` stops a request: its task, or the call
/// future wherever it is being polled.
enum Abort {
    Task(AbortHandle),
    Call(futures::future::AbortHandle),
}

impl Abort {
    fn abort(&self) {
        match self {
            Abort::Task(h) => h.abort(),
            Abort::Call(h) => h.abort(),
        }
    }
}

/// A handshake-era call polled in place by the HTTP exchange that carried
/// it. If the exchange ends first (the client went away), the rest of the
/// call goes on as a task of its own: in that era a disconnect is not a
/// cancellation, only `notifications/cancelled` is. Saves spawning a task
/// and waking its waiter for every call that completes normally.
pub struct Detached(Option<PendingCall>);

impl Detached {
    pub fn new(call: PendingCall) -> Detached {
        Detached(Some(call))
    }
}

impl Future for Detached {
    type Output = Option<Envelope>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        let Some(call) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let out = std::task::ready!(call.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(out)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // Outside a runtime (it is shutting down) the call just ends.
        if let (Some(call), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(call);
        }
    }
}

/// What the client said about itself.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub era: Era,
    pub protocol_version: String,
    pub connect: ConnectParams,
}

/// At most this many `input_required` rounds are bridged for one request.
const MAX_INPUT_ROUNDS: usize = 8;

pub struct Session {
    pub id: String,
    pub principal: Principal,
    pub route: Route,
    pub client: ClientFacts,
    pub transport: &'static str,
    gateway: Weak<Gateway>,
    upstreams: Vec<Upstream>,
    unrelated: Sink,
    stream: Mutex<GetStream>,
    client_requests: Mutex<HashMap<String, oneshot::Sender<ResponsePayload>>>,
    next_client_request: AtomicU64,
    in_flight: Mutex<HashMap<JsonRpcId, Abort>>,
    busy: AtomicUsize,
    permits: Arc<Semaphore>,
    last_seen: Mutex<Instant>,
    closed: CancellationToken,
    pub(super) catalog: lists::Catalog,
    /// Tool annotations seen in `tools/list`, for policy.
    pub(super) tool_facts: Mutex<super::authz::ToolCatalog>,
    /// Decisions already made for a target (when the policies allow it).
    pub(super) decisions: Mutex<super::authz::DecisionCache>,
    queue: usize,
    /// `logging/setLevel` of a handshake-era client, sent on in `_meta` to
    /// stateless servers.
    log_level: Mutex<Option<Value>>,
    /// A server's id for a request relayed to the client → the id the
    /// client saw, so the server's `notifications/cancelled` can be mapped.
    server_request_ids: Mutex<HashMap<JsonRpcId, String>>,
    /// The fixture this session is recorded to (`[record]`).
    tape: Option<Arc<crate::record::Tape>>,
    /// A sealed session any replica may serve (`ConnectParams::resumable`):
    /// its backend sessions are never re-opened here (the sealed id names
    /// them), its backend GET streams follow the client's GET stream, and
    /// its server→client request ids say where the answer goes.
    resumable: bool,
    /// While the client's GET stream is attached here: cancelled when it
    /// ends or is replaced, which closes the backends' GET streams.
    backend_streams: Mutex<Option<CancellationToken>>,
}

struct Upstream {
    backend: Arc<crate::backend::Backend>,
    conn: tokio::sync::Mutex<Option<(Connection, crate::backend::Attachment)>>,
    /// Handshake-era client, stateless server: the listen request kept open
    /// for the client's GET stream, and the resources it subscribed to.
    watcher: Mutex<Option<AbortHandle>>,
    subscriptions: Mutex<std::collections::BTreeSet<String>>,
    /// The last event id this replica saw on the backend's GET stream, from
    /// which the next one resumes (`Last-Event-ID`).
    seen_event: Arc<Mutex<Option<String>>>,
}

impl Session {
    pub(super) fn new(
        gateway: &Arc<Gateway>,
        id: String,
        principal: Principal,
        route: Route,
        client: ClientFacts,
        transport: &'static str,
    ) -> Arc<Session> {
        let limits = &gateway.config.limits;
        let (tx, mut rx) = mpsc::channel::<ClientBound>(limits.max_queued_messages);
        let upstreams = route
            .backends
            .iter()
            .map(|b| Upstream {
                backend: b.clone(),
                conn: tokio::sync::Mutex::new(None),
                watcher: Mutex::new(None),
                subscriptions: Mutex::new(Default::default()),
                seen_event: Arc::default(),
            })
            .collect();
        let tape = gateway.recorder.as_ref().map(|r| {
            r.tape(crate::record::TapeInfo {
                session_id: &id,
                era: client.era,
                protocol_version: &client.protocol_version,
                transport,
                route: &route.key,
                principal: &principal,
                backends: route.backends.iter().map(|b| &b.config).collect(),
            })
        });
        let resumable = client.connect.resumable;
        let session = Arc::new(Session {
            resumable,
            backend_streams: Mutex::new(None),
            id,
            principal,
            route,
            client,
            transport,
            gateway: Arc::downgrade(gateway),
            upstreams,
            unrelated: tx,
            stream: Mutex::new(GetStream::new(limits.max_queued_messages)),
            client_requests: Mutex::new(HashMap::new()),
            next_client_request: AtomicU64::new(1),
            in_flight: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            permits: Arc::new(Semaphore::new(limits.max_in_flight_per_session)),
            last_seen: Mutex::new(Instant::now()),
            closed: CancellationToken::new(),
            catalog: lists::Catalog::default(),
            tool_facts: Mutex::new(Default::default()),
            decisions: Mutex::new(Default::default()),
            queue: limits.max_queued_messages,
            log_level: Mutex::new(None),
            server_request_ids: Mutex::new(HashMap::new()),
            tape,
        });
        // Messages no call claims (list_changed, resources/updated, logs,
        // unrelated server requests) go to the GET stream.
        let weak = Arc::downgrade(&session);
        let closed = session.closed.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = closed.cancelled() => return,
                    m = rx.recv() => m,
                };
                let Some(msg) = msg else { return };
                let Some(session) = weak.upgrade() else {
                    return;
                };
                if let Some(tape) = &session.tape {
                    tape.from_backend(None, None, &msg);
                }
                session.relay(msg, None).await;
            }
        });
        session
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub fn close(&self) {
        self.closed.cancel();
        if let Ok(mut s) = self.stream.lock() {
            s.close();
        }
        if let Ok(mut f) = self.in_flight.lock() {
            for (_, h) in f.drain() {
                h.abort();
            }
        }
        for u in &self.upstreams {
            if let Some(w) = u.watcher.lock().ok().and_then(|mut w| w.take()) {
                w.abort();
            }
            if let Ok(mut c) = u.conn.try_lock()
                && let Some((conn, _)) = c.take()
            {
                // Shared connections stay open for their other sessions.
                if u.backend.share_key("").is_none() {
                    conn.close();
                }
            }
        }
    }

    pub fn closed_token(&self) -> CancellationToken {
        self.closed.clone()
    }

    pub(crate) fn touch(&self) {
        if let Ok(mut t) = self.last_seen.lock() {
            *t = Instant::now();
        }
    }

    pub(super) fn idle_for(&self) -> Duration {
        self.last_seen
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    pub(super) fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    /// Opens every upstream of the route. With one backend its failure is
    /// the session's; with several, the reachable ones serve (partial).
    pub(super) async fn connect_all(self: &Arc<Self>) -> Result<Vec<ServerFacts>, BackendError> {
        let results =
            futures::future::join_all((0..self.upstreams.len()).map(|i| self.conn(i))).await;
        let mut facts = Vec::new();
        let mut first_error = None;
        for r in results {
            match r {
                Ok(c) => facts.push(c.facts().clone()),
                Err(e) => {
                    tracing::warn!(session.id = %self.id, error = %e, "backend unreachable");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if facts.is_empty() || self.upstreams.len() == 1 || lists::strict(self) => {
                Err(e)
            }
            _ => Ok(facts),
        }
    }

    /// The live connection to upstream `index`, opened (again) if needed.
    async fn conn(self: &Arc<Self>, index: usize) -> Result<Connection, BackendError> {
        // The common case needs no await; connecting is boxed so that its
        // large state does not weigh on every request's future.
        if let Some(upstream) = self.upstreams.get(index)
            && let Ok(slot) = upstream.conn.try_lock()
            && let Some((conn, _)) = slot.as_ref()
            && conn.is_alive()
        {
            return Ok(conn.clone());
        }
        Box::pin(self.open_conn(index)).await
    }

    async fn open_conn(self: &Arc<Self>, index: usize) -> Result<Connection, BackendError> {
        let Some(upstream) = self.upstreams.get(index) else {
            return Err(BackendError::Unavailable {
                backend: String::new(),
                reason: "no such backend".into(),
            });
        };
        let mut slot = upstream.conn.lock().await;
        if let Some((conn, _)) = slot.as_ref()
            && conn.is_alive()
        {
            return Ok(conn.clone());
        }
        if self.resumable {
            // The sealed id names this session's backend sessions: a new
            // one opened here would be unknown to every other replica.
            return Err(BackendError::Unavailable {
                backend: upstream.backend.name().to_owned(),
                reason: "not connected in this session".into(),
            });
        }
        let conn = upstream
            .backend
            .connect(&self.principal.binding_key(), &self.client.connect)
            .await?;
        if let Some(tape) = &self.tape {
            tape.backend_facts(upstream.backend.name(), conn.facts());
        }
        let attachment = conn.attach(self.unrelated_sink(index));
        *slot = Some((conn.clone(), attachment));
        drop(slot);
        if self.client.era == Era::Handshake && conn.facts().era == Era::Stateless {
            self.restart_watcher(index, conn.clone());
        }
        Ok(conn)
    }

    /// Puts a connection opened (or resumed) before the session existed
    /// into upstream `index`.
    pub(super) fn install(self: &Arc<Self>, index: usize, conn: Connection) {
        let Some(upstream) = self.upstreams.get(index) else {
            return;
        };
        if let Some(tape) = &self.tape {
            tape.backend_facts(upstream.backend.name(), conn.facts());
        }
        let attachment = conn.attach(self.unrelated_sink(index));
        match upstream.conn.try_lock() {
            Ok(mut slot) => *slot = Some((conn.clone(), attachment)),
            // A new session's slots are not locked by anyone yet.
            Err(_) => debug_assert!(false, "installing into a busy upstream"),
        }
        if self.client.era == Era::Handshake && conn.facts().era == Era::Stateless {
            self.restart_watcher(index, conn);
        }
    }

    /// Aborts the client's request `id` if it runs here. Dropping the call
    /// tells the backend (notifications/cancelled with the backend's own id).
    pub(crate) fn abort_request(&self, id: &JsonRpcId) -> bool {
        let handle = self.in_flight.lock().ok().and_then(|mut f| f.remove(id));
        match handle {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_resumable(&self) -> bool {
        self.resumable
    }

    /// Opens the backends' GET streams of a resumable session for the
    /// client's GET stream attached here; they close when the returned
    /// guard drops (the client's stream ended) or a newer GET replaces it.
    pub fn attach_backend_streams(&self) -> Option<tokio_util::sync::DropGuard> {
        if !self.resumable {
            return None;
        }
        let token = self.closed.child_token();
        if let Ok(mut current) = self.backend_streams.lock()
            && let Some(old) = current.replace(token.clone())
        {
            old.cancel();
        }
        for u in &self.upstreams {
            if let Ok(slot) = u.conn.try_lock()
                && let Some((conn, _)) = slot.as_ref()
            {
                conn.open_get_stream(&token, u.seen_event.clone());
            }
        }
        Some(token.drop_guard())
    }

    /// Ends the backend sessions for good (the client's DELETE of a
    /// resumable session; other sessions end theirs when dropped).
    pub async fn end_backend_sessions(&self) {
        for u in &self.upstreams {
            let conn = u.conn.lock().await.as_ref().map(|(c, _)| c.clone());
            if let Some(conn) = conn {
                conn.end_backend_session().await;
            }
        }
    }

    /// Where upstream `index` delivers what no call claims. On a
    /// multiplexed route a relay task first puts resource URIs in their
    /// public form (`{backend}+{uri}` when two backends list one); it ends
    /// with the connection's attachment.
    fn unrelated_sink(self: &Arc<Self>, index: usize) -> crate::backend::Sink {
        if self.upstreams.len() < 2 {
            return self.unrelated.clone();
        }
        let (tx, mut rx) = mpsc::channel::<ClientBound>(self.queue);
        let weak = Arc::downgrade(self);
        let unrelated = self.unrelated.clone();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Some(session) = weak.upgrade() else {
                    return;
                };
                let msg = lists::from_backend(&session, index, msg);
                drop(session);
                if unrelated.send(msg).await.is_err() {
                    return;
                }
            }
        });
        tx
    }

    /// (Re)opens the listen request that feeds a handshake-era client's GET
    /// stream from a stateless server.
    fn restart_watcher(self: &Arc<Self>, index: usize, conn: Connection) {
        let Some(upstream) = self.upstreams.get(index) else {
            return;
        };
        let resources = upstream
            .subscriptions
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let task = tokio::spawn(super::listen::watch_stateless_backend(
            self.clone(),
            index,
            conn,
            resources,
        ));
        if let Ok(mut w) = upstream.watcher.lock()
            && let Some(old) = w.replace(task.abort_handle())
        {
            old.abort();
        }
    }

    /// `resources/(un)subscribe` from a handshake-era client to a stateless
    /// server: kept here and carried by the watcher's listen filter.
    async fn subscribe_via_listen(
        self: &Arc<Self>,
        index: usize,
        env: &Envelope,
        subscribe: bool,
    ) -> Option<Envelope> {
        let conn = self.conn(index).await.ok()?;
        if conn.facts().era != Era::Stateless {
            return None;
        }
        let uri = mcp::meta::params_object(env.params.as_deref())
            .get("uri")
            .and_then(Value::as_str)
            .map(str::to_owned)?;
        let upstream = self.upstreams.get(index)?;
        if let Ok(mut subs) = upstream.subscriptions.lock() {
            if subscribe {
                subs.insert(uri);
            } else {
                subs.remove(&uri);
            }
        }
        self.restart_watcher(index, conn);
        Some(Envelope::result(
            env.id.clone().unwrap_or(JsonRpcId::Num(0)),
            to_raw(&serde_json::json!({})),
        ))
    }

    fn upstream_era(&self, index: usize) -> Option<Era> {
        let slot = self.upstreams.get(index)?.conn.try_lock().ok()?;
        slot.as_ref().map(|(c, _)| c.facts().era)
    }

    /// Runs a request as a task the client can cancel
    /// (`notifications/cancelled`). `None` when it was cancelled.
    pub fn spawn_request(
        self: &Arc<Self>,
        env: Envelope,
        out: Out,
    ) -> tokio::task::JoinHandle<Option<Envelope>> {
        let session = self.clone();
        let id = env.id.clone();
        let tracker = self.gateway.upgrade().map(|g| g.tracker.clone());
        let task_id = id.clone();
        let fut = async move {
            // Boxed: the call's state machine is large, and the runtime moves
            // a task's future several times while spawning and finishing it.
            let response = Box::pin(session.handle_request(env, out)).await;
            if let (Some(id), Ok(mut f)) = (&task_id, session.in_flight.lock()) {
                f.remove(id);
            }
            Some(response)
        };
        // The lock is held while spawning so the task cannot remove its
        // entry before it is inserted.
        let mut in_flight = self.in_flight.lock().ok();
        let handle = match tracker {
            Some(t) => t.spawn(fut),
            None => tokio::spawn(fut),
        };
        if let (Some(id), Some(f)) = (id, in_flight.as_mut()) {
            f.insert(id, Abort::Task(handle.abort_handle()));
        }
        handle
    }

    /// A request as a future for the caller to poll (no task of its own),
    /// cancellable by `notifications/cancelled` like a spawned one and
    /// counted by the gateway's tracker until it ends, so a shutdown drains
    /// it. Dropping it cancels the call; wrap it in [`Detached`] where a
    /// dropped exchange must not.
    pub fn start_request(self: &Arc<Self>, env: Envelope, out: Out) -> PendingCall {
        let session = self.clone();
        let id = env.id.clone();
        let (abort, registration) = futures::future::AbortHandle::new_pair();
        if let (Some(id), Ok(mut f)) = (&id, self.in_flight.lock()) {
            f.insert(id.clone(), Abort::Call(abort));
        }
        let call = async move {
            let run =
                futures::future::Abortable::new(session.handle_request(env, out), registration);
            // Aborted: `abort_request` already took the entry (and the id
            // may since have been reused by a newer request).
            let response = run.await.ok()?;
            if let (Some(id), Ok(mut f)) = (&id, session.in_flight.lock()) {
                f.remove(id);
            }
            Some(response)
        };
        match self.gateway.upgrade() {
            Some(gw) => Box::pin(gw.tracker.track_future(call)),
            None => Box::pin(call),
        }
    }

    /// Registers a spawned request under its client id so a
    /// `notifications/cancelled` can abort it.
    pub fn track(&self, id: &JsonRpcId, handle: AbortHandle) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.insert(id.clone(), Abort::Task(handle));
        }
    }

    /// Handles one client request end to end: decide, limit, route, audit.
    pub async fn handle_request(self: &Arc<Self>, env: Envelope, out: Out) -> Envelope {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let response = self.handle_request_inner(env, out).await;
        self.record_client(crate::record::Dir::GatewayToClient, &response);
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.touch();
        response
    }

    async fn handle_request_inner(self: &Arc<Self>, mut env: Envelope, out: Out) -> Envelope {
        let started = Instant::now();
        let id = env.id.clone();
        let method = env.method.clone().unwrap_or_default();
        let call = mcp::classify(&method, env.params.as_deref());
        let Some(gw) = self.gateway.upgrade() else {
            return Envelope::error(
                id,
                mcp::code::INTERNAL_ERROR,
                "the gateway is shutting down",
                None,
            );
        };
        if gw.auth.still_valid(&self.principal).is_err() {
            self.record_client(crate::record::Dir::ClientToGateway, &env);
            return Envelope::error(
                id,
                mcp::code::UNAUTHENTICATED,
                "credentials are no longer valid",
                Some(serde_json::json!({"reason": "credentials expired or revoked"})),
            );
        }
        // Resolve the target (backend, own name, annotations), then decide.
        let decision = super::authz::decide(self, &gw, &call, &env, &out).await;
        if let Some(tape) = &self.tape {
            tape.client(crate::record::Dir::ClientToGateway, &env, Some(&decision));
        }
        let request_id = id.as_ref().map(|i| i.to_string());
        let record = Record {
            request_id: request_id.clone(),
            session_id: (self.client.era == Era::Handshake).then(|| self.id.clone()),
            transport: self.transport,
            principal: self.principal.clone(),
            method: method.clone(),
            call: call.clone(),
            backend: None,
            decision: decision.clone(),
            arguments: crate::audit::arguments_of(env.params.as_deref()),
            origin: self.route.origin.clone(),
            remote_addr: self.route.remote_addr.clone(),
        };
        // One span per decided message; the backend continues it.
        let span = gw
            .tracer
            .begin(&method, crate::trace::parent_in(env.params.as_deref()));
        if let Some(span) = &span {
            env.params = Some(crate::trace::with_traceparent(
                env.params.as_deref(),
                &span.context.traceparent(),
            ));
        }
        // Exactly one record from here on, `cancelled` if the task is dropped.
        let mut audit = AuditOnce::new(gw.audit.clone(), record, started);
        audit.trace(gw.tracer.clone(), span);
        if !decision.allow {
            let response = Envelope::error(
                id,
                mcp::code::FORBIDDEN,
                "forbidden by policy",
                Some(serde_json::json!({"policies": decision.policies, "reason": decision.reason})),
            );
            gw.metrics.observe_decided(&method, "", "deny", "error");
            tracing::info!(
                session.id = %self.id, sub = %self.principal.sub, method = %method,
                reason = %decision.reason, "denied by policy"
            );
            audit
                .finish(None, Outcome::Error(mcp::code::FORBIDDEN))
                .await;
            return response;
        }
        let backend = self.backend_for(&call);
        let _in_flight = match gw
            .limits
            .admit(&self.principal, &call, backend.as_deref())
            .await
        {
            Ok(guard) => guard,
            Err(Refused::StateUnavailable) => {
                // Fail closed, as credential checks do: 503 (stateless) and
                // -32001 with the reason "state store unavailable".
                gw.metrics.observe_decided(
                    &method,
                    backend.as_deref().unwrap_or(""),
                    "allow",
                    "error",
                );
                tracing::warn!(
                    session.id = %self.id, sub = %self.principal.sub, method = %method,
                    "refused: the shared rate limits are in the state store, which is unavailable"
                );
                audit
                    .finish(backend, Outcome::Error(mcp::code::UNAUTHENTICATED))
                    .await;
                return Envelope::error(
                    id,
                    mcp::code::UNAUTHENTICATED,
                    crate::state::UNAVAILABLE_REASON,
                    Some(serde_json::json!({"reason": crate::state::UNAVAILABLE_REASON})),
                );
            }
            Err(Refused::Limited {
                retry_after,
                reason,
            }) => {
                gw.metrics.observe_decided(
                    &method,
                    backend.as_deref().unwrap_or(""),
                    "allow",
                    "rate_limited",
                );
                tracing::info!(
                    session.id = %self.id, sub = %self.principal.sub, method = %method,
                    reason = %reason, "rate limited"
                );
                audit
                    .finish(backend, Outcome::Error(mcp::code::RATE_LIMITED))
                    .await;
                return Envelope::error(
                    id,
                    mcp::code::RATE_LIMITED,
                    "rate limited",
                    Some(serde_json::json!({
                        "retry_after_ms": retry_after_ms(retry_after),
                        "reason": reason,
                    })),
                );
            }
        };
        let _permit = self.permits.clone().acquire_owned().await;
        let ((response, backend), in_backend) =
            crate::telemetry::time_backend(self.route_request(&call, env, &out)).await;
        let response = super::authz::filter_list(self, &gw, &call, response);
        gw.metrics.observe_split(
            &method,
            backend.as_deref().unwrap_or(""),
            started.elapsed(),
            in_backend,
        );
        let outcome = match response.error_code() {
            None => Outcome::Ok,
            Some(mcp::code::BACKEND_TIMEOUT) => Outcome::Timeout,
            Some(code) => Outcome::Error(code),
        };
        if matches!(
            outcome,
            Outcome::Timeout | Outcome::Error(mcp::code::BACKEND_UNAVAILABLE)
        ) {
            gw.metrics.backend_errors.fetch_add(1, Ordering::Relaxed);
        }
        gw.metrics.observe(
            &method,
            backend.as_deref().unwrap_or(""),
            started.elapsed(),
            outcome == Outcome::Ok,
        );
        gw.metrics.observe_decided(
            &method,
            backend.as_deref().unwrap_or(""),
            "allow",
            outcome_label(outcome),
        );
        audit.finish(backend, outcome).await;
        response
    }

    /// Chooses the backend(s) for a request and forwards it.
    async fn route_request(
        self: &Arc<Self>,
        call: &Call,
        env: Envelope,
        out: &Out,
    ) -> (Envelope, Option<String>) {
        let id = env.id.clone();
        let method = env.method.clone().unwrap_or_default();
        let single = !self.route.prefixed && self.upstreams.len() == 1;
        let index = match (&call.method, &call.target) {
            (Method::Ping, _) => {
                return (
                    Envelope::result(
                        id.unwrap_or(JsonRpcId::Num(0)),
                        to_raw(&serde_json::json!({})),
                    ),
                    None,
                );
            }
            (Method::Initialize, _) => {
                return (
                    Envelope::error(
                        id,
                        mcp::code::INVALID_REQUEST,
                        "the session is already initialized",
                        None,
                    ),
                    None,
                );
            }
            (Method::ToolsCall, Target::Tool(name)) => {
                return match lists::resolve_tool(self, name) {
                    Some(resolved) => {
                        let env = self.curated_call(resolved.index, &resolved.own, name, env);
                        self.forward_and_bridge(resolved.index, env, out).await
                    }
                    None => (unknown_name(id, call), None),
                };
            }
            (Method::ToolsList, _) if single => {
                let (response, backend) = self.forward_and_bridge(0, env, out).await;
                let response = match response.payload {
                    Some(ResponsePayload::Result(r)) => Envelope {
                        payload: Some(ResponsePayload::Result(lists::curate_tools_result(
                            self, 0, r,
                        ))),
                        ..response
                    },
                    _ => response,
                };
                return (response, backend);
            }
            _ if single => 0,
            (
                Method::ToolsList
                | Method::PromptsList
                | Method::ResourcesList
                | Method::ResourcesTemplatesList,
                _,
            ) => {
                return (
                    Box::pin(lists::merged_list(self, call, &env, out)).await,
                    None,
                );
            }
            (Method::LoggingSetLevel, _) => {
                return (Box::pin(lists::broadcast(self, &env, out)).await, None);
            }
            (Method::SubscriptionsListen, _) if self.client.era == Era::Stateless => {
                return (
                    Box::pin(super::listen::listen_fan_out(self, env, out)).await,
                    None,
                );
            }
            (Method::PromptsGet, Target::Prompt(name)) => match self.route.resolve_name(name) {
                Some((index, own)) => {
                    let own = own.to_owned();
                    let env = Envelope {
                        params: Some(edit_params(env.params.as_deref(), |p| {
                            p.insert("name".into(), Value::String(own));
                        })),
                        ..env
                    };
                    return self.forward_and_bridge(index, env, out).await;
                }
                None => return (unknown_name(id, call), None),
            },
            (Method::CompletionComplete, Target::Prompt(name)) => {
                match self.route.resolve_name(name) {
                    Some((index, own)) => {
                        let own = own.to_owned();
                        let env = Envelope {
                            params: Some(edit_params(env.params.as_deref(), |p| {
                                if let Some(Value::Object(r)) = p.get_mut("ref") {
                                    r.insert("name".into(), Value::String(own));
                                }
                            })),
                            ..env
                        };
                        return self.forward_and_bridge(index, env, out).await;
                    }
                    None => return (unknown_name(id, call), None),
                }
            }
            (_, Target::Resource(uri)) => match lists::resolve_uri(self, uri, out).await {
                Some(resolved) if resolved.own == *uri => resolved.index,
                Some(resolved) => {
                    let own = resolved.own;
                    let env = Envelope {
                        params: Some(edit_params(env.params.as_deref(), |p| {
                            let top_level = p.contains_key("uri");
                            match p.get_mut("ref") {
                                Some(Value::Object(r)) if !top_level => {
                                    r.insert("uri".into(), Value::String(own));
                                }
                                _ => {
                                    p.insert("uri".into(), Value::String(own));
                                }
                            }
                        })),
                        ..env
                    };
                    return self.forward_and_bridge(resolved.index, env, out).await;
                }
                None => return (unknown_name(id, call), None),
            },
            _ => {
                return (
                    Envelope::error(
                        id,
                        mcp::code::METHOD_NOT_FOUND,
                        &format!("method {method:?} is not available on a multiplexed route"),
                        None,
                    ),
                    None,
                );
            }
        };
        self.forward_and_bridge(index, env, out).await
    }

    /// A `tools/call` as the backend expects it: its own tool name, and the
    /// arguments its curation pins. Untouched when nothing changes.
    fn curated_call(&self, index: usize, own: &str, public: &str, env: Envelope) -> Envelope {
        let curation = self.upstreams.get(index).map(|u| &u.backend.config.tools);
        let pins = curation.is_some_and(|c| c.pin.contains_key(own));
        if own == public && !pins {
            return env;
        }
        Envelope {
            params: Some(edit_params(env.params.as_deref(), |p| {
                p.insert("name".into(), Value::String(own.to_owned()));
                if let Some(c) = curation {
                    c.inject_pins(own, p);
                }
            })),
            ..env
        }
    }

    /// Forwards to one backend and bridges the eras of the result.
    pub(super) async fn forward_and_bridge(
        self: &Arc<Self>,
        index: usize,
        env: Envelope,
        out: &Out,
    ) -> (Envelope, Option<String>) {
        let backend = self
            .upstreams
            .get(index)
            .map(|u| u.backend.name().to_owned());
        let id = env.id.clone();
        let method = env.method.clone().unwrap_or_default();
        let timeout = (method == "subscriptions/listen").then_some(Duration::ZERO);
        if matches!(
            method.as_str(),
            "resources/subscribe" | "resources/unsubscribe"
        ) && self.client.era == Era::Handshake
            && let Some(response) =
                Box::pin(self.subscribe_via_listen(index, &env, method == "resources/subscribe"))
                    .await
        {
            return (response, backend);
        }
        // logging/setLevel does not exist in 2026-07-28: the level travels
        // in each request's _meta instead.
        let mut env = env;
        if self.client.era == Era::Handshake && self.upstream_era(index) == Some(Era::Stateless) {
            if method == "logging/setLevel" {
                let level = mcp::meta::params_object(env.params.as_deref())
                    .get("level")
                    .cloned();
                if let Ok(mut l) = self.log_level.lock() {
                    *l = level;
                }
                return (
                    Envelope::result(
                        id.unwrap_or(JsonRpcId::Num(0)),
                        to_raw(&serde_json::json!({})),
                    ),
                    backend,
                );
            }
            if let Some(level) = self.log_level.lock().ok().and_then(|l| l.clone()) {
                env.params = Some(edit_params(env.params.as_deref(), |p| {
                    mcp::meta::meta_mut(p)
                        .entry(mcp::META_LOG_LEVEL)
                        .or_insert(level);
                }));
            }
        }
        if method == "subscriptions/listen" && self.client.era == Era::Stateless {
            let result = match self.conn(index).await {
                Ok(conn) if conn.facts().era == Era::Handshake => {
                    Box::pin(super::listen::listen_on_handshake_backend(
                        self,
                        conn,
                        id.clone(),
                        env.params.as_deref(),
                        out,
                    ))
                    .await
                }
                Ok(_) => Box::pin(self.forward_listen(index, env.params, out, id.clone())).await,
                Err(e) => Err(e),
            };
            let response = match result {
                Ok(payload) => Envelope::response(id, payload),
                Err(e) => backend_error_response(id, &e),
            };
            return (response, backend);
        }
        let result = if self.client.era == Era::Stateless {
            park::forward_stateless(self, index, env, out, timeout).await
        } else {
            self.forward_mrtr(index, env, out, timeout).await
        };
        let response = match result {
            Ok(ResponsePayload::Result(r)) => {
                let r = if self.client.era == Era::Stateless
                    && self.upstream_era(index) == Some(Era::Handshake)
                {
                    bridge_result_to_stateless(&method, r)
                } else {
                    r
                };
                Envelope::result(id.unwrap_or(JsonRpcId::Num(0)), r)
            }
            Ok(payload) => Envelope::response(id, payload),
            Err(e) => backend_error_response(id, &e),
        };
        (response, backend)
    }

    /// `subscriptions/listen` passed to a stateless server: every message
    /// carries the server's id for the listen request (ours), which is
    /// turned back into the client's.
    async fn forward_listen(
        self: &Arc<Self>,
        index: usize,
        params: Option<Box<RawValue>>,
        out: &Out,
        client_id: Option<JsonRpcId>,
    ) -> Result<ResponsePayload, BackendError> {
        let (tx, mut rx) = mpsc::channel::<Envelope>(self.queue);
        let subscription_id = serde_json::to_value(&client_id).unwrap_or(Value::Null);
        let request = self.forward(
            index,
            "subscriptions/listen",
            params,
            &tx,
            Some(Duration::ZERO),
        );
        tokio::pin!(request);
        loop {
            tokio::select! {
                r = &mut request => return r,
                Some(mut msg) = rx.recv() => {
                    msg.params = Some(edit_params(msg.params.as_deref(), |p| {
                        if let Some(Value::Object(meta)) = p.get_mut("_meta")
                            && meta.contains_key(mcp::META_SUBSCRIPTION_ID)
                        {
                            meta.insert(mcp::META_SUBSCRIPTION_ID.into(), subscription_id.clone());
                        }
                    }));
                    if out.send(msg).await.is_err() {
                        return Err(BackendError::Unavailable { backend: self.upstream_name(index).to_owned(), reason: "the client closed the stream".into() });
                    }
                }
            }
        }
    }

    /// Forwards for a handshake-era client: a stateless backend's
    /// `input_required` is turned into real requests to the client, then the
    /// request is retried with the answers.
    async fn forward_mrtr(
        self: &Arc<Self>,
        index: usize,
        env: Envelope,
        out: &Out,
        timeout: Option<Duration>,
    ) -> Result<ResponsePayload, BackendError> {
        let method = env.method.clone().unwrap_or_default();
        let mut params = env.params;
        for _ in 0..MAX_INPUT_ROUNDS {
            let payload = self
                .forward(index, &method, params.clone(), out, timeout)
                .await?;
            let ResponsePayload::Result(result) = &payload else {
                return Ok(payload);
            };
            if result_type(result) != "input_required" {
                return Ok(payload);
            }
            let v: Value = serde_json::from_str(result.get()).unwrap_or(Value::Null);
            let mut responses = serde_json::Map::new();
            if let Some(Value::Object(requests)) = v.get("inputRequests") {
                for (key, request) in requests {
                    let method = request
                        .get("method")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let req_params = request.get("params").map(to_raw);
                    let answer = Box::pin(self.ask_client(&method, req_params, out)).await;
                    match answer {
                        ResponsePayload::Result(r) => {
                            responses.insert(
                                key.clone(),
                                serde_json::from_str(r.get()).unwrap_or(Value::Null),
                            );
                        }
                        ResponsePayload::Error(e) => return Ok(ResponsePayload::Error(e)),
                    }
                }
            }
            let state = v.get("requestState").cloned();
            params = Some(edit_params(params.as_deref(), |p| {
                p.insert("inputResponses".into(), Value::Object(responses));
                match state {
                    Some(s) => p.insert("requestState".into(), s),
                    None => p.remove("requestState"),
                };
            }));
        }
        Ok(ResponsePayload::Error(error_object(
            mcp::code::INTERNAL_ERROR,
            "too many input rounds",
            Some(serde_json::json!({"reason": "the backend kept asking for input"})),
        )))
    }

    /// Sends a server→client request to the client and waits for its answer.
    async fn ask_client(
        self: &Arc<Self>,
        method: &str,
        params: Option<Box<RawValue>>,
        out: &Out,
    ) -> ResponsePayload {
        let (tx, rx) = oneshot::channel();
        self.relay(
            ClientBound::Request {
                server_id: None,
                from: None,
                method: method.to_owned(),
                params,
                reply: tx,
            },
            Some(out),
        )
        .await;
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(payload)) => payload,
            _ => ResponsePayload::Error(error_object(
                mcp::code::INTERNAL_ERROR,
                "the client did not answer",
                None,
            )),
        }
    }

    /// Sends one request to upstream `index`, relaying what the server
    /// sends about it to `out`. A backend session that ended is reopened
    /// once (the backend said 404: re-initialize).
    pub(super) async fn forward(
        self: &Arc<Self>,
        index: usize,
        method: &str,
        params: Option<Box<RawValue>>,
        out: &Out,
        timeout: Option<Duration>,
    ) -> Result<ResponsePayload, BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.conn(index).await?;
            let backend = self.upstream_name(index);
            let call = self.tape.as_ref().map(|t| {
                let call = t.next_call();
                t.to_backend(backend, Some(call), method, params.as_deref());
                call
            });
            let tape = |msg: &ClientBound| {
                if let Some(t) = &self.tape {
                    t.from_backend(Some(backend), call, msg);
                }
            };
            let (tx, mut rx) = mpsc::channel::<ClientBound>(self.queue);
            let result = {
                let mut request = Box::pin(conn.request(method, params.clone(), Some(tx), timeout));
                loop {
                    tokio::select! {
                        r = &mut request => break r,
                        Some(msg) = rx.recv() => {
                            tape(&msg);
                            Box::pin(self.relay(msg, Some(out))).await
                        }
                    }
                }
            };
            while let Ok(msg) = rx.try_recv() {
                tape(&msg);
                Box::pin(self.relay(msg, Some(out))).await;
            }
            if let (Some(t), Some(call)) = (&self.tape, call) {
                t.from_backend_result(backend, call, &result);
            }
            match result {
                Err(BackendError::Unavailable { ref reason, .. })
                    if self.resumable && reason.contains("session ended") =>
                {
                    // Every replica resumes the backend session the sealed
                    // id names; it is gone, so the session is over (404
                    // next, and the client initializes a new one).
                    tracing::info!(session.id = %self.id, backend, "backend session ended; ending the session");
                    if let Some(gw) = self.gateway() {
                        let id = self.id.clone();
                        tokio::spawn(async move { gw.end_session_everywhere(&id).await });
                    }
                    return result;
                }
                Err(BackendError::Unavailable { ref reason, .. })
                    if attempt == 1 && reason.contains("session ended") =>
                {
                    tracing::info!(session.id = %self.id, "backend session ended; re-initializing");
                    continue;
                }
                other => return other,
            }
        }
    }

    /// Delivers a server message to the client: on the request's stream
    /// when there is one and it is open, else on the GET stream.
    pub(super) async fn relay(self: &Arc<Self>, msg: ClientBound, out: Option<&Out>) {
        let msg = if self.resumable {
            self.note_backend_event(msg)
        } else {
            msg
        };
        let env = match msg {
            ClientBound::Notification { method, params } => {
                // The merged lists are re-read on the next list; the
                // notification itself goes on to the client.
                self.catalog.invalidate(&method);
                if method == "notifications/tools/list_changed"
                    && let Ok(mut facts) = self.tool_facts.lock()
                {
                    // Annotations may have changed: learned again when needed.
                    facts.clear();
                }
                if method.ends_with("/list_changed")
                    && let Ok(mut decisions) = self.decisions.lock()
                {
                    // Targets may resolve (or be annotated) differently now.
                    decisions.clear();
                }
                if method == "notifications/message"
                    && self.client.era == Era::Stateless
                    && out.is_none()
                {
                    return;
                }
                if method == "notifications/cancelled" {
                    // The server gave up on a request it sent us: name it by
                    // the id the client knows, or drop it.
                    let Some(params) = self.map_server_cancel(params.as_deref()) else {
                        return;
                    };
                    Envelope::notification(method, Some(params))
                } else {
                    Envelope::notification(method, params)
                }
            }
            ClientBound::Request {
                server_id,
                from,
                method,
                params,
                reply,
            } => {
                if self.client.era == Era::Stateless {
                    // Stateless clients take requests only as input_required
                    // (see park.rs); anything else has nowhere to go.
                    let _ = reply.send(ResponsePayload::Error(error_object(
                        mcp::code::METHOD_NOT_FOUND,
                        "the client cannot receive requests outside a call",
                        None,
                    )));
                    return;
                }
                let n = self.next_client_request.fetch_add(1, Ordering::Relaxed);
                // The answer may reach another replica: the id says which
                // replica waits for it and, for a backend's request, which
                // backend asked under which id of its own (the fallback when
                // that replica is gone).
                let replica = self
                    .gateway()
                    .and_then(|g| g.state.as_ref().map(|s| s.replica_id().to_owned()));
                let id = match (&server_id, &from, replica) {
                    (Some(server_id), Some(backend), Some(replica)) if self.resumable => {
                        let server_id = serde_json::to_string(server_id).unwrap_or_default();
                        format!("gw-{n}~{replica}~{backend}~{server_id}")
                    }
                    (_, _, Some(replica)) if self.resumable => format!("gw-{n}~{replica}"),
                    _ => format!("gw-{n}"),
                };
                if let Ok(mut pending) = self.client_requests.lock() {
                    pending.insert(id.clone(), reply);
                }
                if let (Some(server_id), Ok(mut ids)) = (server_id, self.server_request_ids.lock())
                {
                    ids.insert(server_id, id.clone());
                }
                Envelope::request(JsonRpcId::Str(id), method, params)
            }
        };
        self.record_client(crate::record::Dir::GatewayToClient, &env);
        if let Some(out) = out
            && !out.is_closed()
        {
            if let Err(mpsc::error::SendError(env)) = out.send(env).await {
                self.push_stream(env);
            }
        } else {
            self.push_stream(env);
        }
    }

    fn map_server_cancel(&self, params: Option<&RawValue>) -> Option<Box<RawValue>> {
        let mut obj = mcp::meta::params_object(params);
        let server_id: JsonRpcId = serde_json::from_value(obj.get("requestId")?.clone()).ok()?;
        let client_id = self.server_request_ids.lock().ok()?.remove(&server_id)?;
        let reply = self.client_requests.lock().ok()?.remove(&client_id);
        drop(reply);
        obj.insert("requestId".into(), Value::String(client_id));
        Some(to_raw(&obj))
    }

    fn push_stream(&self, env: Envelope) {
        if self.client.era != Era::Handshake {
            return;
        }
        let tag = self.resumable.then(|| self.resume_tag()).flatten();
        if let Ok(mut s) = self.stream.lock() {
            s.push(env.to_json(), tag);
        }
    }

    /// Takes the backend event tag off a message read from a backend GET
    /// stream and records how far that stream got: messages arrive here in
    /// the order the stream delivered them.
    fn note_backend_event(&self, msg: ClientBound) -> ClientBound {
        let params = match &msg {
            ClientBound::Notification { params, .. } | ClientBound::Request { params, .. } => {
                params
            }
        };
        // Parsed only when the marker is there (rare: GET-stream messages).
        let tagged = params
            .as_deref()
            .is_some_and(|p| p.get().contains(crate::backend::EVENT_TAG));
        if !tagged {
            return msg;
        }
        let mut obj = mcp::meta::params_object(params.as_deref());
        let tag = obj
            .get_mut("_meta")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove(crate::backend::EVENT_TAG));
        if let Some(meta) = obj.get("_meta").and_then(Value::as_object)
            && meta.is_empty()
        {
            obj.remove("_meta");
        }
        if let Some(Value::Array(parts)) = tag
            && let [Value::String(backend), Value::String(event)] = parts.as_slice()
            && let Some(upstream) = self.upstreams.iter().find(|u| u.backend.name() == backend)
            && let Ok(mut seen) = upstream.seen_event.lock()
        {
            *seen = Some(event.clone());
        }
        let params = Some(to_raw(&obj));
        match msg {
            ClientBound::Notification { method, .. } => {
                ClientBound::Notification { method, params }
            }
            ClientBound::Request {
                server_id,
                from,
                method,
                reply,
                ..
            } => ClientBound::Request {
                server_id,
                from,
                method,
                params,
                reply,
            },
        }
    }

    /// `{replica}~{cursor}`: the cursor is base64url of `{backend: last
    /// event id}` for the backends whose GET streams said how far they got.
    /// Another replica resumes those streams from it (`resume_from_tag`).
    fn resume_tag(&self) -> Option<Arc<str>> {
        use base64::Engine as _;
        let gw = self.gateway()?;
        let replica = gw.state.as_ref()?.replica_id().to_owned();
        let mut cursor = serde_json::Map::new();
        for u in &self.upstreams {
            if let Some(event) = u.seen_event.lock().ok().and_then(|s| s.clone()) {
                cursor.insert(u.backend.name().to_owned(), Value::String(event));
            }
        }
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Value::Object(cursor).to_string());
        Some(Arc::from(format!("{replica}~{cursor}")))
    }

    /// A client resumes with `Last-Event-ID` from an event another replica
    /// sent: its backend GET streams continue from the backend event ids
    /// the tag names. `false` when the tag is unreadable.
    pub fn resume_from_tag(&self, tag: &str) -> bool {
        use base64::Engine as _;
        let Some((_, cursor)) = tag.split_once('~') else {
            return false;
        };
        // Bounded: a header a client controls.
        if cursor.len() > 4096 {
            return false;
        }
        let Some(cursor) = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| {
                serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok()
            })
        else {
            return false;
        };
        for u in &self.upstreams {
            if let Some(Value::String(event)) = cursor.get(u.backend.name())
                && let Ok(mut seen) = u.seen_event.lock()
            {
                *seen = Some(event.clone());
            }
        }
        true
    }

    /// Attaches the client's GET stream.
    pub fn subscribe_stream(
        &self,
        last_event_id: Option<u64>,
    ) -> mpsc::Receiver<super::stream::Event> {
        match self.stream.lock() {
            Ok(mut s) => s.subscribe(last_event_id, self.queue),
            Err(_) => mpsc::channel(1).1,
        }
    }

    /// The replica waiting for this answer to a server→client request, when
    /// it is another one (the frontend forwards the answer there).
    pub fn answer_waits_elsewhere(&self, env: &Envelope) -> Option<String> {
        if !self.resumable {
            return None;
        }
        let Some(JsonRpcId::Str(id)) = &env.id else {
            return None;
        };
        if self.client_requests.lock().ok()?.contains_key(id) {
            return None;
        }
        let replica = id.split('~').nth(1)?;
        let gw = self.gateway()?;
        let me = gw.state.as_ref()?.replica_id();
        (replica != me).then(|| replica.to_owned())
    }

    /// A client's answer to a server→client request.
    pub fn handle_response(self: &Arc<Self>, env: Envelope) {
        self.record_client(crate::record::Dir::ClientToGateway, &env);
        let Some(JsonRpcId::Str(id)) = &env.id else {
            tracing::debug!(session.id = %self.id, "response to an unknown request ignored");
            return;
        };
        let reply = self
            .client_requests
            .lock()
            .ok()
            .and_then(|mut p| p.remove(id));
        if let Ok(mut ids) = self.server_request_ids.lock() {
            ids.retain(|_, client_id| client_id != id);
        }
        match (reply, env.payload) {
            (Some(reply), Some(payload)) => {
                let _ = reply.send(payload);
            }
            (None, Some(payload)) if self.resumable => self.answer_elsewhere(id, payload),
            _ => tracing::debug!(session.id = %self.id, "response to an unknown request ignored"),
        }
    }

    /// The answer to a server→client request relayed by a replica that is
    /// gone (`gw-{n}~{replica}~{backend}~{backend's id}`): straight to that
    /// backend, by its own id. A request the gateway itself asked (bridging
    /// a 2026-07-28 backend's `input_required`) died with its replica.
    fn answer_elsewhere(self: &Arc<Self>, id: &str, payload: ResponsePayload) {
        let mut parts = id.splitn(4, '~');
        let (Some(_), Some(_), Some(backend), Some(server_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            tracing::debug!(session.id = %self.id, "response to an unknown request ignored");
            return;
        };
        let Ok(server_id) = serde_json::from_str::<JsonRpcId>(server_id) else {
            return;
        };
        let Some(index) = self
            .upstreams
            .iter()
            .position(|u| u.backend.name() == backend)
        else {
            return;
        };
        let session = self.clone();
        tokio::spawn(async move {
            let sent = match session.conn(index).await {
                Ok(conn) => conn.answer_server_request(server_id, payload).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => {
                    tracing::debug!(session.id = %session.id, backend = %session.upstream_name(index), "answer relayed to the backend from another replica's request")
                }
                Err(e) => {
                    tracing::debug!(session.id = %session.id, error = %e, "answer to a server request lost")
                }
            }
        });
    }

    /// A client notification: cancellation aborts the request it names;
    /// others go to the backends.
    pub async fn handle_notification(self: &Arc<Self>, env: Envelope) {
        self.touch();
        self.record_client(crate::record::Dir::ClientToGateway, &env);
        let method = env.method.clone().unwrap_or_default();
        match method.as_str() {
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                #[derive(serde::Deserialize)]
                struct Cancelled {
                    #[serde(rename = "requestId")]
                    request_id: JsonRpcId,
                }
                let cancelled = env
                    .params
                    .as_deref()
                    .and_then(|p| serde_json::from_str::<Cancelled>(p.get()).ok());
                if let Some(c) = cancelled
                    && !self.abort_request(&c.request_id)
                    && self.resumable
                    && let Some(gw) = self.gateway.upgrade()
                {
                    // The call may run on the replica its POST reached.
                    gw.announce_cancel(&self.id, &c.request_id).await;
                }
            }
            _ => {
                let Some(gw) = self.gateway.upgrade() else {
                    return;
                };
                let started = Instant::now();
                let call = mcp::classify(&method, env.params.as_deref());
                let ctx = super::authz::base_context(self);
                let decision = gw.policy.decide(&self.principal, &call, &ctx);
                let allow = decision.allow;
                let audit = AuditOnce::new(
                    gw.audit.clone(),
                    Record {
                        request_id: None,
                        session_id: (self.client.era == Era::Handshake).then(|| self.id.clone()),
                        transport: self.transport,
                        principal: self.principal.clone(),
                        method: method.clone(),
                        call,
                        backend: None,
                        decision,
                        arguments: None,
                        origin: self.route.origin.clone(),
                        remote_addr: self.route.remote_addr.clone(),
                    },
                    started,
                );
                if !allow {
                    audit
                        .finish(None, Outcome::Error(mcp::code::FORBIDDEN))
                        .await;
                    return;
                }
                let mut delivered = Vec::new();
                for index in 0..self.upstreams.len() {
                    let connected = self
                        .upstreams
                        .get(index)
                        .and_then(|u| u.conn.try_lock().ok().map(|c| c.is_some()))
                        .unwrap_or(false);
                    if !connected || !super::authz::notification_allowed(self, &env, index) {
                        continue;
                    }
                    if let Some(tape) = &self.tape {
                        tape.to_backend(
                            self.upstream_name(index),
                            None,
                            &method,
                            env.params.as_deref(),
                        );
                    }
                    match self.conn(index).await {
                        Ok(conn) => match conn.notify(&method, env.params.clone()).await {
                            Ok(()) => delivered.push(self.upstream_name(index).to_owned()),
                            Err(e) => {
                                tracing::debug!(session.id = %self.id, error = %e, "notification not delivered");
                            }
                        },
                        Err(e) => {
                            tracing::debug!(session.id = %self.id, error = %e, "notification not delivered");
                        }
                    }
                }
                let backend = (!delivered.is_empty()).then(|| delivered.join(","));
                audit.finish(backend, Outcome::Ok).await;
            }
        }
    }

    pub(super) fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }

    pub(super) fn upstream_name(&self, index: usize) -> &str {
        self.upstreams
            .get(index)
            .map(|u| u.backend.name())
            .unwrap_or("")
    }

    pub(super) async fn connection(
        self: &Arc<Self>,
        index: usize,
    ) -> Result<Connection, BackendError> {
        self.conn(index).await
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Error(_) => "error",
        Outcome::Timeout => "timeout",
        Outcome::Cancelled => "cancelled",
    }
}

/// The audit record of one decided request: written once, by `finish`, or
/// as `cancelled` when the request is dropped before it finishes.
struct AuditOnce {
    sink: Arc<crate::audit::AuditSink>,
    record: Record,
    started: Instant,
    outcome: Outcome,
    done: bool,
    /// The message's span, ended with the same facts as the record.
    span: Option<(Arc<crate::trace::Tracer>, crate::trace::Span)>,
}

impl AuditOnce {
    fn new(sink: Arc<crate::audit::AuditSink>, record: Record, started: Instant) -> AuditOnce {
        AuditOnce {
            sink,
            record,
            started,
            outcome: Outcome::Cancelled,
            done: false,
            span: None,
        }
    }

    fn trace(&mut self, tracer: Arc<crate::trace::Tracer>, span: Option<crate::trace::Span>) {
        self.span = span.map(|s| (tracer, s));
    }

    fn end_span(&mut self) {
        let Some((tracer, span)) = self.span.take() else {
            return;
        };
        let r = &self.record;
        let (kind, name) = match &r.call.target {
            Target::None => ("none", None),
            t @ (Target::Tool(n) | Target::Resource(n) | Target::Prompt(n)) => (t.kind(), Some(n)),
        };
        let error_code = match self.outcome {
            Outcome::Error(code) => Some(code),
            Outcome::Timeout => Some(mcp::code::BACKEND_TIMEOUT),
            _ => None,
        };
        let target_key = match kind {
            "tool" => "mcp.tool",
            "resource" => "mcp.resource",
            "prompt" => "mcp.prompt",
            _ => "mcp.target",
        };
        tracer.end(
            span,
            &[
                ("mcp.method", r.method.clone().into()),
                (target_key, serde_json::json!(name)),
                ("mcp.backend", serde_json::json!(r.backend)),
                (
                    "mcp.decision",
                    if r.decision.allow { "allow" } else { "deny" }.into(),
                ),
                ("mcp.outcome", outcome_label(self.outcome).into()),
                ("rpc.jsonrpc.error_code", serde_json::json!(error_code)),
                ("mcp.session.id", serde_json::json!(r.session_id)),
                ("mcp.transport", r.transport.into()),
                ("enduser.id", r.principal.sub.clone().into()),
            ],
            self.outcome != Outcome::Ok,
        );
    }

    async fn finish(mut self, backend: Option<String>, outcome: Outcome) {
        self.record.backend = backend;
        self.outcome = outcome;
        self.end_span();
        self.sink
            .record(&self.record, outcome, elapsed_us(self.started))
            .await;
        self.done = true;
    }
}

impl Drop for AuditOnce {
    fn drop(&mut self) {
        if !self.done {
            self.end_span();
            self.sink
                .record_detached(&self.record, self.outcome, elapsed_us(self.started));
        }
    }
}

impl Session {
    /// The backend a call will go to, when it is known before routing (for
    /// the limits keyed by backend and tool).
    fn backend_for(self: &Arc<Self>, call: &Call) -> Option<String> {
        let index = if !self.route.prefixed && self.upstreams.len() == 1 {
            0
        } else {
            match &call.target {
                Target::Tool(name) => self.route.resolve_tool(name)?.0,
                Target::Prompt(name) => self.route.resolve_name(name)?.0,
                Target::Resource(uri) => lists::lookup_uri(self, uri)?.index,
                Target::None => return None,
            }
        };
        self.upstreams
            .get(index)
            .map(|u| u.backend.name().to_owned())
    }
}

fn unknown_name(id: Option<JsonRpcId>, call: &Call) -> Envelope {
    let what = match &call.target {
        Target::Tool(n) => format!("unknown tool: {n}"),
        Target::Prompt(n) => format!("unknown prompt: {n}"),
        Target::Resource(u) => format!("unknown resource: {u}"),
        Target::None => "unknown target".to_owned(),
    };
    Envelope::error(
        id,
        mcp::code::INVALID_PARAMS,
        &what,
        Some(serde_json::json!({"reason": what})),
    )
}

/// A handshake-era server's result on its way to a stateless client gets
/// what 2026-07-28 requires: `resultType`, and cache hints on lists and reads
/// (not cacheable, since the gateway cannot know the server's intent).
fn bridge_result_to_stateless(method: &str, result: Box<RawValue>) -> Box<RawValue> {
    let Ok(mut obj) = serde_json::from_str::<serde_json::Map<String, Value>>(result.get()) else {
        return result;
    };
    obj.entry("resultType").or_insert_with(|| "complete".into());
    if matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    ) {
        obj.entry("ttlMs").or_insert_with(|| 0.into());
        obj.entry("cacheScope").or_insert_with(|| "private".into());
    }
    to_raw(&obj)
}

impl Session {
    /// Records a request to upstream `index`; its call number, when the
    /// session is recorded.
    pub(super) fn tape_to_backend(
        &self,
        index: usize,
        method: &str,
        params: Option<&RawValue>,
    ) -> Option<u64> {
        let tape = self.tape.as_ref()?;
        let call = tape.next_call();
        tape.to_backend(self.upstream_name(index), Some(call), method, params);
        Some(call)
    }

    pub(super) fn tape_from_backend(&self, backend: &str, call: u64, msg: &ClientBound) {
        if let Some(tape) = &self.tape {
            tape.from_backend(Some(backend), Some(call), msg);
        }
    }

    pub(super) fn tape_backend_result(
        &self,
        backend: &str,
        call: u64,
        result: &Result<ResponsePayload, BackendError>,
    ) {
        if let Some(tape) = &self.tape {
            tape.from_backend_result(backend, call, result);
        }
    }

    /// Writes a client-hop message to the session's fixture, if recorded.
    pub(crate) fn record_client(&self, dir: crate::record::Dir, env: &Envelope) {
        if let Some(tape) = &self.tape {
            tape.client(dir, env, None);
        }
    }

    pub(super) fn gateway(&self) -> Option<Arc<Gateway>> {
        self.gateway.upgrade()
    }
}
