//! Streamable HTTP towards a server: one POST per message, JSON or SSE
//! answers, the GET stream for server-initiated messages (handshake era),
//! resumption with `Last-Event-ID`. Only the backend's configured headers are
//! sent, never anything of the client's; the Host header is the backend's own.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::BackendError;
use super::conn::Inner;
use crate::mcp::{self, Envelope, Era, ResponsePayload};

/// `params._meta` key carrying `[backend, event id]` of a message read from
/// a resumable session's backend GET stream, up to the session, which
/// removes it (`Session::relay`).
pub const EVENT_TAG: &str = "io.mcp-gateway/backendEvent";

pub(super) struct HttpLink {
    client: reqwest::Client,
    url: String,
    parsed: Option<reqwest::Url>,
    headers: Vec<(String, String)>,
    session_id: Mutex<Option<String>>,
    /// The backend session belongs to a sealed session other replicas may
    /// resume: dropping this link must not end it (see `ConnectParams`).
    resumable: bool,
}

impl HttpLink {
    pub(super) fn new(
        client: reqwest::Client,
        url: String,
        headers: Vec<(String, String)>,
        session_id: Option<String>,
        resumable: bool,
    ) -> HttpLink {
        HttpLink {
            client,
            parsed: reqwest::Url::parse(&url).ok(),
            url,
            headers,
            session_id: Mutex::new(session_id),
            resumable,
        }
    }

    /// A POST to the backend. The URL is parsed once: reqwest would parse
    /// (and IDNA-map) a string on every request.
    fn post_to_backend(&self) -> reqwest::RequestBuilder {
        match &self.parsed {
            Some(url) => self.client.post(url.clone()),
            None => self.client.post(&self.url),
        }
    }

    pub(super) fn session_id(&self) -> Option<String> {
        self.session_id.lock().ok().and_then(|s| s.clone())
    }

