//! One call to a token endpoint for an `http_request` token: build the
//! request from the config (headers, form or JSON body, values resolved
//! from their sources or other tokens), send it through the shared
//! `upstream` client, and pull the token and its lifetime out of the JSON
//! answer by JSON pointer.
//!
//! The answer holds secrets: it is never logged, and errors name only the
//! status, the pointer or the kind of failure.

use std::time::{Duration, SystemTime, TryFromFloatSecsError, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, StatusCode, Version};

use super::{TokenStore, source};
use crate::body::Body;
use crate::config::{Expiry, FetchBody, HttpRequestSpec, JsonTemplate, Param};
use crate::secret::{Secret, check_header_safe};
use crate::upstream::HttpClient;

/// Largest token endpoint answer read.
const MAX_ANSWER: usize = 1 << 20;

/// Why a fetch failed. Clone, so the one outcome reaches every waiter and
/// stays in the refresher's state for the admin API. Names only the
/// status, the pointer or the kind of failure: never the answer's text,
/// which holds secrets, nor an upstream error's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// A value the request is built from (`env:`, `file:`) cannot be read.
    #[error(transparent)]
    Source(#[from] source::Unavailable),
    /// Another token the request uses has no usable value.
    #[error("token `{token}` (used in the request) has no value")]
    TokenUnavailable { token: String },
    #[error("request header {name} has an invalid value")]
    InvalidHeader { name: HeaderName },
    #[error("the token request could not be built")]
    Request,
    /// `connect`: no connection was made (refused, DNS, TLS), as opposed
    /// to one that broke mid-request.
    #[error(
        "the token endpoint could not be reached ({})",
        if *connect { "connect failed" } else { "request failed" }
    )]
    Unreachable { connect: bool },
    #[error("the token endpoint's answer could not be read")]
    Unreadable,
    #[error("the token endpoint did not answer in time")]
    Timeout,
    #[error("the token endpoint answered {}", .0.as_u16())]
    Status(StatusCode),
    #[error("the token endpoint's answer is not JSON")]
    NotJson,
    #[error("the answer has no token at {pointer}")]
    NoToken { pointer: String },
    /// The token cannot be sent as a header value.
    #[error("the fetched token is refused: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Lifetime(#[from] LifetimeError),
}

/// Where a lifetime was read, for [`LifetimeError`]'s text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifetimeField {
    /// `expiry: { ttl }` in the config.
    Ttl,
    /// `expiry: { in: <pointer> }`: seconds from now.
    In(String),
    /// `expiry: { at: <pointer> }`: a unix time or RFC 3339 time.
    At(String),
}

impl std::fmt::Display for LifetimeField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LifetimeField::Ttl => f.write_str("the configured ttl"),
            LifetimeField::In(p) => write!(f, "the lifetime at {p}"),
            LifetimeField::At(p) => write!(f, "the expiry at {p}"),
        }
    }
}

/// Why an answer's lifetime is refused (a failed fetch, retried with
/// backoff). An absurdly long one is clamped instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    #[error("the answer has no lifetime at {0}")]
    NoLifetime(String),
    #[error("the answer has no expiry at {0}")]
    NoExpiry(String),
    #[error("{0} is not a number of seconds")]
    NotSeconds(LifetimeField),
    #[error("the expiry at {0} is neither unix seconds nor an RFC 3339 time")]
    NotATime(String),
    /// Under [`MIN_LIFETIME`]: expired on arrival.
    #[error(
        "{0} gives a lifetime under {min} s (the token is already expired)",
        min = MIN_LIFETIME.as_secs()
    )]
    TooShort(LifetimeField),
    #[error("{field} is not a usable number of seconds: {source}")]
    Unusable {
        field: LifetimeField,
        source: TryFromFloatSecsError,
    },
}

/// A fetched value and how long it lives (from now).
#[derive(Debug)]
pub struct Fetched {
    pub secret: Secret,
    pub lifetime: Option<Duration>,
    /// The endpoint's lifetime was absurd and cut to [`MAX_LIFETIME`].
    pub clamped: bool,
}

fn resolve(p: &Param, store: &TokenStore) -> Result<String, FetchError> {
    match p {
        Param::Plain(s) => Ok(s.clone()),
        Param::Source(src) => Ok(source::read(src)?.expose().to_string()),
        Param::Token(name) => store
            .load()
            .get(name)
            .filter(|v| v.usable(SystemTime::now()))
            .map(|v| v.secret.expose().to_string())
            .ok_or_else(|| FetchError::TokenUnavailable {
                token: name.clone(),
            }),
    }
}

