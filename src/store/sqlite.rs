//! The embedded SQLite store. WAL journal with `synchronous=FULL`, so a
//! committed key creation survives a crash or SIGKILL right after the
//! `201`. Migrations are the numbered SQL files in `migrations/`, applied in
//! order and tracked in `PRAGMA user_version`. The database file is created
//! with mode 0600: it holds key hashes and encrypted token values.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditRecord, ObjectWrite, Store, StoreError, StoredAudit, StoredKey, StoredObject,
    StoredTokenValue, StoredUsage, Usage,
};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_keys.sql"),
    include_str!("migrations/0002_token_values.sql"),
    include_str!("migrations/0003_catalog.sql"),
    include_str!("migrations/0004_audit.sql"),
];

#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn create_private(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    #[cfg(unix)]
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| StoreError::Create {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let current = usize::try_from(current).unwrap_or(usize::MAX);
        if current > MIGRATIONS.len() {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let version = i + 1;
            let step = |source| StoreError::Migration { version, source };
            let tx = conn.transaction().map_err(step)?;
            tx.execute_batch(sql).map_err(step)?;
            tx.execute_batch(&format!("PRAGMA user_version = {version}"))
                .map_err(step)?;
            tx.commit().map_err(step)?;
        }
        Ok(())
    }
}

/// A stored `u64` (ms timestamp, counter, version) as an SQLite INTEGER,
/// which is an `i64`. Saturates at `i64::MAX` rather than wrapping: the
/// mapping stays monotone, so the SQL comparisons on these columns
/// (`expires_at > ?`, `revoked_at < ?`) keep their order, and `i64::MAX` ms
/// (292 million years) still reads as "never" for a time; no counter gets
/// there. An `as` cast would turn such a time negative, i.e. long expired.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_int(v: Option<u64>) -> Option<i64> {
    v.map(int)
}

/// Column `idx` as a `u64`. keygate never writes a negative value ([`int`]
/// saturates), so one is a damaged row: an error naming the column, not a
/// wrap to a far-future time (an expiry that never comes).
fn column_u64(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// Like [`column_u64`] for a nullable column.
fn column_opt_u64(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = r.get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)))
        .transpose()
}

fn insert(conn: &Connection, k: &StoredKey) -> Result<(), StoreError> {
    let roles = k
        .roles
        .as_ref()
        .map(|r| serde_json::to_string(r).unwrap_or_default());
    conn.execute(
        "INSERT INTO api_keys (id, digest, name, client, roles, display_prefix, created_at, expires_at, revoked_at, rolled_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            k.id,
            &k.digest[..],
            k.name,
            k.client,
            roles,
            k.display_prefix,
            int(k.created_ms),
            opt_int(k.expires_ms),
            opt_int(k.revoked_ms),
            k.rolled_from
        ],
    )?;
    Ok(())
}

/// Unrevoked keys rolled from `id`, following the chain through revoked
/// links too (`UNION` also stops a cycle, should one ever be written).
/// Appends one audit row (on a connection or inside a transaction, which
/// derefs to one) and returns its id.
fn insert_audit(conn: &Connection, a: &AuditRecord) -> Result<u64, StoreError> {
    conn.execute(
        "INSERT INTO audit_log (at_ms, actor_client, actor_key, action, object_kind, object_name,
             version_before, version_after, fingerprint_before, fingerprint_after, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            int(a.at_ms),
            a.actor_client,
            a.actor_key,
            a.action,
            a.object_kind,
            a.object_name,
            opt_int(a.version_before),
            opt_int(a.version_after),
            a.fingerprint_before,
            a.fingerprint_after,
            a.detail
        ],
    )?;
    let id = conn.last_insert_rowid();
    u64::try_from(id)
        .map_err(|_| StoreError::Sqlite(rusqlite::Error::IntegralValueOutOfRange(0, id)))
}

fn successors_of(conn: &Connection, id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "WITH RECURSIVE chain(id) AS (
                 SELECT id FROM api_keys WHERE rolled_from = ?1
                 UNION
                 SELECT k.id FROM api_keys k JOIN chain c ON k.rolled_from = c.id
             )
             SELECT k.id FROM api_keys k JOIN chain c ON k.id = c.id
             WHERE k.revoked_at IS NULL AND k.id <> ?1 ORDER BY k.created_at",
    )?;
    let rows = stmt.query_map(params![id], |r| r.get(0))?;
    rows.collect::<Result<_, _>>().map_err(StoreError::from)
}

