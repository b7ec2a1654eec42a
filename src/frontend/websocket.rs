//! WebSocket at `/ws` and `/servers/{backend}/ws` (no MCP revision defines
//! it; this follows the SDKs' convention): subprotocol `mcp`, one JSON-RPC
//! message per text frame, handshake-era semantics, one session per socket.
//! Credentials come from the upgrade request. Transport faults close the
//! socket with a code (`close_frame`); a text frame that is not a JSON-RPC
//! message gets a JSON-RPC error and the socket stays open.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

use super::connection::{Conn, End, Outbox, Registry};
use super::{Reject, authenticate, check_origin, sse};
use crate::auth::Principal;
use crate::mcp::Envelope;
use crate::router::Route;
use crate::session::Gateway;

const TRANSPORT: &str = "websocket";
const SUBPROTOCOL: &str = "mcp";
/// How long a closing socket may take to send what is queued and its close
/// frame, and then for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Queued messages written together before one flush.
const WRITE_BATCH: usize = 64;

#[derive(Clone)]
struct AppState {
    gw: Arc<Gateway>,
    local: SocketAddr,
    connections: Arc<Registry>,
}

pub(crate) fn routes(gw: Arc<Gateway>, local: SocketAddr, connections: Arc<Registry>) -> Router {
    let state = AppState {
        gw,
        local,
        connections,
    };
    Router::new()
        .route("/ws", get(upgrade_default))
        .route("/servers/{backend}/ws", get(upgrade_backend))
        .with_state(state)
}

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn upgrade_default(State(s): State<AppState>, headers: HeaderMap, ws: Upgrade) -> Response {
    let route = s.gw.router.default_route();
    upgrade(s, route, headers, ws).await
}

async fn upgrade_backend(
    State(s): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    match s.gw.router.backend_route(&backend) {
        Some(route) => upgrade(s, route, headers, ws).await,
        None => (StatusCode::NOT_FOUND, "unknown backend").into_response(),
    }
}

async fn upgrade(s: AppState, route: Route, headers: HeaderMap, ws: Upgrade) -> Response {
    if let Err(r) = check_origin(&s.gw, &headers, s.local) {
        return r.into_response();
    }
    let principal = match authenticate(&s.gw, &headers).await {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let Some(route) = super::scope_route(&s.gw, &principal, route, &headers, "ws") else {
        return (StatusCode::NOT_FOUND, "unknown backend").into_response();
    };
    // Not an upgrade request (a plain GET: 426), or a malformed one.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // Only MCP on this socket: a client that does not ask for it may speak
    // something else, and browsers abort unless the offered protocol is
    // echoed.
    if !ws
        .requested_protocols()
        .any(|p| p.as_bytes() == SUBPROTOCOL.as_bytes())
    {
        return Reject::Subprotocol.into_response();
    }
    if let Err(r) = s
        .connections
        .admit(&principal, s.gw.config.limits.max_sessions_per_principal)
    {
        return r.into_response();
    }
    // Refused before buffering: tungstenite checks the frame header's length.
    let limit = s.gw.config.limits.max_message_bytes;
    ws.protocols([SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(s, principal, route, socket))
}

/// When the client was last heard from (any frame, pongs included).
struct LastSeen(Mutex<Instant>);

impl LastSeen {
    fn now() -> LastSeen {
        LastSeen(Mutex::new(Instant::now()))
    }

    fn touch(&self) {
        if let Ok(mut t) = self.0.lock() {
            *t = Instant::now();
        }
    }

    fn elapsed(&self) -> Duration {
        self.0.lock().map(|t| t.elapsed()).unwrap_or_default()
    }
}

async fn serve(s: AppState, principal: Principal, route: Route, socket: WebSocket) {
    let _open = s.gw.metrics.stream_opened(TRANSPORT);
    let queue = s.gw.config.limits.max_queued_messages;
    let (frames, outbound) = mpsc::channel::<Arc<str>>(queue);
    let conn = Conn::new(
        s.gw.clone(),
        principal,
        route,
        TRANSPORT,
        Outbox::WebSocket(frames),
    );
    s.connections.insert(&conn);
    tracing::info!(conn.id = %conn.id, route = %conn.route.key, "websocket connected");
    let (sink, mut stream) = socket.split();
    let last_seen = Arc::new(LastSeen::now());
    let writer = tokio::spawn(write(
        conn.clone(),
        sink,
        outbound,
        last_seen.clone(),
        s.gw.config.listen.ws_ping,
    ));
    read(
        &conn,
        &mut stream,
        &last_seen,
        s.gw.config.limits.max_message_bytes,
    )
    .await;
    // The writer sends what must still go out and the close frame.
    let _ = writer.await;
    // Then the client's close frame completes the handshake (bounded).
    if !matches!(conn.reason(), End::ClientClosed) {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    s.connections.remove(&conn.id);
    conn.finish();
}

async fn read(
    conn: &Arc<Conn>,
    stream: &mut SplitStream<WebSocket>,
    last_seen: &LastSeen,
    limit: usize,
) {
    let ended = conn.ended_token();
    loop {
        let frame = tokio::select! {
            _ = ended.cancelled() => return,
            frame = stream.next() => frame,
        };
        last_seen.touch();
        match frame {
            Some(Ok(Message::Text(text))) => receive_text(conn, text.as_str()).await,
            Some(Ok(Message::Binary(_))) => {
                conn.end(End::Binary);
                return;
            }
            // tungstenite answers pings itself; any frame proves liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => {
                conn.end(End::ClientClosed);
                return;
            }
            Some(Err(e)) => {
                conn.end(read_error(e, limit));
                return;
            }
        }
    }
}

/// Which fault a read error was.
fn read_error(e: axum::Error, limit: usize) -> End {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) => match *e {
            tungstenite::Error::Utf8(_) => End::InvalidUtf8,
            tungstenite::Error::Capacity(_) => End::TooLarge { limit },
            tungstenite::Error::Protocol(_) => End::Protocol,
            _ => End::ClientClosed,
        },
        Err(_) => End::ClientClosed,
    }
}

