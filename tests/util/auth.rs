//! Authentication fixtures: signing keys (made once per test binary with the
//! `openssl` CLI), tokens from `mcp-gateway token mint`, the header-echo
//! backend (`tests/interop/echo_headers_server.py`, which logs every request
//! it receives so a test can assert that refused calls never reached it),
//! the admin revocation API, and the `oidc-provider` fixture
//! (`tests/interop/oidc_provider.mjs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use super::drivers::{interop_dir, venv_python};
use super::gateway::gateway_bin;
use super::http;
use super::process::{ChildGuard, TestDir, run_with_timeout};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Private keys for the tests, PKCS#8 PEM, and the JWKS of the first four.
pub struct Keys {
    dir: PathBuf,
}

impl Keys {
    /// `rsa.pem` (kid rsa-1), `ec.pem` (ec-1), `ed.pem` (ed-1), `rsa2.pem`
    /// (rsa-2 for RS256 and ps-1 for PS256, also in the JWKS), `rogue.pem` (an RSA key nobody trusts),
    /// `rsa_pub.pem` (the public half of rsa.pem, for algorithm confusion),
    /// `jwks.json`.
    pub fn get() -> &'static Keys {
        static KEYS: OnceLock<(TestDir, Keys)> = OnceLock::new();
        &KEYS
            .get_or_init(|| {
                let dir = TestDir::new("auth-keys");
                let path = dir.path().to_path_buf();
                let openssl = |args: &[&str]| {
                    let mut cmd = Command::new("openssl");
                    cmd.args(args).current_dir(&path);
                    let out = run_with_timeout("openssl", cmd, Duration::from_secs(60));
                    assert!(out.status.success(), "openssl {args:?}: {}", out.stderr);
                };
                for name in ["rsa.pem", "rsa2.pem", "rogue.pem"] {
                    openssl(&[
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                        "-out",
                        name,
                    ]);
                }
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    "ec.pem",
                ]);
                openssl(&["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
                openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa_pub.pem"]);
                let keys = Keys { dir: path };
                let jwks = keys.jwks(&[
                    ("rsa.pem", "rsa-1"),
                    ("ec.pem", "ec-1"),
                    ("ed.pem", "ed-1"),
                    ("rsa2.pem", "rsa-2"),
                    ("rsa2.pem", "ps-1"),
                ]);
                std::fs::write(keys.path("jwks.json"), jwks).expect("write jwks.json");
                (dir, keys)
            })
            .1
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read key")
    }

    /// `mcp-gateway token jwks` of `(file, kid)` pairs; a kid `ps-…` is
    /// published for PS256.
    pub fn jwks(&self, keys: &[(&str, &str)]) -> String {
        let mut cmd = Command::new(gateway_bin());
        cmd.args(["token", "jwks"]);
        for (file, kid) in keys {
            cmd.arg("--key").arg(self.path(file)).arg("--kid").arg(kid);
        }
        if keys.iter().any(|(_, kid)| kid.starts_with("ps-")) {
            for (file, kid) in keys {
                let alg = match (*file, kid.starts_with("ps-")) {
                    (_, true) => "PS256",
                    (f, _) if f.starts_with("ec") => "ES256",
                    (f, _) if f.starts_with("ed") => "EdDSA",
                    _ => "RS256",
                };
                cmd.arg("--alg").arg(alg);
            }
        }
        let out = run_with_timeout("token jwks", cmd, Duration::from_secs(30));
        assert!(out.status.success(), "token jwks: {}", out.stderr);
        out.stdout
    }
}

/// `mcp-gateway token mint ARGS…`: the token.
pub fn mint(args: &[&str]) -> String {
    mint_with_env(args, &[])
}

