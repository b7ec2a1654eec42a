//! Bad input at the Streamable HTTP front door: every refusal has its exact
//! status and JSON-RPC code, and the gateway keeps serving a well-behaved
//! client meanwhile. Backend faults (crash mid-call, no answer) map to
//! -32010 / -32011 and leave other sessions alone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::Gateway;
use crate::util::drivers::{interop_dir, venv_python};
use crate::util::http::{self, McpSession, modern_body, modern_headers, modern_request};
use crate::util::servers::toml_string;

fn fault_backend(name: &str, extra: &str) -> String {
    let python = venv_python();
    let script = interop_dir().join("fault_server.py");
    format!(
        "[[backends]]\nname = \"{name}\"\ntransport = \"stdio\"\ncommand = [{}, {}]\n{extra}\n",
        toml_string(&python.to_string_lossy()),
        toml_string(&script.to_string_lossy()),
    )
}

fn gateway_with(listen_extra: &str, limits: &str, backends: &str) -> Gateway {
    Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n{listen_extra}\n[limits]\n{limits}\n{backends}"
    ))
}

fn fault_gateway() -> Gateway {
    gateway_with("", "", &fault_backend("fault", "timeout_s = 2"))
}

async fn echo(session: &mut McpSession, message: &str) -> String {
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": message}}),
        )
        .await;
    rpc["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("echo failed: {rpc}"))
        .to_owned()
}

