//! `dindbox snapshotter-server`: the host side of a box's storage on
//! Docker 28 and later, a containerd proxy snapshotter.
//!
//! The box's containerd reaches it as `[proxy_plugins.NAME] type =
//! "snapshot"` over a unix socket and calls containerd's snapshots gRPC
//! service (served with the `containerd-snapshots` crate and tonic). The
//! server keeps the box's snapshots in its protected area `ROOT/NAME`, and
//! does the mounting itself: each active snapshot or view is mounted on
//! the host in `ROOT/NAME/shared/<id>`, a shared mount the box sees through
//! an rslave bind, and `Mounts` hands the box a bind of that. The box is
//! known by the socket it was given, never by what it sends.
//!
//! - [`cli`]: the flags and the validated [`Config`];
//! - [`service`]: the calls, their rules, the quota;
//! - [`store`]: the records, in redb;
//! - [`area`]: the directories and mounts in `ROOT/NAME`;
//! - [`filter`]: Walk's filters.

#![forbid(unsafe_code)]

pub mod area;
pub mod cli;
pub mod filter;
pub mod service;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::info;

use self::area::Area;
pub use self::cli::{Config, SnapshotterArgs};
use self::service::Service;

/// Runs the server until SIGINT or SIGTERM.
pub fn main(args: SnapshotterArgs) -> anyhow::Result<()> {
    let config = cli::config(&args)?;
    let area = Area::open(&config.root, &config.container, &config.container_prefix)?;
    let service = Service::open(area, config.max_bytes)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(serve(config, service))
}

async fn serve(config: Config, service: Service) -> anyhow::Result<()> {
    let listener = crate::graphdriver_server::server::bind(&config.socket).await?;
    info!(
        socket = %config.socket.display(),
        root = %config.root.display(),
        container = %config.container,
        max_bytes = ?config.max_bytes,
        container_prefix = %config.container_prefix.display(),
        "snapshotter server ready"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    // Mounts stay when the server stops: the box's containers run on them,
    // and a restarted server finds them (see Service::open).
    containerd_snapshots::tonic::transport::Server::builder()
        .add_service(containerd_snapshots::server(Arc::new(service)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serving the snapshots service")?;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
