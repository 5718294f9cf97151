//! Writing a layer's items out as a tar.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor};
use tar::{EntryType, Header, HeaderMode};
use tracing::debug;
use xattr::FileExt;

use super::{tar_name, DiffItem, ALLOWED_XATTRS, OPAQUE_XATTR};
use crate::graphdriver_server::beneath::{self, Dir};

/// The items of an overlay upper directory: whiteout devices and opaque
/// directories become whiteout items, everything else is an entry. Parents
/// come before their children.
pub fn overlay_items(root: &Dir) -> io::Result<Vec<DiffItem>> {
    let mut items = Vec::new();
    overlay_items_in(root, Path::new(""), &mut items)?;
    Ok(items)
}

fn overlay_items_in(dir: &Dir, rel: &Path, items: &mut Vec<DiffItem>) -> io::Result<()> {
    for name in dir.names()? {
        let Some(meta) = dir.lstat(&name)? else {
            continue;
        };
        let path = rel.join(&name);
        if beneath::is_whiteout(&meta) {
            items.push(DiffItem::Whiteout(path));
        } else if meta.is_dir() {
            let child = dir.open_dir(&name)?;
            items.push(DiffItem::Entry(path.clone()));
            if is_opaque(&child) {
                items.push(DiffItem::Opaque(path.clone()));
            }
            overlay_items_in(&child, &path, items)?;
        } else {
            items.push(DiffItem::Entry(path));
        }
    }
    Ok(())
}

/// Whether an (overlay upper) directory carries `trusted.overlay.opaque=y`.
pub fn is_opaque(dir: &Dir) -> bool {
    matches!(dir.file().get_xattr(OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

/// Writes a tar of `items` read from `root`. Deleted and opaque items become
/// `.wh.` entries; hard links inside the set become tar hard links.
pub fn write_tar(root: &Dir, items: &[DiffItem], out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.mode(HeaderMode::Complete);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for item in items {
        let name = tar_name(item);
        let (parent_rel, base) = match item {
            DiffItem::Entry(p) | DiffItem::Whiteout(p) => {
                (p.parent().unwrap_or(Path::new("")), p.file_name())
            }
            DiffItem::Opaque(p) => (p.as_path(), None),
        };
        let parent = root.open_rel(parent_rel)?;
        let mut header = Header::new_gnu();
        match item {
            DiffItem::Whiteout(_) => {
                header.set_entry_type(EntryType::Regular);
                header.set_mode(0o600);
                header.set_size(0);
                header.set_mtime(now());
                builder.append_data(&mut header, &name, io::empty())?;
            }
            DiffItem::Opaque(_) => {
                let meta = parent.metadata()?;
                header.set_entry_type(EntryType::Regular);
                header.set_mode(meta.mode() & 0o777);
                header.set_uid(meta.uid().into());
                header.set_gid(meta.gid().into());
                header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
                header.set_size(0);
                builder.append_data(&mut header, &name, io::empty())?;
            }
            DiffItem::Entry(path) => {
                let base = base.ok_or_else(|| io::Error::other("an entry without a name"))?;
                let Some(meta) = parent.lstat(base)? else {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} vanished while the layer was being read", path.display()),
                    ));
                };
                header.set_metadata_in_mode(&meta, HeaderMode::Complete);
                let ft = meta.file_type();
                if ft.is_dir() {
                    let mut dir_name = name.into_os_string().into_vec();
                    dir_name.push(b'/');
                    append_xattrs(&mut builder, &parent, base)?;
                    builder.append_data(&mut header, OsStr::from_bytes(&dir_name), io::empty())?;
                } else if ft.is_symlink() {
                    let target = parent.read_link(base)?;
                    header.set_size(0);
                    builder.append_link(&mut header, &name, target)?;
                } else if ft.is_file() {
                    if meta.nlink() > 1 {
                        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                            header.set_entry_type(EntryType::Link);
                            header.set_size(0);
                            builder.append_link(&mut header, &name, first)?;
                            continue;
                        }
                        links.insert((meta.dev(), meta.ino()), name.clone());
                    }
                    let file = parent.open_file(base)?;
                    append_xattrs(&mut builder, &parent, base)?;
                    builder.append_data(&mut header, &name, Exactly::new(file, meta.size()))?;
                } else {
                    if ft.is_char_device() || ft.is_block_device() {
                        header.set_device_major(major(meta.rdev()) as u32)?;
                        header.set_device_minor(minor(meta.rdev()) as u32)?;
                    }
                    header.set_size(0);
                    builder.append_data(&mut header, &name, io::empty())?;
                }
            }
        }
    }
    builder.finish()?;
    builder.into_inner()?.flush()
}

