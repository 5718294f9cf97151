//! Swarm services, secrets, configs and the swarm itself, and checkpoints:
//! the bodies of the families a policy setting enables ([`super::Family`]),
//! as Engine API 1.41 to 1.55 define them (`swarm.ServiceSpec`, `swarm.SecretSpec`,
//! `swarm.ConfigSpec`, `swarm.InitRequest`, `types.CheckpointCreateOptions`).
//!
//! A service's tasks are containers the daemon creates itself, so they never
//! pass the container-create rules on their way: the service's
//! `TaskTemplate.ContainerSpec` gets the same rules here (mounts, added
//! capabilities, sysctls, SELinux and credential-spec privileges, and from
//! API 1.44 seccomp, AppArmor and no-new-privileges, from 1.46 OomScoreAdj;
//! isolation, working directory), plus the task-level ones (a
//! plugin runtime, log drivers, generic resources, network driver options)
//! and the memory and pids budget in `Resources.Limits`.

#![forbid(unsafe_code)]

use super::container::{
    check_dir, check_mounts_at, check_sysctls, label_mounted_volumes, LOG_DRIVERS,
};
use super::objects::single_valued;
use super::schema::{HEALTHCHECK, MOUNT};
use super::value::{boolean, decode, display, inject_labels, integer, non_empty, set, string};
use super::{Family, Policy, Reject};
use crate::proxy::gojson::{field, get, Field, Json, Kind};
use crate::proxy::query::Query;

use Kind::{Map, Nullable, Opaque, Pointer, Scalar, Slice, SliceOf, Struct};

/// `swarm.Driver`: a log driver, a secret driver, a templating driver.
const DRIVER: &[Field] = &[field("Name", Scalar), field("Options", Map)];

const PRIVILEGES: &[Field] = &[
    field(
        "CredentialSpec",
        Pointer(&[
            field("Config", Scalar),
            field("File", Scalar),
            field("Registry", Scalar),
        ]),
    ),
    field(
        "SELinuxContext",
        Pointer(&[
            field("Disable", Scalar),
            field("User", Scalar),
            field("Role", Scalar),
            field("Type", Scalar),
            field("Level", Scalar),
        ]),
    ),
    // API 1.44.
    field(
        "Seccomp",
        Pointer(&[field("Mode", Scalar), field("Profile", Scalar)]),
    ),
    field("AppArmor", Pointer(&[field("Mode", Scalar)])),
    field("NoNewPrivileges", Scalar),
];

const FILE_TARGET: &[Field] = &[
    field("Name", Scalar),
    field("UID", Scalar),
    field("GID", Scalar),
    field("Mode", Scalar),
];

/// `swarm.ContainerSpec` (1.41).
const CONTAINER_SPEC: &[Field] = &[
    field("Image", Scalar),
    field("Labels", Map),
    field("Command", Slice),
    field("Args", Slice),
    field("Hostname", Scalar),
    field("Env", Slice),
    field("Dir", Scalar),
    field("User", Scalar),
    field("Groups", Slice),
    field("Privileges", Pointer(PRIVILEGES)),
    field("Init", Scalar),
    field("StopSignal", Scalar),
    field("TTY", Scalar),
    field("OpenStdin", Scalar),
    field("ReadOnly", Scalar),
    field("Mounts", SliceOf(MOUNT)),
    field("StopGracePeriod", Scalar),
    field("Healthcheck", Pointer(HEALTHCHECK)),
    field("Hosts", Slice),
    field(
        "DNSConfig",
        Pointer(&[
            field("Nameservers", Slice),
            field("Search", Slice),
            field("Options", Slice),
        ]),
    ),
    field(
        "Secrets",
        SliceOf(&[
            field("File", Pointer(FILE_TARGET)),
            field("SecretID", Scalar),
            field("SecretName", Scalar),
        ]),
    ),
    field(
        "Configs",
        SliceOf(&[
            field("File", Pointer(FILE_TARGET)),
            field("Runtime", Opaque),
            field("ConfigID", Scalar),
            field("ConfigName", Scalar),
        ]),
    ),
    field("Isolation", Scalar),
    field("Sysctls", Map),
    field("CapabilityAdd", Slice),
    field("CapabilityDrop", Slice),
    field(
        "Ulimits",
        SliceOf(&[
            field("Name", Scalar),
            field("Hard", Scalar),
            field("Soft", Scalar),
        ]),
    ),
    // API 1.46.
    field("OomScoreAdj", Scalar),
];

