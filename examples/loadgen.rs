//! A small HTTP load generator for a unix socket, used by `scripts/bench.sh`
//! to compare the proxy with the socket behind it.
//!
//! `loadgen SOCKET PATH CONCURRENCY SECONDS` prints one line:
//! `requests=N rps=R p50_us=A p99_us=B errors=E`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, path, concurrency, seconds] = args.as_slice() else {
        eprintln!("usage: loadgen SOCKET PATH CONCURRENCY SECONDS");
        std::process::exit(2);
    };
    let socket = PathBuf::from(socket);
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY is a number");
    let duration = Duration::from_secs_f64(seconds.parse().expect("SECONDS is a number"));
    let client: Client<UnixConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(UnixConnector);
    let uri: hyper::Uri = hyperlocal::Uri::new(&socket, path).into();
    let uri = Arc::new(uri);

    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while start.elapsed() < duration {
                    let began = Instant::now();
                    match client.get((*uri).clone()).await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.into_body().collect().await;
                            latencies.push(began.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();

    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await.expect("worker finished");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros())
    };
    println!(
        "requests={} rps={:.0} p50_us={} p99_us={} errors={errors}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(0.50),
        percentile(0.99),
    );
}
