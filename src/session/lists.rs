//! Several backends as one: the catalog of a multiplexed route. Merged
//! lists with prefixed (and curated) names, served from a per-session cache
//! in pages that the gateway's own signed cursors address; the map of which
//! backend listed which resource URI or template; merged capabilities.
//!
//! A session (or stateless context) owns its catalog: its backend sessions
//! are its own, and so are the lists they answer (a server may pick its
//! tools per client). The cache lives until a backend's `list_changed`,
//! `multiplex.catalog_ttl_s`, or a backend's shorter `ttlMs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::backend_error_response;
use super::client::{Out, Session};
use crate::backend::{BackendError, ClientBound, ServerFacts};
use crate::config::FailureMode;
use crate::mcp::envelope::to_raw;
use crate::mcp::meta::edit_params;
use crate::mcp::{self, Call, Envelope, JsonRpcId, Method, ResponsePayload};
use crate::router::curation;

/// At most this many pages are read from one backend for one merged list.
const MAX_PAGES: usize = 100;

/// Separates the backend from the URI of a resource two backends list.
pub const URI_SEPARATOR: char = '+';

/// The four merged lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub fn of(method: &Method) -> Option<ListKind> {
        match method {
            Method::ToolsList => Some(ListKind::Tools),
            Method::PromptsList => Some(ListKind::Prompts),
            Method::ResourcesList => Some(ListKind::Resources),
            Method::ResourcesTemplatesList => Some(ListKind::Templates),
            _ => None,
        }
    }

    /// The kinds a backend's `notifications/*/list_changed` makes stale.
    fn changed_by(notification: &str) -> &'static [ListKind] {
        match notification {
            "notifications/tools/list_changed" => &[ListKind::Tools],
            "notifications/prompts/list_changed" => &[ListKind::Prompts],
            "notifications/resources/list_changed" => &[ListKind::Resources, ListKind::Templates],
            _ => &[],
        }
    }

    fn slot(self) -> usize {
        self as usize
    }

    /// The result key holding the items.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }
}

/// One page as a backend answered it, items already in public form.
#[derive(Debug)]
struct Page {
    /// The backend's cursor that asked for this page (`None`: the first).
    cursor: Option<Value>,
    items: Vec<Value>,
    /// `items` serialized once: a page served from the catalog is copied,
    /// not re-serialized.
    raw: Arc<str>,
    next: Option<Value>,
}

impl Page {
    fn new(cursor: Option<Value>, items: Vec<Value>, next: Option<Value>) -> Page {
        let raw = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
        Page {
            cursor,
            items,
            raw: raw.into(),
            next,
        }
    }
}

/// Every page of one backend's list.
#[derive(Debug)]
struct BackendList {
    pages: Vec<Page>,
    /// The backend's own `ttlMs` (2026-07-28), `None` when it gave none.
    ttl_ms: Option<u64>,
    /// Whether the backend called it private, or said nothing (handshake era).
    private: bool,
}

impl BackendList {
    fn is_empty(&self) -> bool {
        self.pages.iter().all(|p| p.items.is_empty())
    }
}

/// One merged list: an entry per backend of the route, `None` for a
/// backend that could not be asked (partial failure: asked again next time).
#[derive(Debug)]
struct Merged {
    fetched: Instant,
    ttl: Duration,
    backends: Vec<Option<Arc<BackendList>>>,
}

impl Merged {
    fn fresh(&self) -> bool {
        self.fetched.elapsed() < self.ttl
    }

    fn complete(&self) -> bool {
        self.backends.iter().all(Option::is_some)
    }
}

#[derive(Debug, Default)]
struct Lists {
    merged: [Option<Merged>; 4],
    /// Bumped by `list_changed`: a fetch that began before is not trusted.
    generation: [u64; 4],
    /// Public URI → (backend index, the backend's URI).
    uris: HashMap<String, (usize, String)>,
    /// (a template's literal prefix, backend index)
    templates: Vec<(String, usize)>,
    /// Public tool or prompt name → (backend index, the item as listed).
    tools: HashMap<String, (usize, Value)>,
}

