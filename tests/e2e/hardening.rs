//! End to end for issue 11: the review's bypass classes, sent as raw HTTP
//! (the Docker CLI cannot send most of them) to a real proxy in front of a
//! real inner dockerd, in the three ways the proxy runs:
//!
//! - the box's own proxy (PORT);
//! - `dindbox proxy` standalone with `--owner-label`;
//! - `dindbox proxy` standalone without an owner label.
//!
//! (Class 8, tags between owners, is tests/e2e/tags.rs; classes 6 and 7,
//! references by id and `VolumesFrom`, are in tests/e2e/policy.rs.)
//!
//! The standalone proxies run inside a box, in front of its private dockerd
//! socket, and listen on the box's address: a request that slipped through
//! could only ever reach that box's daemon. Each hostile request must be
//! refused with a Docker-style JSON message, and the daemon's state
//! (containers, their execs, networks and working directories, networks,
//! volumes, images) must be exactly what it was before.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use crate::harness::{self, harness, send, DindBox, Out, Volume, DIRECT};

/// Where the standalone proxies listen inside the box.
const STANDALONE_PORT: u16 = 2390;

/// One of the ways the proxy serves: its address, and whether BuildKit is
/// allowed there (a box allows it, a standalone proxy does not).
struct Proxy {
    what: &'static str,
    addr: String,
    buildkit: bool,
}

/// A tar with one `Dockerfile`, as a build context.
fn build_context() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = b"FROM busybox\nRUN true\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", &dockerfile[..])
        .expect("tar a Dockerfile");
    tar.into_inner().expect("finish the tar")
}

/// What the inner dockerd holds, as text to compare. No `Status` ("Up 1 second"):
/// it changes with the clock; the state, start time and exit code do not.
fn daemon_state(b: &DindBox) -> String {
    b.exec_ok(&format!(
        "d='{DIRECT}'; \
         echo containers; $d ps -a --no-trunc --format '{{{{.Names}}}} {{{{.State}}}}' | sort; \
         for c in $($d ps -aq); do $d inspect -f '{{{{.Name}}}} started={{{{.State.StartedAt}}}} exit={{{{.State.ExitCode}}}} execs={{{{len .ExecIDs}}}} wd={{{{.Config.WorkingDir}}}} nets={{{{range $k, $v := .NetworkSettings.Networks}}}}{{{{$k}}}},{{{{end}}}}' $c; done | sort; \
         echo networks; $d network ls --format '{{{{.Name}}}} {{{{.ID}}}}' | sort; \
         echo volumes; $d volume ls -q | sort; \
         echo images; $d images -a --no-trunc --format '{{{{.Repository}}}}:{{{{.Tag}}}} {{{{.ID}}}}' | sort"
    ))
}

/// The CLI through one of the proxies.
fn docker_via(b: &DindBox, addr: &str, args: &[&str]) -> Out {
    let mut cmd = std::process::Command::new("docker");
    cmd.env("DOCKER_HOST", format!("tcp://{addr}")).args(args);
    let out = harness::run(cmd, None, harness::CMD_TIMEOUT);
    if !out.ok() {
        b.fail(&format!(
            "`docker {}` through {addr} failed:\n{out}",
            args.join(" ")
        ));
    }
    out
}

/// The review's requests: what, method, target, Content-Type, body.
type Hostile = (&'static str, &'static str, String, Vec<u8>, Vec<u8>);

