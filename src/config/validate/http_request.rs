//! An `http_request` token: how to call the token endpoint (method, URL,
//! headers, a form or JSON body whose values may come from the environment,
//! files, literals or other tokens) and where the token and its lifetime
//! are in the answer. Only the fields of that type; the checks every token
//! shares (name, type, header, prefix) are in `tokens.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::Method;
use http::header::HeaderName;

use super::Errors;
use super::fields::{
    absolute_url, duration, is_http_token, positive_duration, resolve, value_source,
};
use crate::config::locate::Seg;
use crate::config::model::{Expiry, FetchBody, HttpRequestSpec, JsonTemplate, Param};
use crate::config::raw::{RawParam, RawParamSource, RawToken, RawValueSource};

const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// RFC 6901: empty, or `/`-separated reference tokens with `~0`/`~1` only.
fn valid_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let b = p.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

fn param(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &RawParam,
    base: &Path,
    tokens: &BTreeMap<String, RawToken>,
) -> Option<Param> {
    match raw {
        RawParam::Plain(s) => Some(Param::Plain(s.clone())),
        RawParam::Number(n) => Some(Param::Plain(n.to_string())),
        RawParam::Bool(b) => Some(Param::Plain(b.to_string())),
        RawParam::Source(src) => {
            if let Some(t) = &src.token {
                if src.env.is_some() || src.file.is_some() || src.literal.is_some() {
                    e.at(
                        path,
                        "a value needs exactly one of `env`, `file`, `literal` or `token`",
                    );
                    return None;
                }
                if !tokens.contains_key(t) {
                    e.at(path, format!("names unknown token `{t}`"));
                    return None;
                }
                return Some(Param::Token(t.clone()));
            }
            let vs = RawValueSource {
                env: src.env.clone(),
                file: src.file.clone(),
                literal: src.literal.clone(),
            };
            value_source(e, path, &vs, base).map(Param::Source)
        }
    }
}

fn json_template(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    v: &serde_yaml::Value,
    base: &Path,
    tokens: &BTreeMap<String, RawToken>,
) -> Option<JsonTemplate> {
    use serde_yaml::Value as Y;
    match v {
        Y::Mapping(m) => {
            let is_source = m.len() == 1
                && m.keys()
                    .next()
                    .and_then(|k| k.as_str())
                    .is_some_and(|k| matches!(k, "env" | "file" | "literal" | "token"))
                && m.values().next().is_some_and(|v| v.is_string());
            if is_source {
                let raw: RawParamSource = serde_yaml::from_value(v.clone()).ok()?;
                return param(e, path, &RawParam::Source(raw), base, tokens)
                    .map(JsonTemplate::Param);
            }
            let mut fields = Vec::new();
            for (k, val) in m {
                let Some(key) = k.as_str() else {
                    e.at(path, "JSON object keys must be strings");
                    return None;
                };
                fields.push((key.to_string(), json_template(e, path, val, base, tokens)?));
            }
            Some(JsonTemplate::Object(fields))
        }
        Y::Sequence(items) => items
            .iter()
            .map(|i| json_template(e, path, i, base, tokens))
            .collect::<Option<Vec<_>>>()
            .map(JsonTemplate::Array),
        other => match serde_json::to_value(other) {
            Ok(j) => Some(JsonTemplate::Value(j)),
            Err(_) => {
                e.at(path, "this value cannot be written as JSON");
                None
            }
        },
    }
}

