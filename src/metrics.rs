//! Prometheus metrics (SPEC §6), served at `GET /metrics` on the admin
//! listener. Label values are config names (connector, token), status
//! codes and error codes only: bounded cardinality, no per-key or per-path
//! labels, and never a secret.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use dashmap::DashMap;
use std::time::SystemTime;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorStatus {
    pub connector: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabel {
    pub connector: String,
}

/// Why a caller was refused: the `reason` of `keygate_auth_failures_total`.
/// A closed set, so the label cannot grow with what callers send.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AuthFailure {
    MissingApiKey,
    InvalidApiKey,
    ApiKeyExpired,
    /// The key's roles do not allow the connector, method, path or the
    /// admin API, or an `auth: none` port refused a browser's request.
    Forbidden,
}

impl AuthFailure {
    /// The label value: the error code the caller was answered with.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MissingApiKey => "missing_api_key",
            AuthFailure::InvalidApiKey => "invalid_api_key",
            AuthFailure::ApiKeyExpired => "api_key_expired",
            AuthFailure::Forbidden => "forbidden",
        }
    }
}

impl EncodeLabelValue for AuthFailure {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: AuthFailure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenResult {
    pub token: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorToken {
    pub connector: String,
    pub token: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabel {
    pub token: String,
}

type HistogramFamily = Family<ConnectorLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<ConnectorStatus, Counter>,
    pub duration: HistogramFamily,
    pub auth_failures: Family<Reason, Counter>,
    pub token_refresh: Family<TokenResult, Counter>,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub token_injections: Family<ConnectorToken, Counter>,
    pub token_age: Family<TokenLabel, Gauge<f64, AtomicU64>>,
    pub open_connections: Gauge,
    resident_memory: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    open_fds: Gauge,
    /// Handles of the per-request metrics by connector, so the hot path
    /// finds them by `&str` instead of building owned label sets.
    hot: DashMap<String, Arc<ConnectorHandles>>,
}

#[derive(Debug)]
struct ConnectorHandles {
    /// The duration histogram's label set, kept to look it up without
    /// allocating (prometheus-client histograms are not shareable handles).
    label: ConnectorLabel,
    by_status: DashMap<u16, Counter>,
    injections: DashMap<String, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            auth_failures: Family::default(),
            token_refresh: Family::default(),
            config_reloads: Family::default(),
            token_injections: Family::default(),
            token_age: Family::default(),
            open_connections: Gauge::default(),
            resident_memory: Gauge::default(),
            cpu_seconds: Gauge::default(),
            open_fds: Gauge::default(),
            registry: Registry::default(),
            hot: DashMap::new(),
        };
        registry.register(
            "keygate_requests",
            "Proxied requests by connector and status",
            m.requests.clone(),
        );
        registry.register(
            "keygate_request_duration_seconds",
            "Time from request to response headers",
            m.duration.clone(),
        );
        registry.register(
            "keygate_auth_failures",
            "Refused callers by reason",
            m.auth_failures.clone(),
        );
        registry.register(
            "keygate_token_refresh",
            "Token refreshes by result",
            m.token_refresh.clone(),
        );
        registry.register(
            "keygate_config_reloads",
            "Config reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "keygate_token_injections",
            "Upstream credentials injected, by connector and token",
            m.token_injections.clone(),
        );
        registry.register(
            "keygate_token_age_seconds",
            "Age of each token's current value",
            m.token_age.clone(),
        );
        registry.register(
            "keygate_open_connections",
            "Open client connections",
            m.open_connections.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory",
            m.resident_memory.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            m.open_fds.clone(),
        );
        // Both outcomes exist from the start, so a dashboard can alert on
        // `failure` before the first failed reload.
        for result in ["success", "failure"] {
            m.config_reloads
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .inc_by(0);
        }
        Metrics { registry, ..m }
    }

    fn handles(&self, connector: &str) -> Arc<ConnectorHandles> {
        if let Some(h) = self.hot.get(connector) {
            return Arc::clone(h.value());
        }
        let h = Arc::new(ConnectorHandles {
            label: ConnectorLabel {
                connector: connector.to_string(),
            },
            by_status: DashMap::new(),
            injections: DashMap::new(),
        });
        Arc::clone(self.hot.entry(connector.to_string()).or_insert(h).value())
    }

    pub fn request(&self, connector: &str, status: u16, seconds: f64) {
        let h = self.handles(connector);
        let counter = match h.by_status.get(&status) {
            Some(c) => c.value().clone(),
            None => {
                let c = self
                    .requests
                    .get_or_create(&ConnectorStatus {
                        connector: connector.to_string(),
                        status: status.to_string(),
                    })
                    .clone();
                h.by_status.insert(status, c.clone());
                c
            }
        };
        counter.inc();
        self.duration.get_or_create(&h.label).observe(seconds);
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures.get_or_create(&Reason { reason }).inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" }.to_string();
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn injected(&self, connector: &str, token: &str) {
        let h = self.handles(connector);
        if let Some(c) = h.injections.get(token) {
            c.inc();
            return;
        }
        let c = self
            .token_injections
            .get_or_create(&ConnectorToken {
                connector: connector.to_string(),
                token: token.to_string(),
            })
            .clone();
        c.inc();
        h.injections.insert(token.to_string(), c);
    }

    /// The text exposition, with scrape-time gauges refreshed first.
    /// `token_updates` gives each token's name and when its value last
    /// changed (callers hand numbers in: metrics knows no domain type).
    pub fn render<'a>(
        &self,
        token_updates: impl IntoIterator<Item = (&'a str, SystemTime)>,
    ) -> String {
        let now = SystemTime::now();
        self.token_age.clear();
        for (name, updated_at) in token_updates {
            let age = now
                .duration_since(updated_at)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.token_age
                .get_or_create(&TokenLabel {
                    token: name.to_string(),
                })
                .set(age);
        }
        self.sample_process();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }

    fn sample_process(&self) {
        // Linux /proc; elsewhere these stay at zero.
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
        {
            self.resident_memory.set(pages.saturating_mul(4096));
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 (1-based), in clock ticks.
            if let (Some(u), Some(s)) = (
                f.get(11).and_then(|v| v.parse::<f64>().ok()),
                f.get(12).and_then(|v| v.parse::<f64>().ok()),
            ) {
                self.cpu_seconds.set((u + s) / 100.0);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // Saturating: a process cannot hold i64::MAX descriptors.
            self.open_fds
                .set(i64::try_from(dir.count()).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failure_reasons_are_the_error_codes() {
        let m = Metrics::new();
        m.auth_failure(AuthFailure::Forbidden);
        m.auth_failure(AuthFailure::Forbidden);
        m.auth_failure(AuthFailure::ApiKeyExpired);
        let text = m.render(std::iter::empty());
        assert!(
            text.contains(r#"keygate_auth_failures_total{reason="forbidden"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keygate_auth_failures_total{reason="api_key_expired"} 1"#),
            "{text}"
        );
    }
}
