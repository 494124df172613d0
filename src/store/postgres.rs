//! PostgreSQL: the store several replicas share (SPEC §8).
//!
//! The [`Store`] and [`Replication`] traits are blocking and are called
//! from the blocking pool, from plain threads and now and then straight
//! from a tokio worker; the driver (`tokio-postgres`) is async. So a
//! [`PgStore`] owns a small runtime of its own (two threads named
//! `keygate-pg`): the connections' tasks live there, each call is spawned
//! onto it with owned arguments and the caller waits on a channel (inside
//! `block_in_place` on a multi-thread worker). Nothing ever calls
//! `block_on` on a runtime, so no caller can hit "cannot start a runtime
//! from within a runtime", and dropping the store anywhere is safe (its
//! runtime is shut down in the background).
//!
//! Connections come from a pool bounded by `pool_size`: a checkout waits at
//! most [`CHECKOUT_WAIT`], a connect at most [`CONNECT_TIMEOUT`], a whole
//! call at most [`CALL_TIMEOUT`] (its connection is then dropped, never
//! reused mid-statement). A closed connection is discarded and replaced on
//! the next checkout. [`PgStore::listen`] uses a connection of its own.
//!
//! # The URL and TLS
//!
//! The URL is libpq's form, `postgres://user:password@host:port/db?…`
//! (the `key=value` form is refused: its parse errors may quote the text).
//! `sslmode` and `sslrootcert` are taken out before the rest goes to
//! `tokio-postgres`, whose parser knows neither `verify-full` nor
//! `sslrootcert`:
//!
//! - `sslmode=verify-full`: TLS (rustls, ring), the certificate checked
//!   against the host name in the URL, trusted roots from `sslrootcert`
//!   (a PEM file) or, without it (or with `sslrootcert=system`), the
//!   webpki roots (public CAs, as a managed database's certificate).
//! - `sslmode=disable`: plaintext.
//! - `require`, `prefer`, `allow`, `verify-ca`: refused. They accept a
//!   certificate for any name (or none at all), so an attacker on the path
//!   could read the password and every key hash.
//! - no `sslmode`: `disable` when every host is local (a Unix socket,
//!   `localhost` or a loopback address), otherwise refused: keygate asks for
//!   an explicit choice rather than send a password in the clear by default.
//!
//! # Change sequence
//!
//! Every write to keys, token values or catalog objects appends one
//! `changes` row per changed subject in its own transaction, under an
//! advisory lock taken after its other writes (so seq order is commit
//! order), and announces each seq with `NOTIFY keygate_changes` (delivered
//! at commit). Usage, audit, purges and meta do not append: replicas do
//! not serve them from memory. Audit ids are taken under the same lock, so
//! they too commit in order (the audit list pages by id).
//!
//! Seqs have no holes: a writer takes `max + 1` under the lock, and a
//! rolled-back writer's seq is taken again by the next one. Only
//! [`Replication::prune`] removes entries, and only a prefix, never the
//! newest; so an entry after `n` other than `n + 1` means `n + 1` was
//! pruned.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, Row, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    AuditRecord, Changed, ObjectWrite, Pruned, ReplicaRow, Replication, Store, StoreError,
    StoredAudit, StoredChange, StoredKey, StoredObject, StoredTokenValue, StoredUsage, Usage,
};
use crate::config::source;

const MIGRATIONS: &[&str] = &[include_str!("pg_migrations/0001_schema.sql")];

/// Advisory lock held while migrating: two replicas starting on a fresh
/// database take turns (the keys spell `kg` and a purpose).
const MIGRATION_LOCK: i64 = 0x6b67_0001;
/// Advisory lock held from allocating change seqs or audit ids to commit,
/// so seq and id order is commit order: "everything up to seq" is a
/// consistent point, and an audit reader paging by id never passes an id
/// that has yet to commit.
const CHANGES_LOCK: i64 = 0x6b67_0002;

/// The channel every change seq is announced on (payload: the seq).
pub const CHANGES_CHANNEL: &str = "keygate_changes";
/// The channel a heartbeat is announced on (payload: the replica name):
/// for tools watching replicas; a revocation waiting for acks polls the
/// replica table (every 2–25 ms) instead of holding a listening connection.
pub const ACKS_CHANNEL: &str = "keygate_acks";

/// How long a checkout waits for a free connection.
pub const CHECKOUT_WAIT: Duration = Duration::from_secs(5);
/// How long a new connection (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take, checkout included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A `tokio-postgres` error whose text includes its cause (the driver's own
/// `Display` says only "db error"). Neither names the URL.
#[derive(Debug)]
pub struct PgError(pub tokio_postgres::Error);

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl PgError {
    /// Serialization failure, deadlock or lock timeout: another writer
    /// held what this one needed; trying again may work.
    pub fn is_busy(&self) -> bool {
        self.0.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE
        })
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(PgError(e))
    }
}

#[derive(Clone)]
enum Tls {
    Off,
    Verify(MakeRustlsConnect),
}

