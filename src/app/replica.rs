//! Follows the change sequence the other replicas write (SPEC §8).
//!
//! One task per replica: it listens for `NOTIFY` (one entry's sequence
//! number each), and on each, or on a heartbeat tick when notifications
//! were missed (a dropped connection, a paused process), reads the entries
//! after the last one it applied, in order, and applies each by re-reading
//! the one row it names: a key into the key index, a token value into the
//! token store, a catalog object through the reload loop. Then it records
//! the sequence it reached with its heartbeat, which is what a revocation
//! on another replica waits for.
//!
//! The heartbeat is also the lease: each successful one lets API-made keys
//! be trusted for `lease` from when it was sent. A replica that cannot
//! reach the store keeps serving from memory until then (never a 401 for a
//! valid key because the database is down), then answers 503 to API keys
//! and turns not-ready, because it can no longer vouch that a key was not
//! revoked elsewhere. One cut off for longer than the store keeps entries
//! (`Replication::prune`) finds some it missed gone: it answers 503 to API
//! keys and stays not-ready until restarted.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::reload::Request;
use crate::auth::keys;
use crate::config::Section;
use crate::state::{ReplicaStatus, Shared};
use crate::store::{Changed, Replication, StoreError, StoredChange};
use crate::tokens::values;

/// Opens a listening connection: each change's sequence number as it is
/// committed; the receiver ends when that connection drops.
pub type Listen =
    Box<dyn Fn() -> BoxFuture<'static, Result<mpsc::Receiver<u64>, StoreError>> + Send + Sync>;

/// Entries read per query while catching up.
const PAGE: usize = 256;
/// Longest wait between attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Why a replica whose missed entries were pruned is not ready.
const STRANDED: &str =
    "missed changes pruned while cut off; restart this replica to reload the store";

pub struct Follower {
    shared: Arc<Shared>,
    replication: Arc<dyn Replication>,
    listen: Listen,
    reload: mpsc::Sender<Request>,
    heartbeat: Duration,
    /// The highest sequence number applied here.
    applied: u64,
    /// The highest one known to exist.
    latest: u64,
    /// Since when `applied < latest` (a replica that stays behind longer
    /// than the ack timeout turns not-ready).
    behind_since: Option<Instant>,
    /// The last store error, logged once per outage.
    outage: Option<String>,
    /// Whether a heartbeat has found nothing left to apply since start:
    /// not ready before (the state loaded at start may miss a revocation
    /// committed while it loaded).
    caught_up: bool,
    /// Entries after `applied` were pruned before this replica read them
    /// (it was cut off for longer than the store keeps them): what they
    /// changed, a revocation say, can no longer be learned entry by entry.
    /// For good: only a restart, which loads the whole store, ends it.
    stranded: bool,
}

impl Follower {
    /// `applied` is the sequence read before the state this replica
    /// loaded at start: entries after it may already be in that state,
    /// and applying them again is harmless (each re-reads its row).
    pub fn new(
        shared: Arc<Shared>,
        replication: Arc<dyn Replication>,
        listen: Listen,
        reload: mpsc::Sender<Request>,
        heartbeat: Duration,
        applied: u64,
    ) -> Self {
        Follower {
            shared,
            replication,
            listen,
            reload,
            heartbeat,
            applied,
            latest: applied,
            behind_since: None,
            outage: None,
            caught_up: false,
            stranded: false,
        }
    }