    fn post(&self, inner: &Inner, env: &Envelope) -> reqwest::RequestBuilder {
        let mut req = self
            .post_to_backend()
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some(tp) = crate::trace::traceparent_in(env.params.as_deref()) {
            req = req.header(crate::trace::TRACEPARENT, tp);
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        // The backend's own token (`mint_token`), never the client's.
        if let Some(authorization) = inner.params.credentials.authorization() {
            req = req.header(http::header::AUTHORIZATION, authorization);
        }
        let method = env.method.as_deref().unwrap_or("");
        let stateless = inner.era() == Some(Era::Stateless)
            || (inner.era().is_none() && method == "server/discover");
        if stateless {
            req = req.header("mcp-protocol-version", mcp::V2026);
            if !method.is_empty() {
                req = req.header("mcp-method", method);
                let probe = env
                    .params
                    .as_deref()
                    .map(mcp::NameProbe::parse)
                    .unwrap_or_default();
                if let Some(param) = mcp::Method::parse(method).name_param()
                    && let Some(value) = if param == "uri" {
                        &probe.uri
                    } else {
                        &probe.name
                    }
                {
                    req = req.header("mcp-name", encode_header_value(value));
                }
                if method == "tools/call"
                    && let Some(name) = &probe.name
                {
                    req = with_param_headers(req, inner, env, name);
                }
            }
        } else {
            if let Some(v) = inner.protocol_version() {
                req = req.header("mcp-protocol-version", v);
            }
            if let Some(sid) = self.session_id() {
                req = req.header("mcp-session-id", sid);
            }
        }
        req.body(env.to_json())
    }

    /// Sends a notification or a response; the server answers 202.
    pub(super) async fn post_message(
        &self,
        inner: &Arc<Inner>,
        env: &Envelope,
    ) -> Result<(), BackendError> {
        let resp = self
            .post(inner, env)
            .send()
            .await
            .map_err(|e| inner.unavailable(format!("request failed: {}", error_chain(&e))))?;
        let status = resp.status();
        if status.as_u16() == 404 && self.session_id().is_some() {
            inner.fail_all("the backend session ended (404)");
            return Err(inner.unavailable("the backend session ended"));
        }
        if !status.is_success() {
            return Err(inner.unavailable(format!("HTTP {status}")));
        }
        Ok(())
    }

    /// Sends a request and pumps its response (JSON or SSE) into the
    /// connection until the response for `id` arrives.
    pub(super) async fn request(
        &self,
        inner: &Arc<Inner>,
        id: u64,
        env: &Envelope,
        mut rx: oneshot::Receiver<ResponsePayload>,
    ) -> Result<ResponsePayload, BackendError> {
        let resp = self
            .post(inner, env)
            .send()
            .await
            .map_err(|e| inner.unavailable(format!("request failed: {}", error_chain(&e))))?;
        if let Some(sid) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            && let Ok(mut s) = self.session_id.lock()
            && s.is_none()
        {
            *s = Some(sid.to_owned());
        }
        let status = resp.status();
        if status.as_u16() == 404 && self.session_id().is_some() {
            // The server forgot our session: this connection is over; the
            // session engine opens a new one (re-initialize).
            inner.fail_all("the backend session ended (404)");
            return Err(inner.unavailable("the backend session ended"));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") && status.is_success() {
            let mut events = resp.bytes_stream().eventsource();
            loop {
                tokio::select! {
                    biased;
                    payload = &mut rx => {
                        return payload.map_err(|_| inner.unavailable("connection closed"));
                    }
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            if event.data.trim().is_empty() {
                                continue; // priming event
                            }
                            match Envelope::parse(&event.data) {
                                Ok(msg) => inner.dispatch(msg, Some(id)),
                                Err(e) => tracing::warn!(backend = %inner.backend, error = %e, "unparseable SSE event from backend"),
                            }
                        }
                        Some(Err(e)) => {
                            return Err(inner.unavailable(format!("response stream broke: {e}")));
                        }
                        None => {
                            // The stream may have delivered the response just now.
                            return match rx.try_recv() {
                                Ok(payload) => Ok(payload),
                                Err(_) => Err(inner.unavailable("the response stream ended without a response")),
                            };
                        }
                    }
                }
            }
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| inner.unavailable(format!("reading the response failed: {e}")))?;
        let text = String::from_utf8_lossy(&body);
        match Envelope::parse(&text) {
            Ok(msg) if msg.id.is_some() || msg.payload.is_some() => {
                if msg.id.is_none() {
                    // An id-less error (e.g. a 400 with -32020) answers this request.
                    return Ok(msg.payload.unwrap_or_else(|| {
                        ResponsePayload::Error(crate::mcp::envelope::error_object(
                            mcp::code::INTERNAL_ERROR,
                            "empty error",
                            None,
                        ))
                    }));
                }
                inner.dispatch(msg, Some(id));
                rx.try_recv().map_err(|_| {
                    inner.unavailable(format!("HTTP {status} without a matching response"))
                })
            }
            _ => Err(inner.unavailable(format!("HTTP {status}"))),
        }
    }

    /// The GET stream: server-initiated messages of a handshake-era session.
    /// Reconnects with `Last-Event-ID`; a 405 means the server has none.
    pub(super) fn start_get_stream(
        &self,
        inner: Weak<Inner>,
        closed: CancellationToken,
        seen: Option<Arc<Mutex<Option<String>>>>,
    ) {
        let client = self.client.clone();
        let url = self.url.clone();
        let headers = self.headers.clone();
        let Some(session_id) = self.session_id() else {
            return;
        };
        tokio::spawn(async move {
            // Resumes after the last event another GET stream of this
            // backend session saw (another replica's, `Last-Event-ID`).
            let mut last_event_id: Option<String> = seen
                .as_ref()
                .and_then(|s| s.lock().ok().and_then(|s| s.clone()));
            let mut failures: u32 = 0;
            loop {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                let mut req = client
                    .get(&url)
                    .header(http::header::ACCEPT, "text/event-stream")
                    .header("mcp-session-id", &session_id);
                if let Some(v) = strong.protocol_version() {
                    req = req.header("mcp-protocol-version", v);
                }
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                if let Some(authorization) = strong.params.credentials.authorization() {
                    req = req.header(http::header::AUTHORIZATION, authorization);
                }
                if let Some(id) = &last_event_id {
                    req = req.header("last-event-id", id);
                }
                drop(strong);
                let resp = tokio::select! {
                    _ = closed.cancelled() => return,
                    r = req.send() => r,
                };
                match resp {
                    Ok(resp) if resp.status().as_u16() == 405 => return,
                    Ok(resp) if resp.status().as_u16() == 404 => {
                        if let Some(inner) = inner.upgrade() {
                            inner.fail_all("the backend session ended (404)");
                        }
                        return;
                    }
                    Ok(resp) if resp.status().is_success() => {
                        failures = 0;
                        let mut events = resp.bytes_stream().eventsource();
                        loop {
                            let event = tokio::select! {
                                _ = closed.cancelled() => return,
                                e = events.next() => e,
                            };
                            let Some(Ok(event)) = event else { break };
                            if !event.id.is_empty() {
                                last_event_id = Some(event.id.clone());
                            }
                            if event.data.trim().is_empty() {
                                continue;
                            }
                            let Some(inner) = inner.upgrade() else { return };
                            match Envelope::parse(&event.data) {
                                // A resumable session learns, in order with
                                // the messages, how far this stream got.
                                Ok(mut msg)
                                    if seen.is_some()
                                        && !event.id.is_empty()
                                        && msg.method.is_some() =>
                                {
                                    msg.params = Some(crate::mcp::meta::edit_params(
                                        msg.params.as_deref(),
                                        |p| {
                                            crate::mcp::meta::meta_mut(p).insert(
                                                EVENT_TAG.into(),
                                                serde_json::json!([inner.backend, event.id]),
                                            );
                                        },
                                    ));
                                    inner.dispatch(msg, None)
                                }
                                Ok(msg) => inner.dispatch(msg, None),
                                Err(e) => {
                                    tracing::warn!(backend = %inner.backend, error = %e, "unparseable SSE event from backend")
                                }
                            }
                        }
                    }
                    Ok(resp) => {
                        tracing::debug!(status = %resp.status(), "backend GET stream refused");
                        failures += 1;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "backend GET stream failed");
                        failures += 1;
                    }
                }
                if failures > 8 {
                    return;
                }
                let delay = Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)));
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        });
    }
}

