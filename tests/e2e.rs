//! End to end: the dindbox image on a real outer dockerd, used the way a user
//! does (issue 3): `docker run --privileged -e PORT=2375 -p 127.0.0.1:P:2375
//! -v VOL:/var/lib/docker dindbox:dev`, then the docker CLI through P.
//!
//! Needs root. The harness (tests/e2e/harness.rs) starts a private outer
//! dockerd through scripts/lib.sh and builds the image with
//! scripts/build-image.sh from the static binary users get (a nested, static
//! `cargo build`; `DINDBOX_BINARY=path` picks another binary,
//! `DINDBOX_E2E_SKIP_BUILD=1` uses the existing image). Every test runs its
//! own box on its own volume and port, removed even when the test fails.

#[path = "e2e/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{
    harness, poll, run, run_holding_stdin, wait_timeout, DindBox, Harness, PtyChild, Volume,
};

/// `let h = need_harness!();` or return (skipped, loudly) when not root.
macro_rules! need_harness {
    () => {
        match harness() {
            Some(h) => h,
            None => return,
        }
    };
}

// The suites, one module each (tests named `SUITE::TEST`), declared after
// the macro so they can use it; one process, so the outer dockerd, the
// busybox tarball and each image are set up once for all of them.
/// The image's supported bases (issue 12).
#[path = "e2e/bases.rs"]
mod bases;
/// compose v2 and buildx through the proxy (issue 12).
#[path = "e2e/clients.rs"]
mod clients;
/// The containerd image store (issue 12).
#[path = "e2e/containerd.rs"]
mod containerd;
/// The host's CLI against the sid box, the API version window (issue 12).
#[path = "e2e/current.rs"]
mod current;
/// docker-py's integration suite, direct and through the proxy (issue 12).
#[path = "e2e/dockerpy.rs"]
mod dockerpy;
/// API 1.42-1.55 fields on the sid box (issue 12).
#[path = "e2e/fields.rs"]
mod fields;
/// Boxes on a host graphdriver-server (issue 5).
#[path = "e2e/graphdriver.rs"]
mod graphdriver;
/// The review's bypass classes as raw HTTP, in every proxy mode (issue 11).
#[path = "e2e/host_server.rs"]
mod host_server;

#[path = "e2e/hardening.rs"]
mod hardening;
/// The proxy's rules through the real CLI (issue 4).
#[path = "e2e/policy.rs"]
mod policy;
/// The static binary alone in a FROM scratch image (issue 12).
#[path = "e2e/scratch.rs"]
mod scratch;
/// Boxes on a host snapshotter-server, Docker 28+ (issue 14).
#[path = "e2e/snapshotter.rs"]
mod snapshotter;
/// Image tags between two owners' standalone proxies (issue 11).
#[path = "e2e/tags.rs"]
mod tags;
/// `dindbox tenant` against the outer daemon as the host (issue 6).
#[path = "e2e/tenant.rs"]
mod tenant;
/// DOCKER_TLS_CERTDIR boxes and the CLI's client certificates (issue 6).
#[path = "e2e/tls.rs"]
mod tls;
/// A box without --privileged on a userns-remap daemon, escape probes (issue 15).
#[path = "e2e/unprivileged.rs"]
mod unprivileged;

#[test]
fn docker_version_works_through_port() {
    let h = need_harness!();
    let vol = Volume::new(h, "version");
    let b = DindBox::start(h, "version", &vol);
    let out = b.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        !out.stdout.trim().is_empty(),
        "`docker version` through {} printed no server version:\n{out}",
        b.api
    );
}

