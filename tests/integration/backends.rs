//! The backend transports of issue 4 — legacy HTTP+SSE (`transport = "sse"`)
//! and WebSocket (`transport = "websocket"`) — against servers nobody here
//! wrote: server-everything and the Python SDK 2.3 server over SSE, the
//! Python SDK 1.30 `websocket_server` (`py_ws_server.py`) and
//! server-everything over a `ws@8` socket (`ts_ws_server.mjs`).
//!
//! The matrix is table-driven (`matrix!`): one test per front door × backend
//! × scenario {tools/list, tools/call with progress, resources/read, a
//! server→client request}, named `{front}_to_{backend}_{scenario}`. A new
//! front door is a `Front` variant (and its `Client`), plus rows.
//! Fault tests (`faults!`): a backend killed mid-call is -32010 and the next
//! call reconnects; a backend that does not answer in `timeout_s` is -32011.
//! Parity tests run the official SDK drivers directly and through the gateway
//! and compare the normalized results.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::drivers::same_through_gateway;
use crate::util::front::{Exchange, answer, client_capabilities, front_backend_matrix};
use crate::util::servers::{PyWsServer, TsWsServer, freeze, resume, toml_string};
use crate::util::surfaces::{EVERYTHING, PY_DEMO, Surface};
use crate::util::{Everything, Gateway, PyDemoServer, py_client, ts_client};

/// Bound on one exchange with the gateway (a call, its stream, its answers).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

// --- front doors ----------------------------------------------------------------------

/// How a client reaches the gateway.
#[derive(Debug, Clone, Copy)]
enum Front {
    /// Streamable HTTP at `/mcp`, handshake era (2025-11-25).
    Http,
    /// Legacy HTTP+SSE at `/sse` (2024-11-05).
    Sse,
    /// WebSocket at `/ws` (2025-11-25).
    Ws,
}

/// A connected client session at one front door.
enum Client {
    Http(HttpClient),
    Sse(Box<crate::util::front::SseClient>),
    Ws(Box<crate::util::front::WsClient>),
}

impl Front {
    async fn connect(self, gateway: &Gateway, headers: &[(&str, &str)]) -> Client {
        match self {
            Front::Http => Client::Http(HttpClient::initialize(&gateway.url(), headers).await),
            Front::Sse => {
                let mut c =
                    crate::util::front::SseClient::open(&gateway.url_for("/sse"), headers).await;
                c.initialize("2024-11-05").await;
                Client::Sse(Box::new(c))
            }
            Front::Ws => {
                let mut c =
                    crate::util::front::WsClient::connect(&format!("ws://{}/ws", gateway.addr()))
                        .await;
                c.initialize("2025-11-25").await;
                Client::Ws(Box::new(c))
            }
        }
    }
}

