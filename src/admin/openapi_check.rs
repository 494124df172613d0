//! The OpenAPI cross-check (tests only). `openapi.yaml` and the route
//! table name the same `(method, path)` pairs, and for every route each
//! answer its handler's type can give has, in the document, its status,
//! its content type and, for JSON, its shape: the same `properties` and
//! `required` at every depth, the same scalar types, `nullable` exactly
//! where a field can be `null`, the same `enum` values.
//!
//! The answers are not described a second time here: each route's
//! `answers` is inferred from its handler's return type (see `route!`),
//! and every [`Sample`] value is rendered through the real
//! `IntoReply::into_reply`, so status and content type come from the code
//! that serves them. Samples fill every `Option` once with `Some` and once
//! with `None` and name every enum variant, so a field or a variant the
//! document lacks (or has too many of) is found.
//!
//! Errors: every handler fails with `GatewayError`, so its type alone
//! allows any status. What a route can answer whatever its handler does
//! follows from the route's kind: its key check (400 for two different
//! keys, 401 with `WWW-Authenticate`, 403; listed beside the check
//! itself), a path parameter naming an object (404), a request body (400,
//! 413), a query parameter (400), and for `/api/` routes a failing store
//! (500). Each of those errors is rendered by the real
//! `GatewayError::to_response` and the admin listener's own header step,
//! and must be documented for the operation with its status, body shape,
//! `Keygate-Error` code and headers. Statuses only one handler gives (409,
//! 503, a 400 for a refused value) are found by schemathesis in CI
//! (`tests/schemathesis/run.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::api::{
    ClientList, ClientView, ConnectorList, ConnectorToken, ConnectorView, KeyCreated, KeyList,
    KeyRolled, Reloaded, RoleRef, Status, Timeouts, TokenList, TokenSource, TokenState, TokenView,
};
use super::api::{ObjectSource, Ownership, RevokePending, Revoked};
use super::audit_log::{ActorView, AuditList, AuditView, ObjectView};
use super::catalog::{GrantView, RoleList, RoleView, Tagged, Yaml};
use super::console::{Asset, Page, Redirect, SessionInfo, SignedIn, SignedOut};
use super::probes::{Health, Readiness};
use super::reply::{Created, IntoReply, Json, NoContent, OpenApiJson, OpenApiYaml, OpenMetrics};
use super::router::{Ctx, ROUTES, Route};
use super::{Access, finish, key_check_refusals};
use crate::auth::KeySource;
use crate::auth::keys::KeyMetadata;
use crate::body::Body;
use crate::config::ConfigError;
use crate::error::GatewayError;
use crate::secret::Secret;
use crate::state::{ReloadStatus, ReloadTrigger, TlsStatus};

/// One answer a handler gave for one sample: status, media type (without
/// parameters) and the body if it is JSON.
pub(crate) struct Answer {
    status: StatusCode,
    media: Option<String>,
    json: Option<Value>,
    headers: HeaderMap,
}

/// Values of a response type that together reach every field: each
/// `Option` both set and unset, each enum variant, each list non-empty.
pub(crate) trait Sample: Sized {
    fn samples() -> Vec<Self>;
}

/// The answers of a handler, from its type alone: `answers_of(api::status)`.
pub(crate) fn answers_of<F, Fut, R>(_handler: F) -> Vec<Answer>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<R, GatewayError>>,
    R: IntoReply + Sample,
{
    R::samples()
        .into_iter()
        .map(|r| {
            let resp = r.into_reply().expect("a sample serializes");
            let media = resp
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| v.to_str().expect("ascii content type"))
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
            let json = match resp.body() {
                Body::Full(Some(bytes)) if media.as_deref() == Some(super::reply::JSON) => {
                    Some(serde_json::from_slice(bytes).expect("JSON body"))
                }
                _ => None,
            };
            Answer {
                status: resp.status(),
                media,
                json,
                headers: resp.headers().clone(),
            }
        })
        .collect()
}

// ---- The schema check ----

fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.strip_prefix('#').expect("local $ref"))
                .unwrap_or_else(|| panic!("{r} resolves"));
            resolve(doc, target)
        }
        None => node,
    }
}

