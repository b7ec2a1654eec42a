//! Several gateway replicas sharing state through a real `redis-server` on
//! a random loopback port (issue 10): a revocation made on one replica ends
//! a stream held on another within a second; with Redis gone the replicas
//! fail closed (or serve locally when told to) and recover without a
//! restart when it returns; a sealed session id replayed by another user
//! is unknown on every replica.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::auth::{EchoHeaders, Keys, mint, revoke, toml_path};
use crate::util::http::{self, McpSession, modern_request};
use crate::util::process::{ChildGuard, free_port};
use crate::util::redis::RedisServer;
use crate::util::{Gateway, TestDir};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://gw.test/mcp";
const ADMIN_TOKEN: &str = "admin-token-for-scale-out";
/// The replicas' shared session-sealing key (`session_key_env`).
const SESSION_KEY: &str = "scale-out-session-key-0123456789abcdef";
/// Bound of every wait for a replica to see Redis come or go.
const SETTLE: Duration = Duration::from_secs(10);

/// A replica: JWT auth with the test keys, the echo backend, `[state]`
/// pointing at `redis_url` with `state_extra`.
fn replica(redis_url: &str, echo: &EchoHeaders, state_extra: &str) -> Gateway {
    let keys = Keys::get();
    Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [admin]\ntoken_env = \"GW_ADMIN_TOKEN\"\n\
         [auth]\nmode = \"jwt\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = {jwks}\n\
         [state]\nredis_url = \"{redis_url}\"\n{state_extra}\n{backend}",
        jwks = toml_path(&keys.path("jwks.json")),
        backend = echo.backend_toml("echo", ""),
    ))
    .env("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    .env("GW_SESSION_KEY", SESSION_KEY)
    .start()
}

fn token(sub: &str) -> String {
    let key = Keys::get().path("rsa.pem").display().to_string();
    mint(&[
        "--key", &key, "--kid", "rsa-1", "--iss", ISS, "--aud", AUD, "--sub", sub,
    ])
}

/// A unique key prefix, so tests sharing nothing never see each other.
fn prefix(name: &str) -> String {
    format!("key_prefix = \"{}\"", key_prefix(name))
}

fn key_prefix(name: &str) -> String {
    let dir = TestDir::new(name);
    let unique = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    format!("{}:", unique.unwrap_or_default())
}

/// A stateless tools/call of the echo backend with `token`.
async fn call(gw: &Gateway, token: &str) -> http::RawResponse {
    let auth = format!("Bearer {token}");
    modern_request(
        &gw.url(),
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi"}}),
        &[("authorization", &auth)],
    )
    .await
}

async fn readyz(gw: &Gateway) -> u16 {
    http::get(&format!("{}/readyz", gw.admin_url()), &[])
        .await
        .status
}

