//! Keeps an `http_request` token's value fresh.
//!
//! - **Single flight in its own task**: every need for a fetch (first need,
//!   expiry, an upstream 401, the admin API, the background schedule) looks
//!   at one state under one lock. At most one fetch runs, in a task of its
//!   own that records the outcome (value, or failure and backoff) whatever
//!   happens to the callers; a caller only waits for it and may go away.
//!   Were the fetch run inside a request's future, a client closing its
//!   connection would cancel it before any failure or backoff is recorded,
//!   and the next request would start another: one token-endpoint call per
//!   aborted request. (`user.rs` does the same for JWKS downloads.)
//! - **Schedule**: after a fetch with a known lifetime, the background task
//!   refreshes `refresh_before` ahead of expiry (at half-life when the
//!   lifetime is shorter than that), but never sooner than 1 s after the
//!   fetch. Times are tokio `Instant`s so the logic is tested on paused
//!   time.
//! - **Upstream 401s**: at most one 401-triggered refresh per
//!   `min_refresh_interval` (coalesced with concurrent ones); other 401s
//!   pass through unchanged. Without this, a caller who finds a path that
//!   answers 401 could make keygate burn the identity provider's quota.
//! - **Lifetimes**: bounded by `fetch` (under 1 s is a failed fetch, over a
//!   year is clamped and logged). Short valid lifetimes (a few seconds) are
//!   kept, as SPEC §3 and the IdPs that issue them expect; the schedule's
//!   1 s floor means an endpoint answering `expires_in: 1` is called at
//!   most once a second, never twice. Every clock sum is checked, so no
//!   answer can cause a busy loop or a panic.
//! - **Failures**: exponential backoff with ±20 % jitter (1 s doubling to
//!   60 s). The last good value stays in use while refreshes fail, but
//!   never past its expiry: then the token is unavailable (503) until a
//!   fetch succeeds. Requests do not hammer a failing endpoint: inside the
//!   backoff window they fail fast.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::fetch::{FetchError, Fetched};
use super::{PutRefused, TokenStore, TokenValue};
use crate::config::{HttpRequestSpec, TokenSpec};
use crate::lock::lock;
use crate::metrics::TokenResult;
use crate::upstream::{BuildError, HttpClient};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send>>;

/// Why the refresher has no value to give. Clone: the one fetch's outcome
/// reaches every waiter and stays in the state for the admin API. The
/// proxy answers 503 (or passes an upstream 401 through) whatever the
/// variant; the text is for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The last fetch failed; inside the backoff window this is repeated
    /// without calling the endpoint.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The fetched value cannot be published: not a header value, or a
    /// reload changed the token meanwhile.
    #[error("the fetched token is refused: {}", .0.as_str())]
    Refused(PutRefused),
    /// Inside the backoff window with no recorded failure.
    #[error("the token endpoint is failing")]
    Failing,
    /// An upstream 401 less than `min_refresh_interval` after the last
    /// refresh it triggered: the 401 is passed through instead.
    #[error("refreshed after a 401 less than min_refresh_interval ago")]
    RateLimited,
    #[error("the token fetch ended without a result")]
    NoResult,
    /// The refresher was stopped (replaced by a reload).
    #[error("the token fetch was stopped")]
    Stopped,
}

/// Performs one fetch. The real one calls the token endpoint; unit tests
/// script answers to exercise timing on paused time.
pub trait Fetcher: Send + Sync {
    fn fetch(&self) -> FetchFuture;
}

/// The real fetcher: the configured request through the shared client.
pub struct HttpFetcher {
    pub spec: Arc<HttpRequestSpec>,
    pub client: HttpClient,
    pub store: TokenStore,
}

impl Fetcher for HttpFetcher {
    fn fetch(&self) -> FetchFuture {
        let (spec, client, store) = (
            Arc::clone(&self.spec),
            self.client.clone(),
            self.store.clone(),
        );
        Box::pin(async move { super::fetch::fetch(&spec, &client, &store).await })
    }
}