/// An `allOf` of object schemas as one object schema; anything else as is.
fn flatten(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
        return schema.clone();
    };
    let (mut properties, mut required) = (serde_json::Map::new(), Vec::new());
    for part in parts {
        let part = flatten(doc, part);
        if let Some(p) = part["properties"].as_object() {
            properties.extend(p.clone());
        }
        if let Some(r) = part["required"].as_array() {
            required.extend(r.iter().cloned());
        }
    }
    json!({"type": "object", "properties": properties, "required": required})
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every way `values` (all the samples reaching this spot) and `schema`
/// disagree, each prefixed with `at`.
fn check(doc: &Value, schema: &Value, values: &[&Value], at: &str, errs: &mut Vec<String>) {
    let schema = flatten(doc, schema);
    let nullable = schema["nullable"].as_bool().unwrap_or(false);
    let nulls = values.iter().any(|v| v.is_null());
    if nulls && !nullable {
        errs.push(format!("{at}: served as null, but not `nullable`"));
    }
    if nullable && !nulls {
        errs.push(format!("{at}: `nullable`, but never served as null"));
    }
    let values: Vec<&Value> = values.iter().copied().filter(|v| !v.is_null()).collect();
    if values.is_empty() {
        errs.push(format!("{at}: no sample reaches this schema"));
        return;
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        check_one_of(doc, &schema, alternatives, &values, at, errs);
        return;
    }
    if schema.get("enum").is_some() {
        let served: BTreeSet<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        let documented = strings(&schema["enum"]);
        if served != documented {
            errs.push(format!("{at}: enum {documented:?}, served {served:?}"));
        }
    }
    let ty = schema["type"].as_str().unwrap_or("(none)");
    let fits = |v: &&Value| match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    };
    if let Some(bad) = values.iter().find(|v| !fits(v)) {
        errs.push(format!("{at}: type `{ty}`, served {bad}"));
        return;
    }
    match ty {
        "object" => check_object(doc, &schema, &values, at, errs),
        "array" => {
            let items: Vec<&Value> = values
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            check(doc, &schema["items"], &items, &format!("{at}[]"), errs);
        }
        _ => {}
    }
}

/// Properties: served in some sample ⇔ documented; served in every sample
/// ⇔ `required`. Then each property against its own schema.
fn check_object(doc: &Value, schema: &Value, values: &[&Value], at: &str, errs: &mut Vec<String>) {
    let empty = serde_json::Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    let documented: BTreeSet<String> = properties.keys().cloned().collect();
    let mut served = BTreeSet::new();
    let mut always: Option<BTreeSet<String>> = None;
    for v in values {
        let keys: BTreeSet<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        served.extend(keys.iter().cloned());
        always = Some(match always {
            None => keys,
            Some(a) => a.intersection(&keys).cloned().collect(),
        });
    }
    if served != documented {
        errs.push(format!(
            "{at}: properties {documented:?}, served {served:?}"
        ));
    }
    let required = strings(&schema["required"]);
    if always.as_ref() != Some(&required) {
        errs.push(format!(
            "{at}: required {required:?}, always served {:?}",
            always.unwrap_or_default()
        ));
    }
    for (name, sub) in properties {
        let vs: Vec<&Value> = values.iter().filter_map(|v| v.get(name)).collect();
        check(doc, sub, &vs, &format!("{at}.{name}"), errs);
    }
}

/// A tagged union: its `discriminator` property picks the alternative
/// (the one whose `enum` for that property holds the value); every
/// alternative must be served, and each is checked with its own samples.
fn check_one_of(
    doc: &Value,
    schema: &Value,
    alternatives: &[Value],
    values: &[&Value],
    at: &str,
    errs: &mut Vec<String>,
) {
    let Some(tag) = schema["discriminator"]["propertyName"].as_str() else {
        errs.push(format!("{at}: oneOf without discriminator.propertyName"));
        return;
    };
    let mut parts: Vec<Vec<&Value>> = vec![Vec::new(); alternatives.len()];
    for v in values {
        let value = v[tag].as_str().unwrap_or_default().to_string();
        let fit = alternatives
            .iter()
            .position(|a| strings(&flatten(doc, a)["properties"][tag]["enum"]).contains(&value));
        match fit {
            Some(i) => parts[i].push(v),
            None => errs.push(format!("{at}: no alternative for {tag} `{value}`")),
        }
    }
    for (i, (alternative, vs)) in alternatives.iter().zip(&parts).enumerate() {
        check(doc, alternative, vs, &format!("{at}<{i}>"), errs);
    }
}

fn openapi() -> Value {
    // The strict parse: a duplicate key (two `"404"` of one operation)
    // fails here, as it fails the served JSON.
    crate::config::parse_yaml(super::OPENAPI).expect("openapi.yaml parses")
}

#[test]
fn openapi_and_the_route_table_name_the_same_routes() {
    let doc = openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.pattern.to_string()))
        .collect();
    let only_doc: Vec<_> = documented.difference(&table).collect();
    let only_table: Vec<_> = table.difference(&documented).collect();
    assert!(
        only_doc.is_empty() && only_table.is_empty(),
        "only in openapi.yaml: {only_doc:?}; only in ROUTES: {only_table:?}"
    );
    // Routes without a key say so; the rest inherit the document's.
    for r in ROUTES {
        let op = &doc["paths"][r.pattern][r.method.as_str().to_ascii_lowercase()];
        let open = op["security"].as_array().is_some_and(Vec::is_empty);
        assert_eq!(
            open,
            r.access == super::Access::Open,
            "{} {}: security",
            r.method,
            r.pattern
        );
    }
}

