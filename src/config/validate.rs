//! Raw YAML mirror → typed [`Config`] (the types are in `model.rs`). Every
//! rule of SPEC §2 lives here, and every violation is collected (with its
//! YAML position) before failing, so `keygate check` shows the operator all
//! problems in one go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};

use super::locate::{Seg, locate};
use super::model::{
    Admin, AuthMode, BUILTIN_ADMIN, Client, Config, Connector, DEFAULT_ADMIN_LISTEN,
    DEFAULT_KEY_PREFIX, DEFAULT_LISTEN, DeclaredKey, Expiry, FetchBody, Grant, HeaderPlan,
    HttpRequestSpec, JsonTemplate, JwtKey, JwtSpec, Keys, Limits, MAX_CONNECTIONS,
    MAX_H2_KEEP_ALIVE, MAX_HEADER_READ_TIMEOUT, MAX_IDLE_TIMEOUT, MIN_HEADER_SIZE, Param, Role,
    Server, Store, TlsFiles, TokenKind, TokenSpec, Upstream, UserSpec, ValueSource,
};
use super::pattern::PathPattern;
use super::raw::{
    RawConfig, RawConnector, RawParam, RawParamSource, RawServer, RawToken, RawValueSource, Scalar,
};
use super::units::{
    MAX_KEY_DURATION, MAX_KEY_DURATION_TEXT, format_duration, parse_duration, parse_size,
};
use super::{ConfigError, ConfigErrors};
use crate::secret::{Secret, check_header_safe};

const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Key usage writes (SPEC §4: at most a few seconds behind).
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(2);
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_BODY: u64 = 32 << 20;

/// Headers keygate must own itself: injecting into them would break framing
/// or routing (RFC 9110 §7.6.1 hop-by-hop fields, plus `Host` and length).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Request headers keygate itself reads or removes, with why; a `user`
/// token cannot be taken from one (it would be stripped, misread as the
/// caller's API key, or break the connection). Compared lowercase.
const CONSUMED_REQUEST_HEADERS: &[(&str, &str)] = &[
    ("authorization", "it carries the caller's keygate API key"),
    ("x-api-key", "it carries the caller's keygate API key"),
    (
        "proxy-authorization",
        "keygate removes it (RFC 9110 §11.7.2: it is meant for the proxy)",
    ),
    ("host", "keygate sets the upstream's own Host"),
    ("x-request-id", "keygate reads and sets the request id"),
    (
        "x-forwarded-for",
        "keygate writes it when forward_client_ip is on",
    ),
    ("content-length", "it frames the request body"),
    ("expect", "the HTTP server answers it (RFC 9110 §10.1.1)"),
    ("connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("keep-alive", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("proxy-connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("te", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("trailer", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("transfer-encoding", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("upgrade", "it is hop-by-hop (RFC 9110 §7.6.1)"),
];

/// Why keygate cannot take a `user` token from `name`, if it cannot.
fn consumed_request_header(name: &HeaderName) -> Option<&'static str> {
    CONSUMED_REQUEST_HEADERS
        .iter()
        .find(|(h, _)| *h == name.as_str())
        .map(|(_, why)| *why)
}

/// Collects errors with their positions in `text`.
struct Errors<'t> {
    text: &'t str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let pos = locate(self.text, path);
        self.list.push(ConfigError {
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: message.into(),
        });
    }
}

/// A name used in URLs and header names: letters, digits, `.`, `_`, `-`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The rule for `keys.prefix` and `keygen --prefix`: 1 to 16 letters,
/// digits, `_` or `-` (scanners match on it; it must never break the
/// base62 body).
pub fn valid_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// RFC 9110 §5.6.2 `token`.
pub fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| format!("`{text}` is not a valid listen address"));
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not a listen address like 127.0.0.1:8080 or [::1]:8080"))
}

fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("upstream `{text}` is not a URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("upstream `{text}` must be an absolute http:// or https:// URL"))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!("upstream `{text}` must use http or https"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("upstream `{text}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("upstream `{text}` must not carry user information"));
    }
    if authority.host().is_empty() {
        return Err(format!("upstream `{text}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("upstream `{text}` must not carry a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Upstream {
        scheme,
        authority,
        base_path,
    })
}

fn parse_timestamp(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .map_err(|_| format!("`{text}` is not a UTC timestamp like 2027-06-30T00:00:00Z"))
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn value_source(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &RawValueSource,
    base: &Path,
) -> Option<ValueSource> {
    let set = [raw.env.is_some(), raw.file.is_some(), raw.literal.is_some()];
    if set.iter().filter(|b| **b).count() != 1 {
        e.at(
            path,
            "a value needs exactly one of `env`, `file` or `literal`",
        );
        return None;
    }
    if let Some(name) = &raw.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            e.at(
                path,
                format!("`{name}` is not an environment variable name"),
            );
            return None;
        }
        return Some(ValueSource::Env(name.clone()));
    }
    if let Some(file) = &raw.file {
        return Some(ValueSource::File(resolve(base, file)));
    }
    let literal = raw.literal.as_deref().unwrap_or_default();
    let mut lit_path = path.to_vec();
    lit_path.push(Seg::Key("literal"));
    if let Err(why) = check_header_safe(literal) {
        // Never echo the literal: it is a credential.
        e.at(&lit_path, format!("the literal value is refused: {why}"));
        return None;
    }
    Some(ValueSource::Literal(Secret::new(literal)))
}

fn duration(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &Option<Scalar>,
    default: Duration,
) -> Duration {
    match raw {
        None => default,
        Some(s) => parse_duration(&s.as_text()).unwrap_or_else(|m| {
            e.at(path, m);
            default
        }),
    }
}

/// `store.flush_interval`: from 100ms (each tick is a store write and a
/// read) to 60s (SPEC §4: usage is at most a few seconds behind; a minute
/// is the most an operator could mean by that).
fn flush_interval(e: &mut Errors<'_>, raw: &Option<Scalar>) -> Duration {
    let path = [Seg::Key("store"), Seg::Key("flush_interval")];
    let d = duration(e, &path, raw, DEFAULT_FLUSH_INTERVAL);
    if !(MIN_FLUSH_INTERVAL..=MAX_FLUSH_INTERVAL).contains(&d) {
        e.at(
            &path,
            "store.flush_interval must be between 100ms and 60s (key usage is written at most this far behind)",
        );
        return DEFAULT_FLUSH_INTERVAL;
    }
    d
}

/// A duration that must not be zero: a zero rate-limit interval would
/// silently switch the limit off.
fn positive_duration(
    e: &mut Errors<'_>,
    path: &[Seg<'_>],
    raw: &Option<Scalar>,
    default: Duration,
) -> Duration {
    let d = duration(e, path, raw, default);
    if d.is_zero() {
        e.at(
            path,
            "must be longer than 0s (it limits traffic to an endpoint)",
        );
        return default;
    }
    d
}

fn header_name(e: &mut Errors<'_>, path: &[Seg<'_>], text: &str) -> Option<HeaderName> {
    if !is_http_token(text) {
        e.at(path, format!("`{text}` is not a valid HTTP header name"));
        return None;
    }
    let name = HeaderName::from_bytes(text.as_bytes()).ok()?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        e.at(
            path,
            format!("keygate cannot write header `{text}`: it controls the connection itself"),
        );
        return None;
    }
    Some(name)
}

