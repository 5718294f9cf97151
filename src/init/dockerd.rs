//! The inner dockerd: arguments, spawning, readiness (`GET /_ping` on its
//! private socket), supervision with restart backoff, and graceful stop.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::reaper::{describe, ExitWatch, Reaper};
use super::sys;
use super::{drain, mounts, userns, Config};
use crate::engine::{self, Engine};

#[derive(Debug, thiserror::Error)]
pub enum DockerdError {
    #[error("failed to start dockerd ({program}): {err}")]
    Spawn { program: String, err: io::Error },
    #[error("failed to open the dockerd log {path}: {err}")]
    LogFile { path: PathBuf, err: io::Error },
    #[error("dockerd {} before it was ready (see its output above)", describe(*.0))]
    ExitedEarly(WaitStatus),
    #[error(
        "dockerd {} before it was ready, on each of {attempts} attempt(s) \
         (DINDBOX_DOCKERD_START_ATTEMPTS); its last output lines:{}",
        describe(*.status),
        fmt_tail(.tail)
    )]
    StartFailed {
        attempts: u32,
        status: WaitStatus,
        tail: Vec<String>,
    },
    #[error(
        "dockerd did not answer GET /_ping on {socket} within {}s; last error: {last} \
         (raise DINDBOX_READY_TIMEOUT if it is just slow)",
        timeout.as_secs()
    )]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        last: PingFailure,
    },
    #[error("stale-file cleanup before the restart failed: {0}")]
    Cleanup(#[from] mounts::MountError),
}

/// Why the last `GET /_ping` got no 200.
#[derive(Debug, thiserror::Error)]
pub enum PingFailure {
    #[error("no answer within {}s", PING_TIMEOUT.as_secs())]
    Timeout,
    /// Shown with its causes (the socket's error says why).
    #[error("{}", .0.chain())]
    Failed(Box<engine::Error>),
}

/// How long one `GET /_ping` may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `LOG` is neither `file` nor an absolute path.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("LOG={0:?}: expected `file` or an absolute path")]
pub struct BadLogTarget(pub String);

/// Where dockerd's stdout and stderr go (wrapdocker's `LOG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Line by line into our log, under the `dockerd` field.
    Ours,
    /// Appended to a file.
    File(PathBuf),
}

/// `LOG=file` means /var/log/docker.log, `LOG=/abs/path` that file, unset or
/// empty our log.
pub fn parse_log(value: Option<&str>) -> Result<LogTarget, BadLogTarget> {
    match value.map(str::trim) {
        None | Some("") => Ok(LogTarget::Ours),
        Some("file") => Ok(LogTarget::File("/var/log/docker.log".into())),
        Some(path) if path.starts_with('/') => Ok(LogTarget::File(path.into())),
        Some(other) => Err(BadLogTarget(other.to_string())),
    }
}

/// dockerd's arguments: the private socket, then `DOCKERD_ARGS` (split on
/// whitespace, like wrapdocker's `$DOCKER_DAEMON_ARGS`), then the trailing
/// arguments given to `dindbox init`.
pub fn build_args(socket: &Path, env_args: Option<&str>, trailing: &[String]) -> Vec<String> {
    let mut args = vec![format!("--host=unix://{}", socket.display())];
    args.extend(
        env_args
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from),
    );
    args.extend(trailing.iter().cloned());
    args
}

/// The `--cgroup-parent` flag among dockerd's arguments, as written
/// (`--cgroup-parent=/x`, or `--cgroup-parent /x` in two arguments).
pub fn cgroup_parent_flag(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg.starts_with("--cgroup-parent=") {
            Some(arg.clone())
        } else if arg == "--cgroup-parent" {
            Some(match args.get(i + 1) {
                Some(value) => format!("{arg} {value}"),
                None => arg.clone(),
            })
        } else {
            None
        }
    })
}

/// Starts dockerd with `path` as the default parent of every container and
/// build step (BuildKit's too, which the proxy cannot see into).
pub fn add_cgroup_parent(args: &mut Vec<String>, path: &str) {
    args.push(format!("--cgroup-parent={path}"));
}

/// A running dockerd.
pub struct Dockerd {
    pub pid: Pid,
    exit: ExitWatch,
    /// Its last output lines (when they come through our log).
    output: Arc<OutputTail>,
}

/// The last lines of dockerd's output, for the message when it cannot start.
#[derive(Debug, Default)]
pub struct OutputTail {
    lines: Mutex<VecDeque<String>>,
    /// Pipes still being read.
    open: AtomicUsize,
}

