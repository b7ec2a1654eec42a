//! The client front doors of issue 4 — legacy HTTP+SSE (`/sse` +
//! `/messages`) and WebSocket (`/ws`) — and back-pressure.
//!
//! - `matrix!`: Rust clients (`util::front`) through each front door to each
//!   backend × {tools/list, tools/call with progress, resources/read, a
//!   server→client request}, named `{front}_to_{backend}_{scenario}`. A
//!   backend is one `Backend` variant plus a row; so is a front door.
//! - `parity!`: the official SDK clients (Python `sse_client`, TypeScript
//!   `SSEClientTransport` and `WebSocketClientTransport`, Python 1.30
//!   `websocket_client`) through the gateway and straight at the server,
//!   normalized results identical.
//! - Refusals: every bad input gets its status or close code while a client
//!   on another transport carries on; dead peers, shutdown.
//! - Back-pressure: a client that stops reading is cut off and the
//!   gateway's memory stays flat while a fast producer floods it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::util::front::{Exchange, SseClient, WsClient, WsEnd, front_backend_matrix};
use crate::util::http::{self, McpSession};
use crate::util::servers::{toml_array, toml_string};
use crate::util::surfaces::{DEMO, EVERYTHING, PY_DEMO, Surface};
use crate::util::{
    DemoServer, Everything, Gateway, PyDemoServer, py_client, py_ws_client, ts_client,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE: &str = "2025-11-25";

fn listen() -> &'static str {
    "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n"
}

// --- backends -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Backend {
    /// `mcp-gateway demo-server` over stdio.
    StdioDemo,
    /// `mcp-gateway demo-server --http`.
    HttpDemo,
    /// server-everything over stdio (handshake era only).
    StdioEverything,
    /// The Python SDK 2.3 twin of the demo server over Streamable HTTP.
    HttpPy,
}

/// A running server (stdio servers run inside the gateway: `None`).
#[allow(dead_code)]
enum Server {
    None,
    Demo(DemoServer),
    Py(PyDemoServer),
    Everything(Everything),
}

impl Backend {
    fn surface(self) -> &'static Surface {
        match self {
            Backend::StdioDemo | Backend::HttpDemo => &DEMO,
            Backend::HttpPy => &PY_DEMO,
            Backend::StdioEverything => &EVERYTHING,
        }
    }

    /// A server and the `[[backends]]` table (named "server") reaching it.
    fn start(self) -> (Server, String) {
        let stdio = |argv: Vec<String>| {
            format!(
                "[[backends]]\nname = \"server\"\ntransport = \"stdio\"\ncommand = {}\n",
                toml_array(&argv)
            )
        };
        let http = |url: &str| {
            format!(
                "[[backends]]\nname = \"server\"\ntransport = \"streamable_http\"\nurl = {}\n",
                toml_string(url)
            )
        };
        match self {
            Backend::StdioDemo => (Server::None, stdio(DemoServer::stdio_argv())),
            Backend::StdioEverything => (Server::None, stdio(Everything::stdio_argv())),
            Backend::HttpDemo => {
                let server = DemoServer::start_http();
                let table = http(server.url());
                (Server::Demo(server), table)
            }
            Backend::HttpPy => {
                let server = PyDemoServer::start_http();
                let table = http(&server.url());
                (Server::Py(server), table)
            }
        }
    }

    /// Another instance for a direct run, and the driver target reaching it.
    fn direct(self) -> (Server, String) {
        match self {
            Backend::StdioDemo => (Server::None, DemoServer::stdio_target()),
            Backend::StdioEverything => (Server::None, Everything::stdio_target()),
            Backend::HttpDemo => {
                let server = DemoServer::start_http();
                let url = server.url().to_owned();
                (Server::Demo(server), url)
            }
            Backend::HttpPy => {
                let server = PyDemoServer::start_http();
                let url = server.url();
                (Server::Py(server), url)
            }
        }
    }
}

/// A backend and a gateway in front of it.
struct Env {
    backend: Backend,
    _server: Server,
    gateway: Gateway,
}

impl Env {
    fn start(backend: Backend, extra: &str) -> Env {
        let (server, table) = backend.start();
        let gateway = Gateway::start(&format!("{}{extra}\n{table}", listen()));
        Env {
            backend,
            _server: server,
            gateway,
        }
    }
}

