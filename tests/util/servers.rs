//! MCP servers the tests put behind the gateway (or talk to directly):
//! our demo server, @modelcontextprotocol/server-everything, and the Python
//! SDK twin of the demo server (the one backend that speaks 2026-07-28).
//! Each runs over Streamable HTTP on a loopback port, or gives the command
//! line to run it over stdio (for `stdio:` driver targets and gateway configs).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::drivers::{interop_dir, venv_python};
use super::gateway::gateway_bin;
use super::process::{ChildGuard, free_port};

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts retried when a port picked by `free_port` was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// `argv` as a driver target: `stdio:` + a shell-quoted command line.
pub fn stdio_target(argv: &[String]) -> String {
    format!(
        "stdio:{}",
        argv.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `argv` as a TOML array, for `command = …` in a gateway config.
pub fn toml_array(argv: &[String]) -> String {
    let items: Vec<String> = argv.iter().map(|a| toml_string(a)).collect();
    format!("[{}]", items.join(", "))
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    // JSON string escaping is valid TOML basic-string escaping.
    serde_json::to_string(s).expect("string serializes")
}

fn still_alive_after(process: &mut ChildGuard, grace: Duration) -> bool {
    std::thread::sleep(grace);
    process.try_exit().is_none()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// --- our demo server ---------------------------------------------------------

/// `mcp-gateway demo-server --http 127.0.0.1:0`.
pub struct DemoServer {
    process: ChildGuard,
    url: String,
}

impl DemoServer {
    /// Starts it over Streamable HTTP; the URL comes from its stderr line
    /// `demo-server listening on http://127.0.0.1:PORT/mcp` (plain or inside a JSON log line).
    pub fn start_http() -> DemoServer {
        DemoServer::start_http_at("127.0.0.1:0")
    }

    /// On a given address (a restarted backend keeps its URL, not its sessions).
    pub fn start_http_at(addr: &str) -> DemoServer {
        let mut cmd = Command::new(gateway_bin());
        cmd.args(["demo-server", "--http", addr])
            .env("RUST_LOG", "info");
        let mut process = ChildGuard::spawn("mcp-gateway demo-server", cmd);
        let url = process.wait_for_stderr("demo-server listening line", START_TIMEOUT, |stderr| {
            stderr.lines().find_map(parse_demo_listening)
        });
        DemoServer { process, url }
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        let rest = self.url.trim_start_matches("http://");
        rest.split('/').next().unwrap_or(rest).to_string()
    }

    /// SIGKILL, as when the server crashes.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The stdio command: `[mcp-gateway, demo-server]`.
    pub fn stdio_argv() -> Vec<String> {
        vec![
            gateway_bin().display().to_string(),
            "demo-server".to_string(),
        ]
    }

    /// `stdio:/…/mcp-gateway demo-server`, a driver target.
    pub fn stdio_target() -> String {
        stdio_target(&Self::stdio_argv())
    }
}

fn parse_demo_listening(line: &str) -> Option<String> {
    let rest = &line[line.find("demo-server listening on ")? + "demo-server listening on ".len()..];
    let url: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\\')
        .collect();
    url.starts_with("http").then_some(url)
}

// --- server-everything ---------------------------------------------------------

/// @modelcontextprotocol/server-everything (handshake era only, up to 2025-11-25).
pub struct Everything {
    process: ChildGuard,
    port: u16,
}

impl Everything {
    fn entry() -> PathBuf {
        let entry = interop_dir()
            .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        assert!(
            entry.is_file(),
            "{} missing: run scripts/install-test-deps.sh",
            entry.display()
        );
        entry
    }

    /// Starts it over Streamable HTTP (`url()`, `/mcp`). It binds all
    /// interfaces on `PORT` (its only knob), so the port is picked here and the
    /// start retried if taken.
    pub fn start_http() -> Everything {
        Self::start("streamableHttp", "listening on port")
    }

    /// Starts it over legacy HTTP+SSE (2024-11-05): `sse_url()` is the GET
    /// stream, `POST /message?sessionId=…` the endpoint it announces.
    pub fn start_sse() -> Everything {
        Self::start("sse", "running on port")
    }

    /// `ready`: the text before the port number in its stderr start line.
    fn start(transport: &str, ready: &str) -> Everything {
        let mut last_report = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new("node");
            cmd.arg(Self::entry())
                .arg(transport)
                .env("PORT", port.to_string());
            let mut process = ChildGuard::spawn("server-everything", cmd);
            // It logs "listening" even when the bind then fails ("Port … is
            // already in use"), and a port that accepts could be a stranger's:
            // so log line, accepting port, and still alive a moment later.
            let logged = format!("{ready} {port}");
            if process.stderr_ready(&logged, START_TIMEOUT)
                && process.port_ready(port, START_TIMEOUT)
                && still_alive_after(&mut process, Duration::from_millis(200))
            {
                return Everything { process, port };
            }
            last_report = process.report();
        }
        panic!("server-everything did not start in {PORT_ATTEMPTS} attempts\n{last_report}");
    }

    /// `http://127.0.0.1:PORT/mcp` (after `start_http`)
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// `http://127.0.0.1:PORT/sse` (after `start_sse`); driver target `sse:` + this.
    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The stdio command: `[node, …/dist/index.js, stdio]`.
    pub fn stdio_argv() -> Vec<String> {
        vec![
            "node".to_string(),
            Self::entry().display().to_string(),
            "stdio".to_string(),
        ]
    }

    pub fn stdio_target() -> String {
        stdio_target(&Self::stdio_argv())
    }
}

// --- the Python SDK twin of the demo server ------------------------------------------

/// `tests/interop/py_demo_server.py`: the demo server's surface on the Python
/// SDK; answers both `initialize` and `server/discover` (2026-07-28). Its
/// Host check is on: a request must carry a loopback Host with the port.
pub struct PyDemoServer {
    process: ChildGuard,
    port: u16,
}

impl PyDemoServer {
    fn script() -> PathBuf {
        interop_dir().join("py_demo_server.py")
    }

    pub fn start_http() -> PyDemoServer {
        let mut last_report = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(venv_python());
            cmd.arg(Self::script()).arg("http").arg(port.to_string());
            let mut process = ChildGuard::spawn("py_demo_server", cmd);
            let logged = format!("Uvicorn running on http://127.0.0.1:{port}");
            if process.stderr_ready(&logged, START_TIMEOUT)
                && process.port_ready(port, START_TIMEOUT)
                && still_alive_after(&mut process, Duration::from_millis(200))
            {
                return PyDemoServer { process, port };
            }
            last_report = process.report();
        }
        panic!("py_demo_server did not start in {PORT_ATTEMPTS} attempts\n{last_report}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    pub fn stdio_argv() -> Vec<String> {
        vec![
            venv_python().display().to_string(),
            Self::script().display().to_string(),
            "stdio".to_string(),
        ]
    }

    pub fn stdio_target() -> String {
        stdio_target(&Self::stdio_argv())
    }
}

// --- servers for the SSE and WebSocket backend transports -----------------------------
//
// Each can be killed (a backend that dies mid-call), stopped with SIGSTOP (a
// backend that goes silent) and started again on the same port (the gateway
// reconnects to the same URL).

/// `.venv-ws/bin/python`: the Python SDK 1.30 (`mcp[ws]`), the last with
/// WebSocket (created by scripts/install-test-deps.sh).
pub fn ws_venv_python() -> PathBuf {
    let python = super::drivers::repo_root().join(".venv-ws/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        python.display()
    );
    python
}

/// Starts `make(port)` until it is up: on `port`, or on a fresh port per
/// attempt. `make` gives the command and the stderr text that says "ready".
fn start_with_retries(
    name: &str,
    port: Option<u16>,
    make: impl Fn(u16) -> (Command, String),
) -> (ChildGuard, u16) {
    let mut last_report = String::new();
    for attempt in 0..PORT_ATTEMPTS + 2 {
        let port = port.unwrap_or_else(free_port);
        let (cmd, ready) = make(port);
        let mut process = ChildGuard::spawn(name, cmd);
        if process.stderr_ready(&ready, START_TIMEOUT)
            && process.port_ready(port, START_TIMEOUT)
            && still_alive_after(&mut process, Duration::from_millis(200))
        {
            return (process, port);
        }
        last_report = process.report();
        process.kill();
        // A port just released may take a moment to be bindable again.
        std::thread::sleep(Duration::from_millis(200 * (attempt as u64 + 1)));
    }
    panic!("{name} did not start\n{last_report}");
}

/// Sends `signal` (e.g. "STOP", "CONT") to one process, by its pid.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

impl PyDemoServer {
    /// Over legacy HTTP+SSE (2024-11-05): `sse_url()`.
    pub fn start_sse() -> PyDemoServer {
        Self::sse_on(None)
    }

    /// Over legacy HTTP+SSE on `port` (a restart after `kill`).
    pub fn start_sse_on(port: u16) -> PyDemoServer {
        Self::sse_on(Some(port))
    }

    fn sse_on(port: Option<u16>) -> PyDemoServer {
        let (process, port) = start_with_retries("py_demo_server sse", port, |port| {
            let mut cmd = Command::new(venv_python());
            cmd.arg(Self::script()).arg("sse").arg(port.to_string());
            (cmd, format!("Uvicorn running on http://127.0.0.1:{port}"))
        });
        PyDemoServer { process, port }
    }

    /// `http://127.0.0.1:PORT/sse` (after `start_sse`).
    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }
}

impl Everything {
    /// Over legacy HTTP+SSE on `port` (a restart after `kill`).
    pub fn start_sse_on(port: u16) -> Everything {
        let (process, port) = start_with_retries("server-everything sse", Some(port), |port| {
            let mut cmd = Command::new("node");
            cmd.arg(Self::entry())
                .arg("sse")
                .env("PORT", port.to_string());
            (cmd, format!("running on port {port}"))
        });
        Everything { process, port }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// `tests/interop/py_ws_server.py`: the Python SDK 1.30 `websocket_server`
/// in a Starlette app (demo surface plus `hang` and `crash`, and a `headers`
/// tool that shows what the server received); the same server over legacy
/// SSE at `sse_url()`, for drivers that cannot speak WebSocket.
pub struct PyWsServer {
    process: ChildGuard,
    port: u16,
}

impl PyWsServer {
    fn script() -> PathBuf {
        interop_dir().join("py_ws_server.py")
    }

    pub fn start() -> PyWsServer {
        Self::on(None)
    }

    pub fn start_on(port: u16) -> PyWsServer {
        Self::on(Some(port))
    }

    fn on(port: Option<u16>) -> PyWsServer {
        let (process, port) = start_with_retries("py_ws_server", port, |port| {
            let mut cmd = Command::new(ws_venv_python());
            cmd.arg(Self::script()).arg(port.to_string());
            (cmd, format!("Uvicorn running on http://127.0.0.1:{port}"))
        });
        PyWsServer { process, port }
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// `http://127.0.0.1:PORT/sse`: the same server over legacy SSE.
    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

/// `tests/interop/ts_ws_server.mjs`: server-everything's `createServer()`
/// (TS SDK 1.x) over a `ws@8` WebSocket at `ws_url()`.
pub struct TsWsServer {
    process: ChildGuard,
    port: u16,
}

impl TsWsServer {
    pub fn start() -> TsWsServer {
        Self::on(None, &[])
    }

    pub fn start_on(port: u16) -> TsWsServer {
        Self::on(Some(port), &[])
    }

    /// Accepts upgrades without selecting the `mcp` subprotocol.
    pub fn start_without_subprotocol() -> TsWsServer {
        Self::on(None, &["--no-subprotocol"])
    }

    fn on(port: Option<u16>, flags: &[&str]) -> TsWsServer {
        let (process, port) = start_with_retries("ts_ws_server", port, |port| {
            let mut cmd = Command::new("node");
            cmd.arg(interop_dir().join("ts_ws_server.mjs"))
                .arg(port.to_string())
                .args(flags);
            (
                cmd,
                format!("ts_ws_server listening on ws://127.0.0.1:{port}/ws"),
            )
        });
        TsWsServer { process, port }
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

/// SIGSTOP: the process stays connected but answers nothing (not even
/// WebSocket pings) until `resume`.
pub fn freeze(pid: u32) {
    signal(pid, "STOP");
}

/// SIGCONT after `freeze`.
pub fn resume(pid: u32) {
    signal(pid, "CONT");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_listening_plain_and_json() {
        assert_eq!(
            parse_demo_listening("demo-server listening on http://127.0.0.1:4000/mcp").as_deref(),
            Some("http://127.0.0.1:4000/mcp")
        );
        assert_eq!(
            parse_demo_listening(
                r#"{"fields":{"message":"demo-server listening on http://127.0.0.1:4000/mcp"}}"#
            )
            .as_deref(),
            Some("http://127.0.0.1:4000/mcp")
        );
        assert_eq!(parse_demo_listening("starting"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(stdio_target(&["a b".into(), "c".into()]), "stdio:'a b' c");
        assert_eq!(toml_array(&["x\"y".into()]), r#"["x\"y"]"#);
    }
}