/// The xattrs a layer carries ([`ALLOWED_XATTRS`], the ones [`apply_layer`](super::apply_layer)
/// restores) of the child `name`, not following it, as PAX
/// `SCHILY.xattr.NAME` records in front of its entry (what moby's
/// `pkg/archive` and GNU tar write).
fn append_xattrs<W: Write>(
    builder: &mut tar::Builder<W>,
    parent: &Dir,
    name: &OsStr,
) -> io::Result<()> {
    let records = layer_xattrs(&parent.child(name)?)?;
    if records.is_empty() {
        return Ok(());
    }
    builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// `(SCHILY.xattr.NAME, value)` for each allowed xattr of `path` (its last
/// component not followed), sorted by name.
fn layer_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(err) if err.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut records = Vec::new();
    for name in names {
        let Some(text) = name.to_str() else {
            debug!(path = %path.display(), ?name, "skipping an xattr whose name is not UTF-8");
            continue;
        };
        if !ALLOWED_XATTRS.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        // Gone since the listing: nothing to record.
        if let Some(value) = xattr::get(path, &name)? {
            records.push((format!("SCHILY.xattr.{text}"), value));
        }
    }
    records.sort();
    Ok(records)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads exactly `len` bytes: a file that shrank while being read is padded
/// with zeros, one that grew is cut, so the tar stays well-formed.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exactly<R> {
    fn new(inner: R, len: u64) -> Self {
        Exactly { inner, left: len }
    }
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::test_util::{apply, layer, tar, T};
    use super::super::WhiteoutFormat;
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn an_overlay_layer_stores_whiteouts_as_devices_and_opaque_xattrs() {
        let l = layer();
        let top = tar(&[
            T::File("etc/.wh.passwd", b""),
            T::Dir("var/cache"),
            T::File("var/cache/.wh..wh..opq", b""),
            T::File("var/cache/b", b"b"),
        ]);
        apply(&l, &top, WhiteoutFormat::Overlay).unwrap();
        let wh = fs::symlink_metadata(l.path.join("etc/passwd")).unwrap();
        assert!(beneath::is_whiteout(&wh));
        let opq = xattr::get(l.path.join("var/cache"), OPAQUE_XATTR).unwrap();
        assert_eq!(opq.as_deref(), Some(&b"y"[..]));

        // And back out: the items and tar names of the upper dir.
        let items = overlay_items(&l.dir).unwrap();
        assert_eq!(
            items,
            vec![
                DiffItem::Entry(p("etc")),
                DiffItem::Whiteout(p("etc/passwd")),
                DiffItem::Entry(p("var")),
                DiffItem::Entry(p("var/cache")),
                DiffItem::Opaque(p("var/cache")),
                DiffItem::Entry(p("var/cache/b")),
            ]
        );
        let mut out = Vec::new();
        write_tar(&l.dir, &items, &mut out).unwrap();
        let names: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/.wh.passwd",
                "var/",
                "var/cache/",
                "var/cache/.wh..wh..opq",
                "var/cache/b"
            ]
        );
    }

    /// The `SCHILY.xattr.*` records of the tar entry `name`.
    fn tar_xattrs(bytes: &[u8], name: &str) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path_bytes().as_ref() == name.as_bytes())
            .map(|mut e| {
                e.pax_extensions()
                    .unwrap()
                    .map(|exts| {
                        exts.map(|x| x.unwrap())
                            .filter(|x| x.key_bytes().starts_with(b"SCHILY.xattr."))
                            .map(|x| (x.key().unwrap().to_string(), x.value_bytes().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| panic!("{name} is not in the tar"))
    }

    #[test]
    fn user_xattrs_survive_apply_and_diff() {
        for format in [WhiteoutFormat::Overlay, WhiteoutFormat::Plain] {
            let l = layer();
            let bytes = tar(&[
                T::Dir("etc"),
                T::XattrFile(
                    "etc/tagged",
                    b"data",
                    &[("user.test", b"42"), ("trusted.overlay.opaque", b"y")],
                ),
                T::File("etc/plain", b"plain"),
            ]);
            apply(&l, &bytes, format).unwrap();
            let path = l.path.join("etc/tagged");
            assert_eq!(
                xattr::get(&path, "user.test").unwrap().as_deref(),
                Some(&b"42"[..])
            );
            // Not a layer's to set: it would make the file an opaque directory marker.
            assert_eq!(xattr::get(&path, "trusted.overlay.opaque").unwrap(), None);
            xattr::set(l.path.join("etc"), "user.dir", b"d").unwrap();

            let mut out = Vec::new();
            write_tar(&l.dir, &overlay_items(&l.dir).unwrap(), &mut out).unwrap();
            let entry = |name: &str| tar_xattrs(&out, name);
            assert_eq!(
                entry("etc/tagged"),
                vec![("SCHILY.xattr.user.test".to_string(), b"42".to_vec())],
                "{format:?}"
            );
            assert_eq!(
                entry("etc/"),
                vec![("SCHILY.xattr.user.dir".to_string(), b"d".to_vec())]
            );
            assert!(entry("etc/plain").is_empty());

            // And applied again elsewhere, the xattr is back.
            let again = layer();
            apply(&again, &out, format).unwrap();
            assert_eq!(
                xattr::get(again.path.join("etc/tagged"), "user.test")
                    .unwrap()
                    .as_deref(),
                Some(&b"42"[..])
            );
        }
    }
}
