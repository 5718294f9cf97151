//! End to end for "one static binary" (issue 12): the dindbox binary in an
//! image that holds nothing else, `IMAGE-scratch` (`FROM scratch` + the
//! binary, made by scripts/build-image.sh next to IMAGE): no libc, no dynamic
//! loader, no shell, no /etc.
//!
//! - the image's only file is `dindbox`, a static ELF (no PT_INTERP, no NEEDED)
//!   that links no glibc NSS lookup (getaddrinfo, getpwnam, ...);
//! - `--version`, `policy explain` (with a policy file mounted in), `policy
//!   check` and `proxy --help` exit 0 with their usual output;
//! - `dindbox proxy` in it, in front of the outer daemon's socket, generates a
//!   `--tls-certdir` (rcgen and ring: key generation, gethostname,
//!   getifaddrs), serves mutual TLS (rustls, tokio, hyper) to the real CLI:
//!   `docker version` answers through it, a privileged `docker run` gets the
//!   policy's refusal, and a client without the certificate is turned away.
//!
//! So nothing the binary does in these roles needs a libc (or NSS, or a
//! resolver) at run time. `dindbox init` with the static binary is what every
//! other e2e suite runs (the harness's image carries it).
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::harness::{free_port, harness, poll, run, unique, Harness, Out, CMD_TIMEOUT, PREFIX};

fn scratch(h: &Harness) -> String {
    format!("{}-scratch", h.image)
}

/// `docker run --rm [extra] IMAGE-scratch args`.
fn run_scratch(h: &Harness, extra: &[&str], args: &[&str]) -> Out {
    let image = scratch(h);
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(extra);
    all.push(&image);
    all.extend_from_slice(args);
    h.outer(&all)
}

fn expect_ok(what: &str, out: &Out) {
    assert!(out.ok(), "{what} in the scratch image failed:\n{out}");
}

#[test]
fn the_scratch_image_holds_only_the_static_binary() {
    let h = need_harness!();
    let dir = tempfile::Builder::new().prefix(PREFIX).tempdir().unwrap();
    let saved = dir.path().join("image.tar");
    let out = h.outer(&["save", "-o", saved.to_str().unwrap(), &scratch(h)]);
    assert!(out.ok(), "docker save {}:\n{out}", scratch(h));

    // Every file of every layer (`docker save`: a tar of layer tars).
    let mut files = Vec::new();
    let mut binary = Vec::new();
    let mut outer = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    for entry in outer.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let is_layer = path.extension().is_some_and(|e| e == "tar")
            || path.starts_with("blobs") && entry.header().entry_type().is_file();
        if !is_layer {
            continue;
        }
        let mut layer = tar::Archive::new(entry);
        let Ok(entries) = layer.entries() else {
            continue; // a blob that is JSON, not a layer
        };
        for file in entries {
            let Ok(mut file) = file else { break };
            let name = file.path().unwrap().display().to_string();
            if name == "dindbox" {
                file.read_to_end(&mut binary).unwrap();
            }
            files.push(name);
        }
    }
    assert_eq!(
        files,
        ["dindbox"],
        "the scratch image must hold the binary and nothing else"
    );
    let bin = dir.path().join("dindbox");
    std::fs::write(&bin, &binary).unwrap();
    let out = lib_sh("static_elf \"$1\"", &bin);
    assert!(out.ok(), "the image's binary is not static:\n{out}");
    eprintln!(
        "scratch image: only `dindbox` ({} bytes, {})",
        binary.len(),
        out.stdout.trim()
    );

    // No NSS: a static glibc resolves names with its built-in files and dns
    // backends only; every other backend nsswitch.conf may name is a
    // libnss_*.so of its exact version, which Alpine and this image lack. The
    // binary must not link getaddrinfo, getpwnam and the like at all.
    let out = lib_sh("nss_symbols \"$1\"", &bin);
    assert!(out.ok(), "{out}");
    assert!(
        out.stdout.trim().is_empty(),
        "the static binary links glibc NSS lookups, which answer differently without \
         libnss_*.so (Alpine, scratch): take IP literals / numeric ids instead:\n{}",
        out.stdout
    );
}

/// `bash -c 'source scripts/lib.sh && SCRIPT' bash FILE`.
fn lib_sh(script: &str, file: &Path) -> Out {
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "-c",
        &format!("source scripts/lib.sh && {script}"),
        "bash",
        file.to_str().unwrap(),
    ]);
    run(cmd, None, CMD_TIMEOUT)
}

