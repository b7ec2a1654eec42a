//! `params._meta`: reading the few keys the gateway needs and rewriting
//! params where it must (progress tokens, the 2026-07-28 envelope, names).
//! Rewrites go through `serde_json::Value` only for the message being
//! rewritten; everything else stays raw.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::envelope::to_raw;

#[derive(Debug, Default, Deserialize)]
pub struct MetaProbe {
    #[serde(default, rename = "progressToken")]
    pub progress_token: Option<Box<RawValue>>,
    #[serde(default, rename = "io.modelcontextprotocol/protocolVersion")]
    pub protocol_version: Option<Value>,
    #[serde(default, rename = "io.modelcontextprotocol/clientInfo")]
    pub client_info: Option<Box<RawValue>>,
    #[serde(default, rename = "io.modelcontextprotocol/clientCapabilities")]
    pub client_capabilities: Option<Box<RawValue>>,
    #[serde(default, rename = "io.modelcontextprotocol/subscriptionId")]
    pub subscription_id: Option<Box<RawValue>>,
}

/// Parses params as a JSON object (an absent params is an empty object).
pub fn params_object(params: Option<&RawValue>) -> Map<String, Value> {
    params
        .and_then(|p| serde_json::from_str::<Map<String, Value>>(p.get()).ok())
        .unwrap_or_default()
}

/// Applies `edit` to the params object and returns the new raw params.
pub fn edit_params(
    params: Option<&RawValue>,
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Box<RawValue> {
    let mut obj = params_object(params);
    edit(&mut obj);
    to_raw(&obj)
}

/// The `_meta` object of params, created when absent.
pub fn meta_mut(obj: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        // Replaced by an object just above.
        _ => unreachable!("_meta was just made an object"),
    }
}

/// Reads a string field of a raw JSON object without materializing the rest.
pub fn string_field(raw: &RawValue, field: &str) -> Option<String> {
    let map: Map<String, Value> = serde_json::from_str(raw.get()).ok()?;
    map.get(field)?.as_str().map(str::to_owned)
}

/// `resultType` of a 2026-07-28 result (absent means `complete`).
pub fn result_type(result: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, rename = "resultType")]
        result_type: Option<String>,
    }
    serde_json::from_str::<Probe>(result.get())
        .ok()
        .and_then(|p| p.result_type)
        .unwrap_or_else(|| "complete".to_owned())
}
