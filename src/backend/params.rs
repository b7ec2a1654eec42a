//! `x-mcp-header` (SEP-2243): tool arguments that 2026-07-28 clients mirror
//! into `Mcp-Param-{Name}` headers. The gateway learns each backend's
//! declarations from the `tools/list` results it relays, checks a client's
//! headers against the body, and builds them for stateless HTTP backends.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;
use serde_json::value::RawValue;

/// One argument mirrored into a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The `{Name}` of `Mcp-Param-{Name}`.
    pub header: String,
    /// The argument (top-level property of `inputSchema`).
    pub property: String,
}

/// Tool name → its header declarations, per backend.
#[derive(Debug, Default)]
pub struct ToolHeaders {
    tools: RwLock<HashMap<String, Vec<ParamHeader>>>,
    known: std::sync::atomic::AtomicBool,
}

impl ToolHeaders {
    /// Whether a `tools/list` has been seen (before that nothing is checked).
    pub fn known(&self) -> bool {
        self.known.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn get(&self, tool: &str) -> Vec<ParamHeader> {
        self.tools
            .read()
            .ok()
            .and_then(|t| t.get(tool).cloned())
            .unwrap_or_default()
    }

    /// Records the declarations of one `tools/list` page.
    pub fn learn(&self, result: &RawValue) {
        let Ok(v) = serde_json::from_str::<Value>(result.get()) else {
            return;
        };
        let Some(tools) = v.get("tools").and_then(Value::as_array) else {
            return;
        };
        let Ok(mut map) = self.tools.write() else {
            return;
        };
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let mut headers = Vec::new();
            if let Some(props) = tool
                .get("inputSchema")
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
            {
                for (property, schema) in props {
                    if let Some(h) = schema.get("x-mcp-header").and_then(Value::as_str) {
                        headers.push(ParamHeader {
                            header: h.to_owned(),
                            property: property.clone(),
                        });
                    }
                }
            }
            if headers.is_empty() {
                map.remove(name);
            } else {
                map.insert(name.to_owned(), headers);
            }
        }
        self.known.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The header text of an argument value: strings as they are, booleans and
/// integers in their JSON spelling; anything else has no header form.
pub fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Checks a client's `Mcp-Param-*` headers against a `tools/call` body.
/// `lookup(name)` returns the header's decoded value when present.
pub fn check(
    declared: &[ParamHeader],
    arguments: Option<&Value>,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<(), String> {
    for d in declared {
        let arg = arguments
            .and_then(|a| a.get(&d.property))
            .filter(|v| !v.is_null());
        let header = lookup(&d.header);
        match (arg, header) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!(
                    "Mcp-Param-{} is set but argument {:?} is absent",
                    d.header, d.property
                ));
            }
            (Some(_), None) => return Err(format!("missing Mcp-Param-{} header", d.header)),
            (Some(v), Some(h)) => {
                let same = match (v, header_text(v)) {
                    (Value::Number(n), _) => h.trim().parse::<i64>().ok() == n.as_i64(),
                    (_, Some(text)) => text == h,
                    (_, None) => false,
                };
                if !same {
                    return Err(format!(
                        "Mcp-Param-{} does not match argument {:?}",
                        d.header, d.property
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_case(args: Value, headers: &[(&str, &str)], ok: bool) {
        let declared = vec![
            ParamHeader {
                header: "Region".into(),
                property: "region".into(),
            },
            ParamHeader {
                header: "Count".into(),
                property: "count".into(),
            },
        ];
        let got = check(&declared, Some(&args), |name| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(got.is_ok(), ok, "{args} {headers:?}: {got:?}");
    }

    #[test]
    fn param_headers() {
        check_case(
            json!({"region": "eu", "count": 3}),
            &[("Region", "eu"), ("Count", "3")],
            true,
        );
        check_case(
            json!({"region": "eu", "count": 3}),
            &[("Region", "eu"), ("Count", "03")],
            true,
        );
        check_case(json!({"region": "eu"}), &[("Region", "eu")], true);
        check_case(json!({"region": "eu"}), &[("Region", "us")], false);
        check_case(json!({"region": "eu"}), &[], false);
        check_case(json!({}), &[("Region", "eu")], false);
        check_case(json!({"region": null}), &[], true);
    }
}
