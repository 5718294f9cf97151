//! The validating Docker Engine API proxy (being written; see issues 3 and 4).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Where a proxy listens.
#[derive(Debug, Clone)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// A bound listening socket, ready for [`Proxy::serve`].
pub struct Listener {}

impl Listener {
    /// Binds now, so that a busy port or a bad path is an error before `ready`.
    /// A stale unix socket file left by an earlier run is replaced.
    pub async fn bind(_addr: &ListenAddr) -> anyhow::Result<Listener> {
        todo!()
    }
}

/// What the proxy forwards to.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The private dockerd socket.
    pub upstream: PathBuf,
}

pub struct Proxy {}

impl Proxy {
    pub fn new(_config: ProxyConfig) -> Arc<Proxy> {
        todo!()
    }

    /// Serves until `shutdown` is cancelled; then stops accepting and returns.
    pub async fn serve(self: Arc<Self>, _listener: Listener, _shutdown: CancellationToken) {
        todo!()
    }
}

/// `dindbox proxy` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {}

pub fn main(_args: ProxyArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