fn error_code(body: &Value) -> i64 {
    body["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_exact_errors_and_others_keep_working() {
    let gw = gateway_with("", "max_body_bytes = 4096", &fault_backend("fault", ""));
    let url = gw.url();
    let mut good = McpSession::initialize(&url, "2025-11-25", &[]).await;
    assert_eq!(echo(&mut good, "before").await, "before");

    // Malformed JSON → 400 / -32700.
    let r = http::post_raw(&url, &[], "{\"jsonrpc\": \"2.0\", ").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(error_code(&r.json()), -32700);

    // Valid JSON, not JSON-RPC → 400 / -32600.
    for body in [
        r#"{"jsonrpc":"2.0"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        "42",
    ] {
        let r = http::post_raw(&url, &[], body).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_eq!(error_code(&r.json()), -32600, "{body}");
    }

    // Wrong Content-Type → 415; wrong Accept → 406.
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let r = http::request(
        reqwest::Method::POST,
        &url,
        &[
            ("content-type", "text/plain"),
            ("accept", "application/json, text/event-stream"),
        ],
        Some(ping.clone()),
    )
    .await;
    assert_eq!(r.status, 415, "{r:?}");
    let r = http::request(
        reqwest::Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        Some(ping.clone()),
    )
    .await;
    assert_eq!(r.status, 406, "{r:?}");

    // Oversized body → 413.
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x".repeat(10_000)}}});
    let h = good.headers();
    let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = http::post_json(&url, &hr, &big).await;
    assert_eq!(r.status, 413, "{r:?}");

    // Unknown session → 404; no session → 400.
    let r = http::post_json(
        &url,
        &[("mcp-session-id", "00112233445566778899aabbccddeeff")],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = http::post_json(
        &url,
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");

    // Foreign Origin → 403 (DNS rebinding); a foreign Host on a loopback listener too.
    let r = http::post_json(
        &url,
        &[("origin", "https://evil.example.com")],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = http::post_json(
        &url,
        &[("host", "evil.example.com")],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = http::post_json(
        &url,
        &[("origin", "http://localhost:6274")],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_ne!(
        r.status, 403,
        "loopback origins are allowed on a loopback listener: {r:?}"
    );

    // Unsupported MCP-Protocol-Version on a session → 400.
    let r = http::post_json(
        &url,
        &[
            ("mcp-session-id", good.session_id.as_deref().unwrap_or("")),
            ("mcp-protocol-version", "1999-01-01"),
        ],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");

    // 2026-07-28: routing headers must match the body → 400 / -32020.
    let params = json!({"name": "echo", "arguments": {"message": "m"}});
    let body = modern_body(json!(9), "tools/call", params.clone());
    let mut wrong = modern_headers("tools/call", &params);
    for (k, v) in wrong.iter_mut() {
        if k == "mcp-name" {
            *v = "crash".into();
        }
    }
    let wr: Vec<(&str, &str)> = wrong
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = http::post_json(&url, &wr, &body).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(error_code(&r.json()), -32020);
    let r = http::post_json(&url, &[("mcp-protocol-version", "2026-07-28")], &body).await;
    assert_eq!(r.status, 400, "missing Mcp-Method: {r:?}");
    assert_eq!(error_code(&r.json()), -32020);
    let r = http::post_json(
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        &body,
    )
    .await;
    assert_eq!(error_code(&r.json()), -32020);

    // Unsupported version in _meta → 400 / -32022 with data.supported.
    let old =
        json!({"name": "echo", "_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01"}});
    let r = modern_request(&url, 3, "tools/call", old, &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    let body = r.json();
    assert_eq!(error_code(&body), -32022);
    assert!(
        body["error"]["data"]["supported"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("2026-07-28"))),
        "{body}"
    );

    // Missing _meta protocol version with a 2026 header → 400 / -32602.
    let r = http::post_json(
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        &json!({"jsonrpc":"2.0","id":4,"method":"tools/list","params":{}}),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(error_code(&r.json()), -32602);

    // Stateless clients have no GET stream and no DELETE → 405.
    let r = http::get(
        &url,
        &[
            ("accept", "text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
        ],
    )
    .await;
    assert_eq!(r.status, 405, "{r:?}");
    let r = http::delete(&url, &[("mcp-protocol-version", "2026-07-28")]).await;
    assert_eq!(r.status, 405, "{r:?}");

    // An unknown method on a 2026-07-28 request → HTTP 404 + -32601.
    let r = modern_request(&url, 5, "nonexistent/method", json!({}), &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(error_code(&r.json()), -32601);

    // Notifications and responses → 202.
    let r = good
        .notify("notifications/roots/list_changed", json!({}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");

    // Through all of it, the well-behaved session still works.
    assert_eq!(echo(&mut good, "after").await, "after");
    let r = good.delete().await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = good
        .post(&json!({"jsonrpc":"2.0","id":77,"method":"ping"}))
        .await;
    assert_eq!(r.status, 404, "a deleted session is unknown: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_crash_mid_call_is_32010_and_restarts() {
    let gw = fault_gateway();
    let url = gw.url();
    let mut victim = McpSession::initialize(&url, "2025-11-25", &[]).await;
    let mut bystander = McpSession::initialize(&url, "2025-11-25", &[]).await;
    let rpc = victim
        .request("tools/call", json!({"name": "crash", "arguments": {}}))
        .await;
    assert_eq!(error_code(&rpc), -32010, "{rpc}");
    assert_eq!(rpc["error"]["data"]["backend"], "fault");
    // Another session (its own process, isolation = "session") is untouched.
    assert_eq!(echo(&mut bystander, "still here").await, "still here");
    // The crashed session's backend is restarted on the next call.
    assert_eq!(echo(&mut victim, "back").await, "back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_that_never_answers_is_32011_and_is_told_to_cancel() {
    let gw = fault_gateway();
    let url = gw.url();
    let mut session = McpSession::initialize(&url, "2025-11-25", &[]).await;
    let started = std::time::Instant::now();
    let rpc = session
        .request("tools/call", json!({"name": "hang", "arguments": {}}))
        .await;
    assert_eq!(error_code(&rpc), -32011, "{rpc}");
    assert_eq!(rpc["error"]["data"]["timeout_ms"], 2000);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The backend was told to stop working on it.
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "cancelled_ids", "arguments": {}}),
        )
        .await;
    assert_eq!(cancelled_ids(&rpc).len(), 1, "{rpc}");
}

/// The request ids the fault server saw cancelled, from its `cancelled_ids` answer.
fn cancelled_ids(rpc: &Value) -> Vec<Value> {
    serde_json::from_str(rpc["result"]["content"][0]["text"].as_str().unwrap_or("[]"))
        .unwrap_or_default()
}

/// Cancels the session's request `id` (202), then waits for the fault
/// server to report the cancellations it has seen.
async fn cancel(session: &mut McpSession, id: Value) -> Vec<Value> {
    let r = session
        .notify(
            "notifications/cancelled",
            json!({"requestId": id, "reason": "user"}),
        )
        .await;
    assert_eq!(r.status, 202);
    wait_for_cancellations(session).await
}

/// Asks the session's fault server for its cancelled ids until it has seen
/// some (up to 5 s).
async fn wait_for_cancellations(session: &mut McpSession) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        let rpc = session
            .request(
                "tools/call",
                json!({"name": "cancelled_ids", "arguments": {}}),
            )
            .await;
        seen = cancelled_ids(&rpc);
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancellation_reaches_the_backend_with_its_own_id() {
    let gw = gateway_with("sse_keepalive_s = 1", "", &fault_backend("fault", ""));
    let url = gw.url();
    let mut session = McpSession::initialize(&url, "2025-11-25", &[]).await;
    let (id, _stream) = session
        .open_request("tools/call", json!({"name": "hang", "arguments": {}}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = cancel(&mut session, id).await;
    assert_eq!(
        seen.len(),
        1,
        "the backend should see exactly one cancellation"
    );
}

/// Handshake era: a client that hangs up has not cancelled its call. The
/// call goes on (the backend is told nothing) and a later
/// `notifications/cancelled` still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_call_outlives_its_dropped_exchange_and_stays_cancellable() {
    let gw = gateway_with("", "", &fault_backend("fault", ""));
    let url = gw.url();
    let mut session = McpSession::initialize(&url, "2025-11-25", &[]).await;
    // Hang up while the gateway still waits for the backend's answer (no
    // response headers yet: the keep-alive switch to SSE is 15 s away).
    let opened = tokio::time::timeout(
        Duration::from_millis(500),
        session.open_request("tools/call", json!({"name": "hang", "arguments": {}})),
    )
    .await;
    assert!(opened.is_err(), "the gateway answered a call that hangs");
    let id = session.last_id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "cancelled_ids", "arguments": {}}),
        )
        .await;
    assert_eq!(
        cancelled_ids(&rpc),
        Vec::<Value>::new(),
        "a hang-up is not a cancellation"
    );
    let seen = cancel(&mut session, id).await;
    assert_eq!(
        seen.len(),
        1,
        "the detached call was cancelled once: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_2026_stream_cancels_the_backend_call() {
    let gw = gateway_with(
        "sse_keepalive_s = 1",
        "",
        &fault_backend("fault", "isolation = \"shared\""),
    );
    let url = gw.url();
    let params = json!({"name": "hang", "arguments": {}});
    let headers = modern_headers("tools/call", &params);
    let hr: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let stream = http::open_stream(
        &url,
        &hr,
        Some(&modern_body(json!(1), "tools/call", params)),
    )
    .await;
    // The gateway switches to SSE at the first keep-alive (1 s here); the
    // call has reached the backend by then. Hang up.
    drop(stream);
    let mut seen: Vec<Value> = Vec::new();
    for i in 0..50 {
        let r = modern_request(
            &url,
            100 + i,
            "tools/call",
            json!({"name": "cancelled_ids", "arguments": {}}),
            &[],
        )
        .await;
        seen = cancelled_ids(&r.json());
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.len(), 1, "closing the stream is the cancellation");
}

/// 50 concurrent clients × 100 calls through one shared stdio process: every
/// response reaches the client that asked, none lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_share_one_stdio_backend_without_crosstalk() {
    let gw = gateway_with("", "", &fault_backend("fault", "isolation = \"shared\""));
    let url = gw.url();
    let mut tasks = Vec::new();
    for client in 0..50 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut session = McpSession::initialize(&url, "2025-11-25", &[]).await;
            let mut pids = std::collections::BTreeSet::new();
            for call in 0..100 {
                let message = format!("client-{client}-call-{call}");
                assert_eq!(echo(&mut session, &message).await, message);
                if call == 0 {
                    let rpc = session
                        .request("tools/call", json!({"name": "pid", "arguments": {}}))
                        .await;
                    pids.insert(
                        rpc["result"]["content"][0]["text"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    );
                }
            }
            pids
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for t in tasks {
        pids.extend(t.await.expect("client task"));
    }
    assert_eq!(
        pids.len(),
        1,
        "isolation = \"shared\" means one process: {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_answered_in_2025_03_26_only() {
    let gw = fault_gateway();
    let url = gw.url();
    let old = McpSession::initialize(&url, "2025-03-26", &[]).await;
    assert_eq!(old.protocol_version, "2025-03-26");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "a"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    ]);
    let r = old.post(&batch).await;
    assert_eq!(r.status, 200, "{r:?}");
    let answers = r.json();
    let ids: std::collections::BTreeSet<i64> = answers
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [1, 2].into_iter().collect());
    let newer = McpSession::initialize(&url, "2025-06-18", &[]).await;
    let r = newer.post(&batch).await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_backend_route_is_404_and_admin_endpoints_answer() {
    let gw = fault_gateway();
    let r = http::post_json(
        &gw.url_for("/servers/nope/mcp"),
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    let mut s = McpSession::initialize(&gw.server_url("fault"), "2025-11-25", &[]).await;
    assert_eq!(echo(&mut s, "direct route").await, "direct route");
    let r = http::get(&format!("{}/healthz", gw.admin_url()), &[]).await;
    assert_eq!(r.status, 200);
    let mut ready = 0;
    for _ in 0..100 {
        ready = http::get(&format!("{}/readyz", gw.admin_url()), &[])
            .await
            .status;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200);
    let r = http::get(&format!("{}/metrics", gw.admin_url()), &[]).await;
    let text = r.body.clone();
    assert!(
        text.contains(
            "mcp_gateway_requests_total{method=\"tools/call\",backend=\"fault\",outcome=\"ok\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "mcp_gateway_request_duration_seconds_bucket{method=\"tools/call\",backend=\"fault\""
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_param_headers_must_match_declared_arguments() {
    let gw = fault_gateway();
    let url = gw.url();
    // The gateway learns the x-mcp-header declarations from tools/list.
    let r = modern_request(&url, 1, "tools/list", json!({}), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let call = json!({"name": "echo", "arguments": {"message": "hi"}});
    let r = modern_request(&url, 2, "tools/call", call.clone(), &[]).await;
    assert_eq!(r.status, 400, "missing Mcp-Param-Message: {r:?}");
    assert_eq!(error_code(&r.json()), -32020);
    let r = modern_request(
        &url,
        3,
        "tools/call",
        call.clone(),
        &[("mcp-param-message", "bye")],
    )
    .await;
    assert_eq!(r.status, 400, "mismatched Mcp-Param-Message: {r:?}");
    let r = modern_request(
        &url,
        4,
        "tools/call",
        call.clone(),
        &[("mcp-param-message", "hi")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    // The base64 form decodes before comparing.
    let r = modern_request(
        &url,
        5,
        "tools/call",
        call,
        &[("mcp-param-message", "=?base64?aGk=?=")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cancelling_its_own_request_is_mapped_to_the_client_id() {
    let gw = fault_gateway();
    let mut session = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let (id, mut stream) = session
        .open_request(
            "tools/call",
            json!({"name": "ask_then_cancel", "arguments": {}}),
        )
        .await;
    let messages = stream.until_response(&id, Duration::from_secs(10)).await;
    let request = messages
        .iter()
        .find(|m| m["method"] == "elicitation/create")
        .expect("the server's request");
    let cancel = messages
        .iter()
        .find(|m| m["method"] == "notifications/cancelled")
        .expect("the server's cancellation");
    assert!(request["id"].is_string());
    assert_eq!(
        cancel["params"]["requestId"], request["id"],
        "{messages:#?}"
    );
    assert_ne!(
        request["id"], "srv-1",
        "the client sees the gateway's id, not the server's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_backends_are_one_server_with_prefixed_names() {
    let demo = crate::util::servers::DemoServer::stdio_argv();
    let backends = format!(
        "{}\n[[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = {}\n",
        fault_backend("fault", ""),
        crate::util::servers::toml_array(&demo)
    );
    let gw = gateway_with("", "", &backends);
    let mut session = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    assert_eq!(session.init["serverInfo"]["name"], "mcp-gateway");
    assert!(session.init["capabilities"]["tools"].is_object());
    let tools = session.list_all("tools/list", "tools").await;
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(
        names.contains(&"fault__echo") && names.contains(&"demo__echo"),
        "{names:?}"
    );
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "demo__echo", "arguments": {"message": "via demo"}}),
        )
        .await;
    assert_eq!(rpc["result"]["content"][0]["text"], "via demo", "{rpc}");
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "fault__echo", "arguments": {"message": "via fault"}}),
        )
        .await;
    assert_eq!(rpc["result"]["content"][0]["text"], "via fault", "{rpc}");
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "nobody__echo", "arguments": {}}),
        )
        .await;
    assert_eq!(error_code(&rpc), -32602, "{rpc}");
    let prompts = session.list_all("prompts/list", "prompts").await;
    assert_eq!(prompts[0]["name"], "demo__greet", "{prompts:?}");
    let rpc = session
        .request(
            "prompts/get",
            json!({"name": "demo__greet", "arguments": {"name": "Ada"}}),
        )
        .await;
    assert!(rpc.get("result").is_some(), "{rpc}");
    let _ = session.request("resources/list", json!({})).await;
    let rpc = session
        .request("resources/read", json!({"uri": "demo://readme"}))
        .await;
    assert!(rpc.get("result").is_some(), "{rpc}");
    // The single-backend route shows the backend's own names.
    let mut direct = McpSession::initialize(&gw.server_url("demo"), "2025-11-25", &[]).await;
    let rpc = direct
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "own name"}}),
        )
        .await;
    assert_eq!(rpc["result"]["content"][0]["text"], "own name", "{rpc}");
}
