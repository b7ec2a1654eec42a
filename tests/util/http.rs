//! Raw HTTP for protocol tests: any method, any headers, status/headers/body
//! back unmodified, and an SSE reader that keeps every event (including the
//! empty-data priming events of 2025-11-25, whose `id` resumption tests need)
//! and counts `:` keep-alive comments. Plus two thin MCP layers: a handshake-era
//! session (`McpSession`) and the 2026-07-28 per-request envelope (`modern_*`).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// Bound on reading a whole response body (a POST's SSE stream ends after the response).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

pub const MODERN: &str = "2026-07-28";
pub const LATEST_HANDSHAKE: &str = "2025-11-25";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

fn client() -> reqwest::Client {
    // One client per call: a pooled connection must not outlive the test's runtime.
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl RawResponse {
    /// A header's value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub fn is_sse(&self) -> bool {
        self.content_type().starts_with("text/event-stream")
    }

    /// The body as JSON; panics with the body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} body {:?}",
                self.status, self.body
            )
        })
    }

    /// The body's SSE events (for a `text/event-stream` body).
    pub fn sse_events(&self) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = parser.feed(&self.body);
        events.extend(parser.finish());
        events
    }

    /// The JSON-RPC messages in the body: the JSON body itself, or every SSE
    /// event's data parsed as JSON (events with empty data skipped).
    pub fn messages(&self) -> Vec<Value> {
        if self.is_sse() {
            self.sse_events()
                .iter()
                .filter_map(SseEvent::json)
                .collect()
        } else if self.body.trim().is_empty() {
            Vec::new()
        } else {
            match self.json() {
                Value::Array(batch) => batch,
                single => vec![single],
            }
        }
    }

    /// The (last) JSON-RPC response in the body: a message with `result` or
    /// `error`. Panics with the body when there is none.
    pub fn rpc(&self) -> Value {
        self.messages()
            .into_iter()
            .rev()
            .find(is_response)
            .unwrap_or_else(|| {
                panic!(
                    "no JSON-RPC response: status {} {:?} body {:?}",
                    self.status, self.headers, self.body
                )
            })
    }

    /// Notifications and server requests that came before the response (SSE).
    pub fn non_responses(&self) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| !is_response(m))
            .collect()
    }
}

/// A JSON-RPC response (not a request or notification)?
pub fn is_response(m: &Value) -> bool {
    m.get("method").is_none() && (m.get("result").is_some() || m.get("error").is_some())
}

fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .unwrap_or_else(|e| panic!("header name {k:?}: {e}"));
        let value = reqwest::header::HeaderValue::from_str(v)
            .unwrap_or_else(|e| panic!("header value {v:?}: {e}"));
        map.append(name, value);
    }
    map
}

async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> reqwest::Response {
    let mut req = client()
        .request(method.clone(), url)
        .headers(header_map(headers));
    if let Some(body) = body {
        req = req.body(body);
    }
    match tokio::time::timeout(BODY_TIMEOUT, req.send()).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => panic!("{method} {url}: {e:?}"),
        Err(_) => panic!("{method} {url}: no response headers within {BODY_TIMEOUT:?}"),
    }
}

/// Any request, the whole body read (bounded by `BODY_TIMEOUT`). No default headers.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> RawResponse {
    let resp = send(method.clone(), url, headers, body).await;
    let status = resp.status().as_u16();
    let resp_headers = resp.headers().clone();
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    let read = tokio::time::timeout(BODY_TIMEOUT, async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => body.extend_from_slice(&c),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "{method} {url}: body error {e:?} after {:?}",
            String::from_utf8_lossy(&body)
        ),
        Err(_) => panic!(
            "{method} {url}: body not finished within {BODY_TIMEOUT:?} (use open_stream for long streams); got {:?}",
            String::from_utf8_lossy(&body)
        ),
    }
    RawResponse {
        status,
        headers: resp_headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Adds `Content-Type: application/json` and `Accept: application/json,
/// text/event-stream` unless `headers` sets them (to test 406/415, set them).
fn with_json_defaults<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = headers.to_vec();
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("content-type") {
        all.push(("content-type", "application/json"));
    }
    if !has("accept") {
        all.push(("accept", ACCEPT_BOTH));
    }
    all
}

