//! `user` tokens: the caller's own credential (e.g. the JWT of the app's
//! signed-in user), sent on each request in `Keygate-Token-<name>` (or
//! `from_header`) and moved into the token's upstream header. Optionally
//! verified as a JWT: HS256 with a configured secret, or RS/ES/PS keys from
//! a JWKS. Signature, `exp`, `nbf`, and when configured `iss` and `aud` are
//! checked.
//!
//! The HS256 secret follows the token-value rules: a `file:` secret is
//! re-read when the file changes (the watcher calls
//! [`UserVerifier::reread_secret`]), an `env:`/`literal:` one at every
//! reload, so a leaked secret is rotated by rewriting it, not by a restart.
//! A secret that cannot be read makes tokens unverifiable (401) and says
//! why in the admin API.
//!
//! The JWKS is cached for 5 minutes and re-fetched when stale or when a
//! token names an unknown `kid`, but **at most once per `min_interval`**
//! (`jwks_min_interval`, default 30 s), and after a failed fetch only after
//! a backoff with jitter. Callers never queue behind a chain of fetches:
//! one fetch runs at a time in its own task; a caller arriving meanwhile
//! waits for that one fetch, and a caller arriving when no fetch is allowed
//! is answered from the cache (stale if need be) or rejected. Made-up
//! `kid`s and a failing endpoint therefore cost the identity provider a
//! bounded number of requests, whatever the traffic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::watch;
use tokio::time::Instant;

use super::refresh::{backoff, jitter};
use crate::config::source;
use crate::config::{JwtKey, JwtSpec, UserSpec, ValueSource};
use crate::lock::lock;
use crate::secret::Secret;
use crate::upstream::{BuildError, HttpClient};

const JWKS_TTL: Duration = Duration::from_secs(300);
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

pub type JwksFuture = Pin<Box<dyn Future<Output = Result<JwkSet, JwksError>> + Send>>;

/// Why a JWKS download failed. Kept in the cache state (Clone) and shown by
/// the admin API; never the endpoint's own error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("bad JWKS request")]
    Request,
    #[error("JWKS endpoint timed out")]
    Timeout,
    #[error("JWKS endpoint unreachable")]
    Unreachable,
    #[error("JWKS endpoint answered {}", .0.as_u16())]
    Status(http::StatusCode),
    #[error("JWKS answer unreadable")]
    Unreadable,
    #[error("JWKS answer is not a JWK set")]
    NotJwkSet,
}

/// Why a token's verification key cannot be had: its tokens are refused
/// (401) until it can, and the admin API shows this as the token's
/// `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverifiable {
    /// The HS256 secret's source holds no usable value.
    #[error("token `{token}` jwt secret: {source}")]
    Secret {
        token: String,
        source: source::Unavailable,
    },
    /// The last JWKS download failed and no set is cached.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error("no JWKS fetched yet")]
    NoJwksYet,
    #[error("no verification key")]
    NoKey,
}

/// Downloads the key set. The real one calls the JWKS URL; unit tests
/// script answers to exercise the limits on paused time.
pub trait JwksSource: Send + Sync {
    fn download(&self) -> JwksFuture;
}

struct HttpJwks {
    url: http::Uri,
    client: HttpClient,
}

impl JwksSource for HttpJwks {
    fn download(&self) -> JwksFuture {
        let (url, client) = (self.url.clone(), self.client.clone());
        Box::pin(async move { download(url, client).await })
    }
}

#[derive(Debug, Default)]
struct JwksState {
    set: Option<Arc<JwkSet>>,
    fetched_at: Option<Instant>,
    /// No fetch before this: `min_interval` after a success, a backoff
    /// after a failure.
    next_allowed: Option<Instant>,
    failures: u32,
    last_error: Option<JwksError>,
    /// The one fetch in flight; its sender is dropped when it is done.
    inflight: Option<watch::Receiver<()>>,
    downloads: u64,
}

struct Jwks {
    url: String,
    source: Box<dyn JwksSource>,
    min_interval: Duration,
    state: Mutex<JwksState>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("min_interval", &self.min_interval)
            .finish_non_exhaustive()
    }
}

/// The HS256 key as last read from its source, or why it cannot be had.
type Hs256Key = Result<(Secret, DecodingKey), Unverifiable>;

struct Hs256 {
    source: ValueSource,
    current: ArcSwap<Hs256Key>,
}

