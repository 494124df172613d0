//! Encryption at rest for token values set at run time: XChaCha20-Poly1305
//! (RustCrypto) with a random 24-byte nonce per value and the token name as
//! associated data (a ciphertext cannot be moved to another token).
//!
//! The master key is 32 bytes written as 64 hex digits, from
//! `store.master_key` (`file`, `env` or `literal`). A missing key *file* is
//! generated (mode 0600) only while the store holds nothing encrypted; a
//! check value sealed with the key is kept in the store, so a wrong or
//! missing key for existing ciphertext stops keygate at start with a clear
//! message instead of silently dropping values.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::{Store, write_private};
use crate::config::ValueSource;
use crate::config::source;

const CHECK_META: &str = "master_key_check";
const CHECK_PLAINTEXT: &[u8] = b"keygate master key check v1";
const CHECK_AAD: &str = "keygate:check";

pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, String> {
        XChaCha20Poly1305::new_from_slice(bytes)
            .map(|cipher| MasterKey { cipher })
            .map_err(|_| "master key must be 32 bytes".to_string())
    }

    /// Returns `(nonce, ciphertext)`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let n = XNonce::try_from(&nonce[..]).map_err(|_| "nonce size".to_string())?;
        let ct = self
            .cipher
            .encrypt(
                &n,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        Ok((nonce.to_vec(), ct))
    }

    pub fn open(&self, aad: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let n =
            XNonce::try_from(nonce).map_err(|_| "stored nonce has the wrong size".to_string())?;
        self.cipher
            .decrypt(
                &n,
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "decryption failed (wrong master key or damaged value)".to_string())
    }
}

fn parse_hex(text: &str, what: &str) -> Result<[u8; 32], String> {
    hex::decode(text.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| format!("{what} must hold 64 hex digits (32 bytes)"))
}

/// Loads the master key (generating the file on a fresh store) and checks
/// it against the store's check value.
pub fn load_or_create(source_cfg: &ValueSource, store: &dyn Store) -> Result<MasterKey, String> {
    let check = store.get_meta(CHECK_META).map_err(|e| e.to_string())?;
    let has_ciphertext = check.is_some()
        || !store
            .load_token_values()
            .map_err(|e| e.to_string())?
            .is_empty();
    let bytes = match source_cfg {
        ValueSource::File(path) if !path.exists() => {
            if has_ciphertext {
                return Err(format!(
                    "master key file {} is missing but the store holds encrypted token values; \
                     restore the file (keygate refuses to start rather than lose them)",
                    path.display()
                ));
            }
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| format!("no randomness: {e}"))?;
            write_private(path, &format!("{}\n", hex::encode(k)))?;
            tracing::info!(path = %path.display(), "generated a new master key (mode 0600)");
            k
        }
        other => {
            let text = source::read(other)
                .map_err(|source::Unavailable(why)| format!("master key: {why}"))?;
            parse_hex(text.expose(), "the master key")?
        }
    };
    let key = MasterKey::from_bytes(&bytes)?;
    match check {
        Some(stored) => {
            let (n, c) = stored
                .split_once(':')
                .ok_or("the stored master key check is malformed")?;
            let (n, c) = (
                hex::decode(n).map_err(|e| e.to_string())?,
                hex::decode(c).map_err(|e| e.to_string())?,
            );
            match key.open(CHECK_AAD, &n, &c) {
                Ok(p) if p == CHECK_PLAINTEXT => {}
                _ => {
                    return Err("the master key does not match the one that encrypted the stored token values; \
                                keygate refuses to start rather than lose them"
                        .into());
                }
            }
        }
        None => {
            let (n, c) = key.seal(CHECK_AAD, CHECK_PLAINTEXT)?;
            store
                .set_meta(
                    CHECK_META,
                    &format!("{}:{}", hex::encode(n), hex::encode(c)),
                )
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn seal_open_and_aad_binding() {
        let k = MasterKey::from_bytes(&[7; 32]).expect("key");
        let (n, c) = k.seal("tok-a", b"sk_live_x").expect("seal");
        assert_eq!(k.open("tok-a", &n, &c).expect("open"), b"sk_live_x");
        assert!(k.open("tok-b", &n, &c).is_err(), "bound to the token name");
        let other = MasterKey::from_bytes(&[8; 32]).expect("key");
        assert!(other.open("tok-a", &n, &c).is_err());
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn generated_once_then_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("k.db")).expect("store");
        let path = dir.path().join("data/master.key");
        let src = ValueSource::File(path.clone());
        load_or_create(&src, &store).expect("generated");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        load_or_create(&src, &store).expect("same key loads");
        // Missing file with a check value in the store: refuse.
        std::fs::remove_file(&path).expect("rm");
        let err = load_or_create(&src, &store).expect_err("must refuse");
        assert!(err.contains("missing"), "{err}");
        // Wrong key: refuse.
        std::fs::write(&path, hex::encode([1u8; 32])).expect("write");
        let err = load_or_create(&src, &store).expect_err("must refuse");
        assert!(err.contains("does not match"), "{err}");
    }
}
