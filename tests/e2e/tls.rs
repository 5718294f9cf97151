//! End to end for TLS (issue 6, "TLS"): a box as the image runs by default
//! (TLS on, `DOCKER_TLS_CERTDIR=/certs`, as docker:dind), with
//! `-v HOSTDIR:/certs -p 127.0.0.1:P:2376`, and
//! the real Docker CLI with `DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=HOSTDIR/client`.
//!
//! - the CLI with the generated client certificate works (version, and a
//!   hijacked `docker run -i` whose stdin ends with a TLS half-close);
//! - without a client certificate, with one from another CA, or trusting
//!   another CA, it fails; plain HTTP to the TLS port fails too;
//! - the generated files have docker:dind's modes;
//! - a restarted box (same address, same cert dir) reuses every file as it
//!   is: same bytes, same inode, same mtime;
//! - two boxes started at once on one cert dir share one CA and client
//!   certificate, and both answer to it;
//! - `dindbox proxy --listen-tcp` standalone in front of the outer daemon,
//!   with `--tls-certdir` or dockerd's `--tlsverify --tlscacert --tlscert
//!   --tlskey`: the CLI with the client certificate works, without it not.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::harness::{
    self, free_port, harness, poll, run, unique, DindBox, Harness, Out, Volume, PREFIX,
};
use dindbox::tls::{self, San};

/// A host directory for certificates, removed at the end.
fn certdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir()
        .expect("create a temp dir")
}

/// The CLI environment for a TLS box whose client files are in `client`.
fn tls_env(client: &Path) -> Vec<(String, String)> {
    vec![
        ("DOCKER_TLS_VERIFY".into(), "1".into()),
        ("DOCKER_CERT_PATH".into(), client.display().to_string()),
    ]
}

/// Starts a TLS box on `certs` and waits until the CLI with its client
/// certificate answers.
fn start_tls<'h>(
    h: &'h Harness,
    tag: &str,
    vol: &Volume,
    certs: &Path,
    extra: &[&str],
) -> DindBox<'h> {
    let b = launch_tls(h, tag, vol, certs, extra);
    let took = b.wait_ready();
    eprintln!("{}: ready over TLS in {} ms", b.name, took.as_millis());
    b
}

fn launch_tls<'h>(
    h: &'h Harness,
    tag: &str,
    vol: &Volume,
    certs: &Path,
    extra: &[&str],
) -> DindBox<'h> {
    let mount = format!("{}:/certs", certs.display());
    // No DOCKER_TLS_CERTDIR: TLS on /certs is the image's default.
    let mut args = vec!["-v", &mount];
    args.extend_from_slice(extra);
    DindBox::launch_published(h, tag, vol, 2376, &args, tls_env(&certs.join("client")))
}

/// `docker ARGS` against the box's port with exactly `env` for TLS.
fn docker_with(b: &DindBox, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = std::process::Command::new("docker");
    cmd.env("DOCKER_HOST", &b.api)
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_TLS")
        .envs(env.iter().copied())
        .args(args);
    run(cmd, None, Duration::from_secs(30))
}

/// Fails unless `out` failed without reaching the daemon.
fn expect_refused(what: &str, out: &Out) {
    assert!(
        !out.ok() && !out.timed_out,
        "{what}: must fail quickly, but:\n{out}"
    );
    assert!(
        !out.stdout.contains("Server:"),
        "{what}: the daemon answered:\n{out}"
    );
}

