-- The audit log: one row per change made through the admin API (keys,
-- token values, catalog objects). Never a value or a key: fingerprints are
-- the first 8 hex digits of a value's SHA-256. `id` is the paging cursor,
-- so it must never be reused (AUTOINCREMENT, not the bare rowid, which
-- SQLite may hand out again after the newest rows are purged).
CREATE TABLE audit_log (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms              INTEGER NOT NULL,  -- unix milliseconds
    actor_client       TEXT NOT NULL,
    actor_key          TEXT,              -- key id; NULL for keygate itself
    action             TEXT NOT NULL,     -- `key.create`, `token.value.set`, ...
    object_kind        TEXT NOT NULL,     -- `key`, `token`, `connector`, ...
    object_name        TEXT NOT NULL,     -- the object's name, or a key id
    version_before     INTEGER,
    version_after      INTEGER,
    fingerprint_before TEXT,
    fingerprint_after  TEXT,
    detail             TEXT
);

-- `since` filters and retention purges read by time.
CREATE INDEX audit_log_at ON audit_log (at_ms);
