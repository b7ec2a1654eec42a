//! Rust clients for the gateway's message-oriented front doors, both
//! handshake era: legacy HTTP+SSE (`SseClient`: GET `/sse`, POST to the
//! `endpoint` it announces) and WebSocket (`WsClient`: `/ws`, subprotocol
//! `mcp`). Each has `initialize` and `call` → `Exchange` (server→client
//! requests answered with `answer`), plus raw access for protocol tests:
//! any frame, any POST, the close code. Every wait is bounded.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::http::{RawResponse, SseStream, is_response, open_stream, post_json};

/// Bound on one exchange (a call, its messages, its answers).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client declares: it answers sampling and elicitation.
pub fn client_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {}})
}

fn initialize_request(id: i64, protocol_version: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": protocol_version,
            "capabilities": client_capabilities(),
            "clientInfo": {"name": "gateway-tests", "version": "0"}
        }
    })
}

/// The canned answers to server→client requests.
pub fn answer(request: &Value) -> Value {
    let result = match request["method"].as_str().unwrap_or_default() {
        "elicitation/create" => json!({"action": "accept", "content": {"answer": "blue"}}),
        "sampling/createMessage" => json!({
            "role": "assistant",
            "content": {"type": "text", "text": "short"},
            "model": "gateway-test-model",
            "stopReason": "endTurn"
        }),
        "roots/list" => json!({"roots": []}),
        "ping" => json!({}),
        other => {
            return json!({"jsonrpc": "2.0", "id": request["id"],
                "error": {"code": -32601, "message": format!("test client: no {other}")}});
        }
    };
    json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
}

/// One request's exchange, as the client saw it.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The JSON-RPC response (`result` or `error`).
    pub response: Value,
    /// Notifications that arrived meanwhile (progress, logs, list_changed).
    pub notifications: Vec<Value>,
    /// Server→client requests that arrived meanwhile (each answered).
    pub server_requests: Vec<Value>,
}

impl Exchange {
    pub fn result(&self) -> &Value {
        assert!(
            self.response.get("result").is_some(),
            "expected a result: {:#}",
            self.response
        );
        &self.response["result"]
    }

