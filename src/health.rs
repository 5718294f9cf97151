//! `dindbox health`: exit 0 only when the proxy answers and dockerd answers
//! through it (`GET /_ping` on the public socket returns 200 `OK`).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::engine::{self, Engine};

/// `dindbox health` options.
#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// The proxy's public unix socket.
    #[arg(long, env = "DINDBOX_SOCKET", default_value = "/var/run/docker.sock")]
    pub socket: PathBuf,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

pub fn main(args: HealthArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(args.timeout), ping(&args.socket))
            .await
            .with_context(|| {
                format!(
                    "no answer from {} within {} s",
                    args.socket.display(),
                    args.timeout
                )
            })?
    })
}

async fn ping(socket: &Path) -> anyhow::Result<()> {
    match Engine::new(socket).ping().await {
        Ok(()) => Ok(()),
        Err(engine::Error::Unreachable { source, .. }) => Err(anyhow::Error::from_boxed(source)
            .context(format!("failed to reach {}", socket.display()))),
        Err(engine::Error::Status {
            status, message, ..
        }) => bail!("{} answered {status}: {message}", socket.display()),
        Err(err) => Err(err.into()),
    }
}
