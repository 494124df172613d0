//! The typed, validated config: what the rest of keygate reads. Only
//! `validate/` builds it, from the raw serde mirror; nothing here parses
//! text or reports errors, and nothing here does I/O.
//!
//! The types are shaped so that a checked config stays checked: durations,
//! header names, methods and URLs are already `Duration`, `HeaderName`,
//! `Method` and `Uri` (nothing downstream re-parses text), a literal
//! credential is a [`Secret`] (printing a config never prints it), and a
//! [`HeaderPlan`] can only be made through [`HeaderPlan::new`], which refuses
//! two writers of one header name.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};

use super::pattern::PathPattern;
use crate::secret::Secret;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_KEY_PREFIX: &str = "kg_";
/// The role and client that own the bootstrap admin key. Added to every
/// config unless the file defines a role or client of that name itself.
pub const BUILTIN_ADMIN: &str = "keygate-admin";

/// One config file, validated. Only `validate/` builds it, so every name a
/// connector, role or client refers to exists, and the built-in
/// [`BUILTIN_ADMIN`] role and client are always present. Sections shared
/// by reference at run time (tokens, connectors, roles, clients) are `Arc`s
/// in name-ordered maps.
#[derive(Debug)]
pub struct Config {
    /// The file this config was read from; relative paths resolved against
    /// its folder.
    pub path: PathBuf,
    pub server: Server,
    pub admin: Admin,
    pub store: Store,
    pub keys: Keys,
    pub tokens: BTreeMap<String, Arc<TokenSpec>>,
    pub connectors: BTreeMap<String, Arc<Connector>>,
    pub roles: BTreeMap<String, Arc<Role>>,
    pub clients: BTreeMap<String, Arc<Client>>,
    /// How many roles and clients the file itself declares: `roles` and
    /// `clients` also hold the built-in `keygate-admin` ones, which
    /// `keygate check` must not count as the operator's.
    pub declared_roles: usize,
    pub declared_clients: usize,
    /// The objects made through the admin API (laid over the file by
    /// `overlay.rs`), with their definitions and versions; every other
    /// named object comes from the file.
    pub from_api: BTreeMap<(Section, String), ApiDef>,
}

/// An object made through the admin API: its definition as JSON in the
/// file's shape (without its name; never a secret value) and its version,
/// which `ETag`/`If-Match` carry.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiDef {
    pub body: serde_json::Value,
    /// 1 at creation, +1 per change.
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// The named sections of the catalog: what the admin API can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Tokens,
    Connectors,
    Roles,
    Clients,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Tokens,
        Section::Connectors,
        Section::Roles,
        Section::Clients,
    ];

    /// The YAML key and URL segment: `tokens`.
    pub fn key(self) -> &'static str {
        match self {
            Section::Tokens => "tokens",
            Section::Connectors => "connectors",
            Section::Roles => "roles",
            Section::Clients => "clients",
        }
    }

    /// One object of it, for messages and audit records: `token`.
    pub fn one(self) -> &'static str {
        match self {
            Section::Tokens => "token",
            Section::Connectors => "connector",
            Section::Roles => "role",
            Section::Clients => "client",
        }
    }

    pub fn from_key(key: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.key() == key)
    }
}

impl Config {
    /// Whether `name` in `section` was made through the admin API (else
    /// it comes from the file, or is the built-in `keygate-admin`).
    pub fn is_api(&self, section: Section, name: &str) -> bool {
        self.from_api.contains_key(&(section, name.to_string()))
    }

