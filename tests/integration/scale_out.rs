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
use crate::util::{DemoServer, Gateway, TestDir};

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
    // Replica 2 hears the announcement on its own subscription: within the
    // same second, not necessarily before replica 3.
    loop {
        let refused = call(second, &carol).await;
        if refused.status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "replica 2 still accepts 1 s after the revocation: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

// --- sessions across replicas ----------------------------------------------------

/// A replica with sealed sessions (`session_key_env`), named `replica_id`,
/// in front of `backend` (a `[[backends]]` table).
fn session_replica(redis_url: &str, keys: &str, backend: &str, replica_id: &str) -> Gateway {
    let keys_file = Keys::get();
    Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [admin]\ntoken_env = \"GW_ADMIN_TOKEN\"\n\
         [auth]\nmode = \"jwt\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = {jwks}\n\
         [state]\nredis_url = \"{redis_url}\"\n{keys}\nsession_key_env = \"GW_SESSION_KEY\"\n\
         replica_id = \"{replica_id}\"\n{backend}",
        jwks = toml_path(&keys_file.path("jwks.json")),
    ))
    .env("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    .env("GW_SESSION_KEY", SESSION_KEY)
    .start()
}

fn http_demo_backend(demo: &DemoServer) -> String {
    format!(
        "[[backends]]\nname = \"demo\"\ntransport = \"streamable_http\"\nurl = \"{}\"\n",
        demo.url()
    )
}

fn stdio_demo_backend() -> String {
    let argv: Vec<String> = DemoServer::stdio_argv()
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    format!(
        "[[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = [{}]\n",
        argv.join(", ")
    )
}

/// One counter or gauge of a replica's `/metrics` (0 when absent).
async fn metric(gw: &Gateway, name: &str) -> u64 {
    metrics(gw)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn start_replicas(redis: &RedisServer, keys: &str, backend: &str, n: usize) -> Vec<Gateway> {
    let replicas: Vec<Gateway> = (1..=n)
        .map(|i| session_replica(&redis.url(), keys, backend, &format!("gw{i}")))
        .collect();
    for gw in &replicas {
        wait_ready(gw, 200).await;
    }
    replicas
}

/// Headers of a request in `session` (the session id) as `auth`.
fn in_session<'a>(auth: &'a str, session: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("authorization", auth),
        ("mcp-session-id", session),
        ("mcp-protocol-version", "2025-11-25"),
    ]
}

async fn echo_in_session(
    gw: &Gateway,
    auth: &str,
    session: &str,
    message: &str,
) -> http::RawResponse {
    http::post_json(
        &gw.url(),
        &in_session(auth, session),
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": message}}}),
    )
    .await
}

