//! Request target → (connector, upstream path). The upstream host is fixed
//! by the connector; nothing in the request can move it: absolute-form
//! targets and `CONNECT` are refused, and so is every path segment that an
//! upstream could resolve differently from keygate, before routing and
//! with 400:
//!
//! - dot segments in any spelling: `.`, `..`, percent-encoded (`%2e%2e`,
//!   `.%2e`), with a path parameter (`..;`, `..;x=1`, which Tomcat and
//!   Spring strip before resolving), double-encoded (`%252e%252e`), or
//!   mixed with spaces (`.. .`, `..%20`: Windows trims trailing dots and
//!   spaces);
//! - `\` raw or encoded (`%5C`, `%255c`): many servers treat it as `/`;
//! - an encoded `/` (`%2F`) inside a segment, unless the connector sets
//!   `allow_encoded_slash` (object keys); a double-encoded one (`%252F`)
//!   always;
//! - empty segments (`//host`), control characters, and `@` in the
//!   leading segments;
//! - a segment that is not UTF-8 once fully decoded (overlong `.`:
//!   `%c0%ae`, `%e0%80%ae`, `%f0%80%80%ae`), and Unicode look-alikes that
//!   servers fold into `.`, `/` or `\` (fullwidth `%ef%bc%8e`,
//!   `%ef%bc%8f`, division slash U+2215, …).
//!
//! What passes is brought to RFC 3986 §6.2.2 normal form
//! ([`normalize_escapes`]) and becomes the [`ForwardPath`]: the ONE string
//! that role grants are matched on and that is sent upstream. Nothing is
//! decoded further, so an admitted `%2F` stays inside its segment for the
//! grant exactly as on the wire.

use std::borrow::Cow;

use http::{Method, Request, Uri, Version};

use crate::config::Upstream;
use crate::config::pattern::normalize_escapes;
use crate::error::GatewayError;

/// Decoding rounds after the first: `%25` nested deeper than this is never
/// legitimate, and the bound keeps a crafted segment from costing more
/// than a few passes.
const MAX_EXTRA_DECODES: usize = 3;

