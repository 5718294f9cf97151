//! End to end in the containerd image store (issue 12): boxes of the default
//! image (dockerd 28.5) started with `DINDBOX_CONTAINERD_STORE=1`, where
//! image ids are manifest digests and `docker save` writes an OCI layout
//! (`oci-layout`, `index.json` naming each tag, and a `manifest.json`).
//!
//! - Box mode: dockerd reports the containerd snapshotter and keeps its
//!   snapshots in the box's volume; `docker load`, `run`, a classic build, a
//!   BuildKit build (`docker buildx build --load`), `docker save` of both and
//!   a load of that archive back, all through the proxy.
//! - Owner mode (two standalone proxies in one box, as tests/e2e/tags.rs):
//!   a `docker save` of one image under two tags (its index names the image
//!   twice, its manifest once) loads through A's proxy with both tags, as
//!   dockerd prints them; an OCI archive whose only names are in its
//!   `index.json` is refused through B when it names A's tag, and tagged
//!   when the name is free; B's classic build, tag and rmi work.
//!
//! - A box asked for the store on a data root on overlayfs (where
//!   containerd's snapshotter fails every mount with EINVAL) refuses to start
//!   and says why.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use crate::harness::{harness, run, DindBox, Harness, Out, Volume, DIRECT};

/// The CLI through the address `addr` (the box's published API, or a
/// standalone proxy), classic builder unless told.
fn via(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", addr)
        .env("DOCKER_BUILDKIT", "0")
        .args(args);
    run(cmd, stdin, Duration::from_secs(180))
}

fn ok(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let out = via(addr, args, stdin);
    assert!(
        out.ok(),
        "`docker {}` through {addr} must work:\n{out}",
        args.join(" ")
    );
    out
}

/// A box of the default image in the containerd image store, with
/// busybox loaded through its proxy.
fn containerd_box<'h>(h: &'h Harness, vol: &Volume, tag: &str) -> DindBox<'h> {
    let b = DindBox::start_with(h, tag, vol, &["-e", "DINDBOX_CONTAINERD_STORE=1"]);
    let info = b.docker_ok(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    assert_eq!(
        info.stdout.trim(),
        r#"overlayfs [["driver-type","io.containerd.snapshotter.v1"]]"#,
        "the box must run the containerd image store:\n{info}"
    );
    b.load_busybox();
    // containerd runs under the data root, the box's volume (not overlayfs).
    let snapshots = b.exec_ok(
        "ls /var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots; \
         stat -f -c %T /var/lib/docker",
    );
    let mut lines: Vec<&str> = snapshots.lines().collect();
    let fs = lines.pop().unwrap_or_default();
    assert!(
        !lines.is_empty() && fs != "overlayfs",
        "the snapshots must be in the box's volume:\n{snapshots}"
    );
    b
}

/// The config digest of the harness's busybox (its id in the classic store).
fn busybox_config(h: &Harness) -> String {
    let mut archive = tar::Archive::new(std::fs::File::open(&h.busybox_tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
            let config = manifest[0]["Config"].as_str().unwrap();
            let hex = config.trim_end_matches(".json").rsplit('/').next().unwrap();
            return format!("sha256:{hex}");
        }
    }
    panic!("no manifest.json in {}", h.busybox_tar.display());
}

