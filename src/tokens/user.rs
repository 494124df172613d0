//! `user` tokens: the caller's own credential (e.g. the JWT of the app's
//! signed-in user), sent on each request in `Keygate-Token-<name>` (or
//! `from_header`) and moved into the token's upstream header. Optionally
//! verified as a JWT: HS256 with a configured secret, or RS/ES/PS keys from
//! a JWKS (cached 5 minutes; re-fetched on an unknown `kid`, at most every
//! 30 s). Signature, `exp`, `nbf`, and when configured `iss` and `aud` are
//! checked. A JWKS that cannot be fetched makes tokens unverifiable (401).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::source;
use crate::config::{JwtKey, JwtSpec, UserSpec};
use crate::upstream::HttpClient;

const JWKS_TTL: Duration = Duration::from_secs(300);
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Jwks {
    url: http::Uri,
    client: HttpClient,
    cache: Mutex<Option<(Arc<JwkSet>, Instant)>>,
    fetch: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug)]
pub struct UserVerifier {
    pub name: String,
    pub spec: Arc<UserSpec>,
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Invalid(&'static str),
    /// The keys to verify with could not be had.
    Unverifiable(String),
}

impl UserVerifier {
    pub fn new(name: &str, spec: Arc<UserSpec>) -> Result<Self, String> {
        let (hs256, jwks) = match spec.jwt.as_ref().map(|j| &j.key) {
            None => (None, None),
            Some(JwtKey::Hs256(src)) => {
                let secret = source::read(src).map_err(|source::Unavailable(why)| {
                    format!("token `{name}` jwt secret: {why}")
                })?;
                (
                    Some(DecodingKey::from_secret(secret.expose().as_bytes())),
                    None,
                )
            }
            Some(JwtKey::Jwks { url, ca_file }) => (
                None,
                Some(Jwks {
                    url: url.clone(),
                    client: crate::upstream::build(ca_file.as_deref(), Duration::from_secs(5))?,
                    cache: Mutex::new(None),
                    fetch: tokio::sync::Mutex::new(()),
                    last_error: Mutex::new(None),
                }),
            ),
        };
        Ok(UserVerifier {
            name: name.to_string(),
            spec,
            hs256,
            jwks,
        })
    }

    pub fn last_error(&self) -> Option<String> {
        self.jwks
            .as_ref()
            .and_then(|j| j.last_error.lock().ok().and_then(|e| e.clone()))
    }

    /// Accepts the caller's value, or says why not.
    pub async fn check(&self, value: &str) -> Result<(), Rejection> {
        let Some(jwt) = &self.spec.jwt else {
            return Ok(());
        };
        let header =
            jsonwebtoken::decode_header(value).map_err(|_| Rejection::Invalid("not a JWT"))?;
        let (key, alg) = match (&self.hs256, &self.jwks) {
            (Some(k), _) => (k.clone(), Algorithm::HS256),
            (None, Some(jwks)) => {
                if matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return Err(Rejection::Invalid(
                        "HMAC algorithms are not accepted with a JWKS",
                    ));
                }
                (jwks.key_for(header.kid.as_deref()).await?, header.alg)
            }
            (None, None) => return Err(Rejection::Unverifiable("no verification key".into())),
        };
        let mut v = Validation::new(alg);
        v.validate_nbf = true;
        v.leeway = 5;
        apply_claims(&mut v, jwt);
        jsonwebtoken::decode::<serde_json::Value>(value, &key, &v)
            .map(|_| ())
            .map_err(|_| Rejection::Invalid("signature or claims rejected"))
    }
}

fn apply_claims(v: &mut Validation, jwt: &JwtSpec) {
    match &jwt.audience {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    if let Some(iss) = &jwt.issuer {
        v.set_issuer(&[iss]);
    }
}

impl Jwks {
    fn cached(&self) -> Option<(Arc<JwkSet>, Instant)> {
        self.cache.lock().ok().and_then(|c| c.clone())
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, Rejection> {
        let pick = |set: &JwkSet| -> Option<DecodingKey> {
            let jwk = match kid {
                Some(k) => set.find(k),
                None if set.keys.len() == 1 => set.keys.first(),
                None => None,
            }?;
            DecodingKey::from_jwk(jwk).ok()
        };
        if let Some((set, at)) = self.cached()
            && at.elapsed() < JWKS_TTL
            && let Some(k) = pick(&set)
        {
            return Ok(k);
        }
        let _one = self.fetch.lock().await;
        // Another caller may have refreshed while we waited.
        if let Some((set, at)) = self.cached() {
            if let Some(k) = pick(&set).filter(|_| at.elapsed() < JWKS_TTL) {
                return Ok(k);
            }
            if at.elapsed() < JWKS_MIN_REFETCH {
                return pick(&set).ok_or(Rejection::Invalid("unknown key id"));
            }
        }
        match self.download().await {
            Ok(set) => {
                let set = Arc::new(set);
                if let Ok(mut c) = self.cache.lock() {
                    *c = Some((Arc::clone(&set), Instant::now()));
                }
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                pick(&set).ok_or(Rejection::Invalid("unknown key id"))
            }
            Err(why) => {
                tracing::warn!(url = %self.url, error = %why, "JWKS fetch failed");
                if let Ok(mut e) = self.last_error.lock() {
                    *e = Some(why.clone());
                }
                // Serve from a stale cache rather than refuse everyone.
                self.cached()
                    .and_then(|(set, _)| pick(&set))
                    .ok_or(Rejection::Unverifiable(why))
            }
        }
    }

    async fn download(&self) -> Result<JwkSet, String> {
        let req = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(crate::body::Body::empty())
            .map_err(|_| "bad JWKS request".to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "JWKS endpoint timed out".to_string())?
            .map_err(|_| "JWKS endpoint unreachable".to_string())?;
        if !resp.status().is_success() {
            return Err(format!("JWKS endpoint answered {}", resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|_| "JWKS answer unreadable".to_string())?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|_| "JWKS answer is not a JWK set".to_string())
    }
}
