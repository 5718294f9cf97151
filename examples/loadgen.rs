//! A small HTTP load generator for a unix socket, used by `scripts/bench.sh`
//! to compare the proxy with the socket behind it.
//!
//! `loadgen SOCKET PATH CONCURRENCY SECONDS` prints one line:
//! `requests=N rps=R p50_us=A p99_us=B errors=E`.
//!
//! `loadgen create N IMAGE SOCKET...` times N `POST /containers/create`
//! (`{"Image":IMAGE,"Cmd":["true"]}`) on each socket, one at a time, the
//! sockets taking turns, so a busy machine slows them alike; each container
//! is removed (untimed) before the next create. Prints one line a socket:
//! `socket=S requests=N p50_us=A p99_us=B errors=E`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, count, image, sockets @ ..] = args.as_slice() {
        if mode == "create" && !sockets.is_empty() {
            let count = count.parse().expect("N is a number");
            return creates(count, image, sockets).await;
        }
    }
    let [_, socket, path, concurrency, seconds] = args.as_slice() else {
        eprintln!("usage: loadgen SOCKET PATH CONCURRENCY SECONDS\n       loadgen create N IMAGE SOCKET...");
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
    println!(
        "requests={} rps={:.0} p50_us={} p99_us={} errors={errors}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
}

/// Microseconds of the `p` quantile of sorted `latencies`.
fn percentile(latencies: &[Duration], p: f64) -> u128 {
    latencies
        .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
        .map_or(0, |d| d.as_micros())
}

/// `loadgen create`: see the module's doc.
async fn creates(count: usize, image: &str, sockets: &[String]) {
    let client: Client<UnixConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(UnixConnector);
    let body = Bytes::from(format!("{{\"Image\":{image:?},\"Cmd\":[\"true\"]}}"));
    let mut latencies = vec![Vec::with_capacity(count); sockets.len()];
    let mut errors = vec![0u64; sockets.len()];
    let request = |socket: &str, method: &str, path: &str, body: Bytes| {
        let uri: hyper::Uri = hyperlocal::Uri::new(socket, path).into();
        let request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/json")
            .body(Full::new(body))
            .expect("a request");
        client.request(request)
    };
    for _ in 0..count {
        for (i, socket) in sockets.iter().enumerate() {
            let began = Instant::now();
            let answer = match request(socket, "POST", "/containers/create", body.clone()).await {
                Ok(response) if response.status().is_success() => {
                    response.into_body().collect().await.ok()
                }
                _ => None,
            };
            let elapsed = began.elapsed();
            let id = answer.and_then(|a| {
                let created: serde_json::Value = serde_json::from_slice(&a.to_bytes()).ok()?;
                created["Id"].as_str().map(str::to_string)
            });
            let Some(id) = id else {
                errors[i] += 1;
                continue;
            };
            latencies[i].push(elapsed);
            let removed =
                request(socket, "DELETE", &format!("/containers/{id}"), Bytes::new()).await;
            if !removed.is_ok_and(|r| r.status().is_success()) {
                errors[i] += 1;
            }
        }
    }
    for ((socket, mut latencies), errors) in sockets.iter().zip(latencies).zip(errors) {
        latencies.sort();
        println!(
            "socket={socket} requests={} p50_us={} p99_us={} errors={errors}",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
}
