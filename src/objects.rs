//! The run-time catalog: tokens, connectors, roles and clients made through
//! the admin API (SPEC §7). They are stored as JSON in the config file's
//! shape, laid over the file (`config::overlay`) and validated with it by
//! the one validator, then published by the one reload loop like any
//! reload, so a `2xx` means the next request sees the change.
//!
//! This module is the pure part: what a change does to the set of API
//! objects ([`plan`]), and why it may not ([`ChangeError`]). The reload
//! loop (`app::reload`) runs a plan: build the snapshot aside, write the
//! store (conditional on the versions read), publish.
//!
//! Ownership: a name is the file's or the API's, never both. The file's
//! objects (and the built-in `keygate-admin` role and client) are
//! read-only here (`409 config_owned`, naming the file).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::audit::{Action, Actor};
use crate::config::export;
use crate::config::{self, BUILTIN_ADMIN, Config, ConfigError, Overlay, Section};
use crate::secret::{Secret, check_header_safe};
use crate::store::{ObjectWrite, Store, StoreError, StoredObject};
use crate::tokens::values::MAX_VALUE;

pub use crate::config::ApiDef as ApiObject;

/// Every API-made object, by section and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiObjects {
    pub objects: BTreeMap<(Section, String), ApiObject>,
    /// The last version of each deleted name: created again, it continues
    /// from there, so an `ETag` read before the delete never matches.
    pub retired: BTreeMap<(Section, String), u64>,
}

/// Why the stored catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store: catalog object {section}/{name} is damaged: {why}")]
    Damaged {
        section: String,
        name: String,
        why: String,
    },
}

impl ApiObjects {
    pub fn load(store: &dyn Store) -> Result<Self, LoadError> {
        let mut objects = BTreeMap::new();
        for o in store.load_objects()? {
            let (section, object) = from_stored(&o)?;
            objects.insert((section, o.name.clone()), object);
        }
        let mut retired = BTreeMap::new();
        for (section, name, version) in store.load_retired()? {
            if let Some(s) = Section::from_key(&section) {
                retired.insert((s, name), version);
            }
        }
        Ok(ApiObjects { objects, retired })
    }

