//! Each proxied client connection gets its own keep-alive connection to
//! dockerd, opened with its first request and closed with it.
//!
//! A shared pool (hyper-util's legacy client) costs a keyed checkout and
//! check-in per request (a hash, a lock, a oneshot); one connection per client
//! connection costs nothing per request. HTTP/1.1 serves one request at a time
//! per connection (RFC 9112 §9.3), so the client connection's requests never
//! need more than one upstream connection at once.

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Mutex;

use http::header;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tracing::debug;

use super::{Body, BoxError, Engine, Error};

/// One client connection's connection to dockerd (none until its first request).
#[derive(Default)]
pub struct Connection {
    sender: Mutex<Option<SendRequest<Body>>>,
}

impl Engine {
    /// Sends `req` (its target a path, as the client sent it) on `connection`:
    /// on the connection kept from the previous request if dockerd has not
    /// closed it, else on a new one. A request the kept connection could not
    /// send (dockerd closed it while it was idle) goes on a new connection,
    /// as hyper-util's pool retries it. [`Engine::host`] is set when the
    /// client sent no `Host` (dockerd requires one).
    pub async fn forward(
        &self,
        connection: &Connection,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, Error> {
        req.headers_mut()
            .entry(header::HOST)
            .or_insert_with(|| self.0.host.clone());
        connection
            .send(&self.0.socket, req)
            .await
            .map_err(|source| Error::NoAnswer {
                socket: self.0.socket.clone(),
                source,
            })
    }
}

impl Connection {
    async fn send(
        &self,
        socket: &Path,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, BoxError> {
        if let Some(mut sender) = self.take() {
            if sender.ready().await.is_ok() {
                let pending = sender.try_send_request(req);
                self.keep(sender);
                match pending.await {
                    Ok(response) => return Ok(response),
                    Err(mut err) => match err.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(err.into_error().into()),
                    },
                }
            }
        }
        let mut sender = connect(socket).await?;
        let pending = sender.send_request(req);
        self.keep(sender);
        Ok(pending.await?)
    }

    fn take(&self) -> Option<SendRequest<Body>> {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        sender.filter(|s| !s.is_closed())
    }

    fn keep(&self, sender: SendRequest<Body>) {
        *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }
}

/// A new HTTP/1.1 connection to dockerd, driven by its own task until
/// dockerd or the [`SendRequest`] side closes it, or it is upgraded.
async fn connect(socket: &Path) -> Result<SendRequest<Body>, BoxError> {
    let stream = UnixStream::connect(socket).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            debug!(error = %err, "connection to dockerd ended with an error");
        }
    });
    Ok(sender)
}
