//! The web console (SPEC §9): static files compiled into the binary, served
//! on the admin listener under `/console/`, and the session endpoints its
//! sign-in uses. The pages call the same `/api/v1` routes as every other
//! client, authenticated by the session cookie instead of a key header.

pub mod assets;

use std::time::{Instant, SystemTime};

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::api::read_json;
use super::reply::{IntoReply, Json, json, with_type};
use super::router::Ctx;
use super::session::{self, SessionError};
use crate::auth::caller;
use crate::body::Body;
use crate::clock::rfc3339;
use crate::error::GatewayError;
use crate::secret::Secret;

/// `GET /console`: the console lives under `/console/`, where its
/// relative links resolve.
pub async fn redirect(_cx: Ctx) -> Result<Redirect, GatewayError> {
    Ok(Redirect("/console/"))
}

/// `GET /console/`: the page every console view starts from.
pub async fn index(_cx: Ctx) -> Result<Page, GatewayError> {
    assets::ASSETS
        .first()
        .map(|a| Page(Asset(a)))
        .ok_or(GatewayError::Internal)
}

/// `GET /console/{asset}`: one of the console's files.
pub async fn asset(cx: Ctx) -> Result<Asset, GatewayError> {
    assets::find(cx.params.get("asset")?)
        .map(Asset)
        .ok_or_else(|| GatewayError::NotFound("no such console file".into()))
}

/// The sign-in body: the admin key, pasted once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// What the console knows about its session: who is signed in, until
/// when, and the CSRF token its state-changing requests send back.
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub client: String,
    pub key_id: String,
    pub key_name: String,
    #[serde(serialize_with = "expose")]
    pub csrf_token: Secret,
    pub created_at: String,
    pub expires_at: String,
    pub idle_timeout_seconds: u64,
}

/// The CSRF token is written out to the session's own page only.
fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn info(current: &session::Current) -> SessionInfo {
    SessionInfo {
        client: current.key.client.clone(),
        key_id: current.key.id.clone(),
        key_name: current.key.name.clone(),
        csrf_token: current.csrf.clone(),
        created_at: rfc3339(current.opened_at),
        expires_at: rfc3339(current.expires_at),
        idle_timeout_seconds: session::IDLE.as_secs(),
    }
}

/// Whether the session cookie gets `Secure`: the admin listener has TLS
/// of its own (`admin.tls`), or a TLS front proxy says it has.
fn secure(cx: &Ctx) -> bool {
    cx.tls || session::forwarded_https(cx.req.headers())
}

/// `POST /console/session`: sign in with an admin key. Only a JSON body
/// is read: a cross-site form cannot send one without a CORS preflight,
/// which keygate never answers, so no page elsewhere can sign a browser
/// in to an attacker's session.
pub async fn sign_in(cx: Ctx) -> Result<SignedIn, GatewayError> {
    let headers = cx.req.headers();
    session::same_origin(headers, false).map_err(GatewayError::from)?;
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let secure = secure(&cx);
    let shared = std::sync::Arc::clone(&cx.shared);
    // Read (at most 64 KiB) before judging the type, so an oversized body
    // is 413 here as on every route that takes one. A `text/plain` form
    // can carry a body that parses as JSON: the type decides.
    let body: SignIn = read_json(cx.req).await?;
    if !json {
        return Err(GatewayError::BadRequest(
            "send the key as JSON: `Content-Type: application/json`, body {\"key\": \"…\"}".into(),
        ));
    }
    let snap = shared.snapshot();
    let admitted = caller::authenticate_key(snap.keyring(shared.keys()), body.key.trim())
        .map_err(GatewayError::from)
        .and_then(|record| super::admin_actor(&snap, &record).map(|_| record));
    let record = match admitted {
        Ok(r) => r,
        Err(e) => {
            if let Some(reason) = e.code().auth_failure() {
                shared.metrics().auth_failure(reason);
            }
            return Err(e);
        }
    };
    let opened = cx
        .sessions
        .open(
            record.digest,
            session::KeyName {
                id: record.id.clone(),
                name: record.name.clone(),
                client: record.client.clone(),
            },
            Instant::now(),
            SystemTime::now(),
        )
        .map_err(|_| GatewayError::Internal)?;
    tracing::info!(client = %record.client, key_id = %record.id, "console sign-in");
    let cookie = session::set_cookie(&opened.id, secure).map_err(|_| GatewayError::Internal)?;
    Ok(SignedIn {
        cookie,
        info: info(&opened.current),
    })
}

/// `GET /console/session`: the signed-in operator and the CSRF token, for
/// a page (re)loaded with the cookie already set.
pub async fn current(cx: Ctx) -> Result<Json<SessionInfo>, GatewayError> {
    let current = cx.session.as_ref().ok_or(SessionError::Ended)?;
    Ok(Json(info(current)))
}

/// `DELETE /console/session`: sign out; the session ends on the server,
/// and the browser is told to drop the cookie.
pub async fn sign_out(cx: Ctx) -> Result<SignedOut, GatewayError> {
    let current = cx.session.as_ref().ok_or(SessionError::Ended)?;
    cx.sessions.end(&current.id_digest);
    tracing::info!(client = %current.key.client, key_id = %current.key.id, "console sign-out");
    Ok(SignedOut(session::clear_cookie(secure(&cx))))
}

/// `200` with one console file. `no-cache`: the browser revalidates, so
/// a new keygate's console is never mixed with an old one's cached files.
pub struct Asset(pub &'static assets::Asset);

/// The console's page: an [`Asset`], always HTML.
pub struct Page(pub Asset);

/// `308` to the console's canonical address.
pub struct Redirect(pub &'static str);

/// `201` with the session cookie and the session's details.
pub struct SignedIn {
    pub cookie: HeaderValue,
    pub info: SessionInfo,
}

/// `204` with the `Set-Cookie` that drops the cookie.
pub struct SignedOut(pub HeaderValue);

impl IntoReply for Asset {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut r = with_type(
            StatusCode::OK,
            Body::full(bytes::Bytes::from_static(self.0.bytes)),
            self.0.content_type,
        );
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(r)
    }
}

impl IntoReply for Page {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        self.0.into_reply()
    }
}

impl IntoReply for Redirect {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static(self.0));
        Ok(r)
    }
}

impl IntoReply for SignedIn {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut r = json(StatusCode::CREATED, &self.info)?;
        r.headers_mut().insert(SET_COOKIE, self.cookie);
        Ok(r)
    }
}

impl IntoReply for SignedOut {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(SET_COOKIE, self.0);
        Ok(r)
    }
}
