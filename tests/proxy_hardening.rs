//! Hardening of the proxy path (issue 10) against a real keygate process
//! and a real recording upstream: `auth: none` connectors exist only on
//! their own loopback port, path spellings that upstreams resolve
//! differently are refused, grants see the forwarded path, callers' proxy
//! credentials stay home, and a many-`**` grant is cheap on a long path.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Gateway, Reply, Upstream, bearer, get, keygen, raw_request};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "sk_live_HARDENING_5150";

struct Keys {
    full: String,
    bucket: String,
}

fn yaml(upstream: &str, full_hash: &str, bucket_hash: &str, extra: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  secret: {{ value: {{ literal: "{SECRET}" }}, prefix: Bearer, header: Authorization }}
connectors:
  api:
    upstream: {upstream}/base
    tokens: [secret]
  objects:
    upstream: {upstream}/store
    tokens: [secret]
    allow_encoded_slash: true
  open:
    upstream: {upstream}
    tokens: [secret]
    listen: 127.0.0.1:0
    auth: none
{extra}
roles:
  all:
    allow:
      - connector: api
      - connector: objects
      - connector: open
  bucket:
    allow:
      - connector: api
        paths: ["/bucket/*", "/**/a/**/b/**/c/**/d"]
      - connector: objects
        paths: ["/bucket/*"]
clients:
  full: {{ roles: [all], keys: [ {{ name: k, sha256: "{full_hash}" }} ] }}
  bucket: {{ roles: [bucket], keys: [ {{ name: k, sha256: "{bucket_hash}" }} ] }}
"#
    )
}

async fn setup(extra: &str) -> (Gateway, Upstream, Keys, (String, String)) {
    let up = Upstream::start().await;
    let (full, h1) = keygen("kg_");
    let (bucket, h2) = keygen("kg_");
    let mut gw = Gateway::start(&yaml(&up.url(), &h1, &h2, extra));
    gw.secrets = vec![SECRET.into(), full.clone(), bucket.clone()];
    (gw, up, Keys { full, bucket }, (h1, h2))
}

/// Everything a caller can observe of an answer, minus the `Date`.
fn observable(r: &Reply) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| *k != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_string()))
        .collect();
    headers.sort();
    (r.status, headers, r.body.to_vec())
}

