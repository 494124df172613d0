//! Path grants: `/v1/charges/**`, `/v1/customers/*`. `*` matches exactly one
//! non-empty segment, `**` any number of segments including none (so
//! `/v1/charges/**` also allows `/v1/charges` itself). Everything else is
//! literal and case-sensitive, as URL paths are.
//!
//! A pattern is matched against the very string keygate forwards (see
//! `proxy::rewrite`), split on `/` only: an admitted `%2F` stays inside its
//! segment for the grant exactly as it does on the wire, so `*` can never
//! match what the upstream sees as two segments. Literal segments are
//! written in the same normal form as forwarded paths ([`normalize_escapes`]),
//! so `/v1/%7Euser` and `/v1/~user` are one grant.
//!
//! Matching is the two-pointer glob algorithm over segments: it backtracks
//! only to the most recent `**`, so a pattern with several `**` costs at
//! most (pattern length + 1) × (path segments + 1) steps, never the
//! exponential time of naive recursion on a long path.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    One,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    parts: Vec<Part>,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3 unreserved characters: percent-encoding them changes
/// nothing, so §6.2.2.2 normalisation decodes them.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §6.2.2 normal form of a path string: escapes of unreserved
/// characters are decoded, every other escape gets upper-case hex digits.
/// Nothing else changes: other escapes are never decoded (an encoded `/`
/// stays `%2F`, an encoded `%` stays `%25`), and a `%` that does not start
/// a valid escape is left as it is. Borrowed when there is nothing to do.
pub fn normalize_escapes(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let escape = (b[i] == b'%')
            .then(|| Some((hex_value(*b.get(i + 1)?)?, hex_value(*b.get(i + 2)?)?)))
            .flatten();
        match escape {
            Some((hi, lo)) => {
                let v = hi << 4 | lo;
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
                }
                i += 3;
            }
            None => {
                // Copy up to the next `%` in one go (keeps UTF-8 intact).
                // Searched in bytes: `b[i]` may lead a multi-byte character,
                // so `s[i + 1..]` could cut it (found by the rewrite fuzz
                // target); `%` is ASCII, so its position is a char boundary.
                let next = b[i + 1..]
                    .iter()
                    .position(|&c| c == b'%')
                    .map_or(b.len(), |n| i + 1 + n);
                out.push_str(&s[i..next]);
                i = next;
            }
        }
    }
    Cow::Owned(out)
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path pattern `{text}` must start with /"));
        };
        let parts = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/')
                .map(|seg| match seg {
                    "*" => Ok(Part::One),
                    "**" => Ok(Part::Any),
                    s if s.contains('*') => Err(format!(
                        "path pattern `{text}`: `*` must stand alone in its segment"
                    )),
                    s => Ok(Part::Literal(normalize_escapes(s).into_owned())),
                })
                .collect::<Result<_, _>>()?
        };
        Ok(PathPattern {
            text: text.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `path` is the forwarded, upstream-relative path (starting with `/`,
    /// or empty for the connector's root), no query.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_counting(path).0
    }

    /// [`Self::matches`] and the number of steps the matcher took; tests
    /// hold the step count to its bound.
    fn matches_counting(&self, path: &str) -> (bool, usize) {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let segs: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        glob(&self.parts, &segs)
    }
}

/// Two-pointer glob over segments. `**` records a restart point; a
/// mismatch resumes from the latest one with one more segment swallowed.
/// An earlier `**` never needs revisiting: whatever it could absorb, the
/// later one can absorb too. Returns the answer and the steps taken.
fn glob(parts: &[Part], segs: &[&str]) -> (bool, usize) {
    let (mut p, mut s) = (0, 0);
    // (pattern index after the latest `**`, segments it has swallowed up to)
    let mut restart: Option<(usize, usize)> = None;
    let mut steps = 0;
    while s < segs.len() {
        steps += 1;
        let advanced = match parts.get(p) {
            Some(Part::Any) => {
                restart = Some((p + 1, s));
                p += 1;
                continue;
            }
            Some(Part::One) => !segs[s].is_empty(),
            Some(Part::Literal(l)) => l == segs[s],
            None => false,
        };
        if advanced {
            p += 1;
            s += 1;
            continue;
        }
        let Some((after, from)) = restart else {
            return (false, steps);
        };
        restart = Some((after, from + 1));
        p = after;
        s = from + 1;
    }
    while parts.get(p) == Some(&Part::Any) {
        steps += 1;
        p += 1;
    }
    (p == parts.len(), steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `rewrite` fuzz target: a multi-byte character right
    /// after an escape (or a lone `%`) made the copy slice mid-character.
    #[test]
    fn normal_form_keeps_multi_byte_characters_whole() {
        let path = "/stripe/users\u{462}@b.us\u{462}%2f\u{462}@b%zz\u{462}x";
        assert_eq!(
            normalize_escapes(path),
            "/stripe/users\u{462}@b.us\u{462}%2F\u{462}@b%zz\u{462}x"
        );
        assert_eq!(normalize_escapes("\u{462}%7e\u{462}"), "\u{462}~\u{462}");
    }

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).expect("pattern")
    }

    #[test]
    fn single_segment_wildcard() {
        let pat = p("/v1/customers/*");
        assert!(pat.matches("/v1/customers/cus_1"));
        assert!(!pat.matches("/v1/customers"));
        assert!(!pat.matches("/v1/customers/"));
        assert!(!pat.matches("/v1/customers/cus_1/cards"));
    }

    #[test]
    fn any_depth_wildcard() {
        let pat = p("/v1/charges/**");
        assert!(pat.matches("/v1/charges"));
        assert!(pat.matches("/v1/charges/ch_1"));
        assert!(pat.matches("/v1/charges/ch_1/refunds"));
        assert!(!pat.matches("/v1/chargesX"));
        assert!(!pat.matches("/v2/charges/ch_1"));
        assert!(p("/**").matches("/anything/at/all"));
        assert!(p("/a/**/z").matches("/a/b/c/z"));
    }

    #[test]
    fn several_any_depth_wildcards_cost_linear_steps() {
        // 10 002 segments holding every literal but the last: the old
        // recursive matcher tried every split for every `**`, about
        // n^4 / 4! steps (10^14 here), and never finished.
        let pat = p("/**/a/**/b/**/c/**/d");
        let long = "/a/b/c".repeat(3_334);
        let segs = 3 * 3_334;
        let bound = (pat.parts.len() + 1) * (segs + 1);
        let (hit, steps) = pat.matches_counting(&long);
        assert!(!hit);
        assert!(steps <= bound, "{steps} steps, bound {bound}");
        let (hit, steps) = pat.matches_counting(&"/x".repeat(10_000));
        assert!(!hit);
        assert!(steps <= (pat.parts.len() + 1) * 10_001, "{steps} steps");
        let (hit, steps) = pat.matches_counting(&format!("{long}/x/d"));
        assert!(hit);
        assert!(steps <= (pat.parts.len() + 1) * (segs + 3), "{steps} steps");
    }

    #[test]
    fn literals_are_compared_in_normal_form() {
        assert_eq!(normalize_escapes("%7euser"), "~user");
        assert_eq!(normalize_escapes("a%2fb%2Fc"), "a%2Fb%2Fc");
        assert_eq!(normalize_escapes("%41%62%2d%5f%2E"), "Ab-_.");
        assert_eq!(normalize_escapes("%25%zz%"), "%25%zz%");
        assert_eq!(normalize_escapes("caf%C3%A9/é"), "caf%C3%A9/é");
        assert!(matches!(normalize_escapes("plain"), Cow::Borrowed(_)));
        assert!(p("/v1/%7euser/*").matches("/v1/~user/x"));
        assert!(p("/objects/a%2fb").matches("/objects/a%2Fb"));
        // An encoded slash is part of its segment, never a separator.
        assert!(p("/objects/*").matches("/objects/a%2Fb"));
        assert!(!p("/objects/*/*").matches("/objects/a%2Fb"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(PathPattern::parse("v1/x").is_err());
        assert!(PathPattern::parse("/v1/ch*").is_err());
    }
}
