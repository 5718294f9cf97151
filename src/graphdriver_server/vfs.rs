//! The copy-based driver (moby `daemon/graphdriver/vfs`): each layer is a
//! full directory `<home>/dir/<id>`, a copy of its parent plus its own
//! changes. No mounts, so it works without mount propagation into the box.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use xattr::FileExt;

use super::archive::{self, Quota, WhiteoutFormat};
use super::beneath::{self, Dir, Owner};
use super::changes;
use super::protocol::{Change, LayerId};
use super::{DiffSource, Driver, DriverError, LayerDirs};

pub struct Vfs {
    /// `<home>/dir`: one directory per layer.
    layers: LayerDirs,
}

impl Vfs {
    /// Opens (creating) the layer store below an already pinned home.
    pub fn open(home_path: &Path, home: &Dir) -> Result<Vfs, DriverError> {
        home.mkdir(OsStr::new("dir"), 0o710)
            .map_err(DriverError::io("creating", home_path.join("dir").display()))?;
        let layers = home
            .open_dir(OsStr::new("dir"))
            .map_err(DriverError::io("opening", home_path.join("dir").display()))?;
        Ok(Vfs {
            layers: LayerDirs::new(home_path.join("dir"), layers),
        })
    }

    fn layer(&self, id: &LayerId) -> Result<Dir, DriverError> {
        self.layers.open(id)
    }

    fn parent(&self, parent: Option<&LayerId>) -> Result<Option<Dir>, DriverError> {
        parent.map(|p| self.layer(p)).transpose()
    }
}

impl Driver for Vfs {
    fn name(&self) -> &'static str {
        "vfs"
    }

    fn create(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        _rw: bool,
        quota: &mut Quota,
    ) -> Result<(), DriverError> {
        self.layers.ensure_absent(id)?;
        let parent = self.parent(parent)?;
        if let Some(parent) = &parent {
            let size =
                beneath::tree_size(parent).map_err(DriverError::io("measuring layer", id))?;
            quota.charge(size)?;
        }
        let layer = self.layers.make(id, 0o755)?;
        if let Some(parent) = parent {
            let mut links = HashMap::new();
            copy_tree(&parent, &layer, &layer, Path::new(""), &mut links)
                .map_err(DriverError::io("copying the parent into layer", id))?;
        }
        Ok(())
    }

    fn remove(&self, id: &LayerId) -> Result<(), DriverError> {
        self.layers.remove(id)
    }

    fn get(&self, id: &LayerId) -> Result<PathBuf, DriverError> {
        self.layer(id)?;
        Ok(self.layers.layer_path(id))
    }

    fn put(&self, id: &LayerId) -> Result<(), DriverError> {
        self.layer(id).map(drop)
    }

    fn exists(&self, id: &LayerId) -> bool {
        self.layer(id).is_ok()
    }

    fn status(&self) -> Vec<(String, String)> {
        vec![(
            "Layers".into(),
            self.layers().map_or(0, |l| l.len()).to_string(),
        )]
    }

    fn metadata(&self, id: &LayerId) -> Result<BTreeMap<String, Vec<PathBuf>>, DriverError> {
        self.layer(id)?;
        Ok(BTreeMap::new())
    }

    fn cleanup(&self) -> Result<(), DriverError> {
        Ok(())
    }

    fn changes(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<Vec<Change>, DriverError> {
        let layer = self.layer(id)?;
        let parent = self.parent(parent)?;
        let list = changes::tree_changes(&layer, parent.as_ref())
            .map_err(DriverError::io("comparing layer", id))?;
        Ok(changes::to_wire(&list))
    }

    fn diff(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<DiffSource, DriverError> {
        let layer = self.layer(id)?;
        let items = match self.parent(parent)? {
            None => changes::all_items(&layer),
            Some(parent) => {
                changes::tree_changes(&layer, Some(&parent)).map(|c| changes::to_items(&c))
            }
        }
        .map_err(DriverError::io("comparing layer", id))?;
        Ok(DiffSource { root: layer, items })
    }

    fn apply_diff(
        &self,
        id: &LayerId,
        _parent: Option<&LayerId>,
        tar: &mut dyn Read,
        quota: &mut Quota,
    ) -> Result<u64, DriverError> {
        let layer = self.layer(id)?;
        Ok(archive::apply_layer(
            &layer,
            tar,
            WhiteoutFormat::Plain,
            quota,
        )?)
    }

    fn diff_size(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<u64, DriverError> {
        let layer = self.layer(id)?;
        let parent = self.parent(parent)?;
        let list = changes::tree_changes(&layer, parent.as_ref())
            .map_err(DriverError::io("comparing layer", id))?;
        changes::changes_size(&layer, &list).map_err(DriverError::io("measuring layer", id))
    }

    fn layers(&self) -> Result<Vec<LayerId>, DriverError> {
        self.layers.ids()
    }

    fn size(&self, id: &LayerId) -> Result<u64, DriverError> {
        beneath::tree_size(&self.layer(id)?).map_err(DriverError::io("measuring layer", id))
    }
}

/// Copies `src` into `dst` without following symlinks: files, directories,
/// symlinks, hard links (as hard links), fifos and whiteout devices, with
/// owners, modes, times and `user.*`/`security.capability` xattrs.
fn copy_tree(
    src: &Dir,
    dst: &Dir,
    dst_root: &Dir,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for name in src.names()? {
        let Some(meta) = src.lstat(&name)? else {
            continue;
        };
        let path = rel.join(&name);
        let ft = meta.file_type();
        if ft.is_dir() {
            dst.mkdir(&name, 0o700)?;
            let (s, d) = (src.open_dir(&name)?, dst.open_dir(&name)?);
            copy_xattrs(s.file(), d.file());
            copy_tree(&s, &d, dst_root, &path, links)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    let parent = dst_root.open_rel(first.parent().unwrap_or(Path::new("")))?;
                    let first_name = first.file_name().unwrap_or_default();
                    fs::hard_link(parent.child(first_name)?, dst.child(&name)?)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), path.clone());
            }
            let mut from = src.open_file(&name)?;
            let mut to = dst.create_file(&name, 0o600)?;
            io::copy(&mut from, &mut to)?;
            copy_xattrs(&from, &to);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(src.read_link(&name)?, dst.child(&name)?)?;
        } else if ft.is_fifo() || (ft.is_char_device() && meta.rdev() == 0) {
            let kind = if ft.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFCHR
            };
            mknod(
                &dst.child(&name)?,
                kind,
                Mode::from_bits_truncate(0o600),
                meta.rdev(),
            )?;
        } else {
            // Devices and sockets never enter a layer through ApplyDiff.
            continue;
        }
        dst.set_owner_mode_mtime(&name, Owner::of(&meta))?;
    }
    // The directory's own metadata last: adding children changed its mtime.
    let meta = src.metadata()?;
    let owner = Owner::of(&meta);
    std::os::unix::fs::fchown(dst.file(), Some(owner.uid), Some(owner.gid))?;
    dst.file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            owner.mode & 0o7777,
        ))?;
    if let Some(mtime) = owner.mtime {
        beneath::set_mtime(&dst.path(), mtime)?;
    }
    Ok(())
}

