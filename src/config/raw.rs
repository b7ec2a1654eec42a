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
    /// The multiplexed route (`/mcp`, `/sse`, `/ws` over several backends).
    #[serde(default)]
    pub multiplex: RawMultiplex,
    /// Recording sessions as fixtures (`mcp-gateway replay`).
    #[serde(default)]
    pub record: RawRecord,
    /// The audit log.
    #[serde(default)]
    pub audit: RawAudit,
    /// Traces.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// Authorization: the Cedar policy files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<super::authz::RawPolicy>,
    /// Tenants and the backends each may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<super::authz::RawTenant>,
    /// Session routing by claims, client id, origin and path; first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<super::authz::RawRoute>,
    /// Shared state for several replicas (Redis); in memory without it.
    #[serde(default)]
    pub state: RawState,
}

/// `[multiplex]`: how several backends are served as one.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Multiplex")]
pub(crate) struct RawMultiplex {
    /// "partial" (default): a backend that is down is left out of lists and
    /// its calls get -32010; "strict": a request that needs every backend
    /// (initialize, lists) fails with -32010 when one is down.
    #[serde(default)]
    pub failure_mode: RawFailureMode,
    /// Seconds a merged list is served from the gateway's catalog before the
    /// backends are asked again (a backend's `list_changed`, or a shorter
    /// `ttlMs` of its own, ends it sooner); 0 asks on every list.
    #[serde(default = "default_catalog_ttl_s")]
    pub catalog_ttl_s: u64,
}

impl Default for RawMultiplex {
    fn default() -> Self {
        Self {
            failure_mode: RawFailureMode::default(),
            catalog_ttl_s: default_catalog_ttl_s(),
        }
    }
}

/// `[record]`: every session written as a JSON Lines fixture
/// (`fixtures/README.md`).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Record")]
pub(crate) struct RawRecord {
    /// Directory the fixtures are written to; recording is off without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Write tool arguments as sent; by default they are replaced by their
    /// SHA-256 (`{"_redacted_sha256": "<hex>"}`).
    #[serde(default)]
    pub include_arguments: bool,
    /// Stateless (2026-07-28) exchanges of one principal on one route go to
    /// one fixture until this many seconds pass without a message.
    #[serde(default = "default_record_group_window_s")]
    #[schemars(range(min = 1))]
    pub group_window_s: u64,
    /// Messages waiting for the writer; when full, messages are dropped and
    /// the fixture says so with a `gap` line (replay refuses it).
    #[serde(default = "default_record_queue_messages")]
    #[schemars(range(min = 1))]
    pub queue_messages: u64,
}

impl Default for RawRecord {
    fn default() -> Self {
        RawRecord {
            dir: None,
            include_arguments: false,
            group_window_s: default_record_group_window_s(),
            queue_messages: default_record_queue_messages(),
        }
    }
}

fn default_catalog_ttl_s() -> u64 {
    60
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "FailureMode")]
pub(crate) enum RawFailureMode {
    #[default]
    Partial,
    Strict,
}

