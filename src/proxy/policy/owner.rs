//! Ownership in standalone mode (`--owner-label key=value`): the pure half.
//! Two CI jobs behind two proxies on one daemon must not see or touch each
//! other's containers, networks or volumes. Every object the proxy lets a
//! tenant name must carry the owner label; lists, prunes and events get it as
//! a label filter. This module decides, from what dockerd answered, and finds
//! what a request names; `proxy::owner` does the asking.
//!
//! Images and the build cache stay shared: pulled images carry no labels
//! (only images the tenant builds get them), so filtering images by owner
//! would hide every pulled base image, and refusing them would break
//! `docker run busybox`. A tenant can therefore see and use images other
//! jobs pulled or built, but not move or remove their tags ([`super::images`]).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use http::{Method, StatusCode};

use super::Reject;
use crate::proxy::gojson::{get, Json};
use crate::proxy::route::{Endpoint, Route};

/// The owner label, `key` = `value`.
pub type Owner = (String, String);

/// The kinds of object the proxy checks ownership of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    /// An exec instance: owned when its container is.
    Exec,
    Network,
    Volume,
}

impl Kind {
    /// What dockerd answers for an object that does not exist: another
    /// owner's objects look absent.
    pub fn not_found(self, name: &str) -> Reject {
        let message = match self {
            Kind::Container => format!("No such container: {name}"),
            Kind::Exec => format!("No such exec instance: {name}"),
            Kind::Network => format!("network {name} not found"),
            Kind::Volume => format!("get {name}: no such volume"),
        };
        Reject {
            status: StatusCode::NOT_FOUND,
            rule: "owner",
            message,
        }
    }
}

/// Whether labels as dockerd reports them (`.Config.Labels` of a container,
/// `.Labels` of a network or volume; `null` when there are none) carry the
/// owner label with the owner's value.
pub fn owns(owner: &Owner, labels: Option<&serde_json::Value>) -> bool {
    labels
        .and_then(|labels| labels.get(&owner.0))
        .and_then(serde_json::Value::as_str)
        .is_some_and(|value| value == owner.1)
}

/// Whether labels carry the owner label, another owner's, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Mine,
    Other,
    Missing,
}

pub fn label(owner: &Owner, labels: Option<&serde_json::Value>) -> Label {
    match labels.and_then(|labels| labels.get(&owner.0)) {
        None | Some(serde_json::Value::Null) => Label::Missing,
        Some(value) if value.as_str() == Some(owner.1.as_str()) => Label::Mine,
        Some(_) => Label::Other,
    }
}

/// The `filters` that list the owner's containers using a volume: how an
/// anonymous volume (dockerd creates those without labels, for an image's
/// `VOLUME` or a `-v /path`) is known to be the owner's. Every volume an
/// owned container mounts passed the owner check or was made for it.
pub fn used_by_owned_containers(owner: &Owner, volume: &str) -> String {
    serde_json::json!({
        "label": { format!("{}={}", owner.0, owner.1): true },
        "volume": { volume: true },
    })
    .to_string()
}

/// The networks every container may use: they belong to the daemon, not to
/// a tenant (`host` and `container:` modes are refused by the policy).
pub fn is_builtin_network(name: &str) -> bool {
    matches!(name, "bridge" | "default" | "none")
}

/// The object a request's path names, if its endpoint acts on one.
pub fn target(route: &Route) -> Option<(Kind, String)> {
    let param = route.param()?;
    let kind = if route.pattern.starts_with("/containers/{}") {
        Kind::Container
    } else if route.pattern.starts_with("/exec/{}") {
        Kind::Exec
    } else if route.pattern.starts_with("/networks/{}") {
        Kind::Network
    } else if route.pattern.starts_with("/volumes/{}") {
        Kind::Volume
    } else {
        return None;
    };
    Some((kind, param.to_string()))
}

