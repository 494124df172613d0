//! What an admin handler answers when it succeeds. The wrapper's type fixes
//! the status and the content type, and its payload is a `Serialize` type,
//! so the OpenAPI test reads both off a handler's signature instead of
//! trusting a comment. Failures are `GatewayError`s, answered by
//! `GatewayError::to_response` alone; this module never builds an error.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::Body;
use crate::error::GatewayError;

pub const JSON: &str = "application/json";
/// The OpenAPI document's registered media types (IANA): YAML and JSON.
pub const OPENAPI_YAML: &str = "application/vnd.oai.openapi";
pub const OPENAPI_JSON: &str = "application/vnd.oai.openapi+json";
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A success answer of some handler.
pub trait IntoReply {
    /// The response; `Err` only if the payload cannot be serialized, which
    /// is a bug (a map with non-string keys), answered as `500 internal`.
    fn into_reply(self) -> Result<Response<Body>, GatewayError>;
}

/// `200 OK` with `T` as JSON.
pub struct Json<T>(pub T);

/// `201 Created` with `T` as JSON.
pub struct Created<T>(pub T);

/// `204 No Content`.
pub struct NoContent;

/// `200 OK` with Prometheus metrics in OpenMetrics text.
pub struct OpenMetrics(pub String);

/// `200 OK` with the OpenAPI document as YAML.
pub struct OpenApiYaml(pub String);

/// `200 OK` with the OpenAPI document as JSON.
pub struct OpenApiJson(pub String);

/// `status` with `value` as JSON.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, GatewayError> {
    let bytes = serde_json::to_vec(value).map_err(|_| GatewayError::Internal)?;
    Ok(with_type(status, Body::full(bytes), JSON))
}

pub(super) fn with_type(
    status: StatusCode,
    body: Body,
    content_type: &'static str,
) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

impl<T: Serialize> IntoReply for Json<T> {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        json(StatusCode::OK, &self.0)
    }
}

impl<T: Serialize> IntoReply for Created<T> {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        json(StatusCode::CREATED, &self.0)
    }
}

impl IntoReply for NoContent {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }
}

impl IntoReply for OpenMetrics {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        Ok(with_type(StatusCode::OK, Body::full(self.0), OPENMETRICS))
    }
}

impl IntoReply for OpenApiYaml {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        Ok(with_type(StatusCode::OK, Body::full(self.0), OPENAPI_YAML))
    }
}

impl IntoReply for OpenApiJson {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        Ok(with_type(StatusCode::OK, Body::full(self.0), OPENAPI_JSON))
    }
}
