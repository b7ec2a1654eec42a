//! Sealed session ids: `s1` + base64url(nonce ‖ XChaCha20-Poly1305(binding
//! ‖ random)). The key comes from `[state] session_key_env`, derived once at
//! start, the same on every replica, so any replica can tell a session id
//! it could have issued, and for whom, without asking anyone. Never
//! reveals the principal: the binding inside is a digest, and encrypted.
//!
//! A session id presented by another principal, forged, or sealed under
//! another key is unknown (404 at the transport, MCP Streamable HTTP).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
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
const SEALED_BYTES: usize = NONCE_BYTES + BINDING_BYTES + RANDOM_BYTES + TAG_BYTES;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("session id is not a sealed id")]
    Malformed,
    #[error("session id was not sealed with this gateway's key")]
    Forged,
    #[error("session id belongs to another principal")]
    ForeignPrincipal,
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

    /// A fresh session id bound to `principal`.
    pub fn seal(&self, principal: &Principal) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        let mut plain = [0u8; BINDING_BYTES + RANDOM_BYTES];
        let (binding, random) = plain.split_at_mut(BINDING_BYTES);
        binding.copy_from_slice(&binding_digest(principal));
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
            panic!("sealing a 32-byte session id failed");
        };
        let mut bytes = Vec::with_capacity(SEALED_BYTES);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Checks that `id` was sealed with this key for `principal`.
    pub fn open(&self, id: &str, principal: &Principal) -> Result<(), SealError> {
        let encoded = id.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        // Size first: nothing is decoded from an id of the wrong length.
        if encoded.len() != (SEALED_BYTES * 4).div_ceil(3) {
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
        if bool::from(binding.ct_eq(&binding_digest(principal))) {
            Ok(())
        } else {
            Err(SealError::ForeignPrincipal)
        }
    }
}

fn binding_digest(principal: &Principal) -> [u8; BINDING_BYTES] {
    let digest = Sha256::digest(principal.binding_key().as_bytes());
    let mut out = [0u8; BINDING_BYTES];
    out.copy_from_slice(digest.get(..BINDING_BYTES).unwrap_or(&[0; BINDING_BYTES]));
    out
}

#[cfg(test)]
mod tests;
