//! The run-time catalog (issue 12, SPEC §7) against the real binary: every
//! object route from create to 404, each change seen by the very next
//! proxied request, ownership, one validator with JSON pointers,
//! `ETag`/`If-Match`, persistence across a restart, YAML clashes and export.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use common::{Gateway, Reply, Upstream, admin, bearer, get, initial_admin_key, send};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const SECRET_A: &str = "sk_live_catalog_aaaa_1111";
const SECRET_B: &str = "xk_catalog_bbbb_2222";
const SECRET_C: &str = "sk_live_catalog_cccc_3333";

fn yaml(up: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  file-token: {{ value: {{ env: KG_CATALOG_FILE }}, header: X-File }}
connectors:
  file-conn: {{ upstream: "{up}", tokens: [file-token] }}
roles:
  file-role: {{ allow: [ {{ connector: file-conn }} ] }}
clients:
  file-client: {{ roles: [file-role] }}
"#
    )
}

struct Env {
    gw: Gateway,
    up: Upstream,
    key: String,
}

impl Env {
    async fn start() -> Env {
        let up = Upstream::start().await;
        let gw = Gateway::start_with(&yaml(&up.url()), &[("KG_CATALOG_FILE", "file-v")], |_| {});
        let key = initial_admin_key(&gw);
        Env { gw, up, key }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        admin(&self.gw, &self.key, method, path, body).await
    }

    async fn call_if(&self, method: Method, path: &str, etag: &str, body: Value) -> Reply {
        send(
            method,
            &self.gw.admin_url(path),
            &[
                ("authorization", &bearer(&self.key)),
                ("content-type", "application/json"),
                ("if-match", etag),
            ],
            body.to_string(),
        )
        .await
    }

    /// A proxied GET through `connector` with `key`.
    async fn proxied(&self, connector: &str, key: &str) -> Reply {
        get(
            &self.gw.url(&format!("/{connector}/v1/x")),
            &[("authorization", &bearer(key))],
        )
        .await
    }

