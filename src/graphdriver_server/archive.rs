//! Layer tars: applying an untrusted one into a layer directory, and writing
//! a layer's changes out as one.
//!
//! Layer tars carry deletions in the aufs/OCI whiteout format (moby
//! `pkg/archive/whiteouts.go`, the OCI image-spec "Whiteouts" section):
//! `DIR/.wh.NAME` deletes `DIR/NAME` from the layers below, and
//! `DIR/.wh..wh..opq` hides everything the layers below have in `DIR`.
//! On disk an overlay upper directory stores the same facts as a character
//! device 0:0 named `NAME` and a `trusted.overlay.opaque=y` xattr on `DIR`
//! (kernel `Documentation/filesystems/overlayfs.rst`). [`WhiteoutFormat`]
//! says which form the target directory wants.
//!
//! The tar comes from the container, so it is hostile: entries that are
//! absolute, contain `..`, write through a symlink (every parent directory
//! is entered with `O_NOFOLLOW`, see [`super::beneath`]), or make device
//! nodes other than whiteouts are refused, and the bytes written are charged
//! to the container's [`Quota`].

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use tar::{EntryType, Header, HeaderMode};
use tracing::debug;
use xattr::FileExt;

use super::beneath::{self, Dir, Owner};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Xattr namespaces a layer tar may set; `trusted.*` (overlay's own
/// `opaque`, `redirect`, `metacopy`) and `security.selinux` stay ours.
const ALLOWED_XATTRS: [&str; 2] = ["user.", "security.capability"];

/// How deletions are stored in the directory a tar is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// An overlay upper dir: whiteout devices and opaque xattrs.
    Overlay,
    /// A full copy of the parent (vfs): deletions are carried out.
    Plain,
}

/// What a tar entry's name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarPath {
    /// An ordinary entry at this layer-relative path (empty: the root).
    Entry(PathBuf),
    /// `.wh.NAME`: this layer-relative path is deleted.
    Whiteout(PathBuf),
    /// `.wh..wh..opq`: this directory hides what lower layers have in it.
    Opaque(PathBuf),
    /// Another `.wh..wh.*` name (aufs hard-link directory): skipped.
    Meta,
}

/// One item of a layer diff, in the order it goes into the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffItem {
    /// The file, directory, symlink… at this layer-relative path.
    Entry(PathBuf),
    /// This path was deleted.
    Whiteout(PathBuf),
    /// This directory is opaque.
    Opaque(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("layer tar entry {path:?} is refused: {reason}")]
    Refused { path: String, reason: &'static str },
    #[error("layer tar entry {path:?} is refused: it would write through a symlink or a non-directory in the layer ({source})")]
    Parent { path: String, source: io::Error },
    #[error("layer tar entry {path:?} is refused: it is a {kind} device {major}:{minor}, and only whiteouts (character device 0:0) may be created in a layer")]
    Device {
        path: String,
        kind: &'static str,
        major: u64,
        minor: u64,
    },
    #[error("layer tar entry {path:?} is a hard link to {target:?}, which is not a file already in this layer")]
    BadLink { path: String, target: String },
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("reading the layer tar failed: {0}")]
    Read(io::Error),
    #[error("{op} {path:?} in the layer failed: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.display().to_string();
    move |source| ArchiveError::Io { op, path, source }
}

/// The per-container byte budget (`--max-bytes`), charged as data is written.
#[derive(Debug, Clone)]
pub struct Quota {
    limit: Option<u64>,
    used: u64,
    charged: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the container's storage limit of {limit} bytes (--max-bytes) is reached: {used} bytes are in use and this layer needs more than the {available} left; remove unused images and containers in the box (`docker system prune -a`) or raise --max-bytes")]
pub struct QuotaError {
    pub limit: u64,
    pub used: u64,
    pub available: u64,
}

impl Quota {
    /// `used` is what the container's layers take before this operation.
    pub fn new(limit: Option<u64>, used: u64) -> Quota {
        Quota {
            limit,
            used,
            charged: 0,
        }
    }

    pub fn unlimited() -> Quota {
        Quota::new(None, 0)
    }

    /// Takes `bytes` from the budget, or refuses without taking any.
    pub fn charge(&mut self, bytes: u64) -> Result<(), QuotaError> {
        if let Some(limit) = self.limit {
            let total = self.used.saturating_add(self.charged);
            if total.saturating_add(bytes) > limit {
                return Err(QuotaError {
                    limit,
                    used: total,
                    available: limit.saturating_sub(total),
                });
            }
        }
        self.charged = self.charged.saturating_add(bytes);
        Ok(())
    }

    /// What this operation has written so far.
    pub fn charged(&self) -> u64 {
        self.charged
    }
}

/// Reads a tar entry name: relative, no `..`, `.` components dropped, and
/// whiteout names recognised. Pure.
pub fn parse_tar_path(raw: &[u8]) -> Result<TarPath, ArchiveError> {
    let refused = |reason| ArchiveError::Refused {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    let path = Path::new(OsStr::from_bytes(raw));
    let mut rel = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused("it contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused("it is an absolute path"))
            }
        }
    }
    let Some(name) = rel.file_name().map(|n| n.as_bytes().to_vec()) else {
        return Ok(TarPath::Entry(rel));
    };
    let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    if name == OPAQUE_WHITEOUT.as_bytes() {
        return Ok(TarPath::Opaque(dir));
    }
    if name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
        return Ok(TarPath::Meta);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refused("it is a whiteout of no name, `.` or `..`"));
        }
        return Ok(TarPath::Whiteout(dir.join(OsStr::from_bytes(hidden))));
    }
    Ok(TarPath::Entry(rel))
}

