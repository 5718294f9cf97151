//! Builds, image imports, volumes and networks: the other calls that create
//! something, and the options among theirs that reach the host.

#![forbid(unsafe_code)]

use super::container::{check_dir_path, check_endpoint, check_ulimits};
use super::schema::{CONFIG, ENDPOINT_SETTINGS, ULIMIT};
use super::value::{array, boolean, decode, inject_labels, non_empty, set, string, type_mismatch};
use super::{Family, Policy, Reject};
use crate::proxy::gojson::{field, get, Field, Json, Kind};
use crate::proxy::gomime;
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
            "version",
            "ulimits",
        ],
    )?;
    check_builder_version(policy, query.first("version").unwrap_or(""))?;
    if let Some(ulimits) = query.first("ulimits").filter(|u| !u.is_empty()) {
        check_build_ulimits(ulimits)?;
    }
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
    // Refused, not imitated (`policy::off`): Docker has no "off" for a remote
    // context, and any answer dockerd gives for one (a clone or download that
    // failed) would be about a fetch that never happened.
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

/// `version` is read by `r.FormValue` (the first value; the form body cannot
/// add one, since the proxy forwards its own Content-Type) at every API
/// version from 1.38. `version=2` selects BuildKit with the request's body as its context, no
/// `/session` needed: it is BuildKit all the same, so it needs the same
/// setting as the BuildKit tunnels.
fn check_builder_version(policy: &Policy, version: &str) -> Result<(), Reject> {
    match version {
        "" | "1" => Ok(()),
        "2" if policy.allow_buildkit => Ok(()),
        "2" => Err(Reject::forbidden(
            "buildkit",
            "a BuildKit build (version=2)",
            "this proxy cannot inspect them; use the classic builder (DOCKER_BUILDKIT=0)",
        )),
        other => Err(Reject::bad_request(
            "query",
            format!("unknown builder version {other:?}"),
        )),
    }
}

/// The build's `ulimits` parameter: a JSON array dockerd decodes into
/// `[]*units.Ulimit` with Go's rules, checked like a container's.
fn check_build_ulimits(text: &str) -> Result<(), Reject> {
    let json = Json::parse(text.as_bytes()).map_err(|err| {
        Reject::bad_request("query", format!("the ulimits parameter is not JSON: {err}"))
    })?;
    let decoded = decode(
        Json::Object(vec![("Ulimits".into(), json)]),
        &[field("Ulimits", Kind::SliceOfPointers(ULIMIT))],
    )?;
    check_ulimits(array(&decoded.fields, "Ulimits"), "ulimits")
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
    check_changes(query)?;
    match query.first("fromSrc") {
        None | Some("" | "-") => Ok(()),
        Some(_) if policy.allows(Family::ImportUrl) => Ok(()),
        // Refused, not imitated (`policy::off`): Docker cannot be told not to
        // download, so there is no "off" answer to copy.
        Some(url) => Err(Reject::forbidden(
            "import-url",
            "importing an image from a URL",
            format!("fromSrc={url:?} would be fetched by the daemon; send the tarball with the request instead (the policy setting allow-import-url enables it)"),
        )),
    }
}

/// The `changes` of a commit or an import: Dockerfile instructions that
/// dockerd joins with newlines, parses as a Dockerfile and applies to the
/// image's config. A `WORKDIR` among them (or in an `ONBUILD` trigger)
/// becomes the working directory of every container of the image, so it gets
/// the container rule; what the proxy cannot read plainly (a line
/// continuation, a `$` to substitute) is refused.
pub fn check_changes(query: &Query) -> Result<(), Reject> {
    let changes: Vec<&str> = query
        .0
        .iter()
        .filter(|(k, _)| k == "changes")
        .map(|(_, v)| v.as_str())
        .collect();
    for line in changes.join("\n").lines() {
        check_dockerfile_line(line)?;
    }
    Ok(())
}

