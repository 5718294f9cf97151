//! What a tenant may ask of the inner dockerd: pure functions over parsed
//! bodies, no I/O. A request is allowed by returning the canonical body to
//! forward, or refused with a [`Reject`] that names the rule and the reason.
//!
//! The rules are an allow-list: the fields of each request are decoded the way
//! dockerd decodes them ([`super::gojson`]), fields the policy does not know are
//! dropped (or refused where an unknown field could be a new host-reaching
//! option), and every field that can reach the host is checked by value.

#![forbid(unsafe_code)]

mod container;
pub mod endpoints;
pub mod images;
mod mounts;
mod objects;
pub mod off;
pub mod ownership;
pub mod pull;
mod schema;
pub mod subnets;
mod swarm;
pub mod taglock;
mod value;
pub mod versions;

use std::borrow::Cow;
use std::collections::BTreeSet;

use http::StatusCode;

pub use self::container::{
    container_create, container_update, exec_create, image_to_inspect, pin_image_working_dir,
};
pub use self::objects::{
    build, check_changes, commit_config, image_create, network_connect, network_create,
    network_disconnect, volume_create,
};
pub use self::schema::{container_create_fields, exec_create_fields};
pub use self::swarm::{
    checkpoint_create, checkpoint_start, config_create, secret_create, service_create, swarm_init,
};

/// The policy's settings: what it injects into what tenants create, and which
/// optional features it lets through. The rules themselves are not settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Labels set on every container, built image, network and volume; a
    /// tenant's value for the same key is replaced.
    pub labels: Vec<(String, String)>,
    /// The cgroup every container (and classic-builder step) is placed under.
    pub cgroup_parent: Option<String>,
    /// Memory limit (bytes) for containers that ask for none, and the most one may ask for.
    pub memory: Option<i64>,
    /// Pids limit for containers that ask for none, and the most one may ask for.
    pub pids: Option<i64>,
    /// The MTU put on the networks tenants create (when they choose none):
    /// the box's link MTU, found by init.
    pub network_mtu: Option<u32>,
    /// Let BuildKit's `/session` and `/grpc` tunnels through. They cannot be
    /// inspected, so this is only safe where the daemon itself is confined
    /// (a dind box: no insecure entitlements, the box's own cgroup).
    pub allow_buildkit: bool,
    /// Standalone mode's owner label (`--owner-label key=value`): injected like
    /// the other labels, and every object a request names or lists must carry
    /// it (see [`ownership`]). `None` in box mode, where the box is the tenant.
    pub owner: Option<(String, String)>,
    /// The families of endpoints refused by default that this policy lets
    /// through (with their bodies checked); see [`Family`].
    pub allow: BTreeSet<Family>,
    /// The address ranges tenants' networks and static addresses may use.
    pub subnets: subnets::Subnets,
}

/// A family of endpoints that is refused unless a setting enables it, each
/// for a reason a tenant-facing proxy cannot remove on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `/plugins/*`: a plugin runs as root with the host privileges it asks
    /// for (host network, mounts, devices, CAP_SYS_ADMIN). Enabling it means
    /// trusting the tenant with the daemon's host.
    Plugins,
    /// `/swarm/*` (but never `/swarm/join`), `/nodes`, `/services`, `/tasks`,
    /// `/secrets`, `/configs`: swarm mode, where the daemon creates task
    /// containers itself from service specs the proxy checks.
    Swarm,
    /// `/containers/{id}/checkpoints` (experimental CRIU checkpoints).
    Checkpoints,
    /// `GET /distribution/{name}/json`: the daemon asks a registry.
    Distribution,
    /// `POST /images/create?fromSrc=<URL>`: the daemon downloads the URL.
    ImportUrl,
    /// `POST /build?remote=<URL>`: the daemon fetches the context (git or HTTP).
    BuildRemote,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Plugins,
        Family::Swarm,
        Family::Checkpoints,
        Family::Distribution,
        Family::ImportUrl,
        Family::BuildRemote,
    ];

    /// The family's name in `--allow`, `DINDBOX_ALLOW` and (as
    /// `allow-<name>`) the policy file.
    pub fn name(self) -> &'static str {
        match self {
            Family::Plugins => "plugins",
            Family::Swarm => "swarm",
            Family::Checkpoints => "checkpoints",
            Family::Distribution => "distribution",
            Family::ImportUrl => "import-url",
            Family::BuildRemote => "build-remote",
        }
    }

    /// The family by name.
    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name.trim())
    }

    /// Whether standalone mode's ownership checks cover the family: objects
    /// it creates or lists that other owners could see or touch. Families
    /// that are not covered cannot be enabled together with an owner label.
    pub fn owner_checked(self) -> bool {
        match self {
            // Global to the daemon (plugins), or objects without ownership
            // checks (services, secrets, configs, nodes, tasks; checkpoints
            // by name under another container).
            Family::Plugins | Family::Swarm | Family::Checkpoints => false,
            // Images are shared between owners already (see `ownership`).
            Family::Distribution | Family::ImportUrl | Family::BuildRemote => true,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Policy {
    pub fn allows(&self, family: Family) -> bool {
        self.allow.contains(&family)
    }

    /// The labels set on what tenants create: the configured ones, then the
    /// owner label, which wins over a configured label with the same key.
    pub fn injected_labels(&self) -> Cow<'_, [(String, String)]> {
        match &self.owner {
            None => Cow::Borrowed(&self.labels),
            Some((key, value)) => {
                let mut labels: Vec<_> = self
                    .labels
                    .iter()
                    .filter(|(k, _)| k != key)
                    .cloned()
                    .collect();
                labels.push((key.clone(), value.clone()));
                Cow::Owned(labels)
            }
        }
    }
}

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
