//! policy: `(Principal, Call, Context)` → `Decision`. Never does I/O on the
//! request path.
//!
//! This build has one engine: the configured allow-all. The authorization
//! issue replaces `PolicyEngine::decide` with Cedar; the pipeline already asks
//! it about every message and about every item of a list result.

use std::sync::Arc;

use crate::auth::Principal;
use crate::mcp::Call;

/// What the policy stage saw besides principal and call.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub transport: &'static str,
    pub origin: Option<String>,
    pub remote_addr: Option<String>,
    pub protocol_version: Option<String>,
    pub backend: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// Ids of the policies that decided.
    pub policies: Vec<String>,
    pub reason: String,
}

pub struct PolicyEngine {
    _private: (),
}

impl PolicyEngine {
    /// The allow-all engine used until policies are configured.
    pub fn allow_all() -> Arc<PolicyEngine> {
        Arc::new(PolicyEngine { _private: () })
    }

    pub fn decide(&self, _principal: &Principal, _call: &Call, _ctx: &Context) -> Decision {
        Decision {
            allow: true,
            policies: vec!["allow-all".into()],
            reason: "allowed by the allow-all policy".into(),
        }
    }
}
