//! An `http_request` token endpoint's answer (untrusted bytes) → token and
//! lifetime, exactly as `tokens::fetch` reads it, for each way a config can
//! say where the lifetime is; then the refresh schedule built from it.
//! Invariants: no panic; a token taken is non-empty and a valid header
//! value; a lifetime can be added to any clock reading the refresher uses.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;
use keygate::fuzzing::{Expiry, read_answer, refresh_due};
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    // A fixed clock keeps runs reproducible.
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let cases = [
        ("/access_token", Expiry::In("/expires_in".into())),
        ("/access_token", Expiry::At("/expires_at".into())),
        ("/data/0/tok~1en", Expiry::In("/data/0/ttl".into())),
        ("", Expiry::Never),
        ("/token", Expiry::Ttl(Duration::from_secs(3600))),
    ];
    for (pointer, expiry) in &cases {
        let Ok(fetched) = read_answer(pointer, expiry, data, now) else {
            continue;
        };
        let token = fetched.secret.expose();
        assert!(!token.is_empty());
        assert!(
            HeaderValue::from_str(token).is_ok(),
            "token is no header value"
        );
        if let Some(lifetime) = fetched.lifetime {
            let started = Instant::now();
            // As `tokens::refresh` does: due time, expiry instant, wall expiry.
            // With the default refresh_before (60 s) and min_refresh_interval
            // (10 s): the refresh is never due before the interval has passed.
            let min = Duration::from_secs(10);
            let due = refresh_due(started, lifetime, Duration::from_secs(60), min);
            assert!(due >= started + min, "refresh due sooner than the interval");
            assert!(started.checked_add(lifetime).is_some(), "{lifetime:?}");
            assert!(now.checked_add(lifetime).is_some(), "{lifetime:?}");
        }
    }
});
