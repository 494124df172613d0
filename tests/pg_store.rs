//! The PostgreSQL store (SPEC §8) against a real server, one throwaway
//! server per test (`common::pg`): the `Store` round trips the SQLite unit
//! tests pin, the change sequence (entries per write, gap-free and in
//! commit order under concurrent writers, NOTIFY to another replica's
//! `listen`), audit ids in commit order under concurrent writers,
//! heartbeats and `behind`, pruning (silent replicas, applied entries, a
//! prefix only, the newest kept, a cut-off replica's gap seen), migrations racing on a fresh
//! database, a newer schema refused, TLS (`verify-full` with the right and
//! a wrong CA, `require` refused), a restarted database, and a URL's
//! password never in an error.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::{PASSWORD, PgServer};
use keygate::config::{Postgres, ValueSource};
use keygate::secret::Secret;
use keygate::store::postgres::PgStore;
use keygate::store::{
    AuditRecord, Changed, ObjectWrite, Pruned, Replication, Store, StoreError, StoredKey,
    StoredObject, StoredTokenValue, Usage,
};

// The harness re-exports its upstream server for the other test crates;
// naming it here keeps that re-export from warning in this one.
const _: Option<fn(&common::Upstream)> = None;

fn cfg(url: &str, replica: &str) -> Postgres {
    Postgres {
        url: ValueSource::Literal(Secret::new(url)),
        pool_size: 4,
        ack_timeout: Duration::from_secs(2),
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(1),
        replica: Some(replica.to_string()),
    }
}

fn open(url: &str, replica: &str) -> PgStore {
    PgStore::open(&cfg(url, replica)).expect("open the store")
}

fn open_err(url: &str) -> StoreError {
    PgStore::open(&cfg(url, "r")).expect_err("open must fail")
}

fn key(id: &str, d: u8) -> StoredKey {
    StoredKey {
        id: id.into(),
        digest: [d; 32],
        name: "n".into(),
        client: "c".into(),
        roles: Some(vec!["r".into()]),
        display_prefix: "kg_abcde".into(),
        created_ms: 1,
        expires_ms: None,
        revoked_ms: None,
        rolled_from: None,
    }
}

fn successor(id: &str, d: u8, from: &str) -> StoredKey {
    StoredKey {
        rolled_from: Some(from.into()),
        created_ms: 2,
        ..key(id, d)
    }
}

fn audit(at_ms: u64, action: &str, name: &str) -> AuditRecord {
    AuditRecord {
        at_ms,
        actor_client: "ops".into(),
        actor_key: Some("key_a".into()),
        action: action.into(),
        object_kind: "token".into(),
        object_name: name.into(),
        version_before: Some(1),
        version_after: Some(2),
        fingerprint_before: Some("0a1b2c3d".into()),
        fingerprint_after: Some("4e5f6a7b".into()),
        detail: None,
    }
}

/// The whole change sequence as (seq, what, origin).
fn changes(s: &PgStore) -> Vec<(u64, Changed, String)> {
    s.changes_after(0, 10_000)
        .expect("changes")
        .into_iter()
        .map(|c| (c.seq, c.changed, c.origin))
        .collect()
}

fn keyc(id: &str) -> Changed {
    Changed::Key(id.into())
}

