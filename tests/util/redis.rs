//! A real `redis-server` (Debian package, from `scripts/install-test-deps.sh`)
//! on a random loopback port, without persistence, in its own directory.
//! `kill()` and `restart()` (same port) let tests take the state store away
//! and bring it back.

use std::process::Command;
use std::time::Duration;

use super::process::{ChildGuard, TestDir, free_port, run_with_timeout};

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// `free_port` is racy: another process may take the port first.
const START_ATTEMPTS: usize = 5;

pub struct RedisServer {
    process: Option<ChildGuard>,
    port: u16,
    dir: TestDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = TestDir::new("redis");
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            if let Some(process) = spawn(&dir, port) {
                return RedisServer {
                    process: Some(process),
                    port,
                    dir,
                };
            }
        }
        panic!("redis-server did not start in {START_ATTEMPTS} attempts");
    }

    /// On a given port (a test that starts its gateways first).
    pub fn start_on(port: u16) -> RedisServer {
        let dir = TestDir::new("redis");
        let process = spawn(&dir, port)
            .unwrap_or_else(|| panic!("redis-server did not start on port {port}"));
        RedisServer {
            process: Some(process),
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server; its trimmed stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args);
        let done = run_with_timeout("redis-cli", cmd, Duration::from_secs(10));
        done.stdout.trim().to_string()
    }

    /// SIGKILL: connections break at once, as when Redis crashes.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts again on the same port (the gateways were told this URL).
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..START_ATTEMPTS {
            if let Some(process) = spawn(&self.dir, self.port) {
                self.process = Some(process);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }
}

fn spawn(dir: &TestDir, port: u16) -> Option<ChildGuard> {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path());
    let mut process = ChildGuard::spawn("redis-server", cmd);
    process.port_ready(port, START_TIMEOUT).then_some(process)
}
