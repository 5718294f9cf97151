//! Image tags in standalone mode: the I/O half of [`policy::images`]. Before
//! a request that sets or removes a tag is forwarded, the proxy asks dockerd
//! what each tag points to now (`GET /images/{tag}/json`) and lets the rules
//! decide; after it succeeded, it records the tags it set from loads, pulls
//! and `docker tag`. A build, commit or import goes to dockerd without its
//! tags: the proxy reads the new image id from the answer, checks each tag
//! again and sets it itself (`POST /images/{id}/tag`), so a tag taken by
//! another owner while a build ran is not moved. A `docker load` body is
//! scanned as it streams ([`loadscan`]), goes to dockerd with its tags taken
//! out, and its end is withheld until its tags are checked; the proxy then
//! sets them on the ids dockerd's answer names, the same way. A pull of a
//! tag goes to dockerd by digest and is tagged the same way ([`pull`]).
//! Every check of a tag and the set that follows it run under the tag's
//! cross-proxy lock ([`lock`]), so two owners' proxies cannot both find one
//! free tag free and both set it.
//! Only runs with an owner label: in box mode nothing here is called.

#![forbid(unsafe_code)]

mod lock;
mod pull;

use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::warn;

use super::loadscan::{self, Compression, Piece, Scanner, Step};
use super::message::{
    self, empty, error_response, full, strip_hop_by_hop, Body, BoxError, BODY_LIMIT,
};
use super::policy::images::{
    self, judge, loaded_ids, pair_loaded, removal, tag_change, tag_of, tag_taken,
    unreadable_archive, withhold_tags, Maker, MessageScan, Recorded, Tag, TagChange, TagFile,
    Verdict,
};
use super::policy::ownership::Owner;
use super::policy::Reject;
use super::route::{encode_param, ApiVersion, Route};
use crate::engine::Engine;

/// The daemon, as the proxy asks it about image tags.
pub(super) struct Images {
    pub engine: Engine,
    pub version: ApiVersion,
    pub owner: Owner,
    pub recorded: Arc<Recorded>,
}

/// What to do once dockerd has answered.
pub(super) enum Plan {
    None,
    /// `docker tag`: record the tag as set to the source's id; its lock
    /// is held until dockerd has set it.
    Tagged {
        tag: Tag,
        id: String,
        lock: lock::Held,
    },
    /// `docker rmi TAG`: forget the tag.
    Removed(Tag),
    /// A pull of a tag, forwarded by `digest`: the proxy checks the tag
    /// again and sets it on the pulled image.
    Pull {
        tag: Tag,
        digest: String,
    },
    /// `docker load`: the body is scanned and held ([`guard_load`]).
    Load(Arc<LoadState>),
    /// A build, commit or import forwarded without its tags: the proxy
    /// checks each again and sets it on the id dockerd answers.
    Make {
        maker: Maker,
        tags: Vec<Tag>,
    },
}

/// What the load scanner found: its refusal, or the tags of each image of
/// the manifest it let through (without them).
#[derive(Default)]
pub(super) struct LoadState {
    refusal: Mutex<Option<Reject>>,
    entries: Mutex<Vec<Vec<Tag>>>,
    /// dockerd keeps its images in the containerd image store: it prints a
    /// `Loaded image ID` for each image it loaded without a tag.
    containerd: Mutex<bool>,
}

