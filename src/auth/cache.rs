//! Verified credentials, keyed by the SHA-256 of the token (the token
//! itself is never stored), each kept until its own deadline (the token's
//! `exp`, or the introspection cache time). Bounded: sharded maps with a
//! fixed capacity each; a full shard first drops expired entries, then an
//! arbitrary one. Only successes are cached (failures are cheap to repeat
//! and must not let garbage evict good entries). Short sync locks, never
//! held across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Principal;

const SHARDS: usize = 16;

pub struct TokenCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Entry>>>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Entry {
    principal: Principal,
    /// Unix seconds after which the entry is not used.
    until: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Mutex<HashMap<[u8; 32], Entry>>> {
        self.shards.get(usize::from(key[0]) % SHARDS)
    }

    pub fn get(&self, key: &[u8; 32], now: u64) -> Option<Principal> {
        let found = self.lookup(key, now);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// (hits, misses) of `get` so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn lookup(&self, key: &[u8; 32], now: u64) -> Option<Principal> {
        let mut shard = self.shard(key)?.lock().ok()?;
        match shard.get(key) {
            Some(entry) if now <= entry.until => Some(entry.principal.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: [u8; 32], principal: Principal, until: u64) {
        let Some(Ok(mut shard)) = self.shard(&key).map(Mutex::lock) else {
            return;
        };
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            let now = super::now_unix();
            shard.retain(|_, e| e.until >= now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key, Entry { principal, until });
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
