//! Audit, rate limits and metrics end to end: the real gateway in front of
//! the demo server, real HTTP clients. Every audit file a test produces is
//! checked against `schemas/audit-record.schema.json` (Python `jsonschema`
//! from .venv) and by `mcp-gateway audit verify`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::Gateway;
use crate::util::drivers::{repo_root, venv_python};
use crate::util::http::{self, McpSession};
use crate::util::servers::{DemoServer, toml_array};

const WAIT: Duration = Duration::from_secs(20);

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn listen() -> &'static str {
    "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n"
}

fn demo_backend(name: &str) -> String {
    format!(
        "[[backends]]\nname = \"{name}\"\ntransport = \"stdio\"\ncommand = {}\n",
        toml_array(&DemoServer::stdio_argv())
    )
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the log holds `n` records, then a moment more to catch extras.
fn wait_for_records(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    while records(path).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    records(path)
}

/// Every line of every file validates against the audit record schema.
fn assert_schema_valid(files: &[PathBuf]) {
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
n = 0
for path in sys.argv[2:]:
    for i, line in enumerate(open(path), 1):
        errors = sorted(validator.iter_errors(json.loads(line)), key=str)
        if errors:
            print(f"{path}:{i}: {errors[0].message}")
            sys.exit(1)
        n += 1
print(n)
"#;
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .arg(repo_root().join("schemas/audit-record.schema.json"))
        .args(files)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "schema validation failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mcp-gateway audit verify ARGS...` → (success, stdout + stderr).
fn verify(args: &[&str], files: &[PathBuf]) -> (bool, String) {
    crate::util::gateway::audit_verify(args, files)
}

/// Edited, deleted and swapped lines each fail `audit verify` at that line.
fn assert_tampering_detected(log: &Path) {
    let text = std::fs::read_to_string(log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert!(n >= 2);
    let (ok, out) = verify(&[], &[log.to_path_buf()]);
    assert!(ok, "untouched log must verify: {out}");
    let head = lines[n - 1];
    let head_hash = serde_json::from_str::<Value>(head).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = crate::util::TestDir::new("tamper");
    let write = |name: &str, lines: &[String]| {
        let mut body = lines.join("\n");
        body.push('\n');
        dir.write(name, &body)
    };
    let at = |file: &Path, line: usize| format!("{}:{line}:", file.display());
    for k in 0..n {
        let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        // Edit: one field changed.
        let mut edited = owned.clone();
        let mut v: Value = serde_json::from_str(&edited[k]).unwrap();
        v["latency_us"] = json!(v["latency_us"].as_u64().unwrap() + 1);
        edited[k] = v.to_string();
        let f = write("edited.jsonl", &edited);
        let (ok, out) = verify(&[], std::slice::from_ref(&f));
        assert!(
            !ok && out.contains(&at(&f, k + 1)),
            "edit of line {}: {out}",
            k + 1
        );
        // Delete.
        let mut deleted = owned.clone();
        deleted.remove(k);
        let f = write("deleted.jsonl", &deleted);
        let (ok, out) = if k + 1 == n {
            // A cut-off tail is only visible against the known head.
            verify(&["--head", &head_hash], std::slice::from_ref(&f))
        } else {
            verify(&[], std::slice::from_ref(&f))
        };
        assert!(!ok, "deleting line {} went unnoticed: {out}", k + 1);
        if k + 1 < n {
            assert!(out.contains(&at(&f, k + 1)), "delete line {}: {out}", k + 1);
        }
        // Swap with the next line.
        if k + 1 < n {
            let mut swapped = owned.clone();
            swapped.swap(k, k + 1);
            let f = write("swapped.jsonl", &swapped);
            let (ok, out) = verify(&[], std::slice::from_ref(&f));
            assert!(
                !ok && out.contains(&at(&f, k + 1)),
                "swap at line {}: {out}",
                k + 1
            );
        }
    }
}

/// Allowed, denied at the edge, unauthenticated, rate-limited, failing
/// backend, cancelled, and a routed notification: one record each, with the
/// right fields; schema-valid; the chain verifies and detects tampering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mixed_workload_one_record_per_decided_message() {
    let config = format!(
        "{}[auth]\nmode = \"none\"\nrequired_scopes = [\"mcp\"]\n\
         [[auth.api_keys]]\nsha256 = \"{}\"\nsubject = \"alice\"\ntenant = \"acme\"\nclient_id = \"agent-1\"\nscopes = [\"mcp\"]\n\
         [[auth.api_keys]]\nsha256 = \"{}\"\nsubject = \"mallory\"\nscopes = []\n\
         [[limits.rules]]\nmatch = {{ tool = \"echo\" }}\nrate = {{ per_second = 1, burst = 1 }}\n\
         [audit]\npath = \"audit.jsonl\"\nfsync = \"always\"\n\
         {}[[backends]]\nname = \"dead\"\ntransport = \"streamable_http\"\nurl = \"http://127.0.0.1:9/mcp\"\ntimeout_s = 5\n",
        listen(),
        sha256_hex("good-key"),
        sha256_hex("no-scope-key"),
        demo_backend("demo"),
    );
    let gw = Gateway::start(&config);
    let log = gw.dir().join("audit.jsonl");
    let good = [("x-api-key", "good-key")];
    let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &good).await;
    // 1. allowed list
    let list = s.request("tools/list", json!({})).await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    // 2. allowed call with arguments (redacted in the record)
    let ok = s
        .request(
            "tools/call",
            json!({"name": "demo__echo", "arguments": {"text": "secret-arg"}}),
        )
        .await;
    assert!(ok["result"].is_object(), "{ok}");
    // 3. rate limited
    let limited = s
        .request(
            "tools/call",
            json!({"name": "demo__echo", "arguments": {"text": "again"}}),
        )
        .await;
    assert_eq!(limited["error"]["code"], -32005, "{limited}");
    let retry = limited["error"]["data"]["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 1000, "{limited}");
    // 4. failing backend
    let failed = s
        .request("tools/call", json!({"name": "dead__anything"}))
        .await;
    assert_eq!(failed["error"]["code"], -32010, "{failed}");
    // 5. cancelled
    let (id, mut stream) = s
        .open_request(
            "tools/call",
            json!({"name": "demo__slow_count", "arguments": {"steps": 50, "delay_ms": 100},
                   "_meta": {"progressToken": "p1"}}),
        )
        .await;
    stream.next_message(WAIT).await.expect("first progress");
    let ack = s
        .notify(
            "notifications/cancelled",
            json!({"requestId": id, "reason": "test"}),
        )
        .await;
    assert_eq!(ack.status, 202);
    // 6. a routed client notification
    let ack = s
        .notify("notifications/roots/list_changed", json!({}))
        .await;
    assert_eq!(ack.status, 202);
    // 7. denied at the edge: authenticated, scope missing
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let denied = http::post_json(&gw.url(), &[("x-api-key", "no-scope-key")], &init).await;
    assert_eq!(denied.status, 403);
    // 8. unauthenticated: unknown key
    let refused = http::post_json(&gw.url(), &[("x-api-key", "wrong")], &init).await;
    assert_eq!(refused.status, 401);

    let all = wait_for_records(&log, 9);
    assert_eq!(all.len(), 9, "one record per decided message:\n{all:#?}");
    let find = |pred: &dyn Fn(&Value) -> bool| -> Value {
        all.iter()
            .find(|r| pred(r))
            .cloned()
            .unwrap_or_else(|| panic!("no such record in {all:#?}"))
    };
    // 0. the session's own initialize, decided as `connect`
    let r = find(&|r| r["method"] == "initialize" && r["sub"] == "alice");
    assert_eq!(
        (&r["decision"], &r["outcome"], &r["target"]["kind"]),
        (&json!("allow"), &json!("ok"), &json!("none"))
    );
    assert_eq!(r["session_id"].as_str(), s.session_id.as_deref());
    assert_eq!(r["policies"], json!(["allow-all"]));
    let r = find(&|r| r["method"] == "tools/list");
    assert_eq!(
        (
            &r["decision"],
            &r["outcome"],
            &r["sub"],
            &r["tenant"],
            &r["client_id"],
            &r["auth"]
        ),
        (
            &json!("allow"),
            &json!("ok"),
            &json!("alice"),
            &json!("acme"),
            &json!("agent-1"),
            &json!("api_key")
        )
    );
    assert_eq!(r["transport"], "streamable_http");
    assert_eq!(r["session_id"].as_str(), s.session_id.as_deref());
    let r = find(&|r| r["target"]["name"] == "demo__echo" && r["outcome"] == "ok");
    assert_eq!(r["backend"], "demo");
    assert_eq!(r["target"]["kind"], "tool");
    assert_eq!(r["args_sha256"].as_str().unwrap().len(), 64);
    assert!(
        !all.iter().any(|r| r.to_string().contains("secret-arg")),
        "arguments redacted"
    );
    let r = find(&|r| r["error_code"] == -32005);
    assert_eq!(
        (&r["decision"], &r["outcome"]),
        (&json!("allow"), &json!("error"))
    );
    let r = find(&|r| r["error_code"] == -32010);
    assert_eq!(r["backend"], "dead");
    let r = find(&|r| r["outcome"] == "cancelled");
    assert_eq!(r["target"]["name"], "demo__slow_count");
    assert_eq!(r["request_id"], id.to_string());
    let r = find(&|r| r["method"] == "notifications/roots/list_changed");
    assert_eq!(r["request_id"], Value::Null);
    let r = find(&|r| r["error_code"] == -32003);
    assert_eq!(
        (&r["decision"], &r["sub"]),
        (&json!("deny"), &json!("mallory"))
    );
    let r = find(&|r| r["error_code"] == -32001);
    assert_eq!(
        (&r["decision"], &r["sub"]),
        (&json!("deny"), &json!("unauthenticated"))
    );
    // Never a credential.
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["good-key", "no-scope-key", "wrong\""] {
        assert!(!text.contains(secret), "{secret} leaked into the audit log");
    }
    assert!(
        !gw.stderr().contains("good-key"),
        "key leaked into the logs"
    );
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    // Metrics: the same workload, scraped.
    let text = http::get(&format!("{}/metrics", gw.admin_url()), &[])
        .await
        .body;
    for (series, want) in [
        (
            "mcp_gateway_decided_messages_total{method=\"tools/call\",backend=\"demo\",decision=\"allow\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "mcp_gateway_decided_messages_total{method=\"tools/call\",backend=\"demo\",decision=\"allow\",outcome=\"rate_limited\"}",
            1.0,
        ),
        (
            "mcp_gateway_decided_messages_total{method=\"tools/call\",backend=\"dead\",decision=\"allow\",outcome=\"error\"}",
            1.0,
        ),
        ("mcp_gateway_rate_limited_total{limit=\"rule\"}", 1.0),
        ("mcp_gateway_audit_records_total", 9.0),
        (
            "mcp_gateway_decided_messages_total{method=\"initialize\",backend=\"\",decision=\"allow\",outcome=\"ok\"}",
            1.0,
        ),
        ("mcp_gateway_audit_queue_depth", 0.0),
        (
            "mcp_gateway_sessions_by_transport{transport=\"streamable_http\"}",
            1.0,
        ),
        ("mcp_gateway_backend_up{backend=\"demo\"}", 1.0),
        ("mcp_gateway_token_cache_lookups_total{result=\"hit\"}", 0.0),
    ] {
        assert_eq!(metric(&text, series), Some(want), "{series}\n{text}");
    }
    for series in [
        "mcp_gateway_audit_write_duration_seconds_count",
        "mcp_gateway_gateway_duration_seconds_count{method=\"tools/call\"}",
        "mcp_gateway_backend_duration_seconds_count{backend=\"demo\"}",
        "mcp_gateway_request_duration_seconds_count{method=\"tools/list\",backend=\"\"}",
    ] {
        assert!(
            metric(&text, series).is_some_and(|v| v >= 1.0),
            "{series}\n{text}"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[3] == "counter" {
            assert!(parts[2].ends_with("_total"), "{line}");
        }
        if parts[3] == "histogram" {
            assert!(parts[2].ends_with("_seconds"), "{line}");
        }
    }
    assert_schema_valid(std::slice::from_ref(&log));
    assert_tampering_detected(&log);
}

/// The chain continues across a restart and across rotation; verify takes
/// the rotated files in any order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chain_continues_across_restart_and_rotation() {
    let dir = crate::util::TestDir::new("audit-restart");
    let log = dir.path().join("audit.jsonl");
    let config = format!(
        "{}[audit]\npath = {}\nrotate_bytes = 2000\n{}",
        listen(),
        crate::util::servers::toml_string(&log.display().to_string()),
        demo_backend("demo"),
    );
    let mut total = 0;
    for _run in 0..2 {
        let gw = Gateway::start(&config);
        let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &[]).await;
        total += 1;
        echo_calls(&mut s, 6).await;
        total += 6;
        s.request("ping", json!({})).await;
        total += 1;
        let pid = gw.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        gw.wait_for_log(WAIT, |l| l["fields"]["message"] == "stopped");
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.jsonl")
        })
        .collect();
    assert!(files.len() >= 3, "rotated at 2000 bytes: {files:?}");
    files.sort();
    files.reverse();
    let (ok, out) = verify(&[], &files);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("ok: {total} records")), "{out}");
    assert_schema_valid(&files);
    // Without the oldest file the chain does not start at 1.
    let oldest = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "1"))
        .unwrap()
        .clone();
    let rest: Vec<PathBuf> = files.iter().filter(|f| **f != oldest).cloned().collect();
    assert!(!verify(&[], &rest).0);
    assert!(verify(&["--partial"], &rest).0);
}