    /// Takes one object's row as another replica left it (SPEC §8): the
    /// object, or `Err` with the version it was deleted at.
    pub fn apply_stored(
        &mut self,
        section: Section,
        name: &str,
        row: &Result<StoredObject, Option<u64>>,
    ) -> Result<(), LoadError> {
        let key = (section, name.to_string());
        match row {
            Ok(o) => {
                let (_, object) = from_stored(o)?;
                self.retired.remove(&key);
                self.objects.insert(key, object);
            }
            Err(retired) => {
                self.objects.remove(&key);
                if let Some(v) = retired {
                    self.retired.insert(key, *v);
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, section: Section, name: &str) -> Option<&ApiObject> {
        self.objects.get(&(section, name.to_string()))
    }

    /// The definitions, for `config::from_text_with`.
    pub fn overlay(&self) -> Overlay {
        Overlay {
            objects: self.objects.clone(),
        }
    }
}

/// A stored row as an object, refusing a damaged one.
fn from_stored(o: &StoredObject) -> Result<(Section, ApiObject), LoadError> {
    let damaged = |why: String| LoadError::Damaged {
        section: o.section.clone(),
        name: o.name.clone(),
        why,
    };
    let section = Section::from_key(&o.section).ok_or_else(|| damaged("unknown section".into()))?;
    let body: Value =
        serde_json::from_str(&o.body).map_err(|e| damaged(format!("not JSON: {e}")))?;
    Ok((
        section,
        ApiObject {
            body,
            version: o.version,
            created_ms: o.created_ms,
            updated_ms: o.updated_ms,
        },
    ))
}

/// What an operator asks for.
#[derive(Debug)]
pub enum Op {
    /// A new object; the body is its definition (without `name`).
    Create(Value),
    /// An RFC 7396 merge patch over the definition.
    Patch(Value),
    Delete,
    /// `PUT /api/v1/connectors/{name}/tokens`: the attached tokens, all at
    /// once.
    SetTokens(Vec<String>),
}

/// One change to one object.
#[derive(Debug)]
pub struct Change {
    pub section: Section,
    pub name: String,
    pub op: Op,
    /// The version from `If-Match`; the change applies only to it.
    pub if_match: Option<u64>,
    /// `?force=true`: apply it even if it ends the last live admin key.
    pub force: bool,
    /// Who asks, for the audit log.
    pub actor: Actor,
}

impl Change {
    /// What the audit log calls this change.
    pub fn action(&self) -> Action {
        use Section::*;
        match (self.section, &self.op) {
            (Tokens, Op::Create(_)) => Action::TokenCreate,
            (Tokens, Op::Patch(_) | Op::SetTokens(_)) => Action::TokenUpdate,
            (Tokens, Op::Delete) => Action::TokenDelete,
            (Connectors, Op::Create(_)) => Action::ConnectorCreate,
            (Connectors, Op::Patch(_)) => Action::ConnectorUpdate,
            (Connectors, Op::SetTokens(_)) => Action::ConnectorTokens,
            (Connectors, Op::Delete) => Action::ConnectorDelete,
            (Roles, Op::Create(_)) => Action::RoleCreate,
            (Roles, Op::Patch(_) | Op::SetTokens(_)) => Action::RoleUpdate,
            (Roles, Op::Delete) => Action::RoleDelete,
            (Clients, Op::Create(_)) => Action::ClientCreate,
            (Clients, Op::Patch(_) | Op::SetTokens(_)) => Action::ClientUpdate,
            (Clients, Op::Delete) => Action::ClientDelete,
        }
    }
}

/// One problem with a change, for a `422`: where (an RFC 6901 pointer
/// into the request body, `/headers/X-API-Key`; empty when the problem
/// lies elsewhere) and why. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub pointer: String,
    /// The pointer from the catalog root (`/connectors/stripe/headers/…`),
    /// which also places problems outside the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub message: String,
}

/// Why a change was refused; `error.rs` maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no {} named `{name}`", section.one())]
    NotFound { section: Section, name: String },
    #[error("{} `{name}` comes from {file} and is read-only through the admin API; change it there", section.one())]
    ConfigOwned {
        section: Section,
        name: String,
        file: String,
    },
    #[error("{} `{name}` already exists", section.one())]
    Exists { section: Section, name: String },
    #[error("{} `{name}` is at version {current}, not the version in If-Match", section.one())]
    VersionMismatch {
        section: Section,
        name: String,
        current: u64,
    },
    /// Deleting it would leave these objects naming something gone.
    #[error("{} `{name}` is used by {}: {}", section.one(), users.0, users.1.join(", "))]
    InUse {
        section: Section,
        name: String,
        /// What uses it (`connectors`) and their names.
        users: (&'static str, Vec<String>),
    },
    #[error("the change is not valid: {}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// It would leave no live key that can use the admin API.
    #[error("this would leave no live key that can use the admin API")]
    LastAdminKey,
    #[error("this route applies to connectors only")]
    NotAConnector,
    /// Another writer changed the store between the read and the write
    /// (a second replica, later); nothing was written.
    #[error("{} `{name}` changed meanwhile; read it again", section.one())]
    Raced { section: Section, name: String },
    /// The object was published but the value sent with it could not be
    /// kept (the store failed); set it again with `PUT …/value`.
    #[error("token `{token}` was saved, but its value was not: {why}")]
    ValueNotSet { token: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the admin API asks the one reload loop to do: reload the file, or
/// apply a catalog change. Each is answered once it is published (or
/// refused).
#[derive(Debug)]
pub enum Command {
    Reload(oneshot::Sender<Result<u64, Vec<ConfigError>>>),
    Change(Change, oneshot::Sender<Result<Applied, ChangeError>>),
    /// The effective catalog as YAML (`keygate export`): the file's text
    /// as last published with the API objects, not the file as it is on
    /// disk now (it may be edited, or refused).
    Export(oneshot::Sender<Result<String, config::export::ExportError>>),
}

/// A published change: the generation that carries it and the object's
/// version after it (`None` once deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub generation: u64,
    pub version: Option<u64>,
}

/// A change that passed every check: the objects after it, the config
/// they make with the file, and what to write.
#[derive(Debug)]
pub struct Plan {
    pub next: ApiObjects,
    pub config: Config,
    pub write: ObjectWrite,
    /// A `text` token's value sent with the change, to be set (sealed and
    /// stored) once the token is published.
    pub value: Option<Secret>,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
}

/// Checks `change` against the running config and the API objects, lays
/// the result over the file `text` (read from `path`) and validates the
/// whole with the one validator.
pub fn plan(
    current: &ApiObjects,
    running: &Config,
    text: &str,
    path: &Path,
    change: Change,
    now_ms: u64,
) -> Result<Plan, ChangeError> {
    let Change {
        section,
        name,
        op,
        if_match,
        ..
    } = change;
    let key = (section, name.clone());
    let existing = current.objects.get(&key);
    if existing.is_none()
        && let Some(file) = config_owner(running, section, &name)
    {
        return Err(ChangeError::ConfigOwned {
            section,
            name,
            file,
        });
    }
    let check_version = |o: &ApiObject| match if_match {
        Some(v) if v != o.version => Err(ChangeError::VersionMismatch {
            section,
            name: name.clone(),
            current: o.version,
        }),
        _ => Ok(()),
    };
    let not_found = || ChangeError::NotFound {
        section,
        name: name.clone(),
    };
    let mut next = current.clone();
    let mut value = None;
    let (write, before, after) = match op {
        Op::Create(body) => {
            if existing.is_some() {
                return Err(ChangeError::Exists { section, name });
            }
            if if_match.is_some() {
                return Err(ChangeError::VersionMismatch {
                    section,
                    name,
                    current: 0,
                });
            }
            let mut body = object_body(body)?;
            if section == Section::Tokens {
                value = take_value(&mut body)?;
            }
            let version = current.retired.get(&key).map_or(1, |v| v + 1);
            let object = ApiObject {
                body: Value::Object(body),
                version,
                created_ms: now_ms,
                updated_ms: now_ms,
            };
            let write = ObjectWrite::Put {
                object: stored(section, &name, &object),
                expected: None,
            };
            next.objects.insert(key, object);
            (write, None, Some(version))
        }
        Op::Patch(_) | Op::SetTokens(_) => {
            let old = existing.ok_or_else(not_found)?;
            check_version(old)?;
            let patch = match op {
                Op::SetTokens(tokens) if section == Section::Connectors => {
                    let mut m = Map::new();
                    m.insert("tokens".into(), Value::from(tokens));
                    m
                }
                Op::SetTokens(_) => return Err(ChangeError::NotAConnector),
                Op::Patch(p) => object_body(p)?,
                Op::Create(_) | Op::Delete => Map::new(),
            };
            let mut patch = Value::Object(patch);
            if section == Section::Tokens
                && let Value::Object(m) = &mut patch
            {
                value = take_value(m)?;
                if value.is_some() {
                    // A value sent as text replaces any `env`/`file`
                    // source: the token now takes its value at run time.
                    m.insert("value".into(), Value::Null);
                }
            }
            let mut body = old.body.clone();
            merge_patch(&mut body, &patch);
            let object = ApiObject {
                body,
                version: old.version + 1,
                created_ms: old.created_ms,
                updated_ms: now_ms.max(old.updated_ms),
            };
            let write = ObjectWrite::Put {
                object: stored(section, &name, &object),
                expected: Some(old.version),
            };
            let versions = (Some(old.version), Some(object.version));
            next.objects.insert(key, object);
            (write, versions.0, versions.1)
        }
        Op::Delete => {
            let old = existing.ok_or_else(not_found)?;
            check_version(old)?;
            if let Some(users) = users_of(running, section, &name) {
                return Err(ChangeError::InUse {
                    section,
                    name,
                    users,
                });
            }
            let write = ObjectWrite::Delete {
                section: section.key().to_string(),
                name: name.clone(),
                expected: old.version,
            };
            let before = Some(old.version);
            next.retired.insert(key.clone(), old.version);
            next.objects.remove(&key);
            (write, before, None)
        }
    };
    if let (Some(_), Some(o)) = (&value, next.objects.get(&(section, name.clone())))
        && o.body.get("type").is_some_and(|t| t != "text")
    {
        return Err(ChangeError::Invalid(vec![Problem {
            pointer: "/value".into(),
            at: None,
            message: "only a `text` token takes a value; an `http_request` token fetches its own and a `user` token is sent by each caller".into(),
        }]));
    }
    if let Some(o) = next.objects.get(&(section, name.clone())) {
        let mut found = Vec::new();
        literals(&o.body, &mut found);
        plain_secrets(section, &o.body, &mut found);
        if !found.is_empty() {
            return Err(ChangeError::Invalid(found));
        }
    }
    let config = config::from_text_with(text, path, &next.overlay())
        .map_err(|errs| ChangeError::Invalid(problems(section, &name, errs.0)))?;
    Ok(Plan {
        next,
        config,
        write,
        value,
        version_before: before,
        version_after: after,
    })
}

/// Who owns `name` if not the API: the file, or keygate itself.
pub fn config_owner(running: &Config, section: Section, name: &str) -> Option<String> {
    let builtin = matches!(section, Section::Roles | Section::Clients) && name == BUILTIN_ADMIN;
    if builtin && !in_config(running, section, name) {
        return Some("keygate itself (built-in)".into());
    }
    (in_config(running, section, name) && !running.is_api(section, name))
        .then(|| running.path.display().to_string())
}

fn in_config(c: &Config, section: Section, name: &str) -> bool {
    match section {
        Section::Tokens => c.tokens.contains_key(name),
        Section::Connectors => c.connectors.contains_key(name),
        Section::Roles => c.roles.contains_key(name),
        Section::Clients => c.clients.contains_key(name),
    }
}

/// What would be left naming `name` if it went: connectors using a token,
/// roles granting a connector, clients holding a role, `http_request`
/// tokens reading another token.
fn users_of(c: &Config, section: Section, name: &str) -> Option<(&'static str, Vec<String>)> {
    let (what, users): (&'static str, Vec<String>) = match section {
        Section::Tokens => (
            "connectors",
            c.connectors
                .values()
                .filter(|k| k.headers.tokens().iter().any(|(_, t)| t == name))
                .map(|k| k.name.clone())
                .collect(),
        ),
        Section::Connectors => (
            "roles",
            c.roles
                .values()
                .filter(|r| r.grants.iter().any(|g| g.connector == name))
                .map(|r| r.name.clone())
                .collect(),
        ),
        Section::Roles => (
            "clients",
            c.clients
                .values()
                .filter(|k| k.roles.iter().any(|r| r == name))
                .map(|k| k.name.clone())
                .collect(),
        ),
        Section::Clients => return None,
    };
    (!users.is_empty()).then_some((what, users))
}

fn object_body(body: Value) -> Result<Map<String, Value>, ChangeError> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(ChangeError::Invalid(vec![Problem {
            pointer: String::new(),
            at: None,
            message: "the body must be a JSON object".into(),
        }])),
    }
}

/// Takes a value sent as text (`"value": "sk_…"` or `{"literal": …}`)
/// out of a token body: it is sealed into the store, never kept in the
/// definition. `env`/`file` sources stay.
fn take_value(body: &mut Map<String, Value>) -> Result<Option<Secret>, ChangeError> {
    let text = match body.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m))
            if m.len() == 1 && m.get("literal").is_some_and(Value::is_string) =>
        {
            m.get("literal")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        }
        _ => return Ok(None),
    };
    body.remove("value");
    let refused = |message: String| {
        ChangeError::Invalid(vec![Problem {
            pointer: "/value".into(),
            at: None,
            message,
        }])
    };
    if text.len() > MAX_VALUE {
        return Err(refused(format!("the value is over {MAX_VALUE} bytes")));
    }
    check_header_safe(&text).map_err(|why| refused(format!("the value is refused: {why}")))?;
    Ok(Some(Secret::new(text)))
}

