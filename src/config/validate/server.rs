//! The `server`, `admin`, `store` and `keys` sections: listen addresses,
//! TLS files, connection limits, the store and the API key format. A bad
//! value is reported and replaced by its default so validation can go on.
//! Nothing here looks at tokens, connectors or access rules; listen
//! addresses clashing with a connector's are checked in `mod.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::Errors;
use super::fields::{duration, parse_listen, resolve, valid_key_prefix, value_source};
use crate::config::locate::Seg;
use crate::config::model::{
    Admin, Backend, DEFAULT_ADMIN_LISTEN, DEFAULT_KEY_PREFIX, DEFAULT_LISTEN, Keys, Limits,
    MAX_CONNECTIONS, MAX_H2_KEEP_ALIVE, MAX_HEADER_READ_TIMEOUT, MAX_IDLE_TIMEOUT, MIN_HEADER_SIZE,
    Postgres, Server, Store, TlsFiles, ValueSource,
};
use crate::config::raw::{RawAdmin, RawKeys, RawPostgres, RawServer, RawStore, RawTls, Scalar};
use crate::config::units::{MAX_KEY_DURATION, MAX_KEY_DURATION_TEXT, format_duration, parse_size};

const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Key usage writes (SPEC §4: at most a few seconds behind).
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(2);
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// PostgreSQL connections per replica: enough for the flush, the upkeep
/// and a few admin writes at once; 64 keeps many replicas under a
/// server's default `max_connections` of 100 only if the operator sizes it.
const DEFAULT_PG_POOL: u64 = 8;
const MAX_PG_POOL: u64 = 64;
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Audit records: a year and a review cycle, then purged.
const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// A listen address, or `default` when unset; a bad one is reported and
/// replaced by `127.0.0.1:0` so validation can go on.
fn listen(e: &mut Errors<'_>, p: &[Seg<'_>], v: &Option<String>, default: &str) -> SocketAddr {
    let t = v.as_deref().unwrap_or(default);
    parse_listen(t).unwrap_or_else(|m| {
        e.at(p, m);
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// `server:`. Relative TLS paths resolve against `base`, the config's folder.
pub(super) fn server(e: &mut Errors<'_>, raw: &RawServer, base: &Path) -> Server {
    use Seg::Key;
    let server_listen = listen(
        e,
        &[Key("server"), Key("listen")],
        &raw.listen,
        DEFAULT_LISTEN,
    );
    let tls = tls_files(raw.tls.as_ref(), base);
    let shutdown_grace = duration(
        e,
        &[Key("server"), Key("shutdown_grace")],
        &raw.shutdown_grace,
        DEFAULT_GRACE,
    );
    if raw.workers == Some(0) {
        e.at(
            &[Key("server"), Key("workers")],
            "workers must be at least 1",
        );
    }
    Server {
        listen: server_listen,
        tls,
        shutdown_grace,
        workers: raw.workers.filter(|w| *w > 0),
        limits: limits(e, raw),
    }
}

/// A `tls:` pair; relative paths resolve against `base`.
fn tls_files(raw: Option<&RawTls>, base: &Path) -> Option<TlsFiles> {
    raw.map(|t| TlsFiles {
        cert: resolve(base, &t.cert),
        key: resolve(base, &t.key),
    })
}

/// `admin:`. Relative TLS paths resolve against `base`, the config's folder.
pub(super) fn admin(e: &mut Errors<'_>, raw: &RawAdmin, base: &Path) -> Admin {
    use Seg::Key;
    Admin {
        listen: listen(
            e,
            &[Key("admin"), Key("listen")],
            &raw.listen,
            DEFAULT_ADMIN_LISTEN,
        ),
        tls: tls_files(raw.tls.as_ref(), base),
    }
}

/// `store:`. Relative paths resolve against `base`, the config's folder.
pub(super) fn store(e: &mut Errors<'_>, raw: &RawStore, base: &Path) -> Store {
    use Seg::Key;
    let master_key = match &raw.master_key {
        Some(src) => value_source(e, &[Key("store"), Key("master_key")], src, base)
            .unwrap_or(ValueSource::File(base.join("data/master.key"))),
        None => ValueSource::File(base.join("data/master.key")),
    };
    let backend = match (&raw.sqlite, &raw.postgres) {
        (Some(_), Some(_)) => {
            e.at(
                &[Key("store"), Key("postgres")],
                "store.sqlite and store.postgres exclude each other: keep the one this gateway uses",
            );
            Backend::Sqlite(resolve(base, "data/keygate.db"))
        }
        (_, Some(pg)) => Backend::Postgres(postgres(e, pg, base)),
        (sqlite, None) => Backend::Sqlite(resolve(
            base,
            sqlite.as_deref().unwrap_or("data/keygate.db"),
        )),
    };
    let data_dir = match &backend {
        Backend::Sqlite(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        Backend::Postgres(_) => base.join("data"),
    };
    Store {
        backend,
        data_dir,
        master_key,
        retention: raw.retention.as_ref().map(|_| {
            duration(
                e,
                &[Key("store"), Key("retention")],
                &raw.retention,
                Duration::ZERO,
            )
        }),
        flush_interval: flush_interval(e, &raw.flush_interval),
        audit_retention: duration(
            e,
            &[Key("store"), Key("audit_retention")],
            &raw.audit_retention,
            DEFAULT_AUDIT_RETENTION,
        ),
    }
}

/// `store.postgres`. The URL itself is read (and checked) when the store
/// opens: it may come from a file or variable that is set only at run time.
fn postgres(e: &mut Errors<'_>, raw: &RawPostgres, base: &Path) -> Postgres {
    use Seg::Key;
    let at = |field: &'static str| [Key("store"), Key("postgres"), Key(field)];
    let url = match &raw.url {
        Some(src) => value_source(e, &at("url"), src, base),
        None => {
            e.at(
                &[Key("store"), Key("postgres")],
                "store.postgres needs a `url`, e.g. `url: { env: KEYGATE_DATABASE_URL }`",
            );
            None
        }
    }
    .unwrap_or_else(|| ValueSource::Env("KEYGATE_DATABASE_URL".into()));
    let pool = raw.pool_size.unwrap_or(DEFAULT_PG_POOL);
    if !(1..=MAX_PG_POOL).contains(&pool) {
        e.at(
            &at("pool_size"),
            "store.postgres.pool_size must be between 1 and 64",
        );
    }
    let pool_size = usize::try_from(pool.clamp(1, MAX_PG_POOL)).unwrap_or(8);
    let mut nonzero = |field: &'static str, raw: &Option<Scalar>, default: Duration| {
        let d = duration(e, &at(field), raw, default);
        if d.is_zero() {
            e.at(
                &at(field),
                format!("store.postgres.{field} must be longer than 0s"),
            );
            return default;
        }
        d
    };
    let ack_timeout = nonzero("ack_timeout", &raw.ack_timeout, DEFAULT_ACK_TIMEOUT);
    let lease = nonzero("lease", &raw.lease, DEFAULT_LEASE);
    let heartbeat = nonzero("heartbeat", &raw.heartbeat, DEFAULT_HEARTBEAT);
    if heartbeat.saturating_mul(2) >= lease {
        e.at(
            &at("heartbeat"),
            format!(
                "store.postgres.heartbeat ({}) must be under half the lease ({}), so one late beat does not end a live replica's lease",
                format_duration(heartbeat),
                format_duration(lease)
            ),
        );
    }
    if let Some(name) = &raw.replica
        && !valid_replica_name(name)
    {
        e.at(
            &at("replica"),
            "store.postgres.replica must be 1 to 63 letters, digits, `.`, `_` or `-`",
        );
    }
    Postgres {
        url,
        pool_size,
        ack_timeout,
        lease,
        heartbeat,
        replica: raw.replica.clone(),
    }
}

/// A replica name travels in `202` answers, logs and the `replicas`
/// table: kept to a host-name-like alphabet.
fn valid_replica_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `keys:`.
pub(super) fn keys(e: &mut Errors<'_>, raw: &RawKeys) -> Keys {
    use Seg::Key;
    let prefix = raw
        .prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
    if !valid_key_prefix(&prefix) {
        e.at(
            &[Key("keys"), Key("prefix")],
            "keys.prefix must be 1 to 16 letters, digits, `_` or `-`",
        );
    }
    // Bounded like an API key's `expires_in`: max_ttl is the lifetime of
    // the bootstrap, reset and default API keys, and past the bound their
    // millisecond expiry no longer fits the store (or `now + max_ttl`
    // overflows into a key that never expires).
    let max_ttl = raw.max_ttl.as_ref().map(|_| {
        let path = [Key("keys"), Key("max_ttl")];
        let d = duration(e, &path, &raw.max_ttl, MAX_KEY_DURATION);
        if d > MAX_KEY_DURATION {
            e.at(
                &path,
                format!(
                    "keys.max_ttl is too large; the longest allowed is {MAX_KEY_DURATION_TEXT}"
                ),
            );
            return MAX_KEY_DURATION;
        }
        d
    });
    Keys { prefix, max_ttl }
}

/// `store.flush_interval`: from 100ms (each tick is a store write and a
/// read) to 60s (SPEC §4: usage is at most a few seconds behind; a minute
/// is the most an operator could mean by that).
fn flush_interval(e: &mut Errors<'_>, raw: &Option<Scalar>) -> Duration {
    let path = [Seg::Key("store"), Seg::Key("flush_interval")];
    let d = duration(e, &path, raw, DEFAULT_FLUSH_INTERVAL);
    if !(MIN_FLUSH_INTERVAL..=MAX_FLUSH_INTERVAL).contains(&d) {
        e.at(
            &path,
            "store.flush_interval must be between 100ms and 60s (key usage is written at most this far behind)",
        );
        return DEFAULT_FLUSH_INTERVAL;
    }
    d
}

/// The connection limits of `server:`; every bad value is reported and
/// replaced by its default so validation can go on.
fn limits(e: &mut Errors<'_>, raw: &RawServer) -> Limits {
    use Seg::Key;
    let d = Limits::default();
    // Bounded above too: hyper adds these to `Instant::now()`, which
    // panics on overflow, so `10000000000000000000s` would kill an accept
    // loop at the first connection (see the `MAX_*` constants for why
    // each bound is far past any real need).
    let mut bounded =
        |field: &'static str, v: &Option<Scalar>, default: Duration, max: Duration| {
            let path = [Key("server"), Key(field)];
            let got = duration(e, &path, v, default);
            if got.is_zero() {
                e.at(&path, format!("{field} must be more than 0"));
                return default;
            }
            if got > max {
                e.at(
                    &path,
                    format!("{field} must be at most {}", format_duration(max)),
                );
                return default;
            }
            got
        };
    let header_read_timeout = bounded(
        "header_read_timeout",
        &raw.header_read_timeout,
        d.header_read_timeout,
        MAX_HEADER_READ_TIMEOUT,
    );
    let idle_timeout = bounded(
        "idle_timeout",
        &raw.idle_timeout,
        d.idle_timeout,
        MAX_IDLE_TIMEOUT,
    );
    let h2_keep_alive_interval = bounded(
        "h2_keep_alive_interval",
        &raw.h2_keep_alive_interval,
        d.h2_keep_alive_interval,
        MAX_H2_KEEP_ALIVE,
    );
    let h2_keep_alive_timeout = bounded(
        "h2_keep_alive_timeout",
        &raw.h2_keep_alive_timeout,
        d.h2_keep_alive_timeout,
        MAX_H2_KEEP_ALIVE,
    );
    let mut count = |field: &'static str, v: Option<u64>, max: u64, default: u64| match v {
        None => default,
        Some(n) if (1..=max).contains(&n) => n,
        Some(_) => {
            e.at(
                &[Key("server"), Key(field)],
                format!("{field} must be between 1 and {max}"),
            );
            default
        }
    };
    let max_connections = count(
        "max_connections",
        raw.max_connections,
        MAX_CONNECTIONS,
        d.max_connections as u64,
    );
    let max_concurrent_streams = count(
        "max_concurrent_streams",
        raw.max_concurrent_streams,
        u64::from(u32::MAX),
        u64::from(d.max_concurrent_streams),
    );
    let max_header_size = match &raw.max_header_size {
        None => d.max_header_size,
        Some(s) => {
            let path = [Key("server"), Key("max_header_size")];
            match parse_size(&s.as_text()) {
                Ok(n) if n >= MIN_HEADER_SIZE => u32::try_from(n).unwrap_or_else(|_| {
                    e.at(&path, "max_header_size must be under 4GiB");
                    d.max_header_size
                }),
                Ok(_) => {
                    e.at(&path, "max_header_size must be at least 8KiB");
                    d.max_header_size
                }
                Err(m) => {
                    e.at(&path, m);
                    d.max_header_size
                }
            }
        }
    };
    Limits {
        max_connections: usize::try_from(max_connections).unwrap_or(d.max_connections),
        header_read_timeout,
        idle_timeout,
        h2_keep_alive_interval,
        h2_keep_alive_timeout,
        max_header_size,
        max_concurrent_streams: u32::try_from(max_concurrent_streams)
            .unwrap_or(d.max_concurrent_streams),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;

    fn limits_of(yaml: &str) -> Result<Limits, Vec<ConfigError>> {
        crate::config::from_text(yaml, Path::new("/tmp/keygate.yaml"))
            .map(|c| c.server.limits)
            .map_err(|e| e.0)
    }

    /// The message of the error reported on `line`; panics if there is none.
    fn message_on(errs: &[ConfigError], line: usize) -> String {
        errs.iter()
            .find(|e| e.line == Some(line))
            .map(|e| e.message.clone())
            .unwrap_or_else(|| panic!("no error on line {line}: {errs:?}"))
    }

    #[test]
    fn connection_limits_default_and_parse() {
        assert_eq!(limits_of(""), Ok(Limits::default()));
        let l = limits_of(
            "server:\n  max_connections: 20\n  header_read_timeout: 500ms\n  idle_timeout: 2m\n  \
             h2_keep_alive_interval: 5s\n  h2_keep_alive_timeout: 3s\n  max_header_size: 16KiB\n  \
             max_concurrent_streams: 7\n",
        )
        .expect("valid");
        assert_eq!(
            l,
            Limits {
                max_connections: 20,
                header_read_timeout: Duration::from_millis(500),
                idle_timeout: Duration::from_secs(120),
                h2_keep_alive_interval: Duration::from_secs(5),
                h2_keep_alive_timeout: Duration::from_secs(3),
                max_header_size: 16 << 10,
                max_concurrent_streams: 7,
            }
        );
    }

    #[test]
    fn connection_limits_are_refused_with_positions() {
        let errs = limits_of(
            "server:\n  max_connections: 0\n  header_read_timeout: 0s\n  idle_timeout: soon\n  \
             max_header_size: 4KiB\n  max_concurrent_streams: 0\n  h2_keep_alive_interval: 0ms\n",
        )
        .expect_err("invalid");
        let at = |line: usize| message_on(&errs, line);
        assert!(at(2).contains("max_connections must be between 1"));
        assert!(at(3).contains("header_read_timeout must be more than 0"));
        assert!(at(4).contains("not a duration"));
        assert!(at(5).contains("at least 8KiB"));
        assert!(at(6).contains("max_concurrent_streams must be between 1"));
        assert!(at(7).contains("h2_keep_alive_interval must be more than 0"));
        assert_eq!(errs.len(), 6, "{errs:?}");
    }

    #[test]
    fn flush_interval_defaults_parses_and_is_bounded_with_positions() {
        let path = Path::new("/tmp/keygate.yaml");
        let of = |yaml: &str| crate::config::from_text(yaml, path).map(|c| c.store.flush_interval);
        assert_eq!(of("").ok(), Some(Duration::from_secs(2)));
        assert_eq!(
            of("store:\n  flush_interval: 250ms\n").ok(),
            Some(Duration::from_millis(250))
        );
        for (bad, needle) in [
            ("0s", "between 100ms and 60s"),
            ("50ms", "between 100ms and 60s"),
            ("2m", "between 100ms and 60s"),
            ("often", "not a duration"),
        ] {
            let errs = of(&format!("store:\n  flush_interval: {bad}\n"))
                .expect_err(bad)
                .0;
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!((errs[0].line, errs[0].column), (Some(2), Some(3)), "{bad}");
            assert!(errs[0].message.contains(needle), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn audit_retention_defaults_to_400d_and_is_read_like_retention() {
        let path = Path::new("/tmp/keygate.yaml");
        let of = |yaml: &str| crate::config::from_text(yaml, path).map(|c| c.store.audit_retention);
        assert_eq!(of("").ok(), Some(Duration::from_secs(400 * 86_400)));
        assert_eq!(
            of("store:\n  audit_retention: 90d\n").ok(),
            Some(Duration::from_secs(90 * 86_400))
        );
        for bad in ["forever", "-1d"] {
            let errs = of(&format!(
                "store:\n  retention: 1d\n  audit_retention: {bad}\n"
            ))
            .expect_err(bad)
            .0;
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!((errs[0].line, errs[0].column), (Some(3), Some(3)), "{bad}");
            assert!(
                errs[0].message.contains("not a duration"),
                "{bad}: {errs:?}"
            );
        }
    }

    #[test]
    fn connection_durations_are_bounded_above() {
        let errs = limits_of(
            "server:\n  header_read_timeout: 10000000000000000000s\n  idle_timeout: 2d\n  \
             h2_keep_alive_interval: 99999999999999d\n  h2_keep_alive_timeout: 25h\n",
        )
        .expect_err("invalid");
        let at = |line: usize| message_on(&errs, line);
        assert!(at(2).contains("header_read_timeout must be at most 1h"));
        assert!(at(3).contains("idle_timeout must be at most 1d"));
        assert!(at(4).contains("h2_keep_alive_interval must be at most 1d"));
        assert!(at(5).contains("h2_keep_alive_timeout must be at most 1d"));
        assert_eq!(errs.len(), 4, "{errs:?}");
        let l = limits_of(
            "server:\n  header_read_timeout: 1h\n  idle_timeout: 1d\n  \
             h2_keep_alive_interval: 24h\n  h2_keep_alive_timeout: 86400s\n",
        )
        .expect("the bounds themselves are valid");
        assert_eq!(l.header_read_timeout, MAX_HEADER_READ_TIMEOUT);
        assert_eq!(l.idle_timeout, MAX_IDLE_TIMEOUT);
    }

    #[test]
    fn store_backend_is_sqlite_by_default_or_postgres_with_defaults() {
        let path = Path::new("/tmp/keygate.yaml");
        let c = crate::config::from_text("", path).expect("valid");
        assert!(
            matches!(&c.store.backend, Backend::Sqlite(p) if p == Path::new("/tmp/data/keygate.db"))
        );
        assert_eq!(c.store.data_dir, Path::new("/tmp/data"));
        let c = crate::config::from_text(
            "store:\n  postgres:\n    url: { env: KEYGATE_DATABASE_URL }\n",
            path,
        )
        .expect("valid");
        let Backend::Postgres(pg) = &c.store.backend else {
            panic!("{:?}", c.store.backend)
        };
        assert!(matches!(&pg.url, ValueSource::Env(n) if n == "KEYGATE_DATABASE_URL"));
        assert_eq!(pg.pool_size, 8);
        assert_eq!(pg.ack_timeout, Duration::from_secs(2));
        assert_eq!(pg.lease, Duration::from_secs(30));
        assert_eq!(pg.heartbeat, Duration::from_secs(1));
        assert_eq!(pg.replica, None);
        assert_eq!(c.store.data_dir, Path::new("/tmp/data"));
        let c = crate::config::from_text(
            "store:\n  postgres:\n    url: { file: db.url }\n    pool_size: 2\n    ack_timeout: 500ms\n    lease: 10s\n    heartbeat: 2s\n    replica: gw-1\n",
            path,
        )
        .expect("valid");
        let Backend::Postgres(pg) = &c.store.backend else {
            panic!("{:?}", c.store.backend)
        };
        assert!(matches!(&pg.url, ValueSource::File(p) if p == Path::new("/tmp/db.url")));
        assert_eq!(
            (pg.pool_size, pg.ack_timeout, pg.lease, pg.heartbeat),
            (
                2,
                Duration::from_millis(500),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert_eq!(pg.replica.as_deref(), Some("gw-1"));
    }

    #[test]
    fn postgres_store_errors_point_at_the_field() {
        let path = Path::new("/tmp/keygate.yaml");
        let errs = |yaml: &str| crate::config::from_text(yaml, path).expect_err(yaml).0;
        let e = errs("store:\n  sqlite: k.db\n  postgres:\n    url: { env: DB }\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, Some(3));
        assert!(e[0].message.contains("exclude each other"), "{e:?}");
        let e = errs("store:\n  postgres:\n    pool_size: 4\n");
        assert!(message_on(&e, 2).contains("needs a `url`"), "{e:?}");
        let e = errs(
            "store:\n  postgres:\n    url: { literal: \"postgres://u:hunter2@db/k\" }\n    pool_size: 0\n    lease: 2s\n    heartbeat: 1s\n    replica: \"a b\"\n    ack_timeout: 0s\n",
        );
        assert!(message_on(&e, 4).contains("between 1 and 64"), "{e:?}");
        assert!(message_on(&e, 6).contains("under half the lease"), "{e:?}");
        assert!(message_on(&e, 7).contains("replica must be"), "{e:?}");
        assert!(message_on(&e, 8).contains("longer than 0s"), "{e:?}");
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e.iter().all(|e| !e.message.contains("hunter2")),
            "never the URL's password: {e:?}"
        );
    }
}