#[test]
fn every_answer_has_the_status_content_and_shape_openapi_yaml_gives() {
    let doc = openapi();
    let mut errs = Vec::new();
    for r in ROUTES {
        let route = format!("{} {}", r.method, r.pattern);
        let op = &doc["paths"][r.pattern][r.method.as_str().to_ascii_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        // A status may come with several media types (the console's
        // files): each is checked against the document on its own.
        let mut by_status: BTreeMap<(u16, Option<String>), Vec<Value>> = BTreeMap::new();
        let mut headers: Vec<(u16, HeaderMap)> = Vec::new();
        for a in (r.answers)() {
            by_status
                .entry((a.status.as_u16(), a.media.clone()))
                .or_default()
                .extend(a.json);
            let mut h = a.headers;
            finish(&mut h, "req-1", is_api(r));
            headers.push((a.status.as_u16(), h));
        }
        for (status, h) in &headers {
            if let Some(resp) = responses.get(&status.to_string()) {
                let at = format!("{route} {status}");
                check_headers(&doc, resolve(&doc, resp), h, false, &at, &mut errs);
            }
        }
        for ((status, media), values) in &by_status {
            let Some(resp) = responses.get(&status.to_string()) else {
                errs.push(format!("{route}: answers {status}, undocumented"));
                continue;
            };
            let content = resolve(&doc, resp).get("content");
            match (media, content) {
                (None, None) => {}
                (None, Some(_)) => errs.push(format!("{route} {status}: documented with a body")),
                (Some(m), None) => errs.push(format!("{route} {status}: {m} body undocumented")),
                (Some(m), Some(c)) => match c.get(m) {
                    None => errs.push(format!("{route} {status}: {m} not among {c}")),
                    Some(media) if m == super::reply::JSON => {
                        let vs: Vec<&Value> = values.iter().collect();
                        check(
                            &doc,
                            &media["schema"],
                            &vs,
                            &format!("{route} {status}"),
                            &mut errs,
                        );
                    }
                    Some(_) => {}
                },
            }
        }
        let served: BTreeSet<u16> = by_status.keys().map(|(s, _)| *s).collect();
        for status in responses.keys() {
            let code: u16 = status.parse().expect("numeric status");
            if (200..300).contains(&code) && !served.contains(&code) {
                errs.push(format!("{route}: documents {code}, never answers it"));
            }
        }
    }
    assert!(
        errs.is_empty(),
        "openapi.yaml disagrees:\n{}",
        errs.join("\n")
    );
}

/// Error answers come from `GatewayError::to_response` alone; their shape
/// is `#/components/schemas/Error`.
#[test]
fn error_answers_have_the_documented_shape() {
    let doc = openapi();
    let body = |e: &GatewayError| {
        let resp = e.to_response("req-1");
        let Body::Full(Some(bytes)) = resp.body() else {
            panic!("an error has a body")
        };
        serde_json::from_slice::<Value>(bytes).expect("json")
    };
    let resp = GatewayError::MethodNotAllowed(vec![http::Method::GET]).to_response("req-1");
    let problem = |at: Option<&str>| crate::objects::Problem {
        pointer: "/headers/X-API-Key".into(),
        at: at.map(str::to_string),
        message: "written twice".into(),
    };
    let unprocessable = GatewayError::Unprocessable(vec![
        problem(Some("/connectors/c/headers/X-API-Key")),
        problem(None),
    ]);
    let plain = body(&GatewayError::MethodNotAllowed(vec![http::Method::GET]));
    let invalid = body(&unprocessable);
    let mut errs = Vec::new();
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/Error"}),
        &[&plain],
        "Error",
        &mut errs,
    );
    check(
        &doc,
        &json!({"$ref": "#/components/schemas/ValidationError"}),
        &[&invalid],
        "ValidationError",
        &mut errs,
    );
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert_eq!(
        resp.headers()
            .get(http::header::ALLOW)
            .map(|v| v.as_bytes()),
        Some(&b"GET"[..])
    );
}

/// The checker itself finds a missing, an extra and a mistyped field.
#[test]
fn the_shape_check_finds_drift() {
    let doc = json!({});
    let schema = json!({
        "type": "object",
        "required": ["a", "b"],
        "properties": {"a": {"type": "string"}, "b": {"type": "integer", "nullable": true}}
    });
    let run = |vs: &[Value]| {
        let mut errs = Vec::new();
        let refs: Vec<&Value> = vs.iter().collect();
        check(&doc, &schema, &refs, "x", &mut errs);
        errs
    };
    assert!(run(&[json!({"a": "s", "b": 1}), json!({"a": "t", "b": null})]).is_empty());
    assert!(!run(&[json!({"a": "s", "b": 1}), json!({"a": "s", "b": 1, "c": 2})]).is_empty());
    assert!(!run(&[json!({"a": "s", "b": null}), json!({"a": "s"})]).is_empty());
    assert!(!run(&[json!({"a": 1, "b": null})]).is_empty());
    assert!(!run(&[json!({"a": "s", "b": 1})]).is_empty(), "never null");
}