/// Where to connect: the parsed URL (password inside, never printed) and
/// a printable `host:port/db` label for messages.
struct Target {
    config: tokio_postgres::Config,
    tls: Tls,
    label: String,
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(h) => {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

const USE_VERIFY_FULL: &str = "use sslmode=verify-full (with sslrootcert=/path/to/ca.pem for a private CA) or, on a trusted network only, sslmode=disable";

impl Target {
    /// Parses `url` (see the module doc for the TLS rules). Errors never
    /// quote the URL.
    fn parse(url: &str) -> Result<Target, StoreError> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::PgUrl(
                "expected a URL of the form postgres://user:password@host:port/database?sslmode=verify-full"
                    .into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = None;
        let mut rootcert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| StoreError::PgUrl(format!("`{k}` is not valid UTF-8")))
            };
            match k {
                // An address the local-only rule below cannot see: with
                // `host=localhost`, a password would go in clear to it.
                "hostaddr" => {
                    return Err(StoreError::PgUrl(
                        "`hostaddr` is not supported: name the server in the URL's host".into(),
                    ));
                }
                "sslmode" => sslmode = Some(decoded()?),
                "sslrootcert" => rootcert = Some(decoded()?),
                _ => rest.push(pair),
            }
        }
        let stripped = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = stripped
            .parse()
            .map_err(|e| StoreError::PgUrl(PgError(e).to_string()))?;
        let hosts = config.get_hosts().to_vec();
        let label = label(&config);
        let tls = match sslmode.as_deref() {
            None if hosts.iter().all(is_local) => Tls::Off,
            None => {
                return Err(StoreError::PgUrl(format!(
                    "no sslmode for the non-local server {label}: {USE_VERIFY_FULL}"
                )));
            }
            Some("disable") => Tls::Off,
            Some("verify-full") => Tls::Verify(rustls_connector(rootcert.as_deref())?),
            Some(m @ ("require" | "prefer" | "allow" | "verify-ca")) => {
                return Err(StoreError::PgUrl(format!(
                    "sslmode={m} does not check that the certificate names the server, so anyone on the path could read the password: {USE_VERIFY_FULL}"
                )));
            }
            Some(m) => {
                return Err(StoreError::PgUrl(format!(
                    "unknown sslmode `{m}`: {USE_VERIFY_FULL}"
                )));
            }
        };
        config.ssl_mode(match tls {
            Tls::Off => SslMode::Disable,
            Tls::Verify(_) => SslMode::Require,
        });
        config.connect_timeout(CONNECT_TIMEOUT);
        // A silent network (no RST, no FIN) ends a connection in about
        // 25s, so a LISTEN connection cut off notices before a lease ends.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("keygate");
        }
        Ok(Target { config, tls, label })
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let connect = async {
            match &self.tls {
                Tls::Off => {
                    let (client, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
                Tls::Verify(make) => {
                    let (client, conn) = self.config.connect(make.clone()).await?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
            }
        };
        self.bounded_connect(connect).await
    }

    /// A connection whose notifications are forwarded (seqs on
    /// [`CHANGES_CHANNEL`]); the receiver ends with the connection.
    async fn listen(&self) -> Result<mpsc::Receiver<u64>, StoreError> {
        let (tx, rx) = mpsc::channel(1024);
        let connect = async {
            match &self.tls {
                Tls::Off => {
                    let (client, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                    Ok(start_forwarding(client, conn, tx))
                }
                Tls::Verify(make) => {
                    let (client, conn) = self.config.connect(make.clone()).await?;
                    Ok(start_forwarding(client, conn, tx))
                }
            }
        };
        let client = self.bounded_connect(connect).await?;
        tokio::time::timeout(
            CALL_TIMEOUT,
            client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}")),
        )
        .await
        .map_err(|_| StoreError::Timeout(CALL_TIMEOUT))??;
        // `client` dropped here; the forwarding task holds its own handle.
        Ok(rx)
    }

    async fn bounded_connect<T>(
        &self,
        connect: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        // The driver's connect timeout covers TCP only; this bounds the
        // TLS handshake and authentication too.
        match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(source)) => Err(StoreError::PgConnect {
                target: self.label.clone(),
                source: PgError(source),
            }),
            Err(_) => Err(StoreError::Timeout(CONNECT_TIMEOUT)),
        }
    }
}

/// `host:port/db` (hosts comma-separated), for messages: no user, no
/// password.
fn label(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let db = config
        .get_dbname()
        .or_else(|| config.get_user())
        .unwrap_or("postgres");
    format!("{}/{db}", hosts.join(","))
}

fn rustls_connector(rootcert: Option<&str>) -> Result<MakeRustlsConnect, StoreError> {
    let roots = match rootcert {
        None | Some("system") => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> =
                crate::upstream::load_ca_file(std::path::Path::new(path))
                    .map_err(|e| StoreError::PgTls(format!("sslrootcert: {e}")))?;
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| StoreError::PgTls(format!("sslrootcert {path}: {e}")))?;
            }
            roots
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::PgTls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Runs a pooled connection until it closes.
async fn drive<F>(conn: F)
where
    F: Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %PgError(e), "a PostgreSQL connection ended");
    }
}

/// Spawns the task that polls a LISTEN connection and forwards each
/// change seq; it holds the client (a connection ends when its last
/// client is gone) until the connection ends or the receiver is dropped.
fn start_forwarding<S, T>(
    client: Client,
    mut conn: tokio_postgres::Connection<S, T>,
    tx: mpsc::Sender<u64>,
) -> Arc<Client>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(client);
    let keep = Arc::clone(&client);
    tokio::spawn(async move {
        let _keep = keep;
        loop {
            let message = tokio::select! {
                () = tx.closed() => break,
                m = std::future::poll_fn(|cx| conn.poll_message(cx)) => m,
            };
            match message {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANGES_CHANNEL => {
                    if let Ok(seq) = n.payload().parse::<u64>()
                        && tx.send(seq).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %PgError(e), "the PostgreSQL LISTEN connection ended");
                    break;
                }
                None => break,
            }
        }
    });
    client
}

