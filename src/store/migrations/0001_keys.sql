-- API keys issued through the admin API. Only the SHA-256 of a key is kept.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    digest         BLOB NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    client         TEXT NOT NULL,
    roles          TEXT,              -- JSON array; NULL = the client's roles
    display_prefix TEXT NOT NULL,
    created_at     INTEGER NOT NULL,  -- unix milliseconds
    expires_at     INTEGER,
    revoked_at     INTEGER,
    rolled_from    TEXT
);

-- Last use and use count of every key (API and YAML-declared), written in
-- batches, never on the request path.
CREATE TABLE key_usage (
    id           TEXT PRIMARY KEY,
    last_used_at INTEGER NOT NULL,
    uses         INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
