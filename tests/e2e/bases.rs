//! End to end on the other supported Debian bases (issue 12, "Image on a
//! current engine"): the image built on a debootstrapped trixie (dockerd 26.1)
//! and on a debootstrapped bookworm (dockerd 20.10), each as
//! `dindbox:dev-<suite>` (scripts/build-image.sh with `DINDBOX_SUITE`). The
//! default base, sid (dockerd 28.5, containerd 2.1, runc 1.3), is what the
//! rest of the e2e suite runs on.
//!
//! For each: a box starts; `docker version` through the proxy names the
//! engine's version and its newest API (1.45, 1.41: the proxy serves up to
//! the daemon's newest, below the policy's 1.55), which the CLI negotiates
//! to (or below); `docker run --rm busybox echo hi` works;
//! `docker run --privileged` is refused with the `dindbox:` reason and leaves
//! no container behind; `docker stop` of the box (an inner container that
//! ignores SIGTERM running) exits 0 within the grace.
//!
//! The base is debootstrapped once and cached under $DINDBOX_CACHE (a few
//! minutes the first time); the image is built once per test process.
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::time::{Duration, Instant};

use crate::harness::{harness_for_suite, run, DindBox, Volume};

#[test]
fn trixie_box_runs_refuses_and_stops() {
    smoke("trixie", "26.1.", "1.45");
}

#[test]
fn bookworm_box_runs_refuses_and_stops() {
    smoke("bookworm", "20.10.", "1.41");
}

/// `1.45` as a comparable pair.
fn api(version: &str) -> (u32, u32) {
    let (major, minor) = version.split_once('.').unwrap_or((version, ""));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

/// `engine`: the prefix of the engine's version; `engine_api`: its newest API.
fn smoke(suite: &str, engine: &str, engine_api: &str) {
    let Some(h) = harness_for_suite(suite) else {
        return;
    };
    let tag = format!("base-{suite}");
    let vol = Volume::new(h, &tag);
    let b = DindBox::start(h, &tag, &vol);

    // The engine's own version, its newest API (the proxy serves it: below
    // the policy's newest), and the version the client negotiated to.
    let out = b.docker_ok(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]);
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(
        fields.len() == 3
            && fields[0].starts_with(engine)
            && fields[1] == engine_api
            && api(fields[2]) <= api(engine_api),
        "{suite}: `docker version` through the proxy must show engine {engine}x at API \
         {engine_api}, and the client at that version or below:\n{out}"
    );
    eprintln!("{suite}: engine {} at API {}", fields[0], fields[1]);

    b.load_busybox();
    let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out.stdout, "hi\n", "{suite}: busybox echo:\n{out}");

    // A refusal: the proxy's reason, and nothing created.
    let before = b.docker_ok(&["ps", "-aq"]).stdout;
    let out = b.docker(&["run", "--rm", "--privileged", "busybox", "true"]);
    if out.ok() || !out.stderr.contains("dindbox:") {
        b.fail(&format!(
            "{suite}: `docker run --privileged` must fail with a `dindbox:` reason:\n{out}"
        ));
    }
    eprintln!("{suite}: --privileged refused: {}", out.stderr.trim());
    let after = b.docker_ok(&["ps", "-aq"]).stdout;
    assert_eq!(
        before, after,
        "{suite}: a refused `docker run --privileged` must create no container"
    );

    // An inner container whose PID 1 ignores SIGTERM, so init's drain and
    // this engine's shutdown both run; the box must stop cleanly within the
    // outer 10 s grace.
    b.docker_ok(&["run", "-d", "busybox", "sleep", "1000"]);
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
        "{suite}: docker stop took {} ms, exit code {code}",
        took.as_millis()
    );
    if code != "0" || took > Duration::from_secs(10) {
        b.fail(&format!(
            "{suite}: `docker stop` must stop the box cleanly (exit code 0) within 10 s; \
             it took {:.1} s and the exit code is {code}",
            took.as_secs_f64()
        ));
    }
}
