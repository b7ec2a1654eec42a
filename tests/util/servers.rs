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
        let mut cmd = Command::new(gateway_bin());
        cmd.args(["demo-server", "--http", "127.0.0.1:0"])
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
