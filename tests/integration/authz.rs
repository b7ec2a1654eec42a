//! Authorization (issue 7): Cedar policies over every method, filtered
//! lists, tenants, routes by claim and origin, `policy test`, `check`, and
//! hot reload — against the real binary, real backends and the official
//! SDK clients.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::auth::{EchoHeaders, mint_with_env};
use crate::util::gateway::gateway_bin;
use crate::util::http::{McpSession, modern_request, post_json};
use crate::util::process::run_with_timeout;
use crate::util::{DemoServer, Gateway, TestDir, py_client, ts_client};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://gw.test/mcp";
const SECRET: &str = "an-hs256-secret-for-the-authz-tests-0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> String {
    let p = repo().join("examples/policies").join(name);
    format!("{:?}", p.display().to_string())
}

/// A JWT for the gateway: `sub`, tenant, space-separated scopes, extra
/// `token mint` arguments.
fn token(sub: &str, tenant: &str, scopes: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "--hs256-secret-env",
        "GW_JWT_SECRET",
        "--iss",
        ISS,
        "--aud",
        AUD,
        "--sub",
        sub,
        "--tenant",
        tenant,
    ];
    if !scopes.is_empty() {
        args.extend(["--scope", scopes]);
    }
    args.extend_from_slice(extra);
    mint_with_env(&args, &[("GW_JWT_SECRET", SECRET)])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Two real backends: `demo` (the built-in server over stdio) and `vault`
/// (a Python server that logs every request it gets). Tenant acme reaches
/// both, globex only demo. Read-only agents get demo only, with their own
/// policies; requests from a local dashboard origin get demo only.
fn start(vault: &EchoHeaders, policy_section: &str) -> Gateway {
    let demo = DemoServer::stdio_argv();
    let config = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"

[auth]
mode = "jwt"
issuer = "{ISS}"
audience = "{AUD}"
hs256_secret_env = "GW_JWT_SECRET"

[[backends]]
name = "demo"
transport = "stdio"
command = {demo:?}

{vault_toml}

{policy_section}

[[tenants]]
name = "acme"
backends = ["demo", "vault"]

[[tenants]]
name = "globex"
backends = ["demo"]

[[routes]]
name = "readonly-agents"
claims = {{ agent_type = "readonly" }}
backends = ["demo"]
policy_files = [{scopes}, {ro}]

[[routes]]
name = "local-dashboard"
origin = "http://localhost:*"
backends = ["demo"]
"#,
        vault_toml = vault.backend_toml("vault", ""),
        scopes = example("scopes.cedar"),
        ro = example("read-only.cedar"),
    );
    Gateway::builder(&config)
        .env("GW_JWT_SECRET", SECRET)
        .start()
}

fn example_policies() -> String {
    format!(
        "[policy]\nfiles = [{}, {}, {}, {}]\n",
        example("scopes.cedar"),
        example("read-only.cedar"),
        example("delegation.cedar"),
        example("tenants.cedar"),
    )
}

