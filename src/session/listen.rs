//! `subscriptions/listen` (2026-07-28) against the GET stream and
//! `resources/subscribe` (handshake era), bridged both ways:
//!
//! - a stateless client listening through a handshake-era server: the
//!   gateway acknowledges the filter itself, subscribes to the requested
//!   resources, and forwards the server's matching notifications stamped
//!   with the listen request's id;
//! - a handshake-era client of a stateless server: the gateway keeps one
//!   listen request open per upstream, with every list it can watch and the
//!   resources the client subscribed to, and puts what arrives on the
//!   client's GET stream.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::client::{Out, Session};
use crate::backend::{BackendError, ClientBound, Connection};
use crate::mcp::envelope::to_raw;
use crate::mcp::meta::{edit_params, meta_mut, params_object};
use crate::mcp::{self, Envelope, JsonRpcId, ResponsePayload};

/// Notifications queued towards one bridged listen stream.
const LISTEN_QUEUE: usize = 256;

/// The notification kinds a listen filter can ask for.
fn wanted(filter: &Map<String, Value>, method: &str, params: &Value) -> bool {
    let flag = |k: &str| filter.get(k).and_then(Value::as_bool).unwrap_or(false);
    match method {
        "notifications/tools/list_changed" => flag("toolsListChanged"),
        "notifications/prompts/list_changed" => flag("promptsListChanged"),
        "notifications/resources/list_changed" => flag("resourcesListChanged"),
        "notifications/resources/updated" => {
            let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
            filter
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .is_some_and(|uris| uris.iter().any(|u| u.as_str() == Some(uri)))
        }
        _ => false,
    }
}

/// A stateless client's listen served by a handshake-era server. Runs until
/// the client closes the stream (the request task is aborted then).
pub(super) async fn listen_on_handshake_backend(
    session: &Arc<Session>,
    conn: Connection,
    id: Option<JsonRpcId>,
    params: Option<&serde_json::value::RawValue>,
    out: &Out,
) -> Result<ResponsePayload, BackendError> {
    let params = params_object(params);
    let requested = params
        .get("notifications")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let caps = &conn.facts().capabilities;
    let supports = |cap: &str, flag: &str| {
        caps.get(cap)
            .and_then(|c| c.get(flag))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut granted = Map::new();
    for (key, cap, flag) in [
        ("toolsListChanged", "tools", "listChanged"),
        ("promptsListChanged", "prompts", "listChanged"),
        ("resourcesListChanged", "resources", "listChanged"),
    ] {
        if requested.get(key).and_then(Value::as_bool).unwrap_or(false) && supports(cap, flag) {
            granted.insert(key.into(), true.into());
        }
    }
    let (tx, mut rx) = mpsc::channel(LISTEN_QUEUE);
    let _attachment = conn.attach(tx);
    if let Some(uris) = requested
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        && supports("resources", "subscribe")
    {
        let mut ok = Vec::new();
        for uri in uris.iter().filter_map(Value::as_str) {
            let p = to_raw(&json!({"uri": uri}));
            if let Ok(ResponsePayload::Result(_)) = conn
                .request("resources/subscribe", Some(p), None, None)
                .await
            {
                ok.push(Value::String(uri.to_owned()));
            }
        }
        granted.insert("resourceSubscriptions".into(), Value::Array(ok));
    }
    let subscription_id = id
        .as_ref()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let stamp = |method: &str, params: Option<Value>| {
        let raw = params.map(|p| to_raw(&p));
        let params = edit_params(raw.as_deref(), |p| {
            meta_mut(p).insert(mcp::META_SUBSCRIPTION_ID.into(), subscription_id.clone());
        });
        Envelope::notification(method, Some(params))
    };
    let ack = stamp(
        "notifications/subscriptions/acknowledged",
        Some(json!({"notifications": granted})),
    );
    if out.send(ack).await.is_err() {
        return Ok(ResponsePayload::Result(to_raw(
            &json!({"resultType": "complete"}),
        )));
    }
    let closed = session.closed_token();
    loop {
        let msg = tokio::select! {
            _ = closed.cancelled() => None,
            _ = out.closed() => None,
            m = rx.recv() => m,
        };
        let Some(msg) = msg else { break };
        if let ClientBound::Notification { method, params } = msg {
            let value: Value = params
                .as_deref()
                .and_then(|p| serde_json::from_str(p.get()).ok())
                .unwrap_or(Value::Null);
            if wanted(&granted, &method, &value)
                && out.send(stamp(&method, Some(value))).await.is_err()
            {
                break;
            }
        }
    }
    Ok(ResponsePayload::Result(to_raw(
        &json!({"resultType": "complete"}),
    )))
}

/// For a handshake-era client of a stateless server: the listen request the
/// gateway keeps open on its behalf, reopened when subscriptions change.
pub(super) async fn watch_stateless_backend(
    session: Arc<Session>,
    index: usize,
    conn: Connection,
    resources: BTreeSet<String>,
) {
    let caps = conn.facts().capabilities.clone();
    let supports = |cap: &str, flag: &str| {
        caps.get(cap)
            .and_then(|c| c.get(flag))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut filter = Map::new();
    filter.insert(
        "toolsListChanged".into(),
        supports("tools", "listChanged").into(),
    );
    filter.insert(
        "promptsListChanged".into(),
        supports("prompts", "listChanged").into(),
    );
    filter.insert(
        "resourcesListChanged".into(),
        supports("resources", "listChanged").into(),
    );
    if !resources.is_empty() {
        filter.insert("resourceSubscriptions".into(), json!(resources));
    }
    let params = to_raw(&json!({"notifications": filter}));
    let (tx, mut rx) = mpsc::channel::<ClientBound>(LISTEN_QUEUE);
    let request = conn.request(
        "subscriptions/listen",
        Some(params),
        Some(tx),
        Some(std::time::Duration::ZERO),
    );
    tokio::pin!(request);
    let closed = session.closed_token();
    loop {
        tokio::select! {
            _ = closed.cancelled() => return,
            r = &mut request => {
                tracing::debug!(backend = session.upstream_name(index), ok = r.is_ok(), "backend listen stream ended");
                return;
            }
            Some(msg) = rx.recv() => {
                if let ClientBound::Notification { method, params } = msg {
                    if method == "notifications/subscriptions/acknowledged" {
                        continue;
                    }
                    // The subscription id is the gateway's; the handshake-era
                    // client has no use for it.
                    let params = params.map(|p| edit_params(Some(&p), |o| {
                        if let Some(Value::Object(meta)) = o.get_mut("_meta") {
                            meta.remove(mcp::META_SUBSCRIPTION_ID);
                        }
                    }));
                    session.relay(ClientBound::Notification { method, params }, None).await;
                }
            }
        }
    }
}
