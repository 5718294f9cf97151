//! The address ranges tenants may give their networks and containers. A
//! bridge network's subnet becomes a route in the daemon's network namespace:
//! one over the host's own ranges (its LAN, a VPN, the metadata service at
//! 169.254.169.254) would capture or black-hole the host's traffic. So a
//! subnet must lie inside the allowed pools and overlap none of the host's
//! routes, and a container's static address must lie inside the pools.
//! `IPAM.Config` and `IPAMConfig` are honoured at every API version; Go reads
//! them as strings (`net.ParseCIDR`, `net.ParseIP` in libnetwork).

#![forbid(unsafe_code)]

use std::net::IpAddr;

use ipnet::IpNet;

use super::value::string;
use super::Reject;
use crate::proxy::gojson::{get, Json};

/// The pools dockerd allocates from by default (`default-address-pools`),
/// and IPv6 unique local addresses.
pub const DEFAULT_POOLS: [&str; 3] = ["172.16.0.0/12", "192.168.0.0/16", "fd00::/8"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnets {
    /// Tenants' subnets and static addresses lie inside one of these.
    pub allowed: Vec<IpNet>,
    /// The host's own routes (read when the proxy starts): no tenant subnet
    /// may overlap one.
    pub host_routes: Vec<IpNet>,
}

impl Default for Subnets {
    fn default() -> Subnets {
        Subnets {
            allowed: DEFAULT_POOLS
                .iter()
                .map(|pool| pool.parse().expect("the default pools parse"))
                .collect(),
            host_routes: Vec::new(),
        }
    }
}

impl Subnets {
    /// Checks `IPAM.Config` of a network create: every subnet, range,
    /// gateway and auxiliary address.
    pub fn check_ipam_config(&self, configs: &[Json]) -> Result<(), Reject> {
        for (i, config) in configs.iter().enumerate() {
            let Json::Object(config) = config else {
                continue;
            };
            let at = format!("IPAM.Config[{i}]");
            for name in ["Subnet", "IPRange"] {
                let text = string(config, name, &format!("{at}.{name}"))?;
                if !text.is_empty() {
                    self.check_subnet(&parse_cidr(text, &format!("{at}.{name}"))?, text)?;
                }
            }
            let gateway = string(config, "Gateway", &format!("{at}.Gateway"))?;
            if !gateway.is_empty() {
                self.check_address(gateway, &format!("{at}.Gateway"))?;
            }
            if let Some(Json::Object(aux)) = get(config, "AuxiliaryAddresses") {
                for (name, address) in aux {
                    let at = format!("{at}.AuxiliaryAddresses[{name:?}]");
                    match address {
                        Json::String(address) => self.check_address(address, &at)?,
                        other => return Err(super::value::type_mismatch(&at, "a string", other)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks an endpoint's `IPAMConfig`: static addresses inside the pools,
    /// and no extra link-local addresses.
    pub fn check_endpoint_ipam(&self, ipam: &[(String, Json)], at: &str) -> Result<(), Reject> {
        for name in ["IPv4Address", "IPv6Address"] {
            let address = string(ipam, name, &format!("{at}.{name}"))?;
            if !address.is_empty() {
                self.check_address(address, &format!("{at}.{name}"))?;
            }
        }
        if super::value::non_empty(ipam, "LinkLocalIPs") {
            return Err(Reject::forbidden(
                "network-address",
                "link-local addresses",
                format!("{at}.LinkLocalIPs would give the container addresses in 169.254.0.0/16 or fe80::/10"),
            ));
        }
        Ok(())
    }

    fn check_subnet(&self, subnet: &IpNet, text: &str) -> Result<(), Reject> {
        if !self.allowed.iter().any(|pool| pool.contains(subnet)) {
            return Err(outside_pools(text, &self.allowed));
        }
        if let Some(route) = self.host_routes.iter().find(|r| overlaps(r, subnet)) {
            return Err(Reject::forbidden(
                "network-subnet",
                &format!("subnet {text}"),
                format!("it overlaps the host's route to {route}, whose traffic it would capture"),
            ));
        }
        Ok(())
    }

    fn check_address(&self, text: &str, at: &str) -> Result<(), Reject> {
        let address: IpAddr = text.parse().map_err(|_| {
            Reject::bad_request(
                "network-address",
                format!("{at} {text:?} is not an IP address"),
            )
        })?;
        if !self.allowed.iter().any(|pool| pool.contains(&address)) {
            return Err(outside_pools(text, &self.allowed));
        }
        Ok(())
    }
}

fn outside_pools(text: &str, allowed: &[IpNet]) -> Reject {
    let pools: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    Reject::forbidden(
        "network-subnet",
        &format!("the address range {text}"),
        format!(
            "tenant networks use these pools only: {} (the policy setting subnets changes them)",
            pools.join(", ")
        ),
    )
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A CIDR as Go's `net.ParseCIDR` reads it for libnetwork: an address, `/`,
/// and a decimal prefix length (host bits may be set; the network is meant).
pub fn parse_cidr(text: &str, at: &str) -> Result<IpNet, Reject> {
    let invalid = || {
        Reject::bad_request(
            "network-subnet",
            format!("{at} {text:?} is not a CIDR subnet"),
        )
    };
    let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    IpNet::new(address, prefix)
        .map(|net| net.trunc())
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnets() -> Subnets {
        Subnets {
            host_routes: vec![
                "192.168.1.0/24".parse().unwrap(),
                "fd00::/64".parse().unwrap(),
            ],
            ..Subnets::default()
        }
    }

    fn ipam(text: &str) -> Result<(), Reject> {
        let Json::Array(configs) = Json::parse(text.as_bytes()).unwrap() else {
            panic!("not an array")
        };
        subnets().check_ipam_config(&configs)
    }

    #[test]
    fn docker_s_own_pools_are_allowed() {
        assert!(ipam(r#"[{"Subnet":"172.30.0.0/16","Gateway":"172.30.0.1"}]"#).is_ok());
        assert!(ipam(r#"[{"Subnet":"192.168.77.0/24","IPRange":"192.168.77.128/25"}]"#).is_ok());
        assert!(ipam(r#"[{"Subnet":"fd12:3456::/64"}]"#).is_ok());
        assert!(
            ipam(r#"[{"Subnet":"172.30.1.2/16"}]"#).is_ok(),
            "host bits, as Go allows"
        );
    }

    #[test]
    fn host_ranges_and_the_host_s_routes_are_refused() {
        for hostile in [
            r#"[{"Subnet":"169.254.169.0/24"}]"#,
            r#"[{"Subnet":"10.0.0.0/8"}]"#,
            r#"[{"Subnet":"127.0.0.0/8"}]"#,
            r#"[{"Subnet":"0.0.0.0/0"}]"#,
            r#"[{"Subnet":"172.0.0.0/8"}]"#,
            r#"[{"Subnet":"192.168.0.0/16"}]"#,
            r#"[{"Subnet":"192.168.1.128/25"}]"#,
            r#"[{"Subnet":"fd00::/16"}]"#,
            r#"[{"Subnet":"fe80::/64"}]"#,
            r#"[{"Subnet":"172.30.0.0/16","Gateway":"169.254.169.254"}]"#,
            r#"[{"Subnet":"172.30.0.0/16","AuxiliaryAddresses":{"m":"169.254.169.254"}}]"#,
        ] {
            let reject = ipam(hostile).unwrap_err();
            assert_eq!(reject.rule, "network-subnet", "{hostile}");
        }
    }

    #[test]
    fn malformed_subnets_are_refused() {
        for bad in [
            "10.0.0.0",
            "172.30.0.0/+16",
            "172.30.0.0/33",
            "172.30.0.0/",
            "x/16",
        ] {
            let body = format!(r#"[{{"Subnet":"{bad}"}}]"#);
            assert_eq!(ipam(&body).unwrap_err().rule, "network-subnet", "{bad}");
        }
    }

    #[test]
    fn static_addresses_stay_in_the_pools() {
        let endpoint = |text: &str| {
            let Json::Object(ipam) = Json::parse(text.as_bytes()).unwrap() else {
                panic!()
            };
            subnets().check_endpoint_ipam(&ipam, "IPAMConfig")
        };
        assert!(endpoint(r#"{"IPv4Address":"172.30.0.9"}"#).is_ok());
        assert!(endpoint(r#"{"IPv4Address":"169.254.169.254"}"#).is_err());
        assert!(endpoint(r#"{"IPv6Address":"fe80::1"}"#).is_err());
        assert_eq!(
            endpoint(r#"{"LinkLocalIPs":["169.254.169.254"]}"#)
                .unwrap_err()
                .rule,
            "network-address"
        );
    }
}
