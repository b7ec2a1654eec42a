use std::path::Path;
use std::time::Duration;

use super::*;

/// The environment the tests load with.
fn env(name: &str) -> Option<String> {
    match name {
        "GW_ADMIN_TOKEN" => Some("s3cret".into()),
        "BACKEND_TOKEN" => Some("t0ken".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Loads `toml` as `gw.toml` and compares the reported problems, one
/// `file:line:col: key.path: message` string each, with `expected`.
#[track_caller]
fn check(toml: &str, expected: &[&str]) {
    let got: Vec<String> = match load_str(toml, "gw.toml", &env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(got, expected, "config:\n{toml}");
}

#[track_caller]
fn load(toml: &str) -> Config {
    match load_str(toml, "gw.toml", &env) {
        Ok(config) => config,
        Err(errors) => panic!("config:\n{toml}\nerrors:\n{errors}"),
    }
}

const STDIO: &str = "[[backends]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = [\"srv\"]\n";
const HTTP: &str = "[[backends]]\nname = \"h\"\ntransport = \"streamable_http\"\nurl = \"https://h.example/mcp\"\n";

#[test]
fn valid() {
    check("", &[]);
    check(STDIO, &[]);
    check(HTTP, &[]);
    check(&format!("{STDIO}{HTTP}"), &[]);
    check(
        "[listen]\naddr = \"[::1]:0\"\nadmin_addr = \"127.0.0.1:0\"\n",
        &[],
    );
    check(
        "[listen]\nallowed_origins = [\"http://localhost:6274\", \"https://app.example\"]\n",
        &[],
    );
    check(
        "[admin]\ntoken_env = \"GW_ADMIN_TOKEN\"\n[listen]\nadmin_addr = \"0.0.0.0:9090\"\n",
        &[],
    );
    check("[listen]\ndrain_s = 0\n", &[]);
    check("[auth]\nmode = \"none\"\n", &[]);
    check("listen.addr = \"127.0.0.1:1\"\n", &[]);
    check(
        "backends = [{ name = \"a\", transport = \"stdio\", command = [\"x\"] }]\n",
        &[],
    );
}

#[test]
fn defaults() {
    let cfg = load("");
    assert_eq!(cfg.source, "gw.toml");
    assert_eq!(cfg.listen.addr.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.listen.admin_addr.to_string(), "127.0.0.1:9090");
    assert!(cfg.listen.allowed_origins.is_empty());
    assert_eq!(cfg.listen.sse_keepalive, Duration::from_secs(15));
    assert_eq!(cfg.listen.ws_ping, Duration::from_secs(30));
    assert_eq!(cfg.listen.drain, Duration::from_secs(10));
    assert_eq!(cfg.auth.mode, AuthMode::None);
    assert_eq!(cfg.limits.max_body_bytes, 4_194_304);
    assert_eq!(cfg.limits.max_sessions_per_principal, 64);
    assert_eq!(cfg.limits.max_in_flight_per_session, 64);
    assert_eq!(cfg.limits.max_queued_messages, 1024);
    assert_eq!(cfg.limits.max_message_bytes, cfg.limits.max_body_bytes);
    assert_eq!(cfg.limits.session_idle, Duration::from_secs(1800));
    assert_eq!(cfg.admin.token, None);
    assert!(cfg.backends.is_empty());

    let cfg = load(STDIO);
    let [backend] = cfg.backends.as_slice() else {
        panic!("one backend expected");
    };
    assert_eq!(backend.name.as_str(), "a");
    assert_eq!(backend.protocol, ProtocolPreference::Auto);
    assert_eq!(backend.timeout, Duration::from_secs(30));
    let BackendTransport::Stdio {
        command,
        env,
        cwd,
        isolation,
    } = &backend.transport
    else {
        panic!("stdio expected");
    };
    assert_eq!(command, &["srv"]);
    assert!(env.is_empty());
    assert_eq!(cwd, &None);
    assert_eq!(*isolation, Isolation::Session);
}

#[test]
fn values() {
    let cfg = load(
        "[admin]\ntoken_env = \"GW_ADMIN_TOKEN\"\n[limits]\nmax_body_bytes = 0x10\nsession_idle_s = 1_000\n\
         [[backends]]\nname = \"x-1\"\ntransport = \"stdio\"\ncommand = [\"a\", \"b\"]\nenv = { K = \"v\" }\n\
         cwd = \"/tmp\"\nisolation = \"shared\"\nprotocol = \"2025-06-18\"\ntimeout_s = 5\n\
         [[backends]]\nname = \"h\"\ntransport = \"streamable_http\"\nurl = \"http://h:1/mcp\"\n\
         headers = { Authorization = \"Bearer ${BACKEND_TOKEN}\", X-Lit = \"a$${B}$c\" }\n",
    );
    assert_eq!(cfg.admin.token.as_deref(), Some("s3cret"));
    assert_eq!(cfg.limits.max_body_bytes, 16);
    assert_eq!(cfg.limits.session_idle, Duration::from_secs(1000));
    let [stdio, http] = cfg.backends.as_slice() else {
        panic!("two backends expected");
    };
    assert_eq!(
        stdio.protocol,
        ProtocolPreference::Fixed("2025-06-18".into())
    );
    assert_eq!(stdio.timeout, Duration::from_secs(5));
    let BackendTransport::Stdio {
        env,
        cwd,
        isolation,
        ..
    } = &stdio.transport
    else {
        panic!("stdio expected");
    };
    assert_eq!(env.get("K").map(String::as_str), Some("v"));
    assert_eq!(cwd.as_deref(), Some("/tmp"));
    assert_eq!(*isolation, Isolation::Shared);
    let BackendTransport::StreamableHttp { url, headers } = &http.transport else {
        panic!("http expected");
    };
    assert_eq!(url, "http://h:1/mcp");
    assert_eq!(
        headers,
        &[
            ("authorization".to_owned(), "Bearer t0ken".to_owned()),
            ("x-lit".to_owned(), "a${B}$c".to_owned()),
        ]
    );
}

#[test]
fn quickstart_loads() {
    let cfg = quickstart("/opt/mcp gateway/bin/mcp-gateway");
    assert_eq!(cfg.source, "<quickstart>");
    assert_eq!(cfg.listen.addr.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.listen.admin_addr.to_string(), "127.0.0.1:9090");
    assert_eq!(cfg.auth.mode, AuthMode::None);
    assert_eq!(cfg.admin.token, None);
    let [demo] = cfg.backends.as_slice() else {
        panic!("one backend expected");
    };
    assert_eq!(demo.name.as_str(), "demo");
    assert_eq!(demo.protocol, ProtocolPreference::Auto);
    let BackendTransport::Stdio {
        command, isolation, ..
    } = &demo.transport
    else {
        panic!("stdio expected");
    };
    assert_eq!(
        command,
        &["/opt/mcp gateway/bin/mcp-gateway", "demo-server"]
    );
    assert_eq!(*isolation, Isolation::Session);
}

#[test]
fn quickstart_escapes_the_exe_path() {
    for exe in [
        r#"C:\Program Files\"gw"\mcp-gateway.exe"#,
        "/tmp/it's\n\t\u{7f}\u{1}/gw",
        "'''\"\"\"",
        "",
    ] {
        let cfg = quickstart(exe);
        let Some(BackendTransport::Stdio { command, .. }) =
            cfg.backends.first().map(|b| &b.transport)
        else {
            panic!("stdio expected");
        };
        let want = if exe.is_empty() { "mcp-gateway" } else { exe };
        assert_eq!(command, &[want, "demo-server"]);
    }
}

#[test]
fn syntax_error_reported_once() {
    check(
        "[listen]\naddr = \n",
        &["gw.toml:2:8: string values must be quoted, expected literal string"],
    );
    check("a = 1\na = 2\n", &["gw.toml:2:1: duplicate key"]);
}

#[test]
fn unknown_keys() {
    check(
        "foo = 1\n",
        &[
            "gw.toml:1:1: foo: unknown key (expected one of: admin, audit, auth, backends, limits, listen, multiplex, policy, record, routes, state, telemetry, tenants)",
        ],
    );
    check(
        "[listn]\naddr = \"x\"\n",
        &["gw.toml:1:2: listn: unknown key (did you mean \"listen\"?)"],
    );
    check(
        "[listen]\nadr = \"x\"\n",
        &["gw.toml:2:1: listen.adr: unknown key (did you mean \"addr\"?)"],
    );
    check(
        &format!("{STDIO}comand = [\"y\"]\n"),
        &["gw.toml:5:1: backends[0].comand: unknown key (did you mean \"command\"?)"],
    );
    check(
        &format!("{STDIO}{HTTP}  credentials = {{ audience = \"x\" }}\n"),
        &[
            "gw.toml:9:3: backends[1].credentials: unknown key (expected one of: command, cwd, env, headers, isolation, mint_token, name, ping_s, protocol, required_scopes, timeout_s, tools, transport, url)",
        ],
    );
    check(
        "[polic]\nfiles = []\n",
        &["gw.toml:1:2: polic: unknown key (did you mean \"policy\"?)"],
    );
    check(
        "[limits.quota]\nper_second = 1\n",
        &[
            "gw.toml:1:9: limits.quota: unknown key (expected one of: max_body_bytes, max_in_flight_per_backend, max_in_flight_per_principal, max_in_flight_per_session, max_message_bytes, max_queued_messages, max_rate_keys, max_sessions_per_principal, per_agent, per_principal, rules, session_idle_s)",
        ],
    );
}

#[test]
fn wrong_types() {
    check(
        "[listen]\naddr = 8080\n",
        &["gw.toml:2:8: listen.addr: expected a string, found integer 8080"],
    );
    check(
        "listen = 1\n",
        &["gw.toml:1:10: listen: expected a table, found integer 1"],
    );
    check(
        "[listen]\nallowed_origins = \"http://x\"\n",
        &["gw.toml:2:19: listen.allowed_origins: expected an array, found \"http://x\""],
    );
    check(
        "[listen]\nallowed_origins = [\"http://x\", 1]\n",
        &["gw.toml:2:32: listen.allowed_origins[1]: expected a string, found integer 1"],
    );
    check(
        "[limits]\nmax_body_bytes = 1.5\n",
        &["gw.toml:2:18: limits.max_body_bytes: expected an integer, found float 1.5"],
    );
    check(
        "[limits]\nmax_body_bytes = \"1\"\n",
        &["gw.toml:2:18: limits.max_body_bytes: expected an integer, found \"1\""],
    );
    check(
        "[listen]\ndrain_s = 1979-05-27\n",
        &["gw.toml:2:11: listen.drain_s: expected an integer, found datetime 1979-05-27"],
    );
    check(
        &format!("{STDIO}env = {{ A = 1 }}\n"),
        &["gw.toml:5:13: backends[0].env.A: expected a string, found integer 1"],
    );
    check(
        &format!("{STDIO}command = \"srv --stdio\"\n").replace("command = [\"srv\"]\n", ""),
        &["gw.toml:4:11: backends[0].command: expected an array, found \"srv --stdio\""],
    );
    check(
        "backends = [1]\n",
        &["gw.toml:1:13: backends[0]: expected a table, found integer 1"],
    );
    check(
        "[backends]\nname = \"a\"\n",
        &["gw.toml:1:1: backends: expected an array, found a table"],
    );
}

#[test]
fn bad_values() {
    check(
        "[auth]\nmode = \"oauth\"\n",
        &[
            "gw.toml:2:8: auth.mode: expected one of \"none\", \"jwt\", \"introspection\", found \"oauth\"",
        ],
    );
    check(
        "[[backends]]\nname = \"a\"\ntransport = \"grpc\"\n",
        &[
            "gw.toml:3:13: backends[0].transport: expected one of \"stdio\", \"streamable_http\", \"sse\", \"websocket\", found \"grpc\"",
        ],
    );
    check(
        &format!("{STDIO}isolation = \"none\"\n"),
        &[
            "gw.toml:5:13: backends[0].isolation: expected one of \"session\", \"principal\", \"shared\", found \"none\"",
        ],
    );
    check(
        &format!("{STDIO}protocol = \"2025-01-01\"\n"),
        &[
            "gw.toml:5:12: backends[0].protocol: expected one of \"auto\", \"2024-11-05\", \"2025-03-26\", \"2025-06-18\", \"2025-11-25\", \"2026-07-28\", found \"2025-01-01\"",
        ],
    );
    check(
        &format!("{STDIO}timeout_s = 0\n"),
        &["gw.toml:5:13: backends[0].timeout_s: must be at least 1, found 0"],
    );
    check(
        "[listen]\nsse_keepalive_s = 0\n",
        &["gw.toml:2:19: listen.sse_keepalive_s: must be at least 1, found 0"],
    );
    check(
        "[listen]\ndrain_s = -1\n",
        &["gw.toml:2:11: listen.drain_s: must be at least 0, found -1"],
    );
    check(
        "[limits]\nmax_body_bytes = 99999999999999999999\n",
        &[
            "gw.toml:2:18: limits.max_body_bytes: must be at most 18446744073709551615, found 99999999999999999999",
        ],
    );
    check(
        "[[backends]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = [1]\n",
        &["gw.toml:4:12: backends[0].command[0]: expected a string, found integer 1"],
    );
    check(
        "[limits]\nmax_queued_messages = 0\n",
        &["gw.toml:2:23: limits.max_queued_messages: must be at least 1, found 0"],
    );
    check(
        "[listen]\naddr = \"localhost:80\"\n",
        &[
            "gw.toml:2:8: listen.addr: \"localhost:80\" is not a socket address (expected ip:port, e.g. \"127.0.0.1:8080\")",
        ],
    );
    check(
        "[listen]\naddr = \"127.0.0.1:1\"\nadmin_addr = \"127.0.0.1:1\"\n",
        &[
            "gw.toml:3:14: listen.admin_addr: 127.0.0.1:1 is also listen.addr; the admin listener needs its own address",
        ],
    );
    check(
        "[listen]\nallowed_origins = [\"http://x/\", \"localhost\"]\n",
        &[
            "gw.toml:2:20: listen.allowed_origins[0]: \"http://x/\" is not an origin (expected scheme://host[:port], no path)",
            "gw.toml:2:33: listen.allowed_origins[1]: \"localhost\" is not an origin (expected scheme://host[:port], no path)",
        ],
    );
}

#[test]
fn backend_names() {
    check(
        "[[backends]]\nname = \"git hub\"\ntransport = \"stdio\"\ncommand = [\"x\"]\n",
        &["gw.toml:2:8: backends[0].name: \"git hub\" may only use A-Za-z0-9_-"],
    );
    check(
        "[[backends]]\nname = \"\"\ntransport = \"stdio\"\ncommand = [\"x\"]\n",
        &["gw.toml:2:8: backends[0].name: must not be empty"],
    );
    check(
        &format!("{STDIO}{STDIO}"),
        &[
            "gw.toml:6:8: backends[1].name: duplicate backend name \"a\" (first used by backends[0])",
        ],
    );
    check(
        "[[backends]]\ntransport = \"stdio\"\ncommand = [\"x\"]\n",
        &["gw.toml:1:1: backends[0].name: required key is missing"],
    );
    check(
        "[[backends]]\nname = \"a\"\n",
        &["gw.toml:1:1: backends[0].transport: required key is missing"],
    );
    check(
        "[[backends]]\nname = 7\ntransport = \"stdio\"\ncommand = [\"x\"]\n",
        &["gw.toml:2:8: backends[0].name: expected a string, found integer 7"],
    );
}

#[test]
fn env_vars() {
    check(
        "[admin]\ntoken_env = \"GW_MISSING\"\n",
        &["gw.toml:2:13: admin.token_env: environment variable \"GW_MISSING\" is not set"],
    );
    check(
        "[admin]\ntoken_env = \"EMPTY\"\n",
        &["gw.toml:2:13: admin.token_env: environment variable \"EMPTY\" is empty"],
    );
    check(
        "[admin]\ntoken_env = \"\"\n",
        &["gw.toml:2:13: admin.token_env: must name an environment variable"],
    );
    check(
        &format!("{HTTP}headers = {{ authorization = \"Bearer ${{NOPE}} ${{EMPTY}}\" }}\n"),
        &[
            "gw.toml:5:29: backends[0].headers.authorization: environment variable \"NOPE\" is not set",
            "gw.toml:5:29: backends[0].headers.authorization: environment variable \"EMPTY\" is empty",
        ],
    );
    check(
        &format!("{HTTP}[backends.headers]\nx-a = \"${{1X}}\"\nx-b = \"${{OPEN\"\n"),
        &[
            "gw.toml:6:7: backends[0].headers.x-a: \"1X\" in \"${…}\" is not an environment variable name (A-Za-z0-9_, not starting with a digit)",
            "gw.toml:7:7: backends[0].headers.x-b: unterminated \"${\" (write \"$${\" for a literal \"${\")",
        ],
    );
}

#[test]
fn admin_needs_a_token_off_loopback() {
    check(
        "[listen]\nadmin_addr = \"0.0.0.0:9090\"\n",
        &[
            "gw.toml:2:14: listen.admin_addr: 0.0.0.0:9090 is not a loopback address, so admin.token_env is required",
        ],
    );
}

#[test]
fn transport_specific_keys() {
    check(
        &format!("{HTTP}command = [\"x\"]\nenv = {{}}\ncwd = \"/\"\nisolation = \"shared\"\n"),
        &[
            "gw.toml:5:11: backends[0].command: only allowed with transport = \"stdio\"",
            "gw.toml:6:7: backends[0].env: only allowed with transport = \"stdio\"",
            "gw.toml:7:7: backends[0].cwd: only allowed with transport = \"stdio\"",
            "gw.toml:8:13: backends[0].isolation: only allowed with transport = \"stdio\"",
        ],
    );
    check(
        &format!("{STDIO}url = \"http://x\"\nheaders = {{ a = \"b\" }}\n"),
        &[
            "gw.toml:5:7: backends[0].url: not allowed with transport = \"stdio\"",
            "gw.toml:6:11: backends[0].headers: not allowed with transport = \"stdio\"",
        ],
    );
    check(
        "[[backends]]\nname = \"a\"\ntransport = \"stdio\"\n",
        &["gw.toml:1:1: backends[0].command: required with transport = \"stdio\""],
    );
    check(
        "[[backends]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = []\n",
        &["gw.toml:4:11: backends[0].command: must name a program (an empty array is not allowed)"],
    );
    check(
        "[[backends]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = [\"\"]\n",
        &["gw.toml:4:12: backends[0].command[0]: the program must not be empty"],
    );
    check(
        "[[backends]]\nname = \"h\"\ntransport = \"streamable_http\"\n",
        &["gw.toml:1:1: backends[0].url: required with transport = \"streamable_http\""],
    );
    check(
        "[[backends]]\nname = \"s\"\ntransport = \"sse\"\n",
        &["gw.toml:1:1: backends[0].url: required with transport = \"sse\""],
    );
    check(
        "[[backends]]\nname = \"w\"\ntransport = \"websocket\"\ncommand = [\"x\"]\n",
        &[
            "gw.toml:1:1: backends[0].url: required with transport = \"websocket\"",
            "gw.toml:4:11: backends[0].command: only allowed with transport = \"stdio\"",
        ],
    );
    check(
        &format!("{STDIO}ping_s = 5\n"),
        &["gw.toml:5:10: backends[0].ping_s: only allowed with transport = \"websocket\""],
    );
    check(
        &format!("{HTTP}ping_s = 5\n"),
        &["gw.toml:5:10: backends[0].ping_s: only allowed with transport = \"websocket\""],
    );
}

#[test]
fn sse_and_websocket_backends() {
    let cfg = load(
        "[[backends]]\nname = \"s\"\ntransport = \"sse\"\nurl = \"http://127.0.0.1:3001/sse\"\n\
         headers = { X-Key = \"${BACKEND_TOKEN}\" }\n\
         [[backends]]\nname = \"w\"\ntransport = \"websocket\"\nurl = \"wss://h.example/ws\"\n\
         headers = { Authorization = \"Bearer ${BACKEND_TOKEN}\" }\nping_s = 5\n\
         [[backends]]\nname = \"d\"\ntransport = \"websocket\"\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let [sse, ws, default_ping] = cfg.backends.as_slice() else {
        panic!("three backends expected");
    };
    let BackendTransport::Sse { url, headers } = &sse.transport else {
        panic!("sse expected");
    };
    assert_eq!(url, "http://127.0.0.1:3001/sse");
    assert_eq!(headers, &[("x-key".to_owned(), "t0ken".to_owned())]);
    let BackendTransport::WebSocket { url, headers, ping } = &ws.transport else {
        panic!("websocket expected");
    };
    assert_eq!(url, "wss://h.example/ws");
    assert_eq!(
        headers,
        &[("authorization".to_owned(), "Bearer t0ken".to_owned())]
    );
    assert_eq!(*ping, Duration::from_secs(5));
    let BackendTransport::WebSocket { ping, .. } = &default_ping.transport else {
        panic!("websocket expected");
    };
    assert_eq!(*ping, Duration::from_secs(30));

    let ws = "[[backends]]\nname = \"w\"\ntransport = \"websocket\"\n";
    check(
        &format!("{ws}url = \"http://h/ws\"\n"),
        &["gw.toml:4:7: backends[0].url: \"http://h/ws\" must start with ws:// or wss://"],
    );
    check(
        &format!("{ws}url = \"ws://h/\"\nping_s = 0\n"),
        &["gw.toml:5:10: backends[0].ping_s: must be at least 1, found 0"],
    );
    check(
        &format!("{ws}url = \"ws://h/\"\nheaders = {{ Sec-WebSocket-Protocol = \"x\" }}\n"),
        &[
            "gw.toml:5:38: backends[0].headers.Sec-WebSocket-Protocol: \"sec-websocket-protocol\" is set by the gateway and cannot be configured",
        ],
    );
    check(
        "[[backends]]\nname = \"s\"\ntransport = \"sse\"\nurl = \"ws://h/sse\"\n",
        &["gw.toml:4:7: backends[0].url: \"ws://h/sse\" must start with http:// or https://"],
    );
}

#[test]
fn urls_and_headers() {
    let backend = "[[backends]]\nname = \"h\"\ntransport = \"streamable_http\"\n";
    check(
        &format!("{backend}url = \"ftp://h/mcp\"\n"),
        &["gw.toml:4:7: backends[0].url: \"ftp://h/mcp\" must start with http:// or https://"],
    );
    check(
        &format!("{backend}url = \"h.example/mcp\"\n"),
        &["gw.toml:4:7: backends[0].url: \"h.example/mcp\" must start with http:// or https://"],
    );
    check(
        &format!("{backend}url = \"http://\"\n"),
        &["gw.toml:4:7: backends[0].url: \"http://\" is not a valid URL"],
    );
    check(
        &format!(
            "{HTTP}headers = {{ \"bad name\" = \"x\", Mcp-Session-Id = \"y\", z = \"a\\nb\" }}\n"
        ),
        &[
            "gw.toml:5:26: backends[0].headers.\"bad name\": \"bad name\" is not a valid HTTP header name",
            "gw.toml:5:48: backends[0].headers.Mcp-Session-Id: \"mcp-session-id\" is set by the gateway and cannot be configured",
            "gw.toml:5:57: backends[0].headers.z: value is not a valid HTTP header value (control characters or non-ASCII)",
        ],
    );
    check(
        &format!("{HTTP}headers = {{ X-A = \"1\", x-a = \"2\" }}\n"),
        &[
            "gw.toml:5:30: backends[0].headers.x-a: header \"x-a\" is given more than once (names are case-insensitive)",
        ],
    );
}

#[test]
fn every_problem_at_once() {
    check(
        "\
[listen]
addr = 8080
admin_adr = \"x\"

[admin]
token_env = \"GW_MISSING\"

[[backends]]
name = \"git hub\"
transport = \"stdio\"
command = [\"x\"]
url = \"http://x\"

[[backends]]
name = \"remote\"
transport = \"streamable_http\"
url = \"ftp://remote\"
headers = { authorization = \"Bearer ${NOPE}\" }
timeout_s = 0
extra = true
",
        &[
            "gw.toml:2:8: listen.addr: expected a string, found integer 8080",
            "gw.toml:3:1: listen.admin_adr: unknown key (did you mean \"admin_addr\"?)",
            "gw.toml:6:13: admin.token_env: environment variable \"GW_MISSING\" is not set",
            "gw.toml:9:8: backends[0].name: \"git hub\" may only use A-Za-z0-9_-",
            "gw.toml:12:7: backends[0].url: not allowed with transport = \"stdio\"",
            "gw.toml:17:7: backends[1].url: \"ftp://remote\" must start with http:// or https://",
            "gw.toml:18:29: backends[1].headers.authorization: environment variable \"NOPE\" is not set",
            "gw.toml:19:13: backends[1].timeout_s: must be at least 1, found 0",
            "gw.toml:20:1: backends[1].extra: unknown key (expected one of: command, cwd, env, headers, isolation, mint_token, name, ping_s, protocol, required_scopes, timeout_s, tools, transport, url)",
        ],
    );
}

#[test]
fn non_table_items_keep_indices() {
    check(
        "backends = [1, { name = \"a b\", transport = \"stdio\", command = [\"x\"] }]\n",
        &[
            "gw.toml:1:13: backends[0]: expected a table, found integer 1",
            "gw.toml:1:25: backends[1].name: \"a b\" may only use A-Za-z0-9_-",
        ],
    );
}

#[test]
fn columns_count_characters() {
    check(
        "# é\n[listen]\n\"ü\" = 1\n",
        &[
            "gw.toml:3:1: listen.\"ü\": unknown key (expected one of: addr, admin_addr, allowed_origins, drain_s, sse_keepalive_s, ws_ping_s)",
        ],
    );
    check(
        "[listen]\naddr = \"é\" \n drain_s = \"x\"\n",
        &[
            "gw.toml:2:8: listen.addr: \"é\" is not a socket address (expected ip:port, e.g. \"127.0.0.1:8080\")",
            "gw.toml:3:12: listen.drain_s: expected an integer, found \"x\"",
        ],
    );
}

#[test]
fn errors_display() {
    let Err(errors) = load_str("a = 1\nb = 2\n", "x.toml", &env) else {
        panic!("errors expected");
    };
    assert_eq!(
        errors.to_string(),
        "x.toml:1:1: a: unknown key (expected one of: admin, audit, auth, backends, limits, listen, multiplex, policy, record, routes, state, telemetry, tenants)\n\
         x.toml:2:1: b: unknown key (expected one of: admin, audit, auth, backends, limits, listen, multiplex, policy, record, routes, state, telemetry, tenants)"
    );
    let Err(errors) = load_file(Path::new("/nonexistent/gw.toml")) else {
        panic!("errors expected");
    };
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/gw.toml: cannot read the configuration: "),
        "{errors}"
    );
}

#[test]
fn summary_lists_everything() {
    let cfg = load(&format!("{STDIO}{HTTP}"));
    assert_eq!(
        summary(&cfg),
        "config: gw.toml\n\
         listen: 127.0.0.1:8080 (origins: loopback only)\n\
         admin: 127.0.0.1:9090 (no token)\n\
         auth: none (every client is anonymous)\n\
         backends: 2\n  \
         a: stdio `srv`, isolation session, protocol auto, timeout 30s\n  \
         h: streamable_http https://h.example/mcp, protocol auto, timeout 30s\n\
         tenants: 0\n\
         routes: 0\n"
    );
    let cfg = quickstart("/opt/my gw/mcp-gateway");
    assert!(
        summary(&cfg)
            .contains("  demo: stdio `\"/opt/my gw/mcp-gateway\" demo-server`, isolation session"),
        "{}",
        summary(&cfg)
    );
}

/// `schemas/config.schema.json` is generated from the raw types; run
/// `UPDATE_SCHEMAS=1 cargo test --lib config` after changing them.
#[test]
fn schema_file_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/config.schema.json");
    let want = match serde_json::to_string_pretty(&json_schema()) {
        Ok(text) => text + "\n",
        Err(error) => panic!("cannot serialize the schema: {error}"),
    };
    if std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run `UPDATE_SCHEMAS=1 cargo test --lib config` and review the diff",
        path.display()
    );
}

/// Every key the schema knows is in the example, and the example loads.
#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-gateway.example.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let example_env = |name: &str| match name {
        "GW_ADMIN_TOKEN" => Some("admin-secret".to_owned()),
        "BACKEND_TOKEN" => Some("backend-secret".to_owned()),
        _ => None,
    };
    if let Err(errors) = load_str(&text, "mcp-gateway.example.toml", &example_env) {
        panic!("{errors}");
    }
    // Every key appears, set or commented out: the example documents them all.
    let schema = json_schema();
    for (section, key) in schema_keys(&schema) {
        let shown = text.lines().any(|line| {
            line.trim_start_matches(['#', ' '])
                .starts_with(&format!("{key} ="))
        });
        assert!(shown, "the example does not show {section}.{key}");
    }
}

/// (section, key) for every key of every table the schema describes.
fn schema_keys(schema: &serde_json::Value) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let defs = schema.get("$defs").and_then(|d| d.as_object());
    for (name, def) in defs.into_iter().flatten() {
        let properties = def.get("properties").and_then(|p| p.as_object());
        for key in properties.into_iter().flatten().map(|(k, _)| k) {
            keys.push((name.clone(), key.clone()));
        }
    }
    keys
}

