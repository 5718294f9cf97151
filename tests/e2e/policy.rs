//! End to end for the validating proxy (issue 4, "Tests", the E2E bullet):
//! the real Docker CLI against a real box's proxy on its published PORT.
//!
//! - every refused flag prints the `dindbox:` reason and creates nothing;
//! - benign work (run, exec, logs -f, cp, build, save/load, networks,
//!   volumes, stats, events) goes through;
//! - `DINDBOX_LABELS` lands on containers, built images, networks and volumes;
//! - `DINDBOX_MEMORY_LIMIT`: containers sit under the box's `dindbox` parent
//!   cgroup, which carries the limit, and a container past it is OOM-killed
//!   while the box lives on;
//! - two standalone `dindbox proxy` processes with different owner labels on
//!   the outer daemon cannot see each other's containers;
//! - `compose up -d` / `down -v` (the v2 plugin, or Debian's compose v1) of
//!   two services with a network and a named volume, all labelled;
//! - `DINDBOX_ALLOW=swarm`: hostile service specs refused, services, their
//!   task containers and secrets labelled, `swarm join` still refused.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs). Every test
//! runs its own box(es) on its own volume and port, removed even on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{
    self, harness, poll, run, unique, DindBox, Harness, Out, Volume, DIRECT, PREFIX,
};

/// The refused command `args` failed with a `dindbox: ... not allowed` reason
/// on stderr, or why not.
fn refusal_problem(what: &str, out: &Out) -> Option<String> {
    if out.ok() {
        return Some(format!("`{what}` must be refused but succeeded:\n{out}"));
    }
    if out.timed_out {
        return Some(format!("`{what}` must be refused but hung:\n{out}"));
    }
    if !out.stderr.contains("dindbox:") || !out.stderr.contains("not allowed") {
        return Some(format!(
            "`{what}` must fail with a `dindbox: ... is not allowed: <reason>` message on stderr:\n{out}"
        ));
    }
    None
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A temp dir for files the docker CLI reads and writes.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir()
        .expect("create a temp dir")
}

// ---------------------------------------------------------------- refusals

