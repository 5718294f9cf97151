//! A box without `--privileged` (issue 15): on a second outer daemon started
//! with `--userns-remap` (in a network namespace of its own, see
//! `harness::userns_harness`), with only the options of
//! `harness::unprivileged_box_options`. The tenant's Docker works through the
//! proxy, and the escape probes of tests/e2e/escape_probes.sh, which escape
//! from today's `--privileged` box (the control), are denied in it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::harness::{self, run, unique, userns_harness, DindBox, Harness, Volume};

/// `let h = need_userns_harness!();` or return (skipped, loudly) when not root.
macro_rules! need_userns_harness {
    () => {
        match userns_harness() {
            Some(h) => h,
            None => return,
        }
    };
}

/// The sleep argument that names the host's probe target process.
const HOST_SLEEP: &str = "31415";
/// The probes escape_probes.sh runs, in its order.
const PROBES: [&str; 8] = [
    "sysrq", "sysctl", "blockdev", "devices", "module", "cgroup", "signal", "otherbox",
];
/// The box's private dockerd socket, which only the box's root reaches.
const DIRECT: &str = harness::DIRECT;

#[test]
fn tenant_docker_works_in_a_box_without_privileged() {
    let h = need_userns_harness!();
    let vol = Volume::new(h, "unpriv");
    let b = DindBox::start(h, "unpriv", &vol);
    assert_eq!(
        b.state("{{.HostConfig.Privileged}} {{.HostConfig.CapAdd}}"),
        "false []",
        "the box must run without --privileged and without added capabilities"
    );
    let map = b.exec_ok("cat /proc/self/uid_map");
    let host_root = map.split_whitespace().nth(1).unwrap_or_default();
    assert_ne!(
        host_root, "0",
        "the box's root must not be the host's root:\n{map}"
    );
    let log = h.outer(&["logs", &b.name]);
    assert!(
        log.stderr
            .contains("box without --privileged: dockerd runs rootless"),
        "init did not say it runs dockerd rootless:\n{log}"
    );

    b.load_busybox();
    let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out.stdout, "hi\n", "{out}");

    // A user-defined network, a container on it with a published port, exec,
    // and the port answering inside the box.
    b.docker_ok(&["network", "create", "tenant-net"]);
    b.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "tenant-net",
        "-p",
        "8080:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let out = b.docker_ok(&["exec", "web", "echo", "exec-ok"]);
    assert_eq!(out.stdout, "exec-ok\n", "{out}");
    let page = harness::poll(Duration::from_secs(20), || {
        let out = b.exec(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && \
             printf \"GET /passwd HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3'",
        );
        out.stdout.contains("root:x:0:0").then_some(out.stdout)
    });
    assert!(
        page.is_some(),
        "the published port 8080 did not serve /etc/passwd inside the box"
    );

    // logs -f follows until the container exits.
    assert_eq!(b.followed_logs("echo one; sleep 1; echo two"), "one\ntwo\n");

    // A named volume shared by two containers.
    b.docker_ok(&["volume", "create", "tenant-vol"]);
    b.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "tenant-net",
        "-v",
        "tenant-vol:/v",
        "busybox",
        "sh",
        "-c",
        "echo kept > /v/f",
    ]);
    let out = b.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "tenant-vol:/v",
        "busybox",
        "cat",
        "/v/f",
    ]);
    assert_eq!(out.stdout, "kept\n", "{out}");

    // A build, then its image runs.
    let out = run(
        b.docker_cmd(&["build", "-q", "-t", "built", "-"]),
        Some(b"FROM busybox\nRUN echo built > /b\n"),
        Duration::from_secs(120),
    );
    b.expect_ok(&out);
    let out = b.docker_ok(&["run", "--rm", "built", "cat", "/b"]);
    assert_eq!(out.stdout, "built\n", "{out}");

    // The proxy is in front: what it refuses in any box it refuses here.
    let out = b.docker(&["run", "--rm", "--privileged", "busybox", "true"]);
    assert!(
        !out.ok()
            && out
                .stderr
                .contains("dindbox: privileged mode is not allowed"),
        "a privileged create went through the proxy:\n{out}"
    );
}

/// A host-root process in a box's pid namespace: the probes' target for
/// signals and ptrace. Removed on drop.
struct HostProcess<'h> {
    h: &'h Harness,
    name: String,
}

impl<'h> HostProcess<'h> {
    fn start(h: &'h Harness, b: &DindBox) -> Self {
        let name = unique("probe-target");
        let pid = format!("container:{}", b.name);
        let mut args = vec!["run", "-d", "--name", &name, "--pid", &pid];
        // On the userns-remap daemon, only this makes its root the host's.
        if h.cli_netns.is_some() {
            args.push("--userns=host");
        }
        args.extend(["busybox", "sleep", HOST_SLEEP]);
        let out = h.outer(&args);
        assert!(out.ok(), "cannot start the host-root probe target:\n{out}");
        HostProcess { h, name }
    }
}

impl Drop for HostProcess<'_> {
    fn drop(&mut self) {
        self.h.outer(&["rm", "-f", &self.name]);
    }
}

