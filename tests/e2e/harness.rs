//! The e2e harness: a private outer dockerd (scripts/lib.sh), the dindbox image
//! (scripts/build-image.sh) and boxes that clean up after themselves.
//!
//! Set up once per test process. As root a failing setup fails every test
//! loudly; without root every test is skipped with a loud message.
//!
//! Shared by the suites of the one e2e test binary (tests/e2e.rs and its
//! modules in tests/e2e/), so each image is built once per run.
//! [`harness`] is the default image (`dindbox:dev`, the debootstrapped sid: dockerd 28.5);
//! [`harness_for_suite`] the other bases.

#![allow(dead_code)]

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Name prefix of every container and volume the e2e tests create.
pub const PREFIX: &str = "dindbox-e2e-";
/// The default timeout of one docker command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a box may take from `docker run` to a working API.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Harness {
    /// DOCKER_HOST of the outer daemon.
    pub outer: String,
    /// The dindbox image under test.
    pub image: String,
    /// `docker save` of busybox:latest, for loading into boxes.
    pub busybox_tar: PathBuf,
    /// What every box gets on `docker run` besides the test's own arguments:
    /// `--privileged`, or the options of a box without it ([`userns_harness`]).
    pub box_options: Vec<String>,
    /// The network namespace (a `/proc/PID/ns/net`) the CLI must enter to
    /// reach a box's published ports; `None`: this one.
    pub cli_netns: Option<String>,
}

static HARNESS: OnceLock<Result<Harness, String>> = OnceLock::new();

/// The shared harness, or `None` (after a loud message) when not root.
pub fn harness() -> Option<&'static Harness> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "\n!!! dindbox e2e SKIPPED: needs root (it starts a private dockerd and privileged \
             containers). Run `sudo bash scripts/test.sh` or `cargo test --test e2e` as root.\n"
        );
        return None;
    }
    match HARNESS.get_or_init(setup) {
        Ok(h) => Some(h),
        Err(err) => panic!(
            "dindbox e2e harness setup failed (as root, so this is a failure, not a skip):\n{err}"
        ),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The outer daemon (DOCKER_HOST) and the busybox tarball, set up once per
/// test process whichever images it uses.
static OUTER: OnceLock<Result<(String, PathBuf), String>> = OnceLock::new();

fn setup_outer() -> Result<(String, PathBuf), String> {
    OUTER
        .get_or_init(|| {
            // The private outer dockerd, unless DINDBOX_DOCKER_HOST names another daemon.
            let script = "set -euo pipefail; source scripts/lib.sh; ensure_packages; \
                          if [ -n \"${DINDBOX_DOCKER_HOST:-}\" ]; then docker_up_any; else outer_docker_up; fi; \
                          ensure_busybox_image; echo \"DOCKER_HOST=$DOCKER_HOST\"; echo \"BUSYBOX_TAR=$BUSYBOX_TAR\"";
            let mut cmd = Command::new("bash");
            cmd.current_dir(repo())
                .args(["-c", script])
                .env_remove("DOCKER_HOST");
            let stdout = run_setup(cmd, "outer dockerd / busybox setup (scripts/lib.sh)")?;
            let value = |key: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_owned)
                    .ok_or_else(|| format!("setup printed no {key}=:\n{stdout}"))
            };
            Ok((value("DOCKER_HOST")?, PathBuf::from(value("BUSYBOX_TAR")?)))
        })
        .clone()
}

fn setup() -> Result<Harness, String> {
    let image = std::env::var("DINDBOX_IMAGE").unwrap_or_else(|_| "dindbox:dev".into());
    setup_image(image, None)
}

