//! The supervision loop: dockerd, the proxy, `ready`, the command or the
//! shell, signals forwarded, and the graceful stop with its exit code.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use super::config::{tcp_listener, Config};
use super::reaper::{self, children_of, exit_code};
use super::{containerd, dockerd, snapshotter};
use super::{shell, InitError};
use crate::proxy::{ListenAddr, Listener, Proxy, ProxyConfig};

/// The pids signals are forwarded to (0: none).
#[derive(Default)]
struct Targets {
    dockerd: Arc<AtomicI32>,
    /// The box's own containerd (`DINDBOX_SNAPSHOTTER`).
    containerd: Arc<AtomicI32>,
    command_group: AtomicI32,
}

/// PID-1 duties around [`serve`]: reaping and signals from the first child on,
/// and the final kill + reap whatever way serving ends.
pub(super) async fn run(cfg: Arc<Config>) -> Result<u8, InitError> {
    let reaper = reaper::Reaper::new();
    reaper.start().map_err(|err| InitError::Setup {
        what: "the SIGCHLD handler",
        err,
    })?;
    let signals = reaper::signals().map_err(|err| InitError::Setup {
        what: "signal handlers",
        err,
    })?;
    let shutdown = CancellationToken::new();
    let targets = Arc::new(Targets::default());
    tokio::spawn(route_signals(signals, targets.clone(), shutdown.clone()));

    let result = serve(&cfg, &reaper, &targets, &shutdown).await;

    shutdown.cancel();
    kill_the_rest(&targets);
    reaper.drain(Duration::from_secs(2)).await;
    if let Err(err) = std::fs::remove_file(&cfg.ready_file) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %cfg.ready_file.display(), error = %err, "failed to remove the ready file");
        }
    }
    if let Ok(code) = result {
        tracing::info!(code, "exiting");
    }
    result
}

/// dockerd, then the proxy, then `ready`, then the command or waiting for a
/// signal; then the graceful stop. Returns the exit code.
async fn serve(
    cfg: &Arc<Config>,
    reaper: &Arc<reaper::Reaper>,
    targets: &Arc<Targets>,
    shutdown: &CancellationToken,
) -> Result<u8, InitError> {
    // With the proxy snapshotter: the server answers and its mounts reach
    // the box, then the box's own containerd, which dockerd runs on.
    let containerd_stop = CancellationToken::new();
    let containerd_task = match &cfg.snapshotter {
        Some(socket) => {
            snapshotter::probe(socket, Path::new(snapshotter::AREA)).await?;
            tracing::info!(socket = %socket.display(), area = snapshotter::AREA, "the snapshotter server answers and its mounts reach the box");
            let running = containerd::start(cfg, socket, reaper, &targets.containerd).await?;
            Some(tokio::spawn(containerd::supervise(
                running,
                cfg.clone(),
                socket.clone(),
                reaper.clone(),
                targets.containerd.clone(),
                containerd_stop.clone(),
            )))
        }
        None => None,
    };

    // dockerd on its private socket; nothing is published until it answers.
    // One that dies before that is started again a few times (see [`dockerd::start`]).
    let dockerd = match dockerd::start(cfg, reaper, &targets.dockerd, shutdown).await? {
        dockerd::FirstStart::Ready(dockerd) => dockerd,
        dockerd::FirstStart::ShutDown { clean } => return Ok(stop_code(clean)),
    };
    tracing::info!(pid = %dockerd.pid, "dockerd answers /_ping");

    // The proxy: the only way in. Bound now, so a busy port fails before `ready`.
    let proxy = Proxy::new(ProxyConfig {
        upstream: cfg.dockerd_socket.clone(),
        policy: cfg.policy.clone(),
    });
    // The versions the proxy serves end at dockerd's newest (or the
    // policy's, with a warning when dockerd is newer). Learned now, so the
    // warning comes once, at start; failing that, before the first request.
    if let Err(reject) = proxy.learn_daemon_api().await {
        tracing::warn!(reason = %reject.message, "could not read dockerd's API version yet");
    }
    let mut addrs = vec![ListenAddr::Unix(cfg.socket.clone())];
    let tcp = tcp_listener(cfg.port, cfg.server_tls.as_ref());
    if let Some(ListenAddr::Tcp(addr)) = &tcp {
        // 0.0.0.0 in a box: beyond loopback whatever `-p` publishes.
        tracing::warn!(
            "PORT={}: the Docker API is served over plain TCP on {addr} WITHOUT AUTHENTICATION: \
             anyone who reaches this port controls the box. Publish it on loopback only \
             (-p 127.0.0.1:{}:{}) or turn on TLS with client certificates \
             (-e DOCKER_TLS_CERTDIR=/certs)",
            addr.port(),
            addr.port(),
            addr.port()
        );
    }
    addrs.extend(tcp.clone());
    let mut listeners = Vec::new();
    if let Some(port) = cfg.metrics_port {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let shutdown = shutdown.clone();
        listeners.push(tokio::spawn(async move {
            if let Err(err) = crate::metrics::serve(addr, shutdown).await {
                tracing::error!(%addr, error = %err, "the metrics endpoint failed");
            }
        }));
    }
    for addr in &addrs {
        let listener = Listener::bind(addr)
            .await
            .map_err(|err| InitError::Listen {
                addr: format!("{addr:?}"),
                err,
            })?;
        listeners.push(tokio::spawn(
            proxy.clone().serve(listener, shutdown.clone()),
        ));
    }

    // Ready: one log line, and the file health checks look for.
    std::fs::write(&cfg.ready_file, b"ready\n").map_err(|err| InitError::File {
        what: "write",
        path: cfg.ready_file.clone(),
        err,
    })?;
    tracing::info!(
        socket = %cfg.socket.display(),
        tcp = %tcp.map_or("none".into(), |a| a.to_string()),
        dockerd = %cfg.dockerd_socket.display(),
        "ready"
    );

    let supervisor = tokio::spawn(dockerd::supervise(
        dockerd,
        cfg.clone(),
        reaper.clone(),
        targets.dockerd.clone(),
        shutdown.clone(),
    ));

    // The command decides how long the box lives; without one, a signal does.
    let command_code = match &cfg.command {
        Some(argv) => run_command(cfg, argv, reaper, targets, shutdown).await,
        None => {
            shutdown.cancelled().await;
            None
        }
    };

    // Graceful stop: the proxy stops accepting and dockerd gets SIGTERM and
    // the grace period (both watch `shutdown`).
    shutdown.cancel();
    let clean = supervisor.await.unwrap_or(false);
    // containerd outlives dockerd, which stops its containers through it.
    containerd_stop.cancel();
    if let Some(task) = containerd_task {
        let _ = task.await;
    }
    for listener in listeners {
        if tokio::time::timeout(Duration::from_secs(1), listener)
            .await
            .is_err()
        {
            tracing::warn!("proxy did not stop within 1s");
        }
    }
    Ok(command_code.unwrap_or_else(|| stop_code(clean)))
}

