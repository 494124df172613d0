//! Background upkeep: batched usage writes, hourly retention purges
//! (ended keys past `store.retention`, audit records past
//! `store.audit_retention`, and with replicas the applied change entries
//! and killed replicas' rows past `REPLICATION_KEEP`), and picking up an
//! admin key written by `keygate admin-key --reset` (one indexed read per
//! tick), so an operator locked out of the admin API gets back in without
//! restarting the gateway. Ticks every `store.flush_interval`, read from
//! the published config each time so a reload changes it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::auth::keys;
use crate::state::Shared;

/// How often ended keys and old audit records are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How long change entries every replica applied, and rows of replicas
/// that stopped heartbeating (SIGKILLed, never `leave`), are kept. A
/// replica cut off for longer finds the entries it missed gone and turns
/// not-ready until restarted (it cannot learn a revocation it never saw),
/// so this must outlast any outage a replica should ride out: a day is
/// hours beyond a network partition or a database failover, while one
/// day of writes stays a small table.
const REPLICATION_KEEP: Duration = Duration::from_secs(24 * 3600);

pub async fn run(shared: Arc<Shared>) {
    let mut last_purge = tokio::time::Instant::now();
    let mut reset_seen: Option<String> = None;
    loop {
        let every = shared.snapshot().config.store.flush_interval;
        tokio::time::sleep(every).await;
        let s = Arc::clone(&shared);
        let purge = last_purge.elapsed() >= PURGE_EVERY;
        if purge {
            last_purge = tokio::time::Instant::now();
        }
        let seen = reset_seen.clone();
        let result = tokio::task::spawn_blocking(move || {
            let flushed = keys::flush_usage(s.as_ref());
            if flushed.is_ok() && s.cluster().is_some() {
                // What the other replicas flushed, so `last_used_at` is a
                // few seconds behind on every replica, not only the one
                // that served the key.
                match s.store().load_usage() {
                    Ok(stored) => keys::merge_usage(s.as_ref(), &stored),
                    Err(e) => tracing::debug!(error = %e, "reading merged key usage failed"),
                }
            }
            if purge
                && let Some(retention) = s.snapshot().config.store.retention
                && let Err(e) = keys::purge(s.as_ref(), retention, SystemTime::now())
            {
                tracing::warn!(error = %e, "key purge failed");
            }
            if purge {
                super::purge_audit(&s, s.snapshot().config.store.audit_retention);
            }
            if purge && let Some(cluster) = s.cluster() {
                match cluster.replication.prune(REPLICATION_KEEP) {
                    Ok(p) if p.replicas > 0 || p.changes > 0 => tracing::info!(
                        replicas = p.replicas,
                        changes = p.changes,
                        "silent replicas and applied change entries pruned"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "pruning the change sequence failed; will retry")
                    }
                }
            }
            let reset = keys::pick_up_admin_reset(s.as_ref(), seen.as_deref());
            (flushed, reset)
        })
        .await;
        if let Ok((flushed, reset)) = result {
            if let Err(e) = flushed {
                tracing::warn!(error = %e, "key usage flush failed; will retry");
            }
            match reset {
                Ok(mark) => reset_seen = mark,
                Err(e) => {
                    tracing::warn!(error = %e, "checking for a reset admin key failed; will retry")
                }
            }
        }
    }
}
