//! End to end for the proxy snapshotter (issue 14): `dindbox
//! snapshotter-server` on the host and a box on the default sid image
//! (dockerd 28.5, containerd 2.1) wired to it with `DINDBOX_SNAPSHOTTER`,
//! driven with the box's own CLI (through its proxy).
//!
//! - load, run, commit, diff, a BuildKit build whose layer deletes a file,
//!   save + rmi + load; deleted files stay deleted; the snapshots' files are
//!   on the host under `ROOT/NAME` and not in the box's own file system;
//! - the server killed under a running box: running containers go on, new
//!   ones fail, and a restarted server serves again without a box restart;
//!   a restarted box keeps its images;
//! - a box whose area is not mounted refuses to start and says how.
//!
//! Needs root; host mounts live under `/var/lib/dindbox-test/sn/<unique>`
//! and are undone on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::graphdriver::release_area;
use crate::harness::{harness, poll, unique, DindBox, Volume};
use crate::host_server::HostServer;

const AREAS: &str = "/var/lib/dindbox-test/sn";
const NAME: &str = "box";
const SOCKET_IN_BOX: &str = "/dindbox/snapshotter/snapshots.sock";
const AREA_IN_BOX: &str = "/var/lib/dindbox-snapshots";
const CONTAINERD_IN_BOX: &str = "/var/lib/dindbox-containerd";

/// A server root and socket directory; everything mounted below is
/// detached and the directory removed on drop.
struct Area {
    dir: PathBuf,
}

impl Area {
    fn new(tag: &str) -> Area {
        let dir = Path::new(AREAS).join(unique(tag));
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        Area { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sock/snapshots.sock")
    }

    /// `docker run` arguments wiring a box to this area's server.
    fn box_args(&self, volume: &Volume) -> Vec<String> {
        vec![
            "-v".into(),
            format!("{}:/var/lib/docker", volume.name),
            "--mount".into(),
            format!(
                "type=bind,src={},dst={AREA_IN_BOX},bind-propagation=rslave,readonly",
                self.root().join(NAME).join("shared").display()
            ),
            "-v".into(),
            format!(
                "{}:{CONTAINERD_IN_BOX}",
                self.root().join(NAME).join("containerd").display()
            ),
            "-v".into(),
            format!("{}:/dindbox/snapshotter", self.dir.join("sock").display()),
            "-e".into(),
            format!("DINDBOX_SNAPSHOTTER=unix://{SOCKET_IN_BOX}"),
        ]
    }

    /// Whether a file under `ROOT/NAME/snapshots` holds `needle`.
    fn snapshots_contain(&self, needle: &str) -> bool {
        Command::new("grep")
            .args(["-r", "-q", "-s", "--", needle])
            .arg(self.root().join(NAME).join("snapshots"))
            .status()
            .unwrap()
            .success()
    }

    /// The names (hex digests) of the blobs in the box's containerd content
    /// store, on the host.
    fn blobs(&self) -> Vec<String> {
        let dir = self
            .root()
            .join(NAME)
            .join("containerd/io.containerd.content.v1.content/blobs/sha256");
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        release_area(&self.dir);
    }
}

impl Area {
    /// `dindbox snapshotter-server` for this area, with `flags`.
    fn start_server(&self, flags: &[&str]) -> HostServer {
        HostServer::start(
            "snapshotter-server",
            NAME,
            self.root(),
            self.socket(),
            self.dir.join("server.log"),
            flags,
        )
    }
}

#[test]
fn a_box_on_the_snapshotter_loads_runs_builds_commits_and_keeps_it_all() {
    let Some(h) = harness() else { return };
    let area = Area::new("sn");
    let mut server = area.start_server(&[]);
    let volume = Volume::new(h, "sn");
    let args = area.box_args(&volume);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = DindBox::start_storage(h, "sn", &args, &[]);
    let info = b.docker_ok(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    assert!(
        info.stdout.contains("dindbox") && info.stdout.contains("io.containerd.snapshotter.v1"),
        "{info}"
    );
    b.load_busybox();

    let marker = unique("marker");
    let script = format!(
        r#"set -e
docker run --name c1 busybox sh -c 'rm /bin/ls; echo {marker} > /newfile'
docker diff c1 | sort | tr '\n' ' '; echo
docker commit c1 committed:1 >/dev/null
docker run --rm committed:1 sh -c 'test ! -e /bin/ls && cat /newfile'
mkdir -p /tmp/b && printf 'FROM busybox\nRUN echo built-{marker} > /built && rm /bin/cat\n' > /tmp/b/Dockerfile
DOCKER_BUILDKIT=1 docker build -q -t built:1 /tmp/b >/dev/null
docker run --rm built:1 sh -c 'test ! -e /bin/cat && head -1 /built'
docker save built:1 -o /tmp/built.tar && docker rmi -f built:1 >/dev/null && docker load -q -i /tmp/built.tar >/dev/null
docker run --rm built:1 head -1 /built
"#
    );
    let out = b.exec_ok(&script);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "A /newfile C /bin D /bin/ls ",
            marker.as_str(),
            &format!("built-{marker}"),
            &format!("built-{marker}"),
        ],
        "{out}"
    );
    // The snapshots and the layer blobs are on the host, the box's own file
    // system has none.
    assert!(
        area.snapshots_contain(&marker),
        "no snapshot on the host holds the file"
    );
    let own = b.exec(&format!(
        "grep -r -l -s -- {marker} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dindbox-snapshots --exclude-dir=dindbox-containerd --exclude-dir=tmp"
    ));
    assert_eq!(own.stdout.trim(), "", "the box's own files hold it: {own}");
    let blobs = area.blobs();
    // busybox's and built:1's manifests, configs and layers, committed:1's.
    assert!(
        blobs.len() >= 6,
        "the host holds no content store: {blobs:?}"
    );
    let names: Vec<String> = blobs.iter().map(|b| format!("-name {b}")).collect();
    let own = b.exec(&format!(
        "find / \\( -path /proc -o -path /sys -o -path {AREA_IN_BOX} -o -path {CONTAINERD_IN_BOX} \\) -prune -o \\( {} \\) -print",
        names.join(" -o ")
    ));
    assert_eq!(
        own.stdout.trim(),
        "",
        "the box's own files hold a blob: {own}"
    );

