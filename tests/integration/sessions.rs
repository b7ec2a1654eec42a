//! Server-initiated messages across the eras: the GET stream (with
//! `Last-Event-ID` resumption and keep-alives), resource subscriptions,
//! `subscriptions/listen`, and shutdown draining. Each scenario runs against
//! the demo server as a handshake-era backend (`protocol = "2025-11-25"`) and
//! as a stateless one (`protocol = "2026-07-28"`), so both bridges are covered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::Gateway;
use crate::util::http::{self, McpSession, modern_body, modern_headers, modern_request};
use crate::util::servers::{DemoServer, toml_array};

const ERAS: [&str; 2] = ["2025-11-25", "2026-07-28"];
const WAIT: Duration = Duration::from_secs(10);

fn demo_gateway(protocol: &str, listen_extra: &str) -> Gateway {
    Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n{listen_extra}\n\n\
         [[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = {}\nprotocol = \"{protocol}\"\n",
        toml_array(&DemoServer::stdio_argv())
    ))
}

async fn call(session: &mut McpSession, tool: &str, args: Value) -> Value {
    let rpc = session
        .request("tools/call", json!({"name": tool, "arguments": args}))
        .await;
    assert!(rpc.get("result").is_some(), "{tool}: {rpc}");
    rpc
}

async fn next_method(stream: &mut http::SseStream, method: &str) -> (Value, Option<String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = stream
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("stream ended before {method}"));
        if let Some(msg) = event.json()
            && msg["method"] == method
        {
            return (msg, event.id.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_stream_carries_list_changed_and_resumes_with_last_event_id() {
    for era in ERAS {
        let gw = demo_gateway(era, "");
        let mut session = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
        // Open the stream first so the gateway's watcher (stateless backend) is up.
        let mut stream = session.get_stream(None).await;
        assert_eq!(stream.status, 200, "{era}");
        assert_eq!(stream.header("x-accel-buffering"), Some("no"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        call(&mut session, "toggle_extra_tool", json!({})).await;
        let (_, first_id) = next_method(&mut stream, "notifications/tools/list_changed").await;
        let first_id = first_id.unwrap_or_else(|| panic!("{era}: GET stream events carry ids"));
        drop(stream);
        // While disconnected, another change happens; resuming replays it.
        call(&mut session, "toggle_extra_tool", json!({})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut resumed = session.get_stream(Some(&first_id)).await;
        let (_, second_id) = next_method(&mut resumed, "notifications/tools/list_changed").await;
        assert!(
            second_id.is_some() && second_id != Some(first_id.clone()),
            "{era}: {second_id:?}"
        );
        let names: Vec<String> = session.request("tools/list", json!({})).await["result"]["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !names.contains(&"extra_tool".to_owned()),
            "{era}: toggled twice: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_subscriptions_deliver_updates_in_both_eras() {
    for era in ERAS {
        let gw = demo_gateway(era, "");
        let mut session = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
        let mut stream = session.get_stream(None).await;
        let rpc = session
            .request("resources/subscribe", json!({"uri": "demo://counter"}))
            .await;
        assert!(rpc.get("result").is_some(), "{era}: {rpc}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        call(&mut session, "bump_counter", json!({})).await;
        let (msg, _) = next_method(&mut stream, "notifications/resources/updated").await;
        assert_eq!(msg["params"]["uri"], "demo://counter", "{era}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_listen_is_acknowledged_then_streams_in_both_eras() {
    for era in ERAS {
        let gw = demo_gateway(era, "");
        let url = gw.url();
        let params = json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["demo://counter"]}});
        let headers = modern_headers("subscriptions/listen", &params);
        let hr: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut stream = http::open_stream(
            &url,
            &hr,
            Some(&modern_body(
                json!("listen-1"),
                "subscriptions/listen",
                params,
            )),
        )
        .await;
        assert_eq!(stream.status, 200, "{era}");
        let first = stream
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("{era}: no acknowledgement"));
        assert_eq!(
            first["method"], "notifications/subscriptions/acknowledged",
            "{era}: {first}"
        );
        assert_eq!(
            first["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-1",
            "{era}"
        );
        let r = modern_request(
            &url,
            2,
            "tools/call",
            json!({"name": "toggle_extra_tool", "arguments": {}}),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{era}: {r:?}");
        let (msg, _) = next_method(&mut stream, "notifications/tools/list_changed").await;
        assert_eq!(
            msg["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-1",
            "{era}: {msg}"
        );
        let r = modern_request(
            &url,
            3,
            "tools/call",
            json!({"name": "bump_counter", "arguments": {}}),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{era}: {r:?}");
        let (msg, _) = next_method(&mut stream, "notifications/resources/updated").await;
        assert_eq!(msg["params"]["uri"], "demo://counter", "{era}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_keepalive_comments() {
    let gw = demo_gateway("2025-11-25", "sse_keepalive_s = 1");
    let session = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let mut stream = session.get_stream(None).await;
    let _ = stream.try_next_event(Duration::from_millis(2500)).await;
    assert!(
        stream.comments() >= 2,
        "keep-alives seen: {}",
        stream.comments()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_then_exits_zero() {
    let mut gw = demo_gateway("2025-11-25", "drain_s = 10");
    let url = gw.url();
    let mut session = McpSession::initialize(&url, "2025-11-25", &[]).await;
    let slow = tokio::spawn(async move {
        session
            .request(
                "tools/call",
                json!({"name": "slow_count", "arguments": {"steps": 5, "delay_ms": 200}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = gw.pid();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let rpc = tokio::time::timeout(WAIT, slow)
        .await
        .expect("drained in time")
        .expect("task");
    assert_eq!(rpc["result"]["content"][0]["text"], "counted to 5", "{rpc}");
    let deadline = std::time::Instant::now() + WAIT;
    while gw.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not exit:\n{}",
            gw.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.wait_for_log(WAIT, |l| l["fields"]["message"] == "stopped");
}
