//! The console's server half against the real binary (issue 14, item 2):
//! sign-in answers a session cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` behind TLS), the cookie works the API in place of a key, a
//! state-changing request needs the CSRF token and the console's own
//! origin, sign-out and revoking the key end the session at once, every
//! answer carries the security headers, and the proxy never forwards the
//! cookie upstream. The browser half is `tests/console.rs`.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use bytes::Bytes;
use common::{Gateway, Reply, Upstream, admin, bearer, get, initial_admin_key, send};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn yaml(up: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0 }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "upstream-secret-console" }}, header: X-Token }}
connectors:
  svc: {{ upstream: "{up}", tokens: [t] }}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
clients:
  app: {{ roles: [caller] }}
"#
    )
}

fn start(up: &Upstream) -> (Gateway, String) {
    let mut gw = Gateway::start(&yaml(&up.url()));
    let key = initial_admin_key(&gw);
    gw.secrets = vec![key.clone(), "upstream-secret-console".into()];
    (gw, key)
}

/// Signs in with `key`: the answer, and the `name=value` of its cookie.
async fn sign_in(gw: &Gateway, key: &str, extra: &[(&str, &str)]) -> (Reply, Option<String>) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let body = json!({ "key": key }).to_string();
    let r = send(
        Method::POST,
        &gw.admin_url("/console/session"),
        &headers,
        body,
    )
    .await;
    let cookie = r
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().expect("ascii").to_string());
    let pair = cookie.map(|c| c.split(';').next().expect("pair").to_string());
    (r, pair)
}

/// A key made through the API for `client`, registered as a secret of
/// `gw`: (id, key).
async fn new_key(gw: &mut Gateway, admin_key: &str, client: &str, name: &str) -> (String, String) {
    let r = admin(
        gw,
        admin_key,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"client": client, "name": name})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    let key = v["key"].as_str().expect("key").to_string();
    gw.secrets.push(key.clone());
    (v["id"].as_str().expect("id").to_string(), key)
}

