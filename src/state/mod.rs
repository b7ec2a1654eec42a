//! state: what several replicas share through Redis (`[state] redis_url`).
//! In: admin writes (revocations) and the Redis pub/sub channel. Out: the
//! replica's local copies (the revocation `Store`), readiness, metrics.
//! Never on the per-message path: messages read local copies only (zero
//! Redis round trips per revocation check), and this module keeps them
//! current.
//!
//! Layout in Redis, every key and channel under `key_prefix`:
//! `{prefix}revocations` is a hash, revocation id → the entry's JSON; a
//! change is announced on the channel `{prefix}revocations` (the message is
//! the id) and every replica then reloads the whole hash. A replica that
//! reconnects reloads too, so a revocation published while it was away is
//! not missed.
//!
//! While Redis is unreachable (the subscription broke, or a ping got no
//! answer within `PING_TIMEOUT`), `on_unavailable = "deny"` fails closed:
//! credential checks answer "state store unavailable" (503), admin writes
//! are refused, `/readyz` is unready. `"local"` keeps serving from the last
//! view with a warning. Recovery needs no restart: the monitor reconnects.
//!
//! Sessions across replicas (with `session_key_env`): a sealed session id
//! carries its ticket (`seal`), so nothing about a live session is stored
//! here. Redis holds only what a ticket cannot say:
//! `{prefix}replica:{id}` → the replica's client-facing address, with a
//! short TTL a heartbeat refreshes (where requests of the sessions it owns
//! are forwarded; no key means the owner is gone), and
//! `{prefix}ended:{digest}` with a TTL, set when a client deletes a session,
//! announced on the channel `{prefix}sessions` so every replica drops its
//! copy, and checked once before a replica adopts or forwards a session.
//! A client's `notifications/cancelled` for a request not running on the
//! replica that received it is announced on `{prefix}cancels`
//! (`{digest} {request id}`): the replica running it aborts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::auth::revocation::{Revocation, StoreError};
use crate::config::{OnUnavailable, StateConfig};
use crate::session::Gateway;

pub mod limits;
pub mod seal;

/// A Redis command (or connection attempt) taking longer counts as down.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the subscription connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Wait between reconnection attempts while Redis is down.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How often a replica refreshes its registry key, and how long the key
/// outlives the last refresh: a replica killed without notice is seen gone
/// within `REPLICA_TTL`.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const REPLICA_TTL: Duration = Duration::from_secs(5);
/// How long an ended session stays ended for replicas that never held it.
/// Past this, adopting it finds the backend session gone (404 from the
/// backend), and the gateway session ends then.
const ENDED_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a client is told when a decision needs the state store and it is
/// unreachable (`data.reason`; 503 where the transport has a status).
pub const UNAVAILABLE_REASON: &str = "state store unavailable";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("state store did not answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("state store holds an unreadable revocation {id:?}: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("state store was not configured: {0}")]
    Setup(String),
}

/// The Redis connection of this replica and whether Redis is reachable.
pub struct StateStore {
    client: Option<redis::Client>,
    /// Reconnects by itself after a failed command.
    conn: Option<ConnectionManager>,
    prefix: String,
    on_unavailable: OnUnavailable,
    setup_error: Option<String>,
    up: AtomicBool,
    /// Times Redis was found unreachable (a counter for `/metrics`).
    n_unavailable: AtomicU64,
    /// Commands (or pipelines) sent on the command connection: what the
    /// request path must not grow (`/metrics`, BENCHMARKS.md).
    n_round_trips: AtomicU64,
    /// Revocations made while Redis was down (`on_unavailable = "local"`),
    /// written to Redis before the next resync so it does not forget them.
    /// Never held across an await.
    pending: Mutex<Vec<Revocation>>,
    /// This replica's id: `[state] replica_id` or random at start.
    replica_id: String,
    /// Where the other replicas reach this one's client listener, once
    /// bound (`[state] advertise_addr` wins).
    advertise_addr: Mutex<Option<String>>,
}

