//! cgroup v2: move every process of the root cgroup into `<root>/init`, then
//! enable every available controller in `<root>/cgroup.subtree_control`.
//! With a budget, `<root>/dindbox` next to `<root>/init` then gets `memory.max`
//! and `pids.max`, and its own `subtree_control`, so dockerd's containers
//! below it can be limited too.
//!
//! Why in this order: cgroup v2's "no internal processes" rule. A cgroup that
//! has processes of its own cannot hand domain controllers to its children, so
//! the kernel answers EBUSY to `subtree_control` until the root cgroup is
//! empty. `docker exec` (or a health probe) can put a new process into the root
//! cgroup at any moment, so on EBUSY we evacuate again and retry, as moby's
//! `hack/dind` does since moby/moby#48850 (docker-library/docker#495).

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use nix::mount::MsFlags;

use super::{
    cgroup_path, components, create_dir_at, read_at, write_at, Budget, CgroupError, CgroupFs,
    Cgroups, Parent, Placement, PARENT_NAME,
};

pub struct V2<F> {
    fs: F,
    /// Our own cgroup path in the unified hierarchy (`0::PATH` of /proc/self/cgroup).
    own_path: Option<String>,
    /// The root is not mounted yet: mount cgroup2 there first.
    mount_first: bool,
    /// How often to retry the subtree_control write on EBUSY, and the pause between tries.
    pub attempts: u32,
    pub pause: Duration,
}

impl<F: CgroupFs> V2<F> {
    pub fn new(fs: F, self_cgroup: &str, mount_first: bool) -> Self {
        let own_path = self_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| p.trim().to_string());
        // 100 x 50 ms: a few seconds of racing `docker exec`s before we give up.
        V2 {
            fs,
            own_path,
            mount_first,
            attempts: 100,
            pause: Duration::from_millis(50),
        }
    }

    /// Moves every pid of `<root>/cgroup.procs` to `<root>/init`; returns how many moved.
    fn evacuate(&self, root: &Path) -> Result<usize, CgroupError> {
        let procs = root.join("cgroup.procs");
        let target = root.join("init").join("cgroup.procs");
        let list = self
            .fs
            .read(&procs)
            .map_err(|err| CgroupError::Read { path: procs, err })?;
        let mut moved = 0;
        // The kernel takes one pid per write.
        for pid in list.split_whitespace() {
            match self.fs.write(&target, pid) {
                Ok(()) => moved += 1,
                // The process exited meanwhile.
                Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
                Err(err) => {
                    return Err(CgroupError::Write {
                        path: target,
                        data: pid.into(),
                        err,
                    });
                }
            }
        }
        Ok(moved)
    }

    /// Whether init is at the root of its cgroup namespace (before or after
    /// [`Cgroups::setup`] moved it to `/init`), the only place it may delegate from.
    fn at_own_root(&self) -> bool {
        matches!(self.own_path.as_deref(), None | Some("/" | "/init"))
    }

    /// Enables in `dir/cgroup.subtree_control` every controller of
    /// `dir/cgroup.controllers` that is not enabled yet, so `dir`'s children
    /// get their interface files (`memory.max`, `pids.max`, ...).
    fn delegate(&self, dir: &Path) -> Result<(), CgroupError> {
        let available = read_at(&self.fs, &dir.join("cgroup.controllers"))?;
        let subtree = dir.join("cgroup.subtree_control");
        let enabled = read_at(&self.fs, &subtree)?;
        let enabled: Vec<&str> = enabled
            .split_whitespace()
            .map(|c| c.trim_start_matches('+'))
            .collect();
        let missing: Vec<String> = available
            .split_whitespace()
            .filter(|c| !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        write_at(&self.fs, &subtree, &missing.join(" "))
    }

    /// Writes `value` to `dir/file` of `controller`, which must be available in `dir`.
    fn limit(
        &self,
        dir: &Path,
        controller: &'static str,
        file: &str,
        value: i64,
    ) -> Result<(), CgroupError> {
        let controllers = dir.join("cgroup.controllers");
        if !read_at(&self.fs, &controllers)?
            .split_whitespace()
            .any(|c| c == controller)
        {
            return Err(CgroupError::NoController {
                what: controller,
                why: format!(
                    "the {controller} controller is not in {} (the box's cgroup namespace root \
                     does not have it)",
                    controllers.display()
                ),
            });
        }
        write_at(&self.fs, &dir.join(file), &value.to_string())
    }
}