// --- front doors -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Front {
    /// Legacy HTTP+SSE, 2024-11-05 (the revision of that transport).
    Sse,
    /// WebSocket, 2025-11-25.
    Ws,
}

enum Client {
    Sse(Box<SseClient>),
    Ws(Box<WsClient>),
}

impl Front {
    /// Connects to the route `/servers/server/…` and initializes.
    async fn connect(self, gateway: &Gateway) -> Client {
        match self {
            Front::Sse => {
                let mut c = SseClient::open(&gateway.url_for("/servers/server/sse"), &[]).await;
                let init = c.initialize("2024-11-05").await;
                assert_eq!(init["protocolVersion"], "2024-11-05", "{init}");
                Client::Sse(Box::new(c))
            }
            Front::Ws => {
                let mut c = WsClient::connect(&ws_url(gateway, "/servers/server/ws")).await;
                let init = c.initialize(HANDSHAKE).await;
                assert_eq!(init["protocolVersion"], HANDSHAKE, "{init}");
                Client::Ws(Box::new(c))
            }
        }
    }
}

impl Client {
    async fn call(&mut self, method: &str, params: Value, progress: bool) -> Exchange {
        match self {
            Client::Sse(c) => c.call(method, params, progress).await,
            Client::Ws(c) => c.call(method, params, progress).await,
        }
    }
}

fn ws_url(gateway: &Gateway, path: &str) -> String {
    format!("ws://{}{path}", gateway.addr())
}

// --- the matrix ---------------------------------------------------------------------------

async fn tools_list(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway).await;
    let listed = client.call("tools/list", json!({}), false).await;
    let names: Vec<&str> = listed.result()["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {:#}", listed.response))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in env.backend.surface().tools {
        assert!(names.contains(tool), "{tool} not in {names:?}");
    }
}

async fn tools_call(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway).await;
    let (tool, args, text) = env.backend.surface().progress;
    let call = client
        .call(
            "tools/call",
            json!({"name": tool, "arguments": args()}),
            true,
        )
        .await;
    assert!(call.text().contains(text), "{:#}", call.response);
    let progress = call.progress();
    assert_eq!(progress.len(), 3, "{:#?}", call.notifications);
    let token = format!("progress-{}", call.response["id"]);
    for (n, p) in progress.iter().enumerate() {
        // The client's own token, mapped back by the gateway.
        assert_eq!(p["params"]["progressToken"], token.as_str(), "{p}");
        assert_eq!(
            p["params"]["progress"].as_f64(),
            Some(n as f64 + 1.0),
            "{p}"
        );
    }
}

async fn resources_read(front: Front, backend: Backend) {
    let env = Env::start(backend, "");
    let mut client = front.connect(&env.gateway).await;
    let (uri, text) = env.backend.surface().resource;
    let read = client
        .call("resources/read", json!({"uri": uri}), false)
        .await;
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
    let mut client = front.connect(&env.gateway).await;
    let (tool, args, method, text) = env.backend.surface().server_request;
    let call = client
        .call(
            "tools/call",
            json!({"name": tool, "arguments": args()}),
            false,
        )
        .await;
    assert!(call.text().contains(text), "{:#}", call.response);
    let [request] = call.server_requests.as_slice() else {
        panic!("one server request expected: {call:#?}");
    };
    assert_eq!(request["method"], method, "{request}");
}

// front door, backend => tools/list, tools/call with progress, resources/read, server→client request
front_backend_matrix! {
    Front::Sse, Backend::StdioDemo => sse_to_stdio_demo_tools_list, sse_to_stdio_demo_tools_call, sse_to_stdio_demo_resources_read, sse_to_stdio_demo_server_request;
    Front::Sse, Backend::HttpDemo => sse_to_http_demo_tools_list, sse_to_http_demo_tools_call, sse_to_http_demo_resources_read, sse_to_http_demo_server_request;
    Front::Sse, Backend::StdioEverything => sse_to_stdio_everything_tools_list, sse_to_stdio_everything_tools_call, sse_to_stdio_everything_resources_read, sse_to_stdio_everything_server_request;
    Front::Sse, Backend::HttpPy => sse_to_http_py_tools_list, sse_to_http_py_tools_call, sse_to_http_py_resources_read, sse_to_http_py_server_request;
    Front::Ws, Backend::StdioDemo => ws_to_stdio_demo_tools_list, ws_to_stdio_demo_tools_call, ws_to_stdio_demo_resources_read, ws_to_stdio_demo_server_request;
    Front::Ws, Backend::HttpDemo => ws_to_http_demo_tools_list, ws_to_http_demo_tools_call, ws_to_http_demo_resources_read, ws_to_http_demo_server_request;
    Front::Ws, Backend::StdioEverything => ws_to_stdio_everything_tools_list, ws_to_stdio_everything_tools_call, ws_to_stdio_everything_resources_read, ws_to_stdio_everything_server_request;
    Front::Ws, Backend::HttpPy => ws_to_http_py_tools_list, ws_to_http_py_tools_call, ws_to_http_py_resources_read, ws_to_http_py_server_request;
}

