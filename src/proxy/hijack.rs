//! Attach and exec: after dockerd answers `101 UPGRADED`, both connections
//! carry raw stream bytes. Only then, and only on the hijack endpoints, does the
//! proxy stop parsing HTTP, so a fake `Upgrade` header cannot smuggle requests.

#![forbid(unsafe_code)]

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// The copy buffer each way. tokio's default (8 KiB) costs a read and a write
/// per 8 KiB of `docker exec` output; 64 KiB takes an eighth of the syscalls.
const COPY_BUFFER: usize = 64 << 10;

/// Copies bytes both ways until both sides are done. A side that closes its
/// write half (the CLI's stdin EOF) is shut down towards the other, and the
/// copy the other way goes on, so output after stdin closes is not lost.
pub fn splice(client: OnUpgrade, daemon: OnUpgrade) {
    tokio::spawn(async move {
        let (client, daemon) = match tokio::try_join!(client, daemon) {
            Ok(pair) => pair,
            Err(err) => {
                debug!(error = %err, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut daemon = TokioIo::new(daemon);
        match tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut daemon,
            COPY_BUFFER,
            COPY_BUFFER,
        )
        .await
        {
            Ok((up, down)) => debug!(up, down, "hijacked stream closed"),
            Err(err) => debug!(error = %err, "hijacked stream ended with an error"),
        }
    });
}
