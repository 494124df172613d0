//! One call to a token endpoint for an `http_request` token: build the
//! request from the config (headers, form or JSON body, values resolved
//! from their sources or other tokens), send it through the shared
//! `upstream` client, and pull the token and its lifetime out of the JSON
//! answer by JSON pointer.
//!
//! The answer holds secrets: it is never logged, and errors name only the
//! status, the pointer or the kind of failure.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Version};
use http_body_util::{BodyExt, Limited};

use super::{TokenStore, source};
use crate::body::Body;
use crate::config::{Expiry, FetchBody, HttpRequestSpec, JsonTemplate, Param};
use crate::secret::{Secret, check_header_safe};
use crate::upstream::HttpClient;

/// Largest token endpoint answer read.
const MAX_ANSWER: usize = 1 << 20;

/// Longest lifetime taken from an answer or the config; longer ones are
/// clamped. The refresher adds a lifetime to clock readings, so an
/// endpoint answering `expires_in: 1e19` must not overflow them (a panic
/// in the refresh task). A century is "never" for any token.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Non-negative, finite seconds as a lifetime, clamped to [`MAX_LIFETIME`]
/// (`Duration::from_secs_f64` panics beyond `u64::MAX` seconds).
fn clamped_secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).map_or(MAX_LIFETIME, |d| d.min(MAX_LIFETIME))
}

/// A fetched value and how long it lives (from now).
#[derive(Debug)]
pub struct Fetched {
    pub secret: Secret,
    pub lifetime: Option<Duration>,
}

fn resolve(p: &Param, store: &TokenStore) -> Result<String, String> {
    match p {
        Param::Plain(s) => Ok(s.clone()),
        Param::Source(src) => source::read(src)
            .map(|s| s.expose().to_string())
            .map_err(|source::Unavailable(why)| why),
        Param::Token(name) => store
            .load()
            .get(name)
            .filter(|v| v.usable(SystemTime::now()))
            .map(|v| v.secret.expose().to_string())
            .ok_or_else(|| format!("token `{name}` (used in the request) has no value")),
    }
}

fn json_body(t: &JsonTemplate, store: &TokenStore) -> Result<serde_json::Value, String> {
    Ok(match t {
        JsonTemplate::Value(v) => v.clone(),
        JsonTemplate::Param(p) => serde_json::Value::String(resolve(p, store)?),
        JsonTemplate::Object(fields) => {
            let mut m = serde_json::Map::new();
            for (k, v) in fields {
                m.insert(k.clone(), json_body(v, store)?);
            }
            serde_json::Value::Object(m)
        }
        JsonTemplate::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| json_body(i, store))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5): unreserved bytes
/// kept, space as `+`, everything else percent-encoded.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

fn number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The lifetime from the answer per `expiry`; `Ok(None)` means unknown.
pub fn lifetime(
    expiry: &Expiry,
    answer: &serde_json::Value,
    now: SystemTime,
) -> Result<Option<Duration>, String> {
    match expiry {
        Expiry::Never => Ok(None),
        Expiry::Ttl(d) => Ok(Some((*d).min(MAX_LIFETIME))),
        Expiry::In(p) => {
            let v = answer
                .pointer(p)
                .ok_or_else(|| format!("the answer has no lifetime at {p}"))?;
            let secs = number(v)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("the lifetime at {p} is not a number of seconds"))?;
            Ok(Some(clamped_secs(secs)))
        }
        Expiry::At(p) => {
            let v = answer
                .pointer(p)
                .ok_or_else(|| format!("the answer has no expiry at {p}"))?;
            let at = match number(v) {
                // Past the clock's range is past any lifetime kept.
                Some(secs) if secs.is_finite() && secs >= 0.0 => {
                    let at = Duration::try_from_secs_f64(secs)
                        .ok()
                        .and_then(|d| UNIX_EPOCH.checked_add(d));
                    match at {
                        Some(at) => at,
                        None => return Ok(Some(MAX_LIFETIME)),
                    }
                }
                _ => v
                    .as_str()
                    .and_then(|s| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok())
                    .ok_or_else(|| {
                        format!("the expiry at {p} is neither unix seconds nor an RFC 3339 time")
                    })?,
            };
            Ok(Some(
                at.duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_LIFETIME),
            ))
        }
    }
}