/// The text of an echo result, whatever the transport framing.
fn echoed(resp: &http::RawResponse) -> String {
    resp.rpc()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_run_full_sessions_through_haproxy_over_three_replicas() {
    // The backend's own session id rides in the sealed id; its sampling and
    // elicitation requests are answered through any replica.
    sdk_sessions_through_haproxy("2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_through_haproxy_with_a_stateless_backend() {
    // The gateway itself asks the client (bridging input_required): the
    // answer goes back to the replica that asked.
    sdk_sessions_through_haproxy("2026-07-28").await;
}

async fn sdk_sessions_through_haproxy(backend_protocol: &str) {
    let demo = DemoServer::start_http();
    let backend = format!(
        "{}protocol = \"{backend_protocol}\"\n",
        http_demo_backend(&demo)
    );
    sdk_sessions_through_haproxy_to(&backend, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_through_haproxy_with_a_stdio_backend_are_forwarded_to_its_owner() {
    // Every request (the GET stream and the answers to server→client
    // requests included) reaching another replica than the owner is
    // forwarded there and its answer streamed back.
    sdk_sessions_through_haproxy_to(&stdio_demo_backend(), false).await;
}

/// The Python and TypeScript SDK clients' `demo-full` tour through
/// HAProxy in front of 3 replicas with `backend`: the same answers as the
/// demo server gives directly, served by several replicas, each session
/// adopted (`adoptable`) or forwarded to its owner.
async fn sdk_sessions_through_haproxy_to(backend: &str, adoptable: bool) {
    use crate::util::{py_client, ts_client};
    let redis = RedisServer::start();
    let replicas = start_replicas(&redis, &prefix("sdk"), backend, 3).await;
    let (_lb, url) = haproxy(&replicas);

    let direct = tokio::task::spawn_blocking(move || {
        py_client("legacy", &DemoServer::stdio_target(), "demo-full", &[])
    })
    .await
    .unwrap();
    let header = format!("Authorization: Bearer {}", token("pia"));
    let (lb_url, h) = (url.clone(), header.clone());
    let through = tokio::task::spawn_blocking(move || {
        py_client("legacy", &lb_url, "demo-full", &["--header", &h])
    })
    .await
    .unwrap();
    // Lists, calls, progress, elicitation and sampling (server→client
    // requests answered through whichever replica the balancer picked).
    assert_eq!(through, direct, "python SDK through haproxy vs direct");
    let mut adopted = 0;
    let mut forwarded = 0;
    let mut serving = 0;
    for gw in &replicas {
        adopted += metric(gw, "mcp_gateway_sessions_adopted_total").await;
        forwarded += metric(gw, "mcp_gateway_requests_forwarded_total").await;
        serving += u64::from(relayed(gw).await > 0);
    }
    if adoptable {
        assert!(adopted >= 1, "no replica adopted the session");
        assert!(
            serving >= 2,
            "the session's requests all landed on one replica"
        );
    } else {
        assert_eq!(adopted, 0, "a stdio session was adopted");
        assert!(forwarded >= 1, "no request reached another replica");
        assert_eq!(serving, 1, "a stdio session was served by two replicas");
    }

    let (lb_url, h) = (url.clone(), header.clone());
    let ts = tokio::task::spawn_blocking(move || {
        ts_client("legacy", &lb_url, "demo-full", &["--header", &h])
    })
    .await
    .unwrap();
    for key in [
        "echo",
        "slow_count",
        "ask_user",
        "summarize",
        "readme",
        "greet",
    ] {
        assert_eq!(
            ts[key], direct[key],
            "typescript SDK through haproxy: {key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_backed_session_outlives_its_owner_and_a_delete_reaches_every_replica() {
    // A handshake-era backend: its Mcp-Session-Id travels in the sealed id.
    outlives_its_owner("2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_stateless_backend_outlives_its_owner_too() {
    outlives_its_owner("2026-07-28").await;
}

async fn outlives_its_owner(backend_protocol: &str) {
    let redis = RedisServer::start();
    let demo = DemoServer::start_http();
    let keys = prefix("adopt");
    let backend = format!(
        "{}protocol = \"{backend_protocol}\"\n",
        http_demo_backend(&demo)
    );
    let mut replicas = start_replicas(&redis, &keys, &backend, 3).await;
    let auth = format!("Bearer {}", token("otto"));
    let id = initialize_eliciting(&replicas[0], &auth).await;
    assert!(id.starts_with("s1") && id.len() < 1024, "{id}");

    // Replicas 2 and 3 never saw it: each adopts it once, from the id alone.
    for (i, gw) in replicas.iter().enumerate() {
        for round in 0..2 {
            let resp = echo_in_session(gw, &auth, &id, &format!("r{i}.{round}")).await;
            assert_eq!(
                echoed(&resp),
                format!("r{i}.{round}"),
                "replica {}: {resp:?}",
                i + 1
            );
        }
    }
    assert_eq!(
        metric(&replicas[0], "mcp_gateway_sessions_adopted_total").await,
        0
    );
    for gw in &replicas[1..] {
        assert_eq!(metric(gw, "mcp_gateway_sessions_adopted_total").await, 1);
    }
    assert!(
        replicas[1]
            .stderr()
            .contains("session adopted from another replica")
    );
    // Once adopted, the session costs no Redis round trip per message.
    let before = round_trips(&replicas[1]).await;
    for round in 0..5 {
        let resp = echo_in_session(&replicas[1], &auth, &id, &format!("hot{round}")).await;
        assert_eq!(echoed(&resp), format!("hot{round}"), "{resp:?}");
    }
    assert_eq!(
        round_trips(&replicas[1]).await,
        before,
        "Redis round trips per message of an adopted session"
    );
    assert!(
        !replicas[1].stderr().contains(&id),
        "the sealed id was logged"
    );

    // A server→client request relayed on replica 1's response stream,
    // answered through replica 2: the answer finds its way back.
    let mut call = http::open_stream(
        &replicas[0].url(),
        &in_session(&auth, &id),
        Some(&json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                     "params": {"name": "ask_user", "arguments": {"question": "colour?"}}})),
    )
    .await;
    assert_eq!(call.status, 200);
    let question = call.next_message(SETTLE).await.unwrap_or_default();
    assert_eq!(question["method"], "elicitation/create", "{question}");
    let answer = http::post_json(
        &replicas[1].url(),
        &in_session(&auth, &id),
        &json!({"jsonrpc": "2.0", "id": question["id"],
                "result": {"action": "accept", "content": {"answer": "green"}}}),
    )
    .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let seen = call.until_response(&json!(10), SETTLE).await;
    let result = seen.last().cloned().unwrap_or_default();
    assert_eq!(
        result["result"]["content"][0]["text"], "user said: green",
        "{seen:?}"
    );
    assert_eq!(
        metric(&replicas[1], "mcp_gateway_requests_forwarded_total").await,
        1,
        "the answer was not sent to the replica that asked"
    );

    // A call running on replica 1, cancelled through replica 3: the
    // response stream on replica 1 ends without a result.
    let mut slow = http::open_stream(
        &replicas[0].url(),
        &in_session(&auth, &id),
        Some(&json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call",
                     "params": {"name": "slow_count", "arguments": {"steps": 10000, "delay_ms": 20},
                                "_meta": {"progressToken": "c1"}}})),
    )
    .await;
    let first = slow.next_message(SETTLE).await.unwrap_or_default();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    let cancel = http::post_json(
        &replicas[2].url(),
        &in_session(&auth, &id),
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 11, "reason": "changed my mind"}}),
    )
    .await;
    assert_eq!(cancel.status, 202, "{cancel:?}");
    let deadline = Instant::now() + SETTLE;
    loop {
        match slow.try_next_event(Duration::from_millis(500)).await {
            Ok(None) => break,
            Ok(Some(event)) => {
                let msg = event.json().unwrap_or_default();
                assert!(
                    msg.get("result").is_none(),
                    "the cancelled call finished: {msg}"
                );
            }
            Err(()) => {}
        }
        assert!(
            Instant::now() < deadline,
            "the call on replica 1 still runs after its cancellation through replica 3"
        );
    }
    assert!(
        replicas[0]
            .stderr()
            .contains("request cancelled through another replica")
    );

    // Subscribed through replica 2, GET stream held on replica 3, the
    // update caused through replica 1: the notification reaches the client.
    // (A 2026-07-28 backend has no backend session: the gateway keeps the
    // subscription itself, on the replica that got it, README.)
    let subscriber = if backend_protocol == "2026-07-28" {
        2
    } else {
        1
    };
    let subscribe = http::post_json(
        &replicas[subscriber].url(),
        &in_session(&auth, &id),
        &json!({"jsonrpc": "2.0", "id": 8, "method": "resources/subscribe",
                "params": {"uri": "demo://counter"}}),
    )
    .await;
    assert!(subscribe.rpc().get("result").is_some(), "{subscribe:?}");
    let mut stream = http::open_stream(
        &replicas[2].url(),
        &[
            ("authorization", auth.as_str()),
            ("mcp-session-id", id.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
            ("accept", "text/event-stream"),
        ],
        None,
    )
    .await;
    assert_eq!(stream.status, 200);
    let bump = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "bump_counter", "arguments": {}}});
    let deadline = Instant::now() + SETTLE;
    let last_event_id = 'updated: loop {
        // The backend GET stream opens asynchronously: bump until seen.
        let resp = http::post_json(&replicas[0].url(), &in_session(&auth, &id), &bump).await;
        assert!(resp.rpc().get("result").is_some(), "{resp:?}");
        loop {
            match stream.try_next_event(Duration::from_millis(500)).await {
                Ok(Some(event)) => {
                    let method = event.json().map(|m| m["method"].clone());
                    if method == Some(json!("notifications/resources/updated")) {
                        break 'updated event.id.unwrap_or_default();
                    }
                }
                Ok(None) => panic!("replica 3 ended the GET stream"),
                Err(()) => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "no resources/updated on replica 3's GET stream"
        );
    };
    drop(stream);
    if backend_protocol != "2026-07-28" {
        // The event id says how far the backend's stream got; resumed on
        // replica 2, the backend replays what the client missed meanwhile.
        assert!(
            last_event_id.contains("~gw3~"),
            "event id {last_event_id:?}"
        );
        let resp = http::post_json(&replicas[0].url(), &in_session(&auth, &id), &bump).await;
        assert!(resp.rpc().get("result").is_some(), "{resp:?}");
        let mut resumed = http::open_stream(
            &replicas[1].url(),
            &[
                ("authorization", auth.as_str()),
                ("mcp-session-id", id.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
                ("accept", "text/event-stream"),
                ("last-event-id", last_event_id.as_str()),
            ],
            None,
        )
        .await;
        assert_eq!(resumed.status, 200);
        let replayed = loop {
            match resumed.try_next_event(SETTLE).await {
                Ok(Some(event)) => {
                    let method = event.json().map(|m| m["method"].clone());
                    if method == Some(json!("notifications/resources/updated")) {
                        break event;
                    }
                }
                other => panic!("nothing replayed on replica 2 after {last_event_id:?}: {other:?}"),
            }
        };
        let replayed_id = replayed.id.unwrap_or_default();
        assert!(replayed_id.contains("~gw2~"), "event id {replayed_id:?}");
    }

    // The owner dies: the others go on with the same backend session.
    drop(replicas.remove(0));
    for gw in &replicas {
        let resp = echo_in_session(gw, &auth, &id, "after").await;
        assert_eq!(echoed(&resp), "after", "{resp:?}");
    }
    // Restarted under its old name, the owner takes the session up again.
    let restarted = session_replica(&redis.url(), &keys, &backend, "gw1");
    wait_ready(&restarted, 200).await;
    let resp = echo_in_session(&restarted, &auth, &id, "back").await;
    assert_eq!(echoed(&resp), "back", "{resp:?}");
    drop(restarted);

    // DELETE on one replica: 404 on every replica, also one that never held it.
    let deleted = http::delete(&replicas[0].url(), &in_session(&auth, &id)).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let resp = echo_in_session(&replicas[1], &auth, &id, "gone?").await;
        if resp.status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 3 still serves a deleted session: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        echo_in_session(&replicas[0], &auth, &id, "gone?")
            .await
            .status,
        404
    );
    let late = session_replica(&redis.url(), &keys, &backend, "gw4");
    wait_ready(&late, 200).await;
    assert_eq!(
        echo_in_session(&late, &auth, &id, "gone?").await.status,
        404
    );
    assert_eq!(metric(&late, "mcp_gateway_sessions_adopted_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_session_is_forwarded_to_its_owner_and_ends_with_it() {
    let redis = RedisServer::start();
    let keys = prefix("forward");
    let key_names = key_prefix_of(&keys);
    let mut replicas = start_replicas(&redis, &keys, &stdio_demo_backend(), 2).await;
    // Both replicas registered themselves, with a TTL.
    let deadline = Instant::now() + SETTLE;
    while redis.cli(&["GET", &format!("{key_names}replica:gw1")]) != replicas[0].addr().to_string()
    {
        assert!(Instant::now() < deadline, "replica gw1 never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ttl: i64 = redis
        .cli(&["PTTL", &format!("{key_names}replica:gw1")])
        .parse()
        .unwrap_or(-1);
    assert!((1..=5000).contains(&ttl), "registry key TTL {ttl} ms");

    let auth = format!("Bearer {}", token("stella"));
    let session = McpSession::initialize(
        &replicas[0].url(),
        "2025-11-25",
        &[("authorization", &auth)],
    )
    .await;
    let id = session.session_id.clone().unwrap_or_default();
    // On replica 2 the session's requests are forwarded to its owner.
    for round in 0..3 {
        let resp = echo_in_session(&replicas[1], &auth, &id, &format!("fwd{round}")).await;
        assert_eq!(echoed(&resp), format!("fwd{round}"), "{resp:?}");
    }
    // SSE answers stream back through the forwarding replica.
    let slow = http::post_json(
        &replicas[1].url(),
        &in_session(&auth, &id),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "slow_count", "arguments": {"steps": 3, "delay_ms": 10},
                           "_meta": {"progressToken": "p1"}}}),
    )
    .await;
    assert!(slow.is_sse(), "{slow:?}");
    let progress = slow
        .messages()
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert!(progress >= 1, "{slow:?}");
    assert!(slow.rpc().get("result").is_some(), "{slow:?}");
    assert!(metric(&replicas[1], "mcp_gateway_requests_forwarded_total").await >= 4);
    assert_eq!(
        metric(&replicas[1], "mcp_gateway_sessions_adopted_total").await,
        0
    );
    // Only the owner ran the tools.
    assert_eq!(relayed(&replicas[1]).await, 0);

    // A forwarded request is never forwarded again.
    let mut twice = in_session(&auth, &id).to_vec();
    twice.push(("x-mcp-gateway-forwarded", "gw9"));
    let resp = http::post_json(
        &replicas[1].url(),
        &twice,
        &json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}),
    )
    .await;
    assert_eq!(resp.status, 404, "{resp:?}");

    // The owner dies with its process: 404, never another replica's process,
    // and the client starts over there.
    drop(replicas.remove(0));
    let resp = echo_in_session(&replicas[0], &auth, &id, "orphan").await;
    assert_eq!(resp.status, 404, "{resp:?}");
    let again = McpSession::initialize(
        &replicas[0].url(),
        "2025-11-25",
        &[("authorization", &auth)],
    )
    .await;
    let new_id = again.session_id.clone().unwrap_or_default();
    let resp = echo_in_session(&replicas[0], &auth, &new_id, "fresh").await;
    assert_eq!(echoed(&resp), "fresh", "{resp:?}");
    // The dead replica's registration expires (TTL), the live one's stays.
    let deadline = Instant::now() + SETTLE;
    while !redis
        .cli(&["GET", &format!("{key_names}replica:gw1")])
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the dead replica stays registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !redis
            .cli(&["GET", &format!("{key_names}replica:gw2")])
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_forgets_the_session_ends_it_on_every_replica() {
    let redis = RedisServer::start();
    let mut demo = DemoServer::start_http();
    let backend = format!("{}protocol = \"2025-11-25\"\n", http_demo_backend(&demo));
    let replicas = start_replicas(&redis, &prefix("forgets"), &backend, 2).await;
    let auth = format!("Bearer {}", token("fern"));
    let id = initialize_eliciting(&replicas[0], &auth).await;
    for gw in &replicas {
        assert_eq!(echoed(&echo_in_session(gw, &auth, &id, "x").await), "x");
    }
    // The backend restarts at the same address without its sessions.
    let addr = demo.addr();
    demo.kill();
    let _demo = DemoServer::start_http_at(&addr);
    // The call that finds the backend session gone fails (-32010); after
    // it the session is unknown everywhere, so the client starts over,
    // instead of a replica quietly opening a backend session the others
    // would not know.
    let failed = echo_in_session(&replicas[1], &auth, &id, "y").await;
    assert_eq!(failed.rpc()["error"]["code"], -32010, "{failed:?}");
    for gw in &replicas {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let resp = echo_in_session(gw, &auth, &id, "z").await;
            if resp.status == 404 {
                break;
            }
            assert!(Instant::now() < deadline, "still served: {resp:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let again = initialize_eliciting(&replicas[1], &auth).await;
    assert_eq!(
        echoed(&echo_in_session(&replicas[0], &auth, &again, "new").await),
        "new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_on_unavailable_local_still_adopts_a_session() {
    let mut redis = RedisServer::start();
    let demo = DemoServer::start_http();
    let backend = http_demo_backend(&demo);
    let keys = prefix("down");
    let local = format!("{keys}\non_unavailable = \"local\"");
    let replicas = start_replicas(&redis, &local, &backend, 2).await;
    let auth = format!("Bearer {}", token("hal"));
    let id = initialize_eliciting(&replicas[0], &auth).await;
    redis.kill();
    let deadline = Instant::now() + SETTLE;
    while !metrics(&replicas[1])
        .await
        .contains("mcp_gateway_state_store_up 0")
    {
        assert!(Instant::now() < deadline, "replica 2 never saw Redis go");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = echo_in_session(&replicas[1], &auth, &id, "still").await;
    assert_eq!(echoed(&resp), "still", "{resp:?}");
    assert!(
        replicas[1]
            .stderr()
            .contains("session resumed without checking that it was not deleted")
    );
}

/// A 2025-11-25 session at `gw` whose client can answer elicitation; its id.
async fn initialize_eliciting(gw: &Gateway, auth: &str) -> String {
    let init = http::post_json(
        &gw.url(),
        &[("authorization", auth)],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "scale-out-test", "version": "0"}}}),
    )
    .await;
    assert_eq!(init.status, 200, "{init:?}");
    let id = init.header("mcp-session-id").unwrap_or_default().to_owned();
    let ack = http::post_json(
        &gw.url(),
        &in_session(auth, &id),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(ack.status, 202, "{ack:?}");
    id
}

/// `key_prefix = "…"` → the prefix itself.
fn key_prefix_of(line: &str) -> String {
    line.split('"').nth(1).unwrap_or_default().to_owned()
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
    // script may be followed by an EVAL on each replica; the odd resync of
    // a replica's revocations counts too).
    let trips = total_round_trips(&replicas).await - trips_before;
    assert!(
        trips >= attempts && trips <= attempts + 10,
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
    crate::util::gateway::audit_verify(&[], files)
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
