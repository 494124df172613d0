//! Request target → (connector, upstream path). The upstream host is fixed
//! by the connector; nothing in the request can move it: absolute-form
//! targets, `CONNECT`, dot segments (plain or percent-encoded), empty
//! segments (`//host`), backslashes and `@` in the leading segments are all
//! refused with 400 before routing.

use http::{Method, Request, Uri, Version};

use crate::config::Upstream;
use crate::error::GatewayError;

fn bad(msg: &str) -> GatewayError {
    GatewayError::BadRequest(msg.to_string())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one segment; `None` if an escape is malformed.
fn decode(seg: &str) -> Option<Vec<u8>> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Refuses any target that could reach anything but the connector's base.
pub fn check_target<B>(req: &Request<B>) -> Result<(), GatewayError> {
    if req.method() == Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    let uri = req.uri();
    // HTTP/2 always carries :scheme and :authority; only HTTP/1 can send an
    // absolute-form target, which would name another host.
    if req.version() < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Err(bad("absolute-form request targets are not accepted"));
    }
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(bad("the request target must be a path"));
    }
    let mut segs = path[1..].split('/').enumerate().peekable();
    while let Some((i, seg)) = segs.next() {
        if seg.is_empty() && segs.peek().is_some() {
            return Err(bad("empty path segments (`//`) are not accepted"));
        }
        // Only segments with escapes need decoding (and an allocation).
        let decoded: std::borrow::Cow<'_, [u8]> = if seg.contains('%') {
            decode(seg)
                .ok_or_else(|| bad("malformed percent-encoding in the path"))?
                .into()
        } else {
            seg.as_bytes().into()
        };
        if decoded
            .iter()
            .any(|b| *b == b'\\' || *b < 0x20 || *b == 0x7f)
        {
            return Err(bad(
                "backslashes and control characters are not accepted in the path",
            ));
        }
        if decoded
            .split(|b| *b == b'/')
            .any(|p| p == b"." || p == b"..")
        {
            return Err(bad("dot segments (`.`, `..`) are not accepted in the path"));
        }
        if i < 2 && decoded.contains(&b'@') {
            return Err(bad("`@` is not accepted in the leading path segments"));
        }
    }
    Ok(())
}

/// Splits `/<connector>/<rest>` on the shared listener. `rest` keeps its
/// leading slash, or is empty for `/<connector>`.
pub fn split_connector(path: &str) -> Option<(&str, &str)> {
    let p = path.strip_prefix('/')?;
    let (name, rest) = match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    };
    (!name.is_empty()).then_some((name, rest))
}

/// `<upstream base><rest>?<query>` with the connector's scheme and host.
pub fn upstream_uri(up: &Upstream, rest: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let mut pq = String::with_capacity(
        up.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
    );
    pq.push_str(&up.base_path);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| bad("the request target cannot be forwarded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> Request<()> {
        Request::builder().uri(target).body(()).expect("request")
    }

    #[test]
    fn escapes_are_refused() {
        for t in [
            "/stripe/../admin",
            "/stripe/%2e%2e/admin",
            "/stripe/%2E%2e/admin",
            "/stripe/.%2e/admin",
            "/stripe/./x",
            "/stripe//evil.example/x",
            "/stripe/@evil.example/x",
            "/stripe@evil.example/x",
            "/stripe/%40evil.example",
            "/stripe/a%5c..%5cb",
            "/stripe/..%2f..%2fetc",
            "/stripe/%zz",
            "http://evil.example/stripe/v1",
        ] {
            assert!(check_target(&req(t)).is_err(), "{t} must be refused");
        }
        for t in [
            "/stripe/v1/charges",
            "/stripe/v1/",
            "/stripe",
            "/stripe/v1/users/a@b.example",
            "/stripe/v1/x%20y",
        ] {
            assert!(check_target(&req(t)).is_ok(), "{t} must pass");
        }
    }

    #[test]
    fn splits_and_joins() {
        assert_eq!(split_connector("/stripe/v1/x"), Some(("stripe", "/v1/x")));
        assert_eq!(split_connector("/stripe"), Some(("stripe", "")));
        assert_eq!(split_connector("/"), None);
        let up = Upstream {
            scheme: http::uri::Scheme::HTTPS,
            authority: "api.example.com".parse().expect("authority"),
            base_path: "/base".into(),
        };
        let u = upstream_uri(&up, "/v1/x", Some("a=1")).expect("uri");
        assert_eq!(u.to_string(), "https://api.example.com/base/v1/x?a=1");
        let bare = Upstream {
            base_path: String::new(),
            ..up
        };
        assert_eq!(
            upstream_uri(&bare, "", None).expect("uri").to_string(),
            "https://api.example.com/"
        );
    }
}
