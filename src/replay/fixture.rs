//! Reading a fixture: every line checked, every problem named by
//! `file:line`. Never panics on what a file holds.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::record::{Dir, FORMAT, FORMAT_VERSION};

/// Longer lines are refused before they are parsed.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Why a fixture cannot be used, and where.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {problem}")]
pub struct FixtureError {
    pub path: String,
    pub line: usize,
    pub problem: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[serde(rename = "type")]
    _type: String,
    pub format: String,
    pub version: u64,
    pub gateway_version: String,
    pub config_digest: String,
    pub session: String,
    pub era: String,
    pub protocol_version: String,
    pub transport: String,
    pub route: String,
    pub principal: Principal,
    pub include_arguments: bool,
    pub backends: Vec<HeaderBackend>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub sub: String,
    pub tenant: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `none`, `jwt`, `introspection`, `api_key`.
    #[serde(default)]
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderBackend {
    pub name: String,
    pub transport: String,
    pub protocol: String,
}

/// What a backend said about itself (`initialize` / `server/discover`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFacts {
    #[serde(rename = "type")]
    _type: String,
    pub backend: String,
    pub era: String,
    pub protocol_version: String,
    pub server_info: Value,
    pub capabilities: Value,
    pub instructions: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    #[serde(rename = "type")]
    _type: String,
    dir: String,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    call: Option<u64>,
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    failure: Option<String>,
    t_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub allow: bool,
    pub policies: Vec<String>,
    pub reason: String,
}

/// One recorded message.
#[derive(Debug, Clone)]
pub struct Message {
    pub line: usize,
    pub dir: Dir,
    pub backend: Option<String>,
    pub call: Option<u64>,
    pub decision: Option<Decision>,
    /// The JSON-RPC message; `Null` for a backend failure.
    pub message: Value,
    pub failure: Option<String>,
    pub t_us: u64,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        self.message.get("method").and_then(Value::as_str)
    }

    pub fn id(&self) -> Option<&Value> {
        self.message.get("id").filter(|v| !v.is_null())
    }

    pub fn is_request(&self) -> bool {
        self.method().is_some() && self.id().is_some()
    }

    pub fn is_response(&self) -> bool {
        self.method().is_none() && self.failure.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: String,
    pub header: Header,
    pub backends: Vec<BackendFacts>,
    pub messages: Vec<Message>,
}

impl Fixture {
    pub fn facts(&self, backend: &str) -> Option<&BackendFacts> {
        self.backends.iter().find(|b| b.backend == backend)
    }
}

pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| FixtureError {
        path: name.clone(),
        line: 0,
        problem: format!("cannot open: {e}"),
    })?;
    parse(&name, BufReader::new(file))
}

pub fn parse(name: &str, mut reader: impl BufRead) -> Result<Fixture, FixtureError> {
    let err = |line: usize, problem: String| FixtureError {
        path: name.to_owned(),
        line,
        problem,
    };
    let mut header: Option<Header> = None;
    let mut backends = Vec::new();
    let mut messages = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        line_no += 1;
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        let n = reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e| err(line_no, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(err(
                line_no,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|e| err(line_no, format!("not UTF-8: {e}")))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            if e.is_eof() {
                err(line_no, format!("truncated JSON: {e}"))
            } else {
                err(line_no, format!("invalid JSON: {e}"))
            }
        })?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err(line_no, "missing \"type\"".into()))?
            .to_owned();
        if header.is_none() && kind != "header" {
            return Err(err(
                line_no,
                format!("expected the header line first, found {kind:?}"),
            ));
        }
        match kind.as_str() {
            "header" => {
                if header.is_some() {
                    return Err(err(line_no, "a second header line".into()));
                }
                if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
                    return Err(err(line_no, format!("not a {FORMAT} file (\"format\")")));
                }
                match value.get("version").and_then(Value::as_u64) {
                    Some(FORMAT_VERSION) => {}
                    Some(v) => {
                        return Err(err(
                            line_no,
                            format!(
                                "unknown fixture version {v} (this build reads {FORMAT_VERSION})"
                            ),
                        ));
                    }
                    None => return Err(err(line_no, "\"version\" must be a number".into())),
                }
                let h: Header = serde_json::from_value(value)
                    .map_err(|e| err(line_no, format!("bad header: {e}")))?;
                if !matches!(h.era.as_str(), "handshake" | "stateless") {
                    return Err(err(line_no, format!("unknown era {:?}", h.era)));
                }
                header = Some(h);
            }
            "backend" => {
                let b: BackendFacts = serde_json::from_value(value)
                    .map_err(|e| err(line_no, format!("bad backend line: {e}")))?;
                backends.retain(|x: &BackendFacts| x.backend != b.backend);
                backends.push(b);
            }
            "message" => {
                let m: RawMessage = serde_json::from_value(value)
                    .map_err(|e| err(line_no, format!("bad message line: {e}")))?;
                let dir = Dir::parse(&m.dir)
                    .ok_or_else(|| err(line_no, format!("unknown direction {:?}", m.dir)))?;
                let backend_hop = matches!(dir, Dir::GatewayToBackend | Dir::BackendToGateway);
                if backend_hop && m.backend.is_none() && dir == Dir::GatewayToBackend {
                    return Err(err(
                        line_no,
                        "a gateway_to_backend message without \"backend\"".into(),
                    ));
                }
                let message = match (m.message, &m.failure) {
                    (Some(msg @ Value::Object(_)), _) => msg,
                    (Some(_), _) => {
                        return Err(err(line_no, "\"message\" must be a JSON-RPC object".into()));
                    }
                    (None, Some(_)) => Value::Null,
                    (None, None) => {
                        return Err(err(
                            line_no,
                            "a message line needs \"message\" or \"failure\"".into(),
                        ));
                    }
                };
                messages.push(Message {
                    line: line_no,
                    dir,
                    backend: m.backend,
                    call: m.call,
                    decision: m.decision,
                    message,
                    failure: m.failure,
                    t_us: m.t_us,
                });
            }
            "gap" => {
                let lost = value.get("lost").and_then(Value::as_u64).unwrap_or(0);
                return Err(err(
                    line_no,
                    format!(
                        "the recording lost {lost} messages here (record queue full); re-record it"
                    ),
                ));
            }
            other => return Err(err(line_no, format!("unknown line type {other:?}"))),
        }
    }
    let header = header.ok_or_else(|| err(1, "empty fixture (no header line)".into()))?;
    Ok(Fixture {
        path: name.to_owned(),
        header,
        backends,
        messages,
    })
}
