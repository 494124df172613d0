//! The admin listener (SPEC §5). Endpoints:
//!
//! | route | key | does |
//! | --- | --- | --- |
//! | `GET /healthz` | no | liveness |
//! | `GET /readyz` | no | 200 once every attached token has a value, else 503 naming the others |
//! | `GET /metrics` | no | Prometheus metrics (OpenMetrics text) |
//! | `GET /api/v1/status` | admin | config generation, loaded-at, last reload result and its trigger, TLS certificate state |
//! | `POST /api/v1/reload` | admin | reload the config file now (400 naming every problem) |
//! | `GET /api/v1/connectors` | admin | connectors, their tokens' names, headers, prefixes |
//! | `POST /api/v1/connectors` | admin | create a connector (201; 422 naming every problem) |
//! | `GET /api/v1/connectors/{name}` | admin | one connector, its version as `ETag` |
//! | `PATCH /api/v1/connectors/{name}` | admin | merge-patch an API connector (`If-Match`; 409 for the file's) |
//! | `DELETE /api/v1/connectors/{name}` | admin | delete an API connector (409 while a role grants it) |
//! | `PUT /api/v1/connectors/{name}/tokens` | admin | attach and detach tokens in one step |
//! | `GET /api/v1/tokens` | admin | token state and fingerprints, never values |
//! | `POST /api/v1/tokens` | admin | create a token, optionally with its value (sealed) |
//! | `GET /api/v1/tokens/{name}` | admin | one token, its definition version as `ETag` |
//! | `PATCH /api/v1/tokens/{name}` | admin | merge-patch an API token |
//! | `DELETE /api/v1/tokens/{name}` | admin | delete an API token (409 `token_in_use` naming the connectors) |
//! | `PUT /api/v1/tokens/{name}/value` | admin | set a run-time value (hot-swapped, stored encrypted; 409 for env/file tokens) |
//! | `POST /api/v1/tokens/{name}/refresh` | admin | refresh an `http_request` token now |
//! | `GET /api/v1/roles` | admin | roles and what each allows |
//! | `POST /api/v1/roles` | admin | create a role |
//! | `GET /api/v1/roles/{name}` | admin | one role |
//! | `PATCH /api/v1/roles/{name}` | admin | merge-patch an API role |
//! | `DELETE /api/v1/roles/{name}` | admin | delete an API role (409 while a client holds it) |
//! | `GET /api/v1/clients` | admin | clients and roles |
//! | `POST /api/v1/clients` | admin | create a client |
//! | `GET /api/v1/clients/{name}` | admin | one client |
//! | `PATCH /api/v1/clients/{name}` | admin | merge-patch an API client |
//! | `DELETE /api/v1/clients/{name}` | admin | delete an API client; its live keys are revoked after `?confirm=true` |
//! | `GET /api/v1/keys` | admin | metadata of every key, never the key |
//! | `POST /api/v1/keys` | admin | create a key (201, shown once) |
//! | `DELETE /api/v1/keys/{id}` | admin | revoke now, with its roll successors (204; 404 if already revoked) |
//! | `POST /api/v1/keys/{id}/roll` | admin | successor key (201, shown once); the old one expires after the grace |
//! | `GET /api/v1/export` | admin | the effective catalog as YAML (`keygate export`), never a secret |
//! | `GET /api/v1/audit` | admin | the audit log: who changed what, oldest first (`since`, paged); never values |
//! | `GET /api/v1/openapi.yaml` | admin | this API's OpenAPI document |
//! | `GET /api/v1/openapi.json` | admin | the same document as JSON |
//! | `GET /console` | no | `308` to `/console/` |
//! | `GET /console/` | no | the web console's page |
//! | `POST /console/session` | no | sign in with an admin key: a session cookie and the CSRF token |
//! | `GET /console/session` | admin | the signed-in session and its CSRF token |
//! | `DELETE /console/session` | admin | sign out: the session ends on the server |
//! | `GET /console/{asset}` | no | one of the console's files, compiled into the binary |
//!
//! The list is `router::ROUTES`, row for row (a test compares them), and
//! `openapi.yaml` beside this file describes the same routes with the
//! shapes of their answers (a test compares those too). A path no route
//! has is `404`; a route's path with another method is `405` with
//! `Allow`. Both are answered before the key is checked.
//!
//! Lists take `?limit=&cursor=` and answer `next_cursor` (see `page`).
//! Every change (key create, revoke, roll, token value set) is recorded in
//! the audit log with the admin key that made it (see `crate::audit`).
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
//! 401 without a valid key, 403 with a non-admin one. Instead of a key
//! header, the console's session cookie (see `session`): 401
//! `session_expired` once it has ended, 403 `csrf_rejected` for a
//! state-changing request without its CSRF token. Bodies are JSON, at
//! most 64 KiB, unknown fields refused. Errors use the proxy's JSON shape.
//! The proxy listener serves none of this.

