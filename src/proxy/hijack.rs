//! Attach and exec: after dockerd answers `101 UPGRADED`, both connections
//! carry raw stream bytes. Only then, and only on the hijack endpoints, does the
//! proxy stop parsing HTTP, so a fake `Upgrade` header cannot smuggle requests.

#![forbid(unsafe_code)]

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// The copy buffer each way. tokio's default (8 KiB) costs a read and a write
/// per 8 KiB of `docker exec` output; 64 KiB takes an eighth of the syscalls.
const COPY_BUFFER: usize = 64 << 10;

/// How long after the `101` the stream's first bytes may follow it. dockerd
/// writes its first bytes a moment after the `101`, and clients count on it:
/// docker-py reads the `101` through a buffered reader and then the stream
/// from the raw socket, so bytes that reach it with the `101` are lost
/// (`attach(stream=False, logs=True)` of a stopped container returned nothing
/// through the proxy about one time in five, and every time on a loaded
/// machine). The proxy, reading dockerd's socket, would forward them at once.
const AFTER_HEAD_GAP: Duration = Duration::from_millis(10);

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
        tokio::time::sleep(AFTER_HEAD_GAP).await;
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
