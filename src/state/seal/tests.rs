use super::*;
use crate::auth::{Credential, Principal};

fn principal(sub: &str) -> Principal {
    Principal::new(sub.into(), "jwt", Credential::default())
}

const KEY: &str = "a-session-key-of-at-least-32-characters";

#[test]
fn opens_for_its_principal_only() {
    let sealer = Sealer::new(KEY);
    let alice = principal("alice");
    let id = sealer.seal(&alice);
    assert!(id.starts_with("s1"));
    assert!(id.bytes().all(|b| b.is_ascii_graphic()));
    assert_eq!(sealer.open(&id, &alice), Ok(None));
    // Another replica with the same key opens it too.
    assert_eq!(Sealer::new(KEY).open(&id, &alice), Ok(None));
    assert_eq!(
        sealer.open(&id, &principal("bob")),
        Err(SealError::ForeignPrincipal)
    );
    assert_ne!(sealer.seal(&alice), id, "ids are unique");
}

#[test]
fn refuses_forged_and_foreign_ids() {
    let sealer = Sealer::new(KEY);
    let alice = principal("alice");
    let id = sealer.seal(&alice);
    let other = Sealer::new("another-key-of-at-least-32-characters!!");
    assert_eq!(other.open(&id, &alice), Err(SealError::Forged));
    // One flipped character of the ciphertext.
    let mut tampered: Vec<char> = id.chars().collect();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    assert_eq!(sealer.open(&tampered, &alice), Err(SealError::Forged));
    for bad in [
        "",
        "s1",
        "0123456789abcdef0123456789abcdef",
        &format!("{id}x"),
        &id.replacen("s1", "s2", 1),
    ] {
        assert_eq!(
            sealer.open(bad, &alice),
            Err(SealError::Malformed),
            "{bad:?}"
        );
    }
}

fn ticket(backends: usize) -> Ticket {
    Ticket {
        owner: "replica-7f3a".into(),
        route: String::new(),
        protocol_version: "2025-11-25".into(),
        client_info: serde_json::json!({"name": "mcp", "version": "0.1.0"}),
        client_capabilities: serde_json::json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}}),
        adoptable: true,
        backends: (0..backends)
            .map(|i| BackendTicket {
                name: format!("backend-{i}"),
                session_id: Some(format!("{i:02}3e4567e89b12d3a456426614174000")),
                protocol_version: "2025-06-18".into(),
                stateless: false,
                capabilities: serde_json::Value::Null,
            })
            .collect(),
    }
}

#[test]
fn a_ticket_round_trips_for_its_principal_only() {
    let sealer = Sealer::new(KEY);
    let alice = principal("alice");
    let mut t = ticket(2);
    t.backends[1].stateless = true;
    t.backends[1].session_id = None;
    t.backends[1].capabilities = serde_json::json!({"tools": {}});
    let id = sealer.seal_ticket(&alice, &t).unwrap();
    assert!(id.starts_with("s1"));
    assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
    // Another replica with the same key reads the same ticket.
    assert_eq!(Sealer::new(KEY).open(&id, &alice), Ok(Some(t.clone())));
    assert_eq!(
        sealer.open(&id, &principal("bob")),
        Err(SealError::ForeignPrincipal)
    );
    assert_ne!(
        sealer.seal_ticket(&alice, &t).unwrap(),
        id,
        "ids are unique"
    );
}

#[test]
fn a_ticket_of_a_few_backends_stays_well_under_a_kilobyte() {
    let id = Sealer::new(KEY)
        .seal_ticket(&principal("alice"), &ticket(3))
        .unwrap();
    assert!(id.len() < 900, "{} bytes: {id}", id.len());
}

#[test]
fn a_tampered_ticket_is_forged() {
    let sealer = Sealer::new(KEY);
    let alice = principal("alice");
    let id = sealer.seal_ticket(&alice, &ticket(1)).unwrap();
    for at in [3, id.len() / 2, id.len() - 2] {
        let mut tampered: Vec<char> = id.chars().collect();
        tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        assert_eq!(
            sealer.open(&tampered, &alice),
            Err(SealError::Forged),
            "changed at {at}"
        );
    }
    // Cut short or grown: never opens (undecodable or not authentic).
    for changed in [
        id.get(..id.len() - 4).unwrap().to_owned(),
        id.get(..id.len() - 1).unwrap().to_owned(),
        format!("{id}AAAA"),
    ] {
        assert!(
            matches!(
                sealer.open(&changed, &alice),
                Err(SealError::Forged | SealError::Malformed)
            ),
            "{changed}"
        );
    }
}

#[test]
fn a_ticket_too_long_is_refused_and_an_id_too_long_is_malformed() {
    let sealer = Sealer::new(KEY);
    let alice = principal("alice");
    let mut t = ticket(1);
    t.client_info = serde_json::json!({"name": "x".repeat(MAX_TICKET_BYTES)});
    assert!(matches!(
        sealer.seal_ticket(&alice, &t),
        Err(SealError::TooLong { .. })
    ));
    let huge = format!("s1{}", "A".repeat(4 * MAX_TICKET_BYTES));
    assert_eq!(sealer.open(&huge, &alice), Err(SealError::Malformed));
}

#[test]
fn the_digest_is_short_stable_and_distinct() {
    let sealer = Sealer::new(KEY);
    let alice = principal("alice");
    let (a, b) = (sealer.seal(&alice), sealer.seal(&alice));
    assert_eq!(digest(&a), digest(&a));
    assert_ne!(digest(&a), digest(&b));
    assert_eq!(digest(&a).len(), 32);
}
