//! `keygate export`: the effective catalog as one YAML file that
//! `keygate check` accepts, so objects made through the admin API can be
//! moved into Git. The file's own text is kept as parsed (comments are
//! lost), every API object is added to its section, and no secret leaves:
//! a `{ literal: … }` value becomes an `{ env: … }` reference, listed in a
//! comment at the top, and a token whose value was set at run time stays
//! without one (its sealed value stays in the store, keyed by name).

use serde_yaml::{Mapping, Value};

use super::model::Config;
use super::{ConfigErrors, parse_yaml};

/// Why an export failed: the file no longer parses, or YAML could not be
/// written (a bug).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the config file does not parse: {0}")]
    File(ConfigErrors),
    #[error("cannot write YAML: {0}")]
    Write(#[from] serde_yaml::Error),
}

/// Parameters of a token endpoint request whose plain values are not
/// secrets (OAuth 2 and token exchange, RFC 6749 and RFC 8693, and
/// content negotiation). Any other plain string in `request.form`,
/// `request.json` or `request.headers` may be a credential: the API refuses
/// it in a definition, and an export replaces it with a reference.
const PLAIN_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "audience",
    "resource",
    "client_id",
    "username",
    "subject_token_type",
    "requested_token_type",
    "actor_token_type",
    "content-type",
    "accept",
    "user-agent",
];

/// Whether a plain value under `key` in a token endpoint request is
/// known not to be a secret.
pub fn plain_param(key: &str) -> bool {
    PLAIN_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(key))
}

/// Whether a connector's static header would carry a credential (which
/// belongs in a token, sealed or referenced, never in a definition).
pub fn credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "cookie"
        || ["auth", "key", "token", "secret", "password", "signature"]
            .iter()
            .any(|w| n.contains(w))
}

/// The file `text` with `config`'s API objects added and literals
/// replaced by `env` references.
pub fn export(text: &str, config: &Config) -> Result<String, ExportError> {
    let mut doc: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        parse_yaml(text).map_err(ExportError::File)?
    };
    let mut replaced = Vec::new();
    redact(&mut doc, &mut Vec::new(), &mut replaced);
    redact_plain(&mut doc, &mut replaced);
    if let Value::Mapping(root) = &mut doc {
        for ((section, name), def) in &config.from_api {
            let key = Value::String(section.key().to_string());
            let slot = root
                .entry(key)
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if !slot.is_mapping() {
                *slot = Value::Mapping(Mapping::new());
            }
            if let Value::Mapping(m) = slot {
                m.insert(
                    Value::String(name.clone()),
                    serde_yaml::to_value(&def.body)?,
                );
            }
        }
    }
    let mut out = String::from(
        "# keygate export: the config file with every object made through the admin API.\n",
    );
    if !replaced.is_empty() {
        out.push_str("# Values that may be secrets were replaced by references; set these:\n");
        for name in &replaced {
            out.push_str(&format!("#   {name}\n"));
        }
    }
    out.push_str(&serde_yaml::to_string(&doc)?);
    Ok(out)
}

/// Replaces every `{ literal: … }` mapping with `{ env: KEYGATE_<PATH> }`.
fn redact(v: &mut Value, path: &mut Vec<String>, replaced: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            if m.len() == 1 && m.contains_key("literal") {
                let name = env_name(path);
                let mut env = Mapping::new();
                env.insert(Value::from("env"), Value::from(name.clone()));
                *m = env;
                replaced.push(name);
                return;
            }
            for (k, child) in m.iter_mut() {
                path.push(k.as_str().unwrap_or("x").to_string());
                redact(child, path, replaced);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                redact(child, path, replaced);
                path.pop();
            }
        }
        Value::Tagged(t) => redact(&mut t.value, path, replaced),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// Plain strings the file keeps where a credential may be: a token