/// A session's catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    lists: Mutex<Lists>,
    /// One fetch of the backends at a time per session; readers of a fresh
    /// cache never wait on it. Never held by `relay` (list_changed only
    /// touches `lists`), so a notification arriving mid-fetch cannot deadlock.
    refresh: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// A backend said one of its lists changed.
    pub(super) fn invalidate(&self, notification: &str) {
        let kinds = ListKind::changed_by(notification);
        if kinds.is_empty() {
            return;
        }
        if let Ok(mut lists) = self.lists.lock() {
            for kind in kinds {
                lists.merged[kind.slot()] = None;
                lists.generation[kind.slot()] += 1;
            }
        }
    }
}

/// What a public name or URI stands for on a route: which backend, its own
/// name or URI, and the item as the catalog listed it (when it has been
/// listed). The one place policy and routing learn a target's origin.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub index: usize,
    pub own: String,
    /// The item as listed (tools only, once listed): its annotations are
    /// what policy decides on.
    #[allow(dead_code)]
    pub entry: Option<Value>,
}

/// A tool's public name → its backend, own name and listed entry;
/// `None` for a name no backend of the route shows (curated away included).
pub fn resolve_tool(session: &Session, public: &str) -> Option<Resolved> {
    let (index, own) = session.route.resolve_tool(public)?;
    let entry = session
        .catalog
        .lists
        .lock()
        .ok()
        .and_then(|l| l.tools.get(public).map(|(_, v)| v.clone()));
    Some(Resolved { index, own, entry })
}

/// A resource URI (or a URI a template covers) → its backend and the
/// backend's URI. Lists the resources first when the catalog has not.
pub(super) async fn resolve_uri(session: &Arc<Session>, uri: &str, out: &Out) -> Option<Resolved> {
    if session.upstream_count() == 1 {
        return Some(Resolved {
            index: 0,
            own: uri.to_owned(),
            entry: None,
        });
    }
    if let Some(found) = lookup_uri(session, uri) {
        return Some(found);
    }
    for kind in [ListKind::Resources, ListKind::Templates] {
        if let Err(e) = ensure(session, kind, None, out).await {
            tracing::debug!(session.id = %session.id, error = %e, "resources not listed");
        }
    }
    lookup_uri(session, uri)
}

/// The URI clients know for backend `index`'s `own` URI: `{backend}+{uri}`
/// when the catalog lists it so (two backends list it), else as it is.
pub(super) fn public_uri(session: &Session, index: usize, own: &str) -> String {
    let prefixed = format!("{}{URI_SEPARATOR}{own}", session.upstream_name(index));
    let known = session
        .catalog
        .lists
        .lock()
        .is_ok_and(|l| l.uris.contains_key(&prefixed));
    if known { prefixed } else { own.to_owned() }
}

/// A message backend `index` sent outside any call, with resource URIs in
/// their public form.
pub(super) fn from_backend(session: &Session, index: usize, msg: ClientBound) -> ClientBound {
    match msg {
        ClientBound::Notification { method, params }
            if method == "notifications/resources/updated" =>
        {
            let params = params.map(|p| {
                edit_params(Some(&p), |p| {
                    if let Some(Value::String(uri)) = p.get("uri") {
                        let public = public_uri(session, index, uri);
                        p.insert("uri".into(), Value::String(public));
                    }
                })
            });
            ClientBound::Notification { method, params }
        }
        other => other,
    }
}

/// The backend a resource URI (or a template's fixed prefix) belongs to.
pub(super) fn resource_backend(session: &Session, uri: &str) -> Option<usize> {
    if session.upstream_count() == 1 {
        return Some(0);
    }
    lookup_uri(session, uri).map(|r| r.index)
}

