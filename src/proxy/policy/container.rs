//! Container create, update and exec create: the rules for every field that
//! can reach the host, over bodies decoded with the tables of [`super::schema`].

#![forbid(unsafe_code)]

use super::schema::{CONTAINER_CREATE, CONTAINER_UPDATE, EXEC_CREATE};
use super::value::{
    array, boolean, decode, display, inject_labels, integer, non_empty, set, set_default, string,
};
use super::{endpoints, mounts, Policy, Reject};
use crate::proxy::gojson::{get, Json};
use crate::proxy::gopath::clean_path;

/// The sysctls a container may set: namespaced, and harmless to its neighbours
/// (the Kubernetes "safe" set).
pub(super) const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_fin_timeout",
];

pub(super) const LOG_DRIVERS: &[&str] = &["", "json-file", "local", "none"];

/// Checks a container-create body and returns the canonical body to forward.
pub fn container_create(policy: &Policy, body: Json) -> Result<Json, Reject> {
    let decoded = decode(body, CONTAINER_CREATE)?;
    refuse_unknown_host_config_keys(&decoded.unknown)?;
    let mut request = decoded.fields;
    check_working_dir(&request)?;
    let mut host_config = match request.iter_mut().find(|(k, _)| k == "HostConfig") {
        Some((_, Json::Object(fields))) => std::mem::take(fields),
        _ => Vec::new(),
    };
    check_host_config(policy, &host_config)?;
    check_networking(policy, &host_config, &request)?;
    set_default(&mut host_config, "CgroupnsMode", "private");
    set_default(&mut host_config, "IpcMode", "private");
    apply_budget(policy, &mut host_config, Budget::Create)?;
    label_mounted_volumes(&mut host_config, &policy.injected_labels());
    if let Some(parent) = &policy.cgroup_parent {
        set(
            &mut host_config,
            "CgroupParent",
            Json::String(parent.clone()),
        );
    }
    set(&mut request, "HostConfig", Json::Object(host_config));
    inject_labels(&mut request, &policy.injected_labels());
    Ok(Json::Object(request))
}

/// dockerd creates the volume of a `Mounts` entry of type volume when it does
/// not exist (a fresh anonymous one when it has no `Source`) with the labels
/// in `VolumeOptions.Labels`: those get the injected labels, so the volumes a
/// container creates for itself are labelled (and, with an owner label, owned)
/// like the ones created through `/volumes/create`.
pub(super) fn label_mounted_volumes(
    host_config: &mut [(String, Json)],
    labels: &[(String, String)],
) {
    if labels.is_empty() {
        return;
    }
    let Some((_, Json::Array(mounts))) = host_config.iter_mut().find(|(k, _)| k == "Mounts") else {
        return;
    };
    for mount in mounts {
        let Json::Object(mount) = mount else { continue };
        if !matches!(get(mount, "Type"), Some(Json::String(t)) if t == "volume") {
            continue;
        }
        let mut options = match get(mount, "VolumeOptions") {
            Some(Json::Object(options)) => options.clone(),
            _ => Vec::new(),
        };
        inject_labels(&mut options, labels);
        set(mount, "VolumeOptions", Json::Object(options));
    }
}

/// Checks a container-update body: the same resource rules as create.
pub fn container_update(policy: &Policy, body: Json) -> Result<Json, Reject> {
    let mut request = decode(body, CONTAINER_UPDATE)?.fields;
    check_resources(policy, &request)?;
    apply_budget(policy, &mut request, Budget::Update)?;
    Ok(Json::Object(request))
}

/// Whether an absent limit means "none" (create: the default is injected) or
/// "unchanged" (update: left alone).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Budget {
    Create,
    Update,
}

/// The box's budget: a container gets the default memory and pids limits when
/// it asks for none, may ask for less, and is refused when it asks for more
/// (or for "unlimited").
fn apply_budget(
    policy: &Policy,
    resources: &mut Vec<(String, Json)>,
    budget: Budget,
) -> Result<(), Reject> {
    let limits = [
        ("Memory", policy.memory, "memory"),
        ("PidsLimit", policy.pids, "pids"),
    ];
    for (name, limit, what) in limits {
        let Some(limit) = limit else { continue };
        let present = !matches!(get(resources, name), None | Some(Json::Null));
        let asked = integer(resources, name, name)?;
        // In an update, 0 leaves memory unchanged but makes pids unlimited.
        let unlimited_update = budget == Budget::Update
            && present
            && (asked < 0 || (asked == 0 && name == "PidsLimit"));
        if asked > limit || unlimited_update {
            let asked = if asked > 0 {
                asked.to_string()
            } else {
                "unlimited".to_string()
            };
            return Err(Reject::forbidden(
                "budget",
                &format!("a {what} limit of {asked}"),
                format!("the box's budget allows at most {limit} for {name}"),
            ));
        }
        if budget == Budget::Create && asked <= 0 {
            set(resources, name, Json::Number(limit.into()));
        }
    }
    Ok(())
}

/// Checks an exec-create body and returns the canonical body to forward.
pub fn exec_create(body: Json) -> Result<Json, Reject> {
    let request = decode(body, EXEC_CREATE)?.fields;
    if boolean(&request, "Privileged", "Privileged")? {
        return Err(Reject::forbidden(
            "privileged",
            "privileged exec",
            "Privileged=true would give the process every capability",
        ));
    }
    check_working_dir(&request)?;
    Ok(Json::Object(request))
}

/// dockerd ignores keys it does not know, but a newer dockerd may know a key
/// that reaches the host: an unknown key directly in HostConfig is refused.
fn refuse_unknown_host_config_keys(unknown: &[String]) -> Result<(), Reject> {
    let host_config_key = unknown
        .iter()
        .filter_map(|path| path.strip_prefix("HostConfig."))
        .find(|key| !key.contains(['.', '[']));
    match host_config_key {
        Some(key) => Err(Reject::forbidden(
            "unknown-field",
            &format!("HostConfig.{key}"),
            "dindbox does not know this setting, so it cannot tell whether it reaches the host",
        )),
        None => Ok(()),
    }
}

