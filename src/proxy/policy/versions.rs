//! The Engine API versions the policy knows, 1.41 (Docker 20.10, where its
//! schemas started) to 1.55 (Docker 29.6), and for each what it added that a
//! tenant can send, with the policy's decision and its reason: the list
//! `dindbox policy explain` prints, and the one to extend when a version is
//! added. Read from moby's `api/docs/CHANGELOG.md` and the daemon's routers
//! and types at v28.5.2 and docker-v29.7.2.
//!
//! The rules themselves apply at every API version a request names: dockerd
//! decodes the whole struct whatever the version, and several of these
//! fields are honoured below the version that documents them (tmpfs mount
//! options, endpoint sysctls, CDI device requests). Each change carries a
//! request the decision lets through and one it refuses, which the tests
//! send through the same path the proxy serves with.

#![forbid(unsafe_code)]

use std::fmt;

/// The oldest version whose request schemas the policy was written for.
pub const OLDEST_KNOWN: (u32, u32) = (1, 41);
/// The newest version whose changes are in [`VERSIONS`].
pub const NEWEST_KNOWN: (u32, u32) = (1, 55);

/// What the policy does with a field, parameter or endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded as the tenant sent it.
    Allowed,
    /// Forwarded when its value passes a rule, refused otherwise.
    Checked,
    /// Refused whenever it is set.
    Refused,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allowed => "allowed",
            Decision::Checked => "checked",
            Decision::Refused => "refused",
        })
    }
}

/// A request that shows a decision, as the tests send it (through
/// `check::admit` and `check::check_body`, with the default policy).
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// `POST target` with a JSON body.
    Body(&'static str, &'static str),
    /// `POST /services/create` with this `TaskTemplate` (swarm enabled).
    Service(&'static str),
    /// A request without a body: method and target.
    Call(&'static str, &'static str),
    /// A change in dockerd's answers, shown by the named unit test.
    Answer(&'static str),
}

/// One change of an API version.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// The field, parameter or endpoint, as the API documents it.
    pub what: &'static str,
    pub decision: Decision,
    /// Why, in one line.
    pub why: &'static str,
    /// A request the decision lets through (not for [`Decision::Refused`]).
    pub allowed: Option<Probe>,
    /// A request it refuses, and the rule that does (not for [`Decision::Allowed`]).
    pub refused: Option<(Probe, &'static str)>,
}

/// An API version and its changes.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    pub api: (u32, u32),
    /// The Docker Engine releases that serve it as their newest.
    pub engine: &'static str,
    pub changes: &'static [Change],
}

const fn allowed(what: &'static str, why: &'static str, probe: Probe) -> Change {
    Change {
        what,
        decision: Decision::Allowed,
        why,
        allowed: Some(probe),
        refused: None,
    }
}

const fn checked(
    what: &'static str,
    why: &'static str,
    ok: Probe,
    refused: Probe,
    rule: &'static str,
) -> Change {
    Change {
        what,
        decision: Decision::Checked,
        why,
        allowed: Some(ok),
        refused: Some((refused, rule)),
    }
}

const fn refused(
    what: &'static str,
    why: &'static str,
    probe: Probe,
    rule: &'static str,
) -> Change {
    Change {
        what,
        decision: Decision::Refused,
        why,
        allowed: None,
        refused: Some((probe, rule)),
    }
}

use Probe::{Answer, Body, Call, Service};

const CREATE: &str = "/containers/create";
const CONNECT: &str = "/networks/n/connect";

