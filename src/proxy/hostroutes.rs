//! The routes of the proxy's network namespace (the daemon's, in a box and
//! standalone alike), read once when the proxy starts, so that no tenant
//! network is created over them ([`super::policy::subnets`]).

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tracing::warn;

/// The non-default routes of interfaces dockerd did not make, IPv4 and IPv6.
pub fn read() -> Vec<IpNet> {
    let mut routes = Vec::new();
    for (path, parse) in [
        (
            "/proc/net/route",
            parse_ipv4 as fn(&str) -> Vec<(String, IpNet)>,
        ),
        ("/proc/net/ipv6_route", parse_ipv6),
    ] {
        match std::fs::read_to_string(path) {
            Ok(text) => routes.extend(
                parse(&text)
                    .into_iter()
                    .filter(|(iface, net)| !made_by_docker(iface) && net.prefix_len() > 0)
                    .map(|(_, net)| net),
            ),
            // No IPv6 in this kernel, say: there are no routes of that family.
            Err(err) => warn!(path, error = %err, "cannot read the host's routes"),
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

/// Bridges and veths of this daemon: tenants' networks already, which
/// dockerd itself keeps from overlapping.
fn made_by_docker(iface: &str) -> bool {
    iface == "docker0"
        || iface == "docker_gwbridge"
        || iface == "lo"
        || iface.starts_with("br-")
        || iface.starts_with("veth")
}

/// `/proc/net/route`: `Iface Destination Gateway Flags ... Mask ...`, the
/// addresses as little-endian hex.
fn parse_ipv4(text: &str) -> Vec<(String, IpNet)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, mask) = (fields.first()?, fields.get(1)?, fields.get(7)?);
            let dest = Ipv4Addr::from(u32::from_str_radix(dest, 16).ok()?.swap_bytes());
            let mask = u32::from_str_radix(mask, 16).ok()?.swap_bytes();
            let net = Ipv4Net::new(dest, u8::try_from(mask.count_ones()).ok()?).ok()?;
            Some((iface.to_string(), IpNet::V4(net)))
        })
        .collect()
}

/// `/proc/net/ipv6_route`: `dest prefix_len src src_len next_hop metric
/// refcnt use flags iface`, the addresses as big-endian hex.
fn parse_ipv6(text: &str) -> Vec<(String, IpNet)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (dest, prefix, iface) = (fields.first()?, fields.get(1)?, fields.get(9)?);
            let dest = Ipv6Addr::from(u128::from_str_radix(dest, 16).ok()?);
            let prefix = u8::from_str_radix(prefix, 16).ok()?;
            let net = Ipv6Net::new(dest, prefix).ok()?;
            Some((iface.to_string(), IpNet::V6(net)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_tables() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routes: Vec<String> = parse_ipv4(v4)
            .into_iter()
            .map(|(i, n)| format!("{i} {n}"))
            .collect();
        assert_eq!(
            routes,
            [
                "eth0 0.0.0.0/0",
                "docker0 172.17.0.0/16",
                "eth0 192.0.2.0/24"
            ]
        );
        let v6 = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 \
                  00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";
        let routes: Vec<String> = parse_ipv6(v6)
            .into_iter()
            .map(|(i, n)| format!("{i} {n}"))
            .collect();
        assert_eq!(routes, ["eth0 fd00::/64"]);
    }

    #[test]
    fn docker_s_own_interfaces_are_not_the_host_s() {
        assert!(
            made_by_docker("docker0") && made_by_docker("br-0123abcd") && made_by_docker("veth12")
        );
        assert!(!made_by_docker("eth0") && !made_by_docker("wg0"));
    }
}
