//! Everything a request reads, in one [`Snapshot`] published with one
//! store: routes and connectors with their upstream clients, clients and
//! roles (the config), the keys declared in YAML, the `http_request`
//! refreshers and JWT verifiers, and the token values.
//!
//! A reload builds a new [`Catalog`] aside, reusing the previous `Arc`
//! wherever a spec is unchanged (a warm upstream pool, a refresher and its
//! schedule, a verifier and its JWKS cache, a key record and its last-used
//! time), fetches the first value of every new or changed `http_request`
//! token, and only then publishes catalog and values together. A request
//! loads the snapshot once and uses it to the end, so it never sees a
//! connector without its token's value, a token with another spec's value,
//! or a key the file no longer declares.
//!
//! Token values keep their own slots across reloads (keyed by token name
//! and carried over while the token's spec is unchanged, so an unrelated
//! reload never resets a value set at run time or fetched), but they are
//! published through this one cell: a value change swaps in a snapshot
//! with the same catalog and the new values ([`ValueCell`]).

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::auth::KeyIndex;
use crate::auth::caller::Keyring;
use crate::auth::declared::{ConfigKeys, declared_keys};
use crate::config::ClientKey;
use crate::config::{Config, ConfigError, Connector, TokenKind};
use crate::metrics::TokenResult;
use crate::store::Store;
use crate::store::sealed::MasterKey;
use crate::tokens::refresh::Refresher;
use crate::tokens::user::UserVerifier;
use crate::tokens::{Files, Seeds, Specs, TokenSet, TokenStore, ValueCell, values};
use crate::upstream::{self, HttpClient};

#[derive(Debug)]
pub struct ConnectorRuntime {
    pub spec: Arc<Connector>,
    pub client: HttpClient,
}

/// The connectors of one config and the trust roots their clients were
/// built with.
#[derive(Debug, Default)]
pub struct Routes {
    pub connectors: HashMap<String, Arc<ConnectorRuntime>>,
    /// SHA-256 of each connector `ca_file` as it was when its client was
    /// built: a client is reused only for the same trust roots *content*,
    /// so a CA rewritten at the same path takes effect at the next reload.
    pub trust: HashMap<PathBuf, [u8; 32]>,
}

/// What one config load built: everything a request reads but the token
/// values.
#[derive(Debug)]
pub struct Catalog {
    /// Bumped by every published config load; the one generation counter.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub config: Arc<Config>,
    /// The connectors and their upstream clients.
    pub routes: Routes,
    /// One refresher per attached `http_request` token.
    pub refreshers: HashMap<String, Arc<Refresher>>,
    /// One verifier per attached `user` token.
    pub users: HashMap<String, Arc<UserVerifier>>,
    /// The keys declared in YAML, by digest.
    pub declared_keys: Arc<ConfigKeys>,
}

/// The published state: one catalog and the token values that go with it.
#[derive(Debug)]
pub struct Snapshot {
    pub catalog: Arc<Catalog>,
    pub values: Arc<TokenSet>,
}

/// A snapshot reads as its catalog (`snap.config`, `snap.routes`);
/// the values are `snap.values`.
impl Deref for Snapshot {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self.catalog
    }
}

impl Snapshot {
    /// Where a presented key is looked up: `index` (API keys) and the keys
    /// this snapshot's config declares.
    pub fn keyring<'a>(&'a self, index: &'a KeyIndex) -> Keyring<'a> {
        Keyring {
            index,
            declared: &self.declared_keys,
            config: &self.config,
        }
    }

    /// Tokens attached to some connector that need a value and have no
    /// usable one (`user` tokens come with each request and never count):
    /// what `/readyz` waits for.
    pub fn missing_tokens(&self, now: SystemTime) -> Vec<String> {
        let mut missing: Vec<String> = attached(&self.config)
            .into_iter()
            .filter(|t| {
                let is_user = self
                    .config
                    .tokens
                    .get(*t)
                    .is_some_and(|s| matches!(s.kind, TokenKind::User(_)));
                !is_user && !self.values.get(t).is_some_and(|v| v.usable(now))
            })
            .map(str::to_string)
            .collect();
        missing.sort();
        missing
    }
}