fn bad(msg: &str) -> GatewayError {
    GatewayError::BadRequest(msg.to_string())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes once. Strict (`None` on a malformed escape) for what
/// the caller sent; lenient (a stray `%` stays) for the later rounds that
/// only model what a double-decoding upstream would see.
fn decode(b: &[u8], strict: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escape = (b[i] == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?))
            .flatten();
        match escape {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None if b[i] == b'%' && strict => return None,
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A piece of a segment that a server could resolve as `.` or `..`: once
/// a path parameter (`;…`) is cut off, nothing but dots and spaces, with
/// at least one dot. Windows trims trailing dots *and* spaces, so `.. .`
/// and `. .` are `..` and `.` there; leading spaces are refused too
/// rather than modelled (no honest segment is made of dots and blanks).
fn is_dot_piece(piece: &[u8]) -> bool {
    let base = piece.split(|b| *b == b';').next().unwrap_or_default();
    base.contains(&b'.') && base.iter().all(|b| matches!(b, b'.' | b' '))
}

/// Characters that a server may fold into `/` or `\` (Unicode NFKC, or
/// Windows "best fit" mappings), refused wherever they appear: U+FF0F
/// fullwidth solidus, U+2215 division slash, U+2044 fraction slash,
/// U+FF3C fullwidth and U+FE68 small reverse solidus; and U+FF0E, the
/// fullwidth full stop that NFKC folds to `.`.
const CONFUSABLES: &[char] = &[
    '\u{FF0F}', '\u{2215}', '\u{2044}', '\u{FF3C}', '\u{FE68}', '\u{FF0E}',
];

/// Other characters whose NFKC form is only dots: harmless inside a name
/// (`Hello…`), a dot segment on their own.
fn nfkc_dots(c: char) -> Option<&'static str> {
    match c {
        '\u{2024}' | '\u{FE52}' => Some("."),
        '\u{2025}' => Some(".."),
        '\u{2026}' => Some("..."),
        _ => None,
    }
}

/// Every rule of the module doc for one raw segment. `leading`: one of
/// the first two segments, where `@` could pass for userinfo.
fn check_segment(seg: &str, leading: bool) -> Result<(), GatewayError> {
    if seg.contains('\\') {
        return Err(bad("backslashes are not accepted in the path"));
    }
    let once: Cow<'_, [u8]> = if seg.contains('%') {
        decode(seg.as_bytes(), true)
            .ok_or_else(|| bad("malformed percent-encoding in the path"))?
            .into()
    } else {
        seg.as_bytes().into()
    };
    // What an upstream that decodes more than once would end up with.
    let mut full = once.clone();
    let mut rounds = 0;
    while full.contains(&b'%') {
        let next = decode(&full, false).unwrap_or_default();
        if next == *full {
            break;
        }
        rounds += 1;
        if rounds > MAX_EXTRA_DECODES {
            return Err(bad("percent-encoding nested too deeply in the path"));
        }
        full = next.into();
    }
    if full.contains(&b'\\') {
        return Err(bad("backslashes are not accepted in the path"));
    }
    if full.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err(bad("control characters are not accepted in the path"));
    }
    // Overlong spellings of `.` and `/` (`%c0%ae`, `%e0%80%ae`,
    // `%f0%80%80%ae`) and every other byte string a lenient decoder might
    // map to something else are not UTF-8: refused.
    let Ok(text) = std::str::from_utf8(&full) else {
        return Err(bad(
            "the path must be UTF-8 once percent-decoded (overlong or invalid sequences are refused)",
        ));
    };
    if text.contains(CONFUSABLES) {
        return Err(bad(
            "fullwidth or look-alike `.`, `/` and `\\` characters are not accepted in the path",
        ));
    }
    let slashes = |b: &[u8]| b.iter().filter(|c| **c == b'/').count();
    if slashes(&full) > slashes(&once) {
        return Err(bad("double-encoded `/` is not accepted in the path"));
    }
    let folded: Cow<'_, str> = if text.chars().any(|c| nfkc_dots(c).is_some()) {
        text.chars()
            .map(|c| nfkc_dots(c).map_or_else(|| c.to_string(), str::to_string))
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    if folded.split('/').any(|p| is_dot_piece(p.as_bytes())) {
        return Err(bad(
            "dot segments (`.`, `..`, in any spelling) are not accepted in the path",
        ));
    }
    if leading && full.contains(&b'@') {
        return Err(bad("`@` is not accepted in the leading path segments"));
    }
    Ok(())
}

/// A request path that passed every check, in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPath(String);

/// The part of a [`CheckedPath`] that goes upstream: after the connector
/// segment on the shared listener, the whole path on a dedicated one.
#[derive(Debug, Clone, Copy)]
pub struct RestPath<'a>(&'a str);

/// The upstream-relative path exactly as it is forwarded (appended to the
/// connector's base path), and exactly what role grants are matched on.
/// Starts with `/`, or is empty for the connector's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardPath(String);

impl CheckedPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Shared listener: `/<connector>/<rest>`.
    pub fn split_connector(&self) -> Option<(&str, RestPath<'_>)> {
        split_connector(&self.0).map(|(name, rest)| (name, RestPath(rest)))
    }

    /// Dedicated listener: the whole path is the rest.
    pub fn whole(&self) -> RestPath<'_> {
        RestPath(&self.0)
    }
}

impl RestPath<'_> {
    /// The forwarded path under the connector's encoded-slash rule. The
    /// path is in normal form, so `%2F` is the only spelling left to find.
    pub fn forward(self, allow_encoded_slash: bool) -> Result<ForwardPath, GatewayError> {
        if !allow_encoded_slash && self.0.contains("%2F") {
            return Err(bad(
                "an encoded `/` (%2F) inside a path segment is not accepted by this connector",
            ));
        }
        Ok(ForwardPath(self.0.to_string()))
    }
}