    // The server dies under the running box: a running container goes on,
    // a new one fails; restarted, it serves again.
    b.exec_ok("docker run -d --name long busybox sleep 600 >/dev/null");
    server.kill();
    b.exec_ok("docker exec long cat /bin/sh >/dev/null");
    let down = b.exec("docker run --rm busybox true");
    assert!(!down.ok(), "a run without the server worked: {down}");
    server.spawn();
    // containerd's gRPC client reconnects after its backoff (grpc-go: 1 s,
    // growing by 1.6 while the server was down).
    let back = poll(Duration::from_secs(60), || {
        let out = b.exec("docker run --rm busybox echo back");
        (out.ok() && out.stdout.trim() == "back").then_some(())
    });
    assert!(
        back.is_some(),
        "no run after the server came back:\n{}",
        server.log()
    );

    // A restarted box keeps its images.
    let restarted = h.outer(&["restart", &b.name]);
    assert!(restarted.ok(), "{restarted}");
    b.wait_ready();
    assert_eq!(
        b.exec_ok("docker run --rm committed:1 cat /newfile").trim(),
        marker
    );
}

#[test]
fn a_box_without_the_area_refuses_to_start_and_says_how() {
    let Some(h) = harness() else { return };
    let area = Area::new("sn-noarea");
    let _server = area.start_server(&[]);
    let volume = Volume::new(h, "sn-noarea");
    let socket_dir = format!("{}:/dindbox/snapshotter", area.dir.join("sock").display());
    let mount = format!("{}:/var/lib/docker", volume.name);
    let b = DindBox::launch_storage(
        h,
        "sn-noarea",
        &["-v", &mount, "-v", &socket_dir],
        &["-e", &format!("DINDBOX_SNAPSHOTTER=unix://{SOCKET_IN_BOX}")],
    );
    b.assert_refused_at_boot(&["DINDBOX_SNAPSHOTTER is set, but", "bind-propagation=rslave"]);

    // The area, but not the containerd root: the layer blobs would land
    // in the box's own file system.
    let args = area.box_args(&volume);
    let containerd = args
        .iter()
        .position(|a| a.contains(CONTAINERD_IN_BOX))
        .unwrap();
    let args: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i + 1 != containerd && *i != containerd)
        .map(|(_, a)| a.as_str())
        .collect();
    let b = DindBox::launch_storage(h, "sn-nocontainerd", &args, &[]);
    b.assert_refused_at_boot(&[
        &format!("{CONTAINERD_IN_BOX} is not a mount"),
        "ROOT/BOX/containerd",
    ]);
}

