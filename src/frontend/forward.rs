//! Forwarding a request to the replica that owns its session (a session
//! with a stdio process, or an SSE/WebSocket backend, lives there only).
//! In: the request as the client sent it. Out: the owner's answer, streamed
//! back as it comes (SSE included). The client's credentials go along: the
//! replicas are one trust domain, and the owner authenticates the request
//! again. The request is marked, so it is never forwarded twice.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Reject;
use crate::session::{FORWARDED_HEADER, Gateway};

/// Headers of one hop only (RFC 9110 §7.6.1), and the ones the HTTP
/// client sets itself.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Sends the request to the owner at `addr` and streams its answer back.
/// An owner that cannot be reached is gone: 404, so the client starts a
/// new session (never served by another replica's process).
pub async fn to_owner(
    gw: &Gateway,
    owner: &str,
    addr: &str,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!("http://{addr}{path}");
    let mut req = gw.forward_http.request(method.clone(), &url);
    for (name, value) in headers {
        if !hop_by_hop(name) && name.as_str() != FORWARDED_HEADER {
            req = req.header(name, value);
        }
    }
    let replica = gw.state.as_ref().map(|s| s.replica_id()).unwrap_or("");
    req = req.header(FORWARDED_HEADER, replica);
    if !body.is_empty() {
        req = req.body(body);
    }
    gw.metrics
        .requests_forwarded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(owner, http.method = %method, path, "request forwarded to the session's owner replica");
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(owner, error = %e, "owner replica unreachable; the session is gone");
            return Reject::UnknownSession.into_response();
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    let mut response = (status, Body::from_stream(resp.bytes_stream())).into_response();
    *response.headers_mut() = out;
    response
}
