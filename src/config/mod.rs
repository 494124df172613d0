//! Pure text → typed config. No I/O beyond reading the one file, no runtime:
//! `raw.rs` mirrors the YAML, `validate.rs` checks it and builds [`Config`].
//! Every error carries its YAML position and never the config text, which
//! may hold literal credentials.

mod locate;
pub mod pattern;
pub mod raw;
pub mod units;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use validate::{
    AuthMode, Client, Config, Connector, DeclaredKey, Expiry, FetchBody, Grant, HeaderPlan,
    HttpRequestSpec, JsonTemplate, JwtKey, JwtSpec, Param, Role, TokenKind, TokenSpec, Upstream,
    UserSpec, ValueSource,
};

/// One problem in a config file, with its 1-based position where known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn one(message: String) -> Self {
        ConfigErrors(vec![ConfigError {
            line: None,
            column: None,
            message,
        }])
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
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    serde_yaml::from_str(text).map_err(|err| {
        let loc = err.location();
        ConfigError {
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: redact_yaml_message(&err.to_string()),
        }
    })
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

/// Parses and validates config text that was read from `path`.
pub fn from_text(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = if text.trim().is_empty() {
        raw::RawConfig::default()
    } else {
        parse_yaml(text).map_err(|e| ConfigErrors(vec![e]))?
    };
    validate::validate(raw, text, path)
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(format!("cannot read config file: {e}")))?;
    from_text(&text, path)
}

impl Config {
    /// The one-line summary `keygate check` prints.
    pub fn summary(&self) -> String {
        let keys: usize = self.clients.values().map(|c| c.keys.len()).sum();
        format!(
            "ok: {} tokens, {} connectors, {} roles, {} clients, {} declared keys",
            self.tokens.len(),
            self.connectors.len(),
            self.roles.len(),
            self.clients.len(),
            keys
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_never_echo_values() {
        let r: Result<raw::RawConfig, _> = parse_yaml("server:\n  workers: \"sk_live_secret\"\n");
        let err = r.expect_err("must fail");
        assert!(!err.message.contains("sk_live_secret"), "{}", err.message);
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn unknown_fields_are_refused_with_position() {
        let r: Result<raw::RawConfig, _> = parse_yaml("server:\n  listne: 1\n");
        let err = r.expect_err("must fail");
        assert!(
            err.message.contains("unknown field `listne`"),
            "{}",
            err.message
        );
        assert_eq!(err.line, Some(2));
    }
}