#[test]
fn keys_round_trip_roll_chain_revoke_and_their_changes() {
    let Some(srv) = PgServer::start() else { return };
    let s = open(&srv.create_database("keys"), "one");
    assert_eq!(s.latest_seq().expect("seq"), 0);
    s.insert_key(&key("a", 1)).expect("insert");
    assert!(s.roll("a", 50, &successor("b", 2, "a")).expect("roll"));
    assert!(s.roll("b", 60, &successor("c", 3, "b")).expect("roll"));
    assert_eq!(
        s.live_successors("a").expect("chain"),
        vec!["b".to_string(), "c".to_string()]
    );
    let keys = s.load_keys().expect("load");
    assert_eq!(keys.len(), 3);
    assert_eq!(
        keys[0],
        StoredKey {
            expires_ms: Some(50),
            ..key("a", 1)
        }
    );
    assert_eq!(s.load_key("c").expect("one"), Some(successor("c", 3, "b")));
    assert_eq!(s.load_key("zz").expect("one"), None);
    assert_eq!(
        s.revoke_chain("a", 5).expect("revoke"),
        Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(s.revoke_chain("a", 6).expect("again"), None);
    assert_eq!(s.revoke_chain("nope", 6).expect("unknown"), None);
    assert!(
        !s.roll("c", 10, &successor("d", 4, "c")).expect("roll"),
        "a revoked key is not rolled"
    );
    assert_eq!(s.load_key("d").expect("d"), None);
    let all: Vec<_> = changes(&s);
    let want = [
        keyc("a"),
        keyc("a"),
        keyc("b"),
        keyc("b"),
        keyc("c"),
        keyc("a"),
        keyc("b"),
        keyc("c"),
    ];
    assert_eq!(
        all.iter().map(|c| c.1.clone()).collect::<Vec<_>>(),
        want,
        "refused writes append nothing"
    );
    assert_eq!(
        all.iter().map(|c| c.0).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(all.iter().all(|c| c.2 == "one"), "{all:?}");
    assert_eq!(s.latest_seq().expect("seq"), 8);
    assert_eq!(s.changes_after(6, 1).expect("page")[0].seq, 7);
    // Purge deletes ended keys and their usage, and appends nothing.
    s.record_usage(&[Usage {
        id: "a",
        last_used_ms: 3,
        uses: 1,
    }])
    .expect("usage");
    assert_eq!(s.purge_ended_before(6).expect("purge"), 3);
    assert!(s.load_keys().expect("load").is_empty());
    assert!(s.load_usage().expect("usage").is_empty());
    assert_eq!(s.latest_seq().expect("seq"), 8);
}

#[test]
fn usage_from_two_replicas_adds_up() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("usage");
    let (a, b) = (open(&url, "a"), open(&url, "b"));
    let u = |id, last_used_ms, uses| Usage {
        id,
        last_used_ms,
        uses,
    };
    a.record_usage(&[u("k1", 100, 2), u("k2", 50, 1), u("k1", 90, 3)])
        .expect("a");
    b.record_usage(&[u("k1", 80, 4)]).expect("b");
    a.record_usage(&[]).expect("empty batch");
    // Concurrent flushes from both replicas on the same keys.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let s = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            std::thread::spawn(move || {
                for n in 0..10 {
                    s.record_usage(&[u("k2", 200 + n, 1), u("k1", 10, 1)])
                        .expect("flush");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let mut usage = a.load_usage().expect("load");
    usage.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        usage
            .iter()
            .map(|x| (x.id.as_str(), x.last_used_ms, x.uses))
            .collect::<Vec<_>>(),
        [("k1", 100, 2 + 3 + 4 + 40), ("k2", 209, 1 + 40)]
    );
    assert_eq!(a.latest_seq().expect("seq"), 0, "usage appends no change");
}

#[test]
fn token_values_meta_and_their_changes() {
    let Some(srv) = PgServer::start() else { return };
    let s = open(&srv.create_database("tokens"), "one");
    let v = StoredTokenValue {
        name: "t".into(),
        nonce: vec![1; 24],
        ciphertext: vec![2, 3, 4],
        version: 1,
        updated_ms: 10,
    };
    s.put_token_value(&v).expect("put");
    let v2 = StoredTokenValue {
        version: 2,
        ciphertext: vec![9],
        ..v.clone()
    };
    s.put_token_value(&v2).expect("replace");
    assert_eq!(s.load_token_values().expect("load"), vec![v2.clone()]);
    assert_eq!(s.load_token_value("t").expect("one"), Some(v2));
    s.delete_token_value("t").expect("delete");
    assert_eq!(s.load_token_value("t").expect("one"), None);
    let tv = Changed::TokenValue("t".into());
    assert_eq!(
        changes(&s).into_iter().map(|c| c.1).collect::<Vec<_>>(),
        [tv.clone(), tv.clone(), tv]
    );
    // Meta: set overwrites, init only fills a gap; neither appends.
    assert_eq!(s.get_meta("m").expect("get"), None);
    assert_eq!(s.init_meta("m", "first").expect("init"), "first");
    assert_eq!(s.init_meta("m", "second").expect("init"), "first");
    s.set_meta("m", "third").expect("set");
    assert_eq!(s.get_meta("m").expect("get").as_deref(), Some("third"));
    assert_eq!(s.latest_seq().expect("seq"), 3);
}

#[test]
fn catalog_writes_are_conditional_atomic_with_audit_and_announced() {
    let Some(srv) = PgServer::start() else { return };
    let s = open(&srv.create_database("catalog"), "one");
    let obj = |name: &str, version: u64| StoredObject {
        section: "tokens".into(),
        name: name.into(),
        body: format!("{{\"v\":{version}}}"),
        version,
        created_ms: 1,
        updated_ms: version,
    };
    let put = |name: &str, version: u64, expected| ObjectWrite::Put {
        object: obj(name, version),
        expected,
    };
    let rec = audit(5, "token.create", "a");
    let write = |w: &[ObjectWrite]| s.write_objects(w, &rec).expect("write");
    assert!(write(&[put("a", 1, None)]).is_some());
    assert!(write(&[put("a", 1, None)]).is_none(), "a second create");
    assert!(write(&[put("a", 3, Some(2))]).is_none(), "a stale update");
    assert!(
        write(&[put("b", 1, None), put("a", 3, Some(2))]).is_none(),
        "one failing step rolls back the steps before it"
    );
    assert!(write(&[put("a", 2, Some(1))]).is_some());
    assert_eq!(
        s.list_audit(None, None, 10).expect("audit").len(),
        2,
        "one record per change written, none for the refused ones"
    );
    assert_eq!(s.load_objects().expect("load"), vec![obj("a", 2)]);
    assert_eq!(s.load_object("tokens", "a").expect("one"), Ok(obj("a", 2)));
    let delete = |expected| ObjectWrite::Delete {
        section: "tokens".into(),
        name: "a".into(),
        expected,
    };
    assert!(write(&[delete(1)]).is_none(), "a stale delete");
    assert!(write(&[delete(2)]).is_some());
    assert!(s.load_objects().expect("load").is_empty());
    assert_eq!(
        s.load_retired().expect("retired"),
        vec![("tokens".to_string(), "a".to_string(), 2)]
    );
    assert_eq!(s.load_object("tokens", "a").expect("one"), Err(Some(2)));
    assert_eq!(s.load_object("tokens", "never").expect("one"), Err(None));
    let a = Changed::Object {
        section: "tokens".into(),
        name: "a".into(),
    };
    assert_eq!(
        changes(&s).into_iter().map(|c| c.1).collect::<Vec<_>>(),
        [a.clone(), a.clone(), a],
        "only the writes that committed"
    );
}

#[test]
fn audit_pages_by_id_filters_by_time_and_purges() {
    let Some(srv) = PgServer::start() else { return };
    let s = open(&srv.create_database("audit"), "one");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.append_audit(&audit(100 + i, "token.value.set", &format!("t{i}")))
                .expect("append"),
        );
    }
    let system = AuditRecord {
        actor_key: None,
        version_before: None,
        version_after: None,
        fingerprint_before: None,
        fingerprint_after: None,
        detail: Some("retention".into()),
        ..audit(200, "key.revoke", "key_x")
    };
    ids.push(s.append_audit(&system).expect("append"));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = s.list_audit(None, None, 100).expect("list");
    assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[0].record, audit(100, "token.value.set", "t0"));
    assert_eq!(all[5].record, system);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_audit(None, after, 2).expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|a| a.id);
        seen.extend(page.into_iter().map(|a| a.id));
    }
    assert_eq!(seen, ids);
    let since: Vec<u64> = s
        .list_audit(Some(103), None, 100)
        .expect("since")
        .iter()
        .map(|a| a.record.at_ms)
        .collect();
    assert_eq!(since, [103, 104, 200]);
    assert_eq!(
        s.list_audit(Some(103), Some(ids[3]), 100)
            .expect("both")
            .len(),
        2
    );
    assert_eq!(s.purge_audit_before(200).expect("purge"), 5);
    assert_eq!(s.purge_audit_before(u64::MAX).expect("purge"), 1);
    let next = s
        .append_audit(&audit(300, "key.create", "c"))
        .expect("append");
    assert!(next > ids[5], "ids are never reused");
    assert_eq!(s.latest_seq().expect("seq"), 0, "audit appends no change");
}