/// One tools/call over a plain reqwest client that reports transport
/// failures instead of panicking: `Some(response)` or `None`.
async fn try_call(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    id: i64,
) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x"}}});
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.ok()?;
    let raw = http::RawResponse {
        status,
        headers,
        body,
    };
    raw.messages().into_iter().rev().find(http::is_response)
}

/// SIGTERM in the middle of 20 clients' load: after exit, the log holds
/// exactly one record per response the clients received, and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_sigterm_mid_load_loses_nothing() {
    let config = format!(
        "{}[limits]\nmax_sessions_per_principal = 64\n[audit]\nfsync = \"batch\"\n{}",
        listen(),
        demo_backend("demo")
    );
    let gw = Gateway::start(&config);
    let log = gw.dir().join("audit.jsonl");
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(McpSession::initialize(&gw.url(), "2025-06-18", &[]).await);
    }
    let client = reqwest::Client::new();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            let client = client.clone();
            tokio::spawn(async move {
                let headers = s.headers();
                let (mut answered, mut failed) = (0u64, 0u64);
                // Bounded: stops at the first transport failure or after 2,000 calls.
                for id in 1..=2000 {
                    match try_call(&client, &s.url, &headers, id).await {
                        Some(_) => answered += 1,
                        None => {
                            failed += 1;
                            break;
                        }
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = gw.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (mut answered, mut failed) = (0, 0);
    for t in tasks {
        let (a, f) = tokio::time::timeout(WAIT, t)
            .await
            .expect("clients end")
            .unwrap();
        answered += a;
        failed += f;
    }
    gw.wait_for_log(WAIT, |l| l["fields"]["message"] == "stopped");
    let all = records(&log);
    assert!(answered > 20, "load ran: {answered} answered");
    assert!(failed <= 20);
    // Plus one record per session's initialize.
    assert_eq!(
        all.len() as u64,
        answered + 20,
        "records vs responses received ({failed} clients saw the door close)"
    );
    let (ok, out) = verify(&[], std::slice::from_ref(&log));
    assert!(ok, "{out}");
    assert_schema_valid(std::slice::from_ref(&log));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A sink slower than the load (a FIFO read a line every 20 ms): callers
/// wait, nothing is lost, the queue never exceeds its depth and memory
/// stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_slow_fifo_sink_back_pressures_without_loss() {
    let dir = crate::util::TestDir::new("audit-fifo");
    let fifo = dir.path().join("audit.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let file = std::fs::File::open(&reader_path).expect("open fifo");
        let mut lines = Vec::new();
        // Bounded: ends when the gateway closes the FIFO or after 2,000 lines.
        for line in std::io::BufReader::new(file).lines().take(2000) {
            let Ok(line) = line else { break };
            lines.push(line);
            std::thread::sleep(Duration::from_millis(20));
        }
        lines
    });
    let config = format!(
        "{}[audit]\npath = {}\nqueue_depth = 8\n{}",
        listen(),
        crate::util::servers::toml_string(&fifo.display().to_string()),
        demo_backend("demo")
    );
    let gw = Gateway::start(&config);
    let metrics_url = format!("{}/metrics", gw.admin_url());
    let clients = 10;
    let calls = 40;
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(McpSession::initialize(&gw.url(), "2025-06-18", &[]).await);
    }
    let rss_before = rss_kib(gw.pid());
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                for i in 0..calls {
                    let r = s
                        .request(
                            "tools/call",
                            json!({"name": "echo", "arguments": {"text": format!("{i}")}}),
                        )
                        .await;
                    assert!(r["result"].is_object(), "{r}");
                }
            })
        })
        .collect();
    let mut max_depth = 0.0f64;
    let mut max_rss = rss_before;
    while !tasks.iter().all(|t| t.is_finished()) {
        let text = http::get(&metrics_url, &[]).await.body;
        let depth = metric(&text, "mcp_gateway_audit_queue_depth").expect("queue depth series");
        max_depth = max_depth.max(depth);
        max_rss = max_rss.max(rss_kib(gw.pid()));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "load did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = clients * calls;
    // The FIFO (64 KiB) and the writer's buffer (64 KiB) hold ~180 records;
    // the rest had to wait for the reader: >= (400 - 180 - 8) x 20 ms.
    assert!(
        elapsed >= Duration::from_secs(3),
        "no back-pressure: {elapsed:?}"
    );
    assert!(max_depth <= 8.0, "queue over its depth: {max_depth}");
    assert!(max_depth >= 1.0, "the queue never filled");
    assert!(
        max_rss < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {max_rss} KiB"
    );
    let pid = gw.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let lines = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    // Plus one record per session's initialize.
    assert_eq!(
        lines.len(),
        total + clients,
        "every record reached the slow sink"
    );
    let copy = dir.write("copy.jsonl", &(lines.join("\n") + "\n"));
    let (ok, out) = verify(&[], std::slice::from_ref(&copy));
    assert!(ok, "{out}");
    assert_schema_valid(&[copy]);
}