/// The files of a tar archive, in order.
fn files_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(archive);
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, &data[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// `saved` (a containerd-store `docker save`) as an OCI layout alone: no
/// manifest.json, its index naming only `name` (as
/// `org.opencontainers.image.ref.name`, as `buildx --output type=oci` does).
fn oci_only(saved: &[u8], name: &str) -> Vec<u8> {
    let mut files = files_of(saved);
    files.retain(|(p, _)| p != "manifest.json");
    let (_, index) = files.iter_mut().find(|(p, _)| p == "index.json").unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(index).unwrap();
    let first = json["manifests"][0].clone();
    let mut entry = first;
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    json["manifests"] = serde_json::json!([entry]);
    *index = json.to_string().into_bytes();
    tar_of(&files)
}

#[test]
fn a_box_loads_runs_builds_and_saves_in_the_containerd_store() {
    let Some(h) = harness() else {
        return;
    };
    let vol = Volume::new(h, "cs-box");
    let b = containerd_box(h, &vol, "cs-box");
    let api = b.api.clone();

    // The id is the manifest's digest, not the config's as in the classic store.
    let id = b.points_to("busybox:latest");
    assert!(id.starts_with("sha256:") && id != busybox_config(h), "{id}");
    let out = ok(&api, &["run", "--rm", "busybox", "echo", "hi"], None);
    assert_eq!(out.stdout, "hi\n");

    // A classic build and a BuildKit build (the box's own buildx, whose
    // /session and /grpc go through the proxy's socket).
    ok(
        &api,
        &["build", "-q", "-t", "cs-classic", "-"],
        Some(b"FROM busybox\nRUN echo classic > /who\n"),
    );
    let out = run(
        h.outer_cmd(&[
            "exec", "-i", &b.name, "docker", "buildx", "build", "--load", "-t", "cs-buildkit",
            "-",
        ]),
        Some(b"FROM busybox AS one\nRUN echo buildkit > /who\nFROM busybox\nCOPY --from=one /who /who\n"),
        Duration::from_secs(180),
    );
    b.expect_ok(&out);
    for (image, who) in [("cs-classic", "classic\n"), ("cs-buildkit", "buildkit\n")] {
        let out = ok(&api, &["run", "--rm", image, "cat", "/who"], None);
        assert_eq!(out.stdout, who, "{image}");
    }

    // save writes an OCI layout; loaded back, both images and tags return.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("both.tar");
    let saved = saved.to_str().unwrap();
    ok(
        &api,
        &["save", "-o", saved, "cs-classic", "cs-buildkit"],
        None,
    );
    let files = files_of(&std::fs::read(saved).unwrap());
    for name in ["oci-layout", "index.json", "manifest.json"] {
        assert!(
            files.iter().any(|(p, _)| p == name),
            "no {name} in the save"
        );
    }
    let before = (b.points_to("cs-classic"), b.points_to("cs-buildkit"));
    ok(&api, &["rmi", "cs-classic", "cs-buildkit"], None);
    assert_eq!(b.points_to("cs-classic"), "");
    let loaded = ok(&api, &["load", "-i", saved], None);
    let mut lines: Vec<&str> = loaded.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "Loaded image: cs-buildkit:latest",
            "Loaded image: cs-classic:latest"
        ],
        "{loaded}"
    );
    assert_eq!(
        (b.points_to("cs-classic"), b.points_to("cs-buildkit")),
        before
    );
    let out = ok(&api, &["run", "--rm", "cs-classic", "cat", "/who"], None);
    assert_eq!(out.stdout, "classic\n");
}

