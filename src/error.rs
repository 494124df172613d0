//! Every error keygate itself answers with, and the ONLY function that turns
//! one into a response. The mapping is an exhaustive `match` (no `_ =>`), so
//! a new variant cannot ship without a status and a code. Messages are fixed
//! text or names from the config; they never carry a secret, an upstream
//! error's text, or internal detail.
//!
//! Domain code returns its own error enums and never builds a
//! `GatewayError`; the `From` impls at the end of this file are the one
//! place they become answers, each an exhaustive `match` too. So this
//! module imports those enums, and they never import it.
//!
//! Metrics and the access log take an [`ErrorCode`], a value to match on,
//! never the code's text.

use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};

use crate::auth::keys::KeyError;
use crate::body::Body;
use crate::metrics::AuthFailure;
use crate::objects::{ChangeError, Problem};
use crate::store::StoreError;
use crate::store::sealed::SealError;
use crate::tokens::values::TokenValueError;

pub const KEYGATE_ERROR: HeaderName = HeaderName::from_static("keygate-error");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// A target that could escape the connector, a malformed request or
    /// admin body. The text says what was wrong, never echoing secrets.
    BadRequest(String),
    MissingApiKey,
    InvalidApiKey,
    ApiKeyExpired,
    MissingUserToken(String),
    InvalidUserToken(String),
    Forbidden,
    /// An `auth: none` sidecar port refused a request a browser could have
    /// sent for a web page (foreign `Host`, `Origin`, `Sec-Fetch-Site`).
    /// The text is fixed and says which rule applied.
    NotLocal(&'static str),
    /// Admin API: the key is valid but none of its roles has `admin: true`.
    AdminForbidden,
    /// Admin API: the console session cookie names no live session
    /// (signed out, expired, or its key no longer admits it).
    SessionEnded,
    /// Admin API: a cookie-authenticated request without the session's
    /// CSRF token, or from another origin. The text is fixed.
    CsrfRejected(&'static str),
    UnknownConnector,
    /// Admin API: no such key, token or route.
    NotFound(String),
    /// Admin API: the path exists with these methods only.
    MethodNotAllowed(Vec<Method>),
    /// Admin API: the request conflicts with the current state.
    Conflict(String),
    /// Admin API: the change would end the last live key that can use the
    /// admin API, locking every operator out; refused unless forced.
    LastAdminKey,
    /// Admin API: the object comes from the config file (or is built in)
    /// and is read-only here. The text names the file.
    ConfigOwned(String),
    /// Admin API: an object of that name exists.
    AlreadyExists(String),
    /// Admin API: deleting it would leave other objects naming it; `token`
    /// picks the code (`token_in_use` for a token used by connectors).
    InUse {
        token: bool,
        message: String,
    },
    /// Admin API: `If-Match` names another version (RFC 9110 §13.1.1).
    PreconditionFailed(String),
    /// Admin API: the change breaks a config rule; one problem each, with
    /// the JSON pointer of its field.
    Unprocessable(Vec<Problem>),
    /// Admin API: the change has effects the request must confirm
    /// (`?confirm=true`).
    ConfirmationRequired(String),
    BodyTooLarge,
    UpstreamUnavailable,
    CredentialUnavailable(String),
    /// A replica cut off from the store past its lease (SPEC §8): it can
    /// no longer vouch that an API key was not revoked elsewhere.
    StoreUnavailable,
    UpstreamTimeout,
    /// A bug or an I/O failure inside keygate; details go to the log only.
    Internal,
}

/// The `code` of an error answer (`error.code` and `Keygate-Error`, SPEC
/// §3). Several variants of [`GatewayError`] share one (every refusal by
/// role is `forbidden`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    MissingApiKey,
    InvalidApiKey,
    ApiKeyExpired,
    MissingUserToken,
    InvalidUserToken,
    Forbidden,
    SessionExpired,
    CsrfRejected,
    UnknownConnector,
    NotFound,
    MethodNotAllowed,
    Conflict,
    LastAdminKey,
    ConfigOwned,
    AlreadyExists,
    TokenInUse,
    InUse,
    PreconditionFailed,
    ValidationFailed,
    ConfirmationRequired,
    BodyTooLarge,
    UpstreamUnavailable,
    CredentialUnavailable,
    StoreUnavailable,
    UpstreamTimeout,
    Internal,
}

