//! `RawConfig` → `Config`: the semantic checks (addresses, names,
//! duplicates, keys that depend on the transport, environment variables,
//! URLs, header names). Every problem is collected as (key path, message);
//! the caller places them in the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::check::{join_index, join_key};
use super::model::{
    AdminConfig, BackendConfig, BackendName, BackendTransport, Config, FailureMode, Isolation,
    LimitsConfig, ListenConfig, MultiplexConfig, ProtocolPreference, RecordConfig, ToolCuration,
};
use super::raw::{
    RawAdmin, RawBackend, RawConfig, RawFailureMode, RawIsolation, RawLimits, RawListen,
    RawMultiplex, RawTools, RawTransport,
};

/// Headers the gateway sets itself on backend requests.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-type",
    "host",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-session-id",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-version",
    "transfer-encoding",
    "upgrade",
];

pub(crate) struct Converter<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Paths the structural check has reported (and removed): a problem
    /// at such a path, or above one, is a consequence and not reported.
    pub reported: HashSet<String>,
    /// (key path, message)
    pub problems: Vec<(String, String)>,
}

impl Converter<'_> {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let consequence = self.reported.iter().any(|r| {
            r.strip_prefix(path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        });
        if !consequence {
            self.problems.push((path, message.into()));
        }
    }

    /// Builds the `Config`; it is only meaningful when no problem was
    /// recorded (fields with problems hold placeholders).
    pub fn config(&mut self, raw: RawConfig, source: &str) -> Config {
        let listen = self.listen(raw.listen);
        let auth = self.auth(raw.auth);
        let limits = self.limits(raw.limits);
        let admin = self.admin(raw.admin, &listen);
        let backends = self.backends(raw.backends);
        let multiplex = multiplex(raw.multiplex);
        let record = RecordConfig {
            dir: raw.record.dir.map(std::path::PathBuf::from),
            include_arguments: raw.record.include_arguments,
            group_window: Duration::from_secs(raw.record.group_window_s.max(1)),
            queue_messages: self
                .count("record.queue_messages", raw.record.queue_messages)
                .max(1),
        };
        let audit = self.audit(raw.audit);
        let tenants = self.tenants(raw.tenants, &backends);
        let telemetry = self.telemetry(raw.telemetry);
        let mut limits = limits;
        limits.rates.tenants = tenants
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.rate_limit?)))
            .collect();
        let policy = self.policy(raw.policy, source);
        let routes = self.routes(raw.routes, &backends);
        let state = self.state(raw.state);
        Config {
            source: source.to_owned(),
            listen,
            auth,
            limits,
            admin,
            backends,
            multiplex,
            record,
            audit,
            tenants,
            telemetry,
            policy,
            routes,
            state,
        }
    }

    fn socket_addr(&mut self, path: &str, text: &str, fallback: SocketAddr) -> SocketAddr {
        match text.parse() {
            Ok(addr) => addr,
            Err(_) => {
                let expected = "expected ip:port, e.g. \"127.0.0.1:8080\"";
                self.problem(
                    path,
                    format!("{text:?} is not a socket address ({expected})"),
                );
                fallback
            }
        }
    }

    fn listen(&mut self, raw: RawListen) -> ListenConfig {
        let unspecified = SocketAddr::from(([127, 0, 0, 1], 0));
        let addr = self.socket_addr("listen.addr", &raw.addr, unspecified);
        let admin_addr = self.socket_addr("listen.admin_addr", &raw.admin_addr, unspecified);
        if addr == admin_addr && addr.port() != 0 {
            self.problem(
                "listen.admin_addr",
                format!(
                    "{admin_addr} is also listen.addr; the admin listener needs its own address"
                ),
            );
        }
        let mut allowed_origins = Vec::with_capacity(raw.allowed_origins.len());
        for (i, origin) in raw.allowed_origins.into_iter().enumerate() {
            let path = join_index("listen.allowed_origins", i);
            match check_origin(&origin) {
                Ok(()) => allowed_origins.push(origin),
                Err(message) => self.problem(path, message),
            }
        }
        ListenConfig {
            addr,
            admin_addr,
            allowed_origins,
            sse_keepalive: Duration::from_secs(raw.sse_keepalive_s),
            ws_ping: Duration::from_secs(raw.ws_ping_s),
            drain: Duration::from_secs(raw.drain_s),
        }
    }

    pub(super) fn count(&mut self, path: &str, value: u64) -> usize {
        usize::try_from(value).unwrap_or_else(|_| {
            self.problem(path, format!("{value} is too large for this platform"));
            usize::MAX
        })
    }

    fn limits(&mut self, raw: RawLimits) -> LimitsConfig {
        LimitsConfig {
            max_body_bytes: self.count("limits.max_body_bytes", raw.max_body_bytes),
            max_message_bytes: self.count("limits.max_message_bytes", raw.max_message_bytes),
            max_sessions_per_principal: self.count(
                "limits.max_sessions_per_principal",
                raw.max_sessions_per_principal,
            ),
            max_in_flight_per_session: self.count(
                "limits.max_in_flight_per_session",
                raw.max_in_flight_per_session,
            ),
            max_queued_messages: self.count("limits.max_queued_messages", raw.max_queued_messages),
            session_idle: Duration::from_secs(raw.session_idle_s),
            rates: self.rate_limits(
                raw.per_principal,
                raw.per_agent,
                raw.max_in_flight_per_principal,
                raw.max_in_flight_per_backend,
                raw.max_rate_keys,
                raw.rules,
            ),
        }
    }

    fn admin(&mut self, raw: RawAdmin, listen: &ListenConfig) -> AdminConfig {
        let token = match raw.token_env {
            Some(name) => self.secret_env("admin.token_env", &name),
            None => {
                if !listen.admin_addr.ip().is_loopback() {
                    self.problem(
                        "listen.admin_addr",
                        format!(
                            "{} is not a loopback address, so admin.token_env is required",
                            listen.admin_addr
                        ),
                    );
                }
                None
            }
        };
        AdminConfig { token }
    }

    /// Resolves a `*_env` key: the value of the environment variable it
    /// names, which must be set and non-empty.
    pub(super) fn secret_env(&mut self, path: &str, name: &str) -> Option<String> {
        if name.is_empty() {
            self.problem(path, "must name an environment variable");
            return None;
        }
        match (self.env)(name) {
            Some(value) if !value.is_empty() => Some(value),
            Some(_) => {
                self.problem(path, format!("environment variable {name:?} is empty"));
                None
            }
            None => {
                self.problem(path, format!("environment variable {name:?} is not set"));
                None
            }
        }
    }

    fn backends(&mut self, raw: Vec<RawBackend>) -> Vec<BackendConfig> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut backends = Vec::with_capacity(raw.len());
        for (i, backend) in raw.into_iter().enumerate() {
            let path = join_index("backends", i);
            if let Some(name) = &backend.name {
                if let Some(first) = seen.get(name) {
                    self.problem(
                        join_key(&path, "name"),
                        format!(
                            "duplicate backend name {name:?} (first used by backends[{first}])"
                        ),
                    );
                } else {
                    seen.insert(name.clone(), i);
                }
            }
            if let Some(backend) = self.backend(&path, backend) {
                backends.push(backend);
            }
        }
        // With several backends the default route prefixes every name: a
        // renamed tool must still fit the tool-name rules with its prefix.
        if backends.len() > 1 {
            for (i, backend) in backends.iter().enumerate() {
                for (own, public) in &backend.tools.rename {
                    let prefixed = format!(
                        "{}{}{public}",
                        backend.name,
                        crate::router::PREFIX_SEPARATOR
                    );
                    if let Err(message) = crate::router::curation::check_tool_name(&prefixed) {
                        let path = join_key(
                            &join_key(&join_key(&join_index("backends", i), "tools"), "rename"),
                            own,
                        );
                        self.problem(path, message);
                    }
                }
            }
        }
        backends
    }

    /// `backends[].tools`: globs and names are checked here, so a typo is a
    /// startup error rather than a tool silently shown or hidden.
    fn tools(&mut self, path: &str, raw: RawTools) -> ToolCuration {
        let path = join_key(path, "tools");
        for (key, globs) in [("include", &raw.include), ("exclude", &raw.exclude)] {
            for (i, glob) in globs.iter().enumerate() {
                if glob.is_empty() {
                    self.problem(join_index(&join_key(&path, key), i), "must not be empty");
                }
            }
        }
        let mut targets: HashMap<&str, &str> = HashMap::new();
        for (own, public) in &raw.rename {
            let at = join_key(&join_key(&path, "rename"), own);
            if let Err(message) = crate::router::curation::check_tool_name(public) {
                self.problem(at.clone(), message);
            }
            if let Some(first) = targets.insert(public, own) {
                self.problem(
                    at,
                    format!("{first:?} is renamed to {public:?} too: public names must be unique"),
                );
            }
        }
        let mut pin = BTreeMap::new();
        for (tool, args) in raw.pin {
            let fixed: serde_json::Map<String, serde_json::Value> = args.into_iter().collect();
            if fixed.is_empty() {
                self.problem(join_key(&join_key(&path, "pin"), &tool), "pins no argument");
            }
            pin.insert(tool, fixed);
        }
        ToolCuration {
            include: raw.include,
            exclude: raw.exclude,
            rename: raw.rename,
            description: raw.description,
            pin,
        }
    }

    /// `None` when the backend cannot be built; the reason is recorded
    /// (by this or by the structural check for missing required keys).
    fn backend(&mut self, path: &str, raw: RawBackend) -> Option<BackendConfig> {
        let name = raw.name.as_deref().and_then(|name| {
            BackendName::new(name)
                .map_err(|message| self.problem(join_key(path, "name"), message))
                .ok()
        });
        let transport = match raw.transport? {
            RawTransport::Stdio => self.stdio(path, &raw),
            RawTransport::StreamableHttp => self.streamable_http(path, &raw),
            RawTransport::Sse => self.sse(path, &raw),
            RawTransport::Websocket => self.websocket(path, &raw),
        };
        let mint_token = self.mint_token(path, &raw);
        let required_scopes = self.scopes(&join_key(path, "required_scopes"), &raw.required_scopes);
        let protocol = match raw.protocol.revision() {
            None => ProtocolPreference::Auto,
            Some(revision) => ProtocolPreference::Fixed(revision.to_owned()),
        };
        let tools = self.tools(path, raw.tools);
        Some(BackendConfig {
            name: name?,
            transport: transport?,
            protocol,
            timeout: Duration::from_secs(raw.timeout_s),
            mint_token,
            required_scopes,
            tools,
        })
    }

    fn not_for(&mut self, path: &str, key: &str, present: bool, transport: &str) {
        if present {
            self.problem(
                join_key(path, key),
                format!("not allowed with transport = {transport:?}"),
            );
        }
    }

    fn only_for(&mut self, path: &str, key: &str, present: bool, transport: &str) {
        if present {
            self.problem(
                join_key(path, key),
                format!("only allowed with transport = {transport:?}"),
            );
        }
    }

    fn stdio(&mut self, path: &str, raw: &RawBackend) -> Option<BackendTransport> {
        self.not_for(path, "url", raw.url.is_some(), "stdio");
        self.not_for(path, "headers", raw.headers.is_some(), "stdio");
        self.only_for(path, "ping_s", raw.ping_s.is_some(), "websocket");
        let command = match &raw.command {
            None => {
                self.problem(
                    join_key(path, "command"),
                    "required with transport = \"stdio\"",
                );
                None
            }
            Some(command) if command.is_empty() => {
                self.problem(
                    join_key(path, "command"),
                    "must name a program (an empty array is not allowed)",
                );
                None
            }
            Some(command) if command.first().is_some_and(String::is_empty) => {
                self.problem(
                    join_index(&join_key(path, "command"), 0),
                    "the program must not be empty",
                );
                None
            }
            Some(command) => Some(command.clone()),
        };
        let mut env = BTreeMap::new();
        let mut env_ok = true;
        for (name, value) in raw.env.iter().flatten() {
            let key_path = join_key(&join_key(path, "env"), name);
            if name.is_empty() || name.contains(['=', '\0']) {
                self.problem(
                    key_path,
                    format!("{name:?} is not a valid environment variable name"),
                );
                env_ok = false;
            } else if value.contains('\0') {
                self.problem(key_path, "value must not contain NUL");
                env_ok = false;
            } else {
                env.insert(name.clone(), value.clone());
            }
        }
        let cwd = match &raw.cwd {
            Some(cwd) if cwd.is_empty() => {
                self.problem(join_key(path, "cwd"), "must not be empty");
                None
            }
            cwd => cwd.clone(),
        };
        let isolation = match raw.isolation {
            None | Some(RawIsolation::Session) => Isolation::Session,
            Some(RawIsolation::Principal) => Isolation::Principal,
            Some(RawIsolation::Shared) => Isolation::Shared,
        };
        let command = command?;
        env_ok.then_some(BackendTransport::Stdio {
            command,
            env,
            cwd,
            isolation,
        })
    }

    fn streamable_http(&mut self, path: &str, raw: &RawBackend) -> Option<BackendTransport> {
        let (url, headers) = self.remote(path, raw, "streamable_http", check_url);
        Some(BackendTransport::StreamableHttp {
            url: url?,
            headers: headers?,
        })
    }

    fn sse(&mut self, path: &str, raw: &RawBackend) -> Option<BackendTransport> {
        let (url, headers) = self.remote(path, raw, "sse", check_url);
        Some(BackendTransport::Sse {
            url: url?,
            headers: headers?,
        })
    }

    fn websocket(&mut self, path: &str, raw: &RawBackend) -> Option<BackendTransport> {
        let (url, headers) = self.remote(path, raw, "websocket", check_ws_url);
        // The structural check refuses 0 (schema minimum).
        let ping_s = raw.ping_s.unwrap_or(30).max(1);
        Some(BackendTransport::WebSocket {
            url: url?,
            headers: headers?,
            ping: Duration::from_secs(ping_s),
        })
    }

    /// The keys every transport that reaches a server by URL shares.
    fn remote(
        &mut self,
        path: &str,
        raw: &RawBackend,
        transport: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> (Option<String>, Option<Vec<(String, String)>>) {
        for (key, present) in [
            ("command", raw.command.is_some()),
            ("env", raw.env.is_some()),
            ("cwd", raw.cwd.is_some()),
            ("isolation", raw.isolation.is_some()),
        ] {
            self.only_for(path, key, present, "stdio");
        }
        if transport != "websocket" {
            self.only_for(path, "ping_s", raw.ping_s.is_some(), "websocket");
        }
        let url = match &raw.url {
            None => {
                self.problem(
                    join_key(path, "url"),
                    format!("required with transport = {transport:?}"),
                );
                None
            }
            Some(url) => match check(url) {
                Ok(()) => Some(url.clone()),
                Err(message) => {
                    self.problem(join_key(path, "url"), message);
                    None
                }
            },
        };
        let headers = self.headers(&join_key(path, "headers"), raw.headers.as_ref());
        (url, headers)
    }

    fn headers(
        &mut self,
        path: &str,
        raw: Option<&BTreeMap<String, String>>,
    ) -> Option<Vec<(String, String)>> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        for (name, value) in raw.into_iter().flatten() {
            let key_path = join_key(path, name);
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.problem(
                    key_path,
                    format!("{name:?} is not a valid HTTP header name"),
                );
                ok = false;
                continue;
            };
            let lower = header.as_str().to_owned();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                self.problem(
                    key_path,
                    format!("{lower:?} is set by the gateway and cannot be configured"),
                );
                ok = false;
                continue;
            }
            if headers.iter().any(|(seen, _)| *seen == lower) {
                self.problem(
                    key_path,
                    format!(
                        "header {lower:?} is given more than once (names are case-insensitive)"
                    ),
                );
                ok = false;
                continue;
            }
            let value = match interpolate(value, self.env) {
                Ok(value) => value,
                Err(messages) => {
                    for message in messages {
                        self.problem(key_path.clone(), message);
                    }
                    ok = false;
                    continue;
                }
            };
            // The value may hold a secret: never echo it.
            if http::HeaderValue::from_str(&value).is_err() {
                self.problem(
                    key_path,
                    "value is not a valid HTTP header value (control characters or non-ASCII)",
                );
                ok = false;
                continue;
            }
            headers.push((lower, value));
        }
        ok.then_some(headers)
    }
}

