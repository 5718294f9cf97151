//! A box without `--privileged`: its root is not the host's root (the outer
//! daemon's `--userns-remap`, a Kubernetes pod with `hostUsers: false`) and
//! holds only Docker's default capabilities, so init can neither mount nor
//! manage the box's network. dockerd then runs under rootlesskit, in a user
//! namespace of the box's own (the box's ids mapped 1:1), with a mount and a
//! network namespace that namespace owns; slirp4netns gives that network its
//! way out and rootlesskit's port driver brings published ports back into
//! the box. See docs/unprivileged-notes.md for why each piece is needed.
//!
//! On cgroup v2, when the outer runtime delegated the box's cgroup to the
//! box's root (crun does in a user namespace; runc does not), init prepares
//! that cgroup as for a privileged box and dockerd runs as root of the nested
//! namespace instead of in rootless mode (rootless dockerd gets no cgroup
//! driver without systemd), so inner containers get their limits: see
//! [`cgroup_delegation`] and [`exec_dockerd_as_root`].

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
/// The hidden `dindbox` subcommand rootlesskit runs in a delegated box: it
/// execs dockerd without rootlesskit's variables ([`exec_dockerd_as_root`]).
pub const DOCKERD_AS_ROOT: &str = "userns-dockerd";
/// The inner runtime of a delegated box: crun, which works as root of a
/// nested user namespace; the inner runc fails there (docs/unprivileged-notes.md).
const INNER_RUNTIME: &str = "crun";

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

/// The box's cgroup as init found it, from the box's own view: whether it is
/// a cgroup v2 mount, writable, and whose its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupView {
    pub v2: bool,
    pub read_only: bool,
    /// The owner (as the box sees it: 65534 = not mapped) of the directory,
    /// its `cgroup.procs` and `cgroup.subtree_control`.
    pub owners: Vec<(PathBuf, u32)>,
}

/// Reads [`CgroupView`] at `root` (`/sys/fs/cgroup`).
pub fn view_cgroup(root: &Path) -> CgroupView {
    use std::os::unix::fs::MetadataExt;
    let v2 = root.join("cgroup.controllers").exists();
    let read_only = nix::sys::statvfs::statvfs(root)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let owners = [
        root.to_path_buf(),
        root.join("cgroup.procs"),
        root.join("cgroup.subtree_control"),
    ]
    .into_iter()
    .map(|p| {
        let uid = std::fs::metadata(&p).map_or(u32::MAX, |m| m.uid());
        (p, uid)
    })
    .collect();
    CgroupView {
        v2,
        read_only,
        owners,
    }
}

/// Why dockerd in a box without --privileged gets no cgroups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotDelegated {
    #[error(
        "the host runs cgroup v1 (or hybrid): nothing there can be delegated to the box's root"
    )]
    CgroupV1,
    #[error("the box's /sys/fs/cgroup is mounted read-only")]
    ReadOnly,
    #[error(
        "the box's cgroup is not delegated to the box's root: {0} are not owned by it (65534: \
         the host's root; the outer runtime must chown it, as crun does, runc does not)"
    )]
    NotOwned(String),
    #[error(
        "{INNER_RUNTIME} is not in the image (the inner runc cannot start containers as root of \
         a nested user namespace)"
    )]
    NoCrun,
}

/// Whether dockerd may have cgroups in this box: cgroup v2, mounted
/// writable, the box's cgroup owned by the box's root (delegated), and crun
/// in the image. Ok: crun's path.
pub fn cgroup_delegation(
    view: &CgroupView,
    crun: Option<PathBuf>,
) -> Result<PathBuf, NotDelegated> {
    if !view.v2 {
        return Err(NotDelegated::CgroupV1);
    }
    if view.read_only {
        return Err(NotDelegated::ReadOnly);
    }
    let foreign: Vec<String> = view
        .owners
        .iter()
        .filter(|(_, uid)| *uid != 0)
        .map(|(path, uid)| match *uid {
            u32::MAX => format!("{} (missing)", path.display()),
            uid => format!("{} (uid {uid})", path.display()),
        })
        .collect();
    if !foreign.is_empty() {
        return Err(NotDelegated::NotOwned(foreign.join(", ")));
    }
    crun.ok_or(NotDelegated::NoCrun)
}

/// `PATH`, or the usual system directories when it is unset.
pub fn path_env() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// The first `name` in the directories of `path_env`.
pub fn find_program(path_env: &str, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path_env)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// rootlesskit, its flags and the child that makes dockerd root of the
/// nested namespace (not rootless): `dindbox userns-dockerd`, then dockerd.
pub fn launcher_as_root(dindbox: &Path) -> Vec<String> {
    let mut launcher = launcher();
    launcher.push(dindbox.display().to_string());
    launcher.push(DOCKERD_AS_ROOT.into());
    launcher
}

