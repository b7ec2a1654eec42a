//! The revocation list: entries revoking every credential with a given
//! `jti`, `sub`, `client_id` or `tenant`, optionally until a time. Read per
//! message through an `ArcSwap` snapshot (hash lookups, no lock); written by
//! the admin API, persisted to `auth.revocations_file` (written to a
//! temporary file and renamed, so a crash never leaves half a list) and
//! announced on a `watch` channel so open streams end at once.
//!
//! A `sub` revocation also matches an actor of the delegation chain: revoking
//! a misbehaving agent stops it whoever it acts for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use super::Principal;

/// What a revocation matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedBy {
    Jti,
    Sub,
    ClientId,
    Tenant,
}

impl std::fmt::Display for RevokedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RevokedBy::Jti => "jti",
            RevokedBy::Sub => "sub",
            RevokedBy::ClientId => "client_id",
            RevokedBy::Tenant => "tenant",
        })
    }
}

/// One stored revocation, as the admin API shows it:
/// `{"id", "<kind>": "<value>", "until"?, "created"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: String,
    pub by: RevokedBy,
    pub value: String,
    /// Unix seconds; `None` = forever.
    pub until: Option<i64>,
    pub created: i64,
}

impl Revocation {
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("id".into(), self.id.clone().into());
        obj.insert(self.by.to_string(), self.value.clone().into());
        if let Some(until) = self.until {
            obj.insert("until".into(), rfc3339(until).into());
        }
        obj.insert("created".into(), rfc3339(self.created).into());
        serde_json::Value::Object(obj)
    }

    /// Parses a stored entry or an admin request body. A body has no `id`
    /// or `created` (`new_id` and `now` fill them).
    pub fn from_json(
        value: &serde_json::Value,
        new_id: impl FnOnce() -> String,
        now: i64,
    ) -> Result<Revocation, String> {
        let serde_json::Value::Object(obj) = value else {
            return Err("expected a JSON object".into());
        };
        let mut target = None;
        for (key, by) in [
            ("jti", RevokedBy::Jti),
            ("sub", RevokedBy::Sub),
            ("client_id", RevokedBy::ClientId),
            ("tenant", RevokedBy::Tenant),
        ] {
            match obj.get(key) {
                None => {}
                Some(serde_json::Value::String(v)) if !v.is_empty() && v.len() <= 1024 => {
                    if target.is_some() {
                        return Err(
                            "give exactly one of \"jti\", \"sub\", \"client_id\", \"tenant\""
                                .into(),
                        );
                    }
                    target = Some((by, v.clone()));
                }
                Some(_) => return Err(format!("{key:?} must be a non-empty string")),
            }
        }
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "id" | "jti" | "sub" | "client_id" | "tenant" | "until" | "created"
            ) {
                return Err(format!("unknown field {key:?}"));
            }
        }
        let (by, value) =
            target.ok_or("give exactly one of \"jti\", \"sub\", \"client_id\", \"tenant\"")?;
        let until = match obj.get("until") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(parse_rfc3339(s)?),
            Some(_) => return Err("\"until\" must be an RFC 3339 time".into()),
        };
        let created = match obj.get("created") {
            Some(serde_json::Value::String(s)) => parse_rfc3339(s)?,
            _ => now,
        };
        let id = match obj.get("id") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => new_id(),
        };
        Ok(Revocation {
            id,
            by,
            value,
            until,
            created,
        })
    }

    fn active(&self, now: i64) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

fn parse_rfc3339(s: &str) -> Result<i64, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("{s:?} is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)"))
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A snapshot: entries and, per kind, value → latest `until` (None = forever).
#[derive(Default)]
struct Set {
    entries: Vec<Revocation>,
    /// jti, sub, client_id, tenant.
    index: [HashMap<String, Option<i64>>; 4],
}

fn slot(by: RevokedBy) -> usize {
    match by {
        RevokedBy::Jti => 0,
        RevokedBy::Sub => 1,
        RevokedBy::ClientId => 2,
        RevokedBy::Tenant => 3,
    }
}

impl Set {
    fn new(entries: Vec<Revocation>) -> Set {
        let mut index: [HashMap<String, Option<i64>>; 4] = Default::default();
        for e in &entries {
            let Some(map) = index.get_mut(slot(e.by)) else {
                continue;
            };
            let until = map.entry(e.value.clone()).or_insert(e.until);
            *until = match (*until, e.until) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
        }
        Set { entries, index }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn revoked(&self, by: RevokedBy, value: &str, now: i64) -> bool {
        self.index
            .get(slot(by))
            .and_then(|map| map.get(value))
            .is_some_and(|until| until.is_none_or(|u| now < u))
    }
}

pub enum CheckError {
    Revoked(RevokedBy),
    Unavailable(String),
    /// The shared copy (Redis) cannot be trusted to be current.
    StateUnavailable,
}

pub struct Store {
    path: Option<PathBuf>,
    set: ArcSwap<Set>,
    changes: watch::Sender<u64>,
    /// Serializes writers (admin requests); never held across an await.
    write: Mutex<()>,
    load_error: Option<String>,
    /// Set while the shared store (`[state]`) is unreachable and configured
    /// to fail closed: this copy may be missing revocations.
    shared_unavailable: AtomicBool,
}

impl Store {
    /// Opens the list, reading `path` when it exists. A file that exists
    /// but cannot be read or parsed is a `load_error`: every credential is
    /// then refused until it is fixed (a forgotten revocation is worse).
    pub fn open(path: Option<PathBuf>) -> Store {
        let (entries, load_error) = match &path {
            None => (Vec::new(), None),
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => match parse_file(&text) {
                    Ok(entries) => (entries, None),
                    Err(e) => (Vec::new(), Some(format!("{}: {e}", p.display()))),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
                Err(e) => (Vec::new(), Some(format!("{}: {e}", p.display()))),
            },
        };
        let (changes, _) = watch::channel(0);
        Store {
            path,
            set: ArcSwap::from_pointee(Set::new(entries)),
            changes,
            write: Mutex::new(()),
            load_error,
            shared_unavailable: AtomicBool::new(false),
        }
    }

