//! End to end for issue 11 class 8: image tags do not move between owners.
//! Two standalone proxies with different owner labels run inside one box,
//! in front of its private dockerd socket, listening on the box's address
//! (a check that failed could only touch that box). Owner A builds
//! `app:latest`; owner B's `docker tag`, `docker load` (plain and gzip),
//! `build -t`, `commit`, `import` and `rmi` of it are refused with one
//! readable line, and the tag still points to A's image on the daemon. B's
//! own tags work, and A can still move its own. Pulls run against a real
//! registry on the box's loopback, and two owners race to load one tag, on
//! dockerd 28.5 (the default sid image) and 20.10 (the bookworm one).
//!
//! Two owners also race to `docker tag` one free tag, which the proxies'
//! cross-proxy tag lock serialises.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::{self, harness, DindBox, Out, Volume, DIRECT};

/// The CLI through one of the proxies (classic builder: BuildKit sessions
/// are refused by a standalone proxy).
fn via(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", format!("tcp://{addr}"))
        .env("DOCKER_BUILDKIT", "0")
        .args(args);
    harness::run(cmd, stdin, Duration::from_secs(120))
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

/// `docker save` output (the harness's busybox) with its tags replaced.
fn retagged(saved: &[u8], tags: &[&str]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(saved);
    for entry in archive.entries().expect("read the busybox tar") {
        let mut entry = entry.expect("an entry");
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path == "repositories" {
            continue;
        }
        if path == "manifest.json" {
            let mut manifest: serde_json::Value = serde_json::from_slice(&data).unwrap();
            manifest[0]["RepoTags"] = serde_json::json!(tags);
            data = manifest.to_string().into_bytes();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.append_data(&mut header, &path, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}

/// `docker save` output (the harness's busybox) as two images: busybox
/// tagged `first`, and the same layers under another config (a label more,
/// so another id) tagged `second`.
fn two_images(saved: &[u8], first: &[&str], second: &[&str]) -> Vec<u8> {
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(saved);
    for entry in archive.entries().expect("read the busybox tar") {
        let mut entry = entry.expect("an entry");
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path != "repositories" {
            files.push((path, entry.header().clone(), data));
        }
    }
    let (_, _, manifest) = files.iter().find(|(p, _, _)| p == "manifest.json").unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap().to_string();
    let (_, header, config) = files.iter().find(|(p, _, _)| *p == config).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(config).unwrap();
    config["config"]["Labels"] = serde_json::json!({"dindbox.e2e": "second"});
    let config = config.to_string().into_bytes();
    let mut other = manifest[0].clone();
    other["Config"] = "second.json".into();
    other["RepoTags"] = serde_json::json!(second);
    manifest[0]["RepoTags"] = serde_json::json!(first);
    manifest.as_array_mut().unwrap().push(other);
    let manifest = manifest.to_string().into_bytes();
    let mut out = tar::Builder::new(Vec::new());
    let mut header = header.clone();
    header.set_size(config.len() as u64);
    header.set_cksum();
    out.append_data(&mut header, "second.json", &config[..])
        .unwrap();
    for (path, mut header, data) in files {
        let data = if path == "manifest.json" {
            manifest.clone()
        } else {
            data
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.append_data(&mut header, &path, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `POST /build` of a one-line Dockerfile, raw, without a tag: the message
/// stream as dockerd sends it.
fn raw_build(addr: &str) -> String {
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM busybox\nRUN echo raw > /who\n";
    let mut header = tar::Header::new_ustar();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", &dockerfile[..])
        .unwrap();
    let context = tar.into_inner().unwrap();
    let mut stream = TcpStream::connect(addr).expect("connect to the proxy");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "POST /v1.41/build HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        context.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&context).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// B's attempt must fail with one line that says why.
fn refused(addr: &str, args: &[&str], stdin: Option<&[u8]>, failures: &mut Vec<String>) {
    let out = via(addr, args, stdin);
    // The CLI may print notices of its own; the daemon's answer is one line.
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("dindbox:"))
        .collect();
    let readable = matches!(said.as_slice(), [line]
        if line.starts_with("Error response from daemon: dindbox:")
            && line.contains("app:latest")
            && line.contains("another owner"));
    if out.ok() || !readable {
        failures.push(format!(
            "`docker {}` must be refused with one line:\n{out}",
            args.join(" ")
        ));
    }
}

#[test]
fn tags_do_not_move_between_owners() {
    let h = need_harness!();
    let vol = Volume::new(h, "tags");
    let b = DindBox::start(h, "tags", &vol);
    b.load_busybox();
    let a = b.start_standalone_proxy(2392, "--owner-label ci.job=a");
    let other = b.start_standalone_proxy(2393, "--owner-label ci.job=b");
    let dir = tempfile::tempdir().unwrap();
    let saved = std::fs::read(&h.busybox_tar).expect("the busybox tar");
    let write = |name: &str, data: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path.to_string_lossy().into_owned()
    };
    let app_tar = write("app.tar", &retagged(&saved, &["app:latest"]));
    let app_gz = write("app.tar.gz", &gzip(&retagged(&saved, &["b-x:1", "app"])));
    let b_tar = write("b-app.tar", &retagged(&saved, &["b-app:latest"]));
    let b_gz = write("b-gz.tar.gz", &gzip(&retagged(&saved, &["b-gz:1"])));
    let rootfs = write("rootfs.tar", &retagged(&saved, &[]));

    // A builds app:latest: labelled ci.job=a.
    ok(
        &a,
        &["build", "-q", "-t", "app", "-"],
        Some(b"FROM busybox\nRUN echo a > /who\n"),
    );
    let a_app = b.points_to("app:latest");
    assert!(a_app.starts_with("sha256:"), "A's build made no app:latest");
    let images_before = b.exec_ok(&format!("{DIRECT} images -a -q --no-trunc | sort"));

    // B cannot move or remove it, in any of the ways the CLI has.
    let mut failures = Vec::new();
    ok(
        &other,
        &["create", "--name", "b-c", "busybox", "true"],
        None,
    );
    refused(&other, &["tag", "busybox", "app"], None, &mut failures);
    refused(
        &other,
        &["tag", "busybox", "docker.io/library/app:latest"],
        None,
        &mut failures,
    );
    refused(&other, &["load", "-i", &app_tar], None, &mut failures);
    refused(&other, &["load", "-i", &app_gz], None, &mut failures);
    refused(
        &other,
        &["build", "-q", "-t", "app", "-"],
        Some(b"FROM busybox\nRUN echo b > /who\n"),
        &mut failures,
    );
    refused(
        &other,
        &["commit", "--change", "ENV X=1", "b-c", "app"],
        None,
        &mut failures,
    );
    refused(&other, &["import", &rootfs, "app"], None, &mut failures);
    refused(&other, &["rmi", "app"], None, &mut failures);
    refused(&other, &["rmi", "-f", "app:latest"], None, &mut failures);
    let by_id = via(&other, &["rmi", "-f", &a_app], None);
    if by_id.ok() {
        failures.push(format!(
            "`docker rmi -f <A's image id>` through B must be refused:\n{by_id}"
        ));
    }
    assert_eq!(
        b.points_to("app:latest"),
        a_app,
        "app:latest moved; {failures:#?}"
    );
    assert_eq!(
        b.points_to("b-x:1"),
        "",
        "the refused gzip load tagged b-x:1"
    );
    let images_after = b.exec_ok(&format!("{DIRECT} images -a -q --no-trunc | sort"));
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // B's own tags work: load, tag, retag, rmi.
    let loaded = ok(&other, &["load", "-i", &b_tar], None);
    assert_eq!(
        loaded.stdout.trim(),
        "Loaded image: b-app:latest",
        "{loaded}"
    );
    let loaded = ok(&other, &["load", "-i", &b_gz], None);
    assert_eq!(loaded.stdout.trim(), "Loaded image: b-gz:1", "{loaded}");
    assert!(
        !b.points_to("b-gz:1").is_empty(),
        "the gzip load tagged nothing"
    );
    ok(&other, &["tag", "b-app", "b-app:v2"], None);
    ok(
        &other,
        &["build", "-q", "-t", "b-built", "-"],
        Some(b"FROM busybox\nRUN echo b > /who\n"),
    );
    ok(&other, &["tag", "b-built", "b-app"], None);
    assert_eq!(b.points_to("b-app:latest"), b.points_to("b-built:latest"));
    ok(
        &other,
        &["commit", "--change", "ENV X=1", "b-c", "b-committed"],
        None,
    );
    let label = b.exec_ok(&format!(
        "{DIRECT} image inspect -f '{{{{index .Config.Labels \"ci.job\"}}}} {{{{.Config.Env}}}}' b-committed"
    ));
    assert!(
        label.starts_with("b ") && label.contains("X=1"),
        "commit label: {label}"
    );
    ok(&other, &["import", &rootfs, "b-imported"], None);
    let label = b.exec_ok(&format!(
        "{DIRECT} image inspect -f '{{{{index .Config.Labels \"ci.job\"}}}}' b-imported"
    ));
    assert_eq!(label.trim(), "b", "import label");
    // Built, committed and imported untagged, tagged by the proxy: the
    // output looks as usual.
    let built = ok(
        &other,
        &["build", "-t", "b-loud", "-t", "b-loud:v2", "-"],
        Some(b"FROM busybox\nRUN echo loud > /who\n"),
    );
    let loud = b.points_to("b-loud:latest");
    assert!(loud.starts_with("sha256:"), "no b-loud:latest:\n{built}");
    assert!(
        built
            .stdout
            .contains(&format!("Successfully built {}", &loud[7..19]))
            && built.stdout.contains("Successfully tagged b-loud:latest\n")
            && built.stdout.contains("Successfully tagged b-loud:v2\n"),
        "build output:\n{built}"
    );
    assert_eq!(b.points_to("b-loud:v2"), loud);
    let committed = ok(&other, &["commit", "b-c", "b-committed:2"], None);
    assert_eq!(
        committed.stdout.trim(),
        b.points_to("b-committed:2"),
        "commit output:\n{committed}"
    );
    let imported = ok(&other, &["import", &rootfs, "b-imported:2"], None);
    assert_eq!(
        imported.stdout.trim(),
        b.points_to("b-imported:2"),
        "import output:\n{imported}"
    );
    // dockerd's own build stream (28.5 in the default image, 20.10 in the
    // bookworm one), as the proxy reads it (no tag: passed through untouched).
    let raw = raw_build(&other);
    assert!(
        raw.contains(r#""aux":{"ID":"sha256:"#)
            && raw.contains(r#"{"stream":"Successfully built "#),
        "dockerd's build stream:\n{raw}"
    );

    // B's slow build of a free tag that A takes meanwhile: not moved; the
    // build fails with the reason, its image stays untagged.
    let slow = {
        let other = other.clone();
        std::thread::spawn(move || {
            via(
                &other,
                &["build", "-t", "b-race", "-"],
                Some(b"FROM busybox\nRUN sleep 8\n"),
            )
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    ok(&a, &["tag", "busybox", "b-race"], None);
    let a_race = b.points_to("b-race:latest");
    let slow = slow.join().unwrap();
    assert!(
        !slow.ok()
            && slow.stderr.contains("dindbox:")
            && slow.stderr.contains("b-race:latest")
            && slow.stderr.contains("another owner")
            && !slow.stdout.contains("Successfully tagged"),
        "B's slow build must fail on the tag A took:\n{slow}"
    );
    assert_eq!(b.points_to("b-race:latest"), a_race, "b-race moved");

    // dockerd itself (the classic store of 28.5, as of 20.10), loading two
    // images without tags (what the proxy forwards): one message, one
    // `Loaded image ID` per manifest entry, in manifest order.
    // tests/e2e/containerd.rs covers the containerd image store.
    let direct = h.outer_cmd(&["exec", "-i", &b.name, "sh", "-c", &format!("{DIRECT} load")]);
    let direct = harness::run(
        direct,
        Some(&two_images(&saved, &[], &[])),
        Duration::from_secs(120),
    );
    eprintln!(
        "dockerd's load of two untagged images printed:\n{}",
        direct.stdout
    );
    let ids: Vec<&str> = direct
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Loaded image ID: "))
        .collect();
    assert!(
        direct.ok()
            && ids.len() == 2
            && ids[0] != ids[1]
            && ids.iter().all(|i| i.starts_with("sha256:")),
        "dockerd's load of two untagged images:\n{direct}"
    );
    // Through B's proxy, each image gets its own tags: the ids are paired
    // with the manifest's entries as dockerd printed them.
    let two = write(
        "two.tar",
        &two_images(&saved, &["b-one:1"], &["b-two:1", "b-two:2"]),
    );
    let loaded = ok(&other, &["load", "-i", &two], None);
    assert_eq!(
        loaded.stdout.trim(),
        "Loaded image: b-one:1\nLoaded image: b-two:1\nLoaded image: b-two:2",
        "{loaded}"
    );
    assert_eq!(b.points_to("b-one:1"), ids[0]);
    assert_eq!(b.points_to("b-two:1"), ids[1]);
    assert_eq!(b.points_to("b-two:2"), ids[1]);

    ok(&other, &["rmi", "b-app", "b-app:v2"], None);
    assert_eq!(b.points_to("b-app:latest"), "");

    // A cannot move B's tags either, and can still move its own.
    let out = via(&a, &["tag", "busybox", "b-built"], None);
    assert!(
        !out.ok() && out.stderr.contains("another owner"),
        "A moved B's tag:\n{out}"
    );
    ok(&a, &["tag", "busybox", "app"], None);
    assert_ne!(
        b.points_to("app:latest"),
        a_app,
        "A could not move its own tag"
    );
    assert_eq!(
        images_before, images_after,
        "B's refused requests changed the images"
    );
}

/// `docker-registry` (Debian's distribution registry) serving on
/// 127.0.0.1:5000 in the box's network namespace, so its dockerd reaches it
/// on loopback (which dockerd lets be plain HTTP); killed on drop.
struct Registry {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

const REGISTRY: &str = "127.0.0.1:5000";

impl Registry {
    fn start(b: &DindBox) -> Registry {
        let pid = b.state("{{.State.Pid}}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("nsenter")
            .args(["-t", &pid, "-n", "docker-registry", "serve"])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (scripts/lib.sh ensure_packages installs it)");
        let registry = Registry { child, _dir: dir };
        let up = harness::poll(Duration::from_secs(20), || {
            let probe = Command::new("nsenter")
                .args(["-t", &pid, "-n", "bash", "-c"])
                .arg("exec 3<>/dev/tcp/127.0.0.1/5000")
                .stderr(std::process::Stdio::null())
                .status();
            probe.is_ok_and(|s| s.success()).then_some(())
        });
        assert!(up.is_some(), "the registry did not listen within 20 s");
        registry
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the registry");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every tag on the daemon, with the image it points to.
fn all_tags(b: &DindBox) -> String {
    b.exec_ok(&format!(
        "{DIRECT} images --format '{{{{.Repository}}}}:{{{{.Tag}}}} {{{{.ID}}}}' | grep -v '<none>' | sort"
    ))
}

/// `POST /images/create` of `image`:`tag` through `addr`, raw; `on_start`
/// runs once dockerd has begun to pull (its `Pulling from` message came).
/// Returns the answer's messages.
fn raw_pull(addr: &str, image: &str, tag: &str, on_start: impl FnOnce()) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let mut stream = TcpStream::connect(addr).expect("connect to the proxy");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let head = format!(
        "POST /v1.41/images/create?fromImage={image}&tag={tag} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut on_start = Some(on_start);
    let mut messages = Vec::new();
    for line in std::io::BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue; // the status line, headers
        };
        if !message.is_object() {
            continue; // chunk sizes
        }
        let started = message["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Pulling from"));
        messages.push(message);
        if started {
            if let Some(f) = on_start.take() {
                f();
            }
        }
    }
    messages
}

/// Owner B's `docker pull` of a tag owner A holds is refused before any
/// download; a free tag is pulled and set by the proxy (the CLI prints what
/// it prints for a pull by tag); a tag A takes while B's pull downloads is
/// not moved when the pull ends. `extra`: more `docker run` arguments;
/// `driver`: the storage driver dockerd must report with them.
fn pulls_do_not_move_another_owners_tag(h: &harness::Harness, extra: &[&str], driver: &str) {
    let vol = Volume::new(h, "pull");
    let b = DindBox::start_with(h, "pull", &vol, extra);
    let reported = b.exec_ok(&format!("{DIRECT} info -f '{{{{.Driver}}}}'"));
    assert_eq!(reported.trim(), driver, "the image store under test");
    b.load_busybox();
    let registry = Registry::start(&b);
    // The registry's content, pushed from the daemon itself: bb:1 and bb:2
    // are busybox, bb:3 a layer of 96 MiB (a download long enough to stop).
    b.exec_ok(&format!(
        "set -e; for t in 1 2; do {DIRECT} tag busybox {REGISTRY}/bb:$t; {DIRECT} push -q {REGISTRY}/bb:$t; done; \
         mkdir /tmp/big && head -c 100663296 /dev/urandom >/tmp/big/blob && \
         tar -C /tmp/big -c . | {DIRECT} import - {REGISTRY}/bb:3 && {DIRECT} push -q {REGISTRY}/bb:3 && \
         {DIRECT} rmi {REGISTRY}/bb:1 {REGISTRY}/bb:2 {REGISTRY}/bb:3 && rm -r /tmp/big"
    ));
    let a = b.start_standalone_proxy(2392, "--owner-label ci.job=a");
    let other = b.start_standalone_proxy(2393, "--owner-label ci.job=b");
    let bb = |t: &str| format!("{REGISTRY}/bb:{t}");

    // A builds bb:2 here: its tag.
    ok(
        &a,
        &["build", "-q", "-t", &bb("2"), "-"],
        Some(b"FROM busybox\nRUN echo a > /who\n"),
    );
    let a_bb2 = b.points_to(&bb("2"));
    let before = all_tags(&b);
    let out = via(&other, &["pull", &bb("2")], None);
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("dindbox:"))
        .collect();
    assert!(
        !out.ok()
            && matches!(said.as_slice(), [line] if line.starts_with("Error response from daemon: dindbox:")
                && line.contains("bb:2") && line.contains("another owner")),
        "B's pull of A's tag must be refused with one line:\n{out}"
    );
    assert_eq!(b.points_to(&bb("2")), a_bb2, "bb:2 moved");
    assert_eq!(
        all_tags(&b),
        before,
        "the refused pull changed the daemon's tags"
    );

    // A free tag: pulled by digest, tagged by B's proxy, printed as usual.
    let pulled = ok(&other, &["pull", &bb("1")], None);
    let digest = b.exec_ok(&format!(
        "{DIRECT} image inspect -f '{{{{range .RepoDigests}}}}{{{{.}}}}{{{{end}}}}' {}",
        bb("1")
    ));
    let digest = digest.trim().rsplit_once('@').map(|(_, d)| d.to_string());
    let digest = digest.unwrap_or_else(|| panic!("bb:1 has no digest:\n{pulled}"));
    assert!(
        pulled.stdout.starts_with("1: Pulling from bb\n")
            && pulled.stdout.contains(&format!("Digest: {digest}\n"))
            && pulled
                .stdout
                .contains(&format!("Status: Downloaded newer image for {}\n", bb("1")))
            && pulled.stdout.trim_end().ends_with(&bb("1"))
            && !pulled.stdout.contains('@'),
        "B's pull output:\n{pulled}"
    );
    assert_eq!(b.points_to(&bb("1")), b.points_to("busybox"));
    let again = ok(&other, &["pull", &bb("1")], None);
    assert!(
        again
            .stdout
            .contains(&format!("Status: Image is up to date for {}\n", bb("1"))),
        "{again}"
    );
    // Set by B's proxy: B may move it; A may not.
    let out = via(&a, &["tag", "busybox", &bb("1")], None);
    assert!(
        !out.ok() && out.stderr.contains("another owner"),
        "A moved B's tag:\n{out}"
    );
    ok(&other, &["rmi", &bb("1")], None);

    // B pulls bb:3 (free); A takes bb:3 for its own image while the layer
    // downloads (the registry stopped meanwhile).
    use nix::sys::signal::Signal;
    let messages = raw_pull(&other, &format!("{REGISTRY}/bb"), "3", || {
        registry.signal(Signal::SIGSTOP);
        let tagged = via(&a, &["tag", &bb("2"), &bb("3")], None);
        registry.signal(Signal::SIGCONT);
        assert!(tagged.ok(), "A's tag of bb:3:\n{tagged}");
    });
    assert_eq!(b.points_to(&bb("3")), a_bb2, "bb:3 moved");
    let last = messages.last().cloned().unwrap_or_default();
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("dindbox: ")
            && error.contains("bb:3")
            && error.contains("another owner")
            && error.contains("pulled untagged"),
        "B's pull must end with the refusal: {messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["status"] == "Pulling from bb" && m["id"] == "3"),
        "{messages:#?}"
    );
    assert!(
        !messages.iter().any(|m| m["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Status:"))),
        "{messages:#?}"
    );
    // The image is there, untagged by B.
    let untagged = b.exec_ok(&format!(
        "{DIRECT} images --digests --format '{{{{.Repository}}}} {{{{.Tag}}}} {{{{.ID}}}}' {REGISTRY}/bb"
    ));
    assert!(
        untagged.lines().any(|l| l.contains("<none>")),
        "the pulled bb:3 image:\n{untagged}"
    );
    drop(registry);
}

#[test]
fn pulls_do_not_move_another_owners_tag_on_dockerd_20_10() {
    let Some(h) = harness::harness_for_suite("bookworm") else {
        return;
    };
    pulls_do_not_move_another_owners_tag(h, &[], "overlay2");
}

#[test]
fn pulls_do_not_move_another_owners_tag_on_dockerd_28() {
    let Some(h) = harness::harness_for_suite("sid") else {
        return;
    };
    pulls_do_not_move_another_owners_tag(h, &[], "overlay2");
}

/// dockerd 28.5 with the containerd image store: a pull by digest names an
/// image `NAME@sha256:…` there, whose id is the manifest's digest.
#[test]
fn pulls_do_not_move_another_owners_tag_on_dockerd_28_containerd_store() {
    let Some(h) = harness::harness_for_suite("sid") else {
        return;
    };
    pulls_do_not_move_another_owners_tag(h, &["-e", "DINDBOX_CONTAINERD_STORE=1"], "overlayfs");
}

/// Two owners load one free tag at the same time, each its own image (A's
/// small, B's with a 96 MiB layer): one load sets the tag, the other is
/// refused (when its own archive has been read, if the tag was taken by
/// then; or after dockerd loaded it untagged), and the tag never points at
/// the loser's image.
fn loads_of_one_free_tag_race(h: &harness::Harness) {
    let vol = Volume::new(h, "loadrace");
    let b = DindBox::start(h, "loadrace", &vol);
    b.start_standalone_proxy(2392, "--owner-label ci.job=a");
    b.start_standalone_proxy(2393, "--owner-label ci.job=b");
    // The two archives, tagged race:1, made on the daemon and removed from it.
    let ids = b.exec_ok(&format!(
        "set -e; for x in a:1048576 b:100663296; do n=${{x%%:*}}; mkdir /tmp/$n; \
         head -c ${{x#*:}} /dev/urandom >/tmp/$n/blob; tar -C /tmp/$n -c . | {DIRECT} import - race:1 >/dev/null; \
         {DIRECT} image inspect -f '{{{{.Id}}}}' race:1; {DIRECT} save race:1 >/tmp/$n.tar; \
         {DIRECT} rmi race:1 >/dev/null; rm -r /tmp/$n; done"
    ));
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let load = |port: u16, archive: &str| {
        let script = format!(
            "docker -H unix:///run/dindbox/standalone-{port}.sock load -i /tmp/{archive}.tar"
        );
        let cmd = h.outer_cmd(&["exec", &b.name, "sh", "-c", &script]);
        std::thread::spawn(move || harness::run(cmd, None, Duration::from_secs(180)))
    };
    // B's big load first: A's small one overtakes it.
    let other = load(2393, "b");
    let a = load(2392, "a");
    let outs = [a.join().unwrap(), other.join().unwrap()];
    let tagged = b.points_to("race:1");
    let winners: Vec<usize> = (0..2).filter(|&i| outs[i].ok()).collect();
    let [winner] = winners[..] else {
        panic!(
            "exactly one load must set race:1:\n{}\n{}",
            outs[0], outs[1]
        );
    };
    let loser = 1 - winner;
    assert_eq!(
        tagged, ids[winner],
        "race:1 must point at the winner's image"
    );
    assert_eq!(
        outs[winner].stdout.trim(),
        "Loaded image: race:1",
        "{}",
        outs[winner]
    );
    let refusal = &outs[loser];
    let after_loading = refusal.stderr.contains("loaded untagged");
    assert!(
        refusal.stderr.contains("dindbox: ")
            && refusal.stderr.contains("race:1 is not allowed")
            && refusal.stderr.contains("another owner")
            && !refusal.stdout.contains("Loaded image: race"),
        "the other load must end with the refusal:\n{refusal}"
    );
    eprintln!(
        "load race: {} won; the other was refused {}",
        ["A", "B"][winner],
        if after_loading {
            "after dockerd loaded its image untagged"
        } else {
            "once its archive was read"
        }
    );
    // The loser's image is untagged, or was never loaded.
    let loser_tags = b.exec_ok(&format!(
        "{DIRECT} image inspect -f '{{{{len .RepoTags}}}}' {} 2>/dev/null || echo none",
        ids[loser]
    ));
    let expected = if after_loading { "0" } else { "none" };
    assert_eq!(loser_tags.trim(), expected, "the loser's image");
}

#[test]
fn loads_of_one_free_tag_race_on_dockerd_20_10() {
    let Some(h) = harness::harness_for_suite("bookworm") else {
        return;
    };
    loads_of_one_free_tag_race(h);
}

#[test]
fn loads_of_one_free_tag_race_on_dockerd_28() {
    let Some(h) = harness::harness_for_suite("sid") else {
        return;
    };
    loads_of_one_free_tag_race(h);
}

/// `docker tag` of A's image and of B's to `tag`, started at once inside the
/// box through each owner's proxy: whether each worked, and what it printed.
fn tag_at_once(b: &DindBox, tag: &str) -> [(bool, String); 2] {
    let one = |port: u16, image: &str, out: &str| {
        format!(
            "(docker -H unix:///run/dindbox/standalone-{port}.sock tag {image} {tag} >/tmp/{out} 2>&1 \
             && echo tagged >>/tmp/{out})"
        )
    };
    let both = b.exec_ok(&format!(
        "{} & {} & wait; cat /tmp/ta; echo ---; cat /tmp/tb; rm /tmp/ta /tmp/tb",
        one(2392, "a-img", "ta"),
        one(2393, "b-img", "tb")
    ));
    let (a, other) = both.split_once("---\n").expect("both outputs");
    [a, other].map(|out| (out.trim_end().ends_with("tagged"), out.to_string()))
}

/// Two owners' proxies tag one free tag at the same moment, round after
/// round: each time exactly one sets it (the tag points at its image), the
/// other is refused (it found the tag's lock held, or, once it got the
/// lock, the tag the other owner's); no lock container is left behind, and
/// a tenant cannot create a container with a lock's name. `extra` and
/// `driver` as for [`pulls_do_not_move_another_owners_tag`].
fn tags_of_one_free_tag_race(h: &harness::Harness, extra: &[&str], driver: &str) {
    let vol = Volume::new(h, "tagrace");
    let b = DindBox::start_with(h, "tagrace", &vol, extra);
    let reported = b.exec_ok(&format!("{DIRECT} info -f '{{{{.Driver}}}}'"));
    assert_eq!(reported.trim(), driver, "the image store under test");
    b.load_busybox();
    let a = b.start_standalone_proxy(2392, "--owner-label ci.job=a");
    let other = b.start_standalone_proxy(2393, "--owner-label ci.job=b");
    ok(
        &a,
        &["build", "-q", "-t", "a-img", "-"],
        Some(b"FROM busybox\nRUN echo a > /who\n"),
    );
    ok(
        &other,
        &["build", "-q", "-t", "b-img", "-"],
        Some(b"FROM busybox\nRUN echo b > /who\n"),
    );
    let images = [b.points_to("a-img:latest"), b.points_to("b-img:latest")];
    for round in 0..8 {
        let tag = format!("race:{round}");
        let outs = tag_at_once(&b, &tag);
        let winners: Vec<usize> = (0..2).filter(|&i| outs[i].0).collect();
        let [winner] = winners[..] else {
            panic!("exactly one must set {tag}:\n{}\n{}", outs[0].1, outs[1].1);
        };
        assert_eq!(b.points_to(&tag), images[winner], "{tag}");
        let refusal = &outs[1 - winner].1;
        assert!(
            refusal.contains("dindbox: ")
                && (refusal.contains("another owner")
                    || refusal.contains("is being set by another job")),
            "{refusal}"
        );
    }
    // How often one proxy found the other's lock held (it logs that once
    // per wait): timing, so reported, not asserted.
    let waits = b.exec("cat /tmp/standalone-2392.log /tmp/standalone-2393.log");
    let waits = waits.stdout.matches("waiting for the tag lock").count();
    eprintln!("tag race: in 8 rounds, a proxy waited for the other's lock {waits} times");
    let left = b.exec_ok(&format!("{DIRECT} ps -aq --filter label=dindbox.taglock"));
    assert_eq!(left.trim(), "", "lock containers left behind");
    let taken = via(
        &other,
        &["create", "--name", "dindbox-taglock-x", "busybox", "true"],
        None,
    );
    assert!(
        !taken.ok() && taken.stderr.contains("tag locks"),
        "a tenant must not take a lock's name:\n{taken}"
    );
    let created = b.exec_ok(&format!("{DIRECT} ps -aq --filter name=dindbox-taglock-x"));
    assert_eq!(created.trim(), "", "the refused create left a container");
}

#[test]
fn tags_of_one_free_tag_race_on_dockerd_20_10() {
    let Some(h) = harness::harness_for_suite("bookworm") else {
        return;
    };
    tags_of_one_free_tag_race(h, &[], "overlay2");
}

#[test]
fn tags_of_one_free_tag_race_on_dockerd_28() {
    let Some(h) = harness::harness_for_suite("sid") else {
        return;
    };
    tags_of_one_free_tag_race(h, &[], "overlay2");
}

/// In the containerd image store a lock container is a snapshot of the
/// image being tagged.
#[test]
fn tags_of_one_free_tag_race_on_dockerd_28_containerd_store() {
    let Some(h) = harness::harness_for_suite("sid") else {
        return;
    };
    tags_of_one_free_tag_race(h, &["-e", "DINDBOX_CONTAINERD_STORE=1"], "overlayfs");
}