/// Backoff before retry number `failures` (1-based), scaled by `jitter`
/// in [0.8, 1.2].
#[expect(
    clippy::disallowed_methods,
    reason = "the factor is clamped to [0.8, 1.2] and the base to BACKOFF_MAX, so it cannot panic"
)]
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(BACKOFF_MAX).mul_f64(jitter.clamp(0.8, 1.2))
}

/// When to refresh a value fetched at `at` that lives `lifetime`:
/// `refresh_before` ahead of expiry, at half-life for a shorter lifetime,
/// and never sooner than `min_interval` after `at`.
pub fn refresh_due(
    at: Instant,
    lifetime: Duration,
    refresh_before: Duration,
    min_interval: Duration,
) -> Instant {
    let wait = if lifetime > refresh_before {
        lifetime - refresh_before
    } else {
        lifetime / 2
    };
    later(at, wait.max(min_interval))
}

/// `at + d`, saturating far in the future instead of panicking (a year,
/// else an hour: never `at` itself while a shorter step fits, since "due
/// now" would mean fetching at once).
fn later(at: Instant, d: Duration) -> Instant {
    crate::clock::later_by_first_fit(
        at,
        &[d, super::fetch::MAX_LIFETIME, Duration::from_secs(3600)],
    )
}

/// A wait as whole milliseconds for a log field. Saturating: waits are
/// capped at BACKOFF_MAX, far below u64::MAX ms.
pub(crate) fn log_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

pub fn jitter() -> f64 {
    let r = getrandom::u32().unwrap_or(u32::MAX / 2);
    0.8 + 0.4 * (f64::from(r) / f64::from(u32::MAX))
}

#[derive(Debug, Default, Clone)]
pub struct RefreshState {
    pub failures: u32,
    pub last_error: Option<RefreshError>,
    /// A fetch is in flight.
    pub refreshing: bool,
    /// No fetch before this (backoff window).
    pub not_before: Option<Instant>,
    /// The current value's refresh time and expiry, on the tokio clock.
    pub due: Option<Instant>,
    pub expires: Option<Instant>,
    /// Fetches finished (success or failure).
    pub fetches: u64,
    /// When the last upstream-401 refresh was let through.
    pub last_401_refresh: Option<Instant>,
}

/// What the one fetch in flight ended with; `None` until it ends.
type Outcome = Option<Result<Arc<TokenValue>, RefreshError>>;

/// The fetch in flight: its result, and a handle to stop it with the
/// refresher.
struct Flight {
    done: watch::Receiver<Outcome>,
    task: tokio::task::AbortHandle,
}

/// Everything decided under the one lock.
#[derive(Default)]
struct Inner {
    st: RefreshState,
    flight: Option<Flight>,
}

/// Why a value is wanted; decides what counts as good enough.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Any usable value (a request).
    Usable,
    /// A usable value newer than this version (the schedule, the admin API).
    NewerThan(u64),
    /// Like `NewerThan`, after an upstream 401: rate limited.
    After401(u64),
}

/// What a caller does after looking at the state.
enum Step {
    Done(Result<Arc<TokenValue>, RefreshError>),
    Wait(watch::Receiver<Outcome>),
}

pub struct Refresher {
    pub token: Arc<TokenSpec>,
    pub spec: Arc<HttpRequestSpec>,
    store: TokenStore,
    fetcher: Box<dyn Fetcher>,
    inner: Mutex<Inner>,
    wake: Notify,
    metrics: Family<TokenResult, Counter>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("token", &self.token.name)
            .finish_non_exhaustive()
    }
}

impl Refresher {
    pub fn new(
        token: Arc<TokenSpec>,
        spec: Arc<HttpRequestSpec>,
        store: TokenStore,
        fetcher: Box<dyn Fetcher>,
        metrics: Family<TokenResult, Counter>,
    ) -> Arc<Self> {
        Arc::new(Refresher {
            token,
            spec,
            store,
            fetcher,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            metrics,
            task: Mutex::new(None),
        })
    }

