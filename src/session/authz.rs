//! Where the session meets policy: resolve the target first (backend, the
//! backend's own name, the tool's annotations from the catalog), then ask
//! the engine; and filter list results through the same decisions.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::Gateway;
use super::client::{Out, Session};
use super::lists;
use crate::auth::Principal;
use crate::mcp::envelope::to_raw;
use crate::mcp::{self, Call, Envelope, Era, JsonRpcId, Method, ResponsePayload, Target};
use crate::policy::{Context, Decision, ToolFacts};
use crate::router::Route;

/// At most this many `tools/list` pages are read to learn annotations.
const MAX_CATALOG_PAGES: usize = 20;
/// Most tools whose annotations one session remembers.
const MAX_REMEMBERED_TOOLS: usize = 10_000;

/// (upstream index, the backend's own tool name) → annotations.
pub type ToolCatalog = HashMap<(usize, String), ToolFacts>;

/// Most decisions one session keeps.
const MAX_CACHED_DECISIONS: usize = 1024;

/// A session's decisions by action and target, valid for one policy
/// generation. Only used when `Snapshot::decisions_cacheable`: then a
/// decision depends on the session (principal, route, client) and the
/// target alone, and the target's resolution and annotations change only
/// with a `list_changed`, which clears the cache.
#[derive(Default)]
pub struct DecisionCache {
    generation: u64,
    decisions: HashMap<String, Decision>,
}

impl DecisionCache {
    fn get(&self, generation: u64, key: &str) -> Option<Decision> {
        (self.generation == generation)
            .then(|| self.decisions.get(key).cloned())
            .flatten()
    }

    fn put(&mut self, generation: u64, key: String, decision: Decision) {
        if self.generation != generation {
            self.decisions.clear();
            self.generation = generation;
        }
        if self.decisions.len() < MAX_CACHED_DECISIONS {
            self.decisions.insert(key, decision);
        }
    }

    pub fn clear(&mut self) {
        self.decisions.clear();
    }
}

pub(super) fn base_context(session: &Session) -> Context {
    Context {
        transport: session.transport,
        origin: session.route.origin.clone(),
        remote_addr: session.route.remote_addr.clone(),
        protocol_version: Some(session.client.protocol_version.clone()),
        client_name: client_name(&session.client.connect.client_info),
        route: session.route.selected_by.clone(),
        ..Context::default()
    }
}

fn client_name(info: &serde_json::value::RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Info {
        name: Option<String>,
    }
    serde_json::from_str::<Info>(info.get())
        .ok()
        .and_then(|i| i.name)
}

/// Decides one request. A backend-level method on a multiplexed route
/// (lists, ping, other) is allowed when some backend of the route allows it.
pub(super) async fn decide(
    session: &Arc<Session>,
    gw: &Gateway,
    call: &Call,
    env: &Envelope,
    out: &Out,
) -> Decision {
    let (generation, cacheable) = {
        let snapshot = gw.policy.snapshot();
        (snapshot.generation, snapshot.decisions_cacheable)
    };
    let key = cacheable.then(|| match &call.target {
        Target::None => call.method.action().to_owned(),
        Target::Tool(n) | Target::Resource(n) | Target::Prompt(n) => {
            format!(
                "{}\u{0}{}\u{0}{n}",
                call.method.action(),
                call.target.kind()
            )
        }
    });
    if let Some(key) = &key
        && let Some(decision) = session
            .decisions
            .lock()
            .ok()
            .and_then(|c| c.get(generation, key))
    {
        return decision;
    }
    let (decision, settled) = decide_uncached(session, gw, call, env, out).await;
    if let Some(key) = key
        && settled
        && let Ok(mut cache) = session.decisions.lock()
    {
        cache.put(generation, key, decision.clone());
    }
    decision
}