    pub fn error_code(&self) -> i64 {
        self.response["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("expected an error: {:#}", self.response))
    }

    pub fn text(&self) -> String {
        self.result()["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn progress(&self) -> Vec<&Value> {
        self.notifications
            .iter()
            .filter(|n| n["method"] == "notifications/progress")
            .collect()
    }
}

/// What one message means to an exchange waiting for the response to `id`.
enum Filed {
    /// It was that response.
    Done,
    /// A server→client request; send this answer back.
    Answer(Value),
    /// A notification, kept in the exchange.
    Kept,
}

/// Files one message of an exchange (both transports read the same way).
fn file_message(exchange: &mut Exchange, message: Value, id: i64) -> Filed {
    if is_response(&message) {
        assert_eq!(
            message["id"],
            json!(id),
            "a response to another request: {message}"
        );
        exchange.response = message;
        return Filed::Done;
    }
    if message.get("id").is_some() {
        let reply = answer(&message);
        exchange.server_requests.push(message);
        Filed::Answer(reply)
    } else {
        exchange.notifications.push(message);
        Filed::Kept
    }
}

fn request(id: i64, method: &str, mut params: Value, progress: bool) -> Value {
    if progress && let Some(p) = params.as_object_mut() {
        p.insert(
            "_meta".into(),
            json!({"progressToken": format!("progress-{id}")}),
        );
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

// --- WebSocket ----------------------------------------------------------------------

/// How a WebSocket ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEnd {
    /// A close frame with this code and reason.
    Close(u16, String),
    /// The connection ended without a close frame (reset, EOF, an error).
    Dropped(String),
}

impl WsEnd {
    pub fn code(&self) -> Option<u16> {
        match self {
            WsEnd::Close(code, _) => Some(*code),
            WsEnd::Dropped(_) => None,
        }
    }
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: i64,
}

impl WsClient {
    /// Connects to `url` (`ws://…/ws`) offering subprotocol `mcp`; panics on failure.
    pub async fn connect(url: &str) -> WsClient {
        match Self::try_connect(url, &[("sec-websocket-protocol", "mcp")]).await {
            Ok(client) => client,
            Err(e) => panic!("websocket connect {url}: {e}"),
        }
    }

    /// Connects with exactly these extra headers (say, no subprotocol, a
    /// foreign Origin); the error carries the HTTP status of a refusal.
    pub async fn try_connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, tungstenite::Error> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
            let value = http::HeaderValue::from_str(v).expect("header value");
            req.headers_mut().append(name, value);
        }
        // Large enough for any test frame the gateway sends back.
        let config = WebSocketConfig::default().max_message_size(Some(256 << 20));
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_with_config(req, Some(config), false),
        )
        .await
        .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(WsClient { ws, next_id: 1 })
    }

    /// The HTTP status of a refused upgrade.
    pub async fn refused_status(url: &str, headers: &[(&str, &str)]) -> u16 {
        match Self::try_connect(url, headers).await {
            Ok(_) => panic!("upgrade to {url} with {headers:?} was accepted"),
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("upgrade to {url}: {e}"),
        }
    }

    pub async fn send_json(&mut self, message: &Value) {
        self.send(Message::text(message.to_string())).await;
    }

    pub async fn send(&mut self, message: Message) {
        tokio::time::timeout(Duration::from_secs(10), self.ws.send(message))
            .await
            .expect("websocket send timed out")
            .expect("websocket send");
    }

    /// The next JSON message; `None` when the socket ended (see `end`).
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("no websocket message within {timeout:?}"),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(
                        serde_json::from_str(text.as_str())
                            .unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
                    );
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                Ok(Some(Ok(Message::Binary(b)))) => panic!("binary frame from the gateway: {b:?}"),
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return None,
            }
        }
    }

    /// Reads until the socket ends; how it ended.
    pub async fn end(&mut self, timeout: Duration) -> WsEnd {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the websocket did not end within {timeout:?}"),
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return WsEnd::Close(frame.code.into(), frame.reason.to_string());
                }
                Ok(Some(Ok(Message::Close(None)))) => return WsEnd::Close(1005, String::new()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return WsEnd::Dropped(e.to_string()),
                Ok(None) => return WsEnd::Dropped("end of stream".into()),
            }
        }
    }

    /// Stops being a WebSocket client (no pong or close is sent back):
    /// reads the raw TCP stream to its end and returns the close frame the
    /// server sent, if any. For a client the server gave up on, whose
    /// tungstenite would fail answering a ping on a closed socket first.
    pub async fn raw_close(self, timeout: Duration) -> Option<(u16, String)> {
        use tokio::io::AsyncReadExt;
        let MaybeTlsStream::Plain(mut tcp) = self.ws.into_inner() else {
            panic!("raw_close: not a plain TCP socket");
        };
        let mut bytes = Vec::new();
        let read = tokio::time::timeout(timeout, tcp.read_to_end(&mut bytes)).await;
        assert!(
            read.is_ok(),
            "the server did not close the socket within {timeout:?}"
        );
        // Server frames are unmasked: FIN/opcode, length (7, 16 or 64 bit), payload.
        let mut at = 0;
        while at + 2 <= bytes.len() {
            let opcode = bytes[at] & 0x0f;
            let (len, header) = match bytes[at + 1] & 0x7f {
                126 if at + 4 <= bytes.len() => (
                    u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                    4,
                ),
                127 if at + 10 <= bytes.len() => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&bytes[at + 2..at + 10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                n => (n as usize, 2),
            };
            let payload = bytes.get(at + header..at + header + len)?;
            if opcode == 0x8 && payload.len() >= 2 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
            }
            at += header + len;
        }
        None
    }

    /// `initialize` + `notifications/initialized`; the initialize result.
    pub async fn initialize(&mut self, protocol_version: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_json(&initialize_request(id, protocol_version))
            .await;
        let exchange = self.until_response(id).await;
        let result = exchange.result().clone();
        self.send_json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        result
    }

    /// A request with a fresh id (and a progress token when `progress`).
    pub async fn call(&mut self, method: &str, params: Value, progress: bool) -> Exchange {
        let id = self.next_id;
        self.next_id += 1;
        self.send_json(&request(id, method, params, progress)).await;
        self.until_response(id).await
    }

    /// Messages until the response to `id`, answering server requests.
    pub async fn until_response(&mut self, id: i64) -> Exchange {
        let deadline = tokio::time::Instant::now() + EXCHANGE_TIMEOUT;
        let mut exchange = Exchange::default();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(message) = self.next_json(left).await else {
                panic!("the websocket ended before the response to {id}: {exchange:#?}");
            };
            match file_message(&mut exchange, message, id) {
                Filed::Done => return exchange,
                Filed::Answer(reply) => self.send_json(&reply).await,
                Filed::Kept => {}
            }
        }
    }
}

