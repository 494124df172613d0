//! Live rotation (issue 3): token values re-read from watched files and
//! config reloads, hot-swapped with zero failed requests. Real files,
//! real renames and symlink swaps, real keygate process.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Gateway, Upstream, bearer, get, keygen};
use http::StatusCode;
use http_body_util::BodyExt;

/// Writes by rename, as editors and config management do.
fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn base_yaml(up: &str, hash: &str, secret_path: &str, extra: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 10s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  filetok: {{ value: {{ file: "{secret_path}" }}, prefix: Bearer, header: Authorization }}
connectors:
  stable: {{ upstream: "{up}", tokens: [filetok] }}
{extra}
roles: {{ r: {{ allow: [ {{ connector: stable }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#
    )
}

/// Polls until the upstream sees `want` in Authorization, at most `limit`.
async fn until_seen(
    gw: &Gateway,
    up: &Upstream,
    auth: &str,
    want: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let r = get(&gw.url("/stable/v1/poll"), &[("authorization", auth)]).await;
        if r.status == StatusCode::OK && up.last().header("authorization").as_deref() == Some(want)
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "value {want:?} not used within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn file_token_rewritten_by_rename_is_used_within_a_second() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let mut gw = Gateway::start_with(&base_yaml(&up.url(), &hash, "secrets/tok", ""), &[], |d| {
        std::fs::create_dir_all(d.join("secrets")).expect("dir");
        std::fs::write(d.join("secrets/tok"), "first-value\n").expect("write");
    });
    gw.secrets = vec![key.clone(), "first-value".into(), "second-value".into()];
    let auth = bearer(&key);
    until_seen(
        &gw,
        &up,
        &auth,
        "Bearer first-value",
        Duration::from_secs(2),
    )
    .await;
    write_atomic(&gw.dir.path().join("secrets/tok"), "second-value\n");
    let took = until_seen(
        &gw,
        &up,
        &auth,
        "Bearer second-value",
        Duration::from_secs(1),
    )
    .await;
    assert!(took < Duration::from_secs(1));
    assert_eq!(gw.finish(), Some(0));
}

/// Kubernetes secret volume layout: `name -> ..data/name`, `..data -> ..<ts>`.
fn k8s_write(dir: &Path, generation: usize, files: &[(&str, String)]) {
    let ts = dir.join(format!("..gen_{generation}"));
    std::fs::create_dir_all(&ts).expect("dir");
    for (name, value) in files {
        std::fs::write(ts.join(name), value).expect("write");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen_{generation}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
    if generation > 1 {
        let _ = std::fs::remove_dir_all(dir.join(format!("..gen_{}", generation - 1)));
    }
}

#[tokio::test]
async fn kubernetes_symlink_swap_changes_two_values_together() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let yaml = format!(
        r#"
server: {{ listen: 127.0.0.1:0 }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  id: {{ value: {{ file: secret/client_id }}, header: X-Client-Id }}
  sec: {{ value: {{ file: secret/client_secret }}, header: X-Client-Secret }}
connectors:
  stable: {{ upstream: "{}", tokens: [id, sec] }}
roles: {{ r: {{ allow: [ {{ connector: stable }} ] }} }}
clients: {{ c: {{ roles: [r], keys: [ {{ name: k, sha256: "{hash}" }} ] }} }}
"#,
        up.url()
    );
    let mut gw = Gateway::start_with(&yaml, &[], |d| {
        let s = d.join("secret");
        std::fs::create_dir_all(&s).expect("dir");
        k8s_write(
            &s,
            1,
            &[
                ("client_id", "id-1".into()),
                ("client_secret", "secret-1".into()),
            ],
        );
    });
    gw.secrets = vec![key.clone()];
    let dir = gw.dir.path().join("secret");
    let auth = bearer(&key);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Load while the secret is swapped 30 times.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = gw.url("/stable/v1/pair");
        let auth = auth.clone();
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let c = common::client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = common::send_with(
                    &c,
                    http::Method::GET,
                    &url,
                    &[("authorization", &auth)],
                    Bytes::new(),
                )
                .await;
                assert_eq!(r.status, StatusCode::OK);
                n += 1;
            }
            n
        }));
    }
    for g in 2..=31 {
        k8s_write(
            &dir,
            g,
            &[
                ("client_id", format!("id-{g}")),
                ("client_secret", format!("secret-{g}")),
            ],
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Keep the load on until the last swap is in use (polled, bounded),
    // rather than sleeping for a watcher poll to come round.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !up
        .requests()
        .iter()
        .any(|s| s.header("x-client-id").as_deref() == Some("id-31"))
    {
        assert!(
            Instant::now() < deadline,
            "the last swap was not applied within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("join");
    }
    assert!(total > 50, "load ran ({total} requests)");
    let mut generations = HashSet::new();
    for seen in up.requests() {
        let id = seen.header("x-client-id").expect("id");
        let sec = seen.header("x-client-secret").expect("secret");
        assert_eq!(
            id.trim_start_matches("id-"),
            sec.trim_start_matches("secret-"),
            "torn pair: {id} / {sec}"
        );
        generations.insert(id);
    }
    assert!(generations.contains("id-31"), "the last swap is applied");
    assert!(
        generations.len() > 2,
        "values rotated under load: {generations:?}"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn secret_file_created_after_start_is_picked_up_and_readyz_follows() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let mut gw = Gateway::start(&base_yaml(&up.url(), &hash, "later/not-yet", ""));
    gw.secrets = vec![key.clone(), "arrived-late".into()];
    let auth = bearer(&key);
    let r = get(&gw.url("/stable/v1/x"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code().as_deref(), Some("credential_unavailable"));
    let r = get(&gw.admin_url("/readyz"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        get(&gw.admin_url("/healthz"), &[]).await.status,
        StatusCode::OK
    );

    // The folder does not exist either: both appear now.
    let dir = gw.dir.path().join("later");
    std::fs::create_dir_all(&dir).expect("dir");
    write_atomic(&dir.join("not-yet"), "arrived-late");
    until_seen(
        &gw,
        &up,
        &auth,
        "Bearer arrived-late",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        get(&gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn zero_failures_while_tokens_and_config_change() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let yaml_for = |i: usize| {
        let extra = if i.is_multiple_of(2) {
            String::new()
        } else {
            format!(
                "  extra-{i}: {{ upstream: \"{}\", tokens: [filetok], listen: \"127.0.0.1:0\" }}\n  more-{i}: {{ upstream: \"{}\" }}",
                up.url(),
                up.url()
            )
        };
        base_yaml(&up.url(), &hash, "secrets/tok", &extra)
    };
    let mut gw = Gateway::start_with(&yaml_for(0), &[], |d| {
        std::fs::create_dir_all(d.join("secrets")).expect("dir");
        std::fs::write(d.join("secrets/tok"), "v-0").expect("write");
    });
    gw.secrets = vec![key.clone()];
    let auth = bearer(&key);
    let deadline = Instant::now() + Duration::from_secs(5);
    let failures = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = gw.url("/stable/v1/load");
        let auth = auth.clone();
        let failures = Arc::clone(&failures);
        let ok = Arc::clone(&ok);
        tasks.push(tokio::spawn(async move {
            let c = common::client();
            while Instant::now() < deadline {
                let r = common::send_with(
                    &c,
                    http::Method::GET,
                    &url,
                    &[("authorization", &auth)],
                    Bytes::new(),
                )
                .await;
                if r.status == StatusCode::OK {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("non-2xx: {} {}", r.status, r.text());
                }
            }
        }));
    }
    let secret_path = gw.dir.path().join("secrets/tok");
    let mut written: HashSet<String> = HashSet::from(["Bearer v-0".to_string()]);
    let mut config_writes = 0;
    for i in 1..=100 {
        write_atomic(&secret_path, &format!("v-{i}"));
        written.insert(format!("Bearer v-{i}"));
        if i % 5 == 0 {
            gw.write_config(&yaml_for(i / 5));
            config_writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(45)).await;
    }
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(config_writes, 20);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every request answered 2xx"
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "the load ran");
    let mut distinct = HashSet::new();
    for seen in up.requests() {
        let v = seen.header("authorization").expect("authorization");
        assert!(
            written.contains(&v),
            "upstream saw a value never written (torn or empty)"
        );
        distinct.insert(v);
    }
    assert!(
        distinct.len() > 10,
        "values rotated during the run: {}",
        distinct.len()
    );
    assert!(
        gw.count_log("config reloaded") >= 10,
        "config reloads happened: {}",
        gw.count_log("config reloaded")
    );
    assert_eq!(gw.count_log("config reload rejected"), 0);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "drains a stream of known length the test's upstream produces"
)]
async fn in_flight_requests_keep_their_values_and_streams_survive_reloads() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let mut gw = Gateway::start_with(&base_yaml(&up.url(), &hash, "tok", ""), &[], |d| {
        std::fs::write(d.join("tok"), "old-value").expect("write");
    });
    gw.secrets = vec![key.clone(), "old-value".into(), "new-value".into()];
    let auth = bearer(&key);

    let url = gw.url("/stable/slow/2000");
    let a = auth.clone();
    let slow = tokio::spawn(async move { get(&url, &[("authorization", &a)]).await });
    let drip_url = gw.url("/stable/drip/40/50");
    let a = auth.clone();
    let drip = tokio::spawn(async move {
        let c = common::client();
        let req = http::Request::get(drip_url)
            .header("authorization", a)
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("req");
        let resp = c.request(req).await.expect("drip response");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body()
            .collect()
            .await
            .expect("drip body")
            .to_bytes()
    });
    // Both are in flight once the upstream has them (polled, bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !["/slow/", "/drip/"]
        .iter()
        .all(|p| up.requests().iter().any(|s| s.uri.starts_with(p)))
    {
        assert!(Instant::now() < deadline, "requests never reached upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Change the value and the config while both are in flight.
    write_atomic(&gw.dir.path().join("tok"), "new-value");
    let extra = format!("  other: {{ upstream: \"{}\" }}", up.url());
    gw.write_config(&base_yaml(&up.url(), &hash, "tok", &extra));
    until_seen(&gw, &up, &auth, "Bearer new-value", Duration::from_secs(2)).await;
    assert!(gw.wait_log("config reloaded", 3));

    let r = slow.await.expect("join");
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the slow request completes across the swap"
    );
    let slow_seen = up
        .requests()
        .into_iter()
        .find(|s| s.uri.starts_with("/slow/"))
        .expect("slow seen");
    assert_eq!(
        slow_seen.header("authorization").as_deref(),
        Some("Bearer old-value"),
        "it used the value it started with"
    );
    let body = drip.await.expect("join");
    assert_eq!(
        body.len(),
        40 * 1024,
        "the streaming response kept streaming across the reload"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn invalid_yaml_keeps_serving_and_a_fix_applies_without_signal() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let mut gw = Gateway::start_with(&base_yaml(&up.url(), &hash, "tok", ""), &[], |d| {
        std::fs::write(d.join("tok"), "val").expect("write");
    });
    gw.secrets = vec![key.clone()];
    let auth = bearer(&key);
    gw.write_config("tokens: {{{ broken\n");
    assert!(
        gw.wait_log("config reload rejected", 3),
        "{}",
        gw.stderr_text()
    );
    let r = get(&gw.url("/stable/v1/x"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::OK, "last good config keeps serving");
    // A validation error (not YAML syntax) is refused the same way, with position.
    gw.write_config(&base_yaml(
        &up.url(),
        &hash,
        "tok",
        "  bad: { upstream: \"ftp://x\" }",
    ));
    assert!(
        gw.wait_log("must use http or https", 3),
        "{}",
        gw.stderr_text()
    );
    let r = get(&gw.url("/stable/v1/x"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, StatusCode::OK);
    // Fixed: applied by the watcher alone.
    let extra = format!("  added: {{ upstream: \"{}\" }}", up.url());
    gw.write_config(&base_yaml(&up.url(), &hash, "tok", &extra));
    assert!(gw.wait_log("config reloaded", 3), "{}", gw.stderr_text());
    let r = get(&gw.url("/added/v1/x"), &[("authorization", &auth)]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the new connector exists (the role does not grant it)"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn dedicated_listeners_follow_reloads() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let side = format!(
        "  side: {{ upstream: \"{}\", listen: \"127.0.0.1:0\", auth: none }}",
        up.url()
    );
    let mut gw = Gateway::start_with(&base_yaml(&up.url(), &hash, "tok", &side), &[], |d| {
        std::fs::write(d.join("tok"), "val").expect("write");
    });
    gw.secrets = vec![key.clone()];
    let side_addr = gw.connectors["side"];
    assert_eq!(
        get(&format!("http://{side_addr}/a"), &[]).await.status,
        StatusCode::OK
    );

    let other = format!(
        "  other: {{ upstream: \"{}\", listen: \"127.0.0.1:0\", auth: none }}",
        up.url()
    );
    gw.write_config(&base_yaml(&up.url(), &hash, "tok", &other));
    assert!(
        gw.wait_log("connector listener closed", 3),
        "{}",
        gw.stderr_text()
    );
    assert!(gw.wait_log("\"connector\":\"other\"", 3));
    gw.refresh_connectors();
    assert!(!gw.connectors.contains_key("side"));
    assert!(
        tokio::net::TcpStream::connect(side_addr).await.is_err(),
        "removed connector's port is released"
    );
    let other_addr = gw.connectors["other"];
    assert_eq!(
        get(&format!("http://{other_addr}/b"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(up.last().uri, "/b");

    // A port that cannot be bound rejects the whole reload.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = blocker.local_addr().expect("addr");
    let clash = format!(
        "  other: {{ upstream: \"{}\", listen: \"127.0.0.1:0\", auth: none }}\n  clash: {{ upstream: \"{}\", listen: \"{taken}\", auth: none }}",
        up.url(),
        up.url()
    );
    gw.write_config(&base_yaml(&up.url(), &hash, "tok", &clash));
    assert!(gw.wait_log("cannot listen on", 3), "{}", gw.stderr_text());
    assert_eq!(
        get(&format!("http://{other_addr}/c"), &[]).await.status,
        StatusCode::OK,
        "nothing changed"
    );
    assert_eq!(
        get(&gw.url("/clash/x"), &[("authorization", &bearer(&key))])
            .await
            .status,
        StatusCode::NOT_FOUND,
        "the rejected reload added nothing"
    );
    drop(blocker);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn tls_certificate_replaced_on_disk_is_served_to_new_connections() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let (ca1, cert1, key1) = common::upstream::make_certs();
    let (ca2, cert2, key2) = common::upstream::make_certs();
    let yaml = base_yaml(&up.url(), &hash, "tok", "").replace(
        "server: { listen: 127.0.0.1:0,",
        "server: { listen: 127.0.0.1:0, tls: { cert: tls/cert.pem, key: tls/key.pem },",
    );
    let mut gw = Gateway::start_with(&yaml, &[], |d| {
        std::fs::write(d.join("tok"), "val").expect("write");
        std::fs::create_dir_all(d.join("tls")).expect("dir");
        std::fs::write(d.join("tls/cert.pem"), &cert1).expect("cert");
        std::fs::write(d.join("tls/key.pem"), &key1).expect("key");
    });
    gw.secrets = vec![key.clone()];
    let url = format!("https://127.0.0.1:{}/stable/v1/tls", gw.proxy.port());
    let call = |ca: String| {
        let url = url.clone();
        let key = key.clone();
        async move {
            let c = common::https_client(&ca);
            let req = http::Request::get(url)
                .header("x-api-key", key)
                .body(http_body_util::Full::new(Bytes::new()))
                .expect("req");
            c.request(req).await.map(|r| r.status())
        }
    };
    assert_eq!(
        call(ca1.clone()).await.expect("CA1 trusted"),
        StatusCode::OK
    );
    // Keep one connection open across the swap.
    let held = common::https_client(&ca1);
    let req = http::Request::get(url.clone())
        .header("x-api-key", key.clone())
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("req");
    assert_eq!(
        held.request(req).await.expect("held").status(),
        StatusCode::OK
    );

    let dir = gw.dir.path().join("tls");
    write_atomic(&dir.join("key.pem"), &key2);
    write_atomic(&dir.join("cert.pem"), &cert2);
    let start = Instant::now();
    loop {
        if call(ca2.clone()).await.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "new certificate not served: {}",
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        call(ca1.clone()).await.is_err(),
        "the old certificate is no longer served"
    );
    // The connection opened before the swap still works.
    let req = http::Request::get(url.clone())
        .header("x-api-key", key.clone())
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("req");
    assert_eq!(
        held.request(req).await.expect("held after swap").status(),
        StatusCode::OK
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn shipped_config_runs_and_answers_healthz() {
    // The shipped file, with its ports moved to free ones so the test never
    // collides with anything on the machine.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/keygate.yaml"))
        .expect("shipped config");
    let text = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0");
    let gw = Gateway::start(&text);
    let r = get(&gw.admin_url("/healthz"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    let r = get(&gw.admin_url("/readyz"), &[]).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "STRIPE_API_KEY is unset here"
    );
    assert_eq!(gw.finish(), Some(0));
}
