//! RFC 7662 token introspection: POST the token to the issuer's endpoint
//! with the gateway's client credentials; `active: true` and the claims
//! come back. Fail closed: an unreachable endpoint, an error status or an
//! unparseable answer is `IntrospectionUnavailable` (503), `active: false`
//! is `Inactive` (401). Answers are cached by `Authenticator` for
//! `min(cache_s, exp - now)`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::AuthError;
use super::jwks::Discovery;
use crate::config::{IntrospectionConfig, Secret};

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

pub struct Introspector {
    url: Option<String>,
    discovery: Option<Arc<Discovery>>,
    client_id: String,
    client_secret: Secret,
    cache: Duration,
    http: reqwest::Client,
}

impl Introspector {
    pub fn new(
        config: &IntrospectionConfig,
        http: reqwest::Client,
        discovery: Option<Arc<Discovery>>,
    ) -> Introspector {
        Introspector {
            url: config.url.clone(),
            discovery,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            cache: config.cache,
            http,
        }
    }

    pub fn cache_for(&self) -> Duration {
        self.cache
    }

    async fn endpoint(&self) -> Result<String, AuthError> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        let discovery = self.discovery.as_ref().ok_or_else(|| {
            AuthError::IntrospectionUnavailable("no introspection endpoint configured".into())
        })?;
        let doc = discovery
            .document()
            .await
            .map_err(AuthError::IntrospectionUnavailable)?;
        doc.introspection_endpoint.ok_or_else(|| {
            AuthError::IntrospectionUnavailable(
                "the issuer's discovery document has no introspection_endpoint".into(),
            )
        })
    }

    /// The claims of an active token.
    pub async fn introspect(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let url = self.endpoint().await?;
        let unavailable = |reason: String| AuthError::IntrospectionUnavailable(reason);
        let mut response = self
            .http
            .post(&url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .header(http::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("{url}: HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(unavailable(format!("{url}: answer too large")));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("{url}: invalid JSON: {e}")))?;
        match answer.get("active") {
            Some(Value::Bool(true)) => Ok(answer),
            Some(Value::Bool(false)) => Err(AuthError::Inactive),
            _ => Err(unavailable(format!(
                "{url}: answer without a boolean \"active\""
            ))),
        }
    }
}