/// Walks `v` depth first, with each node's RFC 6901 pointer and the key it
/// sits under (an array's items inherit their array's key); `visit`
/// answers whether to go into the node's children.
fn walk(
    v: &Value,
    at: &mut String,
    key: Option<&str>,
    visit: &mut dyn FnMut(&Value, &str, Option<&str>) -> bool,
) {
    if !visit(v, at, key) {
        return;
    }
    let mut step = |at: &mut String, seg: &str, child: &Value, key: Option<&str>| {
        let len = at.len();
        at.push('/');
        at.push_str(&config::escape_pointer(seg));
        walk(child, at, key, visit);
        at.truncate(len);
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| step(at, k, c, Some(k))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, c)| step(at, &i.to_string(), c, key)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Every `{literal: …}` left in a definition: a definition is stored as
/// plain JSON, so a secret in it would sit unencrypted in the store and
/// come back in `keygate export`. Only a `text` token's own value is
/// sealed (taken out by `take_value`); anything else must be a reference.
fn literals(v: &Value, found: &mut Vec<Problem>) {
    walk(v, &mut String::new(), None, &mut |_, at, key| {
        if key != Some("literal") {
            return true;
        }
        found.push(Problem {
            pointer: at.to_string(),
            at: None,
            message: "a literal secret is not stored in a definition made through the API; use `{\"env\": …}` or `{\"file\": …}`, or send a text token's value as a string (it is sealed)".into(),
        });
        false
    });
}

/// Plain strings where a credential may be: a token endpoint's form,
/// JSON and headers (outside the OAuth parameters known not to be
/// secrets), and a connector's credential-like static header. Stored as
/// plain JSON they would be a secret in the clear; they must be
/// references (or, for a connector, a token).
fn plain_secrets(section: Section, body: &Value, found: &mut Vec<Problem>) {
    let problem = |pointer: String, message: &str| Problem {
        pointer,
        at: None,
        message: message.into(),
    };
    match section {
        Section::Tokens => {
            for part in ["form", "headers", "json"] {
                if let Some(v) = body.get("request").and_then(|r| r.get(part)) {
                    let mut at = format!("/request/{part}");
                    plain_leaves(v, &mut at, &mut |pointer| {
                        found.push(problem(
                            pointer,
                            "a plain value here may be a secret, and a definition made through the API is stored in the clear; use `{\"env\": …}`, `{\"file\": …}` or `{\"token\": …}`",
                        ));
                    });
                }
            }
        }
        Section::Connectors => {
            if let Some(Value::Object(headers)) = body.get("headers") {
                for name in headers.keys().filter(|h| export::credential_header(h)) {
                    found.push(problem(
                        format!("/headers/{}", config::escape_pointer(name)),
                        "a static header that carries a credential belongs in a token (sealed or referenced), not in a connector's definition",
                    ));
                }
            }
        }
        Section::Roles | Section::Clients => {}
    }
}

/// Calls `found` with the pointer of each plain leaf of `v` that is not
/// under a key known to hold no secret; sources (`{env|file|token: …}`)
/// are references and are skipped.
fn plain_leaves(v: &Value, at: &mut String, found: &mut dyn FnMut(String)) {
    walk(v, at, None, &mut |node, at, key| match node {
        Value::Object(m) => {
            !(m.len() == 1 && ["env", "file", "token"].iter().any(|k| m.contains_key(*k)))
        }
        Value::String(_) | Value::Number(_) => {
            if !key.is_some_and(export::plain_param) {
                found(at.to_string());
            }
            false
        }
        Value::Null | Value::Bool(_) | Value::Array(_) => true,
    });
}

/// RFC 7396: `null` removes a member, an object merges, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn stored(section: Section, name: &str, o: &ApiObject) -> StoredObject {
    StoredObject {
        section: section.key().to_string(),
        name: name.to_string(),
        body: o.body.to_string(),
        version: o.version,
        created_ms: o.created_ms,
        updated_ms: o.updated_ms,
    }
}