    /// The real refresher for a token: fetches through its own pooled
    /// client (the token endpoint's trust roots may differ from any
    /// connector's).
    pub fn for_http(
        token: Arc<TokenSpec>,
        spec: Arc<HttpRequestSpec>,
        store: TokenStore,
        metrics: Family<TokenResult, Counter>,
    ) -> Result<Arc<Self>, BuildError> {
        let client = crate::upstream::build(spec.ca_file.as_deref(), Duration::from_secs(5))?;
        let fetcher = HttpFetcher {
            spec: Arc::clone(&spec),
            client,
            store: store.clone(),
        };
        Ok(Self::new(token, spec, store, Box::new(fetcher), metrics))
    }

    pub fn state(&self) -> RefreshState {
        lock(&self.inner).st.clone()
    }

    /// The published value, while this refresher's spec is the published
    /// one (after a reload replaced it, none: it fetches for the requests
    /// still on the old snapshot, and publishes nothing).
    fn current(&self) -> Option<Arc<TokenValue>> {
        self.store.fetched_for(&self.token)
    }

    /// A usable value: the current one, or the one being fetched (a fetch
    /// is started if none is in flight and no backoff forbids it).
    pub async fn get(self: &Arc<Self>) -> Result<Arc<TokenValue>, RefreshError> {
        self.obtain(Need::Usable).await
    }

    /// Refreshes unless someone already replaced version `seen` (a forced
    /// refresh from the admin API, the schedule).
    pub async fn refresh_after(
        self: &Arc<Self>,
        seen: Option<u64>,
    ) -> Result<Arc<TokenValue>, RefreshError> {
        self.obtain(Need::NewerThan(seen.unwrap_or(0))).await
    }

    /// After an upstream 401 to a request that used version `seen`: the
    /// newer value if someone already refreshed (or is refreshing), else
    /// one refresh per `min_refresh_interval`. Inside the interval the
    /// answer is an error and the caller passes the upstream's 401 through
    /// unchanged.
    pub async fn refresh_after_401(
        self: &Arc<Self>,
        seen: u64,
    ) -> Result<Arc<TokenValue>, RefreshError> {
        self.obtain(Need::After401(seen)).await
    }

    /// Both clocks: the wall clock for the value, the tokio clock for the
    /// schedule (they agree in production; tests pause tokio's).
    fn usable(st: &RefreshState, v: &TokenValue) -> bool {
        let tokio_ok = st.expires.is_none_or(|e| Instant::now() < e);
        v.usable(SystemTime::now()) && tokio_ok
    }

