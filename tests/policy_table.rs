//! The request path as a table: method, target, content type and body in,
//! "forwarded" or "refused by rule R" out, through the same pure functions the
//! proxy serves with (`check::admit`, `check::rewrite_body`). Every dangerous
//! field in several spellings, every path and header trick; benign requests
//! must pass. (Field-level tables with the exact forwarded bodies live next to
//! the rules, in src/proxy/policy/*.rs.)

mod support;

use dindbox::proxy::check::{admit, inspects_body, rewrite_body};
use dindbox::proxy::policy::{Family, Policy};
use http::{HeaderMap, HeaderValue, Method};
use support::policy::{self, box_policy};

/// `Ok(())`: forwarded. `Err(rule)`: refused by that rule.
type Expect = Result<(), &'static str>;

/// Method, target, content type, body.
type Request = (Method, &'static str, &'static str, String);

const OK: Expect = Ok(());
const JSON: &str = "application/json";

fn decide(method: &Method, target: &str, content_type: &str, body: &str) -> Expect {
    let policy = box_policy();
    let mut headers = HeaderMap::new();
    if !content_type.is_empty() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
    }
    let uri = target.parse().map_err(|_| "unparsable-target")?;
    let route = admit(&policy, method, &uri, &headers).map_err(|r| r.rule)?;
    if inspects_body(route.endpoint) {
        rewrite_body(&policy, route.endpoint, &headers, body.as_bytes()).map_err(|r| r.rule)?;
    }
    Ok(())
}

fn create(body: &str) -> Request {
    (
        Method::POST,
        "/v1.41/containers/create",
        JSON,
        body.to_string(),
    )
}

fn host_config(fields: &str) -> Request {
    create(&format!(
        r#"{{"Image":"busybox","HostConfig":{{{fields}}}}}"#
    ))
}

