//! Admin API edge cases against the real binary (issue 10, items 8 and 11):
//! concurrent revokes, a roll racing a revoke, negative and overflowing
//! durations, `Cache-Control: no-store` on answers holding a key, the
//! last-admin-key rule, and `keygate admin-key --reset`.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Gateway, Reply, Upstream, admin, bearer, get, initial_admin_key, keygen};
use futures_util::future::join_all;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// No `keys.max_ttl`: the duration bounds must hold on their own.
fn yaml(up: &str, extra_clients: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  t: {{ value: {{ literal: "upstream-secret-edges" }}, header: X-Token }}
connectors:
  svc: {{ upstream: "{up}", tokens: [t] }}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
  ops: {{ admin: true }}
clients:
  app: {{ roles: [caller] }}
{extra_clients}
"#
    )
}

fn start(up: &Upstream) -> (Gateway, String) {
    let mut gw = Gateway::start(&yaml(&up.url(), ""));
    let admin_key = initial_admin_key(&gw);
    gw.secrets = vec![admin_key.clone(), "upstream-secret-edges".into()];
    (gw, admin_key)
}

/// Creates a key and registers it as a secret of `gw`: (id, key).
async fn create(gw: &mut Gateway, admin_key: &str, body: Value) -> (String, String) {
    let r = admin(gw, admin_key, Method::POST, "/api/v1/keys", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    let key = v["key"].as_str().expect("key").to_string();
    gw.secrets.push(key.clone());
    (v["id"].as_str().expect("id").to_string(), key)
}

async fn call(gw: &Gateway, key: &str) -> StatusCode {
    get(&gw.url("/svc/v1/x"), &[("authorization", &bearer(key))])
        .await
        .status
}

fn state_of(listing: &Value, id: &str) -> String {
    common::find_in(listing, "keys", "id", id)["state"]
        .as_str()
        .expect("state")
        .to_string()
}

#[tokio::test]
async fn concurrent_revokes_of_one_key_give_one_204_and_the_rest_404() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    for round in 0..3 {
        let (id, key) = create(
            &mut gw,
            &admin_key,
            json!({"client": "app", "name": format!("twice-{round}")}),
        )
        .await;
        let path = format!("/api/v1/keys/{id}");
        let replies =
            join_all((0..12).map(|_| admin(&gw, &admin_key, Method::DELETE, &path, None))).await;
        let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
        let ok = statuses
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count();
        let gone = statuses
            .iter()
            .filter(|s| **s == StatusCode::NOT_FOUND)
            .count();
        assert_eq!((ok, gone), (1, 11), "round {round}: {statuses:?}");
        for r in replies.iter().filter(|r| r.status == StatusCode::NOT_FOUND) {
            assert_eq!(r.error_code().as_deref(), Some("not_found"));
        }
        assert_eq!(call(&gw, &key).await, StatusCode::UNAUTHORIZED);
    }
    // A later revoke of a revoked key is a 404 too, never a 500.
    let (id, _) = create(
        &mut gw,
        &admin_key,
        json!({"client": "app", "name": "late"}),
    )
    .await;
    let path = format!("/api/v1/keys/{id}");
    let first = admin(&gw, &admin_key, Method::DELETE, &path, None).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let again = admin(&gw, &admin_key, Method::DELETE, &path, None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text());
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn a_roll_racing_a_revoke_never_leaves_a_live_successor() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);

    // In order: a revoke after a roll ends the successor too.
    let (id, _) = create(&mut gw, &admin_key, json!({"client": "app", "name": "seq"})).await;
    let r = roll(&gw, &admin_key, &id, "1h").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let succ = r.json();
    let succ_key = succ["key"].as_str().expect("key").to_string();
    let succ_id = succ["id"].as_str().expect("id").to_string();
    gw.secrets.push(succ_key.clone());
    assert_eq!(call(&gw, &succ_key).await, StatusCode::OK);
    let r = admin(
        &gw,
        &admin_key,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&gw, &succ_key).await,
        StatusCode::UNAUTHORIZED,
        "the successor of a revoked key is revoked with it"
    );
    let listing = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None)
        .await
        .json();
    assert_eq!(state_of(&listing, &succ_id), "revoked");

    // Racing: whichever commits first, no successor of a revoked key lives.
    let mut rolled = 0;
    for round in 0..20 {
        let (id, _) = create(
            &mut gw,
            &admin_key,
            json!({"client": "app", "name": format!("race-{round}")}),
        )
        .await;
        let roll_path = format!("/api/v1/keys/{id}/roll");
        let del_path = format!("/api/v1/keys/{id}");
        let (roll, del) = tokio::join!(
            admin(
                &gw,
                &admin_key,
                Method::POST,
                &roll_path,
                Some(json!({"grace": "1h"}))
            ),
            admin(&gw, &admin_key, Method::DELETE, &del_path, None),
        );
        assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text());
        match roll.status {
            StatusCode::CREATED => {
                rolled += 1;
                let v = roll.json();
                let key = v["key"].as_str().expect("key").to_string();
                gw.secrets.push(key.clone());
                assert_eq!(
                    call(&gw, &key).await,
                    StatusCode::UNAUTHORIZED,
                    "round {round}: a successor of a revoked key is live"
                );
                let listing = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None)
                    .await
                    .json();
                assert_eq!(state_of(&listing, v["id"].as_str().expect("id")), "revoked");
            }
            StatusCode::CONFLICT | StatusCode::NOT_FOUND => {}
            other => panic!("round {round}: roll answered {other}: {}", roll.text()),
        }
    }
    eprintln!("{rolled} of 20 rolls committed before their revoke");
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn negative_or_overflowing_durations_are_refused() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let bad: Vec<Value> = vec![
        json!("-5s"),
        json!("-1"),
        json!("99999999999999999d"),
        json!("99999999999999999999"),
        json!("9999999999999999s"),
        json!("18446744073709551615ms"),
        json!("36501d"),
        json!(-1),
        json!(1e300),
        json!(18446744073709551615u64),
    ];
    for v in &bad {
        let r = admin(
            &gw,
            &admin_key,
            Method::POST,
            "/api/v1/keys",
            Some(json!({"client": "app", "name": "d", "expires_in": v})),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "expires_in {v}: {}",
            r.text()
        );
        assert_eq!(r.error_code().as_deref(), Some("bad_request"));
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            msg.contains("expires_in") || msg.contains("invalid type"),
            "expires_in {v}: {msg}"
        );
    }
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"client": "app", "name": "d", "expires_in": "-5s"})),
    )
    .await;
    assert!(r.text().contains("negative"), "{}", r.text());

    let (id, key) = create(&mut gw, &admin_key, json!({"client": "app", "name": "g"})).await;
    for v in &bad {
        let r = admin(
            &gw,
            &admin_key,
            Method::POST,
            &format!("/api/v1/keys/{id}/roll"),
            Some(json!({ "grace": v })),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "grace {v}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("bad_request"));
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            msg.contains("grace") || msg.contains("invalid type"),
            "grace {v}: {msg}"
        );
    }
    // Nothing was lost on the way: the key was never rolled and still works.
    assert_eq!(call(&gw, &key).await, StatusCode::OK);
    let listing = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None)
        .await
        .json();
    assert_eq!(state_of(&listing, &id), "active");
    assert!(common::find_in(&listing, "keys", "id", &id)["expires_at"].is_null());
    assert_eq!(
        listing["keys"].as_array().map(Vec::len),
        Some(2),
        "no key was created or rolled by a bad request"
    );
    // The bounds themselves are accepted.
    create(
        &mut gw,
        &admin_key,
        json!({"client": "app", "name": "long", "expires_in": "36500d"}),
    )
    .await;
    let r = roll(&gw, &admin_key, &id, "0s").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    gw.secrets
        .push(r.json()["key"].as_str().expect("key").to_string());
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn answers_holding_a_key_are_never_cached() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"client": "app", "name": "c"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    gw.secrets.push(v["key"].as_str().expect("key").to_string());
    let no_store = |r: &Reply, what: &str| {
        assert_eq!(
            r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}"
        );
        assert_eq!(
            r.headers.get("pragma").and_then(|v| v.to_str().ok()),
            Some("no-cache"),
            "{what}"
        );
    };
    no_store(&r, "create");
    let id = v["id"].as_str().expect("id");
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        &format!("/api/v1/keys/{id}/roll"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    gw.secrets
        .push(r.json()["key"].as_str().expect("key").to_string());
    no_store(&r, "roll");
    let r = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None).await;
    no_store(&r, "listing");
    let r = get(&gw.admin_url("/api/v1/keys"), &[]).await;
    no_store(&r, "an error answer");
    assert_eq!(gw.finish(), Some(0));
}