impl ErrorCode {
    /// The code as sent to the client.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MissingApiKey => "missing_api_key",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::ApiKeyExpired => "api_key_expired",
            ErrorCode::MissingUserToken => "missing_user_token",
            ErrorCode::InvalidUserToken => "invalid_user_token",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::CsrfRejected => "csrf_rejected",
            ErrorCode::UnknownConnector => "unknown_connector",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LastAdminKey => "last_admin_key",
            ErrorCode::ConfigOwned => "config_owned",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::TokenInUse => "token_in_use",
            ErrorCode::InUse => "in_use",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::ConfirmationRequired => "confirmation_required",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::CredentialUnavailable => "credential_unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// The `reason` of `keygate_auth_failures_total` when this code refuses
    /// a caller by its API key or its roles; `None` for everything else
    /// (a bad request, a missing user token, an upstream failure ...).
    pub const fn auth_failure(self) -> Option<AuthFailure> {
        match self {
            ErrorCode::MissingApiKey => Some(AuthFailure::MissingApiKey),
            ErrorCode::InvalidApiKey => Some(AuthFailure::InvalidApiKey),
            ErrorCode::ApiKeyExpired => Some(AuthFailure::ApiKeyExpired),
            ErrorCode::Forbidden => Some(AuthFailure::Forbidden),
            ErrorCode::BadRequest
            | ErrorCode::SessionExpired
            | ErrorCode::CsrfRejected
            | ErrorCode::MissingUserToken
            | ErrorCode::InvalidUserToken
            | ErrorCode::UnknownConnector
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Conflict
            | ErrorCode::LastAdminKey
            | ErrorCode::ConfigOwned
            | ErrorCode::AlreadyExists
            | ErrorCode::TokenInUse
            | ErrorCode::InUse
            | ErrorCode::PreconditionFailed
            | ErrorCode::ValidationFailed
            | ErrorCode::ConfirmationRequired
            | ErrorCode::BodyTooLarge
            | ErrorCode::UpstreamUnavailable
            | ErrorCode::CredentialUnavailable
            | ErrorCode::StoreUnavailable
            | ErrorCode::UpstreamTimeout
            | ErrorCode::Internal => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GatewayError {
    /// Status, code and client-facing message.
    pub fn parts(&self) -> (StatusCode, ErrorCode, String) {
        use GatewayError::*;
        match self {
            BadRequest(m) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m.clone()),
            MissingApiKey => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::MissingApiKey,
                "send your keygate API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
                    .into(),
            ),
            InvalidApiKey => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidApiKey,
                "the API key is not valid".into(),
            ),
            ApiKeyExpired => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::ApiKeyExpired,
                "the API key has expired".into(),
            ),
            MissingUserToken(t) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::MissingUserToken,
                format!("user token `{t}` is required"),
            ),
            InvalidUserToken(t) => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidUserToken,
                format!("user token `{t}` is not valid"),
            ),
            Forbidden => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this API key's roles do not allow this connector, method or path".into(),
            ),
            NotLocal(m) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, (*m).to_string()),
            AdminForbidden => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this API key's roles do not grant admin access (it needs a role with `admin: true`)"
                    .into(),
            ),
            SessionEnded => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::SessionExpired,
                "the console session has ended (signed out, expired, or its key was revoked); sign in again".into(),
            ),
            CsrfRejected(m) => (StatusCode::FORBIDDEN, ErrorCode::CsrfRejected, (*m).to_string()),
            UnknownConnector => (
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownConnector,
                "no connector by that name".into(),
            ),
            NotFound(m) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, m.clone()),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this route does not accept that method".into(),
            ),
            Conflict(m) => (StatusCode::CONFLICT, ErrorCode::Conflict, m.clone()),
            LastAdminKey => (
                StatusCode::CONFLICT,
                ErrorCode::LastAdminKey,
                "this would leave no live key that can use the admin API; create another admin key first, or repeat with ?force=true (recovery: `keygate admin-key --reset`)"
                    .into(),
            ),
            ConfigOwned(m) => (StatusCode::CONFLICT, ErrorCode::ConfigOwned, m.clone()),
            AlreadyExists(m) => (StatusCode::CONFLICT, ErrorCode::AlreadyExists, m.clone()),
            InUse { token, message } => (
                StatusCode::CONFLICT,
                if *token {
                    ErrorCode::TokenInUse
                } else {
                    ErrorCode::InUse
                },
                message.clone(),
            ),
            PreconditionFailed(m) => (
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::PreconditionFailed,
                m.clone(),
            ),
            Unprocessable(problems) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
                match problems.as_slice() {
                    [one] => one.message.clone(),
                    many => format!("{} problems; see `problems`", many.len()),
                },
            ),
            ConfirmationRequired(m) => (
                StatusCode::CONFLICT,
                ErrorCode::ConfirmationRequired,
                m.clone(),
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                "the request body is over the limit".into(),
            ),
            UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamUnavailable,
                "the upstream could not be reached".into(),
            ),
            CredentialUnavailable(t) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::CredentialUnavailable,
                format!("token `{t}` has no usable value"),
            ),
            StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                "this replica cannot vouch for API keys: it has lost its key store; try another replica".into(),
            ),
            UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::UpstreamTimeout,
                "the upstream did not answer in time".into(),
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error".into(),
            ),
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.parts().1
    }

    /// The one error → response function.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        let (status, code, message) = self.parts();
        let mut body = serde_json::json!({
            "error": { "code": code.as_str(), "message": message, "request_id": request_id }
        });
        if let (GatewayError::Unprocessable(problems), Some(error)) = (self, body.get_mut("error"))
            && let Ok(list) = serde_json::to_value(problems)
            && let Some(map) = error.as_object_mut()
        {
            map.insert("problems".into(), list);
        }
        let mut resp = Response::new(Body::full(body.to_string()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(KEYGATE_ERROR, HeaderValue::from_static(code.as_str()));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(X_REQUEST_ID, v);
        }
        if matches!(
            self,
            GatewayError::MissingApiKey
                | GatewayError::InvalidApiKey
                | GatewayError::ApiKeyExpired
                | GatewayError::SessionEnded
        ) {
            h.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="keygate", error="invalid_token""#),
            );
        }
        // RFC 9110 §15.5.6: a 405 lists the methods the target supports.
        if let GatewayError::MethodNotAllowed(allow) = self {
            let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                h.insert(ALLOW, v);
            }
        }
        resp
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, code, msg) = self.parts();
        write!(f, "{} {code}: {msg}", status.as_u16())
    }
}

