//! A host storage server (`dindbox graphdriver-server` or
//! `snapshotter-server`, the binary under test) for one box, in the host's
//! mount namespace where the box sees its mounts; its stdout and stderr
//! appended to `log`. `kill` is a crash (SIGKILL: the socket file stays
//! behind); on drop it is stopped with SIGTERM, and its log's tail printed
//! when the test failed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::poll;

pub struct HostServer {
    subcommand: &'static str,
    name: &'static str,
    flags: Vec<String>,
    root: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl HostServer {
    /// Starts `dindbox SUBCOMMAND -R root -C name -S unix://socket --debug
    /// FLAGS` and waits for its socket to answer.
    pub fn start(
        subcommand: &'static str,
        name: &'static str,
        root: PathBuf,
        socket: PathBuf,
        log: PathBuf,
        flags: &[&str],
    ) -> HostServer {
        let mut server = HostServer {
            subcommand,
            name,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            root,
            socket,
            log,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts the same command again (after `kill`).
    pub fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let child = Command::new(env!("CARGO_BIN_EXE_dindbox"))
            .arg(self.subcommand)
            .arg("-R")
            .arg(&self.root)
            .args(["-C", self.name, "-S"])
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--debug")
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start dindbox {}: {e}", self.subcommand));
        self.child = Some(child);
        let up = poll(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&self.socket)
                .ok()
                .map(|_| ())
        });
        assert!(up.is_some(), "the server did not come up:\n{}", self.log());
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- {} log (last 60 lines) ---\n{}",
                self.subcommand,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
