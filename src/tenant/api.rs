//! A small client for the host's Docker Engine API over its unix socket:
//! JSON in, JSON out, and errors that name the call and dockerd's message.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde_json::Value;

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

/// An error answer of the Docker API (status and dockerd's `message`).
#[derive(Debug)]
pub struct ApiError {
    pub call: String,
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Docker API {} answered {}: {}",
            self.call, self.status, self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// Whether `err` is the Docker API's answer `status`.
pub fn is_status(err: &anyhow::Error, status: StatusCode) -> bool {
    err.downcast_ref::<ApiError>()
        .is_some_and(|e| e.status == status)
}

#[derive(Clone)]
pub struct Docker {
    socket: PathBuf,
    client: Client<UnixConnector, Full<Bytes>>,
}

impl Docker {
    pub fn new(socket: &Path) -> Self {
        Docker {
            socket: socket.to_path_buf(),
            client: Client::builder(TokioExecutor::new()).build(UnixConnector),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `method path` with an optional JSON body; returns the response
    /// when it is a success, else an [`ApiError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let call = format!("{method} {path}");
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let mut request = Request::builder().method(method).uri(uri);
        let bytes = match body {
            Some(v) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(bytes))?;
        let response = self.client.request(request).await.with_context(|| {
            format!(
                "cannot reach the Docker daemon at {} ({call})",
                self.socket.display()
            )
        })?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(ApiError {
            call,
            status,
            message: error_message(&body),
        }
        .into())
    }

    /// Like [`Docker::send`], and reads the whole body as JSON (`null` when empty).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let call = format!("{method} {path}");
        let response = self.send(method, path, body).await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of {call}"))?
            .to_bytes();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("Docker API {call}: answer is not JSON: {e}"))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(Method::GET, path, None).await
    }
}

/// dockerd's `{"message": "..."}`, or the body as text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn error_message_reads_dockerds_message() {
        assert_eq!(
            error_message(br#"{"message":"Conflict. The container name is already in use"}"#),
            "Conflict. The container name is already in use"
        );
        assert_eq!(error_message(b"page not found\n"), "page not found");
    }
}
