//! The in-memory key index: SHA-256 digest → key record. The hot path does
//! one hash of the presented key and one map lookup; the database is never
//! touched per request. `last_used_at` and the use count are atomics
//! updated in place and persisted in batches by the store.
//!
//! Lookup is by digest, so timing reveals nothing about stored keys beyond
//! what SHA-256 preimage resistance already hides; the matched entry's
//! digest is still confirmed with a constant-time compare.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use subtle::ConstantTimeEq;

use super::declared::ConfigKeys;
use super::key::{self, FormatError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    Api,
    Config,
}

#[derive(Debug)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub client: String,
    /// `None`: the client's roles, whatever they are at the time of use.
    pub roles: Option<Vec<String>>,
    pub display_prefix: String,
    pub created_at: SystemTime,
    /// Milliseconds since the epoch; 0 = never. Atomic because a roll
    /// shortens the old key's life while it is in use.
    pub expires_ms: AtomicU64,
    pub revoked_at: Mutex<Option<SystemTime>>,
    pub source: KeySource,
    pub digest: [u8; 32],
    /// The key this one was rolled from (API keys only). Its predecessor
    /// lives on only for the roll's grace, so it never counts as a
    /// remaining admin key (see `keys::admin_remains`).
    pub rolled_from: Option<String>,
    /// Milliseconds since the epoch; 0 = never used.
    pub last_used_ms: AtomicU64,
    pub uses: AtomicU64,
    /// Bumped on every use; the store persists records whose `uses` moved.
    pub persisted_uses: AtomicU64,
}

impl KeyRecord {
    pub fn last_used_at(&self) -> Option<SystemTime> {
        match self.last_used_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    pub fn revoked_at(&self) -> Option<SystemTime> {
        // Never `unwrap_or(None)`: a poisoned lock must not un-revoke a key.
        *crate::lock::lock(&self.revoked_at)
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        match self.expires_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    pub fn set_expires_at(&self, at: Option<SystemTime>) {
        self.expires_ms
            .store(at.map_or(0, to_ms), Ordering::Relaxed);
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|e| e <= now)
    }

    fn touch(&self, now: SystemTime) {
        self.last_used_ms.store(to_ms(now), Ordering::Relaxed);
        self.uses.fetch_add(1, Ordering::Relaxed);
    }
}

pub use crate::clock::to_ms;

/// Why a presented key was refused. Maps onto the 401 codes of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    Malformed(FormatError),
    Unknown,
    Revoked,
    Expired,
}

#[derive(Debug)]
pub struct KeyIndex {
    by_digest: DashMap<[u8; 32], Arc<KeyRecord>>,
    /// Until when (ms since the epoch) API-made keys here can be trusted
    /// to be current: a replica's last contact with the store plus its
    /// lease (SPEC §8); past it, a revocation made elsewhere may be
    /// missing. `u64::MAX` with one store and one process. Compared with
    /// the request's own clock reading: one relaxed load per request.
    vouched_until_ms: AtomicU64,
    /// False while the store is unreachable: a key unknown here may have
    /// been made on another replica meanwhile, so it is not called
    /// invalid (read on the rejection path only).
    in_sync: AtomicBool,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            by_digest: DashMap::new(),
            vouched_until_ms: AtomicU64::new(u64::MAX),
            in_sync: AtomicBool::new(true),
        }
    }
}

