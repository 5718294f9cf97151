//! cgroup v2: move every process of the root cgroup into `<root>/init`, then
//! enable every available controller in `<root>/cgroup.subtree_control`.
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

use super::{CgroupError, CgroupFs, Cgroups};

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
                    tracing::debug!("cgroup v2: {} busy, evacuating again", subtree.display());
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
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::cell::{Cell, RefCell};
    use std::io;
    use std::path::{Path, PathBuf};

    use super::CgroupFs;

    /// A cgroup v2 tree in a temp dir that behaves like the kernel where it
    /// matters: writing a pid to a `cgroup.procs` moves it out of the others;
    /// writing `subtree_control` fails with EBUSY `busy` times, and each time
    /// the pids in `raced_in` appear in the root cgroup (a racing `docker exec`).
    pub struct FakeCgroupFs {
        pub dir: tempfile::TempDir,
        pub busy: Cell<u32>,
        pub raced_in: RefCell<Vec<u32>>,
        /// Pids that have exited: moving them fails with ESRCH.
        pub gone: Vec<u32>,
        /// Every successful write, in order: (path relative to the root, data).
        pub log: RefCell<Vec<(String, String)>>,
    }

    impl FakeCgroupFs {
        pub fn new(procs: &str, controllers: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("cgroup.procs"), procs).unwrap();
            std::fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
            std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
            FakeCgroupFs {
                dir,
                busy: Cell::new(0),
                raced_in: RefCell::new(Vec::new()),
                gone: Vec::new(),
                log: RefCell::new(Vec::new()),
            }
        }

        pub fn root(&self) -> &Path {
            self.dir.path()
        }

        pub fn read_rel(&self, rel: &str) -> String {
            std::fs::read_to_string(self.root().join(rel)).unwrap_or_default()
        }

        fn rel(&self, path: &Path) -> String {
            path.strip_prefix(self.root())
                .unwrap()
                .display()
                .to_string()
        }

        fn all_procs_files(&self) -> Vec<PathBuf> {
            let mut files = vec![self.root().join("cgroup.procs")];
            for entry in std::fs::read_dir(self.root()).unwrap() {
                let p = entry.unwrap().path().join("cgroup.procs");
                if p.exists() {
                    files.push(p);
                }
            }
            files
        }
    }

    impl CgroupFs for FakeCgroupFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            std::fs::read_to_string(path)
        }

        fn write(&self, path: &Path, data: &str) -> io::Result<()> {
            let name = path.file_name().unwrap().to_str().unwrap();
            if name == "cgroup.subtree_control" && self.busy.get() > 0 {
                self.busy.set(self.busy.get() - 1);
                let mut root = self.read_rel("cgroup.procs");
                for pid in self.raced_in.borrow_mut().drain(..) {
                    root.push_str(&format!("{pid}\n"));
                }
                std::fs::write(self.root().join("cgroup.procs"), root).unwrap();
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            if name == "cgroup.procs" {
                let pid: u32 = data.trim().parse().expect("one pid per write");
                if self.gone.contains(&pid) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                for file in self.all_procs_files() {
                    let kept: String = std::fs::read_to_string(&file)
                        .unwrap()
                        .split_whitespace()
                        .filter(|p| *p != data.trim())
                        .map(|p| format!("{p}\n"))
                        .collect();
                    std::fs::write(&file, kept).unwrap();
                }
                let mut now = std::fs::read_to_string(path).unwrap_or_default();
                now.push_str(&format!("{pid}\n"));
                std::fs::write(path, now)?;
            } else {
                std::fs::write(path, data)?;
            }
            self.log
                .borrow_mut()
                .push((self.rel(path), data.to_string()));
            Ok(())
        }

        fn create_dir(&self, path: &Path) -> io::Result<()> {
            std::fs::create_dir_all(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_util::FakeCgroupFs;
    use super::{CgroupError, Cgroups, V2};

    fn v2(fake: &FakeCgroupFs) -> V2<&FakeCgroupFs> {
        let mut v2 = V2::new(fake, "0::/\n", false);
        v2.attempts = 5;
        v2.pause = Duration::ZERO;
        v2
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
}
