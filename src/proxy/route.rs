//! Where a request goes, as dockerd would route it, against an exact allow-list.
//!
//! dockerd (gorilla/mux) routes on the percent-decoded path, with or without a
//! `/v<version>` prefix, matching `{name:.*}` parameters across slashes. The
//! proxy decodes the same way, refuses paths dockerd would redirect or that hide
//! separators (`%2F`, `//`, dot segments), pins the API version, and forwards a
//! target it encoded itself, so the endpoint it checked is the endpoint dockerd runs.

#![forbid(unsafe_code)]

use std::fmt;

use http::{Method, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::policy::Reject;
use super::query::Query;

/// The newest Engine API version whose request schemas the policy knows (Docker 20.10).
pub const MAX_API: ApiVersion = ApiVersion(1, 41);
/// The oldest version dockerd accepts.
pub const MIN_API: ApiVersion = ApiVersion(1, 24);

/// An Engine API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses like dockerd's `versions.compare`: dot-separated numbers, where
    /// `1.41.`, `01.041` and `1.41.0` all mean 1.41. A third non-zero part is
    /// not a version any daemon has, so it is refused.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let parts: Vec<u32> = text
            .split('.')
            .map(|p| {
                if p.is_empty() {
                    Some(0)
                } else {
                    p.parse().ok()
                }
            })
            .collect::<Option<_>>()?;
        match parts.as_slice() {
            [major] => Some(ApiVersion(*major, 0)),
            [major, minor, rest @ ..] if rest.iter().all(|&p| p == 0) => {
                Some(ApiVersion(*major, *minor))
            }
            _ => None,
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What the proxy does with a request to an allowed endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Forwarded as it is (the body streamed).
    Plain,
    /// `/version`: the answer's `ApiVersion` is capped.
    Version,
    ContainerCreate,
    ContainerUpdate,
    ExecCreate,
    /// Attach and exec start: the connection is spliced after dockerd's 101.
    Hijack,
    /// BuildKit's `/session` and `/grpc`: h2c tunnels the proxy cannot inspect.
    BuildKit,
    Build,
    ImageCreate,
    VolumeCreate,
    NetworkCreate,
    NetworkConnect,
    NetworkDisconnect,
    /// `GET /plugins/{name}/json`: answered 404 by the proxy itself. Plugins
    /// are refused, but `docker inspect NAME` asks for a plugin after the
    /// other object types and must hear "no such object", not a refusal.
    NoSuchPlugin,
}

/// A request's target, parsed and re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub version: ApiVersion,
    /// The decoded path without the version prefix, e.g. `/containers/create`.
    pub path: String,
    /// The allow-list pattern the path matched, e.g. `/containers/{}/json`.
    pub pattern: &'static str,
    pub query: Query,
}

impl Route {
    /// What the pattern's `{}` matched (a container, exec, network or volume
    /// id or name), if the pattern has one.
    pub fn param(&self) -> Option<&str> {
        let (prefix, suffix) = self.pattern.split_once("{}")?;
        self.path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
    }

    /// Points the request at `param` in place of what the client named (the
    /// full id the proxy resolved, so dockerd acts on the object it checked).
    pub fn set_param(&mut self, param: &str) {
        if self.pattern.contains("{}") {
            self.path = self.pattern.replacen("{}", param, 1);
        }
    }

    /// The target to forward: `/v<version><path>?<query>`, encoded by the proxy.
    pub fn target(&self) -> String {
        let path = utf8_percent_encode(&self.path, PATH);
        match self.query.0.is_empty() {
            true => format!("/v{}{path}", self.version),
            false => format!("/v{}{path}?{}", self.version, self.query.encode()),
        }
    }
}

