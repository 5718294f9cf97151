//! Two start-up problems docker:dind users keep hitting, detected and fixed
//! before dockerd starts, each explained in one log line:
//!
//! - MTU: the inner bridge defaults to 1500 even when the box's own link is
//!   smaller (a tunnel, a cloud VPC), and large packets then vanish. dockerd
//!   gets `--mtu` from the default route's interface unless it was given one,
//!   and the proxy puts the same MTU on the networks tenants create.
//! - iptables backend: an nft iptables inside the box next to a host that
//!   holds legacy tables (or the reverse) makes dockerd's rules fail
//!   (`RULE_APPEND failed`). `DOCKER_IPTABLES_LEGACY` chooses explicitly (any
//!   non-empty value: legacy; empty: nft); otherwise legacy is chosen when the
//!   kernel already holds legacy tables, as docker:dind does. Legacy is given
//!   to dockerd through a directory of `iptables -> iptables-legacy` links put
//!   first in its PATH; the image itself is not changed.

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};

/// The interface of the default IPv4 route, from `/proc/net/route`.
pub fn default_interface(route_table: &str) -> Option<String> {
    route_table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&"00000000") && fields.get(7) == Some(&"00000000"))
        .and_then(|fields| fields.first().map(|name| name.to_string()))
}

/// Whether the dockerd arguments already choose an MTU.
pub fn has_mtu_flag(args: &[String]) -> bool {
    args.iter().any(|a| a == "--mtu" || a.starts_with("--mtu="))
}

/// The MTU dockerd should get: the link's, when it is below Ethernet's 1500
/// (a larger one is left to dockerd's default, which is always safe).
pub fn mtu_for_dockerd(link_mtu: u32) -> Option<u32> {
    (link_mtu > 0 && link_mtu < 1500).then_some(link_mtu)
}

/// Reads the default route's interface and its MTU.
pub fn read_link_mtu(proc_net_route: &Path, sys_class_net: &Path) -> Option<(String, u32)> {
    let iface = default_interface(&std::fs::read_to_string(proc_net_route).ok()?)?;
    let mtu = std::fs::read_to_string(sys_class_net.join(&iface).join("mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((iface, mtu))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

/// docker:dind's rule: `DOCKER_IPTABLES_LEGACY` decides when it is set; else
/// legacy when the kernel already holds legacy tables; else the image's
/// default (`None`: nothing to change). Returns the reason for the log line.
pub fn choose_backend(env: Option<&str>, legacy_tables: bool) -> (Option<Backend>, &'static str) {
    match env {
        Some("") => (
            Some(Backend::Nft),
            "DOCKER_IPTABLES_LEGACY is set and empty",
        ),
        Some(_) => (Some(Backend::Legacy), "DOCKER_IPTABLES_LEGACY is set"),
        None if legacy_tables => (
            Some(Backend::Legacy),
            "the kernel already holds legacy iptables tables",
        ),
        None => (None, "no legacy iptables tables in use"),
    }
}

/// Whether any of `/proc/net/{ip_tables,ip6_tables,arp_tables}_names` lists a table.
pub fn legacy_tables_in_use(proc_net: &Path) -> bool {
    ["ip_tables_names", "ip6_tables_names", "arp_tables_names"]
        .iter()
        .any(|name| {
            std::fs::read_to_string(proc_net.join(name)).is_ok_and(|s| !s.trim().is_empty())
        })
}

const TOOLS: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

/// Makes `dir` hold `iptables -> <sbin>/iptables-<backend>` links (and the
/// save/restore and ip6 variants) for the tools that exist; returns `dir`.
pub fn backend_shim(dir: &Path, sbin: &Path, backend: Backend) -> io::Result<PathBuf> {
    let suffix = match backend {
        Backend::Nft => "nft",
        Backend::Legacy => "legacy",
    };
    std::fs::create_dir_all(dir)?;
    for tool in TOOLS {
        let (family, verb) = match tool.split_once('-') {
            Some((family, verb)) => (family, format!("-{verb}")),
            None => (tool, String::new()),
        };
        let target = sbin.join(format!("{family}-{suffix}{verb}"));
        if !target.exists() {
            continue;
        }
        let link = dir.join(tool);
        match std::fs::remove_file(&link) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        std::os::unix::fs::symlink(&target, &link)?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth1\t0011A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";

    #[test]
    fn default_interface_is_the_one_with_the_zero_route() {
        assert_eq!(default_interface(ROUTES).as_deref(), Some("eth0"));
        assert_eq!(default_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn mtu_is_set_only_below_1500_and_only_when_not_given() {
        assert_eq!(mtu_for_dockerd(1400), Some(1400));
        assert_eq!(mtu_for_dockerd(1500), None);
        assert_eq!(mtu_for_dockerd(9001), None);
        assert_eq!(mtu_for_dockerd(0), None);
        assert!(has_mtu_flag(&["--mtu".into(), "1300".into()]));
        assert!(has_mtu_flag(&["--mtu=1300".into()]));
        assert!(!has_mtu_flag(&["--mtu-x".into()]));
    }

    #[test]
    fn backend_follows_docker_dind() {
        assert_eq!(choose_backend(Some("1"), false).0, Some(Backend::Legacy));
        assert_eq!(choose_backend(Some(""), true).0, Some(Backend::Nft));
        assert_eq!(choose_backend(None, true).0, Some(Backend::Legacy));
        assert_eq!(choose_backend(None, false).0, None);
    }

    #[test]
    fn legacy_tables_are_detected_from_proc_net() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!legacy_tables_in_use(dir.path()));
        std::fs::write(dir.path().join("ip_tables_names"), "").unwrap();
        assert!(!legacy_tables_in_use(dir.path()));
        std::fs::write(dir.path().join("ip6_tables_names"), "filter\n").unwrap();
        assert!(legacy_tables_in_use(dir.path()));
    }

    #[test]
    fn the_shim_links_the_tools_that_exist() {
        let sbin = tempfile::tempdir().unwrap();
        for tool in [
            "iptables-legacy",
            "iptables-legacy-save",
            "iptables-legacy-restore",
            "ip6tables-legacy",
        ] {
            std::fs::write(sbin.path().join(tool), "").unwrap();
        }
        let shim = tempfile::tempdir().unwrap();
        let dir = backend_shim(shim.path(), sbin.path(), Backend::Legacy).unwrap();
        let target = |tool: &str| std::fs::read_link(dir.join(tool)).ok();
        assert_eq!(
            target("iptables"),
            Some(sbin.path().join("iptables-legacy"))
        );
        assert_eq!(
            target("iptables-save"),
            Some(sbin.path().join("iptables-legacy-save"))
        );
        assert_eq!(
            target("ip6tables"),
            Some(sbin.path().join("ip6tables-legacy"))
        );
        assert_eq!(
            target("ip6tables-restore"),
            None,
            "missing tools are not linked"
        );
        backend_shim(shim.path(), sbin.path(), Backend::Legacy).expect("idempotent");
    }
}