/// A certificate set of another CA (made by the library, as a box would).
fn other_ca(dir: &Path) {
    let sans: BTreeSet<San> = tls::wanted_sans("other", ["127.0.0.1".parse().unwrap()], &[]);
    tls::prepare(dir, &sans, SystemTime::now()).expect("another CA's certificates");
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_cli_needs_the_client_certificate_of_the_box() {
    let h = need_harness!();
    let vol = Volume::new(h, "tls");
    let certs = certdir();
    let b = start_tls(h, "tls", &vol, certs.path(), &[]);

    // The files, with docker:dind's modes.
    for (file, want) in [
        ("ca/key.pem", 0o600),
        ("ca/cert.pem", 0o644),
        ("server/key.pem", 0o600),
        ("server/cert.pem", 0o644),
        ("server/ca.pem", 0o644),
        ("client/key.pem", 0o644),
        ("client/cert.pem", 0o644),
        ("client/ca.pem", 0o644),
    ] {
        assert_eq!(mode(&certs.path().join(file)), want, "mode of {file}");
    }

    let out = b.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!out.stdout.trim().is_empty(), "{out}");

    // A hijacked stream over TLS: stdin ends with the CLI's TLS half-close
    // (close_notify), and the output still comes back.
    b.load_busybox();
    let out = run(
        b.docker_cmd(&["run", "--rm", "-i", "busybox", "cat"]),
        Some(b"hello over tls\n"),
        Duration::from_secs(60),
    );
    b.expect_ok(&out);
    assert_eq!(out.stdout, "hello over tls\n", "{out}");

    // Plain HTTP to the TLS port.
    expect_refused("plain HTTP", &docker_with(&b, &[], &["version"]));

    // The server's CA trusted, but no client certificate offered: the CLI
    // skips cert.pem/key.pem it does not find in DOCKER_CERT_PATH.
    let only_ca = certdir();
    copy(
        &certs.path().join("client/ca.pem"),
        &only_ca.path().join("ca.pem"),
    );
    let out = docker_with(
        &b,
        &[
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", only_ca.path().to_str().unwrap()),
        ],
        &["version"],
    );
    expect_refused("no client certificate", &out);
    assert!(
        out.stderr.contains("certificate required") || out.stderr.contains("bad certificate"),
        "the refusal should be the TLS alert:\n{out}"
    );

    // A client certificate of another CA (the box's CA still trusted).
    let other = certdir();
    other_ca(other.path());
    let mixed = certdir();
    copy(
        &certs.path().join("client/ca.pem"),
        &mixed.path().join("ca.pem"),
    );
    copy(
        &other.path().join("client/cert.pem"),
        &mixed.path().join("cert.pem"),
    );
    copy(
        &other.path().join("client/key.pem"),
        &mixed.path().join("key.pem"),
    );
    let out = docker_with(
        &b,
        &[
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", mixed.path().to_str().unwrap()),
        ],
        &["version"],
    );
    expect_refused("a client certificate of another CA", &out);

    // Trusting another CA: the CLI refuses the box's server certificate.
    let out = docker_with(
        &b,
        &[
            ("DOCKER_TLS_VERIFY", "1"),
            (
                "DOCKER_CERT_PATH",
                other.path().join("client").to_str().unwrap(),
            ),
        ],
        &["version"],
    );
    expect_refused("another CA trusted", &out);
    assert!(
        out.stderr.contains("unknown authority") || out.stderr.contains("certificate"),
        "{out}"
    );

    // Still fine with the right files.
    b.docker_ok(&["version"]);
    let logs = b.h.outer(&["logs", &b.name]);
    let log = harness::strip_ansi(&format!("{}{}", logs.stdout, logs.stderr));
    assert!(log.contains("TLS handshake refused"), "{log}");
}

/// A user-defined network, so a restarted box gets its address back.
struct Network<'h> {
    h: &'h Harness,
    name: String,
    subnet_prefix: String,
}

impl<'h> Network<'h> {
    fn new(h: &'h Harness) -> Self {
        let name = unique("tls-net");
        let pid = std::process::id();
        for i in 0..20u32 {
            let prefix = format!("10.{}.{}", 200 + (pid + i) % 50, (pid / 50 + i * 7) % 250);
            let subnet = format!("{prefix}.0/24");
            if h.outer(&["network", "create", "--subnet", &subnet, &name])
                .ok()
            {
                return Network {
                    h,
                    name,
                    subnet_prefix: prefix,
                };
            }
        }
        panic!("could not create a network with a free 10.x.y.0/24 subnet");
    }
}

impl Drop for Network<'_> {
    fn drop(&mut self) {
        self.h.outer(&["network", "rm", &self.name]);
    }
}

/// Every file of the set: its bytes, inode and mtime.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u64, i64, i64)> {
    tls::Pem::ALL
        .into_iter()
        .map(|f| {
            let path = dir.join(f.rel());
            let meta = std::fs::metadata(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes, meta.ino(), meta.mtime(), meta.mtime_nsec())
        })
        .collect()
}

#[test]
fn a_restarted_box_reuses_its_certificates_unchanged() {
    let h = need_harness!();
    let net = Network::new(h);
    let vol = Volume::new(h, "tls-restart");
    let certs = certdir();
    let ip = format!("{}.10", net.subnet_prefix);
    let b = start_tls(
        h,
        "tls-restart",
        &vol,
        certs.path(),
        &["--network", &net.name, "--ip", &ip],
    );
    let before = snapshot(certs.path());
    let san = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(certs.path().join("server/cert.pem"))
        .output();
    if let Ok(out) = san {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains(&format!("IP Address:{ip}")), "SANs: {text}");
    }

    let out = h.outer(&["restart", "-t", "20", &b.name]);
    b.expect_ok(&out);
    b.wait_ready();
    b.docker_ok(&["version"]);
    let after = snapshot(certs.path());
    for (old, new) in before.iter().zip(&after) {
        assert!(
            old == new,
            "{} was rewritten by the restart",
            old.0.display()
        );
    }
    let logs = h.outer(&["logs", &b.name]);
    let log = harness::strip_ansi(&format!("{}{}", logs.stdout, logs.stderr));
    assert!(
        log.contains("reusing the existing CA, server and client certificates"),
        "{log}"
    );
}

