//! replay: recorded fixtures → a verdict per fixture.
//!
//! In: a config and fixtures (`record`). For each fixture the gateway runs
//! in-process with that config, each backend replaced by a fixture-driven
//! server (`backend`; with `--live` the real backends stay), the client side
//! is played over the recorded front door (`client`), and the replaying
//! gateway records the run itself. Out: the differences between the two
//! recordings (`compare`), after normalization (`normalize`): decisions,
//! responses and messages to the client, requests to backends (and, live,
//! backend answers). Never writes next to the fixtures; the run's own
//! recording lives in a temporary directory removed afterwards.
//!
//! The replaying client is the recorded principal: for a recording made
//! with authentication, the config's auth is replaced by one API key (random,
//! per run) bound to the recorded subject, tenant, client id and scopes, so
//! policies and required scopes see the same caller (its `auth` is then
//! `api_key`). A recording without authentication replays without it.

pub mod backend;
mod client;
mod compare;
pub mod fixture;
pub mod normalize;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use compare::Difference;

use sha2::{Digest, Sha256};

use crate::config::{ApiKeyConfig, AuthMode, BackendTransport, Config, RecordConfig};
use crate::session::Gateway;

/// The verdict on one fixture.
#[derive(Debug)]
pub enum Verdict {
    Match,
    Mismatch(Vec<Difference>),
    /// The fixture cannot be replayed: `file:line: problem`.
    Unusable(String),
}

#[derive(Debug)]
pub struct Outcome {
    pub fixture: String,
    pub requests: usize,
    pub verdict: Verdict,
}

/// 0 when every fixture matched, 2 when one was unusable, else 1.
pub fn exit_code(outcomes: &[Outcome]) -> i32 {
    if outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Unusable(_)))
    {
        2
    } else if outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Mismatch(_)))
    {
        1
    } else {
        0
    }
}

pub fn render_text(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        match &o.verdict {
            Verdict::Match => {
                out.push_str(&format!("{}: match ({} requests)\n", o.fixture, o.requests));
            }
            Verdict::Unusable(problem) => {
                out.push_str(&format!("{}: unusable\n  {problem}\n", o.fixture));
            }
            Verdict::Mismatch(diffs) => {
                let n = diffs.len();
                let s = if n == 1 { "" } else { "s" };
                out.push_str(&format!("{}: {n} difference{s}\n", o.fixture));
                for d in diffs {
                    match d.line {
                        Some(l) => out.push_str(&format!("  line {l}: {}\n", d.text)),
                        None => out.push_str(&format!("  {}\n", d.text)),
                    }
                }
            }
        }
    }
    out
}