fn names(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

fn tool_names(rpc: &Value) -> Vec<String> {
    names(&rpc["result"]["tools"])
}

/// Every page of the session's tools (a merged list is one page per backend).
async fn all_tool_names(s: &mut McpSession) -> Vec<String> {
    names(&Value::Array(s.list_all("tools/list", "tools").await))
}

async fn session(url: &str, token: &str, extra: &[(&str, &str)]) -> McpSession {
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    McpSession::initialize(url, "2025-11-25", &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_py_sdk_lists_are_filtered_and_denied_calls_never_reach_the_backend() {
    let vault = EchoHeaders::start();
    let gw = start(&vault, &example_policies());
    let alice = token(
        "alice",
        "acme",
        "tools:call resources:read prompts:get",
        &[],
    );
    let header = format!("Authorization: Bearer {alice}");
    let out = py_client(
        "legacy",
        &gw.url(),
        "tools",
        &[
            "--header",
            &header,
            "--call",
            "demo__echo",
            "--args",
            r#"{"message": "hi"}"#,
            "--call",
            "demo__delete_item",
            "--args",
            r#"{"id": "1"}"#,
            "--call",
            "vault__echo",
            "--args",
            r#"{"message": "hi"}"#,
        ],
    );
    let listed = names(&out["tools"]);
    assert!(listed.contains(&"demo__echo".to_owned()), "{out}");
    // Destructive (annotated, or by the spec's default for the vault's
    // unannotated tools) without tools:destructive: not listed.
    for hidden in ["demo__delete_item", "vault__echo", "vault__echo_headers"] {
        assert!(
            !listed.contains(&hidden.to_owned()),
            "{hidden} listed: {out}"
        );
    }
    let calls = out["calls"].as_array().expect("calls");
    assert_eq!(calls[0]["result"]["content"][0]["text"], "hi", "{out}");
    let denied = &calls[1]["result"]["error"];
    assert_eq!(denied["code"], -32003, "{out}");
    let policies = denied["data"]["policies"].to_string();
    assert!(
        policies.contains("destructive-needs-scope") && policies.contains("delete-item-scope"),
        "{out}"
    );
    assert!(denied["data"]["reason"].is_string(), "{out}");
    assert_eq!(calls[2]["result"]["error"]["code"], -32003, "{out}");
    assert_eq!(vault.tool_calls(), 0, "a denied call reached the backend");

    // The same call with the scope that policy asks for goes through.
    let admin = token("root", "acme", "tools:call tools:destructive", &[]);
    let mut s = session(&gw.url(), &admin, &[]).await;
    let rpc = s
        .request(
            "tools/call",
            json!({"name": "vault__echo", "arguments": {"message": "ok"}}),
        )
        .await;
    assert_eq!(rpc["result"]["content"][0]["text"], "ok", "{rpc}");
    assert_eq!(vault.wait_tool_calls(1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_ts_sdk_reader_gets_32003_on_calls_and_prompt_gets_but_reads() {
    let vault = EchoHeaders::start();
    let gw = start(&vault, &example_policies());
    let reader = token("rita", "acme", "resources:read", &[]);
    let header = format!("Authorization: Bearer {reader}");
    let out = ts_client(
        "legacy",
        &gw.server_url("demo"),
        "demo-full",
        &["--header", &header],
    );
    assert_eq!(out["tools"], json!([]), "no tool is callable: {out}");
    assert_eq!(out["prompts"], json!([]), "no prompt is gettable: {out}");
    for denied in ["echo", "delete_item", "summarize", "greet", "complete"] {
        assert_eq!(out[denied]["error"]["code"], -32003, "{denied}: {out}");
    }
    assert!(out["readme"]["contents"].is_array(), "{out}");
    assert!(out["item_42"]["contents"].is_array(), "{out}");
    let resources = out["resources"].to_string();
    assert!(resources.contains("demo://readme"), "{out}");

    // Without resources:read a read is denied, and so is a subscription.
    let caller = token("carl", "acme", "tools:call", &[]);
    let mut s = session(&gw.server_url("demo"), &caller, &[]).await;
    for method in ["resources/read", "resources/subscribe"] {
        let rpc = s.request(method, json!({"uri": "demo://readme"})).await;
        assert_eq!(rpc["error"]["code"], -32003, "{method}: {rpc}");
        let reason = rpc["error"]["data"]["reason"].as_str().unwrap_or("");
        assert!(reason.contains("no policy permits"), "{rpc}");
    }
    let rpc = s.request("resources/list", json!({})).await;
    assert_eq!(rpc["result"]["resources"], json!([]), "{rpc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_tenant_isolation_names_uris_paths_and_sessions() {
    let vault = EchoHeaders::start();
    let gw = start(&vault, &example_policies());
    let scopes = "tools:call tools:destructive resources:read prompts:get";
    let alice = token("alice", "acme", scopes, &[]);
    let bob = token("bob", "globex", scopes, &[]);

    let mut a = session(&gw.url(), &alice, &[]).await;
    let a_tools = all_tool_names(&mut a).await;
    assert!(a_tools.contains(&"vault__echo".to_owned()), "{a_tools:?}");

    let mut b = session(&gw.url(), &bob, &[]).await;
    let b_tools = all_tool_names(&mut b).await;
    assert!(!b_tools.is_empty(), "bob sees his tenant's tools");
    assert!(
        b_tools.iter().all(|t| t.starts_with("demo__")),
        "{b_tools:?}"
    );
    // A guessed name of the other tenant's backend: unknown, never sent.
    let rpc = b
        .request(
            "tools/call",
            json!({"name": "vault__echo", "arguments": {}}),
        )
        .await;
    assert_ne!(rpc["error"]["code"], Value::Null, "{rpc}");
    assert!(rpc["result"].is_null(), "{rpc}");
    // Its one-backend route does not exist for bob (404, as for no backend).
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let bob_auth = bearer(&bob);
    let resp = post_json(
        &gw.server_url("vault"),
        &[("authorization", &bob_auth)],
        &init,
    )
    .await;
    assert_eq!(resp.status, 404, "{resp:?}");
    let resp = post_json(
        &gw.server_url("nosuch"),
        &[("authorization", &bob_auth)],
        &init,
    )
    .await;
    assert_eq!(resp.status, 404, "{resp:?}");
    // Alice's session id presented by bob is unknown to him.
    let alice_session = a.session_id.clone().expect("session id");
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}});
    let resp = post_json(
        &gw.url(),
        &[
            ("authorization", &bob_auth),
            ("mcp-session-id", &alice_session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        &list,
    )
    .await;
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(vault.tool_calls(), 0);

    // 2026-07-28: bob's filtered list is per caller.
    let resp = modern_request(
        &gw.url(),
        1,
        "tools/list",
        json!({}),
        &[("authorization", &bob_auth)],
    )
    .await;
    let rpc = resp.rpc();
    assert_eq!(rpc["result"]["cacheScope"], "private", "{rpc}");
    assert!(
        tool_names(&rpc).iter().all(|t| t.starts_with("demo__")),
        "{rpc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_routes_select_backends_and_policies_by_claim_and_origin() {
    let vault = EchoHeaders::start();
    let gw = start(&vault, &example_policies());
    // agent_type = readonly → demo only, decided by the route's own set:
    // read-only tools only, although the token holds tools:destructive.
    let agent = token(
        "ro-bot",
        "acme",
        "tools:call tools:destructive items:delete",
        &["--claim", "agent_type=readonly"],
    );
    let mut s = session(&gw.url(), &agent, &[]).await;
    let tools = all_tool_names(&mut s).await;
    assert!(tools.contains(&"demo__echo".to_owned()), "{tools:?}");
    for hidden in ["demo__delete_item", "demo__bump_counter", "vault__echo"] {
        assert!(!tools.contains(&hidden.to_owned()), "{hidden}: {tools:?}");
    }
    let rpc = s
        .request(
            "tools/call",
            json!({"name": "demo__bump_counter", "arguments": {}}),
        )
        .await;
    assert_eq!(rpc["error"]["code"], -32003, "{rpc}");
    assert_eq!(
        rpc["error"]["data"]["policies"],
        json!(["readonly-agents"]),
        "{rpc}"
    );

    // The same admin sees the vault, except from the local dashboard.
    let admin = token("root", "acme", "tools:call tools:destructive", &[]);
    let mut s = session(&gw.url(), &admin, &[]).await;
    assert!(
        all_tool_names(&mut s)
            .await
            .contains(&"vault__echo".to_owned())
    );
    let mut s = session(&gw.url(), &admin, &[("origin", "http://localhost:7777")]).await;
    let tools = all_tool_names(&mut s).await;
    assert!(
        !tools.is_empty() && tools.iter().all(|t| t.starts_with("demo__")),
        "{tools:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_a_policy_that_errors_at_evaluation_denies_and_logs_why() {
    let vault = EchoHeaders::start();
    let gw = vault_gateway(
        &vault,
        "@id(\"allow\") permit(principal, action, resource);\n\
         @id(\"overflow\") forbid(principal, action == Mcp::Action::\"tools/call\", resource)\n  \
         when { (principal.delegation_depth + 2) * 9223372036854775807 > 0 };\n",
    );
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let rpc = s
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "x"}}),
        )
        .await;
    assert_eq!(rpc["error"]["code"], -32003, "{rpc}");
    assert_eq!(
        rpc["error"]["data"]["policies"],
        json!(["overflow"]),
        "{rpc}"
    );
    assert_eq!(vault.tool_calls(), 0);
    gw.wait_for_log(Duration::from_secs(5), |l| {
        l.to_string().contains("policy evaluation error")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_without_policies_every_request_is_denied() {
    let vault = EchoHeaders::start();
    let gw = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n{}\n[policy]\nfiles = [\"empty.cedar\"]\n",
        vault.backend_toml("vault", "")
    ))
    .file("empty.cedar", "// nothing\n")
    .start();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let rpc = post_json(&gw.url(), &[], &init).await.rpc();
    assert_eq!(rpc["error"]["code"], -32003, "{rpc}");
    assert!(
        rpc["error"]["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no policy"),
        "{rpc}"
    );
}

fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(gateway_bin());
    cmd.args(args).current_dir(dir);
    let out = run_with_timeout("mcp-gateway", cmd, Duration::from_secs(60));
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

#[test]
fn authz_check_reports_schema_errors_with_their_position() {
    let dir = TestDir::new("authz-check");
    dir.write(
        "gw.toml",
        "[[backends]]\nname = \"d\"\ntransport = \"stdio\"\ncommand = [\"x\"]\n[policy]\nfiles = [\"p/*.cedar\"]\n",
    );
    dir.write("p/good.cedar", "permit(principal, action, resource);\n");
    dir.write(
        "p/bad.cedar",
        "// a typo in an attribute\npermit(principal, action == Mcp::Action::\"tools/call\", resource is Mcp::Tool)\n  when { resource.destructiv };\n",
    );
    let (code, _, stderr) = run(&["check", "--config", "gw.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("bad.cedar:3:10: policy \"bad.cedar#0\""),
        "{stderr}"
    );
    dir.write("p/bad.cedar", "permit(principal, action, resource);\n");
    let (code, stdout, stderr) = run(&["check", "--config", "gw.toml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("policies: 2 (2 files)"), "{stdout}");
}

#[test]
fn authz_policy_test_runs_the_example_cases() {
    let root = repo();
    let (code, stdout, stderr) = run(
        &[
            "policy",
            "test",
            "--config",
            "examples/policy-test/gateway.toml",
            "examples/policy-test/cases.toml",
        ],
        &root,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let ok = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(ok >= 100, "{ok} cases\n{stdout}");
    for action in [
        "tools/call",
        "resources/read",
        "prompts/get",
        "initialize",
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/subscribe",
        "subscriptions/listen",
        "completion/complete",
        "tasks/get",
        "vendor/custom",
    ] {
        let shown = std::fs::read_to_string(root.join("examples/policy-test/cases.toml"))
            .unwrap_or_default()
            .contains(&format!("method = \"{action}\""));
        assert!(shown, "no case for {action}");
    }

    // A wrong expectation is a failure, with the deciding policies shown.
    let dir = TestDir::new("authz-cases");
    dir.write(
        "cases.toml",
        "[[cases]]\nname = \"alice deletes\"\nprincipal = { sub = \"alice\", tenant = \"acme\", scopes = [\"tools:call\"] }\n\
         method = \"tools/call\"\ntarget = { backend = \"demo\", tool = \"delete_item\", annotations = { destructiveHint = true } }\n\
         expect = \"allow\"\n",
    );
    let cases = dir.path().join("cases.toml").display().to_string();
    let (code, stdout, _) = run(
        &[
            "policy",
            "test",
            "--config",
            "examples/policy-test/gateway.toml",
            &cases,
        ],
        &root,
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("destructive-needs-scope"),
        "{stdout}"
    );
}

/// A gateway in front of `vault` alone, deciding with `policy` (p.cedar).
fn vault_gateway(vault: &EchoHeaders, policy: &str) -> Gateway {
    Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n{}\n\
         [policy]\nfiles = [\"p.cedar\"]\n",
        vault.backend_toml("vault", "")
    ))
    .file("p.cedar", policy)
    .start()
}

const ALLOW: &str = "@id(\"allow\") permit(principal, action, resource);\n";
const DENY_CALLS: &str = "@id(\"allow\") permit(principal, action, resource);\n\
    @id(\"no-calls\") forbid(principal, action == Mcp::Action::\"tools/call\", resource);\n";

async fn reload(gw: &Gateway) -> (u16, Value) {
    let resp = post_json(&format!("{}/admin/reload", gw.admin_url()), &[], &json!({})).await;
    let body = serde_json::from_str(&resp.body).unwrap_or(Value::Null);
    (resp.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_reload_under_load_every_call_gets_the_set_in_force() {
    let gw = Gateway::builder(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = {:?}\n\
         [policy]\nfiles = [\"p.cedar\"]\n",
        DemoServer::stdio_argv()
    ))
    .file("p.cedar", ALLOW)
    .start();
    let policy_file = gw.dir().join("p.cedar");
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let call = json!({"name": "echo", "arguments": {"message": "m"}});

    // A second client keeps calling through every flip; its calls may land
    // on either side of a swap, but never fail for another reason.
    let url = gw.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let stop = stop.clone();
        let call = call.clone();
        tokio::spawn(async move {
            let mut other = McpSession::initialize(&url, "2025-11-25", &[]).await;
            let (mut allowed, mut denied) = (0, 0);
            for _ in 0..5000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let rpc = other.request("tools/call", call.clone()).await;
                if rpc["result"]["content"][0]["text"] == "m" {
                    allowed += 1;
                } else if rpc["error"]["code"] == -32003 {
                    denied += 1;
                } else {
                    panic!("a call failed for another reason: {rpc}");
                }
            }
            (allowed, denied)
        })
    };

    let started = Instant::now();
    for (round, (text, allow)) in [
        (ALLOW, true),
        (DENY_CALLS, false),
        (ALLOW, true),
        (DENY_CALLS, false),
        (ALLOW, true),
    ]
    .into_iter()
    .enumerate()
    {
        if round > 0 {
            std::fs::write(&policy_file, text).expect("write policy");
            let (status, body) = reload(&gw).await;
            assert_eq!(status, 200, "{body}");
        }
        for _ in 0..20 {
            let rpc = s.request("tools/call", call.clone()).await;
            if allow {
                assert_eq!(
                    rpc["result"]["content"][0]["text"], "m",
                    "round {round}: {rpc}"
                );
            } else {
                assert_eq!(rpc["error"]["code"], -32003, "round {round}: {rpc}");
                assert_eq!(rpc["error"]["data"]["policies"], json!(["no-calls"]));
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));

    // An invalid set is refused with its position; the old one stays.
    std::fs::write(
        &policy_file,
        "permit(principal, action, resource)\n  when { principal.nosuch };\n",
    )
    .expect("write policy");
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"].to_string().contains("p.cedar:2:"), "{body}");
    let rpc = s.request("tools/call", call.clone()).await;
    assert_eq!(rpc["result"]["content"][0]["text"], "m", "{rpc}");

    // SIGHUP reloads too.
    std::fs::write(&policy_file, DENY_CALLS).expect("write policy");
    let status = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    // Earlier reloads logged the same line, so wait for the effect itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rpc = loop {
        let rpc = s.request("tools/call", call.clone()).await;
        if rpc["error"]["code"] == -32003 || Instant::now() > deadline {
            break rpc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rpc["error"]["code"], -32003, "{rpc}");
    assert_eq!(
        rpc["error"]["data"]["policies"],
        json!(["no-calls"]),
        "{rpc}"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (allowed, denied) = background.await.expect("background client");
    assert!(allowed > 0, "the background client was never allowed");
    let _ = denied;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_context_carries_origin_remote_addr_and_client_name() {
    let vault = EchoHeaders::start();
    let gw = vault_gateway(
        &vault,
        "@id(\"allow\") permit(principal, action, resource);\n\
         @id(\"local-dashboard-only\") forbid(principal, action == Mcp::Action::\"tools/call\", resource)\n  \
         unless { context has remote_addr && context.remote_addr like \"127.0.0.1:*\" &&\n  \
         context has origin && context.origin == \"http://localhost:1234\" &&\n  \
         context has client_name && context.client_name == \"gateway-tests\" &&\n  \
         context.transport == \"streamable_http\" && context.protocol_version == \"2025-11-25\" };\n",
    );
    let call = json!({"name": "echo", "arguments": {"message": "x"}});
    let mut s = McpSession::initialize(
        &gw.url(),
        "2025-11-25",
        &[("origin", "http://localhost:1234")],
    )
    .await;
    let rpc = s.request("tools/call", call.clone()).await;
    assert_eq!(rpc["result"]["content"][0]["text"], "x", "{rpc}");
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    let rpc = s.request("tools/call", call).await;
    assert_eq!(rpc["error"]["code"], -32003, "{rpc}");
    assert_eq!(vault.wait_tool_calls(1), 1);
}

/// Tool annotations come from the backend's `tools/list`: it is not asked
/// for when the policies permit every call unconditionally, asked once when
/// a policy reads them, and a name the list does not hold is remembered
/// (calls of unknown names do not each page through the list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_annotations_are_fetched_only_when_policies_read_them() {
    let lists = |backend: &EchoHeaders| {
        backend
            .requests()
            .iter()
            .filter(|r| r["method"] == "tools/list")
            .count()
    };
    let echo = json!({"name": "echo", "arguments": {"message": "m"}});

    let allow_all = EchoHeaders::start();
    let gw = vault_gateway(&allow_all, ALLOW);
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    for _ in 0..2 {
        let r = s.request("tools/call", echo.clone()).await;
        assert_eq!(r["result"]["content"][0]["text"], "m", "{r}");
    }
    assert_eq!(allow_all.wait_tool_calls(2), 2);
    assert_eq!(lists(&allow_all), 0, "{:?}", allow_all.requests());

    let reading = EchoHeaders::start();
    let gw = vault_gateway(
        &reading,
        "@id(\"allow\") permit(principal, action, resource);\n\
         @id(\"no-destructive\") forbid(principal, action == Mcp::Action::\"tools/call\", resource is Mcp::Tool)\n\
         when { resource.destructive && !principal.scopes.contains(\"x\") };\n",
    );
    let mut s = McpSession::initialize(&gw.url(), "2025-11-25", &[]).await;
    for _ in 0..3 {
        let r = s
            .request(
                "tools/call",
                json!({"name": "no-such-tool", "arguments": {}}),
            )
            .await;
        // Not listed: the spec's default annotations (destructive) apply.
        assert_eq!(r["error"]["code"], -32003, "{r}");
    }
    let r = s.request("tools/call", echo.clone()).await;
    assert_eq!(
        r["error"]["code"], -32003,
        "the vault's tools are unannotated: {r}"
    );
    assert_eq!(lists(&reading), 1, "{:?}", reading.requests());
}