/// Signs in with `key`: the session cookie (`name=value`) and CSRF token.
async fn session(gw: &Gateway, key: &str) -> (String, String) {
    let (r, cookie) = sign_in(gw, key, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let csrf = r.json()["csrf_token"].as_str().expect("csrf").to_string();
    (cookie.expect("cookie"), csrf)
}

/// A request to the admin listener with the session cookie (and the
/// headers a same-origin fetch would add).
async fn with_cookie(
    gw: &Gateway,
    cookie: &str,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut headers = vec![("cookie", cookie), ("content-type", "application/json")];
    headers.extend_from_slice(extra);
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    send(method, &gw.admin_url(path), &headers, body).await
}

#[tokio::test]
async fn sign_in_gives_a_strict_http_only_cookie_and_refuses_wrong_keys() {
    let up = Upstream::start().await;
    let (mut gw, key) = start(&up);

    // A wrong key, a malformed one, none: 401, no cookie.
    let wrong = format!("{}x", &key[..key.len() - 1]);
    for k in [wrong.as_str(), "nonsense", ""] {
        let (r, cookie) = sign_in(&gw, k, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{k:?}: {}", r.text());
        assert!(cookie.is_none());
    }
    // A valid key without admin rights: 403.
    let (_, caller_key) = new_key(&mut gw, &key, "app", "caller").await;
    let (r, cookie) = sign_in(&gw, &caller_key, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(cookie.is_none());
    // Not JSON (what a cross-site form would send): 400.
    let r = send(
        Method::POST,
        &gw.admin_url("/console/session"),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("key={key}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // A `text/plain` form can carry a body that is valid JSON: the type
    // decides, not the body.
    let r = send(
        Method::POST,
        &gw.admin_url("/console/session"),
        &[("content-type", "text/plain")],
        json!({ "key": key }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(!r.headers.contains_key("set-cookie"));
    // From another site's page: refused by Fetch Metadata.
    let (r, _) = sign_in(&gw, &key, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(r.error_code().as_deref(), Some("csrf_rejected"));

    let (r, cookie) = sign_in(&gw, &key, &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let set = r.headers["set-cookie"].to_str().expect("ascii");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert_eq!(r.headers["cache-control"], "no-store");
    let v = r.json();
    assert_eq!(v["client"], "keygate-admin");
    assert_eq!(v["idle_timeout_seconds"], 1800);
    let csrf = v["csrf_token"].as_str().expect("csrf");
    assert_eq!(csrf.len(), 64);
    let cookie = cookie.expect("cookie");
    assert!(cookie.starts_with("keygate_session=") && cookie.len() > 70);
    // Neither the key nor the session id is in the answer's body.
    assert!(!r.text().contains(&key));
    assert!(!r.text().contains(&cookie["keygate_session=".len()..]));

    // Behind a TLS front proxy the cookie is Secure.
    let (r, _) = sign_in(&gw, &key, &[("x-forwarded-proto", "https")]).await;
    let set = r.headers["set-cookie"].to_str().expect("ascii");
    assert!(set.ends_with("; Secure"), "{set}");

    gw.assert_no_secrets();
    assert!(gw.wait_log("console sign-in", 5));
}

#[tokio::test]
async fn the_cookie_works_the_api_and_changes_need_the_csrf_token() {
    let up = Upstream::start().await;
    let (mut gw, key) = start(&up);
    let (cookie, csrf) = session(&gw, &key).await;

    // Reads need only the cookie.
    let r = with_cookie(&gw, &cookie, Method::GET, "/api/v1/keys", &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = with_cookie(&gw, &cookie, Method::GET, "/console/session", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["csrf_token"], csrf.as_str());

    let body = json!({"client": "app", "name": "from-console"});
    // A change without the token, with a wrong one, or from another
    // origin of the same site (a page the proxy serves): 403.
    for extra in [
        vec![],
        vec![("x-csrf-token", "0".repeat(64))],
        vec![
            ("x-csrf-token", csrf.clone()),
            ("sec-fetch-site", "same-site".to_string()),
        ],
    ] {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = with_cookie(
            &gw,
            &cookie,
            Method::POST,
            "/api/v1/keys",
            &extra,
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{extra:?}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("csrf_rejected"));
    }
    let listed = with_cookie(&gw, &cookie, Method::GET, "/api/v1/keys", &[], None).await;
    assert!(!listed.text().contains("from-console"), "nothing was made");

    // With the token: made, and the audit log names the signed-in key.
    let r = with_cookie(
        &gw,
        &cookie,
        Method::POST,
        "/api/v1/keys",
        &[("x-csrf-token", &csrf), ("sec-fetch-site", "same-origin")],
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    gw.secrets
        .push(r.json()["key"].as_str().expect("key").to_string());
    let audit = admin(&gw, &key, Method::GET, "/api/v1/audit", None).await;
    let last = audit.json()["records"]
        .as_array()
        .and_then(|a| a.last().cloned())
        .expect("a record");
    assert_eq!(last["actor"]["client"], "keygate-admin", "{last}");

    // A key header wins over the cookie (no CSRF token needed with it).
    let r = send(
        Method::POST,
        &gw.admin_url("/api/v1/reload"),
        &[("cookie", &cookie), ("authorization", &bearer(&key))],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Two different session cookies: refused, not guessed between.
    let two = format!("{cookie}; keygate_session=abc");
    let r = with_cookie(&gw, &two, Method::GET, "/api/v1/keys", &[], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    gw.assert_no_secrets();
}

#[tokio::test]
async fn sign_out_and_revoking_the_key_end_the_session_at_once() {
    let up = Upstream::start().await;
    let (mut gw, key) = start(&up);

    // Sign out: 204, the cookie cleared, and the old cookie answers 401.
    let (cookie, csrf) = session(&gw, &key).await;
    let r = with_cookie(&gw, &cookie, Method::DELETE, "/console/session", &[], None).await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("csrf_rejected"),
        "sign-out needs it too"
    );
    let r = with_cookie(
        &gw,
        &cookie,
        Method::DELETE,
        "/console/session",
        &[("x-csrf-token", &csrf)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
    let r = with_cookie(&gw, &cookie, Method::GET, "/api/v1/keys", &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code().as_deref(), Some("session_expired"));
    assert!(r.headers.contains_key("www-authenticate"));

    // A second admin key signs in; revoking it ends its session on the
    // very next request, while the first key's session lives on.
    let (id2, key2) = new_key(&mut gw, &key, "keygate-admin", "laptop").await;
    let (doomed, _) = session(&gw, &key2).await;
    let (kept, _) = session(&gw, &key).await;
    let r = with_cookie(&gw, &doomed, Method::GET, "/api/v1/status", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = admin(
        &gw,
        &key,
        Method::DELETE,
        &format!("/api/v1/keys/{id2}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = with_cookie(&gw, &doomed, Method::GET, "/api/v1/status", &[], None).await;
    assert_eq!(r.error_code().as_deref(), Some("session_expired"));
    let r = with_cookie(&gw, &kept, Method::GET, "/api/v1/status", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    gw.assert_no_secrets();
}

#[tokio::test]
async fn the_console_is_served_with_strict_security_headers() {
    let up = Upstream::start().await;
    let (gw, key) = start(&up);

    let r = get(&gw.admin_url("/console"), &[]).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers["location"], "/console/");

    let page = get(&gw.admin_url("/console/"), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let html = page.text();
    assert!(html.contains("<script type=\"module\""), "{html}");
    assert!(!html.contains("<script>"), "no inline script");

    // Every file the page names is served, with its type.
    let css = get(&gw.admin_url("/console/console.css"), &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    let js = get(&gw.admin_url("/console/app.js"), &[]).await;
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    let missing = get(&gw.admin_url("/console/nope.js"), &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let escape = get(&gw.admin_url("/console/..%2Fmod.rs"), &[]).await;
    assert_eq!(escape.status, StatusCode::NOT_FOUND);

    let api = admin(&gw, &key, Method::GET, "/api/v1/status", None).await;
    // The console builds connector URLs from the proxy's bound address.
    assert_eq!(
        api.json()["proxy_listen"]
            .as_str()
            .map(|a| format!("http://{a}/x")),
        Some(gw.url("/x"))
    );
    let refused = get(&gw.admin_url("/api/v1/status"), &[]).await;
    for r in [&page, &css, &js, &missing, &api, &refused] {
        let csp = r.headers["content-security-policy"]
            .to_str()
            .expect("ascii");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn the_proxy_never_forwards_the_session_cookie() {
    let up = Upstream::start().await;
    let (mut gw, key) = start(&up);
    let (_, caller_key) = new_key(&mut gw, &key, "app", "caller").await;
    let auth = bearer(&caller_key);
    for (sent, expected) in [
        ("a=1; keygate_session=s3ss10n; b=2", Some("a=1; b=2")),
        ("keygate_session=s3ss10n", None),
        ("keygate_sessionx=1; c=3", Some("keygate_sessionx=1; c=3")),
    ] {
        let r = get(
            &gw.url("/svc/x"),
            &[("authorization", &auth), ("cookie", sent)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let seen = up
            .seen
            .lock()
            .expect("seen")
            .last()
            .cloned()
            .expect("a request");
        assert_eq!(seen.header("cookie").as_deref(), expected, "{sent}");
    }
}

/// `admin.tls`: the admin listener speaks HTTPS with its own certificate,
/// and the console's session cookie is then `Secure`.
#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "drains small responses the test asked for"
)]
async fn with_admin_tls_the_console_is_https_and_the_cookie_secure() {
    use http_body_util::{BodyExt, Full};
    let up = Upstream::start().await;
    let (ca, cert, key_pem) = common::upstream::make_certs();
    let cfg = yaml(&up.url()).replace(
        "admin: { listen: 127.0.0.1:0 }",
        "admin: { listen: 127.0.0.1:0, tls: { cert: admin-cert.pem, key: admin-key.pem } }",
    );
    let mut gw = Gateway::start_with(&cfg, &[], |dir| {
        std::fs::write(dir.join("admin-cert.pem"), &cert).expect("cert");
        std::fs::write(dir.join("admin-key.pem"), &key_pem).expect("key");
    });
    let key = initial_admin_key(&gw);
    gw.secrets = vec![key.clone()];
    let client = common::https_client(&ca);
    let url = |path: &str| format!("https://localhost:{}{path}", gw.admin.port());

    let req = http::Request::post(url("/console/session"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({ "key": key }).to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("https answer");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let set = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        set.ends_with("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let _ = resp.into_body().collect().await;

    let req = http::Request::get(url("/console/"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("https answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    // Plain HTTP to the TLS port gets no admin answer.
    let (status, _) = common::raw_request(
        gw.admin,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_ne!(status, 200);
    gw.assert_no_secrets();
}
