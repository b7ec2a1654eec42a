//! `[policy]`, `[[tenants]]` and `[[routes]]`: the raw keys and their
//! conversion. Policy files themselves are read and validated by
//! `policy::load` (they have their own positions); here only names and
//! references between sections are checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{join_index, join_key};
use super::convert::Converter;
use super::model::{BackendConfig, BackendName, PolicyConfig, RouteConfig, TenantConfig};

/// `[policy]`: where the Cedar policies are.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Policy")]
pub(crate) struct RawPolicy {
    /// Cedar policy files, relative to this file's directory; `*` in the
    /// last path component matches any run of characters
    /// (`policies/*.cedar`). Validated against `schemas/mcp.cedarschema`.
    /// No policy at all denies every request.
    #[serde(default)]
    pub files: Vec<String>,
    /// Put a tool call's arguments in the policy context
    /// (`context.arguments`, one tag per top-level argument).
    #[serde(default)]
    pub expose_arguments: bool,
}

/// `[[tenants]]`: one tenant and the backends its principals reach.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tenant")]
pub(crate) struct RawTenant {
    /// The tenant, as named by the token's tenant claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub name: Option<String>,
    /// Names of `[[backends]]` this tenant's sessions can reach.
    #[serde(default)]
    pub backends: Vec<String>,
    /// Rate limit shared by every principal of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<super::raw::RawRate>,
}

/// `[[routes]]`: which backends (and which policies) a session gets, chosen
/// by who calls and from where; the first entry that matches wins.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub(crate) struct RawRoute {
    /// A name for logs and `check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Claims that must all have these values: `sub`, `tenant`,
    /// `client_id`, `agent_type`, `auth`, or `scope` (the principal holds
    /// that scope).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// The principal's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The request's `Origin` header; `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The request path (`/mcp`, `/servers/docs/mcp`, `/sse`, `/ws`); `*`
    /// matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Backends of the session (intersected with the tenant's); default:
    /// every backend of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
    /// Cedar files deciding this route's requests instead of
    /// `policy.files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_files: Option<Vec<String>>,
}

const ROUTE_CLAIMS: &[&str] = &["sub", "tenant", "client_id", "agent_type", "auth", "scope"];

impl Converter<'_> {
    pub(super) fn policy(&mut self, raw: Option<RawPolicy>, source: &str) -> PolicyConfig {
        let base_dir = base_dir(source);
        match raw {
            None => PolicyConfig {
                configured: false,
                base_dir,
                ..PolicyConfig::default()
            },
            Some(raw) => PolicyConfig {
                configured: true,
                files: raw.files,
                expose_arguments: raw.expose_arguments,
                base_dir,
                embedded: Vec::new(),
            },
        }
    }

    pub(super) fn tenants(
        &mut self,
        raw: Vec<RawTenant>,
        backends: &[BackendConfig],
    ) -> Vec<TenantConfig> {
        let known: HashSet<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut tenants = Vec::with_capacity(raw.len());
        for (i, tenant) in raw.into_iter().enumerate() {
            let path = join_index("tenants", i);
            let Some(name) = tenant.name else { continue };
            if name.is_empty() {
                self.problem(join_key(&path, "name"), "must not be empty");
            } else if let Some(first) = seen.get(&name) {
                self.problem(
                    join_key(&path, "name"),
                    format!("duplicate tenant {name:?} (first named by tenants[{first}])"),
                );
            } else {
                seen.insert(name.clone(), i);
            }
            let backends =
                self.backend_refs(&join_key(&path, "backends"), &tenant.backends, &known);
            let rate_limit = tenant
                .rate_limit
                .and_then(|r| self.rate(&join_key(&path, "rate_limit"), &r));
            tenants.push(TenantConfig {
                name,
                backends,
                rate_limit,
            });
        }
        tenants
    }

    pub(super) fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        backends: &[BackendConfig],
    ) -> Vec<RouteConfig> {
        let known: HashSet<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let mut routes = Vec::with_capacity(raw.len());
        for (i, route) in raw.into_iter().enumerate() {
            let path = join_index("routes", i);
            for claim in route.claims.keys() {
                if !ROUTE_CLAIMS.contains(&claim.as_str()) {
                    self.problem(
                        join_key(&join_key(&path, "claims"), claim),
                        format!(
                            "unknown claim {claim:?} (expected one of: {})",
                            ROUTE_CLAIMS.join(", ")
                        ),
                    );
                }
            }
            let selected = route
                .backends
                .as_ref()
                .map(|names| self.backend_refs(&join_key(&path, "backends"), names, &known));
            if route.policy_files.as_ref().is_some_and(Vec::is_empty) {
                self.problem(
                    join_key(&path, "policy_files"),
                    "must name at least one file (omit it to use policy.files)",
                );
            }
            routes.push(RouteConfig {
                name: route.name.unwrap_or_else(|| format!("routes[{i}]")),
                claims: route.claims,
                client_id: route.client_id,
                origin: route.origin,
                path: route.path,
                backends: selected,
                policy_files: route.policy_files,
            });
        }
        routes
    }

    fn backend_refs(
        &mut self,
        path: &str,
        names: &[String],
        known: &HashSet<&str>,
    ) -> Vec<BackendName> {
        let mut out = Vec::with_capacity(names.len());
        for (j, name) in names.iter().enumerate() {
            if !known.contains(name.as_str()) {
                self.problem(join_index(path, j), format!("unknown backend {name:?}"));
                continue;
            }
            if let Ok(b) = BackendName::new(name) {
                out.push(b);
            }
        }
        out
    }
}

/// The directory relative policy paths start from: the config file's.
fn base_dir(source: &str) -> PathBuf {
    Path::new(source)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
