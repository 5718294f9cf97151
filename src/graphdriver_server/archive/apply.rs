//! Applying an untrusted layer tar into a layer directory.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use tar::{EntryType, Header};
use tracing::debug;
use xattr::FileExt;

use super::{
    io_err, parse_tar_path, ArchiveError, Quota, TarPath, WhiteoutFormat, ALLOWED_XATTRS,
    OPAQUE_XATTR,
};
use crate::graphdriver_server::beneath::{self, Dir, Owner};

/// Applies a layer tar to `root`; returns the bytes of file data written
/// (the layer size the daemon records).
pub fn apply_layer(
    root: &Dir,
    tar: impl Read,
    format: WhiteoutFormat,
    quota: &mut Quota,
) -> Result<u64, ArchiveError> {
    let mut archive = tar::Archive::new(tar);
    let mut unpacked: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, (i64, i64))> = Vec::new();
    let mut buf = vec![0; COPY_BUF];
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        match parse_tar_path(&raw)? {
            TarPath::Meta => debug!(path = %shown, "skipping aufs meta entry"),
            TarPath::Opaque(dir) => {
                let target = enter(root, &dir, &shown)?;
                match format {
                    WhiteoutFormat::Overlay => target
                        .file()
                        .set_xattr(OPAQUE_XATTR, b"y")
                        .map_err(io_err("setting the opaque xattr on", &dir))?,
                    WhiteoutFormat::Plain => {
                        for name in target.names().map_err(io_err("listing", &dir))? {
                            if !unpacked.contains(&dir.join(&name)) {
                                target.remove(&name).map_err(io_err("removing", &dir))?;
                            }
                        }
                    }
                }
            }
            TarPath::Whiteout(path) => {
                let (parent, name) = enter_parent(root, &path, &shown)?;
                parent.remove(name).map_err(io_err("removing", &path))?;
                if format == WhiteoutFormat::Overlay {
                    make_whiteout(&parent, name).map_err(io_err("making a whiteout at", &path))?;
                    let owner = header_owner(entry.header(), 0o600);
                    parent
                        .set_owner_mode_mtime(name, owner)
                        .map_err(io_err("setting the owner of", &path))?;
                }
                unpacked.insert(path);
            }
            TarPath::Entry(path) if path.as_os_str().is_empty() => {
                debug!("skipping the layer root entry")
            }
            TarPath::Entry(path) => {
                let (parent, name) = enter_parent(root, &path, &shown)?;
                let kind = entry.header().entry_type();
                let owner = header_owner(entry.header(), 0o644);
                let existing = parent.lstat(name).map_err(io_err("inspecting", &path))?;
                let keep_dir =
                    kind == EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir());
                if existing.is_some() && !keep_dir {
                    parent.remove(name).map_err(io_err("replacing", &path))?;
                }
                match kind {
                    EntryType::Directory => {
                        if !keep_dir {
                            parent
                                .mkdir(name, 0o700)
                                .map_err(io_err("creating", &path))?;
                        }
                        if let Some(mtime) = owner.mtime {
                            dir_times.push((path.clone(), mtime));
                        }
                    }
                    EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                        quota.charge(entry.size())?;
                        let mut file = parent
                            .create_file(name, 0o600)
                            .map_err(io_err("creating", &path))?;
                        copy_file(&mut entry, &mut file, &mut buf, &path)?;
                    }
                    EntryType::Symlink => {
                        let target = entry
                            .link_name_bytes()
                            .map(|t| OsStr::from_bytes(&t).to_os_string())
                            .unwrap_or_default();
                        std::os::unix::fs::symlink(
                            &target,
                            parent.child(name).map_err(io_err("linking", &path))?,
                        )
                        .map_err(io_err("creating the symlink", &path))?;
                    }
                    EntryType::Link => {
                        let target_raw = entry.link_name_bytes().unwrap_or_default().into_owned();
                        hard_link(root, &parent, name, &target_raw, &shown)?;
                    }
                    EntryType::Char | EntryType::Block => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        if kind == EntryType::Char && major == 0 && minor == 0 {
                            make_whiteout(&parent, name).map_err(io_err("making", &path))?;
                        } else {
                            return Err(ArchiveError::Device {
                                path: shown,
                                kind: if kind == EntryType::Char {
                                    "character"
                                } else {
                                    "block"
                                },
                                major: major.into(),
                                minor: minor.into(),
                            });
                        }
                    }
                    EntryType::Fifo => {
                        mknod(
                            &parent.child(name).map_err(io_err("creating", &path))?,
                            SFlag::S_IFIFO,
                            Mode::from_bits_truncate(0o600),
                            0,
                        )
                        .map_err(|e| io_err("creating the fifo", &path)(e.into()))?;
                    }
                    other => {
                        debug!(path = %shown, kind = ?other, "skipping unsupported tar entry type");
                        continue;
                    }
                }
                if kind != EntryType::Link {
                    let owner = Owner {
                        mtime: if kind == EntryType::Directory {
                            None
                        } else {
                            owner.mtime
                        },
                        ..owner
                    };
                    parent
                        .set_owner_mode_mtime(name, owner)
                        .map_err(io_err("setting owner, mode and times of", &path))?;
                    if kind != EntryType::Symlink {
                        apply_xattrs(&mut entry, &parent, name, &path)?;
                    }
                }
                unpacked.insert(path);
            }
        }
    }
    // Directory times last, deepest first: creating children changed them.
    for (path, mtime) in dir_times.iter().rev() {
        if let Ok((parent, name)) = enter_parent(root, path, "") {
            if let Ok(child) = parent.child(name) {
                let _ = beneath::set_mtime(&child, *mtime);
            }
        }
    }
    Ok(quota.charged())
}

