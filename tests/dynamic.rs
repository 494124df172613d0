//! Dynamic tokens (issue 6) against real servers: an OAuth-style token
//! endpoint and a JWKS endpoint started here, the real keygate binary, and
//! a real upstream.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::jwt::{b64url, hs256, now_s};
use common::{Gateway, JsonServer, Upstream, bearer, get, keygen, send};
use http::{Method, StatusCode};

const CLIENT_SECRET: &str = "partner-client-secret-55";

fn yaml(up: &str, token_url: &str, hash: &str, response: &str, extra_tokens: &str) -> String {
    let user_tokens = if extra_tokens.is_empty() {
        ""
    } else {
        "end-user"
    };
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  partner:
    type: http_request
    request:
      method: POST
      url: {token_url}
      form: {{ grant_type: client_credentials, client_id: abc, client_secret: {{ env: KG_PARTNER_SECRET }} }}
    response: {response}
    refresh_before: 2s
    prefix: Bearer
    header: Authorization
{extra_tokens}
connectors:
  partner: {{ upstream: "{up}", tokens: [partner] }}
  users: {{ upstream: "{up}", tokens: [{user_tokens}] }}
roles: {{ r: {{ allow: [ {{ connector: partner }}, {{ connector: users }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#
    )
}

/// Token endpoint: answers `tok-N` living `lifetime` seconds, or 500 while
/// `failing` is set.
async fn token_endpoint(lifetime: Arc<AtomicU64>, failing: Arc<AtomicBool>) -> JsonServer {
    JsonServer::start(Arc::new(move |n, _body| {
        if failing.load(Ordering::SeqCst) {
            (500, r#"{"error":"down"}"#.to_string())
        } else {
            let l = lifetime.load(Ordering::SeqCst);
            (
                200,
                format!(r#"{{"access_token":"tok-{n}","token_type":"bearer","expires_in":{l}}}"#),
            )
        }
    }))
    .await
}

struct Setup {
    gw: Gateway,
    up: Upstream,
    ep: JsonServer,
    key: String,
    lifetime: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

async fn setup(lifetime_s: u64, users_section: &str) -> Setup {
    let up = Upstream::start().await;
    let lifetime = Arc::new(AtomicU64::new(lifetime_s));
    let failing = Arc::new(AtomicBool::new(false));
    let ep = token_endpoint(Arc::clone(&lifetime), Arc::clone(&failing)).await;
    let (key, hash) = keygen("kg_");
    let resp = "{ token: /access_token, expires_in: /expires_in }";
    let cfg = yaml(
        &up.url(),
        &ep.url("/oauth/token"),
        &hash,
        resp,
        users_section,
    );
    let mut gw = Gateway::start_with(
        &cfg,
        &[
            ("KG_PARTNER_SECRET", CLIENT_SECRET),
            ("KG_JWT_SECRET", "jwt-hmac-secret-0123456789"),
        ],
        |_| {},
    );
    gw.secrets = vec![
        key.clone(),
        CLIENT_SECRET.into(),
        "jwt-hmac-secret-0123456789".into(),
    ];
    Setup {
        gw,
        up,
        ep,
        key,
        lifetime,
        failing,
    }
}

impl Setup {
    /// `n` concurrent authenticated GETs of `path`; every one must be 200.
    async fn concurrent_ok(&self, path: &str, n: usize) {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let url = self.gw.url(path);
            let auth = bearer(&self.key);
            tasks.push(tokio::spawn(async move {
                get(&url, &[("authorization", &auth)]).await.status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join"), StatusCode::OK);
        }
    }

    async fn call(&self, path: &str) -> common::Reply {
        get(&self.gw.url(path), &[("authorization", &bearer(&self.key))]).await
    }

    fn finish(mut self) {
        for n in 1..=self.ep.hits() + 2 {
            self.gw.secrets.push(format!("tok-{n}\""));
        }
        assert_eq!(self.gw.finish(), Some(0));
    }
}

#[tokio::test]
async fn injection_form_body_and_single_flight() {
    let s = setup(3600, "").await;
    s.concurrent_ok("/partner/v1/x", 40).await;
    assert_eq!(
        s.ep.hits(),
        1,
        "40 concurrent first requests, exactly one fetch"
    );
    assert_eq!(
        s.up.last().header("authorization").as_deref(),
        Some("Bearer tok-1")
    );
    let body = s.ep.bodies.lock().expect("lock")[0].clone();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(
        body.contains(&format!("client_secret={CLIENT_SECRET}")),
        "the env value is resolved"
    );
    // Token state is visible, never the value.
    let admin_key = common::initial_admin_key(&s.gw);
    let r = get(
        &s.gw.admin_url("/api/v1/tokens"),
        &[("authorization", &bearer(&admin_key))],
    )
    .await;
    let t = common::find_in(&r.json(), "tokens", "name", "partner");
    assert_eq!(t["type"], "http_request");
    assert_eq!(t["state"], "ready");
    assert!(t["expires_at"].as_str().is_some());
    assert!(!r.text().contains("tok-1"));
    assert_eq!(
        get(&s.gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::OK
    );
    let mut s = s;
    s.gw.secrets.push(admin_key);
    s.finish();
}

#[tokio::test]
async fn refreshes_before_expiry() {
    let s = setup(3, "").await;
    assert_eq!(s.call("/partner/v1/a").await.status, StatusCode::OK);
    assert_eq!(
        s.up.last().header("authorization").as_deref(),
        Some("Bearer tok-1")
    );
    // Lifetime 3 s, refresh_before 2 s: refreshed at ~1 s, before expiry.
    let start = Instant::now();
    while s.ep.hits() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no refresh before expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.call("/partner/v1/b").await.status, StatusCode::OK);
    assert_eq!(
        s.up.last().header("authorization").as_deref(),
        Some("Bearer tok-2")
    );
    s.finish();
}

#[tokio::test]
async fn last_good_value_while_failing_then_503_past_expiry_then_recovery() {
    let s = setup(4, "").await;
    // The value lives 4 s from its fetch, which happens after `fetched`.
    let fetched = Instant::now();
    assert_eq!(s.call("/partner/v1/a").await.status, StatusCode::OK);
    s.failing.store(true, Ordering::SeqCst);
    // Refreshes start at ~2 s (refresh_before) and fail: polled, bounded.
    while s.ep.hits() < 2 {
        assert!(
            fetched.elapsed() < Duration::from_secs(4),
            "no refresh attempted before expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Until expiry every request is served with the last good value; then
    // 503, never before 4 s (polled instead of sleeping past the expiry).
    let mut served_while_failing = 0;
    let r = loop {
        let r = s.call("/partner/v1/b").await;
        if r.status != StatusCode::OK {
            break r;
        }
        assert!(
            fetched.elapsed() < Duration::from_secs(15),
            "the value was used long past its expiry"
        );
        assert_eq!(
            s.up.last().header("authorization").as_deref(),
            Some("Bearer tok-1"),
            "last good value while refreshes fail"
        );
        served_while_failing += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        fetched.elapsed() >= Duration::from_millis(3900),
        "unavailable after {:?}, before the 4 s expiry",
        fetched.elapsed()
    );
    assert!(served_while_failing > 0, "served while refreshes failed");
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("credential_unavailable")
        )
    );
    let retries_before = s.ep.hits();
    // Recovery: the endpoint comes back; a retry (backoff) succeeds.
    s.failing.store(false, Ordering::SeqCst);
    s.lifetime.store(3600, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        let r = s.call("/partner/v1/d").await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s.ep.hits() > retries_before);
    let tok = s.up.last().header("authorization").expect("auth");
    assert_ne!(tok, "Bearer tok-1");
    assert!(s.gw.stderr_text().contains("token fetch failed"));
    assert!(
        !s.gw.stderr_text().contains("\"error\":\"down\""),
        "the endpoint's answer is never logged"
    );
    s.finish();
}

#[tokio::test]
async fn upstream_401_refreshes_and_retries_small_bodies_once() {
    let s = setup(3600, "").await;
    // The upstream accepts only tok-2: the first value is "revoked" there.
    let r = send(
        Method::POST,
        &s.gw.url("/partner/require-tok/2"),
        &[("authorization", &bearer(&s.key))],
        "small body",
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "retried with the refreshed value: {}",
        r.text()
    );
    assert_eq!(s.ep.hits(), 2, "one refresh");
    let seen = s.up.requests();
    assert_eq!(seen.len(), 2, "sent twice");
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Bearer tok-1")
    );
    assert_eq!(
        seen[1].header("authorization").as_deref(),
        Some("Bearer tok-2")
    );
    assert_eq!(
        seen[0].body_sha256, seen[1].body_sha256,
        "the same body both times"
    );
    assert_eq!(seen[1].body_len, 10);
    s.finish();
}

#[tokio::test]
async fn upstream_401_with_a_large_body_is_returned_and_the_next_request_uses_the_new_value() {
    let s = setup(3600, "").await;
    let big = vec![b'q'; 200 * 1024];
    let r = send(
        Method::POST,
        &s.gw.url("/partner/require-tok/2"),
        &[("authorization", &bearer(&s.key))],
        big.clone(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a large streamed body is not retried"
    );
    assert!(
        r.error_code().is_none(),
        "the upstream's own 401 passes through"
    );
    assert_eq!(s.up.requests().len(), 1);
    assert_eq!(s.ep.hits(), 2, "but the token was refreshed at once");
    let r = send(
        Method::POST,
        &s.gw.url("/partner/require-tok/2"),
        &[("authorization", &bearer(&s.key))],
        big,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.up.last().header("authorization").as_deref(),
        Some("Bearer tok-2")
    );
    s.finish();
}

#[tokio::test]
async fn concurrent_401s_cause_one_refresh() {
    let s = setup(3600, "").await;
    assert_eq!(s.call("/partner/v1/warm").await.status, StatusCode::OK);
    s.concurrent_ok("/partner/require-tok/2", 10).await;
    assert_eq!(s.ep.hits(), 2, "ten 401s, one refresh");
    s.finish();
}

const USER_HS256: &str = "
  end-user:
    type: user
    header: X-User-Token
    prefix: Bearer
    jwt: { hs256_secret: { env: KG_JWT_SECRET }, audience: partner-api, issuer: https://app.example }";

#[tokio::test]
async fn user_token_moved_and_checked_as_hs256_jwt() {
    let s = setup(3600, USER_HS256).await;
    let secret = "jwt-hmac-secret-0123456789";
    let good = hs256(
        serde_json::json!({"sub": "u1", "aud": "partner-api", "iss": "https://app.example", "exp": now_s() + 600}),
        secret,
    );
    let auth = bearer(&s.key);
    let r = get(
        &s.gw.url("/users/v1/me"),
        &[("authorization", &auth), ("keygate-token-end-user", &good)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = s.up.last();
    assert_eq!(seen.header("x-user-token"), Some(format!("Bearer {good}")));
    assert!(
        seen.header("keygate-token-end-user").is_none(),
        "the inbound header never reaches upstream"
    );

    let cases = [
        (
            "expired",
            hs256(
                serde_json::json!({"aud": "partner-api", "iss": "https://app.example", "exp": now_s() - 600}),
                secret,
            ),
        ),
        (
            "wrong signature",
            hs256(
                serde_json::json!({"aud": "partner-api", "iss": "https://app.example", "exp": now_s() + 600}),
                "another-secret",
            ),
        ),
        (
            "wrong audience",
            hs256(
                serde_json::json!({"aud": "other", "iss": "https://app.example", "exp": now_s() + 600}),
                secret,
            ),
        ),
        (
            "wrong issuer",
            hs256(
                serde_json::json!({"aud": "partner-api", "iss": "https://evil.example", "exp": now_s() + 600}),
                secret,
            ),
        ),
        (
            "not yet valid",
            hs256(
                serde_json::json!({"aud": "partner-api", "iss": "https://app.example", "exp": now_s() + 600, "nbf": now_s() + 300}),
                secret,
            ),
        ),
        ("not a jwt", "garbage".to_string()),
    ];
    let before = s.up.requests().len();
    for (what, jwt) in &cases {
        let r = get(
            &s.gw.url("/users/v1/me"),
            &[("authorization", &auth), ("keygate-token-end-user", jwt)],
        )
        .await;
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (StatusCode::UNAUTHORIZED, Some("invalid_user_token")),
            "{what}"
        );
    }
    let r = get(&s.gw.url("/users/v1/me"), &[("authorization", &auth)]).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::UNAUTHORIZED, Some("missing_user_token"))
    );
    assert_eq!(
        s.up.requests().len(),
        before,
        "no refused user token reached upstream"
    );
    let mut s = s;
    s.gw.secrets.push(good);
    s.finish();
}

#[tokio::test]
async fn user_token_checked_against_a_jwks() {
    // An ES256 key from rcgen; its public point becomes the JWK.
    let kp = rcgen::KeyPair::generate().expect("key");
    let raw = kp.public_key_raw();
    assert_eq!(raw.len(), 65);
    let jwk = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65])}]});
    let jwks_body = jwk.to_string();
    let jwks_up = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&jwks_up);
    let jwks = JsonServer::start(Arc::new(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            (200, jwks_body.clone())
        } else {
            (503, "{}".into())
        }
    }))
    .await;
    let users = format!(
        "
  end-user:
    type: user
    header: X-User-Token
    jwt: {{ jwks_url: \"{}\", audience: partner-api }}",
        jwks.url("/.well-known/jwks.json")
    );
    let s = setup(3600, &users).await;
    let enc = jsonwebtoken::EncodingKey::from_ec_der(kp.serialized_der());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let good = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"aud": "partner-api", "exp": now_s() + 600}),
        &enc,
    )
    .expect("jwt");
    let auth = bearer(&s.key);
    let r = get(
        &s.gw.url("/users/v1/me"),
        &[("authorization", &auth), ("keygate-token-end-user", &good)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        s.up.last().header("x-user-token").as_deref(),
        Some(good.as_str())
    );
    assert_eq!(jwks.hits(), 1, "JWKS fetched once and cached");
    let r = get(
        &s.gw.url("/users/v1/me"),
        &[("authorization", &auth), ("keygate-token-end-user", &good)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(jwks.hits(), 1, "served from the cache");

    let expired = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"aud": "partner-api", "exp": now_s() - 600}),
        &enc,
    )
    .expect("jwt");
    let r = get(
        &s.gw.url("/users/v1/me"),
        &[
            ("authorization", &auth),
            ("keygate-token-end-user", &expired),
        ],
    )
    .await;
    assert_eq!(r.error_code().as_deref(), Some("invalid_user_token"));
    // An HS256 token must not be accepted against a JWKS (algorithm confusion).
    let hs = hs256(
        serde_json::json!({"aud": "partner-api", "exp": now_s() + 600}),
        "x",
    );
    let r = get(
        &s.gw.url("/users/v1/me"),
        &[("authorization", &auth), ("keygate-token-end-user", &hs)],
    )
    .await;
    assert_eq!(r.error_code().as_deref(), Some("invalid_user_token"));
    let mut s = s;
    s.gw.secrets.push(good);
    s.finish();
}

#[tokio::test]
async fn unreachable_jwks_makes_user_tokens_unverifiable() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let users = format!(
        "
  end-user:
    type: user
    header: X-User-Token
    jwt: {{ jwks_url: \"http://{dead}/jwks\" }}"
    );
    let s = setup(3600, &users).await;
    let kp = rcgen::KeyPair::generate().expect("key");
    let enc = jsonwebtoken::EncodingKey::from_ec_der(kp.serialized_der());
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &serde_json::json!({"exp": now_s() + 600}),
        &enc,
    )
    .expect("jwt");
    let r = get(
        &s.gw.url("/users/v1/me"),
        &[
            ("authorization", &bearer(&s.key)),
            ("keygate-token-end-user", &jwt),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_user_token"))
    );
    let admin_key = common::initial_admin_key(&s.gw);
    let r = get(
        &s.gw.admin_url("/api/v1/tokens"),
        &[("authorization", &bearer(&admin_key))],
    )
    .await;
    let t = common::find_in(&r.json(), "tokens", "name", "end-user");
    assert!(
        t["last_error"].as_str().is_some_and(|e| e.contains("JWKS")),
        "{t}"
    );
    let mut s = s;
    s.gw.secrets.push(admin_key);
    s.finish();
}