/// The validator's errors as problems of the changed object: pointers
/// inside it are made relative to the body; others keep only `at`.
pub fn problems(section: Section, name: &str, errs: Vec<ConfigError>) -> Vec<Problem> {
    let root = format!("/{}/{}", section.key(), config::escape_pointer(name));
    errs.into_iter()
        .map(|e| {
            let inside = e.pointer.as_deref().and_then(|p| {
                if p == root {
                    Some(String::new())
                } else {
                    p.strip_prefix(&root)
                        .filter(|rest| rest.starts_with('/'))
                        .map(str::to_string)
                }
            });
            Problem {
                pointer: inside.unwrap_or_default(),
                at: e.pointer,
                message: e.message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "tokens:\n  a: { type: text, value: { env: A }, header: Authorization, prefix: Bearer }\nconnectors:\n  c: { upstream: \"http://127.0.0.1:1\", tokens: [a] }\n";

    fn actor() -> Actor {
        Actor {
            client: "ops".into(),
            key_id: "key_1".into(),
        }
    }

    fn path() -> &'static Path {
        Path::new("/etc/keygate/keygate.yaml")
    }

    fn apply(objs: &ApiObjects, section: Section, name: &str, op: Op) -> Result<Plan, ChangeError> {
        let running = config::from_text_with(FILE, path(), &objs.overlay()).expect("running");
        plan(
            objs,
            &running,
            FILE,
            path(),
            Change {
                section,
                name: name.into(),
                op,
                if_match: None,
                force: false,
                actor: actor(),
            },
            1000,
        )
    }

    #[test]
    fn create_attach_and_delete_in_use() {
        let objs = ApiObjects::default();
        let p = apply(
            &objs,
            Section::Tokens,
            "b",
            Op::Create(json!({"type": "text", "header": "X-API-Key", "value": "sk_secret_1"})),
        )
        .expect("token");
        assert_eq!(p.value.as_ref().map(Secret::expose), Some("sk_secret_1"));
        assert!(
            !p.next.objects[&(Section::Tokens, "b".into())]
                .body
                .to_string()
                .contains("sk_secret_1"),
            "the value is never kept in the definition"
        );
        let objs = p.next;
        let p = apply(
            &objs,
            Section::Connectors,
            "d",
            Op::Create(json!({"upstream": "http://127.0.0.1:2", "tokens": ["b"]})),
        )
        .expect("connector");
        let objs = p.next;
        let p = apply(
            &objs,
            Section::Connectors,
            "d",
            Op::SetTokens(vec!["a".into(), "b".into()]),
        )
        .expect("attach");
        assert_eq!(p.config.connectors["d"].headers.tokens().len(), 2);
        assert_eq!((p.version_before, p.version_after), (Some(1), Some(2)));
        let objs = p.next;
        match apply(&objs, Section::Tokens, "b", Op::Delete) {
            Err(ChangeError::InUse { users, .. }) => assert_eq!(users.1, ["d"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn file_objects_are_read_only_and_headers_clash_with_pointers() {
        let objs = ApiObjects::default();
        assert!(matches!(
            apply(&objs, Section::Tokens, "a", Op::Delete),
            Err(ChangeError::ConfigOwned { .. })
        ));
        assert!(matches!(
            apply(&objs, Section::Roles, BUILTIN_ADMIN, Op::Create(json!({}))),
            Err(ChangeError::ConfigOwned { .. })
        ));
        let err = apply(
            &objs,
            Section::Connectors,
            "d",
            Op::Create(json!({
                "upstream": "http://127.0.0.1:2",
                "tokens": ["a"],
                "headers": {"AUTHORIZATION": "x"}
            })),
        )
        .expect_err("clash");
        let ChangeError::Invalid(problems) = err else {
            panic!("{err:?}")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].pointer, "/headers/AUTHORIZATION");
    }

    #[test]
    fn if_match_guards_updates() {
        let objs = apply(
            &ApiObjects::default(),
            Section::Roles,
            "r",
            Op::Create(json!({"allow": [{"connector": "c"}]})),
        )
        .expect("role")
        .next;
        let running = config::from_text_with(FILE, path(), &objs.overlay()).expect("running");
        let change = |v| Change {
            section: Section::Roles,
            name: "r".into(),
            op: Op::Patch(json!({"description": "x"})),
            if_match: Some(v),
            force: false,
            actor: actor(),
        };
        assert!(matches!(
            plan(&objs, &running, FILE, path(), change(7), 2),
            Err(ChangeError::VersionMismatch { current: 1, .. })
        ));
        let p = plan(&objs, &running, FILE, path(), change(1), 2).expect("patched");
        assert_eq!(p.config.roles["r"].description.as_deref(), Some("x"));
    }

    #[test]
    fn no_literal_is_kept_in_a_definition() {
        let objs = ApiObjects::default();
        let err = apply(
            &objs,
            Section::Tokens,
            "oauth",
            Op::Create(json!({
                "type": "http_request",
                "request": {"url": "https://a.example/t", "form": {"client_secret": {"literal": "s3cr3t"}}},
                "response": {"token": "/access_token"}
            })),
        )
        .expect_err("literal");
        let ChangeError::Invalid(problems) = err else {
            panic!("{err:?}")
        };
        assert_eq!(problems[0].pointer, "/request/form/client_secret/literal");
        // A plain client secret is refused too; a plain grant type is not.
        let err = apply(
            &objs,
            Section::Tokens,
            "oauth",
            Op::Create(json!({
                "type": "http_request",
                "request": {"url": "https://a.example/t", "form": {"grant_type": "client_credentials", "client_secret": "s3cr3t"}},
                "response": {"token": "/access_token"}
            })),
        )
        .expect_err("plain secret");
        let ChangeError::Invalid(problems) = err else {
            panic!("{err:?}")
        };
        let pointers: Vec<_> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(pointers, ["/request/form/client_secret"]);
        let err = apply(
            &objs,
            Section::Connectors,
            "c2",
            Op::Create(
                json!({"upstream": "http://127.0.0.1:2", "headers": {"Authorization": "Basic x"}}),
            ),
        )
        .expect_err("static credential");
        assert!(matches!(err, ChangeError::Invalid(_)));
        assert!(!problems[0].message.contains("s3cr3t"));
        // A text token's own literal is taken out and sealed instead.
        let p = apply(
            &objs,
            Section::Tokens,
            "t",
            Op::Create(json!({"header": "X-T", "value": {"literal": "s3cr3t"}})),
        )
        .expect("sealed");
        assert!(p.value.is_some());
        assert!(
            !p.next.objects[&(Section::Tokens, "t".into())]
                .body
                .to_string()
                .contains("s3cr3t")
        );
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }
}
