//! limits: rate limits and concurrency caps keyed by tenant, principal,
//! agent, backend and tool. Never blocks: it answers admit or reject.
//!
//! Rates are GCRA token buckets (`governor`), one keyed limiter per limit:
//! `[[tenants]] rate_limit` (a bucket per tenant), `[limits] per_principal`
//! (per tenant + subject), `per_agent` (per `client_id`) and each
//! `[[limits.rules]]` entry (one bucket, or one per value of the keys given
//! as `"*"`). Every limit that matches a call applies; they are taken in
//! that order and the first that refuses answers (the ones before it have
//! spent their token). Concurrency caps (`max_in_flight_per_principal`,
//! `max_in_flight_per_backend`) are counters held by an `InFlight` guard.
//!
//! Memory is bounded: `evict_idle` (run every few seconds) drops buckets
//! that are full again, and a limit found holding `max_rate_keys` buckets
//! (it looks every 64 calls, so it may exceed that by 64) evicts at once; if it is still full every bucket is busy, and a new key is
//! refused (fail closed) until some refill.
//!
//! Hot reload: `reload` swaps the set of limits; a limit whose definition
//! (kind, match and rate) is unchanged keeps its buckets, so only callers of
//! a changed limit start afresh.
//!
//! Shared buckets: with `[state] redis_url` the same rate limits are kept
//! in Redis instead (`state::limits`, GCRA in one Lua script), so the rate
//! holds across replicas: every bucket a message spends is decided in one
//! round trip, all or nothing. While Redis is unreachable,
//! `on_unavailable = "deny"` refuses the message ("state store
//! unavailable") and `"local"` falls back to this replica's own buckets
//! with a warning. Concurrency caps stay per replica (they guard this
//! replica's resources).
//!
//! Bounds that are not rates (body size, sessions per principal, in-flight
//! per session, queue depths) are enforced where the resource lives, with
//! the keys of `[limits]`.

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::Digest as _;

use crate::auth::Principal;
use crate::config::{LimitRule, OnUnavailable, Rate, RateLimits};
use crate::mcp::{Call, Target};
use crate::state::StateStore;
use crate::state::limits::SharedBucket;

/// How often (in calls) a limit compares its bucket count with
/// `max_rate_keys`.
const KEY_CHECK_EVERY: u64 = 64;

/// Retry hint when a concurrency cap refuses (no bucket says when).
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admit,
    Reject {
        retry_after: Duration,
        reason: String,
    },
}

/// Why `admit` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A rate limit or concurrency cap (-32005), and when to try again.
    Limited {
        retry_after: Duration,
        reason: String,
    },
    /// The shared buckets cannot be reached and `on_unavailable = "deny"`.
    StateUnavailable,
}

/// `data.retry_after_ms`: rounded up, so a client waiting that long finds
/// a token.
pub fn retry_after_ms(wait: Duration) -> u64 {
    let ms = wait.as_micros().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tenant,
    Principal,
    Agent,
    Rule,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::Principal => "principal",
            Kind::Agent => "agent",
            Kind::Rule => "rule",
        }
    }
}

/// One configured limit and its buckets.
struct Limit {
    kind: Kind,
    /// What the limit applies to (for tenants: `tenant` set to the name).
    matcher: LimitRule,
    /// Kind + match + rate: equal definitions share buckets across reloads.
    identity: String,
    /// A short digest of `identity`: the limit's part of its Redis keys,
    /// so a changed limit starts afresh there too.
    shared_id: String,
    buckets: Arc<Keyed>,
    calls: AtomicU64,
}

struct Settings {
    limits: Vec<Limit>,
    max_keys: usize,
    in_flight_principal: Option<usize>,
    in_flight_backend: Option<usize>,
}

/// What a call is, for matching.
struct Facts<'a> {
    tenant: Option<&'a str>,
    /// Tenant and subject: the principal's bucket key.
    principal: &'a str,
    subject: &'a str,
    agent: Option<&'a str>,
    backend: Option<&'a str>,
    tool: Option<&'a str>,
}

