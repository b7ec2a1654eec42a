//! Third-party clients against servers directly, no gateway: proves the
//! drivers and the harness, and pins the baselines the gateway tests compare
//! against (same scenario direct and through the gateway → same JSON).

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::drivers::without_protocol;
use crate::util::http::{self, LATEST_HANDSHAKE, MODERN, McpSession};
use crate::util::{
    DemoServer, Everything, PyDemoServer, TestDir, conformance, inspector, py_client, ts_client,
};

fn tool_names(out: &Value) -> Vec<&str> {
    out["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools list in {out}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default())
        .collect()
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {result}"))
}

/// What the `everything` scenario must show, whichever client and transport.
fn check_everything(out: &Value) {
    let names = tool_names(out);
    for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }
    assert_eq!(text(&out["echo"]), "Echo: hello");
    assert_eq!(text(&out["get_sum"]), "The sum of 2 and 3 is 5.");
    assert_eq!(
        out["long_running"]["progress"],
        json!([
            {"progress": 1, "total": 4}, {"progress": 2, "total": 4},
            {"progress": 3, "total": 4}, {"progress": 4, "total": 4}
        ])
    );
    assert!(
        out["features_md"]["contents"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("# Everything Server"))
    );
    assert_eq!(out["simple_prompt"]["messages"][0]["role"], "user");
    assert_eq!(out["complete"]["values"], json!(["Engineering"]));
}

/// What `demo-full` must show against our demo server or its Python twin.
fn check_demo_full(out: &Value) {
    let names = tool_names(out);
    for tool in ["ask_user", "delete_item", "echo", "slow_count", "summarize"] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }
    assert!(
        out["echo"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("hello")),
        "{}",
        out["echo"]
    );
    assert_eq!(
        out["slow_count"]["progress"].as_array().map(Vec::len),
        Some(3),
        "{}",
        out["slow_count"]
    );
    assert!(
        text(&out["ask_user"]).contains("blue"),
        "{}",
        out["ask_user"]
    );
    assert!(
        text(&out["summarize"]).contains("short"),
        "{}",
        out["summarize"]
    );
    assert_eq!(
        out["elicitations"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    assert_eq!(out["samplings"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["readme"]["contents"][0]["uri"], "demo://readme");
    assert_eq!(out["item_42"]["contents"][0]["uri"], "demo://items/42");
    assert!(
        out["greet"]["messages"][0]["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Ada"))
    );
    let styles = out["complete"]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !styles.is_empty()
            && styles
                .iter()
                .all(|s| s.as_str().is_some_and(|s| s.starts_with('p'))),
        "{out}"
    );
}

// --- server-everything ---------------------------------------------------------------

#[test]
fn everything_http_tools_py() {
    let server = Everything::start_http();
    // auto: discover gets 400 from this handshake-only server, so it falls back.
    let out = py_client(
        "auto",
        &server.url(),
        "everything",
        &["--expect-protocol", LATEST_HANDSHAKE],
    );
    check_everything(&out);
}

#[test]
fn everything_http_tools_ts() {
    let server = Everything::start_http();
    let out = ts_client(
        "legacy",
        &server.url(),
        "everything",
        &["--expect-protocol", LATEST_HANDSHAKE],
    );
    check_everything(&out);
}

#[test]
fn everything_http_py_and_ts_agree() {
    // The normalization makes the two SDKs' views identical: the basis for
    // comparing a direct run with a run through the gateway.
    let server = Everything::start_http();
    let py = py_client("legacy", &server.url(), "everything", &[]);
    let ts = ts_client("legacy", &server.url(), "everything", &[]);
    assert_eq!(py, ts);
}

#[test]
fn everything_http_older_handshake_py_and_ts() {
    let server = Everything::start_http();
    let args = [
        "--expect-protocol",
        "2025-03-26",
        "--call",
        "get-sum",
        "--args",
        r#"{"a":1,"b":2}"#,
    ];
    let py = py_client("legacy-2025-03-26", &server.url(), "tools", &args);
    let ts = ts_client("legacy-2025-03-26", &server.url(), "tools", &args);
    assert_eq!(text(&py["calls"][0]["result"]), "The sum of 1 and 2 is 3.");
    assert_eq!(py, ts);
}

