//! One call to a token endpoint for an `http_request` token: build the
//! request from the config (headers, form or JSON body, values resolved
//! from their sources or other tokens), send it through the shared
//! `upstream` client, and pull the token and its lifetime out of the JSON
//! answer by JSON pointer.
//!
//! The answer holds secrets: it is never logged, and errors name only the
//! status, the pointer or the kind of failure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Version};

use super::{TokenStore, source};
use crate::body::Body;
use crate::config::{Expiry, FetchBody, HttpRequestSpec, JsonTemplate, Param};
use crate::secret::{Secret, check_header_safe};
use crate::upstream::HttpClient;

/// Largest token endpoint answer read.
const MAX_ANSWER: usize = 1 << 20;

/// A fetched value and how long it lives (from now).
#[derive(Debug)]
pub struct Fetched {
    pub secret: Secret,
    pub lifetime: Option<Duration>,
    /// The endpoint's lifetime was absurd and cut to [`MAX_LIFETIME`].
    pub clamped: bool,
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
fn bounded(secs: f64, what: &str) -> Result<Lifetime, String> {
    if !secs.is_finite() {
        return Err(format!("{what} is not a number of seconds"));
    }
    if secs < MIN_LIFETIME.as_secs_f64() {
        return Err(format!(
            "{what} gives a lifetime under {} s (the token is already expired)",
            MIN_LIFETIME.as_secs()
        ));
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
                .map_err(|e| format!("{what} is not a usable number of seconds: {e}"))?,
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
) -> Result<Lifetime, String> {
    match expiry {
        Expiry::Never => Ok(Lifetime {
            duration: None,
            clamped: false,
        }),
        Expiry::Ttl(d) => bounded(d.as_secs_f64(), "the configured ttl"),
        Expiry::In(p) => {
            let v = answer
                .pointer(p)
                .ok_or_else(|| format!("the answer has no lifetime at {p}"))?;
            let secs = number(v)
                .ok_or_else(|| format!("the lifetime at {p} is not a number of seconds"))?;
            bounded(secs, &format!("the lifetime at {p}"))
        }
        Expiry::At(p) => {
            let v = answer
                .pointer(p)
                .ok_or_else(|| format!("the answer has no expiry at {p}"))?;
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
                        .ok_or_else(|| {
                            format!(
                                "the expiry at {p} is neither unix seconds nor an RFC 3339 time"
                            )
                        })?;
                    match at.duration_since(now) {
                        Ok(d) => d.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    }
                }
            };
            bounded(secs, &format!("the expiry at {p}"))
        }
    }
}

/// Sends the request and reads the whole (bounded) answer.
async fn exchange(
    client: &HttpClient,
    req: Request<Body>,
) -> Result<(http::StatusCode, Bytes), String> {
    let resp = client.request(req).await.map_err(|e| {
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
    let bytes = crate::body::read_at_most(resp.into_body(), MAX_ANSWER)
        .await
        .map_err(|_| "the token endpoint's answer could not be read".to_string())?;
    Ok((status, bytes))
}

/// Calls the token endpoint once.
pub async fn fetch(
    spec: &HttpRequestSpec,
    client: &HttpClient,
    store: &TokenStore,
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
    // One deadline for the whole exchange: an endpoint that sends its
    // headers and then stalls the body must not hold the fetch forever.
    let (status, bytes) = tokio::time::timeout(spec.timeout, exchange(client, req))
        .await
        .map_err(|_| "the token endpoint did not answer in time".to_string())??;
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

    fn secs(l: Result<Lifetime, String>) -> Result<Option<u64>, String> {
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
        assert!(lifetime(&Expiry::In("/missing".into()), &a, now).is_err());
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
        assert!(lifetime(&Expiry::Ttl(Duration::ZERO), &serde_json::json!({}), now).is_err());
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