/// A docker archive `big:1` of one layer holding `mib` MiB, written in the box.
fn big_image_script(mib: u32) -> String {
    format!(
        r#"set -e
rm -rf /tmp/q && mkdir -p /tmp/q/l && cd /tmp/q
head -c {bytes} /dev/urandom > l/big
tar -C l -cf layer.tar big
diff=$(sha256sum layer.tar | cut -d' ' -f1)
printf '{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:%s"]}},"config":{{}}}}' "$diff" > config.json
cfg=$(sha256sum config.json | cut -d' ' -f1) && mv config.json "$cfg.json"
printf '[{{"Config":"%s.json","RepoTags":["big:1"],"Layers":["layer.tar"]}}]' "$cfg" > manifest.json
tar -cf /tmp/big.tar manifest.json "$cfg.json" layer.tar
"#,
        bytes = u64::from(mib) << 20
    )
}

#[test]
fn the_quota_refuses_a_load_and_a_run_and_the_box_goes_on() {
    let Some(h) = harness() else { return };
    let area = Area::new("sn-quota");
    let server = area.start_server(&["--max-bytes", "24M"]);
    let volume = Volume::new(h, "sn-quota");
    let args = area.box_args(&volume);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = DindBox::start_storage(h, "sn-quota", &args, &[]);
    b.load_busybox();

    // A 30 MiB layer: its Commit would pass the quota. dockerd 28.5 keeps
    // the loaded image in the content store, says the unpacking failed and
    // exits 0; the image cannot run until there is room.
    b.exec_ok(&big_image_script(30));
    let load = b.exec_ok("docker load -q -i /tmp/big.tar 2>&1");
    assert!(
        load.contains("Error unpacking image big:1")
            && load.contains("more than its quota of 25165824 (--max-bytes)"),
        "{load}"
    );
    let run = b.exec("docker run --rm big:1 true");
    assert!(!run.ok(), "an image past the quota ran: {run}");
    assert!(run.stderr.contains("--max-bytes"), "{run}");
    // containerd's metadata layer removes the refused extraction's active
    // snapshot from the server only at its next garbage collection: until
    // then it still counts.
    runs_again(&b, &server);
    b.exec_ok("docker rmi big:1 >/dev/null");

    // A container's writes are not stopped, but the next snapshot is refused
    // until they are gone.
    b.exec_ok("docker run --name fat busybox dd if=/dev/zero of=/fat bs=1M count=30 2>/dev/null");
    let run = b.exec("docker run --rm busybox true");
    assert!(!run.ok(), "a run past the quota worked: {run}");
    assert!(run.stderr.contains("--max-bytes"), "{run}");
    b.exec_ok("docker rm fat >/dev/null");
    runs_again(&b, &server);
}

/// A `docker run` works again within a minute (containerd's garbage
/// collection has removed what was refused or deleted).
fn runs_again(b: &DindBox, server: &HostServer) {
    let ok = poll(Duration::from_secs(60), || {
        let out = b.exec("docker run --rm busybox echo ok");
        (out.ok() && out.stdout.trim() == "ok").then_some(())
    });
    assert!(
        ok.is_some(),
        "the box cannot run anything: {}\n{}",
        b.exec("docker run --rm busybox echo ok"),
        server.log()
    );
}
