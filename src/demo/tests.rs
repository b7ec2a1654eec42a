//! Demo server tests: the core through the stdio transport (in-memory pipes), and the HTTP transport on 127.0.0.1:0 with a tiny hand-rolled HTTP/1.1 client.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::core::{self, Demo, EnvelopeCheck, PendingRequests};
use super::{http, stdio};

/// A read "times out" only if the server is stuck. (Real time: tokio's `test-util`
/// feature, needed for paused time, is not enabled in this crate.)
const WAIT: Duration = Duration::from_secs(10);

fn modern_meta(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    })
}

/// A modern request's params: `params` plus the 2026-07-28 envelope.
fn modern(mut params: Value, capabilities: Value) -> Value {
    params["_meta"] = modern_meta(capabilities);
    params
}

struct StdioClient {
    input: DuplexStream,
    output: Lines<BufReader<DuplexStream>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl StdioClient {
    fn start() -> StdioClient {
        let (input, server_input) = tokio::io::duplex(1 << 16);
        let (server_output, output) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(stdio::serve(Demo::new(), server_input, server_output));
        StdioClient {
            input,
            output: BufReader::new(output).lines(),
            server,
        }
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.input
            .write_all(line.as_bytes())
            .await
            .expect("server reads its input");
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.output.next_line())
            .await
            .expect("server answers")
            .expect("output readable")
            .expect("server still running");
        serde_json::from_str(&line).expect("server writes JSON lines")
    }

    async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        self.recv().await
    }

    async fn initialize(&mut self, version: &str, capabilities: Value) -> Value {
        let params = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "clientInfo": { "name": "test", "version": "0" },
        });
        let reply = self.request(json!(0), "initialize", params).await;
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        reply
    }
}

fn text(reply: &Value) -> &str {
    reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("<no text>")
}

// ---- core ----

#[test]
fn completion_values() {
    fn check(reference: Value, argument: (&str, &str), expected: &[&str]) {
        let demo = Demo::new();
        let params =
            json!({ "ref": reference, "argument": { "name": argument.0, "value": argument.1 } });
        let era = core::route_era(&modern(params.clone(), json!({})), None).expect("modern");
        let (out, _messages) = tokio::sync::mpsc::channel(8);
        let ctx = core::Ctx::new(era, json!(1), out);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let result = runtime
            .block_on(core::handle_request(
                &demo,
                &ctx,
                "completion/complete",
                &params,
            ))
            .expect("completion succeeds");
        assert_eq!(
            result["completion"]["values"],
            json!(expected),
            "{reference} {argument:?}"
        );
    }
    let greet = json!({ "type": "ref/prompt", "name": "greet" });
    let items = json!({ "type": "ref/resource", "uri": "demo://items/{id}" });
    check(
        greet.clone(),
        ("style", ""),
        &["formal", "friendly", "pirate"],
    );
    check(greet.clone(), ("style", "f"), &["formal", "friendly"]);
    check(greet.clone(), ("style", "fo"), &["formal"]);
    check(greet.clone(), ("style", "x"), &[]);
    check(greet, ("name", ""), &[]);
    check(items.clone(), ("id", ""), &["1", "2", "42"]);
    check(items, ("id", "4"), &["42"]);
}

#[test]
fn envelope_classification() {
    fn check(params: Value, expected: &str) {
        let got = match core::read_envelope(&params) {
            Ok(EnvelopeCheck::Absent) => "absent".to_owned(),
            Ok(EnvelopeCheck::Modern(_)) => "modern".to_owned(),
            Ok(EnvelopeCheck::Other(version)) => format!("other {version}"),
            Err(error) => format!("error {}", error.code()),
        };
        assert_eq!(got, expected, "{params}");
    }
    check(json!({}), "absent");
    check(json!({ "_meta": { "progressToken": 1 } }), "absent");
    check(modern(json!({}), json!({})), "modern");
    check(
        json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } }),
        "error -32602",
    );
    check(
        json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": 7 } }),
        "error -32602",
    );
    check(
        json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": "2099-01-01" } }),
        "other 2099-01-01",
    );
    let mut bad_level = modern(json!({}), json!({}));
    bad_level["_meta"]["io.modelcontextprotocol/logLevel"] = json!("loud");
    check(bad_level, "error -32602");
}