/// The connection limits of `server:`; every bad value is reported and
/// replaced by its default so validation can go on.
fn limits(e: &mut Errors<'_>, raw: &RawServer) -> Limits {
    use Seg::Key;
    let d = Limits::default();
    // Bounded above too: hyper adds these to `Instant::now()`, which
    // panics on overflow, so `10000000000000000000s` would kill an accept
    // loop at the first connection (see the `MAX_*` constants for why
    // each bound is far past any real need).
    let mut bounded =
        |field: &'static str, v: &Option<Scalar>, default: Duration, max: Duration| {
            let path = [Key("server"), Key(field)];
            let got = duration(e, &path, v, default);
            if got.is_zero() {
                e.at(&path, format!("{field} must be more than 0"));
                return default;
            }
            if got > max {
                e.at(
                    &path,
                    format!("{field} must be at most {}", format_duration(max)),
                );
                return default;
            }
            got
        };
    let header_read_timeout = bounded(
        "header_read_timeout",
        &raw.header_read_timeout,
        d.header_read_timeout,
        MAX_HEADER_READ_TIMEOUT,
    );
    let idle_timeout = bounded(
        "idle_timeout",
        &raw.idle_timeout,
        d.idle_timeout,
        MAX_IDLE_TIMEOUT,
    );
    let h2_keep_alive_interval = bounded(
        "h2_keep_alive_interval",
        &raw.h2_keep_alive_interval,
        d.h2_keep_alive_interval,
        MAX_H2_KEEP_ALIVE,
    );
    let h2_keep_alive_timeout = bounded(
        "h2_keep_alive_timeout",
        &raw.h2_keep_alive_timeout,
        d.h2_keep_alive_timeout,
        MAX_H2_KEEP_ALIVE,
    );
    let mut count = |field: &'static str, v: Option<u64>, max: u64, default: u64| match v {
        None => default,
        Some(n) if (1..=max).contains(&n) => n,
        Some(_) => {
            e.at(
                &[Key("server"), Key(field)],
                format!("{field} must be between 1 and {max}"),
            );
            default
        }
    };
    let max_connections = count(
        "max_connections",
        raw.max_connections,
        MAX_CONNECTIONS,
        d.max_connections as u64,
    );
    let max_concurrent_streams = count(
        "max_concurrent_streams",
        raw.max_concurrent_streams,
        u64::from(u32::MAX),
        u64::from(d.max_concurrent_streams),
    );
    let max_header_size = match &raw.max_header_size {
        None => d.max_header_size,
        Some(s) => {
            let path = [Key("server"), Key("max_header_size")];
            match parse_size(&s.as_text()) {
                Ok(n) if n >= MIN_HEADER_SIZE => u32::try_from(n).unwrap_or_else(|_| {
                    e.at(&path, "max_header_size must be under 4GiB");
                    d.max_header_size
                }),
                Ok(_) => {
                    e.at(&path, "max_header_size must be at least 8KiB");
                    d.max_header_size
                }
                Err(m) => {
                    e.at(&path, m);
                    d.max_header_size
                }
            }
        }
    };
    Limits {
        max_connections: usize::try_from(max_connections).unwrap_or(d.max_connections),
        header_read_timeout,
        idle_timeout,
        h2_keep_alive_interval,
        h2_keep_alive_timeout,
        max_header_size,
        max_concurrent_streams: u32::try_from(max_concurrent_streams)
            .unwrap_or(d.max_concurrent_streams),
    }
}

