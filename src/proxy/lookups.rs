//! What the proxy asks dockerd before it forwards a request: the I/O half of
//! [`policy::ownership`].
//!
//! - In standalone mode with an owner label, before a request that names a
//!   container, exec, network or volume is forwarded, the proxy asks dockerd
//!   for the object's labels and lets [`policy::ownership`] decide; an object
//!   without the owner label answers as dockerd does for one that does not
//!   exist.
//! - In every mode, a container create's `VolumesFrom` sources are inspected:
//!   one with a mount that is not a volume (a host bind) is refused
//!   ([`ownership::check_volumes_from_source`]). That is the one extra round trip
//!   without an owner label, and only for a create that has `VolumesFrom`.
//!
//! A checked container or network is forwarded by its full id, in the path
//! and in the body ([`ownership::pin`]), so the object dockerd acts on is the one
//! that was checked, not whatever a name or an id prefix resolves to a moment
//! later.

#![forbid(unsafe_code)]

use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use tracing::warn;

use super::gojson::Json;
use super::message::BODY_LIMIT;
use super::policy::ownership::{self, Kind, Label, Owner, Pinned, Reference};
use super::policy::{self, Policy, Reject};
use super::route::{encode_param, ApiVersion, Route};
use crate::engine::Engine;

/// The daemon, as the proxy asks it about what a request names.
pub(super) struct Daemon<'a> {
    pub engine: &'a Engine,
    pub version: ApiVersion,
    pub policy: &'a Policy,
    /// The owner label; `None` in box mode and in standalone mode without
    /// one, where every object counts as the tenant's.
    pub owner: Option<&'a Owner>,
}

/// A volume, as far as ownership goes.
#[derive(Debug, PartialEq, Eq)]
enum Volume {
    Owned,
    Foreign,
    Absent,
}

