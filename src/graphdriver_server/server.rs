//! The plugin socket: HTTP/1.1 over a unix socket (keep-alive; any or no
//! `Host`; no Content-Type needed), `POST /Plugin.Activate` and
//! `POST /GraphDriver.<Method>`. Errors are `{"Err": "..."}` with status 500.
//!
//! One server serves one container: its identity is the socket the
//! operator gave it (`-C`), never anything in a request. `Init` re-roots
//! the Home the daemon asks for under `<root>/<container>`, and every path
//! handed back is translated to the container's view of the same place:
//! the operator bind-mounts `<root>/<container>` at `--container-prefix`
//! (default `/var/lib/docker`) inside the box.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::serve;

use super::calls::CallError;
use super::cli::Config;
use super::overlay::Mounter;
use super::protocol::{self, Call, InitRequest, UnknownCall, ACTIVATE_REPLY};
use super::response::{drain, error_response, json_response, Body};
use super::session::Session;

/// Log a call/byte summary every this many calls.
const SUMMARY_EVERY: u64 = 1000;

#[derive(Default)]
pub(super) struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: Arc<AtomicU64>,
}

pub struct Server {
    pub(super) config: Config,
    pub(super) mounter: Arc<dyn Mounter>,
    pub(super) session: RwLock<Option<Arc<Session>>>,
    pub(super) stats: Stats,
}

impl Server {
    pub fn new(config: Config, mounter: Arc<dyn Mounter>) -> Arc<Server> {
        Arc::new(Server {
            config,
            mounter,
            session: RwLock::new(None),
            stats: Stats::default(),
        })
    }

    pub async fn serve(self: Arc<Self>, listener: UnixListener, shutdown: CancellationToken) {
        // Let calls in flight finish (an ApplyDiff may take a while), within reason.
        let limits = serve::Limits {
            drain: Some(Duration::from_secs(30)),
            ..serve::Limits::default()
        };
        serve::accept_loop(&listener, limits, &shutdown, |stream, shutdown| {
            let server = self.clone();
            async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                serve::connection(stream, service, limits, &shutdown, "box").await;
            }
        })
        .await;
        self.log_summary("shutdown");
    }

    fn log_summary(&self, when: &str) {
        info!(
            when,
            calls = self.stats.calls.load(Ordering::Relaxed),
            errors = self.stats.errors.load(Ordering::Relaxed),
            bytes_in = self.stats.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.stats.bytes_out.load(Ordering::Relaxed),
            container = %self.config.container,
            "graphdriver call summary"
        );
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let path = req.uri().path().to_string();
        let calls = self.stats.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if calls.is_multiple_of(SUMMARY_EVERY) {
            self.log_summary("periodic");
        }
        let response = if req.method() != http::Method::POST {
            drain(req.into_body()).await;
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "plugin calls are POST requests",
            )
        } else {
            self.clone().dispatch(&path, req).await
        };
        if !response.status().is_success() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        debug!(call = %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "graphdriver call");
        response
    }

    async fn dispatch(self: Arc<Self>, path: &str, req: Request<Incoming>) -> Response<Body> {
        match Call::parse(path) {
            Ok(Call::Activate) => {
                drain(req.into_body()).await;
                json_response(
                    StatusCode::OK,
                    Bytes::from_static(ACTIVATE_REPLY.as_bytes()),
                )
            }
            Ok(Call::Init) => {
                self.json_call(req, |server, body| {
                    let init: InitRequest = protocol::decode(body)?;
                    server.init(init)
                })
                .await
            }
            Ok(Call::ApplyDiff) => self.apply_diff(req).await,
            Ok(Call::Diff) => self.diff(req).await,
            Ok(Call::Driver(call)) => {
                self.json_call(req, move |server, body| server.driver_call(call, body))
                    .await
            }
            Err(UnknownCall::Method(method)) => {
                drain(req.into_body()).await;
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("GraphDriver.{method} is not a graphdriver call"),
                )
            }
            Err(UnknownCall::Path) => {
                drain(req.into_body()).await;
                error_response(
                    StatusCode::NOT_FOUND,
                    &format!("{path}: no such plugin call"),
                )
            }
        }
    }

    /// The Home Init opened.
    pub(super) fn session(&self) -> Result<Arc<Session>, CallError> {
        self.session
            .read()
            .expect("session lock")
            .clone()
            .ok_or(CallError::NoHome)
    }
}

/// Listens on `path`, replacing a stale socket but nothing else.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("{} is already served by another process", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}
