//! Policy files → one compiled, schema-validated Cedar `PolicySet`. Every
//! problem of every file is reported at once, each as `file:line:col:`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

/// The Cedar schema every policy is validated against.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/mcp.cedarschema");

/// One problem with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read the policy file: {reason}")]
    Read { file: String, reason: String },
    #[error("{pattern}: no policy file matches")]
    NoMatch { pattern: String },
    #[error("{pattern}: cannot list the directory: {reason}")]
    List { pattern: String, reason: String },
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{file}:{line}:{col}: policy {id:?}: {message}")]
    Invalid {
        file: String,
        line: usize,
        col: usize,
        id: String,
        message: String,
    },
    #[error("{file}:{line}:{col}: duplicate policy id {id:?} (first in {first})")]
    Duplicate {
        file: String,
        line: usize,
        col: usize,
        id: String,
        first: String,
    },
    #[error("schemas/mcp.cedarschema: {0}")]
    Schema(String),
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// The compiled schema, parsed once per process.
pub fn schema() -> Result<&'static Schema, PolicyError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Schema::from_cedarschema_str(SCHEMA_TEXT)
                .map(|(schema, _warnings)| schema)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PolicyError::Schema(e.clone()))
}

/// A compiled policy set and where each policy came from.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub set: PolicySet,
    /// policy id → file it was read from
    pub files: HashMap<String, String>,
    /// The files (or embedded names) read, in order.
    pub sources: Vec<String>,
    /// The set sliced by scope, so a decision evaluates only the policies
    /// whose action (and exact resource, when a policy names one) can match.
    pub index: HashMap<String, Slices>,
}

/// The policies that can apply to one action.
#[derive(Debug, Clone, Default)]
pub struct Slices {
    /// Policies whose resource scope is not one exact entity.
    pub general: PolicySet,
    /// Exact resource (as Cedar prints its uid) → `general` plus the
    /// policies naming that resource.
    pub by_resource: HashMap<String, PolicySet>,
    /// `named_key(type, name)` → `general` plus the policies that can only
    /// apply to a resource of that type and `name` (see `name_guard`).
    pub by_name: HashMap<String, PolicySet>,
    /// Every policy of the action: for a request that both names an exact
    /// resource and has a named slice.
    pub all: PolicySet,
    /// When `general` holds only `permit`s with no condition on principal,
    /// resource, `when` or `unless` (an allow-all), and no policy names an
    /// exact resource: their ids. Cedar would allow any request with
    /// exactly these reasons, so the decision needs no request built.
    pub unconditional: Option<Vec<String>>,
}

/// The ids of `policies` when every one is a permit that holds for any
/// request of its action; `None` otherwise (and for an empty set).
fn unconditional_permits(policies: &[cedar_policy::Policy]) -> Option<Vec<String>> {
    use cedar_policy::{Effect, PrincipalConstraint, ResourceConstraint};
    let always = |p: &cedar_policy::Policy| {
        p.effect() == Effect::Permit
            && !p.has_non_scope_constraint()
            && matches!(p.principal_constraint(), PrincipalConstraint::Any)
            && matches!(p.resource_constraint(), ResourceConstraint::Any)
    };
    (!policies.is_empty() && policies.iter().all(always))
        .then(|| policies.iter().map(|p| p.id().to_string()).collect())
}

/// The `by_name` key of a resource of entity type `kind` (as Cedar prints
/// it, e.g. `Mcp::Tool`) whose `name` attribute is `name`.
pub fn named_key(kind: &str, name: &str) -> String {
    format!("{kind}\u{0}{name}")
}

/// The `named_key` a policy can only apply to, when it has one: its
/// resource scope is `is T` (every `T` of the schema has a `name`), and
/// its first condition is a `when` whose first conjunct is
/// `resource.name == "literal"`. Cedar evaluates that conjunct first and
/// stops when it is false, without an error (the scope guarantees the
/// attribute), so for any other name the policy neither applies nor
/// errors, and need not be evaluated.
fn name_guard(policy: &cedar_policy::Policy) -> Option<String> {
    use serde_json::Value;
    let est = policy.to_json().ok()?;
    let resource = est.get("resource")?;
    if resource.get("op")?.as_str()? != "is" {
        return None;
    }
    let kind = resource.get("entity_type")?.as_str()?;
    if !matches!(kind, "Mcp::Tool" | "Mcp::Prompt") {
        return None;
    }
    let first = est.get("conditions")?.as_array()?.first()?;
    if first.get("kind")?.as_str()? != "when" {
        return None;
    }
    // `a && b && c` is `(a && b) && c`: the first conjunct is leftmost.
    let mut node = first.get("body")?;
    while let Some(and) = node.get("&&") {
        node = and.get("left")?;
    }
    let eq = node.get("==")?;
    let is_name = |v: &Value| {
        v.get(".").is_some_and(|dot| {
            dot.get("attr").and_then(Value::as_str) == Some("name")
                && dot
                    .get("left")
                    .and_then(|l| l.get("Var"))
                    .and_then(Value::as_str)
                    == Some("resource")
        })
    };
    let literal = |v: &Value| v.get("Value").and_then(Value::as_str).map(str::to_owned);
    let (left, right) = (eq.get("left")?, eq.get("right")?);
    let name = if is_name(left) {
        literal(right)?
    } else if is_name(right) {
        literal(left)?
    } else {
        return None;
    };
    Some(named_key(kind, &name))
}

