//! The handles every part of the running gateway shares: the published
//! snapshot, the token value writer, the API key index and its write
//! lock, the store and its master key, the metrics, and what `/api/v1/status`
//! reports about the last reload and the TLS certificate. Fields are
//! private: a part that needs one handle asks for that handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::KeyIndex;
use crate::auth::keys::{KeyContext, KeyView};
use crate::clock::now_rfc3339;
use crate::config::ConfigError;
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::snapshot::{BuildContext, Published, Snapshot};
use crate::store::sealed::MasterKey;
use crate::store::{Replication, Store, StoreError};
use crate::tokens::TokenStore;
use crate::tokens::values::Runtime;

/// The TLS listener's certificate, for `/api/v1/status`: when the pair in
/// use was loaded, and why the last renewal on disk was refused (if it
/// was; the last good pair keeps serving).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TlsStatus {
    pub loaded_at: Option<String>,
    pub error: Option<String>,
}

/// What asked for a config load, so an operator (and a test) can tell a
/// SIGHUP from the file watcher or the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadTrigger {
    /// The load at process start.
    #[default]
    Start,
    /// `SIGHUP`.
    Signal,
    /// The file watcher or its poll: the config file or a connector
    /// `ca_file` changed.
    Watch,
    /// `POST /api/v1/reload`.
    Admin,
}

impl ReloadTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::Start => "start",
            ReloadTrigger::Signal => "signal",
            ReloadTrigger::Watch => "watch",
            ReloadTrigger::Admin => "admin",
        }
    }
}

/// The outcome of the last reload attempt, for `/api/v1/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub at: Option<String>,
    pub trigger: ReloadTrigger,
    pub errors: Vec<ConfigError>,
}

/// This replica among several on one PostgreSQL store (SPEC §8): the
/// change sequence and replica table, the timings, and what the follower
/// last found (for `/readyz` and `/api/v1/status`).
#[derive(Debug)]
pub struct Cluster {
    pub replication: Arc<dyn Replication>,
    /// How long a revocation waits for every live replica to apply it.
    pub ack_timeout: Duration,
    /// How long a replica serves from memory without the store.
    pub lease: Duration,
    status: Mutex<ReplicaStatus>,
}

/// What the follower last found, as `/api/v1/status` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicaStatus {
    pub name: String,
    /// The highest change sequence number applied here.
    pub applied: u64,
    /// The highest one known to exist.
    pub latest: u64,
    pub store_reachable: bool,
    /// Why this replica is not ready (empty when it is).
    pub not_ready: Vec<String>,
}

