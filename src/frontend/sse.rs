//! Server-Sent Events bodies: a bounded channel per stream, fed without
//! waiting (`offer`), so a client that stops reading is cut off once its
//! queue is full instead of stalling the call or buffering without bound.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::mpsc;

/// An SSE response whose body is fed through the returned sender, which
/// holds at most `queue` chunks the client has not read yet. `gauge`
/// counts the stream as open for as long as the body lives.
pub fn response(
    extra: &[(&'static str, String)],
    queue: usize,
    gauge: crate::telemetry::StreamGauge,
) -> (Response, mpsc::Sender<Result<Bytes, Infallible>>) {
    use futures::StreamExt as _;
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(queue.max(1));
    let chunks = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |chunk| {
        let _open = &gauge;
        chunk
    });
    let body = Body::from_stream(chunks);
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Proxies such as nginx must not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    (response, tx)
}

/// Why a stream took no more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The client is gone (the body was dropped).
    Gone,
    /// The client stopped reading: its queue is full.
    Slow,
}

/// Queues one chunk without waiting: a full queue means the client stopped
/// reading, and the caller ends the stream rather than wait for it.
pub fn offer(body: &mpsc::Sender<Result<Bytes, Infallible>>, chunk: Bytes) -> Result<(), Stop> {
    body.try_send(Ok(chunk)).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => Stop::Slow,
        mpsc::error::TrySendError::Closed(_) => Stop::Gone,
    })
}

pub fn message_event(json: &str, id: Option<&str>) -> Bytes {
    let mut out = String::with_capacity(json.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: message\n");
    // JSON text from serde has no raw newlines, but be safe.
    for line in json.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

pub fn keepalive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

pub fn interval(every: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}
