//! backend: a connection to one MCP server over stdio, Streamable HTTP,
//! legacy HTTP+SSE or WebSocket.
//! In: requests and notifications from the session engine. Out: responses,
//! and the server's own messages (`ClientBound`) delivered to the sink of the
//! call they belong to or to every attached session.
//!
//! This module owns the backend-side JSON-RPC ids (a counter per connection,
//! so requests of many clients sharing one process never collide), the
//! progress-token namespace, the era handshake (`server/discover` probe,
//! `initialize`), per-request timeouts and restart with backoff. It never sees
//! a client's credentials.

mod conn;
pub mod credentials;
mod http;
pub use http::EVENT_TAG;
pub mod params;
mod sse;
mod stdio;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use conn::{Attachment, Connection};

use crate::config::{BackendConfig, BackendTransport, Isolation, ProtocolPreference};
use crate::mcp::{Era, ResponsePayload};

/// A message from a server for the client side.
#[derive(Debug)]
pub enum ClientBound {
    Notification {
        method: String,
        params: Option<Box<RawValue>>,
    },
    /// A server→client request (sampling, elicitation, roots/list); the
    /// answer goes back through `reply`.
    Request {
        /// The server's own id for the request (`None` when the gateway
        /// itself asks, bridging `input_required`): a later
        /// `notifications/cancelled` from the server names it.
        server_id: Option<crate::mcp::JsonRpcId>,
        /// The backend that asks (`None` when the gateway itself asks).
        from: Option<String>,
        method: String,
        params: Option<Box<RawValue>>,
        reply: oneshot::Sender<ResponsePayload>,
    },
}

/// Where a connection delivers messages for a client. Bounded: a client that
/// does not read applies back-pressure to its own calls only.
pub type Sink = mpsc::Sender<ClientBound>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend {backend:?} is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
    #[error("backend {backend:?} timed out after {}s", timeout.as_secs_f64())]
    Timeout { backend: String, timeout: Duration },
}

impl BackendError {
    /// The JSON-RPC error code a client gets for it.
    pub fn code(&self) -> i64 {
        match self {
            BackendError::Unavailable { .. } => crate::mcp::code::BACKEND_UNAVAILABLE,
            BackendError::Timeout { .. } => crate::mcp::code::BACKEND_TIMEOUT,
        }
    }

    pub fn backend(&self) -> &str {
        match self {
            BackendError::Unavailable { backend, .. } | BackendError::Timeout { backend, .. } => {
                backend
            }
        }
    }
}

/// What the gateway tells a server about the client it speaks for.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    /// The client's negotiated revision (handshake era) or `2026-07-28`.
    pub client_version: String,
    pub client_info: Box<RawValue>,
    pub client_capabilities: Box<RawValue>,
    /// The caller the connection speaks for; `Backend` binds it to the
    /// backend's `mint_token` (transports call `authorization()`).
    pub credentials: credentials::Credentials,
    /// The backend session outlives this connection (a sealed session that
    /// other replicas may resume, `state::sessions`): a Streamable HTTP
    /// connection then never ends the backend session when it is dropped
    /// (only an explicit `end_backend_session` does), and opens its GET
    /// stream only while a client's GET stream is attached here.
    pub resumable: bool,
}

impl ConnectParams {
    /// Used for connections shared by many clients: the gateway speaks for
    /// itself and declares what it can relay.
    pub fn gateway_default() -> ConnectParams {
        ConnectParams {
            client_version: crate::mcp::LATEST_HANDSHAKE.to_owned(),
            client_info: crate::mcp::envelope::to_raw(&serde_json::json!({
                "name": "mcp-gateway",
                "version": env!("CARGO_PKG_VERSION"),
            })),
            client_capabilities: crate::mcp::envelope::to_raw(&serde_json::json!({
                "sampling": {},
                "elicitation": {},
                "roots": {"listChanged": true},
            })),
            credentials: credentials::Credentials::default(),
            resumable: false,
        }
    }
}

/// What a server said about itself (initialize or server/discover result).
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub era: Era,
    pub protocol_version: String,
    pub capabilities: serde_json::Value,
    pub server_info: serde_json::Value,
    pub instructions: Option<String>,
}

/// One configured backend: how to reach it, its cached era, its shared
/// connections, and its restart backoff.
pub struct Backend {
    pub config: BackendConfig,
    http: reqwest::Client,
    era: std::sync::Mutex<Option<Era>>,
    shared: tokio::sync::Mutex<HashMap<String, Connection>>,
    backoff: std::sync::Mutex<Backoff>,
    reached: AtomicBool,
    shutdown: CancellationToken,
    /// `x-mcp-header` declarations learned from this backend's tools/list.
    pub tool_headers: Arc<params::ToolHeaders>,
    /// Signs per-caller tokens (`mint_token`).
    pub minter: Option<Arc<credentials::Minter>>,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    last_failure: Option<Instant>,
}

