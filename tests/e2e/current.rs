//! End to end with a current CLI against a current engine (issue 12, "the
//! version window"): the host's Docker CLI 28.2 (API 1.50,
//! `/usr/local/bin/docker`) against a box on the sid base (dockerd 28.5.2,
//! API 1.51; the default image).
//!
//! - `docker version` through the proxy shows API 1.51 and no "downgraded":
//!   the proxy serves the daemon's newest, below the policy's (1.55);
//! - `docker run --annotation a=b` fails with the policy's one-line refusal,
//!   not with "requires API version 1.43";
//! - versions outside the window are refused with exactly the words dockerd
//!   28.5.2 itself answers on the box's private socket; below the daemon's
//!   own minimum (`DOCKER_MIN_API_VERSION=1.44`, as 29.0 to 29.2 have it)
//!   dockerd answers itself, through the proxy;
//! - a standalone `dindbox proxy` in owner mode learns the daemon's version
//!   from it and serves a `docker run` at the negotiated version.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::process::Command;

use crate::harness::{harness_for_suite, run, DindBox, Out, Volume, CMD_TIMEOUT};

/// The host's Docker CLI 28.2 (Debian's `docker` in /usr/bin is 20.10).
const CLI: &str = "/usr/local/bin/docker";
/// dockerd 28.5.2's newest API version, which the proxy serves.
const ENGINE_API: &str = "1.51";

/// The host CLI against `host`, at `api` (`DOCKER_API_VERSION`) or negotiated.
fn cli(host: &str, api: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(CLI);
    cmd.env("DOCKER_HOST", host)
        .env_remove("DOCKER_API_VERSION")
        .args(args);
    if let Some(api) = api {
        cmd.env("DOCKER_API_VERSION", api);
    }
    run(cmd, None, CMD_TIMEOUT)
}

/// The daemon's answer in a failed CLI run: what follows "Error response
/// from daemon: ".
fn daemon_error(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split_once("Error response from daemon: ").map(|(_, m)| m))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `docker version` at `api`, through the proxy and straight to the box's
/// private dockerd socket (the box's own CLI): the two daemon errors.
fn refusals_at(b: &DindBox, api: &str) -> (String, String) {
    let through = cli(&b.api, Some(api), &["version"]);
    assert!(!through.ok(), "version {api} must be refused:\n{through}");
    let direct = b.exec(&format!(
        "DOCKER_API_VERSION={api} docker -H unix:///run/dindbox/docker.sock version 2>&1"
    ));
    (
        daemon_error(&format!("{}\n{}", through.stdout, through.stderr)),
        daemon_error(&direct.stdout),
    )
}

fn require_the_host_cli(b: &DindBox) {
    let out = cli(
        &b.api,
        None,
        &["version", "--format", "{{.Client.Version}}"],
    );
    if !out.stdout.starts_with("28.") {
        b.fail(&format!(
            "these tests need the Docker CLI 28.x at {CLI} (the host's, API 1.50):\n{out}"
        ));
    }
}

#[test]
fn the_host_cli_gets_the_engines_api_and_the_policys_refusals() {
    let Some(h) = harness_for_suite("sid") else {
        return;
    };
    let vol = Volume::new(h, "current");
    let b = DindBox::start(h, "current", &vol);
    require_the_host_cli(&b);

    let out = cli(&b.api, None, &["version"]);
    b.expect_ok(&out);
    assert!(
        out.stdout
            .contains(&format!("{ENGINE_API} (minimum version 1.24)")),
        "the server's API must be the engine's {ENGINE_API}:\n{out}"
    );
    assert!(
        !out.stdout.contains("downgraded"),
        "the CLI must not be downgraded:\n{out}"
    );
    let apis = cli(
        &b.api,
        None,
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Client.APIVersion}}",
        ],
    );
    assert_eq!(apis.stdout.trim(), "1.51 1.50", "{apis}");

    b.load_busybox();
    let before = b.docker_ok(&["ps", "-aq"]).stdout;
    let out = cli(
        &b.api,
        None,
        &["run", "--rm", "--annotation", "a=b", "busybox", "true"],
    );
    // One line from the daemon: the policy's refusal, not "requires API version 1.43".
    let said = daemon_error(&out.stderr);
    if out.ok()
        || !said.starts_with("dindbox: HostConfig.Annotations")
        || !said.contains(" not allowed: ")
    {
        b.fail(&format!(
            "`docker run --annotation a=b` must be refused by the policy:\n{out}"
        ));
    }
    assert!(
        !out.stderr.contains("requires API version"),
        "no API version error:\n{out}"
    );
    assert_eq!(
        before,
        b.docker_ok(&["ps", "-aq"]).stdout,
        "a refused run creates no container"
    );
    let out = cli(&b.api, None, &["run", "--rm", "busybox", "echo", "hi"]);
    b.expect_ok(&out);
    assert_eq!(out.stdout, "hi\n", "{out}");

    // Outside the window: the proxy's answer is dockerd's own, word for word.
    for api in ["1.52", "1.23"] {
        let (through, direct) = refusals_at(&b, api);
        eprintln!("at {api}: {through}");
        assert!(
            through.starts_with(&format!("client version {api} is too ")),
            "{through}"
        );
        assert_eq!(through, direct, "the proxy answers {api} as dockerd does");
    }

    // A standalone proxy learns the daemon's version itself (lazily), and its
    // owner lookups run at the version served.
    let addr = b.start_standalone_proxy(2391, "--owner-label ci.job=e2e-current");
    let standalone = format!("tcp://{addr}");
    let apis = cli(
        &standalone,
        None,
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Client.APIVersion}}",
        ],
    );
    assert_eq!(apis.stdout.trim(), "1.51 1.50", "{apis}");
    let out = cli(
        &standalone,
        None,
        &["run", "--name", "owned", "busybox", "echo", "owned"],
    );
    b.expect_ok(&out);
    let out = cli(&standalone, None, &["logs", "owned"]);
    assert_eq!(out.stdout, "owned\n", "{out}");
    let out = cli(&standalone, None, &["rm", "owned"]);
    b.expect_ok(&out);
}

#[test]
fn below_the_daemons_own_minimum_dockerd_answers_itself() {
    let Some(h) = harness_for_suite("sid") else {
        return;
    };
    let vol = Volume::new(h, "current-min");
    let b = DindBox::start_with(
        h,
        "current-min",
        &vol,
        &["-e", "DOCKER_MIN_API_VERSION=1.44"],
    );
    require_the_host_cli(&b);
    let (through, direct) = refusals_at(&b, "1.41");
    eprintln!("at 1.41: {through}");
    assert_eq!(
        through,
        "client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade \
         your client to a newer version"
    );
    assert_eq!(through, direct);
    let out = cli(&b.api, Some("1.44"), &["version"]);
    b.expect_ok(&out);
}