impl OutputTail {
    /// How many lines are kept.
    pub const LINES: usize = 12;

    fn push(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == Self::LINES {
            lines.pop_front();
        }
        lines.push_back(line.to_string());
    }

    fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

fn fmt_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return " (none)".into();
    }
    tail.iter().map(|l| format!("\n    {l}")).collect()
}

impl Dockerd {
    /// Spawns dockerd; `current` holds its pid (for signal forwarding and the
    /// final kill) until it has been reaped.
    pub fn spawn(
        cfg: &Config,
        reaper: &Reaper,
        current: &AtomicI32,
    ) -> Result<Dockerd, DockerdError> {
        let mut cmd = match cfg.launcher.split_first() {
            None => Command::new(&cfg.dockerd),
            Some((launcher, flags)) => {
                // A launcher left by the previous dockerd would refuse its state dir.
                userns::clear_state().map_err(|err| DockerdError::Spawn {
                    program: launcher.clone(),
                    err,
                })?;
                let mut cmd = Command::new(launcher);
                cmd.args(flags).arg(&cfg.dockerd);
                cmd
            }
        };
        cmd.args(&cfg.dockerd_args).stdin(Stdio::null());
        // AppArmor is enabled in dockerd/containerd only with this (moby hack/dind).
        if std::env::var_os("container").is_none() {
            cmd.env("container", "docker");
        }
        cmd.envs(cfg.dockerd_env.iter().map(|(k, v)| (k, v)));
        if let Some(prefix) = &cfg.dockerd_path_prefix {
            let path = super::userns::path_env();
            cmd.env("PATH", format!("{}:{path}", prefix.display()));
        }
        match &cfg.log {
            LogTarget::Ours => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            LogTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|f| Ok((f.try_clone()?, f)))
                    .map_err(|err| DockerdError::LogFile {
                        path: path.clone(),
                        err,
                    })?;
                cmd.stdout(file.0).stderr(file.1);
            }
        }
        sys::set_child_setup(&mut cmd, cfg.child_setup(false));
        let program = cfg.dockerd.display().to_string();
        let (pid, exit, mut child) = reaper
            .spawn(&mut cmd)
            .map_err(|err| DockerdError::Spawn { program, err })?;
        current.store(pid.as_raw(), Ordering::SeqCst);
        let output = Arc::new(OutputTail::default());
        if let Some(out) = child.stdout.take() {
            forward_lines(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, output.clone());
        }
        tracing::info!(%pid, launcher = ?cfg.launcher, args = ?cfg.dockerd_args, "dockerd started");
        Ok(Dockerd { pid, exit, output })
    }

    /// The last lines dockerd wrote, once it has exited: from our log's copy
    /// (waiting up to a second for its pipes to drain) or from the log file.
    async fn last_output(&self, log: &LogTarget) -> Vec<String> {
        match log {
            LogTarget::Ours => {
                let deadline = Instant::now() + Duration::from_secs(1);
                while self.output.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    sleep(Duration::from_millis(20)).await;
                }
                self.output.lines()
            }
            LogTarget::File(path) => std::fs::read(path)
                .map(|bytes| {
                    let text = String::from_utf8_lossy(&bytes);
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(OutputTail::LINES);
                    lines[from..].iter().map(|l| l.to_string()).collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Polls `GET /_ping` until it answers 200, dockerd exits, or `limit` passes.
    pub async fn wait_ready(&mut self, socket: &Path, limit: Duration) -> Result<(), DockerdError> {
        let deadline = Instant::now() + limit;
        let engine = Engine::new(socket);
        loop {
            let last = tokio::select! {
                status = &mut self.exit => {
                    return Err(DockerdError::ExitedEarly(status.unwrap_or(WaitStatus::StillAlive)));
                }
                answer = timeout(PING_TIMEOUT, engine.ping()) => match answer {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(err)) => PingFailure::Failed(Box::new(err)),
                    Err(_) => PingFailure::Timeout,
                },
            };
            if Instant::now() >= deadline {
                return Err(DockerdError::NotReady {
                    socket: socket.into(),
                    timeout: limit,
                    last,
                });
            }
            tokio::select! {
                status = &mut self.exit => {
                    return Err(DockerdError::ExitedEarly(status.unwrap_or(WaitStatus::StillAlive)));
                }
                _ = sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Stops the containers (see [`drain`]), then SIGTERM, all within
    /// `grace`. True if dockerd exited in time; otherwise it is SIGKILLed (and
    /// reaped later by the reaper).
    pub async fn stop(mut self, socket: &Path, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let containers = drain::stop_containers(socket, drain::container_timeout(grace));
        let _ = timeout(grace, containers).await;
        signal(self.pid, Signal::SIGTERM);
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            &mut self.exit,
        )
        .await
        {
            Ok(status) => {
                if let Ok(status) = status {
                    tracing::info!(status = %describe(status), "dockerd stopped");
                }
                true
            }
            Err(_) => {
                tracing::warn!(
                    "dockerd did not stop within {}s; killing it",
                    grace.as_secs_f32()
                );
                signal(self.pid, Signal::SIGKILL);
                false
            }
        }
    }
}

/// Sends `sig` to `pid`, logging (not failing) if it is already gone.
pub fn signal(pid: Pid, sig: Signal) {
    if let Err(err) = kill(pid, sig) {
        tracing::debug!(%pid, signal = %sig, error = %err, "kill failed");
    }
}

/// Copies dockerd's output into our log, one event per line, at the level
/// dockerd gave the line, and keeps the last lines in `tail`.
fn forward_lines(pipe: impl Read + Send + 'static, tail: Arc<OutputTail>) {
    tail.open.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("dockerd-log".into())
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end();
                tail.push(line);
                match level_of(line) {
                    tracing::Level::ERROR => tracing::error!(target: "dockerd", dockerd = %line),
                    tracing::Level::WARN => tracing::warn!(target: "dockerd", dockerd = %line),
                    tracing::Level::DEBUG => tracing::debug!(target: "dockerd", dockerd = %line),
                    _ => tracing::info!(target: "dockerd", dockerd = %line),
                }
                buf.clear();
            }
            tail.open.fetch_sub(1, Ordering::SeqCst);
        })
        .expect("spawn dockerd log thread");
}

