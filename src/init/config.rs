//! `dindbox init`'s configuration: its flags and environment, validated
//! into a [`Config`] before anything is mounted or started.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::SigSet;

use super::cgroup;
use super::dockerd::{self, LogTarget};
use super::reaper;
use super::{graphdriver_plugin, imagestore, shell, snapshotter, sys, InitError};
use crate::proxy::config::{ENV_CGROUP_PARENT, ENV_MEMORY, ENV_PIDS};
use crate::proxy::policy::Policy;
use crate::proxy::{ListenAddr, PolicyOptions};
use crate::tls;

/// `dindbox init` options; every one also comes from the environment.
///
/// Trailing arguments that start with `-` are extra dockerd flags (the
/// docker:dind convention: `docker run IMAGE --mtu 1400`); otherwise they are a
/// command to run once the box is ready.
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Boxed: it is large, and `main`'s subcommand enum holds it by value.
    #[command(flatten)]
    pub options: Box<InitOptions>,
    /// Extra dockerd flags (`--mtu 1400`) or a command to run (`bash -l`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub trailing: Vec<String>,
}

/// The named options of `dindbox init`.
#[derive(clap::Args, Debug, Clone)]
pub struct InitOptions {
    /// TCP port for the proxy on 0.0.0.0 (unset: only the unix socket, or
    /// 2376 with TLS).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// TCP port for Prometheus metrics on 0.0.0.0 (unset: none).
    #[arg(long, env = "METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// docker:dind's certificate directory: when set (and not empty), the
    /// proxy serves TLS and requires client certificates; the CA, server and
    /// client certificates are generated there, or reused.
    #[arg(long, env = "DOCKER_TLS_CERTDIR", value_name = "DIR")]
    pub tls_certdir: Option<String>,
    /// Extra SANs of the server certificate: `DNS:foo,IP:1.2.3.4`.
    #[arg(long, env = "DOCKER_TLS_SAN", value_name = "SANS")]
    pub tls_san: Option<String>,
    /// The private socket of the inner dockerd.
    #[arg(
        long,
        env = "DINDBOX_DOCKERD_SOCKET",
        default_value = "/run/dindbox/docker.sock"
    )]
    pub dockerd_socket: PathBuf,
    /// The public unix socket served by the proxy.
    #[arg(
        long = "public-socket",
        env = "DINDBOX_SOCKET",
        default_value = "/var/run/docker.sock"
    )]
    pub socket: PathBuf,
    /// Seconds to wait for dockerd to answer `GET /_ping`.
    #[arg(long, env = "DINDBOX_READY_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub ready_timeout: Duration,
    /// How many times dockerd is started when it dies before it ever answered
    /// (containerd's start-up timeout on a loaded host, ...) before init gives up.
    #[arg(long, env = "DINDBOX_DOCKERD_START_ATTEMPTS", default_value = "3",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub dockerd_start_attempts: u32,
    /// Seconds dockerd gets to stop after SIGTERM before everything is killed.
    #[arg(long, env = "DINDBOX_STOP_GRACE", default_value = "10", value_parser = parse_seconds)]
    pub stop_grace: Duration,
    /// The dockerd program.
    #[arg(long, env = "DINDBOX_DOCKERD", default_value = "dockerd")]
    pub dockerd: PathBuf,
    /// Extra dockerd arguments, split on whitespace.
    #[arg(long, env = "DOCKERD_ARGS", allow_hyphen_values = true)]
    pub dockerd_args: Option<String>,
    /// Where dockerd's output goes: `file` (/var/log/docker.log), an absolute
    /// path, or unset for our own log.
    #[arg(long, env = "LOG")]
    pub log: Option<String>,
    /// Created once the box is ready, removed on shutdown.
    #[arg(long, env = "DINDBOX_READY_FILE", default_value = "/run/dindbox/ready")]
    pub ready_file: PathBuf,
    /// The cgroup mount to prepare.
    #[arg(long, env = "DINDBOX_CGROUP_ROOT", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// Keep the inner dockerd's layers on the host through `dindbox
    /// graphdriver-server` listening on this socket (unix:///PATH.sock, as the
    /// box sees it); /var/lib/docker must be the server's area, bound rslave.
    #[arg(long, env = "DINDBOX_GRAPHDRIVER")]
    pub graphdriver: Option<String>,
    /// `1`: the inner dockerd keeps images in the containerd image store
    /// (`--feature=containerd-snapshotter=true`); `0`: in the classic store;
    /// unset: dockerd's default (classic on 28, containerd on 29).
    #[arg(long, env = "DINDBOX_CONTAINERD_STORE")]
    pub containerd_store: Option<String>,
    /// Keep the inner dockerd's images on the host through `dindbox
    /// snapshotter-server` listening on this socket (unix:///PATH.sock, as the
    /// box sees it): init runs a containerd of its own with that proxy
    /// snapshotter and dockerd on it with the containerd image store.
    #[arg(long, env = "DINDBOX_SNAPSHOTTER")]
    pub snapshotter: Option<String>,
    /// What the proxy lets through and injects (`--policy`, `--label`, ...).
    #[command(flatten)]
    pub policy: PolicyOptions,
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{value:?} is not a number of seconds"))
}