#[test]
fn two_boxes_started_at_once_on_one_cert_dir_share_one_ca() {
    let h = need_harness!();
    let certs = certdir();
    let (va, vb) = (Volume::new(h, "tls-a"), Volume::new(h, "tls-b"));
    let a = launch_tls(h, "tls-a", &va, certs.path(), &[]);
    let b = launch_tls(h, "tls-b", &vb, certs.path(), &[]);
    a.wait_ready();
    b.wait_ready();
    // One client certificate for both; each box serves the server
    // certificate it made or found (signed by the one CA).
    a.docker_ok(&["version"]);
    b.docker_ok(&["version"]);
    let ca = std::fs::read(certs.path().join("ca/cert.pem")).unwrap();
    assert_eq!(
        std::fs::read(certs.path().join("client/ca.pem")).unwrap(),
        ca
    );
    assert_eq!(
        std::fs::read(certs.path().join("server/ca.pem")).unwrap(),
        ca
    );
    // No temporary file left behind.
    for sub in ["ca", "server", "client"] {
        for entry in std::fs::read_dir(certs.path().join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(name.ends_with(".pem"), "{sub}/{name} left behind");
        }
    }
}

// ---------------------------------------------------------------- standalone proxy

/// `dindbox proxy --ds OUTER --listen-tcp 127.0.0.1:P TLS_FLAGS`, stopped on drop.
struct StandaloneTls {
    child: std::process::Child,
    host: String,
    log: PathBuf,
}

impl StandaloneTls {
    fn start(h: &Harness, dir: &Path, tls_flags: &[&str], client_env: &[(String, String)]) -> Self {
        let upstream = h
            .outer
            .strip_prefix("unix://")
            .expect("the outer daemon is on a unix socket");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("proxy.log");
        let log_file = std::fs::File::create(&log).expect("create the proxy log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dindbox"))
            .args(["proxy", "--ds", upstream, "--listen-tcp", &addr])
            .args(tls_flags)
            .env_remove("DINDBOX_POLICY")
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().expect("dup the log"))
            .stderr(log_file)
            .spawn()
            .expect("start `dindbox proxy`");
        let p = StandaloneTls {
            child,
            host: format!("tcp://{addr}"),
            log,
        };
        let ready = poll(Duration::from_secs(20), || {
            p.docker(client_env, &["version"]).ok().then_some(())
        });
        if ready.is_none() {
            panic!(
                "`dindbox proxy {}` did not answer on {} within 20 s; its log:\n{}",
                tls_flags.join(" "),
                p.host,
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
        }
        p
    }

    fn docker(&self, env: &[(String, String)], args: &[&str]) -> Out {
        let mut cmd = std::process::Command::new("docker");
        cmd.env("DOCKER_HOST", &self.host)
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args);
        run(cmd, None, Duration::from_secs(30))
    }
}

impl Drop for StandaloneTls {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        harness::wait_timeout(&mut self.child, Duration::from_secs(10));
    }
}

/// The CLI without a client certificate: trusts the CA (DOCKER_TLS_VERIFY
/// with a cert path holding only ca.pem), so only the missing certificate
/// can make it fail.
fn without_client_cert(dir: &Path, client: &Path) -> Vec<(String, String)> {
    let ca_only = dir.join("ca-only");
    std::fs::create_dir_all(&ca_only).unwrap();
    std::fs::copy(client.join("ca.pem"), ca_only.join("ca.pem")).unwrap();
    tls_env(&ca_only)
}

#[test]
fn standalone_proxy_serves_the_cli_over_mtls_from_a_cert_dir_or_dockerds_flags() {
    let h = need_harness!();
    let dir = certdir();
    let certs = dir.path().join("certs");
    let certs_flag = certs.display().to_string();
    let client = certs.join("client");

    // A docker:dind cert dir the proxy generates.
    let p = StandaloneTls::start(
        h,
        dir.path(),
        &["--tls-certdir", &certs_flag],
        &tls_env(&client),
    );
    let out = p.docker(
        &tls_env(&client),
        &["info", "--format", "{{.ServerVersion}}"],
    );
    assert!(
        out.ok(),
        "the CLI with the generated client certificate:\n{out}"
    );
    let refused = p.docker(&without_client_cert(dir.path(), &client), &["version"]);
    assert!(
        !refused.ok(),
        "the CLI without a client certificate must fail:\n{refused}"
    );
    let plain = p.docker(&[], &["version"]);
    assert!(
        !plain.ok(),
        "plain HTTP to the TLS port must fail:\n{plain}"
    );
    drop(p);

    // The same files through dockerd's flag names.
    let file = |rel: &str| certs.join(rel).display().to_string();
    let (ca, cert, key) = (
        file("ca/cert.pem"),
        file("server/cert.pem"),
        file("server/key.pem"),
    );
    let p = StandaloneTls::start(
        h,
        dir.path(),
        &[
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
        ],
        &tls_env(&client),
    );
    let refused = p.docker(&without_client_cert(dir.path(), &client), &["version"]);
    assert!(
        !refused.ok(),
        "the CLI without a client certificate must fail:\n{refused}"
    );
    let log = std::fs::read_to_string(&p.log).unwrap_or_default();
    assert!(
        log.contains("TLS handshake refused"),
        "the proxy logs the refusal:\n{log}"
    );
}
