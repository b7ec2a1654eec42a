//! admin: the operator's listener. `/healthz` (the process serves),
//! `/readyz` (every configured backend has been reached once), `/metrics`
//! (Prometheus text), `/admin/revocations` (revoke credentials by `jti`,
//! `sub`, `client_id` or `tenant`; open streams end at once), and the
//! gateway's JWKS at `/.well-known/jwks.json`. Never on the client listener.
//! With `[admin] token_env`, everything but health, readiness and the JWKS
//! needs `Authorization: Bearer <token>` (config refuses a non-loopback
//! admin address without one).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};

use crate::session::Gateway;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/admin/revocations",
            get(list_revocations).post(add_revocation),
        )
        .route("/admin/revocations/{id}", delete(lift_revocation))
        .route("/admin/reload", axum::routing::post(reload))
        .route(
            crate::frontend::auth::JWKS_PATH,
            get(crate::frontend::auth::gateway_jwks),
        )
        .with_state(gw)
}

fn authorized(gw: &Gateway, headers: &HeaderMap) -> bool {
    let Some(token) = &gw.config.admin.token else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "admin token required\n",
    )
        .into_response()
}

/// `POST /admin/reload`: re-reads the config's policies, tenants and
/// routes; an invalid set is refused (422) and the old one keeps running.
async fn reload(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !authorized(&gw, &headers) {
        return unauthorized();
    }
    match crate::policy::reload::run(&gw) {
        Ok(summary) => (
            StatusCode::OK,
            Json(serde_json::json!({"reloaded": true, "summary": summary})),
        )
            .into_response(),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"reloaded": false, "errors": errors})),
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if let Some(reason) = crate::state::not_ready(&gw) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response();
    }
    let missing: Vec<&str> = gw
        .router
        .backends()
        .iter()
        .filter(|b| !b.reached())
        .map(|b| b.name())
        .collect();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: backends not reached yet: {}\n",
                missing.join(", ")
            ),
        )
            .into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !authorized(&gw, &headers) {
        return unauthorized();
    }
    let mut text = gw.metrics.render();
    text.push_str(&format!(
        "# HELP mcp_gateway_backend_up Whether the backend has been reached.\n# TYPE mcp_gateway_backend_up gauge\n{}",
        gw.router
            .backends()
            .iter()
            .map(|b| format!("mcp_gateway_backend_up{{backend=\"{}\"}} {}\n", b.name(), u8::from(b.reached())))
            .collect::<String>()
    ));
    let (hits, misses) = gw.auth.token_cache_stats();
    text.push_str(&format!(
        "# HELP mcp_gateway_token_cache_lookups_total Verified-token cache lookups, by result.\n\
         # TYPE mcp_gateway_token_cache_lookups_total counter\n\
         mcp_gateway_token_cache_lookups_total{{result=\"hit\"}} {hits}\n\
         mcp_gateway_token_cache_lookups_total{{result=\"miss\"}} {misses}\n"
    ));
    gw.metrics.render_split(&mut text);
    gw.audit.render_metrics(&mut text);
    gw.limits.render_metrics(&mut text);
    if let Some(state) = &gw.state {
        text.push_str(&state.render_metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn list_revocations(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !authorized(&gw, &headers) {
        return unauthorized();
    }
    let list: Vec<serde_json::Value> = gw
        .auth
        .revocations
        .list()
        .iter()
        .map(|r| r.to_json())
        .collect();
    Json(serde_json::json!({ "revocations": list })).into_response()
}

/// `POST /admin/revocations` `{"jti"|"sub"|"client_id"|"tenant": "…",
/// "until": "<RFC 3339>"?}` → 201 with the stored entry.
async fn add_revocation(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&gw, &headers) {
        return unauthorized();
    }
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    match crate::state::revoke(&gw, &body).await {
        Ok(entry) => {
            tracing::info!(id = %entry.id, by = %entry.by, "credentials revoked");
            (StatusCode::CREATED, Json(entry.to_json())).into_response()
        }
        Err(crate::auth::revocation::StoreError::Invalid(e)) => {
            json_error(StatusCode::BAD_REQUEST, &e)
        }
        Err(crate::auth::revocation::StoreError::StateUnavailable) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, "state store unavailable")
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation not stored");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

async fn lift_revocation(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&gw, &headers) {
        return unauthorized();
    }
    match crate::state::lift(&gw, &id).await {
        Ok(true) => {
            tracing::info!(id = %id, "revocation lifted");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => json_error(StatusCode::NOT_FOUND, "no revocation with this id"),
        Err(crate::auth::revocation::StoreError::StateUnavailable) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, "state store unavailable")
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation not lifted");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}
