//! Issue 10 hardening: secrets that must rotate without a restart, against
//! the real binary — a `user` token's `hs256_secret` file, a connector's
//! `ca_file` rewritten at the same path, and the TLS listener refusing a
//! renewal whose key does not match its certificate.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::jwt::{self, now_s};
use common::upstream::{self, make_certs};
use common::{Gateway, Upstream, bearer, get, https_client, initial_admin_key, keygen, send};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};

fn hs256(secret: &str) -> String {
    jwt::hs256(
        serde_json::json!({"sub": "u1", "exp": now_s() + 600}),
        secret,
    )
}

/// Writes `content` to `path` by rename, as editors and secret managers do.
fn replace_file(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Polls `f` every 100 ms for at most `secs`; whether it became true.
async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn reload(gw: &Gateway, admin_key: &str) {
    let r = send(
        Method::POST,
        &gw.admin_url("/api/v1/reload"),
        &[("authorization", &bearer(admin_key))],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

const OLD_SECRET: &str = "old-jwt-secret-0123456789";
const NEW_SECRET: &str = "new-jwt-secret-9876543210";
const NEWER_SECRET: &str = "newer-jwt-secret-5555555";

/// A leaked HS256 secret is rotated by rewriting its file: tokens signed
/// with the old secret are refused from then on, without a restart.
#[tokio::test]
async fn rewritten_hs256_secret_file_replaces_the_old_secret() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  end-user:
    type: user
    header: X-User-Token
    jwt: {{ hs256_secret: {{ file: secrets/jwt.secret }} }}
connectors:
  users: {{ upstream: "{up}", tokens: [end-user] }}
roles: {{ r: {{ allow: [ {{ connector: users }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        up = up.url()
    );
    let mut gw = Gateway::start_with(&cfg, &[], |dir| {
        std::fs::create_dir(dir.join("secrets")).expect("dir");
        std::fs::write(dir.join("secrets/jwt.secret"), format!("{OLD_SECRET}\n")).expect("secret");
    });
    gw.secrets = vec![
        key.clone(),
        OLD_SECRET.into(),
        NEW_SECRET.into(),
        NEWER_SECRET.into(),
    ];
    let secret_path = gw.dir.path().join("secrets/jwt.secret");
    let auth = bearer(&key);
    let call = |jwt: String| {
        let (url, auth) = (gw.url("/users/v1/me"), auth.clone());
        async move {
            get(
                &url,
                &[("authorization", &auth), ("keygate-token-end-user", &jwt)],
            )
            .await
        }
    };
    let (old_jwt, new_jwt, newer_jwt) = (hs256(OLD_SECRET), hs256(NEW_SECRET), hs256(NEWER_SECRET));
    assert_eq!(call(old_jwt.clone()).await.status, StatusCode::OK);
    assert_eq!(call(new_jwt.clone()).await.status, StatusCode::UNAUTHORIZED);

    // The file watcher picks the rewrite up.
    replace_file(&secret_path, NEW_SECRET);
    let rotated = eventually(10, || {
        let c = call(old_jwt.clone());
        async move { c.await.error_code().as_deref() == Some("invalid_user_token") }
    })
    .await;
    assert!(
        rotated,
        "the old secret is still accepted after the rewrite"
    );
    let r = call(new_jwt.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // A reload re-reads it too (no waiting for the watcher).
    let admin_key = initial_admin_key(&gw);
    replace_file(&secret_path, NEWER_SECRET);
    reload(&gw, &admin_key).await;
    let r = call(new_jwt.clone()).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_user_token"))
    );
    assert_eq!(call(newer_jwt.clone()).await.status, StatusCode::OK);
    assert_eq!(
        up.last().header("x-user-token").as_deref(),
        Some(newer_jwt.as_str())
    );
    gw.secrets.extend([admin_key, old_jwt, new_jwt, newer_jwt]);
    assert_eq!(gw.finish(), Some(0));
}

/// An HTTPS upstream whose certificate can be switched: every response
/// closes its connection, so each request is a new handshake with the
/// certificate current at that moment.
struct SwitchingUpstream {
    addr: SocketAddr,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SwitchingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_config(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    upstream::server_config(cert_pem, key_pem, &[b"http/1.1"])
}

impl SwitchingUpstream {
    async fn start(cert_pem: &str, key_pem: &str) -> SwitchingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Arc::new(Mutex::new(server_config(cert_pem, key_pem)));
        let current = Arc::clone(&config);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let cfg = Arc::clone(&current.lock().expect("lock"));
                tokio::spawn(async move {
                    let Ok(tls) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"{\"ok\":true}",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        SwitchingUpstream { addr, config, task }
    }

    fn switch(&self, cert_pem: &str, key_pem: &str) {
        *self.config.lock().expect("lock") = server_config(cert_pem, key_pem);
    }
}

/// A connector `ca_file` rewritten at the same path (the upstream moved to
/// a new CA) is used after a reload, and by the file watcher on its own.
#[tokio::test]
async fn connector_ca_file_rewritten_in_place_is_picked_up() {
    let (ca1, cert1, key1) = make_certs();
    let (ca2, cert2, key2) = make_certs();
    let (ca3, cert3, key3) = make_certs();
    let up = SwitchingUpstream::start(&cert1, &key1).await;
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "ca-rotation-secret-1" }}, prefix: Bearer }}
connectors:
  api: {{ upstream: "https://127.0.0.1:{port}", tokens: [t], ca_file: trust/ca.pem }}
roles: {{ r: {{ allow: [ {{ connector: api }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        port = up.addr.port()
    );
    let mut gw = Gateway::start_with(&cfg, &[], |dir| {
        std::fs::create_dir(dir.join("trust")).expect("dir");
        std::fs::write(dir.join("trust/ca.pem"), &ca1).expect("ca");
    });
    gw.secrets = vec![key.clone(), "ca-rotation-secret-1".into()];
    let ca_path = gw.dir.path().join("trust/ca.pem");
    let auth = bearer(&key);
    let call = || {
        let (url, auth) = (gw.url("/api/v1/x"), auth.clone());
        async move { get(&url, &[("authorization", &auth)]).await }
    };
    assert_eq!(call().await.status, StatusCode::OK);

    // The upstream moves to a certificate from another CA.
    up.switch(&cert2, &key2);
    let r = call().await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::BAD_GATEWAY, Some("upstream_unavailable")),
        "not trusted yet"
    );
    // The operator rewrites ca.pem at the same path and reloads.
    replace_file(&ca_path, &ca2);
    let admin_key = initial_admin_key(&gw);
    reload(&gw, &admin_key).await;
    let r = call().await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the new CA content is used after a reload: {}",
        r.text()
    );

    // Without a reload: the watcher notices the new content.
    up.switch(&cert3, &key3);
    assert_eq!(call().await.status, StatusCode::BAD_GATEWAY);
    replace_file(&ca_path, &ca3);
    let picked = eventually(10, || {
        let c = call();
        async move { c.await.status == StatusCode::OK }
    })
    .await;
    assert!(picked, "the watcher did not pick up the rewritten ca_file");
    gw.secrets.push(admin_key);
    assert_eq!(gw.finish(), Some(0));
}

async fn status(gw: &Gateway, admin_key: &str) -> serde_json::Value {
    get(
        &gw.admin_url("/api/v1/status"),
        &[("authorization", &bearer(admin_key))],
    )
    .await
    .json()
}

/// Whether an HTTPS request trusting only `ca` succeeds (fresh client: a
/// new handshake, so the certificate served now is checked).
#[expect(
    clippy::disallowed_methods,
    reason = "drains a small response the test asked for"
)]
async fn https_ok(gw: &Gateway, ca: &str, key: &str) -> bool {
    let url = format!("https://127.0.0.1:{}/api/v1/tls", gw.proxy.port());
    let req = http::Request::get(url)
        .header("x-api-key", key)
        .body(Full::new(Bytes::new()))
        .expect("req");
    match tokio::time::timeout(Duration::from_secs(10), https_client(ca).request(req)).await {
        Ok(Ok(resp)) => {
            let ok = resp.status() == StatusCode::OK;
            let _ = resp.into_body().collect().await;
            ok
        }
        _ => false,
    }
}

/// A renewal whose key does not belong to its certificate is refused: the
/// last good pair keeps serving and the status says why.
#[tokio::test]
async fn tls_renewal_with_a_mismatched_key_is_refused() {
    let up = Upstream::start().await;
    let (ca1, cert1, key1) = make_certs();
    let (ca2, cert2, key2) = make_certs();
    let (key, hash) = keygen("kg_");
    let cfg = format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s, tls: {{ cert: tls/cert.pem, key: tls/key.pem }} }}
admin: {{ listen: 127.0.0.1:0 }}
connectors:
  api: {{ upstream: "{up}" }}
roles: {{ r: {{ allow: [ {{ connector: api }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        up = up.url()
    );
    let mut gw = Gateway::start_with(&cfg, &[], |dir| {
        std::fs::create_dir(dir.join("tls")).expect("dir");
        std::fs::write(dir.join("tls/cert.pem"), &cert1).expect("cert");
        std::fs::write(dir.join("tls/key.pem"), &key1).expect("key");
    });
    gw.secrets = vec![key.clone()];
    let admin_key = initial_admin_key(&gw);
    let tls_dir = gw.dir.path().join("tls");
    assert!(https_ok(&gw, &ca1, &key).await);
    let st = status(&gw, &admin_key).await;
    assert!(st["tls"]["error"].is_null(), "{st}");
    assert!(st["tls"]["loaded_at"].is_string(), "{st}");

    // Half a renewal: the new certificate, the old key.
    replace_file(&tls_dir.join("cert.pem"), &cert2);
    let refused = eventually(10, || {
        let gw = &gw;
        let admin_key = admin_key.clone();
        async move {
            status(gw, &admin_key).await["tls"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not match"))
        }
    })
    .await;
    assert!(refused, "the mismatch is not reported in /api/v1/status");
    assert!(
        https_ok(&gw, &ca1, &key).await,
        "the last good certificate keeps serving"
    );
    assert!(
        !https_ok(&gw, &ca2, &key).await,
        "the new one is not served"
    );

    // The renewal completes: the new pair is taken and the error cleared.
    replace_file(&tls_dir.join("key.pem"), &key2);
    let renewed = eventually(10, || {
        let gw = &gw;
        let admin_key = admin_key.clone();
        async move { status(gw, &admin_key).await["tls"]["error"].is_null() }
    })
    .await;
    assert!(renewed, "the matching pair was not taken");
    assert!(https_ok(&gw, &ca2, &key).await);
    assert!(!https_ok(&gw, &ca1, &key).await);
    gw.secrets.push(admin_key);
    assert_eq!(gw.finish(), Some(0));
}

fn reload_failures(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"keygate_config_reloads_total{result="failure"} "#))
        .and_then(|v| v.trim().parse().ok())
}

/// A reload refused after it parsed (the new config names another
/// `ca_file`, and that file is not PEM) is tried once, then again only
/// when a file changes: not once per watcher poll.
#[tokio::test]
async fn a_refused_reload_naming_another_ca_file_is_not_retried_every_poll() {
    let (ca1, _, _) = make_certs();
    let (ca2, _, _) = make_certs();
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let cfg = |ca: &str| {
        format!(
            r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "refused-reload-secret" }}, prefix: Bearer }}
connectors:
  api: {{ upstream: "{up}", tokens: [t], ca_file: {ca} }}
roles: {{ r: {{ allow: [ {{ connector: api }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
            up = up.url()
        )
    };
    let mut gw = Gateway::start_with(&cfg("trust/a.pem"), &[], |dir| {
        std::fs::create_dir(dir.join("trust")).expect("dir");
        std::fs::write(dir.join("trust/a.pem"), &ca1).expect("ca");
        std::fs::write(dir.join("trust/b.pem"), "not a certificate\n").expect("ca");
    });
    gw.secrets = vec![key.clone(), "refused-reload-secret".into()];
    let metrics = || {
        let url = gw.admin_url("/metrics");
        async move { reload_failures(&get(&url, &[]).await.text()) }
    };
    assert_eq!(metrics().await, Some(0.0));

    // The new config names b.pem, which is not PEM: refused.
    gw.write_config(&cfg("trust/b.pem"));
    assert!(
        eventually(10, || async { metrics().await == Some(1.0) }).await,
        "the refused reload is counted"
    );
    // Three seconds is three watcher polls: a count, not a timing bound.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(metrics().await, Some(1.0), "retried without any change");
    assert_eq!(gw.count_log("config reload rejected"), 1);
    let r = get(&gw.url("/api/v1/x"), &[("authorization", &bearer(&key))]).await;
    assert_eq!(r.status, StatusCode::OK, "the last good config serves");

    // Fixing b.pem is a change: the reload is tried again and succeeds.
    replace_file(&gw.dir.path().join("trust/b.pem"), &ca2);
    assert!(gw.wait_log("config reloaded", 10), "retried on the change");
    assert_eq!(metrics().await, Some(1.0));
    assert_eq!(gw.finish(), Some(0));
}
