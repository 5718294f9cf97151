//! End to end for the versioned policy (issue 12, "a versioned policy"): the
//! fields Engine API 1.42-1.55 added, on the sid box (dockerd 28.5.2, API
//! 1.51), through the box's proxy.
//!
//! The proxy serves API 1.41 until the version window opens, so these send
//! the fields dockerd 28.5 honours at 1.41 anyway (they are not gated by the
//! request's version): tmpfs mount `Options` and endpoint sysctls, and the
//! refusals, which the proxy makes at every version. What passes must take
//! effect in the container (an `exec` tmpfs runs a program, an endpoint
//! sysctl is set on the container's interface); what is refused must answer
//! one readable `dindbox:` line and leave the daemon as it was. The last
//! test sends the same through the real CLI at the version it negotiates
//! (the proxy's version window serves it API 1.50).
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use crate::harness::{harness_for_suite, send, unique, DindBox, Volume, DIRECT};

const JSON: &[u8] = b"application/json";

/// The box's proxy address, `host:port`.
fn proxy(b: &DindBox) -> String {
    b.api.trim_start_matches("tcp://").to_string()
}

/// Creates a container through the proxy with a raw body; its id.
fn create(b: &DindBox, body: &str) -> String {
    let answer = send(
        &proxy(b),
        "POST",
        &format!("/v1.41/containers/create?name={}", unique("fields")),
        JSON,
        body.as_bytes(),
    );
    if answer.status != 201 {
        b.fail(&format!(
            "create {body} answered {}: {}",
            answer.status, answer.body
        ));
    }
    let id = serde_json::from_str::<serde_json::Value>(answer.body.trim())
        .ok()
        .and_then(|v| v["Id"].as_str().map(str::to_string));
    id.unwrap_or_else(|| b.fail(&format!("no Id in the create answer {}", answer.body)))
}

/// What the inner dockerd holds (asked directly, not through the proxy).
fn daemon_state(b: &DindBox) -> String {
    b.exec_ok(&format!(
        "d='{DIRECT}'; \
         echo containers; $d ps -a --no-trunc --format '{{{{.ID}}}} {{{{.Names}}}} {{{{.State}}}}' | sort; \
         echo networks; $d network ls --format '{{{{.Name}}}} {{{{.ID}}}}' | sort; \
         echo volumes; $d volume ls -q | sort"
    ))
}