/// A checked-out connection; its permit goes back when it is dropped.
struct Conn {
    client: Client,
    _permit: OwnedSemaphorePermit,
}

struct Pool {
    target: Target,
    size: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    async fn get(&self) -> Result<Conn, StoreError> {
        let permit = tokio::time::timeout(CHECKOUT_WAIT, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| StoreError::PoolTimeout {
                target: self.target.label.clone(),
                waited: CHECKOUT_WAIT,
            })?
            .map_err(|_| StoreError::Runtime("the connection pool is closed".into()))?;
        loop {
            let next = self.idle.lock().map_err(|_| StoreError::Poisoned)?.pop();
            match next {
                Some(client) if !client.is_closed() => {
                    return Ok(Conn {
                        client,
                        _permit: permit,
                    });
                }
                Some(_closed) => {}
                None => break,
            }
        }
        Ok(Conn {
            client: self.target.connect().await?,
            _permit: permit,
        })
    }

    /// Returns a connection after a call that ran to its end (even with an
    /// error); one dropped mid-call is never put back.
    fn put_back(&self, conn: Conn) {
        if !conn.client.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(conn.client);
        }
    }
}

struct Inner {
    pool: Pool,
    replica: String,
}

/// Owns the store's runtime; shuts it down without blocking, so a
/// `PgStore` may be dropped on a tokio worker.
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The PostgreSQL store (see the module doc).
pub struct PgStore {
    inner: Arc<Inner>,
    rt: Rt,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.pool.target.label)
            .field("replica", &self.inner.replica)
            .field("pool_size", &self.inner.pool.size)
            .finish_non_exhaustive()
    }
}

/// `<hostname>-<pid>`: unique among replicas on one database without any
/// configuration, and recognisable in a `202` or a log line.
fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keygate".to_string());
    format!("{host}-{}", std::process::id())
}

/// Waits for a call's result. On a multi-thread runtime's worker the wait
/// is inside `block_in_place`, so the worker's other tasks move elsewhere.
fn wait<T>(rx: std::sync::mpsc::Receiver<T>) -> Option<T> {
    let recv = move || rx.recv().ok();
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
        {
            #[expect(
                clippy::disallowed_methods,
                reason = "the ban is for its panic on a current-thread runtime, which the flavor check above rules out; elsewhere this blocks plainly"
            )]
            tokio::task::block_in_place(recv)
        }
        _ => recv(),
    }
}

impl PgStore {
    /// Connects (bounded pool), applies migrations under an advisory lock.
    /// Blocking; callable from any thread, including a tokio worker. Errors
    /// name host/db, never the password.
    pub fn open(cfg: &crate::config::Postgres) -> Result<PgStore, StoreError> {
        let url = source::read(&cfg.url).map_err(|e| StoreError::PgUrl(e.to_string()))?;
        let target = Target::parse(url.expose())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("keygate-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Runtime(e.to_string()))?;
        let size = cfg.pool_size.max(1);
        let store = PgStore {
            inner: Arc::new(Inner {
                pool: Pool {
                    target,
                    size,
                    permits: Arc::new(Semaphore::new(size)),
                    idle: Mutex::new(Vec::new()),
                },
                replica: cfg.replica.clone().unwrap_or_else(default_replica_name),
            }),
            rt: Rt(Some(rt)),
        };
        store.run(|c, _| Box::pin(migrate(c)))?;
        Ok(store)
    }

    /// One LISTEN connection (not from the pool): yields each change seq
    /// announced by NOTIFY; the receiver ends when that connection drops
    /// (the caller calls `listen()` again and catches up from its
    /// sequence). LISTEN is in effect when this returns, so a catch-up read
    /// made afterwards misses nothing.
    pub async fn listen(&self) -> Result<mpsc::Receiver<u64>, StoreError> {
        let inner = Arc::clone(&self.inner);
        let handle = self.handle()?;
        handle
            .spawn(async move { inner.pool.target.listen().await })
            .await
            .map_err(|_| StoreError::Runtime("the PostgreSQL runtime stopped".into()))?
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.rt
            .0
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| StoreError::Runtime("the PostgreSQL runtime stopped".into()))
    }

    /// Runs `f` with a pooled connection on the store's runtime and waits
    /// for it (at most [`CALL_TIMEOUT`]). `f` gets the connection and this
    /// replica's name.
    fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Client, &'c str) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle()?.spawn(async move {
            let call = async {
                let mut conn = inner.pool.get().await?;
                let r = f(&mut conn.client, &inner.replica).await;
                inner.pool.put_back(conn);
                r
            };
            let r = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .unwrap_or(Err(StoreError::Timeout(CALL_TIMEOUT)));
            // The caller is gone only if its thread died; nothing to tell.
            drop(tx.send(r));
        });
        wait(rx)
            .unwrap_or_else(|| Err(StoreError::Runtime("the PostgreSQL runtime stopped".into())))
    }

    /// Every row `sql` (without parameters) selects, each read by `from`:
    /// the whole-table loads at start.
    fn select_all<T: Send + 'static>(
        &self,
        sql: String,
        from: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.run(move |c, _| {
            Box::pin(async move { c.query(&sql, &[]).await?.iter().map(from).collect() })
        })
    }
}

async fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let step = |source| StoreError::PgMigration {
            version,
            source: PgError(source),
        };
        tx.batch_execute(sql).await.map_err(step)?;
        let v = i32::try_from(version).unwrap_or(i32::MAX);
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&v])
            .await
            .map_err(step)?;
    }
    tx.commit().await?;
    Ok(())
}

/// A stored `u64` as a BIGINT; saturates rather than wraps, for the reason
/// `sqlite::int` gives (the order of times is kept).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_int(v: Option<u64>) -> Option<i64> {
    v.map(int)
}

/// Column `idx` as a `u64`; a negative value is a damaged row (keygate
/// never writes one), reported, not wrapped to a far-future time.
fn col_u64(r: &Row, idx: usize) -> Result<u64, StoreError> {
    let v: i64 = r.try_get(idx)?;
    u64::try_from(v).map_err(|_| StoreError::Damaged(format!("column {idx} holds {v}")))
}

fn col_opt_u64(r: &Row, idx: usize) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = r.try_get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| StoreError::Damaged(format!("column {idx} holds {v}"))))
        .transpose()
}

const KEY_COLUMNS: &str = "id, digest, name, client, roles, display_prefix, created_at, expires_at, revoked_at, rolled_from";

fn key_from(r: &Row) -> Result<StoredKey, StoreError> {
    let id: String = r.try_get(0)?;
    let digest: Vec<u8> = r.try_get(1)?;
    let roles: Option<String> = r.try_get(4)?;
    Ok(StoredKey {
        digest: digest
            .try_into()
            .map_err(|_| StoreError::MalformedDigest { id: id.clone() })?,
        roles: roles
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|source| StoreError::MalformedRoles {
                id: id.clone(),
                source,
            })?,
        name: r.try_get(2)?,
        client: r.try_get(3)?,
        display_prefix: r.try_get(5)?,
        created_ms: col_u64(r, 6)?,
        expires_ms: col_opt_u64(r, 7)?,
        revoked_ms: col_opt_u64(r, 8)?,
        rolled_from: r.try_get(9)?,
        id,
    })
}

fn token_value_from(r: &Row) -> Result<StoredTokenValue, StoreError> {
    Ok(StoredTokenValue {
        name: r.try_get(0)?,
        nonce: r.try_get(1)?,
        ciphertext: r.try_get(2)?,
        version: col_u64(r, 3)?,
        updated_ms: col_u64(r, 4)?,
    })
}

fn object_from(r: &Row) -> Result<StoredObject, StoreError> {
    Ok(StoredObject {
        section: r.try_get(0)?,
        name: r.try_get(1)?,
        body: r.try_get(2)?,
        version: col_u64(r, 3)?,
        created_ms: col_u64(r, 4)?,
        updated_ms: col_u64(r, 5)?,
    })
}

async fn insert_key(tx: &Transaction<'_>, k: &StoredKey) -> Result<(), StoreError> {
    let roles = k
        .roles
        .as_ref()
        .map(|r| serde_json::to_string(r).unwrap_or_default());
    tx.execute(
        "INSERT INTO api_keys (id, digest, name, client, roles, display_prefix, created_at, expires_at, revoked_at, rolled_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &k.id,
            &&k.digest[..],
            &k.name,
            &k.client,
            &roles,
            &k.display_prefix,
            &int(k.created_ms),
            &opt_int(k.expires_ms),
            &opt_int(k.revoked_ms),
            &k.rolled_from,
        ],
    )
    .await?;
    Ok(())
}

/// Appends `a` inside `tx`; returns its id. The id comes from the
/// table's sequence only once [`CHANGES_LOCK`] is held (until commit): a
/// sequence hands numbers out at call time, not commit time, so without
/// the lock a replica could commit id 7 after another's id 8 was read,
/// and `GET /api/v1/audit?cursor=8` would never show 7. Call it after the
/// transaction's other writes, as [`append_changes`]. An id taken by a
/// transaction that rolls back is a hole, which a cursor steps over.
async fn insert_audit(tx: &Transaction<'_>, a: &AuditRecord) -> Result<u64, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGES_LOCK])
        .await?;
    let row = tx
        .query_one(
            "INSERT INTO audit_log (at_ms, actor_client, actor_key, action, object_kind, object_name,
                 version_before, version_after, fingerprint_before, fingerprint_after, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &int(a.at_ms),
                &a.actor_client,
                &a.actor_key,
                &a.action,
                &a.object_kind,
                &a.object_name,
                &opt_int(a.version_before),
                &opt_int(a.version_after),
                &a.fingerprint_before,
                &a.fingerprint_after,
                &a.detail,
            ],
        )
        .await?;
    col_u64(&row, 0)
}

