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

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

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
    let client: Client<UnixConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(UnixConnector);
    let ids = match running_containers(&client, socket).await {
        Ok(ids) => ids,
        Err(err) => {
            tracing::warn!("could not list the running containers to stop them: {err}");
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
        let uri = hyperlocal::Uri::new(socket, &format!("/containers/{id}/stop?t={timeout_secs}"));
        let request = http::Request::post(hyper::Uri::from(uri))
            .body(Empty::new())
            .expect("a valid request");
        let client = client.clone();
        stops.spawn(async move {
            if let Err(err) = client.request(request).await {
                tracing::warn!(container = %id, "stop failed: {err}");
            }
        });
    }
    stops.join_all().await;
}

async fn running_containers(
    client: &Client<UnixConnector, Empty<Bytes>>,
    socket: &Path,
) -> Result<Vec<String>, String> {
    let uri = hyperlocal::Uri::new(socket, "/containers/json");
    let response = client.get(uri.into()).await.map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    parse_ids(&body)
}

/// The `Id`s of a `GET /containers/json` answer.
fn parse_ids(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Summary {
        #[serde(rename = "Id")]
        id: String,
    }
    let list: Vec<Summary> =
        serde_json::from_slice(body).map_err(|e| format!("unexpected answer: {e}"))?;
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
        let body = br#"[{"Id":"abc","Names":["/x"]},{"Id":"def"}]"#;
        assert_eq!(parse_ids(body).unwrap(), ["abc", "def"]);
        assert!(parse_ids(b"{}").is_err());
    }
}