#[test]
fn another_replicas_writes_arrive_on_listen_and_calls_work_from_any_thread() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("notify");
    let a = Arc::new(open(&url, "a"));
    let b = Arc::new(open(&url, "b"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut rx = a.listen().await.expect("listen");
        // Straight from a multi-thread worker: no "runtime within a runtime".
        b.insert_key(&key("k1", 1)).expect("insert from a worker");
        let seq = tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .expect("notified within 1s")
            .expect("a seq");
        assert_eq!(seq, 1);
        let b2 = Arc::clone(&b);
        tokio::task::spawn_blocking(move || b2.roll("k1", 5, &successor("k2", 2, "k1")))
            .await
            .expect("join")
            .expect("roll from the blocking pool");
        for want in [2, 3] {
            let got = tokio::time::timeout(Duration::from_secs(1), rx.recv())
                .await
                .expect("notified within 1s");
            assert_eq!(got, Some(want));
        }
        let got = a.changes_after(0, 10).expect("catch up");
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|c| c.origin == "b"), "{got:?}");
    });
    // From a current-thread runtime too (the call blocks that thread, but
    // runs on the store's own runtime).
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    single.block_on(async {
        assert_eq!(a.load_keys().expect("load").len(), 2);
    });
    // Dropping a store on a tokio worker does not panic either.
    rt.block_on(async move {
        drop(a);
        drop(b);
    });
}

