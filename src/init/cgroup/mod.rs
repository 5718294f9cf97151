//! cgroups for an inner dockerd: detect v1 or v2 and prepare the hierarchy.
//!
//! One [`Cgroups`] trait with a v1 and a v2 implementation behind the
//! [`AnyCgroups`] enum (the youki libcgroups shape). Every function takes the
//! cgroup root as a parameter, so tests run against a fake tree in a temp dir.
//! File writes go through [`CgroupFs`] so a test can inject EBUSY.
//!
//! With a memory or pids budget ([`Budget`]), [`Cgroups::budget`] then creates
//! the parent cgroup every inner container goes under (`dindbox` under init's
//! own cgroup) and writes the limits, so all of the box's containers share them.
//!
//! See <https://docs.kernel.org/admin-guide/cgroup-v2.html> for the v2 rules
//! and <https://docs.kernel.org/admin-guide/cgroup-v1/memory.html> for v1's
//! memory controller.

#![forbid(unsafe_code)]

pub mod v1;
pub mod v2;

use std::io;
use std::path::{Path, PathBuf};

pub use v1::V1;
pub use v2::V2;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to read {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("failed to write {data:?} to {path}: {err}")]
    Write {
        path: PathBuf,
        data: String,
        err: io::Error,
    },
    #[error("failed to create {path}: {err}")]
    CreateDir { path: PathBuf, err: io::Error },
    #[error("failed to mount {fstype} at {path}: {err} (is the container --privileged?)")]
    Mount {
        fstype: String,
        path: PathBuf,
        err: nix::Error,
    },
    #[error("failed to link {link} -> {target}: {err}")]
    Symlink {
        link: PathBuf,
        target: String,
        err: io::Error,
    },
    #[error(
        "failed to enable controllers in {path}: still busy after {attempts} attempts \
         (processes keep entering the root cgroup)"
    )]
    StillBusy { path: PathBuf, attempts: u32 },
    #[error(
        "cannot limit {what}: {why} (unset DINDBOX_MEMORY_LIMIT / DINDBOX_PIDS_LIMIT to run \
         without the box's budget)"
    )]
    NoController { what: &'static str, why: String },
    #[error(
        "cannot create the box's budget cgroup: {why} (run the box with --cgroupns=private, \
         or set DINDBOX_CGROUP_PARENT to a cgroup you prepared)"
    )]
    NoOwnCgroup { why: String },
}

/// The box's shared budget: every inner container (and build step) is placed
/// under one parent cgroup that carries these limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    /// A parent chosen by the user (`DINDBOX_CGROUP_PARENT`); `None`: init
    /// creates [`PARENT_NAME`] under its own cgroup.
    pub parent: Option<String>,
    /// `memory.max` (v2) / `memory.limit_in_bytes` (v1), in bytes.
    pub memory: Option<i64>,
    /// `pids.max`.
    pub pids: Option<i64>,
}

/// The name of the parent cgroup init creates under its own cgroup.
pub const PARENT_NAME: &str = "dindbox";

/// Where the box's containers go, as [`Cgroups::budget`] settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// The path as dockerd's cgroupfs driver takes it (relative to the cgroup
    /// mount, starting with `/`), for `dockerd --cgroup-parent` and the proxy.
    pub path: String,
    /// The directories created and limited, or why init left the parent alone.
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Created and limited by init: the parent's directory in each hierarchy.
    Limited(Vec<PathBuf>),
    /// A user-chosen parent that is not under init's own cgroup: used as given,
    /// limited by whoever owns it.
    NotOurs(String),
}

/// The components of a cgroup path: `/a//b/` is `[a, b]`.
pub fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// `/` followed by the components.
pub fn cgroup_path(components: &[&str]) -> String {
    format!("/{}", components.join("/"))
}

/// The file operations cgroup setup needs, so tests can fake the kernel.
pub trait CgroupFs {
    fn read(&self, path: &Path) -> io::Result<String>;
    fn write(&self, path: &Path, data: &str) -> io::Result<()>;
    fn create_dir(&self, path: &Path) -> io::Result<()>;
}

