//! The container side of the proxy graphdriver (`DINDBOX_GRAPHDRIVER`):
//! the inner dockerd keeps its layers on the host through
//! `dindbox graphdriver-server` instead of in its own `overlay2`.
//!
//! Init, before dockerd starts:
//! 1. checks that the data root (`/var/lib/docker`) receives mounts from the
//!    host (`master:N` or `shared:N` in its mountinfo line): the server mounts
//!    each layer on the host, and only propagation makes it appear here;
//! 2. reads `dockerd --version`: 20.10 to 26 need `--experimental`, 27 also
//!    `DOCKERD_DEPRECATED_GRAPHDRIVER_PLUGINS=1`, 28 removed the feature;
//! 3. writes `/etc/docker/plugins/dindbox.spec` with the socket's URL, and
//!    starts dockerd with `--experimental --storage-driver=dindbox`.
//!
//! Why a spec file and not `/run/docker/plugins/NAME.sock`: init mounts a
//! fresh tmpfs on `/run` at boot only when nothing is mounted below it, so a
//! socket directory bound under `/run` would cost that clean slate. The
//! socket's directory is bound anywhere else (`/dindbox/graphdriver` in the
//! docs) and the spec points there. The spec names the directory's socket,
//! never a bound socket file: a restarted server makes a new inode.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The plugin name: `dockerd -s dindbox`; its Home is `<data-root>/dindbox`.
pub const PLUGIN_NAME: &str = "dindbox";
/// Where dockerd looks for `NAME.spec` (moby `pkg/plugins/discovery_unix.go`).
pub const SPEC_DIR: &str = "/etc/docker/plugins";
/// The variable dockerd 27 needs to load graphdriver plugins at all.
pub const DEPRECATED_ENV: &str = "DOCKERD_DEPRECATED_GRAPHDRIVER_PLUGINS";

/// Why the proxy graphdriver cannot be set up in this box.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("DINDBOX_GRAPHDRIVER={value:?}: only unix:// sockets are supported, not {scheme}://")]
    Scheme { value: String, scheme: String },
    #[error("DINDBOX_GRAPHDRIVER={0:?}: give the socket as unix:///ABSOLUTE/PATH.sock (e.g. unix:///dindbox/graphdriver/dindbox.sock)")]
    RelativeSocket(String),
    #[error("DINDBOX_GRAPHDRIVER={0:?}: the path is longer than a unix socket address allows (107 bytes)")]
    SocketTooLong(String),
    #[error("DINDBOX_GRAPHDRIVER is set, so init starts dockerd with --storage-driver={PLUGIN_NAME}, but the dockerd arguments also give `{0}`: drop one of them")]
    StorageDriverGiven(String),
    #[error("the inner dockerd is {major}.{minor}, and Docker 28 removed graphdriver plugins (moby PR #48072), which DINDBOX_GRAPHDRIVER needs: use an image with dockerd 20.10 to 27.x (the dindbox image on Debian bookworm, 20.10, or trixie, 26.1: DINDBOX_SUITE=bookworm|trixie scripts/build-image.sh), or unset DINDBOX_GRAPHDRIVER")]
    Removed { major: u32, minor: u32 },
    #[error("the inner dockerd is {major}.{minor}; graphdriver plugins need 1.13 or later")]
    TooOld { major: u32, minor: u32 },
    #[error("DINDBOX_GRAPHDRIVER is set, but {what}: overlay mounts the graphdriver server makes on \
         the host would never appear here. The box's storage must be the server's ROOT/CONTAINER \
         directory, made a shared mount on the host and bound here with rslave propagation. On \
         the host, before starting the box:\n  \
         mkdir -p /protected/BOX && mount --bind /protected/BOX /protected/BOX && mount --make-shared /protected/BOX\n  \
         dindbox graphdriver-server -R /protected -C BOX -S unix:///run/dindbox/gd/BOX/dindbox.sock\n\
         and start the box with\n  \
         --mount type=bind,src=/protected/BOX,dst={data_root},bind-propagation=rslave \
         -v /run/dindbox/gd/BOX:/dindbox/graphdriver \
         -e DINDBOX_GRAPHDRIVER=unix:///dindbox/graphdriver/dindbox.sock")]
    NoPropagation { what: String, data_root: String },
    #[error("{0}; DINDBOX_GRAPHDRIVER needs dockerd 20.10 to 27.x")]
    Version(super::dockerd::VersionError),
}

