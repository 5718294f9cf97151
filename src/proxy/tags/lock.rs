//! The cross-proxy lock on a tag, I/O half of [`policy::taglock`]: an
//! unstarted container whose name dockerd gives to one creator only (409
//! Conflict to the others), held while a tag is checked and set.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use tracing::{info, warn};

use super::{dockerd_message, unavailable, Images};
use crate::engine::Engine;
use crate::proxy::policy::images::{self, Tag};
use crate::proxy::policy::taglock::{self, Taken};
use crate::proxy::policy::Reject;
use crate::proxy::route::{encode_param, ApiVersion};
use crate::proxy::BODY_LIMIT;

/// A lock this proxy holds: removed by [`Held::release`], or, when it is
/// dropped unreleased (a refusal, a broken request), by a task.
pub(in crate::proxy) struct Held {
    remover: Option<Remover>,
}

/// What removes one lock container, by its id: never by name, so a lock
/// someone else took meanwhile under the same name stays.
struct Remover {
    engine: Engine,
    version: ApiVersion,
    id: String,
}

impl Remover {
    async fn remove(self) {
        let target = format!(
            "/v{}/containers/{}?force=1",
            self.version,
            encode_param(&self.id)
        );
        let answer = send(&self.engine, Method::DELETE, &target, None).await;
        match answer {
            Some((status, _)) if status.is_success() || status == StatusCode::NOT_FOUND => {}
            _ => warn!(id = %self.id, "could not remove a tag lock container; it goes stale"),
        }
    }
}

impl Held {
    pub async fn release(mut self) {
        if let Some(remover) = self.remover.take() {
            remover.remove().await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(remover) = self.remover.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(remover.remove());
        }
    }
}

/// What a create of the lock container came to.
enum Created {
    Id(String),
    Taken,
}

/// The lock container that holds a name now.
struct Holder {
    id: String,
    age: Duration,
}

impl Images {
    /// Takes `tag`'s lock with a container from `image_id` (which exists
    /// locally): waits while another proxy holds it, removes one left
    /// stale, refuses the tag when it stays taken.
    pub(super) async fn lock_tag(&self, image_id: &str, tag: &Tag) -> Result<Held, Reject> {
        let name = taglock::lock_name(tag);
        let body = taglock::create_body(image_id, tag).to_string();
        let started = Instant::now();
        let mut told = false;
        loop {
            if let Created::Id(id) = self.create_lock(&name, &body, tag).await? {
                return Ok(Held {
                    remover: Some(self.remover(id)),
                });
            }
            if !std::mem::replace(&mut told, true) {
                info!(tag = %tag, "waiting for the tag lock another job holds");
            }
            let holder = self.lock_holder(&name).await;
            match taglock::on_taken(holder.as_ref().map(|h| h.age), started.elapsed()) {
                Taken::Retry => tokio::time::sleep(taglock::STEP).await,
                Taken::RemoveStale => {
                    if let Some(holder) = holder {
                        warn!(tag = %tag, age = ?holder.age, "removing a stale tag lock");
                        self.remover(holder.id).remove().await;
                    }
                }
                Taken::GiveUp => return Err(taglock::busy(tag)),
            }
        }
    }

    fn remover(&self, id: String) -> Remover {
        Remover {
            engine: self.engine.clone(),
            version: self.version,
            id,
        }
    }

    /// `POST /containers/create?name=NAME`: dockerd answers 409 when the
    /// name is taken.
    async fn create_lock(&self, name: &str, body: &str, tag: &Tag) -> Result<Created, Reject> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("name", name)
            .finish();
        let target = format!("/v{}/containers/create?{query}", self.version);
        let answer = send(
            &self.engine,
            Method::POST,
            &target,
            Some(body.as_bytes().to_vec()),
        )
        .await;
        let Some((status, answer)) = answer else {
            return Err(unavailable(&tag.familiar()));
        };
        if status == StatusCode::CONFLICT {
            return Ok(Created::Taken);
        }
        let id = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("Id")?.as_str().map(str::to_string))
            .filter(|_| status.is_success());
        id.map(Created::Id)
            .ok_or_else(|| cannot_lock(tag, status, &answer))
    }

    /// The lock container named `name`, found by name and lock label, with
    /// its age; `None` when it is gone (or the daemon did not say).
    async fn lock_holder(&self, name: &str) -> Option<Holder> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("all", "1")
            .append_pair("filters", &taglock::holder_filter(name))
            .finish();
        let target = format!("/v{}/containers/json?{query}", self.version);
        let (status, answer) = send(&self.engine, Method::GET, &target, None).await?;
        if !status.is_success() {
            return None;
        }
        let list: Value = serde_json::from_slice(&answer).ok()?;
        let first = list.as_array()?.first()?;
        Some(Holder {
            id: first.get("Id")?.as_str()?.to_string(),
            age: taglock::age(first.get("Created")?.as_i64()?, SystemTime::now()),
        })
    }
}

fn cannot_lock(tag: &Tag, status: StatusCode, answer: &[u8]) -> Reject {
    let why = dockerd_message(answer).unwrap_or_else(|| format!("dockerd answered {status}"));
    Reject {
        status: StatusCode::SERVICE_UNAVAILABLE,
        rule: images::RULE,
        message: format!(
            "dindbox: could not lock tag {} before setting it: {why}",
            tag.familiar()
        ),
    }
}

/// One request to dockerd with an optional JSON body, its answer read
/// whole; `None` when dockerd did not answer.
async fn send(
    engine: &Engine,
    method: Method,
    target: &str,
    body: Option<Vec<u8>>,
) -> Option<(StatusCode, Bytes)> {
    let answer = engine.ask(method, target, body, BODY_LIMIT).await.ok()?;
    Some((answer.status, answer.body))
}
