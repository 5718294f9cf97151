//! The box side of the proxy snapshotter (`DINDBOX_SNAPSHOTTER`): the
//! inner dockerd keeps its images in the containerd image store, on a
//! snapshotter that is the host's `dindbox snapshotter-server`.
//!
//! dockerd's own managed containerd takes no proxy plugins, so init runs a
//! containerd of its own ([`super::containerd`]) with the config from
//! [`containerd_config`] and starts dockerd on it with
//! `--containerd=SOCK --feature=containerd-snapshotter=true
//! --storage-driver=dindbox` (with the containerd store on, dockerd 28.5
//! gives `--storage-driver` to containerd as the snapshotter's name: moby
//! v28.5.2 `daemon/daemon.go`, and `docker info` shows `Storage Driver:
//! dindbox`, `driver-type: io.containerd.snapshotter.v1`).
//!
//! The box's containerd keeps its root (the content store with the
//! compressed layer blobs, its meta.db) in [`CONTAINERD_ROOT`], a bind of
//! the server's `ROOT/NAME/containerd`, so no layer is in the box's own
//! file system.
//!
//! Before dockerd starts, init checks that the server's area is mounted at
//! [`AREA`] with propagation from the host and carries the server's marker
//! ([`check_area`]), that [`CONTAINERD_ROOT`] is a mount carrying the
//! other marker ([`check_containerd_root`]), and that the server answers and its mounts reach the
//! box ([`probe`]); otherwise it exits with one line that says what to fix.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_snapshots::api::snapshots::v1::snapshots_client::SnapshotsClient;
use containerd_snapshots::api::snapshots::v1::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_snapshots::tonic::transport::{Channel, Endpoint, Uri};
use containerd_snapshots::tonic::Code;

use crate::snapshotter_server::area::{CONTAINERD_MARKER, MARKER};
use crate::snapshotter_server::cli::DEFAULT_CONTAINER_PREFIX;

/// The variable.
pub const ENV: &str = "DINDBOX_SNAPSHOTTER";
/// The proxy plugin's name: containerd's `[proxy_plugins.dindbox]` and dockerd's `--storage-driver`.
pub const PLUGIN_NAME: &str = "dindbox";
/// Where the box sees the server's shared area (`ROOT/NAME/shared`).
pub const AREA: &str = DEFAULT_CONTAINER_PREFIX;
/// Where the box sees the server's `ROOT/NAME/containerd`: its containerd's root.
pub const CONTAINERD_ROOT: &str = "/var/lib/dindbox-containerd";
/// The box's containerd: its config, state and socket.
pub const CONTAINERD_DIR: &str = "/run/dindbox/containerd";
/// The snapshot key of init's probe.
const PROBE_KEY: &str = "dindbox-init-probe";
/// How long the server has to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotterError {
    #[error("{ENV}={0:?}: give the server's socket as unix:///ABSOLUTE/PATH.sock (e.g. unix:///dindbox/snapshotter/snapshots.sock)")]
    BadSocket(String),
    #[error("{ENV} is set, so init starts dockerd with `{flag}` itself, but the dockerd arguments also give `{given}`: drop it")]
    Conflict { flag: &'static str, given: String },
    #[error("{ENV} needs the containerd image store, and it is turned off (DINDBOX_CONTAINERD_STORE=0 or --feature containerd-snapshotter=false): drop that")]
    StoreOff,
    #[error("{ENV} and DINDBOX_GRAPHDRIVER are both set: keep one (the snapshotter for dockerd 28 and later, the graphdriver for 20.10 to 27)")]
    BothProxies,
    #[error("{ENV} is set, but {what}. On the host: `dindbox snapshotter-server -R ROOT -C BOX -S unix:///run/dindbox/sn/BOX/snapshots.sock`, then run the box with --mount type=bind,src=ROOT/BOX/shared,dst={AREA},bind-propagation=rslave -v ROOT/BOX/containerd:{CONTAINERD_ROOT} -v /run/dindbox/sn/BOX:/dindbox/snapshotter -e {ENV}=unix:///dindbox/snapshotter/snapshots.sock")]
    Area { what: String },
    #[error("{ENV}: the snapshotter server at {socket} {what}")]
    Server { socket: String, what: String },
}

