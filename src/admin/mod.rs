//! The admin listener. Endpoints:
//!
//! - `GET /healthz` — liveness: the process answers. No key.
//! - `GET /readyz`  — 200 once every token attached to a connector has a
//!   value, 503 (listing the missing token names) before. No key.
//!
//! The proxy listener never serves any of these.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::error::GatewayError;
use crate::state::Shared;

#[derive(Debug, Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl Admin {
    pub fn new(shared: Arc<Shared>) -> Self {
        Admin { shared }
    }

    pub async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let request_id = self.shared.request_id();
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => {
                json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/readyz") => {
                let missing = self.shared.missing_tokens();
                if missing.is_empty() {
                    json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
                } else {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "not_ready", "tokens_without_value": missing}),
                    )
                }
            }
            (_, "/healthz" | "/readyz") => GatewayError::MethodNotAllowed.to_response(&request_id),
            _ => GatewayError::NotFound("no such admin route".into()).to_response(&request_id),
        }
    }
}

impl crate::server::Handler for Admin {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        self.handle(req, peer)
    }
}