impl Store for SqliteStore {
    fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT id, digest, name, client, roles, display_prefix, created_at, expires_at, revoked_at, rolled_from
                 FROM api_keys ORDER BY created_at",
            )?;
        let rows = stmt.query_map([], |r| {
            let digest: Vec<u8> = r.get(1)?;
            let roles: Option<String> = r.get(4)?;
            Ok((
                digest,
                roles,
                StoredKey {
                    id: r.get(0)?,
                    digest: [0; 32],
                    name: r.get(2)?,
                    client: r.get(3)?,
                    roles: None,
                    display_prefix: r.get(5)?,
                    created_ms: column_u64(r, 6)?,
                    expires_ms: column_opt_u64(r, 7)?,
                    revoked_ms: column_opt_u64(r, 8)?,
                    rolled_from: r.get(9)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (digest, roles, mut key) = row?;
            key.digest = digest
                .try_into()
                .map_err(|_| StoreError::MalformedDigest { id: key.id.clone() })?;
            key.roles = roles
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|source| StoreError::MalformedRoles {
                    id: key.id.clone(),
                    source,
                })?;
            out.push(key);
        }
        Ok(out)
    }

    fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        insert(&*self.conn()?, key)
    }

    fn revoke_chain(&self, id: &str, at_ms: u64) -> Result<Option<Vec<String>>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, int(at_ms)],
        )?;
        if n == 0 {
            return Ok(None); // dropping the transaction rolls it back
        }
        let successors = successors_of(&tx, id)?;
        for s in &successors {
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![s, int(at_ms)],
            )?;
        }
        tx.commit()?;
        let mut ids = vec![id.to_string()];
        ids.extend(successors);
        Ok(Some(ids))
    }

    fn live_successors(&self, id: &str) -> Result<Vec<String>, StoreError> {
        successors_of(&*self.conn()?, id)
    }

    fn roll(
        &self,
        old_id: &str,
        old_expires_ms: u64,
        successor: &StoredKey,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE api_keys SET expires_at = ?2
                 WHERE id = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3)",
            params![old_id, int(old_expires_ms), int(successor.created_ms)],
        )?;
        if n == 0 {
            return Ok(false);
        }
        insert(&tx, successor)?;
        tx.commit()?;
        Ok(true)
    }

    fn record_usage(&self, batch: &[Usage<'_>]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO key_usage (id, last_used_at, uses) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET last_used_at = max(last_used_at, excluded.last_used_at), uses = uses + excluded.uses",
                )?;
            for u in batch {
                stmt.execute(params![u.id, int(u.last_used_ms), int(u.uses)])?;
            }
        }
        tx.commit().map_err(StoreError::from)
    }

    fn load_usage(&self) -> Result<Vec<StoredUsage>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT id, last_used_at, uses FROM key_usage")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredUsage {
                id: r.get(0)?,
                last_used_ms: column_u64(r, 1)?,
                uses: column_u64(r, 2)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn purge_ended_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let b = int(before_ms);
        tx.execute(
            "DELETE FROM key_usage WHERE id IN (SELECT id FROM api_keys
               WHERE (revoked_at IS NOT NULL AND revoked_at < ?1) OR (expires_at IS NOT NULL AND expires_at < ?1))",
            params![b],
        )?;
        let n = tx.execute(
            "DELETE FROM api_keys WHERE (revoked_at IS NOT NULL AND revoked_at < ?1)
                   OR (expires_at IS NOT NULL AND expires_at < ?1)",
            params![b],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()?
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(StoreError::from)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(StoreError::from)
    }

    fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            params![key, value],
        )?;
        conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .map_err(StoreError::from)
    }

    fn put_token_value(&self, v: &StoredTokenValue) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO token_values (name, nonce, ciphertext, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext,
                   version = excluded.version, updated_at = excluded.updated_at",
                params![v.name, v.nonce, v.ciphertext, int(v.version), int(v.updated_ms)],
            )
            .map(|_| ())
            .map_err(StoreError::from)
    }

    fn load_token_values(&self) -> Result<Vec<StoredTokenValue>, StoreError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT name, nonce, ciphertext, version, updated_at FROM token_values")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredTokenValue {
                name: r.get(0)?,
                nonce: r.get(1)?,
                ciphertext: r.get(2)?,
                version: column_u64(r, 3)?,
                updated_ms: column_u64(r, 4)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn delete_token_value(&self, name: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM token_values WHERE name = ?1", params![name])
            .map(|_| ())
            .map_err(StoreError::from)
    }

    fn load_objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT section, name, body, version, created_at, updated_at FROM catalog_objects ORDER BY section, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredObject {
                section: r.get(0)?,
                name: r.get(1)?,
                body: r.get(2)?,
                version: column_u64(r, 3)?,
                created_ms: column_u64(r, 4)?,
                updated_ms: column_u64(r, 5)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn load_retired(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT section, name, version FROM catalog_retired")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, column_u64(r, 2)?)))?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn write_objects(
        &self,
        writes: &[ObjectWrite],
        audit: &AuditRecord,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        for w in writes {
            let changed = match w {
                ObjectWrite::Put {
                    object: o,
                    expected: None,
                } => tx.execute(
                    "INSERT INTO catalog_objects (section, name, body, version, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(section, name) DO NOTHING",
                    params![
                        o.section,
                        o.name,
                        o.body,
                        int(o.version),
                        int(o.created_ms),
                        int(o.updated_ms)
                    ],
                )?,
                ObjectWrite::Put {
                    object: o,
                    expected: Some(v),
                } => tx.execute(
                    "UPDATE catalog_objects SET body = ?3, version = ?4, updated_at = ?5
                     WHERE section = ?1 AND name = ?2 AND version = ?6",
                    params![
                        o.section,
                        o.name,
                        o.body,
                        int(o.version),
                        int(o.updated_ms),
                        int(*v)
                    ],
                )?,
                ObjectWrite::Delete {
                    section,
                    name,
                    expected,
                } => {
                    let n = tx.execute(
                        "DELETE FROM catalog_objects WHERE section = ?1 AND name = ?2 AND version = ?3",
                        params![section, name, int(*expected)],
                    )?;
                    tx.execute(
                        "INSERT INTO catalog_retired (section, name, version) VALUES (?1, ?2, ?3)
                         ON CONFLICT(section, name) DO UPDATE SET version = excluded.version",
                        params![section, name, int(*expected)],
                    )?;
                    n
                }
            };
            if changed != 1 {
                // Dropping the transaction rolls every earlier step back.
                return Ok(None);
            }
        }
        let id = insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(Some(id))
    }

    fn append_audit(&self, a: &AuditRecord) -> Result<u64, StoreError> {
        insert_audit(&*self.conn()?, a)
    }

    fn list_audit(
        &self,
        since_ms: Option<u64>,
        after_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        let conn = self.conn()?;
        // Both bounds always apply (0 = none: ids start at 1, times are
        // positive), so SQLite walks the id range in order with no sort.
        let mut stmt = conn.prepare(
            "SELECT id, at_ms, actor_client, actor_key, action, object_kind, object_name,
                    version_before, version_after, fingerprint_before, fingerprint_after, detail
             FROM audit_log WHERE id > ?1 AND at_ms >= ?2 ORDER BY id LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(
            params![
                int(after_id.unwrap_or(0)),
                int(since_ms.unwrap_or(0)),
                limit
            ],
            |r| {
                Ok(StoredAudit {
                    id: column_u64(r, 0)?,
                    record: AuditRecord {
                        at_ms: column_u64(r, 1)?,
                        actor_client: r.get(2)?,
                        actor_key: r.get(3)?,
                        action: r.get(4)?,
                        object_kind: r.get(5)?,
                        object_name: r.get(6)?,
                        version_before: column_opt_u64(r, 7)?,
                        version_after: column_opt_u64(r, 8)?,
                        fingerprint_before: r.get(9)?,
                        fingerprint_after: r.get(10)?,
                        detail: r.get(11)?,
                    },
                })
            },
        )?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    fn purge_audit_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.conn()?
            .execute(
                "DELETE FROM audit_log WHERE at_ms < ?1",
                params![int(before_ms)],
            )
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, d: u8) -> StoredKey {
        StoredKey {
            id: id.into(),
            digest: [d; 32],
            name: "n".into(),
            client: "c".into(),
            roles: Some(vec!["r".into()]),
            display_prefix: "kg_abcde".into(),
            created_ms: 1,
            expires_ms: Some(100),
            revoked_ms: None,
            rolled_from: None,
        }
    }

    #[test]
    fn keys_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/k.db");
        {
            let s = SqliteStore::open(&path).expect("open");
            s.insert_key(&key("a", 1)).expect("insert");
            assert!(
                s.roll(
                    "a",
                    50,
                    &StoredKey {
                        rolled_from: Some("a".into()),
                        ..key("b", 2)
                    },
                )
                .expect("roll")
            );
            assert_eq!(
                s.revoke_chain("b", 60).expect("revoke"),
                Some(vec!["b".to_string()])
            );
            assert_eq!(
                s.revoke_chain("b", 61).expect("revoke"),
                None,
                "revoking twice changes nothing"
            );
            s.record_usage(&[Usage {
                id: "a",
                last_used_ms: 7,
                uses: 3,
            }])
            .expect("usage");
        }
        let s = SqliteStore::open(&path).expect("reopen");
        let keys = s.load_keys().expect("load");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expires_ms, Some(50));
        assert_eq!(keys[0].roles, Some(vec!["r".to_string()]));
        assert_eq!(keys[1].revoked_ms, Some(60));
        assert_eq!(s.load_usage().expect("usage")[0].uses, 3);
        assert_eq!(s.purge_ended_before(55).expect("purge"), 1);
        assert_eq!(s.load_keys().expect("load").len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn out_of_range_integers_saturate_on_write_and_fail_on_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("k.db")).expect("open");
        // Past i64::MAX: stored as i64::MAX (still "never"), not negative.
        s.insert_key(&StoredKey {
            expires_ms: Some(u64::MAX),
            ..key("far", 1)
        })
        .expect("insert");
        let far = u64::try_from(i64::MAX).expect("fits");
        assert_eq!(s.load_keys().expect("load")[0].expires_ms, Some(far));
        let next = StoredKey {
            rolled_from: Some("far".into()),
            ..key("next", 2)
        };
        assert!(
            s.roll("far", 10, &next).expect("roll"),
            "the saturated expiry still compares as later than now (a wrapped one would be -1)"
        );
        // A negative time was never written by keygate: an error, not a wrap.
        s.conn()
            .expect("conn")
            .execute("UPDATE api_keys SET revoked_at = -5", [])
            .expect("damage");
        let e = s.load_keys().expect_err("a negative revoked_at");
        assert!(matches!(e, StoreError::Sqlite(_)), "{e:?}");
        assert!(e.to_string().contains("-5"), "{e}");
    }

    #[test]
    fn revoke_ends_the_roll_chain_and_a_revoked_key_cannot_roll() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("k.db")).expect("open");
        let successor = |id: &str, d: u8, from: &str| StoredKey {
            rolled_from: Some(from.into()),
            expires_ms: None,
            ..key(id, d)
        };
        s.insert_key(&StoredKey {
            expires_ms: None,
            ..key("a", 1)
        })
        .expect("insert");
        assert!(s.roll("a", 10, &successor("b", 2, "a")).expect("roll"));
        assert!(s.roll("b", 10, &successor("c", 3, "b")).expect("roll"));
        assert_eq!(
            s.live_successors("a").expect("chain"),
            vec!["b".to_string(), "c".to_string()]
        );
        assert_eq!(
            s.revoke_chain("a", 5).expect("revoke"),
            Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
        );
        assert!(s.live_successors("a").expect("chain").is_empty());
        assert!(
            !s.roll("c", 10, &successor("d", 4, "c")).expect("roll"),
            "a revoked key is not rolled"
        );
        assert!(s.load_keys().expect("load").iter().all(|k| k.id != "d"));
        assert_eq!(s.revoke_chain("nope", 5).expect("revoke"), None);
    }

    fn audit(at_ms: u64, action: &str, name: &str) -> AuditRecord {
        AuditRecord {
            at_ms,
            actor_client: "ops".into(),
            actor_key: Some("key_a".into()),
            action: action.into(),
            object_kind: "token".into(),
            object_name: name.into(),
            version_before: Some(1),
            version_after: Some(2),
            fingerprint_before: Some("0a1b2c3d".into()),
            fingerprint_after: Some("4e5f6a7b".into()),
            detail: None,
        }
    }

    #[test]
    fn audit_records_round_trip_survive_reopen_and_page_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.db");
        let mut ids = Vec::new();
        {
            let s = SqliteStore::open(&path).expect("open");
            for i in 0..5 {
                ids.push(
                    s.append_audit(&audit(100 + i, "token.value.set", &format!("t{i}")))
                        .expect("append"),
                );
            }
            let system = AuditRecord {
                actor_key: None,
                version_before: None,
                version_after: None,
                fingerprint_before: None,
                fingerprint_after: None,
                detail: Some("retention".into()),
                ..audit(200, "key.revoke", "key_x")
            };
            ids.push(s.append_audit(&system).expect("append"));
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let s = SqliteStore::open(&path).expect("reopen");
        let all = s.list_audit(None, None, 100).expect("list");
        assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
        assert_eq!(all[0].record, audit(100, "token.value.set", "t0"));
        assert_eq!(all[5].record.actor_key, None);
        assert_eq!(all[5].record.detail.as_deref(), Some("retention"));
        // Pages of two: no gap, no repeat.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s.list_audit(None, after, 2).expect("page");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            after = page.last().map(|a| a.id);
            seen.extend(page.into_iter().map(|a| a.id));
        }
        assert_eq!(seen, ids);
        // `since` is inclusive and combines with the cursor.
        let since: Vec<u64> = s
            .list_audit(Some(103), None, 100)
            .expect("since")
            .iter()
            .map(|a| a.record.at_ms)
            .collect();
        assert_eq!(since, [103, 104, 200]);
        let since_after = s.list_audit(Some(103), Some(ids[3]), 100).expect("both");
        assert_eq!(since_after.len(), 2);
    }

    #[test]
    fn audit_purge_deletes_only_older_records_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("k.db")).expect("open");
        let old = s
            .append_audit(&audit(10, "key.create", "a"))
            .expect("append");
        let last = s
            .append_audit(&audit(50, "key.create", "b"))
            .expect("append");
        assert_eq!(s.purge_audit_before(50).expect("purge"), 1);
        let left = s.list_audit(None, None, 10).expect("list");
        assert_eq!(left.iter().map(|a| a.id).collect::<Vec<_>>(), [last]);
        assert!(old < last);
        assert_eq!(s.purge_audit_before(u64::MAX).expect("purge"), 1);
        // AUTOINCREMENT: a cursor held by a client never points at a new row.
        let next = s
            .append_audit(&audit(60, "key.create", "c"))
            .expect("append");
        assert!(next > last, "{next} after {last}");
    }

    #[test]
    fn catalog_writes_are_conditional_and_atomic() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k.db");
        let store = SqliteStore::open(&path).expect("open");
        let obj = |name: &str, version: u64| StoredObject {
            section: "tokens".into(),
            name: name.into(),
            body: format!("{{\"v\":{version}}}"),
            version,
            created_ms: 1,
            updated_ms: version,
        };
        let put = |name: &str, version: u64, expected| ObjectWrite::Put {
            object: obj(name, version),
            expected,
        };
        let audit = AuditRecord {
            at_ms: 5,
            actor_client: "ops".into(),
            actor_key: Some("key_1".into()),
            action: "token.create".into(),
            object_kind: "token".into(),
            object_name: "a".into(),
            version_before: None,
            version_after: Some(1),
            fingerprint_before: None,
            fingerprint_after: None,
            detail: None,
        };
        let write = |w: &[ObjectWrite]| store.write_objects(w, &audit).expect("write");
        assert!(write(&[put("a", 1, None)]).is_some());
        // A second create of the same name, or an update from a stale
        // version, writes nothing, its audit record included.
        assert!(write(&[put("a", 1, None)]).is_none());
        assert!(write(&[put("a", 3, Some(2))]).is_none());
        // One failing step rolls back the steps before it.
        assert!(write(&[put("b", 1, None), put("a", 3, Some(2))]).is_none());
        assert!(write(&[put("a", 2, Some(1))]).is_some());
        assert_eq!(
            store.list_audit(None, None, 10).expect("audit").len(),
            2,
            "one record per change written, none for the refused ones"
        );
        drop(store);
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.load_objects().expect("load"), vec![obj("a", 2)]);
        let delete = |expected| ObjectWrite::Delete {
            section: "tokens".into(),
            name: "a".into(),
            expected,
        };
        assert!(
            store
                .write_objects(&[delete(1)], &audit)
                .expect("stale")
                .is_none()
        );
        assert!(
            store
                .write_objects(&[delete(2)], &audit)
                .expect("delete")
                .is_some()
        );
        assert!(store.load_objects().expect("load").is_empty());
        assert_eq!(
            store.load_retired().expect("retired"),
            vec![("tokens".to_string(), "a".to_string(), 2)]
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.db");
        drop(SqliteStore::open(&path).expect("open"));
        let c = Connection::open(&path).expect("raw");
        c.execute_batch("PRAGMA user_version = 99").expect("bump");
        drop(c);
        let e = SqliteStore::open(&path).expect_err("newer schema");
        assert!(
            matches!(
                e,
                StoreError::SchemaTooNew { found: 99, supported } if supported == MIGRATIONS.len()
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }

    #[test]
    fn busy_and_locked_are_told_apart_from_damage() {
        let failure = |code| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(failure(rusqlite::ffi::SQLITE_BUSY).is_busy());
        assert!(failure(rusqlite::ffi::SQLITE_LOCKED).is_busy());
        assert!(!failure(rusqlite::ffi::SQLITE_CORRUPT).is_busy());
        assert!(!StoreError::Poisoned.is_busy());
    }
}