impl Plan {
    /// The load scanner's refusal, which replaces dockerd's answer (dockerd
    /// only saw a body that broke off).
    pub fn refusal(&self) -> Option<Reject> {
        match self {
            Plan::Load(state) => lock(&state.refusal).clone(),
            _ => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Images {
    /// Checks every tag the request would set or remove; may point a
    /// `docker tag` at the full id of its source, and a pull at the digest
    /// its tag has now (asked with the client's `X-Registry-Auth`).
    pub async fn plan(
        &self,
        route: &mut Route,
        auth: Option<&HeaderValue>,
    ) -> Result<Plan, Reject> {
        match tag_change(route)? {
            TagChange::None => Ok(Plan::None),
            TagChange::Set(tags) => {
                // Checked now so a refusal comes before the work, and again
                // just before each tag is set.
                let mut unique: Vec<Tag> = Vec::new();
                for tag in tags {
                    self.check(&tag, "moving the tag").await?;
                    if !unique.contains(&tag) {
                        unique.push(tag);
                    }
                }
                match withhold_tags(route) {
                    Some(maker) if !unique.is_empty() => Ok(Plan::Make {
                        maker,
                        tags: unique,
                    }),
                    _ => Ok(Plan::None),
                }
            }
            TagChange::Tag { source, tag } => {
                let Some(image) = self.inspect(&source).await? else {
                    return Ok(Plan::None); // dockerd answers its own 404
                };
                let id = images::image_id(&image).unwrap_or_default().to_string();
                // Checked before the lock too, so a refusal costs no lock
                // container.
                self.check(&tag, "moving the tag").await?;
                if id.is_empty() {
                    return Ok(Plan::None);
                }
                let lock = self.lock_tag(&id, &tag).await?;
                self.check(&tag, "moving the tag").await?;
                route.set_param(&id);
                Ok(Plan::Tagged { tag, id, lock })
            }
            TagChange::Pull(tag) => self.plan_pull(tag, route, auth).await,
            TagChange::Remove(name) => {
                let Some(image) = self.inspect(&name).await? else {
                    return Ok(Plan::None);
                };
                let recorded = |key: &str| self.recorded.get(key);
                match removal(&self.owner, &name, &image, &recorded)? {
                    Some(tag) => Ok(Plan::Removed(tag)),
                    None => Ok(Plan::None),
                }
            }
            TagChange::Load => Ok(Plan::Load(Arc::default())),
        }
    }

    async fn check(&self, tag: &Tag, what: &str) -> Result<(), Reject> {
        match self.verdict(tag, false).await? {
            Verdict::Free | Verdict::Owned => Ok(()),
            Verdict::Refresh | Verdict::Foreign => Err(tag_taken(what, tag)),
        }
    }

    async fn verdict(&self, tag: &Tag, pull: bool) -> Result<Verdict, Reject> {
        let image = self.inspect(&tag.familiar()).await?;
        let recorded = self.recorded.get(&tag.key());
        Ok(judge(
            &self.owner,
            tag,
            image.as_ref(),
            recorded.as_deref(),
            pull,
        ))
    }

    fn remember(&self, tag: &Tag, id: &str) {
        if !self.recorded.set(tag, id) {
            warn!(tag = %tag, "too many recorded tags: this tag will not be movable by its owner");
        }
    }

    /// After dockerd answered: records or forgets tags, and for pulls and
    /// loads hands back the answer to stream (the tags are recorded when it
    /// ends, before the client sees its end).
    pub async fn after(
        self: Arc<Self>,
        plan: Plan,
        response: Response<Incoming>,
    ) -> Result<Response<Incoming>, Response<Body>> {
        if !response.status().is_success() {
            return Ok(response);
        }
        match plan {
            Plan::None => Ok(response),
            Plan::Tagged { tag, id, lock } => {
                self.remember(&tag, &id);
                lock.release().await;
                Ok(response)
            }
            Plan::Removed(tag) => {
                self.recorded.forget(&tag);
                Ok(response)
            }
            Plan::Pull { tag, digest } => Err(self.tag_pulled(response, tag, digest)),
            Plan::Load(state) => {
                let entries = lock(&state.entries).clone();
                if entries.iter().all(Vec::is_empty) {
                    return Ok(response);
                }
                let containerd = *lock(&state.containerd);
                Err(self.tag_loaded(response, entries, containerd))
            }
            Plan::Make {
                maker: Maker::Commit,
                tags,
            } => Err(self.tag_commit(response, &tags).await),
            Plan::Make { maker, tags } => Err(self.tag_at_end(response, maker, tags)),
        }
    }

    /// Sets `tag` on the image `id` if it is still free or the owner's: one
    /// check immediately before `POST /images/{id}/tag`, then recorded; all
    /// under the tag's lock.
    async fn set_tag(&self, id: &str, tag: &Tag) -> Result<(), Reject> {
        let lock = self.lock_tag(id, tag).await?;
        let set = self.check_and_tag(id, tag).await;
        lock.release().await;
        set
    }

    async fn check_and_tag(&self, id: &str, tag: &Tag) -> Result<(), Reject> {
        self.check(tag, "moving the tag").await?;
        self.tag_image(id, tag).await?;
        self.remember(tag, id);
        Ok(())
    }

    /// `POST /images/{id}/tag`, unchecked: callers check the tag just before.
    async fn tag_image(&self, id: &str, tag: &Tag) -> Result<(), Reject> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("repo", &tag.name)
            .append_pair("tag", &tag.tag)
            .finish();
        let target = format!("/v{}/images/{}/tag?{query}", self.version, encode_param(id));
        let (status, body) = self.ask(Method::POST, &target, id).await?;
        if !status.is_success() {
            return Err(dockerd_error(status, &body, id));
        }
        Ok(())
    }

    /// Sets `tags` in order, as dockerd would have; stops at the first it
    /// cannot set. `made` says how the image came about, for the refusal.
    async fn set_tags(
        &self,
        id: &str,
        tags: &[Tag],
        made: &str,
        mut tagged: impl FnMut(&Tag),
    ) -> Result<(), Reject> {
        for tag in tags {
            if let Err(reject) = self.set_tag(id, tag).await {
                return Err(made_untagged(reject, made, id));
            }
            tagged(tag);
        }
        Ok(())
    }

    /// A commit's answer is one JSON object: read it, tag its id, and pass
    /// it on, or a refusal in its place (the image exists, untagged).
    async fn tag_commit(&self, response: Response<Incoming>, tags: &[Tag]) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let answer = match Limited::new(body, BODY_LIMIT).collect().await {
            Ok(answer) => answer.to_bytes(),
            Err(_) => return error_response(&no_id(tags, "committed")),
        };
        let Some(id) = images::committed_id(&answer) else {
            return error_response(&no_id(tags, "committed"));
        };
        match self.set_tags(&id, tags, "committed", |_| {}).await {
            Ok(()) => Response::from_parts(parts, full(answer.to_vec())),
            Err(reject) => error_response(&reject),
        }
    }

    /// A build's or an import's message stream, passed on as it comes and
    /// scanned for the image id; when it ends well, the tags are set and
    /// their outcome goes at its end: "Successfully tagged" lines as dockerd
    /// prints them for a build, or an error message the CLI prints and
    /// exits non-zero on.
    fn tag_at_end(
        self: Arc<Self>,
        response: Response<Incoming>,
        maker: Maker,
        tags: Vec<Tag>,
    ) -> Response<Body> {
        let (parts, mut body) = to_extend(response);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut scan = MessageScan::default();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(BoxError::from);
                let failed = frame.is_err();
                if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
                    scan.feed(data);
                }
                if tx.send(frame).await.is_err() || failed {
                    return;
                }
            }
            scan.finish();
            if scan.failed() {
                return; // dockerd's error is the answer
            }
            let made = match maker {
                Maker::Build { .. } => "built",
                _ => "imported",
            };
            let Some(id) = scan.image_id(maker).map(str::to_string) else {
                let _ = tx.send(Ok(error_message(&no_id(&tags, made)))).await;
                return;
            };
            let mut lines = Vec::new();
            let result = self
                .set_tags(&id, &tags, made, |tag| {
                    if maker == (Maker::Build { quiet: false }) {
                        let line = format!("Successfully tagged {}\n", tag.familiar());
                        lines.push(message_line(&serde_json::json!({ "stream": line })));
                    }
                })
                .await;
            for line in lines {
                let _ = tx.send(Ok(line)).await;
            }
            if let Err(reject) = result {
                let _ = tx.send(Ok(error_message(&reject))).await;
            }
        });
        Response::from_parts(parts, ChannelBody(rx).boxed())
    }

    /// A load's answer, passed on message by message, except the
    /// `Loaded image ID` messages dockerd prints for images it loaded without
    /// tags (all of them here, one id per entry of the manifest or, in the
    /// containerd image store, of the index, in order): the proxy checks and
    /// sets each entry's tags on its id, and prints `Loaded image: TAG` as
    /// dockerd would have (and, in the containerd store, `Loaded image ID`
    /// for an entry without tags), or an error the CLI prints and exits
    /// non-zero on.
    fn tag_loaded(
        self: Arc<Self>,
        response: Response<Incoming>,
        entries: Vec<Vec<Tag>>,
        containerd: bool,
    ) -> Response<Body> {
        let (parts, mut body) = to_extend(response);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut scan = MessageScan::default();
            let mut line: Vec<u8> = Vec::new();
            let mut ids: Vec<String> = Vec::new();
            let mut id_lines: Vec<Bytes> = Vec::new();
            while let Some(data) = next_data(&mut body, &tx).await {
                scan.feed(&data);
                let mut out = Vec::new();
                for_each_line(&mut line, &data, |whole| match loaded_ids(&whole) {
                    Some(found) => {
                        ids.extend(found);
                        id_lines.push(Bytes::from(whole));
                    }
                    None => out.extend_from_slice(&whole),
                });
                if !out.is_empty() && tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                    return;
                }
            }
            scan.finish();
            if !line.is_empty() {
                let _ = tx.send(Ok(Frame::data(Bytes::from(line)))).await;
            }
            if scan.failed() {
                for id_line in id_lines {
                    let _ = tx.send(Ok(Frame::data(id_line))).await;
                }
                return; // dockerd's error is the answer
            }
            let all: Vec<Tag> = entries.iter().flatten().cloned().collect();
            let Some(loaded) = pair_loaded(&entries, &ids) else {
                let _ = tx.send(Ok(error_message(&no_id(&all, "loaded")))).await;
                return;
            };
            let mut lines = Vec::new();
            let mut result = Ok(());
            for (id, tags) in &loaded {
                if containerd && tags.is_empty() {
                    let line = format!("Loaded image ID: {id}\n");
                    lines.push(message_line(&serde_json::json!({ "stream": line })));
                    continue;
                }
                result = self
                    .set_tags(id, tags, "loaded", |tag| {
                        let line = format!("Loaded image: {}\n", tag.familiar());
                        lines.push(message_line(&serde_json::json!({ "stream": line })));
                    })
                    .await;
                if result.is_err() {
                    break;
                }
            }
            for line in lines {
                let _ = tx.send(Ok(line)).await;
            }
            match result {
                // The classic store prints the ids when the last image had no tag.
                Ok(()) if !containerd && entries.last().is_some_and(Vec::is_empty) => {
                    for id_line in id_lines {
                        let _ = tx.send(Ok(Frame::data(id_line))).await;
                    }
                }
                Ok(()) => {}
                Err(reject) => {
                    let _ = tx.send(Ok(error_message(&reject))).await;
                }
            }
        });
        Response::from_parts(parts, ChannelBody(rx).boxed())
    }

    /// One request to dockerd, its answer read whole.
    async fn ask(
        &self,
        method: Method,
        target: &str,
        name: &str,
    ) -> Result<(StatusCode, Bytes), Reject> {
        self.ask_as(method, target, name, None).await
    }

    /// [`Images::ask`] with the client's registry credentials, if it sent any.
    async fn ask_as(
        &self,
        method: Method,
        target: &str,
        name: &str,
        auth: Option<&HeaderValue>,
    ) -> Result<(StatusCode, Bytes), Reject> {
        let cannot = || unavailable(name);
        let mut request = self.engine.request(method, target);
        if let Some(auth) = auth {
            request = request.header("X-Registry-Auth", auth);
        }
        let request = request.body(empty()).map_err(|_| cannot())?;
        let answer = self.engine.read(request, BODY_LIMIT).await.map_err(|err| {
            warn!(error = %err.chain(), %target, "dockerd did not answer an image check");
            cannot()
        })?;
        Ok((answer.status, answer.body))
    }

    /// Whether dockerd keeps its images in the containerd image store
    /// (`GET /info`: `DriverStatus` holds `driver-type`
    /// `io.containerd.snapshotter.v1`). Asked at each load: a restarted
    /// dockerd may have been switched.
    async fn containerd_store(&self) -> Result<bool, Reject> {
        let unknown = || Reject {
            status: StatusCode::SERVICE_UNAVAILABLE,
            rule: images::RULE,
            message: "dindbox: could not ask the daemon which image store it uses (GET /info); \
                      try again in a few seconds"
                .into(),
        };
        let target = format!("/v{}/info", self.version);
        let (status, body) = self
            .ask(Method::GET, &target, "")
            .await
            .map_err(|_| unknown())?;
        let info: Value = serde_json::from_slice(&body)
            .ok()
            .filter(|_| status.is_success())
            .ok_or_else(unknown)?;
        Ok(images::uses_containerd_store(&info))
    }

    /// `GET /images/{name}/json`: `None` when dockerd answers 404.
    async fn inspect(&self, name: &str) -> Result<Option<Value>, Reject> {
        let target = format!("/v{}/images/{}/json", self.version, encode_param(name));
        let (status, body) = self.ask(Method::GET, &target, name).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|_| unavailable(name)),
            status => Err(dockerd_error(status, &body, name)),
        }
    }
}

