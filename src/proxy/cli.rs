//! `dindbox proxy` (the proxy standalone, between two sockets) and
//! `dindbox policy` (check a policy file, explain the effective rules).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{self, Env};
use super::policy::{Family, Policy};
use super::{ListenAddr, Listener, Proxy, ProxyConfig};

/// The policy options shared by `dindbox proxy` and `dindbox policy explain`.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyOptions {
    /// A policy file (TOML); see README.
    #[arg(long = "policy", env = "DINDBOX_POLICY")]
    pub policy_file: Option<PathBuf>,
    /// A label to set on everything tenants create (repeatable), `key=value`.
    #[arg(long = "label", value_parser = config::parse_label)]
    pub labels: Vec<(String, String)>,
    /// The cgroup parent for every container and classic build.
    #[arg(long, value_parser = config::parse_cgroup_parent)]
    pub cgroup_parent: Option<String>,
    /// Let BuildKit sessions through (only where the daemon itself is confined).
    #[arg(long)]
    pub allow_buildkit: bool,
    /// Standalone mode: only containers, networks and volumes carrying this
    /// label (`key=value`, also set on everything created) are visible, so
    /// two CI jobs behind two proxies on one daemon cannot touch each other's.
    /// Env: DINDBOX_OWNER_LABEL.
    #[arg(long, value_parser = config::parse_owner_label)]
    pub owner_label: Option<(String, String)>,
    /// Enable a family of endpoints refused by default (repeatable): plugins,
    /// swarm, checkpoints, distribution, import-url, build-remote. See
    /// `dindbox policy explain` for what each one costs. Env: DINDBOX_ALLOW.
    #[arg(long = "allow", value_name = "FAMILY", value_parser = config::parse_family)]
    pub allow: Vec<Family>,
}

impl PolicyOptions {
    /// Defaults, then the file, then the environment, then these flags.
    pub fn resolve(&self, base: Policy) -> anyhow::Result<Policy> {
        let mut policy = base;
        if let Some(path) = &self.policy_file {
            policy = config::apply_file(policy, &config::read_file(path)?)?;
        }
        policy = config::apply_env(policy, &Env)?;
        for (key, value) in &self.labels {
            policy.labels.retain(|(k, _)| k != key);
            policy.labels.push((key.clone(), value.clone()));
        }
        if let Some(parent) = &self.cgroup_parent {
            policy.cgroup_parent = Some(parent.clone());
        }
        policy.allow_buildkit |= self.allow_buildkit;
        if let Some(owner) = &self.owner_label {
            policy.owner = Some(owner.clone());
        }
        policy.allow.extend(self.allow.iter().copied());
        config::validate(&policy)?;
        Ok(policy)
    }
}

/// `dindbox proxy` options. The socket flags are dockerd-ci-proxy's.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {
    /// The Docker socket to forward to.
    #[arg(
        long = "dockersocket",
        alias = "ds",
        env = "DINDBOX_UPSTREAM",
        default_value = "/var/run/docker.sock"
    )]
    pub docker_socket: PathBuf,
    /// The unix socket to listen on.
    #[arg(long = "listensocket", alias = "ls", env = "DINDBOX_LISTEN_SOCKET")]
    pub listen_socket: Option<PathBuf>,
    /// Also listen on this TCP address (e.g. 127.0.0.1:2375).
    #[arg(long, env = "DINDBOX_LISTEN_TCP")]
    pub listen_tcp: Option<SocketAddr>,
    /// Serve Prometheus metrics on this TCP address (e.g. 127.0.0.1:9323).
    #[arg(long, env = "DINDBOX_METRICS_ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log every request (debug level).
    #[arg(long)]
    pub debug: bool,
    #[command(flatten)]
    pub policy: PolicyOptions,
}

/// Runs the proxy standalone until SIGINT or SIGTERM.
pub fn main(args: ProxyArgs) -> anyhow::Result<()> {
    let mut addrs: Vec<ListenAddr> = args
        .listen_socket
        .into_iter()
        .map(ListenAddr::Unix)
        .collect();
    addrs.extend(args.listen_tcp.map(ListenAddr::Tcp));
    if addrs.is_empty() {
        anyhow::bail!("nothing to listen on: give --listensocket PATH and/or --listen-tcp ADDR");
    }
    if let Some(addr) = args.listen_tcp.filter(|a| !a.ip().is_loopback()) {
        warn!(
            "--listen-tcp {addr}: plain TCP without authentication beyond loopback; anyone who \
             reaches this address can use the Docker API the policy allows"
        );
    }
    let policy = args.policy.resolve(Policy::default())?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        let proxy = Proxy::new(ProxyConfig {
            upstream: args.docker_socket.clone(),
            policy,
        });
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        for addr in &addrs {
            let listener = Listener::bind(addr).await?;
            tasks.push(tokio::spawn(
                proxy.clone().serve(listener, shutdown.clone()),
            ));
        }
        if let Some(addr) = args.metrics {
            tasks.push(tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    if let Err(err) = crate::metrics::serve(addr, shutdown).await {
                        tracing::error!("metrics on {addr} failed: {err}");
                    }
                }
            }));
        }
        let listen: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        info!(?listen, upstream = %args.docker_socket.display(), "ready");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        for addr in &addrs {
            if let ListenAddr::Unix(path) = addr {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    })
}

/// `dindbox policy` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum PolicyArgs {
    /// Validate a policy file; exit 0 when it is valid.
    Check { file: PathBuf },
    /// Print the effective rules (defaults, file, environment and flags).
    Explain {
        #[command(flatten)]
        options: PolicyOptions,
    },
}

pub fn policy_main(args: PolicyArgs) -> anyhow::Result<()> {
    match args {
        PolicyArgs::Check { file } => {
            config::read_file(&file)?;
            println!("{}: valid", file.display());
        }
        PolicyArgs::Explain { options } => {
            print!("{}", config::explain(&options.resolve(Policy::default())?))
        }
    }
    Ok(())
}
