//! Authentication end to end: the real gateway in front of the header-echo
//! backend, which logs every request it receives. A table of bad
//! credentials (expired, foreign, forged, revoked, misplaced …) gets exact
//! statuses and challenges, and none of them reaches the backend; protected
//! resource metadata; sessions bound to identity; revocation that ends open
//! streams within a second and survives a restart; minted backend tokens
//! that verify against the gateway's JWKS while the client's token never
//! arrives.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::util::auth::{EchoHeaders, Keys, claims_of, forge, header_of, mint, revoke, toml_path};
use crate::util::http::{self, McpSession, modern_request};
use crate::util::{Gateway, TestDir};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://gw.test/mcp";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// `[auth]` with the test keys' JWKS, API keys, required scope "mcp".
fn auth_toml(extra: &str) -> String {
    let keys = Keys::get();
    format!(
        "[auth]\nmode = \"jwt\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = {}\n\
         {leeway}max_delegation_depth = 2\nrequired_scopes = [\"mcp\"]\n{extra}\n\
         [[auth.api_keys]]\nsha256 = \"{key_one}\"\nsubject = \"legacy-bot\"\nscopes = [\"mcp\"]\n\
         [[auth.api_keys]]\nheader = \"authorization\"\nsha256 = \"{key_two}\"\nsubject = \"other-bot\"\nscopes = [\"mcp\"]\n",
        toml_path(&keys.path("jwks.json")),
        leeway = if extra.contains("leeway_s") {
            ""
        } else {
            "leeway_s = 60\n"
        },
        key_one = sha256_hex("key-one"),
        key_two = sha256_hex("key-two"),
    )
}

fn gateway(auth_extra: &str, backends: &str) -> Gateway {
    Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n[admin]\ntoken_env = \"GW_ADMIN_TOKEN\"\n{}\n{backends}",
        auth_toml(auth_extra)
    ))
    .env("GW_ADMIN_TOKEN", ADMIN_TOKEN)
    .start()
}

/// `token mint` with the RSA test key and the gateway's issuer and
/// audience, subject alice, scope mcp; `extra` adds or overrides.
fn token(extra: &[&str]) -> String {
    let key = Keys::get().path("rsa.pem").display().to_string();
    let mut args = vec!["--key", &key, "--kid", "rsa-1", "--iss", ISS];
    if !extra.contains(&"--sub") {
        args.extend(["--sub", "alice"]);
    }
    if !extra.contains(&"--aud") {
        args.extend(["--aud", AUD]);
    }
    if !extra.contains(&"--scope") {
        args.extend(["--scope", "mcp"]);
    }
    let mut all: Vec<&str> = args;
    all.extend_from_slice(extra);
    mint(&all)
}

