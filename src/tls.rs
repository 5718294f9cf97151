//! `DOCKER_TLS_CERTDIR`: docker:dind's certificate layout, generated with
//! rcgen or reused, and the rustls configuration the proxy serves with.
//!
//! The layout is docker:dind's (docker-library/docker `dockerd-entrypoint.sh`):
//!
//! ```text
//! ca/key.pem      ca/cert.pem                    the CA (keyCertSign)
//! server/key.pem  server/cert.pem  server/ca.pem the server (serverAuth, SANs)
//! client/key.pem  client/cert.pem  client/ca.pem the client (clientAuth)
//! ```
//!
//! Differences from docker:dind, each on purpose:
//! - keys are ECDSA P-256 (fast to make, what Go's and rustls' TLS prefer),
//!   not RSA 4096; certificates are X.509 v3 (RFC 5280), valid 825 days;
//! - what exists is **reused** while it is complete, valid for another
//!   [`RENEW_BEFORE`], signed by the CA and (server) covers every wanted SAN.
//!   Otherwise only what is stale is regenerated: the CA is kept as long as it
//!   is valid, so clients keep working. docker:dind regenerates every public
//!   certificate at every start, which races when boxes share a directory
//!   (docker/cli#6102); here generation runs under an exclusive `flock` and
//!   every file is written to a temporary name and renamed into place;
//! - link-local IPv6 addresses are not SANs (no client can name them without
//!   a zone, and they would change the wanted set from one boot to the next).
//!
//! "Bring your own" is docker:dind's too: `server/{ca,cert,key}.pem` present
//! and no `ca/key.pem` means the files are used as they are, once they parse,
//! the key matches the certificate and the certificate verifies against
//! `server/ca.pem` (docker-library/docker#401).
//!
//! The proxy requires a client certificate signed by `server/ca.pem` at the
//! handshake, like `dockerd --tlsverify`.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The port of the TLS listener when `PORT` is unset (dockerd's `--tlsverify` port).
pub const TLS_PORT: u16 = 2376;
/// How long generated certificates are valid (docker:dind's 825 days, the
/// longest Apple's TLS clients accept).
pub const VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);
/// A certificate that expires sooner than this is replaced at boot.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Generated certificates start this long before now: clients with a clock
/// a little behind still accept them.
const BACKDATE: Duration = Duration::from_secs(3600);
/// The lock file, in the cert dir, that serialises generation between boxes.
pub const LOCK_FILE: &str = ".dindbox.lock";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "bad DOCKER_TLS_SAN entry {entry:?}: {why}; expected a comma-separated list like \
         DNS:foo,IP:1.2.3.4"
    )]
    San { entry: String, why: String },
    #[error("incomplete certificate set in {dir}: missing {missing} (present: {present}). {hint}")]
    Incomplete {
        dir: PathBuf,
        missing: String,
        present: String,
        hint: &'static str,
    },
    #[error("failed to {what} {path}: {err}")]
    Io {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("{path}: {why}")]
    Bad { path: PathBuf, why: String },
    #[error("failed to generate the {what}: {err}")]
    Generate {
        what: &'static str,
        err: rcgen::Error,
    },
    #[error("failed to read the local addresses (getifaddrs): {0}")]
    Interfaces(nix::Error),
    #[error("failed to build the TLS configuration from {dir}: {err}")]
    Rustls { dir: PathBuf, err: rustls::Error },
}

// ---------------------------------------------------------------- layout

/// One file of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pem {
    CaKey,
    CaCert,
    ServerKey,
    ServerCert,
    ServerCa,
    ClientKey,
    ClientCert,
    ClientCa,
}

impl Pem {
    pub const ALL: [Pem; 8] = [
        Pem::CaKey,
        Pem::CaCert,
        Pem::ServerKey,
        Pem::ServerCert,
        Pem::ServerCa,
        Pem::ClientKey,
        Pem::ClientCert,
        Pem::ClientCa,
    ];
    const SERVER: [Pem; 3] = [Pem::ServerKey, Pem::ServerCert, Pem::ServerCa];
    const CLIENT: [Pem; 3] = [Pem::ClientKey, Pem::ClientCert, Pem::ClientCa];

