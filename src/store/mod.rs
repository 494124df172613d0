//! Durable state behind a small trait: API keys (hashes and metadata only),
//! key usage, run-time token values (ciphertext only), the audit log
//! (fingerprints only, never values) and a few flags.
//! SQLite is the embedded default for one box; PostgreSQL (`postgres`)
//! serves any number of replicas, and adds [`Replication`]: every write
//! appends to a change sequence the other replicas follow (SPEC §8).
//! Every method is one short transaction; no backend's types leak out.
//!
//! The request path never calls the store: keys are served from the
//! in-memory index, usage is written in batches.

pub mod postgres;
pub mod sealed;
pub mod sqlite;

use std::fmt;
use std::path::{Path, PathBuf};

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

/// Usage of one key since its last flush: merged into the stored row with
/// `max(last_used)` and `uses + uses`, so replicas flushing the same key
/// add up instead of overwriting each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage<'a> {
    pub id: &'a str,
    pub last_used_ms: u64,
    /// Requests since the last flush (a delta, not a total).
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

/// A catalog object made through the admin API: its definition as JSON in
/// the config file's shape (never a secret value), and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `tokens`, `connectors`, `roles` or `clients`.
    pub section: String,
    pub name: String,
    pub body: String,
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One step of a catalog change, conditional on what the writer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectWrite {
    /// Create (`expected: None`: only if absent) or replace (only if the
    /// stored version is `expected`).
    Put {
        object: StoredObject,
        expected: Option<u64>,
    },
    /// Delete, only if the stored version is `expected`.
    Delete {
        section: String,
        name: String,
        expected: u64,
    },
}

/// One audit log entry to append: who changed what, and how. It never
/// holds a value or a key: `fingerprint_*` are the first 8 hex digits of a
/// value's SHA-256 (see `crate::audit`, which builds these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub actor_client: String,
    /// The acting key's id; `None` when keygate itself made the change.
    pub actor_key: Option<String>,
    /// `key.create`, `token.value.set`, `connector.update`, ...
    pub action: String,
    /// `key`, `token`, `connector`, `role` or `client`.
    pub object_kind: String,
    /// The object's name, or a key's id.
    pub object_name: String,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub fingerprint_before: Option<String>,
    pub fingerprint_after: Option<String>,
    /// A short note (a roll's successor, `force`); never a secret.
    pub detail: Option<String>,
}

/// An appended [`AuditRecord`] with its id: increasing in append order
/// and never reused, so it is the audit list's paging cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    pub id: u64,
    pub record: AuditRecord,
}

/// A store failure. The text is for the operator's log, never a client:
/// it names paths, key ids, a database's host and name and the database's
/// own message, never a value or a URL's password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file or its directory could not be created.
    #[error("store: cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite could not open the database file.
    #[error("store: cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The database was written by a newer keygate.
    #[error(
        "store: the database is at schema version {found}, newer than this keygate ({supported}); refusing to run"
    )]
    SchemaTooNew { found: usize, supported: usize },
    /// Migration `version` (1-based, as in `migrations/`) failed; nothing
    /// of it was committed.
    #[error("store: migration {version} failed: {source}")]
    Migration {
        version: usize,
        source: rusqlite::Error,
    },
    /// A statement failed (locked, busy, disk full, or a damaged row such as
    /// a negative time, which keygate never writes).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A key row whose digest is not 32 bytes.
    #[error("store: key {id} has a malformed digest")]
    MalformedDigest { id: String },
    /// A key row whose roles column is not a JSON list of names.
    #[error("store: key {id} has malformed roles: {source}")]
    MalformedRoles {
        id: String,
        source: serde_json::Error,
    },
    /// A thread panicked while holding the connection.
    #[error("store: connection lock poisoned")]
    Poisoned,
    /// The PostgreSQL URL is missing, malformed or asks for something
    /// keygate refuses (an `sslmode` that does not check the server). The
    /// reason never quotes the URL: it holds a password.
    #[error("store: PostgreSQL url: {0}")]
    PgUrl(String),
    /// TLS for PostgreSQL could not be set up (an unreadable `sslrootcert`).
    #[error("store: PostgreSQL TLS: {0}")]
    PgTls(String),
    /// No connection to the server (refused, TLS handshake or
    /// authentication failed, or no answer within the connect timeout).
    /// `target` is `host:port/database`, never the user or password.
    #[error("store: cannot connect to PostgreSQL at {target}: {source}")]
    PgConnect {
        target: String,
        source: postgres::PgError,
    },
    /// Migration `version` (as in `pg_migrations/`) failed; nothing of it
    /// was committed.
    #[error("store: PostgreSQL migration {version} failed: {source}")]
    PgMigration {
        version: usize,
        source: postgres::PgError,
    },
    /// A statement failed, or the connection broke under it.
    #[error("store: PostgreSQL: {0}")]
    Postgres(#[from] postgres::PgError),
    /// Every pooled connection stayed busy for `waited`.
    #[error("store: no PostgreSQL connection to {target} free within {}ms", waited.as_millis())]
    PoolTimeout {
        target: String,
        waited: std::time::Duration,
    },
    /// A call did not finish in time (its connection is dropped, not reused).
    #[error("store: PostgreSQL did not answer within {}s", .0.as_secs())]
    Timeout(std::time::Duration),
    /// The store's own runtime could not start, or has stopped.
    #[error("store: the PostgreSQL client runtime: {0}")]
    Runtime(String),
    /// A row keygate never writes (a negative time, an unknown change kind).
    #[error("store: damaged row: {0}")]
    Damaged(String),
}