/// The harness for `image`, built by scripts/build-image.sh (on the
/// debootstrapped base of `suite` when given) unless DINDBOX_E2E_SKIP_BUILD=1.
fn setup_image(image: String, suite: Option<&str>) -> Result<Harness, String> {
    let started = Instant::now();
    let (outer, busybox_tar) = setup_outer()?;
    if std::env::var("DINDBOX_E2E_SKIP_BUILD").as_deref() == Ok("1") {
        eprintln!("dindbox e2e: DINDBOX_E2E_SKIP_BUILD=1, using the existing {image}");
    } else {
        // The static binary users get: build-image.sh runs a static `cargo
        // build --target <host>` into target/<triple>/release (nested cargo is
        // fine: cargo holds no build lock while the tests run), and also makes
        // IMAGE-scratch, the binary alone. A DINDBOX_BINARY in our environment
        // (e.g. the binary cargo built for this test) is used instead.
        let mut cmd = Command::new("bash");
        cmd.current_dir(repo())
            .arg("scripts/build-image.sh")
            .env("DINDBOX_DOCKER_HOST", &outer)
            .env("DINDBOX_IMAGE", &image);
        if let Some(suite) = suite {
            cmd.env("DINDBOX_SUITE", suite)
                .env_remove("DINDBOX_BASE")
                .env_remove("DINDBOX_BASE_IMAGE");
        }
        run_setup(cmd, "scripts/build-image.sh")?;
    }
    let h = Harness {
        outer,
        image,
        busybox_tar,
        box_options: vec!["--privileged".into()],
        cli_netns: None,
    };
    let inspect = h.outer(&["image", "inspect", "-f", "{{.Id}}", &h.image]);
    if !inspect.ok() {
        return Err(format!("image {} is missing:\n{inspect}", h.image));
    }
    h.remove_leftovers();
    eprintln!(
        "dindbox e2e: harness ready in {:.1} s (outer {}, image {})",
        started.elapsed().as_secs_f64(),
        h.outer,
        h.image
    );
    Ok(h)
}

/// The Debian suites scripts/lib.sh debootstraps bases of.
const SUITES: [&str; 3] = ["bookworm", "trixie", "sid"];
/// The one the default image is built on (scripts/lib.sh `DINDBOX_DEFAULT_SUITE`).
const DEFAULT_SUITE: &str = "sid";
/// Their harnesses, each built once per test process; two suites build at
/// once (their debootstraps take minutes the first time).
static SUITE_HARNESS: [OnceLock<Result<Harness, String>>; 3] =
    [OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// The harness whose image is `dindbox:dev-<suite>` (`DINDBOX_IMAGE_<SUITE>`
/// names another tag), built on the debootstrapped Debian `suite` (bookworm,
/// trixie, sid; scripts/lib.sh), or `None` (after a loud message) when not root.
/// For the default image's suite (sid) it is [`harness`] itself.
pub fn harness_for_suite(suite: &str) -> Option<&'static Harness> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("\n!!! dindbox e2e SKIPPED: needs root (see tests/e2e/harness.rs).\n");
        return None;
    }
    let i = SUITES
        .iter()
        .position(|s| *s == suite)
        .unwrap_or_else(|| panic!("unknown Debian suite {suite:?} (one of {SUITES:?})"));
    // The default image's suite (scripts/lib.sh; DINDBOX_SUITE changes it)
    // is the default harness: one image, built once.
    if std::env::var("DINDBOX_SUITE").unwrap_or_else(|_| DEFAULT_SUITE.into()) == suite {
        return harness();
    }
    let built = SUITE_HARNESS[i].get_or_init(|| {
        let image = std::env::var(format!("DINDBOX_IMAGE_{}", suite.to_uppercase()))
            .unwrap_or_else(|_| format!("dindbox:dev-{suite}"));
        setup_image(image, Some(suite))
    });
    match built {
        Ok(h) => Some(h),
        Err(err) => {
            panic!("dindbox e2e harness setup for the {suite} base failed (as root):\n{err}")
        }
    }
}

static USERNS_HARNESS: OnceLock<Result<Harness, String>> = OnceLock::new();