fn check_host_config(policy: &Policy, hc: &[(String, Json)]) -> Result<(), Reject> {
    if boolean(hc, "Privileged", "HostConfig.Privileged")? {
        return Err(Reject::forbidden(
            "privileged",
            "privileged mode",
            "HostConfig.Privileged=true would give every capability and all host devices",
        ));
    }
    check_cap_add(hc)?;
    check_binds(hc)?;
    check_mounts(hc)?;
    check_namespaces(hc)?;
    check_security_opt(hc)?;
    for name in ["MaskedPaths", "ReadonlyPaths"] {
        if !matches!(get(hc, name), None | Some(Json::Null)) {
            return Err(Reject::forbidden(
                "system-paths",
                &format!("setting HostConfig.{name}"),
                "it replaces the defaults that hide /proc and /sys from the container (systempaths=unconfined)",
            ));
        }
    }
    check_sysctls(hc)?;
    for (name, what) in [
        ("Runtime", "choosing a runtime"),
        ("Cgroup", "sharing another container's cgroup"),
    ] {
        if !string(hc, name, &format!("HostConfig.{name}"))?.is_empty() {
            return Err(Reject::forbidden(
                "runtime",
                what,
                format!("HostConfig.{name} must be empty"),
            ));
        }
    }
    if !matches!(
        string(hc, "VolumeDriver", "HostConfig.VolumeDriver")?,
        "" | "local"
    ) {
        return Err(Reject::forbidden(
            "volume-driver",
            "a volume driver plugin",
            "only the local driver is allowed",
        ));
    }
    if !matches!(
        string(hc, "Isolation", "HostConfig.Isolation")?,
        "" | "default"
    ) {
        return Err(Reject::forbidden(
            "isolation",
            "this isolation",
            "only the default isolation exists on Linux",
        ));
    }
    if let Some(Json::Object(log)) = get(hc, "LogConfig") {
        let driver = string(log, "Type", "HostConfig.LogConfig.Type")?;
        if !LOG_DRIVERS.contains(&driver) {
            return Err(Reject::forbidden(
                "log-driver",
                &format!("the {driver:?} log driver"),
                "only json-file, local and none are allowed",
            ));
        }
    }
    if non_empty(hc, "Annotations") {
        return Err(Reject::forbidden(
            "annotations",
            "HostConfig.Annotations",
            "dockerd passes them verbatim to the OCI runtime (API 1.43 and later)",
        ));
    }
    if let Some(Json::Object(opts)) = get(hc, "StorageOpt") {
        if let Some((key, _)) = opts.iter().find(|(k, _)| k != "size") {
            return Err(Reject::forbidden(
                "storage-opt",
                &format!("storage option {key:?}"),
                "only size is allowed",
            ));
        }
    }
    if integer(hc, "OomScoreAdj", "HostConfig.OomScoreAdj")? < 0 {
        return Err(Reject::forbidden(
            "oom-score-adj",
            "a negative OomScoreAdj",
            "it would shift the OOM killer onto other processes",
        ));
    }
    check_resources(policy, hc)
}

fn check_cap_add(hc: &[(String, Json)]) -> Result<(), Reject> {
    let caps = match get(hc, "CapAdd") {
        None | Some(Json::Null) => return Ok(()),
        Some(Json::Array(caps)) if caps.is_empty() => return Ok(()),
        Some(Json::String(cap)) if cap.is_empty() => return Ok(()),
        Some(Json::Array(caps)) => caps.iter().map(display).collect::<Vec<_>>().join(", "),
        Some(other) => display(other),
    };
    Err(Reject::forbidden(
        "cap-add",
        "adding capabilities",
        format!("HostConfig.CapAdd asks for {caps}"),
    ))
}

/// `Binds` entries are `source:destination[:options]` or a lone destination
/// (an anonymous volume). Only named volumes may be the source.
fn check_binds(hc: &[(String, Json)]) -> Result<(), Reject> {
    for bind in array(hc, "Binds") {
        let Json::String(spec) = bind else {
            return Err(Reject::bad_request(
                "body-type",
                "HostConfig.Binds entries must be strings",
            ));
        };
        let mut parts = spec.split(':');
        let source = parts.next().unwrap_or_default();
        if parts.next().is_some() && !is_volume_name(source) {
            return Err(Reject::forbidden(
                "host-bind",
                "a host bind mount",
                format!("Binds entry {spec:?} mounts the host path {source:?}; use a named volume instead"),
            ));
        }
    }
    Ok(())
}

/// dockerd's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Volume, tmpfs and image mounts only, each with its own options; a volume
/// mount may not pass driver options (the local driver's
/// `o=bind,device=/` is a host bind under another name).
fn check_mounts(hc: &[(String, Json)]) -> Result<(), Reject> {
    check_mounts_at(hc, "HostConfig.Mounts")
}

