//! The routes an orchestrator and a scraper call without a key: liveness,
//! readiness and metrics. They read state and never change it.

use http::{Response, StatusCode};
use serde::Serialize;

use super::reply::{IntoReply, Json, OpenMetrics, json};
use super::router::Ctx;
use crate::body::Body;
use crate::error::GatewayError;

/// `GET /healthz`: `{"status":"ok"}` while the process answers.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /readyz`: ready (200) once every token attached to a connector has
/// a value and, with several replicas, this one holds the store's lease and
/// is not behind the change sequence (SPEC §8); else not ready (503)
/// naming the tokens without a value and the other reasons.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    NotReady {
        tokens_without_value: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        reasons: Vec<String>,
    },
}

impl IntoReply for Readiness {
    fn into_reply(self) -> Result<Response<Body>, GatewayError> {
        let status = match self {
            Readiness::Ready => StatusCode::OK,
            Readiness::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        json(status, &self)
    }
}

pub async fn healthz(_cx: Ctx) -> Result<Json<Health>, GatewayError> {
    Ok(Json(Health { status: "ok" }))
}

pub async fn readyz(cx: Ctx) -> Result<Readiness, GatewayError> {
    let missing = cx
        .shared
        .snapshot()
        .missing_tokens(std::time::SystemTime::now());
    let mut reasons = cx
        .shared
        .cluster()
        .map(|c| c.status().not_ready)
        .unwrap_or_default();
    // Read here too, not only from the follower's last look: a follower
    // stuck in a store call must not leave a lapsed lease reported ready.
    if reasons.is_empty() && !cx.shared.keys().vouches(std::time::SystemTime::now()) {
        reasons.push("store unreachable for longer than the lease: API keys answer 503".into());
    }
    Ok(if missing.is_empty() && reasons.is_empty() {
        Readiness::Ready
    } else {
        Readiness::NotReady {
            tokens_without_value: missing,
            reasons,
        }
    })
}

pub async fn metrics(cx: Ctx) -> Result<OpenMetrics, GatewayError> {
    let snap = cx.shared.snapshot();
    let text = cx.shared.metrics().render(
        snap.values
            .values
            .iter()
            .map(|(name, v)| (name.as_str(), v.updated_at)),
    );
    Ok(OpenMetrics(text))
}
