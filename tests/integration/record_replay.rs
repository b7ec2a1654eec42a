//! Record and replay (issue 9): a real client's session through the real
//! gateway is written as a fixture; `mcp-gateway replay` plays it back
//! against fixture-driven backends and reports exactly what changed;
//! `fixture-server` serves a fixture's backend to an SDK client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::gateway::gateway_bin;
use crate::util::http::McpSession;
use crate::util::process::{ChildGuard, run_with_timeout};
use crate::util::servers::toml_array;
use crate::util::{DemoServer, Gateway, TestDir, py_client};

const API_KEY: &str = "sk-recording-test-key-5f1e0c";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A gateway config: an API key, the given backends, extra TOML.
/// The explicit allow-all: without `[policy]` the gateway, and so replay,
/// denies every request.
fn allow_all() -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies/allow-all.cedar");
    format!("[policy]\nfiles = [{:?}]\n", file.display().to_string())
}

fn config(backends: &[&str], extra: &str) -> String {
    let mut c = allow_all();
    c += &format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [[auth.api_keys]]\nsha256 = \"{}\"\nsubject = \"recorder-bot\"\n{extra}\n",
        sha256_hex(API_KEY)
    );
    for name in backends {
        c.push_str(&format!(
            "[[backends]]\nname = \"{name}\"\ntransport = \"stdio\"\ncommand = {}\n",
            toml_array(&DemoServer::stdio_argv())
        ));
    }
    c
}

