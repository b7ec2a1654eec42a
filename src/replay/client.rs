//! Plays the client side of a fixture against a gateway: the recorded
//! client→gateway messages in their recorded order, over the recorded
//! front door (Streamable HTTP in either era, legacy HTTP+SSE, WebSocket), with the
//! recorded ids. A server→client request is answered with the client's
//! recorded answer to the same request (method and normalized params).
//! What the gateway sends back is not judged here: the replaying gateway
//! records it, and `compare` reads that recording.

use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use super::fixture::{Fixture, Message};
use super::normalize::normalize;
use crate::mcp;
use crate::record::Dir;

/// Where the replaying client presents its per-run API key.
pub const KEY_HEADER: &str = "x-mcp-replay-key";

/// Longest wait for one response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error("the {0:?} front door cannot be replayed (streamable_http, sse and websocket can)")]
    Unsupported(String),
    #[error("{what}: {reason}")]
    Io { what: String, reason: String },
}

fn io(what: impl Into<String>, reason: impl ToString) -> PlayError {
    PlayError::Io {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// The client's recorded answer to a server→client request like `request`.
fn recorded_answer(fixture: &Fixture, request: &Value) -> Value {
    let wanted = normalize(request, &[]);
    let recorded_id = fixture
        .messages
        .iter()
        .filter(|m| m.dir == Dir::GatewayToClient && m.is_request())
        .find(|m| normalize(&m.message, &[]) == wanted)
        .and_then(|m| m.id().cloned());
    let answer = recorded_id.and_then(|rid| {
        fixture
            .messages
            .iter()
            .find(|m| m.dir == Dir::ClientToGateway && m.is_response() && m.id() == Some(&rid))
    });
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    match answer {
        Some(m) => {
            let mut v = m.message.clone();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("id".into(), id);
            }
            v
        }
        None => json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": mcp::code::METHOD_NOT_FOUND,
            "message": "the recording has no answer to this request",
        }}),
    }
}

fn client_messages(fixture: &Fixture) -> impl Iterator<Item = &Message> {
    fixture
        .messages
        .iter()
        .filter(|m| m.dir == Dir::ClientToGateway && !m.is_response())
}

pub async fn play(base: &str, fixture: &Fixture, key: Option<&str>) -> Result<(), PlayError> {
    let route = &fixture.header.route;
    match fixture.header.transport.as_str() {
        "streamable_http" => {
            let url = if route.is_empty() {
                format!("http://{base}/mcp")
            } else {
                format!("http://{base}/servers/{route}/mcp")
            };
            play_http(&url, fixture, key).await
        }
        "websocket" => {
            let url = if route.is_empty() {
                format!("ws://{base}/ws")
            } else {
                format!("ws://{base}/servers/{route}/ws")
            };
            play_ws(&url, fixture, key).await
        }
        "sse" => {
            let url = if route.is_empty() {
                format!("http://{base}/sse")
            } else {
                format!("http://{base}/servers/{route}/sse")
            };
            play_sse(base, &url, fixture, key).await
        }
        other => Err(PlayError::Unsupported(other.to_owned())),
    }
}

/// The legacy HTTP+SSE front door (2024-11-05): one GET stream carries
/// every answer; messages are POSTed to the endpoint it announces.
async fn play_sse(
    base: &str,
    url: &str,
    fixture: &Fixture,
    key: Option<&str>,
) -> Result<(), PlayError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = key
        && let Ok(v) = reqwest::header::HeaderValue::from_str(k)
    {
        headers.insert(KEY_HEADER, v);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| io("http client", e))?;
    let stream = tokio::time::timeout(
        RESPONSE_TIMEOUT,
        http.get(url).header("accept", "text/event-stream").send(),
    )
    .await
    .map_err(|_| io(url, "no answer in time"))?
    .map_err(|e| io(url, e))?;
    let mut events = stream.bytes_stream().eventsource();
    let endpoint = loop {
        match tokio::time::timeout(RESPONSE_TIMEOUT, events.next()).await {
            Ok(Some(Ok(e))) if e.event == "endpoint" => break e.data,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(io(url, e)),
            Ok(None) | Err(_) => return Err(io(url, "no endpoint event")),
        }
    };
    let post_url = format!("http://{base}{}", endpoint.trim());
    let post = |body: String| {
        http.post(&post_url)
            .header("content-type", "application/json")
            .timeout(RESPONSE_TIMEOUT)
            .body(body)
            .send()
    };
    for m in client_messages(fixture) {
        let what = format!("line {}: {}", m.line, m.method().unwrap_or_default());
        post(m.message.to_string())
            .await
            .map_err(|e| io(&what, e))?;
        let Some(id) = m.id() else { continue };
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let event = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => return Err(io(&what, "no response in time")),
                Ok(None) => return Err(io(&what, "the gateway closed the stream")),
                Ok(Some(Err(e))) => return Err(io(&what, e)),
                Ok(Some(Ok(e))) => e,
            };
            let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let answer = recorded_answer(fixture, &msg);
                post(answer.to_string()).await.map_err(|e| io(&what, e))?;
            } else if msg.get("method").is_none() && msg.get("id") == Some(id) {
                break;
            }
        }
    }
    Ok(())
}

