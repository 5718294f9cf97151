//! The pure part of `dindbox tenant`: names, limits, the container-create
//! request and the client environment it prints.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use crate::proxy::version::ApiVersion;

/// The label every tenant container and volume carries (value: the tenant name).
pub const LABEL: &str = "dindbox.tenant";
/// Container and volume name prefix.
pub const PREFIX: &str = "dindbox-tenant-";
/// The box's TLS port inside the container.
pub const TLS_PORT_KEY: &str = "2376/tcp";
/// Where the cert dir is mounted in the box.
pub const CERTS_MOUNT: &str = "/certs";
/// What the box keeps for itself (dockerd, containerd, dindbox) when the inner
/// budget is derived from `--memory`.
pub const BOX_RESERVE: i64 = 256 << 20;
/// The smallest derived inner budget worth running containers in.
pub const MIN_BUDGET: i64 = 64 << 20;
/// Pids the box keeps for itself (the threads of dockerd, containerd, their
/// shims and dindbox) when the inner pids budget is derived from `--pids-limit`.
pub const BOX_PIDS_RESERVE: i64 = 512;
/// The smallest derived inner pids budget worth running containers in.
pub const MIN_PIDS_BUDGET: i64 = 64;
/// The box's own grace period for a graceful stop (DINDBOX_STOP_GRACE), and
/// the stop timeout the outer daemon gives it (a margin above).
pub const STOP_GRACE_SECS: u64 = 25;
pub const STOP_TIMEOUT_SECS: u64 = 30;
/// Longest tenant name: `dindbox-tenant-NAME` stays a DNS label (63).
pub const MAX_NAME: usize = 63 - PREFIX.len();

/// A tenant name: lower-case letters, digits and `-`, starting with a letter
/// or digit, not ending with `-`, at most [`MAX_NAME`] long.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME {
        Some(format!("it is longer than {MAX_NAME} characters"))
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only lower-case letters, digits and '-' are allowed".to_string())
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it must start and end with a letter or digit".to_string())
    } else {
        None
    };
    match why {
        Some(why) => bail!("invalid tenant name {name:?}: {why} (like a DNS label: team-a, ci42)"),
        None => Ok(()),
    }
}

/// `dindbox-tenant-NAME`: the container and the volume.
pub fn object_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// How an inner budget follows from the box's outer limit: given, never above
/// the limit; else the limit minus what the box keeps for itself.
struct Inner {
    limit_flag: &'static str,
    budget_flag: &'static str,
    reserve: i64,
    min: i64,
    show: fn(i64) -> String,
}