/// What Redis says about a session this replica does not hold.
#[derive(Debug, Default)]
pub struct SessionFacts {
    /// A client deleted it.
    pub ended: bool,
    /// The owner replica's address, if it is alive.
    pub owner_addr: Option<String>,
}

impl StateStore {
    /// `None` without `redis_url` (the in-memory default). Connects lazily:
    /// the monitor (`run`) makes the first connection.
    pub fn from_config(config: &StateConfig) -> Option<Arc<StateStore>> {
        let url = config.redis_url.as_ref()?;
        let connect = || -> Result<(redis::Client, ConnectionManager), redis::RedisError> {
            let client = redis::Client::open(url.expose())?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(OP_TIMEOUT))
                .set_response_timeout(Some(OP_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(RETRY_EVERY);
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
            Ok((client, conn))
        };
        let (client, conn, setup_error) = match connect() {
            Ok((client, conn)) => (Some(client), Some(conn), None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        Some(Arc::new(StateStore {
            client,
            conn,
            prefix: config.key_prefix.clone(),
            on_unavailable: config.on_unavailable,
            setup_error,
            up: AtomicBool::new(false),
            n_unavailable: AtomicU64::new(0),
            n_round_trips: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            replica_id: config
                .replica_id
                .clone()
                .unwrap_or_else(|| format!("r-{}", &crate::session::new_session_id()[..12])),
            advertise_addr: Mutex::new(config.advertise_addr.clone()),
        }))
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The bound client listener, registered unless `advertise_addr` says
    /// otherwise.
    pub fn set_listen_addr(&self, addr: std::net::SocketAddr) {
        if let Ok(mut a) = self.advertise_addr.lock()
            && a.is_none()
        {
            if addr.ip().is_unspecified() {
                tracing::warn!(
                    %addr,
                    "listening on all interfaces without [state] advertise_addr: other replicas \
                     forward this one's sessions to {addr}, which only works on this host"
                );
            }
            *a = Some(addr.to_string());
        }
    }

    fn replica_key(&self, id: &str) -> String {
        format!("{}replica:{id}", self.prefix)
    }

    fn ended_key(&self, digest: &str) -> String {
        format!("{}ended:{digest}", self.prefix)
    }

    fn sessions_channel(&self) -> String {
        format!("{}sessions", self.prefix)
    }

    fn cancels_channel(&self) -> String {
        format!("{}cancels", self.prefix)
    }

    /// Tells every replica that the client cancelled request `request_id`
    /// (JSON) of a session: the replica running it aborts it.
    pub async fn announce_cancel(&self, digest: &str, request_id: &str) -> Result<(), StateError> {
        let channel = self.cancels_channel();
        let message = format!("{digest} {request_id}");
        self.query(async |mut conn| {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&message)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Whether a session was ended, and where its owner is (one pipeline,
    /// once per replica per session it does not hold).
    pub async fn session_facts(
        &self,
        digest: &str,
        owner: &str,
    ) -> Result<SessionFacts, StateError> {
        let ended_key = self.ended_key(digest);
        let owner_key = self.replica_key(owner);
        let (ended, owner_addr): (bool, Option<String>) = self
            .query(async |mut conn| {
                redis::pipe()
                    .cmd("EXISTS")
                    .arg(&ended_key)
                    .cmd("GET")
                    .arg(&owner_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(SessionFacts { ended, owner_addr })
    }

    /// Where replica `id` is reached, if it is alive.
    pub async fn replica_addr(&self, id: &str) -> Result<Option<String>, StateError> {
        let key = self.replica_key(id);
        self.query(async |mut conn| redis::cmd("GET").arg(&key).query_async(&mut conn).await)
            .await
    }

    /// Marks a session ended for every replica and announces it.
    pub async fn end_session(&self, digest: &str) -> Result<(), StateError> {
        let key = self.ended_key(digest);
        let channel = self.sessions_channel();
        self.query(async |mut conn| {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(ENDED_TTL.as_millis() as u64)
                .ignore()
                .cmd("PUBLISH")
                .arg(&channel)
                .arg(digest)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Keeps `{prefix}replica:{id}` alive until shutdown, then removes it.
    async fn heartbeat(self: Arc<Self>, gw: Arc<Gateway>) {
        let key = self.replica_key(&self.replica_id);
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = gw.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Some(addr) = self.advertise_addr.lock().ok().and_then(|a| a.clone()) else {
                continue;
            };
            let set: Result<(), StateError> = self
                .query_in_background(async |mut conn| {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&addr)
                        .arg("PX")
                        .arg(REPLICA_TTL.as_millis() as u64)
                        .query_async(&mut conn)
                        .await
                })
                .await;
            if let Err(e) = set {
                tracing::debug!(error = %e, "replica registration not refreshed");
            }
        }
        // Gone at once for the others, instead of after the TTL.
        let _: Result<i64, StateError> = self
            .query_in_background(async |mut conn| {
                redis::cmd("DEL").arg(&key).query_async(&mut conn).await
            })
            .await;
    }

    /// What must be fixed before serving.
    pub fn startup_error(&self) -> Option<String> {
        self.setup_error.clone()
    }

    /// Whether Redis answered the last time it was asked.
    pub fn available(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn on_unavailable(&self) -> OnUnavailable {
        self.on_unavailable
    }

    fn revocations_key(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    fn conn(&self) -> Result<ConnectionManager, StateError> {
        self.conn
            .clone()
            .ok_or_else(|| StateError::Setup(self.setup_error.clone().unwrap_or_default()))
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        self.n_round_trips.fetch_add(1, Ordering::Relaxed);
        self.query_in_background(run).await
    }

    /// `query` for the replica's own housekeeping (the registry
    /// heartbeat): not counted with the round trips requests cause.
    async fn query_in_background<T: redis::FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        let conn = self.conn()?;
        match tokio::time::timeout(OP_TIMEOUT, run(conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StateError::Timeout(OP_TIMEOUT)),
        }
    }

    /// Every shared revocation (one HGETALL).
    pub async fn load_revocations(&self) -> Result<Vec<Revocation>, StateError> {
        let key = self.revocations_key();
        let stored: HashMap<String, String> = self
            .query(async |mut conn| redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await)
            .await?;
        let mut entries = Vec::with_capacity(stored.len());
        for (id, text) in stored {
            // Fail closed: an entry this replica cannot read may be a
            // revocation it would otherwise forget.
            let corrupt = |reason: String| StateError::Corrupt {
                id: id.clone(),
                reason,
            };
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
            let entry = Revocation::from_json(&value, || id.clone(), 0).map_err(corrupt)?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        // Expired entries leave Redis here, so the hash does not grow forever.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (expired, live): (Vec<Revocation>, Vec<Revocation>) = entries
            .into_iter()
            .partition(|e| e.until.is_some_and(|until| until <= now));
        if !expired.is_empty() {
            let ids: Vec<&str> = expired.iter().map(|e| e.id.as_str()).collect();
            let pruned: Result<i64, _> = self
                .query(async |mut conn| {
                    redis::cmd("HDEL")
                        .arg(&key)
                        .arg(&ids)
                        .query_async(&mut conn)
                        .await
                })
                .await;
            if let Err(e) = pruned {
                tracing::debug!(error = %e, "expired revocations not pruned yet");
            }
        }
        Ok(live)
    }

    /// Stores a revocation and announces it (one atomic pipeline).
    pub async fn store_revocation(&self, entry: &Revocation) -> Result<(), StateError> {
        let key = self.revocations_key();
        let json = entry.to_json().to_string();
        self.query(async |mut conn| {
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&key)
                .arg(&entry.id)
                .arg(&json)
                .ignore()
                .cmd("PUBLISH")
                .arg(&key)
                .arg(&entry.id)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Deletes a revocation and announces it; whether it existed.
    pub async fn delete_revocation(&self, id: &str) -> Result<bool, StateError> {
        let key = self.revocations_key();
        let (deleted,): (i64,) = self
            .query(async |mut conn| {
                redis::pipe()
                    .atomic()
                    .cmd("HDEL")
                    .arg(&key)
                    .arg(id)
                    .cmd("PUBLISH")
                    .arg(&key)
                    .arg(id)
                    .ignore()
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(deleted > 0)
    }

    fn mark_up(&self, gw: &Gateway) {
        gw.auth.revocations.set_shared_unavailable(false);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("state store reachable: shared revocations in sync");
        }
    }

    fn mark_down(&self, gw: &Gateway, error: &StateError) {
        let deny = self.on_unavailable == OnUnavailable::Deny;
        gw.auth.revocations.set_shared_unavailable(deny);
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if was_up || self.n_unavailable.load(Ordering::Relaxed) == 0 {
            self.n_unavailable.fetch_add(1, Ordering::Relaxed);
            if deny {
                tracing::error!(
                    error = %error,
                    "state store unavailable: requests that need shared state are denied until it returns"
                );
            } else {
                tracing::warn!(
                    error = %error,
                    "state store unavailable: on_unavailable = \"local\", serving from this replica's last view"
                );
            }
        }
    }

    /// Reloads the shared revocations into the local copy, after sharing
    /// the ones made locally while Redis was away.
    async fn resync(&self, gw: &Gateway) -> Result<(), StateError> {
        let pending = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for (i, entry) in pending.iter().enumerate() {
            if let Err(e) = self.store_revocation(entry).await {
                if let Ok(mut p) = self.pending.lock() {
                    p.extend(pending.get(i..).unwrap_or_default().iter().cloned());
                }
                return Err(e);
            }
            tracing::info!(id = %entry.id, "revocation made while the state store was away now shared");
        }
        let entries = self.load_revocations().await?;
        // Availability first: the copy's change notification wakes the
        // streams, which must then see the store as usable again.
        self.mark_up(gw);
        gw.auth.revocations.replace_all(entries);
        Ok(())
    }

    /// One subscription: subscribe, resync, then follow announcements and
    /// ping until the connection fails or the gateway shuts down.
    async fn follow(&self, gw: &Gateway) -> Result<(), StateError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| StateError::Setup(self.setup_error.clone().unwrap_or_default()))?;
        let mut pubsub = tokio::time::timeout(OP_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| StateError::Timeout(OP_TIMEOUT))??;
        tokio::time::timeout(OP_TIMEOUT, pubsub.subscribe(self.revocations_key()))
            .await
            .map_err(|_| StateError::Timeout(OP_TIMEOUT))??;
        let sessions = self.sessions_channel();
        tokio::time::timeout(OP_TIMEOUT, pubsub.subscribe(&sessions))
            .await
            .map_err(|_| StateError::Timeout(OP_TIMEOUT))??;
        let cancels = self.cancels_channel();
        tokio::time::timeout(OP_TIMEOUT, pubsub.subscribe(&cancels))
            .await
            .map_err(|_| StateError::Timeout(OP_TIMEOUT))??;
        let (mut sink, mut messages) = pubsub.split();
        // Subscribed before reading: nothing announced in between is missed.
        self.resync(gw).await?;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = gw.shutdown.cancelled() => return Ok(()),
                message = messages.next() => match message {
                    Some(m) if m.get_channel_name() == sessions => {
                        if let Ok(digest) = m.get_payload::<String>() {
                            gw.end_local_session_by_digest(&digest);
                        }
                    }
                    Some(m) if m.get_channel_name() == cancels => {
                        if let Ok(payload) = m.get_payload::<String>()
                            && let Some((digest, request_id)) = payload.split_once(' ')
                        {
                            gw.cancel_local_request(digest, request_id);
                        }
                    }
                    Some(_) => self.resync(gw).await?,
                    None => return Err(StateError::Redis(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "subscription connection closed",
                    )))),
                },
                // In subscribed mode the answer is ["pong", ""]: any answer will do.
                _ = ping.tick() => {
                    tokio::time::timeout(OP_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| StateError::Timeout(OP_TIMEOUT))??;
                }
            }
        }
    }

    /// The monitor: keeps the subscription (and so the local copies and
    /// the availability flag) alive until shutdown.
    pub async fn run(self: Arc<Self>, gw: Arc<Gateway>) {
        loop {
            let error = match self.follow(&gw).await {
                Ok(()) => return,
                Err(e) => e,
            };
            self.mark_down(&gw, &error);
            tokio::select! {
                _ = gw.shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }

    /// Prometheus lines for `/metrics`.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP mcp_gateway_state_store_up Whether the shared state store (Redis) is reachable.\n\
             # TYPE mcp_gateway_state_store_up gauge\n\
             mcp_gateway_state_store_up {}\n\
             # HELP mcp_gateway_state_store_unavailable_total Times the shared state store was found unreachable.\n\
             # TYPE mcp_gateway_state_store_unavailable_total counter\n\
             mcp_gateway_state_store_unavailable_total {}\n\
             # HELP mcp_gateway_state_store_round_trips_total Commands and pipelines sent to the shared state store.\n\
             # TYPE mcp_gateway_state_store_round_trips_total counter\n\
             mcp_gateway_state_store_round_trips_total {}\n",
            u8::from(self.available()),
            self.n_unavailable.load(Ordering::Relaxed),
            self.n_round_trips.load(Ordering::Relaxed),
        )
    }
}

/// Starts the monitor when shared state is configured. Until the first
/// sync, the local copy is not trusted (fail closed) unless
/// `on_unavailable = "local"`.
pub fn start(gw: &Arc<Gateway>) -> Result<(), StateError> {
    let Some(state) = &gw.state else {
        return Ok(());
    };
    if let Some(error) = state.startup_error() {
        return Err(StateError::Setup(error));
    }
    gw.auth
        .revocations
        .set_shared_unavailable(state.on_unavailable == OnUnavailable::Deny);
    tokio::spawn(state.clone().run(gw.clone()));
    tokio::spawn(state.clone().heartbeat(gw.clone()));
    Ok(())
}

/// Why `/readyz` must say unready, if the state store is the reason. With
/// `on_unavailable = "local"` the replica still serves (metrics and logs
/// say Redis is down), so the load balancer keeps sending it traffic.
pub fn not_ready(gw: &Gateway) -> Option<&'static str> {
    let state = gw.state.as_ref()?;
    (state.on_unavailable == OnUnavailable::Deny && !state.available())
        .then_some("state store unavailable")
}

/// `POST /admin/revocations`: stored in Redis and announced when shared
/// state is configured, else (or with `on_unavailable = "local"` while
/// Redis is down) only in this replica's list.
pub async fn revoke(gw: &Gateway, body: &serde_json::Value) -> Result<Revocation, StoreError> {
    let store = &gw.auth.revocations;
    let Some(state) = &gw.state else {
        return store.add(body);
    };
    let entry = store.new_entry(body)?;
    match state.store_revocation(&entry).await {
        Ok(()) => {}
        Err(e) if state.on_unavailable == OnUnavailable::Local => {
            tracing::warn!(error = %e, id = %entry.id, "revocation kept on this replica until the state store returns");
            if let Ok(mut pending) = state.pending.lock() {
                pending.push(entry.clone());
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation refused: state store unavailable");
            return Err(StoreError::StateUnavailable);
        }
    }
    // At once here; the announcement brings it to the other replicas.
    store.insert(entry.clone())?;
    Ok(entry)
}

/// `DELETE /admin/revocations/{id}`: whether a revocation was lifted.
pub async fn lift(gw: &Gateway, id: &str) -> Result<bool, StoreError> {
    let store = &gw.auth.revocations;
    let Some(state) = &gw.state else {
        return store.remove(id);
    };
    let shared = match state.delete_revocation(id).await {
        Ok(deleted) => deleted,
        // A lift is not queued: when Redis returns the revocation is back
        // (the safe direction) and must be lifted again.
        Err(e) if state.on_unavailable == OnUnavailable::Local => {
            tracing::warn!(error = %e, id, "revocation lifted on this replica only, until the state store returns");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation not lifted: state store unavailable");
            return Err(StoreError::StateUnavailable);
        }
    };
    Ok(store.remove(id)? || shared)
}
