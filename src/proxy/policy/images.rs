//! Image tags in standalone mode (`--owner-label`): the pure half.
//!
//! Images stay shared between owners, but a tag is a name another CI job
//! runs (`app:latest`), so a tenant may only set or remove a tag that is
//! free or that points to an image it made or put there itself:
//!
//! - an image whose config carries the owner label: builds get it through
//!   the `labels` parameter, commits and imports through a `LABEL` change the
//!   proxy appends ([`owner_label_change`]); the injected label always wins
//!   over the tenant's own labels, so no other owner can make such an image;
//! - or a tag this proxy set itself (a load, a pull, a `docker tag`) that
//!   still points to the image it set it to ([`Recorded`]). Ownership of
//!   unlabelled images is recorded per tag, not per image id: an image id is
//!   not exclusive (anyone can pull the same public image, or `docker save`
//!   another owner's image and load it back, and get the same id).
//!
//! A pull may also refresh a tag whose image has no owner label and was
//! pulled from (or pushed to) that same repository (its `RepoDigests`): two
//! jobs pulling `busybox` is the common case, and the new content comes from
//! the source the tag already came from. Such a refresh records nothing.
//!
//! `proxy::tags` asks dockerd (`GET /images/{tag}/json`) and applies these
//! rules; `proxy::loadscan` finds the tags inside a `docker load` archive.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use http::StatusCode;
use serde_json::Value;

use super::ownership::{self, Owner};
use super::Reject;
use crate::proxy::gojson::{fold_eq, Json};
use crate::proxy::route::{Endpoint, Route};

/// The rule name in refusals and metrics.
pub const RULE: &str = "image-tag";

/// An image reference as dockerd's `reference.ParseNormalizedNamed` reads
/// it: the full name (`docker.io/library/app`), and a tag and a digest when
/// it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// A tag as dockerd stores it: a full name and a tag, `latest` when none
/// was given (`app` is `docker.io/library/app:latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    pub name: String,
    pub tag: String,
}

impl Tag {
    /// The key it is recorded under: `docker.io/library/app:latest`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// How the Docker CLI prints it (`app:latest`, `user/app:1`,
    /// `registry:5000/app:latest`); also what the proxy asks dockerd about.
    pub fn familiar(&self) -> String {
        let name = self
            .name
            .strip_prefix("docker.io/library/")
            .filter(|rest| !rest.contains('/'))
            .or_else(|| self.name.strip_prefix("docker.io/"))
            .unwrap_or(&self.name);
        format!("{name}:{}", self.tag)
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.familiar())
    }
}

/// Parses `[domain/]path[:tag][@digest]` and normalises the name as
/// dockerd does (`splitDockerDomain`): a first component with a `.` or a
/// `:`, `localhost`, or upper case is a registry; otherwise the registry is
/// `docker.io`, and a single component is under `library/`;
/// `index.docker.io` is `docker.io`. Only the shape is checked: dockerd
/// refuses what is not a valid name, and the proxy never lets a name it
/// could not read through (the callers refuse `None`).
pub fn parse_reference(text: &str) -> Option<Reference> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => {
            if !digest.contains(':') || digest.contains('@') {
                return None;
            }
            (rest, Some(digest.to_string()))
        }
        None => (text, None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag.to_string())),
        _ => (rest, None),
    };
    if name.is_empty() || tag.as_deref() == Some("") || name.ends_with('/') || name.contains("//") {
        return None;
    }
    Some(Reference {
        name: normalise_name(name),
        tag,
        digest,
    })
}

fn normalise_name(name: &str) -> String {
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let remainder = if domain == "docker.io" && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder
    };
    format!("{domain}/{remainder}")
}

/// The tag a request sets from a `repo` and a `tag` parameter, as dockerd's
/// `RepoTagReference` (commit), `TagImage` and `ImportImage` combine them: the
/// `tag` parameter wins over a tag in `repo`, and `latest` is the default.
/// `None` when `repo` is empty (no tag is set). A digest cannot be tagged:
/// dockerd refuses it, and so does the proxy.
pub fn repo_tag(repo: &str, tag: &str) -> Result<Option<Tag>, Reject> {
    if repo.is_empty() {
        return Ok(None);
    }
    let reference = parse_reference(repo).ok_or_else(|| invalid_reference(repo))?;
    if reference.digest.is_some() {
        return Err(invalid_reference(repo));
    }
    let tag = match tag {
        "" => reference.tag.unwrap_or_else(|| "latest".into()),
        tag if tag.contains([':', '/', '@']) => return Err(invalid_reference(tag)),
        tag => tag.to_string(),
    };
    Ok(Some(Tag {
        name: reference.name,
        tag,
    }))
}

/// A reference a tenant gave that must name a tag (`build -t`, a tag inside
/// a `docker load` archive): `latest` when it has none; a digest is refused.
pub fn tag_of(text: &str) -> Result<Tag, Reject> {
    repo_tag(text, "")?.ok_or_else(|| invalid_reference(text))
}

fn invalid_reference(text: &str) -> Reject {
    Reject::bad_request(
        RULE,
        format!("{text:?} is not a tag this proxy can check (name[:tag], no digest)"),
    )
}

/// What a request does to tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    None,
    /// `build -t` (every `t`), `commit`, `import`: the new image carries
    /// the owner label; the tags are withheld ([`withhold_tags`]) and set by
    /// the proxy once the image exists.
    Set(Vec<Tag>),
    /// `POST /images/{source}/tag`.
    Tag {
        source: String,
        tag: Tag,
    },
    /// `POST /images/create?fromImage=`: a pull of one tag.
    Pull(Tag),
    /// `DELETE /images/{name}`: a tag, a digest reference, or an image id.
    Remove(String),
    /// `POST /images/load`: the tags are inside the archive.
    Load,
}

