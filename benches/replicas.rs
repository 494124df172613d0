//! Replicas on PostgreSQL, measured (issue 13): how long a change takes to
//! reach the other replicas under proxy load, how long a revocation takes
//! to be acknowledged by three replicas, and proxy throughput with the
//! PostgreSQL store vs SQLite (the request path never touches the store,
//! so they should match within the machine's noise).
//!
//! `cargo bench --bench replicas` (release binary; starts its own
//! PostgreSQL from Debian's packages, as the tests do). Environment:
//! `CHANGES` (default 1000), `ROUNDS` (3), `ROUND_SECS` (5), `CONNS` (32).
//! Wall-clock figures drift 13–30 % between runs on shared machines: the
//! throughput rounds are interleaved, SQLite and PostgreSQL in turn, and
//! compared within one run.

#![expect(
    clippy::expect_used,
    clippy::disallowed_macros,
    reason = "a benchmark binary: a failed expect is the run failing, and it prints its figures"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pg::PgServer;
use common::{Gateway, Upstream, admin, bearer, initial_admin_key};
use http::{Method, StatusCode};
use serde_json::json;

const MASTER: &str = "7f1c2e3d4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn yaml(up: &str, store: &str) -> String {
    format!(
        r#"
server: {{ listen: 127.0.0.1:0 }}
admin: {{ listen: 127.0.0.1:0 }}
store:
{store}
  master_key: {{ env: KEYGATE_MASTER_KEY }}
tokens:
  t: {{ value: {{ literal: "upstream-secret" }}, header: X-Token }}
connectors:
  svc: {{ upstream: "{up}", tokens: [t] }}
roles:
  caller: {{ allow: [ {{ connector: svc }} ] }}
clients:
  app: {{ roles: [caller] }}
"#
    )
}

fn pg_store(name: &str) -> String {
    format!("  postgres: {{ url: {{ env: KEYGATE_DATABASE_URL }}, replica: {name} }}")
}

async fn new_key(gw: &Gateway, admin_key: &str) -> (String, String) {
    let r = admin(
        gw,
        admin_key,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"client": "app", "name": "bench"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    (
        v["key"].as_str().expect("key").to_string(),
        v["id"].as_str().expect("id").to_string(),
    )
}

/// Closed-loop GETs on `urls` with `conns` connections until `stop`.
fn load(
    urls: Vec<String>,
    key: &str,
    conns: u64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..conns)
        .map(|i| {
            let url = urls[usize::try_from(i).expect("small") % urls.len()].clone();
            let (auth, stop, done) = (bearer(key), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let client = common::client();
                while !stop.load(Ordering::Relaxed) {
                    let r = common::send_with(
                        &client,
                        Method::GET,
                        &url,
                        &[("authorization", &auth)],
                        Bytes::new(),
                    )
                    .await;
                    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut all: Vec<Duration>) {
    all.sort_unstable();
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        all.len(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once
    // with no such flag: then only check that it starts.
    let quick = !std::env::args().any(|a| a == "--bench");
    let Some(pg) = PgServer::start() else {
        return;
    };
    let url = pg.create_database("keygate");
    let up = Upstream::start().await;
    let env = [
        ("KEYGATE_DATABASE_URL", url.as_str()),
        ("KEYGATE_MASTER_KEY", MASTER),
    ];
    let mut replicas = vec![Gateway::start_with(
        &yaml(&up.url(), &pg_store("r1")),
        &env,
        |_| {},
    )];
    let admin_key = initial_admin_key(&replicas[0]);
    for name in ["r2", "r3"] {
        replicas.push(Gateway::start_with(
            &yaml(&up.url(), &pg_store(name)),
            &env,
            |_| {},
        ));
    }
    let changes = if quick { 5 } else { env_or("CHANGES", 1000) };
    let conns = env_or("CONNS", 32);

    // Propagation under load: a key made on one replica, first accepted
    // by each other one.
    let (load_key, _) = new_key(&replicas[0], &admin_key).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let tasks = load(
        replicas.iter().map(|g| g.url("/svc/v1/x")).collect(),
        &load_key,
        conns / 2,
        Arc::clone(&stop),
        Arc::clone(&served),
    );
    let client = common::client();
    let mut propagation = Vec::new();
    let mut revocation = Vec::new();
    let started = Instant::now();
    for n in 0..changes {
        let at = usize::try_from(n).expect("small") % 3;
        let (key, id) = new_key(&replicas[at], &admin_key).await;
        let t0 = Instant::now();
        for other in (0..3).filter(|i| *i != at) {
            let url = replicas[other].url("/svc/v1/x");
            let auth = bearer(&key);
            for _ in 0..10_000 {
                let r = common::send_with(
                    &client,
                    Method::GET,
                    &url,
                    &[("authorization", &auth)],
                    Bytes::new(),
                )
                .await;
                if r.status == StatusCode::OK {
                    break;
                }
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
            }
            propagation.push(t0.elapsed());
        }
        let t1 = Instant::now();
        let r = admin(
            &replicas[(at + 1) % 3],
            &admin_key,
            Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        revocation.push(t1.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    #[expect(clippy::cast_precision_loss, reason = "a rate for a report")]
    let rate = served.load(Ordering::Relaxed) as f64 / secs;
    println!(
        "background load during the changes: {rate:.0} req/s over 3 replicas ({} connections)",
        conns / 2
    );
    report(
        "propagation (key made on one replica → accepted by another)",
        propagation,
    );
    report(
        "revocation acknowledged by all 3 replicas (DELETE → 204)",
        revocation,
    );

    // Throughput, PostgreSQL store vs SQLite, interleaved rounds.
    let sqlite = Gateway::start_with(&yaml(&up.url(), "  sqlite: data/keygate.db"), &env, |_| {});
    let sqlite_admin = initial_admin_key(&sqlite);
    let (sqlite_key, _) = new_key(&sqlite, &sqlite_admin).await;
    let (pg_key, _) = new_key(&replicas[0], &admin_key).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rounds = if quick { 1 } else { env_or("ROUNDS", 3) };
    let round = Duration::from_secs(if quick { 1 } else { env_or("ROUND_SECS", 5) });
    let mut figures: Vec<(&str, Vec<f64>)> = vec![("sqlite", Vec::new()), ("postgres", Vec::new())];
    for _ in 0..rounds {
        for (which, gw, key) in [(0, &sqlite, &sqlite_key), (1, &replicas[0], &pg_key)] {
            let stop = Arc::new(AtomicBool::new(false));
            let served = Arc::new(AtomicU64::new(0));
            let tasks = load(
                vec![gw.url("/svc/v1/x")],
                key,
                conns,
                Arc::clone(&stop),
                Arc::clone(&served),
            );
            tokio::time::sleep(round).await;
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                t.await.expect("load task");
            }
            #[expect(clippy::cast_precision_loss, reason = "a rate for a report")]
            figures[which]
                .1
                .push(served.load(Ordering::Relaxed) as f64 / round.as_secs_f64());
        }
    }
    for (name, mut rates) in figures {
        rates.sort_by(f64::total_cmp);
        println!(
            "proxy req/s, {name} store, {conns} connections, one replica: rounds {:?}, median {:.0}",
            rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
            rates[rates.len() / 2]
        );
    }
}