const NETWORK_ATTACHMENT: &[Field] = &[
    field("Target", Scalar),
    field("Aliases", Slice),
    field("DriverOpts", Map),
];

const TASK_SPEC: &[Field] = &[
    field("ContainerSpec", Pointer(CONTAINER_SPEC)),
    field("PluginSpec", Opaque),
    field("NetworkAttachmentSpec", Opaque),
    field(
        "Resources",
        Pointer(&[
            field(
                "Limits",
                Pointer(&[
                    field("NanoCPUs", Scalar),
                    field("MemoryBytes", Scalar),
                    field("Pids", Scalar),
                ]),
            ),
            field(
                "Reservations",
                Pointer(&[
                    field("NanoCPUs", Scalar),
                    field("MemoryBytes", Scalar),
                    field("GenericResources", Slice),
                ]),
            ),
            // API 1.52: like a container's MemorySwap and MemorySwappiness.
            field("SwapBytes", Nullable),
            field("MemorySwappiness", Nullable),
        ]),
    ),
    field("RestartPolicy", Opaque),
    field("Placement", Opaque),
    field("Networks", SliceOf(NETWORK_ATTACHMENT)),
    field("LogDriver", Pointer(DRIVER)),
    field("ForceUpdate", Scalar),
    field("Runtime", Scalar),
];

/// `swarm.ServiceSpec`: `Annotations` (Name, Labels) embedded.
const SERVICE_SPEC: &[Field] = &[
    field("Name", Scalar),
    field("Labels", Map),
    field("TaskTemplate", Struct(TASK_SPEC)),
    field("Mode", Opaque),
    field("UpdateConfig", Opaque),
    field("RollbackConfig", Opaque),
    field("Networks", SliceOf(NETWORK_ATTACHMENT)),
    field("EndpointSpec", Opaque),
];

/// Checks a service create or update body (`swarm.ServiceSpec`; an update
/// replaces the whole spec) and returns the canonical body to forward, with
/// the labels on the service and on its containers.
pub fn service_create(policy: &Policy, body: Json) -> Result<Json, Reject> {
    let decoded = decode(body, SERVICE_SPEC)?;
    refuse_unknown_keys(&decoded.unknown, "TaskTemplate.ContainerSpec.")?;
    refuse_unknown_keys(&decoded.unknown, "TaskTemplate.ContainerSpec.Privileges.")?;
    let mut spec = decoded.fields;
    let mut task = take_object(&mut spec, "TaskTemplate");
    check_task(&task)?;
    for networks in [&spec[..], &task[..]] {
        check_attachments(networks)?;
    }
    let labels = policy.injected_labels();
    let mut container = take_object(&mut task, "ContainerSpec");
    check_container_spec(&container)?;
    label_mounted_volumes(&mut container, &labels);
    inject_labels(&mut container, &labels);
    set(&mut task, "ContainerSpec", Json::Object(container));
    apply_service_budget(policy, &mut task)?;
    set(&mut spec, "TaskTemplate", Json::Object(task));
    inject_labels(&mut spec, &labels);
    Ok(Json::Object(spec))
}

/// The object under `name`, taken out of `object` (empty when absent or null).
fn take_object(object: &mut [(String, Json)], name: &str) -> Vec<(String, Json)> {
    match object.iter_mut().find(|(k, _)| k == name) {
        Some((_, Json::Object(fields))) => std::mem::take(fields),
        _ => Vec::new(),
    }
}