/// The level of a logrus line (`time=... level=warning msg=...`).
fn level_of(line: &str) -> tracing::Level {
    match line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("level="))
    {
        Some("error" | "fatal" | "panic") => tracing::Level::ERROR,
        Some("warning" | "warn") => tracing::Level::WARN,
        Some("debug" | "trace") => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    }
}

/// Restart delays: 0.5 s doubling to 30 s; back to 0.5 s once dockerd has
/// stayed up for a minute.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);
    pub const STABLE: Duration = Duration::from_secs(60);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How the first start ended.
pub enum FirstStart {
    /// dockerd answers `GET /_ping`.
    Ready(Dockerd),
    /// Shutdown began first; `clean`: a dockerd that was starting stopped in time.
    ShutDown { clean: bool },
}

/// The pause before start attempt `attempt + 1`: 1 s, 2 s, 4 s, ... up to 30 s.
pub fn start_retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// Starts dockerd for the first time and waits until it answers. A dockerd
/// that dies before it ever answered (containerd's start-up timeout on a
/// loaded host, a transient mount or iptables error) is started again, up to
/// `cfg.start_attempts` times in all, after a growing pause and the same
/// stale-file cleanup as a restart; only then is it fatal, with its last
/// output lines. A dockerd that runs but never answers within
/// `cfg.ready_timeout` is fatal at once (it is kept running for the caller
/// to kill, as `current` still names it), as is one that cannot be spawned.
pub async fn start(
    cfg: &Config,
    reaper: &Reaper,
    current: &AtomicI32,
    shutdown: &CancellationToken,
) -> Result<FirstStart, DockerdError> {
    let attempts = cfg.start_attempts.max(1);
    let mut attempt = 1;
    loop {
        if attempt > 1 {
            let removed = remove_stale_files(&cfg.dockerd_socket)?;
            if !removed.is_empty() {
                tracing::info!(?removed, "removed what the dead dockerd left");
            }
        }
        let mut dockerd = Dockerd::spawn(cfg, reaper, current)?;
        let ready = tokio::select! {
            ready = dockerd.wait_ready(&cfg.dockerd_socket, cfg.ready_timeout) => ready,
            _ = shutdown.cancelled() => {
                let clean = dockerd.stop(&cfg.dockerd_socket, cfg.stop_grace).await;
                current.store(0, Ordering::SeqCst);
                return Ok(FirstStart::ShutDown { clean });
            }
        };
        let status = match ready {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(pid = %dockerd.pid, "dockerd is up on start attempt {attempt} of {attempts}");
                }
                return Ok(FirstStart::Ready(dockerd));
            }
            Err(DockerdError::ExitedEarly(status)) => status,
            Err(err) => return Err(err),
        };
        current.store(0, Ordering::SeqCst);
        if attempt >= attempts {
            return Err(DockerdError::StartFailed {
                attempts,
                status,
                tail: dockerd.last_output(&cfg.log).await,
            });
        }
        let delay = start_retry_delay(attempt);
        tracing::warn!(
            pid = %dockerd.pid,
            "dockerd {} before it was ready (start attempt {attempt} of {attempts}); \
             starting it again in {}s",
            describe(status),
            delay.as_secs_f32()
        );
        tokio::select! {
            _ = sleep(delay) => {}
            _ = shutdown.cancelled() => return Ok(FirstStart::ShutDown { clean: true }),
        }
        attempt += 1;
    }
}

