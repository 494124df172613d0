//! `keygate check` (SPEC §1) and every validation rule of SPEC §2, through
//! the real binary: exit 0 with one summary line, or exit 1 with every
//! error as `PATH:LINE:COL: message`.

#![expect(
    clippy::expect_used,
    reason = "test setup and helpers outside #[test] fns; a failed expect is the test failing, with its message"
)]

#[expect(
    unused_imports,
    reason = "this crate starts no upstream, so the harness's `Upstream` re-export goes unused"
)]
mod common;

use std::process::Command;

use common::BIN;

fn check(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "K");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "K");
    (out.status.success(), stdout, stderr)
}

fn assert_error(yaml: &str, line: usize, needle: &str) {
    let (ok, _, err) = check(yaml);
    assert!(!ok, "config should be refused: {yaml}");
    let want = format!("K:{line}:");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&want) && l.contains(needle)),
        "expected an error at line {line} containing {needle:?}, got:\n{err}"
    );
}

const GOOD: &str = r#"
tokens:
  t1:
    value: { literal: "abc" }
    prefix: Bearer
    header: Authorization
connectors:
  api:
    upstream: https://api.example.com/v1
    tokens: [t1]
roles:
  r:
    allow:
      - connector: api
clients:
  c:
    roles: [r]
"#;

#[test]
fn valid_config_prints_one_summary_line() {
    let (ok, out, err) = check(GOOD);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("1 tokens, 1 connectors"), "{out}");
}