#[test]
fn every_refused_flag_prints_the_dindbox_reason_and_creates_nothing() {
    let h = need_harness!();
    let vol = Volume::new(h, "refuse");
    let b = DindBox::start(h, "refuse", &vol);
    b.load_busybox();
    let target = b
        .docker_ok(&["run", "-d", "--name", "target", "busybox", "sleep", "600"])
        .stdout
        .trim()
        .to_owned();

    // `docker run --name refused-N <flags> busybox true`: a container that
    // slipped through would carry its case's name.
    let run_cases: &[(&str, &[&str])] = &[
        ("--privileged", &["--privileged"]),
        ("--cap-add SYS_ADMIN", &["--cap-add", "SYS_ADMIN"]),
        ("-v /:/host", &["-v", "/:/host"]),
        (
            "--mount type=bind,src=/,dst=/h",
            &["--mount", "type=bind,src=/,dst=/h"],
        ),
        ("--device /dev/null", &["--device", "/dev/null"]),
        ("--pid host", &["--pid", "host"]),
        ("--net host", &["--net", "host"]),
        ("--ipc host", &["--ipc", "host"]),
        ("--userns host", &["--userns", "host"]),
        ("--uts host", &["--uts", "host"]),
        (
            "--security-opt seccomp=unconfined",
            &["--security-opt", "seccomp=unconfined"],
        ),
        (
            "--security-opt apparmor=unconfined",
            &["--security-opt", "apparmor=unconfined"],
        ),
        (
            "--security-opt systempaths=unconfined",
            &["--security-opt", "systempaths=unconfined"],
        ),
        ("--sysctl kernel.shmmax=1", &["--sysctl", "kernel.shmmax=1"]),
        ("--runtime runc", &["--runtime", "runc"]),
        ("--cgroup-parent /x", &["--cgroup-parent", "/x"]),
    ];
    let mut failures = Vec::new();
    for (i, (what, flags)) in run_cases.iter().enumerate() {
        let name = format!("refused-{i}");
        let mut args = vec!["run", "--rm", "--name", &name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "true"]);
        let out = b.docker(&args);
        match refusal_problem(&format!("docker run {what}"), &out) {
            Some(problem) => failures.push(problem),
            None => eprintln!("docker run {what}: {}", out.stderr.trim()),
        }
    }

    let other_cases: &[(&str, Vec<&str>)] = &[
        (
            "docker exec --privileged",
            vec!["exec", "--privileged", &target, "true"],
        ),
        (
            "docker volume create -o type=none -o o=bind -o device=/",
            vec![
                "volume",
                "create",
                "-o",
                "type=none",
                "-o",
                "o=bind",
                "-o",
                "device=/",
                "refused-vol",
            ],
        ),
        (
            "docker plugin install",
            vec!["plugin", "install", "--grant-all-permissions", "x"],
        ),
        ("docker swarm init", vec!["swarm", "init"]),
    ];
    for (what, args) in other_cases {
        let out = b.docker(args);
        match refusal_problem(what, &out) {
            Some(problem) => failures.push(problem),
            None => eprintln!("{what}: {}", out.stderr.trim()),
        }
    }

    // Nothing was created: asked of the inner dockerd directly (its private
    // socket, from inside the box), not through the proxy under test.
    let direct = "docker -H unix:///run/dindbox/docker.sock";
    let containers = b.exec_ok(&format!("{direct} ps -a --format '{{{{.Names}}}}'"));
    let names: Vec<&str> = containers.split_whitespace().collect();
    if names != ["target"] {
        failures.push(format!(
            "refused commands must create no container; the inner dockerd has {names:?} \
             (only \"target\" was created on purpose)"
        ));
    }
    let volumes = b.exec_ok(&format!("{direct} volume ls -q"));
    if !volumes.trim().is_empty() {
        failures.push(format!(
            "refused commands must create no volume; the inner dockerd has {volumes:?}"
        ));
    }
    let plugins = b.exec_ok(&format!("{direct} plugin ls -q"));
    if !plugins.trim().is_empty() {
        failures.push(format!(
            "`docker plugin install` must install nothing; the inner dockerd has {plugins:?}"
        ));
    }
    let swarm = b.exec_ok(&format!(
        "{direct} info --format '{{{{.Swarm.LocalNodeState}}}}'"
    ));
    if swarm.trim() != "inactive" {
        failures.push(format!(
            "`docker swarm init` must leave swarm mode inactive; it is {:?}",
            swarm.trim()
        ));
    }
    // The refused exec left no exec instance on the target either.
    let execs = b.exec_ok(&format!(
        "{direct} inspect -f '{{{{len .ExecIDs}}}}' target"
    ));
    if execs.trim() != "0" {
        failures.push(format!(
            "`docker exec --privileged` must create no exec instance; target has {} ",
            execs.trim()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------- families that are off

/// Issue 12: a family that is off looks like Docker with that feature off
/// (what clients' own clean-up expects), and stays shut. The box's own CLI
/// runs each command twice, through the proxy (the box's public socket) and
/// straight to the inner dockerd: the same output and exit code, except the
/// way in (swarm init, plugin install), which is refused with the reason.
#[test]
fn families_that_are_off_answer_like_docker_with_the_feature_off() {
    let h = need_harness!();
    let vol = Volume::new(h, "off");
    let b = DindBox::start(h, "off", &vol);
    let mut failures = Vec::new();
    for args in [
        "plugin ls",
        "plugin inspect vieux/sshfs",
        "plugin rm vieux/sshfs",
        "plugin disable vieux/sshfs",
        "inspect no-such-object",
        "swarm leave --force",
        "swarm unlock-key",
        "node ls",
        "service ls",
        "service rm web",
        "secret ls",
        "config inspect c1",
    ] {
        let both = |docker: &str| {
            b.exec(&format!("{docker} {args} 2>&1; echo \"exit $?\""))
                .stdout
        };
        let (proxied, direct) = (both("docker"), both(DIRECT));
        eprintln!("docker {args}: {}", proxied.trim().replace('\n', " | "));
        if proxied != direct {
            failures.push(format!(
                "`docker {args}`\n--- through the proxy:\n{proxied}--- straight to dockerd:\n{direct}"
            ));
        }
    }
    for (what, args) in [
        ("docker swarm init", "swarm init"),
        (
            "docker plugin install",
            "plugin install --grant-all-permissions vieux/sshfs",
        ),
    ] {
        let out = b.exec(&format!("docker {args}"));
        let out = Out {
            stderr: out.stderr + &out.stdout,
            ..out
        };
        if let Some(problem) = refusal_problem(what, &out) {
            failures.push(problem);
        }
    }
    let swarm = b.exec_ok(&format!(
        "{DIRECT} info --format '{{{{.Swarm.LocalNodeState}}}}'"
    ));
    if swarm.trim() != "inactive" {
        failures.push(format!(
            "swarm mode must stay inactive; it is {:?}",
            swarm.trim()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) from Docker with the feature off:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------- benign work

/// `docker build ...` through the box's API with the classic builder. The
/// host CLI (28.x) has no buildx plugin here: unset, it falls back to the
/// classic builder with a deprecation note; `DOCKER_BUILDKIT=1` would fail.
/// `DOCKER_BUILDKIT=0` pins the classic builder, whose build body the proxy
/// checks (BuildKit's session tunnel is off by default).
fn classic_build(b: &DindBox, args: &[&str]) -> Out {
    let mut cmd = b.docker_cmd(args);
    cmd.env("DOCKER_BUILDKIT", "0");
    let out = run(cmd, None, Duration::from_secs(180));
    b.expect_ok(&out);
    out
}

/// Writes a small build context (a Dockerfile FROM busybox) into `dir`.
fn build_context(dir: &Path, marker: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).expect("create the build context");
    std::fs::write(ctx.join("hello.txt"), format!("{marker}\n")).expect("write hello.txt");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /built.txt\nCMD [\"cat\", \"/built.txt\"]\n",
    )
    .expect("write the Dockerfile");
    ctx
}

#[test]
fn benign_work_succeeds_through_the_proxy() {
    let h = need_harness!();
    let vol = Volume::new(h, "benign");
    let b = DindBox::start(h, "benign", &vol);
    b.load_busybox();
    let since = now_unix().saturating_sub(1).to_string();
    let tmp = tempdir();

    // run
    let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(
        out.stdout, "hi\n",
        "`docker run --rm busybox echo hi`:\n{out}"
    );

    // exec (non-interactive)
    let sleeper = b
        .docker_ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "600"])
        .stdout
        .trim()
        .to_owned();
    let out = b.docker_ok(&["exec", "sleeper", "sh", "-c", "echo exec-ok; id -u"]);
    assert_eq!(out.stdout, "exec-ok\n0\n", "`docker exec sleeper`:\n{out}");

    // logs -f: follows until the container exits (bounded by the timeout).
    assert_eq!(
        b.followed_logs("for i in 1 2 3; do echo line$i; sleep 1; done"),
        "line1\nline2\nline3\n",
        "`docker logs -f` must stream every line and end when the container exits"
    );

    // cp both ways
    let local_in = tmp.path().join("in.txt");
    std::fs::write(&local_in, "copied in\n").expect("write in.txt");
    let local_in = local_in.to_string_lossy().into_owned();
    b.docker_ok(&["cp", &local_in, "sleeper:/tmp/in.txt"]);
    let out = b.docker_ok(&["exec", "sleeper", "cat", "/tmp/in.txt"]);
    assert_eq!(
        out.stdout, "copied in\n",
        "`docker cp FILE sleeper:/tmp/in.txt` then cat:\n{out}"
    );
    b.docker_ok(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "echo copied out > /tmp/out.txt",
    ]);
    let local_out = tmp.path().join("out.txt");
    b.docker_ok(&["cp", "sleeper:/tmp/out.txt", &local_out.to_string_lossy()]);
    let got = std::fs::read_to_string(&local_out).unwrap_or_default();
    assert_eq!(
        got, "copied out\n",
        "`docker cp sleeper:/tmp/out.txt FILE` must copy the file out"
    );

    // build (classic builder) and run the result
    let ctx = build_context(tmp.path(), "built through dindbox");
    classic_build(&b, &["build", "-t", "e2e-built:1", &ctx.to_string_lossy()]);
    let out = b.docker_ok(&["run", "--rm", "e2e-built:1"]);
    assert_eq!(
        out.stdout, "built through dindbox\n",
        "running the image built through the proxy:\n{out}"
    );

    // save / rmi / load / run
    let tar = tmp.path().join("built.tar");
    let tar = tar.to_string_lossy().into_owned();
    b.docker_ok(&["save", "-o", &tar, "e2e-built:1"]);
    let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1024, "`docker save` wrote {size} bytes to {tar}");
    b.docker_ok(&["rmi", "e2e-built:1"]);
    let out = b.docker_ok(&["load", "-i", &tar]);
    assert!(
        out.stdout.contains("e2e-built:1"),
        "`docker load` must restore e2e-built:1:\n{out}"
    );
    let out = b.docker_ok(&["run", "--rm", "e2e-built:1"]);
    assert_eq!(
        out.stdout, "built through dindbox\n",
        "running the reloaded image:\n{out}"
    );

    // network create + run on it: a second container reaches the first by name.
    b.docker_ok(&["network", "create", "e2e-net"]);
    b.docker_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "e2e-net",
        "busybox",
        "sleep",
        "600",
    ]);
    let out = b.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "e2e-net",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "srv",
    ]);
    assert!(
        out.stdout.contains("1 packets received"),
        "a container on e2e-net must reach `srv` by name:\n{out}"
    );

    // volume create + use across two containers
    b.docker_ok(&["volume", "create", "e2e-data"]);
    b.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "e2e-data:/data",
        "busybox",
        "sh",
        "-c",
        "echo persisted > /data/f",
    ]);
    let out = b.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "e2e-data:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(
        out.stdout, "persisted\n",
        "a file kept in volume e2e-data:\n{out}"
    );

    // stats --no-stream
    let out = b.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "sleeper",
    ]);
    assert!(
        out.stdout.starts_with("sleeper "),
        "`docker stats --no-stream sleeper` must print one line for it:\n{out}"
    );

    // events, bounded with --until
    let until = (now_unix() + 1).to_string();
    let out = run(
        b.docker_cmd(&["events", "--since", &since, "--until", &until]),
        None,
        Duration::from_secs(30),
    );
    b.expect_ok(&out);
    for needle in [
        format!("container create {sleeper}"),
        "network create".to_string(),
        "volume create".to_string(),
    ] {
        assert!(
            out.stdout.contains(&needle),
            "`docker events --since --until` must list {needle:?}:\n{out}"
        );
    }

    // compose, only when a compose plugin is installed
    let compose = b.docker(&["compose", "version"]);
    if compose.ok() {
        let project = tmp.path().join("compose");
        std::fs::create_dir_all(&project).expect("create the compose dir");
        std::fs::write(
            project.join("compose.yaml"),
            "services:\n  web:\n    image: busybox\n    command: sleep 600\n",
        )
        .expect("write compose.yaml");
        let dir = project.to_string_lossy().into_owned();
        let up = run(
            b.docker_cmd(&[
                "compose",
                "--project-directory",
                &dir,
                "-p",
                "e2e",
                "up",
                "-d",
            ]),
            None,
            Duration::from_secs(120),
        );
        b.expect_ok(&up);
        let ps = b.docker_ok(&[
            "ps",
            "--filter",
            "label=com.docker.compose.project=e2e",
            "-q",
        ]);
        assert!(
            !ps.stdout.trim().is_empty(),
            "`compose up` started nothing:\n{ps}"
        );
        let down = run(
            b.docker_cmd(&["compose", "--project-directory", &dir, "-p", "e2e", "down"]),
            None,
            Duration::from_secs(120),
        );
        b.expect_ok(&down);
    } else {
        eprintln!(
            "\n!!! docker compose SKIPPED: no compose plugin for the host CLI (`docker compose version`: {})\n",
            compose.stderr.trim()
        );
    }
}

