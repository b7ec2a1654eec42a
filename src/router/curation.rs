//! Curation of a backend's tools (`backends[].tools`): which tools clients
//! see, under which name and description, and which arguments are fixed.
//! Pure: a tool object in, the tool object clients see out; a public name
//! in, the server's own name out. Authorization is not decided here: a
//! curated-away tool does not exist for anyone.

use serde_json::{Map, Value};

use crate::config::ToolCuration;

/// Longest tool name the 2025-11-25 rules allow.
pub const MAX_TOOL_NAME: usize = 128;

/// Checks a client-visible tool name against the 2025-11-25 rules:
/// 1 to 128 characters of `[A-Za-z0-9_.-]`.
pub fn check_tool_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a tool name must not be empty".into());
    }
    if name.len() > MAX_TOOL_NAME {
        return Err(format!(
            "tool name {name:?} is {} characters long, more than {MAX_TOOL_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "tool name {name:?} has {c:?}; only A-Za-z0-9_.- are allowed"
        ));
    }
    Ok(())
}

/// `*` matches any run of characters, `?` any one character; everything
/// else matches itself.
pub fn glob_matches(glob: &str, name: &str) -> bool {
    let (g, n): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point: linear in practice and
    // never recursive, whatever the configured glob.
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(c) if *c == '?' || Some(c) == n.get(ni) => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g.get(gi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

impl ToolCuration {
    /// Whether nothing is curated (the backend's tools pass as they are).
    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.rename.is_empty()
            && self.description.is_empty()
            && self.pin.is_empty()
    }

    /// Whether clients see the server's tool `own`.
    pub fn visible(&self, own: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| glob_matches(g, own)))
            && !self.exclude.iter().any(|g| glob_matches(g, own))
    }

    /// The name clients see for the server's tool `own` (before any prefix).
    pub fn public_name<'a>(&'a self, own: &'a str) -> &'a str {
        self.rename.get(own).map(String::as_str).unwrap_or(own)
    }

    /// The server's own name for a public (unprefixed) name, if that name
    /// is a visible tool: a renamed tool is not reachable by its old name.
    pub fn own_name(&self, public: &str) -> Option<String> {
        let own = match self.rename.iter().find(|(_, p)| p.as_str() == public) {
            Some((own, _)) => own.clone(),
            None if self.rename.contains_key(public) => return None,
            None => public.to_owned(),
        };
        self.visible(&own).then_some(own)
    }

    /// The tool object clients see (name not yet prefixed), or `None` when
    /// the tool is curated away.
    pub fn present(&self, mut tool: Map<String, Value>) -> Option<Map<String, Value>> {
        let own = tool.get("name").and_then(Value::as_str)?.to_owned();
        if !self.visible(&own) {
            return None;
        }
        if let Some(public) = self.rename.get(&own) {
            tool.insert("name".into(), Value::String(public.clone()));
        }
        if let Some(description) = self.description.get(&own) {
            tool.insert("description".into(), Value::String(description.clone()));
        }
        if let Some(fixed) = self.pin.get(&own)
            && let Some(Value::Object(schema)) = tool.get_mut("inputSchema")
        {
            if let Some(Value::Object(props)) = schema.get_mut("properties") {
                for arg in fixed.keys() {
                    props.remove(arg);
                }
            }
            if let Some(Value::Array(required)) = schema.get_mut("required") {
                required.retain(|r| r.as_str().is_none_or(|r| !fixed.contains_key(r)));
            }
        }
        Some(tool)
    }

    /// Puts the pinned values of tool `own` into a call's arguments; a
    /// value the client sent for a pinned argument is replaced.
    pub fn inject_pins(&self, own: &str, params: &mut Map<String, Value>) {
        let Some(fixed) = self.pin.get(own) else {
            return;
        };
        let args = params
            .entry("arguments")
            .or_insert_with(|| Value::Object(Map::new()));
        if !args.is_object() {
            *args = Value::Object(Map::new());
        }
        if let Value::Object(args) = args {
            for (k, v) in fixed {
                args.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(glob: &str, name: &str, expected: bool) {
        assert_eq!(glob_matches(glob, name), expected, "{glob} vs {name}");
    }

    #[test]
    fn globs() {
        check("*", "", true);
        check("*", "anything", true);
        check("get_*", "get_sum", true);
        check("get_*", "set_sum", false);
        check("*_sum", "get_sum", true);
        check("g?t", "get", true);
        check("g?t", "gt", false);
        check("a*b*c", "aXXbYYc", true);
        check("a*b*c", "aXXbYY", false);
        check("echo", "echo", true);
        check("echo", "echoo", false);
    }

    #[test]
    fn tool_names() {
        assert!(check_tool_name("demo__echo").is_ok());
        assert!(check_tool_name("a.b-c_d").is_ok());
        assert!(check_tool_name("").is_err());
        assert!(check_tool_name("has space").is_err());
        assert!(check_tool_name("slash/no").is_err());
        assert!(check_tool_name(&"x".repeat(128)).is_ok());
        assert!(check_tool_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn curation_hides_renames_and_pins() {
        let mut c = ToolCuration {
            exclude: vec!["secret*".into()],
            ..Default::default()
        };
        c.rename.insert("echo".into(), "say".into());
        c.description.insert("echo".into(), "says it".into());
        let mut fixed = Map::new();
        fixed.insert("a".into(), Value::from(1));
        c.pin.insert("add".into(), fixed);
        assert_eq!(c.own_name("say").as_deref(), Some("echo"));
        assert_eq!(c.own_name("echo"), None, "the old name is gone");
        assert_eq!(c.own_name("secret_x"), None);
        assert_eq!(c.own_name("add").as_deref(), Some("add"));
        let tool = serde_json::json!({"name": "add", "inputSchema": {"type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}});
        let Value::Object(tool) = tool else {
            unreachable!()
        };
        let shown = c.present(tool).unwrap_or_default();
        assert_eq!(
            Value::Object(shown),
            serde_json::json!({"name": "add", "inputSchema": {"type": "object",
                "properties": {"b": {"type": "number"}}, "required": ["b"]}})
        );
        let mut params = Map::new();
        params.insert("arguments".into(), serde_json::json!({"a": 5, "b": 2}));
        c.inject_pins("add", &mut params);
        assert_eq!(params["arguments"], serde_json::json!({"a": 1, "b": 2}));
    }
}