fn reset(config: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["admin-key", "--reset", "-c"])
        .arg(config)
        .output()
        .expect("admin-key --reset");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_last_admin_key_cannot_end_itself_and_reset_lets_the_operator_back_in() {
    let up = Upstream::start().await;
    let (mut gw, first) = start(&up);
    let keys = "/api/v1/keys";
    let listing = admin(&gw, &first, Method::GET, keys, None).await.json();
    let first_id = listing["keys"][0]["id"].as_str().expect("id").to_string();

    // The only admin key revoking itself: refused, and nothing changed.
    let r = admin(
        &gw,
        &first,
        Method::DELETE,
        &format!("{keys}/{first_id}"),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::CONFLICT, Some("last_admin_key")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("force=true"), "{}", r.text());
    assert_eq!(
        admin(&gw, &first, Method::GET, keys, None).await.status,
        StatusCode::OK
    );
    let r = admin(
        &gw,
        &first,
        Method::DELETE,
        &format!("{keys}/{first_id}?force=yes"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // Rolling it is allowed, even with a grace that ends it now: the
    // successor is an admin key.
    let r = roll(&gw, &first, &first_id, "0s").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let second = r.json()["key"].as_str().expect("key").to_string();
    let second_id = r.json()["id"].as_str().expect("id").to_string();
    gw.secrets.push(second.clone());
    assert_eq!(
        admin(&gw, &first, Method::GET, keys, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin(&gw, &second, Method::GET, keys, None).await.status,
        StatusCode::OK
    );

    // With another admin key alive, revoking is fine.
    let (third_id, third) = create(
        &mut gw,
        &second,
        json!({"client": "keygate-admin", "name": "ops-laptop"}),
    )
    .await;
    let r = admin(
        &gw,
        &third,
        Method::DELETE,
        &format!("{keys}/{second_id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = admin(
        &gw,
        &third,
        Method::DELETE,
        &format!("{keys}/{third_id}"),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::CONFLICT, Some("last_admin_key"))
    );

    // The CLI says the same, and offers --force.
    let out = Command::new(BIN)
        .args(["keys", "revoke", &third_id])
        .args(["--admin-url", &format!("http://{}", gw.admin)])
        .env("KEYGATE_ADMIN_KEY", &third)
        .output()
        .expect("cli");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("409 last_admin_key"), "{err}");

    // Forced: done, and the key is dead at once.
    let r = admin(
        &gw,
        &third,
        Method::DELETE,
        &format!("{keys}/{third_id}?force=true"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = admin(&gw, &third, Method::GET, keys, None).await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );

    // Locked out. `keygate admin-key --reset` on the host, gateway running.
    let file = gw.dir.path().join("data/initial-admin.key");
    let (ok, out, err) = reset(&gw.config_path);
    assert!(ok, "{err}");
    let fresh = initial_admin_key(&gw);
    gw.secrets.push(fresh.clone());
    assert!(fresh.starts_with("kg_") && fresh != first, "a new key");
    assert!(err.contains("initial-admin.key"), "the path is told: {err}");
    assert!(
        !out.contains(&fresh) && !err.contains(&fresh),
        "the key is never printed"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).expect("file").permissions().mode() & 0o777,
        0o600
    );
    // The running gateway picks it up by itself (bounded wait, no restart).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = admin(&gw, &fresh, Method::GET, keys, None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reset key never worked on the running gateway: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gw.wait_log("admin-key --reset", 5), "the gateway logs it");
    // And after a restart.
    gw.restart(false);
    assert_eq!(
        admin(&gw, &fresh, Method::GET, keys, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        admin(&gw, &third, Method::GET, keys, None).await.status,
        StatusCode::UNAUTHORIZED,
        "the forced revoke held"
    );
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn yaml_declared_admin_keys_count_as_remaining_admins() {
    let up = Upstream::start().await;
    let (declared, hash) = keygen("kg_");
    let extra =
        format!("  ops-team: {{ roles: [ops], keys: [ {{ name: laptop, sha256: \"{hash}\" }} ] }}");
    let mut gw = Gateway::start(&yaml(&up.url(), &extra));
    gw.secrets = vec![declared.clone()];
    let (id, key) = create(
        &mut gw,
        &declared,
        json!({"client": "ops-team", "name": "api-admin"}),
    )
    .await;
    let r = admin(
        &gw,
        &key,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "the YAML key remains: {}",
        r.text()
    );
    assert_eq!(
        admin(&gw, &declared, Method::GET, "/api/v1/keys", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(gw.finish(), Some(0));
}

#[test]
fn admin_key_reset_refuses_without_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("keygate.yaml");
    std::fs::write(&config, yaml("http://127.0.0.1:9", "")).expect("write");
    let (ok, _, err) = reset(&config);
    assert!(!ok);
    assert!(err.contains("no store"), "{err}");
    assert!(
        !dir.path().join("data/keygate.db").exists(),
        "nothing created"
    );
    assert!(!dir.path().join("data/initial-admin.key").exists());
    let out = Command::new(BIN)
        .args(["admin-key", "-c"])
        .arg(&config)
        .output()
        .expect("admin-key");
    assert!(!out.status.success(), "--reset is required");
}

async fn roll(gw: &Gateway, key: &str, id: &str, grace: &str) -> Reply {
    admin(
        gw,
        key,
        Method::POST,
        &format!("/api/v1/keys/{id}/roll"),
        Some(json!({ "grace": grace })),
    )
    .await
}

/// Rolls `id` with `key` and registers the successor as a secret; revoking
/// the successor with itself must then answer 409 `last_admin_key` (`why`
/// leads the assertion message). Returns the successor's (key, id).
async fn roll_then_revoke_successor_refused(
    gw: &mut Gateway,
    key: &str,
    id: &str,
    grace: &str,
    why: &str,
) -> (String, String) {
    let r = roll(gw, key, id, grace).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let successor = r.json()["key"].as_str().expect("key").to_string();
    let successor_id = r.json()["id"].as_str().expect("id").to_string();
    gw.secrets.push(successor.clone());
    let r = admin(
        gw,
        &successor,
        Method::DELETE,
        &format!("/api/v1/keys/{successor_id}"),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::CONFLICT, Some("last_admin_key")),
        "{why}{}",
        r.text()
    );
    (successor, successor_id)
}

/// Security review S1: a rolled-over key lives on only for its grace, so it
/// never counts as a remaining admin key. Before the fix, "roll the only
/// admin key, then revoke its successor" answered 204 and, once the grace
/// ran out, left no admin key and no 409 ever.
#[tokio::test]
async fn a_rolled_over_admin_key_does_not_count_as_the_remaining_admin() {
    let up = Upstream::start().await;
    let (mut gw, first) = start(&up);
    let keys = "/api/v1/keys";
    let listing = admin(&gw, &first, Method::GET, keys, None).await.json();
    let first_id = listing["keys"][0]["id"].as_str().expect("id").to_string();

    // A long grace: the old key is alive for an hour, yet it is ending.
    let (second, second_id) = roll_then_revoke_successor_refused(
        &mut gw,
        &first,
        &first_id,
        "1h",
        "the rolled-over key must not count: ",
    )
    .await;
    // Rolling the old key again would mint a "remaining" admin key that
    // dies with the first grace: a key is rolled once.
    let r = roll(&gw, &first, &first_id, "1h").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(
        r.text().contains(&second_id),
        "names the successor: {}",
        r.text()
    );

    // The exact sequence of the review: roll with grace 1s, revoke the
    // successor. 409 whether or not the second has passed yet.
    let (third, third_id) =
        roll_then_revoke_successor_refused(&mut gw, &second, &second_id, "1s", "").await;
    assert_eq!(
        admin(&gw, &third, Method::GET, keys, None).await.status,
        StatusCode::OK,
        "the refused revoke changed nothing"
    );
    let r = admin(
        &gw,
        &third,
        Method::DELETE,
        &format!("{keys}/{third_id}?force=true"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(
        admin(&gw, &third, Method::GET, keys, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gw.finish(), Some(0));
}

/// Security review M5: `//api/v1/keys` was routed like `/api/v1/keys` but
/// escaped `Cache-Control: no-store`, so a plaintext key could be cached.
/// Non-canonical admin paths are now refused.
#[tokio::test]
async fn non_canonical_admin_paths_are_refused_and_never_cacheable() {
    let up = Upstream::start().await;
    let (mut gw, admin_key) = start(&up);
    let body = json!({"client": "app", "name": "doubled"}).to_string();
    for target in ["//api/v1/keys", "/api/v1/keys/", "//api/v1/keys//"] {
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin_key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            gw.admin,
            body.len()
        );
        let (status, text) = common::raw_request(gw.admin, &request).await;
        assert_eq!(status, 404, "{target}: {text}");
        assert!(!text.contains("\"key\""), "{target}: no key was minted");
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("cache-control: no-store"),
            "{target}: {text}"
        );
        assert!(lower.contains("pragma: no-cache"), "{target}: {text}");
    }
    let listing = admin(&gw, &admin_key, Method::GET, "/api/v1/keys", None)
        .await
        .json();
    assert_eq!(
        listing["keys"].as_array().map(Vec::len),
        Some(1),
        "only the bootstrap key exists"
    );
    // The canonical spelling still works, and answers no-store.
    let r = admin(
        &gw,
        &admin_key,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"client": "app", "name": "canonical"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    gw.secrets
        .push(r.json()["key"].as_str().expect("key").to_string());
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        get(&gw.admin_url("/healthz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(gw.finish(), Some(0));
}

/// Security review minor 4: a reload may drop the last admin key (here the
/// only one, declared in YAML). Not refused, the file is the operator's,
/// but the gateway says so and names the way back in.
#[tokio::test]
async fn a_reload_that_drops_the_last_admin_key_says_how_to_get_back_in() {
    let up = Upstream::start().await;
    let (declared, hash) = keygen("kg_");
    let with_key =
        format!("  ops-team: {{ roles: [ops], keys: [ {{ name: laptop, sha256: \"{hash}\" }} ] }}");
    let mut gw = Gateway::start(&yaml(&up.url(), &with_key));
    gw.secrets = vec![declared.clone()];
    assert!(
        !gw.dir.path().join("data/initial-admin.key").exists(),
        "the YAML key is the admin key: no bootstrap key"
    );
    assert_eq!(
        admin(&gw, &declared, Method::GET, "/api/v1/keys", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(gw.count_log("no live admin key remains"), 0);
    gw.write_config(&yaml(&up.url(), "  ops-team: { roles: [ops] }"));
    assert!(
        gw.wait_log("no live admin key remains", 20),
        "{}",
        gw.stderr_text()
    );
    let config = gw.config_path.display().to_string();
    assert!(
        gw.stderr_text()
            .contains(&format!("keygate admin-key --reset -c {config}")),
        "names the recovery command: {}",
        gw.stderr_text()
    );
    assert_eq!(
        admin(&gw, &declared, Method::GET, "/api/v1/keys", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gw.finish(), Some(0));
}