/// The options of a box without `--privileged` (README "Without
/// --privileged"; docs/unprivileged-notes.md says why each is needed).
pub fn unprivileged_box_options() -> Vec<String> {
    let seccomp = repo().join("image/seccomp-unprivileged.json");
    vec![
        "--security-opt".into(),
        format!("seccomp={}", seccomp.display()),
        "--security-opt".into(),
        "systempaths=unconfined".into(),
        "--device".into(),
        "/dev/net/tun".into(),
    ]
}

/// The harness of boxes without `--privileged`: a second daemon started with
/// `--userns-remap=default` in a network namespace of its own
/// (scripts/lib.sh `userns_docker_up`), holding the default harness's image
/// and busybox. `None` (after a loud message) when not root.
pub fn userns_harness() -> Option<&'static Harness> {
    let main = harness()?;
    let built = USERNS_HARNESS.get_or_init(|| {
        let script = format!(
            "set -euo pipefail; source scripts/lib.sh; export DOCKER_HOST={outer}; \
             host=$(userns_docker_up); copy_image_to \"$host\" {image}; \
             copy_image_to \"$host\" busybox:latest; echo \"USERNS_HOST=$host\"; \
             echo \"USERNS_PID=$(cat \"$DINDBOX_USERNS_DIR/pid\")\"",
            outer = main.outer,
            image = main.image
        );
        let mut cmd = Command::new("bash");
        cmd.current_dir(repo()).args(["-c", &script]);
        let stdout = run_setup(
            cmd,
            "userns-remap dockerd (scripts/lib.sh userns_docker_up)",
        )?;
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(str::to_owned)
                .ok_or_else(|| format!("setup printed no {key}=:\n{stdout}"))
        };
        let h = Harness {
            outer: value("USERNS_HOST")?,
            image: main.image.clone(),
            busybox_tar: main.busybox_tar.clone(),
            box_options: unprivileged_box_options(),
            cli_netns: Some(format!("/proc/{}/ns/net", value("USERNS_PID")?)),
        };
        h.remove_leftovers();
        Ok(h)
    });
    match built {
        Ok(h) => Some(h),
        Err(err) => panic!("dindbox e2e userns-remap harness setup failed (as root):\n{err}"),
    }
}

/// Runs a setup script with its progress and errors going straight to our
/// stderr (debootstrap takes a minute); returns its stdout.
fn run_setup(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}); its messages are above.\n--- stdout:\n{stdout}",
            out.status
        ));
    }
    Ok(stdout)
}

impl Harness {
    /// A docker command against the outer daemon.
    pub fn outer_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.outer).args(args);
        cmd
    }

    pub fn outer(&self, args: &[&str]) -> Out {
        run(self.outer_cmd(args), None, CMD_TIMEOUT)
    }

    /// Boxes and volumes left by an earlier run that was killed. Only those
    /// whose test process is gone: another suite may be running right now.
    fn remove_leftovers(&self) {
        let filter = format!("name={PREFIX}");
        let names = self
            .outer(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])
            .stdout;
        for name in names.split_whitespace().filter(|n| left_by_a_dead_run(n)) {
            self.outer(&["rm", "-f", "-v", name]);
        }
        let vols = self
            .outer(&["volume", "ls", "-q", "--filter", &filter])
            .stdout;
        for v in vols.split_whitespace().filter(|v| left_by_a_dead_run(v)) {
            self.outer(&["volume", "rm", "-f", v]);
        }
        let nets = self
            .outer(&[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ])
            .stdout;
        for n in nets.split_whitespace().filter(|n| left_by_a_dead_run(n)) {
            self.outer(&["network", "rm", n]);
        }
    }
}

// ---------------------------------------------------------------- commands

