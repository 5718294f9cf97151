//! The plugin protocol's answers: JSON replies with Docker's plugin media
//! type, `{"Err": "..."}` errors, and request bodies read within bounds.

#![forbid(unsafe_code)]

use std::io;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::protocol::Reply;

pub type Body = BoxBody<Bytes, io::Error>;

/// JSON request bodies are small; refuse anything bigger.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// Reads a body to its end and drops it, so the connection stays usable.
pub async fn drain(mut body: Incoming) {
    while let Some(Ok(_)) = body.frame().await {}
}

pub fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/vnd.docker.plugins.v1.2+json"),
    );
    response
}

pub fn reply_response(status: StatusCode, reply: &Reply) -> Response<Body> {
    let body = serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec());
    json_response(status, Bytes::from(body))
}

/// A JSON call's whole body (at most [`MAX_JSON_BODY`]), or the 400 to answer.
pub async fn read_json_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_JSON_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("reading the request body: {err}"),
        )),
    }
}

pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    reply_response(status, &Reply::error(message))
}
