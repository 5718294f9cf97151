//! The subject alternative names of the server certificate: `DOCKER_TLS_SAN`, and the
//! names and addresses the box answers on.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use super::TlsError;

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
pub(super) fn valid_dns_name(name: &str) -> bool {
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

pub(super) fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub(super) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}