/// `backends[].tools`: which of the server's tools clients see, and how
/// (curation, applied on every route; separate from authorization). Keys
/// of `rename`, `description` and `pin` are the server's own tool names.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tools")]
pub(crate) struct RawTools {
    /// Globs (`*`, `?`) of tool names to show; empty shows every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs of tool names to hide (applied after `include`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Server's name → the name clients see (before the backend prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Server's name → the description clients see.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub description: BTreeMap<String, String>,
    /// Server's name → { argument → fixed value }: the arguments disappear
    /// from the advertised input schema and every call carries these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pin: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

fn default_record_group_window_s() -> u64 {
    60
}
fn default_record_queue_messages() -> u64 {
    4096
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
    /// Seconds between WebSocket pings to clients; a client that answers
    /// nothing for two intervals is disconnected.
    #[serde(default = "default_ws_ping_s")]
    #[schemars(range(min = 1))]
    pub ws_ping_s: u64,
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
            ws_ping_s: default_ws_ping_s(),
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
fn default_ws_ping_s() -> u64 {
    30
}
fn default_drain_s() -> u64 {
    10
}

/// `[auth]`
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Auth")]
pub(crate) struct RawAuth {
    /// "none" (anonymous, unless API keys are configured), "jwt" (signed
    /// bearer tokens) or "introspection" (RFC 7662); `api_keys` work with
    /// any mode.
    #[serde(default)]
    pub mode: RawAuthMode,
    /// jwt, introspection: the token issuer (`iss`); with neither `jwks_uri`
    /// nor `jwks_file`, its OIDC discovery document
    /// (`/.well-known/openid-configuration`) names the JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// jwt, introspection: the RFC 8707 resource(s) this gateway is; a token
    /// whose `aud` names none of them is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<RawAudience>,
    /// jwt: where the issuer's signing keys (JWKS) are served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// jwt: a JWKS file (re-read when a token names an unknown `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// jwt: environment variable holding an HS256 secret (development only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256_secret_env: Option<String>,
    /// jwt: accepted signature algorithms (default: every asymmetric one,
    /// plus HS256 when `hs256_secret_env` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<RawAlgorithm>>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// Claim naming the caller's tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the scopes: a space-separated string or an array of
    /// strings; with the default "scope", "scp" is read when "scope" is absent.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Longest RFC 8693 `act` (delegation) chain accepted.
    #[serde(default = "default_max_delegation_depth")]
    pub max_delegation_depth: u64,
    /// jwt: seconds between refreshes of a fetched JWKS.
    #[serde(default = "default_jwks_refresh_s")]
    #[schemars(range(min = 1))]
    pub jwks_refresh_s: u64,
    /// jwt: least seconds between two JWKS fetches triggered by unknown
    /// `kid`s (a flood of bogus kids cannot hammer the issuer).
    #[serde(default = "default_jwks_min_refresh_s")]
    pub jwks_min_refresh_s: u64,
    /// introspection: the RFC 7662 endpoint (default: `introspection_endpoint`
    /// from the issuer's discovery document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// introspection: the gateway's client id at the introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// introspection: environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// introspection: seconds an answer is reused (never beyond the token's `exp`).
    #[serde(default = "default_cache_s")]
    pub cache_s: u64,
    /// Verified tokens (and introspection answers) kept in memory at most.
    #[serde(default = "default_cache_max_entries")]
    #[schemars(range(min = 1))]
    pub cache_max_entries: u64,
    /// Longest credential accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    #[schemars(range(min = 1))]
    pub max_token_bytes: u64,
    /// Scopes every route requires (403 `insufficient_scope` without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// `scopes_supported` of the protected resource metadata (default: every
    /// required scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// `authorization_servers` of the protected resource metadata (default:
    /// the issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_servers: Option<Vec<String>>,
    /// The gateway's public base URL (`https://gw.example.com`), for the
    /// metadata URLs it announces (default: `http://` + the request's Host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// File the revocations (`/admin/revocations`) are kept in across
    /// restarts (default: memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocations_file: Option<String>,
    /// Static API keys, accepted alongside the mode's tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<RawApiKey>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            mode: RawAuthMode::default(),
            issuer: None,
            audience: None,
            jwks_uri: None,
            jwks_file: None,
            hs256_secret_env: None,
            algorithms: None,
            leeway_s: default_leeway_s(),
            tenant_claim: default_tenant_claim(),
            scope_claim: default_scope_claim(),
            max_delegation_depth: default_max_delegation_depth(),
            jwks_refresh_s: default_jwks_refresh_s(),
            jwks_min_refresh_s: default_jwks_min_refresh_s(),
            introspection_url: None,
            client_id: None,
            client_secret_env: None,
            cache_s: default_cache_s(),
            cache_max_entries: default_cache_max_entries(),
            max_token_bytes: default_max_token_bytes(),
            required_scopes: Vec::new(),
            scopes_supported: None,
            authorization_servers: None,
            public_url: None,
            revocations_file: None,
            api_keys: Vec::new(),
        }
    }
}

fn default_leeway_s() -> u64 {
    30
}
fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}
fn default_max_delegation_depth() -> u64 {
    2
}
fn default_jwks_refresh_s() -> u64 {
    300
}
fn default_jwks_min_refresh_s() -> u64 {
    10
}
fn default_cache_s() -> u64 {
    60
}
fn default_cache_max_entries() -> u64 {
    10_000
}
fn default_max_token_bytes() -> u64 {
    8192
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "AuthMode")]
pub(crate) enum RawAuthMode {
    #[default]
    None,
    Jwt,
    Introspection,
}

