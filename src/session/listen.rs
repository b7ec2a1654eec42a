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
                    let msg = super::lists::from_backend(&session, index, ClientBound::Notification { method, params });
                    session.relay(msg, None).await;
                }
            }
        }
    }
}

/// How long a fanned-out listen waits for every backend's acknowledgement
/// before it acknowledges with what it has.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A stateless client's `subscriptions/listen` on a multiplexed route: one
/// listen per backend the filter concerns (list flags: every backend;
/// resources: the backend the catalog routes each URI to), one merged
/// acknowledgement first, then every backend's notifications on the one
/// stream, resource URIs in their public form. Ends when the client closes
/// the stream or every backend's listen has ended.
pub(super) async fn listen_fan_out(session: &Arc<Session>, env: Envelope, out: &Out) -> Envelope {
    let id = env.id.clone();
    let requested = params_object(env.params.as_deref())
        .get("notifications")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let n = session.upstream_count();
    let mut filters: Vec<Map<String, Value>> = vec![Map::new(); n];
    for key in [
        "toolsListChanged",
        "promptsListChanged",
        "resourcesListChanged",
    ] {
        if requested.get(key).and_then(Value::as_bool).unwrap_or(false) {
            for f in &mut filters {
                f.insert(key.into(), true.into());
            }
        }
    }
    for uri in requested
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some(r) = super::lists::resolve_uri(session, uri, out).await
            && let Some(f) = filters.get_mut(r.index)
            && let Value::Array(uris) = f
                .entry("resourceSubscriptions")
                .or_insert_with(|| Value::Array(Vec::new()))
        {
            uris.push(Value::String(r.own));
        }
    }
    let (tx, mut rx) = mpsc::channel::<(usize, Envelope)>(LISTEN_QUEUE);
    let mut listens = futures::stream::FuturesUnordered::new();
    for (index, filter) in filters.into_iter().enumerate() {
        if filter.is_empty() {
            continue;
        }
        let backend_env = Envelope {
            params: Some(edit_params(env.params.as_deref(), |p| {
                p.insert("notifications".into(), Value::Object(filter));
            })),
            ..env.clone()
        };
        let session = session.clone();
        let tx = tx.clone();
        listens.push(async move {
            let (btx, mut brx) = mpsc::channel::<Envelope>(LISTEN_QUEUE);
            let listen = session.forward_and_bridge(index, backend_env, &btx);
            tokio::pin!(listen);
            loop {
                tokio::select! {
                    (response, _) = &mut listen => return (index, response),
                    Some(msg) = brx.recv() => {
                        if tx.send((index, msg)).await.is_err() {
                            return (index, complete(None));
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    use futures::StreamExt;
    // Acknowledgements first: hold back anything else until every backend
    // has answered (or ACK_WAIT), then send one.
    let mut granted = Map::new();
    let mut held: Vec<(usize, Envelope)> = Vec::new();
    let deadline = tokio::time::Instant::now() + ACK_WAIT;
    let mut pending_backends = listens.len();
    let mut started: BTreeSet<usize> = BTreeSet::new();
    while started.len() < pending_backends {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = out.closed() => return complete(id),
            done = listens.next() => match done {
                Some((index, response)) => {
                    tracing::debug!(backend = session.upstream_name(index), error = ?response.error_code(), "backend listen ended before acknowledging");
                    pending_backends -= 1;
                }
                None => break,
            },
            Some((index, msg)) = rx.recv() => {
                if msg.method.as_deref() == Some("notifications/subscriptions/acknowledged") {
                    started.insert(index);
                    merge_granted(session, index, &mut granted, msg.params.as_deref());
                } else {
                    held.push((index, msg));
                }
            }
        }
    }
    let subscription_id = id
        .as_ref()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let mut ack_params = json!({"notifications": granted});
    if let Some(p) = ack_params.as_object_mut() {
        meta_mut(p).insert(mcp::META_SUBSCRIPTION_ID.into(), subscription_id);
    }
    let ack = Envelope::notification(
        "notifications/subscriptions/acknowledged",
        Some(to_raw(&ack_params)),
    );
    if out.send(ack).await.is_err() {
        return complete(id);
    }
    for (index, msg) in held {
        if out.send(public_uris(session, index, msg)).await.is_err() {
            return complete(id);
        }
    }
    let closed = session.closed_token();
    loop {
        tokio::select! {
            _ = closed.cancelled() => break,
            _ = out.closed() => break,
            done = listens.next() => if done.is_none() { break },
            Some((index, msg)) = rx.recv() => {
                if msg.method.as_deref() == Some("notifications/subscriptions/acknowledged") {
                    continue;
                }
                if out.send(public_uris(session, index, msg)).await.is_err() {
                    break;
                }
            }
        }
    }
    complete(id)
}

fn complete(id: Option<JsonRpcId>) -> Envelope {
    Envelope::result(
        id.unwrap_or(JsonRpcId::Num(0)),
        to_raw(&json!({"resultType": "complete"})),
    )
}

/// Adds one backend's granted filter to the merged one (flags or-ed,
/// resource URIs in their public form).
fn merge_granted(
    session: &Session,
    index: usize,
    granted: &mut Map<String, Value>,
    params: Option<&serde_json::value::RawValue>,
) {
    let Some(Value::Object(theirs)) = params_object(params).remove("notifications") else {
        return;
    };
    for (key, value) in theirs {
        match (key.as_str(), value) {
            ("resourceSubscriptions", Value::Array(uris)) => {
                if let Value::Array(all) = granted
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    all.extend(
                        uris.iter()
                            .filter_map(Value::as_str)
                            .map(|u| Value::String(super::lists::public_uri(session, index, u))),
                    );
                }
            }
            (_, Value::Bool(true)) => {
                granted.insert(key, true.into());
            }
            (_, other) => {
                granted.entry(key).or_insert(other);
            }
        }
    }
}

/// `notifications/resources/updated` from backend `index` with the URI the
/// client subscribed to.
fn public_uris(session: &Session, index: usize, mut msg: Envelope) -> Envelope {
    if msg.method.as_deref() == Some("notifications/resources/updated") {
        msg.params = Some(edit_params(msg.params.as_deref(), |p| {
            if let Some(Value::String(uri)) = p.get("uri") {
                let public = super::lists::public_uri(session, index, uri);
                p.insert("uri".into(), Value::String(public));
            }
        }));
    }
    msg
}
