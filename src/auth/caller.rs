//! Who is calling: the keygate API key a request presents, checked against
//! the key index. Shared by the proxy and the admin API, which must agree
//! on how a key is presented and what a bad one answers.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

use super::declared::ConfigKeys;
use super::{KeyIndex, KeyRecord, KeyRejection, KeySource};
use crate::config::Config;

pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The admin console's session cookie. Cookies are scoped by host, not
/// port, so a browser signed in to the console sends it to the proxy
/// listener too; the proxy takes it out before forwarding (see
/// `proxy::service`), as it takes out the caller's key.
pub const SESSION_COOKIE: &str = "keygate_session";

/// Why a caller is not authenticated; `crate::error` maps each to its
/// SPEC §3 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No key presented (401 `missing_api_key`).
    Missing,
    /// Unknown, malformed, revoked, or its client is gone (401
    /// `invalid_api_key`): one answer, so nothing is learnt by probing.
    Invalid,
    /// Past its expiry (401 `api_key_expired`).
    Expired,
    /// Presented ambiguously (400): two headers, or two different keys.
    Ambiguous(&'static str),
    /// An API-made key this replica can no longer vouch for: cut off from
    /// the store past its lease (503 `store_unavailable`, never 401: the
    /// key may well be valid).
    Unvouched,
}

/// Where keys are looked up: the API key index and the keys the
/// published config declares, with its client list and key prefix.
#[derive(Debug, Clone, Copy)]
pub struct Keyring<'a> {
    pub index: &'a KeyIndex,
    pub declared: &'a ConfigKeys,
    pub config: &'a Config,
}

/// The key the caller presented, from `Authorization: Bearer` or
/// `X-API-Key`. Both at once with different values is ambiguous and
/// refused (RFC 6750 §3.1: one method per request).
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, Refused> {
    let single = |name: &HeaderName| -> Result<Option<&str>, Refused> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(Refused::Ambiguous(if *name == AUTHORIZATION {
                "more than one authorization header"
            } else {
                "more than one x-api-key header"
            }));
        }
        first
            .map(|v| v.to_str().map_err(|_| Refused::Invalid))
            .transpose()
    };
    let bearer = single(&AUTHORIZATION)?.and_then(|v| {
        let (scheme, cred) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| cred.trim())
    });
    let x_api_key = single(&X_API_KEY)?.map(str::trim);
    match (bearer, x_api_key) {
        (Some(a), Some(b)) if a != b => Err(Refused::Ambiguous(
            "send the API key in Authorization or X-API-Key, not two different keys",
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// Whether the request presents a key at all (either header, any value):
/// a key header always wins over a console session cookie.
pub fn presents_key(headers: &HeaderMap) -> bool {
    headers.contains_key(AUTHORIZATION) || headers.contains_key(X_API_KEY)
}

/// A well-formed, known, live key of a client that still exists.
pub fn authenticate(keys: Keyring<'_>, headers: &HeaderMap) -> Result<Arc<KeyRecord>, Refused> {
    let key = presented_key(headers)?.ok_or(Refused::Missing)?;
    authenticate_key(keys, key)
}

/// [`authenticate`] for a key given some other way (console sign-in).
pub fn authenticate_key(keys: Keyring<'_>, key: &str) -> Result<Arc<KeyRecord>, Refused> {
    if key.is_empty() {
        return Err(Refused::Missing);
    }
    let now = SystemTime::now();
    let record = keys
        .index
        .verify(keys.declared, key, &keys.config.keys.prefix, now)
        .map_err(|r| refused(keys, r))?;
    admit(keys, record, now)
}

/// The key with SHA-256 `digest`, checked again as [`authenticate`] checks
/// a presented one: a console session holds the digest of the key it was
/// opened with and asks on every use, so revoking the key ends it.
pub fn recheck(keys: Keyring<'_>, digest: &[u8; 32]) -> Result<Arc<KeyRecord>, Refused> {
    let now = SystemTime::now();
    let record = keys
        .index
        .verify_digest(keys.declared, digest, now)
        .map_err(|r| refused(keys, r))?;
    admit(keys, record, now)
}

/// What a failed lookup answers.
fn refused(keys: Keyring<'_>, r: KeyRejection) -> Refused {
    match r {
        KeyRejection::Expired => Refused::Expired,
        // Possibly made on another replica while this one lost the
        // store: not known to be invalid (SPEC §8).
        KeyRejection::Unknown if !keys.index.in_sync() => Refused::Unvouched,
        KeyRejection::Malformed(_) | KeyRejection::Unknown | KeyRejection::Revoked => {
            Refused::Invalid
        }
    }
}

/// The checks after lookup: the key's client still exists, and an API
/// key is still vouched for.
fn admit(
    keys: Keyring<'_>,
    record: Arc<KeyRecord>,
    now: SystemTime,
) -> Result<Arc<KeyRecord>, Refused> {
    if !keys.config.clients.contains_key(&record.client) {
        return Err(Refused::Invalid);
    }
    if record.source == KeySource::Api && !keys.index.vouches(now) {
        return Err(Refused::Unvouched);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn key_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), Ok(None));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer kg_abc"));
        assert_eq!(presented_key(&h), Ok(Some("kg_abc")));
        h.insert(X_API_KEY, HeaderValue::from_static("kg_abc"));
        assert_eq!(presented_key(&h), Ok(Some("kg_abc")));
        h.insert(X_API_KEY, HeaderValue::from_static("kg_other"));
        assert!(matches!(presented_key(&h), Err(Refused::Ambiguous(_))));
        h.remove(AUTHORIZATION);
        assert_eq!(presented_key(&h), Ok(Some("kg_other")));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(presented_key(&h), Ok(Some("kg_other")));
    }
}