/// One audience or several.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Audience")]
pub(crate) enum RawAudience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(rename = "Algorithm")]
pub(crate) enum RawAlgorithm {
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

/// `[[auth.api_keys]]`: one static key, stored as its SHA-256.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ApiKey")]
pub(crate) struct RawApiKey {
    /// The request header carrying the key.
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// The scheme before the key (`Authorization: ApiKey <key>`); required
    /// with header = "authorization" (default there "ApiKey").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, extend("pattern" = "^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
    /// The principal's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
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
    /// Largest accepted WebSocket message from a client, in bytes (larger:
    /// close code 1009).
    #[serde(default = "default_max_message_bytes")]
    #[schemars(range(min = 1))]
    pub max_message_bytes: u64,
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
    /// Rate limit of each principal (token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_principal: Option<RawRate>,
    /// Rate limit of each client/agent id (`client_id` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_agent: Option<RawRate>,
    /// Requests of one principal waiting for a backend at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight_per_principal: Option<u64>,
    /// Requests waiting for one backend at once, over all clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight_per_backend: Option<u64>,
    /// Most rate-limit buckets kept per limit; idle ones are evicted first.
    #[serde(default = "default_max_rate_keys")]
    #[schemars(range(min = 1))]
    pub max_rate_keys: u64,
    /// Rate limits on what a call matches; every matching rule applies.
    #[serde(default)]
    pub rules: Vec<RawLimitRule>,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_message_bytes: default_max_message_bytes(),
            max_sessions_per_principal: default_max_sessions_per_principal(),
            max_in_flight_per_session: default_max_in_flight_per_session(),
            max_queued_messages: default_max_queued_messages(),
            session_idle_s: default_session_idle_s(),
            per_principal: None,
            per_agent: None,
            max_in_flight_per_principal: None,
            max_in_flight_per_backend: None,
            max_rate_keys: default_max_rate_keys(),
            rules: Vec::new(),
        }
    }
}

fn default_max_rate_keys() -> u64 {
    100_000
}

fn default_max_body_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_max_message_bytes() -> u64 {
    default_max_body_bytes()
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
    /// streamable_http: the server's MCP endpoint, `http://` or `https://`;
    /// sse: its SSE stream (e.g. `http://host/sse`); websocket: `ws://` or
    /// `wss://` (required with these transports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// streamable_http, sse, websocket: headers sent with every request
    /// (websocket: with the upgrade request); `${VAR}` in a value is
    /// replaced by the environment variable VAR (`$${` is a literal `${`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// websocket: seconds between keep-alive pings; a server silent for two
    /// intervals is considered gone (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 30))]
    pub ping_s: Option<u64>,
    /// streamable_http, sse, websocket: mint a short-lived JWT per caller
    /// for this server (`Authorization: Bearer …`): audience the server,
    /// `sub` the caller, `act` the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mint_token: Option<RawMintToken>,
    /// Scopes a caller needs for every route that reaches this backend
    /// (403 `insufficient_scope` without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// Protocol revision to speak to the server: "auto" probes
    /// `server/discover` and falls back to `initialize`.
    #[serde(default)]
    pub protocol: RawProtocol,
    /// Seconds to wait for a response from the server.
    #[serde(default = "default_timeout_s")]
    #[schemars(range(min = 1))]
    pub timeout_s: u64,
    /// Which tools clients see and how (include, exclude, rename,
    /// description, pin).
    #[serde(default)]
    pub tools: RawTools,
}

fn default_timeout_s() -> u64 {
    30
}