fn unavailable(name: &str) -> Reject {
    Reject {
        status: StatusCode::SERVICE_UNAVAILABLE,
        rule: images::RULE,
        message: format!(
            "dindbox: could not check who owns the image {name:?}: the daemon did not answer; try again in a few seconds"
        ),
    }
}

/// dockerd's own error answer about `name`, passed on.
fn dockerd_error(status: StatusCode, body: &[u8], name: &str) -> Reject {
    let message = dockerd_message(body)
        .unwrap_or_else(|| format!("dindbox: dockerd answered {status} for image {name:?}"));
    Reject {
        status,
        rule: images::RULE,
        message,
    }
}

/// The `message` of dockerd's error answer.
fn dockerd_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("message")?
        .as_str()
        .map(str::to_string)
}

/// A refusal to tag an image that now exists untagged: says so, with its id.
fn made_untagged(mut reject: Reject, made: &str, id: &str) -> Reject {
    reject.message = format!(
        "{} (the image was {made} untagged: {})",
        reject.message,
        short_id(id)
    );
    reject
}

/// dockerd's answer named no image id, so no tag was set.
fn no_id(tags: &[Tag], made: &str) -> Reject {
    let tags: Vec<String> = tags.iter().map(Tag::familiar).collect();
    Reject {
        status: StatusCode::BAD_GATEWAY,
        rule: images::RULE,
        message: format!(
            "dindbox: the daemon's answer named no image id, so the image was {made} untagged; tags not set: {}",
            tags.join(", ")
        ),
    }
}