/// A principal's bucket key: tenant and subject.
fn principal_key(principal: &Principal) -> String {
    format!(
        "{}\u{0}{}",
        principal.tenant.as_deref().unwrap_or(""),
        principal.sub
    )
}

impl<'a> Facts<'a> {
    fn of(
        principal: &'a Principal,
        principal_key: &'a str,
        call: &'a Call,
        backend: Option<&'a str>,
    ) -> Facts<'a> {
        // The backend's own tool name, without the multiplexing prefix.
        let tool = match (&call.target, backend) {
            (Target::Tool(name), Some(b)) => Some(
                name.strip_prefix(b)
                    .and_then(|rest| rest.strip_prefix("__"))
                    .unwrap_or(name),
            ),
            (Target::Tool(name), None) => Some(name.as_str()),
            _ => None,
        };
        Facts {
            tenant: principal.tenant.as_deref(),
            principal: principal_key,
            subject: &principal.sub,
            agent: principal.client_id.as_deref(),
            backend,
            tool,
        }
    }
}

#[derive(Default)]
struct Rejections {
    tenant: AtomicU64,
    principal: AtomicU64,
    agent: AtomicU64,
    rule: AtomicU64,
    keys: AtomicU64,
    in_flight_principal: AtomicU64,
    in_flight_backend: AtomicU64,
}

pub struct Limiter {
    settings: ArcSwap<Settings>,
    in_flight: Arc<DashMap<String, usize>>,
    rejections: Rejections,
    /// Rates are decided in Redis when set (`[state] redis_url`).
    shared: Option<Arc<StateStore>>,
    /// Deciding locally because Redis is unreachable (`on_unavailable =
    /// "local"`): logged once when it starts and once when it ends.
    falling_back: AtomicBool,
    n_local_fallback: AtomicU64,
}

/// Holds a concurrency slot until dropped.
pub struct InFlight {
    map: Arc<DashMap<String, usize>>,
    keys: Vec<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for key in &self.keys {
            release(&self.map, key);
        }
    }
}

fn release(map: &DashMap<String, usize>, key: &str) {
    map.remove_if_mut(key, |_, n| {
        *n = n.saturating_sub(1);
        *n == 0
    });
}

fn quota(rate: Rate) -> Quota {
    Quota::per_second(rate.per_second).allow_burst(rate.burst)
}

impl Limiter {
    pub fn unlimited() -> Arc<Limiter> {
        Limiter::new(&RateLimits::default())
    }

    pub fn new(config: &RateLimits) -> Arc<Limiter> {
        Limiter::with_state(config, None)
    }

    /// Rates kept in `shared` (Redis) when given, else in this process.
    pub fn with_state(config: &RateLimits, shared: Option<Arc<StateStore>>) -> Arc<Limiter> {
        Arc::new(Limiter {
            settings: ArcSwap::from_pointee(build(config, &[])),
            in_flight: Arc::new(DashMap::new()),
            rejections: Rejections::default(),
            shared,
            falling_back: AtomicBool::new(false),
            n_local_fallback: AtomicU64::new(0),
        })
    }

    /// Replaces the limits; unchanged ones keep their buckets.
    pub fn reload(&self, config: &RateLimits) {
        let old = self.settings.load();
        self.settings.store(Arc::new(build(config, &old.limits)));
    }

