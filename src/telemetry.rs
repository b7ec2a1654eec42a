//! telemetry: logging setup and the Prometheus metrics the admin listener
//! serves. Counters are atomics; the label map is touched once per
//! (method, backend) pair and then read-mostly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

/// Latency buckets in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Series {
    ok: AtomicU64,
    error: AtomicU64,
    latency: Histogram,
}

/// method → backend → (decision, outcome) → count
type Decided = BTreeMap<String, BTreeMap<String, BTreeMap<(&'static str, &'static str), u64>>>;

/// Client notifications the gateway knows; any other method is labelled
/// `other` (a client choosing method names must not grow the series).
const NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
    "notifications/message",
];

/// The `method` label: an MCP method, or `other`.
pub fn method_label(method: &str) -> &str {
    match crate::mcp::Method::parse(method) {
        crate::mcp::Method::Other(_) if !NOTIFICATIONS.contains(&method) => "other",
        _ => method,
    }
}

#[derive(Default)]
pub struct Metrics {
    /// method → backend → series; looked up by `&str`, so the hot path
    /// allocates only the first time a pair is seen.
    series: Mutex<BTreeMap<String, BTreeMap<String, Arc<Series>>>>,
    pub sessions_opened: AtomicU64,
    pub sessions_active: AtomicU64,
    pub backend_errors: AtomicU64,
    /// Sessions opened on another replica and resumed here from their
    /// sealed id (`state` with several replicas).
    pub sessions_adopted: AtomicU64,
    /// Requests of a session owned by another replica, forwarded to it.
    pub requests_forwarded: AtomicU64,
    /// (method, backend, decision, outcome) → count.
    decided: Mutex<Decided>,
    /// Time spent in the gateway itself (a request's latency less the
    /// time its backend calls took), by method.
    gateway_latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
    /// Time backend calls took, by backend.
    backend_latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
    /// Handshake-era sessions open now, by transport.
    sessions_by_transport: Mutex<BTreeMap<&'static str, i64>>,
    /// Streams open now (SSE bodies and WebSocket connections), by
    /// transport; kept by `StreamGauge`s.
    streams_by_transport: Mutex<BTreeMap<&'static str, i64>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, backend: &str, latency: Duration, ok: bool) {
        let method = method_label(method);
        let series = {
            let Ok(mut map) = self.series.lock() else {
                return;
            };
            let by_backend = match map.get_mut(method) {
                Some(b) => b,
                None => map.entry(method.to_owned()).or_default(),
            };
            match by_backend.get(backend) {
                Some(s) => s.clone(),
                None => by_backend.entry(backend.to_owned()).or_default().clone(),
            }
        };
        if ok {
            series.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            series.error.fetch_add(1, Ordering::Relaxed);
        }
        series.latency.observe(latency);
    }

    /// Counts a decided message by method, backend, decision and outcome
    /// (`ok`, `error`, `timeout`, `cancelled`, `rate_limited`).
    pub fn observe_decided(
        &self,
        method: &str,
        backend: &str,
        decision: &'static str,
        outcome: &'static str,
    ) {
        let method = method_label(method);
        let Ok(mut map) = self.decided.lock() else {
            return;
        };
        // Looked up by `&str`: only a new pair allocates.
        let by_backend = match map.get_mut(method) {
            Some(b) => b,
            None => map.entry(method.to_owned()).or_default(),
        };
        let counts = match by_backend.get_mut(backend) {
            Some(c) => c,
            None => by_backend.entry(backend.to_owned()).or_default(),
        };
        *counts.entry((decision, outcome)).or_default() += 1;
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mcp_gateway_decided_messages_total Decided messages by method, backend, decision and outcome.\n\
             # TYPE mcp_gateway_decided_messages_total counter\n",
        );
        if let Ok(map) = self.decided.lock() {
            let flat = map.iter().flat_map(|(method, by_backend)| {
                by_backend.iter().flat_map(move |(backend, counts)| {
                    counts.iter().map(move |((decision, outcome), n)| {
                        (method, backend, decision, outcome, n)
                    })
                })
            });
            for (method, backend, decision, outcome, n) in flat {
                let _ = writeln!(
                    out,
                    "mcp_gateway_decided_messages_total{{method=\"{}\",backend=\"{}\",decision=\"{decision}\",outcome=\"{outcome}\"}} {n}",
                    escape(method),
                    escape(backend),
                );
            }
        }
        let map: Vec<((String, String), Arc<Series>)> = match self.series.lock() {
            Ok(m) => m
                .iter()
                .flat_map(|(method, b)| {
                    b.iter()
                        .map(move |(backend, s)| ((method.clone(), backend.clone()), s.clone()))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        out.push_str(
            "# HELP mcp_gateway_requests_total Requests relayed, by method, backend and outcome.\n",
        );
        out.push_str("# TYPE mcp_gateway_requests_total counter\n");
        for ((method, backend), s) in &map {
            for (outcome, n) in [("ok", &s.ok), ("error", &s.error)] {
                let _ = writeln!(
                    out,
                    "mcp_gateway_requests_total{{method=\"{}\",backend=\"{}\",outcome=\"{outcome}\"}} {}",
                    escape(method),
                    escape(backend),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mcp_gateway_request_duration_seconds Request latency through the gateway.\n\
             # TYPE mcp_gateway_request_duration_seconds histogram"
        );
        for ((method, backend), s) in &map {
            let labels = format!(
                "method=\"{}\",backend=\"{}\"",
                escape(method),
                escape(backend)
            );
            s.latency.render(
                &mut out,
                "mcp_gateway_request_duration_seconds",
                "",
                &labels,
            );
        }
        let gauges = [
            (
                "mcp_gateway_sessions_opened_total",
                "counter",
                "Handshake-era sessions opened.",
                &self.sessions_opened,
            ),
            (
                "mcp_gateway_sessions_active",
                "gauge",
                "Handshake-era sessions open now.",
                &self.sessions_active,
            ),
            (
                "mcp_gateway_backend_errors_total",
                "counter",
                "Calls that failed with -32010 or -32011.",
                &self.backend_errors,
            ),
            (
                "mcp_gateway_sessions_adopted_total",
                "counter",
                "Sessions opened on another replica and resumed here.",
                &self.sessions_adopted,
            ),
            (
                "mcp_gateway_requests_forwarded_total",
                "counter",
                "Requests forwarded to the replica that owns their session.",
                &self.requests_forwarded,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

/// Logs go to stderr: human on a terminal, JSON otherwise; `RUST_LOG` filters.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A latency histogram over `BUCKETS`, lock-free.
#[derive(Default)]
pub struct Histogram {
    /// Count per bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(
            latency.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Appends the series `name` with extra `labels` (`k="v",…` or empty);
    /// `help` is written when not empty.
    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        if !help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        }
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self
                .buckets
                .get(i)
                .map(|b| b.load(Ordering::Relaxed))
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self
            .buckets
            .get(BUCKETS.len())
            .map(|b| b.load(Ordering::Relaxed))
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braced} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braced} {cumulative}");
    }
}

tokio::task_local! {
    /// Microseconds the current request has spent waiting for backends.
    static BACKEND_US: std::cell::Cell<u64>;
}

/// Adds the time until it is dropped to the request's backend time (no-op
/// outside `time_backend`).
pub struct BackendTimer(std::time::Instant);

impl BackendTimer {
    pub fn start() -> BackendTimer {
        BackendTimer(std::time::Instant::now())
    }
}

impl Drop for BackendTimer {
    fn drop(&mut self) {
        let us = self.0.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let _ = BACKEND_US.try_with(|c| c.set(c.get().saturating_add(us)));
    }
}

/// Runs `fut` and returns its output with the time its backend calls took.
pub async fn time_backend<F: std::future::Future>(fut: F) -> (F::Output, Duration) {
    let cell = std::cell::Cell::new(0);
    let (out, cell) = BACKEND_US
        .scope(cell, async move {
            let out = fut.await;
            (out, BACKEND_US.try_with(|c| c.get()).unwrap_or(0))
        })
        .await;
    (out, Duration::from_micros(cell))
}

impl Metrics {
    /// Splits a request's latency into gateway and backend time.
    pub fn observe_split(
        &self,
        method: &str,
        backend: &str,
        total: Duration,
        in_backend: Duration,
    ) {
        let method = method_label(method);
        let get = |map: &Mutex<BTreeMap<String, Arc<Histogram>>>, key: &str| {
            let mut map = map.lock().ok()?;
            Some(match map.get(key) {
                Some(h) => h.clone(),
                None => map.entry(key.to_owned()).or_default().clone(),
            })
        };
        if let Some(h) = get(&self.gateway_latency, method) {
            h.observe(total.saturating_sub(in_backend));
        }
        if !backend.is_empty()
            && !in_backend.is_zero()
            && let Some(h) = get(&self.backend_latency, backend)
        {
            h.observe(in_backend);
        }
    }

    pub fn session_opened(&self, transport: &'static str) {
        if let Ok(mut m) = self.sessions_by_transport.lock() {
            *m.entry(transport).or_default() += 1;
        }
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn stream_opened(self: &Arc<Self>, transport: &'static str) -> StreamGauge {
        if let Ok(mut m) = self.streams_by_transport.lock() {
            *m.entry(transport).or_default() += 1;
        }
        StreamGauge {
            metrics: self.clone(),
            transport,
        }
    }

    pub fn session_closed(&self, transport: &'static str) {
        if let Ok(mut m) = self.sessions_by_transport.lock() {
            *m.entry(transport).or_default() -= 1;
        }
    }

    /// The split latency histograms and sessions by transport.
    pub fn render_split(&self, out: &mut String) {
        for (map, name, label, help) in [
            (
                &self.gateway_latency,
                "mcp_gateway_gateway_duration_seconds",
                "method",
                "Time a request spent in the gateway itself, backend calls excluded.",
            ),
            (
                &self.backend_latency,
                "mcp_gateway_backend_duration_seconds",
                "backend",
                "Time backend calls took.",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            let entries: Vec<(String, Arc<Histogram>)> = map
                .lock()
                .map(|m| m.iter().map(|(k, h)| (k.clone(), h.clone())).collect())
                .unwrap_or_default();
            for (key, h) in entries {
                h.render(out, name, "", &format!("{label}=\"{}\"", escape(&key)));
            }
        }
        out.push_str(
            "# HELP mcp_gateway_sessions_by_transport Handshake-era sessions open now, by transport.\n\
             # TYPE mcp_gateway_sessions_by_transport gauge\n",
        );
        if let Ok(m) = self.sessions_by_transport.lock() {
            for (transport, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "mcp_gateway_sessions_by_transport{{transport=\"{transport}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP mcp_gateway_open_streams Streams open now (SSE responses and GET streams, WebSocket connections), by transport.\n\
             # TYPE mcp_gateway_open_streams gauge\n",
        );
        if let Ok(m) = self.streams_by_transport.lock() {
            for (transport, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "mcp_gateway_open_streams{{transport=\"{transport}\"}} {n}"
                );
            }
        }
    }
}

/// One open stream in `mcp_gateway_open_streams`, until dropped.
pub struct StreamGauge {
    metrics: Arc<Metrics>,
    transport: &'static str,
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        if let Ok(mut m) = self.metrics.streams_by_transport.lock() {
            *m.entry(self.transport).or_default() -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("tasks/get"), "tasks/get");
        assert_eq!(
            method_label("notifications/cancelled"),
            "notifications/cancelled"
        );
        assert_eq!(method_label("x/made-up"), "other");
        let m = Metrics::default();
        for i in 0..1000 {
            let method = format!("junk/{i}");
            m.observe_decided(&method, "", "deny", "error");
            m.observe(&method, "b", Duration::from_millis(1), true);
        }
        m.observe_decided("tools/call", "b", "allow", "ok");
        let text = m.render();
        let decided: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("mcp_gateway_decided_messages_total{"))
            .collect();
        assert_eq!(
            decided,
            [
                "mcp_gateway_decided_messages_total{method=\"other\",backend=\"\",decision=\"deny\",outcome=\"error\"} 1000",
                "mcp_gateway_decided_messages_total{method=\"tools/call\",backend=\"b\",decision=\"allow\",outcome=\"ok\"} 1",
            ]
        );
        assert!(!text.contains("junk/"));
    }
}