// ---- Errors ----

/// Whether the admin listener marks the route's answers no-store (see
/// `Admin::handle`): the API and the console's session, whose routes can
/// also fail inside keygate (500).
fn is_api(r: &Route) -> bool {
    super::no_store(r.pattern)
}

/// Every way `headers` (an answer as sent) and the documented response
/// `resp` disagree: a documented `required` header missing or off its
/// schema, and with `all_documented`, a header sent but not documented
/// (`Content-Type` and `Content-Length` are the body's business).
fn check_headers(
    doc: &Value,
    resp: &Value,
    headers: &HeaderMap,
    all_documented: bool,
    at: &str,
    errs: &mut Vec<String>,
) {
    let empty = serde_json::Map::new();
    let documented = resp["headers"].as_object().unwrap_or(&empty);
    for (name, spec) in documented {
        let spec = resolve(doc, spec);
        let sent = headers
            .get(name.as_str())
            .map(|v| v.to_str().unwrap_or("(not text)"));
        match sent {
            None if spec["required"].as_bool() == Some(true) => {
                errs.push(format!("{at}: documented header {name} is not sent"));
            }
            None => {}
            Some(v) => {
                let schema = resolve(doc, &spec["schema"]);
                let allowed = strings(&schema["enum"]);
                if !allowed.is_empty() && !allowed.contains(v) {
                    errs.push(format!("{at}: header {name}: {v:?} is not in {allowed:?}"));
                }
                let min = schema["minLength"].as_u64().unwrap_or(0);
                if (v.len() as u64) < min {
                    errs.push(format!("{at}: header {name}: {v:?} is shorter than {min}"));
                }
            }
        }
    }
    if all_documented {
        for name in headers.keys() {
            let known = documented
                .keys()
                .any(|d| d.eq_ignore_ascii_case(name.as_str()));
            // Sent on every answer; the document's description says so once.
            let everywhere = super::SECURITY_HEADERS.iter().any(|(h, _)| h == name);
            if !known && !everywhere && name != CONTENT_TYPE && name != CONTENT_LENGTH {
                errs.push(format!("{at}: sends header {name}, undocumented"));
            }
        }
    }
}

/// The errors `r` can answer by its kind alone, whatever its handler
/// does, each with the reason. `op` is the route's operation in the
/// document, for its body and query parameters.
fn errors_of_kind(doc: &Value, r: &Route, op: &Value) -> Vec<(GatewayError, &'static str)> {
    let mut out = Vec::new();
    if r.access == Access::Admin {
        out.extend(
            key_check_refusals()
                .into_iter()
                .map(|e| (e, "its key check")),
        );
    }
    if r.pattern.contains('{') {
        let e = GatewayError::NotFound("no such object".into());
        out.push((e, "a path parameter naming an object that may not exist"));
    }
    if op.get("requestBody").is_some() {
        let e = GatewayError::BadRequest("invalid JSON body".into());
        out.push((e, "a body that is not JSON or not its shape"));
        out.push((GatewayError::BodyTooLarge, "a body over 64 KiB"));
    }
    let query = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| resolve(doc, p)["in"] == "query");
    if query {
        let e = GatewayError::BadRequest("bad query parameter".into());
        out.push((e, "a query parameter it cannot read"));
    }
    if is_api(r) {
        out.push((GatewayError::Internal, "a failing store or a bug"));
    }
    out
}

/// Every error a route answers by its kind that `doc` does not document
/// exactly as it is sent (status, body shape, `Keygate-Error` code, every
/// header); and statuses `doc` documents that the route's kind rules out
/// (401/403 without a key, 413 without a body).
fn undocumented_errors(doc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for r in ROUTES {
        let route = format!("{} {}", r.method, r.pattern);
        let op = &doc["paths"][r.pattern][r.method.as_str().to_ascii_lowercase()];
        let empty = serde_json::Map::new();
        let responses = op["responses"].as_object().unwrap_or(&empty);
        for (e, why) in errors_of_kind(doc, r, op) {
            let mut resp = e.to_response("req-1");
            finish(resp.headers_mut(), "req-1", is_api(r));
            let status = resp.status().as_u16();
            let at = format!("{route} {status} {} ({why})", e.code());
            let Some(documented) = responses.get(&status.to_string()) else {
                errs.push(format!("{at}: status undocumented"));
                continue;
            };
            let documented = resolve(doc, documented);
            check_headers(doc, documented, resp.headers(), true, &at, &mut errs);
            let Body::Full(Some(bytes)) = resp.body() else {
                errs.push(format!("{at}: an error without a body"));
                continue;
            };
            let body: Value = serde_json::from_slice(bytes).expect("an error body is JSON");
            match documented["content"].get(super::reply::JSON) {
                Some(media) => check(doc, &media["schema"], &[&body], &at, &mut errs),
                None => errs.push(format!("{at}: no {} body documented", super::reply::JSON)),
            }
        }
        let has = |s: &str| responses.contains_key(s);
        // Sign-in is open and checks the key its body carries.
        let checks_a_key = r.access == Access::Admin || r.pattern == "/console/session";
        if !checks_a_key && (has("401") || has("403")) {
            errs.push(format!("{route}: needs no key, documents 401/403"));
        }
        if op.get("requestBody").is_none() && has("413") {
            errs.push(format!("{route}: takes no body, documents 413"));
        }
    }
    // Two refusals with one code (a bad key, a key whose client is gone)
    // find the same gap: say it once.
    let mut seen = BTreeSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    errs
}