/// `[[auth.api_keys]]` entries: (key, subject, tenant, client_id).
fn api_keys(keys: &[(&str, &str, &str, &str)]) -> String {
    let mut out = String::from("[auth]\nmode = \"none\"\n");
    for (key, sub, tenant, agent) in keys {
        out.push_str(&format!(
            "[[auth.api_keys]]\nsha256 = \"{}\"\nsubject = \"{sub}\"\ntenant = \"{tenant}\"\nclient_id = \"{agent}\"\n",
            sha256_hex(key)
        ));
    }
    out
}

async fn echo(s: &mut McpSession) -> Value {
    s.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await
}

/// `n` successful `echo` calls on `s`.
async fn echo_calls(s: &mut McpSession, n: usize) {
    for i in 0..n {
        let r = s
            .request(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": format!("{i}")}}),
            )
            .await;
        assert!(r["result"].is_object(), "{r}");
    }
}

fn limited_ms(r: &Value) -> Option<u64> {
    (r["error"]["code"] == -32005).then(|| r["error"]["data"]["retry_after_ms"].as_u64().unwrap())
}

async fn open(gw: &Gateway, key: &str) -> McpSession {
    McpSession::initialize(&gw.url(), "2025-06-18", &[("x-api-key", key)]).await
}

const PRINCIPALS: &[(&str, &str, &str, &str)] = &[
    ("k-alice", "alice", "acme", "agent-a"),
    ("k-bob", "bob", "acme", "agent-b"),
    ("k-carol", "carol", "other", "agent-c"),
    ("k-dave", "dave", "other", "agent-a"),
];

