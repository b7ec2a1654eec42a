//! Which backends a session gets: the principal's tenant (`[[tenants]]`)
//! and the first matching `[[routes]]` entry narrow the path's route. A
//! backend of another tenant is not there at all (404 on its
//! `/servers/{backend}` path), so its existence does not leak.

use super::load::wildcard;
use super::{PolicyEngine, Snapshot};
use crate::auth::Principal;
use crate::config::RouteConfig;
use crate::router::Route;

/// What a route selector can see of the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub origin: Option<&'a str>,
    /// `/mcp`, `/servers/{backend}/mcp`, `/sse`, `/ws`, …
    pub path: &'a str,
}

impl PolicyEngine {
    /// The route this principal gets on this path; `None` when the path
    /// names a backend the principal may not reach (answer 404).
    pub fn scope_route(
        &self,
        principal: &Principal,
        route: Route,
        request: RequestFacts<'_>,
    ) -> Option<Route> {
        scope_route(&self.snapshot(), principal, route, request)
    }
}

pub fn scope_route(
    snapshot: &Snapshot,
    principal: &Principal,
    mut route: Route,
    request: RequestFacts<'_>,
) -> Option<Route> {
    // `key` is empty on the multiplexed route, the backend's name on
    // `/servers/{backend}`.
    let one_backend = !route.key.is_empty();
    if snapshot.tenants_on {
        let allowed: &[String] = principal
            .tenant
            .as_ref()
            .and_then(|t| snapshot.tenants.get(t))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        route
            .backends
            .retain(|b| allowed.iter().any(|a| a == b.name()));
    }
    if let Some(selected) = snapshot
        .routes
        .iter()
        .find(|r| matches(r, principal, request))
    {
        if let Some(backends) = &selected.backends {
            route
                .backends
                .retain(|b| backends.iter().any(|a| a.as_str() == b.name()));
        }
        route.selected_by = Some(selected.name.clone());
    }
    if one_backend && route.backends.is_empty() {
        return None;
    }
    route.origin = request.origin.map(str::to_owned);
    Some(route)
}

fn matches(route: &RouteConfig, principal: &Principal, request: RequestFacts<'_>) -> bool {
    let claims = route
        .claims
        .iter()
        .all(|(claim, want)| match claim.as_str() {
            "sub" => principal.sub == *want,
            "tenant" => principal.tenant.as_deref() == Some(want.as_str()),
            "client_id" => principal.client_id.as_deref() == Some(want.as_str()),
            "agent_type" => principal.agent_type.as_deref() == Some(want.as_str()),
            "auth" => principal.auth == want.as_str(),
            "scope" => principal.has_scope(want),
            _ => false,
        });
    let client = route
        .client_id
        .as_ref()
        .is_none_or(|c| principal.client_id.as_deref() == Some(c.as_str()));
    let origin = route
        .origin
        .as_ref()
        .is_none_or(|o| request.origin.is_some_and(|have| wildcard(o, have)));
    let path = route
        .path
        .as_ref()
        .is_none_or(|p| wildcard(p, request.path));
    claims && client && origin && path
}