/// What a finished (or timed-out) command left.
pub struct Out {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match (self.timed_out, self.code) {
            (true, _) => format!("timed out after {:.1} s", self.elapsed.as_secs_f64()),
            (false, Some(c)) => format!("exited {c} after {:.1} s", self.elapsed.as_secs_f64()),
            (false, None) => "was killed by a signal".into(),
        };
        write!(
            f,
            "`{}` {code}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.what,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` with `stdin` (then EOF; none means /dev/null), capturing its
/// output; kills it after `timeout`.
pub fn run(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Out {
    run_stdin(cmd, stdin, false, timeout)
}

/// Like [`run`], but stdin stays open (after `stdin` is written) until the
/// command exits, as a terminal's would: `docker attach` stops reading output
/// once its stdin is at EOF.
pub fn run_holding_stdin(cmd: Command, stdin: &[u8], timeout: Duration) -> Out {
    run_stdin(cmd, Some(stdin), true, timeout)
}

fn run_stdin(mut cmd: Command, stdin: Option<&[u8]>, hold: bool, timeout: Duration) -> Out {
    let what = describe(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let writer = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&input);
                hold.then_some(pipe)
            }))
        }
        _ => None,
    };
    let stdout = reader(child.stdout.take().expect("piped stdout"));
    let stderr = reader(child.stderr.take().expect("piped stderr"));
    let (code, timed_out) = wait_timeout(&mut child, timeout);
    // A held stdin closes only now.
    drop(writer.map(|w| w.join()));
    Out {
        what,
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
        elapsed: started.elapsed(),
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` at most `timeout`, then kills it: (exit code, timed out).
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> (Option<i32>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status.code(), false),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let status = child.wait().ok();
                return (status.and_then(|s| s.code()), true);
            }
        }
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    if let Some(host) = cmd
        .get_envs()
        .find(|(k, _)| *k == "DOCKER_HOST")
        .and_then(|(_, v)| v)
    {
        s.push_str(&format!("DOCKER_HOST={} ", host.to_string_lossy()));
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `s` without ANSI colour sequences (ESC [ ... letter).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `f` every 200 ms until it returns `Some`, at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A free TCP port on 127.0.0.1, never the same twice in this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut used = HANDED_OUT.lock().unwrap();
        if !used.contains(&port) {
            used.push(port);
            return port;
        }
    }
}

/// The inner dockerd of a box, asked directly (its private socket, from
/// inside the box), never through a proxy under test.
pub const DIRECT: &str = "docker -H unix:///run/dindbox/docker.sock";

/// An HTTP answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends one request as raw bytes (the header values may be anything) and
/// reads the answer to the end (`Connection: close`).
pub fn send(addr: &str, method: &str, target: &str, content_type: &[u8], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set a read timeout");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: dindbox\r\nConnection: close\r\n")
            .into_bytes();
    if !content_type.is_empty() {
        request.extend_from_slice(b"Content-Type: ");
        request.extend_from_slice(content_type);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    stream.write_all(&request).expect("send the request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Answer { status, body }
}

/// Whether `GET /_ping` at `addr` (TCP, plain HTTP) answers 200.
pub fn ping(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Whether a name made by [`unique`] belongs to a test process that is gone.
pub fn left_by_a_dead_run(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let (_n, pid) = (parts.next(), parts.next());
    match pid.and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

/// A unique name for a container or volume of the test `tag`.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{PREFIX}{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------- boxes

/// A named outer volume, removed on drop (after the boxes that use it).
pub struct Volume<'h> {
    h: &'h Harness,
    pub name: String,
}

impl<'h> Volume<'h> {
    pub fn new(h: &'h Harness, tag: &str) -> Self {
        Volume {
            h,
            name: unique(&format!("{tag}-vol")),
        }
    }
}

impl Drop for Volume<'_> {
    fn drop(&mut self) {
        self.h.outer(&["volume", "rm", "-f", &self.name]);
    }
}

/// One dind box: `docker run -d --privileged -e PORT=2375 -e DOCKER_TLS_CERTDIR=
/// -p 127.0.0.1:P:2375 -v VOLUME:/var/lib/docker IMAGE` (plain TCP: these tests
/// are about the proxy; tests/e2e/tls.rs covers the TLS default)`, force-removed on drop (even on panic).
pub struct DindBox<'h> {
    pub h: &'h Harness,
    pub name: String,
    /// DOCKER_HOST for the box's published API (through the proxy).
    pub api: String,
    /// More environment for the CLI talking to it (DOCKER_TLS_VERIFY, ...).
    pub client_env: Vec<(String, String)>,
}

