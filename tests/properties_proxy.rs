//! Property tests of the proxy's path handling (proptest shrinks a failure
//! to a minimal path):
//!
//! - whatever the caller sends, a path that keygate accepts is forwarded
//!   inside the connector's base, with no dot segment in any spelling, no
//!   backslash, and no encoded `/` unless the connector allows it;
//! - grant matching agrees with a plain recursive reference matcher over
//!   segments, written here independently of the product's algorithm.

use http::Request;
use keygate::config::Upstream;
use keygate::config::pattern::PathPattern;
use keygate::proxy::rewrite::{self, ForwardPath};
use proptest::prelude::*;

/// Pieces that segments are built from: the plain, the tricky and the
/// hostile spellings.
const PIECES: &[&str] = &[
    "a", "b", "v1", "~", ".", "..", "%2e", "%2E", "%252e", "%25252e", ";", ";x=1", "%3b", "%2F",
    "%2f", "%252f", "%5C", "%5c", "%255c", "\\", "%25", "%", "%2", "%20", " ", "%00", "%c0%ae",
    "@", "%40", "=", "%7e", "%41",
];

fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..4).prop_map(|p| p.concat())
}

fn target() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..6).prop_map(|segs| format!("/conn/{}", segs.join("/")))
}

/// Percent-decodes every valid escape once; stray `%` stays.
fn decode_once(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// What an upstream that decodes until nothing changes would see.
fn decode_fully(s: &str) -> Vec<u8> {
    let mut cur = s.as_bytes().to_vec();
    loop {
        let next = decode_once(&cur);
        if next == cur {
            return cur;
        }
        cur = next;
    }
}

/// `.` or `..` to a server that strips `;params` and trailing blanks.
fn resolves_to_dots(piece: &[u8]) -> bool {
    let base = piece.split(|b| *b == b';').next().unwrap_or_default();
    let trimmed: &[u8] = match base.iter().rposition(|b| *b != b' ') {
        Some(i) => &base[..=i],
        None => &[],
    };
    !trimmed.is_empty() && trimmed.iter().all(|b| *b == b'.')
}

fn forward(target: &str, allow: bool) -> Option<ForwardPath> {
    let req = Request::get(target).body(()).ok()?;
    let checked = rewrite::check_target(&req).ok()?;
    let (name, rest) = checked.split_connector()?;
    assert_eq!(name, "conn", "the connector segment is kept");
    rest.forward(allow).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn accepted_paths_stay_inside_the_base_without_tricks(
        target in target(),
        allow in any::<bool>(),
    ) {
        let Some(path) = forward(&target, allow) else {
            return Ok(()); // refused: nothing is forwarded
        };
        let up = Upstream {
            scheme: http::uri::Scheme::HTTPS,
            authority: "api.example.com".parse().expect("authority"),
            base_path: "/base".into(),
        };
        let uri = rewrite::upstream_uri(&up, &path, Some("q=1")).expect("uri");
        prop_assert_eq!(uri.scheme_str(), Some("https"));
        prop_assert_eq!(uri.authority().map(|a| a.as_str()), Some("api.example.com"));
        let p = uri.path();
        prop_assert!(p == "/base" || p.starts_with("/base/"), "{} escapes the base", p);
        let forwarded = path.as_str();
        prop_assert!(forwarded.is_empty() || forwarded.starts_with('/'));
        prop_assert!(!forwarded.contains('\\'));
        let segs: Vec<&str> = forwarded.split('/').skip(1).collect();
        for (i, seg) in segs.iter().enumerate() {
            prop_assert!(!seg.is_empty() || i + 1 == segs.len(), "empty segment in {}", forwarded);
            let once = decode_once(seg.as_bytes());
            let full = decode_fully(seg);
            prop_assert!(!full.contains(&b'\\'), "backslash in {}", seg);
            prop_assert!(!full.contains(&0), "NUL in {}", seg);
            if !allow {
                prop_assert!(!full.contains(&b'/'), "encoded slash in {}", seg);
            } else {
                // Only a single-level %2F is admitted.
                let count = |b: &[u8]| b.iter().filter(|c| **c == b'/').count();
                prop_assert_eq!(count(&once), count(&full), "double-encoded slash in {}", seg);
            }
            for piece in full.split(|b| *b == b'/') {
                prop_assert!(!resolves_to_dots(piece), "dot segment {} in {}", seg, forwarded);
            }
        }
        // Normal form: forwarding again changes nothing.
        let again = forward(&format!("/conn{forwarded}"), allow);
        prop_assert_eq!(again.as_ref().map(ForwardPath::as_str), Some(forwarded));
    }

    #[test]
    fn encoded_slash_is_refused_unless_allowed(
        before in "[a-z]{1,5}",
        after in "[a-z]{1,5}",
        lower in any::<bool>(),
    ) {
        let slash = if lower { "%2f" } else { "%2F" };
        let target = format!("/conn/v1/{before}{slash}{after}");
        prop_assert!(forward(&target, false).is_none());
        let path = forward(&target, true).expect("allowed");
        let want = format!("/v1/{before}%2F{after}");
        prop_assert_eq!(path.as_str(), want.as_str());
    }
}

/// The reference: naive recursion over segments (exponential in the worst
/// case, fine for the small inputs generated here).
fn reference(pattern: &[&str], segs: &[&str]) -> bool {
    match pattern.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|k| reference(rest, &segs[k..])),
        Some((&"*", rest)) => segs
            .split_first()
            .is_some_and(|(s, tail)| !s.is_empty() && reference(rest, tail)),
        Some((lit, rest)) => segs
            .split_first()
            .is_some_and(|(s, tail)| s == lit && reference(rest, tail)),
    }
}

fn split(path: &str) -> Vec<&str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn grant_matching_agrees_with_the_reference(
        pattern in prop::collection::vec(prop::sample::select(&["a", "b", "*", "**"][..]), 0..7),
        path in prop::collection::vec(prop::sample::select(&["a", "b", "c", "", "a%2Fb"][..]), 0..9),
    ) {
        let text = format!("/{}", pattern.join("/"));
        let pat = PathPattern::parse(&text).expect("pattern");
        let path = if path.is_empty() { String::new() } else { format!("/{}", path.join("/")) };
        prop_assert_eq!(
            pat.matches(&path),
            reference(&split(&text), &split(&path)),
            "{} against {:?}", text, path
        );
    }
}
