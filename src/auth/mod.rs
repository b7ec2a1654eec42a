//! auth: request credentials → `Principal`. In: the headers of an HTTP
//! request or WebSocket upgrade. Out: who is calling (subject, tenant,
//! client/agent id, scopes, delegation chain, token id, expiry, how it was
//! proven), or an `AuthError` naming what was wrong. Never passes a client's
//! token on, never logs one, never admits a credential it could not verify
//! (fail closed: an unreachable issuer is a refusal, not a pass).
//!
//! - `jwt`: signed tokens (`mode = "jwt"`): header, algorithm, signature;
//!   keys from `jwks` (file, URL or OIDC discovery) or an HS256 secret.
//! - `introspection`: opaque tokens checked with the issuer (RFC 7662).
//! - `claims`: the claim rules both share (iss, aud, exp/nbf/iat, scopes,
//!   tenant, client id, `act` chain) → `Principal`.
//! - `api_keys`: static keys in any header, stored as SHA-256.
//! - `cache`: verified credentials, bounded, kept until they expire.
//! - `revocation`: the revocation list (admin API), persisted, checked on
//!   every message.
//! - `watcher`: ends sessions whose credentials were revoked or expired.
//! - `mint`: signs tokens (backends' `mint_token`, `mcp-gateway token mint`).

pub mod api_keys;
pub mod cache;
pub mod claims;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod mint;
pub mod revocation;
#[cfg(test)]
mod tests;
pub mod watcher;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, AuthMode};

pub use revocation::{RevokedBy, Store as RevocationStore};

/// Who is calling, as proven by the credentials.
///
/// Two principals are equal when they are the same caller with the same
/// grants (`auth`, `sub`, `tenant`, `client_id`, `agent_type`, `scopes`,
/// `actors`). The credential proving it (token id, expiry) is not part of
/// equality: a client that refreshes its token is still the same principal
/// and keeps its session; one whose scopes changed is not.
pub struct Principal {
    pub sub: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    /// The optional `agent_type` claim.
    pub agent_type: Option<String>,
    pub scopes: Vec<String>,
    /// RFC 8693 `act` chain, nearest actor first.
    pub actors: Vec<String>,
    /// How the identity was proven: `none`, `jwt`, `introspection`, `api_key`.
    pub auth: &'static str,
    /// The token behind this principal; renewed in place when the client
    /// presents a fresher one for the same session (`renew_from`).
    credential: ArcSwap<Credential>,
}

/// The token that proves a principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// `jti`, when the token has one.
    pub token_id: Option<String>,
    /// `exp`, seconds since the Unix epoch; `None` never expires by time
    /// (API keys, anonymous).
    pub expires_at: Option<u64>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal::new("anonymous".into(), "none", Credential::default())
    }

    pub fn new(sub: String, auth: &'static str, credential: Credential) -> Principal {
        Principal {
            sub,
            tenant: None,
            client_id: None,
            agent_type: None,
            scopes: Vec::new(),
            actors: Vec::new(),
            auth,
            credential: ArcSwap::from_pointee(credential),
        }
    }

    /// The token id (`jti`) of the current credential.
    pub fn token_id(&self) -> Option<String> {
        self.credential.load().token_id.clone()
    }

    /// When the current credential expires (Unix seconds).
    pub fn expires_at(&self) -> Option<u64> {
        self.credential.load().expires_at
    }

    pub fn credential(&self) -> Arc<Credential> {
        self.credential.load_full()
    }

    /// Length of the delegation chain.
    pub fn delegation_depth(&self) -> usize {
        self.actors.len()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Adopts the credential of `fresher`, the same principal presenting a
    /// newer token (Streamable HTTP clients refresh between requests): the
    /// session's per-message checks then follow the token in use.
    pub fn renew_from(&self, fresher: &Principal) {
        if self == fresher && !Arc::ptr_eq(&self.credential.load(), &fresher.credential.load()) {
            self.credential.store(fresher.credential.load_full());
        }
    }

    /// A stable key binding sessions and per-principal backends to this
    /// caller: every identity field, so two callers that differ in grants
    /// never share a backend session.
    pub fn binding_key(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.client_id.as_deref().unwrap_or(""),
            self.agent_type.as_deref().unwrap_or(""),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        for s in scopes {
            hasher.update(s.as_bytes());
            hasher.update([1]);
        }
        for a in &self.actors {
            hasher.update(a.as_bytes());
            hasher.update([2]);
        }
        let digest = hasher.finalize();
        format!(
            "{}|{}|{}|{}",
            self.auth,
            self.tenant.as_deref().unwrap_or(""),
            self.sub,
            hex::encode(digest.get(..8).unwrap_or_default())
        )
    }

    fn identity(&self) -> impl PartialEq + Hash + '_ {
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        (
            self.auth,
            &self.sub,
            &self.tenant,
            &self.client_id,
            &self.agent_type,
            scopes,
            &self.actors,
        )
    }
}

