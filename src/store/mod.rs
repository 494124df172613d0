//! Durable state behind a small trait: API keys (hashes and metadata only),
//! key usage, run-time token values (ciphertext only) and a few flags.
//! SQLite is the embedded default; the trait is shaped so a PostgreSQL
//! backend can follow for multi-replica deployments (every method is one
//! short transaction, no SQLite-specific types leak out).
//!
//! The request path never calls the store: keys are served from the
//! in-memory index, usage is written in batches.

pub mod sealed;
pub mod sqlite;

use std::path::Path;

use std::fmt;

/// A stored API key: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub digest: [u8; 32],
    pub name: String,
    pub client: String,
    pub roles: Option<Vec<String>>,
    pub display_prefix: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    pub rolled_from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage<'a> {
    pub id: &'a str,
    pub last_used_ms: u64,
    pub uses: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUsage {
    pub id: String,
    pub last_used_ms: u64,
    pub uses: u64,
}

/// An encrypted token value.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTokenValue {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub version: u64,
    pub updated_ms: u64,
}

impl fmt::Debug for StoredTokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokenValue")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A store failure; the text is for the operator's log, never a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

pub trait Store: Send + Sync + fmt::Debug {
    fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Durable when it returns: the caller sends the key only afterwards.
    fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Revokes `id` and, in the same transaction, every unrevoked key
    /// rolled from it (transitively): a successor continues the key it
    /// replaces, so a roll racing a revoke never leaves a live successor of
    /// a revoked key. The UPDATE is conditional on `id` being unrevoked, so
    /// of two concurrent revokes exactly one wins. Returns the ids revoked
    /// (`id` first), or `None` when `id` is unknown or already revoked.
    fn revoke_chain(&self, id: &str, at_ms: u64) -> Result<Option<Vec<String>>, StoreError>;
    /// Unrevoked keys rolled from `id`, transitively: what `revoke_chain`
    /// would end with it (read first to check the last-admin-key rule).
    fn live_successors(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// Inserts the successor and shortens the old key's life, atomically,
    /// and only while the old key is live (unrevoked, unexpired at the
    /// successor's `created_ms`): `Ok(false)` means it was not, and nothing
    /// was written. The check and the write are one transaction, so a
    /// revoke that committed first always wins over a roll.
    fn roll(
        &self,
        old_id: &str,
        old_expires_ms: u64,
        successor: &StoredKey,
    ) -> Result<bool, StoreError>;
    fn record_usage(&self, batch: &[Usage<'_>]) -> Result<(), StoreError>;
    fn load_usage(&self) -> Result<Vec<StoredUsage>, StoreError>;
    /// Deletes keys revoked or expired before `before_ms`; returns how many.
    fn purge_ended_before(&self, before_ms: u64) -> Result<usize, StoreError>;
    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
    fn put_token_value(&self, value: &StoredTokenValue) -> Result<(), StoreError>;
    fn load_token_values(&self) -> Result<Vec<StoredTokenValue>, StoreError>;
}

/// Writes `content` to `path` readable by the owner only, flushed to disk.
pub fn write_private(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    }
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
