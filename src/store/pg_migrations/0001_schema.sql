-- keygate's whole schema for PostgreSQL: the tables of the SQLite
-- migrations (src/store/migrations/, same meaning column for column) plus
-- the change sequence and the replica table (SPEC §8). Times keygate sets
-- are BIGINT unix milliseconds, as in SQLite; times the database sets
-- (changes, replicas) are timestamptz, read only by the database itself.

-- API keys issued through the admin API. Only the SHA-256 of a key is kept.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    digest         BYTEA NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    client         TEXT NOT NULL,
    roles          TEXT,              -- JSON array; NULL = the client's roles
    display_prefix TEXT NOT NULL,
    created_at     BIGINT NOT NULL,   -- unix milliseconds
    expires_at     BIGINT,
    revoked_at     BIGINT,
    rolled_from    TEXT
);
CREATE INDEX api_keys_rolled_from ON api_keys (rolled_from);

-- Last use and use count of every key (API and YAML-declared), merged from
-- every replica's batches (max of last use, sum of uses).
CREATE TABLE key_usage (
    id           TEXT PRIMARY KEY,
    last_used_at BIGINT NOT NULL,
    uses         BIGINT NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Token values set at run time, encrypted with the master key (AEAD; the
-- token name is the associated data).
CREATE TABLE token_values (
    name       TEXT PRIMARY KEY,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Catalog objects made through the admin API; `body` is JSON in the config
-- file's shape, never a secret value.
CREATE TABLE catalog_objects (
    section    TEXT NOT NULL,      -- tokens | connectors | roles | clients
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    BIGINT NOT NULL,    -- 1 at creation, +1 per change
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (section, name)
);

-- The last version of each deleted object, so a name created again
-- continues from it.
CREATE TABLE catalog_retired (
    section TEXT NOT NULL,
    name    TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (section, name)
);

-- The audit log. Never a value or a key. `id` is the paging cursor; a
-- sequence never hands a number out twice.
CREATE TABLE audit_log (
    id                 BIGSERIAL PRIMARY KEY,
    at_ms              BIGINT NOT NULL,
    actor_client       TEXT NOT NULL,
    actor_key          TEXT,
    action             TEXT NOT NULL,
    object_kind        TEXT NOT NULL,
    object_name        TEXT NOT NULL,
    version_before     BIGINT,
    version_after      BIGINT,
    fingerprint_before TEXT,
    fingerprint_after  TEXT,
    detail             TEXT
);
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- The change sequence: one row per changed subject, appended in the
-- writing transaction under one advisory lock, so `seq` order is commit
-- order. It names what changed, never the content.
CREATE TABLE changes (
    seq     BIGINT PRIMARY KEY,
    kind    TEXT NOT NULL,          -- key | token_value | object
    subject TEXT NOT NULL,          -- key id, token name or object name
    section TEXT NULL,              -- an object's section
    origin  TEXT NOT NULL,          -- the replica that wrote it
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Live replicas: how far each has applied the change sequence, and when it
-- last said so (database time, so replicas' clocks do not matter).
CREATE TABLE replicas (
    name         TEXT PRIMARY KEY,
    applied      BIGINT NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL
);
