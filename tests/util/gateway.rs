//! The real `mcp-gateway serve` binary on ephemeral loopback ports.
//!
//! Config files use `addr = "127.0.0.1:0"` and `admin_addr = "127.0.0.1:0"`;
//! the bound addresses are read back from the JSON log line
//! `{"fields":{"message":"listening","addr":"…","admin_addr":"…"},…}`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{ChildGuard, TestDir};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the crate's binary, built by cargo for integration tests.
/// `mcp-gateway audit verify ARGS... FILES...` → (success, stdout + stderr).
pub fn audit_verify(args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let out = std::process::Command::new(gateway_bin())
        .args(["audit", "verify"])
        .args(args)
        .args(files)
        .output()
        .expect("audit verify runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-gateway"))
}

/// A running gateway; killed (with any stdio backends it spawned) on drop.
pub struct Gateway {
    process: ChildGuard,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    // Dropped after `process`, so the gateway is gone before its files are removed.
    dir: TestDir,
}

/// Options beyond the config text: environment, extra files, extra arguments.
pub struct GatewayBuilder {
    config: String,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
    args: Vec<String>,
}

impl GatewayBuilder {
    /// Sets an environment variable for the gateway (secrets named by `*_env` keys).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes a file next to the config (e.g. `policies/allow.cedar`); `{{dir}}`
    /// in its contents is replaced like in the config.
    pub fn file(mut self, relative: &str, contents: &str) -> Self {
        self.files
            .push((relative.to_string(), contents.to_string()));
        self
    }

    /// Appends arguments after `serve --config FILE`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn start(self) -> Gateway {
        let dir = TestDir::new("gateway");
        let dir_str = dir.path().display().to_string();
        for (relative, contents) in &self.files {
            dir.write(relative, &contents.replace("{{dir}}", &dir_str));
        }
        let mut config = self.config.replace("{{dir}}", &dir_str);
        // A gateway without policies denies everything (fail closed); tests
        // about something else get the explicit allow-all.
        if !config.contains("[policy]") {
            dir.write(
                "allow-all.cedar",
                "@id(\"allow-all\")\npermit(principal, action, resource);\n",
            );
            config.push_str("\n[policy]\nfiles = [\"allow-all.cedar\"]\n");
        }
        let config_path = dir.write("gateway.toml", &config);

        let mut cmd = Command::new(gateway_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(&self.args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut process = ChildGuard::spawn("mcp-gateway serve", cmd);
        let (addr, admin_addr) =
            process.wait_for_stderr("gateway \"listening\" log line", START_TIMEOUT, |stderr| {
                stderr.lines().find_map(parse_listening)
            });
        Gateway {
            process,
            addr,
            admin_addr,
            dir,
        }
    }
}

/// `(addr, admin_addr)` from a JSON log line whose message is "listening".
/// Accepts the fields nested under `fields` (tracing-subscriber's default JSON
/// layout) or flattened to the top level.
fn parse_listening(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    let fields = if v.get("fields").is_some() {
        &v["fields"]
    } else {
        &v
    };
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let addr = fields.get("addr")?.as_str()?.parse().ok()?;
    let admin = fields
        .get("admin_addr")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    Some((addr, admin))
}

impl Gateway {
    /// Starts the gateway with `config_toml` (`{{dir}}` = its temp directory,
    /// also its working directory).
    pub fn start(config_toml: &str) -> Gateway {
        Gateway::builder(config_toml).start()
    }

    pub fn builder(config_toml: &str) -> GatewayBuilder {
        GatewayBuilder {
            config: config_toml.to_string(),
            env: Vec::new(),
            files: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/mcp`, the multiplexed Streamable HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// `http://ADDR` + `path`, e.g. `/sse`, `/ws`, `/.well-known/oauth-protected-resource`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADDR/servers/BACKEND/mcp`, one backend under its own names.
    pub fn server_url(&self, backend: &str) -> String {
        format!("http://{}/servers/{backend}/mcp", self.addr)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        match self.admin_addr {
            Some(a) => a,
            None => panic!("the gateway logged no admin_addr\n{}", self.stderr()),
        }
    }

    /// `http://ADMIN_ADDR` (no trailing slash): append `/healthz`, `/metrics`, …
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr())
    }

    /// The gateway's temp directory (config, extra files, relative paths such as an audit log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reads a file from the gateway's directory.
    pub fn read_file(&self, relative: &str) -> String {
        self.dir.read(relative)
    }

    /// Everything the gateway logged so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Everything the gateway wrote to stdout (e.g. `audit.path = "-"`).
    pub fn stdout(&self) -> String {
        self.process.stdout()
    }

    /// The JSON log lines so far (other lines skipped).
    pub fn logs(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l.trim()).ok())
            .collect()
    }

    /// Waits until a JSON log line satisfies `pred`; panics with the log on timeout.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs().into_iter().find(|v| pred(v)) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no matching gateway log line within {timeout:?}\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Still running? (`false` after a crash; the log says why.)
    pub fn is_running(&mut self) -> bool {
        self.process.try_exit().is_none()
    }

    /// Process id, for signal tests.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- mcp-gateway stderr ---\n{}", self.process.stderr());
        }
        self.process.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn listening_line_nested_and_flat() {
        let nested = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:40123","admin_addr":"127.0.0.1:40124"},"target":"mcp_gateway"}"#;
        let (addr, admin) = parse_listening(nested).unwrap();
        assert_eq!(addr.port(), 40123);
        assert_eq!(admin.unwrap().port(), 40124);
        let flat = r#"{"message":"listening","addr":"127.0.0.1:1"}"#;
        assert_eq!(parse_listening(flat).unwrap().1, None);
        assert!(parse_listening(r#"{"fields":{"message":"starting"}}"#).is_none());
        assert!(parse_listening("not json").is_none());
    }
}
