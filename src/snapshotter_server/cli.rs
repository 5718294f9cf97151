//! `dindbox snapshotter-server`'s flags and the [`Config`] they validate into.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use crate::graphdriver_server::cli::{
    container_name, container_prefix, protected_root, socket_path,
};

/// Where the box sees `ROOT/NAME/shared` unless told otherwise.
pub const DEFAULT_CONTAINER_PREFIX: &str = "/var/lib/dindbox-snapshots";

/// `dindbox snapshotter-server` options (the seed's `proxydaemon` flags).
#[derive(clap::Args, Debug, Clone)]
pub struct SnapshotterArgs {
    /// The protected directory; the box's snapshots live in ROOT/CONTAINER.
    #[arg(short = 'R', long, env = "DINDBOX_SN_ROOT")]
    pub root: PathBuf,
    /// The box this server serves (one path component).
    #[arg(short = 'C', long, env = "DINDBOX_SN_CONTAINER")]
    pub container: String,
    /// The socket to listen on: unix:///path/NAME.sock (or a plain path).
    #[arg(short = 'S', long, env = "DINDBOX_SN_SOCKET")]
    pub socket: String,
    /// The most bytes the box's snapshots may take: a size such as 20G (suffixes b, k, m, g,
    /// t, optionally followed by b, in any case; powers of 1024).
    #[arg(long, value_parser = crate::bytesize::parse, env = "DINDBOX_SN_MAX_BYTES")]
    pub max_bytes: Option<u64>,
    /// Where ROOT/CONTAINER/shared is bind-mounted (rslave) inside the box.
    #[arg(long, default_value = DEFAULT_CONTAINER_PREFIX)]
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
    pub socket: PathBuf,
    pub max_bytes: Option<u64>,
    pub container_prefix: PathBuf,
}

/// Validates the flags into a [`Config`].
pub fn config(args: &SnapshotterArgs) -> anyhow::Result<Config> {
    container_name(&args.container)?;
    Ok(Config {
        root: protected_root(&args.root)?,
        container: args.container.clone(),
        socket: socket_path(&args.socket)?,
        max_bytes: args.max_bytes,
        container_prefix: container_prefix(&args.container_prefix)?,
    })
}
