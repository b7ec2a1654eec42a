//! The third-party clients in tests/interop, run as subprocesses: the Python
//! and TypeScript SDK drivers (one JSON object per run, normalized so direct
//! and through-gateway runs compare equal), the Inspector CLI and the
//! conformance suite. All calls block (each is a separate process); in a test
//! that also serves something in-process, call them via
//! `tokio::task::spawn_blocking` or use a multi-thread runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process::run_with_timeout;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);
const INSPECTOR_TIMEOUT: Duration = Duration::from_secs(60);
const CONFORMANCE_TIMEOUT: Duration = Duration::from_secs(180);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/interop/`
pub fn interop_dir() -> PathBuf {
    repo_root().join("tests/interop")
}

/// `.venv/bin/python` (created by scripts/install-test-deps.sh).
pub fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        python.display()
    );
    python
}

/// The Node 22 binary from tests/interop/node22 (conformance and Inspector need it).
pub fn node22() -> PathBuf {
    let node = interop_dir().join("node22/node_modules/node/bin/node");
    assert!(
        node.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        node.display()
    );
    node
}

/// One driver run, whatever its exit code.
#[derive(Debug)]
pub struct DriverRun {
    /// Exit code: 0 ok, 2 connect failed (`json.connect_error`), 3 protocol
    /// differs from `--expect-protocol`, 1 crash; `None` if killed by a signal.
    pub code: Option<i32>,
    /// The JSON object on stdout, if there was one.
    pub json: Option<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl DriverRun {
    /// The JSON output of a successful run; panics with stderr otherwise.
    pub fn ok(self, what: &str) -> Value {
        match (self.code, self.json) {
            (Some(0), Some(json)) => json,
            (code, _) => panic!(
                "{what}: exit code {code:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            ),
        }
    }
}

fn driver_command(
    program: &Path,
    script: &str,
    mode: &str,
    target: &str,
    scenario: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(interop_dir().join(script))
        .args([mode, target, scenario])
        .args(extra)
        .current_dir(repo_root())
        // httpx honours *_PROXY; loopback traffic must never take a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1");
    cmd
}

fn run_driver(name: &str, cmd: Command) -> DriverRun {
    let finished = run_with_timeout(name, cmd, DRIVER_TIMEOUT);
    let json = finished.stdout.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l.trim())
            .ok()
            .filter(Value::is_object)
    });
    DriverRun {
        code: finished.status.code(),
        json,
        stdout: finished.stdout,
        stderr: finished.stderr,
    }
}

/// Runs `py_client.py MODE TARGET SCENARIO EXTRA…` and returns its JSON.
///
/// MODE: `auto` (2026-07-28 via discover, falling back), `legacy` (2025-11-25),
/// `legacy-2025-03-26` (any `legacy-VERSION`), `2026-07-28` (no probe).
/// TARGET: `http://…/mcp` or `stdio:CMD ARGS` (see `servers::stdio_target`).
/// SCENARIO: `tools` (`--call NAME --args JSON`), `demo-full`, `everything`, `cancel`, `basic` (tools, echo, resources, read).
/// EXTRA: `--header "K: V"`, `--expect-protocol V`, `--prefix P`.
/// Panics (with the driver's stderr) unless it exits 0.
pub fn py_client(mode: &str, target: &str, scenario: &str, extra: &[&str]) -> Value {
    py_client_run(mode, target, scenario, extra)
        .ok(&format!("py_client {mode} {target} {scenario} {extra:?}"))
}

/// Like `py_client` but returns the run whatever the exit code (for expected failures).
pub fn py_client_run(mode: &str, target: &str, scenario: &str, extra: &[&str]) -> DriverRun {
    let cmd = driver_command(
        &venv_python(),
        "py_client.py",
        mode,
        target,
        scenario,
        extra,
    );
    run_driver("py_client", cmd)
}

/// Runs `ts_client.mjs` (TS SDK v1; MODE `legacy` or `legacy-VERSION` only).
pub fn ts_client(mode: &str, target: &str, scenario: &str, extra: &[&str]) -> Value {
    ts_client_run(mode, target, scenario, extra)
        .ok(&format!("ts_client {mode} {target} {scenario} {extra:?}"))
}

pub fn ts_client_run(mode: &str, target: &str, scenario: &str, extra: &[&str]) -> DriverRun {
    let mut cmd = driver_command(
        Path::new("node"),
        "ts_client.mjs",
        mode,
        target,
        scenario,
        extra,
    );
    if target.starts_with("ws:") {
        // WebSocketClientTransport needs the global WebSocket, behind a flag on Node 20.
        cmd.env("NODE_OPTIONS", "--experimental-websocket");
    }
    run_driver("ts_client", cmd)
}