impl std::fmt::Debug for Hs256 {
    // `DecodingKey`'s own Debug prints the secret bytes: never use it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hs256")
            .field("source", &self.source.kind())
            .finish_non_exhaustive()
    }
}

fn read_hs256(name: &str, src: &ValueSource) -> Hs256Key {
    source::read(src)
        .map(|secret| {
            let key = DecodingKey::from_secret(secret.expose().as_bytes());
            (secret, key)
        })
        .map_err(|source| Unverifiable::Secret {
            token: name.to_string(),
            source,
        })
}

#[derive(Debug)]
pub struct UserVerifier {
    pub name: String,
    pub spec: Arc<UserSpec>,
    hs256: Option<Hs256>,
    jwks: Option<Arc<Jwks>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Invalid(&'static str),
    /// The keys to verify with could not be had.
    Unverifiable(Unverifiable),
}

impl UserVerifier {
    /// Fails only when a JWKS client cannot be built (its `ca_file`).
    pub fn new(name: &str, spec: Arc<UserSpec>) -> Result<Self, BuildError> {
        let (hs256, jwks) = match spec.jwt.as_ref().map(|j| &j.key) {
            None => (None, None),
            Some(JwtKey::Hs256(src)) => {
                let key = read_hs256(name, src);
                if let Err(why) = &key {
                    tracing::error!(token = %name, error = %why, "user token secret unavailable; its tokens are refused");
                }
                (
                    Some(Hs256 {
                        source: src.clone(),
                        current: ArcSwap::from_pointee(key),
                    }),
                    None,
                )
            }
            Some(JwtKey::Jwks {
                url,
                ca_file,
                min_interval,
            }) => {
                let client = crate::upstream::build(ca_file.as_deref(), Duration::from_secs(5))?;
                let source = HttpJwks {
                    url: url.clone(),
                    client,
                };
                (
                    None,
                    Some(Arc::new(Jwks::new(
                        url.to_string(),
                        Box::new(source),
                        *min_interval,
                    ))),
                )
            }
        };
        Ok(UserVerifier {
            name: name.to_string(),
            spec,
            hs256,
            jwks,
        })
    }