impl ForwardPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Refuses any target that could reach anything but the connector's base;
/// returns the path in normal form.
pub fn check_target<B>(req: &Request<B>) -> Result<CheckedPath, GatewayError> {
    if req.method() == Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    let uri = req.uri();
    // HTTP/2 always carries :scheme and :authority; only HTTP/1 can send an
    // absolute-form target, which would name another host.
    if req.version() < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Err(bad("absolute-form request targets are not accepted"));
    }
    let path = uri.path();
    let Some(segments) = path.strip_prefix('/') else {
        return Err(bad("the request target must be a path"));
    };
    let mut segs = segments.split('/').enumerate().peekable();
    while let Some((i, seg)) = segs.next() {
        if seg.is_empty() && segs.peek().is_some() {
            return Err(bad("empty path segments (`//`) are not accepted"));
        }
        check_segment(seg, i < 2)?;
    }
    Ok(CheckedPath(normalize_escapes(path).into_owned()))
}

/// Splits `/<connector>/<rest>` on the shared listener. `rest` keeps its
/// leading slash, or is empty for `/<connector>`.
pub fn split_connector(path: &str) -> Option<(&str, &str)> {
    let p = path.strip_prefix('/')?;
    let (name, rest) = match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    };
    (!name.is_empty()).then_some((name, rest))
}