/// endpoint's form, JSON and headers (outside [`plain_param`]) become
/// `env` references; a connector's credential-like static header gets a
/// placeholder (a static header takes no reference), listed too.
fn redact_plain(doc: &mut Value, replaced: &mut Vec<String>) {
    let Value::Mapping(root) = doc else { return };
    if let Some(Value::Mapping(tokens)) = root.get_mut("tokens") {
        for (name, token) in tokens.iter_mut() {
            let name = name.as_str().unwrap_or("x").to_string();
            let Some(Value::Mapping(request)) = token.get_mut("request") else {
                continue;
            };
            for part in ["form", "headers", "json"] {
                if let Some(v) = request.get_mut(part) {
                    let path = vec!["tokens".into(), name.clone(), "request".into(), part.into()];
                    plain_leaves(v, &mut path.clone(), None, replaced);
                }
            }
        }
    }
    if let Some(Value::Mapping(connectors)) = root.get_mut("connectors") {
        for (name, connector) in connectors.iter_mut() {
            let name = name.as_str().unwrap_or("x").to_string();
            let Some(Value::Mapping(headers)) = connector.get_mut("headers") else {
                continue;
            };
            for (h, v) in headers.iter_mut() {
                let h = h.as_str().unwrap_or_default();
                if credential_header(h) && v.is_string() {
                    *v = Value::from("REDACTED-set-this-in-a-token");
                    replaced.push(format!(
                        "connectors.{name}.headers.{h} (static header; move it into a token)"
                    ));
                }
            }
        }
    }
}

/// Replaces each plain leaf not under a [`plain_param`] key with an `env`
/// reference.
fn plain_leaves(
    v: &mut Value,
    path: &mut Vec<String>,
    key: Option<&str>,
    replaced: &mut Vec<String>,
) {
    match v {
        Value::Mapping(m) => {
            // A source (`{env: …}`, `{token: …}`) is a reference already.
            if m.len() == 1 && ["env", "file", "token"].iter().any(|k| m.contains_key(*k)) {
                return;
            }
            for (k, child) in m.iter_mut() {
                let k = k.as_str().unwrap_or("x").to_string();
                path.push(k.clone());
                plain_leaves(child, path, Some(&k), replaced);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                plain_leaves(child, path, key, replaced);
                path.pop();
            }
        }
        Value::String(_) | Value::Number(_) if !key.is_some_and(plain_param) => {
            let name = env_name(path);
            let mut env = Mapping::new();
            env.insert(Value::from("env"), Value::from(name.clone()));
            *v = Value::Mapping(env);
            replaced.push(name);
        }
        Value::Tagged(t) => plain_leaves(&mut t.value, path, key, replaced),
        Value::Null | Value::Bool(_) | Value::String(_) | Value::Number(_) => {}
    }
}

/// `tokens.stripe-secret.value` → `KEYGATE_TOKENS_STRIPE_SECRET_VALUE`.
fn env_name(path: &[String]) -> String {
    let mut name = String::from("KEYGATE");
    for seg in path {
        name.push('_');
        name.extend(seg.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiDef, Overlay, Section, from_text, from_text_with};
    use std::path::Path;

    #[test]
    fn export_adds_api_objects_and_never_a_literal() {
        let path = Path::new("/etc/keygate/keygate.yaml");
        let file = "tokens:\n  a: { type: text, value: { literal: sk_live_topsecret }, header: Authorization }\n  o:\n    type: http_request\n    request: { url: \"https://id.example/token\", form: { grant_type: client_credentials, client_secret: plain_secret_1 } }\n    response: { token: /access_token }\nconnectors:\n  c: { upstream: \"http://127.0.0.1:1\", tokens: [a], headers: { X-Api-Key: static_secret_2 } }\n";
        let mut overlay = Overlay::default();
        overlay.objects.insert(
            (Section::Connectors, "d".into()),
            ApiDef {
                body: serde_json::json!({"upstream": "http://127.0.0.1:2", "tokens": ["a"]}),
                version: 3,
                created_ms: 0,
                updated_ms: 0,
            },
        );
        let config = from_text_with(file, path, &overlay).expect("valid");
        let out = export(file, &config).expect("export");
        for secret in ["sk_live_topsecret", "plain_secret_1", "static_secret_2"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(
            out.contains("client_credentials"),
            "a plain OAuth parameter stays: {out}"
        );
        assert!(out.contains("KEYGATE_TOKENS_A_VALUE"), "{out}");
        // What it prints is a config `keygate check` accepts, with both
        // connectors, now both from the file.
        let back = from_text(&out, path).expect("check accepts the export");
        assert!(back.connectors.contains_key("c") && back.connectors.contains_key("d"));
        assert!(back.from_api.is_empty());
    }
}
