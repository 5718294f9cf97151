//! `dindbox health`: exit 0 only when the proxy answers and dockerd answers through it.

#![forbid(unsafe_code)]

use std::path::PathBuf;

/// `dindbox health` options.
#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// The proxy's public unix socket.
    #[arg(long, env = "DINDBOX_SOCKET", default_value = "/var/run/docker.sock")]
    pub socket: PathBuf,
}

pub fn main(_args: HealthArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