    /// Spends one token of every limit the call matches (this process's
    /// buckets).
    pub fn check(&self, principal: &Principal, call: &Call, backend: Option<&str>) -> Admission {
        let settings = self.settings.load();
        if settings.limits.is_empty() {
            return Admission::Admit;
        }
        let principal_key = principal_key(principal);
        let facts = Facts::of(principal, &principal_key, call, backend);
        for limit in &settings.limits {
            let Some(key) = key_for(&limit.matcher, limit.kind, &facts) else {
                continue;
            };
            // `len` visits every shard: look every KEY_CHECK_EVERY calls,
            // so a limit holds at most max_keys + KEY_CHECK_EVERY buckets.
            let calls = limit.calls.fetch_add(1, Ordering::Relaxed);
            if calls % KEY_CHECK_EVERY == 0 && limit.buckets.len() >= settings.max_keys {
                limit.buckets.retain_recent();
                if limit.buckets.len() >= settings.max_keys {
                    self.rejections.keys.fetch_add(1, Ordering::Relaxed);
                    return Admission::Reject {
                        retry_after: Duration::from_secs(1),
                        reason: format!(
                            "too many distinct callers for the {} limit (limits.max_rate_keys)",
                            limit.kind.name()
                        ),
                    };
                }
            }
            if let Err(not_until) = limit.buckets.check_key(&key) {
                let retry_after = not_until.wait_time_from(limit.buckets.clock().now());
                self.count_rejection(limit.kind);
                return Admission::Reject {
                    retry_after,
                    reason: format!("{} rate limit exceeded", describe(limit)),
                };
            }
        }
        Admission::Admit
    }

    /// Rates (`check`, or `check_shared` with Redis), then concurrency
    /// caps (`enter`): the slot to hold while the call runs, or why not.
    pub async fn admit(
        &self,
        principal: &Principal,
        call: &Call,
        backend: Option<&str>,
    ) -> Result<InFlight, Refused> {
        let refused = |a| match a {
            Admission::Reject {
                retry_after,
                reason,
            } => Refused::Limited {
                retry_after,
                reason,
            },
            Admission::Admit => Refused::Limited {
                retry_after: Duration::ZERO,
                reason: String::new(),
            },
        };
        let rates = match &self.shared {
            Some(state) => self.check_shared(state, principal, call, backend).await?,
            None => self.check(principal, call, backend),
        };
        match rates {
            Admission::Admit => self.enter(principal, backend).map_err(refused),
            reject => Err(refused(reject)),
        }
    }

