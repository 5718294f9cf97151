//! `dindbox health` is 0 only when the proxy answers and dockerd answers
//! through it: no socket, and a proxy whose dockerd is down, are both failures.

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn health(socket: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dindbox"))
        .args(["health", "--timeout", "3", "--socket"])
        .arg(socket)
        .output()
        .expect("run dindbox health")
}

#[test]
fn health_fails_without_a_proxy_and_without_dockerd_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");

    let nothing = health(&socket);
    assert!(!nothing.status.success());
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("failed to reach"),
        "{nothing:?}"
    );

    let mut proxy = Command::new(env!("CARGO_BIN_EXE_dindbox"))
        .args(["proxy", "--ds"])
        .arg(dir.path().join("no-dockerd.sock"))
        .arg("--ls")
        .arg(&socket)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let no_dockerd = health(&socket);
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(!no_dockerd.status.success());
    assert!(
        String::from_utf8_lossy(&no_dockerd.stderr).contains("503"),
        "{no_dockerd:?}"
    );
}
