//! The audit log (SPEC §7): every change made through the admin API (keys,
//! token values, catalog objects) is written to the store as one
//! [`Record`] and logged as one JSON line on stderr (target
//! `keygate::audit`, always JSON and always written, whatever `RUST_LOG`
//! and `--log-format` say; see `main.rs`).
//!
//! A record says when, who (the acting client and key id), what (an
//! [`Action`] on an object), and how: version before and after, and value
//! fingerprints before and after. It never holds a value or a key: the
//! only value-derived field is a [`Fingerprint`] (first 8 hex digits of
//! the value's SHA-256), a type that cannot be built from arbitrary text.
//!
//! Recording happens after the change is committed, so a failure to record
//! cannot undo it and does not fail the request: it is logged as an error
//! (with the whole record, so the log still has it), never swallowed and
//! never a panic. Records older than `store.audit_retention` are purged by
//! [`purge`], at start and by the periodic upkeep.
//!
//! Deliberately not here: reading the log (the store pages it; the admin
//! API turns rows into answers), and any notion of the caller's request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::{rfc3339, to_ms};
use crate::secret::Secret;
use crate::store::{AuditRecord, Store, StoreError};

/// The `tracing` target of audit lines; `main.rs` routes it to its own
/// JSON layer on stderr.
pub const TARGET: &str = "keygate::audit";

/// The `actor_client` of changes keygate makes on its own (no key acted).
pub const SYSTEM_ACTOR: &str = "keygate";

/// The longest `detail` kept, in characters; the rest is cut.
const MAX_DETAIL: usize = 200;

/// Who made a change: the client and the id of the admin key it used
/// (from the admin API's key check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub client: String,
    pub key_id: String,
}

/// What kind of object a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Key,
    Token,
    Connector,
    Role,
    Client,
}

impl ObjectKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Key => "key",
            ObjectKind::Token => "token",
            ObjectKind::Connector => "connector",
            ObjectKind::Role => "role",
            ObjectKind::Client => "client",
        }
    }
}

/// Every change the audit log knows. The object kind follows from the
/// action, so a record cannot pair `key.roll` with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KeyCreate,
    KeyRevoke,
    KeyRoll,
    TokenCreate,
    TokenUpdate,
    TokenDelete,
    /// `PUT /api/v1/tokens/{name}/value`.
    TokenValueSet,
    ConnectorCreate,
    ConnectorUpdate,
    ConnectorDelete,
    /// `PUT /api/v1/connectors/{name}/tokens`: attach and detach.
    ConnectorTokens,
    RoleCreate,
    RoleUpdate,
    RoleDelete,
    ClientCreate,
    ClientUpdate,
    ClientDelete,
}

impl Action {
    /// The action as stored and served (`key.create`, `token.value.set`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreate => "key.create",
            Action::KeyRevoke => "key.revoke",
            Action::KeyRoll => "key.roll",
            Action::TokenCreate => "token.create",
            Action::TokenUpdate => "token.update",
            Action::TokenDelete => "token.delete",
            Action::TokenValueSet => "token.value.set",
            Action::ConnectorCreate => "connector.create",
            Action::ConnectorUpdate => "connector.update",
            Action::ConnectorDelete => "connector.delete",
            Action::ConnectorTokens => "connector.tokens",
            Action::RoleCreate => "role.create",
            Action::RoleUpdate => "role.update",
            Action::RoleDelete => "role.delete",
            Action::ClientCreate => "client.create",
            Action::ClientUpdate => "client.update",
            Action::ClientDelete => "client.delete",
        }
    }

    pub const fn kind(self) -> ObjectKind {
        match self {
            Action::KeyCreate | Action::KeyRevoke | Action::KeyRoll => ObjectKind::Key,
            Action::TokenCreate
            | Action::TokenUpdate
            | Action::TokenDelete
            | Action::TokenValueSet => ObjectKind::Token,
            Action::ConnectorCreate
            | Action::ConnectorUpdate
            | Action::ConnectorDelete
            | Action::ConnectorTokens => ObjectKind::Connector,
            Action::RoleCreate | Action::RoleUpdate | Action::RoleDelete => ObjectKind::Role,
            Action::ClientCreate | Action::ClientUpdate | Action::ClientDelete => {
                ObjectKind::Client
            }
        }
    }
}

/// The first 8 hex digits of a value's SHA-256: tells two values apart,
/// never reveals one. Built from the value itself or from a fingerprint
/// computed elsewhere (checked to be one), never from free text, so a
/// value cannot reach the audit log through this field by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(value: &Secret) -> Self {
        Fingerprint(value.fingerprint())
    }

    /// A fingerprint computed elsewhere (`TokenValue::fingerprint`):
    /// exactly 8 lowercase hex digits, else `None`.
    pub fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Fingerprint(hex.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One change, built with [`Record::new`] (or [`Record::by_system`]) and
/// the setters, then written with [`record`]:
///
/// ```no_run
/// use keygate::audit::{self, Action, Actor, Fingerprint, Record};
/// use keygate::secret::Secret;
/// use keygate::store::Store;
///
/// fn value_set(store: &dyn Store, actor: &Actor, old: &Secret, new: &Secret) {
///     let rec = Record::new(actor, Action::TokenValueSet, "stripe")
///         .versions(Some(1), Some(2))
///         .fingerprints(Some(Fingerprint::of(old)), Some(Fingerprint::of(new)));
///     audit::record(store, rec);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    at: SystemTime,
    actor: Option<Actor>,
    action: Action,
    object: String,
    version_before: Option<u64>,
    version_after: Option<u64>,
    fingerprint_before: Option<Fingerprint>,
    fingerprint_after: Option<Fingerprint>,
    detail: Option<String>,
}

