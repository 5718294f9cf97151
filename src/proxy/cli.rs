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
    /// Also listen on this TCP address (e.g. 127.0.0.1:2375); with TLS
    /// (below), 0.0.0.0:2376 is the usual one.
    #[arg(long, env = "DINDBOX_LISTEN_TCP")]
    pub listen_tcp: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Serve Prometheus metrics on this TCP address (e.g. 127.0.0.1:9323).
    #[arg(long, env = "DINDBOX_METRICS_ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log every request (debug level).
    #[arg(long)]
    pub debug: bool,
    #[command(flatten)]
    pub policy: PolicyOptions,
}

/// TLS on `--listen-tcp`, with dockerd's flag names or docker:dind's cert dir.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve --listen-tcp with TLS and require client certificates signed by
    /// --tlscacert (dockerd's flag; `--tlsverify=false` is the default).
    #[arg(
        long = "tlsverify",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        action = clap::ArgAction::Set
    )]
    pub verify: bool,
    /// The CA that signs client certificates (PEM; several are allowed).
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The server certificate (PEM, with its chain).
    #[arg(long = "tlscert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The server key (PEM).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Or: a docker:dind certificate directory (ca/, server/, client/),
    /// generated when empty and reused after, as `DOCKER_TLS_CERTDIR` in a
    /// box; clients use its client/ (DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=DIR/client).
    #[arg(long = "tls-certdir", value_name = "DIR")]
    pub certdir: Option<PathBuf>,
    /// Extra SANs for a server certificate generated in --tls-certdir
    /// (`DNS:docker.example.com,IP:203.0.113.7`).
    #[arg(long = "tls-san", value_name = "SANS", requires = "certdir")]
    pub san: Option<String>,
}

/// Where the TLS configuration comes from, once the flags are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `--tlsverify --tlscacert --tlscert --tlskey`.
    Files {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    /// `--tls-certdir` (and `--tls-san`).
    CertDir {
        dir: PathBuf,
        sans: Vec<crate::tls::San>,
    },
}

impl TlsArgs {
    /// Checks the TLS flags together: `None` for plain TCP. dindbox serves TLS
    /// only with client certificates verified (TLS without them would let
    /// anyone in, as plain TCP does), so certificate files need `--tlsverify`.
    pub fn source(&self, listen_tcp: Option<SocketAddr>) -> anyhow::Result<Option<TlsSource>> {
        let files = [
            ("--tlscacert", &self.ca),
            ("--tlscert", &self.cert),
            ("--tlskey", &self.key),
        ];
        let given: Vec<&str> = files
            .iter()
            .filter(|(_, f)| f.is_some())
            .map(|(n, _)| *n)
            .collect();
        let source = match (&self.certdir, self.verify) {
            (Some(_), true) => anyhow::bail!(
                "give either --tls-certdir DIR or --tlsverify with --tlscacert, --tlscert and \
                 --tlskey, not both"
            ),
            (Some(_), false) if !given.is_empty() => anyhow::bail!(
                "{} cannot be combined with --tls-certdir, which names the files itself",
                given.join(", ")
            ),
            (Some(dir), false) => Some(TlsSource::CertDir {
                dir: dir.clone(),
                sans: crate::tls::parse_sans(self.san.as_deref().unwrap_or(""))?,
            }),
            (None, false) if !given.is_empty() => anyhow::bail!(
                "{} need --tlsverify: dindbox serves TLS only with client certificates \
                 verified against --tlscacert (like dockerd --tlsverify)",
                given.join(", ")
            ),
            (None, false) => None,
            (None, true) => {
                let missing: Vec<&str> = files
                    .iter()
                    .filter(|(_, f)| f.is_none())
                    .map(|(n, _)| *n)
                    .collect();
                if !missing.is_empty() {
                    anyhow::bail!("--tlsverify needs {} FILE", missing.join(" FILE, "));
                }
                let path = |f: &Option<PathBuf>| f.clone().expect("checked above");
                Some(TlsSource::Files {
                    ca: path(&self.ca),
                    cert: path(&self.cert),
                    key: path(&self.key),
                })
            }
        };
        if source.is_some() && listen_tcp.is_none() {
            anyhow::bail!("TLS is served on --listen-tcp ADDR (e.g. 0.0.0.0:2376); give one");
        }
        Ok(source)
    }
}

