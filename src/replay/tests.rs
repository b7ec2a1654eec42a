use serde_json::{Value, json};

use super::compare::compare;
use super::fixture::{Fixture, parse};
use super::normalize::{match_key, normalize};

fn header(session: &str) -> Value {
    json!({"type": "header", "format": "mcp-gateway-fixture", "version": 1,
           "gateway_version": "0", "config_digest": "sha256:x", "session": session,
           "era": "handshake", "protocol_version": "2025-06-18",
           "transport": "streamable_http", "route": "",
           "principal": {"sub": "alice", "tenant": null}, "include_arguments": false,
           "backends": [{"name": "demo", "transport": "stdio", "protocol": "auto"}]})
}

fn fixture(session: &str, lines: &[Value]) -> Fixture {
    let mut text = format!("{}\n", header(session));
    for l in lines {
        text.push_str(&format!("{l}\n"));
    }
    match parse("f.jsonl", text.as_bytes()) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

fn call(id: i64, allow: bool, policy: &str, response: Value) -> Vec<Value> {
    vec![
        json!({"type": "message", "dir": "client_to_gateway", "t_us": 1,
               "decision": {"allow": allow, "policies": [policy], "reason": "r"},
               "message": {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                           "params": {"name": "delete_item", "arguments": {"id": "1"}}}}),
        json!({"type": "message", "dir": "gateway_to_client", "t_us": 2,
               "message": {"jsonrpc": "2.0", "id": id, "result": response}}),
    ]
}

#[test]
fn a_changed_decision_is_reported_with_the_deciding_policy() {
    let recorded = fixture("s1", &call(7, true, "allow-all", json!({"ok": 1})));
    let replayed = fixture("s2", &call(7, false, "p7", json!({"ok": 1})));
    let diffs = compare(&recorded, &[replayed], false);
    let texts: Vec<&str> = diffs.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, ["tools/call delete_item: allow → deny (policy p7)"]);
    assert_eq!(diffs[0].line, Some(2));
}

#[test]
fn ids_session_ids_and_cursors_are_ignored_and_nothing_else() {
    let a = json!({"jsonrpc": "2.0", "id": 1, "result": {"nextCursor": "c1", "text": "in s1", "_meta": {"progressToken": 3}}});
    let b = json!({"jsonrpc": "2.0", "id": "x", "result": {"nextCursor": "c2", "text": "in s2", "_meta": {"progressToken": "gw-9"}}});
    assert_eq!(normalize(&a, &["s1", "s2"]), normalize(&b, &["s1", "s2"]));
    let c = json!({"jsonrpc": "2.0", "id": 1, "result": {"nextCursor": "c1", "text": "in s3"}});
    assert_ne!(normalize(&a, &["s1", "s2"]), normalize(&c, &["s1", "s2"]));
}

#[test]
fn the_connection_envelope_is_not_part_of_a_match() {
    let recorded = json!({"name": "echo", "arguments": {"m": 1}});
    let received = json!({"name": "echo", "arguments": {"m": 1},
                          "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                    "io.modelcontextprotocol/clientInfo": {"name": "gw"}}});
    assert_eq!(match_key(Some(&recorded)), match_key(Some(&received)));
    let other = json!({"name": "echo", "arguments": {"m": 2}});
    assert_ne!(match_key(Some(&recorded)), match_key(Some(&other)));
}

#[test]
fn an_unusable_line_is_named_and_never_panics() {
    let h = header("s");
    for (text, want) in [
        (String::new(), "f.jsonl:1: empty fixture"),
        (
            format!("{h}\n{{\"type\":\"gap\",\"lost\":3}}\n"),
            "f.jsonl:2: the recording lost 3 messages",
        ),
        (
            format!("{h}\n{{\"type\":\"weird\"}}\n"),
            "f.jsonl:2: unknown line type \"weird\"",
        ),
        (
            "{\"type\":\"message\"}\n".to_owned(),
            "f.jsonl:1: expected the header line first",
        ),
        (format!("{h}\n\u{0}\u{1}\n"), "f.jsonl:2: invalid JSON"),
        (format!("{h}\n{h}\n"), "f.jsonl:2: a second header line"),
    ] {
        match parse("f.jsonl", text.as_bytes()) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => assert!(e.to_string().starts_with(want), "{e} (want {want})"),
        }
    }
}
