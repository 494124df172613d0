//! The admin route table and the matcher that reads it. [`ROUTES`] is the
//! one place a route exists: dispatch, `404` (no pattern matches), `405`
//! with `Allow` (a pattern matches, the method does not), which routes need
//! an admin key, the OpenAPI cross-check and the route list in the module
//! doc (checked by a test below) all come from it.
//!
//! Paths are matched as sent, segment by segment, without percent-decoding:
//! a non-canonical path (an empty segment, as in `//api/v1/keys` or
//! `/api/v1/keys/`) matches nothing, so no second spelling of a route
//! exists for a header rule or an upstream proxy's path filter to miss.
//! Deliberately no router crate: fourteen routes with two kinds of segment
//! need a loop, not a radix tree.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::reply::IntoReply;
use super::session::{self, Sessions};
use super::{api, audit_log, catalog, console, document, probes};
use crate::audit::Actor;
use crate::body::Body;
use crate::error::GatewayError;
use crate::objects::Command;
use crate::state::Shared;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the admin listener: probes and metrics.
    Open,
    /// An API key of a client holding a role with `admin: true`.
    Admin,
}

/// What a handler gets: the state, the path parameters its pattern named,
/// who is calling, and the request (for its headers, query and body).
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    /// Into the one reload loop.
    pub commands: mpsc::Sender<Command>,
    pub params: Params,
    /// The admin key's client and id; `None` on `Open` routes.
    pub actor: Option<Actor>,
    /// The console's sessions, and the one the request used (if it came
    /// with the session cookie rather than a key header).
    pub sessions: Arc<Sessions>,
    pub session: Option<session::Current>,
    /// Whether the admin listener has its own TLS.
    pub tls: bool,
    pub req: Request<Incoming>,
}

impl Ctx {
    /// The actor of an `Admin` route, for the audit log. `Open` routes
    /// have none, so asking there is a bug in the table: `500`.
    pub fn actor(&self) -> Result<Actor, GatewayError> {
        self.actor.clone().ok_or(GatewayError::Internal)
    }
}

/// A handler with its answer type erased. Built by `route!` from an
/// `async fn(Ctx) -> Result<impl IntoReply, GatewayError>`.
pub(crate) type Handler = fn(Ctx) -> BoxFuture<'static, Result<Response<Body>, GatewayError>>;

/// One row of the table.
pub struct Route {
    pub method: Method,
    /// `/`-separated segments; `{name}` matches any one non-empty segment.
    pub pattern: &'static str,
    pub access: Access,
    pub(crate) handler: Handler,
    /// The answers the handler's type can give, for the OpenAPI test;
    /// inferred from the handler, so it cannot name the wrong type.
    #[cfg(test)]
    pub(crate) answers: fn() -> Vec<super::openapi_check::Answer>,
}

/// `route!(GET "/api/v1/keys/{id}", Admin, api::revoke_key)`: one row, with
/// the handler's typed answer turned into a response.
macro_rules! route {
    ($method:ident $pattern:literal, $access:ident, $handler:path) => {
        Route {
            method: Method::$method,
            pattern: $pattern,
            access: Access::$access,
            handler: |cx| Box::pin(async move { IntoReply::into_reply($handler(cx).await?) }),
            #[cfg(test)]
            answers: || super::openapi_check::answers_of($handler),
        }
    };
}

