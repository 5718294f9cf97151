//! The container request types of Engine API 1.41 as gojson field tables:
//! `container.Config`, `HostConfig` (with `Resources`, `Mount`, `Ulimit`),
//! `network.EndpointSettings`, `container.CreateRequest`, `UpdateConfig` and
//! `types.ExecConfig`. The container rules read bodies decoded with these;
//! commit, service and network bodies reuse the shared parts.

#![forbid(unsafe_code)]

use crate::proxy::gojson::{field, Field, Kind};

use Kind::{
    Array, ArrayPointer, Map, MapOf, Nullable, Opaque, Pointer, Scalar, Slice, SliceOf,
    SliceOfPointers, Struct,
};

pub(super) const HEALTHCHECK: &[Field] = &[
    field("Test", Slice),
    field("Interval", Scalar),
    field("Timeout", Scalar),
    field("StartPeriod", Scalar),
    field("StartInterval", Scalar),
    field("Retries", Scalar),
];

/// `container.Config`, embedded in the create request: its fields are top-level keys.
pub(super) const CONFIG: &[Field] = &[
    field("Hostname", Scalar),
    field("Domainname", Scalar),
    field("User", Scalar),
    field("AttachStdin", Scalar),
    field("AttachStdout", Scalar),
    field("AttachStderr", Scalar),
    field("ExposedPorts", Map),
    field("Tty", Scalar),
    field("OpenStdin", Scalar),
    field("StdinOnce", Scalar),
    field("Env", Slice),
    // StrSlice: a string or an array, decoded by its own UnmarshalJSON.
    field("Cmd", Opaque),
    field("Healthcheck", Pointer(HEALTHCHECK)),
    field("ArgsEscaped", Scalar),
    field("Image", Scalar),
    field("Volumes", Map),
    field("WorkingDir", Scalar),
    field("Entrypoint", Opaque),
    field("NetworkDisabled", Scalar),
    field("MacAddress", Scalar),
    field("OnBuild", Slice),
    field("Labels", Map),
    field("StopSignal", Scalar),
    field("StopTimeout", Nullable),
    field("Shell", Opaque),
];

pub(super) const RESTART_POLICY: &[Field] =
    &[field("Name", Scalar), field("MaximumRetryCount", Scalar)];

pub(super) const LOG_CONFIG: &[Field] = &[field("Type", Scalar), field("Config", Map)];

pub(super) const DRIVER_CONFIG: &[Field] = &[field("Name", Scalar), field("Options", Map)];

pub(super) const MOUNT: &[Field] = &[
    field("Type", Scalar),
    field("Source", Scalar),
    field("Target", Scalar),
    field("ReadOnly", Scalar),
    field("Consistency", Scalar),
    field(
        "BindOptions",
        Pointer(&[
            field("Propagation", Scalar),
            field("NonRecursive", Scalar),
            field("CreateMountpoint", Scalar),
            field("ReadOnlyNonRecursive", Scalar),
            field("ReadOnlyForceRecursive", Scalar),
        ]),
    ),
    field(
        "VolumeOptions",
        Pointer(&[
            field("NoCopy", Scalar),
            field("Labels", Map),
            field("Subpath", Scalar),
            field("DriverConfig", Pointer(DRIVER_CONFIG)),
        ]),
    ),
    field("ImageOptions", Pointer(&[field("Subpath", Scalar)])),
    field(
        "TmpfsOptions",
        Pointer(&[
            field("SizeBytes", Scalar),
            field("Mode", Scalar),
            field("Options", Slice),
        ]),
    ),
    // An empty struct in Go: any object (or null) decodes; a cluster mount's.
    field("ClusterOptions", Pointer(&[])),
];

/// `units.Ulimit`.
pub(super) const ULIMIT: &[Field] = &[
    field("Name", Scalar),
    field("Hard", Scalar),
    field("Soft", Scalar),
];

/// `blkiodev.WeightDevice`.
const WEIGHT_DEVICE: &[Field] = &[field("Path", Scalar), field("Weight", Scalar)];

/// `blkiodev.ThrottleDevice`.
const THROTTLE_DEVICE: &[Field] = &[field("Path", Scalar), field("Rate", Scalar)];

/// `container.DeviceMapping`.
const DEVICE_MAPPING: &[Field] = &[
    field("PathOnHost", Scalar),
    field("PathInContainer", Scalar),
    field("CgroupPermissions", Scalar),
];

/// `container.DeviceRequest`.
const DEVICE_REQUEST: &[Field] = &[
    field("Driver", Scalar),
    field("Count", Scalar),
    field("DeviceIDs", Slice),
    field("Capabilities", Slice),
    field("Options", Map),
];

/// `container.Resources`, embedded in `HostConfig` and in `UpdateConfig`.
/// Slices of structs are decoded as such: Go merges a later array's objects
/// into the structs already there, field by field (dockerd decodes them so at
/// every API version the window serves; the fields date from before 1.41).
pub(super) const RESOURCES: &[Field] = &[
    field("CpuShares", Scalar),
    field("Memory", Scalar),
    field("NanoCpus", Scalar),
    field("CgroupParent", Scalar),
    field("BlkioWeight", Scalar),
    field("BlkioWeightDevice", SliceOfPointers(WEIGHT_DEVICE)),
    field("BlkioDeviceReadBps", SliceOfPointers(THROTTLE_DEVICE)),
    field("BlkioDeviceWriteBps", SliceOfPointers(THROTTLE_DEVICE)),
    field("BlkioDeviceReadIOps", SliceOfPointers(THROTTLE_DEVICE)),
    field("BlkioDeviceWriteIOps", SliceOfPointers(THROTTLE_DEVICE)),
    field("CpuPeriod", Scalar),
    field("CpuQuota", Scalar),
    field("CpuRealtimePeriod", Scalar),
    field("CpuRealtimeRuntime", Scalar),
    field("CpusetCpus", Scalar),
    field("CpusetMems", Scalar),
    field("Devices", SliceOf(DEVICE_MAPPING)),
    field("DeviceCgroupRules", Slice),
    field("DeviceRequests", SliceOf(DEVICE_REQUEST)),
    field("KernelMemory", Scalar),
    field("KernelMemoryTCP", Scalar),
    field("MemoryReservation", Scalar),
    field("MemorySwap", Scalar),
    field("MemorySwappiness", Nullable),
    field("OomKillDisable", Nullable),
    field("PidsLimit", Nullable),
    field("Ulimits", SliceOfPointers(ULIMIT)),
    field("CpuCount", Scalar),
    field("CpuPercent", Scalar),
    field("IOMaximumIOps", Scalar),
    field("IOMaximumBandwidth", Scalar),
];

