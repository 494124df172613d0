//! Human units used in the config and the admin API: durations (`500ms`,
//! `30s`, `12h`, `90d`) and sizes (`64KiB`, `32MiB`). Strict on purpose: a
//! typo must be an error, never a silently different number.

use std::time::Duration;

/// The longest key lifetime anywhere: `keys.max_ttl`, and `expires_in` or
/// a roll's `grace` in the admin API. 100 years is far past any real key's
/// life, yet small enough that `now` plus it fits every form a time takes
/// (`SystemTime`, u64 and SQLite i64 milliseconds), so no arithmetic wraps
/// and no huge value silently turns into "now" or "never".
pub const MAX_KEY_DURATION: Duration = Duration::from_secs(36_500 * 86_400);
pub const MAX_KEY_DURATION_TEXT: &str = "36500d (100 years)";

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`; a bare
/// integer is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration (write it like 500ms, 30s, 12h or 90d)"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration `{t}` is too large"))
    };
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => Err(format!(
            "`{t}` has unknown duration unit `{other}` (use ms, s, m, h or d)"
        )),
    }
}

/// Parses `<integer><unit>` with unit `B`, `KiB`, `MiB`, `GiB` (powers of
/// two) or `KB`, `MB`, `GB` (powers of ten); a bare integer is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a size (write it like 64KiB or 32MiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{t}` has unknown size unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{t}` is too large"))
}

/// Formats a duration back into the shortest exact unit, for status output.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= len && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
