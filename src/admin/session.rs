//! Console sessions (SPEC §9). An operator signs in once with an admin key;
//! keygate answers with a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie, and the pages call `/api/v1` with that cookie
//! instead of a key header. The key itself is never stored by the browser.
//!
//! - **Server-side.** Sessions live in this replica's memory, keyed by the
//!   SHA-256 of the id (the id itself is kept nowhere), so sign-out ends a
//!   session at once and a restart ends them all. Behind a load balancer
//!   the console needs sticky sessions (as Kong Manager's do).
//! - **Expiry.** Idle for [`IDLE`] or older than [`ABSOLUTE`] (OWASP's
//!   session guidance: 15–30 min idle, a working day absolute).
//! - **The key stays in charge.** Each use re-checks the key the session
//!   was opened with (revoked, expired, client gone, no longer admin), so
//!   revoking the key ends its sessions on the next request.
//! - **CSRF.** A synchronizer token per session, handed out by sign-in and
//!   `GET /console/session` (readable by same-origin script only), must
//!   come back in `X-CSRF-Token` on every method that is not GET/HEAD;
//!   compared in constant time. And a cookie-authenticated request whose
//!   `Sec-Fetch-Site` says another origin made it is refused outright:
//!   `SameSite` treats another port of the same host (the proxy listener)
//!   as the same site, so it alone would not keep pages the proxy serves
//!   away from the admin API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use http::header::{COOKIE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The cookie's name.
pub const COOKIE_NAME: &str = crate::auth::caller::SESSION_COOKIE;
/// Where state-changing requests return the session's CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");
/// A session unused for this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at once; signing in past it ends the one idle longest,
/// so a script signing in in a loop cannot grow memory without bound.
pub const MAX_SESSIONS: usize = 1000;

/// Why a session cannot be used. `crate::error` maps each to its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Unknown, signed out, idle or past its absolute expiry (or its key
    /// no longer admits it): sign in again.
    #[error("the console session has ended")]
    Ended,
    /// Two different session cookies: refuse rather than pick one (a
    /// sibling page on the same site can plant a cookie).
    #[error("more than one keygate session cookie")]
    Ambiguous,
    /// A state-changing request without the session's CSRF token, or made
    /// by another origin.
    #[error("{0}")]
    Csrf(&'static str),
}

/// One signed-in operator.
#[derive(Debug)]
struct Session {
    /// SHA-256 of the key the session was opened with: the key is looked
    /// up again on each use, by digest, as the proxy looks it up.
    key_digest: [u8; 32],
    key: KeyName,
    csrf: Secret,
    opened: Instant,
    opened_at: SystemTime,
    last_seen: Instant,
}

/// The key a session was opened with, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName {
    pub id: String,
    pub name: String,
    pub client: String,
}

/// What a request learns about the session it presented.
#[derive(Debug, Clone)]
pub struct Current {
    /// SHA-256 of the session id: how sign-out names it.
    pub id_digest: [u8; 32],
    pub key_digest: [u8; 32],
    pub key: KeyName,
    pub csrf: Secret,
    pub opened_at: SystemTime,
    /// When it ends if nothing renews it sooner: the absolute limit.
    pub expires_at: SystemTime,
}

/// A new session: the id for the cookie (never stored) and its state.
#[derive(Debug)]
pub struct Opened {
    pub id: Secret,
    pub current: Current,
}

/// Every session of this replica.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id_digest: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// 32 random bytes as 64 hex digits.
fn random_token() -> Result<String, getrandom::Error> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) < IDLE
            && now.saturating_duration_since(self.opened) < ABSOLUTE
    }

    fn current(&self, id_digest: [u8; 32]) -> Current {
        Current {
            id_digest,
            key_digest: self.key_digest,
            key: self.key.clone(),
            csrf: self.csrf.clone(),
            opened_at: self.opened_at,
            expires_at: self.opened_at + ABSOLUTE,
        }
    }
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A session for the key with `key_digest` (already checked: live,
    /// admin). Fails only if the OS has no randomness to give.
    pub fn open(
        &self,
        key_digest: [u8; 32],
        key: KeyName,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Opened, getrandom::Error> {
        let id = random_token()?;
        let session = Session {
            key_digest,
            key,
            csrf: Secret::new(random_token()?),
            opened: now,
            opened_at: wall,
            last_seen: now,
        };
        let id_digest = digest(&id);
        let current = session.current(id_digest);
        let mut all = crate::lock::lock(&self.by_id_digest);
        all.retain(|_, s| s.alive(now));
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all.iter().min_by_key(|(_, s)| s.last_seen).map(|(d, _)| *d)
        {
            all.remove(&oldest);
        }
        all.insert(id_digest, session);
        Ok(Opened {
            id: Secret::new(id),
            current,
        })
    }

    /// The live session `id` names; an ended one is forgotten. Not yet
    /// renewed: only a request that passes every check does that
    /// ([`Sessions::renew`]), so refused requests (another origin's, say)
    /// cannot keep a session alive.
    pub fn resume(&self, id: &str, now: Instant) -> Result<Current, SessionError> {
        let id_digest = digest(id);
        let mut all = crate::lock::lock(&self.by_id_digest);
        let session = all.get(&id_digest).ok_or(SessionError::Ended)?;
        if !session.alive(now) {
            all.remove(&id_digest);
            return Err(SessionError::Ended);
        }
        Ok(session.current(id_digest))
    }

    /// Restarts the idle clock of a session a request was admitted with.
    pub fn renew(&self, id_digest: &[u8; 32], now: Instant) {
        if let Some(s) = crate::lock::lock(&self.by_id_digest).get_mut(id_digest) {
            s.last_seen = s.last_seen.max(now);
        }
    }

    /// Ends one session (sign-out, or its key no longer admits it).
    pub fn end(&self, id_digest: &[u8; 32]) {
        crate::lock::lock(&self.by_id_digest).remove(id_digest);
    }

    /// How many sessions are held (live or not yet swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        crate::lock::lock(&self.by_id_digest).len()
    }
}

