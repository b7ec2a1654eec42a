//! Several backends as one: merged lists with prefixed names, the catalog
//! of which backend listed which resource, merged capabilities.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::client::{Out, Session};
use crate::backend::ServerFacts;
use crate::mcp::envelope::to_raw;
use crate::mcp::meta::edit_params;
use crate::mcp::{self, Call, Envelope, JsonRpcId, Method, ResponsePayload};

/// At most this many pages are read from one backend for one merged list.
const MAX_PAGES: usize = 100;

/// Which backend listed which resource URI or template.
#[derive(Debug, Default)]
pub struct Catalog {
    uris: HashMap<String, usize>,
    /// (the template's literal prefix, backend index)
    templates: Vec<(String, usize)>,
}

/// The backend index that serves `uri` on this session's route.
pub(super) fn resource_backend(session: &Session, uri: &str) -> Option<usize> {
    if session.upstream_count() == 1 {
        return Some(0);
    }
    let catalog = session.catalog.lock().ok()?;
    if let Some(i) = catalog.uris.get(uri) {
        return Some(*i);
    }
    catalog
        .templates
        .iter()
        .filter(|(prefix, _)| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, i)| *i)
}

/// A list method over every backend of a multiplexed route: all pages of
/// each, names prefixed, in backend order then the backend's own order.
pub(super) async fn merged_list(
    session: &Arc<Session>,
    call: &Call,
    env: &Envelope,
    out: &Out,
) -> Envelope {
    let id = env.id.clone().unwrap_or(JsonRpcId::Num(0));
    let method = env.method.as_deref().unwrap_or_default();
    let (key, rename) = match call.method {
        Method::ToolsList => ("tools", true),
        Method::PromptsList => ("prompts", true),
        Method::ResourcesList => ("resources", false),
        _ => ("resourceTemplates", false),
    };
    if mcp::meta::params_object(env.params.as_deref())
        .get("cursor")
        .is_some()
    {
        return Envelope::error(Some(id), mcp::code::INVALID_PARAMS, "invalid cursor", None);
    }
    let fetches = (0..session.upstream_count()).map(|index| {
        let session = session.clone();
        let params = env.params.clone();
        async move {
            let mut items = Vec::new();
            let mut cursor: Option<Value> = None;
            for _ in 0..MAX_PAGES {
                let page_params = match &cursor {
                    None => params.clone(),
                    Some(c) => Some(edit_params(params.as_deref(), |p| {
                        p.insert("cursor".into(), c.clone());
                    })),
                };
                let payload = session
                    .forward(index, method, page_params, out, None)
                    .await?;
                let ResponsePayload::Result(result) = payload else {
                    break;
                };
                let mut page: Map<String, Value> =
                    serde_json::from_str(result.get()).unwrap_or_default();
                if let Some(Value::Array(list)) = page.remove(key) {
                    items.extend(list);
                }
                cursor = page.remove("nextCursor").filter(|c| !c.is_null());
                if cursor.is_none() {
                    break;
                }
            }
            Ok::<_, crate::backend::BackendError>((index, items))
        }
    });
    let results = futures::future::join_all(fetches).await;
    let mut merged = Vec::new();
    let mut catalog = Catalog::default();
    for result in results {
        let (index, items) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(session.id = %session.id, error = %e, "backend left out of a merged list");
                continue;
            }
        };
        for mut item in items {
            if let Some(obj) = item.as_object_mut() {
                if rename && let Some(Value::String(name)) = obj.get("name") {
                    let public = session.route.public_name(index, name);
                    obj.insert("name".into(), Value::String(public));
                }
                if let Some(Value::String(uri)) = obj.get("uri") {
                    catalog.uris.insert(uri.clone(), index);
                }
                if let Some(Value::String(t)) = obj.get("uriTemplate") {
                    let prefix = t.split('{').next().unwrap_or_default().to_owned();
                    catalog.templates.push((prefix, index));
                }
            }
            merged.push(item);
        }
    }
    if let Ok(mut c) = session.catalog.lock() {
        match call.method {
            Method::ResourcesList => c.uris = catalog.uris,
            Method::ResourcesTemplatesList => c.templates = catalog.templates,
            _ => {}
        }
    }
    let mut result = Map::new();
    result.insert(key.into(), Value::Array(merged));
    if session.client.era == mcp::Era::Stateless {
        result.insert("resultType".into(), "complete".into());
        result.insert("ttlMs".into(), 0.into());
        result.insert("cacheScope".into(), "private".into());
    }
    Envelope::result(id, to_raw(&result))
}

/// A request every backend should get (`logging/setLevel`).
pub(super) async fn broadcast(session: &Arc<Session>, env: &Envelope, out: &Out) -> Envelope {
    let id = env.id.clone().unwrap_or(JsonRpcId::Num(0));
    let method = env.method.as_deref().unwrap_or_default();
    for index in 0..session.upstream_count() {
        if let Err(e) = session
            .forward(index, method, env.params.clone(), out, None)
            .await
        {
            tracing::warn!(backend = session.upstream_name(index), error = %e, "broadcast not delivered");
        }
    }
    Envelope::result(id, to_raw(&serde_json::json!({})))
}

/// The union of the backends' capabilities: a capability is advertised when
/// at least one backend has it, and a boolean flag when any backend sets it.
pub(super) fn merge_capabilities(facts: &[ServerFacts]) -> Value {
    let mut merged = Value::Object(Map::new());
    for f in facts {
        merge_into(&mut merged, &f.capabilities);
    }
    merged
}

fn merge_into(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge_into(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Bool(a), Value::Bool(b)) => *a |= *b,
        _ => {}
    }
}
