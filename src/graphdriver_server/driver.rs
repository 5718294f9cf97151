//! What a storage driver is: the [`Driver`] operations behind the protocol,
//! the layer directory both drivers keep ([`LayerDirs`]), and their errors.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::archive::{self, ArchiveError, DiffItem, Quota, QuotaError};
use super::beneath::Dir;
use super::protocol::{Change, IdError, LayerId};

/// The storage operations behind the protocol. Paths are host paths; the
/// server translates them to the container's view. Calls block (they are
/// run off the async threads).
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Creates an empty layer on `parent` (`rw`: a container layer).
    fn create(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        rw: bool,
        quota: &mut Quota,
    ) -> Result<(), DriverError>;
    fn remove(&self, id: &LayerId) -> Result<(), DriverError>;
    /// The layer's assembled file system (mounting it if needed).
    fn get(&self, id: &LayerId) -> Result<PathBuf, DriverError>;
    fn put(&self, id: &LayerId) -> Result<(), DriverError>;
    fn exists(&self, id: &LayerId) -> bool;
    fn status(&self) -> Vec<(String, String)>;
    /// Path-valued metadata (several paths are joined with `:`).
    fn metadata(&self, id: &LayerId) -> Result<BTreeMap<String, Vec<PathBuf>>, DriverError>;
    fn cleanup(&self) -> Result<(), DriverError>;
    fn changes(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<Vec<Change>, DriverError>;
    /// What `Diff` will stream; errors here still become a non-200 answer.
    fn diff(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<DiffSource, DriverError>;
    fn apply_diff(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        tar: &mut dyn Read,
        quota: &mut Quota,
    ) -> Result<u64, DriverError>;
    fn diff_size(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<u64, DriverError>;
    /// Every layer on disk.
    fn layers(&self) -> Result<Vec<LayerId>, DriverError>;
    /// The bytes a layer takes on disk (for `--max-bytes`).
    fn size(&self, id: &LayerId) -> Result<u64, DriverError>;
}

/// A directory of layer directories named by their IDs (vfs's `<home>/dir`,
/// overlay's `<home>`): what both drivers do to one layer's directory itself.
pub struct LayerDirs {
    /// As the host names it (for messages and the paths handed out).
    pub(super) path: PathBuf,
    pub(super) dir: Dir,
}

impl LayerDirs {
    pub fn new(path: PathBuf, dir: Dir) -> LayerDirs {
        LayerDirs { path, dir }
    }

    /// Where layer `id` is, as the host names it.
    pub fn layer_path(&self, id: &LayerId) -> PathBuf {
        self.path.join(id.as_str())
    }

    /// Opens layer `id`'s directory (not following a symlink there).
    pub fn open(&self, id: &LayerId) -> Result<Dir, DriverError> {
        match self.dir.open_dir(OsStr::new(id.as_str())) {
            Ok(dir) => Ok(dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(DriverError::NotFound(id.clone()))
            }
            Err(err) => Err(DriverError::io("opening layer", id)(err)),
        }
    }

    /// Refuses an `id` that is taken by anything, a layer or not.
    pub fn ensure_absent(&self, id: &LayerId) -> Result<(), DriverError> {
        let taken = self
            .dir
            .lstat(OsStr::new(id.as_str()))
            .map_err(DriverError::io("inspecting", self.layer_path(id).display()))?;
        match taken {
            Some(_) => Err(DriverError::Exists(id.clone())),
            None => Ok(()),
        }
    }

    /// Makes layer `id`'s directory with `mode` (exactly: no umask) and opens it.
    pub fn make(&self, id: &LayerId, mode: u32) -> Result<Dir, DriverError> {
        let path = self.layer_path(id);
        let io = || DriverError::io("creating", path.display());
        fs::DirBuilder::new()
            .create(self.dir.child(OsStr::new(id.as_str())).map_err(io())?)
            .map_err(io())?;
        let layer = self.open(id)?;
        layer
            .file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io())?;
        Ok(layer)
    }

    /// Removes layer `id`'s directory and everything in it; a missing one is fine.
    pub fn remove(&self, id: &LayerId) -> Result<(), DriverError> {
        self.dir
            .remove(OsStr::new(id.as_str()))
            .map_err(DriverError::io("removing layer", id))
    }

    /// The IDs of the directory's entries that are valid layer IDs.
    pub fn ids(&self) -> Result<Vec<LayerId>, DriverError> {
        let names = self
            .dir
            .names()
            .map_err(DriverError::io("listing", self.path.display()))?;
        Ok(names
            .iter()
            .filter_map(|n| n.to_str().and_then(|n| LayerId::parse(n).ok()))
            .collect())
    }
}

/// A layer diff ready to be written as a tar.
pub struct DiffSource {
    pub root: Dir,
    pub items: Vec<DiffItem>,
}

impl DiffSource {
    pub fn write_tar(&self, out: impl Write) -> io::Result<()> {
        archive::write_tar(&self.root, &self.items, out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("layer {0} does not exist")]
    NotFound(LayerId),
    #[error("layer {0} already exists")]
    Exists(LayerId),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("failed to mount the overlay for layer {id} at {target}: {source}{hint}")]
    Mount {
        id: LayerId,
        target: String,
        source: io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DriverError {
    pub fn io(
        op: &'static str,
        path: impl std::fmt::Display,
    ) -> impl FnOnce(io::Error) -> DriverError {
        let path = path.to_string();
        move |source| DriverError::Io { op, path, source }
    }
}

/// Which driver to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// overlayfs layers, mounted on Get (needs a shared/rslave mount into the box).
    Overlay,
    /// Full copies, no mounts (always available, slower, bigger).
    Vfs,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Vfs => "vfs",
        }
    }
}
