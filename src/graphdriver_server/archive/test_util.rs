//! Builds layer tars, hostile ones included, in memory, and layer
//! directories to apply them to.

use std::fs;
use std::io;
use std::path::PathBuf;

use tar::{EntryType, Header};

use super::{apply_layer, ArchiveError, Quota, WhiteoutFormat};
use crate::graphdriver_server::beneath::Dir;

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

pub struct Layer {
    _tmp: tempfile::TempDir,
    pub outside: PathBuf,
    pub path: PathBuf,
    pub dir: Dir,
}

/// An empty layer directory, with a sibling `outside` that must stay untouched.
pub fn layer() -> Layer {
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

/// Applies `bytes` to `l` without a limit.
pub fn apply(l: &Layer, bytes: &[u8], format: WhiteoutFormat) -> Result<u64, ArchiveError> {
    apply_layer(&l.dir, bytes, format, &mut Quota::unlimited())
}
