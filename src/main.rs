//! The `dindbox` binary: a thin CLI over the library's roles.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dindbox::{graphdriver_server, health, init, logging, proxy, snapshotter_server, tenant};

#[derive(Parser)]
#[command(
    name = "dindbox",
    version,
    about = "Docker-in-Docker made safe and boring"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// PID 1 of a privileged dind box: mounts, cgroups, supervised inner dockerd, validating proxy.
    Init(init::InitArgs),
    /// The validating, label-injecting proxy between two sockets.
    Proxy(proxy::ProxyArgs),
    /// Host side of the proxy graphdriver: serves one container's inner dockerd
    /// (`dockerd --experimental -s NAME`) its layers from ROOT/CONTAINER.
    GraphdriverServer(graphdriver_server::GraphdriverArgs),
    /// Host side of a box's storage on Docker 28 and later: a containerd proxy
    /// snapshotter keeping the box's snapshots in ROOT/CONTAINER.
    SnapshotterServer(snapshotter_server::SnapshotterArgs),
    /// Exit 0 only when the proxy answers and dockerd answers through it.
    Health(health::HealthArgs),
    /// Check a policy file or explain the effective rules.
    #[command(subcommand)]
    Policy(proxy::PolicyArgs),
    /// Tenant boxes on this host (create, list, rm, logs) through the host's Docker API.
    Tenant(tenant::TenantArgs),
    /// (Internal) rootlesskit's child in a box without --privileged whose cgroup
    /// is delegated: runs DOCKERD as root of the nested user namespace, not rootless.
    #[command(name = "userns-dockerd", hide = true)]
    UsernsDockerd {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // dockerd's userland proxy in a box without --privileged: a link to us.
    let name = args.first().map(std::path::Path::new);
    if name.and_then(|n| n.file_name()) == Some(init::DOCKER_PROXY_NAME.as_ref()) {
        return init::docker_proxy_main(&args[1..]);
    }
    let cli = Cli::parse_from(args_with_default_command(args));
    let Some(command) = cli.command else {
        eprintln!(
            "dindbox: name a command (init, proxy, health, policy, tenant); see `dindbox --help`"
        );
        return ExitCode::from(2);
    };
    match command {
        // init sets up logging itself, after it has sanitised its environment.
        Command::Init(args) => init::main(args),
        Command::Proxy(args) => {
            logging::init_with_debug(args.debug);
            report(proxy::main(args))
        }
        Command::GraphdriverServer(args) => {
            logging::init_with_debug(args.debug);
            report(graphdriver_server::main(args))
        }
        Command::SnapshotterServer(args) => {
            logging::init_with_debug(args.debug);
            report(snapshotter_server::main(args))
        }
        Command::Health(args) => report(health::main(args)),
        Command::Policy(args) => report(proxy::policy_main(args)),
        Command::Tenant(args) => report(tenant::main(args)),
        Command::UsernsDockerd { command } => init::userns_dockerd_main(&command),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dindbox: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// As PID 1 (an image whose ENTRYPOINT is just `dindbox`), `init` is the default
/// command: `dindbox --mtu 1400` means `dindbox init --mtu 1400`.
fn args_with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const COMMANDS: [&str; 11] = [
        "init",
        "userns-dockerd",
        "tenant",
        "proxy",
        "graphdriver-server",
        "snapshotter-server",
        "health",
        "policy",
        "help",
        "--help",
        "--version",
    ];
    let named = args.get(1).is_some_and(|a| COMMANDS.iter().any(|c| a == c));
    if std::process::id() == 1 && !named {
        args.insert(1.min(args.len()), "init".into());
    }
    args
}