fn hostile_requests(other_network: &str, buildkit: bool) -> Vec<Hostile> {
    let json = b"application/json".to_vec();
    let form_body = b"filters=%7B%7D".to_vec();
    let mut requests: Vec<Hostile> = vec![
        (
            "1. form body behind a parameter Go cannot parse",
            "POST",
            "/v1.41/containers/prune".into(),
            b"application/x-www-form-urlencoded; x=\xff".to_vec(),
            form_body.clone(),
        ),
        (
            "1. form body behind a U+0130 spelling",
            "POST",
            "/v1.41/containers/prune".into(),
            "appl\u{0130}cation/x-www-form-urlencoded".as_bytes().to_vec(),
            form_body.clone(),
        ),
        (
            "1. form body behind a leading U+00A0",
            "POST",
            "/v1.41/volumes/prune".into(),
            "\u{00A0}application/x-www-form-urlencoded".as_bytes().to_vec(),
            form_body,
        ),
        (
            "2. connect with another network's NetworkID",
            "POST",
            "/v1.41/networks/mynet/connect".into(),
            json.clone(),
            format!(r#"{{"Container":"mine","EndpointConfig":{{"NetworkID":"{other_network}"}}}}"#)
                .into_bytes(),
        ),
        (
            "2. create with another network's NetworkID",
            "POST",
            "/v1.41/containers/create?name=evil-netid".into(),
            json.clone(),
            format!(
                r#"{{"Image":"busybox","NetworkingConfig":{{"EndpointsConfig":{{"mynet":{{"NetworkID":"{other_network}","Aliases":["db"]}}}}}}}}"#
            )
            .into_bytes(),
        ),
        (
            "4. create with WorkingDir //proc/self/fd/7",
            "POST",
            "/v1.41/containers/create?name=evil-wd".into(),
            json.clone(),
            br#"{"Image":"busybox","WorkingDir":"//proc/self/fd/7"}"#.to_vec(),
        ),
        (
            "4. exec with WorkingDir /./proc/self/fd/7",
            "POST",
            "/v1.41/containers/mine/exec".into(),
            json.clone(),
            br#"{"Cmd":["true"],"WorkingDir":"/./proc/self/fd/7"}"#.to_vec(),
        ),
        (
            "4. commit with changes WORKDIR /x/../proc/self/fd/7",
            "POST",
            "/v1.41/commit?container=mine&repo=evil-commit&changes=WORKDIR+%2Fx%2F..%2Fproc%2Fself%2Ffd%2F7"
                .into(),
            json.clone(),
            Vec::new(),
        ),
        (
            "4. create from an image whose WORKDIR is /proc/self/fd/7",
            "POST",
            "/v1.41/containers/create?name=evil-image-wd".into(),
            json.clone(),
            br#"{"Image":"proc-workdir"}"#.to_vec(),
        ),
        (
            "7. mount an operator's volume made with bind options",
            "POST",
            "/v1.41/containers/create?name=evil-bindvol".into(),
            json.clone(),
            br#"{"Image":"busybox","HostConfig":{"Binds":["host-etc:/h"]}}"#.to_vec(),
        ),
        (
            "5. a network over the metadata service's range",
            "POST",
            "/v1.41/networks/create".into(),
            json.clone(),
            br#"{"Name":"evil-subnet","IPAM":{"Config":[{"Subnet":"169.254.169.0/24"}]}}"#.to_vec(),
        ),
        (
            "5. a network over 10.0.0.0/8",
            "POST",
            "/v1.41/networks/create".into(),
            json.clone(),
            br#"{"Name":"evil-ten","IPAM":{"Config":[{"Subnet":"10.0.0.0/8"}]}}"#.to_vec(),
        ),
        (
            "9. rtprio ulimit",
            "POST",
            "/v1.41/containers/create?name=evil-rtprio".into(),
            json.clone(),
            br#"{"Image":"busybox","HostConfig":{"Ulimits":[{"Name":"rtprio","Soft":99,"Hard":99}]}}"#
                .to_vec(),
        ),
        (
            "9. shareable IPC",
            "POST",
            "/v1.41/containers/create?name=evil-ipc".into(),
            json,
            br#"{"Image":"busybox","HostConfig":{"IpcMode":"shareable"}}"#.to_vec(),
        ),
    ];
    if !buildkit {
        requests.push((
            "3. BuildKit through /build?version=2",
            "POST",
            "/v1.41/build?version=2&t=evil-buildkit".into(),
            b"application/x-tar".to_vec(),
            build_context(),
        ));
    }
    requests
}

/// Every hostile request is refused (4xx, a JSON `message` naming dindbox)
/// and the daemon is left as it was.
fn check_refusals(b: &DindBox, proxy: &Proxy, other_network: &str) -> Vec<String> {
    let before = daemon_state(b);
    let mut failures = Vec::new();
    for (what, method, target, content_type, body) in
        hostile_requests(other_network, proxy.buildkit)
    {
        let answer = send(&proxy.addr, method, &target, &content_type, &body);
        let message = serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if !(400..500).contains(&answer.status) || !message.starts_with("dindbox: ") {
            failures.push(format!(
                "{}: {what}: {method} {target} must be refused with a dindbox message; got {} {}",
                proxy.what, answer.status, answer.body
            ));
        } else {
            eprintln!("{}: {what}: {} {message}", proxy.what, answer.status);
        }
    }
    let after = daemon_state(b);
    if after != before {
        failures.push(format!(
            "{}: the refused requests changed the daemon's state:\nbefore:\n{before}\nafter:\n{after}",
            proxy.what
        ));
    }
    failures
}

/// The same requests without the hostile part go through: the refusals
/// above come from the rules, not from a broken request path.
fn check_benign_twins(b: &DindBox, proxy: &Proxy) -> Vec<String> {
    let mut failures = Vec::new();
    let benign: [(&str, &str, &[u8], &[u8]); 3] = [
        (
            "/v1.41/containers/create?name=twin-wd",
            "application/json; charset=utf-8",
            br#"{"Image":"busybox","WorkingDir":"/x/../srv"}"#,
            b"",
        ),
        (
            "/v1.41/networks/create",
            "application/json",
            br#"{"Name":"twin-net","IPAM":{"Config":[{"Subnet":"172.30.7.0/24"}]}}"#,
            b"",
        ),
        (
            "/v1.41/networks/twin-net/connect",
            "application/json",
            br#"{"Container":"twin-wd","EndpointConfig":{"Aliases":["twin"]}}"#,
            b"",
        ),
    ];
    for (target, content_type, body, _) in benign {
        let answer = send(&proxy.addr, "POST", target, content_type.as_bytes(), body);
        if !(200..300).contains(&answer.status) {
            failures.push(format!(
                "{}: benign POST {target} must succeed; got {} {}",
                proxy.what, answer.status, answer.body
            ));
        }
    }
    let wd = b.exec_ok(&format!(
        "{DIRECT} inspect -f '{{{{.Config.WorkingDir}}}}' twin-wd"
    ));
    if wd.trim() != "/srv" {
        failures.push(format!(
            "{}: dockerd must have cleaned the working directory to /srv, it has {wd:?}",
            proxy.what
        ));
    }
    b.exec_ok(&format!(
        "{DIRECT} rm -f twin-wd >/dev/null; {DIRECT} network rm twin-net >/dev/null"
    ));
    failures
}

#[test]
fn the_review_s_bypasses_are_refused_in_every_mode_and_change_nothing() {
    let h = need_harness!();
    let vol = Volume::new(h, "hardening");
    let b = DindBox::start(h, "hardening", &vol);
    b.load_busybox();
    // Another party's network, made on the daemon directly.
    let other = b.exec_ok(&format!("{DIRECT} network create other-net"));
    let other = other.trim().to_owned();
    // An image whose WORKDIR leads into /proc, as a Dockerfile or a loaded
    // archive could make it; made on the daemon directly.
    b.exec_ok(&format!(
        "{DIRECT} create --name wd-source busybox true >/dev/null && \
         {DIRECT} commit --change 'WORKDIR /x/../proc/self/fd/7' wd-source proc-workdir >/dev/null && \
         {DIRECT} rm wd-source >/dev/null && \
         {DIRECT} volume create -o type=none -o o=bind -o device=/etc host-etc >/dev/null"
    ));

    let published = b.api.strip_prefix("tcp://").expect("a TCP API").to_owned();
    let owner = b.start_standalone_proxy(STANDALONE_PORT, "--owner-label ci.job=42");
    let plain = b.start_standalone_proxy(STANDALONE_PORT + 1, "");
    let proxies = [
        Proxy {
            what: "box",
            addr: published,
            buildkit: true,
        },
        Proxy {
            what: "standalone --owner-label",
            addr: owner,
            buildkit: false,
        },
        Proxy {
            what: "standalone",
            addr: plain,
            buildkit: false,
        },
    ];
    let mut failures = Vec::new();
    for proxy in &proxies {
        // The tenant's own container and network, made through that proxy
        // (so they carry its owner label where it has one).
        docker_via(
            &b,
            &proxy.addr,
            &["run", "-d", "--name", "mine", "busybox", "sleep", "600"],
        );
        docker_via(&b, &proxy.addr, &["network", "create", "mynet"]);
        docker_via(
            &b,
            &proxy.addr,
            &["create", "--name", "stopped", "busybox", "true"],
        );
        failures.extend(check_refusals(&b, proxy, &other));
        failures.extend(check_benign_twins(&b, proxy));
        b.exec_ok(&format!(
            "{DIRECT} rm -f mine stopped >/dev/null; {DIRECT} network rm mynet >/dev/null"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
