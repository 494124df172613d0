//! API key lifecycle (SPEC §4, §5 key routes) against the real binary and
//! its real SQLite file: bootstrap, admin authentication, create (shown
//! once), list, revoke (next use 401), roll with grace, expiry, restarts
//! (graceful and SIGKILL), batched last-used, bad input, and the CLI.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{BIN, Gateway, Reply, Upstream, admin, bearer, get, initial_admin_key, keygen, send};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn yaml(up: &str, extra_clients: &str, keys_section: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
{keys_section}
tokens:
  t: {{ value: {{ literal: "upstream-secret-keys" }}, header: X-Token }}
connectors:
  svc: {{ upstream: "{up}", tokens: [t] }}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
  reader: {{ allow: [ {{ connector: svc, methods: [GET] }} ] }}
  ops: {{ admin: true }}
clients:
  app: {{ roles: [caller, reader] }}
  nobody-admin: {{ roles: [caller] }}
{extra_clients}
"#
    )
}

async fn create(gw: &Gateway, admin_key: &str, body: Value) -> Value {
    let r = admin(gw, admin_key, Method::POST, "/api/v1/keys", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

async fn call(gw: &Gateway, key: &str) -> Reply {
    get(&gw.url("/svc/v1/x"), &[("authorization", &bearer(key))]).await
}

fn start(up: &Upstream) -> (Gateway, String) {
    let mut gw = Gateway::start(&yaml(&up.url(), "", "keys: { max_ttl: 30d }"));
    let admin_key = initial_admin_key(&gw);
    gw.secrets = vec![admin_key.clone(), "upstream-secret-keys".into()];
    (gw, admin_key)
}

fn db_bytes(gw: &Gateway) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["keygate.db", "keygate.db-wal"] {
        if let Ok(b) = std::fs::read(gw.dir.path().join("data").join(f)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn bootstrap_key_is_written_once_private_and_never_logged() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let path = gw.dir.path().join("data/initial-admin.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).expect("file").permissions().mode() & 0o777,
        0o600
    );
    assert!(
        gw.stderr_text().contains("initial-admin.key"),
        "the path is logged"
    );
    assert!(admin_key.starts_with("kg_"));
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["keys"][0]["client"], "keygate-admin");

    // A restart does not mint another admin key.
    std::fs::remove_file(&path).expect("operator deletes the file");
    gw.restart(false);
    assert!(!path.exists(), "no second bootstrap key");
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::OK, "the first admin key still works");
    assert_eq!(r.json()["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn no_bootstrap_when_config_declares_an_admin_key() {
    let up = Upstream::start().await;
    let (key, hash) = keygen("kg_");
    let extra =
        format!("  ops-team: {{ roles: [ops], keys: [ {{ name: laptop, sha256: \"{hash}\" }} ] }}");
    let mut gw = Gateway::start(&yaml(&up.url(), &extra, ""));
    gw.secrets = vec![key.clone()];
    assert!(!gw.dir.path().join("data/initial-admin.key").exists());
    let r = admin(&gw, &key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let keys = r.json()["keys"].clone();
    assert_eq!(keys[0]["source"], "config");
    // A declared key cannot be revoked through the API.
    let id = keys[0]["id"].as_str().expect("id").to_string();
    let r = admin(
        &gw,
        &key,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_code().as_deref(), Some("conflict"));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn admin_api_needs_an_admin_key_and_is_not_on_the_proxy() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let r = get(&gw.admin_url("/api/v1/keys"), &[]).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::UNAUTHORIZED, Some("missing_api_key"))
    );
    let made = create(&gw, &admin_key, json!({"client": "app", "name": "worker"})).await;
    let app_key = made["key"].as_str().expect("key").to_string();
    gw.secrets.push(app_key.clone());
    let r = admin(&gw, &app_key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    // The proxy listener never serves the admin API.
    let r = get(
        &gw.url("/api/v1/keys"),
        &[("authorization", &bearer(&admin_key))],
    )
    .await;
    assert_ne!(r.status, StatusCode::OK);
    assert_eq!(r.error_code().as_deref(), Some("unknown_connector"));
    assert_eq!(
        get(&gw.admin_url("/healthz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn create_use_list_revoke() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let made = create(
        &gw,
        &admin_key,
        json!({"client": "app", "name": "nightly", "expires_in": "20d"}),
    )
    .await;
    let key = made["key"].as_str().expect("key shown once").to_string();
    gw.secrets.push(key.clone());
    let id = made["id"].as_str().expect("id").to_string();
    assert_eq!(made["client"], "app");
    assert_eq!(made["prefix"], &key[..8]);
    assert_eq!(made["source"], "api");
    assert!(made["expires_at"].as_str().is_some());
    assert_eq!(call(&gw, &key).await.status, StatusCode::OK);
    assert_eq!(
        up.last().header("x-token").as_deref(),
        Some("upstream-secret-keys")
    );

    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    assert!(!r.text().contains(&key), "a listing never holds a key");
    let listed = common::find_in(&r.json(), "keys", "id", &id);
    assert_eq!(listed["name"], "nightly");
    assert_eq!(listed["state"], "active");

    let r = admin(
        &gw,
        &admin_key,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&gw, &key).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key")),
        "the very next use"
    );
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    let listed = common::find_in(&r.json(), "keys", "id", &id);
    assert_eq!(listed["state"], "revoked");
    assert!(listed["revoked_at"].as_str().is_some());
    assert!(
        !contains(&db_bytes(&gw), &key),
        "the database never holds a key"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn subset_roles_never_exceed_the_client() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let made = create(
        &gw,
        &admin_key,
        json!({"client": "app", "name": "ro", "roles": ["reader"]}),
    )
    .await;
    let key = made["key"].as_str().expect("key").to_string();
    gw.secrets.push(key.clone());
    assert_eq!(made["roles"], json!(["reader"]));
    assert_eq!(call(&gw, &key).await.status, StatusCode::OK);
    let r = send(
        Method::POST,
        &gw.url("/svc/v1/x"),
        &[("authorization", &bearer(&key))],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the subset key cannot POST"
    );
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"client": "nobody-admin", "name": "x", "roles": ["ops"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("does not hold role `ops`")
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn bad_input_answers_clear_errors() {
    let up = Upstream::start().await;
    let (gw, admin_key) = start(&up);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"client": "ghost", "name": "x"}),
            "unknown client `ghost`",
        ),
        (
            json!({"client": "app", "name": "x", "roles": ["phantom"]}),
            "unknown role `phantom`",
        ),
        (
            json!({"client": "app", "name": "x", "expires_in": "soon"}),
            "expires_in",
        ),
        (
            json!({"client": "app", "name": "x", "expires_in": "31d"}),
            "over keys.max_ttl",
        ),
        (
            json!({"client": "app", "name": "x", "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!({"client": "app"}), "missing field `name`"),
    ];
    for (body, needle) in cases {
        let r = admin(
            &gw,
            &admin_key,
            Method::POST,
            "/api/v1/keys",
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.error_code().as_deref(), Some("bad_request"));
        let j = r.json();
        assert!(
            j["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{body}: {j}"
        );
        assert!(j["error"]["request_id"].as_str().is_some());
    }
    let auth = bearer(&admin_key);
    let r = send(
        Method::POST,
        &gw.admin_url("/api/v1/keys"),
        &[("authorization", &auth)],
        "not json",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let big = format!(
        "{{\"client\":\"app\",\"name\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let r = send(
        Method::POST,
        &gw.admin_url("/api/v1/keys"),
        &[("authorization", &auth)],
        big,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let r = admin(
        &gw,
        &admin_key,
        Method::DELETE,
        "/api/v1/keys/key_doesnotexist",
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let r = admin(&gw, &admin_key, Method::PUT, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    // Rolling a revoked key conflicts.
    let made = create(&gw, &admin_key, json!({"client": "app", "name": "r"})).await;
    let id = made["id"].as_str().expect("id");
    admin(
        &gw,
        &admin_key,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        None,
    )
    .await;
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        &format!("/api/v1/keys/{id}/roll"),
        Some(json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let mut gw = gw;
    gw.secrets
        .push(made["key"].as_str().expect("key").to_string());
    assert_eq!(gw.finish(), Some(0));
}

/// Calls with `key` until it answers 401 `api_key_expired` (at most 10 s);
/// until then every answer must be 200.
async fn until_expired(gw: &Gateway, key: &str) {
    let start = Instant::now();
    loop {
        let r = call(gw, key).await;
        match (r.status, r.error_code().as_deref()) {
            (StatusCode::UNAUTHORIZED, Some("api_key_expired")) => return,
            (StatusCode::OK, None) => {}
            other => panic!("neither valid nor expired: {other:?} {}", r.text()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the key did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn expiry_and_roll_with_grace() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    // A short-lived key expires with 401 api_key_expired.
    let short = create(
        &gw,
        &admin_key,
        json!({"client": "app", "name": "short", "expires_in": "2s"}),
    )
    .await;
    let short_key = short["key"].as_str().expect("key").to_string();
    assert_eq!(call(&gw, &short_key).await.status, StatusCode::OK);

    // Roll: both work during the grace; the successor keeps the original expiry.
    let orig = create(
        &gw,
        &admin_key,
        json!({"client": "app", "name": "rolling", "expires_in": "10d"}),
    )
    .await;
    let old_key = orig["key"].as_str().expect("key").to_string();
    let id = orig["id"].as_str().expect("id");
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        &format!("/api/v1/keys/{id}/roll"),
        Some(json!({"grace": "2s"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let next = r.json();
    let new_key = next["key"].as_str().expect("key").to_string();
    gw.secrets
        .extend([short_key.clone(), old_key.clone(), new_key.clone()]);
    assert_eq!(
        next["expires_at"], orig["expires_at"],
        "the successor never outlives the original"
    );
    assert_eq!(next["name"], "rolling");
    assert_eq!(call(&gw, &old_key).await.status, StatusCode::OK);
    assert_eq!(call(&gw, &new_key).await.status, StatusCode::OK);

    // Both end 2 s on (wall clock in another process: polled, bounded).
    until_expired(&gw, &short_key).await;
    until_expired(&gw, &old_key).await; // the old key ends after the grace
    assert_eq!(call(&gw, &new_key).await.status, StatusCode::OK);
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    let states: Vec<(String, String)> = r.json()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap_or("").to_string(),
                k["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("short".into(), "expired".into())),
        "expired keys stay listed: {states:?}"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn keys_survive_restart_and_sigkill_right_after_201() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let a = create(&gw, &admin_key, json!({"client": "app", "name": "a"})).await;
    let a_key = a["key"].as_str().expect("key").to_string();
    gw.restart(false);
    assert_eq!(
        call(&gw, &a_key).await.status,
        StatusCode::OK,
        "survives a graceful restart"
    );

    let b = create(&gw, &admin_key, json!({"client": "app", "name": "b"})).await;
    let b_key = b["key"].as_str().expect("key").to_string();
    gw.restart(true); // SIGKILL immediately after the 201
    assert_eq!(
        call(&gw, &b_key).await.status,
        StatusCode::OK,
        "a key returned by a 201 survives SIGKILL"
    );
    gw.secrets.extend([a_key.clone(), b_key.clone()]);
    let db = db_bytes(&gw);
    assert!(!contains(&db, &a_key) && !contains(&db, &b_key) && !contains(&db, &admin_key));
    assert_eq!(gw.finish(), Some(0));
}

/// `uses` as persisted for key `id`, read from keygate's SQLite file (a
/// second, read-only connection; WAL lets it read beside the writer).
fn persisted_uses(gw: &Gateway, id: &str) -> Option<i64> {
    use rusqlite::{Connection, OpenFlags, OptionalExtension};
    let db = Connection::open_with_flags(
        gw.dir.path().join("data/keygate.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    db.query_row("SELECT uses FROM key_usage WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
    .ok()
    .flatten()
}

#[tokio::test]
async fn last_used_is_tracked_and_persisted_in_batches() {
    let up = Upstream::start().await;
    // A short flush interval instead of waiting out the 2 s default.
    let mut gw = Gateway::start(&yaml(
        &up.url(),
        "",
        "keys: { max_ttl: 30d }\nstore: { flush_interval: 200ms }",
    ));
    let admin_key = initial_admin_key(&gw);
    gw.secrets = vec![admin_key.clone(), "upstream-secret-keys".into()];
    let made = create(&gw, &admin_key, json!({"client": "app", "name": "used"})).await;
    let key = made["key"].as_str().expect("key").to_string();
    let id = made["id"].as_str().expect("id").to_string();
    gw.secrets.push(key.clone());
    assert!(made["last_used_at"].is_null());
    for _ in 0..3 {
        assert_eq!(call(&gw, &key).await.status, StatusCode::OK);
    }
    let find = |v: Value| common::find_in(&v, "keys", "id", &id);
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    let k = find(r.json());
    assert!(
        k["last_used_at"].as_str().is_some(),
        "visible at once in memory"
    );
    assert_eq!(k["uses"], 3);
    // Persisted in a batch: polled in the store, bounded, no fixed sleep.
    let start = Instant::now();
    while persisted_uses(&gw, &id) != Some(3) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "usage not persisted within {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it survives a SIGKILL (no shutdown flush).
    gw.restart(true);
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    let k = find(r.json());
    assert!(
        k["last_used_at"].as_str().is_some(),
        "persisted within {:?}",
        start.elapsed()
    );
    assert_eq!(k["uses"], 3);
    assert_eq!(gw.finish(), Some(0));
}

fn cli(gw: &Gateway, admin_key: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--admin-url", &format!("http://{}", gw.admin)])
        .env("KEYGATE_ADMIN_KEY", admin_key)
        .output()
        .expect("cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_creates_lists_rolls_and_revokes() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let (ok, out, err) = cli(
        &gw,
        &admin_key,
        &[
            "keys",
            "create",
            "--client",
            "app",
            "--name",
            "from-cli",
            "--expires-in",
            "7d",
        ],
    );
    assert!(ok, "{err}");
    let key = out.trim().to_string();
    gw.secrets.push(key.clone());
    assert!(key.starts_with("kg_"), "{out}");
    assert!(err.contains("cannot be shown again"), "{err}");
    assert_eq!(call(&gw, &key).await.status, StatusCode::OK);

    let (ok, out, _) = cli(&gw, &admin_key, &["keys", "list"]);
    assert!(ok);
    assert!(
        out.lines().next().expect("header").starts_with("ID"),
        "{out}"
    );
    assert!(out.contains("from-cli") && !out.contains(&key), "{out}");
    let (ok, out, _) = cli(&gw, &admin_key, &["keys", "list", "--json"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).expect("json");
    let id = common::find_in(&listed, "keys", "name", "from-cli")["id"]
        .as_str()
        .expect("id")
        .to_string();

    let (ok, out, err) = cli(&gw, &admin_key, &["keys", "roll", &id, "--grace", "1h"]);
    assert!(ok, "{err}");
    let rolled = out.trim().to_string();
    gw.secrets.push(rolled.clone());
    assert_eq!(call(&gw, &rolled).await.status, StatusCode::OK);

    let (ok, _, err) = cli(&gw, &admin_key, &["keys", "revoke", &id]);
    assert!(ok, "{err}");
    assert_eq!(call(&gw, &key).await.status, StatusCode::UNAUTHORIZED);

    let (ok, _, err) = cli(&gw, "kg_not_a_real_key", &["keys", "list"]);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    let out = Command::new(BIN)
        .args(["keys", "list"])
        .env_remove("KEYGATE_ADMIN_KEY")
        .output()
        .expect("cli");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYGATE_ADMIN_KEY"));
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn bootstrap_key_expires_after_max_ttl() {
    // `start` sets keys.max_ttl to 30d: the bootstrap key is bounded too.
    let up = Upstream::start().await;
    let (gw, admin_key) = start(&up);
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let k = common::find_in(&r.json(), "keys", "client", "keygate-admin");
    let at = |f: &str| {
        let text = k[f]
            .as_str()
            .unwrap_or_else(|| panic!("{f} missing in {k}"));
        humantime::parse_rfc3339(text).expect("rfc3339")
    };
    assert_eq!(
        at("expires_at")
            .duration_since(at("created_at"))
            .expect("after"),
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn admin_403_says_the_roles_lack_admin_access() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let made = create(&gw, &admin_key, json!({"client": "app", "name": "worker"})).await;
    let app_key = made["key"].as_str().expect("key").to_string();
    gw.secrets.push(app_key.clone());
    let r = admin(&gw, &app_key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code().as_deref(), Some("forbidden"));
    let msg = r.json()["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    assert!(msg.contains("do not grant admin access"), "{msg}");
    assert!(!msg.contains("connector"), "not a proxy grant: {msg}");
    assert_eq!(gw.finish(), Some(0));
}
