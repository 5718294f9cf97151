//! Where the policy's settings come from: built-in defaults, then an optional
//! TOML file (`--policy FILE`, `DINDBOX_POLICY`), then environment variables for
//! the common knobs, then command-line flags. Raw input ([`PolicyFile`],
//! strings) and the validated [`Policy`] are separate types; every raw value
//! goes through a small `parse_*` function.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::policy::{versions, Family, Policy};
use super::version::{MIN_API, POLICY_MAX_API};
use crate::bytesize;

/// The policy file as written. Unknown keys are errors, so a typo never
/// silently leaves a setting at its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyFile {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub cgroup_parent: Option<String>,
    /// A size such as `512m` or `2g`.
    pub memory: Option<String>,
    pub pids: Option<i64>,
    pub allow_buildkit: Option<bool>,
    /// Standalone mode's owner label, `key=value`.
    pub owner_label: Option<String>,
    /// The families refused by default ([`Family`]), one switch each.
    pub allow_plugins: Option<bool>,
    pub allow_swarm: Option<bool>,
    pub allow_checkpoints: Option<bool>,
    pub allow_distribution: Option<bool>,
    pub allow_import_url: Option<bool>,
    pub allow_build_remote: Option<bool>,
    /// The address pools tenants' networks may use, as CIDRs.
    pub subnets: Option<Vec<String>>,
}

impl PolicyFile {
    fn family(&self, family: Family) -> Option<bool> {
        match family {
            Family::Plugins => self.allow_plugins,
            Family::Swarm => self.allow_swarm,
            Family::Checkpoints => self.allow_checkpoints,
            Family::Distribution => self.allow_distribution,
            Family::ImportUrl => self.allow_import_url,
            Family::BuildRemote => self.allow_build_remote,
        }
    }
}

/// A source of settings by name: the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
    }
}

/// The environment variables for the common knobs.
pub const ENV_LABELS: &str = "DINDBOX_LABELS";
pub const ENV_CGROUP_PARENT: &str = "DINDBOX_CGROUP_PARENT";
pub const ENV_MEMORY: &str = "DINDBOX_MEMORY_LIMIT";
pub const ENV_PIDS: &str = "DINDBOX_PIDS_LIMIT";
pub const ENV_BUILDKIT: &str = "DINDBOX_ALLOW_BUILDKIT";
pub const ENV_OWNER_LABEL: &str = "DINDBOX_OWNER_LABEL";
/// Address pools for tenants' networks, comma-separated CIDRs.
pub const ENV_SUBNETS: &str = "DINDBOX_SUBNETS";
/// Families to enable, comma-separated (`plugins,swarm`); `none` for none.
pub const ENV_ALLOW: &str = "DINDBOX_ALLOW";

/// Reads and validates a policy file.
pub fn read_file(path: &Path) -> anyhow::Result<PolicyFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read policy file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("invalid policy file {}", path.display()))
}

pub fn parse_file(text: &str) -> anyhow::Result<PolicyFile> {
    let file: PolicyFile = toml::from_str(text)?;
    // Validate the values now, so `policy check` reports them.
    validate(&apply_file(Policy::default(), &file)?)?;
    Ok(file)
}

/// `base` with the file's settings applied.
pub fn apply_file(mut policy: Policy, file: &PolicyFile) -> anyhow::Result<Policy> {
    for (key, value) in &file.labels {
        set_label(&mut policy.labels, parse_label_key(key)?, value);
    }
    if let Some(parent) = &file.cgroup_parent {
        policy.cgroup_parent = Some(parse_cgroup_parent(parent)?);
    }
    if let Some(memory) = &file.memory {
        policy.memory = Some(bytesize::parse_positive_i64(memory).context("memory")?);
    }
    if let Some(pids) = file.pids {
        policy.pids = Some(parse_positive(&pids.to_string()).context("pids")?);
    }
    if let Some(allow) = file.allow_buildkit {
        policy.allow_buildkit = allow;
    }
    if let Some(owner) = &file.owner_label {
        policy.owner = Some(parse_owner_label(owner).context("owner-label")?);
    }
    if let Some(subnets) = &file.subnets {
        policy.subnets.allowed = parse_subnets(subnets).context("subnets")?;
    }
    for family in Family::ALL {
        match file.family(family) {
            Some(true) => drop(policy.allow.insert(family)),
            Some(false) => drop(policy.allow.remove(&family)),
            None => {}
        }
    }
    Ok(policy)
}

