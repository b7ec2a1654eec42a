use std::time::{Duration, Instant};

use super::*;
use crate::auth::{Credential, Principal};
use crate::mcp::{Call, Method, Target};

fn principal(sub: &str, tenant: Option<&str>, agent: Option<&str>) -> Principal {
    let mut p = Principal::new(sub.into(), "jwt", Credential::default());
    p.tenant = tenant.map(str::to_owned);
    p.client_id = agent.map(str::to_owned);
    p
}

fn tool(name: &str) -> Call {
    Call {
        method: Method::ToolsCall,
        target: Target::Tool(name.into()),
    }
}

fn rule(tool: Option<&str>, agent: Option<&str>, per_second: u32, burst: u32) -> LimitRule {
    LimitRule {
        tenant: None,
        principal: None,
        agent: agent.map(str::to_owned),
        backend: None,
        tool: tool.map(str::to_owned),
        rate: rate(per_second, burst).unwrap(),
    }
}

fn rejected(a: &Admission) -> Option<Duration> {
    match a {
        Admission::Admit => None,
        Admission::Reject { retry_after, .. } => Some(*retry_after),
    }
}

#[test]
fn per_principal_bucket_refuses_with_the_time_to_the_next_token() {
    let limiter = Limiter::new(&RateLimits {
        per_principal: rate(1, 2),
        max_keys: 100,
        ..Default::default()
    });
    let alice = principal("alice", Some("acme"), None);
    let bob = principal("bob", Some("acme"), None);
    let call = tool("echo");
    assert_eq!(limiter.check(&alice, &call, None), Admission::Admit);
    assert_eq!(limiter.check(&alice, &call, None), Admission::Admit);
    let wait = rejected(&limiter.check(&alice, &call, None)).expect("third call refused");
    assert!(
        wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    // Another principal has its own bucket.
    assert_eq!(limiter.check(&bob, &call, None), Admission::Admit);
}

#[test]
fn rules_match_tool_and_agent_and_star_splits_buckets() {
    let limiter = Limiter::new(&RateLimits {
        rules: vec![
            rule(Some("slow"), None, 1, 1),
            rule(Some("*"), Some("bot"), 1, 1),
        ],
        max_keys: 100,
        ..Default::default()
    });
    let human = principal("h", None, Some("ui"));
    let bot = principal("b", None, Some("bot"));
    // "slow" is shared by everybody; the prefix of its backend is stripped.
    assert_eq!(
        limiter.check(&human, &tool("be__slow"), Some("be")),
        Admission::Admit
    );
    assert!(rejected(&limiter.check(&bot, &tool("slow"), Some("be"))).is_some());
    // The bot gets one call per tool per second, each tool its own bucket.
    assert_eq!(limiter.check(&bot, &tool("a"), None), Admission::Admit);
    assert_eq!(limiter.check(&bot, &tool("b"), None), Admission::Admit);
    assert!(rejected(&limiter.check(&bot, &tool("a"), None)).is_some());
    // Not the human.
    assert_eq!(limiter.check(&human, &tool("a"), None), Admission::Admit);
    assert_eq!(limiter.check(&human, &tool("a"), None), Admission::Admit);
}

#[test]
fn tenant_limit_is_shared_by_its_principals() {
    let limiter = Limiter::new(&RateLimits {
        tenants: [("acme".to_owned(), rate(1, 1).unwrap())].into(),
        max_keys: 100,
        ..Default::default()
    });
    let call = tool("echo");
    assert_eq!(
        limiter.check(&principal("a", Some("acme"), None), &call, None),
        Admission::Admit
    );
    assert!(rejected(&limiter.check(&principal("b", Some("acme"), None), &call, None)).is_some());
    assert_eq!(
        limiter.check(&principal("c", Some("other"), None), &call, None),
        Admission::Admit
    );
}

#[test]
fn reload_keeps_the_buckets_of_unchanged_limits() {
    let mut config = RateLimits {
        per_principal: rate(1, 1),
        max_keys: 100,
        ..Default::default()
    };
    let limiter = Limiter::new(&config);
    let p = principal("a", None, None);
    assert_eq!(limiter.check(&p, &tool("x"), None), Admission::Admit);
    config.rules.push(rule(Some("y"), None, 5, 5));
    limiter.reload(&config);
    assert!(
        rejected(&limiter.check(&p, &tool("x"), None)).is_some(),
        "bucket kept"
    );
    config.per_principal = rate(1, 2);
    limiter.reload(&config);
    assert_eq!(
        limiter.check(&p, &tool("x"), None),
        Admission::Admit,
        "changed limit starts afresh"
    );
}

#[test]
fn in_flight_caps_are_released_on_drop() {
    let limiter = Limiter::new(&RateLimits {
        max_in_flight_per_principal: Some(1),
        max_in_flight_per_backend: Some(2),
        max_keys: 100,
        ..Default::default()
    });
    let a = principal("a", None, None);
    let b = principal("b", None, None);
    let c = principal("c", None, None);
    let first = limiter.enter(&a, Some("be")).unwrap();
    assert!(limiter.enter(&a, Some("be")).is_err());
    let second = limiter.enter(&b, Some("be")).unwrap();
    assert!(limiter.enter(&c, Some("be")).is_err(), "backend cap");
    drop(first);
    drop(second);
    assert!(limiter.enter(&a, Some("be")).is_ok());
    assert!(limiter.in_flight.is_empty());
}

/// 10,000 distinct principals: buckets stay under `max_rate_keys`, and
/// idle ones are evicted once they have refilled.
#[test]
fn ten_thousand_principals_stay_within_the_key_bound() {
    let limiter = Limiter::new(&RateLimits {
        per_principal: rate(1000, 1),
        max_keys: 2000,
        ..Default::default()
    });
    let call = tool("echo");
    let started = Instant::now();
    let mut refused = 0;
    for i in 0..10_000 {
        if limiter.check(&principal(&format!("p{i}"), None, None), &call, None) != Admission::Admit
        {
            refused += 1;
        }
        assert!(
            limiter.keys() <= 2000 + KEY_CHECK_EVERY as usize,
            "bucket count {} over the bound",
            limiter.keys()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Buckets refill in 1 ms: almost every new principal got in.
    assert!(refused < 1000, "{refused} refused");
    std::thread::sleep(Duration::from_millis(20));
    limiter.evict_idle();
    assert_eq!(limiter.keys(), 0);
}

/// The Redis keys of a limit follow its definition: a reload keeps an
/// unchanged limit's shared buckets and starts a changed one afresh, as
/// the in-process buckets do.
#[test]
fn shared_bucket_ids_follow_the_limit_definition() {
    let ids = |config: &RateLimits| -> Vec<String> {
        build(config, &[])
            .limits
            .iter()
            .map(|l| l.shared_id.clone())
            .collect()
    };
    let mut config = RateLimits {
        per_principal: rate(1, 1),
        rules: vec![rule(Some("y"), None, 5, 5)],
        max_keys: 100,
        ..Default::default()
    };
    let before = ids(&config);
    assert_eq!(before.len(), 2);
    assert_ne!(before[0], before[1]);
    assert!(before.iter().all(|id| id.len() == 16));
    assert_eq!(ids(&config), before, "stable across builds and processes");
    config.rules[0].rate = rate(5, 6).unwrap();
    let after = ids(&config);
    assert_eq!(after[0], before[0], "unchanged limit keeps its keys");
    assert_ne!(after[1], before[1], "changed limit starts afresh");
}
