//! What a cert dir holds: each certificate's facts, read without changing anything.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::provider;
use super::sans::{canonical_ip, San};
use super::{Pem, TlsError, RENEW_BEFORE};

/// What one certificate on disk says, as far as the reuse decision cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub sans: BTreeSet<San>,
    /// Signed by `ca/cert.pem` (for the CA itself: self-signed, a CA) and
    /// with the extended key usage its role needs.
    pub issued_by_ca: bool,
    /// Its private key belongs to it.
    pub key_matches: bool,
    /// Its `ca.pem` copy is `ca/cert.pem` (always true for the CA).
    pub ca_copy_matches: bool,
}

impl CertFacts {
    /// Valid now, and still for [`RENEW_BEFORE`].
    fn fresh(&self, now: SystemTime) -> bool {
        self.not_before <= now && now + RENEW_BEFORE < self.not_after
    }

    pub(super) fn usable(&self, now: SystemTime) -> bool {
        self.fresh(now) && self.issued_by_ca && self.key_matches && self.ca_copy_matches
    }
}

/// What the cert dir holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub present: BTreeSet<Pem>,
    /// Facts of each certificate, where it and `ca/cert.pem` are present.
    pub ca: Option<CertFacts>,
    pub server: Option<CertFacts>,
    pub client: Option<CertFacts>,
}

/// Reads what `dir` holds. Certificates that do not parse are errors: they
/// are someone's files, and replacing them would hide the problem.
pub fn inspect(dir: &Path) -> Result<Inventory, TlsError> {
    let mut inv = Inventory::default();
    for file in Pem::ALL {
        let path = dir.join(file.rel());
        match fs::symlink_metadata(&path) {
            Ok(_) => {
                inv.present.insert(file);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(TlsError::Io {
                    what: "stat",
                    path,
                    err,
                })
            }
        }
    }
    // Without the CA's key there is nothing to check against (bring your
    // own, or an incomplete set): what is present is all `plan` needs.
    if !(inv.present.contains(&Pem::CaCert) && inv.present.contains(&Pem::CaKey)) {
        return Ok(inv);
    }
    let ca_pem = read(dir, Pem::CaCert)?;
    let ca_der = cert_der(dir, Pem::CaCert, &ca_pem)?;
    let ca = parse_cert(dir, Pem::CaCert, &ca_der)?;
    let ca_facts = |key: Option<Pem>, copy: Option<Pem>, der: &CertificateDer<'_>, eku| {
        facts(dir, &ca, &ca_pem, key, copy, der, eku)
    };
    inv.ca = Some(ca_facts(Some(Pem::CaKey), None, &ca_der, Eku::Ca)?);
    for (cert, key, copy, eku, slot) in [
        (
            Pem::ServerCert,
            Pem::ServerKey,
            Pem::ServerCa,
            Eku::Server,
            &mut inv.server,
        ),
        (
            Pem::ClientCert,
            Pem::ClientKey,
            Pem::ClientCa,
            Eku::Client,
            &mut inv.client,
        ),
    ] {
        let all = [cert, key, copy];
        if all.iter().all(|f| inv.present.contains(f)) {
            let der = cert_der(dir, cert, &read(dir, cert)?)?;
            *slot = Some(ca_facts(Some(key), Some(copy), &der, eku)?);
        }
    }
    Ok(inv)
}

#[derive(Clone, Copy)]
pub(super) enum Eku {
    Ca,
    Server,
    Client,
}

pub(super) fn facts(
    dir: &Path,
    ca: &x509_parser::certificate::X509Certificate<'_>,
    ca_pem: &[u8],
    key: Option<Pem>,
    copy: Option<Pem>,
    der: &CertificateDer<'_>,
    eku: Eku,
) -> Result<CertFacts, TlsError> {
    let file = match eku {
        Eku::Ca => Pem::CaCert,
        Eku::Server => Pem::ServerCert,
        Eku::Client => Pem::ClientCert,
    };
    let cert = parse_cert(dir, file, der)?;
    let validity = cert.validity();
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(n) => {
                        Some(San::Dns(n.to_ascii_lowercase()))
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        ip_from_bytes(bytes).map(|ip| San::Ip(canonical_ip(ip)))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let signed = cert.verify_signature(Some(ca.public_key())).is_ok();
    let usage_ok = match eku {
        Eku::Ca => cert.is_ca(),
        Eku::Server | Eku::Client => {
            match cert.extended_key_usage().ok().flatten().map(|e| e.value) {
                None => true,
                Some(ext) => {
                    ext.any
                        || match eku {
                            Eku::Server => ext.server_auth,
                            _ => ext.client_auth,
                        }
                }
            }
        }
    };
    let key_matches = match key {
        Some(key) => key_spki(dir, key)?.is_some_and(|spki| spki == cert.public_key().raw),
        None => true,
    };
    let ca_copy_matches = match copy {
        Some(copy) => read(dir, copy)? == ca_pem,
        None => true,
    };
    Ok(CertFacts {
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
        sans,
        issued_by_ca: signed && usage_ok,
        key_matches,
        ca_copy_matches,
    })
}

pub(super) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

pub(super) fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

pub(super) fn read(dir: &Path, file: Pem) -> Result<Vec<u8>, TlsError> {
    read_path(&dir.join(file.rel()))
}

pub(super) fn read_path(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|err| TlsError::Io {
        what: "read",
        path: path.to_path_buf(),
        err,
    })
}

pub(super) fn bad(dir: &Path, file: Pem, why: impl fmt::Display) -> TlsError {
    bad_path(&dir.join(file.rel()), why)
}

pub(super) fn bad_path(path: &Path, why: impl fmt::Display) -> TlsError {
    TlsError::Bad {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Every certificate of a PEM file (a chain, or several CAs), at least one.
pub(super) fn cert_chain(
    dir: &Path,
    file: Pem,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    chain_at(&dir.join(file.rel()), pem)
}

pub(super) fn chain_at(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad_path(path, format!("not a PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(bad_path(path, "holds no PEM CERTIFICATE block"));
    }
    Ok(certs)
}

/// The first certificate of a PEM file.
pub(super) fn cert_der(
    dir: &Path,
    file: Pem,
    pem: &[u8],
) -> Result<CertificateDer<'static>, TlsError> {
    Ok(cert_chain(dir, file, pem)?.swap_remove(0))
}

pub(super) fn parse_cert<'a>(
    dir: &Path,
    file: Pem,
    der: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, TlsError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|err| bad(dir, file, format!("not an X.509 certificate: {err}")))
}

pub(super) fn private_key(dir: &Path, file: Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(dir, file)?)
        .map_err(|err| bad(dir, file, format!("not a PEM private key: {err}")))
}

/// The SubjectPublicKeyInfo of a private key, or `None` when the crypto
/// provider cannot tell (then the handshake setup checks the pair).
pub(super) fn key_spki(dir: &Path, file: Pem) -> Result<Option<Vec<u8>>, TlsError> {
    let key = private_key(dir, file)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|err| bad(dir, file, format!("unusable private key: {err}")))?;
    Ok(signing.public_key().map(|spki| spki.as_ref().to_vec()))
}
