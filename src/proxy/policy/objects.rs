//! Builds, image imports, volumes and networks: the other calls that create
//! something, and the options among theirs that reach the host.

#![forbid(unsafe_code)]

use super::container::ENDPOINT_SETTINGS;
use super::value::{boolean, decode, inject_labels, non_empty, set, string};
use super::{Family, Policy, Reject};
use crate::proxy::gojson::{field, get, Field, Json, Kind};
use crate::proxy::query::Query;

use Kind::{Map, Opaque, Pointer, Scalar, SliceOf};

/// Checks `POST /build`'s query (the build options live there) and returns it
/// with the labels and cgroup parent set.
pub fn build(policy: &Policy, query: &Query) -> Result<Query, Reject> {
    single_valued(
        query,
        &[
            "networkmode",
            "remote",
            "cgroupparent",
            "isolation",
            "securityopt",
        ],
    )?;
    if !matches!(
        query.first("networkmode").unwrap_or(""),
        "" | "default" | "bridge" | "none"
    ) {
        return Err(Reject::forbidden(
            "build-network",
            "this build network",
            format!(
                "networkmode={:?}; builds get a network of their own",
                query.first("networkmode").unwrap_or("")
            ),
        ));
    }
    if query.first("remote").is_some_and(|r| !r.is_empty()) && !policy.allows(Family::BuildRemote) {
        return Err(Reject::forbidden(
            "build-remote",
            "a remote build context",
            "the daemon would fetch it itself; send the context with the request instead \
             (the policy setting allow-build-remote enables it)",
        ));
    }
    // The box's own parent is what the proxy injects; asking for it changes nothing.
    let parent = query.first("cgroupparent").unwrap_or("");
    if !parent.is_empty() && Some(parent) != policy.cgroup_parent.as_deref() {
        return Err(Reject::forbidden(
            "cgroup-parent",
            "choosing the cgroup parent",
            "dindbox places every build under the box's own cgroup",
        ));
    }
    if query
        .first("securityopt")
        .is_some_and(|s| !s.is_empty() && s != "[]")
    {
        return Err(Reject::forbidden(
            "security-opt",
            "build security options",
            "builds keep the default profiles",
        ));
    }
    if !matches!(query.first("isolation").unwrap_or(""), "" | "default") {
        return Err(Reject::forbidden(
            "isolation",
            "this isolation",
            "only the default isolation exists on Linux",
        ));
    }
    let mut query = query.clone();
    if let Some(parent) = &policy.cgroup_parent {
        query.set("cgroupparent", parent);
    }
    if !policy.labels.is_empty() || policy.owner.is_some() {
        query.set("labels", &build_labels(policy, query.first("labels"))?);
    }
    Ok(query)
}

/// The build's `labels` parameter (a JSON map) with the policy's labels set.
fn build_labels(policy: &Policy, given: Option<&str>) -> Result<String, Reject> {
    let mut labels: serde_json::Map<String, serde_json::Value> = match given {
        None | Some("") => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).map_err(|err| {
            Reject::bad_request(
                "query",
                format!("the labels parameter is not a JSON object: {err}"),
            )
        })?,
    };
    for (key, value) in policy.injected_labels().iter() {
        labels.insert(key.clone(), value.clone().into());
    }
    Ok(serde_json::Value::Object(labels).to_string())
}

/// Checks `POST /images/create`: a pull, or an import of the request's body;
/// an import the daemon fetches from a URL only with [`Family::ImportUrl`].
pub fn image_create(policy: &Policy, query: &Query) -> Result<(), Reject> {
    single_valued(query, &["fromSrc"])?;
    match query.first("fromSrc") {
        None | Some("" | "-") => Ok(()),
        Some(_) if policy.allows(Family::ImportUrl) => Ok(()),
        Some(url) => Err(Reject::forbidden(
            "import-url",
            "importing an image from a URL",
            format!("fromSrc={url:?} would be fetched by the daemon; send the tarball with the request instead (the policy setting allow-import-url enables it)"),
        )),
    }
}

const VOLUME_CREATE: &[Field] = &[
    field("Name", Scalar),
    field("Driver", Scalar),
    field("DriverOpts", Map),
    field("Labels", Map),
    field("ClusterVolumeSpec", Opaque),
];