const JWT: &str = "[auth]\nmode = \"jwt\"\nissuer = \"https://idp.example\"\naudience = \"https://gw.example/mcp\"\n";

#[test]
fn auth_settings() {
    check(JWT, &[]);
    check(
        "[auth]\nmode = \"jwt\"\n",
        &[
            "gw.toml:1:1: auth: auth.issuer is required with auth.mode = \"jwt\"",
            "gw.toml:1:1: auth: auth.audience is required with auth.mode = \"jwt\": the resource this gateway is (tokens for other audiences are refused)",
        ],
    );
    // A half-configured [auth] must not leave the gateway open.
    check(
        "[auth]\nissuer = \"https://idp.example\"\njwks_uri = \"https://idp.example/jwks\"\n",
        &[
            "gw.toml:2:10: auth.issuer: has no effect with auth.mode = \"none\"",
            "gw.toml:3:12: auth.jwks_uri: has no effect with auth.mode = \"none\"",
        ],
    );
    check(
        &format!("{JWT}algorithms = [\"RS256\", \"HS256\"]\n"),
        &["gw.toml:5:24: auth.algorithms[1]: \"HS256\" needs auth.hs256_secret_env"],
    );
    check(
        &format!("{JWT}algorithms = [\"none\"]\n"),
        &[
            "gw.toml:5:15: auth.algorithms[0]: expected one of \"RS256\", \"RS384\", \"RS512\", \"PS256\", \"PS384\", \"PS512\", \"ES256\", \"ES384\", \"EdDSA\", \"HS256\", found \"none\"",
        ],
    );
    check(
        &format!("{JWT}hs256_secret_env = \"BACKEND_TOKEN\"\n"),
        &["gw.toml:5:20: auth.hs256_secret_env: the HS256 secret must be at least 32 bytes long"],
    );
    check(
        &format!("{JWT}jwks_uri = \"ftp://x\"\njwks_file = \"/nonexistent/jwks.json\"\n"),
        &["gw.toml:6:13: auth.jwks_file: give jwks_file or jwks_uri, not both"],
    );
    check(
        &format!("{JWT}jwks_file = \"/nonexistent/jwks.json\"\n"),
        &[
            "gw.toml:5:13: auth.jwks_file: cannot read \"/nonexistent/jwks.json\": No such file or directory (os error 2)",
        ],
    );
    check(
        "[auth]\nmode = \"introspection\"\naudience = \"https://gw\"\n",
        &[
            "gw.toml:1:1: auth: auth.introspection_url (or auth.issuer, for discovery) is required with auth.mode = \"introspection\"",
            "gw.toml:1:1: auth: auth.client_id is required with auth.mode = \"introspection\"",
            "gw.toml:1:1: auth: auth.client_secret_env is required with auth.mode = \"introspection\"",
        ],
    );
    check(
        &format!("{JWT}required_scopes = [\"tools call\", \"ok\"]\n"),
        &[
            "gw.toml:5:20: auth.required_scopes[0]: \"tools call\" is not a scope (no spaces or quotes, not empty)",
        ],
    );
    check(
        "[[auth.api_keys]]\nsha256 = \"abc\"\nsubject = \"bot\"\n",
        &[
            "gw.toml:2:10: auth.api_keys[0].sha256: must be 64 hex digits (the SHA-256 of the key, never the key itself)",
        ],
    );
    check(
        &format!(
            "{JWT}[[auth.api_keys]]\nheader = \"authorization\"\nscheme = \"Bearer\"\nsha256 = \"{}\"\nsubject = \"bot\"\n",
            "0".repeat(64)
        ),
        &[
            "gw.toml:7:10: auth.api_keys[0].scheme: \"Bearer\" is the token mode's scheme; use another (e.g. \"ApiKey\") or auth.mode = \"none\"",
        ],
    );
    check(
        "[[auth.api_keys]]\nsubject = \"bot\"\n",
        &["gw.toml:1:1: auth.api_keys[0].sha256: required key is missing"],
    );
    check(
        &format!("{STDIO}mint_token = {{ audience = \"x\", key_file = \"/nonexistent.pem\" }}\n"),
        &[
            "gw.toml:5:14: backends[0].mint_token: not allowed with transport = \"stdio\" (a process has no request headers)",
            "gw.toml:5:43: backends[0].mint_token.key_file: cannot read \"/nonexistent.pem\": No such file or directory (os error 2)",
        ],
    );
}