/// `DOCKER_TLS_CERTDIR` and `DOCKER_TLS_SAN`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub dir: PathBuf,
    pub extra_sans: Vec<tls::San>,
}

impl TlsOptions {
    /// `None` when TLS is off: the directory is unset or empty (docker:dind's
    /// `-e DOCKER_TLS_CERTDIR=`).
    pub(super) fn parse(
        dir: Option<&str>,
        sans: Option<&str>,
    ) -> Result<Option<TlsOptions>, InitError> {
        let Some(dir) = dir.map(str::trim).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        if !dir.starts_with('/') {
            return Err(InitError::Config(format!(
                "DOCKER_TLS_CERTDIR={dir} must be an absolute path (e.g. /certs)"
            )));
        }
        Ok(Some(TlsOptions {
            dir: PathBuf::from(dir),
            extra_sans: tls::parse_sans(sans.unwrap_or(""))?,
        }))
    }
}

/// The proxy's TCP listener: TLS on `PORT` or 2376 when TLS is on, plain TCP
/// on `PORT` when it is off, none without either.
pub(super) fn tcp_listener(
    port: Option<u16>,
    server_tls: Option<&Arc<rustls::ServerConfig>>,
) -> Option<ListenAddr> {
    let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
    match (server_tls, port) {
        (Some(config), port) => Some(ListenAddr::Tls(
            any(port.unwrap_or(tls::TLS_PORT)),
            config.clone(),
        )),
        (None, Some(port)) => Some(ListenAddr::Tcp(any(port))),
        (None, None) => None,
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: Option<u16>,
    pub metrics_port: Option<u16>,
    /// TLS on: the cert dir and the extra SANs.
    pub tls: Option<TlsOptions>,
    /// The proxy's TLS configuration, once [`boot`] has prepared the certificates.
    pub server_tls: Option<Arc<rustls::ServerConfig>>,
    pub dockerd_socket: PathBuf,
    pub socket: PathBuf,
    pub ready_timeout: Duration,
    /// Starts of a dockerd that dies before it was ever ready, before giving up.
    pub start_attempts: u32,
    pub stop_grace: Duration,
    pub dockerd: PathBuf,
    /// Full dockerd argument list.
    pub dockerd_args: Vec<String>,
    pub log: LogTarget,
    pub ready_file: PathBuf,
    pub cgroup_root: PathBuf,
    pub policy: Policy,
    /// A directory put first in dockerd's PATH (the iptables backend links).
    pub dockerd_path_prefix: Option<PathBuf>,
    /// Extra environment for dockerd.
    pub dockerd_env: Vec<(String, String)>,
    /// A program (and its flags) dockerd runs under: rootlesskit in a box
    /// without --privileged (see [`super::userns`]); empty: dockerd itself.
    pub launcher: Vec<String>,
    /// The proxy graphdriver's socket (`DINDBOX_GRAPHDRIVER`).
    pub graphdriver: Option<graphdriver_plugin::Graphdriver>,
    /// The proxy snapshotter's socket (`DINDBOX_SNAPSHOTTER`).
    pub snapshotter: Option<PathBuf>,
    /// The containerd image store was asked for (`DINDBOX_CONTAINERD_STORE=1`
    /// or `--feature containerd-snapshotter` among dockerd's arguments).
    pub containerd_store: bool,
    /// The command to run once ready; `None`: serve until signalled.
    pub command: Option<Vec<String>>,
    /// stdin is a terminal: the command gets its foreground.
    pub foreground: bool,
    /// The signal mask init inherited, given back to its children.
    pub inherited_mask: SigSet,
}

impl Config {
    /// Splits the trailing arguments and picks the mode: a command when one is
    /// given, a login shell when PORT is unset and stdin is a terminal, else none.
    pub fn new(
        InitArgs {
            options: o,
            trailing: args,
        }: InitArgs,
        stdin_tty: bool,
        shell_env: Option<&str>,
    ) -> Result<Config, InitError> {
        let log = dockerd::parse_log(o.log.as_deref())?;
        let dockerd_flags = args.first().is_some_and(|a| a.starts_with('-'));
        let (extra, command) = if dockerd_flags || args.is_empty() {
            (args, None)
        } else {
            (Vec::new(), Some(args))
        };
        let command = match command {
            None if o.port.is_none() && stdin_tty => Some(shell::shell_command(shell_env)),
            other => other,
        };
        let policy = o
            .policy
            // BuildKit is on in a box: its dockerd runs with no insecure
            // entitlements and under the box's own cgroup (DINDBOX_ALLOW_BUILDKIT=0 turns it off).
            .resolve(Policy {
                allow_buildkit: true,
                ..Policy::default()
            })
            .map_err(|err| InitError::Config(format!("{err:#}")))?;
        let mut dockerd_args =
            dockerd::build_args(&o.dockerd_socket, o.dockerd_args.as_deref(), &extra);
        let graphdriver = match o.graphdriver.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => {
                let gd = graphdriver_plugin::Graphdriver::parse(value)
                    .map_err(|err| InitError::Config(err.to_string()))?;
                graphdriver_plugin::add_dockerd_args(&mut dockerd_args)
                    .map_err(|err| InitError::Config(err.to_string()))?;
                Some(gd)
            }
        };
        if let Some(on) = imagestore::parse(o.containerd_store.as_deref())? {
            imagestore::add_dockerd_args(&mut dockerd_args, on)?;
        }
        let snapshotter = match o.snapshotter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => {
                let socket = snapshotter::parse(value)?;
                if graphdriver.is_some() {
                    return Err(snapshotter::SnapshotterError::BothProxies.into());
                }
                let store = imagestore::in_args(&dockerd_args);
                snapshotter::add_dockerd_args(&mut dockerd_args, store)?;
                Some(socket)
            }
        };
        let containerd_store = imagestore::in_args(&dockerd_args) == Some(true);
        if containerd_store && graphdriver.is_some() {
            return Err(InitError::Config(format!(
                "DINDBOX_GRAPHDRIVER needs the classic image store, and the containerd image \
                 store is on ({}=1 or --feature {}): turn one of them off",
                imagestore::ENV,
                imagestore::FEATURE
            )));
        }
        // With a budget, init gives dockerd the parent itself: a second one
        // from the user would silently win or lose.
        if policy.memory.is_some() || policy.pids.is_some() {
            if let Some(flag) = dockerd::cgroup_parent_flag(&dockerd_args) {
                return Err(InitError::Config(format!(
                    "the dockerd arguments set {flag}, but with {ENV_MEMORY} or {ENV_PIDS} \
                     init starts dockerd under the box's budget cgroup itself. To choose the \
                     parent, set {ENV_CGROUP_PARENT} (or `dindbox init --cgroup-parent`) \
                     instead: dockerd and the proxy then both use it, and init limits it \
                     when it is below init's own cgroup"
                )));
            }
        }
        let tls = TlsOptions::parse(o.tls_certdir.as_deref(), o.tls_san.as_deref())?;
        Ok(Config {
            dockerd_args,
            port: o.port,
            metrics_port: o.metrics_port,
            tls,
            server_tls: None,
            dockerd_socket: o.dockerd_socket,
            socket: o.socket,
            ready_timeout: o.ready_timeout,
            start_attempts: o.dockerd_start_attempts,
            stop_grace: o.stop_grace,
            dockerd: o.dockerd,
            log,
            ready_file: o.ready_file,
            cgroup_root: o.cgroup_root,
            dockerd_path_prefix: None,
            dockerd_env: Vec::new(),
            launcher: Vec::new(),
            graphdriver,
            snapshotter,
            containerd_store,
            policy,
            foreground: command.is_some() && stdin_tty,
            command,
            inherited_mask: SigSet::empty(),
        })
    }

    /// The box's shared budget, when a memory or pids limit is configured.
    /// A parent the user chose (`DINDBOX_CGROUP_PARENT`, `--cgroup-parent`,
    /// the policy file) is kept; otherwise init picks one.
    pub(super) fn budget(&self) -> Option<cgroup::Budget> {
        let Policy {
            memory,
            pids,
            cgroup_parent,
            ..
        } = &self.policy;
        (memory.is_some() || pids.is_some()).then(|| cgroup::Budget {
            parent: cgroup_parent.clone(),
            memory: *memory,
            pids: *pids,
        })
    }

    /// Every container goes under `path`: dockerd's default (which BuildKit's
    /// steps get too) and what the proxy injects into each create.
    pub(super) fn use_cgroup_parent(&mut self, path: &str) {
        dockerd::add_cgroup_parent(&mut self.dockerd_args, path);
        self.policy.cgroup_parent = Some(path.to_string());
    }

    /// What a child gets between fork and exec.
    pub(super) fn child_setup(&self, own_group: bool) -> sys::ChildSetup {
        sys::ChildSetup {
            mask: self.inherited_mask,
            reset: &reaper::IGNORED,
            new_process_group: own_group,
            foreground: own_group && self.foreground,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Init(InitArgs),
    }

    pub(super) fn parse(argv: &[&str]) -> InitArgs {
        let cli =
            Cli::try_parse_from(std::iter::once("dindbox").chain(argv.iter().copied())).unwrap();
        let Sub::Init(args) = cli.command;
        args
    }

    fn config(argv: &[&str], tty: bool) -> Config {
        Config::new(parse(argv), tty, Some("/bin/bash")).unwrap()
    }

    #[test]
    fn leading_dash_trailing_args_are_dockerd_flags() {
        for argv in [
            &["init", "--mtu", "1400"][..],
            &["init", "--", "--mtu", "1400"],
        ] {
            let args = parse(argv);
            assert_eq!(args.trailing, ["--mtu", "1400"], "{argv:?}");
            let cfg = Config::new(args, false, None).unwrap();
            assert_eq!(cfg.dockerd_args[1..], ["--mtu", "1400"], "{argv:?}");
            assert_eq!(cfg.command, None, "{argv:?}");
        }
    }

    #[test]
    fn other_trailing_args_are_a_command() {
        let cfg = config(&["init", "bash", "-l"], false);
        assert_eq!(
            cfg.command.as_deref(),
            Some(&["bash".to_string(), "-l".to_string()][..])
        );
        assert_eq!(cfg.dockerd_args.len(), 1);
        assert!(!cfg.foreground);
    }

    #[test]
    fn own_flags_still_parse_before_the_trailing_args() {
        let cfg = config(
            &[
                "init",
                "--stop-grace",
                "1.5",
                "--public-socket",
                "/x.sock",
                "--debug",
            ],
            false,
        );
        assert_eq!(cfg.stop_grace, Duration::from_millis(1500));
        assert_eq!(cfg.socket, Path::new("/x.sock"));
        assert_eq!(cfg.dockerd_args[1..], ["--debug"]);
        assert!(
            cfg.policy.allow_buildkit,
            "BuildKit is on in a box by default"
        );
        let cfg = config(&["init", "--allow-buildkit", "--mtu", "1"], false);
        assert!(cfg.policy.allow_buildkit);
        assert_eq!(cfg.dockerd_args[1..], ["--mtu", "1"]);
    }

    #[test]
    fn a_terminal_without_port_gets_a_login_shell() {
        let cfg = config(&["init"], true);
        assert_eq!(
            cfg.command.as_deref(),
            Some(&["/bin/bash".to_string(), "-l".to_string()][..])
        );
        assert!(cfg.foreground);
        assert_eq!(config(&["init"], false).command, None);
        assert_eq!(config(&["init", "--port", "2375"], true).command, None);
    }

    #[test]
    fn tls_is_on_only_with_a_non_empty_cert_dir() {
        assert_eq!(config(&["init"], false).tls, None);
        assert_eq!(config(&["init", "--tls-certdir", ""], false).tls, None);
        assert_eq!(config(&["init", "--tls-certdir", "  "], false).tls, None);
        let cfg = config(
            &[
                "init",
                "--tls-certdir",
                "/certs",
                "--tls-san",
                "DNS:foo,IP:1.2.3.4",
            ],
            false,
        );
        assert_eq!(
            cfg.tls,
            Some(TlsOptions {
                dir: PathBuf::from("/certs"),
                extra_sans: tls::parse_sans("DNS:foo,IP:1.2.3.4").unwrap(),
            })
        );
        // SANs without a cert dir are ignored, as docker:dind ignores them.
        assert_eq!(config(&["init", "--tls-san", "DNS:x"], false).tls, None);
    }

    #[test]
    fn bad_tls_settings_are_config_errors() {
        let err = Config::new(
            parse(&["init", "--tls-certdir", "/certs", "--tls-san", "URI:x"]),
            false,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("DOCKER_TLS_SAN"), "{err}");
        let err = Config::new(parse(&["init", "--tls-certdir", "certs"]), false, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
    }

    #[test]
    fn tls_serves_on_port_or_2376_and_plain_tcp_only_without_it() {
        let tmp = tempfile::tempdir().unwrap();
        let sans = tls::wanted_sans("box", [], &[]);
        let config = tls::prepare(tmp.path(), &sans, std::time::SystemTime::now())
            .unwrap()
            .config;
        let addr = |a: Option<ListenAddr>| a.map(|a| a.to_string());
        assert_eq!(addr(tcp_listener(None, None)), None);
        assert_eq!(
            addr(tcp_listener(Some(2375), None)).as_deref(),
            Some("tcp://0.0.0.0:2375")
        );
        assert!(matches!(
            tcp_listener(None, Some(&config)),
            Some(ListenAddr::Tls(a, _)) if a.port() == 2376
        ));
        assert!(matches!(
            tcp_listener(Some(1234), Some(&config)),
            Some(ListenAddr::Tls(a, _)) if a.port() == 1234
        ));
    }

    #[test]
    fn parse_seconds_takes_fractions_and_rejects_junk() {
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("ten").is_err());
    }

    /// A policy file with a memory budget (tests cannot set DINDBOX_MEMORY_LIMIT:
    /// the environment is process-wide).
    fn budget_file() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "memory = \"64m\"\npids = 100\n").unwrap();
        file
    }

    #[test]
    fn a_budget_refuses_a_cgroup_parent_in_the_dockerd_args() {
        let file = budget_file();
        let policy = file.path().to_str().unwrap();
        for argv in [
            &[
                "init",
                "--policy",
                policy,
                "--dockerd-args",
                "--cgroup-parent=/x",
            ][..],
            &["init", "--policy", policy, "--", "--cgroup-parent", "/x"],
        ] {
            let err = Config::new(parse(argv), false, None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("--cgroup-parent"), "{msg}");
            assert!(msg.contains("DINDBOX_CGROUP_PARENT"), "{msg}");
            assert!(msg.contains("DINDBOX_MEMORY_LIMIT"), "{msg}");
        }
        // Without a budget the flag is the user's business.
        let cfg = config(&["init", "--dockerd-args", "--cgroup-parent=/x"], false);
        assert_eq!(cfg.dockerd_args[1..], ["--cgroup-parent=/x"]);
        assert_eq!(cfg.budget(), None);
    }

    #[test]
    fn a_budget_puts_dockerd_and_the_proxy_under_one_parent() {
        let file = budget_file();
        let policy = file.path().to_str().unwrap();
        let mut cfg = config(&["init", "--policy", policy, "--debug"], false);
        assert_eq!(
            cfg.budget(),
            Some(cgroup::Budget {
                parent: None,
                memory: Some(64 << 20),
                pids: Some(100),
            })
        );
        cfg.use_cgroup_parent("/dindbox");
        assert_eq!(
            cfg.dockerd_args[1..],
            ["--debug", "--cgroup-parent=/dindbox"]
        );
        assert_eq!(cfg.policy.cgroup_parent.as_deref(), Some("/dindbox"));
    }

    #[test]
    fn graphdriver_adds_the_plugin_to_the_dockerd_args() {
        let cfg = config(
            &[
                "init",
                "--graphdriver",
                "unix:///dindbox/graphdriver/dindbox.sock",
                "--debug",
            ],
            false,
        );
        assert_eq!(
            cfg.graphdriver.as_ref().unwrap().socket,
            Path::new("/dindbox/graphdriver/dindbox.sock")
        );
        assert_eq!(
            cfg.dockerd_args[1..],
            ["--debug", "--experimental", "--storage-driver=dindbox"]
        );
        assert!(
            cfg.dockerd_env.is_empty(),
            "set at boot from dockerd --version"
        );
        // Unset or empty: nothing changes.
        let cfg = config(&["init", "--graphdriver", " "], false);
        assert_eq!(cfg.graphdriver, None);
        assert_eq!(cfg.dockerd_args.len(), 1);
        // A storage driver of the user's own, or a bad URL, is a config error.
        for argv in [
            &["init", "--graphdriver", "/g.sock", "--", "-s", "overlay2"][..],
            &["init", "--graphdriver", "tcp://1.2.3.4:5"],
        ] {
            let err = Config::new(parse(argv), false, None).unwrap_err();
            assert!(matches!(err, InitError::Config(_)), "{argv:?}: {err}");
        }
    }

    #[test]
    fn the_containerd_store_switch_becomes_a_dockerd_feature_flag() {
        let cfg = config(&["init", "--containerd-store", "1", "--debug"], false);
        assert_eq!(
            cfg.dockerd_args[1..],
            ["--debug", "--feature=containerd-snapshotter=true"]
        );
        assert!(cfg.containerd_store);
        let cfg = config(&["init", "--containerd-store", "0"], false);
        assert_eq!(
            cfg.dockerd_args[1..],
            ["--feature=containerd-snapshotter=false"]
        );
        assert!(!cfg.containerd_store);
        // Unset: dockerd's default, unless its own arguments ask for the store.
        let cfg = config(&["init", "--containerd-store", ""], false);
        assert_eq!(cfg.dockerd_args.len(), 1);
        assert!(!cfg.containerd_store);
        let cfg = config(&["init", "--feature", "containerd-snapshotter"], false);
        assert!(cfg.containerd_store);
        // Twice, with the graphdriver, or not a switch: a config error.
        for argv in [
            &[
                "init",
                "--containerd-store",
                "1",
                "--",
                "--feature=containerd-snapshotter",
            ][..],
            &[
                "init",
                "--containerd-store",
                "1",
                "--graphdriver",
                "/g.sock",
            ],
            &[
                "init",
                "--graphdriver",
                "/g.sock",
                "--feature=containerd-snapshotter",
            ],
            &["init", "--containerd-store", "yes please"],
        ] {
            let err = Config::new(parse(argv), false, None).unwrap_err();
            assert!(
                matches!(err, InitError::Config(_) | InitError::ImageStore(_)),
                "{argv:?}: {err}"
            );
        }
    }

    #[test]
    fn an_explicit_cgroup_parent_is_the_budget_parent() {
        let file = budget_file();
        let policy = file.path().to_str().unwrap();
        let cfg = config(
            &["init", "--policy", policy, "--cgroup-parent", "/ci"],
            false,
        );
        assert_eq!(cfg.budget().unwrap().parent.as_deref(), Some("/ci"));
        // The flag is init's own option, not a dockerd flag.
        assert_eq!(cfg.dockerd_args.len(), 1);
    }
}