/// The fixture files in `dir`, waiting (bounded) until one holds a line
/// satisfying `done`.
fn wait_for_fixture(dir: &Path, done: impl Fn(&Value) -> bool) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            if text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| done(&v))
            {
                return f.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no fixture in {} finished; files: {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn response_to(id: i64) -> impl Fn(&Value) -> bool {
    move |v| v["dir"] == "gateway_to_client" && v["message"]["id"] == json!(id)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn replay(config: &Path, fixtures: &[&Path], extra: &[&str]) -> Run {
    let mut cmd = Command::new(gateway_bin());
    cmd.arg("replay")
        .arg("--config")
        .arg(config)
        .args(extra)
        .args(fixtures)
        .env("RUST_LOG", "warn");
    let f = run_with_timeout("mcp-gateway replay", cmd, Duration::from_secs(120));
    Run {
        code: f.status.code(),
        stdout: f.stdout,
        stderr: f.stderr,
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read fixture")
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write fixture");
}

/// Records one handshake-era session (list, call, read) with an API key.
async fn record_basic(dir: &TestDir) -> (PathBuf, PathBuf) {
    let rec = dir.path().join("rec");
    let cfg_text = config(&["demo"], "");
    let cfg = dir.write("gateway.toml", &cfg_text);
    let gw = Gateway::builder(&cfg_text)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &[("x-api-key", API_KEY)]).await;
    let list = s.request("tools/list", json!({})).await;
    assert!(list["result"]["tools"].is_array(), "{list}");
    let call = s
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "secret-argument-value"}}),
        )
        .await;
    assert!(call["result"].is_object(), "{call}");
    let read = s
        .request("resources/read", json!({"uri": "demo://readme"}))
        .await;
    assert!(read["result"].is_object(), "{read}");
    let fixture = wait_for_fixture(&rec, response_to(3));
    drop(gw);
    (cfg, fixture)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_session_replays_and_each_change_is_reported() {
    let dir = TestDir::new("record-basic");
    let (cfg, fixture) = record_basic(&dir).await;
    let text = std::fs::read_to_string(&fixture).expect("read fixture");
    // No secret and no argument in clear.
    assert!(!text.contains(API_KEY), "API key in the fixture:\n{text}");
    let recorded = lines(&fixture);
    // Arguments are redacted on both hops (the echo in the result is the
    // tool's answer, which is recorded as is).
    let calls: Vec<&Value> = recorded
        .iter()
        .filter(|l| l["message"]["method"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 2, "{text}");
    for c in calls {
        let args = &c["message"]["params"]["arguments"];
        assert!(args["_redacted_sha256"].is_string(), "{c}");
        assert!(!args.to_string().contains("secret-argument-value"), "{c}");
    }
    assert_eq!(recorded[0]["type"], "header");
    assert_eq!(recorded[0]["principal"]["sub"], "recorder-bot");
    assert!(recorded.iter().any(|l| l["dir"] == "gateway_to_backend"));
    assert!(recorded.iter().any(|l| l["decision"]["allow"] == true));

    // Unchanged: a match.
    let run = replay(&cfg, &[&fixture], &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(": match (4 requests)"),
        "{}",
        run.stdout
    );

    // A backend answer edited in the fixture: exactly that response differs.
    let call_no = recorded
        .iter()
        .find(|l| l["dir"] == "gateway_to_backend" && l["message"]["method"] == "tools/call")
        .map(|l| l["call"].clone())
        .expect("a recorded tools/call to the backend");
    let mut edited = recorded.clone();
    let mut original = Value::Null;
    for l in &mut edited {
        if l["dir"] == "backend_to_gateway" && l["call"] == call_no {
            original = l["message"]["result"]["content"][0]["text"].clone();
            l["message"]["result"]["content"][0]["text"] = json!("edited answer");
        }
    }
    assert!(original.is_string(), "{recorded:?}");
    let edited_path = dir.path().join("edited.jsonl");
    write_lines(&edited_path, &edited);
    let run = replay(&cfg, &[&edited_path], &[]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let expected = format!(
        "tools/call echo: response differs at /result/content/0/text: {original} → \"edited answer\""
    );
    assert!(
        run.stdout.contains(&expected),
        "want {expected:?} in:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(": 1 difference\n"), "{}", run.stdout);

    // A message deleted: the gateway's request to the backend is not in the recording.
    let deleted: Vec<Value> = recorded
        .iter()
        .filter(|l| {
            !(l["dir"] == "gateway_to_backend" && l["message"]["method"] == "resources/read")
        })
        .cloned()
        .collect();
    let deleted_path = dir.path().join("deleted.jsonl");
    write_lines(&deleted_path, &deleted);
    let run = replay(&cfg, &[&deleted_path], &["--format", "json"]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(run.stdout.trim()).expect("json report");
    let texts: Vec<&str> = report["fixtures"][0]["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .filter_map(|d| d["text"].as_str())
        .collect();
    assert!(
        texts.contains(
            &"gateway→backend (demo): resources/read demo://readme sent in the replay, not recorded"
        ),
        "{texts:?}"
    );
    assert_eq!(report["exit"], 1);

    // A policy change: a Cedar policy that forbids `echo` turns exactly
    // that call's decision from allow to deny, naming the policy.
    let policy = dir.write(
        "no-echo.cedar",
        "@id(\"allow-all\")\npermit(principal, action, resource);\n\
         @id(\"no-echo\")\nforbid(principal, action == Mcp::Action::\"tools/call\", resource)\n\
         when { resource.name == \"echo\" };\n",
    );
    let denied = dir.write(
        "no-echo.toml",
        &config(&["demo"], "").replace(
            &allow_all(),
            &format!("[policy]\nfiles = [{:?}]\n", policy.display().to_string()),
        ),
    );
    let run = replay(&denied, &[&fixture], &[]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("tools/call echo: allow → deny (policy no-echo)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("allow → deny").count(),
        1,
        "only the echo call changes decision:\n{}",
        run.stdout
    );

    // A curation change: `echo` renamed to `say` is listed under its new
    // name, and the recorded call by its old name no longer resolves.
    let renamed = dir.write(
        "renamed.toml",
        &format!(
            "{}[backends.tools]\nrename = {{ echo = \"say\" }}\n",
            config(&["demo"], "")
        ),
    );
    let run = replay(&renamed, &[&fixture], &[]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("tools/list: response differs at /result/tools/0/name: \"echo\" → \"say\"")
            && run
                .stdout
                .contains("tools/call echo: response differs at /result"),
        "{}",
        run.stdout
    );

    // The replaying client is the recorded principal: a config that
    // requires a scope it never had refuses it.
    let scoped = dir.write(
        "scoped.toml",
        &config(&["demo"], "").replace(
            "[[auth.api_keys]]",
            "[auth]\nrequired_scopes = [\"mcp\"]\n[[auth.api_keys]]",
        ),
    );
    let run = replay(&scoped, &[&fixture], &[]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("line 3: initialize: the replayed gateway never received it"),
        "{}",
        run.stdout
    );

    // A config change: a second backend makes the default route multiplexed,
    // so names get prefixed and the unprefixed call no longer resolves.
    let changed = dir.write("changed.toml", &config(&["demo", "other"], ""));
    let run = replay(&changed, &[&fixture], &[]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("tools/list: response differs at /result")
            && run
                .stdout
                .contains("tools/call echo: response differs at /result"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("tools/call echo: response differs at /result: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("gateway→backend (demo): tools/call echo recorded, not sent in the replay"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_session_records_no_secret_and_replays_as_its_principal() {
    const HS: &str = "hs256-secret-for-the-recording-test-0123456789";
    const BACKEND_SECRET: &str = "backend-secret-header-value-77";
    let demo = DemoServer::start_http();
    let dir = TestDir::new("record-jwt");
    let rec = dir.path().join("rec");
    let cfg_text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [auth]\nmode = \"jwt\"\nissuer = \"https://iss.test\"\naudience = \"https://gw.test/mcp\"\n\
         hs256_secret_env = \"GW_REC_HS\"\nrequired_scopes = [\"tools:read\"]\n\
         [[backends]]\nname = \"demo\"\ntransport = \"streamable_http\"\nurl = \"{}\"\n\
         headers = {{ \"x-backend-key\" = \"${{GW_REC_BACKEND}}\" }}\n{}",
        demo.url(),
        allow_all()
    );
    let cfg = dir.write("gateway.toml", &cfg_text);
    let gw = Gateway::builder(&cfg_text)
        .env("GW_REC_HS", HS)
        .env("GW_REC_BACKEND", BACKEND_SECRET)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let token = crate::util::auth::mint_with_env(
        &[
            "--sub",
            "alice",
            "--iss",
            "https://iss.test",
            "--aud",
            "https://gw.test/mcp",
            "--hs256-secret-env",
            "GW_REC_HS",
            "--tenant",
            "acme",
            "--scope",
            "tools:read",
        ],
        &[("GW_REC_HS", HS)],
    );
    let bearer = format!("Bearer {token}");
    let mut s =
        McpSession::initialize(&gw.url(), "2025-06-18", &[("authorization", &bearer)]).await;
    let call = s
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert!(call["result"].is_object(), "{call}");
    let fixture = wait_for_fixture(&rec, response_to(1));
    drop(gw);
    let text = std::fs::read_to_string(&fixture).expect("read fixture");
    let signature = token.rsplit('.').next().unwrap_or(&token);
    for secret in [token.as_str(), signature, HS, BACKEND_SECRET] {
        assert!(!text.contains(secret), "{secret:?} in the fixture:\n{text}");
    }
    let header = &lines(&fixture)[0];
    assert_eq!(
        header["principal"],
        json!({"sub": "alice", "tenant": "acme", "client_id": null, "scopes": ["tools:read"], "auth": "jwt"})
    );
    // Replayed as alice with her scopes: the required scope is met.
    let mut cmd = Command::new(gateway_bin());
    cmd.args(["replay", "--config"])
        .arg(&cfg)
        .arg(&fixture)
        .env("GW_REC_HS", HS)
        .env("GW_REC_BACKEND", BACKEND_SECRET);
    let run = run_with_timeout("replay", cmd, Duration::from_secs(120));
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(": match (2 requests)"),
        "{}",
        run.stdout
    );
}

/// 2026-07-28 exchanges of one principal share a fixture until
/// `record.group_window_s` pass in silence; then a new one starts, with the
/// same header and backend lines, and each replays on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_exchanges_are_grouped_by_a_quiet_window() {
    use crate::util::http::modern_request;
    let dir = TestDir::new("record-window");
    let rec = dir.path().join("rec");
    let cfg_text = config(&["demo"], "[record]\ngroup_window_s = 1\n");
    let cfg = dir.write("gateway.toml", &cfg_text);
    let gw = Gateway::builder(&cfg_text)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let key = [("x-api-key", API_KEY)];
    let url = gw.url();
    assert_eq!(
        modern_request(&url, 1, "tools/list", json!({}), &key)
            .await
            .status,
        200
    );
    assert_eq!(
        modern_request(&url, 2, "prompts/list", json!({}), &key)
            .await
            .status,
        200
    );
    wait_for_fixture(&rec, response_to(2));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        modern_request(&url, 3, "tools/list", json!({}), &key)
            .await
            .status,
        200
    );
    let second = wait_for_fixture(&rec, response_to(3));
    drop(gw);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&rec)
        .expect("read rec")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let first = lines(&files[0]);
    let later = lines(&second);
    assert_eq!(first[0]["era"], "stateless");
    assert_eq!(first[0], later[0], "same header");
    assert_eq!(later[1]["type"], "backend");
    let ids = |ls: &[Value]| -> Vec<Value> {
        ls.iter()
            .filter(|l| l["dir"] == "client_to_gateway")
            .map(|l| l["message"]["id"].clone())
            .collect()
    };
    assert_eq!(ids(&first), [json!(1), json!(2)]);
    assert_eq!(ids(&later), [json!(3)]);
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let run = replay(&cfg, &refs, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_fixtures_exit_2_with_the_line() {
    let dir = TestDir::new("record-corrupt");
    let (cfg, fixture) = record_basic(&dir).await;
    let text = std::fs::read_to_string(&fixture).expect("read fixture");
    let good: Vec<&str> = text.lines().collect();
    let case = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write");
        p
    };
    let truncated = {
        let third = good[2];
        let half = &third[..third.len() / 2];
        case(
            "truncated.jsonl",
            format!("{}\n{}\n{half}", good[0], good[1]),
        )
    };
    let wrong_schema = case(
        "schema.jsonl",
        format!(
            "{}\n{}\n{{\"type\":\"message\",\"dir\":\"sideways\",\"message\":{{}},\"t_us\":0}}\n",
            good[0], good[1]
        ),
    );
    let missing_field = case(
        "missing.jsonl",
        format!(
            "{}\n{{\"type\":\"message\",\"dir\":\"client_to_gateway\",\"message\":{{}}}}\n",
            good[0]
        ),
    );
    let version = {
        let mut header: Value = serde_json::from_str(good[0]).expect("header");
        header["version"] = json!(99);
        case(
            "version.jsonl",
            format!("{header}\n{}\n", good[1..].join("\n")),
        )
    };
    let huge = case(
        "huge.jsonl",
        format!(
            "{}\n{{\"type\":\"message\",\"pad\":\"{}\"}}\n",
            good[0],
            "x".repeat(10 * 1024 * 1024)
        ),
    );
    for (path, expected) in [
        (&truncated, ":3: truncated JSON"),
        (&wrong_schema, ":3: unknown direction \"sideways\""),
        (&missing_field, ":2: bad message line: missing field `t_us`"),
        (
            &version,
            ":1: unknown fixture version 99 (this build reads 1)",
        ),
        (&huge, ":2: line longer than 4194304 bytes"),
    ] {
        let run = replay(&cfg, &[path], &[]);
        assert_eq!(
            run.code,
            Some(2),
            "{path:?}: {}\n{}",
            run.stdout,
            run.stderr
        );
        let want = format!("{}{expected}", path.display());
        assert!(
            run.stdout.contains(&want),
            "want {want:?} in:\n{}",
            run.stdout
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // An unusable fixture among good ones: still 2.
    let run = replay(&cfg, &[&fixture, &version], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_match_in_any_order() {
    let dir = TestDir::new("record-concurrent");
    let rec = dir.path().join("rec");
    let cfg_text = config(&["demo"], "[record]\ninclude_arguments = true\n");
    let cfg = dir.write("gateway.toml", &cfg_text);
    let gw = Gateway::builder(&cfg_text)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let s = McpSession::initialize(&gw.url(), "2025-06-18", &[("x-api-key", API_KEY)]).await;
    let call = |id: i64, message: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": message}}})
    };
    // Listed first, so that the calls find the tools' annotations (which
    // policy reads) in the catalog instead of each fetching them.
    let listed = s
        .post(&json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list", "params": {}}))
        .await;
    assert!(listed.rpc()["result"]["tools"].is_array(), "{listed:?}");
    let (one, two, three) = (call(11, "one"), call(12, "two"), call(13, "three"));
    let (a, b, c) = tokio::join!(s.post(&one), s.post(&two), s.post(&three));
    for r in [a, b, c] {
        assert!(r.rpc()["result"].is_object(), "{r:?}");
    }
    let fixture = wait_for_fixture(&rec, |v| {
        v["dir"] == "gateway_to_client"
            && [11, 12, 13].contains(&v["message"]["id"].as_i64().unwrap_or(0))
    });
    // All three responses written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&fixture)
        .iter()
        .filter(|l| {
            l["dir"] == "gateway_to_client" && l["message"]["id"].as_i64().unwrap_or(0) > 10
        })
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "responses not recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(gw);
    // Arguments were asked for: they are in the fixture.
    assert!(
        std::fs::read_to_string(&fixture)
            .expect("read")
            .contains("\"three\"")
    );
    let run = replay(&cfg, &[&fixture], &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);

    // The backend hop in reverse order: answers are found by content, not position.
    let recorded = lines(&fixture);
    let (backend, rest): (Vec<Value>, Vec<Value>) = recorded
        .into_iter()
        .partition(|l| l["dir"] == "gateway_to_backend" || l["dir"] == "backend_to_gateway");
    let mut reordered = rest;
    reordered.extend(backend.into_iter().rev());
    let reversed = dir.path().join("reversed.jsonl");
    write_lines(&reversed, &reordered);
    let run = replay(&cfg, &[&reversed], &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_server_answers_the_python_sdk_as_recorded() {
    let dir = TestDir::new("record-fixture-server");
    let rec = dir.path().join("rec");
    let cfg_text = config(&["demo"], "[record]\ninclude_arguments = true\n");
    let gw = Gateway::builder(&cfg_text)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let url = gw.url();
    let through_gateway = tokio::task::spawn_blocking(move || {
        py_client(
            "legacy",
            &url,
            "basic",
            &["--header", &format!("x-api-key: {API_KEY}")],
        )
    })
    .await
    .expect("py_client");
    let fixture = wait_for_fixture(&rec, |v| {
        v["dir"] == "gateway_to_client" && v["message"]["result"]["contents"].is_array()
    });
    drop(gw);

    let mut cmd = Command::new(gateway_bin());
    cmd.arg("fixture-server")
        .arg(&fixture)
        .args(["--http", "127.0.0.1:0"]);
    let mut server = ChildGuard::spawn("mcp-gateway fixture-server", cmd);
    let served = server.wait_for_stderr("fixture-server listening", Duration::from_secs(20), |e| {
        let rest = &e[e.find("listening on ")? + "listening on ".len()..];
        rest.split_whitespace().next().map(str::to_owned)
    });
    let direct = tokio::task::spawn_blocking(move || py_client("legacy", &served, "basic", &[]))
        .await
        .expect("py_client");
    for key in ["tools", "echo", "resources", "readme"] {
        assert_eq!(direct[key], through_gateway[key], "{key}");
    }
    assert!(direct["echo"].to_string().contains("hello"), "{direct}");

    // The same over stdio.
    let argv = vec![
        gateway_bin().display().to_string(),
        "fixture-server".to_owned(),
        fixture.display().to_string(),
    ];
    let target = crate::util::servers::stdio_target(&argv);
    let over_stdio =
        tokio::task::spawn_blocking(move || py_client("legacy", &target, "basic", &[]))
            .await
            .expect("py_client over stdio");
    for key in ["tools", "echo", "resources", "readme"] {
        assert_eq!(over_stdio[key], through_gateway[key], "stdio {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_replay_detects_backend_drift() {
    let dir = TestDir::new("record-live");
    let rec = dir.path().join("rec");
    let cfg_text = config(&["demo"], "[record]\ninclude_arguments = true\n");
    let cfg = dir.write("gateway.toml", &cfg_text);
    let gw = Gateway::builder(&cfg_text)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let mut s = McpSession::initialize(&gw.url(), "2025-06-18", &[("x-api-key", API_KEY)]).await;
    s.request("tools/list", json!({})).await;
    let call = s
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert!(call["result"].is_object(), "{call}");
    let fixture = wait_for_fixture(&rec, response_to(2));
    drop(gw);

    // The same real backend: no drift.
    let run = replay(&cfg, &[&fixture], &["--live"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);

    // Another implementation behind the same name: its answers drifted.
    let other = cfg_text.replace(
        &toml_array(&DemoServer::stdio_argv()),
        &toml_array(&crate::util::PyDemoServer::stdio_argv()),
    );
    assert_ne!(other, cfg_text);
    let other = dir.write("other.toml", &other);
    let run = replay(&other, &[&fixture], &["--live"]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("tools/list: response differs at /result/"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("backend→gateway (demo): response recorded, not sent in the replay"),
        "{}",
        run.stdout
    );
}

// --- committed fixtures ---------------------------------------------------------

/// `fixtures/` at the repository root.
fn fixtures_dir() -> PathBuf {
    crate::util::drivers::repo_root().join("fixtures")
}

/// The replay config committed next to a recording: the recorded backend
/// names with their transport kind (replay replaces the transport itself).
fn committed_config(backend: &str, transport: &str, protocol: Option<&str>) -> String {
    let pinned = protocol
        .map(|p| format!("protocol = \"{p}\"\n"))
        .unwrap_or_default();
    let how = match transport {
        "stdio" => "transport = \"stdio\"\ncommand = [\"recorded-stdio-server\"]".to_owned(),
        _ => "transport = \"streamable_http\"\nurl = \"http://127.0.0.1:9/mcp\"".to_owned(),
    };
    format!(
        "# Replay config for this recording: `mcp-gateway replay --config THIS *.jsonl`.\n\
         # Backends are replaced by the fixture: their names (and a pinned protocol)\n\
         # matter, not their transport.\n\
         [listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\n\
         [policy]\nfiles = [\"../../examples/policies/allow-all.cedar\"]\n\n\
         [[backends]]\nname = \"{backend}\"\n{how}\n{pinned}"
    )
}

/// Records `scenario` through a real gateway in front of `backend_toml`
/// and stores it under `fixtures/{name}/`.
async fn rerecord<F, Fut>(name: &str, backend: &str, transport: &str, backend_toml: &str, client: F)
where
    F: FnOnce(Gateway) -> Fut,
    Fut: std::future::Future<Output = (Gateway, i64)>,
{
    let dir = TestDir::new("rerecord");
    let rec = dir.path().join("rec");
    let cfg = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [record]\ninclude_arguments = true\n\n[[backends]]\nname = \"{backend}\"\n{backend_toml}\n"
    );
    let gw = Gateway::builder(&cfg)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    let (gw, last_id) = client(gw).await;
    // A negative id: the client picks its own ids; wait for a tool result.
    let fixture = if last_id < 0 {
        wait_for_fixture(&rec, |v| {
            v["dir"] == "gateway_to_client" && v["message"]["result"]["content"].is_array()
        })
    } else {
        wait_for_fixture(&rec, response_to(last_id))
    };
    // Let the writer catch up: the file stops growing.
    let mut size = 0;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = std::fs::metadata(&fixture).map(|m| m.len()).unwrap_or(0);
        if now == size {
            break;
        }
        size = now;
    }
    drop(gw);
    let target = fixtures_dir().join(name);
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target).expect("create fixtures dir");
    std::fs::copy(&fixture, target.join("session.jsonl")).expect("copy fixture");
    let protocol = backend_toml
        .lines()
        .find_map(|l| l.strip_prefix("protocol = \""))
        .map(|p| p.trim_end_matches('"'));
    std::fs::write(
        target.join("gateway.toml"),
        committed_config(backend, transport, protocol),
    )
    .expect("write config");
}

async fn handshake_calls(url: &str) -> i64 {
    let mut s = McpSession::initialize(url, "2025-06-18", &[]).await;
    s.request("tools/list", json!({})).await;
    s.request(
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hello"}}),
    )
    .await;
    let read = s
        .request("resources/read", json!({"uri": "demo://readme"}))
        .await;
    assert!(read["result"].is_object(), "{read}");
    3
}

async fn rerecord_all() {
    rerecord(
        "demo-stdio-handshake",
        "demo",
        "stdio",
        &format!(
            "transport = \"stdio\"\ncommand = {}",
            toml_array(&DemoServer::stdio_argv())
        ),
        |gw| async move {
            let url = gw.url();
            let mut s = McpSession::initialize(&url, "2025-06-18", &[]).await;
            s.request("tools/list", json!({})).await;
            s.request(
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "hello"}}),
            )
            .await;
            let slow = s
                .request(
                    "tools/call",
                    json!({"name": "slow_count", "arguments": {"steps": 2, "delay_ms": 1},
                           "_meta": {"progressToken": "p1"}}),
                )
                .await;
            assert!(slow["result"].is_object(), "{slow}");
            s.request("resources/read", json!({"uri": "demo://readme"}))
                .await;
            let greet = s
                .request(
                    "prompts/get",
                    json!({"name": "greet", "arguments": {"name": "Ada"}}),
                )
                .await;
            assert!(greet["result"].is_object(), "{greet}");
            (gw, 5)
        },
    )
    .await;

    let demo_http = DemoServer::start_http();
    rerecord(
        "demo-http-stateless",
        "demo",
        "streamable_http",
        &format!(
            "transport = \"streamable_http\"\nurl = \"{}\"",
            demo_http.url()
        ),
        |gw| async move {
            use crate::util::http::modern_request;
            let url = gw.url();
            let d = modern_request(&url, 1, "server/discover", json!({}), &[]).await;
            assert_eq!(d.status, 200, "{d:?}");
            modern_request(&url, 2, "tools/list", json!({}), &[]).await;
            let call = modern_request(
                &url,
                3,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "hello"}}),
                &[],
            )
            .await;
            assert!(call.rpc()["result"].is_object(), "{call:?}");
            modern_request(
                &url,
                4,
                "resources/read",
                json!({"uri": "demo://readme"}),
                &[],
            )
            .await;
            (gw, 4)
        },
    )
    .await;
    drop(demo_http);

    rerecord(
        "everything-stdio-websocket",
        "everything",
        "stdio",
        &format!(
            "transport = \"stdio\"\ncommand = {}",
            toml_array(&crate::util::Everything::stdio_argv())
        ),
        |gw| async move {
            let mut ws =
                crate::util::front::WsClient::connect(&format!("ws://{}/ws", gw.addr())).await;
            let mut ask = async |id: i64, method: &str, params: Value| {
                ws.send_json(
                    &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
                )
                .await;
                for _ in 0..100 {
                    let m = ws
                        .next_json(Duration::from_secs(30))
                        .await
                        .expect("a message from the gateway");
                    if m["id"] == json!(id) && m.get("method").is_none() {
                        return m;
                    }
                }
                panic!("no response to {id}");
            };
            let init = ask(
                0,
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "gateway-tests", "version": "0"}}),
            )
            .await;
            assert!(init["result"].is_object(), "{init}");
            ask(1, "tools/list", json!({})).await;
            ask(
                2,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "hello"}}),
            )
            .await;
            let sum = ask(
                3,
                "tools/call",
                json!({"name": "get-sum", "arguments": {"a": 2, "b": 3}}),
            )
            .await;
            assert!(sum["result"].is_object(), "{sum}");
            (gw, 3)
        },
    )
    .await;

    rerecord(
        "python-sdk-stdio-sse-front",
        "py",
        "stdio",
        &format!(
            "transport = \"stdio\"\ncommand = {}",
            toml_array(&crate::util::PyDemoServer::stdio_argv())
        ),
        |gw| async move {
            let target = format!("sse:{}", gw.url_for("/sse"));
            tokio::task::spawn_blocking(move || {
                py_client(
                    "legacy-2024-11-05",
                    &target,
                    "tools",
                    &["--call", "echo", "--args", "{\"message\": \"hello\"}"],
                )
            })
            .await
            .expect("py_client over the SSE front door");
            (gw, -1)
        },
    )
    .await;

    rerecord(
        "demo-stdio-python-client-full",
        "demo",
        "stdio",
        &format!(
            "transport = \"stdio\"\ncommand = {}",
            toml_array(&DemoServer::stdio_argv())
        ),
        |gw| async move {
            let url = gw.url();
            let out =
                tokio::task::spawn_blocking(move || py_client("legacy", &url, "demo-full", &[]))
                    .await
                    .expect("py_client demo-full");
            assert!(
                !out["elicitations"].as_array().is_none_or(Vec::is_empty),
                "{out}"
            );
            (gw, -1)
        },
    )
    .await;

    let py = crate::util::PyDemoServer::start_http();
    rerecord(
        "python-sdk-http-parked-stateless",
        "py",
        "streamable_http",
        &format!(
            "transport = \"streamable_http\"\nurl = \"{}\"\nprotocol = \"2025-11-25\"",
            py.url()
        ),
        |gw| async move {
            let last = parked_ask(&gw.url()).await;
            (gw, last)
        },
    )
    .await;
    rerecord(
        "python-sdk-http-handshake-full",
        "py",
        "streamable_http",
        &format!(
            "transport = \"streamable_http\"\nurl = \"{}\"\nprotocol = \"2025-11-25\"",
            py.url()
        ),
        |gw| async move {
            let url = gw.url();
            let out =
                tokio::task::spawn_blocking(move || py_client("legacy", &url, "demo-full", &[]))
                    .await
                    .expect("py_client demo-full");
            assert!(
                !out["samplings"].as_array().is_none_or(Vec::is_empty),
                "{out}"
            );
            (gw, -1)
        },
    )
    .await;
    rerecord(
        "python-sdk-http",
        "py",
        "streamable_http",
        &format!("transport = \"streamable_http\"\nurl = \"{}\"", py.url()),
        |gw| async move {
            let last = handshake_calls(&gw.url()).await;
            (gw, last)
        },
    )
    .await;
    drop(py);
}