/// dockerd ignores keys it does not know, but a newer daemon behind the
/// proxy may know one that reaches the host (services got seccomp, AppArmor
/// and OomScoreAdj settings in 1.44 and 1.46): unknown keys directly under
/// `prefix` are refused, as they are in a container's HostConfig.
fn refuse_unknown_keys(unknown: &[String], prefix: &str) -> Result<(), Reject> {
    let key = unknown
        .iter()
        .filter_map(|path| path.strip_prefix(prefix))
        .find(|key| !key.contains(['.', '[']));
    match key {
        Some(key) => Err(Reject::forbidden(
            "unknown-field",
            &format!("{prefix}{key}"),
            "dindbox does not know this setting, so it cannot tell whether it reaches the host",
        )),
        None => Ok(()),
    }
}

fn check_task(task: &[(String, Json)]) -> Result<(), Reject> {
    let runtime = string(task, "Runtime", "TaskTemplate.Runtime")?;
    let plugin = !matches!(get(task, "PluginSpec"), None | Some(Json::Null));
    if plugin || !matches!(runtime, "" | "container") {
        return Err(Reject::forbidden(
            "service-runtime",
            "a service that is not made of containers",
            format!(
                "TaskTemplate.Runtime={runtime:?}{}: plugin tasks install plugins with host \
                 privileges; only container services are allowed",
                if plugin { " with a PluginSpec" } else { "" }
            ),
        ));
    }
    if !matches!(get(task, "NetworkAttachmentSpec"), None | Some(Json::Null)) {
        return Err(Reject::forbidden(
            "service-runtime",
            "TaskTemplate.NetworkAttachmentSpec",
            "it is for the daemon's own attachment tasks",
        ));
    }
    if let Some(Json::Object(log)) = get(task, "LogDriver") {
        let driver = string(log, "Name", "TaskTemplate.LogDriver.Name")?;
        if !LOG_DRIVERS.contains(&driver) {
            return Err(Reject::forbidden(
                "log-driver",
                &format!("the {driver:?} log driver"),
                "only json-file, local and none are allowed",
            ));
        }
    }
    if let Some(Json::Object(resources)) = get(task, "Resources") {
        if let Some(Json::Object(reservations)) = get(resources, "Reservations") {
            if non_empty(reservations, "GenericResources") {
                return Err(Reject::forbidden(
                    "devices",
                    "generic resources",
                    "TaskTemplate.Resources.Reservations.GenericResources hands node devices \
                     (GPUs) to the task",
                ));
            }
        }
    }
    Ok(())
}

/// `Networks` attachments (of the service or its task template) without
/// driver options, which can set host interface sysctls.
fn check_attachments(object: &[(String, Json)]) -> Result<(), Reject> {
    let Some(Json::Array(networks)) = get(object, "Networks") else {
        return Ok(());
    };
    for network in networks {
        if let Json::Object(network) = network {
            if non_empty(network, "DriverOpts") {
                return Err(Reject::forbidden(
                    "endpoint-driver-opts",
                    "network attachment driver options",
                    "Networks[].DriverOpts can set host interface sysctls",
                ));
            }
        }
    }
    Ok(())
}

/// The container-create rules, for the fields a 1.41 `ContainerSpec` has.
fn check_container_spec(spec: &[(String, Json)]) -> Result<(), Reject> {
    const AT: &str = "TaskTemplate.ContainerSpec";
    check_mounts_at(spec, &format!("{AT}.Mounts"))?;
    if non_empty(spec, "CapabilityAdd") {
        let caps = get(spec, "CapabilityAdd").map(display).unwrap_or_default();
        return Err(Reject::forbidden(
            "cap-add",
            "adding capabilities",
            format!("{AT}.CapabilityAdd asks for {caps}"),
        ));
    }
    check_sysctls(spec)?;
    if let Some(Json::Object(privileges)) = get(spec, "Privileges") {
        if let Some(Json::Object(selinux)) = get(privileges, "SELinuxContext") {
            let disable = boolean(selinux, "Disable", "SELinuxContext.Disable")?;
            let mut set_fields = Vec::new();
            for name in ["User", "Role", "Type", "Level"] {
                if !string(selinux, name, name)?.is_empty() {
                    set_fields.push(name);
                }
            }
            if disable || !set_fields.is_empty() {
                return Err(Reject::forbidden(
                    "security-opt",
                    "an SELinux context",
                    format!(
                        "{AT}.Privileges.SELinuxContext {} (label=disable, label=type:spc_t)",
                        if disable {
                            "disables labelling".to_string()
                        } else {
                            format!("sets {}", set_fields.join(", "))
                        }
                    ),
                ));
            }
        }
        check_confinement(privileges)?;
        if let Some(Json::Object(credential)) = get(privileges, "CredentialSpec") {
            let empty =
                |v: &Json| matches!(v, Json::Null) || matches!(v, Json::String(s) if s.is_empty());
            if !credential.iter().all(|(_, v)| empty(v)) {
                return Err(Reject::forbidden(
                    "security-opt",
                    "a credential spec",
                    format!("{AT}.Privileges.CredentialSpec is for Windows hosts"),
                ));
            }
        }
    }
    if integer(spec, "OomScoreAdj", &format!("{AT}.OomScoreAdj"))? < 0 {
        return Err(Reject::forbidden(
            "oom-score-adj",
            "a negative OomScoreAdj",
            "it would shift the OOM killer onto other processes",
        ));
    }
    if !matches!(
        string(spec, "Isolation", &format!("{AT}.Isolation"))?,
        "" | "default"
    ) {
        return Err(Reject::forbidden(
            "isolation",
            "this isolation",
            "only the default isolation exists on Linux",
        ));
    }
    check_dir(spec, "Dir")
}