/// One instruction line of `changes` or of an `OnBuild` trigger.
pub(super) fn check_dockerfile_line(line: &str) -> Result<(), Reject> {
    let line = line.trim();
    if line.ends_with(['\\', '`']) {
        return Err(Reject::forbidden(
            "changes",
            "a line continuation in image changes",
            format!("{line:?}: give each instruction on a line of its own"),
        ));
    }
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match gomime::go_to_lower(instruction.as_bytes()).as_str() {
        "onbuild" => check_dockerfile_line(rest),
        "workdir" => {
            let dir = rest.trim();
            if dir.contains(['$', '\\']) {
                return Err(Reject::forbidden(
                    "working-dir",
                    &format!("WORKDIR {dir:?}"),
                    "a WORKDIR in image changes must be a plain path (no $ substitution or escapes)",
                ));
            }
            check_dir_path(dir, "WORKDIR")
        }
        _ => Ok(()),
    }
}

/// `POST /commit`'s body: a container config (decoded like a create's)
/// merged into the image's; its working directory and `OnBuild` triggers
/// get the rules of [`check_changes`].
pub fn commit_config(body: Json) -> Result<Json, Reject> {
    let config = decode(body, CONFIG)?.fields;
    check_dir_path(string(&config, "WorkingDir", "WorkingDir")?, "WorkingDir")?;
    for trigger in array(&config, "OnBuild") {
        match trigger {
            Json::String(line) => check_dockerfile_line(line)?,
            other => return Err(type_mismatch("OnBuild[]", "a string", other)),
        }
    }
    Ok(Json::Object(config))
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
pub fn volume_create(policy: &Policy, body: Json) -> Result<Json, Reject> {
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
            "a cluster volume (ClusterVolumeSpec)",
            "swarm's cluster (CSI) volumes come from volume plugins, which tenants cannot use",
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
    field("EnableIPv4", Scalar),
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
pub fn network_create(policy: &Policy, body: Json) -> Result<Json, Reject> {
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
        if let Some(Json::Array(configs)) = get(ipam, "Config") {
            policy.subnets.check_ipam_config(configs)?;
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

/// Checks `POST /networks/{id}/connect`: the endpoint rules of create.
pub fn network_connect(policy: &Policy, body: Json) -> Result<Json, Reject> {
    let request = decode(body, NETWORK_CONNECT)?.fields;
    if let Some(Json::Object(endpoint)) = get(&request, "EndpointConfig") {
        check_endpoint(policy, endpoint, "EndpointConfig")?;
    }
    Ok(Json::Object(request))
}

const NETWORK_DISCONNECT: &[Field] = &[field("Container", Scalar), field("Force", Scalar)];

/// Canonicalises `POST /networks/{id}/disconnect`, so the `Container` the
/// owner check reads is the one dockerd reads.
pub fn network_disconnect(body: Json) -> Result<Json, Reject> {
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
    fn buildkit_builds_need_the_buildkit_setting() {
        let box_policy = Policy {
            allow_buildkit: true,
            ..Policy::default()
        };
        for version in ["", "1"] {
            let q = query(&format!("t=x&version={version}"));
            assert!(build(&Policy::default(), &q).is_ok(), "version={version}");
        }
        let v2 = query("t=x&version=2");
        assert_eq!(build(&Policy::default(), &v2).unwrap_err().rule, "buildkit");
        assert!(build(&box_policy, &v2).is_ok());
        assert_eq!(
            build(&Policy::default(), &query("version=1&version=2"))
                .unwrap_err()
                .rule,
            "query"
        );
        assert_eq!(
            build(&Policy::default(), &query("version=3"))
                .unwrap_err()
                .rule,
            "query"
        );
    }

    #[test]
    fn build_ulimits_follow_the_container_rule() {
        let ok = r#"[{"Name":"nofile","Hard":1024,"Soft":1024}]"#;
        let q = |ulimits: &str| {
            let mut q = Query::default();
            q.set("ulimits", ulimits);
            build(&Policy::default(), &q)
        };
        assert!(q(ok).is_ok());
        assert_eq!(
            q(r#"[{"name":"RTPRIO","Hard":99,"Soft":99}]"#)
                .unwrap_err()
                .rule,
            "realtime"
        );
        assert_eq!(
            q(r#"[{"Name":"rtpr\u0131o","Hard":99}]"#).unwrap_err().rule,
            "ulimit"
        );
        assert_eq!(q("{").unwrap_err().rule, "query");
    }

    #[test]
    fn image_changes_keep_working_directories_out_of_proc() {
        let changes = |values: &[&str]| {
            let mut q = Query::default();
            for v in values {
                q.0.push(("changes".into(), v.to_string()));
            }
            check_changes(&q)
        };
        assert!(changes(&["WORKDIR /app", "CMD [\"sh\"]", "ENV A=/proc"]).is_ok());
        for hostile in [
            &["WORKDIR /proc/self/fd/7"][..],
            &["workdir //proc/self/fd/7"],
            &["WORKD\u{0130}R /proc"],
            &["CMD x\nWORKDIR /x/../proc/self/fd/7"],
            &["ONBUILD WORKDIR /proc/self/fd/7"],
            &["ENV D=/proc", "WORKDIR $D/self/fd/7"],
            &["WORKDIR /pr\\", "oc/self/fd/7"],
            &["WORKDIR /dev/fd/7"],
        ] {
            assert!(changes(hostile).is_err(), "{hostile:?}");
        }
        let import = |q: &str| image_create(&Policy::default(), &query(q));
        assert!(import("fromSrc=-&changes=WORKDIR+%2Fapp").is_ok());
        assert_eq!(
            import("fromSrc=-&changes=WORKDIR+%2F%2Fproc%2Fself%2Ffd%2F7")
                .unwrap_err()
                .rule,
            "working-dir"
        );
    }

    #[test]
    fn commit_bodies_keep_working_directories_out_of_proc() {
        assert!(commit_config(body(r#"{"WorkingDir":"/app","OnBuild":["RUN true"]}"#)).is_ok());
        for hostile in [
            r#"{"WorkingDir":"/./proc/self/fd/7"}"#,
            r#"{"workingdir":"/proc"}"#,
            r#"{"OnBuild":["WORKDIR /proc/self/fd/7"]}"#,
        ] {
            assert_eq!(
                commit_config(body(hostile)).unwrap_err().rule,
                "working-dir",
                "{hostile}"
            );
        }
    }

    #[test]
    fn network_subnets_stay_off_the_host_s_ranges() {
        let policy = Policy::default();
        let create = |ipam: &str| {
            network_create(
                &policy,
                body(&format!(r#"{{"Name":"n","IPAM":{{"Config":{ipam}}}}}"#)),
            )
        };
        assert!(create(r#"[{"Subnet":"172.30.0.0/16","Gateway":"172.30.0.1"}]"#).is_ok());
        for hostile in [
            r#"[{"Subnet":"169.254.169.0/24"}]"#,
            r#"[{"Subnet":"10.0.0.0/8"}]"#,
            r#"[{"subnet":"172.30.0.0/16","iprange":"169.254.0.0/16"}]"#,
        ] {
            assert_eq!(
                create(hostile).unwrap_err().rule,
                "network-subnet",
                "{hostile}"
            );
        }
        let connect = |endpoint: &str| {
            network_connect(
                &policy,
                body(&format!(
                    r#"{{"Container":"c","EndpointConfig":{endpoint}}}"#
                )),
            )
        };
        assert!(connect(r#"{"Aliases":["web"]}"#).is_ok());
        assert_eq!(
            connect(r#"{"NetworkID":"0123456789ab"}"#).unwrap_err().rule,
            "endpoint-network-id"
        );
        assert_eq!(
            connect(r#"{"IPAMConfig":{"IPv4Address":"169.254.169.254"}}"#)
                .unwrap_err()
                .rule,
            "network-subnet"
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
            body(r#"{"Name":"data","Labels":{"a":"b"}}"#)
        )
        .is_ok());
        let bind = r#"{"Name":"x","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#;
        assert_eq!(
            volume_create(&Policy::default(), body(bind))
                .unwrap_err()
                .rule,
            "volume-options"
        );
        assert_eq!(
            volume_create(
                &Policy::default(),
                body(r#"{"driveropts":{"device":"/dev/sda1"}}"#)
            )
            .unwrap_err()
            .rule,
            "volume-options"
        );
        assert_eq!(
            volume_create(&Policy::default(), body(r#"{"Driver":"sshfs"}"#))
                .unwrap_err()
                .rule,
            "volume-driver"
        );
    }

    #[test]
    fn networks_stay_on_bridges_without_host_options() {
        assert!(network_create(
            &Policy::default(),
            body(
                r#"{"Name":"n","Driver":"bridge","IPAM":{"Config":[{"Subnet":"172.30.9.0/24"}]}}"#
            )
        )
        .is_ok());
        assert_eq!(
            network_create(
                &Policy::default(),
                body(r#"{"Name":"n","Driver":"macvlan","Options":{"parent":"eth0"}}"#)
            )
            .unwrap_err()
            .rule,
            "network-driver"
        );
        assert_eq!(
            network_create(
                &Policy::default(),
                body(r#"{"Name":"n","Options":{"com.docker.network.bridge.name":"eth0"}}"#)
            )
            .unwrap_err()
            .rule,
            "network-options"
        );
        assert_eq!(
            network_create(
                &Policy::default(),
                body(r#"{"Name":"n","IPAM":{"Driver":"x"}}"#)
            )
            .unwrap_err()
            .rule,
            "network-ipam"
        );
        assert_eq!(
            network_create(&Policy::default(), body(r#"{"Name":"n","Ingress":true}"#))
                .unwrap_err()
                .rule,
            "swarm"
        );
        let connect = r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"x"}}}"#;
        assert_eq!(
            network_connect(&Policy::default(), body(connect))
                .unwrap_err()
                .rule,
            "endpoint-sysctl"
        );
        let connect = r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.macaddress":"x"}}}"#;
        assert_eq!(
            network_connect(&Policy::default(), body(connect))
                .unwrap_err()
                .rule,
            "endpoint-driver-opts"
        );
    }

    #[test]
    fn connect_takes_the_endpoint_fields_of_api_1_44_to_1_54() {
        let connect = r#"{"Container":"c","EndpointConfig":{"MacAddress":"02:42:ac:11:00:09","GwPriority":5,"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.arp_ignore=1"}}}"#;
        assert_eq!(
            network_connect(&Policy::default(), body(connect))
                .unwrap()
                .to_vec(),
            connect.as_bytes()
        );
    }

    #[test]
    fn enable_ipv4_reaches_the_tenant_s_own_network() {
        let forwarded = network_create(
            &Policy::default(),
            body(r#"{"Name":"n","enableipv4":false,"EnableIPv6":true}"#),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(forwarded.to_vec()).unwrap(),
            r#"{"Name":"n","EnableIPv4":false,"EnableIPv6":true}"#
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
            volume_create(&policy, body(r#"{"Name":"v","labels":{"owner":"x"}}"#)).unwrap();
        assert_eq!(
            String::from_utf8(volume.to_vec()).unwrap(),
            r#"{"Name":"v","Labels":{"owner":"ci-42"}}"#
        );
        let network = network_create(&policy, body(r#"{"Name":"n"}"#)).unwrap();
        assert_eq!(
            String::from_utf8(network.to_vec()).unwrap(),
            r#"{"Name":"n","Labels":{"owner":"ci-42"}}"#
        );
    }

    #[test]
    fn overlay_networks_only_when_swarm_is_enabled() {
        let overlay = r#"{"Name":"o","Driver":"overlay","Scope":"swarm","Attachable":true,"Options":{"encrypted":""}}"#;
        assert_eq!(
            network_create(&Policy::default(), body(overlay))
                .unwrap_err()
                .rule,
            "network-driver"
        );
        let swarm = Policy {
            allow: [Family::Swarm].into(),
            ..Policy::default()
        };
        assert!(network_create(&swarm, body(overlay)).is_ok());
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
                network_create(&swarm, body(hostile)).unwrap_err().rule,
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
        let forwarded = network_create(&policy, body(r#"{"Name":"n"}"#)).unwrap();
        assert_eq!(
            String::from_utf8(forwarded.to_vec()).unwrap(),
            r#"{"Name":"n","Options":{"com.docker.network.driver.mtu":"1400"}}"#
        );
        let chosen = network_create(
            &policy,
            body(r#"{"Name":"n","Options":{"com.docker.network.driver.mtu":"1300"}}"#),
        )
        .unwrap();
        assert!(String::from_utf8(chosen.to_vec())
            .unwrap()
            .contains(r#""1300""#));
    }
}
