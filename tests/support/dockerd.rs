//! The one fake dockerd of the integration tests: hyper on a unix socket,
//! with what every dockerd does built in and what a test needs configured.
//!
//! Built in, as dockerd does it:
//! - every request is recorded ([`Seen`]), the proxy's own `GET /version`
//!   included (it learns the daemon's newest API version with it);
//! - a version outside the daemon's range is refused in dockerd's words;
//! - `GET /version` states the daemon's versions;
//! - every answer states its newest API version in `Api-Version`.
//!
//! Configured: the answer to everything else (an async function of the
//! request, [`Fake::answering`]; [`basic`] by default), whether each
//! connection is closed after one answer without saying so (a daemon that let
//! it idle out), and the versions (the newest may change under a running
//! proxy, as an upgrade would).
//!
//! In-process tests spawn [`Fake::serve`]; tests that need a daemon process
//! (init's supervision, the standalone proxy binary) run the `fake-dockerd`
//! bin (`tests/support/fake_dockerd.rs`), which serves this same fake.

#![allow(dead_code)] // each test binary uses part of it

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

/// A request as the fake dockerd received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub headers: http::HeaderMap,
    /// The body as text (lossy); empty when it did not arrive whole.
    pub body: String,
    /// The body's bytes, `None` when it did not arrive whole.
    pub bytes: Option<Bytes>,
    /// The connection it came on, numbered in the order connections carried
    /// their first request other than the proxy's own `GET /version`.
    pub connection: usize,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    pub fn content_length(&self) -> Option<String> {
        let value = self.headers.get("content-length")?;
        Some(value.to_str().unwrap().to_string())
    }

    /// The request the proxy sends on its own to learn the daemon's version.
    pub fn is_version_question(&self) -> bool {
        self.method == "GET" && self.target == "/version"
    }
}

/// An answer of the fake.
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    /// Switch protocols, then echo in upper case until EOF and write "bye".
    echo_upgrade: bool,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            echo_upgrade: false,
        }
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::new(status, body).header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// `101`, then the raw stream echoes what it gets in upper case until
    /// EOF, then writes "bye" (an attach).
    pub fn echo_upgrade() -> Reply {
        Reply {
            echo_upgrade: true,
            ..Reply::new(101, Bytes::new())
                .header("Connection", "Upgrade")
                .header("Upgrade", "tcp")
                .header("Content-Type", "application/vnd.docker.raw-stream")
        }
    }
}

type Answer = Box<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

pub struct Fake {
    max: Mutex<&'static str>,
    min: &'static str,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    close_after_each: bool,
    answer: Answer,
}

/// What dockerd's middlewares put on every answer (learnt by the proxy from
/// the answer to a ping).
const DOCKERD_HEADERS: [(&str, &str); 3] = [
    ("Server", "Docker/27.0.0 (linux)"),
    ("Ostype", "linux"),
    ("Docker-Experimental", "false"),
];

