//! A recording and its replay's recording → the differences that matter.
//!
//! Client requests are paired by their (recorded, replayed verbatim) id
//! and occurrence; for each pair the decision and the response are
//! compared. Other messages to the client, and requests to backends, are
//! compared as multisets: order between concurrent calls is not behaviour.
//! Messages a backend sent on its own (a `list_changed` about no call) are
//! not replayed by fixture backends, so what the gateway relayed of them is
//! left out of the comparison.

use std::collections::HashMap;

use serde_json::Value;

use super::fixture::{Decision, Fixture, Message};
use super::normalize::{first_difference, normalize};
use crate::record::Dir;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `decision`, `response`, `not_replayed`, `to_client`, `to_backend`,
    /// `from_backend`, `replay`.
    pub kind: &'static str,
    /// The recorded fixture's line the difference is about.
    pub line: Option<usize>,
    pub text: String,
}

struct Exchange<'a> {
    request: &'a Message,
    response: Option<&'a Message>,
}

/// Requests of the client with the response the gateway gave each.
fn exchanges<'a>(messages: &[&'a Message]) -> Vec<Exchange<'a>> {
    let mut out: Vec<Exchange<'a>> = Vec::new();
    for m in messages {
        match m.dir {
            Dir::ClientToGateway if m.is_request() => out.push(Exchange {
                request: m,
                response: None,
            }),
            Dir::GatewayToClient if m.is_response() => {
                if let Some(x) = out
                    .iter_mut()
                    .find(|x| x.response.is_none() && x.request.id() == m.id())
                {
                    x.response = Some(m);
                }
            }
            _ => {}
        }
    }
    out
}

/// `tools/call delete_item`, `resources/read file:///a`, `tools/list`.
pub fn label(m: &Message) -> String {
    let method = m.method().unwrap_or("response");
    let params = m.message.get("params");
    let target = params
        .and_then(|p| p.get("name").or_else(|| p.get("uri")))
        .and_then(Value::as_str);
    match target {
        Some(t) => format!("{method} {t}"),
        None => method.to_owned(),
    }
}

fn decision_word(d: &Decision) -> &'static str {
    if d.allow { "allow" } else { "deny" }
}

fn policies(d: &Decision) -> String {
    match d.policies.as_slice() {
        [] => "no policy".to_owned(),
        [one] => format!("policy {one}"),
        many => format!("policies {}", many.join(", ")),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "absent".to_owned(),
        other => other.to_string(),
    };
    if s.chars().count() > 100 {
        let cut: String = s.chars().take(97).collect();
        format!("{cut}...")
    } else {
        s
    }
}

pub fn compare(recorded: &Fixture, replayed: &[Fixture], live: bool) -> Vec<Difference> {
    let mut sessions: Vec<&str> = vec![recorded.header.session.as_str()];
    sessions.extend(replayed.iter().map(|f| f.header.session.as_str()));
    let a: Vec<&Message> = recorded.messages.iter().collect();
    let b: Vec<&Message> = replayed.iter().flat_map(|f| f.messages.iter()).collect();
    let mut diffs = Vec::new();

    // Client requests, paired by id and occurrence.
    let xa = exchanges(&a);
    let xb = exchanges(&b);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for x in &xa {
        let id = x.request.id().map(Value::to_string).unwrap_or_default();
        let nth = seen.entry(id.clone()).or_insert(0);
        let counterpart = xb
            .iter()
            .filter(|y| y.request.id().map(Value::to_string).unwrap_or_default() == id)
            .nth(*nth);
        *nth += 1;
        let what = label(x.request);
        let line = Some(x.request.line);
        let Some(y) = counterpart else {
            diffs.push(Difference {
                kind: "not_replayed",
                line,
                text: format!("{what}: the replayed gateway never received it"),
            });
            continue;
        };
        if let (Some(da), Some(db)) = (&x.request.decision, &y.request.decision)
            && (da.allow != db.allow || da.policies != db.policies)
        {
            diffs.push(Difference {
                kind: "decision",
                line,
                text: format!(
                    "{what}: {} → {} ({})",
                    decision_word(da),
                    decision_word(db),
                    policies(db)
                ),
            });
        }
        match (x.response, y.response) {
            (Some(ra), Some(rb)) => {
                let na = normalize(&ra.message, &sessions);
                let nb = normalize(&rb.message, &sessions);
                if let Some((at, va, vb)) = first_difference(&na, &nb) {
                    let at = if at.is_empty() { "/".to_owned() } else { at };
                    diffs.push(Difference {
                        kind: "response",
                        line: Some(ra.line),
                        text: format!(
                            "{what}: response differs at {at}: {} → {}",
                            short(&va),
                            short(&vb)
                        ),
                    });
                }
            }
            (Some(ra), None) => diffs.push(Difference {
                kind: "response",
                line: Some(ra.line),
                text: format!("{what}: no response in the replay"),
            }),
            (None, Some(_)) => diffs.push(Difference {
                kind: "response",
                line,
                text: format!("{what}: answered in the replay, not in the recording"),
            }),
            (None, None) => {}
        }
    }

    // Everything else the gateway sent the client, except what a backend
    // sent on its own (about no call): fixture backends do not replay that.
    let unsolicited: Vec<Value> = a
        .iter()
        .filter(|m| m.dir == Dir::BackendToGateway && m.call.is_none() && m.method().is_some())
        .map(|m| normalize(&m.message, &sessions))
        .collect();
    multiset(
        &mut diffs,
        "to_client",
        "gateway→client",
        &a,
        &b,
        &sessions,
        |m| {
            m.dir == Dir::GatewayToClient
                && !m.is_response()
                && !unsolicited.contains(&normalize(&m.message, &sessions))
        },
    );
    // What the gateway sent the backends.
    multiset(
        &mut diffs,
        "to_backend",
        "gateway→backend",
        &a,
        &b,
        &sessions,
        |m| m.dir == Dir::GatewayToBackend,
    );
    if live {
        multiset(
            &mut diffs,
            "from_backend",
            "backend→gateway",
            &a,
            &b,
            &sessions,
            |m| m.dir == Dir::BackendToGateway,
        );
    }
    diffs
}

fn multiset(
    diffs: &mut Vec<Difference>,
    kind: &'static str,
    hop: &str,
    a: &[&Message],
    b: &[&Message],
    sessions: &[&str],
    pick: impl Fn(&Message) -> bool,
) {
    let key = |m: &Message| {
        (
            m.backend.clone().unwrap_or_default(),
            normalize(&m.message, sessions),
            m.failure.clone(),
        )
    };
    let mut left: Vec<(&Message, _)> = b.iter().filter(|m| pick(m)).map(|m| (*m, key(m))).collect();
    for m in a.iter().filter(|m| pick(m)) {
        let k = key(m);
        match left.iter().position(|(_, other)| *other == k) {
            Some(i) => {
                left.remove(i);
            }
            None => diffs.push(Difference {
                kind,
                line: Some(m.line),
                text: format!(
                    "{hop}{}: {} recorded, not sent in the replay",
                    at(m),
                    label(m)
                ),
            }),
        }
    }
    for (m, _) in left {
        diffs.push(Difference {
            kind,
            line: None,
            text: format!(
                "{hop}{}: {} sent in the replay, not recorded",
                at(m),
                label(m)
            ),
        });
    }
}

fn at(m: &Message) -> String {
    match &m.backend {
        Some(b) => format!(" ({b})"),
        None => String::new(),
    }
}