impl Record {
    /// `actor` did `action` to the object named `object` (a key's id for
    /// keys), now.
    pub fn new(actor: &Actor, action: Action, object: impl Into<String>) -> Self {
        Record {
            actor: Some(actor.clone()),
            ..Record::by_system(action, object)
        }
    }

    /// A change keygate made on its own: stored with actor client
    /// [`SYSTEM_ACTOR`] and no key id.
    pub fn by_system(action: Action, object: impl Into<String>) -> Self {
        Record {
            at: SystemTime::now(),
            actor: None,
            action,
            object: object.into(),
            version_before: None,
            version_after: None,
            fingerprint_before: None,
            fingerprint_after: None,
            detail: None,
        }
    }

    /// When the change happened, if not now.
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = at;
        self
    }

    /// The object's version before and after (`None`: it had none, as
    /// before a create or after a delete).
    pub fn versions(mut self, before: Option<u64>, after: Option<u64>) -> Self {
        self.version_before = before;
        self.version_after = after;
        self
    }

    /// The value's fingerprint before and after.
    pub fn fingerprints(mut self, before: Option<Fingerprint>, after: Option<Fingerprint>) -> Self {
        self.fingerprint_before = before;
        self.fingerprint_after = after;
        self
    }

    /// A short note for the operator (a roll's successor, `force=true`).
    /// Never a secret: only names and ids belong here. Control characters
    /// become spaces and the text is cut at 200 characters, so a note
    /// cannot forge or flood a log line.
    pub fn detail(mut self, text: impl AsRef<str>) -> Self {
        let clean: String = text
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_DETAIL)
            .collect();
        self.detail = Some(clean);
        self
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The row the store keeps.
    pub fn to_stored(&self) -> AuditRecord {
        AuditRecord {
            at_ms: to_ms(self.at),
            actor_client: self
                .actor
                .as_ref()
                .map_or_else(|| SYSTEM_ACTOR.to_string(), |a| a.client.clone()),
            actor_key: self.actor.as_ref().map(|a| a.key_id.clone()),
            action: self.action.as_str().to_string(),
            object_kind: self.action.kind().as_str().to_string(),
            object_name: self.object.clone(),
            version_before: self.version_before,
            version_after: self.version_after,
            fingerprint_before: self.fingerprint_before.as_ref().map(|f| f.0.clone()),
            fingerprint_after: self.fingerprint_after.as_ref().map(|f| f.0.clone()),
            detail: self.detail.clone(),
        }
    }
}

/// Writes `rec` to the store and logs it as one JSON line (target
/// [`TARGET`]). Returns the record's id, or `None` when the store refused
/// it: then the line is logged at `error` level with the store's error,
/// so the change is still on record in the log. Blocks on the store: call
/// it from `spawn_blocking` (the admin handlers do, right after the
/// change they record, with the actor `Admin::authorize` returned).
pub fn record(store: &dyn Store, rec: Record) -> Option<u64> {
    let row = rec.to_stored();
    let result = store.append_audit(&row);
    emit(&rec, &row, result)
}

/// Logs the line of a record the store already kept (a catalog change
/// stores its record in the change's own transaction), with its id.
pub fn announce(rec: &Record, id: u64) {
    let row = rec.to_stored();
    emit(rec, &row, Ok(id));
}

/// The JSON line of `rec`: at `info` with its id once stored, at `error`
/// with the store's error when it was not.
fn emit(rec: &Record, row: &AuditRecord, result: Result<u64, StoreError>) -> Option<u64> {
    let at = rfc3339(rec.at);
    macro_rules! emit {
        ($level:ident, $id:expr, $error:expr, $message:literal) => {
            tracing::$level!(
                target: TARGET,
                id = $id,
                at = %at,
                actor_client = %row.actor_client,
                actor_key = row.actor_key.as_deref(),
                action = %row.action,
                object_kind = %row.object_kind,
                object_name = %row.object_name,
                version_before = row.version_before,
                version_after = row.version_after,
                fingerprint_before = row.fingerprint_before.as_deref(),
                fingerprint_after = row.fingerprint_after.as_deref(),
                detail = row.detail.as_deref(),
                error = $error,
                $message
            )
        };
    }
    match result {
        Ok(id) => {
            emit!(info, Some(id), None::<&str>, "audit");
            Some(id)
        }
        Err(e) => {
            let error = e.to_string();
            emit!(
                error,
                None::<u64>,
                Some(error.as_str()),
                "audit record not stored (the change itself was made)"
            );
            None
        }
    }
}