/// Calls the token endpoint once.
pub async fn fetch(
    spec: &HttpRequestSpec,
    client: &HttpClient,
    store: &Arc<TokenStore>,
) -> Result<Fetched, String> {
    let mut builder = Request::builder()
        .method(spec.method.clone())
        .uri(spec.url.clone())
        .version(Version::HTTP_11)
        .header(http::header::ACCEPT, "application/json");
    for (name, p) in &spec.headers {
        let v = resolve(p, store)?;
        let mut hv = HeaderValue::from_str(&v)
            .map_err(|_| format!("request header {name} has an invalid value"))?;
        hv.set_sensitive(true);
        builder = builder.header(name, hv);
    }
    let body = match &spec.body {
        FetchBody::None => Body::empty(),
        FetchBody::Form(pairs) => {
            let resolved = pairs
                .iter()
                .map(|(k, p)| resolve(p, store).map(|v| (k.clone(), v)))
                .collect::<Result<Vec<_>, _>>()?;
            builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::full(form_encode(&resolved))
        }
        FetchBody::Json(t) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Body::full(json_body(t, store)?.to_string())
        }
    };
    let req = builder
        .body(body)
        .map_err(|_| "the token request could not be built".to_string())?;
    let resp = tokio::time::timeout(spec.timeout, client.request(req))
        .await
        .map_err(|_| "the token endpoint did not answer in time".to_string())?
        .map_err(|e| {
            format!(
                "the token endpoint could not be reached ({})",
                if e.is_connect() {
                    "connect failed"
                } else {
                    "request failed"
                }
            )
        })?;
    let status = resp.status();
    let bytes: Bytes = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| "the token endpoint's answer could not be read".to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("the token endpoint answered {}", status.as_u16()));
    }
    read_answer(&spec.token_pointer, &spec.expiry, &bytes, SystemTime::now())
}

/// The token (at `token_pointer`) and its lifetime (per `expiry`) from a
/// successful answer's body. Pure, the clock passed in, so the fuzz target
/// runs exactly what [`fetch`] runs on untrusted endpoint output.
pub fn read_answer(
    token_pointer: &str,
    expiry: &Expiry,
    body: &[u8],
    now: SystemTime,
) -> Result<Fetched, String> {
    let answer: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| "the token endpoint's answer is not JSON".to_string())?;
    let token = answer
        .pointer(token_pointer)
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("the answer has no token at {token_pointer}"))?;
    check_header_safe(&token).map_err(|why| format!("the fetched token is refused: {why}"))?;
    let lifetime = lifetime(expiry, &answer, now)?;
    Ok(Fetched {
        secret: Secret::new(token),
        lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        let s = form_encode(&[
            ("grant_type".into(), "client_credentials".into()),
            ("secret".into(), "a b&c=d/é".into()),
        ]);
        assert_eq!(
            s,
            "grant_type=client_credentials&secret=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn lifetimes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let a = serde_json::json!({"expires_in": 3600, "exp_s": "60", "at": 1_100, "iso": "1970-01-01T00:20:00Z"});
        assert_eq!(
            lifetime(&Expiry::In("/expires_in".into()), &a, now),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            lifetime(&Expiry::In("/exp_s".into()), &a, now),
            Ok(Some(Duration::from_secs(60)))
        );
        assert_eq!(
            lifetime(&Expiry::At("/at".into()), &a, now),
            Ok(Some(Duration::from_secs(100)))
        );
        assert_eq!(
            lifetime(&Expiry::At("/iso".into()), &a, now),
            Ok(Some(Duration::from_secs(200)))
        );
        assert!(lifetime(&Expiry::In("/missing".into()), &a, now).is_err());
        assert_eq!(lifetime(&Expiry::Never, &a, now), Ok(None));
    }

    /// Found by the `token_response` fuzz target: an expiry past
    /// `Duration`'s range panicked in `from_secs_f64`, and one inside it but
    /// past the clock's range panicked in the refresher's `Instant` sums.
    #[test]
    fn huge_lifetimes_are_clamped_not_panics() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = br#"{"access_token":"abc","expires_at":"203018446744073709551616"}"#;
        let got = read_answer(
            "/access_token",
            &Expiry::At("/expires_at".into()),
            body,
            now,
        );
        assert_eq!(got.map(|f| f.lifetime), Ok(Some(MAX_LIFETIME)));
        for v in ["1e300", "18446744073709551615", "1e19"] {
            let a: serde_json::Value =
                serde_json::from_str(&format!(r#"{{"t":{v}}}"#)).expect("json");
            for e in [Expiry::In("/t".into()), Expiry::At("/t".into())] {
                assert_eq!(lifetime(&e, &a, now), Ok(Some(MAX_LIFETIME)), "{v} {e:?}");
            }
        }
        let ttl = Expiry::Ttl(Duration::MAX);
        let empty = serde_json::json!({});
        assert_eq!(lifetime(&ttl, &empty, now), Ok(Some(MAX_LIFETIME)));
        // A far but representable expiry keeps its meaning up to the cap.
        let year_2100 = serde_json::json!({ "t": 4_102_444_800u64 });
        assert_eq!(
            lifetime(&Expiry::At("/t".into()), &year_2100, now),
            Ok(Some(Duration::from_secs(4_102_444_800 - 1_700_000_000)))
        );
    }
}