/// Every action of the schema, as Cedar prints its uid.
pub const ACTIONS: &[&str] = &[
    "connect",
    "tools/list",
    "tools/call",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "subscriptions/listen",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "tasks",
    "other",
];

pub fn action_key(action: &str) -> String {
    format!("Mcp::Action::{action:?}")
}

impl Compiled {
    /// The policies that can decide `action` on `resource` (both as Cedar
    /// prints their uids); the whole set when the action is not indexed.
    /// The ids that allow any request of `action` without evaluating it
    /// (see `Slices::unconditional`).
    pub fn unconditional(&self, action: &str) -> Option<&[String]> {
        self.index.get(action)?.unconditional.as_deref()
    }

    /// The policies that can decide `action` on `resource` (its uid as
    /// Cedar prints it, and its `named_key` when it has a name).
    pub fn slice(&self, action: &str, resource: &str, named: Option<&str>) -> &PolicySet {
        let Some(s) = self.index.get(action) else {
            return &self.set;
        };
        let exact = s.by_resource.get(resource);
        let by_name = named.and_then(|key| s.by_name.get(key));
        match (exact, by_name) {
            (None, None) => &s.general,
            (Some(set), None) | (None, Some(set)) => set,
            (Some(_), Some(_)) => &s.all,
        }
    }