/// File data is written in pieces this big: the tar arrives in frames of a
/// few KiB, and one write per frame costs syscalls a bigger buffer saves.
const COPY_BUF: usize = 1 << 20;

/// Copies `from` to its end into `to`, filling `buf` before each write.
fn copy_file(
    from: &mut impl Read,
    to: &mut fs::File,
    buf: &mut [u8],
    path: &Path,
) -> Result<(), ArchiveError> {
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(ArchiveError::Read(err)),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        to.write_all(&buf[..filled])
            .map_err(io_err("writing", path))?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

fn header_owner(header: &Header, default_mode: u32) -> Owner {
    Owner {
        uid: header
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0),
        gid: header
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0),
        mode: header.mode().unwrap_or(default_mode),
        mtime: header
            .mtime()
            .ok()
            .and_then(|m| i64::try_from(m).ok())
            .map(|m| (m, 0)),
    }
}

/// Opens (creating if missing) a layer-relative directory.
fn enter(root: &Dir, dir: &Path, shown: &str) -> Result<Dir, ArchiveError> {
    root.create_rel(dir, 0o755)
        .map_err(|source| ArchiveError::Parent {
            path: shown.to_string(),
            source,
        })
}

fn enter_parent<'p>(
    root: &Dir,
    path: &'p Path,
    shown: &str,
) -> Result<(Dir, &'p OsStr), ArchiveError> {
    let name = path.file_name().ok_or_else(|| ArchiveError::Refused {
        path: shown.to_string(),
        reason: "it has no file name",
    })?;
    let parent = enter(root, path.parent().unwrap_or(Path::new("")), shown)?;
    Ok((parent, name))
}

fn make_whiteout(parent: &Dir, name: &OsStr) -> io::Result<()> {
    mknod(
        &parent.child(name)?,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        makedev(0, 0),
    )
    .map_err(io::Error::from)
}

fn hard_link(
    root: &Dir,
    parent: &Dir,
    name: &OsStr,
    target_raw: &[u8],
    shown: &str,
) -> Result<(), ArchiveError> {
    let bad = || ArchiveError::BadLink {
        path: shown.to_string(),
        target: String::from_utf8_lossy(target_raw).into_owned(),
    };
    let TarPath::Entry(target) = parse_tar_path(target_raw)? else {
        return Err(bad());
    };
    let target_name = target.file_name().ok_or_else(bad)?;
    let target_parent = root
        .open_rel(target.parent().unwrap_or(Path::new("")))
        .map_err(|_| bad())?;
    match target_parent.lstat(target_name).map_err(|_| bad())? {
        Some(meta) if !meta.is_dir() => {}
        _ => return Err(bad()),
    }
    let from = target_parent.child(target_name).map_err(|_| bad())?;
    let to = parent.child(name).map_err(|_| bad())?;
    // linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
    fs::hard_link(from, to).map_err(io_err("hard-linking", Path::new(shown)))
}