/// Checks the settings together, once they are all applied: a family that
/// standalone mode's ownership checks do not cover cannot be enabled with an
/// owner label, since its objects would be shared between owners.
pub fn validate(policy: &Policy) -> anyhow::Result<()> {
    let Some((key, value)) = &policy.owner else {
        return Ok(());
    };
    let uncovered: Vec<&str> = policy
        .allow
        .iter()
        .filter(|f| !f.owner_checked())
        .map(|f| f.name())
        .collect();
    if !uncovered.is_empty() {
        bail!(
            "the owner label {key}={value} cannot be combined with allowing {}: dindbox has no \
             ownership checks for them, so one owner could see or change another's. Give each \
             owner its own daemon (a dindbox box) instead, or drop the setting",
            uncovered.join(", ")
        );
    }
    Ok(())
}

/// `plugins,swarm`: families by name; `none` (or nothing) for none.
pub fn parse_families(text: &str) -> anyhow::Result<Vec<Family>> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "none")
        .map(parse_family)
        .collect()
}

pub fn parse_family(name: &str) -> anyhow::Result<Family> {
    Family::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
        anyhow::anyhow!(
            "unknown family {name:?}; expected one of {}",
            names.join(", ")
        )
    })
}

/// `base` with the environment's settings applied.
pub fn apply_env(mut policy: Policy, env: &impl Source) -> anyhow::Result<Policy> {
    if let Some(labels) = env.get(ENV_LABELS) {
        for label in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = parse_label(label).context(ENV_LABELS)?;
            set_label(&mut policy.labels, key, &value);
        }
    }
    if let Some(parent) = env.get(ENV_CGROUP_PARENT) {
        policy.cgroup_parent = Some(parse_cgroup_parent(&parent).context(ENV_CGROUP_PARENT)?);
    }
    if let Some(memory) = env.get(ENV_MEMORY) {
        policy.memory = Some(bytesize::parse_positive_i64(&memory).context(ENV_MEMORY)?);
    }
    if let Some(pids) = env.get(ENV_PIDS) {
        policy.pids = Some(parse_positive(&pids).context(ENV_PIDS)?);
    }
    if let Some(allow) = env.get(ENV_BUILDKIT) {
        policy.allow_buildkit = parse_bool(&allow).context(ENV_BUILDKIT)?;
    }
    if let Some(owner) = env.get(ENV_OWNER_LABEL) {
        policy.owner = Some(parse_owner_label(&owner).context(ENV_OWNER_LABEL)?);
    }
    if let Some(subnets) = env.get(ENV_SUBNETS) {
        let subnets: Vec<&str> = subnets.split(',').collect();
        policy.subnets.allowed = parse_subnets(&subnets).context(ENV_SUBNETS)?;
    }
    if let Some(allow) = env.get(ENV_ALLOW) {
        policy.allow = parse_families(&allow)
            .context(ENV_ALLOW)?
            .into_iter()
            .collect();
    }
    Ok(policy)
}

fn set_label(labels: &mut Vec<(String, String)>, key: String, value: &str) {
    match labels.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => labels.push((key, value.to_string())),
    }
}

/// `key=value`; the value may be empty, the key may not.
pub fn parse_label(text: &str) -> anyhow::Result<(String, String)> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("label {text:?} must be key=value");
    };
    Ok((parse_label_key(key)?, value.to_string()))
}

/// The owner label: `key=value` with a non-empty value, since an empty value
/// is what an unlabelled object would be compared against by mistake.
pub fn parse_owner_label(text: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = parse_label(text)?;
    if value.is_empty() {
        bail!("owner label {text:?} needs a value (key=value), e.g. ci.job=build-42");
    }
    Ok((key, value))
}