/// The `Mounts` of `object` (a `HostConfig` or a service's `ContainerSpec`),
/// named `at` in messages.
pub(super) fn check_mounts_at(object: &[(String, Json)], at: &str) -> Result<(), Reject> {
    for (i, mount) in array(object, "Mounts").iter().enumerate() {
        let Json::Object(mount) = mount else { continue };
        let path = format!("{at}[{i}]");
        let mount_type = string(mount, "Type", &format!("{path}.Type"))?;
        match mount_type {
            "volume" => {
                mounts::check_own_options(mount, mount_type, &path)?;
                check_volume_options(mount, &path)?;
                mounts::check_volume_subpath(mount, &path)?;
            }
            "tmpfs" => {
                mounts::check_own_options(mount, mount_type, &path)?;
                mounts::check_tmpfs_options(mount, &path)?;
            }
            "image" => {
                mounts::check_own_options(mount, mount_type, &path)?;
                mounts::check_image_mount(mount, &path)?;
            }
            t if t.eq_ignore_ascii_case("bind") => {
                let source = string(mount, "Source", &format!("{path}.Source"))?;
                return Err(Reject::forbidden(
                    "host-bind",
                    "a host bind mount",
                    format!("{path} binds the host path {source:?}; use a volume mount instead"),
                ));
            }
            t => {
                return Err(Reject::forbidden(
                    "mount-type",
                    "this mount type",
                    format!("{path} has type {t:?}; only volume, tmpfs and image are allowed"),
                ))
            }
        }
    }
    Ok(())
}

fn check_volume_options(mount: &[(String, Json)], path: &str) -> Result<(), Reject> {
    let Some(Json::Object(options)) = get(mount, "VolumeOptions") else {
        return Ok(());
    };
    let Some(Json::Object(driver)) = get(options, "DriverConfig") else {
        return Ok(());
    };
    let name = string(
        driver,
        "Name",
        &format!("{path}.VolumeOptions.DriverConfig.Name"),
    )?;
    if !matches!(name, "" | "local") || non_empty(driver, "Options") {
        return Err(Reject::forbidden(
            "volume-options",
            "volume driver options",
            format!("{path} passes driver options, which can mount host paths or devices"),
        ));
    }
    Ok(())
}

fn check_namespaces(hc: &[(String, Json)]) -> Result<(), Reject> {
    let namespaces: [(&str, &str, &[&str]); 6] = [
        ("PidMode", "pid", &[""]),
        ("IpcMode", "ipc", &["", "private", "none"]),
        ("UTSMode", "uts", &[""]),
        ("UsernsMode", "user", &[""]),
        ("CgroupnsMode", "cgroup", &["", "private"]),
        ("NetworkMode", "network", &[]),
    ];
    for (name, namespace, allowed) in namespaces {
        let mode = string(hc, name, &format!("HostConfig.{name}"))?;
        let refused = if name == "NetworkMode" {
            mode == "host" || mode.starts_with("container:")
        } else {
            !allowed.contains(&mode)
        };
        if refused {
            let what = if mode.starts_with("container:") {
                format!("joining another container's {namespace} namespace")
            } else if mode == "host" {
                format!("the host's {namespace} namespace")
            } else {
                format!("{name} {mode:?}")
            };
            return Err(Reject::forbidden(
                "namespace",
                &what,
                format!("HostConfig.{name}={mode:?}; containers get namespaces of their own"),
            ));
        }
    }
    Ok(())
}

/// Only `no-new-privileges`: every other option unconfines seccomp, AppArmor,
/// SELinux labels or cgroupfs, in one of several spellings.
fn check_security_opt(hc: &[(String, Json)]) -> Result<(), Reject> {
    for opt in array(hc, "SecurityOpt") {
        let Json::String(opt) = opt else {
            return Err(Reject::bad_request(
                "body-type",
                "HostConfig.SecurityOpt entries must be strings",
            ));
        };
        if !matches!(
            opt.as_str(),
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true"
        ) {
            return Err(Reject::forbidden(
                "security-opt",
                &format!("security option {opt:?}"),
                "only no-new-privileges may be set; the default seccomp and AppArmor profiles stay",
            ));
        }
    }
    Ok(())
}

pub(super) fn check_sysctls(hc: &[(String, Json)]) -> Result<(), Reject> {
    let Some(Json::Object(sysctls)) = get(hc, "Sysctls") else {
        return Ok(());
    };
    if let Some((key, _)) = sysctls
        .iter()
        .find(|(k, _)| !SAFE_SYSCTLS.contains(&k.as_str()))
    {
        return Err(Reject::forbidden(
            "sysctl",
            &format!("sysctl {key:?}"),
            format!("only these are allowed: {}", SAFE_SYSCTLS.join(", ")),
        ));
    }
    Ok(())
}

/// The resource fields shared by create and update.
fn check_resources(policy: &Policy, r: &[(String, Json)]) -> Result<(), Reject> {
    for (name, what) in [
        ("Devices", "host devices"),
        ("DeviceCgroupRules", "device cgroup rules"),
        ("DeviceRequests", "device requests (GPUs, CDI)"),
        ("BlkioWeightDevice", "per-device block IO settings"),
        ("BlkioDeviceReadBps", "per-device block IO settings"),
        ("BlkioDeviceWriteBps", "per-device block IO settings"),
        ("BlkioDeviceReadIOps", "per-device block IO settings"),
        ("BlkioDeviceWriteIOps", "per-device block IO settings"),
    ] {
        if non_empty(r, name) {
            return Err(Reject::forbidden(
                "devices",
                what,
                format!("{name} names host devices"),
            ));
        }
    }
    // The box's own parent is what the proxy injects; asking for it changes nothing.
    let parent = string(r, "CgroupParent", "CgroupParent")?;
    if !parent.is_empty() && Some(parent) != policy.cgroup_parent.as_deref() {
        return Err(Reject::forbidden(
            "cgroup-parent",
            "choosing the cgroup parent",
            "dindbox places every container under the box's own cgroup",
        ));
    }
    if boolean(r, "OomKillDisable", "OomKillDisable")? {
        return Err(Reject::forbidden(
            "oom-kill-disable",
            "disabling the OOM killer",
            "the box's memory pressure would fall on others",
        ));
    }
    check_ulimits(array(r, "Ulimits"), "Ulimits")?;
    for name in ["CpuRealtimePeriod", "CpuRealtimeRuntime"] {
        if integer(r, name, name)? != 0 {
            return Err(Reject::forbidden(
                "realtime",
                "real-time scheduling",
                format!("{name} must be 0"),
            ));
        }
    }
    Ok(())
}