pub(super) fn lookup_uri(session: &Session, uri: &str) -> Option<Resolved> {
    let mut lists = session.catalog.lists.lock().ok()?;
    if let Some((index, own)) = lists.uris.get(uri) {
        return Some(Resolved {
            index: *index,
            own: own.clone(),
            entry: None,
        });
    }
    // `{backend}+{uri}`: how a URI two backends list is told apart.
    if let Some((backend, own)) = uri.split_once(URI_SEPARATOR)
        && let Some(index) = session
            .route
            .backends
            .iter()
            .position(|b| b.name() == backend)
    {
        // Remembered, so that what the backend later says about its URI
        // (resources/updated) reaches the client under this form.
        lists
            .uris
            .entry(uri.to_owned())
            .or_insert_with(|| (index, own.to_owned()));
        return Some(Resolved {
            index,
            own: own.to_owned(),
            entry: None,
        });
    }
    lists
        .templates
        .iter()
        .filter(|(prefix, _)| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
        // The longest prefix wins; among equals, the first backend.
        .fold(None::<&(String, usize)>, |best, t| match best {
            Some(b) if b.0.len() >= t.0.len() => Some(b),
            _ => Some(t),
        })
        .map(|(_, index)| Resolved {
            index: *index,
            own: uri.to_owned(),
            entry: None,
        })
}

// --- cursors -------------------------------------------------------------------

/// Where a page starts: a backend of the route and that backend's cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Position {
    /// The list (`tools`, …): a cursor of one list is refused by another.
    l: String,
    /// The route key: a cursor of one route is refused by another.
    r: String,
    /// Backend index in the route.
    b: usize,
    /// The backend's own cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<Value>,
}

/// Why a client's cursor was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("cursor is not a string")]
    NotAString,
    #[error("cursor is malformed")]
    Malformed,
    #[error("cursor was not issued by this gateway")]
    BadSignature,
    #[error("cursor belongs to another list or route")]
    Foreign,
}

/// The per-process key cursors are signed with: cursors do not survive a
/// restart (clients start the list over, which the spec allows).
fn cursor_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No OS randomness is an unrecoverable platform fault; a
            // guessable key would let clients forge positions.
            panic!("the operating system's random number generator failed");
        }
        key
    })
}

/// HMAC-SHA256 (RFC 2104) over `message`.
fn mac(message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut key = [0u8; BLOCK];
    key[..32].copy_from_slice(cursor_key());
    let mut inner = Sha256::new();
    inner.update(key.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(key.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn encode_cursor(position: &Position) -> String {
    let body = serde_json::to_vec(position).unwrap_or_default();
    let tag = mac(&body);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(&tag[..16])
    )
}

fn decode_cursor(cursor: &Value, kind: ListKind, route: &str) -> Result<Position, CursorError> {
    let text = cursor.as_str().ok_or(CursorError::NotAString)?;
    let (body, tag) = text.split_once('.').ok_or(CursorError::Malformed)?;
    let body = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CursorError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| CursorError::Malformed)?;
    let expected = mac(&body);
    if tag.len() != 16 || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..16], &tag[..])) {
        return Err(CursorError::BadSignature);
    }
    let position: Position = serde_json::from_slice(&body).map_err(|_| CursorError::Malformed)?;
    if position.l != kind.key() || position.r != route {
        return Err(CursorError::Foreign);
    }
    Ok(position)
}

// --- merged lists ----------------------------------------------------------------