async fn decide_uncached(
    session: &Arc<Session>,
    gw: &Gateway,
    call: &Call,
    env: &Envelope,
    out: &Out,
) -> (Decision, bool) {
    // Whether the decision rests on settled facts only (may be cached).
    let mut settled = true;
    let mut ctx = base_context(session);
    // classify names a tool only for tools/call, a prompt only for
    // prompts/get and completion/complete.
    let named = match &call.target {
        Target::Tool(n) | Target::Prompt(n) => Some(n),
        _ => None,
    };
    if let Some(name) = named {
        if let Some((index, own)) = session.route.resolve_name(name) {
            ctx.backend = Some(session.upstream_name(index).to_owned());
            ctx.name = Some(own.to_owned());
            // Annotations come from the backend's tools/list: not asked for
            // when the policies in force permit every call unconditionally.
            let (needs_facts, expose_arguments) = match call.method {
                Method::ToolsCall => {
                    let snapshot = gw.policy.snapshot();
                    (
                        !snapshot.permits_any(Method::ToolsCall.action(), ctx.route.as_deref()),
                        snapshot.expose_arguments,
                    )
                }
                _ => (false, false),
            };
            if needs_facts {
                let (facts, known) = tool_facts(session, index, own, out).await;
                ctx.tool = Some(facts);
                settled &= known;
                if expose_arguments {
                    ctx.arguments = mcp::meta::params_object(env.params.as_deref())
                        .get("arguments")
                        .and_then(Value::as_object)
                        .cloned();
                }
            }
        }
        return (gw.policy.decide(&session.principal, call, &ctx), settled);
    }
    if let Target::Resource(uri) = &call.target {
        match lists::resource_backend(session, uri) {
            Some(index) => ctx.backend = Some(session.upstream_name(index).to_owned()),
            // Not in the catalog (yet): decided, but not remembered.
            None => settled = false,
        }
        return (gw.policy.decide(&session.principal, call, &ctx), settled);
    }
    (
        any_backend(gw, &session.principal, call, ctx, session_backends(session)),
        settled,
    )
}

fn session_backends(session: &Session) -> Vec<String> {
    (0..session.upstream_count())
        .map(|i| session.upstream_name(i).to_owned())
        .collect()
}

/// Allowed when one of `backends` allows; the first allow's policies, else
/// the first denial.
fn any_backend(
    gw: &Gateway,
    principal: &Principal,
    call: &Call,
    ctx: Context,
    backends: Vec<String>,
) -> Decision {
    let mut first_denial = None;
    if backends.is_empty() {
        return gw.policy.decide(principal, call, &ctx);
    }
    for backend in backends {
        let ctx = Context {
            backend: Some(backend),
            ..ctx.clone()
        };
        let d = gw.policy.decide(principal, call, &ctx);
        if d.allow {
            return d;
        }
        first_denial.get_or_insert(d);
    }
    first_denial.unwrap_or_else(|| gw.policy.decide(principal, call, &ctx))
}

/// A client notification on its way to upstream `index` is decided too
/// (action `other`, or `resources/subscribe`… by its method); a denied one
/// is dropped and logged.
pub(super) fn notification_allowed(session: &Session, env: &Envelope, index: usize) -> bool {
    let Some(gw) = session.gateway() else {
        return false;
    };
    let method = env.method.as_deref().unwrap_or_default();
    let call = Call {
        method: Method::parse(method),
        target: Target::None,
    };
    let ctx = Context {
        backend: Some(session.upstream_name(index).to_owned()),
        ..base_context(session)
    };
    let decision = gw.policy.decide(&session.principal, &call, &ctx);
    if !decision.allow {
        tracing::info!(session.id = %session.id, method, reason = %decision.reason, "notification dropped by policy");
    }
    decision.allow
}