/// Turns the raw mirror into a validated [`Config`], or every error found.
pub fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut e = Errors {
        text,
        list: Vec::new(),
    };
    use Seg::Key;

    // server
    let listen_of = |e: &mut Errors<'_>, p: &[Seg<'_>], v: &Option<String>, default: &str| {
        let t = v.as_deref().unwrap_or(default);
        parse_listen(t).unwrap_or_else(|m| {
            e.at(p, m);
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    };
    let server_listen = listen_of(
        &mut e,
        &[Key("server"), Key("listen")],
        &raw.server.listen,
        DEFAULT_LISTEN,
    );
    let tls = raw.server.tls.as_ref().map(|t| TlsFiles {
        cert: resolve(&base, &t.cert),
        key: resolve(&base, &t.key),
    });
    let shutdown_grace = duration(
        &mut e,
        &[Key("server"), Key("shutdown_grace")],
        &raw.server.shutdown_grace,
        DEFAULT_GRACE,
    );
    if raw.server.workers == Some(0) {
        e.at(
            &[Key("server"), Key("workers")],
            "workers must be at least 1",
        );
    }
    let server = Server {
        listen: server_listen,
        tls,
        shutdown_grace,
        workers: raw.server.workers.filter(|w| *w > 0),
        limits: limits(&mut e, &raw.server),
    };
    let admin = Admin {
        listen: listen_of(
            &mut e,
            &[Key("admin"), Key("listen")],
            &raw.admin.listen,
            DEFAULT_ADMIN_LISTEN,
        ),
    };

    // store
    let master_key = match &raw.store.master_key {
        Some(src) => value_source(&mut e, &[Key("store"), Key("master_key")], src, &base)
            .unwrap_or(ValueSource::File(base.join("data/master.key"))),
        None => ValueSource::File(base.join("data/master.key")),
    };
    let store = Store {
        sqlite: resolve(
            &base,
            raw.store.sqlite.as_deref().unwrap_or("data/keygate.db"),
        ),
        master_key,
        retention: raw.store.retention.as_ref().map(|_| {
            duration(
                &mut e,
                &[Key("store"), Key("retention")],
                &raw.store.retention,
                Duration::ZERO,
            )
        }),
        flush_interval: flush_interval(&mut e, &raw.store.flush_interval),
    };

    // keys
    let prefix = raw
        .keys
        .prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
    if !valid_key_prefix(&prefix) {
        e.at(
            &[Key("keys"), Key("prefix")],
            "keys.prefix must be 1 to 16 letters, digits, `_` or `-`",
        );
    }
    // Bounded like an API key's `expires_in`: max_ttl is the lifetime of
    // the bootstrap, reset and default API keys, and past the bound their
    // millisecond expiry no longer fits the store (or `now + max_ttl`
    // overflows into a key that never expires).
    let max_ttl = raw.keys.max_ttl.as_ref().map(|_| {
        let path = [Key("keys"), Key("max_ttl")];
        let d = duration(&mut e, &path, &raw.keys.max_ttl, MAX_KEY_DURATION);
        if d > MAX_KEY_DURATION {
            e.at(
                &path,
                format!(
                    "keys.max_ttl is too large; the longest allowed is {MAX_KEY_DURATION_TEXT}"
                ),
            );
            return MAX_KEY_DURATION;
        }
        d
    });
    let keys = Keys { prefix, max_ttl };

    // tokens
    let mut tokens = BTreeMap::new();
    for (name, t) in &raw.tokens {
        if let Some(spec) = token(&mut e, name, t, &base, &raw.tokens) {
            tokens.insert(name.clone(), Arc::new(spec));
        }
    }

    // connectors
    let mut connectors = BTreeMap::new();
    for (name, c) in &raw.connectors {
        if let Some(conn) = connector(&mut e, name, c, &raw, &tokens, &base) {
            connectors.insert(name.clone(), Arc::new(conn));
        }
    }

    // duplicate listen addresses (port 0 means "any free port": never a clash)
    let mut addrs: Vec<(SocketAddr, Vec<Seg<'_>>)> = vec![
        (server.listen, vec![Key("server"), Key("listen")]),
        (admin.listen, vec![Key("admin"), Key("listen")]),
    ];
    for (name, c) in &connectors {
        if let Some(l) = c.listen {
            addrs.push((
                l,
                vec![Key("connectors"), Key(name.as_str()), Key("listen")],
            ));
        }
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, (addr, p)) in addrs.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some(first) = seen.insert(*addr, i) {
            let other = &addrs[first].1;
            let other_name: Vec<&str> = other
                .iter()
                .filter_map(|s| match s {
                    Seg::Key(k) => Some(*k),
                    Seg::Index(_) => None,
                })
                .collect();
            e.at(
                p,
                format!(
                    "listen address {addr} is already used by {}",
                    other_name.join(".")
                ),
            );
        }
    }

    // roles
    let mut roles = BTreeMap::new();
    for (name, r) in &raw.roles {
        let mut grants = Vec::new();
        for (i, g) in r.allow.iter().enumerate() {
            let gp = [
                Key("roles"),
                Key(name.as_str()),
                Key("allow"),
                Seg::Index(i),
            ];
            let mut p = gp.to_vec();
            p.push(Key("connector"));
            if !raw.connectors.contains_key(&g.connector) {
                e.at(
                    &p,
                    format!("role `{name}` names unknown connector `{}`", g.connector),
                );
            }
            let methods = g.methods.as_ref().map(|ms| {
                let mut p = gp.to_vec();
                p.push(Key("methods"));
                ms.iter()
                    .filter_map(|m| {
                        let up = m.to_ascii_uppercase();
                        if !is_http_token(&up) {
                            e.at(&p, format!("`{m}` is not an HTTP method"));
                            return None;
                        }
                        Method::from_bytes(up.as_bytes()).ok()
                    })
                    .collect()
            });
            let paths = g.paths.as_ref().map(|ps| {
                let mut p = gp.to_vec();
                p.push(Key("paths"));
                ps.iter()
                    .filter_map(|s| PathPattern::parse(s).map_err(|m| e.at(&p, m)).ok())
                    .collect()
            });
            grants.push(Grant {
                connector: g.connector.clone(),
                methods,
                paths,
            });
        }
        roles.insert(
            name.clone(),
            Arc::new(Role {
                name: name.clone(),
                description: r.description.clone(),
                admin: r.admin,
                grants,
            }),
        );
    }

    // clients. With `keys.max_ttl` set, a key declared here must say when
    // it ends, no further than max_ttl from now: the bound is on lifetime,
    // and a key without `expires` (or with one years out) would outlive it.
    // Checked against the clock at every check and reload, so a key that
    // passed stays valid as its expiry only comes closer.
    let now = SystemTime::now();
    let latest_expiry = keys
        .max_ttl
        .and_then(|max| Some((max, now.checked_add(max)?)));
    let mut clients = BTreeMap::new();
    let mut hashes: HashSet<[u8; 32]> = HashSet::new();
    for (name, c) in &raw.clients {
        if !valid_name(name) {
            e.at(
                &[Key("clients"), Key(name.as_str())],
                format!("client name `{name}` may only use letters, digits, `.`, `_` and `-`"),
            );
        }
        for (i, r) in c.roles.iter().enumerate() {
            if !raw.roles.contains_key(r) {
                e.at(
                    &[
                        Key("clients"),
                        Key(name.as_str()),
                        Key("roles"),
                        Seg::Index(i),
                    ],
                    format!("client `{name}` names unknown role `{r}`"),
                );
            }
        }
        let mut key_names = HashSet::new();
        let mut keys = Vec::new();
        for (i, k) in c.keys.iter().enumerate() {
            let kp = [
                Key("clients"),
                Key(name.as_str()),
                Key("keys"),
                Seg::Index(i),
            ];
            if !key_names.insert(k.name.clone()) {
                e.at(
                    &kp,
                    format!("client `{name}` declares key `{}` twice", k.name),
                );
            }
            let mut hp = kp.to_vec();
            hp.push(Key("sha256"));
            let digest = hex::decode(k.sha256.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok());
            let Some(digest) = digest else {
                e.at(
                    &hp,
                    "sha256 must be 64 hex digits (the second line of `keygate keygen`)",
                );
                continue;
            };
            if !hashes.insert(digest) {
                e.at(&hp, "this key hash is declared twice");
            }
            let mut xp = kp.to_vec();
            xp.push(Key("expires"));
            let expires = k
                .expires
                .as_ref()
                .and_then(|x| parse_timestamp(x).map_err(|m| e.at(&xp, m)).ok());
            if let Some((max, latest)) = latest_expiry {
                let ttl = super::units::format_duration(max);
                match (&k.expires, expires) {
                    (None, _) => e.at(
                        &kp,
                        format!(
                            "client `{name}`: key `{}` needs `expires` (at most keys.max_ttl = {ttl} from now, so no later than {})",
                            k.name,
                            humantime::format_rfc3339_seconds(latest)
                        ),
                    ),
                    (Some(x), Some(at)) if at > latest => e.at(
                        &xp,
                        format!(
                            "client `{name}`: key `{}` expires {x}, beyond keys.max_ttl = {ttl} from now (no later than {})",
                            k.name,
                            humantime::format_rfc3339_seconds(latest)
                        ),
                    ),
                    _ => {}
                }
            }
            keys.push(DeclaredKey {
                name: k.name.clone(),
                sha256: digest,
                expires,
            });
        }
        clients.insert(
            name.clone(),
            Arc::new(Client {
                name: name.clone(),
                description: c.description.clone(),
                roles: c.roles.clone(),
                keys,
            }),
        );
    }

    if !e.list.is_empty() {
        return Err(ConfigErrors(e.list));
    }
    let (declared_roles, declared_clients) = (roles.len(), clients.len());
    roles.entry(BUILTIN_ADMIN.to_string()).or_insert_with(|| {
        Arc::new(Role {
            name: BUILTIN_ADMIN.to_string(),
            description: Some("built-in: may use the admin API".into()),
            admin: true,
            grants: Vec::new(),
        })
    });
    clients.entry(BUILTIN_ADMIN.to_string()).or_insert_with(|| {
        Arc::new(Client {
            name: BUILTIN_ADMIN.to_string(),
            description: Some("built-in: owner of the bootstrap admin key".into()),
            roles: vec![BUILTIN_ADMIN.to_string()],
            keys: Vec::new(),
        })
    });
    Ok(Config {
        path: path.to_path_buf(),
        server,
        admin,
        store,
        keys,
        tokens,
        connectors,
        roles,
        clients,
        declared_roles,
        declared_clients,
    })
}

