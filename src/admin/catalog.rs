//! The run-time catalog routes (SPEC §7): create, read, update and delete
//! tokens, connectors, roles and clients, attach tokens to a connector,
//! and export the effective catalog. Each change goes to the one reload
//! loop as an `objects::Change` and is answered once published, so the
//! next proxied request sees it.
//!
//! Bodies are the config file's shape as JSON plus `name` (create only).
//! `PATCH` is an RFC 7396 merge patch. `GET` answers carry the object's
//! version as a strong `ETag`; `PATCH`, `PUT` and `DELETE` honour
//! `If-Match` (`412` on another version).

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH};
use http::{Request, Response};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::api::{
    ClientView, ConnectorView, Ownership, TokenView, blocking, client_view, connector_view,
    read_json, token_view,
};
use super::page::{PageQuery, page};
use super::reply::{Created, IntoReply, Json, NoContent};
use super::router::Ctx;
use crate::audit::{self, Action, Actor, Record};
use crate::auth::keys;
use crate::body::Body;
use crate::config::{Config, Role, Section};
use crate::error::GatewayError;
use crate::objects::{Applied, Change, Command, Op, Problem};
use crate::state::Shared;

/// YAML's registered media type (RFC 9512).
pub const YAML: &str = "application/yaml";

/// A success answer with the object's version as its `ETag` (none for
/// objects from the file: they change with it).
pub struct Tagged<R> {
    pub version: Option<u64>,
    pub reply: R,
}

impl<R: IntoReply> IntoReply for Tagged<R> {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut resp = self.reply.into_reply()?;
        if let Some(v) = self.version
            && let Ok(tag) = HeaderValue::from_str(&format!("\"{v}\""))
        {
            resp.headers_mut().insert(ETAG, tag);
        }
        Ok(resp)
    }
}

/// `GET /api/v1/roles`.
#[derive(Debug, Serialize)]
pub struct RoleList {
    pub roles: Vec<RoleView>,
    pub next_cursor: Option<String>,
}

/// A role and what it allows.
#[derive(Debug, Serialize)]
pub struct RoleView {
    pub name: String,
    pub description: Option<String>,
    pub admin: bool,
    pub allow: Vec<GrantView>,
    #[serde(flatten)]
    pub owner: Ownership,
}

/// One grant: a connector, and the methods and paths it is narrowed to
/// (`None`: all).
#[derive(Debug, Serialize)]
pub struct GrantView {
    pub connector: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
}

fn role_view(config: &Config, r: &Role) -> RoleView {
    RoleView {
        name: r.name.clone(),
        description: r.description.clone(),
        admin: r.admin,
        allow: r
            .grants
            .iter()
            .map(|g| GrantView {
                connector: g.connector.clone(),
                methods: g
                    .methods
                    .as_ref()
                    .map(|m| m.iter().map(|m| m.as_str().to_string()).collect()),
                paths: g
                    .paths
                    .as_ref()
                    .map(|p| p.iter().map(|p| p.as_str().to_string()).collect()),
            })
            .collect(),
        owner: Ownership::of(config, Section::Roles, &r.name),
    }
}

pub async fn roles(cx: Ctx) -> Result<Json<RoleList>, GatewayError> {
    let q = PageQuery::parse(cx.req.uri().query())?;
    let snap = cx.shared.snapshot();
    let (items, next_cursor) = page(snap.config.roles.values(), |r| r.name.clone(), &q);
    let roles = items
        .into_iter()
        .map(|r| role_view(&snap.config, r))
        .collect();
    Ok(Json(RoleList { roles, next_cursor }))
}

// ---- One object: read ----

fn not_found(section: Section, name: &str) -> GatewayError {
    GatewayError::NotFound(format!("no {} named `{name}`", section.one()))
}

fn version_of(config: &Config, section: Section, name: &str) -> Option<u64> {
    config
        .from_api
        .get(&(section, name.to_string()))
        .map(|d| d.version)
}

pub async fn get_token(cx: Ctx) -> Result<Tagged<Json<TokenView>>, GatewayError> {
    let name = cx.params.get("name")?;
    let view = token_view(&cx.shared, name)?;
    Ok(Tagged {
        version: view.definition_version,
        reply: Json(view),
    })
}

fn connector_reply(
    shared: &Shared,
    name: &str,
) -> Result<Tagged<Json<ConnectorView>>, GatewayError> {
    let snap = shared.snapshot();
    let c = snap
        .config
        .connectors
        .get(name)
        .ok_or_else(|| not_found(Section::Connectors, name))?;
    Ok(Tagged {
        version: version_of(&snap.config, Section::Connectors, name),
        reply: Json(connector_view(&snap, c)),
    })
}