/// `/_ping` answers OK with dockerd's headers, an attach switches protocols
/// and echoes ([`Reply::echo_upgrade`]), anything else answers 200 with a
/// create's answer.
pub fn basic(seen: &Seen) -> Reply {
    if seen.path().ends_with("/attach") {
        return Reply::echo_upgrade();
    }
    let reply = if seen.path().ends_with("/_ping") {
        Reply::new(200, "OK")
    } else {
        Reply::new(200, r#"{"Id":"c0ffee","Warnings":[]}"#)
    };
    DOCKERD_HEADERS
        .iter()
        .fold(reply, |reply, (name, value)| reply.header(name, *value))
}

impl Fake {
    /// A daemon serving API versions `min` to `max`, answering [`basic`].
    pub fn new(max: &'static str, min: &'static str) -> Fake {
        Fake {
            max: Mutex::new(max),
            min,
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            close_after_each: false,
            answer: Box::new(|seen| Box::pin(std::future::ready(basic(&seen)))),
        }
    }

    /// dockerd 20.10: API 1.41, down to 1.12.
    pub fn dockerd_20() -> Fake {
        Fake::new("1.41", "1.12")
    }

    /// Answers every request but the built-in ones with `answer`.
    pub fn answering<F, Fut>(mut self, answer: F) -> Fake
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        self.answer = Box::new(move |seen| Box::pin(answer(seen)));
        self
    }

    /// Closes each connection after one answer without saying so, as a
    /// daemon does with a connection it let idle out.
    pub fn closing_after_each_answer(mut self) -> Fake {
        self.close_after_each = true;
        self
    }

    pub fn max(&self) -> &'static str {
        *self.max.lock().unwrap()
    }

    /// The daemon is upgraded underneath: its newest version changes.
    pub fn set_max(&self, max: &'static str) {
        *self.max.lock().unwrap() = max;
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests so far but the proxy's own version question.
    pub fn forwarded(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| !s.is_version_question())
            .cloned()
            .collect()
    }

    pub fn forget(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Binds `socket` and serves it in a task; returns the fake.
    pub fn spawn(self, socket: &Path) -> Arc<Fake> {
        let fake = Arc::new(self);
        let listener = UnixListener::bind(socket).unwrap();
        tokio::spawn(fake.clone().serve(listener));
        fake
    }

    /// Serves `listener` until the runtime ends.
    pub async fn serve(self: Arc<Fake>, listener: UnixListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(self.clone().connection(stream));
        }
    }

    async fn connection(self: Arc<Fake>, stream: UnixStream) {
        let number = Arc::new(OnceLock::new());
        let answered = Arc::new(AtomicBool::new(false));
        let (fake, answered_in) = (self.clone(), answered.clone());
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (fake, number, answered) = (fake.clone(), number.clone(), answered_in.clone());
            async move {
                let response = fake.respond(req, &number).await;
                answered.store(true, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let io = ClosingAfterAnswer {
            stream,
            answered,
            close: self.close_after_each,
            closed: false,
        };
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
    }

    async fn respond(
        &self,
        mut req: Request<Incoming>,
        number: &OnceLock<usize>,
    ) -> Response<Full<Bytes>> {
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).ok();
        let mut seen = Seen {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            headers: parts.headers,
            body: String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned(),
            bytes,
            connection: 0,
        };
        if !seen.is_version_question() {
            seen.connection =
                *number.get_or_init(|| self.connections.fetch_add(1, Ordering::SeqCst));
        }
        self.seen.lock().unwrap().push(seen.clone());
        let reply = if let Some(message) = self.refusal(seen.path()) {
            Reply::json(400, serde_json::json!({ "message": message }).to_string())
        } else if seen.path().ends_with("/version") {
            self.version()
        } else {
            (self.answer)(seen).await
        };
        if reply.echo_upgrade {
            tokio::spawn(async move {
                let mut io = TokioIo::new(on_upgrade.await.unwrap());
                let mut received = Vec::new();
                io.read_to_end(&mut received).await.unwrap();
                io.write_all(&received.to_ascii_uppercase()).await.unwrap();
                io.write_all(b"bye").await.unwrap();
                io.shutdown().await.unwrap();
            });
        }
        let mut response = Response::builder().status(reply.status);
        for (name, value) in &reply.headers {
            response = response.header(*name, value);
        }
        response
            .header("Api-Version", self.max())
            .body(Full::new(reply.body))
            .unwrap()
    }

    fn version(&self) -> Reply {
        let (max, min) = (self.max(), self.min);
        Reply::json(
            200,
            format!(
                r#"{{"Version":"99.0.0","ApiVersion":"{max}","MinAPIVersion":"{min}","Components":[{{"Name":"Engine","Version":"99.0.0","Details":{{"ApiVersion":"{max}","MinAPIVersion":"{min}"}}}}]}}"#
            ),
        )
    }

    /// dockerd's version middleware: its refusal for a version out of range.
    fn refusal(&self, path: &str) -> Option<String> {
        let text = path.strip_prefix("/v")?.split('/').next()?;
        let number = |v: &str| {
            let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
            (major.parse::<u32>().ok(), minor.parse::<u32>().ok())
        };
        if number(text) < number(self.min) {
            return Some(format!("client version {text} is too old. Minimum supported API version is {}, please upgrade your client to a newer version", self.min));
        }
        let max = self.max();
        (number(text) > number(max)).then(|| {
            format!("client version {text} is too new. Maximum supported API version is {max}")
        })
    }
}

/// The connection's socket; with `close`, once an answer has been flushed it
/// is shut down and reads see EOF, so hyper ends the connection without
/// having said `Connection: close`.
struct ClosingAfterAnswer {
    stream: UnixStream,
    answered: Arc<AtomicBool>,
    close: bool,
    closed: bool,
}

impl AsyncRead for ClosingAfterAnswer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosingAfterAnswer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        if self.close && self.answered.load(Ordering::SeqCst) {
            std::task::ready!(Pin::new(&mut self.stream).poll_shutdown(cx))?;
            self.closed = true;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