fn json_body(t: &JsonTemplate, store: &TokenStore) -> Result<serde_json::Value, FetchError> {
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

/// Longest lifetime believed. An answer of `1e19` seconds or a year 9999
/// `expires_at` is a broken or hostile endpoint; the value is used but
/// refreshed within a year, and no clock arithmetic can overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Shortest lifetime accepted. Anything shorter (`expires_in: 0`, an
/// `expires_at` already past, a negative number) would be "expired on
/// arrival": the schedule would fetch again at once, forever. It is a
/// failed refresh instead, retried with backoff.
pub const MIN_LIFETIME: Duration = Duration::from_secs(1);

/// A lifetime read from an answer: `Ok(None)` means unknown (never
/// expires); `clamped` says it was cut to [`MAX_LIFETIME`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub duration: Option<Duration>,
    pub clamped: bool,
}

/// Seconds (possibly fractional, negative or absurd) → a bounded lifetime.
fn bounded(secs: f64, field: LifetimeField) -> Result<Lifetime, LifetimeError> {
    if !secs.is_finite() {
        return Err(LifetimeError::NotSeconds(field));
    }
    if secs < MIN_LIFETIME.as_secs_f64() {
        return Err(LifetimeError::TooShort(field));
    }
    if secs > MAX_LIFETIME.as_secs_f64() {
        return Ok(Lifetime {
            duration: Some(MAX_LIFETIME),
            clamped: true,
        });
    }
    Ok(Lifetime {
        // Checked above to be finite and within MAX_LIFETIME, so this
        // cannot fail; `from_secs_f64` would panic if that ever changed.
        duration: Some(
            Duration::try_from_secs_f64(secs)
                .map_err(|source| LifetimeError::Unusable { field, source })?,
        ),
        clamped: false,
    })
}

/// The lifetime from the answer per `expiry`, bounded to
/// [`MIN_LIFETIME`]..=[`MAX_LIFETIME`] (under the minimum is an error).
pub fn lifetime(
    expiry: &Expiry,
    answer: &serde_json::Value,
    now: SystemTime,
) -> Result<Lifetime, LifetimeError> {
    match expiry {
        Expiry::Never => Ok(Lifetime {
            duration: None,
            clamped: false,
        }),
        Expiry::Ttl(d) => bounded(d.as_secs_f64(), LifetimeField::Ttl),
        Expiry::In(p) => {
            let field = || LifetimeField::In(p.clone());
            let v = answer
                .pointer(p)
                .ok_or_else(|| LifetimeError::NoLifetime(p.clone()))?;
            let secs = number(v).ok_or_else(|| LifetimeError::NotSeconds(field()))?;
            bounded(secs, field())
        }
        Expiry::At(p) => {
            let v = answer
                .pointer(p)
                .ok_or_else(|| LifetimeError::NoExpiry(p.clone()))?;
            let now_s = now
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            // Seconds from now, computed in f64 so a huge or negative unix
            // time never overflows `SystemTime`.
            let secs = match number(v) {
                Some(at) => at - now_s,
                None => {
                    let at = v
                        .as_str()
                        .and_then(|s| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok())
                        .ok_or_else(|| LifetimeError::NotATime(p.clone()))?;
                    match at.duration_since(now) {
                        Ok(d) => d.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    }
                }
            };
            bounded(secs, LifetimeField::At(p.clone()))
        }
    }
}

/// Sends the request and reads the whole (bounded) answer.
async fn exchange(
    client: &HttpClient,
    req: Request<Body>,
) -> Result<(StatusCode, Bytes), FetchError> {
    let resp = client
        .request(req)
        .await
        .map_err(|e| FetchError::Unreachable {
            connect: e.is_connect(),
        })?;
    let status = resp.status();
    let bytes = crate::body::read_at_most(resp.into_body(), MAX_ANSWER)
        .await
        .map_err(|_| FetchError::Unreadable)?;
    Ok((status, bytes))
}

