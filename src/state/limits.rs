//! Shared rate-limit buckets: GCRA in Redis, every bucket a message spends
//! decided by one Lua script call (one round trip).
//!
//! In: the buckets that apply to a message (`SharedBucket`: key, emission
//! interval, burst tolerance). Out: admitted, or which bucket refused and
//! when to retry. Never decides which limits apply (that is `limits`), and
//! never falls back by itself: the caller picks deny or local on an error.
//!
//! The script reads every bucket first and spends a token of each only if
//! all admit, so a refused message costs nothing (the in-process limiter
//! spends the buckets it passed before the one that refused). Time is
//! Redis's own clock (`TIME`), so replicas with skewed clocks share one
//! timeline. A bucket's value is its theoretical arrival time (TAT, µs);
//! it expires (`SET … PX`, the PEXPIRE of the key) when the bucket is full
//! again, so an idle bucket leaves Redis exactly when it is
//! indistinguishable from a new one.
//!
//! GCRA with emission interval `T` (1 s / `per_second`) and tolerance
//! `τ = burst × T`, the same as `governor`: with `tat = max(stored, now)`
//! the message is admitted when `tat + T − now ≤ τ`, and the bucket then
//! holds `tat + T`; otherwise it may retry after `tat + T − τ − now`. A new
//! bucket admits `burst` messages at once, then one every `T`.
//!
//! Keys: `{key_prefix}rl:{limit id}:{bucket key}`. All keys of one call must
//! live on one Redis node (no Redis Cluster).

use std::sync::atomic::Ordering;
use std::time::Duration;

use sha1::Digest as _;

use super::{StateError, StateStore};

/// Buckets have microsecond resolution: rates above 1,000,000/s are
/// rounded down to it.
const MICROS_PER_SECOND: u64 = 1_000_000;

/// KEYS[i]: bucket i; ARGV[2i-1]: its emission interval T (µs), ARGV[2i]:
/// its tolerance τ (µs). Returns {0, 0} when every bucket admitted (and
/// spent one token each), else {i, wait µs} for the bucket that needs the
/// longest wait; nothing is spent then.
const GCRA_SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local next_tats = {}
local refused, wait = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local over = next_tat - tolerance - now
  if over > 0 and over > wait then
    refused, wait = i, over
  end
  next_tats[i] = next_tat
end
if refused > 0 then
  return {refused, math.ceil(wait)}
end
for i = 1, #KEYS do
  local ttl_ms = math.ceil((next_tats[i] - now) / 1000)
  redis.call('SET', KEYS[i], string.format('%.0f', next_tats[i]), 'PX', ttl_ms)
end
return {0, 0}
";

/// One bucket a message spends, with its GCRA parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBucket {
    /// The full Redis key (`StateStore::bucket_key`).
    pub key: String,
    /// T: microseconds between two tokens.
    pub interval_us: u64,
    /// τ: how far ahead of now the bucket may run (burst × T).
    pub tolerance_us: u64,
}

impl SharedBucket {
    pub fn new(key: String, per_second: u32, burst: u32) -> SharedBucket {
        let (interval_us, tolerance_us) = gcra_params(per_second, burst);
        SharedBucket {
            key,
            interval_us,
            tolerance_us,
        }
    }
}

/// (T, τ) in microseconds for a rate of `per_second` with `burst`. T is
/// rounded up, so a shared bucket never admits more than the rate.
pub fn gcra_params(per_second: u32, burst: u32) -> (u64, u64) {
    let interval_us = MICROS_PER_SECOND
        .div_ceil(u64::from(per_second.max(1)))
        .max(1);
    (
        interval_us,
        interval_us.saturating_mul(u64::from(burst.max(1))),
    )
}

/// Which bucket refused (index into the slice given) and when all the
/// refusing buckets admit again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedRefusal {
    pub index: usize,
    pub retry_after: Duration,
}

/// The script's SHA-1, as `EVALSHA` wants it.
fn script_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| hex::encode(sha1::Sha1::digest(GCRA_SCRIPT.as_bytes())))
}

impl StateStore {
    /// The Redis key of bucket `bucket` of the limit `limit_id`.
    pub fn bucket_key(&self, limit_id: &str, bucket: &str) -> String {
        format!("{}rl:{limit_id}:{bucket}", self.prefix)
    }

    /// Spends one token of every bucket, or none if any refuses. One round
    /// trip (`EVALSHA`); two when Redis lost the script (restart, `SCRIPT
    /// FLUSH`): `EVAL` then sends it along and caches it again.
    pub async fn take_tokens(
        &self,
        buckets: &[SharedBucket],
    ) -> Result<Option<SharedRefusal>, StateError> {
        if buckets.is_empty() {
            return Ok(None);
        }
        let invoke = |command: &'static str, script: &'static str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script).arg(buckets.len());
            for b in buckets {
                cmd.arg(&b.key);
            }
            for b in buckets {
                cmd.arg(b.interval_us).arg(b.tolerance_us);
            }
            cmd
        };
        let evalsha = invoke("EVALSHA", script_sha());
        let answer: Result<(i64, i64), StateError> = self
            .query(async |mut conn| evalsha.query_async(&mut conn).await)
            .await;
        let (index, wait_us) = match answer {
            Err(StateError::Redis(e)) if e.code() == Some("NOSCRIPT") => {
                let eval = invoke("EVAL", GCRA_SCRIPT);
                self.query(async |mut conn| eval.query_async(&mut conn).await)
                    .await?
            }
            other => other?,
        };
        if index <= 0 {
            return Ok(None);
        }
        let index = usize::try_from(index - 1).unwrap_or(usize::MAX);
        if index >= buckets.len() {
            // The script only answers indices of KEYS.
            return Err(StateError::Corrupt {
                id: "rate-limit script".into(),
                reason: format!("answered bucket {} of {}", index + 1, buckets.len()),
            });
        }
        Ok(Some(SharedRefusal {
            index,
            retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
        }))
    }

    /// Round trips so far (`mcp_gateway_state_store_round_trips_total`).
    pub fn round_trips(&self) -> u64 {
        self.n_round_trips.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_params_match_governor_quotas() {
        // 1/s, burst 2: a token a second, two at once.
        assert_eq!(gcra_params(1, 2), (1_000_000, 2_000_000));
        // Rounded up: 3/s never admits more than 3 a second.
        assert_eq!(gcra_params(3, 1), (333_334, 333_334));
        assert_eq!(gcra_params(1_000_000, 1_000_000), (1, 1_000_000));
        // Beyond microsecond resolution.
        assert_eq!(gcra_params(u32::MAX, 1), (1, 1));
        assert_eq!(gcra_params(0, 0), (1_000_000, 1_000_000));
    }

    #[test]
    fn script_sha_is_the_sha1_of_the_script() {
        let sha = script_sha();
        assert_eq!(sha.len(), 40);
        assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(sha, hex::encode(sha1::Sha1::digest(GCRA_SCRIPT)));
    }
}