    fn build_index(&mut self) {
        use cedar_policy::{ActionConstraint, ResourceConstraint};
        let mut general: HashMap<String, Vec<cedar_policy::Policy>> = HashMap::new();
        let mut exact: HashMap<String, HashMap<String, Vec<cedar_policy::Policy>>> = HashMap::new();
        let mut named: HashMap<String, HashMap<String, Vec<cedar_policy::Policy>>> = HashMap::new();
        for policy in self.set.policies() {
            let actions: Vec<String> = match policy.action_constraint() {
                ActionConstraint::Any => ACTIONS.iter().map(|a| action_key(a)).collect(),
                ActionConstraint::Eq(uid) => vec![uid.to_string()],
                ActionConstraint::In(uids) => uids.iter().map(ToString::to_string).collect(),
            };
            let resource = match policy.resource_constraint() {
                ResourceConstraint::Eq(uid) => Some(uid.to_string()),
                _ => None,
            };
            let name = resource.is_none().then(|| name_guard(policy)).flatten();
            for action in actions {
                let slot = match (&resource, &name) {
                    (Some(r), _) => exact
                        .entry(action)
                        .or_default()
                        .entry(r.clone())
                        .or_default(),
                    (None, Some(key)) => named
                        .entry(action)
                        .or_default()
                        .entry(key.clone())
                        .or_default(),
                    (None, None) => general.entry(action).or_default(),
                };
                slot.push(policy.clone());
            }
        }
        let mut index = HashMap::new();
        for action in ACTIONS.iter().map(|a| action_key(a)) {
            let base = general.remove(&action).unwrap_or_default();
            let exact = exact.remove(&action).unwrap_or_default();
            let named = named.remove(&action).unwrap_or_default();
            let general = PolicySet::from_policies(base.clone()).unwrap_or_default();
            let everything = base
                .iter()
                .chain(exact.values().flatten())
                .chain(named.values().flatten())
                .cloned();
            let mut slices = Slices {
                // Only when the set built: a failed one is empty and denies.
                unconditional: (exact.is_empty()
                    && named.is_empty()
                    && general.policies().count() == base.len())
                .then(|| unconditional_permits(&base))
                .flatten(),
                all: PolicySet::from_policies(everything).unwrap_or_default(),
                general,
                by_resource: HashMap::new(),
                by_name: HashMap::new(),
            };
            // A set that does not build would lose policies: the action
            // then decides on `all` (or on nothing, and denies).
            let mut broken = false;
            for (resource, extra) in exact {
                match PolicySet::from_policies(base.iter().cloned().chain(extra)) {
                    Ok(set) => {
                        slices.by_resource.insert(resource, set);
                    }
                    Err(_) => broken = true,
                }
            }
            for (key, extra) in named {
                match PolicySet::from_policies(base.iter().cloned().chain(extra)) {
                    Ok(set) => {
                        slices.by_name.insert(key, set);
                    }
                    Err(_) => broken = true,
                }
            }
            if broken {
                slices.general = slices.all.clone();
                slices.by_resource.clear();
                slices.by_name.clear();
            }
            index.insert(action, slices);
        }
        self.index = index;
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Expands the patterns (relative to `base_dir`) to files, in order, and
/// the patterns that could not be expanded.
pub fn expand(patterns: &[String], base_dir: &Path) -> (Vec<PathBuf>, Vec<PolicyError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for pattern in patterns {
        let full = base_dir.join(pattern);
        let name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains('*') {
            files.push(full);
            continue;
        }
        let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut matched: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(e) => {
                errors.push(PolicyError::List {
                    pattern: full.display().to_string(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if matched.is_empty() {
            errors.push(PolicyError::NoMatch {
                pattern: full.display().to_string(),
            });
        }
        matched.sort();
        files.extend(matched);
    }
    (files, errors)
}

/// `*` matches any run of characters; everything else literally.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = rest.get(i + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Reads, parses and validates the files plus the embedded `(name, text)`
/// sources into one set.
pub fn compile(files: &[PathBuf], embedded: &[(String, String)]) -> Result<Compiled, PolicyErrors> {
    let mut sources: Vec<(String, String)> = embedded.to_vec();
    let mut errors = Vec::new();
    for file in files {
        let name = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => sources.push((name, text)),
            Err(e) => errors.push(PolicyError::Read {
                file: name,
                reason: e.to_string(),
            }),
        }
    }
    let schema = match schema() {
        Ok(s) => s,
        Err(e) => return Err(PolicyErrors(vec![e])),
    };
    let mut compiled = Compiled::default();
    // policy id → (file, text) for placing validation errors.
    let mut texts: HashMap<String, usize> = HashMap::new();
    for (index, (name, text)) in sources.iter().enumerate() {
        compiled.sources.push(name.clone());
        let parsed = match PolicySet::from_str(text) {
            Ok(set) => set,
            Err(e) => {
                errors.extend(diagnostics(&e, text, |line, col, message| {
                    PolicyError::Syntax {
                        file: name.clone(),
                        line,
                        col,
                        message,
                    }
                }));
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            errors.push(PolicyError::Syntax {
                file: name.clone(),
                line: 1,
                col: 1,
                message: "policy templates (?principal, ?resource) are not supported".into(),
            });
        }
        let stem = Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.clone());
        for (n, policy) in parsed.policies().enumerate() {
            let id = policy
                .annotation("id")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{stem}#{n}"));
            if let Some(first) = compiled.files.get(&id) {
                errors.push(PolicyError::Duplicate {
                    file: name.clone(),
                    line: 1,
                    col: 1,
                    id,
                    first: first.clone(),
                });
                continue;
            }
            let renamed = policy.new_id(PolicyId::new(id.clone()));
            if let Err(e) = compiled.set.add(renamed) {
                errors.push(PolicyError::Syntax {
                    file: name.clone(),
                    line: 1,
                    col: 1,
                    message: e.to_string(),
                });
                continue;
            }
            compiled.files.insert(id.clone(), name.clone());
            texts.insert(id, index);
        }
    }
    let validation = Validator::new(schema.clone()).validate(&compiled.set, ValidationMode::Strict);
    for error in validation.validation_errors() {
        let id = error.policy_id().to_string();
        let (file, text) = texts
            .get(&id)
            .and_then(|i| sources.get(*i))
            .map(|(f, t)| (f.as_str(), t.as_str()))
            .unwrap_or(("<policies>", ""));
        errors.extend(diagnostics(error, text, |line, col, message| {
            PolicyError::Invalid {
                file: file.to_owned(),
                line,
                col,
                id: id.clone(),
                message,
            }
        }));
    }
    if errors.is_empty() {
        compiled.build_index();
        Ok(compiled)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// One error per diagnostic (and per related one), placed at its first
/// label; the message is lowercase-first and without a final period.
fn diagnostics(
    diagnostic: &dyn Diagnostic,
    text: &str,
    make: impl Fn(usize, usize, String) -> PolicyError,
) -> Vec<PolicyError> {
    let mut out = Vec::new();
    let mut push = |d: &dyn Diagnostic| {
        let offset = d
            .labels()
            .and_then(|mut l| l.next())
            .map(|l| l.offset())
            .unwrap_or(0);
        let (line, col) = line_col(text, offset);
        let mut message = d.to_string();
        if let Some(help) = d.help() {
            message = format!("{message} ({help})");
        }
        out.push(make(line, col, tidy(&message)));
    };
    push(diagnostic);
    if let Some(related) = diagnostic.related() {
        for d in related {
            push(d);
        }
    }
    out.dedup();
    out
}

fn tidy(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}
