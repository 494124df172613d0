//! Deadlines that cannot panic. `Instant + Duration` panics on overflow,
//! and durations here come from config files and token endpoints, so no
//! such value may reach a plain `+`. Each caller names its own fallback
//! steps (what "far away" means for it); this module owns only the rule.
//! Tokio's `Instant`, so callers stay testable on paused time.

use std::time::Duration;

use tokio::time::Instant;

/// `at` plus the first of `steps` that fits in `Instant`'s range, or `at`
/// itself when none does (only a clock at the very end of its range).
pub fn later_by_first_fit(at: Instant, steps: &[Duration]) -> Instant {
    steps
        .iter()
        .find_map(|&step| at.checked_add(step))
        .unwrap_or(at)
}

/// Milliseconds since the epoch, at least 1 (0 means "none" in atomics),
/// saturating rather than wrapping past u64 (half a billion years out).
pub fn to_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(1)
        .max(1)
}

/// A time as RFC 3339 to the second, UTC (what every API answer and log
/// line shows).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_step_that_fits() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(later_by_first_fit(now, &[hour]), now + hour);
        assert_eq!(later_by_first_fit(now, &[Duration::MAX, hour]), now + hour);
        assert_eq!(later_by_first_fit(now, &[Duration::MAX]), now);
        assert_eq!(later_by_first_fit(now, &[]), now);
    }
}
