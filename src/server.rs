//! Accept loops shared by every listener (proxy, dedicated connector ports,
//! admin): plain TCP or TLS, HTTP/1.1 and HTTP/2 (h2c by prior knowledge,
//! h2 by ALPN) through hyper-util's auto builder, `TCP_NODELAY` on.
//!
//! Shutdown has two levels: a listener's own `stop` ends its accept loop
//! (a connector removed by a reload), while the [`Drain`] asks every open
//! connection to finish its in-flight requests and close (SIGTERM). Each
//! connection holds a clone of the drain's sender, so the app knows when the
//! last one has gone.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::Body;

/// A request handler for one listener.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
}

impl Handler for crate::proxy::Proxy {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send {
        self.handle(req, peer)
    }
}

/// Tells connections to finish and lets the app wait until they have.
#[derive(Debug, Clone)]
pub struct Drain {
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    /// Counts open connections for `/metrics`.
    open: Gauge,
}

#[derive(Debug)]
pub struct DrainControl {
    stop: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    alive: Option<mpsc::Sender<()>>,
}

impl DrainControl {
    pub fn new(open: Gauge) -> (Self, Drain) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (alive_tx, done) = mpsc::channel(1);
        let drain = Drain {
            stop: stop_rx,
            alive: alive_tx.clone(),
            open,
        };
        (
            DrainControl {
                stop: stop_tx,
                done,
                alive: Some(alive_tx),
            },
            drain,
        )
    }

    /// Signals every connection and waits up to `grace` for them to close.
    /// Returns whether all closed in time.
    pub async fn drain(mut self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        self.alive.take();
        tokio::time::timeout(grace, async { while self.done.recv().await.is_some() {} })
            .await
            .is_ok()
    }
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).keep_alive(true);
    b.http2().timer(TokioTimer::new());
    b
}

/// Runs the accept loop until `stop` turns true or the drain starts.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    mut stop: watch::Receiver<bool>,
    drain: Drain,
) {
    let builder = Arc::new(builder());
    let mut drain_stop = drain.stop.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
            _ = drain_stop.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let builder = Arc::clone(&builder);
        let drain = drain.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(TokioIo::new(tcp), peer, handler, &builder, drain).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            connection(TokioIo::new(stream), peer, handler, &builder, drain).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<I, H>(
    io: I,
    peer: SocketAddr,
    handler: H,
    builder: &auto::Builder<TokioExecutor>,
    drain: Drain,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Handler,
{
    let Drain {
        mut stop,
        alive,
        open,
    } = drain;
    open.inc();
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.call(req, peer).await) }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    open.dec();
    drop(alive);
}
