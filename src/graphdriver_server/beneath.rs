//! File-system access that cannot be steered out of a tree.
//!
//! Everything below the protected root is writable from inside the container
//! (it is bind-mounted there), so a path string checked once may point
//! somewhere else a moment later: a directory swapped for a symlink to `/etc`
//! would make a path-based `mkdir` or `open` act on the host. Here every
//! directory is held open ([`Dir`]), children are reached one component at
//! a time with `O_NOFOLLOW`, and single-component operations go through
//! `/proc/self/fd/N/NAME`, whose last component the callee never follows
//! (`lstat`, `unlink`, `mkdir`, `mknod`, `symlink`, `link`, `O_EXCL` create).

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// A directory held open by descriptor.
#[derive(Debug)]
pub struct Dir {
    file: File,
}

fn dir_flags() -> i32 {
    libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
}

/// Refuses anything but one normal path component.
fn component(name: &OsStr) -> io::Result<&OsStr> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(n)), None) if n == name => Ok(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single path component"),
        )),
    }
}

impl Dir {
    /// Opens a trusted directory path (the protected root, a temp dir). The
    /// last component must not be a symlink.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(dir_flags())
            .open(path)?;
        Ok(Dir { file })
    }

    /// `/proc/self/fd/N`: a path to this very directory, whatever happens to
    /// the names leading to it. Valid while `self` lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// The path of one child, for calls that do not follow their last component.
    pub fn child(&self, name: &OsStr) -> io::Result<PathBuf> {
        Ok(self.path().join(component(name)?))
    }

    /// The open descriptor (for `fsetxattr`, `fchmod`, `fstat`).
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn metadata(&self) -> io::Result<Metadata> {
        self.file.metadata()
    }

    /// Opens a child directory; a symlink there is an error (ELOOP).
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        Dir::open(&self.child(name)?)
    }

    /// Opens a relative path of normal components, one at a time.
    pub fn open_rel(&self, rel: &Path) -> io::Result<Dir> {
        let mut dir = self.try_clone()?;
        for comp in rel.components() {
            match comp {
                Component::Normal(name) => dir = dir.open_dir(name)?,
                Component::CurDir => {}
                _ => return Err(escape_error(rel)),
            }
        }
        Ok(dir)
    }

    /// As [`Dir::open_rel`], creating missing directories with `mode`.
    pub fn create_rel(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        let mut dir = self.try_clone()?;
        for comp in rel.components() {
            match comp {
                Component::Normal(name) => {
                    dir.mkdir(name, mode)?;
                    dir = dir.open_dir(name)?;
                }
                Component::CurDir => {}
                _ => return Err(escape_error(rel)),
            }
        }
        Ok(dir)
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            file: self.file.try_clone()?,
        })
    }

    /// Creates a child directory unless one is already there.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        match fs::DirBuilder::new().mode(mode).create(self.child(name)?) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => match self.lstat(name)? {
                Some(meta) if meta.is_dir() => Ok(()),
                _ => Err(err),
            },
            other => other,
        }
    }

    /// `lstat` of a child; `None` if it does not exist.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Option<Metadata>> {
        match fs::symlink_metadata(self.child(name)?) {
            Ok(meta) => Ok(Some(meta)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The children's names, sorted (byte order, as Go's `sort.Strings`).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = fs::read_dir(self.path())?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    /// Opens a child regular file for reading; a symlink is an error.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.child(name)?)
    }

    /// Creates a new regular file (`O_EXCL`, so never through a symlink).
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.child(name)?)
    }

    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        fs::read_link(self.child(name)?)
    }

    /// Removes a child of any type (directories recursively, without
    /// following symlinks); a missing child is fine.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let Some(meta) = self.lstat(name)? else {
            return Ok(());
        };
        let path = self.child(name)?;
        let result = if meta.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        match result {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Sets owner, mode and mtime of a child without following it.
    pub fn set_owner_mode_mtime(&self, name: &OsStr, owner: Owner) -> io::Result<()> {
        let path = self.child(name)?;
        std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid))?;
        let meta = fs::symlink_metadata(&path)?;
        if !meta.file_type().is_symlink() {
            // chmod after chown: chown clears set-id bits.
            fs::set_permissions(&path, fs::Permissions::from_mode(owner.mode & 0o7777))?;
        }
        if let Some(mtime) = owner.mtime {
            set_mtime(&path, mtime)?;
        }
        Ok(())
    }
}

