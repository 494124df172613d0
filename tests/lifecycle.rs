//! Process lifecycle with real signals: SIGTERM drains in-flight requests
//! and exits 0; SIGHUP reloads; a bad config keeps the last good one.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Upstream, bearer, get, initial_admin_key, keygen};
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
    assert!(
        gw.wait_log("shutting down", 5),
        "keygate logs the start of the drain"
    );
    // New connections are refused while the drain is still under way: the
    // request is in flight and the process alive (once it has exited, a
    // refused connection would prove nothing).
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(gw.proxy).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "new connections still accepted while draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !inflight.is_finished(),
        "checked while the request is in flight"
    );
    assert!(
        gw.child.try_wait().expect("wait").is_none(),
        "checked while keygate is draining, not after it exited"
    );
    let r = inflight.await.expect("join");
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the in-flight request completes after SIGTERM"
    );
    assert_eq!(gw.finish(), Some(0));
}

/// `/api/v1/status`.
async fn status(gw: &Gateway, admin_key: &str) -> serde_json::Value {
    let r = get(
        &gw.admin_url("/api/v1/status"),
        &[("authorization", &bearer(admin_key))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// Reloads logged with `"trigger": "signal"`: applied (`ok`) or rejected.
fn signal_reloads(gw: &Gateway, ok: bool) -> usize {
    let message = if ok {
        "config reloaded"
    } else {
        "config reload rejected; the last good config keeps serving"
    };
    gw.stderr
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["trigger"] == "signal" && v["fields"]["message"] == message)
        .count()
}

/// Sends SIGHUP and waits for one more reload logged as coming from it.
/// Writing the config also wakes the file watcher, so a changed route alone
/// would not show that the signal did anything; the log keeps every
/// reload with its trigger (the status only the last, which a watcher
/// reload racing the signal could overwrite).
async fn hup_and_wait(gw: &Gateway, ok: bool) {
    let before = signal_reloads(gw, ok);
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while signal_reloads(gw, ok) == before {
        assert!(
            Instant::now() < deadline,
            "no reload (ok={ok}) came from SIGHUP:\n{}",
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sighup_applies_a_change_and_bad_yaml_keeps_the_last_good_config() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let mut gw = Gateway::start(&yaml(&up.url(), &hash, ""));
    let admin_key = initial_admin_key(&gw);
    gw.secrets = vec![key.clone(), admin_key.clone(), "life-secret".into()];
    let auth = bearer(&key);
    let st = status(&gw, &admin_key).await;
    assert_eq!(st["last_reload"]["trigger"], "start", "{st}");
    // `extra` is unknown until the reload.
    let r = get(&gw.url("/extra/v1"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let extra = format!("  extra: {{ upstream: \"{}\", tokens: [t] }}", up.url());
    gw.write_config(&yaml(&up.url(), &hash, &extra));
    hup_and_wait(&gw, true).await;
    let r = get(&gw.url("/extra/v1"), &[("authorization", &auth)]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the config is applied once the SIGHUP reload is logged"
    );

    // SIGHUP on an unchanged file reloads too (the watcher would not: it
    // reloads on a content change only), and the status says so.
    let before = status(&gw, &admin_key).await["generation"]
        .as_u64()
        .expect("generation");
    hup_and_wait(&gw, true).await;
    let st = status(&gw, &admin_key).await;
    assert_eq!(st["last_reload"]["trigger"], "signal", "{st}");
    assert_eq!(st["last_reload"]["ok"], true, "{st}");
    assert!(
        st["generation"].as_u64().expect("generation") > before,
        "{st}"
    );

    // Broken YAML: the reload is refused and the last good config serves.
    gw.write_config("connectors: [this is: not valid\n");
    hup_and_wait(&gw, false).await;
    let r = get(&gw.url("/extra/v1"), &[("authorization", &auth)]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the last good config keeps serving"
    );
    let st = status(&gw, &admin_key).await;
    assert_eq!(st["last_reload"]["ok"], false, "{st}");
    assert!(
        !st["last_reload"]["errors"]
            .as_array()
            .expect("errors")
            .is_empty(),
        "{st}"
    );
    assert_eq!(gw.finish(), Some(0));
}