// --- legacy HTTP+SSE ----------------------------------------------------------------------

pub struct SseClient {
    pub stream: SseStream,
    /// Absolute URL of the `endpoint` event.
    pub post_url: String,
    /// The `endpoint` event's data as sent.
    pub endpoint: String,
    headers: Vec<(String, String)>,
    next_id: i64,
}

impl SseClient {
    /// GET `sse_url` and read the `endpoint` event; panics unless 200.
    pub async fn open(sse_url: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut stream = open_stream(sse_url, headers, None).await;
        assert_eq!(stream.status, 200, "GET {sse_url}");
        let event = stream
            .next_event(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{sse_url}: stream ended before the endpoint event"));
        assert_eq!(event.event.as_deref(), Some("endpoint"), "{event:?}");
        let origin = sse_url
            .find("://")
            .and_then(|i| sse_url[i + 3..].find('/').map(|j| &sse_url[..i + 3 + j]))
            .unwrap_or(sse_url);
        SseClient {
            post_url: format!("{origin}{}", event.data),
            endpoint: event.data,
            stream,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            next_id: 1,
        }
    }

    /// The session id in the endpoint URI.
    pub fn session_id(&self) -> &str {
        self.endpoint
            .split("session_id=")
            .nth(1)
            .unwrap_or_default()
    }

    /// POSTs one message to the endpoint (JSON content type). The future
    /// owns what it needs, so it is `Send` although the client is not `Sync`.
    pub fn post(
        &self,
        message: &Value,
    ) -> impl std::future::Future<Output = RawResponse> + Send + 'static {
        let url = self.post_url.clone();
        let owned_headers = self.headers.clone();
        let message = message.clone();
        async move {
            let headers: Vec<(&str, &str)> = owned_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            post_json(&url, &headers, &message).await
        }
    }

    fn post_accepted(
        &self,
        message: &Value,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let post = self.post(message);
        let message = message.clone();
        async move {
            let resp = post.await;
            assert_eq!(resp.status, 202, "POST {message}: {resp:?}");
        }
    }

    /// The next message on the stream; `None` at its end.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        self.stream.next_message(timeout).await
    }

    pub async fn initialize(&mut self, protocol_version: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.post_accepted(&initialize_request(id, protocol_version))
            .await;
        let exchange = self.until_response(id).await;
        let result = exchange.result().clone();
        self.post_accepted(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        result
    }

    pub async fn call(&mut self, method: &str, params: Value, progress: bool) -> Exchange {
        let id = self.next_id;
        self.next_id += 1;
        self.post_accepted(&request(id, method, params, progress))
            .await;
        self.until_response(id).await
    }

    pub async fn until_response(&mut self, id: i64) -> Exchange {
        let deadline = tokio::time::Instant::now() + EXCHANGE_TIMEOUT;
        let mut exchange = Exchange::default();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(message) = self.next_message(left).await else {
                panic!("the SSE stream ended before the response to {id}: {exchange:#?}");
            };
            match file_message(&mut exchange, message, id) {
                Filed::Done => return exchange,
                Filed::Answer(reply) => self.post_accepted(&reply).await,
                Filed::Kept => {}
            }
        }
    }
}

/// Four tests for each front door × backend pair: `tools/list`, `tools/call`
/// with progress, `resources/read` and a server→client request. The module
/// that invokes it defines `tools_list`, `tools_call`, `resources_read` and
/// `server_request`, each an `async fn(Front, Backend)` of its own types.
macro_rules! front_backend_matrix {
    ($($front:expr, $backend:expr => $list:ident, $call:ident, $read:ident, $ask:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $list() {
            tools_list($front, $backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $call() {
            tools_call($front, $backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $read() {
            resources_read($front, $backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $ask() {
            server_request($front, $backend).await;
        }
    )*};
}
pub(crate) use front_backend_matrix;
