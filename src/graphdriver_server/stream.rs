//! The two calls whose bodies are layer tars, streamed rather than held:
//! `ApplyDiff` reads the request body into a blocking applier through a
//! bounded channel, `Diff` writes the tar from a blocking thread into a
//! bounded channel that the response body streams from.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::calls::CallError;
use super::protocol::{self, LayerId, Reply, Request as GdRequest};
use super::response::{drain, error_response, read_json_body, reply_response, Body};
use super::server::Server;

/// Diff sends the tar in chunks of this many bytes.
const CHUNK: usize = 64 * 1024;

/// ApplyDiff hands the body to the applier in batches of about this many bytes.
const BATCH: usize = 256 * 1024;

/// Batches of request body frames on their way to the applier.
type Batches = mpsc::Sender<io::Result<Vec<Bytes>>>;

impl Server {
    /// `POST /GraphDriver.ApplyDiff?id=ID&parent=PARENT` with a raw tar body,
    /// streamed to disk through a bounded channel.
    pub(super) async fn apply_diff(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (mut id, mut parent) = (String::new(), String::new());
        for (key, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "id" => id = value.into_owned(),
                "parent" => parent = value.into_owned(),
                _ => {}
            }
        }
        debug!(layer = %id, %parent, "ApplyDiff");
        let checked = (|| -> Result<_, CallError> {
            let id = LayerId::parse(&id)?;
            let parent = protocol::optional_id(&parent)?;
            Ok((self.session()?, id, parent))
        })();
        let (session, id, parent) = match checked {
            Ok(ok) => ok,
            Err(err) => {
                drain(req.into_body()).await;
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string());
            }
        };
        let (tx, rx) = mpsc::channel::<io::Result<Vec<Bytes>>>(8);
        let quota = session.quota(self.config.max_bytes);
        let apply = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                current: VecDeque::new(),
            };
            let mut quota = quota;
            let result = session
                .driver
                .apply_diff(&id, parent.as_ref(), &mut reader, &mut quota);
            // Whatever was written is on disk, success or not.
            session.charge(&id, quota.charged());
            result
        });
        pump(req.into_body(), tx, &self.stats.bytes_in).await;
        match apply.await {
            Ok(Ok(size)) => reply_response(StatusCode::OK, &Reply::size(size)),
            Ok(Err(err)) => {
                warn!(error = %err, "ApplyDiff refused");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
            }
            Err(join) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("ApplyDiff failed: {join}"),
            ),
        }
    }

    /// `POST /GraphDriver.Diff`: the tar is written by a blocking thread into
    /// a bounded channel that the response body streams from. Errors found
    /// before the first byte are a 500; later ones cut the stream.
    pub(super) async fn diff(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let body = match read_json_body(req).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let server = self.clone();
        let prepared = tokio::task::spawn_blocking(move || -> Result<_, CallError> {
            let req: GdRequest = protocol::decode(&body)?;
            let (id, parent) = (req.id()?, req.parent()?);
            debug!(layer = %id, parent = ?parent, "Diff");
            let session = server.session()?;
            Ok(session.driver.diff(&id, parent.as_ref())?)
        })
        .await;
        let source = match prepared {
            Ok(Ok(source)) => source,
            Ok(Err(err)) => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
            }
            Err(join) => {
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Diff failed: {join}"),
                )
            }
        };
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
        let counter = self.stats.bytes_out.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
                counter,
            };
            if let Err(err) = source.write_tar(&mut writer) {
                warn!(error = %err, "Diff stream failed");
                let _ = tx.blocking_send(Err(err));
            }
        });
        let mut response = Response::new(ChannelBody { rx }.boxed());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-tar"),
        );
        response
    }
}

/// Pumps the body into the channel in batches of frames (one wake-up of the
/// applier per batch, not per frame); once the applier stops (done or
/// failed) keeps reading to the end, so the daemon gets our answer rather
/// than a broken pipe.
async fn pump(mut body: Incoming, tx: Batches, bytes_in: &AtomicU64) {
    let mut tx = Some(tx);
    let mut batch = Vec::new();
    let mut batched = 0;
    loop {
        let frame = body.frame().await;
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                if tx.is_some() {
                    batched += data.len();
                    batch.push(data.clone());
                }
            }
        }
        let end = !matches!(frame, Some(Ok(_)));
        if let (Some(sender), true) = (&tx, end || batched >= BATCH) {
            if !batch.is_empty() && sender.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                tx = None;
            }
            batched = 0;
        }
        match frame {
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                if let Some(sender) = tx.take() {
                    let _ = sender
                        .send(Err(io::Error::other(format!(
                            "reading the request body: {err}"
                        ))))
                        .await;
                }
                break;
            }
            None => break,
        }
    }
}

/// The blocking side of a request body.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<Bytes>>>,
    current: VecDeque<Bytes>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.current.front_mut() {
                Some(data) if data.is_empty() => {
                    self.current.pop_front();
                }
                Some(data) => {
                    let n = buf.len().min(data.len());
                    buf[..n].copy_from_slice(&data.split_to(n));
                    return Ok(n);
                }
                None => match self.rx.blocking_recv() {
                    Some(Ok(batch)) => self.current.extend(batch),
                    Some(Err(err)) => return Err(err),
                    None => return Ok(0),
                },
            }
        }
    }
}

/// The blocking side of a streamed response body.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    counter: Arc<AtomicU64>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.counter
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the daemon stopped reading the diff",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }
}
