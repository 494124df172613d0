//! The admin API's own OpenAPI document, served so that clients and API
//! testers (schemathesis in CI) read the contract from the running
//! gateway: `openapi.yaml` as written, and the same document as JSON. The
//! route table and the answers' shapes are held to it by
//! `openapi_check.rs`, so what is served is what is answered.

use std::sync::OnceLock;

use super::OPENAPI;
use super::reply::{OpenApiJson, OpenApiYaml};
use super::router::Ctx;
use crate::config;
use crate::error::GatewayError;

/// `GET /api/v1/openapi.yaml`.
pub async fn yaml(_cx: Ctx) -> Result<OpenApiYaml, GatewayError> {
    Ok(OpenApiYaml(OPENAPI.to_string()))
}

/// `GET /api/v1/openapi.json`: converted once, through the one YAML parse
/// function. The document is compiled in and its test parses it, so a
/// failure here is a bug (answered `500 internal`, and logged).
pub async fn json(_cx: Ctx) -> Result<OpenApiJson, GatewayError> {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    let converted = JSON.get_or_init(|| {
        config::parse_yaml::<serde_json::Value>(OPENAPI)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_string(&v).map_err(|e| e.to_string()))
    });
    match converted {
        Ok(text) => Ok(OpenApiJson(text.clone())),
        Err(why) => {
            tracing::error!(error = %why, "the built-in OpenAPI document does not convert to JSON");
            Err(GatewayError::Internal)
        }
    }
}
