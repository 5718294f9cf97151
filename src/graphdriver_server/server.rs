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

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::archive::Quota;
use super::beneath::Dir;
use super::overlay::{Mounter, Overlay, SysMounter};
use super::protocol::{self, InitRequest, LayerId, Reply, Request as GdRequest, ACTIVATE_REPLY};
use super::vfs::Vfs;
use super::{Driver, DriverError, DriverKind};

type Body = BoxBody<Bytes, io::Error>;

/// JSON request bodies are small; refuse anything bigger.
const MAX_JSON_BODY: usize = 1 << 20;
/// Log a call/byte summary every this many calls.
const SUMMARY_EVERY: u64 = 1000;
/// The file in a home that records which driver made it (IDs cannot start with `.`).
const DRIVER_MARKER: &str = ".dindbox-driver";
/// The file in `<root>/<container>` that records the last Init's Home, so a
/// restarted server serves the daemon's next call without a new Init (the
/// daemon calls Init only when it starts). Written by the box too: read
/// without following symlinks and validated like any Init.
const INIT_RECORD: &str = ".dindbox-init-home";

/// `dindbox graphdriver-server` options (the seed's `proxydaemon` flags).
#[derive(clap::Args, Debug, Clone)]
pub struct GraphdriverArgs {
    /// The protected directory; the container's storage lives in ROOT/CONTAINER.
    #[arg(short = 'R', long, env = "DINDBOX_GD_ROOT")]
    pub root: PathBuf,
    /// The container this server serves (one path component).
    #[arg(short = 'C', long, env = "DINDBOX_GD_CONTAINER")]
    pub container: String,
    /// The socket to listen on: unix:///path/NAME.sock (or a plain path).
    #[arg(short = 'S', long, env = "DINDBOX_GD_SOCKET")]
    pub socket: String,
    /// The storage driver; default: overlay where the kernel allows it, else vfs.
    #[arg(long, value_enum, env = "DINDBOX_GD_DRIVER")]
    pub driver: Option<DriverKind>,
    /// The most bytes the container's layers may take: a size such as 20G (suffixes b, k, m, g,
    /// t, optionally followed by b, in any case; powers of 1024).
    #[arg(long, value_parser = crate::bytesize::parse, env = "DINDBOX_GD_MAX_BYTES")]
    pub max_bytes: Option<u64>,
    /// Where ROOT/CONTAINER is bind-mounted inside the container.
    #[arg(long, default_value = "/var/lib/docker")]
    pub container_prefix: PathBuf,
    /// Log every call (debug level).
    #[arg(long)]
    pub debug: bool,
}

/// What the server was started with, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub container: String,
    pub driver: Option<DriverKind>,
    pub max_bytes: Option<u64>,
    pub container_prefix: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HomeError {
    #[error("Init Home {0:?} is not an absolute path")]
    Relative(String),
    #[error("Init Home {0:?} contains `..`")]
    DotDot(String),
    #[error("Init Home {home:?} is not below {prefix}, where this box's storage is mounted (the server's --container-prefix); run the inner dockerd with its data-root there")]
    Outside { home: String, prefix: String },
}