fn parse_label_key(key: &str) -> anyhow::Result<String> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("label key {key:?} must be non-empty, without spaces");
    }
    Ok(key.to_string())
}

/// A cgroupfs path (`/dindbox`) or a systemd slice (`tenant.slice`).
pub fn parse_cgroup_parent(text: &str) -> anyhow::Result<String> {
    let ok = !text.is_empty()
        && !text.split('/').any(|s| s == "..")
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.-:@".contains(c));
    if !ok {
        bail!("cgroup parent {text:?} must be a plain path such as /dindbox or a name such as tenant.slice");
    }
    Ok(text.to_string())
}

/// CIDRs such as `172.16.0.0/12`; at least one.
pub fn parse_subnets(texts: &[impl AsRef<str>]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    let subnets = texts
        .iter()
        .map(|t| t.as_ref().trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .with_context(|| format!("{t:?} is not a CIDR subnet such as 172.16.0.0/12"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if subnets.is_empty() {
        bail!("give at least one subnet");
    }
    Ok(subnets)
}

pub fn parse_positive(text: &str) -> anyhow::Result<i64> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{text:?} must be a positive whole number"),
    }
}

pub fn parse_bool(text: &str) -> anyhow::Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{text:?} must be true or false"),
    }
}

/// What enabling a family lets through, and what that costs.
fn family_explained(family: Family) -> &'static str {
    match family {
        Family::Plugins => "/plugins/*: install, enable, configure plugins. Plugins run as root with the host privileges they ask for (host network, mounts of /, devices, CAP_SYS_ADMIN): enabling this trusts the tenant with the daemon's host",
        Family::Swarm => "/swarm (init, leave, update, unlock; never join), /nodes, /services, /tasks, /secrets, /configs. Service task containers get the container rules (no bind mounts, added capabilities, unsafe sysctls, SELinux overrides, plugin runtimes, log drivers beyond json-file/local/none, GPUs) and the memory and pids budget; overlay networks allowed (not ingress); labels go on services, their containers, secrets and configs. Task containers are created by the daemon: they get its --cgroup-parent (in a box, the box's), not the proxy's. Join tokens let other nodes join this swarm: keep the swarm port (2377) unreachable",
        Family::Checkpoints => "/containers/{id}/checkpoints and start?checkpoint= (experimental daemons): in the default directory only, never checkpoint-dir or dir",
        Family::Distribution => "GET /distribution/{name}/json: the daemon asks the registry about an image (with the client's credentials)",
        Family::ImportUrl => "images/create?fromSrc=URL: the daemon downloads the URL from its own network (SSRF: anything the box, or in standalone mode the host, can reach, e.g. cloud metadata). fromSrc=- (the body) is always allowed",
        Family::BuildRemote => "build?remote=URL: the daemon fetches the context (git clone or HTTP) from its own network (SSRF: anything the box, or in standalone mode the host, can reach)",
    }
}

