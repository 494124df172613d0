//! Paging of the admin lists (`?limit=&cursor=`, `next_cursor`) against
//! the real binary: 250 API keys in pages of 100 with no gap and no
//! repeat, the name-sorted lists, and the 400s for a bad limit, a cursor
//! the list never gave out, or a parameter the route does not take.

mod common;

use std::collections::HashSet;

use common::{Gateway, Upstream, admin, admin_pages, initial_admin_key};
use futures_util::StreamExt;
use http::{Method, StatusCode};
use serde_json::json;

fn yaml(up: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0, shutdown_grace: 5s }}
admin: {{ listen: 127.0.0.1:0 }}
tokens:
  alpha: {{ header: X-Alpha }}
  beta: {{ header: X-Beta }}
  gamma: {{ header: X-Gamma }}
connectors:
  one: {{ upstream: "{up}", tokens: [alpha] }}
  two: {{ upstream: "{up}", tokens: [beta] }}
  three: {{ upstream: "{up}", tokens: [gamma] }}
roles:
  caller: {{ allow: [ {{ connector: one }} ] }}
clients:
  app: {{ roles: [caller] }}
  batch: {{ roles: [caller] }}
"#
    )
}

#[tokio::test]
async fn two_hundred_fifty_keys_page_by_hundred_without_gap_or_repeat() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&yaml(&up.url()));
    let key = initial_admin_key(&gw);
    gw.secrets.push(key.clone());
    // 250 keys, eight requests in flight (the store writes one at a time).
    let created: Vec<String> = futures_util::stream::iter(0..250)
        .map(|i| {
            let (gw, key) = (&gw, &key);
            async move {
                let body = json!({"client": "app", "name": format!("k{i}")});
                let r = admin(gw, key, Method::POST, "/api/v1/keys", Some(body)).await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
                r.json()["id"].as_str().expect("id").to_string()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let (keys, pages) = admin_pages(&gw, &key, "/api/v1/keys", "keys", 100).await;
    // 250 created and the bootstrap admin key: 100 + 100 + 51.
    assert_eq!(pages, 3);
    assert_eq!(keys.len(), 251);
    let ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().expect("id")).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no key twice");
    assert!(
        created.iter().all(|c| unique.contains(c.as_str())),
        "none left out"
    );
    // Oldest first: creation time, then id.
    let order: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| {
            (
                k["created_at"].as_str().expect("created_at"),
                k["id"].as_str().expect("id"),
            )
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0].0 <= w[1].0),
        "by creation time"
    );
    // One page of all of them agrees with the three.
    let (whole, pages) = admin_pages(&gw, &key, "/api/v1/keys", "keys", 1000).await;
    assert_eq!(pages, 1);
    let whole: Vec<&str> = whole
        .iter()
        .map(|k| k["id"].as_str().expect("id"))
        .collect();
    assert!(
        whole == ids,
        "one page lists the keys in the order of three"
    );
    // The default page is 100.
    let r = admin(&gw, &key, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(r.json()["keys"].as_array().map(Vec::len), Some(100));
    assert!(r.json()["next_cursor"].is_string());
    // A key revoked between pages does not shift the next page.
    let first = admin(&gw, &key, Method::GET, "/api/v1/keys?limit=10", None).await;
    let next = first.json()["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let gone = first.json()["keys"][9]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = admin(
        &gw,
        &key,
        Method::DELETE,
        &format!("/api/v1/keys/{gone}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let second = admin(
        &gw,
        &key,
        Method::GET,
        &format!("/api/v1/keys?limit=10&cursor={next}"),
        None,
    )
    .await;
    assert_eq!(second.json()["keys"][0]["id"], keys[10]["id"]);
    assert_eq!(gw.finish(), Some(0));
}

#[tokio::test]
async fn name_sorted_lists_page_and_bad_queries_are_400() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&yaml(&up.url()));
    let key = initial_admin_key(&gw);
    gw.secrets.push(key.clone());
    let names = |items: &[serde_json::Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| i["name"].as_str().expect("name").to_string())
            .collect()
    };
    let (tokens, pages) = admin_pages(&gw, &key, "/api/v1/tokens", "tokens", 1).await;
    assert_eq!(
        (names(&tokens), pages),
        (vec!["alpha".into(), "beta".into(), "gamma".into()], 3)
    );
    let (connectors, _) = admin_pages(&gw, &key, "/api/v1/connectors", "connectors", 2).await;
    assert_eq!(names(&connectors), ["one", "three", "two"]);
    let (clients, _) = admin_pages(&gw, &key, "/api/v1/clients", "clients", 1).await;
    assert_eq!(names(&clients), ["app", "batch", "keygate-admin"]);
    let r = admin(&gw, &key, Method::GET, "/api/v1/tokens?limit=3", None).await;
    assert_eq!(
        r.json()["next_cursor"],
        serde_json::Value::Null,
        "an exactly full last page"
    );

    for list in ["keys", "tokens", "connectors", "clients", "audit"] {
        for query in [
            "limit=0",
            "limit=1001",
            "limit=ten",
            "limit=",
            "limit=5&limit=6",
            "cursor=zz",
            "cursor=abc",
            "cursor=",
            "page=2",
            "limit=5&sk_live_not_echoed=1",
        ] {
            let path = format!("/api/v1/{list}?{query}");
            let r = admin(&gw, &key, Method::GET, &path, None).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
            assert_eq!(r.error_code().as_deref(), Some("bad_request"), "{path}");
            assert!(!r.text().contains("sk_live"), "{path}: {}", r.text());
        }
    }
    // A cursor of a list by name is no cursor of the audit log or keys.
    let r = admin(&gw, &key, Method::GET, "/api/v1/tokens?limit=1", None).await;
    let name_cursor = r.json()["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    for list in ["audit", "keys"] {
        let path = format!("/api/v1/{list}?cursor={name_cursor}");
        let r = admin(&gw, &key, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
    }
    assert_eq!(gw.finish(), Some(0));
}
