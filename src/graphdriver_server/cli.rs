//! `dindbox graphdriver-server`'s flags and the [`Config`] they validate into.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::home::reroot;
use super::protocol::LayerId;
use super::DriverKind;

/// `dindbox graphdriver-server` options (the seed's `proxydaemon` flags).
#[derive(clap::Args, Debug, Clone)]
pub struct GraphdriverArgs {
    /// The protected directory; the container's storage lives in ROOT/CONTAINER.
    #[arg(short = 'R', long, env = "DINDBOX_GD_ROOT")]
    pub root: PathBuf,
    /// The container this server serves (one path component).
    #[arg(short = 'C', long, env = "DINDBOX_GD_CONTAINER")]
    pub container: String,
    /// The socket to listen on: unix:///path/NAME.sock (or a plain path).
    #[arg(short = 'S', long, env = "DINDBOX_GD_SOCKET")]
    pub socket: String,
    /// The storage driver; default: overlay where the kernel allows it, else vfs.
    #[arg(long, value_enum, env = "DINDBOX_GD_DRIVER")]
    pub driver: Option<DriverKind>,
    /// The most bytes the container's layers may take: a size such as 20G (suffixes b, k, m, g,
    /// t, optionally followed by b, in any case; powers of 1024).
    #[arg(long, value_parser = crate::bytesize::parse, env = "DINDBOX_GD_MAX_BYTES")]
    pub max_bytes: Option<u64>,
    /// Where ROOT/CONTAINER is bind-mounted inside the container.
    #[arg(long, default_value = "/var/lib/docker")]
    pub container_prefix: PathBuf,
    /// Log every call (debug level).
    #[arg(long)]
    pub debug: bool,
}

/// What the server was started with, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub container: String,
    pub driver: Option<DriverKind>,
    pub max_bytes: Option<u64>,
    pub container_prefix: PathBuf,
}

/// Validates the flags into a [`Config`].
pub fn config(args: &GraphdriverArgs) -> anyhow::Result<Config> {
    container_name(&args.container)?;
    Ok(Config {
        root: protected_root(&args.root)?,
        container: args.container.clone(),
        driver: args.driver,
        max_bytes: args.max_bytes,
        container_prefix: container_prefix(&args.container_prefix)?,
    })
}

/// `--container`: one safe path component (it names `ROOT/CONTAINER`).
pub fn container_name(container: &str) -> anyhow::Result<()> {
    LayerId::parse(container).map_err(|e| {
        anyhow::anyhow!("--container {container:?} must be one safe path component: {e}")
    })?;
    Ok(())
}

/// `--root`: an existing absolute directory, canonicalized.
pub fn protected_root(root: &Path) -> anyhow::Result<PathBuf> {
    if !root.is_absolute() {
        anyhow::bail!("--root {} must be an absolute path", root.display());
    }
    let meta = std::fs::metadata(root).with_context(|| {
        format!(
            "--root {}: create the protected directory first",
            root.display()
        )
    })?;
    if !meta.is_dir() {
        anyhow::bail!("--root {} is not a directory", root.display());
    }
    Ok(std::fs::canonicalize(root)?)
}

/// `--container-prefix`: an absolute path without `..`, cleaned.
pub fn container_prefix(prefix: &Path) -> anyhow::Result<PathBuf> {
    reroot(Path::new("/"), &prefix.to_string_lossy())
        .map(|rel| Path::new("/").join(rel))
        .or_else(|_| {
            if prefix == Path::new("/") {
                Ok(PathBuf::from("/"))
            } else {
                Err(anyhow::anyhow!(
                    "--container-prefix {} must be an absolute path without `..`",
                    prefix.display()
                ))
            }
        })
}

/// `unix:///path` or a plain absolute path.
pub fn socket_path(spec: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(spec.strip_prefix("unix://").unwrap_or(spec));
    if spec.contains("://") && !spec.starts_with("unix://") {
        anyhow::bail!("--socket {spec}: only unix:// sockets are supported");
    }
    if !path.is_absolute() {
        anyhow::bail!(
            "--socket {spec}: give an absolute path, e.g. unix:///run/dindbox/gd/NAME.sock"
        );
    }
    if path.as_os_str().len() >= 108 {
        anyhow::bail!(
            "--socket {spec}: the path is longer than a unix socket address allows (107 bytes)"
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs() {
        assert_eq!(
            socket_path("unix:///run/gd/a.sock").unwrap(),
            PathBuf::from("/run/gd/a.sock")
        );
        assert_eq!(
            socket_path("/run/gd/a.sock").unwrap(),
            PathBuf::from("/run/gd/a.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://rel.sock").is_err());
        assert!(socket_path(&format!("/{}", "x".repeat(120))).is_err());
    }
}