    /// Marks the shared copy as (un)trustworthy; see `state`.
    pub fn set_shared_unavailable(&self, unavailable: bool) {
        self.shared_unavailable
            .store(unavailable, Ordering::Release);
    }

    pub fn load_error(&self) -> Option<String> {
        self.load_error.clone()
    }

    /// Notified after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(super) fn check(&self, principal: &Principal, jti: Option<&str>) -> Result<(), CheckError> {
        if let Some(e) = &self.load_error {
            return Err(CheckError::Unavailable(e.clone()));
        }
        if self.shared_unavailable.load(Ordering::Acquire) {
            return Err(CheckError::StateUnavailable);
        }
        let set = self.set.load();
        if set.is_empty() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if let Some(jti) = jti
            && set.revoked(RevokedBy::Jti, jti, now)
        {
            return Err(CheckError::Revoked(RevokedBy::Jti));
        }
        if set.revoked(RevokedBy::Sub, &principal.sub, now)
            || principal
                .actors
                .iter()
                .any(|a| set.revoked(RevokedBy::Sub, a, now))
        {
            return Err(CheckError::Revoked(RevokedBy::Sub));
        }
        if let Some(client) = &principal.client_id
            && set.revoked(RevokedBy::ClientId, client, now)
        {
            return Err(CheckError::Revoked(RevokedBy::ClientId));
        }
        if let Some(tenant) = &principal.tenant
            && set.revoked(RevokedBy::Tenant, tenant, now)
        {
            return Err(CheckError::Revoked(RevokedBy::Tenant));
        }
        Ok(())
    }

    /// The revocations in force, oldest first.
    pub fn list(&self) -> Vec<Revocation> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.set
            .load()
            .entries
            .iter()
            .filter(|e| e.active(now))
            .cloned()
            .collect()
    }

    /// Stores a revocation (from an admin request body) and persists the
    /// list; the stored entry comes back.
    pub fn add(&self, body: &serde_json::Value) -> Result<Revocation, StoreError> {
        let entry = self.new_entry(body)?;
        self.insert(entry.clone())?;
        Ok(entry)
    }

    /// A new entry from an admin request body, not stored yet.
    pub fn new_entry(&self, body: &serde_json::Value) -> Result<Revocation, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut entry = Revocation::from_json(body, new_id, now).map_err(StoreError::Invalid)?;
        // Ids are always ours.
        entry.id = new_id();
        entry.created = now;
        Ok(entry)
    }

    /// Stores an entry (replacing one with the same id) and persists the list.
    pub fn insert(&self, entry: Revocation) -> Result<(), StoreError> {
        self.update(|entries| {
            entries.retain(|e| e.id != entry.id);
            entries.push(entry);
            true
        })
        .map(|_| ())
    }

    /// Replaces the whole list with the shared one (`state`), persisting it
    /// when a file is configured; open streams re-check at once.
    pub fn replace_all(&self, shared: Vec<Revocation>) {
        let Ok(_writer) = self.write.lock() else {
            tracing::error!("shared revocations not applied: the revocation list is unavailable");
            return;
        };
        // The shared list applies even when the local file cannot be written.
        if let Some(path) = &self.path
            && let Err(e) = persist(path, &shared)
        {
            tracing::error!(error = %e, "shared revocations not saved locally");
        }
        self.set.store(Arc::new(Set::new(shared)));
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Lifts a revocation; false when there is none with that id.
    pub fn remove(&self, id: &str) -> Result<bool, StoreError> {
        self.update(|entries| {
            let before = entries.len();
            entries.retain(|e| e.id != id);
            entries.len() != before
        })
    }

    fn update(
        &self,
        change: impl FnOnce(&mut Vec<Revocation>) -> bool,
    ) -> Result<bool, StoreError> {
        let _writer = self.write.lock().map_err(|_| StoreError::Poisoned)?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut entries: Vec<Revocation> = self
            .set
            .load()
            .entries
            .iter()
            .filter(|e| e.active(now))
            .cloned()
            .collect();
        if !change(&mut entries) {
            return Ok(false);
        }
        if let Some(path) = &self.path {
            persist(path, &entries).map_err(StoreError::Persist)?;
        }
        self.set.store(Arc::new(Set::new(entries)));
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the revocation file: {0}")]
    Persist(String),
    #[error("the revocation list is unavailable")]
    Poisoned,
    #[error("state store unavailable")]
    StateUnavailable,
}

fn new_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique is what matters here, not secrecy.
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        return format!("r{nanos:x}");
    }
    hex::encode(bytes)
}

fn parse_file(text: &str) -> Result<Vec<Revocation>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(serde_json::Value::Array(items)) = doc.get("revocations") else {
        return Err("expected {\"revocations\": [...]}".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            Revocation::from_json(item, new_id, 0).map_err(|e| format!("revocations[{i}]: {e}"))
        })
        .collect()
}

fn persist(path: &std::path::Path, entries: &[Revocation]) -> Result<(), String> {
    use std::io::Write;
    let doc = serde_json::json!({
        "revocations": entries.iter().map(Revocation::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}