/// The networks a create joins, and each endpoint's settings.
fn check_networking(
    policy: &Policy,
    host_config: &[(String, Json)],
    request: &[(String, Json)],
) -> Result<(), Reject> {
    let endpoints = match get(request, "NetworkingConfig") {
        Some(Json::Object(networking)) => match get(networking, "EndpointsConfig") {
            Some(Json::Object(endpoints)) => endpoints.as_slice(),
            _ => &[],
        },
        _ => &[],
    };
    endpoints::check_networks(host_config, endpoints)?;
    for (network, settings) in endpoints {
        if let Json::Object(settings) = settings {
            check_endpoint(
                policy,
                settings,
                &format!("NetworkingConfig.EndpointsConfig[{network:?}]"),
            )?;
        }
    }
    Ok(())
}

/// An endpoint's settings, at create or connect (`network.EndpointSettings`,
/// decoded with Go's folding: `networkid` is `NetworkID`; honoured at every
/// API version). dockerd's `getNetworkID` prefers `NetworkID` over the
/// network the request names, so a tenant could
/// join a network other than the one the proxy checked: it must be empty, as
/// the Docker CLI and compose leave it.
pub(super) fn check_endpoint(
    policy: &Policy,
    settings: &[(String, Json)],
    at: &str,
) -> Result<(), Reject> {
    for name in ["NetworkID", "EndpointID"] {
        let id = string(settings, name, &format!("{at}.{name}"))?;
        if !id.is_empty() {
            return Err(Reject::forbidden(
                "endpoint-network-id",
                &format!("{at}.{name}"),
                "dockerd would join the network it names instead of the one the request names",
            ));
        }
    }
    endpoints::check_driver_opts(settings, at)?;
    if let Some(Json::Object(ipam)) = get(settings, "IPAMConfig") {
        policy
            .subnets
            .check_endpoint_ipam(ipam, &format!("{at}.IPAMConfig"))?;
    }
    Ok(())
}

/// CVE-2024-21626: a working directory in `/proc/self/fd` reached the host's
/// filesystem through a leaked runc fd.
fn check_working_dir(object: &[(String, Json)]) -> Result<(), Reject> {
    check_dir(object, "WorkingDir")
}

/// [`check_working_dir`] for a field of another name (a service's `Dir`).
pub(super) fn check_dir(object: &[(String, Json)], name: &str) -> Result<(), Reject> {
    check_dir_path(string(object, name, name)?, name)
}

