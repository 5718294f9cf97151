//! Prometheus text metrics (OpenMetrics exposition) on `METRICS_PORT`, off by
//! default: proxied requests by endpoint and outcome, refusals by rule, the
//! proxy's latency, open connections, dockerd restarts, and the memory
//! budget's usage and OOM kills read from the parent cgroup at scrape time.

#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::serve;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The allow-list pattern, e.g. `/containers/{}/json`, or `refused`.
    endpoint: &'static str,
    /// `forwarded`, `refused` or `error` (dockerd did not answer).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: &'static str,
}

/// How a request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    Refused(&'static str),
    DockerdUnavailable,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<RuleLabels, Counter>,
    latency: Histogram,
    open_connections: Gauge,
    dockerd_restarts: Counter,
    /// The budget's cgroup directories (one on v2, one per v1 hierarchy).
    budget_dirs: Mutex<Vec<PathBuf>>,
}

/// The process's metrics (recording is cheap atomics whether or not they are served).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dindbox");
        let requests = Family::<RequestLabels, Counter>::default();
        let refusals = Family::<RuleLabels, Counter>::default();
        // 50 us .. ~1.6 s, doubling.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            50e-6, 2.0, 16,
        ));
        let open_connections = Gauge::default();
        let dockerd_restarts = Counter::default();
        registry.register(
            "proxy_requests",
            "Requests by endpoint and outcome",
            requests.clone(),
        );
        registry.register(
            "proxy_refusals",
            "Refused requests by rule",
            refusals.clone(),
        );
        registry.register(
            "proxy_latency_seconds",
            "Time from request to response headers",
            latency.clone(),
        );
        registry.register(
            "proxy_open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        registry.register(
            "dockerd_restarts",
            "Times the inner dockerd was restarted after dying",
            dockerd_restarts.clone(),
        );
        Metrics {
            registry,
            requests,
            refusals,
            latency,
            open_connections,
            dockerd_restarts,
            budget_dirs: Mutex::default(),
        }
    }

    pub fn request(&self, endpoint: &'static str, outcome: Outcome, took: Duration) {
        let (endpoint, outcome) = match outcome {
            Outcome::Forwarded => (endpoint, "forwarded"),
            Outcome::Refused(rule) => {
                self.refusals.get_or_create(&RuleLabels { rule }).inc();
                (endpoint, "refused")
            }
            Outcome::DockerdUnavailable => (endpoint, "error"),
        };
        self.requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub fn dockerd_restarted(&self) {
        self.dockerd_restarts.inc();
    }

    /// Where the memory budget lives, so scrapes can report its usage.
    pub fn set_budget_dirs(&self, dirs: Vec<PathBuf>) {
        *self.budget_dirs.lock().unwrap_or_else(|p| p.into_inner()) = dirs;
    }

    /// The exposition text: the registry, then the budget read from cgroupfs.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        // `encode` ends with `# EOF`; the budget lines go before it.
        let end = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(end);
        let dirs = self
            .budget_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.push_str(&budget_lines(&dirs));
        out.push_str("# EOF\n");
        out
    }
}

/// The budget's memory usage and OOM kills, from cgroup v2 (`memory.current`,
/// `memory.events`) or v1 (`memory.usage_in_bytes`, `memory.oom_control`).
fn budget_lines(dirs: &[PathBuf]) -> String {
    let read = |name: &str| {
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(d.join(name)).ok())
    };
    let usage = read("memory.current").or_else(|| read("memory.usage_in_bytes"));
    let limit = read("memory.max").or_else(|| read("memory.limit_in_bytes"));
    let ooms = read("memory.events")
        .or_else(|| read("memory.oom_control"))
        .and_then(|text| field(&text, "oom_kill"));
    let mut out = String::new();
    for (name, help, value) in [
        (
            "dindbox_budget_memory_usage_bytes",
            "Memory used by the box's containers",
            usage.and_then(|v| v.trim().parse::<u64>().ok()),
        ),
        (
            "dindbox_budget_memory_limit_bytes",
            "The box's memory budget",
            limit.and_then(|v| v.trim().parse::<u64>().ok()),
        ),
        (
            "dindbox_budget_oom_kills",
            "OOM kills inside the budget",
            ooms,
        ),
    ] {
        if let Some(value) = value {
            out.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        }
    }
    out
}

/// The value of `key` in a `key value` per line cgroup file.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
}

/// Serves `GET /metrics` (any path, in fact) until `shutdown`.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    let limits = serve::Limits::default();
    serve::accept_loop(
        &listener,
        limits,
        &shutdown,
        |stream, shutdown| async move {
            let service = service_fn(|_req| async {
                let body = Full::new(Bytes::from(global().render()));
                let response = hyper::Response::builder()
                    .header(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(body)
                    .expect("a valid response");
                Ok::<_, Infallible>(response)
            });
            serve::connection(stream, service, limits, &shutdown, "metrics").await;
        },
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refusals_and_the_budget_are_rendered() {
        let m = Metrics::new();
        m.request(
            "/containers/create",
            Outcome::Refused("privileged"),
            Duration::from_micros(80),
        );
        m.request("/_ping", Outcome::Forwarded, Duration::from_micros(120));
        m.connection_opened();
        m.dockerd_restarted();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "1048576\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "268435456\n").unwrap();
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n",
        )
        .unwrap();
        m.set_budget_dirs(vec![dir.path().to_path_buf()]);
        let text = m.render();
        for line in [
            r#"dindbox_proxy_requests_total{endpoint="/containers/create",outcome="refused"} 1"#,
            r#"dindbox_proxy_requests_total{endpoint="/_ping",outcome="forwarded"} 1"#,
            r#"dindbox_proxy_refusals_total{rule="privileged"} 1"#,
            "dindbox_proxy_open_connections 1",
            "dindbox_dockerd_restarts_total 1",
            "dindbox_proxy_latency_seconds_count 2",
            "dindbox_budget_memory_usage_bytes 1048576",
            "dindbox_budget_memory_limit_bytes 268435456",
            "dindbox_budget_oom_kills 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn v1_oom_control_is_read() {
        assert_eq!(
            field("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n", "oom_kill"),
            Some(5)
        );
        assert_eq!(field("oom_kill_disable 0\n", "oom_kill"), None);
    }
}