/// `DINDBOX_SNAPSHOTTER`'s socket: `unix:///ABS.sock` or `/ABS.sock`.
pub fn parse(value: &str) -> Result<PathBuf, SnapshotterError> {
    let bad = || SnapshotterError::BadSocket(value.to_string());
    let path = match value.split_once("://") {
        Some(("unix", path)) => path,
        Some(_) => return Err(bad()),
        None => value,
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() || path.as_os_str().len() >= 108 {
        return Err(bad());
    }
    Ok(path)
}

/// Adds what dockerd needs to run on the box's containerd and the proxy
/// snapshotter; refuses arguments that would contradict them.
pub fn add_dockerd_args(
    args: &mut Vec<String>,
    store: Option<bool>,
) -> Result<(), SnapshotterError> {
    for arg in args.iter() {
        let name = arg.split('=').next().unwrap_or_default();
        let flag = match name {
            "-s" | "--storage-driver" => "--storage-driver",
            "--containerd" => "--containerd",
            _ => continue,
        };
        return Err(SnapshotterError::Conflict {
            flag,
            given: arg.clone(),
        });
    }
    match store {
        Some(false) => return Err(SnapshotterError::StoreOff),
        Some(true) => {}
        None => args.push(format!("--feature={}=true", super::imagestore::FEATURE)),
    }
    args.push(format!("--containerd={}", containerd_socket().display()));
    args.push(format!("--storage-driver={PLUGIN_NAME}"));
    Ok(())
}

pub fn containerd_socket() -> PathBuf {
    Path::new(CONTAINERD_DIR).join("containerd.sock")
}

pub fn containerd_config_path() -> PathBuf {
    Path::new(CONTAINERD_DIR).join("config.toml")
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The box's containerd config (version 3, containerd 2.x): its root on
/// the host's bind [`CONTAINERD_ROOT`], state and socket under
/// [`CONTAINERD_DIR`], and the proxy snapshotter. Pure.
pub fn containerd_config(snapshotter: &Path) -> String {
    let root = Path::new(CONTAINERD_ROOT);
    let state = Path::new(CONTAINERD_DIR).join("state");
    format!(
        "version = 3\nroot = {}\nstate = {}\n\n[grpc]\n  address = {}\n\n\
         [proxy_plugins.{PLUGIN_NAME}]\n  type = \"snapshot\"\n  address = {}\n",
        toml_string(&root.to_string_lossy()),
        toml_string(&state.to_string_lossy()),
        toml_string(&containerd_socket().to_string_lossy()),
        toml_string(&snapshotter.to_string_lossy()),
    )
}

/// The area at [`AREA`] receives the host's mounts and is the server's:
/// call it before init makes `/` rshared.
pub fn check_area(mountinfo: &str, area: &Path) -> Result<(), SnapshotterError> {
    let area_error = |what: String| SnapshotterError::Area { what };
    super::graphdriver_plugin::check_propagation(mountinfo, area).map_err(|_| {
        area_error(format!(
            "{} is not a mount that receives the host's mounts (bind-propagation=rslave)",
            area.display()
        ))
    })?;
    if !area.join(MARKER).is_file() {
        return Err(area_error(format!(
            "{} has no {MARKER}: it is not the server's shared area (ROOT/BOX/shared)",
            area.display()
        )));
    }
    Ok(())
}

/// [`CONTAINERD_ROOT`] is a mount of its own (the host's `ROOT/BOX/containerd`,
/// not a directory of the box's file system) and carries the server's
/// marker.
pub fn check_containerd_root(mountinfo: &str, root: &Path) -> Result<(), SnapshotterError> {
    let area_error = |what: String| SnapshotterError::Area { what };
    if super::mounts::mount_at(mountinfo, root).is_none() {
        return Err(area_error(format!(
            "{} is not a mount (the box's containerd keeps its layer blobs there, on the host)",
            root.display()
        )));
    }
    if !root.join(CONTAINERD_MARKER).is_file() {
        return Err(area_error(format!(
            "{} has no {CONTAINERD_MARKER}: it is not the server's ROOT/BOX/containerd",
            root.display()
        )));
    }
    Ok(())
}

async fn connect(socket: &Path) -> Result<SnapshotsClient<Channel>, String> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            tokio::net::UnixStream::connect(socket.clone())
        }))
        .await
        .map_err(|e| format!("does not answer ({e}); is `dindbox snapshotter-server` running?"))?;
    Ok(SnapshotsClient::new(channel))
}

/// Asks the server for a throw-away snapshot and checks that the mount it
/// makes on the host shows up in the box at the path it names, then
/// removes it.
pub async fn probe(socket: &Path, area: &Path) -> Result<(), SnapshotterError> {
    let server_error = |what: String| SnapshotterError::Server {
        socket: socket.display().to_string(),
        what,
    };
    let result = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut client = connect(socket).await?;
        let prepare = || PrepareSnapshotRequest {
            snapshotter: PLUGIN_NAME.into(),
            key: PROBE_KEY.into(),
            parent: String::new(),
            labels: HashMap::new(),
        };
        let remove = || RemoveSnapshotRequest {
            snapshotter: PLUGIN_NAME.into(),
            key: PROBE_KEY.into(),
        };
        let mounts = match client.prepare(prepare()).await {
            Err(status) if status.code() == Code::AlreadyExists => {
                client
                    .remove(remove())
                    .await
                    .map_err(|s| s.message().to_string())?;
                client.prepare(prepare()).await
            }
            other => other,
        }
        .map_err(|s| format!("refused a snapshot: {}", s.message()))?
        .into_inner()
        .mounts;
        let seen = mounts
            .first()
            .map(|m| PathBuf::from(&m.source))
            .filter(|source| source.starts_with(area))
            .filter(|source| is_mount_point(source));
        let _ = client.remove(remove()).await;
        match seen {
            Some(_) => Ok(()),
            None => Err(format!(
                "mounted a snapshot that does not reach the box under {} ({mounts:?}): is \
                 ROOT/BOX/shared of this very server bound there with rslave?",
                area.display()
            )),
        }
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(what)) => Err(server_error(what)),
        Err(_) => Err(server_error(format!(
            "did not answer within {}s",
            PROBE_TIMEOUT.as_secs()
        ))),
    }
}

