//! stdio: a child process speaking newline-delimited JSON-RPC. Its stderr
//! goes to our logs; it is killed when the connection closes or the gateway
//! shuts down.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Weak;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::Inner;
use crate::mcp::Envelope;

/// Lines longer than this from a server are refused (the process is
/// considered broken): bounded memory per backend.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
const WRITE_QUEUE: usize = 1024;

pub(super) struct StdioLink {
    tx: mpsc::Sender<String>,
}

impl StdioLink {
    pub(super) async fn send(&self, line: String) -> Result<(), ()> {
        self.tx.send(line).await.map_err(|_| ())
    }
}

pub(super) fn spawn_child(
    backend: &str,
    command: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&str>,
) -> std::io::Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn()?;
    // Every spawn is logged (security best practices: know what runs).
    tracing::info!(backend, pid = child.id(), program = %program, "backend process started");
    Ok(child)
}

pub(super) fn start(
    mut child: Child,
    backend: String,
    inner: Weak<Inner>,
    shutdown: CancellationToken,
) -> StdioLink {
    let (tx, mut rx) = mpsc::channel::<String>(WRITE_QUEUE);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    if let Some(stderr) = stderr {
        let backend = backend.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "backend_stderr", backend = %backend, "{line}");
            }
        });
    }

    tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        let Some(stdout) = stdout else { return };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let reason = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break "connection closed".to_owned(),
                out = rx.recv() => {
                    let Some(mut msg) = out else { break "connection dropped".to_owned() };
                    msg.push('\n');
                    if let Err(e) = stdin.write_all(msg.as_bytes()).await {
                        break format!("writing to the process failed: {e}");
                    }
                    let _ = stdin.flush().await;
                }
                read = reader.read_line(&mut line) => {
                    match read {
                        Ok(0) => break "the process closed its stdout".to_owned(),
                        Err(e) => break format!("reading from the process failed: {e}"),
                        Ok(_) if line.len() > MAX_LINE_BYTES => break "a message exceeded the size limit".to_owned(),
                        Ok(_) => {
                            let text = line.trim();
                            if !text.is_empty() {
                                match Envelope::parse(text) {
                                    Ok(env) => match inner.upgrade() {
                                        Some(inner) => inner.dispatch(env, None),
                                        None => break "connection dropped".to_owned(),
                                    },
                                    Err(e) => tracing::warn!(backend = %backend, error = %e, "unparseable line from backend"),
                                }
                            }
                            line.clear();
                        }
                    }
                }
                status = child.wait() => {
                    break match status {
                        Ok(s) => format!("the process exited ({s})"),
                        Err(e) => format!("the process failed: {e}"),
                    };
                }
            }
        };
        tracing::info!(backend = %backend, %reason, "backend process link ended");
        let _ = child.start_kill();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await;
        if let Some(inner) = inner.upgrade() {
            inner.fail_all(&reason);
        }
    });
    StdioLink { tx }
}
