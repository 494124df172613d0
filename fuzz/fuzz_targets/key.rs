//! API key format check (SPEC §4: prefix + 32 base62 + 6 base62 CRC32).
//! Two halves per input:
//! - the input itself as a presented key, against `kg_` and against a
//!   prefix taken from the input: never panics, and whatever passes has
//!   the right shape and checksum per an independent encoder here;
//! - a key assembled from the input bytes with that encoder: it passes, and
//!   one changed character anywhere (prefix, body or checksum) or a
//!   different prefix is refused.

#![no_main]

use keygate::fuzzing::{CHECKSUM_LEN, RANDOM_LEN, check_format, display_prefix};
use libfuzzer_sys::fuzz_target;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// What `keys.prefix` may hold: base62 plus `_` and `-`.
const PREFIX_CHARS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";

/// The spec's checksum, written from SPEC §4 rather than taken from the
/// crate: big-endian base62 of CRC32(prefix + body), left-padded to 6.
fn checksum(head: &str) -> String {
    let mut n = crc32fast::hash(head.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

fn well_formed(key: &str, prefix: &str) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    rest.len() == RANDOM_LEN + CHECKSUM_LEN
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        && checksum(&key[..key.len() - CHECKSUM_LEN]) == key[key.len() - CHECKSUM_LEN..]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(check_format(s, "kg_").is_ok(), well_formed(s, "kg_"));
        let _ = display_prefix(s);
        // Any prefix at all, even one config validation would refuse.
        if let Some((prefix, key)) = s.split_once('\n') {
            assert_eq!(check_format(key, prefix).is_ok(), well_formed(key, prefix));
        }
    }

    // Assemble: [prefix length, prefix bytes.., 32 body bytes, position, replacement].
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = 1 + usize::from(len) % 16;
    if rest.len() < len + RANDOM_LEN + 2 {
        return;
    }
    let (p, rest) = rest.split_at(len);
    let (body, rest) = rest.split_at(RANDOM_LEN);
    let prefix: String = p
        .iter()
        .map(|b| char::from(PREFIX_CHARS[usize::from(*b) % 64]))
        .collect();
    let mut key = prefix.clone();
    key.extend(
        body.iter()
            .map(|b| char::from(BASE62[usize::from(*b) % 62])),
    );
    let sum = checksum(&key);
    key.push_str(&sum);
    assert_eq!(check_format(&key, &prefix), Ok(()), "{key}");

    let at = usize::from(rest[0]) % key.len();
    let with = PREFIX_CHARS[usize::from(rest[1]) % 64];
    let mut typo = key.clone().into_bytes();
    if typo[at] != with {
        typo[at] = with;
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(check_format(&typo, &prefix).is_err(), "{typo} passed");
    }
    // A different prefix: the prefix with its last character changed,
    // one shorter, and one longer.
    let last = prefix.as_bytes()[len - 1];
    let other = if last == b'x' { 'y' } else { 'x' };
    for wrong in [
        format!("{}{other}", &prefix[..len - 1]),
        prefix[..len - 1].to_string(),
        format!("{prefix}{other}"),
    ] {
        if !wrong.is_empty() {
            assert!(check_format(&key, &wrong).is_err(), "{key} under {wrong}");
        }
    }
});