/// The container `POST /commit` snapshots (`?container=`), which must be owned
/// like any other: committing it would copy its files into an image.
pub fn commit_target(route: &Route) -> Option<String> {
    (route.pattern == "/commit").then(|| route.query.first("container").unwrap_or("").to_string())
}

/// Whether the endpoint lists (or prunes, or streams events about) objects of
/// every owner, so that the owner label filter must be added to its query.
pub fn is_filtered(method: &Method, route: &Route) -> bool {
    matches!(
        (method, route.pattern),
        (&Method::GET, "/containers/json")
            | (&Method::GET, "/networks")
            | (&Method::GET, "/volumes")
            | (&Method::GET, "/events")
            | (&Method::POST, "/containers/prune")
            | (&Method::POST, "/networks/prune")
            | (&Method::POST, "/volumes/prune")
    )
}

/// The `filters` parameter (a JSON object) with `label=<key>=<value>` added
/// to what the client asked for. dockerd ANDs label filters, so the answer
/// only ever holds owned objects, whatever else the client filters on.
///
/// dockerd's `filters.FromJSON` reads `{"label":{"k=v":true}}` and, failing
/// that, the older `{"label":["k=v"]}`; both are read here, and the result is
/// written in the first form.
pub fn with_owner_filter(owner: &Owner, given: Option<&str>) -> Result<String, Reject> {
    let mut filters = parse_filters(given.unwrap_or(""))?;
    filters
        .entry("label".to_string())
        .or_default()
        .insert(format!("{}={}", owner.0, owner.1));
    let json: serde_json::Map<String, serde_json::Value> = filters
        .into_iter()
        .map(|(key, values)| {
            let values = values
                .into_iter()
                .map(|v| (v, serde_json::Value::Bool(true)))
                .collect();
            (key, serde_json::Value::Object(values))
        })
        .collect();
    Ok(serde_json::Value::Object(json).to_string())
}

type Filters = BTreeMap<String, BTreeSet<String>>;

/// Parses a `filters` parameter as dockerd does: keys are exact (a Go map),
/// the last duplicate key wins, and either every value is a set
/// (`{"v":true}`) or every value is a list (`["v"]`).
fn parse_filters(text: &str) -> Result<Filters, Reject> {
    let invalid = || {
        Reject::bad_request("filters", "the filters parameter is not a valid filter object (expected {\"label\":[\"key=value\"]})")
    };
    if text.trim().is_empty() {
        return Ok(Filters::new());
    }
    let serde_json::Value::Object(object) =
        serde_json::from_str::<serde_json::Value>(text).map_err(|_| invalid())?
    else {
        return Err(invalid());
    };
    let as_set = |value: &serde_json::Value| -> Option<BTreeSet<String>> {
        match value {
            serde_json::Value::Null => Some(BTreeSet::new()),
            serde_json::Value::Object(set) => set
                .iter()
                .map(|(k, v)| (v.is_boolean() || v.is_null()).then(|| k.clone()))
                .collect(),
            _ => None,
        }
    };
    let as_list = |value: &serde_json::Value| -> Option<BTreeSet<String>> {
        match value {
            serde_json::Value::Null => Some(BTreeSet::new()),
            serde_json::Value::Array(list) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => None,
        }
    };
    let read = |form: &dyn Fn(&serde_json::Value) -> Option<BTreeSet<String>>| {
        object
            .iter()
            .map(|(k, v)| form(v).map(|set| (k.clone(), set)))
            .collect::<Option<Filters>>()
    };
    read(&as_set).or_else(|| read(&as_list)).ok_or_else(invalid)
}

/// An object a request body names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Container(String),
    Network(String),
    /// A named volume, with the labels to create it with if it does not exist
    /// yet (a mount's `VolumeOptions.Labels`; the proxy adds its own).
    Volume {
        name: String,
        labels: Vec<(String, String)>,
    },
}

