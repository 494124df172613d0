//! Connection limits (issue 10, defect 5) against the real binary: sockets
//! that send nothing or dribble are closed after `header_read_timeout`,
//! idle keep-alive connections after `idle_timeout`, a flood of idle
//! sockets parks in the backlog past `max_connections` while the admin
//! port and token fetches keep working, oversized heads are refused, and
//! HTTP/2 advertises its stream and header limits.
//!
//! Waits are bounded and generous (a 1 s timeout must act within 15 s);
//! nothing asserts how fast.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, JsonServer, Upstream, bearer, get, keygen, raw_request};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for a 1 s server timeout to have acted.
const BOUND: Duration = Duration::from_secs(15);

/// A gateway with `limits` spliced into `server:`, one `http_request`
/// token from `token_url`, a connector on the shared listener (`api`) and
/// one on a dedicated port (`side`). Returns it and a key for both.
fn start(limits: &str, upstream: &str, token_url: &str) -> (Gateway, String) {
    start_in(limits, upstream, token_url, |_| {})
}

/// `start`, with a hook to place files (certificates) in the config folder.
fn start_in(
    limits: &str,
    upstream: &str,
    token_url: &str,
    prepare: impl FnOnce(&std::path::Path),
) -> (Gateway, String) {
    let (key, hash) = keygen("kg_");
    let yaml = format!(
        r#"
server:
  listen: 127.0.0.1:0
  shutdown_grace: 5s
{limits}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  partner:
    type: http_request
    request: {{ method: POST, url: "{token_url}", form: {{ grant_type: client_credentials }} }}
    response: {{ token: /access_token, expires_in: /expires_in }}
    prefix: Bearer
    header: Authorization
connectors:
  api: {{ upstream: "{upstream}", tokens: [partner] }}
  side: {{ upstream: "{upstream}", tokens: [partner], listen: 127.0.0.1:0 }}
roles: {{ r: {{ allow: [ {{ connector: api }}, {{ connector: side }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#
    );
    let mut gw = Gateway::start_with(&yaml, &[], prepare);
    gw.secrets.push(key.clone());
    (gw, key)
}

/// Token endpoint answering `tok-N`, valid for an hour.
async fn token_endpoint() -> JsonServer {
    JsonServer::start(Arc::new(|n, _| {
        (
            200,
            format!(r#"{{"access_token":"tok-{n}","expires_in":3600}}"#),
        )
    }))
    .await
}

/// Reads until the server closes the socket; whether that happened within
/// `BOUND`. A reset counts as closed.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(BOUND, wait).await.is_ok()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn silent_and_dribbling_sockets_are_closed_on_every_listener() {
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    let limits = "  max_connections: 20\n  header_read_timeout: 1s\n";
    let (gw, _key) = start(limits, &up.url(), &ep.url("/token"));
    let side = gw.connectors["side"];

    // Twice the connection limit of silent sockets on the proxy port, and
    // one each on the admin and dedicated ports.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(connect(gw.proxy).await);
    }
    silent.push(connect(gw.admin).await);
    silent.push(connect(side).await);
    let closes = silent.iter_mut().map(closed_by_server);
    let results = futures_util::future::join_all(closes).await;
    let open = results.iter().filter(|closed| !**closed).count();
    assert_eq!(open, 0, "{open} silent sockets were still open");

    // A slowloris: a request head that never ends, one line every 200 ms.
    let mut drip = connect(gw.proxy).await;
    drip.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let dripping = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if drip
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut byte = [0u8; 1];
            // The server closing shows up as EOF (or a reset) on read.
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), drip.read(&mut byte)).await
            {
                return;
            }
        }
    };
    assert!(
        tokio::time::timeout(BOUND, dripping).await.is_ok(),
        "a dribbled head was not cut off"
    );

    // Still serving after all that.
    let r = get(&gw.admin_url("/healthz"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn tls_sockets_silent_before_or_after_the_handshake_are_closed() {
    use rustls::pki_types::ServerName;
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    let (ca, cert, key_pem) = common::upstream::make_certs();
    let limits = "  header_read_timeout: 1s\n  tls: { cert: cert.pem, key: key.pem }\n";
    let (gw, _key) = start_in(limits, &up.url(), &ep.url("/token"), |dir| {
        std::fs::write(dir.join("cert.pem"), &cert).expect("cert");
        std::fs::write(dir.join("key.pem"), &key_pem).expect("key");
    });

    // No ClientHello at all.
    let mut silent = connect(gw.proxy).await;
    assert!(
        closed_by_server(&mut silent).await,
        "silent TLS socket kept"
    );

    // A full handshake, then no request: the deadline runs from accept,
    // not from the end of the handshake.
    let cfg = common::tls_client_config(&ca);
    let name = ServerName::try_from("localhost").expect("name");
    let tcp = connect(gw.proxy).await;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let mut buf = [0u8; 1024];
    let wait = async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    assert!(
        tokio::time::timeout(BOUND, wait).await.is_ok(),
        "a TLS connection without a request was kept open"
    );
    assert_eq!(gw.finish(), Some(0));
}

/// Reads `keygate_open_connections` (every listener) over `admin`.
async fn open_connections(admin: &mut AdminConn) -> u64 {
    let r = admin_send(admin, Method::GET, "/metrics", None).await;
    assert_eq!(r.0, StatusCode::OK);
    r.1.lines()
        .find_map(|l| l.strip_prefix("keygate_open_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no keygate_open_connections in /metrics:\n{}", r.1))
}

type AdminConn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One request on the kept-alive admin connection: (status, body).
#[expect(
    clippy::disallowed_methods,
    reason = "drains small admin answers the test asked for"
)]
async fn admin_send(
    admin: &mut AdminConn,
    method: Method,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, String) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let req = b.body(Full::new(Bytes::new())).expect("request");
    let resp = tokio::time::timeout(BOUND, admin.send_request(req))
        .await
        .expect("admin answered in time")
        .expect("admin request");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_flood_of_idle_sockets_waits_in_the_backlog_while_admin_and_tokens_work() {
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    // A header timeout longer than the test: the flood stays until dropped.
    let limits = "  max_connections: 20\n  header_read_timeout: 60s\n";
    let (gw, key) = start(limits, &up.url(), &ep.url("/token"));
    let auth = bearer(&key);

    // An established keep-alive connection, opened before the flood.
    let io = TokioIo::new(connect(gw.proxy).await);
    let (mut early, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let early_get = |path: &str| {
        Request::get(path)
            .header("host", "keygate")
            .header("authorization", &auth)
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let r = early.send_request(early_get("/api/before")).await;
    assert_eq!(r.expect("first request").status(), StatusCode::OK);
    // Every admin request of this test goes over this one connection, so
    // the admin listener holds exactly one in the gauge.
    let io = TokioIo::new(connect(gw.admin).await);
    let (mut admin, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("admin handshake");
    tokio::spawn(conn);

    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(connect(gw.proxy).await);
    }
    // A new proxy connection is behind the flood in the backlog.
    let url = gw.url("/api/after");
    let late = tokio::spawn({
        let auth = auth.clone();
        async move { get(&url, &[("authorization", &auth)]).await }
    });

    // The proxy accepts exactly `max_connections` (the early connection and
    // 19 of the flood), the admin listener holds our one: 21. A broken
    // limit accepts all 42 proxy connections in one burst, so the first
    // reading at or past 21 is already too high.
    let want = 20 + 1;
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut seen = open_connections(&mut admin).await;
    while seen < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood was not accepted up to max_connections: {seen} open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = open_connections(&mut admin).await;
    }
    assert_eq!(seen, want, "connections past max_connections were accepted");

    // The admin port has its own slots; a token fetch goes out.
    let admin_key = common::initial_admin_key(&gw);
    let r = admin_send(&mut admin, Method::GET, "/healthz", None).await;
    assert_eq!(r.0, StatusCode::OK);
    let fetched = ep.hits();
    let r = admin_send(
        &mut admin,
        Method::POST,
        "/api/v1/tokens/partner/refresh",
        Some(&bearer(&admin_key)),
    )
    .await;
    assert!(r.0.is_success(), "{} {}", r.0, r.1);
    assert!(
        ep.hits() > fetched,
        "the refresh reached the token endpoint"
    );
    // The connection opened before the flood is unharmed.
    let r = early.send_request(early_get("/api/during")).await;
    assert_eq!(r.expect("request during flood").status(), StatusCode::OK);

    // Still held at the limit after all that; the late request was not
    // served (the upstream never saw it).
    assert_eq!(
        open_connections(&mut admin).await,
        want,
        "connections past max_connections were accepted"
    );
    assert!(
        !up.requests().iter().any(|r| r.uri == "/after"),
        "a connection past max_connections was served"
    );

    drop(flood);
    let r = tokio::time::timeout(BOUND, late)
        .await
        .expect("the waiting connection was served once the flood left")
        .expect("join");
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(up.last().uri, "/after");
    let used = up.last().header("authorization").expect("token injected");
    assert!(used.starts_with("Bearer tok-"), "{used}");

    drop(admin);
    let mut gw = gw;
    gw.secrets.push(admin_key);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "drains small responses the test asked for"
)]
async fn idle_keep_alive_connections_are_closed() {
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    let limits = "  header_read_timeout: 1s\n  idle_timeout: 1s\n  h2_keep_alive_interval: 1s\n";
    let (gw, key) = start(limits, &up.url(), &ep.url("/token"));
    let req = |uri: String| {
        Request::get(uri)
            .header("host", "keygate")
            .header("authorization", bearer(&key))
            .body(Full::new(Bytes::new()))
            .expect("request")
    };

    // h2c by prior knowledge: one request, then nothing. The client
    // answers the server's PINGs, so only the idle timeout can end it.
    let io = TokioIo::new(connect(gw.proxy).await);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    let h2_conn = tokio::spawn(conn);
    let r = h2
        .send_request(req(gw.url("/api/h2")))
        .await
        .expect("h2 request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), http::Version::HTTP_2);
    let _ = r.into_body().collect().await;
    let ended = tokio::time::timeout(BOUND, h2_conn).await;
    assert!(ended.is_ok(), "an idle h2c connection was kept open");

    // HTTP/1.1 keep-alive: the same.
    let io = TokioIo::new(connect(gw.proxy).await);
    let (mut h1, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("h1 handshake");
    let h1_conn = tokio::spawn(conn);
    let r = h1
        .send_request(req("/api/h1".to_string()))
        .await
        .expect("h1 request");
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.into_body().collect().await;
    let ended = tokio::time::timeout(BOUND, h1_conn).await;
    assert!(ended.is_ok(), "an idle HTTP/1.1 connection was kept open");
    drop((h1, h2));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    let (gw, key) = start("  max_header_size: 8KiB\n", &up.url(), &ep.url("/token"));
    let auth = bearer(&key);
    let small = "a".repeat(4 << 10);
    let big = "a".repeat(12 << 10);

    // HTTP/1.1: 431 (RFC 6585 §5) over the limit, served under it.
    let head = |filler: &str| {
        format!(
            "GET /api/h1 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
        )
    };
    let (status, _) = raw_request(gw.proxy, &head(&small)).await;
    assert_eq!(status, 200);
    let (status, _) = raw_request(gw.proxy, &head(&big)).await;
    assert_eq!(status, 431);
    let (status, _) = raw_request(gw.connectors["side"], &head(&big).replace("/api", "")).await;
    assert_eq!(status, 431, "the dedicated port has the same limit");

    // HTTP/2: the server answers 431, or the client refuses to send what
    // the server's SETTINGS_MAX_HEADER_LIST_SIZE forbids.
    let io = TokioIo::new(connect(gw.proxy).await);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let req = |filler: &str| {
        Request::get(gw.url("/api/h2"))
            .header("authorization", &auth)
            .header("x-filler", filler)
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let r = h2
        .send_request(req(&small))
        .await
        .expect("small h2 request");
    assert_eq!(r.status(), StatusCode::OK);
    match h2.send_request(req(&big)).await {
        Ok(r) => assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(
            format!("{e:?}").to_lowercase().contains("header"),
            "unexpected h2 error: {e:?}"
        ),
    }
    assert_eq!(up.requests().len(), 2, "no oversized head reached upstream");
    assert_eq!(gw.finish(), Some(0));
}

/// HTTP/2 frame header: length (24 bits), type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("len").to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;

/// Reads one frame: (type, flags, stream, payload).
async fn read_frame(s: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).await.expect("frame header");
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("frame payload");
    (h[3], h[4], stream, payload)
}

/// The server's first SETTINGS frame, as (identifier, value) pairs.
async fn server_settings(addr: SocketAddr) -> Vec<(u16, u32)> {
    let mut s = connect(addr).await;
    s.write_all(PREFACE).await.expect("preface");
    s.write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let read = async {
        loop {
            let (kind, flags, _, payload) = read_frame(&mut s).await;
            if kind == SETTINGS && flags & ACK == 0 {
                return payload
                    .chunks_exact(6)
                    .map(|p| {
                        (
                            u16::from_be_bytes([p[0], p[1]]),
                            u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                        )
                    })
                    .collect::<Vec<_>>();
            }
        }
    };
    tokio::time::timeout(BOUND, read).await.expect("SETTINGS")
}

/// RFC 9113 §6.5.2 identifiers.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;

#[tokio::test]
async fn h2_advertises_stream_and_header_limits() {
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    let limits = "  max_concurrent_streams: 5\n  max_header_size: 8KiB\n";
    let (gw, _key) = start(limits, &up.url(), &ep.url("/token"));
    for addr in [gw.proxy, gw.admin, gw.connectors["side"]] {
        let settings = server_settings(addr).await;
        assert!(
            settings.contains(&(MAX_CONCURRENT_STREAMS, 5)),
            "{addr}: {settings:?}"
        );
        assert!(
            settings.contains(&(MAX_HEADER_LIST_SIZE, 8 << 10)),
            "{addr}: {settings:?}"
        );
    }
    assert_eq!(gw.finish(), Some(0));
}

/// An HPACK header block of literal fields without indexing (RFC 7541
/// §6.2.2), short enough for one-byte lengths.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        block.push(u8::try_from(name.len()).expect("short name"));
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
/// RFC 9113 §7.
const REFUSED_STREAM: u32 = 0x7;

#[tokio::test]
async fn h2_streams_past_the_limit_are_refused() {
    let up = Upstream::start().await;
    let ep = token_endpoint().await;
    let (gw, key) = start(
        "  max_concurrent_streams: 2\n",
        &up.url(),
        &ep.url("/token"),
    );
    let auth = bearer(&key);

    // A client that ignores the advertised limit: three slow requests at
    // once on streams 1, 3 and 5.
    let mut s = connect(gw.proxy).await;
    s.write_all(PREFACE).await.expect("preface");
    s.write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    s.write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .expect("ack");
    for stream in [1, 3, 5] {
        let block = hpack(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "keygate"),
            (":path", "/api/slow/2000"),
            ("authorization", &auth),
        ]);
        let f = frame(HEADERS, END_STREAM_AND_HEADERS, stream, &block);
        s.write_all(&f).await.expect("headers");
    }
    let outcome = async {
        let (mut answered, mut refused) = (Vec::new(), Vec::new());
        while answered.len() + refused.len() < 3 {
            let (kind, _, stream, payload) = read_frame(&mut s).await;
            match kind {
                HEADERS => answered.push(stream),
                RST_STREAM => {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    refused.push((stream, code));
                }
                _ => {}
            }
        }
        (answered, refused)
    };
    let (answered, refused) = tokio::time::timeout(BOUND, outcome)
        .await
        .expect("every stream answered or refused");
    assert_eq!(refused, vec![(5, REFUSED_STREAM)], "answered: {answered:?}");
    answered.iter().for_each(|id| assert!([1, 3].contains(id)));
    assert_eq!(
        up.requests().len(),
        2,
        "the refused stream never went upstream"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn huge_durations_that_are_not_bounded_never_reach_an_instant_sum() {
    // shutdown_grace and the connector timeouts go to tokio's
    // `timeout`, which saturates; nothing adds them to an `Instant`. A
    // guard that it stays so: the request is served and SIGTERM drains.
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let huge = "10000000000000000000s";
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: {huge} }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "huge-durations" }}, prefix: Bearer, header: Authorization }}
connectors:
  api:
    upstream: "{up}"
    tokens: [t]
    timeouts: {{ connect: {huge}, response: {huge} }}
roles: {{ r: {{ allow: [ {{ connector: api }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        up = up.url()
    );
    let gw = Gateway::start(&yaml);
    let r = get(&gw.url("/api/x"), &[("authorization", &bearer(&key))]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = get(&gw.url("/api/y"), &[("authorization", &bearer(&key))]).await;
    assert_eq!(r.status, StatusCode::OK, "the serve task is still alive");
    assert!(
        !gw.stderr_text().contains("panicked"),
        "{}",
        gw.stderr_text()
    );
    assert_eq!(gw.finish(), Some(0));
}
