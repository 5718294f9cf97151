//! Ownership in standalone mode (`--owner-label key=value`): the pure half.
//! Two CI jobs behind two proxies on one daemon must not see or touch each
//! other's containers, networks or volumes. Every object the proxy lets a
//! tenant name must carry the owner label; lists, prunes and events get it as
//! a label filter. This module decides, from what dockerd answered, and finds
//! what a request names; `proxy::lookups` does the asking.
//!
//! Images and the build cache stay shared: pulled images carry no labels
//! (only images the tenant builds get them), so filtering images by owner
//! would hide every pulled base image, and refusing them would break
//! `docker run busybox`. A tenant can therefore see and use images other
//! jobs pulled or built, but not move or remove their tags ([`super::images`]).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;

use super::{value, Reject};
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
    (route.endpoint == Endpoint::Commit)
        .then(|| route.query.first("container").unwrap_or("").to_string())
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
    /// A container whose mounts the new one copies (`HostConfig.VolumesFrom`,
    /// the name without its `:ro`/`:rw`): looked up in every mode, see
    /// [`check_volumes_from_source`].
    VolumesFrom(String),
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
            refs.push(Reference::VolumesFrom(name.to_string()));
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

/// The mount types a `VolumesFrom` source may have: a named or anonymous
/// volume is shared as intended, and dockerd copies a tmpfs mount as a fresh,
/// empty one (or fails). Everything else is refused: `bind` and `npipe` copy a
/// host path, `image` the path of the source's own image layer, `cluster` a
/// swarm volume; an unknown or missing type is not known to be safe.
const SHAREABLE_MOUNTS: &[&str] = &["volume", "tmpfs"];

/// A named volume a container mounts, as `GET /volumes/{name}` shows it:
/// the local driver without options. Tenants cannot make any other kind
/// through the proxy (volume create refuses driver options), so such a
/// volume is the host's or an operator's, and `type=none,o=bind,device=/etc`
/// is a host bind under a volume's name.
pub fn check_mounted_volume(name: &str, volume: &serde_json::Value) -> Result<(), Reject> {
    use serde_json::Value;
    let driver = volume.get("Driver").and_then(Value::as_str);
    let options = volume.get("Options").filter(|o| !o.is_null());
    let plain = options.is_none_or(|o| o.as_object().is_some_and(|o| o.is_empty()));
    if driver == Some("local") && plain {
        return Ok(());
    }
    Err(Reject::forbidden(
        "volume-options",
        &format!("mounting volume {name:?}"),
        format!(
            "it was made with the {} driver and the options {}, which tenants cannot give \
             (the local driver's options mount host paths or devices)",
            driver.unwrap_or("unknown"),
            options.map_or("none".into(), ToString::to_string)
        ),
    ))
}

/// The array at `pointer` in an inspect answer; empty when there is none.
fn array_at<'a>(value: &'a serde_json::Value, pointer: &str) -> &'a [serde_json::Value] {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// Whether a container, as `GET /containers/{id}/json` shows it, may be a
/// `VolumesFrom` source. dockerd copies every mount point of the source, bind
/// mounts included, so a container the tenant did not create (a sidecar an
/// operator started in the box with `-v /etc:/hostetc`, or a host container
/// behind a standalone proxy) would hand its host paths to the tenant. Its
/// `Mounts` are what dockerd copies; `HostConfig.Binds` and `.Mounts` are
/// read too, so that an answer without `Mounts` cannot hide a bind.
pub fn check_volumes_from_source(name: &str, container: &serde_json::Value) -> Result<(), Reject> {
    use serde_json::Value;
    let refuse = |why: String| {
        Reject::forbidden(
            "volumes-from",
            &format!("--volumes-from {name}"),
            format!("{why}; only containers whose mounts are all volumes can be shared"),
        )
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or("").to_string();
    let Some(mounts) = container.get("Mounts").and_then(Value::as_array) else {
        return Err(refuse(format!(
            "dockerd did not list the mounts of container {name:?}"
        )));
    };
    let declared = array_at(container, "/HostConfig/Mounts");
    for mount in mounts.iter().chain(declared) {
        let kind = text(mount.get("Type"));
        if !SHAREABLE_MOUNTS.contains(&kind.as_str()) {
            let target = text(mount.get("Destination").or_else(|| mount.get("Target")));
            return Err(refuse(format!(
                "container {name:?} has a mount of type {kind:?} at {target:?}, which the new container would share"
            )));
        }
    }
    let binds = array_at(container, "/HostConfig/Binds");
    for bind in binds {
        let Some(bind) = bind.as_str() else {
            return Err(refuse(format!(
                "dockerd listed a bind of container {name:?} that is not a string"
            )));
        };
        // `source:destination[:options]`: a source with a `/` is a host path
        // (a volume name cannot hold one).
        let mut parts = bind.split(':');
        let source = parts.next().unwrap_or_default();
        if parts.next().is_some() && source.contains('/') {
            return Err(refuse(format!(
                "container {name:?} bind-mounts the host path {source:?}, which the new container would share"
            )));
        }
    }
    Ok(())
}

/// The full ids the proxy checked, by the name the body gave: each
/// reference is forwarded as the object that was checked, so that a rename
/// (or a removal and a new object of the same name) between the check and
/// dockerd's use cannot point it at another object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `VolumesFrom` sources, checked for their mounts (and owner).
    pub volumes_from: Vec<(String, String)>,
    /// Other containers (`Links`, connect's and disconnect's `Container`).
    pub containers: Vec<(String, String)>,
    pub networks: Vec<(String, String)>,
}

