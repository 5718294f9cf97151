//! Where a request goes, as dockerd would route it, against an exact allow-list.
//!
//! dockerd (gorilla/mux) routes on the percent-decoded path, with or without a
//! `/v<version>` prefix, matching `{name:.*}` parameters across slashes. The
//! proxy decodes the same way, refuses paths dockerd would redirect or that hide
//! separators (`%2F`, `//`, dot segments), settles the API version within the
//! window ([`super::version`]), and forwards a target it encoded itself, so
//! the endpoint it checked is the endpoint dockerd runs.

#![forbid(unsafe_code)]

use http::{Method, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::policy::off::WhenOff;
use super::policy::{Family, Reject};
use super::query::Query;
pub use super::version::{ApiVersion, MIN_API};
use super::version::{Requested, Window};

/// What the proxy does with a request to an allowed endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Forwarded as it is (the body streamed).
    Plain,
    /// `/version`: the answer's `ApiVersion` states the window's newest.
    Version,
    ContainerCreate,
    ContainerUpdate,
    ExecCreate,
    /// Attach and exec start: the connection is spliced after dockerd's 101.
    Hijack,
    /// BuildKit's `/session` and `/grpc`: h2c tunnels the proxy cannot inspect.
    BuildKit,
    Build,
    /// `POST /commit`: `changes` in the query, a container config as the body.
    Commit,
    ImageCreate,
    VolumeCreate,
    NetworkCreate,
    NetworkConnect,
    NetworkDisconnect,
    /// An endpoint of a family that is off: answered by the proxy itself as
    /// Docker with that feature off would, or refused; never forwarded
    /// (see [`policy::off`](super::policy::off)).
    Off(Family, WhenOff),
    /// `POST /services/create` and `/services/{id}/update`: a `ServiceSpec`.
    ServiceCreate,
    /// `POST /secrets/create` and `/secrets/{id}/update`: a `SecretSpec`.
    SecretCreate,
    /// `POST /configs/create` and `/configs/{id}/update`: a `ConfigSpec`.
    ConfigCreate,
    /// `POST /swarm/init`: an `InitRequest` (its `Spec` checked).
    SwarmInit,
    /// `POST /swarm/update`: a swarm `Spec`.
    SwarmUpdate,
    /// `POST /swarm/join`: refused even with swarm enabled.
    SwarmJoin,
    /// `POST /containers/{id}/checkpoints`: `CheckpointCreateOptions`.
    CheckpointCreate,
    /// Listing and deleting a container's checkpoints (`dir` is refused).
    Checkpoint,
    /// `POST /containers/{id}/start`: its checkpoint parameters are checked.
    ContainerStart,
    /// A tar stream passed as it comes: `docker cp` into a container, a
    /// plugin's rootfs.
    TarUpload,
    /// `POST /images/load`: a tar stream of images, whose tags are inside.
    ImageLoad,
    /// `POST /images/{name}/tag`.
    ImageTag,
    /// `DELETE /images/{name}`: removes a tag, or the image.
    ImageRemove,
    /// Lists, prunes or streams events about every owner's objects: in owner
    /// mode the owner label filter is added to its `filters`. That includes
    /// `POST /images/prune`, which removes tags too (with `dangling=false`,
    /// of every unused image).
    Listed,
    /// `GET /system/df`: every owner's containers and volumes.
    DiskUsage,
    /// `GET /networks/{id}`.
    NetworkInspect,
}

/// The kind of body a request carries, as the proxy forwards it: dockerd
/// gets the proxy's own spelling of `Content-Type` ([`BodyType::header`]; set by `check::admit`),
/// never the client's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyType {
    /// No `Content-Type`.
    #[default]
    Untyped,
    Json,
    Tar,
    /// `text/plain`: how the Docker client types a raw body it does not
    /// label (`docker cp`, `docker import`), and bodiless POSTs.
    Text,
    Binary,
}

