//! Claims → `Principal`: the rules JWTs and introspection answers share.
//! Pure: the time is an argument, no I/O.

use serde_json::{Map, Value};

use super::{AuthError, Credential, Principal};
use crate::config::{AuthConfig, AuthMode};

/// What a token's claims must satisfy.
#[derive(Debug, Clone)]
pub struct Rules {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: u64,
    pub tenant_claim: String,
    pub scope_claim: String,
    pub max_delegation_depth: usize,
    /// JWTs must carry `iss`, `aud` and `exp`; an introspection answer is
    /// checked on what it carries (`aud` still required).
    pub strict: bool,
}

impl Rules {
    pub fn from_config(config: &AuthConfig) -> Rules {
        Rules {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            leeway: config.leeway.as_secs(),
            tenant_claim: config.tenant_claim.clone(),
            scope_claim: config.scope_claim.clone(),
            max_delegation_depth: config.max_delegation_depth,
            strict: config.mode != AuthMode::Introspection,
        }
    }
}

/// Checks the claims at time `now` (Unix seconds) and builds the principal.
pub fn principal(
    claims: &Map<String, Value>,
    rules: &Rules,
    now: u64,
    auth: &'static str,
) -> Result<Principal, AuthError> {
    // Time first: an expired token is "expired", whatever else is wrong.
    let exp = time_claim(claims, "exp")?;
    match exp {
        Some(exp) if now > exp.saturating_add(rules.leeway) => {
            return Err(AuthError::Expired { exp });
        }
        None if rules.strict => return Err(AuthError::MissingClaim("exp")),
        _ => {}
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && nbf > now.saturating_add(rules.leeway)
    {
        return Err(AuthError::NotYetValid { nbf });
    }
    if let Some(iat) = time_claim(claims, "iat")?
        && iat > now.saturating_add(rules.leeway)
    {
        return Err(AuthError::IssuedInFuture { iat });
    }

    match (claims.get("iss"), &rules.issuer) {
        (Some(Value::String(iss)), Some(expected)) => {
            if iss.trim_end_matches('/') != expected.trim_end_matches('/') {
                return Err(AuthError::Issuer);
            }
        }
        (Some(Value::String(_)), None) => {}
        (Some(_), _) => return Err(invalid("iss", "must be a string")),
        (None, Some(_)) if rules.strict => return Err(AuthError::MissingClaim("iss")),
        (None, _) => {}
    }

    match claims.get("aud") {
        None => return Err(AuthError::MissingClaim("aud")),
        Some(Value::String(aud)) => {
            if !rules.audiences.iter().any(|a| a == aud) {
                return Err(AuthError::Audience);
            }
        }
        Some(Value::Array(list)) => {
            let mut matched = false;
            for aud in list {
                let Value::String(aud) = aud else {
                    return Err(invalid("aud", "must be a string or an array of strings"));
                };
                matched |= rules.audiences.iter().any(|a| a == aud);
            }
            if !matched {
                return Err(AuthError::Audience);
            }
        }
        Some(_) => return Err(invalid("aud", "must be a string or an array of strings")),
    }

    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::String(_)) => return Err(invalid("sub", "must not be empty")),
        Some(_) => return Err(invalid("sub", "must be a string")),
        // RFC 7662 makes `sub` optional; a client-credentials token's
        // subject is its client.
        None if !rules.strict => match claims.get("client_id") {
            Some(Value::String(client)) if !client.is_empty() => client.clone(),
            _ => return Err(AuthError::MissingClaim("sub")),
        },
        None => return Err(AuthError::MissingClaim("sub")),
    };

    let scopes = scopes(claims, &rules.scope_claim)?;
    let tenant = optional_string(claims, &rules.tenant_claim)?;
    let client_id = match optional_string(claims, "client_id")? {
        Some(id) => Some(id),
        None => optional_string(claims, "azp")?,
    };
    let agent_type = optional_string(claims, "agent_type")?;
    let actors = actors(claims.get("act"), rules.max_delegation_depth)?;
    let token_id = optional_string(claims, "jti")?;

    let mut principal = Principal::new(
        sub,
        auth,
        Credential {
            token_id,
            expires_at: exp,
        },
    );
    principal.tenant = tenant;
    principal.client_id = client_id;
    principal.agent_type = agent_type;
    principal.scopes = scopes;
    principal.actors = actors;
    Ok(principal)
}

fn invalid(claim: &str, reason: &'static str) -> AuthError {
    AuthError::InvalidClaim {
        claim: claim.to_owned(),
        reason,
    }
}

/// A NumericDate: seconds, integer or not (RFC 7519 §2), not negative.
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    Some(f) if (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
                    _ => Err(invalid(name, "must be a non-negative number of seconds")),
                }
            }
        }
        Some(_) => Err(invalid(name, "must be a number")),
    }
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

/// `scope` (space-separated string) or `scp` (array, or string): with the
/// default claim name, `scp` is read when `scope` is absent.
fn scopes(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, AuthError> {
    let (name, value) = match claims.get(claim) {
        Some(v) => (claim, v),
        None if claim == "scope" => match claims.get("scp") {
            Some(v) => ("scp", v),
            None => return Ok(Vec::new()),
        },
        None => return Ok(Vec::new()),
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    match value {
        Value::String(s) => s.split(' ').for_each(&mut push),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) if !s.contains(' ') => push(s),
                    _ => {
                        return Err(invalid(
                            name,
                            "must be a space-separated string or an array of scope strings",
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(invalid(
                name,
                "must be a space-separated string or an array of scope strings",
            ));
        }
    }
    Ok(out)
}

/// RFC 8693 `act`: `{"sub": "agent", "act": {"sub": "…", …}}`, nearest
/// actor first. Longer than `max` is refused (and parsing stops there).
fn actors(act: Option<&Value>, max: usize) -> Result<Vec<String>, AuthError> {
    let mut out = Vec::new();
    let mut next = act;
    while let Some(value) = next {
        let Value::Object(obj) = value else {
            return Err(invalid("act", "must be an object with a \"sub\""));
        };
        let Some(Value::String(sub)) = obj.get("sub") else {
            return Err(invalid("act", "must be an object with a \"sub\""));
        };
        if sub.is_empty() {
            return Err(invalid("act", "must be an object with a \"sub\""));
        }
        out.push(sub.clone());
        if out.len() > max {
            // Count the rest for the message, without recursing.
            let mut depth = out.len();
            let mut rest = obj.get("act");
            while let Some(Value::Object(o)) = rest {
                depth += 1;
                rest = o.get("act");
            }
            return Err(AuthError::DelegationTooDeep { depth, max });
        }
        next = obj.get("act");
    }
    Ok(out)
}