/// `DINDBOX_GRAPHDRIVER`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graphdriver {
    /// The server's socket as the box sees it.
    pub socket: PathBuf,
}

impl Graphdriver {
    /// `unix:///abs/path.sock` or a plain absolute path.
    pub fn parse(value: &str) -> Result<Graphdriver, PluginError> {
        let value = value.trim();
        let path = match value.split_once("://") {
            Some(("unix", path)) => path,
            Some((scheme, _)) => {
                return Err(PluginError::Scheme {
                    value: value.to_string(),
                    scheme: scheme.to_string(),
                })
            }
            None => value,
        };
        let socket = PathBuf::from(path);
        if !socket.is_absolute() {
            return Err(PluginError::RelativeSocket(value.to_string()));
        }
        if socket.as_os_str().len() >= 108 {
            return Err(PluginError::SocketTooLong(value.to_string()));
        }
        Ok(Graphdriver { socket })
    }

    /// What `NAME.spec` holds: the URL dockerd dials (it trims whitespace).
    pub fn spec(&self) -> String {
        format!("unix://{}\n", self.socket.display())
    }

    /// Writes `dir/dindbox.spec` (atomically); returns its path.
    pub fn write_spec(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{PLUGIN_NAME}.spec"));
        let tmp = dir.join(format!(".{PLUGIN_NAME}.spec.tmp"));
        std::fs::write(&tmp, self.spec())?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// Adds `--experimental` (unless given) and `--storage-driver=dindbox` to
/// dockerd's arguments; refuses another storage driver chosen by the user.
pub fn add_dockerd_args(args: &mut Vec<String>) -> Result<(), PluginError> {
    if let Some(flag) = storage_driver_flag(args) {
        return Err(PluginError::StorageDriverGiven(flag));
    }
    if !args
        .iter()
        .any(|a| a == "--experimental" || a == "--experimental=true")
    {
        args.push("--experimental".into());
    }
    args.push(format!("--storage-driver={PLUGIN_NAME}"));
    Ok(())
}

/// `-s X`, `-sX`, `--storage-driver X`, `--storage-driver=X` as written.
fn storage_driver_flag(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, arg)| {
        let next = || args.get(i + 1).map_or(String::new(), |v| format!(" {v}"));
        if arg == "-s" || arg == "--storage-driver" {
            Some(format!("{arg}{}", next()))
        } else if arg.starts_with("--storage-driver=")
            || (arg.starts_with("-s") && arg.len() > 2 && !arg.starts_with("--"))
        {
            Some(arg.clone())
        } else {
            None
        }
    })
}

/// What a dockerd version needs: `Ok(true)` when it also needs
/// [`DEPRECATED_ENV`]; an explanation when it cannot load the plugin.
pub fn version_gate((major, minor): (u32, u32)) -> Result<bool, PluginError> {
    if major >= 28 {
        return Err(PluginError::Removed { major, minor });
    }
    if major < 17 && (major, minor) < (1, 13) {
        return Err(PluginError::TooOld { major, minor });
    }
    Ok(major == 27)
}