/// The tar name of a diff item: the reverse of [`parse_tar_path`]. Pure.
pub fn tar_name(item: &DiffItem) -> PathBuf {
    match item {
        DiffItem::Entry(path) => path.clone(),
        DiffItem::Whiteout(path) => {
            let mut name = OsString::from(WHITEOUT_PREFIX);
            name.push(path.file_name().unwrap_or_default());
            path.parent().unwrap_or(Path::new("")).join(name)
        }
        DiffItem::Opaque(dir) => dir.join(OPAQUE_WHITEOUT),
    }
}

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

/// The xattrs a layer carries ([`ALLOWED_XATTRS`], the ones [`apply_layer`]
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
pub(crate) mod test_util {
    //! Builds layer tars, hostile ones included, in memory.
    use super::*;

    pub enum T<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Symlink(&'a str, &'a str),
        Link(&'a str, &'a str),
        Dev(&'a str, EntryType, u32, u32),
        /// A path written raw into the header (no checks by the tar crate).
        RawFile(&'a [u8], &'a [u8]),
        /// A file with PAX `SCHILY.xattr.NAME` records.
        XattrFile(&'a str, &'a [u8], &'a [(&'a str, &'a [u8])]),
    }

    pub fn tar(entries: &[T<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            match e {
                T::Dir(p) => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                T::File(p, data) => {
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                T::Symlink(p, target) => {
                    h.set_entry_type(EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                T::Link(p, target) => {
                    h.set_entry_type(EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                T::Dev(p, kind, maj, min) => {
                    h.set_entry_type(*kind);
                    h.set_size(0);
                    h.set_device_major(*maj).unwrap();
                    h.set_device_minor(*min).unwrap();
                    b.append_data(&mut h, p, io::empty()).unwrap();
                }
                T::XattrFile(p, data, xattrs) => {
                    let records: Vec<(String, &[u8])> = xattrs
                        .iter()
                        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                        .collect();
                    b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                        .unwrap();
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                T::RawFile(raw, data) => {
                    h.set_size(data.len() as u64);
                    h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{tar, T};
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn tar_names_become_layer_paths_and_whiteouts() {
        let table: [(&str, TarPath); 11] = [
            ("etc/hosts", TarPath::Entry(p("etc/hosts"))),
            ("./etc/hosts", TarPath::Entry(p("etc/hosts"))),
            ("etc/./x/", TarPath::Entry(p("etc/x"))),
            ("./", TarPath::Entry(p(""))),
            ("etc/.wh.passwd", TarPath::Whiteout(p("etc/passwd"))),
            (".wh.top", TarPath::Whiteout(p("top"))),
            ("var/cache/.wh..wh..opq", TarPath::Opaque(p("var/cache"))),
            (".wh..wh..opq", TarPath::Opaque(p(""))),
            (".wh..wh.plnk/123", TarPath::Entry(p(".wh..wh.plnk/123"))),
            (".wh..wh.plnk", TarPath::Meta),
            ("a/.wh..wh.aufs", TarPath::Meta),
        ];
        for (raw, want) in table {
            assert_eq!(parse_tar_path(raw.as_bytes()).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn escaping_tar_names_are_refused() {
        for raw in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "/",
            "a/.wh..",
            "a/.wh...",
            ".wh.",
        ] {
            let err = parse_tar_path(raw.as_bytes()).unwrap_err();
            assert!(matches!(err, ArchiveError::Refused { .. }), "{raw}: {err}");
        }
    }

    #[test]
    fn diff_items_become_tar_names() {
        let table = [
            (DiffItem::Entry(p("etc/hosts")), "etc/hosts"),
            (DiffItem::Whiteout(p("etc/passwd")), "etc/.wh.passwd"),
            (DiffItem::Whiteout(p("top")), ".wh.top"),
            (DiffItem::Opaque(p("var/cache")), "var/cache/.wh..wh..opq"),
            (DiffItem::Opaque(p("")), ".wh..wh..opq"),
        ];
        for (item, want) in table {
            assert_eq!(tar_name(&item), p(want));
            // And back.
            let back = parse_tar_path(want.as_bytes()).unwrap();
            let expected = match item {
                DiffItem::Entry(x) => TarPath::Entry(x),
                DiffItem::Whiteout(x) => TarPath::Whiteout(x),
                DiffItem::Opaque(x) => TarPath::Opaque(x),
            };
            assert_eq!(back, expected);
        }
    }

    #[test]
    fn quota_refuses_past_the_limit_without_charging() {
        let mut q = Quota::new(Some(100), 40);
        q.charge(50).unwrap();
        let err = q.charge(11).unwrap_err();
        assert_eq!(
            err,
            QuotaError {
                limit: 100,
                used: 90,
                available: 10
            }
        );
        assert!(err.to_string().contains("--max-bytes"));
        q.charge(10).unwrap();
        assert_eq!(q.charged(), 60);
        let mut free = Quota::unlimited();
        free.charge(u64::MAX).unwrap();
    }

    struct Layer {
        _tmp: tempfile::TempDir,
        outside: PathBuf,
        path: PathBuf,
        dir: Dir,
    }

    fn layer() -> Layer {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("layer");
        let outside = tmp.path().join("outside");
        fs::create_dir(&path).unwrap();
        fs::create_dir(&outside).unwrap();
        let dir = Dir::open(&path).unwrap();
        Layer {
            outside,
            path,
            dir,
            _tmp: tmp,
        }
    }

    fn apply(l: &Layer, bytes: &[u8], format: WhiteoutFormat) -> Result<u64, ArchiveError> {
        apply_layer(&l.dir, bytes, format, &mut Quota::unlimited())
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
