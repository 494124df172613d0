//! The pooled outbound HTTP client, shared by the proxy and (later) the
//! token refresher, so `tokens/` never depends on `proxy/`.
//!
//! One client per connector: its trust roots are the web PKI roots plus the
//! connector's `ca_file`, HTTP/1.1 and h2 are chosen by ALPN, connections are
//! kept alive in the pool with `TCP_NODELAY`, and connecting is bounded by
//! `timeouts.connect`. The response timeout is applied by the caller, since
//! it covers only the wait for response headers, not the body.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

use crate::body::Body;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Idle pooled connections are closed after this; most API servers close
/// theirs after 60–120 s, so keygate lets go first and avoids racing them.
const POOL_IDLE: Duration = Duration::from_secs(55);

/// Why an outbound client could not be built: its `ca_file` (named, so the
/// operator knows which connector or token to fix) or the TLS library.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read ca_file {}: {source}", path.display())]
    Read { path: PathBuf, source: pem::Error },
    #[error("ca_file {} is not valid PEM: {source}", path.display())]
    Pem { path: PathBuf, source: pem::Error },
    #[error("ca_file {} holds no certificate", path.display())]
    Empty { path: PathBuf },
    /// A certificate rustls refuses as a trust root.
    #[error("ca_file {}: {source}", path.display())]
    Rejected {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The crypto provider offers none of the default protocol versions.
    #[error("TLS client setup: {0}")]
    Tls(#[source] rustls::Error),
}

pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|source| BuildError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| BuildError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(BuildError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|source| BuildError::Rejected {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(BuildError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

pub fn build(ca_file: Option<&Path>, connect_timeout: Duration) -> Result<HttpClient, BuildError> {
    let tls = tls_config(ca_file)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .timer(TokioTimer::new())
        .build(https))
}
