//! Server-Sent Events bodies: one writer task per stream feeding a bounded
//! channel, so a client that stops reading stalls only its own stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::mpsc;

/// An SSE response whose body is fed through the returned sender.
pub fn response(
    extra: &[(&'static str, String)],
) -> (Response, mpsc::Sender<Result<Bytes, Infallible>>) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
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

pub fn message_event(json: &str, id: Option<u64>) -> Bytes {
    let mut out = String::with_capacity(json.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
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
