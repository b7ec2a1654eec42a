//! frontend: transports served to clients. In: HTTP requests and WebSocket
//! frames. Out: the session engine's responses and messages, as JSON, SSE
//! or text frames. Thin: no policy, no routing decisions beyond the path;
//! each refusal maps to its HTTP status and JSON-RPC code in one place
//! (`Reject::parts`). Every connection's outbound queue is bounded
//! (`limits.max_queued_messages`): a client that stops reading is cut off,
//! never buffered for.
//!
//! - `streamable_http`: `/mcp`, every revision.
//! - `sse_legacy`: `/sse` + `/messages` (2024-11-05 HTTP+SSE).
//! - `websocket`: `/ws` (subprotocol `mcp`).
//! - `connection`: what the last two share: one handshake-era session per
//!   connection, fed by messages and answering through one bounded queue.
//! - `auth`: authentication at the edge for all of them (401/403 with
//!   `WWW-Authenticate`, credentials in the query string refused, event
//!   streams bounded by their credential), RFC 9728 metadata, the JWKS.

pub mod auth;
mod connection;
mod forward;
pub mod sse;
pub mod sse_legacy;
pub mod streamable_http;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::mcp::{self, Envelope, JsonRpcId};
use crate::session::Gateway;

/// Why a request was refused before it reached a session.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    #[error("invalid Origin {0:?}")]
    Origin(String),
    #[error("invalid Host {0:?}")]
    Host(String),
    #[error("Content-Type must be application/json")]
    ContentType,
    #[error("Accept must include {0}")]
    Accept(&'static str),
    #[error("{0}")]
    Envelope(#[from] mcp::EnvelopeError),
    #[error("missing Mcp-Session-Id header")]
    MissingSession,
    #[error("unknown or ended session")]
    UnknownSession,
    #[error("unsupported MCP-Protocol-Version {0:?}")]
    BadVersionHeader(String),
    #[error("{0}")]
    HeaderMismatch(String),
    #[error("{0}")]
    MissingMeta(&'static str),
    #[error("unsupported protocol version {requested:?}")]
    UnsupportedVersion { requested: String },
    #[error("batches are only allowed in protocol version 2025-03-26")]
    Batch,
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    #[error("too many sessions for this principal (limit {0})")]
    TooManySessions(usize),
    #[error("{0}")]
    Auth(Box<auth::Challenge>),
    #[error("clients must not send responses without a session")]
    StatelessResponse,
    #[error("missing session_id query parameter")]
    MissingSessionParam,
    #[error("the session is not initialized: send initialize first")]
    NotInitialized,
    #[error("the session is already initialized")]
    AlreadyInitialized,
    #[error("batches are not accepted on this transport")]
    BatchOnConnection,
    #[error("Sec-WebSocket-Protocol must offer \"mcp\"")]
    Subprotocol,
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl Reject {
    /// The one mapping from a refusal to HTTP status and JSON-RPC error.
    fn parts(&self) -> (StatusCode, i64) {
        match self {
            Reject::Origin(_) | Reject::Host(_) => {
                (StatusCode::FORBIDDEN, mcp::code::INVALID_REQUEST)
            }
            Reject::ContentType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                mcp::code::INVALID_REQUEST,
            ),
            Reject::Accept(_) => (StatusCode::NOT_ACCEPTABLE, mcp::code::INVALID_REQUEST),
            Reject::Envelope(e) => (StatusCode::BAD_REQUEST, e.code()),
            Reject::MissingSession => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::UnknownSession => (StatusCode::NOT_FOUND, mcp::code::INVALID_REQUEST),
            Reject::BadVersionHeader(_) => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::HeaderMismatch(_) => (StatusCode::BAD_REQUEST, mcp::code::HEADER_MISMATCH),
            Reject::MissingMeta(_) => (StatusCode::BAD_REQUEST, mcp::code::INVALID_PARAMS),
            Reject::UnsupportedVersion { .. } => (
                StatusCode::BAD_REQUEST,
                mcp::code::UNSUPPORTED_PROTOCOL_VERSION,
            ),
            Reject::Batch => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, mcp::code::INVALID_REQUEST)
            }
            Reject::TooManySessions(_) => (StatusCode::TOO_MANY_REQUESTS, mcp::code::RATE_LIMITED),
            Reject::Auth(challenge) => challenge.parts(),
            Reject::StatelessResponse => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::MissingSessionParam => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            // Message-level on a connection (legacy SSE, WebSocket); the
            // statuses only apply if one is ever refused over HTTP.
            Reject::NotInitialized => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::AlreadyInitialized => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::BatchOnConnection => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::Subprotocol => (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST),
            Reject::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, mcp::code::INTERNAL_ERROR),
        }
    }

    /// The JSON-RPC error message for this refusal, `data.reason` included.
    pub fn to_envelope(&self, id: Option<JsonRpcId>) -> Envelope {
        let (_, code) = self.parts();
        let message = self.to_string();
        let mut data = serde_json::json!({"reason": message});
        if let Reject::UnsupportedVersion { requested } = self {
            data["supported"] = serde_json::json!([mcp::V2026]);
            data["requested"] = serde_json::json!(requested);
        }
        Envelope::error(id, code, &message, Some(data))
    }

    pub fn into_response_with_id(self, id: Option<JsonRpcId>) -> Response {
        let (status, _) = self.parts();
        let body = self.to_envelope(id).to_json();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        match self {
            Reject::MethodNotAllowed(_) => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Reject::TooManySessions(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Reject::Auth(challenge) => challenge.decorate(&mut response),
            _ => {}
        }
        response
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        tracing::debug!(reason = %self, "request refused");
        self.into_response_with_id(None)
    }
}