/// Checks `POST /volumes/create`: the local driver, without options (its
/// `type`/`o`/`device` options mount host paths, block devices or NFS).
pub fn volume_create(policy: &Policy, body: &Json) -> Result<Json, Reject> {
    let mut request = decode(body, VOLUME_CREATE)?.fields;
    if !matches!(string(&request, "Driver", "Driver")?, "" | "local") {
        return Err(Reject::forbidden(
            "volume-driver",
            "a volume driver plugin",
            "only the local driver is allowed",
        ));
    }
    if non_empty(&request, "DriverOpts") {
        return Err(Reject::forbidden(
            "volume-options",
            "volume driver options",
            "DriverOpts can mount host paths or devices (o=bind, device=...)",
        ));
    }
    if !matches!(get(&request, "ClusterVolumeSpec"), None | Some(Json::Null)) {
        return Err(Reject::forbidden(
            "swarm",
            "cluster volumes",
            "swarm is not available to tenants",
        ));
    }
    inject_labels(&mut request, &policy.injected_labels());
    Ok(Json::Object(request))
}

const IPAM: &[Field] = &[
    field("Driver", Scalar),
    field("Options", Map),
    field(
        "Config",
        SliceOf(&[
            field("Subnet", Scalar),
            field("IPRange", Scalar),
            field("Gateway", Scalar),
            field("AuxiliaryAddresses", Map),
        ]),
    ),
];

const NETWORK_CREATE: &[Field] = &[
    field("Name", Scalar),
    field("CheckDuplicate", Scalar),
    field("Driver", Scalar),
    field("Scope", Scalar),
    field("EnableIPv6", Scalar),
    field("IPAM", Pointer(IPAM)),
    field("Internal", Scalar),
    field("Attachable", Scalar),
    field("Ingress", Scalar),
    field("ConfigOnly", Scalar),
    field("ConfigFrom", Pointer(&[field("Network", Scalar)])),
    field("Options", Map),
    field("Labels", Map),
];

