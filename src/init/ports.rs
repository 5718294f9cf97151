//! Published ports of a box without --privileged whose dockerd runs as root
//! of rootlesskit's namespaces (a delegated cgroup, see [`super::userns`]):
//! such a dockerd is not in rootless mode, so it never asks rootlesskit's port
//! driver for its ports, and `docker run -p 8080:80` would listen in
//! rootlesskit's network namespace only. dockerd starts its userland proxy
//! (`docker-proxy`) for each published port; init points
//! `--userland-proxy-path` at `dindbox-docker-proxy` (a link to dindbox), which
//! adds the port to rootlesskit's builtin driver (its API socket, as
//! `rootlessctl add-ports` does), runs the real docker-proxy with the same
//! arguments and file descriptors, and removes the port when the proxy ends.
//! The port then answers in the box's own network namespace, as in rootless
//! mode (rootlesskit-docker-proxy of rootlesskit 1.x did the same).

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use http::Method;
use serde_json::{json, Value};

use super::userns;
use crate::engine::Engine;

/// The name (a link to dindbox) dockerd runs as its userland proxy; `main`
/// dispatches on it.
pub const PROXY_NAME: &str = "dindbox-docker-proxy";
/// Where init puts that link.
pub const PROXY_DIR: &str = "/run/dindbox/bin";
/// The fd on which dockerd waits for docker-proxy's "0\n" (or "1\nERROR").
const PARENT_PIPE_FD: i32 = 3;

/// What dockerd asks of its userland proxy: one host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = std::net::SocketAddr::new(self.host_ip, self.host_port);
        write!(f, "{} {addr}", self.proto)
    }
}

impl Binding {
    /// rootlesskit's protocol names the address family (`tcp4`, `udp6`),
    /// since the builtin driver listens on one family per port.
    fn api_proto(&self) -> String {
        let family = if self.host_ip.is_ipv4() { "4" } else { "6" };
        format!("{}{family}", self.proto)
    }

    /// rootlesskit's PortSpec: listen on `host_ip:host_port` in the box's
    /// namespace, connect to the same port on loopback in dockerd's.
    pub fn port_spec(&self) -> Value {
        json!({
            "proto": self.api_proto(),
            "parentIP": self.host_ip.to_string(),
            "parentPort": self.host_port,
            "childPort": self.host_port,
        })
    }

    /// Whether a PortStatus of rootlesskit's list is for the same listener.
    fn same_listener(&self, status: &Value) -> bool {
        let spec = &status["spec"];
        spec["proto"] == self.api_proto()
            && spec["parentIP"] == self.host_ip.to_string()
            && spec["parentPort"] == self.host_port
    }
}

/// Reads `-proto`, `-host-ip` and `-host-port` out of docker-proxy's arguments
/// (Go's flag syntax: `-name value`, `-name=value`, one or two dashes).
fn parse_binding(args: &[OsString]) -> Result<Binding, String> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let flag = |name: &str| -> Option<String> {
        args.iter().enumerate().find_map(|(i, arg)| {
            let bare = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
            match bare.split_once('=') {
                Some((n, value)) if n == name => Some(value.to_string()),
                None if bare == name => args.get(i + 1).cloned(),
                _ => None,
            }
        })
    };
    let proto = flag("proto").unwrap_or_else(|| "tcp".into());
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("unknown -proto {proto:?}"));
    }
    let host_ip = flag("host-ip").ok_or("no -host-ip")?;
    let host_ip = host_ip
        .parse()
        .map_err(|e| format!("-host-ip {host_ip:?}: {e}"))?;
    let host_port = flag("host-port").ok_or("no -host-port")?;
    let host_port = host_port
        .parse()
        .map_err(|e| format!("-host-port {host_port:?}: {e}"))?;
    Ok(Binding {
        proto,
        host_ip,
        host_port,
    })
}

/// Adds the port to rootlesskit's driver and returns its id. An entry for the
/// same listener left by a proxy that was killed (SIGKILL leaves no time to
/// remove it) is removed first: nobody else uses this API.
async fn add_port(api: &Engine, binding: &Binding) -> Result<i64, String> {
    let listed = api
        .json(Method::GET, "/v1/ports", None)
        .await
        .map_err(|e| format!("GET /v1/ports: {}", e.chain()))?;
    for stale in listed.as_array().into_iter().flatten() {
        if binding.same_listener(stale) {
            if let Some(id) = stale["id"].as_i64() {
                remove_port(api, id).await?;
            }
        }
    }
    let added = api
        .json(Method::POST, "/v1/ports", Some(&binding.port_spec()))
        .await
        .map_err(|e| format!("POST /v1/ports: {}", e.chain()))?;
    added["id"]
        .as_i64()
        .ok_or_else(|| format!("POST /v1/ports answered no id: {added}"))
}

async fn remove_port(api: &Engine, id: i64) -> Result<(), String> {
    api.json(Method::DELETE, &format!("/v1/ports/{id}"), None)
        .await
        .map(drop)
        .map_err(|e| format!("DELETE /v1/ports/{id}: {}", e.chain()))
}

/// The real docker-proxy: on PATH (Debian: /usr/sbin) or in /usr/libexec/docker.
fn real_proxy() -> Option<PathBuf> {
    userns::find_program(&userns::path_env(), "docker-proxy").or_else(|| {
        let libexec = Path::new("/usr/libexec/docker/docker-proxy");
        libexec.is_file().then(|| libexec.into())
    })
}

/// Tells dockerd the proxy failed, the way docker-proxy does ("1\n" and the
/// error on fd 3), so `docker run -p` reports it.
fn report_failure(message: &str) {
    let pipe = format!("/proc/self/fd/{PARENT_PIPE_FD}");
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(pipe) {
        let _ = write!(f, "1\n{PROXY_NAME}: {message}");
    }
    eprintln!("{PROXY_NAME}: {message}");
}

