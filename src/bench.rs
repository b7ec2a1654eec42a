//! bench: an MCP-aware load generator. `--concurrency` workers each own one
//! MCP session (handshake era: `initialize` + `Mcp-Session-Id`; stateless
//! era: per-request `_meta` and routing headers) and call one tool in a
//! closed loop for a fixed time. Out: requests per second and latency
//! percentiles of the successful calls after the warmup. Never retries a
//! failed call and never reuses a response it could not match to its id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

const HANDSHAKE_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchEra {
    /// `initialize`, then `tools/call` on the session (2025-11-25).
    Handshake,
    /// No session: every request carries `_meta` and routing headers (2026-07-28).
    Stateless,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:8080/mcp
    #[arg(long)]
    pub url: String,
    /// Protocol era the sessions speak.
    #[arg(long, value_enum, default_value_t = BenchEra::Handshake)]
    pub era: BenchEra,
    /// Number of sessions, each calling in a closed loop (one call in flight).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Measured time, after the warmup.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Calls completed during the warmup are not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Tool to call (on a multiplexed gateway route: `{backend}__{tool}`).
    #[arg(long, default_value = "echo")]
    pub tool: String,
    /// Tool arguments, a JSON object.
    #[arg(long, default_value = r#"{"message":"hi"}"#)]
    pub args: String,
    /// `tools/list` instead of calling `--tool` (each request lists the
    /// first page; a merged gateway route answers it from its catalog).
    #[arg(long)]
    pub list: bool,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Extra request header `K: V` on every request, repeatable (e.g.
    /// `Authorization: Bearer …` against a gateway with auth on).
    #[arg(long = "header")]
    pub headers: Vec<String>,
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    latencies_us: Vec<u64>,
    errors: u64,
    /// Every call that completed, warmup and overrun included, to divide
    /// the CPU time of the processes under test by.
    calls_total: u64,
    first_error: Option<String>,
}

/// Shared, read-only per run.
struct Plan {
    client: reqwest::Client,
    url: reqwest::Url,
    era: BenchEra,
    /// `tools/call`, or `tools/list` with `--list`.
    method: &'static str,
    /// `params` of every request, serialized once.
    call_params: String,
    tool_header: HeaderValue,
    measure_from: Instant,
    measure_until: Instant,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !(args.duration_s.is_finite() && args.duration_s > 0.0) {
        bail!("--duration-s must be a positive number of seconds");
    }
    if !(args.warmup_s.is_finite() && args.warmup_s >= 0.0) {
        bail!("--warmup-s must be zero or a positive number of seconds");
    }
    let url = reqwest::Url::parse(&args.url)
        .with_context(|| format!("--url {:?} is not a URL", args.url))?;
    let tool_arguments: Value = serde_json::from_str(&args.args)
        .with_context(|| format!("--args {:?} is not JSON", args.args))?;
    if !tool_arguments.is_object() {
        bail!("--args must be a JSON object");
    }
    let tool_header = HeaderValue::from_str(&args.tool).with_context(|| {
        format!(
            "--tool {:?} cannot be sent in the Mcp-Name header",
            args.tool
        )
    })?;
    let mut params = if args.list {
        serde_json::json!({})
    } else {
        serde_json::json!({ "name": args.tool, "arguments": tool_arguments })
    };
    if args.era == BenchEra::Stateless {
        params["_meta"] = serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
            "io.modelcontextprotocol/clientInfo": { "name": "bench", "version": "0" },
            "io.modelcontextprotocol/clientCapabilities": {},
        });
    }

    let mut default_headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected K: V"))?;
        default_headers.append(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {h:?}: bad name"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {h:?}: bad value"))?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(default_headers)
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;

    // Open every session before the clock starts, so session setup is not measured.
    let mut sessions = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let session_id = match args.era {
            BenchEra::Handshake => open_session(&client, &url).await?,
            BenchEra::Stateless => None,
        };
        sessions.push(session_id);
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup_s);
    let measure_until = measure_from + Duration::from_secs_f64(args.duration_s);
    let plan = Arc::new(Plan {
        client,
        url,
        era: args.era,
        method: if args.list {
            "tools/list"
        } else {
            "tools/call"
        },
        call_params: params.to_string(),
        tool_header,
        measure_from,
        measure_until,
    });

    let workers: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(index, session_id)| tokio::spawn(worker(plan.clone(), index as u64, session_id)))
        .collect();
    let mut latencies_us = Vec::new();
    let mut errors = 0u64;
    let mut calls_total = 0u64;
    let mut first_error = None;
    for handle in workers {
        let result = handle.await.context("a bench worker panicked")?;
        latencies_us.extend(result.latencies_us);
        errors += result.errors;
        calls_total += result.calls_total;
        if first_error.is_none() {
            first_error = result.first_error;
        }
    }
    latencies_us.sort_unstable();

    let summary = Summary::new(&args, &latencies_us, errors, calls_total);
    if args.json {
        println!("{}", summary.to_json());
    } else {
        println!("{}", summary.human());
    }
    if let Some(error) = first_error {
        eprintln!("bench: first error: {error}");
    }
    Ok(())
}