/// The part of the requested Home below the container prefix: absolute,
/// no `..`, `.` and doubled slashes dropped, strictly below the prefix. Pure.
pub fn reroot(prefix: &Path, home: &str) -> Result<PathBuf, HomeError> {
    let path = Path::new(home);
    if !path.is_absolute() {
        return Err(HomeError::Relative(home.to_string()));
    }
    let mut clean = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => return Err(HomeError::DotDot(home.to_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    match clean.strip_prefix(prefix) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(rel.to_path_buf()),
        _ => Err(HomeError::Outside {
            home: home.to_string(),
            prefix: prefix.display().to_string(),
        }),
    }
}

/// Opens (creating) `<root>/<container>/<rel>` one component at a time
/// without following symlinks, then checks its canonical path is inside
/// `<root>/<container>`. Returns the canonical host path and the open dir.
pub fn open_home(root: &Path, container: &str, rel: &Path) -> anyhow::Result<(PathBuf, Dir)> {
    let root_dir = Dir::open(root)
        .with_context(|| format!("cannot open the protected root {} (-R)", root.display()))?;
    let area = root_dir
        .create_rel(Path::new(container), 0o700)
        .with_context(|| format!("cannot open {}/{container}", root.display()))?;
    let home = area.create_rel(rel, 0o700).with_context(|| {
        format!(
            "cannot open Init Home {}/{container}/{}: a symlink or a non-directory is in the way (symlinks are not followed here)",
            root.display(),
            rel.display()
        )
    })?;
    let area_path = std::fs::canonicalize(area.path())?;
    let home_path = std::fs::canonicalize(home.path())?;
    if !home_path.starts_with(&area_path) {
        anyhow::bail!(
            "Init Home {} resolves to {}, outside {}",
            rel.display(),
            home_path.display(),
            area_path.display()
        );
    }
    Ok((home_path, home))
}

/// The mount holding `path` (the longest mount point above it in
/// `/proc/self/mountinfo` text) and whether it propagates mounts as a
/// shared peer group member. Pure.
pub fn shared_propagation(mountinfo: &str, path: &Path) -> Option<(String, bool)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = crate::mountinfo::unescape(fields.get(4)?);
            let separator = fields.iter().position(|f| *f == "-")?;
            let shared = fields[6..separator]
                .iter()
                .any(|f| f.starts_with("shared:"));
            path.starts_with(&mount_point)
                .then_some((mount_point, shared))
        })
        // The last of equal mount points is the one on top.
        .fold(None, |best: Option<(String, bool)>, cur| match &best {
            Some((b, _)) if b.len() > cur.0.len() => best,
            _ => Some(cur),
        })
}

/// One initialised home and its driver.
struct Session {
    host_home: PathBuf,
    container_home: PathBuf,
    driver: Arc<dyn Driver>,
    /// Bytes on disk per layer, for `--max-bytes`.
    usage: Mutex<HashMap<LayerId, u64>>,
    /// Container (read-write) layers: re-measured on Put.
    rw: Mutex<HashSet<LayerId>>,
    _home: Dir,
}

impl Session {
    /// A host path in the home, as the container sees it.
    fn to_container(&self, host: &Path) -> Result<String, DriverError> {
        let rel = host.strip_prefix(&self.host_home).map_err(|_| {
            DriverError::Invalid(format!(
                "refusing to hand out {}: it is outside the container's storage",
                host.display()
            ))
        })?;
        Ok(self.container_home.join(rel).display().to_string())
    }

    fn quota(&self, limit: Option<u64>) -> Quota {
        let used = self.usage.lock().expect("usage lock").values().sum();
        Quota::new(limit, used)
    }

    fn charge(&self, id: &LayerId, bytes: u64) {
        *self
            .usage
            .lock()
            .expect("usage lock")
            .entry(id.clone())
            .or_default() += bytes;
    }
}

#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: Arc<AtomicU64>,
}

pub struct Server {
    config: Config,
    mounter: Arc<dyn Mounter>,
    session: RwLock<Option<Arc<Session>>>,
    stats: Stats,
}

/// A failed call: the message for `{"Err"}`.
struct CallError(String);

impl<E: std::fmt::Display> From<E> for CallError {
    fn from(err: E) -> Self {
        CallError(err.to_string())
    }
}