#[tokio::test]
async fn auth_none_connector_is_invisible_on_the_shared_listener() {
    let (gw, up, keys, _) = setup("").await;
    let rid = [("x-request-id", "same-id-1")];
    let nonexistent = get(&gw.url("/no-such-connector/x"), &rid).await;
    assert_eq!(nonexistent.status, StatusCode::NOT_FOUND);
    assert_eq!(
        nonexistent.error_code().as_deref(),
        Some("unknown_connector")
    );
    for path in ["/open/x", "/open", "/open/v1/charges?a=1"] {
        let open = get(&gw.url(path), &rid).await;
        assert_eq!(
            observable(&open),
            observable(&nonexistent),
            "{path}: an auth: none connector must answer like a nonexistent one on the shared listener"
        );
    }
    // A valid key changes nothing: the connector is not there.
    let auth = bearer(&keys.full);
    let with_key = get(&gw.url("/open/x"), &[("authorization", &auth)]).await;
    assert_eq!(with_key.status, StatusCode::NOT_FOUND);
    assert_eq!(with_key.error_code().as_deref(), Some("unknown_connector"));
    assert!(
        up.requests().is_empty(),
        "nothing reached the upstream through the shared listener"
    );
    // Its own loopback port serves it without a key.
    let open = gw.connectors["open"];
    let r = get(&format!("http://{open}/x"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {SECRET}"))
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn a_reload_cannot_put_an_auth_none_connector_on_the_shared_listener() {
    let (gw, up, keys, (h1, h2)) = setup("").await;
    // `server.listen` moves to another loopback address (which needs a
    // restart) and a keyless connector arrives without its own port: the
    // old rule accepted this against the new, unbound address.
    let sneaky = format!(
        "  sneaky: {{ upstream: \"{}\", tokens: [secret], auth: none }}",
        up.url()
    );
    let text = yaml(&up.url(), &h1, &h2, &sneaky).replacen(
        "listen: 127.0.0.1:0, shutdown_grace",
        "listen: 127.0.0.1:1, shutdown_grace",
        1,
    );
    gw.write_config(&text);
    assert!(
        gw.wait_log("config reload rejected", 5),
        "{}",
        gw.stderr_text()
    );
    assert!(gw.wait_log("needs a dedicated loopback", 1));
    let r = get(&gw.url("/sneaky/x"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("unknown_connector"));
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    // The last good config keeps serving.
    let r = get(
        &gw.url("/api/v1/x"),
        &[("authorization", &bearer(&keys.full))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(gw.finish(), Some(0));
}

/// Sends one request on an open keep-alive connection and reads exactly
/// one response (head and `Content-Length` body).
async fn on_connection(conn: &mut tokio::net::TcpStream, target: &str) -> u16 {
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = conn.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before a full response");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("response in time")
}

#[tokio::test]
async fn a_released_dedicated_port_reaches_nothing_on_kept_alive_connections() {
    let (mut gw, up, _keys, (h1, h2)) = setup("").await;
    let old: SocketAddr = gw.connectors["open"];
    let mut conn = tokio::net::TcpStream::connect(old).await.expect("connect");
    assert_eq!(on_connection(&mut conn, "/first").await, 200);
    assert_eq!(up.last().uri, "/first");

    // The connector moves to another port; the old one is released, but
    // this connection stays open.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let moved = yaml(&up.url(), &h1, &h2, "").replace(
        "    listen: 127.0.0.1:0\n    auth: none",
        &format!("    listen: {free}\n    auth: none"),
    );
    gw.write_config(&moved);
    assert!(gw.wait_log("config reloaded", 5), "{}", gw.stderr_text());
    assert!(gw.wait_log("connector listener closed", 5));
    gw.refresh_connectors();
    assert_eq!(gw.connectors["open"], free);

    let before = up.requests().len();
    assert_eq!(
        on_connection(&mut conn, "/second").await,
        404,
        "a connection on the released port must not reach the connector"
    );
    assert_eq!(up.requests().len(), before);
    let r = get(&format!("http://{free}/third"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    drop(conn);
    assert_eq!(gw.finish(), Some(0));
}

async fn raw_get(addr: SocketAddr, target: &str, key: &str) -> (u16, String) {
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    raw_request(addr, &req).await
}

/// A keyless GET on `addr` with exactly these extra header lines.
async fn raw_with(addr: SocketAddr, target: &str, headers: &str) -> (u16, String) {
    let req = format!("GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    raw_request(addr, &req).await
}

#[tokio::test]
async fn an_auth_none_port_refuses_what_a_browser_page_could_send() {
    let (gw, up, keys, _) = setup("").await;
    let open = gw.connectors["open"];
    let port = open.port();
    // DNS rebinding keeps the page's host name in `Host`; a page's fetch
    // carries `Origin` or `Sec-Fetch-Site`.
    for headers in [
        format!("Host: evil.example:{port}\r\n"),
        "Host: evil.example\r\n".to_string(),
        format!("Host: 127.0.0.1.nip.io:{port}\r\n"),
        format!("Host: localhost:{port}\r\nOrigin: https://evil.example\r\n"),
        format!("Host: 127.0.0.1:{port}\r\nOrigin: null\r\n"),
        format!("Host: 127.0.0.1:{port}\r\nSec-Fetch-Site: cross-site\r\n"),
        format!("Host: localhost:{port}\r\nSec-Fetch-Site: same-site\r\n"),
    ] {
        let (status, text) = raw_with(open, "/v1/x", &headers).await;
        assert_eq!(status, 403, "{headers:?}: {text}");
        assert!(text.contains("keygate-error: forbidden"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    assert!(
        up.requests().is_empty(),
        "nothing a browser could send reached the upstream"
    );
    // Local programs are served, by name or by loopback literal.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ] {
        let (status, text) = raw_with(open, "/v1/ok", &format!("Host: {host}\r\n")).await;
        assert_eq!(status, 200, "{host}: {text}");
        assert_eq!(
            up.last().header("authorization"),
            Some(format!("Bearer {SECRET}"))
        );
    }
    let served = up.requests().len();
    assert_eq!(served, 4);
    // `auth: api_key` connectors are unaffected: a page cannot forge a key.
    let headers = format!(
        "Host: evil.example\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nAuthorization: Bearer {}\r\n",
        keys.full
    );
    let (status, text) = raw_with(gw.proxy, "/api/v1/x", &headers).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(up.requests().len(), served + 1);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn path_spellings_that_upstreams_resolve_differently_are_refused() {
    let (gw, up, keys, _) = setup("").await;
    let refused = [
        "..;",
        "..;x=1",
        "%2e%2e;",
        ".%2e",
        "%2e.",
        "%2E%2E",
        "%252e%252e",
        "%252E%252E;",
        "a%252fb",
        "a%252Fb",
        "a%2Fb",
        "a%2fb",
        "a%5Cb",
        "a%5cb",
        "a%255cb",
        "a\\b",
        "..\\x",
        // Windows trims trailing dots and spaces: `.. .` and `. .` are
        // `..` and `.` there (a raw space cannot be on the request line).
        "..%20.",
        "%2e%2e%20%2e",
        ".%20.",
        // Overlong UTF-8 for `.` (2, 3 and 4 bytes) and other invalid UTF-8.
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae",
        "%f0%80%80%ae%f0%80%80%ae",
        "%ff",
        // Look-alikes that NFKC or "best fit" mappings fold to `.`, `/`, `\`.
        "%ef%bc%8e%ef%bc%8e",
        "a%ef%bc%8fb",
        "a%e2%88%95b",
        "a%e2%81%84b",
        "a%ef%b9%a8b",
        "a%ef%bc%bcb",
        "%e2%80%a5",
    ];
    for spelling in refused {
        for target in [
            format!("/api/v1/{spelling}/admin"),
            format!("/api/{spelling}"),
        ] {
            let (status, text) = raw_get(gw.proxy, &target, &keys.full).await;
            assert_eq!(status, 400, "{target}: {text}");
            assert!(
                text.contains("keygate-error: bad_request"),
                "{target}: {text}"
            );
        }
    }
    // The connector that admits %2F admits nothing else of the list.
    for spelling in refused.iter().filter(|s| !matches!(**s, "a%2Fb" | "a%2fb")) {
        let target = format!("/objects/bucket/{spelling}");
        let (status, text) = raw_get(gw.proxy, &target, &keys.full).await;
        assert_eq!(status, 400, "{target}: {text}");
    }
    // On a dedicated port the whole path is checked the same way.
    let open = gw.connectors["open"];
    for spelling in ["..;", "%252e%252e", "a%2Fb", "a%5Cb"] {
        let (status, text) = raw_get(open, &format!("/{spelling}/x"), "none").await;
        assert_eq!(status, 400, "{spelling}: {text}");
    }
    assert!(
        up.requests().is_empty(),
        "no refused spelling reached the upstream"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn encoded_slash_stays_inside_one_segment_for_grants_and_upstream() {
    let (gw, up, keys, _) = setup("").await;
    // Where admitted, %2F is forwarded as sent (in normal form), and the
    // grant's `*` sees one segment, like the upstream.
    for (sent, forwarded) in [
        ("/objects/bucket/a%2Fb", "/store/bucket/a%2Fb"),
        ("/objects/bucket/a%2fb%2Fc", "/store/bucket/a%2Fb%2Fc"),
        ("/objects/bucket/%7Euser", "/store/bucket/~user"),
    ] {
        let (status, text) = raw_get(gw.proxy, sent, &keys.bucket).await;
        assert_eq!(status, 200, "{sent}: {text}");
        assert_eq!(up.last().uri, forwarded);
    }
    let (status, text) = raw_get(gw.proxy, "/objects/bucket/a/b", &keys.bucket).await;
    assert_eq!(status, 403, "two segments are not `*`: {text}");
    // Without allow_encoded_slash, `*` could only have matched `a%2Fb` as
    // one segment while an upstream that decodes sees two: refused.
    let (status, text) = raw_get(gw.proxy, "/api/bucket/a%2Fb", &keys.bucket).await;
    assert_eq!(status, 400, "{text}");
    let (status, _) = raw_get(gw.proxy, "/api/bucket/ab", &keys.bucket).await;
    assert_eq!(status, 200);
    assert_eq!(up.last().uri, "/base/bucket/ab");
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn proxy_authorization_is_never_forwarded() {
    let (gw, up, keys, _) = setup("").await;
    let auth = bearer(&keys.full);
    let r = get(
        &gw.url("/api/v1/x"),
        &[
            ("authorization", &auth),
            ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = up.last();
    assert!(seen.header("proxy-authorization").is_none());
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SECRET}"))
    );
    // Also where no key is read at all.
    let open = gw.connectors["open"];
    let r = get(
        &format!("http://{open}/y"),
        &[("proxy-authorization", "Basic cHJveHk6c2VjcmV0")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(up.last().header("proxy-authorization").is_none());
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn many_double_star_grant_answers_a_long_path() {
    let (gw, up, keys, _) = setup("").await;
    let auth = bearer(&keys.bucket);
    // 10 002 segments holding every literal of `/**/a/**/b/**/c/**/d` but
    // the last: the old recursive matcher needed ~10^14 steps here, so
    // this request never got an answer.
    let long = "/a/b/c".repeat(3_334);
    let r = get(&gw.url(&format!("/api{long}")), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(
        &gw.url(&format!("/api{long}/d")),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.requests().len(), 1);
    assert_eq!(gw.finish(), Some(0));
}

/// Found by the `rewrite` fuzz target: raw UTF-8 right after a
/// percent-escape made the path's normal form slice inside a character,
/// a panic that dropped the connection. It must get an answer like any
/// other path: forwarded as sent, escapes in normal form.
#[tokio::test]
async fn raw_utf8_after_an_escape_is_answered_not_a_panic() {
    let (gw, up, keys, _) = setup("").await;
    for (sent, forwarded) in [
        (
            "/api/users/\u{462}%7e\u{462}",
            "/base/users/\u{462}~\u{462}",
        ),
        ("/api/a%41\u{462}/b", "/base/aA\u{462}/b"),
        ("/api/\u{462}%2c\u{462}", "/base/\u{462}%2C\u{462}"),
    ] {
        let (status, text) = raw_get(gw.proxy, sent, &keys.full).await;
        assert_eq!(status, 200, "{sent}: {text}");
        assert_eq!(up.last().uri, forwarded, "{sent}");
    }
    assert_eq!(gw.finish(), Some(0));
}
