//! `mcp-gateway policy test`: a table of (principal, method, target,
//! context, expected decision) cases decided against a config's policies,
//! exactly as the gateway would decide them, without any backend.
//!
//! ```toml
//! [principals.alice]
//! sub = "alice"
//! tenant = "acme"
//! scopes = ["tools:call"]
//!
//! [[cases]]
//! name = "alice calls echo"
//! principal = "alice"              # a name from [principals], or an inline table
//! method = "tools/call"
//! target = { backend = "demo", tool = "echo", annotations = { readOnlyHint = true } }
//! expect = "allow"                 # or "deny"
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Context, Decision, PolicyEngine, Snapshot, ToolFacts};
use crate::auth::{Credential, Principal};
use crate::mcp::{Call, Method, Target};

#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("{file}: cannot read the cases: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}:{col}: {message}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{file}: case {case} ({name:?}): {message}")]
    Case {
        file: String,
        case: usize,
        name: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    principals: BTreeMap<String, RawPrincipal>,
    #[serde(default)]
    cases: Vec<RawCase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    sub: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    agent_type: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    actors: Vec<String>,
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PrincipalRef {
    Named(String),
    Inline(RawPrincipal),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    /// A tool's MCP annotations (`readOnlyHint`, …).
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    remote_addr: Option<String>,
    #[serde(default)]
    protocol_version: Option<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    name: Option<String>,
    principal: PrincipalRef,
    method: String,
    #[serde(default)]
    target: RawTarget,
    #[serde(default)]
    context: RawContext,
    /// Decide with this `[[routes]]` entry's policies.
    #[serde(default)]
    route: Option<String>,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
}

/// One decided case.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub expected_allow: bool,
    pub decision: Decision,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.expected_allow == self.decision.allow
    }
}

/// Reads the cases at `path` and decides each against `snapshot`.
pub fn run(snapshot: Snapshot, path: &Path) -> Result<Vec<Outcome>, CasesError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CasesError::Read {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let cases: CasesFile = toml::from_str(&text).map_err(|e| {
        let (line, col) = super::load::line_col(&text, e.span().map_or(0, |s| s.start));
        CasesError::Parse {
            file: file.clone(),
            line,
            col,
            message: e.message().trim().trim_end_matches('.').to_owned(),
        }
    })?;
    let engine = PolicyEngine::new(snapshot);
    let mut outcomes = Vec::with_capacity(cases.cases.len());
    for (i, case) in cases.cases.into_iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("{} #{i}", case.method));
        let fail = |message: String| CasesError::Case {
            file: file.clone(),
            case: i,
            name: name.clone(),
            message,
        };
        let raw = match &case.principal {
            PrincipalRef::Named(n) => cases
                .principals
                .get(n)
                .cloned()
                .ok_or_else(|| fail(format!("unknown principal {n:?}")))?,
            PrincipalRef::Inline(p) => p.clone(),
        };
        let principal = principal(&raw).map_err(&fail)?;
        let (call, ctx) = call_and_context(&case).map_err(&fail)?;
        let decision = engine.decide(&principal, &call, &ctx);
        outcomes.push(Outcome {
            name,
            expected_allow: case.expect == Expect::Allow,
            decision,
        });
    }
    Ok(outcomes)
}

fn principal(raw: &RawPrincipal) -> Result<Principal, String> {
    let auth: &'static str = match raw.auth.as_deref().unwrap_or("jwt") {
        "jwt" => "jwt",
        "introspection" => "introspection",
        "api_key" => "api_key",
        "none" => "none",
        other => return Err(format!("unknown auth {other:?}")),
    };
    let mut p = Principal::new(raw.sub.clone(), auth, Credential::default());
    p.tenant = raw.tenant.clone();
    p.client_id = raw.client_id.clone();
    p.agent_type = raw.agent_type.clone();
    p.scopes = raw.scopes.clone();
    p.actors = raw.actors.clone();
    Ok(p)
}

fn call_and_context(case: &RawCase) -> Result<(Call, Context), String> {
    let method = Method::parse(&case.method);
    let t = &case.target;
    let target = match (&t.tool, &t.prompt, &t.resource) {
        (Some(tool), None, None) => Target::Tool(tool.clone()),
        (None, Some(prompt), None) => Target::Prompt(prompt.clone()),
        (None, None, Some(uri)) => Target::Resource(uri.clone()),
        (None, None, None) => Target::None,
        _ => return Err("target names more than one of tool, prompt, resource".into()),
    };
    let tool = t.tool.as_ref().map(|_| {
        let tool = serde_json::json!({"annotations": t.annotations.clone().unwrap_or_default()});
        ToolFacts::from_tool(&tool)
    });
    let c = &case.context;
    let transport = match c.transport.as_deref().unwrap_or("streamable_http") {
        "streamable_http" => "streamable_http",
        "sse" => "sse",
        "websocket" => "websocket",
        other => return Err(format!("unknown transport {other:?}")),
    };
    let ctx = Context {
        transport,
        origin: c.origin.clone(),
        remote_addr: c.remote_addr.clone(),
        protocol_version: Some(
            c.protocol_version
                .clone()
                .unwrap_or_else(|| crate::mcp::LATEST_HANDSHAKE.to_owned()),
        ),
        client_name: c.client_name.clone(),
        backend: t.backend.clone(),
        name: t.tool.clone().or_else(|| t.prompt.clone()),
        tool,
        arguments: c.arguments.clone(),
        route: case.route.clone(),
    };
    Ok((Call { method, target }, ctx))
}

/// The table `policy test` prints: one line per case, then a total.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let width = outcomes
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<4}  {:<width$}  {:<8}  {:<6}  policies / reason",
        "ok", "case", "expected", "actual"
    );
    let word = |allow: bool| if allow { "allow" } else { "deny" };
    for o in outcomes {
        let why = if o.decision.policies.is_empty() {
            o.decision.reason.clone()
        } else {
            o.decision.policies.join(", ")
        };
        let _ = writeln!(
            out,
            "{:<4}  {:<width$}  {:<8}  {:<6}  {why}",
            if o.passed() { "ok" } else { "FAIL" },
            o.name,
            word(o.expected_allow),
            word(o.decision.allow),
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(
        out,
        "{} of {} cases as expected, {failed} mismatched",
        outcomes.len() - failed,
        outcomes.len()
    );
    out
}
