//! Issue 10 hardening of dynamic tokens, against the real binary: what a
//! caller or a broken identity provider can make keygate send to token and
//! JWKS endpoints is bounded, and no token endpoint answer can make the
//! gateway busy-loop or panic. Every bound is checked by counting hits on
//! the endpoints, never by timing.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::jwt::{b64url, now_s};
use common::{Gateway, JsonServer, Upstream, bearer, find_in, get, initial_admin_key, keygen};
use http::StatusCode;

/// `n` concurrent GETs; returns their statuses.
async fn burst(url: &str, headers: &[(&str, &str)], n: usize) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = url.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            get(&url, &h).await.status
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("join"));
    }
    out
}

async fn admin_tokens(gw: &Gateway, admin_key: &str) -> serde_json::Value {
    get(
        &gw.admin_url("/api/v1/tokens"),
        &[("authorization", &bearer(admin_key))],
    )
    .await
    .json()
}

/// Defect 3: a path that always answers 401 must not turn every request
/// into a token-endpoint call. One refresh per `min_refresh_interval`;
/// the other 401s pass through unchanged.
#[tokio::test]
async fn many_upstream_401s_cause_one_refresh_within_the_interval() {
    let up = Upstream::start().await;
    let ep = JsonServer::start(Arc::new(|n, _| {
        (
            200,
            format!(r#"{{"access_token":"guard-tok-{n}","expires_in":3600}}"#),
        )
    }))
    .await;
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  partner:
    type: http_request
    request: {{ url: "{ep}" }}
    response: {{ token: /access_token, expires_in: /expires_in }}
    min_refresh_interval: 1h
    prefix: Bearer
connectors:
  partner: {{ upstream: "{up}", tokens: [partner] }}
roles: {{ r: {{ allow: [ {{ connector: partner }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        ep = ep.url("/token"),
        up = up.url(),
    );
    let mut gw = Gateway::start(&cfg);
    gw.secrets = vec![key.clone()];
    let auth = bearer(&key);

    assert_eq!(
        get(&gw.url("/partner/v1/warm"), &[("authorization", &auth)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(ep.hits(), 1);
    for i in 0..25 {
        let r = get(&gw.url("/partner/status/401"), &[("authorization", &auth)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "request {i}");
        assert!(
            r.error_code().is_none(),
            "the upstream's own 401 passes through unchanged"
        );
        assert_eq!(r.json()["upstream_error"], 401);
    }
    // And a concurrent burst on top.
    let statuses = burst(
        &gw.url("/partner/status/401"),
        &[("authorization", &auth)],
        10,
    )
    .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    assert_eq!(
        ep.hits(),
        2,
        "35 upstream 401s inside min_refresh_interval: exactly one refresh"
    );
    let metrics = get(&gw.admin_url("/metrics"), &[]).await.text();
    assert!(
        metrics
            .contains(r#"keygate_token_refresh_total{token="partner",result="rate_limited"} 34"#),
        "the refused refreshes are counted: {metrics}"
    );
    // The first 401 was retried once with the refreshed value; no other.
    assert_eq!(up.requests().len(), 1 + 25 + 1 + 10);
    // Requests keep using the refreshed value.
    assert_eq!(
        get(&gw.url("/partner/v1/after"), &[("authorization", &auth)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        up.last().header("authorization").as_deref(),
        Some("Bearer guard-tok-2")
    );
    for n in 1..=3 {
        gw.secrets.push(format!("guard-tok-{n}\""));
    }
    assert_eq!(gw.finish(), Some(0));
}

/// Defect 4: hostile or broken lifetimes. Each case is one token with its
/// own endpoint answering `{"access_token": …, <field>: <value>}`. This
/// checks the gateway stays up and says why; the number of fetches each
/// case may cause is checked on paused time in `tokens::refresh`.
#[tokio::test]
async fn hostile_token_lifetimes_neither_loop_nor_panic() {
    // (name, response pointer field, JSON value, clamped to a year?)
    let cases: &[(&str, &str, &str, bool)] = &[
        ("zero", "expires_in", "0", false),
        ("negative", "expires_in", "-30", false),
        ("past", "expires_at", "1000000000", false),
        ("past-iso", "expires_at", "\"2001-01-01T00:00:00Z\"", false),
        ("text", "expires_in", "\"soon\"", false),
        ("nan", "expires_in", "\"NaN\"", false),
        ("at-text", "expires_at", "\"tomorrow\"", false),
        ("e19", "expires_in", "1e19", true),
        ("e20", "expires_in", "1e20", true),
        ("at-e20", "expires_at", "1e20", true),
    ];
    let up = Upstream::start().await;
    let mut servers = Vec::new();
    let mut tokens = String::new();
    let mut connectors = String::new();
    let mut grants = Vec::new();
    for (name, field, value, _) in cases {
        let body = format!(r#"{{"access_token":"life-{name}-tok","{field}":{value}}}"#);
        let ep = JsonServer::start(Arc::new(move |_, _| (200, body.clone()))).await;
        tokens.push_str(&format!(
            "  t-{name}:\n    type: http_request\n    request: {{ url: \"{}\" }}\n    response: {{ token: /access_token, {field}: /{field} }}\n    prefix: Bearer\n",
            ep.url("/token")
        ));
        connectors.push_str(&format!(
            "  c-{name}: {{ upstream: \"{}\", tokens: [t-{name}] }}\n",
            up.url()
        ));
        grants.push(format!("{{ connector: c-{name} }}"));
        servers.push(ep);
    }
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
{tokens}
connectors:
{connectors}
roles: {{ r: {{ allow: [ {grants} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        grants = grants.join(", ")
    );
    let mut gw = Gateway::start(&cfg);
    gw.secrets = vec![key.clone()];
    let auth = bearer(&key);

    // A few rounds of requests on every token, with the background
    // schedule running meanwhile.
    for _ in 0..10 {
        for (name, ..) in cases {
            let _ = get(
                &gw.url(&format!("/c-{name}/v1/x")),
                &[("authorization", &auth)],
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert!(
        gw.child.try_wait().expect("wait").is_none(),
        "the gateway is still up"
    );
    assert_eq!(
        get(&gw.admin_url("/healthz"), &[]).await.status,
        StatusCode::OK
    );
    let admin_key = initial_admin_key(&gw);
    let listing = admin_tokens(&gw, &admin_key).await;
    let year = 365 * 24 * 3600;
    for ((name, _, _, clamped), ep) in cases.iter().zip(&servers) {
        let t = find_in(&listing, "tokens", "name", &format!("t-{name}"));
        let r = get(
            &gw.url(&format!("/c-{name}/v1/x")),
            &[("authorization", &auth)],
        )
        .await;
        if *clamped {
            assert_eq!(ep.hits(), 1, "{name}: fetched once, not again: {t}");
            assert_eq!(t["state"], "ready", "{name}: {t}");
            let exp = t["expires_at"]
                .as_str()
                .and_then(|s| humantime::parse_rfc3339(s).ok())
                .unwrap_or_else(|| panic!("{name}: an expiry is shown: {t}"));
            let secs = exp
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after epoch")
                .as_secs();
            assert!(
                secs > now_s() + year - 86_400 && secs < now_s() + year + 86_400,
                "{name}: clamped to one year: {t}"
            );
            assert_eq!(r.status, StatusCode::OK, "{name}");
        } else {
            // How many fetches the backoff allows is checked on paused
            // time (tokens::refresh unit tests); here: refused, visible.
            assert!(ep.hits() >= 1, "{name}: the endpoint was asked");
            assert_eq!(t["state"], "unavailable", "{name}: {t}");
            let err = t["last_error"].as_str().unwrap_or_default();
            assert!(
                err.contains(&format!("/{}", cases_field(cases, name))),
                "{name}: the error names the field: {t}"
            );
            assert_eq!(
                (r.status, r.error_code().as_deref()),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("credential_unavailable")
                ),
                "{name}"
            );
        }
    }
    let stderr = gw.stderr_text();
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(!stderr.contains("poisoned"), "no poisoned lock");
    assert!(stderr.contains("clamped"), "the clamp is logged");
    for (name, ..) in cases {
        gw.secrets.push(format!("life-{name}-tok"));
    }
    gw.secrets.push(admin_key);
    assert_eq!(gw.finish(), Some(0));
}

fn cases_field<'a>(cases: &[(&str, &'a str, &str, bool)], name: &str) -> &'a str {
    cases
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.1)
        .expect("case")
}

fn es256(kp: &rcgen::KeyPair, kid: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "u", "exp": now_s() + 600}),
        &jsonwebtoken::EncodingKey::from_ec_der(kp.serialized_der()),
    )
    .expect("jwt")
}

/// Defect 6: made-up `kid`s and a failing JWKS endpoint cost the identity
/// provider a bounded number of requests, whatever the traffic.
#[tokio::test]
async fn unknown_kids_and_a_failing_jwks_cause_bounded_fetches() {
    let kp = rcgen::KeyPair::generate().expect("key");
    let raw = kp.public_key_raw();
    let jwk = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65])}]})
    .to_string();
    let good = JsonServer::start(Arc::new(move |_, _| (200, jwk.clone()))).await;
    let down = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&down);
    let failing = JsonServer::start(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            (503, "{}".into())
        } else {
            (200, r#"{"keys":[]}"#.into())
        }
    }))
    .await;
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  u-good:
    type: user
    header: X-User-Token
    jwt: {{ jwks_url: "{good}", jwks_min_interval: 1h }}
  u-down:
    type: user
    header: X-User-Token
    jwt: {{ jwks_url: "{failing}" }}
connectors:
  good: {{ upstream: "{up}", tokens: [u-good] }}
  down: {{ upstream: "{up}", tokens: [u-down] }}
roles: {{ r: {{ allow: [ {{ connector: good }}, {{ connector: down }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        good = good.url("/jwks"),
        failing = failing.url("/jwks"),
        up = up.url(),
    );
    let mut gw = Gateway::start(&cfg);
    gw.secrets = vec![key.clone()];
    let auth = bearer(&key);
    let stranger = rcgen::KeyPair::generate().expect("key");

    // Unknown kids: a concurrent burst, then a sequential stream.
    let jwt = es256(&stranger, "made-up-0");
    let statuses = burst(
        &gw.url("/good/v1/me"),
        &[("authorization", &auth), ("keygate-token-u-good", &jwt)],
        15,
    )
    .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    for i in 1..=30 {
        let jwt = es256(&stranger, &format!("made-up-{i}"));
        let r = get(
            &gw.url("/good/v1/me"),
            &[("authorization", &auth), ("keygate-token-u-good", &jwt)],
        )
        .await;
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (StatusCode::UNAUTHORIZED, Some("invalid_user_token"))
        );
    }
    assert_eq!(good.hits(), 1, "45 unknown kids: one JWKS download");
    let valid = es256(&kp, "k1");
    let r = get(
        &gw.url("/good/v1/me"),
        &[("authorization", &auth), ("keygate-token-u-good", &valid)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(good.hits(), 1);

    // A failing endpoint: one fetch per backoff step, not one per request.
    let jwt = es256(&kp, "k1");
    let statuses = burst(
        &gw.url("/down/v1/me"),
        &[("authorization", &auth), ("keygate-token-u-down", &jwt)],
        15,
    )
    .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    for _ in 0..30 {
        let r = get(
            &gw.url("/down/v1/me"),
            &[("authorization", &auth), ("keygate-token-u-down", &jwt)],
        )
        .await;
        assert_eq!(r.error_code().as_deref(), Some("invalid_user_token"));
    }
    let hits = failing.hits();
    assert!(
        (1..=4).contains(&hits),
        "45 requests against a failing JWKS: {hits} downloads"
    );
    let admin_key = initial_admin_key(&gw);
    let t = find_in(
        &admin_tokens(&gw, &admin_key).await,
        "tokens",
        "name",
        "u-down",
    );
    assert!(
        t["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("JWKS endpoint answered 503")),
        "{t}"
    );
    down.store(false, Ordering::SeqCst);
    gw.secrets.push(admin_key);
    gw.secrets.push(valid);
    assert_eq!(gw.finish(), Some(0));
}

/// A token endpoint that answers its first connection with `first` (if
/// any, then closes it) and leaves every later one unanswered; counts
/// connections. A request left unanswered cannot share its connection, so
/// the count is the number of token requests keygate sent.
struct Hanging {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hanging {
    async fn start(first: Option<&str>) -> Hanging {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let mut first = first.map(|body| {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        });
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(answer) = first.take() {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tcp.write_all(answer.as_bytes()).await;
                    continue;
                }
                held.push(tcp);
            }
        });
        Hanging {
            addr,
            accepted,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `GET path` on a fresh connection, waits `ms`, closes it: the
/// client gave up, and hyper drops the request's future.
async fn abandoned(gw: &Gateway, path: &str, key: &str, ms: u64) {
    use tokio::io::AsyncWriteExt;
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: keygate\r\nauthorization: Bearer {key}\r\n\r\n");
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy)
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// S2: requests whose clients give up while a token fetch is in flight
/// share that one fetch; none starts a token request of its own. Two
/// cases: a token with no value yet and a hanging endpoint, and a token
/// whose endpoint starts hanging, refreshed after upstream 401s (with
/// `min_refresh_interval: 1s`, each abandoned 401 refresh used to let the
/// next one through a second later).
#[tokio::test]
async fn abandoned_requests_do_not_multiply_token_fetches() {
    let never = Hanging::start(None).await;
    let flaky = Hanging::start(Some(r#"{"access_token":"flaky-tok-1","expires_in":3600}"#)).await;
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  never:
    type: http_request
    request: {{ url: "http://{never}/token", timeout: 1h }}
    response: {{ token: /access_token, expires_in: /expires_in }}
    prefix: Bearer
  flaky:
    type: http_request
    request: {{ url: "http://{flaky}/token", timeout: 1h }}
    response: {{ token: /access_token, expires_in: /expires_in }}
    min_refresh_interval: 1s
    prefix: Bearer
connectors:
  never: {{ upstream: "{up}", tokens: [never] }}
  flaky: {{ upstream: "{up}", tokens: [flaky] }}
roles: {{ r: {{ allow: [ {{ connector: never }}, {{ connector: flaky }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        never = never.addr,
        flaky = flaky.addr,
        up = up.url(),
    );
    let mut gw = Gateway::start(&cfg);
    gw.secrets = vec![key.clone(), "flaky-tok-1".into()];

    // No value yet, the endpoint hangs: 20 abandoned requests.
    for _ in 0..20 {
        abandoned(&gw, "/never/v1/x", &key, 50).await;
    }
    assert_eq!(never.hits(), 1, "20 abandoned requests: one fetch");

    // A value, then the endpoint hangs; the upstream answers 401. Four
    // seconds of abandoned requests span four min_refresh_intervals.
    let ok = get(&gw.url("/flaky/v1/x"), &[("authorization", &bearer(&key))]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(flaky.hits(), 1);
    for _ in 0..40 {
        abandoned(&gw, "/flaky/status/401", &key, 100).await;
    }
    assert_eq!(flaky.hits(), 2, "40 abandoned 401s: one refresh in flight");

    assert!(
        gw.child.try_wait().expect("wait").is_none(),
        "the gateway is still up"
    );
    let admin_key = initial_admin_key(&gw);
    let listing = admin_tokens(&gw, &admin_key).await;
    for name in ["never", "flaky"] {
        let t = find_in(&listing, "tokens", "name", name);
        assert_eq!(t["state"], "refreshing", "the fetch is in flight: {t}");
    }
    gw.secrets.push(admin_key);
    assert_eq!(gw.finish(), Some(0));
}