/// Replaces `${VAR}` by the value of the environment variable VAR; `$${`
/// is a literal `${`. Every unset variable is reported.
fn multiplex(raw: RawMultiplex) -> MultiplexConfig {
    MultiplexConfig {
        failure_mode: match raw.failure_mode {
            RawFailureMode::Partial => FailureMode::Partial,
            RawFailureMode::Strict => FailureMode::Strict,
        },
        catalog_ttl: Duration::from_secs(raw.catalog_ttl_s),
    }
}

pub(crate) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let (before, from_dollar) = rest.split_at(at);
        out.push_str(before);
        if let Some(after) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = from_dollar.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                problems
                    .push("unterminated \"${\" (write \"$${\" for a literal \"${\")".to_owned());
                rest = "";
                break;
            };
            let (name, after_brace) = after.split_at(end);
            rest = after_brace.get(1..).unwrap_or("");
            if !is_env_name(name) {
                problems.push(format!(
                    "{name:?} in \"${{…}}\" is not an environment variable name \
                     (A-Za-z0-9_, not starting with a digit)"
                ));
                continue;
            }
            match env(name) {
                Some(value) if !value.is_empty() => out.push_str(&value),
                Some(_) => problems.push(format!("environment variable {name:?} is empty")),
                None => problems.push(format!("environment variable {name:?} is not set")),
            }
        } else {
            out.push('$');
            rest = from_dollar.get(1..).unwrap_or("");
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A backend URL: `http://` or `https://` with a host.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!("{url:?} is not a valid URL")),
    }
}

/// A WebSocket backend URL: `ws://` or `wss://` with a host.
fn check_ws_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(format!("{url:?} must start with ws:// or wss://"));
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!("{url:?} is not a valid URL")),
    }
}

/// An `Origin` value: `scheme://host[:port]`, nothing after it.
fn check_origin(origin: &str) -> Result<(), String> {
    let shape = || format!("{origin:?} is not an origin (expected scheme://host[:port], no path)");
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(shape());
    };
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(shape());
    }
    match origin.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(shape()),
    }
}