impl StoreError {
    /// Another writer holds the database (SQLite `BUSY`/`LOCKED` past the
    /// busy timeout; PostgreSQL serialization failure, deadlock, lock
    /// timeout, or every pooled connection busy): worth "try again" rather
    /// than "it is broken".
    pub fn is_busy(&self) -> bool {
        let e = match self {
            StoreError::Open { source, .. }
            | StoreError::Migration { source, .. }
            | StoreError::Sqlite(source) => source,
            StoreError::Postgres(e) | StoreError::PgMigration { source: e, .. } => {
                return e.is_busy();
            }
            StoreError::PoolTimeout { .. } | StoreError::Timeout(_) => return true,
            StoreError::Create { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::MalformedDigest { .. }
            | StoreError::MalformedRoles { .. }
            | StoreError::Poisoned
            | StoreError::PgUrl(_)
            | StoreError::PgTls(_)
            | StoreError::PgConnect { .. }
            | StoreError::Runtime(_)
            | StoreError::Damaged(_) => return false,
        };
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// Why [`write_private`] failed; names the path, never the content.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but its mode could not be set to 0600.
    #[error("cannot restrict {}: {source}", path.display())]
    Restrict {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What one entry of the change sequence says changed. It names the
/// object, never its content: a replica re-reads the current row, so
/// applying an entry twice, or an old entry late, is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// An API key by id: created (also by `admin-key --reset`), revoked,
    /// rolled (its expiry shortened, or it is the successor).
    Key(String),
    /// A token's run-time value by token name: set, or forgotten.
    TokenValue(String),
    /// A catalog object: created, changed or deleted.
    Object { section: String, name: String },
}

/// One entry of the change sequence. `seq` increases in commit order
/// (writers take one lock to append), so "everything up to `seq`" is a
/// consistent point to catch up to. Seqs have no holes; only
/// [`Replication::prune`] removes entries, and only the oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    pub seq: u64,
    pub changed: Changed,
    /// The replica that made the change (it applied it already).
    pub origin: String,
}

/// A replica as the others see it, for a revocation waiting on acks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    pub name: String,
    pub applied: u64,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub silent_ms: u64,
}

/// The multi-replica side of a store (PostgreSQL): the change sequence,
/// single-row re-reads for applying one entry, and the replica table
/// (applied sequence + heartbeat) that makes revocation synchronous.
/// Blocking like [`Store`]: call it from the blocking pool.
pub trait Replication: Send + Sync + fmt::Debug {
    /// This replica's name, as other replicas and a `202` name it.
    fn replica(&self) -> &str;
    /// Entries with `seq > after`, oldest first, at most `limit`. The
    /// first is `after + 1` unless that one was pruned: a first entry
    /// above it means changes after `after` can no longer be read one by
    /// one (the reader was cut off for longer than `prune` keeps them).
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<StoredChange>, StoreError>;
    /// The highest sequence number written so far (0 when none); pruning
    /// keeps the newest entry, so this holds after a prune too.
    fn latest_seq(&self) -> Result<u64, StoreError>;
    fn load_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;
    fn load_token_value(&self, name: &str) -> Result<Option<StoredTokenValue>, StoreError>;
    /// The object, or `None` with the version it was deleted at (if any).
    fn load_object(
        &self,
        section: &str,
        name: &str,
    ) -> Result<Result<StoredObject, Option<u64>>, StoreError>;
    /// Records `applied` and the heartbeat (database time) for this
    /// replica (and announces it on `keygate_acks`); returns the latest sequence.
    fn heartbeat(&self, applied: u64) -> Result<u64, StoreError>;
    /// Joins the replica table as having applied nothing (a restart under
    /// the same name too), so revokers wait for this replica from now on;
    /// returns the latest sequence, read after joining: every entry after
    /// it is one this replica must apply, and revokers wait until it has.
    fn register(&self) -> Result<u64, StoreError>;
    /// Live replicas other than this one (heartbeat within `lease`) that
    /// have not applied `seq` yet.
    fn behind(&self, seq: u64, lease_ms: u64) -> Result<Vec<ReplicaRow>, StoreError>;
    /// Removes this replica's row (clean shutdown), so nobody waits on it.
    fn leave(&self) -> Result<(), StoreError>;
    /// Forgets what nobody needs any more, so neither table grows forever:
    /// rows of replicas silent for `keep` (killed without `leave`), then
    /// change entries older than `keep` that every remaining replica has
    /// applied. Removes only a prefix of the sequence and never its newest
    /// entry, so seqs stay gap-free after the oldest and `latest_seq`
    /// stays right. A replica silent for longer than `keep` may come back
    /// to find entries it missed gone (see [`Replication::changes_after`]).
    fn prune(&self, keep: std::time::Duration) -> Result<Pruned, StoreError>;
}

/// What one [`Replication::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows of replicas silent for longer than `keep`.
    pub replicas: usize,
    /// Change entries.
    pub changes: usize,
}

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
    /// Sets `key` only if it is unset, atomically; returns the value now
    /// stored (`value`, or what another writer stored first), so two
    /// replicas starting at once agree on one master-key check.
    fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError>;
    fn put_token_value(&self, value: &StoredTokenValue) -> Result<(), StoreError>;
    fn load_token_values(&self) -> Result<Vec<StoredTokenValue>, StoreError>;
    /// Forgets a run-time value (its token was deleted), so a token made
    /// later under the same name starts empty.
    fn delete_token_value(&self, name: &str) -> Result<(), StoreError>;
    fn load_objects(&self) -> Result<Vec<StoredObject>, StoreError>;
    /// `(section, name, last version)` of every deleted object (a delete
    /// through [`Store::write_objects`] records it).
    fn load_retired(&self) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// Applies `writes` and appends `audit` in one transaction, each write
    /// conditional on the version its writer read: `Ok(None)` means one
    /// condition failed (another writer got there first) and nothing was
    /// written; `Ok(Some(id))` is the audit record's id. A change and its
    /// record are kept together or not at all.
    fn write_objects(
        &self,
        writes: &[ObjectWrite],
        audit: &AuditRecord,
    ) -> Result<Option<u64>, StoreError>;
    /// Appends one audit record, durable when it returns; returns its id.
    fn append_audit(&self, rec: &AuditRecord) -> Result<u64, StoreError>;
    /// Up to `limit` records, oldest first by id: those at or after
    /// `since_ms` and with an id above `after_id` (the last id of the
    /// previous page).
    fn list_audit(
        &self,
        since_ms: Option<u64>,
        after_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAudit>, StoreError>;
    /// Deletes audit records older than `before_ms`; returns how many.
    fn purge_audit_before(&self, before_ms: u64) -> Result<usize, StoreError>;
}

/// Writes `content` to `path` readable by the owner only, flushed to disk.
pub fn write_private(path: &Path, content: &str) -> Result<(), WriteError> {
    use std::io::Write;
    let write = |source| WriteError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(write)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| WriteError::Restrict {
                path: path.to_path_buf(),
                source,
            })?;
    }
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(write)
}
