//! Property tests of the proxy's path handling (proptest shrinks a failure
//! to a minimal path):
//!
//! - whatever the caller sends, a path that keygate accepts is forwarded
//!   inside the connector's base, with no backslash and no encoded `/`
//!   unless the connector allows it; and an independent oracle (decode
//!   until stable, fold Unicode look-alikes, read each segment as the most
//!   lenient server would, then RFC 3986 §5.2.4 remove_dot_segments) finds
//!   no segment resolved away and nothing outside the base;
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
    "a",
    "b",
    "v1",
    "~",
    ".",
    "..",
    "%2e",
    "%2E",
    "%252e",
    "%25252e",
    ";",
    ";x=1",
    "%3b",
    "%2F",
    "%2f",
    "%252f",
    "%5C",
    "%5c",
    "%255c",
    "\\",
    "%25",
    "%",
    "%2",
    "%20",
    " ",
    "%00",
    "%c0%ae",
    "@",
    "%40",
    "=",
    "%7e",
    "%41",
    "%e0%80%ae",
    "%f0%80%80%ae",
    "%c1%9c",
    "%ff",
    "%ef%bc%8e",
    "%ef%bc%8f",
    "%e2%88%95",
    "%e2%81%84",
    "%ef%b9%a8",
    "%ef%bc%bc",
    "%e2%80%a5",
    "%e2%80%a6",
    "%25ef%25bc%258e",
    "%c3%a9",
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

/// Characters that some server folds into `.`, `/` or `\` (NFKC, or
/// Windows "best fit"), written out here independently of the product.
fn fold_confusable(c: char) -> &'static str {
    match c {
        '\u{FF0E}' | '\u{2024}' | '\u{FE52}' => ".",
        '\u{2025}' => "..",
        '\u{2026}' => "...",
        '\u{FF0F}' | '\u{2215}' | '\u{2044}' => "/",
        '\u{FF3C}' | '\u{FE68}' | '\\' => "/",
        _ => "",
    }
}

/// The most hostile reading of one segment: `;params` cut (Tomcat,
/// Spring), and a name of only dots and spaces read as `..` (Windows
/// trims trailing dots and spaces; `...` and `.. .` are `..` there).
fn hostile_segment(seg: &str) -> &str {
    let base = seg.split(';').next().unwrap_or_default();
    if base.contains('.') && base.chars().all(|c| c == '.' || c == ' ') {
        if base.trim_end_matches([' ', '.']).is_empty() && base.matches('.').count() == 1 {
            "."
        } else {
            ".."
        }
    } else {
        base
    }
}

/// RFC 3986 §5.2.4 remove_dot_segments, as written in the RFC.
fn remove_dot_segments(input: &str) -> String {
    let mut input = input.to_string();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input = input[2..].to_string();
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") || input == "/.." {
            input = format!("/{}", &input[if input == "/.." { 3 } else { 4 }..]);
            match output.rfind('/') {
                Some(i) => output.truncate(i),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = input[end..].to_string();
        }
    }
    output
}

/// The independent oracle: the upstream URI's path as the most lenient
/// server would read it (decoded until stable, look-alikes folded,
/// segments read hostilely) must resolve to itself under
/// remove_dot_segments and stay under `base`.
fn resolves_inside(base: &str, uri_path: &str) -> Result<(), String> {
    let decoded = String::from_utf8(decode_fully(uri_path))
        .map_err(|_| format!("{uri_path} is not UTF-8 once decoded"))?;
    let folded: String = decoded
        .chars()
        .map(|c| match fold_confusable(c) {
            "" => c.to_string(),
            f => f.to_string(),
        })
        .collect();
    let read: Vec<&str> = folded.split('/').map(hostile_segment).collect();
    let read = read.join("/");
    let resolved = remove_dot_segments(&read);
    if resolved != read {
        return Err(format!(
            "{uri_path} resolves to {resolved} (read as {read})"
        ));
    }
    if !(resolved == base || resolved.starts_with(&format!("{base}/"))) {
        return Err(format!("{uri_path} resolves outside {base}: {resolved}"));
    }
    Ok(())
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
        if let Err(why) = resolves_inside("/base", p) {
            prop_assert!(false, "{}", why);
        }
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
