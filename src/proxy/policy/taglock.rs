//! The cross-proxy lock on an image tag, pure part. The Engine API has no
//! compare-and-set on tags, so two owners' proxies (separate processes)
//! setting the same free tag at once could both see it free. Container names
//! are atomic in dockerd's name registry: before it checks and sets a tag, a
//! proxy creates an unstarted container named after the tag
//! ([`lock_name`]); dockerd answers 409 to the second. The I/O is in
//! `proxy::tags::lock`.

#![forbid(unsafe_code)]

use std::time::Duration;

use http::Method;

use super::images::Tag;
use super::Reject;
use crate::proxy::route::Route;

/// Every lock container's name starts with this; tenants may not take it.
pub const PREFIX: &str = "dindbox-taglock-";
/// The label on a lock container: the tag it locks.
pub const LABEL: &str = "dindbox.taglock";
/// How long a proxy waits between two tries at a taken lock.
pub const STEP: Duration = Duration::from_millis(50);
/// How long it tries before it refuses the tag.
pub const WAIT: Duration = Duration::from_secs(5);
/// A lock older than this was left by a proxy that died holding it: a
/// check and a set take two round trips, never this long.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// Hex digits of the tag's sha256 in the name (128 bits).
const HASH_HEX: usize = 32;

/// The lock container's name for `tag`: the prefix and the start of the hex
/// sha256 of its normalised form (`docker.io/library/app:latest`), so every
/// spelling of one tag takes the same lock.
pub fn lock_name(tag: &Tag) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, tag.key().as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{}", &hex[..HASH_HEX])
}

/// The container create body of a lock: from the image being tagged (it
/// exists locally), never started, so its command need not exist; no owner
/// label, so no owner lists or removes it; no network.
pub fn create_body(image_id: &str, tag: &Tag) -> serde_json::Value {
    serde_json::json!({
        "Image": image_id,
        "Entrypoint": ["dindbox-taglock"],
        "Cmd": [],
        "Labels": { LABEL: tag.key() },
        "NetworkDisabled": true,
        "HostConfig": { "NetworkMode": "none" },
    })
}

/// What to do when the lock's name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Wait [`STEP`] and create again.
    Retry,
    /// Remove the holder (by its id) and create again: it is stale.
    RemoveStale,
    /// Refuse the tag: another job holds it too long.
    GiveUp,
}

/// Decides on a taken lock: `age` is the holder's age (`None` when it was
/// gone or could not be read: try again), `waited` how long this proxy has
/// tried already. Bounded: past [`WAIT`] it gives up even on a stale lock it
/// could not remove.
pub fn on_taken(age: Option<Duration>, waited: Duration) -> Taken {
    match age {
        _ if waited >= WAIT => Taken::GiveUp,
        Some(age) if age >= STALE_AFTER => Taken::RemoveStale,
        _ => Taken::Retry,
    }
}

/// The age of a container `Created` at `created` (Unix seconds, as the
/// container list answers) when it is `now`; a clock set back reads as new.
pub fn age(created: i64, now: std::time::SystemTime) -> Duration {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Duration::from_secs(now.saturating_sub(u64::try_from(created).unwrap_or(0)))
}

/// The container list filter that finds the lock named `name`: its exact
/// name (dockerd matches names, with their `/`, as a regular expression)
/// and the lock label, so nothing but a lock is ever taken for one.
pub fn holder_filter(name: &str) -> String {
    serde_json::json!({
        "name": { format!("^/{name}$"): true },
        "label": { LABEL: true },
    })
    .to_string()
}

/// The refusal once [`Taken::GiveUp`].
pub fn busy(tag: &Tag) -> Reject {
    Reject {
        status: http::StatusCode::CONFLICT,
        rule: super::images::RULE,
        message: format!(
            "dindbox: tag {} is being set by another job, try again",
            tag.familiar()
        ),
    }
}

/// Whether a container name (as a client may spell it, with a leading `/`)
/// is a lock's.
pub fn is_lock_name(name: &str) -> bool {
    name.strip_prefix('/').unwrap_or(name).starts_with(PREFIX)
}