impl Client {
    /// A request; progress is asked for when `progress` is set. Every
    /// notification is also sent to `observer` as it arrives.
    async fn call_observed(
        &mut self,
        method: &str,
        params: Value,
        progress: bool,
        observer: Option<mpsc::UnboundedSender<Value>>,
    ) -> Exchange {
        match self {
            Client::Http(c) => c.call(method, params, progress, observer).await,
            // These clients collect the notifications of the exchange; the
            // observer sees them when it completes.
            Client::Sse(c) => observed(c.call(method, params, progress).await, observer),
            Client::Ws(c) => observed(c.call(method, params, progress).await, observer),
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Exchange {
        self.call_observed(method, params, false, None).await
    }

    async fn call_tool(&mut self, name: &str, arguments: Value) -> Exchange {
        self.call("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }
}

fn observed(exchange: Exchange, observer: Option<mpsc::UnboundedSender<Value>>) -> Exchange {
    if let Some(observer) = observer {
        for n in &exchange.notifications {
            let _ = observer.send(n.clone());
        }
    }
    exchange
}

/// A handshake-era Streamable HTTP session that answers server→client
/// requests arriving on a call's SSE stream.
struct HttpClient {
    http: reqwest::Client,
    url: String,
    session_id: Option<String>,
    protocol_version: String,
    headers: Vec<(String, String)>,
    next_id: i64,
}

impl HttpClient {
    async fn initialize(url: &str, headers: &[(&str, &str)]) -> HttpClient {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client");
        let mut client = HttpClient {
            http,
            url: url.to_owned(),
            session_id: None,
            protocol_version: "2025-11-25".to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            next_id: 0,
        };
        let init = client
            .call(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": client_capabilities(),
                    "clientInfo": {"name": "gateway-backend-tests", "version": "0"}
                }),
                false,
                None,
            )
            .await;
        if let Some(v) = init.result()["protocolVersion"].as_str() {
            client.protocol_version = v.to_owned();
        }
        let status = client
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .status();
        assert_eq!(status, 202, "notifications/initialized");
        client
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol_version)
            .body(body.to_string());
        if let Some(id) = &self.session_id {
            req = req.header("mcp-session-id", id);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        match tokio::time::timeout(CALL_TIMEOUT, self.request(body).send()).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => panic!("POST {}: {e}", self.url),
            Err(_) => panic!("POST {}: no answer within {CALL_TIMEOUT:?}", self.url),
        }
    }

    async fn call(
        &mut self,
        method: &str,
        mut params: Value,
        progress: bool,
        observer: Option<mpsc::UnboundedSender<Value>>,
    ) -> Exchange {
        let id = json!(self.next_id);
        self.next_id += 1;
        if progress {
            params["_meta"] = json!({"progressToken": format!("progress-{id}")});
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.post(&body).await;
        if self.session_id.is_none()
            && let Some(sid) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
        {
            self.session_id = Some(sid.to_owned());
        }
        let status = resp.status();
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let mut exchange = Exchange::default();
        if !is_sse {
            let text = tokio::time::timeout(CALL_TIMEOUT, resp.text())
                .await
                .unwrap_or_else(|_| panic!("{method}: body not read within {CALL_TIMEOUT:?}"))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            exchange.response = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method}: HTTP {status}, not JSON ({e}): {text}"));
            return exchange;
        }
        let mut events = resp.bytes_stream().eventsource();
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let event = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => {
                    panic!("{method}: no response within {CALL_TIMEOUT:?}; so far {exchange:#?}")
                }
                Ok(None) => {
                    panic!("{method}: stream ended without a response; so far {exchange:#?}")
                }
                Ok(Some(Err(e))) => panic!("{method}: stream broke: {e}; so far {exchange:#?}"),
                Ok(Some(Ok(event))) => event,
            };
            let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                continue; // priming events
            };
            match (message.get("method"), message.get("id")) {
                (Some(_), Some(_)) => {
                    let reply = answer(&message);
                    let status = self.post(&reply).await.status();
                    assert_eq!(status, 202, "answer to {message}");
                    exchange.server_requests.push(message);
                }
                (Some(_), None) => {
                    if let Some(observer) = &observer {
                        let _ = observer.send(message.clone());
                    }
                    exchange.notifications.push(message);
                }
                (None, Some(got)) if *got == id => {
                    exchange.response = message;
                    return exchange;
                }
                _ => {}
            }
        }
    }
}

// --- backends -------------------------------------------------------------------------

/// A backend transport and the real server behind it.
#[derive(Debug, Clone, Copy)]
enum Backend {
    /// server-everything in its own SSE mode.
    SseEverything,
    /// The Python SDK 2.3 server (`py_demo_server.py sse`).
    SsePy,
    /// The Python SDK 1.30 `websocket_server` (`py_ws_server.py`).
    WsPy,
    /// server-everything over a `ws@8` socket (`ts_ws_server.mjs`).
    WsEverything,
}

