//! The one HTTP/1.1 serving loop of the proxy, the graphdriver server and
//! the metrics endpoint: accept (backing off when accept fails, at most so
//! many connections at once), a task per connection, a timeout on each
//! request's headers, and a graceful shutdown that lets the request in
//! flight finish.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a server takes its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// At shutdown, how long to wait for the connections still open (their
    /// requests in flight) before returning; `None`: return at once.
    pub drain: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 4096,
            header_timeout: Duration::from_secs(30),
            drain: None,
        }
    }
}

/// A listening socket the loop accepts from.
pub trait Listen {
    /// An accepted connection, before it is served.
    type Conn: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Listen for UnixListener {
    type Conn = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        Ok(UnixListener::accept(self).await?.0)
    }
}

impl Listen for TcpListener {
    type Conn = TcpStream;
    async fn accept(&self) -> io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Accepts until `shutdown`, and runs `connection` on each accepted
/// connection in a task of its own (the task gets `shutdown` to end it
/// gracefully; see [`connection`]).
pub async fn accept_loop<L, F, Fut>(
    listener: &L,
    limits: Limits,
    shutdown: &CancellationToken,
    mut connection: F,
) where
    L: Listen,
    F: FnMut(L::Conn, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = std::sync::Arc::new(Semaphore::new(limits.connections));
    let mut open = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => permit.expect("the slots are never closed"),
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap the tasks that are done, so the set holds only open connections.
        while open.try_join_next().is_some() {}
        match accepted {
            Ok(conn) => {
                let served = connection(conn, shutdown.clone());
                open.spawn(async move {
                    served.await;
                    drop(permit);
                });
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    match limits.drain {
        Some(drain) => {
            let _ =
                tokio::time::timeout(drain, async { while open.join_next().await.is_some() {} })
                    .await;
        }
        None => open.detach_all(),
    }
}

/// Serves HTTP/1.1 on one connection (from `peer`, for the log) until the
/// client closes it or `shutdown` (then the request in flight finishes
/// first). Upgrades (a `101` answer) hand the connection to whoever asked.
pub async fn connection<I, S, B>(
    io: I,
    service: S,
    limits: Limits,
    shutdown: &CancellationToken,
    peer: &str,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A client may shut its write side and still wait for the answer.
        .half_close(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        debug!(error = %err, remote = peer, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on a fresh unix socket answering `ok`, with `limits`.
    async fn ok_server(
        limits: Limits,
    ) -> (tempfile::TempDir, std::path::PathBuf, CancellationToken) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            accept_loop(&listener, limits, &stop, |stream, shutdown| async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                });
                connection(stream, service, limits, &shutdown, "test").await;
            })
            .await;
        });
        (dir, path, shutdown)
    }

    async fn get(path: &std::path::Path) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_client_silent_past_the_header_timeout_is_closed_and_others_are_served() {
        let limits = Limits {
            header_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (_dir, path, _shutdown) = ok_server(limits).await;
        let mut silent = UnixStream::connect(&path).await.unwrap();
        silent.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), silent.read_to_end(&mut rest));
        closed
            .await
            .expect("the server closes a silent client")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&rest).contains("408") || rest.is_empty(),
            "{rest:?}"
        );
        assert!(get(&path).await.ends_with("ok"));
    }

    #[tokio::test]
    async fn shutdown_ends_the_loop_and_the_socket_stops_answering() {
        let (_dir, path, shutdown) = ok_server(Limits::default()).await;
        assert!(get(&path).await.ends_with("ok"));
        shutdown.cancel();
        // The listener is dropped with the loop: connecting fails once it is gone.
        let refused = tokio::time::timeout(Duration::from_secs(20), async {
            while UnixStream::connect(&path).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        refused
            .await
            .expect("the socket stops accepting after shutdown");
    }
}
