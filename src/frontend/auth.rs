//! Authentication at the HTTP edge, shared by every front door: the one
//! mapping from `AuthError` to status, JSON-RPC code and `WWW-Authenticate`
//! challenge (MCP authorization, RFC 6750, RFC 9728); a middleware in front
//! of every MCP route (`/mcp`, `/servers/{b}/mcp`, `/sse`, `/messages`,
//! `/ws`) that refuses credentials in the query string, authenticates,
//! checks the route's required scopes, and ends SSE responses when the
//! credential that opened them expires or is revoked; and the public
//! documents: RFC 9728 protected resource metadata and the gateway's JWKS.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;

use super::Reject;
use crate::auth::{AuthError, Principal};
use crate::mcp;
use crate::session::Gateway;

/// The well-known path of RFC 9728 metadata.
pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";
/// Where the gateway's own public keys (for `mint_token` backends) are served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A refused credential, with what the challenge needs.
#[derive(Debug)]
pub struct Challenge {
    pub error: AuthError,
    /// The metadata URL for `resource_metadata` (token modes only).
    pub resource_metadata: Option<String>,
    /// The scopes the route needs, named in the challenge.
    pub scope: Vec<String>,
}

impl std::fmt::Display for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The RFC 6750 `error` code of a refusal, from its status; `None` when
/// credentials were simply absent (RFC 6750 §3.1: no error code then) or
/// the gateway could not check them (503).
fn oauth_error(e: &AuthError) -> Option<&'static str> {
    if matches!(e, AuthError::Missing | AuthError::UnsupportedScheme) {
        return None;
    }
    match status_and_code(e).0 {
        StatusCode::UNAUTHORIZED => Some("invalid_token"),
        StatusCode::BAD_REQUEST => Some("invalid_request"),
        StatusCode::FORBIDDEN => Some("insufficient_scope"),
        _ => None,
    }
}

/// The one mapping from an auth refusal to HTTP status and JSON-RPC code
/// (CONTRACT.md: 401 + `WWW-Authenticate`, 403 insufficient_scope).
fn status_and_code(e: &AuthError) -> (StatusCode, i64) {
    match e {
        AuthError::Missing
        | AuthError::UnsupportedScheme
        | AuthError::TooLarge { .. }
        | AuthError::Malformed(_)
        | AuthError::Algorithm(_)
        | AuthError::UnknownKey { .. }
        | AuthError::Signature
        | AuthError::Expired { .. }
        | AuthError::NotYetValid { .. }
        | AuthError::IssuedInFuture { .. }
        | AuthError::Issuer
        | AuthError::Audience
        | AuthError::MissingClaim(_)
        | AuthError::InvalidClaim { .. }
        | AuthError::DelegationTooDeep { .. }
        | AuthError::Inactive
        | AuthError::InvalidApiKey
        | AuthError::Revoked(_) => (StatusCode::UNAUTHORIZED, mcp::code::UNAUTHENTICATED),
        AuthError::Ambiguous | AuthError::TokenInQuery(_) => {
            (StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST)
        }
        AuthError::InsufficientScope { .. } => (StatusCode::FORBIDDEN, mcp::code::FORBIDDEN),
        // Fail closed, and say it is the gateway's side, not the token.
        AuthError::KeysUnavailable(_)
        | AuthError::IntrospectionUnavailable(_)
        | AuthError::RevocationsUnavailable(_)
        | AuthError::StateUnavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, mcp::code::UNAUTHENTICATED)
        }
    }
}

impl Challenge {
    /// HTTP status and JSON-RPC code of the refusal.
    pub fn parts(&self) -> (StatusCode, i64) {
        status_and_code(&self.error)
    }

    /// The `WWW-Authenticate` value.
    pub fn www_authenticate(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        if let Some(code) = oauth_error(&self.error) {
            params.push(format!("error=\"{code}\""));
        }
        let scope = match &self.error {
            AuthError::InsufficientScope { required } => required.clone(),
            _ => self.scope.clone(),
        };
        if !scope.is_empty() {
            params.push(format!("scope=\"{}\"", scope.join(" ")));
        }
        if let Some(url) = &self.resource_metadata {
            params.push(format!("resource_metadata=\"{url}\""));
        }
        if oauth_error(&self.error).is_some() {
            // Quoted-string: no quotes or backslashes inside.
            let description = self.error.to_string().replace(['"', '\\'], "'");
            params.push(format!("error_description=\"{description}\""));
        }
        let scheme = if self.resource_metadata.is_some() {
            "Bearer"
        } else {
            // API keys only: no OAuth to point at.
            "ApiKey"
        };
        if params.is_empty() {
            format!("{scheme} realm=\"mcp-gateway\"")
        } else {
            format!("{scheme} {}", params.join(", "))
        }
    }