#[test]
fn concurrent_writers_get_gap_free_seqs_visible_in_order() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("seqorder");
    let stores = [Arc::new(open(&url, "a")), Arc::new(open(&url, "b"))];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let s = Arc::clone(&stores[0]);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut checks = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) && checks < 2000 {
                let latest = s.latest_seq().expect("latest");
                let seen = s.changes_after(0, 100_000).expect("changes");
                // A later seq never commits before an earlier one: what is
                // visible is always 1..=n with nothing missing.
                assert!(
                    seen.iter().enumerate().all(|(i, c)| c.seq == i as u64 + 1),
                    "a gap in {:?}",
                    seen.iter().map(|c| c.seq).collect::<Vec<_>>()
                );
                assert!(seen.len() as u64 >= latest);
                checks += 1;
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let s = Arc::clone(&stores[w % 2]);
            std::thread::spawn(move || {
                for i in 0..10u8 {
                    let id = format!("w{w}-{i}");
                    let d = u8::try_from(w).expect("few writers") * 16 + i;
                    s.insert_key(&key(&id, d)).expect("insert");
                    if i % 3 == 0 {
                        assert!(s.revoke_chain(&id, 9).expect("revoke").is_some());
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().expect("reader");
    let all = changes(&stores[1]);
    assert_eq!(all.len(), 4 * (10 + 4));
    assert_eq!(
        all.iter().map(|c| c.0).collect::<Vec<_>>(),
        (1..=56).collect::<Vec<_>>()
    );
    assert_eq!(stores[0].load_keys().expect("keys").len(), 40);
}

#[test]
fn concurrent_audit_appends_commit_in_id_order() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("auditorder");
    let stores = [Arc::new(open(&url, "a")), Arc::new(open(&url, "b"))];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let s = Arc::clone(&stores[0]);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // Pages as `GET /api/v1/audit?cursor=` does, from the last id
            // seen: an id that commits after a higher one was read is
            // never seen.
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                // Read before the page: once every writer is done, one
                // more page that comes back empty means nothing is left.
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = s.list_audit(None, after, 3).expect("page");
                match page.last() {
                    Some(last) => after = Some(last.id),
                    None if finished => return seen,
                    None => continue,
                }
                seen.extend(page.iter().map(|a| a.id));
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let s = Arc::clone(&stores[w % 2]);
            std::thread::spawn(move || {
                for i in 0..15u64 {
                    let name = format!("w{w}-{i}");
                    s.append_audit(&audit(i, "token.value.set", &name))
                        .expect("append");
                    // The audit row of a catalog write is taken before its
                    // change entries, in the same transaction.
                    let put = ObjectWrite::Put {
                        object: StoredObject {
                            section: "roles".into(),
                            name: name.clone(),
                            body: "{}".into(),
                            version: 1,
                            created_ms: i,
                            updated_ms: i,
                        },
                        expected: None,
                    };
                    let rec = audit(i, "role.create", &name);
                    assert!(s.write_objects(&[put], &rec).expect("write").is_some());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.join().expect("reader");
    let all: Vec<u64> = stores[1]
        .list_audit(None, None, 1000)
        .expect("all")
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(all.len(), 4 * 15 * 2);
    assert_eq!(seen, all, "the paging reader skipped an id");
}

#[test]
fn prune_forgets_silent_replicas_and_applied_old_entries_but_never_the_newest() {
    let Some(srv) = PgServer::start() else { return };
    let db = "prune";
    let url = srv.create_database(db);
    let (a, b) = (open(&url, "a"), open(&url, "b"));
    let day = Duration::from_secs(24 * 3600);
    let prune = |replicas, changes| {
        assert_eq!(a.prune(day).expect("prune"), Pruned { replicas, changes });
    };
    let seqs = |s: &PgStore| changes(s).into_iter().map(|c| c.0).collect::<Vec<_>>();
    let age = |sql: &str| srv.psql(db, sql);
    prune(0, 0);
    for i in 0..6u8 {
        a.insert_key(&key(&format!("k{i}"), i)).expect("insert");
    }
    a.heartbeat(6).expect("beat");
    b.heartbeat(2).expect("beat");
    prune(0, 0);
    assert_eq!(seqs(&a), (1..=6).collect::<Vec<_>>(), "nothing is old yet");
    age("UPDATE changes SET at = now() - interval '2 days' WHERE seq <= 5");
    prune(0, 1);
    assert_eq!(
        seqs(&a),
        (2..=6).collect::<Vec<_>>(),
        "b has applied only 2: what it still needs is kept"
    );
    // b is killed: past `keep` its row goes, and with it what held the
    // prune back; the newest entry stays, so `latest_seq` is still right.
    age("UPDATE replicas SET heartbeat_at = now() - interval '2 days' WHERE name = 'b'");
    prune(1, 4);
    assert_eq!(seqs(&a), [6]);
    assert_eq!(a.latest_seq().expect("latest"), 6);
    assert_eq!(
        srv.psql(db, "SELECT string_agg(name, ',') FROM replicas"),
        "a"
    );
    // b comes back: the first entry after what it applied is not the
    // next one, so it knows it cannot catch up entry by entry.
    let next = b.changes_after(2, 10).expect("changes");
    assert!(next[0].seq > 2 + 1, "{next:?}");
    assert!(a.changes_after(6, 10).expect("changes").is_empty());
    // Only a prefix goes: an old entry after a recent one (its writer's
    // transaction began earlier) stays, so no hole opens mid-sequence.
    for i in 6..9u8 {
        a.insert_key(&key(&format!("k{i}"), i)).expect("insert");
    }
    a.heartbeat(9).expect("beat");
    age("UPDATE changes SET at = now() - interval '2 days' WHERE seq IN (6, 8)");
    prune(0, 1);
    assert_eq!(seqs(&a), [7, 8, 9]);
    // With no replica left, age alone decides, and the newest stays.
    a.leave().expect("leave");
    age("UPDATE changes SET at = now() - interval '2 days'");
    prune(0, 2);
    assert_eq!(seqs(&a), [9]);
    prune(0, 0);
    a.insert_key(&key("k9", 9)).expect("insert");
    assert_eq!(seqs(&a), [9, 10], "the sequence goes on from the newest");
}

#[test]
fn heartbeats_behind_and_leave() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("replicas");
    let (a, b) = (open(&url, "a"), open(&url, "b"));
    assert_eq!(a.replica(), "a");
    assert_eq!(a.heartbeat(0).expect("beat"), 0);
    assert_eq!(b.heartbeat(0).expect("beat"), 0);
    a.insert_key(&key("k", 1)).expect("insert");
    assert_eq!(a.heartbeat(1).expect("beat"), 1, "returns the latest seq");
    let behind = a.behind(1, 30_000).expect("behind");
    assert_eq!(behind.len(), 1, "{behind:?}");
    assert_eq!((behind[0].name.as_str(), behind[0].applied), ("b", 0));
    assert!(behind[0].silent_ms < 5_000, "{behind:?}");
    assert!(
        b.behind(1, 30_000).expect("behind").is_empty(),
        "a applied it"
    );
    b.heartbeat(1).expect("beat");
    assert!(a.behind(1, 30_000).expect("behind").is_empty());
    b.heartbeat(0).expect("an older beat");
    assert!(
        a.behind(1, 30_000).expect("behind").is_empty(),
        "applied never goes back"
    );
    assert_eq!(a.behind(2, 30_000).expect("behind").len(), 1);
    // A replica silent past the lease is not waited for.
    srv.psql(
        "replicas",
        "UPDATE replicas SET heartbeat_at = now() - interval '60 seconds' WHERE name = 'b'",
    );
    assert!(a.behind(2, 30_000).expect("behind").is_empty());
    let late = a.behind(2, 120_000).expect("behind");
    assert!(
        late.len() == 1 && (59_000..70_000).contains(&late[0].silent_ms),
        "{late:?}"
    );
    b.leave().expect("leave");
    assert!(a.behind(2, 120_000).expect("behind").is_empty());
    let rows = srv.psql("replicas", "SELECT name FROM replicas ORDER BY name");
    assert_eq!(rows, "a");
}

#[test]
fn migrations_race_free_and_a_newer_schema_is_refused() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("fresh");
    let opens: Vec<_> = (0..2)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&cfg(&url, &format!("r{i}"))).map(drop))
        })
        .collect();
    for o in opens {
        o.join().expect("thread").expect("both opens succeed");
    }
    assert_eq!(
        srv.psql(
            "fresh",
            "SELECT string_agg(version::text, ',') FROM schema_migrations"
        ),
        "1"
    );
    drop(open(&url, "again"));
    srv.psql(
        "fresh",
        "INSERT INTO schema_migrations (version) VALUES (99)",
    );
    let e = open_err(&url);
    assert!(
        matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

#[test]
fn master_key_check_is_taken_once() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("master");
    let (a, b) = (open(&url, "a"), open(&url, "b"));
    let literal = |byte: u8| ValueSource::Literal(Secret::new(hex_key(byte)));
    keygate::store::sealed::load_or_create(&literal(1), &a).expect("first key wins");
    let e = keygate::store::sealed::load_or_create(&literal(2), &b).expect_err("other key");
    assert!(e.to_string().contains("does not match"), "{e}");
    keygate::store::sealed::load_or_create(&literal(1), &b).expect("same key");
}

fn hex_key(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

#[test]
fn tls_verify_full_checks_the_certificate_and_weak_modes_are_refused() {
    let (ca, cert, key_pem) = common::upstream::make_certs();
    let Some(srv) = PgServer::start_tls(&cert, &key_pem) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca).expect("ca");
    let (other_ca, _, _) = common::upstream::make_certs();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other_ca).expect("ca");
    let port = srv.port();
    let url = |root: &std::path::Path| {
        format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            root.display()
        )
    };
    let s = open(&url(&ca_path), "tls");
    s.insert_key(&key("k", 1)).expect("a write over TLS");
    let over_tls: u32 = srv
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'keygate'",
        )
        .parse()
        .expect("count");
    assert!(over_tls >= 1, "the store's connections use TLS");
    let e = open_err(&url(&other_path));
    assert!(matches!(e, StoreError::PgConnect { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "a clear reason: {text}"
    );
    let e = open_err(&format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=require"
    ));
    assert!(matches!(e, StoreError::PgUrl(_)), "{e:?}");
    assert!(e.to_string().contains("verify-full"), "{e}");
}

