//! Several backends as one (issue 5): merged lists paged by the gateway's
//! signed cursors, the catalog cache and list_changed, curation, routing of
//! progress, and partial vs strict failure with a backend killed and
//! restarted. Backends are real processes: `tests/interop/paged_server.py`
//! (a Python SDK server whose catalog size the test picks), the Python SDK
//! demo server over legacy SSE, our demo server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::Gateway;
use crate::util::drivers::{interop_dir, venv_python};
use crate::util::http::McpSession;
use crate::util::servers::{PyDemoServer, toml_string};

/// `[[backends]]` running `paged_server.py NAME COUNT PAGE` over stdio.
fn paged_backend(name: &str, count: usize, page: usize, extra: &str) -> String {
    let python = venv_python();
    let script = interop_dir().join("paged_server.py");
    format!(
        "[[backends]]\nname = \"{name}\"\ntransport = \"stdio\"\nprotocol = \"2025-11-25\"\ncommand = [{}, {}, \"{name}\", \"{count}\", \"{page}\"]\n{extra}\n",
        toml_string(&python.to_string_lossy()),
        toml_string(&script.to_string_lossy()),
    )
}

fn gateway(multiplex: &str, backends: &str) -> Gateway {
    Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n[multiplex]\n{multiplex}\n{backends}"
    ))
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn text(rpc: &Value) -> String {
    rpc["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result: {rpc}"))
        .to_owned()
}

fn error_code(rpc: &Value) -> i64 {
    rpc["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {rpc}"))
}