/// `sha256:0123456789ab`, as short as the CLI prints ids.
fn short_id(id: &str) -> &str {
    let end = id.find(':').map_or(0, |i| i + 1) + 12;
    id.get(..end).unwrap_or(id)
}

/// One message of a JSON message stream, as dockerd frames it.
fn message_line(message: &Value) -> Frame<Bytes> {
    Frame::data(Bytes::from(format!("{message}\r\n")))
}

/// An error message at the end of a stream: the CLI prints it and exits
/// non-zero.
fn error_message(reject: &Reject) -> Frame<Bytes> {
    message_line(&serde_json::json!({
        "errorDetail": { "message": reject.message },
        "error": reject.message,
    }))
}

/// A body fed by a task through a channel.
struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

/// A line of a load's or a pull's answer longer than this is passed on in pieces.
const LINE_LIMIT: usize = 1 << 20;

/// Splits a message stream into its lines as it comes: `pending` holds
/// the start of a line the next piece ends; `each` gets every whole line
/// (with its newline), or a piece of an overlong one.
fn for_each_line(pending: &mut Vec<u8>, data: &[u8], mut each: impl FnMut(Vec<u8>)) {
    for piece in data.split_inclusive(|b| *b == b'\n') {
        pending.extend_from_slice(piece);
        if piece.ends_with(b"\n") || pending.len() > LINE_LIMIT {
            each(std::mem::take(pending));
        }
    }
}

