//! A box without `--privileged`: its root is not the host's root (the outer
//! daemon's `--userns-remap`, a Kubernetes pod with `hostUsers: false`) and
//! holds only Docker's default capabilities, so init can neither mount nor
//! manage the box's network. dockerd then runs under rootlesskit, in a user
//! namespace of the box's own (the box's ids mapped 1:1), with a mount and a
//! network namespace that namespace owns; slirp4netns gives that network its
//! way out and rootlesskit's port driver brings published ports back into
//! the box. See docs/unprivileged-notes.md for why each piece is needed.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Bit of CAP_SYS_ADMIN in `/proc/self/status`'s `CapEff` (capability.h).
const CAP_SYS_ADMIN: u32 = 21;
/// What rootlesskit keeps its state (lock, child pid, API socket) in.
pub const STATE_DIR: &str = "/run/dindbox/rootlesskit";
/// dockerd's runtime dir in rootless mode (its exec root and pid file go
/// there); rootless dockerd refuses to start without `XDG_RUNTIME_DIR`.
pub const RUNTIME_DIR: &str = "/run/dindbox/xdg";
/// The data root the image's volume holds; rootless dockerd's own default
/// (`$HOME/.local/share/docker`) would sit on the outer overlayfs.
pub const DATA_ROOT: &str = "/var/lib/docker";
/// The MTU of slirp4netns' tap device (rootlesskit's docs: 65520 is fastest).
const SLIRP_MTU: u32 = 65520;

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("failed to read {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("cannot parse {path}: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("failed to write {path}: {err}")]
    Write { path: PathBuf, err: io::Error },
    #[error(
        "the box runs without CAP_SYS_ADMIN (not --privileged), and then dockerd runs under \
         rootlesskit, but {program} is not in the image (Debian packages rootlesskit, \
         slirp4netns, uidmap, iproute2)"
    )]
    Missing { program: &'static str },
}

/// How the box was started, as init sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// CAP_SYS_ADMIN in the box's user namespace: init mounts and manages
    /// cgroups itself, dockerd runs as the box's root.
    Privileged,
    /// No CAP_SYS_ADMIN: dockerd runs under rootlesskit.
    Unprivileged(UidMap),
}

/// The box's `/proc/self/uid_map`: how many ids it has from 0 on, and
/// whether its root is the host's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidMap {
    /// Ids mapped contiguously from the box's 0.
    pub ids: u64,
    /// The host id of the box's root (0: the host's root).
    pub host_root: u64,
}

impl UidMap {
    /// The whole 32-bit range mapped onto itself: the initial user namespace.
    pub fn is_host(&self) -> bool {
        self.host_root == 0 && self.ids == u64::from(u32::MAX)
    }
}

impl fmt::Display for UidMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "the host's user namespace (root is the host's root)")
        } else {
            write!(
                f,
                "a user namespace: {} ids, root is host uid {}",
                self.ids, self.host_root
            )
        }
    }
}

/// Parses `uid_map` (lines `inside outside count`): the ids mapped from 0 on
/// without a gap, and where 0 goes.
pub fn parse_uid_map(text: &str) -> Result<UidMap, String> {
    let mut lines: Vec<(u64, u64, u64)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let nums: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("line {line:?}: {e}"))?;
        match nums[..] {
            [inside, outside, count] => lines.push((inside, outside, count)),
            _ => return Err(format!("line {line:?}: not three numbers")),
        }
    }
    lines.sort_unstable();
    let Some(&(0, host_root, _)) = lines.first() else {
        return Err("uid 0 is not mapped".into());
    };
    let mut ids = 0;
    for (inside, _, count) in lines {
        if inside != ids {
            break;
        }
        ids += count;
    }
    Ok(UidMap { ids, host_root })
}

/// Whether `CapEff` (the hex mask of `/proc/self/status`) holds CAP_SYS_ADMIN.
pub fn has_sys_admin(status: &str) -> Result<bool, String> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or("no CapEff line")?
        .trim();
    let mask = u64::from_str_radix(hex, 16).map_err(|e| format!("CapEff {hex:?}: {e}"))?;
    Ok(mask & (1 << CAP_SYS_ADMIN) != 0)
}

/// Reads this process's capabilities and uid map.
pub fn detect() -> Result<Mode, UsernsError> {
    let status = read(Path::new("/proc/self/status"))?;
    let admin = has_sys_admin(&status).map_err(|why| UsernsError::Parse {
        path: "/proc/self/status".into(),
        why,
    })?;
    if admin {
        return Ok(Mode::Privileged);
    }
    let path = Path::new("/proc/self/uid_map");
    let map = parse_uid_map(&read(path)?).map_err(|why| UsernsError::Parse {
        path: path.into(),
        why,
    })?;
    Ok(Mode::Unprivileged(map))
}

fn read(path: &Path) -> Result<String, UsernsError> {
    std::fs::read_to_string(path).map_err(|err| UsernsError::Read {
        path: path.into(),
        err,
    })
}

/// The `/etc/subuid` (and subgid) line that lets rootlesskit map all the
/// box's ids into its namespace one to one: root is 0 there already, the
/// range is the rest. `None` when the box has no ids beyond root.
pub fn subid_line(map: &UidMap) -> Option<String> {
    let rest = map.ids.min(u64::from(u32::MAX)).checked_sub(1)?;
    (rest > 0).then(|| format!("root:1:{rest}\n"))
}

