//! Official SDK clients, MCP Inspector and the conformance suite through the
//! gateway to real servers: the demo server (stdio and HTTP), the Python SDK
//! server (HTTP, 2026-07-28 capable) and server-everything (stdio and HTTP).
//! Each scenario runs directly and through the gateway; the normalized
//! results must be identical (the negotiated revision may differ: the
//! gateway speaks 2026-07-28 to a client even when the server does not).

use serde_json::Value;

use crate::util::drivers::{same_through_gateway, same_through_gateway_at, without_protocol};
use crate::util::servers::{toml_array, toml_string};
use crate::util::{
    DemoServer, Everything, Gateway, PyDemoServer, TestDir, conformance, inspector, py_client,
    ts_client,
};

fn gateway_stdio(argv: &[String]) -> Gateway {
    Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n\
         [[backends]]\nname = \"server\"\ntransport = \"stdio\"\ncommand = {}\n",
        toml_array(argv)
    ))
}

fn gateway_http(url: &str) -> Gateway {
    Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n\
         [[backends]]\nname = \"server\"\ntransport = \"streamable_http\"\nurl = {}\n",
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
        "elicitation round trip: {out}"
    );
    assert!(
        text(&out["summarize"]).contains("short"),
        "sampling round trip: {out}"
    );
    assert_eq!(
        out["slow_count"]["progress"].as_array().map(Vec::len),
        Some(3),
        "progress: {out}"
    );
    assert_eq!(
        out["item_42"]["contents"][0]["uri"], "demo://items/42",
        "template: {out}"
    );
}

// --- our demo server ---------------------------------------------------------------------

#[test]
fn py_auto_to_demo_stdio() {
    let gw = gateway_stdio(&DemoServer::stdio_argv());
    let out = same_through_gateway_at(
        py_client,
        "auto",
        &DemoServer::stdio_target(),
        &gw.url(),
        "demo-full",
        Some("2026-07-28"),
    );
    assert_demo_full(&out);
}

#[test]
fn py_legacy_to_demo_stdio() {
    let gw = gateway_stdio(&DemoServer::stdio_argv());
    let out = same_through_gateway_at(
        py_client,
        "legacy",
        &DemoServer::stdio_target(),
        &gw.url(),
        "demo-full",
        Some("2025-11-25"),
    );
    assert_demo_full(&out);
}

