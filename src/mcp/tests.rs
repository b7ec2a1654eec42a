use super::*;

fn check_envelope(text: &str, expected: Result<Kind, i64>) {
    let got = Envelope::parse(text)
        .map(|e| e.kind())
        .map_err(|e| e.code());
    assert_eq!(got, expected, "{text}");
}

#[test]
fn envelopes() {
    check_envelope(
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Ok(Kind::Request),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}"#,
        Ok(Kind::Request),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        Ok(Kind::Notification),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        Ok(Kind::Response),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
        Ok(Kind::Response),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
        Ok(Kind::Response),
    );
    check_envelope(r#"{"jsonrpc":"2.0","id":1,"#, Err(code::PARSE_ERROR));
    check_envelope(r#"nope"#, Err(code::PARSE_ERROR));
    check_envelope(
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        Err(code::INVALID_REQUEST),
    );
    check_envelope(r#"{"id":1,"method":"ping"}"#, Err(code::INVALID_REQUEST));
    check_envelope(
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        Err(code::INVALID_REQUEST),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        Err(code::INVALID_REQUEST),
    );
    check_envelope(
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
        Err(code::INVALID_REQUEST),
    );
    check_envelope(r#"{"jsonrpc":"2.0","id":1}"#, Err(code::INVALID_REQUEST));
    check_envelope(r#"[1,2]"#, Err(code::INVALID_REQUEST));
}

#[test]
fn params_survive_byte_for_byte() {
    let text =
        r#"{"jsonrpc":"2.0","id":7,"method":"x/future","params":{"b":1,  "a":[true,{"z":null}]}}"#;
    let env = Envelope::parse(text).expect("valid");
    assert_eq!(
        env.to_json(),
        r#"{"jsonrpc":"2.0","id":7,"method":"x/future","params":{"b":1,  "a":[true,{"z":null}]}}"#
    );
}

fn check_classify(method: &str, params: &str, expected: Target) {
    let raw = serde_json::value::RawValue::from_string(params.to_owned()).expect("json");
    assert_eq!(
        classify(method, Some(&raw)).target,
        expected,
        "{method} {params}"
    );
}

#[test]
fn classification() {
    check_classify(
        "tools/call",
        r#"{"name":"echo","arguments":{}}"#,
        Target::Tool("echo".into()),
    );
    check_classify(
        "prompts/get",
        r#"{"name":"greet"}"#,
        Target::Prompt("greet".into()),
    );
    check_classify(
        "resources/read",
        r#"{"uri":"demo://x"}"#,
        Target::Resource("demo://x".into()),
    );
    check_classify(
        "resources/subscribe",
        r#"{"uri":"demo://x"}"#,
        Target::Resource("demo://x".into()),
    );
    check_classify(
        "completion/complete",
        r#"{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"a","value":""}}"#,
        Target::Prompt("greet".into()),
    );
    check_classify(
        "completion/complete",
        r#"{"ref":{"type":"ref/resource","uri":"demo://items/{id}"}}"#,
        Target::Resource("demo://items/{id}".into()),
    );
    check_classify("tools/list", r#"{}"#, Target::None);
    check_classify("tools/call", r#"{"arguments":{}}"#, Target::None);
    assert_eq!(Method::parse("server/discover").action(), "connect");
    assert_eq!(Method::parse("tasks/get").action(), "tasks");
    assert_eq!(Method::parse("x/y").action(), "other");
}

#[test]
fn errors_without_an_id_say_null() {
    let env = Envelope::error(None, code::PARSE_ERROR, "parse error", None);
    assert_eq!(
        env.to_json(),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
    );
    let note = Envelope::notification("notifications/initialized", None);
    assert_eq!(
        note.to_json(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    );
}