#[test]
fn initialize_negotiates_version() {
    fn check(requested: &str, expected: &str) {
        let params = json!({ "protocolVersion": requested, "capabilities": {} });
        let (session, result) = core::initialize(&params, Arc::new(PendingRequests::default()));
        assert_eq!(session.protocol_version(), expected);
        assert_eq!(result["protocolVersion"], expected);
        assert_eq!(result["serverInfo"]["name"], "mcp-gateway-demo");
    }
    check("2024-11-05", "2024-11-05");
    check("2025-03-26", "2025-03-26");
    check("2025-06-18", "2025-06-18");
    check("2025-11-25", "2025-11-25");
    check("2026-07-28", "2025-11-25");
    check("1999-01-01", "2025-11-25");
}

// ---- stdio, 2026-07-28 ----

#[tokio::test]
async fn stdio_discover_and_cacheable_results() {
    let mut client = StdioClient::start();
    let reply = client
        .request(json!("d"), "server/discover", modern(json!({}), json!({})))
        .await;
    assert_eq!(reply["id"], "d");
    let result = &reply["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["supportedVersions"][0], "2026-07-28");
    assert!(
        result["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2025-11-25")))
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-gateway-demo"
    );
    assert_eq!(result["cacheScope"], "public");
    assert!(result["ttlMs"].is_u64());
    assert_eq!(result["capabilities"]["resources"]["subscribe"], true);

    for method in [
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    ] {
        let reply = client
            .request(json!(1), method, modern(json!({}), json!({})))
            .await;
        assert_eq!(reply["result"]["resultType"], "complete", "{method}");
        assert!(reply["result"]["ttlMs"].is_u64(), "{method}");
        assert_eq!(reply["result"]["cacheScope"], "public", "{method}");
    }
    let read = modern(json!({ "uri": "demo://items/42" }), json!({}));
    let reply = client.request(json!(2), "resources/read", read).await;
    assert_eq!(reply["result"]["contents"][0]["text"], "item 42");
    assert!(reply["result"]["ttlMs"].is_u64());

    let call = modern(
        json!({ "name": "echo", "arguments": { "message": "hi" } }),
        json!({}),
    );
    let reply = client.request(json!(3), "tools/call", call).await;
    assert_eq!(
        reply["result"]["structuredContent"],
        json!({ "message": "hi" })
    );
    assert_eq!(reply["result"]["resultType"], "complete");
    assert!(
        reply["result"].get("ttlMs").is_none(),
        "tools/call is not cacheable"
    );
}

#[tokio::test]
async fn stdio_errors() {
    let mut client = StdioClient::start();
    let check = |reply: &Value, code: i64| assert_eq!(reply["error"]["code"], code, "{reply}");
    // No envelope and no session.
    check(
        &client.request(json!(1), "tools/list", json!({})).await,
        -32602,
    );
    check(
        &client
            .request(json!(2), "nope/nope", modern(json!({}), json!({})))
            .await,
        -32601,
    );
    // Removed in 2026-07-28.
    check(
        &client
            .request(json!(3), "ping", modern(json!({}), json!({})))
            .await,
        -32601,
    );
    check(
        &client
            .request(
                json!(4),
                "logging/setLevel",
                modern(json!({ "level": "info" }), json!({})),
            )
            .await,
        -32601,
    );
    let unknown = modern(json!({ "uri": "demo://nope" }), json!({}));
    check(
        &client.request(json!(5), "resources/read", unknown).await,
        -32602,
    );
    let unknown_tool = modern(json!({ "name": "nope" }), json!({}));
    check(
        &client.request(json!(6), "tools/call", unknown_tool).await,
        -32602,
    );
    check(
        &client
            .request(
                json!(7),
                "prompts/get",
                modern(json!({ "name": "greet" }), json!({})),
            )
            .await,
        -32602,
    );
    let future = json!({ "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {},
    } });
    let reply = client.request(json!(8), "tools/list", future).await;
    check(&reply, -32022);
    assert_eq!(reply["error"]["data"]["requested"], "2099-01-01");
    client.input.write_all(b"not json\n").await.expect("write");
    let reply = client.recv().await;
    check(&reply, -32700);
    assert_eq!(reply["id"], Value::Null);
}