/// A list method on a multiplexed route: one page of the merged list, from
/// the catalog (fetched first when missing, stale or incomplete).
pub(super) async fn merged_list(
    session: &Arc<Session>,
    call: &Call,
    env: &Envelope,
    out: &Out,
) -> Envelope {
    let id = env.id.clone().unwrap_or(JsonRpcId::Num(0));
    let Some(kind) = ListKind::of(&call.method) else {
        return Envelope::error(Some(id), mcp::code::INTERNAL_ERROR, "not a list", None);
    };
    let params = mcp::meta::params_object(env.params.as_deref());
    let position = match params.get("cursor").filter(|c| !c.is_null()) {
        None => None,
        Some(c) => match decode_cursor(c, kind, &session.route.key) {
            Ok(p) => Some(p),
            Err(e) => {
                return Envelope::error(
                    Some(id),
                    mcp::code::INVALID_PARAMS,
                    "invalid cursor",
                    Some(serde_json::json!({"reason": e.to_string()})),
                );
            }
        },
    };
    // The backends are asked without the client's cursor: it is ours.
    let base = env.params.as_deref().map(|p| {
        edit_params(Some(p), |p| {
            p.remove("cursor");
        })
    });
    let merged = match ensure(session, kind, base.clone(), out).await {
        Ok(m) => m,
        Err(e) => return backend_error_response(Some(id), &e),
    };
    let start = position.unwrap_or(Position {
        l: kind.key().into(),
        r: session.route.key.clone(),
        b: 0,
        c: None,
    });
    let (items, next) = match page_at(&merged, &start) {
        Some((items, next)) => (items, next),
        // A cursor the catalog no longer holds (the list was refreshed):
        // the backend decides whether its cursor is still good.
        None => match fetch_one(session, kind, start.b, base, start.c.clone(), out).await {
            Ok((page, _)) => {
                let next = match page.next {
                    Some(c) => Some((start.b, Some(c))),
                    None => first_nonempty(&merged, start.b + 1).map(|b| (b, None)),
                };
                (page.raw, next)
            }
            Err(e) => return backend_error_response(Some(id), &e),
        },
    };
    // Assembled around the page's serialized items, which are only copied.
    let mut result = String::with_capacity(items.len() + 256);
    result.push_str("{\"");
    result.push_str(kind.key());
    result.push_str("\":");
    result.push_str(&items);
    if let Some((b, c)) = next {
        let cursor = encode_cursor(&Position {
            l: kind.key().into(),
            r: session.route.key.clone(),
            b,
            c,
        });
        result.push_str(",\"nextCursor\":");
        result.push_str(&Value::String(cursor).to_string());
    }
    if session.client.era == mcp::Era::Stateless {
        let (ttl_ms, private) = cache_hints(&merged);
        let scope = if private { "private" } else { "public" };
        result.push_str(&format!(
            ",\"resultType\":\"complete\",\"ttlMs\":{ttl_ms},\"cacheScope\":\"{scope}\""
        ));
    }
    result.push('}');
    match serde_json::value::RawValue::from_string(result) {
        Ok(raw) => Envelope::result(id, raw),
        Err(_) => Envelope::error(
            Some(id),
            mcp::code::INTERNAL_ERROR,
            "list not serializable",
            None,
        ),
    }
}

/// 2026-07-28 cache hints of a merged list: the least TTL of its parts (less
/// the time it has been cached), `private` when any part is or said nothing.
fn cache_hints(merged: &Merged) -> (u64, bool) {
    let age = merged.fetched.elapsed().as_millis().min(u64::MAX as u128) as u64;
    let mut ttl = u64::MAX;
    let mut private = false;
    for list in merged.backends.iter().flatten() {
        ttl = ttl.min(list.ttl_ms.unwrap_or(0));
        private |= list.private;
    }
    if ttl == u64::MAX {
        ttl = 0;
    }
    (ttl.saturating_sub(age), private)
}

/// Where the next page starts: (backend index, its cursor), or the end.
type Next = Option<(usize, Option<Value>)>;

/// The items at `start` and where the next page starts; `None` when the
/// catalog has no page for that backend cursor.
fn page_at(merged: &Merged, start: &Position) -> Option<(Arc<str>, Next)> {
    if start.c.is_none() {
        // A list's first page, or a backend's: skip backends with nothing.
        let Some(b) = first_nonempty(merged, start.b) else {
            return Some((Arc::from("[]"), None));
        };
        let list = merged.backends.get(b)?.as_ref()?;
        let page = list.pages.iter().find(|p| !p.items.is_empty())?;
        return Some((page.raw.clone(), next_after(merged, b, page)));
    }
    let list = merged.backends.get(start.b)?.as_ref()?;
    let page = list.pages.iter().find(|p| p.cursor == start.c)?;
    Some((page.raw.clone(), next_after(merged, start.b, page)))
}

fn next_after(merged: &Merged, b: usize, page: &Page) -> Next {
    match &page.next {
        Some(c) => Some((b, Some(c.clone()))),
        None => first_nonempty(merged, b + 1).map(|b| (b, None)),
    }
}

fn first_nonempty(merged: &Merged, from: usize) -> Option<usize> {
    (from..merged.backends.len()).find(|b| {
        merged
            .backends
            .get(*b)
            .and_then(Option::as_ref)
            .is_some_and(|l| !l.is_empty())
    })
}