impl KeyIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether API-made keys in this index can be trusted at `now`.
    pub fn vouches(&self, now: SystemTime) -> bool {
        to_ms(now) < self.vouched_until_ms.load(Ordering::Relaxed)
    }

    /// Whether the index is following the store right now.
    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::Relaxed)
    }

    /// Marks the store (un)reachable; returns the previous state.
    pub fn set_in_sync(&self, in_sync: bool) -> bool {
        self.in_sync.swap(in_sync, Ordering::Relaxed)
    }

    /// Extends (or, with a past time, ends) the trust in API-made keys.
    pub fn vouch_until(&self, until: SystemTime) {
        self.vouched_until_ms.store(to_ms(until), Ordering::Relaxed);
    }

    pub fn insert(&self, record: Arc<KeyRecord>) {
        self.by_digest.insert(record.digest, record);
    }

    pub fn remove(&self, digest: &[u8; 32]) {
        self.by_digest.remove(digest);
    }

    /// Every record of the index (API keys).
    pub fn all(&self) -> Vec<Arc<KeyRecord>> {
        self.by_digest
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect()
    }

    /// Every key: the index's and those `declared` in the published
    /// snapshot. The admin API lists from here.
    pub fn all_with(&self, declared: &ConfigKeys) -> Vec<Arc<KeyRecord>> {
        let mut all = self.all();
        all.extend(declared.values().cloned());
        all
    }

    pub fn find_id(&self, declared: &ConfigKeys, id: &str) -> Option<Arc<KeyRecord>> {
        declared.values().find(|r| r.id == id).cloned().or_else(|| {
            self.by_digest
                .iter()
                .find(|e| e.id == id)
                .map(|e| Arc::clone(e.value()))
        })
    }

    /// Keeps only the records `keep` says yes to (used to re-sync the keys
    /// declared in YAML after a reload).
    pub fn retain(&self, keep: impl Fn(&KeyRecord) -> bool) {
        self.by_digest.retain(|_, r| keep(r));
    }

    /// Format check, then lookup (the keys `declared` in the published
    /// snapshot, then the index), then revocation and expiry. Touches the
    /// record's last-used time on success.
    pub fn verify(
        &self,
        declared: &ConfigKeys,
        presented: &str,
        prefix: &str,
        now: SystemTime,
    ) -> Result<Arc<KeyRecord>, KeyRejection> {
        key::check_format(presented, prefix).map_err(KeyRejection::Malformed)?;
        self.verify_digest(declared, &key::digest(presented), now)
    }

    /// [`KeyIndex::verify`] from the key's digest: lookup, revocation and
    /// expiry, touching the record on success.
    pub fn verify_digest(
        &self,
        declared: &ConfigKeys,
        digest: &[u8; 32],
        now: SystemTime,
    ) -> Result<Arc<KeyRecord>, KeyRejection> {
        let digest = *digest;
        // Clone the Arc out and drop the shard guard before anything else.
        let record = match declared.get(&digest) {
            Some(r) => Arc::clone(r),
            None => self
                .by_digest
                .get(&digest)
                .map(|e| Arc::clone(e.value()))
                .ok_or(KeyRejection::Unknown)?,
        };
        if !bool::from(record.digest.ct_eq(&digest)) {
            return Err(KeyRejection::Unknown);
        }
        if record.revoked_at().is_some() {
            return Err(KeyRejection::Revoked);
        }
        if record.is_expired(now) {
            return Err(KeyRejection::Expired);
        }
        record.touch(now);
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn record(key: &str, expires_at: Option<SystemTime>) -> Arc<KeyRecord> {
        Arc::new(KeyRecord {
            id: "k1".into(),
            name: "n".into(),
            client: "c".into(),
            roles: None,
            display_prefix: key::display_prefix(key),
            created_at: SystemTime::now(),
            expires_ms: AtomicU64::new(expires_at.map_or(0, to_ms)),
            revoked_at: Mutex::new(None),
            source: KeySource::Api,
            digest: key::digest(key),
            rolled_from: None,
            last_used_ms: AtomicU64::new(0),
            uses: AtomicU64::new(0),
            persisted_uses: AtomicU64::new(0),
        })
    }

    #[test]
    fn verify_paths() {
        let idx = KeyIndex::new();
        let k = key::generate("kg_").expect("rng");
        let now = SystemTime::now();
        assert_eq!(
            idx.verify(&ConfigKeys::new(), k.expose(), "kg_", now).err(),
            Some(KeyRejection::Unknown)
        );
        let rec = record(k.expose(), Some(now + Duration::from_secs(60)));
        idx.insert(Arc::clone(&rec));
        let got = idx
            .verify(&ConfigKeys::new(), k.expose(), "kg_", now)
            .expect("valid");
        assert_eq!(got.uses.load(Ordering::Relaxed), 1);
        assert!(got.last_used_at().is_some());
        let later = now + Duration::from_secs(61);
        assert_eq!(
            idx.verify(&ConfigKeys::new(), k.expose(), "kg_", later)
                .err(),
            Some(KeyRejection::Expired)
        );
        *rec.revoked_at.lock().expect("lock") = Some(now);
        assert_eq!(
            idx.verify(&ConfigKeys::new(), k.expose(), "kg_", now).err(),
            Some(KeyRejection::Revoked)
        );
        assert!(matches!(
            idx.verify(&ConfigKeys::new(), "kg_short", "kg_", now),
            Err(KeyRejection::Malformed(_))
        ));
    }
}
