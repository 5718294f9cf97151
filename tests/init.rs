//! `dindbox init` as PID 1 of a fresh PID + mount namespace (`unshare --pid
//! --fork --mount --mount-proc`), with the fake dockerd of
//! `tests/support/fake_dockerd.rs` and a fake cgroup v2 tree. No Docker needed;
//! root is (for the namespaces and mounts). Each test owns a directory under
//! the target dir holding sockets, the ready file and the fake's records.
//!
//! The namespace gets its own tmpfs on /run before init starts, so init's
//! stale pid/socket cleanup cannot touch the host's /run; and /tmp is bound
//! onto itself, so init (which mounts a tmpfs on a /tmp that is no mount
//! point) cannot hide a checkout that lives under /tmp.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Run inside the new mount namespace before init.
const NAMESPACE_SETUP: &str = "mount -t tmpfs tmpfs /run && mount --bind /tmp /tmp";

const DINDBOX: &str = env!("CARGO_BIN_EXE_dindbox");
const FAKE_DOCKERD: &str = env!("CARGO_BIN_EXE_fake-dockerd");

/// True when the test can run; says so loudly when it cannot.
fn can_run(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "\n!!!!! SKIPPED {test}: needs root (unshare --pid --mount). NOT TESTED. !!!!!\n"
        );
        return false;
    }
    true
}

/// One init under test.
struct InitBox {
    dir: tempfile::TempDir,
    unshare: Child,
    /// init's pid as seen from here (PID 1 inside its namespace).
    init: Pid,
    started: Instant,
}

#[derive(Default)]
struct Opts<'a> {
    env: Vec<(&'a str, String)>,
    command: Vec<&'a str>,
    /// Leak these fds into init (opened without close-on-exec).
    leak_fds: Vec<i32>,
    /// Shell commands run in the namespace just before init starts.
    pre: &'a str,
    /// More files of the fake cgroup tree: (path under it, content).
    cgroup_files: Vec<(&'a str, &'a str)>,
}

impl InitBox {
    fn start(opts: Opts<'_>) -> InitBox {
        let dir = tempfile::Builder::new()
            .prefix("init-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let p = dir.path();
        // A fake cgroup v2 root: the files the kernel would provide.
        std::fs::create_dir_all(p.join("cgroup/init")).unwrap();
        std::fs::write(p.join("cgroup/cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(p.join("cgroup/cgroup.procs"), "1\n").unwrap();
        std::fs::write(p.join("cgroup/cgroup.subtree_control"), "").unwrap();
        std::fs::write(p.join("cgroup/init/cgroup.procs"), "").unwrap();
        for (file, content) in &opts.cgroup_files {
            let path = p.join("cgroup").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        std::fs::create_dir(p.join("fake")).unwrap();

        let log = std::fs::File::create(p.join("init.log")).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("{NAMESPACE_SETUP} && {} exec \"$@\"", opts.pre))
        .args(["sh", DINDBOX, "init"])
        .args(&opts.command)
        .env("DINDBOX_DOCKERD", FAKE_DOCKERD)
        .env("DINDBOX_DOCKERD_SOCKET", p.join("dockerd.sock"))
        .env("DINDBOX_SOCKET", p.join("docker.sock"))
        .env("DINDBOX_READY_FILE", p.join("ready"))
        .env("DINDBOX_CGROUP_ROOT", p.join("cgroup"))
        .env("DINDBOX_READY_TIMEOUT", "10")
        .env("FAKE_DOCKERD_DIR", p.join("fake"))
        .env_remove("PORT")
        .env_remove("LOG")
        .env_remove("DOCKERD_ARGS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        // Paths prepared before the fork: the hook must not allocate.
        let leaks: Vec<(std::ffi::CString, i32)> = opts
            .leak_fds
            .iter()
            .map(|fd| {
                let path = p.join(format!("leak-{fd}"));
                std::fs::write(&path, "").unwrap();
                (
                    std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).unwrap(),
                    *fd,
                )
            })
            .collect();
        // SAFETY: the hook runs between fork and exec and only makes
        // async-signal-safe calls (open, dup2, close) on data prepared before
        // the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for (path, target) in &leaks {
                    // No O_CLOEXEC, and dup2 clears it anyway: a leaked fd.
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                    if fd < 0 || (fd != *target && libc::dup2(fd, *target) < 0) {
                        return Err(std::io::Error::last_os_error());
                    }
                    if fd != *target {
                        libc::close(fd);
                    }
                }
                Ok(())
            });
        }
        let unshare = cmd.spawn().expect("spawn unshare");
        let init = wait_for(Duration::from_secs(5), || child_of(unshare.id()))
            .expect("unshare forked no child");
        InitBox {
            dir,
            unshare,
            init,
            started: Instant::now(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("init.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        if wait_for(Duration::from_secs(15), || {
            self.path("ready").exists().then_some(())
        })
        .is_none()
        {
            panic!("init not ready after 15s; log:\n{}", self.log());
        }
    }

