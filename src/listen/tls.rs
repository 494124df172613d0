//! The TLS listener's certificate, behind an `ArcSwap` so a renewed
//! certificate on disk is served to the next new connection without
//! dropping the open ones. A read or parse failure, or a private key that
//! does not belong to the certificate (a renewal that replaced one file
//! but not the other), keeps the last good certificate; the error is
//! logged and shown by `GET /api/v1/status`. Serving a mismatched pair
//! would fail every handshake.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
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

pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "TLS certificate {} is not valid PEM: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {} holds no certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read TLS key {}: {e}", files.key.display()))?;
    let signer =
        any_supported_type(&key).map_err(|e| format!("TLS key {}: {e}", files.key.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    match ck.keys_match() {
        // A key type whose public half rustls cannot derive is let through,
        // as rustls itself does in `CertifiedKey::from_der`.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(_) => Err(format!(
            "TLS key {} does not match certificate {}",
            files.key.display(),
            files.cert.display()
        )),
    }
}

impl CertResolver {
    pub fn new(files: &TlsFiles) -> Result<Self, String> {
        Ok(CertResolver {
            current: ArcSwap::from_pointee(load_certified_key(files)?),
        })
    }

    /// Re-reads the files; on failure (unreadable, invalid, or a key that
    /// is not the certificate's) the current certificate stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), String> {
        let ck = load_certified_key(files)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }
}

pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