// --- parity with the official SDK clients ----------------------------------------------

/// An SDK client driver and how it reaches the gateway's default route.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    /// Python SDK 2.3 `sse_client`.
    PySse,
    /// TypeScript SDK 1.32 `SSEClientTransport`.
    TsSse,
    /// TypeScript SDK 1.32 `WebSocketClientTransport`.
    TsWs,
    /// Python SDK 1.30 `websocket_client`.
    PyWs,
}

impl Sdk {
    fn run(self, target: &str, scenario: &str) -> Value {
        match self {
            Sdk::PySse => py_client("legacy", target, scenario, &[]),
            Sdk::TsSse | Sdk::TsWs => ts_client("legacy", target, scenario, &[]),
            Sdk::PyWs => py_ws_client("legacy", target, scenario, &[]),
        }
    }

    fn gateway_target(self, gateway: &Gateway) -> String {
        match self {
            Sdk::PySse | Sdk::TsSse => format!("sse:{}", gateway.url_for("/sse")),
            Sdk::TsWs | Sdk::PyWs => format!("ws:{}", ws_url(gateway, "/ws")),
        }
    }
}

fn parity(sdk: Sdk, backend: Backend) {
    let scenario = backend.surface().scenario;
    let (_direct_server, direct_target) = backend.direct();
    let direct = sdk.run(&direct_target, scenario);
    let env = Env::start(backend, "");
    let through = sdk.run(&sdk.gateway_target(&env.gateway), scenario);
    assert!(through.get("connect_error").is_none(), "{through}");
    assert_eq!(
        direct, through,
        "{sdk:?} to {backend:?}: direct and through the gateway differ"
    );
    if scenario == "demo-full" {
        let text = |v: &Value| v["content"][0]["text"].as_str().unwrap_or("").to_owned();
        assert!(text(&through["ask_user"]).contains("blue"), "{through}");
        assert!(text(&through["summarize"]).contains("short"), "{through}");
        assert_eq!(
            through["slow_count"]["progress"].as_array().map(Vec::len),
            Some(3),
            "{through}"
        );
    } else {
        assert_eq!(
            through["long_running"]["progress"].as_array().map(Vec::len),
            Some(4),
            "{through}"
        );
    }
}

macro_rules! parity {
    ($($name:ident: $sdk:expr, $backend:expr;)*) => {$(
        #[test]
        fn $name() {
            parity($sdk, $backend);
        }
    )*};
}

parity! {
    sse_py_sdk_to_stdio_demo: Sdk::PySse, Backend::StdioDemo;
    sse_py_sdk_to_http_demo: Sdk::PySse, Backend::HttpDemo;
    sse_py_sdk_to_stdio_everything: Sdk::PySse, Backend::StdioEverything;
    sse_py_sdk_to_http_py: Sdk::PySse, Backend::HttpPy;
    sse_ts_sdk_to_stdio_demo: Sdk::TsSse, Backend::StdioDemo;
    sse_ts_sdk_to_http_demo: Sdk::TsSse, Backend::HttpDemo;
    sse_ts_sdk_to_stdio_everything: Sdk::TsSse, Backend::StdioEverything;
    sse_ts_sdk_to_http_py: Sdk::TsSse, Backend::HttpPy;
    ws_ts_sdk_to_stdio_demo: Sdk::TsWs, Backend::StdioDemo;
    ws_ts_sdk_to_http_demo: Sdk::TsWs, Backend::HttpDemo;
    ws_ts_sdk_to_stdio_everything: Sdk::TsWs, Backend::StdioEverything;
    ws_ts_sdk_to_http_py: Sdk::TsWs, Backend::HttpPy;
    ws_py_sdk_to_stdio_demo: Sdk::PyWs, Backend::StdioDemo;
    ws_py_sdk_to_http_demo: Sdk::PyWs, Backend::HttpDemo;
    ws_py_sdk_to_stdio_everything: Sdk::PyWs, Backend::StdioEverything;
    ws_py_sdk_to_http_py: Sdk::PyWs, Backend::HttpPy;
}

