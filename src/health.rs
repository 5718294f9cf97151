//! `dindbox health`: exit 0 only when the proxy answers and dockerd answers
//! through it (`GET /_ping` on the public socket returns 200 `OK`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

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

async fn ping(socket: &std::path::Path) -> anyhow::Result<()> {
    let client: Client<UnixConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(UnixConnector);
    let uri = hyperlocal::Uri::new(socket, "/_ping").into();
    let response = client
        .get(uri)
        .await
        .with_context(|| format!("failed to reach {}", socket.display()))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{} answered {status}: {}",
            socket.display(),
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}