pub async fn get_connector(cx: Ctx) -> Result<Tagged<Json<ConnectorView>>, GatewayError> {
    connector_reply(&cx.shared, cx.params.get("name")?)
}

fn role_reply(shared: &Shared, name: &str) -> Result<Tagged<Json<RoleView>>, GatewayError> {
    let snap = shared.snapshot();
    let r = snap
        .config
        .roles
        .get(name)
        .ok_or_else(|| not_found(Section::Roles, name))?;
    Ok(Tagged {
        version: version_of(&snap.config, Section::Roles, name),
        reply: Json(role_view(&snap.config, r)),
    })
}

pub async fn get_role(cx: Ctx) -> Result<Tagged<Json<RoleView>>, GatewayError> {
    role_reply(&cx.shared, cx.params.get("name")?)
}

fn client_reply(shared: &Shared, name: &str) -> Result<Tagged<Json<ClientView>>, GatewayError> {
    let snap = shared.snapshot();
    let c = snap
        .config
        .clients
        .get(name)
        .ok_or_else(|| not_found(Section::Clients, name))?;
    Ok(Tagged {
        version: version_of(&snap.config, Section::Clients, name),
        reply: Json(client_view(&snap.config, c)),
    })
}

pub async fn get_client(cx: Ctx) -> Result<Tagged<Json<ClientView>>, GatewayError> {
    client_reply(&cx.shared, cx.params.get("name")?)
}

// ---- Changes ----

/// What a change handler needs once the request's head is read.
struct Head {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    if_match: Vec<u64>,
    actor: Actor,
}

/// Reads the head: `If-Match`, and no query but the `allowed` flags
/// (`name=true|false`), which are returned in order.
fn head<const N: usize>(
    cx: Ctx,
    allowed: [&str; N],
) -> Result<(Head, [bool; N], Request<Incoming>, super::router::Params), GatewayError> {
    let flags = flags(&cx.req, allowed)?;
    let if_match = if_match(&cx.req)?;
    let actor = cx.actor()?;
    let Ctx {
        shared,
        commands,
        params,
        req,
        ..
    } = cx;
    Ok((
        Head {
            shared,
            commands,
            if_match,
            actor,
        },
        flags,
        req,
        params,
    ))
}

/// Sends `change` to the reload loop and waits until it is published.
async fn apply(head: &Head, change: Change) -> Result<Applied, GatewayError> {
    let (tx, rx) = oneshot::channel();
    head.commands
        .send(Command::Change(change, tx))
        .await
        .map_err(|_| GatewayError::Internal)?;
    Ok(rx.await.map_err(|_| GatewayError::Internal)??)
}

/// The versions `If-Match` lists (`"3", "4"`); empty for `*` or no
/// header (any version). A tag that is no version of ours (a weak one,
/// RFC 9110 §13.1.1 compares strongly) can match nothing: `412`.
fn if_match(req: &Request<Incoming>) -> Result<Vec<u64>, GatewayError> {
    let Some(v) = req.headers().get(IF_MATCH) else {
        return Ok(Vec::new());
    };
    let text = v.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|t| {
            t.trim()
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|t| t.parse::<u64>().ok())
        })
        .collect::<Option<Vec<u64>>>()
        .filter(|tags| !tags.is_empty())
        .ok_or_else(|| {
            GatewayError::PreconditionFailed(
                "If-Match names no version of this object (send the ETag of a GET)".into(),
            )
        })
}

impl Head {
    /// The version the change must apply to: the object's own if any
    /// listed tag names it, else the first tag (which the change refuses
    /// with `412`); `None` when any version will do.
    fn version_for(&self, section: Section, name: &str) -> Option<u64> {
        let current = version_of(&self.shared.snapshot().config, section, name);
        match current {
            Some(v) if self.if_match.contains(&v) => Some(v),
            _ => self.if_match.first().copied(),
        }
    }
}

/// `?confirm=true&force=false`: each allowed flag is `true` or `false`;
/// any other parameter is refused rather than ignored.
fn flags<const N: usize>(
    req: &Request<Incoming>,
    allowed: [&str; N],
) -> Result<[bool; N], GatewayError> {
    let mut out = [false; N];
    for pair in req.uri().query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(i) = allowed.iter().position(|a| *a == key) else {
            return Err(GatewayError::BadRequest(if allowed.is_empty() {
                "this route takes no query parameters".into()
            } else {
                format!(
                    "unknown query parameter; this route takes only {}",
                    allowed.join(", ")
                )
            }));
        };
        out[i] = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(GatewayError::BadRequest(format!(
                    "{key} must be `true` or `false`"
                )));
            }
        };
    }
    Ok(out)
}