pub(super) fn http_request_spec(
    e: &mut Errors<'_>,
    name: &str,
    t: &RawToken,
    base: &Path,
    tokens: &BTreeMap<String, RawToken>,
) -> Option<HttpRequestSpec> {
    use Seg::Key;
    let field = |k: &'static str| [Key("tokens"), Key(name), Key(k)];
    let Some(req) = &t.request else {
        e.at(
            &[Key("tokens"), Key(name)],
            format!("token `{name}`: an http_request token needs `request` (with a `url`)"),
        );
        return None;
    };
    let rp = |k: &'static str| [Key("tokens"), Key(name), Key("request"), Key(k)];
    let url = match &req.url {
        None => {
            e.at(
                &field("request"),
                format!("token `{name}`: `request.url` is missing"),
            );
            None
        }
        Some(u) => absolute_url(u).map_err(|m| e.at(&rp("url"), m)).ok(),
    };
    let method = match req.method.as_deref().unwrap_or("POST").to_ascii_uppercase() {
        m if is_http_token(&m) => Method::from_bytes(m.as_bytes()).ok(),
        m => {
            e.at(&rp("method"), format!("`{m}` is not an HTTP method"));
            None
        }
    };
    let mut headers = Vec::new();
    for (h, v) in &req.headers {
        let hp = [
            Key("tokens"),
            Key(name),
            Key("request"),
            Key("headers"),
            Key(h.as_str()),
        ];
        let Ok(hn) = HeaderName::from_bytes(h.as_bytes()) else {
            e.at(&hp, format!("`{h}` is not a valid HTTP header name"));
            continue;
        };
        if let Some(p) = param(e, &hp, v, base, tokens) {
            headers.push((hn, p));
        }
    }
    let body = match (&req.form, &req.json) {
        (Some(_), Some(_)) => {
            e.at(
                &rp("json"),
                format!("token `{name}`: use `form` or `json`, not both"),
            );
            FetchBody::None
        }
        (Some(form), None) => FetchBody::Form(
            form.iter()
                .filter_map(|(k, v)| {
                    let fp = [
                        Key("tokens"),
                        Key(name),
                        Key("request"),
                        Key("form"),
                        Key(k.as_str()),
                    ];
                    param(e, &fp, v, base, tokens).map(|p| (k.clone(), p))
                })
                .collect(),
        ),
        (None, Some(j)) => {
            json_template(e, &rp("json"), j, base, tokens).map_or(FetchBody::None, FetchBody::Json)
        }
        (None, None) => FetchBody::None,
    };
    let Some(resp) = &t.response else {
        e.at(
            &[Key("tokens"), Key(name)],
            format!(
                "token `{name}`: an http_request token needs `response: {{ token: /json/pointer }}`"
            ),
        );
        return None;
    };
    let rsp = |k: &'static str| [Key("tokens"), Key(name), Key("response"), Key(k)];
    let mut ok = true;
    for (p, k) in [
        (Some(&resp.token), "token"),
        (resp.expires_in.as_ref(), "expires_in"),
        (resp.expires_at.as_ref(), "expires_at"),
    ] {
        if let Some(p) = p
            && !valid_pointer(p)
        {
            e.at(
                &rsp(k),
                format!("`{p}` is not a JSON pointer (write it like /access_token)"),
            );
            ok = false;
        }
    }
    let set = [
        resp.expires_in.is_some(),
        resp.expires_at.is_some(),
        resp.ttl.is_some(),
    ];
    if set.iter().filter(|b| **b).count() > 1 {
        e.at(
            &field("response"),
            "use one of `expires_in`, `expires_at` or `ttl`",
        );
        ok = false;
    }
    let expiry = match (&resp.expires_in, &resp.expires_at, &resp.ttl) {
        (Some(p), _, _) => Expiry::In(p.clone()),
        (_, Some(p), _) => Expiry::At(p.clone()),
        (_, _, Some(t)) => Expiry::Ttl(duration(
            e,
            &rsp("ttl"),
            &Some(t.clone()),
            Duration::from_secs(3600),
        )),
        _ => Expiry::Never,
    };
    let refresh_before = duration(
        e,
        &field("refresh_before"),
        &t.refresh_before,
        DEFAULT_REFRESH_BEFORE,
    );
    let min_refresh_interval = positive_duration(
        e,
        &field("min_refresh_interval"),
        &t.min_refresh_interval,
        DEFAULT_MIN_REFRESH_INTERVAL,
    );
    let timeout = duration(e, &rp("timeout"), &req.timeout, DEFAULT_FETCH_TIMEOUT);
    if !ok {
        return None;
    }
    Some(HttpRequestSpec {
        method: method?,
        url: url?,
        headers,
        body,
        token_pointer: resp.token.clone(),
        expiry,
        refresh_before,
        min_refresh_interval,
        ca_file: req.ca_file.as_ref().map(|f| resolve(base, f)),
        timeout,
    })
}