/// A running server (killed on drop).
enum Server {
    Everything(Everything),
    Py(PyDemoServer),
    PyWs(PyWsServer),
    TsWs(TsWsServer),
}

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Everything(s) => s.port(),
            Server::Py(s) => s.port(),
            Server::PyWs(s) => s.port(),
            Server::TsWs(s) => s.port(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Everything(s) => s.pid(),
            Server::Py(s) => s.pid(),
            Server::PyWs(s) => s.pid(),
            Server::TsWs(s) => s.pid(),
        }
    }

    fn kill(&mut self) {
        match self {
            Server::Everything(s) => s.kill(),
            Server::Py(s) => s.kill(),
            Server::PyWs(s) => s.kill(),
            Server::TsWs(s) => s.kill(),
        }
    }
}

impl Backend {
    fn surface(self) -> &'static Surface {
        match self {
            Backend::SseEverything | Backend::WsEverything => &EVERYTHING,
            Backend::SsePy | Backend::WsPy => &PY_DEMO,
        }
    }

    fn start(self) -> Server {
        match self {
            Backend::SseEverything => Server::Everything(Everything::start_sse()),
            Backend::SsePy => Server::Py(PyDemoServer::start_sse()),
            Backend::WsPy => Server::PyWs(PyWsServer::start()),
            Backend::WsEverything => Server::TsWs(TsWsServer::start()),
        }
    }

    /// The same server again on `port` (after a kill).
    fn start_on(self, port: u16) -> Server {
        match self {
            Backend::SseEverything => Server::Everything(Everything::start_sse_on(port)),
            Backend::SsePy => Server::Py(PyDemoServer::start_sse_on(port)),
            Backend::WsPy => Server::PyWs(PyWsServer::start_on(port)),
            Backend::WsEverything => Server::TsWs(TsWsServer::start_on(port)),
        }
    }

    /// The `[[backends]]` table for `server`, named "server".
    fn toml(self, server: &Server, extra: &str) -> String {
        let port = server.port();
        let (transport, url) = match self {
            Backend::SseEverything | Backend::SsePy => {
                ("sse", format!("http://127.0.0.1:{port}/sse"))
            }
            Backend::WsPy | Backend::WsEverything => {
                ("websocket", format!("ws://127.0.0.1:{port}/ws"))
            }
        };
        format!(
            "[[backends]]\nname = \"server\"\ntransport = \"{transport}\"\nurl = {}\n{extra}\n",
            toml_string(&url)
        )
    }
}

/// A server and a gateway in front of it.
struct Env {
    backend: Backend,
    server: Server,
    gateway: Gateway,
}

impl Env {
    fn start(backend: Backend, extra: &str) -> Env {
        let server = backend.start();
        let gateway = Gateway::start(&format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n{}",
            backend.toml(&server, extra)
        ));
        Env {
            backend,
            server,
            gateway,
        }
    }

    fn surface(&self) -> &'static Surface {
        self.backend.surface()
    }
}

// --- the matrix -------------------------------------------------------------------------

async fn tools_list(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway, &[]).await;
    let listed = client.call("tools/list", json!({})).await;
    let names: Vec<&str> = listed.result()["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {:#}", listed.response))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in env.surface().tools {
        assert!(names.contains(tool), "{tool} not in {names:?}");
    }
}

async fn tools_call(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway, &[]).await;
    let (tool, args, text) = env.surface().progress;
    let call = client
        .call_observed(
            "tools/call",
            json!({"name": tool, "arguments": args()}),
            true,
            None,
        )
        .await;
    assert!(call.text().contains(text), "{:#}", call.response);
    let progress = call.progress();
    assert_eq!(progress.len(), 3, "{:#?}", call.notifications);
    for (n, p) in progress.iter().enumerate() {
        // The client's own token (`progress-<request id>`), mapped back by
        // the gateway.
        let token = format!("progress-{}", call.response["id"]);
        assert_eq!(p["params"]["progressToken"], token.as_str(), "{p}");
        // Python sends floats (1.0), TypeScript integers.
        assert_eq!(
            p["params"]["progress"].as_f64(),
            Some(n as f64 + 1.0),
            "{p}"
        );
    }
}