/// The session id a request's `Cookie` headers carry, if any. HTTP/2 may
/// split cookies over several headers (RFC 9113 §8.2.3), so all are read.
/// Two different values are refused, never chosen between.
pub fn presented(headers: &HeaderMap) -> Result<Option<&str>, SessionError> {
    let mut found: Option<&str> = None;
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((name, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if name != COOKIE_NAME {
                continue;
            }
            match found {
                Some(prev) if prev != v => return Err(SessionError::Ambiguous),
                _ => found = Some(v),
            }
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// The checks a cookie-authenticated request must pass before its session
/// is used: made by the console's own origin, and for anything but
/// GET/HEAD carrying the session's CSRF token.
pub fn check_request(
    method: &Method,
    headers: &HeaderMap,
    csrf: &Secret,
) -> Result<(), SessionError> {
    let safe = method == Method::GET || method == Method::HEAD;
    same_origin(headers, safe)?;
    if safe {
        return Ok(());
    }
    let mut sent = headers.get_all(&CSRF_HEADER).iter();
    match (sent.next(), sent.next()) {
        (Some(v), None) if v.to_str().is_ok_and(|t| csrf.ct_eq(t)) => Ok(()),
        (None, _) => Err(SessionError::Csrf(
            "send the session's CSRF token in `X-CSRF-Token` (from sign-in or GET /console/session)",
        )),
        _ => Err(SessionError::Csrf(
            "the `X-CSRF-Token` header does not match this session",
        )),
    }
}

/// Browsers send `Sec-Fetch-Site` on every request (Fetch Metadata); only
/// `same-origin` may use a session, and `none` (the operator typed the
/// address) for a `safe` read. Absent means a client that is not a
/// browser, or an old one, which the CSRF token still covers.
pub fn same_origin(headers: &HeaderMap, safe: bool) -> Result<(), SessionError> {
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin") => Ok(()),
        Some(b"none") if safe => Ok(()),
        Some(_) => Err(SessionError::Csrf(
            "a console session is used only by pages of the console's own origin",
        )),
    }
}

/// `Set-Cookie` for a new session. `Secure` when the admin listener is
/// reached over TLS (its own, or a TLS front proxy's that says so in
/// `X-Forwarded-Proto`), so the browser never sends the id in clear text
/// once it has been given over TLS.
pub fn set_cookie(
    id: &Secret,
    secure: bool,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut v = format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        id.expose(),
        ABSOLUTE.as_secs()
    );
    if secure {
        v.push_str("; Secure");
    }
    let mut value = HeaderValue::from_str(&v)?;
    value.set_sensitive(true);
    Ok(value)
}

/// `Set-Cookie` that makes the browser drop the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "keygate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure",
        )
    } else {
        HeaderValue::from_static("keygate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// Whether the request reached keygate over TLS: `X-Forwarded-Proto:
/// https` from a TLS front proxy. Trusting it is safe in the one use made
/// of it: it can only add `Secure`, which restricts the cookie.
pub fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The admin layer's own refusals map here rather than in `error.rs`,
/// which sits below `admin` and cannot name its types.
impl From<SessionError> for crate::error::GatewayError {
    fn from(e: SessionError) -> Self {
        use crate::error::GatewayError;
        match e {
            SessionError::Ended => GatewayError::SessionEnded,
            SessionError::Ambiguous => {
                GatewayError::BadRequest("send one keygate_session cookie, not two".into())
            }
            SessionError::Csrf(why) => GatewayError::CsrfRejected(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(s: &Sessions, now: Instant) -> Opened {
        let key = KeyName {
            id: "key_1".into(),
            name: "laptop".into(),
            client: "ops".into(),
        };
        s.open([7; 32], key, now, SystemTime::UNIX_EPOCH)
            .expect("random")
    }

    #[test]
    fn a_session_resumes_until_idle_or_absolute_expiry() {
        let s = Sessions::new();
        let t0 = Instant::now();
        let o = open(&s, t0);
        let id = o.id.expose().to_string();
        assert_eq!(id.len(), 64);
        assert_eq!(
            s.resume(&id, t0 + IDLE / 2).map(|c| c.key.id),
            Ok("key_1".into())
        );
        // Resumed but not renewed (a refused request): it ends at IDLE.
        assert!(s.resume(&id, t0 + IDLE + IDLE / 4).is_err());
        let o = open(&s, t0);
        let id = o.id.expose().to_string();
        s.renew(&o.current.id_digest, t0 + IDLE / 2);
        // Renewed at IDLE/2, so alive at IDLE + IDLE/4.
        assert!(s.resume(&id, t0 + IDLE + IDLE / 4).is_ok());
        // Idle for a whole IDLE: ended, and forgotten.
        assert_eq!(
            s.resume(&id, t0 + 3 * IDLE).map(|_| ()),
            Err(SessionError::Ended)
        );
        assert_eq!(s.len(), 0);

        // Busy all along, it still ends at ABSOLUTE.
        let o = open(&s, t0);
        let id = o.id.expose().to_string();
        let mut t = t0;
        while t < t0 + ABSOLUTE - IDLE / 2 {
            t += IDLE / 2;
            assert!(s.resume(&id, t).is_ok(), "{:?}", t - t0);
            s.renew(&o.current.id_digest, t);
        }
        assert_eq!(
            s.resume(&id, t0 + ABSOLUTE).map(|_| ()),
            Err(SessionError::Ended)
        );
    }

    #[test]
    fn sign_out_ends_the_session_and_unknown_ids_are_refused() {
        let s = Sessions::new();
        let t0 = Instant::now();
        let o = open(&s, t0);
        let id = o.id.expose().to_string();
        assert_eq!(
            s.resume("0".repeat(64).as_str(), t0).map(|_| ()),
            Err(SessionError::Ended)
        );
        s.end(&o.current.id_digest);
        assert_eq!(s.resume(&id, t0).map(|_| ()), Err(SessionError::Ended));
    }

    #[test]
    fn sessions_are_bounded_by_dropping_the_longest_idle() {
        let s = Sessions::new();
        let t0 = Instant::now();
        let first = open(&s, t0);
        for i in 1..MAX_SESSIONS {
            open(&s, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        open(&s, t0 + Duration::from_secs(5));
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(
            s.resume(first.id.expose(), t0 + Duration::from_secs(5))
                .is_err()
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn the_cookie_is_read_from_every_cookie_header_and_two_values_are_refused() {
        assert_eq!(presented(&headers(&[])), Ok(None));
        assert_eq!(
            presented(&headers(&[("cookie", "a=1; keygate_session=abc; b=2")])),
            Ok(Some("abc"))
        );
        assert_eq!(
            presented(&headers(&[
                ("cookie", "a=1"),
                ("cookie", "keygate_session=abc")
            ])),
            Ok(Some("abc"))
        );
        assert_eq!(
            presented(&headers(&[("cookie", "keygate_session=")])),
            Ok(None)
        );
        assert_eq!(
            presented(&headers(&[(
                "cookie",
                "keygate_session=a; keygate_session=b"
            )])),
            Err(SessionError::Ambiguous)
        );
        assert_eq!(
            presented(&headers(&[("cookie", "xkeygate_session=a")])),
            Ok(None)
        );
    }

    #[test]
    fn unsafe_methods_need_the_csrf_token_and_other_origins_are_refused() {
        let csrf = Secret::new("t0ken");
        let ok = |m: Method, h: &[(&str, &str)]| check_request(&m, &headers(h), &csrf).is_ok();
        assert!(ok(Method::GET, &[]));
        assert!(ok(Method::GET, &[("sec-fetch-site", "same-origin")]));
        assert!(!ok(Method::GET, &[("sec-fetch-site", "same-site")]));
        assert!(!ok(Method::GET, &[("sec-fetch-site", "cross-site")]));
        assert!(ok(Method::GET, &[("sec-fetch-site", "none")]));
        assert!(!ok(
            Method::POST,
            &[("sec-fetch-site", "none"), ("x-csrf-token", "t0ken")]
        ));
        assert!(!ok(Method::POST, &[]));
        assert!(!ok(Method::DELETE, &[("x-csrf-token", "wrong")]));
        assert!(!ok(
            Method::PUT,
            &[("x-csrf-token", "t0ken"), ("x-csrf-token", "t0ken")]
        ));
        assert!(ok(Method::PATCH, &[("x-csrf-token", "t0ken")]));
        assert!(!ok(
            Method::POST,
            &[("x-csrf-token", "t0ken"), ("sec-fetch-site", "cross-site")]
        ));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let id = Secret::new("abc");
        let plain = set_cookie(&id, false).expect("value");
        let plain = plain.to_str().expect("ascii");
        assert!(plain.starts_with("keygate_session=abc; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = set_cookie(&id, true).expect("value");
        assert!(tls.to_str().expect("ascii").ends_with("; Secure"));
        assert!(tls.is_sensitive());
        assert!(
            clear_cookie(true)
                .to_str()
                .expect("ascii")
                .contains("Max-Age=0")
        );
    }
}
