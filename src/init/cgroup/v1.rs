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

/// The controllers of the v1 hierarchies in a `/proc/PID/cgroup` (named
/// hierarchies have none).
fn controllers(proc_cgroup: &str) -> Vec<String> {
    v1_lines(proc_cgroup)
        .filter(|(subsys, _)| !subsys.starts_with("name="))
        .flat_map(|(subsys, _)| subsys.split(','))
        .map(str::to_string)
        .collect()
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

    /// The controllers of PID 1's hierarchies (setup mounted every one).
    fn controllers(&self, _root: &Path) -> Result<Vec<String>, CgroupError> {
        Ok(controllers(&self.proc1_cgroup))
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

    use super::{
        controllers, create_parent, hierarchies, memberships, plan, Hierarchy, Membership, Step,
    };
    use crate::init::cgroup::test_util::FakeCgroupFs;
    use crate::init::cgroup::{Budget, CgroupError, CgroupFs, Parent, Placement};

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
    fn controllers_come_from_the_hierarchies_not_the_named_ones() {
        assert_eq!(
            controllers(PROC1),
            ["cpu", "cpuacct", "net_cls", "net_prio", "memory", "cpuacct", "cpu"]
        );
        let warning = crate::init::cgroup::missing_controllers_warning(&controllers(PROC1))
            .expect("pids and cpuset are missing");
        assert!(warning.contains("pids, cpuset"), "{warning}");
        let full = "3:cpuset:/\n2:pids:/\n1:memory:/\n4:cpu,cpuacct:/\n";
        assert_eq!(
            crate::init::cgroup::missing_controllers_warning(&controllers(full)),
            None
        );
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

    /// A v1 tree in a temp dir: per hierarchy, the directory with the files
    /// the kernel shows at the top of it, and the mountinfo that mounts it
    /// (`mount_root` is `/docker/abc` for Docker's bind of the container's cgroup).
    struct Tree {
        fake: FakeCgroupFs,
        mountinfo: String,
    }

    const UNLIMITED: &str = "9223372036854771712\n";

    fn tree(hierarchies: &[(&str, &str)], memsw: bool) -> Tree {
        let fake = FakeCgroupFs::empty();
        let mut mountinfo = String::new();
        for (i, (dir, mount_root)) in hierarchies.iter().enumerate() {
            fake.set(&format!("{dir}/cgroup.procs"), "1\n");
            let controllers: Vec<&str> = dir.split(',').collect();
            if controllers.contains(&"cpuset") {
                fake.set(&format!("{dir}/cpuset.cpus"), "0-3\n");
                fake.set(&format!("{dir}/cpuset.mems"), "0\n");
            }
            if controllers.contains(&"memory") {
                fake.set(&format!("{dir}/memory.limit_in_bytes"), UNLIMITED);
                fake.set(&format!("{dir}/memory.use_hierarchy"), "1\n");
                if memsw {
                    fake.set(&format!("{dir}/memory.memsw.limit_in_bytes"), UNLIMITED);
                }
            }
            if controllers.contains(&"pids") {
                fake.set(&format!("{dir}/pids.max"), "max\n");
            }
            let options = if *dir == "systemd" {
                "name=systemd".to_string()
            } else {
                dir.to_string()
            };
            mountinfo.push_str(&format!(
                "{} 30 0:{} {mount_root} {} rw,nosuid - cgroup cgroup rw,{options}\n",
                40 + i,
                40 + i,
                fake.root().join(dir).display()
            ));
        }
        Tree { fake, mountinfo }
    }

    impl Tree {
        fn root(&self) -> &Path {
            self.fake.root()
        }

        fn budget(&self, self_cgroup: &str, budget: &Budget) -> Result<Parent, CgroupError> {
            create_parent(
                &self.fake,
                self.root(),
                self_cgroup,
                &self.mountinfo,
                budget,
            )
        }

        fn read(&self, rel: &str) -> String {
            self.fake.read_rel(rel).trim().to_string()
        }

        fn dirs(&self, rels: &[&str]) -> Placement {
            Placement::Limited(rels.iter().map(|r| self.root().join(r)).collect())
        }
    }

    fn budget(memory: Option<i64>, pids: Option<i64>) -> Budget {
        Budget {
            parent: None,
            memory,
            pids,
        }
    }

    const ALL: &[&str] = &["systemd", "pids", "memory", "cpuset", "cpu,cpuacct"];

    /// `/proc/self/cgroup` with init in `path` in every hierarchy of [`ALL`].
    fn in_everywhere(path: &str) -> String {
        let mut text = format!("9:name=systemd:{path}\n");
        for (i, h) in ALL[1..].iter().enumerate() {
            text.push_str(&format!("{}:{h}:{path}\n", 8 - i));
        }
        text + "0::/\n"
    }

    #[test]
    fn memberships_are_relative_to_the_mount_and_skip_unmounted_and_unified_lines() {
        let t = tree(
            &[
                ("systemd", "/docker/abc"),
                ("pids", "/docker/abc"),
                ("memory", "/"),
                ("cpu,cpuacct", "/docker/abc"),
            ],
            false,
        );
        let self_cgroup = "9:name=systemd:/docker/abc\n\
                           8:pids:/docker/abc\n\
                           6:freezer:/docker/abc\n\
                           4:memory:/docker/abc\n\
                           3:cpu,cpuacct:/docker/abc/\n\
                           0::/\n";
        let m = |subsys: &str, dir: &str, own: &str| Membership {
            subsys: subsys.into(),
            mount: t.root().join(dir),
            own: own.into(),
        };
        assert_eq!(
            memberships(t.root(), self_cgroup, &t.mountinfo).unwrap(),
            [
                m("name=systemd", "systemd", "/"),
                m("pids", "pids", "/"),
                m("memory", "memory", "/docker/abc"),
                m("cpu,cpuacct", "cpu,cpuacct", "/"),
            ]
        );
        assert!(memberships(t.root(), "0::/\n", &t.mountinfo)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn docker_without_a_cgroup_namespace_gets_dindbox_at_the_top_of_each_bound_hierarchy() {
        let mounts: Vec<(&str, &str)> = ALL.iter().map(|h| (*h, "/docker/abc")).collect();
        let t = tree(&mounts, true);
        let parent = t
            .budget(
                &in_everywhere("/docker/abc"),
                &budget(Some(64 << 20), Some(100)),
            )
            .unwrap();

        assert_eq!(parent.path, "/dindbox");
        assert_eq!(
            parent.placement,
            t.dirs(&[
                "systemd/dindbox",
                "pids/dindbox",
                "memory/dindbox",
                "cpuset/dindbox",
                "cpu,cpuacct/dindbox"
            ])
        );
        assert_eq!(t.read("memory/dindbox/memory.limit_in_bytes"), "67108864");
        assert_eq!(
            t.read("memory/dindbox/memory.memsw.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(t.read("pids/dindbox/pids.max"), "100");
        assert_eq!(t.read("cpuset/dindbox/cpuset.cpus"), "0-3");
        assert_eq!(t.read("cpuset/dindbox/cpuset.mems"), "0");
        // Limits only where they belong; nothing above the parent touched.
        let written: Vec<String> = t.fake.writes().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            written,
            [
                "pids/dindbox/pids.max",
                "memory/dindbox/memory.limit_in_bytes",
                "memory/dindbox/memory.memsw.limit_in_bytes",
                "cpuset/dindbox/cpuset.cpus",
                "cpuset/dindbox/cpuset.mems",
            ]
        );
        assert_eq!(t.read("memory/memory.limit_in_bytes"), UNLIMITED.trim());
    }

    /// This machine's layout: whole hierarchies mounted, init moved in the
    /// memory hierarchy only.
    #[test]
    fn parent_goes_below_the_deepest_own_cgroup_and_cpuset_is_filled_on_the_way() {
        let mounts: Vec<(&str, &str)> = ALL.iter().map(|h| (*h, "/")).collect();
        let t = tree(&mounts, false);
        t.fake.create_dir(&t.root().join("memory/jobs/7")).unwrap();
        let self_cgroup = in_everywhere("/").replace("memory:/", "memory:/jobs/7");
        let parent = t
            .budget(&self_cgroup, &budget(Some(1 << 30), None))
            .unwrap();

        assert_eq!(parent.path, "/jobs/7/dindbox");
        assert_eq!(
            t.read("memory/jobs/7/dindbox/memory.limit_in_bytes"),
            "1073741824"
        );
        assert!(!t
            .root()
            .join("memory/jobs/7/dindbox/memory.memsw.limit_in_bytes")
            .exists());
        for level in ["jobs", "jobs/7", "jobs/7/dindbox"] {
            assert_eq!(
                t.read(&format!("cpuset/{level}/cpuset.cpus")),
                "0-3",
                "{level}"
            );
            assert_eq!(
                t.read(&format!("cpuset/{level}/cpuset.mems")),
                "0",
                "{level}"
            );
        }
        assert!(t.root().join("systemd/jobs/7/dindbox").is_dir());
        assert_eq!(t.read("pids/jobs/7/dindbox/pids.max"), "max");
    }

    #[test]
    fn memsw_is_raised_before_the_limit_and_use_hierarchy_is_turned_on() {
        let t = tree(&[("memory", "/")], true);
        // A previous run of the box left a smaller budget; an old kernel left
        // use_hierarchy off.
        t.fake.set("memory/memory.use_hierarchy", "0\n");
        t.fake.create_dir(&t.root().join("memory/dindbox")).unwrap();
        t.fake
            .set("memory/dindbox/memory.limit_in_bytes", "1048576\n");
        t.fake
            .set("memory/dindbox/memory.memsw.limit_in_bytes", "1048576\n");

        t.budget("4:memory:/\n", &budget(Some(2 << 20), None))
            .unwrap();
        let pair = |p: &str, d: &str| (p.to_string(), d.to_string());
        assert_eq!(
            t.fake.writes(),
            [
                pair("memory/dindbox/memory.use_hierarchy", "1"),
                pair("memory/dindbox/memory.memsw.limit_in_bytes", "2097152"),
                pair("memory/dindbox/memory.limit_in_bytes", "2097152"),
            ]
        );
    }

    #[test]
    fn own_cgroups_on_different_branches_are_a_clear_error() {
        let t = tree(&[("memory", "/"), ("pids", "/")], false);
        let err = t
            .budget("8:pids:/b\n4:memory:/a\n", &budget(Some(1 << 20), Some(5)))
            .unwrap_err();
        assert!(matches!(err, CgroupError::NoOwnCgroup { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/a") && msg.contains("/b"), "{msg}");
        assert!(t.fake.writes().is_empty());
    }

    #[test]
    fn own_cgroup_outside_the_mount_is_a_clear_error() {
        let t = tree(&[("memory", "/docker/abc")], false);
        let err = t
            .budget("4:memory:/elsewhere\n", &budget(Some(1 << 20), None))
            .unwrap_err();
        assert!(err.to_string().contains("/elsewhere"), "{err}");
    }

    #[test]
    fn a_memory_budget_needs_a_memory_hierarchy() {
        let t = tree(&[("pids", "/"), ("cpu,cpuacct", "/")], false);
        let err = t
            .budget("8:pids:/\n3:cpu,cpuacct:/\n", &budget(Some(1 << 20), None))
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::NoController { what: "memory", .. }),
            "{err:?}"
        );
        // pids alone is fine there.
        let parent = t
            .budget("8:pids:/\n3:cpu,cpuacct:/\n", &budget(None, Some(9)))
            .unwrap();
        assert_eq!(parent.path, "/dindbox");
        assert_eq!(t.read("pids/dindbox/pids.max"), "9");
    }

    #[test]
    fn explicit_parent_below_own_cgroup_is_limited_and_others_are_left_alone() {
        let t = tree(&[("memory", "/"), ("pids", "/")], false);
        let self_cgroup = "8:pids:/box\n4:memory:/box\n";
        for dir in ["memory/box", "pids/box"] {
            t.fake.create_dir(&t.root().join(dir)).unwrap();
        }
        let explicit = |parent: &str| Budget {
            parent: Some(parent.into()),
            memory: Some(1 << 20),
            pids: None,
        };
        let parent = t.budget(self_cgroup, &explicit("/box/ci/job")).unwrap();
        assert_eq!(parent.path, "/box/ci/job");
        assert_eq!(
            parent.placement,
            t.dirs(&["pids/box/ci/job", "memory/box/ci/job"])
        );
        assert_eq!(t.read("memory/box/ci/job/memory.limit_in_bytes"), "1048576");

        for outside in ["/box", "/other/ci", "/", "tenant.slice"] {
            let before = t.fake.writes().len();
            let parent = t.budget(self_cgroup, &explicit(outside)).unwrap();
            assert_eq!(parent.path, outside);
            assert!(
                matches!(parent.placement, Placement::NotOurs(_)),
                "{outside}: {parent:?}"
            );
            assert_eq!(t.fake.writes().len(), before, "{outside}");
        }
    }
}