/// The tags a request would set or remove, read from its route as dockerd
/// reads the parameters (`FormValue`: the first value; `t` of a build: every
/// value).
pub fn tag_change(route: &Route) -> Result<TagChange, Reject> {
    let q = |name: &str| route.query.first(name).unwrap_or("");
    let change = match route.endpoint {
        Endpoint::ImageTag => match repo_tag(q("repo"), q("tag"))? {
            Some(tag) => TagChange::Tag {
                source: route.param().unwrap_or_default().to_string(),
                tag,
            },
            // dockerd refuses an empty repo.
            None => TagChange::None,
        },
        Endpoint::Build => {
            let tags = route
                .query
                .0
                .iter()
                .filter(|(k, v)| k == "t" && !v.is_empty())
                .map(|(_, v)| tag_of(v))
                .collect::<Result<Vec<_>, _>>()?;
            TagChange::Set(tags)
        }
        Endpoint::Commit => TagChange::Set(repo_tag(q("repo"), q("tag"))?.into_iter().collect()),
        Endpoint::ImageCreate if !q("fromImage").is_empty() => {
            pull_target(q("fromImage"), q("tag"))?
        }
        Endpoint::ImageCreate => {
            TagChange::Set(repo_tag(q("repo"), q("tag"))?.into_iter().collect())
        }
        Endpoint::ImageRemove => TagChange::Remove(route.param().unwrap_or_default().to_string()),
        Endpoint::ImageLoad => TagChange::Load,
        _ => TagChange::None,
    };
    Ok(change)
}

/// A request that makes an image and tags it: in owner mode its tag
/// parameters are taken off ([`withhold_tags`]) and the proxy sets the tags
/// itself on the id dockerd answers, each checked again just before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker {
    /// `POST /build`; `quiet` (`q`): dockerd prints no "Successfully"
    /// lines, nor does the proxy.
    Build { quiet: bool },
    /// `POST /commit`: one JSON answer, `{"Id":"sha256:..."}`.
    Commit,
    /// `POST /images/create?fromSrc=`: a message stream ending with
    /// `{"status":"sha256:..."}`.
    Import,
}

/// Takes the tag parameters off a build (`t`), a commit or an import
/// (`repo`, `tag`), so dockerd makes the image untagged and the tags move
/// only when the proxy sets them, right after checking them again: a build
/// can take minutes, and a tag checked at its start may have been taken by
/// another owner by its end. `None` for any other request.
pub fn withhold_tags(route: &mut Route) -> Option<Maker> {
    let import = route.query.first("fromImage").unwrap_or("").is_empty();
    let maker = match route.endpoint {
        Endpoint::Build => Maker::Build {
            quiet: go_bool(route.query.first("q").unwrap_or("")),
        },
        Endpoint::Commit => Maker::Commit,
        Endpoint::ImageCreate if import => Maker::Import,
        _ => return None,
    };
    let withheld: &[&str] = match maker {
        Maker::Build { .. } => &["t"],
        Maker::Commit | Maker::Import => &["repo", "tag"],
    };
    route
        .query
        .0
        .retain(|(k, _)| !withheld.contains(&k.as_str()));
    Some(maker)
}

/// dockerd's `httputils.BoolValue`.
fn go_bool(value: &str) -> bool {
    let value = value.trim().to_lowercase();
    !matches!(value.as_str(), "" | "0" | "no" | "false" | "none")
}

/// dockerd's `PullImage(fromImage, tag)`: `tag` wins over a tag in
/// `fromImage` and may be a digest; no tag and no digest pulls every tag.
fn pull_target(image: &str, tag: &str) -> Result<TagChange, Reject> {
    let reference = parse_reference(image).ok_or_else(|| invalid_reference(image))?;
    if tag.contains(':') || (tag.is_empty() && reference.digest.is_some()) {
        // By digest: no tag moves.
        return Ok(TagChange::None);
    }
    let tag = match (tag, reference.tag) {
        ("", Some(own)) => own,
        ("", None) => {
            return Err(Reject::forbidden(
                RULE,
                "pulling every tag of a repository (docker pull -a)",
                "each tag could move one another owner uses; pull the tags you need one by one",
            ))
        }
        (tag, _) if tag.contains(['/', '@']) => return Err(invalid_reference(tag)),
        (tag, _) => tag.to_string(),
    };
    Ok(TagChange::Pull(Tag {
        name: reference.name,
        tag,
    }))
}

/// Who a tag's current image (dockerd's `GET /images/{tag}/json`) belongs
/// to, as far as moving the tag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The tag does not exist.
    Free,
    /// Its image carries the owner label, or this proxy set the tag to it.
    Owned,
    /// A pull may refresh it from the repository it came from (nothing is recorded).
    Refresh,
    Foreign,
}

/// Decides whether the owner may move `tag`, given dockerd's inspect of
/// the image it points to (`None`: no such tag) and the image id this proxy
/// recorded setting it to.
pub fn judge(
    owner: &Owner,
    tag: &Tag,
    image: Option<&Value>,
    recorded: Option<&str>,
    pull: bool,
) -> Verdict {
    let Some(image) = image else {
        return Verdict::Free;
    };
    let labels = image.pointer("/Config/Labels");
    if ownership::owns(owner, labels) {
        return Verdict::Owned;
    }
    if recorded.is_some() && recorded == image_id(image) {
        return Verdict::Owned;
    }
    if pull
        && ownership::label(owner, labels) == ownership::Label::Missing
        && pulled_from(image, &tag.name)
    {
        return Verdict::Refresh;
    }
    Verdict::Foreign
}

