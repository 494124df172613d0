//! Accept loops shared by every listener (proxy, dedicated connector ports,
//! admin): plain TCP or TLS, HTTP/1.1 and HTTP/2 (h2c by prior knowledge,
//! h2 by ALPN) through hyper-util's auto builder, `TCP_NODELAY` on.
//!
//! Every listener enforces the `server:` connection [`Limits`]: a cap on
//! open connections (past it, new ones wait in the backlog), a deadline
//! from accept to the first request head (covering TLS and protocol
//! detection, which hyper's own `header_read_timeout` does not), an idle
//! timeout, HTTP/2 keep-alive pings, a header size cap and an HTTP/2 stream
//! cap. It does not limit request rates or bodies; that is the proxy's job.
//!
//! Shutdown has two levels: a listener's own `stop` ends its accept loop
//! (a connector removed by a reload), while the [`Drain`] asks every open
//! connection to finish its in-flight requests and close (SIGTERM). Each
//! connection holds a clone of the drain's sender, so the app knows when the
//! last one has gone.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::config::{Limits, MAX_H2_KEEP_ALIVE, MAX_HEADER_READ_TIMEOUT};

/// A request handler for one listener.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
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

/// hyper's builder with the listener's limits, clamped again to the
/// validation bounds because hyper adds them to `Instant::now()` (a panic
/// on overflow) and a `Limits` may be built without validation. hyper counts the HTTP/1.1
/// head against its read buffer (`max_buf_size`, "431 Request Header
/// Fields Too Large" past it) and HTTP/2 headers against
/// `SETTINGS_MAX_HEADER_LIST_SIZE` (RFC 9113 §6.5.2; h2 answers 431 too).
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let header_size = usize::try_from(limits.max_header_size)
        .unwrap_or(usize::MAX)
        .max(MIN_H1_BUF); // hyper panics below its minimum
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Restarted by hyper for every later head, so it also bounds the
        // wait for the next request on an idle keep-alive connection.
        .header_read_timeout(limits.header_read_timeout.min(MAX_HEADER_READ_TIMEOUT))
        .max_buf_size(header_size);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keep_alive_interval.min(MAX_H2_KEEP_ALIVE))
        .keep_alive_timeout(limits.h2_keep_alive_timeout.min(MAX_H2_KEEP_ALIVE))
        .max_header_list_size(limits.max_header_size)
        .max_concurrent_streams(limits.max_concurrent_streams);
    b
}

/// `hyper::server::conn::http1::Builder::max_buf_size` minimum.
const MIN_H1_BUF: usize = 8192;
/// How often a listener at `max_connections` may log that it is.
const LIMIT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Runs the accept loop until `stop` turns true or the drain starts.
///
/// At most `limits.max_connections` connections are open at once: the loop
/// takes a slot *before* `accept`, so past the limit new connections wait
/// in the kernel's listen backlog (as with nginx `worker_connections`)
/// instead of being accepted and dropped; open connections are untouched.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    drain: Drain,
) {
    let builder = Arc::new(builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (head_timeout, idle_timeout) = (limits.header_read_timeout, limits.idle_timeout);
    let mut drain_stop = drain.stop.clone();
    // Under a sustained flood the limit is hit on every accept: say so at
    // most once a minute.
    let mut warned: Option<Instant> = None;
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        addr = ?listener.local_addr().ok(),
                        max_connections = limits.max_connections,
                        "connection limit reached; new connections wait in the listen backlog"
                    );
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    _ = stop.changed() => break,
                    _ = drain_stop.changed() => break,
                }
            }
        };
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
        // The head deadline starts now, before TLS and protocol detection,
        // so a socket that sends nothing cannot hold its slot.
        let timers = Timers::start(Instant::now(), head_timeout, idle_timeout);
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let builder = Arc::clone(&builder);
        let drain = drain.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(TokioIo::new(tcp), peer, handler, &builder, drain, timers).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout_at(timers.head_deadline, acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            connection(TokioIo::new(stream), peer, handler, &builder, drain, timers)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// The two clocks of one connection.
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// Accept + `header_read_timeout`: the first request must have
    /// arrived by then.
    head_deadline: Instant,
    /// `idle_timeout`: how long a connection may sit with nothing in flight.
    idle: Duration,
}

impl Timers {
    fn start(accepted: Instant, head_timeout: Duration, idle: Duration) -> Self {
        Timers {
            head_deadline: later(accepted, head_timeout),
            idle,
        }
    }
}

