//! Every `unsafe` block of the init role lives here: one libc call per block,
//! turned into an `io::Result` (or `nix::Result`) at once.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{self, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{self, Pid};

/// Closes every file descriptor `>= first` with `close_range(2)` (Linux 5.9+).
pub fn close_range_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes plain integers and touches no memory of ours. It
    // is called before any thread exists and before anything owns an fd >= 3,
    // so no Rust object is left holding a closed descriptor.
    // JUSTIFICATION: nix 0.29 does not wrap close_range.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the disposition of `sig` to `SIG_IGN` in this process.
pub fn ignore_signal(sig: Signal) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::SigIgn,
        signal::SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: SIG_IGN installs no handler code, so there is nothing that could
    // run in signal context.
    unsafe { signal::sigaction(sig, &action) }.map(drop)
}

/// What a child of init gets done between `fork` and `exec`.
#[derive(Debug, Clone, Copy)]
pub struct ChildSetup {
    /// The signal mask init inherited; the child gets it back.
    pub mask: SigSet,
    /// Signals init ignores; the child gets `SIG_DFL` for them.
    pub reset: &'static [Signal],
    /// Put the child in its own process group.
    pub new_process_group: bool,
    /// Also make that group the foreground group of the terminal on stdin.
    pub foreground: bool,
}

/// Installs `setup` as the `pre_exec` hook of `cmd`.
pub fn set_child_setup(cmd: &mut Command, setup: ChildSetup) {
    let hook = move || -> io::Result<()> {
        if setup.new_process_group {
            unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            if setup.foreground {
                // SIGTTOU is still ignored here (inherited from init), so a
                // background group may take the terminal. Not a tty: ignore.
                // SAFETY: tcsetpgrp reads no memory; fd 0 is the child's stdin.
                let _ = unsafe { libc::tcsetpgrp(0, libc::getpid()) };
            }
        }
        let default = SigAction::new(
            SigHandler::SigDfl,
            signal::SaFlags::empty(),
            SigSet::empty(),
        );
        for &sig in setup.reset {
            // SAFETY: SIG_DFL installs no handler code.
            unsafe { signal::sigaction(sig, &default) }?;
        }
        signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&setup.mask), None)?;
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec. It only makes
    // async-signal-safe system calls (setpgid, tcsetpgrp, getpid, sigaction,
    // sigprocmask) on data captured by value before the fork; it neither
    // allocates nor takes locks.
    unsafe { cmd.pre_exec(hook) };
}
