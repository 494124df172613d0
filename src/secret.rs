//! `Secret`: a credential that cannot be printed. `Debug` and `Display`
//! write a fixed placeholder so a secret that ends up inside a struct that
//! is logged, or inside a panic message, still never leaves the process.
//! Comparison is constant time because secrets are compared against
//! attacker-supplied input.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The plaintext. Call sites are few and named: header rendering,
    /// encryption at rest, and the token endpoint request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 8 hex digits of the value's SHA-256: enough for an operator to
    /// tell two values apart, far too little to recover the value.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..4])
    }

    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// serde quotes offending *values* in double quotes (`invalid type: string
/// "sk_live_…"`), so a credential in the wrong place would be echoed by a
/// parse error. Field names use backticks and are kept; every double-quoted
/// run is replaced by `"…"`.
///
/// Inside a quoted run a backslash escapes the next character (serde
/// writes a value's own `"` as `\"`), so an escaped quote never ends the
/// run and lets the value's tail through.
pub fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    let mut escaped = false;
    for ch in msg.chars() {
        if in_quote {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                (false, _) => {}
            }
        } else if ch == '"' {
            out.push_str("\"…\"");
            in_quote = true;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn an_escaped_quote_does_not_end_the_redaction() {
        let msg = r#"invalid type: string "ab\"LEAKEDTAIL", expected u64"#;
        let out = super::redact_quoted(msg);
        assert!(!out.contains("LEAKEDTAIL"), "{out}");
        assert!(out.ends_with("expected u64"), "{out}");
    }
}

/// Refuses values that would split or truncate an HTTP header.
pub fn check_header_safe(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("the value is empty");
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("the value contains CR, LF or NUL");
    }
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err("the value contains a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk_live_abcdef");
        assert!(!format!("{s:?}").contains("abcdef"));
        assert!(!format!("{s}").contains("abcdef"));
        assert_eq!(s.fingerprint().len(), 8);
        assert!(s.ct_eq("sk_live_abcdef"));
        assert!(!s.ct_eq("sk_live_abcdeX"));
    }

    #[test]
    fn header_safety() {
        assert!(check_header_safe("ok value").is_ok());
        assert!(check_header_safe("a\r\nX-Evil: 1").is_err());
        assert!(check_header_safe("a\0").is_err());
        assert!(check_header_safe("").is_err());
    }
}
