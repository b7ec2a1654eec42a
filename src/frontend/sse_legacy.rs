//! Legacy HTTP+SSE (2024-11-05) at `/sse` + `/messages`, and under
//! `/servers/{backend}`: `GET …/sse` opens the stream, whose first event
//! (`endpoint`) names the URI to POST messages to; every POST is answered
//! 202 and everything the gateway says (responses included) arrives on the
//! stream as `event: message`. One handshake-era session per stream,
//! ended when the stream ends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::connection::{Conn, End, Outbox, Registry};
use super::{Reject, authenticate, check_origin, sse};
use crate::mcp::{self, Envelope};
use crate::router::Route;
use crate::session::Gateway;

const TRANSPORT: &str = "sse";

#[derive(Clone)]
struct AppState {
    gw: Arc<Gateway>,
    local: SocketAddr,
    connections: Arc<Registry>,
}

pub(crate) fn routes(gw: Arc<Gateway>, local: SocketAddr, connections: Arc<Registry>) -> Router {
    let limit = gw.config.limits.max_body_bytes;
    let state = AppState {
        gw,
        local,
        connections,
    };
    Router::new()
        .route("/sse", get(open_default))
        .route("/servers/{backend}/sse", get(open_backend))
        .route("/messages", post(post_default))
        .route("/servers/{backend}/messages", post(post_backend))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The POST's session key: `session_id` (Python SDK) or `sessionId`
/// (TypeScript SDK).
#[derive(serde::Deserialize)]
struct SessionQuery {
    session_id: Option<String>,
    #[serde(rename = "sessionId")]
    session_id_camel: Option<String>,
}

fn unknown_backend() -> Response {
    (StatusCode::NOT_FOUND, "unknown backend").into_response()
}

async fn open_default(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let route = s.gw.router.default_route();
    open(s, route, headers).await
}

async fn open_backend(
    State(s): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
) -> Response {
    match s.gw.router.backend_route(&backend) {
        Some(route) => open(s, route, headers).await,
        None => unknown_backend(),
    }
}

async fn post_default(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    let route = s.gw.router.default_route();
    post_message(s, route, headers, query, body).await
}

async fn post_backend(
    State(s): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    match s.gw.router.backend_route(&backend) {
        Some(route) => post_message(s, route, headers, query, body).await,
        None => unknown_backend(),
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn open(s: AppState, route: Route, headers: HeaderMap) -> Response {
    if let Err(r) = check_origin(&s.gw, &headers, s.local) {
        return r.into_response();
    }
    let principal = match authenticate(&s.gw, &headers).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let Some(route) = super::scope_route(&s.gw, &principal, route, &headers, "sse") else {
        return unknown_backend();
    };
    // EventSource sends `Accept: text/event-stream`; clients that send no
    // Accept at all are served too.
    if let Some(accept) = header_str(&headers, header::ACCEPT) {
        let accept = accept.to_ascii_lowercase();
        if !accept.contains("text/event-stream") && !accept.contains("*/*") {
            return Reject::Accept("text/event-stream").into_response();
        }
    }
    if let Err(r) = s
        .connections
        .admit(&principal, s.gw.config.limits.max_sessions_per_principal)
    {
        return r.into_response();
    }
    // One slot more than the message queue: the endpoint event.
    let queue = s.gw.config.limits.max_queued_messages;
    let (response, body) = sse::response(&[], queue + 1, s.gw.metrics.stream_opened(TRANSPORT));
    let conn = Conn::new(
        s.gw.clone(),
        principal,
        route,
        TRANSPORT,
        Outbox::Sse(body.clone()),
    );
    let endpoint = endpoint_event(&endpoint_uri(&conn.route, &conn.id));
    if sse::offer(&body, endpoint).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    s.connections.insert(&conn);
    tracing::info!(conn.id = %conn.id, route = %conn.route.key, "legacy SSE stream opened");
    tokio::spawn(keep(
        s.connections.clone(),
        conn,
        body,
        s.gw.config.listen.sse_keepalive,
    ));
    response
}

/// Keep-alives until the connection ends; a client gone ends it.
async fn keep(
    connections: Arc<Registry>,
    conn: Arc<Conn>,
    body: tokio::sync::mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
    every: std::time::Duration,
) {
    let ended = conn.ended_token();
    let mut tick = sse::interval(every);
    loop {
        tokio::select! {
            _ = ended.cancelled() => break,
            _ = body.closed() => {
                conn.end(End::ClientClosed);
                break;
            }
            _ = tick.tick() => conn.keepalive(),
        }
    }
    // The last sender goes with `finish`: what is queued still reaches a
    // client that reads, then the stream ends.
    drop(body);
    connections.remove(&conn.id);
    conn.finish();
}

/// Where the client POSTs, relative to the gateway's origin (clients
/// resolve it against the stream's URL and keep it on that origin).
fn endpoint_uri(route: &Route, id: &str) -> String {
    if route.key.is_empty() {
        format!("/messages?session_id={id}")
    } else {
        // Backend names are [A-Za-z0-9_-]: nothing to escape.
        format!("/servers/{}/messages?session_id={id}", route.key)
    }
}

fn endpoint_event(uri: &str) -> Bytes {
    Bytes::from(format!("event: endpoint\ndata: {uri}\n\n"))
}

async fn post_message(
    s: AppState,
    route: Route,
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    if let Err(r) = check_origin(&s.gw, &headers, s.local) {
        return r.into_response();
    }
    let content_type = header_str(&headers, header::CONTENT_TYPE).unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Reject::ContentType.into_response();
    }
    let principal = match authenticate(&s.gw, &headers).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let id = query
        .ok()
        .and_then(|Query(q)| q.session_id.or(q.session_id_camel))
        .filter(|id| !id.is_empty());
    let Some(id) = id else {
        return Reject::MissingSessionParam.into_response();
    };
    // Unknown, ended, another principal's or another route's connection →
    // 404: the client opens a new stream.
    let conn = s
        .connections
        .get(&id)
        .filter(|c| !c.is_ended() && c.principal == principal && c.route.key == route.key);
    let Some(conn) = conn else {
        return Reject::UnknownSession.into_response();
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return Reject::Envelope(mcp::EnvelopeError::Parse("body is not UTF-8".into()))
            .into_response();
    };
    if text.trim_start().starts_with('[') {
        return Reject::BatchOnConnection.into_response();
    }
    let env = match Envelope::parse(text) {
        Ok(env) => env,
        Err(e) => return Reject::Envelope(e).into_response(),
    };
    conn.receive(env).await;
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_on_the_stream_route() {
        let route = |key: &str| Route {
            key: key.into(),
            backends: Vec::new(),
            prefixed: false,
            selected_by: None,
            origin: None,
            remote_addr: None,
        };
        assert_eq!(
            endpoint_uri(&route(""), "ab12"),
            "/messages?session_id=ab12"
        );
        assert_eq!(
            endpoint_uri(&route("git-hub_2"), "ab12"),
            "/servers/git-hub_2/messages?session_id=ab12"
        );
        assert_eq!(
            endpoint_event("/messages?session_id=ab12"),
            "event: endpoint\ndata: /messages?session_id=ab12\n\n"
        );
    }
}
