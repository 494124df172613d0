//! API key format (SPEC §4): `<prefix><32 base62 random><6 base62 CRC32>`.
//! The CRC32 covers everything before it (prefix and random part), so a
//! typo or a truncated paste is rejected without a lookup, and secret
//! scanners can recognise a real key by prefix, length and checksum.
//! Base62 uses the alphabet `0-9A-Za-z`; the checksum is the big-endian
//! base62 form of the CRC32, left-padded with `0` to 6 characters.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const RANDOM_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;

/// Why a presented string is not a well-formed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    Prefix,
    Length,
    Alphabet,
    Checksum,
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A fresh key from the OS CSPRNG. Rejection sampling keeps every base62
/// character equally likely (bytes ≥ 248 are dropped: 248 = 4 × 62).
pub fn generate(prefix: &str) -> Result<Secret, getrandom::Error> {
    let mut key = String::with_capacity(prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
    key.push_str(prefix);
    let mut produced = 0;
    let mut buf = [0u8; 64];
    while produced < RANDOM_LEN {
        getrandom::fill(&mut buf)?;
        for b in buf {
            if produced == RANDOM_LEN {
                break;
            }
            if b < 248 {
                key.push(ALPHABET[(b % 62) as usize] as char);
                produced += 1;
            }
        }
    }
    let sum = checksum(key.as_bytes());
    key.extend(sum.iter().map(|b| *b as char));
    Ok(Secret::new(key))
}

/// Checks prefix, length, alphabet and checksum; no lookup, no allocation.
pub fn check_format(key: &str, prefix: &str) -> Result<(), FormatError> {
    let rest = key.strip_prefix(prefix).ok_or(FormatError::Prefix)?;
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN {
        return Err(FormatError::Length);
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FormatError::Alphabet);
    }
    let (body, sum) = key.as_bytes().split_at(key.len() - CHECKSUM_LEN);
    if checksum(body) != sum {
        return Err(FormatError::Checksum);
    }
    Ok(())
}

/// SHA-256 of the whole key: the only form a key is stored in.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The first 8 characters, for display next to a key's metadata.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate("kg_").expect("rng");
        let b = generate("kg_").expect("rng");
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 3 + 38);
        assert_eq!(check_format(a.expose(), "kg_"), Ok(()));
    }

    #[test]
    fn checksum_catches_typos() {
        let k = generate("kg_").expect("rng");
        let s = k.expose();
        let mut chars: Vec<char> = s.chars().collect();
        chars[5] = if chars[5] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(check_format(&typo, "kg_"), Err(FormatError::Checksum));
        assert_eq!(
            check_format(&s[..s.len() - 1], "kg_"),
            Err(FormatError::Length)
        );
        assert_eq!(check_format(s, "sk_"), Err(FormatError::Prefix));
        let bad = format!("kg_{}!", &s[3..s.len() - 1]);
        assert_eq!(check_format(&bad, "kg_"), Err(FormatError::Alphabet));
    }

    #[test]
    fn checksum_is_crc32_in_base62() {
        // 0 encodes as six zeros; the largest CRC fits in six digits.
        assert!(62u64.pow(6) > u64::from(u32::MAX));
        let body = b"kg_00000000000000000000000000000000";
        let sum = checksum(body);
        let mut n: u64 = 0;
        for c in sum {
            let v = ALPHABET.iter().position(|a| *a == c).expect("alphabet") as u64;
            n = n * 62 + v;
        }
        assert_eq!(n, u64::from(crc32fast::hash(body)));
    }
}
