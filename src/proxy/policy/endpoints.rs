//! A container's network endpoints (`network.EndpointSettings`, Engine API
//! 1.44 to 1.55): the networks a create joins at once, and the endpoint
//! driver options, of which only per-interface sysctls are let through.
//! `container::check_endpoint` (create and connect) and
//! `container::check_networking` call these.

#![forbid(unsafe_code)]

use super::value::string;
use super::Reject;
use crate::proxy::gojson::{get, Json};

/// The endpoint driver option that sets sysctls on the container's end of
/// the interface (`netlabel.EndpointSysctls`, API 1.46; libnetwork honours
/// it at every API version): a comma-separated list of
/// `net.X.Y.IFNAME.Z=V`.
pub const ENDPOINT_SYSCTLS: &str = "com.docker.network.endpoint.sysctls";

/// The per-interface sysctls a tenant may set on its endpoints. They are
/// written in the container's own network namespace, on its own interface,
/// and only change how that interface treats its own traffic. Left out:
/// `forwarding`, `proxy_arp`, `proxy_ndp`, `route_localnet`,
/// `accept_source_route` (the container would route or answer for others,
/// or take 127/8 from the wire), `log_martians` (floods the host's kernel
/// log), `neigh.*`, `mpls.*` and everything else.
pub const SAFE_ENDPOINT_SYSCTLS: &[&str] = &[
    "net.ipv4.conf.IFNAME.arp_announce",
    "net.ipv4.conf.IFNAME.arp_filter",
    "net.ipv4.conf.IFNAME.arp_ignore",
    "net.ipv4.conf.IFNAME.arp_notify",
    "net.ipv4.conf.IFNAME.accept_redirects",
    "net.ipv4.conf.IFNAME.rp_filter",
    "net.ipv6.conf.IFNAME.accept_ra",
    "net.ipv6.conf.IFNAME.accept_redirects",
    "net.ipv6.conf.IFNAME.autoconf",
    "net.ipv6.conf.IFNAME.disable_ipv6",
];

/// An endpoint's `DriverOpts`: only [`ENDPOINT_SYSCTLS`], with sysctls from
/// [`SAFE_ENDPOINT_SYSCTLS`]. Other keys reach the network driver as generic
/// options (a MAC address, exposed ports, DNS servers, the interface name,
/// and whatever a driver reads), so they stay refused.
pub(super) fn check_driver_opts(settings: &[(String, Json)], at: &str) -> Result<(), Reject> {
    let Some(Json::Object(opts)) = get(settings, "DriverOpts") else {
        return Ok(());
    };
    for (key, value) in opts {
        if key != ENDPOINT_SYSCTLS {
            return Err(Reject::forbidden(
                "endpoint-driver-opts",
                &format!("endpoint driver option {key:?}"),
                format!(
                    "{at}.DriverOpts may only hold {ENDPOINT_SYSCTLS} (other options reach the network driver)"
                ),
            ));
        }
        let Json::String(list) = value else {
            return Err(Reject::bad_request(
                "body-type",
                format!("{at}.DriverOpts values must be strings"),
            ));
        };
        check_endpoint_sysctls(list)?;
    }
    Ok(())
}

/// The sysctl list as libnetwork reads it (`osl.setSysctls`, after
/// `validateEndpointSettings`): split on `,`, each `key=value` cut at the
/// first `=`, the key split on `.` into exactly five parts whose fourth is
/// `IFNAME` (or `ifname`, as the CLI lower-cases it) and stands for the
/// interface; the file written is `/proc/sys/<1>/<2>/<3>/<ifname>/<5>`.
/// Values are plain numbers, as every allowed sysctl takes.
pub(super) fn check_endpoint_sysctls(list: &str) -> Result<(), Reject> {
    for sysctl in list.split(',') {
        if !is_safe_endpoint_sysctl(sysctl) {
            return Err(Reject::forbidden(
                "endpoint-sysctl",
                &format!("endpoint sysctl {sysctl:?}"),
                format!(
                    "only these may be set, to a number: {}",
                    safe_sysctls_listed()
                ),
            ));
        }
    }
    Ok(())
}

