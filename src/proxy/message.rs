//! The HTTP messages the proxy reads, forwards and answers itself: bodies
//! read whole (bounded) or streamed, the headers fixed on the way to dockerd,
//! and the proxy's own JSON answers.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tracing::warn;

pub(super) use crate::engine::{Body, BoxError};

use super::check;
use super::policy::Reject;

/// The largest JSON body the proxy reads to inspect.
pub(super) const BODY_LIMIT: usize = 8 << 20;
/// How long a client may take to send a body the proxy inspects (while it
/// holds its share of the budget).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn stream(body: Incoming) -> Body {
    body.map_err(BoxError::from).boxed()
}

/// Reads a body whole, up to [`BODY_LIMIT`], within [`BODY_READ_TIMEOUT`],
/// into one buffer of its Content-Length when it has one (no second copy).
pub(super) async fn read_bounded(body: Incoming, length: Option<usize>) -> Result<Bytes, Reject> {
    let read = async {
        let mut body = Limited::new(body, BODY_LIMIT);
        let mut bytes = Vec::with_capacity(length.unwrap_or(0).min(BODY_LIMIT));
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        Ok::<_, BoxError>(Bytes::from(bytes))
    };
    let Ok(read) = tokio::time::timeout(BODY_READ_TIMEOUT, read).await else {
        return Err(Reject {
            status: StatusCode::REQUEST_TIMEOUT,
            rule: "body-read",
            message: format!(
                "dindbox: the request body was not sent within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        });
    };
    match read {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(Reject {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            rule: "body-size",
            message: format!(
                "dindbox: the request body is larger than the {} MiB limit",
                BODY_LIMIT >> 20
            ),
        }),
        Err(err) => Err(Reject::bad_request(
            "body-read",
            format!("failed to read the request body: {err}"),
        )),
    }
}

/// The Content-Length of a request, if it has a valid one.
pub(super) fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Reads a dockerd answer the proxy must look at before passing it on.
pub(super) async fn read_answer(body: Incoming) -> Result<Bytes, Reject> {
    Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|err| {
            warn!(error = %err, "failed to read dockerd's answer");
            Reject {
                status: StatusCode::BAD_GATEWAY,
                rule: "owner-check",
                message: "dindbox: failed to read the daemon's answer".into(),
            }
        })
}

/// Replaces the client's `Content-Type` with the proxy's spelling of the
/// type it admitted ([`check::body_type`]), so dockerd reads the body as the
/// proxy did.
pub(super) fn forward_content_type(headers: &mut HeaderMap, body_type: check::BodyType) {
    headers.remove(header::CONTENT_TYPE);
    if let Some(value) = body_type.header() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    }
}

/// Removes the headers that describe one connection, not the message (RFC 9110 §7.6.1).
/// Upgrade negotiation is kept only on the hijack endpoints.
/// The hop-by-hop headers besides `Connection` and `Upgrade` (RFC 9110 §7.6.1),
/// as names: a name given as text is parsed again on every removal.
static HOP_BY_HOP: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over a handful of names costs less than the removals' lookups.
    let is_hop_by_hop = |name: &HeaderName| {
        name == header::CONNECTION || name == header::UPGRADE || HOP_BY_HOP.contains(name)
    };
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !(keep_upgrade && name == "upgrade"))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

pub(super) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

pub(super) fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A refusal as the Docker CLI expects it: `{"message": "..."}`.
pub(super) fn error_response(reject: &Reject) -> Response<Body> {
    let body = serde_json::json!({ "message": reject.message }).to_string();
    json_response(reject.status, &body)
}

/// An answer the proxy gives itself: `status` and a JSON `body`.
pub(super) fn json_response(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.as_bytes().to_vec()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// How long a refused request's body is still read, so that the client
/// (still sending) hears the refusal instead of a broken pipe.
pub(super) const DRAIN_TIME: Duration = Duration::from_secs(30);
/// How much of it at most.
const DRAIN_BYTES: u64 = 1 << 30;

/// Reads and drops the body of a request the proxy answers itself before
/// reading it, so that a client still sending it hears the answer instead
/// of a broken pipe. Not when the client waits for `100 Continue` before
/// sending it: the final answer tells it not to (RFC 9110 §10.1.1).
pub(super) async fn drain_request(req: http::Request<Incoming>) {
    let waits = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits {
        drain(stream(req.into_body())).await;
    }
}

/// Reads and drops a refused request's body (bounded in time and size).
async fn drain(mut body: Body) {
    let drained = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drained).await;
}
