//! The pure part of handling one request, no I/O: admit it (route, headers,
//! query) and check and rewrite its body. `Proxy::forward` and the fuzz target
//! both go through here, so what is fuzzed is what serves.

#![forbid(unsafe_code)]

use http::header::{self, HeaderMap};
use http::{Method, Uri};

use super::gojson::{Json, ParseError};
use super::gomime;
use super::policy::{self, ownership, Policy, Reject};
pub use super::route::BodyType;
use super::route::{self, Endpoint, Route};
pub use super::version::Window;

/// [`admit_within`] every API version the policy knows, as if the daemon
/// knew them all.
pub fn admit(
    policy: &Policy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Route, Reject> {
    admit_within(policy, Window::POLICY, method, uri, headers)
}

/// Routes a request and checks everything but its body: the endpoint is on
/// the allow-list, its API version in `window`, the body is not form-encoded,
/// and the query is allowed (and rewritten where the policy injects into it).
pub fn admit_within(
    policy: &Policy,
    window: Window,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Route, Reject> {
    let mut route = route::route_allowing(method, uri, &policy.allow, window)?;
    // A family that is off: Docker's answer with the feature off or a
    // refusal, given by the proxy itself (`Proxy::forward` never forwards an
    // `Off` route), whatever the rest of the request says.
    if let Endpoint::Off(family, when_off) = route.endpoint {
        policy::off::answer(family, when_off, method, &route)?;
        return Ok(route);
    }
    route.body_type = body_type(headers)?;
    if takes_tar(route.endpoint) && route.body_type == BodyType::Json {
        return Err(Reject::bad_request(
            "content-type",
            "this endpoint takes a tar body, not application/json",
        ));
    }
    match route.endpoint {
        Endpoint::BuildKit if !policy.allow_buildkit => {
            return Err(Reject::forbidden(
                "buildkit",
                "BuildKit sessions",
                "this proxy cannot inspect them; use the classic builder (DOCKER_BUILDKIT=0)",
            ))
        }
        Endpoint::Build => route.query = policy::build(policy, &route.query)?,
        Endpoint::ImageCreate => policy::image_create(policy, &route.query)?,
        Endpoint::Commit => policy::check_changes(&route.query)?,
        Endpoint::SwarmJoin => {
            return Err(Reject::forbidden(
                "swarm-join",
                "joining another swarm",
                "its managers would schedule tasks here that never pass through this proxy; \
                 use swarm init instead",
            ))
        }
        Endpoint::Checkpoint | Endpoint::CheckpointCreate if route.query.count("dir") > 0 => {
            return Err(Reject::forbidden(
                "checkpoint-dir",
                "a checkpoint directory",
                "dir names a directory on the daemon's host; use the default",
            ))
        }
        _ => {}
    }
    if route.endpoint == Endpoint::ContainerStart {
        policy::checkpoint_start(policy, &route.query)?;
    }
    if let Some(owner) = &policy.owner {
        policy::taglock::check_container_name(method, &route)?;
        if route.endpoint == Endpoint::Listed {
            let filters = ownership::with_owner_filter(owner, route.query.first("filters"))?;
            route.query.set("filters", &filters);
        }
        // Committed and imported images carry the owner label: a LABEL change
        // appended last, after the tenant's own changes.
        if policy::images::labels_through_changes(&route) {
            let change = policy::images::owner_label_change(owner)?;
            route.query.0.push(("changes".into(), change));
        }
    }
    Ok(route)
}

/// A rule over a whole JSON body: the policy's verdict, and the canonical
/// body to forward in its place.
pub type BodyRule = fn(&Policy, Json) -> Result<Json, Reject>;

/// The rule that checks an endpoint's body, read whole; `None` for the
/// endpoints whose body is streamed as it comes. Every endpoint is named, so
/// a new one must say which it is.
pub fn body_rule(endpoint: Endpoint) -> Option<BodyRule> {
    Some(match endpoint {
        Endpoint::ContainerCreate => policy::container_create,
        Endpoint::ContainerUpdate => policy::container_update,
        Endpoint::ExecCreate => |_, json| policy::exec_create(json),
        Endpoint::VolumeCreate => policy::volume_create,
        Endpoint::NetworkCreate => policy::network_create,
        Endpoint::NetworkConnect => policy::network_connect,
        Endpoint::NetworkDisconnect => |_, json| policy::network_disconnect(json),
        Endpoint::ServiceCreate => policy::service_create,
        Endpoint::SecretCreate => policy::secret_create,
        Endpoint::ConfigCreate => policy::config_create,
        Endpoint::SwarmInit => |_, json| policy::swarm_init(json, true),
        Endpoint::SwarmUpdate => |_, json| policy::swarm_init(json, false),
        Endpoint::CheckpointCreate => |_, json| policy::checkpoint_create(json),
        Endpoint::Commit => |_, json| policy::commit_config(json),
        Endpoint::Plain
        | Endpoint::Version
        | Endpoint::Hijack
        | Endpoint::BuildKit
        | Endpoint::Build
        | Endpoint::ImageCreate
        | Endpoint::Off(..)
        | Endpoint::SwarmJoin
        | Endpoint::Checkpoint
        | Endpoint::ContainerStart
        | Endpoint::TarUpload
        | Endpoint::ImageLoad
        | Endpoint::ImageTag
        | Endpoint::ImageRemove
        | Endpoint::Listed
        | Endpoint::DiskUsage
        | Endpoint::NetworkInspect => return None,
    })
}

/// Whether the endpoint's body is read whole and checked (else it is streamed).
pub fn inspects_body(endpoint: Endpoint) -> bool {
    body_rule(endpoint).is_some()
}

/// The bytes to forward in place of a body: the checked, canonical body
/// where the endpoint's body is inspected, else the body as it came.
pub fn rewrite_body(
    policy: &Policy,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, Reject> {
    let Some(rule) = body_rule(endpoint) else {
        return Ok(body.to_vec());
    };
    Ok(check_body(policy, rule, headers, body)?
        .map(|json| json.to_vec())
        .unwrap_or_default())
}

/// Checks a whole JSON body with `rule` and returns the canonical body to
/// forward in its place (`None` for an empty body, which is forwarded empty).
pub fn check_body(
    policy: &Policy,
    rule: BodyRule,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Json>, Reject> {
    if body.is_empty() {
        return Ok(None);
    }
    if body_type(headers)? != BodyType::Json {
        return Err(Reject::bad_request(
            "content-type",
            "this endpoint takes a JSON body (Content-Type: application/json)",
        ));
    }
    let json = Json::parse(body).map_err(|err| match err {
        ParseError::TooManyValues => Reject::bad_request("body-json-size", err),
        ParseError::Syntax(err) => Reject::bad_request(
            "body-json",
            format!("the request body is not valid JSON: {err}"),
        ),
    })?;
    rule(policy, json).map(Some)
}

/// The endpoints whose body is a tar stream (a build context, an image, files
/// to copy in, an image to import).
fn takes_tar(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::Build | Endpoint::ImageCreate | Endpoint::TarUpload | Endpoint::ImageLoad
    )
}

/// Reads `Content-Type` as dockerd's Go would ([`gomime`]) and allows only
/// the types Docker clients send, spelled plainly. dockerd's `ParseForm`
/// reads a form body into the same values as the query string, and lets
/// them win, even behind a malformed parameter or a non-ASCII spelling of
/// the type: a value Go could read as a form, or that Go and the proxy
/// might read differently, is refused.
pub fn body_type(headers: &HeaderMap) -> Result<BodyType, Reject> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Ok(BodyType::Untyped);
    };
    if values.next().is_some() {
        return Err(content_type_error("more than one Content-Type header"));
    }
    let bytes = value.as_bytes();
    if !bytes
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(content_type_error(format!(
            "Content-Type {:?} is not plain ASCII",
            String::from_utf8_lossy(bytes)
        )));
    }
    let parsed = gomime::parse_media_type(bytes);
    let media = parsed.media_type.as_str();
    if media == "application/x-www-form-urlencoded" || media.starts_with("multipart/") {
        return Err(content_type_error(format!(
            "{media} bodies are not accepted"
        )));
    }
    if let Some(error) = parsed.error {
        return Err(content_type_error(format!(
            "Content-Type {:?} is malformed ({error})",
            String::from_utf8_lossy(bytes)
        )));
    }
    match media {
        "application/json" => Ok(BodyType::Json),
        "application/x-tar" | "application/tar" => Ok(BodyType::Tar),
        "text/plain" => Ok(BodyType::Text),
        "application/octet-stream" => Ok(BodyType::Binary),
        other => Err(content_type_error(format!(
            "Content-Type {other} is not accepted (JSON, tar, text/plain or application/octet-stream)"
        ))),
    }
}