    /// Re-reads the HS256 secret (only a `file:` one when `files_only`) and
    /// swaps it in if it changed. Returns whether it changed.
    pub fn reread_secret(&self, files_only: bool) -> bool {
        let Some(h) = &self.hs256 else {
            return false;
        };
        if files_only && !matches!(h.source, ValueSource::File(_)) {
            return false;
        }
        let next = read_hs256(&self.name, &h.source);
        let unchanged = match (&**h.current.load(), &next) {
            (Ok((a, _)), Ok((b, _))) => a.ct_eq(b.expose()),
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if unchanged {
            return false;
        }
        match &next {
            Ok(_) => tracing::info!(token = %self.name, "user token jwt secret re-read"),
            Err(why) => {
                tracing::error!(token = %self.name, error = %why, "user token secret unavailable; its tokens are refused")
            }
        }
        h.current.store(Arc::new(next));
        true
    }

    pub fn last_error(&self) -> Option<Unverifiable> {
        if let Some(h) = &self.hs256 {
            return h.current.load().as_ref().as_ref().err().cloned();
        }
        self.jwks
            .as_ref()
            .and_then(|j| lock(&j.state).last_error.clone())
            .map(Unverifiable::Jwks)
    }

    /// Accepts the caller's value, or says why not.
    pub async fn check(&self, value: &str) -> Result<(), Rejection> {
        let Some(jwt) = &self.spec.jwt else {
            return Ok(());
        };
        let header =
            jsonwebtoken::decode_header(value).map_err(|_| Rejection::Invalid("not a JWT"))?;
        let (key, alg) = match (&self.hs256, &self.jwks) {
            (Some(h), _) => match &**h.current.load() {
                Ok((_, k)) => (k.clone(), Algorithm::HS256),
                Err(why) => return Err(Rejection::Unverifiable(why.clone())),
            },
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
            (None, None) => return Err(Rejection::Unverifiable(Unverifiable::NoKey)),
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

fn pick(set: &JwkSet, kid: Option<&str>) -> Option<DecodingKey> {
    let jwk = match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }?;
    DecodingKey::from_jwk(jwk).ok()
}

/// `at + d`, saturating instead of panicking.
fn after(at: Instant, d: Duration) -> Instant {
    crate::clock::later_by_first_fit(at, &[d, JWKS_TTL])
}

/// What a caller does after looking at the state.
enum Step {
    Done(Result<DecodingKey, Rejection>),
    Wait(watch::Receiver<()>),
}

impl Jwks {
    fn new(url: String, source: Box<dyn JwksSource>, min_interval: Duration) -> Self {
        Jwks {
            url,
            source,
            min_interval,
            state: Mutex::new(JwksState::default()),
        }
    }

    /// The key from whatever set is held (stale included), or why not.
    fn from_cache(st: &JwksState, kid: Option<&str>) -> Result<DecodingKey, Rejection> {
        match (&st.set, &st.last_error) {
            (Some(set), _) => pick(set, kid).ok_or(Rejection::Invalid("unknown key id")),
            (None, Some(why)) => Err(Rejection::Unverifiable(why.clone().into())),
            (None, None) => Err(Rejection::Unverifiable(Unverifiable::NoJwksYet)),
        }
    }

    async fn key_for(self: &Arc<Self>, kid: Option<&str>) -> Result<DecodingKey, Rejection> {
        let step = {
            let mut st = lock(&self.state);
            let now = Instant::now();
            let fresh = st.fetched_at.is_some_and(|at| now < after(at, JWKS_TTL));
            if fresh && let Some(k) = st.set.as_deref().and_then(|s| pick(s, kid)) {
                return Ok(k);
            }
            match &st.inflight {
                Some(rx) => Step::Wait(rx.clone()),
                None if st.next_allowed.is_none_or(|at| now >= at) => {
                    Step::Wait(self.start_fetch(&mut st))
                }
                None => Step::Done(Self::from_cache(&st, kid)),
            }
        };
        match step {
            Step::Done(result) => result,
            Step::Wait(mut rx) => {
                // Completes when the fetch task drops its sender: exactly
                // one fetch, never a queue of them.
                let _ = rx.changed().await;
                Self::from_cache(&lock(&self.state), kid)
            }
        }
    }

    /// Starts the one fetch in its own task (a caller that goes away does
    /// not cancel it for the others); the caller holds the state lock.
    fn start_fetch(self: &Arc<Self>, st: &mut JwksState) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        st.inflight = Some(rx.clone());
        st.downloads += 1;
        let me = Arc::clone(self);
        let download = self.source.download();
        tokio::spawn(async move {
            let result = download.await;
            {
                let mut st = lock(&me.state);
                let now = Instant::now();
                match result {
                    Ok(set) => {
                        st.set = Some(Arc::new(set));
                        st.fetched_at = Some(now);
                        st.failures = 0;
                        st.last_error = None;
                        st.next_allowed = Some(after(now, me.min_interval));
                    }
                    Err(why) => {
                        st.failures += 1;
                        let wait = backoff(st.failures, jitter());
                        tracing::warn!(url = %me.url, error = %why, retry_in_ms = super::refresh::log_ms(wait), "JWKS fetch failed");
                        st.last_error = Some(why);
                        st.next_allowed = Some(after(now, wait));
                    }
                }
                st.inflight = None;
            }
            drop(tx);
        });
        rx
    }
}

async fn download(url: http::Uri, client: HttpClient) -> Result<JwkSet, JwksError> {
    let req = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(crate::body::Body::empty())
        .map_err(|_| JwksError::Request)?;
    let resp = tokio::time::timeout(JWKS_TIMEOUT, client.request(req))
        .await
        .map_err(|_| JwksError::Timeout)?
        .map_err(|_| JwksError::Unreachable)?;
    if !resp.status().is_success() {
        return Err(JwksError::Status(resp.status()));
    }
    let body = crate::body::read_at_most(resp.into_body(), 1 << 20)
        .await
        .map_err(|_| JwksError::Unreadable)?;
    serde_json::from_slice(&body).map_err(|_| JwksError::NotJwkSet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// Answers a set holding the symmetric key `k1` (or fails while
    /// `failing`), after `delay` of (paused) time.
    struct Script {
        calls: Arc<AtomicU32>,
        failing: Arc<AtomicBool>,
        delay: Duration,
    }

    impl JwksSource for Script {
        fn download(&self) -> JwksFuture {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let (failing, delay) = (self.failing.load(Ordering::SeqCst), self.delay);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if failing {
                    return Err(JwksError::Status(http::StatusCode::SERVICE_UNAVAILABLE));
                }
                serde_json::from_value(serde_json::json!({
                    "keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0LWtleS1ieXRlcw"}]
                }))
                .map_err(|_| JwksError::NotJwkSet)
            })
        }
    }

