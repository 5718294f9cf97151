//! What a tenant may ask of the inner dockerd: pure functions over parsed
//! bodies, no I/O. A request is allowed by returning the canonical body to
//! forward, or refused with a [`Reject`] that names the rule and the reason.
//!
//! This is the spine's policy: it refuses the three headline escapes
//! (privileged mode, added capabilities, host bind mounts) on container create
//! and privileged exec. The full fail-closed allow-list is issue 4.

#![forbid(unsafe_code)]

use http::StatusCode;

use super::gojson::{decode_struct, field, get, Field, Json, Kind};

/// A refused request: the HTTP status, the rule that refused it (for logs),
/// and the message the Docker CLI prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: StatusCode,
    pub rule: &'static str,
    pub message: String,
}

impl Reject {
    /// A request the policy forbids: `dindbox: <what> is not allowed: <why>`.
    pub fn forbidden(rule: &'static str, what: &str, why: impl std::fmt::Display) -> Reject {
        Reject {
            status: StatusCode::FORBIDDEN,
            rule,
            message: format!("dindbox: {what} is not allowed: {why}"),
        }
    }

    /// A request the proxy cannot read the way dockerd would.
    pub fn bad_request(rule: &'static str, why: impl std::fmt::Display) -> Reject {
        Reject {
            status: StatusCode::BAD_REQUEST,
            rule,
            message: format!("dindbox: {why}"),
        }
    }
}

const MOUNT: &[Field] = &[field("Type", Kind::Scalar), field("Source", Kind::Scalar)];

const HOST_CONFIG: &[Field] = &[
    field("Privileged", Kind::Scalar),
    field("CapAdd", Kind::Slice),
    field("Binds", Kind::Slice),
    field("Mounts", Kind::SliceOf(MOUNT)),
];

/// `POST /containers/create`: `container.CreateRequest`, whose `Config` is
/// embedded (its fields are top-level keys) and whose `HostConfig` is a pointer.
const CONTAINER_CREATE: &[Field] = &[field("HostConfig", Kind::Struct(HOST_CONFIG))];

/// `POST /containers/{id}/exec`: `container.ExecOptions`.
const EXEC_CREATE: &[Field] = &[field("Privileged", Kind::Scalar)];

/// Checks a container-create body and returns the canonical body to forward.
pub fn container_create(body: &Json) -> Result<Json, Reject> {
    let request = decode(body, CONTAINER_CREATE)?;
    if let Some(Json::Object(host_config)) = get(&request, "HostConfig") {
        check_privileged(host_config, "HostConfig.Privileged")?;
        check_cap_add(host_config)?;
        check_binds(host_config)?;
        check_mounts(host_config)?;
    }
    Ok(Json::Object(request))
}

/// Checks an exec-create body and returns the canonical body to forward.
pub fn exec_create(body: &Json) -> Result<Json, Reject> {
    let request = decode(body, EXEC_CREATE)?;
    check_privileged(&request, "Privileged")?;
    Ok(Json::Object(request))
}

fn decode(body: &Json, fields: &[Field]) -> Result<Vec<(String, Json)>, Reject> {
    decode_struct(body, fields, "body").map_err(|err| Reject::bad_request("body-type", err))
}

fn check_privileged(object: &[(String, Json)], path: &str) -> Result<(), Reject> {
    match get(object, "Privileged") {
        None | Some(Json::Bool(false)) => Ok(()),
        Some(Json::Bool(true)) => Err(Reject::forbidden(
            "privileged",
            "privileged mode",
            format!("{path}=true would give every capability and all host devices"),
        )),
        Some(other) => Err(Reject::bad_request(
            "body-type",
            format!("{path} must be a boolean, not {}", other.type_name()),
        )),
    }
}

fn check_cap_add(host_config: &[(String, Json)]) -> Result<(), Reject> {
    match get(host_config, "CapAdd") {
        None | Some(Json::Null) => Ok(()),
        Some(Json::Array(caps)) if caps.is_empty() => Ok(()),
        Some(Json::Array(caps)) => {
            let names: Vec<String> = caps
                .iter()
                .map(|c| String::from_utf8_lossy(&c.to_vec()).into_owned())
                .collect();
            Err(Reject::forbidden(
                "cap-add",
                "adding capabilities",
                format!("HostConfig.CapAdd asks for {}", names.join(", ")),
            ))
        }
        Some(_) => unreachable!("decode_struct checked that CapAdd is an array"),
    }
}

/// `Binds` entries are `source:destination[:options]` or a lone destination
/// (an anonymous volume). Only named volumes may be the source.
fn check_binds(host_config: &[(String, Json)]) -> Result<(), Reject> {
    let Some(Json::Array(binds)) = get(host_config, "Binds") else {
        return Ok(());
    };
    for bind in binds {
        let Json::String(spec) = bind else {
            return Err(Reject::bad_request(
                "body-type",
                "HostConfig.Binds entries must be strings",
            ));
        };
        let mut parts = spec.split(':');
        let first = parts.next().unwrap_or_default();
        if parts.next().is_none() {
            continue; // a lone destination: an anonymous volume
        }
        if !is_volume_name(first) {
            return Err(Reject::forbidden(
                "host-bind",
                "a host bind mount",
                format!("Binds entry {spec:?} mounts the host path {first:?}; use a named volume instead"),
            ));
        }
    }
    Ok(())
}