#[test]
fn every_error_a_route_answers_by_its_kind_is_documented() {
    let errs = undocumented_errors(&openapi());
    assert!(
        errs.is_empty(),
        "openapi.yaml lacks errors the routes answer:\n{}",
        errs.join("\n")
    );
}

/// The error check finds a status, a code and a header the document
/// leaves out, and a status it claims the route's kind rules out.
#[test]
fn the_error_check_finds_what_the_document_leaves_out() {
    let mut doc = openapi();
    let paths = &mut doc["paths"];
    let status = paths["/api/v1/status"]["get"]["responses"]
        .as_object_mut()
        .expect("responses");
    status.remove("401");
    status.insert(
        "413".into(),
        json!({"$ref": "#/components/responses/TooLarge"}),
    );
    paths["/api/v1/keys"]["post"]["responses"]
        .as_object_mut()
        .expect("responses")
        .remove("413");
    let unauthorized = &mut doc["components"]["responses"]["Unauthorized"]["headers"];
    unauthorized
        .as_object_mut()
        .expect("headers")
        .remove("WWW-Authenticate");
    unauthorized["Keygate-Error"]["schema"]["enum"] = json!(["missing_api_key"]);
    let errs = undocumented_errors(&doc).join("\n");
    for expected in [
        "GET /api/v1/status 401 missing_api_key (its key check): status undocumented",
        "GET /api/v1/status: takes no body, documents 413",
        "POST /api/v1/keys 413 body_too_large (a body over 64 KiB): status undocumented",
        "PUT /api/v1/tokens/{name}/value 401 missing_api_key (its key check): sends header www-authenticate, undocumented",
        "GET /api/v1/keys 401 api_key_expired (its key check): header Keygate-Error: \"api_key_expired\" is not in",
    ] {
        assert!(
            errs.contains(expected),
            "not found: {expected}\nin:\n{errs}"
        );
    }
}

// ---- Samples ----

/// A paged list's `next_cursor`: on a page with more after it, and `null`
/// on the last.
fn cursors() -> Vec<Option<String>> {
    vec![Some("6b65795f31".into()), None]
}

impl<T: Sample> Sample for Json<T> {
    fn samples() -> Vec<Self> {
        T::samples().into_iter().map(Json).collect()
    }
}

impl<T: Sample> Sample for Created<T> {
    fn samples() -> Vec<Self> {
        T::samples().into_iter().map(Created).collect()
    }
}

impl<R: Sample> Sample for Tagged<R> {
    fn samples() -> Vec<Self> {
        R::samples()
            .into_iter()
            .enumerate()
            .map(|(i, reply)| Tagged {
                version: (i % 2 == 0).then_some(3),
                reply,
            })
            .collect()
    }
}

impl Sample for Yaml {
    fn samples() -> Vec<Self> {
        vec![Yaml("tokens: {}\n".into())]
    }
}

impl Sample for Ownership {
    /// An API object first, then one from the file.
    fn samples() -> Vec<Self> {
        ObjectSource::samples()
            .into_iter()
            .map(|source| match source {
                ObjectSource::Api => Ownership {
                    source,
                    file: None,
                    version: Some(2),
                    created_at: Some("2025-01-01T00:00:00Z".into()),
                    updated_at: Some("2025-01-02T00:00:00Z".into()),
                },
                ObjectSource::Config => Ownership {
                    source,
                    file: Some("/etc/keygate/keygate.yaml".into()),
                    version: None,
                    created_at: None,
                    updated_at: None,
                },
            })
            .collect()
    }
}

impl Sample for ObjectSource {
    fn samples() -> Vec<Self> {
        let all = vec![ObjectSource::Api, ObjectSource::Config];
        for s in &all {
            match s {
                ObjectSource::Api | ObjectSource::Config => {}
            }
        }
        all
    }
}