/// A path parameter as the proxy writes it into a target it builds itself.
pub fn encode_param(param: &str) -> String {
    utf8_percent_encode(param, PATH).to_string()
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

use Endpoint::*;

/// The allow-list: `{}` is a dockerd `{name:.*}` parameter (one or more
/// segments). The first match wins, as in dockerd's router; literal routes
/// come before the parameterised ones that could shadow them.
const ROUTES: &[(Method, &str, Endpoint)] = &[
    (Method::GET, "/_ping", Plain),
    (Method::HEAD, "/_ping", Plain),
    (Method::GET, "/version", Version),
    (Method::GET, "/info", Plain),
    (Method::GET, "/events", Plain),
    (Method::GET, "/system/df", Plain),
    (Method::POST, "/auth", Plain),
    // containers
    (Method::GET, "/containers/json", Plain),
    (Method::POST, "/containers/create", ContainerCreate),
    (Method::POST, "/containers/prune", Plain),
    (Method::GET, "/containers/{}/json", Plain),
    (Method::GET, "/containers/{}/top", Plain),
    (Method::GET, "/containers/{}/logs", Plain),
    (Method::GET, "/containers/{}/changes", Plain),
    (Method::GET, "/containers/{}/export", Plain),
    (Method::GET, "/containers/{}/stats", Plain),
    (Method::HEAD, "/containers/{}/archive", Plain),
    (Method::GET, "/containers/{}/archive", Plain),
    (Method::PUT, "/containers/{}/archive", Plain),
    (Method::POST, "/containers/{}/resize", Plain),
    (Method::POST, "/containers/{}/start", Plain),
    (Method::POST, "/containers/{}/stop", Plain),
    (Method::POST, "/containers/{}/restart", Plain),
    (Method::POST, "/containers/{}/kill", Plain),
    (Method::POST, "/containers/{}/pause", Plain),
    (Method::POST, "/containers/{}/unpause", Plain),
    (Method::POST, "/containers/{}/rename", Plain),
    (Method::POST, "/containers/{}/wait", Plain),
    (Method::POST, "/containers/{}/update", ContainerUpdate),
    (Method::POST, "/containers/{}/exec", ExecCreate),
    (Method::POST, "/containers/{}/attach", Hijack),
    (Method::DELETE, "/containers/{}", Plain),
    // exec
    (Method::POST, "/exec/{}/start", Hijack),
    (Method::POST, "/exec/{}/resize", Plain),
    (Method::GET, "/exec/{}/json", Plain),
    // images and builds
    (Method::GET, "/images/json", Plain),
    (Method::GET, "/images/search", Plain),
    (Method::GET, "/images/get", Plain),
    (Method::POST, "/images/create", ImageCreate),
    (Method::POST, "/images/load", Plain),
    (Method::POST, "/images/prune", Plain),
    (Method::GET, "/images/{}/json", Plain),
    (Method::GET, "/images/{}/history", Plain),
    (Method::GET, "/images/{}/get", Plain),
    (Method::POST, "/images/{}/push", Plain),
    (Method::POST, "/images/{}/tag", Plain),
    (Method::DELETE, "/images/{}", Plain),
    (Method::POST, "/commit", Plain),
    (Method::POST, "/build", Build),
    (Method::POST, "/build/prune", Plain),
    (Method::POST, "/build/cancel", Plain),
    (Method::GET, "/plugins/{}/json", NoSuchPlugin),
    (Method::POST, "/session", BuildKit),
    (Method::POST, "/grpc", BuildKit),
    // networks
    (Method::GET, "/networks", Plain),
    (Method::POST, "/networks/create", NetworkCreate),
    (Method::POST, "/networks/prune", Plain),
    (Method::GET, "/networks/{}", Plain),
    (Method::DELETE, "/networks/{}", Plain),
    (Method::POST, "/networks/{}/connect", NetworkConnect),
    (Method::POST, "/networks/{}/disconnect", NetworkDisconnect),
    // volumes
    (Method::GET, "/volumes", Plain),
    (Method::POST, "/volumes/create", VolumeCreate),
    (Method::POST, "/volumes/prune", Plain),
    (Method::GET, "/volumes/{}", Plain),
    (Method::DELETE, "/volumes/{}", Plain),
];

pub fn route(method: &Method, uri: &Uri) -> Result<Route, Reject> {
    let path = clean_path(uri)?;
    let (version, path) = split_version(&path)?;
    let Some(&(_, pattern, endpoint)) = ROUTES
        .iter()
        .find(|(m, pattern, _)| m == method && matches(pattern, path))
    else {
        return Err(Reject::forbidden(
            "endpoint",
            &format!("{method} {path}"),
            "this endpoint is not on dindbox's allow-list",
        ));
    };
    let query = Query::parse(uri.query().unwrap_or_default())?;
    Ok(Route {
        endpoint,
        version,
        path: path.to_string(),
        pattern,
        query,
    })
}

/// The path decoded once, as dockerd's router sees it, or a refusal for the
/// forms dockerd would redirect or that could hide a separator.
fn clean_path(uri: &Uri) -> Result<String, Reject> {
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
    Ok(path.into_owned())
}

/// Splits `/v<version>` off the path. No version means the newest the proxy
/// allows; a version above it is refused rather than silently lowered, so a
/// client never gets semantics it did not ask for.
fn split_version(path: &str) -> Result<(ApiVersion, &str), Reject> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((MAX_API, path));
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let text = &rest[..end];
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok((MAX_API, path));
    }
    let version = ApiVersion::parse(text).ok_or_else(|| {
        Reject::bad_request(
            "api-version",
            format!("API version {text:?} is not a version"),
        )
    })?;
    if version > MAX_API {
        return Err(Reject::bad_request(
            "api-version",
            format!(
                "client version {version} is too new. Maximum supported API version is {MAX_API}"
            ),
        ));
    }
    if version < MIN_API {
        return Err(Reject::bad_request(
            "api-version",
            format!(
                "client version {version} is too old. Minimum supported API version is {MIN_API}"
            ),
        ));
    }
    Ok((version, &rest[end..]))
}

