//! Streamable HTTP at `/mcp` and `/servers/{backend}/mcp`, every revision:
//! handshake-era sessions (`Mcp-Session-Id`, GET stream, DELETE) and
//! stateless 2026-07-28 requests (routing headers checked against the body).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Reject, authenticate, check_origin, forward, sse};
use crate::auth::Principal;
use crate::mcp::{self, Envelope, Era, Kind};
use crate::router::Route;
use crate::session::{
    Detached, FORWARDED_HEADER, Gateway, PendingCall, Resolved, Session, SessionError,
    backend_error_response,
};

const TRANSPORT: &str = "streamable_http";

#[derive(Clone)]
struct AppState {
    gw: Arc<Gateway>,
    local: SocketAddr,
}

pub fn routes(gw: Arc<Gateway>, local: SocketAddr) -> Router {
    let limit = gw.config.limits.max_body_bytes;
    let state = AppState { gw, local };
    Router::new()
        .route(
            "/mcp",
            get(get_default).post(post_default).delete(delete_default),
        )
        .route(
            "/servers/{backend}/mcp",
            get(get_backend).post(post_backend).delete(delete_backend),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn backend_route(state: &AppState, name: &str) -> Result<Route, Box<Response>> {
    state
        .gw
        .router
        .backend_route(name)
        .ok_or_else(|| Box::new((StatusCode::NOT_FOUND, "unknown backend").into_response()))
}

async fn post_default(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let route = s.gw.router.default_route();
    post(s, route, headers, body).await
}

async fn post_backend(
    State(s): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match backend_route(&s, &backend) {
        Ok(route) => post(s, route, headers, body).await,
        Err(r) => *r,
    }
}

async fn get_default(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let route = s.gw.router.default_route();
    get_stream(s, route, headers).await
}

async fn get_backend(
    State(s): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
) -> Response {
    match backend_route(&s, &backend) {
        Ok(route) => get_stream(s, route, headers).await,
        Err(r) => *r,
    }
}

async fn delete_default(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let route = s.gw.router.default_route();
    delete(s, route, headers).await
}

async fn delete_backend(
    State(s): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
) -> Response {
    match backend_route(&s, &backend) {
        Ok(route) => delete(s, route, headers).await,
        Err(r) => *r,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_post_headers(headers: &HeaderMap) -> Result<(), Reject> {
    let content_type = header_str(headers, "content-type").unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(Reject::ContentType);
    }
    let accept = header_str(headers, "accept")
        .unwrap_or("")
        .to_ascii_lowercase();
    let any = accept.contains("*/*");
    if !any && !accept.contains("application/json") {
        return Err(Reject::Accept("application/json and text/event-stream"));
    }
    if !any && !accept.contains("text/event-stream") {
        return Err(Reject::Accept("application/json and text/event-stream"));
    }
    Ok(())
}

/// A POST of a session another replica serves (or of an answer another
/// replica waits for), sent on to that replica as it came.
async fn forward_post(
    s: &AppState,
    replica: &str,
    addr: &str,
    route: &Route,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = route_path(route);
    forward::to_owner(
        &s.gw,
        replica,
        addr,
        axum::http::Method::POST,
        &path,
        headers,
        body,
    )
    .await
}

async fn post(s: AppState, route: Route, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) =
        check_origin(&s.gw, &headers, s.local).and_then(|_| check_post_headers(&headers))
    {
        return r.into_response();
    }
    let principal = match Box::pin(authenticate(&s.gw, &headers)).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let Some(route) = super::scope_route(&s.gw, &principal, route, &headers, "mcp") else {
        return (StatusCode::NOT_FOUND, "unknown backend").into_response();
    };
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => {
            return Reject::Envelope(mcp::EnvelopeError::Parse("body is not UTF-8".into()))
                .into_response();
        }
    };
    if text.trim_start().starts_with('[') {
        return Box::pin(post_batch(s, principal, route, headers, text)).await;
    }
    let mut env = match Envelope::parse(text) {
        Ok(env) => env,
        Err(e) => return Reject::Envelope(e).into_response(),
    };
    // A `traceparent` header is the client's trace context when `_meta`
    // carries none.
    if s.gw.tracer.enabled()
        && let Some(tp) = header_str(&headers, crate::trace::TRACEPARENT)
        && crate::trace::traceparent_in(env.params.as_deref()).is_none()
    {
        env.params = Some(crate::trace::with_traceparent(env.params.as_deref(), tp));
    }
    let session_id = header_str(&headers, "mcp-session-id").map(str::to_owned);
    if env.method.as_deref() == Some("initialize") && env.kind() == Kind::Request {
        return Box::pin(initialize(s, principal, route, env)).await;
    }
    match session_id {
        Some(id) => {
            let session = match session_for(&s.gw, &id, &principal, Some(&route), &headers).await {
                Ok(Resolved::Local(session)) => session,
                Ok(Resolved::Forward { owner, addr }) => {
                    return forward_post(&s, &owner, &addr, &route, &headers, body).await;
                }
                Err(r) => return r.into_response_with_id(env.id.clone()),
            };
            // An answer to a server→client request another replica relayed
            // goes to that replica, which waits for it.
            if env.kind() == Kind::Response
                && !headers.contains_key(FORWARDED_HEADER)
                && let Some(replica) = session.answer_waits_elsewhere(&env)
                && let Some(addr) = replica_addr(&s.gw, &replica).await
            {
                return forward_post(&s, &replica, &addr, &route, &headers, body).await;
            }
            post_in_session(s, session, env).await
        }
        None if is_stateless(&headers, &env) => {
            post_stateless(s, principal, route, headers, env).await
        }
        None => Reject::MissingSession.into_response_with_id(env.id),
    }
}

/// The session a request names: held here, adopted from its sealed id, or
/// owned by another replica (forwarded). `route` is the caller's scoped
/// route (`None`: only a session held here or forwarded).
async fn session_for(
    gw: &Arc<Gateway>,
    id: &str,
    principal: &Principal,
    route: Option<&Route>,
    headers: &HeaderMap,
) -> Result<Resolved, Reject> {
    // Unknown session id → 404 so the client starts a new session (MCP
    // Streamable HTTP); a session of another principal is unknown too.
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    let resolved = gw
        .resolve(id, principal, route, forwarded)
        .await
        .map_err(|_| Reject::UnknownSession)?;
    if let Resolved::Local(_) = &resolved
        && let Some(v) = header_str(headers, "mcp-protocol-version")
        && !mcp::is_handshake_version(v)
    {
        return Err(Reject::BadVersionHeader(v.to_owned()));
    }
    Ok(resolved)
}

/// Where a live replica is reached (`None`: gone, or no shared state).
async fn replica_addr(gw: &Gateway, replica: &str) -> Option<String> {
    let state = gw.state.as_ref()?;
    match state.replica_addr(replica).await {
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!(error = %e, replica, "replica registry unavailable");
            None
        }
    }
}

