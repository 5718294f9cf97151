//! End to end for the proxy graphdriver (issue 5, "Tests", the E2E bullet):
//! `dindbox graphdriver-server` on the host and a dind box wired to it
//! (`DINDBOX_GRAPHDRIVER`), driven through the box's proxy with the real CLI.
//!
//! - load of a multi-layer image, run, a build whose layer deletes files of a
//!   lower one (whiteout and opaque directory), commit + save + load with the
//!   same image ID, diff; the layers are files under `<root>/<container>` on
//!   the host and nowhere in the box's own file system;
//! - two boxes with their own servers do not see each other's layers;
//! - a killed server gives a clear `GraphDriver.*` error inside, a restarted
//!   one serves again without a dockerd restart; a restarted box keeps its
//!   images;
//! - a box without mount propagation refuses to start and says how;
//! - a box on dockerd 28 or later (the default sid image), which has no
//!   graphdriver plugins any more, refuses to start and says why.
//!
//! The server picks overlay where the kernel allows it, else vfs; the tests
//! probe which one that must be and assert it ran.
//!
//! Graphdriver plugins exist in dockerd 20.10 to 27 only, so the boxes run the
//! image on the debootstrapped bookworm (20.10, `dindbox:dev-bookworm`,
//! `DINDBOX_IMAGE_BOOKWORM`), not the default sid one.
//!
//! Needs root; same harness as tests/e2e.rs. Host mounts live under
//! `/var/lib/dindbox-test/gd/<unique>` and are undone on drop, even on
//! failure (and those of dead runs at the next start).

use std::io::Write as _;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    harness, harness_for_suite, left_by_a_dead_run, run, unique, DindBox, Harness, Out, PREFIX,
};
use crate::host_server::HostServer;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where the e2e graphdriver areas live on the host.
const AREAS: &str = "/var/lib/dindbox-test/gd";
/// `-C`: the container name each server serves.
const CONTAINER: &str = "box";
/// The socket as the box sees it (its directory is bound there).
const SOCKET_IN_BOX: &str = "/dindbox/graphdriver/dindbox.sock";

/// The base whose dockerd still loads graphdriver plugins (20.10).
const GRAPHDRIVER_SUITE: &str = "bookworm";

/// `let h = need_harness!();` (the bookworm image) or return (skipped,
/// loudly) when not root.
macro_rules! need_harness {
    () => {
        match harness_for_suite(GRAPHDRIVER_SUITE) {
            Some(h) => h,
            None => return,
        }
    };
}

// ---------------------------------------------------------------- host side

/// `<dir>/root/box` (the box's storage: a shared bind mount of itself) and
/// `<dir>/sock` (the server's socket directory). Everything mounted below
/// `<dir>` is detached and `<dir>` removed on drop.
struct Area {
    dir: PathBuf,
    root: PathBuf,
    storage: PathBuf,
    sockets: PathBuf,
}

impl Area {
    fn new(tag: &str) -> Area {
        remove_dead_areas();
        let dir = Path::new(AREAS).join(unique(tag));
        let root = dir.join("root");
        let storage = root.join(CONTAINER);
        let sockets = dir.join("sock");
        for d in [&storage, &sockets] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let area = Area {
            dir,
            root,
            storage,
            sockets,
        };
        // The host commands of the README: bind on itself, then shared.
        mount(
            Some(&area.storage),
            &area.storage,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind-mount the storage on itself");
        mount(
            None::<&str>,
            &area.storage,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .expect("make the storage shared");
        area
    }

    /// `docker run` arguments that wire a box to this area's server.
    fn box_args(&self) -> Vec<String> {
        vec![
            "--mount".into(),
            format!(
                "type=bind,src={},dst=/var/lib/docker,bind-propagation=rslave",
                self.storage.display()
            ),
            "-v".into(),
            format!("{}:/dindbox/graphdriver", self.sockets.display()),
            "-e".into(),
            format!("DINDBOX_GRAPHDRIVER=unix://{SOCKET_IN_BOX}"),
        ]
    }

    /// The plugin's Home on the host.
    fn home(&self) -> PathBuf {
        self.storage.join("dindbox")
    }

    /// Where the layer directories are, relative to the Home: `dir` for
    /// vfs, the Home itself for overlay.
    fn layer_parent(&self) -> &'static str {
        if self.home().join("dir").is_dir() {
            "dir"
        } else {
            "."
        }
    }

    /// Layer directories (IDs: not `l`, not dot files).
    fn layers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.home().join(self.layer_parent()))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n != "l" && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Files below the Home (not entering mounts, as `find -xdev`) whose
    /// path ends with `suffix`.
    fn find(&self, suffix: &str) -> Vec<PathBuf> {
        let out = Command::new("find")
            .arg(self.home())
            .args(["-xdev", "-path"])
            .arg(format!("*{suffix}"))
            .output()
            .expect("run find");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .collect()
    }