    fn signal(&self, sig: Signal) {
        kill(self.init, sig).unwrap();
    }

    /// init's exit code and how long it took from `since`.
    fn wait_exit(&mut self, limit: Duration) -> (i32, Duration) {
        let since = Instant::now();
        loop {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                let code = status
                    .code()
                    .unwrap_or_else(|| panic!("unshare: {status}; log:\n{}", self.log()));
                return (code, since.elapsed());
            }
            if since.elapsed() > limit {
                panic!("init still running after {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn starts(&self) -> usize {
        std::fs::read_to_string(self.path("fake/starts")).map_or(0, |s| s.lines().count())
    }
}

impl Drop for InitBox {
    fn drop(&mut self) {
        if self.unshare.try_wait().ok().flatten().is_none() {
            // SIGKILL to PID 1 of the namespace ends every process in it.
            let _ = kill(self.init, Signal::SIGKILL);
            let _ = self.unshare.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- init log ({:?}) ---\n{}",
                self.started.elapsed(),
                self.log()
            );
        }
    }
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn child_of(parent: u32) -> Option<Pid> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Pid::from_raw)
}

/// The targets of the open fds of `pid`.
fn fd_targets(pid: Pid) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .collect()
}

/// `GET /_ping` over a unix socket; the status line.
fn ping(socket: &Path) -> String {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return "connect failed".into();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_string()
}

#[test]
fn leaked_fds_are_closed_in_init_and_in_dockerd() {
    if !can_run("leaked_fds_are_closed_in_init_and_in_dockerd") {
        return;
    }
    let b = InitBox::start(Opts {
        leak_fds: vec![5, 7],
        ..Opts::default()
    });
    b.wait_ready();
    let leak = |fds: &[String]| {
        fds.iter()
            .filter(|t| t.contains("/leak-"))
            .cloned()
            .collect::<Vec<_>>()
    };
    // The leak is real: unshare (init's parent) still holds both.
    assert_eq!(
        leak(&fd_targets(Pid::from_raw(b.unshare.id() as i32))).len(),
        2
    );
    assert_eq!(
        leak(&fd_targets(b.init)),
        Vec::<String>::new(),
        "init kept leaked fds"
    );
    let fake = std::fs::read_to_string(b.path("fake/fds-1")).unwrap();
    assert!(
        !fake.contains("/leak-"),
        "dockerd inherited leaked fds:\n{fake}"
    );
}

#[test]
fn orphans_are_reaped() {
    if !can_run("orphans_are_reaped") {
        return;
    }
    // 200 orphans re-parented to init; after they exit, no zombie may remain.
    let script = "for i in $(seq 200); do (sleep 0.1 &); done; sleep 1.5; \
                  z=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z '); \
                  echo zombies=$z; exit $z";
    let mut b = InitBox::start(Opts {
        command: vec!["sh", "-c", script],
        ..Opts::default()
    });
    let (code, _) = b.wait_exit(Duration::from_secs(20));
    assert_eq!(
        code,
        0,
        "zombies left (exit code = count); log:\n{}",
        b.log()
    );
    assert!(b.log().contains("zombies=0"));
}

