//! The TLS listener's certificate, behind an `ArcSwap` so a renewed
//! certificate on disk is served to the next new connection without
//! dropping the open ones. A read or parse failure, or a private key that
//! does not belong to the certificate (a renewal that replaced one file
//! but not the other), keeps the last good certificate; the error is
//! logged and shown by `GET /api/v1/status`. Serving a mismatched pair
//! would fail every handshake.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsFiles;

#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Why the listener's certificate could not be (re)loaded. Names the
/// files, never their content.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read TLS certificate {}: {source}", path.display())]
    ReadCert { path: PathBuf, source: pem::Error },
    #[error("TLS certificate {} is not valid PEM: {source}", path.display())]
    CertPem { path: PathBuf, source: pem::Error },
    #[error("TLS certificate {} holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("cannot read TLS key {}: {source}", path.display())]
    ReadKey { path: PathBuf, source: pem::Error },
    /// A key type or encoding rustls cannot sign with.
    #[error("TLS key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::Error,
    },
    /// A renewal that replaced one file but not the other.
    #[error("TLS key {} does not match certificate {}", key.display(), cert.display())]
    Mismatch { key: PathBuf, cert: PathBuf },
}

pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, CertError> {
    let cert_path = || files.cert.clone();
    let key_path = || files.key.clone();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|source| CertError::ReadCert {
            path: cert_path(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::CertPem {
            path: cert_path(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CertError::NoCert { path: cert_path() });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| CertError::ReadKey {
        path: key_path(),
        source,
    })?;
    let signer = any_supported_type(&key).map_err(|source| CertError::Key {
        path: key_path(),
        source,
    })?;
    let ck = CertifiedKey::new(certs, signer);
    match ck.keys_match() {
        // A key type whose public half rustls cannot derive is let through,
        // as rustls itself does in `CertifiedKey::from_der`.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(_) => Err(CertError::Mismatch {
            key: key_path(),
            cert: cert_path(),
        }),
    }
}

impl CertResolver {
    pub fn new(files: &TlsFiles) -> Result<Self, CertError> {
        Ok(CertResolver {
            current: ArcSwap::from_pointee(load_certified_key(files)?),
        })
    }

    /// Re-reads the files; on failure (unreadable, invalid, or a key that
    /// is not the certificate's) the current certificate stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), CertError> {
        let ck = load_certified_key(files)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }
}

/// Fails only if the crypto provider offers none of the default protocol
/// versions.
pub fn server_config(
    resolver: Arc<CertResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
