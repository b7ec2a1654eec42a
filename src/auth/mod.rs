//! auth: request credentials → `Principal`. Never passes a client's token on.
//!
//! This build knows `mode = "none"`: every caller is the anonymous principal.
//! The authentication issue fills `Authenticator::authenticate` with JWT,
//! introspection and API keys; the pipeline already calls it on every HTTP
//! request and re-checks it per message of a long-lived connection.

use std::sync::Arc;

use http::HeaderMap;

use crate::config::{AuthConfig, AuthMode};

/// Who is calling, as proven by the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub sub: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// RFC 8693 `act` chain, nearest actor first.
    pub actors: Vec<String>,
    pub token_id: Option<String>,
    /// How the identity was proven: `none`, `jwt`, `introspection`, `api_key`.
    pub auth: &'static str,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            sub: "anonymous".into(),
            tenant: None,
            client_id: None,
            scopes: Vec::new(),
            actors: Vec::new(),
            token_id: None,
            auth: "none",
        }
    }

    /// A stable key binding sessions and per-principal backends to this caller.
    pub fn binding_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.auth,
            self.tenant.as_deref().unwrap_or(""),
            self.sub
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials")]
    Missing,
}

#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Arc<Authenticator> {
        Arc::new(Authenticator { mode: config.mode })
    }

    /// Authenticates one HTTP request (or WebSocket upgrade) from its headers.
    pub async fn authenticate(&self, _headers: &HeaderMap) -> Result<Principal, AuthError> {
        match self.mode {
            AuthMode::None => Ok(Principal::anonymous()),
        }
    }

    /// Re-checks a principal before each message of an open stream
    /// (expiry, revocation). Always valid without authentication.
    pub fn still_valid(&self, _principal: &Principal) -> Result<(), AuthError> {
        match self.mode {
            AuthMode::None => Ok(()),
        }
    }
}
