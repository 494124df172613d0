//! Config validation never panics, whatever the file holds: the function
//! `keygate check`, start and every reload use (`config::from_text`) returns
//! a config or errors. Inputs are arbitrary text, YAML-ish text, and YAML
//! documents built from the config's own field names with odd values, so
//! the generator reaches deep into validation (durations, addresses, key
//! hashes, expiries, duplicate and unknown keys, flow and block style).

use std::path::Path;

use proptest::prelude::*;

fn check(text: &str) {
    // Ok or Err are both fine; a panic fails the property.
    let result = keygate::config::from_text(text, Path::new("/nonexistent/keygate.yaml"));
    if let Err(errs) = result {
        assert!(!errs.0.is_empty(), "an error result lists its errors");
        for e in &errs.0 {
            assert!(!e.message.is_empty());
        }
    }
}

/// Every field name the config knows, plus a few it does not.
const KEYS: &[&str] = &[
    "server",
    "listen",
    "tls",
    "cert",
    "key",
    "shutdown_grace",
    "workers",
    "admin",
    "store",
    "sqlite",
    "master_key",
    "retention",
    "flush_interval",
    "keys",
    "prefix",
    "max_ttl",
    "tokens",
    "description",
    "type",
    "value",
    "env",
    "file",
    "literal",
    "token",
    "header",
    "request",
    "method",
    "url",
    "headers",
    "form",
    "json",
    "ca_file",
    "timeout",
    "response",
    "expires_in",
    "expires_at",
    "ttl",
    "refresh_before",
    "from_header",
    "jwt",
    "hs256_secret",
    "jwks_url",
    "issuer",
    "audience",
    "connectors",
    "upstream",
    "auth",
    "timeouts",
    "connect",
    "max_request_body",
    "forward_client_ip",
    "roles",
    "allow",
    "connector",
    "methods",
    "paths",
    "clients",
    "name",
    "sha256",
    "expires",
    "local",
    "stripe",
    "a",
    "b",
    "listne",
    "<<",
    "",
];

const TOP: &[&str] = &[
    "server",
    "admin",
    "store",
    "keys",
    "tokens",
    "connectors",
    "roles",
    "clients",
    "bogus",
];

const VALUES: &[&str] = &[
    "30s",
    "0",
    "-1",
    "1.5",
    "500ms",
    "90d",
    "18446744073709551616d",
    "99999999999999999999",
    "12XB",
    "32MiB",
    "1GiB",
    "127.0.0.1:0",
    "127.0.0.1:8080",
    "0.0.0.0:80",
    "[::1]:9",
    "localhost:1",
    "localhost:99999",
    "http://127.0.0.1:9100",
    "https://api.example.com/v1/",
    "ftp://x",
    "https://u@x",
    "/relative",
    "text",
    "http_request",
    "user",
    "api_key",
    "none",
    "GET",
    "get",
    "P OST",
    "/v1/**",
    "/v1/*/x",
    "**",
    "Bearer",
    "Bear er",
    "X-Api-Key",
    "Host",
    "Authorization",
    "2027-06-30T00:00:00Z",
    "2999-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "next tuesday",
    "/access_token",
    "access_token",
    "~0~1",
    "~",
    "null",
    "true",
    "yes",
    "''",
    "\"\"",
    "\"a\\r\\nb\"",
    "\"\\u0000\"",
    "[]",
    "{}",
    "[a, b]",
    "{ env: X }",
    "{ literal: x }",
    "{ token: a }",
    "*anchor",
    "&anchor x",
    "!tag x",
    "kg_",
    "a b",
    "ü",
    "\"\\t\"",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd",
];

#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
}

fn scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => proptest::sample::select(VALUES).prop_map(|v| Node::Scalar(v.to_string())),
        1 => "[ -~]{0,12}".prop_map(Node::Scalar),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_-]{1,8}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    scalar().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            3 => proptest::collection::vec((key(), inner.clone()), 0..6).prop_map(Node::Map),
            1 => proptest::collection::vec(inner, 0..4).prop_map(Node::Seq),
        ]
    })
}

fn document() -> impl Strategy<Value = (Vec<(String, Node)>, bool)> {
    (
        proptest::collection::vec(
            (
                proptest::sample::select(TOP).prop_map(str::to_string),
                node(),
            ),
            0..7,
        ),
        any::<bool>(),
    )
}

/// Block style; with `flow`, nested mappings and sequences that fit on one
/// line are written `{ k: v }` / `[a, b]` instead.
fn emit(node: &Node, indent: usize, flow: bool, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Scalar(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Node::Map(entries) if entries.is_empty() => out.push_str("{}\n"),
        Node::Seq(items) if items.is_empty() => out.push_str("[]\n"),
        Node::Map(entries) if flow && entries.iter().all(|(_, v)| matches!(v, Node::Scalar(_))) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| match v {
                    Node::Scalar(s) => format!("{k}: {s}"),
                    _ => String::new(),
                })
                .collect();
            out.push_str(&format!("{{ {} }}\n", parts.join(", ")));
        }
        Node::Map(entries) => {
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&format!("{pad}{k}: "));
                emit(v, indent + 2, flow, out);
            }
        }
        Node::Seq(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&format!("{pad}- "));
                emit(item, indent + 2, flow, out);
            }
        }
    }
}

fn render((entries, flow): &(Vec<(String, Node)>, bool)) -> String {
    let mut out = String::new();
    for (k, v) in entries {
        out.push_str(&format!("{k}: "));
        emit(v, 2, *flow, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn yaml_ish_text_never_panics(text in "[a-z_:{}\\[\\]\\-,&*!|>'\"# \n0-9.~<]{0,200}") {
        check(&text);
    }

    #[test]
    fn structured_configs_never_panic(doc in document()) {
        check(&render(&doc));
    }
}

#[test]
fn the_generator_reaches_validation() {
    // A guard that the structured generator produces documents the parser
    // accepts, so validation (not only the YAML parser) is exercised.
    let doc = (
        vec![(
            "connectors".to_string(),
            Node::Map(vec![(
                "local".to_string(),
                Node::Map(vec![(
                    "upstream".to_string(),
                    Node::Scalar("ftp://x".to_string()),
                )]),
            )]),
        )],
        false,
    );
    let text = render(&doc);
    let errs = keygate::config::from_text(&text, Path::new("/nonexistent/k.yaml"))
        .expect_err("ftp upstream is refused");
    assert!(
        errs.0.iter().any(|e| e.message.contains("must use http")),
        "{text}\n{errs}"
    );
}
