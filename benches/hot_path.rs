//! Hot-path micro-benchmarks (criterion): key verification against a large
//! index, and rendering a token's header value. Run with `cargo bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate::auth::{KeyIndex, KeyRecord, KeySource, key};
use keygate::secret::Secret;

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
    c.bench_function("verify key among 100k", |b| {
        b.iter(|| index.verify(black_box(&probe), "kg_", now).is_ok())
    });
    let (bad, _) = (key::generate("kg_").expect("rng"), ());
    c.bench_function("reject unknown key among 100k", |b| {
        b.iter(|| index.verify(black_box(bad.expose()), "kg_", now).is_err())
    });
}

fn render_header(c: &mut Criterion) {
    let s = Secret::new("sk_live_0123456789abcdefghijklmnopqrstuvwxyz");
    c.bench_function("render Bearer header value", |b| {
        b.iter(|| keygate::tokens::render(Some("Bearer"), black_box(&s)).is_ok())
    });
}

criterion_group!(benches, key_verification, render_header);
criterion_main!(benches);
