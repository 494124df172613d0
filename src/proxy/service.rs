//! The proxy service, as named phases run in order for every request:
//!
//! 1. `route`        — check the target cannot escape, pick the connector
//!    (one snapshot load, kept to the end);
//! 2. `authenticate` — the caller's keygate API key (unless `auth: none`);
//! 3. `authorize`    — the key's roles allow connector, method and path;
//! 4. `prepare`      — build the outbound request: strip caller credentials,
//!    `Keygate-Token-*` and hop-by-hop headers, inject tokens
//!    (one token-set load) and static headers;
//! 5. `forward`      — send through the connector's pooled client, bounded by
//!    `timeouts.response` until headers arrive;
//! 6. `finish`       — strip hop-by-hop from the response, add
//!    `X-Request-Id`, write the access log line.
//!
//! Any phase may end the request with a [`GatewayError`]; the service itself
//! is infallible and turns the error into the response in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use super::{hop, rewrite};
use crate::auth::{self, KeyRecord, grants};
use crate::body::Body;
use crate::caller::{self, X_API_KEY};
use crate::config::AuthMode;
use crate::error::{GatewayError, X_REQUEST_ID};
use crate::state::{ConnectorRuntime, Shared, Snapshot};
use crate::tokens::TokenSet;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Prefix of the headers a caller uses to hand keygate a `user` token.
pub const TOKEN_HEADER_PREFIX: &str = "keygate-token-";
/// Longest caller-supplied request id we pass on; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Which listener a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// `/<connector>/<rest>` on `server.listen`.
    Shared,
    /// A connector's dedicated `listen` port: the whole path is `<rest>`.
    Dedicated(String),
}

#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

/// What the access log line reports; filled in as the phases run.
#[derive(Debug, Default)]
struct Outcome {
    connector: Option<String>,
    client: Option<String>,
    key_id: Option<String>,
    tokens: Vec<(String, String)>,
    upstream_status: Option<u16>,
    error: Option<&'static str>,
}

