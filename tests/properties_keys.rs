//! Properties of the API key format (SPEC §4): every generated key passes
//! the format check, any single changed character (prefix, random part or
//! checksum) is refused, and a key is refused under any other prefix.
//! proptest shrinks a failure to the smallest prefix, position and
//! character, which a handful of hand-picked examples would not cover.

use keygate::auth::key::{CHECKSUM_LEN, FormatError, RANDOM_LEN, check_format, generate};
use proptest::prelude::*;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The checksum written again from the spec (big-endian base62 of the
/// CRC32 of everything before it, padded to 6), so these properties do not
/// trust the encoder they test.
fn checksum(head: &str) -> String {
    let mut n = crc32fast::hash(head.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// A valid `keys.prefix`.
fn prefix() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,16}"
}

/// A key built from a chosen random part, not the OS generator, so a
/// failure shrinks to a reproducible key.
fn assembled() -> impl Strategy<Value = (String, String)> {
    (prefix(), "[0-9A-Za-z]{32}").prop_map(|(p, body)| {
        let head = format!("{p}{body}");
        let key = format!("{head}{}", checksum(&head));
        (p, key)
    })
}

/// Any character a key or a prefix may contain, plus a few it may not.
fn replacement() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => "[0-9A-Za-z_-]".prop_map(|s| s.chars().next().unwrap_or('0')),
        1 => Just('!'),
        1 => Just('é'),
    ]
}

fn with_char_at(s: &str, at: usize, c: char) -> String {
    s.char_indices()
        .map(|(i, old)| if i == at { c } else { old })
        .collect()
}

proptest! {
    #[test]
    fn generated_keys_pass(p in prefix()) {
        let key = generate(&p).expect("os rng");
        let key = key.expose();
        prop_assert_eq!(key.len(), p.len() + RANDOM_LEN + CHECKSUM_LEN);
        prop_assert_eq!(check_format(key, &p), Ok(()));
        // The crate's checksum is the spec's.
        let (head, sum) = key.split_at(key.len() - CHECKSUM_LEN);
        prop_assert_eq!(checksum(head), sum);
    }

    #[test]
    fn assembled_keys_pass((p, key) in assembled()) {
        prop_assert_eq!(check_format(&key, &p), Ok(()));
    }

    #[test]
    fn one_changed_character_is_refused(
        (p, key) in assembled(),
        at in 0usize..(16 + RANDOM_LEN + CHECKSUM_LEN),
        c in replacement(),
    ) {
        let at = at % key.len();
        prop_assume!(key.as_bytes()[at] != c as u8 || !c.is_ascii());
        let typo = with_char_at(&key, at, c);
        let got = check_format(&typo, &p);
        prop_assert!(got.is_err(), "{} passed", typo);
        // In the random part or the checksum, a base62 typo is caught by
        // the checksum itself, not by some earlier rule.
        if at >= p.len() && c.is_ascii_alphanumeric() {
            prop_assert_eq!(got, Err(FormatError::Checksum));
        }
    }

    #[test]
    fn one_changed_character_of_a_generated_key_is_refused(
        p in prefix(),
        at in 0usize..(16 + RANDOM_LEN + CHECKSUM_LEN),
        c in replacement(),
    ) {
        let key = generate(&p).expect("os rng");
        let key = key.expose();
        let at = at % key.len();
        prop_assume!(key.as_bytes()[at] != c as u8 || !c.is_ascii());
        let typo = with_char_at(key, at, c);
        prop_assert!(check_format(&typo, &p).is_err(), "{} passed", typo);
    }

    #[test]
    fn other_prefixes_are_refused((p, key) in assembled(), other in prefix()) {
        prop_assume!(other != p);
        prop_assert!(check_format(&key, &other).is_err(), "{} under {}", key, other);
    }

    #[test]
    fn arbitrary_text_never_passes_by_accident(s in "\\PC{0,60}") {
        // Only a string with the right shape and checksum may pass.
        if check_format(&s, "kg_").is_ok() {
            let (head, sum) = s.split_at(s.len() - CHECKSUM_LEN);
            prop_assert_eq!(checksum(head), sum);
        }
    }
}
