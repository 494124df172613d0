//! The proxy path (SPEC §3) against a real keygate process and a real
//! upstream: routing, caller auth, grants, outbound headers, every error
//! code, target escapes, and streaming bodies both ways.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::upstream::{pattern, sha256_hex};
use common::{Gateway, Upstream, bearer, get, keygen, raw_request, send};
use http::{Method, StatusCode};
use http_body_util::BodyExt;

const SECRET: &str = "sk_live_TESTSECRET_4242";
const ENV_SECRET: &str = "env-secret-value-777";

struct Keys {
    full: String,
    reader: String,
    nobody: String,
    expired: String,
}

fn config(upstream: &str, extra: &str) -> (String, Keys) {
    let (full, h1) = keygen("kg_");
    let (reader, h2) = keygen("kg_");
    let (nobody, h3) = keygen("kg_");
    let (expired, h4) = keygen("kg_");
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 10s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  secret: {{ value: {{ literal: "{SECRET}" }}, prefix: Bearer, header: Authorization }}
  apikey: {{ value: {{ env: KG_TEST_APIKEY }}, header: X-API-Key }}
  unset: {{ value: {{ env: KG_TEST_DEFINITELY_UNSET }}, header: X-Other }}
connectors:
  api:
    upstream: {upstream}/base
    tokens: [secret, apikey]
    headers: {{ Stripe-Version: "2024-06-20" }}
    max_request_body: 1MiB
    timeouts: {{ connect: 2s, response: 1s }}
  dedicated:
    upstream: {upstream}
    tokens: [secret]
    listen: 127.0.0.1:0
  open:
    upstream: {upstream}
    tokens: [secret]
    listen: 127.0.0.1:0
    auth: none
  broken:
    upstream: {upstream}
    tokens: [unset]
{extra}
roles:
  all:
    allow:
      - connector: api
      - connector: dedicated
      - connector: broken
      - connector: down
  readonly:
    allow:
      - connector: api
        methods: [GET]
        paths: ["/v1/charges/**", "/v1/customers/*"]
clients:
  full: {{ roles: [all], keys: [ {{ name: k, sha256: "{h1}" }} ] }}
  reader: {{ roles: [readonly], keys: [ {{ name: k, sha256: "{h2}" }} ] }}
  nobody: {{ keys: [ {{ name: k, sha256: "{h3}" }} ] }}
  expired: {{ roles: [all], keys: [ {{ name: k, sha256: "{h4}", expires: "2020-01-01T00:00:00Z" }} ] }}
"#
    );
    (
        yaml,
        Keys {
            full,
            reader,
            nobody,
            expired,
        },
    )
}

async fn setup() -> (Gateway, Upstream, Keys) {
    let up = Upstream::start().await;
    // A port with nothing listening: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let extra = format!("  down:\n    upstream: http://{dead}\n    tokens: [secret]\n");
    let (yaml, keys) = config(&up.url(), &extra);
    let mut gw = Gateway::start_with(&yaml, &[("KG_TEST_APIKEY", ENV_SECRET)], |_| {});
    gw.secrets = vec![
        SECRET.into(),
        ENV_SECRET.into(),
        keys.full.clone(),
        keys.reader.clone(),
        keys.nobody.clone(),
        keys.expired.clone(),
    ];
    (gw, up, keys)
}