    /// The one-line summary `keygate check` prints: what the file
    /// declares (the built-in `keygate-admin` role and client are not
    /// counted).
    pub fn summary(&self) -> String {
        let keys: usize = self.clients.values().map(|c| c.keys.len()).sum();
        format!(
            "ok: {} tokens, {} connectors, {} roles, {} clients, {} declared keys",
            self.tokens.len(),
            self.connectors.len(),
            self.declared_roles,
            self.declared_clients,
            keys
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub shutdown_grace: Duration,
    pub workers: Option<usize>,
    pub limits: Limits,
}

/// What one client connection may hold, on every listener (proxy, dedicated
/// connector ports, admin). Without these a socket that sends nothing, or
/// one byte at a time, holds a task and a file descriptor forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open connections per listener. Past it the listener stops accepting,
    /// so new connections wait in the kernel backlog; open ones are
    /// untouched. Per listener, so a flood on the proxy port cannot lock
    /// operators out of the admin port.
    pub max_connections: usize,
    /// From accept to the first complete request head: TLS handshake,
    /// protocol detection and the head itself. On HTTP/1.1 hyper also
    /// applies it to every later head, including the wait for it on an
    /// idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2: GOAWAY, RFC 9113 §6.8).
    pub idle_timeout: Duration,
    /// HTTP/2 PING interval and how long to wait for its ACK before the
    /// connection is deemed dead (RFC 9113 §6.7).
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// Request line plus headers (HTTP/1.1), or the decoded header list
    /// (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`). Over it: 431.
    pub max_header_size: u32,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2).
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    /// nginx-like defaults: 10 s for a request head (nginx
    /// `client_header_timeout` is 60 s, but a gateway's callers are
    /// programs), 60 s idle (nginx `keepalive_timeout` 75 s, AWS ALB 60 s),
    /// 64 KiB of headers (nginx allows 4 × 8 KiB buffers, Envoy 60 KiB),
    /// 100 streams (RFC 9113 §6.5.2 recommends no fewer; nginx 128).
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(20),
            max_header_size: 64 << 10,
            max_concurrent_streams: 100,
        }
    }
}

/// hyper's HTTP/1.1 read buffer, which bounds the request head, cannot be
/// smaller than 8 KiB (`http1::Builder::max_buf_size` panics below it).
pub(super) const MIN_HEADER_SIZE: u64 = 8 << 10;
/// Far beyond any file descriptor limit; a typo guard.
pub(super) const MAX_CONNECTIONS: u64 = 1_000_000;
/// Upper bound of `header_read_timeout`. A request head is a few KiB
/// that a program sends at once; nginx waits 60 s for it by default. An
/// hour is far past any honest client and still short enough that a
/// slow-loris socket cannot hold its slot for ever.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3600);
/// Upper bound of `idle_timeout`: the longest load-balancer idle timeouts
/// (AWS ALB's maximum is 4000 s) are hours, not days; a day is generous.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Upper bound of the HTTP/2 PING interval and ACK wait: a PING exists to
/// find dead peers and keep NAT entries alive, which needs minutes; a day
/// is generous.
pub const MAX_H2_KEEP_ALIVE: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    /// The admin listener's own certificate: the console's session cookie
    /// is then `Secure`. Renewals on disk are picked up like the proxy's.
    pub tls: Option<TlsFiles>,
}

/// Whether a socket bound at `bound` is the one a config asks for with
/// `configured` (port 0 means "any free port" on that address).
pub fn listen_matches(bound: SocketAddr, configured: SocketAddr) -> bool {
    bound == configured || configured.port() == 0 && bound.ip() == configured.ip()
}

#[derive(Debug, Clone)]
pub struct Store {
    pub backend: Backend,
    pub master_key: ValueSource,
    /// How long revoked or expired keys stay listed; `None` keeps them.
    pub retention: Option<Duration>,
    /// How often key usage is written to the store (and a reset admin key
    /// is looked for): SPEC §4 allows "a few seconds behind".
    pub flush_interval: Duration,
    /// How long audit records are kept (default 400 days: a year and a
    /// review cycle), then purged at start and by the upkeep.
    pub audit_retention: Duration,
    /// Folder for `initial-admin.key` and other local files: the SQLite
    /// file's folder, or `data/` beside the config for PostgreSQL.
    pub data_dir: PathBuf,
}

/// Where the store lives: one file for one box, or a database that any
/// number of replicas share (SPEC §8).
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(Postgres),
}

