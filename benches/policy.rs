//! Time of one container-create decision: parse the body Go-style, check it,
//! inject, re-serialise (what the proxy does per create request).

#[path = "../tests/support/policy.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, Criterion};
use dindbox::proxy::gojson::Json;
use dindbox::proxy::policy::container_create;

/// What `docker run busybox echo hi` sends (CLI 28, API 1.41).
const CLI_BODY: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["echo","hi"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,"PidsLimit":null,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}"#;

fn decision(c: &mut Criterion) {
    let policy = fixture::box_policy();
    c.bench_function("create decision (docker run body)", |b| {
        b.iter(|| {
            let body = Json::parse(CLI_BODY.as_bytes()).unwrap();
            container_create(&policy, body).unwrap().to_vec()
        })
    });
    c.bench_function("parse only (docker run body)", |b| {
        b.iter(|| Json::parse(CLI_BODY.as_bytes()).unwrap())
    });
    let parsed = Json::parse(CLI_BODY.as_bytes()).unwrap();
    c.bench_function("check only (docker run body)", |b| {
        b.iter_batched(
            || parsed.clone(),
            |parsed| container_create(&policy, parsed).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    let hostile =
        r#"{"Image":"b","hostconfig":{"Privileged":false},"HostConfig":{"PRIVILEGED":true}}"#;
    c.bench_function("create decision (refused)", |b| {
        b.iter(|| container_create(&policy, Json::parse(hostile.as_bytes()).unwrap()).unwrap_err())
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
