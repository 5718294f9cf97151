//! PID-1 role: the boot sequence of a dind box, readable top to bottom in
//! [`boot`], then the PID-1 duties (reaping, signals, dockerd supervision,
//! graceful shutdown) in `run`.
//!
//! Every `unsafe` block is in `sys.rs`; the other files forbid unsafe code.

#![deny(unsafe_code)]

mod cgroup;
mod config;
mod containerd;
mod dockerd;
mod drain;
mod fds;
mod graphdriver_plugin;
mod imagestore;
mod mounts;
mod network;
mod ports;
mod reaper;
mod run;
mod shell;
mod snapshotter;
#[allow(unsafe_code)]
mod sys;
mod userns;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow};

use self::cgroup::Cgroups;
pub use self::config::{Config, InitArgs, InitOptions, TlsOptions};
use self::dockerd::LogTarget;
pub use self::reaper::exit_code;
use crate::tls;

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
    #[error("proxy snapshotter: {0}")]
    Snapshotter(#[from] snapshotter::SnapshotterError),
    #[error("{0}")]
    Containerd(#[from] containerd::ContainerdError),
    #[error("box without --privileged: {0}")]
    Userns(#[from] userns::UsernsError),
    #[error("failed to set up {what}: {err}")]
    Setup {
        what: &'static str,
        err: std::io::Error,
    },
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
            // The last line a user reads: the reason itself is the message.
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

    // Without CAP_SYS_ADMIN init can neither mount nor manage cgroups: dockerd
    // then runs under rootlesskit, which makes the namespaces it needs. Only a
    // cgroup the outer runtime delegated to the box's root is init's to manage.
    let (privileged, no_cgroups) = match userns::detect()? {
        userns::Mode::Privileged => (true, None),
        userns::Mode::Unprivileged(map) => (false, prepare_unprivileged(&mut cfg, &map)?),
    };

    // The proxy graphdriver's checks come before `/` is made rshared below,
    // which would make every mount look like it propagates.
    if let Some(gd) = cfg.graphdriver.clone() {
        prepare_graphdriver(&mut cfg, &gd)?;
    }
    if cfg.snapshotter.is_some() {
        let mountinfo = mounts::read_mountinfo()?;
        snapshotter::check_area(&mountinfo, Path::new(snapshotter::AREA))?;
        snapshotter::check_containerd_root(&mountinfo, Path::new(snapshotter::CONTAINERD_ROOT))?;
    }

    // Mounts before dockerd: securityfs for AppArmor detection, a tmpfs /run so
    // no state of a previous run survives, rshared / for mount propagation.
    if privileged {
        for warning in mounts::prepare()? {
            tracing::warn!("{warning}");
        }
    }
    // A restarted container keeps its files: dockerd refuses to start over a
    // pid file naming a live pid, and a leftover socket would look alive.
    let own = [&cfg.dockerd_socket, &cfg.socket, &cfg.ready_file].map(PathBuf::as_path);
    let removed = mounts::remove_stale_at_boot(&own)?;
    if !removed.is_empty() {
        tracing::info!(?removed, "removed stale files of an earlier run");
    }

    // cgroups before dockerd starts (it creates its cgroups at start) and
    // before the box accepts `docker exec` load (which races the v2 move).
    match &no_cgroups {
        None => prepare_cgroups(&mut cfg)?,
        Some(why) => match cfg.budget() {
            Some(budget) => tracing::warn!(
                memory = ?budget.memory,
                pids = ?budget.pids,
                "budget: this box without --privileged creates no cgroups and its rootless \
                 dockerd runs without any, because {why} (README, \"Without --privileged\"): \
                 the box's own limits are the outer container's"
            ),
            None => tracing::info!(
                "no cgroups for inner containers (their --memory/--pids-limit are not applied): \
                 {why}"
            ),
        },
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
    runtime.block_on(run::run(Arc::new(cfg)))
}

/// The box's cgroups (v1 or v2) and, with a budget, the parent dockerd and
/// the proxy put containers under.
fn prepare_cgroups(cfg: &mut Config) -> Result<(), InitError> {
    let cgroups = cgroup::detect(&cfg.cgroup_root)?;
    tracing::info!("{}", cgroups.setup(&cfg.cgroup_root)?);
    match cgroups.controllers(&cfg.cgroup_root) {
        Ok(available) => {
            if let Some(warning) = cgroup::missing_controllers_warning(&available) {
                tracing::warn!("{warning}");
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot list the box's cgroup controllers"),
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
    Ok(())
}

/// A box without CAP_SYS_ADMIN (see [`userns`]): dockerd under rootlesskit,
/// with the subordinate ids that map the box's own ids into its namespace.
/// With the box's cgroup delegated to its root, dockerd runs as root of that
/// namespace (cgroupfs driver, crun) and init prepares the cgroup; otherwise
/// rootless, and the result says why there are no cgroups.
fn prepare_unprivileged(
    cfg: &mut Config,
    map: &userns::UidMap,
) -> Result<Option<userns::NotDelegated>, InitError> {
    let storage_server = [
        (cfg.graphdriver.is_some(), "DINDBOX_GRAPHDRIVER"),
        (cfg.snapshotter.is_some(), "DINDBOX_SNAPSHOTTER"),
    ];
    if let Some((_, name)) = storage_server.into_iter().find(|(set, _)| *set) {
        return Err(InitError::Config(format!(
            "{name} needs a --privileged box (the host's mounts reach the box through \
             rshared propagation, which only a privileged box can set up)"
        )));
    }
    if map.is_host() {
        tracing::warn!(
            uid_map = %map,
            "no CAP_SYS_ADMIN but the box's root is the host's root: dockerd runs under \
             rootlesskit; run the outer daemon with --userns-remap (or the pod with \
             hostUsers: false) so that the box's root is not the host's"
        );
    }
    let path = userns::path_env();
    userns::check_programs(&path)?;
    let written = userns::ensure_subids(Path::new("/etc"), map)?;
    userns::dockerd_args_and_env(&mut cfg.dockerd_args, &mut cfg.dockerd_env);
    let delegation = userns::cgroup_delegation(
        &userns::view_cgroup(&cfg.cgroup_root),
        userns::find_program(&path, "crun"),
    );
    let crun = match delegation {
        Ok(crun) => crun,
        Err(why) => {
            cfg.launcher = userns::launcher();
            tracing::info!(
                uid_map = %map,
                subids_written = ?written,
                launcher = ?cfg.launcher,
                "box without --privileged: dockerd runs rootless under rootlesskit (no mounts, \
                 no cgroups by init: {why})"
            );
            return Ok(Some(why));
        }
    };
    let dindbox = std::env::current_exe().map_err(|err| InitError::Setup {
        what: "the path of dindbox itself (rootlesskit's child)",
        err,
    })?;
    userns::dockerd_as_root_args(&mut cfg.dockerd_args, &crun);
    let proxy =
        ports::use_proxy(&mut cfg.dockerd_args, &dindbox).map_err(|err| InitError::File {
            what: "link the userland proxy in",
            path: ports::PROXY_DIR.into(),
            err,
        })?;
    cfg.launcher = userns::launcher_as_root(&dindbox);
    tracing::info!(
        uid_map = %map,
        subids_written = ?written,
        launcher = ?cfg.launcher,
        userland_proxy = ?proxy,
        "box without --privileged, its cgroup v2 delegated to the box's root: init prepares \
         the cgroup, dockerd runs under rootlesskit as root of its user namespace, not rootless \
         (cgroupfs driver, crun as the default runtime; published ports through rootlesskit's \
         port driver)"
    );
    Ok(None)
}

/// `dindbox-docker-proxy ARGS...` (dindbox under that name): dockerd's
/// userland proxy in a delegated box, see [`ports`].
pub fn docker_proxy_main(args: &[std::ffi::OsString]) -> ExitCode {
    ports::proxy_main(args)
}

/// The name dockerd runs [`docker_proxy_main`] by.
pub const DOCKER_PROXY_NAME: &str = ports::PROXY_NAME;

/// `dindbox userns-dockerd DOCKERD ARGS...` (hidden): rootlesskit's child in
/// a box without --privileged whose cgroup is delegated; see
/// [`userns::exec_dockerd_as_root`]. Returns only when the exec failed.
pub fn userns_dockerd_main(command: &[std::ffi::OsString]) -> ExitCode {
    let err = userns::exec_dockerd_as_root(command);
    let program = command.first().map(|p| p.to_string_lossy().into_owned());
    eprintln!(
        "dindbox {}: cannot run {}: {err}",
        userns::DOCKERD_AS_ROOT,
        program.unwrap_or_default()
    );
    ExitCode::FAILURE
}

/// The containerd image store: a dockerd that has it, and a data root its
/// snapshotter can mount in (see [`imagestore`]).
fn check_containerd_store(cfg: &Config) -> Result<(), InitError> {
    let version = dockerd::dockerd_version(&cfg.dockerd).map_err(|e| {
        InitError::Config(format!(
            "{e}; the containerd image store needs dockerd 24.0 or later"
        ))
    })?;
    imagestore::version_gate(version)?;
    let data_root = dockerd::data_root(&cfg.dockerd_args);
    // On the proxy snapshotter the box mounts no overlay of its own.
    if cfg.snapshotter.is_none() {
        imagestore::check_data_root(&data_root, mounts::on_overlayfs(&data_root))?;
    }
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
    let data_root = dockerd::data_root(&cfg.dockerd_args);
    graphdriver_plugin::check_propagation(&mounts::read_mountinfo()?, &data_root)?;
    let version =
        dockerd::dockerd_version(&cfg.dockerd).map_err(graphdriver_plugin::PluginError::Version)?;
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
                tracing::info!(interface = %iface, mtu, "MTU: dockerd and the networks tenants create get the interface's as --mtu");
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
        tracing::info!(reason = %why, "iptables: the image's default backend");
        return;
    };
    match network::backend_shim(Path::new("/run/dindbox/iptables"), Path::new("/usr/sbin"), backend) {
        Ok(dir) => {
            tracing::info!(?backend, reason = %why, "iptables: the backend for dockerd");
            cfg.dockerd_path_prefix = Some(dir);
        }
        Err(err) => tracing::warn!(
            "iptables: could not select the {backend:?} backend ({why}): {err}; dockerd uses the image's default"
        ),
    }
}