pub fn render_json(outcomes: &[Outcome]) -> String {
    let items: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| match &o.verdict {
            Verdict::Match => {
                json!({"fixture": o.fixture, "status": "match", "requests": o.requests, "differences": []})
            }
            Verdict::Unusable(p) => {
                json!({"fixture": o.fixture, "status": "unusable", "problem": p})
            }
            Verdict::Mismatch(diffs) => json!({
                "fixture": o.fixture,
                "status": "mismatch",
                "requests": o.requests,
                "differences": diffs.iter().map(|d| json!({
                    "kind": d.kind, "line": d.line, "text": d.text,
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let exit = exit_code(outcomes);
    json!({"fixtures": items, "exit": exit}).to_string()
}

/// Replays every fixture in turn.
pub async fn run(config: &Config, fixtures: &[PathBuf], live: bool) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (n, path) in fixtures.iter().enumerate() {
        outcomes.push(replay_one(config, path, live, n).await);
    }
    outcomes
}

async fn replay_one(config: &Config, path: &Path, live: bool, n: usize) -> Outcome {
    let name = path.display().to_string();
    let recorded = match fixture::load(path) {
        Ok(f) => f,
        Err(e) => {
            return Outcome {
                fixture: name,
                requests: 0,
                verdict: Verdict::Unusable(e.to_string()),
            };
        }
    };
    let requests = recorded
        .messages
        .iter()
        .filter(|m| m.dir == crate::record::Dir::ClientToGateway && m.is_request())
        .count();
    let scratch = std::env::temp_dir().join(format!(
        "mcp-gateway-replay-{}-{n}-{}",
        std::process::id(),
        crate::session::new_session_id()
    ));
    let result = replay_in(config, &recorded, live, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let verdict = match result {
        Ok(replayed) => {
            let mut diffs = compare::compare(&recorded, &replayed, live);
            let calls_tools = recorded
                .messages
                .iter()
                .any(|m| m.method() == Some("tools/call"));
            if live && !diffs.is_empty() && calls_tools && !recorded.header.include_arguments {
                diffs.insert(
                    0,
                    Difference {
                        kind: "replay",
                        line: Some(1),
                        text: "tool arguments were recorded redacted \
                               (record.include_arguments = false): live backends got the digests"
                            .to_owned(),
                    },
                );
            }
            if diffs.is_empty() {
                Verdict::Match
            } else {
                Verdict::Mismatch(diffs)
            }
        }
        Err(ReplayError::Unusable(problem)) => Verdict::Unusable(format!("{name}:1: {problem}")),
        Err(ReplayError::Failed(problem)) => Verdict::Mismatch(vec![Difference {
            kind: "replay",
            line: None,
            text: problem,
        }]),
    };
    Outcome {
        fixture: name,
        requests,
        verdict,
    }
}

enum ReplayError {
    Unusable(String),
    Failed(String),
}

async fn replay_in(
    config: &Config,
    recorded: &fixture::Fixture,
    live: bool,
    scratch: &Path,
) -> Result<Vec<fixture::Fixture>, ReplayError> {
    let stop = CancellationToken::new();
    let _stop_on_exit = stop.clone().drop_guard();
    let mut cfg = config.clone();
    if !live {
        let scripted = Arc::new(backend::Scripted::from_fixture(recorded));
        let addr = serve(backend::router(scripted, None), &stop).await?;
        for b in &mut cfg.backends {
            b.transport = BackendTransport::StreamableHttp {
                url: format!("http://{addr}/{}/mcp", b.name),
                headers: Vec::new(),
            };
            b.mint_token = None;
        }
    }
    cfg.auth.mode = AuthMode::None;
    cfg.auth.api_keys.clear();
    let p = &recorded.header.principal;
    let key = (p.auth.as_deref().unwrap_or("none") != "none").then(|| {
        let key = crate::session::new_session_id();
        cfg.auth.api_keys.push(ApiKeyConfig {
            header: client::KEY_HEADER.to_owned(),
            scheme: None,
            sha256: Sha256::digest(key.as_bytes()).into(),
            subject: p.sub.clone(),
            tenant: p.tenant.clone(),
            client_id: p.client_id.clone(),
            scopes: p.scopes.clone(),
        });
        key
    });
    cfg.record = RecordConfig {
        dir: Some(scratch.to_path_buf()),
        include_arguments: recorded.header.include_arguments,
        group_window: Duration::from_secs(24 * 3600),
        queue_messages: 1 << 16,
    };
    let shutdown = stop.child_token();
    let cfg = Arc::new(cfg);
    // The policies in force are the config's, as `serve` loads them.
    let policies = crate::policy::Snapshot::load(&cfg)
        .map_err(|e| ReplayError::Failed(format!("invalid policies:\n{e}")))?;
    let gw = Gateway::new(cfg, shutdown.clone());
    gw.policy.replace(policies);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| ReplayError::Failed(format!("cannot listen: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ReplayError::Failed(format!("cannot listen: {e}")))?;
    let app = crate::frontend::router(gw.clone(), addr);
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    let played = client::play(&addr.to_string(), recorded, key.as_deref()).await;
    if let Some(r) = &gw.recorder {
        r.flush().await;
    }
    gw.close_all().await;
    shutdown.cancel();
    match played {
        Ok(()) => {}
        Err(e @ client::PlayError::Unsupported(_)) => {
            return Err(ReplayError::Unusable(e.to_string()));
        }
        Err(e) => {
            return Err(ReplayError::Failed(format!(
                "the replayed client failed: {e}"
            )));
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(scratch)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut replayed = Vec::new();
    for f in files {
        match fixture::load(&f) {
            Ok(x) => replayed.push(x),
            Err(e) => {
                return Err(ReplayError::Failed(format!(
                    "the replay's own recording is unreadable: {e}"
                )));
            }
        }
    }
    Ok(replayed)
}

async fn serve(app: axum::Router, stop: &CancellationToken) -> Result<SocketAddr, ReplayError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| ReplayError::Failed(format!("cannot listen: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ReplayError::Failed(format!("cannot listen: {e}")))?;
    let stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(addr)
}

#[cfg(test)]
mod tests;
