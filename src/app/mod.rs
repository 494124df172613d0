//! Wires the running gateway: opens the store, publishes the first
//! snapshot through the same path every reload takes, binds the
//! listeners, starts the one reload loop, the watcher and the upkeep, and
//! shuts down.
//!
//! - `reload`: the one loop every trigger goes through (build aside → one
//!   publish → start/stop what changed).
//! - `watch`: notify + poll → a check request into that loop.
//! - `ports`: dedicated connector listeners, bound before and settled
//!   after each publish.
//! - `upkeep`: usage flushes, retention purges (keys, audit records),
//!   `admin-key --reset` pick-up.

mod ports;
pub mod reload;
pub mod replica;
mod upkeep;
mod waiting;
pub mod watch;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch as channel};
use tokio_rustls::TlsAcceptor;

use crate::admin::Admin;
use crate::audit;
use crate::auth::keys;
use crate::clock::now_rfc3339;
use crate::config::{self, Backend, Config, Postgres};
use crate::listen::tls::{self, CertResolver};
use crate::listen::{self, DrainControl};
use crate::lock::lock;
use crate::objects::{ApiObjects, Command};
use crate::proxy::{Listener, Proxy};
use crate::snapshot::Published;
use crate::state::{Cluster, ReloadTrigger, Shared};
use crate::store::postgres::PgStore;
use crate::store::sealed;
use crate::store::sqlite::SqliteStore;
use crate::store::{Replication, Store, StoreError};
use ports::Ports;
use reload::{Certs, Reloader, Request, render, warn_if_no_admin_key};

