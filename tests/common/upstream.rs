//! A real upstream for tests: a hyper server on 127.0.0.1:0 (plain or TLS
//! with an rcgen-made CA) that records each request and answers by path:
//!
//! - `/slow/<ms>/...`       waits, then answers 200
//! - `/download/<bytes>`    streams that many bytes (deterministic pattern)
//! - `/drip/<n>/<ms>`       streams n 1 KiB chunks, one every ms milliseconds
//! - `/status/<code>`       answers with that status
//! - `/require/<token>`     401 unless `Authorization: Bearer <token>`
//! - `/require-tok/<n>`     401 unless `Authorization: Bearer tok-<n>`
//! - anything else          reads the body, answers 200 with a JSON summary
//!
//! Received requests are kept in `requests()`, body hashed (SHA-256).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: usize,
    pub body_sha256: String,
    pub version: http::Version,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// PEM of the CA that signed the server certificate (TLS only).
    pub ca_pem: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn pattern(n: usize) -> Vec<u8> {
    (0..=250u8).cycle().take(n).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

type Body = BoxBody<Bytes, Infallible>;

#[expect(
    clippy::disallowed_methods,
    reason = "records a request the gateway under test sent, whose size the test chose"
)]
async fn answer(req: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body_len: bytes.len(),
        body_sha256: sha256_hex(&bytes),
        version: parts.version,
    });
    let mut segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.first() == Some(&"base") {
        segs.remove(0);
    }
    match segs.as_slice() {
        ["slow", ms, ..] => {
            let ms: u64 = ms.parse().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json(StatusCode::OK, serde_json::json!({"slow": ms}))
        }
        ["require" | "require-tok", token, ..] => {
            // 401 unless the request carries `Bearer <token>` (`require-tok/N`
            // means `tok-N`, so the value itself never appears in a URL).
            let want = if segs[0] == "require-tok" {
                format!("Bearer tok-{token}")
            } else {
                format!("Bearer {token}")
            };
            let got = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if got == Some(want.as_str()) {
                json(
                    StatusCode::OK,
                    serde_json::json!({"ok": true, "body_sha256": sha256_hex(&bytes)}),
                )
            } else {
                json(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": "stale token"}),
                )
            }
        }
        ["status", code, ..] => {
            let code = StatusCode::from_u16(code.parse().unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = json(code, serde_json::json!({"upstream_error": code.as_u16()}));
            r.headers_mut()
                .insert("x-upstream", "yes".parse().expect("hv"));
            r
        }
        ["echo-headers", ..] => {
            // The request headers as seen here, for checks made from outside
            // this process (the console's browser tests).
            let headers: serde_json::Map<String, serde_json::Value> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            json(StatusCode::OK, serde_json::json!({ "headers": headers }))
        }
        ["drip", n, ms, ..] => {
            // n chunks of 1 KiB, one every ms milliseconds.
            let n: usize = n.parse().unwrap_or(1);
            let ms: u64 = ms.parse().unwrap_or(10);
            let stream = futures_util::stream::unfold(0usize, move |i| async move {
                if i == n {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
                        b"abcdefghijklmnopqrstuvwxyz"[i % 26];
                        1024
                    ]))),
                    i + 1,
                ))
            });
            Response::new(BoxBody::new(StreamBody::new(stream)))
        }
        ["download", n, ..] => {
            let n: usize = n.parse().unwrap_or(0);
            let data = pattern(n);
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = data
                .chunks(64 * 1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let stream = futures_util::stream::iter(chunks);
            Response::new(BoxBody::new(StreamBody::new(stream)))
        }
        _ => json(
            StatusCode::OK,
            serde_json::json!({"path": path, "body_len": bytes.len(), "body_sha256": sha256_hex(&bytes)}),
        ),
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::from(v.to_string()))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("hv"));
    r
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_inner(None).await
    }

    /// HTTPS with a fresh CA; `ca_pem` trusts it.
    pub async fn start_tls() -> Upstream {
        let (ca_pem, server_config) = test_tls();
        Self::start_inner(Some((ca_pem, server_config))).await
    }

    async fn start_inner(tls: Option<(String, Arc<rustls::ServerConfig>)>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let acceptor = tls
            .as_ref()
            .map(|(_, cfg)| tokio_rustls::TlsAcceptor::from(Arc::clone(cfg)));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let seen = Arc::clone(&s2);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let seen = Arc::clone(&seen);
                        async move { Ok::<_, Infallible>(answer(req, seen).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(a) => {
                            if let Ok(s) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            ca_pem: tls.map(|t| t.0),
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.requests().pop().expect("upstream saw no request")
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it.
pub fn test_tls() -> (String, Arc<rustls::ServerConfig>) {
    let (ca_pem, cert_pem, key_pem) = make_certs();
    let cfg = server_config(&cert_pem, &key_pem, &[b"h2", b"http/1.1"]);
    (ca_pem, cfg)
}

/// A rustls server config for a PEM certificate chain and key, offering
/// `alpn` in that order.
pub fn server_config(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// (CA PEM, leaf certificate PEM, leaf key PEM).
pub fn make_certs() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "keygate test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}
