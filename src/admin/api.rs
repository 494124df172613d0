//! The `/api/v1/*` handlers, one `async fn` per row of the route table,
//! and the `Serialize` types they answer with (the OpenAPI test checks
//! those against `openapi.yaml`). Each returns its answer or a
//! `GatewayError`; store work runs on the blocking pool. Routing, the admin
//! key check and `no-store` happen before and after, in `router` and `mod`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_LENGTH;
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::page::{PageQuery, page};
use super::reply::{Created, IntoReply, Json, NoContent, json};
use super::router::Ctx;
use crate::audit::{self, Action, Record};
use crate::auth::keys::{self, KeyMetadata, NewKey};
use crate::clock::{rfc3339, to_ms};
use crate::config::units::format_duration;
use crate::config::{AuthMode, Client, Config, Connector, Section, TokenKind, ValueSource};
use crate::error::GatewayError;
use crate::objects::Command;
use crate::secret::Secret;
use crate::snapshot::Snapshot;
use crate::state::{ReloadStatus, Shared, TlsStatus};
use crate::tokens::values;

/// Admin request bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// `GET /api/v1/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub generation: u64,
    pub loaded_at: String,
    pub config_path: String,
    pub last_reload: ReloadStatus,
    /// `None` when the proxy listener is plain HTTP.
    pub tls: Option<TlsStatus>,
    /// Where the shared proxy listener is bound (`127.0.0.1:8080`);
    /// `None` before it is.
    pub proxy_listen: Option<String>,
    /// This replica among several (PostgreSQL store); absent with SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::state::ReplicaStatus>,
}

pub async fn status(cx: Ctx) -> Result<Json<Status>, GatewayError> {
    let shared = &cx.shared;
    let snap = shared.snapshot();
    let last = shared.reload_status();
    let tls = shared.tls_status();
    Ok(Json(Status {
        generation: snap.generation,
        loaded_at: rfc3339(snap.loaded_at),
        config_path: snap.config.path.display().to_string(),
        last_reload: last,
        tls,
        proxy_listen: shared.proxy_addr().map(|a| a.to_string()),
        replica: shared.cluster().map(crate::state::Cluster::status),
    }))
}

/// `POST /api/v1/reload` when the new config is in service; a rejected
/// one is `400` naming every problem.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// Always `true`: kept for clients that test it.
    pub ok: bool,
    pub generation: u64,
}