/// SHA-256 of a file's bytes, `None` if it cannot be read.
pub fn file_digest(path: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Builds every connector's runtime, reusing `prev`'s upstream client
/// where nothing it depends on changed (its pool stays warm). Fails
/// without side effects if a client cannot be built.
pub fn routes(config: &Config, prev: Option<&Routes>) -> Result<Routes, Vec<ConfigError>> {
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
                        pointer: Some(format!(
                            "/connectors/{}/ca_file",
                            crate::config::escape_pointer(name)
                        )),
                        ..ConfigError::plain(format!("connector `{name}`: {message}"))
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
    if errors.is_empty() {
        Ok(Routes { connectors, trust })
    } else {
        Err(errors)
    }
}

/// The names of the tokens some connector uses: only those get a
/// refresher or a verifier (an unattached `http_request` token must not
/// poll its endpoint).
pub fn attached(config: &Config) -> HashSet<&str> {
    config
        .connectors
        .values()
        .flat_map(|c| c.headers.tokens().iter().map(|(_, t)| t.as_str()))
        .collect()
}

/// What the store and the metrics give a build.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub master: &'a MasterKey,
    pub store: &'a dyn Store,
    pub refresh_metrics: &'a Family<TokenResult, Counter>,
}

/// A catalog built aside, with the first values of its new tokens, ready
/// for [`Published::publish`].
#[derive(Debug)]
pub struct Next {
    pub catalog: Arc<Catalog>,
    files: Files,
    seeds: Seeds,
    /// Refreshers this catalog adds: started after the publish.
    pub added: Vec<Arc<Refresher>>,
}

/// Builds the catalog for `config` beside `prev` (the published snapshot)
/// and prepares the first value of every new or changed token: stored
/// run-time values, `file:` values read until stable, and (on a reload,
/// not at start) one fetch per new or changed `http_request` token
/// (concurrently, each bounded by its own fetch timeout). Nothing is
/// published and nothing is started.
pub async fn build(
    config: Arc<Config>,
    prev: &Snapshot,
    generation: u64,
    tokens: &TokenStore,
    cx: BuildContext<'_>,
) -> Result<Next, Vec<ConfigError>> {
    let routes = routes(&config, Some(&prev.routes))?;
    let attached = attached(&config);
    let mut seeds = Seeds::new();
    let mut refreshers = HashMap::new();
    let mut users = HashMap::new();
    let mut added = Vec::new();
    for (name, spec) in config
        .tokens
        .iter()
        .filter(|(n, _)| attached.contains(n.as_str()))
    {
        match &spec.kind {
            TokenKind::HttpRequest(h) => {
                if let Some(r) = prev.refreshers.get(name).filter(|r| {
                    *r.spec == **h && r.token.header == spec.header && r.token.prefix == spec.prefix
                }) {
                    refreshers.insert(name.clone(), Arc::clone(r));
                    continue;
                }
                match Refresher::for_http(
                    Arc::clone(spec),
                    Arc::clone(h),
                    tokens.clone(),
                    cx.refresh_metrics.clone(),
                ) {
                    Ok(r) => {
                        refreshers.insert(name.clone(), Arc::clone(&r));
                        added.push(r);
                    }
                    Err(e) => {
                        seeds.insert(name.clone(), Err(e.to_string()));
                    }
                }
            }
            TokenKind::User(u) => {
                if let Some(v) = prev.users.get(name).filter(|v| *v.spec == **u) {
                    // Same spec: still re-read its secret (a rotated
                    // env/literal/file value is taken at reload).
                    v.reread_secret(false);
                    users.insert(name.clone(), Arc::clone(v));
                    continue;
                }
                match UserVerifier::new(name, Arc::clone(u)) {
                    Ok(v) => {
                        users.insert(name.clone(), Arc::new(v));
                    }
                    Err(e) => {
                        tracing::error!(token = %name, error = %e, "user token verifier unavailable");
                    }
                }
            }
            TokenKind::Text { .. } => {}
        }
    }
    match values::restore(cx.master, cx.store, &config.tokens, &prev.values) {
        Ok(restored) => {
            for (name, v) in restored {
                seeds.insert(name, Ok(v));
            }
        }
        // At start a stored value that cannot be opened (the master key
        // was checked already, so the store is damaged) refuses to start,
        // as SPEC §5 asks; a later reload keeps serving and says why.
        Err(e) if prev.generation == 0 => {
            return Err(vec![ConfigError::plain(format!(
                "stored token values cannot be restored: {e}"
            ))]);
        }
        Err(e) => tracing::error!(error = %e, "stored token values could not be restored"),
    }
    // At start nothing serves yet and `/readyz` says "not ready" until the
    // refreshers' first fetches land: the listeners must not wait for a
    // token endpoint. A reload primes, so no request ever sees a new
    // connector without its value.
    let mut fetches = tokio::task::JoinSet::new();
    for r in added.iter().filter(|_| prev.generation > 0) {
        let r = Arc::clone(r);
        fetches.spawn(async move { (r.token.name.clone(), r.prime().await) });
    }
    while let Some(done) = fetches.join_next().await {
        if let Ok((name, first)) = done {
            seeds.insert(name, first.map_err(|e| e.to_string()));
        }
    }
    let files = crate::tokens::read_files_stable(&config.tokens);
    let declared = declared_keys(&config, &prev.declared_keys);
    Ok(Next {
        catalog: Arc::new(Catalog {
            generation,
            loaded_at: SystemTime::now(),
            config,
            routes,
            refreshers,
            users,
            declared_keys: Arc::new(declared),
        }),
        files,
        seeds,
        added,
    })
}