// ---------------------------------------------------------------- labels

#[test]
fn configured_labels_land_on_everything_created() {
    let h = need_harness!();
    let vol = Volume::new(h, "labels");
    let b = DindBox::start_with(
        h,
        "labels",
        &vol,
        &["-e", "DINDBOX_LABELS=com.example.tenant=t1"],
    );
    b.load_busybox();
    let tmp = tempdir();
    let label = r#"{{index .Config.Labels "com.example.tenant"}}"#;
    let object_label = r#"{{index .Labels "com.example.tenant"}}"#;

    // Each one also asks for the same key with another value, which the
    // configured label replaces.
    let mine = ["--label", "com.example.tenant=mine"];
    b.docker_ok(
        &[
            &["run", "-d", "--name", "labelled"],
            &mine[..],
            &["busybox", "sleep", "600"],
        ]
        .concat(),
    );
    let ctx = build_context(tmp.path(), "labelled build");
    let ctx = ctx.to_string_lossy();
    classic_build(
        &b,
        &[&["build", "-t", "e2e-labelled:1"], &mine[..], &[&ctx]].concat(),
    );
    b.docker_ok(&[&["network", "create"], &mine[..], &["e2e-labelled-net"]].concat());
    b.docker_ok(&[&["volume", "create"], &mine[..], &["e2e-labelled-vol"]].concat());
    let checks: [(&str, Vec<&str>); 4] = [
        ("the container", vec!["inspect", "-f", label, "labelled"]),
        (
            "the built image",
            vec!["image", "inspect", "-f", label, "e2e-labelled:1"],
        ),
        (
            "the network",
            vec!["network", "inspect", "-f", object_label, "e2e-labelled-net"],
        ),
        (
            "the volume",
            vec!["volume", "inspect", "-f", object_label, "e2e-labelled-vol"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args) in checks {
        let out = b.docker(&args);
        if !out.ok() || out.stdout.trim() != "t1" {
            failures.push(format!(
                "{what} created through the proxy must carry com.example.tenant=t1 (configured by \
                 DINDBOX_LABELS, replacing the requested `mine`):\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------- compose

/// How this host runs compose: the v2 plugin (`docker compose`) when the
/// CLI has it, else Debian's compose v1 (`docker-compose`, which
/// scripts/lib.sh installs: bookworm has no v2 plugin), or why neither.
fn compose_program() -> Result<&'static [&'static str], String> {
    let v2 = run(
        {
            let mut cmd = Command::new("docker");
            cmd.args(["compose", "version"]);
            cmd
        },
        None,
        Duration::from_secs(30),
    );
    if v2.ok() {
        return Ok(&["docker", "compose"]);
    }
    let v1 = run(
        {
            let mut cmd = Command::new("docker-compose");
            cmd.arg("version");
            cmd
        },
        None,
        Duration::from_secs(30),
    );
    if v1.ok() {
        return Ok(&["docker-compose"]);
    }
    Err(format!(
        "neither `docker compose` ({}) nor `docker-compose` ({}) runs here",
        v2.stderr.trim(),
        v1.stderr.trim()
    ))
}

/// A compose command against the box's published API.
fn compose_cmd(
    b: &DindBox,
    program: &[&str],
    file: &Path,
    project: &str,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(program[0]);
    cmd.env("DOCKER_HOST", &b.api)
        .envs(b.client_env.iter().map(|(k, v)| (k, v)))
        .args(&program[1..])
        .arg("-f")
        .arg(file)
        .args(["-p", project])
        .args(args);
    cmd
}

/// Issue 4, E2E: "compose up/down if the plugin is available". Two services
/// on a named network, one with a named volume, through the proxy; the
/// configured label lands on both containers, the network and the volume
/// (next to compose's own labels), and `down -v` removes them all.
#[test]
fn compose_up_and_down_through_the_proxy_labels_everything() {
    let h = need_harness!();
    let program = match compose_program() {
        Ok(program) => program,
        Err(why) => {
            eprintln!("\n!!! compose e2e SKIPPED: {why}\n");
            return;
        }
    };
    let vol = Volume::new(h, "compose");
    let b = DindBox::start_with(
        h,
        "compose",
        &vol,
        &["-e", "DINDBOX_LABELS=com.example.tenant=t1"],
    );
    b.load_busybox();
    let tmp = tempdir();
    let file = tmp.path().join("compose.yaml");
    std::fs::write(
        &file,
        "version: \"3.8\"\n\
         services:\n\
         \x20 web:\n\
         \x20   image: busybox\n\
         \x20   command: sleep 600\n\
         \x20   volumes:\n\
         \x20     - data:/data\n\
         \x20   networks:\n\
         \x20     - back\n\
         \x20 worker:\n\
         \x20   image: busybox\n\
         \x20   command: sh -c 'ping -c 1 web && sleep 600'\n\
         \x20   depends_on:\n\
         \x20     - web\n\
         \x20   networks:\n\
         \x20     - back\n\
         volumes:\n\
         \x20 data: {}\n\
         networks:\n\
         \x20 back: {}\n",
    )
    .expect("write compose.yaml");
    let project = "e2ecompose";
    eprintln!("compose e2e with `{}`", program.join(" "));
    let up = run(
        compose_cmd(&b, program, &file, project, &["up", "-d"]),
        None,
        Duration::from_secs(180),
    );
    b.expect_ok(&up);

    let project_filter = format!("label=com.docker.compose.project={project}");
    let names = b.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &project_filter,
        "--format",
        "{{.Names}}",
    ]);
    let names: Vec<&str> = names.stdout.split_whitespace().collect();
    assert_eq!(
        names.len(),
        2,
        "`compose up` must create two containers: {names:?}\n{up}"
    );
    let label = r#"{{index .Config.Labels "com.example.tenant"}} {{index .Config.Labels "com.docker.compose.service"}}"#;
    let object_label =
        r#"{{index .Labels "com.example.tenant"}} {{index .Labels "com.docker.compose.project"}}"#;
    let network = format!("{project}_back");
    let volume = format!("{project}_data");
    let mut failures = Vec::new();
    for name in &names {
        let out = b.docker(&["inspect", "-f", label, name]);
        let got = out.stdout.trim();
        if !out.ok() || !got.starts_with("t1 ") || got.len() <= 3 {
            failures.push(format!(
                "container {name} must carry com.example.tenant=t1 and compose's service label:\n{out}"
            ));
        }
    }
    for (what, args) in [
        (
            "network",
            vec!["network", "inspect", "-f", object_label, &network],
        ),
        (
            "volume",
            vec!["volume", "inspect", "-f", object_label, &volume],
        ),
    ] {
        let out = b.docker(&args);
        if !out.ok() || out.stdout.trim() != format!("t1 {project}") {
            failures.push(format!(
                "the {what} compose created must carry com.example.tenant=t1 next to \
                 com.docker.compose.project={project}:\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    let down = run(
        compose_cmd(&b, program, &file, project, &["down", "-v"]),
        None,
        Duration::from_secs(180),
    );
    b.expect_ok(&down);
    let left = b.docker_ok(&["ps", "-aq", "--filter", &project_filter]);
    assert!(
        left.stdout.trim().is_empty(),
        "`compose down` left containers:\n{left}"
    );
    assert!(
        !b.docker(&["network", "inspect", &network]).ok(),
        "`compose down` left the network {network}"
    );
    assert!(
        !b.docker(&["volume", "inspect", &volume]).ok(),
        "`compose down -v` left the volume {volume}"
    );
}

// ---------------------------------------------------------------- swarm, when enabled

/// `DINDBOX_ALLOW=swarm`: the real CLI's service and secret calls pass the
/// proxy's schema, hostile service specs are refused with the dindbox
/// reason, `swarm join` stays refused, and the configured label lands on the
/// service, its task container and the secret.
#[test]
fn swarm_when_allowed_checks_service_specs_and_labels_services() {
    let h = need_harness!();
    let vol = Volume::new(h, "swarm");
    let b = DindBox::start_with(
        h,
        "swarm",
        &vol,
        &[
            "-e",
            "DINDBOX_ALLOW=swarm",
            "-e",
            "DINDBOX_LABELS=com.example.tenant=t1",
        ],
    );
    b.load_busybox();
    let join = b.docker(&["swarm", "join", "--token", "SWMTKN-1-x", "10.255.0.1:2377"]);
    if let Some(problem) = refusal_problem("docker swarm join", &join) {
        panic!("{problem}");
    }
    b.docker_ok(&["swarm", "init", "--advertise-addr", "eth0"]);

    let mut problems = Vec::new();
    for (what, flags) in [
        (
            "service create --mount type=bind",
            vec!["--mount", "type=bind,source=/,target=/host"],
        ),
        ("service create --cap-add", vec!["--cap-add", "SYS_ADMIN"]),
        (
            "service create --sysctl kernel.*",
            vec!["--sysctl", "kernel.domainname=x"],
        ),
        (
            "service create --log-driver syslog",
            vec!["--log-driver", "syslog"],
        ),
    ] {
        let args = [
            &["service", "create", "--detach", "--name", "hostile"][..],
            &flags[..],
            &["busybox", "sleep", "600"],
        ]
        .concat();
        problems.extend(refusal_problem(what, &b.docker(&args)));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    let services = b.docker_ok(&["service", "ls", "-q"]);
    assert!(
        services.stdout.trim().is_empty(),
        "refused services must not exist:\n{services}"
    );

    // An overlay network for the service (allowed with swarm); its label too.
    b.docker_ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "e2e-overlay",
    ]);
    let label = b.docker_ok(&[
        "network",
        "inspect",
        "-f",
        r#"{{index .Labels "com.example.tenant"}}"#,
        "e2e-overlay",
    ]);
    assert_eq!(label.stdout.trim(), "t1", "the overlay network:\n{label}");
    b.docker_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--network",
        "e2e-overlay",
        "--label",
        "com.example.tenant=mine",
        "--container-label",
        "com.example.tenant=mine",
        "busybox",
        "sleep",
        "600",
    ]);
    let labels = b.docker_ok(&[
        "service",
        "inspect",
        "-f",
        r#"{{index .Spec.Labels "com.example.tenant"}} {{index .Spec.TaskTemplate.ContainerSpec.Labels "com.example.tenant"}}"#,
        "web",
    ]);
    assert_eq!(
        labels.stdout.trim(),
        "t1 t1",
        "the service and its container spec must carry the configured label:\n{labels}"
    );
    // The task container the daemon creates itself carries it too.
    let task = poll(Duration::from_secs(90), || {
        let out = b.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=web",
        ]);
        let id = out.stdout.trim().to_string();
        (!id.is_empty()).then_some(id)
    })
    .unwrap_or_else(|| {
        let ps = b.docker(&["service", "ps", "--no-trunc", "web"]);
        b.fail(&format!(
            "the web service started no task within 90 s:\n{ps}"
        ))
    });
    let label = b.docker_ok(&[
        "inspect",
        "-f",
        r#"{{index .Config.Labels "com.example.tenant"}}"#,
        &task,
    ]);
    assert_eq!(label.stdout.trim(), "t1", "the task container:\n{label}");

    let secret = run(
        b.docker_cmd(&["secret", "create", "s1", "-"]),
        Some(b"x"),
        Duration::from_secs(60),
    );
    b.expect_ok(&secret);
    let label = b.docker_ok(&[
        "secret",
        "inspect",
        "-f",
        r#"{{index .Spec.Labels "com.example.tenant"}}"#,
        "s1",
    ]);
    assert_eq!(label.stdout.trim(), "t1", "the secret:\n{label}");
}

// ---------------------------------------------------------------- memory budget

/// `sh -c` that builds a shell string of `size` (busybox `head -c` sizes):
/// busybox ash peaks at about twice that in anonymous memory and then holds
/// it as long as the shell runs. `then` must not end in an external command,
/// which ash would exec in place of itself, freeing the string.
fn allocate(size: &str, then: &str) -> String {
    format!("x=$(head -c {size} /dev/zero | tr '\\0' a); echo allocated ${{#x}}; {then}")
}

#[test]
fn memory_budget_parent_holds_every_container_and_oom_kills_past_it() {
    let h = need_harness!();
    let vol = Volume::new(h, "budget");
    let b = DindBox::start_with(h, "budget", &vol, &["-e", "DINDBOX_MEMORY_LIMIT=96m"]);
    b.load_busybox();
    const BUDGET: u64 = 96 << 20;

    // dockerd was told the parent; the memory hierarchy has it with the limit.
    let dockerd = b.exec_ok("tr '\\0' ' ' </proc/$(pidof dockerd)/cmdline");
    let parent = dockerd
        .split_whitespace()
        .skip_while(|a| *a != "--cgroup-parent")
        .nth(1)
        .map(str::to_owned)
        .or_else(|| {
            dockerd
                .split_whitespace()
                .find_map(|a| a.strip_prefix("--cgroup-parent="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            b.fail(&format!(
                "with DINDBOX_MEMORY_LIMIT the inner dockerd must get --cgroup-parent; its cmdline: {dockerd:?}"
            ))
        });
    assert!(
        parent.trim_end_matches('/').ends_with("/dindbox"),
        "the budget parent must be the `dindbox` cgroup, dockerd got --cgroup-parent {parent:?}"
    );
    let memcg = format!("/sys/fs/cgroup/memory{parent}");
    let limit = b.exec_ok(&format!("cat {memcg}/memory.limit_in_bytes"));
    assert_eq!(
        limit.trim().parse::<u64>().ok(),
        Some(BUDGET),
        "{memcg}/memory.limit_in_bytes inside the box must be 96 MiB ({BUDGET}), it is {limit:?}"
    );

    // A container is placed under the parent, and gets the budget as its default limit.
    let id = b
        .docker_ok(&["run", "-d", "--name", "placed", "busybox", "sleep", "600"])
        .stdout
        .trim()
        .to_owned();
    let hc = b.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.CgroupParent}} {{.HostConfig.Memory}} {{.State.Pid}}",
        "placed",
    ]);
    let fields: Vec<&str> = hc.stdout.split_whitespace().collect();
    assert_eq!(
        fields.get(..2),
        Some(&[parent.as_str(), &BUDGET.to_string()][..]),
        "the container's HostConfig must carry CgroupParent {parent} and Memory {BUDGET}:\n{hc}"
    );
    let pid = fields.get(2).copied().unwrap_or("0");
    let proc_cgroup = b.exec_ok(&format!("cat /proc/{pid}/cgroup"));
    let memory_line = proc_cgroup
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        .unwrap_or_else(|| panic!("no memory line in /proc/{pid}/cgroup:\n{proc_cgroup}"));
    let path = memory_line.splitn(3, ':').nth(2).unwrap_or_default();
    assert!(
        path.ends_with(&format!("/dindbox/{id}")),
        "the inner container's memory cgroup must be <box>/dindbox/<id>; /proc/{pid}/cgroup says {path:?}"
    );
    let tasks = b.exec_ok(&format!("cat {memcg}/{id}/cgroup.procs"));
    assert!(
        tasks.split_whitespace().any(|p| p == pid),
        "{memcg}/{id}/cgroup.procs inside the box must list the container's pid {pid}: {tasks:?}"
    );

    // One container past the budget is OOM-killed.
    let out = run(
        b.docker_cmd(&[
            "run",
            "--name",
            "hog",
            "busybox",
            "sh",
            "-c",
            &allocate("200m", "echo survived"),
        ]),
        None,
        Duration::from_secs(120),
    );
    let oom = b.docker(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "hog",
    ]);
    assert!(
        out.code == Some(137) && !out.stdout.contains("survived") && oom.stdout.trim() == "true 137",
        "a container allocating 200 MiB in a 96 MiB box must be OOM-killed (exit 137, OOMKilled true):\n{out}\n{oom}"
    );

    // The budget is shared: each of two containers fits alone (about 76 MB
    // peak, 40 MB held), not both together.
    let out = b.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &allocate("36m", "true"),
    ]);
    assert!(
        out.ok(),
        "one 36 MiB allocation must fit in the 96 MiB budget on its own:\n{out}"
    );
    b.docker_ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "busybox",
        "sh",
        "-c",
        &allocate("36m", "sleep 600; echo done"),
    ]);
    let held = poll(Duration::from_secs(30), || {
        let logs = b.docker(&["logs", "holder"]);
        logs.stdout.contains("allocated").then_some(())
    });
    assert!(
        held.is_some(),
        "the holder container never finished allocating"
    );
    let usage = b.exec_ok(&format!("cat {memcg}/memory.usage_in_bytes"));
    let usage: u64 = usage.trim().parse().unwrap_or(0);
    assert!(
        usage >= 36 << 20,
        "the parent's memory.usage_in_bytes must count the holder's 36 MiB; it is {usage}"
    );
    let second = run(
        b.docker_cmd(&[
            "run",
            "--name",
            "second",
            "busybox",
            "sh",
            "-c",
            &allocate("36m", "true"),
        ]),
        None,
        Duration::from_secs(120),
    );
    let states = b.docker(&[
        "inspect",
        "-f",
        "{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}",
        "holder",
        "second",
    ]);
    eprintln!(
        "shared budget, after the second allocation:\n{}",
        states.stdout.trim()
    );
    let killed = states
        .stdout
        .lines()
        .filter(|l| l.contains(" 137 "))
        .count();
    assert!(
        killed >= 1,
        "two containers holding 36 MiB strings (about 116 MB together) must not both live in a \
         96 MiB budget; one must be OOM-killed:\nsecond: {second}\n{states}"
    );

    // The box and its dockerd survived, and the API still answers.
    assert_eq!(
        b.state("{{.State.Running}}"),
        "true",
        "the box must survive its containers' OOM kills"
    );
    let out = b.docker_ok(&["run", "--rm", "busybox", "echo", "still here"]);
    assert_eq!(
        out.stdout, "still here\n",
        "a container after the OOM kills:\n{out}"
    );
    let restarts = b.exec_ok("pidof dockerd");
    assert_eq!(
        restarts.split_whitespace().count(),
        1,
        "exactly one dockerd must run in the box after the OOM kills: {restarts:?}"
    );
}

