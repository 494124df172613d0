//! Reads a value from its source: an environment variable, a file (trailing
//! newline trimmed, as `kubectl create secret --from-file` and editors add
//! one), or a literal. A missing source is "unavailable", not fatal: the
//! gateway keeps running and the connectors that need it answer 503.

use std::io::ErrorKind;

use crate::config::ValueSource;
use crate::secret::{Secret, check_header_safe};

/// A source that yields no usable value; the message names the source, never
/// its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

pub fn read(source: &ValueSource) -> Result<Secret, Unavailable> {
    let value = match source {
        ValueSource::Literal(s) => return Ok(s.clone()),
        ValueSource::Env(name) => std::env::var(name)
            .map_err(|_| Unavailable(format!("environment variable {name} is not set")))?,
        ValueSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
            Unavailable(match e.kind() {
                ErrorKind::NotFound => format!("file {} does not exist", path.display()),
                _ => format!("file {} cannot be read: {e}", path.display()),
            })
        })?,
    };
    let trimmed = value.strip_suffix('\n').unwrap_or(&value);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    check_header_safe(trimmed)
        .map_err(|why| Unavailable(format!("{} value refused: {why}", source.kind())))?;
    Ok(Secret::new(trimmed))
}
