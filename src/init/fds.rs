//! Closing file descriptors leaked into init by whatever started it.
//!
//! A container runtime (or an outer init) may hand PID 1 descriptors it forgot
//! to mark close-on-exec; dockerd and every inner container would inherit them
//! (jpetazzo/dind's "weird FD leakage issue"). catatonit closes them with
//! `close_range(2)` and falls back to walking `/proc/self/fd`; so do we.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use super::sys;

#[derive(Debug, thiserror::Error)]
pub enum FdError {
    #[error("failed to list /proc/self/fd: {0}")]
    List(#[source] io::Error),
    #[error("failed to close fd {fd}: {err}")]
    Close { fd: RawFd, err: nix::Error },
}

/// Closes every fd >= 3. Must run before any thread starts or any fd >= 3 is
/// owned by a Rust object.
pub fn close_inherited() -> Result<(), FdError> {
    if sys::close_range_from(3).is_ok() {
        return Ok(());
    }
    // Kernels before 5.9 (or a seccomp filter) refuse close_range.
    close_listed_from(3)
}

/// The fallback: close each fd listed in `/proc/self/fd`.
fn close_listed_from(first: RawFd) -> Result<(), FdError> {
    for fd in open_fds_from(first)? {
        match nix::unistd::close(fd) {
            Ok(()) | Err(nix::Error::EBADF) => {}
            Err(err) => return Err(FdError::Close { fd, err }),
        }
    }
    Ok(())
}

/// The open fds `>= first`, read from `/proc/self/fd`. The directory's own fd
/// is closed before this returns, so it may appear in the list; closing it
/// then yields EBADF, which callers ignore.
fn open_fds_from(first: RawFd) -> Result<Vec<RawFd>, FdError> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(FdError::List)? {
        let entry = entry.map_err(FdError::List)?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        {
            if fd >= first {
                fds.push(fd);
            }
        }
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// Runs in a child process (this test binary re-executed) because closing
    /// every fd of the multi-threaded test harness would break it.
    #[test]
    fn close_inherited_closes_every_fd_from_3() {
        if std::env::var_os("DINDBOX_FDS_CHILD").is_some() {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "init::fds::tests::child_body",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DINDBOX_FDS_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("FDS-OK"), "child did not report: {stdout}");
    }

    /// The body run in the child: open fds, close them both ways, check
    /// /proc/self/fd. It is a no-op in a normal test run.
    #[test]
    fn child_body() {
        if std::env::var_os("DINDBOX_FDS_CHILD").is_none() {
            return;
        }
        // `forget`: the fds get closed behind Rust's back, so never drop them.
        let open_three = || (0..3).for_each(|_| std::mem::forget(tempfile::tempfile().unwrap()));
        // read_dir's own fd shows up while listing: allow exactly that one.
        let assert_closed = |how: &str| {
            let left = super::open_fds_from(3).unwrap();
            assert!(left.len() <= 1, "{how}: fds left open: {left:?}");
        };

        open_three();
        assert!(super::open_fds_from(3).unwrap().len() >= 3);
        super::close_listed_from(3).unwrap();
        assert_closed("listing fallback");

        open_three();
        super::close_inherited().unwrap();
        assert_closed("close_range");
        println!("FDS-OK");
    }
}