/// The one cell requests load the snapshot from.
#[derive(Debug)]
pub struct Published {
    cell: ArcSwap<Snapshot>,
}

impl Published {
    /// A cell serving `config` with nothing built yet (no connectors, no
    /// values): the start publishes its first load through [`build`] like
    /// any reload, before any listener accepts.
    pub fn empty(config: Arc<Config>) -> Arc<Self> {
        Arc::new(Published {
            cell: ArcSwap::from_pointee(Snapshot {
                catalog: Arc::new(Catalog {
                    generation: 0,
                    loaded_at: SystemTime::now(),
                    config,
                    routes: Routes::default(),
                    refreshers: HashMap::new(),
                    users: HashMap::new(),
                    declared_keys: Arc::new(ConfigKeys::new()),
                }),
                values: Arc::new(TokenSet::default()),
            }),
        })
    }

    /// The published snapshot: load once per request and keep it.
    pub fn load(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    /// The one store of a config load: `next`'s catalog with the values
    /// carried from the published snapshot and the first values prepared
    /// aside, in one swap (re-derived if a value writer raced). Returns
    /// the snapshot published and the one it replaced.
    pub fn publish(&self, next: &Next) -> (Arc<Snapshot>, Arc<Snapshot>) {
        let mut published = None;
        let replaced = self.cell.rcu(|cur| {
            let new = Arc::new(Snapshot {
                catalog: Arc::clone(&next.catalog),
                values: Arc::new(crate::tokens::next_values(
                    &cur.values,
                    &next.catalog.config.tokens,
                    &next.files,
                    &next.seeds,
                )),
            });
            published = Some(Arc::clone(&new));
            new
        });
        // `rcu` ran the closure at least once; its last run is what it stored.
        let published = published.unwrap_or_else(|| self.cell.load_full());
        (published, replaced)
    }
}

impl ValueCell for Published {
    fn values(&self) -> Arc<TokenSet> {
        Arc::clone(&self.cell.load().values)
    }

    fn read(&self, look: &mut dyn FnMut(&Specs, &TokenSet)) {
        let snap = self.cell.load();
        look(&snap.config.tokens, &snap.values);
    }

    fn update(&self, change: &mut dyn FnMut(&Specs, &TokenSet) -> Option<TokenSet>) -> bool {
        crate::tokens::store_if(&self.cell, |cur| {
            Some(Snapshot {
                catalog: Arc::clone(&cur.catalog),
                values: Arc::new(change(&cur.config.tokens, &cur.values)?),
            })
        })
    }
}
