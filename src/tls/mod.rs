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

use std::io;
use std::path::PathBuf;
use std::time::Duration;

mod config;
mod generate;
mod inspect;
mod plan;
mod sans;

pub use config::{server_config, server_config_from_files};
pub use generate::{prepare, Prepared};
pub use inspect::{inspect, CertFacts, Inventory};
pub use plan::{plan, Plan};
pub use sans::{local_sans, parse_sans, wanted_sans, San};

/// The port of the TLS listener when `PORT` is unset (dockerd's `--tlsverify` port).
pub const TLS_PORT: u16 = 2376;
/// How long generated certificates are valid (docker:dind's 825 days, the
/// longest Apple's TLS clients accept).
pub const VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);
/// A certificate that expires sooner than this is replaced at boot.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Generated certificates start this long before now: clients with a clock
/// a little behind still accept them.
pub(super) const BACKDATE: Duration = Duration::from_secs(3600);
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

pub(super) fn list(files: impl IntoIterator<Item = Pem>) -> String {
    let names: Vec<&str> = files.into_iter().map(Pem::rel).collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