/// Deletes records older than `retention` before `now`; returns how many.
/// A retention longer than the clock reaches back deletes nothing.
pub fn purge(store: &dyn Store, retention: Duration, now: SystemTime) -> Result<usize, StoreError> {
    let cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
    store.purge_audit_before(to_ms(cutoff))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn actor() -> Actor {
        Actor {
            client: "ops".into(),
            key_id: "key_admin".into(),
        }
    }

    /// A `tracing` writer into a shared buffer, to read the JSON lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` with audit lines written as JSON into the returned lines.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn a_record_is_stored_and_logged_as_one_json_line_without_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("k.db")).expect("open");
        let value = Secret::new("sk_live_do_not_log");
        let mut id = None;
        let lines = logged(|| {
            id = record(
                &store,
                Record::new(&actor(), Action::TokenValueSet, "stripe")
                    .versions(Some(1), Some(2))
                    .fingerprints(
                        Fingerprint::parse("0a1b2c3d"),
                        Some(Fingerprint::of(&value)),
                    ),
            );
        });
        let id = id.expect("stored");
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert_eq!(l["target"], TARGET);
        assert_eq!(l["id"], id);
        assert_eq!(l["actor_client"], "ops");
        assert_eq!(l["actor_key"], "key_admin");
        assert_eq!(l["action"], "token.value.set");
        assert_eq!(l["object_kind"], "token");
        assert_eq!(l["object_name"], "stripe");
        assert_eq!(l["version_before"], 1);
        assert_eq!(l["version_after"], 2);
        assert_eq!(l["fingerprint_after"], value.fingerprint());
        assert!(l["at"].as_str().expect("at").ends_with('Z'));
        assert!(!l.to_string().contains(value.expose()));
        let stored = store.list_audit(None, None, 10).expect("list");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, id);
        assert_eq!(
            stored[0].record.fingerprint_before.as_deref(),
            Some("0a1b2c3d")
        );
    }

    #[test]
    fn a_store_failure_is_logged_as_an_error_with_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.db");
        let store = SqliteStore::open(&path).expect("open");
        rusqlite::Connection::open(&path)
            .expect("raw")
            .execute_batch("DROP TABLE audit_log")
            .expect("drop");
        let mut id = Some(0);
        let lines = logged(|| {
            id = record(
                &store,
                Record::by_system(Action::KeyRevoke, "key_x").detail("retention"),
            );
        });
        assert_eq!(id, None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["object_name"], "key_x");
        assert_eq!(lines[0]["actor_client"], SYSTEM_ACTOR);
        assert!(lines[0].get("actor_key").is_none());
        assert!(
            lines[0]["error"]
                .as_str()
                .expect("error")
                .contains("audit_log")
        );
    }

    #[test]
    fn fingerprints_are_checked_and_details_tamed() {
        assert!(Fingerprint::parse("0a1b2c3d").is_some());
        for bad in ["0A1B2C3D", "0a1b2c3", "0a1b2c3d4", "sk_live_", "        "] {
            assert_eq!(Fingerprint::parse(bad), None, "{bad}");
        }
        let row = Record::new(&actor(), Action::KeyRoll, "key_a")
            .detail(format!("line\nbreak{}", "x".repeat(500)))
            .to_stored();
        let detail = row.detail.expect("detail");
        assert!(detail.starts_with("line break"));
        assert_eq!(detail.chars().count(), MAX_DETAIL);
        assert_eq!(row.object_kind, "key");
        assert_eq!(row.action, "key.roll");
    }

    #[test]
    fn every_action_names_its_object_kind() {
        use Action::*;
        for a in [
            KeyCreate,
            KeyRevoke,
            KeyRoll,
            TokenCreate,
            TokenUpdate,
            TokenDelete,
            TokenValueSet,
            ConnectorCreate,
            ConnectorUpdate,
            ConnectorDelete,
            ConnectorTokens,
            RoleCreate,
            RoleUpdate,
            RoleDelete,
            ClientCreate,
            ClientUpdate,
            ClientDelete,
        ] {
            assert!(
                a.as_str().starts_with(a.kind().as_str()),
                "{} is not a {} action",
                a.as_str(),
                a.kind().as_str()
            );
        }
    }

    #[test]
    fn purge_deletes_records_older_than_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("k.db")).expect("open");
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let old = Record::new(&actor(), Action::KeyCreate, "key_old").at(now - 30 * day);
        let new = Record::new(&actor(), Action::KeyCreate, "key_new").at(now - day);
        record(&store, old).expect("old");
        record(&store, new).expect("new");
        assert_eq!(purge(&store, Duration::MAX, now).expect("purge"), 0);
        assert_eq!(purge(&store, 7 * day, now).expect("purge"), 1);
        let left = store.list_audit(None, None, 10).expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].record.object_name, "key_new");
    }
}