/// Runs the command; its exit code, or `None` if a signal ended the box first.
async fn run_command(
    cfg: &Config,
    argv: &[String],
    reaper: &reaper::Reaper,
    targets: &Targets,
    shutdown: &CancellationToken,
) -> Option<u8> {
    let (pid, exit) = match shell::spawn(cfg, argv, reaper, &targets.command_group) {
        Ok(spawned) => spawned,
        Err(err) => {
            tracing::error!(command = ?argv, error = %err, "failed to run the command");
            return Some(shell::spawn_failure_code(&err));
        }
    };
    tracing::info!(%pid, command = ?argv, "command started");
    let code = tokio::select! {
        status = exit => status.ok().map(|status| {
            tracing::info!(%pid, "command {}", reaper::describe(status));
            exit_code(status)
        }),
        _ = shutdown.cancelled() => None,
    };
    targets.command_group.store(0, Ordering::SeqCst);
    if cfg.foreground {
        shell::reclaim_terminal();
    }
    code
}

/// 0 after a clean stop, else 128 + SIGTERM (what a killed dockerd would give).
fn stop_code(clean: bool) -> u8 {
    if clean {
        0
    } else {
        128 + Signal::SIGTERM as u8
    }
}

/// Forwards signals. With a command running, everything goes to its process
/// group and SIGTERM also stops the box. Otherwise SIGTERM/SIGINT/SIGQUIT stop
/// the box and the rest (SIGHUP = reload, SIGUSR1 = stack dump) go to dockerd.
async fn route_signals(
    mut signals: tokio::sync::mpsc::UnboundedReceiver<Signal>,
    targets: Arc<Targets>,
    shutdown: CancellationToken,
) {
    while let Some(sig) = signals.recv().await {
        let group = targets.command_group.load(Ordering::SeqCst);
        if group > 0 {
            if let Err(err) = killpg(Pid::from_raw(group), sig) {
                tracing::debug!(signal = %sig, error = %err, "forwarding a signal to the command's group failed");
            }
            if sig == Signal::SIGTERM {
                tracing::info!(signal = %sig, "received a signal: shutting down");
                shutdown.cancel();
            }
            continue;
        }
        match sig {
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => {
                tracing::info!(signal = %sig, "received a signal: shutting down");
                shutdown.cancel();
            }
            _ => match targets.dockerd.load(Ordering::SeqCst) {
                0 => tracing::debug!(signal = %sig, "no dockerd running: the signal is dropped"),
                pid => {
                    tracing::info!(signal = %sig, "forwarding a signal to dockerd");
                    dockerd::signal(Pid::from_raw(pid), sig);
                }
            },
        }
    }
}

/// The end: SIGKILL whatever is left. As PID 1 that is everything in the PID
/// namespace (`kill(-1)` spares the caller); otherwise our tracked children and
/// whatever was re-parented to us as subreaper.
fn kill_the_rest(targets: &Targets) {
    if std::process::id() == 1 {
        let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
        return;
    }
    let dockerd = targets.dockerd.load(Ordering::SeqCst);
    if dockerd > 0 {
        dockerd::signal(Pid::from_raw(dockerd), Signal::SIGKILL);
    }
    if let Some(pid) = containerd::running(&targets.containerd) {
        dockerd::signal(pid, Signal::SIGKILL);
    }
    let group = targets.command_group.load(Ordering::SeqCst);
    if group > 0 {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    for pid in children_of(std::process::id()) {
        dockerd::signal(pid, Signal::SIGKILL);
    }
}