mod api;
mod audit_log;
mod catalog;
mod console;
mod document;
#[cfg(test)]
mod openapi_check;
mod page;
mod probes;
mod reply;
mod router;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CACHE_CONTROL, HeaderName, HeaderValue, PRAGMA};
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::audit::Actor;
use crate::auth::caller;
use crate::auth::{KeyRecord, effective_roles, grants};
use crate::body::Body;
use crate::error::{GatewayError, X_REQUEST_ID};
use crate::objects::Command;
use crate::snapshot::Snapshot;
use crate::state::Shared;

use router::Ctx;
pub use router::{Access, ROUTES, Route};
use session::{SessionError, Sessions};

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.yaml");

#[derive(Debug, Clone)]
pub struct Admin {
    shared: Arc<Shared>,
    /// Into the one reload loop: reloads and catalog changes.
    commands: mpsc::Sender<Command>,
    /// The console's signed-in operators (this replica's).
    sessions: Arc<Sessions>,
    /// Whether the admin listener has its own TLS: session cookies are
    /// then `Secure`.
    tls: bool,
}

impl Admin {
    pub fn new(shared: Arc<Shared>, commands: mpsc::Sender<Command>, tls: bool) -> Self {
        Admin {
            shared,
            commands,
            sessions: Arc::new(Sessions::new()),
            tls,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let request_id = self.shared.request_id();
        // Judged more loosely than the router judges paths (leading and
        // trailing `/` ignored), so no spelling of an API path escapes
        // no-store, not even a refused one.
        let no_store = no_store(req.uri().path());
        let mut resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => e.to_response(&request_id),
        };
        finish(resp.headers_mut(), &request_id, no_store);
        resp
    }

    /// The table's route for the request (404/405 before any key check,
    /// so a probe learns nothing more with a key than without), the key
    /// check if the route needs one, then the handler.
    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, GatewayError> {
        let (route, params) = router::find(req.method(), req.uri().path())?;
        let (actor, session) = match route.access {
            Access::Open => (None, None),
            Access::Admin => {
                let (actor, session) = self.authorize(&req)?;
                (Some(actor), session)
            }
        };
        let cx = Ctx {
            shared: Arc::clone(&self.shared),
            commands: self.commands.clone(),
            sessions: Arc::clone(&self.sessions),
            session,
            tls: self.tls,
            params,
            actor,
            req,
        };
        (route.handler)(cx).await
    }

    /// A valid key whose roles include an admin role; its client and id
    /// are the actor the audit log records for the request's changes.
    /// The key comes from a key header, or else from the console session
    /// the cookie names (then also returned).
    fn authorize(
        &self,
        req: &Request<Incoming>,
    ) -> Result<(Actor, Option<session::Current>), GatewayError> {
        let snap = self.shared.snapshot();
        let keyring = snap.keyring(self.shared.keys());
        let presented = if caller::presents_key(req.headers()) {
            None
        } else {
            session::presented(req.headers())?
        };
        let result = match presented {
            None => caller::authenticate(keyring, req.headers())
                .map_err(GatewayError::from)
                .and_then(|record| admin_actor(&snap, &record))
                .map(|actor| (actor, None)),
            Some(id) => self.resume(&snap, req, id),
        };
        if let Some(reason) = result.as_ref().err().and_then(|e| e.code().auth_failure()) {
            self.shared.metrics().auth_failure(reason);
        }
        result
    }

