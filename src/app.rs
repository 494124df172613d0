//! Wires the running gateway: binds the listeners, keeps dedicated
//! connector ports in step with the config, reloads, and shuts down.
//!
//! A reload is: read → validate → build the new snapshot aside → bind any
//! new dedicated ports → ONE swap → start the new ports, release the ports
//! of removed connectors → re-read token sources. Any failure before the
//! swap changes nothing: the last good config keeps serving, and the error
//! is kept for status. Reloads are serialized.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

use tokio::sync::{Mutex, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::admin::{Admin, ReloadRequest};
use crate::auth::keys;
use crate::config::{self, Config, ConfigError};
use crate::config::{Limits, TlsFiles, listen_matches};
use crate::listen::tls::{self, CertResolver};
use crate::listen::{self, Drain, DrainControl};
use crate::lock::lock;
use crate::proxy::{Listener, Proxy};
use crate::state::{ReloadStatus, ReloadTrigger, Shared, Snapshot, TlsStatus, now_rfc3339};
use crate::store::sealed;
use crate::store::sqlite::SqliteStore;
use crate::tokens::values;

/// A dedicated connector listener.
#[derive(Debug)]
struct Dedicated {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Ports bound for a reload, not yet serving.
type Fresh = Vec<(String, TcpListener, SocketAddr)>;

#[derive(Debug)]
pub struct App {
    pub shared: Arc<Shared>,
    config_path: PathBuf,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Handed to listeners bound later (dedicated ports added by a reload);
    /// taken at shutdown so the drain can see the last connection go.
    drain: std::sync::Mutex<Option<Drain>>,
    drain_ctl: std::sync::Mutex<Option<DrainControl>>,
    stops: Vec<watch::Sender<bool>>,
    /// Dedicated listeners; its lock also serializes reloads.
    dedicated: Mutex<HashMap<String, Dedicated>>,
    tls: Option<Arc<CertResolver>>,
    /// `server:` connection limits as of start, for every listener.
    limits: Limits,
    generation: AtomicU64,
    /// SHA-256 of the config text last tried (good or bad), so the watcher
    /// reloads on a content change, not on every touch.
    config_digest: std::sync::Mutex<[u8; 32]>,
    /// Digest of the TLS pair last *tried* (good or refused), so a refused
    /// renewal is reported once, not retried on every poll.
    tls_digest: std::sync::Mutex<Option<[u8; 32]>>,
    /// The connector `ca_file`s of the config last *tried* (good or
    /// refused) and the digest of their content then, so the watcher
    /// reloads when a CA is rewritten at the same path, and retries a
    /// refused reload only when one of those files changes.
    trust: std::sync::Mutex<TrustFiles>,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn tls_files_digest(files: &TlsFiles) -> Option<[u8; 32]> {
    let cert = std::fs::read(&files.cert).ok()?;
    let key = std::fs::read(&files.key).ok()?;
    let mut h = Sha256::new();
    h.update(&cert);
    h.update(&key);
    Some(h.finalize().into())
}

/// The connector `ca_file`s of one config and one digest over their paths
/// and contents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TrustFiles {
    files: Vec<PathBuf>,
    digest: [u8; 32],
}

impl TrustFiles {
    fn of(config: &Config) -> Self {
        let mut files: Vec<PathBuf> = config
            .connectors
            .values()
            .filter_map(|c| c.ca_file.clone())
            .collect();
        files.sort();
        files.dedup();
        let digest = trust_digest(&files);
        TrustFiles { files, digest }
    }

    /// The same files as they are now.
    fn reread(&self) -> Self {
        TrustFiles {
            files: self.files.clone(),
            digest: trust_digest(&self.files),
        }
    }
}

fn trust_digest(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        match crate::state::file_digest(f) {
            Some(d) => h.update(d),
            None => h.update([0xff]),
        }
    }
    h.finalize().into()
}

impl App {
    /// Binds every listener and starts serving `config`.
    pub async fn start(config_path: PathBuf, config: Config) -> Result<Arc<App>, String> {
        let config_digest = std::fs::read(&config_path)
            .map(|b| digest(&b))
            .unwrap_or_default();
        let config = Arc::new(config);
        let snapshot = Snapshot::build(Arc::clone(&config), None, 1)
            .map_err(|errs| render(&config_path, &errs))?;
        let store_path = config.store.sqlite.clone();
        let store = SqliteStore::open(&store_path)
            .map_err(|e| format!("cannot open the store {}: {e}", store_path.display()))?;
        let master = sealed::load_or_create(&config.store.master_key, &store)?;
        let shared = Arc::new(Shared::new(snapshot, Arc::new(store), master));
        shared.tokens.sync(&config, false);
        shared.sync_dynamic(&config);
        let restored = values::restore(&shared)?;
        if restored > 0 {
            tracing::info!(
                tokens = restored,
                "run-time token values restored from the store"
            );
        }
        shared.sync_config_keys(&config);
        let stored = keys::load(&shared)?;
        tracing::info!(path = %store_path.display(), keys = stored, "store opened");
        if let Some(retention) = config.store.retention {
            match keys::purge(&shared, retention, SystemTime::now()) {
                Ok(n) if n > 0 => tracing::info!(purged = n, "ended keys past retention deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "key purge failed"),
            }
        }
        let store_dir = store_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if let Some(path) = keys::bootstrap(&shared, &store_dir, SystemTime::now())? {
            tracing::warn!(
                path = %path.display(),
                "no admin key existed: created one for client keygate-admin; read it from this file (mode 0600), then delete the file"
            );
        }
        warn_if_no_admin_key(&shared, &config_path);
        for (name, why) in &shared.tokens.load().errors {
            tracing::warn!(token = %name, reason = %why, "token has no value; connectors using it answer 503");
        }

        let (drain_ctl, drain) = DrainControl::new(shared.metrics.open_connections.clone());
        let mut stops = Vec::new();

        let tls = match &config.server.tls {
            Some(files) => Some(Arc::new(CertResolver::new(files)?)),
            None => None,
        };
        let acceptor = match &tls {
            Some(r) => Some(TlsAcceptor::from(tls::server_config(Arc::clone(r))?)),
            None => None,
        };
        let tls_digest = config.server.tls.as_ref().and_then(tls_files_digest);
        if tls.is_some() {
            *lock(&shared.tls) = Some(TlsStatus {
                loaded_at: Some(now_rfc3339()),
                error: None,
            });
        }

        // Read once: listeners bound later (dedicated ports) share them.
        let limits = config.server.limits.clone();
        let proxy_listener = bind(config.server.listen, "proxy").await?;
        let proxy_addr = proxy_listener.local_addr().map_err(|e| e.to_string())?;
        let admin_listener = bind(config.admin.listen, "admin").await?;
        let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;

        let (tx, rx) = watch::channel(false);
        stops.push(tx);
        tokio::spawn(listen::serve(
            proxy_listener,
            acceptor,
            Proxy::new(Arc::clone(&shared), Listener::Shared),
            limits.clone(),
            rx,
            drain.clone(),
        ));
        tracing::info!(listener = "proxy", addr = %proxy_addr, tls = tls.is_some(), "listening");

        let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
        let (tx, rx) = watch::channel(false);
        stops.push(tx);
        tokio::spawn(listen::serve(
            admin_listener,
            None,
            Admin::new(Arc::clone(&shared), reload_tx),
            limits.clone(),
            rx,
            drain.clone(),
        ));
        tracing::info!(listener = "admin", addr = %admin_addr, "listening");

        let app = Arc::new(App {
            shared,
            config_path,
            proxy_addr,
            admin_addr,
            drain: std::sync::Mutex::new(Some(drain)),
            drain_ctl: std::sync::Mutex::new(Some(drain_ctl)),
            stops,
            dedicated: Mutex::new(HashMap::new()),
            tls,
            limits,
            generation: AtomicU64::new(1),
            config_digest: std::sync::Mutex::new(config_digest),
            tls_digest: std::sync::Mutex::new(tls_digest),
            trust: std::sync::Mutex::new(TrustFiles::of(&config)),
        });
        {
            let mut current = app.dedicated.lock().await;
            let fresh = bind_dedicated(&current, &config)
                .await
                .map_err(|errs| render(&app.config_path, &errs))?;
            app.start_dedicated(&mut current, &config, fresh);
        }
        let for_reload = Arc::clone(&app);
        tokio::spawn(async move {
            while let Some(reply) = reload_rx.recv().await {
                let _ = reply.send(for_reload.reload(ReloadTrigger::Admin).await);
            }
        });
        tokio::spawn(maintenance(Arc::clone(&app.shared)));
        Ok(app)
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Phase 2 of a listener sync, after the snapshot swap: release ports of
    /// connectors that are gone or moved, start serving the fresh ones.
    fn start_dedicated(
        &self,
        current: &mut HashMap<String, Dedicated>,
        config: &Config,
        fresh: Fresh,
    ) {
        current.retain(|name, d| {
            let stay = config
                .connectors
                .get(name)
                .and_then(|c| c.listen)
                .is_some_and(|want| listen_matches(d.addr, want))
                && !fresh.iter().any(|f| &f.0 == name);
            if !stay {
                let _ = d.stop.send(true);
                tracing::info!(listener = %name, addr = %d.addr, "connector listener closed");
            }
            stay
        });
        let Some(drain) = lock(&self.drain).clone() else {
            return; // shutting down: serve nothing new
        };
        for (name, listener, addr) in fresh {
            let (tx, rx) = watch::channel(false);
            tokio::spawn(listen::serve(
                listener,
                None,
                Proxy::new(
                    Arc::clone(&self.shared),
                    Listener::Dedicated {
                        connector: name.clone(),
                        bound: addr,
                    },
                ),
                self.limits.clone(),
                rx,
                drain.clone(),
            ));
            tracing::info!(listener = "connector", connector = %name, addr = %addr, "listening");
            current.insert(name, Dedicated { addr, stop: tx });
        }
    }

    /// Reloads the config file. On any error the running config stays.
    /// `trigger` is recorded in the status and the log line.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<u64, Vec<ConfigError>> {
        let result = self.try_reload().await;
        self.shared.metrics.reload(result.is_ok());
        let status = match &result {
            Ok(generation) => {
                tracing::info!(generation, trigger = trigger.as_str(), "config reloaded");
                ReloadStatus {
                    ok: true,
                    at: Some(now_rfc3339()),
                    trigger,
                    errors: Vec::new(),
                }
            }
            Err(errs) => {
                tracing::error!(trigger = trigger.as_str(), errors = %render(&self.config_path, errs), "config reload rejected; the last good config keeps serving");
                ReloadStatus {
                    ok: false,
                    at: Some(now_rfc3339()),
                    trigger,
                    errors: errs.clone(),
                }
            }
        };
        *lock(&self.shared.reload) = status;
        result
    }

    async fn try_reload(&self) -> Result<u64, Vec<ConfigError>> {
        let mut current = self.dedicated.lock().await; // serializes reloads
        let text = std::fs::read_to_string(&self.config_path).map_err(|e| {
            vec![ConfigError {
                line: None,
                column: None,
                message: format!("cannot read config file: {e}"),
            }]
        })?;
        *lock(&self.config_digest) = digest(text.as_bytes());
        let mut config = config::from_text(&text, &self.config_path).map_err(|e| e.0)?;
        *lock(&self.trust) = TrustFiles::of(&config);
        let old = self.shared.snapshot.load_full();
        if keep_restart_only(&mut config, &old.config, &self.limits) {
            tracing::warn!(
                "server.listen, admin.listen and server connection limit changes take effect at the next restart"
            );
        }
        let config = Arc::new(config);
        let generation = self.generation.load(Ordering::Acquire) + 1;
        let snapshot = Snapshot::build(Arc::clone(&config), Some(&old), generation)?;
        let fresh = bind_dedicated(&current, &config).await?;
        {
            // Under the key write lock, with the YAML keys re-synced in the
            // same step: a revoke or roll decides the last-admin-key rule
            // on the state before this reload or after it, never between.
            // No `.await` while it is held.
            let _writes = lock(&self.shared.key_writes);
            // The one swap: from here on every new request sees the new config.
            self.shared.snapshot.store(Arc::new(snapshot));
            self.shared.sync_config_keys(&config);
        }
        self.generation.store(generation, Ordering::Release);
        self.start_dedicated(&mut current, &config, fresh);
        drop(current);
        self.shared.tokens.sync(&config, false);
        self.shared.sync_dynamic(&config);
        if let Err(e) = values::restore(&self.shared) {
            tracing::error!(error = %e, "stored token values could not be restored");
        }
        self.check_tls(&config);
        // A reload may drop a YAML admin key or an `admin: true` role. The
        // config file is the operator's to change, so it is not refused,
        // but a gateway nobody can administer must say so, and how to fix it.
        warn_if_no_admin_key(&self.shared, &self.config_path);
        Ok(generation)
    }

    /// Called by the watcher on file events and on its poll tick: reloads
    /// the config if its content (or a connector `ca_file`'s) changed, else
    /// re-reads `file:` token values, `file:` JWT secrets and the TLS
    /// certificate.
    pub async fn check_sources(&self) {
        let now = std::fs::read(&self.config_path).map(|b| digest(&b)).ok();
        let known = *lock(&self.config_digest);
        if now.is_some_and(|n| n != known) {
            let _ = self.reload(ReloadTrigger::Watch).await;
            return;
        }
        let snap = self.shared.snapshot.load_full();
        // The files of the config last *tried*, compared with themselves:
        // after a refused reload (a CA file that is not PEM, a port in
        // use) the running config may name other files, and comparing
        // those would differ on every poll and reload once a second.
        let trust_changed = {
            let mut tried = lock(&self.trust);
            let now = tried.reread();
            std::mem::replace(&mut *tried, now) != *tried
        };
        if trust_changed {
            tracing::info!("a connector ca_file changed; reloading");
            let _ = self.reload(ReloadTrigger::Watch).await;
            return;
        }
        if self.shared.reread_user_secrets() {
            tracing::info!("user token secrets re-read from files");
        }
        if self.shared.tokens.sync(&snap.config, true) {
            let set = self.shared.tokens.load();
            for (name, why) in &set.errors {
                tracing::warn!(token = %name, reason = %why, "token has no value");
            }
            tracing::info!("token values re-read from files");
        }
        self.check_tls(&snap.config);
    }

    fn check_tls(&self, config: &Config) {
        let (Some(resolver), Some(files)) = (&self.tls, &config.server.tls) else {
            return;
        };
        let now = tls_files_digest(files);
        let mut known = lock(&self.tls_digest);
        if now.is_none() || now == *known {
            return;
        }
        // Tried once per content: a refused pair (a renewal half written,
        // or a key that is not the certificate's) is reported, then
        // retried when either file changes again.
        *known = now;
        let result = resolver.reload(files);
        let mut status = lock(&self.shared.tls);
        let st = status.get_or_insert_with(TlsStatus::default);
        match result {
            Ok(()) => {
                st.loaded_at = Some(now_rfc3339());
                st.error = None;
                tracing::info!("TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload refused; keeping the current one");
                st.error = Some(e);
            }
        }
    }

    /// Stops accepting, drains in-flight requests for up to the grace.
    pub async fn shutdown(&self) {
        for s in &self.stops {
            let _ = s.send(true);
        }
        for d in self.dedicated.lock().await.values() {
            let _ = d.stop.send(true);
        }
        lock(&self.drain).take();
        let grace = self.shared.snapshot.load().config.server.shutdown_grace;
        let ctl = lock(&self.drain_ctl).take();
        if let Some(ctl) = ctl {
            if ctl.drain(grace).await {
                tracing::info!("all connections drained");
            } else {
                tracing::warn!(
                    grace_s = grace.as_secs_f64(),
                    "shutdown grace elapsed with requests still in flight"
                );
            }
        }
        let shared = Arc::clone(&self.shared);
        match tokio::task::spawn_blocking(move || keys::flush_usage(&shared)).await {
            Ok(Ok(n)) => tracing::info!(keys = n, "key usage flushed"),
            Ok(Err(e)) => tracing::error!(error = %e, "key usage flush failed at shutdown"),
            Err(e) => tracing::error!(error = %e, "key usage flush failed at shutdown"),
        }
    }

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads.
    #[cfg(unix)]
    pub async fn run_until_signal(self: Arc<Self>) -> Result<(), String> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
        let watcher = crate::reload::spawn(Arc::clone(&self));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading config");
                    let _ = self.reload(ReloadTrigger::Signal).await;
                }
            }
        }
        watcher.abort();
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        self.shutdown().await;
        Ok(())
    }
}