#[tokio::test]
async fn stdio_requests_run_concurrently_and_cancel() {
    let mut client = StdioClient::start();
    let mut slow = json!({ "name": "slow_count", "arguments": { "steps": 3, "delay_ms": 200 } });
    slow = modern(slow, json!({}));
    slow["_meta"]["progressToken"] = json!("tok");
    client
        .send(json!({ "jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": slow }))
        .await;
    let echo = modern(
        json!({ "name": "echo", "arguments": { "message": "fast" } }),
        json!({}),
    );
    let reply = client.request(json!("fast"), "tools/call", echo).await;
    assert_eq!(reply["id"], "fast", "echo is not blocked by slow_count");

    let progress = client.recv().await;
    assert_eq!(progress["method"], "notifications/progress");
    assert_eq!(
        progress["params"],
        json!({ "progressToken": "tok", "progress": 1, "total": 3, "message": "step 1 of 3" })
    );

    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": "slow" } });
    client.send(cancel).await;
    // Long after slow_count would have finished, the next message is the next reply.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ping = modern(
        json!({ "name": "echo", "arguments": { "message": "after" } }),
        json!({}),
    );
    let reply = client.request(json!(9), "tools/call", ping).await;
    assert_eq!(
        reply["id"], 9,
        "cancelled request sent nothing more: {reply}"
    );
}

#[tokio::test]
async fn stdio_slow_count_finishes_with_progress() {
    let mut client = StdioClient::start();
    let mut call = modern(
        json!({ "name": "slow_count", "arguments": { "steps": 2 } }),
        json!({}),
    );
    call["_meta"]["progressToken"] = json!(5);
    client
        .send(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call }))
        .await;
    assert_eq!(client.recv().await["params"]["progress"], 1);
    assert_eq!(client.recv().await["params"]["progress"], 2);
    assert_eq!(text(&client.recv().await), "counted to 2");
}

#[tokio::test]
async fn stdio_mrtr_ask_user_and_summarize() {
    let mut client = StdioClient::start();
    let caps = json!({ "elicitation": {}, "sampling": {} });
    let call = modern(
        json!({ "name": "ask_user", "arguments": { "question": "why?" } }),
        caps.clone(),
    );
    let first = client.request(json!(1), "tools/call", call.clone()).await;
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required");
    assert_eq!(
        result["inputRequests"]["answer"]["method"],
        "elicitation/create"
    );
    assert_eq!(
        result["inputRequests"]["answer"]["params"]["message"],
        "why?"
    );
    assert!(
        result.get("ttlMs").is_none(),
        "interim results carry no caching hints"
    );
    let state = result["requestState"].clone();
    assert!(state.is_string());

    let mut retry = call.clone();
    retry["inputResponses"] =
        json!({ "answer": { "action": "accept", "content": { "answer": "because" } } });
    retry["requestState"] = state;
    let reply = client.request(json!(2), "tools/call", retry.clone()).await;
    assert_eq!(text(&reply), "user said: because");
    assert_eq!(reply["result"]["resultType"], "complete");

    retry["inputResponses"] = json!({ "answer": { "action": "decline" } });
    assert_eq!(
        text(&client.request(json!(3), "tools/call", retry.clone()).await),
        "user declined"
    );
    retry["requestState"] = json!("garbage!");
    assert_eq!(
        client.request(json!(4), "tools/call", retry).await["error"]["code"],
        -32602
    );

    let call = modern(
        json!({ "name": "summarize", "arguments": { "text": "long" } }),
        caps,
    );
    let first = client.request(json!(5), "tools/call", call.clone()).await;
    let sampling = &first["result"]["inputRequests"]["summary"];
    assert_eq!(sampling["method"], "sampling/createMessage");
    assert_eq!(
        sampling["params"]["messages"][0]["content"]["text"],
        "Summarize: long"
    );
    assert_eq!(sampling["params"]["maxTokens"], 100);
    let mut retry = call;
    retry["inputResponses"] = json!({ "summary": {
        "role": "assistant", "model": "m", "content": { "type": "text", "text": "short" },
    } });
    retry["requestState"] = first["result"]["requestState"].clone();
    assert_eq!(
        text(&client.request(json!(6), "tools/call", retry).await),
        "summary: short"
    );

    // Without the capability: a tool error, never an undeclared input request.
    let call = modern(
        json!({ "name": "ask_user", "arguments": { "question": "q" } }),
        json!({}),
    );
    let reply = client.request(json!(7), "tools/call", call).await;
    assert_eq!(reply["result"]["isError"], true);
    assert!(reply["result"].get("inputRequests").is_none());
}