/// Per tenant, per agent and per tool (with a bucket per tool), and the
/// Retry-After a refusal names is exact: refused before it, admitted after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_tenant_agent_and_tool_with_exact_retry_after() {
    // Tenant: acme's principals share one bucket.
    let gw = Gateway::start(&format!(
        "{}{}[[tenants]]\nname = \"acme\"\nbackends = [\"demo\"]\n\
         rate_limit = {{ per_second = 1, burst = 2 }}\n\
         [[tenants]]\nname = \"other\"\nbackends = [\"demo\"]\n{}",
        listen(),
        api_keys(PRINCIPALS),
        demo_backend("demo")
    ));
    let (mut alice, mut bob, mut carol) = (
        open(&gw, "k-alice").await,
        open(&gw, "k-bob").await,
        open(&gw, "k-carol").await,
    );
    assert!(echo(&mut alice).await["result"].is_object());
    assert!(echo(&mut bob).await["result"].is_object());
    let r = echo(&mut alice).await;
    assert!(limited_ms(&r).is_some(), "tenant bucket empty: {r}");
    assert!(
        r["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("tenant"),
        "{r}"
    );
    assert!(
        echo(&mut carol).await["result"].is_object(),
        "other tenant unaffected"
    );
    drop(gw);

    // Agent: alice and dave share agent-a, across tenants.
    let gw = Gateway::start(&format!(
        "{}{}[limits]\nper_agent = {{ per_second = 1, burst = 1 }}\n{}",
        listen(),
        api_keys(PRINCIPALS),
        demo_backend("demo")
    ));
    let (mut alice, mut bob, mut dave) = (
        open(&gw, "k-alice").await,
        open(&gw, "k-bob").await,
        open(&gw, "k-dave").await,
    );
    assert!(echo(&mut alice).await["result"].is_object());
    let r = echo(&mut dave).await;
    assert!(limited_ms(&r).is_some(), "agent-a bucket empty: {r}");
    assert!(
        echo(&mut bob).await["result"].is_object(),
        "agent-b unaffected"
    );
    drop(gw);

    // Tool: a bucket per tool; exact Retry-After.
    let gw = Gateway::start(&format!(
        "{}{}[[limits.rules]]\nmatch = {{ tool = \"*\" }}\nrate = {{ per_second = 1, burst = 1 }}\n{}",
        listen(),
        api_keys(PRINCIPALS),
        demo_backend("demo")
    ));
    let mut alice = open(&gw, "k-alice").await;
    assert!(echo(&mut alice).await["result"].is_object());
    let other = alice
        .request(
            "tools/call",
            json!({"name": "bump_counter", "arguments": {}}),
        )
        .await;
    assert!(
        other["result"].is_object(),
        "another tool has its own bucket: {other}"
    );
    let refused_at = Instant::now();
    let r = echo(&mut alice).await;
    let first = limited_ms(&r).unwrap_or_else(|| panic!("echo bucket empty: {r}"));
    assert!(first > 500 && first <= 1000, "{r}");
    tokio::time::sleep(Duration::from_millis(first / 2)).await;
    let r = echo(&mut alice).await;
    let second = limited_ms(&r).unwrap_or_else(|| panic!("refused until the named time: {r}"));
    let waited = refused_at.elapsed().as_millis() as u64;
    // The second answer names the same instant, less the time that passed.
    assert!(
        second + waited >= first && second + waited <= first + 150,
        "first {first} ms, then {second} ms after {waited} ms"
    );
    tokio::time::sleep(Duration::from_millis(second)).await;
    let r = echo(&mut alice).await;
    assert!(
        r["result"].is_object(),
        "admitted once Retry-After passed: {r}"
    );
    // Refusals are audited and counted.
    let all = wait_for_records(&gw.dir().join("audit.jsonl"), 5);
    assert_eq!(all.iter().filter(|r| r["error_code"] == -32005).count(), 2);
    let text = http::get(&format!("{}/metrics", gw.admin_url()), &[])
        .await
        .body;
    assert_eq!(
        metric(&text, "mcp_gateway_rate_limited_total{limit=\"rule\"}"),
        Some(2.0),
        "{text}"
    );
}