    /// The path relative to the cert dir.
    pub fn rel(self) -> &'static str {
        match self {
            Pem::CaKey => "ca/key.pem",
            Pem::CaCert => "ca/cert.pem",
            Pem::ServerKey => "server/key.pem",
            Pem::ServerCert => "server/cert.pem",
            Pem::ServerCa => "server/ca.pem",
            Pem::ClientKey => "client/key.pem",
            Pem::ClientCert => "client/cert.pem",
            Pem::ClientCa => "client/ca.pem",
        }
    }

    /// The mode of a generated file: private keys 0600, except the client's,
    /// which a non-root client container must read (docker-library/docker#171).
    pub fn mode(self) -> u32 {
        match self {
            Pem::CaKey | Pem::ServerKey => 0o600,
            _ => 0o644,
        }
    }
}

fn list(files: impl IntoIterator<Item = Pem>) -> String {
    let names: Vec<&str> = files.into_iter().map(Pem::rel).collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

// ---------------------------------------------------------------- SANs

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// Parses `DOCKER_TLS_SAN`: openssl's `subjectAltName` syntax as docker:dind
/// passes it on, limited to `DNS:` and `IP:` entries (`DNS:foo,IP:1.2.3.4`).
/// Whitespace around entries and empty entries are ignored; DNS names are
/// lower-cased (they compare case-insensitively).
pub fn parse_sans(spec: &str) -> Result<Vec<San>, TlsError> {
    let bad = |entry: &str, why: &str| TlsError::San {
        entry: entry.to_string(),
        why: why.to_string(),
    };
    let mut sans = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((kind, value)) = entry.split_once(':') else {
            return Err(bad(entry, "no DNS: or IP: prefix"));
        };
        let value = value.trim();
        match kind.trim().to_ascii_uppercase().as_str() {
            "DNS" => {
                let name = value.to_ascii_lowercase();
                if !valid_dns_name(&name) {
                    return Err(bad(entry, "not a DNS name"));
                }
                sans.push(San::Dns(name));
            }
            "IP" => {
                let ip = value
                    .parse::<IpAddr>()
                    .map_err(|_| bad(entry, "not an IPv4 or IPv6 address"))?;
                sans.push(San::Ip(ip));
            }
            _ => return Err(bad(entry, "only DNS: and IP: entries are supported")),
        }
    }
    Ok(sans)
}

/// A hostname as a certificate may carry it (RFC 1123 labels, ASCII), with
/// an optional leading `*.` wildcard label.
fn valid_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The SANs the server certificate must carry: `docker`, `localhost`, the
/// hostname (and its first label), every local address but link-local IPv6,
/// and `extra` (from `DOCKER_TLS_SAN`).
pub fn wanted_sans(
    hostname: &str,
    addresses: impl IntoIterator<Item = IpAddr>,
    extra: &[San],
) -> BTreeSet<San> {
    let mut sans: BTreeSet<San> = ["docker", "localhost"]
        .into_iter()
        .map(|n| San::Dns(n.to_string()))
        .collect();
    let hostname = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
    for name in [hostname.as_str(), hostname.split('.').next().unwrap_or("")] {
        if valid_dns_name(name) {
            sans.insert(San::Dns(name.to_string()));
        }
    }
    sans.extend(
        addresses
            .into_iter()
            .filter(|ip| !is_link_local_v6(ip))
            .map(|ip| San::Ip(canonical_ip(ip))),
    );
    sans.extend(extra.iter().cloned());
    sans
}