    /// The console session `id` names, if the request may use it and its
    /// key still admits it; a session whose key does not is ended.
    fn resume(
        &self,
        snap: &Snapshot,
        req: &Request<Incoming>,
        id: &str,
    ) -> Result<(Actor, Option<session::Current>), GatewayError> {
        let current = self.sessions.resume(id, Instant::now())?;
        session::check_request(req.method(), req.headers(), &current.csrf)?;
        let admitted = caller::recheck(snap.keyring(self.shared.keys()), &current.key_digest)
            .map_err(GatewayError::from)
            .and_then(|record| admin_actor(snap, &record));
        match admitted {
            Ok(actor) => {
                self.sessions.renew(&current.id_digest, Instant::now());
                Ok((actor, Some(current)))
            }
            // Cut off from the store: the key may be fine; keep the session.
            Err(GatewayError::StoreUnavailable) => Err(GatewayError::StoreUnavailable),
            Err(_) => {
                self.sessions.end(&current.id_digest);
                Err(SessionError::Ended.into())
            }
        }
    }
}

/// The audit actor of `record` if its roles include an admin role.
fn admin_actor(snap: &Snapshot, record: &KeyRecord) -> Result<Actor, GatewayError> {
    let roles = effective_roles(&snap.config.clients, record).ok_or(GatewayError::InvalidApiKey)?;
    if grants::is_admin(&snap.config.roles, roles) {
        Ok(Actor {
            client: record.client.clone(),
            key_id: record.id.clone(),
        })
    } else {
        Err(GatewayError::AdminForbidden)
    }
}

/// Every refusal [`Admin::authorize`] can answer, for the OpenAPI test
/// (each route with a key must document them); kept beside it so that a
/// change to one is seen in the other.
#[cfg(test)]
pub(crate) fn key_check_refusals() -> Vec<GatewayError> {
    use caller::Refused;
    let refused = [
        Refused::Missing,
        Refused::Invalid,
        Refused::Expired,
        Refused::Ambiguous("two different keys"),
        Refused::Unvouched,
    ];
    // A new way to refuse a key fails to compile here until it is listed.
    for r in &refused {
        match r {
            Refused::Missing
            | Refused::Invalid
            | Refused::Expired
            | Refused::Ambiguous(_)
            | Refused::Unvouched => {}
        }
    }
    let mut all: Vec<GatewayError> = refused.into_iter().map(GatewayError::from).collect();
    // The key's client is gone from the config; the key has no admin role.
    all.extend([GatewayError::InvalidApiKey, GatewayError::AdminForbidden]);
    // A console session cookie instead of a key header.
    let sessions = [
        SessionError::Ended,
        SessionError::Ambiguous,
        SessionError::Csrf("no token"),
    ];
    for s in &sessions {
        match s {
            SessionError::Ended | SessionError::Ambiguous | SessionError::Csrf(_) => {}
        }
    }
    all.extend(sessions.into_iter().map(GatewayError::from));
    all
}

/// Whether answers on `path` are marked no-store: the API and the
/// console's session routes. Judged more loosely than the router judges
/// paths (leading and trailing `/` ignored), so no spelling of such a
/// path escapes it, not even a refused one.
fn no_store(path: &str) -> bool {
    let mut segs = path.trim_matches('/').split('/');
    match segs.next() {
        Some("api") => true,
        Some("console") => segs.next() == Some("session"),
        _ => false,
    }
}

/// Sent on every admin answer (the console's pages, the API's JSON, the
/// errors): no script but the console's own files, no inline script or
/// style, no framing (clickjacking), no `Referer` leaving the console, no
/// content sniffing. The OpenAPI document says so once rather than on
/// every response.
pub(crate) const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'",
    ),
    (http::header::X_FRAME_OPTIONS, "DENY"),
    (http::header::REFERRER_POLICY, "no-referrer"),
    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// The headers every admin answer gets, whatever route or error made it:
/// its request id, the security headers, and for `no_store` paths
/// no-store. The OpenAPI test runs answers through this too, so the
/// document lists what is really sent.
fn finish(h: &mut HeaderMap, request_id: &str, no_store: bool) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    // Create and roll answer with a plaintext key, and every other API
    // answer describes credentials: no browser, proxy or CLI cache may
    // keep a copy (RFC 9111 §5.2.2.5; `Pragma` for HTTP/1.0 caches,
    // RFC 9111 §5.4). Set here, once, so no route can forget it.
    if no_store {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
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