/// Keeps dockerd running until `shutdown`; then stops it within the grace.
/// Returns true when that stop was clean (or no dockerd was running).
pub async fn supervise(
    mut dockerd: Dockerd,
    cfg: Arc<Config>,
    reaper: Arc<Reaper>,
    current: Arc<AtomicI32>,
    shutdown: CancellationToken,
) -> bool {
    let mut backoff = Backoff::new();
    loop {
        let up_since = Instant::now();
        let status = tokio::select! {
            status = &mut dockerd.exit => status.unwrap_or(WaitStatus::StillAlive),
            _ = shutdown.cancelled() => {
                let clean = dockerd.stop(&cfg.dockerd_socket, cfg.stop_grace).await;
                current.store(0, Ordering::SeqCst);
                return clean;
            }
        };
        current.store(0, Ordering::SeqCst);
        tracing::error!(pid = %dockerd.pid, "dockerd {} unexpectedly; restarting it", describe(status));
        if up_since.elapsed() >= Backoff::STABLE {
            backoff.reset();
        }
        dockerd = loop {
            let delay = backoff.next_delay();
            tokio::select! {
                _ = sleep(delay) => {}
                _ = shutdown.cancelled() => return true,
            }
            match restart(&cfg, &reaper, &current, &shutdown).await {
                Ok(Some(d)) => break d,
                Ok(None) => return true,
                Err(err) => tracing::error!(error = %err, "dockerd restart failed; retrying"),
            }
        };
        tracing::info!(pid = %dockerd.pid, "dockerd restarted");
        crate::metrics::global().dockerd_restarted();
    }
}

/// Cleans what the dead dockerd left, starts a new one and waits until it
/// answers. `Ok(None)`: shutdown began meanwhile (the new dockerd was stopped).
async fn restart(
    cfg: &Config,
    reaper: &Reaper,
    current: &AtomicI32,
    shutdown: &CancellationToken,
) -> Result<Option<Dockerd>, DockerdError> {
    remove_stale_files(&cfg.dockerd_socket)?;
    let mut dockerd = Dockerd::spawn(cfg, reaper, current)?;
    tokio::select! {
        ready = dockerd.wait_ready(&cfg.dockerd_socket, cfg.ready_timeout) => match ready {
            Ok(()) => Ok(Some(dockerd)),
            Err(err) => {
                signal(dockerd.pid, Signal::SIGKILL);
                current.store(0, Ordering::SeqCst);
                Err(err)
            }
        },
        _ = shutdown.cancelled() => {
            dockerd.stop(&cfg.dockerd_socket, cfg.stop_grace).await;
            current.store(0, Ordering::SeqCst);
            Ok(None)
        }
    }
}

/// Before a dockerd restart: the pid files and the socket the dead dockerd
/// left (a containerd that survived it is reused by the new one).
fn remove_stale_files(dockerd_socket: &Path) -> Result<Vec<PathBuf>, mounts::MountError> {
    mounts::remove_stale(
        &[Path::new("/run"), Path::new("/var/run")],
        &[dockerd_socket],
    )
}

/// dockerd's default data root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/docker";

/// Why `dockerd --version` named no version.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("cannot run `{dockerd} --version`: {source}")]
    Run {
        dockerd: String,
        source: std::io::Error,
    },
    #[error("`{dockerd} --version` printed {printed:?}, which names no version")]
    Unnamed { dockerd: String, printed: String },
}

/// Whether dockerd's arguments set `flag` (`--flag VALUE` or `--flag=VALUE`).
pub fn sets_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| {
        a.strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}

/// The data root dockerd will use: `--data-root` (or the old `-g`/`--graph`)
/// from its arguments, else /var/lib/docker.
pub fn data_root(args: &[String]) -> PathBuf {
    let mut root = PathBuf::from(DEFAULT_DATA_ROOT);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some(value) = arg
            .strip_prefix("--data-root=")
            .or_else(|| arg.strip_prefix("--graph="))
        {
            root = PathBuf::from(value);
        } else if arg == "--data-root" || arg == "--graph" || arg == "-g" {
            if let Some(value) = iter.next() {
                root = PathBuf::from(value);
            }
        }
    }
    root
}