fn copy_xattrs(from: &fs::File, to: &fs::File) {
    let Ok(names) = from.list_xattr() else { return };
    for name in names {
        let keep = name
            .to_str()
            .is_some_and(|n| n.starts_with("user.") || n == "security.capability");
        if let (true, Ok(Some(value))) = (keep, from.get_xattr(&name)) {
            let _ = to.set_xattr(&name, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphdriver_server::archive::test_util::{tar, T};

    fn id(s: &str) -> LayerId {
        LayerId::parse(s).unwrap()
    }

    #[test]
    fn layers_copy_their_parent_and_diff_against_it() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Dir::open(tmp.path()).unwrap();
        let vfs = Vfs::open(tmp.path(), &home).unwrap();
        let mut q = Quota::unlimited();
        vfs.create(&id("base"), None, false, &mut q).unwrap();
        let base = tar(&[
            T::Dir("etc"),
            T::File("etc/passwd", b"root"),
            T::Symlink("bin", "usr/bin"),
        ]);
        let size = vfs
            .apply_diff(&id("base"), None, &mut &base[..], &mut q)
            .unwrap();
        assert_eq!(size, 4);
        assert!(matches!(
            vfs.create(&id("base"), None, false, &mut q),
            Err(DriverError::Exists(_))
        ));

        vfs.create(&id("rw"), Some(&id("base")), true, &mut q)
            .unwrap();
        let dir = vfs.get(&id("rw")).unwrap();
        assert_eq!(dir, tmp.path().join("dir/rw"));
        assert_eq!(fs::read(dir.join("etc/passwd")).unwrap(), b"root");
        assert!(
            vfs.changes(&id("rw"), Some(&id("base")))
                .unwrap()
                .is_empty(),
            "a fresh copy has no changes"
        );

        fs::remove_file(dir.join("etc/passwd")).unwrap();
        fs::write(dir.join("new"), "hi").unwrap();
        let changes = vfs.changes(&id("rw"), Some(&id("base"))).unwrap();
        let got: Vec<_> = changes
            .iter()
            .map(|c| (c.path.as_str(), u8::from(c.kind)))
            .collect();
        assert_eq!(got, vec![("/etc", 0), ("/etc/passwd", 2), ("/new", 1)]);
        assert_eq!(vfs.diff_size(&id("rw"), Some(&id("base"))).unwrap(), 2);

        let source = vfs.diff(&id("rw"), Some(&id("base"))).unwrap();
        let mut out = Vec::new();
        source.write_tar(&mut out).unwrap();
        let names: Vec<String> = ::tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(names, ["etc/", "etc/.wh.passwd", "new"]);

        assert!(matches!(
            vfs.get(&id("nope")),
            Err(DriverError::NotFound(_))
        ));
        vfs.remove(&id("rw")).unwrap();
        assert!(!vfs.exists(&id("rw")));
        assert_eq!(vfs.layers().unwrap(), vec![id("base")]);
    }

    #[test]
    fn copying_a_parent_is_charged_to_the_quota() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Dir::open(tmp.path()).unwrap();
        let vfs = Vfs::open(tmp.path(), &home).unwrap();
        let mut q = Quota::unlimited();
        vfs.create(&id("base"), None, false, &mut q).unwrap();
        vfs.apply_diff(
            &id("base"),
            None,
            &mut &tar(&[T::File("f", &[0; 700])])[..],
            &mut q,
        )
        .unwrap();
        let mut tight = Quota::new(Some(1000), 700);
        let err = vfs
            .create(&id("child"), Some(&id("base")), false, &mut tight)
            .unwrap_err();
        assert!(err.to_string().contains("--max-bytes"), "{err}");
        assert!(!vfs.exists(&id("child")));
    }
}
