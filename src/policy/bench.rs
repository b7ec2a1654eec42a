//! `mcp-gateway policy bench`: how long one decision takes with a config's
//! policies, measured in process (entities built, request evaluated), for
//! BENCHMARKS.md and for users sizing their policy sets.

use std::time::Instant;

use super::{Context, PolicyEngine, Snapshot, ToolFacts};
use crate::auth::{Credential, Principal};
use crate::mcp::{Call, Method, Target};

/// Decision times in nanoseconds.
#[derive(Debug)]
pub struct Timing {
    pub policies: usize,
    pub decisions: usize,
    pub allowed: usize,
    pub median_ns: u128,
    pub p99_ns: u128,
}

/// Decides `tools/call` of `backend`'s `tool` for a principal of `tenant`
/// with `scopes`, `iterations` times.
pub fn time_decisions(
    snapshot: Snapshot,
    backend: &str,
    tool: &str,
    tenant: Option<&str>,
    scopes: &[String],
    iterations: usize,
) -> Timing {
    let policies = snapshot.policy_count();
    let engine = PolicyEngine::new(snapshot);
    let mut principal = Principal::new("bench".into(), "jwt", Credential::default());
    principal.tenant = tenant.map(str::to_owned);
    principal.scopes = scopes.to_vec();
    let call = Call {
        method: Method::ToolsCall,
        target: Target::Tool(format!("{backend}__{tool}")),
    };
    let ctx = Context {
        transport: "streamable_http",
        protocol_version: Some(crate::mcp::V2026.to_owned()),
        backend: Some(backend.to_owned()),
        name: Some(tool.to_owned()),
        tool: Some(ToolFacts {
            read_only: true,
            destructive: false,
            idempotent: true,
            open_world: false,
        }),
        ..Context::default()
    };
    let iterations = iterations.max(1);
    let mut times = Vec::with_capacity(iterations);
    let mut allowed = 0;
    for _ in 0..iterations {
        let started = Instant::now();
        let decision = engine.decide(&principal, &call, &ctx);
        times.push(started.elapsed().as_nanos());
        allowed += usize::from(decision.allow);
    }
    times.sort_unstable();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).copied().unwrap_or(0)
    };
    Timing {
        policies,
        decisions: iterations,
        allowed,
        median_ns: at(0.5),
        p99_ns: at(0.99),
    }
}