/// The path a route is served at (a forwarded request keeps it).
fn route_path(route: &Route) -> String {
    if route.key.is_empty() {
        "/mcp".to_owned()
    } else {
        format!("/servers/{}/mcp", route.key)
    }
}

/// A request without a session that announces 2026-07-28 in its headers or
/// its `_meta`.
fn is_stateless(headers: &HeaderMap, env: &Envelope) -> bool {
    if header_str(headers, "mcp-protocol-version").is_some_and(|v| !mcp::is_handshake_version(v)) {
        return true;
    }
    mcp::has_meta_version(env.params.as_deref())
}

async fn initialize(s: AppState, principal: Principal, route: Route, env: Envelope) -> Response {
    match s.gw.initialize(principal, route, TRANSPORT, &env).await {
        Ok((session, response)) => {
            tracing::info!(session.id = %session.id, protocol_version = %session.client.protocol_version, "session opened");
            let mut r = json_response(StatusCode::OK, &response);
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            r
        }
        Err(SessionError::TooMany { limit }) => {
            Reject::TooManySessions(limit).into_response_with_id(env.id)
        }
        Err(SessionError::Backend(e)) => {
            json_response(StatusCode::OK, &backend_error_response(env.id, &e))
        }
        Err(SessionError::NotFound) => Reject::UnknownSession.into_response_with_id(env.id),
        Err(SessionError::Forbidden(decision)) => {
            json_response(StatusCode::OK, &decision.forbidden(env.id))
        }
    }
}