/// `container.HostConfig` without its embedded `Resources`.
pub(super) const HOST_CONFIG_OWN: &[Field] = &[
    field("Binds", Slice),
    field("ContainerIDFile", Scalar),
    field("LogConfig", Struct(LOG_CONFIG)),
    field("NetworkMode", Scalar),
    field("PortBindings", Map),
    field("RestartPolicy", Struct(RESTART_POLICY)),
    field("AutoRemove", Scalar),
    field("VolumeDriver", Scalar),
    field("VolumesFrom", Slice),
    field("ConsoleSize", Array(2)),
    field("Annotations", Map),
    field("CapAdd", Opaque),
    field("CapDrop", Opaque),
    field("CgroupnsMode", Scalar),
    field("Dns", Slice),
    field("DnsOptions", Slice),
    field("DnsSearch", Slice),
    field("ExtraHosts", Slice),
    field("GroupAdd", Slice),
    field("IpcMode", Scalar),
    field("Cgroup", Scalar),
    field("Links", Slice),
    field("OomScoreAdj", Scalar),
    field("PidMode", Scalar),
    field("Privileged", Scalar),
    field("PublishAllPorts", Scalar),
    field("ReadonlyRootfs", Scalar),
    field("SecurityOpt", Slice),
    field("StorageOpt", Map),
    field("Tmpfs", Map),
    field("UTSMode", Scalar),
    field("UsernsMode", Scalar),
    field("ShmSize", Scalar),
    field("Sysctls", Map),
    field("Runtime", Scalar),
    field("Isolation", Scalar),
    field("Mounts", SliceOf(MOUNT)),
    field("MaskedPaths", Slice),
    field("ReadonlyPaths", Slice),
    field("Init", Nullable),
];

pub(super) const HOST_CONFIG: &[Field] =
    &concat::<{ HOST_CONFIG_OWN.len() + RESOURCES.len() }>(HOST_CONFIG_OWN, RESOURCES);

pub(super) const ENDPOINT_SETTINGS: &[Field] = &[
    field(
        "IPAMConfig",
        Pointer(&[
            field("IPv4Address", Scalar),
            field("IPv6Address", Scalar),
            field("LinkLocalIPs", Slice),
        ]),
    ),
    field("Links", Slice),
    field("Aliases", Slice),
    field("NetworkID", Scalar),
    field("EndpointID", Scalar),
    field("Gateway", Scalar),
    field("IPAddress", Scalar),
    field("IPPrefixLen", Scalar),
    field("IPv6Gateway", Scalar),
    field("GlobalIPv6Address", Scalar),
    field("GlobalIPv6PrefixLen", Scalar),
    field("MacAddress", Scalar),
    field("DriverOpts", Map),
    field("GwPriority", Scalar),
    field("DNSNames", Slice),
];

pub(super) const NETWORKING_CONFIG: &[Field] =
    &[field("EndpointsConfig", MapOf(ENDPOINT_SETTINGS))];

pub(super) const CREATE_OWN: &[Field] = &[
    field("HostConfig", Pointer(HOST_CONFIG)),
    field("NetworkingConfig", Pointer(NETWORKING_CONFIG)),
];

/// `container.CreateRequest`: `Config` embedded, `HostConfig` a pointer.
pub(super) const CONTAINER_CREATE: &[Field] =
    &concat::<{ CONFIG.len() + CREATE_OWN.len() }>(CONFIG, CREATE_OWN);

/// `container.UpdateConfig`: `Resources` embedded, plus the restart policy.
pub(super) const CONTAINER_UPDATE: &[Field] = &concat::<{ RESOURCES.len() + 1 }>(
    RESOURCES,
    &[field("RestartPolicy", Struct(RESTART_POLICY))],
);

/// `types.ExecConfig`.
pub(super) const EXEC_CREATE: &[Field] = &[
    field("User", Scalar),
    field("Privileged", Scalar),
    field("Tty", Scalar),
    field("ConsoleSize", ArrayPointer(2)),
    field("AttachStdin", Scalar),
    field("AttachStderr", Scalar),
    field("AttachStdout", Scalar),
    field("Detach", Scalar),
    field("DetachKeys", Scalar),
    field("Env", Slice),
    field("WorkingDir", Scalar),
    field("Cmd", Opaque),
];

/// The container-create request as the policy decodes it (for the differential
/// check against Go's decoding in `tests/go_differential.rs`).
pub fn container_create_fields() -> &'static [Field] {
    CONTAINER_CREATE
}

/// The exec-create request as the policy decodes it.
pub fn exec_create_fields() -> &'static [Field] {
    EXEC_CREATE
}

const fn concat<const N: usize>(a: &[Field], b: &[Field]) -> [Field; N] {
    let mut out = [field("", Opaque); N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - a.len()];
        i += 1;
    }
    out
}
