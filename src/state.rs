//! The running gateway's shared state. The routing view (config, connectors
//! and their upstream clients) is ONE [`Snapshot`] behind ONE `ArcSwap`: a
//! reload builds a complete new snapshot aside and publishes it with a
//! single store, so a request never sees half of a reload. Token values and
//! API keys live outside the snapshot (their own stores) so that a reload
//! never resets a value set at run time or a key's last-used time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::auth::{KeyIndex, KeyRecord, KeySource};
use crate::config::ClientKey;
use crate::config::TokenKind;
use crate::config::{Config, ConfigError, Connector};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::sealed::MasterKey;
use crate::tokens::TokenStore;
use crate::tokens::refresh::Refresher;
use crate::tokens::user::UserVerifier;
use crate::upstream::{self, HttpClient};
use dashmap::DashMap;

#[derive(Debug)]
pub struct ConnectorRuntime {
    pub spec: Arc<Connector>,
    pub client: HttpClient,
}

#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub config: Arc<Config>,
    pub connectors: HashMap<String, Arc<ConnectorRuntime>>,
    /// SHA-256 of each connector `ca_file` as it was when its client was
    /// built: a client is reused only for the same trust roots *content*,
    /// so a CA rewritten at the same path takes effect at the next reload.
    pub trust: HashMap<PathBuf, [u8; 32]>,
}