    fn contains_bytes(&self, needle: &str) -> bool {
        Command::new("grep")
            .args(["-r", "-q", "-s", "--", needle])
            .arg(&self.storage)
            .status()
            .expect("run grep")
            .success()
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        release_area(&self.dir);
    }
}

/// Detaches every mount below `dir` (deepest first), then removes `dir`,
/// unless something is still mounted there (removing would reach into it).
pub(crate) fn release_area(dir: &Path) {
    let mut below: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in &below {
        let _ = umount2(p, MntFlags::MNT_DETACH);
    }
    let still = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p).starts_with(dir));
    if still {
        eprintln!(
            "dindbox e2e: {} still has mounts; not removing it",
            dir.display()
        );
        return;
    }
    if let Err(err) = std::fs::remove_dir_all(dir) {
        eprintln!("dindbox e2e: removing {}: {err}", dir.display());
    }
}

/// Areas of test processes that are gone (killed before their drops ran).
fn remove_dead_areas() {
    let Ok(entries) = std::fs::read_dir(AREAS) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && left_by_a_dead_run(&name) {
            release_area(&entry.path());
        }
    }
}

/// Which driver the server must pick here: overlay when the kernel mounts
/// one in the area (as the server's probe does), else vfs.
fn expected_driver(area: &Area) -> &'static str {
    let probe = area.dir.join("probe");
    let sub = |s: &str| probe.join(s);
    for s in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(sub(s)).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        sub("lower").display(),
        sub("upper").display(),
        sub("work").display()
    );
    let mounted = mount(
        Some("overlay"),
        &sub("merged"),
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    );
    let driver = match mounted {
        Ok(()) => {
            umount2(&sub("merged"), MntFlags::MNT_DETACH).expect("unmount the probe");
            "overlay"
        }
        Err(err) => {
            eprintln!("dindbox e2e: overlay probe failed ({err}): expecting vfs");
            "vfs"
        }
    };
    let _ = std::fs::remove_dir_all(&probe);
    driver
}

impl Area {
    /// `dindbox graphdriver-server` for this area.
    fn start_server(&self) -> HostServer {
        HostServer::start(
            "graphdriver-server",
            CONTAINER,
            self.root.clone(),
            self.sockets.join("dindbox.sock"),
            self.dir.join("server.log"),
            &[],
        )
    }
}

// ---------------------------------------------------------------- box side

fn start_box<'h>(h: &'h Harness, tag: &str, area: &Area) -> DindBox<'h> {
    let args = area.box_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    DindBox::start_storage(h, tag, &args, &[])
}

/// A docker command through the box's proxy with the classic builder (the
/// 28.x CLI would want buildx otherwise).
fn docker(b: &DindBox, args: &[&str], timeout: Duration) -> Out {
    let mut cmd = b.docker_cmd(args);
    cmd.env("DOCKER_BUILDKIT", "0");
    run(cmd, None, timeout)
}

