//! cgroup v1: make sure every hierarchy PID 1 of the box belongs to is mounted
//! under the root, the way jpetazzo's `wrapdocker` did: a tmpfs on the root if
//! it is missing, not a mount point or read-only, then one `cgroup` mount per
//! line of `/proc/1/cgroup` with exactly the host's co-mounted controller set,
//! plus the usual symlinks (`cpu -> cpu,cpuacct`, `cpuacct,cpu -> cpu,cpuacct`).
//! Docker mounts all of this itself for `--privileged` containers, so usually
//! there is nothing to do.
//!
//! The budget's parent is `<init's own cgroup>/dindbox` in every hierarchy, with
//! the limits in the memory (`memory.limit_in_bytes`, and
//! `memory.memsw.limit_in_bytes` where swap is accounted) and pids hierarchies.
//! "Own cgroup" matters here: without a cgroup namespace the box sees the host's
//! hierarchy, and `/dindbox` at its root would escape the box's own limits.
//! Init's own cgroup is read from `/proc/self/cgroup` and taken relative to
//! what is mounted (Docker bind-mounts the container's own cgroup directory as
//! the hierarchy, so there it is `/`), because that is how dockerd's cgroupfs
//! driver reads an absolute `--cgroup-parent`: below the mount point.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{
    cgroup_path, components, create_dir_at, read_at, write_at, Budget, CgroupError, CgroupFs,
    Cgroups, Parent, Placement, RealFs, PARENT_NAME,
};
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

/// The `(controllers, path)` of each v1 line of a `/proc/<pid>/cgroup` text
/// (`ID:CONTROLLERS:PATH`); the unified `0::PATH` line is not one.
fn v1_lines(proc_cgroup: &str) -> impl Iterator<Item = (&str, &str)> {
    proc_cgroup.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(subsys), Some(path)) = (fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        (!subsys.is_empty()).then_some((subsys, path))
    })
}

/// The directory of a hierarchy under the root: the controller list, or the
/// name of a named hierarchy (`name=systemd` is `systemd`).
fn dir_name(subsys: &str) -> &str {
    subsys.strip_prefix("name=").unwrap_or(subsys)
}