#[test]
fn everything_http_headers_and_unknown_tool() {
    let server = Everything::start_http();
    let out = py_client(
        "legacy",
        &server.url(),
        "tools",
        &["--header", "X-Test: 1", "--call", "no-such-tool"],
    );
    // server-everything reports an unknown tool as an isError result.
    assert_eq!(out["calls"][0]["result"]["isError"], true, "{out}");
}

#[test]
fn everything_sse_py_and_ts_agree() {
    // Legacy HTTP+SSE (2024-11-05), the transport of the gateway's /sse front door.
    let server = Everything::start_sse();
    let target = format!("sse:{}", server.sse_url());
    let args = ["--expect-protocol", "2024-11-05"];
    let py = py_client("legacy-2024-11-05", &target, "everything", &args);
    check_everything(&py);
    let ts = ts_client("legacy-2024-11-05", &target, "everything", &args);
    assert_eq!(py, ts);
}

#[test]
fn everything_stdio_tools_py() {
    let out = py_client(
        "auto",
        &Everything::stdio_target(),
        "everything",
        &["--expect-protocol", LATEST_HANDSHAKE],
    );
    check_everything(&out);
}

#[test]
fn everything_stdio_tools_ts() {
    let out = ts_client("legacy", &Everything::stdio_target(), "everything", &[]);
    check_everything(&out);
}

#[test]
fn everything_http_cancel_py() {
    let server = Everything::start_http();
    let out = py_client("legacy", &server.url(), "cancel", &[]);
    assert_eq!(out["progress_seen"], true, "{out}");
    assert_eq!(out["cancelled"], true, "{out}");
    assert_eq!(text(&out["after"]), "Echo: after-cancel");
}

#[test]
fn everything_http_cancel_ts() {
    let server = Everything::start_http();
    let out = ts_client("legacy", &server.url(), "cancel", &[]);
    assert_eq!(out["progress_seen"], true, "{out}");
    assert_eq!(out["cancelled"], true, "{out}");
    assert_eq!(text(&out["after"]), "Echo: after-cancel");
}

#[test]
fn everything_http_inspector() {
    let server = Everything::start_http();
    let out = inspector(
        &server.url(),
        "tools/call",
        &["--tool-name", "get-sum", "--tool-arg", "a=1", "b=2"],
    );
    assert_eq!(text(&out), "The sum of 1 and 2 is 3.");
}

#[test]
fn everything_http_conformance_baseline() {
    let server = Everything::start_http();
    let out = TestDir::new("conformance");
    let statuses = conformance(&server.url(), out.path(), &[]);
    // INTEROP.md: 13 of 32 checks pass against server-everything directly
    // (the suite expects its own fixture names). Through the gateway the map
    // must be the same; here it pins the baseline.
    let passed = statuses.values().filter(|s| *s == "SUCCESS").count();
    assert_eq!((passed, statuses.len()), (13, 32), "{statuses:#?}");
    for check in [
        "server-initialize/server-initialize",
        "tools-list/tools-list",
        "ping/ping",
    ] {
        assert_eq!(
            statuses.get(check).map(String::as_str),
            Some("SUCCESS"),
            "{statuses:#?}"
        );
    }
}

// --- raw HTTP against server-everything (handshake era) -----------------------------------

#[tokio::test]
async fn everything_raw_http_session() {
    let server = Everything::start_http();
    let mut session = McpSession::initialize(&server.url(), LATEST_HANDSHAKE, &[]).await;
    assert_eq!(session.protocol_version, LATEST_HANDSHAKE);
    assert!(session.session_id.is_some(), "no Mcp-Session-Id");

    let list = session.request("tools/list", json!({})).await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{list}"
    );

    // Progress arrives on the POST's SSE stream before the response.
    let (id, mut stream) = session
        .open_request(
            "tools/call",
            json!({"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 2},
                   "_meta": {"progressToken": "p1"}}),
        )
        .await;
    assert_eq!(stream.status, 200);
    let messages = stream.until_response(&id, Duration::from_secs(10)).await;
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{messages:#?}");
    assert_eq!(progress[0]["params"]["progressToken"], "p1");

    // Without the session id the server refuses; after DELETE the session is gone.
    let orphan = http::post_json(
        &server.url(),
        &[("mcp-protocol-version", LATEST_HANDSHAKE)],
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
    )
    .await;
    assert_eq!(orphan.status, 400, "{orphan:?}");
    assert_eq!(session.delete().await.status, 200);
    let gone = session.send("tools/list", json!({})).await;
    // server-everything answers an ended session with 400 "No valid session
    // ID provided"; the spec (and CONTRACT.md, for the gateway) says 404.
    assert_eq!(gone.status, 400, "{gone:?}");
}