fn docker_ok(b: &DindBox, args: &[&str]) -> String {
    let out = docker(b, args, Duration::from_secs(120));
    b.expect_ok(&out);
    out.stdout
}

/// A build context with a Dockerfile and files.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir()
        .expect("temp dir");
    for (name, text) in files {
        std::fs::File::create(dir.path().join(name))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write a context file");
    }
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `docker info` names the plugin, and the server ran the expected driver.
fn assert_driver(b: &DindBox, area: &Area, server: &HostServer) -> &'static str {
    let expected = expected_driver(area);
    let info = docker_ok(b, &["info", "-f", "{{.Driver}} {{json .DriverStatus}}"]);
    assert!(info.starts_with("dindbox "), "docker info: {info}");
    assert_eq!(
        info.contains("Native Overlay Diff"),
        expected == "overlay",
        "docker info: {info}"
    );
    let marker = std::fs::read_to_string(area.home().join(".dindbox-driver"))
        .unwrap_or_else(|e| panic!("no driver marker in {}: {e}", area.home().display()));
    assert_eq!(marker.trim(), expected);
    let log = server.log();
    assert!(
        log.contains(&format!("driver=\"{expected}\""))
            || log.contains(&format!("driver={expected}")),
        "the server log names no {expected} driver:\n{log}"
    );
    eprintln!("dindbox e2e: the server runs the {expected} driver");
    expected
}

// ---------------------------------------------------------------- tests