    fn jwks(failing: bool, delay: Duration) -> (Arc<Jwks>, Arc<AtomicU32>, Arc<AtomicBool>) {
        let calls = Arc::new(AtomicU32::new(0));
        let flag = Arc::new(AtomicBool::new(failing));
        let j = Jwks::new(
            "http://idp.test/jwks".into(),
            Box::new(Script {
                calls: Arc::clone(&calls),
                failing: Arc::clone(&flag),
                delay,
            }),
            Duration::from_secs(30),
        );
        (Arc::new(j), calls, flag)
    }

    async fn burst(j: &Arc<Jwks>, kid: &str, n: usize) -> Vec<Result<(), Rejection>> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (j, kid) = (Arc::clone(j), kid.to_string());
            tasks.push(tokio::spawn(async move {
                j.key_for(Some(&kid)).await.map(|_| ())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("join"));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_fetch_at_most_once_per_min_interval() {
        let (j, calls, _) = jwks(false, Duration::from_millis(50));
        let out = burst(&j, "made-up", 50).await;
        assert!(
            out.iter()
                .all(|r| *r == Err(Rejection::Invalid("unknown key id")))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "50 concurrent: one fetch");
        for i in 0..100 {
            assert!(j.key_for(Some(&format!("kid-{i}"))).await.is_err());
        }
        assert!(j.key_for(Some("k1")).await.is_ok(), "known kids still pass");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "inside the interval");
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(j.key_for(Some("other")).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one more after it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_endpoint_is_backed_off_and_callers_never_queue() {
        // Each fetch takes 10 s (a hanging endpoint, up to the timeout).
        let (j, calls, failing) = jwks(true, Duration::from_secs(10));
        let started = Instant::now();
        let out = burst(&j, "k1", 30).await;
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(Rejection::Unverifiable(_))))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "30 callers, one fetch");
        assert!(
            started.elapsed() < Duration::from_secs(11),
            "nobody waited behind more than one fetch"
        );
        // Inside the backoff window callers are answered at once.
        let t0 = Instant::now();
        assert!(j.key_for(Some("k1")).await.is_err());
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A request every 100 ms for a minute: 10 s per attempt plus a
        // backoff of 1, 2, 4, 8 s (±20 %) allows five fetches, not 600.
        let until = started + Duration::from_secs(60);
        while Instant::now() < until {
            let _ = j.key_for(Some("k1")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n = calls.load(Ordering::SeqCst);
        assert!((4..=6).contains(&n), "{n} fetches in a minute");
        // Recovery.
        failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(j.key_for(Some("k1")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_set_is_served_while_the_endpoint_fails() {
        let (j, calls, failing) = jwks(false, Duration::ZERO);
        assert!(j.key_for(Some("k1")).await.is_ok());
        failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(JWKS_TTL + Duration::from_secs(1)).await;
        assert!(j.key_for(Some("k1")).await.is_ok(), "stale but usable");
        assert!(j.key_for(Some("k1")).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(lock(&j.state).last_error.is_some());
    }

    fn hs256(secret: &str) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("jwt")
    }

    #[tokio::test]
    async fn a_rewritten_secret_file_replaces_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("jwt.secret");
        std::fs::write(&path, "first-secret\n").expect("write");
        let spec = Arc::new(UserSpec {
            from_header: http::HeaderName::from_static("keygate-token-u"),
            jwt: Some(JwtSpec {
                key: JwtKey::Hs256(ValueSource::File(path.clone())),
                issuer: None,
                audience: None,
            }),
        });
        let v = UserVerifier::new("u", spec).expect("verifier");
        assert!(v.check(&hs256("first-secret")).await.is_ok());
        assert!(!v.reread_secret(true), "unchanged: nothing swapped");
        std::fs::write(&path, "second-secret").expect("write");
        assert!(v.reread_secret(true));
        assert!(v.check(&hs256("first-secret")).await.is_err());
        assert!(v.check(&hs256("second-secret")).await.is_ok());
        std::fs::remove_file(&path).expect("rm");
        assert!(v.reread_secret(true));
        assert!(matches!(
            v.check(&hs256("second-secret")).await,
            Err(Rejection::Unverifiable(_))
        ));
        assert!(
            v.last_error()
                .is_some_and(|e| e.to_string().contains("does not exist"))
        );
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("second-secret") && !dbg.contains("115, 101, 99"));
    }
}
