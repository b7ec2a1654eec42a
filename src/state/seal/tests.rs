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
    assert_eq!(sealer.open(&id, &alice), Ok(()));
    // Another replica with the same key opens it too.
    assert_eq!(Sealer::new(KEY).open(&id, &alice), Ok(()));
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
