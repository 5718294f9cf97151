//! `dindbox proxy --metrics ADDR` serves Prometheus text that counts what the
//! proxy did: a refusal by its rule, a request dockerd could not answer
//! (the fake dockerd of tests/support/fake_dockerd.rs, then killed).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn exchange(mut stream: impl Read + Write, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_count_refusals_by_rule_and_dockerd_errors() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let dockerd_socket = dir.path().join("dockerd.sock");
    let port = free_port();
    let mut dockerd = Process(
        Command::new(env!("CARGO_BIN_EXE_fake-dockerd"))
            .arg(format!("--host=unix://{}", dockerd_socket.display()))
            .spawn()
            .expect("start fake-dockerd"),
    );
    let _proxy = Process(
        Command::new(env!("CARGO_BIN_EXE_dindbox"))
            .args(["proxy", "--ds"])
            .arg(&dockerd_socket)
            .arg("--ls")
            .arg(&socket)
            .args(["--metrics", &format!("127.0.0.1:{port}")])
            .spawn()
            .expect("start dindbox proxy"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (UnixStream::connect(&socket).is_err()
        || UnixStream::connect(&dockerd_socket).is_err()
        || TcpStream::connect(("127.0.0.1", port)).is_err())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = r#"{"HostConfig":{"Privileged":true}}"#;
    let refused = exchange(
        UnixStream::connect(&socket).unwrap(),
        &format!("POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    );
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    dockerd.0.kill().unwrap();
    dockerd.0.wait().unwrap();
    let unavailable = exchange(
        UnixStream::connect(&socket).unwrap(),
        "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    assert!(unavailable.starts_with("HTTP/1.1 503"), "{unavailable}");

    let metrics = exchange(
        TcpStream::connect(("127.0.0.1", port)).unwrap(),
        "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    );
    for line in [
        r#"dindbox_proxy_refusals_total{rule="privileged"} 1"#,
        r#"dindbox_proxy_requests_total{endpoint="/containers/create",outcome="refused"} 1"#,
        r#"dindbox_proxy_requests_total{endpoint="/_ping",outcome="error"} 1"#,
        "dindbox_proxy_latency_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
}