/// The effective rules, as `dindbox policy explain` prints them.
pub fn explain(policy: &Policy) -> String {
    let mut out = String::new();
    let labels: Vec<String> = policy
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.push_str("Injected into what tenants create:\n");
    out.push_str(&format!(
        "  labels (containers, built images, networks, volumes{}): {}\n",
        if policy.allows(Family::Swarm) {
            ", services and their containers, secrets, configs"
        } else {
            ""
        },
        if labels.is_empty() {
            "none".into()
        } else {
            labels.join(", ")
        }
    ));
    out.push_str(&format!(
        "  owner label (also injected; only objects carrying it are visible): {}\n",
        policy
            .owner
            .as_ref()
            .map_or("none".into(), |(k, v)| format!("{k}={v}"))
    ));
    out.push_str(&format!(
        "  cgroup parent (containers, classic builds): {}\n",
        policy.cgroup_parent.as_deref().unwrap_or("none")
    ));
    out.push_str(&format!(
        "  memory limit per container (default and maximum): {}\n",
        policy
            .memory
            .map_or("none".into(), |m| format!("{m} bytes"))
    ));
    out.push_str(&format!(
        "  pids limit per container (default and maximum): {}\n",
        policy.pids.map_or("none".into(), |p| p.to_string())
    ));
    out.push_str("  CgroupnsMode and IpcMode default to private\n");
    let pools: Vec<String> = policy
        .subnets
        .allowed
        .iter()
        .map(ToString::to_string)
        .collect();
    out.push_str(&format!(
        "Network addresses: subnets, gateways and static addresses inside {} \
         (subnets, DINDBOX_SUBNETS), and no subnet over one of the host's routes\n",
        pools.join(", ")
    ));
    out.push_str("Refused on container create and update:\n");
    for rule in [
        "privileged mode; added capabilities",
        "host bind mounts (Binds with a host path, Mounts of type bind, bind options on any mount); mount types other than volume, tmpfs and image; volume driver options; subpaths out of their volume or image; tmpfs options other than exec and noexec",
        "devices, device cgroup rules, device requests, per-device block IO settings",
        "host and container: namespaces (pid, ipc, network, uts, user, cgroup)",
        "security options other than no-new-privileges; MaskedPaths/ReadonlyPaths",
        "sysctls outside the safe list; runtimes; volume drivers; log drivers other than json-file, local, none",
        "a tenant-chosen cgroup parent; OomKillDisable; negative OomScoreAdj; real-time scheduling (CpuRealtime*, rtprio ulimits); annotations; shareable IPC",
        "HostConfig keys dindbox does not know; working directories that clean to /proc (or /dev/fd)",
        "endpoint NetworkID/EndpointID (dockerd would join that network instead); link-local addresses; endpoint driver options other than safe per-interface sysctls; the host network, container: and none with another network, in any EndpointsConfig slot",
    ] {
        out.push_str(&format!("  - {rule}\n"));
    }
    out.push_str("Refused elsewhere:\n");
    for rule in [
        "privileged exec",
        "builds with a host or container network, a cgroup parent, security options, rtprio ulimits, or BuildKit (version=2) unless BuildKit is allowed",
        "commits and imports whose WORKDIR (changes, config, ONBUILD) leads into /proc",
        "volumes with a driver or driver options; networks other than bridge, with IPAM drivers or host-reaching options",
        "every endpoint off the allow-list (debug, swarm join, ...), and the way into the families below that are off (swarm init and join, plugin installs, registry lookups, daemon-side fetches)",
        &format!("form-encoded and multipart bodies, and any Content-Type that is not plain JSON, tar, text or binary; API versions outside {MIN_API} to the older of dockerd's newest and {POLICY_MAX_API} (the newest whose requests the policy knows)"),
    ] {
        out.push_str(&format!("  - {rule}\n"));
    }
    out.push_str("Families off unless enabled (allow-<name> in the policy file, --allow NAME, DINDBOX_ALLOW=a,b); off, the rest of a family answers as Docker with that feature off:\n");
    for family in Family::ALL {
        let state = if policy.allows(family) {
            "ALLOWED"
        } else {
            "off"
        };
        out.push_str(&format!("  {}: {state}\n", family.name()));
        out.push_str(&format!("      {}\n", family_explained(family)));
    }
    if policy.owner.is_some() {
        out.push_str("Ownership (owner label set):\n");
        for rule in [
            "containers, execs, networks and volumes without the owner label look absent (404) on every {id} endpoint",
            "container create: VolumesFrom, Links, NetworkMode and EndpointsConfig must name owned containers and networks (bridge, default and none are shared)",
            "a named volume in Binds or Mounts must be owned; one that does not exist yet is created first, with the owner label",
            "lists, prunes and events are filtered by the owner label; system df lists owned containers and volumes only",
            "images and the build cache are shared: pulled images carry no labels",
            "a tag may only be set or removed (tag, build -t, commit, import, pull, rmi, load) when it is free, its image carries the owner label, or this proxy set it to that image; image prunes get the label filter",
        ] {
            out.push_str(&format!("  - {rule}\n"));
        }
    }
    out.push_str(&format!(
        "Engine API {}.{} (Docker 20.10) to {}.{}: what each version added that tenants can send (the rules apply at every version):\n",
        versions::OLDEST_KNOWN.0,
        versions::OLDEST_KNOWN.1,
        versions::NEWEST_KNOWN.0,
        versions::NEWEST_KNOWN.1,
    ));
    for line in versions::explain() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!(
        "BuildKit sessions (/session, /grpc): {}\n",
        if policy.allow_buildkit {
            "allowed"
        } else {
            "refused"
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_label_needs_a_key() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_label("=b").is_err());
        assert!(parse_label("ab").is_err());
        assert!(parse_label("a b=c").is_err());
    }

    #[test]
    fn parse_cgroup_parent_refuses_escapes() {
        assert!(parse_cgroup_parent("/dindbox").is_ok());
        assert!(parse_cgroup_parent("tenant.slice").is_ok());
        assert!(parse_cgroup_parent("/a/../..").is_err());
        assert!(parse_cgroup_parent("").is_err());
        assert!(parse_cgroup_parent("/a b").is_err());
    }

    #[test]
    fn policy_file_unknown_keys_are_errors() {
        let err = parse_file("labels = {}\nalow-buildkit = true\n").unwrap_err();
        assert!(format!("{err:#}").contains("alow-buildkit"), "{err:#}");
    }

    #[test]
    fn policy_file_values_are_validated() {
        assert!(parse_file("memory = \"lots\"").is_err());
        assert!(parse_file("pids = 0").is_err());
        let file = parse_file("labels = { team = \"a\" }\ncgroup-parent = \"/t\"\nmemory = \"1g\"\npids = 100\nallow-buildkit = true\n").unwrap();
        let policy = apply_file(Policy::default(), &file).unwrap();
        assert_eq!(policy.labels, vec![("team".to_string(), "a".to_string())]);
        assert_eq!(policy.cgroup_parent.as_deref(), Some("/t"));
        assert_eq!(policy.memory, Some(1 << 30));
        assert_eq!(policy.pids, Some(100));
        assert!(policy.allow_buildkit);
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = parse_file("labels = { team = \"a\" }\nmemory = \"1g\"").unwrap();
        let policy = apply_file(Policy::default(), &file).unwrap();
        let env = HashMap::from([
            (ENV_LABELS, "team=b, job=42"),
            (ENV_MEMORY, "256m"),
            (ENV_BUILDKIT, "0"),
        ]);
        let policy = apply_env(policy, &env).unwrap();
        assert_eq!(
            policy.labels,
            vec![
                ("team".to_string(), "b".to_string()),
                ("job".to_string(), "42".to_string())
            ]
        );
        assert_eq!(policy.memory, Some(256 << 20));
        assert!(!policy.allow_buildkit);
    }

    #[test]
    fn parse_owner_label_needs_a_key_and_a_value() {
        assert_eq!(
            parse_owner_label("ci.job=42").unwrap(),
            ("ci.job".into(), "42".into())
        );
        assert!(parse_owner_label("ci.job=").is_err());
        assert!(parse_owner_label("=42").is_err());
        assert!(parse_owner_label("ci.job").is_err());
    }

    #[test]
    fn owner_label_comes_from_the_file_and_the_environment() {
        let file = parse_file("owner-label = \"ci.job=a\"").unwrap();
        let policy = apply_file(Policy::default(), &file).unwrap();
        assert_eq!(policy.owner, Some(("ci.job".into(), "a".into())));
        let env = HashMap::from([(ENV_OWNER_LABEL, "ci.job=b")]);
        let policy = apply_env(policy, &env).unwrap();
        assert_eq!(policy.owner, Some(("ci.job".into(), "b".into())));
        assert!(parse_file("owner-label = \"nokey\"").is_err());
        assert_eq!(Policy::default().owner, None, "box mode has no owner");
    }

    #[test]
    fn families_come_from_the_file_and_the_environment() {
        let file =
            parse_file("allow-plugins = true\nallow-swarm = true\nallow-import-url = false\n")
                .unwrap();
        let policy = apply_file(Policy::default(), &file).unwrap();
        assert_eq!(
            policy.allow,
            [Family::Plugins, Family::Swarm].into_iter().collect()
        );
        let env = HashMap::from([(ENV_ALLOW, "build-remote, import-url")]);
        let policy = apply_env(policy, &env).unwrap();
        assert_eq!(
            policy.allow,
            [Family::ImportUrl, Family::BuildRemote]
                .into_iter()
                .collect(),
            "the environment's list replaces the file's"
        );
        let env = HashMap::from([(ENV_ALLOW, "none")]);
        assert!(apply_env(policy, &env).unwrap().allow.is_empty());
        assert!(Policy::default().allow.is_empty(), "all off by default");
    }

    #[test]
    fn unknown_families_are_errors() {
        let err = parse_file("allow-swarms = true").unwrap_err();
        assert!(format!("{err:#}").contains("allow-swarms"), "{err:#}");
        let env = HashMap::from([(ENV_ALLOW, "plugins,swam")]);
        let err = apply_env(Policy::default(), &env).unwrap_err();
        assert!(format!("{err:#}").contains("\"swam\""), "{err:#}");
        assert!(format!("{err:#}").contains(ENV_ALLOW), "{err:#}");
    }

    #[test]
    fn families_without_ownership_checks_refuse_an_owner_label() {
        for family in ["plugins", "swarm", "checkpoints"] {
            let text = format!("owner-label = \"ci.job=a\"\nallow-{family} = true\n");
            let err = parse_file(&text).unwrap_err();
            assert!(
                format!("{err:#}").contains("cannot be combined with allowing"),
                "{err:#}"
            );
        }
        for family in ["distribution", "import-url", "build-remote"] {
            let text = format!("owner-label = \"ci.job=a\"\nallow-{family} = true\n");
            assert!(
                parse_file(&text).is_ok(),
                "{family}: images are shared anyway"
            );
        }
        // Set apart (file, then an owner from the environment): still refused.
        let policy = apply_file(
            Policy::default(),
            &parse_file("allow-swarm = true").unwrap(),
        );
        let env = HashMap::from([(ENV_OWNER_LABEL, "ci.job=b")]);
        assert!(validate(&apply_env(policy.unwrap(), &env).unwrap()).is_err());
    }

    #[test]
    fn explain_says_what_each_family_costs() {
        let text = explain(&Policy {
            allow: [Family::BuildRemote].into_iter().collect(),
            ..Policy::default()
        });
        assert!(text.contains("build-remote: ALLOWED"), "{text}");
        assert!(text.contains("plugins: off"), "{text}");
        assert!(text.contains("trusts the tenant"), "{text}");
        assert!(text.contains("SSRF"), "{text}");
    }

    #[test]
    fn explain_lists_what_each_api_version_added() {
        let text = explain(&Policy::default());
        assert!(
            text.contains("Engine API 1.41 (Docker 20.10) to 1.55"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  at 1.43: HostConfig.Annotations — refused: passed verbatim to the OCI runtime"
            ),
            "{text}"
        );
        assert!(
            text.contains("at 1.48: Mounts[].Type image, Mounts[].ImageOptions.Subpath — checked:"),
            "{text}"
        );
    }

    #[test]
    fn explain_states_the_api_version_window() {
        let text = explain(&Policy::default());
        assert!(
            text.contains("API versions outside 1.24 to the older of dockerd's newest and 1.55"),
            "{text}"
        );
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let env = HashMap::from([(ENV_PIDS, "-5")]);
        let err = apply_env(Policy::default(), &env).unwrap_err();
        assert!(format!("{err:#}").contains(ENV_PIDS), "{err:#}");
    }
}