async fn post_in_session(s: AppState, session: Arc<Session>, env: Envelope) -> Response {
    match env.kind() {
        Kind::Notification => {
            Box::pin(session.handle_notification(env)).await;
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Response => {
            session.handle_response(env);
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Request => {
            let (tx, rx) = mpsc::channel(s.gw.config.limits.max_queued_messages);
            // Handshake era: a disconnect is not a cancellation, so a call
            // whose exchange ends early goes on as its own task (cancelled
            // only by notifications/cancelled).
            let call = Detached::new(session.start_request(env, tx));
            respond(&s.gw, call, rx, Era::Handshake).await
        }
    }
}

/// 2026-07-28: every request stands alone; the routing headers must agree
/// with the body before anything else looks at it.
async fn post_stateless(
    s: AppState,
    principal: Principal,
    route: Route,
    headers: HeaderMap,
    env: Envelope,
) -> Response {
    if let Err(r) =
        check_stateless(&headers, &env).and_then(|_| check_param_headers(&route, &headers, &env))
    {
        return r.into_response_with_id(env.id);
    }
    match env.kind() {
        Kind::Response => Reject::StatelessResponse.into_response_with_id(env.id),
        Kind::Notification => StatusCode::ACCEPTED.into_response(),
        Kind::Request if env.method.as_deref() == Some("server/discover") => {
            let response = Box::pin(s.gw.discover(&principal, &route, &env)).await;
            json_response(stateless_status(&response), &response)
        }
        Kind::Request => {
            let context =
                Box::pin(s.gw.stateless_context(&principal, &route, env.params.as_deref())).await;
            let (tx, rx) = mpsc::channel(s.gw.config.limits.max_queued_messages);
            // Polled by this exchange: closing the response stream drops,
            // and so cancels, the call (2026-07-28).
            let call: PendingCall = Box::pin(s.gw.tracker.track_future(async move {
                Some(Box::pin(context.handle_request(env, tx)).await)
            }));
            respond(&s.gw, call, rx, Era::Stateless).await
        }
    }
}

fn check_stateless(headers: &HeaderMap, env: &Envelope) -> Result<(), Reject> {
    let probe = env
        .params
        .as_deref()
        .map(mcp::ParamsProbe::parse)
        .unwrap_or_default();
    let version = probe
        .meta
        .as_ref()
        .and_then(|m| m.protocol_version.as_ref());
    let version = match version {
        Some(serde_json::Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(Reject::MissingMeta(
                "_meta protocol version must be a string",
            ));
        }
        None if env.kind() == Kind::Request => {
            return Err(Reject::MissingMeta(
                "params._meta is missing io.modelcontextprotocol/protocolVersion",
            ));
        }
        None => return Ok(()),
    };
    if version != mcp::V2026 {
        return Err(Reject::UnsupportedVersion { requested: version });
    }
    for name in ["mcp-protocol-version", "mcp-method", "mcp-name"] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(Reject::HeaderMismatch(format!("duplicate {name} header")));
        }
    }
    match header_str(headers, "mcp-protocol-version") {
        Some(v) if v == version => {}
        Some(v) => {
            return Err(Reject::HeaderMismatch(format!(
                "MCP-Protocol-Version {v:?} does not match the body"
            )));
        }
        None => {
            return Err(Reject::HeaderMismatch(
                "missing MCP-Protocol-Version header".into(),
            ));
        }
    }
    if env.kind() != Kind::Request {
        return Ok(());
    }
    let method = env.method.as_deref().unwrap_or("");
    match header_str(headers, "mcp-method") {
        Some(m) if m == method => {}
        Some(m) => {
            return Err(Reject::HeaderMismatch(format!(
                "Mcp-Method {m:?} does not match the body"
            )));
        }
        None => return Err(Reject::HeaderMismatch("missing Mcp-Method header".into())),
    }
    if let Some(param) = mcp::Method::parse(method).name_param() {
        let body_value = if param == "uri" {
            probe.uri.clone()
        } else {
            probe.name.clone()
        };
        let header_value = header_str(headers, "mcp-name").map(decode_header_value);
        match (body_value, header_value) {
            (Some(b), Some(Some(h))) if b == h => {}
            (_, None) => return Err(Reject::HeaderMismatch("missing Mcp-Name header".into())),
            _ => {
                return Err(Reject::HeaderMismatch(
                    "Mcp-Name does not match the body".into(),
                ));
            }
        }
    }
    Ok(())
}

