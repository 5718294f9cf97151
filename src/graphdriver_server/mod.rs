//! `dindbox graphdriver-server`: the host side of the proxy graphdriver.
//!
//! An inner dockerd started with `--experimental -s <name>` talks Docker's
//! graphdriver plugin protocol (HTTP/1.1 over a unix socket, moby
//! `daemon/graphdriver/proxy.go` at v20.10.24) to this server. The server
//! keeps the container's layers in its own protected directory on the host
//! (`<root>/<container>/…`, re-rooted from the Home the daemon sends in
//! `Init`) and does the storage work there: overlay mounts, copies, tar
//! apply and diff. Everything it receives is treated as hostile. (The box's
//! side, the plugin spec and dockerd's flags, is `init::graphdriver_plugin`.)
//!
//! - [`cli`]: the flags and the validated [`Config`];
//! - [`protocol`]: wire types, the [`Call`](protocol::Call)s, ID validation;
//! - [`server`]: the socket, the serving loop, dispatch by call;
//! - [`calls`]: `Init` and the JSON calls on the driver;
//! - [`stream`]: `ApplyDiff` and `Diff`, streamed through bounded channels;
//! - [`response`]: replies, errors and bounded request bodies;
//! - [`home`]: Init's Home re-rooted and opened, its driver, its record;
//! - [`session`]: one opened Home, its driver and its usage for `--max-bytes`;
//! - [`driver`]: the [`Driver`] trait; [`overlay`] and [`vfs`] implement it;
//! - [`archive`], [`changes`]: tar apply/produce with whiteouts, tree diffs;
//! - [`beneath`]: file access that cannot be steered out of the tree.

#![forbid(unsafe_code)]

pub mod archive;
pub mod beneath;
pub mod calls;
pub mod changes;
pub mod cli;
pub mod driver;
pub mod home;
pub mod overlay;
pub mod protocol;
pub mod response;
pub mod server;
pub mod session;
pub mod stream;
pub mod vfs;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::cli::{Config, GraphdriverArgs};
pub use self::driver::{DiffSource, Driver, DriverError, DriverKind, LayerDirs};
use self::overlay::SysMounter;
use self::server::Server;

/// Runs the server until SIGINT or SIGTERM.
pub fn main(args: GraphdriverArgs) -> anyhow::Result<()> {
    let config = cli::config(&args)?;
    let socket = cli::socket_path(&args.socket)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        let listener = server::bind(&socket).await?;
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