/// Thirty years: "never" for a deadline, and far enough below
/// `Instant`'s range to be added to any `now`.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + d`, saturating at [`FAR_FUTURE`] instead of panicking.
/// Validation bounds every configured duration, but `Instant + Duration`
/// panics on overflow and a panic here would end the whole accept loop,
/// so no value may reach a plain `+`.
fn later(at: Instant, d: Duration) -> Instant {
    crate::clock::later_by_first_fit(at, &[d.min(FAR_FUTURE), FAR_FUTURE])
}

/// Requests in flight on one connection, and since when it has had none.
/// A request counts from the moment hyper hands over its head until its
/// response body has been sent (or dropped).
#[derive(Debug)]
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Whether a request ever arrived (the head deadline is then met).
    served: AtomicBool,
    /// Milliseconds after `born` when the last request ended.
    idle_since_ms: AtomicU64,
}

/// What the connection's timer decided.
enum Next {
    /// Look again at this instant.
    At(Instant),
    /// No request arrived by the head deadline: drop the socket.
    NoRequest,
    /// Idle for `idle_timeout`: close gracefully.
    Idle,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    fn next(&self, now: Instant, timers: Timers) -> Next {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Next::At(later(now, timers.idle));
        }
        if !self.served.load(Ordering::Acquire) {
            return if now >= timers.head_deadline {
                Next::NoRequest
            } else {
                Next::At(timers.head_deadline)
            };
        }
        let since = later(
            self.born,
            Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)),
        );
        let due = later(since, timers.idle);
        if now >= due {
            Next::Idle
        } else {
            Next::At(due)
        }
    }
}

/// One request in flight; ends when dropped.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight until
    /// hyper has sent it to the end or dropped it.
    struct Tracked<B> {
        #[pin]
        inner: B,
        busy: Busy,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn connection<I, H>(
    io: I,
    peer: SocketAddr,
    handler: H,
    builder: &auto::Builder<TokioExecutor>,
    drain: Drain,
    timers: Timers,
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
    let activity = Activity::new();
    let tracker = Arc::clone(&activity);
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        let busy = tracker.begin();
        async move {
            let resp = handler.call(req, peer).await;
            Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, busy }))
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    // Draining (SIGTERM) waits for in-flight requests without a bound of
    // its own (the app's grace is the bound); an idle close may take one
    // more `idle_timeout` to say goodbye, then the socket is dropped.
    let mut draining = *stop.borrow();
    let mut idle_closing = false;
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    let timer = tokio::time::sleep_until(timers.head_deadline);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = timer.as_mut(), if !draining => {
                if idle_closing {
                    if activity.in_flight.load(Ordering::Acquire) > 0 {
                        // A stream that raced the GOAWAY: let it finish.
                        timer.as_mut().reset(later(Instant::now(), timers.idle));
                        continue;
                    }
                    tracing::debug!(%peer, "idle connection did not close in time; dropping it");
                    break;
                }
                match activity.next(Instant::now(), timers) {
                    Next::At(at) => timer.as_mut().reset(at),
                    Next::NoRequest => {
                        // Nothing was asked, so there is nobody to answer.
                        tracing::debug!(%peer, "no request head within header_read_timeout; closing");
                        break;
                    }
                    Next::Idle => {
                        tracing::debug!(%peer, "idle_timeout reached; closing");
                        idle_closing = true;
                        conn.as_mut().graceful_shutdown();
                        timer.as_mut().reset(later(Instant::now(), timers.idle));
                    }
                }
            }
        }
    }
    open.dec();
    drop(alive);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_panicking() {
        let now = Instant::now();
        let huge = Duration::from_secs(u64::MAX);
        let t = Timers::start(now, huge, huge);
        assert!(t.head_deadline > now + Duration::from_secs(86_400 * 365));
        let a = Activity::new();
        // Nothing served yet: wait for the head deadline.
        assert!(matches!(a.next(now, t), Next::At(at) if at == t.head_deadline));
        // In flight, then idle since the request ended: both far away.
        let busy = a.begin();
        assert!(matches!(a.next(now, t), Next::At(at) if at > now));
        drop(busy);
        assert!(matches!(a.next(Instant::now(), t), Next::At(at) if at > now));
        // A normal value is added exactly.
        let s = Timers::start(now, Duration::from_secs(10), Duration::from_secs(60));
        assert_eq!(s.head_deadline, now + Duration::from_secs(10));
    }
}