/// `Mcp-Param-*` headers must agree with the `tools/call` arguments the
/// tool declares with `x-mcp-header` (known once its backend's tools/list
/// has passed through the gateway).
fn check_param_headers(route: &Route, headers: &HeaderMap, env: &Envelope) -> Result<(), Reject> {
    if env.method.as_deref() != Some("tools/call") {
        return Ok(());
    }
    let Some(name) = env
        .params
        .as_deref()
        .map(mcp::NameProbe::parse)
        .and_then(|p| p.name)
    else {
        return Ok(());
    };
    let Some((index, own)) = route.resolve_tool(&name) else {
        return Ok(());
    };
    let Some(backend) = route.backends.get(index) else {
        return Ok(());
    };
    if !backend.tool_headers.known() {
        return Ok(());
    }
    let declared = backend.tool_headers.get(&own);
    if declared.is_empty() {
        return Ok(());
    }
    // Only now, for a tool that declares routing headers, are the
    // arguments materialized.
    let params = mcp::meta::params_object(env.params.as_deref());
    let mut duplicate = None;
    let result = crate::backend::params::check(&declared, params.get("arguments"), |header| {
        let name = format!("mcp-param-{}", header.to_ascii_lowercase());
        let mut values = headers.get_all(name.as_str()).iter();
        let first = values.next()?;
        if values.next().is_some() {
            duplicate = Some(name.clone());
        }
        first.to_str().ok().and_then(decode_header_value)
    });
    if let Some(name) = duplicate {
        return Err(Reject::HeaderMismatch(format!("duplicate {name} header")));
    }
    result.map_err(Reject::HeaderMismatch)
}