// ---------------------------------------------------------------- owners

/// A `dindbox proxy` process on the outer daemon, killed on drop; the
/// containers its owner label marks are removed too.
struct StandaloneProxy<'h> {
    h: &'h Harness,
    child: Child,
    /// DOCKER_HOST of the proxy's socket.
    host: String,
    owner: String,
    log: PathBuf,
}

impl<'h> StandaloneProxy<'h> {
    fn start(h: &'h Harness, dir: &Path, name: &str, owner: &str) -> Self {
        Self::start_with(h, dir, name, Some(owner))
    }

    /// A proxy with the owner label `owner`, or without one (`None`).
    fn start_with(h: &'h Harness, dir: &Path, name: &str, owner: Option<&str>) -> Self {
        let upstream = h.outer.strip_prefix("unix://").unwrap_or_else(|| {
            panic!(
                "the owner test needs the outer daemon on a unix socket, DOCKER_HOST is {}",
                h.outer
            )
        });
        let sock = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("create the proxy log");
        let child = Command::new(env!("CARGO_BIN_EXE_dindbox"))
            .args(["proxy", "--ds", upstream, "--ls"])
            .arg(&sock)
            .args(owner.map_or(vec![], |owner| vec!["--owner-label", owner]))
            .env_remove("DINDBOX_OWNER_LABEL")
            .env_remove("DINDBOX_LABELS")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup the log"))
            .stderr(log_file)
            .spawn()
            .expect("start `dindbox proxy`");
        let p = StandaloneProxy {
            h,
            child,
            host: format!("unix://{}", sock.display()),
            owner: owner.unwrap_or_default().to_owned(),
            log,
        };
        let ready = poll(Duration::from_secs(20), || {
            p.docker(&["version"]).ok().then_some(())
        });
        if ready.is_none() {
            panic!(
                "`dindbox proxy` (owner label {owner:?}) did not answer on {} within 20 s; its log:\n{}",
                p.host,
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        p
    }

    fn docker(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.host).args(args);
        run(cmd, None, harness::CMD_TIMEOUT)
    }
}

impl Drop for StandaloneProxy<'_> {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let (_, timed_out) = harness::wait_timeout(&mut self.child, Duration::from_secs(10));
        if timed_out {
            eprintln!(
                "dindbox proxy {} ignored SIGTERM for 10 s; killed",
                self.owner
            );
        }
        if self.owner.is_empty() {
            return;
        }
        // Whatever this owner created on the outer daemon.
        let filter = format!("label={}", self.owner);
        let ids = self.h.outer(&["ps", "-aq", "--filter", &filter]).stdout;
        for id in ids.split_whitespace() {
            self.h.outer(&["rm", "-f", "-v", id]);
        }
    }
}