pub fn mint_with_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["token", "mint"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout("token mint", cmd, Duration::from_secs(30));
    assert!(out.status.success(), "token mint {args:?}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// A compact JWS of `header` and `claims` with `signature` (base64url)
/// appended as is: for tokens no honest issuer makes.
pub fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{signature}", b64(header), b64(claims))
}

/// The decoded claims of a JWS (unverified; for assertions).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

// --- the header-echo backend ------------------------------------------------------

/// `tests/interop/echo_headers_server.py` on an ephemeral port.
pub struct EchoHeaders {
    process: ChildGuard,
    url: String,
}

impl EchoHeaders {
    pub fn start() -> EchoHeaders {
        let mut cmd = Command::new(venv_python());
        cmd.arg(interop_dir().join("echo_headers_server.py"));
        let mut process = ChildGuard::spawn("echo_headers_server", cmd);
        let url = process.wait_for_stderr("echo-headers listening line", START_TIMEOUT, |s| {
            s.lines().find_map(|l| {
                l.strip_prefix("echo-headers listening on ")
                    .map(|u| u.trim().to_string())
            })
        });
        EchoHeaders { process, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request it received: `{"method", "authorization", "tool"?}`.
    pub fn requests(&self) -> Vec<Value> {
        self.process
            .stderr()
            .lines()
            .filter_map(|l| l.strip_prefix("REQ "))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `tool_calls` once it reaches `n` (or after 2 s): its log lines are
    /// read by another thread, so a call answered a moment ago may not be
    /// counted yet.
    pub fn wait_tool_calls(&self, n: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let seen = self.tool_calls();
            if seen >= n || std::time::Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many `tools/call` requests reached it.
    pub fn tool_calls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r["method"] == "tools/call")
            .count()
    }

    /// `[[backends]]` for it, with `extra` keys.
    pub fn backend_toml(&self, name: &str, extra: &str) -> String {
        format!(
            "[[backends]]\nname = \"{name}\"\ntransport = \"streamable_http\"\nurl = \"{}\"\nprotocol = \"2025-06-18\"\n{extra}\n",
            self.url
        )
    }
}

// --- admin API ------------------------------------------------------------------

/// `POST /admin/revocations`; asserts 201 and returns the stored entry.
pub async fn revoke(admin_url: &str, admin_token: Option<&str>, body: Value) -> Value {
    let auth = admin_token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let resp = http::post_json(&format!("{admin_url}/admin/revocations"), &headers, &body).await;
    assert_eq!(resp.status, 201, "revoke {body}: {resp:?}");
    resp.json()
}

// --- oidc-provider ------------------------------------------------------------------

/// `tests/interop/oidc_provider.mjs`: a real OpenID provider (npm
/// `oidc-provider`) on an ephemeral loopback port, with one client
/// (`gateway-client` / `gateway-secret`, client credentials, introspection)
/// and JWT access tokens for any `resource` indicator. `rotate()` replaces
/// its signing key (the old one stays published).
pub struct OidcProvider {
    process: ChildGuard,
    issuer: String,
}

pub const OIDC_CLIENT: &str = "gateway-client";
pub const OIDC_SECRET: &str = "gateway-secret";

impl OidcProvider {
    pub fn start() -> OidcProvider {
        let node = node_bin();
        let mut cmd = Command::new(node);
        cmd.arg(interop_dir().join("oidc_provider.mjs"))
            .current_dir(interop_dir());
        let mut process = ChildGuard::spawn("oidc_provider", cmd);
        let issuer = process.wait_for_stderr("oidc-provider listening line", START_TIMEOUT, |s| {
            s.lines().find_map(|l| {
                l.strip_prefix("oidc-provider listening on ")
                    .map(|u| u.trim().to_string())
            })
        });
        OidcProvider { process, issuer }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// A client-credentials access token for `resource` with `scope`.
    pub async fn client_credentials(&self, resource: &str, scope: &str) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(OIDC_CLIENT, Some(OIDC_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        let body: Value =
            serde_json::from_str(&resp.text().await.expect("token body")).expect("token JSON");
        assert!(status.is_success(), "token endpoint: {status} {body}");
        body
    }

    /// Rotates the signing key; the previous key stays in the JWKS.
    pub async fn rotate(&self) {
        let resp = reqwest::Client::new()
            .post(format!("{}/test/rotate", self.issuer))
            .send()
            .await
            .expect("rotate");
        assert!(resp.status().is_success(), "rotate: {}", resp.status());
    }

    /// The `kid`s its JWKS publishes.
    pub async fn kids(&self) -> Vec<String> {
        let text = reqwest::get(format!("{}/jwks", self.issuer))
            .await
            .expect("jwks")
            .text()
            .await
            .expect("jwks body");
        let jwks: Value = serde_json::from_str(&text).expect("jwks JSON");
        jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str().map(str::to_string))
            .collect()
    }
}

/// Node for the fixtures: `tests/interop/node22/…/node` when installed, else `node`.
pub fn node_bin() -> PathBuf {
    let node22 = interop_dir().join("node22/node_modules/node/bin/node");
    if node22.is_file() {
        node22
    } else {
        PathBuf::from("node")
    }
}

/// The header of a JWS (unverified).
pub fn header_of(token: &str) -> Value {
    use base64::Engine;
    let header = token.split('.').next().expect("a JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    serde_json::from_slice(&bytes).unwrap_or(json!(null))
}

/// `Path` helper for TOML strings.
pub fn toml_path(p: &Path) -> String {
    super::servers::toml_string(&p.display().to_string())
}