impl<F: CgroupFs> Cgroups for V2<F> {
    fn setup(&self, root: &Path) -> Result<String, CgroupError> {
        if self.mount_first {
            std::fs::create_dir_all(root).map_err(|err| CgroupError::CreateDir {
                path: root.into(),
                err,
            })?;
            nix::mount::mount(
                Some("cgroup2"),
                root,
                Some("cgroup2"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|err| CgroupError::Mount {
                fstype: "cgroup2".into(),
                path: root.into(),
                err,
            })?;
        }
        // With the host's cgroup namespace, `root` is the host's root cgroup:
        // moving its processes would move the host's. Only act at our own root.
        if let Some(own) = self
            .own_path
            .as_deref()
            .filter(|p| !matches!(*p, "/" | "/init"))
        {
            tracing::warn!(
                "cgroup v2: not at the root of a private cgroup namespace (we are in {own}); \
                 leaving cgroups alone. Run the box with --cgroupns=private."
            );
            return Ok(format!("cgroup v2: skipped (own cgroup {own})"));
        }
        let init = root.join("init");
        self.fs
            .create_dir(&init)
            .map_err(|err| CgroupError::CreateDir { path: init, err })?;

        let controllers_path = root.join("cgroup.controllers");
        let controllers = self
            .fs
            .read(&controllers_path)
            .map_err(|err| CgroupError::Read {
                path: controllers_path,
                err,
            })?;
        let enable: Vec<String> = controllers
            .split_whitespace()
            .map(|c| format!("+{c}"))
            .collect();
        let enable = enable.join(" ");
        let subtree = root.join("cgroup.subtree_control");

        let mut moved = 0;
        for attempt in 1..=self.attempts {
            moved += self.evacuate(root)?;
            if enable.is_empty() {
                break;
            }
            match self.fs.write(&subtree, &enable) {
                Ok(()) => break,
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    if attempt == self.attempts {
                        return Err(CgroupError::StillBusy {
                            path: subtree,
                            attempts: attempt,
                        });
                    }
                    tracing::debug!(cgroup = %subtree.display(), "cgroup v2: busy, evacuating again");
                    std::thread::sleep(self.pause);
                }
                Err(err) => {
                    return Err(CgroupError::Write {
                        path: subtree,
                        data: enable,
                        err,
                    })
                }
            }
        }
        Ok(format!(
            "cgroup v2: moved {moved} process(es) into {}/init, enabled controllers [{}]",
            root.display(),
            controllers.split_whitespace().collect::<Vec<_>>().join(" ")
        ))
    }

    /// The parent goes next to `/init` at the root of the box's cgroup
    /// namespace: `/dindbox`. A cgroup holding processes cannot hand domain
    /// controllers to its children, so nothing under `/init` (where init and
    /// dockerd live) or, without a private cgroup namespace, under init's own
    /// cgroup can carry limits for the containers.
    /// What the box's root hands down: its `cgroup.controllers`.
    fn controllers(&self, root: &Path) -> Result<Vec<String>, CgroupError> {
        let path = root.join("cgroup.controllers");
        let text = self
            .fs
            .read(&path)
            .map_err(|err| CgroupError::Read { path, err })?;
        Ok(text.split_whitespace().map(str::to_string).collect())
    }

