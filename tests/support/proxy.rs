//! A proxy in process in front of a fake dockerd, and a client that sends it
//! one request on a connection of its own.

#![allow(dead_code)] // not every test binary that has `mod support;` uses it

use std::path::Path;
use std::time::Duration;

use dindbox::proxy::policy::Policy;
use dindbox::proxy::{ListenAddr, Listener, Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

/// Serves a proxy with `policy` on `listen`, in front of `upstream`, until
/// `shutdown` is cancelled.
pub async fn serve(upstream: &Path, listen: &Path, policy: Policy, shutdown: &CancellationToken) {
    let proxy = Proxy::new(ProxyConfig {
        upstream: upstream.to_path_buf(),
        policy,
    });
    let listener = Listener::bind(&ListenAddr::Unix(listen.to_path_buf()))
        .await
        .unwrap();
    tokio::spawn(proxy.serve(listener, shutdown.clone()));
}

/// A request's body, typed as the Docker client types it.
#[derive(Clone, Copy)]
pub enum Sent<'a> {
    Nothing,
    Json(&'a str),
    Tar(&'a [u8]),
}

/// `method target` with `body` on a connection of its own: the answer's
/// status and body.
pub async fn call(socket: &Path, method: &str, target: &str, body: Sent<'_>) -> (u16, String) {
    let (content_type, body): (_, &[u8]) = match body {
        Sent::Nothing => (None, b""),
        Sent::Json(json) => (Some("application/json"), json.as_bytes()),
        Sent::Tar(tar) => (Some("application/x-tar"), tar),
    };
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        raw.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    raw.push_str("\r\n");
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("proxy answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&out).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
