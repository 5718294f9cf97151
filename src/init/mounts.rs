//! The mounts a dind box needs before dockerd starts, and cleanup of what an
//! earlier run of the same container left behind (moby `hack/dind`, the
//! docker:dind entrypoint's stale pid cleanup, docker-library/docker#104).

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::mountinfo::unescape;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("failed to read {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("failed to mount {fstype} at {path}: {err} (is the container --privileged?)")]
    Mount {
        fstype: &'static str,
        path: PathBuf,
        err: nix::Error,
    },
    #[error("failed to make {path} rshared: {err}")]
    Propagation { path: PathBuf, err: nix::Error },
    #[error("failed to remove stale {path}: {err}")]
    Remove { path: PathBuf, err: io::Error },
}

/// One line of `/proc/self/mountinfo` (proc(5)), the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory of the file system mounted here (field 4): `/` for a whole
    /// cgroup hierarchy, `/docker/ID` for the bind mount of one cgroup.
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (field 6), e.g. `rw,nosuid`.
    pub options: String,
    pub fstype: String,
}

impl MountEntry {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses a mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            Some(MountEntry {
                root: unescape(left.get(3)?),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                options: left.get(5)?.to_string(),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// Mount points strictly below `dir`.
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p != dir && p.starts_with(dir))
        .collect()
}

/// The mount whose mount point is exactly `path` (the top one if stacked).
pub fn mount_at(mountinfo: &str, path: &Path) -> Option<MountEntry> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path)
}

pub fn read_mountinfo() -> Result<String, MountError> {
    let path = "/proc/self/mountinfo";
    std::fs::read_to_string(path).map_err(|err| MountError::Read {
        path: path.into(),
        err,
    })
}

/// securityfs (best effort: AppArmor detection), tmpfs on /tmp and /run when
/// they are not mount points, and `/` made rshared (mount propagation as on a
/// systemd host, which dockerd's `--mount type=bind,bind-propagation` needs).
/// Returns warnings for the best-effort steps that failed.
pub fn prepare() -> Result<Vec<String>, MountError> {
    let mut warnings = Vec::new();
    let mountinfo = read_mountinfo()?;
    let security = Path::new("/sys/kernel/security");
    if security.is_dir() && mount_at(&mountinfo, security).is_none() {
        if let Err(err) = mount("securityfs", security, MsFlags::empty(), None) {
            warnings.push(format!(
                "{err}; AppArmor detection and --privileged mode might break"
            ));
        }
    }
    for dir in ["/tmp", "/run"] {
        let dir = Path::new(dir);
        if mount_at(&mountinfo, dir).is_some() {
            continue;
        }
        // A tmpfs would hide what is mounted below (Kubernetes mounts the
        // service account token at /var/run/secrets/...): leave such a dir be.
        let below = mounts_below(&mountinfo, dir);
        if !below.is_empty() {
            warnings.push(format!(
                "not mounting a tmpfs on {}: it would hide {below:?}",
                dir.display()
            ));
            continue;
        }
        {
            // Default tmpfs options: exec and dev, so that mknod works (moby 8d9e3502).
            let data = if dir == Path::new("/tmp") {
                "mode=1777"
            } else {
                "mode=0755"
            };
            mount("tmpfs", dir, MsFlags::empty(), Some(data))?;
        }
    }
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|err| MountError::Propagation {
        path: "/".into(),
        err,
    })?;
    Ok(warnings)
}

fn mount(
    fstype: &'static str,
    path: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    std::fs::create_dir_all(path).ok();
    nix::mount::mount(Some(fstype), path, Some(fstype), flags, data).map_err(|err| {
        MountError::Mount {
            fstype,
            path: path.into(),
            err,
        }
    })
}

/// A pid file dockerd or containerd refuses to start over: `docker*.pid`,
/// `containerd*.pid` (case-insensitive, as docker:dind's `find -iname`).
pub fn is_stale_pid_file(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.ends_with(".pid") && (name.starts_with("docker") || name.starts_with("containerd"))
}

/// The directories searched for stale pid files.
pub const PID_DIRS: [&str; 6] = [
    "/run",
    "/var/run",
    "/run/docker",
    "/run/containerd",
    "/var/run/docker",
    "/var/run/containerd",
];

/// containerd sockets dockerd (or a standalone containerd) leaves behind.
pub const CONTAINERD_SOCKETS: [&str; 4] = [
    "/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock.ttrpc",
    "/run/docker/containerd/containerd.sock",
    "/run/docker/containerd/containerd.sock.ttrpc",
];

