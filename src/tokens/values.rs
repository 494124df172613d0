//! Token values set at run time through the admin API ("under the token
//! value, enter your API key"): checked at the door, encrypted with the
//! master key, persisted, then published to the token store. They survive
//! restarts and config reloads; only tokens without a config `value:` can
//! hold one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audit::{Action, Actor, Fingerprint, Record};
use crate::clock::to_ms;
use crate::secret::{Secret, check_header_safe};
use crate::store::sealed::{MasterKey, OpenError, SealError};
use crate::store::{Store, StoreError, StoredTokenValue};
use crate::tokens::{PutRefused, Specs, TokenSet, TokenStore, TokenValue, admin_value};

/// What a run-time value write needs: where values are published, the key
/// that seals them, and the store that keeps them.
#[derive(Debug, Clone, Copy)]
pub struct Runtime<'a> {
    pub tokens: &'a TokenStore,
    pub master: &'a MasterKey,
    pub store: &'a dyn Store,
}

/// Longest value accepted (SPEC issue: over 8 KiB is refused).
pub const MAX_VALUE: usize = 8 * 1024;

/// Serializes writers so versions stay strictly increasing.
static WRITE: Mutex<()> = Mutex::new(());

/// Why a run-time value was refused or could not be kept or restored.
/// The refusals' texts are the admin API's messages (`error.rs` picks the
/// status and code); none holds the value.
#[derive(Debug, thiserror::Error)]
pub enum TokenValueError {
    #[error("no token named `{0}`")]
    UnknownToken(String),
    /// The token's value comes from the config (`from`: its source kind or
    /// token type), so the admin API cannot set it.
    #[error("token `{name}` takes its value from `{from}`, not from the admin API")]
    ConfigOwned { name: String, from: &'static str },
    #[error("the value is over {max} bytes", max = MAX_VALUE)]
    TooLong,
    /// Empty, or a byte a header cannot carry.
    #[error("the value is refused: {0}")]
    NotHeaderSafe(&'static str),
    /// Not publishable (a reload changed the token meanwhile, or the
    /// prefix makes it no header value).
    #[error("the value is refused: {}", .0.as_str())]
    Refused(PutRefused),
    #[error("cannot seal the value: {0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value that does not open with the master key (checked at
    /// start, so the row is damaged).
    #[error("token `{token}`: {source}")]
    Open { token: String, source: OpenError },
    #[error("token `{token}`: stored value is not UTF-8")]
    NotUtf8 { token: String },
    /// A stored value that the token, as now configured, cannot take.
    #[error("token `{token}`: {}", why.as_str())]
    Unrestorable { token: String, why: PutRefused },
}

/// A run-time value write: the value it replaced (if any) and the new
/// one, read under one lock, so their versions are consecutive (what the
/// audit log records).
#[derive(Debug, Clone)]
pub struct Swapped {
    pub before: Option<Arc<TokenValue>>,
    pub after: Arc<TokenValue>,
}

impl Swapped {
    /// The audit record of this swap of `name` by `actor`: versions and
    /// fingerprints before and after, never the value.
    pub fn record(&self, actor: &Actor, name: &str) -> Record {
        let (before, after) = (self.before.as_deref(), &self.after);
        Record::new(actor, Action::TokenValueSet, name)
            .at(after.updated_at)
            .versions(before.map(|v| v.version), Some(after.version))
            .fingerprints(
                before.map(|v| Fingerprint::of(&v.secret)),
                Some(Fingerprint::of(&after.secret)),
            )
    }
}

/// Sets `name` to `value`: 404 unknown token, 409 if its value comes from
/// the config, 400 for an empty, oversized or header-breaking value.
pub fn set(
    rt: Runtime<'_>,
    specs: &Specs,
    name: &str,
    value: &str,
) -> Result<Swapped, TokenValueError> {
    let spec = specs
        .get(name)
        .ok_or_else(|| TokenValueError::UnknownToken(name.to_string()))?;
    if !spec.takes_admin_value() {
        return Err(TokenValueError::ConfigOwned {
            name: name.to_string(),
            from: spec.source().map_or(spec.type_name(), |s| s.kind()),
        });
    }
    if value.len() > MAX_VALUE {
        return Err(TokenValueError::TooLong);
    }
    check_header_safe(value).map_err(TokenValueError::NotHeaderSafe)?;
    let _guard = crate::lock::lock(&WRITE);
    let before = rt.tokens.load().get(name).map(Arc::clone);
    let version = before.as_ref().map_or(1, |v| v.version + 1);
    let now = SystemTime::now();
    let (nonce, ciphertext) = rt.master.seal(name, value.as_bytes())?;
    rt.store.put_token_value(&StoredTokenValue {
        name: name.to_string(),
        nonce,
        ciphertext,
        version,
        updated_ms: to_ms(now),
    })?;
    let after = rt
        .tokens
        .put(name, Secret::new(value), version, now)
        .map_err(TokenValueError::Refused)?;
    Ok(Swapped { before, after })
}

/// Publishes the value stored for `name` (SPEC §8: another replica set
/// it, or the store gave this replica's own write a later version),
/// without writing it back. `load` reads the row under the value writer's
/// lock, so it is never older than a local write. `Ok(false)` when there
/// is nothing to do: no row, no such token here taking run-time values (a
/// catalog change that adds it restores the value with it), or the value
/// and version held already.
pub fn apply_stored(
    rt: Runtime<'_>,
    specs: &Specs,
    name: &str,
    load: impl FnOnce() -> Result<Option<StoredTokenValue>, StoreError>,
) -> Result<bool, TokenValueError> {
    if !specs.get(name).is_some_and(|s| s.takes_admin_value()) {
        return Ok(false);
    }
    let _guard = crate::lock::lock(&WRITE);
    let Some(stored) = load()? else {
        return Ok(false);
    };
    let text = open_stored(rt.master, &stored)?;
    let held = rt.tokens.load().get(name).map(Arc::clone);
    if held.is_some_and(|v| {
        v.origin == crate::tokens::Origin::Admin
            && v.version == stored.version
            && v.secret.ct_eq(&text)
    }) {
        return Ok(false);
    }
    let at = UNIX_EPOCH + Duration::from_millis(stored.updated_ms);
    rt.tokens
        .put(name, Secret::new(text), stored.version, at)
        .map_err(TokenValueError::Refused)?;
    Ok(true)
}

/// A stored value, opened with the master key.
fn open_stored(master: &MasterKey, stored: &StoredTokenValue) -> Result<String, TokenValueError> {
    let token = || stored.name.clone();
    let plain = master
        .open(&stored.name, &stored.nonce, &stored.ciphertext)
        .map_err(|source| TokenValueError::Open {
            token: token(),
            source,
        })?;
    String::from_utf8(plain).map_err(|_| TokenValueError::NotUtf8 { token: token() })
}

/// Stored values for tokens that take them at run time and have none in
/// `current` (at start, and when a reload adds such a token): the reload
/// publishes them with the snapshot that adds the token.
pub fn restore(
    master: &MasterKey,
    store: &dyn Store,
    specs: &Specs,
    current: &TokenSet,
) -> Result<HashMap<String, Arc<TokenValue>>, TokenValueError> {
    let wanted: Vec<_> = specs
        .values()
        .filter(|s| {
            s.takes_admin_value()
                && !current
                    .get(&s.name)
                    .is_some_and(|v| v.origin == crate::tokens::Origin::Admin)
        })
        .collect();
    let mut restored = HashMap::new();
    if wanted.is_empty() {
        return Ok(restored);
    }
    for stored in store.load_token_values()? {
        let Some(spec) = wanted.iter().find(|s| s.name == stored.name) else {
            continue;
        };
        let token = || stored.name.clone();
        let text = open_stored(master, &stored)?;
        let at = UNIX_EPOCH + Duration::from_millis(stored.updated_ms);
        let value = admin_value(spec, Secret::new(text), stored.version, at).map_err(|why| {
            TokenValueError::Unrestorable {
                token: token(),
                why,
            }
        })?;
        restored.insert(stored.name.clone(), value);
    }
    Ok(restored)
}
