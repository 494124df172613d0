//! Who is calling: the keygate API key a request presents, checked against
//! the key index. Shared by the proxy and the admin API, which must agree
//! on how a key is presented and what a bad one answers.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

use crate::auth::{KeyRecord, KeyRejection};
use crate::error::GatewayError;
use crate::state::{Shared, Snapshot};

pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The key the caller presented, from `Authorization: Bearer` or
/// `X-API-Key`. Both at once with different values is ambiguous and
/// refused (RFC 6750 §3.1: one method per request).
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let single = |name: &HeaderName| -> Result<Option<&str>, GatewayError> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(GatewayError::BadRequest(format!(
                "more than one {name} header"
            )));
        }
        first
            .map(|v| v.to_str().map_err(|_| GatewayError::InvalidApiKey))
            .transpose()
    };
    let bearer = single(&AUTHORIZATION)?.and_then(|v| {
        let (scheme, cred) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| cred.trim())
    });
    let x_api_key = single(&X_API_KEY)?.map(str::trim);
    match (bearer, x_api_key) {
        (Some(a), Some(b)) if a != b => Err(GatewayError::BadRequest(
            "send the API key in Authorization or X-API-Key, not two different keys".into(),
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// A well-formed, known, live key of a client that still exists.
pub fn authenticate(
    shared: &Shared,
    snap: &Snapshot,
    headers: &HeaderMap,
) -> Result<Arc<KeyRecord>, GatewayError> {
    let key = presented_key(headers)?.ok_or(GatewayError::MissingApiKey)?;
    if key.is_empty() {
        return Err(GatewayError::MissingApiKey);
    }
    let record = shared
        .keys
        .verify(key, &snap.config.keys.prefix, SystemTime::now())
        .map_err(|r| match r {
            KeyRejection::Expired => GatewayError::ApiKeyExpired,
            KeyRejection::Malformed(_) | KeyRejection::Unknown | KeyRejection::Revoked => {
                GatewayError::InvalidApiKey
            }
        })?;
    if !snap.config.clients.contains_key(&record.client) {
        return Err(GatewayError::InvalidApiKey);
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
        assert!(matches!(
            presented_key(&h),
            Err(GatewayError::BadRequest(_))
        ));
        h.remove(AUTHORIZATION);
        assert_eq!(presented_key(&h), Ok(Some("kg_other")));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(presented_key(&h), Ok(Some("kg_other")));
    }
}