/// POST a JSON value (defaults: JSON content type, MCP Accept).
pub async fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> RawResponse {
    request(
        Method::POST,
        url,
        &with_json_defaults(headers),
        Some(body.to_string()),
    )
    .await
}

/// POST arbitrary bytes (malformed JSON, oversized bodies) with the JSON defaults.
pub async fn post_raw(url: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    request(
        Method::POST,
        url,
        &with_json_defaults(headers),
        Some(body.to_string()),
    )
    .await
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(Method::GET, url, headers, None).await
}

pub async fn delete(url: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(Method::DELETE, url, headers, None).await
}

/// Opens a long-lived response (GET stream, `subscriptions/listen`, a slow
/// tool's POST) and reads it event by event. `body` is POSTed as JSON with the
/// defaults of `post_json`; without a body it is a GET with `Accept: text/event-stream`.
pub async fn open_stream(url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> SseStream {
    let resp = match body {
        Some(b) => {
            send(
                Method::POST,
                url,
                &with_json_defaults(headers),
                Some(b.to_string()),
            )
            .await
        }
        None => {
            let mut all = headers.to_vec();
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
            {
                all.push(("accept", "text/event-stream"));
            }
            send(Method::GET, url, &all, None).await
        }
    };
    SseStream {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        stream: Box::pin(resp.bytes_stream()),
        parser: SseParser::default(),
        queue: VecDeque::new(),
        ended: false,
    }
}

// --- SSE ------------------------------------------------------------------------

/// One server-sent event. `data` lines are joined with `\n`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

impl SseEvent {
    /// `data` as JSON, `None` when empty (priming events) or not JSON.
    pub fn json(&self) -> Option<Value> {
        if self.data.is_empty() {
            None
        } else {
            serde_json::from_str(&self.data).ok()
        }
    }
}

/// Incremental `text/event-stream` parser (WHATWG rules, except that an event
/// with an `id` or `retry` but empty data is still reported).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: String,
    current: SseEvent,
    data_lines: Vec<String>,
    has_field: bool,
    /// `:` comment lines seen (keep-alives).
    pub comments: usize,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &str) -> Vec<SseEvent> {
        self.buf.push_str(chunk);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=pos).collect();
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            self.line(line, &mut events);
        }
        events
    }

    /// End of stream: a last event not followed by a blank line is dispatched too.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.line(rest.trim_end_matches('\r'), &mut events);
        }
        self.line("", &mut events);
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_field {
                let mut ev = std::mem::take(&mut self.current);
                ev.data = std::mem::take(&mut self.data_lines).join("\n");
                events.push(ev);
            }
            self.has_field = false;
            return;
        }
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => self.current.event = Some(value.to_string()),
            "data" => self.data_lines.push(value.to_string()),
            "id" => self.current.id = Some(value.to_string()),
            "retry" => self.current.retry = value.parse().ok(),
            _ => return,
        }
        self.has_field = true;
    }
}

/// A response read incrementally as SSE.
pub struct SseStream {
    pub status: u16,
    pub headers: HeaderMap,
    stream: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    ended: bool,
}