/// [`SAFE_ENDPOINT_SYSCTLS`] grouped by their prefix, for a refusal that
/// reads as one line: `net.ipv4.conf.IFNAME.{arp_announce, ...}, ...`.
fn safe_sysctls_listed() -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for sysctl in SAFE_ENDPOINT_SYSCTLS {
        let (prefix, name) = sysctl.split_at(sysctl.rfind('.').map_or(0, |dot| dot + 1));
        match groups.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, names)) => names.push(name),
            None => groups.push((prefix, vec![name])),
        }
    }
    groups
        .iter()
        .map(|(prefix, names)| format!("{prefix}{{{}}}", names.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_safe_endpoint_sysctl(sysctl: &str) -> bool {
    let Some((key, value)) = sysctl.split_once('=') else {
        return false;
    };
    let parts: Vec<&str> = key.split('.').collect();
    let [net, family, conf, ifname, name] = parts.as_slice() else {
        return false;
    };
    if !matches!(*ifname, "IFNAME" | "ifname") {
        return false;
    }
    let normalised = format!("{net}.{family}.{conf}.IFNAME.{name}");
    SAFE_ENDPOINT_SYSCTLS.contains(&normalised.as_str())
        && !value.is_empty()
        && value.len() <= 3
        && value.bytes().all(|b| b.is_ascii_digit())
}

/// The networks a create joins (API 1.44 lets `EndpointsConfig` name
/// several): each is checked like the only one was (`host` and
/// `container:` namespaces refused), and `none` cannot be combined with
/// another network, in `EndpointsConfig` or with `HostConfig.NetworkMode`
/// (dockerd refuses some of these only when the container starts).
/// `NetworkMode` empty or `default` names no network of its own.
pub(super) fn check_networks(
    host_config: &[(String, Json)],
    endpoints: &[(String, Json)],
) -> Result<(), Reject> {
    let mode = string(host_config, "NetworkMode", "HostConfig.NetworkMode")?;
    let mut named: Vec<&str> = endpoints.iter().map(|(name, _)| name.as_str()).collect();
    if !matches!(mode, "" | "default") && !named.contains(&mode) {
        named.push(mode);
    }
    for name in &named {
        if *name == "host" {
            return Err(Reject::forbidden(
                "namespace",
                "the host's network namespace",
                "NetworkingConfig names the host network",
            ));
        }
        if name.starts_with("container:") {
            return Err(Reject::forbidden(
                "namespace",
                "joining another container's network namespace",
                format!("NetworkingConfig names {name:?}; containers get namespaces of their own"),
            ));
        }
    }
    if named.len() > 1 && named.contains(&"none") {
        return Err(Reject::forbidden(
            "network-none",
            "the none network with another network",
            format!(
                "the container would join {}; none means no network at all",
                named.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Vec<(String, Json)> {
        match Json::parse(text.as_bytes()).unwrap() {
            Json::Object(fields) => fields,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn safe_sysctls_pass_in_both_spellings_of_ifname() {
        for list in [
            "net.ipv6.conf.IFNAME.disable_ipv6=1",
            "net.ipv6.conf.ifname.disable_ipv6=1",
            "net.ipv4.conf.IFNAME.rp_filter=2,net.ipv4.conf.IFNAME.arp_ignore=1",
            "net.ipv6.conf.IFNAME.accept_ra=0",
        ] {
            assert!(check_endpoint_sysctls(list).is_ok(), "{list}");
        }
    }

    #[test]
    fn other_sysctls_and_spellings_are_refused() {
        for list in [
            "net.ipv4.conf.IFNAME.forwarding=1",
            "net.ipv6.conf.IFNAME.forwarding=1",
            "net.ipv4.conf.IFNAME.route_localnet=1",
            "net.ipv4.conf.IFNAME.proxy_arp=1",
            "net.ipv4.conf.IFNAME.log_martians=1",
            "net.ipv4.neigh.IFNAME.gc_stale_time=1",
            "net.mpls.conf.IFNAME.input=1",
            "net.ipv4.conf.eth0.rp_filter=1",
            "net.ipv4.conf.IfName.rp_filter=1",
            "net.ipv4.conf.IFNAME.rp_filter",
            "net.ipv4.conf.IFNAME.rp_filter=",
            "net.ipv4.conf.IFNAME.rp_filter=1 ",
            "net.ipv4.conf.IFNAME.rp_filter=-1",
            "net.ipv4.conf.IFNAME.rp_filter=1=2",
            " net.ipv4.conf.IFNAME.rp_filter=1",
            "net.ipv4.conf.IFNAME.rp_filter.x=1",
            "kernel.ipv4.conf.IFNAME.rp_filter=1",
            "net.ipv6.conf.IFNAME.disable_ipv6=1,net.ipv4.conf.IFNAME.forwarding=1",
            "net.ipv6.conf.IFNAME.disable_ipv6=1,",
            "",
        ] {
            let reject = check_endpoint_sysctls(list).unwrap_err();
            assert_eq!(reject.rule, "endpoint-sysctl", "{list}");
        }
    }

    #[test]
    fn a_refused_sysctl_reads_as_one_line() {
        let reject = check_endpoint_sysctls("net.ipv4.conf.IFNAME.forwarding=1").unwrap_err();
        assert_eq!(
            reject.message,
            "dindbox: endpoint sysctl \"net.ipv4.conf.IFNAME.forwarding=1\" is not allowed: only these \
             may be set, to a number: net.ipv4.conf.IFNAME.{arp_announce, arp_filter, arp_ignore, \
             arp_notify, accept_redirects, rp_filter}, net.ipv6.conf.IFNAME.{accept_ra, \
             accept_redirects, autoconf, disable_ipv6}"
        );
        assert!(!reject.message.contains('\n'));
    }

    #[test]
    fn driver_options_other_than_sysctls_are_refused() {
        let at = "EndpointConfig";
        assert!(check_driver_opts(&object(r#"{"DriverOpts":null}"#), at).is_ok());
        assert!(check_driver_opts(&object(r#"{"DriverOpts":{}}"#), at).is_ok());
        let sysctl = r#"{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"}}"#;
        assert!(check_driver_opts(&object(sysctl), at).is_ok());
        for (opts, rule) in [
            (
                r#"{"com.docker.network.endpoint.macaddress":"02:42:ac:11:00:02"}"#,
                "endpoint-driver-opts",
            ),
            (
                r#"{"com.docker.network.endpoint.ifname":"eth9"}"#,
                "endpoint-driver-opts",
            ),
            (
                r#"{"COM.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"}"#,
                "endpoint-driver-opts",
            ),
            (
                r#"{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.forwarding=1"}"#,
                "endpoint-sysctl",
            ),
            (r#"{"com.docker.network.endpoint.sysctls":1}"#, "body-type"),
        ] {
            let settings = object(&format!(r#"{{"DriverOpts":{opts}}}"#));
            let reject = check_driver_opts(&settings, at).unwrap_err();
            assert_eq!(reject.rule, rule, "{opts}");
        }
    }

    #[test]
    fn several_networks_pass_each_network_rule() {
        let check = |mode: &str, endpoints: &str| {
            let hc = object(&format!(r#"{{"NetworkMode":{mode}}}"#));
            check_networks(&hc, &object(endpoints))
        };
        for (mode, endpoints) in [
            (r#""a""#, r#"{"a":{},"b":{}}"#),
            (r#""""#, r#"{"a":{},"b":{},"bridge":{}}"#),
            (r#""default""#, r#"{"none":{}}"#),
            (r#""none""#, r#"{"none":{}}"#),
            (r#""a""#, r#"{"b":{}}"#),
            ("null", r#"{}"#),
        ] {
            assert!(check(mode, endpoints).is_ok(), "{mode} {endpoints}");
        }
        for (mode, endpoints, rule) in [
            (r#""a""#, r#"{"a":{},"host":{}}"#, "namespace"),
            (r#""a""#, r#"{"a":{},"container:db":{}}"#, "namespace"),
            (r#""host""#, r#"{"a":{}}"#, "namespace"),
            (r#""a""#, r#"{"a":{},"none":{}}"#, "network-none"),
            (r#""none""#, r#"{"a":{}}"#, "network-none"),
            (r#""a""#, r#"{"none":{}}"#, "network-none"),
        ] {
            let reject = check(mode, endpoints).unwrap_err();
            assert_eq!(reject.rule, rule, "{mode} {endpoints}");
        }
    }
}