/// [`wanted_sans`] for this machine: its hostname and interface addresses.
pub fn local_sans(extra: &[San]) -> Result<BTreeSet<San>, TlsError> {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let addresses: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(TlsError::Interfaces)?
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect();
    Ok(wanted_sans(&hostname, addresses, extra))
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

// ---------------------------------------------------------------- what exists

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

    fn usable(&self, now: SystemTime) -> bool {
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

/// What to do with a cert dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `server/{ca,cert,key}.pem` without `ca/key.pem`: the user's, used as is.
    BringYourOwn,
    /// Regenerate these (all false: reuse everything); the rest is kept byte
    /// for byte. A new CA always comes with a new server and client.
    Generate {
        ca: bool,
        server: bool,
        client: bool,
    },
}

impl Plan {
    pub const REUSE: Plan = Plan::Generate {
        ca: false,
        server: false,
        client: false,
    };
    const ALL: Plan = Plan::Generate {
        ca: true,
        server: true,
        client: true,
    };

    pub fn writes(self) -> bool {
        !matches!(self, Plan::BringYourOwn | Plan::REUSE)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Plan::BringYourOwn => write!(f, "using the supplied server/{{ca,cert,key}}.pem"),
            Plan::REUSE => write!(f, "reusing the existing CA, server and client certificates"),
            Plan::Generate { ca, server, client } => {
                let made: Vec<&str> = [(ca, "CA"), (server, "server"), (client, "client")]
                    .into_iter()
                    .filter_map(|(on, what)| on.then_some(what))
                    .collect();
                let made = match made.as_slice() {
                    [.., last] if made.len() > 1 => {
                        format!("{} and {last}", made[..made.len() - 1].join(", "))
                    }
                    _ => made.join(""),
                };
                write!(f, "generated a new {made} certificate")?;
                if !ca {
                    write!(f, " (kept the CA)")?;
                }
                Ok(())
            }
        }
    }
}

/// Decides what to generate, from what exists, the SANs the server must
/// carry, and the time. Pure: no I/O.
pub fn plan(
    dir: &Path,
    inv: &Inventory,
    wanted: &BTreeSet<San>,
    now: SystemTime,
) -> Result<Plan, TlsError> {
    let has = |f: Pem| inv.present.contains(&f);
    if inv.present.is_empty() {
        return Ok(Plan::ALL);
    }
    let incomplete = |group: &[Pem], hint: &'static str| TlsError::Incomplete {
        dir: dir.to_path_buf(),
        missing: list(group.iter().copied().filter(|f| !has(*f))),
        present: list(inv.present.iter().copied()),
        hint,
    };
    if !has(Pem::CaKey) {
        if Pem::SERVER.iter().all(|f| has(*f)) {
            return Ok(Plan::BringYourOwn);
        }
        let wanted_files: Vec<Pem> = if Pem::SERVER.iter().any(|f| has(*f)) {
            Pem::SERVER.to_vec()
        } else {
            vec![Pem::CaKey, Pem::CaCert]
        };
        return Err(incomplete(
            &wanted_files,
            "To bring your own certificates, supply server/ca.pem, server/cert.pem and \
             server/key.pem (and no ca/key.pem); to have dindbox generate a set, empty the \
             directory",
        ));
    }
    if !has(Pem::CaCert) {
        return Err(incomplete(
            &[Pem::CaCert],
            "dindbox will not make a new CA certificate for an existing key (every client \
             would stop working silently): restore ca/cert.pem, or empty the directory to \
             start over",
        ));
    }
    for group in [&Pem::SERVER, &Pem::CLIENT] {
        if group.iter().any(|f| has(*f)) && !group.iter().all(|f| has(*f)) {
            return Err(incomplete(
                group,
                "restore the missing files, or remove the others of that directory to have \
                 dindbox generate them again with the existing CA",
            ));
        }
    }
    if !inv.ca.as_ref().is_some_and(|ca| ca.usable(now)) {
        return Ok(Plan::ALL);
    }
    let server = !inv
        .server
        .as_ref()
        .is_some_and(|s| s.usable(now) && s.sans.is_superset(wanted));
    let client = !inv.client.as_ref().is_some_and(|c| c.usable(now));
    Ok(Plan::Generate {
        ca: false,
        server,
        client,
    })
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
enum Eku {
    Ca,
    Server,
    Client,
}

fn facts(
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

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

fn read(dir: &Path, file: Pem) -> Result<Vec<u8>, TlsError> {
    read_path(&dir.join(file.rel()))
}

fn read_path(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|err| TlsError::Io {
        what: "read",
        path: path.to_path_buf(),
        err,
    })
}

fn bad(dir: &Path, file: Pem, why: impl fmt::Display) -> TlsError {
    bad_path(&dir.join(file.rel()), why)
}

