//! The audit log against the real binary and its SQLite file: every admin
//! change (key create, roll, revoke; token value set) is recorded with
//! the admin key that made it, listed by `GET /api/v1/audit` (paged,
//! `since`), written as a JSON line on stderr, never with a value or a
//! key, kept across restarts, and purged past `store.audit_retention`.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::upstream::sha256_hex;
use common::{
    Gateway, Upstream, admin, audit_log_lines, audit_records, find_in, initial_admin_key,
};
use http::{Method, StatusCode};
use keygate::store::Store;
use serde_json::{Value, json};

const V1: &str = "sk_audit_first_value_1111";
const V2: &str = "sk_audit_second_value_2222";

fn yaml(up: &str, store: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
{store}
tokens:
  runtime: {{ prefix: Bearer, header: Authorization }}
connectors:
  svc: {{ upstream: "{up}", tokens: [runtime] }}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
  ops: {{ admin: true }}
clients:
  app: {{ roles: [caller] }}
  operators: {{ roles: [ops] }}
"#
    )
}

async fn create_key(gw: &Gateway, by: &str, client: &str) -> Value {
    let body = json!({"client": client, "name": "audited"});
    let r = admin(gw, by, Method::POST, "/api/v1/keys", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

fn fingerprint(value: &str) -> String {
    sha256_hex(value.as_bytes())[..8].to_string()
}

fn actor(rec: &Value) -> (&str, Option<&str>) {
    (
        rec["actor"]["client"].as_str().expect("client"),
        rec["actor"]["key_id"].as_str(),
    )
}

#[tokio::test]
async fn admin_changes_are_audited_with_their_actor_and_never_a_value() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&yaml(&up.url(), ""));
    let boot = initial_admin_key(&gw);
    gw.secrets.extend([boot.clone(), V1.into(), V2.into()]);
    let r = admin(&gw, &boot, Method::GET, "/api/v1/keys", None).await;
    let boot_id = find_in(&r.json(), "keys", "client", "keygate-admin")["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Changes by two admins: the bootstrap key, then an `operators` key.
    let ops = create_key(&gw, &boot, "operators").await;
    let (ops_key, ops_id) = (
        ops["key"].as_str().expect("key").to_string(),
        ops["id"].as_str().expect("id").to_string(),
    );
    let app = create_key(&gw, &boot, "app").await;
    let app_id = app["id"].as_str().expect("id").to_string();
    gw.secrets
        .extend([ops_key.clone(), app["key"].as_str().expect("key").into()]);
    for v in [V1, V2] {
        let path = "/api/v1/tokens/runtime/value";
        let r = admin(&gw, &ops_key, Method::PUT, path, Some(json!({"value": v}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let body = json!({"grace": "1h"});
    let path = format!("/api/v1/keys/{app_id}/roll");
    let r = admin(&gw, &boot, Method::POST, &path, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let successor = r.json()["id"].as_str().expect("id").to_string();
    gw.secrets
        .push(r.json()["key"].as_str().expect("key").into());
    let path = format!("/api/v1/keys/{app_id}");
    let r = admin(&gw, &boot, Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    // A refused change is no change: nothing recorded.
    let r = admin(&gw, &boot, Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let recs = audit_records(&gw, &boot, "").await;
    let actions: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["action"].as_str().expect("action"),
                r["object"]["name"].as_str().expect("name"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("key.create", ops_id.as_str()),
            ("key.create", app_id.as_str()),
            ("token.value.set", "runtime"),
            ("token.value.set", "runtime"),
            ("key.roll", app_id.as_str()),
            ("key.revoke", app_id.as_str()),
            ("key.revoke", successor.as_str()),
        ]
    );
    let ids: Vec<u64> = recs.iter().map(|r| r["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    for (i, rec) in recs.iter().enumerate() {
        let by = if matches!(i, 2 | 3) {
            ("operators", Some(ops_id.as_str()))
        } else {
            ("keygate-admin", Some(boot_id.as_str()))
        };
        assert_eq!(actor(rec), by, "record {i}");
        assert!(rec["at"].as_str().expect("at").ends_with('Z'));
    }
    assert_eq!(recs[0]["object"]["kind"], "key");
    assert_eq!(recs[2]["object"]["kind"], "token");
    assert_eq!(recs[1]["detail"], "client `app`, name `audited`");
    // The value's versions and fingerprints, never the value.
    let (first, second) = (&recs[2], &recs[3]);
    assert_eq!(first["version_before"], Value::Null);
    assert_eq!(first["fingerprint_before"], Value::Null);
    assert_eq!(first["version_after"], 1);
    assert_eq!(first["fingerprint_after"], fingerprint(V1));
    assert_eq!(second["version_before"], 1);
    assert_eq!(second["fingerprint_before"], fingerprint(V1));
    assert_eq!(second["version_after"], 2);
    assert_eq!(second["fingerprint_after"], fingerprint(V2));
    let r = admin(&gw, &boot, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(
        find_in(&r.json(), "tokens", "name", "runtime")["fingerprint"],
        fingerprint(V2),
        "the audit log and the token list agree"
    );
    let roll_detail = recs[4]["detail"].as_str().expect("detail");
    assert!(
        roll_detail.contains(&successor) && roll_detail.contains("1h"),
        "{roll_detail}"
    );
    assert!(
        recs[6]["detail"]
            .as_str()
            .expect("detail")
            .contains(&app_id)
    );
    let text = serde_json::to_string(&recs).expect("json");
    for secret in &gw.secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the audit log");
    }

    // The same records on stderr, one JSON line each.
    let lines = audit_log_lines(&gw);
    assert_eq!(lines.len(), recs.len(), "{lines:?}");
    for (line, rec) in lines.iter().zip(&recs) {
        assert_eq!(line["target"], "keygate::audit");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["id"], rec["id"]);
        assert_eq!(line["at"], rec["at"]);
        assert_eq!(line["action"], rec["action"]);
        assert_eq!(line["object_name"], rec["object"]["name"]);
        assert_eq!(line["actor_client"], rec["actor"]["client"]);
        assert_eq!(line["actor_key"], rec["actor"]["key_id"]);
    }
    assert_eq!(lines[3]["fingerprint_after"], fingerprint(V2));

    // They survive a restart on the same SQLite file; new ids go on.
    gw.restart(false);
    assert_eq!(audit_records(&gw, &boot, "").await, recs);
    // `since`: records at or after a time. Wait out the second the last
    // record was written in, so one made now is alone after it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = create_key(&gw, &boot, "app").await;
    gw.secrets.push(late["key"].as_str().expect("key").into());
    let all = audit_records(&gw, &boot, "").await;
    let newest = all.last().expect("a record");
    assert!(newest["id"].as_u64() > recs.last().and_then(|r| r["id"].as_u64()));
    let at = newest["at"].as_str().expect("at");
    let since = audit_records(&gw, &boot, &format!("?since={at}")).await;
    assert_eq!(since, std::slice::from_ref(newest));
    let offset = at.replace('Z', "%2B00:00");
    assert_eq!(
        audit_records(&gw, &boot, &format!("?since={offset}")).await,
        since
    );
    assert_eq!(
        audit_records(&gw, &boot, "?since=2000-01-01T00:00:00Z").await,
        all
    );
    assert!(
        audit_records(&gw, &boot, "?since=2999-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    // Paged by two: the same records.
    let (paged, pages) = common::admin_pages(&gw, &boot, "/api/v1/audit", "records", 2).await;
    assert_eq!((paged.len(), pages), (all.len(), all.len().div_ceil(2)));
    assert_eq!(paged, all);
    for bad in [
        "yesterday",
        "2025-01-01",
        "2025-01-01T00:00:00",
        "1700000000",
    ] {
        let path = format!("/api/v1/audit?since={bad}");
        let r = admin(&gw, &boot, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert!(r.text().contains("RFC 3339"), "{}", r.text());
    }
    // Only admins read it.
    let r = admin(
        &gw,
        late["key"].as_str().expect("key"),
        Method::GET,
        "/api/v1/audit",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn records_past_audit_retention_are_purged_at_start() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&yaml(&up.url(), "store: { audit_retention: 30d }"));
    let boot = initial_admin_key(&gw);
    gw.secrets.push(boot.clone());
    let recent = create_key(&gw, &boot, "app").await;
    gw.secrets.push(recent["key"].as_str().expect("key").into());
    // A record from 31 days ago, written through the store API into the
    // running gateway's database (SQLite WAL takes a second writer).
    let day = Duration::from_secs(86_400);
    let old_ms = (SystemTime::now() - 31 * day)
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let store = keygate::store::sqlite::SqliteStore::open(&gw.dir.path().join("data/keygate.db"))
        .expect("open the store");
    store
        .append_audit(&keygate::store::AuditRecord {
            at_ms: u64::try_from(old_ms).expect("fits"),
            actor_client: "keygate-admin".into(),
            actor_key: Some("key_gone".into()),
            action: "key.create".into(),
            object_kind: "key".into(),
            object_name: "key_ancient".into(),
            version_before: None,
            version_after: None,
            fingerprint_before: None,
            fingerprint_after: None,
            detail: None,
        })
        .expect("append");
    drop(store);
    let names = |recs: &[Value]| -> Vec<String> {
        recs.iter()
            .map(|r| r["object"]["name"].as_str().expect("name").to_string())
            .collect()
    };
    let before = audit_records(&gw, &boot, "").await;
    assert_eq!(
        names(&before),
        [recent["id"].as_str().expect("id"), "key_ancient"]
    );
    gw.restart(false);
    assert!(gw.wait_log("audit records past retention deleted", 5));
    let after = audit_records(&gw, &boot, "").await;
    assert_eq!(names(&after), [recent["id"].as_str().expect("id")]);
    assert_eq!(gw.finish(), Some(0));
}