/// Whether `path` is a directory on a mount of its own.
fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let id = |p: &Path| {
        statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID)
            .ok()
            .map(|s| s.stx_mnt_id)
    };
    match (id(path), path.parent().and_then(id)) {
        (Some(own), Some(parent)) => own != parent,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_socket_is_a_unix_url_or_an_absolute_path() {
        assert_eq!(
            parse("unix:///dindbox/snapshotter/s.sock").unwrap(),
            PathBuf::from("/dindbox/snapshotter/s.sock")
        );
        assert_eq!(parse("/s.sock").unwrap(), PathBuf::from("/s.sock"));
        for bad in [
            "tcp://1.2.3.4:5",
            "unix://rel.sock",
            "rel.sock",
            &format!("/{}", "x".repeat(120)),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dockerd_runs_on_the_box_containerd_and_the_proxy_snapshotter() {
        let mut args = strings(&["--host=unix:///run/dindbox/docker.sock"]);
        add_dockerd_args(&mut args, None).unwrap();
        assert_eq!(
            args[1..],
            strings(&[
                "--feature=containerd-snapshotter=true",
                "--containerd=/run/dindbox/containerd/containerd.sock",
                "--storage-driver=dindbox",
            ])
        );
        let mut on = Vec::new();
        add_dockerd_args(&mut on, Some(true)).unwrap();
        assert_eq!(on.len(), 2, "the store is already on: {on:?}");
        assert_eq!(
            add_dockerd_args(&mut Vec::new(), Some(false)),
            Err(SnapshotterError::StoreOff)
        );
        for given in ["-s", "--storage-driver=overlay2", "--containerd=/x.sock"] {
            let err = add_dockerd_args(&mut strings(&[given]), None).unwrap_err();
            assert!(matches!(err, SnapshotterError::Conflict { .. }), "{given}");
        }
    }

    #[test]
    fn the_containerd_config_names_the_proxy_plugin() {
        let text = containerd_config(Path::new("/d/s\"x.sock"));
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["version"].as_integer(), Some(3));
        assert_eq!(parsed["root"].as_str(), Some("/var/lib/dindbox-containerd"));
        assert_eq!(
            parsed["grpc"]["address"].as_str(),
            Some("/run/dindbox/containerd/containerd.sock")
        );
        let plugin = &parsed["proxy_plugins"]["dindbox"];
        assert_eq!(plugin["type"].as_str(), Some("snapshot"));
        assert_eq!(plugin["address"].as_str(), Some("/d/s\"x.sock"));
    }

    #[test]
    fn the_area_must_propagate_and_carry_the_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let area = tmp.path();
        let line = |prop: &str| {
            format!(
                "40 30 8:1 /protected/box/shared {} rw {prop} - ext4 /dev/vda rw\n",
                area.display()
            )
        };
        let err = check_area(&line(""), area).unwrap_err().to_string();
        assert!(err.contains("rslave"), "{err}");
        let err = check_area(&line("master:3"), area).unwrap_err().to_string();
        assert!(err.contains(MARKER), "{err}");
        std::fs::write(area.join(MARKER), "dindbox snapshotter area of box b\n").unwrap();
        check_area(&line("master:3"), area).unwrap();
    }

    #[test]
    fn the_containerd_root_must_be_a_mount_with_the_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("c d");
        std::fs::create_dir(&root).unwrap();
        let line = |point: &str| {
            format!("41 30 8:1 /protected/box/containerd {point} rw - ext4 /dev/vda rw\n")
        };
        let escaped = root.display().to_string().replace(' ', "\\040");
        let err = check_containerd_root(&line("/elsewhere"), &root)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is not a mount") && err.contains("ROOT/BOX/containerd"),
            "{err}"
        );
        let err = check_containerd_root(&line(&escaped), &root)
            .unwrap_err()
            .to_string();
        assert!(err.contains(CONTAINERD_MARKER), "{err}");
        std::fs::write(
            root.join(CONTAINERD_MARKER),
            "dindbox containerd root of box b\n",
        )
        .unwrap();
        check_containerd_root(&line(&escaped), &root).unwrap();
    }
}
