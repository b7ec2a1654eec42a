//! The validated configuration: what the pipeline reads. Built only by
//! `config::load` from the raw TOML; every value here has passed validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A backend name: `[A-Za-z0-9_-]+`, also used as the tool-name prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendName(String);

impl BackendName {
    /// Validates the name; the error says what is wrong with it.
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.len() > 64 {
            return Err(format!("{name:?} is longer than 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("{name:?} may only use A-Za-z0-9_-"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BackendName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or `<quickstart>`), for messages.
    pub source: String,
    pub listen: ListenConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub admin: AdminConfig,
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Exact `Origin` values accepted besides loopback origins. A request
    /// without `Origin` is accepted (non-browser clients send none).
    pub allowed_origins: Vec<String>,
    /// Interval of `:` keep-alive comments on idle SSE streams.
    pub sse_keepalive: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_sessions_per_principal: usize,
    /// Requests of one session waiting for a backend at once.
    pub max_in_flight_per_session: usize,
    /// Messages queued towards one client connection before it is cut off.
    pub max_queued_messages: usize,
    /// Handshake-era sessions idle this long are ended.
    pub session_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The bearer token admin requests must carry; `None` means none is
    /// required (allowed only on a loopback admin address).
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// One process per client session (default): no state shared between users.
    Session,
    /// One process per principal.
    Principal,
    /// One process for everybody: only for servers known to be stateless.
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolPreference {
    /// Probe `server/discover`, fall back to `initialize`.
    Auto,
    /// A fixed revision, e.g. `2025-06-18` or `2026-07-28`.
    Fixed(String),
}

#[derive(Debug, Clone)]
pub enum BackendTransport {
    Stdio {
        /// Program and arguments; never empty.
        command: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
        isolation: Isolation,
    },
    StreamableHttp {
        url: String,
        /// Header name (lowercase) → value, `${VAR}` already interpolated.
        headers: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: BackendName,
    pub transport: BackendTransport,
    pub protocol: ProtocolPreference,
    pub timeout: Duration,
}