/// The body of a `docker load` as dockerd gets it in owner mode: the
/// archive (decompressed by the proxy when it was gzip), forwarded as it is
/// scanned, its tag files without their tags, with its last byte (or the last byte of its end marker) held
/// until its tags are checked. A refused archive is broken off, so dockerd
/// fails the load before it applies any tag, and the refusal goes into
/// `state` for the client.
pub(super) fn guard_load(body: Body, images: Arc<Images>, state: Arc<LoadState>) -> Body {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut source = None;
        if let Err(reject) = pump_load(body, &images, &state, &tx, &mut source).await {
            let message = reject.message.clone();
            *lock(&state.refusal) = Some(reject);
            let _ = tx.send(Err(message.into())).await;
            drop(tx);
            // Read the rest of what the client sends, so it hears the refusal.
            if let Some(mut source) = source {
                let drained = async { while let Some(Ok(_)) = source.next().await {} };
                let _ = tokio::time::timeout(message::DRAIN_TIME, drained).await;
            }
        }
    });
    ChannelBody(rx).boxed()
}

type Sender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// Where the archive's bytes come from: the client's body, or the gzip
/// decoder reading it on a blocking thread.
enum Source {
    Plain(Body, Option<Bytes>),
    Gzip(mpsc::Receiver<Result<Bytes, String>>),
}

