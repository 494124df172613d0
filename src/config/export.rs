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
        out.push_str("# Literal values were replaced by environment references; set these:\n");
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
        let file = "tokens:\n  a: { type: text, value: { literal: sk_live_topsecret }, header: Authorization }\nconnectors:\n  c: { upstream: \"http://127.0.0.1:1\", tokens: [a] }\n";
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
        assert!(!out.contains("sk_live_topsecret"), "{out}");
        assert!(out.contains("KEYGATE_TOKENS_A_VALUE"), "{out}");
        // What it prints is a config `keygate check` accepts, with both
        // connectors, now both from the file.
        let back = from_text(&out, path).expect("check accepts the export");
        assert!(back.connectors.contains_key("c") && back.connectors.contains_key("d"));
        assert!(back.from_api.is_empty());
    }
}