impl Sample for RoleView {
    fn samples() -> Vec<Self> {
        Ownership::samples()
            .into_iter()
            .enumerate()
            .map(|(i, owner)| {
                let set = i % 2 == 0;
                RoleView {
                    name: "billing".into(),
                    description: set.then(|| "billing calls".into()),
                    admin: !set,
                    allow: vec![GrantView {
                        connector: "stripe".into(),
                        methods: set.then(|| vec!["GET".into()]),
                        paths: set.then(|| vec!["/v1/charges/**".into()]),
                    }],
                    owner,
                }
            })
            .collect()
    }
}

impl Sample for RoleList {
    fn samples() -> Vec<Self> {
        cursors()
            .into_iter()
            .map(|next_cursor| RoleList {
                roles: RoleView::samples(),
                next_cursor,
            })
            .collect()
    }
}

impl Sample for SessionInfo {
    fn samples() -> Vec<Self> {
        vec![SessionInfo {
            client: "keygate-admin".into(),
            key_id: "key_01".into(),
            key_name: "bootstrap".into(),
            csrf_token: Secret::new("0123abcd".repeat(8)),
            created_at: "2025-01-01T00:00:00Z".into(),
            expires_at: "2025-01-01T08:00:00Z".into(),
            idle_timeout_seconds: 1800,
        }]
    }
}

impl Sample for SignedIn {
    fn samples() -> Vec<Self> {
        SessionInfo::samples()
            .into_iter()
            .map(|info| SignedIn {
                cookie: http::HeaderValue::from_static(
                    "keygate_session=00ff; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800",
                ),
                info,
            })
            .collect()
    }
}