/// Refuses a container create or rename that names a lock: a tenant
/// holding one would block every owner from setting that tag. (Removing one
/// is refused already: it has no owner label.)
pub fn check_container_name(method: &Method, route: &Route) -> Result<(), Reject> {
    let names = method == Method::POST
        && matches!(
            route.pattern,
            "/containers/create" | "/containers/{}/rename"
        );
    if !names {
        return Ok(());
    }
    match route
        .query
        .0
        .iter()
        .find(|(k, v)| k == "name" && is_lock_name(v))
    {
        Some((_, name)) => Err(Reject::forbidden(
            "taglock-name",
            &format!("the container name {name:?}"),
            format_args!("names starting with {PREFIX} are the proxy's tag locks"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::policy::images::tag_of;

    fn tag(text: &str) -> Tag {
        tag_of(text).unwrap()
    }

    #[test]
    fn every_spelling_of_a_tag_takes_one_lock() {
        let name = lock_name(&tag("app"));
        assert_eq!(name, lock_name(&tag("docker.io/library/app:latest")));
        assert_eq!(name, lock_name(&tag("library/app:latest")));
        assert_ne!(name, lock_name(&tag("app:1")));
        assert_ne!(name, lock_name(&tag("user/app")));
        assert!(name.starts_with(PREFIX));
        assert_eq!(name.len(), PREFIX.len() + 32);
        // A name dockerd accepts: [a-zA-Z0-9][a-zA-Z0-9_.-]+
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn the_name_is_the_sha256_of_the_normalised_tag() {
        // printf docker.io/library/app:latest | sha256sum | cut -c1-32
        assert_eq!(
            lock_name(&tag("app")),
            "dindbox-taglock-28ec096a835a49537929b040aae40036"
        );
    }

    #[test]
    fn a_taken_lock_is_waited_for_then_refused_and_a_stale_one_removed() {
        let young = Some(Duration::from_secs(1));
        assert_eq!(on_taken(young, Duration::ZERO), Taken::Retry);
        assert_eq!(on_taken(None, Duration::from_secs(1)), Taken::Retry);
        assert_eq!(on_taken(young, WAIT), Taken::GiveUp);
        assert_eq!(on_taken(None, WAIT), Taken::GiveUp);
        assert_eq!(
            on_taken(Some(STALE_AFTER), Duration::ZERO),
            Taken::RemoveStale
        );
        // One that cannot be removed is not tried for ever.
        assert_eq!(on_taken(Some(STALE_AFTER), WAIT), Taken::GiveUp);
    }

    #[test]
    fn a_locks_age_is_counted_from_its_created_seconds() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(age(970, now), Duration::from_secs(30));
        assert_eq!(age(1_005, now), Duration::ZERO);
        assert_eq!(age(-1, now), Duration::from_secs(1_000));
    }

    #[test]
    fn the_holder_is_looked_up_by_exact_name_and_lock_label() {
        let filter: serde_json::Value =
            serde_json::from_str(&holder_filter("dindbox-taglock-ab")).unwrap();
        assert_eq!(
            filter,
            serde_json::json!({"name": {"^/dindbox-taglock-ab$": true},
                               "label": {"dindbox.taglock": true}})
        );
    }

    #[test]
    fn the_refusal_is_one_line_naming_the_tag() {
        let reject = busy(&tag("docker.io/library/app:1"));
        assert_eq!(reject.status, http::StatusCode::CONFLICT);
        assert_eq!(
            reject.message,
            "dindbox: tag app:1 is being set by another job, try again"
        );
    }

    #[test]
    fn the_lock_body_has_the_tag_label_and_no_owner_label() {
        let body = create_body("sha256:abc", &tag("app"));
        assert_eq!(body["Image"], "sha256:abc");
        assert_eq!(
            body["Labels"],
            serde_json::json!({ "dindbox.taglock": "docker.io/library/app:latest" })
        );
    }

    fn route(method: &Method, target: &str) -> Result<(), Reject> {
        let uri: http::Uri = target.parse().unwrap();
        let route = crate::proxy::route::route(method, &uri).unwrap();
        check_container_name(method, &route)
    }

    #[test]
    fn tenants_cannot_create_or_rename_to_a_lock_name() {
        let post = Method::POST;
        for target in [
            "/v1.47/containers/create?name=dindbox-taglock-0123",
            "/v1.47/containers/create?name=%2Fdindbox-taglock-0123",
            "/v1.47/containers/create?name=web&name=dindbox-taglock-x",
            "/v1.47/containers/web/rename?name=dindbox-taglock-0123",
        ] {
            let reject = route(&post, target).unwrap_err();
            assert_eq!(reject.status, http::StatusCode::FORBIDDEN, "{target}");
            assert!(reject.message.contains("tag locks"), "{}", reject.message);
        }
        for target in [
            "/v1.47/containers/create?name=web",
            "/v1.47/containers/create",
            "/v1.47/containers/web/rename?name=dindbox-tag",
            "/v1.47/containers/dindbox-taglock-0/stop",
        ] {
            assert!(route(&post, target).is_ok(), "{target}");
        }
    }
}