impl<'h> DindBox<'h> {
    /// Starts a box on `volume` and waits until its API answers through PORT.
    pub fn start(h: &'h Harness, tag: &str, volume: &Volume) -> Self {
        let b = Self::launch(h, tag, volume);
        let took = b.wait_ready();
        eprintln!("{}: ready in {} ms", b.name, took.as_millis());
        b
    }

    /// Starts a box with extra `docker run` arguments (`-e KEY=VALUE`, ...)
    /// before the image, and waits until its API answers through PORT.
    pub fn start_with(h: &'h Harness, tag: &str, volume: &Volume, extra: &[&str]) -> Self {
        let b = Self::launch_with(h, tag, volume, extra);
        let took = b.wait_ready();
        eprintln!("{}: ready in {} ms", b.name, took.as_millis());
        b
    }

    /// Starts a box without waiting.
    pub fn launch(h: &'h Harness, tag: &str, volume: &Volume) -> Self {
        Self::launch_with(h, tag, volume, &[])
    }

    /// Starts a box with extra `docker run` arguments, without waiting.
    pub fn launch_with(h: &'h Harness, tag: &str, volume: &Volume, extra: &[&str]) -> Self {
        let mut args = vec!["-e", "PORT=2375", "-e", "DOCKER_TLS_CERTDIR="];
        args.extend_from_slice(extra);
        Self::launch_published(h, tag, volume, 2375, &args, Vec::new())
    }

    /// Starts a box whose `container_port` is published on a free loopback
    /// port, with `extra` `docker run` arguments and `client_env` for the
    /// CLI; does not wait.
    pub fn launch_published(
        h: &'h Harness,
        tag: &str,
        volume: &Volume,
        container_port: u16,
        extra: &[&str],
        client_env: Vec<(String, String)>,
    ) -> Self {
        let mount = format!("{}:/var/lib/docker", volume.name);
        Self::launch_raw(h, tag, &["-v", &mount], container_port, extra, client_env)
    }

    /// Starts a box whose /var/lib/docker comes from `storage` (`docker run`
    /// arguments such as `--mount type=bind,...`) with the API on PORT, and
    /// waits until it is ready.
    pub fn start_storage(h: &'h Harness, tag: &str, storage: &[&str], extra: &[&str]) -> Self {
        let b = Self::launch_storage(h, tag, storage, extra);
        let took = b.wait_ready();
        eprintln!("{}: ready in {} ms", b.name, took.as_millis());
        b
    }

    /// Like [`DindBox::launch_with`], with `storage` instead of a volume.
    pub fn launch_storage(h: &'h Harness, tag: &str, storage: &[&str], extra: &[&str]) -> Self {
        let mut args = vec!["-e", "PORT=2375", "-e", "DOCKER_TLS_CERTDIR="];
        args.extend_from_slice(extra);
        Self::launch_raw(h, tag, storage, 2375, &args, Vec::new())
    }

    fn launch_raw(
        h: &'h Harness,
        tag: &str,
        storage: &[&str],
        container_port: u16,
        extra: &[&str],
        client_env: Vec<(String, String)>,
    ) -> Self {
        let name = unique(tag);
        let port = free_port();
        let b = DindBox {
            h,
            api: format!("tcp://127.0.0.1:{port}"),
            name,
            client_env,
        };
        let publish = format!("127.0.0.1:{port}:{container_port}");
        let mut args = vec!["run", "-d"];
        args.extend(h.box_options.iter().map(String::as_str));
        args.extend(["--name", &b.name, "-p", &publish]);
        args.extend_from_slice(storage);
        args.extend_from_slice(extra);
        args.push(&h.image);
        let out = h.outer(&args);
        if !out.ok() {
            b.fail(&format!("could not start the box:\n{out}"));
        }
        b
    }