#[tokio::test]
async fn stdio_listen_streams_until_cancelled() {
    let mut client = StdioClient::start();
    let filter = json!({ "notifications": {
        "toolsListChanged": true,
        "resourceSubscriptions": ["demo://counter", "demo://unknown"],
    } });
    client
        .send(json!({ "jsonrpc": "2.0", "id": "L", "method": "subscriptions/listen", "params": modern(filter, json!({})) }))
        .await;
    let ack = client.recv().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    assert_eq!(
        ack["params"]["notifications"],
        json!({ "toolsListChanged": true, "resourceSubscriptions": ["demo://counter"] })
    );

    let bump = modern(json!({ "name": "bump_counter" }), json!({}));
    client
        .send(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": bump }))
        .await;
    let mut seen = [client.recv().await, client.recv().await];
    seen.sort_by_key(|m| m.get("method").is_none());
    assert_eq!(seen[0]["method"], "notifications/resources/updated");
    assert_eq!(seen[0]["params"]["uri"], "demo://counter");
    assert_eq!(
        seen[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    assert_eq!(text(&seen[1]), "counter = 1");

    client.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": "L" } })).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let toggle = modern(json!({ "name": "toggle_extra_tool" }), json!({}));
    let reply = client.request(json!(2), "tools/call", toggle).await;
    assert_eq!(
        text(&reply),
        "extra_tool added",
        "no list_changed after the listen was cancelled"
    );
    let reply = client
        .request(json!(3), "tools/list", modern(json!({}), json!({})))
        .await;
    let names: Vec<&str> = reply["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"extra_tool"), "{names:?}");
}

#[tokio::test]
async fn stdio_log_level_from_meta() {
    let mut client = StdioClient::start();
    let mut call = modern(
        json!({ "name": "echo", "arguments": { "message": "m" } }),
        json!({}),
    );
    call["_meta"]["io.modelcontextprotocol/logLevel"] = json!("info");
    client
        .send(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call.clone() }))
        .await;
    let log = client.recv().await;
    assert_eq!(log["method"], "notifications/message");
    assert_eq!(log["params"]["level"], "info");
    assert_eq!(log["params"]["logger"], "demo");
    assert_eq!(client.recv().await["id"], 1);
    call["_meta"]["io.modelcontextprotocol/logLevel"] = json!("error");
    assert_eq!(
        client.request(json!(2), "tools/call", call).await["id"],
        2,
        "info is below error"
    );
}

// ---- stdio, handshake era ----

#[tokio::test]
async fn stdio_handshake_elicitation_sampling_and_notifications() {
    let mut client = StdioClient::start();
    let init = client
        .initialize("2025-11-25", json!({ "elicitation": {}, "sampling": {} }))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["capabilities"]["logging"], json!({}));
    assert!(init["result"].get("resultType").is_none());
    assert_eq!(
        client.request(json!("p"), "ping", json!({})).await["result"],
        json!({})
    );
    // No logs until logging/setLevel.
    let echo = json!({ "name": "echo", "arguments": { "message": "x" } });
    assert_eq!(
        client.request(json!(1), "tools/call", echo.clone()).await["id"],
        1
    );
    assert_eq!(
        client
            .request(json!(2), "logging/setLevel", json!({ "level": "debug" }))
            .await["result"],
        json!({})
    );
    client
        .send(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": echo }))
        .await;
    assert_eq!(client.recv().await["method"], "notifications/message");
    assert_eq!(client.recv().await["id"], 3);
    client
        .request(json!(4), "logging/setLevel", json!({ "level": "error" }))
        .await;

    let ask = json!({ "name": "ask_user", "arguments": { "question": "name?" } });
    client
        .send(json!({ "jsonrpc": "2.0", "id": "ask", "method": "tools/call", "params": ask }))
        .await;
    let request = client.recv().await;
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["mode"], "form");
    assert_eq!(
        request["params"]["requestedSchema"]["properties"]["answer"]["type"],
        "string"
    );
    let id = request["id"].clone();
    assert!(
        id.as_str().is_some_and(|id| id.starts_with("demo-")),
        "{id}"
    );
    client
        .send(json!({ "jsonrpc": "2.0", "id": id, "result": { "action": "accept", "content": { "answer": "Ada" } } }))
        .await;
    assert_eq!(text(&client.recv().await), "user said: Ada");

    let summarize = json!({ "name": "summarize", "arguments": { "text": "t" } });
    client
        .send(json!({ "jsonrpc": "2.0", "id": "sum", "method": "tools/call", "params": summarize }))
        .await;
    let request = client.recv().await;
    assert_eq!(request["method"], "sampling/createMessage");
    client
        .send(json!({ "jsonrpc": "2.0", "id": request["id"], "result": {
            "role": "assistant", "model": "m", "content": [{ "type": "text", "text": "tiny" }],
        } }))
        .await;
    assert_eq!(text(&client.recv().await), "summary: tiny");

    // Sessions get list_changed always, resources/updated only when subscribed.
    let subscribe = json!({ "uri": "demo://counter" });
    assert_eq!(
        client
            .request(json!(5), "resources/subscribe", subscribe)
            .await["result"],
        json!({})
    );
    client.send(json!({ "jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": { "name": "bump_counter" } })).await;
    let mut seen = [client.recv().await, client.recv().await];
    seen.sort_by_key(|m| m.get("method").is_none());
    assert_eq!(
        seen[0],
        json!({ "jsonrpc": "2.0", "method": "notifications/resources/updated", "params": { "uri": "demo://counter" } })
    );
    client.send(json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "toggle_extra_tool" } })).await;
    let mut seen = [client.recv().await, client.recv().await];
    seen.sort_by_key(|m| m.get("method").is_none());
    assert_eq!(seen[0]["method"], "notifications/tools/list_changed");

    let missing = client
        .request(
            json!(8),
            "resources/read",
            json!({ "uri": "demo://missing" }),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32002);
    let unknown = client.request(json!(9), "server/discover", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
}