impl HttpLink {
    /// Ends the backend session (DELETE) and waits for the answer: a client
    /// ended a resumable session explicitly.
    pub(super) async fn end_session(&self, inner: &Inner) {
        let Some(sid) = self.session_id() else { return };
        let mut req = self.client.delete(&self.url).header("mcp-session-id", sid);
        if let Some(v) = inner.protocol_version() {
            req = req.header("mcp-protocol-version", v);
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(authorization) = inner.params.credentials.authorization() {
            req = req.header(http::header::AUTHORIZATION, authorization);
        }
        if let Err(e) = req.timeout(Duration::from_secs(5)).send().await {
            tracing::debug!(backend = %inner.backend, error = %e, "ending the backend session failed");
        }
        if let Ok(mut s) = self.session_id.lock() {
            *s = None;
        }
    }
}

impl Drop for HttpLink {
    fn drop(&mut self) {
        // Other replicas may still serve this backend session.
        if self.resumable {
            return;
        }
        // End the backend session politely (DELETE); errors do not matter.
        if let Some(sid) = self.session_id() {
            let req = self.client.delete(&self.url).header("mcp-session-id", sid);
            let mut req = req;
            for (k, v) in &self.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = req.timeout(Duration::from_secs(5)).send().await;
                });
            }
        }
    }
}

/// Rebuilds `Mcp-Param-*` from the arguments, with the backend's own
/// declarations (the client's headers never reach the backend).
fn with_param_headers(
    mut req: reqwest::RequestBuilder,
    inner: &Inner,
    env: &Envelope,
    name: &str,
) -> reqwest::RequestBuilder {
    // Most tools declare nothing: then the arguments are never parsed.
    let declared = inner.tool_headers.get(name);
    if declared.is_empty() {
        return req;
    }
    let params = crate::mcp::meta::params_object(env.params.as_deref());
    let arguments = params.get("arguments");
    for d in declared {
        if let Some(text) = arguments
            .and_then(|a| a.get(&d.property))
            .and_then(super::params::header_text)
        {
            req = req.header(
                format!("mcp-param-{}", d.header),
                encode_header_value(&text),
            );
        }
    }
    req
}

/// `Mcp-Name` values outside visible ASCII are sent base64-encoded
/// (SEP-2243: `=?base64?…?=`).
pub(crate) fn encode_header_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?");
    if plain {
        value.to_owned()
    } else {
        use base64::Engine;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