/// The Python SDK's default mode probes `server/discover` first; over the
/// legacy SSE front door that is refused, and it falls back to the handshake.
#[test]
fn sse_py_sdk_auto_falls_back_to_the_handshake() {
    let env = Env::start(Backend::StdioDemo, "");
    let out = py_client(
        "auto",
        &format!("sse:{}", env.gateway.url_for("/servers/server/sse")),
        "tools",
        &[
            "--call",
            "echo",
            "--args",
            r#"{"message":"hi"}"#,
            "--expect-protocol",
            HANDSHAKE,
        ],
    );
    assert_eq!(
        out["calls"][0]["result"]["content"][0]["text"], "hi",
        "{out}"
    );
}

// --- refusals ----------------------------------------------------------------------------

/// A Streamable HTTP session and a WebSocket client that must be unaffected
/// by whatever the test throws at another transport.
struct Bystanders {
    http: McpSession,
    ws: WsClient,
    sse: SseClient,
}

impl Bystanders {
    async fn start(gateway: &Gateway) -> Bystanders {
        let http = McpSession::initialize(&gateway.url(), HANDSHAKE, &[]).await;
        let mut ws = WsClient::connect(&ws_url(gateway, "/ws")).await;
        ws.initialize(HANDSHAKE).await;
        let mut sse = SseClient::open(&gateway.url_for("/sse"), &[]).await;
        sse.initialize("2024-11-05").await;
        Bystanders { http, ws, sse }
    }

    async fn still_served(&mut self) {
        let echo = json!({"name": "echo", "arguments": {"message": "still here"}});
        let r = self.http.request("tools/call", echo.clone()).await;
        assert_eq!(r["result"]["content"][0]["text"], "still here", "{r}");
        let r = self.ws.call("tools/call", echo.clone(), false).await;
        assert_eq!(r.text(), "still here");
        let r = self.sse.call("tools/call", echo, false).await;
        assert_eq!(r.text(), "still here");
    }
}

fn rpc_code(body: &str) -> i64 {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_i64())
        .unwrap_or_else(|| panic!("not a JSON-RPC error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refusals_have_their_status() {
    let env = Env::start(Backend::StdioDemo, "[limits]\nmax_body_bytes = 4096\n");
    let gw = &env.gateway;
    let mut bystanders = Bystanders::start(gw).await;
    let sse = gw.url_for("/sse");

    // GET /sse
    let r = http::get(&sse, &[("origin", "http://evil.example")]).await;
    assert_eq!(r.status, 403, "foreign Origin: {r:?}");
    let r = http::get(&sse, &[("accept", "application/json")]).await;
    assert_eq!(r.status, 406, "Accept without text/event-stream: {r:?}");
    let r = http::get(&gw.url_for("/servers/nope/sse"), &[]).await;
    assert_eq!(r.status, 404, "unknown backend: {r:?}");

    // POST /messages
    let mut client = SseClient::open(&sse, &[]).await;
    assert!(
        client.endpoint.starts_with("/messages?session_id="),
        "{}",
        client.endpoint
    );
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let r = http::post_json(&gw.url_for("/messages"), &[], &ping).await;
    assert_eq!(r.status, 400, "no session id: {r:?}");
    assert_eq!(rpc_code(&r.body), -32600);
    let r = http::post_json(&gw.url_for("/messages?session_id=0123"), &[], &ping).await;
    assert_eq!(r.status, 404, "unknown session: {r:?}");
    // The TypeScript SDK's spelling reaches the same connection.
    let camel = gw.url_for(&format!("/messages?sessionId={}", client.session_id()));
    let r = http::post_json(&camel, &[], &ping).await;
    assert_eq!(r.status, 202, "sessionId: {r:?}");
    assert_eq!(
        client.next_message(TIMEOUT).await,
        Some(json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
    );
    // Another route's endpoint does not reach this connection.
    let foreign = gw.url_for(&format!(
        "/servers/server/messages?session_id={}",
        client.session_id()
    ));
    let r = http::post_json(&foreign, &[], &ping).await;
    assert_eq!(r.status, 404, "another route: {r:?}");
    let post = client.post_url.clone();
    let r = http::post_raw(&post, &[("content-type", "text/plain")], &ping.to_string()).await;
    assert_eq!(r.status, 415, "{r:?}");
    let r = http::post_raw(
        &post,
        &[("origin", "http://evil.example")],
        &ping.to_string(),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(5000)
    );
    let r = http::post_raw(&post, &[], &big).await;
    assert_eq!(r.status, 413, "{r:?}");
    let r = http::post_raw(&post, &[], "{not json").await;
    assert_eq!((r.status, rpc_code(&r.body)), (400, -32700), "{r:?}");
    let r = http::post_raw(&post, &[], r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#).await;
    assert_eq!((r.status, rpc_code(&r.body)), (400, -32600), "{r:?}");
    let r = http::post_raw(&post, &[], &format!("[{ping}]")).await;
    assert_eq!((r.status, rpc_code(&r.body)), (400, -32600), "batch: {r:?}");

    // Before initialize, requests are refused on the stream.
    let list = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
    assert_eq!(client.post(&list).await.status, 202);
    let refused = client.next_message(TIMEOUT).await.expect("an answer");
    assert_eq!(refused["id"], 4, "{refused}");
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    client.initialize("2024-11-05").await;
    let again = json!({"jsonrpc": "2.0", "id": 5, "method": "initialize", "params": {}});
    assert_eq!(client.post(&again).await.status, 202);
    let refused = client.next_message(TIMEOUT).await.expect("an answer");
    assert_eq!(
        refused["error"]["code"], -32600,
        "second initialize: {refused}"
    );
    // And the connection still works.
    let echo = client
        .call(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "ok"}}),
            false,
        )
        .await;
    assert_eq!(echo.text(), "ok");
    bystanders.still_served().await;

    // The stream ending ends the session: its endpoint is then unknown.
    drop(client);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = http::post_json(&post, &[], &ping).await;
        if r.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "session still open: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bystanders.still_served().await;
}