#[test]
fn the_cli_runs_with_no_libc() {
    let h = need_harness!();
    let out = run_scratch(h, &[], &["--version"]);
    expect_ok("--version", &out);
    assert_eq!(
        out.stdout.trim(),
        format!("dindbox {}", env!("CARGO_PKG_VERSION"))
    );

    let out = run_scratch(h, &[], &["proxy", "--help"]);
    expect_ok("proxy --help", &out);
    assert!(out.stdout.contains("--tls-certdir"), "{out}");

    // A policy file from outside: TOML parsing, the policy's validation, explain.
    let dir = tempfile::Builder::new().prefix(PREFIX).tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "labels = { \"com.example.tenant\" = \"acme\" }\nmemory = \"2g\"\npids = 1024\n",
    )
    .unwrap();
    let mount = format!("{}:/policy.toml:ro", policy.display());
    let out = run_scratch(h, &["-v", &mount], &["policy", "check", "/policy.toml"]);
    expect_ok("policy check", &out);
    assert_eq!(out.stdout.trim(), "/policy.toml: valid");

    let out = run_scratch(
        h,
        &["-v", &mount],
        &["policy", "explain", "--policy", "/policy.toml"],
    );
    expect_ok("policy explain", &out);
    for want in [
        "com.example.tenant=acme",
        "Refused on container create and update:",
        "privileged mode",
    ] {
        assert!(out.stdout.contains(want), "explain lacks {want:?}:\n{out}");
    }

    // A bad file is refused with the usual message, not a crash.
    std::fs::write(&policy, "no-such-key = 1\n").unwrap();
    let out = run_scratch(h, &["-v", &mount], &["policy", "check", "/policy.toml"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("no-such-key"), "{out}");
}

/// The scratch container, force-removed on drop.
struct Container<'h> {
    h: &'h Harness,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.h.outer(&["logs", &self.name]));
        }
        self.h.outer(&["rm", "-f", &self.name]);
    }
}

fn cli(port: u16, client: Option<&Path>, args: &[&str]) -> Out {
    let mut cmd = std::process::Command::new("docker");
    cmd.env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env_remove("DOCKER_CONTEXT")
        .args(args);
    match client {
        Some(dir) => cmd
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", dir),
        None => cmd
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH"),
    };
    run(cmd, None, CMD_TIMEOUT)
}

#[test]
fn the_proxy_serves_mutual_tls_from_the_scratch_image() {
    let h = need_harness!();
    let Some(socket) = h.outer.strip_prefix("unix://") else {
        eprintln!(
            "!!! skipped: the outer daemon {} is not on a unix socket to hand the proxy",
            h.outer
        );
        return;
    };
    let certs = tempfile::Builder::new().prefix(PREFIX).tempdir().unwrap();
    let port = free_port();
    let name = unique("static-proxy");
    let upstream = format!("{socket}:/upstream.sock");
    let certdir = format!("{}:/certs", certs.path().display());
    let publish = format!("127.0.0.1:{port}:2376");
    let image = scratch(h);
    let out = h.outer(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &upstream,
        "-v",
        &certdir,
        "-p",
        &publish,
        &image,
        "proxy",
        "--ds",
        "/upstream.sock",
        "--listen-tcp",
        "0.0.0.0:2376",
        "--tls-certdir",
        "/certs",
    ]);
    assert!(out.ok(), "docker run {image} proxy:\n{out}");
    let _container = Container { h, name };

    let client = certs.path().join("client");
    let answered = poll(Duration::from_secs(30), || {
        let out = cli(
            port,
            Some(&client),
            &["version", "-f", "{{.Server.Version}}"],
        );
        out.ok().then_some(out)
    });
    let version = answered.unwrap_or_else(|| {
        panic!(
            "the CLI never got an answer through the scratch proxy; last try:\n{}",
            cli(port, Some(&client), &["version"])
        )
    });
    assert!(!version.stdout.trim().is_empty(), "{version}");

    let out = cli(
        port,
        Some(&client),
        &["run", "--rm", "--privileged", "busybox", "true"],
    );
    assert!(!out.ok(), "a privileged run got through:\n{out}");
    assert!(
        out.stderr.contains("privileged mode is not allowed"),
        "not the policy's refusal:\n{out}"
    );

    // No client certificate: the TLS port does not answer plain HTTP, and
    // trusting the CA without presenting a certificate fails the handshake.
    let out = cli(port, None, &["version", "-f", "{{.Server.Version}}"]);
    assert!(!out.ok(), "plain HTTP got an answer:\n{out}");
    let bare = tempfile::Builder::new().prefix(PREFIX).tempdir().unwrap();
    std::fs::copy(client.join("ca.pem"), bare.path().join("ca.pem")).unwrap();
    let out = cli(
        port,
        Some(bare.path()),
        &["version", "-f", "{{.Server.Version}}"],
    );
    assert!(!out.ok(), "no client certificate, yet an answer:\n{out}");
}