impl Backoff {
    fn delay(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let ms = 100u64.saturating_mul(1 << self.failures.min(7));
        let wanted = Duration::from_millis(ms.min(10_000));
        match self.last_failure {
            Some(at) => wanted.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        }
    }
}

impl Backend {
    pub fn new(
        config: BackendConfig,
        http: reqwest::Client,
        shutdown: CancellationToken,
    ) -> Arc<Backend> {
        let era = match &config.protocol {
            ProtocolPreference::Auto => None,
            ProtocolPreference::Fixed(v) if v == crate::mcp::V2026 => Some(Era::Stateless),
            ProtocolPreference::Fixed(_) => Some(Era::Handshake),
        };
        let minter = config
            .mint_token
            .as_ref()
            .and_then(|m| credentials::Minter::new(config.name.as_str(), m));
        Arc::new(Backend {
            minter,
            config,
            http,
            era: std::sync::Mutex::new(era),
            shared: tokio::sync::Mutex::new(HashMap::new()),
            backoff: std::sync::Mutex::new(Backoff::default()),
            reached: AtomicBool::new(false),
            shutdown,
            tool_headers: Arc::default(),
        })
    }

    pub fn name(&self) -> &str {
        self.config.name.as_str()
    }

    /// Whether the backend has answered a handshake at least once.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// The key under which connections are shared, if they are: stdio
    /// processes by isolation; nothing else is shared.
    pub fn share_key(&self, principal_key: &str) -> Option<String> {
        match &self.config.transport {
            BackendTransport::Stdio {
                isolation: Isolation::Shared,
                ..
            } => Some(String::new()),
            BackendTransport::Stdio {
                isolation: Isolation::Principal,
                ..
            } => Some(principal_key.to_owned()),
            _ => None,
        }
    }

    /// A connection for a client: a shared one when the isolation says so,
    /// else a new one. Waits out the restart backoff after failures.
    pub async fn connect(
        self: &Arc<Self>,
        principal_key: &str,
        params: &ConnectParams,
    ) -> Result<Connection, BackendError> {
        match self.share_key(principal_key) {
            Some(key) => {
                let mut shared = self.shared.lock().await;
                if let Some(conn) = shared.get(&key).filter(|c| c.is_alive()) {
                    return Ok(conn.clone());
                }
                let conn = self
                    .open(&ConnectParams::gateway_default_for(params))
                    .await?;
                shared.insert(key, conn.clone());
                Ok(conn)
            }
            None => self.open(params).await,
        }
    }

    async fn open(self: &Arc<Self>, params: &ConnectParams) -> Result<Connection, BackendError> {
        let delay = self.backoff.lock().map(|b| b.delay()).unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let known_era = self.era.lock().ok().and_then(|e| *e);
        let mut params = params.clone();
        params.credentials = params.credentials.bind(self.minter.as_ref());
        let result = conn::open(self, &params, known_era).await;
        if let Ok(mut b) = self.backoff.lock() {
            match &result {
                Ok(_) => *b = Backoff::default(),
                Err(_) => {
                    b.failures = b.failures.saturating_add(1);
                    b.last_failure = Some(Instant::now());
                }
            }
        }
        if let Ok(conn) = &result {
            self.reached.store(true, Ordering::Relaxed);
            if let Ok(mut era) = self.era.lock() {
                *era = Some(conn.facts().era);
            }
        }
        result
    }

    /// Whether a session of this backend can be resumed from any replica:
    /// Streamable HTTP keeps its backend session in one header
    /// (`Mcp-Session-Id`); a stdio process, an SSE stream or a WebSocket is
    /// bound to the replica that opened it.
    pub fn resumable(&self) -> bool {
        matches!(
            self.config.transport,
            BackendTransport::StreamableHttp { .. }
        )
    }

    /// A connection that continues an existing backend session (opened by
    /// another replica) without a handshake: the session id is a header, the
    /// facts come from the sealed ticket. `None` for other transports.
    pub fn resume(
        self: &Arc<Self>,
        params: &ConnectParams,
        session_id: Option<String>,
        facts: ServerFacts,
    ) -> Option<Connection> {
        let mut params = params.clone();
        params.credentials = params.credentials.bind(self.minter.as_ref());
        conn::resume(self, &params, session_id, facts)
    }

    /// Probes the backend once (for readiness); the connection is dropped.
    pub async fn probe(self: &Arc<Self>) -> Result<ServerFacts, BackendError> {
        let conn = self.open(&ConnectParams::gateway_default()).await?;
        let facts = conn.facts().clone();
        conn.close();
        Ok(facts)
    }

    fn unavailable(&self, reason: impl Into<String>) -> BackendError {
        BackendError::Unavailable {
            backend: self.name().to_owned(),
            reason: reason.into(),
        }
    }
}

impl ConnectParams {
    /// For a shared connection, the gateway's own identity with the client's
    /// revision preference.
    fn gateway_default_for(params: &ConnectParams) -> ConnectParams {
        let mut p = ConnectParams::gateway_default();
        if crate::mcp::is_handshake_version(&params.client_version) {
            p.client_version = params.client_version.clone();
        }
        p
    }
}
