-- Catalog objects made through the admin API (tokens, connectors, roles,
-- clients). `body` is the object's definition as JSON in the config file's
-- shape; it never holds a secret value (a run-time token value is sealed
-- in token_values).
CREATE TABLE catalog_objects (
    section    TEXT NOT NULL,      -- tokens | connectors | roles | clients
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    INTEGER NOT NULL,   -- 1 at creation, +1 per change
    created_at INTEGER NOT NULL,   -- unix milliseconds
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (section, name)
);

-- The last version of each deleted object: a name created again continues
-- from it, so an ETag read before the delete never matches the new object.
CREATE TABLE catalog_retired (
    section TEXT NOT NULL,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (section, name)
);