/// `major.minor` from `dockerd --version` (`Docker version 20.10.24+dfsg1,
/// build 5d6db84`, `Docker version 27.5.1, build 4c9b3b0`).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `dockerd --version`, run synchronously (before any thread exists).
pub fn dockerd_version(dockerd: &Path) -> Result<(u32, u32), VersionError> {
    let out = std::process::Command::new(dockerd)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| VersionError::Run {
            dockerd: dockerd.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| VersionError::Unnamed {
        dockerd: dockerd.display().to_string(),
        printed: text.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    #[test]
    fn data_root_comes_from_the_dockerd_args() {
        assert_eq!(data_root(&[]), Path::new("/var/lib/docker"));
        assert_eq!(
            data_root(&["--data-root=/srv/d".to_string()]),
            Path::new("/srv/d")
        );
        assert_eq!(
            data_root(&["--data-root", "/srv/e", "--debug"].map(String::from)),
            Path::new("/srv/e")
        );
        assert_eq!(
            data_root(&["-g", "/old"].map(String::from)),
            Path::new("/old")
        );
    }

    #[test]
    fn build_args_puts_the_private_socket_first_then_env_then_trailing() {
        let args = build_args(
            Path::new("/run/dindbox/docker.sock"),
            Some("  --debug\t--storage-driver overlay2 "),
            &["--mtu".into(), "1400".into()],
        );
        assert_eq!(
            args,
            [
                "--host=unix:///run/dindbox/docker.sock",
                "--debug",
                "--storage-driver",
                "overlay2",
                "--mtu",
                "1400"
            ]
        );
        assert_eq!(build_args(Path::new("/s"), None, &[]), ["--host=unix:///s"]);
    }

    #[test]
    fn cgroup_parent_flag_finds_both_spellings() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            cgroup_parent_flag(&args(&["--debug", "--cgroup-parent=/x"])).as_deref(),
            Some("--cgroup-parent=/x")
        );
        assert_eq!(
            cgroup_parent_flag(&args(&["--cgroup-parent", "/x", "--debug"])).as_deref(),
            Some("--cgroup-parent /x")
        );
        assert_eq!(
            cgroup_parent_flag(&args(&["--cgroup-parent"])).as_deref(),
            Some("--cgroup-parent")
        );
        assert_eq!(
            cgroup_parent_flag(&args(&["--cgroup-parents=/x", "--exec-opt", "x"])),
            None
        );
    }

    #[test]
    fn add_cgroup_parent_appends_the_flag() {
        let mut args = build_args(Path::new("/s"), Some("--debug"), &[]);
        add_cgroup_parent(&mut args, "/dindbox");
        assert_eq!(
            args,
            ["--host=unix:///s", "--debug", "--cgroup-parent=/dindbox"]
        );
    }

    #[test]
    fn parse_log_accepts_file_and_absolute_paths() {
        assert_eq!(parse_log(None), Ok(LogTarget::Ours));
        assert_eq!(parse_log(Some("")), Ok(LogTarget::Ours));
        assert_eq!(
            parse_log(Some("file")),
            Ok(LogTarget::File("/var/log/docker.log".into()))
        );
        assert_eq!(
            parse_log(Some("/tmp/d.log")),
            Ok(LogTarget::File("/tmp/d.log".into()))
        );
    }

    #[test]
    fn parse_log_rejects_relative_paths() {
        assert!(parse_log(Some("docker.log"))
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn start_retry_delay_doubles_from_one_second_to_a_cap() {
        let delays: Vec<_> = (1..=8).map(|a| start_retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(start_retry_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn output_tail_keeps_the_last_lines() {
        let tail = OutputTail::default();
        for i in 0..20 {
            tail.push(&format!("line {i}"));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), OutputTail::LINES);
        assert_eq!(lines.first().map(String::as_str), Some("line 8"));
        assert_eq!(lines.last().map(String::as_str), Some("line 19"));
        assert_eq!(fmt_tail(&["a".into(), "b".into()]), "\n    a\n    b");
        assert_eq!(fmt_tail(&[]), " (none)");
    }

    #[test]
    fn level_of_reads_logrus_levels() {
        assert_eq!(
            level_of(r#"time="x" level=warning msg="a b""#),
            tracing::Level::WARN
        );
        assert_eq!(level_of("level=error msg=x"), tracing::Level::ERROR);
        assert_eq!(level_of("plain text"), tracing::Level::INFO);
    }
}
