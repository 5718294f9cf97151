//! `docker pull NAME:TAG` in owner mode: the I/O half of [`policy::pull`]
//! (why a pull goes to dockerd by digest is said there).

#![forbid(unsafe_code)]

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use super::{
    dockerd_message, error_message, for_each_line, made_untagged, message_line, next_data, no_id,
    to_extend, ChannelBody, Images, Plan,
};
use crate::proxy::policy::images::{self, judge, tag_taken, MessageScan, Tag, Verdict};
use crate::proxy::policy::pull::{self, End, Message};
use crate::proxy::policy::Reject;
use crate::proxy::route::{encode_param, Route};
use crate::proxy::Body;

/// What a refusal says the tenant tried.
const WHAT: &str = "pulling over the tag";

impl Images {
    /// Refuses the pull of another owner's tag before any download, then
    /// resolves the tag and points the pull at its digest.
    pub(super) async fn plan_pull(
        &self,
        tag: Tag,
        route: &mut Route,
        auth: Option<&HeaderValue>,
    ) -> Result<Plan, Reject> {
        if self.verdict(&tag, true).await? == Verdict::Foreign {
            return Err(tag_taken(WHAT, &tag));
        }
        let digest = self.resolve(&tag, auth).await?;
        pull::by_digest(route, &tag, &digest);
        Ok(Plan::Pull { tag, digest })
    }

    /// `GET /distribution/{name}/json`: the digest the tag has in its
    /// registry now. Any failure fails the pull.
    async fn resolve(&self, tag: &Tag, auth: Option<&HeaderValue>) -> Result<String, Reject> {
        let target = format!(
            "/v{}/distribution/{}/json",
            self.version,
            encode_param(&tag.key())
        );
        let (status, body) = self
            .ask_as(Method::GET, &target, &tag.familiar(), auth)
            .await?;
        if !status.is_success() {
            let said =
                dockerd_message(&body).unwrap_or_else(|| format!("dockerd answered {status}"));
            return Err(pull::unresolved(tag, status, &said));
        }
        pull::descriptor_digest(&body).ok_or_else(|| {
            pull::unresolved(
                tag,
                StatusCode::BAD_GATEWAY,
                "dockerd's answer named no digest",
            )
        })
    }

    /// dockerd's answer to the pull by digest, passed on as a pull by tag
    /// reads ([`pull::message`]); when it ends well, the tag is checked and
    /// set, and the closing status line (or the refusal) goes at its end.
    pub(super) fn tag_pulled(
        self: Arc<Self>,
        response: Response<Incoming>,
        tag: Tag,
        digest: String,
    ) -> Response<Body> {
        let (parts, mut body) = to_extend(response);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut scan = MessageScan::default();
            let mut line = Vec::new();
            let pass_on =
                |whole: Vec<u8>, out: &mut Vec<u8>| match pull::message(&whole, &tag, &digest) {
                    Message::Pass => out.extend_from_slice(&whole),
                    Message::Rewritten(text) => out.extend_from_slice(text.as_bytes()),
                    Message::Withheld => {}
                };
            while let Some(data) = next_data(&mut body, &tx).await {
                scan.feed(&data);
                let mut out = Vec::new();
                for_each_line(&mut line, &data, |whole| pass_on(whole, &mut out));
                if !out.is_empty() && tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                    return;
                }
            }
            scan.finish();
            let mut out = Vec::new();
            if !line.is_empty() {
                pass_on(line, &mut out);
            }
            if !out.is_empty() {
                let _ = tx.send(Ok(Frame::data(Bytes::from(out)))).await;
            }
            if scan.failed() {
                return; // dockerd's error is the answer
            }
            let last = match self.finish_pull(&tag, &digest).await {
                Ok(status) => message_line(&serde_json::json!({ "status": status })),
                Err(reject) => error_message(&reject),
            };
            let _ = tx.send(Ok(last)).await;
        });
        Response::from_parts(parts, ChannelBody(rx).boxed())
    }

    /// Finds the pulled image, checks the tag again and sets it; answers
    /// the status line a pull by tag ends with.
    async fn finish_pull(&self, tag: &Tag, digest: &str) -> Result<String, Reject> {
        let untagged = || no_id(std::slice::from_ref(tag), "pulled");
        let pulled = self
            .inspect(&pull::digest_reference(tag, digest))
            .await?
            .ok_or_else(untagged)?;
        let id = images::image_id(&pulled).ok_or_else(untagged)?;
        let lock = self
            .lock_tag(id, tag)
            .await
            .map_err(|reject| made_untagged(reject, "pulled", id))?;
        let tagged = self.tag_pulled_image(tag, id).await;
        lock.release().await;
        tagged
    }

    /// Checks the tag again and sets it on the pulled image `id`, under the
    /// tag's lock.
    async fn tag_pulled_image(&self, tag: &Tag, id: &str) -> Result<String, Reject> {
        let now = self.inspect(&tag.familiar()).await?;
        let recorded = self.recorded.get(&tag.key());
        let verdict = judge(&self.owner, tag, now.as_ref(), recorded.as_deref(), true);
        let now = now.as_ref().and_then(images::image_id);
        match pull::end(verdict, now, id) {
            End::Refuse => Err(made_untagged(tag_taken(WHAT, tag), "pulled", id)),
            End::Tag { moves, record } => {
                if moves {
                    self.tag_image(id, tag)
                        .await
                        .map_err(|reject| made_untagged(reject, "pulled", id))?;
                }
                if record {
                    self.remember(tag, id);
                }
                Ok(pull::status(tag, moves))
            }
        }
    }
}