/// Waits (bounded) until `/readyz` answers `status`.
async fn wait_ready(gw: &Gateway, status: u16) {
    let deadline = Instant::now() + SETTLE;
    while readyz(gw).await != status {
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} within {SETTLE:?}\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `mcp_gateway_state_store_round_trips_total` of a replica.
async fn round_trips(gw: &Gateway) -> u64 {
    metrics(gw)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("mcp_gateway_state_store_round_trips_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

async fn metrics(gw: &Gateway) -> String {
    let resp = http::get(
        &format!("{}/metrics", gw.admin_url()),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await;
    resp.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_replica_ends_a_stream_on_another_within_a_second() {
    let redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let keys = key_prefix("revocations");
    let shared = format!("key_prefix = \"{keys}\"");
    let replicas: Vec<Gateway> = (0..3)
        .map(|_| replica(&redis.url(), &echo, &shared))
        .collect();
    for gw in &replicas {
        wait_ready(gw, 200).await;
    }
    let (first, second, third) = (&replicas[0], &replicas[1], &replicas[2]);
    // Checking credentials against the revocations costs no Redis round trip.
    let warm = token("warm");
    assert_eq!(call(second, &warm).await.status, 200);
    let before = round_trips(second).await;
    for _ in 0..5 {
        assert_eq!(call(second, &warm).await.status, 200);
    }
    assert_eq!(
        round_trips(second).await,
        before,
        "Redis round trips per message"
    );

    let carol = token("carol");
    let auth = format!("Bearer {carol}");
    let session =
        McpSession::initialize(&third.url(), "2025-11-25", &[("authorization", &auth)]).await;
    let mut stream = session.get_stream(None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(call(second, &carol).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let entry = revoke(
        &first.admin_url(),
        Some(ADMIN_TOKEN),
        json!({"sub": "carol"}),
    )
    .await;
    let revoked_at = Instant::now();
    loop {
        match stream.try_next_event(Duration::from_millis(1500)).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(()) => panic!(
                "the stream on replica 3 is still open 1.5 s after the revocation on replica 1\n{}",
                third.stderr()
            ),
        }
    }
    let closed_after = revoked_at.elapsed();
    assert!(
        closed_after < Duration::from_secs(1),
        "the stream on replica 3 closed {closed_after:?} after the revocation"
    );
    let refused = call(second, &carol).await;
    assert_eq!(
        refused.status, 401,
        "replica 2 after the revocation: {refused:?}"
    );
    // Every replica lists it, under the id replica 1 gave it.
    for gw in &replicas {
        let listed = http::get(
            &format!("{}/admin/revocations", gw.admin_url()),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        )
        .await;
        assert_eq!(
            listed.json()["revocations"][0]["id"],
            entry["id"],
            "{listed:?}"
        );
    }
    // A replica started later loads the shared list at once.
    let late = replica(&redis.url(), &echo, &shared);
    wait_ready(&late, 200).await;
    assert_eq!(call(&late, &carol).await.status, 401);

    // Lifted on replica 2: every replica accepts carol again.
    let lift = http::delete(
        &format!(
            "{}/admin/revocations/{}",
            second.admin_url(),
            entry["id"].as_str().unwrap_or("")
        ),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await;
    assert_eq!(lift.status, 204, "{lift:?}");
    for gw in [first, third, &late] {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let resp = call(gw, &carol).await;
            if resp.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still refused 1 s after the lift: {resp:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // An expired revocation is pruned from Redis by the replicas' resync.
    revoke(
        &first.admin_url(),
        Some(ADMIN_TOKEN),
        json!({"sub": "old", "until": "2001-01-01T00:00:00Z"}),
    )
    .await;
    let hash = format!("{keys}revocations");
    let deadline = Instant::now() + SETTLE;
    while redis.cli(&["HLEN", &hash]) != "0" {
        assert!(
            Instant::now() < deadline,
            "expired revocation never pruned: {}",
            redis.cli(&["HGETALL", &hash])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let shared = prefix("failclosed");
    let deny = replica(&redis.url(), &echo, &shared);
    let local = replica(
        &redis.url(),
        &echo,
        &format!("{shared}\non_unavailable = \"local\""),
    );
    wait_ready(&deny, 200).await;
    wait_ready(&local, 200).await;
    let dave = token("dave");
    assert_eq!(call(&deny, &dave).await.status, 200);
    assert!(
        metrics(&deny)
            .await
            .contains("mcp_gateway_state_store_up 1")
    );

    redis.kill();
    wait_ready(&deny, 503).await;
    let body = http::get(&format!("{}/readyz", deny.admin_url()), &[]).await;
    assert!(body.body.contains("state store unavailable"), "{body:?}");
    // Fail closed: the credential cannot be checked against the shared list.
    let refused = call(&deny, &dave).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    let error = &refused.json()["error"];
    assert_eq!(
        error["data"]["reason"], "state store unavailable",
        "{refused:?}"
    );
    let admin = http::post_json(
        &format!("{}/admin/revocations", deny.admin_url()),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        &json!({"sub": "mallory"}),
    )
    .await;
    assert_eq!(admin.status, 503, "{admin:?}");
    let text = metrics(&deny).await;
    assert!(text.contains("mcp_gateway_state_store_up 0"), "{text}");
    assert!(
        deny.stderr().contains("state store unavailable"),
        "no log line says Redis is down\n{}",
        deny.stderr()
    );
    // "local": still serving from its last view, and still ready.
    assert_eq!(call(&local, &dave).await.status, 200);
    assert_eq!(readyz(&local).await, 200);
    // A revocation made there meanwhile holds locally at once, and is
    // shared when Redis returns.
    let frank = token("frank");
    revoke(
        &local.admin_url(),
        Some(ADMIN_TOKEN),
        json!({"sub": "frank"}),
    )
    .await;
    assert_eq!(call(&local, &frank).await.status, 401);

    redis.restart();
    wait_ready(&deny, 200).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let resp = call(&deny, &dave).await;
        if resp.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + SETTLE;
    while call(&deny, &frank).await.status != 401 {
        assert!(
            Instant::now() < deadline,
            "the revocation made during the outage was never shared\n{}",
            local.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Shared again: a revocation on one reaches the other.
    revoke(&deny.admin_url(), Some(ADMIN_TOKEN), json!({"sub": "dave"})).await;
    let deadline = Instant::now() + SETTLE;
    while call(&local, &dave).await.status != 401 {
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the other replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_session_id_replayed_by_another_user_is_unknown_on_every_replica() {
    let redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let shared = format!("{}\nsession_key_env = \"GW_SESSION_KEY\"", prefix("sealed"));
    let first = replica(&redis.url(), &echo, &shared);
    let second = replica(&redis.url(), &echo, &shared);
    wait_ready(&first, 200).await;
    wait_ready(&second, 200).await;

    let alice = format!("Bearer {}", token("alice"));
    let session =
        McpSession::initialize(&first.url(), "2025-11-25", &[("authorization", &alice)]).await;
    let id = session.session_id.clone().unwrap_or_default();
    assert!(id.starts_with("s1"), "not a sealed id: {id:?}");
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(session.post(&ping).await.status, 200);

    let bob = format!("Bearer {}", token("bob"));
    let as_bob = [
        ("authorization", bob.as_str()),
        ("mcp-session-id", id.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    for (name, gw) in [("replica 1", &first), ("replica 2", &second)] {
        let resp = http::post_json(&gw.url(), &as_bob, &ping).await;
        assert_eq!(
            resp.status, 404,
            "bob with alice's session id on {name}: {resp:?}"
        );
    }
    // A forged id (one character changed) is unknown to alice too.
    let mut forged: Vec<char> = id.chars().collect();
    let at = forged.len() - 3;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let as_alice = [
        ("authorization", alice.as_str()),
        ("mcp-session-id", forged.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let resp = http::post_json(&first.url(), &as_alice, &ping).await;
    assert_eq!(resp.status, 404, "a forged session id: {resp:?}");
    assert_eq!(
        session.post(&ping).await.status,
        200,
        "alice keeps her session"
    );
}

/// `examples/haproxy.cfg` (the README's example) in front of `replicas`.
fn haproxy(replicas: &[Gateway]) -> (ChildGuard, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy.cfg");
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = std::process::Command::new("haproxy");
        cmd.args(["-f", config, "-db"])
            .env("LB_ADDR", format!("127.0.0.1:{port}"));
        for (i, gw) in replicas.iter().enumerate() {
            cmd.env(format!("GW{}_ADDR", i + 1), gw.addr().to_string())
                .env(
                    format!("GW{}_ADMIN_PORT", i + 1),
                    gw.admin_addr().port().to_string(),
                );
        }
        let mut process = ChildGuard::spawn("haproxy", cmd);
        if process.port_ready(port, Duration::from_secs(10)) {
            return (process, format!("http://127.0.0.1:{port}/mcp"));
        }
    }
    panic!("haproxy did not start");
}

/// Requests this replica relayed (`mcp_gateway_requests_total`, all labels).
async fn relayed(gw: &Gateway) -> u64 {
    metrics(gw)
        .await
        .lines()
        .filter(|l| l.starts_with("mcp_gateway_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn call_at(url: &str, token: &str) -> http::RawResponse {
    let auth = format!("Bearer {token}");
    modern_request(
        url,
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi"}}),
        &[("authorization", &auth)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_requests_spread_over_replicas_and_a_revocation_holds_on_all() {
    let redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let shared = prefix("haproxy");
    let replicas: Vec<Gateway> = (0..3)
        .map(|_| replica(&redis.url(), &echo, &shared))
        .collect();
    for gw in &replicas {
        wait_ready(gw, 200).await;
    }
    let (_lb, url) = haproxy(&replicas);

    // Stateless (2026-07-28) requests need no session, so round-robin
    // without stickiness is fine: each replica gets some.
    let erin = token("erin");
    for i in 0..9 {
        let resp = call_at(&url, &erin).await;
        assert_eq!(resp.status, 200, "request {i} through haproxy: {resp:?}");
    }
    for (i, gw) in replicas.iter().enumerate() {
        assert!(relayed(gw).await > 0, "replica {} got no request", i + 1);
    }

    revoke(
        &replicas[0].admin_url(),
        Some(ADMIN_TOKEN),
        json!({"sub": "erin"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..9 {
        let resp = call_at(&url, &erin).await;
        assert_eq!(
            resp.status, 401,
            "request {i} after the revocation: {resp:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_without_redis_fails_closed_until_it_appears() {
    let echo = EchoHeaders::start();
    // Nobody listens there yet: the replica must not serve from an empty list.
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let gw = replica(&url, &echo, &prefix("startup"));
    let grace = token("grace");
    let refused = call(&gw, &grace).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(readyz(&gw).await, 503);
    let _redis = RedisServer::start_on(port);
    wait_ready(&gw, 200).await;
    assert_eq!(call(&gw, &grace).await.status, 200);
}

// --- shared rate limits ----------------------------------------------------------

/// A replica without authentication (the limits, not the credential check,
/// then need the state store) with `extra` appended (e.g. `[limits]`).
fn open_replica(redis_url: &str, echo: &EchoHeaders, state_extra: &str, extra: &str) -> Gateway {
    Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [admin]\ntoken_env = \"GW_ADMIN_TOKEN\"\n\
         [state]\nredis_url = \"{redis_url}\"\n{state_extra}\n{backend}\n{extra}\n",
        backend = echo.backend_toml("echo", ""),
    ))
    .env("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    .start()
}

/// The GCRA script against a real Redis, through the library: every bucket
/// of a message in one round trip, all or nothing, governor's arithmetic,
/// keys that expire once the bucket is full again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_buckets_decide_all_or_nothing_in_one_round_trip() {
    use mcp_gateway::state::StateStore;
    use mcp_gateway::state::limits::SharedBucket;

    let redis = RedisServer::start();
    let config = mcp_gateway::config::StateConfig {
        redis_url: Some(mcp_gateway::config::Secret::new(redis.url())),
        key_prefix: key_prefix("gcra"),
        ..Default::default()
    };
    let store = StateStore::from_config(&config).expect("redis_url is set");
    let bucket = |name: &str, per_second, burst| {
        SharedBucket::new(store.bucket_key("t", name), per_second, burst)
    };
    let slow = bucket("slow", 1, 2);
    let fast = bucket("fast", 1000, 1000);

    // The first call finds no script cached: EVALSHA, then EVAL.
    let before = store.round_trips();
    assert_eq!(
        store
            .take_tokens(&[slow.clone(), fast.clone()])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.round_trips() - before,
        2,
        "EVALSHA + EVAL the first time"
    );
    let before = store.round_trips();
    assert_eq!(
        store
            .take_tokens(&[slow.clone(), fast.clone()])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.round_trips() - before,
        1,
        "one round trip per decision"
    );
    // Burst 2 spent: the third waits for the next token, ~1 s (as governor).
    let refusal = store
        .take_tokens(&[fast.clone(), slow.clone()])
        .await
        .unwrap()
        .expect("the slow bucket is empty");
    assert_eq!(refusal.index, 1, "the refusing bucket is named");
    assert!(
        refusal.retry_after > Duration::from_millis(900)
            && refusal.retry_after <= Duration::from_secs(1),
        "{refusal:?}"
    );
    // Idle buckets leave Redis: the key expires when the bucket is full again.
    let ttl: i64 = redis.cli(&["PTTL", &slow.key]).parse().unwrap_or(-1);
    assert!(ttl > 1000 && ttl <= 2000, "PTTL {ttl}");

    // All or nothing: a refused message spends no token of the others.
    let once = bucket("once", 1, 1);
    let other = bucket("other", 1, 1);
    assert_eq!(
        store
            .take_tokens(std::slice::from_ref(&once))
            .await
            .unwrap(),
        None
    );
    let refusal = store
        .take_tokens(&[other.clone(), once.clone()])
        .await
        .unwrap();
    assert_eq!(refusal.map(|r| r.index), Some(1));
    assert_eq!(
        redis.cli(&["EXISTS", &other.key]),
        "0",
        "the admitting bucket was not spent"
    );
    assert_eq!(
        store
            .take_tokens(std::slice::from_ref(&other))
            .await
            .unwrap(),
        None
    );

    // Several refuse: the longest wait answers (all admit after it).
    let tenth = bucket("tenth", 10, 1);
    assert_eq!(
        store
            .take_tokens(std::slice::from_ref(&tenth))
            .await
            .unwrap(),
        None
    );
    let refusal = store
        .take_tokens(&[tenth.clone(), once.clone()])
        .await
        .unwrap()
        .expect("both buckets are empty");
    assert_eq!(refusal.index, 1, "{refusal:?}");
    assert!(
        refusal.retry_after > Duration::from_millis(800),
        "{refusal:?}"
    );

    // Redis forgot the script (restart, SCRIPT FLUSH): EVAL brings it back.
    redis.cli(&["SCRIPT", "FLUSH"]);
    let before = store.round_trips();
    assert!(
        store
            .take_tokens(std::slice::from_ref(&fast))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.round_trips() - before, 2);
}

/// Summed over the replicas.
async fn total_round_trips(replicas: &[Gateway]) -> u64 {
    let mut total = 0;
    for gw in replicas {
        total += round_trips(gw).await;
    }
    total
}

/// A shared limit of RATE/s (burst BURST) per principal, three replicas
/// behind HAProxy (round-robin), a bounded load loop from several tasks:
/// the total admitted stays within rate × elapsed + burst. Per-replica
/// buckets would admit about three times that, which the load offered is
/// enough to show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_limit_holds_across_three_replicas_behind_haproxy() {
    const RATE: f64 = 10.0;
    const BURST: f64 = 10.0;
    const LOAD: Duration = Duration::from_secs(3);
    const WORKERS: usize = 6;
    let redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let shared = prefix("shared-limit");
    let limits = "[limits]\nper_principal = { per_second = 10, burst = 10 }";
    let replicas: Vec<Gateway> = (0..3)
        .map(|_| open_replica(&redis.url(), &echo, &shared, limits))
        .collect();
    for gw in &replicas {
        wait_ready(gw, 200).await;
    }
    let (_lb, url) = haproxy(&replicas);
    let trips_before = total_round_trips(&replicas).await;

    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            // (admitted, refused, the longest retry_after_ms, a refusal)
            let mut counts = (0u64, 0u64, 0u64, None);
            while started.elapsed() < LOAD {
                let resp = modern_request(
                    &url,
                    1,
                    "tools/call",
                    json!({"name": "echo", "arguments": {"message": "hi"}}),
                    &[],
                )
                .await;
                match resp.status {
                    200 => counts.0 += 1,
                    429 => {
                        counts.1 += 1;
                        let error = &resp.json()["error"];
                        assert_eq!(error["code"], -32005, "{resp:?}");
                        let wait = error["data"]["retry_after_ms"].as_u64().unwrap_or(0);
                        assert!(wait > 0, "{resp:?}");
                        counts.2 = counts.2.max(wait);
                        counts.3.get_or_insert(resp);
                    }
                    _ => panic!("neither admitted nor rate limited: {resp:?}"),
                }
            }
            counts
        }));
    }
    let (mut admitted, mut refused, mut longest_wait, mut sample) = (0, 0, 0, None);
    for w in workers {
        let (a, r, wait, s) = w.await.expect("worker");
        admitted += a;
        refused += r;
        longest_wait = longest_wait.max(wait);
        sample = sample.or(s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = RATE * elapsed + BURST;
    let attempts = admitted + refused;
    eprintln!(
        "{attempts} requests in {elapsed:.2} s: {admitted} admitted, {refused} refused \
         (shared bound {allowed:.1})"
    );
    assert!(
        admitted as f64 <= allowed,
        "{admitted} admitted across the replicas in {elapsed:.2} s, over rate × elapsed + burst = {allowed:.1}"
    );
    // Per-replica buckets would have admitted up to 3 × the bound: the load
    // offered must exceed that, or this test could not tell them apart.
    assert!(
        attempts as f64 > 3.0 * allowed * 1.5,
        "only {attempts} requests offered in {elapsed:.2} s: too few to tell shared from per-replica buckets"
    );
    // The shared bucket is not starving callers either.
    assert!(
        admitted as f64 >= RATE * elapsed * 0.7,
        "only {admitted} admitted in {elapsed:.2} s at {RATE}/s"
    );
    // The same Retry-After semantics as the local limiter: the time to the
    // next token (≤ 1/RATE), rounded up, and a whole-second header.
    assert!(longest_wait <= 100, "retry_after_ms {longest_wait}");
    let sample = sample.expect("some requests were refused");
    assert_eq!(sample.header("retry-after"), Some("1"), "{sample:?}");
    // Every replica decided (and refused) some.
    for (i, gw) in replicas.iter().enumerate() {
        let text = metrics(gw).await;
        let limited = text
            .lines()
            .find_map(|l| l.strip_prefix("mcp_gateway_rate_limited_total{limit=\"principal\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(limited > 0, "replica {} refused nothing\n{text}", i + 1);
    }
    // One Redis round trip per decided message (the first EVALSHA of the
    // script may be followed by an EVAL).
    let trips = total_round_trips(&replicas).await - trips_before;
    assert!(
        trips >= attempts && trips <= attempts + 3,
        "{trips} round trips for {attempts} messages"
    );
}

/// With the limits in Redis and Redis gone: `deny` refuses the message with
/// "state store unavailable" (503, as the credential check does), `local`
/// decides with the replica's own buckets; both recover without restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_limits_fail_closed_or_fall_back_to_local_buckets() {
    let mut redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let shared = prefix("limits-down");
    let limits = "[limits]\nper_principal = { per_second = 1, burst = 3 }";
    let deny = open_replica(&redis.url(), &echo, &shared, limits);
    let local = open_replica(
        &redis.url(),
        &echo,
        &format!("{shared}\non_unavailable = \"local\""),
        limits,
    );
    wait_ready(&deny, 200).await;
    wait_ready(&local, 200).await;
    let call = |gw: &Gateway| {
        let url = gw.url();
        async move {
            modern_request(
                &url,
                1,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "hi"}}),
                &[],
            )
            .await
        }
    };
    // Shared: the burst of 3 is spent across both replicas.
    assert_eq!(call(&deny).await.status, 200);
    assert_eq!(call(&local).await.status, 200);
    assert_eq!(call(&deny).await.status, 200);
    assert_eq!(call(&local).await.status, 429);

    redis.kill();
    wait_ready(&deny, 503).await;
    let refused = call(&deny).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    let error = &refused.json()["error"];
    assert_eq!(error["code"], -32001, "{refused:?}");
    assert_eq!(
        error["data"]["reason"], "state store unavailable",
        "{refused:?}"
    );
    // "local": this replica's own bucket (burst 3, fresh) decides.
    let deadline = Instant::now() + SETTLE;
    let mut statuses = Vec::new();
    while statuses.len() < 4 {
        let resp = call(&local).await;
        // Until the replica notices Redis is gone its call may still fail
        // over (a broken connection): it then decides locally too.
        statuses.push(resp.status);
        assert!(Instant::now() < deadline);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "local buckets");
    assert!(
        local
            .stderr()
            .contains("rate limits decided by this replica's own buckets"),
        "no warning about the fallback\n{}",
        local.stderr()
    );
    assert!(
        metrics(&local)
            .await
            .contains("mcp_gateway_rate_limit_local_fallback_total 4")
    );

    redis.restart();
    wait_ready(&deny, 200).await;
    // Redis restarted empty: a fresh shared bucket, and the script is
    // sent again.
    let deadline = Instant::now() + SETTLE;
    loop {
        let resp = call(&deny).await;
        if resp.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {resp:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- audit across replicas -----------------------------------------------------

/// `mcp-gateway audit verify FILES...` → (success, stdout + stderr).
fn audit_verify(files: &[std::path::PathBuf]) -> (bool, String) {
    let out = std::process::Command::new(crate::util::gateway::gateway_bin())
        .args(["audit", "verify"])
        .args(files)
        .output()
        .expect("audit verify runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Three replicas behind HAProxy, each with its own audit log (one rotated
/// into several files): every record names its replica, `audit verify`
/// given all the files finds one chain per replica, and one edited line
/// in one replica's file fails at that file and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_logs_of_three_replicas_verify_as_one_chain_each() {
    let redis = RedisServer::start();
    let echo = EchoHeaders::start();
    let shared = prefix("audit-replicas");
    let replicas: Vec<Gateway> = (1..=3)
        .map(|i| {
            let audit = if i == 2 {
                "[audit]\npath = \"audit.jsonl\"\nfsync = \"always\"\nrotate_bytes = 1500"
            } else {
                "[audit]\npath = \"audit.jsonl\"\nfsync = \"always\""
            };
            open_replica(
                &redis.url(),
                &echo,
                &format!("{shared}\nreplica_id = \"gw-{i}\""),
                audit,
            )
        })
        .collect();
    for gw in &replicas {
        wait_ready(gw, 200).await;
    }
    let (lb, url) = haproxy(&replicas);
    let sent = 18;
    for i in 0..sent {
        let resp = modern_request(
            &url,
            i,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
            &[],
        )
        .await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    drop(lb);
    // SIGTERM: each replica writes and syncs its queue before it exits.
    for gw in &replicas {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &gw.pid().to_string()])
            .status();
        gw.wait_for_log(SETTLE, |l| l["fields"]["message"] == "stopped");
    }
    let mut files = Vec::new();
    let mut per_replica = Vec::new();
    for (i, gw) in replicas.iter().enumerate() {
        let mut mine: Vec<std::path::PathBuf> = std::fs::read_dir(gw.dir())
            .expect("replica dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("audit.jsonl"))
            })
            .collect();
        mine.sort();
        let mut records = 0;
        for file in &mine {
            for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
                let record: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
                assert_eq!(record["replica"], format!("gw-{}", i + 1), "{line}");
                records += 1;
            }
        }
        per_replica.push(records);
        files.extend(mine);
    }
    assert_eq!(
        per_replica.iter().sum::<usize>(),
        sent as usize,
        "{per_replica:?}"
    );
    assert!(per_replica.iter().all(|n| *n > 0), "{per_replica:?}");
    let rotated: Vec<std::path::PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e != "jsonl"))
        .cloned()
        .collect();
    assert!(!rotated.is_empty(), "replica 2 rotated its log: {files:?}");

    // Given in any order: one chain per replica.
    files.reverse();
    let (ok, out) = audit_verify(&files);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("ok: 3 chains (one per replica), {sent} records")),
        "{out}"
    );
    for i in 1..=3 {
        assert!(out.contains(&format!("replica gw-{i}")), "{out}");
    }

    // One edited line (the second of replica 2's first rotated file).
    let victim = rotated[0].clone();
    let text = std::fs::read_to_string(&victim).expect("rotated file");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines.len() >= 2, "{victim:?} holds {} records", lines.len());
    let mut record: serde_json::Value = serde_json::from_str(&lines[1]).expect("record");
    record["sub"] = json!("someone-else");
    lines[1] = record.to_string();
    std::fs::write(&victim, lines.join("\n") + "\n").expect("write");
    let (ok, out) = audit_verify(&files);
    assert!(!ok, "the edit went unnoticed: {out}");
    assert!(
        out.contains(&format!("{}:2: hash does not match", victim.display())),
        "{out}"
    );
}
