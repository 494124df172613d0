//! Token values: where they come from (`source`), and the one [`TokenStore`]
//! every request reads them from.
//!
//! All values live in ONE `ArcSwap<TokenSet>`: a request loads the set once
//! and uses it to the end, so two values changed together (a Kubernetes
//! Secret update touching two files) are never half-applied to a request.
//! Values are keyed by token name, independent of the config snapshot, so a
//! value set at run time survives an unrelated reload. Each value's header
//! form (`<prefix> <value>`, marked sensitive) is rendered once per version,
//! not per request.

pub mod fetch;
pub mod refresh;
pub mod user;
pub mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::config::source;
use crate::config::{TokenKind, TokenSpec, ValueSource};
use crate::secret::Secret;

/// Where the current value came from, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Env,
    File,
    Literal,
    Admin,
    /// Fetched from a token endpoint (`http_request`).
    Fetched,
}

/// One version of a token's value, ready to inject.
#[derive(Debug)]
pub struct TokenValue {
    pub secret: Secret,
    /// `<prefix> <value>` or the bare value; `set_sensitive(true)`.
    pub header_value: HeaderValue,
    pub prefix: Option<String>,
    pub fingerprint: String,
    pub version: u64,
    pub updated_at: SystemTime,
    pub origin: Origin,
    /// When a fetched value stops being usable; `None` for static values.
    pub expires_at: Option<SystemTime>,
}

impl TokenValue {
    pub fn usable(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// The state of every token at one instant.
#[derive(Debug, Default)]
pub struct TokenSet {
    pub values: HashMap<String, Arc<TokenValue>>,
    /// Why a token has no value (env unset, file missing, bad value).
    pub errors: HashMap<String, String>,
}

impl TokenSet {
    pub fn get(&self, name: &str) -> Option<&Arc<TokenValue>> {
        self.values.get(name)
    }
}

pub fn render(prefix: Option<&str>, secret: &Secret) -> Result<HeaderValue, &'static str> {
    let mut hv = match prefix {
        Some(p) => HeaderValue::try_from(format!("{p} {}", secret.expose())),
        None => HeaderValue::from_str(secret.expose()),
    }
    .map_err(|_| "the value is not a valid header value")?;
    hv.set_sensitive(true);
    Ok(hv)
}

fn origin_of(spec: &TokenSpec) -> Origin {
    match spec.source() {
        Some(ValueSource::Env(_)) => Origin::Env,
        Some(ValueSource::File(_)) => Origin::File,
        Some(ValueSource::Literal(_)) => Origin::Literal,
        None => Origin::Admin,
    }
}

/// The token specs of one config, by name.
pub type Specs = std::collections::BTreeMap<String, Arc<TokenSpec>>;

/// A value cell over fixed specs, for code that runs without a gateway
/// (unit tests, benchmarks): values are published, specs never change.
#[derive(Debug, Default)]
pub struct FixedCell {
    specs: Specs,
    set: ArcSwap<TokenSet>,
}

impl FixedCell {
    pub fn new(specs: Specs) -> Arc<Self> {
        Arc::new(FixedCell {
            specs,
            set: ArcSwap::default(),
        })
    }
}

impl ValueCell for FixedCell {
    fn values(&self) -> Arc<TokenSet> {
        self.set.load_full()
    }

    fn read(&self, look: &mut dyn FnMut(&Specs, &TokenSet)) {
        look(&self.specs, &self.set.load());
    }

    fn update(&self, change: &mut dyn FnMut(&Specs, &TokenSet) -> Option<TokenSet>) -> bool {
        store_if(&self.set, |old| change(&self.specs, old))
    }
}

/// Stores what `next` builds from the current value, when it builds
/// something: a compare-and-swap, re-derived if another writer raced.
/// (arc-swap's `rcu` stores even when nothing changed.) Returns whether it
/// stored. Every value cell writes through it.
pub fn store_if<T>(cell: &ArcSwap<T>, mut next: impl FnMut(&T) -> Option<T>) -> bool {
    loop {
        let cur = cell.load_full();
        let Some(new) = next(&cur) else {
            return false;
        };
        let prev = cell.compare_and_swap(&cur, Arc::new(new));
        if Arc::ptr_eq(&prev, &cur) {
            return true;
        }
    }
}

/// Where token values are published. The gateway's snapshot cell
/// (`crate::snapshot::Published`) implements it, so a value and the
/// catalog that references it are published in one swap and a request
/// reads both from one load. It is a trait so that code below the
/// snapshot (refreshers, fetches, run-time values) can publish without
/// importing it.
pub trait ValueCell: Send + Sync + std::fmt::Debug {
    /// The values of the published snapshot.
    fn values(&self) -> Arc<TokenSet>;
    /// Reads the published token specs and values together (one load).
    fn read(&self, look: &mut dyn FnMut(&Specs, &TokenSet));
    /// Publishes the set `change` builds from the published token specs and
    /// values, in one swap, when it returns `Some`. `change` may run again
    /// if another writer raced. Returns whether it published.
    fn update(&self, change: &mut dyn FnMut(&Specs, &TokenSet) -> Option<TokenSet>) -> bool;
}

/// The writers' handle on the published token values: every write is
/// checked against the token's spec in the published config, so a
/// refresher or an admin write for a spec a reload has replaced changes
/// nothing.
#[derive(Debug, Clone)]
pub struct TokenStore {
    cell: Arc<dyn ValueCell>,
}

/// Why a value could not be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRefused {
    /// The value cannot be written into a header.
    NotHeaderSafe,
    /// The token is gone, or a reload changed what it takes.
    Superseded,
}