/// `connect` (initialize, server/discover) for a route not yet open.
pub(super) fn connect(
    gw: &Gateway,
    principal: &Principal,
    route: &Route,
    transport: &'static str,
    protocol_version: &str,
    client_info: Option<&Value>,
) -> Decision {
    let ctx = Context {
        transport,
        origin: route.origin.clone(),
        remote_addr: route.remote_addr.clone(),
        protocol_version: Some(protocol_version.to_owned()),
        client_name: client_info
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        route: route.selected_by.clone(),
        ..Context::default()
    };
    let call = Call {
        method: Method::Initialize,
        target: Target::None,
    };
    let backends = route.backends.iter().map(|b| b.name().to_owned()).collect();
    any_backend(gw, principal, &call, ctx, backends)
}

/// The annotations of a backend's tool: from the catalog, else learned
/// from the backend's `tools/list` (never from the call itself).
/// The tool's annotations, and whether they are known: listed, or
/// definitely not listed (a whole list was read). `false` when the list
/// could not be read, so a decision made on the defaults is not cached.
async fn tool_facts(
    session: &Arc<Session>,
    index: usize,
    own: &str,
    out: &Out,
) -> (ToolFacts, bool) {
    let key = (index, own.to_owned());
    if let Some(f) = known(session, &key) {
        return (f, true);
    }
    let mut cursor: Option<Value> = None;
    let mut complete = false;
    for _ in 0..MAX_CATALOG_PAGES {
        let params = cursor
            .as_ref()
            .map(|c| to_raw(&serde_json::json!({ "cursor": c })));
        let Ok(ResponsePayload::Result(result)) = session
            .forward(index, "tools/list", params, out, None)
            .await
        else {
            break;
        };
        let mut page: Map<String, Value> = serde_json::from_str(result.get()).unwrap_or_default();
        if let Some(Value::Array(tools)) = page.get("tools") {
            remember(session, index, tools);
        }
        cursor = page.remove("nextCursor").filter(|c| !c.is_null());
        if cursor.is_none() {
            complete = true;
            break;
        }
        if known(session, &key).is_some() {
            break;
        }
    }
    match known(session, &key) {
        Some(facts) => (facts, true),
        None if complete => {
            // Not listed: the spec's defaults, remembered (up to a bound) so
            // calls of unknown names do not each page through the list.
            let facts = ToolFacts::default();
            if let Ok(mut catalog) = session.tool_facts.lock()
                && catalog.len() < MAX_REMEMBERED_TOOLS
            {
                catalog.insert(key, facts);
            }
            (facts, true)
        }
        // The list could not be read: the defaults, this time only.
        None => (ToolFacts::default(), false),
    }
}

fn known(session: &Session, key: &(usize, String)) -> Option<ToolFacts> {
    session.tool_facts.lock().ok()?.get(key).copied()
}

fn remember(session: &Session, index: usize, tools: &[Value]) {
    if let Ok(mut catalog) = session.tool_facts.lock() {
        for tool in tools {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                catalog.insert((index, name.to_owned()), ToolFacts::from_tool(tool));
            }
        }
    }
}

