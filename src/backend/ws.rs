//! WebSocket towards a server. No MCP revision defines this transport; the
//! gateway follows the SDKs that had it (TypeScript `WebSocketClientTransport`,
//! Python 1.x `websocket_client`): subprotocol `mcp`, one JSON-RPC message per
//! text frame. A server that does not accept `mcp` in the handshake is
//! refused (it may not be an MCP server at all). The backend's own
//! credentials (configured headers, or a token minted for the caller with
//! `mint_token`) go on the upgrade request only: a minted token is checked by
//! the server once, when the socket opens. Keep-alive: a ping every
//! `ping_s`; a server silent for two intervals is considered gone.

use std::sync::Weak;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::conn::Inner;
use crate::mcp::Envelope;

/// The subprotocol of the SDK convention.
const SUBPROTOCOL: &str = "mcp";
/// Messages larger than this from a server end the connection: bounded
/// memory per backend (the same bound as a stdio line).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const WRITE_QUEUE: usize = 1024;

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) struct WsLink {
    tx: mpsc::Sender<String>,
}

impl WsLink {
    /// Queues one message (one text frame); `Err` once the socket is gone.
    pub(super) async fn send(&self, text: String) -> Result<(), ()> {
        self.tx.send(text).await.map_err(|_| ())
    }
}

/// Opens the socket (at most `wait` for TCP, TLS and the upgrade).
/// `authorization`: the backend's minted token, if it has one.
pub(super) async fn open(
    url: &str,
    headers: &[(String, String)],
    authorization: Option<http::HeaderValue>,
    wait: Duration,
) -> Result<Socket, String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("invalid WebSocket URL: {e}"))?;
    let request_headers = request.headers_mut();
    request_headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(SUBPROTOCOL),
    );
    for (name, value) in headers {
        // Validated by the config loader; a failure here is a bug there.
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            return Err(format!("invalid configured header {name:?}"));
        };
        request_headers.append(name, value);
    }
    if let Some(authorization) = authorization {
        request_headers.insert(http::header::AUTHORIZATION, authorization);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(wait, connect).await {
        Err(_) => Err(format!(
            "no WebSocket handshake with {url} within {}s",
            wait.as_secs_f64()
        )),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(WsError::Http(response))) => Err(format!(
            "the WebSocket upgrade was refused (HTTP {})",
            response.status()
        )),
        Ok(Err(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(e)))) => Err(format!(
            "the server did not accept the WebSocket subprotocol \"{SUBPROTOCOL}\" ({e})"
        )),
        Ok(Err(e)) => Err(format!("WebSocket connection to {url} failed: {e}")),
    }
}

/// Starts the task that owns the socket: writes queued messages, reads
/// server messages into the connection, pings.
pub(super) fn start(
    socket: Socket,
    backend: String,
    inner: Weak<Inner>,
    closed: CancellationToken,
    ping: Duration,
) -> WsLink {
    let (tx, mut rx) = mpsc::channel::<String>(WRITE_QUEUE);
    tokio::spawn(async move {
        let (mut sink, mut stream) = socket.split();
        let mut ticker = tokio::time::interval_at(Instant::now() + ping, ping);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // A peer that stops reading would block a write forever.
        let write_limit = ping.saturating_mul(2);
        let reason = loop {
            tokio::select! {
                _ = closed.cancelled() => break "connection closed".to_owned(),
                out = rx.recv() => {
                    let Some(text) = out else { break "connection dropped".to_owned() };
                    match tokio::time::timeout(write_limit, sink.send(Message::text(text))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break format!("writing to the WebSocket failed: {e}"),
                        Err(_) => break "the server stopped reading".to_owned(),
                    }
                }
                frame = stream.next() => {
                    let frame = match frame {
                        None => break "the server closed the connection".to_owned(),
                        Some(Err(e)) => break format!("reading from the WebSocket failed: {e}"),
                        Some(Ok(frame)) => frame,
                    };
                    last_heard = Instant::now();
                    let text = match &frame {
                        Message::Text(text) => Some(text.as_str()),
                        // Not the convention, but unambiguous when it is UTF-8 JSON.
                        Message::Binary(bytes) => std::str::from_utf8(bytes).ok(),
                        Message::Close(close) => {
                            break match close {
                                Some(c) => format!("the server closed the WebSocket ({} {})", c.code, c.reason),
                                None => "the server closed the WebSocket".to_owned(),
                            };
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    };
                    let Some(text) = text else {
                        tracing::warn!(backend = %backend, "binary frame that is not UTF-8 from backend ignored");
                        continue;
                    };
                    match Envelope::parse(text) {
                        Ok(env) => match inner.upgrade() {
                            Some(inner) => inner.dispatch(env, None),
                            None => break "connection dropped".to_owned(),
                        },
                        Err(e) => tracing::warn!(backend = %backend, error = %e, "unparseable WebSocket message from backend"),
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() >= ping.saturating_mul(2) {
                        break format!("no answer from the server for {}s (keep-alive)", last_heard.elapsed().as_secs());
                    }
                    match tokio::time::timeout(write_limit, sink.send(Message::Ping(Bytes::new()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break format!("writing to the WebSocket failed: {e}"),
                        Err(_) => break "the server stopped reading".to_owned(),
                    }
                }
            }
        };
        tracing::info!(backend = %backend, %reason, "backend WebSocket ended");
        // A polite close where the socket still works; bounded either way.
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "connection closed".into(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(close)).await;
        if let Some(inner) = inner.upgrade() {
            inner.fail_all(&reason);
        }
    });
    WsLink { tx }
}