impl SseStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Keep-alive comments seen so far.
    pub fn comments(&self) -> usize {
        self.parser.comments
    }

    /// The next event, `Ok(None)` at end of stream, `Err(())` if none arrives within `timeout`.
    pub async fn try_next_event(&mut self, timeout: Duration) -> Result<Option<SseEvent>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            if self.ended {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err(()),
                Ok(Some(Ok(chunk))) => {
                    let events = self.parser.feed(&String::from_utf8_lossy(&chunk));
                    self.queue.extend(events);
                }
                // A reset connection ends the stream as far as a test is concerned.
                Ok(Some(Err(_))) | Ok(None) => {
                    self.ended = true;
                    let events = self.parser.finish();
                    self.queue.extend(events);
                }
            }
        }
    }

    /// The next event or `None` at end of stream; panics on timeout.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        self.try_next_event(timeout)
            .await
            .unwrap_or_else(|()| panic!("no SSE event within {timeout:?}"))
    }

    /// The next event carrying a JSON message (priming events skipped); `None` at end.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                None => return None,
                Some(ev) => {
                    if let Some(v) = ev.json() {
                        return Some(v);
                    }
                }
            }
        }
    }

    /// Messages until (and including) the JSON-RPC response with `id`; panics on timeout or early end.
    pub async fn until_response(&mut self, id: &Value, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await {
                None => panic!("stream ended before the response to {id}; saw {seen:#?}"),
                Some(m) => {
                    let done = is_response(&m) && m.get("id") == Some(id);
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
            }
        }
    }
}

// --- handshake era (2024-11-05 … 2025-11-25) -----------------------------------------

/// A Streamable HTTP session opened with `initialize`.
pub struct McpSession {
    pub url: String,
    pub protocol_version: String,
    pub session_id: Option<String>,
    /// The `initialize` result.
    pub init: Value,
    extra_headers: Vec<(String, String)>,
    next_id: i64,
}

impl McpSession {
    /// `initialize` offering `protocol_version` (server may counter), then
    /// `notifications/initialized`. Panics unless the server answers with a result.
    pub async fn initialize(
        url: &str,
        protocol_version: &str,
        headers: &[(&str, &str)],
    ) -> McpSession {
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": protocol_version,
                "capabilities": {},
                "clientInfo": {"name": "gateway-tests", "version": "0"}
            }
        });
        let resp = post_json(url, headers, &body).await;
        assert_eq!(resp.status, 200, "initialize at {url}: {resp:?}");
        let rpc = resp.rpc();
        let init = rpc
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("initialize at {url} failed: {rpc}"));
        let session = McpSession {
            url: url.to_string(),
            protocol_version: init["protocolVersion"]
                .as_str()
                .unwrap_or(protocol_version)
                .to_string(),
            session_id: resp.header("mcp-session-id").map(str::to_string),
            init,
            extra_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            next_id: 1,
        };
        let ack = session.notify("notifications/initialized", json!({})).await;
        assert_eq!(ack.status, 202, "notifications/initialized: {ack:?}");
        session
    }

    /// Extra headers + `Mcp-Session-Id` + `MCP-Protocol-Version` (from 2025-06-18 on).
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = self.extra_headers.clone();
        if let Some(id) = &self.session_id {
            h.push(("mcp-session-id".into(), id.clone()));
        }
        if self.protocol_version.as_str() >= "2025-06-18" {
            h.push(("mcp-protocol-version".into(), self.protocol_version.clone()));
        }
        h
    }

    fn header_refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
        h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// POST any message with the session's headers.
    pub async fn post(&self, body: &Value) -> RawResponse {
        let h = self.headers();
        post_json(&self.url, &Self::header_refs(&h), body).await
    }

    /// The id the last request of this session was sent with.
    pub fn last_id(&self) -> Value {
        json!(self.next_id - 1)
    }

    /// A request with a fresh id; returns the whole response (JSON or SSE).
    pub async fn send(&mut self, method: &str, params: Value) -> RawResponse {
        let id = self.next_id;
        self.next_id += 1;
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    /// A request; returns its JSON-RPC response message (`result` or `error`).
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let resp = self.send(method, params).await;
        resp.rpc()
    }

    /// Every item of a paginated list (`tools/list` → key `tools`), following
    /// `nextCursor` (at most 100 pages); panics on an error.
    pub async fn list_all(&mut self, method: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut params = json!({});
        for _ in 0..100 {
            let rpc = self.request(method, params.clone()).await;
            let result = rpc
                .get("result")
                .unwrap_or_else(|| panic!("{method} failed: {rpc}"));
            items.extend(result[key].as_array().cloned().unwrap_or_default());
            match result.get("nextCursor") {
                Some(c) if !c.is_null() => params = json!({"cursor": c}),
                _ => return items,
            }
        }
        panic!("{method}: more than 100 pages")
    }

    pub async fn notify(&self, method: &str, params: Value) -> RawResponse {
        self.post(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await
    }

    /// A request whose response is read incrementally (progress, server requests).
    pub async fn open_request(&mut self, method: &str, params: Value) -> (Value, SseStream) {
        let id = json!(self.next_id);
        self.next_id += 1;
        let h = self.headers();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        (
            id,
            open_stream(&self.url, &Self::header_refs(&h), Some(&body)).await,
        )
    }

    /// The GET stream (server-initiated messages); `last_event_id` resumes.
    pub async fn get_stream(&self, last_event_id: Option<&str>) -> SseStream {
        let mut h = self.headers();
        if let Some(id) = last_event_id {
            h.push(("last-event-id".into(), id.to_string()));
        }
        open_stream(&self.url, &Self::header_refs(&h), None).await
    }

    /// DELETE the session.
    pub async fn delete(&self) -> RawResponse {
        let h = self.headers();
        delete(&self.url, &Self::header_refs(&h)).await
    }
}