#[test]
fn images_built_loaded_and_committed_in_a_box_live_in_the_protected_area() {
    let h = need_harness!();
    let started = Instant::now();
    let area = Area::new("gd-main");
    let server = area.start_server();
    let b = start_box(h, "gd-main", &area);
    let driver = assert_driver(&b, &area, &server);
    b.load_busybox();

    // A three-layer image with the classic builder (RUN, RUN, COPY).
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\n\
             RUN mkdir -p /data/sub && echo one > /data/one && echo gone > /data/gone \
             && echo old > /data/sub/old\n\
             RUN echo two > /data/two\n\
             COPY three /data/three\n",
        ),
        ("three", "three\n"),
    ]);
    docker_ok(&b, &["build", "-q", "-t", "gd-multi", path_str(ctx.path())]);
    let multi_id = docker_ok(&b, &["image", "inspect", "-f", "{{.Id}}", "gd-multi"]);
    let layers = docker_ok(
        &b,
        &[
            "image",
            "inspect",
            "-f",
            "{{len .RootFS.Layers}}",
            "gd-multi",
        ],
    );
    assert_eq!(layers.trim(), "4", "busybox + 3 layers");

    // save, rmi (busybox too, so every layer goes), load.
    let tars = context(&[]);
    let multi_tar = tars.path().join("multi.tar");
    docker_ok(&b, &["save", "-o", path_str(&multi_tar), "gd-multi"]);
    docker_ok(&b, &["rmi", "gd-multi", "busybox"]);
    assert!(
        area.find("/data/three").is_empty(),
        "rmi left layer files behind: {:?}",
        area.find("/data/three")
    );
    docker_ok(&b, &["load", "-i", path_str(&multi_tar)]);
    assert_eq!(
        docker_ok(&b, &["image", "inspect", "-f", "{{.Id}}", "gd-multi"]),
        multi_id
    );
    assert!(
        area.layers().len() >= 4,
        "a load of 4 layers made {:?}",
        area.layers()
    );
    let out = docker_ok(
        &b,
        &[
            "run",
            "--rm",
            "gd-multi",
            "sh",
            "-c",
            "cat /data/one /data/two /data/three; ls /data/sub",
        ],
    );
    assert_eq!(out, "one\ntwo\nthree\nold\n");

    // The layer files are on the host, under <root>/<container>.
    // (vfs copies each parent into its children: several copies there.)
    let three = area.find("/data/three");
    assert!(
        three.len() == 1 || (driver == "vfs" && !three.is_empty()),
        "{three:?}"
    );
    assert_eq!(std::fs::read_to_string(&three[0]).unwrap(), "three\n");

    // A running container's file system is the server's mount, seen in the box
    // through propagation; what it writes lands on the host.
    docker_ok(
        &b,
        &["run", "-d", "--name", "long", "gd-multi", "sleep", "600"],
    );
    docker_ok(
        &b,
        &["exec", "long", "sh", "-c", "echo live > /written-live"],
    );
    let written = area.find("/written-live");
    assert_eq!(written.len(), 1, "{written:?}");
    if driver == "overlay" {
        let inside = b.exec_ok("grep ' /var/lib/docker/dindbox/' /proc/self/mountinfo || true");
        assert!(
            inside.contains("/merged ") && inside.contains(" - overlay "),
            "no propagated overlay mount in the box:\n{inside}"
        );
    }
    docker_ok(&b, &["rm", "-f", "long"]);

    // A layer that deletes a file and replaces a directory of a lower one.
    let wh = context(&[(
        "Dockerfile",
        "FROM gd-multi\n\
         RUN rm /data/gone && rm -rf /data/sub && mkdir /data/sub && echo new > /data/sub/new\n",
    )]);
    docker_ok(&b, &["build", "-q", "-t", "gd-white", path_str(wh.path())]);
    let check_white = |what: &str| {
        let out = docker_ok(
            &b,
            &[
                "run",
                "--rm",
                "gd-white",
                "sh",
                "-c",
                "ls -A /data /data/sub; test ! -e /data/gone && echo absent",
            ],
        );
        assert_eq!(
            out, "/data:\none\nsub\nthree\ntwo\n\n/data/sub:\nnew\nabsent\n",
            "{what}"
        );
    };
    check_white("after the build");
    if driver == "overlay" {
        // An overlay whiteout: a 0:0 character device in the new layer.
        let whiteouts: Vec<PathBuf> = area
            .find("/data/gone")
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device()))
            .collect();
        assert_eq!(whiteouts.len(), 1, "{:?}", area.find("/data/gone"));
    }
    // The whiteout survives the tar round trip (.wh.gone in the layer).
    let white_tar = tars.path().join("white.tar");
    let white_id = docker_ok(&b, &["image", "inspect", "-f", "{{.Id}}", "gd-white"]);
    docker_ok(&b, &["save", "-o", path_str(&white_tar), "gd-white"]);
    docker_ok(&b, &["rmi", "gd-white"]);
    docker_ok(&b, &["load", "-i", path_str(&white_tar)]);
    assert_eq!(
        docker_ok(&b, &["image", "inspect", "-f", "{{.Id}}", "gd-white"]),
        white_id
    );
    check_white("after save, rmi and load");

    // docker diff and commit of a container's changes; save + load keep the ID.
    docker_ok(
        &b,
        &[
            "run",
            "--name",
            "c1",
            "gd-multi",
            "sh",
            "-c",
            "echo changed > /data/one; rm /data/two; mkdir /newdir; echo x > /newdir/f",
        ],
    );
    let mut diff: Vec<String> = docker_ok(&b, &["diff", "c1"])
        .lines()
        .map(str::to_owned)
        .collect();
    diff.sort();
    assert_eq!(
        diff,
        [
            "A /newdir",
            "A /newdir/f",
            "C /data",
            "C /data/one",
            "D /data/two"
        ]
    );
    let committed = docker_ok(&b, &["commit", "c1", "gd-committed"])
        .trim()
        .to_owned();
    assert!(committed.starts_with("sha256:"), "{committed}");
    let committed_tar = tars.path().join("committed.tar");
    docker_ok(
        &b,
        &["save", "-o", path_str(&committed_tar), "gd-committed"],
    );
    docker_ok(&b, &["rm", "c1"]);
    docker_ok(&b, &["rmi", "gd-committed"]);
    docker_ok(&b, &["load", "-i", path_str(&committed_tar)]);
    let reloaded = docker_ok(&b, &["image", "inspect", "-f", "{{.Id}}", "gd-committed"]);
    assert_eq!(reloaded.trim(), committed);
    let out = docker_ok(
        &b,
        &[
            "run",
            "--rm",
            "gd-committed",
            "sh",
            "-c",
            "cat /data/one /newdir/f; ls /data",
        ],
    );
    assert_eq!(out, "changed\nx\ngone\none\nsub\nthree\n");

    // The box's own file system holds no layers: /var/lib/docker is the
    // protected area (no overlay2 or vfs of the inner daemon), and nothing
    // on the box's root file system has the image files.
    let var_lib = b.exec_ok("ls -A /var/lib/docker");
    let entries: Vec<&str> = var_lib.split_whitespace().collect();
    assert!(entries.contains(&"dindbox"), "{entries:?}");
    for native in ["overlay2", "vfs", "aufs", "btrfs"] {
        assert!(!entries.contains(&native), "{native} in {entries:?}");
    }
    let mut in_box: Vec<String> = b
        .exec_ok(&format!(
            "ls -A /var/lib/docker/dindbox/{}",
            area.layer_parent()
        ))
        .split_whitespace()
        .filter(|n| *n != "l" && !n.starts_with('.'))
        .map(str::to_owned)
        .collect();
    in_box.sort();
    assert_eq!(in_box, area.layers(), "the box's Home is the host's");
    let stray = b.exec_ok("find / -xdev -path '*/data/three' 2>/dev/null || true");
    assert!(stray.trim().is_empty(), "layer files in the box: {stray}");

    eprintln!(
        "dindbox e2e: graphdriver main scenario took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn boxes_are_isolated_and_survive_server_and_box_restarts() {
    let h = need_harness!();
    let started = Instant::now();
    let (area1, area2) = (Area::new("gd-one"), Area::new("gd-two"));
    let mut server1 = area1.start_server();
    let server2 = area2.start_server();
    let b1 = start_box(h, "gd-one", &area1);
    let b2 = start_box(h, "gd-two", &area2);
    assert_driver(&b1, &area1, &server1);
    b1.load_busybox();
    b2.load_busybox();

    let token = format!("secret-{}", unique("t"));
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM busybox\nRUN echo {token} > /secret\n"),
    )]);
    docker_ok(
        &b1,
        &["build", "-q", "-t", "gd-secret", path_str(ctx.path())],
    );
    let secret_id = docker_ok(&b1, &["image", "inspect", "-f", "{{.Id}}", "gd-secret"]);

    // Box two sees neither the image nor the layers; the host dirs are apart.
    let out = docker(
        &b2,
        &["image", "inspect", "gd-secret"],
        Duration::from_secs(30),
    );
    assert!(!out.ok(), "box two sees box one's image:\n{out}");
    assert!(area1.contains_bytes(&token), "the layer is not in area one");
    assert!(
        !area2.contains_bytes(&token),
        "box one's layer is in area two"
    );
    let (l1, l2) = (area1.layers(), area2.layers());
    assert!(!l1.is_empty() && !l2.is_empty(), "{l1:?} {l2:?}");
    assert!(
        l1.iter().all(|l| !l2.contains(l)),
        "shared layer dirs: {l1:?} {l2:?}"
    );
    let seen_by_two = b2.exec_ok("ls -A /var/lib/docker/dindbox");
    assert!(
        l1.iter().all(|l| !seen_by_two.contains(l.as_str())),
        "box two lists box one's layers: {seen_by_two}"
    );
    let found = b2.exec_ok(&format!(
        "grep -r -l -s {token} /var/lib/docker /dindbox 2>/dev/null || true"
    ));
    assert!(found.trim().is_empty(), "box two can read: {found}");

    // A crashed server: a clear error naming the graphdriver call, after the
    // plugin client's retries; box two does not care.
    server1.kill();
    let out = docker(
        &b1,
        &["run", "--rm", "gd-secret", "cat", "/secret"],
        Duration::from_secs(90),
    );
    assert!(!out.ok(), "a run without the server worked:\n{out}");
    assert!(
        out.stderr.contains("GraphDriver."),
        "the error does not name the graphdriver call:\n{out}"
    );
    eprintln!(
        "dindbox e2e: without the server, `docker run` failed after {:.1} s: {}",
        out.elapsed.as_secs_f64(),
        out.stderr.lines().next().unwrap_or_default()
    );
    // Image metadata is the daemon's own: still listed.
    assert!(docker_ok(&b1, &["images", "-q", "gd-secret"]).trim().len() >= 12);
    assert_eq!(
        docker_ok(&b2, &["run", "--rm", "busybox", "echo", "two"]),
        "two\n"
    );

    // Back: the same dockerd (no Init) is served again, nothing lost.
    server1.spawn();
    assert!(
        server1
            .log()
            .contains("re-opened the Home of the previous run"),
        "{}",
        server1.log()
    );
    assert_eq!(
        docker_ok(&b1, &["run", "--rm", "gd-secret", "cat", "/secret"]),
        format!("{token}\n")
    );

    // A restarted box keeps its images (they are in the protected area).
    let restart = h.outer(&["restart", "-t", "20", &b1.name]);
    b1.expect_ok(&restart);
    b1.wait_ready();
    assert_eq!(
        docker_ok(&b1, &["image", "inspect", "-f", "{{.Id}}", "gd-secret"]),
        secret_id
    );
    assert_eq!(
        docker_ok(&b1, &["run", "--rm", "gd-secret", "cat", "/secret"]),
        format!("{token}\n")
    );
    // And a save of it is still consistent with its IDs (the load verifies
    // every layer's digest).
    let tars = context(&[]);
    let tar = tars.path().join("secret.tar");
    docker_ok(&b1, &["save", "-o", path_str(&tar), "gd-secret"]);
    docker_ok(&b2, &["load", "-i", path_str(&tar)]);
    assert_eq!(
        docker_ok(&b2, &["image", "inspect", "-f", "{{.Id}}", "gd-secret"]),
        secret_id
    );
    drop(server2);
    eprintln!(
        "dindbox e2e: graphdriver isolation + restarts took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_box_without_mount_propagation_refuses_to_start_and_says_how() {
    let h = need_harness!();
    // The area bound without `bind-propagation=rslave`: Docker's default
    // (rprivate) would keep the server's overlay mounts out of the box.
    let area = Area::new("gd-private");
    let mount = format!(
        "type=bind,src={},dst=/var/lib/docker",
        area.storage.display()
    );
    let sockets = format!("{}:/dindbox/graphdriver", area.sockets.display());
    let env = format!("DINDBOX_GRAPHDRIVER=unix://{SOCKET_IN_BOX}");
    let b = DindBox::launch_storage(
        h,
        "gd-private",
        &["--mount", &mount, "-v", &sockets, "-e", &env],
        &[],
    );
    b.assert_refused_at_boot(&[
        "/var/lib/docker is a private mount",
        path_str(&area.storage),
        "mount --make-shared",
        "bind-propagation=rslave",
    ]);
}

#[test]
fn a_box_on_dockerd_28_refuses_graphdriver_mode_and_says_why() {
    // The default image (sid: dockerd 28.5), wired exactly as a working box.
    let Some(h) = harness() else {
        return;
    };
    let area = Area::new("gd-28");
    let args = area.box_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = DindBox::launch_storage(h, "gd-28", &args, &[]);
    b.assert_refused_at_boot(&[
        "the inner dockerd is 28.",
        "Docker 28 removed graphdriver plugins",
        "unset DINDBOX_GRAPHDRIVER",
    ]);
}
