//! policy: `(Principal, Call, Context)` → `Decision`, with Cedar. Never does
//! I/O on the request path: policies are compiled and validated against
//! `schemas/mcp.cedarschema` once per load (`load`), entities are built per
//! message from the principal and the already-resolved target (`entities`).
//!
//! Fail closed: no policy, a request that cannot be built, or any policy
//! that errors while evaluating → deny, with the reason logged.
//!
//! The live set (policies, tenants, routes) sits behind an `ArcSwap`:
//! `reload` swaps it whole after validating the new one, and every message
//! reads the set in force when it is decided.

pub mod bench;
pub mod cases;
mod entities;
pub mod load;
pub mod reload;
pub mod routes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::Authorizer;

use crate::auth::Principal;
use crate::config::{Config, RouteConfig};
use crate::mcp::{Call, Envelope, JsonRpcId};

pub use load::{Compiled, PolicyError, PolicyErrors};

/// What the policy stage saw besides principal and call: where the message
/// came from and what its target resolved to.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub transport: &'static str,
    pub origin: Option<String>,
    pub remote_addr: Option<String>,
    pub protocol_version: Option<String>,
    pub client_name: Option<String>,
    /// The backend the target resolved to.
    pub backend: Option<String>,
    /// The backend's own name of the tool or prompt (no prefix).
    pub name: Option<String>,
    /// The tool's annotations, from the gateway's tool catalog.
    pub tool: Option<ToolFacts>,
    /// Top-level tool arguments; only with `policy.expose_arguments`.
    pub arguments: Option<serde_json::Map<String, serde_json::Value>>,
    /// The `[[routes]]` entry that selected the session, if any.
    pub route: Option<String>,
}

/// A tool's annotations as policy sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolFacts {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Default for ToolFacts {
    /// The spec's defaults for a tool without annotations.
    fn default() -> Self {
        ToolFacts {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        }
    }
}