    /// `check` against the buckets in Redis: one round trip for all the
    /// limits that apply, none when no limit applies. Redis unreachable:
    /// refused (`deny`) or decided by this replica's buckets (`local`).
    async fn check_shared(
        &self,
        state: &StateStore,
        principal: &Principal,
        call: &Call,
        backend: Option<&str>,
    ) -> Result<Admission, Refused> {
        // Held across the round trip, so a reload meanwhile cannot shift
        // the index the script answers.
        let settings = self.settings.load_full();
        if settings.limits.is_empty() {
            return Ok(Admission::Admit);
        }
        let principal_key = principal_key(principal);
        let facts = Facts::of(principal, &principal_key, call, backend);
        let mut applied: Vec<&Limit> = Vec::new();
        let mut buckets: Vec<SharedBucket> = Vec::new();
        for limit in &settings.limits {
            if let Some(key) = key_for(&limit.matcher, limit.kind, &facts) {
                buckets.push(SharedBucket::new(
                    state.bucket_key(&limit.shared_id, &key),
                    limit.matcher.rate.per_second.get(),
                    limit.matcher.rate.burst.get(),
                ));
                applied.push(limit);
            }
        }
        if buckets.is_empty() {
            return Ok(Admission::Admit);
        }
        let error = if state.available() {
            match state.take_tokens(&buckets).await {
                Ok(refusal) => {
                    if self.falling_back.load(Ordering::Relaxed)
                        && self.falling_back.swap(false, Ordering::Relaxed)
                    {
                        tracing::info!("rate limits shared again through the state store");
                    }
                    let Some(refusal) = refusal else {
                        return Ok(Admission::Admit);
                    };
                    let Some(limit) = applied.get(refusal.index) else {
                        debug_assert!(false, "the script answers an index of the buckets given");
                        return Err(Refused::StateUnavailable);
                    };
                    self.count_rejection(limit.kind);
                    return Ok(Admission::Reject {
                        retry_after: refusal.retry_after,
                        reason: format!("{} rate limit exceeded", describe(limit)),
                    });
                }
                Err(e) => e.to_string(),
            }
        } else {
            "not connected".to_owned()
        };
        match state.on_unavailable() {
            OnUnavailable::Deny => {
                tracing::debug!(error = %error, "rate limit not decided: state store unavailable");
                Err(Refused::StateUnavailable)
            }
            OnUnavailable::Local => {
                self.n_local_fallback.fetch_add(1, Ordering::Relaxed);
                if !self.falling_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        "state store unavailable: rate limits decided by this replica's own buckets (on_unavailable = \"local\")"
                    );
                }
                Ok(self.check(principal, call, backend))
            }
        }
    }

    fn count_rejection(&self, kind: Kind) {
        let counter = match kind {
            Kind::Tenant => &self.rejections.tenant,
            Kind::Principal => &self.rejections.principal,
            Kind::Agent => &self.rejections.agent,
            Kind::Rule => &self.rejections.rule,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a concurrency slot of the principal and of the backend, or
    /// refuses when either cap is reached.
    pub fn enter(
        &self,
        principal: &Principal,
        backend: Option<&str>,
    ) -> Result<InFlight, Admission> {
        let settings = self.settings.load();
        let mut guard = InFlight {
            map: self.in_flight.clone(),
            keys: Vec::new(),
        };
        if settings.in_flight_principal.is_none() && settings.in_flight_backend.is_none() {
            return Ok(guard);
        }
        let caps = [
            (
                settings.in_flight_principal,
                settings.in_flight_principal.map(|_| {
                    format!(
                        "p\u{0}{}\u{0}{}",
                        principal.tenant.as_deref().unwrap_or(""),
                        principal.sub
                    )
                }),
                &self.rejections.in_flight_principal,
                "principal",
            ),
            (
                settings.in_flight_backend,
                settings
                    .in_flight_backend
                    .and(backend)
                    .map(|b| format!("b\u{0}{b}")),
                &self.rejections.in_flight_backend,
                "backend",
            ),
        ];
        for (cap, key, counter, what) in caps {
            let (Some(cap), Some(key)) = (cap, key) else {
                continue;
            };
            let admitted = {
                let mut n = self.in_flight.entry(key.clone()).or_insert(0);
                if *n < cap {
                    *n += 1;
                    true
                } else {
                    false
                }
            };
            if !admitted {
                // `guard` gives back what was taken so far.
                counter.fetch_add(1, Ordering::Relaxed);
                return Err(Admission::Reject {
                    retry_after: IN_FLIGHT_RETRY,
                    reason: format!("too many requests in flight for this {what} (limit {cap})"),
                });
            }
            guard.keys.push(key);
        }
        Ok(guard)
    }

    /// Drops buckets that are full again (indistinguishable from new).
    pub fn evict_idle(&self) {
        for limit in &self.settings.load().limits {
            limit.buckets.retain_recent();
            limit.buckets.shrink_to_fit();
        }
    }

    /// Buckets held over all limits.
    pub fn keys(&self) -> usize {
        self.settings
            .load()
            .limits
            .iter()
            .map(|l| l.buckets.len())
            .sum()
    }

    /// Runs `evict_idle` every `every` until `stop`.
    pub fn spawn_eviction(
        self: &Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => me.evict_idle(),
                }
            }
        });
    }

    /// Prometheus text for the limit series.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str(
            "# HELP mcp_gateway_rate_limited_total Messages refused by a rate limit or concurrency cap, by limit.\n\
             # TYPE mcp_gateway_rate_limited_total counter\n",
        );
        let r = &self.rejections;
        for (limit, n) in [
            ("tenant", &r.tenant),
            ("principal", &r.principal),
            ("agent", &r.agent),
            ("rule", &r.rule),
            ("max_rate_keys", &r.keys),
            ("in_flight_principal", &r.in_flight_principal),
            ("in_flight_backend", &r.in_flight_backend),
        ] {
            let _ = writeln!(
                out,
                "mcp_gateway_rate_limited_total{{limit=\"{limit}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mcp_gateway_rate_limit_buckets Rate-limit buckets held in memory.\n\
             # TYPE mcp_gateway_rate_limit_buckets gauge\nmcp_gateway_rate_limit_buckets {}",
            self.keys()
        );
        let _ = writeln!(
            out,
            "# HELP mcp_gateway_rate_limit_local_fallback_total Rate-limit decisions made by this replica's own buckets because the state store was unreachable (on_unavailable = \"local\").\n\
             # TYPE mcp_gateway_rate_limit_local_fallback_total counter\nmcp_gateway_rate_limit_local_fallback_total {}",
            self.n_local_fallback.load(Ordering::Relaxed)
        );
    }
}