/// `Privileges.Seccomp` and `Privileges.AppArmor` (API 1.44): the executor
/// turns `unconfined` into `seccomp=unconfined`, `custom` into
/// `seccomp=<Profile>` and AppArmor `disabled` into `apparmor=unconfined`
/// (`applyPrivileges`). Only the default profiles are allowed, as on a
/// container; `NoNewPrivileges` only adds confinement.
fn check_confinement(privileges: &[(String, Json)]) -> Result<(), Reject> {
    const AT: &str = "TaskTemplate.ContainerSpec.Privileges";
    if let Some(Json::Object(seccomp)) = get(privileges, "Seccomp") {
        let mode = string(seccomp, "Mode", &format!("{AT}.Seccomp.Mode"))?;
        let profile = string(seccomp, "Profile", &format!("{AT}.Seccomp.Profile"))?;
        if !matches!(mode, "" | "default") || !profile.is_empty() {
            return Err(Reject::forbidden(
                "security-opt",
                &format!("seccomp mode {mode:?}"),
                format!(
                    "{AT}.Seccomp must keep the default profile (no unconfined or custom profile)"
                ),
            ));
        }
    }
    if let Some(Json::Object(apparmor)) = get(privileges, "AppArmor") {
        let mode = string(apparmor, "Mode", &format!("{AT}.AppArmor.Mode"))?;
        if !matches!(mode, "" | "default") {
            return Err(Reject::forbidden(
                "security-opt",
                &format!("AppArmor mode {mode:?}"),
                format!("{AT}.AppArmor must keep the default profile"),
            ));
        }
    }
    Ok(())
}

/// The box's budget on `Resources.Limits`: the default when the service asks
/// for none, a lower limit kept, a higher one (or none at all, 0) refused.
fn apply_service_budget(policy: &Policy, task: &mut Vec<(String, Json)>) -> Result<(), Reject> {
    if policy.memory.is_none() && policy.pids.is_none() {
        return Ok(());
    }
    let mut resources = take_object(task, "Resources");
    let mut limits = take_object(&mut resources, "Limits");
    for (name, limit, what) in [
        ("MemoryBytes", policy.memory, "memory"),
        ("Pids", policy.pids, "pids"),
    ] {
        let Some(limit) = limit else { continue };
        let path = format!("TaskTemplate.Resources.Limits.{name}");
        let asked = integer(&limits, name, &path)?;
        if asked > limit {
            return Err(Reject::forbidden(
                "budget",
                &format!("a {what} limit of {asked}"),
                format!("the box's budget allows at most {limit} for {path}"),
            ));
        }
        if asked <= 0 {
            set(&mut limits, name, Json::Number(limit.into()));
        }
    }
    set(&mut resources, "Limits", Json::Object(limits));
    set(task, "Resources", Json::Object(resources));
    Ok(())
}

