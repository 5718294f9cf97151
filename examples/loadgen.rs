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
//!
//! The statistics of `scripts/bench.sh` over its sample files (one line a
//! sample, whitespace-separated columns, numbered from 1):
//! - `loadgen stats median FILE COLUMN` prints the median of the column
//!   (of the two middle samples, their mean); FILE `-` is stdin;
//! - `loadgen stats ratio FILE BASE COLUMN [inverse]` prints the median of
//!   the per-line ratios FILE/BASE (BASE/FILE with `inverse`, for
//!   throughputs from times): line N of both files is round N, and the load
//!   of a machine changes less within a round than between rounds.

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
    if let [_, mode, stats_args @ ..] = args.as_slice() {
        if mode == "stats" {
            match stats(stats_args) {
                Ok(value) => return println!("{value}"),
                Err(err) => {
                    eprintln!("loadgen stats: {err}");
                    std::process::exit(2);
                }
            }
        }
    }
    if let [_, mode, count, image, sockets @ ..] = args.as_slice() {
        if mode == "create" && !sockets.is_empty() {
            let count = count.parse().expect("N is a number");
            return creates(count, image, sockets).await;
        }
    }
    let [_, socket, path, concurrency, seconds] = args.as_slice() else {
        eprintln!(
            "usage: loadgen SOCKET PATH CONCURRENCY SECONDS\n       loadgen create N IMAGE SOCKET...\n       \
             loadgen stats median FILE COLUMN\n       loadgen stats ratio FILE BASE COLUMN [inverse]"
        );
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

/// `loadgen stats`: see the module's doc.
fn stats(args: &[String]) -> Result<f64, String> {
    match args {
        [kind, file, column] if kind == "median" => median(column_of(file, column)?),
        [kind, file, base, column, rest @ ..] if kind == "ratio" && rest.len() <= 1 => {
            let inverse = match rest {
                [] => false,
                [word] if word == "inverse" => true,
                _ => return Err(format!("{rest:?}: only `inverse` may follow the column")),
            };
            let (values, bases) = (column_of(file, column)?, column_of(base, column)?);
            if values.len() != bases.len() {
                return Err(format!(
                    "{file} has {} rounds, {base} {}",
                    values.len(),
                    bases.len()
                ));
            }
            let ratios = values.iter().zip(&bases);
            median(
                ratios
                    .map(|(x, d)| if inverse { d / x } else { x / d })
                    .collect(),
            )
        }
        _ => {
            Err("use `stats median FILE COLUMN` or `stats ratio FILE BASE COLUMN [inverse]`".into())
        }
    }
}

/// The `column` (from 1) of every line of `file` (`-`: stdin).
fn column_of(file: &str, column: &str) -> Result<Vec<f64>, String> {
    let column: usize = match column.parse() {
        Ok(n) if n > 0 => n,
        _ => return Err(format!("column {column:?}: a number from 1")),
    };
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| format!("{file}: {e}"))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let field = line.split_whitespace().nth(column - 1);
            field
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("{file}: no number in column {column} of {line:?}"))
        })
        .collect()
}

/// The middle value, or the mean of the two middle values.
fn median(mut values: Vec<f64>) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no samples".into());
    }
    values.sort_by(f64::total_cmp);
    let half = values.len() / 2;
    Ok(if values.len() % 2 == 1 {
        values[half]
    } else {
        (values[half - 1] + values[half]) / 2.0
    })
}