const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// Sets a driver option unless the tenant chose one.
fn set_default_option(request: &mut Vec<(String, Json)>, key: &str, value: &str) {
    let mut options = match get(request, "Options") {
        Some(Json::Object(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    if !options.iter().any(|(k, _)| k == key) {
        options.push((key.to_string(), Json::String(value.to_string())));
        set(request, "Options", Json::Object(options));
    }
}

/// Bridge driver options that only shape the tenant's own network.
const NETWORK_OPTIONS: &[&str] = &[MTU_OPTION, "com.docker.network.bridge.enable_icc"];

/// Checks `POST /networks/create`: bridge networks (and overlay networks when
/// swarm is enabled) with the default IPAM and no options that name or
/// reconfigure host interfaces.
pub fn network_create(policy: &Policy, body: &Json) -> Result<Json, Reject> {
    let mut request = decode(body, NETWORK_CREATE)?.fields;
    let swarm = policy.allows(Family::Swarm);
    let driver = string(&request, "Driver", "Driver")?;
    let overlay = swarm && driver == "overlay";
    if !matches!(driver, "" | "bridge") && !overlay {
        return Err(Reject::forbidden(
            "network-driver",
            &format!("the {driver:?} network driver"),
            if swarm {
                "only bridge and overlay networks are allowed (macvlan, ipvlan and plugins reach the host's interfaces)"
            } else {
                "only bridge networks are allowed (macvlan, ipvlan and plugins reach the host's interfaces)"
            },
        ));
    }
    let scope = string(&request, "Scope", "Scope")?;
    if !(matches!(scope, "" | "local") || (swarm && scope == "swarm"))
        || boolean(&request, "Ingress", "Ingress")?
        || boolean(&request, "ConfigOnly", "ConfigOnly")?
        || !matches!(get(&request, "ConfigFrom"), None | Some(Json::Null))
    {
        return Err(Reject::forbidden(
            "swarm",
            "swarm network settings",
            if swarm {
                "ingress and config-only networks are not available to tenants"
            } else {
                "swarm is not available to tenants"
            },
        ));
    }
    if let Some(Json::Object(options)) = get(&request, "Options") {
        // An overlay may be encrypted (IPsec between the swarm's nodes).
        let allowed = |key: &str| NETWORK_OPTIONS.contains(&key) || (overlay && key == "encrypted");
        if let Some((key, _)) = options.iter().find(|(k, _)| !allowed(k)) {
            return Err(Reject::forbidden(
                "network-options",
                &format!("network option {key:?}"),
                format!("only these are allowed: {}", NETWORK_OPTIONS.join(", ")),
            ));
        }
    }
    if let Some(Json::Object(ipam)) = get(&request, "IPAM") {
        if !matches!(string(ipam, "Driver", "IPAM.Driver")?, "" | "default")
            || non_empty(ipam, "Options")
        {
            return Err(Reject::forbidden(
                "network-ipam",
                "an IPAM driver or IPAM options",
                "only the default IPAM is allowed",
            ));
        }
    }
    inject_labels(&mut request, &policy.injected_labels());
    if let Some(mtu) = policy.network_mtu {
        set_default_option(&mut request, MTU_OPTION, &mtu.to_string());
    }
    Ok(Json::Object(request))
}

const NETWORK_CONNECT: &[Field] = &[
    field("Container", Scalar),
    field("EndpointConfig", Pointer(ENDPOINT_SETTINGS)),
];

/// Checks `POST /networks/{id}/connect`: no endpoint driver options.
pub fn network_connect(body: &Json) -> Result<Json, Reject> {
    let request = decode(body, NETWORK_CONNECT)?.fields;
    if let Some(Json::Object(endpoint)) = get(&request, "EndpointConfig") {
        if non_empty(endpoint, "DriverOpts") {
            return Err(Reject::forbidden(
                "endpoint-driver-opts",
                "endpoint driver options",
                "EndpointConfig.DriverOpts can set host interface sysctls",
            ));
        }
    }
    Ok(Json::Object(request))
}

const NETWORK_DISCONNECT: &[Field] = &[field("Container", Scalar), field("Force", Scalar)];

/// Canonicalises `POST /networks/{id}/disconnect`, so the `Container` the
/// owner check reads is the one dockerd reads.
pub fn network_disconnect(body: &Json) -> Result<Json, Reject> {
    Ok(Json::Object(decode(body, NETWORK_DISCONNECT)?.fields))
}

/// dockerd reads the first value of a parameter; a second one is refused so
/// nobody has to remember which one counts.
pub(super) fn single_valued(query: &Query, names: &[&str]) -> Result<(), Reject> {
    match names.iter().find(|n| query.count(n) > 1) {
        Some(name) => Err(Reject::bad_request(
            "query",
            format!("the query parameter {name:?} is given more than once"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Query {
        Query::parse(q).unwrap()
    }

    fn body(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn builds_refuse_host_network_remote_contexts_and_cgroup_parents() {
        assert!(build(&Policy::default(), &query("t=app&networkmode=default")).is_ok());
        assert_eq!(
            build(&Policy::default(), &query("networkmode=host"))
                .unwrap_err()
                .rule,
            "build-network"
        );
        assert_eq!(
            build(&Policy::default(), &query("networkmode=container:abc"))
                .unwrap_err()
                .rule,
            "build-network"
        );
        assert_eq!(
            build(
                &Policy::default(),
                &query("networkmode=bridge&networkmode=host")
            )
            .unwrap_err()
            .rule,
            "query"
        );
        assert_eq!(
            build(
                &Policy::default(),
                &query("remote=https://example.invalid/x.git")
            )
            .unwrap_err()
            .rule,
            "build-remote"
        );
        assert_eq!(
            build(&Policy::default(), &query("cgroupparent=/"))
                .unwrap_err()
                .rule,
            "cgroup-parent"
        );
        assert_eq!(
            build(
                &Policy::default(),
                &query("securityopt=%5B%22seccomp%3Dunconfined%22%5D")
            )
            .unwrap_err()
            .rule,
            "security-opt"
        );
    }

    #[test]
    fn imports_from_urls_are_refused() {
        let policy = Policy::default();
        assert!(image_create(&policy, &query("fromImage=busybox&tag=latest")).is_ok());
        assert!(image_create(&policy, &query("fromSrc=-&repo=x")).is_ok());
        assert_eq!(
            image_create(&policy, &query("fromSrc=http://169.254.169.254/"))
                .unwrap_err()
                .rule,
            "import-url"
        );
    }

    #[test]
    fn volumes_with_bind_like_options_are_refused() {
        assert!(volume_create(
            &Policy::default(),
            &body(r#"{"Name":"data","Labels":{"a":"b"}}"#)
        )
        .is_ok());
        let bind = r#"{"Name":"x","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#;
        assert_eq!(
            volume_create(&Policy::default(), &body(bind))
                .unwrap_err()
                .rule,
            "volume-options"
        );
        assert_eq!(
            volume_create(
                &Policy::default(),
                &body(r#"{"driveropts":{"device":"/dev/sda1"}}"#)
            )
            .unwrap_err()
            .rule,
            "volume-options"
        );
        assert_eq!(
            volume_create(&Policy::default(), &body(r#"{"Driver":"sshfs"}"#))
                .unwrap_err()
                .rule,
            "volume-driver"
        );
    }

    #[test]
    fn networks_stay_on_bridges_without_host_options() {
        assert!(network_create(
            &Policy::default(),
            &body(r#"{"Name":"n","Driver":"bridge","IPAM":{"Config":[{"Subnet":"10.9.0.0/24"}]}}"#)
        )
        .is_ok());
        assert_eq!(
            network_create(
                &Policy::default(),
                &body(r#"{"Name":"n","Driver":"macvlan","Options":{"parent":"eth0"}}"#)
            )
            .unwrap_err()
            .rule,
            "network-driver"
        );
        assert_eq!(
            network_create(
                &Policy::default(),
                &body(r#"{"Name":"n","Options":{"com.docker.network.bridge.name":"eth0"}}"#)
            )
            .unwrap_err()
            .rule,
            "network-options"
        );
        assert_eq!(
            network_create(
                &Policy::default(),
                &body(r#"{"Name":"n","IPAM":{"Driver":"x"}}"#)
            )
            .unwrap_err()
            .rule,
            "network-ipam"
        );
        assert_eq!(
            network_create(&Policy::default(), &body(r#"{"Name":"n","Ingress":true}"#))
                .unwrap_err()
                .rule,
            "swarm"
        );
        let connect = r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"x"}}}"#;
        assert_eq!(
            network_connect(&body(connect)).unwrap_err().rule,
            "endpoint-driver-opts"
        );
    }

    #[test]
    fn builds_volumes_and_networks_get_the_labels() {
        let policy = Policy {
            labels: vec![("owner".into(), "ci-42".into())],
            cgroup_parent: Some("/dindbox".into()),
            ..Policy::default()
        };
        let q = build(
            &policy,
            &query(r#"t=x&labels=%7B%22owner%22%3A%22me%22%2C%22a%22%3A%22b%22%7D"#),
        )
        .unwrap();
        assert_eq!(q.first("cgroupparent"), Some("/dindbox"));
        let labels: serde_json::Value = serde_json::from_str(q.first("labels").unwrap()).unwrap();
        assert_eq!(labels, serde_json::json!({"owner":"ci-42","a":"b"}));
        let volume =
            volume_create(&policy, &body(r#"{"Name":"v","labels":{"owner":"x"}}"#)).unwrap();
        assert_eq!(
            String::from_utf8(volume.to_vec()).unwrap(),
            r#"{"Name":"v","Labels":{"owner":"ci-42"}}"#
        );
        let network = network_create(&policy, &body(r#"{"Name":"n"}"#)).unwrap();
        assert_eq!(
            String::from_utf8(network.to_vec()).unwrap(),
            r#"{"Name":"n","Labels":{"owner":"ci-42"}}"#
        );
    }

    #[test]
    fn overlay_networks_only_when_swarm_is_enabled() {
        let overlay = r#"{"Name":"o","Driver":"overlay","Scope":"swarm","Attachable":true,"Options":{"encrypted":""}}"#;
        assert_eq!(
            network_create(&Policy::default(), &body(overlay))
                .unwrap_err()
                .rule,
            "network-driver"
        );
        let swarm = Policy {
            allow: [Family::Swarm].into(),
            ..Policy::default()
        };
        assert!(network_create(&swarm, &body(overlay)).is_ok());
        for (hostile, rule) in [
            (r#"{"Name":"o","Driver":"macvlan"}"#, "network-driver"),
            (r#"{"Name":"o","Driver":"overlay","Ingress":true}"#, "swarm"),
            (
                r#"{"Name":"o","Driver":"overlay","Options":{"com.docker.network.driver.overlay.vxlanid_list":"4097"}}"#,
                "network-options",
            ),
            (
                r#"{"Name":"o","Options":{"encrypted":""}}"#,
                "network-options",
            ),
        ] {
            assert_eq!(
                network_create(&swarm, &body(hostile)).unwrap_err().rule,
                rule,
                "{hostile}"
            );
        }
    }

    #[test]
    fn networks_get_the_boxs_mtu_unless_they_choose_one() {
        let policy = Policy {
            network_mtu: Some(1400),
            ..Policy::default()
        };
        let forwarded = network_create(&policy, &body(r#"{"Name":"n"}"#)).unwrap();
        assert_eq!(
            String::from_utf8(forwarded.to_vec()).unwrap(),
            r#"{"Name":"n","Options":{"com.docker.network.driver.mtu":"1400"}}"#
        );
        let chosen = network_create(
            &policy,
            &body(r#"{"Name":"n","Options":{"com.docker.network.driver.mtu":"1300"}}"#),
        )
        .unwrap();
        assert!(String::from_utf8(chosen.to_vec())
            .unwrap()
            .contains(r#""1300""#));
    }
}
