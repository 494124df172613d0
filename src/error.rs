//! Every error keygate itself answers with, and the ONLY function that turns
//! one into a response. The mapping is an exhaustive `match` (no `_ =>`), so
//! a new variant cannot ship without a status and a code. Messages are fixed
//! text or names from the config; they never carry a secret, an upstream
//! error's text, or internal detail.

use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};

use crate::body::Body;

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
    BodyTooLarge,
    UpstreamUnavailable,
    CredentialUnavailable(String),
    UpstreamTimeout,
    /// A bug or an I/O failure inside keygate; details go to the log only.
    Internal,
}

impl GatewayError {
    /// Status, code and client-facing message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        use GatewayError::*;
        match self {
            BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            MissingApiKey => (
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "send your keygate API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
                    .into(),
            ),
            InvalidApiKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "the API key is not valid".into(),
            ),
            ApiKeyExpired => (
                StatusCode::UNAUTHORIZED,
                "api_key_expired",
                "the API key has expired".into(),
            ),
            MissingUserToken(t) => (
                StatusCode::UNAUTHORIZED,
                "missing_user_token",
                format!("user token `{t}` is required"),
            ),
            InvalidUserToken(t) => (
                StatusCode::UNAUTHORIZED,
                "invalid_user_token",
                format!("user token `{t}` is not valid"),
            ),
            Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key's roles do not allow this connector, method or path".into(),
            ),
            NotLocal(m) => (StatusCode::FORBIDDEN, "forbidden", (*m).to_string()),
            AdminForbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key's roles do not grant admin access (it needs a role with `admin: true`)"
                    .into(),
            ),
            UnknownConnector => (
                StatusCode::NOT_FOUND,
                "unknown_connector",
                "no connector by that name".into(),
            ),
            NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method".into(),
            ),
            Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            LastAdminKey => (
                StatusCode::CONFLICT,
                "last_admin_key",
                "this would leave no live key that can use the admin API; create another admin key first, or repeat with ?force=true (recovery: `keygate admin-key --reset`)"
                    .into(),
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over the limit".into(),
            ),
            UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "the upstream could not be reached".into(),
            ),
            CredentialUnavailable(t) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "credential_unavailable",
                format!("token `{t}` has no usable value"),
            ),
            UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time".into(),
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            ),
        }
    }

    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The one error → response function.
    pub fn to_response(&self, request_id: &str) -> Response<Body> {
        let (status, code, message) = self.parts();
        let body = serde_json::json!({
            "error": { "code": code, "message": message, "request_id": request_id }
        });
        let mut resp = Response::new(Body::full(body.to_string()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(KEYGATE_ERROR, HeaderValue::from_static(code));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(X_REQUEST_ID, v);
        }
        if matches!(
            self,
            GatewayError::MissingApiKey | GatewayError::InvalidApiKey | GatewayError::ApiKeyExpired
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
        }
    }
}
