//! The backend's own credentials, per connection. The client's token never
//! reaches a backend (MCP authorization: no token passthrough); a backend
//! gets its configured static `headers`, or — with `mint_token` — a
//! short-lived JWT the gateway signs for it: audience the backend, `sub` the
//! caller, `act` the gateway in front of the caller's delegation chain.
//!
//! The session engine sets the caller (`Credentials::caller`) when it opens
//! a connection; `Backend` binds it to the backend's `Minter`; a transport
//! asks `authorization()` before each request (HTTP POST, SSE GET, WebSocket
//! upgrade) and sends the header it gets, if any. A minted token is reused
//! while at least half of its lifetime is left.

use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::auth::Principal;
use crate::auth::mint::{SigningKey, backend_claims};
use crate::config::MintTokenConfig;

/// Signs tokens for one backend.
pub struct Minter {
    key: SigningKey,
    issuer: String,
    audience: String,
    ttl_s: u64,
}

impl Minter {
    /// `None` (with an error logged) if the key no longer loads; the config
    /// loader has validated it, so this is not expected.
    pub fn new(backend: &str, config: &MintTokenConfig) -> Option<Arc<Minter>> {
        match SigningKey::from_pem(config.key_pem.expose(), config.kid.clone()) {
            Ok(key) => Some(Arc::new(Minter {
                key,
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                ttl_s: config.ttl.as_secs().max(1),
            })),
            Err(e) => {
                tracing::error!(backend, error = %e, "mint_token key does not load; requests to this backend carry no token");
                None
            }
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn mint(&self, caller: &Principal, now: u64) -> Option<(HeaderValue, u64)> {
        let claims = backend_claims(caller, &self.issuer, &self.audience, now, self.ttl_s);
        match self.key.sign(&claims) {
            Ok(token) => HeaderValue::from_str(&format!("Bearer {token}"))
                .ok()
                .map(|mut v| {
                    v.set_sensitive(true);
                    (v, now.saturating_add(self.ttl_s))
                }),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a backend token");
                None
            }
        }
    }
}

/// What a connection presents to its backend on the caller's behalf.
#[derive(Clone, Default)]
pub struct Credentials {
    caller: Option<Principal>,
    minted: Option<Arc<Minted>>,
}

struct Minted {
    minter: Arc<Minter>,
    caller: Principal,
    /// The current token and its `exp`.
    current: Mutex<Option<(HeaderValue, u64)>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("caller", &self.caller.as_ref().map(|p| &p.sub))
            .field("minted", &self.minted.is_some())
            .finish()
    }
}

impl Credentials {
    /// Credentials for a connection opened on behalf of `principal`.
    pub fn caller(principal: &Principal) -> Credentials {
        Credentials {
            caller: Some(principal.clone()),
            minted: None,
        }
    }

    /// Binds these credentials to a backend: with a minter and a caller,
    /// tokens are minted; otherwise nothing is added.
    pub(super) fn bind(&self, minter: Option<&Arc<Minter>>) -> Credentials {
        let minted = match (minter, &self.caller) {
            (Some(minter), Some(caller)) => Some(Arc::new(Minted {
                minter: minter.clone(),
                caller: caller.clone(),
                current: Mutex::new(None),
            })),
            _ => None,
        };
        Credentials {
            caller: self.caller.clone(),
            minted,
        }
    }

    /// The `Authorization` header value for the next request to the
    /// backend, if this backend mints tokens.
    pub fn authorization(&self) -> Option<HeaderValue> {
        let minted = self.minted.as_ref()?;
        let now = crate::auth::now_unix();
        let half = minted.minter.ttl_s / 2;
        if let Ok(current) = minted.current.lock()
            && let Some((value, exp)) = current.as_ref()
            && now.saturating_add(half) < *exp
        {
            return Some(value.clone());
        }
        let (value, exp) = minted.minter.mint(&minted.caller, now)?;
        if let Ok(mut current) = minted.current.lock() {
            *current = Some((value.clone(), exp));
        }
        Some(value)
    }
}