impl BodyType {
    /// The `Content-Type` forwarded to dockerd.
    pub fn header(self) -> Option<&'static str> {
        match self {
            BodyType::Untyped => None,
            BodyType::Json => Some("application/json"),
            BodyType::Tar => Some("application/x-tar"),
            BodyType::Text => Some("text/plain"),
            BodyType::Binary => Some("application/octet-stream"),
        }
    }
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
    /// The body's type, as `check::admit` read its `Content-Type`.
    pub body_type: BodyType,
}

impl Route {
    /// What the pattern's `{}` matched (a container, exec, network or volume
    /// id or name), if the pattern has one.
    /// With two parameters (`/containers/{}/checkpoints/{}`), the first.
    pub fn param(&self) -> Option<&str> {
        split_params(self.pattern, &self.path).map(|(first, _)| first)
    }

    /// Points the request at `param` in place of what the client named (the
    /// full id the proxy resolved, so dockerd acts on the object it checked).
    pub fn set_param(&mut self, param: &str) {
        if let Some((prefix, _)) = self.pattern.split_once("{}") {
            if let Some(old) = self.param() {
                let rest = self.path[prefix.len() + old.len()..].to_string();
                self.path = format!("{prefix}{param}{rest}");
            }
        }
    }

    /// The target to forward: `/v<version><path>?<query>`, encoded by the proxy.
    pub fn target(&self) -> String {
        let mut target = String::with_capacity(8 + self.path.len());
        target.push_str("/v");
        self.version.push_to(&mut target);
        target.extend(utf8_percent_encode(&self.path, PATH));
        if !self.query.0.is_empty() {
            target.push('?');
            target.push_str(&self.query.encode());
        }
        target
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
use WhenOff::*;

/// The allow-list: `{}` is a dockerd `{name:.*}` parameter (one or more
/// segments). The first match wins, as in dockerd's router; literal routes
/// come before the parameterised ones that could shadow them.
const ROUTES: &[(Method, &str, Endpoint)] = &[
    (Method::GET, "/_ping", Plain),
    (Method::HEAD, "/_ping", Plain),
    (Method::GET, "/version", Version),
    (Method::GET, "/info", Plain),
    (Method::GET, "/events", Listed),
    (Method::GET, "/system/df", DiskUsage),
    (Method::POST, "/auth", Plain),
    // containers
    (Method::GET, "/containers/json", Listed),
    (Method::POST, "/containers/create", ContainerCreate),
    (Method::POST, "/containers/prune", Listed),
    (Method::GET, "/containers/{}/json", Plain),
    (Method::GET, "/containers/{}/top", Plain),
    (Method::GET, "/containers/{}/logs", Plain),
    (Method::GET, "/containers/{}/changes", Plain),
    (Method::GET, "/containers/{}/export", Plain),
    (Method::GET, "/containers/{}/stats", Plain),
    (Method::HEAD, "/containers/{}/archive", Plain),
    (Method::GET, "/containers/{}/archive", Plain),
    (Method::PUT, "/containers/{}/archive", TarUpload),
    (Method::POST, "/containers/{}/resize", Plain),
    (Method::POST, "/containers/{}/start", ContainerStart),
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
    (Method::POST, "/images/load", ImageLoad),
    (Method::POST, "/images/prune", Listed),
    (Method::GET, "/images/{}/json", Plain),
    (Method::GET, "/images/{}/history", Plain),
    (Method::GET, "/images/{}/get", Plain),
    // API 1.55: the image's attestations (read-only, like its inspect).
    (Method::GET, "/images/{}/attestations", Plain),
    (Method::POST, "/images/{}/push", Plain),
    (Method::POST, "/images/{}/tag", ImageTag),
    (Method::DELETE, "/images/{}", ImageRemove),
    (Method::POST, "/commit", Commit),
    (Method::POST, "/build", Build),
    (Method::POST, "/build/prune", Plain),
    (Method::POST, "/build/cancel", Plain),
    (Method::POST, "/session", BuildKit),
    (Method::POST, "/grpc", BuildKit),
    // networks
    (Method::GET, "/networks", Listed),
    (Method::POST, "/networks/create", NetworkCreate),
    (Method::POST, "/networks/prune", Listed),
    (Method::GET, "/networks/{}", NetworkInspect),
    (Method::DELETE, "/networks/{}", Plain),
    (Method::POST, "/networks/{}/connect", NetworkConnect),
    (Method::POST, "/networks/{}/disconnect", NetworkDisconnect),
    // volumes
    (Method::GET, "/volumes", Listed),
    (Method::POST, "/volumes/create", VolumeCreate),
    (Method::POST, "/volumes/prune", Listed),
    (Method::GET, "/volumes/{}", Plain),
    (Method::DELETE, "/volumes/{}", Plain),
];

/// Endpoints dockerd serves that stay off the allow-list, with the reason a
/// refusal gives (every other endpoint off the list gets a plain one).
const REFUSED: &[(Method, &str, &str)] = &[
    (
        Method::PUT,
        "/volumes/{}",
        "it updates swarm cluster (CSI) volumes (API 1.42), which tenants cannot create",
    ),
    (
        Method::GET,
        "/debug/{}",
        "it shows the daemon's internals (pprof profiles, expvar state), also under /v<version>/ from API 1.48",
    ),
    (
        Method::GET,
        "/containers/{}/attach/ws",
        "the proxy does not splice websocket attaches; use attach",
    ),
];

/// The endpoints of the families a policy setting enables (Engine API 1.41,
/// moby 20.10's routers: plugin, swarm, checkpoint, distribution). They are
/// looked up before [`ROUTES`]; while their family is off they answer as
/// the last column says (Docker's own answer with the feature off, or a
/// refusal; [`policy::off`](super::policy::off)), without reaching dockerd.
const GATED: &[(Method, &str, Endpoint, Family, WhenOff)] = &[
    // plugins (api/server/router/plugin)
    (Method::GET, "/plugins", Plain, Family::Plugins, NoPlugins),
    (
        Method::GET,
        "/plugins/privileges",
        Plain,
        Family::Plugins,
        Refused,
    ),
    (
        Method::POST,
        "/plugins/pull",
        Plain,
        Family::Plugins,
        Refused,
    ),
    (
        Method::POST,
        "/plugins/create",
        TarUpload,
        Family::Plugins,
        Refused,
    ),
    (
        Method::GET,
        "/plugins/{}/json",
        Plain,
        Family::Plugins,
        NoSuchPlugin,
    ),
    (
        Method::POST,
        "/plugins/{}/enable",
        Plain,
        Family::Plugins,
        Refused,
    ),
    (
        Method::POST,
        "/plugins/{}/disable",
        Plain,
        Family::Plugins,
        NoSuchPlugin,
    ),
    (
        Method::POST,
        "/plugins/{}/push",
        Plain,
        Family::Plugins,
        NoSuchPlugin,
    ),
    (
        Method::POST,
        "/plugins/{}/upgrade",
        Plain,
        Family::Plugins,
        Refused,
    ),
    (
        Method::POST,
        "/plugins/{}/set",
        Plain,
        Family::Plugins,
        NoSuchPlugin,
    ),
    (
        Method::DELETE,
        "/plugins/{}",
        Plain,
        Family::Plugins,
        NoSuchPlugin,
    ),
    // swarm (api/server/router/swarm)
    (Method::GET, "/swarm", Plain, Family::Swarm, NotSwarmManager),
    (
        Method::POST,
        "/swarm/init",
        SwarmInit,
        Family::Swarm,
        Refused,
    ),
    (
        Method::POST,
        "/swarm/join",
        SwarmJoin,
        Family::Swarm,
        Refused,
    ),
    (
        Method::POST,
        "/swarm/leave",
        Plain,
        Family::Swarm,
        NotInSwarm,
    ),
    (
        Method::POST,
        "/swarm/update",
        SwarmUpdate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/swarm/unlockkey",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/swarm/unlock",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/services",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/services/create",
        ServiceCreate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/services/{}/logs",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/services/{}/update",
        ServiceCreate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/services/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::DELETE,
        "/services/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (Method::GET, "/nodes", Plain, Family::Swarm, NotSwarmManager),
    (
        Method::POST,
        "/nodes/{}/update",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/nodes/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::DELETE,
        "/nodes/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (Method::GET, "/tasks", Plain, Family::Swarm, NotSwarmManager),
    (
        Method::GET,
        "/tasks/{}/logs",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/tasks/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/secrets",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/secrets/create",
        SecretCreate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/secrets/{}/update",
        SecretCreate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/secrets/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::DELETE,
        "/secrets/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/configs",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/configs/create",
        ConfigCreate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::POST,
        "/configs/{}/update",
        ConfigCreate,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::GET,
        "/configs/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    (
        Method::DELETE,
        "/configs/{}",
        Plain,
        Family::Swarm,
        NotSwarmManager,
    ),
    // checkpoints (api/server/router/checkpoint, experimental daemons only).
    // dockerd routes `DELETE /containers/{name}` on one segment, so the
    // checkpoint delete must be found here before `DELETE /containers/{}`.
    (
        Method::GET,
        "/containers/{}/checkpoints",
        Checkpoint,
        Family::Checkpoints,
        NotExperimental,
    ),
    (
        Method::POST,
        "/containers/{}/checkpoints",
        CheckpointCreate,
        Family::Checkpoints,
        NotExperimental,
    ),
    (
        Method::DELETE,
        "/containers/{}/checkpoints/{}",
        Checkpoint,
        Family::Checkpoints,
        NotExperimental,
    ),
    // distribution (api/server/router/distribution): refused while off, as
    // Docker has no "off" for a registry lookup to imitate.
    (
        Method::GET,
        "/distribution/{}/json",
        Plain,
        Family::Distribution,
        Refused,
    ),
];

/// Routes with no optional family enabled, within every version the policy knows.
pub fn route(method: &Method, uri: &Uri) -> Result<Route, Reject> {
    route_allowing(method, uri, &Default::default(), Window::POLICY)
}

/// Routes against the allow-list plus the endpoints of the `allowed` families,
/// at a version `window` serves.
pub fn route_allowing(
    method: &Method,
    uri: &Uri,
    allowed: &std::collections::BTreeSet<Family>,
    window: Window,
) -> Result<Route, Reject> {
    let path = clean_path(uri)?;
    let (requested, path) = split_version(&path)?;
    let version = window.serve(requested)?;
    let off_the_list = || {
        let why = REFUSED
            .iter()
            .find(|(m, pattern, _)| m == method && matches(pattern, path))
            .map_or(
                "this endpoint is not on dindbox's allow-list",
                |(_, _, why)| why,
            );
        Reject::forbidden("endpoint", &format!("{method} {path}"), why)
    };
    let gated = GATED
        .iter()
        .find(|(m, pattern, ..)| m == method && matches(pattern, path));
    let (pattern, endpoint) = match gated {
        Some(&(_, pattern, endpoint, family, _)) if allowed.contains(&family) => {
            (pattern, endpoint)
        }
        Some(&(_, pattern, _, family, when_off)) => (pattern, Off(family, when_off)),
        None => {
            let Some(&(_, pattern, endpoint)) = ROUTES
                .iter()
                .find(|(m, pattern, _)| m == method && matches(pattern, path))
            else {
                return Err(off_the_list());
            };
            (pattern, endpoint)
        }
    };
    let query = Query::parse(uri.query().unwrap_or_default())?;
    Ok(Route {
        endpoint,
        version,
        path: path.to_string(),
        pattern,
        query,
        body_type: BodyType::Untyped,
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

/// Splits `/v<version>` off the path: the version as the client spelt it
/// and as dockerd reads it, or `None` for a path without one.
fn split_version(path: &str) -> Result<(Option<Requested<'_>>, &str), Reject> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let text = &rest[..end];
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok((None, path));
    }
    let version = ApiVersion::parse(text).ok_or_else(|| {
        Reject::bad_request(
            "api-version",
            format!("API version {text:?} is not a version"),
        )
    })?;
    Ok((Some(Requested { text, version }), &rest[end..]))
}

/// Matches a route pattern; `{}` takes one or more whole segments, except a
/// second `{}` (`/containers/{}/checkpoints/{}`), which takes one segment.
fn matches(pattern: &str, path: &str) -> bool {
    // A first look that passes over most of the table: every pattern starts
    // with `/` and a literal letter (a test below keeps it so).
    if pattern.as_bytes().get(..2) != path.as_bytes().get(..2) {
        return false;
    }
    match split_at_param(pattern) {
        None => pattern == path,
        Some((prefix, rest)) => params_after(prefix, rest, path).is_some(),
    }
}

/// A pattern before and after its first `{}` (a char search: every request
/// tries most of the table's patterns, and a substring search costs more).
fn split_at_param(pattern: &str) -> Option<(&str, &str)> {
    let at = pattern.find('{')?;
    Some((&pattern[..at], pattern.get(at + 2..)?))
}

/// What a pattern's parameters match in `path`: the first, and the second if
/// the pattern has two (else `""`).
fn split_params<'p>(pattern: &str, path: &'p str) -> Option<(&'p str, &'p str)> {
    let (prefix, rest) = split_at_param(pattern)?;
    params_after(prefix, rest, path)
}

/// [`split_params`] of a pattern split at its first `{}`.
fn params_after<'p>(prefix: &str, rest: &str, path: &'p str) -> Option<(&'p str, &'p str)> {
    let inner = path.strip_prefix(prefix)?;
    match split_at_param(rest) {
        None => {
            let first = inner.strip_suffix(rest)?;
            (!first.is_empty()).then_some((first, ""))
        }
        Some((middle, suffix)) => {
            let inner = inner.strip_suffix(suffix)?;
            let (first, second) = inner.rsplit_once(middle)?;
            (!first.is_empty() && !second.is_empty() && !second.contains('/'))
                .then_some((first, second))
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

    fn route_at(window: Window, method: Method, target: &str) -> Result<Route, Reject> {
        route_allowing(
            &method,
            &target.parse().unwrap(),
            &Default::default(),
            window,
        )
    }

    #[test]
    fn create_is_found_with_any_version_spelling_and_forwarded_canonically() {
        let daemon_41 = Window::with_daemon(ApiVersion(1, 41));
        for target in [
            "/containers/create",
            "/v1.41/containers/create",
            "/v1.41./containers/create",
            "/v01.041/containers/create",
            "/v1.41.0/containers/create",
        ] {
            let route = route_at(daemon_41, Method::POST, target).unwrap();
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
    fn a_request_is_forwarded_at_its_version_and_unversioned_at_the_windows_newest() {
        let daemon_51 = Window::with_daemon(ApiVersion(1, 51));
        let at = |target| route_at(daemon_51, Method::GET, target).unwrap().target();
        assert_eq!(at("/v1.51/_ping"), "/v1.51/_ping");
        assert_eq!(at("/v1.44/_ping"), "/v1.44/_ping");
        assert_eq!(at("/_ping"), "/v1.51/_ping");
        assert_eq!(
            route_of(Method::GET, "/_ping").unwrap().target(),
            "/v1.55/_ping"
        );
    }

    #[test]
    fn versions_outside_the_window_are_refused() {
        let daemon_41 = Window::with_daemon(ApiVersion(1, 41));
        for (window, target) in [
            (Window::POLICY, "/v1.56/_ping"),
            (daemon_41, "/v1.45/_ping"),
            (Window::POLICY, "/v1.41.1/_ping"),
            (Window::POLICY, "/v1.12/_ping"),
        ] {
            let refused = route_at(window, Method::GET, target).unwrap_err();
            assert_eq!(refused.rule, "api-version", "{target}");
            assert_eq!(refused.status, http::StatusCode::BAD_REQUEST, "{target}");
        }
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
    fn every_pattern_starts_with_a_literal_letter() {
        let patterns = ROUTES.iter().map(|r| r.1);
        let patterns = patterns.chain(REFUSED.iter().map(|r| r.1));
        for pattern in patterns.chain(GATED.iter().map(|r| r.1)) {
            let second = pattern.as_bytes().get(1);
            assert!(
                pattern.starts_with('/') && second.is_some_and(u8::is_ascii_alphabetic)
                    || pattern.starts_with("/_"),
                "{pattern}"
            );
        }
    }

    #[test]
    fn parameters_span_segments_like_gorilla() {
        assert_eq!(
            endpoint(Method::GET, "/v1.41/images/library/busybox:latest/json"),
            Plain
        );
        assert_eq!(
            endpoint(Method::DELETE, "/images/registry:5000/a/b"),
            ImageRemove
        );
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
    fn known_endpoints_off_the_list_say_why() {
        for (method, target, why) in [
            (
                Method::PUT,
                "/v1.41/volumes/shared",
                "cluster (CSI) volumes",
            ),
            (Method::GET, "/debug/pprof/", "pprof"),
            (Method::GET, "/v1.41/debug/vars", "expvar"),
            (Method::GET, "/v1.41/debug/pprof/heap", "pprof"),
            (
                Method::GET,
                "/containers/abc/attach/ws?stdin=1",
                "websocket",
            ),
        ] {
            let reject = route_of(method.clone(), target).expect_err(target);
            assert_eq!(reject.rule, "endpoint", "{target}");
            assert!(reject.message.contains(why), "{target}: {}", reject.message);
        }
        assert!(route_of(Method::GET, "/debug")
            .unwrap_err()
            .message
            .contains("not on dindbox's allow-list"));
    }

    #[test]
    fn image_attestations_are_read_like_an_inspect() {
        let route = route_of(
            Method::GET,
            "/images/registry:5000/app:1/attestations?statement=1",
        )
        .unwrap();
        assert_eq!(route.endpoint, Plain);
        assert_eq!(route.param(), Some("registry:5000/app:1"));
        assert!(route_of(Method::POST, "/images/app/attestations").is_err());
    }

    fn route_allowing_all(method: Method, target: &str) -> Result<Route, Reject> {
        route_allowing(
            &method,
            &target.parse().unwrap(),
            &Family::ALL.into_iter().collect(),
            Window::POLICY,
        )
    }

    #[test]
    fn gated_endpoints_are_off_the_list_until_their_family_is_allowed() {
        for (method, target, endpoint) in [
            (Method::POST, "/v1.41/plugins/pull?remote=x", Plain),
            (Method::DELETE, "/v1.41/plugins/vieux/sshfs:latest", Plain),
            (Method::POST, "/v1.41/swarm/init", SwarmInit),
            (Method::POST, "/v1.41/swarm/join", SwarmJoin),
            (Method::POST, "/v1.41/swarm/update?version=3", SwarmUpdate),
            (Method::POST, "/v1.41/services/create", ServiceCreate),
            (
                Method::POST,
                "/v1.41/services/web/update?version=5",
                ServiceCreate,
            ),
            (Method::GET, "/v1.41/services/web/logs?stdout=1", Plain),
            (Method::GET, "/v1.41/nodes", Plain),
            (Method::GET, "/v1.41/tasks?filters=%7B%7D", Plain),
            (Method::POST, "/v1.41/secrets/create", SecretCreate),
            (
                Method::POST,
                "/v1.41/secrets/s1/update?version=2",
                SecretCreate,
            ),
            (Method::POST, "/v1.41/configs/create", ConfigCreate),
            (Method::GET, "/v1.41/containers/abc/checkpoints", Checkpoint),
            (
                Method::POST,
                "/v1.41/containers/abc/checkpoints",
                CheckpointCreate,
            ),
            (
                Method::DELETE,
                "/v1.41/containers/abc/checkpoints/cp1",
                Checkpoint,
            ),
            (
                Method::GET,
                "/v1.41/distribution/library/busybox:latest/json",
                Plain,
            ),
        ] {
            let off = route_of(method.clone(), target).expect(target);
            assert!(
                matches!(off.endpoint, Off(..)),
                "{method} {target}: {:?}",
                off.endpoint
            );
            let allowed = route_allowing_all(method.clone(), target).expect(target);
            assert_eq!(allowed.endpoint, endpoint, "{method} {target}");
        }
    }

    #[test]
    fn checkpoint_delete_is_not_mistaken_for_a_container_delete() {
        // dockerd routes DELETE /containers/{name} on one segment, so this is
        // the checkpoint delete, answered by the proxy while checkpoints are off.
        let off = route_of(Method::DELETE, "/containers/abc/checkpoints/cp1").unwrap();
        assert_eq!(off.endpoint, Off(Family::Checkpoints, NotExperimental));
        let route = route_allowing_all(Method::DELETE, "/containers/abc/checkpoints/cp1").unwrap();
        assert_eq!(route.pattern, "/containers/{}/checkpoints/{}");
        assert_eq!(route.param(), Some("abc"));
        let mut route = route;
        route.set_param("0123abcd");
        assert_eq!(route.target(), "/v1.55/containers/0123abcd/checkpoints/cp1");
        assert!(
            route_allowing_all(Method::DELETE, "/containers/abc/checkpoints/a/b").is_ok_and(
                |r| r.pattern == "/containers/{}" // a container name with slashes: dockerd 404s
            )
        );
    }

    #[test]
    fn plugin_inspect_is_answered_as_absent_until_plugins_are_allowed() {
        assert_eq!(
            endpoint(Method::GET, "/plugins/x/json"),
            Off(Family::Plugins, NoSuchPlugin)
        );
        assert_eq!(
            route_allowing_all(Method::GET, "/plugins/x/json")
                .unwrap()
                .endpoint,
            Plain
        );
    }

    /// What each gated endpoint answers while its family is off: the way in
    /// (and what asks a registry) refused, the rest as Docker with the
    /// feature off.
    #[test]
    fn gated_endpoints_answer_as_docker_with_the_feature_off_except_the_way_in() {
        use Family::*;
        for (method, target, off) in [
            (Method::GET, "/plugins", Off(Plugins, NoPlugins)),
            (
                Method::GET,
                "/plugins/vieux/sshfs:latest/json",
                Off(Plugins, NoSuchPlugin),
            ),
            (
                Method::DELETE,
                "/plugins/vieux/sshfs",
                Off(Plugins, NoSuchPlugin),
            ),
            (
                Method::POST,
                "/plugins/p/disable",
                Off(Plugins, NoSuchPlugin),
            ),
            (Method::POST, "/plugins/p/set", Off(Plugins, NoSuchPlugin)),
            (Method::POST, "/plugins/p/push", Off(Plugins, NoSuchPlugin)),
            (Method::POST, "/plugins/pull", Off(Plugins, Refused)),
            (Method::POST, "/plugins/create", Off(Plugins, Refused)),
            (Method::POST, "/plugins/p/enable", Off(Plugins, Refused)),
            (Method::POST, "/plugins/p/upgrade", Off(Plugins, Refused)),
            (Method::GET, "/plugins/privileges", Off(Plugins, Refused)),
            (Method::POST, "/swarm/init", Off(Swarm, Refused)),
            (Method::POST, "/swarm/join", Off(Swarm, Refused)),
            (Method::POST, "/swarm/leave", Off(Swarm, NotInSwarm)),
            (Method::GET, "/swarm", Off(Swarm, NotSwarmManager)),
            (Method::POST, "/swarm/unlock", Off(Swarm, NotSwarmManager)),
            (
                Method::POST,
                "/services/create",
                Off(Swarm, NotSwarmManager),
            ),
            (Method::GET, "/services/s/logs", Off(Swarm, NotSwarmManager)),
            (Method::DELETE, "/nodes/n", Off(Swarm, NotSwarmManager)),
            (Method::GET, "/tasks", Off(Swarm, NotSwarmManager)),
            (Method::GET, "/secrets", Off(Swarm, NotSwarmManager)),
            (
                Method::POST,
                "/configs/c/update",
                Off(Swarm, NotSwarmManager),
            ),
            (
                Method::GET,
                "/containers/c/checkpoints",
                Off(Checkpoints, NotExperimental),
            ),
            (
                Method::POST,
                "/containers/c/checkpoints",
                Off(Checkpoints, NotExperimental),
            ),
            (
                Method::GET,
                "/distribution/busybox/json",
                Off(Distribution, Refused),
            ),
        ] {
            assert_eq!(endpoint(method.clone(), target), off, "{method} {target}");
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
        let route = route_of(Method::POST, "/v1.41/build?t=a%2Fb&networkmode=%68ost").unwrap();
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
