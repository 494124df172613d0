//! Hot-path micro-benchmarks (criterion), run with `cargo bench`:
//! key verification against 100 000 keys, building the outbound request for
//! a connector with 3 tokens, route lookup among 10 000 connectors, and a
//! config reload (parse, validate, build the snapshot) of 10 000 connectors.

#![expect(
    clippy::expect_used,
    reason = "benchmark fixtures: a setup failure should stop the run with its message"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use keygate::auth::declared::ConfigKeys;
use keygate::auth::{KeyIndex, KeyRecord, KeySource, key};
use keygate::proxy::rewrite;
use keygate::proxy::service::{Credential, Outcome, prepare};
use keygate::snapshot;
use keygate::tokens::{FixedCell, TokenStore};

fn record(k: &str, i: usize) -> Arc<KeyRecord> {
    Arc::new(KeyRecord {
        id: format!("key_{i}"),
        name: format!("k{i}"),
        client: "c".into(),
        roles: None,
        display_prefix: key::display_prefix(k),
        created_at: SystemTime::now(),
        expires_ms: AtomicU64::new(0),
        revoked_at: std::sync::Mutex::new(None),
        source: KeySource::Api,
        digest: key::digest(k),
        rolled_from: None,
        last_used_ms: AtomicU64::new(0),
        uses: AtomicU64::new(0),
        persisted_uses: AtomicU64::new(0),
    })
}

fn key_verification(c: &mut Criterion) {
    let index = KeyIndex::new();
    let mut probe = String::new();
    for i in 0..100_000 {
        let k = key::generate("kg_").expect("rng");
        if i == 50_000 {
            probe = k.expose().to_string();
        }
        index.insert(record(k.expose(), i));
    }
    let now = SystemTime::now();
    let declared = ConfigKeys::new();
    c.bench_function("verify key among 100k", |b| {
        b.iter(|| {
            index
                .verify(&declared, black_box(&probe), "kg_", now)
                .is_ok()
        })
    });
    let bad = key::generate("kg_").expect("rng");
    c.bench_function("reject unknown key among 100k", |b| {
        b.iter(|| {
            index
                .verify(&declared, black_box(bad.expose()), "kg_", now)
                .is_err()
        })
    });
}

fn connectors_yaml(n: usize) -> String {
    let mut y = String::from(
        "tokens:\n  t: { value: { literal: \"sk_test_abc\" }, prefix: Bearer, header: Authorization }\nconnectors:\n",
    );
    for i in 0..n {
        y.push_str(&format!("  c{i}: {{ upstream: \"https://api{i}.example.com/v1\", tokens: [t], headers: {{ X-Version: \"{i}\" }} }}\n"));
    }
    y
}

fn outbound_request(c: &mut Criterion) {
    let yaml = r#"
tokens:
  a: { value: { literal: "sk_test_0123456789abcdefghijklmnop" }, prefix: Bearer, header: Authorization }
  b: { value: { literal: "partner-key-0123456789" }, header: X-Partner-Key }
  c: { value: { literal: "tenant-7" }, header: X-Tenant }
connectors:
  stripe: { upstream: "https://api.stripe.com", tokens: [a, b, c], headers: { Stripe-Version: "2024-06-20" } }
"#;
    let cfg = Arc::new(keygate::config::from_text(yaml, Path::new("bench.yaml")).expect("config"));
    let snap = snapshot::routes(&cfg, None).expect("snapshot");
    let store = TokenStore::new(FixedCell::new(cfg.tokens.clone()));
    store.sync_files(&cfg.tokens);
    let conn = Arc::clone(&snap.connectors["stripe"]);
    let set = store.load();
    let target = Request::get("/stripe/v1/charges").body(()).expect("req");
    let checked = rewrite::check_target(&target).expect("target");
    let (_, rest) = checked.split_connector().expect("connector");
    let path = rest.forward(false).expect("path");
    c.bench_function("build outbound request, 3 tokens", |b| {
        b.iter(|| {
            let creds: Vec<Credential> = conn
                .spec
                .headers
                .tokens()
                .iter()
                .map(|(h, t)| {
                    let v = set.get(t).expect("value");
                    Credential {
                        header: h.clone(),
                        token: t.clone(),
                        value: v.header_value.clone(),
                        fingerprint: v.fingerprint.clone(),
                        refresher: None,
                        strip: None,
                    }
                })
                .collect();
            let mut req = Request::get("/stripe/v1/charges?limit=3")
                .header("authorization", "Bearer kg_callerkey")
                .header("user-agent", "wrk")
                .header("accept", "*/*")
                .body(())
                .expect("req");
            let uri =
                rewrite::upstream_uri(&conn.spec.upstream, &path, Some("limit=3")).expect("uri");
            let mut out = Outcome::default();
            black_box(prepare(
                &mut req,
                &conn,
                &creds,
                uri,
                "0123456789abcdef",
                ([127, 0, 0, 1], 1).into(),
                &mut out,
            ))
        })
    });
}

fn routing_and_reload(c: &mut Criterion) {
    let yaml = connectors_yaml(10_000);
    let path = Path::new("bench.yaml");
    let cfg = Arc::new(keygate::config::from_text(&yaml, path).expect("config"));
    let snap = snapshot::routes(&cfg, None).expect("snapshot");
    c.bench_function("route lookup among 10k connectors", |b| {
        b.iter(|| {
            let (name, rest) =
                rewrite::split_connector(black_box("/c7342/v1/charges")).expect("split");
            black_box((
                snap.connectors.get(name).map(|c| c.spec.max_request_body),
                rest,
            ))
        })
    });
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.bench_function("parse, validate and build 10k connectors", |b| {
        b.iter(|| {
            let cfg = Arc::new(keygate::config::from_text(black_box(&yaml), path).expect("config"));
            black_box(snapshot::routes(&cfg, Some(&snap)).expect("snapshot"))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    key_verification,
    outbound_request,
    routing_and_reload
);
criterion_main!(benches);
