//! cgroup v1: make sure every hierarchy PID 1 of the box belongs to is mounted
//! under the root, the way jpetazzo's `wrapdocker` did: a tmpfs on the root if
//! it is missing, not a mount point or read-only, then one `cgroup` mount per
//! line of `/proc/1/cgroup` with exactly the host's co-mounted controller set,
//! plus the usual symlinks (`cpu -> cpu,cpuacct`, `cpuacct,cpu -> cpu,cpuacct`).
//! Docker mounts all of this itself for `--privileged` containers, so usually
//! there is nothing to do.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{CgroupError, Cgroups};
use crate::init::mounts;

/// One v1 hierarchy from `/proc/1/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Mount options: the controller list, or `none,name=NAME` for named hierarchies.
    pub options: String,
    /// Directory under the root.
    pub dir: String,
    /// Symlinks under the root pointing at `dir`.
    pub links: Vec<String>,
}

/// The v1 hierarchies listed in a `/proc/<pid>/cgroup` text (`ID:CONTROLLERS:PATH`
/// lines). The unified `0::PATH` line is not one.
pub fn hierarchies(proc_cgroup: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(subsys), Some(_path)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if subsys.is_empty() {
            continue;
        }
        if let Some(name) = subsys.strip_prefix("name=") {
            out.push(Hierarchy {
                options: format!("none,{subsys}"),
                dir: name.into(),
                links: vec![],
            });
            continue;
        }
        let controllers: Vec<&str> = subsys.split(',').collect();
        let mut links = Vec::new();
        if controllers.len() > 1 {
            links.extend(controllers.iter().map(|c| c.to_string()));
        }
        if subsys == "cpuacct,cpu" {
            links.push("cpu,cpuacct".into());
        }
        out.push(Hierarchy {
            options: subsys.into(),
            dir: subsys.into(),
            links,
        });
    }
    out
}

/// One thing to do to the v1 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    MountTmpfs(PathBuf),
    MountHierarchy { dir: PathBuf, options: String },
    Symlink { link: PathBuf, target: String },
}

/// What to do, given the hierarchies PID 1 belongs to and the mount table.
pub fn plan(root: &Path, proc1_cgroup: &str, mountinfo: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let root_rw = mounts::mount_at(mountinfo, root).map(|m| !m.read_only());
    // Missing, not a mount point, or read-only: put a writable tmpfs there.
    let fresh = root_rw != Some(true);
    if fresh {
        steps.push(Step::MountTmpfs(root.into()));
    }
    for h in hierarchies(proc1_cgroup) {
        let dir = root.join(&h.dir);
        if fresh || mounts::mount_at(mountinfo, &dir).is_none() {
            steps.push(Step::MountHierarchy {
                dir,
                options: h.options.clone(),
            });
        }
        for link in &h.links {
            let link = root.join(link);
            if fresh || std::fs::symlink_metadata(&link).is_err() {
                steps.push(Step::Symlink {
                    link,
                    target: h.dir.clone(),
                });
            }
        }
    }
    steps
}

pub struct V1 {
    proc1_cgroup: String,
    mountinfo: String,
}

impl V1 {
    pub fn new(proc1_cgroup: String, mountinfo: String) -> Self {
        V1 {
            proc1_cgroup,
            mountinfo,
        }
    }
}

impl Cgroups for V1 {
    fn setup(&self, root: &Path) -> Result<String, CgroupError> {
        let steps = plan(root, &self.proc1_cgroup, &self.mountinfo);
        let mounted = steps
            .iter()
            .filter(|s| matches!(s, Step::MountHierarchy { .. }))
            .count();
        for step in &steps {
            run(step)?;
        }
        let count = hierarchies(&self.proc1_cgroup).len();
        Ok(if steps.is_empty() {
            format!(
                "cgroup v1: all {count} hierarchies already mounted at {}",
                root.display()
            )
        } else {
            format!(
                "cgroup v1: mounted {mounted} of {count} hierarchies at {}",
                root.display()
            )
        })
    }
}

fn run(step: &Step) -> Result<(), CgroupError> {
    let mkdir = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|err| CgroupError::CreateDir {
            path: path.into(),
            err,
        })
    };
    match step {
        Step::MountTmpfs(root) => {
            mkdir(root)?;
            nix::mount::mount(
                Some("cgroup"),
                root,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("mode=0755"),
            )
            .map_err(|err| CgroupError::Mount {
                fstype: "tmpfs".into(),
                path: root.clone(),
                err,
            })
        }
        Step::MountHierarchy { dir, options } => {
            mkdir(dir)?;
            nix::mount::mount(
                Some("cgroup"),
                dir,
                Some("cgroup"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|err| CgroupError::Mount {
                fstype: format!("cgroup ({options})"),
                path: dir.clone(),
                err,
            })
        }
        Step::Symlink { link, target } => {
            std::os::unix::fs::symlink(target, link).map_err(|err| CgroupError::Symlink {
                link: link.clone(),
                target: target.clone(),
                err,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{hierarchies, plan, Hierarchy, Step};

    const PROC1: &str = "12:name=systemd:/\n\
                         11:cpu,cpuacct:/\n\
                         10:net_cls,net_prio:/\n\
                         9:memory:/\n\
                         8:cpuacct,cpu:/\n\
                         0::/\n";

    fn h(options: &str, dir: &str, links: &[&str]) -> Hierarchy {
        Hierarchy {
            options: options.into(),
            dir: dir.into(),
            links: links.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn hierarchies_cover_comounted_named_and_skip_the_unified_line() {
        assert_eq!(
            hierarchies(PROC1),
            [
                h("none,name=systemd", "systemd", &[]),
                h("cpu,cpuacct", "cpu,cpuacct", &["cpu", "cpuacct"]),
                h(
                    "net_cls,net_prio",
                    "net_cls,net_prio",
                    &["net_cls", "net_prio"]
                ),
                h("memory", "memory", &[]),
                h(
                    "cpuacct,cpu",
                    "cpuacct,cpu",
                    &["cpuacct", "cpu", "cpu,cpuacct"]
                ),
            ]
        );
    }

    #[test]
    fn pure_v2_has_no_v1_hierarchies() {
        assert!(hierarchies("0::/\n").is_empty());
        assert!(hierarchies("").is_empty());
    }

    #[test]
    fn plan_mounts_a_tmpfs_and_every_hierarchy_when_the_root_is_read_only() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                         31 30 0:27 / /sys/fs/cgroup/memory ro - cgroup cgroup ro,memory\n";
        let root = Path::new("/sys/fs/cgroup");
        let steps = plan(root, "9:memory:/\n1:name=systemd:/\n0::/\n", mountinfo);
        assert_eq!(
            steps,
            [
                Step::MountTmpfs(root.into()),
                Step::MountHierarchy {
                    dir: root.join("memory"),
                    options: "memory".into()
                },
                Step::MountHierarchy {
                    dir: root.join("systemd"),
                    options: "none,name=systemd".into()
                },
            ]
        );
    }

    #[test]
    fn plan_is_empty_when_everything_is_mounted_rw() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755\n\
                         31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            plan(Path::new("/sys/fs/cgroup"), "9:memory:/\n0::/\n", mountinfo),
            []
        );
    }

    #[test]
    fn plan_mounts_only_missing_hierarchies_under_a_rw_root() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                         31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            plan(root, "9:memory:/\n3:pids:/\n", mountinfo),
            [Step::MountHierarchy {
                dir: root.join("pids"),
                options: "pids".into()
            }]
        );
    }
}