impl<T: CgroupFs> CgroupFs for &T {
    fn read(&self, path: &Path) -> io::Result<String> {
        (**self).read(path)
    }
    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        (**self).write(path, data)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        (**self).create_dir(path)
    }
}

/// The real file system.
pub struct RealFs;

impl CgroupFs for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        // One write(2) per call: cgroup files act on each write.
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(data.as_bytes())
            })
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
}

/// Prepares a cgroup hierarchy so an inner dockerd can create its own cgroups.
pub trait Cgroups {
    /// Does the work and returns a one-line summary for the log.
    fn setup(&self, root: &Path) -> Result<String, CgroupError>;

    /// After [`Cgroups::setup`]: creates the parent cgroup for the box's
    /// containers and writes the budget's limits into it.
    fn budget(&self, root: &Path, budget: &Budget) -> Result<Parent, CgroupError>;

    /// After [`Cgroups::setup`]: the controllers the box can use.
    fn controllers(&self, root: &Path) -> Result<Vec<String>, CgroupError>;
}

/// The controllers behind dockerd's resource flags, with the flags that fail
/// without them.
const WANTED_CONTROLLERS: [(&str, &str); 4] = [
    ("memory", "--memory"),
    ("pids", "--pids-limit"),
    ("cpu", "--cpus/--cpu-shares"),
    ("cpuset", "--cpuset-cpus"),
];

/// One log line naming the wanted controllers missing from `available`, and
/// the `docker run` flags that will fail because of it; None when all are there.
pub fn missing_controllers_warning(available: &[String]) -> Option<String> {
    let missing: Vec<(&str, &str)> = WANTED_CONTROLLERS
        .into_iter()
        .filter(|(c, _)| !available.iter().any(|a| a == c))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let names: Vec<&str> = missing.iter().map(|(c, _)| *c).collect();
    let flags: Vec<&str> = missing.iter().map(|(_, f)| *f).collect();
    Some(format!(
        "cgroup controllers missing in this box: {} (available: {}); inner `docker run {}` \
         will fail. The host must hand them down: on cgroup v2 enable them in the parent's \
         cgroup.subtree_control (systemd: Delegate=yes) and run the box with --cgroupns=private",
        names.join(", "),
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(" ")
        },
        flags.join(", ")
    ))
}

pub enum AnyCgroups {
    V1(V1),
    V2(V2<RealFs>),
}

impl Cgroups for AnyCgroups {
    fn setup(&self, root: &Path) -> Result<String, CgroupError> {
        match self {
            AnyCgroups::V1(v1) => v1.setup(root),
            AnyCgroups::V2(v2) => v2.setup(root),
        }
    }

    fn budget(&self, root: &Path, budget: &Budget) -> Result<Parent, CgroupError> {
        match self {
            AnyCgroups::V1(v1) => v1.budget(root, budget),
            AnyCgroups::V2(v2) => v2.budget(root, budget),
        }
    }

    fn controllers(&self, root: &Path) -> Result<Vec<String>, CgroupError> {
        match self {
            AnyCgroups::V1(v1) => v1.controllers(root),
            AnyCgroups::V2(v2) => v2.controllers(root),
        }
    }
}

/// [`CgroupFs::read`] with the path in the error.
pub(crate) fn read_at(fs: &impl CgroupFs, path: &Path) -> Result<String, CgroupError> {
    fs.read(path).map_err(|err| CgroupError::Read {
        path: path.into(),
        err,
    })
}

/// [`CgroupFs::write`] with the path and the data in the error.
pub(crate) fn write_at(fs: &impl CgroupFs, path: &Path, data: &str) -> Result<(), CgroupError> {
    fs.write(path, data).map_err(|err| CgroupError::Write {
        path: path.into(),
        data: data.into(),
        err,
    })
}

/// [`CgroupFs::create_dir`] with the path in the error.
pub(crate) fn create_dir_at(fs: &impl CgroupFs, path: &Path) -> Result<(), CgroupError> {
    fs.create_dir(path).map_err(|err| CgroupError::CreateDir {
        path: path.into(),
        err,
    })
}