/// The v1 hierarchies listed in a `/proc/<pid>/cgroup` text (`ID:CONTROLLERS:PATH`
/// lines). The unified `0::PATH` line is not one.
pub fn hierarchies(proc_cgroup: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for (subsys, _path) in v1_lines(proc_cgroup) {
        if subsys.starts_with("name=") {
            out.push(Hierarchy {
                options: format!("none,{subsys}"),
                dir: dir_name(subsys).into(),
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

/// Init's cgroup in one mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The controllers (`memory`, `cpu,cpuacct`) or `name=NAME`.
    pub subsys: String,
    /// Where the hierarchy is mounted (`<root>/<dir>`).
    pub mount: PathBuf,
    /// Init's cgroup relative to that mount, as dockerd's cgroupfs driver reads
    /// paths: `/` when the mount is the bind of init's own cgroup.
    pub own: String,
}

impl Membership {
    pub fn has(&self, controller: &str) -> bool {
        self.subsys.split(',').any(|c| c == controller)
    }
}

/// Init's cgroup in each v1 hierarchy of `self_cgroup` (`/proc/self/cgroup`)
/// that is mounted under `root`, relative to the mount's root (`mountinfo`).
pub fn memberships(
    root: &Path,
    self_cgroup: &str,
    mountinfo: &str,
) -> Result<Vec<Membership>, CgroupError> {
    let mut out = Vec::new();
    for (subsys, path) in v1_lines(self_cgroup) {
        let dir = root.join(dir_name(subsys));
        let Some(mount) = mounts::mount_at(mountinfo, &dir) else {
            continue;
        };
        let own = components(path);
        let mount_root = components(&mount.root);
        let Some(rel) = own.strip_prefix(mount_root.as_slice()) else {
            return Err(CgroupError::NoOwnCgroup {
                why: format!(
                    "init's cgroup {path} in the {subsys} hierarchy is not inside what is \
                     mounted at {} (the cgroup {})",
                    dir.display(),
                    mount.root
                ),
            });
        };
        out.push(Membership {
            subsys: subsys.into(),
            mount: dir,
            own: cgroup_path(rel),
        });
    }
    Ok(out)
}

/// Why an explicit parent is not below init's own cgroup in every hierarchy.
fn not_below_own(path: &str, members: &[Membership]) -> Option<String> {
    if !path.starts_with('/') {
        return Some("it is not an absolute cgroup path".into());
    }
    let parts = components(path);
    members.iter().find_map(|m| {
        let own = components(&m.own);
        (parts.len() <= own.len() || !parts.starts_with(&own)).then(|| {
            format!(
                "it is not below init's own cgroup {} in the {} hierarchy",
                m.own, m.subsys
            )
        })
    })
}

/// `<deepest own cgroup>/dindbox`, when every hierarchy's own cgroup is on
/// that path (usually they are all `/`).
fn default_parent(members: &[Membership]) -> Result<String, CgroupError> {
    let deepest = members
        .iter()
        .map(|m| components(&m.own))
        .max_by_key(Vec::len)
        .unwrap_or_default();
    if let Some(off) = members
        .iter()
        .find(|m| !deepest.starts_with(&components(&m.own)))
    {
        return Err(CgroupError::NoOwnCgroup {
            why: format!(
                "init is in {} in the {} hierarchy but in {} in the {} hierarchy, and no one \
                 parent is below both",
                cgroup_path(&deepest),
                members
                    .iter()
                    .find(|m| components(&m.own) == deepest)
                    .map_or("", |m| m.subsys.as_str()),
                off.own,
                off.subsys
            ),
        });
    }
    let mut parts = deepest;
    parts.push(PARENT_NAME);
    Ok(cgroup_path(&parts))
}

/// Creates the budget's parent in every mounted hierarchy init belongs to and
/// writes the limits. The directory is made in all of them (not only memory
/// and pids) so dockerd's cgroupfs driver finds one parent everywhere; cpuset
/// gets its `cpus`/`mems` copied down, since a new cpuset cgroup starts empty
/// and takes no tasks until both are set (runc copies them too, but only for
/// directories it creates itself).
pub fn create_parent(
    fs: &impl CgroupFs,
    root: &Path,
    self_cgroup: &str,
    mountinfo: &str,
    budget: &Budget,
) -> Result<Parent, CgroupError> {
    let members = memberships(root, self_cgroup, mountinfo)?;
    for (wanted, controller) in [
        (budget.memory.is_some(), "memory"),
        (budget.pids.is_some(), "pids"),
    ] {
        if wanted && !members.iter().any(|m| m.has(controller)) {
            return Err(CgroupError::NoController {
                what: controller,
                why: format!(
                    "init is in no {controller} cgroup hierarchy mounted under {}",
                    root.display()
                ),
            });
        }
    }
    let path = match &budget.parent {
        Some(explicit) => {
            if let Some(why) = not_below_own(explicit, &members) {
                return Ok(Parent {
                    path: explicit.clone(),
                    placement: Placement::NotOurs(why),
                });
            }
            explicit.clone()
        }
        None => default_parent(&members)?,
    };
    let parts = components(&path);
    let mut dirs = Vec::new();
    for m in &members {
        let dir = m.mount.join(parts.join("/"));
        create_dir_at(fs, &dir)?;
        if m.has("cpuset") {
            for depth in components(&m.own).len() + 1..=parts.len() {
                let parent = m.mount.join(parts[..depth - 1].join("/"));
                let child = m.mount.join(parts[..depth].join("/"));
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if read_at(fs, &child.join(file))?.trim().is_empty() {
                        let value = read_at(fs, &parent.join(file))?;
                        write_at(fs, &child.join(file), value.trim())?;
                    }
                }
            }
        }
        if let (true, Some(bytes)) = (m.has("memory"), budget.memory) {
            limit_memory(fs, &dir, bytes)?;
        }
        if let (true, Some(pids)) = (m.has("pids"), budget.pids) {
            write_at(fs, &dir.join("pids.max"), &pids.to_string())?;
        }
        dirs.push(dir);
    }
    Ok(Parent {
        path,
        placement: Placement::Limited(dirs),
    })
}

/// `memory.limit_in_bytes` and, where swap is accounted, the same value in
/// `memory.memsw.limit_in_bytes`: swap does not extend the budget.
fn limit_memory(fs: &impl CgroupFs, dir: &Path, bytes: i64) -> Result<(), CgroupError> {
    // Children count against a parent only with use_hierarchy, which old
    // kernels left at 0 in the root; it can be set while there are no children.
    let hierarchy = dir.join("memory.use_hierarchy");
    if fs.read(&hierarchy).is_ok_and(|v| v.trim() == "0") {
        write_at(fs, &hierarchy, "1")?;
    }
    let value = bytes.to_string();
    let limit = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let Ok(current_memsw) = fs.read(&memsw) else {
        return write_at(fs, &limit, &value);
    };
    // The kernel keeps memsw >= limit at every step: raising (a restarted box
    // with a larger budget) goes memsw first, lowering limit first.
    if current_memsw.trim().parse::<i64>().is_ok_and(|c| c < bytes) {
        write_at(fs, &memsw, &value)?;
        write_at(fs, &limit, &value)
    } else {
        write_at(fs, &limit, &value)?;
        write_at(fs, &memsw, &value)
    }
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
    /// `/proc/self/cgroup`: where init itself is (the same as PID 1's when
    /// init is PID 1).
    self_cgroup: String,
    mountinfo: String,
}

impl V1 {
    pub fn new(proc1_cgroup: String, self_cgroup: String, mountinfo: String) -> Self {
        V1 {
            proc1_cgroup,
            self_cgroup,
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

    fn budget(&self, root: &Path, budget: &Budget) -> Result<Parent, CgroupError> {
        // Read again: setup may have just mounted the hierarchies.
        let mountinfo = super::read("/proc/self/mountinfo")?;
        create_parent(&RealFs, root, &self.self_cgroup, &mountinfo, budget)
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
