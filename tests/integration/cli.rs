//! The command line: `check` reports every problem at once with positions,
//! and `serve` without a config runs the embedded quickstart, loudly.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::util::TestDir;
use crate::util::gateway::gateway_bin;
use crate::util::http::McpSession;

#[test]
fn check_prints_a_summary_or_every_problem_with_its_position() {
    let dir = TestDir::new("cli-check");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = [\"mcp-gateway\", \"demo-server\"]\n")
        .expect("write config");
    let out = Command::new(gateway_bin())
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("demo"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[listen]\naddr = 42\nfrobnicate = true\n\n[admin]\ntoken_env = \"MCP_GATEWAY_TEST_UNSET_VAR\"\n\n\
         [[backends]]\nname = \"git hub\"\ntransport = \"stdio\"\ncommand = [\"x\"]\n",
    )
    .expect("write config");
    let out = Command::new(gateway_bin())
        .args(["check", "--config"])
        .arg(&bad)
        .env_remove("MCP_GATEWAY_TEST_UNSET_VAR")
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        ":2:8: listen.addr",
        ":3:1: listen.frobnicate",
        ":6:13: admin.token_env",
        ":9:8: backends[0].name",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_runs_the_quickstart_with_a_warning() {
    // The quickstart binds the fixed ports 8080/9090; skip quietly if
    // something else on this machine holds them.
    if std::net::TcpListener::bind("127.0.0.1:8080").is_err()
        || std::net::TcpListener::bind("127.0.0.1:9090").is_err()
    {
        eprintln!("ports 8080/9090 busy: quickstart test not run");
        return;
    }
    let dir = TestDir::new("cli-quickstart");
    let mut child = Command::new(gateway_bin())
        .arg("serve")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let url = "http://127.0.0.1:8080/mcp";
    let mut session = None;
    for _ in 0..100 {
        if reqwest::get("http://127.0.0.1:9090/healthz").await.is_ok() {
            session = Some(McpSession::initialize(url, "2025-11-25", &[]).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut session = session.expect("the quickstart came up");
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "quick"}}),
        )
        .await;
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(rpc["result"]["content"][0]["text"], "quick", "{rpc}");
    assert!(
        stderr.contains("QUICKSTART") && stderr.contains("local use only"),
        "{stderr}"
    );
}
