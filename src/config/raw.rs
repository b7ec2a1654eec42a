//! The configuration as written in TOML: key names, types, defaults and
//! bounds. These types are the single source of truth for the keys: the
//! JSON Schema (`schemas/config.schema.json`) is generated from them, and
//! the structural checker (`check.rs`) walks the document against that
//! schema. Semantic validation happens when converting to `Config`
//! (`convert.rs`).
//!
//! Optional keys without a default are `Option`s. Required keys are
//! `Option`s too, marked `#[schemars(required)]` and without
//! `#[serde(default)]` (serde reads a missing `Option` as `None`): the
//! schema lists them as required, the checker reports them missing, and a
//! file lacking one still deserializes so that every other problem in it is
//! reported at once. Conversion skips a backend whose required key is
//! `None` without a second message.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The mcp-gateway configuration file (TOML).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mcp-gateway configuration")]
pub(crate) struct RawConfig {
    /// Listening addresses and HTTP front-end settings.
    #[serde(default)]
    pub listen: RawListen,
    /// How clients authenticate.
    #[serde(default)]
    pub auth: RawAuth,
    /// Resource bounds.
    #[serde(default)]
    pub limits: RawLimits,
    /// The admin listener.
    #[serde(default)]
    pub admin: RawAdmin,
    /// The MCP servers behind the gateway.
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

/// `[listen]`
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Listen")]
pub(crate) struct RawListen {
    /// Address of the client listener (`ip:port`).
    #[serde(default = "default_addr")]
    pub addr: String,
    /// Address of the admin listener (`ip:port`); when not loopback,
    /// `admin.token_env` is required.
    #[serde(default = "default_admin_addr")]
    pub admin_addr: String,
    /// Exact `Origin` values (`scheme://host[:port]`) accepted besides
    /// loopback origins (DNS-rebinding protection).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Seconds between keep-alive comments on idle SSE streams.
    #[serde(default = "default_sse_keepalive_s")]
    #[schemars(range(min = 1))]
    pub sse_keepalive_s: u64,
    /// Seconds shutdown waits for in-flight requests.
    #[serde(default = "default_drain_s")]
    pub drain_s: u64,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            addr: default_addr(),
            admin_addr: default_admin_addr(),
            allowed_origins: Vec::new(),
            sse_keepalive_s: default_sse_keepalive_s(),
            drain_s: default_drain_s(),
        }
    }
}

fn default_addr() -> String {
    "127.0.0.1:8080".into()
}
fn default_admin_addr() -> String {
    "127.0.0.1:9090".into()
}
fn default_sse_keepalive_s() -> u64 {
    15
}
fn default_drain_s() -> u64 {
    10
}

/// `[auth]`
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Auth")]
pub(crate) struct RawAuth {
    /// Authentication mode; this build supports only "none".
    #[serde(default)]
    pub mode: RawAuthMode,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "AuthMode")]
pub(crate) enum RawAuthMode {
    #[default]
    None,
}

/// `[limits]`
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
pub(crate) struct RawLimits {
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1))]
    pub max_body_bytes: u64,
    /// Sessions one principal may hold open at once.
    #[serde(default = "default_max_sessions_per_principal")]
    #[schemars(range(min = 1))]
    pub max_sessions_per_principal: u64,
    /// Requests of one session waiting for a backend at once.
    #[serde(default = "default_max_in_flight_per_session")]
    #[schemars(range(min = 1))]
    pub max_in_flight_per_session: u64,
    /// Messages queued towards one client connection before it is cut off.
    #[serde(default = "default_max_queued_messages")]
    #[schemars(range(min = 1))]
    pub max_queued_messages: u64,
    /// Seconds after which an idle handshake-era session is ended.
    #[serde(default = "default_session_idle_s")]
    #[schemars(range(min = 1))]
    pub session_idle_s: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_sessions_per_principal: default_max_sessions_per_principal(),
            max_in_flight_per_session: default_max_in_flight_per_session(),
            max_queued_messages: default_max_queued_messages(),
            session_idle_s: default_session_idle_s(),
        }
    }
}

fn default_max_body_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_max_sessions_per_principal() -> u64 {
    64
}
fn default_max_in_flight_per_session() -> u64 {
    64
}
fn default_max_queued_messages() -> u64 {
    1024
}
fn default_session_idle_s() -> u64 {
    1800
}

/// `[admin]`
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Admin")]
pub(crate) struct RawAdmin {
    /// Name of the environment variable holding the bearer token admin
    /// requests must carry; required unless `listen.admin_addr` is loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

/// `[[backends]]`: one MCP server behind the gateway.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Backend")]
pub(crate) struct RawBackend {
    /// `[A-Za-z0-9_-]+`, at most 64 characters, unique; used as the
    /// tool-name prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, extend("pattern" = "^[A-Za-z0-9_-]{1,64}$"))]
    pub name: Option<String>,
    /// How the gateway talks to the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub transport: Option<RawTransport>,
    /// stdio: program and arguments (required, non-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// stdio: extra environment variables of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// stdio: working directory of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// stdio: "session" (default: one process per client session),
    /// "principal" (one per principal) or "shared" (one for everybody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "session"))]
    pub isolation: Option<RawIsolation>,
    /// streamable_http: the server's MCP endpoint, `http://` or `https://`
    /// (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// streamable_http: headers sent with every request; `${VAR}` in a
    /// value is replaced by the environment variable VAR (`$${` is a
    /// literal `${`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Protocol revision to speak to the server: "auto" probes
    /// `server/discover` and falls back to `initialize`.
    #[serde(default)]
    pub protocol: RawProtocol,
    /// Seconds to wait for a response from the server.
    #[serde(default = "default_timeout_s")]
    #[schemars(range(min = 1))]
    pub timeout_s: u64,
}

fn default_timeout_s() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Transport")]
pub(crate) enum RawTransport {
    Stdio,
    StreamableHttp,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Isolation")]
pub(crate) enum RawIsolation {
    Session,
    Principal,
    Shared,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[schemars(rename = "Protocol")]
pub(crate) enum RawProtocol {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "2024-11-05")]
    V2024_11_05,
    #[serde(rename = "2025-03-26")]
    V2025_03_26,
    #[serde(rename = "2025-06-18")]
    V2025_06_18,
    #[serde(rename = "2025-11-25")]
    V2025_11_25,
    #[serde(rename = "2026-07-28")]
    V2026_07_28,
}

impl RawProtocol {
    /// The revision string, `None` for "auto".
    pub fn revision(self) -> Option<&'static str> {
        match self {
            Self::Auto => None,
            Self::V2024_11_05 => Some("2024-11-05"),
            Self::V2025_03_26 => Some("2025-03-26"),
            Self::V2025_06_18 => Some("2025-06-18"),
            Self::V2025_11_25 => Some("2025-11-25"),
            Self::V2026_07_28 => Some("2026-07-28"),
        }
    }
}