const SECRET_SPEC: &[Field] = &[
    field("Name", Scalar),
    field("Labels", Map),
    field("Data", Scalar),
    field("Driver", Pointer(DRIVER)),
    field("Templating", Pointer(DRIVER)),
];

const CONFIG_SPEC: &[Field] = &[
    field("Name", Scalar),
    field("Labels", Map),
    field("Data", Scalar),
    field("Templating", Pointer(DRIVER)),
];

/// Checks a secret create or update body: no secret driver (a plugin), the
/// built-in templating only; the labels set.
pub fn secret_create(policy: &Policy, body: Json) -> Result<Json, Reject> {
    let mut spec = decode(body, SECRET_SPEC)?.fields;
    if let Some(Json::Object(driver)) = get(&spec, "Driver") {
        let name = string(driver, "Name", "Driver.Name")?;
        if !name.is_empty() {
            return Err(Reject::forbidden(
                "secret-driver",
                &format!("the secret driver {name:?}"),
                "secret drivers are plugins; store the secret's Data instead",
            ));
        }
    }
    check_templating(&spec)?;
    inject_labels(&mut spec, &policy.injected_labels());
    Ok(Json::Object(spec))
}

/// Checks a config create or update body: the built-in templating only; the
/// labels set.
pub fn config_create(policy: &Policy, body: Json) -> Result<Json, Reject> {
    let mut spec = decode(body, CONFIG_SPEC)?.fields;
    check_templating(&spec)?;
    inject_labels(&mut spec, &policy.injected_labels());
    Ok(Json::Object(spec))
}

fn check_templating(spec: &[(String, Json)]) -> Result<(), Reject> {
    if let Some(Json::Object(templating)) = get(spec, "Templating") {
        let name = string(templating, "Name", "Templating.Name")?;
        if !matches!(name, "" | "golang") {
            return Err(Reject::forbidden(
                "templating",
                &format!("the templating driver {name:?}"),
                "only the built-in golang templating is allowed",
            ));
        }
    }
    Ok(())
}

/// `swarm.Spec` (Annotations embedded).
const SWARM_SPEC: &[Field] = &[
    field("Name", Scalar),
    field("Labels", Map),
    field("Orchestration", Opaque),
    field("Raft", Opaque),
    field("Dispatcher", Opaque),
    field(
        "CAConfig",
        Struct(&[
            field("NodeCertExpiry", Scalar),
            field("ExternalCAs", Slice),
            field("SigningCACert", Scalar),
            field("SigningCAKey", Scalar),
            field("ForceRotate", Scalar),
        ]),
    ),
    field(
        "TaskDefaults",
        Struct(&[field("LogDriver", Pointer(DRIVER))]),
    ),
    field("EncryptionConfig", Opaque),
];

/// `swarm.InitRequest`.
const SWARM_INIT: &[Field] = &[
    field("ListenAddr", Scalar),
    field("AdvertiseAddr", Scalar),
    field("DataPathAddr", Scalar),
    field("DataPathPort", Scalar),
    field("ForceNewCluster", Scalar),
    field("Spec", Struct(SWARM_SPEC)),
    field("AutoLockManagers", Scalar),
    field("Availability", Scalar),
    field("DefaultAddrPool", Slice),
    field("SubnetSize", Scalar),
];

/// Checks `POST /swarm/init` (`init`: an `InitRequest`) or `/swarm/update`
/// (a `Spec`): no external CA (the managers would call its URL) and a task
/// log driver the containers could have too.
pub fn swarm_init(body: Json, init: bool) -> Result<Json, Reject> {
    let request = decode(body, if init { SWARM_INIT } else { SWARM_SPEC })?.fields;
    let spec = match init {
        true => match get(&request, "Spec") {
            Some(Json::Object(spec)) => spec.as_slice(),
            _ => &[],
        },
        false => request.as_slice(),
    };
    if let Some(Json::Object(ca)) = get(spec, "CAConfig") {
        if non_empty(ca, "ExternalCAs") {
            return Err(Reject::forbidden(
                "swarm-external-ca",
                "an external CA",
                "Spec.CAConfig.ExternalCAs names URLs the managers would call",
            ));
        }
    }
    if let Some(Json::Object(defaults)) = get(spec, "TaskDefaults") {
        if let Some(Json::Object(log)) = get(defaults, "LogDriver") {
            let driver = string(log, "Name", "Spec.TaskDefaults.LogDriver.Name")?;
            if !LOG_DRIVERS.contains(&driver) {
                return Err(Reject::forbidden(
                    "log-driver",
                    &format!("the {driver:?} log driver"),
                    "only json-file, local and none are allowed",
                ));
            }
        }
    }
    Ok(Json::Object(request))
}