#[test]
fn two_standalone_proxies_with_different_owners_cannot_see_each_other() {
    let h = need_harness!();
    let dir = tempdir();
    let key = format!("dindbox-e2e.owner-{}", std::process::id());
    let a = StandaloneProxy::start(h, dir.path(), "a", &format!("{key}=a"));
    let b = StandaloneProxy::start(h, dir.path(), "b", &format!("{key}=b"));
    let name = unique("owned");

    let out = a.docker(&["run", "-d", "--name", &name, "busybox", "sleep", "60"]);
    assert!(
        out.ok(),
        "`docker run -d` through proxy a must work:\n{out}"
    );
    let id = out.stdout.trim().to_owned();
    let label = h.outer(&[
        "inspect",
        "-f",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        &id,
    ]);
    assert_eq!(
        label.stdout.trim(),
        "a",
        "the container created through proxy a must carry its owner label {key}=a:\n{label}"
    );

    // a sees it.
    let ps = a.docker(&["ps", "-a", "--format", "{{.ID}} {{.Names}}"]);
    assert!(
        ps.ok() && ps.stdout.lines().collect::<Vec<_>>() == [format!("{} {name}", &id[..12])],
        "`docker ps -a` through proxy a must list exactly its own container {name}:\n{ps}"
    );
    let out = a.docker(&["inspect", "-f", "{{.State.Running}}", &name]);
    assert!(
        out.ok() && out.stdout.trim() == "true",
        "`docker inspect {name}` through proxy a must show it running:\n{out}"
    );

    // b does not, by name, id or id prefix, and cannot touch it.
    let ps = b.docker(&["ps", "-a", "-q"]);
    assert!(
        ps.ok() && ps.stdout.trim().is_empty(),
        "`docker ps -a` through proxy b must be empty (a's container is not b's):\n{ps}"
    );
    let mut failures = Vec::new();
    for reference in [name.as_str(), id.as_str(), &id[..12]] {
        for args in [
            vec!["container", "inspect", reference],
            vec!["exec", reference, "true"],
            vec!["logs", reference],
            vec!["stop", "-t", "0", reference],
            vec!["rm", "-f", reference],
        ] {
            let out = b.docker(&args);
            // `docker rm -f` of a missing container prints the error and exits 0
            // (CLI 28); that it is still there is checked below.
            let refused = !out.ok() || args[..2] == ["rm", "-f"];
            if !refused || !out.stderr.contains("No such container") {
                failures.push(format!(
                    "`docker {}` through proxy b must fail with \"No such container\":\n{out}",
                    args.join(" ")
                ));
            }
        }
        // The CLI's generic inspect tries every object type; it must find nothing.
        let out = b.docker(&["inspect", reference]);
        if out.ok() || out.stdout.trim() != "[]" {
            failures.push(format!(
                "`docker inspect {reference}` through proxy b must find nothing:\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let state = h.outer(&["inspect", "-f", "{{.State.Running}}", &id]);
    assert_eq!(
        state.stdout.trim(),
        "true",
        "a's container must still run after b's attempts:\n{state}"
    );

    // a removes its own.
    let out = a.docker(&["rm", "-f", &name]);
    assert!(
        out.ok(),
        "`docker rm -f` through proxy a must remove its own container:\n{out}"
    );
    let gone = h.outer(&["inspect", &id]);
    assert!(
        !gone.ok(),
        "the container must be gone after a's `rm -f`:\n{gone}"
    );
}

// ------------------------------------------------- references and VolumesFrom

/// `docker run --volumes-from SOURCE` as a tenant: refused when SOURCE has a
/// host bind mount, or why not.
fn volumes_from_refusal_problem(source: &str, out: &Out) -> Option<String> {
    let what = format!("docker run --volumes-from {source}");
    refusal_problem(&what, out).or_else(|| {
        (!out
            .stderr
            .contains(&format!("--volumes-from {source} is not allowed")))
        .then(|| format!("`{what}` must be refused for the source's host bind mount:\n{out}"))
    })
}

#[test]
fn volumes_from_an_operators_sidecar_with_a_host_bind_is_refused_in_a_box() {
    let h = need_harness!();
    let vol = Volume::new(h, "volfrom");
    let b = DindBox::start(h, "volfrom", &vol);
    b.load_busybox();
    // An operator's sidecar, created on the box's private socket (not
    // through the proxy), bind-mounting the box's /etc.
    let direct = "docker -H unix:///run/dindbox/docker.sock";
    b.exec_ok(&format!(
        "{direct} create --name sidecar -v /etc:/hostetc busybox true"
    ));
    let containers = || {
        b.exec_ok(&format!("{direct} ps -aq | wc -l"))
            .trim()
            .to_owned()
    };
    let before = containers();
    let out = b.docker(&[
        "run",
        "--rm",
        "--name",
        "tenant",
        "--volumes-from",
        "sidecar:ro",
        "busybox",
        "cat",
        "/hostetc/hostname",
    ]);
    if let Some(problem) = volumes_from_refusal_problem("sidecar", &out) {
        panic!("{problem}");
    }
    assert_eq!(
        containers(),
        before,
        "a refused --volumes-from must create no container"
    );

    // The tenant's own container with a named volume can be shared, and is
    // forwarded by its full id.
    let own = b
        .docker_ok(&[
            "run",
            "--name",
            "own",
            "-v",
            "ownvol:/data",
            "busybox",
            "sh",
            "-c",
            "echo shared > /data/f",
        ])
        .stdout;
    assert!(own.is_empty(), "{own}");
    let out = b.docker_ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "own:ro",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out.stdout, "shared\n", "--volumes-from own:\n{out}");
    let own_id = b.docker_ok(&["inspect", "-f", "{{.Id}}", "own"]).stdout;
    let created = b.docker_ok(&["create", "--volumes-from", "own:ro", "busybox", "true"]);
    let from = b.docker_ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.VolumesFrom}}",
        created.stdout.trim(),
    ]);
    assert_eq!(
        from.stdout.trim(),
        format!("[\"{}:ro\"]", own_id.trim()),
        "the proxy forwards the source by its full id"
    );
}