#[test]
fn a_url_password_never_appears_in_errors_or_debug() {
    let Some(srv) = PgServer::start() else { return };
    srv.create_database("pw");
    let good = srv.password_url("pw");
    let s = open(&good, "pw");
    s.insert_key(&key("k", 1)).expect("a password login works");
    assert!(!format!("{s:?}").contains(PASSWORD), "{s:?}");
    let port = srv.port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for url in [
        good.replace("/pw?", "/no_such_db?"),
        good.replace(PASSWORD, &format!("{PASSWORD}x")),
        good.replace(&port.to_string(), &closed.to_string()),
        good.replace("sslmode=disable", "sslmode=require"),
        good.replace("sslmode=disable", "sslmode=verify-ca"),
        good.replace("sslmode=disable", "bogus=1"),
        format!("postgres://kgpass:{PASSWORD}@db.example/k"),
        format!("host=127.0.0.1 user=kgpass password={PASSWORD}"),
    ] {
        let e = open_err(&url);
        let (text, debug) = (e.to_string(), format!("{e:?}"));
        assert!(
            !text.contains(PASSWORD) && !debug.contains(PASSWORD),
            "{text} / {debug}"
        );
        assert!(!text.is_empty());
    }
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "polls a blocking store from a plain test thread; no tokio worker is blocked"
)]
fn a_restarted_database_ends_listen_and_the_pool_reconnects() {
    let Some(mut srv) = PgServer::start() else {
        return;
    };
    let url = srv.create_database("restart");
    let s = Arc::new(open(&url, "one"));
    s.insert_key(&key("a", 1)).expect("insert");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rx = rt.block_on(s.listen()).expect("listen");
    srv.stop();
    let ended =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.recv()).await });
    assert_eq!(ended.expect("the receiver ends promptly"), None);
    let t = Instant::now();
    let e = s.load_keys().expect_err("the database is down");
    assert!(t.elapsed() < Duration::from_secs(10), "bounded: {e}");
    srv.start_again();
    // Pooled connections to the old server are discarded on their own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let keys = loop {
        match s.load_keys() {
            Ok(k) => break k,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    };
    assert_eq!(keys.len(), 1);
    let mut rx = rt.block_on(s.listen()).expect("listen again");
    s.insert_key(&key("b", 2)).expect("insert");
    let seq = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), rx.recv()).await });
    assert_eq!(seq.expect("notified"), Some(2));
}

#[test]
fn two_replicas_rolling_one_key_at_once_make_one_successor() {
    let Some(srv) = PgServer::start() else { return };
    let url = srv.create_database("rollonce");
    let stores = [Arc::new(open(&url, "a")), Arc::new(open(&url, "b"))];
    for round in 0..10u8 {
        let old = format!("old{round}");
        stores[0].insert_key(&key(&old, round)).expect("insert");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let rolls: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (s, barrier, old) = (Arc::clone(s), Arc::clone(&barrier), old.clone());
                let succ = successor(
                    &format!("s{round}-{i}"),
                    100 + round * 2 + u8::try_from(i).expect("small"),
                    &old,
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    s.roll(&old, 50, &succ).expect("roll")
                })
            })
            .collect();
        let won: Vec<bool> = rolls
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
        assert_eq!(stores[1].live_successors(&old).expect("chain").len(), 1);
    }
}