impl TlsSource {
    /// Reads the certificates (or, for a cert dir, generates what is missing).
    pub fn server_config(&self) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
        match self {
            TlsSource::Files { ca, cert, key } => {
                Ok(crate::tls::server_config_from_files(ca, cert, key)?)
            }
            TlsSource::CertDir { dir, sans } => {
                let wanted = crate::tls::local_sans(sans)?;
                let prepared = crate::tls::prepare(dir, &wanted, std::time::SystemTime::now())?;
                info!(
                    dir = %dir.display(),
                    "TLS: {}; clients: DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
                    prepared.plan,
                    dir.join("client").display()
                );
                Ok(prepared.config)
            }
        }
    }
}

/// Runs the proxy standalone until SIGINT or SIGTERM.
pub fn main(args: ProxyArgs) -> anyhow::Result<()> {
    let tls = args.tls.source(args.listen_tcp)?;
    let mut addrs: Vec<ListenAddr> = args
        .listen_socket
        .into_iter()
        .map(ListenAddr::Unix)
        .collect();
    match (&tls, args.listen_tcp) {
        (Some(source), Some(addr)) => addrs.push(ListenAddr::Tls(addr, source.server_config()?)),
        (_, addr) => addrs.extend(addr.map(ListenAddr::Tcp)),
    }
    if addrs.is_empty() {
        anyhow::bail!("nothing to listen on: give --listensocket PATH and/or --listen-tcp ADDR");
    }
    if let Some(addr) = args
        .listen_tcp
        .filter(|a| !a.ip().is_loopback() && tls.is_none())
    {
        warn!(
            "--listen-tcp {addr}: plain TCP without authentication beyond loopback; anyone who \
             reaches this address can use the Docker API the policy allows (--tlsverify or \
             --tls-certdir require client certificates)"
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
                        tracing::error!(%addr, error = %err, "the metrics endpoint failed");
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    fn source(args: &[&str]) -> anyhow::Result<Option<TlsSource>> {
        let cli = Cli::try_parse_from(std::iter::once("proxy").chain(args.iter().copied()))?;
        cli.proxy.tls.source(cli.proxy.listen_tcp)
    }

    const TCP: [&str; 2] = ["--listen-tcp", "127.0.0.1:2376"];

    #[test]
    fn dockerds_tls_flags_make_a_verified_tls_listener() {
        let flags = [
            "--tlsverify",
            "--tlscacert",
            "/c/ca.pem",
            "--tlscert",
            "/c/cert.pem",
            "--tlskey",
            "/c/key.pem",
        ];
        let expected = Some(TlsSource::Files {
            ca: "/c/ca.pem".into(),
            cert: "/c/cert.pem".into(),
            key: "/c/key.pem".into(),
        });
        assert_eq!(source(&[&TCP[..], &flags[..]].concat()).unwrap(), expected);
        let mut explicit = flags;
        explicit[0] = "--tlsverify=true";
        assert_eq!(
            source(&[&TCP[..], &explicit[..]].concat()).unwrap(),
            expected
        );
        assert_eq!(source(&TCP).unwrap(), None, "plain TCP by default");
    }

    #[test]
    fn tls_flags_that_would_not_verify_clients_are_errors() {
        let err = source(&[&TCP[..], &["--tlscert", "c", "--tlskey", "k"]].concat()).unwrap_err();
        assert!(format!("{err}").contains("need --tlsverify"), "{err}");
        let err = source(&[&TCP[..], &["--tlsverify", "--tlscert", "c"]].concat()).unwrap_err();
        assert!(
            format!("{err}").contains("--tlscacert FILE, --tlskey FILE"),
            "{err}"
        );
        let err = source(&[
            "--tlsverify",
            "--tlscacert",
            "a",
            "--tlscert",
            "c",
            "--tlskey",
            "k",
        ])
        .unwrap_err();
        assert!(format!("{err}").contains("--listen-tcp"), "{err}");
    }

    #[test]
    fn a_cert_dir_is_the_other_way_and_not_both() {
        assert_eq!(
            source(
                &[
                    &TCP[..],
                    &["--tls-certdir", "/certs", "--tls-san", "DNS:ci"]
                ]
                .concat()
            )
            .unwrap(),
            Some(TlsSource::CertDir {
                dir: "/certs".into(),
                sans: vec![crate::tls::San::Dns("ci".into())],
            })
        );
        assert!(source(&[&TCP[..], &["--tls-certdir", "/c", "--tlsverify"]].concat()).is_err());
        assert!(source(&[&TCP[..], &["--tls-certdir", "/c", "--tlscert", "x"]].concat()).is_err());
        assert!(source(&[&TCP[..], &["--tls-san", "DNS:ci"]].concat()).is_err());
        assert!(
            source(&[&TCP[..], &["--tls-certdir", "/c", "--tls-san", "bogus"]].concat()).is_err()
        );
    }
}