/// Writes the subordinate id files unless they already give root a range
/// (then the image's own choice stands). Returns the files written.
pub fn ensure_subids(etc: &Path, map: &UidMap) -> Result<Vec<PathBuf>, UsernsError> {
    let Some(line) = subid_line(map) else {
        return Ok(Vec::new());
    };
    let mut written = Vec::new();
    for name in ["subuid", "subgid"] {
        let path = etc.join(name);
        let current = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(UsernsError::Read { path, err }),
        };
        if current.lines().any(|l| l.starts_with("root:")) {
            continue;
        }
        std::fs::write(&path, format!("{current}{line}")).map_err(|err| UsernsError::Write {
            path: path.clone(),
            err,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The programs rootlesskit runs; a missing one fails the boot with the
/// packages to install rather than a dockerd that never starts.
pub fn check_programs(path_env: &str) -> Result<(), UsernsError> {
    for program in ["rootlesskit", "slirp4netns", "newuidmap", "newgidmap", "ip"] {
        let found = std::env::split_paths(path_env).any(|dir| dir.join(program).is_file());
        if !found {
            return Err(UsernsError::Missing { program });
        }
    }
    Ok(())
}

/// rootlesskit and its flags, to be followed by dockerd and its arguments.
/// `/etc` is copied up so slirp4netns' resolv.conf stays inside; `/run` is
/// not, so dockerd's socket stays where the proxy looks for it.
pub fn launcher() -> Vec<String> {
    [
        "rootlesskit".to_string(),
        format!("--state-dir={STATE_DIR}"),
        "--net=slirp4netns".into(),
        format!("--mtu={SLIRP_MTU}"),
        "--disable-host-loopback".into(),
        "--port-driver=builtin".into(),
        "--copy-up=/etc".into(),
    ]
    .into()
}

/// Removes what an earlier rootlesskit and rootless dockerd left in the
/// box's `/run` (no tmpfs there without CAP_SYS_ADMIN): rootlesskit's lock
/// and dockerd's pid file would stop the next start.
pub fn clear_state() -> io::Result<()> {
    for dir in [STATE_DIR, RUNTIME_DIR] {
        match std::fs::remove_dir_all(dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    std::fs::create_dir_all(RUNTIME_DIR)
}

/// What dockerd needs in rootless mode: its runtime dir in the environment
/// and the volume as data root unless the arguments name one.
pub fn dockerd_args_and_env(args: &mut Vec<String>, env: &mut Vec<(String, String)>) {
    let has_data_root = args
        .iter()
        .any(|a| a == "--data-root" || a == "-g" || a.starts_with("--data-root="));
    if !has_data_root {
        args.push(format!("--data-root={DATA_ROOT}"));
    }
    env.push(("XDG_RUNTIME_DIR".into(), RUNTIME_DIR.into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_namespace_is_the_host() {
        let map = parse_uid_map("         0          0 4294967295\n").unwrap();
        assert!(map.is_host());
    }

    #[test]
    fn a_remapped_box_has_its_range_and_host_root() {
        let map = parse_uid_map("         0     100000      65536\n").unwrap();
        assert_eq!(
            map,
            UidMap {
                ids: 65536,
                host_root: 100000
            }
        );
        assert!(!map.is_host());
        assert_eq!(subid_line(&map).as_deref(), Some("root:1:65535\n"));
    }

    #[test]
    fn contiguous_lines_add_up_and_a_gap_ends_the_range() {
        let map = parse_uid_map("1 1 65535\n0 0 1\n").unwrap();
        assert_eq!(map.ids, 65536);
        let map = parse_uid_map("0 1000 1\n5 100000 10\n").unwrap();
        assert_eq!(map.ids, 1);
        assert_eq!(subid_line(&map), None);
    }

    #[test]
    fn unmapped_root_and_garbage_are_errors() {
        assert!(parse_uid_map("1 100000 10\n").is_err());
        assert!(parse_uid_map("0 x 1\n").is_err());
        assert!(parse_uid_map("0 1\n").is_err());
    }

    #[test]
    fn cap_sys_admin_is_bit_21_of_cap_eff() {
        assert!(has_sys_admin("CapInh:\t0\nCapEff:\t000001ffffffffff\n").unwrap());
        // Docker's default set (no SYS_ADMIN).
        assert!(!has_sys_admin("CapEff:\t00000000a80425fb\n").unwrap());
        assert!(has_sys_admin("CapPrm:\t0\n").is_err());
    }

    #[test]
    fn ensure_subids_adds_a_root_range_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subuid"), "user:100000:65536\n").unwrap();
        std::fs::write(dir.path().join("subgid"), "root:5:7\n").unwrap();
        let map = UidMap {
            ids: 65536,
            host_root: 100000,
        };
        let written = ensure_subids(dir.path(), &map).unwrap();
        assert_eq!(written, [dir.path().join("subuid")]);
        let subuid = std::fs::read_to_string(dir.path().join("subuid")).unwrap();
        assert_eq!(subuid, "user:100000:65536\nroot:1:65535\n");
        let subgid = std::fs::read_to_string(dir.path().join("subgid")).unwrap();
        assert_eq!(subgid, "root:5:7\n");
        assert!(ensure_subids(dir.path(), &map).unwrap().is_empty());
    }

    #[test]
    fn dockerd_gets_the_volume_as_data_root_unless_given_one() {
        let (mut args, mut env) = (vec!["--host=unix:///s".to_string()], Vec::new());
        dockerd_args_and_env(&mut args, &mut env);
        assert_eq!(args, ["--host=unix:///s", "--data-root=/var/lib/docker"]);
        assert_eq!(env, [("XDG_RUNTIME_DIR".into(), RUNTIME_DIR.into())]);
        let mut args = vec!["--data-root".to_string(), "/d".to_string()];
        dockerd_args_and_env(&mut args, &mut Vec::new());
        assert_eq!(args, ["--data-root", "/d"]);
    }
}