/// One text frame: a JSON-RPC message, or an error frame with `"id": null`
/// (-32700 not JSON, -32600 not a JSON-RPC message or a batch).
async fn receive_text(conn: &Arc<Conn>, text: &str) {
    if text.trim_start().starts_with('[') {
        conn.refuse_unreadable(&Reject::BatchOnConnection);
        return;
    }
    match Envelope::parse(text) {
        Ok(env) => conn.receive(env).await,
        Err(e) => {
            tracing::debug!(conn.id = %conn.id, error = %e, "unreadable text frame");
            conn.refuse_unreadable(&Reject::Envelope(e));
        }
    }
}

async fn write(
    conn: Arc<Conn>,
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Arc<str>>,
    last_seen: Arc<LastSeen>,
    ping: Duration,
) {
    let ended = conn.ended_token();
    let mut tick = sse::interval(ping);
    loop {
        let frame = tokio::select! {
            biased;
            _ = ended.cancelled() => break,
            json = outbound.recv() => match json {
                Some(json) => Message::Text(json.as_ref().into()),
                None => break,
            },
            _ = tick.tick() => {
                let silent = last_seen.elapsed();
                if silent > ping * 2 {
                    conn.end(End::Silent { for_s: silent.as_secs() });
                    break;
                }
                conn.keepalive();
                Message::Ping(Bytes::new())
            }
        };
        // What else is queued goes out in the same write: a burst costs
        // one flush, not one per message. A client that stops reading
        // blocks this; its queue then fills and the connection ends, which
        // ends the wait.
        let sent = tokio::select! {
            _ = ended.cancelled() => break,
            sent = async {
                sink.feed(frame).await?;
                for _ in 0..WRITE_BATCH {
                    let Ok(json) = outbound.try_recv() else { break };
                    sink.feed(Message::Text(json.as_ref().into())).await?;
                }
                sink.flush().await
            } => sent,
        };
        if sent.is_err() {
            conn.end(End::ClientClosed);
            break;
        }
    }
    let why = conn.reason();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if flushes_queue(why) {
            // Answers already queued (a shutdown after the last call) go
            // out before the close frame.
            while let Ok(json) = outbound.try_recv() {
                sink.send(Message::Text(json.as_ref().into())).await?;
            }
        }
        if let Some(frame) = close_frame(why) {
            sink.send(Message::Close(Some(frame))).await?;
        }
        sink.close().await
    })
    .await;
}

/// Whether what is queued still goes out before the close frame.
fn flushes_queue(why: End) -> bool {
    match why {
        End::SessionEnded
        | End::Shutdown
        | End::Binary
        | End::InvalidUtf8
        | End::TooLarge { .. }
        | End::Protocol => true,
        End::ClientClosed | End::Slow { .. } | End::Silent { .. } => false,
    }
}

/// The one mapping from why a socket ends to its close code (RFC 6455 §7.4).
fn close_frame(why: End) -> Option<CloseFrame> {
    let code = match why {
        // The client's own close is answered by tungstenite.
        End::ClientClosed => return None,
        End::Slow { .. } => close_code::POLICY,
        End::SessionEnded => close_code::POLICY,
        End::Shutdown => close_code::AWAY,
        End::Silent { .. } => close_code::AWAY,
        End::Binary => close_code::UNSUPPORTED,
        End::InvalidUtf8 => close_code::INVALID,
        End::TooLarge { .. } => close_code::SIZE,
        End::Protocol => close_code::PROTOCOL,
    };
    Some(CloseFrame {
        code,
        reason: why.to_string().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_and_reasons() {
        for (why, code) in [
            (End::Slow { queued: 1024 }, 1008),
            (End::SessionEnded, 1008),
            (End::Shutdown, 1001),
            (End::Silent { for_s: 60 }, 1001),
            (End::Binary, 1003),
            (End::InvalidUtf8, 1007),
            (End::TooLarge { limit: 4_194_304 }, 1009),
            (End::Protocol, 1002),
        ] {
            let frame = close_frame(why).expect("a close frame");
            assert_eq!(frame.code, code, "{why:?}");
            // RFC 6455 §5.5: a control frame's payload is at most 125 bytes.
            assert!(frame.reason.len() <= 123, "{why:?}: {}", frame.reason);
        }
        assert!(close_frame(End::ClientClosed).is_none());
    }
}
