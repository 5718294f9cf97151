//! Where a request goes, as dockerd would route it.
//!
//! dockerd (gorilla/mux) routes on the percent-decoded path, with or without a
//! `/v<version>` prefix. The proxy decodes the same way, refuses paths dockerd
//! would redirect or that hide separators (`%2F`, `//`, dot segments), and
//! forwards a path it re-encoded itself, so the endpoint it checked is the
//! endpoint dockerd runs.

#![forbid(unsafe_code)]

use http::{Method, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::policy::Reject;

/// The endpoints the proxy treats specially; everything else is forwarded as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ContainerCreate,
    ContainerUpdate,
    ExecCreate,
    /// Attach and exec start: the connection is hijacked after dockerd's 101.
    Hijack,
    Other,
}

/// A request's target, parsed and re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// The path and query to forward.
    pub path_and_query: String,
}

/// Characters re-encoded in a forwarded path: what a path segment may not hold.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

pub fn route(method: &Method, uri: &Uri) -> Result<Route, Reject> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Reject::bad_request(
            "path",
            "absolute-form request targets are not accepted",
        ));
    }
    let raw = uri.path();
    if !raw.starts_with('/') {
        return Err(Reject::bad_request(
            "path",
            format!("request target {raw:?} is not a path"),
        ));
    }
    if raw.to_ascii_lowercase().contains("%2f") {
        return Err(Reject::bad_request(
            "path",
            "encoded slashes in the path are not accepted",
        ));
    }
    let path = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Reject::bad_request("path", "the path is not valid UTF-8 once decoded"))?;
    if path.contains("//") || path.split('/').any(|s| s == "." || s == "..") {
        return Err(Reject::bad_request(
            "path",
            format!("path {path:?} is not clean (`//`, `.` or `..`)"),
        ));
    }
    let encoded = utf8_percent_encode(&path, PATH).to_string();
    let path_and_query = match uri.query() {
        Some(query) => format!("{encoded}?{query}"),
        None => encoded,
    };
    Ok(Route {
        endpoint: classify(method, strip_version(&path)),
        path_and_query,
    })
}

/// The path without its `/v<digits and dots>` prefix, the way dockerd's router sees it.
fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        &rest[end..]
    } else {
        path
    }
}

fn classify(method: &Method, path: &str) -> Endpoint {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["containers", "create"]) => Endpoint::ContainerCreate,
        (&Method::POST, ["containers", _, "update"]) => Endpoint::ContainerUpdate,
        (&Method::POST, ["containers", _, "exec"]) => Endpoint::ExecCreate,
        (&Method::POST, ["containers", _, "attach"]) => Endpoint::Hijack,
        (&Method::POST, ["exec", _, "start"]) => Endpoint::Hijack,
        _ => Endpoint::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(method: Method, target: &str) -> Endpoint {
        route(&method, &target.parse().unwrap()).unwrap().endpoint
    }

    #[test]
    fn create_is_found_with_any_version_spelling() {
        for target in [
            "/containers/create",
            "/v1.41/containers/create",
            "/v1.41./containers/create",
            "/v01.041/containers/create",
            "/v1.41.0/containers/create?name=x",
        ] {
            assert_eq!(
                endpoint(Method::POST, target),
                Endpoint::ContainerCreate,
                "{target}"
            );
        }
    }

    #[test]
    fn percent_encoded_endpoints_are_decoded_before_classifying() {
        assert_eq!(
            endpoint(Method::POST, "/v1.41/containers/%63reate"),
            Endpoint::ContainerCreate
        );
        assert_eq!(
            endpoint(Method::POST, "/v%31.41/containers/create"),
            Endpoint::ContainerCreate
        );
        let route = route(
            &Method::POST,
            &"/v1.41/containers/%63reate?name=a".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(route.path_and_query, "/v1.41/containers/create?name=a");
    }

    #[test]
    fn exec_and_hijack_endpoints_are_found() {
        assert_eq!(
            endpoint(Method::POST, "/v1.41/containers/abc/exec"),
            Endpoint::ExecCreate
        );
        assert_eq!(
            endpoint(Method::POST, "/v1.41/containers/abc/attach?stream=1"),
            Endpoint::Hijack
        );
        assert_eq!(endpoint(Method::POST, "/exec/123/start"), Endpoint::Hijack);
        assert_eq!(endpoint(Method::GET, "/containers/create"), Endpoint::Other);
    }

    #[test]
    fn tricky_paths_are_refused() {
        for target in [
            "/v1.41/containers%2Fcreate",
            "/v1.41/containers%2fcreate",
            "//containers/create",
            "/v1.41/containers/./create",
            "/v1.41/x/../containers/create",
            "/%ff",
        ] {
            assert!(
                route(&Method::POST, &target.parse().unwrap()).is_err(),
                "{target}"
            );
        }
        assert!(route(
            &Method::POST,
            &"http://docker/containers/create".parse().unwrap()
        )
        .is_err());
    }
}