#[test]
fn shipped_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/keygate.yaml");
    let out = Command::new(BIN)
        .args(["check", "-c", path])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_file_is_an_error() {
    let out = Command::new(BIN)
        .args(["check", "-c", "/nonexistent/k.yaml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn unknown_field_is_refused_with_position() {
    assert_error(
        "server:\n  listen: 127.0.0.1:1\n  listne: 1\n",
        3,
        "unknown field `listne`",
    );
}

#[test]
fn unknown_token_in_connector() {
    let yaml = "connectors:\n  api:\n    upstream: https://x.example\n    tokens: [nope]\n";
    assert_error(yaml, 4, "unknown token `nope`");
}

#[test]
fn two_tokens_writing_one_header_case_insensitively() {
    let yaml = r#"tokens:
  a: { value: { literal: "1" }, header: Authorization }
  b: { value: { literal: "2" }, header: authorization }
connectors:
  api:
    upstream: https://x.example
    tokens:
      - a
      - b
"#;
    assert_error(yaml, 9, "both write header `authorization`");
}

#[test]
fn token_and_static_header_writing_one_header() {
    let yaml = r#"tokens:
  a: { value: { literal: "1" }, header: X-Api-Key }
connectors:
  api:
    upstream: https://x.example
    tokens: [a]
    headers:
      x-api-key: "static"
"#;
    assert_error(yaml, 8, "both write header");
}

#[test]
fn invalid_header_name_and_prefix() {
    let yaml = r#"tokens:
  a:
    value: { literal: "1" }
    header: "X Bad"
  b:
    value: { literal: "1" }
    header: X-B
    prefix: "Bear er"
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    assert!(
        err.contains("K:4:") && err.contains("not a valid HTTP header name"),
        "{err}"
    );
    assert!(
        err.contains("K:8:") && err.contains("not a valid HTTP token"),
        "{err}"
    );
}

#[test]
fn literal_with_cr_lf_or_nul_is_refused_without_echo() {
    for bad in [
        r#""sk_live_1\r\nX-Evil: 1""#,
        r#""sk_live_2\u0000""#,
        r#""sk_live_3\n""#,
    ] {
        let yaml = format!("tokens:\n  a:\n    value:\n      literal: {bad}\n    header: X-A\n");
        let (ok, _, err) = check(&yaml);
        assert!(!ok, "{bad} must be refused");
        assert!(
            err.contains("K:4:") && err.contains("literal value is refused"),
            "{err}"
        );
        assert!(
            !err.contains("sk_live_"),
            "the error must not echo the literal: {err}"
        );
    }
}

#[test]
fn upstream_must_be_absolute_http_or_https() {
    for bad in [
        "ftp://x.example",
        "/relative/path",
        "x.example",
        "https://user:pw@x.example",
    ] {
        let yaml = format!("connectors:\n  api:\n    upstream: \"{bad}\"\n");
        assert_error(&yaml, 3, "upstream");
    }
}

#[test]
fn auth_none_only_on_loopback() {
    let yaml = "connectors:\n  api:\n    upstream: http://x.example\n    listen: 0.0.0.0:9555\n    auth: none\n";
    assert_error(yaml, 5, "only allowed on a loopback listener");
    let ok = "connectors:\n  api:\n    upstream: http://x.example\n    listen: 127.0.0.1:9555\n    auth: none\n";
    assert!(check(ok).0);
}

#[test]
fn connection_durations_past_their_bounds_are_refused_with_positions() {
    // Added to `Instant::now()` on every accept (by keygate and by hyper):
    // an unbounded value panicked the accept loop at the first connection.
    let yaml = "server:\n  header_read_timeout: 10000000000000000000s\n  idle_timeout: 2d\n  h2_keep_alive_interval: 99999999999d\n  h2_keep_alive_timeout: 25h\n";
    assert_error(yaml, 2, "header_read_timeout must be at most 1h");
    assert_error(yaml, 3, "idle_timeout must be at most 1d");
    assert_error(yaml, 4, "h2_keep_alive_interval must be at most 1d");
    assert_error(yaml, 5, "h2_keep_alive_timeout must be at most 1d");
    let (_, _, err) = check(yaml);
    assert!(
        err.contains("K:2:3: header_read_timeout"),
        "line and column: {err}"
    );
    let ok = "server:\n  header_read_timeout: 1h\n  idle_timeout: 24h\n  h2_keep_alive_interval: 1d\n  h2_keep_alive_timeout: 1d\n";
    let (ok, _, err) = check(ok);
    assert!(ok, "{err}");
}

#[test]
fn auth_none_needs_its_own_loopback_listen() {
    // Without a dedicated port it would only exist on the shared
    // listener, where `auth: none` is never served.
    let yaml = "server:\n  listen: 127.0.0.1:8080\nconnectors:\n  api:\n    upstream: http://x.example\n    auth: none\n";
    assert_error(yaml, 6, "needs a dedicated loopback `listen`");
    let yaml = "connectors:\n  api:\n    upstream: http://x.example\n    listen: \"[::]:9555\"\n    auth: none\n";
    assert_error(yaml, 5, "only allowed on a loopback listener");
    let ok = "connectors:\n  api:\n    upstream: http://x.example\n    listen: \"[::1]:9555\"\n    auth: none\n    allow_encoded_slash: true\n";
    let (ok, _, err) = check(ok);
    assert!(ok, "{err}");
}

#[test]
fn user_token_cannot_come_from_a_header_keygate_consumes() {
    for header in [
        "Authorization",
        "X-API-Key",
        "x-api-key",
        "Proxy-Authorization",
        "Host",
        "X-Request-Id",
        "X-Forwarded-For",
        "Content-Length",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    ] {
        let yaml = format!(
            "tokens:\n  u:\n    type: user\n    header: X-User\n    from_header: {header}\n"
        );
        assert_error(&yaml, 5, &format!("from_header cannot be `{header}`"));
    }
    let ok =
        "tokens:\n  u:\n    type: user\n    header: X-User\n    from_header: X-End-User-Token\n";
    let (ok, _, err) = check(ok);
    assert!(ok, "{err}");
}

#[test]
fn duplicate_listen_addresses() {
    let yaml = "server:\n  listen: 127.0.0.1:9100\nconnectors:\n  api:\n    upstream: http://x.example\n    listen: 127.0.0.1:9100\n";
    assert_error(yaml, 6, "already used by server.listen");
    let admin = "server:\n  listen: 127.0.0.1:9100\nadmin:\n  listen: 127.0.0.1:9100\n";
    assert_error(admin, 4, "already used");
}

#[test]
fn role_and_client_naming_unknown_things() {
    let yaml = r#"roles:
  r:
    allow:
      - connector: ghost
clients:
  c:
    roles: [r, phantom]
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    assert!(
        err.contains("K:4:") && err.contains("unknown connector `ghost`"),
        "{err}"
    );
    assert!(
        err.contains("K:7:") && err.contains("unknown role `phantom`"),
        "{err}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let yaml = r#"tokens:
  a: { value: { env: A }, header: "bad header" }
connectors:
  one:
    upstream: ftp://x
  two:
    upstream: https://x.example
    tokens: [missing]
    max_request_body: 12XB
    timeouts: { connect: 5 parsecs }
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    assert!(
        err.lines().count() >= 5,
        "expected every error, got:\n{err}"
    );
    for l in err.lines() {
        assert!(l.starts_with("K:"), "{l}");
    }
}

#[test]
fn dynamic_token_rules() {
    // http_request without url, with a malformed pointer, with a value.
    let yaml = r#"tokens:
  o:
    type: http_request
    request: { method: POST }
    response: { token: access_token }
    value: { literal: "x" }
    header: Authorization
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    assert!(err.contains("`request.url` is missing"), "{err}");
    assert!(
        err.contains("K:5:") && err.contains("not a JSON pointer"),
        "{err}"
    );
    assert!(
        err.contains("K:6:") && err.contains("is fetched; remove `value`"),
        "{err}"
    );
    // a user token with a static value; a request naming an unknown token.
    let yaml = r#"tokens:
  u:
    type: user
    value: { literal: "x" }
  o:
    type: http_request
    request:
      url: https://auth.example/token
      form: { client_secret: { token: nope } }
    response: { token: /access_token, expires_in: /expires_in }
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    assert!(
        err.contains("K:4:") && err.contains("comes from the caller"),
        "{err}"
    );
    assert!(err.contains("unknown token `nope`"), "{err}");
    let good = r#"tokens:
  o:
    type: http_request
    request:
      url: https://auth.example/token
      form: { grant_type: client_credentials, client_secret: { env: S } }
    response: { token: /access_token, expires_in: /expires_in }
    refresh_before: 30s
  u:
    type: user
    header: X-User
    jwt: { hs256_secret: { env: JWT }, audience: api }
"#;
    let (ok, _, err) = check(good);
    assert!(ok, "{err}");
}

#[test]
fn bad_key_hash_and_expiry() {
    let yaml = r#"roles: { r: {} }
clients:
  c:
    roles: [r]
    keys:
      - { name: a, sha256: "abc" }
      - name: b
        sha256: "0000000000000000000000000000000000000000000000000000000000000000"
        expires: "next tuesday"
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    assert!(
        err.contains("K:6:") && err.contains("64 hex digits"),
        "{err}"
    );
    assert!(
        err.contains("K:9:") && err.contains("not a UTC timestamp"),
        "{err}"
    );
}

#[test]
fn keygen_prints_key_and_its_sha256() {
    let (key, hash) = common::keygen("kg_");
    assert!(key.starts_with("kg_") && key.len() == 3 + 38, "{key}");
    assert_eq!(hash.len(), 64);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(key.as_bytes())), hash);
    let (other, _) = common::keygen("acme_");
    assert!(other.starts_with("acme_"));
    assert_ne!(key, other);
}

/// Every line of `err` that reports a duplicate, as (line, col, message).
fn duplicates(err: &str) -> Vec<String> {
    err.lines()
        .filter(|l| l.contains("duplicate key"))
        .map(str::to_string)
        .collect()
}

#[test]
fn duplicate_keys_at_any_level_are_refused_with_both_positions() {
    // Two `local:` connectors, two `upstream:` in one connector, two
    // tokens of one name, a repeat inside a flow mapping and inside a
    // list item, and a repeated top-level section.
    let yaml = r#"tokens:
  a: { value: { literal: "1" }, header: X-A }
  a: { value: { literal: "2" }, header: X-B }
connectors:
  local:
    upstream: http://127.0.0.1:9100
    upstream: http://127.0.0.1:9200
  local:
    upstream: http://127.0.0.1:9300
roles:
  r: { allow: [ { connector: local, connector: other } ] }
clients:
  c:
    roles: [r]
    keys:
      - name: one
        name: two
        sha256: "0000000000000000000000000000000000000000000000000000000000000000"
roles:
  s: {}
"#;
    let (ok, out, err) = check(yaml);
    assert!(!ok, "duplicates must be refused: {out}");
    let dups = duplicates(&err);
    for want in [
        "K:3:3: duplicate key `a` (first defined at 2:3)",
        "K:7:5: duplicate key `upstream` (first defined at 6:5)",
        "K:8:3: duplicate key `local` (first defined at 5:3)",
        "K:11:37: duplicate key `connector` (first defined at 11:19)",
        "K:17:9: duplicate key `name` (first defined at 16:9)",
        "K:19:1: duplicate key `roles` (first defined at 10:1)",
    ] {
        assert!(
            dups.iter().any(|l| l == want),
            "missing {want:?} in:\n{err}"
        );
    }
    assert_eq!(dups.len(), 6, "{err}");
}

#[test]
fn duplicate_map_entries_that_serde_would_merge_are_refused() {
    // A mapping deserialized into a map (not a struct) kept the last entry
    // silently: the file "passed" with one connector.
    let yaml = "connectors:\n  local:\n    upstream: http://a.example\n  local:\n    upstream: http://b.example\n";
    assert_error(yaml, 4, "duplicate key `local` (first defined at 2:3)");
}

#[test]
fn every_unknown_field_is_reported_in_one_run() {
    let yaml = r#"server:
  listne: 127.0.0.1:8080
  shutdown_grace: 5s
admin: { lissen: 127.0.0.1:8081 }
connectors:
  api:
    upstream: https://x.example
    tokns: [a]
roles:
  r:
    allow:
      - connector: api
        method: [GET]
"#;
    let (ok, _, err) = check(yaml);
    assert!(!ok);
    for (line, needle) in [
        ("K:2:3: ", "server: unknown field `listne`"),
        ("K:4:10: ", "admin: unknown field `lissen`"),
        ("K:8:5: ", "connectors.api: unknown field `tokns`"),
        ("K:13:9: ", "unknown field `method`"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(line) && l.contains(needle)),
            "missing {line}{needle} in:\n{err}"
        );
    }
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[test]
fn summary_counts_what_the_file_declares() {
    // GOOD declares one role and one client; the built-in keygate-admin
    // role and client are keygate's, not the file's.
    let (ok, out, err) = check(GOOD);
    assert!(ok, "{err}");
    assert!(
        out.contains("1 tokens, 1 connectors, 1 roles, 1 clients, 0 declared keys"),
        "{out}"
    );
    let (ok, out, err) = check("server: { listen: 127.0.0.1:8080 }\n");
    assert!(ok, "{err}");
    assert!(out.contains("0 roles, 0 clients"), "{out}");
}

/// An RFC 3339 timestamp `days` from now.
fn days_from_now(days: u64) -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(days * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[test]
fn declared_keys_must_expire_within_max_ttl() {
    let zeros = "0".repeat(64);
    let ones = "1".repeat(64);
    let twos = "2".repeat(64);
    let yaml = |max_ttl: &str| {
        format!(
            r#"keys: {{ {max_ttl} }}
roles: {{ r: {{}} }}
clients:
  c:
    roles: [r]
    keys:
      - {{ name: forever, sha256: "{zeros}" }}
      - name: far
        sha256: "{ones}"
        expires: {far}
      - {{ name: soon, sha256: "{twos}", expires: {soon} }}
"#,
            far = days_from_now(400),
            soon = days_from_now(10),
        )
    };
    let (ok, _, err) = check(&yaml("max_ttl: 30d"));
    assert!(!ok, "keys outliving keys.max_ttl must be refused");
    assert!(
        err.lines()
            .any(|l| l.starts_with("K:7:") && l.contains("key `forever` needs `expires`")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("K:10:")
            && l.contains("key `far` expires")
            && l.contains("beyond keys.max_ttl = 30d")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "`soon` is within the bound: {err}");
    // Without max_ttl, any expiry (or none) is accepted.
    let (ok, _, err) = check(&yaml("prefix: kg_"));
    assert!(ok, "{err}");
}

/// Security review M3: `keys.max_ttl` is the lifetime of bootstrap, reset
/// and default API keys; unbounded, its millisecond expiry wrapped negative
/// in the store or overflowed into "never expires".
#[test]
fn max_ttl_is_bounded_like_api_key_lifetimes() {
    let yaml = |max_ttl: &str| format!("roles: {{ r: {{}} }}\nkeys:\n  max_ttl: {max_ttl}\n");
    for bad in ["10000000000000000s", "36501d", "18446744073709551615s"] {
        assert_error(&yaml(bad), 3, "max_ttl");
        let (_, _, err) = check(&yaml(bad));
        assert!(err.contains("36500d (100 years)"), "{bad}: {err}");
    }
    let (ok, _, err) = check(&yaml("36500d"));
    assert!(ok, "the bound itself is accepted: {err}");
}
