//! The command (or interactive shell) run inside the box once it is ready:
//! its own process group, the terminal's foreground, DOCKER_HOST set to the
//! public socket (tini/catatonit's child set-up).

#![forbid(unsafe_code)]

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::unistd::{self, Pid};

use super::reaper::{ExitWatch, Reaper};
use super::{sys, Config};

/// The command to run: the trailing arguments, or a login shell.
pub fn shell_command(shell_env: Option<&str>) -> Vec<String> {
    match shell_env.map(str::trim) {
        Some(shell) if !shell.is_empty() => vec![shell.to_string(), "-l".into()],
        _ => vec!["sh".into(), "-l".into()],
    }
}

/// The exit code when the command cannot be started at all (tini's mapping).
pub fn spawn_failure_code(err: &io::Error) -> u8 {
    match err.kind() {
        io::ErrorKind::NotFound => 127,
        io::ErrorKind::PermissionDenied => 126,
        _ => 1,
    }
}

/// Spawns `argv` in its own process group (which gets the terminal when
/// `cfg.foreground`); `group` holds that group's id for signal forwarding.
pub fn spawn(
    cfg: &Config,
    argv: &[String],
    reaper: &Reaper,
    group: &AtomicI32,
) -> io::Result<(Pid, ExitWatch)> {
    let (program, args) = argv.split_first().ok_or(io::ErrorKind::InvalidInput)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("DOCKER_HOST", format!("unix://{}", cfg.socket.display()))
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    sys::set_child_setup(&mut cmd, cfg.child_setup(true));
    let (pid, exit, _child) = reaper.spawn(&mut cmd)?;
    // The child did this before exec already; repeat it so that no signal can
    // find the group missing (the classic job-control race). EACCES after exec.
    let _ = unistd::setpgid(pid, pid);
    group.store(pid.as_raw(), Ordering::SeqCst);
    Ok((pid, exit))
}

/// Takes the terminal's foreground back after the command has exited, so our
/// own last log lines are not written from a background group.
pub fn reclaim_terminal() {
    let stdin = std::io::stdin();
    if unistd::isatty(0).unwrap_or(false) {
        let _ = unistd::tcsetpgrp(&stdin, unistd::getpgrp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_command_prefers_shell_and_falls_back_to_sh() {
        assert_eq!(shell_command(Some("/bin/bash")), ["/bin/bash", "-l"]);
        assert_eq!(shell_command(Some("")), ["sh", "-l"]);
        assert_eq!(shell_command(None), ["sh", "-l"]);
    }

    #[test]
    fn spawn_failure_codes_follow_tini() {
        assert_eq!(spawn_failure_code(&io::ErrorKind::NotFound.into()), 127);
        assert_eq!(
            spawn_failure_code(&io::ErrorKind::PermissionDenied.into()),
            126
        );
        assert_eq!(spawn_failure_code(&io::ErrorKind::Other.into()), 1);
    }
}
