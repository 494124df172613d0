//! Token values set at run time through the admin API ("under the token
//! value, enter your API key"): checked at the door, encrypted with the
//! master key, persisted, then published to the token store. They survive
//! restarts and config reloads; only tokens without a config `value:` can
//! hold one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::to_ms;
use crate::error::GatewayError;
use crate::secret::{Secret, check_header_safe};
use crate::store::sealed::MasterKey;
use crate::store::{Store, StoredTokenValue};
use crate::tokens::{Specs, TokenSet, TokenStore, TokenValue, admin_value};

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

fn internal(e: impl std::fmt::Display) -> GatewayError {
    tracing::error!(error = %e, "token value store failure");
    GatewayError::Internal
}

/// Sets `name` to `value`: 404 unknown token, 409 if its value comes from
/// the config, 400 for an empty, oversized or header-breaking value.
pub fn set(
    rt: Runtime<'_>,
    specs: &Specs,
    name: &str,
    value: &str,
) -> Result<Arc<TokenValue>, GatewayError> {
    let spec = specs
        .get(name)
        .ok_or_else(|| GatewayError::NotFound(format!("no token named `{name}`")))?;
    if !spec.takes_admin_value() {
        let from = spec.source().map_or(spec.type_name(), |s| s.kind());
        return Err(GatewayError::Conflict(format!(
            "token `{name}` takes its value from `{from}`, not from the admin API"
        )));
    }
    if value.len() > MAX_VALUE {
        return Err(GatewayError::BadRequest(format!(
            "the value is over {MAX_VALUE} bytes"
        )));
    }
    check_header_safe(value)
        .map_err(|why| GatewayError::BadRequest(format!("the value is refused: {why}")))?;
    let _guard = crate::lock::lock(&WRITE);
    let version = rt.tokens.load().get(name).map_or(1, |v| v.version + 1);
    let now = SystemTime::now();
    let (nonce, ciphertext) = rt.master.seal(name, value.as_bytes()).map_err(internal)?;
    rt.store
        .put_token_value(&StoredTokenValue {
            name: name.to_string(),
            nonce,
            ciphertext,
            version,
            updated_ms: to_ms(now),
        })
        .map_err(internal)?;
    rt.tokens
        .put(name, Secret::new(value), version, now)
        .map_err(|why| GatewayError::BadRequest(format!("the value is refused: {}", why.as_str())))
}

/// Stored values for tokens that take them at run time and have none in
/// `current` (at start, and when a reload adds such a token): the reload
/// publishes them with the snapshot that adds the token.
pub fn restore(
    master: &MasterKey,
    store: &dyn Store,
    specs: &Specs,
    current: &TokenSet,
) -> Result<HashMap<String, Arc<TokenValue>>, String> {
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
    for stored in store.load_token_values().map_err(|e| e.to_string())? {
        let Some(spec) = wanted.iter().find(|s| s.name == stored.name) else {
            continue;
        };
        let plain = master
            .open(&stored.name, &stored.nonce, &stored.ciphertext)
            .map_err(|e| format!("token `{}`: {e}", stored.name))?;
        let text = String::from_utf8(plain)
            .map_err(|_| format!("token `{}`: stored value is not UTF-8", stored.name))?;
        let at = UNIX_EPOCH + Duration::from_millis(stored.updated_ms);
        let value = admin_value(spec, Secret::new(text), stored.version, at)
            .map_err(|why| format!("token `{}`: {}", stored.name, why.as_str()))?;
        restored.insert(stored.name.clone(), value);
    }
    Ok(restored)
}