impl Sample for SignedOut {
    fn samples() -> Vec<Self> {
        vec![SignedOut(http::HeaderValue::from_static(
            "keygate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ))]
    }
}

impl Sample for Asset {
    /// Every file the console has, each with its own content type.
    fn samples() -> Vec<Self> {
        super::console::assets::ASSETS.iter().map(Asset).collect()
    }
}

impl Sample for Page {
    fn samples() -> Vec<Self> {
        super::console::assets::ASSETS
            .first()
            .map(|a| Page(Asset(a)))
            .into_iter()
            .collect()
    }
}

impl Sample for Redirect {
    fn samples() -> Vec<Self> {
        vec![Redirect("/console/")]
    }
}

impl Sample for NoContent {
    fn samples() -> Vec<Self> {
        vec![NoContent]
    }
}

impl Sample for Revoked {
    fn samples() -> Vec<Self> {
        let all = vec![
            Revoked::Everywhere,
            Revoked::Pending(RevokePending {
                revoked: vec!["key_a".into(), "key_b".into()],
                pending_replicas: vec!["keygate-2".into()],
            }),
        ];
        // A new variant fails to compile here until it has a sample.
        for r in &all {
            match r {
                Revoked::Everywhere | Revoked::Pending(_) => {}
            }
        }
        all
    }
}

impl Sample for OpenApiYaml {
    fn samples() -> Vec<Self> {
        vec![OpenApiYaml(super::OPENAPI.into())]
    }
}

impl Sample for OpenApiJson {
    fn samples() -> Vec<Self> {
        vec![OpenApiJson("{}".into())]
    }
}

impl Sample for OpenMetrics {
    fn samples() -> Vec<Self> {
        vec![OpenMetrics("# EOF\n".into())]
    }
}

impl Sample for Health {
    fn samples() -> Vec<Self> {
        vec![Health { status: "ok" }]
    }
}

impl Sample for Readiness {
    fn samples() -> Vec<Self> {
        let all = vec![
            Readiness::Ready,
            Readiness::NotReady {
                tokens_without_value: vec!["github".into()],
                reasons: Vec::new(),
            },
            Readiness::NotReady {
                tokens_without_value: Vec::new(),
                reasons: vec!["behind the change sequence: applied 4 of 9".into()],
            },
        ];
        // A new variant fails to compile here until it has a sample.
        for r in &all {
            match r {
                Readiness::Ready | Readiness::NotReady { .. } => {}
            }
        }
        all
    }
}

impl Sample for ConfigError {
    fn samples() -> Vec<Self> {
        vec![
            ConfigError {
                line: Some(3),
                column: Some(5),
                message: "unknown field".into(),
                pointer: Some("/tokens/a/typo".into()),
            },
            ConfigError::plain("cannot read the file"),
        ]
    }
}

impl Sample for ReloadTrigger {
    fn samples() -> Vec<Self> {
        use ReloadTrigger::*;
        let all = vec![Start, Signal, Watch, Admin];
        for t in &all {
            match t {
                Start | Signal | Watch | Admin => {}
            }
        }
        all
    }
}

impl Sample for ReloadStatus {
    fn samples() -> Vec<Self> {
        let mut out: Vec<Self> = ReloadTrigger::samples()
            .into_iter()
            .map(|trigger| ReloadStatus {
                ok: true,
                at: Some("2025-01-01T00:00:00Z".into()),
                trigger,
                errors: Vec::new(),
            })
            .collect();
        out.push(ReloadStatus {
            ok: false,
            at: None,
            trigger: ReloadTrigger::Watch,
            errors: ConfigError::samples(),
        });
        out
    }
}

impl Sample for TlsStatus {
    fn samples() -> Vec<Self> {
        vec![
            TlsStatus {
                loaded_at: Some("2025-01-01T00:00:00Z".into()),
                error: None,
            },
            TlsStatus {
                loaded_at: None,
                error: Some("the new certificate does not match its key".into()),
            },
        ]
    }
}

impl Sample for Status {
    fn samples() -> Vec<Self> {
        let status = |last_reload, tls| Status {
            generation: 2,
            loaded_at: "2025-01-01T00:00:00Z".into(),
            config_path: "/etc/keygate/keygate.yaml".into(),
            last_reload,
            tls,
            proxy_listen: Some("127.0.0.1:8080".into()),
            replica: None,
        };
        let mut out: Vec<Self> = ReloadStatus::samples()
            .into_iter()
            .map(|r| status(r, None))
            .collect();
        let mut replicated = status(ReloadStatus::default(), None);
        replicated.proxy_listen = None;
        replicated.replica = Some(crate::state::ReplicaStatus {
            name: "keygate-1".into(),
            applied: 41,
            latest: 42,
            store_reachable: false,
            not_ready: vec!["store unreachable for longer than the lease (30s)".into()],
        });
        out.push(replicated);
        out.extend(
            TlsStatus::samples()
                .into_iter()
                .map(|t| status(ReloadStatus::default(), Some(t))),
        );
        out
    }
}

impl Sample for Reloaded {
    fn samples() -> Vec<Self> {
        vec![Reloaded {
            ok: true,
            generation: 3,
        }]
    }
}

impl Sample for ConnectorToken {
    fn samples() -> Vec<Self> {
        vec![
            ConnectorToken {
                name: "github".into(),
                header: "authorization".into(),
                prefix: Some("Bearer".into()),
            },
            ConnectorToken {
                name: "stripe".into(),
                header: "x-api-key".into(),
                prefix: None,
            },
        ]
    }
}

impl Sample for ConnectorView {
    fn samples() -> Vec<Self> {
        let connector = |auth, description: Option<&str>, listen: Option<&str>| ConnectorView {
            name: "github".into(),
            description: description.map(str::to_string),
            upstream: "https://api.github.com/".into(),
            listen: listen.map(str::to_string),
            auth,
            tokens: ConnectorToken::samples(),
            static_headers: vec!["x-github-api-version".into()],
            timeouts: Timeouts {
                connect: "5s".into(),
                response: "1m".into(),
            },
            max_request_body: 10 << 20,
            owner: Ownership::samples().remove(usize::from(listen.is_some())),
        };
        vec![
            connector("api_key", Some("GitHub REST"), None),
            connector("none", None, Some("127.0.0.1:9001")),
        ]
    }
}

impl Sample for ConnectorList {
    fn samples() -> Vec<Self> {
        cursors()
            .into_iter()
            .map(|next_cursor| ConnectorList {
                connectors: ConnectorView::samples(),
                next_cursor,
            })
            .collect()
    }
}

impl Sample for TokenSource {
    fn samples() -> Vec<Self> {
        use TokenSource::*;
        let all = vec![
            HttpRequest {
                url: "https://auth.example/token".into(),
            },
            Caller {
                from_header: "x-user-token".into(),
            },
            Env {
                env: "GITHUB_TOKEN".into(),
            },
            File {
                file: "/run/secrets/github".into(),
            },
            Literal,
            Admin,
        ];
        for s in &all {
            match s {
                HttpRequest { .. } | Caller { .. } | Env { .. } | File { .. } | Literal | Admin => {
                }
            }
        }
        all
    }
}

impl Sample for TokenState {
    fn samples() -> Vec<Self> {
        use TokenState::*;
        let all = vec![Ready, Unavailable, Refreshing, PerRequest];
        for s in &all {
            match s {
                Ready | Unavailable | Refreshing | PerRequest => {}
            }
        }
        all
    }
}

impl Sample for TokenView {
    fn samples() -> Vec<Self> {
        let kinds = ["http_request", "user", "text", "text", "text", "text"];
        let sources = TokenSource::samples();
        let states = TokenState::samples();
        sources
            .into_iter()
            .zip(kinds)
            .enumerate()
            .map(|(i, (source, kind))| {
                let set = i % 2 == 0;
                let some = |s: &str| set.then(|| s.to_string());
                let owner = Ownership::samples().remove(i % 2);
                TokenView {
                    name: format!("token{i}"),
                    description: some("a token"),
                    kind,
                    header: "authorization".into(),
                    prefix: some("Bearer"),
                    source: owner.source,
                    file: owner.file,
                    definition_version: owner.version,
                    created_at: owner.created_at,
                    definition_updated_at: owner.updated_at,
                    value_source: source,
                    state: states[i % states.len()],
                    version: set.then_some(4),
                    fingerprint: some("0a1b2c3d"),
                    updated_at: some("2025-01-01T00:00:00Z"),
                    expires_at: some("2025-01-01T01:00:00Z"),
                    last_error: some("the token endpoint answered 500"),
                }
            })
            .collect()
    }
}

impl Sample for TokenList {
    fn samples() -> Vec<Self> {
        cursors()
            .into_iter()
            .map(|next_cursor| TokenList {
                tokens: TokenView::samples(),
                next_cursor,
            })
            .collect()
    }
}

impl Sample for ClientView {
    fn samples() -> Vec<Self> {
        vec![
            ClientView {
                name: "app".into(),
                description: Some("the billing service".into()),
                roles: vec![
                    RoleRef {
                        name: "reader".into(),
                        admin: false,
                    },
                    RoleRef {
                        name: "ops".into(),
                        admin: true,
                    },
                ],
                owner: Ownership::samples().remove(0),
            },
            ClientView {
                name: "keygate-admin".into(),
                description: None,
                roles: Vec::new(),
                owner: Ownership::samples().remove(1),
            },
        ]
    }
}

impl Sample for ClientList {
    fn samples() -> Vec<Self> {
        cursors()
            .into_iter()
            .map(|next_cursor| ClientList {
                clients: ClientView::samples(),
                next_cursor,
            })
            .collect()
    }
}

impl Sample for KeySource {
    fn samples() -> Vec<Self> {
        let all = vec![KeySource::Api, KeySource::Config];
        for s in &all {
            match s {
                KeySource::Api | KeySource::Config => {}
            }
        }
        all
    }
}

impl Sample for KeyMetadata {
    fn samples() -> Vec<Self> {
        let states = ["active", "expired", "revoked"];
        KeySource::samples()
            .into_iter()
            .cycle()
            .zip(states)
            .enumerate()
            .map(|(i, (source, state))| {
                let set = i % 2 == 0;
                let some = |s: &str| set.then(|| s.to_string());
                KeyMetadata {
                    id: format!("key_{i}"),
                    name: "deploy".into(),
                    client: "app".into(),
                    prefix: "kg_live_AbCd".into(),
                    roles: vec!["reader".into()],
                    created_at: "2025-01-01T00:00:00Z".into(),
                    expires_at: some("2025-04-01T00:00:00Z"),
                    last_used_at: some("2025-01-02T00:00:00Z"),
                    revoked_at: some("2025-01-03T00:00:00Z"),
                    uses: 7,
                    source,
                    state,
                }
            })
            .collect()
    }
}

impl Sample for KeyList {
    fn samples() -> Vec<Self> {
        cursors()
            .into_iter()
            .map(|next_cursor| KeyList {
                keys: KeyMetadata::samples(),
                next_cursor,
            })
            .collect()
    }
}

impl Sample for KeyCreated {
    fn samples() -> Vec<Self> {
        KeyMetadata::samples()
            .into_iter()
            .map(|metadata| KeyCreated {
                metadata,
                key: Secret::new("kg_live_sample"),
            })
            .collect()
    }
}

impl Sample for KeyRolled {
    fn samples() -> Vec<Self> {
        KeyMetadata::samples()
            .into_iter()
            .map(|metadata| KeyRolled {
                metadata,
                key: Secret::new("kg_live_sample"),
                rolled_from: "key_old".into(),
            })
            .collect()
    }
}

impl Sample for AuditView {
    fn samples() -> Vec<Self> {
        let by_key = AuditView {
            id: 7,
            at: "2025-01-01T00:00:00Z".into(),
            actor: ActorView {
                client: "ops".into(),
                key_id: Some("key_admin".into()),
            },
            action: "token.value.set".into(),
            object: ObjectView {
                kind: "token".into(),
                name: "stripe".into(),
            },
            version_before: Some(1),
            version_after: Some(2),
            fingerprint_before: Some("0a1b2c3d".into()),
            fingerprint_after: Some("4e5f6a7b".into()),
            detail: Some("force=true".into()),
        };
        let by_system = AuditView {
            id: 8,
            at: "2025-01-02T00:00:00Z".into(),
            actor: ActorView {
                client: crate::audit::SYSTEM_ACTOR.into(),
                key_id: None,
            },
            action: "key.revoke".into(),
            object: ObjectView {
                kind: "key".into(),
                name: "key_abc".into(),
            },
            version_before: None,
            version_after: None,
            fingerprint_before: None,
            fingerprint_after: None,
            detail: None,
        };
        vec![by_key, by_system]
    }
}

impl Sample for AuditList {
    fn samples() -> Vec<Self> {
        cursors()
            .into_iter()
            .map(|next_cursor| AuditList {
                records: AuditView::samples(),
                next_cursor,
            })
            .collect()
    }
}