fn bad_path(path: &Path, why: impl fmt::Display) -> TlsError {
    TlsError::Bad {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Every certificate of a PEM file (a chain, or several CAs), at least one.
fn cert_chain(dir: &Path, file: Pem, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    chain_at(&dir.join(file.rel()), pem)
}

fn chain_at(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad_path(path, format!("not a PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(bad_path(path, "holds no PEM CERTIFICATE block"));
    }
    Ok(certs)
}

/// The first certificate of a PEM file.
fn cert_der(dir: &Path, file: Pem, pem: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    Ok(cert_chain(dir, file, pem)?.swap_remove(0))
}

fn parse_cert<'a>(
    dir: &Path,
    file: Pem,
    der: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, TlsError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|err| bad(dir, file, format!("not an X.509 certificate: {err}")))
}

fn private_key(dir: &Path, file: Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(dir, file)?)
        .map_err(|err| bad(dir, file, format!("not a PEM private key: {err}")))
}

/// The SubjectPublicKeyInfo of a private key, or `None` when the crypto
/// provider cannot tell (then the handshake setup checks the pair).
fn key_spki(dir: &Path, file: Pem) -> Result<Option<Vec<u8>>, TlsError> {
    let key = private_key(dir, file)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|err| bad(dir, file, format!("unusable private key: {err}")))?;
    Ok(signing.public_key().map(|spki| spki.as_ref().to_vec()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------- generation

/// What [`prepare`] did.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    /// The SANs of the server certificate when dindbox made or checked it.
    pub sans: BTreeSet<San>,
    pub config: Arc<ServerConfig>,
}

/// Generates or reuses the certificates in `dir` for `wanted`, and returns
/// the proxy's TLS configuration. Holds an exclusive `flock` on
/// `dir/.dindbox.lock` while it looks and writes, so boxes sharing `dir`
/// neither race nor undo each other's work; a read-only `dir` is only read.
pub fn prepare(dir: &Path, wanted: &BTreeSet<San>, now: SystemTime) -> Result<Prepared, TlsError> {
    let _lock = lock(dir)?;
    let plan = plan(dir, &inspect(dir)?, wanted, now)?;
    match plan {
        Plan::BringYourOwn => verify_own(dir, now)?,
        Plan::Generate { ca, server, client } => generate(dir, ca, server, client, wanted, now)?,
    }
    let config = server_config(dir)?;
    Ok(Prepared {
        plan,
        sans: wanted.clone(),
        config,
    })
}

/// Takes the generation lock, creating `dir` if needed. `None` when `dir`
/// is read-only (nothing can be written there, by us or a sibling box).
fn lock(dir: &Path) -> Result<Option<Flock<File>>, TlsError> {
    if let Err(err) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        return Err(TlsError::Io {
            what: "create",
            path: dir.to_path_buf(),
            err,
        });
    }
    let path = dir.join(LOCK_FILE);
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::EROFS) => return Ok(None),
        Err(err) => {
            return Err(TlsError::Io {
                what: "open the lock file",
                path,
                err,
            })
        }
    };
    Flock::lock(file, FlockArg::LockExclusive)
        .map(Some)
        .map_err(|(_, errno)| TlsError::Io {
            what: "lock",
            path,
            err: errno.into(),
        })
}