/// dockerd cleans the directory (`filepath.Clean`) before runc enters it,
/// and runc starts from `/`: so `//proc`, `/x/../proc` and `proc` are all
/// `/proc`. `/dev/fd` and the std streams are symlinks into `/proc/self/fd`.
pub(super) fn check_dir_path(dir: &str, name: &str) -> Result<(), Reject> {
    if dir.is_empty() {
        return Ok(());
    }
    let cleaned = clean_path(&format!("/{dir}"));
    let under = |root: &str| {
        cleaned == root
            || cleaned
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let into_proc = [
        "/proc",
        "/dev/fd",
        "/dev/stdin",
        "/dev/stdout",
        "/dev/stderr",
    ];
    if into_proc.into_iter().any(under) {
        return Err(Reject::forbidden(
            "working-dir",
            &format!("working directory {dir:?}"),
            format!("{name} must not lead into /proc (it cleans to {cleaned:?})"),
        ));
    }
    Ok(())
}

/// The image whose working directory a create body inherits: `None` when
/// the body sets its own (checked already) or names no image.
pub fn image_to_inspect(body: &Json) -> Option<String> {
    let Json::Object(request) = body else {
        return None;
    };
    if matches!(get(request, "WorkingDir"), Some(Json::String(dir)) if !dir.is_empty()) {
        return None;
    }
    match get(request, "Image") {
        Some(Json::String(image)) if !image.is_empty() => Some(image.clone()),
        _ => None,
    }
}

/// Checks the image's `Config.WorkingDir` (from `GET /images/{name}/json`)
/// as a request's, and sets it as the container's own.
pub fn pin_image_working_dir(body: &mut Json, image: &serde_json::Value) -> Result<(), Reject> {
    let dir = image
        .pointer("/Config/WorkingDir")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if dir.is_empty() {
        return Ok(());
    }
    check_dir_path(dir, "the image's WorkingDir")?;
    if let Json::Object(request) = body {
        set(request, "WorkingDir", Json::String(dir.to_string()));
    }
    Ok(())
}

/// `container.Ulimits` entries (`[]*units.Ulimit`, every API version; also
/// `/build?ulimits=`, a JSON string in the query): dockerd passes `RLIMIT_` + the upper-cased
/// name to runc, so a name is judged in that form; `rtprio` would open the
/// real-time scheduling class that the `CpuRealtime*` refusal keeps closed.
pub(super) fn check_ulimits(ulimits: &[Json], at: &str) -> Result<(), Reject> {
    for (i, ulimit) in ulimits.iter().enumerate() {
        let Json::Object(ulimit) = ulimit else {
            return Err(Reject::bad_request(
                "body-type",
                format!("{at}[{i}] must be an object, not {}", ulimit.type_name()),
            ));
        };
        let path = format!("{at}[{i}].Name");
        let name = string(ulimit, "Name", &path)?;
        if !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Reject::forbidden(
                "ulimit",
                &format!("ulimit {name:?}"),
                format!("{path} must be a plain ulimit name such as nofile"),
            ));
        }
        if name.eq_ignore_ascii_case("rtprio") {
            return Err(Reject::forbidden(
                "realtime",
                "real-time scheduling",
                format!("{path} is rtprio; containers keep the default scheduling class"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: &str) -> Result<String, Reject> {
        create_with(&Policy::default(), body)
    }

    fn create_with(policy: &Policy, body: &str) -> Result<String, Reject> {
        let body = Json::parse(body.as_bytes()).expect("test body is JSON");
        container_create(policy, body).map(|v| display(&v))
    }

    /// Each hostile body with the rule that must refuse it.
    const REFUSED: &[(&str, &str)] = &[
        // privileged, in every spelling dockerd accepts
        (r#"{"HostConfig":{"Privileged":true}}"#, "privileged"),
        (r#"{"hostconfig":{"privileged":true}}"#, "privileged"),
        (r#"{"HOSTCONFIG":{"PRIVILEGED":true}}"#, "privileged"),
        (
            r#"{"HostConfig":{"Privileged":false,"PRIVILEGED":true}}"#,
            "privileged",
        ),
        (
            r#"{"HostConfig":{"Privileged":true,"privileged":null}}"#,
            "privileged",
        ),
        (
            r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}"#,
            "privileged",
        ),
        (
            r#"{"HostConfig":{"Privileged":true},"hostconfig":{}}"#,
            "privileged",
        ),
        // capabilities: arrays, a bare string (StrSlice), any case
        (r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#, "cap-add"),
        (r#"{"HostConfig":{"capadd":["sys_admin"]}}"#, "cap-add"),
        (r#"{"HostConfig":{"cApAdD":["ALL"]}}"#, "cap-add"),
        (r#"{"HostConfig":{"CapAdd":"SYS_ADMIN"}}"#, "cap-add"),
        (
            r#"{"HostConfig":{"CapAdd":null,"CAPADD":["NET_ADMIN"]}}"#,
            "cap-add",
        ),
        (r#"{"HostConfig":{"CapAdd":["\u017fys_admin"]}}"#, "cap-add"),
        // host binds
        (r#"{"HostConfig":{"Binds":["/:/host"]}}"#, "host-bind"),
        (
            r#"{"HostConfig":{"Binds":["/var/run/docker.sock:/s:ro"]}}"#,
            "host-bind",
        ),
        (
            "{\"HostConfig\":{\"Bind\u{017F}\":[\"/:/host\"]}}",
            "host-bind",
        ),
        (r#"{"HostConfig":{"Binds":["./rel:/x"]}}"#, "host-bind"),
        (
            r#"{"HostConfig":{"Binds":["/etc:/etc:rshared"]}}"#,
            "host-bind",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}"#,
            "host-bind",
        ),
        (
            r#"{"HostConfig":{"mounts":[{"type":"BIND","source":"/"}]}}"#,
            "host-bind",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume"},{"Type":"bind","Source":"/"}]}}"#,
            "host-bind",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"npipe"}]}}"#,
            "mount-type",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"Image","Source":"other"}]}}"#,
            "mount-type",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"cluster"}]}}"#,
            "mount-type",
        ),
        // API 1.42-1.48 mount options: another type's options, subpaths out
        // of the volume or image, tmpfs options dockerd would not take
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","BindOptions":{"CreateMountpoint":true}}]}}"#,
            "mount-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","bindoptions":{"ReadOnlyNonRecursive":true}}]}}"#,
            "mount-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"image","Source":"busybox","Target":"/i","BindOptions":{"Propagation":"rshared"}}]}}"#,
            "mount-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","ClusterOptions":{}}]}}"#,
            "mount-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"../../etc"}}]}}"#,
            "mount-subpath",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"/etc"}}]}}"#,
            "mount-subpath",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/v","VolumeOptions":{"Subpath":"app"}}]}}"#,
            "mount-subpath",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"a/../../x"}}]}}"#,
            "mount-subpath",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["dev"]]}}]}}"#,
            "tmpfs-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["exec"]],"options":[["suid"]]}}]}}"#,
            "tmpfs-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Target":"/x"}]}}"#,
            "mount-type",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/"}}}}]}}"#,
            "volume-options",
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Name":"sshfs"}}}]}}"#,
            "volume-options",
        ),
        // devices
        (
            r#"{"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}]}}"#,
            "devices",
        ),
        (
            r#"{"HostConfig":{"DeviceCgroupRules":["b 8:* rwm"]}}"#,
            "devices",
        ),
        (
            r#"{"HostConfig":{"DeviceRequests":[{"Driver":"nvidia","Count":-1,"Capabilities":[["gpu"]]}]}}"#,
            "devices",
        ),
        (
            r#"{"HostConfig":{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1}]}}"#,
            "devices",
        ),
        (
            r#"{"HostConfig":{"devices":[{"PathOnHost":"/dev/mem"}]}}"#,
            "devices",
        ),
        // namespaces
        (r#"{"HostConfig":{"PidMode":"host"}}"#, "namespace"),
        (r#"{"HostConfig":{"PidMode":"container:abc"}}"#, "namespace"),
        (r#"{"HostConfig":{"IpcMode":"host"}}"#, "namespace"),
        (r#"{"HostConfig":{"IpcMode":"container:abc"}}"#, "namespace"),
        (r#"{"HostConfig":{"NetworkMode":"host"}}"#, "namespace"),
        (
            r#"{"HostConfig":{"networkmode":"container:abc"}}"#,
            "namespace",
        ),
        (r#"{"HostConfig":{"UTSMode":"host"}}"#, "namespace"),
        (r#"{"HostConfig":{"UsernsMode":"host"}}"#, "namespace"),
        (r#"{"HostConfig":{"CgroupnsMode":"host"}}"#, "namespace"),
        (r#"{"HostConfig":{"PidMode":"HOST"}}"#, "namespace"),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"host":{}}}}"#,
            "namespace",
        ),
        // security options, in the `=` and legacy `:` spellings
        (
            r#"{"HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["seccomp:unconfined"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["apparmor=unconfined"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["label=disable"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["disable"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["writable-cgroups=true"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["systempaths=unconfined"]}}"#,
            "security-opt",
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["no-new-privileges","seccomp={}"]}}"#,
            "security-opt",
        ),
        (r#"{"HostConfig":{"MaskedPaths":[]}}"#, "system-paths"),
        (r#"{"HostConfig":{"ReadonlyPaths":[]}}"#, "system-paths"),
        // sysctls, runtimes, drivers, cgroups
        (
            r#"{"HostConfig":{"Sysctls":{"kernel.core_pattern":"|/x"}}}"#,
            "sysctl",
        ),
        (
            r#"{"HostConfig":{"Sysctls":{"net.ipv4.ip_forward":"1"}}}"#,
            "sysctl",
        ),
        (
            r#"{"HostConfig":{"Runtime":"io.containerd.runsc.v1"}}"#,
            "runtime",
        ),
        (r#"{"HostConfig":{"Cgroup":"container:abc"}}"#, "runtime"),
        (
            r#"{"HostConfig":{"VolumeDriver":"convoy"}}"#,
            "volume-driver",
        ),
        (r#"{"HostConfig":{"CgroupParent":"/"}}"#, "cgroup-parent"),
        (
            r#"{"HostConfig":{"cgroupparent":"../../x"}}"#,
            "cgroup-parent",
        ),
        (
            r#"{"HostConfig":{"OomKillDisable":true}}"#,
            "oom-kill-disable",
        ),
        (r#"{"HostConfig":{"OomScoreAdj":-1000}}"#, "oom-score-adj"),
        (
            r#"{"HostConfig":{"CpuRealtimeRuntime":950000}}"#,
            "realtime",
        ),
        (
            r#"{"HostConfig":{"LogConfig":{"Type":"syslog","Config":{"syslog-address":"tcp://10.0.0.1:514"}}}}"#,
            "log-driver",
        ),
        (
            r#"{"HostConfig":{"Annotations":{"com.example":"x"}}}"#,
            "annotations",
        ),
        (
            r#"{"HostConfig":{"StorageOpt":{"dm.basesize":"1T"}}}"#,
            "storage-opt",
        ),
        (r#"{"HostConfig":{"Isolation":"hyperv"}}"#, "isolation"),
        // fields dindbox does not know are refused in HostConfig
        (
            r#"{"HostConfig":{"Capabilities":["ALL"]}}"#,
            "unknown-field",
        ),
        (
            r#"{"HostConfig":{"Resources":{"Devices":[]}}}"#,
            "unknown-field",
        ),
        (
            r#"{"HostConfig":{"FutureHostOption":true}}"#,
            "unknown-field",
        ),
        (
            r#"{"HostConfig":{},"hostconfig":{"Capabilities":["ALL"]}}"#,
            "unknown-field",
        ),
        // endpoint options, /proc working directories
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"x"}}}}}"#,
            "endpoint-sysctl",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.forwarding=1"}}}}}"#,
            "endpoint-sysctl",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.ifname":"eth9"}}}}}"#,
            "endpoint-driver-opts",
        ),
        // several networks (API 1.44): each one checked, none alone
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{},"host":{}}}}"#,
            "namespace",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{},"container:db":{}}}}"#,
            "namespace",
        ),
        (
            r#"{"HostConfig":{"NetworkMode":"a"},"NetworkingConfig":{"EndpointsConfig":{"a":{},"none":{}}}}"#,
            "network-none",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{},"b":{"NetworkID":"c"}}}}"#,
            "endpoint-network-id",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"a":{},"b":{"IPAMConfig":{"IPv4Address":"169.254.169.254"}}}}}"#,
            "network-subnet",
        ),
        (r#"{"WorkingDir":"/proc/self/fd/7"}"#, "working-dir"),
        // ... as dockerd cleans them (the review's spellings), and the symlinks into /proc
        (r#"{"WorkingDir":"//proc/self/fd/7"}"#, "working-dir"),
        (r#"{"WorkingDir":"/./proc/self/fd/7"}"#, "working-dir"),
        (r#"{"WorkingDir":"/x/../proc/self/fd/7"}"#, "working-dir"),
        (r#"{"WorkingDir":"proc/self/fd/7"}"#, "working-dir"),
        (r#"{"WorkingDir":"/dev/fd/7"}"#, "working-dir"),
        (r#"{"workingdir":"/proc"}"#, "working-dir"),
        // a NetworkID joins another network than the one named
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"mine":{"NetworkID":"0123456789ab"}}}}"#,
            "endpoint-network-id",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"mine":{"networkid":"x"}}}}"#,
            "endpoint-network-id",
        ),
        // addresses over the host's ranges
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv4Address":"169.254.169.254"}}}}}"#,
            "network-subnet",
        ),
        (
            r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"LinkLocalIPs":["169.254.169.254"]}}}}}"#,
            "network-address",
        ),
        // real-time scheduling through ulimits, shareable IPC
        (
            r#"{"HostConfig":{"Ulimits":[{"Name":"rtprio","Soft":99,"Hard":99}]}}"#,
            "realtime",
        ),
        (
            r#"{"HostConfig":{"Ulimits":[{"NAME":"RTPRIO","Soft":99,"Hard":99}]}}"#,
            "realtime",
        ),
        (
            r#"{"HostConfig":{"Ulimits":[{"Name":"rtpr\u0131o","Soft":99,"Hard":99}]}}"#,
            "ulimit",
        ),
        (r#"{"HostConfig":{"IpcMode":"shareable"}}"#, "namespace"),
        // wrong types are refused, not guessed at
        (r#"{"HostConfig":{"Privileged":"true"}}"#, "body-type"),
        (r#"{"HostConfig":{"Privileged":1}}"#, "body-type"),
        (r#"{"HostConfig":{"Binds":"/:/host"}}"#, "body-type"),
        (r#"{"HostConfig":{"Binds":[1]}}"#, "body-type"),
        (r#"{"HostConfig":[]}"#, "body-type"),
        (r#"{"HostConfig":{"PidMode":["host"]}}"#, "body-type"),
        (r#"[]"#, "body-type"),
    ];

    #[test]
    fn every_hostile_create_is_refused_by_its_rule() {
        for (body, rule) in REFUSED {
            match create(body) {
                Ok(forwarded) => panic!("{body} was allowed and forwarded as {forwarded}"),
                Err(reject) => assert_eq!(reject.rule, *rule, "{body}: {}", reject.message),
            }
        }
    }

    /// Each benign body with what must be forwarded.
    const ALLOWED: &[(&str, &str)] = &[
        (
            r#"{"Image":"busybox"}"#,
            r#"{"Image":"busybox","HostConfig":{"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"image":"busybox","hostconfig":{"privileged":false}}"#,
            r#"{"Image":"busybox","HostConfig":{"Privileged":false,"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"Image":"b","HostConfig":{"Binds":["data:/data","cache:/c:ro","/anon"]}}"#,
            r#"{"Image":"b","HostConfig":{"Binds":["data:/data","cache:/c:ro","/anon"],"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":{"CapAdd":["ALL"],"capadd":null,"CapDrop":["NET_RAW"]}}"#,
            r#"{"HostConfig":{"CapAdd":null,"CapDrop":["NET_RAW"],"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":{"IpcMode":"none","Ulimits":[{"name":"nofile","Soft":1024,"Hard":2048}]}}"#,
            r#"{"HostConfig":{"IpcMode":"none","Ulimits":[{"Name":"nofile","Soft":1024,"Hard":2048}],"CgroupnsMode":"private"}}"#,
        ),
        (
            r#"{"WorkingDir":"/app/../srv//proc","NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv4Address":"172.30.0.9"}}}}}"#,
            r#"{"WorkingDir":"/app/../srv//proc","NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv4Address":"172.30.0.9"}}}},"HostConfig":{"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"Unknown":1,"Image":"b","NetworkingConfig":{"EndpointsConfig":{"net1":{"Aliases":["a"],"Bogus":1}}}}"#,
            r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"net1":{"Aliases":["a"]}}},"HostConfig":{"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1024}},{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"DriverConfig":{"Name":"local"}}}]}}"#,
            r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1024}},{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"DriverConfig":{"Name":"local"}}}],"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":{"SecurityOpt":["no-new-privileges"],"Sysctls":{"net.ipv4.ip_unprivileged_port_start":"0"},"NetworkMode":"mynet","Memory":1048576,"MaskedPaths":null}}"#,
            r#"{"HostConfig":{"SecurityOpt":["no-new-privileges"],"Sysctls":{"net.ipv4.ip_unprivileged_port_start":"0"},"NetworkMode":"mynet","Memory":1048576,"MaskedPaths":null,"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":{"Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"bin"}},{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"a/../app"}},{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["exec"]]},"BindOptions":null}]}}"#,
            r#"{"HostConfig":{"Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"bin"}},{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"a/../app"}},{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["exec"]]},"BindOptions":null}],"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":{"NetworkMode":"a"},"NetworkingConfig":{"EndpointsConfig":{"a":{"MacAddress":"02:42:ac:11:00:09","GwPriority":10,"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"}},"b":{"gwpriority":-1,"Junk":1}}}}"#,
            r#"{"HostConfig":{"NetworkMode":"a","CgroupnsMode":"private","IpcMode":"private"},"NetworkingConfig":{"EndpointsConfig":{"a":{"MacAddress":"02:42:ac:11:00:09","GwPriority":10,"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"}},"b":{"GwPriority":-1}}}}"#,
        ),
        (
            r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"10m"}},"RestartPolicy":{"Name":"always"},"restartpolicy":null}}"#,
            r#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"10m"}},"RestartPolicy":{"Name":"always"},"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
        (
            r#"{"HostConfig":null}"#,
            r#"{"HostConfig":{"CgroupnsMode":"private","IpcMode":"private"}}"#,
        ),
    ];

    #[test]
    fn every_benign_create_is_allowed_and_forwarded_canonically() {
        for (body, forwarded) in ALLOWED {
            match create(body) {
                Ok(actual) => assert_eq!(actual, *forwarded, "{body}"),
                Err(reject) => panic!("{body} was refused: {}", reject.message),
            }
        }
    }

    #[test]
    fn the_docker_cli_default_create_body_is_allowed() {
        // What `docker run busybox` (CLI 28, API 1.41) sends, trimmed of nothing.
        let body = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["echo","hi"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,"PidsLimit":null,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}"#;
        let forwarded = create(body).unwrap_or_else(|r| panic!("refused: {}", r.message));
        assert!(
            forwarded.contains(r#""CgroupnsMode":"private""#),
            "{forwarded}"
        );
        assert!(forwarded.contains(r#""IpcMode":"private""#), "{forwarded}");
    }

    #[test]
    fn refusals_read_well_in_the_cli() {
        let reject = create(r#"{"HostConfig":{"Binds":["/:/host"]}}"#).unwrap_err();
        assert_eq!(reject.status, http::StatusCode::FORBIDDEN);
        assert_eq!(
            reject.message,
            r#"dindbox: a host bind mount is not allowed: Binds entry "/:/host" mounts the host path "/"; use a named volume instead"#
        );
    }

    #[test]
    fn privileged_exec_is_refused_and_plain_exec_allowed() {
        let exec = |body: &str| exec_create(Json::parse(body.as_bytes()).unwrap());
        assert_eq!(
            exec(r#"{"Cmd":["sh"],"privileged":true}"#)
                .unwrap_err()
                .rule,
            "privileged"
        );
        assert_eq!(
            exec(r#"{"Cmd":["sh"],"WorkingDir":"/proc/self/cwd"}"#)
                .unwrap_err()
                .rule,
            "working-dir"
        );
        assert_eq!(
            display(&exec(r#"{"cmd":["sh"],"Junk":1}"#).unwrap()),
            r#"{"Cmd":["sh"]}"#
        );
    }

    #[test]
    fn update_applies_the_resource_rules() {
        let update = |body: &str| {
            container_update(&Policy::default(), Json::parse(body.as_bytes()).unwrap())
        };
        assert_eq!(
            update(r#"{"Devices":[{"PathOnHost":"/dev/sda"}]}"#)
                .unwrap_err()
                .rule,
            "devices"
        );
        assert_eq!(
            update(r#"{"CgroupParent":"/"}"#).unwrap_err().rule,
            "cgroup-parent"
        );
        assert_eq!(
            display(&update(r#"{"memory":1024,"RestartPolicy":{"Name":"no"}}"#).unwrap()),
            r#"{"Memory":1024,"RestartPolicy":{"Name":"no"}}"#
        );
    }

    fn injecting() -> Policy {
        Policy {
            labels: vec![("dindbox.tenant".into(), "t1".into())],
            cgroup_parent: Some("/dindbox".into()),
            memory: Some(512 << 20),
            pids: Some(256),
            network_mtu: None,
            allow_buildkit: false,
            owner: None,
            ..Policy::default()
        }
    }

    #[test]
    fn labels_cgroup_parent_and_budget_are_injected() {
        let forwarded = create_with(
            &injecting(),
            r#"{"Image":"b","labels":{"dindbox.tenant":"t2","mine":"1"}}"#,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&forwarded).unwrap();
        assert_eq!(
            json["Labels"],
            serde_json::json!({"dindbox.tenant":"t1","mine":"1"}),
            "{forwarded}"
        );
        assert_eq!(json["HostConfig"]["CgroupParent"], "/dindbox");
        assert_eq!(json["HostConfig"]["Memory"], 512 << 20);
        assert_eq!(json["HostConfig"]["PidsLimit"], 256);
        assert_eq!(
            forwarded.matches("abels").count(),
            1,
            "one Labels key only: {forwarded}"
        );
    }

    #[test]
    fn the_owner_label_is_injected_and_wins_and_reaches_mounted_volumes() {
        let policy = Policy {
            labels: vec![
                ("ci.owner".into(), "configured".into()),
                ("team".into(), "a".into()),
            ],
            owner: Some(("ci.owner".into(), "job-1".into())),
            ..Policy::default()
        };
        let forwarded = create_with(
            &policy,
            r#"{"Labels":{"ci.owner":"job-2"},"HostConfig":{"Mounts":[{"Type":"volume","Target":"/a"},{"type":"volume","source":"v","target":"/v","volumeoptions":{"labels":{"ci.owner":"job-2","k":"v"}}},{"Type":"tmpfs","Target":"/t"}]}}"#,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&forwarded).unwrap();
        let owned = serde_json::json!({"team":"a","ci.owner":"job-1"});
        assert_eq!(json["Labels"], owned, "{forwarded}");
        let mounts = &json["HostConfig"]["Mounts"];
        assert_eq!(mounts[0]["VolumeOptions"]["Labels"], owned, "{forwarded}");
        assert_eq!(
            mounts[1]["VolumeOptions"]["Labels"],
            serde_json::json!({"ci.owner":"job-1","k":"v","team":"a"}),
            "{forwarded}"
        );
        assert_eq!(mounts[2].get("VolumeOptions"), None, "{forwarded}");
        // Box mode (no owner): mounted volumes get the configured labels...
        let mount = r#"{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/a"}]}}"#;
        let labelled = create_with(&injecting(), mount).unwrap();
        assert!(
            labelled.contains(r#""VolumeOptions":{"Labels":{"dindbox.tenant":"t1"}}"#),
            "{labelled}"
        );
        // ... and without labels to inject, mounts are forwarded as they are.
        let plain = create_with(&Policy::default(), mount).unwrap();
        assert!(!plain.contains("VolumeOptions"), "{plain}");
    }

    #[test]
    fn a_tenant_may_lower_the_budget_but_not_raise_it() {
        let lower = create_with(
            &injecting(),
            r#"{"HostConfig":{"Memory":1048576,"PidsLimit":10}}"#,
        )
        .unwrap();
        assert!(
            lower.contains(r#""Memory":1048576"#) && lower.contains(r#""PidsLimit":10"#),
            "{lower}"
        );
        let higher =
            create_with(&injecting(), r#"{"HostConfig":{"Memory":1073741824}}"#).unwrap_err();
        assert_eq!(higher.rule, "budget");
        assert!(
            higher.message.contains("at most 536870912"),
            "{}",
            higher.message
        );
        let update =
            |body: &str| container_update(&injecting(), Json::parse(body.as_bytes()).unwrap());
        assert_eq!(
            update(r#"{"Memory":1073741824}"#).unwrap_err().rule,
            "budget"
        );
        assert_eq!(update(r#"{"PidsLimit":-1}"#).unwrap_err().rule, "budget");
        assert_eq!(update(r#"{"PidsLimit":0}"#).unwrap_err().rule, "budget");
        assert!(update(r#"{"Memory":0,"CpuShares":512}"#).is_ok());
    }

    #[test]
    fn asking_for_the_boxs_own_cgroup_parent_is_allowed_and_others_refused() {
        let own = create_with(
            &injecting(),
            r#"{"HostConfig":{"CgroupParent":"/dindbox"}}"#,
        );
        assert!(own.is_ok(), "{own:?}");
        let other =
            create_with(&injecting(), r#"{"HostConfig":{"CgroupParent":"/"}}"#).unwrap_err();
        assert_eq!(other.rule, "cgroup-parent");
    }
}