impl Cluster {
    pub fn new(replication: Arc<dyn Replication>, ack_timeout: Duration, lease: Duration) -> Self {
        let status = ReplicaStatus {
            name: replication.replica().to_string(),
            store_reachable: true,
            ..ReplicaStatus::default()
        };
        Cluster {
            replication,
            ack_timeout,
            lease,
            status: Mutex::new(status),
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        lock(&self.status).clone()
    }

    pub fn set_status(&self, status: ReplicaStatus) {
        *lock(&self.status) = status;
    }

    /// Waits until every other live replica has applied the change
    /// sequence as it stands now, for at most `ack_timeout`; returns those
    /// that had not, by name (empty: all did). Called right after a
    /// revocation is stored and applied here. An error is the store's, as
    /// text for the log.
    pub async fn wait_applied(&self) -> Result<Vec<String>, String> {
        let r = Arc::clone(&self.replication);
        let target = blocking(move || r.latest_seq()).await?;
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            let r = Arc::clone(&self.replication);
            let behind = blocking(move || r.behind(target, lease_ms)).await?;
            if behind.is_empty() {
                return Ok(Vec::new());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(behind.into_iter().map(|r| r.name).collect());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}

/// Store work on the blocking pool; an error as text.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("store task failed: {e}")),
    }
}

#[derive(Debug)]
pub struct Shared {
    published: Arc<Published>,
    /// Writes token values into `published`.
    tokens: TokenStore,
    store: Arc<dyn Store>,
    /// Encrypts run-time token values at rest.
    master: MasterKey,
    /// API keys (the keys declared in YAML are in the snapshot).
    keys: KeyIndex,
    /// Held by every key change (revoke, roll, picking up keys written by
    /// another process) and by the publish of a config load, across its
    /// check, store write and index update, so the last-admin-key rule and
    /// the revoke/roll race are decided on a state nobody else is
    /// changing. Never held across an `.await`.
    key_writes: Mutex<()>,
    reload: Mutex<ReloadStatus>,
    /// `None` when the proxy listener is plain HTTP.
    tls: Mutex<Option<TlsStatus>>,
    /// The shared proxy listener's bound address, once bound (the config
    /// may ask for port 0): the console builds connector URLs from it.
    proxy_addr: std::sync::OnceLock<std::net::SocketAddr>,
    metrics: Metrics,
    /// `Some` with a PostgreSQL store.
    cluster: Option<Cluster>,
    next_request: AtomicU64,
    request_seed: u64,
}

impl Shared {
    pub fn new(published: Arc<Published>, store: Arc<dyn Store>, master: MasterKey) -> Self {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a fallback seed wants the fast-changing low 64 bits of the nanoseconds"
        )]
        let seed = getrandom::u64().unwrap_or_else(|_| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
        Shared {
            tokens: TokenStore::new(Arc::clone(&published) as Arc<dyn crate::tokens::ValueCell>),
            published,
            store,
            master,
            keys: KeyIndex::new(),
            key_writes: Mutex::new(()),
            reload: Mutex::new(ReloadStatus {
                ok: true,
                at: Some(now_rfc3339()),
                trigger: ReloadTrigger::Start,
                errors: Vec::new(),
            }),
            tls: Mutex::new(None),
            proxy_addr: std::sync::OnceLock::new(),
            metrics: Metrics::new(),
            cluster: None,
            next_request: AtomicU64::new(1),
            request_seed: seed,
        }
    }

    /// Joins this gateway to a cluster of replicas (before it is shared).
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The replicas this one runs with; `None` with a SQLite store.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// The store, owned: for work that outlives a borrow of `self` (the
    /// blocking pool, a catalog change's commit).
    pub fn store_handle(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The published snapshot: load once per request and keep it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load()
    }

    /// The cell a config load publishes into.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// The token value writer (file re-reads, run-time values).
    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    /// The API key index (the keys declared in YAML are in the snapshot).
    pub fn keys(&self) -> &KeyIndex {
        &self.keys
    }

    /// The store, for the audit log and the admin API's reads of it.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// What a run-time token value write needs.
    pub fn runtime_values(&self) -> Runtime<'_> {
        Runtime {
            tokens: &self.tokens,
            master: &self.master,
            store: self.store.as_ref(),
        }
    }

    /// What building a snapshot needs from the store and the metrics.
    pub fn build_context(&self) -> BuildContext<'_> {
        BuildContext {
            master: &self.master,
            store: self.store.as_ref(),
            refresh_metrics: &self.metrics.token_refresh,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn reload_status(&self) -> ReloadStatus {
        lock(&self.reload).clone()
    }

    pub fn set_reload_status(&self, status: ReloadStatus) {
        *lock(&self.reload) = status;
    }

    /// Records where the proxy listener is bound (once; later calls are
    /// ignored: the listener is never rebound).
    pub fn set_proxy_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.proxy_addr.set(addr);
    }

    pub fn proxy_addr(&self) -> Option<std::net::SocketAddr> {
        self.proxy_addr.get().copied()
    }

    pub fn tls_status(&self) -> Option<TlsStatus> {
        lock(&self.tls).clone()
    }

    /// Updates the TLS status (creating it on first use).
    pub fn update_tls_status(&self, change: impl FnOnce(&mut TlsStatus)) {
        let mut st = lock(&self.tls);
        change(st.get_or_insert_with(TlsStatus::default));
    }

    /// A fresh request id: unique per process run (random seed + counter),
    /// cheap, and not a secret.
    pub fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", self.request_seed, n)
    }
}

impl KeyContext for Shared {
    fn index(&self) -> &KeyIndex {
        &self.keys
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn writes(&self) -> MutexGuard<'_, ()> {
        lock(&self.key_writes)
    }

    fn view(&self) -> KeyView {
        let snap = self.published.load();
        KeyView {
            config: Arc::clone(&snap.config),
            declared: Arc::clone(&snap.declared_keys),
        }
    }
}
