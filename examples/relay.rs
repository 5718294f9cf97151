//! The floor of any proxy with one more unix-socket hop: `relay LISTEN
//! UPSTREAM` accepts on LISTEN and copies bytes both ways to a fresh
//! connection to UPSTREAM, with no HTTP parsing and no checks at all.
//! `scripts/bench.sh` measures it beside the proxy (`BENCH_RELAY=1`), so the
//! proxy's own cost is what it adds on top of this, not the hop itself.
//!
//! Like the proxy in a box, it runs on a multi-thread runtime with the
//! default number of workers.

use std::path::PathBuf;

use tokio::net::{UnixListener, UnixStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        eprintln!("usage: relay LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    let upstream = PathBuf::from(upstream);
    loop {
        let (mut client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(mut daemon) = UnixStream::connect(&upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut daemon,
                64 << 10,
                64 << 10,
            )
            .await;
        });
    }
}