/// Handshake era: `initialize` then `notifications/initialized`; returns the
/// session id the server minted (a stateless server may mint none).
async fn open_session(
    client: &reqwest::Client,
    url: &reqwest::Url,
) -> anyhow::Result<Option<HeaderValue>> {
    let initialize = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "bench", "version": "0" },
        },
    });
    let response = client
        .post(url.clone())
        .header(ACCEPT, ACCEPT_BOTH)
        .header(CONTENT_TYPE, "application/json")
        .body(initialize.to_string())
        .send()
        .await
        .with_context(|| format!("initialize at {url}"))?;
    let session_id = response.headers().get("mcp-session-id").cloned();
    let reply = read_reply(response, 0)
        .await
        .map_err(|e| anyhow::anyhow!("initialize at {url}: {e}"))?;
    if let Some(error) = reply.get("error") {
        bail!("initialize at {url} failed: {error}");
    }
    let mut request = client
        .post(url.clone())
        .header(ACCEPT, ACCEPT_BOTH)
        .header(CONTENT_TYPE, "application/json")
        .header("mcp-protocol-version", HANDSHAKE_VERSION);
    if let Some(id) = &session_id {
        request = request.header("mcp-session-id", id.clone());
    }
    let response = request
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .with_context(|| format!("notifications/initialized at {url}"))?;
    if !response.status().is_success() {
        bail!(
            "notifications/initialized at {url}: HTTP {}",
            response.status()
        );
    }
    Ok(session_id)
}

async fn worker(plan: Arc<Plan>, index: u64, session_id: Option<HeaderValue>) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match plan.era {
        BenchEra::Handshake => {
            headers.insert(
                "mcp-protocol-version",
                HeaderValue::from_static(HANDSHAKE_VERSION),
            );
            if let Some(id) = &session_id {
                headers.insert("mcp-session-id", id.clone());
            }
        }
        BenchEra::Stateless => {
            headers.insert(
                "mcp-protocol-version",
                HeaderValue::from_static(STATELESS_VERSION),
            );
            headers.insert("mcp-method", HeaderValue::from_static(plan.method));
            if plan.method == "tools/call" {
                headers.insert("mcp-name", plan.tool_header.clone());
            }
        }
    }
    // Ids are unique across workers, so a crossed reply would be caught.
    let mut id = index << 40;
    loop {
        let started = Instant::now();
        if started >= plan.measure_until {
            break;
        }
        id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{}","params":{}}}"#,
            plan.method, plan.call_params
        );
        let outcome = call(&plan, &headers, body, id).await;
        let finished = Instant::now();
        result.calls_total += 1;
        // Only calls that complete inside the measured window count, so the
        // warmup and calls cut off at the end are excluded alike.
        if finished < plan.measure_from || finished > plan.measure_until {
            continue;
        }
        match outcome {
            Ok(()) => {
                let micros =
                    u64::try_from(finished.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                result.latencies_us.push(micros);
            }
            Err(error) => {
                result.errors += 1;
                if result.first_error.is_none() {
                    result.first_error = Some(error);
                }
            }
        }
    }
    if let Some(id) = session_id {
        // Be polite: end the session (the server may not support DELETE).
        let _ = plan
            .client
            .delete(plan.url.clone())
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", HANDSHAKE_VERSION)
            .send()
            .await;
    }
    result
}

