-- Token values set at run time through the admin API, encrypted with the
-- master key (AEAD; the token name is the associated data).
CREATE TABLE token_values (
    name       TEXT PRIMARY KEY,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
