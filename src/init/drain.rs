//! Stopping the box's containers before dockerd, within the grace period.
//!
//! On SIGTERM dockerd stops each running container with that container's own
//! stop timeout (10 s by default) before it exits, which alone outlasts
//! `docker stop`'s 10 s: the box would be SIGKILLed from outside with its
//! containers half-stopped. So init first asks dockerd, through its private
//! socket, to stop every running container with a timeout that fits the grace
//! period, all at once, and only then stops dockerd.

#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde_json::Value;

use crate::engine::{self, Engine};

/// How long before the end of the grace period the containers must be down,
/// so dockerd itself still has time to exit cleanly.
const MARGIN: Duration = Duration::from_secs(3);

/// The stop timeout to give each container out of a grace period: whole
/// seconds (the API's unit), at least 1.
pub fn container_timeout(grace: Duration) -> u64 {
    grace.saturating_sub(MARGIN).as_secs().max(1)
}

/// Asks dockerd to stop every running container with `timeout_secs`, in
/// parallel, and waits for the answers. Failures are logged, never fatal:
/// dockerd's own shutdown still follows.
pub async fn stop_containers(socket: &Path, timeout_secs: u64) {
    let engine = Engine::new(socket);
    let ids = match running_containers(&engine).await {
        Ok(ids) => ids,
        Err(err) => {
            tracing::warn!(error = %err, "could not list the running containers to stop them");
            return;
        }
    };
    if ids.is_empty() {
        return;
    }
    tracing::info!(
        count = ids.len(),
        timeout_secs,
        "stopping the box's containers"
    );
    let mut stops = tokio::task::JoinSet::new();
    for id in ids {
        let engine = engine.clone();
        stops.spawn(async move {
            let target = format!("/containers/{id}/stop?t={timeout_secs}");
            // Any answer will do: a container that stopped or went meanwhile
            // is as good as stopped.
            if let Err(err) = engine.ask(Method::POST, &target, None, ANSWER_LIMIT).await {
                tracing::warn!(container = %id, "stop failed: {}", err.chain());
            }
        });
    }
    stops.join_all().await;
}

/// The most of an answer read (a list of the box's containers).
const ANSWER_LIMIT: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
enum ListError {
    /// Shown with its causes: it is only ever logged.
    #[error("{}", .0.chain())]
    Engine(#[from] engine::Error),
    #[error("unexpected answer: {0}")]
    Unexpected(#[from] serde_json::Error),
}

async fn running_containers(engine: &Engine) -> Result<Vec<String>, ListError> {
    let list = engine.get("/containers/json").await?;
    Ok(parse_ids(list)?)
}

/// The `Id`s of a `GET /containers/json` answer.
fn parse_ids(list: Value) -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Summary {
        #[serde(rename = "Id")]
        id: String,
    }
    let list: Vec<Summary> = serde_json::from_value(list)?;
    Ok(list.into_iter().map(|c| c.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_timeout_leaves_a_margin_for_dockerd() {
        assert_eq!(container_timeout(Duration::from_secs(10)), 7);
        assert_eq!(container_timeout(Duration::from_secs(30)), 27);
        assert_eq!(container_timeout(Duration::from_secs(2)), 1);
        assert_eq!(container_timeout(Duration::from_millis(500)), 1);
    }

    #[test]
    fn parse_ids_reads_the_list_answer() {
        let list = serde_json::json!([{"Id":"abc","Names":["/x"]},{"Id":"def"}]);
        assert_eq!(parse_ids(list).unwrap(), ["abc", "def"]);
        assert!(parse_ids(serde_json::json!({})).is_err());
    }
}
