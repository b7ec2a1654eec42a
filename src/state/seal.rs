//! Sealed session ids: `s1` + base64url(nonce ‖ XChaCha20-Poly1305(binding
//! ‖ random ‖ ticket)). The key comes from `[state] session_key_env`,
//! derived once at start, the same on every replica, so any replica can tell
//! a session id it could have issued, and for whom, without asking anyone.
//! Never reveals the principal: the binding inside is a digest, and
//! encrypted.
//!
//! The ticket (compact JSON, short keys) is what another replica needs to
//! resume the session without its owner: the route, the client's revision,
//! info and capabilities, the owner replica, and for each backend its own
//! session id and revision. An id sealed without a ticket (older replicas)
//! still opens; such a session is only ever served by its owner.
//!
//! A session id presented by another principal, forged, or sealed under
//! another key is unknown (404 at the transport, MCP Streamable HTTP).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Principal;

const PREFIX: &str = "s1";
/// Binds ciphertexts to this use: a sealed id is not valid as anything else.
const AAD: &[u8] = b"mcp-gateway session id v1";
const NONCE_BYTES: usize = 24;
const BINDING_BYTES: usize = 16;
const RANDOM_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
const MIN_SEALED_BYTES: usize = NONCE_BYTES + BINDING_BYTES + RANDOM_BYTES + TAG_BYTES;
/// The largest ticket sealed into an id. A session id travels in a header
/// on every request (and through load balancers with header-size limits):
/// a route of a few backends needs a few hundred bytes; a ticket beyond this
/// (an enormous clientInfo) is sealed without the client's facts instead.
pub const MAX_TICKET_BYTES: usize = 1536;
const MAX_SEALED_BYTES: usize = MIN_SEALED_BYTES + MAX_TICKET_BYTES;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("session id is not a sealed id")]
    Malformed,
    #[error("session id was not sealed with this gateway's key")]
    Forged,
    #[error("session id belongs to another principal")]
    ForeignPrincipal,
    #[error("session ticket of {len} bytes exceeds {MAX_TICKET_BYTES}")]
    TooLong { len: usize },
}

/// What another replica needs to resume a handshake-era session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The replica that opened the session (`[state] replica_id`): it owns
    /// the session's local processes and is where requests are forwarded.
    #[serde(rename = "o")]
    pub owner: String,
    /// `Route::key`: `""` for `/mcp`, else the backend of `/servers/{backend}`.
    #[serde(rename = "r", default)]
    pub route: String,
    /// The revision negotiated with the client.
    #[serde(rename = "v")]
    pub protocol_version: String,
    /// The client's `clientInfo` and `capabilities` from `initialize`, sent
    /// on to a backend that has to be re-initialized.
    #[serde(rename = "i", default, skip_serializing_if = "Value::is_null")]
    pub client_info: Value,
    #[serde(rename = "c", default, skip_serializing_if = "Value::is_null")]
    pub client_capabilities: Value,
    /// Whether every backend of the session can be reached from any replica
    /// (Streamable HTTP): then any replica adopts the session; otherwise
    /// requests are forwarded to `owner`.
    #[serde(rename = "a", default)]
    pub adoptable: bool,
    /// One entry per backend of the route, in the route's order.
    #[serde(rename = "b", default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendTicket>,
}

/// One backend of a sealed session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendTicket {
    #[serde(rename = "n")]
    pub name: String,
    /// The backend's `Mcp-Session-Id`, when it issued one.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The revision the backend answered with.
    #[serde(rename = "v")]
    pub protocol_version: String,
    /// A 2026-07-28 backend (no backend session at all).
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    pub stateless: bool,
    /// A stateless backend's capabilities (the listen bridge reads them);
    /// not kept for handshake-era backends, whose capabilities the gateway
    /// only needs at `initialize`.
    #[serde(rename = "c", default, skip_serializing_if = "Value::is_null")]
    pub capabilities: Value,
}

/// Seals and opens session ids with the replicas' shared key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// Derives the key from the configured secret (at least 32 characters,
    /// checked by config).
    pub fn new(secret: &str) -> Sealer {
        let mut hasher = Sha256::new();
        hasher.update(b"mcp-gateway session seal key v1\0");
        hasher.update(secret.as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        Sealer {
            cipher: XChaCha20Poly1305::new(&Key::from(digest)),
        }
    }

    /// A fresh session id bound to `principal`, without a ticket.
    pub fn seal(&self, principal: &Principal) -> String {
        self.seal_bytes(principal, &[])
    }

    /// A fresh session id bound to `principal` carrying `ticket`.
    pub fn seal_ticket(&self, principal: &Principal, ticket: &Ticket) -> Result<String, SealError> {
        // Serializing plain strings and JSON values cannot fail.
        let json = serde_json::to_vec(ticket).unwrap_or_default();
        if json.len() > MAX_TICKET_BYTES {
            return Err(SealError::TooLong { len: json.len() });
        }
        Ok(self.seal_bytes(principal, &json))
    }

    fn seal_bytes(&self, principal: &Principal, ticket: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        let mut plain = vec![0u8; BINDING_BYTES + RANDOM_BYTES + ticket.len()];
        let (head, rest) = plain.split_at_mut(BINDING_BYTES + RANDOM_BYTES);
        let (binding, random) = head.split_at_mut(BINDING_BYTES);
        binding.copy_from_slice(&binding_digest(principal));
        rest.copy_from_slice(ticket);
        if getrandom::fill(&mut nonce).is_err() || getrandom::fill(random).is_err() {
            // As for unsealed ids: no OS randomness is an unrecoverable
            // platform fault; never fall back to something guessable.
            panic!("the operating system's random number generator failed");
        }
        let Ok(sealed) = self.cipher.encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: AAD,
            },
        ) else {
            // XChaCha20-Poly1305 only refuses messages of gigabytes.
            panic!("sealing a session id of at most 2 KB failed");
        };
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Checks that `id` was sealed with this key for `principal`; its
    /// ticket, if it carries one.
    pub fn open(&self, id: &str, principal: &Principal) -> Result<Option<Ticket>, SealError> {
        let encoded = id.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        // Size first: nothing is decoded from an id of impossible length.
        if encoded.len() < (MIN_SEALED_BYTES * 4).div_ceil(3)
            || encoded.len() > (MAX_SEALED_BYTES * 4).div_ceil(3)
        {
            return Err(SealError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Malformed)?;
        let (nonce, sealed) = bytes
            .split_first_chunk::<NONCE_BYTES>()
            .ok_or(SealError::Malformed)?;
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| SealError::Forged)?;
        let binding = plain.get(..BINDING_BYTES).ok_or(SealError::Malformed)?;
        if !bool::from(binding.ct_eq(&binding_digest(principal))) {
            return Err(SealError::ForeignPrincipal);
        }
        match plain.get(BINDING_BYTES + RANDOM_BYTES..) {
            None | Some([]) => Ok(None),
            // Authentic but unreadable: sealed by a newer replica with a
            // ticket this one does not understand; it cannot resume it.
            Some(json) => Ok(serde_json::from_slice(json).ok()),
        }
    }
}

/// A short, stable name for a session id (Redis keys, logs): the id itself
/// is long and, like a token, lets its principal use the session.
pub fn digest(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

fn binding_digest(principal: &Principal) -> [u8; BINDING_BYTES] {
    let digest = Sha256::digest(principal.binding_key().as_bytes());
    let mut out = [0u8; BINDING_BYTES];
    out.copy_from_slice(digest.get(..BINDING_BYTES).unwrap_or(&[0; BINDING_BYTES]));
    out
}

#[cfg(test)]
mod tests;
