//! What legitimately differs between a recording and its replay, and
//! nothing else: JSON-RPC ids, session ids, timestamps, durations, the
//! gateway's cursors, progress tokens and parked-call states. Everything else is compared as
//! recorded.

use serde_json::{Map, Value};

use crate::mcp;

/// How the gateway's `requestState` for a parked call begins.
pub const PARKED_STATE_PREFIX: &str = "mcp-gateway/parked/";

/// Keys whose values are replaced by a placeholder wherever they occur.
const IGNORED: &[(&str, &str)] = &[
    ("progressToken", "<token>"),
    ("requestId", "<id>"),
    ("cursor", "<cursor>"),
    ("nextCursor", "<cursor>"),
    ("sessionId", "<session>"),
    ("timestamp", "<time>"),
    ("durationMs", "<duration>"),
    ("latency_us", "<duration>"),
    (mcp::META_SUBSCRIPTION_ID, "<id>"),
];

/// A message as compared: without `jsonrpc` and `id`, ignored keys masked,
/// the given session ids masked wherever they appear as a string.
pub fn normalize(message: &Value, sessions: &[&str]) -> Value {
    let mut v = message.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("jsonrpc");
        obj.remove("id");
    }
    mask(&mut v, sessions);
    v
}

fn mask(v: &mut Value, sessions: &[&str]) {
    match v {
        Value::Object(obj) => {
            for (key, value) in obj.iter_mut() {
                if let Some((_, placeholder)) = IGNORED.iter().find(|(k, _)| k == key) {
                    *value = Value::String((*placeholder).to_owned());
                } else {
                    mask(value, sessions);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mask(i, sessions)),
        // The gateway's own token for a call parked on `input_required`
        // (`session/park.rs`): a cursor of sorts, new on every run.
        Value::String(s) if s.starts_with(PARKED_STATE_PREFIX) => {
            *s = "<parked>".to_owned();
        }
        Value::String(s) if sessions.iter().any(|id| !id.is_empty() && s.contains(id)) => {
            let mut t = s.clone();
            for id in sessions.iter().filter(|id| !id.is_empty()) {
                t = t.replace(id, "<session>");
            }
            *s = t;
        }
        _ => {}
    }
}

/// Params as a fixture backend matches them: normalized, and without the
/// 2026-07-28 envelope the backend connection adds after the point where
/// the gateway records (`_meta` protocol version, client info and
/// capabilities, log level).
pub fn match_key(params: Option<&Value>) -> Value {
    let mut p = params.cloned().unwrap_or(Value::Null);
    if let Some(obj) = p.as_object_mut() {
        strip_envelope(obj);
        if obj.is_empty() {
            p = Value::Null;
        }
    }
    mask(&mut p, &[]);
    p
}

fn strip_envelope(obj: &mut Map<String, Value>) {
    let empty = match obj.get_mut("_meta") {
        Some(Value::Object(meta)) => {
            for key in [
                mcp::META_PROTOCOL_VERSION,
                mcp::META_CLIENT_INFO,
                mcp::META_CLIENT_CAPABILITIES,
                mcp::META_LOG_LEVEL,
            ] {
                meta.remove(key);
            }
            meta.is_empty()
        }
        _ => false,
    };
    if empty {
        obj.remove("_meta");
    }
}

/// The first place two values differ, as a JSON pointer with both sides.
pub fn first_difference(a: &Value, b: &Value) -> Option<(String, Value, Value)> {
    fn walk(path: &mut String, a: &Value, b: &Value) -> Option<(String, Value, Value)> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    let found = match y.get(k) {
                        Some(vb) => walk(path, va, vb),
                        None => Some((path.clone(), va.clone(), Value::Null)),
                    };
                    if found.is_some() {
                        return found;
                    }
                    path.truncate(len);
                }
                for (k, vb) in y {
                    if !x.contains_key(k) {
                        return Some((format!("{path}/{k}"), Value::Null, vb.clone()));
                    }
                }
                None
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    if let Some(f) = walk(path, va, vb) {
                        return Some(f);
                    }
                    path.truncate(len);
                }
                if x.len() != y.len() {
                    let i = x.len().min(y.len());
                    return Some((
                        format!("{path}/{i}"),
                        x.get(i).cloned().unwrap_or(Value::Null),
                        y.get(i).cloned().unwrap_or(Value::Null),
                    ));
                }
                None
            }
            _ if a == b => None,
            _ => Some((path.clone(), a.clone(), b.clone())),
        }
    }
    walk(&mut String::new(), a, b)
}
