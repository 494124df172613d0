//! Admin API for tokens and status, encrypted run-time values, metrics
//! (issue 5), against the real binary, its SQLite file and master key.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::{BIN, Gateway, Reply, Upstream, bearer, get, initial_admin_key, send};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const ENV_VALUE: &str = "env-token-value-31337";
const LITERAL_VALUE: &str = "literal-token-value-4242";

fn yaml(up: &str, extra: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  runtime: {{ prefix: Bearer, header: Authorization }}
  from-env: {{ value: {{ env: KG_ADMIN_TEST_ENV }}, header: X-Env }}
  from-literal: {{ value: {{ literal: "{LITERAL_VALUE}" }}, header: X-Lit }}
connectors:
  svc: {{ upstream: "{up}", tokens: [runtime, from-env, from-literal] }}
{extra}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
clients:
  app: {{ roles: [caller] }}
"#
    )
}

struct Env {
    gw: Gateway,
    up: Upstream,
    admin_key: String,
    app_key: String,
    /// Every admin response body, for the final sweep.
    seen: Vec<String>,
}

impl Env {
    async fn start() -> Env {
        let up = Upstream::start().await;
        let gw = Gateway::start_with(
            &yaml(&up.url(), ""),
            &[("KG_ADMIN_TEST_ENV", ENV_VALUE)],
            |_| {},
        );
        let admin_key = initial_admin_key(&gw);
        let mut env = Env {
            gw,
            up,
            admin_key: admin_key.clone(),
            app_key: String::new(),
            seen: Vec::new(),
        };
        let r = env
            .admin(
                Method::POST,
                "/api/v1/keys",
                Some(json!({"client": "app", "name": "t"})),
            )
            .await;
        env.app_key = r.json()["key"].as_str().expect("key").to_string();
        env.gw.secrets = vec![
            admin_key,
            env.app_key.clone(),
            ENV_VALUE.into(),
            LITERAL_VALUE.into(),
        ];
        env
    }

    async fn admin(&mut self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let auth = bearer(&self.admin_key);
        let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let r = send(
            method,
            &self.gw.admin_url(path),
            &[("authorization", &auth)],
            b,
        )
        .await;
        self.seen.push(r.text());
        r
    }

    async fn proxied(&self) -> Reply {
        get(
            &self.gw.url("/svc/v1/x"),
            &[("authorization", &bearer(&self.app_key))],
        )
        .await
    }

    fn db(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for f in ["keygate.db", "keygate.db-wal"] {
            if let Ok(b) = std::fs::read(self.gw.dir.path().join("data").join(f)) {
                all.extend(b);
            }
        }
        all
    }

