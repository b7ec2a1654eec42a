use cedar_policy::Authorizer;

use super::load::{compile, wildcard};
use super::*;
use crate::auth::{Credential, Principal};
use crate::mcp::{Call, Method, Target};

fn snapshot(text: &str) -> Snapshot {
    let default = match compile(&[], &[("p.cedar".into(), text.into())]) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    Snapshot {
        default,
        configured: true,
        ..Snapshot::default()
    }
}

fn errors(text: &str) -> Vec<String> {
    match compile(&[], &[("p.cedar".into(), text.into())]) {
        Ok(_) => panic!("expected errors for {text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn principal(sub: &str, tenant: Option<&str>, scopes: &[&str], actors: &[&str]) -> Principal {
    let mut p = Principal::new(sub.into(), "jwt", Credential::default());
    p.tenant = tenant.map(str::to_owned);
    p.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    p.actors = actors.iter().map(|s| (*s).to_owned()).collect();
    p
}

fn tool_call(name: &str) -> Call {
    Call {
        method: Method::ToolsCall,
        target: Target::Tool(name.into()),
    }
}

fn ctx(backend: &str, name: &str, facts: ToolFacts) -> Context {
    Context {
        transport: "streamable_http",
        backend: Some(backend.into()),
        name: Some(name.into()),
        tool: Some(facts),
        ..Context::default()
    }
}

fn decide(s: &Snapshot, p: &Principal, call: &Call, c: &Context) -> Decision {
    decide_with(&Authorizer::new(), s, p, call, c)
}

const READ_ONLY: ToolFacts = ToolFacts {
    read_only: true,
    destructive: false,
    idempotent: true,
    open_world: false,
};

#[test]
fn the_schema_parses() {
    assert!(load::schema().is_ok());
}

#[test]
fn syntax_and_schema_errors_have_positions() {
    let e = errors("permit(principal, action, resource)\n\npermit(principal action);\n");
    assert!(e.iter().any(|e| e.starts_with("p.cedar:")), "{e:?}");
    let e = errors(
        "// header\n@id(\"x\")\npermit(principal, action == Mcp::Action::\"tools/call\", resource)\n  when { resource.nosuch };\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("p.cedar:4:10: policy \"x\":"), "{e:?}");
    let e = errors("permit(principal, action == Mcp::Action::\"tools/cal\", resource);");
    assert!(e[0].contains("tools/cal"), "{e:?}");
    let e = errors(
        "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);",
    );
    assert!(e[0].contains("duplicate policy id \"a\""), "{e:?}");
}

#[test]
fn no_policy_denies() {
    let s = Snapshot::default();
    let d = decide(
        &s,
        &principal("u", None, &[], &[]),
        &tool_call("x"),
        &Context::default(),
    );
    assert!(!d.allow);
    assert!(d.reason.contains("no policy"), "{}", d.reason);
    let s = snapshot("");
    assert!(
        !decide(
            &s,
            &principal("u", None, &[], &[]),
            &tool_call("x"),
            &Context::default()
        )
        .allow
    );
}

#[test]
fn scopes_annotations_and_delegation() {
    let s = snapshot(
        r#"
@id("call-with-scope")
permit(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
  when { principal.scopes.contains("tools:call") };
@id("destructive-needs-scope")
forbid(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
  when { resource.destructive && !principal.scopes.contains("tools:destructive") };
@id("delegation-depth")
forbid(principal, action, resource) when { principal.delegation_depth > 1 };
"#,
    );
    let user = principal("alice", Some("acme"), &["tools:call"], &[]);
    let d = decide(
        &s,
        &user,
        &tool_call("demo__echo"),
        &ctx("demo", "echo", READ_ONLY),
    );
    assert!(d.allow, "{d:?}");
    assert_eq!(d.policies, vec!["call-with-scope"]);
    let d = decide(
        &s,
        &user,
        &tool_call("demo__delete"),
        &ctx("demo", "delete", ToolFacts::default()),
    );
    assert!(!d.allow);
    assert_eq!(d.policies, vec!["destructive-needs-scope"]);
    let nobody = principal("bob", None, &[], &[]);
    let d = decide(
        &s,
        &nobody,
        &tool_call("echo"),
        &ctx("demo", "echo", READ_ONLY),
    );
    assert!(!d.allow && d.policies.is_empty(), "{d:?}");
    assert!(
        d.reason.contains("no policy permits \"tools/call\""),
        "{}",
        d.reason
    );
    let chained = principal("alice", None, &["tools:call"], &["agent-1", "agent-2"]);
    let d = decide(
        &s,
        &chained,
        &tool_call("echo"),
        &ctx("demo", "echo", READ_ONLY),
    );
    assert_eq!(d.policies, vec!["delegation-depth"]);
}

#[test]
fn an_evaluation_error_denies_even_when_a_permit_matches() {
    let s = snapshot(
        r#"
@id("allow") permit(principal, action, resource);
@id("overflow") forbid(principal, action, resource)
  when { principal.delegation_depth * 9223372036854775807 > 5 };
"#,
    );
    let p = principal("u", None, &[], &["a", "b"]);
    let d = decide(&s, &p, &tool_call("echo"), &ctx("demo", "echo", READ_ONLY));
    assert!(!d.allow, "{d:?}");
    assert_eq!(d.policies, vec!["overflow"]);
    assert!(d.reason.contains("failed to evaluate"), "{}", d.reason);
}

#[test]
fn tenants_are_parents_of_principals_and_backends() {
    let mut s = snapshot(
        r#"@id("same-tenant") permit(principal, action, resource in Mcp::Tenant::"acme") when { principal in Mcp::Tenant::"acme" };"#,
    );
    s.backend_tenants.insert("docs".into(), vec!["acme".into()]);
    let acme = principal("a", Some("acme"), &[], &[]);
    let globex = principal("g", Some("globex"), &[], &[]);
    let c = ctx("docs", "search", READ_ONLY);
    assert!(decide(&s, &acme, &tool_call("search"), &c).allow);
    assert!(!decide(&s, &globex, &tool_call("search"), &c).allow);
    let other = ctx("other", "search", READ_ONLY);
    assert!(!decide(&s, &acme, &tool_call("search"), &other).allow);
}

#[test]
fn arguments_only_when_exposed() {
    let text = r#"@id("tmp-only") permit(principal, action == Mcp::Action::"tools/call", resource)
  when { context has arguments && context.arguments.hasTag("path") && context.arguments.getTag("path") like "/tmp/*" };"#;
    let mut s = snapshot(text);
    let mut c = ctx("fs", "write", ToolFacts::default());
    let mut args = serde_json::Map::new();
    args.insert("path".into(), "/tmp/x".into());
    c.arguments = Some(args);
    let p = principal("u", None, &[], &[]);
    assert!(!decide(&s, &p, &tool_call("write"), &c).allow);
    s.expose_arguments = true;
    assert!(decide(&s, &p, &tool_call("write"), &c).allow);
}

#[test]
fn wildcards() {
    for (p, t, want) in [
        ("*.cedar", "a.cedar", true),
        ("*.cedar", "a.cedarx", false),
        ("a*", "a", true),
        ("http://*.example.com", "http://x.example.com", true),
        ("/servers/*/mcp", "/servers/docs/mcp", true),
        ("/servers/*/mcp", "/mcp", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(wildcard(p, t), want, "{p} {t}");
    }
}

/// The example config's policies (examples/policies/) load and validate.
#[test]
fn the_example_config_policies_compile() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-gateway.example.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let env = |name: &str| match name {
        "GW_ADMIN_TOKEN" | "BACKEND_TOKEN" => Some("secret".to_owned()),
        _ => None,
    };
    let config = match crate::config::load_str(&text, &path.display().to_string(), &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let snapshot = match Snapshot::load(&config) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert!(snapshot.default.len() >= 10, "{}", snapshot.summary());
    assert!(snapshot.route_sets.contains_key("readonly-agents"));
    assert_eq!(snapshot.tenants.get("acme").map(Vec::len), Some(2));
}

/// The quickstart ships its own explicit allow-all, so `serve` without a
/// config works offline.
#[test]
fn the_quickstart_allows_everything_explicitly() {
    let snapshot = match Snapshot::load(&crate::config::quickstart("mcp-gateway")) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let d = decide(
        &snapshot,
        &principal("anonymous", None, &[], &[]),
        &tool_call("delete_item"),
        &ctx("demo", "delete_item", ToolFacts::default()),
    );
    assert!(d.allow, "{d:?}");
    assert_eq!(d.policies, vec!["allow-all"]);
}

/// The scope index never changes a decision: exact-resource and
/// action-list policies still apply where they match, and only there.
#[test]
fn sliced_sets_decide_like_the_whole_set() {
    let s = snapshot(
        r#"
@id("all") permit(principal, action, resource);
@id("one-tool") forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"demo__x");
@id("some-actions") forbid(principal, action in [Mcp::Action::"prompts/get", Mcp::Action::"tools/list"], resource);
"#,
    );
    let p = principal("u", None, &[], &[]);
    let d = decide(&s, &p, &tool_call("x"), &ctx("demo", "x", READ_ONLY));
    assert_eq!((d.allow, d.policies), (false, vec!["one-tool".to_owned()]));
    assert!(decide(&s, &p, &tool_call("y"), &ctx("demo", "y", READ_ONLY)).allow);
    let prompt = Call {
        method: Method::PromptsGet,
        target: Target::Prompt("greet".into()),
    };
    let d = decide(&s, &p, &prompt, &ctx("demo", "greet", READ_ONLY));
    assert_eq!(d.policies, vec!["some-actions"]);
    let list = Call {
        method: Method::ToolsList,
        target: Target::None,
    };
    assert!(
        !decide(
            &s,
            &p,
            &list,
            &Context {
                backend: Some("demo".into()),
                ..Context::default()
            }
        )
        .allow
    );
    let read = Call {
        method: Method::ResourcesRead,
        target: Target::Resource("demo://x".into()),
    };
    assert!(
        decide(
            &s,
            &p,
            &read,
            &Context {
                backend: Some("demo".into()),
                ..Context::default()
            }
        )
        .allow
    );
}

#[test]
fn only_unconditional_permits_skip_evaluation() {
    let call = load::action_key("tools/call");
    let allow_all = snapshot("@id(\"all\") permit(principal, action, resource);");
    assert_eq!(
        allow_all.default.unconditional(&call),
        Some(&["all".to_owned()][..])
    );
    let by_action = snapshot(
        "@id(\"calls\") permit(principal, action == Mcp::Action::\"tools/call\", resource);",
    );
    assert!(by_action.default.unconditional(&call).is_some());
    assert!(
        by_action
            .default
            .unconditional(&load::action_key("tools/list"))
            .is_none(),
        "no permit for tools/list: evaluated (and denied)"
    );
    for text in [
        // a forbid next to the allow-all
        "permit(principal, action, resource);\nforbid(principal, action, resource is Mcp::Tool) when { resource.destructive };",
        // a condition
        "permit(principal, action, resource) when { principal.scopes.contains(\"mcp\") };",
        "permit(principal, action, resource) unless { context.transport == \"websocket\" };",
        // scope on principal or resource
        "permit(principal in Mcp::Tenant::\"acme\", action, resource);",
        "permit(principal, action, resource is Mcp::Tool);",
        "permit(principal, action, resource == Mcp::Tool::\"echo__echo\");",
    ] {
        let s = snapshot(text);
        assert!(s.default.unconditional(&call).is_none(), "{text}");
    }
    // The fast path decides as Cedar does.
    let p = principal("alice", None, &[], &[]);
    let d = decide(
        &allow_all,
        &p,
        &tool_call("echo"),
        &ctx("b", "echo", READ_ONLY),
    );
    assert!(d.allow);
    assert_eq!(d.policies, vec!["all".to_owned()]);
    let forbid = snapshot(
        "@id(\"all\") permit(principal, action, resource);\n@id(\"no-destroy\") forbid(principal, action, resource is Mcp::Tool) when { resource.destructive };",
    );
    let destructive = ToolFacts {
        destructive: true,
        ..READ_ONLY
    };
    let d = decide(&forbid, &p, &tool_call("rm"), &ctx("b", "rm", destructive));
    assert!(!d.allow);
    assert_eq!(d.policies, vec!["no-destroy".to_owned()]);
}

#[test]
fn name_indexed_slices_decide_as_the_whole_set() {
    let text = r#"
@id("all") permit(principal, action, resource);
@id("n4") forbid(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
  when { resource.name == "tool4" && !principal.scopes.contains("t4") };
@id("n6") forbid(principal, action, resource is Mcp::Tool) when { "tool6" == resource.name };
@id("second") forbid(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
  when { principal.sub == "bob" && resource.name == "tool8" };
@id("exact4") forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"b__tool4")
  when { principal.sub == "carol" };
@id("unless-first") forbid(principal, action, resource is Mcp::Tool)
  unless { principal.scopes.contains("u") } when { resource.name == "tool2" };
@id("prompt3") forbid(principal, action == Mcp::Action::"prompts/get", resource is Mcp::Prompt)
  when { resource.name == "tool3" };
"#;
    let indexed = snapshot(text);
    let mut whole = snapshot(text);
    whole.default.index.clear();
    let slices = &indexed.default.index[&load::action_key("tools/call")];
    let keys: std::collections::BTreeSet<&str> =
        slices.by_name.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Mcp::Tool\u{0}tool4", "Mcp::Tool\u{0}tool6"].into(),
        "only a leading `resource.name == literal` after `is` is indexed"
    );
    assert!(slices.general.policies().count() < indexed.default.set.policies().count());
    let mut checked = 0;
    for sub in ["alice", "bob", "carol"] {
        for scopes in [&[][..], &["t4", "u"][..]] {
            let p = principal(sub, None, scopes, &[]);
            for n in 1..=9 {
                let name = format!("tool{n}");
                let calls = [
                    (tool_call(&format!("b__{name}")), ctx("b", &name, READ_ONLY)),
                    (
                        Call {
                            method: Method::PromptsGet,
                            target: Target::Prompt(format!("b__{name}")),
                        },
                        Context {
                            transport: "streamable_http",
                            backend: Some("b".into()),
                            name: Some(name.clone()),
                            ..Context::default()
                        },
                    ),
                ];
                for (call, c) in &calls {
                    let a = decide(&indexed, &p, call, c);
                    let b = decide(&whole, &p, call, c);
                    let mut pa = a.policies.clone();
                    let mut pb = b.policies.clone();
                    pa.sort();
                    pb.sort();
                    assert_eq!((a.allow, pa), (b.allow, pb), "{sub} {scopes:?} {call:?}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 108);
    // And the cases the rules are about.
    let alice = principal("alice", None, &[], &[]);
    let d = decide(
        &indexed,
        &alice,
        &tool_call("b__tool4"),
        &ctx("b", "tool4", READ_ONLY),
    );
    assert_eq!((d.allow, d.policies), (false, vec!["n4".to_owned()]));
    let d = decide(
        &indexed,
        &alice,
        &tool_call("b__tool5"),
        &ctx("b", "tool5", READ_ONLY),
    );
    assert!(d.allow);
}

#[test]
fn decisions_are_cacheable_unless_a_policy_reads_what_changes_per_message() {
    use crate::config::load_str;
    let dir = std::env::temp_dir().join(format!("mcp-gw-cacheable-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let load = |policy: &str, expose: bool| {
        std::fs::write(dir.join("p.cedar"), policy).expect("write policy");
        let text = format!(
            "[[backends]]\nname = \"demo\"\ntransport = \"stdio\"\ncommand = [\"true\"]\n\
             [policy]\nfiles = [{:?}]\nexpose_arguments = {expose}\n",
            dir.join("p.cedar").display().to_string()
        );
        let config = load_str(&text, "gw.toml", &|_| None).expect("config");
        Snapshot::load(&config).expect("policies")
    };
    let plain = load(
        "permit(principal, action, resource) when { context.transport == \"streamable_http\" };",
        false,
    );
    assert!(plain.decisions_cacheable);
    assert!(plain.generation > 0);
    let again = load("permit(principal, action, resource);", false);
    assert_ne!(
        plain.generation, again.generation,
        "every load is a new generation"
    );
    for volatile in [
        "permit(principal, action, resource) when { context.hour_utc < 18 };",
        "permit(principal, action, resource) when { context.time > 0 };",
        "permit(principal, action, resource) unless { context has arguments };",
    ] {
        assert!(!load(volatile, false).decisions_cacheable, "{volatile}");
    }
    assert!(
        !load("permit(principal, action, resource);", true).decisions_cacheable,
        "arguments exposed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
