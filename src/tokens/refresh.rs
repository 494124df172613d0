//! Keeps an `http_request` token's value fresh.
//!
//! - **Single flight**: every caller that needs a fetch (first need, expiry,
//!   an upstream 401, the admin API, the background schedule) goes through
//!   one async lock and re-checks after taking it, so N concurrent needs
//!   cause one fetch.
//! - **Schedule**: after a fetch with a known lifetime, the background task
//!   refreshes `refresh_before` ahead of expiry (at half-life when the
//!   lifetime is shorter than that). Times are tokio `Instant`s so the
//!   logic is tested on paused time.
//! - **Upstream 401s**: at most one 401-triggered refresh per
//!   `min_refresh_interval` (coalesced with concurrent ones); other 401s
//!   pass through unchanged. Without this, a caller who finds a path that
//!   answers 401 could make keygate burn the identity provider's quota.
//! - **Lifetimes**: bounded by `fetch` (under 1 s is a failed fetch, over a
//!   year is clamped and logged), and every clock sum is checked, so no
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
use tokio::sync::Notify;
use tokio::time::Instant;

use super::fetch::Fetched;
use super::{TokenStore, TokenValue};
use crate::config::{HttpRequestSpec, TokenSpec};
use crate::lock::lock;
use crate::metrics::TokenResult;
use crate::upstream::HttpClient;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send>>;

/// Performs one fetch. The real one calls the token endpoint; unit tests
/// script answers to exercise timing on paused time.
pub trait Fetcher: Send + Sync {
    fn fetch(&self) -> FetchFuture;
}

/// The real fetcher: the configured request through the shared client.
pub struct HttpFetcher {
    pub spec: Arc<HttpRequestSpec>,
    pub client: HttpClient,
    pub store: Arc<TokenStore>,
}

