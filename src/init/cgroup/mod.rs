//! cgroups for an inner dockerd: detect v1 or v2 and prepare the hierarchy.
//!
//! One [`Cgroups`] trait with a v1 and a v2 implementation behind the
//! [`AnyCgroups`] enum (the youki libcgroups shape). Every function takes the
//! cgroup root as a parameter, so tests run against a fake tree in a temp dir.
//! File writes go through [`CgroupFs`] so a test can inject EBUSY.
//!
//! See <https://docs.kernel.org/admin-guide/cgroup-v2.html> for the v2 rules.

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
        read("/proc/self/mountinfo")?,
    )))
}

fn read(path: &str) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|err| CgroupError::Read {
        path: path.into(),
        err,
    })
}