    pub async fn run(mut self) {
        let mut notes: Option<mpsc::Receiver<u64>> = None;
        let mut backoff = Duration::from_millis(100);
        let mut listen_at = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if notes.is_none() && tokio::time::Instant::now() >= listen_at {
                let opened = tokio::time::timeout(Duration::from_secs(5), (self.listen)())
                    .await
                    .unwrap_or_else(|_| Err(StoreError::Timeout(Duration::from_secs(5))));
                match opened {
                    Ok(rx) => {
                        notes = Some(rx);
                        backoff = Duration::from_millis(100);
                        // Whatever was committed while nobody listened.
                        self.catch_up().await;
                        self.assess();
                    }
                    Err(e) => {
                        self.lost(&e.to_string());
                        listen_at = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            let note = async {
                match notes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                seq = note => match seq {
                    Some(seq) => {
                        self.latest = self.latest.max(seq);
                        if seq > self.applied {
                            self.catch_up().await;
                        }
                    }
                    None => {
                        notes = None;
                        self.lost("the listening connection closed");
                    }
                },
                // Read before the heartbeat that renews the lease: a
                // replica back from a long cut-off finds a pruned gap
                // before it trusts its keys again (`catch_up` beats last).
                _ = tick.tick() => self.catch_up().await,
            }
            self.assess();
        }
    }

    /// Applies every entry after `applied`, in order, then acknowledges.
    /// Stops at the first entry that cannot be applied (the store went
    /// away): `applied` stays before it, and the next tick retries. When
    /// the next entry was pruned instead, this replica is stranded: serving
    /// on from memory, as in an outage, could honour a key revoked in what
    /// it missed, so API keys answer 503 (no more vouching) until restarted.
    async fn catch_up(&mut self) {
        if self.stranded {
            return;
        }
        loop {
            let (r, after) = (Arc::clone(&self.replication), self.applied);
            let page = match blocking(move || r.changes_after(after, PAGE)).await {
                Ok(page) => page,
                Err(e) => return self.lost(&e),
            };
            // Seqs have no holes but a pruned prefix (`changes_after`).
            if let Some(first) = page.first()
                && first.seq > after.saturating_add(1)
            {
                tracing::error!(applied = after, oldest = first.seq, "{STRANDED}");
                self.stranded = true;
                self.latest = self.latest.max(first.seq);
                self.shared.keys().vouch_until(SystemTime::UNIX_EPOCH);
                // A key unknown here may have been made meanwhile: 503, not 401.
                self.shared.keys().set_in_sync(false);
                return;
            }
            let full = page.len() == PAGE;
            for change in page {
                if let Err(e) = self.apply(&change).await {
                    self.lost(&e);
                    self.beat().await;
                    return;
                }
                self.applied = change.seq;
                self.latest = self.latest.max(change.seq);
            }
            if !full {
                break;
            }
        }
        self.beat().await;
    }

    /// One entry: re-read the row it names and take it in, where writes to
    /// it are serialised (the key write lock, the reload loop, the value
    /// writer's lock), so a row read here is never older than a write this
    /// replica made meanwhile. Entries this replica wrote are re-read too:
    /// harmless when nothing changed since, and right when something did
    /// (another replica's later write, a version the store assigned).
    async fn apply(&self, change: &StoredChange) -> Result<(), String> {
        let (r, shared) = (Arc::clone(&self.replication), Arc::clone(&self.shared));
        match change.changed.clone() {
            Changed::Key(id) => {
                blocking(move || {
                    keys::apply_stored(shared.as_ref(), &id, || r.load_key(&id))
                })
                .await
            }
            Changed::TokenValue(name) => {
                blocking(move || {
                    let specs = &shared.snapshot().config.tokens;
                    let applied = values::apply_stored(shared.runtime_values(), specs, &name, || {
                        r.load_token_value(&name)
                    });
                    match applied {
                        Ok(_) => Ok(()),
                        Err(values::TokenValueError::Store(e)) => Err(e),
                        Err(e) => {
                            tracing::error!(token = %name, error = %e, "a token value set on another replica cannot be used here");
                            Ok(())
                        }
                    }
                })
                .await
            }
            Changed::Object { section, name } => {
                let Some(s) = Section::from_key(&section) else {
                    tracing::warn!(%section, %name, "change entry names an unknown catalog section; skipped");
                    return Ok(());
                };
                let (reply, done) = oneshot::channel();
                self.reload
                    .send(Request::Remote {
                        objects: vec![(s, name)],
                        reply,
                    })
                    .await
                    .map_err(|_| "the reload loop has stopped".to_string())?;
                done.await
                    .map_err(|_| "the reload loop has stopped".to_string())?
            }
        }
    }

    /// Records `applied` and the heartbeat; on success, API-made keys are
    /// trusted for `lease` from when it was sent.
    async fn beat(&mut self) {
        let Some(lease) = self.shared.cluster().map(|c| c.lease) else {
            return;
        };
        if self.stranded {
            // Vouching again would undo `catch_up`'s 503; and without a
            // heartbeat no revocation elsewhere waits on this replica.
            return;
        }
        let sent = SystemTime::now();
        let (r, applied) = (Arc::clone(&self.replication), self.applied);
        // Bounded: a store that black-holes packets must not hold the
        // follower (and so readiness) for a whole call timeout.
        let call = tokio::time::timeout(self.heartbeat * 3, blocking(move || r.heartbeat(applied)));
        let result = call
            .await
            .unwrap_or_else(|_| Err("heartbeat timed out".to_string()));
        match result {
            Ok(latest) => {
                self.latest = self.latest.max(latest);
                // The lease is renewed only when nothing is left to apply:
                // a replica back from a cut-off must read the revocations
                // it missed before it trusts its keys again.
                if self.latest <= self.applied {
                    self.shared.keys().vouch_until(sent + lease);
                    self.caught_up = true;
                }
                if !self.shared.keys().set_in_sync(true) || self.outage.is_some() {
                    tracing::info!(
                        applied = self.applied,
                        latest = self.latest,
                        "store reachable again; following changes"
                    );
                }
                self.outage = None;
            }
            Err(e) => self.lost(&e),
        }
    }

    /// The store is out of reach: logged once per outage.
    fn lost(&mut self, why: &str) {
        self.shared.keys().set_in_sync(false);
        if self.outage.as_deref() != Some(why) {
            tracing::warn!(error = %why, applied = self.applied, "store unreachable: serving from memory for the lease, retrying");
            self.outage = Some(why.to_string());
        }
    }

    /// Readiness: not ready past the lease, or when behind the sequence
    /// for longer than the ack timeout (a revoker named this replica).
    fn assess(&mut self) {
        let Some(cluster) = self.shared.cluster() else {
            return;
        };
        let mut not_ready = Vec::new();
        if !self.caught_up {
            not_ready.push("starting: catching up with the change sequence".to_string());
        }
        if self.stranded {
            not_ready.push(STRANDED.to_string());
        } else if !self.shared.keys().vouches(SystemTime::now()) {
            not_ready.push(format!(
                "store unreachable for longer than the lease ({}s): API keys answer 503 until it is back",
                cluster.lease.as_secs_f64()
            ));
        }
        if self.applied < self.latest {
            let since = *self.behind_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= cluster.ack_timeout {
                not_ready.push(format!(
                    "behind the change sequence: applied {} of {}",
                    self.applied, self.latest
                ));
            }
        } else {
            self.behind_since = None;
        }
        let was = cluster.status();
        if was.not_ready.is_empty() && !not_ready.is_empty() {
            tracing::warn!(reasons = ?not_ready, "replica not ready");
        } else if !was.not_ready.is_empty() && not_ready.is_empty() {
            tracing::info!("replica ready again");
        }
        cluster.set_status(ReplicaStatus {
            name: was.name,
            applied: self.applied,
            latest: self.latest,
            store_reachable: self.outage.is_none(),
            not_ready,
        });
    }
}

/// Runs store work on the blocking pool; a store error becomes its text.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("store task failed: {e}")),
    }
}