/// `audit.path = "-"` writes the chain to stdout; a stateless request
/// refused by a limit is a whole HTTP request refused: 429 + Retry-After;
/// logs are JSON lines, one per session start/end and per denial, without
/// credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_sink_http_429_and_structured_logs() {
    let gw = Gateway::start(&format!(
        "{}{}[limits]\nper_principal = {{ per_second = 1, burst = 1 }}\n[audit]\npath = \"-\"\n{}",
        listen(),
        api_keys(PRINCIPALS),
        demo_backend("demo")
    ));
    let key = [("x-api-key", "k-alice")];
    let params = json!({"name": "echo", "arguments": {"text": "hi"}});
    let discover = http::modern_request(&gw.url(), 0, "server/discover", json!({}), &key).await;
    assert_eq!(discover.status, 200, "{discover:?}");
    let ok = http::modern_request(&gw.url(), 1, "tools/call", params.clone(), &key).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let refused = http::modern_request(&gw.url(), 2, "tools/call", params, &key).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.rpc()["error"]["code"], -32005);
    let bad = http::modern_request(
        &gw.url(),
        3,
        "tools/list",
        json!({}),
        &[("x-api-key", "nope")],
    )
    .await;
    assert_eq!(bad.status, 401);
    let bob = open(&gw, "k-bob").await;
    let sid = bob.session_id.clone().unwrap();
    assert_eq!(bob.delete().await.status, 200);
    drop(bob);

    let deadline = Instant::now() + WAIT;
    // discover, ok, refused, unauthenticated, and bob's initialize
    while gw.stdout().lines().count() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = gw.stdout();
    let dir = crate::util::TestDir::new("audit-stdout");
    let copy = dir.write("stdout.jsonl", &out);
    let lines: Vec<Value> = records(&copy);
    assert_eq!(lines.len(), 5, "{out}");
    let methods: Vec<&str> = lines.iter().filter_map(|r| r["method"].as_str()).collect();
    assert_eq!(methods[0], "server/discover", "{out}");
    assert!(methods.contains(&"initialize"), "{out}");
    assert_eq!(lines[0]["sub"], "alice");
    let (ok, text) = verify(&[], std::slice::from_ref(&copy));
    assert!(ok, "{text}");
    assert_schema_valid(&[copy]);

    let stderr = gw.stderr();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    for secret in ["k-alice", "k-bob", "nope"] {
        assert!(!stderr.contains(secret), "{secret} in the logs");
    }
    let logs = gw.logs();
    let has = |message: &str, pred: &dyn Fn(&Value) -> bool| {
        logs.iter()
            .any(|l| l["fields"]["message"] == message && pred(&l["fields"]))
    };
    assert!(
        has("session started", &|f| f["session.id"] == sid.as_str()
            && f["sub"] == "bob"),
        "{stderr}"
    );
    assert!(
        has("session ended", &|f| f["session.id"] == sid.as_str()),
        "{stderr}"
    );
    assert!(has("rate limited", &|f| f["sub"] == "alice"), "{stderr}");
    assert!(
        has("refused at the edge", &|f| f["sub"] == "unauthenticated"),
        "{stderr}"
    );
}