/// A create body: a JSON object with a string `name`, which is taken out
/// (the definition is stored without it).
fn split_name(body: Value) -> Result<(String, Value), GatewayError> {
    let problem = |pointer: &str, message: &str| {
        GatewayError::Unprocessable(vec![Problem {
            pointer: pointer.into(),
            at: None,
            message: message.into(),
        }])
    };
    let Value::Object(mut map) = body else {
        return Err(problem("", "the body must be a JSON object"));
    };
    match map.remove("name") {
        Some(Value::String(name)) => Ok((name, Value::Object(map))),
        Some(_) => Err(problem("/name", "`name` must be a string")),
        None => Err(problem("/name", "`name` is required")),
    }
}

/// A merge patch may repeat the name, never change it.
fn patch_body(name: &str, body: Value) -> Result<Value, GatewayError> {
    let Value::Object(mut map) = body else {
        return Ok(body);
    };
    match map.remove("name") {
        None => Ok(Value::Object(map)),
        Some(Value::String(n)) if n == name => Ok(Value::Object(map)),
        Some(_) => Err(GatewayError::Unprocessable(vec![Problem {
            pointer: "/name".into(),
            at: None,
            message: "an object cannot be renamed; create the new name and delete the old".into(),
        }])),
    }
}

/// Runs `op` on `section/name` (the name from the body for a create, from
/// the path otherwise) and returns the name once published.
async fn change(cx: Ctx, section: Section, op: OpKind) -> Result<(Head, String), GatewayError> {
    let (head, [force], req, params) = head(cx, ["force"])?;
    let (name, op) = match op {
        OpKind::Create => {
            let (name, body) = split_name(read_json(req).await?)?;
            (name, Op::Create(body))
        }
        OpKind::Patch => {
            let name = params.get("name")?.to_string();
            let body = patch_body(&name, read_json(req).await?)?;
            (name, Op::Patch(body))
        }
        OpKind::SetTokens => {
            let name = params.get("name")?.to_string();
            let body: SetTokens = read_json(req).await?;
            (name, Op::SetTokens(body.tokens))
        }
    };
    let if_match = head.version_for(section, &name);
    apply(
        &head,
        Change {
            section,
            name: name.clone(),
            op,
            if_match,
            force,
            actor: head.actor.clone(),
        },
    )
    .await?;
    Ok((head, name))
}

enum OpKind {
    Create,
    Patch,
    SetTokens,
}

/// `PUT /api/v1/connectors/{name}/tokens`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTokens {
    tokens: Vec<String>,
}

/// `DELETE` of one object; a client's live keys are revoked first, once
/// confirmed.
async fn delete(cx: Ctx, section: Section) -> Result<NoContent, GatewayError> {
    let (head, [confirm, force], _req, params) = if section == Section::Clients {
        head(cx, ["confirm", "force"])?
    } else {
        let (h, [force], r, p) = head(cx, ["force"])?;
        (h, [false, force], r, p)
    };
    let name = params.get("name")?.to_string();
    if section == Section::Clients {
        revoke_client_keys(&head, &name, confirm, force).await?;
    }
    let if_match = head.version_for(section, &name);
    apply(
        &head,
        Change {
            section,
            name,
            op: Op::Delete,
            if_match,
            force,
            actor: head.actor.clone(),
        },
    )
    .await?;
    Ok(NoContent)
}

