//! A box's protected area on the host and the mounts the server makes in it:
//!
//! ```text
//! ROOT/NAME/metadata.redb            the snapshots' records (store.rs)
//! ROOT/NAME/snapshots/<id>/fs        a snapshot's files (an overlay upper or lower)
//! ROOT/NAME/snapshots/<id>/work      its overlay work dir
//! ROOT/NAME/shared/                  a shared mount, bound into the box (rslave)
//! ROOT/NAME/shared/.dindbox-snapshotter   the marker init checks
//! ROOT/NAME/shared/<id>              where an active snapshot or view is mounted
//! ROOT/NAME/containerd/              the box's containerd root (content store, meta.db)
//! ROOT/NAME/containerd/.dindbox-containerd   the marker init checks
//! ```
//!
//! `shared/` is bound into the box (read-only, rslave), and `containerd/`
//! (read-write, the box's containerd keeps its compressed layer blobs and
//! its own records there, so they stay on the host with the snapshots they
//! index). The server only creates `containerd/` and writes its marker
//! (never following what the box planted there), and reads nothing in it.
//! The box never reaches a layer's raw directories: it sees each active snapshot or view as the mount the
//! server made, and binds that. Everything is still opened without
//! following symlinks (`beneath::Dir`), and mounts are given
//! `/proc/self/fd/N` paths, so nothing planted in `shared/` steers a mount.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use tracing::{info, warn};

use super::store::Usage;
use crate::graphdriver_server::beneath::Dir;
use crate::graphdriver_server::home::{open_home, OpenHomeError};
use crate::graphdriver_server::overlay::{overlay_options, OverlayMount, MAX_MOUNT_DATA};

/// The marker file in `shared/`: init reads it to know the area is mounted.
pub const MARKER: &str = ".dindbox-snapshotter";
/// The marker file in `containerd/`: init reads it to know its containerd
/// root is the host's.
pub const CONTAINERD_MARKER: &str = ".dindbox-containerd";
/// The directory in `ROOT/NAME` bound into the box as its containerd root.
pub const CONTAINERD_DIR: &str = "containerd";
/// The most mounts [`Area::unmount`] takes off one mount point.
const MAX_STACKED: usize = 16;