impl std::error::Error for GatewayError {}

impl From<crate::auth::caller::Refused> for GatewayError {
    fn from(r: crate::auth::caller::Refused) -> Self {
        use crate::auth::caller::Refused;
        match r {
            Refused::Missing => GatewayError::MissingApiKey,
            Refused::Invalid => GatewayError::InvalidApiKey,
            Refused::Expired => GatewayError::ApiKeyExpired,
            Refused::Ambiguous(why) => GatewayError::BadRequest(why.to_string()),
            Refused::Unvouched => GatewayError::StoreUnavailable,
        }
    }
}

/// Logs an internal failure (the client only ever sees `internal`).
fn internal(what: &'static str, e: &dyn std::error::Error) -> GatewayError {
    tracing::error!(error = %e, "{what}");
    GatewayError::Internal
}

/// Every store failure is ours, not the client's; the variant and its
/// text go to the log.
impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Create { .. }
            | StoreError::Open { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::Migration { .. }
            | StoreError::Sqlite(_)
            | StoreError::MalformedDigest { .. }
            | StoreError::MalformedRoles { .. }
            | StoreError::Poisoned
            | StoreError::PgUrl(_)
            | StoreError::PgTls(_)
            | StoreError::PgConnect { .. }
            | StoreError::PgMigration { .. }
            | StoreError::Postgres(_)
            | StoreError::PoolTimeout { .. }
            | StoreError::Timeout(_)
            | StoreError::Runtime(_)
            | StoreError::Damaged(_) => internal("store failure", &e),
        }
    }
}

impl From<SealError> for GatewayError {
    fn from(e: SealError) -> Self {
        match &e {
            SealError::Randomness(_) | SealError::Encrypt => internal("sealing failed", &e),
        }
    }
}

/// Key lifecycle refusals answer with their own text; failures of the
/// store, the randomness source or the key file are `internal`.
impl From<KeyError> for GatewayError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::BadDuration { .. }
            | KeyError::UnknownClient(_)
            | KeyError::BadName
            | KeyError::NoRoles
            | KeyError::UnknownRole(_)
            | KeyError::RoleNotHeld { .. }
            | KeyError::ZeroExpiry
            | KeyError::OverMaxTtl { .. }
            | KeyError::ExpiryTooLarge
            | KeyError::GraceTooLarge => GatewayError::BadRequest(e.to_string()),
            KeyError::NotFound(_) | KeyError::AlreadyRevoked(_) => {
                GatewayError::NotFound(e.to_string())
            }
            KeyError::DeclaredNotRevocable
            | KeyError::DeclaredNotRollable
            | KeyError::RevokedNotRollable
            | KeyError::ExpiredNotRollable
            | KeyError::AlreadyRolled { .. }
            | KeyError::EndedBeforeRoll => GatewayError::Conflict(e.to_string()),
            KeyError::LastAdminKey => GatewayError::LastAdminKey,
            KeyError::Store(e) => e.into(),
            KeyError::MaxTtlTooLong
            | KeyError::Randomness(_)
            | KeyError::KeyFile(_)
            | KeyError::ResetNotAnnounced(_) => internal("key lifecycle failure", &e),
        }
    }
}