/// A client made through the API takes its live API keys with it: they
/// are revoked (with their roll successors) before it goes, which the
/// request must confirm with `?confirm=true`. The last-admin-key rule
/// holds (`?force=true` overrides it, as for a revoke).
async fn revoke_client_keys(
    head: &Head,
    name: &str,
    confirm: bool,
    force: bool,
) -> Result<(), GatewayError> {
    let snap = head.shared.snapshot();
    if !snap.config.is_api(Section::Clients, name) {
        // The change itself answers: config-owned or not found.
        return Ok(());
    }
    // Checked before any key is revoked, not only by the change after:
    // a stale `If-Match` must leave the keys alone too.
    let current = version_of(&snap.config, Section::Clients, name);
    if !head.if_match.is_empty() && head.version_for(Section::Clients, name) != current {
        return Err(GatewayError::PreconditionFailed(format!(
            "client `{name}` is at version {}, not the version in If-Match",
            current.unwrap_or_default()
        )));
    }
    let now = SystemTime::now();
    let live: Vec<String> = head
        .shared
        .keys()
        .all()
        .iter()
        .filter(|r| {
            r.client == name
                && r.source == crate::auth::KeySource::Api
                && r.revoked_at().is_none()
                && !r.is_expired(now)
        })
        .map(|r| r.id.clone())
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    if !confirm {
        return Err(GatewayError::ConfirmationRequired(format!(
            "client `{name}` has {} live API key(s); repeat with ?confirm=true to revoke them with the client",
            live.len()
        )));
    }
    for id in live {
        let (shared, actor) = (Arc::clone(&head.shared), head.actor.clone());
        let detail = format!("client `{name}` deleted with its keys");
        let result = blocking(move || {
            let now = SystemTime::now();
            let revoked = keys::revoke(shared.as_ref(), &id, force, now)?;
            for rid in &revoked {
                let rec = Record::new(&actor, Action::KeyRevoke, rid)
                    .at(now)
                    .detail(&detail);
                audit::record(shared.store(), rec);
            }
            Ok::<_, keys::KeyError>(())
        })
        .await;
        match result {
            // Revoked meanwhile, or ended with a predecessor: gone either way.
            Err(GatewayError::NotFound(_)) | Ok(()) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub async fn create_token(cx: Ctx) -> Result<Tagged<Created<TokenView>>, GatewayError> {
    let (head, name) = change(cx, Section::Tokens, OpKind::Create).await?;
    let view = token_view(&head.shared, &name)?;
    Ok(Tagged {
        version: view.definition_version,
        reply: Created(view),
    })
}

pub async fn patch_token(cx: Ctx) -> Result<Tagged<Json<TokenView>>, GatewayError> {
    let (head, name) = change(cx, Section::Tokens, OpKind::Patch).await?;
    let view = token_view(&head.shared, &name)?;
    Ok(Tagged {
        version: view.definition_version,
        reply: Json(view),
    })
}

pub async fn delete_token(cx: Ctx) -> Result<NoContent, GatewayError> {
    delete(cx, Section::Tokens).await
}

fn created<T>(t: Tagged<Json<T>>) -> Tagged<Created<T>> {
    Tagged {
        version: t.version,
        reply: Created(t.reply.0),
    }
}

pub async fn create_connector(cx: Ctx) -> Result<Tagged<Created<ConnectorView>>, GatewayError> {
    let (head, name) = change(cx, Section::Connectors, OpKind::Create).await?;
    connector_reply(&head.shared, &name).map(created)
}

pub async fn patch_connector(cx: Ctx) -> Result<Tagged<Json<ConnectorView>>, GatewayError> {
    let (head, name) = change(cx, Section::Connectors, OpKind::Patch).await?;
    connector_reply(&head.shared, &name)
}

pub async fn set_connector_tokens(cx: Ctx) -> Result<Tagged<Json<ConnectorView>>, GatewayError> {
    let (head, name) = change(cx, Section::Connectors, OpKind::SetTokens).await?;
    connector_reply(&head.shared, &name)
}

pub async fn delete_connector(cx: Ctx) -> Result<NoContent, GatewayError> {
    delete(cx, Section::Connectors).await
}

pub async fn create_role(cx: Ctx) -> Result<Tagged<Created<RoleView>>, GatewayError> {
    let (head, name) = change(cx, Section::Roles, OpKind::Create).await?;
    role_reply(&head.shared, &name).map(created)
}

pub async fn patch_role(cx: Ctx) -> Result<Tagged<Json<RoleView>>, GatewayError> {
    let (head, name) = change(cx, Section::Roles, OpKind::Patch).await?;
    role_reply(&head.shared, &name)
}

pub async fn delete_role(cx: Ctx) -> Result<NoContent, GatewayError> {
    delete(cx, Section::Roles).await
}

pub async fn create_client(cx: Ctx) -> Result<Tagged<Created<ClientView>>, GatewayError> {
    let (head, name) = change(cx, Section::Clients, OpKind::Create).await?;
    client_reply(&head.shared, &name).map(created)
}

pub async fn patch_client(cx: Ctx) -> Result<Tagged<Json<ClientView>>, GatewayError> {
    let (head, name) = change(cx, Section::Clients, OpKind::Patch).await?;
    client_reply(&head.shared, &name)
}

pub async fn delete_client(cx: Ctx) -> Result<NoContent, GatewayError> {
    delete(cx, Section::Clients).await
}

// ---- Export ----

/// `200 OK` with the effective catalog as YAML.
pub struct Yaml(pub String);

impl IntoReply for Yaml {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut r = Response::new(Body::full(self.0));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(YAML));
        Ok(r)
    }
}

/// `GET /api/v1/export`: the config file as last published with every
/// API-made object added, as YAML that `keygate check` accepts. Values
/// that may be secrets become references (listed in a comment at the
/// top), so no secret leaves.
pub async fn export(cx: Ctx) -> Result<Yaml, GatewayError> {
    flags(&cx.req, [])?;
    let (tx, rx) = oneshot::channel();
    cx.commands
        .send(Command::Export(tx))
        .await
        .map_err(|_| GatewayError::Internal)?;
    let text = rx.await.map_err(|_| GatewayError::Internal)?.map_err(|e| {
        tracing::error!(error = %e, "export failed");
        GatewayError::Internal
    })?;
    Ok(Yaml(text))
}
