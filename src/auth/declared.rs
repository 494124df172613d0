//! The keys declared in YAML (`clients.<name>.keys`, by SHA-256). They are
//! part of the published snapshot, not of the key index, so the reload
//! that removes one from the file is the swap that refuses it: the very
//! next request answers 401. A key that stays keeps its record (and its
//! last-used time) across reloads.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::index::{KeyRecord, KeySource, to_ms};
use crate::config::Config;

/// Declared keys by digest.
pub type ConfigKeys = HashMap<[u8; 32], Arc<KeyRecord>>;

/// The records for the keys `config` declares, reusing `prev`'s record of
/// a key whose client, name and expiry are unchanged.
pub fn declared_keys(config: &Config, prev: &ConfigKeys) -> ConfigKeys {
    let mut out = ConfigKeys::new();
    for (client, c) in &config.clients {
        for k in &c.keys {
            let expires = k.expires.map(to_ms);
            let same = prev.get(&k.sha256).filter(|r| {
                r.client == *client && r.name == k.name && r.expires_at().map(to_ms) == expires
            });
            let record = match same {
                Some(r) => Arc::clone(r),
                None => Arc::new(KeyRecord {
                    id: config_key_id(client, &k.name),
                    name: k.name.clone(),
                    client: client.clone(),
                    roles: None,
                    display_prefix: String::new(),
                    created_at: SystemTime::now(),
                    expires_ms: AtomicU64::new(expires.unwrap_or(0)),
                    revoked_at: Mutex::new(None),
                    source: KeySource::Config,
                    digest: k.sha256,
                    rolled_from: None,
                    last_used_ms: AtomicU64::new(0),
                    uses: AtomicU64::new(0),
                    persisted_uses: AtomicU64::new(0),
                }),
            };
            out.insert(k.sha256, record);
        }
    }
    out
}

/// A stable public id for a key declared in YAML, derived from its client
/// and name (never from the key or its hash).
pub fn config_key_id(client: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("keygate-config-key\0{client}\0{name}").as_bytes());
    format!("key_cfg_{}", hex::encode(&d[..8]))
}
