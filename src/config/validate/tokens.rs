//! The `tokens` section: each token's name, type, injected header and
//! prefix, then its type's own fields: a `text` token's value source and a
//! `user` token's caller header and JWT check here, an `http_request`
//! token's endpoint call in `http_request.rs`. A field that belongs to
//! another type is refused, so a misplaced one never goes unnoticed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;

use super::Errors;
use super::fields::{
    absolute_url, header_name, is_http_token, positive_duration, resolve, valid_name, value_source,
};
use super::http_request::http_request_spec;
use crate::config::locate::Seg;
use crate::config::model::{JwtKey, JwtSpec, TokenKind, TokenSpec, UserSpec};
use crate::config::raw::RawToken;

const DEFAULT_JWKS_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Request headers keygate itself reads or removes, with why; a `user`
/// token cannot be taken from one (it would be stripped, misread as the
/// caller's API key, or break the connection). Compared lowercase.
const CONSUMED_REQUEST_HEADERS: &[(&str, &str)] = &[
    ("authorization", "it carries the caller's keygate API key"),
    ("x-api-key", "it carries the caller's keygate API key"),
    (
        "proxy-authorization",
        "keygate removes it (RFC 9110 §11.7.2: it is meant for the proxy)",
    ),
    ("host", "keygate sets the upstream's own Host"),
    ("x-request-id", "keygate reads and sets the request id"),
    (
        "x-forwarded-for",
        "keygate writes it when forward_client_ip is on",
    ),
    ("content-length", "it frames the request body"),
    ("expect", "the HTTP server answers it (RFC 9110 §10.1.1)"),
    ("connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("keep-alive", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("proxy-connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("te", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("trailer", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("transfer-encoding", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("upgrade", "it is hop-by-hop (RFC 9110 §7.6.1)"),
];

/// Why keygate cannot take a `user` token from `name`, if it cannot.
fn consumed_request_header(name: &HeaderName) -> Option<&'static str> {
    CONSUMED_REQUEST_HEADERS
        .iter()
        .find(|(h, _)| *h == name.as_str())
        .map(|(_, why)| *why)
}

/// Every valid token by name; an invalid one is reported and left out.
pub(super) fn tokens(
    e: &mut Errors<'_>,
    raw: &BTreeMap<String, RawToken>,
    base: &Path,
) -> BTreeMap<String, Arc<TokenSpec>> {
    let mut tokens = BTreeMap::new();
    for (name, t) in raw {
        if let Some(spec) = token(e, name, t, base, raw) {
            tokens.insert(name.clone(), Arc::new(spec));
        }
    }
    tokens
}

/// One token: the fields every type shares, then its type's own.
fn token(
    e: &mut Errors<'_>,
    name: &str,
    t: &RawToken,
    base: &Path,
    all: &BTreeMap<String, RawToken>,
) -> Option<TokenSpec> {
    use Seg::Key;
    let p = [Key("tokens"), Key(name)];
    if !valid_name(name) {
        e.at(
            &p,
            format!("token name `{name}` may only use letters, digits, `.`, `_` and `-`"),
        );
    }
    let kind = t.kind.as_deref().unwrap_or("text");
    let field = |k: &'static str| [Key("tokens"), Key(name), Key(k)];
    let not_for = |e: &mut Errors<'_>, fields: &[(bool, &'static str)], why: &str| {
        for (present, f) in fields {
            if *present {
                e.at(&field(f), format!("token `{name}`: `{f}` {why}"));
            }
        }
    };
    let fetch_fields = [
        (t.request.is_some(), "request"),
        (t.response.is_some(), "response"),
        (t.refresh_before.is_some(), "refresh_before"),
        (t.min_refresh_interval.is_some(), "min_refresh_interval"),
    ];
    let user_fields = [
        (t.from_header.is_some(), "from_header"),
        (t.jwt.is_some(), "jwt"),
    ];
    let header = header_name(
        e,
        &field("header"),
        t.header.as_deref().unwrap_or("Authorization"),
    );
    let prefix = t.prefix.clone().filter(|p| !p.is_empty());
    if let Some(pfx) = &prefix
        && !is_http_token(pfx)
    {
        e.at(
            &field("prefix"),
            format!("token `{name}`: prefix `{pfx}` is not a valid HTTP token (like Bearer)"),
        );
    }
    let kind = match kind {
        "text" => {
            not_for(e, &fetch_fields, "only applies to an http_request token");
            not_for(e, &user_fields, "only applies to a user token");
            let source = t
                .value
                .as_ref()
                .and_then(|v| value_source(e, &field("value"), v, base));
            TokenKind::Text { source }
        }
        "http_request" => {
            not_for(e, &user_fields, "only applies to a user token");
            if t.value.is_some() {
                e.at(
                    &field("value"),
                    format!("token `{name}`: an http_request token is fetched; remove `value`"),
                );
            }
            TokenKind::HttpRequest(Arc::new(http_request_spec(e, name, t, base, all)?))
        }
        "user" => {
            not_for(e, &fetch_fields, "only applies to an http_request token");
            if t.value.is_some() {
                e.at(
                    &field("value"),
                    format!(
                        "token `{name}`: a user token's value comes from the caller; remove `value`"
                    ),
                );
            }
            TokenKind::User(Arc::new(user_spec(e, name, t, base)?))
        }
        other => {
            e.at(
                &field("type"),
                format!("token `{name}`: unknown type `{other}` (use text, http_request or user)"),
            );
            return None;
        }
    };
    Some(TokenSpec {
        name: name.to_string(),
        description: t.description.clone(),
        kind,
        header: header?,
        prefix,
    })
}

/// A `user` token: the caller's header it arrives in (never one keygate
/// itself reads or removes) and an optional JWT check.
fn user_spec(e: &mut Errors<'_>, name: &str, t: &RawToken, base: &Path) -> Option<UserSpec> {
    use Seg::Key;
    let field = |k: &'static str| [Key("tokens"), Key(name), Key(k)];
    let default_header = format!("Keygate-Token-{name}");
    let from = t.from_header.as_deref().unwrap_or(&default_header);
    let from_header = if is_http_token(from) {
        let h = HeaderName::from_bytes(from.as_bytes()).ok();
        if let Some(why) = h.as_ref().and_then(consumed_request_header) {
            e.at(
                &field("from_header"),
                format!("token `{name}`: from_header cannot be `{from}`: {why}"),
            );
            None
        } else {
            h
        }
    } else {
        e.at(
            &field("from_header"),
            format!("`{from}` is not a valid HTTP header name"),
        );
        None
    };
    let jwt = match &t.jwt {
        None => None,
        Some(j) => {
            let jp = |k: &'static str| [Key("tokens"), Key(name), Key("jwt"), Key(k)];
            let key = match (&j.hs256_secret, &j.jwks_url) {
                (Some(src), None) => {
                    if j.jwks_min_interval.is_some() {
                        e.at(
                            &jp("jwks_min_interval"),
                            "`jwks_min_interval` only applies with `jwks_url`",
                        );
                    }
                    value_source(e, &jp("hs256_secret"), src, base).map(JwtKey::Hs256)
                }
                (None, Some(url)) => absolute_url(url)
                    .map_err(|m| e.at(&jp("jwks_url"), m))
                    .ok()
                    .map(|url| JwtKey::Jwks {
                        url,
                        ca_file: j.ca_file.as_ref().map(|f| resolve(base, f)),
                        min_interval: positive_duration(
                            e,
                            &jp("jwks_min_interval"),
                            &j.jwks_min_interval,
                            DEFAULT_JWKS_MIN_INTERVAL,
                        ),
                    }),
                _ => {
                    e.at(
                        &field("jwt"),
                        "jwt needs exactly one of `hs256_secret` or `jwks_url`",
                    );
                    None
                }
            };
            Some(JwtSpec {
                key: key?,
                issuer: j.issuer.clone(),
                audience: j.audience.clone(),
            })
        }
    };
    Some(UserSpec {
        from_header: from_header?,
        jwt,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::validate::http_request::DEFAULT_MIN_REFRESH_INTERVAL;

    #[test]
    fn refresh_and_jwks_intervals() {
        let path = Path::new("/etc/keygate/keygate.yaml");
        let yaml = r#"
tokens:
  t:
    type: http_request
    request: { url: "https://idp.example/token" }
    response: { token: /access_token }
    min_refresh_interval: 0s
  u:
    type: user
    jwt: { hs256_secret: { literal: abc }, jwks_min_interval: 5s }
  w:
    value: { literal: x }
    min_refresh_interval: 5s
"#;
        let errs = crate::config::from_text(yaml, path).expect_err("invalid").0;
        let at = |line: usize, needle: &str| {
            assert!(
                errs.iter()
                    .any(|e| e.line == Some(line) && e.message.contains(needle)),
                "line {line}: {needle}: {errs:?}"
            )
        };
        at(7, "longer than 0s");
        at(10, "only applies with `jwks_url`");
        at(13, "only applies to an http_request token");
        assert_eq!(errs.len(), 3, "{errs:?}");

        let ok = r#"
tokens:
  t:
    type: http_request
    request: { url: "https://idp.example/token" }
    response: { token: /access_token }
  t2:
    type: http_request
    request: { url: "https://idp.example/token" }
    response: { token: /access_token }
    min_refresh_interval: 2m
  v:
    type: user
    jwt: { jwks_url: "https://idp.example/jwks", jwks_min_interval: 45s }
"#;
        let c = crate::config::from_text(ok, path).expect("valid");
        let http = |n: &str| match &c.tokens[n].kind {
            TokenKind::HttpRequest(h) => h.min_refresh_interval,
            _ => Duration::ZERO,
        };
        assert_eq!(http("t"), DEFAULT_MIN_REFRESH_INTERVAL);
        assert_eq!(http("t2"), Duration::from_secs(120));
        let TokenKind::User(u) = &c.tokens["v"].kind else {
            panic!("user token")
        };
        assert!(matches!(
            u.jwt.as_ref().map(|j| &j.key),
            Some(JwtKey::Jwks { min_interval, .. }) if *min_interval == Duration::from_secs(45)
        ));
    }
}
