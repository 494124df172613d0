//! The proxy service, as named phases run in order for every request:
//!
//! 1. `route`        — check the target cannot escape, pick the connector
//!    (one snapshot load, kept to the end);
//! 2. `authenticate` — the caller's keygate API key; for `auth: none`, that
//!    the caller is a local program and not a browser (`local`);
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
use std::time::{Instant, SystemTime};

use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue,
    PROXY_AUTHORIZATION,
};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::hop;
use super::local;
use super::rewrite::{self, ForwardPath};
use crate::auth::caller::{self, X_API_KEY};
use crate::auth::{self, KeyRecord, grants};
use crate::body::Body;
use crate::config::AuthMode;
use crate::config::TokenKind;
use crate::config::listen_matches;
use crate::error::{ErrorCode, GatewayError, X_REQUEST_ID};
use crate::secret::Secret;
use crate::snapshot::{ConnectorRuntime, Snapshot};
use crate::state::Shared;
use crate::tokens::{self, refresh::Refresher};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Prefix of the headers a caller uses to hand keygate a `user` token.
pub const TOKEN_HEADER_PREFIX: &str = "keygate-token-";
/// Longest caller-supplied request id we pass on; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Which listener a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    /// `/<connector>/<rest>` on `server.listen`. Never serves an
    /// `auth: none` connector.
    Shared,
    /// A connector's dedicated `listen` port: the whole path is `<rest>`.
    /// `bound` is the address the socket actually has, which is what the
    /// loopback rule is checked against on every request.
    Dedicated {
        connector: String,
        bound: SocketAddr,
    },
}

#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

/// What the access log line reports; filled in as the phases run.
#[derive(Debug, Default)]
pub struct Outcome {
    pub connector: Option<String>,
    pub client: Option<String>,
    pub key_id: Option<String>,
    /// `(token name, fingerprint)` of every injected credential.
    pub tokens: Vec<(String, String)>,
    pub upstream_status: Option<u16>,
    pub error: Option<ErrorCode>,
}

impl crate::listen::Handler for Proxy {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send {
        self.handle(req, peer)
    }
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
        // What only the access log needs is captured only when it is on.
        let logging = tracing::enabled!(target: "keygate::access", tracing::Level::INFO);
        let logged = logging.then(|| {
            (
                req.method().clone(),
                req.uri().path().to_string(),
                content_length(req.headers()),
            )
        });
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
        let elapsed = started.elapsed().as_secs_f64();
        let metrics = &self.shared.metrics();
        if let Some(c) = &out.connector {
            metrics.request(c, resp.status().as_u16(), elapsed);
            for (token, _) in &out.tokens {
                metrics.injected(c, token);
            }
        }
        if let Some(reason) = out.error.and_then(ErrorCode::auth_failure) {
            metrics.auth_failure(reason);
        }
        let Some((method, path, bytes_in)) = logged else {
            return resp;
        };
        let tokens = out
            .tokens
            .iter()
            .map(|(n, f)| format!("{n}:{f}"))
            .collect::<Vec<_>>()
            .join(",");
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
            error = out.error.map_or("-", ErrorCode::as_str),
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
        let snap = self.shared.snapshot();
        let (conn, uri, path) = route(&snap, &self.listener, &req)?;
        out.connector = Some(conn.spec.name.clone());

        match conn.spec.auth {
            AuthMode::ApiKey => {
                let record = caller::authenticate(snap.keyring(self.shared.keys()), req.headers())?;
                out.client = Some(record.client.clone());
                out.key_id = Some(record.id.clone());
                authorize(&snap, &record, &conn, req.method(), &path)?;
            }
            // No key to check, so the caller must at least be a local
            // program and not a web page in a local browser.
            AuthMode::None => local::check(req.uri(), req.headers())?,
        }
        let limit = conn.spec.max_request_body;
        if content_length(req.headers()).is_some_and(|n| n > limit) {
            return Err(GatewayError::BodyTooLarge);
        }