/// Every route the admin listener serves. The module doc of `admin` lists
/// the same rows in the same order, and `openapi.yaml` describes each one.
pub static ROUTES: &[Route] = &[
    route!(GET "/healthz", Open, probes::healthz),
    route!(GET "/readyz", Open, probes::readyz),
    route!(GET "/metrics", Open, probes::metrics),
    route!(GET "/api/v1/status", Admin, api::status),
    route!(POST "/api/v1/reload", Admin, api::reload),
    route!(GET "/api/v1/connectors", Admin, api::connectors),
    route!(POST "/api/v1/connectors", Admin, catalog::create_connector),
    route!(GET "/api/v1/connectors/{name}", Admin, catalog::get_connector),
    route!(PATCH "/api/v1/connectors/{name}", Admin, catalog::patch_connector),
    route!(DELETE "/api/v1/connectors/{name}", Admin, catalog::delete_connector),
    route!(PUT "/api/v1/connectors/{name}/tokens", Admin, catalog::set_connector_tokens),
    route!(GET "/api/v1/tokens", Admin, api::tokens),
    route!(POST "/api/v1/tokens", Admin, catalog::create_token),
    route!(GET "/api/v1/tokens/{name}", Admin, catalog::get_token),
    route!(PATCH "/api/v1/tokens/{name}", Admin, catalog::patch_token),
    route!(DELETE "/api/v1/tokens/{name}", Admin, catalog::delete_token),
    route!(PUT "/api/v1/tokens/{name}/value", Admin, api::set_token_value),
    route!(POST "/api/v1/tokens/{name}/refresh", Admin, api::refresh_token),
    route!(GET "/api/v1/roles", Admin, catalog::roles),
    route!(POST "/api/v1/roles", Admin, catalog::create_role),
    route!(GET "/api/v1/roles/{name}", Admin, catalog::get_role),
    route!(PATCH "/api/v1/roles/{name}", Admin, catalog::patch_role),
    route!(DELETE "/api/v1/roles/{name}", Admin, catalog::delete_role),
    route!(GET "/api/v1/clients", Admin, api::clients),
    route!(POST "/api/v1/clients", Admin, catalog::create_client),
    route!(GET "/api/v1/clients/{name}", Admin, catalog::get_client),
    route!(PATCH "/api/v1/clients/{name}", Admin, catalog::patch_client),
    route!(DELETE "/api/v1/clients/{name}", Admin, catalog::delete_client),
    route!(GET "/api/v1/keys", Admin, api::list_keys),
    route!(POST "/api/v1/keys", Admin, api::create_key),
    route!(DELETE "/api/v1/keys/{id}", Admin, api::revoke_key),
    route!(POST "/api/v1/keys/{id}/roll", Admin, api::roll_key),
    route!(GET "/api/v1/export", Admin, catalog::export),
    route!(GET "/api/v1/audit", Admin, audit_log::list),
    route!(GET "/api/v1/openapi.yaml", Admin, document::yaml),
    route!(GET "/api/v1/openapi.json", Admin, document::json),
    route!(GET "/console", Open, console::redirect),
    route!(GET "/console/", Open, console::index),
    route!(POST "/console/session", Open, console::sign_in),
    route!(GET "/console/session", Admin, console::current),
    route!(DELETE "/console/session", Admin, console::sign_out),
    route!(GET "/console/{asset}", Open, console::asset),
];

/// The values of a matched pattern's `{name}` segments, as sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The segment named `name` in the route's pattern. A handler asking
    /// for a name its pattern lacks is a bug in the table: `500`.
    pub fn get(&self, name: &str) -> Result<&str, GatewayError> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .ok_or(GatewayError::Internal)
    }
}

impl Route {
    /// The parameters if `segments` fit this route's pattern.
    fn matches(&self, segments: &[&str]) -> Option<Params> {
        let mut parts = self.pattern.strip_prefix('/')?.split('/');
        let mut params = Params::default();
        let mut segments = segments.iter();
        for part in parts.by_ref() {
            let seg = segments.next()?;
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(_) if seg.is_empty() => return None,
                Some(name) => params.0.push((name, (*seg).to_string())),
                None if part == *seg => {}
                None => return None,
            }
        }
        segments.next().is_none().then_some(params)
    }
}

/// `/a/b` → `["a", "b"]`, `/a/` → `["a", ""]`, `/` → `[]`; `None` for a
/// path with an empty segment before its last or without the leading
/// `/`. A trailing `/` matches only a pattern that ends with one
/// (`/console/`); no `{name}` matches an empty segment.
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let (_, init) = segs.split_last()?;
    init.iter().all(|s| !s.is_empty()).then_some(segs)
}

fn not_found() -> GatewayError {
    GatewayError::NotFound("no such admin route".into())
}

