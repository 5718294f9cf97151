//! The JSON-in, JSON-out calls: `Init`, which opens the Home, and the
//! [`DriverCall`]s, each a thin step from the decoded request to the
//! [`Driver`](super::Driver) and back to a [`Reply`].

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::{debug, info, warn};

use super::home::{self, HomeError, OpenDriverError, OpenHomeError};
use super::protocol::{self, DriverCall, IdError, InitRequest, Reply, Request as GdRequest};
use super::response::{error_response, read_json_body, reply_response, Body};
use super::server::Server;
use super::session::Session;
use super::DriverError;

/// A failed call: its message is the `{"Err"}` of the answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Decode(#[from] serde_json::Error),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    OpenHome(#[from] OpenHomeError),
    #[error(transparent)]
    OpenDriver(#[from] OpenDriverError),
    #[error("the graphdriver server has no Home yet: the daemon must call GraphDriver.Init first")]
    NoHome,
    #[error("user-namespace remapping (dockerd --userns-remap) is not supported by dindbox graphdriver-server; run the inner dockerd without it")]
    UsernsRemap,
    #[error("storage options are not supported for image layers")]
    StorageOptions,
}

impl Server {
    /// Reads a JSON call's body and answers it with `call`, run on a
    /// blocking thread (the driver's work blocks).
    pub(super) async fn json_call(
        self: Arc<Self>,
        req: Request<Incoming>,
        call: impl FnOnce(&Server, &Bytes) -> Result<Reply, CallError> + Send + 'static,
    ) -> Response<Body> {
        let body = match read_json_body(req).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let result = tokio::task::spawn_blocking(move || call(&self, &body)).await;
        match result {
            Ok(Ok(reply)) => reply_response(StatusCode::OK, &reply),
            Ok(Err(err)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
            Err(join) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the call failed: {join}"),
            ),
        }
    }

    /// `GraphDriver.Init`: re-roots and opens the Home, starts its driver
    /// and records it for a restarted server. Again with the same Home: a no-op.
    pub(super) fn init(&self, init: InitRequest) -> Result<Reply, CallError> {
        info!(home = %init.home, opts = ?init.opts, "Init");
        if !init.uidmaps.is_empty() || !init.gidmaps.is_empty() {
            return Err(CallError::UsernsRemap);
        }
        let config = &self.config;
        let rel = home::reroot(&config.container_prefix, &init.home)?;
        let (host_home, dir) = home::open_home(&config.root, &config.container, &rel)?;
        if let Some(current) = self.session.read().expect("session lock").as_ref() {
            if current.host_home == host_home {
                return Ok(Reply::default());
            }
        }
        let driver = home::open_driver(config.driver, self.mounter.clone(), &host_home, &dir)?;
        if driver.name() == "overlay" {
            home::warn_unless_shared(&host_home);
        }
        let container_home = config.container_prefix.join(&rel);
        let session = Session::open(host_home, container_home, dir, driver, config.max_bytes)?;
        *self.session.write().expect("session lock") = Some(Arc::new(session));
        if let Err(err) = home::record(&config.root, &config.container, &init.home) {
            warn!(error = %err, "cannot record the Home; a restarted server will wait for the daemon's next Init");
        }
        Ok(Reply::default())
    }

    /// A call on the initialised Home.
    pub(super) fn driver_call(&self, call: DriverCall, body: &[u8]) -> Result<Reply, CallError> {
        let req: GdRequest = protocol::decode(body)?;
        if !req.id.is_empty() || !req.parent.is_empty() {
            debug!(call = call.name(), layer = %req.id, parent = %req.parent, "call");
        }
        let s = self.session()?;
        let d = &s.driver;
        match call {
            DriverCall::Capabilities => Ok(Reply {
                capabilities: Some(protocol::Capabilities::default()),
                ..Reply::default()
            }),
            DriverCall::Status => Ok(Reply {
                status: Some(d.status().into_iter().map(|(k, v)| [k, v]).collect()),
                ..Reply::default()
            }),
            DriverCall::Cleanup => {
                d.cleanup()?;
                Ok(Reply::default())
            }
            DriverCall::Create | DriverCall::CreateReadWrite => {
                let rw = call == DriverCall::CreateReadWrite;
                let (id, parent) = (req.id()?, req.parent()?);
                if !rw && !req.storageopt.is_empty() {
                    return Err(CallError::StorageOptions);
                }
                let mut quota = s.quota(self.config.max_bytes);
                d.create(&id, parent.as_ref(), rw, &mut quota)?;
                s.charge(&id, quota.charged());
                if rw {
                    s.add_rw(id);
                }
                Ok(Reply::default())
            }
            DriverCall::Remove => {
                let id = req.id()?;
                d.remove(&id)?;
                s.forget(&id);
                Ok(Reply::default())
            }
            DriverCall::Get => {
                let dir = d.get(&req.id()?)?;
                Ok(Reply {
                    dir: s.to_container(&dir)?,
                    ..Reply::default()
                })
            }
            DriverCall::Put => {
                let id = req.id()?;
                d.put(&id)?;
                s.remeasure(&id);
                Ok(Reply::default())
            }
            DriverCall::Exists => Ok(Reply {
                exists: d.exists(&req.id()?),
                ..Reply::default()
            }),
            DriverCall::GetMetadata => {
                let mut out = BTreeMap::new();
                for (key, paths) in d.metadata(&req.id()?)? {
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
            DriverCall::Changes => Ok(Reply {
                changes: Some(d.changes(&req.id()?, req.parent()?.as_ref())?),
                ..Reply::default()
            }),
            DriverCall::DiffSize => {
                let id = req.id()?;
                Ok(Reply::size(d.diff_size(&id, req.parent()?.as_ref())?))
            }
        }
    }

    /// Re-opens the Home the previous server process was given (see
    /// [`home::recorded`]). `Ok(None)`: no record, the daemon's Init will come.
    pub fn resume(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context;
        let Some(home) = home::recorded(&self.config.root, &self.config.container)
            .context("reading the Home of the previous run")?
        else {
            return Ok(None);
        };
        self.init(InitRequest {
            home: home.clone(),
            opts: Vec::new(),
            uidmaps: Vec::new(),
            gidmaps: Vec::new(),
        })
        .map_err(|err| anyhow::anyhow!("{err}"))?;
        Ok(Some(home))
    }
}
