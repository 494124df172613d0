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

pub mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::config::{Config, TokenSpec};
use crate::secret::Secret;

/// Where the current value came from, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Env,
    File,
    Literal,
    Admin,
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
        Some(crate::config::ValueSource::Env(_)) => Origin::Env,
        Some(crate::config::ValueSource::File(_)) => Origin::File,
        Some(crate::config::ValueSource::Literal(_)) => Origin::Literal,
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

    /// Re-reads every config-sourced value (or only those `only` selects)
    /// and publishes the result in one swap. Values whose secret and prefix
    /// are unchanged keep their version; run-time (admin) values are kept
    /// as long as the token still exists without a config source.
    pub fn sync(&self, config: &Config, only: Option<&dyn Fn(&TokenSpec) -> bool>) {
        self.set.rcu(|old| {
            let mut next = TokenSet::default();
            for (name, spec) in &config.tokens {
                let prev = old.values.get(name);
                let Some(source) = spec.source() else {
                    // Run-time value: keep it, re-rendered if the prefix changed.
                    if let Some(p) = prev.filter(|p| p.origin == Origin::Admin) {
                        match rerender(p, spec) {
                            Ok(v) => {
                                next.values.insert(name.clone(), v);
                            }
                            Err(e) => {
                                next.errors.insert(name.clone(), e.to_string());
                            }
                        }
                    } else {
                        next.errors.insert(
                            name.clone(),
                            "no value set yet (set it through the admin API)".into(),
                        );
                    }
                    continue;
                };
                if let (Some(filter), Some(p)) = (only, prev)
                    && !filter(spec)
                    && let Ok(v) = rerender(p, spec)
                {
                    next.values.insert(name.clone(), v);
                    continue;
                }
                match source::read(source) {
                    Ok(secret) => match build(prev, spec, secret, origin_of(spec)) {
                        Ok(v) => {
                            next.values.insert(name.clone(), v);
                        }
                        Err(e) => {
                            next.errors.insert(name.clone(), e.to_string());
                        }
                    },
                    Err(source::Unavailable(why)) => {
                        next.errors.insert(name.clone(), why);
                    }
                }
            }
            next
        });
    }

    /// Sets a run-time value (admin API). The caller has checked the value.
    pub fn set_admin_value(
        &self,
        spec: &TokenSpec,
        secret: Secret,
    ) -> Result<Arc<TokenValue>, &'static str> {
        let mut result = Err("not applied");
        self.set.rcu(|old| {
            let mut values = old.values.clone();
            let mut errors = old.errors.clone();
            result = build(
                old.values.get(&spec.name),
                spec,
                secret.clone(),
                Origin::Admin,
            );
            if let Ok(v) = &result {
                values.insert(spec.name.clone(), Arc::clone(v));
                errors.remove(&spec.name);
            }
            TokenSet { values, errors }
        });
        result
    }
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
    }))
}