fn content_type_error(why: impl std::fmt::Display) -> Reject {
    Reject::bad_request("content-type", why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::policy::off::WhenOff;
    use crate::proxy::policy::Family;

    #[test]
    fn a_streamed_endpoint_s_body_is_forwarded_as_it_came_and_an_inspected_one_is_checked() {
        let json = {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            headers
        };
        let policy = Policy::default();
        let tar = b"not json at all";
        assert!(body_rule(Endpoint::TarUpload).is_none());
        assert_eq!(
            rewrite_body(&policy, Endpoint::TarUpload, &HeaderMap::new(), tar).unwrap(),
            tar
        );
        assert!(inspects_body(Endpoint::ContainerCreate));
        let refused = rewrite_body(
            &policy,
            Endpoint::ContainerCreate,
            &json,
            br#"{"Image":"b","HostConfig":{"Privileged":true}}"#,
        );
        assert_eq!(refused.unwrap_err().rule, "privileged");
    }

    fn admit_get(target: &str) -> Result<Route, Reject> {
        admit(
            &Policy::default(),
            &Method::GET,
            &target.parse().unwrap(),
            &HeaderMap::new(),
        )
    }

    #[test]
    fn plugin_inspect_is_a_404_so_generic_inspect_says_no_such_object() {
        let reject = admit_get("/v1.41/plugins/busybox/json").unwrap_err();
        assert_eq!(reject.status, http::StatusCode::NOT_FOUND);
        assert_eq!(reject.message, r#"plugin "busybox" not found"#);
    }

    /// Docker's answers with the feature off (dockerd 28.5's own messages),
    /// whatever else the request says; the way in stays refused with the reason.
    #[test]
    fn families_that_are_off_answer_as_docker_with_the_feature_off() {
        let answer = |method: Method, target: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            admit(
                &Policy::default(),
                &method,
                &target.parse().unwrap(),
                &headers,
            )
            .map(|route| route.endpoint)
            .map_err(|r| (r.status.as_u16(), r.message))
        };
        let not_manager = (
            503,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" \
             to connect this node to swarm and try again."
                .to_string(),
        );
        assert_eq!(
            answer(Method::GET, "/v1.41/swarm"),
            Err(not_manager.clone())
        );
        assert_eq!(
            answer(Method::GET, "/v1.41/services?filters=%7B%7D"),
            Err(not_manager.clone())
        );
        assert_eq!(
            answer(Method::DELETE, "/v1.41/secrets/s1"),
            Err(not_manager.clone())
        );
        assert_eq!(
            answer(Method::POST, "/v1.41/swarm/leave?force=1"),
            Err((503, "This node is not part of a swarm".into()))
        );
        assert_eq!(
            answer(Method::DELETE, "/v1.41/plugins/vieux/sshfs:latest?force=1"),
            Err((404, r#"plugin "vieux/sshfs:latest" not found"#.into()))
        );
        let experimental = (
            501,
            "This experimental feature is disabled by default. Start the Docker daemon in \
             experimental mode in order to enable it."
                .to_string(),
        );
        // `dir` names a host directory when checkpoints are on; off, nothing is read.
        assert_eq!(
            answer(Method::GET, "/v1.41/containers/c/checkpoints?dir=/etc"),
            Err(experimental)
        );
        // `GET /plugins`: admitted, and answered `[]` by `Proxy::forward`.
        assert!(matches!(
            answer(Method::GET, "/v1.41/plugins"),
            Ok(Endpoint::Off(Family::Plugins, WhenOff::NoPlugins))
        ));
        for (method, target, why) in [
            (Method::POST, "/v1.41/swarm/init", "swarm mode is off"),
            (Method::POST, "/v1.41/swarm/join", "swarm mode is off"),
            (
                Method::POST,
                "/v1.41/plugins/pull?remote=x",
                "plugins are off",
            ),
            (Method::POST, "/v1.41/plugins/x/enable", "plugins are off"),
            (Method::GET, "/v1.41/distribution/busybox/json", "registry"),
        ] {
            let (status, message) = answer(method.clone(), target).unwrap_err();
            assert_eq!(status, 403, "{method} {target}");
            assert!(
                message.starts_with("dindbox: ")
                    && message.contains("is not allowed: ")
                    && message.contains(why),
                "{method} {target}: {message}"
            );
        }
    }

    #[test]
    fn tar_endpoints_take_tar_or_raw_bodies_only() {
        let with = |method: Method, target: &str, media: &str| {
            let mut headers = HeaderMap::new();
            if !media.is_empty() {
                headers.insert(header::CONTENT_TYPE, media.parse().unwrap());
            }
            admit(
                &Policy::default(),
                &method,
                &target.parse().unwrap(),
                &headers,
            )
        };
        assert!(with(Method::POST, "/v1.41/build?t=x", "application/x-tar").is_ok());
        assert!(with(Method::PUT, "/v1.41/containers/c/archive?path=/", "").is_ok());
        assert!(with(Method::POST, "/v1.41/images/load", "application/json").is_err());
        let archive = "/v1.41/containers/c/archive?path=/";
        assert!(
            with(Method::PUT, archive, "text/plain").is_ok(),
            "what `docker cp` sends"
        );
        assert!(with(Method::PUT, archive, "application/json").is_err());
        assert!(with(Method::POST, "/v1.41/containers/c/start", "text/plain").is_ok());
    }

    fn typed(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    }

    #[test]
    fn the_review_s_form_spellings_are_refused() {
        let prune: Uri = "/v1.41/containers/prune".parse().unwrap();
        for value in [
            &b"application/x-www-form-urlencoded; x=\xff"[..],
            "appl\u{0130}cation/x-www-form-urlencoded".as_bytes(),
            "\u{00A0}application/x-www-form-urlencoded".as_bytes(),
            b"APPLICATION/X-WWW-FORM-URLENCODED",
            b"application/x-www-form-urlencoded;;",
            b"multipart/form-data; boundary=x",
            b"application/json; charset=utf-8; charset=latin1",
            b"text/html",
        ] {
            let reject =
                admit(&Policy::default(), &Method::POST, &prune, &typed(value)).unwrap_err();
            assert_eq!(
                reject.rule,
                "content-type",
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn admitted_types_are_forwarded_in_the_proxy_s_spelling() {
        for (value, forwarded) in [
            (&b"application/json"[..], Some("application/json")),
            (
                b" Application/JSON ; charset=utf-8",
                Some("application/json"),
            ),
            (b"application/json;", Some("application/json")),
            (b"application/tar", Some("application/x-tar")),
            (b"text/plain", Some("text/plain")),
            (
                b"application/octet-stream",
                Some("application/octet-stream"),
            ),
        ] {
            let kind = body_type(&typed(value)).unwrap();
            assert_eq!(
                kind.header(),
                forwarded,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(body_type(&HeaderMap::new()).unwrap().header(), None);
        let mut two = typed(b"application/json");
        two.append(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(body_type(&two).is_err());
    }

    #[test]
    fn form_bodies_are_refused_on_every_endpoint() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let reject = admit(
            &Policy::default(),
            &Method::GET,
            &"/_ping".parse().unwrap(),
            &headers,
        )
        .unwrap_err();
        assert_eq!(reject.rule, "content-type");
        headers.insert(
            header::CONTENT_TYPE,
            "Multipart/Form-Data; boundary=x".parse().unwrap(),
        );
        assert!(admit(
            &Policy::default(),
            &Method::POST,
            &"/build".parse().unwrap(),
            &headers
        )
        .is_err());
    }
}