/// A snapshot of the merged list of `kind`, fetched (again) when missing,
/// stale or missing a backend. `params` are the client's, cursor removed.
async fn ensure(
    session: &Arc<Session>,
    kind: ListKind,
    params: Option<Box<serde_json::value::RawValue>>,
    out: &Out,
) -> Result<Arc<Merged>, BackendError> {
    if let Some(m) = cached(session, kind) {
        return Ok(m);
    }
    let _one_fetch = session.catalog.refresh.lock().await;
    if let Some(m) = cached(session, kind) {
        return Ok(m);
    }
    let (generation, known) = match session.catalog.lists.lock() {
        Ok(l) => (
            l.generation[kind.slot()],
            l.merged[kind.slot()]
                .as_ref()
                .filter(|m| m.fresh())
                .map(|m| m.backends.clone()),
        ),
        Err(_) => (0, None),
    };
    let gateway = session.gateway();
    let (ttl, strict) = gateway
        .as_ref()
        .map(|g| {
            (
                g.config.multiplex.catalog_ttl,
                g.config.multiplex.failure_mode == FailureMode::Strict,
            )
        })
        .unwrap_or((Duration::ZERO, false));
    // A fresh list missing a backend asks only that backend again.
    let fetches = (0..session.upstream_count()).map(|index| {
        let session = session.clone();
        let params = params.clone();
        let have = known.as_ref().and_then(|k| k.get(index).cloned().flatten());
        async move {
            match have {
                Some(list) => Ok(list),
                None => fetch_all(&session, kind, index, params, out)
                    .await
                    .map(Arc::new),
            }
        }
    });
    let results = futures::future::join_all(fetches).await;
    let mut backends = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(list) => backends.push(Some(list)),
            Err(e) if strict => return Err(e),
            Err(e) => {
                tracing::warn!(
                    session.id = %session.id,
                    backend = session.upstream_name(index),
                    error = %e,
                    "backend left out of a merged list"
                );
                if let Some(g) = &gateway {
                    g.metrics
                        .backend_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                backends.push(None);
            }
        }
    }
    if kind == ListKind::Resources {
        disambiguate_uris(session, &mut backends);
    }
    // A backend's positive ttlMs shortens the catalog's life. Its 0 (the
    // SDKs' default: "clients, do not cache") is passed on to clients but
    // does not turn the catalog off: multiplex.catalog_ttl_s is the
    // operator's bound on staleness for servers that cannot announce changes.
    let least_backend_ttl = backends
        .iter()
        .flatten()
        .filter_map(|l| l.ttl_ms)
        .filter(|t| *t > 0)
        .min()
        .map(Duration::from_millis);
    let merged = Arc::new(Merged {
        fetched: Instant::now(),
        ttl: least_backend_ttl.map_or(ttl, |t| t.min(ttl)),
        backends,
    });
    if let Ok(mut lists) = session.catalog.lists.lock() {
        index_catalog(&mut lists, kind, &merged);
        // A list_changed during the fetch: serve what was fetched to this
        // caller, but do not keep it.
        if lists.generation[kind.slot()] == generation {
            lists.merged[kind.slot()] = Some(Merged {
                fetched: merged.fetched,
                ttl: merged.ttl,
                backends: merged.backends.clone(),
            });
        }
    }
    Ok(merged)
}

fn cached(session: &Session, kind: ListKind) -> Option<Arc<Merged>> {
    let lists = session.catalog.lists.lock().ok()?;
    let m = lists.merged[kind.slot()]
        .as_ref()
        .filter(|m| m.fresh() && m.complete())?;
    Some(Arc::new(Merged {
        fetched: m.fetched,
        ttl: m.ttl,
        backends: m.backends.clone(),
    }))
}

