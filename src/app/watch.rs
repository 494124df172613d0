//! Watches what the running config depends on and sends a check into the
//! reload loop: the config file itself, every `file:` token source, every `file:`
//! JWT secret of a `user` token, every connector `ca_file`, and the TLS
//! certificate and key.
//!
//! `notify` watches the *parent directories* (non-recursive), not the
//! files: editors save by rename, Kubernetes swaps a `..data` symlink, and a
//! secret may not exist yet, none of which a watch on the file itself
//! survives. Where a parent does not exist yet, the nearest existing
//! ancestor is watched, and the set is recomputed after every check so a
//! replaced or newly created directory is picked up. Bursts are debounced
//! (100 ms). A 1 s poll backs the events up (a lost inotify event, an
//! overlay filesystem that sends none); it is cheap because nothing is
//! published unless a value actually changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::reload::Request;
use crate::config::{Config, JwtKey, TokenKind, ValueSource};

const DEBOUNCE: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_secs(1);

fn nearest_dir(path: &Path) -> Option<PathBuf> {
    let mut p = path.parent()?;
    loop {
        if p.is_dir() {
            return Some(p.to_path_buf());
        }
        p = p.parent()?;
    }
}

/// The directories to watch for `config` read from `config_path`.
pub fn watch_dirs(config: &Config, config_path: &Path) -> BTreeSet<PathBuf> {
    let mut files: Vec<&Path> = vec![config_path];
    for spec in config.tokens.values() {
        if let Some(ValueSource::File(p)) = spec.source() {
            files.push(p);
        }
        if let TokenKind::User(u) = &spec.kind
            && let Some(JwtKey::Hs256(ValueSource::File(p))) = u.jwt.as_ref().map(|j| &j.key)
        {
            files.push(p);
        }
    }
    for c in config.connectors.values() {
        if let Some(ca) = &c.ca_file {
            files.push(ca);
        }
    }
    for tls in [&config.server.tls, &config.admin.tls]
        .into_iter()
        .flatten()
    {
        files.push(&tls.cert);
        files.push(&tls.key);
    }
    files.into_iter().filter_map(nearest_dir).collect()
}

/// Watches the directories `dirs` names (the reload loop updates it after
/// every load) and sends [`Request::Check`] on every debounced event and
/// every poll tick. Knows nothing of what a check does.
pub fn spawn(
    mut dirs: watch::Receiver<BTreeSet<PathBuf>>,
    checks: mpsc::Sender<Request>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; polling every second instead");
                None
            }
        };
        let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(w) = watcher.as_mut() {
                let want = dirs.borrow_and_update().clone();
                for gone in watched.difference(&want) {
                    let _ = w.unwatch(gone);
                }
                // Re-assert every watch: a directory that was replaced lost
                // its inotify watch with the old inode.
                for dir in &want {
                    if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::debug!(dir = %dir.display(), error = %e, "cannot watch");
                    }
                }
                watched = want;
            }
            tokio::select! {
                Some(()) = rx.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
            // A check already queued covers this one: checks are idempotent.
            match checks.try_send(Request::Check) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    })
}