#[test]
fn py_legacy_2025_03_26_to_demo_stdio() {
    let gw = gateway_stdio(&DemoServer::stdio_argv());
    let direct = py_client(
        "legacy-2025-03-26",
        &DemoServer::stdio_target(),
        "tools",
        &["--call", "echo", "--args", r#"{"message":"old"}"#],
    );
    let through = py_client(
        "legacy-2025-03-26",
        &gw.url(),
        "tools",
        &[
            "--call",
            "echo",
            "--args",
            r#"{"message":"old"}"#,
            "--expect-protocol",
            "2025-03-26",
        ],
    );
    assert_eq!(without_protocol(direct), without_protocol(through));
}

#[test]
fn ts_legacy_to_demo_stdio() {
    let gw = gateway_stdio(&DemoServer::stdio_argv());
    let out = same_through_gateway(
        ts_client,
        "legacy",
        &DemoServer::stdio_target(),
        &gw.url(),
        "demo-full",
    );
    assert_demo_full(&out);
}

#[test]
fn py_auto_and_ts_to_demo_http() {
    let direct = DemoServer::start_http();
    let backend = DemoServer::start_http();
    let gw = gateway_http(backend.url());
    let out = same_through_gateway(py_client, "auto", direct.url(), &gw.url(), "demo-full");
    assert_demo_full(&out);
    // Fresh servers for the second client: the demo server keeps state per process.
    let direct = DemoServer::start_http();
    let backend = DemoServer::start_http();
    let gw = gateway_http(backend.url());
    let out = same_through_gateway(ts_client, "legacy", direct.url(), &gw.url(), "demo-full");
    assert_demo_full(&out);
}

#[test]
fn py_legacy_to_demo_http() {
    let direct = DemoServer::start_http();
    let backend = DemoServer::start_http();
    let gw = gateway_http(backend.url());
    let out = same_through_gateway(py_client, "legacy", direct.url(), &gw.url(), "demo-full");
    assert_demo_full(&out);
}

#[test]
fn inspector_cli_to_demo_stdio() {
    let gw = gateway_stdio(&DemoServer::stdio_argv());
    let out = inspector(
        &gw.url(),
        "tools/call",
        &[
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=from-inspector",
        ],
    );
    assert_eq!(out["content"][0]["text"], "from-inspector", "{out}");
    let list = inspector(&gw.url(), "tools/list", &[]);
    assert!(
        list["tools"].as_array().is_some_and(|t| t.len() >= 5),
        "{list}"
    );
}

#[test]
fn py_cancel_through_gateway_to_demo_stdio() {
    let gw = gateway_stdio(&DemoServer::stdio_argv());
    for mode in ["auto", "legacy"] {
        let out = py_client(mode, &gw.url(), "cancel", &[]);
        assert_eq!(out["cancelled"], true, "{mode}: {out}");
        assert!(
            out["after"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("after-cancel")),
            "{mode}: {out}"
        );
    }
}

// --- the Python SDK server (speaks 2026-07-28 and the handshake) --------------------------

#[test]
fn py_both_eras_and_ts_to_python_sdk_server_http() {
    let direct = PyDemoServer::start_http();
    let backend = PyDemoServer::start_http();
    let gw = gateway_http(&backend.url());
    for mode in ["auto", "legacy"] {
        let out = same_through_gateway(py_client, mode, &direct.url(), &gw.url(), "demo-full");
        assert_demo_full(&out);
    }
    let out = same_through_gateway(ts_client, "legacy", &direct.url(), &gw.url(), "demo-full");
    assert_demo_full(&out);
}

// --- server-everything (handshake era only) -------------------------------------------------

#[test]
fn py_and_ts_to_everything_stdio() {
    let gw = gateway_stdio(&Everything::stdio_argv());
    // The gateway speaks 2026-07-28 to the client and bridges to the handshake.
    same_through_gateway_at(
        py_client,
        "auto",
        &Everything::stdio_target(),
        &gw.url(),
        "everything",
        Some("2026-07-28"),
    );
    same_through_gateway(
        py_client,
        "legacy",
        &Everything::stdio_target(),
        &gw.url(),
        "everything",
    );
    same_through_gateway(
        ts_client,
        "legacy",
        &Everything::stdio_target(),
        &gw.url(),
        "everything",
    );
}

#[test]
fn py_and_ts_to_everything_http() {
    let direct = Everything::start_http();
    let backend = Everything::start_http();
    let gw = gateway_http(&backend.url());
    same_through_gateway(py_client, "auto", &direct.url(), &gw.url(), "everything");
    same_through_gateway(ts_client, "legacy", &direct.url(), &gw.url(), "everything");
    let out = py_client("legacy", &gw.url(), "cancel", &[]);
    assert_eq!(out["cancelled"], true, "{out}");
}

/// The conformance suite against server-everything directly and through the
/// gateway: no check that passes directly may fail through the gateway.
#[test]
fn conformance_parity_with_everything_http() {
    let direct_server = Everything::start_http();
    let direct_dir = TestDir::new("conformance-direct");
    let direct = conformance(&direct_server.url(), direct_dir.path(), &[]);
    let backend = Everything::start_http();
    let gw = gateway_http(&backend.url());
    let through_dir = TestDir::new("conformance-gateway");
    let through = conformance(&gw.url(), through_dir.path(), &[]);
    let passing_directly: Vec<&String> = direct
        .iter()
        .filter(|(_, s)| *s == "SUCCESS")
        .map(|(k, _)| k)
        .collect();
    assert!(passing_directly.len() >= 13, "baseline: {direct:#?}");
    // INFO is not a failure: the gateway may answer JSON where the server
    // streamed ("SSE streaming is optional" in server-sse-streams-functional).
    let broken: Vec<&&String> = passing_directly
        .iter()
        .filter(|check| {
            !matches!(
                through.get(**check).map(String::as_str),
                Some("SUCCESS" | "INFO")
            )
        })
        .collect();
    assert!(
        broken.is_empty(),
        "checks that pass directly but fail through the gateway: {broken:?}\n{through:#?}"
    );
}
