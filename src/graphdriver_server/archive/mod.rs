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

//!
//! - [`apply`]: a tar into a layer directory ([`apply_layer`]);
//! - [`write`](mod@write): a layer's items out as a tar ([`write_tar`], [`overlay_items`]);
//! - [`quota`]: the `--max-bytes` budget writes are charged to.

#![forbid(unsafe_code)]

pub mod apply;
pub mod quota;
#[cfg(test)]
pub(crate) mod test_util;
pub mod write;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub use self::apply::apply_layer;
pub use self::quota::{Quota, QuotaError};
pub use self::write::{is_opaque, overlay_items, write_tar};

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

#[cfg(test)]
mod tests {
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
}
