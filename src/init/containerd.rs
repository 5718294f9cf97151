//! The box's own containerd, for `DINDBOX_SNAPSHOTTER` (see
//! [`super::snapshotter`]): started before dockerd, restarted if it dies,
//! stopped after dockerd.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::reaper::{describe, ExitWatch, Reaper};
use super::snapshotter::{containerd_config, containerd_config_path, containerd_socket};
use super::{dockerd, sys, Config};

/// How long containerd has to open its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it has to stop on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("failed to write the box's containerd config {path}: {err}")]
    Config { path: String, err: std::io::Error },
    #[error("failed to start containerd (is it installed in the image?): {0}")]
    Spawn(std::io::Error),
    #[error("the box's containerd {0} before it opened its socket")]
    Exited(String),
    #[error("the box's containerd did not open {socket} within {}s", READY_TIMEOUT.as_secs())]
    NotReady { socket: String },
}

/// A running containerd.
pub struct Containerd {
    pub pid: Pid,
    exit: ExitWatch,
}

/// Writes the config, starts containerd and waits for its socket.
pub async fn start(
    cfg: &Config,
    snapshotter: &Path,
    reaper: &Reaper,
    current: &AtomicI32,
) -> Result<Containerd, ContainerdError> {
    let path = containerd_config_path();
    path.parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, containerd_config(snapshotter)))
        .map_err(|err| ContainerdError::Config {
            path: path.display().to_string(),
            err,
        })?;
    let _ = std::fs::remove_file(containerd_socket());
    let mut cmd = Command::new("containerd");
    cmd.arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::set_child_setup(&mut cmd, cfg.child_setup(false));
    let (pid, mut exit, mut child) = reaper.spawn(&mut cmd).map_err(ContainerdError::Spawn)?;
    current.store(pid.as_raw(), Ordering::SeqCst);
    if let Some(out) = child.stdout.take() {
        forward_lines(out);
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err);
    }
    tracing::info!(%pid, config = %path.display(), "the box's containerd started");
    let deadline = Instant::now() + READY_TIMEOUT;
    while tokio::net::UnixStream::connect(containerd_socket())
        .await
        .is_err()
    {
        if let Ok(status) = exit.try_recv() {
            current.store(0, Ordering::SeqCst);
            return Err(ContainerdError::Exited(describe(status)));
        }
        if Instant::now() > deadline {
            return Err(ContainerdError::NotReady {
                socket: containerd_socket().display().to_string(),
            });
        }
        sleep(Duration::from_millis(100)).await;
    }
    Ok(Containerd { pid, exit })
}

/// Keeps containerd running until `stop`, then stops it within the grace.
pub async fn supervise(
    mut containerd: Containerd,
    cfg: Arc<Config>,
    snapshotter: std::path::PathBuf,
    reaper: Arc<Reaper>,
    current: Arc<AtomicI32>,
    stop: CancellationToken,
) {
    loop {
        let status = tokio::select! {
            status = &mut containerd.exit => status.unwrap_or(WaitStatus::StillAlive),
            _ = stop.cancelled() => {
                stop_now(&mut containerd).await;
                current.store(0, Ordering::SeqCst);
                return;
            }
        };
        current.store(0, Ordering::SeqCst);
        tracing::error!(pid = %containerd.pid, "the box's containerd {} unexpectedly; restarting it", describe(status));
        containerd = loop {
            tokio::select! {
                _ = sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
            match start(&cfg, &snapshotter, &reaper, &current).await {
                Ok(c) => break c,
                Err(err) => tracing::error!(error = %err, "containerd restart failed; retrying"),
            }
        };
    }
}

async fn stop_now(containerd: &mut Containerd) {
    dockerd::signal(containerd.pid, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, &mut containerd.exit)
        .await
        .is_err()
    {
        tracing::warn!(pid = %containerd.pid, "the box's containerd did not stop in time: SIGKILL");
        dockerd::signal(containerd.pid, Signal::SIGKILL);
    }
}

/// containerd's output into our log, one event per line.
fn forward_lines(pipe: impl Read + Send + 'static) {
    std::thread::Builder::new()
        .name("containerd-log".into())
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf);
                tracing::info!(target: "containerd", containerd = %line.trim_end());
                buf.clear();
            }
        })
        .expect("spawn containerd log thread");
}

/// For the final kill: the pid to signal, if containerd runs.
pub fn running(current: &AtomicI32) -> Option<Pid> {
    match current.load(Ordering::SeqCst) {
        0 => None,
        pid => Some(Pid::from_raw(pid)),
    }
}
