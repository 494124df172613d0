//! SPEC.md's admin routes are what the OpenAPI document says: every route
//! in the SPEC §5 table and every route §7 names is in
//! `src/admin/openapi.yaml` (which a unit test holds to the router, row
//! for row, both ways).

#![expect(
    clippy::expect_used,
    reason = "a test reading two files: a missing one should stop it with its message"
)]

use std::collections::BTreeSet;
use std::path::Path;

/// `(METHOD, /path)` of every operation in the OpenAPI document.
fn documented() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("src/admin/openapi.yaml")).expect("openapi.yaml");
    let doc: serde_json::Value = keygate::config::parse_yaml(&text).expect("openapi parses");
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn spec() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("../shared/SPEC.md"))
        .expect("../shared/SPEC.md beside the repository (CI puts it there)")
}

#[test]
fn every_spec_admin_route_is_documented() {
    let spec = spec();
    let doc = documented();
    let mut wanted = Vec::new();
    // §5: the table's first column, `METHOD /path`.
    let table = spec
        .split("## 5. Admin API")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("SPEC §5");
    for line in table.lines() {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((route, _)) = cell.split_once('`') else {
            continue;
        };
        if let Some((method, path)) = route.split_once(' ') {
            wanted.push((method.to_string(), path.to_string()));
        }
    }
    assert!(wanted.len() >= 10, "the §5 table was read: {wanted:?}");
    // §7 writes its routes as one pattern; expanded here, and the pattern
    // must still be the SPEC's.
    assert!(
        spec.contains("`POST/GET/PATCH/DELETE /api/v1/{tokens,connectors,roles,clients}[/{name}]`")
            && spec.contains("`PUT /api/v1/connectors/{name}/tokens`"),
        "SPEC §7 changed its routes; update this test"
    );
    for section in ["tokens", "connectors", "roles", "clients"] {
        for method in ["POST", "GET"] {
            wanted.push((method.into(), format!("/api/v1/{section}")));
        }
        for method in ["GET", "PATCH", "DELETE"] {
            wanted.push((method.into(), format!("/api/v1/{section}/{{name}}")));
        }
    }
    wanted.push(("PUT".into(), "/api/v1/connectors/{name}/tokens".into()));
    wanted.push(("GET".into(), "/api/v1/audit".into()));
    let missing: Vec<_> = wanted.iter().filter(|w| !doc.contains(w)).collect();
    assert!(
        missing.is_empty(),
        "in SPEC, not in openapi.yaml: {missing:?}"
    );
}
