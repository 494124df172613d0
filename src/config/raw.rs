//! The serde mirror of the YAML file: every field as written, unknown fields
//! denied. Nothing here is checked beyond YAML shape; `validate/` turns this
//! into the typed [`crate::config::Config`] and reports every problem at once.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A scalar written either as a string (`30s`, `32MiB`) or a bare number.
/// Kept as text so that `validate/` owns every unit rule and message.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(u64),
}

impl Scalar {
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub keys: RawKeys,
    #[serde(default)]
    pub tokens: BTreeMap<String, RawToken>,
    #[serde(default)]
    pub connectors: BTreeMap<String, RawConnector>,
    #[serde(default)]
    pub roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    pub clients: BTreeMap<String, RawClient>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub tls: Option<RawTls>,
    pub shutdown_grace: Option<Scalar>,
    pub workers: Option<usize>,
    // Connection limits, applied to every listener (see `model::Limits`).
    pub max_connections: Option<u64>,
    pub header_read_timeout: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub h2_keep_alive_interval: Option<Scalar>,
    pub h2_keep_alive_timeout: Option<Scalar>,
    pub max_header_size: Option<Scalar>,
    pub max_concurrent_streams: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub sqlite: Option<String>,
    /// The shared store for several replicas; excludes `sqlite`.
    pub postgres: Option<RawPostgres>,
    pub master_key: Option<RawValueSource>,
    /// Days to keep revoked or expired keys listed before they are purged.
    pub retention: Option<Scalar>,
    /// How often key usage (`last_used_at`) is written to the store.
    pub flush_interval: Option<Scalar>,
    /// How long audit records are kept before they are purged.
    pub audit_retention: Option<Scalar>,
}

/// `store.postgres`: the database URL and the replica protocol's timings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: Option<RawValueSource>,
    pub pool_size: Option<u64>,
    pub ack_timeout: Option<Scalar>,
    pub lease: Option<Scalar>,
    pub heartbeat: Option<Scalar>,
    pub replica: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeys {
    pub prefix: Option<String>,
    pub max_ttl: Option<Scalar>,
}

/// `{ env: NAME }`, `{ file: PATH }` or `{ literal: "…" }`: exactly one.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValueSource {
    pub env: Option<String>,
    pub file: Option<String>,
    pub literal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<RawValueSource>,
    pub prefix: Option<String>,
    pub header: Option<String>,
    // http_request
    pub request: Option<RawRequest>,
    pub response: Option<RawResponse>,
    pub refresh_before: Option<Scalar>,
    pub min_refresh_interval: Option<Scalar>,
    // user
    pub from_header: Option<String>,
    pub jwt: Option<RawJwt>,
}

/// How to call a token endpoint. Values in `headers`, `form` and `json`
/// may be plain strings or sources (`{ env: … }`, `{ file: … }`,
/// `{ literal: … }`, `{ token: other-token }`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    pub method: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, RawParam>,
    pub form: Option<BTreeMap<String, RawParam>>,
    pub json: Option<serde_yaml::Value>,
    pub ca_file: Option<String>,
    pub timeout: Option<Scalar>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawParam {
    Plain(String),
    Number(i64),
    Bool(bool),
    Source(RawParamSource),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParamSource {
    pub env: Option<String>,
    pub file: Option<String>,
    pub literal: Option<String>,
    pub token: Option<String>,
}

/// Where the token and its lifetime are in the endpoint's JSON answer
/// (RFC 6901 JSON pointers), or a fixed `ttl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    pub token: String,
    pub expires_in: Option<String>,
    pub expires_at: Option<String>,
    pub ttl: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub hs256_secret: Option<RawValueSource>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ca_file: Option<String>,
    pub jwks_min_interval: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub description: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub listen: Option<String>,
    pub auth: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub max_request_body: Option<Scalar>,
    pub forward_client_ip: Option<bool>,
    pub allow_encoded_slash: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Scalar>,
    pub response: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub description: Option<String>,
    #[serde(default)]
    pub allow: Vec<RawGrant>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    pub connector: String,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub description: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub keys: Vec<RawClientKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientKey {
    pub name: String,
    pub sha256: String,
    pub expires: Option<String>,
}