pub async fn reload(cx: Ctx) -> Result<Json<Reloaded>, GatewayError> {
    let (tx, rx) = oneshot::channel();
    cx.commands
        .send(Command::Reload(tx))
        .await
        .map_err(|_| GatewayError::Internal)?;
    match rx.await.map_err(|_| GatewayError::Internal)? {
        Ok(generation) => Ok(Json(Reloaded {
            ok: true,
            generation,
        })),
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

/// `GET /api/v1/connectors`, by name, paged (see `page`).
#[derive(Debug, Serialize)]
pub struct ConnectorList {
    pub connectors: Vec<ConnectorView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConnectorView {
    pub name: String,
    pub description: Option<String>,
    pub upstream: String,
    /// The dedicated port, if the connector has one.
    pub listen: Option<String>,
    /// `api_key` or `none`.
    pub auth: &'static str,
    pub tokens: Vec<ConnectorToken>,
    /// The names of the static headers; never their values.
    pub static_headers: Vec<String>,
    pub timeouts: Timeouts,
    pub max_request_body: u64,
    #[serde(flatten)]
    pub owner: Ownership,
}

/// Who owns a catalog object: the config file (read-only here) or the
/// admin API, with the version `ETag` and `If-Match` carry.
#[derive(Debug, Serialize)]
pub struct Ownership {
    pub source: ObjectSource,
    /// The file a `config` object comes from (`built-in` for the
    /// `keygate-admin` role and client); `None` for API objects.
    pub file: Option<String>,
    /// `None` for `config` objects: they change with the file.
    pub version: Option<u64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectSource {
    Config,
    Api,
}

impl Ownership {
    pub fn of(config: &Config, section: Section, name: &str) -> Self {
        match config.from_api.get(&(section, name.to_string())) {
            Some(def) => Ownership {
                source: ObjectSource::Api,
                file: None,
                version: Some(def.version),
                created_at: Some(rfc3339(from_ms(def.created_ms))),
                updated_at: Some(rfc3339(from_ms(def.updated_ms))),
            },
            None => Ownership {
                source: ObjectSource::Config,
                file: Some(
                    crate::objects::config_owner(config, section, name)
                        .unwrap_or_else(|| config.path.display().to_string()),
                ),
                version: None,
                created_at: None,
                updated_at: None,
            },
        }
    }
}

fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A token a connector injects, and where.
#[derive(Debug, Serialize)]
pub struct ConnectorToken {
    pub name: String,
    pub header: String,
    pub prefix: Option<String>,
}

/// Durations as the config spells them (`5s`, `2m`).
#[derive(Debug, Serialize)]
pub struct Timeouts {
    pub connect: String,
    pub response: String,
}

pub async fn connectors(cx: Ctx) -> Result<Json<ConnectorList>, GatewayError> {
    let q = PageQuery::parse(cx.req.uri().query())?;
    let snap = cx.shared.snapshot();
    let (items, next_cursor) = page(snap.config.connectors.values(), |c| c.name.clone(), &q);
    let list: Vec<_> = items
        .into_iter()
        .map(|c| connector_view(&snap, c))
        .collect();
    Ok(Json(ConnectorList {
        connectors: list,
        next_cursor,
    }))
}

/// One connector as the admin API shows it.
pub(super) fn connector_view(snap: &Snapshot, c: &Connector) -> ConnectorView {
    let tokens: Vec<_> = c
        .headers
        .tokens()
        .iter()
        .map(|(h, t)| {
            let prefix = snap.config.tokens.get(t).and_then(|s| s.prefix.clone());
            ConnectorToken {
                name: t.clone(),
                header: h.as_str().to_string(),
                prefix,
            }
        })
        .collect();
    let statics = c
        .headers
        .statics()
        .iter()
        .map(|(h, _)| h.as_str().to_string())
        .collect();
    ConnectorView {
        name: c.name.clone(),
        description: c.description.clone(),
        upstream: c.upstream.to_string(),
        listen: c.listen.map(|l| l.to_string()),
        auth: match c.auth {
            AuthMode::ApiKey => "api_key",
            AuthMode::None => "none",
        },
        tokens,
        static_headers: statics,
        timeouts: Timeouts {
            connect: format_duration(c.connect_timeout),
            response: format_duration(c.response_timeout),
        },
        max_request_body: c.max_request_body,
        owner: Ownership::of(&snap.config, Section::Connectors, &c.name),
    }
}

/// `GET /api/v1/tokens`, by name, paged (see `page`).
#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
    pub next_cursor: Option<String>,
}

pub async fn tokens(cx: Ctx) -> Result<Json<TokenList>, GatewayError> {
    let q = PageQuery::parse(cx.req.uri().query())?;
    let shared = &cx.shared;
    let snap = shared.snapshot();
    let set = &snap.values;
    let (items, next_cursor) = page(snap.config.tokens.values(), |t| t.name.clone(), &q);
    let list: Vec<_> = items
        .into_iter()
        .map(|spec| one_token(&snap, spec, set))
        .collect();
    Ok(Json(TokenList {
        tokens: list,
        next_cursor,
    }))
}

/// A token's state for the admin API: never its value.
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub name: String,
    pub description: Option<String>,
    /// `text`, `http_request` or `user`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub header: String,
    pub prefix: Option<String>,
    /// Who owns the definition: `config` (the file) or `api`.
    pub source: ObjectSource,
    /// The file a `config` token comes from.
    pub file: Option<String>,
    /// The definition's version (`ETag`, `If-Match`); `None` for `config`
    /// tokens. `version` below is the *value's*.
    pub definition_version: Option<u64>,
    pub created_at: Option<String>,
    pub definition_updated_at: Option<String>,
    /// Where the value comes from.
    pub value_source: TokenSource,
    pub state: TokenState,
    pub version: Option<u64>,
    /// First 8 hex digits of the value's SHA-256.
    pub fingerprint: Option<String>,
    pub updated_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_error: Option<String>,
}

/// Where a token's value comes from.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenSource {
    HttpRequest {
        url: String,
    },
    /// A `user` token: each caller sends its own.
    Caller {
        from_header: String,
    },
    Env {
        env: String,
    },
    File {
        file: String,
    },
    Literal,
    /// Set at run time through `PUT /api/v1/tokens/{name}/value`.
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Ready,
    Unavailable,
    Refreshing,
    /// A `user` token has a value per request, none of its own.
    PerRequest,
}

pub(super) fn one_token(
    snap: &Snapshot,
    spec: &crate::config::TokenSpec,
    set: &crate::tokens::TokenSet,
) -> TokenView {
    let now = SystemTime::now();
    let value = set.get(&spec.name).filter(|v| v.usable(now));
    let source = match (&spec.kind, spec.source()) {
        (TokenKind::HttpRequest(h), _) => TokenSource::HttpRequest {
            url: h.url.to_string(),
        },
        (TokenKind::User(u), _) => TokenSource::Caller {
            from_header: u.from_header.as_str().to_string(),
        },
        (_, Some(ValueSource::Env(name))) => TokenSource::Env { env: name.clone() },
        (_, Some(ValueSource::File(p))) => TokenSource::File {
            file: p.display().to_string(),
        },
        (_, Some(ValueSource::Literal(_))) => TokenSource::Literal,
        (_, None) => TokenSource::Admin,
    };
    let refresher = snap.refreshers.get(&spec.name).map(|r| r.state());
    let user_error = snap.users.get(&spec.name).and_then(|u| u.last_error());
    let state = match (&spec.kind, &refresher) {
        (TokenKind::User(_), _) => TokenState::PerRequest,
        (_, Some(r)) if r.refreshing => TokenState::Refreshing,
        _ if value.is_some() => TokenState::Ready,
        _ => TokenState::Unavailable,
    };
    let last_error = refresher
        .and_then(|r| r.last_error)
        .map(|e| e.to_string())
        .or(user_error.map(|e| e.to_string()))
        .or_else(|| set.errors.get(&spec.name).cloned());
    let owner = Ownership::of(&snap.config, Section::Tokens, &spec.name);
    TokenView {
        name: spec.name.clone(),
        description: spec.description.clone(),
        kind: spec.type_name(),
        header: spec.header.as_str().to_string(),
        prefix: spec.prefix.clone(),
        source: owner.source,
        file: owner.file,
        definition_version: owner.version,
        created_at: owner.created_at,
        definition_updated_at: owner.updated_at,
        value_source: source,
        state,
        version: value.map(|v| v.version),
        fingerprint: value.map(|v| v.fingerprint.clone()),
        updated_at: value.map(|v| rfc3339(v.updated_at)),
        expires_at: value.and_then(|v| v.expires_at).map(rfc3339),
        last_error,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetValue {
    value: String,
}

/// One token after a change; `404` if a reload dropped it meanwhile.
pub(super) fn token_view(shared: &Shared, name: &str) -> Result<TokenView, GatewayError> {
    let snap = shared.snapshot();
    let set = &snap.values;
    snap.config
        .tokens
        .get(name)
        .map(|spec| one_token(&snap, spec, set))
        .ok_or_else(|| GatewayError::NotFound(format!("no token named `{name}`")))
}

/// `PUT /api/v1/tokens/{name}/value`; audited with the versions and
/// fingerprints before and after, never the value.
pub async fn set_token_value(cx: Ctx) -> Result<Json<TokenView>, GatewayError> {
    let actor = cx.actor()?;
    let (shared, name) = (&cx.shared, cx.params.get("name")?);
    let body: SetValue = read_json(cx.req).await?;
    let (s, n) = (Arc::clone(shared), name.to_string());
    blocking(move || {
        let swapped = values::set(
            s.runtime_values(),
            &s.snapshot().config.tokens,
            &n,
            &body.value,
        )?;
        audit::record(s.store(), swapped.record(&actor, &n));
        Ok::<_, values::TokenValueError>(())
    })
    .await?;
    token_view(shared, name).map(Json)
}

/// `POST /api/v1/tokens/{name}/refresh`.
pub async fn refresh_token(cx: Ctx) -> Result<Json<TokenView>, GatewayError> {
    let (shared, name) = (&cx.shared, cx.params.get("name")?);
    let snap = shared.snapshot();
    let spec = snap
        .config
        .tokens
        .get(name)
        .ok_or_else(|| GatewayError::NotFound(format!("no token named `{name}`")))?;
    if !matches!(spec.kind, TokenKind::HttpRequest(_)) {
        return Err(GatewayError::Conflict(format!(
            "token `{name}` is of type `{}`; only http_request tokens are refreshed",
            spec.type_name()
        )));
    }
    // Refreshers run only for tokens some connector uses: an unused
    // token has nothing to refresh, which is the caller's doing (409),
    // not an outage of its endpoint (503).
    let r = snap.refreshers.get(name).map(Arc::clone).ok_or_else(|| {
        GatewayError::Conflict(format!(
            "token `{name}` is not used by any connector; it is fetched only for one"
        ))
    })?;
    let seen = snap.values.get(name).map(|v| v.version);
    r.refresh_after(seen)
        .await
        .map_err(|_| GatewayError::CredentialUnavailable(name.to_string()))?;
    token_view(shared, name).map(Json)
}

/// `GET /api/v1/clients`, by name, paged (see `page`).
#[derive(Debug, Serialize)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClientView {
    pub name: String,
    pub description: Option<String>,
    pub roles: Vec<RoleRef>,
    #[serde(flatten)]
    pub owner: Ownership,
}

/// A role a client holds, and whether it opens the admin API.
#[derive(Debug, Serialize)]
pub struct RoleRef {
    pub name: String,
    pub admin: bool,
}

pub async fn clients(cx: Ctx) -> Result<Json<ClientList>, GatewayError> {
    let q = PageQuery::parse(cx.req.uri().query())?;
    let snap = cx.shared.snapshot();
    let (items, next_cursor) = page(snap.config.clients.values(), |c| c.name.clone(), &q);
    let list: Vec<_> = items
        .into_iter()
        .map(|c| client_view(&snap.config, c))
        .collect();
    Ok(Json(ClientList {
        clients: list,
        next_cursor,
    }))
}

/// One client as the admin API shows it.
pub(super) fn client_view(config: &Config, c: &Client) -> ClientView {
    let roles: Vec<_> = c
        .roles
        .iter()
        .map(|r| {
            let admin = config.roles.get(r).is_some_and(|x| x.admin);
            RoleRef {
                name: r.clone(),
                admin,
            }
        })
        .collect();
    ClientView {
        name: c.name.clone(),
        description: c.description.clone(),
        roles,
        owner: Ownership::of(config, Section::Clients, &c.name),
    }
}

/// `GET /api/v1/keys`, oldest first (creation time, then id), paged (see
/// `page`): a store may hold 100 000 keys.
#[derive(Debug, Serialize)]
pub struct KeyList {
    pub keys: Vec<KeyMetadata>,
    pub next_cursor: Option<String>,
}

pub async fn list_keys(cx: Ctx) -> Result<Json<KeyList>, GatewayError> {
    let q = PageQuery::parse(cx.req.uri().query())?;
    let shared = &cx.shared;
    let now = SystemTime::now();
    let all = shared.keys().all_with(&shared.snapshot().declared_keys);
    let (items, next_cursor) = page(all, |r| (to_ms(r.created_at), r.id.clone()), &q);
    let list: Vec<_> = items
        .iter()
        .map(|r| keys::metadata(shared.as_ref(), r, now))
        .collect();
    Ok(Json(KeyList {
        keys: list,
        next_cursor,
    }))
}

/// `POST /api/v1/keys`: the new key, shown this once, with its metadata.
/// No `Debug`: it holds a plaintext key.
#[derive(Serialize)]
pub struct KeyCreated {
    #[serde(flatten)]
    pub metadata: KeyMetadata,
    #[serde(serialize_with = "expose")]
    pub key: Secret,
}

/// `POST /api/v1/keys/{id}/roll`: the successor, shown this once, with
/// its metadata and the key it replaces. No `Debug`: it holds a plaintext
/// key.
#[derive(Serialize)]
pub struct KeyRolled {
    #[serde(flatten)]
    pub metadata: KeyMetadata,
    #[serde(serialize_with = "expose")]
    pub key: Secret,
    pub rolled_from: String,
}

/// The one place a new key's plaintext is written out: the answer to the
/// operator who created or rolled it.
fn expose<S: serde::Serializer>(key: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(key.expose())
}

pub async fn create_key(cx: Ctx) -> Result<Created<KeyCreated>, GatewayError> {
    let actor = cx.actor()?;
    let shared = &cx.shared;
    let new: NewKey = read_json(cx.req).await?;
    let s = Arc::clone(shared);
    let (secret, record) = blocking(move || {
        let now = SystemTime::now();
        let (secret, record) = keys::create(s.as_ref(), &new, now)?;
        let rec = Record::new(&actor, Action::KeyCreate, &record.id)
            .at(now)
            .detail(format!(
                "client `{}`, name `{}`",
                record.client, record.name
            ));
        audit::record(s.store(), rec);
        Ok::<_, keys::KeyError>((secret, record))
    })
    .await?;
    Ok(Created(KeyCreated {
        metadata: keys::metadata(shared.as_ref(), &record, SystemTime::now()),
        key: secret,
    }))
}

/// `DELETE /api/v1/keys/{id}`; one audit record per key revoked (the key,
/// then each live successor it took with it).
pub async fn revoke_key(cx: Ctx) -> Result<Revoked, GatewayError> {
    let actor = cx.actor()?;
    let force = force(&cx.req)?;
    let (shared, id) = (Arc::clone(&cx.shared), cx.params.get("id")?.to_string());
    let replication = cx.shared.cluster().map(|c| Arc::clone(&c.replication));
    let revoked = blocking(move || {
        let now = SystemTime::now();
        let revoked = match (keys::revoke(shared.as_ref(), &id, force, now), replication) {
            // Made on another replica a moment ago and not applied here
            // yet: take it from the store, then revoke it.
            (Err(keys::KeyError::NotFound(_)), Some(r)) => {
                keys::apply_stored(shared.as_ref(), &id, || r.load_key(&id))?;
                keys::revoke(shared.as_ref(), &id, force, now)?
            }
            (result, _) => result?,
        };
        for rid in &revoked {
            let rec = Record::new(&actor, Action::KeyRevoke, rid).at(now);
            let rec = if *rid != id {
                rec.detail(format!("rolled from `{id}`, revoked with it"))
            } else if force {
                rec.detail("force=true")
            } else {
                rec
            };
            audit::record(shared.store(), rec);
        }
        Ok::<_, keys::KeyError>(revoked)
    })
    .await?;
    // `None`: applied everywhere (or there is only this replica).
    let pending = match cx.shared.cluster().map(|c| c.wait_applied()) {
        None => None,
        Some(wait) => match wait.await {
            Ok(names) if names.is_empty() => None,
            Ok(names) => {
                tracing::warn!(replicas = ?names, "revocation not yet applied by every live replica; they turn not-ready until they catch up");
                Some(names)
            }
            Err(e) => {
                // Revoked and stored; only the wait for the others failed.
                tracing::warn!(error = %e, "revoked, but the replicas' acknowledgements could not be read");
                Some(Vec::new())
            }
        },
    };
    Ok(match pending {
        None => Revoked::Everywhere,
        Some(pending_replicas) => Revoked::Pending(RevokePending {
            revoked,
            pending_replicas,
        }),
    })
}

/// The answer to a revocation: `204` once every live replica applied it,
/// `202` naming those that had not within `store.postgres.ack_timeout`
/// (SPEC §8).
#[derive(Debug)]
pub enum Revoked {
    Everywhere,
    Pending(RevokePending),
}

#[derive(Debug, serde::Serialize)]
pub struct RevokePending {
    /// The key ids revoked (the key first, then its live successors).
    pub revoked: Vec<String>,
    /// Live replicas that had not applied it yet (empty when their state
    /// could not be read).
    pub pending_replicas: Vec<String>,
}

impl IntoReply for Revoked {
    fn into_reply(self) -> Result<http::Response<crate::body::Body>, GatewayError> {
        match self {
            Revoked::Everywhere => NoContent.into_reply(),
            Revoked::Pending(p) => json(http::StatusCode::ACCEPTED, &p),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Roll {
    grace: Option<String>,
}

/// `POST /api/v1/keys/{id}/roll`; audited on the old key, naming the
/// successor.
pub async fn roll_key(cx: Ctx) -> Result<Created<KeyRolled>, GatewayError> {
    let actor = cx.actor()?;
    let (shared, id) = (&cx.shared, cx.params.get("id")?);
    let force = force(&cx.req)?;
    let roll: Roll = read_json(cx.req).await?;
    let grace = match roll.grace {
        None => DEFAULT_GRACE,
        Some(g) => keys::parse_key_duration("grace", &g)?,
    };
    let (s, id) = (Arc::clone(shared), id.to_string());
    let old_id = id.clone();
    let (secret, record) = blocking(move || {
        let now = SystemTime::now();
        let (secret, record) = keys::roll(s.as_ref(), &id, grace, force, now)?;
        let forced = if force { ", force=true" } else { "" };
        let rec = Record::new(&actor, Action::KeyRoll, &id)
            .at(now)
            .detail(format!(
                "successor `{}`, grace {}{forced}",
                record.id,
                format_duration(grace)
            ));
        audit::record(s.store(), rec);
        Ok::<_, keys::KeyError>((secret, record))
    })
    .await?;
    Ok(Created(KeyRolled {
        metadata: keys::metadata(shared.as_ref(), &record, SystemTime::now()),
        key: secret,
        rolled_from: old_id,
    }))
}

/// `?force=true` overrides the last-admin-key rule (see `keys`). Only
/// `force=true` or `force=false` is understood; anything else in the query
/// is refused rather than ignored, so a misspelt `force` is an error, not
/// a request that quietly runs without it.
pub(super) fn force(req: &Request<Incoming>) -> Result<bool, GatewayError> {
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

/// Runs store work on the blocking pool; its domain error becomes an
/// answer through `error.rs`.
pub(super) async fn blocking<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, GatewayError>
where
    GatewayError: From<E>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| GatewayError::Internal)?
        .map_err(GatewayError::from)
}

/// Reads a JSON body: over 64 KiB → 413, not JSON or unknown fields → 400.
/// An empty body reads as `{}`.
pub(super) async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, GatewayError> {
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
