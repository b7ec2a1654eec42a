//! Static API keys (`[[auth.api_keys]]`, legacy header translation): a key
//! in a configured header (`x-api-key: …`, `Authorization: ApiKey …`) maps
//! to a fixed subject, tenant and scopes. Keys are configured as their
//! SHA-256 only, and the digest of a presented key is compared with every
//! configured digest in constant time.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Credential, Principal};
use crate::config::ApiKeyConfig;

pub struct ApiKeys {
    keys: Vec<ApiKeyConfig>,
    /// Distinct (header, scheme) places a key may arrive in.
    places: Vec<(String, Option<String>)>,
}

impl ApiKeys {
    pub fn new(keys: &[ApiKeyConfig]) -> ApiKeys {
        let mut places: Vec<(String, Option<String>)> = Vec::new();
        for k in keys {
            let place = (k.header.clone(), k.scheme.clone());
            if !places.contains(&place) {
                places.push(place);
            }
        }
        ApiKeys {
            keys: keys.to_vec(),
            places,
        }
    }

    /// `None` when the request carries no API key (another credential may
    /// apply); else the key's principal or why it was refused.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Result<Principal, AuthError>> {
        for (header, scheme) in &self.places {
            let mut values = headers.get_all(header.as_str()).iter();
            let Some(value) = values.next() else {
                continue;
            };
            let Ok(value) = value.to_str() else {
                return Some(Err(AuthError::InvalidApiKey));
            };
            let presented = match scheme {
                Some(scheme) => {
                    let (given, rest) = value.split_once(' ').unwrap_or((value, ""));
                    if !given.eq_ignore_ascii_case(scheme) {
                        // e.g. `Authorization: Bearer …` where keys use
                        // `ApiKey`: not an API key.
                        continue;
                    }
                    rest.trim_start_matches(' ')
                }
                None => value,
            };
            if values.next().is_some() {
                return Some(Err(AuthError::Ambiguous));
            }
            return Some(self.lookup(header, scheme.as_deref(), presented));
        }
        None
    }

    fn lookup(
        &self,
        header: &str,
        scheme: Option<&str>,
        presented: &str,
    ) -> Result<Principal, AuthError> {
        if presented.is_empty() {
            return Err(AuthError::InvalidApiKey);
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&ApiKeyConfig> = None;
        // Every key of this place is compared, match or not.
        for key in self
            .keys
            .iter()
            .filter(|k| k.header == header && k.scheme.as_deref() == scheme)
        {
            let equal: bool = digest.ct_eq(&key.sha256).into();
            if equal && found.is_none() {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthError::InvalidApiKey)?;
        let mut principal = Principal::new(key.subject.clone(), "api_key", Credential::default());
        principal.tenant = key.tenant.clone();
        principal.client_id = key.client_id.clone();
        principal.scopes = key.scopes.clone();
        Ok(principal)
    }
}
