//! A host storage server (`dindbox graphdriver-server` or
//! `snapshotter-server`) as the integration tests run it: by default in a
//! private mount namespace of its own (its mounts leave no trace on the host), for box
//! `name` under `root`, on `socket`, with `--debug` and its stderr appended to
//! `log`.

#![allow(dead_code)] // not every test binary that has `mod support;` uses it

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// How a server is started: in a fresh private mount namespace (the default)
/// or in that of a running process; with a test fault point armed or not.
#[derive(Default)]
pub struct Launch {
    pub namespace_of: Option<u32>,
    pub fault: Option<String>,
}

pub fn spawn(
    subcommand: &str,
    root: &Path,
    name: &str,
    socket: &Path,
    log: &Path,
    args: &[&str],
    launch: &Launch,
) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = match launch.namespace_of {
        Some(pid) => {
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--mount=/proc/{pid}/ns/mnt")).arg("--");
            cmd
        }
        None => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "--"]);
            cmd
        }
    };
    if let Some(fault) = &launch.fault {
        cmd.env("DINDBOX_SN_TEST_FAULT", fault);
    }
    cmd.arg(env!("CARGO_BIN_EXE_dindbox"))
        .arg(subcommand)
        .arg("-R")
        .arg(root)
        .args(["-C", name, "-S"])
        .arg(format!("unix://{}", socket.display()))
        .arg("--debug")
        .args(args)
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn dindbox {subcommand}: {e}"))
}