    /// Adds the challenge headers to a refusal response.
    pub fn decorate(&self, response: &mut Response) {
        let (status, _) = self.parts();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return;
        }
        if let Ok(value) = HeaderValue::from_str(&self.www_authenticate()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
}

/// `https://gw` (configured) or `http://` + the request's Host.
fn base_url(gw: &Gateway, headers: &HeaderMap) -> String {
    if let Some(url) = &gw.auth.config().public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The metadata URL for the resource at `path` (`/mcp`, …); `None` when no
/// OAuth token mode is on.
pub fn resource_metadata_url(gw: &Gateway, headers: &HeaderMap, path: &str) -> Option<String> {
    gw.auth
        .oauth()
        .then(|| format!("{}{PRM_PATH}{path}", base_url(gw, headers)))
}

/// The backend a path is scoped to (`/servers/{b}/…`), if any.
fn route_backend(path: &str) -> Option<&str> {
    path.strip_prefix("/servers/")?.split('/').next()
}

/// The scopes the route at `path` requires.
pub fn required_scopes(gw: &Gateway, path: &str) -> Vec<String> {
    match route_backend(path).and_then(|name| gw.router.backend_route(name)) {
        Some(route) => gw
            .auth
            .required_scopes(route.backends.iter().map(|b| &b.config)),
        None => gw
            .auth
            .required_scopes(gw.router.default_route().backends.iter().map(|b| &b.config)),
    }
}

/// A refusal for `path`, with its challenge.
pub fn reject(gw: &Gateway, headers: &HeaderMap, path: &str, error: AuthError) -> Reject {
    if let Some(detail) = error.detail() {
        tracing::warn!(reason = %error, detail, "authentication unavailable");
    } else {
        tracing::debug!(reason = %error, path, "credentials refused");
    }
    let scope = required_scopes(gw, path);
    Reject::Auth(Box::new(Challenge {
        error,
        resource_metadata: resource_metadata_url(gw, headers, path),
        scope,
    }))
}

/// Authenticates a request to `path` and checks the route's scopes.
pub async fn authenticate_for(
    gw: &Gateway,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<Principal, Reject> {
    let path = uri.path();
    if !gw.auth.enabled() {
        return Ok(Principal::anonymous());
    }
    if let Some(param) = uri.query().and_then(|q| gw.auth.credential_query_param(q)) {
        return Err(reject(
            gw,
            headers,
            path,
            AuthError::TokenInQuery(param.to_owned()),
        ));
    }
    let principal = gw
        .auth
        .authenticate(headers)
        .await
        .map_err(|e| reject(gw, headers, path, e))?;
    let required = required_scopes(gw, path);
    let missing: Vec<String> = required
        .iter()
        .filter(|s| !principal.has_scope(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        // Name every scope the route needs at once (MCP 2026-07-28), so the
        // client steps up in one round.
        return Err(reject(
            gw,
            headers,
            path,
            AuthError::InsufficientScope { required },
        ));
    }
    Ok(principal)
}

tokio::task_local! {
    /// The principal the `require` layer authenticated, for the handler of
    /// the same request (it runs inside this scope, on the same task).
    static AUTHENTICATED: Principal;
}

/// The principal `require` authenticated for the request being handled.
pub fn authenticated() -> Option<Principal> {
    AUTHENTICATED.try_with(Principal::clone).ok()
}

/// Middleware in front of every MCP route: refusals get their
/// route-specific challenge, the handler gets the principal (`authenticated`,
/// through `frontend::authenticate`), and event streams are bounded by the
/// credential that opened them.
pub async fn require(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    if !gw.auth.enabled() {
        return next.run(request).await;
    }
    let principal = match authenticate_for(&gw, request.uri(), request.headers()).await {
        Ok(p) => p,
        Err(r) => {
            audit_refusal(&gw, request.method(), request.uri(), request.headers(), &r).await;
            let unread_body = request.version() <= axum::http::Version::HTTP_11
                && (request.headers().contains_key(header::TRANSFER_ENCODING)
                    || request
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .is_some_and(|n| n.as_bytes() != b"0"));
            let mut response = r.into_response();
            // The body of a refused request is never read, and hyper closes
            // a connection whose body did not arrive with its headers. Say
            // so, or a client retrying with a token (the OAuth flow) may
            // send the retry down the closing connection.
            if unread_body {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    let response = AUTHENTICATED
        .scope(principal.clone(), next.run(request))
        .await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        return response;
    }
    // An event stream lives no longer than its credential: it ends within
    // moments of a revocation or of the token's expiry. Ending the body
    // drops the stream's sender, which ends (and for stateless calls
    // cancels) the work behind it.
    let invalidated = gw.auth.invalidated(principal);
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().take_until(Box::pin(async move {
        let reason = invalidated.await;
        tracing::info!(reason = %reason, "closing an event stream: its credentials are no longer valid");
    }));
    Response::from_parts(parts, Body::from_stream(stream))
}

/// RFC 9728 metadata and the gateway's JWKS on the client listener.
pub fn routes(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(PRM_PATH, get(metadata_root))
        .route(&format!("{PRM_PATH}/{{*path}}"), get(metadata_for_path))
        .route(JWKS_PATH, get(gateway_jwks))
        .with_state(gw)
}

async fn metadata_root(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    // The root document describes the gateway's resource: the first audience.
    let resource = gw
        .auth
        .config()
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| format!("{}/mcp", base_url(&gw, &headers)));
    metadata(&gw, resource, "/mcp")
}

async fn metadata_for_path(
    State(gw): State<Arc<Gateway>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/{}", path.trim_start_matches('/'));
    let resource = format!("{}{path}", base_url(&gw, &headers));
    metadata(&gw, resource, &path)
}

/// The metadata document (RFC 9728 §2) for the resource at `path`.
fn metadata(gw: &Gateway, resource: String, path: &str) -> Response {
    if !gw.auth.oauth() {
        return (StatusCode::NOT_FOUND, "authentication is off\n").into_response();
    }
    let config = gw.auth.config();
    let mut doc = serde_json::json!({
        "resource": resource,
        "authorization_servers": config.authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-gateway",
    });
    let scopes = match &config.scopes_supported {
        Some(s) => s.clone(),
        None => required_scopes(gw, path),
    };
    if !scopes.is_empty() {
        doc["scopes_supported"] = scopes.into();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        doc.to_string(),
    )
        .into_response()
}

/// The public keys of every `mint_token` backend, as one JWKS.
pub async fn gateway_jwks(State(gw): State<Arc<Gateway>>) -> Response {
    let keys = gw
        .router
        .backends()
        .iter()
        .filter_map(|b| b.minter.as_ref())
        .map(|m| m.key())
        .collect::<Vec<_>>();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        crate::auth::mint::jwks(keys).to_string(),
    )
        .into_response()
}

/// The audit record of a request refused at the edge, with whatever
/// identity could be read: the verified principal when only scopes were
/// missing, else the unverified `sub`/tenant/`client_id` of a JWT (never
/// the token itself).
async fn audit_refusal(
    gw: &Gateway,
    http_method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    refusal: &Reject,
) {
    use crate::audit::{Outcome, Record};
    let path = uri.path();
    let (_, code) = refusal.parts();
    let principal = match refusal {
        Reject::Auth(c) if matches!(c.error, AuthError::InsufficientScope { .. }) => {
            gw.auth.authenticate(headers).await.ok()
        }
        _ => None,
    }
    .unwrap_or_else(|| unverified_principal(gw, headers));
    let transport = if path.ends_with("/ws") {
        "websocket"
    } else if path.ends_with("/sse") || path.ends_with("/messages") {
        "sse"
    } else {
        "streamable_http"
    };
    let method = headers
        .get("mcp-method")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let record = Record {
        request_id: None,
        session_id: None,
        transport,
        principal,
        call: mcp::classify(&method, None),
        method,
        backend: None,
        decision: crate::policy::Decision {
            allow: false,
            policies: Vec::new(),
            reason: format!("unauthenticated {http_method} {path}: {refusal}"),
        },
        arguments: None,
        origin: headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        remote_addr: None,
    };
    tracing::info!(
        transport,
        sub = %record.principal.sub,
        path,
        reason = %refusal,
        "refused at the edge"
    );
    gw.metrics
        .observe_decided(&record.method, "", "deny", "error");
    gw.audit.record(&record, Outcome::Error(code), 0).await;
}

/// The claims a bearer JWT says about its caller, unverified (marked by
/// `auth = "none"` in the record).
fn unverified_principal(gw: &Gateway, headers: &HeaderMap) -> Principal {
    use base64::Engine as _;
    let mut principal = Principal::new(
        "unauthenticated".into(),
        "none",
        crate::auth::Credential::default(),
    );
    let claims = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(|token| token.split('.').nth(1))
        .filter(|payload| payload.len() <= 8192)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    if let Some(claims) = claims {
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        if let Some(sub) = text("sub") {
            principal.sub = sub;
        }
        principal.tenant = text(&gw.auth.config().tenant_claim);
        principal.client_id = text("client_id").or_else(|| text("azp"));
    }
    principal
}