/// `store.postgres`. The URL holds a password, so it stays a
/// [`ValueSource`] (read when the store opens) and is never printed.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// A libpq-style URL; `sslmode`/`sslrootcert` as `store::postgres` says.
    pub url: ValueSource,
    /// Connections this replica holds at most (1 to 64, default 8).
    pub pool_size: usize,
    /// How long a revocation waits for the other replicas' acks before
    /// answering `202` with the laggards (default 2s).
    pub ack_timeout: Duration,
    /// How long a replica cut off from the database keeps serving from
    /// memory, and how long a silent replica still counts as live
    /// (default 30s).
    pub lease: Duration,
    /// How often this replica records its applied sequence (default 1s;
    /// under half the lease, so one lost beat does not end a lease).
    pub heartbeat: Duration,
    /// This replica's name; `None`: the host name and process id.
    pub replica: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Keys {
    pub prefix: String,
    pub max_ttl: Option<Duration>,
}

/// Where a value comes from. `Literal` holds a [`Secret`], so printing a
/// config never prints a credential.
#[derive(Debug, Clone)]
pub enum ValueSource {
    Env(String),
    File(PathBuf),
    Literal(Secret),
}

impl ValueSource {
    pub fn kind(&self) -> &'static str {
        match self {
            ValueSource::Env(_) => "env",
            ValueSource::File(_) => "file",
            ValueSource::Literal(_) => "literal",
        }
    }

    /// Same source, compared without looking at secret bytes in variable time.
    pub fn same_as(&self, other: &ValueSource) -> bool {
        match (self, other) {
            (ValueSource::Env(a), ValueSource::Env(b)) => a == b,
            (ValueSource::File(a), ValueSource::File(b)) => a == b,
            (ValueSource::Literal(a), ValueSource::Literal(b)) => a.ct_eq(b.expose()),
            _ => false,
        }
    }
}

impl PartialEq for ValueSource {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}

#[derive(Debug)]
pub struct TokenSpec {
    pub name: String,
    pub description: Option<String>,
    pub kind: TokenKind,
    pub header: HeaderName,
    /// Written before the value with one space: `Bearer sk_live_…`.
    pub prefix: Option<String>,
}

#[derive(Debug)]
pub enum TokenKind {
    /// A static value; `None` means "set at run time through the admin API".
    Text { source: Option<ValueSource> },
    /// Fetched from a token endpoint and refreshed before it expires.
    HttpRequest(Arc<HttpRequestSpec>),
    /// Supplied by the caller on each request.
    User(Arc<UserSpec>),
}

impl TokenSpec {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            TokenKind::Text { .. } => "text",
            TokenKind::HttpRequest(_) => "http_request",
            TokenKind::User(_) => "user",
        }
    }

    /// The config source of a `text` token's value.
    pub fn source(&self) -> Option<&ValueSource> {
        match &self.kind {
            TokenKind::Text { source } => source.as_ref(),
            TokenKind::HttpRequest(_) | TokenKind::User(_) => None,
        }
    }

    /// Whether an operator may set this token's value at run time.
    pub fn takes_admin_value(&self) -> bool {
        matches!(self.kind, TokenKind::Text { source: None })
    }
}

/// A value in a token endpoint request.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Plain(String),
    Source(ValueSource),
    /// Another token's current value.
    Token(String),
}