    /// Waits until `docker version` works through the published port; returns how long it took.
    pub fn wait_ready(&self) -> Duration {
        let started = Instant::now();
        let mut last = None;
        let ready = poll(READY_TIMEOUT, || {
            let out = run(self.docker_cmd(&["version"]), None, Duration::from_secs(10));
            if out.ok() {
                return Some(());
            }
            if self.state("{{.State.Running}}") != "true" {
                self.fail(&format!(
                    "the box exited (code {}) before it was ready; last try:\n{out}",
                    self.state("{{.State.ExitCode}}")
                ));
            }
            last = Some(out);
            None
        });
        if ready.is_none() {
            let last = last.map(|o| o.to_string()).unwrap_or_default();
            self.fail(&format!(
                "`docker version` through {} did not work within {} s; last try:\n{last}",
                self.api,
                READY_TIMEOUT.as_secs()
            ));
        }
        started.elapsed()
    }

    /// A docker command against the box's published API.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.h.cli_netns {
            None => Command::new("docker"),
            Some(netns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={netns}")).arg("docker");
                cmd
            }
        };
        cmd.env("DOCKER_HOST", &self.api)
            .envs(self.client_env.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd
    }

    /// Runs docker against the box's published API.
    pub fn docker(&self, args: &[&str]) -> Out {
        run(self.docker_cmd(args), None, CMD_TIMEOUT)
    }

    /// Runs docker against the box's API, failing the test unless it exits 0.
    pub fn docker_ok(&self, args: &[&str]) -> Out {
        let out = self.docker(args);
        self.expect_ok(&out);
        out
    }

    /// `sh -c script` inside the box, through the outer daemon.
    pub fn exec(&self, script: &str) -> Out {
        self.h.outer(&["exec", &self.name, "sh", "-c", script])
    }

    pub fn exec_ok(&self, script: &str) -> String {
        let out = self.exec(script);
        self.expect_ok(&out);
        out.stdout
    }

    /// The box's address on the outer bridge.
    pub fn ip(&self) -> String {
        let out = self.h.outer(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            &self.name,
        ]);
        let ip = out.stdout.trim().to_owned();
        assert!(
            !ip.is_empty(),
            "the box has no address on the outer bridge:\n{out}"
        );
        ip
    }

    /// Starts `dindbox proxy` inside the box, in front of its private dockerd
    /// socket, listening on the box's address (`flags` are more of its
    /// flags), and answers that address once `/_ping` answers. A request that
    /// slipped through such a proxy could only reach this box's daemon.
    pub fn start_standalone_proxy(&self, port: u16, flags: &str) -> String {
        self.exec_ok(&format!(
            "nohup dindbox proxy --ds /run/dindbox/docker.sock \
             --ls /run/dindbox/standalone-{port}.sock --listen-tcp 0.0.0.0:{port} {flags} \
             >/tmp/standalone-{port}.log 2>&1 &"
        ));
        let addr = format!("{}:{port}", self.ip());
        if poll(Duration::from_secs(20), || ping(&addr).then_some(())).is_none() {
            let log = self.exec(&format!("cat /tmp/standalone-{port}.log"));
            panic!("the standalone proxy on {addr} did not answer within 20 s:\n{log}");
        }
        addr
    }

    /// `docker inspect -f FORMAT` of the box on the outer daemon.
    pub fn state(&self, format: &str) -> String {
        self.h
            .outer(&["inspect", "-f", format, &self.name])
            .stdout
            .trim()
            .to_owned()
    }

    /// Waits for the box to exit at boot, and asserts that it failed, that
    /// its log says each of `needles`, and that dockerd was never started.
    pub fn assert_refused_at_boot(&self, needles: &[&str]) {
        let exited = poll(Duration::from_secs(60), || {
            (self.state("{{.State.Running}}") == "false").then_some(())
        });
        assert!(exited.is_some(), "the box kept running");
        assert_ne!(self.state("{{.State.ExitCode}}"), "0");
        let logs = self.h.outer(&["logs", &self.name]);
        let text = strip_ansi(&format!("{}{}", logs.stdout, logs.stderr));
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} not in the log:\n{text}");
        }
        assert!(
            !text.contains("dockerd started"),
            "dockerd was started:\n{text}"
        );
    }

    /// The image id `tag` points to, asked of the daemon directly (empty: no such tag).
    pub fn points_to(&self, tag: &str) -> String {
        self.exec(&format!(
            "{DIRECT} image inspect -f '{{{{.Id}}}}' {tag} 2>/dev/null"
        ))
        .stdout
        .trim()
        .to_owned()
    }

    /// `docker run -d busybox sh -c script`, then `docker logs -f` of it:
    /// what the CLI printed by the time the container exited.
    pub fn followed_logs(&self, script: &str) -> String {
        let id = self
            .docker_ok(&["run", "-d", "busybox", "sh", "-c", script])
            .stdout
            .trim()
            .to_owned();
        let logs = run(
            self.docker_cmd(&["logs", "-f", &id]),
            None,
            Duration::from_secs(30),
        );
        self.expect_ok(&logs);
        logs.stdout
    }

    /// Loads busybox:latest into the box through its API.
    pub fn load_busybox(&self) {
        let tar = self.h.busybox_tar.to_string_lossy().into_owned();
        let out = run(
            self.docker_cmd(&["load", "-i", &tar]),
            None,
            Duration::from_secs(120),
        );
        self.expect_ok(&out);
    }

    pub fn expect_ok(&self, out: &Out) {
        if !out.ok() {
            self.fail(&format!("command failed:\n{out}"));
        }
    }

    /// Fails the test with `msg` and the box's log.
    pub fn fail(&self, msg: &str) -> ! {
        let logs = self.h.outer(&["logs", "--tail", "80", &self.name]);
        panic!(
            "{msg}\n=== log of box {} (last 80 lines):\n{}{}",
            self.name,
            strip_ansi(&logs.stdout),
            strip_ansi(&logs.stderr)
        );
    }
}

