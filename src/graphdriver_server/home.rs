//! The Home: where the Home of the daemon's `Init` goes on the host
//! (re-rooted under `<root>/<container>`), how it is opened without following
//! anything the box planted, which driver's layers it holds, and the record
//! a restarted server resumes from.

#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::beneath::Dir;
use super::overlay::{Mounter, Overlay};
use super::vfs::Vfs;
use super::{Driver, DriverError, DriverKind};

/// The file in a home that records which driver made it (IDs cannot start with `.`).
const DRIVER_MARKER: &str = ".dindbox-driver";
/// The file in `<root>/<container>` that records the last Init's Home, so a
/// restarted server serves the daemon's next call without a new Init (the
/// daemon calls Init only when it starts). Written by the box too: read
/// without following symlinks and validated like any Init.
pub const INIT_RECORD: &str = ".dindbox-init-home";
/// The longest record read back.
const MAX_RECORD: u64 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HomeError {
    #[error("Init Home {0:?} is not an absolute path")]
    Relative(String),
    #[error("Init Home {0:?} contains `..`")]
    DotDot(String),
    #[error("Init Home {home:?} is not below {prefix}, where this box's storage is mounted (the server's --container-prefix); run the inner dockerd with its data-root there")]
    Outside { home: String, prefix: String },
}

/// The part of the requested Home below the container prefix: absolute,
/// no `..`, `.` and doubled slashes dropped, strictly below the prefix. Pure.
pub fn reroot(prefix: &Path, home: &str) -> Result<PathBuf, HomeError> {
    let path = Path::new(home);
    if !path.is_absolute() {
        return Err(HomeError::Relative(home.to_string()));
    }
    let mut clean = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => return Err(HomeError::DotDot(home.to_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    match clean.strip_prefix(prefix) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel.to_path_buf()),
        _ => Err(HomeError::Outside {
            home: home.to_string(),
            prefix: prefix.display().to_string(),
        }),
    }
}

/// Why a re-rooted Home could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenHomeError {
    #[error("cannot open the protected root {root} (-R): {source}")]
    Root { root: String, source: io::Error },
    #[error("cannot open {area}: {source}")]
    Area { area: String, source: io::Error },
    #[error("cannot open Init Home {home}: a symlink or a non-directory is in the way (symlinks are not followed here): {source}")]
    InTheWay { home: String, source: io::Error },
    #[error("resolving {path}: {source}")]
    Resolve { path: String, source: io::Error },
    #[error("Init Home {rel} resolves to {resolved}, outside {area}")]
    Outside {
        rel: String,
        resolved: String,
        area: String,
    },
}

/// Opens (creating) `<root>/<container>/<rel>` one component at a time
/// without following symlinks, then checks its canonical path is inside
/// `<root>/<container>`. Returns the canonical host path and the open dir.
pub fn open_home(
    root: &Path,
    container: &str,
    rel: &Path,
) -> Result<(PathBuf, Dir), OpenHomeError> {
    let root_dir = Dir::open(root).map_err(|source| OpenHomeError::Root {
        root: root.display().to_string(),
        source,
    })?;
    let area = root_dir
        .create_rel(Path::new(container), 0o700)
        .map_err(|source| OpenHomeError::Area {
            area: format!("{}/{container}", root.display()),
            source,
        })?;
    let home = area
        .create_rel(rel, 0o700)
        .map_err(|source| OpenHomeError::InTheWay {
            home: format!("{}/{container}/{}", root.display(), rel.display()),
            source,
        })?;
    let canonical = |path: PathBuf| {
        std::fs::canonicalize(&path).map_err(|source| OpenHomeError::Resolve {
            path: path.display().to_string(),
            source,
        })
    };
    let area_path = canonical(area.path())?;
    let home_path = canonical(home.path())?;
    if !home_path.starts_with(&area_path) {
        return Err(OpenHomeError::Outside {
            rel: rel.display().to_string(),
            resolved: home_path.display().to_string(),
            area: area_path.display().to_string(),
        });
    }
    Ok((home_path, home))
}

