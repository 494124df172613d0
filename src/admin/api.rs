//! The `/api/v1/*` handlers. Each returns a response or a `GatewayError`;
//! store work runs on the blocking pool.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use super::{ReloadRequest, json, only};
use crate::auth::keys::{self, NewKey};
use crate::body::Body;
use crate::clock::rfc3339;
use crate::config::units::format_duration;
use crate::config::{AuthMode, TokenKind, ValueSource};
use crate::error::GatewayError;
use crate::snapshot::Snapshot;
use crate::state::Shared;
use crate::tokens::values;

/// Admin request bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

pub async fn dispatch(
    shared: &Arc<Shared>,
    reload: &mpsc::Sender<ReloadRequest>,
    method: Method,
    rest: &[String],
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["status"] => only(&method, Method::GET).map(|()| status(shared)),
        ["reload"] => {
            only(&method, Method::POST)?;
            do_reload(reload).await
        }
        ["connectors"] => only(&method, Method::GET).map(|()| connectors(shared)),
        ["tokens"] => only(&method, Method::GET).map(|()| tokens(shared)),
        ["tokens", name, "value"] => {
            only(&method, Method::PUT)?;
            let body: SetValue = read_json(req).await?;
            let (s, n) = (Arc::clone(shared), name.to_string());
            blocking(move || {
                values::set(
                    s.runtime_values(),
                    &s.snapshot().config.tokens,
                    &n,
                    &body.value,
                )
            })
            .await?;
            Ok(json(StatusCode::OK, &token_json(shared, name)))
        }
        ["tokens", name, "refresh"] => {
            only(&method, Method::POST)?;
            let snap = shared.snapshot();
            let spec = snap
                .config
                .tokens
                .get(*name)
                .ok_or_else(|| GatewayError::NotFound(format!("no token named `{name}`")))?;
            if !matches!(spec.kind, TokenKind::HttpRequest(_)) {
                return Err(GatewayError::Conflict(format!(
                    "token `{name}` is of type `{}`; only http_request tokens are refreshed",
                    spec.type_name()
                )));
            }
            let r = snap
                .refreshers
                .get(*name)
                .map(Arc::clone)
                .ok_or_else(|| GatewayError::CredentialUnavailable(name.to_string()))?;
            let seen = snap.values.get(name).map(|v| v.version);
            r.refresh_after(seen)
                .await
                .map_err(|_| GatewayError::CredentialUnavailable(name.to_string()))?;
            Ok(json(StatusCode::OK, &token_json(shared, name)))
        }
        ["clients"] => only(&method, Method::GET).map(|()| clients(shared)),
        ["keys"] => match method {
            Method::GET => Ok(list_keys(shared)),
            Method::POST => create_key(shared, req).await,
            _ => Err(GatewayError::MethodNotAllowed),
        },
        ["keys", id] => {
            only(&method, Method::DELETE)?;
            let force = force(&req)?;
            let (shared, id) = (Arc::clone(shared), id.to_string());
            blocking(move || keys::revoke(shared.as_ref(), &id, force, SystemTime::now())).await?;
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        ["keys", id, "roll"] => {
            only(&method, Method::POST)?;
            roll_key(shared, id, req).await
        }
        _ => Err(GatewayError::NotFound("no such admin route".into())),
    }
}

/// `?force=true` overrides the last-admin-key rule (see `keys`). Only
/// `force=true` or `force=false` is understood; anything else in the query
/// is refused rather than ignored, so a misspelt `force` is an error, not
/// a request that quietly runs without it.
fn force(req: &Request<Incoming>) -> Result<bool, GatewayError> {
    let mut force = false;
    for pair in req.uri().query().unwrap_or("").split('&') {
        match pair {
            "" => {}
            "force=true" => force = true,
            "force=false" => force = false,
            _ if pair.starts_with("force=") || pair == "force" => {
                return Err(GatewayError::BadRequest(
                    "force must be `true` or `false`".into(),
                ));
            }
            _ => {
                return Err(GatewayError::BadRequest(
                    "unknown query parameter; this route takes only `force`".into(),
                ));
            }
        }
    }
    Ok(force)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GatewayError> + Send + 'static,
) -> Result<T, GatewayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| GatewayError::Internal)?
}

