//! Dedicated connector listeners (`connectors.<name>.listen`), kept in
//! step with the published config in two phases around the snapshot swap:
//! [`Ports::bind`] binds every port a new config needs before the swap (if
//! one cannot be bound, the reload is refused and nothing changes), and
//! [`Ports::settle`] starts serving them and releases the ports of removed
//! or moved connectors after it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::config::{Limits, listen_matches};
use crate::listen::{self, Drain};
use crate::proxy::{Listener, Proxy};
use crate::state::Shared;

/// A dedicated connector listener.
#[derive(Debug)]
struct Dedicated {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Ports bound for a reload, not yet serving.
#[derive(Debug, Default)]
pub struct Fresh(Vec<(String, TcpListener, SocketAddr)>);

/// The dedicated listeners that are serving.
#[derive(Debug)]
pub struct Ports {
    serving: HashMap<String, Dedicated>,
    shared: Arc<Shared>,
    /// `server:` connection limits as of start: every listener, those a
    /// reload adds included, is served with them.
    limits: Limits,
    /// Handed to each listener; `None` once shutting down (serve nothing
    /// new).
    drain: Option<Drain>,
}

/// A port that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub what: String,
    pub source: std::io::Error,
}

pub async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        addr,
        what: what.to_string(),
        source,
    })
}

impl Ports {
    pub fn new(shared: Arc<Shared>, limits: Limits, drain: Drain) -> Self {
        Ports {
            serving: HashMap::new(),
            shared,
            limits,
            drain: Some(drain),
        }
    }

    /// Phase 1: binds the ports of connectors that gained or moved one. If
    /// any port cannot be bound, nothing changes.
    pub async fn bind(&self, config: &Config) -> Result<Fresh, Vec<ConfigError>> {
        let mut fresh = Vec::new();
        let mut errors = Vec::new();
        for (name, c) in &config.connectors {
            let Some(want) = c.listen else { continue };
            if self
                .serving
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
                Err(e) => errors.push(ConfigError::plain(e.to_string())),
            }
        }
        if errors.is_empty() {
            Ok(Fresh(fresh))
        } else {
            Err(errors)
        }
    }

    /// Phase 2, after the snapshot swap: releases the ports of connectors
    /// that are gone or moved, starts serving the fresh ones.
    pub fn settle(&mut self, config: &Config, fresh: Fresh) {
        let Fresh(fresh) = fresh;
        self.serving.retain(|name, d| {
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
        let Some(drain) = self.drain.clone() else {
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
            self.serving.insert(name, Dedicated { addr, stop: tx });
        }
    }

    /// Stops every dedicated listener and serves nothing new.
    pub fn close_all(&mut self) {
        for d in self.serving.values() {
            let _ = d.stop.send(true);
        }
        self.drain = None;
    }
}