impl Daemon<'_> {
    /// Checks the object the request's path names (and `POST /commit`'s
    /// container) and points the request at its full id. Another owner's
    /// object, or a missing one, is refused with dockerd's 404.
    pub async fn verify_target(&self, route: &mut Route) -> Result<(), Reject> {
        let Some(owner) = self.owner else {
            return Ok(());
        };
        if let Some(name) = ownership::commit_target(route) {
            let id = self.owned_container(&name).await?;
            let id = id.ok_or_else(|| Kind::Container.not_found(&name))?;
            route.query.set("container", &id);
            return Ok(());
        }
        let Some((kind, name)) = ownership::target(route) else {
            return Ok(());
        };
        match kind {
            Kind::Container => {
                let id = self.owned_container(&name).await?;
                route.set_param(&id.ok_or_else(|| kind.not_found(&name))?);
            }
            Kind::Exec => {
                if !self.owned_exec(&name).await? {
                    return Err(kind.not_found(&name));
                }
            }
            Kind::Network if ownership::is_builtin_network(&name) => {}
            Kind::Network => {
                let id = self.owned_network(&name).await?;
                route.set_param(&id.ok_or_else(|| kind.not_found(&name))?);
            }
            Kind::Volume => {
                if self.volume(owner, &name).await? != Volume::Owned {
                    return Err(kind.not_found(&name));
                }
            }
        }
        Ok(())
    }

    /// Checks the objects a checked body names and answers the full ids to
    /// forward them by. Without an owner only the `VolumesFrom` sources are
    /// looked up (for their mounts): a body without one costs no round trip.
    /// With one, a named volume that does not exist yet is created now, with
    /// the owner label, so that the job owns it (dockerd would create it
    /// without labels).
    pub async fn verify_references(&self, references: &[Reference]) -> Result<Pinned, Reject> {
        let mut pinned = Pinned::default();
        // Volumes last: a volume is only created once nothing else can refuse.
        let (volumes, others): (Vec<&Reference>, Vec<&Reference>) = references
            .iter()
            .partition(|r| matches!(r, Reference::Volume { .. }));
        for reference in others.into_iter().chain(volumes) {
            if let Reference::VolumesFrom(name) = reference {
                let (id, container) = self
                    .owned_container_json(name)
                    .await?
                    .ok_or_else(|| Kind::Container.not_found(name))?;
                ownership::check_volumes_from_source(name, &container)?;
                pinned.volumes_from.push((name.clone(), id));
                continue;
            }
            let Some(owner) = self.owner else {
                if let Reference::Volume { name, .. } = reference {
                    self.verify_plain_volume(name).await?;
                }
                continue;
            };
            match reference {
                Reference::VolumesFrom(_) => {}
                Reference::Container(name) => {
                    let id = self.owned_container(name).await?;
                    let id = id.ok_or_else(|| Kind::Container.not_found(name))?;
                    pinned.containers.push((name.clone(), id));
                }
                Reference::Network(name) => {
                    let id = self.owned_network(name).await?;
                    let id = id.ok_or_else(|| Kind::Network.not_found(name))?;
                    pinned.networks.push((name.clone(), id));
                }
                Reference::Volume { name, labels } => match self.volume(owner, name).await? {
                    Volume::Owned => {}
                    Volume::Foreign => return Err(volume_taken(name)),
                    Volume::Absent => self.create_volume(owner, name, labels).await?,
                },
            }
        }
        Ok(pinned)
    }

    /// Without an owner label every volume is the tenant's to mount, but not
    /// one made with driver options (by the host or an operator: a host bind
    /// under a volume's name). A volume that does not exist yet is created by
    /// dockerd with the local driver and no options.
    async fn verify_plain_volume(&self, name: &str) -> Result<(), Reject> {
        let Some(name) = ownership::reference_name(name) else {
            return Ok(());
        };
        let path = format!("/volumes/{}", encode_param(name));
        match self.inspect(&path, "volume", name).await? {
            Some(volume) => ownership::check_mounted_volume(name, &volume),
            None => Ok(()),
        }
    }

    /// A container without a `WorkingDir` of its own gets its image's, which
    /// a Dockerfile, a commit or a loaded archive may have set to anything:
    /// the image's is checked like a request's, and forwarded as the
    /// container's, so a tag moved after this check cannot bring another.
    /// An image dockerd does not have is left to dockerd (the CLI pulls it
    /// and creates again, and the retry is checked).
    pub async fn verify_image_working_dir(&self, body: &mut Json) -> Result<(), Reject> {
        let Some(image) = policy::image_to_inspect(body) else {
            return Ok(());
        };
        let path = format!("/images/{}/json", encode_param(&image));
        if let Some(inspect) = self.inspect(&path, "image", &image).await? {
            policy::pin_image_working_dir(body, &inspect)?;
        }
        Ok(())
    }

    /// Whether labels as dockerd reports them are the owner's; without an
    /// owner label every object is.
    fn owns(&self, labels: Option<&Value>) -> bool {
        self.owner.is_none_or(|o| ownership::owns(o, labels))
    }

    /// The full id of the named container when the owner owns it.
    async fn owned_container(&self, name: &str) -> Result<Option<String>, Reject> {
        Ok(self.owned_container_json(name).await?.map(|(id, _)| id))
    }

    /// The full id and `inspect` answer of the named container when the
    /// owner owns it.
    async fn owned_container_json(&self, name: &str) -> Result<Option<(String, Value)>, Reject> {
        let Some(name) = ownership::reference_name(name) else {
            return Ok(None);
        };
        let path = format!("/containers/{}/json", encode_param(name));
        let Some(container) = self.inspect(&path, "container", name).await? else {
            return Ok(None);
        };
        if !self.owns(container.pointer("/Config/Labels")) {
            return Ok(None);
        }
        Ok(Some((id_of(&container, name), container)))
    }

    /// Whether the exec instance runs in a container the owner owns.
    async fn owned_exec(&self, id: &str) -> Result<bool, Reject> {
        let Some(name) = ownership::reference_name(id) else {
            return Ok(false);
        };
        let path = format!("/exec/{}/json", encode_param(name));
        let Some(exec) = self.inspect(&path, "exec instance", name).await? else {
            return Ok(false);
        };
        match exec.get("ContainerID").and_then(Value::as_str) {
            Some(container) => Ok(self.owned_container(container).await?.is_some()),
            None => Ok(false),
        }
    }

    /// The full id of the named network when the owner owns it; the built-in
    /// networks are everyone's.
    async fn owned_network(&self, name: &str) -> Result<Option<String>, Reject> {
        if ownership::is_builtin_network(name) {
            return Ok(Some(name.to_string()));
        }
        let Some(name) = ownership::reference_name(name) else {
            return Ok(None);
        };
        let path = format!("/networks/{}", encode_param(name));
        let Some(network) = self.inspect(&path, "network", name).await? else {
            return Ok(None);
        };
        Ok(self
            .owns(network.get("Labels"))
            .then(|| id_of(&network, name)))
    }

    async fn volume(&self, owner: &Owner, name: &str) -> Result<Volume, Reject> {
        let Some(name) = ownership::reference_name(name) else {
            return Err(Reject::bad_request(
                "owner",
                format!("{name:?} is not a valid volume name"),
            ));
        };
        let path = format!("/volumes/{}", encode_param(name));
        let Some(volume) = self.inspect(&path, "volume", name).await? else {
            return Ok(Volume::Absent);
        };
        match ownership::label(owner, volume.get("Labels")) {
            Label::Mine => Ok(Volume::Owned),
            Label::Other => Ok(Volume::Foreign),
            // Anonymous volumes have no labels: the owner's are the ones its
            // containers mount (compose re-mounts them when it recreates a
            // service, `docker volume inspect` looks at them).
            Label::Missing => {
                let filters = ownership::used_by_owned_containers(owner, name);
                let path = format!(
                    "/containers/json?all=1&filters={}",
                    utf8_percent_encode(&filters, NON_ALPHANUMERIC)
                );
                let (status, body) = self.call(Method::GET, &path, None, "volume", name).await?;
                if !status.is_success() {
                    return Err(upstream_error(status, &body, "volume", name));
                }
                let used = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|list| list.as_array().map(|l| !l.is_empty()))
                    .unwrap_or(false);
                Ok(if used { Volume::Owned } else { Volume::Foreign })
            }
        }
    }

    /// Creates a named volume with the labels a mount asked for and the
    /// injected ones. Volume create answers with the existing volume when
    /// the name is taken, so the answer is checked too: another owner may
    /// have created it in the meantime.
    async fn create_volume(
        &self,
        owner: &Owner,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<(), Reject> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        let request = Json::Object(vec![
            ("Name".into(), Json::String(name.to_string())),
            ("Labels".into(), Json::Object(labels)),
        ]);
        let body = policy::volume_create(self.policy, request)?.to_vec();
        let (status, answer) = self
            .call(Method::POST, "/volumes/create", Some(body), "volume", name)
            .await?;
        if !status.is_success() {
            return Err(upstream_error(status, &answer, "volume", name));
        }
        check_created_volume(owner, name, &answer)
    }

    /// `GET path`: the answer when dockerd has the object, `None` when it
    /// answers 404; any other answer is passed on as a refusal.
    async fn inspect(&self, path: &str, what: &str, name: &str) -> Result<Option<Value>, Reject> {
        let (status, body) = self.call(Method::GET, path, None, what, name).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                serde_json::from_slice(&body).map(Some).map_err(|err| {
                    warn!(error = %err, %path, "dockerd's answer is not JSON");
                    cannot_check(what, name)
                })
            }
            status => Err(upstream_error(status, &body, what, name)),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        what: &str,
        name: &str,
    ) -> Result<(StatusCode, Bytes), Reject> {
        let target = format!("/v{}{path}", self.version);
        let answer = self
            .engine
            .ask(method, &target, json, BODY_LIMIT)
            .await
            .map_err(|err| {
                warn!(error = %err.chain(), %target, "dockerd did not answer an ownership check");
                cannot_check(what, name)
            })?;
        Ok((answer.status, answer.body))
    }
}

