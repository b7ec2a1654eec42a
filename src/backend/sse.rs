//! Legacy HTTP+SSE (2024-11-05) towards a server: one GET stream carries
//! every server message (`event: message`, responses included); its first
//! event, `endpoint`, names the URI every client message is POSTed to (the
//! server answers 202). Only the backend's own credentials are sent (its
//! configured headers, or a token minted for the caller with `mint_token`,
//! on the GET and on every POST), and the endpoint must be on the stream's
//! own origin, so they never reach a host the configuration did not name.

use std::sync::{Arc, Weak};
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Url;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::BackendError;
use super::conn::Inner;
use super::http::error_chain;
use crate::mcp::Envelope;

type Events = BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>;

/// An open GET stream whose `endpoint` event has arrived.
pub(super) struct Opened {
    endpoint: Url,
    events: Events,
}

pub(super) struct SseLink {
    client: reqwest::Client,
    /// Where messages are POSTed (from the `endpoint` event).
    endpoint: Url,
    headers: Vec<(String, String)>,
    /// Bound on one POST: a server that never acknowledges cannot hold a
    /// notification or an answer forever.
    post_timeout: Duration,
    /// Dropping the link (the connection is gone) ends the GET stream, which
    /// ends the server's session.
    _close_on_drop: DropGuard,
}

/// GETs the stream and waits (at most `wait`) for its `endpoint` event.
/// `authorization`: the backend's minted token, if it has one.
pub(super) async fn open(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    authorization: Option<http::HeaderValue>,
    wait: Duration,
) -> Result<Opened, String> {
    let base = Url::parse(url).map_err(|e| format!("invalid SSE URL: {e}"))?;
    let handshake = async {
        let mut req = client
            .get(base.clone())
            .header(http::header::ACCEPT, "text/event-stream")
            .header(http::header::CACHE_CONTROL, "no-cache");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(authorization) = authorization {
            req = req.header(http::header::AUTHORIZATION, authorization);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("GET {url} failed: {}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !content_type.starts_with("text/event-stream") {
            return Err(format!(
                "GET {url} is not an SSE stream (content-type {content_type:?})"
            ));
        }
        let mut events: Events = resp.bytes_stream().eventsource().boxed();
        // Bounded by the `wait` timeout around this block.
        loop {
            match events.next().await {
                Some(Ok(event)) if event.event == "endpoint" => {
                    let endpoint = resolve_endpoint(&base, event.data.trim())?;
                    return Ok(Opened { endpoint, events });
                }
                Some(Ok(event)) => {
                    tracing::debug!(event = %event.event, "SSE event before the endpoint ignored");
                }
                Some(Err(e)) => return Err(format!("the SSE stream broke: {e}")),
                None => return Err("the SSE stream ended before its endpoint event".into()),
            }
        }
    };
    match tokio::time::timeout(wait, handshake).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no endpoint event from {url} within {}s",
            wait.as_secs_f64()
        )),
    }
}

/// The `endpoint` event's URI, resolved against the stream's URL; it must
/// stay on that origin (the configured headers may carry a credential).
fn resolve_endpoint(base: &Url, data: &str) -> Result<Url, String> {
    if data.is_empty() {
        return Err("the endpoint event is empty".into());
    }
    let endpoint = base
        .join(data)
        .map_err(|e| format!("the endpoint {data:?} is not a URI: {e}"))?;
    if endpoint.origin() != base.origin() {
        return Err(format!(
            "the endpoint {data:?} is on another origin than the SSE stream; refused"
        ));
    }
    Ok(endpoint)
}

/// Starts reading server messages; the link POSTs client messages.
pub(super) fn start(
    opened: Opened,
    client: reqwest::Client,
    headers: Vec<(String, String)>,
    post_timeout: Duration,
    backend: String,
    inner: Weak<Inner>,
    closed: CancellationToken,
) -> SseLink {
    let Opened {
        endpoint,
        mut events,
    } = opened;
    let stop = closed.clone();
    tokio::spawn(async move {
        let reason = loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break "connection closed".to_owned(),
                event = events.next() => event,
            };
            match event {
                None => break "the server closed the SSE stream".to_owned(),
                Some(Err(e)) => break format!("the SSE stream broke: {e}"),
                Some(Ok(event)) => {
                    // Every server message is `event: message` (also the
                    // default type of an event without a name).
                    if event.event != "message" || event.data.trim().is_empty() {
                        tracing::debug!(backend = %backend, event = %event.event, "SSE event ignored");
                        continue;
                    }
                    match Envelope::parse(&event.data) {
                        Ok(msg) => match inner.upgrade() {
                            Some(inner) => inner.dispatch(msg, None),
                            None => break "connection dropped".to_owned(),
                        },
                        Err(e) => {
                            tracing::warn!(backend = %backend, error = %e, "unparseable SSE event from backend")
                        }
                    }
                }
            }
        };
        tracing::info!(backend = %backend, %reason, "backend SSE stream ended");
        if let Some(inner) = inner.upgrade() {
            inner.fail_all(&reason);
        }
    });
    SseLink {
        client,
        endpoint,
        headers,
        post_timeout,
        _close_on_drop: closed.drop_guard(),
    }
}

impl SseLink {
    /// POSTs one message to the endpoint; its answer arrives on the stream.
    pub(super) async fn post(&self, inner: &Arc<Inner>, body: String) -> Result<(), BackendError> {
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .timeout(self.post_timeout)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // The backend's own token (`mint_token`), never the client's.
        if let Some(authorization) = inner.params.credentials.authorization() {
            req = req.header(http::header::AUTHORIZATION, authorization);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| inner.unavailable(format!("POST failed: {}", error_chain(&e))))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.as_u16() == 404 {
            // The server forgot the session (restarted): this connection is
            // over; the session engine opens a new stream on the next call.
            inner.fail_all("the backend session ended (404)");
            return Err(inner.unavailable("the backend session ended"));
        }
        Err(inner.unavailable(format!("POST answered HTTP {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(base: &str, data: &str, expected: Result<&str, ()>) {
        let base = Url::parse(base).expect("test URL");
        let got = resolve_endpoint(&base, data);
        assert_eq!(
            got.as_ref().map(Url::as_str).map_err(|_| ()),
            expected,
            "{base} + {data:?}: {got:?}"
        );
    }

    #[test]
    fn endpoints_resolve_on_the_stream_origin_only() {
        let base = "http://127.0.0.1:3000/sse";
        check(
            base,
            "/messages/?session_id=ab",
            Ok("http://127.0.0.1:3000/messages/?session_id=ab"),
        );
        check(
            base,
            "message?sessionId=1",
            Ok("http://127.0.0.1:3000/message?sessionId=1"),
        );
        check("http://h:1/a/sse", "msg", Ok("http://h:1/a/msg"));
        check(
            base,
            "http://127.0.0.1:3000/m",
            Ok("http://127.0.0.1:3000/m"),
        );
        check(base, "http://127.0.0.1:3001/m", Err(()));
        check(base, "https://127.0.0.1:3000/m", Err(()));
        check(base, "//evil.example/m", Err(()));
        check(base, "", Err(()));
    }
}