/// Calls the token endpoint once.
pub async fn fetch(
    spec: &HttpRequestSpec,
    client: &HttpClient,
    store: &TokenStore,
) -> Result<Fetched, FetchError> {
    let mut builder = Request::builder()
        .method(spec.method.clone())
        .uri(spec.url.clone())
        .version(Version::HTTP_11)
        .header(http::header::ACCEPT, "application/json");
    for (name, p) in &spec.headers {
        let v = resolve(p, store)?;
        let mut hv = HeaderValue::from_str(&v)
            .map_err(|_| FetchError::InvalidHeader { name: name.clone() })?;
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
    let req = builder.body(body).map_err(|_| FetchError::Request)?;
    // One deadline for the whole exchange: an endpoint that sends its
    // headers and then stalls the body must not hold the fetch forever.
    let (status, bytes) = tokio::time::timeout(spec.timeout, exchange(client, req))
        .await
        .map_err(|_| FetchError::Timeout)??;
    if !status.is_success() {
        return Err(FetchError::Status(status));
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
) -> Result<Fetched, FetchError> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| FetchError::NotJson)?;
    let token = answer
        .pointer(token_pointer)
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FetchError::NoToken {
            pointer: token_pointer.to_string(),
        })?;
    check_header_safe(&token).map_err(FetchError::Refused)?;
    let life = lifetime(expiry, &answer, now)?;
    Ok(Fetched {
        secret: Secret::new(token),
        lifetime: life.duration,
        clamped: life.clamped,
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

    fn secs(l: Result<Lifetime, LifetimeError>) -> Result<Option<u64>, LifetimeError> {
        l.map(|l| l.duration.map(|d| d.as_secs()))
    }

    #[test]
    fn lifetimes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let a = serde_json::json!({"expires_in": 3600, "exp_s": "60", "at": 1_100, "iso": "1970-01-01T00:20:00Z"});
        assert_eq!(
            secs(lifetime(&Expiry::In("/expires_in".into()), &a, now)),
            Ok(Some(3600))
        );
        assert_eq!(
            secs(lifetime(&Expiry::In("/exp_s".into()), &a, now)),
            Ok(Some(60))
        );
        assert_eq!(
            secs(lifetime(&Expiry::At("/at".into()), &a, now)),
            Ok(Some(100))
        );
        assert_eq!(
            secs(lifetime(&Expiry::At("/iso".into()), &a, now)),
            Ok(Some(200))
        );
        assert_eq!(
            lifetime(&Expiry::In("/missing".into()), &a, now),
            Err(LifetimeError::NoLifetime("/missing".into()))
        );
        assert_eq!(secs(lifetime(&Expiry::Never, &a, now)), Ok(None));
    }

    /// Zero, past, negative, NaN-like and non-numeric lifetimes are errors
    /// (a failed refresh, retried with backoff); absurd ones are clamped.
    /// None of them may panic.
    #[test]
    fn hostile_lifetimes_are_refused_or_clamped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let refused = [
            serde_json::json!(0),
            serde_json::json!(0.4),
            serde_json::json!(-5),
            serde_json::json!(-1e300),
            serde_json::json!("NaN"),
            serde_json::json!("inf"),
            serde_json::json!("soon"),
            serde_json::json!(null),
            serde_json::json!({"x": 1}),
        ];
        for v in &refused {
            let a = serde_json::json!({ "v": v });
            assert!(
                lifetime(&Expiry::In("/v".into()), &a, now).is_err(),
                "expires_in {v}"
            );
        }
        for v in [
            serde_json::json!(1_600_000_000),
            serde_json::json!(-1),
            serde_json::json!(0),
            serde_json::json!("2001-01-01T00:00:00Z"),
            serde_json::json!("NaN"),
            serde_json::json!("never"),
        ] {
            let a = serde_json::json!({ "v": v });
            assert!(
                lifetime(&Expiry::At("/v".into()), &a, now).is_err(),
                "expires_at {v}"
            );
        }
        for v in [
            serde_json::json!(1e19),
            serde_json::json!(1e20),
            serde_json::json!(1e300),
            serde_json::json!(u64::MAX),
            serde_json::json!("1e20"),
        ] {
            for e in [Expiry::In("/v".into()), Expiry::At("/v".into())] {
                let a = serde_json::json!({ "v": v });
                assert_eq!(
                    lifetime(&e, &a, now),
                    Ok(Lifetime {
                        duration: Some(MAX_LIFETIME),
                        clamped: true
                    }),
                    "{e:?} {v}"
                );
            }
        }
        let zero = lifetime(&Expiry::Ttl(Duration::ZERO), &serde_json::json!({}), now);
        assert_eq!(zero, Err(LifetimeError::TooShort(LifetimeField::Ttl)));
        assert_eq!(
            zero.map(|_| ()).map_err(|e| e.to_string()),
            Err(
                "the configured ttl gives a lifetime under 1 s (the token is already expired)"
                    .into()
            )
        );
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
                assert_eq!(
                    lifetime(&e, &a, now).map(|l| l.duration),
                    Ok(Some(MAX_LIFETIME)),
                    "{v} {e:?}"
                );
            }
        }
        let ttl = Expiry::Ttl(Duration::MAX);
        let empty = serde_json::json!({});
        assert_eq!(
            lifetime(&ttl, &empty, now).map(|l| l.duration),
            Ok(Some(MAX_LIFETIME))
        );
        // A far but representable expiry is clamped to the cap too.
        let year_2100 = serde_json::json!({ "t": 4_102_444_800u64 });
        assert_eq!(
            lifetime(&Expiry::At("/t".into()), &year_2100, now).map(|l| l.duration),
            Ok(Some(MAX_LIFETIME))
        );
        // One inside the cap keeps its meaning.
        let next_month = serde_json::json!({ "t": 1_700_000_000u64 + 30 * 86_400 });
        assert_eq!(
            lifetime(&Expiry::At("/t".into()), &next_month, now).map(|l| l.duration),
            Ok(Some(Duration::from_secs(30 * 86_400)))
        );
    }
}