async fn resources_read(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway, &[]).await;
    let (uri, text) = env.surface().resource;
    let read = client.call("resources/read", json!({"uri": uri})).await;
    let content = &read.result()["contents"][0];
    assert_eq!(content["uri"], uri, "{:#}", read.response);
    assert!(
        content["text"].as_str().unwrap_or_default().contains(text),
        "{:#}",
        read.response
    );
}

async fn server_request(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway, &[]).await;
    let (tool, args, method, text) = env.surface().server_request;
    let call = client.call_tool(tool, args()).await;
    assert!(call.text().contains(text), "{:#}", call.response);
    let [request] = call.server_requests.as_slice() else {
        panic!("one server request expected: {call:#?}");
    };
    assert_eq!(request["method"], method, "{request}");
}

// front door, backend => tools/list, tools/call with progress, resources/read, server→client request
front_backend_matrix! {
    Front::Http, Backend::SseEverything => http_to_sse_everything_tools_list, http_to_sse_everything_tools_call, http_to_sse_everything_resources_read, http_to_sse_everything_server_request;
    Front::Http, Backend::SsePy => http_to_sse_py_tools_list, http_to_sse_py_tools_call, http_to_sse_py_resources_read, http_to_sse_py_server_request;
    Front::Http, Backend::WsPy => http_to_ws_py_tools_list, http_to_ws_py_tools_call, http_to_ws_py_resources_read, http_to_ws_py_server_request;
    Front::Http, Backend::WsEverything => http_to_ws_everything_tools_list, http_to_ws_everything_tools_call, http_to_ws_everything_resources_read, http_to_ws_everything_server_request;
    Front::Sse, Backend::SseEverything => sse_to_sse_everything_tools_list, sse_to_sse_everything_tools_call, sse_to_sse_everything_resources_read, sse_to_sse_everything_server_request;
    Front::Sse, Backend::SsePy => sse_to_sse_py_tools_list, sse_to_sse_py_tools_call, sse_to_sse_py_resources_read, sse_to_sse_py_server_request;
    Front::Sse, Backend::WsPy => sse_to_ws_py_tools_list, sse_to_ws_py_tools_call, sse_to_ws_py_resources_read, sse_to_ws_py_server_request;
    Front::Sse, Backend::WsEverything => sse_to_ws_everything_tools_list, sse_to_ws_everything_tools_call, sse_to_ws_everything_resources_read, sse_to_ws_everything_server_request;
    Front::Ws, Backend::SseEverything => ws_to_sse_everything_tools_list, ws_to_sse_everything_tools_call, ws_to_sse_everything_resources_read, ws_to_sse_everything_server_request;
    Front::Ws, Backend::SsePy => ws_to_sse_py_tools_list, ws_to_sse_py_tools_call, ws_to_sse_py_resources_read, ws_to_sse_py_server_request;
    Front::Ws, Backend::WsPy => ws_to_ws_py_tools_list, ws_to_ws_py_tools_call, ws_to_ws_py_resources_read, ws_to_ws_py_server_request;
    Front::Ws, Backend::WsEverything => ws_to_ws_everything_tools_list, ws_to_ws_everything_tools_call, ws_to_ws_everything_resources_read, ws_to_ws_everything_server_request;
}

// --- faults ---------------------------------------------------------------------------

/// Starts the backend's slow tool; returns once its first progress arrived.
async fn start_slow_call(
    client: Client,
    surface: &'static Surface,
) -> (
    tokio::task::JoinHandle<(Client, Exchange)>,
    mpsc::UnboundedReceiver<Value>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (tool, args) = surface.slow;
    let mut client = client;
    let task = tokio::spawn(async move {
        let exchange = client
            .call_observed(
                "tools/call",
                json!({"name": tool, "arguments": args()}),
                true,
                Some(tx),
            )
            .await;
        (client, exchange)
    });
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
    assert!(
        matches!(first, Ok(Some(_))),
        "no progress from the slow call: {first:?}"
    );
    (task, rx)
}

