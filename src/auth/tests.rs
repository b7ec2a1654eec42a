use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};

use super::claims::{Rules, principal};
use super::mint::{SigningKey, act_claim, backend_claims};
use super::*;

const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIBOHh+IctGcqsYJD680zDie4ZLWMyji35bMaawrIatdf
-----END PRIVATE KEY-----
";
const P256_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPeQGm/9oNm5ZJchU
j2lLD3wgkWQA/4YahiFyw+Qca7+hRANCAATb6KbfwfM4er4rXExpCWnZMZfxXZvS
kaW22FlYnmXGdpFMkF7es1GX3f0QQVcZF+MS+bFhNyExKxB2bDG1YOTV
-----END PRIVATE KEY-----
";
const SECRET: &str = "a-development-secret-of-32-bytes!!";
const NOW: u64 = 1_800_000_000;

fn rules() -> Rules {
    Rules {
        issuer: Some("https://idp.example".into()),
        audiences: vec!["https://gw.example/mcp".into()],
        leeway: 30,
        tenant_claim: "tenant".into(),
        scope_claim: "scope".into(),
        max_delegation_depth: 2,
        strict: true,
    }
}

fn base_claims() -> Map<String, Value> {
    match json!({
        "iss": "https://idp.example", "aud": "https://gw.example/mcp", "sub": "alice",
        "exp": NOW + 60, "iat": NOW, "jti": "t1",
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// The claims with `patch` applied (a null value removes the claim), checked
/// at `NOW`.
#[track_caller]
fn check(patch: Value, expected: Result<(), AuthError>) {
    let mut claims = base_claims();
    if let Value::Object(patch) = patch {
        for (k, v) in patch {
            if v.is_null() {
                claims.remove(&k);
            } else {
                claims.insert(k, v);
            }
        }
    }
    let got = principal(&claims, &rules(), NOW, "jwt").map(|_| ());
    assert_eq!(got, expected, "claims: {}", Value::Object(claims));
}

fn claim_error(claim: &str, reason: &'static str) -> Result<(), AuthError> {
    Err(AuthError::InvalidClaim {
        claim: claim.into(),
        reason,
    })
}

#[test]
fn claim_rules() {
    check(json!({}), Ok(()));
    check(
        json!({"exp": NOW - 31}),
        Err(AuthError::Expired { exp: NOW - 31 }),
    );
    check(json!({"exp": NOW - 29}), Ok(())); // within leeway
    check(json!({"exp": null}), Err(AuthError::MissingClaim("exp")));
    check(
        json!({"exp": "soon"}),
        claim_error("exp", "must be a number"),
    );
    check(
        json!({"exp": -5}),
        claim_error("exp", "must be a non-negative number of seconds"),
    );
    check(json!({"exp": (NOW + 60) as f64 + 0.5}), Ok(()));
    check(
        json!({"nbf": NOW + 31}),
        Err(AuthError::NotYetValid { nbf: NOW + 31 }),
    );
    check(json!({"nbf": NOW + 29}), Ok(()));
    check(
        json!({"iat": NOW + 600}),
        Err(AuthError::IssuedInFuture { iat: NOW + 600 }),
    );
    check(
        json!({"iss": "https://evil.example"}),
        Err(AuthError::Issuer),
    );
    check(json!({"iss": "https://idp.example/"}), Ok(()));
    check(json!({"iss": null}), Err(AuthError::MissingClaim("iss")));
    check(json!({"iss": 7}), claim_error("iss", "must be a string"));
    check(
        json!({"aud": "https://other.example"}),
        Err(AuthError::Audience),
    );
    check(json!({"aud": ["x", "https://gw.example/mcp"]}), Ok(()));
    check(json!({"aud": ["x", "y"]}), Err(AuthError::Audience));
    check(json!({"aud": null}), Err(AuthError::MissingClaim("aud")));
    check(
        json!({"aud": [1]}),
        claim_error("aud", "must be a string or an array of strings"),
    );
    check(json!({"sub": null}), Err(AuthError::MissingClaim("sub")));
    check(json!({"sub": ""}), claim_error("sub", "must not be empty"));
    check(json!({"sub": 42}), claim_error("sub", "must be a string"));
    let scope_error = "must be a space-separated string or an array of scope strings";
    check(json!({"scope": "a b"}), Ok(()));
    check(json!({"scope": 5}), claim_error("scope", scope_error));
    check(
        json!({"scope": {"a": 1}}),
        claim_error("scope", scope_error),
    );
    check(json!({"scp": ["a", "b"]}), Ok(()));
    check(json!({"scp": [1]}), claim_error("scp", scope_error));
    check(
        json!({"tenant": ["acme"]}),
        claim_error("tenant", "must be a string"),
    );
    check(
        json!({"client_id": 1}),
        claim_error("client_id", "must be a string"),
    );
    check(json!({"act": {"sub": "agent"}}), Ok(()));
    check(json!({"act": {"sub": "a", "act": {"sub": "b"}}}), Ok(()));
    check(
        json!({"act": {"sub": "a", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d"}}}}}),
        Err(AuthError::DelegationTooDeep { depth: 4, max: 2 }),
    );
    check(
        json!({"act": "agent"}),
        claim_error("act", "must be an object with a \"sub\""),
    );
    check(
        json!({"act": {"client": "x"}}),
        claim_error("act", "must be an object with a \"sub\""),
    );
}

#[test]
fn claims_become_the_principal() {
    let mut claims = base_claims();
    claims.insert("scope".into(), json!("tools:call  tools:list tools:call"));
    claims.insert("tenant".into(), json!("acme"));
    claims.insert("azp".into(), json!("web-app"));
    claims.insert("agent_type".into(), json!("assistant"));
    claims.insert(
        "act".into(),
        json!({"sub": "agent-1", "act": {"sub": "orchestrator"}}),
    );
    let p = principal(&claims, &rules(), NOW, "jwt").expect("valid");
    assert_eq!(p.sub, "alice");
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(p.client_id.as_deref(), Some("web-app"));
    assert_eq!(p.agent_type.as_deref(), Some("assistant"));
    assert_eq!(p.scopes, ["tools:call", "tools:list"]);
    assert_eq!(p.actors, ["agent-1", "orchestrator"]);
    assert_eq!(p.delegation_depth(), 2);
    assert_eq!(p.token_id().as_deref(), Some("t1"));
    assert_eq!(p.expires_at(), Some(NOW + 60));
    // client_id wins over azp.
    claims.insert("client_id".into(), json!("cli"));
    let p = principal(&claims, &rules(), NOW, "jwt").expect("valid");
    assert_eq!(p.client_id.as_deref(), Some("cli"));
    // A custom scope claim.
    let mut r = rules();
    r.scope_claim = "permissions".into();
    claims.insert("permissions".into(), json!(["a", "b"]));
    let p = principal(&claims, &r, NOW, "jwt").expect("valid");
    assert_eq!(p.scopes, ["a", "b"]);
}

#[test]
fn principal_equality_is_identity_not_token() {
    let a = principal(&base_claims(), &rules(), NOW, "jwt").expect("valid");
    let mut refreshed = base_claims();
    refreshed.insert("jti".into(), json!("t2"));
    refreshed.insert("exp".into(), json!(NOW + 3600));
    let b = principal(&refreshed, &rules(), NOW, "jwt").expect("valid");
    assert_eq!(a, b);
    assert_eq!(a.binding_key(), b.binding_key());
    a.renew_from(&b);
    assert_eq!(a.token_id().as_deref(), Some("t2"));
    assert_eq!(a.expires_at(), Some(NOW + 3600));

    let mut other_scopes = base_claims();
    other_scopes.insert("scope".into(), json!("admin"));
    let c = principal(&other_scopes, &rules(), NOW, "jwt").expect("valid");
    assert_ne!(a, c);
    assert_ne!(a.binding_key(), c.binding_key());
    c.renew_from(&b);
    assert_eq!(
        c.token_id().as_deref(),
        Some("t1"),
        "another identity is not adopted"
    );

    // Clones do not share the credential cell.
    let d = a.clone();
    d.renew_from(&principal(&base_claims(), &rules(), NOW, "jwt").expect("valid"));
    assert_eq!(a.token_id().as_deref(), Some("t2"));
    assert_eq!(d.token_id().as_deref(), Some("t1"));
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    std::env::temp_dir().join(format!("mcp-gw-auth-{}-{name}", hex::encode(bytes)))
}

fn authenticator(extra: &str, env: &[(&str, &str)]) -> Arc<Authenticator> {
    let jwks = temp_path("jwks.json");
    let keys = [
        SigningKey::from_pem(ED25519_PEM, Some("ed".into())).expect("ed25519"),
        SigningKey::from_pem(P256_PEM, None).expect("p256"),
    ];
    std::fs::write(&jwks, mint::jwks(&keys).to_string()).expect("write jwks");
    let toml = format!(
        "[auth]\nmode = \"jwt\"\nissuer = \"https://idp.example\"\naudience = \"https://gw.example/mcp\"\n\
         jwks_file = {:?}\n{extra}",
        jwks.display().to_string()
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = crate::config::load_str(&toml, "test.toml", &|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Authenticator::new(&config.auth)
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

fn token(key: &SigningKey, patch: Value) -> String {
    let mut claims = base_claims();
    let now = now_unix();
    claims.insert("exp".into(), json!(now + 60));
    claims.insert("iat".into(), json!(now));
    if let Value::Object(patch) = patch {
        for (k, v) in patch {
            claims.insert(k, v);
        }
    }
    key.sign(&claims).expect("sign")
}

#[tokio::test]
async fn jwt_verification() {
    let auth = authenticator(
        "hs256_secret_env = \"S\"\nalgorithms = [\"EdDSA\", \"ES256\", \"HS256\"]\n",
        &[("S", SECRET)],
    );
    let ed = SigningKey::from_pem(ED25519_PEM, Some("ed".into())).expect("key");
    let p256 = SigningKey::from_pem(P256_PEM, None).expect("key");
    let hs = SigningKey::hs256(SECRET.as_bytes(), None).expect("key");
    for key in [&ed, &p256, &hs] {
        let p = auth
            .authenticate(&bearer(&token(key, json!({}))))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(p.sub, "alice");
        assert_eq!(p.auth, "jwt");
    }
    // Unknown kid, wrong key for a known kid, a token without kid.
    let unknown = SigningKey::from_pem(ED25519_PEM, Some("other".into())).expect("key");
    assert_eq!(
        auth.authenticate(&bearer(&token(&unknown, json!({}))))
            .await
            .err(),
        Some(AuthError::UnknownKey {
            kid: Some("other".into())
        })
    );
    let mut claims = base_claims();
    claims.insert("exp".into(), json!(now_unix() + 60));
    claims.insert("iat".into(), json!(now_unix()));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = None;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(P256_PEM.as_bytes()).expect("key");
    let t = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
    let result = auth.authenticate(&bearer(&t)).await;
    assert!(result.is_ok(), "no kid: any key of the type: {result:?}");
    // alg none, tampered payload, truncated, garbage.
    let good = token(&ed, json!({}));
    let mut parts = good.split('.');
    let (h, p, s) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{p}.", b64(&json!({"alg": "none"})));
    assert_eq!(
        auth.authenticate(&bearer(&none)).await.err(),
        Some(AuthError::Algorithm("none".into()))
    );
    let tampered = format!("{h}.{}.{s}", b64(&json!({"sub": "mallory"})));
    assert_eq!(
        auth.authenticate(&bearer(&tampered)).await.err(),
        Some(AuthError::Signature)
    );
    assert!(matches!(
        auth.authenticate(&bearer(&format!("{h}.{p}"))).await,
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        auth.authenticate(&bearer("not-a-jwt")).await,
        Err(AuthError::Malformed(_))
    ));
    assert_eq!(
        auth.authenticate(&HeaderMap::new()).await.err(),
        Some(AuthError::Missing)
    );
    let mut basic = HeaderMap::new();
    basic.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic YTpi"),
    );
    assert_eq!(
        auth.authenticate(&basic).await.err(),
        Some(AuthError::UnsupportedScheme)
    );
}

#[tokio::test]
async fn hs256_is_refused_unless_configured() {
    let auth = authenticator("", &[]);
    let hs = SigningKey::hs256(SECRET.as_bytes(), None).expect("key");
    assert_eq!(
        auth.authenticate(&bearer(&token(&hs, json!({}))))
            .await
            .err(),
        Some(AuthError::Algorithm("HS256".into()))
    );
}

#[tokio::test]
async fn cache_and_revocation() {
    let file = temp_path("revocations.json");
    let auth = authenticator(
        &format!("revocations_file = {:?}\n", file.display().to_string()),
        &[],
    );
    let ed = SigningKey::from_pem(ED25519_PEM, Some("ed".into())).expect("key");
    let t = token(
        &ed,
        json!({"jti": "j-1", "client_id": "app", "tenant": "acme"}),
    );
    let p = auth.authenticate(&bearer(&t)).await.expect("valid");
    assert_eq!(auth.cache.len(), 1);
    assert!(auth.authenticate(&bearer(&t)).await.is_ok(), "cache hit");
    for (body, by) in [
        (json!({"jti": "j-1"}), RevokedBy::Jti),
        (json!({"sub": "alice"}), RevokedBy::Sub),
        (json!({"client_id": "app"}), RevokedBy::ClientId),
        (json!({"tenant": "acme"}), RevokedBy::Tenant),
    ] {
        let entry = auth.revocations.add(&body).expect("stored");
        assert_eq!(
            auth.authenticate(&bearer(&t)).await.err(),
            Some(AuthError::Revoked(by))
        );
        assert_eq!(auth.still_valid(&p), Err(AuthError::Revoked(by)));
        assert!(auth.revocations.remove(&entry.id).expect("removed"));
        assert!(auth.still_valid(&p).is_ok());
    }
    // An actor of the chain is revoked by its sub.
    let delegated = token(&ed, json!({"act": {"sub": "rogue-agent"}, "jti": "j-2"}));
    auth.revocations
        .add(&json!({"sub": "rogue-agent"}))
        .expect("stored");
    assert_eq!(
        auth.authenticate(&bearer(&delegated)).await.err(),
        Some(AuthError::Revoked(RevokedBy::Sub))
    );
    // An expired revocation no longer applies; a future one does.
    auth.revocations
        .add(&json!({"jti": "j-1", "until": "2001-01-01T00:00:00Z"}))
        .expect("stored");
    assert!(auth.authenticate(&bearer(&t)).await.is_ok());
    auth.revocations
        .add(&json!({"jti": "j-1", "until": "2999-01-01T00:00:00+02:00"}))
        .expect("stored");
    assert!(auth.authenticate(&bearer(&t)).await.is_err());
    // Persisted: a new store over the same file knows both live entries.
    let reopened = revocation::Store::open(Some(file.clone()));
    assert_eq!(reopened.list().len(), 2);
    assert!(reopened.load_error().is_none());
    // Bad bodies.
    for bad in [
        json!({}),
        json!({"jti": "a", "sub": "b"}),
        json!({"jti": ""}),
        json!({"jti": 1}),
        json!({"jti": "a", "until": "tomorrow"}),
        json!({"jti": "a", "colour": "red"}),
        json!([1]),
    ] {
        assert!(
            matches!(
                auth.revocations.add(&bad),
                Err(revocation::StoreError::Invalid(_))
            ),
            "{bad}"
        );
    }
    // A corrupt file refuses everything (fail closed).
    std::fs::write(&file, "{not json").expect("write");
    let broken = revocation::Store::open(Some(file.clone()));
    assert!(broken.load_error().is_some());
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn shared_revocations_replace_the_local_copy_and_fail_closed() {
    let auth = authenticator("", &[]);
    let ed = SigningKey::from_pem(ED25519_PEM, Some("ed".into())).expect("key");
    let t = token(&ed, json!({"jti": "j-9"}));
    let p = auth.authenticate(&bearer(&t)).await.expect("valid");
    let changes = auth.revocations.subscribe();
    // What another replica revoked arrives as the whole shared list.
    let shared = auth
        .revocations
        .new_entry(&json!({"sub": "alice"}))
        .expect("entry");
    auth.revocations.replace_all(vec![shared.clone()]);
    assert!(changes.has_changed().unwrap_or(false), "streams are woken");
    assert_eq!(
        auth.still_valid(&p),
        Err(AuthError::Revoked(RevokedBy::Sub))
    );
    assert_eq!(auth.revocations.list(), vec![shared]);
    auth.revocations.replace_all(Vec::new());
    assert!(auth.still_valid(&p).is_ok());
    // The shared store unreachable (on_unavailable = "deny"): fail closed.
    auth.revocations.set_shared_unavailable(true);
    assert_eq!(auth.still_valid(&p), Err(AuthError::StateUnavailable));
    assert_eq!(
        auth.authenticate(&bearer(&t)).await.err(),
        Some(AuthError::StateUnavailable)
    );
    auth.revocations.set_shared_unavailable(false);
    assert!(auth.authenticate(&bearer(&t)).await.is_ok());
}

#[tokio::test]
async fn api_keys() {
    let digest = |k: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(k.as_bytes()));
    let auth = authenticator(
        &format!(
            "[[auth.api_keys]]\nsha256 = \"{}\"\nsubject = \"legacy-bot\"\ntenant = \"acme\"\nscopes = [\"tools:call\"]\n\
             [[auth.api_keys]]\nheader = \"authorization\"\nsha256 = \"{}\"\nsubject = \"other-bot\"\n",
            digest("k-one"),
            digest("k-two")
        ),
        &[],
    );
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("k-one"));
    let p = auth.authenticate(&h).await.expect("valid key");
    assert_eq!((p.sub.as_str(), p.auth), ("legacy-bot", "api_key"));
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    assert_eq!(p.scopes, ["tools:call"]);
    h.insert("x-api-key", HeaderValue::from_static("k-two"));
    assert_eq!(
        auth.authenticate(&h).await.err(),
        Some(AuthError::InvalidApiKey)
    );
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("apikey k-two"),
    );
    assert_eq!(auth.authenticate(&h).await.expect("valid").sub, "other-bot");
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("ApiKey nope"),
    );
    assert_eq!(
        auth.authenticate(&h).await.err(),
        Some(AuthError::InvalidApiKey)
    );
    // A bearer token still goes to the JWT path.
    let ed = SigningKey::from_pem(ED25519_PEM, Some("ed".into())).expect("key");
    assert!(
        auth.authenticate(&bearer(&token(&ed, json!({}))))
            .await
            .is_ok()
    );
    assert_eq!(
        auth.credential_query_param("session_id=1&access_token=x"),
        Some("access_token")
    );
    assert_eq!(
        auth.credential_query_param("X-Api-Key=1"),
        Some("X-Api-Key")
    );
    assert_eq!(auth.credential_query_param("session_id=abc"), None);
}

#[test]
fn minted_backend_claims() {
    let mut caller = Principal::new("alice".into(), "jwt", Credential::default());
    caller.tenant = Some("acme".into());
    caller.scopes = vec!["a".into(), "b".into()];
    caller.actors = vec!["agent-1".into()];
    let claims = backend_claims(&caller, "mcp-gateway", "https://backend", NOW, 60);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "https://backend");
    assert_eq!(claims["exp"], NOW + 60);
    assert_eq!(claims["scope"], "a b");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(
        claims["act"],
        json!({"sub": "mcp-gateway", "act": {"sub": "agent-1"}})
    );
    assert_eq!(act_claim(&[]), None);
    assert!(SigningKey::from_pem("not a key", None).is_err());
    let key = SigningKey::from_pem(P256_PEM, None).expect("key");
    assert_eq!(key.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = key.public_jwk().expect("public");
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "never the private part");
}

#[test]
fn cache_is_bounded() {
    let cache = cache::TokenCache::new(32);
    for i in 0..1000u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        cache.insert(key, Principal::anonymous(), u64::MAX);
    }
    assert!(cache.len() <= 32, "{}", cache.len());
    let key = [9u8; 32];
    cache.insert(key, Principal::anonymous(), 10);
    assert!(cache.get(&key, 10).is_some());
    assert!(
        cache.get(&key, 11).is_none(),
        "kept until its deadline only"
    );
}

/// A JWKS endpoint counting its fetches; `keys` can be swapped (rotation).
async fn jwks_server(
    keys: Arc<std::sync::Mutex<Value>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let keys = keys.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = keys.lock().map(|k| k.to_string()).unwrap_or_default();
                ([(http::header::CONTENT_TYPE, "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/jwks")
}

#[tokio::test]
async fn unknown_kids_refresh_the_jwks_at_a_bounded_rate() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ed = SigningKey::from_pem(ED25519_PEM, Some("ed".into())).expect("key");
    let p256 = SigningKey::from_pem(P256_PEM, Some("ec-new".into())).expect("key");
    let keys = Arc::new(std::sync::Mutex::new(mint::jwks([&ed])));
    let hits = Arc::new(AtomicUsize::new(0));
    let uri = jwks_server(keys.clone(), hits.clone()).await;
    let toml = format!(
        "[auth]\nmode = \"jwt\"\nissuer = \"https://idp.example\"\naudience = \"https://gw.example/mcp\"\n\
         jwks_uri = \"{uri}\"\njwks_min_refresh_s = 1\n"
    );
    let config = crate::config::load_str(&toml, "t.toml", &|_| None).expect("config");
    let auth = Authenticator::new(&config.auth);
    assert!(
        auth.authenticate(&bearer(&token(&ed, json!({}))))
            .await
            .is_ok()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched on first use");

    // A flood of bogus kids: at most one more fetch.
    let bogus = SigningKey::from_pem(ED25519_PEM, Some("bogus".into())).expect("key");
    let flood: Vec<_> = (0..50)
        .map(|i| {
            let auth = auth.clone();
            let t = token(&bogus, json!({"jti": format!("b{i}")}));
            tokio::spawn(async move { auth.authenticate(&bearer(&t)).await })
        })
        .collect();
    for r in flood {
        assert!(matches!(
            r.await.expect("task"),
            Err(AuthError::UnknownKey { .. })
        ));
    }
    assert!(
        hits.load(Ordering::SeqCst) <= 2,
        "{} fetches",
        hits.load(Ordering::SeqCst)
    );

    // Rotation: a new kid is found once the rate limit allows a fetch; the
    // old key keeps working while it is published.
    if let Ok(mut k) = keys.lock() {
        *k = mint::jwks([&ed, &p256]);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = token(&p256, json!({}));
    assert!(auth.authenticate(&bearer(&rotated)).await.is_ok());
    assert!(
        auth.authenticate(&bearer(&token(&ed, json!({"jti": "x"}))))
            .await
            .is_ok()
    );
    // The issuer unreachable from the start: 503-class, not "unknown key".
    let down = crate::config::load_str(
        "[auth]\nmode = \"jwt\"\nissuer = \"https://idp.example\"\naudience = \"https://gw.example/mcp\"\n\
         jwks_uri = \"http://127.0.0.1:9/jwks\"\n",
        "t.toml",
        &|_| None,
    )
    .expect("config");
    let auth = Authenticator::new(&down.auth);
    assert!(matches!(
        auth.authenticate(&bearer(&token(&ed, json!({})))).await,
        Err(AuthError::KeysUnavailable(_))
    ));
}
