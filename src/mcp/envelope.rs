//! The JSON-RPC envelope: `jsonrpc`, `id`, `method`, and the rest kept raw.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON-RPC id: MCP allows a string or an integer, never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonRpcId {
    Num(i64),
    Str(String),
}

impl std::fmt::Display for JsonRpcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonRpcId::Num(n) => write!(f, "{n}"),
            JsonRpcId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// One JSON-RPC message. `params`, `result` and `error` are never parsed here.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: Option<JsonRpcId>,
    pub method: Option<String>,
    pub params: Option<Box<RawValue>>,
    pub payload: Option<ResponsePayload>,
}

/// The body of a response.
#[derive(Debug, Clone)]
pub enum ResponsePayload {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("invalid request: {0}")]
    Invalid(&'static str),
}

impl EnvelopeError {
    pub fn code(&self) -> i64 {
        match self {
            EnvelopeError::Parse(_) => super::code::PARSE_ERROR,
            EnvelopeError::Invalid(_) => super::code::INVALID_REQUEST,
        }
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    /// `Some` whenever the key is present, `null` included (an id of null
    /// is invalid in MCP, unlike an absent id).
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Box<RawValue>>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Serialize)]
struct WireOut<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `Some(None)` writes `"id": null`: JSON-RPC 2.0 requires it on an
    /// error answering a message whose id could not be read.
    id: Option<Option<&'a JsonRpcId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RawValue>,
}

impl Envelope {
    /// Parses one message from a JSON object's text.
    pub fn parse(text: &str) -> Result<Envelope, EnvelopeError> {
        let wire: Wire<'_> =
            serde_json::from_str(text).map_err(|e| classify_serde_error(text, e))?;
        Self::from_wire(wire)
    }

    /// Parses one raw JSON value already known to be syntactically valid.
    pub fn from_raw(raw: &RawValue) -> Result<Envelope, EnvelopeError> {
        let wire: Wire<'_> = serde_json::from_str(raw.get())
            .map_err(|_| EnvelopeError::Invalid("not a JSON-RPC message object"))?;
        Self::from_wire(wire)
    }

    fn from_wire(wire: Wire<'_>) -> Result<Envelope, EnvelopeError> {
        if wire.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Err(EnvelopeError::Invalid("jsonrpc must be \"2.0\""));
        }
        let id = match wire.id {
            None => None,
            // An error answering something unreadable carries `"id": null`.
            Some(raw) if raw.get() == "null" && wire.method.is_none() && wire.error.is_some() => {
                None
            }
            Some(raw) => Some(
                serde_json::from_str::<JsonRpcId>(raw.get())
                    .map_err(|_| EnvelopeError::Invalid("id must be a string or an integer"))?,
            ),
        };
        let payload = match (wire.result, wire.error) {
            (Some(r), None) => Some(ResponsePayload::Result(r)),
            (None, Some(e)) => Some(ResponsePayload::Error(e)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(EnvelopeError::Invalid(
                    "a response has either result or error, not both",
                ));
            }
        };
        if let Some(params) = &wire.params {
            let first = params.get().trim_start().as_bytes().first().copied();
            if !matches!(first, Some(b'{') | Some(b'[')) {
                return Err(EnvelopeError::Invalid("params must be an object or array"));
            }
        }
        match (&wire.method, &id, &payload) {
            (Some(_), _, None) => {}
            (None, Some(_), Some(_)) => {}
            (Some(_), _, Some(_)) => {
                return Err(EnvelopeError::Invalid(
                    "a message has either method or result/error",
                ));
            }
            (None, None, Some(ResponsePayload::Error(_))) => {} // error without id (parse errors)
            _ => {
                return Err(EnvelopeError::Invalid(
                    "neither a request, a notification nor a response",
                ));
            }
        }
        Ok(Envelope {
            id,
            method: wire.method,
            params: wire.params,
            payload,
        })
    }

    pub fn kind(&self) -> Kind {
        match (&self.method, &self.id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, _) => Kind::Response,
        }
    }

    pub fn request(
        id: JsonRpcId,
        method: impl Into<String>,
        params: Option<Box<RawValue>>,
    ) -> Self {
        Envelope {
            id: Some(id),
            method: Some(method.into()),
            params,
            payload: None,
        }
    }

    pub fn notification(method: impl Into<String>, params: Option<Box<RawValue>>) -> Self {
        Envelope {
            id: None,
            method: Some(method.into()),
            params,
            payload: None,
        }
    }

    pub fn response(id: Option<JsonRpcId>, payload: ResponsePayload) -> Self {
        Envelope {
            id,
            method: None,
            params: None,
            payload: Some(payload),
        }
    }

    pub fn result(id: JsonRpcId, result: Box<RawValue>) -> Self {
        Self::response(Some(id), ResponsePayload::Result(result))
    }

    /// A JSON-RPC error response with `data.reason` and optional extra data.
    pub fn error(
        id: Option<JsonRpcId>,
        code: i64,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Self {
        Self::response(
            id,
            ResponsePayload::Error(error_object(code, message, data)),
        )
    }

    pub fn to_json(&self) -> String {
        let (result, error) = match &self.payload {
            Some(ResponsePayload::Result(r)) => (Some(&**r), None),
            Some(ResponsePayload::Error(e)) => (None, Some(&**e)),
            None => (None, None),
        };
        let out = WireOut {
            jsonrpc: "2.0",
            id: match (&self.id, &self.payload) {
                (Some(id), _) => Some(Some(id)),
                (None, Some(ResponsePayload::Error(_))) => Some(None),
                (None, _) => None,
            },
            method: self.method.as_deref(),
            params: self.params.as_deref(),
            result,
            error,
        };
        // Serializing borrowed raw JSON and plain strings cannot fail.
        serde_json::to_string(&out).unwrap_or_default()
    }

    /// The error code of an error response.
    pub fn error_code(&self) -> Option<i64> {
        #[derive(Deserialize)]
        struct Code {
            code: i64,
        }
        match &self.payload {
            Some(ResponsePayload::Error(e)) => {
                serde_json::from_str::<Code>(e.get()).ok().map(|c| c.code)
            }
            _ => None,
        }
    }
}

/// Builds `{"code":…, "message":…, "data":{…}}`.
pub fn error_object(code: i64, message: &str, data: Option<serde_json::Value>) -> Box<RawValue> {
    let mut obj = serde_json::json!({ "code": code, "message": message });
    if let (Some(data), Some(map)) = (data, obj.as_object_mut()) {
        map.insert("data".into(), data);
    }
    to_raw(&obj)
}

/// Serializes a value to raw JSON.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// Parse errors are -32700 only when the text is not JSON at all; valid JSON
/// of the wrong shape is -32600.
fn classify_serde_error(text: &str, e: serde_json::Error) -> EnvelopeError {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        EnvelopeError::Invalid("not a JSON-RPC message object")
    } else {
        EnvelopeError::Parse(e.to_string())
    }
}
