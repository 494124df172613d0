//! Several replicas on one real PostgreSQL (SPEC §8, issue 13): three real
//! keygate processes on a server this test starts from Debian's packages
//! (tests/common/pg.rs), a real upstream, signals and a database stopped
//! and started under them. Without the server binaries the tests say so
//! and skip on a developer's machine; under `CI` they fail instead.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::pg::PgServer;
use common::{Gateway, Reply, Upstream, admin, bearer, get, initial_admin_key, send};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const MASTER: &str = "7f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const VALUE_A: &str = "sk_live_replica_value_A";
const VALUE_B: &str = "sk_live_replica_value_B";

fn yaml(up: &str, name: &str, store: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
store:
  postgres:
    url: {{ env: KEYGATE_DATABASE_URL }}
    replica: {name}
    {store}
  master_key: {{ env: KEYGATE_MASTER_KEY }}
  flush_interval: 500ms
tokens:
  runtime: {{ header: X-Runtime }}
connectors:
  svc: {{ upstream: "{up}", tokens: [runtime] }}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
clients:
  app: {{ roles: [caller] }}
"#
    )
}

struct Cluster {
    pg: PgServer,
    url: String,
    up: Upstream,
    store: String,
    replicas: Vec<Gateway>,
    key: String,
}

impl Cluster {
    /// A database, `n` replicas named r1.., the first one bootstrapped
    /// alone (it writes the initial admin key), and a value for the
    /// `runtime` token so every connector is ready.
    async fn start(n: usize, store: &str) -> Option<Cluster> {
        let pg = PgServer::start()?;
        let url = pg.create_database("keygate");
        let up = Upstream::start().await;
        let mut c = Cluster {
            pg,
            url,
            up,
            store: store.to_string(),
            replicas: Vec::new(),
            key: String::new(),
        };
        c.add();
        c.key = initial_admin_key(&c.replicas[0]);
        let r = c
            .admin(
                0,
                Method::PUT,
                "/api/v1/tokens/runtime/value",
                Some(json!({"value": VALUE_A})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        for _ in 1..n {
            c.add();
        }
        for i in 0..n {
            c.wait_ready(i, 15).await;
        }
        Some(c)
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("KEYGATE_DATABASE_URL", self.url.as_str()),
            ("KEYGATE_MASTER_KEY", MASTER),
        ]
    }

    /// Starts replica r<n+1> and waits for its listeners.
    fn add(&mut self) {
        let name = format!("r{}", self.replicas.len() + 1);
        let gw = Gateway::start_with(
            &yaml(&self.up.url(), &name, &self.store),
            &self.env(),
            |_| {},
        );
        self.replicas.push(gw);
    }

    async fn admin(&self, i: usize, method: Method, path: &str, body: Option<Value>) -> Reply {
        admin(&self.replicas[i], &self.key, method, path, body).await
    }

    async fn proxied(&self, i: usize, key: &str) -> Reply {
        get(
            &self.replicas[i].url("/svc/v1/x"),
            &[("authorization", &bearer(key))],
        )
        .await
    }

    async fn new_key(&self, i: usize) -> (String, String) {
        let r = self
            .admin(
                i,
                Method::POST,
                "/api/v1/keys",
                Some(json!({"client": "app", "name": "k"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let v = r.json();
        (
            v["key"].as_str().expect("key").to_string(),
            v["id"].as_str().expect("id").to_string(),
        )
    }

    /// Whether replica `i` answers `key`'s proxied request with `status`
    /// within `secs` (polled: a change takes milliseconds to arrive).
    async fn answers(&self, i: usize, key: &str, status: StatusCode, secs: u64) -> bool {
        eventually(secs, || async {
            self.proxied(i, key).await.status == status
        })
        .await
    }

    async fn readyz(&self, i: usize) -> Reply {
        get(&self.replicas[i].admin_url("/readyz"), &[]).await
    }

    async fn wait_ready(&self, i: usize, secs: u64) {
        let ok = eventually(secs, || async {
            self.readyz(i).await.status == StatusCode::OK
        })
        .await;
        assert!(
            ok,
            "r{} not ready: {}\n{}",
            i + 1,
            self.readyz(i).await.text(),
            self.replicas[i].stderr_text()
        );
    }
}

/// Polls `check` every 20 ms for up to `secs`: whether it came true.
async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_values_and_catalog_changes_reach_every_replica() {
    let Some(c) = Cluster::start(3, "").await else {
        return;
    };
    // A key made on r1 works on r2 and r3 (benches/replicas.rs measures how fast).
    let (key, id) = c.new_key(0).await;
    for i in 1..3 {
        let ok = c.answers(i, &key, StatusCode::OK, 3).await;
        assert!(ok, "key made on r1 not accepted by r{}", i + 1);
    }
    assert_eq!(c.up.last().header("x-runtime").as_deref(), Some(VALUE_A));

    // A value swapped on r2 is injected by r1 and r3.
    let r = c
        .admin(
            1,
            Method::PUT,
            "/api/v1/tokens/runtime/value",
            Some(json!({"value": VALUE_B})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for i in [0, 2] {
        let ok = eventually(3, || async {
            c.proxied(i, &key).await.status == StatusCode::OK
                && c.up.last().header("x-runtime").as_deref() == Some(VALUE_B)
        })
        .await;
        assert!(ok, "value swapped on r2 not injected by r{}", i + 1);
    }

    // A catalog object made on r3 serves on r1.
    let r = c
        .admin(
            2,
            Method::POST,
            "/api/v1/connectors",
            Some(json!({"name": "svc2", "upstream": c.up.url(), "tokens": ["runtime"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = c
        .admin(
            2,
            Method::PATCH,
            "/api/v1/roles/caller",
            Some(json!({"allow": [{"connector": "svc"}, {"connector": "svc2"}]})),
        )
        .await;
    // `caller` is the file's: read-only through the API on every replica.
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let ok = eventually(3, || async {
        c.admin(0, Method::GET, "/api/v1/connectors/svc2", None)
            .await
            .status
            == StatusCode::OK
    })
    .await;
    assert!(ok, "connector made on r3 not published on r1");

    // A roll on r1: the successor works on r3.
    let r = c
        .admin(
            0,
            Method::POST,
            &format!("/api/v1/keys/{id}/roll"),
            Some(json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let successor = r.json()["key"].as_str().expect("key").to_string();
    let ok = c.answers(2, &successor, StatusCode::OK, 3).await;
    assert!(ok, "rolled successor not accepted by r3");

    // Revocation is synchronous: 204 means the very next use fails everywhere.
    let r = c
        .admin(1, Method::DELETE, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    for i in 0..3 {
        let r = c.proxied(i, &key).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "r{} still accepts a revoked key",
            i + 1
        );
        let r = c.proxied(i, &successor).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "r{} still accepts the revoked successor",
            i + 1
        );
    }

    // Usage is merged: r1 sees last_used_at of a key used only on r3.
    let (key2, id2) = c.new_key(0).await;
    let ok = c.answers(2, &key2, StatusCode::OK, 3).await;
    assert!(ok);
    let ok = eventually(5, || async {
        let r = c
            .admin(0, Method::GET, "/api/v1/keys?limit=1000", None)
            .await;
        r.json()["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| k["id"] == id2 && !k["last_used_at"].is_null())
    })
    .await;
    assert!(ok, "r1 never saw the use of a key on r3");

    let status = c.admin(0, Method::GET, "/api/v1/status", None).await.json();
    assert_eq!(status["replica"]["name"], "r1");
    assert!(status["replica"]["applied"].as_u64().expect("applied") > 0);
    for gw in &c.replicas {
        assert!(!gw.stderr_text().contains(VALUE_A) && !gw.stderr_text().contains(&key));
        assert!(!gw.stderr_text().contains(MASTER));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_is_named_in_a_202_then_catches_up() {
    let Some(c) = Cluster::start(3, "ack_timeout: 1500ms").await else {
        return;
    };
    let (key, id) = c.new_key(0).await;
    let ok = c.answers(2, &key, StatusCode::OK, 3).await;
    assert!(ok);
    c.replicas[2].signal("STOP");
    let started = Instant::now();
    let r = c
        .admin(0, Method::DELETE, &format!("/api/v1/keys/{id}"), None)
        .await;
    let waited = started.elapsed();
    c.replicas[2].signal("CONT");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["pending_replicas"], json!(["r3"]), "{}", r.text());
    assert_eq!(r.json()["revoked"], json!([id]));
    assert!(
        waited >= Duration::from_millis(1450),
        "answered before the ack timeout: {waited:?}"
    );
    // The replicas that were up applied it before the answer.
    assert_eq!(c.proxied(1, &key).await.status, StatusCode::UNAUTHORIZED);
    // r3, resumed, catches up from its sequence and is ready again.
    let ok = c.answers(2, &key, StatusCode::UNAUTHORIZED, 3).await;
    assert!(
        ok,
        "r3 never applied the revocation: {}",
        c.replicas[2].stderr_text()
    );
    c.wait_ready(2, 5).await;
    // With everyone live again, a revocation is a 204.
    let (_, id2) = c.new_key(1).await;
    let r = c
        .admin(2, Method::DELETE, &format!("/api/v1/keys/{id2}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_replicas_serve_for_the_lease_then_turn_not_ready() {
    let Some(mut c) = Cluster::start(2, "lease: 3s\n    heartbeat: 200ms").await else {
        return;
    };
    let (key, _) = c.new_key(0).await;
    let ok = c.answers(1, &key, StatusCode::OK, 3).await;
    assert!(ok);
    c.pg.stop();
    let stopped = Instant::now();
    // Within the lease: valid keys keep working, never a 401.
    while stopped.elapsed() < Duration::from_millis(2000) {
        for i in 0..2 {
            let r = c.proxied(i, &key).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "r{} within the lease: {}",
                i + 1,
                r.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past it: not ready, and API keys answer 503, not 401.
    let ok = eventually(5, || async {
        c.readyz(1).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(ok, "r2 still ready long past its lease");
    let body = c.readyz(1).await.text();
    assert!(body.contains("lease"), "{body}");
    let r = c.proxied(1, &key).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("store_unavailable"));
    // The database back: ready again, and changes flow again.
    c.pg.start_again();
    for i in 0..2 {
        c.wait_ready(i, 20).await;
    }
    assert_eq!(c.proxied(1, &key).await.status, StatusCode::OK);
    let (key2, _) = c.new_key(0).await;
    let ok = c.answers(1, &key2, StatusCode::OK, 2).await;
    assert!(ok, "changes did not resume after the database came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_fails_no_proxied_request() {
    let Some(mut c) = Cluster::start(2, "heartbeat: 200ms").await else {
        return;
    };
    let (key, _) = c.new_key(0).await;
    let ok = c.answers(1, &key, StatusCode::OK, 3).await;
    assert!(ok);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..2 {
        let (url, key, stop) = (
            c.replicas[i].url("/svc/v1/x"),
            key.clone(),
            std::sync::Arc::clone(&stop),
        );
        load.push(tokio::spawn(async move {
            let client = common::client();
            let (mut ok, mut failed) = (0u32, Vec::new());
            for _ in 0..100_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = common::send_with(
                    &client,
                    Method::GET,
                    &url,
                    &[("authorization", &bearer(&key))],
                    bytes::Bytes::new(),
                )
                .await;
                if r.status == StatusCode::OK {
                    ok += 1;
                } else {
                    failed.push((r.status, r.text()));
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.pg.stop();
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.pg.start_again();
    for i in 0..2 {
        c.wait_ready(i, 20).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (i, task) in load.into_iter().enumerate() {
        let (ok, failed) = task.await.expect("load task");
        assert!(
            failed.is_empty(),
            "r{}: {} failed requests, first {:?}",
            i + 1,
            failed.len(),
            failed.first()
        );
        assert!(ok > 20, "r{}: only {ok} requests served", i + 1);
    }
    // Changes resume on both.
    let (key2, id2) = c.new_key(1).await;
    let ok = c.answers(0, &key2, StatusCode::OK, 2).await;
    assert!(ok, "a key made after the restart did not reach r1");
    let r = c
        .admin(0, Method::DELETE, &format!("/api/v1/keys/{id2}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(c.proxied(1, &key2).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_right_before_its_replica_is_killed_works_on_the_others() {
    let Some(mut c) = Cluster::start(3, "").await else {
        return;
    };
    let (key, _) = c.new_key(0).await;
    c.replicas[0].signal("KILL");
    for i in 1..3 {
        let ok = c.answers(i, &key, StatusCode::OK, 3).await;
        assert!(
            ok,
            "r{} does not accept a key whose 201 came from a killed replica",
            i + 1
        );
    }
    let _ = c.replicas[0].child.wait();
    // The dead replica is named for at most its lease; the others answer.
    let r = c.admin(1, Method::GET, "/api/v1/status", None).await;
    assert_eq!(r.status, StatusCode::OK);
    c.replicas.remove(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_on_two_replicas_editing_one_object_one_gets_412() {
    let Some(c) = Cluster::start(3, "").await else {
        return;
    };
    let r = c
        .admin(
            0,
            Method::POST,
            "/api/v1/connectors",
            Some(json!({"name": "shared", "upstream": c.up.url(), "tokens": ["runtime"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let etag_of = |r: &Reply| {
        r.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("etag")
            .to_string()
    };
    let mut tags = Vec::new();
    for i in 1..3 {
        let ok = eventually(3, || async {
            c.admin(i, Method::GET, "/api/v1/connectors/shared", None)
                .await
                .status
                == StatusCode::OK
        })
        .await;
        assert!(ok);
        tags.push(etag_of(
            &c.admin(i, Method::GET, "/api/v1/connectors/shared", None)
                .await,
        ));
    }
    assert_eq!(tags[0], tags[1]);
    let patch = |i: usize, timeout: &'static str| {
        let (url, key, tag) = (
            c.replicas[i].admin_url("/api/v1/connectors/shared"),
            c.key.clone(),
            tags[0].clone(),
        );
        async move {
            send(
                Method::PATCH,
                &url,
                &[
                    ("authorization", &bearer(&key)),
                    ("content-type", "application/json"),
                    ("if-match", &tag),
                ],
                json!({"timeouts": {"response": timeout}}).to_string(),
            )
            .await
        }
    };
    let (a, b) = tokio::join!(patch(1, "11s"), patch(2, "12s"));
    let mut codes = [a.status.as_u16(), b.status.as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 412], "{} / {}", a.text(), b.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_master_key_refuses_to_start() {
    let Some(c) = Cluster::start(1, "").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keygate.yaml");
    std::fs::write(&path, yaml(&c.up.url(), "r9", "")).expect("write");
    let out = std::process::Command::new(common::BIN)
        .args(["run", "-c"])
        .arg(&path)
        .env("KEYGATE_DATABASE_URL", &c.url)
        .env("KEYGATE_MASTER_KEY", "00".repeat(32))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key"), "{err}");
    assert!(!err.contains(&"00".repeat(32)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_at_start_a_replica_waits_not_ready() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let url = pg.create_database("keygate");
    let up = Upstream::start().await;
    pg.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keygate.yaml");
    std::fs::write(&path, yaml(&up.url(), "r1", "")).expect("write");
    let mut gw = Gateway::spawn_waiting(
        dir,
        path,
        &[
            ("KEYGATE_DATABASE_URL", &url),
            ("KEYGATE_MASTER_KEY", MASTER),
        ],
    );
    assert!(
        gw.wait_log("cannot open the PostgreSQL store", 10),
        "{}",
        gw.stderr_text()
    );
    let admin_addr = gw.wait_admin(10);
    let r = get(&format!("http://{admin_addr}/readyz"), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.text().contains("store"), "{}", r.text());
    assert_eq!(
        get(&format!("http://{admin_addr}/healthz"), &[])
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        !gw.stderr_text().contains(&url),
        "the database URL is logged"
    );
    pg.start_again();
    gw.wait_started();
    let key = initial_admin_key(&gw);
    let r = admin(
        &gw,
        &key,
        Method::PUT,
        "/api/v1/tokens/runtime/value",
        Some(json!({"value": VALUE_A})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ok = eventually(20, || async {
        get(&gw.admin_url("/readyz"), &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(
        ok,
        "not ready after the database came up: {}",
        gw.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_mint_one_admin_key() {
    let Some(pg) = PgServer::start() else {
        return;
    };
    let url = pg.create_database("keygate");
    let up = Upstream::start().await;
    let mut all: Vec<Gateway> = (1..=3)
        .map(|n| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("keygate.yaml");
            std::fs::write(&path, yaml(&up.url(), &format!("r{n}"), "")).expect("write");
            Gateway::spawn_waiting(
                dir,
                path,
                &[
                    ("KEYGATE_DATABASE_URL", &url),
                    ("KEYGATE_MASTER_KEY", MASTER),
                ],
            )
        })
        .collect();
    for gw in &mut all {
        gw.wait_started();
    }
    let minted: Vec<&Gateway> = all
        .iter()
        .filter(|gw| gw.dir.path().join("data/initial-admin.key").exists())
        .collect();
    assert_eq!(
        minted.len(),
        1,
        "one initial admin key, not one per replica"
    );
    let key = initial_admin_key(minted[0]);
    for gw in &all {
        let r = admin(gw, &key, Method::GET, "/api/v1/status", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_on_two_replicas_converge() {
    let Some(c) = Cluster::start(3, "").await else {
        return;
    };
    // A key revoked on r2 the moment r1 made it: revoked, not 404.
    for _ in 0..5 {
        let (key, id) = c.new_key(0).await;
        let r = c
            .admin(1, Method::DELETE, &format!("/api/v1/keys/{id}"), None)
            .await;
        assert!(
            r.status == StatusCode::NO_CONTENT || r.status == StatusCode::ACCEPTED,
            "{} {}",
            r.status,
            r.text()
        );
        for i in 0..3 {
            let ok = c.answers(i, &key, StatusCode::UNAUTHORIZED, 3).await;
            assert!(ok, "r{} accepts a revoked key", i + 1);
        }
    }
    // Two admins set the value on two replicas at once: every replica
    // ends up injecting the one value the store kept.
    let (key, _) = c.new_key(0).await;
    for round in 0..5 {
        let (a, b) = (format!("sk_race_a_{round}"), format!("sk_race_b_{round}"));
        let put = |i: usize, v: String| {
            let (url, admin_key) = (
                c.replicas[i].admin_url("/api/v1/tokens/runtime/value"),
                c.key.clone(),
            );
            async move {
                send(
                    Method::PUT,
                    &url,
                    &[
                        ("authorization", &bearer(&admin_key)),
                        ("content-type", "application/json"),
                    ],
                    json!({ "value": v }).to_string(),
                )
                .await
            }
        };
        let (ra, rb) = tokio::join!(put(0, a.clone()), put(1, b.clone()));
        assert_eq!(ra.status, StatusCode::OK, "{}", ra.text());
        assert_eq!(rb.status, StatusCode::OK, "{}", rb.text());
        let ok = eventually(3, || async {
            let mut seen = Vec::new();
            for i in 0..3 {
                if c.proxied(i, &key).await.status != StatusCode::OK {
                    return false;
                }
                seen.push(c.up.last().header("x-runtime"));
            }
            seen.iter().all(|v| *v == seen[0])
                && (seen[0].as_deref() == Some(&a) || seen[0].as_deref() == Some(&b))
        })
        .await;
        assert!(ok, "round {round}: the replicas inject different values");
    }
}