#[test]
fn volumes_from_a_host_container_with_a_bind_is_refused_without_an_owner_label() {
    let h = need_harness!();
    let dir = tempdir();
    // A "host" container on the daemon the proxy fronts, with a bind mount.
    let host = unique("host-sidecar");
    let out = h.outer(&[
        "create",
        "--name",
        &host,
        "-v",
        "/etc:/hostetc",
        "busybox",
        "true",
    ]);
    assert!(out.ok(), "create the host container:\n{out}");
    let data = unique("data");
    let out = h.outer(&["create", "--name", &data, "-v", "/data", "busybox", "true"]);
    assert!(out.ok(), "create a container with a volume:\n{out}");
    let tenant = unique("tenant");
    let p = StandaloneProxy::start_with(h, dir.path(), "plain", None);

    let out = p.docker(&[
        "run",
        "--rm",
        "--name",
        &tenant,
        "--volumes-from",
        &host,
        "busybox",
        "cat",
        "/hostetc/hostname",
    ]);
    let problem = volumes_from_refusal_problem(&host, &out);
    let created = h.outer(&["inspect", &tenant]).ok();
    let shared = p.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        &data,
        "busybox",
        "ls",
        "-d",
        "/data",
    ]);
    for name in [&host, &data, &tenant] {
        h.outer(&["rm", "-f", "-v", name]);
    }
    if let Some(problem) = problem {
        panic!("{problem}");
    }
    assert!(!created, "the refused container {tenant} must not exist");
    assert!(
        shared.ok() && shared.stdout == "/data\n",
        "--volumes-from a container with only a volume must work:\n{shared}"
    );
}