/// Reads a JSON body: over 64 KiB → 413, not JSON or unknown fields → 400.
/// An empty body reads as `{}`.
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, GatewayError> {
    if req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
    {
        return Err(GatewayError::BodyTooLarge);
    }
    let bytes: Bytes = crate::body::read_at_most(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GatewayError::BodyTooLarge
            } else {
                GatewayError::BadRequest("the request body could not be read".into())
            }
        })?;
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::BadRequest(format!(
            "invalid JSON body: {}",
            crate::secret::redact_quoted(&e.to_string())
        ))
    })
}

fn status(shared: &Shared) -> Response<Body> {
    let snap = shared.snapshot();
    let last = shared.reload_status();
    let tls = shared.tls_status();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "generation": snap.generation,
            "loaded_at": rfc3339(snap.loaded_at),
            "config_path": snap.config.path.display().to_string(),
            "last_reload": last,
            "tls": tls,
        }),
    )
}

async fn do_reload(reload: &mpsc::Sender<ReloadRequest>) -> Result<Response<Body>, GatewayError> {
    let (tx, rx) = oneshot::channel();
    reload.send(tx).await.map_err(|_| GatewayError::Internal)?;
    match rx.await.map_err(|_| GatewayError::Internal)? {
        Ok(generation) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "generation": generation}),
        )),
        Err(errs) => Err(GatewayError::BadRequest(format!(
            "config rejected, the last good config keeps serving: {}",
            errs.iter()
                .map(|e| match (e.line, e.column) {
                    (Some(l), Some(c)) => format!("{l}:{c}: {}", e.message),
                    _ => e.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

fn connectors(shared: &Shared) -> Response<Body> {
    let snap = shared.snapshot();
    let list: Vec<_> = snap
        .config
        .connectors
        .values()
        .map(|c| {
            let tokens: Vec<_> = c
                .headers
                .tokens()
                .iter()
                .map(|(h, t)| {
                    let prefix = snap.config.tokens.get(t).and_then(|s| s.prefix.clone());
                    serde_json::json!({"name": t, "header": h.as_str(), "prefix": prefix})
                })
                .collect();
            let statics: Vec<&str> = c.headers.statics().iter().map(|(h, _)| h.as_str()).collect();
            serde_json::json!({
                "name": c.name,
                "description": c.description,
                "upstream": c.upstream.to_string(),
                "listen": c.listen.map(|l| l.to_string()),
                "auth": match c.auth { AuthMode::ApiKey => "api_key", AuthMode::None => "none" },
                "tokens": tokens,
                "static_headers": statics,
                "timeouts": {"connect": format_duration(c.connect_timeout), "response": format_duration(c.response_timeout)},
                "max_request_body": c.max_request_body,
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "connectors": list }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetValue {
    value: String,
}

fn token_json(shared: &Shared, name: &str) -> serde_json::Value {
    let snap = shared.snapshot();
    snap.config
        .tokens
        .get(name)
        .map(|spec| one_token(&snap, spec, &snap.values))
        .unwrap_or(serde_json::Value::Null)
}

fn tokens(shared: &Shared) -> Response<Body> {
    let snap = shared.snapshot();
    let list: Vec<_> = snap
        .config
        .tokens
        .values()
        .map(|spec| one_token(&snap, spec, &snap.values))
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "tokens": list }))
}

/// A token's state for the admin API: never its value.
fn one_token(
    snap: &Snapshot,
    spec: &crate::config::TokenSpec,
    set: &crate::tokens::TokenSet,
) -> serde_json::Value {
    let now = SystemTime::now();
    let value = set.get(&spec.name).filter(|v| v.usable(now));
    let source = match (&spec.kind, spec.source()) {
        (TokenKind::HttpRequest(h), _) => {
            serde_json::json!({"kind": "http_request", "url": h.url.to_string()})
        }
        (TokenKind::User(u), _) => {
            serde_json::json!({"kind": "caller", "from_header": u.from_header.as_str()})
        }
        (_, Some(ValueSource::Env(name))) => serde_json::json!({"kind": "env", "env": name}),
        (_, Some(ValueSource::File(p))) => {
            serde_json::json!({"kind": "file", "file": p.display().to_string()})
        }
        (_, Some(ValueSource::Literal(_))) => serde_json::json!({"kind": "literal"}),
        (_, None) => serde_json::json!({"kind": "admin"}),
    };
    let refresher = snap.refreshers.get(&spec.name).map(|r| r.state());
    let user_error = snap.users.get(&spec.name).and_then(|u| u.last_error());
    let state = match (&spec.kind, &refresher) {
        (TokenKind::User(_), _) => "per_request",
        (_, Some(r)) if r.refreshing => "refreshing",
        _ if value.is_some() => "ready",
        _ => "unavailable",
    };
    let last_error = refresher
        .and_then(|r| r.last_error)
        .or(user_error)
        .or_else(|| set.errors.get(&spec.name).cloned());
    serde_json::json!({
        "name": spec.name,
        "description": spec.description,
        "type": spec.type_name(),
        "header": spec.header.as_str(),
        "prefix": spec.prefix,
        "source": source,
        "state": state,
        "version": value.map(|v| v.version),
        "fingerprint": value.map(|v| v.fingerprint.clone()),
        "updated_at": value.map(|v| rfc3339(v.updated_at)),
        "expires_at": value.and_then(|v| v.expires_at).map(rfc3339),
        "last_error": last_error,
    })
}

fn clients(shared: &Shared) -> Response<Body> {
    let snap = shared.snapshot();
    let list: Vec<_> = snap
        .config
        .clients
        .values()
        .map(|c| {
            let roles: Vec<_> = c
                .roles
                .iter()
                .map(|r| {
                    let admin = snap.config.roles.get(r).is_some_and(|x| x.admin);
                    serde_json::json!({"name": r, "admin": admin})
                })
                .collect();
            serde_json::json!({"name": c.name, "description": c.description, "roles": roles})
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "clients": list }))
}

fn list_keys(shared: &Shared) -> Response<Body> {
    let now = SystemTime::now();
    let mut all = shared.keys().all_with(&shared.snapshot().declared_keys);
    all.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let list: Vec<_> = all.iter().map(|r| keys::metadata(shared, r, now)).collect();
    json(StatusCode::OK, &serde_json::json!({ "keys": list }))
}

async fn create_key(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let new: NewKey = read_json(req).await?;
    let s = Arc::clone(shared);
    let (secret, record) =
        blocking(move || keys::create(s.as_ref(), &new, SystemTime::now())).await?;
    let mut body = keys::metadata(shared.as_ref(), &record, SystemTime::now());
    body["key"] = serde_json::Value::String(secret.expose().to_string());
    Ok(json(StatusCode::CREATED, &body))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Roll {
    grace: Option<String>,
}

async fn roll_key(
    shared: &Arc<Shared>,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let force = force(&req)?;
    let roll: Roll = read_json(req).await?;
    let grace = match roll.grace {
        None => DEFAULT_GRACE,
        Some(g) => keys::parse_key_duration("grace", &g)?,
    };
    let (s, id) = (Arc::clone(shared), id.to_string());
    let old_id = id.clone();
    let (secret, record) =
        blocking(move || keys::roll(s.as_ref(), &id, grace, force, SystemTime::now())).await?;
    let mut body = keys::metadata(shared.as_ref(), &record, SystemTime::now());
    body["key"] = serde_json::Value::String(secret.expose().to_string());
    body["rolled_from"] = serde_json::Value::String(old_id);
    Ok(json(StatusCode::CREATED, &body))
}