fn text_frame(bytes: &[u8]) -> Message {
    Message::Frame(Frame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Text),
        true,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_refusals_have_their_status_or_close_code() {
    let env = Env::start(Backend::StdioDemo, "[limits]\nmax_message_bytes = 4096\n");
    let gw = &env.gateway;
    let mut bystanders = Bystanders::start(gw).await;
    let url = ws_url(gw, "/ws");
    let mcp = ("sec-websocket-protocol", "mcp");

    // Refused upgrades.
    assert_eq!(
        WsClient::refused_status(&url, &[]).await,
        400,
        "no subprotocol"
    );
    assert_eq!(
        WsClient::refused_status(&url, &[("sec-websocket-protocol", "graphql-ws")]).await,
        400,
        "another subprotocol"
    );
    assert_eq!(
        WsClient::refused_status(&url, &[mcp, ("origin", "http://evil.example")]).await,
        403
    );
    assert_eq!(
        WsClient::refused_status(&ws_url(gw, "/servers/nope/ws"), &[mcp]).await,
        404
    );
    // A plain GET is not an upgrade.
    let r = http::get(&gw.url_for("/ws"), &[]).await;
    assert_eq!(r.status, 400, "{r:?}");

    // Text that is not a JSON-RPC message: an error frame, and the socket stays open.
    let mut c = WsClient::connect(&url).await;
    for (text, code) in [
        ("{not json", -32700),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
    ] {
        c.send(Message::text(text)).await;
        let error = c.next_json(TIMEOUT).await.expect("an error frame");
        assert_eq!(error["error"]["code"], code, "{text}: {error}");
        assert_eq!(error["id"], Value::Null, "{text}: {error}");
    }
    // Before initialize: ping is answered, anything else refused.
    c.send_json(&json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
        .await;
    assert_eq!(
        c.next_json(TIMEOUT).await,
        Some(json!({"jsonrpc": "2.0", "id": 7, "result": {}}))
    );
    let refused = c.call("tools/list", json!({}), false).await;
    assert_eq!(refused.error_code(), -32600);
    c.initialize(HANDSHAKE).await;
    let again = c
        .call("initialize", json!({"protocolVersion": HANDSHAKE}), false)
        .await;
    assert_eq!(again.error_code(), -32600);
    let echo = c
        .call(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "ok"}}),
            false,
        )
        .await;
    assert_eq!(echo.text(), "ok");

    // Transport faults close the socket with their code.
    let oversized = json!({"jsonrpc": "2.0", "id": 1, "method": "ping",
        "params": {"x": "a".repeat(5000)}});
    let cases: [(&str, Message, u16); 3] = [
        ("binary frame", Message::binary(b"{}".to_vec()), 1003),
        ("invalid UTF-8", text_frame(b"{\"a\":\"\xff\xfe\"}"), 1007),
        (
            "over max_message_bytes",
            Message::text(oversized.to_string()),
            1009,
        ),
    ];
    for (what, frame, code) in cases {
        let mut c = WsClient::connect(&url).await;
        c.initialize(HANDSHAKE).await;
        c.send(frame).await;
        let end = c.end(TIMEOUT).await;
        assert_eq!(end.code(), Some(code), "{what}: {end:?}");
    }
    bystanders.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_dead_peer_is_dropped_within_two_ping_intervals() {
    let env = Env::start(Backend::StdioDemo, "ws_ping_s = 1\n");
    let mut alive = WsClient::connect(&ws_url(&env.gateway, "/ws")).await;
    alive.initialize(HANDSHAKE).await;
    let mut silent = WsClient::connect(&ws_url(&env.gateway, "/ws")).await;
    silent.initialize(HANDSHAKE).await;
    // The silent client reads nothing, so it answers no ping; the alive one
    // reads (tungstenite answers pings while reading).
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        // Returns only if the reading client's socket ends.
        while let Some(Ok(_)) = alive.ws.next().await {}
        alive
    });
    env.gateway.wait_for_log(Duration::from_secs(10), |l| {
        l["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no answer to pings"))
    });
    assert!(started.elapsed() >= Duration::from_secs(2), "too early");
    let (code, reason) = silent.raw_close(TIMEOUT).await.expect("a close frame");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.starts_with("no answer to pings"), "{reason}");
    // The reading client outlives several intervals.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!reader.is_finished(), "the reading client was dropped");
    reader.abort();
}