/// `backends[].mint_token`
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "MintToken")]
pub(crate) struct RawMintToken {
    /// The `aud` of the minted tokens: the backend's resource identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub audience: Option<String>,
    /// PKCS#8 PEM private key (RSA → RS256, P-256 → ES256, P-384 → ES384,
    /// Ed25519 → EdDSA); its public half is served as the gateway's JWKS.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub key_file: Option<String>,
    /// Lifetime of a minted token, in seconds.
    #[serde(default = "default_mint_ttl_s")]
    #[schemars(range(min = 1, max = 3600))]
    pub ttl_s: u64,
    /// The `iss` of the minted tokens.
    #[serde(default = "default_mint_issuer")]
    pub issuer: String,
    /// The `kid` (default: the key's RFC 7638 thumbprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

fn default_mint_ttl_s() -> u64 {
    60
}
fn default_mint_issuer() -> String {
    "mcp-gateway".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Transport")]
pub(crate) enum RawTransport {
    Stdio,
    StreamableHttp,
    // Legacy HTTP+SSE (2024-11-05). Plain comments: doc comments on
    // variants would turn the schema's `enum` into a `oneOf`.
    Sse,
    Websocket,
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

/// A token bucket: `per_second` tokens added each second, at most `burst`
/// held (default: `per_second`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rate")]
pub(crate) struct RawRate {
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub per_second: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub burst: Option<u64>,
}

/// `[[limits.rules]]`: a rate applied to the calls `match` selects.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "LimitRule")]
pub(crate) struct RawLimitRule {
    /// What the rule applies to; every key given must match.
    #[serde(rename = "match", default)]
    pub matches: RawLimitMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub rate: Option<RawRate>,
}

/// Values are exact names, or `"*"`: any value, each with its own bucket.
/// A key left out matches anything and shares one bucket.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "LimitMatch")]
pub(crate) struct RawLimitMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The principal's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The client/agent id (`client_id` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The tool's own name on its backend (not prefixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// `[audit]`
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Audit")]
pub(crate) struct RawAudit {
    /// The audit log file (JSON Lines), relative to the working directory;
    /// `"-"` for stdout; `"syslog://HOST:PORT"` for a syslog collector over
    /// TCP (RFC 5424 messages, octet-counted framing).
    #[serde(default = "default_audit_path")]
    pub path: String,
    /// When records reach the disk.
    #[serde(default)]
    pub fsync: RawFsync,
    /// Store `args_sha256` instead of tool arguments.
    #[serde(default = "default_true")]
    pub redact_arguments: bool,
    /// Rotate the file once it holds this many bytes; the hash chain
    /// continues in the next file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rotate_bytes: Option<u64>,
    /// Records queued for the writer before callers wait.
    #[serde(default = "default_audit_queue")]
    #[schemars(range(min = 1))]
    pub queue_depth: u64,
    /// With a syslog `path`: the file keeping the chain's last `seq` and
    /// `hash`, so the chain continues across restarts.
    #[serde(default = "default_audit_checkpoint")]
    pub checkpoint: String,
}

fn default_audit_checkpoint() -> String {
    "audit.checkpoint".into()
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            path: default_audit_path(),
            fsync: RawFsync::default(),
            redact_arguments: true,
            rotate_bytes: None,
            queue_depth: default_audit_queue(),
            checkpoint: default_audit_checkpoint(),
        }
    }
}

/// `[state]`: where replicas share revocations (and later limits and
/// sessions). Without `redis_url` everything stays in this process.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "State")]
pub(crate) struct RawState {
    /// `redis://[:password@]host:port[/db]` or `rediss://` for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis URL (when it carries a
    /// password); instead of `redis_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url_env: Option<String>,
    /// Prefix of every key and channel, so several gateways can share one Redis.
    #[serde(default = "default_state_key_prefix")]
    pub key_prefix: String,
    /// What happens while Redis is unreachable: "deny" (default, fail
    /// closed: requests that need shared state get 503) or "local" (this
    /// replica's last view is used, with a warning).
    #[serde(default)]
    pub on_unavailable: RawOnUnavailable,
    /// Environment variable holding the key that seals session ids (same
    /// value on every replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key_env: Option<String>,
    /// This replica's name: in every audit record (`replica`), the session
    /// registry and sealed session ids ([A-Za-z0-9_.-], at most 64).
    /// Default: the host name and a random suffix, chosen at each start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
    /// `host:port` where the other replicas reach this one's client
    /// listener, to forward requests of sessions it owns. Default:
    /// `listen.addr` as bound (set it when that is `0.0.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            redis_url: None,
            redis_url_env: None,
            key_prefix: default_state_key_prefix(),
            on_unavailable: RawOnUnavailable::default(),
            session_key_env: None,
            replica_id: None,
            advertise_addr: None,
        }
    }
}

fn default_audit_path() -> String {
    "audit.jsonl".into()
}
fn default_true() -> bool {
    true
}
fn default_audit_queue() -> u64 {
    4096
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawFsync {
    /// After every record.
    Always,
    /// After every batch the writer drains from its queue.
    #[default]
    Batch,
    /// Never; the operating system decides.
    Never,
}

/// `[telemetry]`
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Telemetry")]
pub(crate) struct RawTelemetry {
    /// OTLP/HTTP collector (e.g. `http://127.0.0.1:4318`); spans are posted
    /// as JSON to `/v1/traces`. Tracing is off without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

fn default_service_name() -> String {
    "mcp-gateway".into()
}

fn default_state_key_prefix() -> String {
    "mcp-gateway:".into()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "OnUnavailable")]
pub(crate) enum RawOnUnavailable {
    #[default]
    Deny,
    Local,
}