// --- the Python twin of the demo server (both eras) ----------------------------------------

#[test]
fn py_demo_http_demo_full_py_modern_matches_legacy() {
    let server = PyDemoServer::start_http();
    let modern = py_client(
        "auto",
        &server.url(),
        "demo-full",
        &["--expect-protocol", MODERN],
    );
    check_demo_full(&modern);
    let legacy = py_client(
        "legacy",
        &server.url(),
        "demo-full",
        &["--expect-protocol", LATEST_HANDSHAKE],
    );
    // Elicitation and sampling travel as input_required rounds in 2026 and as
    // server→client requests in 2025; the client-visible outcome is the same.
    assert_eq!(without_protocol(modern), without_protocol(legacy));
}

#[test]
fn py_demo_http_demo_full_ts() {
    let server = PyDemoServer::start_http();
    let out = ts_client("legacy", &server.url(), "demo-full", &[]);
    check_demo_full(&out);
}

#[test]
fn py_demo_stdio_cancel_py_modern() {
    let out = py_client(
        "auto",
        &PyDemoServer::stdio_target(),
        "cancel",
        &["--expect-protocol", MODERN],
    );
    assert_eq!(out["cancelled"], true, "{out}");
    assert_eq!(text(&out["after"]), "after-cancel");
}

#[tokio::test]
async fn py_demo_raw_http_modern() {
    let server = PyDemoServer::start_http();
    let discover = http::modern_request(&server.url(), 1, "server/discover", json!({}), &[]).await;
    assert_eq!(discover.status, 200, "{discover:?}");
    let versions = discover.rpc()["result"]["supportedVersions"].clone();
    assert!(
        versions
            .as_array()
            .is_some_and(|v| v.contains(&json!(MODERN))),
        "{versions}"
    );

    let call = http::modern_request(
        &server.url(),
        2,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi"}}),
        &[],
    )
    .await;
    assert_eq!(call.status, 200, "{call:?}");
    assert_eq!(call.rpc()["result"]["content"][0]["text"], "hi");

    // A routing header that contradicts the body: 400 + -32020 (HeaderMismatch).
    let body = http::modern_body(
        json!(3),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "x"}}),
    );
    let mismatch = http::post_json(
        &server.url(),
        &[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete_item"),
        ],
        &body,
    )
    .await;
    assert_eq!(mismatch.status, 400, "{mismatch:?}");
    assert_eq!(mismatch.rpc()["error"]["code"], -32020);
}

// --- our demo server (needs `mcp-gateway demo-server` wired in src/main.rs) -------------------

#[test]
fn demo_http_demo_full_py() {
    let server = DemoServer::start_http();
    let out = py_client("auto", server.url(), "demo-full", &[]);
    check_demo_full(&out);
}

#[test]
fn demo_http_demo_full_ts() {
    let server = DemoServer::start_http();
    let out = ts_client("legacy", server.url(), "demo-full", &[]);
    check_demo_full(&out);
}

#[test]
fn demo_stdio_demo_full_py() {
    let out = py_client("auto", &DemoServer::stdio_target(), "demo-full", &[]);
    check_demo_full(&out);
}

#[test]
fn demo_http_cancel_py() {
    let server = DemoServer::start_http();
    let out = py_client("legacy", server.url(), "cancel", &[]);
    assert_eq!(out["cancelled"], true, "{out}");
    assert!(
        out["after"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("after-cancel")),
        "{out}"
    );
}