/// The containers, networks and volumes a checked (canonical) body names:
/// container create's `VolumesFrom`, `Links`, `NetworkMode`, networks in
/// `EndpointsConfig` (and their `Links`), named volumes in `Binds` and
/// `Mounts`; network connect's and disconnect's `Container` and `Links`.
/// Built-in networks are left out. Each object is named once.
pub fn references(endpoint: Endpoint, body: &Json) -> Vec<Reference> {
    let Json::Object(body) = body else {
        return Vec::new();
    };
    let mut refs = Vec::new();
    match endpoint {
        Endpoint::ContainerCreate => create_references(body, &mut refs),
        Endpoint::NetworkConnect | Endpoint::NetworkDisconnect => {
            if let Some(Json::String(container)) = get(body, "Container") {
                refs.push(Reference::Container(container.clone()));
            }
            if let Some(Json::Object(endpoint)) = get(body, "EndpointConfig") {
                link_references(endpoint, &mut refs);
            }
        }
        _ => {}
    }
    let mut unique = Vec::with_capacity(refs.len());
    for r in refs {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    unique
}

fn create_references(body: &[(String, Json)], refs: &mut Vec<Reference>) {
    if let Some(Json::Object(hc)) = get(body, "HostConfig") {
        for spec in strings(hc, "VolumesFrom") {
            // `name[:ro|rw]`, split on the first `:` as dockerd does.
            let name = spec.split(':').next().unwrap_or_default();
            refs.push(Reference::Container(name.to_string()));
        }
        link_references(hc, refs);
        if let Some(Json::String(mode)) = get(hc, "NetworkMode") {
            if !mode.is_empty() && !is_builtin_network(mode) && !mode.starts_with("container:") {
                refs.push(Reference::Network(mode.clone()));
            }
        }
        for spec in strings(hc, "Binds") {
            // `source:destination[:options]`; a lone destination is anonymous,
            // and the policy has refused host paths as sources already.
            let mut parts = spec.split(':');
            let source = parts.next().unwrap_or_default();
            if parts.next().is_some() && !source.is_empty() {
                refs.push(Reference::Volume {
                    name: source.to_string(),
                    labels: Vec::new(),
                });
            }
        }
        if let Some(Json::Array(mounts)) = get(hc, "Mounts") {
            for mount in mounts {
                let Json::Object(mount) = mount else { continue };
                let is_volume =
                    matches!(get(mount, "Type"), Some(Json::String(t)) if t == "volume");
                match get(mount, "Source") {
                    Some(Json::String(source)) if is_volume && !source.is_empty() => {
                        refs.push(Reference::Volume {
                            name: source.clone(),
                            labels: mount_labels(mount),
                        })
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(Json::Object(networking)) = get(body, "NetworkingConfig") {
        if let Some(Json::Object(endpoints)) = get(networking, "EndpointsConfig") {
            for (network, settings) in endpoints {
                if !is_builtin_network(network) {
                    refs.push(Reference::Network(network.clone()));
                }
                if let Json::Object(settings) = settings {
                    link_references(settings, refs);
                }
            }
        }
    }
}

/// `Links` entries are `name[:alias]`; the name may start with `/`.
fn link_references(object: &[(String, Json)], refs: &mut Vec<Reference>) {
    for link in strings(object, "Links") {
        let name = link.split(':').next().unwrap_or_default();
        refs.push(Reference::Container(name.to_string()));
    }
}

fn mount_labels(mount: &[(String, Json)]) -> Vec<(String, String)> {
    let Some(Json::Object(options)) = get(mount, "VolumeOptions") else {
        return Vec::new();
    };
    let Some(Json::Object(labels)) = get(options, "Labels") else {
        return Vec::new();
    };
    labels
        .iter()
        .filter_map(|(k, v)| match v {
            Json::String(v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn strings<'a>(object: &'a [(String, Json)], name: &str) -> impl Iterator<Item = &'a str> {
    let items = match get(object, name) {
        Some(Json::Array(items)) => items.as_slice(),
        _ => &[],
    };
    items.iter().filter_map(|item| match item {
        Json::String(s) => Some(s.as_str()),
        _ => None,
    })
}

/// A name from a body as the proxy may put it into a path of its own: one
/// segment (a leading `/`, as in `/web`, is dropped), nothing a router would
/// clean or split. Anything else cannot name an owned object.
pub fn reference_name(name: &str) -> Option<&str> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.chars().any(char::is_control);
    ok.then_some(name)
}

/// dockerd answers that the proxy reads before passing them on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Passed on as it is.
    Plain,
    /// `POST /volumes/create`: dockerd answers with the existing volume when
    /// the name is taken, which may be another owner's.
    VolumeCreated,
    /// `GET /system/df`: every owner's containers and volumes.
    DiskUsage,
    /// `GET /networks/bridge` (a built-in network): its `Containers` are
    /// every owner's.
    BuiltinNetwork,
}

pub fn answer(method: &Method, route: &Route) -> Answer {
    match (method, route.pattern) {
        (&Method::POST, "/volumes/create") => Answer::VolumeCreated,
        (&Method::GET, "/system/df") => Answer::DiskUsage,
        (&Method::GET, "/networks/{}") if route.param().is_some_and(is_builtin_network) => {
            Answer::BuiltinNetwork
        }
        _ => Answer::Plain,
    }
}

/// A built-in network's answer without the endpoints of the containers on it.
pub fn hide_endpoints(network: &mut serde_json::Value) {
    if let Some(containers) = network.get_mut("Containers") {
        *containers = serde_json::Value::Object(serde_json::Map::new());
    }
}

/// The lists inside `GET /system/df`'s answer that hold other owners'
/// objects, cut down to owned ones (images and build cache stay shared).
pub fn filter_disk_usage(owner: &Owner, usage: &mut serde_json::Value) {
    for key in ["Containers", "Volumes"] {
        if let Some(serde_json::Value::Array(items)) = usage.get_mut(key) {
            items.retain(|item| owns(owner, item.get("Labels")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route::route;

    fn owner() -> Owner {
        ("ci.owner".into(), "job-1".into())
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn owns_needs_the_owner_key_with_the_owner_value() {
        assert!(owns(
            &owner(),
            Some(&json(r#"{"ci.owner":"job-1","a":"b"}"#))
        ));
        assert!(!owns(&owner(), Some(&json(r#"{"ci.owner":"job-2"}"#))));
        assert!(!owns(&owner(), Some(&json(r#"{"CI.OWNER":"job-1"}"#))));
        assert!(!owns(&owner(), Some(&json(r#"{"ci.owner":"job-1 "}"#))));
        assert!(!owns(&owner(), Some(&json(r#"{"ci.owner":null}"#))));
        assert!(!owns(&owner(), Some(&json(r#"{}"#))));
        assert!(!owns(&owner(), Some(&serde_json::Value::Null)));
        assert!(!owns(&owner(), None));
    }

    #[test]
    fn label_tells_mine_from_others_and_from_none() {
        assert_eq!(
            label(&owner(), Some(&json(r#"{"ci.owner":"job-1"}"#))),
            Label::Mine
        );
        assert_eq!(
            label(&owner(), Some(&json(r#"{"ci.owner":"job-2"}"#))),
            Label::Other
        );
        assert_eq!(
            label(&owner(), Some(&json(r#"{"ci.owner":""}"#))),
            Label::Other
        );
        assert_eq!(
            label(&owner(), Some(&json(r#"{"ci.owner":null}"#))),
            Label::Missing
        );
        assert_eq!(
            label(&owner(), Some(&json(r#"{"other":"x"}"#))),
            Label::Missing
        );
        assert_eq!(
            label(&owner(), Some(&serde_json::Value::Null)),
            Label::Missing
        );
        assert_eq!(label(&owner(), None), Label::Missing);
        assert_eq!(
            json(&used_by_owned_containers(&owner(), "4f2a")),
            json(r#"{"label":{"ci.owner=job-1":true},"volume":{"4f2a":true}}"#)
        );
    }

    #[test]
    fn not_found_uses_dockerds_wording() {
        let reject = Kind::Container.not_found("web");
        assert_eq!(reject.status, StatusCode::NOT_FOUND);
        assert_eq!(reject.message, "No such container: web");
        assert_eq!(
            Kind::Exec.not_found("e1").message,
            "No such exec instance: e1"
        );
        assert_eq!(Kind::Network.not_found("n").message, "network n not found");
        assert_eq!(Kind::Volume.not_found("v").message, "get v: no such volume");
    }

    fn target_of(method: Method, path: &str) -> Option<(Kind, String)> {
        let route = route(&method, &path.parse().unwrap()).unwrap();
        target(&route)
    }

    #[test]
    fn every_id_endpoint_names_its_object() {
        for (method, path, kind, id) in [
            (
                Method::GET,
                "/v1.41/containers/web/json",
                Kind::Container,
                "web",
            ),
            (
                Method::GET,
                "/containers/web/logs?follow=1",
                Kind::Container,
                "web",
            ),
            (
                Method::GET,
                "/containers/web/archive?path=/",
                Kind::Container,
                "web",
            ),
            (
                Method::PUT,
                "/containers/web/archive?path=/",
                Kind::Container,
                "web",
            ),
            (
                Method::GET,
                "/containers/web/export",
                Kind::Container,
                "web",
            ),
            (Method::POST, "/containers/web/exec", Kind::Container, "web"),
            (
                Method::POST,
                "/containers/web/attach",
                Kind::Container,
                "web",
            ),
            (
                Method::POST,
                "/containers/web/update",
                Kind::Container,
                "web",
            ),
            (
                Method::POST,
                "/containers/web/rename?name=x",
                Kind::Container,
                "web",
            ),
            (Method::DELETE, "/containers/web", Kind::Container, "web"),
            (Method::POST, "/exec/e1/start", Kind::Exec, "e1"),
            (Method::POST, "/exec/e1/resize", Kind::Exec, "e1"),
            (Method::GET, "/exec/e1/json", Kind::Exec, "e1"),
            (Method::GET, "/networks/n1", Kind::Network, "n1"),
            (Method::DELETE, "/networks/n1", Kind::Network, "n1"),
            (Method::POST, "/networks/n1/connect", Kind::Network, "n1"),
            (Method::POST, "/networks/n1/disconnect", Kind::Network, "n1"),
            (Method::GET, "/volumes/v1", Kind::Volume, "v1"),
            (Method::DELETE, "/volumes/v1", Kind::Volume, "v1"),
        ] {
            assert_eq!(
                target_of(method.clone(), path),
                Some((kind, id.to_string())),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn lists_creates_and_images_name_no_object() {
        for (method, path) in [
            (Method::GET, "/containers/json"),
            (Method::POST, "/containers/create"),
            (Method::POST, "/containers/prune"),
            (Method::GET, "/networks"),
            (Method::POST, "/networks/create"),
            (Method::GET, "/volumes"),
            (Method::POST, "/volumes/create"),
            (Method::GET, "/images/busybox/json"),
            (Method::DELETE, "/images/busybox"),
            (Method::GET, "/_ping"),
        ] {
            assert_eq!(target_of(method.clone(), path), None, "{method} {path}");
        }
    }

    #[test]
    fn lists_prunes_and_events_are_filtered() {
        for (method, path, filtered) in [
            (Method::GET, "/containers/json", true),
            (Method::GET, "/networks", true),
            (Method::GET, "/volumes", true),
            (Method::GET, "/events", true),
            (Method::POST, "/containers/prune", true),
            (Method::POST, "/networks/prune", true),
            (Method::POST, "/volumes/prune", true),
            (Method::GET, "/images/json", false),
            (Method::POST, "/images/prune", false),
            (Method::GET, "/containers/web/json", false),
        ] {
            let route = route(&method, &path.parse().unwrap()).unwrap();
            assert_eq!(is_filtered(&method, &route), filtered, "{method} {path}");
        }
    }

    fn merged(given: Option<&str>) -> serde_json::Value {
        json(&with_owner_filter(&owner(), given).unwrap())
    }

    #[test]
    fn the_owner_filter_is_added_to_no_filters() {
        let expected = json(r#"{"label":{"ci.owner=job-1":true}}"#);
        assert_eq!(merged(None), expected);
        assert_eq!(merged(Some("")), expected);
        assert_eq!(merged(Some("{}")), expected);
    }

    #[test]
    fn the_owner_filter_is_merged_with_the_clients_in_both_forms() {
        assert_eq!(
            merged(Some(r#"{"label":["a=b"],"status":["running","exited"]}"#)),
            json(
                r#"{"label":{"a=b":true,"ci.owner=job-1":true},"status":{"exited":true,"running":true}}"#
            )
        );
        assert_eq!(
            merged(Some(r#"{"label":{"a=b":true},"name":{"web":true}}"#)),
            json(r#"{"label":{"a=b":true,"ci.owner=job-1":true},"name":{"web":true}}"#)
        );
        assert_eq!(
            merged(Some(r#"{"label":null,"dangling":{"true":false}}"#)),
            json(r#"{"label":{"ci.owner=job-1":true},"dangling":{"true":true}}"#)
        );
    }

    #[test]
    fn a_client_cannot_replace_or_negate_the_owner_filter() {
        // Another owner's value is ANDed, so it matches nothing rather than theirs.
        assert_eq!(
            merged(Some(r#"{"label":["ci.owner=job-2"]}"#)),
            json(r#"{"label":{"ci.owner=job-1":true,"ci.owner=job-2":true}}"#)
        );
        // The last duplicate key wins in dockerd's Go map too; either way ours is in.
        assert_eq!(
            merged(Some(r#"{"label":["x=1"],"label":[]}"#)),
            json(r#"{"label":{"ci.owner=job-1":true}}"#)
        );
        // Keys are exact: `Label` is another (invalid) filter, not the label filter.
        assert_eq!(
            merged(Some(r#"{"Label":["x"]}"#)),
            json(r#"{"Label":{"x":true},"label":{"ci.owner=job-1":true}}"#)
        );
    }

    #[test]
    fn malformed_filters_are_refused() {
        for given in [
            "[]",
            "\"label\"",
            "{",
            r#"{"label":"a=b"}"#,
            r#"{"label":[1]}"#,
            r#"{"label":{"a":"yes"}}"#,
            r#"{"label":["a"],"status":{"running":true}}"#,
        ] {
            let reject = with_owner_filter(&owner(), Some(given)).unwrap_err();
            assert_eq!(reject.rule, "filters", "{given}");
            assert_eq!(reject.status, StatusCode::BAD_REQUEST);
        }
    }

    fn refs(endpoint: Endpoint, body: &str) -> Vec<Reference> {
        references(endpoint, &Json::parse(body.as_bytes()).unwrap())
    }

    fn volume(name: &str) -> Reference {
        Reference::Volume {
            name: name.into(),
            labels: Vec::new(),
        }
    }

    #[test]
    fn create_references_are_found_everywhere_they_hide() {
        let body = r#"{"Image":"b","HostConfig":{
            "VolumesFrom":["data:ro","other"],
            "Links":["/db:database","cache"],
            "NetworkMode":"backend",
            "Binds":["named:/n:ro","/anonymous","named:/again"],
            "Mounts":[
                {"Type":"volume","Source":"m1","Target":"/m","VolumeOptions":{"Labels":{"k":"v"}}},
                {"Type":"volume","Target":"/anon"},
                {"Type":"tmpfs","Target":"/t"}
            ]},
            "NetworkingConfig":{"EndpointsConfig":{"frontend":{"Links":["api:a"]},"bridge":{}}}}"#;
        assert_eq!(
            refs(Endpoint::ContainerCreate, body),
            vec![
                Reference::Container("data".into()),
                Reference::Container("other".into()),
                Reference::Container("/db".into()),
                Reference::Container("cache".into()),
                Reference::Network("backend".into()),
                volume("named"),
                Reference::Volume {
                    name: "m1".into(),
                    labels: vec![("k".into(), "v".into())]
                },
                Reference::Network("frontend".into()),
                Reference::Container("api".into()),
            ]
        );
    }

    #[test]
    fn builtin_networks_and_plain_creates_name_nothing() {
        for body in [
            r#"{"Image":"b"}"#,
            r#"{"Image":"b","HostConfig":{"NetworkMode":"default"}}"#,
            r#"{"Image":"b","HostConfig":{"NetworkMode":"bridge","Binds":["/data"]}}"#,
            r#"{"Image":"b","HostConfig":{"NetworkMode":"none"},"NetworkingConfig":{"EndpointsConfig":{"none":{}}}}"#,
            r#"{"Image":"b","HostConfig":{"Binds":null,"VolumesFrom":null,"Links":null}}"#,
        ] {
            assert_eq!(refs(Endpoint::ContainerCreate, body), vec![], "{body}");
        }
    }

    #[test]
    fn connect_and_disconnect_name_their_container() {
        assert_eq!(
            refs(
                Endpoint::NetworkConnect,
                r#"{"Container":"web","EndpointConfig":{"Links":["db:d"]}}"#
            ),
            vec![
                Reference::Container("web".into()),
                Reference::Container("db".into())
            ]
        );
        assert_eq!(
            refs(
                Endpoint::NetworkDisconnect,
                r#"{"Container":"web","Force":true}"#
            ),
            vec![Reference::Container("web".into())]
        );
    }

    #[test]
    fn reference_names_are_single_segments() {
        assert_eq!(reference_name("/web"), Some("web"));
        assert_eq!(reference_name("web-1.a_b"), Some("web-1.a_b"));
        for bad in ["", "/", "..", "a/b", "a\n"] {
            assert_eq!(reference_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn answers_read_before_passing_on() {
        for (method, path, expected) in [
            (Method::POST, "/volumes/create", Answer::VolumeCreated),
            (Method::GET, "/system/df", Answer::DiskUsage),
            (Method::GET, "/networks/bridge", Answer::BuiltinNetwork),
            (Method::GET, "/networks/mine", Answer::Plain),
            (Method::DELETE, "/networks/bridge", Answer::Plain),
            (Method::GET, "/containers/json", Answer::Plain),
        ] {
            let route = route(&method, &path.parse().unwrap()).unwrap();
            assert_eq!(answer(&method, &route), expected, "{method} {path}");
        }
        let mut bridge =
            json(r#"{"Name":"bridge","Containers":{"c1":{"Name":"theirs"}},"IPAM":{}}"#);
        hide_endpoints(&mut bridge);
        assert_eq!(
            bridge,
            json(r#"{"Name":"bridge","Containers":{},"IPAM":{}}"#)
        );
    }

    #[test]
    fn disk_usage_keeps_owned_containers_and_volumes_and_every_image() {
        let mut usage = json(
            r#"{"Images":[{"Id":"i1"}],
                "Containers":[{"Id":"c1","Labels":{"ci.owner":"job-1"}},{"Id":"c2","Labels":{"ci.owner":"job-2"}}],
                "Volumes":[{"Name":"v1","Labels":null},{"Name":"v2","Labels":{"ci.owner":"job-1"}}]}"#,
        );
        filter_disk_usage(&owner(), &mut usage);
        assert_eq!(
            usage,
            json(
                r#"{"Images":[{"Id":"i1"}],
                    "Containers":[{"Id":"c1","Labels":{"ci.owner":"job-1"}}],
                    "Volumes":[{"Name":"v2","Labels":{"ci.owner":"job-1"}}]}"#
            )
        );
    }
}
