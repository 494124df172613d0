//! One publish per change, under fire: requests hammer the real binary
//! while admin reloads swap between two configs that change, together, a
//! connector's upstream and its `text` token, an `http_request` token's
//! endpoint, a `user` token's header and JWT check, and add and remove a
//! connector (with a new `http_request` token), a connector with a `text`
//! token and a YAML key. A request must never see a connector without its
//! token's value, a token with the other config's upstream, or a 401/503
//! that neither config alone would give; a key removed from the file is
//! refused by the very next request after the reload returns.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::jwt::{hs256, now_s};
use common::{Gateway, JsonServer, Upstream, admin, bearer, get, initial_admin_key, keygen};
use http::{Method, StatusCode};

const JWT_SECRET: &str = "race-jwt-secret-0123456789abcdef";
/// Hammering tasks, and reloads per run (each one a swap A → B or B → A).
const TASKS: usize = 4;
const RELOADS: usize = 12;

/// A token endpoint answering `value` for an hour.
async fn endpoint(value: &'static str) -> JsonServer {
    JsonServer::start(Arc::new(move |_, _| {
        (
            200,
            format!(r#"{{"access_token":"{value}","expires_in":3600}}"#),
        )
    }))
    .await
}

struct Fixture {
    up: Upstream,
    ep_a: JsonServer,
    ep_b: JsonServer,
    ep_only_b: JsonServer,
    both_hash: String,
    a_only_hash: String,
}

fn http_token(name: &str, url: &str) -> String {
    format!(
        "  {name}:\n    type: http_request\n    request: {{ method: POST, url: \"{url}\", form: {{ grant_type: client_credentials }} }}\n    response: {{ token: /access_token, expires_in: /expires_in }}\n    prefix: Bearer\n    header: Authorization\n"
    )
}

/// Config A or B. Both declare the key `both`; only A declares `a-only`.
fn config(f: &Fixture, b: bool) -> String {
    let up = f.up.url();
    let (side, text, ep) = if b {
        ("b", "text-B", &f.ep_b)
    } else {
        ("a", "text-A", &f.ep_a)
    };
    let user = if b {
        format!(
            "  user:\n    type: user\n    from_header: X-User-B\n    header: Authorization\n    prefix: Bearer\n    jwt: {{ hs256_secret: {{ literal: \"{JWT_SECRET}\" }}, audience: race }}\n"
        )
    } else {
        "  user:\n    type: user\n    from_header: X-User-A\n    header: Authorization\n    prefix: Bearer\n".to_string()
    };
    let mut tokens = format!(
        "  text: {{ value: {{ literal: \"{text}\" }}, prefix: Bearer, header: Authorization }}\n{}{user}",
        http_token("fetched", &ep.url("/token"))
    );
    let mut connectors = format!(
        "  text: {{ upstream: \"{up}/{side}/text\", tokens: [text] }}\n  http: {{ upstream: \"{up}/{side}/http\", tokens: [fetched] }}\n  user: {{ upstream: \"{up}/{side}/user\", tokens: [user] }}\n"
    );
    let mut keys = format!("{{ name: both, sha256: \"{}\" }}", f.both_hash);
    if b {
        tokens.push_str(&http_token("only_b_tok", &f.ep_only_b.url("/token")));
        connectors.push_str(&format!(
            "  only_b: {{ upstream: \"{up}/b/only\", tokens: [only_b_tok] }}\n"
        ));
    } else {
        tokens.push_str(
            "  only_a_tok: { value: { literal: \"text-only-A\" }, prefix: Bearer, header: Authorization }\n",
        );
        connectors.push_str(&format!(
            "  only_a: {{ upstream: \"{up}/a/only\", tokens: [only_a_tok] }}\n"
        ));
        keys.push_str(&format!(
            ", {{ name: a-only, sha256: \"{}\" }}",
            f.a_only_hash
        ));
    }
    let only = if b { "only_b" } else { "only_a" };
    let allow = ["text", "http", "user", only]
        .map(|c| format!("{{ connector: {c} }}"))
        .join(", ");
    format!(
        "server: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\ntokens:\n{tokens}connectors:\n{connectors}roles: {{ r: {{ allow: [ {allow} ] }} }}\nclients: {{ c: {{ roles: [r], keys: [ {keys} ] }} }}\n"
    )
}

/// What the upstream must have received with a request under `path`: the
/// value of the token the same config attached to that upstream.
fn expected_auth(path: &str, user_a: &str, user_b: &str) -> Option<String> {
    let want = match path.split('/').take(3).collect::<Vec<_>>().as_slice() {
        ["", "a", "text"] => "text-A",
        ["", "b", "text"] => "text-B",
        ["", "a", "http"] => "http-A",
        ["", "b", "http"] => "http-B",
        ["", "a", "only"] => "text-only-A",
        ["", "b", "only"] => "http-only-B",
        ["", "a", "user"] => user_a,
        ["", "b", "user"] => user_b,
        _ => return None,
    };
    Some(format!("Bearer {want}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_publish_each_config_whole() {
    let (both, both_hash) = keygen("kg_");
    let (a_only, a_only_hash) = keygen("kg_");
    let f = Fixture {
        up: Upstream::start().await,
        ep_a: endpoint("http-A").await,
        ep_b: endpoint("http-B").await,
        ep_only_b: endpoint("http-only-B").await,
        both_hash,
        a_only_hash,
    };
    let mut gw = Gateway::start(&config(&f, false));
    let admin_key = initial_admin_key(&gw);
    gw.secrets = vec![both.clone(), a_only.clone(), admin_key.clone()];
    let user_a = "opaque-user-a".to_string();
    let user_b = hs256(
        serde_json::json!({"sub": "u1", "aud": "race", "exp": now_s() + 3600}),
        JWT_SECRET,
    );
    // Warm up: the first fetch of `fetched` (start does not wait for it).
    let auth = bearer(&both);
    let mut warm = 0;
    while get(&gw.url("/http/v1/warm"), &[("authorization", &auth)])
        .await
        .status
        != StatusCode::OK
    {
        warm += 1;
        assert!(warm < 100, "the http_request token never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let base = gw.url("");
        let (auth, ua, ub) = (auth.clone(), user_a.clone(), user_b.clone());
        tasks.push(tokio::spawn(async move {
            let mut unexpected = Vec::new();
            let mut i = t;
            // Bounded: stops with the reloads, or after 100 000 requests.
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                let connector = ["text", "http", "user", "only_a", "only_b"][i % 5];
                i += TASKS;
                let url = format!("{base}/{connector}/v1/{i}");
                let r = get(
                    &url,
                    &[
                        ("authorization", auth.as_str()),
                        ("x-user-a", ua.as_str()),
                        ("x-user-b", ub.as_str()),
                    ],
                )
                .await;
                sent.fetch_add(1, Ordering::SeqCst);
                // A connector that only one config has is 404 under the
                // other; nothing else but 200 is an answer either config
                // gives.
                let fine = r.status == StatusCode::OK
                    || (connector.starts_with("only_")
                        && r.status == StatusCode::NOT_FOUND
                        && r.error_code().as_deref() == Some("unknown_connector"));
                if !fine {
                    unexpected.push(format!("{connector}: {} {:?}", r.status, r.error_code()));
                }
            }
            unexpected
        }));
    }

    for n in 0..RELOADS {
        let b = n % 2 == 0;
        gw.write_config(&config(&f, b));
        let r = admin(&gw, &admin_key, Method::POST, "/api/v1/reload", None).await;
        assert_eq!(r.status, StatusCode::OK, "reload {n}: {}", r.text());
        // The very next request with the key only A declares.
        let a = get(
            &gw.url("/text/v1/key-check"),
            &[("authorization", &bearer(&a_only))],
        )
        .await;
        if b {
            assert_eq!(
                (a.status, a.error_code().as_deref()),
                (StatusCode::UNAUTHORIZED, Some("invalid_api_key")),
                "reload {n}: a key removed from the file still authenticates"
            );
        } else {
            assert_eq!(
                a.status,
                StatusCode::OK,
                "reload {n}: a declared key is refused"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut unexpected = Vec::new();
    for t in tasks {
        unexpected.extend(t.await.expect("join"));
    }
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        unexpected.is_empty(),
        "{} of {sent} requests got an answer neither config gives: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(20)]
    );
    assert!(sent >= 100, "the hammer barely ran: {sent} requests");

    // Every request the upstream saw carried the token its own config
    // attached to that upstream: never the other config's value.
    let seen = f.up.requests();
    let mut checked = 0;
    for s in &seen {
        let path = s.uri.split('?').next().unwrap_or_default().to_string();
        let Some(want) = expected_auth(&path, &user_a, &user_b) else {
            continue;
        };
        assert_eq!(
            s.header("authorization").as_deref(),
            Some(want.as_str()),
            "{path} got another config's credential"
        );
        checked += 1;
    }
    for side in ["/a/", "/b/"] {
        for c in ["text", "http", "user", "only"] {
            let prefix = format!("{side}{c}");
            assert!(
                seen.iter().any(|s| s.uri.starts_with(&prefix)),
                "no request reached {prefix}: the test did not exercise it"
            );
        }
    }
    assert!(
        checked >= sent / 2,
        "only {checked} of {sent} requests checked"
    );
    gw.finish();
}
