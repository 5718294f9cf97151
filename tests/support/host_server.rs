//! A host storage server (`dindbox graphdriver-server` or
//! `snapshotter-server`) as the integration tests run it: in a private mount
//! namespace of its own (its mounts leave no trace on the host), for box
//! `name` under `root`, on `socket`, with `--debug` and its stderr appended to
//! `log`.

#![allow(dead_code)] // not every test binary that has `mod support;` uses it

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub fn spawn(
    subcommand: &str,
    root: &Path,
    name: &str,
    socket: &Path,
    log: &Path,
    args: &[&str],
) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(env!("CARGO_BIN_EXE_dindbox"))
        .arg(subcommand)
        .arg("-R")
        .arg(root)
        .args(["-C", name, "-S"])
        .arg(format!("unix://{}", socket.display()))
        .arg("--debug")
        .args(args)
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn unshare + dindbox {subcommand}: {e}"))
}