#[test]
fn owner_mode_loads_oci_archives_by_their_index_in_the_containerd_store() {
    let Some(h) = harness() else {
        return;
    };
    let vol = Volume::new(h, "cs-owner");
    let b = containerd_box(h, &vol, "cs-owner");
    let a = format!(
        "tcp://{}",
        b.start_standalone_proxy(2392, "--owner-label ci.job=a")
    );
    let other = format!(
        "tcp://{}",
        b.start_standalone_proxy(2393, "--owner-label ci.job=b")
    );
    let busybox = b.points_to("busybox:latest");

    // A real containerd-store save of one image under two tags: the index
    // names it twice, manifest.json once; dockerd loads two index entries.
    b.exec_ok(&format!(
        "{DIRECT} tag busybox a-one:latest && {DIRECT} tag busybox a-one:two && \
         {DIRECT} save -o /root/a-one.tar a-one:latest a-one:two && \
         {DIRECT} rmi a-one:latest a-one:two"
    ));
    let dir = tempfile::tempdir().unwrap();
    let a_one = dir.path().join("a-one.tar");
    let a_one = a_one.to_str().unwrap();
    let out = h.outer(&["cp", &format!("{}:/root/a-one.tar", b.name), a_one]);
    b.expect_ok(&out);
    let saved = std::fs::read(a_one).unwrap();
    let files = files_of(&saved);
    let index = &files.iter().find(|(p, _)| p == "index.json").unwrap().1;
    let index: serde_json::Value = serde_json::from_slice(index).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");

    let loaded = ok(&a, &["load", "-i", a_one], None);
    assert_eq!(
        loaded.stdout, "Loaded image: a-one:latest\nLoaded image: a-one:two\n",
        "{loaded}"
    );
    assert_eq!(b.points_to("a-one:latest"), busybox);
    assert_eq!(b.points_to("a-one:two"), busybox);
    // A set them, so A may move them.
    ok(&a, &["rmi", "a-one:two"], None);

    // A builds app:latest; B cannot take it with a name only in an index.
    ok(
        &a,
        &["build", "-q", "-t", "app", "-"],
        Some(b"FROM busybox\nRUN echo a > /who\n"),
    );
    let app = b.points_to("app:latest");
    assert!(app.starts_with("sha256:"), "A's build made no app:latest");
    let write = |name: &str, data: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path.to_string_lossy().into_owned()
    };
    let takes_app = write(
        "takes-app.tar",
        &oci_only(&saved, "docker.io/library/app:latest"),
    );
    let out = via(&other, &["load", "-i", &takes_app], None);
    assert!(
        !out.ok()
            && out.stderr.contains("dindbox:")
            && out.stderr.contains("app:latest")
            && out.stderr.contains("another owner"),
        "B's load naming app:latest in its index must be refused:\n{out}"
    );
    assert_eq!(b.points_to("app:latest"), app, "app:latest moved");

    // A free name only in the index is B's tag after the load.
    let b_oci = write("b-oci.tar", &oci_only(&saved, "b-oci:1"));
    let loaded = ok(&other, &["load", "-i", &b_oci], None);
    assert_eq!(loaded.stdout, "Loaded image: b-oci:1\n", "{loaded}");
    assert_eq!(b.points_to("b-oci:1"), busybox);
    ok(&other, &["tag", "b-oci:1", "b-oci:2"], None);
    ok(&other, &["rmi", "b-oci:1"], None);

    // B's build with two tags, printed as dockerd prints them.
    let built = ok(
        &other,
        &["build", "-t", "b-loud", "-t", "b-loud:v2", "-"],
        Some(b"FROM busybox\nRUN echo loud > /who\n"),
    );
    let loud = b.points_to("b-loud:latest");
    assert!(loud.starts_with("sha256:"), "no b-loud:latest:\n{built}");
    assert!(
        built.stdout.contains("Successfully tagged b-loud:latest\n")
            && built.stdout.contains("Successfully tagged b-loud:v2\n"),
        "build output:\n{built}"
    );
    assert_eq!(b.points_to("b-loud:v2"), loud);
    let refused = via(&other, &["tag", "b-loud", "app"], None);
    assert!(!refused.ok(), "B moved app:latest:\n{refused}");
    assert_eq!(b.points_to("app:latest"), app);
}

#[test]
fn a_box_refuses_the_store_on_a_data_root_on_overlayfs() {
    let Some(h) = harness() else {
        return;
    };
    // The data root on the box's own root file system (the outer overlay).
    let vol = Volume::new(h, "cs-overlay");
    let b = DindBox::launch_with(
        h,
        "cs-overlay",
        &vol,
        &[
            "-e",
            "DINDBOX_CONTAINERD_STORE=1",
            "-e",
            "DOCKERD_ARGS=--data-root=/srv/docker",
        ],
    );
    b.assert_refused_at_boot(&[
        "the containerd image store is on",
        "/srv/docker is on overlayfs",
        "-v NAME:/srv/docker",
    ]);
}