impl Source {
    async fn next(&mut self) -> Option<Result<Bytes, Reject>> {
        match self {
            Source::Plain(body, first) => {
                if let Some(first) = first.take() {
                    return Some(Ok(first));
                }
                loop {
                    match body.frame().await? {
                        Ok(frame) => match frame.into_data() {
                            Ok(data) => return Some(Ok(data)),
                            Err(_) => continue, // trailers
                        },
                        Err(err) => return Some(Err(read_error(err))),
                    }
                }
            }
            Source::Gzip(rx) => {
                Some(rx.recv().await?.map_err(|err| {
                    unreadable_archive(format!("its gzip stream is broken ({err})"))
                }))
            }
        }
    }
}

fn read_error(err: impl std::fmt::Display) -> Reject {
    Reject::bad_request(
        "body-read",
        format!("failed to read the request body: {err}"),
    )
}

async fn pump_load(
    mut body: Body,
    images: &Images,
    state: &LoadState,
    tx: &Sender,
    slot: &mut Option<Source>,
) -> Result<(), Reject> {
    // Enough of the start to tell the compression, as dockerd does.
    let mut head = Vec::new();
    while head.len() < loadscan::DETECT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            Some(Err(err)) => return Err(read_error(err)),
            None => break,
        }
    }
    let head = Bytes::from(head);
    let source = slot.insert(match loadscan::detect(&head) {
        Compression::None => Source::Plain(body, Some(head)),
        Compression::Gzip => Source::Gzip(gunzip(body, head)),
        Compression::Other(kind) => {
            *slot = Some(Source::Plain(body, None));
            return Err(unreadable_archive(format!(
                "it is {kind}-compressed, which this proxy does not read"
            )));
        }
    });
    let mut scanner = Scanner::new();
    let mut pieces = Vec::new();
    // The first bytes of what dockerd gets: it would decompress again
    // what starts like a compressed stream.
    let mut start: Vec<u8> = Vec::with_capacity(loadscan::DETECT_BYTES);
    let mut held: Option<Bytes> = None;
    let mut released = false;
    while let Some(chunk) = source.next().await {
        let chunk = chunk?;
        if chunk.is_empty() {
            continue;
        }
        if start.len() < loadscan::DETECT_BYTES {
            let n = chunk.len().min(loadscan::DETECT_BYTES - start.len());
            start.extend_from_slice(&chunk[..n]);
            compressed_twice(&start)?;
        }
        if released {
            send(tx, chunk).await;
            continue;
        }
        pieces.clear();
        let step = scanner.feed(&chunk, &mut pieces)?;
        // Everything but the last byte goes on.
        for piece in pieces.drain(..) {
            let piece = match piece {
                Piece::Input(range) => chunk.slice(range),
                Piece::Owned(bytes) => Bytes::from(bytes),
            };
            if piece.is_empty() {
                continue;
            }
            if let Some(byte) = held.take() {
                send(tx, byte).await;
            }
            let last = piece.len() - 1;
            send(tx, piece.slice(..last)).await;
            held = Some(piece.slice(last..));
        }
        if let Step::End(end) = step {
            check_load(&scanner, images, state).await?;
            if let Some(byte) = held.take() {
                send(tx, byte).await;
            }
            send(tx, chunk.slice(end..)).await;
            released = true;
        }
    }
    if !released {
        scanner.finish()?;
        check_load(&scanner, images, state).await?;
        if let Some(byte) = held {
            send(tx, byte).await;
        }
    }
    Ok(())
}

