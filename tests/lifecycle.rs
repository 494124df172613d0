//! Process lifecycle with real signals: SIGTERM drains in-flight requests
//! and exits 0; SIGHUP reloads; a bad config keeps the last good one.

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Upstream, bearer, get, keygen};
use http::StatusCode;

fn yaml(up: &str, hash: &str, extra_connector: &str) -> String {
    let extra_grant = if extra_connector.is_empty() {
        ""
    } else {
        ", { connector: extra }"
    };
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 10s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "life-secret" }}, header: X-Token }}
connectors:
  api: {{ upstream: "{up}", tokens: [t] }}
{extra_connector}
roles: {{ r: {{ allow: [ {{ connector: api }} {extra_grant} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#
    )
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let extra = format!("  extra: {{ upstream: \"{}\", tokens: [t] }}", up.url());
    let mut gw = Gateway::start(&yaml(&up.url(), &hash, &extra));
    gw.secrets = vec![key.clone(), "life-secret".into()];
    let url = gw.url("/api/slow/1500");
    let auth = bearer(&key);
    let inflight = tokio::spawn(async move { get(&url, &[("authorization", &auth)]).await });
    // Wait until the upstream has the request, so it is truly in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.requests().is_empty() {
        assert!(Instant::now() < deadline, "request never reached upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal("TERM");
    let r = inflight.await.expect("join");
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the in-flight request completes after SIGTERM"
    );
    // New connections are refused once draining has begun.
    assert!(
        gw.wait_log("shutting down", 5),
        "keygate logs the start of the drain"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(gw.proxy).await.is_err(),
        "no new connections while draining"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn sighup_applies_a_change_and_bad_yaml_keeps_the_last_good_config() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let mut gw = Gateway::start(&yaml(&up.url(), &hash, ""));
    gw.secrets = vec![key.clone(), "life-secret".into()];
    let auth = bearer(&key);
    // `extra` is unknown until the reload.
    let r = get(&gw.url("/extra/v1"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let extra = format!("  extra: {{ upstream: \"{}\", tokens: [t] }}", up.url());
    gw.write_config(&yaml(&up.url(), &hash, &extra));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&gw.url("/extra/v1"), &[("authorization", &auth)]).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not apply the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Broken YAML: the reload is refused and the last good config serves.
    gw.write_config("connectors: [this is: not valid\n");
    gw.signal("HUP");
    assert!(
        gw.wait_log("config reload rejected", 10),
        "{}",
        gw.stderr_text()
    );
    let r = get(&gw.url("/extra/v1"), &[("authorization", &auth)]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the last good config keeps serving"
    );
    assert_eq!(gw.finish(), Some(0));
}
