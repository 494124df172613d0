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
use std::path::PathBuf;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use super::{Store, StoreError, WriteError, write_private};
use crate::config::ValueSource;
use crate::config::source;

const CHECK_META: &str = "master_key_check";
const CHECK_PLAINTEXT: &[u8] = b"keygate master key check v1";
const CHECK_AAD: &str = "keygate:check";

/// Why [`MasterKey::seal`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no randomness for a nonce: {0}")]
    Randomness(#[source] getrandom::Error),
    #[error("encryption failed")]
    Encrypt,
}

/// Why [`MasterKey::open`] failed: the stored value is damaged, or was
/// sealed with another key or for another token (the AEAD cannot tell
/// these apart, by design).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("stored nonce has the wrong size")]
    NonceSize,
    #[error("decryption failed (wrong master key or damaged value)")]
    Decrypt,
}

/// Why [`load_or_create`] refused: every variant stops keygate at start.
/// The texts name files and variables, never the key.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key file is gone but ciphertext sealed with it is not.
    #[error(
        "master key file {} is missing but the store holds encrypted token values; \
         restore the file (keygate refuses to start rather than lose them)",
        path.display()
    )]
    FileMissing { path: PathBuf },
    #[error("no randomness for a new master key: {0}")]
    Randomness(#[source] getrandom::Error),
    /// The generated key file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The `env` or `file` source holds no usable value.
    #[error("master key: {0}")]
    Unavailable(#[from] source::Unavailable),
    #[error("the master key must hold 64 hex digits (32 bytes)")]
    Malformed,
    #[error("the stored master key check is malformed")]
    CheckMalformed,
    #[error(
        "the master key does not match the one that encrypted the stored token values; \
         keygate refuses to start rather than lose them"
    )]
    Mismatch,
    #[error("cannot seal the master key check: {0}")]
    Seal(#[from] SealError),
}

pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// The array type makes the length right, so this cannot fail.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        MasterKey {
            cipher: XChaCha20Poly1305::new(&Key::from(*bytes)),
        }
    }

    /// Returns `(nonce, ciphertext)`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SealError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(SealError::Randomness)?;
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        Ok((nonce.to_vec(), ct))
    }

    pub fn open(&self, aad: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, OpenError> {
        let n = XNonce::try_from(nonce).map_err(|_| OpenError::NonceSize)?;
        self.cipher
            .decrypt(
                &n,
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Decrypt)
    }
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
}

/// Loads the master key (generating the file on a fresh store) and checks
/// it against the store's check value.
pub fn load_or_create(
    source_cfg: &ValueSource,
    store: &dyn Store,
) -> Result<MasterKey, MasterKeyError> {
    let check = store.get_meta(CHECK_META)?;
    let has_ciphertext = check.is_some() || !store.load_token_values()?.is_empty();
    let bytes = match source_cfg {
        ValueSource::File(path) if !path.exists() => {
            if has_ciphertext {
                return Err(MasterKeyError::FileMissing { path: path.clone() });
            }
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(MasterKeyError::Randomness)?;
            write_private(path, &format!("{}\n", hex::encode(k)))?;
            tracing::info!(path = %path.display(), "generated a new master key (mode 0600)");
            k
        }
        other => parse_hex(source::read(other)?.expose()).ok_or(MasterKeyError::Malformed)?,
    };
    let key = MasterKey::from_bytes(&bytes);
    // A fresh store takes this key's check value only if no other replica
    // stored one first (`init_meta` is atomic); either way the key is then
    // checked against what the store holds, so two replicas starting at
    // once with different keys cannot both win.
    let stored = match check {
        Some(stored) => stored,
        None => {
            let (n, c) = key.seal(CHECK_AAD, CHECK_PLAINTEXT)?;
            store.init_meta(
                CHECK_META,
                &format!("{}:{}", hex::encode(n), hex::encode(c)),
            )?
        }
    };
    let (n, c) = stored
        .split_once(':')
        .and_then(|(n, c)| Some((hex::decode(n).ok()?, hex::decode(c).ok()?)))
        .ok_or(MasterKeyError::CheckMalformed)?;
    match key.open(CHECK_AAD, &n, &c) {
        Ok(p) if p == CHECK_PLAINTEXT => {}
        Ok(_) | Err(OpenError::Decrypt) => return Err(MasterKeyError::Mismatch),
        Err(OpenError::NonceSize) => return Err(MasterKeyError::CheckMalformed),
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn seal_open_and_aad_binding() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let (n, c) = k.seal("tok-a", b"sk_live_x").expect("seal");
        assert_eq!(k.open("tok-a", &n, &c).expect("open"), b"sk_live_x");
        assert!(
            matches!(k.open("tok-b", &n, &c), Err(OpenError::Decrypt)),
            "bound to the token name"
        );
        let other = MasterKey::from_bytes(&[8; 32]);
        assert!(matches!(
            other.open("tok-a", &n, &c),
            Err(OpenError::Decrypt)
        ));
        assert!(matches!(
            k.open("tok-a", &n[1..], &c),
            Err(OpenError::NonceSize)
        ));
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
        assert!(matches!(err, MasterKeyError::FileMissing { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"), "{err}");
        // Wrong key: refuse.
        std::fs::write(&path, hex::encode([1u8; 32])).expect("write");
        let err = load_or_create(&src, &store).expect_err("must refuse");
        assert!(matches!(err, MasterKeyError::Mismatch), "{err:?}");
        assert!(err.to_string().contains("does not match"), "{err}");
        // Not hex: refuse, naming the rule and not echoing the text.
        std::fs::write(&path, "sk_not_hex").expect("write");
        let err = load_or_create(&src, &store).expect_err("must refuse");
        assert!(matches!(err, MasterKeyError::Malformed), "{err:?}");
        assert!(!err.to_string().contains("sk_not_hex"), "{err}");
    }
}