/// Records which backend listed what, for routing by name and URI.
fn index_catalog(lists: &mut Lists, kind: ListKind, merged: &Merged) {
    match kind {
        ListKind::Tools | ListKind::Prompts => {
            if kind == ListKind::Tools {
                lists.tools.clear();
            }
            for (index, list) in merged.backends.iter().enumerate() {
                let Some(list) = list else { continue };
                for item in list.pages.iter().flat_map(|p| &p.items) {
                    if kind == ListKind::Tools
                        && let Some(name) = item.get("name").and_then(Value::as_str)
                    {
                        lists.tools.insert(name.to_owned(), (index, item.clone()));
                    }
                }
            }
        }
        ListKind::Resources => {
            lists.uris.clear();
            for (index, list) in merged.backends.iter().enumerate() {
                let Some(list) = list else { continue };
                for item in list.pages.iter().flat_map(|p| &p.items) {
                    let public = item.get("uri").and_then(Value::as_str);
                    let own = item
                        .get("_meta")
                        .and_then(|m| m.get(OWN_URI_META))
                        .and_then(Value::as_str)
                        .or(public);
                    if let (Some(public), Some(own)) = (public, own) {
                        lists
                            .uris
                            .insert(public.to_owned(), (index, own.to_owned()));
                        // The bare form of a URI several backends list goes
                        // to the first of them (configuration order).
                        lists
                            .uris
                            .entry(own.to_owned())
                            .or_insert((index, own.to_owned()));
                    }
                }
            }
        }
        ListKind::Templates => {
            lists.templates.clear();
            for (index, list) in merged.backends.iter().enumerate() {
                let Some(list) = list else { continue };
                for item in list.pages.iter().flat_map(|p| &p.items) {
                    if let Some(t) = item.get("uriTemplate").and_then(Value::as_str) {
                        let prefix = t.split('{').next().unwrap_or_default().to_owned();
                        lists.templates.push((prefix, index));
                    }
                }
            }
        }
    }
}

/// Where a disambiguated resource keeps its backend's URI (gateway-private
/// `_meta` key; clients may ignore it).
const OWN_URI_META: &str = "mcp-gateway/uri";

/// A URI listed by two backends becomes `{backend}+{uri}` in each.
fn disambiguate_uris(session: &Session, backends: &mut [Option<Arc<BackendList>>]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for list in backends.iter().flatten() {
        let mut mine = std::collections::HashSet::new();
        for item in list.pages.iter().flat_map(|p| &p.items) {
            if let Some(uri) = item.get("uri").and_then(Value::as_str)
                && mine.insert(uri.to_owned())
            {
                *seen.entry(uri.to_owned()).or_default() += 1;
            }
        }
    }
    if seen.values().all(|n| *n < 2) {
        return;
    }
    for (index, slot) in backends.iter_mut().enumerate() {
        let Some(list) = slot else { continue };
        let backend = session.upstream_name(index).to_owned();
        let pages = list
            .pages
            .iter()
            .map(|p| {
                let items = p
                    .items
                    .iter()
                    .map(|item| {
                        let mut item = item.clone();
                        let uri = item.get("uri").and_then(Value::as_str).map(str::to_owned);
                        if let (Some(uri), Some(obj)) = (uri, item.as_object_mut())
                            && seen.get(&uri).is_some_and(|n| *n > 1)
                        {
                            obj.insert(
                                "uri".into(),
                                Value::String(format!("{backend}{URI_SEPARATOR}{uri}")),
                            );
                            let meta = obj
                                .entry("_meta")
                                .or_insert_with(|| Value::Object(Map::new()));
                            if let Some(meta) = meta.as_object_mut() {
                                meta.insert(OWN_URI_META.into(), Value::String(uri));
                            }
                        }
                        item
                    })
                    .collect();
                Page::new(p.cursor.clone(), items, p.next.clone())
            })
            .collect();
        *slot = Some(Arc::new(BackendList {
            pages,
            ttl_ms: list.ttl_ms,
            private: list.private,
        }));
    }
}