async fn killed_mid_call(front: Front, backend: Backend) {
    let mut env = Env::start(backend, "timeout_s = 30");
    let client = front.connect(&env.gateway, &[]).await;
    let (task, _progress) = start_slow_call(client, env.surface()).await;
    let started = std::time::Instant::now();
    env.server.kill();
    let (mut client, exchange) = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the call ends when its backend dies")
        .expect("call task");
    assert_eq!(exchange.error_code(), -32010, "{:#}", exchange.response);
    assert_eq!(exchange.response["error"]["data"]["backend"], "server");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Down: the next call is -32010 at once, not a hang.
    let down = client
        .call_tool("echo", json!({"message": "anyone?"}))
        .await;
    assert_eq!(down.error_code(), -32010, "{:#}", down.response);
    // Back on the same URL: the same client session reconnects (a new
    // stream or socket, a new handshake), after the backoff of one failure.
    let port = env.server.port();
    env.server = backend.start_on(port);
    let mut echoed = None;
    for _ in 0..20 {
        let call = client.call_tool("echo", json!({"message": "back"})).await;
        if call.response.get("result").is_some() {
            echoed = Some(call);
            break;
        }
        assert_eq!(call.error_code(), -32010, "{:#}", call.response);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let echoed = echoed.expect("the gateway reconnects to the restarted backend");
    assert!(echoed.text().contains("back"), "{:#}", echoed.response);
}

async fn never_answers(front: Front, backend: Backend) {
    let env = Env::start(backend, "timeout_s = 2");
    let mut client = front.connect(&env.gateway, &[]).await;
    let started = std::time::Instant::now();
    let (tool, args) = env.surface().slow;
    let call = client.call_tool(tool, args()).await;
    assert_eq!(call.error_code(), -32011, "{:#}", call.response);
    assert_eq!(call.response["error"]["data"]["timeout_ms"], 2000);
    assert_eq!(call.response["error"]["data"]["backend"], "server");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connection is still good for the next call.
    let echoed = client.call_tool("echo", json!({"message": "still"})).await;
    assert!(echoed.text().contains("still"), "{:#}", echoed.response);
}

macro_rules! faults {
    ($($front:expr, $backend:expr => $killed:ident, $silent:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $killed() {
            killed_mid_call($front, $backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $silent() {
            never_answers($front, $backend).await;
        }
    )*};
}

// front door, backend => killed mid-call (-32010, then reconnects), no answer in timeout_s (-32011)
faults! {
    Front::Http, Backend::SseEverything => http_to_sse_everything_backend_killed_mid_call, http_to_sse_everything_backend_timeout;
    Front::Http, Backend::SsePy => http_to_sse_py_backend_killed_mid_call, http_to_sse_py_backend_timeout;
    Front::Http, Backend::WsPy => http_to_ws_py_backend_killed_mid_call, http_to_ws_py_backend_timeout;
    Front::Http, Backend::WsEverything => http_to_ws_everything_backend_killed_mid_call, http_to_ws_everything_backend_timeout;
}

/// A WebSocket server that stops answering (SIGSTOP: the TCP connection
/// stays up) is noticed by the keep-alive within two ping intervals: the
/// call gets -32010 long before its 30 s timeout, and once the server runs
/// again the next call reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_ws_py_silent_backend_is_dropped_by_keepalive() {
    let env = Env::start(Backend::WsPy, "timeout_s = 30\nping_s = 1");
    let client = Front::Http.connect(&env.gateway, &[]).await;
    let (task, _progress) = start_slow_call(client, env.surface()).await;
    let pid = env.server.pid();
    freeze(pid);
    let started = std::time::Instant::now();
    let joined = tokio::time::timeout(Duration::from_secs(15), task).await;
    resume(pid);
    let (mut client, exchange) = joined
        .expect("keep-alive ends the call")
        .expect("call task");
    assert_eq!(exchange.error_code(), -32010, "{:#}", exchange.response);
    assert!(
        exchange.response["error"]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("keep-alive"),
        "{:#}",
        exchange.response
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let echoed = client.call_tool("echo", json!({"message": "awake"})).await;
    assert!(echoed.text().contains("awake"), "{:#}", echoed.response);
}

/// The server sees the backend's configured headers and never the client's.
async fn only_backend_credentials(transport: &str, path: &str) {
    let server = PyWsServer::start();
    let url = format!(
        "{}://127.0.0.1:{}{path}",
        transport_scheme(transport),
        server.port()
    );
    let gateway = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n\
         [[backends]]\nname = \"server\"\ntransport = \"{transport}\"\nurl = {}\n\
         headers = {{ authorization = \"Bearer ${{BACKEND_TOKEN}}\", x-backend = \"b1\" }}\n",
        toml_string(&url)
    ))
    .env("BACKEND_TOKEN", "backend-secret")
    .start();
    let mut client = Front::Http
        .connect(
            &gateway,
            &[
                ("authorization", "Bearer client-secret"),
                ("x-client", "c1"),
                ("cookie", "session=client"),
            ],
        )
        .await;
    let call = client.call_tool("headers", json!({})).await;
    let seen: Value = serde_json::from_str(&call.text())
        .unwrap_or_else(|e| panic!("headers tool: {e}: {:#}", call.response));
    assert_eq!(seen["authorization"], "Bearer backend-secret", "{seen:#}");
    assert_eq!(seen["x-backend"], "b1", "{seen:#}");
    assert_eq!(
        seen["host"],
        format!("127.0.0.1:{}", server.port()),
        "{seen:#}"
    );
    for client_header in ["x-client", "cookie", "mcp-session-id"] {
        assert!(
            seen.get(client_header).is_none(),
            "{client_header} leaked: {seen:#}"
        );
    }
    if transport == "websocket" {
        assert_eq!(seen["sec-websocket-protocol"], "mcp", "{seen:#}");
    }
    let text = seen.to_string();
    assert!(!text.contains("client-secret"), "{seen:#}");
}

fn transport_scheme(transport: &str) -> &'static str {
    if transport == "websocket" {
        "ws"
    } else {
        "http"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_sse_backend_gets_only_its_own_headers() {
    only_backend_credentials("sse", "/sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_ws_backend_gets_only_its_own_headers() {
    only_backend_credentials("websocket", "/ws").await;
}

/// A test-only Ed25519 key for `mint_token`.
const BACKEND_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPckCy/jvmS0vawFwN8nv2AN5pfdW7B6OWSM2nMsPoFC
-----END PRIVATE KEY-----
";

/// With `mint_token`, the server gets a token the gateway minted for it
/// (audience the backend), on the SSE POSTs or the WebSocket upgrade.
async fn minted_token_reaches_backend(transport: &str, path: &str) {
    let server = PyWsServer::start();
    let url = format!(
        "{}://127.0.0.1:{}{path}",
        transport_scheme(transport),
        server.port()
    );
    let gateway = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n\
         [[backends]]\nname = \"server\"\ntransport = \"{transport}\"\nurl = {}\n\
         mint_token = {{ audience = \"https://backend.example/mcp\", key_file = \"{{{{dir}}}}/backend-key.pem\", ttl_s = 60 }}\n",
        toml_string(&url)
    ))
    .file("backend-key.pem", BACKEND_KEY_PEM)
    .start();
    let mut client = Front::Http
        .connect(&gateway, &[("authorization", "Bearer client-secret")])
        .await;
    let call = client.call_tool("headers", json!({})).await;
    let seen: Value = serde_json::from_str(&call.text())
        .unwrap_or_else(|e| panic!("headers tool: {e}: {:#}", call.response));
    let token = seen["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("no minted token: {seen:#}"));
    use base64::Engine;
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    assert_eq!(payload["aud"], "https://backend.example/mcp", "{payload:#}");
    assert_eq!(payload["iss"], "mcp-gateway", "{payload:#}");
    assert!(payload["sub"].is_string(), "{payload:#}");
    assert!(!seen.to_string().contains("client-secret"), "{seen:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_sse_backend_gets_a_minted_token() {
    minted_token_reaches_backend("sse", "/sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_ws_backend_gets_a_minted_token() {
    minted_token_reaches_backend("websocket", "/ws").await;
}

/// A WebSocket server that does not select the `mcp` subprotocol is
/// refused (as the SDK clients do): -32010 naming the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_ws_without_mcp_subprotocol_is_refused() {
    let server = TsWsServer::start_without_subprotocol();
    let gateway = gateway_for("websocket", &server.ws_url());
    let init = crate::util::http::post_json(
        &gateway.url(),
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "gateway-backend-tests", "version": "0"}}}),
    )
    .await
    .rpc();
    assert_eq!(init["error"]["code"], -32010, "{init:#}");
    assert!(
        init["error"]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("subprotocol"),
        "{init:#}"
    );
}