#[test]
fn references_to_ones_own_objects_work_by_id_through_an_owner_proxy() {
    let h = need_harness!();
    let dir = tempdir();
    let key = format!("dindbox-e2e.owner-{}", std::process::id());
    let a = StandaloneProxy::start(h, dir.path(), "refs", &format!("{key}=refs"));
    let net = unique("own-net");
    let vol = unique("own-vol");
    let own = unique("own");
    let cleanup = || {
        h.outer(&["rm", "-f", "-v", &own]);
        h.outer(&["network", "rm", &net]);
        h.outer(&["volume", "rm", "-f", &vol]);
    };
    let mut failures = Vec::new();
    let out = a.docker(&["network", "create", &net]);
    if !out.ok() {
        failures.push(format!("`docker network create` through the proxy:\n{out}"));
    }
    let out = a.docker(&[
        "run",
        "-d",
        "--name",
        &own,
        "--network",
        &net,
        "-v",
        &format!("{vol}:/data"),
        "busybox",
        "sh",
        "-c",
        "echo shared > /data/f; sleep 120",
    ]);
    if !out.ok() {
        failures.push(format!("`docker run -d` of the linked container:\n{out}"));
    }
    let link = format!("{own}:alias");
    let out = a.docker(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--link",
        &link,
        "--volumes-from",
        &own,
        "busybox",
        "sh",
        "-c",
        "cat /data/f && ping -c 1 -W 5 alias >/dev/null && echo linked",
    ]);
    if !(out.ok() && out.stdout == "shared\nlinked\n") {
        failures.push(format!(
            "`docker run --network {net} --link {link} --volumes-from {own}` must read the volume and reach the alias:\n{out}"
        ));
    }
    // What dockerd got: the ids the proxy checked.
    let created = a.docker(&[
        "create",
        "--network",
        &net,
        "--volumes-from",
        &format!("{own}:ro"),
        "busybox",
        "true",
    ]);
    let ids = |what: &str| {
        h.outer(&["inspect", "-f", "{{.Id}}", what])
            .stdout
            .trim()
            .to_owned()
    };
    if created.ok() {
        let id = created.stdout.trim();
        let seen = h.outer(&[
            "inspect",
            "-f",
            "{{.HostConfig.NetworkMode}} {{json .HostConfig.VolumesFrom}}",
            id,
        ]);
        let expected = format!("{} [\"{}:ro\"]", ids(&net), ids(&own));
        if seen.stdout.trim() != expected {
            failures.push(format!(
                "the created container must name the network and the source by id ({expected}):\n{seen}"
            ));
        }
        h.outer(&["rm", "-f", id]);
    } else {
        failures.push(format!(
            "`docker create --network --volumes-from`:\n{created}"
        ));
    }
    drop(a);
    cleanup();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