impl Inner {
    fn derive(&self, limit: Option<i64>, budget: Option<i64>) -> anyhow::Result<Option<i64>> {
        let show = self.show;
        match (limit, budget) {
            (Some(l), Some(b)) if b > l => bail!(
                "{} {} is above {} {}: the containers' budget must fit in the box",
                self.budget_flag,
                show(b),
                self.limit_flag,
                show(l)
            ),
            (_, Some(b)) => Ok(Some(b)),
            (Some(l), None) => {
                let b = l - self.reserve;
                if b < self.min {
                    bail!(
                        "{} {} leaves less than {} for containers once the box keeps {}; \
                         raise it or set {}",
                        self.limit_flag,
                        show(l),
                        show(self.min),
                        show(self.reserve),
                        self.budget_flag
                    );
                }
                Ok(Some(b))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The inner budget (`DINDBOX_MEMORY_LIMIT`): `--budget` as given (never above
/// `--memory`), else `--memory` minus [`BOX_RESERVE`], else none.
pub fn derive_budget(memory: Option<i64>, budget: Option<i64>) -> anyhow::Result<Option<i64>> {
    Inner {
        limit_flag: "--memory",
        budget_flag: "--budget",
        reserve: BOX_RESERVE,
        min: MIN_BUDGET,
        show: human,
    }
    .derive(memory, budget)
}

/// The inner pids budget (`DINDBOX_PIDS_LIMIT`): `--pids-budget` as given
/// (never above `--pids-limit`), else `--pids-limit` minus
/// [`BOX_PIDS_RESERVE`], else none.
pub fn derive_pids_budget(
    pids_limit: Option<i64>,
    pids_budget: Option<i64>,
) -> anyhow::Result<Option<i64>> {
    Inner {
        limit_flag: "--pids-limit",
        budget_flag: "--pids-budget",
        reserve: BOX_PIDS_RESERVE,
        min: MIN_PIDS_BUDGET,
        show: |n| format!("{n} pids"),
    }
    .derive(pids_limit, pids_budget)
}

/// The tenant's state directory as the box was created with it: the parent
/// of the host directory mounted at [`CERTS_MOUNT`], when that parent is named
/// after the tenant (what `create` makes). `rm --purge` then removes the right
/// certificates even when it is given another `--state-dir`.
pub fn tenant_dir_of(inspect: &Value, name: &str) -> Option<PathBuf> {
    let certs = inspect["Mounts"]
        .as_array()?
        .iter()
        .find(|m| m["Destination"] == CERTS_MOUNT && m["Type"] == "bind")?;
    let dir = Path::new(certs["Source"].as_str()?).parent()?;
    (dir.is_absolute() && dir.file_name()? == name).then(|| dir.to_path_buf())
}

/// Bytes in the largest unit that divides them: `1792m`, `2g`, `1000`.
pub fn human(bytes: i64) -> String {
    for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
        if bytes != 0 && bytes % (1i64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The health check timing: quick while starting, then relaxed. Daemons
/// before API 1.44 have no start interval, so they get a short interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTiming {
    pub interval: Duration,
    pub start_interval: Option<Duration>,
    pub start_period: Duration,
    pub timeout: Duration,
    pub retries: u32,
}

impl HealthTiming {
    pub fn for_api(api_version: &str) -> Self {
        let start_interval = api_at_least(api_version, 1, 44);
        HealthTiming {
            interval: if start_interval {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(2)
            },
            start_interval: start_interval.then_some(Duration::from_secs(1)),
            start_period: Duration::from_secs(120),
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}

/// Whether the API version `v` (`1.41`) is at least `major.minor`.
pub fn api_at_least(v: &str, major: u32, minor: u32) -> bool {
    ApiVersion::parse(v.trim()).is_some_and(|v| v >= ApiVersion(major, minor))
}

/// What `tenant create` asks for.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub name: String,
    pub image: String,
    pub bind_ip: IpAddr,
    /// None: a free port picked by Docker.
    pub port: Option<u16>,
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
    pub budget: Option<i64>,
    pub pids_budget: Option<i64>,
    /// The host directory mounted at /certs (absolute).
    pub certs_dir: PathBuf,
    /// More `DOCKER_TLS_SAN` entries (`DNS:x`, `IP:y`).
    pub extra_sans: Vec<String>,
    pub health: HealthTiming,
}

/// The address clients use for a box bound to `bind_ip`: the bind address,
/// or loopback when it binds every address.
pub fn endpoint_ip(bind_ip: IpAddr) -> IpAddr {
    match bind_ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// `DOCKER_TLS_SAN` for the box: localhost and the loopback addresses, the
/// endpoint address, and `extra`, without duplicates.
pub fn tls_sans(bind_ip: IpAddr, extra: &[String]) -> String {
    let mut sans = vec![
        "DNS:localhost".to_string(),
        "IP:127.0.0.1".to_string(),
        format!("IP:{}", endpoint_ip(bind_ip)),
    ];
    sans.extend(extra.iter().map(|s| s.trim().to_string()));
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    sans.join(",")
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// The `POST /containers/create` body.
pub fn create_body(spec: &TenantSpec) -> Value {
    let object = object_name(&spec.name);
    let mut env = vec![
        format!("DOCKER_TLS_CERTDIR={CERTS_MOUNT}"),
        format!(
            "DOCKER_TLS_SAN={}",
            tls_sans(spec.bind_ip, &spec.extra_sans)
        ),
        format!("DINDBOX_STOP_GRACE={STOP_GRACE_SECS}"),
    ];
    if let Some(budget) = spec.budget {
        env.push(format!(
            "{}={}",
            crate::proxy::config::ENV_MEMORY,
            human(budget)
        ));
    }
    if let Some(pids) = spec.pids_budget {
        env.push(format!("{}={pids}", crate::proxy::config::ENV_PIDS));
    }
    let mut health = json!({
        "Test": ["CMD", "/usr/local/bin/dindbox", "health"],
        "Interval": nanos(spec.health.interval),
        "Timeout": nanos(spec.health.timeout),
        "StartPeriod": nanos(spec.health.start_period),
        "Retries": spec.health.retries,
    });
    if let Some(start) = spec.health.start_interval {
        health["StartInterval"] = json!(nanos(start));
    }
    let mut host_config = json!({
        "Privileged": true,
        "Binds": [
            format!("{object}:/var/lib/docker"),
            format!("{}:{CERTS_MOUNT}", spec.certs_dir.display()),
        ],
        "PortBindings": {
            TLS_PORT_KEY: [{
                "HostIp": spec.bind_ip.to_string(),
                "HostPort": spec.port.map(|p| p.to_string()).unwrap_or_default(),
            }]
        },
        "RestartPolicy": { "Name": "unless-stopped" },
    });
    if let Some(memory) = spec.memory {
        host_config["Memory"] = json!(memory);
        // No swap beyond the limit: the budget means what it says.
        host_config["MemorySwap"] = json!(memory);
    }
    if let Some(pids) = spec.pids_limit {
        host_config["PidsLimit"] = json!(pids);
    }
    json!({
        "Image": spec.image,
        "Hostname": object,
        "Env": env,
        "Labels": { LABEL: spec.name },
        "ExposedPorts": { TLS_PORT_KEY: {} },
        "Healthcheck": health,
        "StopTimeout": STOP_TIMEOUT_SECS,
        "HostConfig": host_config,
    })
}

/// The `POST /volumes/create` body.
pub fn volume_body(name: &str) -> Value {
    json!({ "Name": object_name(name), "Labels": { LABEL: name } })
}

/// The published TLS port of an inspected container: (host IP, port).
pub fn published_port(inspect: &Value) -> Option<(String, u16)> {
    let bindings = inspect
        .pointer("/NetworkSettings/Ports")?
        .get(TLS_PORT_KEY)?
        .as_array()?;
    // With 0.0.0.0, Docker may list an IPv4 and an IPv6 binding: prefer IPv4.
    let mut found: Vec<(String, u16)> = bindings
        .iter()
        .filter_map(|b| {
            let ip = b.get("HostIp")?.as_str()?.to_string();
            let port = b.get("HostPort")?.as_str()?.parse().ok()?;
            Some((ip, port))
        })
        .collect();
    found.sort_by_key(|(ip, _)| ip.contains(':'));
    found.into_iter().next()
}

/// `tcp://IP:PORT` (IPv6 in brackets).
pub fn tcp_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("tcp://{v4}:{port}"),
        IpAddr::V6(v6) => format!("tcp://[{v6}]:{port}"),
    }
}

/// The endpoint clients use for a published binding `(host IP, port)`.
pub fn endpoint(host_ip: &str, port: u16) -> String {
    let ip = host_ip
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    tcp_url(endpoint_ip(ip), port)
}

/// The line `tenant create` prints for `eval`.
pub fn client_env(docker_host: &str, client_dir: &Path) -> String {
    format!(
        "export DOCKER_HOST={} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
        shell_quote(docker_host),
        shell_quote(&client_dir.display().to_string())
    )
}

/// `s` as one POSIX shell word (quoted only when it needs to be).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@%+,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_label_like() {
        for ok in ["a", "team-a", "ci42", "0", &"x".repeat(MAX_NAME)] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Team",
            "a_b",
            "a.b",
            "a/b",
            "../x",
            "a b",
            "é",
            &"x".repeat(MAX_NAME + 1),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid tenant name"), "{bad}: {err}");
        }
        assert_eq!(object_name("a"), "dindbox-tenant-a");
        assert!(object_name(&"x".repeat(MAX_NAME)).len() <= 63);
    }

    #[test]
    fn budget_is_memory_minus_the_box_reserve_unless_given() {
        let g = 1i64 << 30;
        assert_eq!(derive_budget(None, None).unwrap(), None);
        assert_eq!(
            derive_budget(Some(2 * g), None).unwrap(),
            Some(2 * g - (256 << 20))
        );
        assert_eq!(
            derive_budget(Some(2 * g), Some(g)).unwrap(),
            Some(g),
            "an explicit budget wins"
        );
        assert_eq!(derive_budget(None, Some(g)).unwrap(), Some(g));
        assert!(derive_budget(Some(g), Some(2 * g))
            .unwrap_err()
            .to_string()
            .contains("above --memory"));
        assert!(derive_budget(Some(300 << 20), None)
            .unwrap_err()
            .to_string()
            .contains("--budget"));
        assert_eq!(human(2 * g - (256 << 20)), "1792m");
        assert_eq!(human(2 * g), "2g");
        assert_eq!(human(1000), "1000");
    }

    #[test]
    fn pids_budget_is_the_limit_minus_the_box_reserve_unless_given() {
        assert_eq!(derive_pids_budget(None, None).unwrap(), None);
        assert_eq!(derive_pids_budget(Some(2000), None).unwrap(), Some(1488));
        assert_eq!(
            derive_pids_budget(Some(2000), Some(100)).unwrap(),
            Some(100),
            "an explicit budget wins"
        );
        assert_eq!(derive_pids_budget(None, Some(100)).unwrap(), Some(100));
        assert!(derive_pids_budget(Some(100), Some(200))
            .unwrap_err()
            .to_string()
            .contains("above --pids-limit"));
        assert!(derive_pids_budget(Some(500), None)
            .unwrap_err()
            .to_string()
            .contains("--pids-budget"));
    }

    #[test]
    fn the_tenant_dir_comes_from_the_certs_mount() {
        let inspect = json!({ "Mounts": [
            { "Type": "volume", "Source": "/var/lib/docker/volumes/x/_data", "Destination": "/var/lib/docker" },
            { "Type": "bind", "Source": "/srv/tenants/team-a/certs", "Destination": "/certs" },
        ]});
        assert_eq!(
            tenant_dir_of(&inspect, "team-a"),
            Some(PathBuf::from("/srv/tenants/team-a"))
        );
        assert_eq!(
            tenant_dir_of(&inspect, "team-b"),
            None,
            "not this tenant's dir"
        );
        assert_eq!(tenant_dir_of(&json!({}), "team-a"), None);
        let relative = json!({ "Mounts": [{ "Type": "bind", "Source": "team-a/certs", "Destination": "/certs" }] });
        assert_eq!(tenant_dir_of(&relative, "team-a"), None);
    }

    #[test]
    fn api_versions_compare_numerically() {
        assert!(api_at_least("1.44", 1, 44));
        assert!(api_at_least("1.47", 1, 44));
        assert!(!api_at_least("1.41", 1, 44));
        assert!(!api_at_least("1.9", 1, 44));
        assert!(!api_at_least("junk", 1, 44));
        assert_eq!(
            HealthTiming::for_api("1.41").start_interval,
            None,
            "20.10 has no StartInterval"
        );
        assert_eq!(
            HealthTiming::for_api("1.45").start_interval,
            Some(Duration::from_secs(1))
        );
    }

    fn spec() -> TenantSpec {
        TenantSpec {
            name: "team-a".into(),
            image: "dindbox:dev".into(),
            bind_ip: "127.0.0.1".parse().unwrap(),
            port: None,
            memory: Some(2 << 30),
            pids_limit: Some(4096),
            budget: derive_budget(Some(2 << 30), None).unwrap(),
            pids_budget: derive_pids_budget(Some(4096), None).unwrap(),
            certs_dir: "/var/lib/dindbox/tenants/team-a/certs".into(),
            extra_sans: vec![],
            health: HealthTiming::for_api("1.41"),
        }
    }

    #[test]
    fn the_create_request_carries_everything() {
        let body = create_body(&spec());
        assert_eq!(body["Image"], "dindbox:dev");
        assert_eq!(body["Labels"], json!({ "dindbox.tenant": "team-a" }));
        assert_eq!(body["ExposedPorts"], json!({ "2376/tcp": {} }));
        assert_eq!(
            body["Env"],
            json!([
                "DOCKER_TLS_CERTDIR=/certs",
                "DOCKER_TLS_SAN=DNS:localhost,IP:127.0.0.1",
                "DINDBOX_STOP_GRACE=25",
                "DINDBOX_MEMORY_LIMIT=1792m",
                "DINDBOX_PIDS_LIMIT=3584",
            ])
        );
        let hc = &body["HostConfig"];
        assert_eq!(hc["Privileged"], true);
        assert_eq!(
            hc["Binds"],
            json!([
                "dindbox-tenant-team-a:/var/lib/docker",
                "/var/lib/dindbox/tenants/team-a/certs:/certs",
            ])
        );
        assert_eq!(
            hc["PortBindings"],
            json!({ "2376/tcp": [{ "HostIp": "127.0.0.1", "HostPort": "" }] })
        );
        assert_eq!(hc["Memory"], 2i64 << 30);
        assert_eq!(hc["MemorySwap"], 2i64 << 30);
        assert_eq!(hc["PidsLimit"], 4096);
        assert_eq!(hc["RestartPolicy"]["Name"], "unless-stopped");
        assert_eq!(body["StopTimeout"], 30);
        let health = &body["Healthcheck"];
        assert_eq!(health["Test"][1], "/usr/local/bin/dindbox");
        assert_eq!(health["Interval"], 2_000_000_000u64);
        assert!(health.get("StartInterval").is_none());
    }

    #[test]
    fn the_create_request_without_limits_and_with_a_fixed_port() {
        let mut s = spec();
        s.memory = None;
        s.pids_limit = None;
        s.budget = None;
        s.pids_budget = None;
        s.port = Some(12376);
        s.bind_ip = "0.0.0.0".parse().unwrap();
        s.extra_sans = vec!["DNS:docker.example.com".into(), "IP:127.0.0.1".into()];
        s.health = HealthTiming::for_api("1.45");
        let body = create_body(&s);
        let hc = &body["HostConfig"];
        assert!(hc.get("Memory").is_none() && hc.get("PidsLimit").is_none());
        assert_eq!(
            hc["PortBindings"]["2376/tcp"][0],
            json!({ "HostIp": "0.0.0.0", "HostPort": "12376" })
        );
        let env: Vec<&str> = body["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(!env.iter().any(|e| e.starts_with("DINDBOX_MEMORY_LIMIT")));
        assert!(env.contains(&"DOCKER_TLS_SAN=DNS:localhost,IP:127.0.0.1,DNS:docker.example.com"));
        assert_eq!(body["Healthcheck"]["StartInterval"], 1_000_000_000u64);
        assert_eq!(body["Healthcheck"]["Interval"], 10_000_000_000u64);
    }

    #[test]
    fn sans_cover_the_bind_address() {
        assert_eq!(
            tls_sans("10.1.2.3".parse().unwrap(), &[]),
            "DNS:localhost,IP:127.0.0.1,IP:10.1.2.3"
        );
        assert_eq!(
            tls_sans("::".parse().unwrap(), &[]),
            "DNS:localhost,IP:127.0.0.1,IP:::1"
        );
    }

    #[test]
    fn published_port_prefers_ipv4() {
        let inspect = json!({ "NetworkSettings": { "Ports": { "2376/tcp": [
            { "HostIp": "::", "HostPort": "49154" },
            { "HostIp": "0.0.0.0", "HostPort": "49153" },
        ] } } });
        assert_eq!(published_port(&inspect), Some(("0.0.0.0".into(), 49153)));
        assert_eq!(endpoint("0.0.0.0", 49153), "tcp://127.0.0.1:49153");
        assert_eq!(endpoint("10.0.0.5", 2376), "tcp://10.0.0.5:2376");
        assert_eq!(endpoint("::", 2376), "tcp://[::1]:2376");
        let stopped = json!({ "NetworkSettings": { "Ports": {} } });
        assert_eq!(published_port(&stopped), None);
    }

    #[test]
    fn the_env_line_is_one_eval_able_export() {
        assert_eq!(
            client_env(
                "tcp://127.0.0.1:49153",
                Path::new("/var/lib/dindbox/tenants/a/certs/client")
            ),
            "export DOCKER_HOST=tcp://127.0.0.1:49153 DOCKER_TLS_VERIFY=1 \
             DOCKER_CERT_PATH=/var/lib/dindbox/tenants/a/certs/client"
        );
        assert_eq!(
            client_env("tcp://[::1]:1", Path::new("/tmp/my dir/it's")),
            "export DOCKER_HOST='tcp://[::1]:1' DOCKER_TLS_VERIFY=1 \
             DOCKER_CERT_PATH='/tmp/my dir/it'\\''s'"
        );
    }
}
