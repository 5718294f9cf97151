//! Where the proxy listens: binding unix, TCP and TLS sockets, and accepting
//! connections (the TLS handshake off the accept loop).

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::serve;

/// How long a client may take to finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a proxy listens.
#[derive(Debug, Clone)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// TCP with TLS; the config decides whether client certificates are
    /// required (the ones from [`crate::tls::server_config`] are).
    Tls(SocketAddr, Arc<rustls::ServerConfig>),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
            ListenAddr::Tls(addr, _) => write!(f, "tcp://{addr} (TLS)"),
        }
    }
}

/// A bound listening socket, ready for [`Proxy::serve`].
pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
    Tls(TcpListener, TlsAcceptor),
}

/// Why a [`Listener`] could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("failed to listen on {addr}: {err}")]
    Listen { addr: String, err: io::Error },
    #[error("{} is already served by another process", .0.display())]
    InUse(PathBuf),
    #[error("failed to remove stale socket {}: {err}", path.display())]
    RemoveStale { path: PathBuf, err: io::Error },
    #[error("failed to create {}: {err}", path.display())]
    CreateDir { path: PathBuf, err: io::Error },
    #[error("failed to set permissions on {}: {err}", path.display())]
    Permissions { path: PathBuf, err: io::Error },
}

impl Listener {
    /// Binds now, so that a busy port or a bad path is an error before `ready`.
    /// A stale unix socket file left by an earlier run is replaced; a live one is an error.
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, BindError> {
        let listen = |err| BindError::Listen {
            addr: addr.to_string(),
            err,
        };
        match addr {
            ListenAddr::Tcp(tcp) => {
                Ok(Listener::Tcp(TcpListener::bind(tcp).await.map_err(listen)?))
            }
            ListenAddr::Tls(tcp, config) => {
                let listener = TcpListener::bind(tcp).await.map_err(listen)?;
                Ok(Listener::Tls(listener, TlsAcceptor::from(config.clone())))
            }
            ListenAddr::Unix(path) => Ok(Listener::Unix(bind_unix(path).await?)),
        }
    }

    /// The bound TCP address (the port chosen for `:0`); `None` for unix sockets.
    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Unix(_) => None,
            Listener::Tcp(l) | Listener::Tls(l, _) => l.local_addr().ok(),
        }
    }
}

async fn bind_unix(path: &Path) -> Result<UnixListener, BindError> {
    if UnixStream::connect(path).await.is_ok() {
        return Err(BindError::InUse(path.to_path_buf()));
    }
    match std::fs::remove_file(path) {
        Ok(()) => debug!(path = %path.display(), "removed a stale socket"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            let path = path.to_path_buf();
            return Err(BindError::RemoveStale { path, err });
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| BindError::CreateDir {
            path: dir.to_path_buf(),
            err,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|err| BindError::Listen {
        addr: format!("unix://{}", path.display()),
        err,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|err| {
        BindError::Permissions {
            path: path.to_path_buf(),
            err,
        }
    })?;
    Ok(listener)
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An accepted connection: ready to serve, or a TLS handshake away from it.
pub enum Accepted {
    Ready(Box<dyn Io>),
    Tls(TcpStream, TlsAcceptor),
}

impl Accepted {
    /// The connection to serve HTTP on; `None` (logged) when the TLS
    /// handshake failed: no client certificate, one the CA did not sign, an
    /// expired one, or no handshake within [`HANDSHAKE_TIMEOUT`].
    pub(super) async fn into_io(self, peer: &str) -> Option<Box<dyn Io>> {
        let (stream, acceptor) = match self {
            Accepted::Ready(io) => return Some(io),
            Accepted::Tls(stream, acceptor) => (stream, acceptor),
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(err)) => {
                let hint = match err
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>())
                {
                    Some(rustls::Error::InvalidMessage(_)) => {
                        " (not TLS: a plain HTTP client? Give it DOCKER_TLS_VERIFY=1 and \
                         DOCKER_CERT_PATH)"
                    }
                    Some(rustls::Error::NoCertificatesPresented) => {
                        " (no client certificate: DOCKER_CERT_PATH must hold cert.pem and key.pem)"
                    }
                    _ => "",
                };
                info!(remote = %peer, "TLS handshake refused: {err}{hint}");
                None
            }
            Err(_) => {
                info!(remote = %peer, "TLS handshake not finished within {} s", HANDSHAKE_TIMEOUT.as_secs());
                None
            }
        }
    }
}

impl serve::Listen for Listener {
    /// The connection, and who is on the other end (for the log).
    type Conn = (Accepted, Arc<str>);

    async fn accept(&self) -> io::Result<Self::Conn> {
        match self {
            Listener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                Ok((Accepted::Ready(Box::new(stream)), Arc::from("unix")))
            }
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Accepted::Ready(Box::new(stream)), peer.to_string().into()))
            }
            Listener::Tls(l, acceptor) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                Ok((
                    Accepted::Tls(stream, acceptor.clone()),
                    peer.to_string().into(),
                ))
            }
        }
    }
}
