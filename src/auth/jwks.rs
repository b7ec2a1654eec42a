//! Verification keys: a JWKS from a file, a URL, or the URL named by the
//! issuer's OIDC discovery document. Cached behind an `ArcSwap` (read per
//! token without locking), refreshed periodically and when a token names an
//! unknown `kid` — at most once per `jwks_min_refresh_s`, one fetch at a
//! time, so a flood of bogus kids cannot hammer the issuer. A failed fetch
//! keeps the keys already known.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::KeySource;

/// Largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The algorithms this key may verify (its `alg`, else its type's).
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// Parses a JWKS document. Keys the gateway cannot use (encryption keys,
/// symmetric `oct` keys, unknown types or curves) are skipped; a document
/// with no usable key at all is an error.
pub fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS (invalid JSON: {e})"))?;
    let Some(Value::Array(items)) = doc.get("keys") else {
        return Err("not a JWKS (no \"keys\" array)".into());
    };
    let mut keys = Vec::new();
    for item in items {
        let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
            continue;
        };
        if let Some(key) = usable_key(&jwk) {
            keys.push(key);
        }
    }
    if keys.is_empty() && !items.is_empty() {
        return Err("the JWKS has no usable signature verification key".into());
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    // A published key set never holds symmetric keys; one that does must
    // not turn them into HMAC secrets (algorithm confusion).
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        // Symmetric keys, and whatever later versions add.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(alg) => {
            let alg = Algorithm::try_from(alg).ok()?;
            if !by_type.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

/// The issuer's discovery document (OIDC, else RFC 8414), fetched once and
/// again when a caller needs it after a failure.
pub struct Discovery {
    issuer: String,
    http: reqwest::Client,
    document: tokio::sync::Mutex<Option<(DiscoveryDocument, Instant)>>,
}

#[derive(Debug, Clone)]
pub struct DiscoveryDocument {
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
}

/// How long a discovery document is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

impl Discovery {
    pub fn new(issuer: String, http: reqwest::Client) -> Discovery {
        Discovery {
            issuer,
            http,
            document: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn document(&self) -> Result<DiscoveryDocument, String> {
        let mut slot = self.document.lock().await;
        if let Some((doc, at)) = slot.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(doc.clone());
        }
        let base = self.issuer.trim_end_matches('/');
        let mut last_error = String::new();
        for well_known in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let url = format!("{base}{well_known}");
            match fetch_json(&self.http, &url).await {
                Ok(doc) => {
                    // The document must be about our issuer (OIDC Discovery
                    // §4.3): a mix-up would trust another issuer's keys.
                    let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
                    if issuer.trim_end_matches('/') != base {
                        last_error =
                            format!("{url}: names issuer {issuer:?}, expected {:?}", self.issuer);
                        continue;
                    }
                    let string = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
                    let found = DiscoveryDocument {
                        jwks_uri: string("jwks_uri"),
                        introspection_endpoint: string("introspection_endpoint"),
                    };
                    *slot = Some((found.clone(), Instant::now()));
                    return Ok(found);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }
}

async fn fetch_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut response = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| format!("{url}: not UTF-8"))
}

pub(crate) async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let text = fetch_text(http, url).await?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: invalid JSON: {e}"))
}

/// The current keys and how to get new ones.
pub struct KeyStore {
    source: KeySource,
    http: reqwest::Client,
    discovery: Option<Arc<Discovery>>,
    keys: ArcSwap<Vec<Arc<Key>>>,
    /// Whether a fetch has ever succeeded (before that, no key is "unknown":
    /// the issuer is unreachable, a 503).
    loaded: std::sync::atomic::AtomicBool,
    last_error: Mutex<String>,
    /// Bumped by every fetch attempt; a waiter that sees it moved skips its own.
    generation: AtomicU64,
    last_fetch: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    min_refresh: Duration,
    pub(crate) refresh_every: Duration,
}

impl KeyStore {
    pub fn new(
        source: KeySource,
        http: reqwest::Client,
        discovery: Option<Arc<Discovery>>,
        min_refresh: Duration,
        refresh_every: Duration,
    ) -> KeyStore {
        let store = KeyStore {
            source,
            http,
            discovery,
            keys: ArcSwap::from_pointee(Vec::new()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            last_error: Mutex::new("not fetched yet".into()),
            generation: AtomicU64::new(0),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            min_refresh,
            refresh_every,
        };
        // A file is read at once: it was validated with the config.
        if let KeySource::File(path) = &store.source
            && let Ok(keys) = read_file(path)
        {
            store.install(keys);
        }
        store
    }

    pub fn has_source(&self) -> bool {
        self.source != KeySource::None
    }

    fn install(&self, keys: Vec<Key>) {
        self.keys
            .store(Arc::new(keys.into_iter().map(Arc::new).collect()));
        self.loaded.store(true, Ordering::Release);
    }

    /// Keys that may verify a token with this `kid` and algorithm. On a miss
    /// the keys are refreshed (rate-limited) and looked up again.
    pub async fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<Key>>, super::AuthError> {
        let found = self.lookup(kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        if self.has_source() {
            self.refresh(false).await;
        }
        let found = self.lookup(kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        if !self.loaded.load(Ordering::Acquire) && self.has_source() {
            let reason = self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            return Err(super::AuthError::KeysUnavailable(reason));
        }
        Err(super::AuthError::UnknownKey {
            kid: kid.map(str::to_owned),
        })
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<Key>> {
        self.keys
            .load()
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .filter(|k| match kid {
                // A token naming a kid is verified with that key only.
                Some(kid) => k.kid.as_deref() == Some(kid),
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Fetches the keys again. Unless `force`d, not more often than
    /// `min_refresh`; concurrent callers share one fetch.
    pub async fn refresh(&self, force: bool) {
        let seen = self.generation.load(Ordering::Acquire);
        let _guard = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Someone fetched while we waited.
            return;
        }
        if !force
            && let Some(at) = self.last_fetch.lock().ok().and_then(|l| *l)
            && at.elapsed() < self.min_refresh
        {
            return;
        }
        if let Ok(mut l) = self.last_fetch.lock() {
            *l = Some(Instant::now());
        }
        let result = self.fetch().await;
        self.generation.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "verification keys loaded");
                self.install(keys);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the token verification keys; keeping the known ones");
                if let Ok(mut last) = self.last_error.lock() {
                    *last = e;
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        match &self.source {
            KeySource::None => Ok(Vec::new()),
            KeySource::File(path) => read_file(path),
            KeySource::Uri(uri) => parse_jwks(&fetch_text(&self.http, uri).await?),
            KeySource::Discovery => {
                let discovery = self
                    .discovery
                    .as_ref()
                    .ok_or("OIDC discovery needs auth.issuer")?;
                let doc = discovery.document().await?;
                let uri = doc
                    .jwks_uri
                    .ok_or("the issuer's discovery document has no jwks_uri")?;
                parse_jwks(&fetch_text(&self.http, &uri).await?)
            }
        }
    }
}

fn read_file(path: &PathBuf) -> Result<Vec<Key>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))
}