/// Every line of every committed fixture is valid against
/// `schemas/fixture.schema.json` (Python `jsonschema`, draft 2020-12).
#[test]
fn committed_fixtures_follow_the_schema() {
    let script = "import glob, json, sys, jsonschema\n\
        v = jsonschema.Draft202012Validator(json.load(open('schemas/fixture.schema.json')))\n\
        n = 0\n\
        for f in sorted(glob.glob('fixtures/*/*.jsonl')):\n\
        \x20   for i, line in enumerate(open(f), 1):\n\
        \x20       n += 1\n\
        \x20       for e in v.iter_errors(json.loads(line)):\n\
        \x20           sys.exit(f'{f}:{i}: {e.message}')\n\
        print(n)\n";
    let mut cmd = Command::new(crate::util::drivers::venv_python());
    cmd.args(["-c", script])
        .current_dir(crate::util::drivers::repo_root());
    let f = run_with_timeout("schema check", cmd, Duration::from_secs(60));
    assert!(f.status.success(), "{}\n{}", f.stdout, f.stderr);
    let lines: usize = f.stdout.trim().parse().unwrap_or(0);
    assert!(lines > 40, "only {lines} lines checked");
}

/// Replays every recording under `fixtures/` (`MCP_GATEWAY_RERECORD=1`
/// records them again from the real servers first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_fixtures_replay_clean() {
    if std::env::var_os("MCP_GATEWAY_RERECORD").is_some() {
        rerecord_all().await;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("gateway.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "committed recordings: {dirs:?}");
    for d in dirs {
        let fixtures: Vec<PathBuf> = std::fs::read_dir(&d)
            .expect("read fixture dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        assert!(!fixtures.is_empty(), "{d:?} holds no .jsonl");
        let refs: Vec<&Path> = fixtures.iter().map(PathBuf::as_path).collect();
        let run = replay(&d.join("gateway.toml"), &refs, &[]);
        assert_eq!(
            run.code,
            Some(0),
            "{}:\n{}\n{}",
            d.display(),
            run.stdout,
            run.stderr
        );
    }
}

/// A 2026-07-28 client asks the user through a handshake-era backend: the
/// gateway parks the call behind `input_required`, the client resumes it.
/// Returns the id of the last request.
async fn parked_ask(url: &str) -> i64 {
    use crate::util::http::modern_request;
    let caps = json!({"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let first = modern_request(
        url,
        1,
        "tools/call",
        json!({"name": "ask_user", "arguments": {"question": "colour?"}, "_meta": caps}),
        &[],
    )
    .await
    .rpc();
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = first["result"]["requestState"].clone();
    let key = first["result"]["inputRequests"]
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .expect("an input request");
    let second = modern_request(
        url,
        2,
        "tools/call",
        json!({"name": "ask_user", "arguments": {"question": "colour?"}, "_meta": caps,
               "requestState": state,
               "inputResponses": {key: {"action": "accept", "content": {"answer": "blue"}}}}),
        &[],
    )
    .await
    .rpc();
    assert!(second["result"].to_string().contains("blue"), "{second}");
    2
}

/// A stateless client's call to a handshake-era backend that asks the user:
/// the gateway parks the backend call behind `input_required`; replay
/// resumes it with the `requestState` of its own run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_input_required_call_replays() {
    let py = crate::util::PyDemoServer::start_http();
    let dir = TestDir::new("record-parked");
    let rec = dir.path().join("rec");
    let cfg_text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"py\"\ntransport = \"streamable_http\"\nurl = \"{}\"\n\
         protocol = \"2025-11-25\"\n{}",
        py.url(),
        allow_all()
    );
    let cfg = dir.write("gateway.toml", &cfg_text);
    let gw = Gateway::builder(&cfg_text)
        .arg("--record")
        .arg(rec.to_str().expect("utf-8 path"))
        .start();
    parked_ask(&gw.url()).await;
    let fixture = wait_for_fixture(&rec, response_to(2));
    drop(gw);
    let recorded = lines(&fixture);
    assert!(
        recorded
            .iter()
            .any(|l| l["dir"] == "backend_to_gateway"
                && l["message"]["method"] == "elicitation/create"),
        "{recorded:?}"
    );
    let run = replay(&cfg, &[&fixture], &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
}
