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
    pub multiplex: MultiplexConfig,
    pub record: RecordConfig,
    pub audit: AuditConfig,
    pub tenants: Vec<TenantConfig>,
    pub telemetry: TelemetryConfig,
    pub policy: PolicyConfig,
    pub routes: Vec<RouteConfig>,
    pub state: StateConfig,
}

/// How several backends are served as one route.
#[derive(Debug, Clone)]
pub struct MultiplexConfig {
    pub failure_mode: FailureMode,
    /// How long a merged list is served from the catalog.
    pub catalog_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// A backend that is down is left out; its own calls get -32010.
    Partial,
    /// A request that needs every backend fails when one is down.
    Strict,
}

/// Curation of one backend's tools (see `router::curation`).
#[derive(Debug, Clone, Default)]
pub struct ToolCuration {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Server's name → public name.
    pub rename: BTreeMap<String, String>,
    pub description: BTreeMap<String, String>,
    /// Server's name → argument → fixed value.
    pub pin: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// `[record]`: where and how sessions are written as fixtures.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// `None`: recording is off.
    pub dir: Option<std::path::PathBuf>,
    pub include_arguments: bool,
    pub group_window: Duration,
    pub queue_messages: usize,
}

#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector base URL; `None`: tracing off.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

/// `[policy]`: the files are read and compiled by `policy::load`.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// Whether the file has a `[policy]` section at all.
    pub configured: bool,
    /// File patterns as written (`*` allowed in the last component).
    pub files: Vec<String>,
    pub expose_arguments: bool,
    /// Relative patterns start here (the config file's directory).
    pub base_dir: std::path::PathBuf,
    /// Policies built into the binary: (name, Cedar text). The quickstart's
    /// allow-all lives here.
    pub embedded: Vec<(String, String)>,
}

/// `[[tenants]]`: a tenant and the backends its principals reach. Other
/// per-tenant settings (limits) belong here too.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    pub backends: Vec<BackendName>,
    /// A bucket shared by every principal of the tenant.
    pub rate_limit: Option<Rate>,
}

/// `[[routes]]`: a session selector; every condition given must hold.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub claims: BTreeMap<String, String>,
    pub client_id: Option<String>,
    pub origin: Option<String>,
    pub path: Option<String>,
    /// `None`: every backend of the path.
    pub backends: Option<Vec<BackendName>>,
    /// `None`: `policy.files` decide.
    pub policy_files: Option<Vec<String>>,
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
    /// Interval of WebSocket pings to clients; two silent intervals end
    /// the connection.
    pub ws_ping: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No bearer tokens: anonymous callers, or API keys only when any are
    /// configured.
    None,
    /// Signed JWTs verified against JWKS / discovery / an HS256 secret.
    Jwt,
    /// Opaque tokens checked with the issuer (RFC 7662).
    Introspection,
}

/// A secret read from the environment or a key file: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the JWT verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Only the HS256 secret (development).
    None,
    /// A JWKS file, re-read on an unknown `kid`.
    File(std::path::PathBuf),
    /// A JWKS URL, fetched and refreshed.
    Uri(String),
    /// The issuer's OIDC discovery document names the JWKS URL.
    Discovery,
}

/// A JWS algorithm the gateway verifies. `none` is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
}

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// `None`: the issuer's discovery document names it.
    pub url: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    /// How long an answer is reused (never beyond the token's `exp`).
    pub cache: Duration,
}

#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    /// Lowercase header name.
    pub header: String,
    /// The scheme before the key (`ApiKey`), compared case-insensitively.
    pub scheme: Option<String>,
    pub sha256: [u8; 32],
    pub subject: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub issuer: Option<String>,
    /// Accepted `aud` values (jwt, introspection); never empty in those modes.
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub hs256_secret: Option<Secret>,
    pub algorithms: Vec<JwtAlgorithm>,
    pub leeway: Duration,
    pub tenant_claim: String,
    pub scope_claim: String,
    pub max_delegation_depth: usize,
    pub jwks_refresh: Duration,
    pub jwks_min_refresh: Duration,
    pub introspection: Option<IntrospectionConfig>,
    pub cache_max_entries: usize,
    pub max_token_bytes: usize,
    pub required_scopes: Vec<String>,
    pub scopes_supported: Option<Vec<String>>,
    pub authorization_servers: Vec<String>,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    pub revocations_file: Option<std::path::PathBuf>,
    pub api_keys: Vec<ApiKeyConfig>,
}