type CallResult = Result<Reply, CallError>;

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
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            conns.spawn(async move {
                let service = service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(err) = result {
                    debug!(error = %err, "connection ended with an error");
                }
            });
        }
        // Let calls in flight finish (an ApplyDiff may take a while), within reason.
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while conns.join_next().await.is_some() {}
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
        let method = path.strip_prefix("/GraphDriver.").map(str::to_string);
        let calls = self.stats.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if calls % SUMMARY_EVERY == 0 {
            self.log_summary("periodic");
        }
        let response = if req.method() != http::Method::POST {
            drain(req.into_body()).await;
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "plugin calls are POST requests",
            )
        } else if path == "/Plugin.Activate" {
            drain(req.into_body()).await;
            json_response(
                StatusCode::OK,
                Bytes::from_static(ACTIVATE_REPLY.as_bytes()),
            )
        } else {
            match method.as_deref() {
                Some("ApplyDiff") => self.clone().apply_diff(req).await,
                Some("Diff") => self.clone().diff(req).await,
                Some(name) => self.clone().json_call(name, req).await,
                None => {
                    drain(req.into_body()).await;
                    error_response(
                        StatusCode::NOT_FOUND,
                        &format!("{path}: no such plugin call"),
                    )
                }
            }
        };
        if !response.status().is_success() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        debug!(call = %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "graphdriver call");
        response
    }

    fn session(&self) -> Result<Arc<Session>, CallError> {
        self.session
            .read()
            .expect("session lock")
            .clone()
            .ok_or_else(|| CallError("the graphdriver server has no Home yet: the daemon must call GraphDriver.Init first".into()))
    }

    async fn json_call(self: Arc<Self>, name: &str, req: Request<Incoming>) -> Response<Body> {
        let body = match read_json_body(req).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let name = name.to_string();
        let server = self.clone();
        let result = tokio::task::spawn_blocking(move || server.call(&name, &body)).await;
        match result {
            Ok(Ok(reply)) => reply_response(StatusCode::OK, &reply),
            Ok(Err(CallError(message))) => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, &message)
            }
            Err(join) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the call failed: {join}"),
            ),
        }
    }

    /// Every JSON-in, JSON-out call. Runs on a blocking thread.
    fn call(&self, name: &str, body: &[u8]) -> CallResult {
        if name == "Init" {
            let init: InitRequest = protocol::decode(body)?;
            return self.init(init);
        }
        let req: GdRequest = protocol::decode(body)?;
        if !req.id.is_empty() || !req.parent.is_empty() {
            debug!(call = name, id = %req.id, parent = %req.parent, "call");
        }
        let s = self.session()?;
        let d = &s.driver;
        match name {
            "Capabilities" => Ok(Reply {
                capabilities: Some(protocol::Capabilities::default()),
                ..Reply::default()
            }),
            "Status" => Ok(Reply {
                status: Some(d.status().into_iter().map(|(k, v)| [k, v]).collect()),
                ..Reply::default()
            }),
            "Cleanup" => {
                d.cleanup()?;
                Ok(Reply::default())
            }
            "Create" | "CreateReadWrite" => {
                let rw = name == "CreateReadWrite";
                let (id, parent) = (req.id()?, req.parent()?);
                if name == "Create" && !req.storageopt.is_empty() {
                    return Err(CallError(
                        "storage options are not supported for image layers".into(),
                    ));
                }
                let mut quota = s.quota(self.config.max_bytes);
                d.create(&id, parent.as_ref(), rw, &mut quota)?;
                s.charge(&id, quota.charged());
                if rw {
                    s.rw.lock().expect("rw lock").insert(id);
                }
                Ok(Reply::default())
            }
            "Remove" => {
                let id = req.id()?;
                d.remove(&id)?;
                s.usage.lock().expect("usage lock").remove(&id);
                s.rw.lock().expect("rw lock").remove(&id);
                Ok(Reply::default())
            }
            "Get" => {
                let id = req.id()?;
                let dir = d.get(&id)?;
                Ok(Reply {
                    dir: s.to_container(&dir)?,
                    ..Reply::default()
                })
            }
            "Put" => {
                let id = req.id()?;
                d.put(&id)?;
                // The container may have written into its layer meanwhile.
                if s.rw.lock().expect("rw lock").contains(&id) {
                    if let Ok(size) = d.size(&id) {
                        s.usage.lock().expect("usage lock").insert(id, size);
                    }
                }
                Ok(Reply::default())
            }
            "Exists" => Ok(Reply {
                exists: d.exists(&req.id()?),
                ..Reply::default()
            }),
            "GetMetadata" => {
                let meta = d.metadata(&req.id()?)?;
                let mut out = std::collections::BTreeMap::new();
                for (key, paths) in meta {
                    let shown = paths
                        .iter()
                        .map(|p| s.to_container(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.insert(key, shown.join(":"));
                }
                Ok(Reply {
                    metadata: Some(out),
                    ..Reply::default()
                })
            }
            "Changes" => Ok(Reply {
                changes: Some(d.changes(&req.id()?, req.parent()?.as_ref())?),
                ..Reply::default()
            }),
            "DiffSize" => {
                let id = req.id()?;
                let size = d.diff_size(&id, req.parent()?.as_ref())?;
                Ok(Reply::size(size))
            }
            other => Err(CallError(format!(
                "GraphDriver.{other} is not a graphdriver call"
            ))),
        }
    }

    fn init(&self, init: InitRequest) -> CallResult {
        info!(home = %init.home, opts = ?init.opts, "Init");
        if !init.uidmaps.is_empty() || !init.gidmaps.is_empty() {
            return Err(CallError(
                "user-namespace remapping (dockerd --userns-remap) is not supported by dindbox graphdriver-server; run the inner dockerd without it".into(),
            ));
        }
        let rel = reroot(&self.config.container_prefix, &init.home)?;
        let (host_home, home) = open_home(&self.config.root, &self.config.container, &rel)
            .map_err(|e| CallError(format!("{e:#}")))?;
        if let Some(current) = self.session.read().expect("session lock").as_ref() {
            if current.host_home == host_home {
                return Ok(Reply::default());
            }
        }
        let driver = self.open_driver(&host_home, &home)?;
        if driver.name() == "overlay" {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            if let Some((mount_point, false)) = shared_propagation(&mountinfo, &host_home) {
                warn!(
                    home = %host_home.display(),
                    mount = %mount_point,
                    "the storage is not on a shared mount, so overlay mounts made here will not reach the box; \
                     on the host run `mount --bind ROOT/CONTAINER ROOT/CONTAINER && mount --make-shared ROOT/CONTAINER` \
                     and bind it into the box with rslave propagation"
                );
            }
        }
        let mut usage = HashMap::new();
        for id in driver.layers()? {
            let size = driver.size(&id).unwrap_or(0);
            usage.insert(id, size);
        }
        info!(
            host_home = %host_home.display(),
            driver = driver.name(),
            layers = usage.len(),
            bytes = usage.values().sum::<u64>(),
            max_bytes = ?self.config.max_bytes,
            "home ready"
        );
        let session = Session {
            host_home,
            container_home: self.config.container_prefix.join(&rel),
            driver,
            usage: Mutex::new(usage),
            rw: Mutex::new(HashSet::new()),
            _home: home,
        };
        *self.session.write().expect("session lock") = Some(Arc::new(session));
        if let Err(err) = self.record_home(&init.home) {
            warn!(error = %err, "cannot record the Home; a restarted server will wait for the daemon's next Init");
        }
        Ok(Reply::default())
    }

    fn area(&self) -> io::Result<Dir> {
        Dir::open(&self.config.root)?.open_rel(Path::new(&self.config.container))
    }

    fn record_home(&self, home: &str) -> io::Result<()> {
        let area = self.area()?;
        let name = std::ffi::OsStr::new(INIT_RECORD);
        area.remove(name)?;
        area.create_file(name, 0o600)?.write_all(home.as_bytes())
    }

    /// Re-opens the Home the previous server process was given (see
    /// [`INIT_RECORD`]). `Ok(None)`: no record, the daemon's Init will come.
    pub fn resume(&self) -> anyhow::Result<Option<String>> {
        let file = match self
            .area()
            .and_then(|area| area.open_file(std::ffi::OsStr::new(INIT_RECORD)))
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).context("reading the Home of the previous run"),
        };
        let mut home = String::new();
        file.take(4096)
            .read_to_string(&mut home)
            .context("reading the Home of the previous run")?;
        self.init(InitRequest {
            home: home.clone(),
            opts: Vec::new(),
            uidmaps: Vec::new(),
            gidmaps: Vec::new(),
        })
        .map_err(|CallError(message)| anyhow::anyhow!("{message}"))?;
        Ok(Some(home))
    }

    fn open_driver(&self, host_home: &Path, home: &Dir) -> Result<Arc<dyn Driver>, CallError> {
        let marker = std::ffi::OsStr::new(DRIVER_MARKER);
        let recorded = home.open_file(marker).ok().and_then(|mut f| {
            let mut text = String::new();
            f.read_to_string(&mut text)
                .ok()
                .map(|_| text.trim().to_string())
        });
        let overlay = || -> Result<Arc<dyn Driver>, CallError> {
            let driver = Overlay::open(host_home, home, self.mounter.clone())?;
            driver.probe()?;
            Ok(Arc::new(driver))
        };
        let vfs =
            || -> Result<Arc<dyn Driver>, CallError> { Ok(Arc::new(Vfs::open(host_home, home)?)) };
        let driver = match (self.config.driver, recorded.as_deref()) {
            (Some(kind), Some(rec)) if rec != kind.name() => {
                return Err(CallError(format!(
                    "{} holds layers of the {rec} driver; start the server with --driver {rec}, or remove that directory to start afresh",
                    host_home.display()
                )))
            }
            (Some(DriverKind::Overlay), _) | (None, Some("overlay")) => overlay()?,
            (Some(DriverKind::Vfs), _) | (None, Some("vfs")) => vfs()?,
            (None, _) => match overlay() {
                Ok(driver) => driver,
                Err(CallError(why)) => {
                    warn!(reason = %why, "overlay is not available here; using the vfs driver");
                    vfs()?
                }
            },
        };
        if recorded.is_none() {
            home.create_file(marker, 0o644)
                .and_then(|mut f| f.write_all(driver.name().as_bytes()))
                .map_err(|e| {
                    CallError(format!(
                        "recording the driver in {}: {e}",
                        host_home.display()
                    ))
                })?;
        }
        Ok(driver)
    }

    /// `POST /GraphDriver.ApplyDiff?id=ID&parent=PARENT` with a raw tar body,
    /// streamed to disk through a bounded channel.
    async fn apply_diff(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (mut id, mut parent) = (String::new(), String::new());
        for (key, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "id" => id = value.into_owned(),
                "parent" => parent = value.into_owned(),
                _ => {}
            }
        }
        debug!(%id, %parent, "ApplyDiff");
        let checked = (|| -> Result<_, CallError> {
            let id = LayerId::parse(&id)?;
            let parent = protocol::optional_id(&parent)?;
            Ok((self.session()?, id, parent))
        })();
        let (session, id, parent) = match checked {
            Ok(ok) => ok,
            Err(CallError(message)) => {
                drain(req.into_body()).await;
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, &message);
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
        // Pump the body into the channel in batches of frames (one wake-up
        // of the applier per batch, not per frame); once the applier stops
        // (done or failed) keep reading to the end, so the daemon gets our
        // answer rather than a broken pipe.
        let mut body = req.into_body();
        let mut tx = Some(tx);
        let mut batch = Vec::new();
        let mut batched = 0;
        loop {
            let frame = body.frame().await;
            if let Some(Ok(frame)) = &frame {
                if let Some(data) = frame.data_ref() {
                    self.stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
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
        drop(tx);
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
    async fn diff(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let body = match read_json_body(req).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let server = self.clone();
        let prepared = tokio::task::spawn_blocking(move || -> Result<_, CallError> {
            let req: GdRequest = protocol::decode(&body)?;
            let (id, parent) = (req.id()?, req.parent()?);
            debug!(%id, parent = ?parent, "Diff");
            let session = server.session()?;
            Ok(session.driver.diff(&id, parent.as_ref())?)
        })
        .await;
        let source = match prepared {
            Ok(Ok(source)) => source,
            Ok(Err(CallError(message))) => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, &message)
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

const CHUNK: usize = 64 * 1024;

/// ApplyDiff hands the body to the applier in batches of about this many bytes.
const BATCH: usize = 256 * 1024;

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
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }
}

async fn drain(mut body: Incoming) {
    while let Some(Ok(_)) = body.frame().await {}
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/vnd.docker.plugins.v1.2+json"),
    );
    response
}

fn reply_response(status: StatusCode, reply: &Reply) -> Response<Body> {
    let body = serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec());
    json_response(status, Bytes::from(body))
}

/// A JSON call's whole body (at most [`MAX_JSON_BODY`]), or the 400 to answer.
async fn read_json_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_JSON_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("reading the request body: {err}"),
        )),
    }
}

fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    reply_response(status, &Reply::error(message))
}

/// `unix:///path` or a plain absolute path.
pub fn socket_path(spec: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(spec.strip_prefix("unix://").unwrap_or(spec));
    if spec.contains("://") && !spec.starts_with("unix://") {
        anyhow::bail!("--socket {spec}: only unix:// sockets are supported");
    }
    if !path.is_absolute() {
        anyhow::bail!(
            "--socket {spec}: give an absolute path, e.g. unix:///run/dindbox/gd/NAME.sock"
        );
    }
    if path.as_os_str().len() >= 108 {
        anyhow::bail!(
            "--socket {spec}: the path is longer than a unix socket address allows (107 bytes)"
        );
    }
    Ok(path)
}

async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
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

/// Validates the flags into a [`Config`].
pub fn config(args: &GraphdriverArgs) -> anyhow::Result<Config> {
    LayerId::parse(&args.container).map_err(|e| {
        anyhow::anyhow!(
            "--container {:?} must be one safe path component: {e}",
            args.container
        )
    })?;
    if !args.root.is_absolute() {
        anyhow::bail!("--root {} must be an absolute path", args.root.display());
    }
    let meta = std::fs::metadata(&args.root).with_context(|| {
        format!(
            "--root {}: create the protected directory first",
            args.root.display()
        )
    })?;
    if !meta.is_dir() {
        anyhow::bail!("--root {} is not a directory", args.root.display());
    }
    let prefix = reroot(Path::new("/"), &args.container_prefix.to_string_lossy())
        .map(|rel| Path::new("/").join(rel))
        .or_else(|_| {
            if args.container_prefix == Path::new("/") {
                Ok(PathBuf::from("/"))
            } else {
                Err(anyhow::anyhow!(
                    "--container-prefix {} must be an absolute path without `..`",
                    args.container_prefix.display()
                ))
            }
        })?;
    Ok(Config {
        root: std::fs::canonicalize(&args.root)?,
        container: args.container.clone(),
        driver: args.driver,
        max_bytes: args.max_bytes,
        container_prefix: prefix,
    })
}