/// What dockerd outside rootless mode needs in a delegated box: its exec root
/// and pid file where [`clear_state`] empties them at each start (the box's
/// `/run` is no fresh tmpfs), and crun as its default runtime, unless the
/// arguments choose these.
pub fn dockerd_as_root_args(args: &mut Vec<String>, crun: &Path) {
    use super::dockerd::sets_flag;
    if !sets_flag(args, "--exec-root") {
        args.push(format!("--exec-root={RUNTIME_DIR}/docker"));
    }
    if !sets_flag(args, "--pidfile") && !sets_flag(args, "-p") {
        args.push(format!("--pidfile={RUNTIME_DIR}/docker.pid"));
    }
    if !sets_flag(args, "--default-runtime") {
        let named = args
            .iter()
            .any(|a| a.contains(&format!("{INNER_RUNTIME}=")) && a != "--add-runtime");
        if !named {
            args.push(format!("--add-runtime={INNER_RUNTIME}={}", crun.display()));
        }
        args.push(format!("--default-runtime={INNER_RUNTIME}"));
    }
}

/// `dindbox userns-dockerd DOCKERD ARGS...`, rootlesskit's child: execs dockerd
/// without rootlesskit's variables, so dockerd runs as root of the nested
/// namespace with the cgroupfs driver (with `ROOTLESSKIT_STATE_DIR` set it
/// insists on rootless mode: moby cmd/dockerd/daemon.go "rootless mode needs to
/// be enabled for running with RootlessKit"). Returns only on failure.
pub fn exec_dockerd_as_root(command: &[std::ffi::OsString]) -> io::Error {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "no dockerd to run");
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROOTLESSKIT_") {
            cmd.env_remove(name);
        }
    }
    cmd.exec()
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

    fn view(v2: bool, read_only: bool, uids: [u32; 3]) -> CgroupView {
        let names = ["/sys/fs/cgroup", "cgroup.procs", "cgroup.subtree_control"];
        CgroupView {
            v2,
            read_only,
            owners: names.iter().map(PathBuf::from).zip(uids).collect(),
        }
    }

    #[test]
    fn a_delegated_v2_cgroup_with_crun_gets_cgroups() {
        let crun = Some(PathBuf::from("/usr/bin/crun"));
        assert_eq!(
            cgroup_delegation(&view(true, false, [0, 0, 0]), crun),
            Ok(PathBuf::from("/usr/bin/crun"))
        );
    }

    #[test]
    fn v1_read_only_foreign_owner_or_no_crun_say_why_not() {
        let crun = || Some(PathBuf::from("/usr/bin/crun"));
        let why = cgroup_delegation(&view(false, false, [0, 0, 0]), crun()).unwrap_err();
        assert_eq!(why, NotDelegated::CgroupV1);
        let why = cgroup_delegation(&view(true, true, [0, 0, 0]), crun()).unwrap_err();
        assert_eq!(why, NotDelegated::ReadOnly);
        // runc as the outer runtime: the cgroup stays the host's root's.
        let why = cgroup_delegation(&view(true, false, [65534, 65534, 0]), crun())
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("/sys/fs/cgroup (uid 65534), cgroup.procs (uid 65534) are not"),
            "{why}"
        );
        let why = cgroup_delegation(&view(true, false, [0, 0, u32::MAX]), crun())
            .unwrap_err()
            .to_string();
        assert!(why.contains("cgroup.subtree_control (missing)"), "{why}");
        let why = cgroup_delegation(&view(true, false, [0, 0, 0]), None).unwrap_err();
        assert!(
            why.to_string().contains("crun is not in the image"),
            "{why}"
        );
    }

    #[test]
    fn view_cgroup_reads_a_tree_and_its_owners() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        let seen = view_cgroup(dir.path());
        assert!(seen.v2 && !seen.read_only, "{seen:?}");
        let uids: Vec<u32> = seen.owners.iter().map(|(_, uid)| *uid).collect();
        assert_eq!(uids, [me, me, u32::MAX]);
        assert!(!view_cgroup(&dir.path().join("none")).v2);
    }

    #[test]
    fn dockerd_as_root_gets_its_state_under_the_runtime_dir_and_crun() {
        let mut args = vec!["--host=unix:///s".to_string()];
        dockerd_as_root_args(&mut args, Path::new("/usr/bin/crun"));
        assert_eq!(
            args,
            [
                "--host=unix:///s",
                "--exec-root=/run/dindbox/xdg/docker",
                "--pidfile=/run/dindbox/xdg/docker.pid",
                "--add-runtime=crun=/usr/bin/crun",
                "--default-runtime=crun",
            ]
        );
        // The user's own choices stand.
        let mut args: Vec<String> = [
            "--exec-root",
            "/e",
            "--pidfile=/p",
            "--default-runtime=runc",
        ]
        .map(String::from)
        .into();
        let before = args.clone();
        dockerd_as_root_args(&mut args, Path::new("/usr/bin/crun"));
        assert_eq!(args, before);
        let mut args: Vec<String> = ["--add-runtime", "crun=/opt/crun"].map(String::from).into();
        dockerd_as_root_args(&mut args, Path::new("/usr/bin/crun"));
        assert_eq!(
            &args[2..],
            [
                "--exec-root=/run/dindbox/xdg/docker",
                "--pidfile=/run/dindbox/xdg/docker.pid",
                "--default-runtime=crun"
            ]
        );
    }

    #[test]
    fn the_delegated_launcher_ends_with_the_hidden_child() {
        let launcher = launcher_as_root(Path::new("/usr/local/bin/dindbox"));
        assert_eq!(launcher[0], "rootlesskit");
        assert_eq!(
            &launcher[launcher.len() - 2..],
            ["/usr/local/bin/dindbox", "userns-dockerd"]
        );
    }
}
