//! session: the engine every front door shares. In: authenticated
//! `Envelope`s with their route. Out: responses, and messages for the client
//! (on the call's own stream or the session's GET stream). Never parses a
//! transport and never decides policy itself: it asks `policy`, `limits` and
//! tells `audit` about every request it routes.
//!
//! A `Session` is one handshake-era client session, or the context the
//! gateway keeps for stateless (2026-07-28) clients of one principal on one
//! route. It owns one upstream per backend of its route.

mod authz;
mod client;
mod listen;
mod lists;
mod park;
mod replicas;
pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use client::{ClientFacts, Detached, Out, PendingCall, Session};
pub use replicas::{FORWARDED_HEADER, Resolved};

use crate::audit::{AuditSink, Outcome, Record};
use crate::auth::{Authenticator, Principal};
use crate::backend::{Backend, BackendError, ConnectParams};
use crate::config::Config;
use crate::limits::Limiter;
use crate::mcp::envelope::to_raw;
use crate::mcp::{self, Envelope, Era, JsonRpcId};
use crate::policy::PolicyEngine;
use crate::router::{Route, Router};
use crate::telemetry::Metrics;

/// Everything the pipeline needs, shared by all front doors.
pub struct Gateway {
    pub config: Arc<Config>,
    pub router: Router,
    pub auth: Arc<Authenticator>,
    pub policy: Arc<PolicyEngine>,
    pub limits: Arc<Limiter>,
    pub audit: Arc<AuditSink>,
    pub metrics: Arc<Metrics>,
    /// Writes sessions as fixtures when `[record] dir` is set.
    pub recorder: Option<Arc<crate::record::Recorder>>,
    /// Spans to the OTLP collector (off unless `[telemetry]` names one).
    pub tracer: Arc<crate::trace::Tracer>,
    /// Shared state for several replicas (`[state] redis_url`).
    pub state: Option<Arc<crate::state::StateStore>>,
    /// Seals session ids with the principal binding (`[state] session_key_env`).
    sealer: Option<crate::state::seal::Sealer>,
    /// Forwards requests to the replica that owns their session.
    pub forward_http: reqwest::Client,
    /// Cancelled when the gateway shuts down: backends close, children die.
    pub shutdown: CancellationToken,
    /// Cancelled when shutdown begins: GET streams and keep-alives end while
    /// in-flight requests drain.
    pub closing: CancellationToken,
    /// In-flight requests, drained on shutdown.
    pub tracker: TaskTracker,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    stateless: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    parked: park::Parked,
}

/// Why a session could not be opened or found.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unknown or ended session")]
    NotFound,
    #[error("too many sessions for this principal (limit {limit})")]
    TooMany { limit: usize },
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// `connect` was denied by policy (-32003).
    #[error("forbidden by policy: {}", .0.reason)]
    Forbidden(crate::policy::Decision),
}

impl Gateway {
    pub fn new(config: Arc<Config>, shutdown: CancellationToken) -> Arc<Gateway> {
        Gateway::with_audit(config, shutdown, AuditSink::disabled())
    }