/// The mount holding `path` (the longest mount point above it in
/// `/proc/self/mountinfo` text) and whether it propagates mounts as a
/// shared peer group member. Pure.
pub fn shared_propagation(mountinfo: &str, path: &Path) -> Option<(String, bool)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = crate::mountinfo::unescape(fields.get(4)?);
            let separator = fields.iter().position(|f| *f == "-")?;
            let shared = fields[6..separator]
                .iter()
                .any(|f| f.starts_with("shared:"));
            path.starts_with(&mount_point)
                .then_some((mount_point, shared))
        })
        // The last of equal mount points is the one on top.
        .fold(None, |best: Option<(String, bool)>, cur| match &best {
            Some((b, _)) if b.len() > cur.0.len() => best,
            _ => Some(cur),
        })
}

/// Warns when overlay mounts made in `host_home` cannot reach the box.
pub fn warn_unless_shared(host_home: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some((mount_point, false)) = shared_propagation(&mountinfo, host_home) {
        warn!(
            home = %host_home.display(),
            mount = %mount_point,
            "the storage is not on a shared mount, so overlay mounts made here will not reach the box; \
             on the host run `mount --bind ROOT/CONTAINER ROOT/CONTAINER && mount --make-shared ROOT/CONTAINER` \
             and bind it into the box with rslave propagation"
        );
    }
}

/// `<root>/<container>`, opened without following symlinks.
fn area(root: &Path, container: &str) -> io::Result<Dir> {
    Dir::open(root)?.open_rel(Path::new(container))
}

/// Records the Home of an Init (see [`INIT_RECORD`]).
pub fn record(root: &Path, container: &str, home: &str) -> io::Result<()> {
    let area = area(root, container)?;
    let name = OsStr::new(INIT_RECORD);
    area.remove(name)?;
    area.create_file(name, 0o600)?.write_all(home.as_bytes())
}

/// The Home the previous server process was given; `None` when there is no
/// record. The box can write it: it is only a request, checked like an Init.
pub fn recorded(root: &Path, container: &str) -> io::Result<Option<String>> {
    let file = match area(root, container).and_then(|area| area.open_file(OsStr::new(INIT_RECORD)))
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut home = String::new();
    file.take(MAX_RECORD).read_to_string(&mut home)?;
    Ok(Some(home))
}

/// Why a Home's driver could not be started.
#[derive(Debug, thiserror::Error)]
pub enum OpenDriverError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("{home} holds layers of the {recorded} driver; start the server with --driver {recorded}, or remove that directory to start afresh")]
    Mismatch { home: String, recorded: String },
    #[error("recording the driver in {home}: {source}")]
    Record { home: String, source: io::Error },
}