#[test]
fn command_exit_code_is_init_exit_code() {
    if !can_run("command_exit_code_is_init_exit_code") {
        return;
    }
    let script = "test \"$DOCKER_HOST\" = \"unix://$DINDBOX_SOCKET\" || exit 99; exit 3";
    let mut b = InitBox::start(Opts {
        command: vec!["sh", "-c", script],
        ..Opts::default()
    });
    let (code, _) = b.wait_exit(Duration::from_secs(20));
    assert_eq!(code, 3, "log:\n{}", b.log());
    assert!(
        b.log().contains("dockerd stopped"),
        "dockerd was not stopped gracefully"
    );
    assert!(!b.path("ready").exists(), "ready file left behind");
}

#[test]
fn sigterm_exits_0_when_dockerd_stops_in_time() {
    if !can_run("sigterm_exits_0_when_dockerd_stops_in_time") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![("DINDBOX_STOP_GRACE", "2".into())],
        ..Opts::default()
    });
    b.wait_ready();
    assert_eq!(
        ping(&b.path("docker.sock")),
        "HTTP/1.1 200 OK",
        "proxy does not answer"
    );
    b.signal(Signal::SIGTERM);
    let (code, took) = b.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 0, "log:\n{}", b.log());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(!b.path("ready").exists(), "ready file left behind");
}

#[test]
fn sigterm_exits_143_when_dockerd_ignores_it() {
    if !can_run("sigterm_exits_143_when_dockerd_ignores_it") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![
            ("DINDBOX_STOP_GRACE", "1".into()),
            ("FAKE_DOCKERD_IGNORE_TERM", "1".into()),
        ],
        ..Opts::default()
    });
    b.wait_ready();
    b.signal(Signal::SIGTERM);
    let (code, took) = b.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 143, "log:\n{}", b.log());
    assert!(
        took >= Duration::from_secs(1),
        "did not wait for the grace: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} with a 1s grace"
    );
    assert!(b.log().contains("did not stop within"), "log:\n{}", b.log());
}

#[test]
fn crashed_dockerd_is_restarted() {
    if !can_run("crashed_dockerd_is_restarted") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![("FAKE_DOCKERD_CRASH_AFTER_MS", "300".into())],
        ..Opts::default()
    });
    b.wait_ready();
    let restarted = wait_for(Duration::from_secs(10), || {
        b.log().contains("dockerd restarted").then_some(())
    });
    assert!(restarted.is_some(), "no restart; log:\n{}", b.log());
    let log = b.log();
    assert!(
        log.contains("exited with code 42 unexpectedly"),
        "cause not logged:\n{log}"
    );
    assert_eq!(b.starts(), 2);
    assert_eq!(
        ping(&b.path("docker.sock")),
        "HTTP/1.1 200 OK",
        "proxy does not reach the new dockerd"
    );
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
}

#[test]
fn ready_file_appears_only_after_ping_answered() {
    if !can_run("ready_file_appears_only_after_ping_answered") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![("FAKE_DOCKERD_DELAY_MS", "700".into())],
        ..Opts::default()
    });
    // Poll fast: the moment the ready file exists, the fake must have answered.
    wait_for(Duration::from_secs(15), || {
        b.path("ready").exists().then_some(())
    })
    .expect("never ready");
    assert!(
        b.path("fake/pinged").exists(),
        "ready before dockerd answered /_ping"
    );
    assert!(
        b.log().contains(" ready "),
        "no `ready` log line:\n{}",
        b.log()
    );
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
}

#[test]
fn dockerd_that_never_answers_is_a_clear_fatal_error() {
    if !can_run("dockerd_that_never_answers_is_a_clear_fatal_error") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![
            ("FAKE_DOCKERD_DELAY_MS", "60000".into()),
            ("DINDBOX_READY_TIMEOUT", "1".into()),
        ],
        ..Opts::default()
    });
    let (code, _) = b.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 1);
    let log = b.log();
    assert!(log.contains("did not answer GET /_ping"), "log:\n{log}");
    assert!(!b.path("ready").exists());
}

#[test]
fn dockerd_that_exits_early_is_a_clear_fatal_error() {
    if !can_run("dockerd_that_exits_early_is_a_clear_fatal_error") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![
            ("DINDBOX_DOCKERD", "false".into()),
            ("DINDBOX_DOCKERD_START_ATTEMPTS", "1".into()),
        ],
        ..Opts::default()
    });
    let (code, took) = b.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 1);
    assert!(
        b.log()
            .contains("dockerd exited with code 1 before it was ready, on each of 1 attempt(s)"),
        "log:\n{}",
        b.log()
    );
    assert!(took < Duration::from_secs(3), "one attempt took {took:?}");
}