/// docker:dind's `openssl verify -CAfile server/ca.pem server/cert.pem`,
/// plus: valid now, and the key belongs to the certificate.
fn verify_own(dir: &Path, now: SystemTime) -> Result<(), TlsError> {
    let chain = cert_chain(dir, Pem::ServerCert, &read(dir, Pem::ServerCert)?)?;
    let roots = cert_chain(dir, Pem::ServerCa, &read(dir, Pem::ServerCa)?)?;
    let anchors = roots
        .iter()
        .map(|der| {
            webpki::anchor_from_trusted_cert(der)
                .map(|a| a.to_owned())
                .map_err(|err| bad(dir, Pem::ServerCa, format!("not a usable CA: {err:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let end = webpki::EndEntityCert::try_from(&chain[0]).map_err(|err| {
        bad(
            dir,
            Pem::ServerCert,
            format!("not a usable certificate: {err:?}"),
        )
    })?;
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    end.verify_for_usage(
        provider().signature_verification_algorithms.all,
        &anchors,
        &chain[1..],
        rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(secs)),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|err| {
        bad(
            dir,
            Pem::ServerCert,
            format!("does not verify against server/ca.pem: {err:?}"),
        )
    })?;
    let cert = parse_cert(dir, Pem::ServerCert, &chain[0])?;
    if key_spki(dir, Pem::ServerKey)?.is_some_and(|spki| spki != cert.public_key().raw) {
        return Err(bad(
            dir,
            Pem::ServerKey,
            "is not the key of server/cert.pem",
        ));
    }
    Ok(())
}

fn generate(
    dir: &Path,
    new_ca: bool,
    server: bool,
    client: bool,
    wanted: &BTreeSet<San>,
    now: SystemTime,
) -> Result<(), TlsError> {
    if !(new_ca || server || client) {
        return Ok(());
    }
    let gen = |what, err| TlsError::Generate { what, err };
    let (ca_key, ca_pem) = if new_ca {
        let key = new_key("CA key")?;
        let mut params = params("dindbox CA", now);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| gen("CA certificate", e))?;
        write_atomic(dir, Pem::CaKey, key.serialize_pem().as_bytes())?;
        write_atomic(dir, Pem::CaCert, cert.pem().as_bytes())?;
        (key, cert.pem())
    } else {
        let key_pem = String::from_utf8_lossy(&read(dir, Pem::CaKey)?).into_owned();
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|err| bad(dir, Pem::CaKey, format!("unusable CA key: {err}")))?;
        let ca_pem = String::from_utf8_lossy(&read(dir, Pem::CaCert)?).into_owned();
        (key, ca_pem)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .map_err(|err| bad(dir, Pem::CaCert, format!("unusable CA certificate: {err}")))?;
    let leaves = [
        (
            server,
            "server",
            Pem::SERVER,
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            client,
            "client",
            Pem::CLIENT,
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ];
    for (on, role, [key_file, cert_file, ca_file], eku) in leaves {
        if !(on || new_ca) {
            continue;
        }
        let key = new_key(role)?;
        let mut params = params(&format!("dindbox {role}"), now);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        if role == "server" {
            params.subject_alt_names = wanted
                .iter()
                .map(|san| match san {
                    San::Dns(name) => name
                        .clone()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|e| gen("server certificate", e)),
                    San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                })
                .collect::<Result<_, _>>()?;
        }
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| gen("certificate", e))?;
        write_atomic(dir, key_file, key.serialize_pem().as_bytes())?;
        write_atomic(dir, ca_file, ca_pem.as_bytes())?;
        write_atomic(dir, cert_file, cert.pem().as_bytes())?;
    }
    Ok(())
}

fn new_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|err| TlsError::Generate { what, err })
}

fn params(common_name: &str, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + VALIDITY).into();
    params
}

/// Writes `dir/file` so that no reader ever sees a partial file: a
/// temporary file in the same directory with the final mode, synced, then
/// renamed over the old one.
fn write_atomic(dir: &Path, file: Pem, contents: &[u8]) -> Result<(), TlsError> {
    let path = dir.join(file.rel());
    let parent = path.parent().unwrap_or(dir);
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |err| TlsError::Io { what, path, err }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(io_err("create", parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        out.set_permissions(fs::Permissions::from_mode(file.mode()))?;
        out.write_all(contents)?;
        out.sync_all()
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(err));
    }
    fs::rename(&tmp, &path).map_err(io_err("rename into", &path))?;
    // The rename itself must survive a crash too.
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", parent))
}