/// Every known version, oldest first, each with what it added.
pub const VERSIONS: &[Version] = &[
    Version {
        api: (1, 41),
        engine: "20.10",
        changes: &[],
    },
    Version {
        api: (1, 42),
        engine: "23.0",
        changes: &[
            refused(
                "Mounts[].BindOptions.CreateMountpoint",
                "it creates the bind's host path: binds are refused, and BindOptions on every other mount type",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","BindOptions":{"CreateMountpoint":true}}]}}"#),
                "mount-options",
            ),
            refused(
                "Mounts[] options of another mount type (VolumeOptions, TmpfsOptions, BindOptions, ImageOptions)",
                "dockerd refuses them from 1.42 but drops only VolumeOptions and TmpfsOptions below it; each mount keeps its own",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","VolumeOptions":{"NoCopy":true}}]}}"#),
                "mount-options",
            ),
            refused(
                "Mounts[].Type cluster, Mounts[].ClusterOptions",
                "swarm cluster (CSI) volumes, which tenants cannot use",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"cluster","Source":"csi","Target":"/c"}]}}"#),
                "mount-type",
            ),
            allowed(
                "HostConfig.ConsoleSize",
                "the size of the container's terminal",
                Body(CREATE, r#"{"Tty":true,"HostConfig":{"ConsoleSize":[24,80]}}"#),
            ),
            allowed(
                "exec create and exec start ConsoleSize",
                "the size of the exec's terminal",
                Body("/containers/c/exec", r#"{"Cmd":["sh"],"Tty":true,"ConsoleSize":[24,80]}"#),
            ),
            allowed(
                "HostConfig.KernelMemory ignored from 1.42",
                "a limit on the container itself (cgroup v1 only)",
                Body(CREATE, r#"{"HostConfig":{"KernelMemory":67108864}}"#),
            ),
            refused(
                "PUT /volumes/{name}",
                "it updates swarm cluster (CSI) volumes, which tenants cannot create",
                Call("PUT", "/volumes/v"),
                "endpoint",
            ),
            refused(
                "POST /volumes/create ClusterVolumeSpec",
                "it makes a swarm cluster (CSI) volume",
                Body("/volumes/create", r#"{"Name":"v","ClusterVolumeSpec":{"Group":"g"}}"#),
                "swarm",
            ),
            allowed(
                "POST /containers/{id}/stop and /restart ?signal=",
                "a signal to the tenant's own container, as kill sends one",
                Call("POST", "/containers/c/stop?signal=SIGKILL&t=1"),
            ),
            refused(
                "GET /containers/{id}/attach/ws ?stdin, stdout, stderr",
                "the proxy does not splice websocket attaches (attach does the same)",
                Call("GET", "/containers/c/attach/ws?stdin=1"),
                "endpoint",
            ),
            allowed(
                "GET /images/json ?shared-size=",
                "sizes of images, which are shared between tenants",
                Call("GET", "/images/json?shared-size=1"),
            ),
            allowed(
                "GET /system/df ?type=",
                "which kinds of objects to count; owner mode still lists only owned containers and volumes",
                Call("GET", "/system/df?type=volume"),
            ),
            allowed(
                "POST /volumes/prune filter all=true",
                "named volumes too; owner mode adds the owner label filter, so only owned ones go",
                Call("POST", "/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D"),
            ),
        ],
    },
    Version {
        api: (1, 43),
        engine: "24.0",
        changes: &[refused(
            "HostConfig.Annotations",
            "passed verbatim to the OCI runtime (its hooks, CDI, kata); dockerd only refuses empty keys",
            Body(CREATE, r#"{"HostConfig":{"Annotations":{"io.kubernetes.cri.container-type":"sandbox"}}}"#),
            "annotations",
        )],
    },
    Version {
        api: (1, 44),
        engine: "25.0",
        changes: &[
            refused(
                "Mounts[].BindOptions.ReadOnlyNonRecursive, ReadOnlyForceRecursive",
                "bind mount options: binds are refused, and BindOptions on every other mount type",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","ReadOnly":true,"BindOptions":{"ReadOnlyNonRecursive":true}}]}}"#),
                "mount-options",
            ),
            checked(
                "NetworkingConfig.EndpointsConfig with several networks",
                "each network passes the network, endpoint and owner rules; host, container: and none with another network are refused",
                Body(CREATE, r#"{"HostConfig":{"NetworkMode":"front"},"NetworkingConfig":{"EndpointsConfig":{"front":{},"back":{"Aliases":["db"]}}}}"#),
                Body(CREATE, r#"{"HostConfig":{"NetworkMode":"front"},"NetworkingConfig":{"EndpointsConfig":{"front":{},"none":{}}}}"#),
                "network-none",
            ),
            allowed(
                "EndpointSettings.MacAddress (create; connect applies it from 1.54)",
                "the address of the container's own interface; CAP_NET_RAW, a default capability, sends any source address anyway",
                Body(CREATE, r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"MacAddress":"02:42:ac:11:00:09"}}}}"#),
            ),
            allowed(
                "Healthcheck.StartInterval",
                "how often the container's own health check runs while it starts",
                Body(CREATE, r#"{"Healthcheck":{"Test":["CMD","true"],"StartInterval":1000000000}}"#),
            ),
            checked(
                "services: ContainerSpec.Privileges.Seccomp",
                "the default profile only: unconfined and custom profiles become seccomp=unconfined or seccomp=<profile>",
                Service(r#""ContainerSpec":{"Image":"b","Privileges":{"Seccomp":{"Mode":"default"}}}"#),
                Service(r#""ContainerSpec":{"Image":"b","Privileges":{"Seccomp":{"Mode":"unconfined"}}}"#),
                "security-opt",
            ),
            checked(
                "services: ContainerSpec.Privileges.AppArmor",
                "the default profile only: disabled becomes apparmor=unconfined",
                Service(r#""ContainerSpec":{"Image":"b","Privileges":{"AppArmor":{"Mode":"default"}}}"#),
                Service(r#""ContainerSpec":{"Image":"b","Privileges":{"AppArmor":{"Mode":"disabled"}}}"#),
                "security-opt",
            ),
            allowed(
                "services: ContainerSpec.Privileges.NoNewPrivileges",
                "it only adds confinement",
                Service(r#""ContainerSpec":{"Image":"b","Privileges":{"NoNewPrivileges":true}}"#),
            ),
            allowed(
                "POST /networks/create CheckDuplicate deprecated",
                "dockerd ignores it from 1.44 (network names are unique)",
                Body("/networks/create", r#"{"Name":"n","CheckDuplicate":true}"#),
            ),
            allowed(
                "GET /images/json filter until",
                "lists images, which are shared between tenants",
                Call("GET", "/images/json?filters=%7B%22until%22%3A%5B%2210m%22%5D%7D"),
            ),
        ],
    },
    Version {
        api: (1, 45),
        engine: "26.0, 26.1",
        changes: &[
            checked(
                "Mounts[].VolumeOptions.Subpath",
                "a path inside a named volume (relative, no .. out of it once cleaned; dockerd refuses symlinks out); owner mode: the volume must be owned",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"app/data"}}]}}"#),
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"app/../../.."}}]}}"#),
                "mount-subpath",
            ),
            checked(
                "services: Mounts[].VolumeOptions.Subpath",
                "the same rule as a container's",
                Service(r#""ContainerSpec":{"Image":"b","Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"app"}}]}"#),
                Service(r#""ContainerSpec":{"Image":"b","Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"/etc"}}]}"#),
                "mount-subpath",
            ),
        ],
    },
    Version {
        api: (1, 46),
        engine: "27.0, 27.1",
        changes: &[
            checked(
                "Mounts[].TmpfsOptions.Options (also services)",
                "[\"exec\"] or [\"noexec\"] only, what dockerd takes; honoured at every API version",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["exec"]]}}]}}"#),
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["exec","dev"]]}}]}}"#),
                "tmpfs-options",
            ),
            checked(
                "EndpointSettings.DriverOpts[\"com.docker.network.endpoint.sysctls\"] (create, connect)",
                "per-interface sysctls of the container's own netns from a safe list (rp_filter, arp_*, accept_redirects, accept_ra, autoconf, disable_ipv6), set to a number; forwarding, proxy_arp, route_localnet and the rest refused; honoured at every API version",
                Body(CONNECT, r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"}}}"#),
                Body(CREATE, r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.forwarding=1"}}}}}"#),
                "endpoint-sysctl",
            ),
            refused(
                "other endpoint DriverOpts keys (endpoint.macaddress, exposedports, dnsservers, ifname, driver options)",
                "they reach the network driver as generic options",
                Body(CONNECT, r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.ifname":"eth9"}}}"#),
                "endpoint-driver-opts",
            ),
            allowed(
                "POST /images/{name}/push ?platform=",
                "pushes one platform of an image the tenant may push already",
                Call("POST", "/images/app/push?tag=1&platform=%7B%22os%22%3A%22linux%22%7D"),
            ),
            checked(
                "services: ContainerSpec.OomScoreAdj",
                "not negative, as on a container (it would shift the OOM killer onto other processes)",
                Service(r#""ContainerSpec":{"Image":"b","OomScoreAdj":500}"#),
                Service(r#""ContainerSpec":{"Image":"b","OomScoreAdj":-1000}"#),
                "oom-score-adj",
            ),
        ],
    },
    Version {
        api: (1, 47),
        engine: "27.2 - 27.5",
        changes: &[allowed(
            "GET /images/json ?manifests=",
            "lists the platforms and attestations of images, which are shared between tenants",
            Call("GET", "/images/json?manifests=1"),
        )],
    },
    Version {
        api: (1, 48),
        engine: "28.0",
        changes: &[
            checked(
                "Mounts[].Type image, Mounts[].ImageOptions.Subpath",
                "a read-only mount of a local image, which any tenant may run already (images are shared); Subpath stays inside it",
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"bin"}}]}}"#),
                Body(CREATE, r#"{"HostConfig":{"Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"../.."}}]}}"#),
                "mount-subpath",
            ),
            allowed(
                "EndpointSettings.GwPriority (create, connect)",
                "which of the container's own networks gives its default route",
                Body(CONNECT, r#"{"Container":"c","EndpointConfig":{"GwPriority":10}}"#),
            ),
            refused(
                "GET /v<version>/debug/* (vars, pprof)",
                "the daemon's internals; refused with or without a version",
                Call("GET", "/v1.41/debug/pprof/heap"),
                "endpoint",
            ),
            allowed(
                "POST /networks/create EnableIPv4",
                "false leaves the tenant's own network without IPv4 (experimental daemons only)",
                Body("/networks/create", r#"{"Name":"n","EnableIPv4":false,"EnableIPv6":true}"#),
            ),
            refused(
                "HostConfig.SecurityOpt writable-cgroups (dockerd 28.0, any API version)",
                "only no-new-privileges may be set",
                Body(CREATE, r#"{"HostConfig":{"SecurityOpt":["writable-cgroups=true"]}}"#),
                "security-opt",
            ),
            refused(
                "HostConfig.Sysctls net.*.conf.eth0.* no longer moved to the endpoint",
                "interface sysctls are not on the container's sysctl list; the endpoint's own are checked (1.46)",
                Body(CREATE, r#"{"HostConfig":{"Sysctls":{"net.ipv4.conf.eth0.forwarding":"1"}}}"#),
                "sysctl",
            ),
            allowed(
                "GET /images/{name}/json ?manifests=, GET /images/{name}/history ?platform=",
                "reads images, which are shared between tenants",
                Call("GET", "/images/busybox/history?platform=%7B%22os%22%3A%22linux%22%7D"),
            ),
            allowed(
                "GET /images/get and /images/{name}/get ?platform= (several from 1.52)",
                "saves the chosen platforms of images the tenant may save already",
                Call("GET", "/images/get?names=busybox&platform=%7B%22os%22%3A%22linux%22%7D"),
            ),
            allowed(
                "POST /images/load ?platform= (several from 1.52)",
                "loads the chosen platforms; owner mode still checks every tag in the archive and pairs dockerd's ids with its entries, refusing on a mismatch",
                Call("POST", "/images/load?quiet=1&platform=%7B%22os%22%3A%22linux%22%7D"),
            ),
            allowed(
                "POST /build/prune ?reserved-space, max-used-space, min-free-space",
                "how much build cache to keep (keep-storage renamed)",
                Call("POST", "/build/prune?reserved-space=1000000000"),
            ),
        ],
    },
    Version {
        api: (1, 49),
        engine: "28.1",
        changes: &[allowed(
            "GET /images/{name}/json ?platform=",
            "reads one platform of an image (images are shared)",
            Call("GET", "/images/busybox/json?platform=%7B%22os%22%3A%22linux%22%7D"),
        )],
    },
    Version {
        api: (1, 50),
        engine: "28.2",
        changes: &[
            allowed(
                "DELETE /images/{name} ?platforms=",
                "removes some platforms' content; owner mode judges it as any delete of that name (the owner's tags and images only)",
                Call("DELETE", "/images/app?platforms=%7B%22os%22%3A%22linux%22%7D"),
            ),
            refused(
                "HostConfig.DeviceRequests with Driver cdi (CDI on by default from dockerd 28.2, any API version)",
                "it injects the host devices a CDI spec describes; all device requests are refused",
                Body(CREATE, r#"{"HostConfig":{"DeviceRequests":[{"Driver":"cdi","DeviceIDs":["vendor.com/class=x"]}]}}"#),
                "devices",
            ),
            allowed(
                "GET /info DiscoveredDevices",
                "lists the daemon's CDI devices; requesting one stays refused",
                Call("GET", "/info"),
            ),
        ],
    },
    Version {
        api: (1, 51),
        engine: "28.3 - 28.5",
        changes: &[],
    },
    Version {
        api: (1, 52),
        engine: "29.0, 29.1",
        changes: &[
            allowed(
                "HostConfig.KernelMemoryTCP removed (create, update)",
                "a limit on the container itself, ignored from 1.52",
                Body("/containers/c/update", r#"{"KernelMemoryTCP":1048576}"#),
            ),
            allowed(
                "Config.MacAddress removed",
                "ignored from 1.52; below it the address of the container's own interface (see 1.44)",
                Body(CREATE, r#"{"MacAddress":"02:42:ac:11:00:09"}"#),
            ),
            Change {
                what: "GET /system/df ?verbose=, ContainersUsage and VolumesUsage",
                decision: Decision::Checked,
                why: "owner mode lists and counts owned containers and volumes only",
                allowed: Some(Answer(
                    "proxy::policy::ownership::tests::disk_usage_of_api_1_52_is_counted_over_owned_objects_only",
                )),
                refused: None,
            },
            Change {
                what: "GET /networks/{id} Status (IPAM use)",
                decision: Decision::Checked,
                why: "owner mode leaves it out of the built-in networks' answers, whose counts are every owner's",
                allowed: Some(Answer(
                    "proxy::policy::ownership::tests::answers_read_before_passing_on",
                )),
                refused: None,
            },
            allowed(
                "services: Resources.SwapBytes, MemorySwappiness",
                "like a container's MemorySwap and MemorySwappiness",
                Service(r#""ContainerSpec":{"Image":"b"},"Resources":{"SwapBytes":0,"MemorySwappiness":10}"#),
            ),
            allowed(
                "GET /events with Accept application/json-seq (application/jsonl from 1.53)",
                "the answer's format; owner mode still adds the owner label filter",
                Call("GET", "/events?since=0"),
            ),
        ],
    },
    Version {
        api: (1, 53),
        engine: "29.2",
        changes: &[refused(
            "POST /grpc and /session deprecated",
            "h2c tunnels the proxy cannot inspect, refused unless allow-buildkit is set (a box, whose daemon is confined)",
            Call("POST", "/session"),
            "buildkit",
        )],
    },
    Version {
        api: (1, 54),
        engine: "29.3 - 29.5",
        changes: &[
            allowed(
                "GET /images/json ?identity=",
                "trust and origin of images, which are shared between tenants",
                Call("GET", "/images/json?identity=1"),
            ),
            allowed(
                "POST /networks/{id}/connect EndpointConfig.MacAddress applied",
                "as at create (1.44)",
                Body(CONNECT, r#"{"Container":"c","EndpointConfig":{"MacAddress":"02:42:ac:11:00:09"}}"#),
            ),
            allowed(
                "GET /containers/{id}/logs ?format=json (experimental)",
                "the format of the container's own log",
                Call("GET", "/containers/c/logs?stdout=1&format=json"),
            ),
        ],
    },
    Version {
        api: (1, 55),
        engine: "29.6, 29.7",
        changes: &[
            allowed(
                "GET /images/{name}/attestations ?platform, type, statement",
                "reads an image's attestations as an inspect reads its config (images are shared)",
                Call("GET", "/images/busybox/attestations?statement=1"),
            ),
            checked(
                "POST /containers/{id}/update BlkioWeightDevice, BlkioDevice{Read,Write}{Bps,IOps}",
                "they name host devices; an empty list (which clears) passes",
                Body("/containers/c/update", r#"{"BlkioDeviceReadBps":[],"BlkioWeight":300}"#),
                Body("/containers/c/update", r#"{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1048576}]}"#),
                "devices",
            ),
        ],
    },
];

/// The lines `dindbox policy explain` prints for the versions: one per
/// change, `at 1.43: HostConfig.Annotations — refused: ...`.
pub fn explain() -> Vec<String> {
    VERSIONS
        .iter()
        .flat_map(|version| {
            let (major, minor) = version.api;
            let lines: Vec<String> = match version.changes {
                [] if version.api == OLDEST_KNOWN => vec![format!(
                    "at {major}.{minor} (Docker {}): the schemas the rules above were written for",
                    version.engine
                )],
                [] => vec![format!(
                    "at {major}.{minor} (Docker {}): only answers changed, nothing a tenant sends",
                    version.engine
                )],
                changes => changes
                    .iter()
                    .map(|c| format!("at {major}.{minor}: {} — {}: {}", c.what, c.decision, c.why))
                    .collect(),
            };
            lines
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use http::header::{HeaderMap, CONTENT_TYPE};
    use http::Method;

    use super::*;
    use crate::proxy::check::{admit, body_rule, check_body};
    use crate::proxy::policy::{Family, Policy, Reject};

    #[test]
    fn the_known_versions_are_1_41_to_1_55_each_once_in_order() {
        let known: Vec<(u32, u32)> = VERSIONS.iter().map(|v| v.api).collect();
        let expected: Vec<(u32, u32)> = (41..=55).map(|minor| (1, minor)).collect();
        assert_eq!(
            known, expected,
            "a new API version needs its changes (and their rules) here"
        );
        assert_eq!(VERSIONS.first().map(|v| v.api), Some(OLDEST_KNOWN));
        assert_eq!(VERSIONS.last().map(|v| v.api), Some(NEWEST_KNOWN));
    }

    /// Sends a probe through the path the proxy serves with.
    fn send(probe: Probe) -> Result<(), Reject> {
        let mut policy = Policy::default();
        let (method, target, body) = match probe {
            Body(target, body) => (Method::POST, target.to_string(), Some(body.to_string())),
            Service(spec) => {
                policy.allow.insert(Family::Swarm);
                let body = format!(r#"{{"Name":"s","TaskTemplate":{{{spec}}}}}"#);
                (Method::POST, "/services/create".to_string(), Some(body))
            }
            Call(method, target) => (method.parse().unwrap(), target.to_string(), None),
            Answer(test) => panic!("{test} is a unit test, not a request"),
        };
        let mut headers = HeaderMap::new();
        if body.is_some() {
            headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        }
        let route = admit(&policy, &method, &target.parse().unwrap(), &headers)?;
        if let (Some(body), Some(rule)) = (body, body_rule(route.endpoint)) {
            check_body(&policy, rule, &headers, body.as_bytes())?;
        }
        Ok(())
    }

    #[test]
    fn every_change_is_decided_as_the_table_says() {
        for version in VERSIONS {
            for change in version.changes {
                let at = format!("{:?} {}", version.api, change.what);
                match change.decision {
                    Decision::Allowed => assert!(change.refused.is_none(), "{at}"),
                    Decision::Checked => assert!(
                        change.refused.is_some() || matches!(change.allowed, Some(Answer(_))),
                        "{at}"
                    ),
                    Decision::Refused => assert!(change.allowed.is_none(), "{at}"),
                }
                match change.allowed {
                    Some(Answer(_)) => {}
                    Some(probe) => {
                        if let Err(reject) = send(probe) {
                            panic!("{at}: {probe:?} was refused: {}", reject.message);
                        }
                    }
                    None => assert_eq!(change.decision, Decision::Refused, "{at}"),
                }
                if let Some((probe, rule)) = change.refused {
                    match send(probe) {
                        Ok(()) => panic!("{at}: {probe:?} was allowed"),
                        Err(reject) => assert_eq!(reject.rule, rule, "{at}: {}", reject.message),
                    }
                }
            }
        }
    }

    #[test]
    fn explain_names_each_change_with_its_version_and_decision() {
        let lines = explain();
        assert!(
            lines.contains(
                &"at 1.43: HostConfig.Annotations — refused: passed verbatim to the OCI runtime (its hooks, CDI, kata); dockerd only refuses empty keys"
                    .to_string()
            ),
            "{lines:#?}"
        );
        assert!(lines.contains(
            &"at 1.51 (Docker 28.3 - 28.5): only answers changed, nothing a tenant sends"
                .to_string()
        ));
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }
}