/// A dockerd that dies before it was ever ready (containerd's start-up
/// timeout on a loaded host) is started again, after cleaning what it left.
#[test]
fn dockerd_that_dies_once_before_ready_is_started_again() {
    if !can_run("dockerd_that_dies_once_before_ready_is_started_again") {
        return;
    }
    // The failing start leaves its pid file in the namespace's own /run, as a
    // dockerd killed by its own fatal error does.
    let mut b = InitBox::start(Opts {
        env: vec![
            ("FAKE_DOCKERD_FAIL_STARTS", "1".into()),
            ("FAKE_DOCKERD_PIDFILE", "/run/docker.pid".into()),
        ],
        ..Opts::default()
    });
    b.wait_ready();
    assert_eq!(b.starts(), 2, "log:\n{}", b.log());
    let seen =
        |n: usize| std::fs::read_to_string(b.path(&format!("fake/stale-pidfile-{n}"))).unwrap();
    assert_eq!(seen(1), "no");
    assert_eq!(
        seen(2),
        "no",
        "the second start found the first one's pid file"
    );
    assert!(
        b.log().contains("removed what the dead dockerd left"),
        "log:\n{}",
        b.log()
    );
    let log = b.log();
    assert!(
        log.contains(
            "dockerd exited with code 1 before it was ready (start attempt 1 of 3); \
             starting it again in 1s"
        ),
        "log:\n{log}"
    );
    assert!(
        log.contains("dockerd is up on start attempt 2 of 3"),
        "log:\n{log}"
    );
    assert_eq!(
        ping(&b.path("docker.sock")),
        "HTTP/1.1 200 OK",
        "proxy does not reach the second dockerd"
    );
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
}

/// One that always dies: fatal after the attempts, with its last lines.
#[test]
fn dockerd_that_always_dies_before_ready_is_fatal_after_the_attempts() {
    if !can_run("dockerd_that_always_dies_before_ready_is_fatal_after_the_attempts") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![("FAKE_DOCKERD_FAIL_STARTS", "all".into())],
        ..Opts::default()
    });
    // 3 attempts, 1 s + 2 s apart.
    let (code, took) = b.wait_exit(Duration::from_secs(20));
    assert_eq!(code, 1, "log:\n{}", b.log());
    assert_eq!(b.starts(), 3, "log:\n{}", b.log());
    assert!(took >= Duration::from_secs(3), "no backoff: {took:?}");
    let log = b.log();
    for attempt in 1..=2 {
        assert!(
            log.contains(&format!(
                "(start attempt {attempt} of 3); starting it again"
            )),
            "log:\n{log}"
        );
    }
    let fatal = log
        .lines()
        .position(|l| {
            l.contains(
                "fatal: dockerd exited with code 1 before it was ready, on each of 3 attempt(s)",
            )
        })
        .unwrap_or_else(|| panic!("no fatal line; log:\n{log}"));
    // The fatal message carries the last attempt's output.
    let rest = log.lines().skip(fatal).collect::<Vec<_>>().join("\n");
    assert!(
        rest.contains("timeout waiting for containerd to start (fake start 3)"),
        "log:\n{log}"
    );
    assert!(!b.path("ready").exists());
}

#[test]
fn sighup_goes_to_dockerd_in_daemon_mode() {
    if !can_run("sighup_goes_to_dockerd_in_daemon_mode") {
        return;
    }
    let mut b = InitBox::start(Opts::default());
    b.wait_ready();
    b.signal(Signal::SIGHUP);
    let got = wait_for(Duration::from_secs(5), || {
        b.path("fake/sighup").exists().then_some(())
    });
    assert!(
        got.is_some(),
        "dockerd did not get SIGHUP; log:\n{}",
        b.log()
    );
    assert!(
        b.unshare.try_wait().unwrap().is_none(),
        "SIGHUP stopped the box"
    );
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
}

