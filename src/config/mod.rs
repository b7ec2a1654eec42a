//! Configuration: TOML text → validated [`Config`].
//!
//! Loading is a function of the text and an environment lookup
//! ([`load_str`]); [`load_file`] and [`quickstart`] are thin wrappers. It
//! runs in three steps so that every problem of a file is reported at once,
//! each as `file:line:col: key.path: what is wrong`:
//!
//! 1. parse into a spanned document (a syntax error stops here, reported
//!    once);
//! 2. walk the document against the JSON Schema generated from the raw
//!    serde types (`raw.rs`, the single source of truth for key names,
//!    types, defaults and bounds), collecting unknown keys, wrong types,
//!    bad enum values, out-of-range integers and missing required keys, and
//!    removing the offending entries (`check.rs`);
//! 3. deserialize what is left into `RawConfig` and convert it to `Config`,
//!    collecting the semantic problems: addresses, backend names and
//!    duplicates, transport-specific keys, URLs, header names, environment
//!    variables (`convert.rs`).
//!
//! Key paths use `.` between keys and 0-based `[i]` for array items
//! (`backends[0].name`); keys that are not bare TOML keys are quoted.

pub mod model;
pub use model::*;

mod auth;
mod authz;
mod check;
mod convert;
mod convert_observe;
mod raw;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// The source name of the embedded quickstart configuration.
pub const QUICKSTART_SOURCE: &str = "<quickstart>";

const QUICKSTART_TOML: &str = include_str!("quickstart.toml");
const QUICKSTART_EXE_PLACEHOLDER: &str = "@SELF_EXE@";

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or source name) the problem is in.
    pub file: String,
    /// 1-based line; 0 when the problem has no position (the file could
    /// not be read).
    pub line: usize,
    /// 1-based column, in characters; 0 when `line` is 0.
    pub col: usize,
    /// Where in the document: `backends[2].name`; empty for syntax errors
    /// and unreadable files.
    pub key_path: String,
    /// What is wrong, lowercase, without a final period.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.col)?;
        }
        if !self.key_path.is_empty() {
            write!(f, " {}:", self.key_path)?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, sorted by position; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads and validates a configuration from TOML `text`. `source_name`
/// names the text in messages and becomes `Config::source`; `env` looks up
/// environment variables (for `*_env` keys and `${VAR}` in headers).
///
/// # Errors
///
/// Every problem found in the text, sorted by position.
pub fn load_str(
    text: &str,
    source_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let locate = Locator::new(text, source_name);
    let document = match toml::de::DeTable::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim().trim_end_matches('.').to_owned();
            return Err(ConfigErrors(vec![locate.error(
                span,
                String::new(),
                message,
            )]));
        }
    };

    let (document, problems, positions) = check::check(schema(), document);
    let reported = problems.iter().map(|p| p.path.clone()).collect();
    let mut errors: Vec<ConfigError> = problems
        .into_iter()
        .map(|p| locate.error(p.span, p.path, p.message))
        .collect();

    let deserializer = toml::de::Deserializer::from(document);
    let raw = match raw::RawConfig::deserialize(deserializer) {
        Ok(raw) => Some(raw),
        Err(error) => {
            // Not expected: the checker removes whatever would not
            // deserialize. Report it rather than losing it.
            if errors.is_empty() {
                let span = error.span().unwrap_or(0..0);
                let message = error.message().trim().trim_end_matches('.').to_owned();
                errors.push(locate.error(span, String::new(), message));
            }
            None
        }
    };

    let config = raw.map(|raw| {
        let mut converter = convert::Converter {
            env,
            reported,
            problems: Vec::new(),
        };
        let config = converter.config(raw, source_name);
        for (path, message) in converter.problems {
            errors.push(locate.error(positions.span(&path), path, message));
        }
        config
    });

    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            errors.sort_by_key(|e| (e.line, e.col));
            errors.dedup();
            Err(ConfigErrors(errors))
        }
    }
}

/// Reads and loads the file at `path`, with the process environment.
///
/// # Errors
///
/// The file cannot be read, or the problems [`load_str`] reports.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &name, &|var| std::env::var(var).ok()),
        Err(error) => Err(ConfigErrors(vec![ConfigError {
            file: name,
            line: 0,
            col: 0,
            key_path: String::new(),
            message: format!("cannot read the configuration: {error}"),
        }])),
    }
}

/// The embedded quickstart: listeners on 127.0.0.1:8080 and :9090, no
/// authentication, and the built-in demo server (`self_exe demo-server`)
/// as the one backend. For local use only. Loaded through [`load_str`]
/// like any file. An empty `self_exe` stands for `mcp-gateway`.
///
/// # Panics
///
/// Never: the embedded text is valid for every executable path (tested).
#[must_use]
pub fn quickstart(self_exe: &str) -> Config {
    let exe = if self_exe.is_empty() {
        "mcp-gateway"
    } else {
        self_exe
    };
    let exe = toml::Value::String(exe.to_owned()).to_string();
    let text = QUICKSTART_TOML.replace(QUICKSTART_EXE_PLACEHOLDER, &exe);
    #[allow(clippy::expect_used)]
    let mut config = load_str(&text, QUICKSTART_SOURCE, &|_| None)
        .expect("the embedded quickstart is valid for any executable path (tested)");
    config.policy.configured = true;
    config.policy.embedded = vec![(
        "<quickstart>/allow-all.cedar".to_owned(),
        QUICKSTART_POLICY.to_owned(),
    )];
    config
}

