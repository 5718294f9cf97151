//! One client for the Docker Engine API over a unix socket, for every caller
//! that talks to a dockerd: init (readiness, the drain before the stop), the
//! proxy (its own questions about what a request names, and the connection
//! each client connection forwards on), `dindbox health` (the proxy's public
//! socket) and `dindbox tenant` (the host's daemon).
//!
//! [`Engine`] is hyper-util's pooled client with hyperlocal's connector; a
//! proxied client connection forwards on a [`Connection`] of its own (see
//! there for why). Errors name the call, and keep their cause as the
//! [`std::error::Error::source`].

#![forbid(unsafe_code)]

mod connection;

pub use self::connection::Connection;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyperlocal::UnixConnector;
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body: whole (JSON) or streamed (a proxied request).
pub type Body = BoxBody<Bytes, BoxError>;

/// How long a pooled connection may stay idle before it is closed.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// What a request asked, for errors: its method and target.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    target: Option<PathAndQuery>,
}

impl Call {
    fn of<B>(request: &Request<B>) -> Call {
        Call {
            method: request.method().clone(),
            target: request.uri().path_and_query().cloned(),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(target) => write!(f, "{} {target}", self.method),
            None => write!(f, "{} /", self.method),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be built (a path or a header value that is not
    /// valid in HTTP).
    #[error("Docker API {method} {target}: not a valid request")]
    Invalid {
        method: Method,
        target: String,
        #[source]
        source: http::Error,
    },
    /// No answer: the socket refused, or the connection broke before the
    /// answer's head came.
    #[error("cannot reach the Docker daemon at {} ({call})", socket.display())]
    Unreachable {
        socket: Arc<Path>,
        call: Call,
        #[source]
        source: BoxError,
    },
    /// A forwarded request got no answer (its call is the client's, logged
    /// with it).
    #[error("the Docker daemon at {} did not answer", socket.display())]
    NoAnswer {
        socket: Arc<Path>,
        #[source]
        source: BoxError,
    },
    /// The answer's body broke off, or was longer than the caller reads.
    #[error("reading the answer of {call}")]
    Read {
        call: Call,
        #[source]
        source: BoxError,
    },
    /// The daemon answered with an error status: dockerd's `message`.
    #[error("Docker API {call} answered {status}: {message}")]
    Status {
        call: Call,
        status: StatusCode,
        message: String,
    },
    #[error("Docker API {call}: answer is not JSON: {err}")]
    NotJson { call: Call, err: serde_json::Error },
}

impl Error {
    /// The status of an error answer; `None` when the daemon gave none.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is the daemon's error answer `status`.
    pub fn is_status(&self, status: StatusCode) -> bool {
        self.status() == Some(status)
    }

    /// The message followed by its causes (`a: b: c`, as anyhow's `{:#}`
    /// prints a chain), for a log field or an error that keeps it as text.
    pub fn chain(&self) -> impl fmt::Display + '_ {
        Chain(self)
    }
}

struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// A whole answer: its status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The Docker Engine API at one unix socket. Cheap to clone: clones share
/// the pool.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

struct Inner {
    socket: Arc<Path>,
    /// The scheme and authority of hyperlocal's URIs for the socket (its
    /// path, hex-encoded): `unix://HEX:0`.
    origin: String,
    /// The authority, as the `Host` header.
    host: HeaderValue,
    client: Client<UnixConnector, Body>,
}

impl Engine {
    pub fn new(socket: &Path) -> Engine {
        let uri = Uri::from(hyperlocal::Uri::new(socket, "/"));
        let authority = uri.authority().expect("a hyperlocal URI has an authority");
        let host =
            HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header");
        Engine(Arc::new(Inner {
            socket: socket.into(),
            origin: format!("unix://{authority}"),
            host,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .pool_timer(TokioTimer::new())
                .build(UnixConnector),
        }))
    }

    pub fn socket(&self) -> &Path {
        &self.0.socket
    }

    /// The `Host` the pooled client sends (dockerd requires one); the proxy
    /// sends it on a forwarded request that came without one.
    pub fn host(&self) -> &HeaderValue {
        &self.0.host
    }

    /// A request for `method target` (a path with its query) on this daemon.
    pub fn request(&self, method: Method, target: &str) -> http::request::Builder {
        // Not hyperlocal::Uri::new, which panics on a target that is not valid.
        Request::builder()
            .method(method)
            .uri(format!("{}{target}", self.0.origin))
    }

    /// Sends `request` (made with [`Engine::request`]) and returns the
    /// daemon's answer, whatever its status, with its body to stream.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Incoming>, Error> {
        let call = Call::of(&request);
        self.0
            .client
            .request(request)
            .await
            .map_err(|err| Error::Unreachable {
                socket: self.0.socket.clone(),
                call,
                source: err.into(),
            })
    }

    /// Sends `request` and reads the whole answer, at most `limit` bytes of
    /// body, whatever its status.
    pub async fn read(&self, request: Request<Body>, limit: usize) -> Result<Answer, Error> {
        let call = Call::of(&request);
        let (parts, body) = self.send(request).await?.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|source| Error::Read { call, source })?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `method target` with an optional JSON body (already serialised), its
    /// answer read whole (at most `limit` bytes), whatever its status.
    pub async fn ask(
        &self,
        method: Method,
        target: &str,
        json: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Answer, Error> {
        let request = self.json_request(method, target, json)?;
        self.read(request, limit).await
    }

    /// `method target` with an optional JSON body; the answer, with its body
    /// to stream, when it is a success (or 304), else [`Error::Status`].
    pub async fn call(
        &self,
        method: Method,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>, Error> {
        let request = self.json_request(method, target, body.map(to_json))?;
        let call = Call::of(&request);
        self.successful(call, request).await
    }

    /// Like [`Engine::call`], and reads the whole body as JSON (`null` when
    /// empty).
    pub async fn json(
        &self,
        method: Method,
        target: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let request = self.json_request(method, target, body.map(to_json))?;
        let call = Call::of(&request);
        let response = self.successful(call.clone(), request).await?;
        let bytes = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                let source = err.into();
                return Err(Error::Read { call, source });
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|err| Error::NotJson { call, err })
    }

    /// `GET target` as JSON (see [`Engine::json`]).
    pub async fn get(&self, target: &str) -> Result<Value, Error> {
        self.json(Method::GET, target, None).await
    }

    /// `GET /_ping`: Ok when the daemon answers 200.
    pub async fn ping(&self) -> Result<(), Error> {
        let request = self.json_request(Method::GET, "/_ping", None)?;
        let call = Call::of(&request);
        let answer = self.read(request, PING_LIMIT).await?;
        if answer.status == StatusCode::OK {
            return Ok(());
        }
        Err(Error::Status {
            call,
            status: answer.status,
            message: error_message(&answer.body),
        })
    }

    /// The answer to `request` when it is a success (or 304), else its
    /// [`Error::Status`].
    async fn successful(
        &self,
        call: Call,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, Error> {
        let response = self.send(request).await?;
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
        Err(Error::Status {
            call,
            status,
            message: error_message(&body),
        })
    }

    fn json_request(
        &self,
        method: Method,
        target: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Request<Body>, Error> {
        let mut request = self.request(method.clone(), target);
        let body = match json {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                full(json)
            }
            None => empty(),
        };
        request.body(body).map_err(|source| Error::Invalid {
            method,
            target: target.to_string(),
            source,
        })
    }
}

/// The most of a `/_ping` answer read (`OK`, or an error message).
const PING_LIMIT: usize = 64 << 10;

/// dockerd's `{"message": "..."}`, or the body as text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

fn to_json(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_reads_dockerds_message() {
        assert_eq!(
            error_message(br#"{"message":"Conflict. The container name is already in use"}"#),
            "Conflict. The container name is already in use"
        );
        assert_eq!(error_message(b"page not found\n"), "page not found");
    }

    #[test]
    fn requests_go_to_the_socket_by_hyperlocals_uri() {
        let engine = Engine::new(Path::new("/run/d.sock"));
        let request = engine
            .request(Method::GET, "/v1.45/containers/json?all=1")
            .body(())
            .unwrap();
        let expected = Uri::from(hyperlocal::Uri::new(
            "/run/d.sock",
            "/v1.45/containers/json?all=1",
        ));
        assert_eq!(request.uri(), &expected);
        assert_eq!(engine.host(), expected.authority().unwrap().as_str());
        assert_eq!(
            Call::of(&request).to_string(),
            "GET /v1.45/containers/json?all=1"
        );
    }

    #[test]
    fn an_invalid_target_is_an_error_not_a_panic() {
        let engine = Engine::new(Path::new("/run/d.sock"));
        let err = engine
            .json_request(Method::GET, "/images/a b/json", None)
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_absent_socket_is_unreachable_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&dir.path().join("none.sock"));
        let err = engine.ping().await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        let chain = err.chain().to_string();
        assert!(chain.contains("(GET /_ping)"), "{chain}");
        assert!(chain.contains("No such file"), "{chain}");
    }
}