#[test]
fn load_and_run_busybox_through_port() {
    let h = need_harness!();
    let vol = Volume::new(h, "run");
    let b = DindBox::start(h, "run", &vol);
    b.load_busybox();
    let images = b.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.stdout.lines().any(|l| l == "busybox:latest"),
        "busybox:latest not listed after `docker load`:\n{images}"
    );
    let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(
        out.stdout, "hi\n",
        "`docker run --rm busybox echo hi`:\n{out}"
    );
    // stdin through the attach hijack, with half-close at EOF.
    let out = run(
        b.docker_cmd(&["run", "--rm", "-i", "busybox", "cat"]),
        Some(b"piped through\n"),
        Duration::from_secs(60),
    );
    b.expect_ok(&out);
    assert_eq!(
        out.stdout, "piped through\n",
        "`docker run -i busybox cat`:\n{out}"
    );
}

#[test]
fn detached_logs_exec_attach_work_through_port() {
    let h = need_harness!();
    let vol = Volume::new(h, "streams");
    let b = DindBox::start(h, "streams", &vol);
    b.load_busybox();

    // run -d + logs -f: follows until the container exits.
    assert_eq!(
        b.followed_logs("echo one; sleep 2; echo two"),
        "one\ntwo\n",
        "`docker logs -f` of a detached container"
    );

    // exec, with and without stdin.
    let sleeper = b
        .docker_ok(&["run", "-d", "busybox", "sleep", "300"])
        .stdout
        .trim()
        .to_owned();
    let out = b.docker_ok(&["exec", &sleeper, "echo", "exec-ok"]);
    assert_eq!(out.stdout, "exec-ok\n", "`docker exec`:\n{out}");
    let out = run(
        b.docker_cmd(&["exec", "-i", &sleeper, "cat"]),
        Some(b"exec stdin\n"),
        Duration::from_secs(30),
    );
    b.expect_ok(&out);
    assert_eq!(
        out.stdout, "exec stdin\n",
        "`docker exec -i cat` with piped stdin:\n{out}"
    );

    // attach: the container waits for a line on stdin and answers it.
    let reader = b
        .docker_ok(&[
            "run",
            "-d",
            "-i",
            "busybox",
            "sh",
            "-c",
            "read line; echo got:$line",
        ])
        .stdout
        .trim()
        .to_owned();
    let out = run_holding_stdin(
        b.docker_cmd(&["attach", &reader]),
        b"hello\n",
        Duration::from_secs(30),
    );
    b.expect_ok(&out);
    assert_eq!(
        out.stdout, "got:hello\n",
        "`docker attach` with piped stdin:\n{out}"
    );
}