#[tokio::test]
async fn forwards_with_injected_tokens_and_static_headers() {
    let (gw, up, keys) = setup().await;
    let auth = bearer(&keys.full);
    let r = get(
        &gw.url("/api/v1/things?limit=3&x=%20y"),
        &[("authorization", &auth), ("x-request-id", "caller-id-1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["x-request-id"], "caller-id-1");
    let seen = up.last();
    assert_eq!(seen.uri, "/base/v1/things?limit=3&x=%20y");
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some(&*format!("Bearer {SECRET}"))
    );
    assert_eq!(seen.header("x-api-key").as_deref(), Some(ENV_SECRET));
    assert_eq!(seen.header("stripe-version").as_deref(), Some("2024-06-20"));
    assert_eq!(seen.header("host").as_deref(), Some(&*up.addr.to_string()));
    assert_eq!(seen.header("x-request-id").as_deref(), Some("caller-id-1"));
    assert!(
        seen.header("x-forwarded-for").is_none(),
        "no X-Forwarded-For unless asked"
    );

    // Without a caller id, keygate makes one and returns it.
    let r = get(&gw.url("/api/v1/x"), &[("x-api-key", &keys.full)]).await;
    assert_eq!(r.status, StatusCode::OK);
    let rid = r.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(rid.len() >= 16);
    assert_eq!(up.last().header("x-request-id"), Some(rid));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn dedicated_listener_forwards_the_whole_path() {
    let (gw, up, keys) = setup().await;
    let addr = gw.connectors["dedicated"];
    let r = get(
        &format!("http://{addr}/v1/charges?a=1"),
        &[("authorization", &bearer(&keys.full))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(up.last().uri, "/v1/charges?a=1");
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {SECRET}"))
    );
    // auth: none on a loopback dedicated port needs no key.
    let open = gw.connectors["open"];
    let r = get(&format!("http://{open}/anything"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {SECRET}"))
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn caller_credentials_never_reach_upstream() {
    let (gw, up, keys) = setup().await;
    let r = get(
        &gw.url("/api/v1/x"),
        &[
            ("AUTHORIZATION", &bearer(&keys.full)),
            ("X-Api-Key", &keys.full),
            ("Keygate-Token-Whatever", "user-stuff"),
            ("connection", "x-hop-secret"),
            ("x-hop-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = up.last();
    let all: Vec<String> = seen
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    assert!(
        !all.iter().any(|h| h.contains(&keys.full)),
        "caller key leaked upstream: {all:?}"
    );
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(seen.headers.get_all("x-api-key").iter().count(), 1);
    assert_eq!(seen.header("x-api-key").as_deref(), Some(ENV_SECRET));
    assert!(seen.header("keygate-token-whatever").is_none());
    assert!(seen.header("x-hop-secret").is_none());
    assert!(seen.header("proxy-connection").is_none());
    assert_eq!(seen.header("host"), Some(up.addr.to_string()));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn both_key_headers_must_agree() {
    let (gw, _up, keys) = setup().await;
    let r = get(
        &gw.url("/api/v1/x"),
        &[
            ("authorization", &bearer(&keys.full)),
            ("x-api-key", &keys.reader),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code().as_deref(), Some("bad_request"));
    let r = get(
        &gw.url("/api/v1/x"),
        &[
            ("authorization", &bearer(&keys.full)),
            ("x-api-key", &keys.full),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn role_grants_limit_connector_method_and_path() {
    let (gw, up, keys) = setup().await;
    let reader = bearer(&keys.reader);
    let h = [("authorization", reader.as_str())];
    for (m, path, want) in [
        (Method::GET, "/api/v1/charges", StatusCode::OK),
        (Method::GET, "/api/v1/charges/ch_1/refunds", StatusCode::OK),
        (Method::GET, "/api/v1/customers/cus_1", StatusCode::OK),
        (
            Method::GET,
            "/api/v1/customers/cus_1/cards",
            StatusCode::FORBIDDEN,
        ),
        (Method::POST, "/api/v1/charges", StatusCode::FORBIDDEN),
        (Method::GET, "/api/v1/refunds", StatusCode::FORBIDDEN),
        (Method::GET, "/dedicated/v1/charges", StatusCode::FORBIDDEN),
    ] {
        let r = send(m.clone(), &gw.url(path), &h, Bytes::new()).await;
        assert_eq!(r.status, want, "{m} {path}");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(r.error_code().as_deref(), Some("forbidden"));
        }
    }
    let before = up.requests().len();
    let r = get(
        &gw.url("/api/v1/charges"),
        &[("authorization", &bearer(&keys.nobody))],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a client with no roles reaches nothing"
    );
    assert_eq!(
        up.requests().len(),
        before,
        "a refused request never reaches upstream"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn authentication_errors() {
    let (gw, up, keys) = setup().await;
    let r = get(&gw.url("/api/v1/x"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code().as_deref(), Some("missing_api_key"));
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer realm="keygate", error="invalid_token""#
    );
    let body = r.json();
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert_eq!(
        body["error"]["request_id"],
        r.headers["x-request-id"].to_str().expect("ascii")
    );

    // Well-formed but unknown, bad checksum, wrong prefix.
    let (unknown, _) = keygen("kg_");
    let mut typo = keys.full.clone();
    typo.replace_range(5..6, if &keys.full[5..6] == "a" { "b" } else { "a" });
    let (other_prefix, _) = keygen("zz_");
    for bad in [
        unknown.as_str(),
        typo.as_str(),
        other_prefix.as_str(),
        "kg_short",
    ] {
        let r = get(&gw.url("/api/v1/x"), &[("authorization", &bearer(bad))]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.error_code().as_deref(), Some("invalid_api_key"));
        assert!(r.headers.contains_key("www-authenticate"));
        assert!(!r.text().contains(bad), "the error must not echo the key");
    }
    let r = get(&gw.url("/api/v1/x"), &[("x-api-key", &keys.expired)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code().as_deref(), Some("api_key_expired"));
    assert!(
        up.requests().is_empty(),
        "nothing unauthenticated reaches upstream"
    );
    let mut gw = gw;
    gw.secrets.push(unknown);
    gw.secrets.push(typo);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn routing_and_upstream_errors() {
    let (gw, _up, keys) = setup().await;
    let auth = bearer(&keys.full);
    let h = [("authorization", auth.as_str())];

    let r = get(&gw.url("/nope/v1"), &h).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::NOT_FOUND, Some("unknown_connector"))
    );
    let r = get(&gw.url("/"), &h).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = get(&gw.url("/broken/v1"), &h).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("credential_unavailable")
        )
    );

    let r = get(&gw.url("/down/v1"), &h).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::BAD_GATEWAY, Some("upstream_unavailable"))
    );

    let r = get(&gw.url("/api/slow/3000"), &h).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::GATEWAY_TIMEOUT, Some("upstream_timeout"))
    );

    // Upstream errors pass through unchanged, body and headers included.
    let r = get(&gw.url("/api/status/500"), &h).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.error_code().is_none(),
        "an upstream error is not keygate's"
    );
    assert_eq!(r.headers["x-upstream"], "yes");
    assert_eq!(r.json()["upstream_error"], 500);
    let r = get(&gw.url("/api/status/401"), &h).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error_code().is_none());
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn body_limit_by_length_and_while_streaming() {
    let (gw, up, keys) = setup().await;
    let auth = bearer(&keys.full);
    let big = vec![b'x'; 2 << 20];
    let r = send(
        Method::POST,
        &gw.url("/api/v1/upload"),
        &[("authorization", &auth)],
        big.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    assert!(
        up.requests().is_empty(),
        "a Content-Length over the limit is refused before any upstream call"
    );

    // Chunked, no Content-Length: refused while streaming.
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(gw.url("/api/v1/upload"))
        .header("authorization", &auth)
        .body(body)
        .expect("req");
    let sender = tokio::spawn(async move {
        for _ in 0..40 {
            if tx
                .send_data(Bytes::from(vec![b'y'; 64 * 1024]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("timely")
        .expect("response");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    sender.abort();
    // Under the limit: passes.
    let r = send(
        Method::POST,
        &gw.url("/api/v1/upload"),
        &[("authorization", &auth)],
        vec![b'z'; 1000],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.last().body_len, 1000);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn targets_cannot_escape_the_connector() {
    let (gw, up, keys) = setup().await;
    let key = keys.full.clone();
    for target in [
        "http://evil.example/api/v1/x",
        "/api/../dedicated/x",
        "/api/v1/%2e%2e/%2e%2e/x",
        "/api/v1/%2E%2E/x",
        "/api//evil.example/x",
        "/api/@evil.example/x",
        "/api@evil.example/x",
        "/api/v1/..%2f..%2fx",
        "/api/v1/a%5c..%5cb",
    ] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = raw_request(gw.proxy, &req).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(text.contains("bad_request"), "{target}: {text}");
    }
    let req = format!(
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    );
    let (status, _) = raw_request(gw.proxy, &req).await;
    assert!(
        status == 400 || status == 405,
        "CONNECT must be refused, got {status}"
    );
    assert!(
        up.requests().is_empty(),
        "no escape attempt reached any upstream"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn h2c_callers_are_served() {
    let (gw, up, keys) = setup().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let req = http::Request::get(gw.url("/api/v1/h2"))
        .header("authorization", bearer(&keys.full))
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("req");
    let resp = client.request(req).await.expect("h2c response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(up.last().uri, "/base/v1/h2");
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {SECRET}"))
    );
    assert_eq!(gw.finish(), Some(0));
}

/// A one-off upstream that proves streaming: it signals when the first
/// upload chunk arrives (before the client has sent the rest), and sends
/// its first download chunk then waits for the client to confirm receipt.
async fn streaming_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<&'static str>,
    std::sync::Arc<tokio::sync::Notify>,
    tokio::sync::oneshot::Receiver<String>,
) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (evt_tx, evt_rx) = tokio::sync::mpsc::channel(8);
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let (hash_tx, hash_rx) = tokio::sync::oneshot::channel();
    let hash_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(hash_tx)));
    let go2 = std::sync::Arc::clone(&go);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let evt_tx = evt_tx.clone();
            let go = std::sync::Arc::clone(&go2);
            let hash_tx = std::sync::Arc::clone(&hash_tx);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let evt_tx = evt_tx.clone();
                    let go = std::sync::Arc::clone(&go);
                    let hash_tx = std::sync::Arc::clone(&hash_tx);
                    async move {
                        if req.uri().path().ends_with("/upload") {
                            use sha2::Digest;
                            let mut body = req.into_body();
                            let mut h = sha2::Sha256::new();
                            let mut first = true;
                            while let Some(Ok(frame)) = body.frame().await {
                                if let Some(d) = frame.data_ref() {
                                    h.update(d);
                                    if first {
                                        first = false;
                                        let _ = evt_tx.send("first-upload-chunk").await;
                                    }
                                }
                            }
                            if let Some(tx) = hash_tx.lock().expect("lock").take() {
                                let _ = tx.send(hex::encode(h.finalize()));
                            }
                            let b = http_body_util::Either::Left(http_body_util::Full::new(
                                Bytes::from_static(b"ok"),
                            ));
                            Ok::<_, Infallible>(http::Response::new(b))
                        } else {
                            let data = pattern(5 << 20);
                            let (mut tx, body) =
                                http_body_util::channel::Channel::<Bytes, Infallible>::new(2);
                            tokio::spawn(async move {
                                let _ =
                                    tx.send_data(Bytes::copy_from_slice(&data[..1 << 20])).await;
                                go.notified().await;
                                for chunk in data[1 << 20..].chunks(256 * 1024) {
                                    let _ = tx.send_data(Bytes::copy_from_slice(chunk)).await;
                                }
                            });
                            Ok(http::Response::new(http_body_util::Either::Right(body)))
                        }
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, evt_rx, go, hash_rx)
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test sends and checks exactly 5 MiB"
)]
async fn five_mib_each_way_streams_intact() {
    let (addr, mut events, go, hash_rx) = streaming_upstream().await;
    let (key, hash) = keygen("kg_");
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0 }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "stream-secret" }}, header: X-Token }}
connectors:
  s: {{ upstream: "http://{addr}", tokens: [t], max_request_body: 8MiB }}
roles: {{ r: {{ allow: [ {{ connector: s }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#
    );
    let mut gw = Gateway::start(&yaml);
    gw.secrets = vec![key.clone(), "stream-secret".into()];

    // Upload: the upstream must see the first chunk while the client still
    // holds the other 4 MiB: proof that keygate does not buffer whole.
    let upload = pattern(5 << 20);
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(2);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(gw.url("/s/upload"))
        .header("x-api-key", &key)
        .header("content-length", upload.len().to_string())
        .body(body)
        .expect("req");
    let resp_fut = tokio::spawn(async move { client.request(req).await });
    tx.send_data(Bytes::copy_from_slice(&upload[..1 << 20]))
        .await
        .expect("send first");
    let evt = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    assert_eq!(
        evt.ok().flatten(),
        Some("first-upload-chunk"),
        "upstream must get the first chunk before the rest is sent"
    );
    for chunk in upload[1 << 20..].chunks(256 * 1024) {
        tx.send_data(Bytes::copy_from_slice(chunk))
            .await
            .expect("send");
    }
    drop(tx);
    let resp = resp_fut.await.expect("join").expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let got = tokio::time::timeout(Duration::from_secs(10), hash_rx)
        .await
        .expect("timely")
        .expect("hash");
    assert_eq!(got, sha256_hex(&upload));

    // Download: the client must get the first MiB while the upstream still
    // holds the rest.
    let client = common::client();
    let req = http::Request::get(gw.url("/s/download"))
        .header("x-api-key", &key)
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("req");
    let resp = client.request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = Vec::new();
    while received.len() < 1 << 20 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("first MiB must arrive before the upstream sends more")
            .expect("frame")
            .expect("ok");
        if let Some(d) = frame.data_ref() {
            received.extend_from_slice(d);
        }
    }
    go.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("timely")
        .expect("rest");
    received.extend_from_slice(&rest.to_bytes());
    assert_eq!(received.len(), 5 << 20);
    assert_eq!(sha256_hex(&received), sha256_hex(&pattern(5 << 20)));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn access_log_has_one_line_per_request_without_secrets() {
    let (gw, _up, keys) = setup().await;
    let auth = bearer(&keys.full);
    get(
        &gw.url("/api/v1/logged?q=secret-query"),
        &[("authorization", &auth)],
    )
    .await;
    get(&gw.url("/api/v1/x"), &[]).await;
    // The lines are read from a pipe: polled, bounded, not a fixed sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gw.access_log().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gw.access_log();
    assert_eq!(log.len(), 2, "{log:?}");
    let ok = &log[0];
    assert_eq!(ok["connector"], "api");
    assert_eq!(ok["client"], "full");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["upstream_status"], 200);
    assert_eq!(ok["path"], "/api/v1/logged", "no query in the log");
    let tokens = ok["tokens"].as_str().expect("tokens");
    assert!(
        tokens.contains("secret:") && tokens.contains("apikey:"),
        "{tokens}"
    );
    assert_eq!(log[1]["status"], 401);
    assert_eq!(log[1]["error"], "missing_api_key");
    assert_eq!(gw.finish(), Some(0));
}