    /// `new` with the audit sink `serve` opened from `[audit]`.
    pub fn with_audit(
        config: Arc<Config>,
        shutdown: CancellationToken,
        audit: Arc<AuditSink>,
    ) -> Arc<Gateway> {
        let http = reqwest::Client::builder()
            // A backend answers where it is configured: a redirect is never
            // followed (it could carry minted credentials elsewhere), and the
            // redirect policy's per-request URL parsing is saved.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let backends = config
            .backends
            .iter()
            .map(|b| Backend::new(b.clone(), http.clone(), shutdown.child_token()))
            .collect();
        let state = crate::state::StateStore::from_config(&config.state);
        // No overall timeout: a forwarded GET stream lasts as long as the
        // client keeps it; an owner that does not answer is gone.
        let forward_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Gateway {
            forward_http,
            auth: Authenticator::new(&config.auth),
            // Deny-all until the configured policies are swapped in
            // (`main`, `replay`).
            policy: PolicyEngine::new(crate::policy::Snapshot::default()),
            limits: Limiter::with_state(&config.limits.rates, state.clone()),
            audit,
            metrics: Arc::new(Metrics::default()),
            recorder: crate::record::Recorder::start(&config),
            tracer: crate::trace::Tracer::start(&config.telemetry, http.clone()),
            state,
            sealer: config
                .state
                .session_key
                .as_ref()
                .map(|key| crate::state::seal::Sealer::new(key.expose())),
            router: Router::new(backends),
            config,
            closing: shutdown.child_token(),
            shutdown,
            tracker: TaskTracker::new(),
            sessions: Mutex::new(HashMap::new()),
            stateless: tokio::sync::Mutex::new(HashMap::new()),
            parked: park::Parked::default(),
        })
    }

    /// Handles `initialize`: negotiates the revision with the client, opens
    /// the backends of the route and mints a session bound to the principal.
    /// Answers `initialize`: a new session, audited like every decided
    /// message (decision `connect`, and the outcome of connecting the
    /// backends).
    pub async fn initialize(
        self: &Arc<Self>,
        principal: Principal,
        route: Route,
        transport: &'static str,
        request: &Envelope,
    ) -> Result<(Arc<Session>, Envelope), SessionError> {
        let started = Instant::now();
        let who = principal.clone();
        let (origin, remote_addr) = (route.origin.clone(), route.remote_addr.clone());
        let result = self
            .open_session(principal, route, transport, request)
            .await;
        let (session_id, decision, outcome) = match &result {
            Ok((session, _, decision)) => (Some(session.id.clone()), decision.clone(), Outcome::Ok),
            Err(SessionError::Forbidden(decision)) => {
                (None, decision.clone(), Outcome::Error(mcp::code::FORBIDDEN))
            }
            Err(e @ SessionError::TooMany { .. }) => (
                None,
                crate::policy::Decision {
                    allow: false,
                    policies: Vec::new(),
                    reason: e.to_string(),
                },
                Outcome::Error(mcp::code::RATE_LIMITED),
            ),
            Err(e) => (
                None,
                crate::policy::Decision {
                    allow: true,
                    policies: Vec::new(),
                    reason: format!("connect allowed; {e}"),
                },
                Outcome::Error(match e {
                    SessionError::Backend(e) => e.code(),
                    _ => mcp::code::BACKEND_UNAVAILABLE,
                }),
            ),
        };
        let record = Record {
            request_id: request.id.as_ref().map(ToString::to_string),
            session_id,
            transport,
            principal: who,
            method: "initialize".into(),
            call: mcp::classify("initialize", None),
            backend: None,
            decision,
            arguments: None,
            origin,
            remote_addr,
        };
        self.audit_connect(&record, outcome, started).await;
        result.map(|(session, response, _)| (session, response))
    }

    /// The audit record and the decided-messages count of an `initialize`
    /// or `server/discover`, which the gateway answers itself.
    async fn audit_connect(&self, record: &Record, outcome: Outcome, started: Instant) {
        let label = match outcome {
            Outcome::Ok => "ok",
            Outcome::Error(mcp::code::RATE_LIMITED) => "rate_limited",
            _ => "error",
        };
        let decision = if record.decision.allow {
            "allow"
        } else {
            "deny"
        };
        self.metrics
            .observe_decided(&record.method, "", decision, label);
        self.audit
            .record(record, outcome, elapsed_us(started))
            .await;
    }

    async fn open_session(
        self: &Arc<Self>,
        principal: Principal,
        route: Route,
        transport: &'static str,
        request: &Envelope,
    ) -> Result<(Arc<Session>, Envelope, crate::policy::Decision), SessionError> {
        let limit = self.config.limits.max_sessions_per_principal;
        let key = principal.binding_key();
        let owned = self
            .sessions
            .lock()
            .map(|s| {
                s.values()
                    .filter(|s| s.principal.binding_key() == key)
                    .count()
            })
            .unwrap_or(0);
        if owned >= limit {
            return Err(SessionError::TooMany { limit });
        }
        let params = mcp::meta::params_object(request.params.as_deref());
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if mcp::is_handshake_version(requested) {
            requested.to_owned()
        } else {
            mcp::LATEST_HANDSHAKE.to_owned()
        };
        let decision = authz::connect(
            self,
            &principal,
            &route,
            transport,
            &version,
            params.get("clientInfo"),
        );
        if !decision.allow {
            return Err(SessionError::Forbidden(decision));
        }
        // Adoptable by any replica: sealed with a ticket naming backend
        // sessions that every replica can continue (`replicas`).
        let tickets = self.tickets(transport);
        let adoptable =
            tickets && !route.backends.is_empty() && route.backends.iter().all(|b| b.resumable());
        let client = ClientFacts {
            era: Era::Handshake,
            protocol_version: version.clone(),
            connect: ConnectParams {
                client_version: version.clone(),
                client_info: to_raw(params.get("clientInfo").unwrap_or(&Value::Null)),
                client_capabilities: to_raw(
                    params.get("capabilities").unwrap_or(&serde_json::json!({})),
                ),
                credentials: crate::backend::credentials::Credentials::caller(&principal),
                resumable: adoptable,
            },
        };
        let (session, facts) = if adoptable {
            let (conns, ticket) = self.open_resumable(&principal, &route, &client).await;
            let id = self.seal_ticket(&principal, ticket);
            let session = Session::new(self, id, principal, route, client, transport);
            let mut facts = Vec::new();
            let mut first_error = None;
            let n_upstreams = conns.len();
            for (index, conn) in conns.into_iter().enumerate() {
                match conn {
                    Ok(conn) => {
                        facts.push(conn.facts().clone());
                        session.install(index, conn);
                    }
                    Err(e) => {
                        tracing::warn!(session.id = %session.id, error = %e, "backend unreachable");
                        first_error.get_or_insert(e);
                    }
                }
            }
            // As `connect_all`: one backend's failure is the session's;
            // with several, the reachable ones serve unless strict.
            if let Some(e) = first_error
                && (facts.is_empty() || n_upstreams == 1 || lists::strict(&session))
            {
                session.close();
                return Err(e.into());
            }
            (session, facts)
        } else {
            let id = match &self.sealer {
                Some(_) if tickets => self.seal_ticket(&principal, self.ticket(&route, &client)),
                Some(sealer) => sealer.seal(&principal),
                None => new_session_id(),
            };
            let session = Session::new(self, id, principal, route, client, transport);
            let facts = session.connect_all().await?;
            (session, facts)
        };
        let id = session.id.clone();
        let result = self.server_identity(&session.route, &facts, Some(&version));
        session.record_client(crate::record::Dir::ClientToGateway, request);
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(id, session.clone());
        }
        self.metrics.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.metrics.sessions_active.fetch_add(1, Ordering::Relaxed);
        self.metrics.session_opened(transport);
        tracing::info!(
            session.id = %session.id,
            transport,
            sub = %session.principal.sub,
            tenant = session.principal.tenant.as_deref().unwrap_or(""),
            client_id = session.principal.client_id.as_deref().unwrap_or(""),
            protocol_version = %version,
            "session started"
        );
        let id = request.id.clone().unwrap_or(JsonRpcId::Num(0));
        let response = Envelope::result(id, to_raw(&result));
        session.record_client(crate::record::Dir::GatewayToClient, &response);
        Ok((session, response, decision))
    }

    /// The session with this id, if it exists and belongs to the principal.
    /// A session presented by another principal is unknown to it.
    /// Only sessions held here: a sealed id of a session held elsewhere is
    /// `resolve`d (adopted or forwarded). An id held here was issued or
    /// opened here, so the principal check below is its seal's check.
    pub fn session(&self, id: &str, principal: &Principal) -> Result<Arc<Session>, SessionError> {
        let sessions = self.sessions.lock().map_err(|_| SessionError::NotFound)?;
        let session = sessions.get(id).ok_or(SessionError::NotFound)?;
        // Identity, not token: a refreshed token of the same principal
        // finds its session (and the session follows the fresher token).
        if session.principal != *principal || session.is_closed() {
            return Err(SessionError::NotFound);
        }
        session.principal.renew_from(principal);
        session.touch();
        Ok(session.clone())
    }

    /// Ends a session (DELETE, idle expiry, shutdown).
    pub fn end_session(&self, id: &str) -> bool {
        let removed = self.sessions.lock().ok().and_then(|mut s| s.remove(id));
        match removed {
            Some(session) => {
                session.close();
                self.metrics.sessions_active.fetch_sub(1, Ordering::Relaxed);
                self.metrics.session_closed(session.transport);
                tracing::info!(
                    session.id = %id,
                    transport = session.transport,
                    sub = %session.principal.sub,
                    "session ended"
                );
                true
            }
            None => false,
        }
    }

    /// Ends every session `condemn` picks; returns how many. Used by
    /// `auth::watcher` for revoked and expired credentials: ending a session
    /// cancels its `closed_token`, which every front door watches.
    /// `condemn` runs under the session-map lock: keep it short and sync.
    pub fn end_sessions_where(&self, mut condemn: impl FnMut(&Session) -> bool) -> usize {
        let ids: Vec<String> = self
            .sessions
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(_, session)| condemn(session))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        ids.iter().filter(|id| self.end_session(id)).count()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The context held for stateless clients of this principal on this
    /// route: their handshake-era backends keep a session here.
    pub async fn stateless_context(
        self: &Arc<Self>,
        principal: &Principal,
        route: &Route,
        params: Option<&RawValue>,
    ) -> Arc<Session> {
        // Only `_meta` is read; the rest of params (arguments) stays unparsed.
        let meta = params
            .map(mcp::ParamsProbe::parse)
            .and_then(|p| p.meta)
            .unwrap_or_default();
        // Clients declaring different capabilities get different backend
        // sessions: a handshake-era server decides at `initialize` which
        // tools (sampling, elicitation, roots) it offers.
        let capabilities = meta
            .client_capabilities
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c.get()).ok())
            .map(|c| c.to_string())
            .unwrap_or_default();
        // Sessions of different `[[routes]]` never share a context.
        let key = format!(
            "{}#{}#{}#{capabilities}",
            principal.binding_key(),
            route.key,
            route.selected_by.as_deref().unwrap_or("")
        );
        let mut contexts = self.stateless.lock().await;
        if let Some(session) = contexts.get(&key).filter(|s| !s.is_closed()) {
            session.principal.renew_from(principal);
            session.touch();
            return session.clone();
        }
        let client = ClientFacts {
            era: Era::Stateless,
            protocol_version: mcp::V2026.to_owned(),
            connect: ConnectParams {
                client_version: mcp::V2026.to_owned(),
                client_info: meta.client_info.unwrap_or_else(|| {
                    to_raw(&serde_json::json!({
                        "name": "mcp-gateway-stateless-client", "version": "0"
                    }))
                }),
                client_capabilities: meta
                    .client_capabilities
                    .unwrap_or_else(|| to_raw(&serde_json::json!({}))),
                credentials: crate::backend::credentials::Credentials::caller(principal),
                resumable: false,
            },
        };
        let session = Session::new(
            self,
            new_session_id(),
            principal.clone(),
            route.clone(),
            client,
            "streamable_http",
        );
        contexts.insert(key, session.clone());
        session
    }

    /// `server/discover`, answered by the gateway for its route.
    pub async fn discover(
        self: &Arc<Self>,
        principal: &Principal,
        route: &Route,
        request: &Envelope,
    ) -> Envelope {
        let id = request.id.clone().unwrap_or(JsonRpcId::Num(0));
        let meta = mcp::meta::params_object(request.params.as_deref())
            .get("_meta")
            .cloned()
            .unwrap_or(Value::Null);
        let decision = authz::connect(
            self,
            principal,
            route,
            "streamable_http",
            mcp::V2026,
            meta.get(mcp::META_CLIENT_INFO),
        );
        let started = Instant::now();
        let response = if decision.allow {
            let context = self
                .stateless_context(principal, route, request.params.as_deref())
                .await;
            context.record_client(crate::record::Dir::ClientToGateway, request);
            let response = self.discover_answer(route, &context, id).await;
            context.record_client(crate::record::Dir::GatewayToClient, &response);
            response
        } else {
            decision.forbidden(Some(id))
        };
        let outcome = match response.error_code() {
            Some(code) => Outcome::Error(code),
            None => Outcome::Ok,
        };
        let record = Record {
            request_id: request.id.as_ref().map(ToString::to_string),
            session_id: None,
            transport: "streamable_http",
            principal: principal.clone(),
            method: "server/discover".into(),
            call: mcp::classify("server/discover", None),
            backend: None,
            decision,
            arguments: None,
            origin: route.origin.clone(),
            remote_addr: route.remote_addr.clone(),
        };
        self.audit_connect(&record, outcome, started).await;
        response
    }

    async fn discover_answer(
        self: &Arc<Self>,
        route: &Route,
        context: &Arc<Session>,
        id: JsonRpcId,
    ) -> Envelope {
        match context.connect_all().await {
            Ok(facts) => {
                let mut result = self.server_identity(route, &facts, None);
                if let Some(obj) = result.as_object_mut() {
                    obj.remove("protocolVersion");
                    let info = obj.remove("serverInfo").unwrap_or(Value::Null);
                    obj.insert(
                        "supportedVersions".into(),
                        serde_json::json!(mcp::ALL_VERSIONS),
                    );
                    obj.insert("resultType".into(), "complete".into());
                    obj.insert("ttlMs".into(), 0.into());
                    obj.insert("cacheScope".into(), "private".into());
                    obj.insert(
                        "_meta".into(),
                        serde_json::json!({ mcp::META_SERVER_INFO: info }),
                    );
                }
                Envelope::result(id, to_raw(&result))
            }
            Err(e) => backend_error_response(Some(id), &e),
        }
    }

    /// What the gateway says about itself: the backend's own identity when
    /// the route is one server as itself, the gateway's when it multiplexes.
    fn server_identity(
        &self,
        route: &Route,
        facts: &[crate::backend::ServerFacts],
        version: Option<&str>,
    ) -> Value {
        let mut result = serde_json::Map::new();
        if let Some(v) = version {
            result.insert("protocolVersion".into(), v.into());
        }
        match (route.prefixed, facts) {
            (false, [one]) => {
                result.insert("capabilities".into(), one.capabilities.clone());
                result.insert("serverInfo".into(), one.server_info.clone());
                if let Some(i) = &one.instructions {
                    result.insert("instructions".into(), i.clone().into());
                }
            }
            _ => {
                result.insert("capabilities".into(), lists::merge_capabilities(facts));
                result.insert(
                    "serverInfo".into(),
                    serde_json::json!({"name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION")}),
                );
            }
        }
        Value::Object(result)
    }

    /// Ends idle sessions; runs until shutdown.
    pub async fn reap_idle(self: Arc<Self>) {
        let idle = self.config.limits.session_idle;
        let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let expired: Vec<String> = self
                .sessions
                .lock()
                .map(|s| {
                    s.iter()
                        .filter(|(_, s)| s.idle_for() > idle && !s.busy())
                        .map(|(id, _)| id.clone())
                        .collect()
                })
                .unwrap_or_default();
            for id in expired {
                tracing::info!(session.id = %id, "session ended after being idle");
                self.end_session(&id);
            }
            let mut contexts = self.stateless.lock().await;
            contexts.retain(|_, s| {
                let keep = s.idle_for() <= idle || s.busy();
                if !keep {
                    s.close();
                }
                keep
            });
            self.parked.expire();
        }
    }

    /// Closes every session (shutdown).
    pub async fn close_all(&self) {
        let ids: Vec<String> = self
            .sessions
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.end_session(&id);
        }
        for (_, s) in self.stateless.lock().await.drain() {
            s.close();
        }
    }
}

/// 128 bits from the OS CSPRNG, hex: unguessable and visible ASCII.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is an unrecoverable platform fault; never fall
        // back to something guessable.
        panic!("the operating system's random number generator failed");
    }
    hex::encode(bytes)
}

/// The JSON-RPC error for a backend failure (CONTRACT.md: -32010 / -32011).
pub fn backend_error_response(id: Option<JsonRpcId>, e: &BackendError) -> Envelope {
    match e {
        BackendError::Unavailable { backend, reason } => Envelope::error(
            id,
            e.code(),
            &format!("backend {backend:?} is unavailable"),
            Some(serde_json::json!({"backend": backend, "reason": reason})),
        ),
        BackendError::Timeout { backend, timeout } => Envelope::error(
            id,
            e.code(),
            &format!(
                "backend {backend:?} timed out after {}s",
                timeout.as_secs_f64()
            ),
            Some(serde_json::json!({
                "backend": backend,
                "timeout_ms": timeout.as_millis() as u64,
                "reason": "backend timed out",
            })),
        ),
    }
}

pub(crate) fn elapsed_us(start: Instant) -> u64 {
    start.elapsed().as_micros().min(u64::MAX as u128) as u64
}
