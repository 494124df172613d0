//! The admin listener while the store cannot be opened yet (PostgreSQL
//! down at start): `/healthz` answers (the process is alive), `/readyz`
//! answers 503 with the reason, everything else 503 `store_unavailable`.
//! So an orchestrator sees "alive, not ready" instead of a crash loop, and
//! an operator sees why. The proxy listener is not bound until the store
//! opens: a load balancer finds nothing to send traffic to.
//!
//! Each answer closes its connection, so once the store opens and the real
//! admin service takes the same listener, no client is left talking to
//! this one.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::error::GatewayError;

/// The longest a TLS handshake may take on the waiting listener.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// The waiting admin listener; [`Waiting::finish`] hands the listener back.
pub struct Waiting {
    stop: watch::Sender<bool>,
    task: JoinHandle<TcpListener>,
}

impl Waiting {
    /// Answers on `listener` (over TLS when the admin listener has its
    /// own certificate), `/readyz` giving `why`.
    pub fn start(listener: TcpListener, tls: Option<TlsAcceptor>, why: String) -> Waiting {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, tls, Arc::from(why), stopped));
        Waiting { stop, task }
    }

    /// Stops accepting and returns the listener, still bound.
    pub async fn finish(self) -> std::io::Result<TcpListener> {
        let _ = self.stop.send(true);
        self.task.await.map_err(std::io::Error::other)
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    why: Arc<str>,
    mut stopped: watch::Receiver<bool>,
) -> TcpListener {
    loop {
        tokio::select! {
            _ = stopped.changed() => return listener,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (why, tls) = (Arc::clone(&why), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let response = answer(&req, &why);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let mut http1 = hyper::server::conn::http1::Builder::new();
                    http1.keep_alive(false);
                    match tls {
                        None => {
                            let _ = http1.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // Bounded like the real listener's handshake, so a
                        // silent socket cannot hold its task.
                        Some(acceptor) => {
                            let accepted =
                                tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await;
                            if let Ok(Ok(stream)) = accepted {
                                let _ = http1.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        }
    }
}

fn answer(req: &Request<Incoming>, why: &str) -> Response<Body> {
    let json = |status: StatusCode, value: serde_json::Value| {
        let mut r = Response::new(Body::full(value.to_string().into_bytes()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r
    };
    let mut response = match req.uri().path() {
        "/healthz" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        "/readyz" => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "not_ready",
                "tokens_without_value": [],
                "reasons": [why],
            }),
        ),
        _ => GatewayError::StoreUnavailable.to_response("-"),
    };
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}
