//! The `connectors` section: each connector's upstream, the headers it
//! writes (its tokens' and its static ones, each name by one writer only,
//! which [`HeaderPlan::new`] enforces), its own listener and auth mode,
//! timeouts and body limit. Tokens are checked before this runs; a
//! connector naming an invalid token is left out without a second error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use super::Errors;
use super::fields::{duration, header_name, parse_listen, parse_upstream, resolve, valid_name};
use crate::config::locate::Seg;
use crate::config::model::{AuthMode, Connector, HeaderPlan, TokenSpec};
use crate::config::raw::{RawConfig, RawConnector};
use crate::config::units::parse_size;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_BODY: u64 = 32 << 20;

/// Every valid connector by name; an invalid one is reported and left out.
pub(super) fn connectors(
    e: &mut Errors<'_>,
    raw: &RawConfig,
    tokens: &BTreeMap<String, Arc<TokenSpec>>,
    base: &Path,
) -> BTreeMap<String, Arc<Connector>> {
    let mut connectors = BTreeMap::new();
    for (name, c) in &raw.connectors {
        if let Some(conn) = connector(e, name, c, raw, tokens, base) {
            connectors.insert(name.clone(), Arc::new(conn));
        }
    }
    connectors
}

fn connector(
    e: &mut Errors<'_>,
    name: &str,
    c: &RawConnector,
    raw: &RawConfig,
    tokens: &BTreeMap<String, Arc<TokenSpec>>,
    base: &Path,
) -> Option<Connector> {
    use Seg::Key;
    let field = |k: &'static str| [Key("connectors"), Key(name), Key(k)];
    if !valid_name(name) {
        e.at(
            &[Key("connectors"), Key(name)],
            format!("connector name `{name}` may only use letters, digits, `.`, `_` and `-`"),
        );
    }
    let upstream = parse_upstream(&c.upstream)
        .map_err(|m| e.at(&field("upstream"), m))
        .ok();

    let mut token_headers = Vec::new();
    let mut writers: HashMap<HeaderName, String> = HashMap::new();
    let mut ok = true;
    for (i, t) in c.tokens.iter().enumerate() {
        let tp = [Key("connectors"), Key(name), Key("tokens"), Seg::Index(i)];
        if !raw.tokens.contains_key(t) {
            e.at(&tp, format!("connector `{name}` names unknown token `{t}`"));
            ok = false;
            continue;
        }
        let Some(spec) = tokens.get(t) else {
            ok = false; // the token itself is invalid; its error is reported there
            continue;
        };
        if let Some(prev) = writers.insert(spec.header.clone(), format!("token `{t}`")) {
            e.at(
                &tp,
                format!(
                    "connector `{name}`: token `{t}` and {prev} both write header `{}`",
                    spec.header
                ),
            );
            ok = false;
            continue;
        }
        token_headers.push((spec.header.clone(), t.clone()));
    }
    let mut statics = Vec::new();
    for (h, v) in &c.headers {
        let hp = [
            Key("connectors"),
            Key(name),
            Key("headers"),
            Key(h.as_str()),
        ];
        let Some(hn) = header_name(e, &hp, h) else {
            ok = false;
            continue;
        };
        let Ok(hv) = HeaderValue::from_str(v) else {
            e.at(&hp, format!("connector `{name}`: the value of header `{h}` contains characters not allowed in a header"));
            ok = false;
            continue;
        };
        if let Some(prev) = writers.insert(hn.clone(), format!("static header `{h}`")) {
            e.at(
                &hp,
                format!(
                    "connector `{name}`: static header `{h}` and {prev} both write header `{hn}`"
                ),
            );
            ok = false;
            continue;
        }
        statics.push((hn, hv));
    }
    let listen = c
        .listen
        .as_ref()
        .and_then(|l| parse_listen(l).map_err(|m| e.at(&field("listen"), m)).ok());
    let auth = match c.auth.as_deref() {
        None | Some("api_key") => AuthMode::ApiKey,
        // Only the connector's own port counts: the shared listener never
        // serves `auth: none`, so `server.listen` (which a reload cannot
        // move anyway) has no say.
        Some("none") => {
            match listen {
                Some(addr) if !addr.ip().is_loopback() => e.at(
                    &field("auth"),
                    format!("connector `{name}`: `auth: none` is only allowed on a loopback listener, and {addr} is not one"),
                ),
                Some(_) => {}
                None if c.listen.is_some() => {} // the bad `listen` is reported there
                None => e.at(
                    &field("auth"),
                    format!("connector `{name}`: `auth: none` needs a dedicated loopback `listen` (like 127.0.0.1:9001); it is never served on the shared listener"),
                ),
            }
            AuthMode::None
        }
        Some(other) => {
            e.at(
                &field("auth"),
                format!("connector `{name}`: unknown auth `{other}` (use api_key or none)"),
            );
            AuthMode::ApiKey
        }
    };
    let connect_timeout = duration(
        e,
        &[
            Key("connectors"),
            Key(name),
            Key("timeouts"),
            Key("connect"),
        ],
        &c.timeouts.connect,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let response_timeout = duration(
        e,
        &[
            Key("connectors"),
            Key(name),
            Key("timeouts"),
            Key("response"),
        ],
        &c.timeouts.response,
        DEFAULT_RESPONSE_TIMEOUT,
    );
    let max_request_body = match &c.max_request_body {
        None => DEFAULT_MAX_BODY,
        Some(s) => parse_size(&s.as_text()).unwrap_or_else(|m| {
            e.at(&field("max_request_body"), m);
            DEFAULT_MAX_BODY
        }),
    };
    let headers = HeaderPlan::new(token_headers, statics).ok()?; // duplicates already reported
    if !ok {
        return None;
    }
    Some(Connector {
        name: name.to_string(),
        description: c.description.clone(),
        upstream: upstream?,
        headers,
        listen,
        auth,
        ca_file: c.ca_file.as_ref().map(|f| resolve(base, f)),
        connect_timeout,
        response_timeout,
        max_request_body,
        forward_client_ip: c.forward_client_ip.unwrap_or(false),
        allow_encoded_slash: c.allow_encoded_slash.unwrap_or(false),
    })
}