/// Whether the image's `RepoDigests` name the repository `name`.
fn pulled_from(image: &Value, name: &str) -> bool {
    image
        .get("RepoDigests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(parse_reference)
        .any(|r| r.name == name)
}

pub fn image_id(image: &Value) -> Option<&str> {
    image
        .get("Id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
}

/// The refusal for a tag another owner's image holds.
pub fn tag_taken(what: &str, tag: &Tag) -> Reject {
    Reject::forbidden(
        RULE,
        &format!("{what} {}", tag.familiar()),
        "the tag points to an image another owner made or loaded; choose another name",
    )
}

/// `DELETE /images/{name}`: what dockerd would remove, and whether the owner
/// may. dockerd resolves `name` (a tag first, then an id prefix); when `name`
/// is a prefix of the resolved id (`isImageIDPrefix`, checked after the tag
/// lookup, as dockerd does), or a digest reference, the image itself goes
/// (with `force`, every tag of it): allowed for an image with the owner
/// label, or when every tag it has is one this proxy set to it. Otherwise one
/// tag goes, under the rule for moving it. Returns the tag removed, if one.
pub fn removal(
    owner: &Owner,
    name: &str,
    image: &Value,
    recorded: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Tag>, Reject> {
    let id = image_id(image).unwrap_or_default();
    let owned_by_label = ownership::owns(owner, image.pointer("/Config/Labels"));
    let hex = id.split_once(':').map_or(id, |(_, hex)| hex);
    let by_id = id.starts_with(name) || hex.starts_with(name) || name.contains('@');
    if by_id {
        if owned_by_label {
            return Ok(None);
        }
        for repo_tag in image
            .get("RepoTags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let mine = parse_reference(repo_tag)
                .and_then(|r| r.tag.map(|tag| Tag { name: r.name, tag }))
                .is_some_and(|tag| recorded(&tag.key()).as_deref() == Some(id));
            if !mine {
                return Err(Reject::forbidden(
                    RULE,
                    &format!("removing image {name}"),
                    format!(
                        "it has the tag {repo_tag}, which points to an image another owner made or loaded; remove your own tags by name instead"
                    ),
                ));
            }
        }
        return Ok(None);
    }
    let tag = tag_of(name)?;
    if owned_by_label || recorded(&tag.key()).as_deref() == Some(id) {
        Ok(Some(tag))
    } else {
        Err(tag_taken("removing the tag", &tag))
    }
}

/// The `changes` line that puts the owner label on a committed or imported
/// image. dockerd applies `changes` after the request's own config, in
/// order, so appended last it wins. The owner label is written quoted and
/// only when it needs no escaping (the escape character can be changed by a
/// parser directive in the tenant's own changes).
pub fn owner_label_change(owner: &Owner) -> Result<String, Reject> {
    let plain = |s: &str| {
        !s.chars()
            .any(|c| matches!(c, '"' | '\\' | '$' | '`') || c.is_control())
    };
    if !plain(&owner.0) || !plain(&owner.1) {
        return Err(Reject::forbidden(
            RULE,
            "committing or importing an image here",
            "the owner label has characters that cannot be written into a LABEL change safely (\", \\, $, `)",
        ));
    }
    Ok(format!("LABEL \"{}\"=\"{}\"", owner.0, owner.1))
}

/// Whether the request creates an image from a commit or an import, which
/// must then get [`owner_label_change`].
pub fn labels_through_changes(route: &Route) -> bool {
    match route.endpoint {
        Endpoint::Commit => true,
        Endpoint::ImageCreate => route.query.first("fromImage").unwrap_or("").is_empty(),
        _ => false,
    }
}

/// The tags this proxy set itself, with the image id it set each to.
/// In memory only: a restarted proxy forgets them, so its tenant can no longer
/// move the tags it loaded or pulled before (its built, committed and imported
/// images carry the owner label and stay its own): that fails closed.
#[derive(Debug, Default)]
pub struct Recorded {
    tags: Mutex<HashMap<String, String>>,
}

/// Past this many tags the proxy stops recording (and logs it): the tenant
/// can then not move the newer ones, which fails closed.
pub const MAX_RECORDED: usize = 100_000;

impl Recorded {
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    /// Records `tag` as set to `id`; false when the record is full.
    pub fn set(&self, tag: &Tag, id: &str) -> bool {
        let mut tags = self.lock();
        let key = tag.key();
        if tags.len() >= MAX_RECORDED && !tags.contains_key(&key) {
            return false;
        }
        tags.insert(key, id.to_string());
        true
    }

    pub fn forget(&self, tag: &Tag) {
        self.lock().remove(&tag.key());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads dockerd's JSON message stream (one message a line, as its
/// `streamformatter` writes them) as it passes to the client: whether it
/// carried an error, and the image id a build or an import announced.
/// Only dockerd's own messages count: what a build's `RUN` prints arrives
/// JSON-escaped inside `stream` strings, never as a message of its own, and
/// dockerd prints its "Successfully built" line last.
#[derive(Debug, Default)]
pub struct MessageScan {
    line: Vec<u8>,
    overlong: bool,
    failed: bool,
    /// The last `{"aux":{"ID":"sha256:..."}}` (a build, since API 1.30).
    aux: Option<String>,
    /// The last `{"stream":"Successfully built <short id>\n"}` (the classic builder).
    built: Option<String>,
    /// The last `{"stream":"sha256:...\n"}`: all a quiet build (`q`) prints,
    /// once it is done (what its steps print is not sent).
    quiet: Option<String>,
    /// The last `{"status":"sha256:..."}` (an import).
    status: Option<String>,
}

/// A message longer than this is not one the scan looks for: skipped.
const MESSAGE_LIMIT: usize = 1 << 20;

impl MessageScan {
    pub fn feed(&mut self, data: &[u8]) {
        for piece in data.split_inclusive(|b| *b == b'\n') {
            if !self.overlong {
                if self.line.len() + piece.len() > MESSAGE_LIMIT {
                    self.overlong = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(piece);
                }
            }
            if piece.ends_with(b"\n") {
                self.end_line();
            }
        }
    }

    /// The stream ended: reads a last message without its newline.
    pub fn finish(&mut self) {
        self.end_line();
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.overlong) {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            return;
        };
        let text = |key: &str| message.get(key).and_then(Value::as_str);
        if message.get("error").is_some_and(|e| !e.is_null())
            || message.get("errorDetail").is_some_and(|e| !e.is_null())
        {
            self.failed = true;
        }
        if let Some(id) = message.pointer("/aux/ID").and_then(Value::as_str) {
            if is_image_id(id) {
                self.aux = Some(id.to_string());
            }
        }
        if let Some(short) = text("stream")
            .and_then(|s| s.strip_prefix("Successfully built "))
            .and_then(|s| s.strip_suffix('\n'))
        {
            if !short.is_empty() && short.len() <= 64 && short.bytes().all(is_lower_hex) {
                self.built = Some(short.to_string());
            }
        }
        if let Some(id) = text("stream")
            .and_then(|s| s.strip_suffix('\n'))
            .filter(|s| is_image_id(s))
        {
            self.quiet = Some(id.to_string());
        }
        if let Some(id) = text("status").filter(|s| is_image_id(s)) {
            self.status = Some(id.to_string());
        }
    }

    /// Whether a message carried an error (dockerd failed the request).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The id of the image the request made: a build's `aux` id, or its
    /// "Successfully built" short id, or for a quiet build the id it prints
    /// at the end (dockerd sends nothing else then); an import's last status
    /// id.
    pub fn image_id(&self, maker: Maker) -> Option<&str> {
        match maker {
            Maker::Build { quiet: true } => self.quiet.as_deref(),
            Maker::Build { quiet: false } => self.aux.as_deref().or(self.built.as_deref()),
            Maker::Import => self.status.as_deref(),
            Maker::Commit => None,
        }
    }
}

/// The id in a commit's answer (`{"Id":"sha256:..."}`).
pub fn committed_id(answer: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(answer).ok()?;
    image_id(&answer)
        .filter(|id| is_image_id(id))
        .map(str::to_string)
}

/// `sha256:` and 64 lower-case hex digits.
fn is_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(is_lower_hex))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// The files of a `docker load` archive that name tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagFile {
    /// `manifest.json`: `[{"Config":..,"RepoTags":[..],"Layers":[..]}]`.
    Manifest,
    /// The legacy `repositories`: `{"repo":{"tag":"id"}}`, read when there is
    /// no `manifest.json`.
    Repositories,
    /// An OCI layout's `index.json` (the containerd image store reads tags
    /// from its annotations).
    Index,
    /// An OCI layout's `oci-layout`: names no tag, but with a version in it
    /// the containerd image store reads `index.json` and not `manifest.json`
    /// (containerd `archive.ImportIndex`).
    Layout,
}

impl TagFile {
    pub const ALL: [TagFile; 4] = [
        TagFile::Manifest,
        TagFile::Repositories,
        TagFile::Index,
        TagFile::Layout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TagFile::Manifest => "manifest.json",
            TagFile::Repositories => "repositories",
            TagFile::Index => "index.json",
            TagFile::Layout => "oci-layout",
        }
    }

    pub fn of(path: &str) -> Option<TagFile> {
        TagFile::ALL.into_iter().find(|f| f.name() == path)
    }
}

/// Every tag the tag files of a load archive name, as written (dockerd
/// parses them with `ParseNormalizedNamed`). Go's decoder matches field
/// names case-insensitively and lets the last duplicate win; every
/// candidate is collected, so the proxy checks at least what dockerd reads.
pub fn archive_tags(file: TagFile, content: &[u8]) -> Result<Vec<String>, Reject> {
    let bad = |why: &str| {
        Reject::bad_request(
            RULE,
            format!("the archive's {} {why}; dockerd could not load it either, or not as the proxy reads it", file.name()),
        )
    };
    let json = Json::parse(content).map_err(|_| bad("is not valid JSON"))?;
    let strings = |value: &Json, out: &mut Vec<String>| -> Result<(), Reject> {
        match value {
            Json::Null => Ok(()),
            Json::Array(items) => items.iter().try_for_each(|item| match item {
                Json::String(s) => {
                    out.push(s.clone());
                    Ok(())
                }
                _ => Err(bad("has a tag that is not a string")),
            }),
            _ => Err(bad("has tags that are not a list")),
        }
    };
    let mut tags = Vec::new();
    match (file, &json) {
        (TagFile::Manifest, Json::Array(items)) => {
            for item in items {
                match item {
                    Json::Null => {}
                    Json::Object(fields) => {
                        for (_, value) in fields.iter().filter(|(k, _)| fold_eq(k, "RepoTags")) {
                            strings(value, &mut tags)?;
                        }
                    }
                    _ => return Err(bad("has an entry that is not an object")),
                }
            }
        }
        (TagFile::Repositories, Json::Object(repos)) => {
            for (repo, tag_map) in repos {
                match tag_map {
                    Json::Null => {}
                    Json::Object(tag_map) => {
                        tags.extend(tag_map.iter().map(|(tag, _)| format!("{repo}:{tag}")))
                    }
                    _ => return Err(bad("maps a repository to something other than tags")),
                }
            }
        }
        (TagFile::Index, Json::Object(fields)) => {
            for (_, manifests) in fields.iter().filter(|(k, _)| fold_eq(k, "manifests")) {
                let Json::Array(manifests) = manifests else {
                    continue;
                };
                for manifest in manifests {
                    let Json::Object(manifest) = manifest else {
                        continue;
                    };
                    for (_, annotations) in
                        manifest.iter().filter(|(k, _)| fold_eq(k, "annotations"))
                    {
                        let Json::Object(annotations) = annotations else {
                            continue;
                        };
                        for (key, value) in annotations {
                            let named = key == "io.containerd.image.name"
                                || key == "org.opencontainers.image.ref.name";
                            if let (true, Json::String(name)) = (named, value) {
                                tags.push(name.clone());
                            }
                        }
                    }
                }
            }
        }
        (TagFile::Layout, Json::Object(fields)) => {
            let version = fields
                .iter()
                .filter(|(k, _)| fold_eq(k, "imageLayoutVersion"));
            if version
                .clone()
                .any(|(_, v)| !matches!(v, Json::String(_) | Json::Null))
            {
                return Err(bad("has a version that is not a string"));
            }
        }
        (TagFile::Manifest | TagFile::Repositories | TagFile::Layout, Json::Null) => {}
        _ => return Err(bad("does not have the shape dockerd reads")),
    }
    Ok(tags)
}

/// The names an OCI `index.json` gives its images (what dockerd's
/// containerd image store tags them with).
const INDEX_NAMES: [&str; 2] = [
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
];

/// A tag file with its tags taken out, for dockerd to load the images
/// untagged (the proxy tags them afterwards): `manifest.json` without any
/// spelling of `RepoTags`, `index.json` without the name annotations.
/// `None` when there is nothing to take out (the file passes unchanged);
/// `repositories` always passes (dockerd reads it only when there is no
/// `manifest.json`, and such an archive with tags is refused).
pub fn strip_archive_tags(file: TagFile, content: &[u8]) -> Result<Option<Vec<u8>>, Reject> {
    // Refuses what the tag check would refuse; without tags, unchanged.
    if archive_tags(file, content)?.is_empty() {
        return Ok(None);
    }
    let Ok(mut json) = Json::parse(content) else {
        return Ok(None);
    };
    let mut changed = false;
    match (file, &mut json) {
        (TagFile::Manifest, Json::Array(items)) => {
            for item in items {
                if let Json::Object(fields) = item {
                    let before = fields.len();
                    fields.retain(|(k, _)| !fold_eq(k, "RepoTags"));
                    changed |= fields.len() != before;
                }
            }
        }
        (TagFile::Index, Json::Object(fields)) => {
            for (_, manifests) in fields.iter_mut().filter(|(k, _)| fold_eq(k, "manifests")) {
                let Json::Array(manifests) = manifests else {
                    continue;
                };
                for manifest in manifests {
                    let Json::Object(manifest) = manifest else {
                        continue;
                    };
                    for (_, annotations) in manifest
                        .iter_mut()
                        .filter(|(k, _)| fold_eq(k, "annotations"))
                    {
                        let Json::Object(annotations) = annotations else {
                            continue;
                        };
                        let before = annotations.len();
                        annotations.retain(|(k, _)| !INDEX_NAMES.contains(&k.as_str()));
                        changed |= annotations.len() != before;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(changed.then(|| json.to_vec()))
}

/// The tags of each image of a `manifest.json`, in its order (the order
/// dockerd loads them and prints their ids in).
pub fn manifest_entries(content: &[u8]) -> Result<Vec<Vec<String>>, Reject> {
    let Json::Array(items) = Json::parse(content)
        .map_err(|_| unreadable_archive("its manifest.json is not valid JSON"))?
    else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| {
            let single = Json::Array(vec![item.clone()]).to_vec();
            archive_tags(TagFile::Manifest, &single)
        })
        .collect()
}

/// Whether a daemon's `GET /info` answer says it keeps images in the
/// containerd image store: `DriverStatus` holds `["driver-type",
/// "io.containerd.snapshotter.v1"]` (moby `daemon/containerd/service.go`).
pub fn uses_containerd_store(info: &Value) -> bool {
    info.get("DriverStatus")
        .and_then(Value::as_array)
        .is_some_and(|pairs| {
            pairs.iter().any(|pair| {
                pair.as_array().is_some_and(|kv| {
                    kv.len() == 2
                        && kv[0] == "driver-type"
                        && kv[1] == "io.containerd.snapshotter.v1"
                })
            })
        })
}

/// Whether an `oci-layout` file makes the containerd image store read the
/// archive as an OCI layout (its `index.json`): a non-empty
/// `imageLayoutVersion`, the last spelling Go matches winning.
pub fn is_oci_layout(content: &[u8]) -> Result<bool, Reject> {
    archive_tags(TagFile::Layout, content)?;
    let Ok(Json::Object(fields)) = Json::parse(content) else {
        return Ok(false);
    };
    let mut version = "";
    for (key, value) in &fields {
        if let (true, Json::String(v)) = (fold_eq(key, "imageLayoutVersion"), value) {
            version = v;
        }
    }
    Ok(!version.is_empty())
}

/// The name the containerd image store gives each image of an OCI
/// `index.json` (none or one), in its order, the order it loads them and
/// prints their ids in: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` (containerd `imageName`; the last of
/// a key wins, as in Go's map). An index that spells `manifests`, or an
/// entry that spells `annotations`, more than once is refused: Go would
/// decode the second into what the first left (a slice's elements, a map).
pub fn index_entries(content: &[u8]) -> Result<Vec<Vec<String>>, Reject> {
    archive_tags(TagFile::Index, content)?;
    let twice = |what: &str| {
        unreadable_archive(format!(
            "its index.json has {what} twice (in any letter case)"
        ))
    };
    let Ok(Json::Object(fields)) = Json::parse(content) else {
        return Ok(Vec::new());
    };
    let mut lists = fields.iter().filter(|(k, _)| fold_eq(k, "manifests"));
    let Some((_, manifests)) = lists.next() else {
        return Ok(Vec::new());
    };
    if lists.next().is_some() {
        return Err(twice("\"manifests\""));
    }
    let Json::Array(manifests) = manifests else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::with_capacity(manifests.len());
    for manifest in manifests {
        let Json::Object(manifest) = manifest else {
            entries.push(Vec::new());
            continue;
        };
        let mut maps = manifest.iter().filter(|(k, _)| fold_eq(k, "annotations"));
        let annotations = match (maps.next(), maps.next()) {
            (_, Some(_)) => return Err(twice("\"annotations\" in one entry")),
            (Some((_, Json::Object(annotations))), None) => annotations.as_slice(),
            _ => &[],
        };
        let last = |key: &str| {
            annotations.iter().rev().find_map(|(k, v)| match v {
                Json::String(name) if k == key => Some(name.as_str()),
                _ => None,
            })
        };
        let name = [INDEX_NAMES[0], INDEX_NAMES[1]]
            .into_iter()
            .filter_map(last)
            .find(|name| !name.is_empty());
        entries.push(name.map(str::to_string).into_iter().collect());
    }
    Ok(entries)
}

/// The image ids of a message of dockerd's load answer made only of
/// `Loaded image ID: sha256:...` lines (what it prints, all in one message,
/// when the last image it loaded had no tag); `None` for any other message.
pub fn loaded_ids(line: &[u8]) -> Option<Vec<String>> {
    let message: Value = serde_json::from_slice(line).ok()?;
    let fields = message.as_object()?;
    if fields.len() != 1 {
        return None;
    }
    let text = fields.get("stream")?.as_str()?;
    let mut ids = Vec::new();
    for line in text.split_inclusive('\n') {
        let id = line
            .strip_prefix("Loaded image ID: ")?
            .strip_suffix('\n')
            .filter(|id| is_image_id(id))?;
        ids.push(id.to_string());
    }
    (!ids.is_empty()).then_some(ids)
}

/// Pairs the ids dockerd loaded (one per manifest entry, in order) with the
/// tags each entry had; `None` when they do not pair up.
pub fn pair_loaded<T: Clone>(entries: &[Vec<T>], ids: &[String]) -> Option<Vec<(String, Vec<T>)>> {
    (entries.len() == ids.len()).then(|| ids.iter().cloned().zip(entries.iter().cloned()).collect())
}

/// The refusals for a load archive the proxy cannot read as dockerd would.
pub fn unreadable_archive(why: impl std::fmt::Display) -> Reject {
    Reject {
        status: StatusCode::BAD_REQUEST,
        rule: RULE,
        message: format!(
            "dindbox: this image archive cannot be loaded here: {why} (load an uncompressed or gzip tar made by docker save)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route::route;
    use http::Method;
    use serde_json::json;

    fn owner() -> Owner {
        ("ci.owner".into(), "a".into())
    }

    fn tag(text: &str) -> Tag {
        tag_of(text).unwrap()
    }

    #[test]
    fn references_normalise_as_dockerd_does() {
        for (text, key) in [
            ("app", "docker.io/library/app:latest"),
            ("app:1", "docker.io/library/app:1"),
            ("docker.io/library/app", "docker.io/library/app:latest"),
            ("docker.io/app:v2", "docker.io/library/app:v2"),
            (
                "index.docker.io/library/app",
                "docker.io/library/app:latest",
            ),
            ("user/app", "docker.io/user/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("registry.example:5000/a/b:c", "registry.example:5000/a/b:c"),
        ] {
            assert_eq!(tag(text).key(), key, "{text}");
        }
        assert_eq!(tag("app").familiar(), "app:latest");
        assert_eq!(tag("docker.io/user/app").familiar(), "user/app:latest");
        assert_eq!(
            tag("localhost:5000/app").familiar(),
            "localhost:5000/app:latest"
        );
        assert!(
            tag_of("app@sha256:0123456789abcdef0123456789abcdef").is_err(),
            "digests are not tags"
        );
        assert!(tag_of("").is_err());
        assert!(tag_of("a b").is_err());
        assert!(tag_of("app:").is_err());
    }

    #[test]
    fn repo_and_tag_parameters_combine_as_dockerd_combines_them() {
        assert_eq!(repo_tag("", "x").unwrap(), None);
        assert_eq!(repo_tag("app", "").unwrap(), Some(tag("app:latest")));
        assert_eq!(repo_tag("app:1", "").unwrap(), Some(tag("app:1")));
        assert_eq!(repo_tag("app:1", "2").unwrap(), Some(tag("app:2")));
        assert!(repo_tag("app", "a/b").is_err());
        assert!(repo_tag("app@sha256:00", "").is_err());
    }

    fn change(method: Method, target: &str) -> TagChange {
        let route = route(&method, &target.parse().unwrap()).unwrap();
        tag_change(&route).unwrap()
    }

    #[test]
    fn builds_commits_and_imports_reach_dockerd_without_their_tags() {
        let withheld = |target: &str| {
            let mut route = route(&Method::POST, &target.parse().unwrap()).unwrap();
            let maker = withhold_tags(&mut route);
            (maker, route.target())
        };
        assert_eq!(
            withheld("/v1.41/build?t=app&q=1&t=app:2&labels=x"),
            (
                Some(Maker::Build { quiet: true }),
                "/v1.41/build?q=1&labels=x".into()
            )
        );
        assert_eq!(
            withheld("/v1.41/build?t=app&q=false").0,
            Some(Maker::Build { quiet: false })
        );
        assert_eq!(
            withheld("/v1.41/commit?container=c&repo=app&tag=1&changes=X"),
            (
                Some(Maker::Commit),
                "/v1.41/commit?container=c&changes=X".into()
            )
        );
        assert_eq!(
            withheld("/v1.41/images/create?fromSrc=-&repo=app&tag=1&fromImage="),
            (
                Some(Maker::Import),
                "/v1.41/images/create?fromSrc=-&fromImage=".into()
            )
        );
        assert_eq!(
            withheld("/v1.41/images/create?fromImage=app&tag=1"),
            (None, "/v1.41/images/create?fromImage=app&tag=1".into())
        );
    }

    #[test]
    fn the_made_image_id_is_read_from_dockerds_own_messages() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let mut build = MessageScan::default();
        // What RUN prints is escaped inside a stream string.
        let forged = json!({"stream": format!("{{\"aux\":{{\"ID\":\"{id}\"}}}}\nSuccessfully built 0123\n")});
        build
            .feed(format!("{forged}\r\n{{\"stream\":\"Successfully built 0123\"}}\r\n").as_bytes());
        assert_eq!(build.image_id(Maker::Build { quiet: false }), None);
        let end = format!(
            "{{\"aux\":{{\"ID\":\"{id}\"}}}}\r\n{{\"stream\":\"Successfully built ababababab12\\n\"}}\r\n"
        );
        // Split anywhere: messages are read whole.
        for byte in end.as_bytes().chunks(3) {
            build.feed(byte);
        }
        build.finish();
        assert_eq!(build.image_id(Maker::Build { quiet: false }), Some(&*id));
        assert!(!build.failed());
        let mut classic = MessageScan::default();
        classic.feed(b"{\"stream\":\"Successfully built ababababab12\\n\"}");
        classic.finish();
        assert_eq!(
            classic.image_id(Maker::Build { quiet: false }),
            Some("ababababab12")
        );
        // Quiet (`q`): dockerd sends the id alone, at the end.
        let mut quiet = MessageScan::default();
        quiet.feed(format!("{{\"stream\":\"{id}\\n\"}}\r\n").as_bytes());
        assert_eq!(quiet.image_id(Maker::Build { quiet: true }), Some(&*id));
        assert_eq!(quiet.image_id(Maker::Build { quiet: false }), None);
        let mut failed = MessageScan::default();
        failed.feed(b"{\"errorDetail\":{\"message\":\"x\"},\"error\":\"x\"}\r\n");
        assert!(failed.failed());
        let mut import = MessageScan::default();
        import.feed(
            format!("{{\"status\":\"Downloading\"}}\r\n{{\"status\":\"{id}\"}}\r\n").as_bytes(),
        );
        assert_eq!(import.image_id(Maker::Import), Some(&*id));
        assert_eq!(
            committed_id(format!("{{\"Id\":\"{id}\"}}").as_bytes()),
            Some(id)
        );
        assert_eq!(committed_id(b"{\"Id\":\"abc\"}"), None);
    }

    #[test]
    fn every_request_that_sets_or_removes_a_tag_is_found() {
        assert_eq!(
            change(
                Method::POST,
                "/v1.41/images/busybox/tag?repo=app&tag=latest"
            ),
            TagChange::Tag {
                source: "busybox".into(),
                tag: tag("app")
            }
        );
        assert_eq!(
            change(
                Method::POST,
                "/v1.41/build?t=app&t=docker.io/library/app:2&t="
            ),
            TagChange::Set(vec![tag("app"), tag("app:2")])
        );
        assert_eq!(change(Method::POST, "/v1.41/build"), TagChange::Set(vec![]));
        assert_eq!(
            change(Method::POST, "/v1.41/commit?container=c&repo=app&tag=x"),
            TagChange::Set(vec![tag("app:x")])
        );
        assert_eq!(
            change(Method::POST, "/v1.41/images/create?fromSrc=-&repo=app"),
            TagChange::Set(vec![tag("app")])
        );
        assert_eq!(
            change(
                Method::POST,
                "/v1.41/images/create?fromImage=busybox&tag=1.36"
            ),
            TagChange::Pull(tag("busybox:1.36"))
        );
        assert_eq!(
            change(
                Method::POST,
                "/v1.41/images/create?fromImage=busybox:1.36&tag="
            ),
            TagChange::Pull(tag("busybox:1.36"))
        );
        assert_eq!(
            change(
                Method::POST,
                "/v1.41/images/create?fromImage=busybox&tag=sha256:abcd"
            ),
            TagChange::None,
            "by digest"
        );
        assert_eq!(
            change(Method::DELETE, "/v1.41/images/registry:5000/app:1?force=1"),
            TagChange::Remove("registry:5000/app:1".into())
        );
        assert_eq!(
            change(Method::POST, "/v1.41/images/load?quiet=1"),
            TagChange::Load
        );
        assert_eq!(
            change(Method::GET, "/v1.41/images/app/json"),
            TagChange::None
        );
        let all = route(
            &Method::POST,
            &"/images/create?fromImage=busybox".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(tag_change(&all).unwrap_err().rule, RULE, "pull -a");
    }

    #[test]
    fn a_tag_moves_only_when_free_labelled_mine_or_set_by_this_proxy() {
        let mine = json!({"Id": "sha256:1", "Config": {"Labels": {"ci.owner": "a"}}});
        let theirs = json!({"Id": "sha256:2", "Config": {"Labels": {"ci.owner": "b"}}});
        let loaded = json!({"Id": "sha256:3", "Config": {"Labels": null}});
        let t = tag("app");
        assert_eq!(judge(&owner(), &t, None, None, false), Verdict::Free);
        assert_eq!(
            judge(&owner(), &t, Some(&mine), None, false),
            Verdict::Owned
        );
        assert_eq!(
            judge(&owner(), &t, Some(&theirs), None, false),
            Verdict::Foreign
        );
        assert_eq!(
            judge(&owner(), &t, Some(&loaded), None, false),
            Verdict::Foreign
        );
        assert_eq!(
            judge(&owner(), &t, Some(&loaded), Some("sha256:3"), false),
            Verdict::Owned
        );
        assert_eq!(
            judge(&owner(), &t, Some(&loaded), Some("sha256:9"), false),
            Verdict::Foreign,
            "the tag was moved since this proxy set it"
        );
        assert_eq!(
            judge(&owner(), &t, Some(&theirs), Some("sha256:3"), false),
            Verdict::Foreign
        );
    }

    #[test]
    fn a_pull_refreshes_an_unlabelled_image_from_its_own_repository_only() {
        let pulled = json!({"Id": "sha256:3", "RepoDigests": ["busybox@sha256:ab"], "Config": {}});
        let built = json!({"Id": "sha256:4", "RepoDigests": ["busybox@sha256:ab"],
                           "Config": {"Labels": {"ci.owner": "b"}}});
        let b = tag("busybox");
        assert_eq!(
            judge(&owner(), &b, Some(&pulled), None, true),
            Verdict::Refresh
        );
        assert_eq!(
            judge(&owner(), &b, Some(&pulled), None, false),
            Verdict::Foreign
        );
        assert_eq!(
            judge(&owner(), &b, Some(&built), None, true),
            Verdict::Foreign
        );
        assert_eq!(
            judge(&owner(), &tag("other/busybox"), Some(&pulled), None, true),
            Verdict::Foreign
        );
    }

    #[test]
    fn removal_by_tag_or_by_id_follows_the_same_ownership() {
        let id = "sha256:abcdef0123";
        let loaded = json!({"Id": id, "RepoTags": ["app:latest", "b-app:latest"], "Config": {}});
        let none = |_: &str| None;
        let only_b = |key: &str| (key == "docker.io/library/b-app:latest").then(|| id.to_string());
        let both = |_: &str| Some(id.to_string());
        assert_eq!(
            removal(&owner(), "app", &loaded, &none).unwrap_err().rule,
            RULE
        );
        assert_eq!(
            removal(&owner(), "b-app", &loaded, &only_b).unwrap(),
            Some(tag("b-app"))
        );
        assert!(
            removal(&owner(), "abcdef", &loaded, &only_b).is_err(),
            "by id: app is not mine"
        );
        assert!(removal(&owner(), "sha256:abc", &loaded, &only_b).is_err());
        assert_eq!(removal(&owner(), "abcdef", &loaded, &both).unwrap(), None);
        let dangling = json!({"Id": id, "RepoTags": [], "Config": {}});
        assert_eq!(removal(&owner(), "abc", &dangling, &none).unwrap(), None);
        let labelled =
            json!({"Id": id, "RepoTags": ["app:latest"], "Config": {"Labels": {"ci.owner": "a"}}});
        assert_eq!(removal(&owner(), "abcdef", &labelled, &none).unwrap(), None);
        assert_eq!(
            removal(&owner(), "app", &labelled, &none).unwrap(),
            Some(tag("app"))
        );
        // A tag named like a prefix of the id is an id to dockerd.
        let abc = json!({"Id": id, "RepoTags": ["abc:latest"], "Config": {}});
        let abc_mine = |key: &str| (key == "docker.io/library/abc:latest").then(|| id.to_string());
        assert_eq!(removal(&owner(), "abc", &abc, &abc_mine).unwrap(), None);
    }

    #[test]
    fn the_owner_label_change_is_plain_or_refused() {
        assert_eq!(
            owner_label_change(&owner()).unwrap(),
            r#"LABEL "ci.owner"="a""#
        );
        for value in ["a\"b", "a$b", "a\\b", "a`b", "a\nLABEL x=y"] {
            assert!(
                owner_label_change(&("k".into(), value.into())).is_err(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn archive_tags_are_read_from_every_spelling_go_accepts() {
        let manifest = br#"[{"Config":"c.json","RepoTags":["app:latest"]},
                            {"repotags":["b:1"],"RepoTag\u017f":["c:2"]}, null]"#;
        assert_eq!(
            archive_tags(TagFile::Manifest, manifest).unwrap(),
            ["app:latest", "b:1", "c:2"]
        );
        let repositories = br#"{"app":{"latest":"x","v1":"y"},"b":null}"#;
        assert_eq!(
            archive_tags(TagFile::Repositories, repositories).unwrap(),
            ["app:latest", "app:v1"]
        );
        let index = br#"{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/library/app:latest",
                         "org.opencontainers.image.ref.name":"latest","other":"x"}}]}"#;
        assert_eq!(
            archive_tags(TagFile::Index, index).unwrap(),
            ["docker.io/library/app:latest", "latest"]
        );
        assert!(archive_tags(TagFile::Manifest, b"{}").is_err());
        assert!(archive_tags(TagFile::Manifest, br#"[{"RepoTags":[1]}]"#).is_err());
        assert!(archive_tags(TagFile::Manifest, b"not json").is_err());
    }

    #[test]
    fn the_containerd_store_is_read_from_the_driver_status() {
        let containerd = json!({"Driver": "overlayfs",
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]});
        assert!(uses_containerd_store(&containerd));
        let classic = json!({"Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]});
        assert!(!uses_containerd_store(&classic));
        assert!(!uses_containerd_store(&json!({"DriverStatus": null})));
        assert!(!uses_containerd_store(&json!({})));
    }

    #[test]
    fn an_oci_layout_needs_a_version_as_containerd_reads_it() {
        assert!(is_oci_layout(br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap());
        // Go matches the field in any letter case; the last one wins.
        assert!(is_oci_layout(br#"{"IMAGELAYOUTVERSION":"1.0.0"}"#).unwrap());
        assert!(
            !is_oci_layout(br#"{"imageLayoutVersion":"1.0.0","imagelayoutversion":""}"#).unwrap()
        );
        assert!(is_oci_layout(br#"{"imageLayoutVersion":"","imagelayoutversion":"2"}"#).unwrap());
        assert!(!is_oci_layout(br#"{"imageLayoutVersion":null}"#).unwrap());
        assert!(!is_oci_layout(b"{}").unwrap());
        assert!(!is_oci_layout(b"null").unwrap());
        // containerd fails to decode these: so does the proxy.
        assert!(is_oci_layout(br#"{"imageLayoutVersion":1}"#).is_err());
        assert!(is_oci_layout(b"[]").is_err());
        assert!(is_oci_layout(b"not json").is_err());
    }

    #[test]
    fn each_index_entry_is_named_as_containerd_names_it() {
        // `docker save` in the containerd store: one entry per tag, the same
        // digest twice; the full name wins over the OCI ref name.
        let saved = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:aa","annotations":{"io.containerd.image.name":"docker.io/library/app:latest",
             "org.opencontainers.image.ref.name":"latest"}},
            {"digest":"sha256:aa","annotations":{"io.containerd.image.name":"docker.io/library/app:v2",
             "org.opencontainers.image.ref.name":"v2"}}]}"#;
        assert_eq!(
            index_entries(saved).unwrap(),
            [
                vec!["docker.io/library/app:latest".to_string()],
                vec!["docker.io/library/app:v2".to_string()]
            ]
        );
        // Only a ref name; an empty full name; none; the last of a key.
        let mixed = br#"{"Manifests":[
            {"Annotations":{"org.opencontainers.image.ref.name":"oci:1"}},
            {"annotations":{"io.containerd.image.name":"","org.opencontainers.image.ref.name":"oci:2"}},
            {"annotations":{"other":"x"}},
            {"digest":"sha256:bb"},
            {"annotations":{"io.containerd.image.name":"a:1","io.containerd.image.name":"a:2"}}]}"#;
        assert_eq!(
            index_entries(mixed).unwrap(),
            [
                vec!["oci:1".to_string()],
                vec!["oci:2".to_string()],
                vec![],
                vec![],
                vec!["a:2".to_string()]
            ]
        );
        assert_eq!(index_entries(b"{}").unwrap(), Vec::<Vec<String>>::new());
        // Spellings Go would merge into each other: refused.
        let two_lists = br#"{"manifests":[{}],"MANIFESTS":[{}]}"#;
        assert!(index_entries(two_lists).is_err());
        let two_maps = br#"{"manifests":[{"annotations":{"io.containerd.image.name":"a:1"},
                             "Annotations":{"org.opencontainers.image.ref.name":"b"}}]}"#;
        assert!(index_entries(two_maps).is_err());
        assert!(index_entries(b"[]").is_err());
    }

    #[test]
    fn every_spelling_of_repo_tags_is_taken_out_of_a_manifest() {
        let manifest = br#"[{"Config":"c.json","RepoTags":["app:latest"],"Layers":["l"]},
                            {"repotags":["b:1"],"RepoTag\u017f":["c:2"],"Config":"d.json"}]"#;
        let stripped = strip_archive_tags(TagFile::Manifest, manifest)
            .unwrap()
            .unwrap();
        assert!(archive_tags(TagFile::Manifest, &stripped)
            .unwrap()
            .is_empty());
        assert_eq!(
            serde_json::from_slice::<Value>(&stripped).unwrap(),
            json!([{"Config":"c.json","Layers":["l"]},{"Config":"d.json"}])
        );
        assert_eq!(
            manifest_entries(manifest).unwrap(),
            vec![
                vec!["app:latest".to_string()],
                vec!["b:1".into(), "c:2".into()]
            ]
        );
        let untagged = br#"[{"Config":"c.json","Layers":[]}]"#;
        assert_eq!(
            strip_archive_tags(TagFile::Manifest, untagged).unwrap(),
            None
        );
        assert_eq!(
            strip_archive_tags(TagFile::Repositories, br#"{"a":{"b":"c"}}"#).unwrap(),
            None
        );
        assert!(strip_archive_tags(TagFile::Manifest, br#"[{"RepoTags":[1]}]"#).is_err());
    }

    #[test]
    fn loaded_image_ids_are_read_from_dockerd_s_load_answer_and_paired_in_order() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let line = json!({"stream": format!("Loaded image ID: {a}\nLoaded image ID: {b}\n")});
        let ids = loaded_ids(line.to_string().as_bytes()).unwrap();
        assert_eq!(ids, [a.clone(), b.clone()]);
        for other in [
            json!({"stream": "Loaded image: app:latest\n"}),
            json!({"stream": format!("Loaded image ID: {a}\nsomething else\n")}),
            json!({"stream": "Loaded image ID: sha256:short\n"}),
            json!({"stream": format!("Loaded image ID: {a}\n"), "error": "x"}),
            json!({"status": "Loading layer"}),
        ] {
            assert_eq!(loaded_ids(other.to_string().as_bytes()), None, "{other}");
        }
        let entries = vec![vec!["x:1"], vec![], vec!["y:2", "z:3"]];
        let c = format!("sha256:{}", "c".repeat(64));
        assert_eq!(
            pair_loaded(&entries, &[a.clone(), b.clone(), c.clone()]).unwrap(),
            vec![
                (a.clone(), vec!["x:1"]),
                (b.clone(), vec![]),
                (c, vec!["y:2", "z:3"])
            ]
        );
        assert_eq!(pair_loaded(&entries, &[a, b]), None);
    }
}