/// Checks that the mount holding `data_root` receives mounts from the host:
/// its mountinfo line carries `master:N` (a slave, as `rslave` gives) or
/// `shared:N` (`rshared`). Call it before init makes `/` rshared, which
/// would add `shared:N` everywhere. Pure.
pub fn check_propagation(mountinfo: &str, data_root: &Path) -> Result<(), PluginError> {
    let holding = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, _) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mount_point = PathBuf::from(crate::mountinfo::unescape(fields.get(4)?));
            let root = crate::mountinfo::unescape(fields.get(3)?);
            let propagates = fields
                .get(6..)
                .unwrap_or_default()
                .iter()
                .any(|f| f.starts_with("master:") || f.starts_with("shared:"));
            data_root
                .starts_with(&mount_point)
                .then_some((mount_point, root, propagates))
        })
        // The longest mount point; of equal ones the last (the top of a stack).
        .fold(
            None,
            |best: Option<(PathBuf, String, bool)>, cur| match &best {
                Some((b, _, _)) if b.as_os_str().len() > cur.0.as_os_str().len() => best,
                _ => Some(cur),
            },
        );
    let (mount_point, root, propagates) = match holding {
        Some(found) => found,
        None => (PathBuf::from("/"), String::new(), false),
    };
    if propagates {
        return Ok(());
    }
    let dr = data_root.display();
    let what = if mount_point == data_root {
        format!("{dr} is a private mount (host directory {root:?})")
    } else {
        format!(
            "{dr} is not a mount point (it is on the private mount at {})",
            mount_point.display()
        )
    };
    Err(PluginError::NoPropagation {
        what,
        data_root: dr.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::dockerd::parse_version;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_takes_unix_urls_and_absolute_paths_only() {
        let gd = Graphdriver::parse("unix:///dindbox/graphdriver/dindbox.sock").unwrap();
        assert_eq!(gd.socket, Path::new("/dindbox/graphdriver/dindbox.sock"));
        assert_eq!(
            Graphdriver::parse(" /x/y.sock ").unwrap().socket,
            Path::new("/x/y.sock")
        );
        for bad in ["tcp://127.0.0.1:1", "unix://rel.sock", "rel.sock", ""] {
            assert!(Graphdriver::parse(bad).is_err(), "{bad}");
        }
        let long = format!("unix:///{}", "a".repeat(120));
        assert!(Graphdriver::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("107"));
    }

    #[test]
    fn the_spec_file_holds_the_socket_url() {
        let gd = Graphdriver::parse("/dindbox/graphdriver/dindbox.sock").unwrap();
        assert_eq!(gd.spec(), "unix:///dindbox/graphdriver/dindbox.sock\n");
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("etc/docker/plugins");
        let path = gd.write_spec(&plugins).unwrap();
        assert_eq!(path, plugins.join("dindbox.spec"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "unix:///dindbox/graphdriver/dindbox.sock\n"
        );
        // Rewritten at every boot, and nothing else is left in the directory.
        Graphdriver::parse("/other.sock")
            .unwrap()
            .write_spec(&plugins)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "unix:///other.sock\n"
        );
        assert_eq!(std::fs::read_dir(&plugins).unwrap().count(), 1);
    }

    #[test]
    fn dockerd_gets_experimental_and_the_plugin_as_storage_driver() {
        let mut args = strings(&["--host=unix:///s", "--debug"]);
        add_dockerd_args(&mut args).unwrap();
        assert_eq!(
            args,
            [
                "--host=unix:///s",
                "--debug",
                "--experimental",
                "--storage-driver=dindbox"
            ]
        );
        let mut args = strings(&["--host=unix:///s", "--experimental"]);
        add_dockerd_args(&mut args).unwrap();
        assert_eq!(
            args,
            [
                "--host=unix:///s",
                "--experimental",
                "--storage-driver=dindbox"
            ]
        );
    }

    #[test]
    fn another_storage_driver_in_the_dockerd_args_is_refused() {
        for given in [
            &["-s", "overlay2"][..],
            &["-soverlay2"],
            &["--storage-driver", "vfs"],
            &["--storage-driver=vfs"],
        ] {
            let mut args = strings(given);
            let err = add_dockerd_args(&mut args).unwrap_err().to_string();
            assert!(err.contains(given[0]), "{given:?}: {err}");
            assert!(err.contains("DINDBOX_GRAPHDRIVER"), "{err}");
        }
        // Flags that merely start with -s are not the storage driver.
        let mut args = strings(&["--storage-opt", "x=y", "--seccomp-profile=/p"]);
        add_dockerd_args(&mut args).unwrap();
    }

    #[test]
    fn versions_20_10_pass_27_needs_the_env_and_28_is_refused() {
        let debian = "Docker version 20.10.24+dfsg1, build 5d6db84\n";
        assert_eq!(parse_version(debian), Some((20, 10)));
        assert!(matches!(version_gate((20, 10)), Ok(false)));
        assert!(matches!(version_gate((26, 1)), Ok(false)));
        let v27 = parse_version("Docker version 27.5.1, build 4c9b3b0").unwrap();
        assert_eq!(v27, (27, 5));
        assert!(matches!(version_gate(v27), Ok(true)));
        let v28 = parse_version("Docker version 28.2.2, build e6534b4").unwrap();
        let err = version_gate(v28).unwrap_err().to_string();
        assert!(err.contains("28.2"), "{err}");
        assert!(err.contains("removed graphdriver plugins"), "{err}");
        // Debian's trixie and sid engines, as their dockerd prints them.
        let trixie = parse_version("Docker version 26.1.5+dfsg1, build 411e817").unwrap();
        assert!(matches!(version_gate(trixie), Ok(false)));
        let sid = "Docker version 28.5.2+dfsg4, build 3ef3c07c883be49a2e8097bcf6d2952fce1d70eb";
        assert_eq!(parse_version(sid), Some((28, 5)));
        assert!(version_gate((28, 5)).is_err());
        assert!(version_gate((1, 12)).is_err());
        assert!(matches!(version_gate((1, 13)), Ok(false)));
        assert_eq!(parse_version("dockerd: command not found"), None);
        assert_eq!(parse_version("Docker version dev, build x"), None);
    }

    const HEAD: &str = "\
600 500 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l
601 600 0:51 / /proc rw - proc proc rw
";

    #[test]
    fn propagation_from_the_host_passes() {
        // --mount ...,bind-propagation=rslave of a shared host directory.
        let slave = format!(
            "{HEAD}602 600 254:0 /protected/BOX /var/lib/docker rw,relatime master:12 - ext4 /dev/vda rw\n"
        );
        check_propagation(&slave, Path::new("/var/lib/docker")).unwrap();
        // rshared: a peer of the host's group.
        let shared = format!(
            "{HEAD}602 600 254:0 /protected/BOX /var/lib/docker rw,relatime shared:7 - ext4 /dev/vda rw\n"
        );
        check_propagation(&shared, Path::new("/var/lib/docker")).unwrap();
        // Both (a slave that was made shared).
        let both = format!(
            "{HEAD}602 600 254:0 /protected/BOX /var/lib/docker rw shared:9 master:12 - ext4 /dev/vda rw\n"
        );
        check_propagation(&both, Path::new("/var/lib/docker")).unwrap();
    }

    #[test]
    fn a_private_data_root_fails_with_the_host_commands() {
        // A docker volume: bound privately.
        let private = format!(
            "{HEAD}602 600 254:0 /var/lib/docker/volumes/v/_data /var/lib/docker rw,relatime - ext4 /dev/vda rw\n"
        );
        let err = check_propagation(&private, Path::new("/var/lib/docker"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a private mount"), "{err}");
        assert!(err.contains("/var/lib/docker/volumes/v/_data"), "{err}");
        for needle in [
            "mount --bind /protected/BOX /protected/BOX",
            "mount --make-shared /protected/BOX",
            "bind-propagation=rslave",
            "dindbox graphdriver-server -R /protected -C BOX",
            "DINDBOX_GRAPHDRIVER=unix:///dindbox/graphdriver/dindbox.sock",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // No mount at all: the overlay root holds it.
        let err = check_propagation(HEAD, Path::new("/var/lib/docker"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a mount point"), "{err}");
        assert!(err.contains("private mount at /"), "{err}");
    }

    #[test]
    fn the_mount_on_top_and_the_longest_prefix_decide() {
        // A private mount stacked on the slave one hides it.
        let stacked = "\
1 0 0:1 / / rw - ext4 a rw
2 1 0:2 /p /var/lib/docker rw master:3 - ext4 a rw
3 1 0:3 / /var/lib/docker rw - tmpfs t rw
";
        assert!(check_propagation(stacked, Path::new("/var/lib/docker")).is_err());
        // A data root below a slave mount is fine; a sibling with a shared
        // prefix of letters is not a parent.
        let nested = "\
1 0 0:1 / / rw - ext4 a rw
2 1 0:2 /p /srv rw master:3 - ext4 a rw
3 1 0:3 / /srv/docker-other rw - tmpfs t rw
";
        check_propagation(nested, Path::new("/srv/docker")).unwrap();
        // Escaped mount points.
        let escaped = "\
1 0 0:1 / / rw - ext4 a rw
2 1 0:2 /p /srv/my\\040docker rw master:3 - ext4 a rw
";
        check_propagation(escaped, Path::new("/srv/my docker")).unwrap();
    }
}
