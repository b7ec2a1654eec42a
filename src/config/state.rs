//! `[state]` → `StateConfig`: the Redis URL (from the file or an
//! environment variable, never both), the key prefix and what to do while
//! Redis is unreachable.

use super::convert::Converter;
use super::model::{OnUnavailable, Secret, StateConfig};
use super::raw::{RawOnUnavailable, RawState};

impl Converter<'_> {
    pub(super) fn state(&mut self, raw: RawState) -> StateConfig {
        let url = match (raw.redis_url, &raw.redis_url_env) {
            (Some(_), Some(_)) => {
                self.problem(
                    "state.redis_url_env",
                    "give state.redis_url or state.redis_url_env, not both",
                );
                None
            }
            (Some(url), None) => Some(url),
            (None, Some(name)) => self.secret_env("state.redis_url_env", name),
            (None, None) => None,
        };
        let redis_url = url.and_then(|url| {
            let path = if raw.redis_url_env.is_some() {
                "state.redis_url_env"
            } else {
                "state.redis_url"
            };
            // The client parses (and so validates) the URL without connecting.
            match redis::Client::open(url.as_str()) {
                Ok(_) => Some(Secret::new(url)),
                Err(e) => {
                    self.problem(
                        path,
                        format!("not a Redis URL (redis://host:port or rediss://…): {e}"),
                    );
                    None
                }
            }
        });
        if raw.key_prefix.len() > 128 || raw.key_prefix.chars().any(char::is_whitespace) {
            self.problem(
                "state.key_prefix",
                "must be at most 128 characters without whitespace",
            );
        }
        let session_key = raw
            .session_key_env
            .as_deref()
            .and_then(|name| self.secret_env("state.session_key_env", name));
        if let Some(key) = &session_key
            && key.len() < 32
        {
            self.problem(
                "state.session_key_env",
                "the session key must be at least 32 characters",
            );
        }
        if let Some(id) = &raw.replica_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            self.problem(
                "state.replica_id",
                "must be 1 to 64 characters of A-Za-z0-9_.-",
            );
        }
        if let Some(addr) = &raw.advertise_addr
            && !addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            })
        {
            self.problem("state.advertise_addr", "must be host:port");
        }
        StateConfig {
            redis_url,
            key_prefix: raw.key_prefix,
            on_unavailable: match raw.on_unavailable {
                RawOnUnavailable::Deny => OnUnavailable::Deny,
                RawOnUnavailable::Local => OnUnavailable::Local,
            },
            session_key: session_key.map(Secret::new),
            replica_id: raw.replica_id,
            advertise_addr: raw.advertise_addr,
        }
    }
}