/// What to mount at `shared/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The snapshot's own `fs` (an active snapshot or view without parent).
    Own { readonly: bool },
    /// A committed snapshot's `fs`, read-only (a view of one layer).
    Parent(u64),
    /// Overlay of the parents (nearest first), over the snapshot's own
    /// `fs`/`work` unless read-only. `volatile` (layer extraction) skips
    /// the sync of the whole host file system that unmounting an overlay
    /// otherwise does: containerd's own overlayfs snapshotter writes
    /// extracted layers without any sync either.
    Overlay {
        lowers: Vec<u64>,
        readonly: bool,
        volatile: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AreaError {
    #[error(transparent)]
    Open(#[from] OpenHomeError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("mounting snapshot {id} at {target}: {source}")]
    Mount {
        id: u64,
        target: String,
        source: io::Error,
    },
}

/// The open area of one box.
pub struct Area {
    host: PathBuf,
    area: Dir,
    snapshots: Dir,
    shared: Dir,
    /// Where `shared/` is seen inside the box.
    box_prefix: PathBuf,
    index_off: bool,
}

impl Area {
    /// Opens (creating) `ROOT/NAME` and its parts, makes `shared/` a shared
    /// mount (so mounts made there reach the box) and writes the marker.
    pub fn open(root: &Path, name: &str, box_prefix: &Path) -> Result<Area, AreaError> {
        let (host, area) = open_home(root, name, Path::new("."))?;
        let (_, snapshots) = open_home(root, name, Path::new("snapshots"))?;
        let (shared_path, shared) = open_home(root, name, Path::new("shared"))?;
        let (_, containerd) = open_home(root, name, Path::new(CONTAINERD_DIR))?;
        let area = Area {
            host,
            area,
            snapshots,
            shared,
            box_prefix: box_prefix.to_path_buf(),
            index_off: Path::new("/sys/module/overlay/parameters/index").exists(),
        };
        area.make_shared(&shared_path)?;
        let marker = |what: &str| format!("dindbox {what} of box {name}\n");
        area.write_marker(
            &area.shared_dir()?,
            "shared",
            MARKER,
            &marker("snapshotter area"),
        )?;
        area.write_marker(
            &containerd,
            CONTAINERD_DIR,
            CONTAINERD_MARKER,
            &marker("containerd root"),
        )?;
        Ok(area)
    }

    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The metadata file (in `ROOT/NAME`, which the box does not see).
    pub fn metadata_path(&self) -> io::Result<PathBuf> {
        self.area.child(OsStr::new("metadata.redb"))
    }

    fn io(&self, what: &'static str, rel: String) -> impl FnOnce(io::Error) -> AreaError {
        let path = self.host.join(rel).display().to_string();
        move |source| AreaError::Io { what, path, source }
    }

    /// `shared/` bound onto itself and made a shared peer, unless it already
    /// is a mount (a restart, or the operator did it).
    fn make_shared(&self, shared_path: &Path) -> Result<(), AreaError> {
        let target = self
            .area
            .child(OsStr::new("shared"))
            .map_err(self.io("opening", "shared".into()))?;
        if !is_mount_point(&self.area, "shared") {
            nix::mount::mount(
                Some(&self.shared.path()),
                &self.shared.path(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| self.io("bind-mounting", "shared".into())(e.into()))?;
        }
        nix::mount::mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| self.io("making a shared mount of", "shared".into())(e.into()))?;
        info!(shared = %shared_path.display(), box_path = %self.box_prefix.display(), "the shared area is a shared mount");
        Ok(())
    }

    /// Writes `dir/marker` afresh; whatever the box left under that name
    /// (a symlink, a directory) is removed, not followed.
    fn write_marker(
        &self,
        dir: &Dir,
        rel: &str,
        marker: &str,
        text: &str,
    ) -> Result<(), AreaError> {
        let name = OsStr::new(marker);
        dir.remove(name)
            .and_then(|()| dir.create_file(name, 0o644))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(self.io("writing", format!("{rel}/{marker}")))
    }

    /// `shared/` as it is now: the mount on top of the directory.
    fn shared_dir(&self) -> Result<Dir, AreaError> {
        self.area
            .open_dir(OsStr::new("shared"))
            .map_err(self.io("opening", "shared".into()))
    }

    /// Makes `snapshots/<id>/{fs,work}`.
    pub fn make_dirs(&self, id: u64) -> io::Result<()> {
        let dir = self
            .snapshots
            .create_rel(Path::new(&id.to_string()), 0o700)?;
        dir.mkdir(OsStr::new("fs"), 0o755)?;
        dir.mkdir(OsStr::new("work"), 0o700)
    }

    fn snapshot_sub(&self, id: u64, sub: &str) -> Result<Dir, AreaError> {
        self.snapshots
            .open_rel(&Path::new(&id.to_string()).join(sub))
            .map_err(self.io("opening", format!("snapshots/{id}/{sub}")))
    }

    /// Mounts snapshot `id` at `shared/<id>` as `plan` says.
    pub fn mount(&self, id: u64, plan: &Plan) -> Result<(), AreaError> {
        let shared = self.shared_dir()?;
        let name = id.to_string();
        shared
            .mkdir(OsStr::new(&name), 0o755)
            .map_err(self.io("creating", format!("shared/{id}")))?;
        let target = shared
            .open_dir(OsStr::new(&name))
            .map_err(self.io("opening", format!("shared/{id}")))?;
        let failed = |source: io::Error| AreaError::Mount {
            id,
            target: self.host.join(format!("shared/{id}")).display().to_string(),
            source,
        };
        let bind = |src: &Dir, readonly: bool| -> io::Result<()> {
            nix::mount::mount(
                Some(&src.path()),
                &target.path(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            if readonly {
                // Through the name, which now leads to the new mount.
                nix::mount::mount(
                    None::<&str>,
                    &shared.child(OsStr::new(&name))?,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )?;
            }
            Ok(())
        };
        match plan {
            Plan::Own { readonly } => {
                bind(&self.snapshot_sub(id, "fs")?, *readonly).map_err(failed)?;
            }
            Plan::Parent(parent) => {
                bind(&self.snapshot_sub(*parent, "fs")?, true).map_err(failed)?;
            }
            Plan::Overlay {
                lowers,
                readonly,
                volatile,
            } => {
                // The descriptors behind the /proc/self/fd paths live until the mount is done.
                let lower_dirs = lowers
                    .iter()
                    .map(|l| self.snapshot_sub(*l, "fs"))
                    .collect::<Result<Vec<_>, _>>()?;
                let upper = if *readonly {
                    None
                } else {
                    Some((self.snapshot_sub(id, "fs")?, self.snapshot_sub(id, "work")?))
                };
                if let Some((_, work)) = &upper {
                    // Left by a volatile mount that never unmounted cleanly
                    // (a host crash): the kernel refuses to mount until it is
                    // gone (Documentation/filesystems/overlayfs.rst).
                    work.remove(OsStr::new("incompat"))
                        .map_err(self.io("cleaning", format!("snapshots/{id}/work")))?;
                }
                let data = overlay_options(&OverlayMount {
                    lowers: lower_dirs.iter().map(Dir::path).collect(),
                    upper: upper.as_ref().map(|(f, w)| (f.path(), w.path())),
                    index_off: self.index_off,
                    redirect_off: false,
                })
                .map_err(|e| failed(io::Error::other(e)))?;
                let mount = |data: &str| {
                    nix::mount::mount(
                        Some("overlay"),
                        &target.path(),
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(data),
                    )
                };
                let volatile_data = format!("{data},volatile");
                let mounted =
                    if *volatile && upper.is_some() && volatile_data.len() <= MAX_MOUNT_DATA {
                        // A kernel before 5.10 has no `volatile`.
                        mount(&volatile_data).or_else(|_| mount(&data))
                    } else {
                        mount(&data)
                    };
                mounted.map_err(|e| failed(e.into()))?;
            }
        }
        Ok(())
    }

    /// Whether `shared/<id>` has a mount on it.
    pub fn is_mounted(&self, id: u64) -> bool {
        self.shared_dir()
            .map(|shared| is_mount_point(&shared, &id.to_string()))
            .unwrap_or(false)
    }

    /// Detaches whatever is mounted at `shared/<id>` and removes the mount
    /// point (which also drops its propagated copy in the box).
    pub fn unmount(&self, id: u64) -> Result<(), AreaError> {
        let shared = self.shared_dir()?;
        let name = id.to_string();
        let target = shared
            .child(OsStr::new(&name))
            .map_err(self.io("unmounting", format!("shared/{id}")))?;
        // Mounts may be stacked there; a bounded number of them.
        for _ in 0..MAX_STACKED {
            if !is_mount_point(&shared, &name) {
                break;
            }
            nix::mount::umount2(&target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
                .map_err(|e| self.io("unmounting", format!("shared/{id}"))(e.into()))?;
        }
        let _ = std::fs::remove_dir(&target);
        Ok(())
    }

    /// Removes `snapshots/<id>`.
    pub fn remove_dirs(&self, id: u64) -> Result<(), AreaError> {
        self.snapshots
            .remove(OsStr::new(&id.to_string()))
            .map_err(self.io("removing", format!("snapshots/{id}")))
    }

    /// Bytes (allocated blocks) and inodes of a snapshot's own files.
    pub fn usage(&self, id: u64) -> Result<Usage, AreaError> {
        let fs = self.snapshot_sub(id, "fs")?;
        let mut seen = HashSet::new();
        let mut usage = Usage::default();
        tree_usage(&fs, &mut seen, &mut usage)
            .map_err(self.io("measuring", format!("snapshots/{id}/fs")))?;
        Ok(usage)
    }

    /// Removes directories and mounts that no record in `live` owns (left
    /// by a crash between a file-system step and its transaction).
    pub fn sweep(&self, live: &HashSet<u64>) -> Result<(), AreaError> {
        let shared = self.shared_dir()?;
        for (dir, what) in [(&self.snapshots, "snapshots"), (&shared, "shared")] {
            let names = dir.names().map_err(self.io("listing", what.into()))?;
            for name in names {
                let Some(id) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                    continue;
                };
                if live.contains(&id) {
                    continue;
                }
                warn!(
                    id,
                    dir = what,
                    "removing a snapshot directory no record owns"
                );
                if what == "shared" {
                    self.unmount(id)?;
                } else {
                    self.remove_dirs(id)?;
                }
            }
        }
        Ok(())
    }

    /// Where the box finds snapshot `id`'s mount, and how it binds it.
    pub fn box_mount(&self, id: u64, readonly: bool) -> containerd_snapshots::api::types::Mount {
        containerd_snapshots::api::types::Mount {
            r#type: "bind".to_string(),
            source: self.box_prefix.join(id.to_string()).display().to_string(),
            target: String::new(),
            options: vec![
                "rbind".to_string(),
                if readonly { "ro" } else { "rw" }.to_string(),
            ],
        }
    }
}

/// Whether `dir/name` is a directory on another device than `dir`: a mount
/// point (overlay and binds of another file system; a bind of the same file
/// system is told apart through the mount ID).
fn is_mount_point(dir: &Dir, name: &str) -> bool {
    let Ok(Some(child)) = dir.lstat(OsStr::new(name)) else {
        return false;
    };
    let Ok(parent) = dir.metadata() else {
        return false;
    };
    if !child.is_dir() {
        return false;
    }
    child.dev() != parent.dev() || mount_id(dir, name) != mount_id(dir, "")
}

/// `statx(STATX_MNT_ID)` of `dir/name` (of `dir` itself for ""), not
/// following a symlink there.
fn mount_id(dir: &Dir, name: &str) -> Option<u64> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let stat = statx(dir.file(), name, flags, StatxFlags::MNT_ID).ok()?;
    Some(stat.stx_mnt_id)
}

fn tree_usage(dir: &Dir, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) -> io::Result<()> {
    for name in dir.names()? {
        let Some(meta) = dir.lstat(&name)? else {
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        usage.size += meta.blocks() * 512;
        if meta.is_dir() {
            tree_usage(&dir.open_dir(&name)?, seen, usage)?;
        }
    }
    Ok(())
}
