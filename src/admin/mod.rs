//! The admin listener (SPEC §5). Endpoints:
//!
//! | route | key | does |
//! | --- | --- | --- |
//! | `GET /healthz` | no | liveness |
//! | `GET /readyz` | no | 200 once every attached token has a value, else 503 |
//! | `GET /metrics` | no | Prometheus metrics (OpenMetrics text) |
//! | `GET /api/v1/status` | admin | config generation, loaded-at, last reload result and its trigger |
//! | `POST /api/v1/reload` | admin | reload the config file now |
//! | `GET /api/v1/connectors` | admin | connectors, their tokens' names, headers, prefixes |
//! | `GET /api/v1/tokens` | admin | token state and fingerprints, never values |
//! | `GET /api/v1/clients` | admin | clients and roles |
//! | `POST /api/v1/keys` | admin | create a key (201, shown once) |
//! | `GET /api/v1/keys` | admin | metadata of every key |
//! | `DELETE /api/v1/keys/{id}` | admin | revoke now, with its roll successors (204; 404 if already revoked) |
//! | `POST /api/v1/keys/{id}/roll` | admin | successor key; the old one expires after the grace |
//!
//! Ending the last live admin key (revoke, roll) answers `409
//! last_admin_key` unless `?force=true`. Every `/api/v1` answer carries
//! `Cache-Control: no-store`: some carry a plaintext key.
//!
//! Paths are matched as sent, segment by segment: a non-canonical path (an
//! empty segment, as in `//api/v1/keys` or `/api/v1/keys/`) is `404`, so
//! no second spelling of a route exists for a header rule or an upstream
//! proxy's path filter to miss.
//!
//! "admin" means an API key of a client holding a role with `admin: true`:
//! 401 without a valid key, 403 with a non-admin one. Bodies are JSON, at
//! most 64 KiB, unknown fields refused. Errors use the proxy's JSON shape.
//! The proxy listener serves none of this.

mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use crate::auth::caller;
use crate::auth::{effective_roles, grants};
use crate::body::Body;
use crate::config::ConfigError;
use crate::error::{GatewayError, X_REQUEST_ID};
use crate::state::Shared;

/// Every route the admin listener serves: the router refuses anything not
/// listed here before dispatching, so this table is the truth, and
/// `openapi.yaml` beside this file is checked against it by a test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/reload"),
    ("GET", "/api/v1/connectors"),
    ("GET", "/api/v1/tokens"),
    ("PUT", "/api/v1/tokens/{name}/value"),
    ("POST", "/api/v1/tokens/{name}/refresh"),
    ("GET", "/api/v1/clients"),
    ("GET", "/api/v1/keys"),
    ("POST", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{id}"),
    ("POST", "/api/v1/keys/{id}/roll"),
];

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.yaml");

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    p.len() == s.len()
        && p.iter().zip(&s).all(|(a, b)| {
            if a.starts_with('{') {
                !b.is_empty()
            } else {
                a == b
            }
        })
}

/// Whether `path` is `/` or `/seg/.../seg` with no empty segment.
fn canonical(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix('/')
            .is_some_and(|p| p.split('/').all(|seg| !seg.is_empty()))
}

/// 404 for a path no route has (or a non-canonical spelling of one), 405
/// for a known path with another method.
fn check_route(method: &Method, path: &str) -> Result<(), GatewayError> {
    if !canonical(path) {
        return Err(GatewayError::NotFound("no such admin route".into()));
    }
    let mut path_known = false;
    for (m, pattern) in ROUTES {
        if pattern_matches(pattern, path) {
            if *m == method.as_str() {
                return Ok(());
            }
            path_known = true;
        }
    }
    Err(if path_known {
        GatewayError::MethodNotAllowed
    } else {
        GatewayError::NotFound("no such admin route".into())
    })
}

/// A request to reload, answered with the new generation or the errors.
pub type ReloadRequest = oneshot::Sender<Result<u64, Vec<ConfigError>>>;

#[derive(Debug, Clone)]
pub struct Admin {
    shared: Arc<Shared>,
    reload: mpsc::Sender<ReloadRequest>,
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl Admin {
    pub fn new(shared: Arc<Shared>, reload: mpsc::Sender<ReloadRequest>) -> Self {
        Admin { shared, reload }
    }

    pub async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let request_id = self.shared.request_id();
        // Judged like the router judges paths (leading and trailing `/`
        // ignored), so no spelling of an API path escapes no-store even
        // if the router someday accepts it.
        let api = req.uri().path().trim_matches('/').split('/').next() == Some("api");
        let mut resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => e.to_response(&request_id),
        };
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert(X_REQUEST_ID, v);
        }
        // Create and roll answer with a plaintext key, and every other API
        // answer describes credentials: no browser, proxy or CLI cache may
        // keep a copy (RFC 9111 §5.2.2.5; `Pragma` for HTTP/1.0 caches,
        // RFC 9111 §5.4). Set here, once, so no route can forget it.
        if api {
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        }
        resp
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
        let path = req.uri().path().to_string();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        check_route(&method, &path)?;
        match segs.as_slice() {
            ["healthz"] => only(&method, Method::GET)
                .map(|()| json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            ["readyz"] => {
                only(&method, Method::GET)?;
                let missing = self
                    .shared
                    .snapshot()
                    .missing_tokens(std::time::SystemTime::now());
                Ok(if missing.is_empty() {
                    json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
                } else {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "not_ready", "tokens_without_value": missing}),
                    )
                })
            }
            ["metrics"] => {
                only(&method, Method::GET)?;
                let snap = self.shared.snapshot();
                let text = self.shared.metrics().render(
                    snap.values
                        .values
                        .iter()
                        .map(|(name, v)| (name.as_str(), v.updated_at)),
                );
                let mut r = Response::new(Body::full(text));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok(r)
            }
            ["api", "v1", rest @ ..] => {
                self.authorize(&req)?;
                let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                api::dispatch(&self.shared, &self.reload, method, &rest, req).await
            }
            _ => Err(GatewayError::NotFound("no such admin route".into())),
        }
    }

    /// A valid key whose roles include an admin role.
    fn authorize(&self, req: &Request<Incoming>) -> Result<(), GatewayError> {
        let snap = self.shared.snapshot();
        let result = caller::authenticate(snap.keyring(self.shared.keys()), req.headers())
            .map_err(GatewayError::from)
            .and_then(|record| {
                let roles = effective_roles(&snap.config.clients, &record)
                    .ok_or(GatewayError::InvalidApiKey)?;
                if grants::is_admin(&snap.config.roles, roles) {
                    Ok(())
                } else {
                    Err(GatewayError::AdminForbidden)
                }
            });
        if let Err(e) = &result {
            self.shared.metrics().auth_failure(e.code());
        }
        result
    }
}

pub(crate) fn only(method: &Method, allowed: Method) -> Result<(), GatewayError> {
    if *method == allowed {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed)
    }
}

impl crate::listen::Handler for Admin {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        self.handle(req, peer)
    }
}
