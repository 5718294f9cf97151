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
mod objects;
pub mod owner;
mod value;

use std::borrow::Cow;

use http::StatusCode;

pub use self::container::{container_create, container_update, exec_create};
pub use self::objects::{
    build, image_create, network_connect, network_create, network_disconnect, volume_create,
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
    /// it (see [`owner`]). `None` in box mode, where the box is the tenant.
    pub owner: Option<(String, String)>,
}

impl Policy {
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