async fn play_http(url: &str, fixture: &Fixture, key: Option<&str>) -> Result<(), PlayError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = key
        && let Ok(v) = reqwest::header::HeaderValue::from_str(k)
    {
        headers.insert(KEY_HEADER, v);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(RESPONSE_TIMEOUT)
        .build()
        .map_err(|e| io("http client", e))?;
    let stateless = fixture.header.era == "stateless";
    let mut session: Option<String> = None;
    // Recorded → replayed `requestState` of calls the gateway parked.
    let mut parked: Vec<(String, String)> = Vec::new();
    for m in client_messages(fixture) {
        let method = m.method().unwrap_or_default().to_owned();
        let mut req = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if stateless {
            req = req.header("mcp-protocol-version", mcp::V2026);
            if m.id().is_some() {
                req = req.header("mcp-method", method.as_str());
                if let Some(param) = mcp::Method::parse(&method).name_param()
                    && let Some(name) = m
                        .message
                        .get("params")
                        .and_then(|p| p.get(param))
                        .and_then(Value::as_str)
                {
                    req = req.header("mcp-name", header_value(name));
                }
            }
        } else if let Some(s) = &session {
            req = req.header("mcp-session-id", s.as_str()).header(
                "mcp-protocol-version",
                fixture.header.protocol_version.as_str(),
            );
        }
        let what = format!("line {}: {method}", m.line);
        let mut body = m.message.to_string();
        for (recorded, replayed) in &parked {
            body = body.replace(recorded.as_str(), replayed.as_str());
        }
        let response = req.body(body).send().await.map_err(|e| io(&what, e))?;
        if method == "initialize"
            && let Some(id) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
        {
            session = Some(id.to_owned());
        }
        let Some(id) = m.id() else { continue };
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if !is_sse {
            // The body is the response; the gateway recorded it already.
            let answer = response.bytes().await.unwrap_or_default();
            if let Ok(v) = serde_json::from_slice::<Value>(&answer) {
                learn_parked(fixture, m, &v, &mut parked);
            }
            continue;
        }
        let mut events = response.bytes_stream().eventsource();
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let event = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => return Err(io(&what, "no response in time")),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(io(&what, e)),
                Ok(Some(Ok(e))) => e,
            };
            let Ok(msg) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let answer = recorded_answer(fixture, &msg);
                let mut post = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream");
                if let Some(s) = &session {
                    post = post.header("mcp-session-id", s.as_str()).header(
                        "mcp-protocol-version",
                        fixture.header.protocol_version.as_str(),
                    );
                }
                let _ = post.body(answer.to_string()).send().await;
            } else if msg.get("method").is_none() && msg.get("id") == Some(id) {
                learn_parked(fixture, m, &msg, &mut parked);
                break;
            }
        }
    }
    Ok(())
}

/// A call the gateway parked on `input_required` is resumed with the
/// `requestState` of this run, not the recorded one: pairs them up.
fn learn_parked(
    fixture: &Fixture,
    request: &Message,
    replayed: &Value,
    parked: &mut Vec<(String, String)>,
) {
    let token = |v: &Value| {
        v.get("result")
            .and_then(|r| r.get("requestState"))
            .and_then(Value::as_str)
            .filter(|s| s.starts_with(super::normalize::PARKED_STATE_PREFIX))
            .map(str::to_owned)
    };
    let Some(new) = token(replayed) else { return };
    let recorded = fixture
        .messages
        .iter()
        .filter(|x| x.line > request.line && x.dir == Dir::GatewayToClient && x.is_response())
        .find(|x| x.id() == request.id())
        .and_then(|x| token(&x.message));
    if let Some(old) = recorded {
        parked.push((old, new));
    }
}

async fn play_ws(url: &str, fixture: &Fixture, key: Option<&str>) -> Result<(), PlayError> {
    use tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request().map_err(|e| io(url, e))?;
    if let Some(k) = key
        && let Ok(v) = tungstenite::http::HeaderValue::from_str(k)
    {
        request.headers_mut().insert(KEY_HEADER, v);
    }
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tungstenite::http::HeaderValue::from_static("mcp"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| io(url, e))?;
    for m in client_messages(fixture) {
        let what = format!("line {}: {}", m.line, m.method().unwrap_or_default());
        socket
            .send(tungstenite::Message::text(m.message.to_string()))
            .await
            .map_err(|e| io(&what, e))?;
        let Some(id) = m.id() else { continue };
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let frame = match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => return Err(io(&what, "no response in time")),
                Ok(None) => return Err(io(&what, "the gateway closed the socket")),
                Ok(Some(Err(e))) => return Err(io(&what, e)),
                Ok(Some(Ok(f))) => f,
            };
            let tungstenite::Message::Text(text) = frame else {
                continue;
            };
            let Ok(msg) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let answer = recorded_answer(fixture, &msg);
                socket
                    .send(tungstenite::Message::text(answer.to_string()))
                    .await
                    .map_err(|e| io(&what, e))?;
            } else if msg.get("method").is_none() && msg.get("id") == Some(id) {
                break;
            }
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

/// A routing header value: as is when visible ASCII, else `=?base64?…?=`.
fn header_value(v: &str) -> String {
    if v.bytes().all(|b| (0x20..0x7f).contains(&b)) && v.trim() == v {
        v.to_owned()
    } else {
        use base64::Engine as _;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}
