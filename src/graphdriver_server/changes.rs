//! What changed between two directory trees (moby `pkg/archive/changes.go`,
//! `ChangesDirs`): the naive diff used by the copy-based driver.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::archive::DiffItem;
use super::beneath::Dir;
use super::protocol::{Change, ChangeKind};

/// The changes that turn `old` (none: an empty tree) into `new`, sorted by
/// path. A directory that differs, or has changes inside, is a Modify listed
/// before its children; a deleted directory is one Delete.
pub fn tree_changes(new: &Dir, old: Option<&Dir>) -> io::Result<Vec<(PathBuf, ChangeKind)>> {
    let mut out = Vec::new();
    compare(new, old, Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn compare(
    new: &Dir,
    old: Option<&Dir>,
    rel: &Path,
    out: &mut Vec<(PathBuf, ChangeKind)>,
) -> io::Result<bool> {
    let before = out.len();
    let names = new.names()?;
    for name in &names {
        let Some(n) = new.lstat(name)? else { continue };
        let path = rel.join(name);
        let o = match old {
            Some(old) => old.lstat(name)?,
            None => None,
        };
        match o {
            None => {
                out.push((path.clone(), ChangeKind::Add));
                if n.is_dir() {
                    compare(&new.open_dir(name)?, None, &path, out)?;
                }
            }
            Some(o) if n.is_dir() && o.is_dir() => {
                let at = out.len();
                let inner = compare(
                    &new.open_dir(name)?,
                    old.map(|d| d.open_dir(name)).transpose()?.as_ref(),
                    &path,
                    out,
                )?;
                if inner || differs(&n, &o) {
                    out.insert(at, (path, ChangeKind::Modify));
                }
            }
            Some(o) => {
                if differs(&n, &o) {
                    out.push((path.clone(), ChangeKind::Modify));
                    if n.is_dir() {
                        compare(&new.open_dir(name)?, None, &path, out)?;
                    }
                }
            }
        }
    }
    if let Some(old) = old {
        let present: HashSet<&OsString> = names.iter().collect();
        for name in old.names()? {
            if !present.contains(&name) {
                out.push((rel.join(&name), ChangeKind::Delete));
            }
        }
    }
    Ok(out.len() > before)
}

/// moby's `statDifferent`: type and mode, owner, device; size and mtime
/// only for non-directories (a zero nanosecond part matches any).
fn differs(n: &Metadata, o: &Metadata) -> bool {
    if n.mode() != o.mode() || n.uid() != o.uid() || n.gid() != o.gid() || n.rdev() != o.rdev() {
        return true;
    }
    if n.is_dir() {
        return false;
    }
    let same_time = n.mtime() == o.mtime()
        && (n.mtime_nsec() == o.mtime_nsec() || n.mtime_nsec() == 0 || o.mtime_nsec() == 0);
    n.size() != o.size() || !same_time
}

/// The wire form: absolute paths.
pub fn to_wire(changes: &[(PathBuf, ChangeKind)]) -> Vec<Change> {
    changes
        .iter()
        .map(|(path, kind)| Change {
            path: Path::new("/").join(path).to_string_lossy().into_owned(),
            kind: *kind,
        })
        .collect()
}

/// The tar items for a change list: deletions become whiteouts.
pub fn to_items(changes: &[(PathBuf, ChangeKind)]) -> Vec<DiffItem> {
    changes
        .iter()
        .map(|(path, kind)| match kind {
            ChangeKind::Delete => DiffItem::Whiteout(path.clone()),
            _ => DiffItem::Entry(path.clone()),
        })
        .collect()
}

/// Every entry of a tree as diff items (a layer without a parent).
pub fn all_items(root: &Dir) -> io::Result<Vec<DiffItem>> {
    Ok(tree_changes(root, None)?
        .into_iter()
        .map(|(path, _)| DiffItem::Entry(path))
        .collect())
}

/// moby's `ChangesSize`: bytes of added or modified regular files, hard
/// links once.
pub fn changes_size(root: &Dir, changes: &[(PathBuf, ChangeKind)]) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for (path, kind) in changes {
        if *kind == ChangeKind::Delete {
            continue;
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let Some(meta) = root.open_rel(parent)?.lstat(name)? else {
            continue;
        };
        if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
            total += meta.size();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn changes_between_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
        for root in [&old, &new] {
            fs::create_dir_all(root.join("etc/sub")).unwrap();
            fs::create_dir_all(root.join("gone/deep")).unwrap();
            fs::write(root.join("etc/same"), "x").unwrap();
            fs::write(root.join("etc/sub/f"), "x").unwrap();
            fs::write(root.join("etc/passwd"), "root").unwrap();
        }
        // Same mtimes on both sides for what is "unchanged".
        for rel in ["etc/same", "etc/sub/f", "etc/sub", "etc"] {
            let m = fs::metadata(old.join(rel)).unwrap();
            super::super::beneath::set_mtime(&new.join(rel), (m.mtime(), m.mtime_nsec())).unwrap();
        }
        fs::remove_dir_all(new.join("gone")).unwrap();
        fs::write(new.join("etc/passwd"), "root:x").unwrap();
        fs::create_dir(new.join("added")).unwrap();
        fs::write(new.join("added/file"), "new").unwrap();

        let changes =
            tree_changes(&Dir::open(&new).unwrap(), Some(&Dir::open(&old).unwrap())).unwrap();
        let wire = to_wire(&changes);
        let got: Vec<(&str, ChangeKind)> = wire.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("/added", ChangeKind::Add),
                ("/added/file", ChangeKind::Add),
                ("/etc", ChangeKind::Modify),
                ("/etc/passwd", ChangeKind::Modify),
                ("/gone", ChangeKind::Delete),
            ]
        );
        let size = changes_size(&Dir::open(&new).unwrap(), &changes).unwrap();
        assert_eq!(size, 6 + 3);
        assert_eq!(
            to_items(&changes)[4],
            DiffItem::Whiteout(PathBuf::from("gone"))
        );
    }
}
