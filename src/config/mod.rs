//! Pure text → typed config. No I/O beyond reading the one file, no runtime.
//! The pipeline, in order:
//!
//! 1. text → [`parse_yaml`]: the strict pass (`strict.rs`, placed by
//!    `locate.rs`) refuses duplicate and unknown keys;
//! 2. → `raw.rs`: the serde mirror of the YAML, shape only;
//! 3. → `validate/`: every rule of SPEC §2, one section per file;
//! 4. → `model.rs`: the typed [`Config`] the rest of keygate reads,
//!    re-exported here as `crate::config::X`.
//!
//! Every error carries its YAML position and never the config text, which
//! may hold literal credentials.

pub mod export;
mod locate;
mod model;
pub mod overlay;
pub mod pattern;
pub mod raw;
pub mod source;
mod strict;
pub mod units;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use locate::escape_pointer;
pub use overlay::{Overlay, from_text_with};

pub use model::{
    Admin, ApiDef, AuthMode, BUILTIN_ADMIN, Backend, Client, ClientKey, Config, Connector,
    DEFAULT_ADMIN_LISTEN, DEFAULT_KEY_PREFIX, DEFAULT_LISTEN, DeclaredKey, Expiry, FetchBody,
    Grant, HeaderPlan, HttpRequestSpec, JsonTemplate, JwtKey, JwtSpec, Keys, Limits,
    MAX_H2_KEEP_ALIVE, MAX_HEADER_READ_TIMEOUT, MAX_IDLE_TIMEOUT, Param, Postgres, Role, Section,
    Server, Store, TlsFiles, TokenKind, TokenSpec, Upstream, UserSpec, ValueSource, listen_matches,
};

/// One problem in a config file, with its 1-based position where known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// RFC 6901 pointer from the catalog root to the field at fault
    /// (`/connectors/stripe/headers/X-API-Key`), where the problem has
    /// one: what the admin API answers with, since a JSON body has no lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl ConfigError {
    /// A problem with no place in the document (an unreadable file, a
    /// port in use).
    pub fn plain(message: impl Into<String>) -> Self {
        ConfigError {
            line: None,
            column: None,
            message: message.into(),
            pointer: None,
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn one(message: String) -> Self {
        ConfigErrors(vec![ConfigError::plain(message)])
    }

    /// `PATH:LINE:COL: message` lines, as `keygate check` prints them.
    pub fn render(&self, path: &Path) -> String {
        self.0
            .iter()
            .map(|e| match (e.line, e.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}: {}", path.display(), e.message),
                _ => format!("{}: {}", path.display(), e.message),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Path::new("config")))
    }
}

/// The only place that calls the YAML library. serde_yaml is archived
/// upstream; swapping it for a maintained fork changes this one function.
///
/// Strict: every duplicate mapping key (at any depth) and every unknown
/// field is reported, each with its position, in one run (see
/// `strict.rs`); a type error is reported where the YAML library found it.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigErrors> {
    let sink = strict::Sink::default();
    let parsed: Result<T, _> = strict::deserialize(serde_yaml::Deserializer::from_str(text), &sink);
    let mut errors: Vec<ConfigError> = sink
        .into_inner()
        .iter()
        .map(|p| problem_error(text, p))
        .collect();
    match parsed {
        Ok(value) if errors.is_empty() => Ok(value),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(err) => {
            let loc = err.location();
            errors.push(ConfigError {
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message: redact_yaml_message(&err.to_string()),
                pointer: None,
            });
            Err(ConfigErrors(errors))
        }
    }
}

/// A key refused by the strict pass, placed with `locate.rs`. Keys are
/// names, never values, so they may be quoted back (control characters
/// escaped).
fn problem_error(text: &str, problem: &strict::Problem) -> ConfigError {
    use locate::Seg;
    use strict::{Problem, Step};
    let (parent, key) = match problem {
        Problem::Duplicate { parent, key, .. } | Problem::Unknown { parent, key, .. } => {
            (parent, key)
        }
    };
    let mut full: Vec<Seg<'_>> = parent
        .iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k.as_str()),
            Step::Index(i) => Seg::Index(*i),
        })
        .collect();
    full.push(Seg::Key(key.as_str()));
    let shown = key.escape_debug().to_string();
    let (pos, message) = match problem {
        Problem::Duplicate { nth, .. } => {
            let first = locate::locate_nth(text, &full, 0);
            let here = locate::locate_nth(text, &full, *nth);
            let message = match first {
                Some((l, c)) if first != here => {
                    format!("duplicate key `{shown}` (first defined at {l}:{c})")
                }
                _ => format!("duplicate key `{shown}`"),
            };
            (here, message)
        }
        Problem::Unknown { expected, .. } => {
            // Worded as serde words it, with the path serde_yaml puts first.
            let mut at = String::new();
            for s in parent {
                match s {
                    Step::Key(k) if at.is_empty() => at.push_str(k),
                    Step::Key(k) => {
                        at.push('.');
                        at.push_str(k);
                    }
                    Step::Index(i) => at.push_str(&format!("[{i}]")),
                }
            }
            let what = strict::unknown_field_message(&shown, expected);
            let message = if at.is_empty() {
                what
            } else {
                format!("{}: {what}", at.escape_debug())
            };
            (locate::locate(text, &full), message)
        }
    };
    ConfigError {
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        message,
        pointer: Some(locate::pointer(&full)),
    }
}

/// The trailing "at line X column Y" is dropped since the position is
/// kept separately; quoted values are redacted (see
/// [`crate::secret::redact_quoted`]).
fn redact_yaml_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    crate::secret::redact_quoted(msg)
}

/// Parses and validates config text that was read from `path`, alone
/// (no objects made through the admin API: what `keygate check` sees).
pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    from_text_with(text, path, &Overlay::default())
}

/// The file's raw mirror; an empty file is an empty config.
fn parse_file(text: &str) -> Result<raw::RawConfig, ConfigErrors> {
    if text.trim().is_empty() {
        Ok(raw::RawConfig::default())
    } else {
        parse_yaml(text)
    }
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(format!("cannot read config file: {e}")))?;
    from_text(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_never_echo_values() {
        let r: Result<raw::RawConfig, _> = parse_yaml("server:\n  workers: \"sk_live_secret\"\n");
        let errs = r.expect_err("must fail");
        let err = &errs.0[0];
        assert!(!err.message.contains("sk_live_secret"), "{}", err.message);
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn deep_nesting_is_an_error_even_on_a_small_stack() {
        // Reloads parse on runtime threads (2 MiB stacks): the strict pass's
        // extra frames must still hit serde_yaml's recursion limit first.
        let n = 200;
        let text = format!(
            "tokens:\n  o:\n    type: http_request\n    request:\n      url: https://a.example/t\n      json: {}1{}\n    response: {{ token: /a }}\n",
            "{a: [".repeat(n),
            "]}".repeat(n)
        );
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || from_text(&text, Path::new("k.yaml")).map(|_| ()))
            .expect("spawn");
        let errs = handle
            .join()
            .expect("no stack overflow")
            .expect_err("too deep");
        assert!(errs.0[0].message.contains("recursion limit"), "{errs}");
    }

    #[test]
    fn unknown_fields_are_refused_with_position() {
        let r: Result<raw::RawConfig, _> = parse_yaml("server:\n  listne: 1\n");
        let errs = r.expect_err("must fail");
        let err = &errs.0[0];
        assert!(
            err.message.contains("unknown field `listne`"),
            "{}",
            err.message
        );
        assert_eq!(err.line, Some(2));
    }
}