/// Run-time token value refusals answer with their own text; sealing and
/// store failures are `internal`, and so are restore failures (never an
/// admin request's doing).
impl From<TokenValueError> for GatewayError {
    fn from(e: TokenValueError) -> Self {
        match e {
            TokenValueError::UnknownToken(_) => GatewayError::NotFound(e.to_string()),
            TokenValueError::ConfigOwned { .. } => GatewayError::Conflict(e.to_string()),
            TokenValueError::TooLong
            | TokenValueError::NotHeaderSafe(_)
            | TokenValueError::Refused(_) => GatewayError::BadRequest(e.to_string()),
            TokenValueError::Seal(e) => e.into(),
            TokenValueError::Store(e) => e.into(),
            TokenValueError::Open { .. }
            | TokenValueError::NotUtf8 { .. }
            | TokenValueError::Unrestorable { .. } => internal("token value restore failure", &e),
        }
    }
}

/// Catalog refusals answer with their own text (422 with every problem);
/// store failures are `internal`.
impl From<ChangeError> for GatewayError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::NotFound { .. } => GatewayError::NotFound(e.to_string()),
            ChangeError::ConfigOwned { .. } => GatewayError::ConfigOwned(e.to_string()),
            ChangeError::Exists { .. } => GatewayError::AlreadyExists(e.to_string()),
            ChangeError::VersionMismatch { .. } | ChangeError::Raced { .. } => {
                GatewayError::PreconditionFailed(e.to_string())
            }
            ChangeError::InUse { section, .. } => GatewayError::InUse {
                token: section == crate::config::Section::Tokens,
                message: e.to_string(),
            },
            ChangeError::Invalid(problems) => GatewayError::Unprocessable(problems),
            ChangeError::LastAdminKey => GatewayError::LastAdminKey,
            ChangeError::NotAConnector => GatewayError::NotFound(e.to_string()),
            ChangeError::ValueNotSet { .. } => internal("catalog value write failed", &e),
            ChangeError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_text_is_the_header_and_the_body_code() {
        let resp = GatewayError::ApiKeyExpired.to_response("r1");
        assert_eq!(
            resp.headers().get(KEYGATE_ERROR).map(HeaderValue::as_bytes),
            Some(&b"api_key_expired"[..])
        );
        assert_eq!(GatewayError::NotLocal("x").code(), ErrorCode::Forbidden);
        assert_eq!(ErrorCode::LastAdminKey.to_string(), "last_admin_key");
    }

    #[test]
    fn only_key_and_role_refusals_are_auth_failures() {
        assert_eq!(
            GatewayError::AdminForbidden.code().auth_failure(),
            Some(AuthFailure::Forbidden)
        );
        assert_eq!(
            GatewayError::InvalidUserToken("t".into())
                .code()
                .auth_failure(),
            None
        );
        assert_eq!(GatewayError::Internal.code().auth_failure(), None);
    }

    #[test]
    fn refused_keys_map_to_the_401_codes() {
        use crate::auth::caller::Refused;
        assert_eq!(
            GatewayError::from(Refused::Expired),
            GatewayError::ApiKeyExpired
        );
        assert_eq!(
            GatewayError::from(Refused::Invalid),
            GatewayError::InvalidApiKey
        );
    }

    /// The admin API's answers are the domain errors' texts under the
    /// status and code picked here.
    #[test]
    fn domain_refusals_keep_their_admin_answers() {
        let cases = [
            (
                GatewayError::from(KeyError::AlreadyRevoked("key_a".into())),
                404,
                "not_found",
                "key `key_a` is already revoked",
            ),
            (
                GatewayError::from(KeyError::AlreadyRolled {
                    successor: "key_b".into(),
                }),
                409,
                "conflict",
                "this key was already rolled (successor `key_b`); roll the successor instead",
            ),
            (
                GatewayError::from(KeyError::LastAdminKey),
                409,
                "last_admin_key",
                "this would leave no live key that can use the admin API; create another admin key first, or repeat with ?force=true (recovery: `keygate admin-key --reset`)",
            ),
            (
                GatewayError::from(TokenValueError::ConfigOwned {
                    name: "t".into(),
                    from: "env",
                }),
                409,
                "conflict",
                "token `t` takes its value from `env`, not from the admin API",
            ),
            (
                GatewayError::from(TokenValueError::TooLong),
                400,
                "bad_request",
                "the value is over 8192 bytes",
            ),
            (
                GatewayError::from(TokenValueError::Store(StoreError::Poisoned)),
                500,
                "internal",
                "internal error",
            ),
        ];
        for (e, status, code, message) in cases {
            let (s, c, m) = e.parts();
            assert_eq!(
                (s.as_u16(), c.as_str(), m.as_str()),
                (status, code, message)
            );
        }
    }
}