impl ToolFacts {
    /// From a `tools/list` item's `annotations`.
    pub fn from_tool(tool: &serde_json::Value) -> ToolFacts {
        let d = ToolFacts::default();
        let a = tool.get("annotations");
        let flag = |key: &str, default: bool| {
            a.and_then(|a| a.get(key))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(default)
        };
        // destructiveHint and idempotentHint only mean something when the
        // tool is not read-only (MCP tool annotations); a read-only tool
        // destroys nothing and repeats harmlessly.
        let read_only = flag("readOnlyHint", d.read_only);
        ToolFacts {
            read_only,
            destructive: !read_only && flag("destructiveHint", d.destructive),
            idempotent: read_only || flag("idempotentHint", d.idempotent),
            open_world: flag("openWorldHint", d.open_world),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// Ids of the policies that decided.
    pub policies: Vec<String>,
    pub reason: String,
}

impl Decision {
    fn deny(policies: Vec<String>, reason: String) -> Decision {
        Decision {
            allow: false,
            policies,
            reason,
        }
    }

    /// The -32003 error a denied request gets (CONTRACT.md "Errors").
    pub fn forbidden(&self, id: Option<JsonRpcId>) -> Envelope {
        Envelope::error(
            id,
            crate::mcp::code::FORBIDDEN,
            "forbidden by policy",
            Some(serde_json::json!({"policies": self.policies, "reason": self.reason})),
        )
    }
}

/// One loaded generation: the policies, tenants and routes in force.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `[policy] files` (and embedded sources).
    pub default: Compiled,
    /// Whether a `[policy]` section exists; without one everything is denied.
    pub configured: bool,
    /// `[[routes]]` entry name → its own set (`policy_files`).
    pub route_sets: std::collections::BTreeMap<String, Compiled>,
    pub routes: Vec<RouteConfig>,
    /// Whether `[[tenants]]` are configured (then a principal reaches only
    /// its tenant's backends).
    pub tenants_on: bool,
    /// tenant → its backends
    pub tenants: HashMap<String, Vec<String>>,
    /// backend → the tenants listing it (the backend entity's parents)
    pub backend_tenants: HashMap<String, Vec<String>>,
    pub expose_arguments: bool,
    /// Counts loads: decisions cached under one generation are not used
    /// under another (0: never loaded, nothing cached).
    pub generation: u64,
    /// Whether a decision depends only on what is fixed for a session and
    /// a target: no policy reads `context.time`, `context.hour_utc` or the
    /// arguments (and arguments are not exposed).
    pub decisions_cacheable: bool,
}

/// Generations handed out by `Snapshot::load`.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whether any policy of `compiled` reads an attribute that changes from
/// one message of a session to the next (conservatively: any attribute
/// access or `has` test by that name).
fn reads_volatile(compiled: &Compiled) -> bool {
    compiled.set.policies().any(|p| {
        p.to_json().map_or(true, |est| {
            let text = est.to_string();
            ["time", "hour_utc", "arguments"]
                .iter()
                .any(|attr| text.contains(&format!("\"attr\":\"{attr}\"")))
        })
    })
}

impl Snapshot {
    /// Compiles everything the config names; every problem at once.
    pub fn load(config: &Config) -> Result<Snapshot, PolicyErrors> {
        let policy = &config.policy;
        let mut errors = Vec::new();
        let default = compile_files(&policy.files, &policy.base_dir, &policy.embedded)
            .map_err(|e| errors.extend(e.0))
            .unwrap_or_default();
        let mut route_sets = std::collections::BTreeMap::new();
        for route in &config.routes {
            if let Some(files) = &route.policy_files {
                match compile_files(files, &policy.base_dir, &[]) {
                    Ok(c) => {
                        route_sets.insert(route.name.clone(), c);
                    }
                    Err(e) => errors.extend(e.0),
                }
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        let mut tenants = HashMap::new();
        let mut backend_tenants: HashMap<String, Vec<String>> = HashMap::new();
        for t in &config.tenants {
            let names: Vec<String> = t.backends.iter().map(|b| b.as_str().to_owned()).collect();
            for b in &names {
                backend_tenants
                    .entry(b.clone())
                    .or_default()
                    .push(t.name.clone());
            }
            tenants.insert(t.name.clone(), names);
        }
        let decisions_cacheable = !policy.expose_arguments
            && !reads_volatile(&default)
            && !route_sets.values().any(reads_volatile);
        Ok(Snapshot {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            decisions_cacheable,
            default,
            configured: policy.configured,
            route_sets,
            routes: config.routes.clone(),
            tenants_on: !config.tenants.is_empty(),
            tenants,
            backend_tenants,
            expose_arguments: policy.expose_arguments,
        })
    }

    /// The set deciding for sessions of `route` (a `[[routes]]` entry with
    /// its own `policy_files`), else the default set.
    pub fn set_for(&self, route: Option<&str>) -> &Compiled {
        route
            .and_then(|r| self.route_sets.get(r))
            .unwrap_or(&self.default)
    }

    /// Whether the set for `route` permits every request of `action`
    /// without a condition (nothing about the request is read).
    pub fn permits_any(&self, action: &str, route: Option<&str>) -> bool {
        self.configured
            && self
                .set_for(route)
                .unconditional(&load::action_key(action))
                .is_some()
    }

    /// How many policies are loaded, over every set.
    pub fn policy_count(&self) -> usize {
        self.default.len() + self.route_sets.values().map(Compiled::len).sum::<usize>()
    }

    /// For `check` and logs.
    pub fn summary(&self) -> String {
        if !self.configured {
            return "policies: 0 (no [policy] section: every request is denied)".into();
        }
        let mut out = format!(
            "policies: {} ({} files{})",
            self.policy_count(),
            self.default.sources.len(),
            if self.default.is_empty() {
                "; no policy: every request is denied"
            } else {
                ""
            }
        );
        for (name, set) in &self.route_sets {
            out.push_str(&format!("\n  route {name}: {} policies", set.len()));
        }
        out
    }
}

fn compile_files(
    patterns: &[String],
    base_dir: &Path,
    embedded: &[(String, String)],
) -> Result<Compiled, PolicyErrors> {
    // Every problem at once: the files that were found are compiled even
    // when a pattern matched nothing.
    let (files, mut errors): (Vec<PathBuf>, _) = load::expand(patterns, base_dir);
    match load::compile(&files, embedded) {
        Ok(compiled) if errors.is_empty() => Ok(compiled),
        Ok(_) => Err(PolicyErrors(errors)),
        Err(e) => {
            errors.extend(e.0);
            Err(PolicyErrors(errors))
        }
    }
}

/// The engine every session asks: the live snapshot and how to reload it.
pub struct PolicyEngine {
    live: ArcSwap<Snapshot>,
    authorizer: Authorizer,
}

impl PolicyEngine {
    /// The allow-all engine of tests and tools that load no config.
    pub fn allow_all() -> Arc<PolicyEngine> {
        let embedded = [(
            "allow-all.cedar".to_owned(),
            "@id(\"allow-all\")\npermit(principal, action, resource);\n".to_owned(),
        )];
        let default = load::compile(&[], &embedded).unwrap_or_default();
        PolicyEngine::new(Snapshot {
            default,
            configured: true,
            ..Snapshot::default()
        })
    }

    pub fn new(snapshot: Snapshot) -> Arc<PolicyEngine> {
        Arc::new(PolicyEngine {
            live: ArcSwap::from_pointee(snapshot),
            authorizer: Authorizer::new(),
        })
    }

    /// Compiles `config`'s policies into a new engine.
    pub fn from_config(config: &Config) -> Result<Arc<PolicyEngine>, PolicyErrors> {
        Snapshot::load(config).map(PolicyEngine::new)
    }

    /// The set in force.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.live.load()
    }

    /// Swaps in an already validated snapshot; messages decided from now
    /// on use it.
    pub fn replace(&self, snapshot: Snapshot) {
        self.live.store(Arc::new(snapshot));
    }

    pub fn decide(&self, principal: &Principal, call: &Call, ctx: &Context) -> Decision {
        let snapshot = self.live.load();
        decide_with(&self.authorizer, &snapshot, principal, call, ctx)
    }
}

/// Decides one request against one snapshot.
pub fn decide_with(
    authorizer: &Authorizer,
    snapshot: &Snapshot,
    principal: &Principal,
    call: &Call,
    ctx: &Context,
) -> Decision {
    let set = snapshot.set_for(ctx.route.as_deref());
    if !snapshot.configured || set.is_empty() {
        return Decision::deny(
            Vec::new(),
            "no policy is loaded: every request is denied".into(),
        );
    }
    let action = load::action_key(call.method.action());
    if let Some(ids) = set.unconditional(&action) {
        return Decision {
            allow: true,
            reason: format!("permitted by {}", ids.join(", ")),
            policies: ids.to_vec(),
        };
    }
    let request = match entities::build(snapshot, principal, call, ctx) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "policy request could not be built; denied");
            return Decision::deny(
                Vec::new(),
                format!("policy request could not be built: {e}"),
            );
        }
    };
    let named = entities::named_key(call, ctx);
    let policies = set.slice(&action, &request.resource, named.as_deref());
    let response = authorizer.is_authorized(&request.request, policies, &request.entities);
    let diagnostics = response.diagnostics();
    let errors: Vec<(String, String)> = diagnostics
        .errors()
        .map(|e| match e {
            cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                (e.policy_id().to_string(), e.inner().to_string())
            }
        })
        .collect();
    if !errors.is_empty() {
        // Cedar skips a policy that errors; a skipped `forbid` would open
        // the door, so any error denies.
        let ids: Vec<String> = errors.iter().map(|(id, _)| id.clone()).collect();
        let detail = errors
            .iter()
            .map(|(id, e)| format!("policy {id:?} failed to evaluate: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(policies = ?ids, reason = %detail, action = call.method.action(), "policy evaluation error; denied");
        return Decision::deny(ids, detail);
    }
    let ids: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
    match response.decision() {
        cedar_policy::Decision::Allow => Decision {
            allow: true,
            reason: format!("permitted by {}", ids.join(", ")),
            policies: ids,
        },
        cedar_policy::Decision::Deny if ids.is_empty() => Decision::deny(
            ids,
            format!(
                "no policy permits {:?} on {}",
                call.method.action(),
                request.resource
            ),
        ),
        cedar_policy::Decision::Deny => {
            Decision::deny(ids.clone(), format!("forbidden by {}", ids.join(", ")))
        }
    }
}

/// Why a reload was refused; the old set keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the embedded quickstart has nothing to reload")]
    Quickstart,
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Policies(#[from] PolicyErrors),
}

impl ReloadError {
    /// One line per problem (`file:line:col: …`).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ReloadError::Quickstart => vec![self.to_string()],
            ReloadError::Config(e) => e.0.iter().map(ToString::to_string).collect(),
            ReloadError::Policies(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }
}

impl PolicyEngine {
    /// Re-reads the config file `source` and its policies; swaps them in
    /// only when all of it is valid, and returns the summary with the new
    /// config (for the other reloadable parts: limits). Backends and
    /// listeners are not changed by a reload (they need a restart).
    pub fn reload(&self, source: &str) -> Result<(String, crate::config::Config), ReloadError> {
        if source == crate::config::QUICKSTART_SOURCE {
            return Err(ReloadError::Quickstart);
        }
        let config = crate::config::load_file(Path::new(source))?;
        let snapshot = Snapshot::load(&config)?;
        let summary = snapshot.summary();
        self.replace(snapshot);
        Ok((summary, config))
    }
}
#[cfg(test)]
mod tests;