#[test]
fn auth_values() {
    let dir = std::env::temp_dir().join(format!("mcp-gw-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let pem = dir.join("mint.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBOHh+IctGcqsYJD680zDie4ZLWMyji35bMaawrIatdf\n-----END PRIVATE KEY-----\n",
    )
    .expect("write key");
    let cfg = load(&format!(
        "{JWT}required_scopes = [\"mcp\"]\n\
         [[auth.api_keys]]\nsha256 = \"{}\"\nsubject = \"bot\"\nscopes = [\"tools:call\"]\n\
         [[auth.api_keys]]\nheader = \"Authorization\"\nsha256 = \"{}\"\nsubject = \"bot2\"\n\
         {HTTP}mint_token = {{ audience = \"https://h.example\", key_file = {:?} }}\nrequired_scopes = [\"h\"]\n",
        "a".repeat(64),
        "B".repeat(64),
        pem.display().to_string()
    ));
    let auth = &cfg.auth;
    assert_eq!(auth.mode, AuthMode::Jwt);
    assert_eq!(auth.issuer.as_deref(), Some("https://idp.example"));
    assert_eq!(auth.audiences, ["https://gw.example/mcp"]);
    assert_eq!(auth.keys, KeySource::Discovery);
    assert!(auth.algorithms.contains(&JwtAlgorithm::EdDSA));
    assert!(!auth.algorithms.contains(&JwtAlgorithm::HS256));
    assert_eq!(auth.leeway, Duration::from_secs(30));
    assert_eq!(auth.max_delegation_depth, 2);
    assert_eq!(auth.authorization_servers, ["https://idp.example"]);
    assert_eq!(auth.required_scopes, ["mcp"]);
    assert_eq!(auth.api_keys.len(), 2);
    assert_eq!(auth.api_keys[0].header, "x-api-key");
    assert_eq!(auth.api_keys[0].scheme, None);
    assert_eq!(auth.api_keys[1].header, "authorization");
    assert_eq!(auth.api_keys[1].scheme.as_deref(), Some("ApiKey"));
    assert_eq!(auth.api_keys[1].sha256, [0xbb; 32]);
    let mint = cfg.backends[0].mint_token.as_ref().expect("mint_token");
    assert_eq!(mint.audience, "https://h.example");
    assert_eq!(mint.ttl, Duration::from_secs(60));
    assert_eq!(mint.issuer, "mcp-gateway");
    assert_eq!(cfg.backends[0].required_scopes, ["h"]);
    // Key material never shows in Debug output.
    assert!(!format!("{cfg:?}").contains("MC4CAQAw"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tool_curation_and_multiplex() {
    let config = load(&format!(
        "[multiplex]\nfailure_mode = \"strict\"\ncatalog_ttl_s = 5\n{STDIO}[backends.tools]\ninclude = [\"get-*\"]\nexclude = [\"get-secret\"]\nrename = {{ \"get-sum\" = \"sum\" }}\ndescription = {{ \"get-sum\" = \"adds\" }}\npin = {{ \"get-sum\" = {{ a = 1, mode = \"fast\" }} }}\n{HTTP}"
    ));
    assert_eq!(config.multiplex.failure_mode, FailureMode::Strict);
    assert_eq!(config.multiplex.catalog_ttl, Duration::from_secs(5));
    let tools = &config.backends[0].tools;
    assert_eq!(tools.rename["get-sum"], "sum");
    assert_eq!(tools.pin["get-sum"]["mode"], "fast");
    assert_eq!(tools.pin["get-sum"]["a"], 1);
    check(
        &format!(
            "{STDIO}[backends.tools]\nrename = {{ x = \"has space\", y = \"ok\", z = \"ok\" }}\n"
        ),
        &[
            "gw.toml:6:16: backends[0].tools.rename.x: tool name \"has space\" has ' '; only A-Za-z0-9_.- are allowed",
            "gw.toml:6:43: backends[0].tools.rename.z: \"y\" is renamed to \"ok\" too: public names must be unique",
        ],
    );
    let long = "n".repeat(127);
    check(
        &format!("{STDIO}[backends.tools]\nrename = {{ x = \"{long}\" }}\n{HTTP}"),
        &[&format!(
            "gw.toml:6:16: backends[0].tools.rename.x: tool name \"a__{long}\" is 130 characters long, more than 128"
        )],
    );
}

/// The shipped examples load.
#[test]
fn examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Err(errors) = load_str(&text, &path.display().to_string(), &env) {
                panic!("{errors}");
            }
            seen += 1;
        }
    }
    assert!(seen > 0, "no example in {}", dir.display());
}

#[test]
fn tenants_and_routes() {
    check(
        &format!(
            "{STDIO}[[tenants]]\nname = \"acme\"\nbackends = [\"a\"]\n[[routes]]\nclaims = {{ agent_type = \"ro\" }}\nbackends = [\"a\"]\n"
        ),
        &[],
    );
    check(
        &format!(
            "{STDIO}[[tenants]]\nname = \"acme\"\nbackends = [\"a\", \"nope\"]\n[[tenants]]\nname = \"acme\"\n\
             [[routes]]\nclaims = {{ color = \"red\" }}\npolicy_files = []\n"
        ),
        &[
            "gw.toml:7:18: tenants[0].backends[1]: unknown backend \"nope\"",
            "gw.toml:9:8: tenants[1].name: duplicate tenant \"acme\" (first named by tenants[0])",
            "gw.toml:11:20: routes[0].claims.color: unknown claim \"color\" (expected one of: sub, tenant, client_id, agent_type, auth, scope)",
            "gw.toml:12:16: routes[0].policy_files: must name at least one file (omit it to use policy.files)",
        ],
    );
    let cfg = load(&format!("{STDIO}[policy]\nfiles = [\"p/*.cedar\"]\n"));
    assert!(cfg.policy.configured);
    assert_eq!(cfg.policy.files, vec!["p/*.cedar"]);
    assert!(!load(STDIO).policy.configured);
}

#[test]
fn state_section() {
    let config = load(STDIO);
    assert!(config.state.redis_url.is_none());
    assert_eq!(config.state.key_prefix, "mcp-gateway:");
    assert_eq!(config.state.on_unavailable, OnUnavailable::Deny);
    let config = load(&format!(
        "[state]\nredis_url = \"redis://127.0.0.1:6380/2\"\nkey_prefix = \"gw-a:\"\non_unavailable = \"local\"\n{STDIO}"
    ));
    assert_eq!(
        config.state.redis_url.as_ref().map(Secret::expose),
        Some("redis://127.0.0.1:6380/2")
    );
    assert_eq!(config.state.key_prefix, "gw-a:");
    assert_eq!(config.state.on_unavailable, OnUnavailable::Local);
    assert_eq!(config.state.replica_id, None);
    let config = load(&format!("[state]\nreplica_id = \"gw-eu-1\"\n{STDIO}"));
    assert_eq!(config.state.replica_id.as_deref(), Some("gw-eu-1"));
    check(
        "[state]\nreplica_id = \"gw 1\"\n",
        &["gw.toml:2:14: state.replica_id: must be 1 to 64 characters of A-Za-z0-9_.-"],
    );
    // TLS and a password through the URL.
    let config = load(&format!(
        "[state]\nredis_url = \"rediss://:pw@redis.example:6380\"\n{STDIO}"
    ));
    assert!(config.state.redis_url.is_some());
    check(
        "[state]\nredis_url = \"http://x\"\nsession_key_env = \"GW_ADMIN_TOKEN\"\non_unavailable = \"allow\"\n",
        &[
            "gw.toml:2:13: state.redis_url: not a Redis URL (redis://host:port or rediss://…): Redis URL did not parse - InvalidClientConfig",
            "gw.toml:3:19: state.session_key_env: the session key must be at least 32 characters",
            "gw.toml:4:18: state.on_unavailable: expected one of \"deny\", \"local\", found \"allow\"",
        ],
    );
    check(
        "[state]\nredis_url = \"redis://a\"\nredis_url_env = \"GW_NOPE\"\n",
        &[
            "gw.toml:3:17: state.redis_url_env: give state.redis_url or state.redis_url_env, not both",
        ],
    );
    let config = load(&format!(
        "[state]\nreplica_id = \"gw-1.eu\"\nadvertise_addr = \"10.0.0.7:8080\"\n{STDIO}"
    ));
    assert_eq!(config.state.replica_id.as_deref(), Some("gw-1.eu"));
    assert_eq!(
        config.state.advertise_addr.as_deref(),
        Some("10.0.0.7:8080")
    );
    assert!(load(STDIO).state.replica_id.is_none());
    check(
        "[state]\nreplica_id = \"gw 1\"\nadvertise_addr = \"10.0.0.7\"\n",
        &[
            "gw.toml:2:14: state.replica_id: must be 1 to 64 characters of A-Za-z0-9_.-",
            "gw.toml:3:18: state.advertise_addr: must be host:port",
        ],
    );
}
