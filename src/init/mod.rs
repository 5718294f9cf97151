//! PID-1 role: the boot sequence of a dind box, readable top to bottom in
//! [`boot`], then the PID-1 duties (reaping, signals, dockerd supervision,
//! graceful shutdown) in `run`.
//!
//! Every `unsafe` block is in `sys.rs`; the other files forbid unsafe code.

#![deny(unsafe_code)]

mod cgroup;
mod dockerd;
mod drain;
mod fds;
mod graphdriver_plugin;
mod imagestore;
mod mounts;
mod network;
mod reaper;
mod shell;
#[allow(unsafe_code)]
mod sys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use self::cgroup::Cgroups;
use self::dockerd::LogTarget;
pub use self::reaper::exit_code;
use crate::proxy::config::{ENV_CGROUP_PARENT, ENV_MEMORY, ENV_PIDS};
use crate::proxy::policy::Policy;
use crate::proxy::{ListenAddr, Listener, PolicyOptions, Proxy, ProxyConfig};
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

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("failed to close inherited file descriptors: {0}")]
    Fds(#[from] fds::FdError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("bad configuration: {0}")]
    Log(#[from] dockerd::BadLogTarget),
    #[error("bad configuration: {0}")]
    ImageStore(#[from] imagestore::ImageStoreError),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error("cgroup setup failed: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Dockerd(#[from] dockerd::DockerdError),
    #[error("TLS (DOCKER_TLS_CERTDIR): {0}")]
    Tls(#[from] tls::TlsError),
    #[error("failed to listen on {addr}: {err}")]
    Listen {
        addr: String,
        err: crate::proxy::BindError,
    },
    #[error("failed to {what} {path}: {err}")]
    File {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("proxy graphdriver: {0}")]
    Graphdriver(#[from] graphdriver_plugin::PluginError),
    #[error("failed to set up {what}: {err}")]
    Setup {
        what: &'static str,
        err: std::io::Error,
    },
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
    fn parse(dir: Option<&str>, sans: Option<&str>) -> Result<Option<TlsOptions>, InitError> {
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
fn tcp_listener(
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
    /// The proxy graphdriver's socket (`DINDBOX_GRAPHDRIVER`).
    pub graphdriver: Option<graphdriver_plugin::Graphdriver>,
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
            graphdriver,
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
    fn budget(&self) -> Option<cgroup::Budget> {
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
    fn use_cgroup_parent(&mut self, path: &str) {
        dockerd::add_cgroup_parent(&mut self.dockerd_args, path);
        self.policy.cgroup_parent = Some(path.to_string());
    }

    /// What a child gets between fork and exec.
    fn child_setup(&self, own_group: bool) -> sys::ChildSetup {
        sys::ChildSetup {
            mask: self.inherited_mask,
            reset: &reaper::IGNORED,
            new_process_group: own_group,
            foreground: own_group && self.foreground,
        }
    }

    /// Removes pid files and sockets an earlier run left. At boot that is
    /// everything; before a dockerd restart only dockerd's own (a containerd
    /// that survived dockerd is reused by the new dockerd).
    fn remove_stale_files(&self) -> Result<Vec<PathBuf>, mounts::MountError> {
        mounts::remove_stale(
            &[Path::new("/run"), Path::new("/var/run")],
            &[&self.dockerd_socket],
        )
    }

    fn remove_stale_files_at_boot(&self) -> Result<Vec<PathBuf>, mounts::MountError> {
        let dirs: Vec<&Path> = mounts::PID_DIRS.iter().map(Path::new).collect();
        let mut sockets: Vec<&Path> = mounts::CONTAINERD_SOCKETS.iter().map(Path::new).collect();
        // The ready file too: it must not claim readiness for this boot.
        sockets
            .extend([&self.dockerd_socket, &self.socket, &self.ready_file].map(PathBuf::as_path));
        mounts::remove_stale(&dirs, &sockets)
    }
}

/// Entry point of `dindbox init`.
pub fn main(args: InitArgs) -> ExitCode {
    // Before anything else, and before any thread exists: close what we
    // inherited (nothing of ours owns an fd yet) and note the signal mask our
    // children must get back.
    let closed = fds::close_inherited();
    let mut inherited_mask = SigSet::empty();
    let mask =
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, None, Some(&mut inherited_mask));
    crate::logging::init();
    let result = closed
        .map_err(InitError::from)
        .and_then(|()| {
            mask.map_err(|e| InitError::Setup {
                what: "the signal mask",
                err: e.into(),
            })
        })
        .and_then(|()| {
            let stdin_tty = nix::unistd::isatty(0).unwrap_or(false);
            let shell = std::env::var("SHELL").ok();
            let mut cfg = Config::new(args, stdin_tty, shell.as_deref())?;
            cfg.inherited_mask = inherited_mask;
            boot(cfg)
        });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!("fatal: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The boot sequence, in order. Everything before the tokio runtime is
/// synchronous, so mounts and cgroup moves happen while we are one thread.
pub fn boot(mut cfg: Config) -> Result<u8, InitError> {
    // Never be stopped by job control (a PID 1 cannot be resumed by anyone);
    // children get SIG_DFL back in their pre_exec.
    for sig in reaper::IGNORED {
        sys::ignore_signal(sig).map_err(|e| InitError::Setup {
            what: "signal dispositions",
            err: e.into(),
        })?;
    }
    // Outside a PID namespace of our own, orphans must still come to us.
    if std::process::id() != 1 {
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| InitError::Setup {
            what: "PR_SET_CHILD_SUBREAPER",
            err: e.into(),
        })?;
        tracing::info!("not PID 1: became a child subreaper");
    }

    // The proxy graphdriver's checks come before `/` is made rshared below,
    // which would make every mount look like it propagates.
    if let Some(gd) = cfg.graphdriver.clone() {
        prepare_graphdriver(&mut cfg, &gd)?;
    }

    // Mounts before dockerd: securityfs for AppArmor detection, a tmpfs /run so
    // no state of a previous run survives, rshared / for mount propagation.
    for warning in mounts::prepare()? {
        tracing::warn!("{warning}");
    }
    // A restarted container keeps its files: dockerd refuses to start over a
    // pid file naming a live pid, and a leftover socket would look alive.
    let removed = cfg.remove_stale_files_at_boot()?;
    if !removed.is_empty() {
        tracing::info!(?removed, "removed stale files of an earlier run");
    }

    // cgroups before dockerd starts (it creates its cgroups at start) and
    // before the box accepts `docker exec` load (which races the v2 move).
    let cgroups = cgroup::detect(&cfg.cgroup_root)?;
    tracing::info!("{}", cgroups.setup(&cfg.cgroup_root)?);
    match cgroups.controllers(&cfg.cgroup_root) {
        Ok(available) => {
            if let Some(warning) = cgroup::missing_controllers_warning(&available) {
                tracing::warn!("{warning}");
            }
        }
        Err(err) => tracing::warn!("cannot list the box's cgroup controllers: {err}"),
    }
    // The budget after setup (on v2 the root hands controllers down only once
    // init has left it) and before dockerd, which gets the parent as a flag.
    if let Some(budget) = cfg.budget() {
        let parent = cgroups.budget(&cfg.cgroup_root, &budget)?;
        log_budget(&parent, &budget);
        if let cgroup::Placement::Limited(dirs) = &parent.placement {
            crate::metrics::global().set_budget_dirs(dirs.clone());
        }
        cfg.use_cgroup_parent(&parent.path);
    }

    // MTU and iptables backend: fixed before dockerd sets up its bridge and rules.
    prepare_network(&mut cfg);

    if cfg.containerd_store {
        check_containerd_store(&cfg)?;
    }
    // overlay-on-overlay makes dockerd fall back to vfs: slow and huge.
    if !cfg.containerd_store && mounts::on_overlayfs(Path::new("/var/lib/docker")) {
        tracing::warn!(
            "/var/lib/docker is on overlayfs: the inner dockerd cannot use overlay2 and will fall \
             back to the slow vfs driver. Give it a volume: docker run -v NAME:/var/lib/docker ..."
        );
    }

    // Certificates before dockerd: its bridge (docker0) must not be among
    // the addresses the server certificate is made for, or every boot would
    // see a different set. A broken cert dir fails the boot here, before
    // anything is served.
    if let Some(opts) = &cfg.tls {
        cfg.server_tls = Some(prepare_tls(opts)?);
    }

    let log_file = match &cfg.log {
        LogTarget::File(path) => Some(path),
        LogTarget::Ours => None,
    };
    for path in [&cfg.dockerd_socket, &cfg.socket, &cfg.ready_file]
        .into_iter()
        .chain(log_file)
    {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| InitError::File {
                what: "create",
                path: dir.into(),
                err,
            })?;
        }
    }

    // Threads start here (tokio workers, dockerd log readers).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| InitError::Setup {
            what: "the tokio runtime",
            err,
        })?;
    runtime.block_on(run(Arc::new(cfg)))
}

/// The containerd image store: a dockerd that has it, and a data root its
/// snapshotter can mount in (see [`imagestore`]).
fn check_containerd_store(cfg: &Config) -> Result<(), InitError> {
    let version = graphdriver_plugin::dockerd_version(&cfg.dockerd).map_err(|e| {
        InitError::Config(format!(
            "{e}; the containerd image store needs dockerd 24.0 or later"
        ))
    })?;
    imagestore::version_gate(version)?;
    let data_root = graphdriver_plugin::data_root(&cfg.dockerd_args);
    imagestore::check_data_root(&data_root, mounts::on_overlayfs(&data_root))?;
    tracing::info!(
        data_root = %data_root.display(),
        dockerd = %format!("{}.{}", version.0, version.1),
        "dockerd keeps its images in the containerd image store"
    );
    Ok(())
}

/// `DINDBOX_GRAPHDRIVER`: the data root must receive the host's mounts, the
/// inner dockerd must still have graphdriver plugins, and the spec file tells
/// it where the server listens (see [`graphdriver_plugin`]).
fn prepare_graphdriver(
    cfg: &mut Config,
    gd: &graphdriver_plugin::Graphdriver,
) -> Result<(), InitError> {
    let data_root = graphdriver_plugin::data_root(&cfg.dockerd_args);
    graphdriver_plugin::check_propagation(&mounts::read_mountinfo()?, &data_root)?;
    let version = graphdriver_plugin::dockerd_version(&cfg.dockerd)
        .map_err(graphdriver_plugin::PluginError::Version)?;
    if graphdriver_plugin::version_gate(version)? {
        cfg.dockerd_env
            .push((graphdriver_plugin::DEPRECATED_ENV.into(), "1".into()));
    }
    let spec = gd
        .write_spec(Path::new(graphdriver_plugin::SPEC_DIR))
        .map_err(|err| InitError::File {
            what: "write the graphdriver plugin spec in",
            path: graphdriver_plugin::SPEC_DIR.into(),
            err,
        })?;
    tracing::info!(
        socket = %gd.socket.display(),
        spec = %spec.display(),
        data_root = %data_root.display(),
        dockerd = %format!("{}.{}", version.0, version.1),
        "proxy graphdriver: dockerd keeps its layers on the host through the graphdriver server \
         (storage driver {})",
        graphdriver_plugin::PLUGIN_NAME
    );
    if !gd.socket.exists() {
        tracing::warn!(
            "proxy graphdriver: no socket at {} yet; dockerd waits about 30 s for the host's \
             `dindbox graphdriver-server` (bind its socket directory there)",
            gd.socket.display()
        );
    }
    Ok(())
}

/// Generates or reuses the certificates in the cert dir; one log line says which.
fn prepare_tls(opts: &TlsOptions) -> Result<Arc<rustls::ServerConfig>, InitError> {
    let wanted = tls::local_sans(&opts.extra_sans)?;
    let prepared = tls::prepare(&opts.dir, &wanted, std::time::SystemTime::now())?;
    let sans: Vec<String> = prepared.sans.iter().map(ToString::to_string).collect();
    match prepared.plan {
        tls::Plan::BringYourOwn => tracing::info!(
            dir = %opts.dir.display(),
            "TLS: {}; clients need a certificate signed by server/ca.pem",
            prepared.plan
        ),
        _ => tracing::info!(
            dir = %opts.dir.display(),
            sans = %sans.join(","),
            "TLS: {}; clients: DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
            prepared.plan,
            opts.dir.join("client").display()
        ),
    }
    Ok(prepared.config)
}

/// One line: where the box's containers go and what limits them.
fn log_budget(parent: &cgroup::Parent, budget: &cgroup::Budget) {
    let memory = budget
        .memory
        .map_or("none".to_string(), |m| format!("{m} bytes"));
    let pids = budget.pids.map_or("none".to_string(), |p| p.to_string());
    match &parent.placement {
        cgroup::Placement::Limited(dirs) => {
            let at = match dirs.as_slice() {
                [one] => one.display().to_string(),
                many => format!("{} cgroup v1 hierarchies", many.len()),
            };
            tracing::info!(
                "budget: containers go under the cgroup {} (memory limit {memory}, pids limit \
                 {pids}), created in {at}",
                parent.path
            )
        }
        cgroup::Placement::NotOurs(why) => tracing::warn!(
            "budget: containers go under the cgroup {}, which init leaves alone because {why}; \
             the memory limit ({memory}) and pids limit ({pids}) apply per container only",
            parent.path
        ),
    }
}

/// dockerd's MTU and iptables backend (see [`network`]). Failures here only
/// cost the fix, never the boot: each is logged with what to do instead.
fn prepare_network(cfg: &mut Config) {
    match network::read_link_mtu(Path::new("/proc/net/route"), Path::new("/sys/class/net")) {
        Some((iface, mtu)) if !network::has_mtu_flag(&cfg.dockerd_args) => {
            if let Some(mtu) = network::mtu_for_dockerd(mtu) {
                cfg.dockerd_args.push(format!("--mtu={mtu}"));
                cfg.policy.network_mtu = Some(mtu);
                tracing::info!("MTU: {iface} has MTU {mtu}; dockerd and the networks tenants create get --mtu={mtu}");
            }
        }
        Some(_) => tracing::info!("MTU: --mtu given in the dockerd arguments; left as it is"),
        None => tracing::debug!("MTU: no default route found; dockerd keeps its default"),
    }
    let env = std::env::var("DOCKER_IPTABLES_LEGACY").ok();
    let (backend, why) = network::choose_backend(
        env.as_deref(),
        network::legacy_tables_in_use(Path::new("/proc/net")),
    );
    let Some(backend) = backend else {
        tracing::info!("iptables: the image's default backend ({why})");
        return;
    };
    match network::backend_shim(Path::new("/run/dindbox/iptables"), Path::new("/usr/sbin"), backend) {
        Ok(dir) => {
            tracing::info!("iptables: {backend:?} backend for dockerd ({why})");
            cfg.dockerd_path_prefix = Some(dir);
        }
        Err(err) => tracing::warn!(
            "iptables: could not select the {backend:?} backend ({why}): {err}; dockerd uses the image's default"
        ),
    }
}

/// The pids signals are forwarded to (0: none).
#[derive(Default)]
struct Targets {
    dockerd: Arc<AtomicI32>,
    command_group: AtomicI32,
}

/// PID-1 duties around [`serve`]: reaping and signals from the first child on,
/// and the final kill + reap whatever way serving ends.
async fn run(cfg: Arc<Config>) -> Result<u8, InitError> {
    let reaper = reaper::Reaper::new();
    reaper.start().map_err(|err| InitError::Setup {
        what: "the SIGCHLD handler",
        err,
    })?;
    let signals = reaper::signals().map_err(|err| InitError::Setup {
        what: "signal handlers",
        err,
    })?;
    let shutdown = CancellationToken::new();
    let targets = Arc::new(Targets::default());
    tokio::spawn(route_signals(signals, targets.clone(), shutdown.clone()));

    let result = serve(&cfg, &reaper, &targets, &shutdown).await;

    shutdown.cancel();
    kill_the_rest(&targets);
    reaper.drain(Duration::from_secs(2)).await;
    if let Err(err) = std::fs::remove_file(&cfg.ready_file) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("failed to remove {}: {err}", cfg.ready_file.display());
        }
    }
    if let Ok(code) = result {
        tracing::info!(code, "exiting");
    }
    result
}

/// dockerd, then the proxy, then `ready`, then the command or waiting for a
/// signal; then the graceful stop. Returns the exit code.
async fn serve(
    cfg: &Arc<Config>,
    reaper: &Arc<reaper::Reaper>,
    targets: &Arc<Targets>,
    shutdown: &CancellationToken,
) -> Result<u8, InitError> {
    // dockerd on its private socket; nothing is published until it answers.
    // One that dies before that is started again a few times (see [`dockerd::start`]).
    let dockerd = match dockerd::start(cfg, reaper, &targets.dockerd, shutdown).await? {
        dockerd::FirstStart::Ready(dockerd) => dockerd,
        dockerd::FirstStart::ShutDown { clean } => return Ok(stop_code(clean)),
    };
    tracing::info!(pid = %dockerd.pid, "dockerd answers /_ping");

    // The proxy: the only way in. Bound now, so a busy port fails before `ready`.
    let proxy = Proxy::new(ProxyConfig {
        upstream: cfg.dockerd_socket.clone(),
        policy: cfg.policy.clone(),
    });
    // The versions the proxy serves end at dockerd's newest (or the
    // policy's, with a warning when dockerd is newer). Learned now, so the
    // warning comes once, at start; failing that, before the first request.
    if let Err(reject) = proxy.learn_daemon_api().await {
        tracing::warn!(reason = %reject.message, "could not read dockerd's API version yet");
    }
    let mut addrs = vec![ListenAddr::Unix(cfg.socket.clone())];
    let tcp = tcp_listener(cfg.port, cfg.server_tls.as_ref());
    if let Some(ListenAddr::Tcp(addr)) = &tcp {
        // 0.0.0.0 in a box: beyond loopback whatever `-p` publishes.
        tracing::warn!(
            "PORT={}: the Docker API is served over plain TCP on {addr} WITHOUT AUTHENTICATION: \
             anyone who reaches this port controls the box. Publish it on loopback only \
             (-p 127.0.0.1:{}:{}) or turn on TLS with client certificates \
             (-e DOCKER_TLS_CERTDIR=/certs)",
            addr.port(),
            addr.port(),
            addr.port()
        );
    }
    addrs.extend(tcp.clone());
    let mut listeners = Vec::new();
    if let Some(port) = cfg.metrics_port {
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let shutdown = shutdown.clone();
        listeners.push(tokio::spawn(async move {
            if let Err(err) = crate::metrics::serve(addr, shutdown).await {
                tracing::error!("metrics on {addr} failed: {err}");
            }
        }));
    }
    for addr in &addrs {
        let listener = Listener::bind(addr)
            .await
            .map_err(|err| InitError::Listen {
                addr: format!("{addr:?}"),
                err,
            })?;
        listeners.push(tokio::spawn(
            proxy.clone().serve(listener, shutdown.clone()),
        ));
    }

    // Ready: one log line, and the file health checks look for.
    std::fs::write(&cfg.ready_file, b"ready\n").map_err(|err| InitError::File {
        what: "write",
        path: cfg.ready_file.clone(),
        err,
    })?;
    tracing::info!(
        socket = %cfg.socket.display(),
        tcp = %tcp.map_or("none".into(), |a| a.to_string()),
        dockerd = %cfg.dockerd_socket.display(),
        "ready"
    );

    let supervisor = tokio::spawn(dockerd::supervise(
        dockerd,
        cfg.clone(),
        reaper.clone(),
        targets.dockerd.clone(),
        shutdown.clone(),
    ));

    // The command decides how long the box lives; without one, a signal does.
    let command_code = match &cfg.command {
        Some(argv) => run_command(cfg, argv, reaper, targets, shutdown).await,
        None => {
            shutdown.cancelled().await;
            None
        }
    };

    // Graceful stop: the proxy stops accepting and dockerd gets SIGTERM and
    // the grace period (both watch `shutdown`).
    shutdown.cancel();
    let clean = supervisor.await.unwrap_or(false);
    for listener in listeners {
        if tokio::time::timeout(Duration::from_secs(1), listener)
            .await
            .is_err()
        {
            tracing::warn!("proxy did not stop within 1s");
        }
    }
    Ok(command_code.unwrap_or_else(|| stop_code(clean)))
}

/// Runs the command; its exit code, or `None` if a signal ended the box first.
async fn run_command(
    cfg: &Config,
    argv: &[String],
    reaper: &reaper::Reaper,
    targets: &Targets,
    shutdown: &CancellationToken,
) -> Option<u8> {
    let (pid, exit) = match shell::spawn(cfg, argv, reaper, &targets.command_group) {
        Ok(spawned) => spawned,
        Err(err) => {
            tracing::error!(command = ?argv, "failed to run the command: {err}");
            return Some(shell::spawn_failure_code(&err));
        }
    };
    tracing::info!(%pid, command = ?argv, "command started");
    let code = tokio::select! {
        status = exit => status.ok().map(|status| {
            tracing::info!(%pid, "command {}", reaper::describe(status));
            exit_code(status)
        }),
        _ = shutdown.cancelled() => None,
    };
    targets.command_group.store(0, Ordering::SeqCst);
    if cfg.foreground {
        shell::reclaim_terminal();
    }
    code
}

/// 0 after a clean stop, else 128 + SIGTERM (what a killed dockerd would give).
fn stop_code(clean: bool) -> u8 {
    if clean {
        0
    } else {
        128 + Signal::SIGTERM as u8
    }
}

/// Forwards signals. With a command running, everything goes to its process
/// group and SIGTERM also stops the box. Otherwise SIGTERM/SIGINT/SIGQUIT stop
/// the box and the rest (SIGHUP = reload, SIGUSR1 = stack dump) go to dockerd.
async fn route_signals(
    mut signals: tokio::sync::mpsc::UnboundedReceiver<Signal>,
    targets: Arc<Targets>,
    shutdown: CancellationToken,
) {
    while let Some(sig) = signals.recv().await {
        let group = targets.command_group.load(Ordering::SeqCst);
        if group > 0 {
            if let Err(err) = killpg(Pid::from_raw(group), sig) {
                tracing::debug!("forwarding {sig} to the command's group failed: {err}");
            }
            if sig == Signal::SIGTERM {
                tracing::info!("received {sig}: shutting down");
                shutdown.cancel();
            }
            continue;
        }
        match sig {
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => {
                tracing::info!("received {sig}: shutting down");
                shutdown.cancel();
            }
            _ => match targets.dockerd.load(Ordering::SeqCst) {
                0 => tracing::debug!("received {sig} with no dockerd running; dropped"),
                pid => {
                    tracing::info!("forwarding {sig} to dockerd");
                    dockerd::signal(Pid::from_raw(pid), sig);
                }
            },
        }
    }
}

/// The end: SIGKILL whatever is left. As PID 1 that is everything in the PID
/// namespace (`kill(-1)` spares the caller); otherwise our tracked children and
/// whatever was re-parented to us as subreaper.
fn kill_the_rest(targets: &Targets) {
    if std::process::id() == 1 {
        let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
        return;
    }
    let dockerd = targets.dockerd.load(Ordering::SeqCst);
    if dockerd > 0 {
        dockerd::signal(Pid::from_raw(dockerd), Signal::SIGKILL);
    }
    let group = targets.command_group.load(Ordering::SeqCst);
    if group > 0 {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    for pid in children_of(std::process::id()) {
        dockerd::signal(pid, Signal::SIGKILL);
    }
}

/// Direct children of `parent`, from /proc/*/stat.
fn children_of(parent: u32) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                .is_some_and(|ppid| ppid == parent)
        })
        .map(Pid::from_raw)
        .collect()
}

/// The ppid field of a /proc/PID/stat line (`pid (comm) state ppid ...`); comm
/// may itself contain spaces and parentheses, so split after the last `)`.
fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
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

    fn parse(argv: &[&str]) -> InitArgs {
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

    #[test]
    fn parent_pid_survives_odd_process_names() {
        assert_eq!(parent_pid("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("42 (a b) c) R 9 1"), Some(9));
        assert_eq!(parent_pid("garbage"), None);
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