/// Runs `py_ws_client.py` (Python SDK 1.30 in `.venv-ws`, the last with a
/// WebSocket client): same modes (`legacy`, `legacy-VERSION`), scenarios
/// (`tools`, `demo-full`, `everything`) and JSON as `py_client`; TARGET
/// `ws:ws://…/ws`, `sse:…`, `http://…/mcp` or `stdio:…`.
pub fn py_ws_client(mode: &str, target: &str, scenario: &str, extra: &[&str]) -> Value {
    py_ws_client_run(mode, target, scenario, extra).ok(&format!(
        "py_ws_client {mode} {target} {scenario} {extra:?}"
    ))
}

pub fn py_ws_client_run(mode: &str, target: &str, scenario: &str, extra: &[&str]) -> DriverRun {
    let cmd = driver_command(
        &super::servers::ws_venv_python(),
        "py_ws_client.py",
        mode,
        target,
        scenario,
        extra,
    );
    run_driver("py_ws_client", cmd)
}

/// `inspector.sh URL METHOD ARGS…`: the Inspector CLI's JSON result, e.g.
/// `inspector(&url, "tools/call", &["--tool-name", "get-sum", "--tool-arg", "a=1", "b=2"])`.
pub fn inspector(url: &str, method: &str, args: &[&str]) -> Value {
    let run = inspector_run(url, method, args);
    match (run.code, run.json) {
        (Some(0), Some(v)) => v,
        (code, _) => panic!(
            "inspector {url} {method} {args:?}: exit code {code:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            run.stdout, run.stderr
        ),
    }
}

/// Like `inspector` but whatever the exit code; `json` is the whole stdout
/// parsed (the Inspector pretty-prints, and prints `{"error":…}` on failure).
pub fn inspector_run(url: &str, method: &str, args: &[&str]) -> DriverRun {
    let mut cmd = Command::new("bash");
    cmd.arg(interop_dir().join("inspector.sh"))
        .args([url, method])
        .args(args)
        .current_dir(repo_root());
    let finished = run_with_timeout("inspector", cmd, INSPECTOR_TIMEOUT);
    DriverRun {
        code: finished.status.code(),
        json: serde_json::from_str(finished.stdout.trim()).ok(),
        stdout: finished.stdout,
        stderr: finished.stderr,
    }
}

/// Runs the conformance suite (server mode) against `url`, leaving its output
/// in `outdir` (see conformance.sh), and returns the per-check statuses:
/// `"<scenario>/<check id>" → "SUCCESS" | "FAILURE" | …`. The suite's own
/// verdict is not a test verdict: compare these maps (direct vs gateway).
/// `extra` goes to the runner, e.g. `["--scenario", "tools-list"]`.
pub fn conformance(url: &str, outdir: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = Command::new("bash");
    cmd.arg(interop_dir().join("conformance.sh"))
        .arg(url)
        .arg(outdir)
        .args(extra)
        .current_dir(repo_root());
    let finished = run_with_timeout("conformance", cmd, CONFORMANCE_TIMEOUT);
    assert!(
        finished.status.success(),
        "conformance.sh {url}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    let statuses = outdir.join("statuses.json");
    let text = std::fs::read_to_string(&statuses)
        .unwrap_or_else(|e| panic!("read {}: {e}", statuses.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", statuses.display()))
}

/// A driver script's runner: `(mode, target, scenario, extra args)` → its JSON.
pub type Driver = fn(&str, &str, &str, &[&str]) -> Value;

/// A driver's output without the negotiated revision, which may differ
/// between a direct run and one through the gateway.
pub fn without_protocol(mut out: Value) -> Value {
    if let Some(o) = out.as_object_mut() {
        o.remove("protocol");
    }
    out
}

/// Runs `scenario` with `driver` directly and through the gateway and
/// compares; returns the gateway's output for further checks.
pub fn same_through_gateway(
    driver: Driver,
    mode: &str,
    direct: &str,
    gateway: &str,
    scenario: &str,
) -> Value {
    same_through_gateway_at(driver, mode, direct, gateway, scenario, None)
}

/// As `same_through_gateway`, also checking the revision the gateway
/// negotiated with the client.
pub fn same_through_gateway_at(
    driver: Driver,
    mode: &str,
    direct: &str,
    gateway: &str,
    scenario: &str,
    protocol: Option<&str>,
) -> Value {
    let direct_out = driver(mode, direct, scenario, &[]);
    let expect: Vec<&str> = protocol
        .map(|p| vec!["--expect-protocol", p])
        .unwrap_or_default();
    let through = driver(mode, gateway, scenario, &expect);
    assert_eq!(
        without_protocol(direct_out.clone()),
        without_protocol(through.clone()),
        "{mode} {scenario}: direct {direct} and through the gateway differ"
    );
    assert!(through.get("connect_error").is_none(), "{through}");
    through
}