fn table() -> Vec<(Request, Expect)> {
    let post = |target: &'static str, body: &str| (Method::POST, target, JSON, body.to_string());
    let tar = |target: &'static str| (Method::POST, target, "application/x-tar", String::new());
    let get = |target: &'static str| (Method::GET, target, "", String::new());
    vec![
        // ---- benign calls the Docker CLI makes
        (get("/_ping"), OK),
        ((Method::HEAD, "/_ping", "", String::new()), OK),
        (get("/v1.41/version"), OK),
        (get("/v1.41/info"), OK),
        (get("/v1.41/containers/json?all=1"), OK),
        (get("/v1.41/containers/abc/json"), OK),
        (get("/v1.41/containers/abc/logs?follow=1&stdout=1"), OK),
        (get("/v1.41/containers/abc/stats?stream=0"), OK),
        (get("/v1.41/containers/abc/archive?path=%2Fetc"), OK),
        (
            (
                Method::PUT,
                "/v1.41/containers/abc/archive?path=/tmp",
                "",
                String::new(),
            ),
            OK,
        ),
        (
            (
                Method::PUT,
                "/v1.41/containers/abc/archive?path=/tmp",
                "application/x-tar",
                String::new(),
            ),
            OK,
        ),
        (post("/v1.41/containers/abc/start", ""), OK),
        (
            post("/v1.41/containers/abc/wait?condition=next-exit", ""),
            OK,
        ),
        (
            post("/v1.41/containers/abc/attach?stream=1&stdout=1", ""),
            OK,
        ),
        (
            (
                Method::DELETE,
                "/v1.41/containers/abc?force=1",
                "",
                String::new(),
            ),
            OK,
        ),
        (
            post(
                "/v1.41/containers/abc/exec",
                r#"{"Cmd":["sh"],"AttachStdout":true}"#,
            ),
            OK,
        ),
        (
            post("/v1.41/exec/123/start", r#"{"Detach":false,"Tty":false}"#),
            OK,
        ),
        (get("/v1.41/images/json"), OK),
        (get("/v1.41/images/library/busybox:latest/json"), OK),
        (
            (
                Method::POST,
                "/v1.41/images/create?fromImage=busybox&tag=latest",
                "",
                String::new(),
            ),
            OK,
        ),
        (
            (
                Method::POST,
                "/v1.41/images/create?fromSrc=-&repo=imported",
                "",
                String::new(),
            ),
            OK,
        ),
        (
            (
                Method::POST,
                "/v1.41/images/load?quiet=1",
                "application/x-tar",
                String::new(),
            ),
            OK,
        ),
        (get("/v1.41/images/get?names=busybox"), OK),
        (
            (
                Method::POST,
                "/v1.41/build?t=app&dockerfile=Dockerfile",
                "application/x-tar",
                String::new(),
            ),
            OK,
        ),
        (
            (
                Method::POST,
                "/v1.41/build?t=app&networkmode=none",
                "application/x-tar",
                String::new(),
            ),
            OK,
        ),
        (post("/v1.41/volumes/create", r#"{"Name":"data"}"#), OK),
        (
            post(
                "/v1.41/volumes/create",
                r#"{"Name":"data","Driver":"local","DriverOpts":{}}"#,
            ),
            OK,
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","Driver":"bridge","CheckDuplicate":true}"#,
            ),
            OK,
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","Options":{"com.docker.network.driver.mtu":"1400"}}"#,
            ),
            OK,
        ),
        (
            post(
                "/v1.41/networks/n/connect",
                r#"{"Container":"abc","EndpointConfig":{"Aliases":["a"]}}"#,
            ),
            OK,
        ),
        (
            post(
                "/v1.41/containers/abc/update",
                r#"{"Memory":268435456,"RestartPolicy":{"Name":"always"}}"#,
            ),
            OK,
        ),
        (post("/v1.41/containers/prune", ""), OK),
        (create(r#"{"Image":"busybox","Cmd":["echo","hi"]}"#), OK),
        (
            create(r#"{"Image":"busybox","Cmd":"echo hi","Entrypoint":null}"#),
            OK,
        ),
        (
            create(r#"{"Image":"busybox","WorkingDir":"/work","User":"1000"}"#),
            OK,
        ),
        (
            host_config(r#""Binds":["data:/data:ro"],"Mounts":[{"Type":"tmpfs","Target":"/t"}]"#),
            OK,
        ),
        (
            host_config(r#""CapDrop":["ALL"],"SecurityOpt":["no-new-privileges"]"#),
            OK,
        ),
        (
            host_config(
                r#""NetworkMode":"bridge","PortBindings":{"80/tcp":[{"HostPort":"8080"}]}"#,
            ),
            OK,
        ),
        (
            host_config(r#""IpcMode":"none","PidMode":"","UTSMode":"","CgroupnsMode":"private""#),
            OK,
        ),
        (
            host_config(r#""Memory":536870912,"PidsLimit":100,"CpuShares":512"#),
            OK,
        ),
        (
            host_config(r#""Sysctls":{"net.ipv4.ping_group_range":"0 0"}"#),
            OK,
        ),
        (
            host_config(r#""Privileged":false,"CapAdd":[],"Devices":[],"MaskedPaths":null"#),
            OK,
        ),
        (host_config(r#""CgroupParent":"/dindbox""#), OK),
        (
            host_config(r#""Init":true,"ReadonlyRootfs":true,"AutoRemove":true"#),
            OK,
        ),
        (
            host_config(r#""LogConfig":{"Type":"local","Config":{"max-size":"5m"}}"#),
            OK,
        ),
        (
            host_config(r#""StorageOpt":{"size":"1G"},"Tmpfs":{"/run":"rw"}"#),
            OK,
        ),
        (host_config(r#""Runtime":"""#), OK),
        (create(r#"{"Image":"b","Unknown":{"Privileged":true}}"#), OK),
        (create(r#"{"Image":"b","HostConfig":null}"#), OK),
        (create(""), OK),
        // ---- privileged, in every spelling
        (host_config(r#""Privileged":true"#), Err("privileged")),
        (host_config(r#""privileged":true"#), Err("privileged")),
        (host_config(r#""PRIVILEGED":true"#), Err("privileged")),
        (host_config(r#""PrivilegeD":true"#), Err("privileged")),
        (
            host_config(r#""Privileged":false,"privileged":true"#),
            Err("privileged"),
        ),
        (
            host_config(r#""Privileged":true,"Privileged":null"#),
            Err("privileged"),
        ),
        (
            create(r#"{"hostconfig":{"Privileged":true},"HostConfig":{"Memory":1}}"#),
            Err("privileged"),
        ),
        (
            create(r#"{"HOSTCONFIG":{"privileged":true}}"#),
            Err("privileged"),
        ),
        (
            create("{\"Ho\u{017F}tConfig\":{\"Privileged\":true}}"),
            Err("privileged"),
        ),
        (host_config(r#""Privileged":"true""#), Err("body-type")),
        (
            post(
                "/v1.41/containers/abc/exec",
                r#"{"Cmd":["sh"],"Privileged":true}"#,
            ),
            Err("privileged"),
        ),
        (
            post(
                "/v1.41/containers/abc/exec",
                r#"{"Cmd":["sh"],"PRIVILEGED":true}"#,
            ),
            Err("privileged"),
        ),
        (
            post(
                "/v1.41/containers/abc/exec",
                r#"{"Cmd":["sh"],"privileged":false,"Privileged":true}"#,
            ),
            Err("privileged"),
        ),
        // ---- capabilities
        (host_config(r#""CapAdd":["SYS_ADMIN"]"#), Err("cap-add")),
        (host_config(r#""CapAdd":["sys_admin"]"#), Err("cap-add")),
        (host_config(r#""CapAdd":["CAP_SYS_ADMIN"]"#), Err("cap-add")),
        (host_config(r#""CapAdd":["ALL"]"#), Err("cap-add")),
        (host_config(r#""CapAdd":"NET_ADMIN""#), Err("cap-add")),
        (host_config(r#""capadd":["SYS_PTRACE"]"#), Err("cap-add")),
        (host_config(r#""CAPADD":["BPF"]"#), Err("cap-add")),
        (
            host_config(r#""CapAdd":[],"capAdd":["SYS_MODULE"]"#),
            Err("cap-add"),
        ),
        (
            host_config("\"CapAdd\":[\"\u{017F}ys_admin\"]"),
            Err("cap-add"),
        ),
        (
            host_config(r#""Capabilities":["ALL"]"#),
            Err("unknown-field"),
        ),
        // ---- host mounts
        (host_config(r#""Binds":["/:/host"]"#), Err("host-bind")),
        (host_config(r#""Binds":["/etc:/etc:ro"]"#), Err("host-bind")),
        (
            host_config(r#""Binds":["/var/run/docker.sock:/var/run/docker.sock"]"#),
            Err("host-bind"),
        ),
        (
            host_config(r#""Binds":["data:/d","/proc:/p"]"#),
            Err("host-bind"),
        ),
        (host_config(r#""binds":["/:/h"]"#), Err("host-bind")),
        (host_config("\"Bind\u{017F}\":[\"/:/h\"]"), Err("host-bind")),
        (host_config(r#""Binds":["../x:/x"]"#), Err("host-bind")),
        (host_config(r#""Binds":[":/x"]"#), Err("host-bind")),
        (
            host_config(r#""Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]"#),
            Err("host-bind"),
        ),
        (
            host_config(r#""mounts":[{"type":"bind","source":"/etc","target":"/h"}]"#),
            Err("host-bind"),
        ),
        (
            host_config(r#""Mounts":[{"Type":"Bind","Source":"/"}]"#),
            Err("host-bind"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Target":"/v"},{"Type":"bind","Source":"/"}]"#,
            ),
            Err("host-bind"),
        ),
        (
            host_config("\"Mount\u{017F}\":[{\"Type\":\"bind\",\"Source\":\"/\"}]"),
            Err("host-bind"),
        ),
        (
            host_config(r#""Mounts":[{"Type":"npipe","Source":"x"}]"#),
            Err("mount-type"),
        ),
        (
            host_config(r#""Mounts":[{"Type":"cluster","Source":"x"}]"#),
            Err("mount-type"),
        ),
        (
            host_config(r#""Mounts":[{"Type":"image","Source":"busybox","Target":"/i"}]"#),
            OK,
        ),
        (
            host_config(r#""Mounts":[{"Type":"IMAGE","Source":"busybox","Target":"/i"}]"#),
            Err("mount-type"),
        ),
        (
            host_config(r#""Mounts":[{"Source":"x","Target":"/x"}]"#),
            Err("mount-type"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Source":"v","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/","type":"none"}}}}]"#,
            ),
            Err("volume-options"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"device":"/dev/sda1","type":"ext4"}}}}]"#,
            ),
            Err("volume-options"),
        ),
        (
            host_config(r#""VolumeDriver":"sshfs""#),
            Err("volume-driver"),
        ),
        (
            post(
                "/v1.41/volumes/create",
                r#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#,
            ),
            Err("volume-options"),
        ),
        (
            post(
                "/v1.41/volumes/create",
                "{\"Name\":\"v\",\"DriverOpt\u{017F}\":{\"device\":\"/\"}}",
            ),
            Err("volume-options"),
        ),
        (
            post("/v1.41/volumes/create", r#"{"Name":"v","Driver":"rexray"}"#),
            Err("volume-driver"),
        ),
        (
            post(
                "/v1.41/volumes/create",
                r#"{"Name":"v","ClusterVolumeSpec":{"Group":"x"}}"#,
            ),
            Err("swarm"),
        ),
        // ---- devices
        (
            host_config(
                r#""Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}]"#,
            ),
            Err("devices"),
        ),
        (
            host_config(r#""devices":[{"PathOnHost":"/dev/mem"}]"#),
            Err("devices"),
        ),
        (
            host_config(r#""DeviceCgroupRules":["a *:* rwm"]"#),
            Err("devices"),
        ),
        (
            host_config(r#""DeviceRequests":[{"Driver":"cdi","DeviceIDs":["x"]}]"#),
            Err("devices"),
        ),
        (
            host_config(r#""BlkioWeightDevice":[{"Path":"/dev/sda","Weight":10}]"#),
            Err("devices"),
        ),
        (
            host_config(r#""BlkioDeviceWriteIOps":[{"Path":"/dev/sda","Rate":1}]"#),
            Err("devices"),
        ),
        (
            post(
                "/v1.41/containers/abc/update",
                r#"{"Devices":[{"PathOnHost":"/dev/sda"}]}"#,
            ),
            Err("devices"),
        ),
        // ---- namespaces
        (host_config(r#""PidMode":"host""#), Err("namespace")),
        (
            host_config(r#""pidmode":"container:other""#),
            Err("namespace"),
        ),
        (host_config(r#""IpcMode":"host""#), Err("namespace")),
        (
            host_config(r#""IpcMode":"container:other""#),
            Err("namespace"),
        ),
        (host_config(r#""NetworkMode":"host""#), Err("namespace")),
        (
            host_config(r#""NetworkMode":"container:other""#),
            Err("namespace"),
        ),
        (host_config(r#""UTSMode":"host""#), Err("namespace")),
        (host_config(r#""UsernsMode":"host""#), Err("namespace")),
        (host_config(r#""CgroupnsMode":"host""#), Err("namespace")),
        (host_config(r#""Cgroup":"container:other""#), Err("runtime")),
        (
            create(r#"{"NetworkingConfig":{"EndpointsConfig":{"host":{}}}}"#),
            Err("namespace"),
        ),
        // ---- security profiles and system paths
        (
            host_config(r#""SecurityOpt":["seccomp=unconfined"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["seccomp:unconfined"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["apparmor=unconfined"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["apparmor:unconfined"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["label=disable"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["label:disable"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["label=type:spc_t"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["systempaths=unconfined"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["writable-cgroups=true"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""SecurityOpt":["no-new-privileges=false"]"#),
            Err("security-opt"),
        ),
        (
            host_config(r#""securityopt":["seccomp=unconfined"]"#),
            Err("security-opt"),
        ),
        (host_config(r#""MaskedPaths":[]"#), Err("system-paths")),
        (host_config(r#""ReadonlyPaths":[]"#), Err("system-paths")),
        (
            host_config(r#""maskedpaths":["/proc/kcore"]"#),
            Err("system-paths"),
        ),
        // ---- sysctls, runtimes, cgroups, misc
        (
            host_config(r#""Sysctls":{"kernel.core_pattern":"|/evil"}"#),
            Err("sysctl"),
        ),
        (
            host_config(r#""Sysctls":{"kernel.shmmax":"1"}"#),
            Err("sysctl"),
        ),
        (
            host_config(r#""Sysctls":{"net.ipv4.conf.all.forwarding":"1"}"#),
            Err("sysctl"),
        ),
        (host_config(r#""Runtime":"runc""#), Err("runtime")),
        (
            host_config(r#""Runtime":"io.containerd.kata.v2""#),
            Err("runtime"),
        ),
        (host_config(r#""CgroupParent":"/""#), Err("cgroup-parent")),
        (
            host_config(r#""CgroupParent":"system.slice""#),
            Err("cgroup-parent"),
        ),
        (
            post("/v1.41/containers/abc/update", r#"{"CgroupParent":"/"}"#),
            Err("cgroup-parent"),
        ),
        (
            host_config(r#""OomKillDisable":true"#),
            Err("oom-kill-disable"),
        ),
        (host_config(r#""OomScoreAdj":-500"#), Err("oom-score-adj")),
        (
            host_config(r#""CpuRealtimePeriod":1000000"#),
            Err("realtime"),
        ),
        (
            host_config(
                r#""LogConfig":{"Type":"gelf","Config":{"gelf-address":"udp://10.0.0.1:12201"}}"#,
            ),
            Err("log-driver"),
        ),
        (
            host_config(r#""LogConfig":{"Type":"journald"}"#),
            Err("log-driver"),
        ),
        (
            host_config(r#""Annotations":{"io.kubernetes.cri.x":"y"}"#),
            Err("annotations"),
        ),
        (
            host_config(r#""StorageOpt":{"dm.basesize":"1T"}"#),
            Err("storage-opt"),
        ),
        (host_config(r#""Isolation":"process""#), Err("isolation")),
        (
            host_config(r#""Resources":{"Devices":[]}"#),
            Err("unknown-field"),
        ),
        (host_config(r#""SomethingNew":1"#), Err("unknown-field")),
        (
            create(r#"{"WorkingDir":"/proc/self/fd/8"}"#),
            Err("working-dir"),
        ),
        (
            post(
                "/v1.41/containers/abc/exec",
                r#"{"Cmd":["sh"],"WorkingDir":"/proc/1/cwd"}"#,
            ),
            Err("working-dir"),
        ),
        // ---- the budget
        (host_config(r#""Memory":4294967296"#), Err("budget")),
        (host_config(r#""PidsLimit":100000"#), Err("budget")),
        (
            post("/v1.41/containers/abc/update", r#"{"Memory":4294967296}"#),
            Err("budget"),
        ),
        (
            post("/v1.41/containers/abc/update", r#"{"PidsLimit":-1}"#),
            Err("budget"),
        ),
        // ---- networks
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","Driver":"macvlan","Options":{"parent":"eth0"}}"#,
            ),
            Err("network-driver"),
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","Driver":"ipvlan"}"#,
            ),
            Err("network-driver"),
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","Options":{"com.docker.network.bridge.name":"docker0"}}"#,
            ),
            Err("network-options"),
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","IPAM":{"Driver":"custom"}}"#,
            ),
            Err("network-ipam"),
        ),
        (
            post("/v1.41/networks/create", r#"{"Name":"n","Ingress":true}"#),
            Err("swarm"),
        ),
        (
            post("/v1.41/networks/create", r#"{"Name":"n","Scope":"swarm"}"#),
            Err("swarm"),
        ),
        (
            post(
                "/v1.41/networks/n/connect",
                r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"x":"y"}}}"#,
            ),
            Err("endpoint-driver-opts"),
        ),
        // ---- builds and imports (query parameters)
        (
            (
                Method::POST,
                "/v1.41/build?networkmode=host",
                "application/x-tar",
                String::new(),
            ),
            Err("build-network"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?networkmode=%68ost",
                "application/x-tar",
                String::new(),
            ),
            Err("build-network"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?networkmode=container:x",
                "",
                String::new(),
            ),
            Err("build-network"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?networkmode=none&networkmode=host",
                "",
                String::new(),
            ),
            Err("query"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?remote=https://example.invalid/repo.git",
                "",
                String::new(),
            ),
            Err("build-remote"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?cgroupparent=/",
                "",
                String::new(),
            ),
            Err("cgroup-parent"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?t=a;networkmode=host",
                "",
                String::new(),
            ),
            Err("query"),
        ),
        (
            (Method::POST, "/v1.41/build?t=%zz", "", String::new()),
            Err("query"),
        ),
        (
            (
                Method::POST,
                "/v1.41/images/create?fromSrc=http://169.254.169.254/",
                "",
                String::new(),
            ),
            Err("import-url"),
        ),
        // ---- headers
        (
            (
                Method::POST,
                "/v1.41/containers/create",
                "application/x-www-form-urlencoded",
                "a=b".into(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build?networkmode=none",
                "application/x-www-form-urlencoded",
                "networkmode=host".into(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build",
                "multipart/form-data; boundary=x",
                String::new(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers/create",
                "text/plain",
                r#"{"Image":"b"}"#.into(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers/create",
                "Application/JSON; charset=utf-8",
                r#"{"Image":"b"}"#.into(),
            ),
            OK,
        ),
        (
            (
                Method::POST,
                "/v1.41/images/load",
                "application/json",
                String::new(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::PUT,
                "/v1.41/containers/abc/archive?path=/tmp",
                "application/json",
                String::new(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers/create",
                JSON,
                r#"{"Image":"b"} {"HostConfig":{"Privileged":true}}"#.into(),
            ),
            Err("body-json"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers/create",
                JSON,
                r#"{"Image":"b""#.into(),
            ),
            Err("body-json"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers/create",
                JSON,
                r#"{"Image":"\ud800"}"#.into(),
            ),
            Err("body-json"),
        ),
        // ---- paths and versions
        (
            (
                Method::POST,
                "/v1.41/containers/%63reate",
                JSON,
                r#"{"HostConfig":{"Privileged":true}}"#.into(),
            ),
            Err("privileged"),
        ),
        (
            (
                Method::POST,
                "/v1.41./containers/create",
                JSON,
                r#"{"HostConfig":{"Privileged":true}}"#.into(),
            ),
            Err("privileged"),
        ),
        (
            (
                Method::POST,
                "/v01.041/containers/create",
                JSON,
                r#"{"HostConfig":{"Privileged":true}}"#.into(),
            ),
            Err("privileged"),
        ),
        (
            (
                Method::POST,
                "/containers/create",
                JSON,
                r#"{"HostConfig":{"Privileged":true}}"#.into(),
            ),
            Err("privileged"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers%2Fcreate",
                JSON,
                String::new(),
            ),
            Err("path"),
        ),
        (
            (
                Method::POST,
                "/v1.41//containers/create",
                JSON,
                String::new(),
            ),
            Err("path"),
        ),
        (
            (
                Method::POST,
                "/v1.41/containers/./create",
                JSON,
                String::new(),
            ),
            Err("path"),
        ),
        (
            (
                Method::POST,
                "/v1.41/images/../containers/create",
                JSON,
                String::new(),
            ),
            Err("path"),
        ),
        (
            (
                Method::POST,
                "http://docker/v1.41/containers/create",
                JSON,
                String::new(),
            ),
            Err("path"),
        ),
        (get("/v1.99/_ping"), Err("api-version")),
        (get("/v1.41.3/_ping"), Err("api-version")),
        (get("/v1.2/_ping"), Err("api-version")),
        // ---- issue 11: the review's bypass classes, each in several spellings
        // 1. form bodies behind Content-Types Go still reads as forms
        (
            (
                Method::POST,
                "/v1.41/containers/prune",
                "Application/X-WWW-Form-Urlencoded; x=\"",
                "filters=%7B%7D".into(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/build",
                "application/x-www-form-urlencoded;;;",
                "networkmode=host".into(),
            ),
            Err("content-type"),
        ),
        (
            (
                Method::POST,
                "/v1.41/images/create?fromImage=busybox",
                "text/html",
                "fromSrc=http://169.254.169.254/".into(),
            ),
            Err("content-type"),
        ),
        // 2. NetworkID chooses another network than the one named
        (
            post(
                "/v1.41/networks/mynet/connect",
                r#"{"Container":"mine","EndpointConfig":{"NetworkID":"theirs"}}"#,
            ),
            Err("endpoint-network-id"),
        ),
        (
            create(
                r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"mynet":{"NetworkID":"theirs"}}}}"#,
            ),
            Err("endpoint-network-id"),
        ),
        // 3. BuildKit without a session
        (tar("/v1.41/build?version=2"), Err("buildkit")),
        (tar("/v1.41/build?version=1&t=x"), OK),
        // 4. working directories as dockerd cleans them; image changes
        (
            create(r#"{"Image":"b","WorkingDir":"//proc/self/fd/7"}"#),
            Err("working-dir"),
        ),
        (
            create(r#"{"Image":"b","WorkingDir":"/x/../proc/self/fd/7"}"#),
            Err("working-dir"),
        ),
        (
            post(
                "/v1.41/containers/c/exec",
                r#"{"Cmd":["sh"],"WorkingDir":"/./proc/self/fd/7"}"#,
            ),
            Err("working-dir"),
        ),
        (
            post(
                "/v1.41/commit?container=c&changes=WORKDIR+%2F%2Fproc%2Fself%2Ffd%2F7",
                "",
            ),
            Err("working-dir"),
        ),
        (
            post(
                "/v1.41/commit?container=c",
                r#"{"WorkingDir":"/proc/1/cwd"}"#,
            ),
            Err("working-dir"),
        ),
        (
            post(
                "/v1.41/commit?container=c&changes=WORKDIR+%2Fapp",
                r#"{"Cmd":["sh"]}"#,
            ),
            OK,
        ),
        (
            tar("/v1.41/images/create?fromSrc=-&changes=WORKDIR+%2Fproc"),
            Err("working-dir"),
        ),
        // 5. subnets and addresses over the host's ranges
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"169.254.169.0/24"}]}}"#,
            ),
            Err("network-subnet"),
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"10.0.0.0/8"}]}}"#,
            ),
            Err("network-subnet"),
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"172.30.0.0/16"}]}}"#,
            ),
            OK,
        ),
        (
            create(
                r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv4Address":"169.254.169.254"}}}}}"#,
            ),
            Err("network-subnet"),
        ),
        // 9. real-time priority through ulimits; shareable IPC
        (
            host_config(r#""Ulimits":[{"Name":"rtprio","Soft":99,"Hard":99}]"#),
            Err("realtime"),
        ),
        (
            tar("/v1.41/build?ulimits=%5B%7B%22Name%22%3A%22rtprio%22%2C%22Hard%22%3A99%7D%5D"),
            Err("realtime"),
        ),
        (host_config(r#""IpcMode":"shareable""#), Err("namespace")),
        // ---- families that are off (`policy::off`): the way in refused with
        // the family's reason, the rest answered as Docker with the feature off
        (
            post("/v1.41/plugins/pull?remote=evil", "[]"),
            Err("plugins"),
        ),
        (post("/v1.41/plugins/create", ""), Err("plugins")),
        (post("/v1.41/swarm/init", "{}"), Err("swarm")),
        (
            post("/v1.41/swarm/join", r#"{"RemoteAddrs":["10.0.0.1"]}"#),
            Err("swarm"),
        ),
        (post("/v1.41/services/create", "{}"), Err("swarm-off")),
        (get("/v1.41/nodes"), Err("swarm-off")),
        (post("/v1.41/secrets/create", "{}"), Err("swarm-off")),
        (post("/v1.41/configs/create", "{}"), Err("swarm-off")),
        (get("/v1.41/distribution/busybox/json"), Err("distribution")),
        (
            post("/v1.41/containers/abc/checkpoints", "{}"),
            Err("checkpoints-off"),
        ),
        (get("/v1.41/plugins/x/json"), Err("plugins-off")),
        // ---- endpoints off the allow-list
        (get("/debug/pprof/profile"), Err("endpoint")),
        (get("/v1.41/containers/abc/attach/ws"), Err("endpoint")),
        (
            (Method::PUT, "/v1.41/containers/create", JSON, String::new()),
            Err("endpoint"),
        ),
        (
            (Method::OPTIONS, "/v1.41/containers/json", "", String::new()),
            Err("endpoint"),
        ),
        (
            (
                Method::PATCH,
                "/v1.41/containers/abc/update",
                JSON,
                "{}".into(),
            ),
            Err("endpoint"),
        ),
        (
            (Method::POST, "/v1.41/session", "", String::new()),
            Err("buildkit"),
        ),
        // ---- what Engine API 1.42-1.55 added (the rules apply at every
        // version: dockerd decodes these fields whatever the request's)
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Source":"v","Target":"/v","BindOptions":{"CreateMountpoint":true}}]"#,
            ),
            Err("mount-options"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"tmpfs","Target":"/t","BINDOPTIONS":{"ReadOnlyForceRecursive":true}}]"#,
            ),
            Err("mount-options"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Source":"v","Target":"/v","TmpfsOptions":{"Options":[["exec"]]}}]"#,
            ),
            Err("mount-options"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"bind","Source":"/","Target":"/h","BindOptions":{"CreateMountpoint":true}}]"#,
            ),
            Err("host-bind"),
        ),
        (host_config(r#""ConsoleSize":[40,120]"#), OK),
        (
            post(
                "/v1.41/containers/abc/exec",
                r#"{"Cmd":["sh"],"Tty":true,"ConsoleSize":[40,120]}"#,
            ),
            OK,
        ),
        (
            host_config(r#""annotations":{"run.oci.keep_original_groups":"1"}"#),
            Err("annotations"),
        ),
        (host_config(r#""Annotations":{}"#), OK),
        (
            create(
                r#"{"Image":"b","HostConfig":{"NetworkMode":"front"},"NetworkingConfig":{"EndpointsConfig":{"front":{"GwPriority":1},"back":{"MacAddress":"02:42:ac:11:00:09","Aliases":["db"]}}}}"#,
            ),
            OK,
        ),
        (
            create(r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"front":{},"host":{}}}}"#),
            Err("namespace"),
        ),
        (
            create(
                r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"front":{},"container:abc":{}}}}"#,
            ),
            Err("namespace"),
        ),
        (
            create(
                r#"{"Image":"b","HostConfig":{"NetworkMode":"none"},"NetworkingConfig":{"EndpointsConfig":{"front":{}}}}"#,
            ),
            Err("network-none"),
        ),
        (
            create(
                r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"front":{},"back":{"NetworkID":"theirs"}}}}"#,
            ),
            Err("endpoint-network-id"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"app/logs"}}]"#,
            ),
            OK,
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"subpath":"../../../etc"}}]"#,
            ),
            Err("mount-subpath"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Subpath":"/var/lib/docker"}}]"#,
            ),
            Err("mount-subpath"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"etc"}}]"#,
            ),
            OK,
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"image","Source":"busybox","Target":"/i","ImageOptions":{"Subpath":"etc/../.."}}]"#,
            ),
            Err("mount-subpath"),
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":65536,"Options":[["noexec"]]}}]"#,
            ),
            OK,
        ),
        (
            host_config(
                r#""Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["suid"]]}}]"#,
            ),
            Err("tmpfs-options"),
        ),
        (
            create(
                r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.arp_ignore=1,net.ipv6.conf.ifname.disable_ipv6=1"}}}}}"#,
            ),
            OK,
        ),
        (
            create(
                r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1,net.ipv4.conf.IFNAME.route_localnet=1"}}}}}"#,
            ),
            Err("endpoint-sysctl"),
        ),
        (
            post(
                "/v1.41/networks/n/connect",
                r#"{"Container":"c","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.forwarding=1"}}}"#,
            ),
            Err("endpoint-sysctl"),
        ),
        (
            post(
                "/v1.41/networks/n/connect",
                r#"{"Container":"c","EndpointConfig":{"GwPriority":100,"MacAddress":"02:42:ac:11:00:0a"}}"#,
            ),
            OK,
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"n","EnableIPv4":true,"Options":{"com.docker.network.enable_ipv4":"false"}}"#,
            ),
            Err("network-options"),
        ),
        (
            host_config(r#""DeviceRequests":[{"Driver":"cdi","DeviceIDs":["vendor.com/class=x"]}]"#),
            Err("devices"),
        ),
        (
            post(
                "/v1.41/containers/abc/update",
                r#"{"BlkioWeightDevice":[{"Path":"/dev/sda","Weight":500}]}"#,
            ),
            Err("devices"),
        ),
        (
            post(
                "/v1.41/containers/abc/update",
                r#"{"BlkioDeviceWriteIOps":[],"CpuShares":512}"#,
            ),
            OK,
        ),
        (
            post(
                "/v1.41/volumes/create",
                r#"{"Name":"csi","ClusterVolumeSpec":{"AccessMode":{"Scope":"single"}}}"#,
            ),
            Err("swarm"),
        ),
        (
            (Method::PUT, "/v1.41/volumes/csi?version=1", JSON, "{}".into()),
            Err("endpoint"),
        ),
        (get("/v1.41/debug/vars"), Err("endpoint")),
        (get("/v1.41/debug/pprof/goroutine?debug=2"), Err("endpoint")),
        (post("/v1.41/containers/abc/stop?signal=SIGTERM&t=5", ""), OK),
        (post("/v1.41/containers/abc/restart?signal=9", ""), OK),
        (get("/v1.41/containers/abc/json?size=1"), OK),
        (get("/v1.41/images/json?manifests=1&shared-size=1"), OK),
        (get("/v1.41/images/busybox/attestations?platform=%7B%7D&statement=1"), OK),
        (
            (
                Method::DELETE,
                "/v1.41/images/app?platforms=%7B%22os%22%3A%22linux%22%7D",
                "",
                String::new(),
            ),
            OK,
        ),
        (
            tar("/v1.41/images/load?platform=%7B%22os%22%3A%22linux%22%2C%22architecture%22%3A%22amd64%22%7D"),
            OK,
        ),
        (get("/v1.41/images/get?names=busybox&platform=%7B%22os%22%3A%22linux%22%7D"), OK),
        (
            post("/v1.41/build/prune?reserved-space=1GB&max-used-space=2GB", ""),
            OK,
        ),
    ]
}

#[test]
fn every_request_in_the_table_gets_its_expected_decision() {
    let table = table();
    assert!(table.len() >= 150, "the table has {} requests", table.len());
    let mut wrong = Vec::new();
    for ((method, target, content_type, body), expected) in &table {
        let actual = decide(method, target, content_type, body);
        if actual != *expected {
            wrong.push(format!("{method} {target} [{content_type}] {body}\n    expected {expected:?}, got {actual:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} requests decided wrongly:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------- families

/// The same request decided by the default policy and by one that enables
/// every family refused by default (issue 4: "refused unless a policy setting
/// enables them").
fn decide_with(policy: &Policy, (method, target, content_type, body): &Request) -> Expect {
    let mut headers = HeaderMap::new();
    if !content_type.is_empty() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
    }
    let uri = target.parse().map_err(|_| "unparsable-target")?;
    let route = admit(policy, method, &uri, &headers).map_err(|r| r.rule)?;
    if inspects_body(route.endpoint) {
        rewrite_body(policy, route.endpoint, &headers, body.as_bytes()).map_err(|r| r.rule)?;
    }
    Ok(())
}

/// The box's policy with every optional family on, without a cgroup parent.
fn everything_enabled() -> Policy {
    Policy {
        cgroup_parent: None,
        allow: Family::ALL.into_iter().collect(),
        ..box_policy()
    }
}

fn service(container_spec: &str) -> Request {
    (
        Method::POST,
        "/v1.41/services/create",
        JSON,
        format!(
            r#"{{"Name":"web","TaskTemplate":{{"ContainerSpec":{{"Image":"busybox",{container_spec}}}}},"Mode":{{"Replicated":{{"Replicas":1}}}}}}"#
        ),
    )
}

/// Request, decision by default, decision with every family enabled.
fn family_table() -> Vec<(Request, Expect, Expect)> {
    let post = |target: &'static str, body: &str| (Method::POST, target, JSON, body.to_string());
    let bare = |method: Method, target: &'static str| (method, target, "", String::new());
    let endpoint = Err("endpoint");
    // Off by default (`policy::off`): the way in is refused with the family's
    // reason, the rest answers as Docker with the feature off.
    let plugins = Err("plugins");
    let no_plugin = Err("plugins-off");
    let swarm = Err("swarm");
    let not_manager = Err("swarm-off");
    let not_in_swarm = Err("swarm-off");
    let not_experimental = Err("checkpoints-off");
    let distribution = Err("distribution");
    vec![
        // plugins: trusted when enabled, so passed through
        (
            post(
                "/v1.41/plugins/pull?remote=vieux/sshfs",
                r#"[{"Name":"network","Value":["host"]}]"#,
            ),
            plugins,
            OK,
        ),
        (bare(Method::GET, "/v1.41/plugins"), OK, OK),
        (
            bare(Method::GET, "/v1.41/plugins/privileges?remote=x"),
            plugins,
            OK,
        ),
        (bare(Method::POST, "/v1.41/plugins/x/enable"), plugins, OK),
        (bare(Method::DELETE, "/v1.41/plugins/x"), no_plugin, OK),
        (bare(Method::GET, "/v1.41/plugins/x/json"), no_plugin, OK),
        (
            (
                Method::POST,
                "/v1.41/plugins/create?name=p",
                "application/json",
                "{}".into(),
            ),
            plugins,
            Err("content-type"),
        ),
        // swarm
        (
            post("/v1.41/swarm/init", r#"{"ListenAddr":"0.0.0.0:2377"}"#),
            swarm,
            OK,
        ),
        (
            post(
                "/v1.41/swarm/init",
                r#"{"Spec":{"CAConfig":{"ExternalCAs":[{"URL":"http://169.254.169.254"}]}}}"#,
            ),
            swarm,
            Err("swarm-external-ca"),
        ),
        (
            post(
                "/v1.41/swarm/join",
                r#"{"RemoteAddrs":["10.0.0.1:2377"],"JoinToken":"x"}"#,
            ),
            swarm,
            Err("swarm-join"),
        ),
        (post("/v1.41/swarm/leave?force=1", ""), not_in_swarm, OK),
        (bare(Method::GET, "/v1.41/swarm"), not_manager, OK),
        (bare(Method::GET, "/v1.41/nodes"), not_manager, OK),
        (bare(Method::GET, "/v1.41/services"), not_manager, OK),
        (bare(Method::GET, "/v1.41/tasks"), not_manager, OK),
        (
            bare(Method::GET, "/v1.41/services/web/logs?stdout=1"),
            not_manager,
            OK,
        ),
        (service(r#""Env":["A=1"]"#), not_manager, OK),
        (
            service(r#""Mounts":[{"Type":"volume","Source":"data","Target":"/data"}]"#),
            not_manager,
            OK,
        ),
        // hostile service specs, refused when enabled
        (
            service(r#""Mounts":[{"Type":"bind","Source":"/","Target":"/host"}]"#),
            not_manager,
            Err("host-bind"),
        ),
        (
            service(r#""MOUNTS":[{"type":"bind","source":"/var/run/docker.sock","target":"/s"}]"#),
            not_manager,
            Err("host-bind"),
        ),
        (
            service(
                r#""Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/"}}}}]"#,
            ),
            not_manager,
            Err("volume-options"),
        ),
        (
            service(r#""CapabilityAdd":["CAP_SYS_ADMIN"]"#),
            not_manager,
            Err("cap-add"),
        ),
        (
            service("\"Capability\u{017F}dd\":[\"SYS_ADMIN\"]"),
            not_manager,
            Err("unknown-field"),
        ),
        (
            service("\"CapabilityAdd\":[],\"capabilityadd\":[\"NET_ADMIN\"]"),
            not_manager,
            Err("cap-add"),
        ),
        (
            service(r#""Sysctls":{"kernel.sysrq":"1"}"#),
            not_manager,
            Err("sysctl"),
        ),
        (
            service(r#""Privileges":{"SELinuxContext":{"Disable":true}}"#),
            not_manager,
            Err("security-opt"),
        ),
        (
            service(r#""Privileges":{"AppArmor":{"Mode":"disabled"}}"#),
            not_manager,
            Err("security-opt"),
        ),
        (
            service(r#""Privileges":{"Seccomp":{"Mode":"custom","Profile":"e30="}}"#),
            not_manager,
            Err("security-opt"),
        ),
        (
            service(r#""Privileges":{"Seccomp":{"Mode":"default"},"NoNewPrivileges":true}"#),
            not_manager,
            Ok(()),
        ),
        (
            service(r#""OomScoreAdj":-17"#),
            not_manager,
            Err("oom-score-adj"),
        ),
        (
            service(r#""Privileges":{"Unknown":{}}"#),
            not_manager,
            Err("unknown-field"),
        ),
        (
            service(r#""Devices":["/dev/sda"]"#),
            not_manager,
            Err("unknown-field"),
        ),
        (
            service(r#""Dir":"/proc/self/fd/8""#),
            not_manager,
            Err("working-dir"),
        ),
        (
            post(
                "/v1.41/services/create",
                r#"{"TaskTemplate":{"Runtime":"plugin","PluginSpec":{"Remote":"evil/plugin","Privileges":[{"Name":"network","Value":["host"]}]}}}"#,
            ),
            not_manager,
            Err("service-runtime"),
        ),
        (
            post(
                "/v1.41/services/create",
                r#"{"TaskTemplate":{"ContainerSpec":{"Image":"b"},"Resources":{"Limits":{"MemoryBytes":4294967296}}}}"#,
            ),
            not_manager,
            Err("budget"),
        ),
        (
            post(
                "/v1.41/services/web/update?version=3",
                r#"{"TaskTemplate":{"ContainerSpec":{"Image":"b","Mounts":[{"Type":"bind","Source":"/etc","Target":"/e"}]}}}"#,
            ),
            not_manager,
            Err("host-bind"),
        ),
        (
            post(
                "/v1.41/services/web/update?version=3",
                r#"{"TaskTemplate":{"ContainerSpec":{"Image":"b"}}}"#,
            ),
            not_manager,
            OK,
        ),
        // overlay networks for services
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"o","Driver":"overlay","Scope":"swarm","Attachable":true}"#,
            ),
            Err("network-driver"),
            OK,
        ),
        (
            post(
                "/v1.41/networks/create",
                r#"{"Name":"o","Driver":"overlay","Ingress":true}"#,
            ),
            Err("network-driver"),
            Err("swarm"),
        ),
        // secrets and configs
        (
            post("/v1.41/secrets/create", r#"{"Name":"s","Data":"eA=="}"#),
            not_manager,
            OK,
        ),
        (
            post(
                "/v1.41/secrets/create",
                r#"{"Name":"s","Driver":{"Name":"vault"}}"#,
            ),
            not_manager,
            Err("secret-driver"),
        ),
        (
            post("/v1.41/configs/create", r#"{"Name":"c","Data":"eA=="}"#),
            not_manager,
            OK,
        ),
        (bare(Method::DELETE, "/v1.41/configs/c"), not_manager, OK),
        // checkpoints
        (
            post(
                "/v1.41/containers/abc/checkpoints",
                r#"{"CheckpointID":"c1"}"#,
            ),
            not_experimental,
            OK,
        ),
        (
            post(
                "/v1.41/containers/abc/checkpoints",
                r#"{"CheckpointID":"c1","CheckpointDir":"/etc"}"#,
            ),
            not_experimental,
            Err("checkpoint-dir"),
        ),
        (
            bare(Method::GET, "/v1.41/containers/abc/checkpoints"),
            not_experimental,
            OK,
        ),
        (
            bare(Method::GET, "/v1.41/containers/abc/checkpoints?dir=/etc"),
            not_experimental,
            Err("checkpoint-dir"),
        ),
        (
            bare(Method::DELETE, "/v1.41/containers/abc/checkpoints/c1"),
            not_experimental,
            OK,
        ),
        (
            post("/v1.41/containers/abc/start?checkpoint=c1", ""),
            not_experimental,
            OK,
        ),
        (
            post(
                "/v1.41/containers/abc/start?checkpoint=c1&checkpoint-dir=/x",
                "",
            ),
            not_experimental,
            Err("checkpoint-dir"),
        ),
        (
            post("/v1.41/containers/abc/start?checkpoint-dir=/x", ""),
            Err("checkpoint-dir"),
            Err("checkpoint-dir"),
        ),
        // distribution
        (
            bare(Method::GET, "/v1.41/distribution/busybox:latest/json"),
            distribution,
            OK,
        ),
        // daemon-side fetches
        (
            bare(
                Method::POST,
                "/v1.41/images/create?fromSrc=http%3A%2F%2F169.254.169.254%2F&repo=x",
            ),
            Err("import-url"),
            OK,
        ),
        (
            bare(Method::POST, "/v1.41/images/create?fromSrc=-&repo=x"),
            OK,
            OK,
        ),
        (
            bare(
                Method::POST,
                "/v1.41/build?remote=https%3A%2F%2Fexample.invalid%2Fctx.git&t=x",
            ),
            Err("build-remote"),
            OK,
        ),
        (
            bare(
                Method::POST,
                "/v1.41/build?remote=https://example.invalid/ctx.git&networkmode=host",
            ),
            Err("build-network"),
            Err("build-network"),
        ),
        // still refused with everything enabled
        (
            bare(Method::GET, "/debug/pprof/profile"),
            endpoint,
            endpoint,
        ),
    ]
}

#[test]
fn families_are_refused_by_default_and_checked_when_enabled() {
    let (default, enabled) = (Policy::default(), everything_enabled());
    let mut wrong = Vec::new();
    let table = family_table();
    for (request, by_default, when_enabled) in &table {
        for (policy, expected, how) in [
            (&default, by_default, "by default"),
            (&enabled, when_enabled, "with every family enabled"),
        ] {
            let actual = decide_with(policy, request);
            if actual != *expected {
                let (method, target, _, body) = request;
                wrong.push(format!(
                    "{method} {target} {body} {how}: expected {expected:?}, got {actual:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} decided wrongly:\n{}",
        wrong.len(),
        table.len() * 2,
        wrong.join("\n")
    );
}

#[test]
fn a_family_that_is_off_refuses_the_way_in_with_its_reason() {
    let reject = admit(
        &Policy::default(),
        &Method::POST,
        &"/v1.41/swarm/init".parse().unwrap(),
        &HeaderMap::new(),
    )
    .unwrap_err();
    assert_eq!(reject.status, http::StatusCode::FORBIDDEN);
    assert_eq!(
        reject.message,
        "dindbox: POST /swarm/init is not allowed: swarm mode is off: its managers create \
         containers from specs the proxy would have to check (the policy setting allow-swarm \
         enables it)"
    );
}

#[test]
fn services_forwarded_with_everything_enabled_carry_the_labels_and_budget() {
    let (method, target, content_type, body) = service(r#""Labels":{"dindbox.tenant":"me"}"#);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    let policy = everything_enabled();
    let route = admit(&policy, &method, &target.parse().unwrap(), &headers).unwrap();
    let forwarded = rewrite_body(&policy, route.endpoint, &headers, body.as_bytes()).unwrap();
    let forwarded: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
    assert_eq!(forwarded["Labels"]["dindbox.tenant"], "t1");
    let spec = &forwarded["TaskTemplate"]["ContainerSpec"];
    assert_eq!(spec["Labels"]["dindbox.tenant"], "t1");
    let limits = &forwarded["TaskTemplate"]["Resources"]["Limits"];
    assert_eq!(limits["MemoryBytes"], policy::MEMORY);
    assert_eq!(limits["Pids"], policy::PIDS);
}