/// Decodes the `=?base64?…?=` form of a routing header value.
fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// 2026-07-28 maps some errors to HTTP statuses (unknown method → 404).
fn stateless_status(response: &Envelope) -> StatusCode {
    match response.error_code() {
        Some(mcp::code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(mcp::code::RATE_LIMITED) => StatusCode::TOO_MANY_REQUESTS,
        // A decision that needed the shared state store (rate limits) while
        // it is unreachable: 503, as the credential check answers.
        Some(mcp::code::UNAUTHENTICATED)
            if error_reason(response).as_deref() == Some(crate::state::UNAVAILABLE_REASON) =>
        {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Some(
            mcp::code::INVALID_PARAMS
            | mcp::code::HEADER_MISMATCH
            | mcp::code::MISSING_CLIENT_CAPABILITY
            | mcp::code::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// `error.data.reason` of an error answer.
fn error_reason(env: &Envelope) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&env.to_json())
        .ok()?
        .pointer("/error/data/reason")?
        .as_str()
        .map(str::to_owned)
}

/// `Retry-After` (whole seconds, rounded up) from `data.retry_after_ms`
/// of a -32005 answer refused as a whole HTTP request (429).
fn set_retry_after(response: &mut Response, env: &Envelope) {
    let ms = serde_json::from_str::<serde_json::Value>(&env.to_json())
        .ok()
        .and_then(|v| v["error"]["data"]["retry_after_ms"].as_u64())
        .unwrap_or(1000);
    if let Ok(v) = axum::http::HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

fn json_response(status: StatusCode, env: &Envelope) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        env.to_json(),
    )
        .into_response()
}

/// Answers with plain JSON when the call finishes without sending anything
/// else first; otherwise switches to an SSE stream carrying the call's
/// notifications and server requests, keep-alives, then the response.
///
/// The call is polled here, then by the stream's task; when that task ends
/// early (the client went away) it drops the call, which cancels it unless
/// the call is [`Detached`].
async fn respond<C>(
    gw: &Arc<Gateway>,
    mut call: C,
    mut rx: mpsc::Receiver<Envelope>,
    era: Era,
) -> Response
where
    C: Future<Output = Option<Envelope>> + Send + Unpin + 'static,
{
    let keepalive = gw.config.listen.sse_keepalive;
    let first = tokio::select! {
        done = &mut call => {
            // Anything queued before the response means a stream after all.
            match rx.try_recv() {
                Ok(first) => Some((first, Some(done))),
                Err(_) => {
                    return match done {
                        Some(response) => {
                            let status = if era == Era::Stateless { stateless_status(&response) } else { StatusCode::OK };
                            let mut r = json_response(status, &response);
                            if status == StatusCode::TOO_MANY_REQUESTS {
                                set_retry_after(&mut r, &response);
                            }
                            r
                        }
                        // Cancelled by the client: nothing to answer.
                        _ => StatusCode::ACCEPTED.into_response(),
                    };
                }
            }
        }
        // A closed channel disables this branch: the task is finishing.
        Some(m) = rx.recv() => Some((m, None)),
        _ = tokio::time::sleep(keepalive) => None,
    };
    let queue = gw.config.limits.max_queued_messages;
    let (response, body) = sse::response(&[], queue, gw.metrics.stream_opened(TRANSPORT));
    tokio::spawn(async move {
        // Never waits for the client: a full queue ends the stream (the
        // call's later messages then go to the session's GET stream).
        let offer = |chunk| match sse::offer(&body, chunk) {
            Ok(()) => true,
            Err(sse::Stop::Gone) => false,
            Err(sse::Stop::Slow) => {
                tracing::warn!(
                    queued = queue,
                    "closing a response stream whose client stopped reading"
                );
                false
            }
        };
        let mut finished: Option<Option<Envelope>> = None;
        if let Some((msg, done)) = first {
            if !offer(sse::message_event(&msg.to_json(), None)) {
                return;
            }
            finished = done;
        }
        let mut tick = sse::interval(keepalive);
        loop {
            if let Some(done) = finished.take() {
                while let Ok(msg) = rx.try_recv() {
                    if !offer(sse::message_event(&msg.to_json(), None)) {
                        return;
                    }
                }
                if let Some(response) = done {
                    offer(sse::message_event(&response.to_json(), None));
                }
                return;
            }
            tokio::select! {
                done = &mut call => finished = Some(done),
                Some(msg) = rx.recv() => {
                    if !offer(sse::message_event(&msg.to_json(), None)) {
                        return;
                    }
                }
                _ = tick.tick() => {
                    if !offer(sse::keepalive()) {
                        return;
                    }
                }
                // The client went away while the call sends nothing.
                _ = body.closed() => return,
            }
        }
    });
    response
}

/// 2025-03-26 batches: every request answered in one JSON array.
async fn post_batch(
    s: AppState,
    principal: Principal,
    route: Route,
    headers: HeaderMap,
    text: &str,
) -> Response {
    let items: Vec<Box<RawValue>> = match serde_json::from_str(text) {
        Ok(items) => items,
        Err(e) => {
            return Reject::Envelope(mcp::EnvelopeError::Parse(e.to_string())).into_response();
        }
    };
    let Some(session_id) = header_str(&headers, "mcp-session-id") else {
        return Reject::Batch.into_response();
    };
    let session = match session_for(&s.gw, session_id, &principal, Some(&route), &headers).await {
        Ok(Resolved::Local(session)) => session,
        Ok(Resolved::Forward { owner, addr }) => {
            let body = Bytes::copy_from_slice(text.as_bytes());
            let path = route_path(&route);
            return forward::to_owner(
                &s.gw,
                &owner,
                &addr,
                axum::http::Method::POST,
                &path,
                &headers,
                body,
            )
            .await;
        }
        Err(r) => return r.into_response(),
    };
    if session.client.protocol_version != "2025-03-26" || items.is_empty() {
        return Reject::Batch.into_response();
    }
    let mut tasks = Vec::new();
    let mut responses: Vec<String> = Vec::new();
    for item in items {
        let env = match Envelope::from_raw(&item) {
            Ok(env) => env,
            Err(e) => {
                responses.push(Envelope::error(None, e.code(), &e.to_string(), None).to_json());
                continue;
            }
        };
        match env.kind() {
            Kind::Request => {
                // Messages about batched calls go to the GET stream.
                let (tx, rx) = mpsc::channel(1);
                drop(rx);
                tasks.push(session.spawn_request(env, tx));
            }
            Kind::Notification => session.handle_notification(env).await,
            Kind::Response => session.handle_response(env),
        }
    }
    for task in tasks {
        if let Ok(Some(r)) = task.await {
            responses.push(r.to_json());
        }
    }
    if responses.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let body = format!("[{}]", responses.join(","));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn get_stream(s: AppState, route: Route, headers: HeaderMap) -> Response {
    if let Err(r) = check_origin(&s.gw, &headers, s.local) {
        return r.into_response();
    }
    let principal = match Box::pin(authenticate(&s.gw, &headers)).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let Some(session_id) = header_str(&headers, "mcp-session-id") else {
        // Stateless clients have no GET stream (2026-07-28: 405).
        return Reject::MethodNotAllowed(
            "GET needs an Mcp-Session-Id; stateless clients use subscriptions/listen",
        )
        .into_response();
    };
    let accept = header_str(&headers, "accept")
        .unwrap_or("")
        .to_ascii_lowercase();
    if !accept.contains("text/event-stream") && !accept.contains("*/*") {
        return Reject::Accept("text/event-stream").into_response();
    }
    let route = super::scope_route(&s.gw, &principal, route, &headers, "mcp");
    let session = match session_for(&s.gw, session_id, &principal, route.as_ref(), &headers).await {
        Ok(Resolved::Local(session)) => session,
        Ok(Resolved::Forward { owner, addr }) => {
            let path = route
                .as_ref()
                .map(route_path)
                .unwrap_or_else(|| "/mcp".into());
            return forward::to_owner(
                &s.gw,
                &owner,
                &addr,
                axum::http::Method::GET,
                &path,
                &headers,
                Bytes::new(),
            )
            .await;
        }
        Err(r) => return r.into_response(),
    };
    // `N` or, for a resumable session, `N~{replica}~{cursor}`: the buffer
    // here replays after N when this replica sent it; an event another
    // replica sent resumes the backends' GET streams from its cursor.
    let last_event_id = header_str(&headers, "last-event-id").map(str::trim);
    let (number, tag) = match last_event_id.map(|v| v.split_once('~').unwrap_or((v, ""))) {
        Some((number, tag)) => (number.parse::<u64>().ok(), tag),
        None => (None, ""),
    };
    let here = s.gw.state.as_ref().map(|st| st.replica_id()).unwrap_or("");
    let from_elsewhere = !tag.is_empty() && tag.split('~').next() != Some(here);
    let number = if from_elsewhere {
        if !session.resume_from_tag(tag) {
            tracing::debug!(session.id = %session.id, "unreadable Last-Event-ID; the stream starts afresh");
        }
        None
    } else {
        number
    };
    let mut events = session.subscribe_stream(number);
    // A resumable session's backend GET streams follow this one.
    let backend_streams = session.attach_backend_streams();
    let queue = s.gw.config.limits.max_queued_messages;
    let (response, body) = sse::response(&[], queue, s.gw.metrics.stream_opened(TRANSPORT));
    let keepalive = s.gw.config.listen.sse_keepalive;
    let closing = s.gw.closing.clone();
    let ended = session.closed_token();
    tokio::spawn(async move {
        let _backend_streams = backend_streams;
        let mut tick = sse::interval(keepalive);
        loop {
            let chunk = tokio::select! {
                _ = closing.cancelled() => return,
                _ = ended.cancelled() => return,
                e = events.recv() => match e {
                    Some(event) => {
                        let id = crate::session::stream::event_id(&event);
                        sse::message_event(&event.2, Some(&id))
                    }
                    // Replaced by a newer GET stream, or cut for being slow.
                    None => return,
                },
                _ = tick.tick() => sse::keepalive(),
            };
            match sse::offer(&body, chunk) {
                Ok(()) => {}
                Err(sse::Stop::Gone) => return,
                // The client resumes from the session's buffer with Last-Event-ID.
                Err(sse::Stop::Slow) => {
                    tracing::warn!(session.id = %session.id, queued = queue, "closing a GET stream whose client stopped reading");
                    return;
                }
            }
        }
    });
    response
}

async fn delete(s: AppState, route: Route, headers: HeaderMap) -> Response {
    if let Err(r) = check_origin(&s.gw, &headers, s.local) {
        return r.into_response();
    }
    let principal = match Box::pin(authenticate(&s.gw, &headers)).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let Some(session_id) = header_str(&headers, "mcp-session-id") else {
        return Reject::MethodNotAllowed("DELETE needs an Mcp-Session-Id").into_response();
    };
    let route = super::scope_route(&s.gw, &principal, route, &headers, "mcp");
    // As before sessions spanned replicas, DELETE does not check the
    // MCP-Protocol-Version header.
    let forwarded = headers.contains_key(FORWARDED_HEADER);
    match s
        .gw
        .resolve(session_id, &principal, route.as_ref(), forwarded)
        .await
    {
        Ok(Resolved::Local(session)) => {
            s.gw.end_session_everywhere(&session.id).await;
            tracing::info!(session.id = %session.id, "session deleted by the client");
            StatusCode::OK.into_response()
        }
        Ok(Resolved::Forward { owner, addr }) => {
            let path = route
                .as_ref()
                .map(route_path)
                .unwrap_or_else(|| "/mcp".into());
            forward::to_owner(
                &s.gw,
                &owner,
                &addr,
                axum::http::Method::DELETE,
                &path,
                &headers,
                Bytes::new(),
            )
            .await
        }
        Err(_) => Reject::UnknownSession.into_response(),
    }
}