#[test]
fn signals_go_to_the_command_group_in_command_mode() {
    if !can_run("signals_go_to_the_command_group_in_command_mode") {
        return;
    }
    let script = "trap 'exit 7' USR1; while :; do sleep 0.05; done";
    let mut b = InitBox::start(Opts {
        command: vec!["sh", "-c", script],
        ..Opts::default()
    });
    b.wait_ready();
    let started = wait_for(Duration::from_secs(5), || {
        b.log().contains("command started").then_some(())
    });
    assert!(started.is_some());
    std::thread::sleep(Duration::from_millis(200));
    b.signal(Signal::SIGUSR1);
    assert_eq!(
        b.wait_exit(Duration::from_secs(10)).0,
        7,
        "log:\n{}",
        b.log()
    );
}

/// Shell mode: PORT unset and stdin a terminal (a pty from `script`): a login
/// shell in its own process group that owns the terminal's foreground.
#[test]
fn shell_mode_owns_the_terminal_and_its_exit_code_is_init_exit_code() {
    if !can_run("shell_mode_owns_the_terminal_and_its_exit_code_is_init_exit_code") {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "\n!!!!! SKIPPED shell mode test: `script` (util-linux) missing. NOT TESTED. !!!!!\n"
        );
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("tty-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("cgroup/init")).unwrap();
    for (f, v) in [
        ("cgroup.controllers", "pids"),
        ("cgroup.procs", ""),
        ("cgroup.subtree_control", ""),
        ("init/cgroup.procs", ""),
    ] {
        std::fs::write(p.join("cgroup").join(f), v).unwrap();
    }
    let inner = format!(
        "unshare --pid --fork --mount --mount-proc -- sh -c '{NAMESPACE_SETUP} && exec \"$@\"' sh {DINDBOX} init"
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("NO_COLOR", "1")
        .env_remove("PORT")
        .env("DINDBOX_DOCKERD", FAKE_DOCKERD)
        .env("DINDBOX_DOCKERD_SOCKET", p.join("dockerd.sock"))
        .env("DINDBOX_SOCKET", p.join("docker.sock"))
        .env("DINDBOX_READY_FILE", p.join("ready"))
        .env("DINDBOX_CGROUP_ROOT", p.join("cgroup"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(15), || {
        p.join("ready").exists().then_some(())
    })
    .expect("never ready");
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo fg=$(ps -o pgid= -p $$ | tr -d ' '):$(ps -o tpgid= -p $$ | tr -d ' ') host=$DOCKER_HOST; exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let fg = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("fg="))
        .expect("no fg= line")
        .to_string();
    let (pgid, tpgid) = fg.split_once(':').unwrap();
    let tpgid = tpgid.split_whitespace().next().unwrap();
    assert_eq!(
        pgid, tpgid,
        "the shell's group is not the terminal's foreground: {stdout}"
    );
    assert!(
        stdout.contains(&format!("host=unix://{}", p.join("docker.sock").display())),
        "{stdout}"
    );
}

#[test]
fn log_sends_dockerd_output_to_a_file() {
    if !can_run("log_sends_dockerd_output_to_a_file") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("logs/dockerd.log");
    let mut b = InitBox::start(Opts {
        env: vec![("LOG", file.display().to_string())],
        ..Opts::default()
    });
    b.wait_ready();
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
    let dockerd_log = std::fs::read_to_string(&file).unwrap();
    assert!(
        dockerd_log.contains("fake-dockerd: start 1 listening"),
        "{dockerd_log}"
    );
    assert!(
        !b.log().contains("fake-dockerd:"),
        "dockerd output also in our log:\n{}",
        b.log()
    );
}

/// cgroup v1 for real, in the private mount namespace only: with the cgroup
/// root read-only, init mounts a tmpfs and every hierarchy of /proc/1/cgroup.
#[test]
fn cgroup_v1_hierarchies_are_mounted_over_a_read_only_root() {
    if !can_run("cgroup_v1_hierarchies_are_mounted_over_a_read_only_root") {
        return;
    }
    let v1 = std::fs::read_to_string("/proc/self/cgroup")
        .is_ok_and(|c| c.lines().any(|l| !l.starts_with("0::")));
    if !v1 {
        eprintln!("\n!!!!! SKIPPED cgroup v1 test: this host has no cgroup v1 hierarchies. NOT TESTED. !!!!!\n");
        return;
    }
    let check = "grep ' /sys/fs/cgroup rw.* - tmpfs ' /proc/self/mountinfo >/dev/null || exit 10; \
                 for h in $(cut -d: -f2 /proc/1/cgroup); do \
                   [ -n \"$h\" ] || continue; d=${h#name=}; \
                   grep \" /sys/fs/cgroup/$d rw.* - cgroup \" /proc/self/mountinfo >/dev/null || exit 11; \
                 done";
    let mut b = InitBox::start(Opts {
        env: vec![("DINDBOX_CGROUP_ROOT", "/sys/fs/cgroup".into())],
        pre: "mount -o remount,bind,ro /sys/fs/cgroup &&",
        command: vec!["sh", "-c", check],
        ..Opts::default()
    });
    assert_eq!(
        b.wait_exit(Duration::from_secs(20)).0,
        0,
        "log:\n{}",
        b.log()
    );
    assert!(b.log().contains("cgroup v1: mounted"), "log:\n{}", b.log());
}

/// The box's budget on the fake v2 tree: `/dindbox` next to `/init` gets
/// `memory.max` and delegates its controllers, and dockerd starts with it as
/// its `--cgroup-parent`.
#[test]
fn memory_limit_creates_the_budget_parent_and_starts_dockerd_under_it() {
    if !can_run("memory_limit_creates_the_budget_parent_and_starts_dockerd_under_it") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![("DINDBOX_MEMORY_LIMIT", "64m".into())],
        // What the kernel shows in a new cgroup once the root delegates
        // (RealFs writes into existing files only, as on cgroupfs).
        cgroup_files: vec![
            ("dindbox/cgroup.controllers", "cpu memory pids\n"),
            ("dindbox/cgroup.subtree_control", ""),
            ("dindbox/cgroup.procs", ""),
            ("dindbox/memory.max", "max\n"),
            ("dindbox/pids.max", "max\n"),
        ],
        ..Opts::default()
    });
    b.wait_ready();
    let read = |rel: &str| std::fs::read_to_string(b.path(rel)).unwrap();
    assert_eq!(read("cgroup/dindbox/memory.max").trim(), "67108864");
    assert_eq!(read("cgroup/dindbox/pids.max").trim(), "max");
    assert_eq!(
        read("cgroup/dindbox/cgroup.subtree_control").trim(),
        "+cpu +memory +pids"
    );
    let args = read("fake/args-1");
    assert!(
        args.lines().any(|a| a == "--cgroup-parent=/dindbox"),
        "dockerd args:\n{args}"
    );
    assert!(
        b.log()
            .contains("budget: containers go under the cgroup /dindbox (memory limit 67108864 bytes, pids limit none)"),
        "log:\n{}",
        b.log()
    );
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
}

