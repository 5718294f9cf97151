//! The rustls server configuration the proxy serves with (client certificates required).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::inspect::{bad_path, chain_at, read_path};
use super::{Pem, TlsError};

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The proxy's TLS configuration from `dir`: `server/cert.pem` (with any
/// chain after it) and `server/key.pem`, and client certificates required
/// and verified against `server/ca.pem` (`dockerd --tlsverify`).
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_from_files(
        &dir.join(Pem::ServerCa.rel()),
        &dir.join(Pem::ServerCert.rel()),
        &dir.join(Pem::ServerKey.rel()),
    )
}

/// The same configuration from three files anywhere, as dockerd names them:
/// `--tlsverify --tlscacert CA --tlscert CERT --tlskey KEY`. Client
/// certificates are required and verified against `ca` (one or more CAs).
pub fn server_config_from_files(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let rustls_err = |err| TlsError::Rustls {
        dir: cert.parent().unwrap_or(cert).to_path_buf(),
        err,
    };
    let chain = chain_at(cert, &read_path(cert)?)?;
    let key = PrivateKeyDer::from_pem_slice(&read_path(key)?)
        .map_err(|err| bad_path(key, format!("not a PEM private key: {err}")))?;
    let mut roots = RootCertStore::empty();
    for der in chain_at(ca, &read_path(ca)?)? {
        roots
            .add(der)
            .map_err(|err| bad_path(ca, format!("not a usable CA: {err}")))?;
    }
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| bad_path(ca, format!("not a usable CA: {err}")))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(rustls_err)?;
    Ok(Arc::new(config))
}