/// Signs `claims` with a test key file and `alg` (for what `token mint`
/// does not make: other algorithms, odd claim types).
fn sign(alg: Algorithm, file: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = Keys::get().read(file);
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        Algorithm::HS256 => EncodingKey::from_secret(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .expect("key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Valid claims with `patch` applied (null removes a claim).
fn claims(patch: Value) -> Value {
    let mut c = json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "scope": "mcp",
        "iat": now(), "exp": now() + 600, "jti": "corpus",
    });
    if let (Some(obj), Value::Object(patch)) = (c.as_object_mut(), patch) {
        for (k, v) in patch {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
    }
    c
}

/// How a case presents its credential.
enum Cred {
    None,
    Bearer(String),
    Header(&'static str, String),
    /// Raw header lines (repeated names allowed).
    Headers(Vec<(&'static str, String)>),
    /// A query string appended to the URL, plus a valid bearer token.
    Query(String),
}

struct Case {
    name: &'static str,
    cred: Cred,
    status: u16,
    /// The `error=` of `WWW-Authenticate`, `None` for none.
    error: Option<&'static str>,
}

fn case(name: &'static str, cred: Cred, status: u16, error: Option<&'static str>) -> Case {
    Case {
        name,
        cred,
        status,
        error,
    }
}

fn bad(name: &'static str, token: String) -> Case {
    case(name, Cred::Bearer(token), 401, Some("invalid_token"))
}

fn good(name: &'static str, cred: Cred) -> Case {
    case(name, cred, 200, None)
}

/// A stateless tools/call of the echo backend through `/mcp` with `cred`.
async fn call(gw: &Gateway, cred: &Cred) -> http::RawResponse {
    let mut url = gw.url();
    let mut headers: Vec<(&str, String)> = Vec::new();
    match cred {
        Cred::None => {}
        Cred::Bearer(t) => headers.push(("authorization", format!("Bearer {t}"))),
        Cred::Header(name, value) => headers.push((name, value.clone())),
        Cred::Headers(list) => headers.extend(list.iter().cloned()),
        Cred::Query(q) => {
            url = format!("{url}?{q}");
            headers.push(("authorization", format!("Bearer {}", token(&[]))));
        }
    }
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    modern_request(
        &url,
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi"}}),
        &refs,
    )
    .await
}

/// `error="…"` of a challenge.
fn challenge_error(www: &str) -> Option<String> {
    let at = www.find("error=\"")? + 7;
    let rest = www.get(at..)?;
    Some(rest.split('"').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_corpus_never_reaches_the_backend() {
    let echo = EchoHeaders::start();
    let gw = gateway("", &echo.backend_toml("echo", ""));
    let admin = gw.admin_url();
    for body in [
        json!({"jti": "revoked-jti"}),
        json!({"sub": "revoked-sub"}),
        json!({"client_id": "revoked-client"}),
        json!({"tenant": "revoked-tenant"}),
        json!({"sub": "rogue-agent"}),
    ] {
        revoke(&admin, Some(ADMIN_TOKEN), body).await;
    }

    let valid = claims(json!({}));
    let good_token = token(&[]);
    let (h, p, s) = {
        let mut parts = good_token.split('.');
        (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        )
    };
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let rsa_header = header_of(&good_token);
    let huge_kid = "k".repeat(9000);

    let cases = vec![
        // Absent or misplaced credentials.
        case("no credentials", Cred::None, 401, None),
        case(
            "basic scheme",
            Cred::Header("authorization", "Basic YWxpY2U6cHc=".into()),
            401,
            None,
        ),
        case(
            "empty bearer",
            Cred::Header("authorization", "Bearer ".into()),
            401,
            None,
        ),
        case(
            "two authorization headers",
            Cred::Headers(vec![
                ("authorization", format!("Bearer {good_token}")),
                ("authorization", format!("Bearer {good_token}")),
            ]),
            400,
            Some("invalid_request"),
        ),
        case(
            "access_token in the query",
            Cred::Query(format!("access_token={good_token}")),
            400,
            Some("invalid_request"),
        ),
        case(
            "api key in the query",
            Cred::Query("x-api-key=key-one".into()),
            400,
            Some("invalid_request"),
        ),
        case(
            "token in the query",
            Cred::Query("token=abc".into()),
            400,
            Some("invalid_request"),
        ),
        // Time.
        bad("expired", token(&["--ttl", "-300"])),
        good(
            "expired within the leeway",
            Cred::Bearer(token(&["--ttl", "-20"])),
        ),
        bad("not yet valid", token(&["--nbf", "600"])),
        bad("issued in the future", token(&["--iat", "600"])),
        bad(
            "no exp",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"exp": null})),
            ),
        ),
        bad(
            "exp as a string",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"exp": "tomorrow"})),
            ),
        ),
        // Issuer, audience, subject.
        bad(
            "wrong issuer",
            mint(&[
                "--key",
                &Keys::get().path("rsa.pem").display().to_string(),
                "--kid",
                "rsa-1",
                "--iss",
                "https://evil.test",
                "--aud",
                AUD,
                "--sub",
                "alice",
                "--scope",
                "mcp",
            ]),
        ),
        bad(
            "wrong audience",
            token(&["--aud", "https://other.test/mcp"]),
        ),
        bad(
            "audience list without ours",
            token(&["--aud", "https://a.test", "--aud", "https://b.test"]),
        ),
        good(
            "audience list with ours",
            Cred::Bearer(token(&["--aud", "https://a.test", "--aud", AUD])),
        ),
        bad(
            "no audience",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"aud": null})),
            ),
        ),
        bad(
            "no subject",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"sub": null})),
            ),
        ),
        // Algorithms and keys.
        bad(
            "alg none, no signature",
            forge(&json!({"alg": "none", "typ": "JWT"}), &valid, ""),
        ),
        bad(
            "alg none, a real signature",
            format!("{}.{p}.{s}", b64(&json!({"alg": "none", "kid": "rsa-1"}))),
        ),
        bad(
            "HS256 signed with the RSA public key",
            sign(Algorithm::HS256, "rsa_pub.pem", Some("rsa-1"), &valid),
        ),
        bad(
            "HS256 without a configured secret",
            sign(Algorithm::HS256, "rsa.pem", None, &valid),
        ),
        bad(
            "unknown kid",
            sign(Algorithm::RS256, "rsa.pem", Some("nope"), &valid),
        ),
        bad(
            "a known kid, another key",
            sign(Algorithm::RS256, "rogue.pem", Some("rsa-1"), &valid),
        ),
        bad(
            "an untrusted key, no kid",
            sign(Algorithm::RS256, "rogue.pem", None, &valid),
        ),
        bad(
            "RS256 relabelled RS512",
            format!("{}.{p}.{s}", b64(&json!({"alg": "RS512", "kid": "rsa-1"}))),
        ),
        bad(
            "ES256 with the RSA kid",
            sign(Algorithm::ES256, "ec.pem", Some("rsa-1"), &valid),
        ),
        good(
            "ES256",
            Cred::Bearer(sign(Algorithm::ES256, "ec.pem", Some("ec-1"), &valid)),
        ),
        good(
            "EdDSA",
            Cred::Bearer(sign(Algorithm::EdDSA, "ed.pem", Some("ed-1"), &valid)),
        ),
        good(
            "PS256",
            Cred::Bearer(sign(Algorithm::PS256, "rsa2.pem", Some("ps-1"), &valid)),
        ),
        bad(
            "PS256 with an RS256 key",
            sign(Algorithm::PS256, "rsa.pem", Some("rsa-1"), &valid),
        ),
        good(
            "a second RSA key of the JWKS",
            Cred::Bearer(sign(Algorithm::RS256, "rsa2.pem", Some("rsa-2"), &valid)),
        ),
        // Structure.
        bad(
            "tampered payload",
            format!("{h}.{}.{s}", b64(&claims(json!({"sub": "mallory"})))),
        ),
        bad(
            "tampered signature",
            format!("{h}.{p}.{}", s.chars().rev().collect::<String>()),
        ),
        bad("truncated: no signature", format!("{h}.{p}.")),
        bad("truncated: two parts", format!("{h}.{p}")),
        bad("five parts (JWE)", format!("{h}.{p}.{s}.x.y")),
        bad("header not base64url", format!("@@@.{p}.{s}")),
        bad(
            "header not JSON",
            format!("{}.{p}.{s}", b64(&json!("just a string"))),
        ),
        bad(
            "crit header",
            forge(
                &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
                &valid,
                &s,
            ),
        ),
        bad(
            "typ dpop+jwt",
            forge(
                &json!({"alg": "RS256", "kid": "rsa-1", "typ": "dpop+jwt"}),
                &valid,
                &s,
            ),
        ),
        bad(
            "huge header",
            forge(&json!({"alg": "RS256", "kid": huge_kid}), &valid, &s),
        ),
        bad("not a JWT at all", "opaque-token-value".into()),
        bad("not a b64token", "abc def".into()),
        // Claims.
        bad(
            "scope as a number",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"scope": 42})),
            ),
        ),
        bad(
            "scope array with a number",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"scope": null, "scp": ["mcp", 1]})),
            ),
        ),
        good(
            "scp array",
            Cred::Bearer(sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"scope": null, "scp": ["mcp"]})),
            )),
        ),
        bad(
            "tenant as an array",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"tenant": ["a"]})),
            ),
        ),
        good(
            "act chain at the limit",
            Cred::Bearer(token(&["--act", "agent-1", "--act", "orchestrator"])),
        ),
        bad(
            "act chain too deep",
            token(&["--act", "a1", "--act", "a2", "--act", "a3"]),
        ),
        bad(
            "act not an object",
            sign(
                Algorithm::RS256,
                "rsa.pem",
                Some("rsa-1"),
                &claims(json!({"act": "agent"})),
            ),
        ),
        case(
            "missing the route's scope",
            Cred::Bearer(token(&["--scope", "other"])),
            403,
            Some("insufficient_scope"),
        ),
        // Revocation.
        bad("revoked jti", token(&["--jti", "revoked-jti"])),
        bad(
            "revoked sub",
            mint(&[
                "--key",
                &Keys::get().path("rsa.pem").display().to_string(),
                "--kid",
                "rsa-1",
                "--iss",
                ISS,
                "--aud",
                AUD,
                "--sub",
                "revoked-sub",
                "--scope",
                "mcp",
            ]),
        ),
        bad(
            "revoked client_id",
            token(&["--client-id", "revoked-client"]),
        ),
        bad("revoked tenant", token(&["--tenant", "revoked-tenant"])),
        bad("revoked actor", token(&["--act", "rogue-agent"])),
        // API keys.
        good("api key", Cred::Header("x-api-key", "key-one".into())),
        case(
            "wrong api key",
            Cred::Header("x-api-key", "key-three".into()),
            401,
            Some("invalid_token"),
        ),
        case(
            "empty api key",
            Cred::Header("x-api-key", String::new()),
            401,
            Some("invalid_token"),
        ),
        good(
            "api key in Authorization",
            Cred::Header("authorization", "ApiKey key-two".into()),
        ),
        case(
            "wrong api key in Authorization",
            Cred::Header("authorization", "ApiKey key-one".into()),
            401,
            Some("invalid_token"),
        ),
        good("a valid token", Cred::Bearer(good_token.clone())),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    assert_eq!(rsa_header["kid"], "rsa-1", "token mint sets the kid");

    let mut failures = Vec::new();
    for c in &cases {
        let before = echo.tool_calls();
        let resp = call(&gw, &c.cred).await;
        let after = if c.status == 200 {
            echo.wait_tool_calls(before + 1)
        } else {
            echo.tool_calls()
        };
        let www = resp.header("www-authenticate").unwrap_or("").to_string();
        let mut problems = Vec::new();
        if resp.status != c.status {
            problems.push(format!("status {} (want {})", resp.status, c.status));
        }
        if c.status == 200 {
            if after != before + 1 {
                problems.push(format!("the backend saw {} calls (want 1)", after - before));
            }
        } else {
            if after != before {
                problems.push(format!("the backend saw {} calls", after - before));
            }
            if challenge_error(&www).as_deref() != c.error {
                problems.push(format!(
                    "WWW-Authenticate {www:?} (want error {:?})",
                    c.error
                ));
            }
            if !www.starts_with("Bearer ") || !www.contains("resource_metadata=\"http://") {
                problems.push(format!("WWW-Authenticate {www:?} lacks resource_metadata"));
            }
            let code = resp.json()["error"]["code"].as_i64();
            let want = match c.status {
                401 => -32001,
                403 => -32003,
                _ => -32600,
            };
            if code != Some(want) {
                problems.push(format!(
                    "JSON-RPC code {code:?} (want {want}): {}",
                    resp.body
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", c.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n\ngateway log:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        gw.stderr()
    );
    // The only tool calls the backend saw are the accepted ones.
    let accepted = cases.iter().filter(|c| c.status == 200).count();
    assert_eq!(echo.wait_tool_calls(accepted), accepted);
}

/// A POST refused for its credentials before its body arrived: the gateway
/// never reads that body, so it says it will close the connection, and a
/// client's retry with a token takes a fresh one instead of racing the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_says_connection_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = EchoHeaders::start();
    let gw = gateway("", &echo.backend_toml("echo", ""));
    let head = |length: usize| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {length}\r\n\r\n",
            gw.addr()
        )
    };
    let mut conn = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    // Headers only: the body never comes.
    conn.write_all(head(64).as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 401"), "{response}");
    assert!(response.contains("\r\nconnection: close\r\n"), "{response}");
    assert!(response.contains("www-authenticate: bearer"), "{response}");
    // A bodiless refusal keeps the connection.
    let get = http::get(&gw.url(), &[]).await;
    assert_eq!(get.status, 401, "{get:?}");
    assert!(get.header("connection").is_none(), "{get:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_resource_metadata_and_challenges() {
    let echo = EchoHeaders::start();
    let gw = gateway(
        "scopes_supported = [\"mcp\", \"echo:use\"]",
        &echo.backend_toml("echo", "required_scopes = [\"echo:use\"]"),
    );
    let base = format!("http://{}", gw.addr());
    let root = http::get(&gw.url_for("/.well-known/oauth-protected-resource"), &[]).await;
    assert_eq!(root.status, 200, "{root:?}");
    let doc = root.json();
    assert_eq!(doc["resource"], AUD);
    assert_eq!(doc["authorization_servers"], json!([ISS]));
    assert_eq!(doc["scopes_supported"], json!(["mcp", "echo:use"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    let route = http::get(
        &gw.url_for("/.well-known/oauth-protected-resource/servers/echo/mcp"),
        &[],
    )
    .await
    .json();
    assert_eq!(route["resource"], format!("{base}/servers/echo/mcp"));

    // 401 on each route points at that route's metadata and names its scopes.
    for (path, scopes) in [
        ("/mcp", "mcp echo:use"),
        ("/servers/echo/mcp", "mcp echo:use"),
    ] {
        let resp = http::post_json(
            &gw.url_for(path),
            &[],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
        assert_eq!(resp.status, 401);
        let www = resp.header("www-authenticate").unwrap_or_default();
        assert_eq!(
            www,
            format!(
                "Bearer scope=\"{scopes}\", resource_metadata=\"{base}/.well-known/oauth-protected-resource{path}\""
            )
        );
        // The document it names is served.
        let url = www
            .split("resource_metadata=\"")
            .nth(1)
            .unwrap_or("")
            .trim_end_matches('"');
        assert_eq!(http::get(url, &[]).await.status, 200, "{url}");
    }
    // A token with "mcp" only: the backend's scope is missing → 403 naming
    // every scope the route needs.
    let t = token(&[]);
    let resp = http::post_json(
        &gw.server_url("echo"),
        &[("authorization", &format!("Bearer {t}"))],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    let www = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        www.starts_with(
            "Bearer error=\"insufficient_scope\", scope=\"mcp echo:use\", resource_metadata="
        ),
        "{www}"
    );
    let ok = token(&["--scope", "mcp echo:use"]);
    let session = McpSession::initialize(
        &gw.server_url("echo"),
        "2025-06-18",
        &[("authorization", &format!("Bearer {ok}"))],
    )
    .await;
    assert!(session.session_id.is_some());
    // The gateway's JWKS (no mint_token backend: empty).
    let jwks = http::get(&gw.url_for("/.well-known/jwks.json"), &[]).await;
    assert_eq!(jwks.json(), json!({"keys": []}));

    // Auth off: no metadata.
    let open = Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n{}",
        echo.backend_toml("echo", "")
    ));
    let none = http::get(&open.url_for("/.well-known/oauth-protected-resource"), &[]).await;
    assert_eq!(none.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bound_to_identity_not_to_a_token() {
    let echo = EchoHeaders::start();
    let gw = gateway("leeway_s = 0", &echo.backend_toml("echo", ""));
    let short = token(&["--ttl", "4", "--jti", "first"]);
    let exp = claims_of(&short)["exp"].as_u64().expect("exp");
    let mut session = McpSession::initialize(
        &gw.url(),
        "2025-11-25",
        &[("authorization", &format!("Bearer {short}"))],
    )
    .await;
    let id = session.session_id.clone().expect("session id");
    let with = |token: &str| {
        vec![
            ("authorization".to_string(), format!("Bearer {token}")),
            ("mcp-session-id".to_string(), id.clone()),
            ("mcp-protocol-version".to_string(), "2025-11-25".to_string()),
        ]
    };
    let url = gw.url();
    let post = |headers: Vec<(String, String)>| {
        let url = url.clone();
        async move {
            let refs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            http::post_json(
            &url,
            &refs,
            &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}}),
        )
        .await
        }
    };
    let rpc = session
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "a"}}),
        )
        .await;
    assert_eq!(rpc["result"]["content"][0]["text"], "a", "{rpc}");

    // Another principal, or the same one with other grants: unknown session.
    let bob = mint(&[
        "--key",
        &Keys::get().path("rsa.pem").display().to_string(),
        "--kid",
        "rsa-1",
        "--iss",
        ISS,
        "--aud",
        AUD,
        "--sub",
        "bob",
        "--scope",
        "mcp",
    ]);
    assert_eq!(post(with(&bob)).await.status, 404);
    let wider = token(&["--scope", "mcp admin"]);
    assert_eq!(post(with(&wider)).await.status, 404);
    let api_key = vec![
        ("x-api-key".to_string(), "key-one".to_string()),
        ("mcp-session-id".to_string(), id.clone()),
        ("mcp-protocol-version".to_string(), "2025-11-25".to_string()),
    ];
    assert_eq!(post(api_key).await.status, 404);

    // A refreshed token of the same principal finds the session, and keeps
    // it after the first token expired.
    let refreshed = token(&["--ttl", "600", "--jti", "second"]);
    let resp = post(with(&refreshed)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    // The gateway rejects once the clock's whole second is past `exp`.
    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs(exp + 1);
    if let Ok(wait) = expired_at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
    assert_eq!(
        post(with(&short)).await.status,
        401,
        "the first token expired"
    );
    let resp = post(with(&refreshed)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.rpc()["result"]["content"][0]["text"], "x", "{resp:?}");
    session.session_id = Some(id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_ends_open_streams_at_once_and_survives_a_restart() {
    let echo = EchoHeaders::start();
    let dir = TestDir::new("revocations");
    let file = dir.path().join("revocations.json");
    let extra = format!("revocations_file = {}", toml_path(&file));
    let gw = gateway(&extra, &echo.backend_toml("echo", ""));
    let t = token(&["--sub", "carol", "--jti", "carol-1"]);
    let auth = format!("Bearer {t}");
    let session =
        McpSession::initialize(&gw.url(), "2025-11-25", &[("authorization", &auth)]).await;
    let mut stream = session.get_stream(None).await;
    assert_eq!(stream.status, 200);
    // A stateless listen stream with the same token.
    let listen = json!({"notifications": {"toolsListChanged": true}});
    let routing = http::modern_headers("subscriptions/listen", &listen);
    let mut headers: Vec<(&str, &str)> = routing
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.push(("authorization", &auth));
    let mut listen_stream = http::open_stream(
        &gw.url(),
        &headers,
        Some(&http::modern_body(
            json!(9),
            "subscriptions/listen",
            listen.clone(),
        )),
    )
    .await;
    assert_eq!(listen_stream.status, 200);
    // Let both streams settle, then revoke.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entry = revoke(&gw.admin_url(), Some(ADMIN_TOKEN), json!({"sub": "carol"})).await;
    let revoked_at = Instant::now();
    for (name, s) in [
        ("GET stream", &mut stream),
        ("listen stream", &mut listen_stream),
    ] {
        loop {
            match s.try_next_event(Duration::from_millis(1500)).await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(()) => panic!(
                    "{name} still open 1.5 s after the revocation\n{}",
                    gw.stderr()
                ),
            }
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "{name} closed after {:?}",
            revoked_at.elapsed()
        );
    }
    // The session is gone; the token is refused.
    let resp = session
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(
        resp.header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token")
    );
    // Admin API: listed, needs the admin token.
    let listed = http::get(
        &format!("{}/admin/revocations", gw.admin_url()),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["revocations"][0]["sub"], "carol");
    assert_eq!(listed.json()["revocations"][0]["id"], entry["id"]);
    assert_eq!(
        http::get(&format!("{}/admin/revocations", gw.admin_url()), &[])
            .await
            .status,
        401
    );
    assert_eq!(
        http::post_json(
            &format!("{}/admin/revocations", gw.admin_url()),
            &[("authorization", "Bearer wrong")],
            &json!({"sub": "x"})
        )
        .await
        .status,
        401
    );
    let bad = http::post_json(
        &format!("{}/admin/revocations", gw.admin_url()),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        &json!({"sub": "x", "jti": "y"}),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    drop(gw);

    // A restart forgets nothing.
    let gw = gateway(&extra, &echo.backend_toml("echo", ""));
    let resp = call(&gw, &Cred::Bearer(t.clone())).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    let lift = http::delete(
        &format!(
            "{}/admin/revocations/{}",
            gw.admin_url(),
            entry["id"].as_str().unwrap_or("")
        ),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await;
    assert_eq!(lift.status, 204, "{lift:?}");
    let resp = call(&gw, &Cred::Bearer(t.clone())).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let again = http::delete(
        &format!(
            "{}/admin/revocations/{}",
            gw.admin_url(),
            entry["id"].as_str().unwrap_or("")
        ),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await;
    assert_eq!(again.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_ends_its_stream_and_gets_unauthenticated() {
    let echo = EchoHeaders::start();
    let gw = gateway("leeway_s = 0", &echo.backend_toml("echo", ""));
    let t = token(&["--ttl", "4"]);
    let exp = claims_of(&t)["exp"].as_u64().expect("exp");
    let auth = format!("Bearer {t}");
    let session =
        McpSession::initialize(&gw.url(), "2025-11-25", &[("authorization", &auth)]).await;
    let mut stream = session.get_stream(None).await;
    assert_eq!(stream.status, 200);
    loop {
        match stream.try_next_event(Duration::from_secs(6)).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(()) => panic!("the GET stream outlived its token\n{}", gw.stderr()),
        }
    }
    let late = now().saturating_sub(exp);
    assert!(late <= 1, "closed {late} s after exp");
    let resp = session
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .await;
    assert_eq!(resp.status, 401);
    assert!(
        resp.header("www-authenticate")
            .unwrap_or_default()
            .contains("error=\"invalid_token\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_get_minted_tokens_never_the_clients() {
    let echo = EchoHeaders::start();
    let keys = Keys::get();
    let backends = format!(
        "{}{}",
        echo.backend_toml(
            "minted",
            &format!(
                "mint_token = {{ audience = \"https://echo.test\", key_file = {}, ttl_s = 60, kid = \"gw-1\" }}",
                toml_path(&keys.path("ed.pem"))
            )
        ),
        echo.backend_toml("plain", ""),
    );
    let gw = gateway("", &backends);
    let t = token(&[
        "--tenant",
        "acme",
        "--client-id",
        "web",
        "--act",
        "agent-7",
        "--scope",
        "mcp tools:call",
    ]);
    let auth = format!("Bearer {t}");
    let headers_seen = |rpc: &Value| -> Value {
        let text = rpc["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{rpc}"));
        serde_json::from_str(text).expect("headers JSON")
    };
    let mut minted = McpSession::initialize(
        &gw.server_url("minted"),
        "2025-06-18",
        &[("authorization", &auth)],
    )
    .await;
    let seen = headers_seen(
        &minted
            .request(
                "tools/call",
                json!({"name": "echo_headers", "arguments": {}}),
            )
            .await,
    );
    let backend_auth = seen["authorization"].as_str().expect("a minted token");
    let backend_token = backend_auth.strip_prefix("Bearer ").expect("bearer");
    assert_ne!(backend_token, t, "the client's token reached the backend");
    assert!(!seen.to_string().contains(&t));

    // It verifies against the gateway's JWKS (client and admin listeners).
    let jwks = http::get(&gw.url_for("/.well-known/jwks.json"), &[])
        .await
        .json();
    let admin_jwks = http::get(&format!("{}/.well-known/jwks.json", gw.admin_url()), &[])
        .await
        .json();
    assert_eq!(jwks, admin_jwks);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("a JWKS");
    let jwk = set
        .find("gw-1")
        .unwrap_or_else(|| panic!("kid gw-1 in {jwks}"));
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "private key material in the JWKS"
    );
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["https://echo.test"]);
    validation.set_issuer(&["mcp-gateway"]);
    let data = jsonwebtoken::decode::<Value>(backend_token, &key, &validation)
        .expect("minted token verifies");
    let c = data.claims;
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["client_id"], "web");
    assert_eq!(c["scope"], "mcp tools:call");
    assert_eq!(
        c["act"],
        json!({"sub": "mcp-gateway", "act": {"sub": "agent-7"}})
    );
    let ttl = c["exp"].as_u64().unwrap_or(0) - c["iat"].as_u64().unwrap_or(0);
    assert_eq!(ttl, 60);
    assert_eq!(data.header.kid.as_deref(), Some("gw-1"));

    // A backend without mint_token gets no Authorization at all.
    let mut plain = McpSession::initialize(
        &gw.server_url("plain"),
        "2025-06-18",
        &[("authorization", &auth)],
    )
    .await;
    let seen = headers_seen(
        &plain
            .request(
                "tools/call",
                json!({"name": "echo_headers", "arguments": {}}),
            )
            .await,
    );
    assert!(seen.get("authorization").is_none(), "{seen}");
    assert!(!seen.to_string().contains(&t));
    // Not on any request of the session either (initialize, list, call).
    for r in echo.requests() {
        assert_ne!(r["authorization"].as_str(), Some(auth.as_str()), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_legacy_sse_need_credentials_and_end_on_revocation() {
    use crate::util::front::{SseClient, WsClient};
    let echo = EchoHeaders::start();
    let gw = gateway("", &echo.backend_toml("echo", ""));
    let ws_url = format!("ws://{}/ws", gw.addr());
    let sse_url = gw.url_for("/sse");

    // Without credentials: 401 with the challenge, on both front doors.
    assert_eq!(
        WsClient::refused_status(&ws_url, &[("sec-websocket-protocol", "mcp")]).await,
        401
    );
    let refused = http::get(&sse_url, &[("accept", "text/event-stream")]).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("resource_metadata=\"http://"),
        "{refused:?}"
    );
    let t = token(&["--sub", "dave"]);
    let q = http::get(
        &format!("{sse_url}?access_token={t}"),
        &[("accept", "text/event-stream")],
    )
    .await;
    assert_eq!(q.status, 400, "a token in the query string");

    let auth = format!("Bearer {t}");
    let mut ws = WsClient::try_connect(
        &ws_url,
        &[("sec-websocket-protocol", "mcp"), ("authorization", &auth)],
    )
    .await
    .expect("websocket with a token");
    ws.initialize("2025-11-25").await;
    let mut sse = SseClient::open(&sse_url, &[("authorization", &auth)]).await;
    sse.initialize("2024-11-05").await;
    // Another principal cannot post to dave's legacy SSE session.
    let eve = token(&["--sub", "eve"]);
    let foreign = http::post_json(
        &format!(
            "{}?session_id={}",
            gw.url_for("/messages"),
            sse.session_id()
        ),
        &[("authorization", &format!("Bearer {eve}"))],
        &json!({"jsonrpc": "2.0", "id": 99, "method": "ping"}),
    )
    .await;
    assert_eq!(foreign.status, 404, "{foreign:?}");

    revoke(&gw.admin_url(), Some(ADMIN_TOKEN), json!({"sub": "dave"})).await;
    let revoked_at = Instant::now();
    let end = ws.end(Duration::from_secs(3)).await;
    let ws_after = revoked_at.elapsed();
    let sse_end = tokio::time::timeout(Duration::from_secs(3), async {
        while sse.next_message(Duration::from_secs(3)).await.is_some() {}
    })
    .await;
    let sse_after = revoked_at.elapsed();
    assert!(
        sse_end.is_ok(),
        "the legacy SSE stream outlived the revocation"
    );
    assert!(
        ws_after < Duration::from_secs(1),
        "websocket ended after {ws_after:?} ({end:?})"
    );
    assert!(
        sse_after < Duration::from_secs(1),
        "SSE ended after {sse_after:?}"
    );
}

// --- against a real OpenID provider -------------------------------------------

const OIDC_AUD: &str = "https://gw.test/mcp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_jwt_access_tokens_via_discovery_survive_key_rotation() {
    use crate::util::auth::OidcProvider;
    let idp = OidcProvider::start();
    let echo = EchoHeaders::start();
    let gw = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [auth]\nmode = \"jwt\"\nissuer = \"{}\"\naudience = \"{OIDC_AUD}\"\njwks_min_refresh_s = 0\n\
         required_scopes = [\"mcp\"]\n{}",
        idp.issuer(),
        echo.backend_toml("echo", "")
    ))
    .start();
    let call_with = |token: String| {
        let gw = &gw;
        async move { call(gw, &Cred::Bearer(token)).await }
    };
    let grant = idp.client_credentials(OIDC_AUD, "mcp tools:call").await;
    let first = grant["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    assert_eq!(header_of(&first)["typ"], "at+jwt");
    let first_kid = header_of(&first)["kid"].clone();
    let resp = call_with(first.clone()).await;
    assert_eq!(resp.status, 200, "{resp:?}\n{}", gw.stderr());
    assert_eq!(echo.wait_tool_calls(1), 1);

    // A token for another resource is not for this gateway.
    let other = idp
        .client_credentials("https://other.test/mcp", "mcp")
        .await;
    let resp = call_with(
        other["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
    .await;
    assert_eq!(resp.status, 401);
    // Without the route's scope: 403.
    let narrow = idp.client_credentials(OIDC_AUD, "tools:call").await;
    let resp = call_with(
        narrow["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");

    // Revoke the first token, keep a second one of the same key, then
    // rotate the provider's keys.
    let jti = claims_of(&first)["jti"].as_str().expect("jti").to_string();
    revoke(&gw.admin_url(), None, json!({"jti": jti})).await;
    let kept = idp.client_credentials(OIDC_AUD, "mcp").await;
    let kept = kept["access_token"].as_str().expect("token").to_string();
    idp.rotate().await;
    assert_eq!(idp.kids().await.len(), 2);
    let grant = idp.client_credentials(OIDC_AUD, "mcp").await;
    let rotated = grant["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    assert_ne!(
        header_of(&rotated)["kid"],
        first_kid,
        "signed with the new key"
    );
    let resp = call_with(rotated).await;
    assert_eq!(
        resp.status,
        200,
        "a token of the new key: {resp:?}\n{}",
        gw.stderr()
    );
    // The old key is still published: its unrevoked token verifies, the
    // revoked one stays out.
    let resp = call_with(kept).await;
    assert_eq!(
        resp.status, 200,
        "an old-key token after rotation: {resp:?}"
    );
    let resp = call_with(first.clone()).await;
    assert_eq!(resp.status, 401, "a revoked token after rotation");
    assert_eq!(echo.wait_tool_calls(3), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_introspection_caches_and_fails_closed() {
    use crate::util::auth::{OIDC_CLIENT, OIDC_SECRET, OidcProvider};
    let mut idp = OidcProvider::start();
    let echo = EchoHeaders::start();
    let aud = "https://gw.test/opaque-mcp";
    let gw = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [auth]\nmode = \"introspection\"\nissuer = \"{}\"\naudience = \"{aud}\"\n\
         client_id = \"{OIDC_CLIENT}\"\nclient_secret_env = \"IDP_SECRET\"\ncache_s = 60\n{}",
        idp.issuer(),
        echo.backend_toml("echo", "")
    ))
    .env("IDP_SECRET", OIDC_SECRET)
    .start();
    let grant = idp.client_credentials(aud, "mcp").await;
    let opaque = grant["access_token"].as_str().expect("token").to_string();
    assert_eq!(opaque.split('.').count(), 1, "an opaque token: {opaque}");
    let resp = call(&gw, &Cred::Bearer(opaque.clone())).await;
    assert_eq!(resp.status, 200, "{resp:?}\n{}", gw.stderr());
    // Not active: 401.
    let resp = call(&gw, &Cred::Bearer("not-a-token-the-idp-issued".into())).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(
        resp.header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token")
    );
    // Another audience: 401.
    let other = idp
        .client_credentials("https://other.test/opaque", "mcp")
        .await;
    let resp = call(
        &gw,
        &Cred::Bearer(
            other["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
    )
    .await;
    assert_eq!(resp.status, 401, "{resp:?}");
    let fresh = idp.client_credentials(aud, "mcp").await;
    let fresh = fresh["access_token"].as_str().expect("token").to_string();

    // The issuer goes away: the cached answer still serves; an unknown
    // token is refused with 503 (fail closed, never allowed).
    drop(std::mem::replace(&mut idp, OidcProvider::start()));
    let resp = call(&gw, &Cred::Bearer(opaque.clone())).await;
    assert_eq!(resp.status, 200, "cached: {resp:?}");
    let resp = call(&gw, &Cred::Bearer(fresh)).await;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert!(resp.header("retry-after").is_some());
    assert_eq!(echo.wait_tool_calls(2), 2);
}

// --- official SDK clients ------------------------------------------------------

fn echo_text(out: &Value) -> String {
    out["calls"][0]["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no echo result in {out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_with_bearer_tokens_through_every_http_front_door() {
    use crate::util::{py_client, py_client_run, ts_client, ts_client_run};
    let echo = EchoHeaders::start();
    let gw = gateway("", &echo.backend_toml("echo", ""));
    let header = format!("Authorization: Bearer {}", token(&[]));
    let call = ["--call", "echo", "--args", r#"{"message":"hi"}"#];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--header".into(), header.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = with(&call);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sse = format!("sse:{}", gw.url_for("/sse"));
    for (who, out) in [
        (
            "python auto (2026-07-28)",
            py_client("auto", &gw.url(), "tools", &args),
        ),
        (
            "python legacy",
            py_client("legacy", &gw.url(), "tools", &args),
        ),
        (
            "python legacy SSE",
            py_client("legacy-2024-11-05", &sse, "tools", &args),
        ),
        ("typescript", ts_client("legacy", &gw.url(), "tools", &args)),
        (
            "typescript legacy SSE",
            ts_client("legacy-2024-11-05", &sse, "tools", &args),
        ),
    ] {
        assert_eq!(echo_text(&out), "hi", "{who}: {out}");
    }
    // The client's token never reached the backend.
    let token = header.trim_start_matches("Authorization: ");
    assert!(
        echo.requests()
            .iter()
            .all(|r| r["authorization"].as_str() != Some(token))
    );

    // Without a token, both SDKs see the 401 (and fail to connect).
    // (The Python SDK reports a non-2xx answer without an `id` as a generic
    // "Server returned an error response"; that the SDKs read the 401's
    // challenge is shown by `sdk_oauth_flows_discover_the_gateway_and_its_idp`.)
    let calls_before = echo.tool_calls();
    let py = py_client_run("legacy", &gw.url(), "tools", &call);
    assert_ne!(py.code, Some(0), "{}", py.stderr);
    let ts = ts_client_run("legacy", &gw.url(), "tools", &call);
    assert_ne!(ts.code, Some(0), "{}", ts.stderr);
    assert!(
        ts.stderr.contains("401") || ts.stderr.to_lowercase().contains("unauthorized"),
        "{}",
        ts.stderr
    );
    assert_eq!(echo.tool_calls(), calls_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_oauth_flows_discover_the_gateway_and_its_idp() {
    use crate::util::auth::{OIDC_CLIENT, OIDC_SECRET, OidcProvider};
    use crate::util::drivers::{interop_dir, venv_python};
    use crate::util::process::{free_port, run_with_timeout};
    let idp = OidcProvider::start();
    let echo = EchoHeaders::start();
    // The resource the SDKs ask a token for is the URL they connect to, so
    // the audience must name the listener's real port.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let gw = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:{port}\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [auth]\nmode = \"jwt\"\nissuer = \"{}\"\naudience = \"{url}\"\nrequired_scopes = [\"mcp\"]\n{}",
        idp.issuer(),
        echo.backend_toml("echo", "")
    ))
    .start();
    assert_eq!(gw.url(), url);
    let run = |program: std::path::PathBuf, script: &str| {
        let mut cmd = std::process::Command::new(program);
        cmd.arg(interop_dir().join(script))
            .args([url.as_str(), idp.issuer(), OIDC_CLIENT, OIDC_SECRET, "mcp"])
            .current_dir(interop_dir())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        let out = run_with_timeout(script, cmd, Duration::from_secs(90));
        assert!(
            out.status.success(),
            "{script}: {}\n{}\ngateway:\n{}",
            out.stdout,
            out.stderr,
            gw.stderr()
        );
        let line = out.stdout.lines().last().unwrap_or_default().to_string();
        serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("{script}: {e}: {}", out.stdout))
    };
    let ts = run(std::path::PathBuf::from("node"), "ts_oauth_client.mjs");
    assert_eq!(ts["echo"], "through oauth", "{ts}");
    assert_eq!(
        ts["resource"], url,
        "the TS SDK asked for the gateway's resource"
    );
    let py = run(venv_python(), "py_oauth_client.py");
    assert_eq!(py["echo"], "through oauth", "{py}");
    assert_eq!(echo.wait_tool_calls(2), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_ends_its_websocket() {
    use crate::util::front::WsClient;
    let echo = EchoHeaders::start();
    let gw = gateway("leeway_s = 0", &echo.backend_toml("echo", ""));
    let t = token(&["--ttl", "4"]);
    let exp = claims_of(&t)["exp"].as_u64().expect("exp");
    let mut ws = WsClient::try_connect(
        &format!("ws://{}/ws", gw.addr()),
        &[
            ("sec-websocket-protocol", "mcp"),
            ("authorization", &format!("Bearer {t}")),
        ],
    )
    .await
    .expect("websocket with a token");
    ws.initialize("2025-11-25").await;
    let end = ws.end(Duration::from_secs(8)).await;
    let late = now().saturating_sub(exp);
    assert!(
        late <= 1,
        "the websocket ended {late} s after exp ({end:?})"
    );
}