#[test]
fn headline_escapes_are_refused_with_a_reason() {
    let h = need_harness!();
    let vol = Volume::new(h, "deny");
    let b = DindBox::start(h, "deny", &vol);
    b.load_busybox();
    let cases: [(&str, &[&str]); 4] = [
        (
            "--privileged",
            &["run", "--rm", "--privileged", "busybox", "true"],
        ),
        (
            "--cap-add SYS_ADMIN",
            &["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "true"],
        ),
        (
            "-v /:/host",
            &["run", "--rm", "-v", "/:/host", "busybox", "true"],
        ),
        (
            "--mount type=bind",
            &[
                "run",
                "--rm",
                "--mount",
                "type=bind,src=/,dst=/host",
                "busybox",
                "true",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args) in cases {
        let out = b.docker(args);
        if out.ok() || !out.stderr.contains("dindbox:") {
            failures.push(format!(
                "`docker run {what}` must fail with a `dindbox:` reason on stderr:\n{out}"
            ));
        } else {
            eprintln!("{what} refused: {}", out.stderr.trim());
        }
    }
    // Exec with --privileged into an ordinary container.
    let id = b
        .docker_ok(&["run", "-d", "busybox", "sleep", "300"])
        .stdout
        .trim()
        .to_owned();
    let out = b.docker(&["exec", "--privileged", &id, "true"]);
    if out.ok() || !out.stderr.contains("dindbox:") {
        failures.push(format!(
            "`docker exec --privileged` must fail with a `dindbox:` reason on stderr:\n{out}"
        ));
    }
    // Nothing refused may have been created.
    let all = b.docker_ok(&["ps", "-aq"]);
    if all.stdout.split_whitespace().count() != 1 {
        failures.push(format!("refused runs left containers behind:\n{all}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn pid1_is_dindbox_and_dockerd_is_not_on_the_public_socket() {
    let h = need_harness!();
    let vol = Volume::new(h, "inside");
    let b = DindBox::start(h, "inside", &vol);

    // The image's HEALTHCHECK command: the proxy answers and dockerd behind it.
    b.exec_ok("dindbox health");

    let cmdline = b.exec_ok("tr '\\0' ' ' </proc/1/cmdline");
    let argv0 = cmdline.split_whitespace().next().unwrap_or("");
    assert!(
        argv0.rsplit('/').next() == Some("dindbox"),
        "PID 1 of the box must be dindbox, its cmdline is {cmdline:?}"
    );

    let dockerd = b.exec_ok("tr '\\0' ' ' </proc/$(pidof dockerd)/cmdline");
    assert!(
        !dockerd.contains("/var/run/docker.sock") && !dockerd.contains("/run/docker.sock "),
        "the inner dockerd must not be told to listen on /var/run/docker.sock: {dockerd:?}"
    );
    // Who holds the sockets bound at /var/run/docker.sock: PID 1 (the proxy), not dockerd.
    let holders = b.exec_ok(
        r#"for i in $(awk '$8 == "/var/run/docker.sock" || $8 == "/run/docker.sock" {print $7}' /proc/net/unix); do
             for p in 1 $(pidof dockerd); do
               ls -l /proc/$p/fd 2>/dev/null | grep -q "socket:\[$i\]" && echo "$p:$(cat /proc/$p/comm)";
             done
           done | sort -u"#,
    );
    let holders: Vec<&str> = holders.lines().collect();
    assert!(
        holders.iter().any(|h| h.starts_with("1:")) && !holders.iter().any(|h| h.contains("dockerd")),
        "/var/run/docker.sock must be served by PID 1 (the proxy) and not by dockerd; holders: {holders:?}"
    );
    // The public socket inside the box answers, and is guarded too.
    let out = b.exec("docker version --format '{{.Server.Version}}'");
    b.expect_ok(&out);
    let out = b.exec("docker run --rm --privileged busybox true");
    assert!(
        !out.ok() && out.stderr.contains("dindbox:"),
        "`docker run --privileged` through the box's own /var/run/docker.sock must be refused:\n{out}"
    );
}

#[test]
fn docker_stop_exits_zero_within_10s() {
    let h = need_harness!();
    let vol = Volume::new(h, "stop");
    let b = DindBox::start(h, "stop", &vol);
    b.load_busybox();
    // An inner container that stops on SIGTERM, so dockerd has something to shut down.
    b.docker_ok(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    assert_docker_stop_is_clean_within_10s(h, &b, "");
}

/// An inner container whose PID 1 ignores SIGTERM (`sleep`, most shells) would
/// make dockerd wait its full per-container stop timeout (10 s) before SIGKILL,
/// and the outer `docker stop` (also 10 s) would kill the box: exit 137. init
/// drains the containers with a shorter timeout first.
#[test]
fn docker_stop_with_a_sigterm_ignoring_inner_container_exits_zero_within_10s() {
    let h = need_harness!();
    let vol = Volume::new(h, "stop-stubborn");
    let b = DindBox::start(h, "stop-stubborn", &vol);
    b.load_busybox();
    b.docker_ok(&["run", "-d", "busybox", "sleep", "1000"]);
    assert_docker_stop_is_clean_within_10s(h, &b, " even when an inner container ignores SIGTERM");
}

/// `docker stop` of the box (outer daemon, default 10 s timeout) must end it
/// with exit code 0 within those 10 s.
fn assert_docker_stop_is_clean_within_10s(h: &Harness, b: &DindBox, context: &str) {
    let started = Instant::now();
    let out = run(
        h.outer_cmd(&["stop", &b.name]),
        None,
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    b.expect_ok(&out);
    let code = b.state("{{.State.ExitCode}}");
    eprintln!(
        "{}: docker stop took {} ms, exit code {code}",
        b.name,
        took.as_millis()
    );
    if code != "0" || took > Duration::from_secs(10) {
        b.fail(&format!(
            "`docker stop` must stop the box cleanly (exit code 0) within 10 s{context}; \
             it took {:.1} s and the exit code is {code}",
            took.as_secs_f64()
        ));
    }
}

#[test]
fn second_start_on_the_same_volume_keeps_images() {
    let h = need_harness!();
    let vol = Volume::new(h, "restart");
    {
        let b = DindBox::start(h, "restart", &vol);
        b.load_busybox();
        b.expect_ok(&run(
            h.outer_cmd(&["stop", &b.name]),
            None,
            Duration::from_secs(30),
        ));

        // The same container again: its /run still holds the old pid files.
        let out = h.outer(&["start", &b.name]);
        b.expect_ok(&out);
        let took = b.wait_ready();
        eprintln!(
            "{}: ready again after docker start in {} ms",
            b.name,
            took.as_millis()
        );
        let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "still here"]);
        assert_eq!(
            out.stdout, "still here\n",
            "busybox after `docker start`:\n{out}"
        );
    }
    // A new box on the same volume.
    let b = DindBox::start(h, "restart-new", &vol);
    let images = b.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.stdout.lines().any(|l| l == "busybox:latest"),
        "a new box on the same volume must see the images loaded before:\n{images}"
    );
}

#[test]
fn killed_dockerd_is_restarted() {
    let h = need_harness!();
    let vol = Volume::new(h, "kill9");
    let b = DindBox::start(h, "kill9", &vol);
    b.load_busybox();
    let old = b.exec_ok("pidof dockerd").trim().to_owned();
    b.exec_ok("kill -9 $(pidof dockerd)");
    let killed = Instant::now();
    let back = poll(Duration::from_secs(30), || {
        let pid = b.exec("pidof dockerd").stdout.trim().to_owned();
        let api = run(b.docker_cmd(&["version"]), None, Duration::from_secs(5));
        (!pid.is_empty() && pid != old && api.ok()).then_some(pid)
    });
    let Some(new) = back else {
        b.fail(&format!(
            "after `kill -9` of the inner dockerd ({old}) no new dockerd answered through the port within 30 s"
        ));
    };
    eprintln!(
        "{}: dockerd {old} killed, {new} answering after {} ms",
        b.name,
        killed.elapsed().as_millis()
    );
    let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "after restart"]);
    assert_eq!(
        out.stdout, "after restart\n",
        "a container after the dockerd restart:\n{out}"
    );
}

#[test]
fn shell_mode_runs_docker_and_exits_with_the_shell_code() {
    let h = need_harness!();
    let vol = Volume::new(h, "shell");
    let name = harness::unique("shell");
    let mount = format!("{}:/var/lib/docker", vol.name);
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", &h.outer).args([
        "run",
        "--rm",
        "-it",
        "--privileged",
        "--name",
        &name,
        "-v",
        &mount,
        &h.image,
    ]);
    let _cleanup = RemoveOnDrop(h, name.clone());
    let mut pty = PtyChild::spawn(cmd);

    // The shell comes only after the inner daemon is ready.
    let at = pty
        .expect(0, "# ", Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("shell mode gave no root prompt: {e}"));
    pty.type_line("docker info");
    let at = pty
        .expect(at, "Server Version", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("`docker info` in shell mode did not work: {e}"));
    pty.expect(at, "# ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no prompt after `docker info`: {e}"));
    pty.type_line("exit 3");
    let (code, timed_out) = wait_timeout(&mut pty.child, Duration::from_secs(30));
    assert!(
        !timed_out && code == Some(3),
        "after `exit 3` the outer `docker run -it` must exit 3 (got {code:?}, timed out: {timed_out}); pty transcript:\n{}",
        pty.transcript()
    );
}

/// Force-removes an outer container on drop.
struct RemoveOnDrop<'h>(&'h harness::Harness, String);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.outer(&["rm", "-f", "-v", &self.1]);
    }
}