/// Matches a route pattern; `{}` takes one or more whole segments.
fn matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once("{}") {
        None => pattern == path,
        Some((prefix, suffix)) => {
            path.len() > prefix.len() + suffix.len()
                && path.starts_with(prefix)
                && path.ends_with(suffix)
                && !path[prefix.len()..path.len() - suffix.len()].is_empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(method: Method, target: &str) -> Result<Route, Reject> {
        route(&method, &target.parse().unwrap())
    }

    fn endpoint(method: Method, target: &str) -> Endpoint {
        route_of(method, target)
            .unwrap_or_else(|r| panic!("{target}: {}", r.message))
            .endpoint
    }

    #[test]
    fn versions_parse_like_dockerd() {
        for text in ["1.41", "1.41.", "01.041", "1.41.0"] {
            assert_eq!(ApiVersion::parse(text), Some(ApiVersion(1, 41)), "{text}");
        }
        assert_eq!(ApiVersion::parse("1.41.1"), None);
        assert_eq!(ApiVersion::parse("1.x"), None);
    }

    #[test]
    fn create_is_found_with_any_version_spelling_and_forwarded_canonically() {
        for target in [
            "/containers/create",
            "/v1.41/containers/create",
            "/v1.41./containers/create",
            "/v01.041/containers/create",
            "/v1.41.0/containers/create",
        ] {
            let route = route_of(Method::POST, target).unwrap();
            assert_eq!(route.endpoint, ContainerCreate, "{target}");
            assert_eq!(route.target(), "/v1.41/containers/create", "{target}");
        }
        assert_eq!(
            route_of(Method::POST, "/v1.30/containers/create")
                .unwrap()
                .target(),
            "/v1.30/containers/create"
        );
    }

    #[test]
    fn versions_outside_the_supported_range_are_refused() {
        assert_eq!(
            route_of(Method::GET, "/v1.45/_ping").unwrap_err().rule,
            "api-version"
        );
        assert_eq!(
            route_of(Method::GET, "/v1.41.1/_ping").unwrap_err().rule,
            "api-version"
        );
        assert_eq!(
            route_of(Method::GET, "/v1.12/_ping").unwrap_err().rule,
            "api-version"
        );
    }

    #[test]
    fn percent_encoded_endpoints_are_decoded_before_classifying() {
        assert_eq!(
            endpoint(Method::POST, "/v1.41/containers/%63reate"),
            ContainerCreate
        );
        assert_eq!(
            endpoint(Method::POST, "/v%31.41/containers/create"),
            ContainerCreate
        );
        let route = route_of(Method::POST, "/v1.41/containers/%63reate?name=a").unwrap();
        assert_eq!(route.target(), "/v1.41/containers/create?name=a");
    }

    #[test]
    fn parameters_span_segments_like_gorilla() {
        assert_eq!(
            endpoint(Method::GET, "/v1.41/images/library/busybox:latest/json"),
            Plain
        );
        assert_eq!(endpoint(Method::DELETE, "/images/registry:5000/a/b"), Plain);
        assert_eq!(
            endpoint(Method::POST, "/containers/create/exec"),
            ExecCreate
        );
        assert_eq!(endpoint(Method::POST, "/containers/abc/attach"), Hijack);
        assert_eq!(endpoint(Method::POST, "/exec/123/start"), Hijack);
        assert_eq!(
            endpoint(Method::POST, "/containers/abc/update"),
            ContainerUpdate
        );
    }

    #[test]
    fn endpoints_off_the_allow_list_are_refused() {
        for (method, target) in [
            (Method::POST, "/plugins/pull"),
            (Method::POST, "/swarm/init"),
            (Method::POST, "/swarm/join"),
            (Method::POST, "/services/create"),
            (Method::GET, "/secrets"),
            (Method::GET, "/distribution/busybox/json"),
            (Method::POST, "/containers/abc/checkpoints"),
            (Method::GET, "/debug/pprof/"),
            (Method::GET, "/containers/create"),
            (Method::PUT, "/containers/create"),
            (Method::OPTIONS, "/containers/json"),
            (Method::GET, "/containers/abc/attach/ws"),
            (Method::POST, "/containers"),
        ] {
            let reject = route_of(method.clone(), target).expect_err(target);
            assert_eq!(reject.rule, "endpoint", "{method} {target}");
            assert_eq!(reject.status, http::StatusCode::FORBIDDEN);
        }
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
            assert_eq!(
                route_of(Method::POST, target).unwrap_err().rule,
                "path",
                "{target}"
            );
        }
        assert!(route_of(Method::POST, "http://docker/containers/create").is_err());
    }

    #[test]
    fn queries_are_parsed_and_reencoded() {
        let route = route_of(Method::POST, "/build?t=a%2Fb&networkmode=%68ost").unwrap();
        assert_eq!(route.query.first("networkmode"), Some("host"));
        assert_eq!(route.target(), "/v1.41/build?t=a%2Fb&networkmode=host");
        assert_eq!(
            route_of(Method::POST, "/build?t=a;networkmode=host")
                .unwrap_err()
                .rule,
            "query"
        );
    }
}