    async fn new_key(&self, client: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/v1/keys",
                Some(json!({"client": client, "name": "k"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["key"].as_str().expect("key").to_string()
    }
}

fn etag(r: &Reply) -> String {
    r.headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_string()
}

#[tokio::test]
async fn the_seeds_flow_create_attach_swap_detach_delete() {
    let env = Env::start().await;
    // New token: text, prefix Bearer, header Authorization, value sealed.
    let r = env
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({
                "name": "stripe", "type": "text", "description": "Stripe secret key",
                "prefix": "Bearer", "header": "Authorization", "value": SECRET_A
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let t = r.json();
    assert_eq!(t["source"], "api");
    assert_eq!(t["state"], "ready", "the value is in place before 201");
    assert_eq!(t["definition_version"], 1);
    assert_eq!(etag(&r), "\"1\"");
    assert!(!r.text().contains(SECRET_A));

    // A connector using it, a role granting it, a client holding the role.
    let r = env
        .call(
            Method::POST,
            "/api/v1/connectors",
            Some(json!({
                "name": "billing", "upstream": env.up.url(), "tokens": ["stripe"],
                "headers": {"Stripe-Version": "2024-06-20"}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["source"], "api");
    assert_eq!(r.json()["version"], 1);
    let r = env
        .call(
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "billing-role", "allow": [{"connector": "billing", "methods": ["GET"]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["allow"][0]["methods"], json!(["GET"]));
    let r = env
        .call(
            Method::POST,
            "/api/v1/clients",
            Some(json!({"name": "billing-bot", "roles": ["billing-role"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let app = env.new_key("billing-bot").await;

    // The very next request uses the new connector and its token.
    let r = env.proxied("billing", &app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = env.up.last();
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some(format!("Bearer {SECRET_A}").as_str())
    );
    assert_eq!(seen.header("stripe-version").as_deref(), Some("2024-06-20"));

    // Attach a second token with header X-API-Key: both headers arrive.
    let r = env
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "partner", "type": "text", "header": "X-API-Key", "value": SECRET_B})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = env
        .call(
            Method::PUT,
            "/api/v1/connectors/billing/tokens",
            Some(json!({"tokens": ["stripe", "partner"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    env.proxied("billing", &app).await;
    let seen = env.up.last();
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some(format!("Bearer {SECRET_A}").as_str())
    );
    assert_eq!(seen.header("x-api-key").as_deref(), Some(SECRET_B));

    // Swap a value: the next request carries the new one.
    let r = env
        .call(
            Method::PUT,
            "/api/v1/tokens/stripe/value",
            Some(json!({"value": SECRET_C})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    env.proxied("billing", &app).await;
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some(format!("Bearer {SECRET_C}").as_str())
    );

    // A token in use cannot go; the answer names the connector.
    let r = env
        .call(Method::DELETE, "/api/v1/tokens/partner", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_code().as_deref(), Some("token_in_use"));
    assert!(r.text().contains("billing"), "{}", r.text());

    // Detach: the next request has no X-API-Key.
    let r = env
        .call(
            Method::PUT,
            "/api/v1/connectors/billing/tokens",
            Some(json!({"tokens": ["stripe"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    env.proxied("billing", &app).await;
    assert_eq!(env.up.last().header("x-api-key"), None);

    // Delete in dependency order; each is gone (404) at once.
    let r = env
        .call(Method::DELETE, "/api/v1/tokens/partner", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = env.call(Method::GET, "/api/v1/tokens/partner", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A client with a live key: deletion asks for confirmation, then
    // revokes the key with it.
    let r = env
        .call(Method::DELETE, "/api/v1/clients/billing-bot", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("confirmation_required"));
    assert_eq!(env.proxied("billing", &app).await.status, StatusCode::OK);
    let r = env
        .call(
            Method::DELETE,
            "/api/v1/clients/billing-bot?confirm=true",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(
        env.proxied("billing", &app).await.status,
        StatusCode::UNAUTHORIZED
    );
    for (path, code) in [
        ("/api/v1/connectors/billing", "in_use"),
        ("/api/v1/roles/billing-role", ""),
    ] {
        let r = env.call(Method::DELETE, path, None).await;
        if code.is_empty() {
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}: {}", r.text());
        } else {
            assert_eq!(r.status, StatusCode::CONFLICT, "{path}: {}", r.text());
            assert_eq!(r.error_code().as_deref(), Some(code));
        }
    }
    let r = env
        .call(Method::DELETE, "/api/v1/connectors/billing", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = env.proxied("billing", &app).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code().as_deref(), Some("unknown_connector"));
    let r = env
        .call(Method::GET, "/api/v1/connectors/billing", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    env.gw.assert_no_secrets();
}

#[tokio::test]
async fn file_objects_are_read_only_and_the_validator_answers_with_pointers() {
    let env = Env::start().await;
    for (method, path) in [
        (Method::PATCH, "/api/v1/tokens/file-token"),
        (Method::DELETE, "/api/v1/tokens/file-token"),
        (Method::PATCH, "/api/v1/connectors/file-conn"),
        (Method::PUT, "/api/v1/connectors/file-conn/tokens"),
        (Method::DELETE, "/api/v1/roles/file-role"),
        (Method::PATCH, "/api/v1/clients/file-client"),
        (Method::DELETE, "/api/v1/roles/keygate-admin"),
    ] {
        let body = (method != Method::DELETE).then(|| json!({"tokens": []}));
        let r = env.call(method.clone(), path, body).await;
        assert_eq!(
            r.status,
            StatusCode::CONFLICT,
            "{method} {path}: {}",
            r.text()
        );
        assert_eq!(r.error_code().as_deref(), Some("config_owned"), "{path}");
    }
    let r = env
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "file-token", "header": "X-Y"})),
        )
        .await;
    assert_eq!(r.error_code().as_deref(), Some("config_owned"));
    assert!(
        r.text().contains("keygate.yaml"),
        "names the file: {}",
        r.text()
    );
    let r = env
        .call(Method::GET, "/api/v1/connectors/file-conn", None)
        .await;
    assert_eq!(r.json()["source"], "config");
    assert!(r.headers.get("etag").is_none());

    // Every problem at once, each with a pointer into the body, never a value.
    let r = env
        .call(
            Method::POST,
            "/api/v1/connectors",
            Some(json!({
                "name": "bad", "upstream": "ftp://x", "tokens": ["file-token", "nope"],
                "headers": {"X-FILE": "secret-static-value", "Bad Header": "v"}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("validation_failed"));
    let problems = r.json()["error"]["problems"].clone();
    let pointers: Vec<&str> = problems
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["pointer"].as_str())
        .collect();
    for want in [
        "/upstream",
        "/tokens/1",
        "/headers/X-FILE",
        "/headers/Bad Header",
    ] {
        assert!(pointers.contains(&want), "{want} in {pointers:?}");
    }
    assert!(!r.text().contains("secret-static-value"));
    // Unknown fields are found like the file's.
    let r = env
        .call(
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "r", "alow": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["problems"][0]["pointer"], "/alow");
    // A CR/LF in a value sent as text.
    let r = env
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "t", "header": "X-T", "value": "a\r\nInjected: 1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.json()["error"]["problems"][0]["pointer"], "/value");
    // Nothing of the refused changes exists.
    let r = env.call(Method::GET, "/api/v1/connectors/bad", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn if_match_stops_a_lost_update() {
    let env = Env::start().await;
    let r = env
        .call(
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "ops", "description": "first"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = env.call(Method::GET, "/api/v1/roles/ops", None).await;
    let tag = etag(&r);
    assert_eq!(tag, "\"1\"");
    // Operator A saves first; operator B, holding the same ETag, is refused.
    let a = env
        .call_if(
            Method::PATCH,
            "/api/v1/roles/ops",
            &tag,
            json!({"description": "A"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(etag(&a), "\"2\"");
    let b = env
        .call_if(
            Method::PATCH,
            "/api/v1/roles/ops",
            &tag,
            json!({"description": "B"}),
        )
        .await;
    assert_eq!(b.status, StatusCode::PRECONDITION_FAILED, "{}", b.text());
    let b = env
        .call_if(Method::DELETE, "/api/v1/roles/ops", &tag, json!({}))
        .await;
    assert_eq!(b.status, StatusCode::PRECONDITION_FAILED, "{}", b.text());
    let r = env.call(Method::GET, "/api/v1/roles/ops", None).await;
    assert_eq!(r.json()["description"], "A");
    // A list of tags matches if any names the current version.
    let r = env
        .call_if(
            Method::PATCH,
            "/api/v1/roles/ops",
            "\"1\", \"2\"",
            json!({"description": "A2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/roles/ops",
            Some(json!({"description": "A"})),
        )
        .await;
    assert_eq!(r.json()["version"], 4);
    // Without If-Match the last write wins, as in most APIs.
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/roles/ops",
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["description"], Value::Null);
    assert_eq!(r.json()["version"], 5);

    // Deleted and made again, the name continues its versions: an ETag
    // read before the delete never matches the new object.
    let r = env.call(Method::DELETE, "/api/v1/roles/ops", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = env
        .call(Method::POST, "/api/v1/roles", Some(json!({"name": "ops"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["version"], 6);
    let stale = env
        .call_if(
            Method::PATCH,
            "/api/v1/roles/ops",
            &tag,
            json!({"description": "C"}),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text()
    );
}

#[tokio::test]
async fn api_objects_survive_a_restart_and_the_file_cannot_take_their_names() {
    let mut env = Env::start().await;
    let r = env
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "kept", "header": "X-Kept", "value": SECRET_A})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = env
        .call(
            Method::POST,
            "/api/v1/connectors",
            Some(json!({"name": "kept-conn", "upstream": env.up.url(), "tokens": ["kept", "file-token"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    env.gw.restart(false);
    let r = env.call(Method::GET, "/api/v1/tokens/kept", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["source"], "api");
    assert_eq!(r.json()["state"], "ready", "the sealed value came back");
    let r = env
        .call(Method::GET, "/api/v1/connectors/kept-conn", None)
        .await;
    assert_eq!(r.json()["tokens"].as_array().map(Vec::len), Some(2));

    // A reload whose file defines `kept` too is refused, naming both sides;
    // the running catalog is untouched.
    let up = env.up.url();
    env.gw.write_config(&yaml(&up).replace(
        "\ntokens:\n",
        "\ntokens:\n  kept: { value: { env: KG_CATALOG_FILE }, header: X-Other }\n",
    ));
    let r = env.call(Method::POST, "/api/v1/reload", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("admin API"), "{}", r.text());
    let r = env.call(Method::GET, "/api/v1/tokens/kept", None).await;
    assert_eq!(r.json()["header"], "x-kept");

    // Export: the file plus the API objects, never a value, and the file
    // it prints passes `keygate check`.
    env.gw.write_config(&yaml(&up));
    let r = env.call(Method::GET, "/api/v1/export", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains("kept-conn") && text.contains("file-conn"),
        "{text}"
    );
    assert!(!text.contains(SECRET_A));
    let path = env.gw.dir.path().join("exported.yaml");
    std::fs::write(&path, &text).expect("write export");
    let out = std::process::Command::new(common::BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_catalog_change_cannot_lock_every_operator_out() {
    let env = Env::start().await;
    for (path, body) in [
        ("/api/v1/roles", json!({"name": "ops", "admin": true})),
        (
            "/api/v1/clients",
            json!({"name": "ops-bot", "roles": ["ops"]}),
        ),
    ] {
        let r = env.call(Method::POST, path, Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let ops_key = env.new_key("ops-bot").await;
    // The bootstrap key goes; the API-made admin key remains.
    let r = env.call(Method::GET, "/api/v1/keys", None).await;
    let boot = r.json()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["client"] == "keygate-admin")
        .and_then(|k| k["id"].as_str())
        .expect("bootstrap key")
        .to_string();
    let r = env
        .call(Method::DELETE, &format!("/api/v1/keys/{boot}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    // Taking admin from the last admin role, or the role from the last
    // admin client, is refused; the operator can still work.
    let r = admin(
        &env.gw,
        &ops_key,
        Method::PATCH,
        "/api/v1/roles/ops",
        Some(json!({"admin": false})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("last_admin_key"));
    let r = admin(
        &env.gw,
        &ops_key,
        Method::PATCH,
        "/api/v1/clients/ops-bot",
        Some(json!({"roles": []})),
    )
    .await;
    assert_eq!(r.error_code().as_deref(), Some("last_admin_key"));
    let r = admin(&env.gw, &ops_key, Method::GET, "/api/v1/roles/ops", None).await;
    assert_eq!(r.json()["admin"], true);
    // Forced, it happens, and the key loses the admin API at once.
    let r = admin(
        &env.gw,
        &ops_key,
        Method::PATCH,
        "/api/v1/roles/ops?force=true",
        Some(json!({"admin": false})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = admin(&env.gw, &ops_key, Method::GET, "/api/v1/roles/ops", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_update_applies_to_the_next_request() {
    let env = Env::start().await;
    for (path, body) in [
        (
            "/api/v1/tokens",
            json!({"name": "t", "header": "Authorization", "prefix": "Bearer", "value": SECRET_A}),
        ),
        (
            "/api/v1/connectors",
            json!({"name": "c", "upstream": env.up.url(), "tokens": ["t"], "headers": {"X-Static": "one"}}),
        ),
        (
            "/api/v1/roles",
            json!({"name": "r", "allow": [{"connector": "c"}]}),
        ),
        ("/api/v1/clients", json!({"name": "bot", "roles": ["r"]})),
    ] {
        let r = env.call(Method::POST, path, Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text());
    }
    let key = env.new_key("bot").await;
    assert_eq!(env.proxied("c", &key).await.status, StatusCode::OK);

    // Token: a new prefix and header.
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/tokens/t",
            Some(json!({"prefix": "Token", "header": "X-Token"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["definition_version"], 2);
    env.proxied("c", &key).await;
    let seen = env.up.last();
    assert_eq!(
        seen.header("x-token").as_deref(),
        Some(format!("Token {SECRET_A}").as_str()),
        "the sealed value stays with the token across a definition change"
    );
    assert_eq!(seen.header("authorization"), None);

    // Connector: a static header changes.
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/connectors/c",
            Some(json!({"headers": {"X-Static": "two"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    env.proxied("c", &key).await;
    assert_eq!(env.up.last().header("x-static").as_deref(), Some("two"));

    // Role: narrowed to POST, so a GET is now forbidden.
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/roles/r",
            Some(json!({"allow": [{"connector": "c", "methods": ["POST"]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(env.proxied("c", &key).await.status, StatusCode::FORBIDDEN);

    // Client: given no roles, it reaches nothing.
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/clients/bot",
            Some(json!({"description": "no longer billing", "roles": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["description"], "no longer billing");
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/roles/r",
            Some(json!({"allow": [{"connector": "c"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(env.proxied("c", &key).await.status, StatusCode::FORBIDDEN);

    // A renamed body is refused; the name is the path's.
    let r = env
        .call(
            Method::PATCH,
            "/api/v1/roles/r",
            Some(json!({"name": "other"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["problems"][0]["pointer"], "/name");
    // Creating a name that exists is a conflict.
    let r = env
        .call(Method::POST, "/api/v1/roles", Some(json!({"name": "r"})))
        .await;
    assert_eq!(r.error_code().as_deref(), Some("already_exists"));
}

#[tokio::test]
async fn no_secret_rests_in_a_definition_and_no_token_inherits_an_old_value() {
    let mut env = Env::start().await;
    let refused = [
        // A value on a token that takes none.
        json!({"name": "u", "type": "user", "header": "X-U", "value": SECRET_A}),
        // A plain client secret for a token endpoint.
        json!({"name": "o", "type": "http_request",
               "request": {"url": "https://id.example/token",
                           "form": {"grant_type": "client_credentials", "client_secret": SECRET_B}},
               "response": {"token": "/access_token"}}),
    ];
    for body in refused {
        let r = env.call(Method::POST, "/api/v1/tokens", Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert!(!r.text().contains(SECRET_A) && !r.text().contains(SECRET_B));
    }
    let r = env
        .call(
            Method::POST,
            "/api/v1/connectors",
            Some(json!({"name": "s", "upstream": env.up.url(), "headers": {"Authorization": SECRET_C}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(
        r.json()["error"]["problems"][0]["pointer"],
        "/headers/Authorization"
    );

    // A file token with a run-time value goes away with a reload; a token
    // made later under its name through the API starts empty.
    let up = env.up.url();
    env.gw
        .write_config(&yaml(&up).replace("\ntokens:\n", "\ntokens:\n  gone: { header: X-Gone }\n"));
    let r = env.call(Method::POST, "/api/v1/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = env
        .call(
            Method::PUT,
            "/api/v1/tokens/gone/value",
            Some(json!({"value": SECRET_A})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    env.gw.write_config(&yaml(&up));
    let r = env.call(Method::POST, "/api/v1/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = env
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "gone", "header": "X-New"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["state"], "unavailable", "{}", r.text());
    assert_eq!(r.json()["fingerprint"], Value::Null);

    // A stale If-Match on a client delete leaves its keys alone.
    let r = env
        .call(
            Method::POST,
            "/api/v1/clients",
            Some(json!({"name": "k", "roles": ["file-role"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let key = env.new_key("k").await;
    let r = env
        .call_if(
            Method::DELETE,
            "/api/v1/clients/k?confirm=true",
            "\"7\"",
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text());
    assert_eq!(env.proxied("file-conn", &key).await.status, StatusCode::OK);
    env.gw
        .secrets
        .extend([SECRET_A.into(), SECRET_B.into(), SECRET_C.into()]);
    env.gw.assert_no_secrets();
}