impl Proxy {
    pub fn new(shared: Arc<Shared>, listener: Listener) -> Self {
        Proxy {
            shared,
            listener: Arc::new(listener),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(&self.shared, req.headers());
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let bytes_in = content_length(req.headers());
        let mut out = Outcome::default();
        let mut resp = match self.run(req, peer, &request_id, &mut out).await {
            Ok(resp) => resp,
            Err(err) => {
                out.error = Some(err.code());
                err.to_response(&request_id)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(X_REQUEST_ID, v);
        }
        let tokens = out
            .tokens
            .iter()
            .map(|(n, f)| format!("{n}:{f}"))
            .collect::<Vec<_>>()
            .join(",");
        let elapsed = started.elapsed().as_secs_f64();
        let metrics = &self.shared.metrics;
        if let Some(c) = &out.connector {
            metrics.request(c, resp.status().as_u16(), elapsed);
            for (token, _) in &out.tokens {
                metrics.injected(c, token);
            }
        }
        if let Some(
            code @ ("missing_api_key" | "invalid_api_key" | "api_key_expired" | "forbidden"),
        ) = out.error
        {
            metrics.auth_failure(code);
        }
        tracing::info!(
            target: "keygate::access",
            request_id = %request_id,
            client = out.client.as_deref().unwrap_or("-"),
            key_id = out.key_id.as_deref().unwrap_or("-"),
            connector = out.connector.as_deref().unwrap_or("-"),
            tokens = %tokens,
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            upstream_status = out.upstream_status.unwrap_or(0),
            error = out.error.unwrap_or("-"),
            duration_ms = elapsed * 1000.0,
            bytes_in = bytes_in.unwrap_or(0),
            bytes_out = content_length(resp.headers()).unwrap_or(0),
        );
        resp
    }

    async fn run(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        request_id: &str,
        out: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let snap = self.shared.snapshot.load_full();
        let (conn, uri, rest) = route(&snap, &self.listener, &req)?;
        out.connector = Some(conn.spec.name.clone());

        if conn.spec.auth == AuthMode::ApiKey {
            let record = caller::authenticate(&self.shared, &snap, req.headers())?;
            out.client = Some(record.client.clone());
            out.key_id = Some(record.id.clone());
            authorize(&snap, &record, &conn, req.method(), &rest)?;
        }

        let tripped = Arc::new(AtomicBool::new(false));
        let tokens = self.shared.tokens.load();
        let outbound = prepare(&mut req, &conn, &tokens, uri, request_id, peer, out)?;
        let incoming = req.into_body();
        let body = Body::limited(incoming, conn.spec.max_request_body, Arc::clone(&tripped));
        let outbound = outbound.body(body).map_err(|_| GatewayError::Internal)?;

        let resp = forward(&conn, outbound, &tripped).await?;
        out.upstream_status = Some(resp.status().as_u16());
        Ok(finish(resp))
    }
}

fn request_id(shared: &Shared, headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty() && s.len() <= MAX_REQUEST_ID && s.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_string)
        .unwrap_or_else(|| shared.request_id())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Phase 1: the target stays inside a known connector.
fn route(
    snap: &Snapshot,
    listener: &Listener,
    req: &Request<Incoming>,
) -> Result<(Arc<ConnectorRuntime>, http::Uri, String), GatewayError> {
    rewrite::check_target(req)?;
    let path = req.uri().path();
    let (name, rest) = match listener {
        Listener::Shared => rewrite::split_connector(path).ok_or(GatewayError::UnknownConnector)?,
        Listener::Dedicated(name) => (name.as_str(), path),
    };
    let conn = snap
        .connectors
        .get(name)
        .ok_or(GatewayError::UnknownConnector)?;
    let uri = rewrite::upstream_uri(&conn.spec.upstream, rest, req.uri().query())?;
    let rest = if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    };
    Ok((Arc::clone(conn), uri, rest))
}

/// Phase 3: the key's roles allow this connector, method and path.
fn authorize(
    snap: &Snapshot,
    record: &KeyRecord,
    conn: &ConnectorRuntime,
    method: &http::Method,
    rest: &str,
) -> Result<(), GatewayError> {
    let roles =
        auth::effective_roles(&snap.config.clients, record).ok_or(GatewayError::InvalidApiKey)?;
    if grants::allows(&snap.config.roles, &roles, &conn.spec.name, method, rest) {
        Ok(())
    } else {
        Err(GatewayError::Forbidden)
    }
}

/// Phase 4: the outbound request head, built in place from the caller's.
fn prepare(
    req: &mut Request<Incoming>,
    conn: &ConnectorRuntime,
    tokens: &TokenSet,
    uri: http::Uri,
    request_id: &str,
    peer: SocketAddr,
    out: &mut Outcome,
) -> Result<http::request::Builder, GatewayError> {
    let spec = &conn.spec;
    if content_length(req.headers()).is_some_and(|n| n > spec.max_request_body) {
        return Err(GatewayError::BodyTooLarge);
    }
    // Resolve every credential first: a request is sent with all of them or
    // not at all.
    let mut injected = Vec::with_capacity(spec.headers.tokens().len());
    for (header, token) in spec.headers.tokens() {
        let value = tokens
            .get(token)
            .ok_or_else(|| GatewayError::CredentialUnavailable(token.clone()))?;
        injected.push((header, token, value));
    }

    let h = req.headers_mut();
    hop::strip(h);
    if spec.auth == AuthMode::ApiKey {
        h.remove(AUTHORIZATION);
        h.remove(X_API_KEY);
    }
    let user_headers: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with(TOKEN_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in user_headers {
        h.remove(name);
    }
    h.remove(HOST);
    for (header, token, value) in &injected {
        // insert() replaces every caller value of that name.
        h.insert((*header).clone(), value.header_value.clone());
        out.tokens
            .push(((*token).clone(), value.fingerprint.clone()));
    }
    for (name, value) in spec.headers.statics() {
        h.insert(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    if spec.forward_client_ip {
        let ip = peer.ip().to_string();
        let joined = match h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&joined) {
            h.insert(X_FORWARDED_FOR, v);
        }
    }

    let mut builder = Request::builder()
        .method(req.method().clone())
        .uri(uri)
        .version(Version::HTTP_11);
    if let Some(hm) = builder.headers_mut() {
        std::mem::swap(hm, req.headers_mut());
    }
    Ok(builder)
}

/// Phase 5: send, bounded by the response timeout until headers arrive.
async fn forward(
    conn: &ConnectorRuntime,
    outbound: Request<Body>,
    tripped: &AtomicBool,
) -> Result<Response<Incoming>, GatewayError> {
    let sent =
        tokio::time::timeout(conn.spec.response_timeout, conn.client.request(outbound)).await;
    match sent {
        Err(_) => Err(GatewayError::UpstreamTimeout),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => {
            if tripped.load(Ordering::Acquire) {
                return Err(GatewayError::BodyTooLarge);
            }
            tracing::warn!(connector = %conn.spec.name, error = %e, connect = e.is_connect(), "upstream request failed");
            Err(GatewayError::UpstreamUnavailable)
        }
    }
}

/// Phase 6: the upstream response passes through unchanged apart from
/// hop-by-hop headers.
fn finish(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    hop::strip(&mut parts.headers);
    Response::from_parts(parts, Body::Stream(body))
}
