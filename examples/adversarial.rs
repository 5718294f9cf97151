//! The proxy against hostile JSON bodies (issue 11), used by `scripts/bench.sh`'s
//! adversarial part: how long the proxy takes to decide on each body, and what
//! that does to another client's `/_ping`.
//!
//! `adversarial SOCKET [SECONDS]`, against a proxy on SOCKET (in front of
//! `fake-dockerd`, or any daemon that answers creates), prints:
//! - `body NAME bytes=B status=S decision_ms_median=M min=A max=B runs=R`, for
//!   each body: a create with 160k distinct `Labels` keys (~1.8 MB), one with
//!   100k `Dns` servers and 16k repeated `"HostConfig":{}` (~1.3 MB), and an
//!   8 MiB `{"Cmd":[0,0,...]}`, each sent `ADVERSARIAL_RUNS` times (default 3);
//! - `bystander idle ...` and `bystander loaded ...`: `/_ping` latency from one
//!   more client, sequential, for SECONDS (default 5) with no load and then
//!   while 4 clients send those bodies in a loop: `pings=N p50_us p99_us max_us`
//!   (with load also how many heavy requests finished in the window; a ping
//!   is given up after 120 s and counted as 120 s).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

type HttpClient = Client<UnixConnector, Full<Bytes>>;

const BODY_LIMIT: usize = 8 << 20;
const PING_GIVE_UP: Duration = Duration::from_secs(120);

/// `{"Image":"busybox","Labels":{"0":"","1":"",...}}` with `keys` distinct keys.
fn labels(keys: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"Image":"busybox","Labels":{"#);
    for i in 0..keys {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#""{i}":"""#));
    }
    body.push_str("}}");
    body.into_bytes()
}

/// `{"Image":"busybox","HostConfig":{"Dns":["8.8.8.8",...]},"HostConfig":{},...}`:
/// a struct repeated after it decoded to something large.
fn dns(dns: usize, repeats: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"Image":"busybox","HostConfig":{"Dns":["#);
    body.push_str(&vec![r#""8.8.8.8""#; dns].join(","));
    body.push_str("]}");
    body.push_str(&r#","HostConfig":{}"#.repeat(repeats));
    body.push('}');
    body.into_bytes()
}

/// `{"Image":"busybox","Cmd":[0,0,...]}`, as close to the proxy's 8 MiB limit as fits.
fn cmd_zeros(total: usize) -> Vec<u8> {
    let head = r#"{"Image":"busybox","Cmd":[0"#;
    let zeros = (total - head.len() - 2) / 2;
    let mut body = String::with_capacity(total);
    body.push_str(head);
    body.push_str(&",0".repeat(zeros));
    body.push_str("]}");
    body.into_bytes()
}

fn uri(socket: &std::path::Path, path: &str) -> hyper::Uri {
    hyperlocal::Uri::new(socket, path).into()
}

/// Sends one create; returns its status and how long the answer took.
async fn create(client: &HttpClient, socket: &std::path::Path, body: Bytes) -> (u16, Duration) {
    let request = hyper::Request::post(uri(socket, "/v1.41/containers/create"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("a valid request");
    let began = Instant::now();
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            (status, began.elapsed())
        }
        Err(_) => (0, began.elapsed()),
    }
}

/// Sequential `/_ping`s for `window`; the latencies, sorted.
async fn pings(client: &HttpClient, socket: &std::path::Path, window: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < window {
        let began = Instant::now();
        let ping = async {
            let response = client.get(uri(socket, "/_ping")).await.ok()?;
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            ok.then_some(())
        };
        // A hang guard: a ping that takes longer counts as taking this long.
        match tokio::time::timeout(PING_GIVE_UP, ping).await {
            Ok(Some(())) => latencies.push(began.elapsed()),
            Ok(None) => {}
            Err(_) => latencies.push(PING_GIVE_UP),
        }
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> u128 {
    let index = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).map_or(0, Duration::as_micros)
}

fn summary(sorted: &[Duration]) -> String {
    format!(
        "pings={} p50_us={} p99_us={} max_us={}",
        sorted.len(),
        percentile(sorted, 0.50),
        percentile(sorted, 0.99),
        sorted.last().map_or(0, Duration::as_micros),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (socket, seconds) = match args.as_slice() {
        [_, socket] => (socket, "5"),
        [_, socket, seconds] => (socket, seconds.as_str()),
        _ => {
            eprintln!("usage: adversarial SOCKET [SECONDS]");
            std::process::exit(2);
        }
    };
    let socket = Arc::new(PathBuf::from(socket));
    let window = Duration::from_secs_f64(seconds.parse().expect("SECONDS is a number"));
    let runs: usize = std::env::var("ADVERSARIAL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let bodies: Vec<(&str, Bytes)> = vec![
        ("labels-160k", labels(160_000).into()),
        ("dns-100k-hostconfig-16k", dns(100_000, 16_000).into()),
        ("cmd-zeros-8MiB", cmd_zeros(BODY_LIMIT).into()),
    ];
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(UnixConnector);
    let bystander: HttpClient = Client::builder(TokioExecutor::new()).build(UnixConnector);

    let idle = pings(&bystander, &socket, window).await;
    println!("bystander idle {}", summary(&idle));

    for (name, body) in &bodies {
        let mut times = Vec::new();
        let mut status = 0;
        for _ in 0..runs {
            let (s, took) = create(&client, &socket, body.clone()).await;
            status = s;
            times.push(took);
        }
        times.sort();
        println!(
            "body {name} bytes={} status={status} decision_ms_median={:.1} min={:.1} max={:.1} runs={runs}",
            body.len(),
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
        );
    }

    // Four clients send the bodies in turn, each starting at a different one.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = (0..4)
        .map(|i| {
            let (client, socket, stop, done) =
                (client.clone(), socket.clone(), stop.clone(), done.clone());
            let bodies: Vec<Bytes> = bodies.iter().map(|(_, b)| b.clone()).collect();
            tokio::spawn(async move {
                let mut next = i;
                while !stop.load(Ordering::Relaxed) {
                    let (status, _) =
                        create(&client, &socket, bodies[next % bodies.len()].clone()).await;
                    if status != 0 {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    next += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let loaded = pings(&bystander, &socket, window).await;
    stop.store(true, Ordering::Relaxed);
    println!(
        "bystander loaded(4 clients) {} heavy_done={}",
        summary(&loaded),
        done.load(Ordering::Relaxed)
    );
    for loader in loaders {
        loader.abort();
    }
}