/// An OTLP/HTTP collector in the test: records every JSON body POSTed to
/// `/v1/traces`.
struct Collector {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        use axum::routing::post;
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: String| {
                let store = store.clone();
                async move {
                    if let Ok(v) = serde_json::from_str::<Value>(&body) {
                        store.lock().unwrap().push(v);
                    }
                    "{}"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { url, bodies, task }
    }

    fn spans(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b["resourceSpans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
                    .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
            })
            .collect()
    }

    async fn wait_for_span(&self, trace_id: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| s["traceId"] == trace_id) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no span of trace {trace_id}: {:?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn attribute(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| kv["value"]["stringValue"].clone())
        .unwrap_or(Value::Null)
}

/// A client's `traceparent` (in `_meta`, or as the HTTP header) is
/// continued by the gateway's span, exported to an OTLP collector, and
/// propagated to the backend as the child of that span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_span_continues_the_client_trace_and_reaches_the_backend() {
    let collector = Collector::start().await;
    let echo = crate::util::auth::EchoHeaders::start();
    let gw = Gateway::start(&format!(
        "{}[telemetry]\notlp_endpoint = \"{}\"\n{}",
        listen(),
        collector.url,
        echo.backend_toml("echo", "")
    ));
    let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &[]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let r = s
        .request(
            "tools/call",
            json!({"name": "echo_headers", "arguments": {},
                   "_meta": {"traceparent": format!("00-{trace}-{client_span}-01")}}),
        )
        .await;
    let headers: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    let sent = headers["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("{headers}"));
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace, "01"),
        "{sent}"
    );
    assert_ne!(
        parts[2], client_span,
        "the backend's parent is the gateway's span"
    );
    let span = collector.wait_for_span(trace).await;
    assert_eq!(span["parentSpanId"], client_span);
    assert_eq!(span["spanId"], parts[2]);
    assert_eq!(span["name"], "tools/call");
    assert_eq!(attribute(&span, "mcp.method"), "tools/call");
    assert_eq!(attribute(&span, "mcp.tool"), "echo_headers");
    assert_eq!(attribute(&span, "mcp.backend"), "echo");
    assert_eq!(attribute(&span, "mcp.decision"), "allow");
    assert_eq!(attribute(&span, "mcp.outcome"), "ok");

    // The header on the client's POST works the same.
    let trace2 = "5bf92f3577b34da6a3ce929d0e0e4736";
    let mut h = s.headers();
    h.push((
        "traceparent".into(),
        format!("00-{trace2}-{client_span}-01"),
    ));
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let body = json!({"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {}});
    assert_eq!(http::post_json(&gw.url(), &refs, &body).await.status, 200);
    let span = collector.wait_for_span(trace2).await;
    assert_eq!(span["parentSpanId"], client_span);
    assert_eq!(attribute(&span, "mcp.method"), "tools/list");
    // Without any trace context: a new trace, no parent.
    s.request("ping", json!({})).await;
    let deadline = Instant::now() + WAIT;
    while !collector.spans().iter().any(|s| s["name"] == "ping") {
        assert!(Instant::now() < deadline, "no ping span");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ping = collector
        .spans()
        .into_iter()
        .find(|s| s["name"] == "ping")
        .unwrap();
    assert!(ping.get("parentSpanId").is_none(), "{ping}");
}

/// `max_in_flight_per_principal`: a second concurrent call of the same
/// principal is refused with -32005 while the first runs; after it, calls
/// are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_per_principal() {
    let gw = Gateway::start(&format!(
        "{}{}[limits]\nmax_in_flight_per_principal = 1\n{}",
        listen(),
        api_keys(PRINCIPALS),
        demo_backend("demo")
    ));
    let mut alice = open(&gw, "k-alice").await;
    let mut alice2 = open(&gw, "k-alice").await;
    let mut bob = open(&gw, "k-bob").await;
    let slow = tokio::spawn(async move {
        alice
            .request(
                "tools/call",
                json!({"name": "slow_count", "arguments": {"steps": 10, "delay_ms": 100}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = echo(&mut alice2).await;
    assert!(
        limited_ms(&r).is_some(),
        "second call in flight refused: {r}"
    );
    assert!(
        echo(&mut bob).await["result"].is_object(),
        "another principal unaffected"
    );
    let done = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert!(done["result"].is_object(), "{done}");
    assert!(
        echo(&mut alice2).await["result"].is_object(),
        "slot given back"
    );
}

/// `POST /admin/reload` applies `[limits]`: a limit that did not change
/// keeps its bucket (a reload is no way around a limit), a changed one
/// takes effect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_change_with_hot_reload_and_unchanged_buckets_are_kept() {
    let limits = "[limits]\nper_principal = { per_second = 1, burst = 2 }\n";
    let gw = Gateway::start(&format!(
        "{}{}{limits}{}",
        listen(),
        api_keys(PRINCIPALS),
        demo_backend("demo")
    ));
    let reload = async || {
        let resp =
            http::post_json(&format!("{}/admin/reload", gw.admin_url()), &[], &json!({})).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    };
    let mut alice = open(&gw, "k-alice").await;
    assert!(echo(&mut alice).await["result"].is_object());
    assert!(echo(&mut alice).await["result"].is_object());
    let refused = echo(&mut alice).await;
    let refused_at = Instant::now();
    let wait_ms = limited_ms(&refused).unwrap_or_else(|| panic!("burst spent: {refused}"));

    // The same limits again: the bucket is still empty.
    reload().await;
    let again = echo(&mut alice).await;
    if refused_at.elapsed() < Duration::from_millis(wait_ms.saturating_sub(100)) {
        assert!(
            limited_ms(&again).is_some(),
            "a reload without changes must not refill buckets: {again}"
        );
    }

    // A raised limit applies to the next call.
    let config = gw.dir().join("gateway.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains(limits), "{text}");
    let raised = "[limits]\nper_principal = { per_second = 1000, burst = 1000 }\n";
    std::fs::write(&config, text.replace(limits, raised)).expect("rewrite config");
    reload().await;
    for _ in 0..5 {
        let r = echo(&mut alice).await;
        assert!(r["result"].is_object(), "raised limit: {r}");
    }
}

/// `mcp_gateway_open_streams` counts GET streams and WebSockets while they
/// are open, per transport, and forgets them when they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_gauged_per_transport() {
    use crate::util::front::WsClient;
    let gw = Gateway::start(&format!("{}{}", listen(), demo_backend("demo")));
    let metrics_url = format!("{}/metrics", gw.admin_url());
    let gauge = async |transport: &str| {
        let text = http::get(&metrics_url, &[]).await.body;
        metric(
            &text,
            &format!("mcp_gateway_open_streams{{transport=\"{transport}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let settle = async |transport: &str, want: f64| {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = gauge(transport).await;
            if now == want || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let session = McpSession::initialize(&gw.url(), "2025-06-18", &[]).await;
    let stream = session.get_stream(None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(settle("streamable_http", 1.0).await, 1.0);
    let mut ws = WsClient::try_connect(
        &format!("ws://{}/ws", gw.addr()),
        &[("sec-websocket-protocol", "mcp")],
    )
    .await
    .expect("websocket");
    ws.initialize("2025-11-25").await;
    assert_eq!(settle("websocket", 1.0).await, 1.0);
    drop(stream);
    drop(ws);
    assert_eq!(settle("streamable_http", 0.0).await, 0.0);
    assert_eq!(settle("websocket", 0.0).await, 0.0);
}

/// A syslog collector on loopback: every byte of every connection, in order.
struct SyslogCollector {
    addr: String,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl SyslogCollector {
    fn start() -> SyslogCollector {
        SyslogCollector::on(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    fn on(listener: std::net::TcpListener) -> SyslogCollector {
        let addr = listener.local_addr().expect("addr").to_string();
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = bytes.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 8192];
                while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        });
        SyslogCollector { addr, bytes }
    }

    /// The messages received (octet-counted RFC 5424 frames): the JSON of
    /// each, after checking its header.
    fn records(&self) -> Vec<String> {
        let got = self.bytes.lock().unwrap().clone();
        let mut rest = &got[..];
        let mut out = Vec::new();
        while let Some(space) = rest.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&rest[..space])
                .unwrap()
                .parse()
                .unwrap();
            if rest.len() < space + 1 + len {
                break;
            }
            let frame = std::str::from_utf8(&rest[space + 1..space + 1 + len]).unwrap();
            let fields: Vec<&str> = frame.splitn(8, ' ').collect();
            assert_eq!(
                (fields[0], fields[3], fields[5], fields[6]),
                ("<110>1", "mcp-gateway", "audit", "-"),
                "{frame}"
            );
            out.push(fields[7].to_owned());
            rest = &rest[space + 1 + len..];
        }
        out
    }

    fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        while self.records().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.records()
    }
}

/// `path = "syslog://…"` sends every record to a syslog collector over
/// TCP; the chain continues across a restart through the checkpoint, and
/// what the collector holds verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_sink_delivers_a_chain_that_verifies_across_restarts() {
    let collector = SyslogCollector::start();
    let dir = crate::util::TestDir::new("audit-syslog");
    let checkpoint = dir.path().join("audit.checkpoint");
    let config = format!(
        "{}[audit]\npath = \"syslog://{}\"\ncheckpoint = {}\n{}",
        listen(),
        collector.addr,
        crate::util::servers::toml_string(&checkpoint.display().to_string()),
        demo_backend("demo"),
    );
    let mut expected = 0;
    for _run in 0..2 {
        let gw = Gateway::start(&config);
        let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &[]).await;
        echo_calls(&mut s, 3).await;
        expected += 4;
        assert_eq!(collector.wait_for(expected).len(), expected);
        let pid = gw.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        gw.wait_for_log(WAIT, |l| l["fields"]["message"] == "stopped");
    }
    let lines = collector.records();
    assert_eq!(lines.len(), 8);
    let file = dir.write("collected.jsonl", &(lines.join("\n") + "\n"));
    let (ok, out) = verify(&[], std::slice::from_ref(&file));
    assert!(ok, "{out}");
    assert!(out.contains("ok: 8 records"), "{out}");
    assert_schema_valid(&[file]);
    let last: Value = serde_json::from_str(&lines[7]).unwrap();
    let saved = std::fs::read_to_string(&checkpoint).unwrap();
    assert_eq!(
        saved.trim(),
        format!("8 {}", last["hash"].as_str().unwrap())
    );
}

/// Records written while the collector is down wait (and retry) rather
/// than vanish: they all arrive once it listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_sink_keeps_records_while_the_collector_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = crate::util::TestDir::new("audit-syslog-down");
    let config = format!(
        "{}[audit]\npath = \"syslog://127.0.0.1:{port}\"\ncheckpoint = {}\n{}",
        listen(),
        crate::util::servers::toml_string(&dir.path().join("cp").display().to_string()),
        demo_backend("demo"),
    );
    let gw = Gateway::start(&config);
    let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &[]).await;
    echo_calls(&mut s, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port again");
    let collector = SyslogCollector::on(listener);
    let lines = collector.wait_for(4);
    assert_eq!(
        lines.len(),
        4,
        "every record arrives once the collector is up"
    );
    let file = dir.write("collected.jsonl", &(lines.join("\n") + "\n"));
    let (ok, out) = verify(&[], std::slice::from_ref(&file));
    assert!(ok, "{out}");
    let text = http::get(&format!("{}/metrics", gw.admin_url()), &[])
        .await
        .body;
    assert!(
        metric(&text, "mcp_gateway_audit_write_errors_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
}