// ---------------------------------------------------------------- rustls

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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn dns(name: &str) -> San {
        San::Dns(name.into())
    }

    fn ip(addr: &str) -> San {
        San::Ip(addr.parse().unwrap())
    }

    #[test]
    fn parse_sans_takes_dns_and_ip_entries_like_docker_dind() {
        assert_eq!(
            parse_sans("DNS:foo,IP:1.2.3.4").unwrap(),
            [dns("foo"), ip("1.2.3.4")]
        );
        assert_eq!(
            parse_sans(" dns:Foo.Example.com , ip:::1 ,,IP: 10.0.0.1").unwrap(),
            [dns("foo.example.com"), ip("::1"), ip("10.0.0.1")]
        );
        assert_eq!(
            parse_sans("DNS:*.example.com").unwrap(),
            [dns("*.example.com")]
        );
        assert_eq!(parse_sans("").unwrap(), []);
        assert_eq!(parse_sans(" , ").unwrap(), []);
    }

    #[test]
    fn parse_sans_rejects_what_a_certificate_cannot_carry() {
        for spec in [
            "foo",
            "URI:http://x",
            "email:a@b",
            "IP:1.2.3",
            "IP:foo",
            "DNS:",
            "DNS:foo bar",
            "DNS:-foo",
            "DNS:foo..bar",
            "DNS:caf\u{e9}",
        ] {
            let err = parse_sans(spec).unwrap_err().to_string();
            assert!(err.contains("DOCKER_TLS_SAN"), "{spec}: {err}");
            assert!(err.contains("DNS:foo,IP:1.2.3.4"), "{spec}: {err}");
        }
    }

    #[test]
    fn wanted_sans_are_docker_localhost_hostname_addresses_and_extras() {
        let sans = wanted_sans(
            "Box1.corp.example.",
            [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                "fe80::42:acff:fe11:2".parse().unwrap(),
                "::ffff:10.1.2.3".parse().unwrap(),
            ],
            &[dns("foo"), ip("1.2.3.4")],
        );
        let expected: BTreeSet<San> = [
            dns("docker"),
            dns("localhost"),
            dns("box1.corp.example"),
            dns("box1"),
            ip("127.0.0.1"),
            ip("172.17.0.2"),
            ip("::1"),
            ip("10.1.2.3"),
            dns("foo"),
            ip("1.2.3.4"),
        ]
        .into_iter()
        .collect();
        assert_eq!(sans, expected);
        // No hostname: still docker and localhost.
        assert_eq!(wanted_sans("", [], &[]).len(), 2);
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days * 24 * 3600)
    }

    /// A good certificate valid from day 100 to day 925.
    fn good(sans: &[San]) -> CertFacts {
        CertFacts {
            not_before: at(100),
            not_after: at(925),
            sans: sans.iter().cloned().collect(),
            issued_by_ca: true,
            key_matches: true,
            ca_copy_matches: true,
        }
    }

    fn complete(server_sans: &[San]) -> Inventory {
        Inventory {
            present: Pem::ALL.into_iter().collect(),
            ca: Some(good(&[])),
            server: Some(good(server_sans)),
            client: Some(good(&[])),
        }
    }

    fn wanted() -> BTreeSet<San> {
        [dns("docker"), ip("127.0.0.1")].into_iter().collect()
    }

    fn decide(inv: &Inventory, now: SystemTime) -> Result<Plan, TlsError> {
        plan(Path::new("/certs"), inv, &wanted(), now)
    }

    fn gen(ca: bool, server: bool, client: bool) -> Plan {
        Plan::Generate { ca, server, client }
    }

    #[test]
    fn plans_say_what_they_did() {
        assert_eq!(
            Plan::ALL.to_string(),
            "generated a new CA, server and client certificate"
        );
        assert_eq!(
            gen(false, true, false).to_string(),
            "generated a new server certificate (kept the CA)"
        );
        assert_eq!(
            gen(false, true, true).to_string(),
            "generated a new server and client certificate (kept the CA)"
        );
    }

    #[test]
    fn an_empty_dir_gets_everything() {
        assert_eq!(decide(&Inventory::default(), at(200)).unwrap(), Plan::ALL);
    }

    #[test]
    fn a_complete_valid_set_covering_the_sans_is_reused() {
        let inv = complete(&[dns("docker"), ip("127.0.0.1"), dns("extra")]);
        assert_eq!(decide(&inv, at(200)).unwrap(), Plan::REUSE);
        assert!(!Plan::REUSE.writes());
    }

    #[test]
    fn a_server_cert_missing_a_wanted_san_is_regenerated_alone() {
        let inv = complete(&[dns("docker")]);
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
    }

    #[test]
    fn expired_or_expiring_leaves_are_regenerated_with_the_ca_kept() {
        let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
        inv.client.as_mut().unwrap().not_after = at(150);
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, false, true));
        // Within RENEW_BEFORE of the end counts as expired.
        let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
        inv.server.as_mut().unwrap().not_after = at(210);
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
        // Not yet valid.
        assert_eq!(decide(&inv, at(50)).unwrap(), Plan::ALL);
    }

    #[test]
    fn leaves_not_from_this_ca_or_with_foreign_keys_are_regenerated() {
        let base = complete(&[dns("docker"), ip("127.0.0.1")]);
        let mut inv = base.clone();
        inv.server.as_mut().unwrap().issued_by_ca = false;
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
        let mut inv = base.clone();
        inv.client.as_mut().unwrap().key_matches = false;
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, false, true));
        let mut inv = base;
        inv.server.as_mut().unwrap().ca_copy_matches = false;
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, true, false));
    }

    #[test]
    fn an_expired_ca_means_a_new_set() {
        let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
        inv.ca.as_mut().unwrap().not_after = at(201);
        assert_eq!(decide(&inv, at(200)).unwrap(), Plan::ALL);
    }

    #[test]
    fn a_missing_leaf_directory_is_generated_with_the_existing_ca() {
        let mut inv = complete(&[dns("docker"), ip("127.0.0.1")]);
        for f in Pem::CLIENT {
            inv.present.remove(&f);
        }
        inv.client = None;
        assert_eq!(decide(&inv, at(200)).unwrap(), gen(false, false, true));
    }

    #[test]
    fn server_files_without_ca_key_are_brought_by_the_user() {
        let inv = Inventory {
            present: Pem::SERVER.into_iter().collect(),
            ..Default::default()
        };
        assert_eq!(decide(&inv, at(200)).unwrap(), Plan::BringYourOwn);
        // ca/cert.pem alongside (docker:dind's layout without the key) too.
        let mut inv = complete(&[]);
        inv.present.remove(&Pem::CaKey);
        assert_eq!(decide(&inv, at(200)).unwrap(), Plan::BringYourOwn);
    }

    fn incomplete(present: &[Pem]) -> String {
        let inv = Inventory {
            present: present.iter().copied().collect(),
            ..complete(&[])
        };
        let err = decide(&inv, at(200)).unwrap_err();
        assert!(matches!(err, TlsError::Incomplete { .. }), "{err}");
        err.to_string()
    }

    #[test]
    fn a_half_present_set_is_an_error_naming_the_missing_files() {
        let msg = incomplete(&[Pem::ServerCert]);
        assert!(
            msg.contains("missing server/key.pem, server/ca.pem"),
            "{msg}"
        );
        assert!(msg.contains("present: server/cert.pem"), "{msg}");
        assert!(msg.contains("/certs"), "{msg}");

        let msg = incomplete(&[Pem::ClientKey, Pem::ClientCert, Pem::ClientCa]);
        assert!(msg.contains("missing ca/key.pem, ca/cert.pem"), "{msg}");

        let msg = incomplete(&[Pem::CaKey]);
        assert!(msg.contains("missing ca/cert.pem"), "{msg}");

        let mut all: Vec<Pem> = Pem::ALL.to_vec();
        all.retain(|f| *f != Pem::ClientKey);
        let msg = incomplete(&all);
        assert!(msg.contains("missing client/key.pem"), "{msg}");
        assert!(!msg.contains("missing ca/"), "{msg}");

        let mut all: Vec<Pem> = Pem::ALL.to_vec();
        all.retain(|f| *f != Pem::ServerCa);
        let msg = incomplete(&all);
        assert!(msg.contains("missing server/ca.pem"), "{msg}");
    }

    // ------------------------------------------------------------ on disk

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn snapshot(dir: &Path) -> Vec<(Pem, Vec<u8>)> {
        Pem::ALL
            .into_iter()
            .map(|f| (f, fs::read(dir.join(f.rel())).unwrap()))
            .collect()
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn generated_files_have_the_layout_and_modes_of_docker_dind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let prepared = prepare(&dir, &wanted(), now()).unwrap();
        assert_eq!(prepared.plan, Plan::ALL);
        for f in Pem::ALL {
            assert_eq!(mode(&dir.join(f.rel())), f.mode(), "{}", f.rel());
        }
        assert_eq!(mode(&dir.join("ca/key.pem")), 0o600);
        assert_eq!(mode(&dir.join("server/key.pem")), 0o600);
        assert_eq!(mode(&dir.join("client/key.pem")), 0o644);
        // No temporary file left behind.
        for sub in ["ca", "server", "client"] {
            for entry in fs::read_dir(dir.join(sub)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(!name.starts_with('.'), "{sub}/{name}");
            }
        }
        let ca = fs::read(dir.join("ca/cert.pem")).unwrap();
        assert_eq!(fs::read(dir.join("server/ca.pem")).unwrap(), ca);
        assert_eq!(fs::read(dir.join("client/ca.pem")).unwrap(), ca);

        let inv = inspect(&dir).unwrap();
        let server = inv.server.unwrap();
        assert!(server.issued_by_ca && server.key_matches && server.ca_copy_matches);
        assert_eq!(server.sans, wanted());
        assert!(server.not_after > now() + VALIDITY - DAY);
        let client = inv.client.unwrap();
        assert!(client.issued_by_ca && client.key_matches);
        // The client certificate is no server certificate, and vice versa.
        assert!(inv.ca.unwrap().issued_by_ca);
    }

    #[test]
    fn a_second_prepare_rewrites_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        prepare(dir, &wanted(), now()).unwrap();
        let before = snapshot(dir);
        let again = prepare(dir, &wanted(), now()).unwrap();
        assert_eq!(again.plan, Plan::REUSE);
        assert_eq!(snapshot(dir), before);
    }

    #[test]
    fn a_new_san_regenerates_only_the_server_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        prepare(dir, &wanted(), now()).unwrap();
        let before = snapshot(dir);
        let mut more = wanted();
        more.insert(dns("tenant1.example.com"));
        let again = prepare(dir, &more, now()).unwrap();
        assert_eq!(again.plan, gen(false, true, false));
        let after = snapshot(dir);
        for ((f, old), (_, new)) in before.iter().zip(&after) {
            let changed = old != new;
            let expected = matches!(f, Pem::ServerKey | Pem::ServerCert);
            assert_eq!(changed, expected, "{}", f.rel());
        }
        assert!(inspect(dir)
            .unwrap()
            .server
            .unwrap()
            .sans
            .contains(&dns("tenant1.example.com")));
        // A client certificate of the kept CA still verifies: it is unchanged.
    }

    #[test]
    fn a_bring_your_own_set_is_used_as_is_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("generated");
        prepare(&src, &wanted(), now()).unwrap();
        let own = tmp.path().join("own");
        fs::create_dir_all(own.join("server")).unwrap();
        for f in Pem::SERVER {
            fs::copy(src.join(f.rel()), own.join(f.rel())).unwrap();
        }
        let before: Vec<_> = Pem::SERVER
            .iter()
            .map(|f| fs::read(own.join(f.rel())).unwrap())
            .collect();
        let prepared = prepare(&own, &wanted(), now()).unwrap();
        assert_eq!(prepared.plan, Plan::BringYourOwn);
        let after: Vec<_> = Pem::SERVER
            .iter()
            .map(|f| fs::read(own.join(f.rel())).unwrap())
            .collect();
        assert_eq!(before, after);
        assert!(!own.join("ca").exists() && !own.join("client").exists());

        // A CA that did not sign the certificate: refused, naming the file.
        let other = tmp.path().join("other");
        prepare(&other, &wanted(), now()).unwrap();
        fs::copy(other.join("ca/cert.pem"), own.join("server/ca.pem")).unwrap();
        let err = prepare(&own, &wanted(), now()).unwrap_err().to_string();
        assert!(err.contains("server/cert.pem"), "{err}");
        assert!(
            err.contains("does not verify against server/ca.pem"),
            "{err}"
        );

        // A key of another certificate.
        fs::copy(src.join("server/ca.pem"), own.join("server/ca.pem")).unwrap();
        fs::copy(other.join("server/key.pem"), own.join("server/key.pem")).unwrap();
        let err = prepare(&own, &wanted(), now()).unwrap_err().to_string();
        assert!(err.contains("server/key.pem"), "{err}");
    }

    #[test]
    fn garbage_where_a_certificate_should_be_is_an_error_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        prepare(dir, &wanted(), now()).unwrap();
        fs::write(dir.join("server/cert.pem"), "junk").unwrap();
        let err = prepare(dir, &wanted(), now()).unwrap_err().to_string();
        assert!(err.contains("server/cert.pem"), "{err}");
        assert_eq!(fs::read(dir.join("server/cert.pem")).unwrap(), b"junk");
    }

    #[test]
    fn parallel_prepares_on_one_dir_agree_on_one_set() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || prepare(&dir, &wanted(), now()).map(|p| p.plan))
            })
            .collect();
        let plans: Vec<Plan> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_eq!(
            plans.iter().filter(|p| **p == Plan::ALL).count(),
            1,
            "{plans:?}"
        );
        assert_eq!(
            plans.iter().filter(|p| **p == Plan::REUSE).count(),
            3,
            "{plans:?}"
        );
    }
}
