//! The host's Docker daemon: its unix socket, from `--host`/`DOCKER_HOST`.

use std::path::PathBuf;

use anyhow::bail;

/// The default host daemon socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The unix socket of a `DOCKER_HOST`-style address: `unix:///path` or a
/// plain absolute path. Anything else (a tenant's `tcp://` address after
/// `eval "$(dindbox tenant create ...)"`, say) is refused with a hint.
pub fn socket_of(host: &str) -> anyhow::Result<PathBuf> {
    let host = host.trim();
    if host.is_empty() {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    }
    let path = host.strip_prefix("unix://").unwrap_or(host);
    if !path.starts_with('/') {
        bail!(
            "the host daemon must be a unix socket (unix:///var/run/docker.sock), not {host:?}; \
             DOCKER_HOST may point at a tenant after `eval` of `dindbox tenant create`: pass \
             --host unix:///var/run/docker.sock"
        );
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn socket_of_accepts_unix_addresses_only() {
        assert_eq!(socket_of("").unwrap(), Path::new(DEFAULT_SOCKET));
        assert_eq!(
            socket_of("unix:///var/lib/x/docker.sock").unwrap(),
            Path::new("/var/lib/x/docker.sock")
        );
        assert_eq!(socket_of("/run/d.sock").unwrap(), Path::new("/run/d.sock"));
        let err = socket_of("tcp://127.0.0.1:2376").unwrap_err().to_string();
        assert!(err.contains("--host"), "{err}");
    }
}
