//! Signing tokens: the short-lived JWTs the gateway mints for backends
//! (`backends[].mint_token`: audience the backend, `sub` the caller, `act`
//! the gateway, RFC 8693 shape), the public JWKS backends verify them with,
//! and the `mcp-gateway token mint` development helper.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::Principal;

/// A private key and what it signs with.
pub struct SigningKey {
    key: EncodingKey,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The public half as a JWK (`None` for HS256).
    public: Option<Jwk>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A PKCS#8 (or PKCS#1 RSA) PEM private key: Ed25519 → EdDSA, P-256 →
    /// ES256, P-384 → ES384, RSA → RS256. Without `kid`, the key's RFC 7638
    /// thumbprint.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<SigningKey, String> {
        SigningKey::from_pem_with(pem, kid, None)
    }

    /// As `from_pem`, with the algorithm chosen among those the key type
    /// allows (an RSA key may sign PS256 instead of RS256).
    pub fn from_pem_with(
        pem: &str,
        kid: Option<String>,
        wanted: Option<Algorithm>,
    ) -> Result<SigningKey, String> {
        let bytes = pem.as_bytes();
        let mut candidates: Vec<(EncodingKey, Algorithm)> = Vec::new();
        if let Ok(k) = EncodingKey::from_ed_pem(bytes) {
            candidates.push((k, Algorithm::EdDSA));
        }
        if let Ok(k) = EncodingKey::from_ec_pem(bytes) {
            candidates.push((k.clone(), Algorithm::ES256));
            candidates.push((k, Algorithm::ES384));
        }
        if let Ok(k) = EncodingKey::from_rsa_pem(bytes) {
            let alg = match wanted {
                Some(
                    a @ (Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512),
                ) => a,
                _ => Algorithm::RS256,
            };
            candidates.push((k, alg));
        }
        if let Some(wanted) = wanted {
            candidates.retain(|(_, alg)| *alg == wanted);
        }
        for (key, alg) in candidates {
            // The key type decides the algorithm: the first that signs and
            // yields a public key is it (an EC key signs one curve only).
            if jsonwebtoken::crypto::sign(b"probe", &key, alg).is_err() {
                continue;
            }
            let Ok(mut public) = Jwk::from_encoding_key(&key, alg) else {
                continue;
            };
            let kid = match kid {
                Some(kid) => kid,
                None => public
                    .thumbprint(ThumbprintHash::SHA256)
                    .map_err(|e| format!("cannot compute the key thumbprint: {e}"))?,
            };
            public.common.key_id = Some(kid.clone());
            public.common.public_key_use = Some(PublicKeyUse::Signature);
            return Ok(SigningKey {
                key,
                alg,
                kid: Some(kid),
                public: Some(public),
            });
        }
        Err(
            "not a PEM private key of a supported type (PKCS#8 Ed25519, P-256, P-384 or RSA)"
                .into(),
        )
    }

    /// An HS256 secret (development only).
    pub fn hs256(secret: &[u8], kid: Option<String>) -> Result<SigningKey, String> {
        let key = EncodingKey::from_secret(secret).map_err(|e| e.to_string())?;
        Ok(SigningKey {
            key,
            alg: Algorithm::HS256,
            kid,
            public: None,
        })
    }

    /// The public key as a JWK (with `kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> Option<Value> {
        self.public
            .as_ref()
            .and_then(|jwk| serde_json::to_value(jwk).ok())
    }

    /// Signs `claims` as a compact JWS (`typ: JWT`).
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| e.to_string())
    }
}

/// A JWKS document of these keys.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Value {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for key in keys {
        let Some(jwk) = key.public_jwk() else {
            continue;
        };
        let kid = key.kid.clone().unwrap_or_default();
        if seen.contains(&kid) {
            continue;
        }
        seen.push(kid);
        out.push(jwk);
    }
    json!({ "keys": out })
}

/// A random token id.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{nanos:x}");
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The RFC 8693 `act` claim for a chain, nearest actor first.
pub fn act_claim(actors: &[String]) -> Option<Value> {
    let mut act: Option<Value> = None;
    for actor in actors.iter().rev() {
        let mut obj = Map::new();
        obj.insert("sub".into(), actor.clone().into());
        if let Some(inner) = act.take() {
            obj.insert("act".into(), inner);
        }
        act = Some(Value::Object(obj));
    }
    act
}

/// What a backend's minted token says about the caller: `sub` the caller,
/// `act` the gateway (`issuer`) in front of the caller's own chain, the
/// tenant, scopes and client id carried along.
pub fn backend_claims(
    caller: &Principal,
    issuer: &str,
    audience: &str,
    now: u64,
    ttl_s: u64,
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.into());
    claims.insert("aud".into(), audience.into());
    claims.insert("sub".into(), caller.sub.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(ttl_s).into());
    claims.insert("jti".into(), new_jti().into());
    let mut chain = vec![issuer.to_owned()];
    chain.extend(caller.actors.iter().cloned());
    if let Some(act) = act_claim(&chain) {
        claims.insert("act".into(), act);
    }
    if let Some(tenant) = &caller.tenant {
        claims.insert("tenant".into(), tenant.clone().into());
    }
    if !caller.scopes.is_empty() {
        claims.insert("scope".into(), caller.scopes.join(" ").into());
    }
    if let Some(client) = &caller.client_id {
        claims.insert("client_id".into(), client.clone().into());
    }
    claims
}