/// Checks dockerd's answer to a volume create (the proxy's own or a
/// tenant's): when the name was taken, dockerd answers with the existing
/// volume, which must then be owned.
pub(super) fn check_created_volume(owner: &Owner, name: &str, answer: &[u8]) -> Result<(), Reject> {
    let volume: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    if ownership::owns(owner, volume.get("Labels")) {
        return Ok(());
    }
    let name = volume
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or(name)
        .to_string();
    Err(volume_taken(&name))
}

fn volume_taken(name: &str) -> Reject {
    Reject {
        status: StatusCode::CONFLICT,
        rule: "owner",
        message: format!(
            "dindbox: the volume name {name:?} is taken by another owner on this daemon; choose another name"
        ),
    }
}

fn id_of(object: &Value, name: &str) -> String {
    object
        .get("Id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .unwrap_or(name)
        .to_string()
}

fn cannot_check(what: &str, name: &str) -> Reject {
    Reject {
        status: StatusCode::SERVICE_UNAVAILABLE,
        rule: "owner-check",
        message: format!(
            "dindbox: could not check who owns {what} {name:?}: the daemon did not answer; try again in a few seconds"
        ),
    }
}

/// dockerd refused the proxy's own question (an ambiguous name, say): its
/// status and message are the answer.
fn upstream_error(status: StatusCode, body: &[u8], what: &str, name: &str) -> Reject {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            format!("dindbox: could not check who owns {what} {name:?}: dockerd answered {status}")
        });
    Reject {
        status,
        rule: "owner-check",
        message,
    }
}