/// Ownership and times to apply to a new entry.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: Option<(i64, i64)>,
}

impl Owner {
    pub fn of(meta: &Metadata) -> Owner {
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode(),
            mtime: Some((meta.mtime(), meta.mtime_nsec())),
        }
    }
}

/// Sets atime and mtime of a path without following its last component.
pub fn set_mtime(path: &Path, (secs, nsecs): (i64, i64)) -> io::Result<()> {
    let time = TimeSpec::new(secs, nsecs);
    utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

fn escape_error(rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} leaves its directory", rel.display()),
    )
}

/// Whether a file is an overlay whiteout: a character device 0:0.
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Bytes used by the regular files of a tree, hard links counted once.
pub fn tree_size(dir: &Dir) -> io::Result<u64> {
    let mut seen = HashSet::new();
    tree_size_in(dir, &mut seen)
}

fn tree_size_in(dir: &Dir, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
    let mut total = 0;
    for name in dir.names()? {
        let Some(meta) = dir.lstat(&name)? else {
            continue;
        };
        if meta.is_dir() {
            total += tree_size_in(&dir.open_dir(&name)?, seen)?;
        } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
            total += meta.size();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_reached_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let root_path = tmp.path().join("root");
        fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("link")).unwrap();
        let root = Dir::open(&root_path).unwrap();

        assert!(root.open_dir(OsStr::new("link")).is_err());
        assert!(root.open_rel(Path::new("link/x")).is_err());
        assert!(root.create_rel(Path::new("link/x"), 0o755).is_err());
        assert!(root.open_rel(Path::new("../outside")).is_err());
        assert!(root.child(OsStr::new("a/b")).is_err());
        assert!(root.create_file(OsStr::new("link"), 0o644).is_err());
        assert!(fs::read_dir(&outside).unwrap().next().is_none());

        let made = root.create_rel(Path::new("a/b"), 0o755).unwrap();
        made.create_file(OsStr::new("f"), 0o644).unwrap();
        assert!(root_path.join("a/b/f").is_file());
        root.remove(OsStr::new("link")).unwrap();
        assert!(outside.exists(), "removing a symlink leaves its target");
        root.remove(OsStr::new("a")).unwrap();
        assert!(!root_path.join("a").exists());
        root.remove(OsStr::new("missing")).unwrap();
    }

    #[test]
    fn the_proc_path_follows_the_directory_not_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("d")).unwrap();
        let dir = Dir::open(&tmp.path().join("d")).unwrap();
        fs::rename(tmp.path().join("d"), tmp.path().join("moved")).unwrap();
        std::os::unix::fs::symlink("/", tmp.path().join("d")).unwrap();
        dir.create_file(OsStr::new("f"), 0o600).unwrap();
        assert!(tmp.path().join("moved/f").is_file());
    }

    #[test]
    fn tree_size_counts_hard_links_once() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("sub")).unwrap();
        fs::write(tmp.path().join("a"), vec![0u8; 100]).unwrap();
        fs::hard_link(tmp.path().join("a"), tmp.path().join("sub/b")).unwrap();
        fs::write(tmp.path().join("sub/c"), vec![0u8; 10]).unwrap();
        std::os::unix::fs::symlink("a", tmp.path().join("s")).unwrap();
        assert_eq!(tree_size(&Dir::open(tmp.path()).unwrap()).unwrap(), 110);
    }
}