impl Drop for DindBox<'_> {
    fn drop(&mut self) {
        let out = self.h.outer(&["rm", "-f", "-v", &self.name]);
        if !out.ok() && !out.stderr.contains("No such container") {
            eprintln!("dindbox e2e: cleanup of {} failed:\n{out}", self.name);
        }
    }
}

// ---------------------------------------------------------------- pty

/// A process on a new pseudo-terminal (its controlling terminal, 80x24), with
/// everything it prints collected.
pub struct PtyChild {
    pub child: Child,
    master: File,
    transcript: Arc<Mutex<Vec<u8>>>,
}

impl PtyChild {
    pub fn spawn(mut cmd: Command) -> PtyChild {
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup pty")))
            .stdout(Stdio::from(slave.try_clone().expect("dup pty")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a pty");
        // `cmd` holds our copies of the slave side; the child's EOF needs them closed.
        drop(cmd);
        let master = File::from(pty.master);
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let mut rd = master.try_clone().expect("dup pty master");
        let sink = transcript.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtyChild {
            child,
            master,
            transcript,
        }
    }

    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript.lock().unwrap()).into_owned()
    }

    /// Waits until the output (from byte `from` on) contains `needle`; returns
    /// the transcript length after it.
    pub fn expect(&self, from: usize, needle: &str, timeout: Duration) -> Result<usize, String> {
        poll(timeout, || {
            let t = self.transcript.lock().unwrap();
            let tail = String::from_utf8_lossy(&t[from.min(t.len())..]).into_owned();
            tail.find(needle).map(|i| from + i + needle.len())
        })
        .ok_or_else(|| {
            format!(
                "no {needle:?} within {} s; pty transcript:\n{}",
                timeout.as_secs(),
                self.transcript()
            )
        })
    }

    pub fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .expect("write to the pty");
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