#[tokio::test]
async fn stdio_handshake_without_elicitation_capability() {
    let mut client = StdioClient::start();
    client.initialize("2025-06-18", json!({})).await;
    let ask = json!({ "name": "ask_user", "arguments": { "question": "q" } });
    let reply = client.request(json!(1), "tools/call", ask).await;
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let summarize = json!({ "name": "summarize", "arguments": { "text": "t" } });
    assert_eq!(
        client.request(json!(2), "tools/call", summarize).await["result"]["isError"],
        true
    );
}

#[tokio::test]
async fn stdio_handshake_cancel_while_waiting_for_elicitation() {
    let mut client = StdioClient::start();
    client
        .initialize("2025-11-25", json!({ "elicitation": {} }))
        .await;
    let ask = json!({ "name": "ask_user", "arguments": { "question": "q" } });
    client
        .send(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ask }))
        .await;
    let request = client.recv().await;
    assert_eq!(request["method"], "elicitation/create");
    client.send(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } })).await;
    // A late answer is ignored; the cancelled call never replies.
    client
        .send(json!({ "jsonrpc": "2.0", "id": request["id"], "result": { "action": "cancel" } }))
        .await;
    assert_eq!(client.request(json!(2), "ping", json!({})).await["id"], 2);
}

#[tokio::test]
async fn stdio_exits_when_input_closes() {
    let mut client = StdioClient::start();
    assert_eq!(
        client
            .request(json!(1), "server/discover", modern(json!({}), json!({})))
            .await["id"],
        1
    );
    let listen = modern(
        json!({ "notifications": { "toolsListChanged": true } }),
        json!({}),
    );
    client.send(json!({ "jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen", "params": listen })).await;
    client.recv().await;
    drop(client.input);
    let exit = tokio::time::timeout(Duration::from_secs(5), client.server).await;
    assert!(matches!(exit, Ok(Ok(Ok(())))), "{exit:?}");
}