/// Runs the server until SIGINT or SIGTERM.
pub fn main(args: GraphdriverArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let socket = socket_path(&args.socket)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        let listener = bind(&socket).await?;
        info!(
            socket = %socket.display(),
            root = %config.root.display(),
            container = %config.container,
            driver = ?config.driver.map(DriverKind::name),
            max_bytes = ?config.max_bytes,
            container_prefix = %config.container_prefix.display(),
            "graphdriver server ready"
        );
        let server = Server::new(config, Arc::new(SysMounter));
        // A restart (crash, upgrade) while the box's dockerd runs on: that
        // daemon will not call Init again.
        match server.resume() {
            Ok(Some(home)) => info!(%home, "re-opened the Home of the previous run"),
            Ok(None) => {}
            Err(err) => warn!(error = %format!("{err:#}"), "could not re-open the Home of the previous run; waiting for the daemon's Init"),
        }
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.clone().serve(listener, shutdown.clone()));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        // Mounts stay: containers may be running on them, and a restarted
        // server adopts them (see overlay.rs).
        shutdown.cancel();
        let _ = task.await;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_are_rerooted_below_the_prefix() {
        let prefix = Path::new("/var/lib/docker");
        let table: [(&str, Result<&str, HomeError>); 9] = [
            ("/var/lib/docker/dindbox", Ok("dindbox")),
            ("/var/lib/docker//dindbox/./x", Ok("dindbox/x")),
            (
                "/var/lib/docker/",
                Err(HomeError::Outside {
                    home: "/var/lib/docker/".into(),
                    prefix: "/var/lib/docker".into(),
                }),
            ),
            (
                "/var/lib/dockerx/gd",
                Err(HomeError::Outside {
                    home: "/var/lib/dockerx/gd".into(),
                    prefix: "/var/lib/docker".into(),
                }),
            ),
            (
                "/etc",
                Err(HomeError::Outside {
                    home: "/etc".into(),
                    prefix: "/var/lib/docker".into(),
                }),
            ),
            (
                "/var/lib/docker/../../../etc",
                Err(HomeError::DotDot("/var/lib/docker/../../../etc".into())),
            ),
            (
                "/var/lib/docker/gd/..",
                Err(HomeError::DotDot("/var/lib/docker/gd/..".into())),
            ),
            (
                "var/lib/docker/gd",
                Err(HomeError::Relative("var/lib/docker/gd".into())),
            ),
            ("", Err(HomeError::Relative("".into()))),
        ];
        for (home, want) in table {
            assert_eq!(reroot(prefix, home), want.map(PathBuf::from), "{home}");
        }
        // The seed's scheme: the whole container path below <root>/<container>.
        assert_eq!(
            reroot(Path::new("/"), "/var/lib/docker/gd").unwrap(),
            PathBuf::from("var/lib/docker/gd")
        );
    }

    #[test]
    fn an_escaping_home_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("protected");
        std::fs::create_dir_all(root.join("box")).unwrap();
        std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        // What a container could plant through its bind mount.
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), root.join("box/gd")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("box/up")).unwrap();
        for rel in ["gd", "gd/x", "up/escape"] {
            let err = open_home(&root, "box", Path::new(rel)).unwrap_err();
            assert!(format!("{err:#}").contains("symlink"), "{rel}: {err:#}");
        }
        assert!(std::fs::read_dir(tmp.path().join("elsewhere"))
            .unwrap()
            .next()
            .is_none());
        let (path, _dir) = open_home(&root, "box", Path::new("ok/home")).unwrap();
        assert_eq!(
            path,
            std::fs::canonicalize(root.join("box/ok/home")).unwrap()
        );
    }

    #[test]
    fn the_mount_under_a_home_and_its_propagation() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 8:1 /protected /protected rw,relatime - ext4 /dev/vda rw
31 30 8:1 /protected/box /protected/box rw,relatime shared:7 - ext4 /dev/vda rw
32 22 0:5 / /with\\040space rw master:3 - tmpfs tmpfs rw
";
        let table = [
            ("/protected/box/dindbox", Some(("/protected/box", true))),
            ("/protected/other/dindbox", Some(("/protected", false))),
            ("/var/lib", Some(("/", true))),
            ("/with space/x", Some(("/with space", false))),
        ];
        for (path, want) in table {
            let got = shared_propagation(info, Path::new(path));
            assert_eq!(got, want.map(|(m, s)| (m.to_string(), s)), "{path}");
        }
        assert_eq!(shared_propagation("", Path::new("/x")), None);
    }

    #[test]
    fn socket_specs() {
        assert_eq!(
            socket_path("unix:///run/gd/a.sock").unwrap(),
            PathBuf::from("/run/gd/a.sock")
        );
        assert_eq!(
            socket_path("/run/gd/a.sock").unwrap(),
            PathBuf::from("/run/gd/a.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://rel.sock").is_err());
        assert!(socket_path(&format!("/{}", "x".repeat(120))).is_err());
    }
}