/// SIGTERM: calls in flight finish, then the socket closes with 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_shutdown_closes_with_1001_after_calls_finish() {
    let env = Env::start(Backend::StdioDemo, "");
    let mut c = WsClient::connect(&ws_url(&env.gateway, "/ws")).await;
    c.initialize(HANDSHAKE).await;
    let mut sse = SseClient::open(&env.gateway.url_for("/sse"), &[]).await;
    sse.initialize("2024-11-05").await;
    c.send_json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "slow_count", "arguments": {"steps": 4, "delay_ms": 250}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(env.gateway.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let done = c.until_response(9).await;
    assert_eq!(done.text(), "counted to 4");
    let end = c.end(TIMEOUT).await;
    assert_eq!(
        end,
        WsEnd::Close(1001, "the gateway is shutting down".into())
    );
    // The legacy SSE stream ends too.
    assert_eq!(sse.next_message(TIMEOUT).await, None);
}

// --- back-pressure -----------------------------------------------------------------------

/// The gateway's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 10 000 progress notifications as fast as the demo server sends them;
/// `FLOODS` of them make about 27 MB of JSON, far more than the socket
/// buffers hold, in about 10 s.
fn flood(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "slow_count", "arguments": {"steps": 10000, "delay_ms": 0},
        "_meta": {"progressToken": format!("flood-{id}")}}})
}

/// The default. Not much smaller: a stdio backend's pipe alone holds ~350
/// of these messages, which arrive in one burst after the gateway was not
/// scheduled for a moment, and a reading client must not be cut for that.
const QUEUE: usize = 1024;