impl Clone for Principal {
    fn clone(&self) -> Principal {
        Principal {
            sub: self.sub.clone(),
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            agent_type: self.agent_type.clone(),
            scopes: self.scopes.clone(),
            actors: self.actors.clone(),
            auth: self.auth,
            credential: ArcSwap::new(self.credential.load_full()),
        }
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Principal) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Principal {}

impl Hash for Principal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credential = self.credential.load();
        f.debug_struct("Principal")
            .field("sub", &self.sub)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("agent_type", &self.agent_type)
            .field("scopes", &self.scopes)
            .field("actors", &self.actors)
            .field("auth", &self.auth)
            .field("token_id", &credential.token_id)
            .field("expires_at", &credential.expires_at)
            .finish()
    }
}

/// Why credentials were refused. The text is short and stable (clients see
/// it); details go to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials")]
    Missing,
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    #[error("credentials given more than once")]
    Ambiguous,
    #[error("credentials of {bytes} bytes exceed the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("credentials must not be sent in the query string (parameter {0:?})")]
    TokenInQuery(String),
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no signing key for this token (kid {kid:?})")]
    UnknownKey { kid: Option<String> },
    #[error("token signature does not verify")]
    Signature,
    #[error("token expired")]
    Expired { exp: u64 },
    #[error("token not yet valid")]
    NotYetValid { nbf: u64 },
    #[error("token issued in the future")]
    IssuedInFuture { iat: u64 },
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audience is not this gateway")]
    Audience,
    #[error("token lacks the {0:?} claim")]
    MissingClaim(&'static str),
    #[error("token claim {claim:?} {reason}")]
    InvalidClaim { claim: String, reason: &'static str },
    #[error("delegation chain of {depth} actors exceeds the limit of {max}")]
    DelegationTooDeep { depth: usize, max: usize },
    #[error("token is not active")]
    Inactive,
    #[error("invalid api key")]
    InvalidApiKey,
    #[error("credentials revoked (by {0})")]
    Revoked(RevokedBy),
    #[error("insufficient scope: requires {}", required.join(" "))]
    InsufficientScope { required: Vec<String> },
    /// The issuer's keys cannot be fetched and none are cached.
    #[error("token signing keys are unavailable")]
    KeysUnavailable(String),
    /// The introspection endpoint did not answer usefully.
    #[error("token introspection is unavailable")]
    IntrospectionUnavailable(String),
    /// The revocation list could not be loaded at start.
    #[error("the revocation list is unavailable")]
    RevocationsUnavailable(String),
    /// Shared state (`[state]`, Redis) is unreachable and the gateway fails closed.
    #[error("state store unavailable")]
    StateUnavailable,
}

impl AuthError {
    /// The internal detail for logs (never shown to clients).
    pub fn detail(&self) -> Option<&str> {
        match self {
            AuthError::KeysUnavailable(d)
            | AuthError::IntrospectionUnavailable(d)
            | AuthError::RevocationsUnavailable(d) => Some(d),
            _ => None,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Turns request credentials into principals; shared by every front door.
pub struct Authenticator {
    config: AuthConfig,
    api_keys: api_keys::ApiKeys,
    jwt: Option<jwt::JwtVerifier>,
    introspection: Option<introspection::Introspector>,
    cache: cache::TokenCache,
    /// The revocation list (`/admin/revocations`).
    pub revocations: revocation::Store,
    rules: Arc<claims::Rules>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Arc<Authenticator> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let rules = Arc::new(claims::Rules::from_config(config));
        let discovery = config
            .issuer
            .as_ref()
            .map(|issuer| Arc::new(jwks::Discovery::new(issuer.clone(), http.clone())));
        let jwt = (config.mode == AuthMode::Jwt)
            .then(|| jwt::JwtVerifier::new(config, http.clone(), discovery.clone()));
        let introspection =
            match (&config.mode, &config.introspection) {
                (AuthMode::Introspection, Some(settings)) => Some(
                    introspection::Introspector::new(settings, http.clone(), discovery.clone()),
                ),
                _ => None,
            };
        Arc::new(Authenticator {
            api_keys: api_keys::ApiKeys::new(&config.api_keys),
            jwt,
            introspection,
            cache: cache::TokenCache::new(config.cache_max_entries),
            revocations: revocation::Store::open(config.revocations_file.clone()),
            rules,
            config: config.clone(),
        })
    }

    /// (hits, misses) of the verified-token cache.
    pub fn token_cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Whether callers must prove who they are.
    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Whether OAuth bearer tokens are accepted (and protected resource
    /// metadata is served).
    pub fn oauth(&self) -> bool {
        self.config.mode != AuthMode::None
    }

    /// What must be fixed before serving: a revocation file that could not
    /// be read. Serving anyway would forget revocations (fail closed).
    pub fn startup_error(&self) -> Option<String> {
        self.revocations.load_error()
    }

    /// Background work: the first key fetch and periodic JWKS refresh.
    pub fn spawn_background(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        if let Some(jwt) = &self.jwt {
            jwt.spawn_refresh(shutdown);
        }
        if self.config.mode == AuthMode::Jwt && self.config.hs256_secret.is_some() {
            tracing::warn!(
                "auth.hs256_secret_env is set: HS256 tokens share one secret with their \
                 issuer and are meant for development only"
            );
        }
    }

    /// Authenticates one HTTP request (or WebSocket upgrade) from its headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        if let Some(result) = self.api_keys.authenticate(headers) {
            let principal = result?;
            self.still_valid(&principal)?;
            return Ok(principal);
        }
        let token = self.bearer_token(headers)?;
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::TooLarge {
                bytes: token.len(),
                max: self.config.max_token_bytes,
            });
        }
        if !is_b64token(token) {
            return Err(AuthError::Malformed(
                "not a bearer token (RFC 6750 b64token)",
            ));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_unix();
        if let Some(principal) = self.cache.get(&key, now) {
            self.still_valid(&principal)?;
            return Ok(principal);
        }
        let (principal, cache_until) = self.verify(token, now).await?;
        self.still_valid(&principal)?;
        if let Some(until) = cache_until {
            self.cache.insert(key, principal.clone(), until);
        }
        Ok(principal)
    }

    /// The bearer token of the `Authorization` header.
    fn bearer_token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(AuthError::Missing);
        };
        if values.next().is_some() {
            return Err(AuthError::Ambiguous);
        }
        let value = value
            .to_str()
            .map_err(|_| AuthError::Malformed("authorization header is not ASCII"))?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || self.config.mode == AuthMode::None {
            return Err(AuthError::UnsupportedScheme);
        }
        let token = token.trim_start_matches(' ');
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        Ok(token)
    }

    /// Verifies a token that is not cached: the principal, and until when
    /// it may be cached.
    async fn verify(&self, token: &str, now: u64) -> Result<(Principal, Option<u64>), AuthError> {
        match self.config.mode {
            AuthMode::None => Err(AuthError::UnsupportedScheme),
            AuthMode::Jwt => {
                let jwt = self.jwt.as_ref().ok_or_else(|| {
                    AuthError::KeysUnavailable("no JWT verifier configured".into())
                })?;
                let claims = jwt.verify(token).await?;
                let principal = claims::principal(&claims, &self.rules, now, "jwt")?;
                let until = principal.expires_at();
                Ok((principal, until))
            }
            AuthMode::Introspection => {
                let introspector = self.introspection.as_ref().ok_or_else(|| {
                    AuthError::IntrospectionUnavailable("no introspection configured".into())
                })?;
                let claims = introspector.introspect(token).await?;
                let principal = claims::principal(&claims, &self.rules, now, "introspection")?;
                let cache_for = introspector.cache_for().as_secs();
                let until = match principal.expires_at() {
                    Some(exp) => Some(exp.min(now.saturating_add(cache_for))),
                    None => Some(now.saturating_add(cache_for)),
                };
                Ok((principal, until.filter(|_| cache_for > 0)))
            }
        }
    }

    /// Re-checks a principal before each message of an open stream: expiry
    /// (with the configured leeway) and revocation.
    pub fn still_valid(&self, principal: &Principal) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        let credential = principal.credential.load();
        if let Some(exp) = credential.expires_at
            && now_unix() > exp.saturating_add(self.config.leeway.as_secs())
        {
            return Err(AuthError::Expired { exp });
        }
        self.revocations
            .check(principal, credential.token_id.as_deref())
            .map_err(|e| match e {
                revocation::CheckError::Revoked(by) => AuthError::Revoked(by),
                revocation::CheckError::Unavailable(d) => AuthError::RevocationsUnavailable(d),
                revocation::CheckError::StateUnavailable => AuthError::StateUnavailable,
            })
    }

    /// Completes once `principal`'s credential expires or is revoked; never
    /// when authentication is off. Streams select on it to end on time.
    pub fn invalidated(
        self: &Arc<Self>,
        principal: Principal,
    ) -> impl std::future::Future<Output = AuthError> + Send + 'static {
        let auth = self.clone();
        let mut changes = self.revocations.subscribe();
        async move {
            if !auth.enabled() {
                return std::future::pending().await;
            }
            loop {
                if let Err(e) = auth.still_valid(&principal) {
                    return e;
                }
                let deadline = principal.expires_at().map(|exp| {
                    let at = UNIX_EPOCH
                        + Duration::from_secs(exp.saturating_add(auth.config.leeway.as_secs()))
                        + Duration::from_millis(1);
                    let wait = at
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    tokio::time::Instant::now() + wait
                });
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // The store is gone: only expiry remains.
                            match deadline {
                                Some(d) => tokio::time::sleep_until(d).await,
                                None => std::future::pending().await,
                            }
                        }
                    }
                    _ = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                }
            }
        }
    }

    /// The scopes a route needs: `auth.required_scopes` plus those of
    /// every backend it reaches.
    pub fn required_scopes<'a>(
        &self,
        backends: impl IntoIterator<Item = &'a crate::config::BackendConfig>,
    ) -> Vec<String> {
        let mut out = self.config.required_scopes.clone();
        for backend in backends {
            for scope in &backend.required_scopes {
                if !out.contains(scope) {
                    out.push(scope.clone());
                }
            }
        }
        out
    }

    /// Query parameters that would carry a credential (refused: tokens in
    /// URLs end up in logs and browser history).
    pub fn credential_query_param<'q>(&self, query: &'q str) -> Option<&'q str> {
        const NAMES: &[&str] = &[
            "access_token",
            "id_token",
            "token",
            "api_key",
            "apikey",
            "api-key",
            "key",
        ];
        query.split('&').find_map(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            let listed = NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
                || name.eq_ignore_ascii_case("authorization")
                || self
                    .config
                    .api_keys
                    .iter()
                    .any(|k| k.header.eq_ignore_ascii_case(name));
            (listed && !name.is_empty()).then_some(name)
        })
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}