/// With a budget, a `--cgroup-parent` of the user's in DOCKERD_ARGS would
/// fight init's: refused before anything starts, saying what to set instead.
#[test]
fn memory_limit_with_a_dockerd_cgroup_parent_is_a_clear_fatal_error() {
    if !can_run("memory_limit_with_a_dockerd_cgroup_parent_is_a_clear_fatal_error") {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![
            ("DINDBOX_MEMORY_LIMIT", "64m".into()),
            ("DOCKERD_ARGS", "--debug --cgroup-parent=/mine".into()),
        ],
        ..Opts::default()
    });
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 1);
    let log = b.log();
    assert!(log.contains("--cgroup-parent=/mine"), "log:\n{log}");
    assert!(log.contains("DINDBOX_CGROUP_PARENT"), "log:\n{log}");
    assert_eq!(b.starts(), 0, "dockerd started anyway");
}

/// `GET target` over a unix socket; the answer's head.
fn head(socket: &Path, target: &str) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

/// Issue 12, the version window: a dockerd newer than the policy knows is
/// named in one warning at start, and served at the policy's newest.
#[test]
fn a_dockerd_newer_than_the_policy_is_warned_about_once_and_served_at_the_policys_newest() {
    if !can_run(
        "a_dockerd_newer_than_the_policy_is_warned_about_once_and_served_at_the_policys_newest",
    ) {
        return;
    }
    let mut b = InitBox::start(Opts {
        env: vec![("FAKE_DOCKERD_API_VERSION", "1.56".into())],
        ..Opts::default()
    });
    b.wait_ready();
    for _ in 0..3 {
        let head = head(&b.path("docker.sock"), "/_ping");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("\r\napi-version: 1.55"),
            "{head}"
        );
    }
    let head = head(&b.path("docker.sock"), "/v1.56/_ping");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let log = b.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Engine API"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning about the version:\n{log}");
    assert!(
        warnings[0].contains("Engine API 1.56") && warnings[0].contains("serves up to 1.55"),
        "{log}"
    );
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).0, 0);
}