fn compressed_twice(start: &[u8]) -> Result<(), Reject> {
    match loadscan::detect(start) {
        Compression::None => Ok(()),
        _ => Err(unreadable_archive("it is compressed twice")),
    }
}

/// Forwards a piece (a closed channel means dockerd stopped reading: its
/// answer says why).
async fn send(tx: &Sender, data: Bytes) {
    if !data.is_empty() {
        let _ = tx.send(Ok(Frame::data(data))).await;
    }
}

/// Checks the tags of a whole archive (dockerd got it without them): those
/// of the file dockerd reads them from, which the proxy sets once dockerd
/// has loaded the images. That is `manifest.json`, except in the containerd
/// image store with an OCI layout (an `oci-layout` with a version), where it
/// is `index.json` (containerd `archive.ImportIndex`). An archive with tags
/// only in the legacy `repositories` (which dockerd reads without a
/// `manifest.json`) is refused; the names of the file dockerd does not read
/// went to it stripped all the same.
async fn check_load(scanner: &Scanner, images: &Images, state: &LoadState) -> Result<(), Reject> {
    scanner.tags()?;
    let containerd = images.containerd_store().await?;
    *lock(&state.containerd) = containerd;
    let read = if containerd && scanner.is_oci_layout()? {
        scanner.index()?
    } else {
        scanner.manifest()?
    };
    let Some(manifest) = read else {
        if !scanner.tags_of(TagFile::Repositories)?.is_empty() {
            return Err(unreadable_archive(
                "its tags are in a legacy `repositories` file without a manifest.json, which the proxy cannot take out of the load",
            ));
        }
        return Ok(());
    };
    let mut entries = Vec::with_capacity(manifest.len());
    let mut unique: Vec<Tag> = Vec::new();
    for texts in manifest {
        let mut tags: Vec<Tag> = Vec::new();
        for text in texts {
            let tag = tag_of(&text)?;
            if !unique.contains(&tag) {
                unique.push(tag.clone());
            }
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        entries.push(tags);
    }
    for tag in &unique {
        images.check(tag, "loading an image tagged").await?;
    }
    *lock(&state.entries) = entries;
    Ok(())
}

/// Decompresses a gzip body (every member, as Go's reader does) on a
/// blocking thread, in bounded pieces: the proxy forwards the archive
/// itself, so dockerd reads exactly the bytes that were scanned.
fn gunzip(mut body: Body, head: Bytes) -> mpsc::Receiver<Result<Bytes, String>> {
    let (in_tx, in_rx) = mpsc::channel::<Result<Bytes, String>>(4);
    let (out_tx, out_rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if in_tx.send(Ok(head)).await.is_err() {
            return;
        }
        while let Some(frame) = body.frame().await {
            let piece = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => Ok(data),
                    Err(_) => continue,
                },
                Err(err) => Err(err.to_string()),
            };
            let failed = piece.is_err();
            if in_tx.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    tokio::task::spawn_blocking(move || {
        let mut decoder = flate2::read::MultiGzDecoder::new(ChannelReader {
            rx: in_rx,
            current: Bytes::new(),
        });
        let mut buf = vec![0; 64 << 10];
        loop {
            match decoder.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if out_tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(err) => {
                    let _ = out_tx.blocking_send(Err(err.to_string()));
                    return;
                }
            }
        }
    });
    out_rx
}

/// The client's body as a blocking reader (on the decoder's thread).
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(data)) => self.current = data,
                Some(Err(err)) => return Err(std::io::Error::other(err)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// dockerd's answer, to be passed on with lines the proxy adds at its end:
/// no hop-by-hop headers, and no `Content-Length`.
/// The next data frame of dockerd's answer (trailers skipped); `None` at its
/// end, or once a read error has been passed on to the client.
pub(super) async fn next_data(
    body: &mut Incoming,
    tx: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> Option<Bytes> {
    loop {
        match body.frame().await? {
            Ok(frame) => match frame.into_data() {
                Ok(data) => return Some(data),
                Err(_) => continue,
            },
            Err(err) => {
                let _ = tx.send(Err(BoxError::from(err))).await;
                return None;
            }
        }
    }
}

fn to_extend(response: Response<Incoming>) -> (http::response::Parts, Incoming) {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    (parts, body)
}
