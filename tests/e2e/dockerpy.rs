//! End to end with a client users have (issue 12): docker-py's own
//! integration suite (`tests/integration` of the `docker` 7.0.0 sdist) must
//! pass through the proxy what it passes against dockerd directly, except
//! the tests that meet a documented refusal.
//!
//! scripts/docker-py.sh does the work: two boxes of the sid image (dockerd
//! 28.5), the suite run straight to one box's inner dockerd and through the
//! other's proxy at once, then every test that passed directly and failed
//! through the proxy is a documented refusal (its `dindbox: ... is not
//! allowed` message is on scripts/docker-py-refusals.txt) or, when it fails
//! again, a regression, which fails this test. About 7 minutes; the first
//! run also fetches docker-py's sdist and its pinned test dependencies from
//! PyPI into $DINDBOX_CACHE/docker-py.
//!
//! Needs root; the harness of tests/e2e.rs (tests/e2e/harness.rs).

use std::process::Command;
use std::time::Duration;

use crate::harness::{harness_for_suite, run};

/// Both suites, the retries and the boxes; a run takes about 7 minutes.
const SUITE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[test]
fn docker_py_passes_through_the_proxy_what_it_passes_against_dockerd() {
    let Some(h) = harness_for_suite("sid") else {
        return;
    };
    let mut cmd = Command::new("bash");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("scripts/docker-py.sh")
        .env("DINDBOX_DOCKER_HOST", &h.outer)
        .env("DINDBOX_IMAGE", &h.image)
        .env_remove("DOCKER_HOST");
    let out = run(cmd, None, SUITE_TIMEOUT);
    eprintln!("{}\n{}", out.stderr.trim_end(), out.stdout.trim_end());
    assert!(
        out.ok(),
        "docker-py through the proxy: regressions, or the comparison did not run \
         (scripts/docker-py.sh {}; its report is above)",
        match (out.timed_out, out.code) {
            (true, _) => format!("timed out after {} s", SUITE_TIMEOUT.as_secs()),
            (false, code) => format!("exited {code:?}"),
        }
    );
}