// ---- HTTP ----

async fn start_http() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, http::router(Demo::new())).await });
    addr.to_string()
}

struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The JSON-RPC messages of an SSE body.
    fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect()
    }
}

/// Sends one request on a fresh connection and returns the open stream after the head.
async fn http_open(
    addr: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} /mcp HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body.as_bytes()).await.expect("write body");
    BufReader::new(stream)
}

async fn read_head(stream: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    stream
        .read_line(&mut status_line)
        .await
        .expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

/// Decodes a chunked (or plain) body read to EOF.
fn dechunk(raw: &[u8], chunked: bool) -> String {
    if !chunked {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut body = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        body.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    String::from_utf8_lossy(&body).into_owned()
}

async fn http(addr: &str, method: &str, headers: &[(&str, &str)], body: &str) -> HttpReply {
    let mut stream = http_open(addr, method, headers, body).await;
    let (status, headers) = read_head(&mut stream).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response completes")
        .expect("read body");
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    HttpReply {
        status,
        body: dechunk(&raw, chunked),
        headers,
    }
}

const JSON_AND_SSE: (&str, &str) = ("accept", "application/json, text/event-stream");
const CONTENT_JSON: (&str, &str) = ("content-type", "application/json");

fn rpc(id: Value, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

/// A 2026-07-28 POST with correct routing headers.
async fn post_modern(addr: &str, method: &str, name: Option<&str>, params: Value) -> HttpReply {
    let mut headers = vec![
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name));
    }
    http(
        addr,
        "POST",
        &headers,
        &rpc(json!(1), method, modern(params, json!({}))),
    )
    .await
}

#[tokio::test]
async fn http_modern_requests() {
    let addr = start_http().await;
    let reply = post_modern(&addr, "tools/list", None, json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(
        reply.header("mcp-session-id").is_none(),
        "no session for 2026-07-28"
    );
    assert_eq!(reply.json()["result"]["ttlMs"], 0);

    let reply = post_modern(
        &addr,
        "tools/call",
        Some("echo"),
        json!({ "name": "echo", "arguments": { "message": "hi" } }),
    )
    .await;
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        reply
            .events()
            .last()
            .map(|m| m["result"]["content"][0]["text"].clone()),
        Some(json!("hi"))
    );

    let reply = post_modern(&addr, "tools/call", Some("nope"), json!({ "name": "nope" })).await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].clone()),
        (400, json!(-32602))
    );
    let reply = post_modern(&addr, "nope/nope", None, json!({})).await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].clone()),
        (404, json!(-32601))
    );
    let reply = post_modern(
        &addr,
        "resources/read",
        Some("=?base64?ZGVtbzovL3JlYWRtZQ==?="),
        json!({ "uri": "demo://readme" }),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn http_modern_header_checks() {
    let addr = start_http().await;
    let check = |reply: HttpReply, status: u16, code: i64| {
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(reply.json()["error"]["code"], code, "{}", reply.body);
    };
    let body = rpc(json!(1), "tools/list", modern(json!({}), json!({})));
    let versioned = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-protocol-version", "2026-07-28"),
    ];
    check(http(&addr, "POST", &versioned, &body).await, 400, -32020);
    check(
        http(&addr, "POST", &[CONTENT_JSON, JSON_AND_SSE], &body).await,
        400,
        -32020,
    );
    let wrong_method = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "prompts/list"),
    ];
    check(http(&addr, "POST", &wrong_method, &body).await, 400, -32020);
    check(
        post_modern(
            &addr,
            "tools/call",
            Some("other"),
            json!({ "name": "echo" }),
        )
        .await,
        400,
        -32020,
    );
    check(
        post_modern(&addr, "tools/call", None, json!({ "name": "echo" })).await,
        400,
        -32020,
    );
    let no_meta = rpc(json!(1), "tools/list", json!({}));
    let headers = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    check(http(&addr, "POST", &headers, &no_meta).await, 400, -32602);

    assert_eq!(http(&addr, "GET", &[JSON_AND_SSE], "").await.status, 405);
    assert_eq!(http(&addr, "DELETE", &[], "").await.status, 405);
    assert_eq!(
        http(&addr, "POST", &[JSON_AND_SSE], &body).await.status,
        415
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            &[CONTENT_JSON, ("accept", "application/json")],
            &body
        )
        .await
        .status,
        406
    );
    let wildcard = [
        CONTENT_JSON,
        ("accept", "*/*"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    assert_eq!(http(&addr, "POST", &wildcard, &body).await.status, 200);
    let notification = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } }).to_string();
    assert_eq!(
        http(&addr, "POST", &versioned, &notification).await.status,
        202
    );
    let evil = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("origin", "http://evil.example"),
    ];
    assert_eq!(http(&addr, "POST", &evil, &body).await.status, 403);
}