#[test]
fn sid_box_honours_the_tmpfs_options_and_endpoint_sysctls_it_lets_through() {
    let Some(h) = harness_for_suite("sid") else {
        return;
    };
    let vol = Volume::new(h, "fields");
    let b = DindBox::start(h, "fields", &vol);
    b.load_busybox();

    // A tmpfs mount is noexec unless TmpfsOptions.Options says exec: the
    // same program runs from one and not from the other.
    let program = r#"["sh","-c","cp /bin/busybox /t/busybox && /t/busybox echo ran-from-tmpfs"]"#;
    let exec = create(
        &b,
        &format!(
            r#"{{"Image":"busybox","Cmd":{program},"HostConfig":{{"Mounts":[{{"Type":"tmpfs","Target":"/t","TmpfsOptions":{{"Options":[["exec"]]}}}}]}}}}"#
        ),
    );
    let out = b.docker_ok(&["start", "-a", &exec]);
    assert_eq!(out.stdout, "ran-from-tmpfs\n", "{out}");
    let noexec = create(
        &b,
        &format!(
            r#"{{"Image":"busybox","Cmd":{program},"HostConfig":{{"Mounts":[{{"Type":"tmpfs","Target":"/t"}}]}}}}"#
        ),
    );
    let out = b.docker(&["start", "-a", &noexec]);
    assert!(
        !out.ok() && out.stderr.contains("Permission denied"),
        "without exec the tmpfs must stay noexec:\n{out}"
    );

    // An endpoint sysctl from the safe list lands on the container's eth0.
    let network = unique("fields-net");
    b.docker_ok(&["network", "create", &network]);
    let sysctl = create(
        &b,
        &format!(
            r#"{{"Image":"busybox","Cmd":["cat","/proc/sys/net/ipv4/conf/eth0/arp_ignore"],
                "HostConfig":{{"NetworkMode":"{network}"}},
                "NetworkingConfig":{{"EndpointsConfig":{{"{network}":{{"DriverOpts":{{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.arp_ignore=1"}}}}}}}}}}"#
        ),
    );
    let out = b.docker_ok(&["start", "-a", &sysctl]);
    assert_eq!(out.stdout, "1\n", "arp_ignore on the endpoint:\n{out}");
}

#[test]
fn sid_box_refuses_the_new_fields_it_does_not_let_through_and_changes_nothing() {
    let Some(h) = harness_for_suite("sid") else {
        return;
    };
    let vol = Volume::new(h, "fields-refused");
    let b = DindBox::start(h, "fields-refused", &vol);
    b.load_busybox();
    let network = unique("fields-net");
    b.docker_ok(&["network", "create", &network]);
    b.docker_ok(&["volume", "create", "data"]);
    let before = daemon_state(&b);

    let create = |fields: &str| format!(r#"{{"Image":"busybox","Cmd":["true"],{fields}}}"#);
    let refused: Vec<(&str, &str, String, String)> = vec![
        (
            "tmpfs option dev",
            "POST",
            "/v1.41/containers/create".into(),
            create(r#""HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["dev"]]}}]}"#),
        ),
        (
            "endpoint sysctl forwarding",
            "POST",
            "/v1.41/containers/create".into(),
            create(&format!(
                r#""HostConfig":{{"NetworkMode":"{network}"}},"NetworkingConfig":{{"EndpointsConfig":{{"{network}":{{"DriverOpts":{{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.forwarding=1"}}}}}}}}"#
            )),
        ),
        (
            "annotations",
            "POST",
            "/v1.41/containers/create".into(),
            create(r#""HostConfig":{"Annotations":{"run.oci.keep_original_groups":"1"}}"#),
        ),
        (
            "a CDI device request",
            "POST",
            "/v1.41/containers/create".into(),
            create(r#""HostConfig":{"DeviceRequests":[{"Driver":"cdi","DeviceIDs":["vendor.com/class=x"]}]}"#),
        ),
        (
            "bind options on a volume mount",
            "POST",
            "/v1.41/containers/create".into(),
            create(r#""HostConfig":{"Mounts":[{"Type":"volume","Source":"data","Target":"/d","BindOptions":{"CreateMountpoint":true}}]}"#),
        ),
        (
            "a volume subpath out of the volume",
            "POST",
            "/v1.41/containers/create".into(),
            create(r#""HostConfig":{"Mounts":[{"Type":"volume","Source":"data","Target":"/d","VolumeOptions":{"Subpath":"../../.."}}]}"#),
        ),
        (
            "none with another network",
            "POST",
            "/v1.41/containers/create".into(),
            create(&format!(
                r#""HostConfig":{{"NetworkMode":"none"}},"NetworkingConfig":{{"EndpointsConfig":{{"{network}":{{}}}}}}"#
            )),
        ),
        (
            "connect with an endpoint sysctl route_localnet",
            "POST",
            format!("/v1.41/networks/{network}/connect"),
            r#"{"Container":"nothing","EndpointConfig":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.IFNAME.route_localnet=1"}}}"#.into(),
        ),
        (
            "a cluster volume",
            "PUT",
            "/v1.41/volumes/data".into(),
            "{}".into(),
        ),
        ("the debug endpoints", "GET", "/v1.41/debug/vars".into(), String::new()),
    ];
    for (what, method, target, body) in &refused {
        let content_type = if body.is_empty() { &b""[..] } else { JSON };
        let answer = send(&proxy(&b), method, target, content_type, body.as_bytes());
        let message = serde_json::from_str::<serde_json::Value>(answer.body.trim())
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        if answer.status != 403 || !message.starts_with("dindbox: ") {
            b.fail(&format!(
                "{what}: {method} {target} {body} must be refused with a dindbox: message; \
                 it answered {} {}",
                answer.status, answer.body
            ));
        }
        eprintln!("{what}: {message}");
    }

    // The CLI prints the refusal as one line (then its own `--help` hint)
    // and exits non-zero.
    let cdi = b.docker(&[
        "run",
        "--rm",
        "--device",
        "vendor.com/class=x",
        "busybox",
        "true",
    ]);
    let reasons: Vec<&str> = cdi
        .stderr
        .lines()
        .filter(|l| l.contains("dindbox: "))
        .collect();
    assert!(
        !cdi.ok() && reasons.len() == 1,
        "`docker run --device vendor.com/class=x` must fail with one dindbox: line:\n{cdi}"
    );
    eprintln!("CLI CDI device: {}", reasons[0]);

    assert_eq!(
        daemon_state(&b),
        before,
        "the refused requests must leave the daemon as it was"
    );
}

/// The API version the CLI settled on with the box's proxy.
fn negotiated(b: &DindBox) -> String {
    b.docker_ok(&["version", "--format", "{{.Client.APIVersion}}"])
        .stdout
        .trim()
        .to_string()
}

/// The real CLI (28.2, API 1.50) at the version it negotiates: needs the
/// version window (the proxy serving API 1.48 and up; at 1.41 dockerd itself
/// refuses subpaths, several networks and image mounts).
#[test]
fn sid_box_runs_what_the_cli_sends_for_the_new_fields() {
    let Some(h) = harness_for_suite("sid") else {
        return;
    };
    let vol = Volume::new(h, "fields-cli");
    let b = DindBox::start(h, "fields-cli", &vol);
    b.load_busybox();
    eprintln!("the CLI negotiated API {}", negotiated(&b));

    let out = b.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "echo in-tmpfs > /t/x && cat /t/x && grep ' /t ' /proc/mounts",
    ]);
    assert!(out.stdout.starts_with("in-tmpfs\n"), "{out}");

    b.docker_ok(&["volume", "create", "data"]);
    b.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "data:/d",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /d/app && echo in-subpath > /d/app/f",
    ]);
    let out = b.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=data,dst=/a,volume-subpath=app",
        "busybox",
        "cat",
        "/a/f",
    ]);
    assert_eq!(out.stdout, "in-subpath\n", "{out}");

    let (n1, n2) = (unique("fields-n1"), unique("fields-n2"));
    b.docker_ok(&["network", "create", &n1]);
    b.docker_ok(&["network", "create", &n2]);
    let out = b.docker_ok(&[
        "run",
        "--rm",
        "--network",
        &format!("name={n1},gw-priority=1"),
        "--network",
        &n2,
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "eth1", "lo"],
        "{out}"
    );

    let out = b.docker_ok(&[
        "run", "--rm", "--network",
        &format!("name={n1},driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.arp_ignore=1"),
        "busybox", "cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore",
    ]);
    assert_eq!(out.stdout, "1\n", "{out}");

    let out = b.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=image,src=busybox,dst=/img",
        "busybox",
        "sh",
        "-c",
        "test -x /img/bin/busybox && ! touch /img/x 2>/dev/null && echo image-mounted",
    ]);
    assert_eq!(out.stdout, "image-mounted\n", "{out}");

    let before = daemon_state(&b);
    for args in [
        vec!["--annotation", "run.oci.keep_original_groups=1"],
        vec!["--device", "/dev/sda"],
        vec!["--device", "vendor.com/class=x"],
        vec!["--network", &format!("name={n1},driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.forwarding=1")],
        vec!["--mount", "type=tmpfs,dst=/t,tmpfs-mode=1777", "--mount", "type=volume,src=data,dst=/b,volume-subpath=../.."],
    ] {
        let mut all = vec!["run", "--rm"];
        all.extend(args.iter().copied());
        all.extend(["busybox", "true"]);
        let out = b.docker(&all);
        let reasons: Vec<&str> = out.stderr.lines().filter(|l| l.contains("dindbox: ")).collect();
        if out.ok() || reasons.len() != 1 {
            b.fail(&format!("`docker {}` must be refused with one dindbox: line:\n{out}", all.join(" ")));
        }
        eprintln!("{}: {}", args.join(" "), reasons[0]);
    }
    assert_eq!(
        daemon_state(&b),
        before,
        "the refused runs must leave the daemon as it was"
    );

    let debug = send(&proxy(&b), "GET", "/v1.51/debug/pprof/", b"", b"");
    assert_eq!(debug.status, 403, "{}", debug.body);
}