/// One `tools/call`; `Err` carries a short description of what failed.
async fn call(plan: &Plan, headers: &HeaderMap, body: String, id: u64) -> Result<(), String> {
    let response = plan
        .client
        .post(plan.url.clone())
        .headers(headers.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let reply = read_reply(response, id).await?;
    if let Some(error) = reply.get("error") {
        return Err(format!("JSON-RPC error: {error}"));
    }
    if reply
        .get("result")
        .and_then(|r| r.get("isError"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(format!(
            "tool returned isError: {}",
            reply.get("result").unwrap_or(&Value::Null)
        ));
    }
    Ok(())
}

/// The JSON-RPC response with `id`, from a JSON body or from the SSE stream
/// (skipping notifications and server requests sent before it).
async fn read_reply(response: reqwest::Response, id: u64) -> Result<Value, String> {
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        return Err(format!("HTTP {status}: {snippet}"));
    }
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let wanted = Value::from(id);
    if !is_sse {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        let reply: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("body is not JSON: {e}"))?;
        if reply.get("id") != Some(&wanted) {
            return Err(format!(
                "reply id {:?} does not match request id {id}",
                reply.get("id")
            ));
        }
        return Ok(reply);
    }
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("reading the event stream: {e}"))?;
        if event.data.is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        let is_response = message.get("method").is_none();
        if is_response && message.get("id") == Some(&wanted) {
            return Ok(message);
        }
    }
    Err(format!("event stream ended without a reply to id {id}"))
}

struct Summary {
    url: String,
    era: BenchEra,
    concurrency: usize,
    duration_s: f64,
    requests: u64,
    errors: u64,
    calls_total: u64,
    rps: f64,
    mean_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn new(args: &BenchArgs, sorted_us: &[u64], errors: u64, calls_total: u64) -> Summary {
        let requests = sorted_us.len() as u64;
        let mean_ms = if sorted_us.is_empty() {
            0.0
        } else {
            sorted_us.iter().map(|&us| us as f64).sum::<f64>() / sorted_us.len() as f64 / 1000.0
        };
        Summary {
            url: args.url.clone(),
            era: args.era,
            concurrency: args.concurrency,
            duration_s: args.duration_s,
            requests,
            errors,
            calls_total,
            rps: requests as f64 / args.duration_s,
            mean_ms,
            p50_ms: percentile_ms(sorted_us, 50.0),
            p90_ms: percentile_ms(sorted_us, 90.0),
            p99_ms: percentile_ms(sorted_us, 99.0),
            max_ms: sorted_us.last().map_or(0.0, |&us| us as f64 / 1000.0),
        }
    }

    fn era_name(&self) -> &'static str {
        match self.era {
            BenchEra::Handshake => "handshake",
            BenchEra::Stateless => "stateless",
        }
    }

    fn human(&self) -> String {
        format!(
            "rps={:.1} p50={:.3}ms p90={:.3}ms p99={:.3}ms errors={} (era={} concurrency={} requests={} duration={}s)",
            self.rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.errors,
            self.era_name(),
            self.concurrency,
            self.requests,
            self.duration_s,
        )
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "url": self.url,
            "era": self.era_name(),
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "errors": self.errors,
            "calls_total": self.calls_total,
            "rps": round3(self.rps),
            "mean_ms": round3(self.mean_ms),
            "p50_ms": round3(self.p50_ms),
            "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us.get(index).map_or(0.0, |&us| us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::percentile_ms;

    #[test]
    fn nearest_rank_percentiles() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 50.0), 50.0);
        assert_eq!(percentile_ms(&us, 90.0), 90.0);
        assert_eq!(percentile_ms(&us, 99.0), 99.0);
        assert_eq!(percentile_ms(&[7000], 99.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }
}