#[tokio::test]
async fn http_handshake_session_lifecycle() {
    let addr = start_http().await;
    let init = json!({ "protocolVersion": "2025-06-18", "capabilities": { "elicitation": {} }, "clientInfo": { "name": "t", "version": "0" } });
    let reply = http(
        &addr,
        "POST",
        &[CONTENT_JSON, JSON_AND_SSE],
        &rpc(json!(1), "initialize", init),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["result"]["protocolVersion"], "2025-06-18");
    let session = reply
        .header("mcp-session-id")
        .expect("session minted")
        .to_owned();
    assert!(
        session.len() == 32 && session.chars().all(|c| c.is_ascii_hexdigit()),
        "{session}"
    );
    let with_session = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-session-id", session.as_str()),
    ];

    let initialized =
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string();
    assert_eq!(
        http(&addr, "POST", &with_session, &initialized)
            .await
            .status,
        202
    );
    let reply = http(
        &addr,
        "POST",
        &with_session,
        &rpc(json!("l"), "tools/list", json!({})),
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["id"].clone()),
        (200, json!("l"))
    );
    assert!(reply.json()["result"].get("resultType").is_none());
    let reply = http(
        &addr,
        "POST",
        &with_session,
        &rpc(json!(2), "resources/read", json!({ "uri": "demo://x" })),
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].clone()),
        (200, json!(-32002))
    );

    let missing = http(
        &addr,
        "POST",
        &[CONTENT_JSON, JSON_AND_SSE],
        &rpc(json!(3), "tools/list", json!({})),
    )
    .await;
    assert_eq!(missing.status, 400);
    let unknown = [CONTENT_JSON, JSON_AND_SSE, ("mcp-session-id", "feed")];
    assert_eq!(
        http(
            &addr,
            "POST",
            &unknown,
            &rpc(json!(4), "tools/list", json!({}))
        )
        .await
        .status,
        404
    );

    // elicitation/create rides the POST's SSE stream; the answer comes back as a POST → 202.
    let ask = rpc(
        json!(5),
        "tools/call",
        json!({ "name": "ask_user", "arguments": { "question": "q" } }),
    );
    let mut stream = http_open(&addr, "POST", &with_session, &ask).await;
    let (status, _) = read_head(&mut stream).await;
    assert_eq!(status, 200);
    let request = next_event(&mut stream).await;
    assert_eq!(request["method"], "elicitation/create");
    assert!(
        request["params"].get("mode").is_none(),
        "2025-06-18 elicitation has no mode"
    );
    let answer = json!({ "jsonrpc": "2.0", "id": request["id"], "result": { "action": "accept", "content": { "answer": "A" } } });
    assert_eq!(
        http(&addr, "POST", &with_session, &answer.to_string())
            .await
            .status,
        202
    );
    let reply = next_event(&mut stream).await;
    assert_eq!(reply["result"]["content"][0]["text"], "user said: A");

    // GET stream gets list_changed.
    let mut get = http_open(
        &addr,
        "GET",
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", session.as_str()),
        ],
        "",
    )
    .await;
    let (status, _) = read_head(&mut get).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let toggle = rpc(
        json!(6),
        "tools/call",
        json!({ "name": "toggle_extra_tool" }),
    );
    assert_eq!(
        http(&addr, "POST", &with_session, &toggle).await.status,
        200
    );
    assert_eq!(
        next_event(&mut get).await["method"],
        "notifications/tools/list_changed"
    );

    assert_eq!(
        http(&addr, "DELETE", &[("mcp-session-id", session.as_str())], "")
            .await
            .status,
        200
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            &with_session,
            &rpc(json!(7), "tools/list", json!({}))
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn http_modern_listen_and_cancel_by_disconnect() {
    let addr = start_http().await;
    let listen = modern(
        json!({ "notifications": { "resourceSubscriptions": ["demo://counter"] } }),
        json!({}),
    );
    let headers = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "subscriptions/listen"),
    ];
    let mut stream = http_open(
        &addr,
        "POST",
        &headers,
        &rpc(json!(77), "subscriptions/listen", listen),
    )
    .await;
    let (status, head) = read_head(&mut stream).await;
    assert_eq!(status, 200);
    assert!(
        head.iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v == "text/event-stream")
    );
    let ack = next_event(&mut stream).await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );
    post_modern(
        &addr,
        "tools/call",
        Some("bump_counter"),
        json!({ "name": "bump_counter" }),
    )
    .await;
    let updated = next_event(&mut stream).await;
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        77
    );

    // A slow_count whose stream is closed stops; the server keeps serving.
    let mut slow = modern(
        json!({ "name": "slow_count", "arguments": { "steps": 1000, "delay_ms": 10 } }),
        json!({}),
    );
    slow["_meta"]["progressToken"] = json!("t");
    let headers = [
        CONTENT_JSON,
        JSON_AND_SSE,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "slow_count"),
    ];
    let body =
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": slow }).to_string();
    let mut slow_stream = http_open(&addr, "POST", &headers, &body).await;
    read_head(&mut slow_stream).await;
    assert_eq!(
        next_event(&mut slow_stream).await["method"],
        "notifications/progress"
    );
    drop(slow_stream);
    drop(stream);
    let reply = post_modern(
        &addr,
        "tools/call",
        Some("echo"),
        json!({ "name": "echo", "arguments": { "message": "still here" } }),
    )
    .await;
    assert_eq!(
        reply
            .events()
            .last()
            .map(|m| m["result"]["content"][0]["text"].clone()),
        Some(json!("still here"))
    );
}

/// The next SSE `data:` message on a chunked stream (chunk-size lines are skipped).
async fn next_event(stream: &mut BufReader<TcpStream>) -> Value {
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line)).await;
        let n = read.expect("event arrives").expect("stream readable");
        assert!(n > 0, "stream ended early");
        if let Some(data) = line.trim_end().strip_prefix("data: ")
            && let Ok(message) = serde_json::from_str(data)
        {
            return message;
        }
    }
}