        let creds = credentials(&snap, &conn, req.headers()).await?;
        let head = prepare(&mut req, &conn, &creds, uri, request_id, peer, out);
        let fetched: Vec<(Arc<Refresher>, u64)> =
            creds.into_iter().filter_map(|c| c.refresher).collect();
        let tripped = Arc::new(AtomicBool::new(false));
        let incoming = req.into_body();

        // A request that used a fetched token may be retried once after an
        // upstream 401, if its body is empty or small enough to keep.
        let (body, kept) = if fetched.is_empty() {
            (Body::limited(incoming, limit, Arc::clone(&tripped)), None)
        } else {
            match keep_small_body(&head.headers, incoming).await? {
                Kept::Bytes(b) => (Body::full(b.clone()), Some(b)),
                Kept::Stream(incoming) => {
                    (Body::limited(incoming, limit, Arc::clone(&tripped)), None)
                }
            }
        };
        let retry_head = kept.as_ref().map(|_| head.clone());
        let resp = forward(&conn, head.into_request(body)?, &tripped).await?;
        if resp.status() != StatusCode::UNAUTHORIZED || fetched.is_empty() {
            out.upstream_status = Some(resp.status().as_u16());
            return Ok(finish(resp));
        }

        // 401 with a fetched credential: refresh it (coalesced with every
        // other request that saw the same version, and at most once per
        // `min_refresh_interval`), then retry if we can. A refresh refused
        // by that limit passes the upstream's 401 through unchanged.
        let mut fresh = Vec::with_capacity(fetched.len());
        for (r, version) in &fetched {
            if let Ok(v) = r.refresh_after_401(*version).await {
                fresh.push((r.token.header.clone(), r.token.name.clone(), v));
            }
        }
        match (retry_head, kept) {
            (Some(mut head), Some(bytes)) if fresh.len() == fetched.len() => {
                drop(resp);
                for (header, name, v) in &fresh {
                    head.headers.insert(header.clone(), v.header_value.clone());
                    if let Some(t) = out.tokens.iter_mut().find(|t| &t.0 == name) {
                        t.1 = v.fingerprint.clone();
                    }
                }
                let resp = forward(&conn, head.into_request(Body::full(bytes))?, &tripped).await?;
                out.upstream_status = Some(resp.status().as_u16());
                Ok(finish(resp))
            }
            _ => {
                out.upstream_status = Some(resp.status().as_u16());
                Ok(finish(resp))
            }
        }
    }
}

/// Bodies up to this size are kept so a request can be retried once after
/// a credential refresh (larger ones stream and are not retried).
const RETRY_KEEP: usize = 64 * 1024;

enum Kept {
    Bytes(bytes::Bytes),
    Stream(Incoming),
}

async fn keep_small_body(headers: &HeaderMap, incoming: Incoming) -> Result<Kept, GatewayError> {
    use http_body::Body as _;
    match content_length(headers) {
        Some(n) if usize::try_from(n).is_ok_and(|n| n <= RETRY_KEEP) => {
            let collected = crate::body::read_at_most(incoming, RETRY_KEEP)
                .await
                .map_err(|_| {
                    GatewayError::BadRequest("the request body could not be read".into())
                })?;
            Ok(Kept::Bytes(collected))
        }
        None if incoming.is_end_stream() => Ok(Kept::Bytes(bytes::Bytes::new())),
        _ => Ok(Kept::Stream(incoming)),
    }
}

/// The outbound request head, kept apart from the body so a retry can
/// reuse it.
#[derive(Debug, Clone)]
pub struct OutboundHead {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
}

impl OutboundHead {
    fn into_request(self, body: Body) -> Result<Request<Body>, GatewayError> {
        let mut req = Request::builder()
            .method(self.method)
            .uri(self.uri)
            .version(Version::HTTP_11)
            .body(body)
            .map_err(|_| GatewayError::Internal)?;
        *req.headers_mut() = self.headers;
        Ok(req)
    }
}