/// Unrevoked keys rolled from `id`, transitively (`UNION` also stops a
/// cycle, should one ever be written).
async fn successors_of(tx: &Transaction<'_>, id: &str) -> Result<Vec<String>, StoreError> {
    let rows = tx
        .query(
            "WITH RECURSIVE chain(id) AS (
                 SELECT id FROM api_keys WHERE rolled_from = $1
                 UNION
                 SELECT k.id FROM api_keys k JOIN chain c ON k.rolled_from = c.id
             )
             SELECT k.id FROM api_keys k JOIN chain c ON k.id = c.id
             WHERE k.revoked_at IS NULL AND k.id <> $1 ORDER BY k.created_at, k.id",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

/// How a [`Changed`] is stored: `(kind, subject, section)`.
fn change_columns(c: &Changed) -> (&'static str, &str, Option<&str>) {
    match c {
        Changed::Key(id) => ("key", id, None),
        Changed::TokenValue(name) => ("token_value", name, None),
        Changed::Object { section, name } => ("object", name, Some(section)),
    }
}

/// Appends `changed` to the change sequence inside `tx` and announces
/// each seq (NOTIFY is delivered at commit). Call it after the
/// transaction's other writes: the lock it takes is held until commit, so
/// seqs commit in order, and holding it only for the tail keeps writers
/// from queueing on each other's row work.
async fn append_changes(
    tx: &Transaction<'_>,
    origin: &str,
    changed: &[Changed],
) -> Result<(), StoreError> {
    if changed.is_empty() {
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGES_LOCK])
        .await?;
    let mut kinds = Vec::with_capacity(changed.len());
    let mut subjects = Vec::with_capacity(changed.len());
    let mut sections = Vec::with_capacity(changed.len());
    for c in changed {
        let (kind, subject, section) = change_columns(c);
        kinds.push(kind);
        subjects.push(subject);
        sections.push(section);
    }
    let rows = tx
        .query(
            "WITH last AS (SELECT COALESCE(max(seq), 0) AS seq FROM changes)
             INSERT INTO changes (seq, kind, subject, section, origin)
             SELECT last.seq + t.n, t.kind, t.subject, t.section, $4
             FROM last, unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(kind, subject, section, n)
             RETURNING seq",
            &[&kinds, &subjects, &sections, &origin],
        )
        .await?;
    let seqs: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<_, i64>(0).map(|s| s.to_string()))
        .collect::<Result<_, _>>()?;
    tx.execute(
        "SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s",
        &[&CHANGES_CHANNEL, &seqs],
    )
    .await?;
    Ok(())
}