fn apply_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    parent: &Dir,
    name: &OsStr,
    path: &Path,
) -> Result<(), ArchiveError> {
    let Some(extensions) = entry.pax_extensions().map_err(ArchiveError::Read)? else {
        return Ok(());
    };
    for ext in extensions {
        let ext = ext.map_err(ArchiveError::Read)?;
        let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
            continue;
        };
        let key = OsStr::from_bytes(key);
        let allowed = ALLOWED_XATTRS
            .iter()
            .any(|p| key.as_bytes().starts_with(p.as_bytes()));
        if !allowed {
            debug!(path = %path.display(), ?key, "skipping xattr outside the allowed namespaces");
            continue;
        }
        let child = parent
            .child(name)
            .map_err(io_err("setting an xattr on", path))?;
        xattr::set(child, key, ext.value_bytes()).map_err(io_err("setting an xattr on", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::fs::MetadataExt;

    use super::super::test_util::{apply, layer, tar, T};
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn a_plain_layer_applies_files_dirs_links_and_deletions() {
        let l = layer();
        let base = tar(&[
            T::Dir("etc"),
            T::File("etc/passwd", b"root:x:0:0"),
            T::File("etc/hosts", b"127.0.0.1"),
            T::Symlink("etc/link", "/etc/passwd"),
            T::Link("etc/hard", "etc/hosts"),
            T::Dir("var/cache"),
            T::File("var/cache/a", b"a"),
        ]);
        assert_eq!(apply(&l, &base, WhiteoutFormat::Plain).unwrap(), 10 + 9 + 1);
        assert_eq!(fs::read(l.path.join("etc/passwd")).unwrap(), b"root:x:0:0");
        assert_eq!(
            fs::read_link(l.path.join("etc/link")).unwrap(),
            p("/etc/passwd")
        );
        assert_eq!(
            fs::metadata(l.path.join("etc/hard")).unwrap().ino(),
            fs::metadata(l.path.join("etc/hosts")).unwrap().ino()
        );

        let top = tar(&[
            T::File("etc/.wh.passwd", b""),
            T::Dir("var/cache"),
            T::File("var/cache/.wh..wh..opq", b""),
            T::File("var/cache/b", b"b"),
        ]);
        apply(&l, &top, WhiteoutFormat::Plain).unwrap();
        assert!(!l.path.join("etc/passwd").exists());
        assert!(!l.path.join("var/cache/a").exists());
        assert!(l.path.join("var/cache/b").exists());
        assert!(!l.path.join("etc/.wh.passwd").exists());
    }

    fn hostile_cases(outside: &str) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("dotdot", tar(&[T::RawFile(b"../x", b"evil")])),
            (
                "nested dotdot",
                tar(&[T::Dir("a"), T::RawFile(b"a/../../x", b"evil")]),
            ),
            ("absolute", tar(&[T::RawFile(b"/abs/x", b"evil")])),
            (
                "through an absolute symlink",
                tar(&[T::Symlink("esc", outside), T::File("esc/x", b"evil")]),
            ),
            (
                "through a relative symlink",
                tar(&[T::Symlink("esc", "../outside"), T::File("esc/x", b"evil")]),
            ),
            (
                "whiteout through a symlink",
                tar(&[T::Symlink("esc", outside), T::File("esc/.wh.keep", b"")]),
            ),
            (
                "opaque through a symlink",
                tar(&[T::Symlink("esc", outside), T::File("esc/.wh..wh..opq", b"")]),
            ),
            ("hard link out", tar(&[T::Link("x", "../outside/keep")])),
            (
                "hard link through a symlink",
                tar(&[T::Symlink("esc", outside), T::Link("x", "esc/keep")]),
            ),
            ("char device", tar(&[T::Dev("null", EntryType::Char, 1, 3)])),
            (
                "block device",
                tar(&[T::Dev("sda", EntryType::Block, 8, 0)]),
            ),
        ]
    }

    #[test]
    fn hostile_tars_are_refused_and_write_nothing_outside() {
        for format in [WhiteoutFormat::Overlay, WhiteoutFormat::Plain] {
            let probe = layer();
            let count = hostile_cases(probe.outside.to_str().unwrap()).len();
            for i in 0..count {
                let l = layer();
                fs::write(l.outside.join("keep"), b"keep").unwrap();
                let (what, bytes) = hostile_cases(l.outside.to_str().unwrap()).swap_remove(i);
                let err = apply(&l, &bytes, format).unwrap_err();
                let names: Vec<_> = fs::read_dir(&l.outside)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(
                    names,
                    vec![OsString::from("keep")],
                    "{what}: wrote outside ({err})"
                );
                assert_eq!(fs::read(l.outside.join("keep")).unwrap(), b"keep", "{what}");
                assert!(!l.path.parent().unwrap().join("x").exists(), "{what}");
                let msg = err.to_string();
                assert!(
                    msg.contains("refused") || msg.contains("hard link"),
                    "{what}: {msg}"
                );
            }
        }
    }

    #[test]
    fn whiteout_devices_in_a_tar_are_allowed() {
        let l = layer();
        apply(
            &l,
            &tar(&[T::Dev("gone", EntryType::Char, 0, 0)]),
            WhiteoutFormat::Overlay,
        )
        .unwrap();
        assert!(beneath::is_whiteout(
            &fs::symlink_metadata(l.path.join("gone")).unwrap()
        ));
    }

    #[test]
    fn the_quota_stops_a_layer_that_is_too_big() {
        let l = layer();
        let bytes = tar(&[T::File("a", &[1; 600]), T::File("b", &[2; 600])]);
        let mut quota = Quota::new(Some(1000), 100);
        let err = apply_layer(&l.dir, &bytes[..], WhiteoutFormat::Plain, &mut quota).unwrap_err();
        assert!(matches!(err, ArchiveError::Quota(_)), "{err}");
        assert!(!l.path.join("b").exists());
    }
}