impl PutRefused {
    pub fn as_str(self) -> &'static str {
        match self {
            PutRefused::NotHeaderSafe => "the value is not a valid header value",
            PutRefused::Superseded => "the token was changed by a reload",
        }
    }
}

/// Whether `current` (the published spec) is still the `http_request`
/// spec a refresher was built for: same request, same header form.
pub fn same_fetch(current: &TokenSpec, mine: &TokenSpec) -> bool {
    match (&current.kind, &mine.kind) {
        (TokenKind::HttpRequest(a), TokenKind::HttpRequest(b)) => {
            **a == **b && current.header == mine.header && current.prefix == mine.prefix
        }
        _ => false,
    }
}

impl TokenStore {
    pub fn new(cell: Arc<dyn ValueCell>) -> Self {
        TokenStore { cell }
    }

    /// The current set: load once per request and keep it.
    pub fn load(&self) -> Arc<TokenSet> {
        self.cell.values()
    }

    /// The published value of `spec`'s token while `spec` is still its
    /// published `http_request` spec: a refresher a reload replaced must
    /// never hand out the value fetched for the new spec.
    pub fn fetched_for(&self, spec: &TokenSpec) -> Option<Arc<TokenValue>> {
        let mut found = None;
        self.cell.read(&mut |specs, set| {
            if specs.get(&spec.name).is_some_and(|c| same_fetch(c, spec)) {
                found = set.get(&spec.name).cloned();
            }
        });
        found
    }

    /// Re-reads the `file:` values of the published config (the watcher's
    /// check) and publishes them in one swap, only if something changed.
    /// `specs` are the published ones the files were read for; if a reload
    /// published others meanwhile, it read the files itself and this
    /// publishes nothing.
    pub fn sync_files(&self, read_for: &Specs) -> bool {
        let files = read_files_stable(read_for);
        self.cell.update(&mut |specs, old| {
            let same_specs = specs.len() == read_for.len()
                && specs
                    .iter()
                    .zip(read_for)
                    .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y));
            if !same_specs {
                return None;
            }
            let next = compute(old, specs, true, &files, &HashMap::new());
            (!same(old, &next)).then_some(next)
        })
    }

    /// Publishes a run-time (admin) value with the given version, rendered
    /// with the published spec's prefix; the caller has checked and
    /// persisted it.
    pub fn put(
        &self,
        name: &str,
        secret: Secret,
        version: u64,
        updated_at: SystemTime,
    ) -> Result<Arc<TokenValue>, PutRefused> {
        let mut out = Err(PutRefused::Superseded);
        self.cell.update(&mut |specs, old| {
            let Some(spec) = specs.get(name).filter(|s| s.takes_admin_value()) else {
                out = Err(PutRefused::Superseded);
                return None;
            };
            match admin_value(spec, secret.clone(), version, updated_at) {
                Ok(value) => {
                    out = Ok(Arc::clone(&value));
                    Some(with_value(old, name, value))
                }
                Err(e) => {
                    out = Err(e);
                    None
                }
            }
        });
        out
    }

    /// Publishes a freshly fetched value (next version) with its expiry,
    /// while `spec` is still the published spec of its token.
    pub fn put_fetched(
        &self,
        spec: &TokenSpec,
        secret: Secret,
        expires_at: Option<SystemTime>,
    ) -> Result<Arc<TokenValue>, PutRefused> {
        let header_value =
            render(spec.prefix.as_deref(), &secret).map_err(|_| PutRefused::NotHeaderSafe)?;
        let mut out = Err(PutRefused::Superseded);
        self.cell.update(&mut |specs, old| {
            if !specs.get(&spec.name).is_some_and(|c| same_fetch(c, spec)) {
                out = Err(PutRefused::Superseded);
                return None;
            }
            let value = fetched_value(
                spec,
                &secret,
                header_value.clone(),
                old.values.get(&spec.name).map_or(1, |v| v.version + 1),
                expires_at,
            );
            out = Ok(Arc::clone(&value));
            Some(with_value(old, &spec.name, value))
        });
        out
    }

    /// Records why a fetched token has no usable value (shown by the admin
    /// API), while `spec` is still the published spec of its token.
    pub fn set_error(&self, spec: &TokenSpec, why: &str) {
        self.cell.update(&mut |specs, old| {
            if !specs.get(&spec.name).is_some_and(|c| same_fetch(c, spec)) {
                return None;
            }
            let mut errors = old.errors.clone();
            errors.insert(spec.name.clone(), why.to_string());
            Some(TokenSet {
                values: old.values.clone(),
                errors,
            })
        });
    }
}

