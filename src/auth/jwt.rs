//! JWS compact tokens: header, algorithm, key, signature; the claims come
//! back unchecked (`claims` checks them). The header is parsed here rather
//! than by the library so that every refusal has its own reason: `alg:
//! none` and unknown algorithms, `crit`, unexpected `typ`, encrypted (JWE)
//! tokens, and algorithm confusion (an HMAC algorithm is only ever verified
//! with the configured HS256 secret, never with a published key).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AuthError;
use super::jwks::{Discovery, KeyStore};
use crate::config::{AuthConfig, JwtAlgorithm};

pub struct JwtVerifier {
    keys: Arc<KeyStore>,
    hs256: Option<DecodingKey>,
    algorithms: Vec<Algorithm>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    #[serde(default)]
    enc: Option<Value>,
}

pub fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::HS256 => Algorithm::HS256,
    }
}

/// The JWS `alg` names the gateway knows; anything else (`none`
/// included) is refused before a key is looked at.
fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        _ => return None,
    })
}

impl JwtVerifier {
    pub fn new(
        config: &AuthConfig,
        http: reqwest::Client,
        discovery: Option<Arc<Discovery>>,
    ) -> JwtVerifier {
        let hs256 = config
            .hs256_secret
            .as_ref()
            .and_then(|s| DecodingKey::from_secret(s.expose().as_bytes()).ok());
        JwtVerifier {
            keys: Arc::new(KeyStore::new(
                config.keys.clone(),
                http,
                discovery,
                config.jwks_min_refresh,
                config.jwks_refresh,
            )),
            hs256,
            algorithms: config.algorithms.iter().map(|a| algorithm(*a)).collect(),
        }
    }

    pub fn spawn_refresh(&self, shutdown: tokio_util::sync::CancellationToken) {
        if !self.keys.has_source() {
            return;
        }
        let keys = self.keys.clone();
        tokio::spawn(async move {
            loop {
                keys.refresh(true).await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(keys.refresh_every) => {}
                }
            }
        });
    }

    /// Verifies the signature; returns the (unchecked) claims.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(if token.split('.').count() == 5 {
                AuthError::Malformed("encrypted tokens (JWE) are not accepted")
            } else {
                AuthError::Malformed("not a JWT (three dot-separated parts)")
            });
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AuthError::Malformed("header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|_| AuthError::Malformed("header is not a JSON object with \"alg\""))?;
        if header.enc.is_some() {
            return Err(AuthError::Malformed(
                "encrypted tokens (JWE) are not accepted",
            ));
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must fail.
            return Err(AuthError::Malformed(
                "unsupported critical header parameters",
            ));
        }
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return Err(AuthError::Malformed("unexpected token type (typ)"));
            }
        }
        let alg = parse_algorithm(&header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| AuthError::Algorithm(truncate(&header.alg)))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| AuthError::Malformed("payload is not base64url"))?;
        if URL_SAFE_NO_PAD.decode(signature_b64).is_err() || signature_b64.is_empty() {
            return Err(AuthError::Malformed("signature is not base64url"));
        }
        let message_len = header_b64.len() + 1 + payload_b64.len();
        let message = token.get(..message_len).unwrap_or("").as_bytes();

        let verified = if alg == Algorithm::HS256 {
            let key = self
                .hs256
                .as_ref()
                .ok_or_else(|| AuthError::Algorithm("HS256".into()))?;
            jsonwebtoken::crypto::verify(signature_b64, message, key, alg).unwrap_or(false)
        } else {
            let candidates = self.keys.candidates(header.kid.as_deref(), alg).await?;
            candidates.iter().any(|k| {
                jsonwebtoken::crypto::verify(signature_b64, message, &k.key, alg).unwrap_or(false)
            })
        };
        if !verified {
            return Err(AuthError::Signature);
        }
        match serde_json::from_slice::<Value>(&payload) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err(AuthError::Malformed("payload is not a JSON object")),
        }
    }
}

/// Attacker-chosen text in an error message, bounded.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}
