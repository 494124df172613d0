//! Who may use an `auth: none` sidecar port: local *programs*, not web
//! pages. Such a port injects the upstream secret into whatever reaches
//! it, and every web page open in a browser on the same machine can reach
//! `127.0.0.1`: with a no-CORS "simple" request, or by DNS rebinding
//! (`evil.example` first resolving to the attacker, then to `127.0.0.1`,
//! so the page's own origin now talks to the sidecar). So a request is
//! refused when
//!
//! - its `Host` (HTTP/1.1) or `:authority` (HTTP/2) is not `localhost` or
//!   a loopback literal (`127.0.0.0/8`, `[::1]`), port or not: a rebound
//!   name keeps the attacker's host name there (RFC 9110 §7.2);
//! - it carries `Origin` (RFC 6454 §7; browsers send it on every CORS and
//!   every non-GET request) or `Sec-Fetch-Site: cross-site`/`same-site`
//!   (Fetch Metadata, sent on no-CORS requests too).
//!
//! It does not apply to `auth: api_key` connectors: there a page would
//! need the caller's key, which it cannot forge. It does not make the
//! port safe for browsers to use on purpose; that is not a sidecar's job.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::Uri;
use http::header::{HOST, HeaderMap, HeaderName, ORIGIN};
use http::uri::Authority;

use crate::error::GatewayError;

/// Fetch Metadata request header (W3C Fetch Metadata §2.4).
pub const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Refuses a request to an `auth: none` port that a browser could have
/// sent on a web page's behalf; see the module doc.
pub fn check(uri: &Uri, headers: &HeaderMap) -> Result<(), GatewayError> {
    let authorities = uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .into_iter()
        .chain(headers.get_all(HOST).iter().map(|v| v.as_bytes()));
    for a in authorities {
        if !is_local_authority(a) {
            return Err(GatewayError::NotLocal(
                "this sidecar port only answers requests addressed to localhost or a loopback address",
            ));
        }
    }
    if headers.contains_key(ORIGIN) {
        return Err(GatewayError::NotLocal(
            "this sidecar port does not answer browser requests (an Origin header was sent)",
        ));
    }
    for v in headers.get_all(SEC_FETCH_SITE) {
        let site = v.as_bytes();
        if site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site") {
            return Err(GatewayError::NotLocal(
                "this sidecar port does not answer requests made by other web sites",
            ));
        }
    }
    Ok(())
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_local_authority(raw: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(raw) else {
        return false;
    };
    // A `Host` is `host[:port]` (RFC 9110 §7.2), never with userinfo.
    if text.contains('@') {
        return false;
    }
    let Ok(a) = text.parse::<Authority>() else {
        return false;
    };
    let host = a.host();
    // `http::uri::Authority` lets `localhost:notaport` through.
    let port_ok = match text.get(host.len()..) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok()),
        None => false,
    };
    if !port_ok {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    // Strict dotted-quad only: `127.1` or octal spellings are refused.
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn origin_form() -> Uri {
        Uri::from_static("/v1/x")
    }

    #[test]
    fn loopback_hosts_pass() {
        for host in [
            "localhost",
            "LOCALHOST:9001",
            "127.0.0.1",
            "127.0.0.1:9001",
            "127.9.8.7:1",
            "[::1]",
            "[::1]:9001",
        ] {
            assert_eq!(
                check(&origin_form(), &with(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        // No Host at all (HTTP/1.0 tools): no browser sends that.
        assert_eq!(check(&origin_form(), &HeaderMap::new()), Ok(()));
        let h2 = Uri::from_static("http://localhost:9001/v1/x");
        assert_eq!(check(&h2, &HeaderMap::new()), Ok(()));
        let same_origin = with(&[("host", "localhost"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(check(&origin_form(), &same_origin), Ok(()));
    }

    #[test]
    fn other_hosts_and_browser_requests_are_refused() {
        for host in [
            "evil.example",
            "evil.example:9001",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.1",
            "0177.0.0.1",
            "0.0.0.0:9001",
            "10.0.0.1",
            "[::ffff:8.8.8.8]",
            "user@localhost",
            "localhost:notaport",
            "",
        ] {
            assert!(
                check(&origin_form(), &with(&[("host", host)])).is_err(),
                "{host}"
            );
        }
        let two = with(&[("host", "localhost"), ("host", "evil.example")]);
        assert!(check(&origin_form(), &two).is_err());
        let h2 = Uri::from_static("http://evil.example:9001/v1/x");
        assert!(check(&h2, &with(&[("host", "localhost")])).is_err());
        for (k, v) in [
            ("origin", "https://evil.example"),
            ("origin", "null"),
            ("origin", "http://localhost:9001"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let h = with(&[("host", "127.0.0.1:9001"), (k, v)]);
            assert!(check(&origin_form(), &h).is_err(), "{k}: {v}");
        }
    }
}