const CHECKPOINT_CREATE: &[Field] = &[
    field("CheckpointID", Scalar),
    field("CheckpointDir", Scalar),
    field("Exit", Scalar),
];

/// Checks `POST /containers/{id}/checkpoints`: the default directory only
/// (`CheckpointDir` is any directory on the daemon's host).
pub fn checkpoint_create(body: Json) -> Result<Json, Reject> {
    let request = decode(body, CHECKPOINT_CREATE)?.fields;
    if !string(&request, "CheckpointDir", "CheckpointDir")?.is_empty() {
        return Err(Reject::forbidden(
            "checkpoint-dir",
            "a checkpoint directory",
            "CheckpointDir names a directory on the daemon's host; use the default",
        ));
    }
    Ok(Json::Object(request))
}

/// Checks `POST /containers/{id}/start`'s checkpoint parameters: restoring a
/// checkpoint only with [`Family::Checkpoints`] (off, dockerd's own answer
/// without `--experimental`, which it gives before looking at anything else),
/// never from another directory.
pub fn checkpoint_start(policy: &Policy, query: &Query) -> Result<(), Reject> {
    single_valued(query, &["checkpoint", "checkpoint-dir"])?;
    if query.first("checkpoint").is_some_and(|c| !c.is_empty())
        && !policy.allows(Family::Checkpoints)
    {
        return Err(super::off::checkpoint_restore_off());
    }
    if query.first("checkpoint-dir").is_some_and(|d| !d.is_empty()) {
        return Err(Reject::forbidden(
            "checkpoint-dir",
            "a checkpoint directory",
            "checkpoint-dir names a directory on the daemon's host",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    fn service(spec: &str) -> Result<String, Reject> {
        service_with(&Policy::default(), spec)
    }

    fn service_with(policy: &Policy, spec: &str) -> Result<String, Reject> {
        service_create(policy, body(spec)).map(|v| display(&v))
    }

    fn container_spec(fields: &str) -> String {
        format!(
            r#"{{"Name":"s","TaskTemplate":{{"ContainerSpec":{{"Image":"busybox",{fields}}}}}}}"#
        )
    }

    #[test]
    fn hostile_service_specs_are_refused_with_the_container_rules() {
        for (fields, rule) in [
            (
                r#""Mounts":[{"Type":"bind","Source":"/","Target":"/host"}]"#,
                "host-bind",
            ),
            (
                r#""mounts":[{"type":"BIND","source":"/","target":"/host"}]"#,
                "host-bind",
            ),
            (
                r#""Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/"}}}}]"#,
                "volume-options",
            ),
            (r#""Mounts":[{"Type":"npipe","Target":"/p"}]"#, "mount-type"),
            (r#""CapabilityAdd":["SYS_ADMIN"]"#, "cap-add"),
            (r#""capabilityadd":["ALL"]"#, "cap-add"),
            (r#""Sysctls":{"kernel.core_pattern":"|/x"}"#, "sysctl"),
            (
                r#""Privileges":{"SELinuxContext":{"Disable":true}}"#,
                "security-opt",
            ),
            (
                r#""Privileges":{"SELinuxContext":{"Type":"spc_t"}}"#,
                "security-opt",
            ),
            (
                r#""Privileges":{"Seccomp":{"Mode":"unconfined"}}"#,
                "security-opt",
            ),
            (
                r#""Privileges":{"seccomp":{"Mode":"custom","Profile":"e30="}}"#,
                "security-opt",
            ),
            (
                r#""Privileges":{"Seccomp":{"Profile":"e30="}}"#,
                "security-opt",
            ),
            (
                r#""Privileges":{"AppArmor":{"Mode":"disabled"}}"#,
                "security-opt",
            ),
            (r#""Privileges":{"FutureConfinement":{}}"#, "unknown-field"),
            (r#""OomScoreAdj":-1000"#, "oom-score-adj"),
            (r#""Privileged":true"#, "unknown-field"),
            (r#""Isolation":"hyperv""#, "isolation"),
            (
                r#""Privileges":{"CredentialSpec":{"File":"spec.json"}}"#,
                "security-opt",
            ),
            (r#""Dir":"/proc/self/fd/7""#, "working-dir"),
        ] {
            assert_eq!(
                service(&container_spec(fields)).unwrap_err().rule,
                rule,
                "{fields}"
            );
        }
        for (spec, rule) in [
            (
                r#"{"TaskTemplate":{"Runtime":"plugin","PluginSpec":{"Remote":"evil"}}}"#,
                "service-runtime",
            ),
            (
                r#"{"TaskTemplate":{"LogDriver":{"Name":"syslog","Options":{"syslog-address":"udp://10.0.0.1:514"}}}}"#,
                "log-driver",
            ),
            (
                r#"{"TaskTemplate":{"Resources":{"Reservations":{"GenericResources":[{"DiscreteResourceSpec":{"Kind":"gpu","Value":1}}]}}}}"#,
                "devices",
            ),
            (
                r#"{"Networks":[{"Target":"n","DriverOpts":{"com.docker.network.endpoint.sysctls":"x"}}]}"#,
                "endpoint-driver-opts",
            ),
        ] {
            assert_eq!(service(spec).unwrap_err().rule, rule, "{spec}");
        }
    }

    #[test]
    fn what_the_cli_sends_for_a_plain_service_passes() {
        let spec = r#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"busybox:latest","Args":["sleep","600"],"Init":false,"StopGracePeriod":10000000000,"DNSConfig":{},"Privileges":{"CredentialSpec":null,"SELinuxContext":null},"Isolation":"default"},"Resources":{"Limits":{},"Reservations":{}},"RestartPolicy":{"Condition":"any","MaxAttempts":0},"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":1}},"UpdateConfig":{"Parallelism":1,"FailureAction":"pause"},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}"#;
        assert!(service(spec).is_ok(), "{:?}", service(spec));
    }

    #[test]
    fn the_confining_fields_of_api_1_44_to_1_52_pass() {
        let spec = container_spec(
            r#""Privileges":{"Seccomp":{"Mode":"default"},"AppArmor":{"Mode":"default"},"NoNewPrivileges":true},"OomScoreAdj":500"#,
        );
        let forwarded: serde_json::Value = serde_json::from_str(&service(&spec).unwrap()).unwrap();
        assert_eq!(
            forwarded["TaskTemplate"]["ContainerSpec"]["Privileges"],
            serde_json::json!({"Seccomp":{"Mode":"default"},"AppArmor":{"Mode":"default"},"NoNewPrivileges":true})
        );
        let swap = r#"{"TaskTemplate":{"ContainerSpec":{"Image":"b"},"Resources":{"SwapBytes":0,"MemorySwappiness":10}}}"#;
        let forwarded: serde_json::Value = serde_json::from_str(&service(swap).unwrap()).unwrap();
        assert_eq!(
            forwarded["TaskTemplate"]["Resources"]["MemorySwappiness"],
            10
        );
    }

    #[test]
    fn services_get_labels_on_the_service_its_containers_and_their_volumes() {
        let policy = Policy {
            labels: vec![("owner".into(), "t1".into())],
            ..Policy::default()
        };
        let forwarded = service_with(
            &policy,
            &container_spec(
                r#""Labels":{"owner":"me"},"Mounts":[{"Type":"volume","Source":"data","Target":"/d"}]"#,
            ),
        )
        .unwrap();
        assert_eq!(
            forwarded,
            r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"busybox","Labels":{"owner":"t1"},"Mounts":[{"Type":"volume","Source":"data","Target":"/d","VolumeOptions":{"Labels":{"owner":"t1"}}}]}},"Labels":{"owner":"t1"}}"#
        );
        // No TaskTemplate at all: the label objects are created.
        assert_eq!(
            service_with(&policy, r#"{"Name":"s"}"#).unwrap(),
            r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Labels":{"owner":"t1"}}},"Labels":{"owner":"t1"}}"#
        );
    }

    #[test]
    fn services_get_the_budget_and_cannot_exceed_it() {
        let policy = Policy {
            memory: Some(1 << 20),
            pids: Some(100),
            ..Policy::default()
        };
        let forwarded = service_with(&policy, &container_spec(r#""Env":["A=1"]"#)).unwrap();
        assert!(
            forwarded.contains(r#""Resources":{"Limits":{"MemoryBytes":1048576,"Pids":100}}"#),
            "{forwarded}"
        );
        let lower = service_with(
            &policy,
            r#"{"TaskTemplate":{"Resources":{"Limits":{"MemoryBytes":1024}}}}"#,
        )
        .unwrap();
        assert!(lower.contains(r#""MemoryBytes":1024"#), "{lower}");
        assert_eq!(
            service_with(
                &policy,
                r#"{"TaskTemplate":{"Resources":{"Limits":{"Pids":1000}}}}"#
            )
            .unwrap_err()
            .rule,
            "budget"
        );
    }

    #[test]
    fn secrets_and_configs_get_labels_and_no_plugins() {
        let policy = Policy {
            labels: vec![("owner".into(), "t1".into())],
            ..Policy::default()
        };
        assert_eq!(
            display(&secret_create(&policy, body(r#"{"Name":"s","Data":"eA=="}"#)).unwrap()),
            r#"{"Name":"s","Data":"eA==","Labels":{"owner":"t1"}}"#
        );
        assert_eq!(
            secret_create(&policy, body(r#"{"Name":"s","Driver":{"Name":"vault"}}"#))
                .unwrap_err()
                .rule,
            "secret-driver"
        );
        assert_eq!(
            display(
                &config_create(&policy, body(r#"{"name":"c","labels":{"owner":"x"}}"#)).unwrap()
            ),
            r#"{"Name":"c","Labels":{"owner":"t1"}}"#
        );
        assert_eq!(
            config_create(&policy, body(r#"{"Templating":{"Name":"plugin"}}"#))
                .unwrap_err()
                .rule,
            "templating"
        );
    }

    #[test]
    fn swarm_specs_refuse_external_cas_and_remote_log_drivers() {
        assert!(swarm_init(body(r#"{"ListenAddr":"0.0.0.0:2377","Spec":{}}"#), true).is_ok());
        assert_eq!(
            swarm_init(
                body(r#"{"Spec":{"CAConfig":{"ExternalCAs":[{"URL":"http://10.0.0.1"}]}}}"#),
                true
            )
            .unwrap_err()
            .rule,
            "swarm-external-ca"
        );
        assert_eq!(
            swarm_init(
                body(r#"{"TaskDefaults":{"LogDriver":{"Name":"gelf"}}}"#),
                false
            )
            .unwrap_err()
            .rule,
            "log-driver"
        );
    }

    #[test]
    fn checkpoints_stay_in_the_default_directory() {
        assert!(checkpoint_create(body(r#"{"CheckpointID":"c1"}"#)).is_ok());
        assert_eq!(
            checkpoint_create(body(r#"{"CheckpointID":"c1","checkpointdir":"/etc"}"#))
                .unwrap_err()
                .rule,
            "checkpoint-dir"
        );
        let q = |s: &str| Query::parse(s).unwrap();
        let on = Policy {
            allow: [Family::Checkpoints].into(),
            ..Policy::default()
        };
        assert!(checkpoint_start(&Policy::default(), &q("")).is_ok());
        assert_eq!(
            checkpoint_start(&Policy::default(), &q("checkpoint=c1"))
                .unwrap_err()
                .rule,
            "checkpoints-off"
        );
        assert!(checkpoint_start(&on, &q("checkpoint=c1")).is_ok());
        assert_eq!(
            checkpoint_start(&on, &q("checkpoint=c1&checkpoint-dir=/etc"))
                .unwrap_err()
                .rule,
            "checkpoint-dir"
        );
    }
}