/// dockerd's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Only volume and tmpfs mounts; every other type reaches the host or is not understood.
fn check_mounts(host_config: &[(String, Json)]) -> Result<(), Reject> {
    let Some(Json::Array(mounts)) = get(host_config, "Mounts") else {
        return Ok(());
    };
    for (i, mount) in mounts.iter().enumerate() {
        let Json::Object(mount) = mount else { continue };
        match get(mount, "Type") {
            Some(Json::String(t)) if t == "volume" || t == "tmpfs" => {}
            Some(Json::String(t)) if t.eq_ignore_ascii_case("bind") => {
                let source = match get(mount, "Source") {
                    Some(Json::String(s)) => s.as_str(),
                    _ => "",
                };
                return Err(Reject::forbidden(
                    "host-bind",
                    "a host bind mount",
                    format!("HostConfig.Mounts[{i}] binds the host path {source:?}; use a volume mount instead"),
                ));
            }
            Some(Json::String(t)) => {
                return Err(Reject::forbidden(
                    "mount-type",
                    "this mount type",
                    format!(
                        "HostConfig.Mounts[{i}] has type {t:?}; only volume and tmpfs are allowed"
                    ),
                ))
            }
            _ => {
                return Err(Reject::bad_request(
                    "body-type",
                    format!("HostConfig.Mounts[{i}].Type must be a string"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: &str) -> Result<String, Reject> {
        container_create(&Json::parse(body.as_bytes()).unwrap())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    fn rule(body: &str) -> &'static str {
        create(body).expect_err("must be refused").rule
    }

    #[test]
    fn privileged_is_refused_in_every_spelling() {
        for body in [
            r#"{"HostConfig":{"Privileged":true}}"#,
            r#"{"hostconfig":{"privileged":true}}"#,
            r#"{"HostConfig":{"Privileged":false,"PRIVILEGED":true}}"#,
            r#"{"HostConfig":{"Privileged":true,"privileged":null}}"#,
            r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}"#,
            "{\"HostConfig\":{\"Privileged\":true}}",
        ] {
            assert_eq!(rule(body), "privileged", "{body}");
        }
    }

    #[test]
    fn privileged_false_is_allowed_and_canonical() {
        assert_eq!(
            create(r#"{"hostconfig":{"privileged":false}}"#).unwrap(),
            r#"{"HostConfig":{"Privileged":false}}"#
        );
    }

    #[test]
    fn privileged_of_the_wrong_type_is_a_bad_request() {
        let reject = create(r#"{"HostConfig":{"Privileged":"true"}}"#).unwrap_err();
        assert_eq!(reject.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn cap_add_is_refused_in_every_spelling() {
        for body in [
            r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#,
            r#"{"HostConfig":{"capadd":["sys_admin"]}}"#,
            r#"{"HostConfig":{"cApAdD":["ALL"]}}"#,
            r#"{"HostConfig":{"CapAdd":null,"CAPADD":["NET_ADMIN"]}}"#,
        ] {
            assert_eq!(rule(body), "cap-add", "{body}");
        }
    }

    #[test]
    fn empty_or_reset_cap_add_is_allowed() {
        assert!(create(r#"{"HostConfig":{"CapAdd":[]}}"#).is_ok());
        assert!(create(r#"{"HostConfig":{"CapAdd":["ALL"],"capadd":null}}"#).is_ok());
    }

    #[test]
    fn host_binds_are_refused() {
        for body in [
            r#"{"HostConfig":{"Binds":["/:/host"]}}"#,
            r#"{"HostConfig":{"Binds":["/var/run/docker.sock:/s:ro"]}}"#,
            "{\"HostConfig\":{\"Bind\u{017F}\":[\"/:/host\"]}}",
            r#"{"HostConfig":{"Binds":["./rel:/x"]}}"#,
        ] {
            assert_eq!(rule(body), "host-bind", "{body}");
        }
    }

    #[test]
    fn named_and_anonymous_volumes_are_allowed() {
        assert!(create(r#"{"HostConfig":{"Binds":["data:/data","cache:/c:ro","/anon"]}}"#).is_ok());
    }

    #[test]
    fn bind_mounts_are_refused_and_other_types_fail_closed() {
        assert_eq!(
            rule(r#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}"#),
            "host-bind"
        );
        assert_eq!(
            rule(r#"{"HostConfig":{"mounts":[{"type":"BIND","source":"/"}]}}"#),
            "host-bind"
        );
        assert_eq!(
            rule(r#"{"HostConfig":{"Mounts":[{"Type":"npipe"}]}}"#),
            "mount-type"
        );
        assert!(create(
            r#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v"}]}}"#
        )
        .is_ok());
    }

    #[test]
    fn privileged_exec_is_refused() {
        let body = Json::parse(br#"{"Cmd":["sh"],"privileged":true}"#).unwrap();
        assert_eq!(exec_create(&body).unwrap_err().rule, "privileged");
        assert!(exec_create(&Json::parse(br#"{"Cmd":["sh"]}"#).unwrap()).is_ok());
    }

    #[test]
    fn messages_read_well_in_the_cli() {
        let reject = create(r#"{"HostConfig":{"Binds":["/:/host"]}}"#).unwrap_err();
        assert_eq!(
            reject.message,
            r#"dindbox: a host bind mount is not allowed: Binds entry "/:/host" mounts the host path "/"; use a named volume instead"#
        );
    }
}