impl AuthConfig {
    /// Whether callers must prove who they are (a token mode or API keys).
    pub fn enabled(&self) -> bool {
        self.mode != AuthMode::None || !self.api_keys.is_empty()
    }
}

/// `backends[].mint_token`: a JWT minted per caller for the backend.
#[derive(Debug, Clone)]
pub struct MintTokenConfig {
    pub audience: String,
    pub key_file: std::path::PathBuf,
    /// The PEM text of the private key (validated at load).
    pub key_pem: Secret,
    pub ttl: Duration,
    pub issuer: String,
    pub kid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    /// Largest WebSocket message accepted from a client.
    pub max_message_bytes: usize,
    pub max_sessions_per_principal: usize,
    /// Requests of one session waiting for a backend at once.
    pub max_in_flight_per_session: usize,
    /// Messages queued towards one client connection before it is cut off.
    pub max_queued_messages: usize,
    /// Handshake-era sessions idle this long are ended.
    pub session_idle: Duration,
    pub rates: RateLimits,
}

/// Rate limits and concurrency caps (`limits::Limiter`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub per_principal: Option<Rate>,
    pub per_agent: Option<Rate>,
    pub max_in_flight_per_principal: Option<usize>,
    pub max_in_flight_per_backend: Option<usize>,
    /// Most buckets one limit keeps.
    pub max_keys: usize,
    pub rules: Vec<LimitRule>,
    /// Tenant name → its rate.
    pub tenants: BTreeMap<String, Rate>,
}

/// A token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// What a `[[limits.rules]]` entry selects: `None` any value (one shared
/// bucket), `Some("*")` any value (a bucket per value), else exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitRule {
    pub tenant: Option<String>,
    pub principal: Option<String>,
    pub agent: Option<String>,
    pub backend: Option<String>,
    pub tool: Option<String>,
    pub rate: Rate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditPath {
    Stdout,
    File(std::path::PathBuf),
    /// A syslog collector over TCP (`host:port`), the chain's position
    /// kept in `checkpoint`.
    Syslog {
        addr: String,
        checkpoint: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Batch,
    Never,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: AuditPath,
    pub fsync: Fsync,
    pub redact_arguments: bool,
    pub rotate_bytes: Option<u64>,
    pub queue_depth: usize,
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
    /// Legacy HTTP+SSE (2024-11-05).
    Sse {
        /// The SSE stream (GET); the POST endpoint comes from its `endpoint` event.
        url: String,
        headers: Vec<(String, String)>,
    },
    WebSocket {
        /// `ws://` or `wss://`.
        url: String,
        /// Sent with the upgrade request.
        headers: Vec<(String, String)>,
        /// Keep-alive ping interval; two silent intervals end the connection.
        ping: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: BackendName,
    pub transport: BackendTransport,
    pub protocol: ProtocolPreference,
    pub timeout: Duration,
    /// Remote transports: a token minted per caller instead of a static
    /// `authorization` header.
    pub mint_token: Option<MintTokenConfig>,
    /// Scopes required on every route reaching this backend.
    pub required_scopes: Vec<String>,
    pub tools: ToolCuration,
}

/// `[state]`: shared state for several replicas.
#[derive(Debug, Clone, Default)]
pub struct StateConfig {
    /// `None`: in-memory state only (one replica).
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key and channel.
    pub key_prefix: String,
    pub on_unavailable: OnUnavailable,
    /// The session-sealing key material (from `session_key_env`).
    pub session_key: Option<Secret>,
    /// `[state] replica_id`: `None` means the host name and a random
    /// suffix, chosen at start (`state::replica_id`).
    pub replica_id: Option<String>,
    /// `[state] advertise_addr`: `None` means the bound listener address.
    pub advertise_addr: Option<String>,
}

/// What requests needing shared state get while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Fail closed: 503 "state store unavailable".
    #[default]
    Deny,
    /// Use this replica's last view, with a warning.
    Local,
}
