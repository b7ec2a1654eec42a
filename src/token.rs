//! `mcp-gateway token mint` and `token jwks`: development helpers to make
//! test tokens and the JWKS that verifies them.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use mcp_gateway::auth::mint::{SigningKey, act_claim, jwks as jwks_document, new_jti};
use mcp_gateway::auth::now_unix;

#[derive(Args)]
pub struct MintArgs {
    /// Subject (`sub`).
    #[arg(long)]
    sub: String,
    /// Issuer (`iss`); must equal the gateway's `auth.issuer`.
    #[arg(long)]
    iss: String,
    /// Audience (`aud`), repeatable; the gateway's `auth.audience`.
    #[arg(long = "aud", required = true)]
    aud: Vec<String>,
    /// Tenant (in the claim named by --tenant-claim).
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long, default_value = "tenant")]
    tenant_claim: String,
    /// A scope, repeatable (or several, space-separated).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Write scopes as an `scp` array instead of a `scope` string.
    #[arg(long)]
    scp: bool,
    /// An actor of the RFC 8693 `act` chain, repeatable, nearest first.
    #[arg(long = "act")]
    actors: Vec<String>,
    /// `client_id` claim.
    #[arg(long)]
    client_id: Option<String>,
    /// Token id (`jti`); default random. `--jti ""` leaves it out.
    #[arg(long)]
    jti: Option<String>,
    /// Lifetime in seconds from now (negative: already expired).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    ttl: i64,
    /// `nbf` as seconds from now (e.g. 600: not valid for ten minutes).
    #[arg(long, allow_negative_numbers = true)]
    nbf: Option<i64>,
    /// `iat` as seconds from now (default 0).
    #[arg(long, allow_negative_numbers = true)]
    iat: Option<i64>,
    /// Extra claim as KEY=JSON (a bare word is a string), repeatable.
    #[arg(long = "claim")]
    claims: Vec<String>,
    /// Key id (`kid` header); default the key's thumbprint (PEM keys).
    #[arg(long)]
    kid: Option<String>,
    /// PEM private key (PKCS#8 Ed25519, P-256, P-384 or RSA).
    #[arg(long, conflicts_with = "hs256_secret_env")]
    key: Option<PathBuf>,
    /// Algorithm for an RSA key (default RS256; PS256, RS384, … allowed).
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
    /// Environment variable holding an HS256 secret.
    #[arg(long)]
    hs256_secret_env: Option<String>,
}

#[derive(Args)]
pub struct JwksArgs {
    /// PEM private key, repeatable.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Key id for each key, in order (default: thumbprints).
    #[arg(long = "kid")]
    kids: Vec<String>,
    /// Algorithm for each key, in order (default: by key type; RSA: RS256).
    #[arg(long = "alg", value_parser = parse_alg)]
    algs: Vec<Algorithm>,
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    name.parse::<Algorithm>()
        .map_err(|_| format!("{name:?} is not a JWS algorithm this tool signs with"))
}

fn signing_key(args: &MintArgs) -> anyhow::Result<SigningKey> {
    match (&args.key, &args.hs256_secret_env) {
        (Some(path), None) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SigningKey::from_pem_with(&pem, args.kid.clone(), args.alg)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        (None, Some(var)) => {
            let secret = std::env::var(var)
                .with_context(|| format!("environment variable {var} is not set"))?;
            SigningKey::hs256(secret.as_bytes(), args.kid.clone()).map_err(anyhow::Error::msg)
        }
        _ => bail!("give --key FILE or --hs256-secret-env VAR"),
    }
}

fn offset(now: u64, seconds: i64) -> u64 {
    if seconds >= 0 {
        now.saturating_add(seconds.unsigned_abs())
    } else {
        now.saturating_sub(seconds.unsigned_abs())
    }
}

pub fn mint(args: &MintArgs) -> anyhow::Result<()> {
    let key = signing_key(args)?;
    let now = now_unix();
    let mut claims = Map::new();
    claims.insert("iss".into(), args.iss.clone().into());
    claims.insert("sub".into(), args.sub.clone().into());
    claims.insert(
        "aud".into(),
        match args.aud.as_slice() {
            [one] => one.clone().into(),
            many => many.to_vec().into(),
        },
    );
    claims.insert("iat".into(), offset(now, args.iat.unwrap_or(0)).into());
    claims.insert("exp".into(), offset(now, args.ttl).into());
    if let Some(nbf) = args.nbf {
        claims.insert("nbf".into(), offset(now, nbf).into());
    }
    match args.jti.as_deref() {
        Some("") => {}
        Some(jti) => {
            claims.insert("jti".into(), jti.into());
        }
        None => {
            claims.insert("jti".into(), new_jti().into());
        }
    }
    if let Some(tenant) = &args.tenant {
        claims.insert(args.tenant_claim.clone(), tenant.clone().into());
    }
    let scopes: Vec<&str> = args
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .collect();
    if !scopes.is_empty() {
        if args.scp {
            claims.insert("scp".into(), scopes.into());
        } else {
            claims.insert("scope".into(), scopes.join(" ").into());
        }
    }
    if let Some(act) = act_claim(&args.actors) {
        claims.insert("act".into(), act);
    }
    if let Some(client) = &args.client_id {
        claims.insert("client_id".into(), client.clone().into());
    }
    for claim in &args.claims {
        let (name, value) = claim
            .split_once('=')
            .with_context(|| format!("--claim {claim:?}: expected KEY=JSON"))?;
        let value: Value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        claims.insert(name.to_owned(), value);
    }
    let token = key.sign(&claims).map_err(anyhow::Error::msg)?;
    println!("{token}");
    Ok(())
}

pub fn jwks(args: &JwksArgs) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for (i, path) in args.keys.iter().enumerate() {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key =
            SigningKey::from_pem_with(&pem, args.kids.get(i).cloned(), args.algs.get(i).copied())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        keys.push(key);
    }
    println!("{}", serde_json::to_string_pretty(&jwks_document(&keys))?);
    Ok(())
}
