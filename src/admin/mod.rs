//! admin: the operator's listener. `/healthz` (the process serves),
//! `/readyz` (every configured backend has been reached once), `/metrics`
//! (Prometheus text). Never on the client listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::session::Gateway;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Binds nothing itself: `serve` binds and passes the listener, so the
/// bound address can be reported before serving.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