/// `dindbox-docker-proxy ARGS...`, as dockerd's userland proxy.
pub fn proxy_main(args: &[OsString]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report_failure(&format!("tokio runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_proxy(args)) {
        Ok(code) => code,
        Err(message) => {
            report_failure(&message);
            ExitCode::FAILURE
        }
    }
}

async fn run_proxy(args: &[OsString]) -> Result<ExitCode, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let binding = parse_binding(args)?;
    let real = real_proxy().ok_or("docker-proxy is not in the image")?;
    let api = Engine::new(&Path::new(userns::STATE_DIR).join("api.sock"));
    let id = match add_port(&api, &binding).await {
        Ok(id) => Some(id),
        // A box whose namespace has no IPv6 cannot listen there; the IPv4
        // listener dockerd asks for next still brings the port in.
        Err(why) if binding.host_ip.is_ipv6() => {
            eprintln!("{PROXY_NAME}: {binding} not forwarded into the box: {why}");
            None
        }
        Err(why) => {
            return Err(format!(
                "cannot forward {binding} into the box through rootlesskit's API: {why}"
            ))
        }
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    // Same arguments and fds (3: the pipe to dockerd, 4: the listening socket
    // with -use-listen-fd): it answers dockerd itself.
    let mut child = tokio::process::Command::new(&real)
        .args(args)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", real.display()))?;
    // Our copy of the pipe would keep dockerd reading past the proxy's exit.
    if nix::sys::stat::fstat(PARENT_PIPE_FD)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
    {
        let _ = nix::unistd::close(PARENT_PIPE_FD);
    }
    let status = loop {
        let sig = tokio::select! {
            status = child.wait() => break status,
            _ = interrupt.recv() => nix::sys::signal::Signal::SIGINT,
            _ = terminate.recv() => nix::sys::signal::Signal::SIGTERM,
        };
        if let Some(pid) = child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, sig);
        }
    };
    if let Some(id) = id {
        if let Err(why) = remove_port(&api, id).await {
            eprintln!("{PROXY_NAME}: {why}");
        }
    }
    let code = status
        .ok()
        .and_then(|s| s.code())
        .map_or(1, |c| u8::try_from(c).unwrap_or(1));
    Ok(ExitCode::from(code))
}

/// Makes `PROXY_DIR/dindbox-docker-proxy` a link to `dindbox` and gives
/// dockerd its path as `--userland-proxy-path`, unless the arguments set one
/// or turn the userland proxy off.
pub fn use_proxy(args: &mut Vec<String>, dindbox: &Path) -> std::io::Result<Option<PathBuf>> {
    if super::dockerd::sets_flag(args, "--userland-proxy-path")
        || args.iter().any(|a| a == "--userland-proxy=false")
    {
        return Ok(None);
    }
    std::fs::create_dir_all(PROXY_DIR)?;
    let link = Path::new(PROXY_DIR).join(PROXY_NAME);
    match std::fs::remove_file(&link) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    std::os::unix::fs::symlink(dindbox, &link)?;
    args.push(format!("--userland-proxy-path={}", link.display()));
    Ok(Some(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn reads_dockers_proxy_arguments() {
        // As moby's portmapper (20.10 to 28) starts it.
        let args = os(&[
            "-proto",
            "tcp",
            "-host-ip",
            "0.0.0.0",
            "-host-port",
            "8080",
            "-container-ip",
            "172.17.0.2",
            "-container-port",
            "80",
            "-use-listen-fd",
        ]);
        let b = parse_binding(&args).unwrap();
        assert_eq!(b.to_string(), "tcp 0.0.0.0:8080");
        assert_eq!(
            b.port_spec(),
            json!({"proto": "tcp4", "parentIP": "0.0.0.0", "parentPort": 8080, "childPort": 8080})
        );
        let b = parse_binding(&os(&["--proto=udp", "-host-ip=::", "-host-port", "53"])).unwrap();
        assert_eq!(b.port_spec()["proto"], "udp6");
        assert_eq!(b.port_spec()["parentIP"], "::");
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse_binding(&os(&["-host-port", "80"])).is_err());
        assert!(parse_binding(&os(&["-host-ip", "0.0.0.0"])).is_err());
        assert!(parse_binding(&os(&["-host-ip", "x", "-host-port", "80"])).is_err());
        assert!(parse_binding(&os(&[
            "-proto",
            "icmp",
            "-host-ip",
            "::",
            "-host-port",
            "1"
        ]))
        .is_err());
        assert!(parse_binding(&os(&["-host-ip", "::", "-host-port", "70000"])).is_err());
    }

    #[test]
    fn a_stale_entry_is_recognised_by_its_listener() {
        let b = parse_binding(&os(&["-host-ip", "0.0.0.0", "-host-port", "8080"])).unwrap();
        let listed = json!({"id": 3, "spec": b.port_spec()});
        assert!(b.same_listener(&listed));
        let other =
            json!({"id": 4, "spec": {"proto": "tcp4", "parentIP": "0.0.0.0", "parentPort": 8081}});
        assert!(!b.same_listener(&other));
    }

    #[test]
    fn the_proxy_path_is_given_unless_chosen_or_off() {
        let mut args = vec!["--userland-proxy=false".to_string()];
        assert!(use_proxy(&mut args, Path::new("/x")).unwrap().is_none());
        let mut args = vec!["--userland-proxy-path=/p".to_string()];
        assert!(use_proxy(&mut args, Path::new("/x")).unwrap().is_none());
        assert_eq!(args.len(), 1);
    }
}