fn describe(limit: &Limit) -> String {
    match limit.kind {
        Kind::Rule => {
            let m = &limit.matcher;
            let parts: Vec<String> = [
                ("tenant", &m.tenant),
                ("principal", &m.principal),
                ("agent", &m.agent),
                ("backend", &m.backend),
                ("tool", &m.tool),
            ]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
            format!("rule [{}]", parts.join(" "))
        }
        kind => kind.name().to_owned(),
    }
}

/// The bucket key of `facts` under a limit, `None` when it does not apply.
fn key_for(m: &LimitRule, kind: Kind, facts: &Facts<'_>) -> Option<String> {
    match kind {
        Kind::Tenant => {
            let tenant = facts.tenant?;
            (m.tenant.as_deref() == Some(tenant)).then(|| tenant.to_owned())
        }
        Kind::Principal => Some(facts.principal.to_owned()),
        Kind::Agent => facts.agent.map(str::to_owned),
        Kind::Rule => {
            let mut key = String::new();
            // (wanted, value for the bucket key, value compared with an exact name)
            for (want, keyed, named) in [
                (&m.tenant, facts.tenant, facts.tenant),
                (&m.principal, Some(facts.principal), Some(facts.subject)),
                (&m.agent, facts.agent, facts.agent),
                (&m.backend, facts.backend, facts.backend),
                (&m.tool, facts.tool, facts.tool),
            ] {
                match want.as_deref() {
                    None => {}
                    Some("*") => {
                        key.push_str(keyed?);
                        key.push('\u{0}');
                    }
                    Some(exact) if named? != exact => return None,
                    Some(_) => {}
                }
            }
            Some(key)
        }
    }
}

fn build(config: &RateLimits, old: &[Limit]) -> Settings {
    let any = |rate| LimitRule {
        tenant: None,
        principal: None,
        agent: None,
        backend: None,
        tool: None,
        rate,
    };
    let mut wanted: Vec<(Kind, LimitRule)> = Vec::new();
    for (name, rate) in &config.tenants {
        wanted.push((
            Kind::Tenant,
            LimitRule {
                tenant: Some(name.clone()),
                ..any(*rate)
            },
        ));
    }
    if let Some(rate) = config.per_principal {
        wanted.push((Kind::Principal, any(rate)));
    }
    if let Some(rate) = config.per_agent {
        wanted.push((Kind::Agent, any(rate)));
    }
    for rule in &config.rules {
        wanted.push((Kind::Rule, rule.clone()));
    }
    let limits = wanted
        .into_iter()
        .map(|(kind, matcher)| {
            let identity = format!("{}|{:?}", kind.name(), matcher);
            let digest = sha2::Sha256::digest(identity.as_bytes());
            let shared_id = hex::encode(digest.get(..8).unwrap_or_default());
            let buckets = old
                .iter()
                .find(|l| l.identity == identity)
                .map(|l| l.buckets.clone())
                .unwrap_or_else(|| Arc::new(RateLimiter::keyed(quota(matcher.rate))));
            Limit {
                kind,
                matcher,
                identity,
                shared_id,
                buckets,
                calls: AtomicU64::new(0),
            }
        })
        .collect();
    Settings {
        limits,
        max_keys: config.max_keys.max(1),
        in_flight_principal: config.max_in_flight_per_principal,
        in_flight_backend: config.max_in_flight_per_backend,
    }
}

/// `Rate` from plain numbers (tests, tools).
pub fn rate(per_second: u32, burst: u32) -> Option<Rate> {
    Some(Rate {
        per_second: NonZeroU32::new(per_second)?,
        burst: NonZeroU32::new(burst)?,
    })
}

#[cfg(test)]
mod tests;
