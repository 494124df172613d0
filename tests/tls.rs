//! TLS on both sides: an HTTPS upstream whose CA is trusted only through
//! the connector's `ca_file`, and keygate's own TLS listener.

mod common;

use bytes::Bytes;
use common::upstream::make_certs;
use common::{Gateway, Upstream, bearer, get, https_client, keygen};
use http::StatusCode;
use http_body_util::{BodyExt, Full};

fn yaml(up: &str, hash: &str, ca_line: &str, server_tls: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0 {server_tls} }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "tls-secret-xyz" }}, prefix: Bearer, header: Authorization }}
connectors:
  trusted:
    upstream: {up}
    tokens: [t]
    {ca_line}
  untrusted:
    upstream: {up}
    tokens: [t]
roles: {{ r: {{ allow: [ {{ connector: trusted }}, {{ connector: untrusted }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#
    )
}

#[tokio::test]
async fn https_upstream_trusted_by_ca_file_and_refused_without() {
    let up = Upstream::start_tls().await;
    let ca = up.ca_pem.clone().expect("ca");
    let (key, hash) = keygen("kg_");
    let cfg = yaml(&up.url(), &hash, "ca_file: ca.pem", "");
    let mut gw = Gateway::start_with(&cfg, &[], |dir| {
        std::fs::write(dir.join("ca.pem"), &ca).expect("ca")
    });
    gw.secrets = vec![key.clone(), "tls-secret-xyz".into()];

    let r = get(
        &gw.url("/trusted/v1/x"),
        &[("authorization", &bearer(&key))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer tls-secret-xyz")
    );
    assert_eq!(seen.version, http::Version::HTTP_2, "h2 negotiated by ALPN");

    let before = up.requests().len();
    let r = get(
        &gw.url("/untrusted/v1/x"),
        &[("authorization", &bearer(&key))],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.error_code().as_deref(), Some("upstream_unavailable"));
    assert_eq!(
        up.requests().len(),
        before,
        "an untrusted upstream never sees the request"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "drains a small response the test asked for"
)]
async fn tls_listener_serves_https() {
    let up = Upstream::start().await;
    let (ca, cert, key_pem) = make_certs();
    let (key, hash) = keygen("kg_");
    let cfg = yaml(
        &up.url(),
        &hash,
        "",
        ", tls: { cert: cert.pem, key: key.pem }",
    );
    let mut gw = Gateway::start_with(&cfg, &[], |dir| {
        std::fs::write(dir.join("cert.pem"), &cert).expect("cert");
        std::fs::write(dir.join("key.pem"), &key_pem).expect("key");
    });
    gw.secrets = vec![key.clone()];

    let client = https_client(&ca);
    let url = format!("https://127.0.0.1:{}/trusted/v1/over-tls", gw.proxy.port());
    let req = http::Request::get(url)
        .header("x-api-key", &key)
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = client.request(req).await.expect("https response");
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    assert_eq!(up.last().uri, "/v1/over-tls");
    assert_eq!(gw.finish(), Some(0));
}