/// Each probe's verdict (`escaped`, `denied`, `absent`) and detail.
fn parse_probes(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("PROBE "))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next()?.to_owned();
            let verdict = parts.next()?.to_owned();
            Some((name, (verdict, parts.next().unwrap_or_default().to_owned())))
        })
        .collect()
}

/// The probes' verdicts from the box's root shell and from the strongest inner
/// container the box's root can start on its private socket (`inner_flags`),
/// with another box's file to read.
struct Verdicts {
    box_root: BTreeMap<String, (String, String)>,
    inner: BTreeMap<String, (String, String)>,
}

fn probe(h: &Harness, tag: &str, inner_flags: &str) -> Verdicts {
    let other_vol = Volume::new(h, &format!("{tag}-other"));
    let other = DindBox::launch(h, &format!("{tag}-other"), &other_vol);
    other.exec_ok("echo other-box-secret > /var/lib/docker/dindbox-probe-secret");
    let mountpoint = h.outer(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &other_vol.name,
    ]);
    assert!(mountpoint.ok(), "{mountpoint}");
    let other_data = format!("{}/dindbox-probe-secret", mountpoint.stdout.trim());

    let vol = Volume::new(h, tag);
    let b = DindBox::start(h, tag, &vol);
    b.load_busybox();
    let _target = HostProcess::start(h, &b);
    let script = format!("{}/tests/e2e/escape_probes.sh", env!("CARGO_MANIFEST_DIR"));
    for (from, to) in [
        ("/bin/busybox", "/usr/local/bin/busybox"),
        (script.as_str(), "/probes.sh"),
    ] {
        let out = h.outer(&["cp", from, &format!("{}:{to}", b.name)]);
        assert!(out.ok(), "{out}");
    }
    let env = [
        format!("HOST_SLEEP={HOST_SLEEP}"),
        format!("OTHER_DATA={other_data}"),
    ];
    let out = h.outer(&[
        "exec",
        "-e",
        &env[0],
        "-e",
        &env[1],
        &b.name,
        "busybox",
        "sh",
        "/probes.sh",
    ]);
    eprintln!("{tag}: probes from the box's root shell:\n{}", out.stdout);
    let box_root = parse_probes(&out.stdout);
    let out = b.exec(&format!(
        "{DIRECT} run --rm {inner_flags} --pid host -v /probes.sh:/probes.sh:ro \
         -e {} -e {} busybox sh /probes.sh",
        env[0], env[1]
    ));
    eprintln!("{tag}: probes from an inner container ({inner_flags}):\n{out}");
    let inner = parse_probes(&out.stdout);
    Verdicts { box_root, inner }
}

/// Every probe ran and got one of `allowed` (the others fail the test).
fn expect_verdicts(what: &str, verdicts: &BTreeMap<String, (String, String)>, allowed: &[&str]) {
    for name in PROBES {
        let Some((verdict, detail)) = verdicts.get(name) else {
            panic!("{what}: probe {name} did not report; all: {verdicts:?}");
        };
        assert!(
            allowed.contains(&verdict.as_str()),
            "{what}: probe {name} {verdict} ({detail}); expected one of {allowed:?}"
        );
    }
}

fn expect_denied_where_escaped(
    what: &str,
    control: &BTreeMap<String, (String, String)>,
    boxed: &BTreeMap<String, (String, String)>,
) {
    for (name, (verdict, _)) in control.iter().filter(|(_, (v, _))| v == "escaped") {
        let (got, detail) = &boxed[name];
        assert_eq!(
            got, "denied",
            "{what}: probe {name} {verdict} from the privileged box and {got} ({detail}) without it"
        );
    }
}

#[test]
fn escape_probes_escape_the_privileged_box_and_fail_without_privileged() {
    let unprivileged = need_userns_harness!();
    let privileged = harness::harness().expect("the userns harness implies the default one");

    // The control: today's --privileged box, where each probe escapes (or the
    // kernel lacks the feature outright: "absent").
    let control = probe(privileged, "probe-ctl", "--privileged");
    expect_verdicts(
        "privileged box, root shell",
        &control.box_root,
        &["escaped", "absent"],
    );
    expect_verdicts(
        "privileged box, inner --privileged container",
        &control.inner,
        &["escaped", "absent"],
    );

    // An inner --privileged container cannot start without a writable /sys
    // (runc mounts sysfs read-write; the box's is read-only), so the box's
    // root gets every capability, no seccomp filter and no masked or
    // read-only /proc paths instead: a denial is then the kernel's.
    let boxed = probe(
        unprivileged,
        "probe-unpriv",
        "--cap-add ALL --security-opt seccomp=unconfined --security-opt systempaths=unconfined",
    );
    expect_verdicts(
        "box without --privileged, root shell",
        &boxed.box_root,
        &["denied", "absent"],
    );
    expect_verdicts(
        "box without --privileged, inner container",
        &boxed.inner,
        &["denied", "absent"],
    );
    // A probe the control could not run (the kernel lacks the feature) proves
    // nothing either way; every one that escaped the control is denied here.
    expect_denied_where_escaped("root shell", &control.box_root, &boxed.box_root);
    expect_denied_where_escaped("inner container", &control.inner, &boxed.inner);
}