/// SHA-256 of a file's bytes, `None` if it cannot be read.
pub fn file_digest(path: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

impl Snapshot {
    /// Builds every connector's runtime, reusing the previous snapshot's
    /// upstream client where nothing it depends on changed (its pool stays
    /// warm). Fails without side effects if a client cannot be built.
    pub fn build(
        config: Arc<Config>,
        prev: Option<&Snapshot>,
        generation: u64,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut connectors = HashMap::with_capacity(config.connectors.len());
        let mut errors = Vec::new();
        // Connectors with the same trust roots and connect timeout share one
        // client (its pool is keyed by scheme and authority anyway), and the
        // previous snapshot's clients are reused so warm connections stay.
        let mut clients: HashMap<(ClientKey, Option<[u8; 32]>), HttpClient> = HashMap::new();
        if let Some(p) = prev {
            for old in p.connectors.values() {
                let digest = old
                    .spec
                    .ca_file
                    .as_ref()
                    .and_then(|f| p.trust.get(f).copied());
                clients
                    .entry((old.spec.client_key(), digest))
                    .or_insert_with(|| old.client.clone());
            }
        }
        let mut trust = HashMap::new();
        for (name, spec) in &config.connectors {
            let digest = spec.ca_file.as_ref().and_then(|f| file_digest(f));
            if let (Some(f), Some(d)) = (&spec.ca_file, digest) {
                trust.insert(f.clone(), d);
            }
            let key = (spec.client_key(), digest);
            let client = match clients.get(&key) {
                Some(c) => c.clone(),
                None => match upstream::build(spec.ca_file.as_deref(), spec.connect_timeout) {
                    Ok(c) => {
                        clients.insert(key, c.clone());
                        c
                    }
                    Err(message) => {
                        errors.push(ConfigError {
                            line: None,
                            column: None,
                            message: format!("connector `{name}`: {message}"),
                        });
                        continue;
                    }
                },
            };
            connectors.insert(
                name.clone(),
                Arc::new(ConnectorRuntime {
                    spec: Arc::clone(spec),
                    client,
                }),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Snapshot {
            generation,
            loaded_at: SystemTime::now(),
            config,
            connectors,
            trust,
        })
    }
}

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

#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub store: Arc<dyn Store>,
    /// Encrypts run-time token values at rest.
    pub master: MasterKey,
    pub tokens: Arc<TokenStore>,
    /// One refresher per `http_request` token, kept across reloads while
    /// its spec is unchanged.
    pub refreshers: DashMap<String, Arc<Refresher>>,
    /// One verifier per `user` token.
    pub users: DashMap<String, Arc<UserVerifier>>,
    pub keys: KeyIndex,
    /// Held by every key change (revoke, roll, picking up keys written by
    /// another process) across its check, store write and index update, so
    /// the last-admin-key rule and the revoke/roll race are decided on a
    /// state nobody else is changing. Never held across an `.await`.
    pub key_writes: Mutex<()>,
    pub reload: Mutex<ReloadStatus>,
    /// `None` when the proxy listener is plain HTTP.
    pub tls: Mutex<Option<TlsStatus>>,
    pub metrics: Metrics,
    next_request: AtomicU64,
    request_seed: u64,
}

impl Shared {
    pub fn new(snapshot: Snapshot, store: Arc<dyn Store>, master: MasterKey) -> Self {
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
            snapshot: ArcSwap::from_pointee(snapshot),
            store,
            master,
            tokens: Arc::new(TokenStore::new()),
            refreshers: DashMap::new(),
            users: DashMap::new(),
            keys: KeyIndex::new(),
            key_writes: Mutex::new(()),
            reload: Mutex::new(ReloadStatus {
                ok: true,
                at: Some(now_rfc3339()),
                trigger: ReloadTrigger::Start,
                errors: Vec::new(),
            }),
            tls: Mutex::new(None),
            metrics: Metrics::new(),
            next_request: AtomicU64::new(1),
            request_seed: seed,
        }
    }

    /// A fresh request id: unique per process run (random seed + counter),
    /// cheap, and not a secret.
    pub fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", self.request_seed, n)
    }

    /// Makes the key index hold exactly the keys declared in `config`,
    /// keeping records (and their last-used data) of keys that stay.
    pub fn sync_config_keys(&self, config: &Config) {
        let mut declared: HashMap<[u8; 32], (&str, &crate::config::DeclaredKey)> = HashMap::new();
        for (client, c) in &config.clients {
            for k in &c.keys {
                declared.insert(k.sha256, (client.as_str(), k));
            }
        }
        self.keys.retain(|r| {
            r.source != KeySource::Config
                || declared.get(&r.digest).is_some_and(|(c, k)| {
                    *c == r.client
                        && k.name == r.name
                        && k.expires.map(crate::auth::index::to_ms)
                            == r.expires_at().map(crate::auth::index::to_ms)
                })
        });
        let present: std::collections::HashSet<[u8; 32]> = self
            .keys
            .all()
            .iter()
            .filter(|r| r.source == KeySource::Config)
            .map(|r| r.digest)
            .collect();
        for (digest, (client, k)) in declared {
            if present.contains(&digest) {
                continue;
            }
            self.keys.insert(Arc::new(KeyRecord {
                id: config_key_id(client, &k.name),
                name: k.name.clone(),
                client: client.to_string(),
                roles: None,
                display_prefix: String::new(),
                created_at: SystemTime::now(),
                expires_ms: AtomicU64::new(k.expires.map_or(0, crate::auth::index::to_ms)),
                revoked_at: Mutex::new(None),
                source: KeySource::Config,
                digest,
                rolled_from: None,
                last_used_ms: AtomicU64::new(0),
                uses: AtomicU64::new(0),
                persisted_uses: AtomicU64::new(0),
            }));
        }
    }

    /// Starts, keeps or stops refreshers and user verifiers so they match
    /// `config`. Unchanged specs keep their state (and fetched values).
    pub fn sync_dynamic(&self, config: &Config) {
        // Only tokens some connector uses: an unattached http_request token
        // must not poll its endpoint.
        let attached: std::collections::HashSet<&str> = config
            .connectors
            .values()
            .flat_map(|c| c.headers.tokens().iter().map(|(_, t)| t.as_str()))
            .collect();
        for (name, spec) in config
            .tokens
            .iter()
            .filter(|(n, _)| attached.contains(n.as_str()))
        {
            match &spec.kind {
                TokenKind::HttpRequest(h) => {
                    let same = self.refreshers.get(name).is_some_and(|r| {
                        *r.spec == **h
                            && r.token.header == spec.header
                            && r.token.prefix == spec.prefix
                    });
                    if same {
                        continue;
                    }
                    match Refresher::for_http(
                        Arc::clone(spec),
                        Arc::clone(h),
                        Arc::clone(&self.tokens),
                        self.metrics.token_refresh.clone(),
                    ) {
                        Ok(r) => {
                            r.start();
                            if let Some(old) = self.refreshers.insert(name.clone(), r) {
                                old.stop();
                            }
                        }
                        Err(e) => self.tokens.set_error(name, &e),
                    }
                }
                TokenKind::User(u) => {
                    if let Some(v) = self.users.get(name).filter(|v| *v.spec == **u) {
                        // Same spec: still re-read its secret (a rotated
                        // env/literal/file value is taken at reload).
                        v.reread_secret(false);
                        continue;
                    }
                    match UserVerifier::new(name, Arc::clone(u)) {
                        Ok(v) => {
                            self.users.insert(name.clone(), Arc::new(v));
                        }
                        Err(e) => {
                            tracing::error!(token = %name, error = %e, "user token verifier unavailable");
                            self.users.remove(name);
                        }
                    }
                }
                TokenKind::Text { .. } => {}
            }
        }
        let is = |name: &str, http: bool| {
            attached.contains(name)
                && config.tokens.get(name).is_some_and(|s| match s.kind {
                    TokenKind::HttpRequest(_) => http,
                    TokenKind::User(_) => !http,
                    TokenKind::Text { .. } => false,
                })
        };
        self.refreshers.retain(|name, r| {
            let keep = is(name, true);
            if !keep {
                r.stop();
            }
            keep
        });
        self.users.retain(|name, _| is(name, false));
    }

    /// Re-reads the `file:` HS256 secrets of user tokens (the watcher's
    /// check); returns whether any changed.
    pub fn reread_user_secrets(&self) -> bool {
        let mut changed = false;
        for v in self.users.iter() {
            changed |= v.value().reread_secret(true);
        }
        changed
    }

    /// Tokens attached to some connector that need a value and have no
    /// usable one (`user` tokens come with each request and never count).
    pub fn missing_tokens(&self) -> Vec<String> {
        let snap = self.snapshot.load();
        let set = self.tokens.load();
        let now = SystemTime::now();
        let mut missing: Vec<String> = snap
            .config
            .connectors
            .values()
            .flat_map(|c| c.headers.tokens().iter().map(|(_, t)| t.clone()))
            .filter(|t| {
                let is_user = snap
                    .config
                    .tokens
                    .get(t)
                    .is_some_and(|s| matches!(s.kind, TokenKind::User(_)));
                !is_user && !set.get(t).is_some_and(|v| v.usable(now))
            })
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }
}

/// A stable public id for a key declared in YAML, derived from its client
/// and name (never from the key or its hash).
pub fn config_key_id(client: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("keygate-config-key\0{client}\0{name}").as_bytes());
    format!("key_cfg_{}", hex::encode(&d[..8]))
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