/// Samples the gateway's RSS while the flood runs, until a log line says a
/// client was cut off for not reading (at most 30 s, about the flood's
/// length); returns the peak RSS and that line.
fn watch_until_cut(gateway: &Gateway, transport: &str) -> (u64, Option<Value>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peak = 0;
    loop {
        peak = peak.max(rss_kib(gateway.pid()));
        let cut = gateway.logs().into_iter().find(|l| {
            l["fields"]["transport"] == transport
                && l["fields"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("the client stopped reading"))
        });
        if cut.is_some() || Instant::now() > deadline {
            return (peak, cut);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Warms the gateway up (code paths, allocator arenas, a backend process)
/// with the same kind of traffic, read promptly; returns the RSS after.
async fn baseline(gateway: &Gateway) -> u64 {
    let mut c = WsClient::connect(&ws_url(gateway, "/ws")).await;
    c.initialize(HANDSHAKE).await;
    for id in 1..=8 {
        c.send_json(
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "slow_count", "arguments": {"steps": 1000, "delay_ms": 0},
            "_meta": {"progressToken": format!("warm-{id}")}}}),
        )
        .await;
    }
    let mut responses = 0;
    while responses < 8 {
        let message = c
            .next_json(TIMEOUT)
            .await
            .expect("the warm-up socket ended");
        if http::is_response(&message) {
            responses += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss_kib(gateway.pid())
}

const FLOODS: i64 = 16;

/// Growth that means buffering without bound. Calibrated with the queue
/// limit lifted (10 000 000): RSS then grew by 26–37 MiB; with the limit
/// (1024) it grows by 2–4 MiB (mimalloc keeps freed pages a while).
const FLAT_KIB: u64 = 8 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_slow_reader_is_cut_and_memory_stays_flat() {
    let env = Env::start(
        Backend::StdioDemo,
        &format!("[limits]\nmax_queued_messages = {QUEUE}\n"),
    );
    let gw = &env.gateway;
    let before = baseline(gw).await;
    let mut bystander = SseClient::open(&gw.url_for("/sse"), &[]).await;
    bystander.initialize("2024-11-05").await;

    let mut slow = WsClient::connect(&ws_url(gw, "/ws")).await;
    slow.initialize(HANDSHAKE).await;
    for id in 1..=FLOODS {
        slow.send_json(&flood(id)).await;
    }
    // From here on the slow client reads nothing.
    let (peak, cut) = tokio::task::block_in_place(|| watch_until_cut(gw, "websocket"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(gw.pid());
    eprintln!("gateway RSS KiB: before {before}, peak {peak}, after {after}");
    assert!(
        peak.saturating_sub(before) < FLAT_KIB,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    assert!(
        after.saturating_sub(before) < FLAT_KIB,
        "RSS stayed at {after} KiB (from {before} KiB)"
    );
    let line = cut.unwrap_or_else(|| panic!("no slow client was cut off\n{}", gw.stderr()));
    assert_eq!(
        line["fields"]["reason"],
        format!("the client stopped reading ({QUEUE} messages queued)"),
        "{line}"
    );
    // The slow client, reading again, finds its socket closed.
    let end = slow.end(TIMEOUT).await;
    assert!(
        matches!(&end, WsEnd::Dropped(_)) || end.code() == Some(1008),
        "{end:?}"
    );
    // The other transport's client never noticed.
    let echo = bystander
        .call(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "fine"}}),
            false,
        )
        .await;
    assert_eq!(echo.text(), "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_slow_reader_is_cut_and_memory_stays_flat() {
    let env = Env::start(
        Backend::StdioDemo,
        &format!("[limits]\nmax_queued_messages = {QUEUE}\n"),
    );
    let gw = &env.gateway;
    let before = baseline(gw).await;
    let mut bystander = WsClient::connect(&ws_url(gw, "/ws")).await;
    bystander.initialize(HANDSHAKE).await;

    let mut slow = SseClient::open(&gw.url_for("/sse"), &[]).await;
    slow.initialize("2024-11-05").await;
    for id in 1..=FLOODS {
        assert_eq!(slow.post(&flood(id)).await.status, 202);
    }
    let (peak, cut) = tokio::task::block_in_place(|| watch_until_cut(gw, "sse"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(gw.pid());
    eprintln!("gateway RSS KiB: before {before}, peak {peak}, after {after}");
    assert!(
        peak.saturating_sub(before) < FLAT_KIB,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    assert!(
        after.saturating_sub(before) < FLAT_KIB,
        "RSS stayed at {after} KiB (from {before} KiB)"
    );
    assert!(cut.is_some(), "no slow client was cut off\n{}", gw.stderr());
    // Its session is gone: the endpoint is unknown now.
    let r = http::post_json(
        &slow.post_url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 99, "method": "ping"}),
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    // Reading again, the client gets what was queued, then the end.
    let deadline = Instant::now() + TIMEOUT;
    while slow.next_message(TIMEOUT).await.is_some() {
        assert!(Instant::now() < deadline, "the stream did not end");
    }
    let echo = bystander
        .call(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "fine"}}),
            false,
        )
        .await;
    assert_eq!(echo.text(), "fine");
}
