//! Request target → upstream URI, then the grant check, as the proxy's
//! `route` and `authorize` phases run them, against one fixed connector
//! (`stripe` → `https://api.example.com/base/v1`), on the shared listener
//! (`/stripe/...`) and on a dedicated one (the whole path is the rest).
//!
//! Input: byte 0 picks the method and HTTP version, the rest is the target.
//! Invariants for every target that is forwarded:
//! - scheme and host are the connector's; the query is passed unchanged;
//! - the path is the base path plus the rest, with no empty segment and no
//!   dot segment, also after percent-decoding (`%2e`, `%2f`), so resolving
//!   it as an upstream would never leaves the base path;
//! - grant matching never panics and agrees with what each pattern means,
//!   on exactly the path that is forwarded;
//! - `%2F` is forwarded only where the connector allows it.

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{Method, Request, Version};
use keygate::fuzzing::{
    Grant, PathPattern, Role, Upstream, allows, check_target, split_connector, upstream_uri,
};
use libfuzzer_sys::fuzz_target;

const CONNECTOR: &str = "stripe";
const BASE: &str = "/base/v1";
const PATTERNS: &[&str] = &[
    "/v1/charges/**",
    "/v1/customers/*",
    "/**",
    "/**/refunds/**",
    "/a/*/b/**/c",
];

fn upstream() -> Upstream {
    Upstream {
        scheme: Scheme::HTTPS,
        authority: Authority::from_static("api.example.com"),
        base_path: BASE.to_string(),
    }
}

fn roles() -> BTreeMap<String, Arc<Role>> {
    let role = |name: &str, pattern: &str, methods: Option<Vec<Method>>| {
        let paths = vec![PathPattern::parse(pattern).expect("pattern")];
        (
            name.to_string(),
            Arc::new(Role {
                name: name.to_string(),
                description: None,
                admin: false,
                grants: vec![Grant {
                    connector: CONNECTOR.to_string(),
                    methods,
                    paths: Some(paths),
                }],
            }),
        )
    };
    PATTERNS
        .iter()
        .enumerate()
        .map(|(i, p)| role(&format!("r{i}"), p, None))
        .chain([role("get-only", "/**", Some(vec![Method::GET]))])
        .collect()
}

fn unhex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Lossy percent-decoding: what a lenient upstream might do to the path.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let esc = (b[i] == b'%')
            .then(|| Some(unhex(*b.get(i + 1)?)? << 4 | unhex(*b.get(i + 2)?)?))
            .flatten();
        match esc {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The segments an upstream would see after decoding `%2f` and treating
/// `\` as `/` too (both lenient habits of real servers).
fn lenient_segments(path: &str) -> Vec<Vec<u8>> {
    decode(path)
        .split(|b| *b == b'/' || *b == b'\\')
        .map(<[u8]>::to_vec)
        .collect()
}

fn check_forwarded(uri: &http::Uri, rest: &str, query: Option<&str>, allow_encoded_slash: bool) {
    if !allow_encoded_slash {
        assert!(!rest.contains("%2F"), "an encoded slash passed in {rest}");
    }
    assert_eq!(uri.scheme(), Some(&Scheme::HTTPS));
    assert_eq!(uri.authority().map(|a| a.as_str()), Some("api.example.com"));
    assert_eq!(uri.query(), query);
    let path = uri.path();
    assert_eq!(path, format!("{BASE}{rest}"), "the rest is appended as is");
    assert!(!path.contains("//"), "empty segment in {path}");
    let segs = lenient_segments(path);
    // segs[0] is the empty string before the leading slash.
    for seg in &segs[1..] {
        assert!(seg != b"." && seg != b"..", "dot segment in {path}");
    }
    let base: Vec<Vec<u8>> = lenient_segments(BASE);
    assert_eq!(&segs[..base.len()], &base[..], "{path} left {BASE}");
    // Serialised and parsed again (as the request line is), the host holds.
    let again: http::Uri = uri.to_string().parse().expect("reparse");
    assert_eq!(again.authority(), uri.authority());
    assert_eq!(again.path(), path);
}

fn check_grants(roles: &BTreeMap<String, Arc<Role>>, method: &Method, rest: &str) {
    let segs: Vec<&str> = rest
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
        .map_or_else(Vec::new, |r| r.split('/').collect());
    for (i, pattern) in PATTERNS.iter().enumerate() {
        let name = format!("r{i}");
        let held = [name];
        let ok = allows(roles, &held, CONNECTOR, method, rest);
        let meant = match *pattern {
            "/v1/charges/**" => segs.len() >= 2 && segs[..2] == ["v1", "charges"],
            "/v1/customers/*" => {
                segs.len() == 3 && segs[..2] == ["v1", "customers"] && !segs[2].is_empty()
            }
            "/**" => true,
            "/**/refunds/**" => segs.contains(&"refunds"),
            "/a/*/b/**/c" => {
                segs.len() >= 4
                    && segs[0] == "a"
                    && !segs[1].is_empty()
                    && segs[2] == "b"
                    && segs.last() == Some(&"c")
            }
            other => unreachable!("no oracle for {other}"),
        };
        assert_eq!(ok, meant, "{pattern} on {rest}");
        // Another connector's request never matches this connector's grant.
        assert!(!allows(roles, &held, "other", method, rest));
    }
    let get_only = ["get-only".to_string()];
    assert_eq!(
        allows(roles, &get_only, CONNECTOR, method, rest),
        method == Method::GET
    );
    assert!(
        !allows(roles, &[], CONNECTOR, method, rest),
        "deny by default"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, target)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let method = [
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
    ][usize::from(pick & 7) % 5]
        .clone();
    let version = if pick & 8 == 0 {
        Version::HTTP_11
    } else {
        Version::HTTP_2
    };
    let Ok(req) = Request::builder()
        .method(method.clone())
        .version(version)
        .uri(target)
        .body(())
    else {
        return;
    };
    let Ok(checked) = check_target(&req) else {
        return;
    };
    assert!(method != Method::CONNECT);
    // Bit 4 of the first byte: the connector admits `%2F` inside a segment.
    let allow_encoded_slash = pick & 16 != 0;
    let path = checked.as_str();
    let query = req.uri().query();
    let up = upstream();
    let roles = roles();
    // The shared listener: `/stripe/...`; other names are unknown connectors.
    if let Some((name, rest)) = checked.split_connector() {
        assert!(!name.is_empty() && !name.contains('/'));
        assert_eq!(split_connector(path).map(|(n, _)| n), Some(name));
        if name == CONNECTOR
            && let Ok(fwd) = rest.forward(allow_encoded_slash)
            && let Ok(uri) = upstream_uri(&up, &fwd, query)
        {
            assert_eq!(format!("/{name}{}", fwd.as_str()), path);
            check_forwarded(&uri, fwd.as_str(), query, allow_encoded_slash);
            let rest = if fwd.as_str().is_empty() {
                "/"
            } else {
                fwd.as_str()
            };
            check_grants(&roles, &method, rest);
        }
    }
    // A dedicated listener: the whole path is the rest.
    if let Ok(fwd) = checked.whole().forward(allow_encoded_slash)
        && let Ok(uri) = upstream_uri(&up, &fwd, query)
    {
        assert_eq!(fwd.as_str(), path);
        check_forwarded(&uri, fwd.as_str(), query, allow_encoded_slash);
        check_grants(&roles, &method, fwd.as_str());
    }
});