/// A list result with every item the caller could not use removed. The
/// tools' annotations go to the catalog on the way. Filtered 2026-07-28
/// lists are per caller: `cacheScope: private`.
pub(super) fn filter_list(
    session: &Session,
    gw: &Gateway,
    call: &Call,
    response: Envelope,
) -> Envelope {
    let (key, item_method) = match call.method {
        Method::ToolsList => ("tools", Method::ToolsCall),
        Method::PromptsList => ("prompts", Method::PromptsGet),
        Method::ResourcesList => ("resources", Method::ResourcesRead),
        Method::ResourcesTemplatesList => ("resourceTemplates", Method::ResourcesRead),
        _ => return response,
    };
    let Some(ResponsePayload::Result(result)) = &response.payload else {
        return response;
    };
    let Ok(mut obj) = serde_json::from_str::<Map<String, Value>>(result.get()) else {
        return response;
    };
    let Some(Value::Array(items)) = obj.remove(key) else {
        return response;
    };
    let base = base_context(session);
    let mut list_allowed: HashMap<usize, bool> = HashMap::new();
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let Some((index, target, own)) = item_target(session, call, &item) else {
            continue;
        };
        let allowed_list = *list_allowed.entry(index).or_insert_with(|| {
            let ctx = Context {
                backend: Some(session.upstream_name(index).to_owned()),
                ..base.clone()
            };
            gw.policy.decide(&session.principal, call, &ctx).allow
        });
        if !allowed_list {
            continue;
        }
        let mut ctx = Context {
            backend: Some(session.upstream_name(index).to_owned()),
            name: own,
            ..base.clone()
        };
        if call.method == Method::ToolsList {
            let facts = ToolFacts::from_tool(&item);
            if let (Some(name), Ok(mut catalog)) = (&ctx.name, session.tool_facts.lock()) {
                catalog.insert((index, name.clone()), facts);
            }
            ctx.tool = Some(facts);
        }
        let item_call = Call {
            method: item_method.clone(),
            target,
        };
        if gw.policy.decide(&session.principal, &item_call, &ctx).allow {
            kept.push(item);
        }
    }
    obj.insert(key.into(), Value::Array(kept));
    if session.client.era == Era::Stateless {
        obj.insert("cacheScope".into(), "private".into());
    }
    let id = response.id.clone().unwrap_or(JsonRpcId::Num(0));
    Envelope::result(id, to_raw(&obj))
}

/// (upstream index, the item as a call target, the backend's own name).
fn item_target(
    session: &Session,
    call: &Call,
    item: &Value,
) -> Option<(usize, Target, Option<String>)> {
    let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
    match call.method {
        Method::ToolsList | Method::PromptsList => {
            let public = text("name")?;
            let (index, own) = if call.method == Method::ToolsList {
                session.route.resolve_tool(&public)?
            } else {
                let (index, own) = session.route.resolve_name(&public)?;
                (index, own.to_owned())
            };
            let target = if call.method == Method::ToolsList {
                Target::Tool(public)
            } else {
                Target::Prompt(public)
            };
            Some((index, target, Some(own)))
        }
        Method::ResourcesList => {
            let uri = text("uri")?;
            let index = lists::resource_backend(session, &uri)?;
            Some((index, Target::Resource(uri), None))
        }
        _ => {
            let template = text("uriTemplate")?;
            let prefix = template.split('{').next().unwrap_or_default().to_owned();
            let index = if session.upstream_count() == 1 {
                0
            } else {
                lists::resource_backend(session, &prefix)?
            };
            Some((index, Target::Resource(template), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allow: bool, id: &str) -> Decision {
        Decision {
            allow,
            policies: vec![id.to_owned()],
            reason: String::new(),
        }
    }

    #[test]
    fn cached_decisions_belong_to_one_generation_and_are_bounded() {
        let mut cache = DecisionCache::default();
        cache.put(3, "tools/call\0tool\0a".into(), decision(true, "p"));
        assert_eq!(
            cache.get(3, "tools/call\0tool\0a").map(|d| d.allow),
            Some(true)
        );
        assert!(cache.get(3, "tools/call\0tool\0b").is_none());
        // Another generation (a reload): nothing is reused, and the first
        // put of the new generation drops the old entries.
        assert!(cache.get(4, "tools/call\0tool\0a").is_none());
        cache.put(4, "tools/call\0tool\0b".into(), decision(false, "q"));
        assert!(cache.get(3, "tools/call\0tool\0a").is_none());
        assert_eq!(cache.decisions.len(), 1);
        cache.clear();
        assert!(cache.get(4, "tools/call\0tool\0b").is_none());
        for i in 0..2 * MAX_CACHED_DECISIONS {
            cache.put(4, format!("k{i}"), decision(true, "p"));
        }
        assert_eq!(cache.decisions.len(), MAX_CACHED_DECISIONS);
    }
}