/// Every page of one backend's list, items in public form.
async fn fetch_all(
    session: &Arc<Session>,
    kind: ListKind,
    index: usize,
    params: Option<Box<serde_json::value::RawValue>>,
    out: &Out,
) -> Result<BackendList, BackendError> {
    let mut pages: Vec<Page> = Vec::new();
    let mut cursor: Option<Value> = None;
    let mut ttl_ms: Option<u64> = None;
    let mut private = false;
    for _ in 0..MAX_PAGES {
        let (page, hints) =
            fetch_one(session, kind, index, params.clone(), cursor.clone(), out).await?;
        ttl_ms = match (ttl_ms, hints.0) {
            (None, t) => t,
            (Some(a), Some(b)) => Some(a.min(b)),
            (Some(_), None) => Some(0),
        };
        private |= hints.1;
        cursor = page.next.clone();
        // A backend that hands back the cursor it was given would loop.
        let repeats = cursor.is_some() && pages.iter().any(|p| p.cursor == cursor);
        pages.push(page);
        if cursor.is_none() || repeats {
            if let Some(last) = pages.last_mut().filter(|_| repeats) {
                last.next = None;
            }
            break;
        }
    }
    Ok(BackendList {
        pages,
        ttl_ms,
        private,
    })
}

/// One page from one backend: (the page, (its `ttlMs`, whether private)).
async fn fetch_one(
    session: &Arc<Session>,
    kind: ListKind,
    index: usize,
    params: Option<Box<serde_json::value::RawValue>>,
    cursor: Option<Value>,
    out: &Out,
) -> Result<(Page, (Option<u64>, bool)), BackendError> {
    let page_params = match &cursor {
        None => params,
        Some(c) => Some(edit_params(params.as_deref(), |p| {
            p.insert("cursor".into(), c.clone());
        })),
    };
    let payload = session
        .forward(index, kind.method(), page_params, out, None)
        .await?;
    let result = match payload {
        ResponsePayload::Result(r) => r,
        ResponsePayload::Error(e) => {
            // A backend without this capability answers -32601: it has
            // nothing to list, which is not a failure of the route.
            let code = serde_json::from_str::<Value>(e.get())
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_i64));
            if code != Some(mcp::code::METHOD_NOT_FOUND) {
                tracing::warn!(
                    backend = session.upstream_name(index),
                    code = ?code,
                    "backend refused a list; listed as empty"
                );
            }
            return Ok((Page::new(cursor, Vec::new(), None), (None, true)));
        }
    };
    let mut obj: Map<String, Value> = serde_json::from_str(result.get()).unwrap_or_default();
    let ttl_ms = obj.get("ttlMs").and_then(Value::as_u64);
    let private = obj.get("cacheScope").and_then(Value::as_str) != Some("public");
    let items = match obj.remove(kind.key()) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let next = obj.remove("nextCursor").filter(|c| !c.is_null());
    let items = items
        .into_iter()
        .filter_map(|item| present(session, kind, index, item))
        .collect();
    Ok((Page::new(cursor, items, next), (ttl_ms, private)))
}

/// An item as clients of this route see it: curated, prefixed, checked.
fn present(session: &Session, kind: ListKind, index: usize, item: Value) -> Option<Value> {
    let Value::Object(mut obj) = item else {
        return None;
    };
    let backend = session.route.backends.get(index)?;
    match kind {
        ListKind::Tools => {
            obj = backend.config.tools.present(obj)?;
            if session.route.prefixed {
                let own = obj.get("name").and_then(Value::as_str)?;
                let public = session.route.public_name(index, own);
                if let Err(problem) = curation::check_tool_name(&public) {
                    // Never truncated: a name that breaks the rules is left
                    // out, loudly, with the way to fix it.
                    tracing::error!(
                        backend = backend.name(),
                        tool = own,
                        problem = %problem,
                        "tool left out of the merged list; give it a shorter or valid name with backends[].tools.rename"
                    );
                    return None;
                }
                obj.insert("name".into(), Value::String(public));
            }
        }
        ListKind::Prompts if session.route.prefixed => {
            let own = obj.get("name").and_then(Value::as_str)?;
            let public = session.route.public_name(index, own);
            obj.insert("name".into(), Value::String(public));
        }
        _ => {}
    }
    Some(Value::Object(obj))
}