    fn budget(&self, root: &Path, budget: &Budget) -> Result<Parent, CgroupError> {
        let own = self.own_path.as_deref().unwrap_or("/");
        let path = match &budget.parent {
            Some(explicit) => explicit.clone(),
            None if self.at_own_root() => cgroup_path(&[PARENT_NAME]),
            None => {
                return Err(CgroupError::NoOwnCgroup {
                    why: format!(
                        "init is in the cgroup {own}, not at the root of a private cgroup \
                         namespace, and a cgroup v2 holding processes cannot give its \
                         children controllers"
                    ),
                })
            }
        };
        let parts = components(&path);
        let not_ours = if !self.at_own_root() {
            Some(format!(
                "init is in the cgroup {own}, not at the root of a private cgroup namespace"
            ))
        } else if !path.starts_with('/') || parts.is_empty() || parts[0] == "init" {
            Some(format!(
                "it is not a cgroup path below {} other than /init",
                root.display()
            ))
        } else {
            None
        };
        if let Some(why) = not_ours {
            return Ok(Parent {
                path,
                placement: Placement::NotOurs(why),
            });
        }

        // Top down: each level enables its controllers for the next, so the
        // new directory comes with memory.max and pids.max.
        let mut dir = root.to_path_buf();
        for part in &parts {
            self.delegate(&dir)?;
            dir = dir.join(part);
            create_dir_at(&self.fs, &dir)?;
        }
        if let Some(bytes) = budget.memory {
            self.limit(&dir, "memory", "memory.max", bytes)?;
            // As on v1 (memsw = the limit), swap does not extend the budget.
            if self.fs.read(&dir.join("memory.swap.max")).is_ok() {
                write_at(&self.fs, &dir.join("memory.swap.max"), "0")?;
            }
        }
        if let Some(pids) = budget.pids {
            self.limit(&dir, "pids", "pids.max", pids)?;
        }
        // For dockerd's containers below: their own memory.max, pids.max, ...
        self.delegate(&dir)?;
        Ok(Parent {
            path,
            placement: Placement::Limited(vec![dir]),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{CgroupError, Cgroups, V2};
    use crate::init::cgroup::test_util::FakeCgroupFs;
    use crate::init::cgroup::{Budget, Placement};

    fn budget(memory: Option<i64>, pids: Option<i64>) -> Budget {
        Budget {
            parent: None,
            memory,
            pids,
        }
    }

    fn pair(path: &str, data: &str) -> (String, String) {
        (path.to_string(), data.to_string())
    }

    fn v2(fake: &FakeCgroupFs) -> V2<&FakeCgroupFs> {
        let mut v2 = V2::new(fake, "0::/\n", false);
        v2.attempts = 5;
        v2.pause = Duration::ZERO;
        v2
    }

    #[test]
    fn controllers_are_what_the_root_hands_down() {
        let fake = FakeCgroupFs::new("1\n", "cpu io pids\n");
        let v2 = v2(&fake);
        v2.setup(fake.root()).unwrap();
        let available = v2.controllers(fake.root()).unwrap();
        assert_eq!(available, ["cpu", "io", "pids"]);
        let warning = crate::init::cgroup::missing_controllers_warning(&available).unwrap();
        assert!(
            warning.contains("missing in this box: memory, cpuset")
                && warning.contains("--memory, --cpuset-cpus"),
            "{warning}"
        );
    }

    #[test]
    fn evacuates_every_process_before_enabling_controllers() {
        let fake = FakeCgroupFs::new("1\n7\n12\n", "cpuset cpu io memory pids\n");
        let summary = v2(&fake).setup(fake.root()).unwrap();

        assert_eq!(fake.read_rel("cgroup.procs").trim(), "");
        assert_eq!(fake.read_rel("init/cgroup.procs"), "1\n7\n12\n");
        assert_eq!(
            fake.read_rel("cgroup.subtree_control"),
            "+cpuset +cpu +io +memory +pids"
        );
        let log = fake.log.borrow();
        let order: Vec<&str> = log.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            order,
            [
                "init/cgroup.procs",
                "init/cgroup.procs",
                "init/cgroup.procs",
                "cgroup.subtree_control"
            ]
        );
        assert!(summary.contains("moved 3"), "{summary}");
        assert!(summary.contains("[cpuset cpu io memory pids]"), "{summary}");
    }

    #[test]
    fn retries_after_ebusy_and_evacuates_processes_that_raced_in() {
        let fake = FakeCgroupFs::new("1\n", "memory pids");
        fake.busy.set(1);
        fake.raced_in.borrow_mut().push(99);
        v2(&fake).setup(fake.root()).unwrap();

        assert_eq!(fake.read_rel("cgroup.procs").trim(), "");
        assert_eq!(fake.read_rel("init/cgroup.procs"), "1\n99\n");
        assert_eq!(fake.read_rel("cgroup.subtree_control"), "+memory +pids");
        let log = fake.log.borrow();
        let order: Vec<(&str, &str)> = log.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect();
        assert_eq!(
            order,
            [
                ("init/cgroup.procs", "1"),
                ("init/cgroup.procs", "99"),
                ("cgroup.subtree_control", "+memory +pids")
            ]
        );
    }

    #[test]
    fn gives_up_with_a_clear_error_when_always_busy() {
        let fake = FakeCgroupFs::new("1\n", "memory");
        fake.busy.set(u32::MAX);
        let err = v2(&fake).setup(fake.root()).unwrap_err();
        assert!(
            matches!(err, CgroupError::StillBusy { attempts: 5, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("cgroup.subtree_control"), "{err}");
    }

    #[test]
    fn ignores_processes_that_exited_before_the_move() {
        let mut fake = FakeCgroupFs::new("1\n5\n", "pids");
        fake.gone.push(5);
        v2(&fake).setup(fake.root()).unwrap();
        assert_eq!(fake.read_rel("init/cgroup.procs"), "1\n");
        assert_eq!(fake.read_rel("cgroup.subtree_control"), "+pids");
    }

    #[test]
    fn leaves_the_host_root_alone_without_a_private_cgroup_namespace() {
        let fake = FakeCgroupFs::new("1\n", "pids");
        let v2 = V2::new(&fake, "0::/system.slice/docker-abc.scope\n", false);
        let summary = v2.setup(fake.root()).unwrap();
        assert!(summary.contains("skipped"), "{summary}");
        assert!(fake.log.borrow().is_empty());
        assert_eq!(fake.read_rel("cgroup.procs"), "1\n");
    }

    #[test]
    fn budget_parent_is_next_to_init_with_limits_and_delegation() {
        let fake = FakeCgroupFs::new("1\n7\n", "cpuset cpu io memory pids\n");
        let v2 = v2(&fake);
        v2.setup(fake.root()).unwrap();
        fake.log.borrow_mut().clear();

        let parent = v2
            .budget(fake.root(), &budget(Some(64 << 20), Some(100)))
            .unwrap();

        assert_eq!(parent.path, "/dindbox");
        assert_eq!(
            parent.placement,
            Placement::Limited(vec![fake.root().join("dindbox")])
        );
        assert_eq!(fake.read_rel("dindbox/memory.max"), "67108864");
        assert_eq!(fake.read_rel("dindbox/memory.swap.max"), "0");
        assert_eq!(fake.read_rel("dindbox/pids.max"), "100");
        // The root already delegates everything after setup: not written again.
        assert_eq!(
            fake.writes(),
            [
                pair("dindbox/memory.max", "67108864"),
                pair("dindbox/memory.swap.max", "0"),
                pair("dindbox/pids.max", "100"),
                pair(
                    "dindbox/cgroup.subtree_control",
                    "+cpuset +cpu +io +memory +pids"
                ),
            ]
        );
        // init stays where setup put it, apart from the parent.
        assert_eq!(fake.read_rel("init/cgroup.procs"), "1\n7\n");
        assert_eq!(fake.read_rel("dindbox/cgroup.procs"), "");
    }

    #[test]
    fn budget_enables_the_root_controllers_before_creating_the_parent() {
        let fake = FakeCgroupFs::new("", "cpu memory pids");
        fake.set("cgroup.subtree_control", "cpu");
        let v2 = V2::new(&fake, "0::/init\n", false);

        v2.budget(fake.root(), &budget(Some(1 << 30), None))
            .unwrap();

        assert_eq!(
            fake.writes(),
            [
                pair("cgroup.subtree_control", "+memory +pids"),
                pair("dindbox/memory.max", "1073741824"),
                pair("dindbox/memory.swap.max", "0"),
                pair("dindbox/cgroup.subtree_control", "+memory +pids"),
            ]
        );
        assert_eq!(fake.read_rel("dindbox/pids.max"), "max");
    }

    #[test]
    fn budget_pids_alone_leaves_memory_alone() {
        let fake = FakeCgroupFs::new("", "memory pids");
        let v2 = v2(&fake);
        v2.setup(fake.root()).unwrap();
        let parent = v2.budget(fake.root(), &budget(None, Some(64))).unwrap();
        assert_eq!(parent.path, "/dindbox");
        assert_eq!(fake.read_rel("dindbox/pids.max"), "64");
        assert_eq!(fake.read_rel("dindbox/memory.max"), "max");
        assert_eq!(fake.read_rel("dindbox/memory.swap.max"), "max");
    }

    #[test]
    fn budget_explicit_parent_below_the_root_is_created_level_by_level() {
        let fake = FakeCgroupFs::new("", "memory pids");
        let v2 = v2(&fake);
        v2.setup(fake.root()).unwrap();
        fake.log.borrow_mut().clear();
        let parent = v2
            .budget(
                fake.root(),
                &Budget {
                    parent: Some("/ci/job-1".into()),
                    memory: None,
                    pids: Some(10),
                },
            )
            .unwrap();
        assert_eq!(parent.path, "/ci/job-1");
        assert_eq!(
            parent.placement,
            Placement::Limited(vec![fake.root().join("ci/job-1")])
        );
        assert_eq!(
            fake.writes(),
            [
                pair("ci/cgroup.subtree_control", "+memory +pids"),
                pair("ci/job-1/pids.max", "10"),
                pair("ci/job-1/cgroup.subtree_control", "+memory +pids"),
            ]
        );
    }

    #[test]
    fn budget_leaves_explicit_parents_outside_the_namespace_root_alone() {
        for explicit in ["/init", "/init/x", "/", "tenant.slice"] {
            let fake = FakeCgroupFs::new("", "memory");
            let parent = v2(&fake)
                .budget(
                    fake.root(),
                    &Budget {
                        parent: Some(explicit.into()),
                        memory: Some(1 << 20),
                        pids: None,
                    },
                )
                .unwrap();
            assert_eq!(parent.path, explicit);
            assert!(
                matches!(parent.placement, Placement::NotOurs(_)),
                "{explicit}: {parent:?}"
            );
            assert!(fake.writes().is_empty(), "{explicit}");
        }
    }

    #[test]
    fn budget_without_a_private_cgroup_namespace_is_a_clear_error() {
        let fake = FakeCgroupFs::new("1\n", "memory");
        let v2 = V2::new(&fake, "0::/system.slice/docker-abc.scope\n", false);
        let err = v2
            .budget(fake.root(), &budget(Some(1 << 20), None))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/system.slice/docker-abc.scope"), "{msg}");
        assert!(msg.contains("--cgroupns=private"), "{msg}");

        // A parent the user chose is still passed on, unlimited by init.
        let parent = v2
            .budget(
                fake.root(),
                &Budget {
                    parent: Some("/system.slice/docker-abc.scope/ci".into()),
                    memory: Some(1 << 20),
                    pids: None,
                },
            )
            .unwrap();
        assert!(matches!(parent.placement, Placement::NotOurs(_)));
        assert!(fake.writes().is_empty());
    }

    #[test]
    fn budget_without_the_memory_controller_names_the_file() {
        let fake = FakeCgroupFs::new("", "cpu pids");
        let v2 = v2(&fake);
        v2.setup(fake.root()).unwrap();
        let err = v2
            .budget(fake.root(), &budget(Some(1 << 20), None))
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::NoController { what: "memory", .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("dindbox/cgroup.controllers"),
            "{err}"
        );
    }
}