/// `old` with `name` set to `value` and its error cleared.
fn with_value(old: &TokenSet, name: &str, value: Arc<TokenValue>) -> TokenSet {
    let mut values = old.values.clone();
    let mut errors = old.errors.clone();
    values.insert(name.to_string(), value);
    errors.remove(name);
    TokenSet { values, errors }
}

/// A run-time (admin) value, ready to publish.
pub fn admin_value(
    spec: &TokenSpec,
    secret: Secret,
    version: u64,
    updated_at: SystemTime,
) -> Result<Arc<TokenValue>, PutRefused> {
    Ok(Arc::new(TokenValue {
        header_value: render(spec.prefix.as_deref(), &secret)
            .map_err(|_| PutRefused::NotHeaderSafe)?,
        fingerprint: secret.fingerprint(),
        prefix: spec.prefix.clone(),
        secret,
        version,
        updated_at,
        origin: Origin::Admin,
        expires_at: None,
    }))
}

/// A fetched value, ready to publish.
pub fn fetched_value(
    spec: &TokenSpec,
    secret: &Secret,
    header_value: HeaderValue,
    version: u64,
    expires_at: Option<SystemTime>,
) -> Arc<TokenValue> {
    Arc::new(TokenValue {
        header_value,
        fingerprint: secret.fingerprint(),
        prefix: spec.prefix.clone(),
        secret: secret.clone(),
        version,
        updated_at: SystemTime::now(),
        origin: Origin::Fetched,
        expires_at,
    })
}

/// First values a reload prepared aside for tokens that are new or
/// changed (a fetched `http_request` value, a stored run-time value):
/// they take precedence over anything carried from the previous set.
pub type Seeds = HashMap<String, Result<Arc<TokenValue>, String>>;

/// The value set for `config`, from the published set `old`: unchanged
/// values keep their version, config sources are re-read (`file:` ones
/// from `files`, read beforehand), `seeds` fill new or changed tokens.
/// Pure, so a reload can run it inside its one publish.
pub fn next_values(old: &TokenSet, specs: &Specs, files: &Files, seeds: &Seeds) -> TokenSet {
    compute(old, specs, false, files, seeds)
}

/// `file:` values read for one config, by token name.
pub type Files = HashMap<String, Result<Secret, source::Unavailable>>;

/// Reads every `file:` source until two passes agree, so that files
/// switched together (a Kubernetes Secret's `..data` symlink swap landing
/// between two reads) are never published half old, half new.
pub fn read_files_stable(specs: &Specs) -> Files {
    let read_all = || -> Files {
        specs
            .values()
            .filter_map(|spec| match spec.source() {
                Some(src @ ValueSource::File(_)) => Some((spec.name.clone(), source::read(src))),
                _ => None,
            })
            .collect()
    };
    let mut last = read_all();
    for _ in 0..5 {
        let again = read_all();
        let stable = again.iter().all(|(k, v)| match (v, last.get(k)) {
            (Ok(a), Some(Ok(b))) => a.ct_eq(b.expose()),
            (Err(a), Some(Err(b))) => a == b,
            _ => false,
        });
        last = again;
        if stable {
            break;
        }
    }
    last
}

