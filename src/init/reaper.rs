//! PID-1 duties: reap every child (tini's `waitpid(-1, WNOHANG)` loop on
//! SIGCHLD plus a periodic sweep), hand the statuses of the children we track
//! to their owners, and map statuses to exit codes.
//!
//! We never use `tokio::process` or `std::process::Child::wait`: they wait for
//! one pid and would race this loop for the same status.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// The exit code of a process that ended with `status`: its own code, or
/// 128 + the signal that killed it (the shell and tini convention).
pub fn exit_code(status: WaitStatus) -> u8 {
    match status {
        WaitStatus::Exited(_, code) => (code & 0xff) as u8,
        WaitStatus::Signaled(_, sig, _) => 128u8.wrapping_add(sig as u8),
        // Not an end state; waitpid without WUNTRACED/WCONTINUED never gives these.
        _ => 1,
    }
}

/// A human description of how a process ended, for log lines.
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with code {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!(
                "killed by {sig}{}",
                if core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}

/// Resolves with the exit status of one tracked child.
pub type ExitWatch = oneshot::Receiver<WaitStatus>;

/// Reaps all children and delivers the statuses of tracked ones.
#[derive(Default)]
pub struct Reaper {
    /// Tracked children. The same lock is held across spawn+register and across
    /// the whole waitpid loop, so a child that exits at once is never reaped
    /// before its owner is registered.
    tracked: Mutex<HashMap<Pid, oneshot::Sender<WaitStatus>>>,
}

impl Reaper {
    pub fn new() -> Arc<Reaper> {
        Arc::new(Reaper::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Pid, oneshot::Sender<WaitStatus>>> {
        // A panic while holding the map leaves it consistent: recover it.
        self.tracked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `cmd` and tracks it. The `std::process::Child` is dropped: it is
    /// never waited for through std.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Pid, ExitWatch, std::process::Child)> {
        let mut tracked = self.lock();
        let child = cmd.spawn()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let (tx, rx) = oneshot::channel();
        tracked.insert(pid, tx);
        Ok((pid, rx, child))
    }

    /// Reaps every child that has ended. Returns false once no child is left.
    pub fn reap(&self) -> bool {
        let mut tracked = self.lock();
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return true,
                Err(Errno::ECHILD) => return false,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "waitpid(-1) failed");
                    return true;
                }
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    match tracked.remove(&pid) {
                        // The owner may have given up waiting; nothing to do then.
                        Some(tx) => drop(tx.send(status)),
                        None => tracing::debug!(%pid, "reaped orphan: {}", describe(status)),
                    }
                }
            }
        }
    }

    /// Reaps on every SIGCHLD and at least once a second, forever.
    /// The SIGCHLD handler is installed before this returns, so call it before
    /// spawning anything.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                reaper.reap();
            }
        });
        Ok(())
    }

    /// Reaps until no child is left or `timeout` passes.
    pub async fn drain(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.reap() || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The signals init forwards or acts on (SIGCHLD is the reaper's).
pub const HANDLED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
    Signal::SIGWINCH,
];

/// Signals init ignores so that it is never stopped (job control on a tty,
/// SIGTSTP sent to PID 1); its children get `SIG_DFL` for them back.
pub const IGNORED: [Signal; 3] = [Signal::SIGTTIN, Signal::SIGTTOU, Signal::SIGTSTP];

/// Installs handlers for [`HANDLED`] and returns a stream of them.
pub fn signals() -> io::Result<tokio::sync::mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for sig in HANDLED {
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    return;
                }
            }
        });
    }
    Ok(rx)
}

/// Direct children of `parent`, from /proc/*/stat.
pub(super) fn children_of(parent: u32) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                .is_some_and(|ppid| ppid == parent)
        })
        .map(Pid::from_raw)
        .collect()
}

/// The ppid field of a /proc/PID/stat line (`pid (comm) state ppid ...`); comm
/// may itself contain spaces and parentheses, so split after the last `)`.
fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

    use super::{exit_code, parent_pid};

    #[test]
    fn exit_code_maps_codes_and_signals() {
        let pid = Pid::from_raw(42);
        let table = [
            (WaitStatus::Exited(pid, 0), 0),
            (WaitStatus::Exited(pid, 3), 3),
            (WaitStatus::Exited(pid, 255), 255),
            (WaitStatus::Signaled(pid, Signal::SIGTERM, false), 143),
            (WaitStatus::Signaled(pid, Signal::SIGKILL, false), 137),
            (WaitStatus::Signaled(pid, Signal::SIGINT, false), 130),
            (WaitStatus::Signaled(pid, Signal::SIGSEGV, true), 139),
            (WaitStatus::Signaled(pid, Signal::SIGHUP, false), 129),
        ];
        for (status, code) in table {
            assert_eq!(exit_code(status), code, "{status:?}");
        }
    }

    #[test]
    fn parent_pid_survives_odd_process_names() {
        assert_eq!(parent_pid("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("42 (a b) c) R 9 1"), Some(9));
        assert_eq!(parent_pid("garbage"), None);
    }
}