// --- 2026-07-28 (stateless) -------------------------------------------------------------

/// `params._meta` keys every 2026-07-28 request carries.
pub fn modern_meta(client_capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": client_capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "gateway-tests", "version": "0"}
    })
}

/// A 2026-07-28 request body: `params` with `_meta` merged in (keys already in
/// `params._meta` win, so a test can send a wrong version).
pub fn modern_body(id: Value, method: &str, params: Value) -> Value {
    let mut params = if params.is_null() { json!({}) } else { params };
    let mut meta = modern_meta(json!({}));
    if let Some(given) = params.get("_meta").and_then(Value::as_object) {
        for (k, v) in given {
            meta[k] = v.clone();
        }
    }
    params["_meta"] = meta;
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Routing headers for a 2026-07-28 request: `MCP-Protocol-Version`,
/// `Mcp-Method`, and `Mcp-Name` (tool/prompt name, resource URI) where required.
pub fn modern_headers(method: &str, params: &Value) -> Vec<(String, String)> {
    let mut h = vec![
        ("mcp-protocol-version".to_string(), MODERN.to_string()),
        ("mcp-method".to_string(), method.to_string()),
    ];
    let name = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.get("taskId"),
        _ => None,
    };
    if let Some(name) = name.and_then(Value::as_str) {
        h.push(("mcp-name".to_string(), name.to_string()));
    }
    h
}

/// POST one 2026-07-28 request (envelope + routing headers + `extra` headers).
pub async fn modern_request(
    url: &str,
    id: i64,
    method: &str,
    params: Value,
    extra: &[(&str, &str)],
) -> RawResponse {
    let routing = modern_headers(method, &params);
    let mut h: Vec<(&str, &str)> = routing
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    h.extend_from_slice(extra);
    post_json(url, &h, &modern_body(json!(id), method, params)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_keeps_priming_events_and_counts_comments() {
        let mut p = SseParser::default();
        let mut ev = p.feed("id: 0\ndata:\n\n: keep-alive\r\nevent: message\r\nid: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nretry: 10");
        ev.extend(p.finish());
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].id.as_deref(), Some("0"));
        assert_eq!(ev[0].json(), None);
        assert_eq!(ev[1].event.as_deref(), Some("message"));
        assert_eq!(ev[1].data, "{\"a\":\n1}");
        assert_eq!(ev[1].json(), Some(json!({"a": 1})));
        assert_eq!(ev[2].retry, Some(10));
        assert_eq!(p.comments, 1);
    }

    #[test]
    fn modern_envelope() {
        let body = modern_body(
            json!(7),
            "tools/call",
            json!({"name": "echo", "_meta": {"progressToken": 1}}),
        );
        assert_eq!(
            body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            MODERN
        );
        assert_eq!(body["params"]["_meta"]["progressToken"], 1);
        let h = modern_headers("tools/call", &body["params"]);
        assert!(h.contains(&("mcp-name".to_string(), "echo".to_string())));
    }
}