/// Why the gateway could not start (or run): each names what failed, for
/// the one line `main` prints.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    MasterKey(#[from] sealed::MasterKeyError),
    #[error("cannot load the catalog objects: {0}")]
    Catalog(#[from] crate::objects::LoadError),
    #[error("cannot load the stored keys: {0}")]
    Keys(#[source] crate::store::StoreError),
    #[error(transparent)]
    Bootstrap(#[from] keys::KeyError),
    #[error(transparent)]
    Certificate(#[from] crate::listen::tls::CertError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The config refused at its first load (rendered with positions).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Bind(#[from] ports::BindError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Deletes audit records past `retention` (at start and from the upkeep);
/// a failure is logged and retried at the next purge.
fn purge_audit(shared: &Shared, retention: std::time::Duration) {
    match audit::purge(shared.store(), retention, SystemTime::now()) {
        Ok(n) if n > 0 => tracing::info!(purged = n, "audit records past retention deleted"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "audit purge failed"),
    }
}

/// The store as opened: the trait every part uses and, with PostgreSQL,
/// what the follower needs.
struct Opened {
    store: Arc<dyn Store>,
    cluster: Option<(Arc<dyn Replication>, replica::Listen, Postgres)>,
}

/// Opens the PostgreSQL store, retrying with backoff while it is out of
/// reach. Meanwhile the admin listener answers `/healthz` (alive) and
/// `/readyz` 503 with the reason (not ready); it is returned still bound.
async fn open_postgres(
    pg: &Postgres,
    admin: SocketAddr,
    admin_tls: Option<TlsAcceptor>,
) -> Result<(Opened, tokio::net::TcpListener), StartError> {
    let listener = ports::bind(admin, "admin").await?;
    let addr = listener.local_addr()?;
    tracing::info!(listener = "admin", %addr, ready = false, "listening");
    // The reason in full is in the log; `/readyz` needs no key, so it
    // says only what an orchestrator needs.
    let waiting = waiting::Waiting::start(
        listener,
        admin_tls,
        "store unreachable: the PostgreSQL store cannot be opened yet (the log says why); retrying"
            .into(),
    );
    let mut delay = Duration::from_millis(250);
    let store = loop {
        let settings = pg.clone();
        match tokio::task::spawn_blocking(move || PgStore::open(&settings)).await {
            Ok(Ok(store)) => break store,
            // A setting no retry can mend (a refused URL or TLS setup, a
            // schema from a newer keygate, a failing migration) stops here.
            Ok(Err(
                e @ (StoreError::PgUrl(_)
                | StoreError::PgTls(_)
                | StoreError::SchemaTooNew { .. }
                | StoreError::PgMigration { .. }),
            )) => {
                return Err(StartError::Store {
                    path: PathBuf::from("(PostgreSQL)"),
                    source: e,
                });
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in_s = delay.as_secs_f64(), "cannot open the PostgreSQL store; not ready, retrying");
            }
            Err(e) => return Err(StartError::Io(std::io::Error::other(e))),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_OPEN_BACKOFF);
    };
    let listener = waiting.finish().await?;
    let store = Arc::new(store);
    tracing::info!(replica = %store.replica(), "PostgreSQL store opened; migrations current");
    let listening = Arc::clone(&store);
    let listen: replica::Listen = Box::new(move || {
        let s = Arc::clone(&listening);
        Box::pin(async move { s.listen().await })
    });
    let replication: Arc<dyn Replication> = store.clone();
    Ok((
        Opened {
            store,
            cluster: Some((replication, listen, pg.clone())),
        },
        listener,
    ))
}

/// Longest wait between attempts to open the store at start.
const MAX_OPEN_BACKOFF: Duration = Duration::from_secs(30);

/// Requests queued for the reload loop before a sender waits (the watcher
/// drops a check when the queue is full: a queued check covers it).
const QUEUE: usize = 16;

#[derive(Debug)]
pub struct App {
    pub shared: Arc<Shared>,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Taken at shutdown so the drain can see the last connection go.
    drain_ctl: std::sync::Mutex<Option<DrainControl>>,
    stops: Vec<channel::Sender<bool>>,
    ports: Arc<tokio::sync::Mutex<Ports>>,
    /// Into the one reload loop.
    requests: mpsc::Sender<Request>,
    /// What the watcher watches; taken when it starts.
    watch_dirs: std::sync::Mutex<Option<channel::Receiver<BTreeSet<PathBuf>>>>,
    /// The change follower (several replicas): stopped before this replica
    /// leaves the replica table, so no heartbeat brings its row back.
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl App {
    /// Opens the store, publishes `config` and binds every listener.
    ///
    /// `config` is the file alone, as `main` read it; the store it names
    /// holds the objects made through the admin API, and the config
    /// published is the file read again with those laid over it.
    pub async fn start(config_path: PathBuf, config: Config) -> Result<Arc<App>, StartError> {
        // First: the admin listener may answer probes while the store opens.
        let admin_tls = match &config.admin.tls {
            Some(files) => Some(Arc::new(CertResolver::new(files)?)),
            None => None,
        };
        let admin_acceptor = match &admin_tls {
            Some(r) => Some(TlsAcceptor::from(tls::server_config(Arc::clone(r))?)),
            None => None,
        };
        let mut admin_listener = None;
        let opened = match &config.store.backend {
            Backend::Sqlite(path) => Opened {
                store: Arc::new(SqliteStore::open(path).map_err(|source| StartError::Store {
                    path: path.clone(),
                    source,
                })?),
                cluster: None,
            },
            Backend::Postgres(pg) => {
                let (opened, listener) =
                    open_postgres(pg, config.admin.listen, admin_acceptor.clone()).await?;
                admin_listener = Some(listener);
                opened
            }
        };
        let store = opened.store;
        // Joined (as having applied nothing, so revokers wait for this
        // replica from here on) and read before anything is loaded:
        // entries after it may be in the state loaded below already, and
        // applying them again is harmless.
        let seq0 = match &opened.cluster {
            Some((replication, ..)) => {
                let r = Arc::clone(replication);
                tokio::task::spawn_blocking(move || r.register())
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(StartError::Keys)?
            }
            None => 0,
        };
        let api = ApiObjects::load(store.as_ref())?;
        let yaml = std::fs::read_to_string(&config_path)?;
        let config = Arc::new(
            config::from_text_with(&yaml, &config_path, &api.overlay())
                .map_err(|e| StartError::Config(e.render(&config_path)))?,
        );
        if !api.objects.is_empty() {
            tracing::info!(
                objects = api.objects.len(),
                "catalog objects made through the admin API loaded"
            );
        }
        let master = sealed::load_or_create(&config.store.master_key, store.as_ref())?;
        let mut shared = Shared::new(
            Published::empty(Arc::clone(&config)),
            Arc::clone(&store),
            master,
        );
        let mut follow = None;
        if let Some((replication, listen, pg)) = opened.cluster {
            shared = shared.with_cluster(Cluster::new(
                Arc::clone(&replication),
                pg.ack_timeout,
                pg.lease,
            ));
            follow = Some((replication, listen, pg.heartbeat));
        }
        let shared = Arc::new(shared);
        if let Some(cluster) = shared.cluster() {
            shared.keys().vouch_until(SystemTime::now() + cluster.lease);
        }
        let stored = keys::load(shared.as_ref()).map_err(StartError::Keys)?;
        match &config.store.backend {
            Backend::Sqlite(path) => {
                tracing::info!(path = %path.display(), keys = stored, "store opened");
            }
            Backend::Postgres(_) => {
                tracing::info!(store = "postgres", keys = stored, "store opened")
            }
        }

        let tls = match &config.server.tls {
            Some(files) => Some(Arc::new(CertResolver::new(files)?)),
            None => None,
        };
        let acceptor = match &tls {
            Some(r) => Some(TlsAcceptor::from(tls::server_config(Arc::clone(r))?)),
            None => None,
        };
        if tls.is_some() {
            shared.update_tls_status(|st| {
                st.loaded_at = Some(now_rfc3339());
                st.error = None;
            });
        }

        // Read once: listeners bound later (dedicated ports) share them.
        let limits = config.server.limits.clone();
        let (drain_ctl, drain) = DrainControl::new(shared.metrics().open_connections.clone());
        let ports = Arc::new(tokio::sync::Mutex::new(Ports::new(
            Arc::clone(&shared),
            limits.clone(),
            drain.clone(),
        )));
        let (mut reloader, watch_dirs) = Reloader::new(
            Arc::clone(&shared),
            config_path.clone(),
            Arc::clone(&ports),
            Certs {
                proxy: tls,
                admin: admin_tls.clone(),
            },
            limits.clone(),
            yaml,
            api,
        );
        // The first load takes the path of every reload.
        reloader
            .publish(Arc::clone(&config))
            .await
            .map_err(|errs| StartError::Config(render(&config_path, &errs)))?;

        if let Some(retention) = config.store.retention {
            match keys::purge(shared.as_ref(), retention, SystemTime::now()) {
                Ok(n) if n > 0 => tracing::info!(purged = n, "ended keys past retention deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "key purge failed"),
            }
        }
        purge_audit(&shared, config.store.audit_retention);
        if let Some(path) =
            keys::bootstrap(shared.as_ref(), &config.store.data_dir, SystemTime::now())?
        {
            tracing::warn!(
                path = %path.display(),
                "no admin key existed: created one for client keygate-admin; read it from this file (mode 0600), then delete the file"
            );
        }
        warn_if_no_admin_key(&shared, &config_path);

        let mut stops = Vec::new();
        let proxy_listener = ports::bind(config.server.listen, "proxy").await?;
        let proxy_addr = proxy_listener.local_addr()?;
        shared.set_proxy_addr(proxy_addr);
        let admin_listener = match admin_listener {
            Some(l) => l,
            None => ports::bind(config.admin.listen, "admin").await?,
        };
        let admin_addr = admin_listener.local_addr()?;

        let (tx, rx) = channel::channel(false);
        stops.push(tx);
        tokio::spawn(listen::serve(
            proxy_listener,
            acceptor,
            Proxy::new(Arc::clone(&shared), Listener::Shared),
            limits.clone(),
            rx,
            drain.clone(),
        ));
        tracing::info!(listener = "proxy", addr = %proxy_addr, tls = config.server.tls.is_some(), "listening");

        let (requests, queue) = mpsc::channel::<Request>(QUEUE);
        let (admin_commands, mut admin_rx) = mpsc::channel::<Command>(4);
        let (tx, rx) = channel::channel(false);
        stops.push(tx);
        tokio::spawn(listen::serve(
            admin_listener,
            admin_acceptor,
            Admin::new(Arc::clone(&shared), admin_commands, admin_tls.is_some()),
            limits,
            rx,
            drain,
        ));
        tracing::info!(listener = "admin", addr = %admin_addr, tls = admin_tls.is_some(), "listening");

        tokio::spawn(reloader.run(queue));
        let follower = follow.map(|(replication, listen, heartbeat)| {
            let follower = replica::Follower::new(
                Arc::clone(&shared),
                replication,
                listen,
                requests.clone(),
                heartbeat,
                seq0,
            );
            tokio::spawn(follower.run())
        });
        // `POST /api/v1/reload` and catalog changes join the same queue.
        let forward = requests.clone();
        tokio::spawn(async move {
            while let Some(command) = admin_rx.recv().await {
                let request = match command {
                    Command::Reload(reply) => Request::Load {
                        trigger: ReloadTrigger::Admin,
                        reply: Some(reply),
                    },
                    Command::Change(change, reply) => Request::Change { change, reply },
                    Command::Export(reply) => Request::Export(reply),
                };
                if forward.send(request).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(upkeep::run(Arc::clone(&shared)));
        Ok(Arc::new(App {
            shared,
            proxy_addr,
            admin_addr,
            drain_ctl: std::sync::Mutex::new(Some(drain_ctl)),
            stops,
            ports,
            requests,
            watch_dirs: std::sync::Mutex::new(Some(watch_dirs)),
            follower: std::sync::Mutex::new(follower),
        }))
    }

    /// Stops accepting, drains in-flight requests for up to the grace.
    pub async fn shutdown(&self) {
        for s in &self.stops {
            let _ = s.send(true);
        }
        self.ports.lock().await.close_all();
        let grace = self.shared.snapshot().config.server.shutdown_grace;
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
        let follower = lock(&self.follower).take();
        if let Some(follower) = follower {
            follower.abort();
            let _ = follower.await;
        }
        if let Some(cluster) = self.shared.cluster() {
            // Nobody waits on a replica that is gone.
            let r = Arc::clone(&cluster.replication);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || r.leave()).await {
                tracing::warn!(error = %e, "could not leave the replica table; others wait on this replica until its lease ends");
            }
        }
        let shared = Arc::clone(&self.shared);
        match tokio::task::spawn_blocking(move || keys::flush_usage(shared.as_ref())).await {
            Ok(Ok(n)) => tracing::info!(keys = n, "key usage flushed"),
            Ok(Err(e)) => tracing::error!(error = %e, "key usage flush failed at shutdown"),
            Err(e) => tracing::error!(error = %e, "key usage flush failed at shutdown"),
        }
    }

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads; the watcher runs.
    #[cfg(unix)]
    pub async fn run_until_signal(self: Arc<Self>) -> Result<(), StartError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let watcher = lock(&self.watch_dirs)
            .take()
            .map(|dirs| watch::spawn(dirs, self.requests.clone()));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading config");
                    let load = Request::Load { trigger: ReloadTrigger::Signal, reply: None };
                    if self.requests.send(load).await.is_err() {
                        tracing::error!("the reload loop has stopped; SIGHUP ignored");
                    }
                }
            }
        }
        if let Some(w) = watcher {
            w.abort();
        }
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        self.shutdown().await;
        Ok(())
    }
}