/// Without CAP_SYS_ADMIN (a box without --privileged), init runs dockerd
/// under rootlesskit; an image without it fails the boot at once, naming what
/// to install, instead of failing its first mount (issue 15).
#[test]
fn without_cap_sys_admin_init_wants_rootlesskit() {
    if !can_run("without_cap_sys_admin_init_wants_rootlesskit") {
        return;
    }
    // Found on our PATH: the child's PATH names nothing, so that no rootlesskit is found.
    let setpriv = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("setpriv"))
        .find(|p| p.is_file())
        .expect("setpriv (util-linux) on PATH");
    let out = Command::new(setpriv)
        .args([
            "--bounding-set=-sys_admin",
            "--inh-caps=-sys_admin",
            "--",
            DINDBOX,
            "init",
        ])
        .env("PATH", "/nonexistent")
        .env("DINDBOX_DOCKERD", FAKE_DOCKERD)
        .env("DOCKER_TLS_CERTDIR", "")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "init booted without rootlesskit:\n{log}"
    );
    assert!(
        log.contains("box without --privileged") && log.contains("rootlesskit is not in the image"),
        "init did not name rootlesskit:\n{log}"
    );
    // The host's root without CAP_SYS_ADMIN is not the target: init says so.
    assert!(
        log.contains("the box's root is the host's root"),
        "no warning about the host's root:\n{log}"
    );
}

/// rootlesskit's child in a delegated box (`dindbox userns-dockerd DOCKERD
/// ARGS`): dockerd must not see rootlesskit's variables, or it insists on
/// rootless mode; everything else stays.
#[test]
fn userns_dockerd_runs_its_command_without_rootlesskits_variables() {
    let out = Command::new(DINDBOX)
        .args(["userns-dockerd", "env"])
        .env("ROOTLESSKIT_STATE_DIR", "/run/dindbox/rootlesskit")
        .env("ROOTLESSKIT_PARENT_EUID", "0")
        .env("DINDBOX_TEST_KEPT", "yes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(!env.contains("ROOTLESSKIT_"), "{env}");
    assert!(env.lines().any(|l| l == "DINDBOX_TEST_KEPT=yes"), "{env}");

    let out = Command::new(DINDBOX)
        .args(["userns-dockerd", "/nonexistent/dockerd", "--debug"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot run /nonexistent/dockerd: No such file"),
        "{err}"
    );
}

/// dindbox run as `dindbox-docker-proxy` is dockerd's userland proxy in a
/// delegated box: a failure goes to dockerd the way docker-proxy reports it,
/// "1\n" and the error on fd 3, so `docker run -p` shows it.
#[test]
fn the_docker_proxy_name_reports_failures_on_fd_3() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("dindbox-docker-proxy");
    std::os::unix::fs::symlink(DINDBOX, &link).unwrap();
    let pipe = dir.path().join("fd3");
    // No -host-ip; then no rootlesskit API socket at all.
    for (args, want) in [
        ("-proto tcp -host-port 8080", "no -host-ip"),
        (
            "-proto tcp -host-ip 0.0.0.0 -host-port 8080",
            "cannot forward tcp 0.0.0.0:8080 into the box through rootlesskit's API",
        ),
    ] {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" {args} 3>\"$1\""))
            .arg(&link)
            .arg(&pipe)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success());
        let said = std::fs::read_to_string(&pipe).unwrap();
        assert!(said.starts_with("1\ndindbox-docker-proxy: "), "{said:?}");
        assert!(said.contains(want), "{said:?}");
    }
}