impl Store for PgStore {
    fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.select_all(
            format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
            key_from,
        )
    }

    fn insert_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                insert_key(&tx, &key).await?;
                append_changes(&tx, origin, &[Changed::Key(key.id.clone())]).await?;
                tx.commit().await?;
                Ok(())
            })
        })
    }

    fn revoke_chain(&self, id: &str, at_ms: u64) -> Result<Option<Vec<String>>, StoreError> {
        let id = id.to_string();
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let update =
                    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
                if tx.execute(update, &[&id, &int(at_ms)]).await? == 0 {
                    return Ok(None); // dropping the transaction rolls it back
                }
                let successors = successors_of(&tx, &id).await?;
                for s in &successors {
                    tx.execute(update, &[s, &int(at_ms)]).await?;
                }
                let mut ids = vec![id];
                ids.extend(successors);
                let changed: Vec<Changed> = ids.iter().cloned().map(Changed::Key).collect();
                append_changes(&tx, origin, &changed).await?;
                tx.commit().await?;
                Ok(Some(ids))
            })
        })
    }

    fn live_successors(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let id = id.to_string();
        self.run(move |c, _| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let s = successors_of(&tx, &id).await?;
                tx.commit().await?;
                Ok(s)
            })
        })
    }

    fn roll(
        &self,
        old_id: &str,
        old_expires_ms: u64,
        successor: &StoredKey,
    ) -> Result<bool, StoreError> {
        let old_id = old_id.to_string();
        let successor = successor.clone();
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                // A key is rolled once, also when two replicas roll it at
                // the same moment: the row lock orders them, and the check
                // after it (a statement of its own, so it sees what the
                // first committed) refuses the second.
                tx.query("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE", &[&old_id])
                    .await?;
                let rolled = tx
                    .query("SELECT 1 FROM api_keys WHERE rolled_from = $1", &[&old_id])
                    .await?;
                if !rolled.is_empty() {
                    return Ok(false);
                }
                let n = tx
                    .execute(
                        "UPDATE api_keys SET expires_at = $2
                         WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
                        &[&old_id, &int(old_expires_ms), &int(successor.created_ms)],
                    )
                    .await?;
                if n == 0 {
                    return Ok(false);
                }
                insert_key(&tx, &successor).await?;
                append_changes(
                    &tx,
                    origin,
                    &[Changed::Key(old_id), Changed::Key(successor.id.clone())],
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            })
        })
    }

    fn record_usage(&self, batch: &[Usage<'_>]) -> Result<(), StoreError> {
        // One row per key (ON CONFLICT may touch a row once per statement),
        // sorted so two replicas' batches lock shared rows in one order.
        let mut merged = std::collections::BTreeMap::<String, (i64, i64)>::new();
        for u in batch {
            let e = merged.entry(u.id.to_string()).or_insert((0, 0));
            e.0 = e.0.max(int(u.last_used_ms));
            e.1 = e.1.saturating_add(int(u.uses));
        }
        if merged.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(merged.len());
        let mut last = Vec::with_capacity(merged.len());
        let mut uses = Vec::with_capacity(merged.len());
        for (id, (l, n)) in merged {
            ids.push(id);
            last.push(l);
            uses.push(n);
        }
        self.run(move |c, _| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO key_usage (id, last_used_at, uses)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
                     ON CONFLICT (id) DO UPDATE SET
                       last_used_at = GREATEST(key_usage.last_used_at, EXCLUDED.last_used_at),
                       uses = key_usage.uses + EXCLUDED.uses",
                    &[&ids, &last, &uses],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn load_usage(&self) -> Result<Vec<StoredUsage>, StoreError> {
        self.run(|c, _| {
            Box::pin(async move {
                let rows = c
                    .query("SELECT id, last_used_at, uses FROM key_usage", &[])
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredUsage {
                            id: r.try_get(0)?,
                            last_used_ms: col_u64(r, 1)?,
                            uses: col_u64(r, 2)?,
                        })
                    })
                    .collect()
            })
        })
    }

    fn purge_ended_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.run(move |c, _| {
            Box::pin(async move {
                let b = int(before_ms);
                let tx = c.transaction().await?;
                tx.execute(
                    "DELETE FROM key_usage WHERE id IN (SELECT id FROM api_keys
                       WHERE (revoked_at IS NOT NULL AND revoked_at < $1) OR (expires_at IS NOT NULL AND expires_at < $1))",
                    &[&b],
                )
                .await?;
                let n = tx
                    .execute(
                        "DELETE FROM api_keys WHERE (revoked_at IS NOT NULL AND revoked_at < $1)
                           OR (expires_at IS NOT NULL AND expires_at < $1)",
                        &[&b],
                    )
                    .await?;
                tx.commit().await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            })
        })
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.run(move |c, _| {
            Box::pin(async move {
                let row = c
                    .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
                    .await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?)
            })
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.run(move |c, _| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&key, &value],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.run(move |c, _| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &value],
                )
                .await?;
                let row = c
                    .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
                    .await?;
                Ok(row.try_get(0)?)
            })
        })
    }

    fn put_token_value(&self, v: &StoredTokenValue) -> Result<(), StoreError> {
        let v = v.clone();
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute(
                    "INSERT INTO token_values (name, nonce, ciphertext, version, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
                       version = GREATEST(EXCLUDED.version, token_values.version + 1),
                       updated_at = EXCLUDED.updated_at",
                    &[&v.name, &v.nonce, &v.ciphertext, &int(v.version), &int(v.updated_ms)],
                )
                .await?;
                append_changes(&tx, origin, &[Changed::TokenValue(v.name.clone())]).await?;
                tx.commit().await?;
                Ok(())
            })
        })
    }

    fn load_token_values(&self) -> Result<Vec<StoredTokenValue>, StoreError> {
        self.select_all(
            "SELECT name, nonce, ciphertext, version, updated_at FROM token_values ORDER BY name"
                .into(),
            token_value_from,
        )
    }

    fn delete_token_value(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute("DELETE FROM token_values WHERE name = $1", &[&name])
                    .await?;
                append_changes(&tx, origin, &[Changed::TokenValue(name.clone())]).await?;
                tx.commit().await?;
                Ok(())
            })
        })
    }

    fn load_objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        self.select_all(
            "SELECT section, name, body, version, created_at, updated_at
             FROM catalog_objects ORDER BY section, name"
                .into(),
            object_from,
        )
    }

    fn load_retired(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.run(|c, _| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT section, name, version FROM catalog_retired ORDER BY section, name",
                        &[],
                    )
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, col_u64(r, 2)?)))
                    .collect()
            })
        })
    }

    fn write_objects(
        &self,
        writes: &[ObjectWrite],
        audit: &AuditRecord,
    ) -> Result<Option<u64>, StoreError> {
        let writes = writes.to_vec();
        let audit = audit.clone();
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let mut changed = Vec::with_capacity(writes.len());
                for w in &writes {
                    let n = match w {
                        ObjectWrite::Put {
                            object: o,
                            expected: None,
                        } => {
                            tx.execute(
                                "INSERT INTO catalog_objects (section, name, body, version, created_at, updated_at)
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (section, name) DO NOTHING",
                                &[
                                    &o.section,
                                    &o.name,
                                    &o.body,
                                    &int(o.version),
                                    &int(o.created_ms),
                                    &int(o.updated_ms),
                                ],
                            )
                            .await?
                        }
                        ObjectWrite::Put {
                            object: o,
                            expected: Some(v),
                        } => {
                            tx.execute(
                                "UPDATE catalog_objects SET body = $3, version = $4, updated_at = $5
                                 WHERE section = $1 AND name = $2 AND version = $6",
                                &[
                                    &o.section,
                                    &o.name,
                                    &o.body,
                                    &int(o.version),
                                    &int(o.updated_ms),
                                    &int(*v),
                                ],
                            )
                            .await?
                        }
                        ObjectWrite::Delete {
                            section,
                            name,
                            expected,
                        } => {
                            let n = tx
                                .execute(
                                    "DELETE FROM catalog_objects WHERE section = $1 AND name = $2 AND version = $3",
                                    &[section, name, &int(*expected)],
                                )
                                .await?;
                            tx.execute(
                                "INSERT INTO catalog_retired (section, name, version) VALUES ($1, $2, $3)
                                 ON CONFLICT (section, name) DO UPDATE SET version = EXCLUDED.version",
                                &[section, name, &int(*expected)],
                            )
                            .await?;
                            n
                        }
                    };
                    if n != 1 {
                        // Dropping the transaction rolls every earlier step back.
                        return Ok(None);
                    }
                    let (section, name) = match w {
                        ObjectWrite::Put { object, .. } => (&object.section, &object.name),
                        ObjectWrite::Delete { section, name, .. } => (section, name),
                    };
                    changed.push(Changed::Object {
                        section: section.clone(),
                        name: name.clone(),
                    });
                }
                let id = insert_audit(&tx, &audit).await?;
                append_changes(&tx, origin, &changed).await?;
                tx.commit().await?;
                Ok(Some(id))
            })
        })
    }

    fn append_audit(&self, rec: &AuditRecord) -> Result<u64, StoreError> {
        let rec = rec.clone();
        self.run(move |c, _| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let id = insert_audit(&tx, &rec).await?;
                tx.commit().await?;
                Ok(id)
            })
        })
    }

    fn list_audit(
        &self,
        since_ms: Option<u64>,
        after_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c, _| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id, at_ms, actor_client, actor_key, action, object_kind, object_name,
                                version_before, version_after, fingerprint_before, fingerprint_after, detail
                         FROM audit_log WHERE id > $1 AND at_ms >= $2 ORDER BY id LIMIT $3",
                        &[
                            &int(after_id.unwrap_or(0)),
                            &int(since_ms.unwrap_or(0)),
                            &limit,
                        ],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredAudit {
                            id: col_u64(r, 0)?,
                            record: AuditRecord {
                                at_ms: col_u64(r, 1)?,
                                actor_client: r.try_get(2)?,
                                actor_key: r.try_get(3)?,
                                action: r.try_get(4)?,
                                object_kind: r.try_get(5)?,
                                object_name: r.try_get(6)?,
                                version_before: col_opt_u64(r, 7)?,
                                version_after: col_opt_u64(r, 8)?,
                                fingerprint_before: r.try_get(9)?,
                                fingerprint_after: r.try_get(10)?,
                                detail: r.try_get(11)?,
                            },
                        })
                    })
                    .collect()
            })
        })
    }

    fn purge_audit_before(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.run(move |c, _| {
            Box::pin(async move {
                let n = c
                    .execute("DELETE FROM audit_log WHERE at_ms < $1", &[&int(before_ms)])
                    .await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            })
        })
    }
}