/// A JSON body whose leaves may be [`Param`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Value(serde_json::Value),
    Param(Param),
    Object(Vec<(String, JsonTemplate)>),
    Array(Vec<JsonTemplate>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchBody {
    None,
    Form(Vec<(String, Param)>),
    Json(JsonTemplate),
}

/// Where a fetched token's lifetime comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// Seconds from now, at this JSON pointer.
    In(String),
    /// Unix seconds or an RFC 3339 time, at this JSON pointer.
    At(String),
    /// A fixed lifetime.
    Ttl(Duration),
    /// No expiry: refreshed only when an upstream answers 401.
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequestSpec {
    pub method: Method,
    pub url: Uri,
    pub headers: Vec<(HeaderName, Param)>,
    pub body: FetchBody,
    /// JSON pointer to the token in the answer.
    pub token_pointer: String,
    pub expiry: Expiry,
    pub refresh_before: Duration,
    /// At most one upstream-401-triggered refresh per this interval: a
    /// caller who finds a path answering 401 must not be able to burn the
    /// identity provider's quota through keygate.
    pub min_refresh_interval: Duration,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserSpec {
    /// The caller's header that carries it (default `Keygate-Token-<name>`).
    pub from_header: HeaderName,
    pub jwt: Option<JwtSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtSpec {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JwtKey {
    Hs256(ValueSource),
    Jwks {
        url: Uri,
        ca_file: Option<PathBuf>,
        /// Unknown `kid`s re-fetch the set at most this often, so callers
        /// sending made-up key ids cannot turn keygate into a JWKS flooder.
        min_interval: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    ApiKey,
    None,
}

/// The upstream base: scheme and authority fixed, plus an optional base path
/// (without trailing slash) that every forwarded path is appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    pub base_path: String,
}

impl Upstream {
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// The headers a connector writes on every outbound request. Each name is
/// written by exactly one token or static header: [`HeaderPlan::new`] is the
/// only constructor and refuses duplicates (compared case-insensitively,
/// which `HeaderName` guarantees by lowercasing).
#[derive(Debug, Clone)]
pub struct HeaderPlan {
    tokens: Vec<(HeaderName, String)>,
    statics: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderPlan {
    /// Returns the plan or the first header name written twice.
    pub fn new(
        tokens: Vec<(HeaderName, String)>,
        statics: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, HeaderName> {
        let mut seen = HashSet::new();
        for name in tokens
            .iter()
            .map(|t| &t.0)
            .chain(statics.iter().map(|s| &s.0))
        {
            if !seen.insert(name.clone()) {
                return Err(name.clone());
            }
        }
        Ok(HeaderPlan { tokens, statics })
    }

    /// `(header, token name)` for each attached token.
    pub fn tokens(&self) -> &[(HeaderName, String)] {
        &self.tokens
    }

    pub fn statics(&self) -> &[(HeaderName, HeaderValue)] {
        &self.statics
    }
}

/// Trust roots file and connect timeout: all an upstream client depends on.
pub type ClientKey = (Option<PathBuf>, Duration);

#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub description: Option<String>,
    pub upstream: Upstream,
    pub headers: HeaderPlan,
    pub listen: Option<SocketAddr>,
    pub auth: AuthMode,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_request_body: u64,
    pub forward_client_ip: bool,
    /// Admit `%2F` inside a path segment (object keys). It stays encoded
    /// and inside its segment, for grants and upstream alike.
    pub allow_encoded_slash: bool,
}

impl Connector {
    /// What the pooled upstream client depends on; connectors (and reloads)
    /// with an equal key share one client and its warm connections.
    pub fn client_key(&self) -> ClientKey {
        (self.ca_file.clone(), self.connect_timeout)
    }
}

/// What a caller holding this role may do: use the admin API (`admin`), and
/// call what any one of its `grants` allows. No grant, no access.
#[derive(Debug)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub admin: bool,
    pub grants: Vec<Grant>,
}

/// One connector, optionally narrowed to some methods and path patterns;
/// methods are already `Method`s and paths compiled [`PathPattern`]s.
#[derive(Debug)]
pub struct Grant {
    pub connector: String,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// `None`: every path.
    pub paths: Option<Vec<PathPattern>>,
}

#[derive(Debug)]
pub struct Client {
    pub name: String,
    pub description: Option<String>,
    pub roles: Vec<String>,
    pub keys: Vec<DeclaredKey>,
}

/// An API key declared in the file. Only its SHA-256 is held: the file
/// never carries the key itself.
#[derive(Debug, Clone)]
pub struct DeclaredKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub expires: Option<SystemTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_plan_refuses_duplicates() {
        let a = HeaderName::from_static("authorization");
        let plan = HeaderPlan::new(
            vec![(a.clone(), "t1".into())],
            vec![(a.clone(), HeaderValue::from_static("x"))],
        );
        assert_eq!(plan.err(), Some(a));
    }
}