impl Fetcher for HttpFetcher {
    fn fetch(&self) -> FetchFuture {
        let (spec, client, store) = (
            Arc::clone(&self.spec),
            self.client.clone(),
            Arc::clone(&self.store),
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

/// When to refresh a value fetched at `at` that lives `lifetime`.
pub fn refresh_due(at: Instant, lifetime: Duration, refresh_before: Duration) -> Instant {
    let wait = if lifetime > refresh_before {
        lifetime - refresh_before
    } else {
        lifetime / 2
    };
    later(at, wait)
}

/// `at + d`, saturating far in the future instead of panicking.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(super::fetch::MAX_LIFETIME))
        .unwrap_or(at)
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
    pub last_error: Option<String>,
    pub refreshing: bool,
    /// No fetch before this (backoff window).
    pub not_before: Option<Instant>,
    /// The current value's refresh time and expiry, on the tokio clock.
    pub due: Option<Instant>,
    pub expires: Option<Instant>,
    pub fetches: u64,
    /// When the last upstream-401 refresh was let through.
    pub last_401_refresh: Option<Instant>,
}

pub struct Refresher {
    pub token: Arc<TokenSpec>,
    pub spec: Arc<HttpRequestSpec>,
    store: Arc<TokenStore>,
    fetcher: Box<dyn Fetcher>,
    single: tokio::sync::Mutex<()>,
    state: Mutex<RefreshState>,
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
        store: Arc<TokenStore>,
        fetcher: Box<dyn Fetcher>,
        metrics: Family<TokenResult, Counter>,
    ) -> Arc<Self> {
        Arc::new(Refresher {
            token,
            spec,
            store,
            fetcher,
            single: tokio::sync::Mutex::new(()),
            state: Mutex::new(RefreshState::default()),
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
        store: Arc<TokenStore>,
        metrics: Family<TokenResult, Counter>,
    ) -> Result<Arc<Self>, String> {
        let client = crate::upstream::build(spec.ca_file.as_deref(), Duration::from_secs(5))?;
        let fetcher = HttpFetcher {
            spec: Arc::clone(&spec),
            client,
            store: Arc::clone(&store),
        };
        Ok(Self::new(token, spec, store, Box::new(fetcher), metrics))
    }

    pub fn state(&self) -> RefreshState {
        lock(&self.state).clone()
    }

    fn current(&self) -> Option<Arc<TokenValue>> {
        self.store.load().get(&self.token.name).cloned()
    }

    /// A usable value: the current one, or one fetched now (single flight).
    pub async fn get(&self) -> Result<Arc<TokenValue>, String> {
        if let Some(v) = self.current().filter(|v| self.usable(v)) {
            return Ok(v);
        }
        self.fetch_single(None).await
    }

    /// Refreshes unless someone already replaced version `seen` (an upstream
    /// 401 to a request that used it, or a forced refresh).
    pub async fn refresh_after(&self, seen: Option<u64>) -> Result<Arc<TokenValue>, String> {
        self.fetch_single(Some(seen.unwrap_or(0))).await
    }

    fn usable(&self, v: &TokenValue) -> bool {
        // Both clocks: the wall clock for the value, the tokio clock for
        // the schedule (they agree in production; tests pause tokio's).
        let tokio_ok = self.state().expires.is_none_or(|e| Instant::now() < e);
        v.usable(SystemTime::now()) && tokio_ok
    }

    /// After an upstream 401 to a request that used version `seen`: the
    /// newer value if someone already refreshed, else one refresh per
    /// `min_refresh_interval`. Inside the interval the answer is an error
    /// and the caller passes the upstream's 401 through unchanged.
    pub async fn refresh_after_401(&self, seen: u64) -> Result<Arc<TokenValue>, String> {
        let _one = self.single.lock().await;
        if let Some(v) = self.current()
            && v.version > seen
            && self.usable(&v)
        {
            return Ok(v);
        }
        let now = Instant::now();
        let limited = self.state().last_401_refresh.is_some_and(|at| {
            at.checked_add(self.spec.min_refresh_interval)
                .is_none_or(|until| now < until)
        });
        if limited {
            // Counted so an operator sees a caller hammering a 401 path.
            self.count("rate_limited");
            return Err("refreshed after a 401 less than min_refresh_interval ago".into());
        }
        self.set_state(|s| s.last_401_refresh = Some(now));
        self.fetch_locked(Some(seen)).await
    }

    async fn fetch_single(&self, seen: Option<u64>) -> Result<Arc<TokenValue>, String> {
        let _one = self.single.lock().await;
        self.fetch_locked(seen).await
    }

    /// The body of a single-flight fetch; the caller holds `single`.
    async fn fetch_locked(&self, seen: Option<u64>) -> Result<Arc<TokenValue>, String> {
        if let Some(v) = self.current() {
            let newer = seen.is_some_and(|s| v.version > s);
            if (seen.is_none() || newer) && self.usable(&v) {
                return Ok(v);
            }
        }
        let st = self.state();
        if let Some(nb) = st.not_before
            && Instant::now() < nb
        {
            return Err(st
                .last_error
                .unwrap_or_else(|| "the token endpoint is failing".into()));
        }
        self.set_state(|s| s.refreshing = true);
        let started = Instant::now();
        let result = self.fetcher.fetch().await;
        let outcome = match result {
            Ok(f) => {
                if f.clamped {
                    tracing::warn!(token = %self.token.name, max_days = super::fetch::MAX_LIFETIME.as_secs() / 86_400, "the token endpoint gave an absurd lifetime; clamped");
                }
                let expires_wall = f.lifetime.and_then(|l| SystemTime::now().checked_add(l));
                match self.store.put_fetched(&self.token, f.secret, expires_wall) {
                    Ok(v) => {
                        self.set_state(|s| {
                            s.failures = 0;
                            s.last_error = None;
                            s.not_before = None;
                            s.due = f
                                .lifetime
                                .map(|l| refresh_due(started, l, self.spec.refresh_before));
                            s.expires = f.lifetime.map(|l| later(started, l));
                            s.fetches += 1;
                        });
                        Ok(v)
                    }
                    Err(why) => Err(format!("the fetched token is refused: {why}")),
                }
            }
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(v) => {
                self.count("success");
                tracing::info!(token = %self.token.name, version = v.version, fingerprint = %v.fingerprint, "token fetched");
            }
            Err(e) => {
                self.count("failure");
                let failures = self.state().failures + 1;
                let wait = backoff(failures, jitter());
                self.set_state(|s| {
                    s.failures = failures;
                    s.last_error = Some(e.clone());
                    s.not_before = Some(later(Instant::now(), wait));
                    s.fetches += 1;
                });
                self.store.set_error(&self.token.name, e);
                tracing::warn!(token = %self.token.name, error = %e, retry_in_ms = log_ms(wait), "token fetch failed");
            }
        }
        self.set_state(|s| s.refreshing = false);
        self.wake.notify_one();
        outcome
    }

    fn set_state(&self, f: impl FnOnce(&mut RefreshState)) {
        f(&mut lock(&self.state));
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

    pub fn stop(&self) {
        if let Some(h) = lock(&self.task).take() {
            h.abort();
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let st = self.state();
            let has_value = self.current().is_some_and(|v| self.usable(&v));
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
            let _ = self.fetch_single(Some(seen.unwrap_or(0))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::config::{Expiry, FetchBody, TokenKind};
    use crate::secret::Secret;

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
                    Err("scripted failure".into())
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
        let r = Refresher::new(
            token,
            spec,
            Arc::new(TokenStore::new()),
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
        assert_eq!(
            refresh_due(t0, Duration::from_secs(3600), Duration::from_secs(60)),
            t0 + Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_due(t0, Duration::from_secs(30), Duration::from_secs(60)),
            t0 + Duration::from_secs(15)
        );
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
        // Call 1 succeeds (lifetime 100 s); calls 2..=6 fail; 7 succeeds.
        let (r, calls) = refresher(vec![2, 3, 4, 5, 6], Duration::from_secs(100));
        r.start();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.get().await.map(|v| v.version), Ok(1));
        // Refresh due at 50 s (half-life, lifetime < refresh_before); it
        // fails and backs off 1, 2, 4, 8 s...
        tokio::time::sleep(Duration::from_secs(60)).await;
        let st = r.state();
        assert!(st.failures >= 2, "retrying with backoff: {st:?}");
        assert!(
            r.get().await.is_ok(),
            "last good value still served before expiry"
        );
        // Past expiry (100 s) with failures: unavailable, no hammering.
        tokio::time::sleep(Duration::from_secs(45)).await;
        let before = calls.load(Ordering::SeqCst);
        if r.state().not_before.is_some_and(|nb| Instant::now() < nb) {
            assert!(r.get().await.is_err(), "never used past its expiry");
            assert_eq!(
                calls.load(Ordering::SeqCst),
                before,
                "inside the backoff window requests fail fast"
            );
        }
        // Eventually call 7 succeeds and the token recovers.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let v = r.get().await.expect("recovered");
        assert!(v.version >= 2);
        assert!(calls.load(Ordering::SeqCst) >= 7);
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
            assert!(r.refresh_after_401(2).await.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(r.refresh_after_401(2).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Past the interval one more refresh is let through.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(r.refresh_after_401(2).await.map(|v| v.version), Ok(3));
        assert!(r.refresh_after_401(3).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // The admin API's forced refresh is not rate limited.
        assert_eq!(r.refresh_after(Some(3)).await.map(|v| v.version), Ok(4));
    }

    /// A fetcher whose first answer carries `first` as the lifetime.
    struct Lifetimes {
        calls: Arc<AtomicU32>,
        answers: Vec<Result<Option<Duration>, String>>,
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
        let (r, _) = refresher(vec![], Duration::from_secs(1));
        let calls = Arc::new(AtomicU32::new(0));
        let r = Refresher::new(
            Arc::clone(&r.token),
            Arc::clone(&r.spec),
            Arc::new(TokenStore::new()),
            Box::new(Lifetimes {
                calls: Arc::clone(&calls),
                answers: vec![Ok(Some(Duration::MAX)), Err("down".into())],
            }),
            Family::default(),
        );
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
        let (r, _) = refresher(vec![], Duration::from_secs(1));
        let calls = Arc::new(AtomicU32::new(0));
        let r = Refresher::new(
            Arc::clone(&r.token),
            Arc::clone(&r.spec),
            Arc::new(TokenStore::new()),
            Box::new(Lifetimes {
                calls: Arc::clone(&calls),
                answers: vec![Err(
                    "the lifetime at /expires_in gives a lifetime under 1 s".into(),
                )],
            }),
            Family::default(),
        );
        r.start();
        // Backoff 1, 2, 4, 8, 16 s (±20 %): about 5 attempts in 30 s.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((4..=7).contains(&n), "{n} fetches in 30 s");
        assert!(r.state().last_error.is_some());
        r.stop();
    }
}
