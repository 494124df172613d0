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
pub mod source;
pub mod user;
pub mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::config::{Config, TokenKind, TokenSpec, ValueSource};
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

#[derive(Debug, Default)]
pub struct TokenStore {
    set: ArcSwap<TokenSet>,
}

impl TokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current set: load once per request and keep it.
    pub fn load(&self) -> Arc<TokenSet> {
        self.set.load_full()
    }

    /// Re-reads config-sourced values (all of them, or only `file:` ones
    /// when `files_only`) and publishes the result in one swap, only if
    /// something changed. Values whose secret and prefix are unchanged keep
    /// their version; run-time (admin) values are kept as long as the token
    /// still exists without a config source. Returns whether it published.
    pub fn sync(&self, config: &Config, files_only: bool) -> bool {
        let files = read_files_stable(config);
        loop {
            let old = self.set.load_full();
            let next = compute(&old, config, files_only, &files);
            if same(&old, &next) {
                return false;
            }
            let prev = self.set.compare_and_swap(&old, Arc::new(next));
            if Arc::ptr_eq(&prev, &old) {
                return true;
            }
            // Lost a race with another writer (admin API): recompute.
        }
    }

    /// Publishes a run-time (admin) value with the given version; the
    /// caller has checked and persisted it.
    pub fn put(
        &self,
        spec: &TokenSpec,
        secret: Secret,
        version: u64,
        updated_at: SystemTime,
    ) -> Result<Arc<TokenValue>, &'static str> {
        let value = Arc::new(TokenValue {
            header_value: render(spec.prefix.as_deref(), &secret)?,
            fingerprint: secret.fingerprint(),
            prefix: spec.prefix.clone(),
            secret,
            version,
            updated_at,
            origin: Origin::Admin,
            expires_at: None,
        });
        self.publish(&spec.name, |_| Arc::clone(&value))
    }

    /// Publishes the value `make` builds from the current set under `name`,
    /// clearing its error, in one swap (`make` may run again if another
    /// writer raced). Returns the value published.
    fn publish(
        &self,
        name: &str,
        make: impl Fn(&TokenSet) -> Arc<TokenValue>,
    ) -> Result<Arc<TokenValue>, &'static str> {
        let mut out = None;
        self.set.rcu(|old| {
            let value = make(old);
            out = Some(Arc::clone(&value));
            let mut values = old.values.clone();
            let mut errors = old.errors.clone();
            values.insert(name.to_string(), value);
            errors.remove(name);
            TokenSet { values, errors }
        });
        out.ok_or("not published")
    }
}

impl TokenStore {
    /// Publishes a freshly fetched value (next version) with its expiry.
    pub fn put_fetched(
        &self,
        spec: &TokenSpec,
        secret: Secret,
        expires_at: Option<SystemTime>,
    ) -> Result<Arc<TokenValue>, &'static str> {
        let header_value = render(spec.prefix.as_deref(), &secret)?;
        self.publish(&spec.name, |old| {
            Arc::new(TokenValue {
                header_value: header_value.clone(),
                fingerprint: secret.fingerprint(),
                prefix: spec.prefix.clone(),
                secret: secret.clone(),
                version: old.values.get(&spec.name).map_or(1, |v| v.version + 1),
                updated_at: SystemTime::now(),
                origin: Origin::Fetched,
                expires_at,
            })
        })
    }

    /// Records why a token has no usable value (shown by the admin API).
    pub fn set_error(&self, name: &str, why: &str) {
        self.set.rcu(|old| {
            let mut errors = old.errors.clone();
            errors.insert(name.to_string(), why.to_string());
            TokenSet {
                values: old.values.clone(),
                errors,
            }
        });
    }
}

/// Reads every `file:` source until two passes agree, so that files
/// switched together (a Kubernetes Secret's `..data` symlink swap landing
/// between two reads) are never published half old, half new.
fn read_files_stable(config: &Config) -> HashMap<String, Result<Secret, source::Unavailable>> {
    let read_all = || -> HashMap<String, Result<Secret, source::Unavailable>> {
        config
            .tokens
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
    config: &Config,
    files_only: bool,
    files: &HashMap<String, Result<Secret, source::Unavailable>>,
) -> TokenSet {
    let mut next = TokenSet::default();
    for (name, spec) in &config.tokens {
        let prev = old.values.get(name);
        let outcome: Result<Arc<TokenValue>, String> = match (&spec.kind, spec.source()) {
            (TokenKind::User(_), _) => continue,
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