    /// The sweep: no admin response holds a token value or an API key
    /// (the create-key response is the one place a key is shown, and is
    /// excluded by the caller), then the process output sweep.
    fn finish(self, values: &[&str]) {
        let Env {
            gw, seen, app_key, ..
        } = self;
        for body in &seen {
            for v in values.iter().copied().chain([ENV_VALUE, LITERAL_VALUE]) {
                assert!(!body.contains(v), "an admin response holds a token value");
            }
            assert!(
                !body.contains(&app_key) || body.contains("\"created_at\""),
                "an admin response holds a key"
            );
        }
        let mut gw = gw;
        gw.secrets.extend(values.iter().map(|v| v.to_string()));
        assert_eq!(gw.finish(), Some(0));
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn run_time_value_is_hot_swapped_persisted_encrypted_and_survives() {
    let mut env = Env::start().await;
    let r = env.proxied().await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("credential_unavailable")
        )
    );
    assert_eq!(
        get(&env.gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let r = env
        .admin(
            Method::PUT,
            "/api/v1/tokens/runtime/value",
            Some(json!({"value": "sk_live_runtime_1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["state"], "ready");
    assert_eq!(env.proxied().await.status, StatusCode::OK);
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some("Bearer sk_live_runtime_1")
    );
    assert_eq!(
        get(&env.gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::OK
    );

    let r = env
        .admin(
            Method::PUT,
            "/api/v1/tokens/runtime/value",
            Some(json!({"value": "sk_live_runtime_2"})),
        )
        .await;
    assert_eq!(r.json()["version"], 2);
    env.proxied().await;
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some("Bearer sk_live_runtime_2")
    );
    assert!(
        !contains(&env.db(), "sk_live_runtime"),
        "the store never holds a value in plaintext"
    );

    // A reload of an unrelated part keeps it.
    let extra = format!("  other: {{ upstream: \"{}\" }}", env.up.url());
    env.gw.write_config(&yaml(&env.up.url(), &extra));
    assert!(env.gw.wait_log("config reloaded", 3));
    env.proxied().await;
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some("Bearer sk_live_runtime_2")
    );

    // A restart keeps it (decrypted from the store).
    env.gw.restart(false);
    assert_eq!(env.proxied().await.status, StatusCode::OK);
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some("Bearer sk_live_runtime_2")
    );
    let r = env.admin(Method::GET, "/api/v1/tokens", None).await;
    let t = common::find_in(&r.json(), "tokens", "name", "runtime");
    assert_eq!(t["version"], 2);
    assert_eq!(t["value_source"]["kind"], "admin");
    assert_eq!(t["source"], "config");
    assert_eq!(t["fingerprint"].as_str().map(str::len), Some(8));
    env.finish(&["sk_live_runtime_1", "sk_live_runtime_2"]);
}

#[tokio::test]
async fn wrong_or_missing_master_key_refuses_to_start_and_loses_nothing() {
    let mut env = Env::start().await;
    env.admin(
        Method::PUT,
        "/api/v1/tokens/runtime/value",
        Some(json!({"value": "kept-value-9"})),
    )
    .await;
    let key_path = env.gw.dir.path().join("data/master.key");
    let good = std::fs::read_to_string(&key_path).expect("master key");
    env.gw.signal("TERM");
    let _ = env.gw.child.wait();

    for (bad, needle) in [(Some(hex_of(3)), "does not match"), (None, "missing")] {
        match &bad {
            Some(k) => std::fs::write(&key_path, k).expect("write"),
            None => std::fs::remove_file(&key_path).expect("rm"),
        }
        let out = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&env.gw.config_path)
            .output()
            .expect("run");
        assert!(!out.status.success(), "must refuse to start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(
            !key_path.exists() || std::fs::read_to_string(&key_path).ok() == bad,
            "a missing key is never regenerated over existing ciphertext"
        );
    }
    std::fs::write(&key_path, &good).expect("restore");
    env.gw.restart(true);
    env.proxied().await;
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some("Bearer kept-value-9")
    );
    env.finish(&["kept-value-9"]);
}

fn hex_of(b: u8) -> String {
    std::iter::repeat_n(format!("{b:02x}"), 32).collect()
}

#[tokio::test]
async fn token_routes_refuse_bad_input() {
    let mut env = Env::start().await;
    for (name, code) in [
        ("from-env", StatusCode::CONFLICT),
        ("from-literal", StatusCode::CONFLICT),
        ("ghost", StatusCode::NOT_FOUND),
    ] {
        let r = env
            .admin(
                Method::PUT,
                &format!("/api/v1/tokens/{name}/value"),
                Some(json!({"value": "x"})),
            )
            .await;
        assert_eq!(r.status, code, "{name}: {}", r.text());
        assert!(r.error_code().is_some());
    }
    let long = "y".repeat(8 * 1024 + 1);
    for bad in ["a\r\nX-Evil: 1", "nul\u{0}", "", long.as_str()] {
        let r = env
            .admin(
                Method::PUT,
                "/api/v1/tokens/runtime/value",
                Some(json!({"value": bad})),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
    }
    let r = env
        .admin(
            Method::PUT,
            "/api/v1/tokens/runtime/value",
            Some(json!({"valu": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = env
        .admin(Method::POST, "/api/v1/tokens/runtime/refresh", None)
        .await;
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let r = env
        .admin(Method::POST, "/api/v1/tokens/ghost/refresh", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nothing was set by the refused writes.
    assert_eq!(env.proxied().await.status, StatusCode::SERVICE_UNAVAILABLE);
    env.finish(&[]);
}

#[tokio::test]
async fn metrics_parse_and_count_per_connector() {
    let mut env = Env::start().await;
    env.admin(
        Method::PUT,
        "/api/v1/tokens/runtime/value",
        Some(json!({"value": "metric-value-5"})),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(env.proxied().await.status, StatusCode::OK);
    }
    get(&env.gw.url("/svc/v1/x"), &[]).await; // 401
    let r = get(&env.gw.admin_url("/metrics"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    env.seen.push(text.clone());
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        // name{labels} value — the value must be a number.
        let (name_labels, value) = line.rsplit_once(' ').expect("sample line");
        assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
        let name = name_labels.split('{').next().expect("name");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        samples.push((
            name_labels.to_string(),
            value.parse::<f64>().expect("value"),
        ));
    }
    let get_sample = |needle: &str| samples.iter().find(|(k, _)| k == needle).map(|(_, v)| *v);
    assert_eq!(
        get_sample(r#"keygate_requests_total{connector="svc",status="200"}"#),
        Some(3.0)
    );
    assert_eq!(
        get_sample(r#"keygate_requests_total{connector="svc",status="401"}"#),
        Some(1.0)
    );
    assert_eq!(
        get_sample(r#"keygate_auth_failures_total{reason="missing_api_key"}"#),
        Some(1.0)
    );
    assert_eq!(
        get_sample(r#"keygate_token_injections_total{connector="svc",token="runtime"}"#),
        Some(3.0)
    );
    assert!(
        get_sample(r#"keygate_request_duration_seconds_count{connector="svc"}"#)
            .is_some_and(|c| c >= 4.0)
    );
    assert!(get_sample(r#"keygate_token_age_seconds{token="runtime"}"#).is_some());
    assert!(get_sample("process_resident_memory_bytes").is_some_and(|m| m > 1e6));
    assert_eq!(
        get_sample(r#"keygate_config_reloads_total{result="failure"}"#),
        Some(0.0)
    );
    for name in [
        "keygate_config_reloads",
        "keygate_open_connections",
        "process_cpu_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name}")),
            "{name} is declared"
        );
    }
    env.finish(&["metric-value-5"]);
}

#[tokio::test]
async fn status_reports_a_bad_config_write_and_reload_route_applies_a_good_one() {
    let mut env = Env::start().await;
    let r = env.admin(Method::GET, "/api/v1/status", None).await;
    assert_eq!(r.json()["generation"], 1);
    assert_eq!(r.json()["last_reload"]["ok"], true);

    let good = yaml(&env.up.url(), "");
    let broken = good.replace("  svc: {", "  svc: { bogus_field: 1,");
    env.gw.write_config(&broken);
    assert!(env.gw.wait_log("config reload rejected", 3));
    let r = env.admin(Method::GET, "/api/v1/status", None).await;
    let last = &r.json()["last_reload"];
    assert_eq!(last["ok"], false);
    let err = &last["errors"][0];
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("bogus_field"),
        "{r:?}",
        r = r.text()
    );
    assert!(err["line"].as_u64().is_some(), "the position is kept");
    assert_eq!(r.json()["generation"], 1, "the old config keeps serving");

    // Reload through the API: the fixed file applies. Writing the file
    // also wakes the watcher, so the route is held to the reload it
    // reports: the generation it returns was logged as an admin reload.
    std::fs::write(&env.gw.config_path, &good).expect("write");
    let r = env.admin(Method::POST, "/api/v1/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let generation = r.json()["generation"].as_u64().expect("generation");
    assert!(generation >= 2, "{}", r.text());
    assert!(
        env.gw.wait_log(r#""trigger":"admin""#, 5),
        "{}",
        env.gw.stderr_text()
    );
    let admin_reloads: Vec<u64> = env
        .gw
        .stderr
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"] == "config reloaded" && v["fields"]["trigger"] == "admin"
        })
        .filter_map(|v| v["fields"]["generation"].as_u64())
        .collect();
    assert_eq!(admin_reloads, vec![generation], "{}", env.gw.stderr_text());
    let r = env.admin(Method::GET, "/api/v1/status", None).await;
    assert_eq!(r.json()["last_reload"]["ok"], true);
    assert!(r.json()["generation"].as_u64().expect("gen") >= generation);

    let r = env.admin(Method::GET, "/api/v1/connectors", None).await;
    let c = &r.json()["connectors"][0];
    assert_eq!(c["name"], "svc");
    assert_eq!(c["tokens"][0]["name"], "runtime");
    assert_eq!(c["tokens"][0]["header"], "authorization");
    assert_eq!(c["tokens"][0]["prefix"], "Bearer");
    let r = env.admin(Method::GET, "/api/v1/clients", None).await;
    let names: Vec<String> = r.json()["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        names.contains(&"app".to_string()) && names.contains(&"keygate-admin".to_string()),
        "{names:?}"
    );
    env.finish(&[]);
}

/// The route table is what the listener serves: every row is answered
/// (the table and `openapi.yaml` are compared, shapes included, by the
/// unit tests in `src/admin/openapi_check.rs`), and a row's path with
/// another method is 405 naming the row's methods.
#[tokio::test]
async fn every_route_in_the_table_is_served() {
    let mut env = Env::start().await;
    for route in keygate::admin::ROUTES {
        let (m, p) = (route.method.as_str(), route.pattern);
        let path = p
            .replace("{name}", "runtime")
            .replace("{id}", "key_missing");
        let body = match (m, p) {
            ("PUT", _) => Some(json!({"value": "route-probe-1"})),
            ("POST", "/api/v1/keys") => Some(json!({"client": "app", "name": "probe"})),
            _ => None,
        };
        let r = env.admin(route.method.clone(), &path, body).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
        assert!(
            !r.text().contains("no such admin route"),
            "{m} {p} is not served"
        );
    }
    let r = env.admin(Method::PATCH, "/api/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let r = env.admin(Method::GET, "/api/v1/nothing", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let probe_keys: Vec<String> = env
        .seen
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter_map(|v| v["key"].as_str().map(str::to_string))
        .collect();
    env.gw.secrets.extend(probe_keys);
    env.finish(&["route-probe-1"]);
}

#[tokio::test]
async fn tokens_cli_lists_and_sets_from_stdin() {
    let env = Env::start().await;
    let url = format!("http://{}", env.gw.admin);
    let mut child = Command::new(BIN)
        .args(["tokens", "set", "runtime", "--admin-url", &url])
        .env("KEYGATE_ADMIN_KEY", &env.admin_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"cli-value-77\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("cli-value-77"));
    assert_eq!(env.proxied().await.status, StatusCode::OK);
    assert_eq!(
        env.up.last().header("authorization").as_deref(),
        Some("Bearer cli-value-77"),
        "the trailing newline is dropped"
    );

    let out = Command::new(BIN)
        .args(["tokens", "list", "--admin-url", &url])
        .env("KEYGATE_ADMIN_KEY", &env.admin_key)
        .output()
        .expect("cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with("NAME") && text.contains("runtime") && text.contains("ready"),
        "{text}"
    );
    assert!(!text.contains("cli-value-77") && !text.contains(ENV_VALUE));
    let out = Command::new(BIN)
        .args(["tokens", "refresh", "runtime", "--admin-url", &url])
        .env("KEYGATE_ADMIN_KEY", &env.admin_key)
        .output()
        .expect("cli");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    env.finish(&["cli-value-77"]);
}

#[tokio::test]
async fn the_openapi_document_is_served_as_yaml_and_json_to_admins() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up.url(), ""));
    let admin = bearer(&initial_admin_key(&gw));
    for path in ["/api/v1/openapi.yaml", "/api/v1/openapi.json"] {
        let r = get(&gw.admin_url(path), &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} without a key");
    }
    let y = get(
        &gw.admin_url("/api/v1/openapi.yaml"),
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(y.status, StatusCode::OK);
    assert_eq!(
        y.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/vnd.oai.openapi"[..])
    );
    assert!(y.text().starts_with("openapi: "), "{}", y.text());
    let j = get(
        &gw.admin_url("/api/v1/openapi.json"),
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(j.status, StatusCode::OK);
    assert_eq!(
        j.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/vnd.oai.openapi+json"[..])
    );
    let doc: Value = serde_json::from_slice(&j.body).expect("JSON");
    // The same document: its version line and every path the YAML names.
    let version = y
        .text()
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("openapi: "))
        .map(|v| v.trim().trim_matches('"').to_string());
    assert_eq!(doc["openapi"].as_str().map(str::to_string), version);
    let paths = doc["paths"].as_object().expect("paths");
    for line in y.text().lines().filter(|l| l.starts_with("  /")) {
        let path = line.trim().trim_end_matches(':');
        assert!(paths.contains_key(path), "{path} missing from the JSON");
    }
    assert!(paths.contains_key("/api/v1/openapi.json"));
    assert!(paths["/api/v1/keys"]["post"]["responses"]["201"].is_object());
    gw.finish();
}

/// What every route answers by its kind, on the real binary, against the
/// document it serves: without a key 401 with `WWW-Authenticate`, with
/// two different keys 400, with a key without admin rights 403, and a body
/// over 64 KiB 413 exactly where the document takes a body (a route that
/// takes none ignores it). Each status must be one the document lists for
/// the operation, with its `Keygate-Error` code. The rest is schemathesis's
/// (`tests/schemathesis/run.sh`, in CI).
#[tokio::test]
async fn every_route_answers_its_key_and_body_refusals_as_documented() {
    let mut env = Env::start().await;
    let doc = env
        .admin(Method::GET, "/api/v1/openapi.json", None)
        .await
        .json();
    let (admin, app) = (bearer(&env.admin_key), bearer(&env.app_key));
    let big = Bytes::from(vec![b' '; 64 * 1024 + 1]);
    for route in keygate::admin::ROUTES {
        let (m, p) = (route.method.clone(), route.pattern);
        let op = &doc["paths"][p][m.as_str().to_ascii_lowercase()];
        let documented = |r: &Reply, why: &str| {
            let status = r.status.as_u16().to_string();
            let listed = &op["responses"][&status];
            assert!(listed.is_object(), "{m} {p} {why}: {status} undocumented");
            let code = r.error_code();
            let codes = doc_codes(&doc, listed);
            assert!(
                codes.is_empty() || code.as_ref().is_some_and(|c| codes.contains(c)),
                "{m} {p} {why}: code {code:?} not in {codes:?}"
            );
        };
        let url = env.gw.admin_url(
            &p.replace("{name}", "runtime")
                .replace("{id}", "key_missing"),
        );
        if route.access == keygate::admin::Access::Admin {
            let r = send(m.clone(), &url, &[], Bytes::new()).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {p}");
            assert!(r.headers.contains_key("www-authenticate"), "{m} {p}");
            documented(&r, "without a key");
            let two = [("authorization", admin.as_str()), ("x-api-key", "kg_other")];
            let r = send(m.clone(), &url, &two, Bytes::new()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {p}");
            documented(&r, "with two keys");
            let r = send(m.clone(), &url, &[("authorization", &app)], Bytes::new()).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {p}");
            documented(&r, "with a key without admin rights");
        }
        let r = send(m.clone(), &url, &[("authorization", &admin)], big.clone()).await;
        let takes_body = op.get("requestBody").is_some();
        assert_eq!(
            r.status == StatusCode::PAYLOAD_TOO_LARGE,
            takes_body,
            "{m} {p}: {} to a body over 64 KiB",
            r.status
        );
        documented(&r, "with a body over 64 KiB");
        env.seen.push(r.text());
    }
    env.finish(&[]);
}

/// The `Keygate-Error` codes a documented response lists (none: any).
fn doc_codes(doc: &Value, response: &Value) -> Vec<String> {
    let response = match response["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or(&Value::Null),
        None => response,
    };
    response["headers"]["Keygate-Error"]["schema"]["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

/// Refreshers run only for tokens a connector uses: refreshing an unused
/// `http_request` token is the caller's mistake (409), not an outage (503).
#[tokio::test]
async fn refreshing_an_http_request_token_no_connector_uses_is_409() {
    let up = Upstream::start().await;
    let extra = format!(
        "  unused-oauth: {{ type: http_request, request: {{ url: \"{}/token\" }}, response: {{ token: /t }}, header: X-T }}\n",
        up.url()
    );
    let yaml = yaml(&up.url(), "").replace("tokens:\n", &format!("tokens:\n{extra}"));
    let gw = Gateway::start(&yaml);
    let key = initial_admin_key(&gw);
    let r = common::admin(
        &gw,
        &key,
        Method::POST,
        "/api/v1/tokens/unused-oauth/refresh",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(
        r.text().contains("not used by any connector"),
        "{}",
        r.text()
    );
    gw.finish();
}
