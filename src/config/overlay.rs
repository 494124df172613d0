//! Objects made through the admin API, laid over the file before
//! validation, so that one validator judges both (SPEC §7): a connector
//! made through the API may use a token from the file and the other way
//! round, and every rule (unique header names per connector, known tokens,
//! `auth: none`, CR/LF/NUL) is checked against the whole would-be catalog.
//!
//! An API object is stored as JSON in the file's own shape (the body of
//! `tokens.<name>`, without the name), so `keygate export` can write it
//! back as YAML and `keygate check` reads it like any other. The file and
//! the API never own the same name: a clash is an error naming both sides,
//! at start, at a reload and at an API create alike.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::locate::{Seg, escape_pointer, locate};
use super::model::{ApiDef, Config, Section};
use super::raw::{RawClient, RawConfig, RawConnector, RawRole, RawToken};
use super::{ConfigError, ConfigErrors, parse_file, strict};

/// The API-made objects, by section and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub objects: BTreeMap<(Section, String), ApiDef>,
}

/// Parses `text` (read from `path`), lays `overlay` over it and validates
/// the whole: the config every start and reload publishes.
pub fn from_text_with(text: &str, path: &Path, overlay: &Overlay) -> Result<Config, ConfigErrors> {
    let mut raw = parse_file(text)?;
    let mut errors = Vec::new();
    for ((section, name), def) in &overlay.objects {
        let body = &def.body;
        let at = [Seg::Key(section.key()), Seg::Key(name.as_str())];
        if in_file(&raw, *section, name) {
            let pos = locate(text, &at);
            errors.push(ConfigError {
                line: pos.map(|p| p.0),
                column: pos.map(|p| p.1),
                message: format!(
                    "{} `{name}` is defined in {} and was also created through the admin API; rename it in the file, or delete the API one (`keygate {} delete {name}`)",
                    section.one(),
                    path.display(),
                    section.key(),
                ),
                pointer: Some(super::locate::pointer(&at)),
            });
            continue;
        }
        let prefix = super::locate::pointer(&at);
        let placed = |errs: Vec<ConfigError>| {
            errs.into_iter().map(|e| ConfigError {
                pointer: Some(format!("{prefix}{}", e.pointer.unwrap_or_default())),
                ..e
            })
        };
        let name = name.clone();
        let added = match section {
            Section::Tokens => parse_object::<RawToken>(body).map(|o| {
                raw.tokens.insert(name, o);
            }),
            Section::Connectors => parse_object::<RawConnector>(body).map(|o| {
                raw.connectors.insert(name, o);
            }),
            Section::Roles => parse_object::<RawRole>(body).map(|o| {
                raw.roles.insert(name, o);
            }),
            Section::Clients => parse_object::<RawClient>(body).map(|o| {
                raw.clients.insert(name, o);
            }),
        };
        if let Err(errs) = added {
            errors.extend(placed(errs));
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    super::validate::validate(raw, text, path, &overlay.objects)
}

fn in_file(raw: &RawConfig, section: Section, name: &str) -> bool {
    match section {
        Section::Tokens => raw.tokens.contains_key(name),
        Section::Connectors => raw.connectors.contains_key(name),
        Section::Roles => raw.roles.contains_key(name),
        Section::Clients => raw.clients.contains_key(name),
    }
}

/// Reads one object's JSON body into its raw mirror with the file's
/// strictness: every unknown field is reported, each with a pointer
/// relative to the body (`/heder`). A type error is reported where serde
/// stopped, with its message (quoted values redacted) and no pointer.
pub fn parse_object<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, Vec<ConfigError>> {
    let sink = strict::Sink::default();
    let parsed: Result<T, _> = strict::deserialize(body.clone(), &sink);
    let mut errors: Vec<ConfigError> = sink
        .into_inner()
        .iter()
        .map(|problem| {
            let (strict::Problem::Duplicate { parent, key, .. }
            | strict::Problem::Unknown { parent, key, .. }) = problem;
            let mut pointer = String::new();
            for step in parent {
                pointer.push('/');
                match step {
                    strict::Step::Key(k) => pointer.push_str(&escape_pointer(k)),
                    strict::Step::Index(i) => pointer.push_str(&i.to_string()),
                }
            }
            pointer.push('/');
            pointer.push_str(&escape_pointer(key));
            let shown = key.escape_debug().to_string();
            let message = match problem {
                strict::Problem::Duplicate { .. } => format!("duplicate key `{shown}`"),
                strict::Problem::Unknown { expected, .. } => {
                    strict::unknown_field_message(&shown, expected)
                }
            };
            ConfigError {
                pointer: Some(pointer),
                ..ConfigError::plain(message)
            }
        })
        .collect();
    match parsed {
        Ok(value) if errors.is_empty() => Ok(value),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(ConfigError {
                pointer: Some(String::new()),
                ..ConfigError::plain(crate::secret::redact_quoted(&e.to_string()))
            });
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn overlay(items: &[(Section, &str, serde_json::Value)]) -> Overlay {
        Overlay {
            objects: items
                .iter()
                .map(|(s, n, v)| {
                    let def = ApiDef {
                        body: v.clone(),
                        version: 1,
                        created_ms: 0,
                        updated_ms: 0,
                    };
                    ((*s, (*n).to_string()), def)
                })
                .collect(),
        }
    }

    const FILE: &str = "tokens:\n  a: { type: text, value: { env: A }, header: Authorization, prefix: Bearer }\nconnectors:\n  c: { upstream: \"http://127.0.0.1:1\", tokens: [a] }\n";

    #[test]
    fn api_objects_are_validated_with_the_file() {
        let path = Path::new("/etc/keygate/keygate.yaml");
        let o = overlay(&[
            (
                Section::Tokens,
                "b",
                json!({"type": "text", "header": "x-api-key"}),
            ),
            (
                Section::Connectors,
                "d",
                json!({"upstream": "http://127.0.0.1:2", "tokens": ["a", "b"]}),
            ),
        ]);
        let c = from_text_with(FILE, path, &o).expect("valid");
        assert!(c.is_api(Section::Connectors, "d"));
        assert!(!c.is_api(Section::Connectors, "c"));
        assert_eq!(c.connectors["d"].headers.tokens().len(), 2);

        // The file's token and the API's write the same header: refused,
        // with a pointer into the API connector and no line.
        let o = overlay(&[
            (
                Section::Tokens,
                "b",
                json!({"type": "text", "header": "AUTHORIZATION"}),
            ),
            (
                Section::Connectors,
                "d",
                json!({"upstream": "http://127.0.0.1:2", "tokens": ["a", "b"]}),
            ),
        ]);
        let errs = from_text_with(FILE, path, &o).expect_err("clash").0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .pointer
                .as_deref()
                .is_some_and(|p| p.starts_with("/connectors/d/tokens/")),
            "{errs:?}"
        );
        assert_eq!(errs[0].line, None);
    }

    #[test]
    fn a_name_owned_by_both_is_refused_naming_both() {
        let path = Path::new("/etc/keygate/keygate.yaml");
        let o = overlay(&[(
            Section::Tokens,
            "a",
            json!({"type": "text", "header": "x-other"}),
        )]);
        let errs = from_text_with(FILE, path, &o).expect_err("clash").0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("keygate.yaml"), "{errs:?}");
        assert!(errs[0].message.contains("admin API"), "{errs:?}");
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn unknown_fields_in_a_body_get_pointers() {
        let errs = parse_object::<RawConnector>(&json!({
            "upstream": "http://x", "heders": {}, "timeouts": {"conect": "1s"}
        }))
        .expect_err("unknown");
        let pointers: Vec<_> = errs.iter().filter_map(|e| e.pointer.clone()).collect();
        assert_eq!(pointers, ["/heders", "/timeouts/conect"]);
        let errs = parse_object::<RawConnector>(&json!({"upstream": 5})).expect_err("type");
        assert_eq!(errs[0].pointer.as_deref(), Some(""));
    }
}