fn compute(
    old: &TokenSet,
    specs: &Specs,
    files_only: bool,
    files: &Files,
    seeds: &Seeds,
) -> TokenSet {
    let mut next = TokenSet::default();
    for (name, spec) in specs {
        let prev = old.values.get(name);
        let outcome: Result<Arc<TokenValue>, String> = match (&spec.kind, spec.source()) {
            (TokenKind::User(_), _) => continue,
            _ if seeds.contains_key(name) => match seeds.get(name) {
                Some(Ok(v)) => rerender(v, spec).map_err(str::to_string),
                Some(Err(e)) => Err(e.clone()),
                None => continue,
            },
            (TokenKind::HttpRequest(_), _) => match prev.filter(|p| p.origin == Origin::Fetched) {
                Some(p) => rerender(p, spec).map_err(str::to_string),
                None => Err(old
                    .errors
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "not fetched yet".into())),
            },
            (_, None) => match prev.filter(|p| p.origin == Origin::Admin) {
                Some(p) => rerender(p, spec).map_err(str::to_string),
                None => Err("no value set yet (set it through the admin API)".into()),
            },
            (_, Some(ValueSource::File(_))) => match files.get(name) {
                Some(Ok(secret)) => {
                    build(prev, spec, secret.clone(), Origin::File).map_err(str::to_string)
                }
                Some(Err(source::Unavailable(why))) => Err(why.clone()),
                None => Err("file not read".into()),
            },
            (_, Some(_)) if files_only => match (prev, old.errors.get(name)) {
                (Some(p), _) => rerender(p, spec).map_err(str::to_string),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err("not read yet".into()),
            },
            (_, Some(src)) => source::read(src)
                .map_err(|source::Unavailable(why)| why)
                .and_then(|secret| {
                    build(prev, spec, secret, origin_of(spec)).map_err(str::to_string)
                }),
        };
        match outcome {
            Ok(v) => {
                next.values.insert(name.clone(), v);
            }
            Err(e) => {
                next.errors.insert(name.clone(), e);
            }
        }
    }
    next
}

/// Same values (by identity) and same errors: nothing to publish.
fn same(a: &TokenSet, b: &TokenSet) -> bool {
    a.errors == b.errors
        && a.values.len() == b.values.len()
        && a.values
            .iter()
            .all(|(k, v)| b.values.get(k).is_some_and(|w| Arc::ptr_eq(v, w)))
}

fn rerender(prev: &Arc<TokenValue>, spec: &TokenSpec) -> Result<Arc<TokenValue>, &'static str> {
    if prev.prefix.as_deref() == spec.prefix.as_deref() {
        return Ok(Arc::clone(prev));
    }
    build(Some(prev), spec, prev.secret.clone(), prev.origin)
}

fn build(
    prev: Option<&Arc<TokenValue>>,
    spec: &TokenSpec,
    secret: Secret,
    origin: Origin,
) -> Result<Arc<TokenValue>, &'static str> {
    if let Some(p) = prev
        && p.prefix.as_deref() == spec.prefix.as_deref()
        && p.origin == origin
        && p.secret.ct_eq(secret.expose())
    {
        return Ok(Arc::clone(p));
    }
    let header_value = render(spec.prefix.as_deref(), &secret)?;
    Ok(Arc::new(TokenValue {
        fingerprint: secret.fingerprint(),
        header_value,
        prefix: spec.prefix.clone(),
        secret,
        version: prev.map_or(1, |p| p.version + 1),
        updated_at: SystemTime::now(),
        origin,
        expires_at: prev
            .filter(|p| p.origin == origin)
            .and_then(|p| p.expires_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Expiry, FetchBody, HttpRequestSpec};

    fn fetched(name: &str, url: &str) -> Arc<TokenSpec> {
        Arc::new(TokenSpec {
            name: name.into(),
            description: None,
            kind: TokenKind::HttpRequest(Arc::new(HttpRequestSpec {
                method: http::Method::POST,
                url: url.parse().expect("uri"),
                headers: vec![],
                body: FetchBody::None,
                token_pointer: "/access_token".into(),
                expiry: Expiry::In("/expires_in".into()),
                refresh_before: std::time::Duration::from_secs(60),
                min_refresh_interval: std::time::Duration::from_secs(10),
                ca_file: None,
                timeout: std::time::Duration::from_secs(5),
            })),
            header: http::header::AUTHORIZATION,
            prefix: Some("Bearer".into()),
        })
    }

    #[test]
    fn a_replaced_spec_neither_publishes_nor_reads_the_new_specs_value() {
        let new = fetched("t", "http://127.0.0.1:1/new");
        let old = fetched("t", "http://127.0.0.1:1/old");
        let store = TokenStore::new(FixedCell::new(
            [("t".to_string(), Arc::clone(&new))].into_iter().collect(),
        ));
        assert_eq!(
            store
                .put_fetched(&old, Secret::new("old-value"), None)
                .err(),
            Some(PutRefused::Superseded),
            "a refresher for the old spec wrote into the new spec's slot"
        );
        assert!(store.load().get("t").is_none());
        let v = store
            .put_fetched(&new, Secret::new("new-value"), None)
            .expect("the published spec publishes");
        assert_eq!(v.version, 1);
        assert!(store.fetched_for(&new).is_some());
        assert!(
            store.fetched_for(&old).is_none(),
            "the old spec's refresher was handed the new spec's value"
        );
        store.set_error(&old, "old endpoint down");
        assert!(store.load().errors.is_empty(), "the old spec set an error");
    }
}
