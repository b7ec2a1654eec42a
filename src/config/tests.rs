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
    assert_eq!(cfg.listen.drain, Duration::from_secs(10));
    assert_eq!(cfg.auth.mode, AuthMode::None);
    assert_eq!(cfg.limits.max_body_bytes, 4_194_304);
    assert_eq!(cfg.limits.max_sessions_per_principal, 64);
    assert_eq!(cfg.limits.max_in_flight_per_session, 64);
    assert_eq!(cfg.limits.max_queued_messages, 1024);
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
        &["gw.toml:1:1: foo: unknown key (expected one of: admin, auth, backends, limits, listen)"],
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
        &format!("{STDIO}{HTTP}  mint_token = {{ audience = \"x\" }}\n"),
        &[
            "gw.toml:9:3: backends[1].mint_token: unknown key (expected one of: command, cwd, env, headers, isolation, name, protocol, timeout_s, transport, url)",
        ],
    );
    check(
        "[policy]\nfiles = []\n",
        &[
            "gw.toml:1:2: policy: unknown key (expected one of: admin, auth, backends, limits, listen)",
        ],
    );
    check(
        "[limits.per_principal]\nper_second = 1\n",
        &[
            "gw.toml:1:9: limits.per_principal: unknown key (expected one of: max_body_bytes, max_in_flight_per_session, max_queued_messages, max_sessions_per_principal, session_idle_s)",
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
        "[auth]\nmode = \"jwt\"\n",
        &["gw.toml:2:8: auth.mode: expected one of \"none\", found \"jwt\""],
    );
    check(
        "[[backends]]\nname = \"a\"\ntransport = \"grpc\"\n",
        &[
            "gw.toml:3:13: backends[0].transport: expected one of \"stdio\", \"streamable_http\", found \"grpc\"",
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
            "gw.toml:5:7: backends[0].url: only allowed with transport = \"streamable_http\"",
            "gw.toml:6:11: backends[0].headers: only allowed with transport = \"streamable_http\"",
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
            "gw.toml:12:7: backends[0].url: only allowed with transport = \"streamable_http\"",
            "gw.toml:17:7: backends[1].url: \"ftp://remote\" must start with http:// or https://",
            "gw.toml:18:29: backends[1].headers.authorization: environment variable \"NOPE\" is not set",
            "gw.toml:19:13: backends[1].timeout_s: must be at least 1, found 0",
            "gw.toml:20:1: backends[1].extra: unknown key (expected one of: command, cwd, env, headers, isolation, name, protocol, timeout_s, transport, url)",
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
            "gw.toml:3:1: listen.\"ü\": unknown key (expected one of: addr, admin_addr, allowed_origins, drain_s, sse_keepalive_s)",
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
        "x.toml:1:1: a: unknown key (expected one of: admin, auth, backends, limits, listen)\n\
         x.toml:2:1: b: unknown key (expected one of: admin, auth, backends, limits, listen)"
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
         policies: 0, allow-all (no policy files)\n"
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