impl Replication for PgStore {
    fn replica(&self) -> &str {
        &self.inner.replica
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<StoredChange>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c, _| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT seq, kind, subject, section, origin FROM changes
                         WHERE seq > $1 ORDER BY seq LIMIT $2",
                        &[&int(after), &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let seq = col_u64(r, 0)?;
                        let kind: String = r.try_get(1)?;
                        let subject: String = r.try_get(2)?;
                        let section: Option<String> = r.try_get(3)?;
                        let changed = match (kind.as_str(), section) {
                            ("key", _) => Changed::Key(subject),
                            ("token_value", _) => Changed::TokenValue(subject),
                            ("object", Some(section)) => Changed::Object {
                                section,
                                name: subject,
                            },
                            _ => {
                                return Err(StoreError::Damaged(format!(
                                    "change {seq} has kind `{kind}`"
                                )));
                            }
                        };
                        Ok(StoredChange {
                            seq,
                            changed,
                            origin: r.try_get(4)?,
                        })
                    })
                    .collect()
            })
        })
    }

    fn latest_seq(&self) -> Result<u64, StoreError> {
        self.run(|c, _| {
            Box::pin(async move {
                let row = c
                    .query_one("SELECT COALESCE(max(seq), 0) FROM changes", &[])
                    .await?;
                col_u64(&row, 0)
            })
        })
    }

    fn load_key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let id = id.to_string();
        self.run(move |c, _| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"),
                        &[&id],
                    )
                    .await?;
                row.as_ref().map(key_from).transpose()
            })
        })
    }

    fn load_token_value(&self, name: &str) -> Result<Option<StoredTokenValue>, StoreError> {
        let name = name.to_string();
        self.run(move |c, _| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT name, nonce, ciphertext, version, updated_at FROM token_values WHERE name = $1",
                        &[&name],
                    )
                    .await?;
                row.as_ref().map(token_value_from).transpose()
            })
        })
    }

    fn load_object(
        &self,
        section: &str,
        name: &str,
    ) -> Result<Result<StoredObject, Option<u64>>, StoreError> {
        let (section, name) = (section.to_string(), name.to_string());
        self.run(move |c, _| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT section, name, body, version, created_at, updated_at
                         FROM catalog_objects WHERE section = $1 AND name = $2",
                        &[&section, &name],
                    )
                    .await?;
                if let Some(r) = row {
                    return Ok(Ok(object_from(&r)?));
                }
                let retired = c
                    .query_opt(
                        "SELECT version FROM catalog_retired WHERE section = $1 AND name = $2",
                        &[&section, &name],
                    )
                    .await?;
                Ok(Err(retired.map(|r| col_u64(&r, 0)).transpose()?))
            })
        })
    }

    fn heartbeat(&self, applied: u64) -> Result<u64, StoreError> {
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute(
                    "INSERT INTO replicas (name, applied, heartbeat_at, started_at)
                     VALUES ($1, $2, now(), now())
                     ON CONFLICT (name) DO UPDATE SET
                       applied = GREATEST(replicas.applied, EXCLUDED.applied),
                       heartbeat_at = now()",
                    &[&origin, &int(applied)],
                )
                .await?;
                tx.execute("SELECT pg_notify($1, $2)", &[&ACKS_CHANNEL, &origin])
                    .await?;
                let row = tx
                    .query_one("SELECT COALESCE(max(seq), 0) FROM changes", &[])
                    .await?;
                tx.commit().await?;
                col_u64(&row, 0)
            })
        })
    }

    fn register(&self) -> Result<u64, StoreError> {
        self.run(move |c, origin| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute(
                    "INSERT INTO replicas (name, applied, heartbeat_at, started_at)
                     VALUES ($1, 0, now(), now())
                     ON CONFLICT (name) DO UPDATE SET
                       applied = 0, heartbeat_at = now(), started_at = now()",
                    &[&origin],
                )
                .await?;
                let row = tx
                    .query_one("SELECT COALESCE(max(seq), 0) FROM changes", &[])
                    .await?;
                tx.commit().await?;
                col_u64(&row, 0)
            })
        })
    }

    fn behind(&self, seq: u64, lease_ms: u64) -> Result<Vec<ReplicaRow>, StoreError> {
        self.run(move |c, origin| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT name, applied,
                                GREATEST(0, (EXTRACT(EPOCH FROM (now() - heartbeat_at)) * 1000))::bigint
                         FROM replicas
                         WHERE name <> $1
                           AND heartbeat_at > now() - $2::bigint * interval '1 millisecond'
                           AND applied < $3
                         ORDER BY name",
                        &[&origin, &int(lease_ms), &int(seq)],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(ReplicaRow {
                            name: r.try_get(0)?,
                            applied: col_u64(r, 1)?,
                            silent_ms: col_u64(r, 2)?,
                        })
                    })
                    .collect()
            })
        })
    }

    fn leave(&self) -> Result<(), StoreError> {
        self.run(|c, origin| {
            Box::pin(async move {
                c.execute("DELETE FROM replicas WHERE name = $1", &[&origin])
                    .await?;
                Ok(())
            })
        })
    }

    fn prune(&self, keep: Duration) -> Result<Pruned, StoreError> {
        let keep_ms = int(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        self.run(move |c, _| {
            Box::pin(async move {
                let tx = c.transaction().await?;
                let replicas = tx
                    .execute(
                        "DELETE FROM replicas
                         WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'",
                        &[&keep_ms],
                    )
                    .await?;
                // Everything below one bound goes, so only a prefix: the
                // least of what every remaining replica applied, the newest
                // entry, and the first entry written within `keep`. That
                // last is found by seq rather than deleting by time: `at`
                // is when a writer's transaction began, not when it took
                // its seq, so times are not quite in seq order and a
                // delete by time could leave a hole. LEAST skips NULLs:
                // with no replica left, age and the newest entry decide.
                let changes = tx
                    .execute(
                        "DELETE FROM changes WHERE seq < (SELECT LEAST(
                             (SELECT min(applied) FROM replicas),
                             (SELECT max(seq) FROM changes),
                             (SELECT min(seq) FROM changes
                              WHERE at >= now() - $1::bigint * interval '1 millisecond')))",
                        &[&keep_ms],
                    )
                    .await?;
                tx.commit().await?;
                Ok(Pruned {
                    replicas: usize::try_from(replicas).unwrap_or(usize::MAX),
                    changes: usize::try_from(changes).unwrap_or(usize::MAX),
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(url: &str) -> String {
        match Target::parse(url) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn sslmode_rules() {
        let ok = |url: &str| Target::parse(url).map(|t| matches!(t.tls, Tls::Off));
        assert!(matches!(ok("postgres://u:pw@localhost:5432/k"), Ok(true)));
        assert!(matches!(ok("postgres://u:pw@127.0.0.1/k"), Ok(true)));
        assert!(matches!(ok("postgres://u:pw@[::1]:5433/k"), Ok(true)));
        assert!(matches!(
            ok("postgresql://u@%2Fvar%2Frun%2Fpostgresql/k"),
            Ok(true)
        ));
        assert!(matches!(
            ok("postgres://u:pw@db.example/k?sslmode=disable&application_name=x"),
            Ok(true)
        ));
        assert!(matches!(
            ok("postgres://u:pw@db.example/k?sslmode=verify-full"),
            Ok(false)
        ));
        let e = parse_err("postgres://u:hunter2@db.example/k");
        assert!(
            e.contains("no sslmode") && e.contains("db.example:5432/k"),
            "{e}"
        );
        for m in ["require", "prefer", "allow", "verify-ca"] {
            let e = parse_err(&format!("postgres://u:hunter2@db.example/k?sslmode={m}"));
            assert!(e.contains("verify-full") && e.contains(m), "{e}");
        }
        let e = parse_err("host=db.example user=u password=hunter2");
        assert!(e.contains("postgres://"), "{e}");
        let e = parse_err(
            "postgres://u:hunter2@db.example/k?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        );
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = parse_err("postgres://u:hunter2@db.example/k?sslmode=disable&bogus=1");
        assert!(e.contains("bogus"), "{e}");
        for url in [
            "postgres://u:hunter2@db.example/k",
            "postgres://u:hunter2@db.example/k?sslmode=require",
            "postgres://u:hunter2@db.example:notaport/k?sslmode=disable",
        ] {
            assert!(!parse_err(url).contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn label_names_host_port_and_database_only() {
        let t = Target::parse("postgres://u:hunter2@db.example:6543/keys?sslmode=disable")
            .expect("parse");
        assert_eq!(t.label, "db.example:6543/keys");
    }
}