/// Phase 1 of a listener sync: binds the ports of connectors that gained
/// or moved one. If any port cannot be bound, nothing changes.
async fn bind_dedicated(
    current: &HashMap<String, Dedicated>,
    config: &Config,
) -> Result<Fresh, Vec<ConfigError>> {
    let mut fresh = Vec::new();
    let mut errors = Vec::new();
    for (name, c) in &config.connectors {
        let Some(want) = c.listen else { continue };
        if current
            .get(name)
            .is_some_and(|d| listen_matches(d.addr, want))
        {
            continue;
        }
        match bind(want, &format!("connector {name}")).await {
            Ok(l) => {
                let addr = l.local_addr().unwrap_or(want);
                fresh.push((name.clone(), l, addr));
            }
            Err(message) => errors.push(ConfigError {
                line: None,
                column: None,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(fresh)
    } else {
        Err(errors)
    }
}

/// Logs, loudly, when no live key can use the admin API (after a start
/// or a reload), naming the command that lets the operator back in.
fn warn_if_no_admin_key(shared: &Shared, config_path: &Path) {
    if !keys::admin_key_exists(shared, SystemTime::now()) {
        tracing::warn!(
            recovery = %format!("keygate admin-key --reset -c {}", config_path.display()),
            "no live admin key remains: the admin API accepts no key; run `keygate admin-key --reset -c <config>` on this host to mint one"
        );
    }
}

/// Puts the values that only a restart applies back to the running ones,
/// so the published config (what the rest of keygate reads) states what
/// is in force: the sockets actually bound,
/// never addresses only the next start will use, and the connection
/// `limits` every listener was started with (dedicated ports bound later
/// take `App::limits` too). Returns whether the file asked for a change.
fn keep_restart_only(config: &mut Config, running: &Config, limits: &Limits) -> bool {
    let changed = config.server.listen != running.server.listen
        || config.admin.listen != running.admin.listen
        || config.server.limits != *limits;
    config.server.listen = running.server.listen;
    config.admin.listen = running.admin.listen;
    config.server.limits = limits.clone();
    changed
}

/// How often ended keys past `store.retention` are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Background upkeep: batched usage writes, retention purges, and picking
/// up an admin key written by `keygate admin-key --reset` (one indexed
/// read per tick), so an operator locked out of the admin API gets back in
/// without restarting the gateway. Ticks every `store.flush_interval`,
/// read from the running config each time so a reload changes it.
async fn maintenance(shared: Arc<Shared>) {
    let mut last_purge = tokio::time::Instant::now();
    let mut reset_seen: Option<String> = None;
    loop {
        let every = shared.snapshot.load().config.store.flush_interval;
        tokio::time::sleep(every).await;
        let s = Arc::clone(&shared);
        let purge = last_purge.elapsed() >= PURGE_EVERY;
        if purge {
            last_purge = tokio::time::Instant::now();
        }
        let seen = reset_seen.clone();
        let result = tokio::task::spawn_blocking(move || {
            let flushed = keys::flush_usage(&s);
            if purge
                && let Some(retention) = s.snapshot.load().config.store.retention
                && let Err(e) = keys::purge(&s, retention, SystemTime::now())
            {
                tracing::warn!(error = %e, "key purge failed");
            }
            let reset = keys::pick_up_admin_reset(&s, seen.as_deref());
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

fn render(path: &Path, errs: &[ConfigError]) -> String {
    config::ConfigErrors(errs.to_vec()).render(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_publishes_the_running_listen_and_limits() {
        let path = Path::new("/tmp/keygate.yaml");
        let running = config::from_text(
            "server: { listen: 127.0.0.1:8080, max_connections: 20 }\n",
            path,
        )
        .expect("running");
        let mut next = config::from_text(
            "server: { listen: 127.0.0.1:9090, max_connections: 5, idle_timeout: 5s }\n",
            path,
        )
        .expect("next");
        let started = running.server.limits.clone();
        assert!(keep_restart_only(&mut next, &running, &started));
        assert_eq!(next.server.listen, running.server.listen);
        assert_eq!(
            next.server.limits, started,
            "limits not applied must not be published"
        );
        // Nothing asked for: nothing to warn about.
        let mut same = config::from_text(
            "server: { listen: 127.0.0.1:8080, max_connections: 20 }\n",
            path,
        )
        .expect("same");
        assert!(!keep_restart_only(&mut same, &running, &started));
    }
}