/// The route for `method` and `path`: `404` when no pattern matches,
/// `405` naming the methods that pattern has when only the method is
/// wrong (RFC 9110 §15.5.6 requires the `Allow` list).
pub(crate) fn find(method: &Method, path: &str) -> Result<(&'static Route, Params), GatewayError> {
    let segs = segments(path).ok_or_else(not_found)?;
    let mut allow = Vec::new();
    for route in ROUTES {
        let Some(params) = route.matches(&segs) else {
            continue;
        };
        if route.method == *method {
            return Ok((route, params));
        }
        allow.push(route.method.clone());
    }
    if allow.is_empty() {
        Err(not_found())
    } else {
        Err(GatewayError::MethodNotAllowed(allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> (&'static str, Params) {
        let (route, params) = find(&method, path).expect(path);
        (route.pattern, params)
    }

    #[test]
    fn patterns_match_segment_by_segment_and_name_their_parameters() {
        assert_eq!(found(Method::GET, "/healthz").0, "/healthz");
        let (pattern, params) = found(Method::DELETE, "/api/v1/keys/key_abc");
        assert_eq!(pattern, "/api/v1/keys/{id}");
        assert_eq!(params.get("id"), Ok("key_abc"));
        assert_eq!(params.get("name"), Err(GatewayError::Internal));
        let (pattern, params) = found(Method::PUT, "/api/v1/tokens/github/value");
        assert_eq!(pattern, "/api/v1/tokens/{name}/value");
        assert_eq!(params.get("name"), Ok("github"));
        // As sent: no percent-decoding, so `%2F` stays inside one segment.
        let (_, params) = found(Method::POST, "/api/v1/tokens/a%2Fb/refresh");
        assert_eq!(params.get("name"), Ok("a%2Fb"));
        // The console's page is the one pattern with a trailing `/`; its
        // session route comes before the files.
        assert_eq!(found(Method::GET, "/console/").0, "/console/");
        assert_eq!(found(Method::GET, "/console").0, "/console");
        assert_eq!(found(Method::GET, "/console/session").0, "/console/session");
        let (pattern, params) = found(Method::GET, "/console/app.js");
        assert_eq!(pattern, "/console/{asset}");
        assert_eq!(params.get("asset"), Ok("app.js"));
    }

    #[test]
    fn an_unknown_or_non_canonical_path_is_404() {
        for path in [
            "/",
            "",
            "healthz",
            "/nothing",
            "/api/v1",
            "/api/v1/keys/a/b",
            "/api/v1/tokens/x/y",
            "//api/v1/keys",
            "/api/v1/keys/",
            "//api/v1/keys//",
            "/api//v1/keys",
            "/healthz/",
            "/console//",
            "//console/",
            "/console/session/",
        ] {
            assert_eq!(
                find(&Method::GET, path).map(|(r, _)| r.pattern),
                Err(not_found()),
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_known_path_with_another_method_is_405_listing_the_allowed_ones() {
        let allow = |m: Method, p: &str| match find(&m, p) {
            Err(GatewayError::MethodNotAllowed(allow)) => allow,
            other => panic!("{m} {p}: {:?}", other.map(|(r, _)| r.pattern)),
        };
        assert_eq!(
            allow(Method::PUT, "/api/v1/keys"),
            [Method::GET, Method::POST]
        );
        assert_eq!(allow(Method::GET, "/api/v1/keys/key_x"), [Method::DELETE]);
        assert_eq!(allow(Method::POST, "/healthz"), [Method::GET]);
        assert_eq!(allow(Method::HEAD, "/metrics"), [Method::GET]);
    }

    #[test]
    fn the_table_has_one_row_per_method_and_path_shape() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            let shape: Vec<&str> = r
                .pattern
                .split('/')
                .map(|s| if s.starts_with('{') { "{}" } else { s })
                .collect();
            assert!(
                seen.insert((r.method.to_string(), shape.join("/"))),
                "{} {} overlaps another row",
                r.method,
                r.pattern
            );
            assert!(
                r.pattern.starts_with('/') && segments(r.pattern).is_some(),
                "{}",
                r.pattern
            );
            // Everything under /api/ needs a key, and outside it only the
            // console's session: `handle` marks those answers no-store.
            assert_eq!(
                r.access == Access::Admin,
                r.pattern.starts_with("/api/")
                    || r.pattern == "/console/session" && r.method != Method::POST,
                "{}",
                r.pattern
            );
            if r.access == Access::Admin {
                assert!(super::super::no_store(r.pattern), "{}", r.pattern);
            }
        }
    }

    /// The route list in the module doc of `admin` is the table, row by
    /// row: method, path and whether a key is needed.
    #[test]
    fn the_module_doc_lists_every_route_in_table_order() {
        let doc: Vec<(String, String, String)> = include_str!("mod.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .filter_map(|l| l.strip_prefix("//! | `"))
            .map(|row| {
                let cols: Vec<&str> = row.split('|').map(str::trim).collect();
                let (route, key, does) = (cols[0], cols[1], cols[2]);
                assert!(!does.is_empty(), "{row}: says what it does");
                let (method, path) = route
                    .trim_end_matches('`')
                    .split_once(' ')
                    .expect("`METHOD /path`");
                (method.to_string(), path.to_string(), key.to_string())
            })
            .collect();
        let table: Vec<(String, String, String)> = ROUTES
            .iter()
            .map(|r| {
                let key = match r.access {
                    Access::Open => "no",
                    Access::Admin => "admin",
                };
                (r.method.to_string(), r.pattern.to_string(), key.to_string())
            })
            .collect();
        assert_eq!(doc, table, "src/admin/mod.rs doc and ROUTES differ");
    }
}