const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_JWKS_MIN_INTERVAL: Duration = Duration::from_secs(30);

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

fn absolute_url(text: &str) -> Result<Uri, String> {
    let up = parse_upstream(text)?;
    let _ = up;
    text.parse::<Uri>()
        .map_err(|_| format!("`{text}` is not a URL"))
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

fn http_request_spec(
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

fn user_spec(e: &mut Errors<'_>, name: &str, t: &RawToken, base: &Path) -> Option<UserSpec> {
    use Seg::Key;
    let field = |k: &'static str| [Key("tokens"), Key(name), Key(k)];
    let default_header = format!("Keygate-Token-{name}");
    let from = t.from_header.as_deref().unwrap_or(&default_header);
    let from_header = if is_http_token(from) {
        let h = HeaderName::from_bytes(from.as_bytes()).ok();
        if let Some(why) = h.as_ref().and_then(consumed_request_header) {
            e.at(
                &field("from_header"),
                format!("token `{name}`: from_header cannot be `{from}`: {why}"),
            );
            None
        } else {
            h
        }
    } else {
        e.at(
            &field("from_header"),
            format!("`{from}` is not a valid HTTP header name"),
        );
        None
    };
    let jwt = match &t.jwt {
        None => None,
        Some(j) => {
            let jp = |k: &'static str| [Key("tokens"), Key(name), Key("jwt"), Key(k)];
            let key = match (&j.hs256_secret, &j.jwks_url) {
                (Some(src), None) => {
                    if j.jwks_min_interval.is_some() {
                        e.at(
                            &jp("jwks_min_interval"),
                            "`jwks_min_interval` only applies with `jwks_url`",
                        );
                    }
                    value_source(e, &jp("hs256_secret"), src, base).map(JwtKey::Hs256)
                }
                (None, Some(url)) => absolute_url(url)
                    .map_err(|m| e.at(&jp("jwks_url"), m))
                    .ok()
                    .map(|url| JwtKey::Jwks {
                        url,
                        ca_file: j.ca_file.as_ref().map(|f| resolve(base, f)),
                        min_interval: positive_duration(
                            e,
                            &jp("jwks_min_interval"),
                            &j.jwks_min_interval,
                            DEFAULT_JWKS_MIN_INTERVAL,
                        ),
                    }),
                _ => {
                    e.at(
                        &field("jwt"),
                        "jwt needs exactly one of `hs256_secret` or `jwks_url`",
                    );
                    None
                }
            };
            Some(JwtSpec {
                key: key?,
                issuer: j.issuer.clone(),
                audience: j.audience.clone(),
            })
        }
    };
    Some(UserSpec {
        from_header: from_header?,
        jwt,
    })
}

fn token(
    e: &mut Errors<'_>,
    name: &str,
    t: &RawToken,
    base: &Path,
    all: &BTreeMap<String, RawToken>,
) -> Option<TokenSpec> {
    use Seg::Key;
    let p = [Key("tokens"), Key(name)];
    if !valid_name(name) {
        e.at(
            &p,
            format!("token name `{name}` may only use letters, digits, `.`, `_` and `-`"),
        );
    }
    let kind = t.kind.as_deref().unwrap_or("text");
    let field = |k: &'static str| [Key("tokens"), Key(name), Key(k)];
    let not_for = |e: &mut Errors<'_>, fields: &[(bool, &'static str)], why: &str| {
        for (present, f) in fields {
            if *present {
                e.at(&field(f), format!("token `{name}`: `{f}` {why}"));
            }
        }
    };
    let fetch_fields = [
        (t.request.is_some(), "request"),
        (t.response.is_some(), "response"),
        (t.refresh_before.is_some(), "refresh_before"),
        (t.min_refresh_interval.is_some(), "min_refresh_interval"),
    ];
    let user_fields = [
        (t.from_header.is_some(), "from_header"),
        (t.jwt.is_some(), "jwt"),
    ];
    let header = header_name(
        e,
        &field("header"),
        t.header.as_deref().unwrap_or("Authorization"),
    );
    let prefix = t.prefix.clone().filter(|p| !p.is_empty());
    if let Some(pfx) = &prefix
        && !is_http_token(pfx)
    {
        e.at(
            &field("prefix"),
            format!("token `{name}`: prefix `{pfx}` is not a valid HTTP token (like Bearer)"),
        );
    }
    let kind = match kind {
        "text" => {
            not_for(e, &fetch_fields, "only applies to an http_request token");
            not_for(e, &user_fields, "only applies to a user token");
            let source = t
                .value
                .as_ref()
                .and_then(|v| value_source(e, &field("value"), v, base));
            TokenKind::Text { source }
        }
        "http_request" => {
            not_for(e, &user_fields, "only applies to a user token");
            if t.value.is_some() {
                e.at(
                    &field("value"),
                    format!("token `{name}`: an http_request token is fetched; remove `value`"),
                );
            }
            TokenKind::HttpRequest(Arc::new(http_request_spec(e, name, t, base, all)?))
        }
        "user" => {
            not_for(e, &fetch_fields, "only applies to an http_request token");
            if t.value.is_some() {
                e.at(
                    &field("value"),
                    format!(
                        "token `{name}`: a user token's value comes from the caller; remove `value`"
                    ),
                );
            }
            TokenKind::User(Arc::new(user_spec(e, name, t, base)?))
        }
        other => {
            e.at(
                &field("type"),
                format!("token `{name}`: unknown type `{other}` (use text, http_request or user)"),
            );
            return None;
        }
    };
    Some(TokenSpec {
        name: name.to_string(),
        description: t.description.clone(),
        kind,
        header: header?,
        prefix,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("https://api.example.com/base/").expect("valid");
        assert_eq!(u.base_path, "/base");
        assert!(u.is_https());
        assert!(parse_upstream("ftp://x").is_err());
        assert!(parse_upstream("/relative").is_err());
        assert!(parse_upstream("https://user@host").is_err());
    }

    fn limits_of(yaml: &str) -> Result<Limits, Vec<ConfigError>> {
        crate::config::from_text(yaml, Path::new("/tmp/keygate.yaml"))
            .map(|c| c.server.limits)
            .map_err(|e| e.0)
    }

    /// The message of the error reported on `line`; panics if there is none.
    fn message_on(errs: &[ConfigError], line: usize) -> String {
        errs.iter()
            .find(|e| e.line == Some(line))
            .map(|e| e.message.clone())
            .unwrap_or_else(|| panic!("no error on line {line}: {errs:?}"))
    }

    #[test]
    fn connection_limits_default_and_parse() {
        assert_eq!(limits_of(""), Ok(Limits::default()));
        let l = limits_of(
            "server:\n  max_connections: 20\n  header_read_timeout: 500ms\n  idle_timeout: 2m\n  \
             h2_keep_alive_interval: 5s\n  h2_keep_alive_timeout: 3s\n  max_header_size: 16KiB\n  \
             max_concurrent_streams: 7\n",
        )
        .expect("valid");
        assert_eq!(
            l,
            Limits {
                max_connections: 20,
                header_read_timeout: Duration::from_millis(500),
                idle_timeout: Duration::from_secs(120),
                h2_keep_alive_interval: Duration::from_secs(5),
                h2_keep_alive_timeout: Duration::from_secs(3),
                max_header_size: 16 << 10,
                max_concurrent_streams: 7,
            }
        );
    }

    #[test]
    fn connection_limits_are_refused_with_positions() {
        let errs = limits_of(
            "server:\n  max_connections: 0\n  header_read_timeout: 0s\n  idle_timeout: soon\n  \
             max_header_size: 4KiB\n  max_concurrent_streams: 0\n  h2_keep_alive_interval: 0ms\n",
        )
        .expect_err("invalid");
        let at = |line: usize| message_on(&errs, line);
        assert!(at(2).contains("max_connections must be between 1"));
        assert!(at(3).contains("header_read_timeout must be more than 0"));
        assert!(at(4).contains("not a duration"));
        assert!(at(5).contains("at least 8KiB"));
        assert!(at(6).contains("max_concurrent_streams must be between 1"));
        assert!(at(7).contains("h2_keep_alive_interval must be more than 0"));
        assert_eq!(errs.len(), 6, "{errs:?}");
    }

    #[test]
    fn flush_interval_defaults_parses_and_is_bounded_with_positions() {
        let path = Path::new("/tmp/keygate.yaml");
        let of = |yaml: &str| crate::config::from_text(yaml, path).map(|c| c.store.flush_interval);
        assert_eq!(of("").ok(), Some(Duration::from_secs(2)));
        assert_eq!(
            of("store:\n  flush_interval: 250ms\n").ok(),
            Some(Duration::from_millis(250))
        );
        for (bad, needle) in [
            ("0s", "between 100ms and 60s"),
            ("50ms", "between 100ms and 60s"),
            ("2m", "between 100ms and 60s"),
            ("often", "not a duration"),
        ] {
            let errs = of(&format!("store:\n  flush_interval: {bad}\n"))
                .expect_err(bad)
                .0;
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!((errs[0].line, errs[0].column), (Some(2), Some(3)), "{bad}");
            assert!(errs[0].message.contains(needle), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn connection_durations_are_bounded_above() {
        let errs = limits_of(
            "server:\n  header_read_timeout: 10000000000000000000s\n  idle_timeout: 2d\n  \
             h2_keep_alive_interval: 99999999999999d\n  h2_keep_alive_timeout: 25h\n",
        )
        .expect_err("invalid");
        let at = |line: usize| message_on(&errs, line);
        assert!(at(2).contains("header_read_timeout must be at most 1h"));
        assert!(at(3).contains("idle_timeout must be at most 1d"));
        assert!(at(4).contains("h2_keep_alive_interval must be at most 1d"));
        assert!(at(5).contains("h2_keep_alive_timeout must be at most 1d"));
        assert_eq!(errs.len(), 4, "{errs:?}");
        let l = limits_of(
            "server:\n  header_read_timeout: 1h\n  idle_timeout: 1d\n  \
             h2_keep_alive_interval: 24h\n  h2_keep_alive_timeout: 86400s\n",
        )
        .expect("the bounds themselves are valid");
        assert_eq!(l.header_read_timeout, MAX_HEADER_READ_TIMEOUT);
        assert_eq!(l.idle_timeout, MAX_IDLE_TIMEOUT);
    }

    #[test]
    fn http_tokens() {
        assert!(is_http_token("Bearer"));
        assert!(!is_http_token("Bear er"));
        assert!(!is_http_token("X:Y"));
        assert!(!is_http_token(""));
    }

    #[test]
    fn refresh_and_jwks_intervals() {
        let path = Path::new("/etc/keygate/keygate.yaml");
        let yaml = r#"
tokens:
  t:
    type: http_request
    request: { url: "https://idp.example/token" }
    response: { token: /access_token }
    min_refresh_interval: 0s
  u:
    type: user
    jwt: { hs256_secret: { literal: abc }, jwks_min_interval: 5s }
  w:
    value: { literal: x }
    min_refresh_interval: 5s
"#;
        let errs = crate::config::from_text(yaml, path).expect_err("invalid").0;
        let at = |line: usize, needle: &str| {
            assert!(
                errs.iter()
                    .any(|e| e.line == Some(line) && e.message.contains(needle)),
                "line {line}: {needle}: {errs:?}"
            )
        };
        at(7, "longer than 0s");
        at(10, "only applies with `jwks_url`");
        at(13, "only applies to an http_request token");
        assert_eq!(errs.len(), 3, "{errs:?}");

        let ok = r#"
tokens:
  t:
    type: http_request
    request: { url: "https://idp.example/token" }
    response: { token: /access_token }
  t2:
    type: http_request
    request: { url: "https://idp.example/token" }
    response: { token: /access_token }
    min_refresh_interval: 2m
  v:
    type: user
    jwt: { jwks_url: "https://idp.example/jwks", jwks_min_interval: 45s }
"#;
        let c = crate::config::from_text(ok, path).expect("valid");
        let http = |n: &str| match &c.tokens[n].kind {
            TokenKind::HttpRequest(h) => h.min_refresh_interval,
            _ => Duration::ZERO,
        };
        assert_eq!(http("t"), DEFAULT_MIN_REFRESH_INTERVAL);
        assert_eq!(http("t2"), Duration::from_secs(120));
        let TokenKind::User(u) = &c.tokens["v"].kind else {
            panic!("user token")
        };
        assert!(matches!(
            u.jwt.as_ref().map(|j| &j.key),
            Some(JwtKey::Jwks { min_interval, .. }) if *min_interval == Duration::from_secs(45)
        ));
    }
}
