//! The rules for one field, shared by every section: names, HTTP tokens and
//! header names, listen addresses, upstream and endpoint URLs, durations,
//! paths and value sources (`env` / `file` / `literal`). Each returns the
//! typed value, or says why not: the predicates with `false`, the parsers
//! (`parse_*`, `absolute_url`) with a message for the caller to place, the
//! rest by reporting at the position they are given. None knows which
//! section it checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::uri::{Scheme, Uri};

use super::Errors;
use crate::config::locate::Seg;
use crate::config::model::{Upstream, ValueSource};
use crate::config::raw::{RawValueSource, Scalar};
use crate::config::units::parse_duration;
use crate::secret::{Secret, check_header_safe};

/// Headers keygate must own itself: injecting into them would break framing
/// or routing (RFC 9110 §7.6.1 hop-by-hop fields, plus `Host` and length).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// A name used in URLs and header names: letters, digits, `.`, `_`, `-`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The rule for `keys.prefix` and `keygen --prefix`: 1 to 16 letters,
/// digits, `_` or `-` (scanners match on it; it must never break the
/// base62 body).
pub fn valid_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// RFC 9110 §5.6.2 `token`.
pub fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// An IP address and port (`127.0.0.1:8080`, `[::1]:8080`) or
/// `localhost:PORT`; port 0 means any free port.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| format!("`{text}` is not a valid listen address"));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not a listen address like 127.0.0.1:8080 or [::1]:8080"))
}

pub(super) fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("upstream `{text}` is not a URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("upstream `{text}` must be an absolute http:// or https:// URL"))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!("upstream `{text}` must use http or https"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("upstream `{text}` has no host"))?;
    if authority.as_str().contains('@') {
        // Never echoed: user information may be a password.
        return Err("the upstream must not carry user information (`user:password@`); put a credential in a token".into());
    }
    if authority.host().is_empty() {
        return Err(format!("upstream `{text}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("upstream `{text}` must not carry a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Upstream {
        scheme,
        authority,
        base_path,
    })
}

/// Relative paths are relative to the config file's folder, `base`.
pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Exactly one of `env`, `file` (resolved against `base`) or `literal`.
pub(super) fn value_source(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &RawValueSource,
    base: &Path,
) -> Option<ValueSource> {
    let set = [raw.env.is_some(), raw.file.is_some(), raw.literal.is_some()];
    if set.iter().filter(|b| **b).count() != 1 {
        e.at(
            path,
            "a value needs exactly one of `env`, `file` or `literal`",
        );
        return None;
    }
    if let Some(name) = &raw.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            e.at(
                path,
                format!("`{name}` is not an environment variable name"),
            );
            return None;
        }
        return Some(ValueSource::Env(name.clone()));
    }
    if let Some(file) = &raw.file {
        return Some(ValueSource::File(resolve(base, file)));
    }
    let literal = raw.literal.as_deref().unwrap_or_default();
    let mut lit_path = path.to_vec();
    lit_path.push(Seg::Key("literal"));
    if let Err(why) = check_header_safe(literal) {
        // Never echo the literal: it is a credential.
        e.at(&lit_path, format!("the literal value is refused: {why}"));
        return None;
    }
    Some(ValueSource::Literal(Secret::new(literal)))
}

/// `default` when unset; a bad value is reported and replaced by `default`.
pub(super) fn duration(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &Option<Scalar>,
    default: Duration,
) -> Duration {
    match raw {
        None => default,
        Some(s) => parse_duration(&s.as_text()).unwrap_or_else(|m| {
            e.at(path, m);
            default
        }),
    }
}

/// A duration that must not be zero: a zero rate-limit interval would
/// silently switch the limit off.
pub(super) fn positive_duration(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &Option<Scalar>,
    default: Duration,
) -> Duration {
    let d = duration(e, path, raw, default);
    if d.is_zero() {
        e.at(
            path,
            "must be longer than 0s (it limits traffic to an endpoint)",
        );
        return default;
    }
    d
}

pub(super) fn header_name(e: &mut Errors<'_>, path: &[Seg<'_>], text: &str) -> Option<HeaderName> {
    if !is_http_token(text) {
        e.at(path, format!("`{text}` is not a valid HTTP header name"));
        return None;
    }
    let name = HeaderName::from_bytes(text.as_bytes()).ok()?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        e.at(
            path,
            format!("keygate cannot write header `{text}`: it controls the connection itself"),
        );
        return None;
    }
    Some(name)
}

/// An endpoint URL (token endpoint, JWKS), held to the upstream rules:
/// http or https, a host, no user information, no query.
pub(super) fn absolute_url(text: &str) -> Result<Uri, String> {
    let up = parse_upstream(text)?;
    let _ = up;
    text.parse::<Uri>()
        .map_err(|_| format!("`{text}` is not a URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("https://api.example.com/base/").expect("valid");
        assert_eq!(u.base_path, "/base");
        assert!(u.is_https());
        assert!(parse_upstream("ftp://x").is_err());
        assert!(parse_upstream("/relative").is_err());
        assert!(parse_upstream("https://user@host").is_err());
    }

    #[test]
    fn http_tokens() {
        assert!(is_http_token("Bearer"));
        assert!(!is_http_token("Bear er"));
        assert!(!is_http_token("X:Y"));
        assert!(!is_http_token(""));
    }
}