/// Applies a backend's curation to a `tools/list` result passed through a
/// single-backend route (names unprefixed, the server's cursors as they are).
pub(super) fn curate_tools_result(
    session: &Session,
    index: usize,
    result: Box<serde_json::value::RawValue>,
) -> Box<serde_json::value::RawValue> {
    let Some(backend) = session.route.backends.get(index) else {
        return result;
    };
    if backend.config.tools.is_empty() {
        return result;
    }
    let Ok(mut obj) = serde_json::from_str::<Map<String, Value>>(result.get()) else {
        return result;
    };
    if let Some(Value::Array(tools)) = obj.remove("tools") {
        let shown: Vec<Value> = tools
            .into_iter()
            .filter_map(|t| present(session, ListKind::Tools, index, t))
            .collect();
        obj.insert("tools".into(), Value::Array(shown));
    }
    to_raw(&obj)
}

/// Whether every backend of the route must answer (strict failure mode).
pub(super) fn strict(session: &Session) -> bool {
    session
        .gateway()
        .is_some_and(|g| g.config.multiplex.failure_mode == FailureMode::Strict)
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
            if strict(session) {
                return backend_error_response(Some(id), &e);
            }
        }
    }
    Envelope::result(id, to_raw(&serde_json::json!({})))
}

/// The capabilities of a multiplexed route, from its reachable backends
/// (rules per capability in `src/mcp/README.md`): a capability is
/// advertised when at least one backend has it and a boolean flag when any
/// backend sets it, since every request is routed to a backend that has
/// it; `tasks` is left out, as tasks are relayed on single-backend routes only.
pub(super) fn merge_capabilities(facts: &[ServerFacts]) -> Value {
    let mut merged = Value::Object(Map::new());
    for f in facts {
        merge_into(&mut merged, &f.capabilities);
    }
    if let Some(obj) = merged.as_object_mut() {
        obj.remove("tasks");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let p = Position {
            l: "tools".into(),
            r: String::new(),
            b: 1,
            c: Some(Value::String("page-2".into())),
        };
        let c = Value::String(encode_cursor(&p));
        assert_eq!(decode_cursor(&c, ListKind::Tools, ""), Ok(p.clone()));
        assert_eq!(
            decode_cursor(&c, ListKind::Prompts, ""),
            Err(CursorError::Foreign)
        );
        assert_eq!(
            decode_cursor(&c, ListKind::Tools, "demo"),
            Err(CursorError::Foreign)
        );
        // Another position with this cursor's signature.
        let text = c.as_str().unwrap_or_default();
        let (_, tag) = text.split_once('.').unwrap_or_default();
        let forged = Position { b: 0, ..p };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap_or_default());
        assert_eq!(
            decode_cursor(&Value::String(format!("{body}.{tag}")), ListKind::Tools, ""),
            Err(CursorError::BadSignature)
        );
        for bad in ["", "abc", "a.b", "!!.??"] {
            assert!(decode_cursor(&Value::String(bad.into()), ListKind::Tools, "").is_err());
        }
        assert_eq!(
            decode_cursor(&Value::from(3), ListKind::Tools, ""),
            Err(CursorError::NotAString)
        );
    }

    fn list(ttl_ms: Option<u64>, private: bool) -> Option<Arc<BackendList>> {
        Some(Arc::new(BackendList {
            pages: Vec::new(),
            ttl_ms,
            private,
        }))
    }

    fn hints(backends: Vec<Option<Arc<BackendList>>>) -> (u64, bool) {
        let merged = Merged {
            fetched: Instant::now(),
            ttl: Duration::from_secs(60),
            backends,
        };
        let (ttl, private) = cache_hints(&merged);
        // Rounded down to whole seconds: the snapshot ages while we look.
        (ttl / 1000 * 1000, private)
    }

    #[test]
    fn merged_cache_hints_take_the_least_ttl_and_any_private() {
        assert_eq!(
            hints(vec![list(Some(30_000), false), list(Some(10_500), false)]),
            (10_000, false)
        );
        assert_eq!(
            hints(vec![list(Some(30_000), false), list(Some(20_000), true)]),
            (20_000, true)
        );
        // A handshake-era part says nothing: not cacheable, private.
        assert_eq!(
            hints(vec![list(Some(30_000), false), list(None, true)]),
            (0, true)
        );
        // A backend left out does not count.
        assert_eq!(hints(vec![list(Some(5_000), false), None]), (5_000, false));
    }
}