/// The driver for a Home: the one asked for (`--driver`), else the one
/// recorded in it, else overlay where the kernel allows it, else vfs. A new
/// Home records its driver; a Home of the other driver is refused.
pub fn open_driver(
    asked: Option<DriverKind>,
    mounter: Arc<dyn Mounter>,
    host_home: &Path,
    home: &Dir,
) -> Result<Arc<dyn Driver>, OpenDriverError> {
    let marker = OsStr::new(DRIVER_MARKER);
    let recorded = home.open_file(marker).ok().and_then(|mut f| {
        let mut text = String::new();
        f.read_to_string(&mut text)
            .ok()
            .map(|_| text.trim().to_string())
    });
    let overlay = || -> Result<Arc<dyn Driver>, DriverError> {
        let driver = Overlay::open(host_home, home, mounter.clone())?;
        driver.probe()?;
        Ok(Arc::new(driver))
    };
    let vfs =
        || -> Result<Arc<dyn Driver>, DriverError> { Ok(Arc::new(Vfs::open(host_home, home)?)) };
    let driver = match (asked, recorded.as_deref()) {
        (Some(kind), Some(rec)) if rec != kind.name() => {
            return Err(OpenDriverError::Mismatch {
                home: host_home.display().to_string(),
                recorded: rec.to_string(),
            })
        }
        (Some(DriverKind::Overlay), _) | (None, Some("overlay")) => overlay()?,
        (Some(DriverKind::Vfs), _) | (None, Some("vfs")) => vfs()?,
        (None, _) => match overlay() {
            Ok(driver) => driver,
            Err(why) => {
                warn!(reason = %why, "overlay is not available here; using the vfs driver");
                vfs()?
            }
        },
    };
    if recorded.is_none() {
        home.create_file(marker, 0o644)
            .and_then(|mut f| f.write_all(driver.name().as_bytes()))
            .map_err(|source| OpenDriverError::Record {
                home: host_home.display().to_string(),
                source,
            })?;
    }
    Ok(driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_are_rerooted_below_the_prefix() {
        let prefix = Path::new("/var/lib/docker");
        let table: [(&str, Result<&str, HomeError>); 9] = [
            ("/var/lib/docker/dindbox", Ok("dindbox")),
            ("/var/lib/docker//dindbox/./x", Ok("dindbox/x")),
            (
                "/var/lib/docker/",
                Err(HomeError::Outside {
                    home: "/var/lib/docker/".into(),
                    prefix: "/var/lib/docker".into(),
                }),
            ),
            (
                "/var/lib/dockerx/gd",
                Err(HomeError::Outside {
                    home: "/var/lib/dockerx/gd".into(),
                    prefix: "/var/lib/docker".into(),
                }),
            ),
            (
                "/etc",
                Err(HomeError::Outside {
                    home: "/etc".into(),
                    prefix: "/var/lib/docker".into(),
                }),
            ),
            (
                "/var/lib/docker/../../../etc",
                Err(HomeError::DotDot("/var/lib/docker/../../../etc".into())),
            ),
            (
                "/var/lib/docker/gd/..",
                Err(HomeError::DotDot("/var/lib/docker/gd/..".into())),
            ),
            (
                "var/lib/docker/gd",
                Err(HomeError::Relative("var/lib/docker/gd".into())),
            ),
            ("", Err(HomeError::Relative("".into()))),
        ];
        for (home, want) in table {
            assert_eq!(reroot(prefix, home), want.map(PathBuf::from), "{home}");
        }
        // The seed's scheme: the whole container path below <root>/<container>.
        assert_eq!(
            reroot(Path::new("/"), "/var/lib/docker/gd").unwrap(),
            PathBuf::from("var/lib/docker/gd")
        );
    }

    #[test]
    fn an_escaping_home_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("protected");
        std::fs::create_dir_all(root.join("box")).unwrap();
        std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        // What a container could plant through its bind mount.
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), root.join("box/gd")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("box/up")).unwrap();
        for rel in ["gd", "gd/x", "up/escape"] {
            let err = open_home(&root, "box", Path::new(rel)).unwrap_err();
            assert!(err.to_string().contains("symlink"), "{rel}: {err}");
        }
        assert!(std::fs::read_dir(tmp.path().join("elsewhere"))
            .unwrap()
            .next()
            .is_none());
        let (path, _dir) = open_home(&root, "box", Path::new("ok/home")).unwrap();
        assert_eq!(
            path,
            std::fs::canonicalize(root.join("box/ok/home")).unwrap()
        );
    }

    #[test]
    fn the_mount_under_a_home_and_its_propagation() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 8:1 /protected /protected rw,relatime - ext4 /dev/vda rw
31 30 8:1 /protected/box /protected/box rw,relatime shared:7 - ext4 /dev/vda rw
32 22 0:5 / /with\\040space rw master:3 - tmpfs tmpfs rw
";
        let table = [
            ("/protected/box/dindbox", Some(("/protected/box", true))),
            ("/protected/other/dindbox", Some(("/protected", false))),
            ("/var/lib", Some(("/", true))),
            ("/with space/x", Some(("/with space", false))),
        ];
        for (path, want) in table {
            let got = shared_propagation(info, Path::new(path));
            assert_eq!(got, want.map(|(m, s)| (m.to_string(), s)), "{path}");
        }
        assert_eq!(shared_propagation("", Path::new("/x")), None);
    }
}