/// `<upstream base><path>?<query>` with the connector's scheme and host.
pub fn upstream_uri(
    up: &Upstream,
    path: &ForwardPath,
    query: Option<&str>,
) -> Result<Uri, GatewayError> {
    let rest = path.as_str();
    let mut pq = String::with_capacity(
        up.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
    );
    pq.push_str(&up.base_path);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| bad("the request target cannot be forwarded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> Request<()> {
        Request::builder().uri(target).body(()).expect("request")
    }

    /// The forwarded path of `target` on the shared listener.
    fn forwarded(target: &str, allow_encoded_slash: bool) -> Result<String, GatewayError> {
        let checked = check_target(&req(target))?;
        let (_, rest) = checked.split_connector().expect("connector");
        Ok(rest.forward(allow_encoded_slash)?.as_str().to_string())
    }

    #[test]
    fn escapes_are_refused() {
        for t in [
            "/stripe/../admin",
            "/stripe/%2e%2e/admin",
            "/stripe/%2E%2e/admin",
            "/stripe/.%2e/admin",
            "/stripe/%2e./admin",
            "/stripe/./x",
            "/stripe/..;/admin",
            "/stripe/..;x=1/admin",
            "/stripe/%2e%2e;/admin",
            "/stripe/..%3b/admin",
            "/stripe/.;/x",
            "/stripe/.../x",
            "/stripe/..%20/x",
            "/stripe/%252e%252e/admin",
            "/stripe/%25252e%25252e/admin",
            "/stripe/%c0%ae%c0%ae/admin",
            "/stripe//evil.example/x",
            "/stripe/@evil.example/x",
            "/stripe@evil.example/x",
            "/stripe/%40evil.example",
            "/stripe/a%5c..%5cb",
            "/stripe/a%5Cb",
            "/stripe/a%255cb",
            "/stripe/..%2f..%2fetc",
            "/stripe/a%252fb",
            "/stripe/a%00b",
            "/stripe/..%20./x",
            "/stripe/.%20./x",
            "/stripe/%20../x",
            "/stripe/%e0%80%ae%e0%80%ae/x",
            "/stripe/%f0%80%80%ae/x",
            "/stripe/%c1%9c/x",
            "/stripe/%ff/x",
            "/stripe/%ef%bc%8e%ef%bc%8e/x",
            "/stripe/a%ef%bc%8fb",
            "/stripe/a%e2%88%95b",
            "/stripe/a%e2%81%84b",
            "/stripe/a%ef%b9%a8b",
            "/stripe/a%ef%bc%bcb",
            "/stripe/a%25ef%25bc%258fb",
            "/stripe/%e2%80%a5/x",
            "/stripe/%e2%80%a4%e2%80%a4/x",
            "/stripe/%ef%b9%92/x",
            "/stripe/%zz",
            "/stripe/%2",
            "/stripe/%2525252541",
            "http://evil.example/stripe/v1",
        ] {
            assert!(check_target(&req(t)).is_err(), "{t} must be refused");
        }
        for t in [
            "/stripe/v1/charges",
            "/stripe/v1/",
            "/stripe",
            "/stripe/v1/users/a@b.example",
            "/stripe/v1/x%20y",
            "/stripe/v1/a%2Fb",
            "/stripe/v1/file%252ejson",
            "/stripe/v1/100%2525",
            "/stripe/v1/a;b=1",
            "/stripe/v1/.well-known",
            "/stripe/v1/..x",
            "/stripe/v1/Hello%e2%80%a6",
            "/stripe/v1/caf%c3%a9",
            "/stripe/v1/a%20b.c",
        ] {
            assert!(check_target(&req(t)).is_ok(), "{t} must pass");
        }
    }

    #[test]
    fn windows_trimmed_dot_pieces() {
        for p in [".. .", ". .", "..  ", " ..", ". . .", "..;x", ". ;x"] {
            assert!(is_dot_piece(p.as_bytes()), "{p:?}");
        }
        for p in ["..x", ".well-known", "a.", " ", "", ";..", "a b"] {
            assert!(!is_dot_piece(p.as_bytes()), "{p:?}");
        }
    }

    #[test]
    fn encoded_slash_only_where_the_connector_allows_it() {
        for t in ["/s/v1/a%2Fb", "/s/v1/a%2fb"] {
            assert!(forwarded(t, false).is_err(), "{t}");
            assert_eq!(forwarded(t, true).expect("allowed"), "/v1/a%2Fb");
        }
        // Even where admitted, the pieces must not be dot segments.
        for t in [
            "/s/v1/a%2F..%2Fb",
            "/s/v1/..%2Fb",
            "/s/v1/a%2F.",
            "/s/v1/a%252Fb",
        ] {
            assert!(check_target(&req(t)).is_err(), "{t}");
        }
    }

    #[test]
    fn the_forwarded_path_is_in_normal_form() {
        assert_eq!(forwarded("/s/v1/%7euser", false).expect("ok"), "/v1/~user");
        assert_eq!(forwarded("/s/v1/a%3fb", false).expect("ok"), "/v1/a%3Fb");
        assert_eq!(
            forwarded("/s/v1/x%2520y", false).expect("ok"),
            "/v1/x%2520y"
        );
        assert_eq!(forwarded("/s", false).expect("ok"), "");
    }

    #[test]
    fn splits_and_joins() {
        assert_eq!(split_connector("/stripe/v1/x"), Some(("stripe", "/v1/x")));
        assert_eq!(split_connector("/stripe"), Some(("stripe", "")));
        assert_eq!(split_connector("/"), None);
        let up = Upstream {
            scheme: http::uri::Scheme::HTTPS,
            authority: "api.example.com".parse().expect("authority"),
            base_path: "/base".into(),
        };
        let path = ForwardPath("/v1/x".into());
        let u = upstream_uri(&up, &path, Some("a=1")).expect("uri");
        assert_eq!(u.to_string(), "https://api.example.com/base/v1/x?a=1");
        let bare = Upstream {
            base_path: String::new(),
            ..up
        };
        assert_eq!(
            upstream_uri(&bare, &ForwardPath(String::new()), None)
                .expect("uri")
                .to_string(),
            "https://api.example.com/"
        );
    }
}
