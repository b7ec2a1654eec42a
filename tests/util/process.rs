//! Child processes for tests: every process is killed on drop (with its whole
//! process group, so servers a driver or the gateway spawned go too), its
//! stdout and stderr are drained into buffers from the start (a full pipe
//! would otherwise stall it), and every wait has a deadline whose panic message
//! carries what the process printed.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often waits poll the child and its output.
const POLL: Duration = Duration::from_millis(10);

/// Output of a pipe, filled by a background thread.
#[derive(Clone, Default)]
struct Captured {
    text: Arc<Mutex<String>>,
    eof: Arc<AtomicBool>,
}

impl Captured {
    fn drain(pipe: impl Read + Send + 'static, name: String) -> Captured {
        let captured = Captured::default();
        let out = captured.clone();
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => out
                            .text
                            .lock()
                            .expect("capture lock")
                            .push_str(&String::from_utf8_lossy(&line)),
                    }
                }
                out.eof.store(true, Ordering::SeqCst);
            })
            .expect("spawn drain thread");
        captured
    }

    fn get(&self) -> String {
        self.text.lock().expect("capture lock").clone()
    }
}

/// A running child process that is killed (process group and all) on drop.
pub struct ChildGuard {
    name: String,
    child: Child,
    stdout: Captured,
    stderr: Captured,
    exit: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured, in a new
    /// process group.
    pub fn spawn(name: &str, mut cmd: Command) -> ChildGuard {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {cmd:?}: {e}"));
        let stdout = Captured::drain(
            child.stdout.take().expect("piped stdout"),
            format!("{name}-stdout"),
        );
        let stderr = Captured::drain(
            child.stderr.take().expect("piped stderr"),
            format!("{name}-stderr"),
        );
        ChildGuard {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            exit: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.get()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.get()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap_or(None);
        }
        self.exit
    }

    /// Panic message suffix: exit status and captured output.
    pub fn report(&mut self) -> String {
        let status = match self.try_exit() {
            Some(s) => format!("exited with {s}"),
            None => "still running".to_string(),
        };
        format!(
            "{} (pid {}) {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.pid(),
            self.stdout(),
            self.stderr()
        )
    }

    /// Polls `check` against the captured stderr until it returns `Some`.
    /// Panics when the process exits first or on timeout.
    pub fn wait_for_stderr<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.stderr()) {
                return found;
            }
            if self.try_exit().is_some() {
                // One last look: the line may have landed just before the exit.
                thread::sleep(Duration::from_millis(50));
                if let Some(found) = check(&self.stderr()) {
                    return found;
                }
                panic!("{what}: process exited first\n{}", self.report());
            }
            if Instant::now() >= deadline {
                panic!("{what}: not seen within {timeout:?}\n{}", self.report());
            }
            thread::sleep(POLL);
        }
    }

    /// `true` once the captured stderr contains `needle` while the process is
    /// alive; `false` if it exits first or on timeout.
    pub fn stderr_ready(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return self.try_exit().is_none();
            }
            if self.try_exit().is_some() || Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until 127.0.0.1:`port` accepts TCP connections; panics when the
    /// process exits first or on timeout.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) {
        if !self.port_ready(port, timeout) {
            panic!(
                "port {port} not accepting within {timeout:?}\n{}",
                self.report()
            );
        }
    }

    /// `true` once 127.0.0.1:`port` accepts TCP connections while the process
    /// is alive; `false` if it exits first or on timeout.
    pub fn port_ready(&mut self, port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if self.try_exit().is_some() {
                return false;
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Someone accepts; make sure it is not a stranger on a port we lost.
                return self.try_exit().is_none();
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the process to exit and for its pipes to reach EOF (bounded:
    /// a grandchild holding a pipe open must not hang the test). On timeout the
    /// process is killed and the call panics.
    pub fn wait_with_timeout(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.try_exit() {
                break s;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("timed out after {timeout:?}\n{}", self.report());
            }
            thread::sleep(POLL);
        };
        let eof_deadline = Instant::now() + Duration::from_secs(5);
        while !(self.stdout.eof.load(Ordering::SeqCst) && self.stderr.eof.load(Ordering::SeqCst))
            && Instant::now() < eof_deadline
        {
            thread::sleep(POLL);
        }
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }

    /// Kills the process group and reaps the child. Idempotent.
    pub fn kill(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        if self.exit.is_none() {
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Even after the leader exited, its group may hold servers it spawned.
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILL to the process group led by `pgid` (spawned with `process_group(0)`).
/// Through `sh`'s builtin `kill`: no libc dependency, and `sh` exists everywhere.
fn kill_group(pgid: u32) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -KILL -- -{pgid} 2>/dev/null"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A finished process.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion within `timeout`; panics (after killing it) on timeout.
pub fn run_with_timeout(name: &str, cmd: Command, timeout: Duration) -> Finished {
    ChildGuard::spawn(name, cmd).wait_with_timeout(timeout)
}

/// A loopback port that was free a moment ago, for servers that cannot bind
/// port 0 and report it (server-everything reads only `PORT`). Racy by nature;
/// callers retry on a failed start.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A fresh directory under the system temp dir, removed on drop unless the
/// test is panicking (then its path is printed so it can be inspected).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "mcp-gateway-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `relative` (parents created); returns the full path.
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let file = self.path.join(relative);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&file, contents).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        file
    }

    pub fn read(&self, relative: &str) -> String {
        let file = self.path.join(relative);
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
