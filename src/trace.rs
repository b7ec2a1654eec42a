//! trace: OpenTelemetry spans, exported as OTLP/HTTP JSON; off unless
//! `[telemetry] otlp_endpoint` is set.
//!
//! One SERVER span per decided message (name: the MCP method; attributes:
//! method, target kind and name, backend, decision, outcome, error code,
//! session, transport). The parent is the client's W3C `traceparent`, from
//! `params._meta.traceparent` or, on Streamable HTTP, the `traceparent`
//! header (copied into `_meta` at the front door). The gateway's span is
//! propagated to the backend as `params._meta.traceparent`, and as the
//! `traceparent` header on HTTP backends.
//!
//! Written against the OTLP JSON encoding directly (a few structs over the
//! reqwest client the gateway already has) rather than the opentelemetry
//! SDK: one span kind, one exporter, no extra runtime or gRPC stack. Spans
//! go through a bounded queue to one exporter task that posts batches; when
//! the collector cannot keep up, spans are dropped and counted (traces are
//! diagnostics; the audit log is the record that must not lose anything).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::config::TelemetryConfig;

/// `_meta` key (and header name) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

const QUEUE: usize = 4096;
const BATCH: usize = 512;
const BATCH_WAIT: Duration = Duration::from_millis(200);

/// A W3C trace context: `00-<trace id>-<span id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl SpanContext {
    pub fn parse(text: &str) -> Option<SpanContext> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        hex::decode_to_slice(flags, &mut flag).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            flags: flag[0],
        })
    }

    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A failing OS RNG leaves zeros, which `parse` refuses: the span is
    // then simply not continued downstream.
    let _ = getrandom::fill(&mut b);
    b
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// A span in progress.
#[derive(Debug)]
pub struct Span {
    pub context: SpanContext,
    parent: Option<[u8; 8]>,
    name: String,
    start_ns: u64,
}

enum Item {
    Span(Value),
    Flush(oneshot::Sender<()>),
}

pub struct Tracer {
    tx: Option<mpsc::Sender<Item>>,
    dropped: AtomicU64,
}

impl Tracer {
    pub fn disabled() -> Arc<Tracer> {
        Arc::new(Tracer {
            tx: None,
            dropped: AtomicU64::new(0),
        })
    }

    /// Starts the exporter when an endpoint is configured (needs a Tokio
    /// runtime then).
    pub fn start(config: &TelemetryConfig, http: reqwest::Client) -> Arc<Tracer> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Tracer::disabled();
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export(
            rx,
            http,
            traces_url(endpoint),
            config.service_name.clone(),
        ));
        Arc::new(Tracer {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Opens a span continuing `parent` (a new trace without one).
    pub fn begin(&self, name: &str, parent: Option<SpanContext>) -> Option<Span> {
        self.tx.as_ref()?;
        let context = SpanContext {
            trace_id: parent.map(|p| p.trace_id).unwrap_or_else(random),
            span_id: random(),
            flags: parent.map(|p| p.flags).unwrap_or(1),
        };
        Some(Span {
            context,
            parent: parent.map(|p| p.span_id),
            name: name.to_owned(),
            start_ns: now_ns(),
        })
    }

    /// Ends `span` with its attributes; queued for export, or dropped (and
    /// counted) when the exporter is behind.
    pub fn end(&self, span: Span, attributes: &[(&str, Value)], error: bool) {
        let Some(tx) = &self.tx else { return };
        let attributes: Vec<Value> = attributes
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let value = match v {
                    Value::Number(n) if n.is_i64() => json!({"intValue": n.to_string()}),
                    Value::String(s) => json!({"stringValue": s}),
                    other => json!({"stringValue": other.to_string()}),
                };
                json!({"key": k, "value": value})
            })
            .collect();
        let mut item = json!({
            "traceId": hex::encode(span.context.trace_id),
            "spanId": hex::encode(span.context.span_id),
            "name": span.name,
            "kind": 2,
            "startTimeUnixNano": span.start_ns.to_string(),
            "endTimeUnixNano": now_ns().to_string(),
            "attributes": attributes,
            "status": {"code": if error { 2 } else { 1 }},
        });
        if let Some(parent) = span.parent {
            item["parentSpanId"] = hex::encode(parent).into();
        }
        if tx.try_send(Item::Span(item)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until the spans ended so far are posted (shutdown).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Item::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

async fn export(
    mut rx: mpsc::Receiver<Item>,
    http: reqwest::Client,
    url: String,
    service_name: String,
) {
    while let Some(first) = rx.recv().await {
        let mut spans = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        loop {
            match next.take() {
                Some(Item::Span(s)) => spans.push(s),
                Some(Item::Flush(done)) => {
                    flushes.push(done);
                    break;
                }
                None => {}
            }
            if spans.len() >= BATCH {
                break;
            }
            next = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => Some(item),
                _ => break,
            };
        }
        if !spans.is_empty() {
            let body = json!({"resourceSpans": [{
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": service_name}}
                ]},
                "scopeSpans": [{"scope": {"name": "mcp-gateway"}, "spans": spans}]
            }]});
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(10))
                .body(body.to_string())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = %r.status(), "the OTLP collector refused spans"),
                Err(e) => tracing::warn!(error = %e, "cannot export spans"),
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The client's trace context in `params._meta.traceparent`.
pub fn parent_in(params: Option<&RawValue>) -> Option<SpanContext> {
    traceparent_in(params).and_then(|t| SpanContext::parse(&t))
}

/// `params._meta.traceparent` as sent (cheap when absent).
pub fn traceparent_in(params: Option<&RawValue>) -> Option<String> {
    let params = params?;
    if !params.get().contains(TRACEPARENT) {
        return None;
    }
    crate::mcp::meta::params_object(Some(params))
        .get("_meta")
        .and_then(|m| m.get(TRACEPARENT))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `params` with `_meta.traceparent` set.
pub fn with_traceparent(params: Option<&RawValue>, traceparent: &str) -> Box<RawValue> {
    crate::mcp::meta::edit_params(params, |p| {
        crate::mcp::meta::meta_mut(p).insert(TRACEPARENT.into(), traceparent.into());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_invalid_ones() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let ctx = SpanContext::parse(tp).unwrap();
        assert_eq!(ctx.traceparent(), tp);
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-xyz-b7ad6b7169203331-01",
            "",
        ] {
            assert!(SpanContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn traceparent_in_meta_is_found_and_set() {
        let raw = serde_json::value::to_raw_value(&json!({"name": "x"})).unwrap();
        assert!(traceparent_in(Some(&raw)).is_none());
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let with = with_traceparent(Some(&raw), tp);
        assert_eq!(traceparent_in(Some(&with)).as_deref(), Some(tp));
        assert_eq!(parent_in(Some(&with)).unwrap().traceparent(), tp);
    }
}