impl Pinned {
    fn find<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.as_str())
    }
}

/// Rewrites the references of a checked (canonical) body to the full ids in
/// `pinned`; names `pinned` does not hold (the built-in networks, and in box
/// mode everything but `VolumesFrom`) stay as they are. `path_network` is the
/// checked id of the network a connect's path names (owner mode only).
///
/// - `VolumesFrom` `name[:mode]` becomes `id[:mode]`.
/// - `Links` `name[:alias]` becomes `id:alias`, with the alias dockerd's
///   `opts.ParseLink` would have taken from the original (the name itself
///   when there is none, the last path element of `/name:/parent/alias`):
///   dockerd resolves the name once, with `GetContainer`, which takes a full
///   id, and keeps the link under the alias. A malformed link is left for
///   dockerd to refuse.
/// - `NetworkMode` and the `EndpointsConfig` keys become the network's id,
///   and each such endpoint gets `NetworkID` = that id: dockerd stores the
///   endpoint under the network's name and resolves it again at every start
///   (`getNetworkID` prefers `NetworkID`), so without it a network removed
///   and re-created under the same name by another owner would be joined.
///   A `NetworkMode` network without an endpoint gets one for the same
///   reason when the body has no other endpoints (with others, dockerd does
///   not join the `NetworkMode` network, and neither may the proxy).
/// - Connect's and disconnect's `Container` becomes its id; connect's
///   `EndpointConfig.NetworkID` becomes the path's network id.
/// - Endpoint `Links` (`EndpointsConfig.*.Links`, connect's
///   `EndpointConfig.Links`) stay names: they are DNS aliases (`alias` ->
///   `name`) the embedded resolver looks up on each query among the
///   container's own networks, not containers dockerd resolves; a full id is
///   no DNS name, so an id would break them. In owner mode every endpoint on
///   those networks is owned (joining needs an owned network and an owned
///   container), so a name there cannot reach another owner's container.
pub fn pin(
    endpoint: Endpoint,
    body: &mut Json,
    pinned: &Pinned,
    path_network: Option<&str>,
) -> Result<(), Reject> {
    let Json::Object(body) = body else {
        return Ok(());
    };
    match endpoint {
        Endpoint::ContainerCreate => pin_create(body, pinned),
        Endpoint::NetworkConnect | Endpoint::NetworkDisconnect => {
            if let Some((_, Json::String(container))) =
                body.iter_mut().find(|(k, _)| k == "Container")
            {
                if let Some(id) = Pinned::find(&pinned.containers, container) {
                    *container = id.to_string();
                }
            }
            match path_network {
                Some(id) if endpoint == Endpoint::NetworkConnect && !is_builtin_network(id) => {
                    let settings = object_entry(body, "EndpointConfig");
                    value::set(settings, "NetworkID", Json::String(id.to_string()));
                }
                _ => {}
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn pin_create(body: &mut Vec<(String, Json)>, pinned: &Pinned) -> Result<(), Reject> {
    let mut mode_network = None;
    if let Some((_, Json::Object(hc))) = body.iter_mut().find(|(k, _)| k == "HostConfig") {
        for (key, value) in hc.iter_mut() {
            match (key.as_str(), value) {
                ("VolumesFrom", Json::Array(specs)) => {
                    for spec in specs {
                        let Json::String(spec) = spec else { continue };
                        let (name, mode) = match spec.split_once(':') {
                            Some((name, mode)) => (name, Some(mode)),
                            None => (spec.as_str(), None),
                        };
                        if let Some(id) = Pinned::find(&pinned.volumes_from, name) {
                            *spec = match mode {
                                Some(mode) => format!("{id}:{mode}"),
                                None => id.to_string(),
                            };
                        }
                    }
                }
                ("Links", Json::Array(links)) => {
                    for link in links {
                        let Json::String(link) = link else { continue };
                        let name = link.split(':').next().unwrap_or_default();
                        if let (Some(id), Some(alias)) =
                            (Pinned::find(&pinned.containers, name), link_alias(link))
                        {
                            *link = format!("{id}:{alias}");
                        }
                    }
                }
                ("NetworkMode", Json::String(mode)) => {
                    if let Some(id) = Pinned::find(&pinned.networks, mode) {
                        *mode = id.to_string();
                        mode_network = Some(id.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let networking = body.iter_mut().find(|(k, _)| k == "NetworkingConfig");
    let endpoints = match networking {
        Some((_, Json::Object(networking))) => networking
            .iter_mut()
            .find(|(k, _)| k == "EndpointsConfig")
            .and_then(|(_, v)| match v {
                Json::Object(endpoints) => Some(endpoints),
                _ => None,
            }),
        _ => None,
    };
    let has_endpoints = endpoints.as_ref().is_some_and(|e| !e.is_empty());
    if let Some(endpoints) = endpoints {
        let mut seen: Vec<String> = Vec::with_capacity(endpoints.len());
        for (network, settings) in endpoints.iter_mut() {
            if let Some(id) = Pinned::find(&pinned.networks, network) {
                *network = id.to_string();
                if !matches!(settings, Json::Object(_)) {
                    *settings = Json::Object(Vec::new());
                }
                if let Json::Object(settings) = settings {
                    value::set(settings, "NetworkID", Json::String(id.to_string()));
                }
            }
            if seen.contains(network) {
                return Err(Reject::bad_request(
                    "owner",
                    format!("NetworkingConfig.EndpointsConfig names the network {network} twice"),
                ));
            }
            seen.push(network.clone());
        }
    }
    if let (Some(id), false) = (mode_network, has_endpoints) {
        let networking = object_entry(body, "NetworkingConfig");
        let endpoints = object_entry(networking, "EndpointsConfig");
        let settings = vec![("NetworkID".to_string(), Json::String(id.clone()))];
        value::set(endpoints, &id, Json::Object(settings));
    }
    Ok(())
}

/// The alias dockerd's `opts.ParseLink` takes from a link: the whole link
/// when it has no `:`, the last path element of the alias when the name
/// starts with `/`, else the alias; `None` when dockerd refuses the link.
fn link_alias(link: &str) -> Option<&str> {
    let parts: Vec<&str> = link.split(':').collect();
    match parts.as_slice() {
        [""] => None,
        [_] => Some(link),
        [name, alias] if name.starts_with('/') => alias.rsplit('/').next(),
        [_, alias] => Some(alias),
        _ => None,
    }
}

/// The object under `name`, made one (replacing `null` or absence).
fn object_entry<'a>(
    object: &'a mut Vec<(String, Json)>,
    name: &str,
) -> &'a mut Vec<(String, Json)> {
    if !matches!(get(object, name), Some(Json::Object(_))) {
        value::set(object, name, Json::Object(Vec::new()));
    }
    match object.iter_mut().find(|(k, _)| k == name) {
        Some((_, Json::Object(inner))) => inner,
        _ => unreachable!("{name} was just made an object"),
    }
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

pub fn answer(route: &Route) -> Answer {
    match route.endpoint {
        Endpoint::VolumeCreate => Answer::VolumeCreated,
        Endpoint::DiskUsage => Answer::DiskUsage,
        Endpoint::NetworkInspect if route.param().is_some_and(is_builtin_network) => {
            Answer::BuiltinNetwork
        }
        _ => Answer::Plain,
    }
}

/// A built-in network's answer without the endpoints of the containers on
/// it, nor (API 1.52) its `Status`, whose `IPsInUse` counts every owner's.
pub fn hide_endpoints(network: &mut serde_json::Value) {
    if let Some(containers) = network.get_mut("Containers") {
        *containers = serde_json::Value::Object(serde_json::Map::new());
    }
    if let Some(network) = network.as_object_mut() {
        network.remove("Status");
    }
}

/// The lists inside `GET /system/df`'s answer that hold other owners'
/// objects, cut down to owned ones (images and build cache stay shared).
/// From API 1.52 the answer also has `ContainerUsage` and `VolumeUsage`
/// (moby docker-v29.7.2 `daemon/server/router/system/system_routes.go`):
/// their `Items` are cut the same way and their totals counted again from
/// what is left, as dockerd counts them (`daemon/disk_usage.go`).
pub fn filter_disk_usage(owner: &Owner, usage: &mut serde_json::Value) {
    use serde_json::Value;
    for key in ["Containers", "Volumes"] {
        if let Some(Value::Array(items)) = usage.get_mut(key) {
            items.retain(|item| owns(owner, item.get("Labels")));
        }
    }
    let size = |item: &Value, pointer: &str| item.pointer(pointer).and_then(Value::as_i64);
    // moby's API changelog spells them `ContainersUsage` and `VolumesUsage`;
    // the daemon writes the singular. Both are cut, whichever a daemon sends.
    for key in ["ContainerUsage", "ContainersUsage"] {
        if let Some(containers) = usage.get_mut(key) {
            recount_usage(owner, containers, |c| {
                let state = c.get("State").and_then(Value::as_str);
                let active = matches!(state, Some("running" | "paused" | "restarting"));
                (size(c, "/SizeRw").unwrap_or(0), active)
            });
        }
    }
    for key in ["VolumeUsage", "VolumesUsage"] {
        if let Some(volumes) = usage.get_mut(key) {
            recount_usage(owner, volumes, |v| match size(v, "/UsageData/Size") {
                None | Some(-1) => (0, true),
                Some(bytes) => (bytes, size(v, "/UsageData/RefCount") != Some(0)),
            });
        }
    }
}

/// Keeps the owned `Items` of a `*Usage` object and sets its totals from
/// them; `measure` gives an item's size and whether it is in use.
fn recount_usage(
    owner: &Owner,
    usage: &mut serde_json::Value,
    measure: impl Fn(&serde_json::Value) -> (i64, bool),
) {
    use serde_json::Value;
    let Some(usage) = usage.as_object_mut() else {
        return;
    };
    let mut items = match usage.remove("Items") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    items.retain(|item| owns(owner, item.get("Labels")));
    let (mut active, mut total_size, mut reclaimable) = (0i64, 0i64, 0i64);
    for (bytes, in_use) in items.iter().map(&measure) {
        total_size += bytes;
        match in_use {
            true => active += 1,
            false => reclaimable += bytes,
        }
    }
    usage.insert("TotalCount".into(), items.len().into());
    usage.insert("ActiveCount".into(), active.into());
    usage.insert("TotalSize".into(), total_size.into());
    usage.insert("Reclaimable".into(), reclaimable.into());
    usage.insert("Items".into(), Value::Array(items));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route::route;
    use http::Method;

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
            (Method::POST, "/images/prune", true),
            (Method::GET, "/images/json", false),
            (Method::GET, "/containers/web/json", false),
        ] {
            let route = route(&method, &path.parse().unwrap()).unwrap();
            assert_eq!(
                route.endpoint == Endpoint::Listed,
                filtered,
                "{method} {path}"
            );
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
                Reference::VolumesFrom("data".into()),
                Reference::VolumesFrom("other".into()),
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

    fn pinned() -> Pinned {
        let ids = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, id)| (n.to_string(), id.to_string()))
                .collect()
        };
        Pinned {
            volumes_from: ids(&[("data", "d-full"), ("/other", "o-full")]),
            containers: ids(&[("db", "db-full"), ("/db", "db-full"), ("api", "api-full")]),
            networks: ids(&[
                ("backend", "n-back"),
                ("frontend", "n-front"),
                ("n-ba", "n-back"),
            ]),
        }
    }

    fn pinned_body(
        endpoint: Endpoint,
        body: &str,
        path_network: Option<&str>,
    ) -> serde_json::Value {
        let mut body = Json::parse(body.as_bytes()).unwrap();
        pin(endpoint, &mut body, &pinned(), path_network).unwrap();
        serde_json::from_slice(&body.to_vec()).unwrap()
    }

    #[test]
    fn create_references_are_forwarded_by_the_checked_ids() {
        let body = r#"{"Image":"b","HostConfig":{
            "VolumesFrom":["data:ro","/other","data:rw","unpinned:ro"],
            "Links":["db","/db","db:database","/db:/web/database","api:a:b",""],
            "NetworkMode":"backend"},
            "NetworkingConfig":{"EndpointsConfig":{
                "backend":{"Aliases":["x"],"NetworkID":"theirs","Links":["db:d"]},
                "frontend":null,
                "bridge":{"NetworkID":"kept"}}}}"#;
        let forwarded = pinned_body(Endpoint::ContainerCreate, body, None);
        assert_eq!(
            forwarded["HostConfig"],
            json(
                r#"{"VolumesFrom":["d-full:ro","o-full","d-full:rw","unpinned:ro"],
                    "Links":["db-full:db","db-full:/db","db-full:database","db-full:database","api:a:b",""],
                    "NetworkMode":"n-back"}"#
            )
        );
        assert_eq!(
            forwarded["NetworkingConfig"],
            json(
                r#"{"EndpointsConfig":{
                    "n-back":{"Aliases":["x"],"NetworkID":"n-back","Links":["db:d"]},
                    "n-front":{"NetworkID":"n-front"},
                    "bridge":{"NetworkID":"kept"}}}"#
            ),
            "keys and NetworkID are the checked ids; endpoint links stay DNS names"
        );
    }

    #[test]
    fn the_network_mode_network_gets_a_pinned_endpoint_only_when_alone() {
        let alone = pinned_body(
            Endpoint::ContainerCreate,
            r#"{"HostConfig":{"NetworkMode":"backend"}}"#,
            None,
        );
        assert_eq!(
            alone["NetworkingConfig"],
            json(r#"{"EndpointsConfig":{"n-back":{"NetworkID":"n-back"}}}"#)
        );
        let empty = pinned_body(
            Endpoint::ContainerCreate,
            r#"{"HostConfig":{"NetworkMode":"backend"},"NetworkingConfig":{"EndpointsConfig":{}}}"#,
            None,
        );
        assert_eq!(empty["NetworkingConfig"], alone["NetworkingConfig"]);
        // dockerd joins only the listed endpoints then; so does the body.
        let others = pinned_body(
            Endpoint::ContainerCreate,
            r#"{"HostConfig":{"NetworkMode":"backend"},"NetworkingConfig":{"EndpointsConfig":{"frontend":{}}}}"#,
            None,
        );
        assert_eq!(
            others["NetworkingConfig"],
            json(r#"{"EndpointsConfig":{"n-front":{"NetworkID":"n-front"}}}"#)
        );
        let builtin = pinned_body(
            Endpoint::ContainerCreate,
            r#"{"HostConfig":{"NetworkMode":"bridge"}}"#,
            None,
        );
        assert_eq!(builtin, json(r#"{"HostConfig":{"NetworkMode":"bridge"}}"#));
    }

    #[test]
    fn each_of_several_networks_is_named_and_pinned_with_its_own_settings() {
        // API 1.44: a create joins every network in EndpointsConfig at once.
        let body = r#"{"HostConfig":{"NetworkMode":"backend"},"NetworkingConfig":{"EndpointsConfig":{
            "backend":{"GwPriority":10,"MacAddress":"02:42:ac:11:00:09"},
            "frontend":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"}}}}}"#;
        let refs = references(
            Endpoint::ContainerCreate,
            &Json::parse(body.as_bytes()).unwrap(),
        );
        assert_eq!(
            refs,
            vec![
                Reference::Network("backend".into()),
                Reference::Network("frontend".into())
            ]
        );
        let forwarded = pinned_body(Endpoint::ContainerCreate, body, None);
        assert_eq!(
            forwarded["NetworkingConfig"],
            json(
                r#"{"EndpointsConfig":{
                    "n-back":{"GwPriority":10,"MacAddress":"02:42:ac:11:00:09","NetworkID":"n-back"},
                    "n-front":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.disable_ipv6=1"},"NetworkID":"n-front"}}}"#
            )
        );
        assert_eq!(forwarded["HostConfig"]["NetworkMode"], "n-back");
    }

    #[test]
    fn two_endpoint_keys_for_one_network_are_refused() {
        let mut body =
            Json::parse(br#"{"NetworkingConfig":{"EndpointsConfig":{"backend":{},"n-ba":{}}}}"#)
                .unwrap();
        let reject = pin(Endpoint::ContainerCreate, &mut body, &pinned(), None).unwrap_err();
        assert_eq!(reject.status, StatusCode::BAD_REQUEST, "{reject:?}");
    }

    #[test]
    fn connect_and_disconnect_are_forwarded_by_the_checked_ids() {
        assert_eq!(
            pinned_body(
                Endpoint::NetworkConnect,
                r#"{"Container":"db","EndpointConfig":{"NetworkID":"theirs","Links":["api:a"]}}"#,
                Some("n-back"),
            ),
            json(
                r#"{"Container":"db-full","EndpointConfig":{"NetworkID":"n-back","Links":["api:a"]}}"#
            )
        );
        assert_eq!(
            pinned_body(
                Endpoint::NetworkConnect,
                r#"{"Container":"db"}"#,
                Some("n-back")
            ),
            json(r#"{"Container":"db-full","EndpointConfig":{"NetworkID":"n-back"}}"#)
        );
        assert_eq!(
            pinned_body(
                Endpoint::NetworkConnect,
                r#"{"Container":"db"}"#,
                Some("bridge")
            ),
            json(r#"{"Container":"db-full"}"#)
        );
        assert_eq!(
            pinned_body(Endpoint::NetworkConnect, r#"{"Container":"db"}"#, None),
            json(r#"{"Container":"db-full"}"#),
            "without an owner the path network is not pinned"
        );
        assert_eq!(
            pinned_body(
                Endpoint::NetworkDisconnect,
                r#"{"Container":"/db","Force":true}"#,
                Some("n-back")
            ),
            json(r#"{"Container":"db-full","Force":true}"#)
        );
    }

    #[test]
    fn link_aliases_are_read_as_dockerds_parse_link_reads_them() {
        for (link, alias) in [
            ("db", Some("db")),
            ("/db", Some("/db")),
            ("db:alias", Some("alias")),
            ("/db:/web/alias", Some("alias")),
            ("/db:alias", Some("alias")),
            ("db:/web/alias", Some("/web/alias")),
            ("db:", Some("")),
            ("", None),
            ("a:b:c", None),
        ] {
            assert_eq!(link_alias(link), alias, "{link:?}");
        }
    }

    #[test]
    fn a_volumes_from_source_may_only_have_volumes() {
        for container in [
            r#"{"Mounts":[]}"#,
            r#"{"Mounts":[{"Type":"volume","Name":"v","Destination":"/v"},{"Type":"tmpfs","Destination":"/t"}],
                "HostConfig":{"Binds":["v:/v","/anon"],"Mounts":[{"Type":"tmpfs","Target":"/t"}]}}"#,
            r#"{"Mounts":[{"Type":"volume","Destination":"/v"}],"HostConfig":{"Binds":null,"Mounts":null}}"#,
        ] {
            assert_eq!(
                check_volumes_from_source("src", &json(container)),
                Ok(()),
                "{container}"
            );
        }
        for container in [
            r#"{"Mounts":[{"Type":"bind","Source":"/etc","Destination":"/hostetc"}]}"#,
            r#"{"Mounts":[{"Type":"volume","Destination":"/v"},{"Type":"npipe","Destination":"/p"}]}"#,
            r#"{"Mounts":[{"Type":"image","Source":"busybox","Destination":"/i"}]}"#,
            r#"{"Mounts":[{"Type":"cluster","Destination":"/c"}]}"#,
            r#"{"Mounts":[{"Destination":"/untyped"}]}"#,
            r#"{"Mounts":[{"Type":"BIND","Destination":"/b"}]}"#,
            r#"{"Mounts":[],"HostConfig":{"Binds":["/etc:/hostetc:ro"]}}"#,
            r#"{"Mounts":[],"HostConfig":{"Binds":[1]}}"#,
            r#"{"Mounts":[],"HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}"#,
            r#"{"Mounts":null}"#,
            r#"{"Id":"x"}"#,
        ] {
            let reject = check_volumes_from_source("src", &json(container)).unwrap_err();
            assert_eq!(reject.status, StatusCode::FORBIDDEN, "{container}");
            assert_eq!(reject.rule, "volumes-from", "{container}");
            assert!(
                reject
                    .message
                    .starts_with("dindbox: --volumes-from src is not allowed: "),
                "{}",
                reject.message
            );
        }
    }

    #[test]
    fn only_plain_local_volumes_are_mounted_without_an_owner() {
        for plain in [
            json(r#"{"Driver":"local","Options":null}"#),
            json(r#"{"Driver":"local","Options":{}}"#),
            json(r#"{"Driver":"local"}"#),
        ] {
            assert!(check_mounted_volume("v", &plain).is_ok(), "{plain}");
        }
        for hostile in [
            json(r#"{"Driver":"local","Options":{"type":"none","o":"bind","device":"/etc"}}"#),
            json(r#"{"Driver":"local","Options":{"type":"ext4","device":"/dev/sda1"}}"#),
            json(r#"{"Driver":"sshfs","Options":null}"#),
            json(r#"{"Options":null}"#),
        ] {
            assert_eq!(
                check_mounted_volume("v", &hostile).unwrap_err().rule,
                "volume-options",
                "{hostile}"
            );
        }
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
            assert_eq!(answer(&route), expected, "{method} {path}");
        }
        let mut bridge = json(
            r#"{"Name":"bridge","Containers":{"c1":{"Name":"theirs"}},"IPAM":{},
                "Status":{"IPAM":{"Subnets":{"172.17.0.0/16":{"IPsInUse":7}}}}}"#,
        );
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

    #[test]
    fn disk_usage_from_api_1_52_is_cut_and_counted_again() {
        let mut usage = json(
            r#"{"Containers":[],"Volumes":[],
                "ImageUsage":{"TotalCount":1,"Items":[{"Id":"i1"}]},
                "ContainerUsage":{"ActiveCount":2,"TotalCount":3,"TotalSize":111,"Reclaimable":101,"Items":[
                    {"Id":"c1","State":"running","SizeRw":10,"Labels":{"ci.owner":"job-1"}},
                    {"Id":"c2","State":"exited","SizeRw":1,"Labels":{"ci.owner":"job-1"}},
                    {"Id":"c3","State":"exited","SizeRw":100,"Labels":{"ci.owner":"job-2"}}]},
                "VolumeUsage":{"ActiveCount":1,"TotalCount":3,"TotalSize":7,"Reclaimable":7,"Items":[
                    {"Name":"v1","Labels":{"ci.owner":"job-1"},"UsageData":{"Size":5,"RefCount":0}},
                    {"Name":"v2","Labels":{"ci.owner":"job-2"},"UsageData":{"Size":2,"RefCount":0}},
                    {"Name":"v3","Labels":{"ci.owner":"job-1"},"UsageData":{"Size":-1,"RefCount":-1}}]}}"#,
        );
        filter_disk_usage(&owner(), &mut usage);
        let ids = |usage: &serde_json::Value, key: &str| -> Vec<String> {
            usage[key]["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    i.get("Id")
                        .or(i.get("Name"))
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .into()
                })
                .collect()
        };
        assert_eq!(ids(&usage, "ContainerUsage"), ["c1", "c2"]);
        assert_eq!(ids(&usage, "VolumeUsage"), ["v1", "v3"]);
        assert_eq!(ids(&usage, "ImageUsage"), ["i1"], "images stay shared");
        let totals = |key: &str| {
            let u = &usage[key];
            [
                &u["TotalCount"],
                &u["ActiveCount"],
                &u["TotalSize"],
                &u["Reclaimable"],
            ]
            .map(|v| v.as_i64().unwrap())
        };
        assert_eq!(totals("ContainerUsage"), [2, 1, 11, 1]);
        assert_eq!(totals("VolumeUsage"), [2, 1, 5, 5]);

        let mut plural = json(
            r#"{"VolumesUsage":{"TotalCount":1,"Items":[{"Name":"v2","Labels":{"ci.owner":"job-2"}}]}}"#,
        );
        filter_disk_usage(&owner(), &mut plural);
        assert_eq!(
            plural["VolumesUsage"]["TotalCount"], 0,
            "the changelog's spelling is cut too"
        );

        let mut without_items = json(r#"{"ContainerUsage":{"TotalCount":4,"TotalSize":9}}"#);
        filter_disk_usage(&owner(), &mut without_items);
        assert_eq!(
            without_items["ContainerUsage"],
            json(r#"{"TotalCount":0,"ActiveCount":0,"TotalSize":0,"Reclaimable":0,"Items":[]}"#),
            "the daemon's totals are never passed on"
        );
    }
}