/// The client listener's routes.
pub fn router(gw: Arc<Gateway>, local: SocketAddr) -> Router {
    // Legacy SSE and WebSocket connections share one registry (POSTs find
    // their SSE connection by id; both count towards the per-principal cap).
    let connections = Arc::new(connection::Registry::default());
    streamable_http::routes(gw.clone(), local)
        .merge(sse_legacy::routes(gw.clone(), local, connections.clone()))
        .merge(websocket::routes(gw.clone(), local, connections))
        // Every MCP route above, not the public documents below.
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn(remember_peer))
        .merge(auth::routes(gw))
}

tokio::task_local! {
    /// The TCP peer of the request being handled, for policy context.
    static PEER: Option<SocketAddr>;
}

/// Keeps the connection's peer address (`ConnectInfo`, when the server
/// was started with it) for the handler of the same request.
async fn remember_peer(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    PEER.scope(peer, next.run(request)).await
}

/// The caller behind an HTTP request or WebSocket upgrade.
/// (The `auth::require` layer in front of every MCP route has already
/// refused bad credentials with the route's own challenge and hands over
/// the principal it found.)
pub(crate) async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Principal, Reject> {
    if let Some(principal) = auth::authenticated() {
        return Ok(principal);
    }
    gw.auth
        .authenticate(headers)
        .await
        .map_err(|e| auth::reject(gw, headers, "", e))
}

/// DNS-rebinding protection: a browser page from another origin must not
/// reach the gateway. Requests without `Origin` (non-browser clients) pass.
pub(crate) fn check_origin(
    gw: &Gateway,
    headers: &HeaderMap,
    local: SocketAddr,
) -> Result<(), Reject> {
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok())
        && local.ip().is_loopback()
        && !is_loopback_authority(host)
    {
        // Bound to loopback, but asked for another name: a rebinding attack.
        return Err(Reject::Host(host.to_owned()));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    if gw.config.listen.allowed_origins.iter().any(|o| o == origin) {
        return Ok(());
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if local.ip().is_loopback() && is_loopback_authority(authority) {
        return Ok(());
    }
    Err(Reject::Origin(origin.to_owned()))
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The principal's view of a path's route (tenant, `[[routes]]`); `None`
/// when the path names a backend the principal may not reach: answer 404,
/// as for a backend that does not exist.
fn scope_route(
    gw: &Gateway,
    principal: &Principal,
    route: crate::router::Route,
    headers: &HeaderMap,
    endpoint: &str,
) -> Option<crate::router::Route> {
    let path = if route.key.is_empty() {
        format!("/{endpoint}")
    } else {
        format!("/servers/{}/{endpoint}", route.key)
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let mut route = gw.policy.scope_route(
        principal,
        route,
        crate::policy::routes::RequestFacts {
            origin,
            path: &path,
        },
    )?;
    route.remote_addr = PEER.try_with(|p| *p).ok().flatten().map(|p| p.to_string());
    Some(route)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_authorities() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "127.0.0.2",
        ] {
            assert!(super::is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example.com",
            "evil.example.com:8080",
            "10.0.0.1:80",
            "localhost.evil.com",
        ] {
            assert!(!super::is_loopback_authority(bad), "{bad}");
        }
    }
}
