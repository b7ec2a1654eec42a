//! `[auth]`, `[[auth.api_keys]]` and `backends[].mint_token` → validated
//! auth settings. Fail closed on confusion: token keys without a token mode,
//! a token mode without issuer or audience, HS256 without its secret, are
//! all problems rather than silently ignored settings.

use std::path::PathBuf;
use std::time::Duration;

use super::check::{join_index, join_key};
use super::convert::{Converter, check_url};
use super::model::{
    ApiKeyConfig, AuthConfig, AuthMode, IntrospectionConfig, JwtAlgorithm, KeySource,
    MintTokenConfig, Secret,
};
use super::raw::{RawAlgorithm, RawAudience, RawAuth, RawAuthMode, RawBackend, RawTransport};

/// The asymmetric algorithms accepted when `algorithms` is not given.
const ASYMMETRIC: &[JwtAlgorithm] = &[
    JwtAlgorithm::RS256,
    JwtAlgorithm::RS384,
    JwtAlgorithm::RS512,
    JwtAlgorithm::PS256,
    JwtAlgorithm::PS384,
    JwtAlgorithm::PS512,
    JwtAlgorithm::ES256,
    JwtAlgorithm::ES384,
    JwtAlgorithm::EdDSA,
];

impl Converter<'_> {
    pub(super) fn auth(&mut self, raw: RawAuth) -> AuthConfig {
        let mode = match raw.mode {
            RawAuthMode::None => AuthMode::None,
            RawAuthMode::Jwt => AuthMode::Jwt,
            RawAuthMode::Introspection => AuthMode::Introspection,
        };
        let jwt = mode == AuthMode::Jwt;
        let introspection = mode == AuthMode::Introspection;
        let mode_name = match mode {
            AuthMode::None => "none",
            AuthMode::Jwt => "jwt",
            AuthMode::Introspection => "introspection",
        };

        // Keys that only mean something in one mode are errors elsewhere: a
        // half-configured `[auth]` must not leave the gateway open.
        for (key, present, allowed) in [
            ("issuer", raw.issuer.is_some(), jwt || introspection),
            ("audience", raw.audience.is_some(), jwt || introspection),
            ("jwks_uri", raw.jwks_uri.is_some(), jwt),
            ("jwks_file", raw.jwks_file.is_some(), jwt),
            ("hs256_secret_env", raw.hs256_secret_env.is_some(), jwt),
            ("algorithms", raw.algorithms.is_some(), jwt),
            (
                "introspection_url",
                raw.introspection_url.is_some(),
                introspection,
            ),
            ("client_id", raw.client_id.is_some(), introspection),
            (
                "client_secret_env",
                raw.client_secret_env.is_some(),
                introspection,
            ),
        ] {
            if present && !allowed {
                self.problem(
                    join_key("auth", key),
                    format!("has no effect with auth.mode = {mode_name:?}"),
                );
            }
        }

        let issuer = raw.issuer.as_deref().and_then(|issuer| {
            self.url("auth.issuer", issuer)
                .then(|| issuer.trim_end_matches('/').to_owned())
        });
        if jwt && raw.issuer.is_none() {
            self.problem("auth", "auth.issuer is required with auth.mode = \"jwt\"");
        }
        let audiences = match &raw.audience {
            None => Vec::new(),
            Some(RawAudience::One(a)) => vec![a.clone()],
            Some(RawAudience::Many(list)) => list.clone(),
        };
        if (jwt || introspection) && audiences.is_empty() {
            self.problem(
                if raw.audience.is_some() {
                    "auth.audience"
                } else {
                    "auth"
                },
                format!(
                    "auth.audience is required with auth.mode = {mode_name:?}: \
                     the resource this gateway is (tokens for other audiences are refused)"
                ),
            );
        }
        for (i, a) in audiences.iter().enumerate() {
            if a.is_empty() {
                let path = match &raw.audience {
                    Some(RawAudience::Many(_)) => join_index("auth.audience", i),
                    _ => "auth.audience".to_owned(),
                };
                self.problem(path, "must not be empty");
            }
        }

        let hs256_secret = raw
            .hs256_secret_env
            .as_deref()
            .and_then(|name| self.secret_env("auth.hs256_secret_env", name))
            .map(Secret::new);
        if let Some(secret) = &hs256_secret
            && secret.expose().len() < 32
        {
            self.problem(
                "auth.hs256_secret_env",
                "the HS256 secret must be at least 32 bytes long",
            );
        }
        let keys = match (&raw.jwks_file, &raw.jwks_uri) {
            (Some(_), Some(_)) => {
                self.problem("auth.jwks_file", "give jwks_file or jwks_uri, not both");
                KeySource::None
            }
            (Some(file), None) => self.jwks_file(file),
            (None, Some(uri)) => {
                if self.url("auth.jwks_uri", uri) {
                    KeySource::Uri(uri.clone())
                } else {
                    KeySource::None
                }
            }
            // Discovery from the issuer, unless this is an HS256-only
            // development setup.
            (None, None) if jwt && raw.hs256_secret_env.is_none() => KeySource::Discovery,
            (None, None) => KeySource::None,
        };

        let algorithms = match &raw.algorithms {
            None => {
                let mut list = if keys == KeySource::None {
                    Vec::new()
                } else {
                    ASYMMETRIC.to_vec()
                };
                if raw.hs256_secret_env.is_some() {
                    list.push(JwtAlgorithm::HS256);
                }
                list
            }
            Some(list) => {
                if list.is_empty() {
                    self.problem("auth.algorithms", "must list at least one algorithm");
                }
                let mut out = Vec::new();
                for (i, alg) in list.iter().enumerate() {
                    let alg = algorithm(*alg);
                    if alg == JwtAlgorithm::HS256 && raw.hs256_secret_env.is_none() {
                        self.problem(
                            join_index("auth.algorithms", i),
                            "\"HS256\" needs auth.hs256_secret_env",
                        );
                    }
                    if !out.contains(&alg) {
                        out.push(alg);
                    }
                }
                out
            }
        };

        let introspection_config = if introspection {
            let url = match &raw.introspection_url {
                Some(url) => self.url("auth.introspection_url", url).then(|| url.clone()),
                None => {
                    if raw.issuer.is_none() {
                        self.problem(
                            "auth",
                            "auth.introspection_url (or auth.issuer, for discovery) is required \
                             with auth.mode = \"introspection\"",
                        );
                    }
                    None
                }
            };
            let client_id = match &raw.client_id {
                Some(id) if !id.is_empty() => Some(id.clone()),
                Some(_) => {
                    self.problem("auth.client_id", "must not be empty");
                    None
                }
                None => {
                    self.problem(
                        "auth",
                        "auth.client_id is required with auth.mode = \"introspection\"",
                    );
                    None
                }
            };
            let secret = match &raw.client_secret_env {
                Some(name) => self.secret_env("auth.client_secret_env", name),
                None => {
                    self.problem(
                        "auth",
                        "auth.client_secret_env is required with auth.mode = \"introspection\"",
                    );
                    None
                }
            };
            match (client_id, secret) {
                (Some(client_id), Some(secret)) => Some(IntrospectionConfig {
                    url,
                    client_id,
                    client_secret: Secret::new(secret),
                    cache: Duration::from_secs(raw.cache_s),
                }),
                _ => None,
            }
        } else {
            None
        };

        for (key, value) in [
            ("tenant_claim", &raw.tenant_claim),
            ("scope_claim", &raw.scope_claim),
        ] {
            if value.is_empty() {
                self.problem(join_key("auth", key), "must name a claim");
            }
        }
        let required_scopes = self.scopes("auth.required_scopes", &raw.required_scopes);
        let scopes_supported = raw
            .scopes_supported
            .as_ref()
            .map(|s| self.scopes("auth.scopes_supported", s));
        let authorization_servers = match &raw.authorization_servers {
            Some(list) => {
                for (i, server) in list.iter().enumerate() {
                    self.url(&join_index("auth.authorization_servers", i), server);
                }
                list.clone()
            }
            None => issuer.iter().cloned().collect(),
        };
        let public_url = raw.public_url.as_deref().and_then(|url| {
            self.url("auth.public_url", url)
                .then(|| url.trim_end_matches('/').to_owned())
        });
        let revocations_file = match raw.revocations_file.as_deref() {
            Some("") => {
                self.problem("auth.revocations_file", "must not be empty");
                None
            }
            file => file.map(PathBuf::from),
        };
        let api_keys = raw
            .api_keys
            .iter()
            .enumerate()
            .filter_map(|(i, key)| self.api_key(&join_index("auth.api_keys", i), key, mode))
            .collect();

        AuthConfig {
            mode,
            issuer,
            audiences,
            keys,
            hs256_secret,
            algorithms,
            leeway: Duration::from_secs(raw.leeway_s),
            tenant_claim: raw.tenant_claim,
            scope_claim: raw.scope_claim,
            max_delegation_depth: self.count("auth.max_delegation_depth", raw.max_delegation_depth),
            jwks_refresh: Duration::from_secs(raw.jwks_refresh_s),
            jwks_min_refresh: Duration::from_secs(raw.jwks_min_refresh_s),
            introspection: introspection_config,
            cache_max_entries: self.count("auth.cache_max_entries", raw.cache_max_entries),
            max_token_bytes: self.count("auth.max_token_bytes", raw.max_token_bytes),
            required_scopes,
            scopes_supported,
            authorization_servers,
            public_url,
            revocations_file,
            api_keys,
        }
    }

    /// An http(s) URL; records the problem and answers false otherwise.
    fn url(&mut self, path: &str, url: &str) -> bool {
        match check_url(url) {
            Ok(()) => true,
            Err(message) => {
                self.problem(path, message);
                false
            }
        }
    }

    fn jwks_file(&mut self, file: &str) -> KeySource {
        if file.is_empty() {
            self.problem("auth.jwks_file", "must not be empty");
            return KeySource::None;
        }
        match std::fs::read_to_string(file) {
            Ok(text) => match crate::auth::jwks::parse_jwks(&text) {
                Ok(_) => KeySource::File(PathBuf::from(file)),
                Err(e) => {
                    self.problem("auth.jwks_file", format!("{file:?}: {e}"));
                    KeySource::None
                }
            },
            Err(e) => {
                self.problem("auth.jwks_file", format!("cannot read {file:?}: {e}"));
                KeySource::None
            }
        }
    }

    /// Scope names: non-empty, no whitespace (they are space-separated on
    /// the wire), without duplicates.
    pub(super) fn scopes(&mut self, path: &str, scopes: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, scope) in scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) || scope.contains('"') {
                self.problem(
                    join_index(path, i),
                    format!("{scope:?} is not a scope (no spaces or quotes, not empty)"),
                );
            } else if !out.contains(scope) {
                out.push(scope.clone());
            }
        }
        out
    }

    fn api_key(
        &mut self,
        path: &str,
        raw: &super::raw::RawApiKey,
        mode: AuthMode,
    ) -> Option<ApiKeyConfig> {
        let header = match http::HeaderName::from_bytes(raw.header.as_bytes()) {
            Ok(h) => h.as_str().to_owned(),
            Err(_) => {
                self.problem(
                    join_key(path, "header"),
                    format!("{:?} is not a valid HTTP header name", raw.header),
                );
                return None;
            }
        };
        let scheme = match (&raw.scheme, header.as_str()) {
            (Some(s), _)
                if s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)) =>
            {
                self.problem(
                    join_key(path, "scheme"),
                    format!("{s:?} is not an authentication scheme"),
                );
                return None;
            }
            (Some(s), "authorization")
                if s.eq_ignore_ascii_case("bearer") && mode != AuthMode::None =>
            {
                self.problem(
                    join_key(path, "scheme"),
                    "\"Bearer\" is the token mode's scheme; use another (e.g. \"ApiKey\") or auth.mode = \"none\"",
                );
                return None;
            }
            (Some(s), _) => Some(s.clone()),
            // The Authorization header always has a scheme.
            (None, "authorization") => Some("ApiKey".to_owned()),
            (None, _) => None,
        };
        let sha256 = raw.sha256.as_deref().and_then(|hex_digest| {
            let mut out = [0u8; 32];
            match hex::decode_to_slice(hex_digest, &mut out) {
                Ok(()) => Some(out),
                Err(_) => {
                    self.problem(
                        join_key(path, "sha256"),
                        "must be 64 hex digits (the SHA-256 of the key, never the key itself)",
                    );
                    None
                }
            }
        });
        let subject = match raw.subject.as_deref() {
            Some("") => {
                self.problem(join_key(path, "subject"), "must not be empty");
                None
            }
            s => s.map(str::to_owned),
        };
        let scopes = self.scopes(&join_key(path, "scopes"), &raw.scopes);
        Some(ApiKeyConfig {
            header,
            scheme,
            sha256: sha256?,
            subject: subject?,
            tenant: raw.tenant.clone(),
            client_id: raw.client_id.clone(),
            scopes,
        })
    }

    /// `backends[i].mint_token`: remote transports only, instead of a
    /// static `authorization` header; the key must load.
    pub(super) fn mint_token(&mut self, path: &str, raw: &RawBackend) -> Option<MintTokenConfig> {
        let mint = raw.mint_token.as_ref()?;
        let path = join_key(path, "mint_token");
        if raw.transport == Some(RawTransport::Stdio) {
            self.problem(
                path.clone(),
                "not allowed with transport = \"stdio\" (a process has no request headers)",
            );
        }
        if raw
            .headers
            .iter()
            .flatten()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            self.problem(
                path.clone(),
                "conflicts with headers.authorization: the minted token is the backend's Authorization",
            );
        }
        let audience = match mint.audience.as_deref() {
            Some("") => {
                self.problem(join_key(&path, "audience"), "must not be empty");
                None
            }
            a => a.map(str::to_owned),
        };
        let key = mint.key_file.as_deref().and_then(|file| {
            let key_path = join_key(&path, "key_file");
            if file.is_empty() {
                self.problem(key_path, "must not be empty");
                return None;
            }
            let pem = match std::fs::read_to_string(file) {
                Ok(pem) => pem,
                Err(e) => {
                    self.problem(key_path, format!("cannot read {file:?}: {e}"));
                    return None;
                }
            };
            match crate::auth::mint::SigningKey::from_pem(&pem, mint.kid.clone()) {
                Ok(_) => Some((PathBuf::from(file), Secret::new(pem))),
                Err(e) => {
                    self.problem(key_path, format!("{file:?}: {e}"));
                    None
                }
            }
        });
        if mint.issuer.is_empty() {
            self.problem(join_key(&path, "issuer"), "must not be empty");
        }
        let (key_file, key_pem) = key?;
        Some(MintTokenConfig {
            audience: audience?,
            key_file,
            key_pem,
            ttl: Duration::from_secs(mint.ttl_s.max(1)),
            issuer: mint.issuer.clone(),
            kid: mint.kid.clone(),
        })
    }
}

fn algorithm(raw: RawAlgorithm) -> JwtAlgorithm {
    match raw {
        RawAlgorithm::RS256 => JwtAlgorithm::RS256,
        RawAlgorithm::RS384 => JwtAlgorithm::RS384,
        RawAlgorithm::RS512 => JwtAlgorithm::RS512,
        RawAlgorithm::PS256 => JwtAlgorithm::PS256,
        RawAlgorithm::PS384 => JwtAlgorithm::PS384,
        RawAlgorithm::PS512 => JwtAlgorithm::PS512,
        RawAlgorithm::ES256 => JwtAlgorithm::ES256,
        RawAlgorithm::ES384 => JwtAlgorithm::ES384,
        RawAlgorithm::EdDSA => JwtAlgorithm::EdDSA,
        RawAlgorithm::HS256 => JwtAlgorithm::HS256,
    }
}