// --- parity with the direct connection ---------------------------------------------

fn gateway_for(transport: &str, url: &str) -> Gateway {
    Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n\
         [[backends]]\nname = \"server\"\ntransport = \"{transport}\"\nurl = {}\n",
        toml_string(url)
    ))
}

fn assert_demo_full(out: &Value) {
    let text = |v: &Value| {
        v["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        text(&out["ask_user"]).contains("blue"),
        "elicitation: {out}"
    );
    assert!(text(&out["summarize"]).contains("short"), "sampling: {out}");
    assert_eq!(
        out["slow_count"]["progress"].as_array().map(Vec::len),
        Some(3),
        "progress: {out}"
    );
}

/// server-everything over SSE: the Python SDK (handshake and 2026-07-28,
/// which the gateway bridges) and the TypeScript SDK see the same server
/// through the gateway as directly.
#[test]
fn sdk_clients_to_sse_everything_match_direct() {
    let server = Everything::start_sse();
    let gw = gateway_for("sse", &server.sse_url());
    let direct = format!("sse:{}", server.sse_url());
    for mode in ["legacy", "auto"] {
        same_through_gateway(py_client, mode, &direct, &gw.url(), "everything");
    }
    same_through_gateway(ts_client, "legacy", &direct, &gw.url(), "everything");
}

/// The Python SDK server over SSE, every demo feature (progress,
/// elicitation, sampling, resources, prompts, completion).
#[test]
fn sdk_clients_to_sse_py_match_direct() {
    let server = PyDemoServer::start_sse();
    let gw = gateway_for("sse", &server.sse_url());
    let direct = format!("sse:{}", server.sse_url());
    for mode in ["legacy", "auto"] {
        let out = same_through_gateway(py_client, mode, &direct, &gw.url(), "demo-full");
        assert_demo_full(&out);
    }
    let out = same_through_gateway(ts_client, "legacy", &direct, &gw.url(), "demo-full");
    assert_demo_full(&out);
}

/// The Python SDK 1.30 WebSocket server through the gateway equals the very
/// same server reached directly over its SSE endpoint (the drivers have no
/// WebSocket).
#[test]
fn sdk_clients_to_ws_py_match_direct() {
    let server = PyWsServer::start();
    let gw = gateway_for("websocket", &server.ws_url());
    let direct = format!("sse:{}", server.sse_url());
    for mode in ["legacy", "auto"] {
        let out = same_through_gateway(py_client, mode, &direct, &gw.url(), "demo-full");
        assert_demo_full(&out);
    }
    let out = same_through_gateway(ts_client, "legacy", &direct, &gw.url(), "demo-full");
    assert_demo_full(&out);
}

/// server-everything over a WebSocket through the gateway equals
/// server-everything over its own SSE mode, directly.
#[test]
fn sdk_clients_to_ws_everything_match_direct() {
    let ws_server = TsWsServer::start();
    let sse_server = Everything::start_sse();
    let gw = gateway_for("websocket", &ws_server.ws_url());
    let direct = format!("sse:{}", sse_server.sse_url());
    for mode in ["legacy", "auto"] {
        same_through_gateway(py_client, mode, &direct, &gw.url(), "everything");
    }
    same_through_gateway(ts_client, "legacy", &direct, &gw.url(), "everything");
}