/// The quickstart's explicit allow-all policy.
const QUICKSTART_POLICY: &str = include_str!("../../examples/policies/allow-all.cedar");

/// What `mcp-gateway check` prints: listeners, backends, tenants, policies.
#[must_use]
pub fn summary(cfg: &Config) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    let listen = &cfg.listen;
    let _ = writeln!(out, "config: {}", cfg.source);
    let origins = if listen.allowed_origins.is_empty() {
        "loopback only".to_owned()
    } else {
        format!("loopback, {}", listen.allowed_origins.join(", "))
    };
    let _ = writeln!(out, "listen: {} (origins: {origins})", listen.addr);
    let admin = if cfg.admin.token.is_some() {
        "bearer token required"
    } else {
        "no token"
    };
    let _ = writeln!(out, "admin: {} ({admin})", listen.admin_addr);
    let auth = match (cfg.auth.mode, cfg.auth.api_keys.len()) {
        (AuthMode::None, 0) => "none (every client is anonymous)".to_owned(),
        (AuthMode::None, n) => format!("api keys only ({n})"),
        (AuthMode::Jwt, n) => format!(
            "jwt (issuer {}, {} api keys)",
            cfg.auth.issuer.as_deref().unwrap_or("-"),
            n
        ),
        (AuthMode::Introspection, n) => format!("introspection ({n} api keys)"),
    };
    let _ = writeln!(out, "auth: {auth}");
    let _ = writeln!(out, "backends: {}", cfg.backends.len());
    for backend in &cfg.backends {
        let protocol = match &backend.protocol {
            ProtocolPreference::Auto => "auto",
            ProtocolPreference::Fixed(revision) => revision.as_str(),
        };
        let timeout = backend.timeout.as_secs();
        let _ = match &backend.transport {
            BackendTransport::Stdio {
                command, isolation, ..
            } => {
                let isolation = match isolation {
                    Isolation::Session => "session",
                    Isolation::Principal => "principal",
                    Isolation::Shared => "shared",
                };
                let command = shell_words(command);
                writeln!(
                    out,
                    "  {}: stdio `{command}`, isolation {isolation}, \
                     protocol {protocol}, timeout {timeout}s",
                    backend.name,
                )
            }
            BackendTransport::StreamableHttp { url, .. } => writeln!(
                out,
                "  {}: streamable_http {url}, protocol {protocol}, timeout {timeout}s",
                backend.name,
            ),
            BackendTransport::Sse { url, .. } => writeln!(
                out,
                "  {}: sse {url}, protocol {protocol}, timeout {timeout}s",
                backend.name,
            ),
            BackendTransport::WebSocket { url, ping, .. } => writeln!(
                out,
                "  {}: websocket {url}, ping {}s, protocol {protocol}, timeout {timeout}s",
                backend.name,
                ping.as_secs(),
            ),
        };
    }
    let _ = writeln!(out, "tenants: {}", cfg.tenants.len());
    for tenant in &cfg.tenants {
        let backends: Vec<&str> = tenant.backends.iter().map(BackendName::as_str).collect();
        let _ = writeln!(out, "  {}: {}", tenant.name, backends.join(", "));
    }
    let _ = writeln!(out, "routes: {}", cfg.routes.len());
    out
}

/// A command line for display: arguments that need it are quoted.
fn shell_words(command: &[String]) -> String {
    command
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("{arg:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The JSON Schema of the configuration file, generated from the raw serde
/// types; `schemas/config.schema.json` holds a copy (kept current by a
/// test). TOML has no null, so optional keys are not nullable here.
#[must_use]
pub fn json_schema() -> Value {
    schema().clone()
}

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = serde_json::to_value(schemars::schema_for!(raw::RawConfig))
            .unwrap_or(Value::Bool(true));
        strip_null(&mut schema);
        sort_keys(&mut schema);
        schema
    })
}

/// Removes `null` from `type` lists and `{"type": "null"}` from `anyOf`
/// (what schemars emits for `Option`), since TOML has no null.
fn strip_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alternatives)) = map.get("anyOf") {
                let rest: Vec<&Value> = alternatives
                    .iter()
                    .filter(|a| a.get("type").is_none_or(|t| t != "null"))
                    .collect();
                if let [Value::Object(only)] = rest.as_slice() {
                    let only = only.clone();
                    map.remove("anyOf");
                    map.extend(only);
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// Sorts object keys, so the schema text does not depend on whether
/// serde_json preserves insertion order.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut value) in entries {
                sort_keys(&mut value);
                map.insert(key, value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// Turns byte offsets into 1-based line and column (in characters).
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str, file: &'a str) -> Self {
        Self { text, file }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, col)
    }

    fn error(&self, span: Range<usize>, key_path: String, message: String) -> ConfigError {
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_owned(),
            line,
            col,
            key_path,
            message,
        }
    }
}