/// At boot: every pid file and socket an earlier run of the box left,
/// containerd's and `own` (dockerd's socket, the proxy's, the ready file,
/// which must not claim readiness for this boot).
pub fn remove_stale_at_boot(own: &[&Path]) -> Result<Vec<PathBuf>, MountError> {
    let dirs: Vec<&Path> = PID_DIRS.iter().map(Path::new).collect();
    let mut sockets: Vec<&Path> = CONTAINERD_SOCKETS.iter().map(Path::new).collect();
    sockets.extend(own);
    remove_stale(&dirs, &sockets)
}

/// Deletes stale pid files in `pid_dirs` and the given socket paths, so that a
/// restarted container comes back. Returns what was removed.
pub fn remove_stale(pid_dirs: &[&Path], sockets: &[&Path]) -> Result<Vec<PathBuf>, MountError> {
    let mut removed = Vec::new();
    for dir in pid_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && entry.file_name().to_str().is_some_and(is_stale_pid_file) {
                remove(&entry.path(), &mut removed)?;
            }
        }
    }
    for socket in sockets {
        remove(socket, &mut removed)?;
    }
    Ok(removed)
}

fn remove(path: &Path, removed: &mut Vec<PathBuf>) -> Result<(), MountError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.into());
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(MountError::Remove {
            path: path.into(),
            err,
        }),
    }
}

/// Is `path` (or, if it does not exist yet, its nearest existing parent) on
/// overlayfs? dockerd then falls back to the slow vfs driver (moby/moby#42171).
pub fn on_overlayfs(path: &Path) -> bool {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    nix::sys::statfs::statfs(existing)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a
23 22 0:22 / /proc rw,nosuid - proc proc rw
24 22 0:23 / /sys ro,nosuid - sysfs sysfs ro
25 24 0:24 / /sys/fs/cgroup ro - cgroup2 cgroup rw
26 22 0:25 / /var/lib/docker rw - ext4 /dev/vda rw
27 22 0:26 / /mnt/with\\040space rw - tmpfs tmpfs rw
28 24 0:24 / /sys/fs/cgroup rw - tmpfs tmpfs rw
";

    #[test]
    fn mount_at_finds_exact_mount_points_and_the_top_of_a_stack() {
        assert_eq!(
            mount_at(MOUNTINFO, Path::new("/proc")).unwrap().fstype,
            "proc"
        );
        let cgroup = mount_at(MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(cgroup.fstype, "tmpfs");
        assert!(!cgroup.read_only());
        assert!(mount_at(MOUNTINFO, Path::new("/tmp")).is_none());
        assert!(mount_at(MOUNTINFO, Path::new("/mnt/with space")).is_some());
    }

    #[test]
    fn mounts_below_lists_only_strict_submounts() {
        assert_eq!(
            mounts_below(MOUNTINFO, Path::new("/sys")),
            [Path::new("/sys/fs/cgroup"), Path::new("/sys/fs/cgroup")]
        );
        assert!(mounts_below(MOUNTINFO, Path::new("/var/lib/docker")).is_empty());
        assert!(mounts_below(MOUNTINFO, Path::new("/mnt/with")).is_empty());
    }

    #[test]
    fn read_only_is_the_per_mount_option() {
        assert!(mount_at(MOUNTINFO, Path::new("/sys")).unwrap().read_only());
    }

    #[test]
    fn stale_pid_files_are_docker_and_containerd_pids_only() {
        for name in [
            "docker.pid",
            "Docker.PID",
            "docker-containerd.pid",
            "containerd.pid",
            "dockerd.pid",
        ] {
            assert!(is_stale_pid_file(name), "{name}");
        }
        for name in ["docker.sock", "sshd.pid", "docker.pid.bak", "mydocker.pid"] {
            assert!(!is_stale_pid_file(name), "{name}");
        }
    }

    #[test]
    fn remove_stale_deletes_pid_files_and_sockets_only() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("containerd");
        std::fs::create_dir(&sub).unwrap();
        for f in ["docker.pid", "keep.pid", "docker.sock"] {
            std::fs::write(dir.path().join(f), "1").unwrap();
        }
        std::fs::write(sub.join("containerd.pid"), "2").unwrap();
        let socket = dir.path().join("docker.sock");
        let missing = dir.path().join("missing.sock");
        let removed = remove_stale(&[dir.path(), &sub], &[&socket, &missing]).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert!(dir.path().join("keep.pid").exists());
        assert!(!dir.path().join("docker.pid").exists());
        assert!(!sub.join("containerd.pid").exists());
        assert!(!socket.exists());
    }
}