async fn call(session: &mut McpSession, name: &str, arguments: Value) -> Value {
    session
        .request("tools/call", json!({"name": name, "arguments": arguments}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_list_pages_a_500_tool_and_a_3_tool_backend_with_signed_cursors() {
    let backends = format!(
        "{}{}",
        paged_backend("big", 500, 100, ""),
        paged_backend("small", 3, 100, "")
    );
    let gw = gateway("", &backends);
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;

    // Walk the pages by hand: one gateway page per backend page, big first.
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut cursors: Vec<Value> = Vec::new();
    let mut params = json!({});
    for _ in 0..20 {
        let rpc = s.request("tools/list", params.clone()).await;
        let result = &rpc["result"];
        pages.push(names(result["tools"].as_array().expect("tools")));
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => {
                assert!(c.is_string(), "{c}");
                cursors.push(c.clone());
                params = json!({"cursor": c});
            }
            _ => break,
        }
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 100, 100, 100, 3, 6], "{pages:?}");
    let all: Vec<String> = pages.concat();
    assert_eq!(all[0], "big__tool_0");
    assert_eq!(all[499], "big__tool_499");
    assert_eq!(all[503], "small__tool_0");
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no tool twice");

    // A cursor can be replayed (deterministic), but not forged or moved.
    let again = s.request("tools/list", json!({"cursor": cursors[2]})).await;
    assert_eq!(
        names(again["result"]["tools"].as_array().expect("tools")),
        pages[3]
    );
    let good = cursors[0].as_str().expect("string cursor");
    let mut tampered = good.to_owned();
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        json!(tampered),
        json!("not-a-cursor"),
        json!(42),
        json!(format!(
            "{}.AAAAAAAAAAAAAAAAAAAAAA",
            good.split('.').next().unwrap_or("")
        )),
    ] {
        let rpc = s.request("tools/list", json!({"cursor": bad})).await;
        assert_eq!(error_code(&rpc), -32602, "{bad}: {rpc}");
    }
    // A tools/list cursor is not a prompts/list cursor.
    let rpc = s
        .request("prompts/list", json!({"cursor": cursors[0]}))
        .await;
    assert_eq!(error_code(&rpc), -32602, "{rpc}");
    // Nor one of another gateway process (another key).
    let other = gateway("", &backends);
    let mut o = McpSession::initialize(&other.url(), "2025-11-25", &[]).await;
    let rpc = o.request("tools/list", json!({"cursor": cursors[0]})).await;
    assert_eq!(error_code(&rpc), -32602, "{rpc}");

    // Calls route by prefix to the right process.
    let rpc = call(&mut s, "big__tool_499", json!({"a": 1, "b": 2})).await;
    assert_eq!(text(&rpc), r#"big:tool_499:{"a": 1, "b": 2}"#);
    let rpc = call(&mut s, "small__tool_2", json!({"a": 3, "b": 4})).await;
    assert_eq!(text(&rpc), r#"small:tool_2:{"a": 3, "b": 4}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_list_is_served_from_the_catalog_until_list_changed() {
    let backends = format!(
        "{}{}",
        paged_backend("one", 3, 100, ""),
        paged_backend("two", 2, 100, "")
    );
    let gw = gateway("catalog_ttl_s = 600", &backends);
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let first = s.list_all("tools/list", "tools").await;
    assert_eq!(first.len(), 6 + 5, "{:?}", names(&first));
    let before: u64 = text(&call(&mut s, "one__lists", json!({})).await)
        .parse()
        .expect("a count");
    for _ in 0..5 {
        let again = s.list_all("tools/list", "tools").await;
        assert_eq!(names(&again), names(&first));
    }
    let after: u64 = text(&call(&mut s, "one__lists", json!({})).await)
        .parse()
        .expect("a count");
    assert_eq!(after, before, "lists were answered from the catalog");

    // The backend adds a tool and says so: the gateway re-reads and
    // re-announces.
    let mut stream = s.get_stream(None).await;
    let added = text(&call(&mut s, "two__add_tool", json!({})).await);
    assert_eq!(added, "extra_0");
    let mut announced = false;
    for _ in 0..20 {
        match stream.next_message(Duration::from_secs(5)).await {
            Some(m) if m["method"] == "notifications/tools/list_changed" => {
                announced = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(announced, "list_changed reached the client");
    let fresh = names(&s.list_all("tools/list", "tools").await);
    assert!(fresh.contains(&"two__extra_0".to_owned()), "{fresh:?}");
    let rpc = call(&mut s, "two__extra_0", json!({"a": 1, "b": 1})).await;
    assert_eq!(text(&rpc), r#"two:extra_0:{"a": 1, "b": 1}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_from_two_backends_at_once_reaches_the_right_calls() {
    let backends = format!(
        "{}{}",
        paged_backend("one", 1, 100, ""),
        paged_backend("two", 1, 100, "")
    );
    let gw = gateway("", &backends);
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let (id_one, mut one) = s
        .open_request(
            "tools/call",
            json!({"name": "one__slow", "arguments": {"steps": 4}, "_meta": {"progressToken": "tok-one"}}),
        )
        .await;
    let (id_two, mut two) = s
        .open_request(
            "tools/call",
            json!({"name": "two__slow", "arguments": {"steps": 4}, "_meta": {"progressToken": 7}}),
        )
        .await;
    let (m_one, m_two) = tokio::join!(
        one.until_response(&id_one, Duration::from_secs(20)),
        two.until_response(&id_two, Duration::from_secs(20))
    );
    for (messages, token, backend) in [(&m_one, json!("tok-one"), "one"), (&m_two, json!(7), "two")]
    {
        let progress: Vec<&Value> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 4, "{messages:#?}");
        for p in progress {
            assert_eq!(p["params"]["progressToken"], token, "{p}");
            let message = p["params"]["message"].as_str().unwrap_or("");
            assert!(message.starts_with(backend), "{p}");
        }
        let last = messages.last().expect("a response");
        assert_eq!(
            last["result"]["content"][0]["text"],
            format!("{backend} done")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curation_include_exclude_rename_description_pin() {
    let curated = "[backends.tools]\ninclude = [\"tool_*\", \"lists\"]\nexclude = [\"tool_2\"]\nrename = { tool_0 = \"sum\" }\ndescription = { tool_1 = \"pinned a\" }\npin = { tool_1 = { a = 7 } }\n";
    let backends = format!(
        "{}{}",
        paged_backend("cur", 3, 100, curated),
        paged_backend("plain", 1, 100, "")
    );
    let gw = gateway("", &backends);
    for (url, prefix) in [(gw.url(), "cur__"), (gw.server_url("cur"), "")] {
        let mut s = McpSession::initialize(&url, "2025-11-25", &[]).await;
        let tools = s.list_all("tools/list", "tools").await;
        let shown: Vec<String> = names(&tools)
            .into_iter()
            .filter(|n| n.starts_with(prefix) && !n.starts_with("plain__"))
            .collect();
        let want: Vec<String> = ["sum", "tool_1", "lists"]
            .iter()
            .map(|n| format!("{prefix}{n}"))
            .collect();
        assert_eq!(shown, want, "{url}");
        let pinned = tools
            .iter()
            .find(|t| t["name"] == format!("{prefix}tool_1"))
            .expect("tool_1");
        assert_eq!(pinned["description"], "pinned a");
        assert_eq!(
            pinned["inputSchema"]["properties"],
            json!({"b": {"type": "number"}}),
            "{pinned}"
        );
        assert_eq!(pinned["inputSchema"]["required"], json!(["b"]));

        let rpc = call(&mut s, &format!("{prefix}sum"), json!({"a": 1, "b": 2})).await;
        assert_eq!(text(&rpc), r#"cur:tool_0:{"a": 1, "b": 2}"#, "{url}");
        let rpc = call(&mut s, &format!("{prefix}tool_1"), json!({"a": 99, "b": 2})).await;
        assert_eq!(text(&rpc), r#"cur:tool_1:{"a": 7, "b": 2}"#, "{url}");
        for hidden in ["tool_0", "tool_2", "add_tool", "slow"] {
            let rpc = call(
                &mut s,
                &format!("{prefix}{hidden}"),
                json!({"a": 1, "b": 1}),
            )
            .await;
            assert_eq!(error_code(&rpc), -32602, "{url} {hidden}: {rpc}");
        }
    }
}

async fn try_initialize(url: &str) -> Value {
    let r = crate::util::http::post_json(
        url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
    )
    .await;
    r.rpc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_test_partial_leaves_it_out_strict_fails_then_it_reappears() {
    let mut py = PyDemoServer::start_sse();
    let port = py.port();
    let backends = format!(
        "[[backends]]\nname = \"py\"\ntransport = \"sse\"\nurl = \"{}\"\ntimeout_s = 5\n{}",
        py.sse_url(),
        paged_backend("local", 2, 100, "")
    );
    let partial = gateway("catalog_ttl_s = 0", &backends);
    let strict = gateway("failure_mode = \"strict\"\ncatalog_ttl_s = 0", &backends);
    let mut p = McpSession::initialize(&partial.url(), "2025-11-25", &[]).await;
    let mut s = McpSession::initialize(&strict.url(), "2025-11-25", &[]).await;
    for session in [&mut p, &mut s] {
        let all = names(&session.list_all("tools/list", "tools").await);
        assert!(all.contains(&"py__echo".to_owned()), "{all:?}");
        assert!(all.contains(&"local__tool_0".to_owned()), "{all:?}");
    }

    py.kill();
    // partial: the dead backend is left out, its calls get -32010, the
    // other backend keeps serving.
    let all = names(&p.list_all("tools/list", "tools").await);
    assert!(!all.iter().any(|n| n.starts_with("py__")), "{all:?}");
    assert!(all.contains(&"local__tool_0".to_owned()), "{all:?}");
    let rpc = call(&mut p, "py__echo", json!({"message": "hi"})).await;
    assert_eq!(error_code(&rpc), -32010, "{rpc}");
    assert_eq!(rpc["error"]["data"]["backend"], "py", "{rpc}");
    let rpc = call(&mut p, "local__tool_0", json!({"a": 1, "b": 2})).await;
    assert_eq!(text(&rpc), r#"local:tool_0:{"a": 1, "b": 2}"#);
    partial.wait_for_log(Duration::from_secs(5), |l| {
        l["fields"]["message"] == "backend left out of a merged list"
    });
    // strict: lists and new sessions fail as a whole.
    let rpc = s.request("tools/list", json!({})).await;
    assert_eq!(error_code(&rpc), -32010, "{rpc}");
    let rpc = try_initialize(&strict.url()).await;
    assert_eq!(error_code(&rpc), -32010, "{rpc}");

    // It comes back on the same port: both modes list it again.
    let _py = PyDemoServer::start_sse_on(port);
    for session in [&mut p, &mut s] {
        let mut back = false;
        for _ in 0..40 {
            let rpc = session.request("tools/list", json!({})).await;
            if rpc.get("result").is_some() {
                let all = names(&session.list_all("tools/list", "tools").await);
                if all.contains(&"py__echo".to_owned()) {
                    back = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(back, "the restarted backend reappears");
        let rpc = call(session, "py__echo", json!({"message": "back"})).await;
        assert_eq!(text(&rpc), "back");
    }
}

/// The keys of a scenario's output that must match the server's own answers
/// when the scenario runs through the merged route with `--prefix`.
fn same_keys(direct: &Value, merged: &Value, keys: &[&str], what: &str) {
    for key in keys {
        assert_eq!(
            direct.get(*key),
            merged.get(*key),
            "{what}: {key} differs\ndirect: {direct}\nmerged: {merged}"
        );
        assert!(direct.get(*key).is_some(), "{what}: no {key} in {direct}");
    }
}

/// Three real servers with overlapping tool names (`echo` on two of them,
/// `demo://readme` too) behind one route; the Python SDK client in both eras
/// and the TypeScript SDK client use each through the merged route (names
/// prefixed) and through `/servers/{backend}`.
#[test]
fn sdk_clients_through_the_merged_route_to_three_real_servers() {
    use crate::util::servers::toml_array;
    use crate::util::{DemoServer, Everything, py_client, ts_client};
    let py = PyDemoServer::start_http();
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = {}\n\
         [[backends]]\nname = \"py\"\ntransport = \"streamable_http\"\nurl = {}\n\
         [[backends]]\nname = \"everything\"\ntransport = \"stdio\"\ncommand = {}\n",
        toml_array(&DemoServer::stdio_argv()),
        toml_string(&py.url()),
        toml_array(&Everything::stdio_argv()),
    );
    let gw = Gateway::start(&config);
    let merged = gw.url();
    let demo_keys = [
        "echo",
        "delete_item",
        "slow_count",
        "ask_user",
        "summarize",
        "readme",
        "item_42",
        "greet",
        "complete",
        "elicitations",
        "samplings",
    ];
    // The Python SDK server: `demo://…` resources also exist on `demo`, which
    // is listed first and so serves the bare URIs.
    let py_keys = [
        "echo",
        "delete_item",
        "slow_count",
        "ask_user",
        "summarize",
        "greet",
        "complete",
    ];
    let everything_keys = [
        "echo",
        "get_sum",
        "features_md",
        "simple_prompt",
        "args_prompt",
        "complete",
        "long_running",
    ];

    let direct_demo = py_client("legacy", &DemoServer::stdio_target(), "demo-full", &[]);
    let direct_py = py_client("legacy", &py.url(), "demo-full", &[]);
    let direct_everything = py_client("legacy", &Everything::stdio_target(), "everything", &[]);
    for mode in ["auto", "legacy"] {
        let out = py_client(mode, &merged, "demo-full", &["--prefix", "demo__"]);
        same_keys(&direct_demo, &out, &demo_keys, &format!("py {mode} demo"));
        let out = py_client(mode, &merged, "demo-full", &["--prefix", "py__"]);
        same_keys(&direct_py, &out, &py_keys, &format!("py {mode} py"));
        let out = py_client(mode, &merged, "everything", &["--prefix", "everything__"]);
        same_keys(
            &direct_everything,
            &out,
            &everything_keys,
            &format!("py {mode} everything"),
        );
    }
    let out = ts_client("legacy", &merged, "demo-full", &["--prefix", "demo__"]);
    let ts_direct_demo = ts_client("legacy", &DemoServer::stdio_target(), "demo-full", &[]);
    same_keys(&ts_direct_demo, &out, &demo_keys, "ts demo");
    let out = ts_client(
        "legacy",
        &merged,
        "everything",
        &["--prefix", "everything__"],
    );
    let ts_direct_everything = ts_client("legacy", &Everything::stdio_target(), "everything", &[]);
    same_keys(
        &ts_direct_everything,
        &out,
        &everything_keys,
        "ts everything",
    );

    // One server as itself: the whole scenario is the server's own.
    let out = py_client("legacy", &gw.server_url("py"), "demo-full", &[]);
    assert_eq!(out, direct_py, "py legacy /servers/py");
    let out = ts_client("legacy", &gw.server_url("everything"), "everything", &[]);
    assert_eq!(out, ts_direct_everything, "ts /servers/everything");
}

/// `examples/two-backends.toml`, with its commands pointed at this build and
/// the installed server-everything, serves what its comments promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_example_serves_what_it_says() {
    use crate::util::servers::toml_array;
    use crate::util::{DemoServer, Everything};
    let path = crate::util::drivers::repo_root().join("examples/two-backends.toml");
    let example = std::fs::read_to_string(&path).expect("the example");
    let config = example
        .replace("addr = \"127.0.0.1:8080\"", "addr = \"127.0.0.1:0\"")
        .replace(
            "admin_addr = \"127.0.0.1:9090\"",
            "admin_addr = \"127.0.0.1:0\"",
        )
        .replace(
            "[\"mcp-gateway\", \"demo-server\"]",
            &toml_array(&DemoServer::stdio_argv()),
        )
        .replace(
            "[\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]",
            &toml_array(&Everything::stdio_argv()),
        );
    assert_ne!(config, example, "the example's commands were replaced");
    let gw = Gateway::start(&config);
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let tools = s.list_all("tools/list", "tools").await;
    let everything: Vec<String> = names(&tools)
        .into_iter()
        .filter(|n| n.starts_with("everything__"))
        .collect();
    assert!(
        everything.contains(&"everything__sum".to_owned()),
        "{everything:?}"
    );
    assert!(
        everything.contains(&"everything__echo".to_owned()),
        "{everything:?}"
    );
    assert!(
        !everything
            .iter()
            .any(|n| n == "everything__get-env" || n == "everything__get-sum"),
        "{everything:?}"
    );
    assert!(names(&tools).contains(&"demo__echo".to_owned()));
    let rpc = call(&mut s, "everything__sum", json!({"b": 41})).await;
    assert!(text(&rpc).contains("42"), "{rpc}");
    let rpc = call(&mut s, "everything__get-env", json!({})).await;
    assert_eq!(error_code(&rpc), -32602, "{rpc}");
    let rpc = call(&mut s, "demo__echo", json!({"message": "hi"})).await;
    assert_eq!(text(&rpc), "hi");
}

/// A stateless client's `subscriptions/listen` on the merged route: one
/// acknowledgement for both backends (one handshake-era, one 2026-07-28),
/// then list_changed from either, and resources/updated under the public
/// `{backend}+{uri}` of a URI both backends list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_fans_out_to_the_backends_with_one_acknowledgement() {
    use crate::util::DemoServer;
    use crate::util::http::{modern_body, modern_headers, modern_request, open_stream};
    use crate::util::servers::toml_array;
    let demo = toml_array(&DemoServer::stdio_argv());
    let gw = Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"old\"\ntransport = \"stdio\"\nprotocol = \"2025-11-25\"\ncommand = {demo}\n\
         [[backends]]\nname = \"new\"\ntransport = \"stdio\"\ncommand = {demo}\n"
    ));
    let url = gw.url();
    // Both list demo://counter: the merged list tells them apart.
    let r = modern_request(&url, 1, "resources/list", json!({}), &[]).await;
    let mut uris: Vec<String> = Vec::new();
    let mut body = r.rpc();
    for _ in 0..10 {
        for res in body["result"]["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            uris.push(res["uri"].as_str().unwrap_or("").to_owned());
        }
        match body["result"].get("nextCursor") {
            Some(c) if !c.is_null() => {
                body = modern_request(&url, 1, "resources/list", json!({"cursor": c}), &[])
                    .await
                    .rpc();
            }
            _ => break,
        }
    }
    assert!(uris.contains(&"old+demo://counter".to_owned()), "{uris:?}");
    assert!(uris.contains(&"new+demo://counter".to_owned()), "{uris:?}");
    assert!(!uris.contains(&"demo://counter".to_owned()), "{uris:?}");

    let params = json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["new+demo://counter"]}});
    let headers = modern_headers("subscriptions/listen", &params);
    let hr: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut stream = open_stream(
        &url,
        &hr,
        Some(&modern_body(
            json!("listen-1"),
            "subscriptions/listen",
            params,
        )),
    )
    .await;
    assert_eq!(stream.status, 200);
    let first = stream
        .next_message(Duration::from_secs(15))
        .await
        .expect("an acknowledgement");
    assert_eq!(
        first["method"], "notifications/subscriptions/acknowledged",
        "{first}"
    );
    assert_eq!(
        first["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    assert_eq!(
        first["params"]["notifications"]["toolsListChanged"], true,
        "{first}"
    );
    assert_eq!(
        first["params"]["notifications"]["resourceSubscriptions"],
        json!(["new+demo://counter"]),
        "{first}"
    );
    let mut seen = Vec::new();
    for (i, (tool, wanted)) in [
        ("old__toggle_extra_tool", "notifications/tools/list_changed"),
        ("new__toggle_extra_tool", "notifications/tools/list_changed"),
        ("new__bump_counter", "notifications/resources/updated"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = modern_request(
            &url,
            10 + i as i64,
            "tools/call",
            json!({"name": tool, "arguments": {}}),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{tool}: {r:?}");
        let mut found = None;
        for _ in 0..20 {
            match stream.next_message(Duration::from_secs(10)).await {
                Some(m) if m["method"] == "notifications/subscriptions/acknowledged" => {
                    panic!("a second acknowledgement: {m}")
                }
                Some(m) if m["method"] == wanted => {
                    found = Some(m);
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        let m = found.unwrap_or_else(|| panic!("{tool}: no {wanted}"));
        assert_eq!(
            m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-1",
            "{m}"
        );
        seen.push(m);
    }
    assert_eq!(
        seen[2]["params"]["uri"], "new+demo://counter",
        "{}",
        seen[2]
    );
}

/// A handshake-era client subscribes to the same URI on two backends (one
/// of each era) by its public `{backend}+{uri}` forms; each update reaches
/// its GET stream under the form it subscribed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_come_back_under_the_subscribed_public_uri() {
    use crate::util::DemoServer;
    use crate::util::servers::toml_array;
    let demo = toml_array(&DemoServer::stdio_argv());
    let gw = Gateway::start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"old\"\ntransport = \"stdio\"\nprotocol = \"2025-11-25\"\ncommand = {demo}\n\
         [[backends]]\nname = \"new\"\ntransport = \"stdio\"\ncommand = {demo}\n"
    ));
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let mut stream = s.get_stream(None).await;
    for backend in ["old", "new"] {
        let rpc = s
            .request(
                "resources/subscribe",
                json!({"uri": format!("{backend}+demo://counter")}),
            )
            .await;
        assert!(rpc.get("result").is_some(), "{backend}: {rpc}");
        let rpc = s
            .request(
                "resources/read",
                json!({"uri": format!("{backend}+demo://counter")}),
            )
            .await;
        assert!(rpc.get("result").is_some(), "{backend}: {rpc}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for backend in ["old", "new"] {
        let rpc = call(&mut s, &format!("{backend}__bump_counter"), json!({})).await;
        assert!(rpc.get("result").is_some(), "{rpc}");
        let mut uri = None;
        for _ in 0..20 {
            match stream.next_message(Duration::from_secs(10)).await {
                Some(m) if m["method"] == "notifications/resources/updated" => {
                    uri = m["params"]["uri"].as_str().map(str::to_owned);
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        assert_eq!(
            uri.as_deref(),
            Some(format!("{backend}+demo://counter").as_str())
        );
    }
}

/// A server's tool whose prefixed name would break the 128-character rule
/// is left out of the merged list with an error naming it, never truncated;
/// on its own route, where nothing is prefixed, it is listed as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_name_too_long_once_prefixed_is_left_out_loudly() {
    let long = "t".repeat(126);
    let backends = format!(
        "{}{}",
        paged_backend(
            "a",
            1,
            100,
            &format!("env = {{ PAGED_EXTRA_TOOL = \"{long}\" }}")
        ),
        paged_backend("b", 1, 100, "")
    );
    let gw = gateway("", &backends);
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let merged = names(&s.list_all("tools/list", "tools").await);
    assert!(merged.contains(&"a__tool_0".to_owned()), "{merged:?}");
    assert!(
        !merged.iter().any(|n| n.contains(&long[..100])),
        "{merged:?}"
    );
    assert!(merged.iter().all(|n| n.len() <= 128));
    let line = gw.wait_for_log(Duration::from_secs(5), |l| {
        l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("tool left out of the merged list"))
    });
    assert_eq!(line["fields"]["tool"], long.as_str(), "{line}");
    assert!(
        line["fields"]["problem"]
            .as_str()
            .unwrap_or("")
            .contains("129 characters"),
        "{line}"
    );
    let mut own = McpSession::initialize(&gw.server_url("a"), "2025-11-25", &[]).await;
    let listed = names(&own.list_all("tools/list", "tools").await);
    assert!(listed.contains(&long), "{listed:?}");
}

/// Renamed and pinned tools of a 2026-07-28 HTTP server, called by a
/// stateless client: the server sees its own name in `Mcp-Name` (rebuilt
/// from the body, or it would answer -32020) and the pinned argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_tool_reaches_a_stateless_http_server_under_its_own_name() {
    use crate::util::http::modern_request;
    let py = PyDemoServer::start_http();
    let backends = format!(
        "[[backends]]\nname = \"py\"\ntransport = \"streamable_http\"\nprotocol = \"2026-07-28\"\nurl = {}\n\
         [backends.tools]\nrename = {{ echo = \"say\" }}\npin = {{ echo = {{ message = \"pinned\" }} }}\n{}",
        toml_string(&py.url()),
        paged_backend("other", 1, 100, "")
    );
    let gw = gateway("", &backends);
    let url = gw.url();
    let r = modern_request(
        &url,
        1,
        "tools/call",
        json!({"name": "py__say", "arguments": {"message": "client"}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(text(&r.rpc()), "pinned", "{r:?}");
    let r = modern_request(
        &url,
        2,
        "tools/call",
        json!({"name": "py__echo", "arguments": {"message": "x"}}),
        &[],
    )
    .await;
    assert_eq!(error_code(&r.rpc()), -32602, "{r:?}");
    let r = modern_request(&url, 3, "tools/list", json!({}), &[]).await;
    let body = r.rpc();
    assert!(body["result"]["ttlMs"].is_u64(), "{body}");
    assert_eq!(body["result"]["cacheScope"], "private", "{body}");
    let listed = names(body["result"]["tools"].as_array().expect("tools"));
    let say = body["result"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "py__say"))
        .cloned()
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert!(
        say["inputSchema"]["properties"].get("message").is_none(),
        "{say}"
    );
}