/// One credential to write upstream, resolved for this request.
pub struct Credential {
    pub header: HeaderName,
    pub token: String,
    pub value: HeaderValue,
    pub fingerprint: String,
    /// For fetched tokens: who refreshes it, and the version used.
    pub refresher: Option<(Arc<Refresher>, u64)>,
    /// For user tokens: the caller's header it came from (removed).
    pub strip: Option<HeaderName>,
}

/// Resolves every credential first: a request is sent with all of them or
/// not at all. Fetched tokens are fetched on first need (single flight);
/// user tokens come from the caller and may be checked as JWTs.
async fn credentials(
    snap: &Snapshot,
    conn: &ConnectorRuntime,
    headers: &HeaderMap,
) -> Result<Vec<Credential>, GatewayError> {
    let set = &snap.values;
    let now = SystemTime::now();
    let plan = conn.spec.headers.tokens();
    let mut out = Vec::with_capacity(plan.len());
    for (header, name) in plan {
        let unavailable = || GatewayError::CredentialUnavailable(name.clone());
        let spec = snap.config.tokens.get(name).ok_or_else(unavailable)?;
        let cred = match &spec.kind {
            TokenKind::Text { .. } => {
                let v = set.get(name).ok_or_else(unavailable)?;
                Credential {
                    header: header.clone(),
                    token: name.clone(),
                    value: v.header_value.clone(),
                    fingerprint: v.fingerprint.clone(),
                    refresher: None,
                    strip: None,
                }
            }
            TokenKind::HttpRequest(_) => {
                let r = snap
                    .refreshers
                    .get(name)
                    .map(Arc::clone)
                    .ok_or_else(unavailable)?;
                let v = match set.get(name).filter(|v| v.usable(now)) {
                    Some(v) => Arc::clone(v),
                    None => r.get().await.map_err(|_| unavailable())?,
                };
                Credential {
                    header: header.clone(),
                    token: name.clone(),
                    value: v.header_value.clone(),
                    fingerprint: v.fingerprint.clone(),
                    refresher: Some((r, v.version)),
                    strip: None,
                }
            }
            TokenKind::User(u) => {
                let invalid = || GatewayError::InvalidUserToken(name.clone());
                let raw = headers
                    .get(&u.from_header)
                    .ok_or_else(|| GatewayError::MissingUserToken(name.clone()))?;
                let text = raw
                    .to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(invalid)?;
                if u.jwt.is_some() {
                    let verifier = snap.users.get(name).map(Arc::clone).ok_or_else(invalid)?;
                    verifier.check(text).await.map_err(|_| invalid())?;
                }
                let secret = Secret::new(text);
                Credential {
                    header: header.clone(),
                    token: name.clone(),
                    value: tokens::render(spec.prefix.as_deref(), &secret)
                        .map_err(|_| invalid())?,
                    fingerprint: secret.fingerprint(),
                    refresher: None,
                    strip: Some(u.from_header.clone()),
                }
            }
        };
        out.push(cred);
    }
    Ok(out)
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

/// Phase 1: the target stays inside a known connector. The returned
/// [`ForwardPath`] is both what grants are matched on and what the upstream
/// URI is built from: one string, so the two can never disagree.
///
/// An `auth: none` connector exists only on its own dedicated listener,
/// and only while that socket is bound to loopback: anywhere else it
/// answers exactly like a connector that does not exist, so the shared
/// listener does not even reveal its name.
/// A dedicated listener serves its connector only while the connector's
/// `listen` still names it: connections kept alive on a port a reload
/// released reach nothing.
fn route(
    snap: &Snapshot,
    listener: &Listener,
    req: &Request<Incoming>,
) -> Result<(Arc<ConnectorRuntime>, http::Uri, ForwardPath), GatewayError> {
    let checked = rewrite::check_target(req)?;
    let (conn, rest) = match listener {
        Listener::Shared => {
            let (name, rest) = checked
                .split_connector()
                .ok_or(GatewayError::UnknownConnector)?;
            let conn = snap
                .routes
                .connectors
                .get(name)
                .filter(|c| c.spec.auth == AuthMode::ApiKey)
                .ok_or(GatewayError::UnknownConnector)?;
            (conn, rest)
        }
        Listener::Dedicated { connector, bound } => {
            let conn = snap
                .routes
                .connectors
                .get(connector)
                .filter(|c| {
                    c.spec
                        .listen
                        .is_some_and(|want| listen_matches(*bound, want))
                        && (c.spec.auth == AuthMode::ApiKey || bound.ip().is_loopback())
                })
                .ok_or(GatewayError::UnknownConnector)?;
            (conn, checked.whole())
        }
    };
    let path = rest.forward(conn.spec.allow_encoded_slash)?;
    let uri = rewrite::upstream_uri(&conn.spec.upstream, &path, req.uri().query())?;
    Ok((Arc::clone(conn), uri, path))
}

/// Phase 3: the key's roles allow this connector, method and path.
fn authorize(
    snap: &Snapshot,
    record: &KeyRecord,
    conn: &ConnectorRuntime,
    method: &http::Method,
    path: &ForwardPath,
) -> Result<(), GatewayError> {
    let held =
        auth::effective_roles(&snap.config.clients, record).ok_or(GatewayError::InvalidApiKey)?;
    if grants::allows(
        &snap.config.roles,
        held,
        &conn.spec.name,
        method,
        path.as_str(),
    ) {
        Ok(())
    } else {
        Err(GatewayError::Forbidden)
    }
}

/// Takes keygate's console session cookie out of the `Cookie` headers: a
/// browser signed in to the console sends it to every port of the host,
/// and no upstream may receive a credential for keygate's admin API.
/// Other cookies pass unchanged; a header left empty is dropped.
fn drop_session_cookie(h: &mut HeaderMap) {
    let name = caller::SESSION_COOKIE.as_bytes();
    let carries = |v: &HeaderValue| {
        v.as_bytes()
            .split(|b| *b == b';')
            .any(|pair| pair.trim_ascii_start().starts_with(name))
    };
    if !h.get_all(COOKIE).iter().any(carries) {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| {
            let rest: Vec<&[u8]> = v
                .as_bytes()
                .split(|b| *b == b';')
                .map(<[u8]>::trim_ascii)
                .filter(|pair| {
                    let ours = pair.starts_with(name) && pair.get(name.len()) == Some(&b'=');
                    !pair.is_empty() && !ours
                })
                .collect();
            (!rest.is_empty()).then(|| HeaderValue::from_bytes(&rest.join(&b"; "[..])).ok())?
        })
        .collect();
    h.remove(COOKIE);
    for v in kept {
        h.append(COOKIE, v);
    }
}

/// Phase 4: the outbound request head, built in place from the caller's.
/// Public (and generic over the body) so the benchmarks run this very code.
pub fn prepare<B>(
    req: &mut Request<B>,
    conn: &ConnectorRuntime,
    creds: &[Credential],
    uri: http::Uri,
    request_id: &str,
    peer: SocketAddr,
    out: &mut Outcome,
) -> OutboundHead {
    let spec = &conn.spec;
    let h = req.headers_mut();
    hop::strip(h);
    if spec.auth == AuthMode::ApiKey {
        h.remove(AUTHORIZATION);
        h.remove(X_API_KEY);
    }
    // RFC 9110 §11.7.2: Proxy-Authorization is for the proxy that the
    // client talks to (here: keygate, which does not use it); the next hop
    // must never receive the caller's proxy credentials.
    h.remove(PROXY_AUTHORIZATION);
    drop_session_cookie(h);
    let user_headers: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with(TOKEN_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in user_headers {
        h.remove(name);
    }
    for c in creds {
        if let Some(from) = &c.strip {
            h.remove(from);
        }
    }
    h.remove(HOST);
    for c in creds {
        // insert() replaces every caller value of that name.
        h.insert(c.header.clone(), c.value.clone());
        out.tokens.push((c.token.clone(), c.fingerprint.clone()));
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
    OutboundHead {
        method: req.method().clone(),
        uri,
        headers: std::mem::take(req.headers_mut()),
    }
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