    /// The one decision, under the lock: a good enough value, the fetch in
    /// flight to wait for, a refusal (backoff, 401 rate limit), or a new
    /// fetch started in its own task.
    async fn obtain(self: &Arc<Self>, need: Need) -> Result<Arc<TokenValue>, RefreshError> {
        let step = {
            let mut inner = lock(&self.inner);
            self.decide(&mut inner, need)
        };
        match step {
            Step::Done(result) => result,
            Step::Wait(mut done) => match done.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or(Err(RefreshError::NoResult)),
                // The refresher was stopped (replaced by a reload).
                Err(_) => Err(RefreshError::Stopped),
            },
        }
    }

    fn decide(self: &Arc<Self>, inner: &mut Inner, need: Need) -> Step {
        if let Some(v) = self.current() {
            let good = match need {
                Need::Usable => true,
                Need::NewerThan(seen) | Need::After401(seen) => v.version > seen,
            };
            if good && Self::usable(&inner.st, &v) {
                return Step::Done(Ok(v));
            }
        }
        if let Some(f) = &inner.flight {
            return Step::Wait(f.done.clone());
        }
        let now = Instant::now();
        if let Some(nb) = inner.st.not_before
            && now < nb
        {
            let why = inner.st.last_error.clone();
            return Step::Done(Err(why.unwrap_or(RefreshError::Failing)));
        }
        if let Need::After401(_) = need {
            let limited = inner.st.last_401_refresh.is_some_and(|at| {
                at.checked_add(self.spec.min_refresh_interval)
                    .is_none_or(|until| now < until)
            });
            if limited {
                // Counted so an operator sees a caller hammering a 401 path.
                self.count("rate_limited");
                return Step::Done(Err(RefreshError::RateLimited));
            }
            inner.st.last_401_refresh = Some(now);
        }
        Step::Wait(self.start_fetch(inner))
    }

    /// Starts the one fetch in its own task; the caller holds the lock.
    fn start_fetch(self: &Arc<Self>, inner: &mut Inner) -> watch::Receiver<Outcome> {
        let (tx, done) = watch::channel(None);
        inner.st.refreshing = true;
        let me = Arc::clone(self);
        let fetch = self.fetcher.fetch();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let result = fetch.await;
            let outcome = me.record(started, result);
            // After the state is recorded: a waiter reads a settled state.
            tx.send_replace(Some(outcome));
        });
        inner.flight = Some(Flight {
            done: done.clone(),
            task: task.abort_handle(),
        });
        done
    }

    /// The first value of a new or changed token, fetched by the reload
    /// before the snapshot that references the token is published, so its
    /// connectors never answer 503 in between and never get the old spec's
    /// value. Not published here: the reload publishes it with the
    /// snapshot. Recorded like any fetch (schedule, backoff, metrics).
    pub async fn prime(&self) -> Result<Arc<TokenValue>, RefreshError> {
        let started = Instant::now();
        let result = self.fetcher.fetch().await;
        self.settle(started, result, false)
    }

    /// Records what the fetch started at `started` ended with; runs in the
    /// fetch task, so it happens even if every caller went away.
    fn record(
        &self,
        started: Instant,
        result: Result<Fetched, FetchError>,
    ) -> Result<Arc<TokenValue>, RefreshError> {
        self.settle(started, result, true)
    }

    /// Records a fetch's outcome; publishes the value (or the error) when
    /// `publish`, else only returns it.
    fn settle(
        &self,
        started: Instant,
        result: Result<Fetched, FetchError>,
        publish: bool,
    ) -> Result<Arc<TokenValue>, RefreshError> {
        // Background refreshes are spaced at least MIN_LIFETIME (1 s) apart:
        // a short but valid lifetime stays usable, and no answer can make
        // the task call the endpoint more than once a second.
        let min = super::fetch::MIN_LIFETIME;
        let outcome = result
            .map_err(RefreshError::Fetch)
            .and_then(|f| {
                if f.clamped {
                    tracing::warn!(token = %self.token.name, max_days = super::fetch::MAX_LIFETIME.as_secs() / 86_400, "the token endpoint gave an absurd lifetime; clamped");
                }
                let expires_wall = f.lifetime.and_then(|l| SystemTime::now().checked_add(l));
                let value = if publish {
                    self.store.put_fetched(&self.token, f.secret, expires_wall)
                } else {
                    super::render(self.token.prefix.as_deref(), &f.secret)
                        .map_err(|_| super::PutRefused::NotHeaderSafe)
                        .map(|hv| {
                            // Versions continue the token's, whatever
                            // its spec was.
                            let version = self
                                .store
                                .load()
                                .get(&self.token.name)
                                .map_or(1, |v| v.version.saturating_add(1));
                            super::fetched_value(&self.token, &f.secret, hv, version, expires_wall)
                        })
                };
                value
                    .map(|v| (v, f.lifetime))
                    .map_err(RefreshError::Refused)
            });
        let mut inner = lock(&self.inner);
        let st = &mut inner.st;
        st.fetches += 1;
        st.refreshing = false;
        let outcome = match outcome {
            Ok((v, lifetime)) => {
                st.failures = 0;
                st.last_error = None;
                st.not_before = None;
                st.due = lifetime.map(|l| refresh_due(started, l, self.spec.refresh_before, min));
                st.expires = lifetime.map(|l| later(started, l));
                self.count("success");
                tracing::info!(token = %self.token.name, version = v.version, fingerprint = %v.fingerprint, "token fetched");
                Ok(v)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let wait = backoff(st.failures, jitter());
                st.last_error = Some(e.clone());
                st.not_before = Some(later(Instant::now(), wait));
                self.count("failure");
                if publish {
                    self.store.set_error(&self.token, &e.to_string());
                }
                tracing::warn!(token = %self.token.name, error = %e, retry_in_ms = log_ms(wait), "token fetch failed");
                Err(e)
            }
        };
        inner.flight = None;
        drop(inner);
        self.wake.notify_one();
        outcome
    }

    fn count(&self, result: &str) {
        self.metrics
            .get_or_create(&TokenResult {
                token: self.token.name.clone(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Starts the background schedule (fetches at once, then before expiry).
    pub fn start(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let handle = tokio::spawn(async move { me.run().await });
        if let Some(old) = lock(&self.task).replace(handle) {
            old.abort();
        }
    }

    /// Stops the schedule and any fetch in flight (a replaced refresher
    /// must not write a value fetched with its old spec).
    pub fn stop(&self) {
        if let Some(h) = lock(&self.task).take() {
            h.abort();
        }
        let mut inner = lock(&self.inner);
        if let Some(f) = inner.flight.take() {
            f.task.abort();
            inner.st.refreshing = false;
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let st = self.state();
            let has_value = self.current().is_some_and(|v| Self::usable(&st, &v));
            // Next moment to act: a pending retry, the refresh time, or now.
            let at = match (st.not_before, st.due, has_value) {
                (Some(nb), _, _) => Some(nb),
                (None, Some(due), true) => Some(due),
                (None, None, true) => None, // no known expiry: wait for a 401 or a forced refresh
                (None, _, false) => Some(Instant::now()),
            };
            match at {
                Some(at) if at > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => continue,
                    }
                }
                Some(_) => {}
                None => {
                    self.wake.notified().await;
                    continue;
                }
            }
            let seen = self.current().map(|v| v.version);
            let _ = self.refresh_after(seen).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::config::{Expiry, FetchBody, TokenKind};
    use crate::secret::Secret;
    use crate::tokens::fetch::{LifetimeError, LifetimeField};

    struct Script {
        calls: Arc<AtomicU32>,
        /// Calls whose number (1-based) is in here fail.
        fail: Vec<u32>,
        lifetime: Duration,
    }

    impl Fetcher for Script {
        fn fetch(&self) -> FetchFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = self.fail.contains(&n);
            let lifetime = self.lifetime;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if fail {
                    Err(FetchError::Status(http::StatusCode::SERVICE_UNAVAILABLE))
                } else {
                    Ok(Fetched {
                        secret: Secret::new(format!("value-{n}")),
                        lifetime: Some(lifetime),
                        clamped: false,
                    })
                }
            })
        }
    }

    fn refresher(fail: Vec<u32>, lifetime: Duration) -> (Arc<Refresher>, Arc<AtomicU32>) {
        let spec = Arc::new(HttpRequestSpec {
            method: http::Method::POST,
            url: "http://127.0.0.1:1/token".parse().expect("uri"),
            headers: vec![],
            body: FetchBody::None,
            token_pointer: "/access_token".into(),
            expiry: Expiry::In("/expires_in".into()),
            refresh_before: Duration::from_secs(60),
            min_refresh_interval: Duration::from_secs(10),
            ca_file: None,
            timeout: Duration::from_secs(5),
        });
        let token = Arc::new(TokenSpec {
            name: "t".into(),
            description: None,
            kind: TokenKind::HttpRequest(Arc::clone(&spec)),
            header: http::header::AUTHORIZATION,
            prefix: Some("Bearer".into()),
        });
        let calls = Arc::new(AtomicU32::new(0));
        let fetcher = Script {
            calls: Arc::clone(&calls),
            fail,
            lifetime,
        };
        let cell = crate::tokens::FixedCell::new(
            [(token.name.clone(), Arc::clone(&token))]
                .into_iter()
                .collect(),
        );
        let r = Refresher::new(
            token,
            spec,
            TokenStore::new(cell),
            Box::new(fetcher),
            Family::default(),
        );
        (r, calls)
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 1.0), Duration::from_secs(16));
        assert_eq!(backoff(30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(3, 1.2), Duration::from_millis(4800));
        assert_eq!(
            backoff(3, 9.0),
            Duration::from_millis(4800),
            "jitter is bounded"
        );
    }

    #[test]
    fn refresh_time() {
        let t0 = Instant::now();
        let due = |lifetime: u64| {
            refresh_due(
                t0,
                Duration::from_secs(lifetime),
                Duration::from_secs(60),
                Duration::from_secs(10),
            ) - t0
        };
        assert_eq!(due(3600), Duration::from_secs(3540));
        assert_eq!(due(30), Duration::from_secs(15), "half-life");
        assert_eq!(due(12), Duration::from_secs(10), "never under the interval");
        assert_eq!(due(1), Duration::from_secs(10), "never under the interval");
        assert!(refresh_due(t0, Duration::MAX, Duration::ZERO, Duration::MAX) > t0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_first_needs_cause_one_fetch() {
        let (r, calls) = refresher(vec![], Duration::from_secs(3600));
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let r = Arc::clone(&r);
            tasks.push(tokio::spawn(
                async move { r.get().await.map(|v| v.version) },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join"), Ok(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_before_expiry_on_schedule() {
        let (r, calls) = refresher(vec![], Duration::from_secs(300));
        r.start();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fetched at start");
        // lifetime 300 s, refresh_before 60 s: next fetch at ~240 s.
        tokio::time::sleep(Duration::from_secs(230)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed before expiry");
        assert_eq!(r.get().await.map(|v| v.version), Ok(2));
        r.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn failing_refresh_keeps_last_good_until_expiry_then_recovers() {
        // Call 1 (t≈0) succeeds with a 40 s lifetime: refresh due at 20 s
        // (half-life, as 40 s < refresh_before). Calls 2..=7 fail and back
        // off 1, 2, 4, 8, 16, 32 s (±20 %), so call k starts within:
        //   2: 20  3: 20.8–21.2  4: 22.4–23.6  5: 25.6–28.4  6: 32–38
        //   7: 44.8–57.2  8: 70.4–95.6 (succeeds)
        // (plus 10 ms per scripted fetch). Every check below sits at a
        // moment that is certain whatever the jitter.
        let (r, calls) = refresher(vec![2, 3, 4, 5, 6, 7], Duration::from_secs(40));
        r.start();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.get().await.map(|v| v.version), Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // t = 30 s: calls 2..=5 failed, the value is still before expiry.
        tokio::time::sleep(Duration::from_secs(29)).await;
        let st = r.state();
        assert_eq!(st.failures, 4, "retrying with backoff: {st:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(
            r.get().await.map(|v| v.version),
            Ok(1),
            "last good value still served before expiry"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 5, "served without a fetch");

        // t = 42 s: past expiry (40 s), inside the backoff before call 7.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let st = r.state();
        assert_eq!(st.failures, 5, "{st:?}");
        assert!(
            st.not_before.is_some_and(|nb| Instant::now() < nb),
            "inside a backoff window: {st:?}"
        );
        assert!(
            st.expires.is_some_and(|e| e <= Instant::now()),
            "past expiry: {st:?}"
        );
        for _ in 0..10 {
            assert_eq!(
                r.get().await.map(|v| v.version),
                Err(RefreshError::Fetch(FetchError::Status(
                    http::StatusCode::SERVICE_UNAVAILABLE
                ))),
                "never used past its expiry"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            6,
            "inside the backoff window requests fail fast"
        );

        // t = 100 s: call 7 failed, call 8 succeeded (and call 9, its
        // scheduled refresh 20 s later, may have too); the token recovers.
        tokio::time::sleep(Duration::from_secs(58)).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((8..=9).contains(&n), "{n} fetches");
        assert_eq!(r.state().failures, 0);
        assert_eq!(
            r.get().await.map(|v| v.version),
            Ok(u64::from(n) - 6),
            "recovered: one version per successful fetch"
        );
        r.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_after_401_is_coalesced() {
        let (r, calls) = refresher(vec![], Duration::from_secs(3600));
        let v1 = r.get().await.expect("first").version;
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let r = Arc::clone(&r);
            tasks.push(tokio::spawn(async move {
                r.refresh_after_401(v1).await.map(|v| v.version)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("join"), Ok(2));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch for ten 401s");
    }

    #[tokio::test(start_paused = true)]
    async fn upstream_401s_refresh_at_most_once_per_min_interval() {
        let (r, calls) = refresher(vec![], Duration::from_secs(3600));
        let v1 = r.get().await.expect("first").version;
        assert_eq!(r.refresh_after_401(v1).await.map(|v| v.version), Ok(2));
        // The upstream keeps answering 401 to the new value: inside the
        // interval no more fetches, whatever the number of 401s.
        for _ in 0..50 {
            assert_eq!(
                r.refresh_after_401(2).await.map(|v| v.version),
                Err(RefreshError::RateLimited)
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(
            r.refresh_after_401(2).await.map(|v| v.version),
            Err(RefreshError::RateLimited)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Past the interval one more refresh is let through.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(r.refresh_after_401(2).await.map(|v| v.version), Ok(3));
        assert_eq!(
            r.refresh_after_401(3).await.map(|v| v.version),
            Err(RefreshError::RateLimited)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // The admin API's forced refresh is not rate limited.
        assert_eq!(r.refresh_after(Some(3)).await.map(|v| v.version), Ok(4));
    }

    /// A fetcher whose first answer carries `first` as the lifetime.
    struct Lifetimes {
        calls: Arc<AtomicU32>,
        answers: Vec<Result<Option<Duration>, FetchError>>,
    }

    impl Fetcher for Lifetimes {
        fn fetch(&self) -> FetchFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
            let answer = self.answers[n.min(self.answers.len() - 1)].clone();
            Box::pin(async move {
                answer.map(|lifetime| Fetched {
                    secret: Secret::new(format!("value-{n}")),
                    lifetime,
                    clamped: false,
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn huge_lifetimes_neither_panic_nor_poison_the_state() {
        let calls = Arc::new(AtomicU32::new(0));
        let r = with_fetcher(Lifetimes {
            calls: Arc::clone(&calls),
            answers: vec![Ok(Some(Duration::MAX)), Err(FetchError::Unreadable)],
        });
        r.start();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(r.get().await.is_ok());
        let st = r.state();
        assert!(st.due.is_some() && st.expires.is_some(), "{st:?}");
        r.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_fetches_back_off_with_jitter_not_a_busy_loop() {
        let calls = Arc::new(AtomicU32::new(0));
        let r = with_fetcher(Lifetimes {
            calls: Arc::clone(&calls),
            answers: vec![Err(FetchError::Lifetime(LifetimeError::TooShort(
                LifetimeField::In("/expires_in".into()),
            )))],
        });
        r.start();
        // Backoff 1, 2, 4, 8, 16 s (±20 %): about 5 attempts in 30 s.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((4..=7).contains(&n), "{n} fetches in 30 s");
        assert!(r.state().last_error.is_some());
        r.stop();
    }

    /// A fetcher that takes `delay` (a slow or hanging endpoint, up to its
    /// timeout), then fails or answers a one-hour token.
    struct Slow {
        calls: Arc<AtomicU32>,
        delay: Duration,
        fail: bool,
    }

    impl Fetcher for Slow {
        fn fetch(&self) -> FetchFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let (delay, fail) = (self.delay, self.fail);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if fail {
                    return Err(FetchError::Timeout);
                }
                Ok(Fetched {
                    secret: Secret::new(format!("value-{n}")),
                    lifetime: Some(Duration::from_secs(3600)),
                    clamped: false,
                })
            })
        }
    }

    fn with_fetcher(fetcher: impl Fetcher + 'static) -> Arc<Refresher> {
        let (r, _) = refresher(vec![], Duration::from_secs(1));
        let cell = crate::tokens::FixedCell::new(
            [(r.token.name.clone(), Arc::clone(&r.token))]
                .into_iter()
                .collect(),
        );
        Refresher::new(
            Arc::clone(&r.token),
            Arc::clone(&r.spec),
            TokenStore::new(cell),
            Box::new(fetcher),
            Family::default(),
        )
    }

    /// `n` requests one after the other, each given up after 50 ms (the
    /// client closed its connection: hyper drops the request's future).
    async fn abandoned_requests(r: &Arc<Refresher>, n: usize) {
        for _ in 0..n {
            let r = Arc::clone(r);
            let req = tokio::spawn(async move { r.get().await.map(|v| v.version) });
            tokio::time::sleep(Duration::from_millis(50)).await;
            req.abort();
            let _ = req.await;
        }
    }

    /// S2: a request that goes away does not cancel the fetch, so the next
    /// request waits for the same fetch instead of starting another.
    #[tokio::test(start_paused = true)]
    async fn abandoned_requests_share_one_fetch_that_still_completes() {
        let calls = Arc::new(AtomicU32::new(0));
        let r = with_fetcher(Slow {
            calls: Arc::clone(&calls),
            delay: Duration::from_secs(5),
            fail: false,
        });
        abandoned_requests(&r, 40).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "40 aborted requests");
        assert!(r.state().refreshing);
        // The fetch finishes on its own and its value is kept.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let st = r.state();
        assert!(!st.refreshing && st.fetches == 1, "{st:?}");
        let t0 = Instant::now();
        assert_eq!(r.get().await.map(|v| v.version), Ok(1));
        assert_eq!(t0.elapsed(), Duration::ZERO, "served from the value");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// S2 with a hanging endpoint: the abandoned fetch's failure is
    /// recorded and backed off; requests never start fetches of their own.
    #[tokio::test(start_paused = true)]
    async fn abandoned_requests_to_a_hanging_endpoint_are_backed_off() {
        let calls = Arc::new(AtomicU32::new(0));
        let r = with_fetcher(Slow {
            calls: Arc::clone(&calls),
            delay: Duration::from_secs(30),
            fail: true,
        });
        // 2 minutes of a request every 50 ms, each abandoned: 2400
        // requests. One fetch at a time, 30 s each, 1, 2, 4 s of backoff
        // between them: four fetches, not one per request.
        abandoned_requests(&r, 2400).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((3..=5).contains(&n), "{n} fetches for 2400 requests");
        let st = r.state();
        assert!(st.failures >= 3 && st.last_error.is_some(), "{st:?}");
    }

    /// M1: an endpoint answering `expires_in: 1` is valid and served, but
    /// refreshed at most once a second (half-life would be twice), whatever
    /// the traffic.
    #[tokio::test(start_paused = true)]
    async fn a_one_second_lifetime_is_served_and_refreshed_at_most_once_a_second() {
        let calls = Arc::new(AtomicU32::new(0));
        let r = with_fetcher(Lifetimes {
            calls: Arc::clone(&calls),
            answers: vec![Ok(Some(Duration::from_secs(1)))],
        });
        r.start();
        // A request every 100 ms for a minute on top of the schedule: the
        // short-lived value is served, and the endpoint is called at most
        // once a second (the schedule's floor), never twice (half-life).
        for _ in 0..600 {
            assert!(r.get().await.is_ok(), "served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n = calls.load(Ordering::SeqCst);
        assert!((30..=61).contains(&n), "{n} fetches in a minute");
        r.stop();
    }

    /// M1: legitimately short lifetimes keep working: refreshed at
    /// half-life (30 s → every 15 s, 12 s → every 6 s), never expired in
    /// between.
    #[tokio::test(start_paused = true)]
    async fn short_lifetimes_stay_fresh() {
        for (lifetime, every) in [(30, 15), (12, 6)] {
            let (r, calls) = refresher(vec![], Duration::from_secs(lifetime));
            r.start();
            tokio::time::sleep(Duration::from_millis(500)).await;
            for _ in 0..120 {
                assert!(r.get().await.is_ok(), "lifetime {lifetime} s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // 120.5 s: one fetch at start, then one every `every` s.
            let n = calls.load(Ordering::SeqCst);
            assert_eq!(n, 1 + 120 / every, "lifetime {lifetime} s");
            r.stop();
        }
    }
}