/// Picks v2 when `root` holds `cgroup.controllers`, or when it is not mounted
/// and our own `/proc/self/cgroup` shows only the unified (`0::`) hierarchy;
/// v1 otherwise.
pub fn detect(root: &Path) -> Result<AnyCgroups, CgroupError> {
    let self_cgroup = read("/proc/self/cgroup")?;
    if root.join("cgroup.controllers").exists() {
        return Ok(AnyCgroups::V2(V2::new(RealFs, &self_cgroup, false)));
    }
    if v1::hierarchies(&self_cgroup).is_empty() {
        return Ok(AnyCgroups::V2(V2::new(RealFs, &self_cgroup, true)));
    }
    Ok(AnyCgroups::V1(V1::new(
        read("/proc/1/cgroup")?,
        self_cgroup,
        read("/proc/self/mountinfo")?,
    )))
}

pub(crate) fn read(path: &str) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|err| CgroupError::Read {
        path: path.into(),
        err,
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::cell::{Cell, RefCell};
    use std::io;
    use std::path::{Path, PathBuf};

    use super::CgroupFs;

    /// A cgroup tree (v2, or v1 hierarchies) in a temp dir that behaves like
    /// the kernel where it matters: a new directory gets its parent's
    /// interface files; writing a pid to a `cgroup.procs` moves it out of the others;
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

        /// An empty tree: the test writes the fixtures it needs.
        pub fn empty() -> Self {
            FakeCgroupFs {
                dir: tempfile::tempdir().unwrap(),
                busy: Cell::new(0),
                raced_in: RefCell::new(Vec::new()),
                gone: Vec::new(),
                log: RefCell::new(Vec::new()),
            }
        }

        /// Writes a fixture (creating its directory), as the kernel would provide it.
        pub fn set(&self, rel: &str, data: &str) {
            let path = self.root().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }

        /// The logged writes as (path, data) pairs.
        pub fn writes(&self) -> Vec<(String, String)> {
            self.log.borrow().clone()
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

        /// Like the kernel's mkdir in a cgroup tree: a new cgroup comes with
        /// the interface files of its parent's controllers (v2: those enabled
        /// in the parent's `subtree_control`), at their defaults.
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            if path.exists() {
                return Ok(());
            }
            let parent = path.parent().unwrap();
            self.create_dir(parent)?;
            std::fs::create_dir(path)?;
            let has = |file: &str| parent.join(file).exists();
            let mut files: Vec<(&str, String)> = Vec::new();
            if let Ok(subtree) = std::fs::read_to_string(parent.join("cgroup.subtree_control")) {
                let enabled: Vec<&str> = subtree
                    .split_whitespace()
                    .map(|c| c.trim_start_matches('+'))
                    .collect();
                files.push(("cgroup.controllers", enabled.join(" ")));
                files.push(("cgroup.subtree_control", String::new()));
                files.push(("cgroup.procs", String::new()));
                if enabled.contains(&"memory") {
                    files.push(("memory.max", "max".into()));
                    files.push(("memory.swap.max", "max".into()));
                }
                if enabled.contains(&"pids") {
                    files.push(("pids.max", "max".into()));
                }
            } else {
                let unlimited = "9223372036854771712".to_string();
                for (file, default) in [
                    ("cgroup.procs", String::new()),
                    ("cpuset.cpus", String::new()),
                    ("cpuset.mems", String::new()),
                    ("memory.limit_in_bytes", unlimited.clone()),
                    ("memory.memsw.limit_in_bytes", unlimited),
                    ("pids.max", "max".into()),
                ] {
                    if has(file) {
                        files.push((file, default));
                    }
                }
                if let Ok(h) = std::fs::read_to_string(parent.join("memory.use_hierarchy")) {
                    files.push(("memory.use_hierarchy", h));
                }
            }
            for (file, data) in files {
                std::fs::write(path.join(file), data)?;
            }
            Ok(())
        }
    }
}
