//! Image tags in owner mode (`dindbox proxy --owner-label`), through real
//! sockets: the fake dockerd of `tests/support/dockerd.rs` answering as a
//! daemon that knows images and tags, a proxy for job-1 in
//! front of it, and the tags of job-2 (images labelled `ci.owner=job-2`, or
//! loaded without labels) that job-1 must not move or remove.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dindbox::proxy::policy::Policy;
use serde_json::{json, Value};
use support::dockerd::{Fake, Reply, Seen};
use support::proxy::{call, Sent::*};
use tokio_util::sync::CancellationToken;

const KEY: &str = "ci.owner";
const MINE: &str = "job-1";
const THEIRS: &str = "job-2";

struct Image {
    id: String,
    owner: Option<&'static str>,
    digests: Vec<String>,
}

/// What the fake dockerd knows: images, and tags (`name:tag` → id).
struct Daemon {
    images: Vec<Image>,
    tags: HashMap<String, String>,
    next: usize,
    /// The tags dockerd read from the manifests of loads.
    loaded_tags: Vec<String>,
    /// A request to this path waits for the sender to fire or drop (a slow
    /// build, commit or import): the test changes tags meanwhile.
    gate: Option<(String, tokio::sync::oneshot::Receiver<()>)>,
    /// The registry behind it: `name:tag` → manifest digest.
    registry: HashMap<String, String>,
    /// Images live in the containerd image store (`/info` says so, loads
    /// are read as containerd reads them).
    containerd: bool,
    /// The proxies' tag lock containers: names are unique, as in dockerd.
    locks: Vec<Lock>,
    /// The requests about tag locks (not in `seen`).
    lock_seen: Vec<Seen>,
}

/// A tag lock container.
#[derive(Debug, Clone)]
struct Lock {
    name: String,
    id: String,
    /// Unix seconds, as the container list answers.
    created: i64,
    /// Its `dindbox.taglock` label.
    tag: String,
}

const LOCK_PREFIX: &str = "dindbox-taglock-";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A registry that does not answer.
const UNREACHABLE: &str = "127.0.0.1:5001/";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// `docker.io/library/app@sha256:..` as `app@sha256:..`.
fn short_name(reference: &str) -> &str {
    reference
        .strip_prefix("docker.io/library/")
        .unwrap_or(reference)
}

fn familiar(name: &str) -> String {
    let name = name.strip_prefix("docker.io/library/").unwrap_or(name);
    match name.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => name.to_string(),
        _ => format!("{name}:latest"),
    }
}

impl Daemon {
    fn new() -> Daemon {
        let image = |id: &str, owner, digests: &[&str]| Image {
            id: id.into(),
            owner,
            digests: digests.iter().map(|d| d.to_string()).collect(),
        };
        Daemon {
            images: vec![
                image("sha256:theirs0000", Some(THEIRS), &[]),
                image("sha256:loaded0000", None, &[]),
                image("sha256:busybox000", None, &["busybox@sha256:aa"]),
                image("sha256:mine000000", Some(MINE), &[]),
            ],
            tags: HashMap::from([
                ("app:latest".into(), "sha256:theirs0000".into()),
                ("loaded:latest".into(), "sha256:loaded0000".into()),
                ("busybox:latest".into(), "sha256:busybox000".into()),
                ("mine:latest".into(), "sha256:mine000000".into()),
            ]),
            next: 0,
            loaded_tags: Vec::new(),
            gate: None,
            registry: HashMap::from([
                ("busybox:latest".into(), digest(0xb0)),
                ("b-pulled:1".into(), digest(0xb1)),
                ("b-app:latest".into(), digest(0xb2)),
                ("app:latest".into(), digest(0xa0)),
            ]),
            containerd: false,
            locks: Vec::new(),
            lock_seen: Vec::new(),
        }
    }

    /// Whether a request is one of the proxy's own about tag locks.
    fn is_lock_request(method: &str, path: &str, query: &str) -> bool {
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        match method {
            "POST" => path == "/containers/create" && param("name").starts_with(LOCK_PREFIX),
            "GET" => path == "/containers/json" && param("filters").contains("dindbox.taglock"),
            "DELETE" => path
                .strip_prefix("/containers/")
                .is_some_and(|id| id.starts_with("lock")),
            _ => false,
        }
    }

    /// dockerd's answers about tag locks: a create of a taken name is 409
    /// (dockerd's name registry reserves names atomically); a list filtered
    /// by exact name and label; a removal by id.
    fn lock_answer(&mut self, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        match method {
            "POST" => {
                let name = param("name");
                if let Some(held) = self.locks.iter().find(|l| l.name == name) {
                    let message = format!("Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", held.id);
                    return (409, json!({ "message": message }));
                }
                let config: Value = serde_json::from_slice(body).unwrap();
                assert!(self.resolve(config["Image"].as_str().unwrap()).is_some());
                self.next += 1;
                let id = format!("lock{:060x}", self.next);
                self.locks.push(Lock {
                    name,
                    id: id.clone(),
                    created: unix_now(),
                    tag: config["Labels"]["dindbox.taglock"].as_str().unwrap().into(),
                });
                (201, json!({ "Id": id, "Warnings": [] }))
            }
            "GET" => {
                let filters: Value = serde_json::from_str(&param("filters")).unwrap();
                let names: Vec<&String> = filters["name"].as_object().unwrap().keys().collect();
                let list: Vec<Value> = self
                    .locks
                    .iter()
                    .filter(|l| names.iter().any(|n| **n == format!("^/{}$", l.name)))
                    .map(|l| {
                        json!({"Id": l.id, "Names": [format!("/{}", l.name)], "Created": l.created,
                                    "Labels": {"dindbox.taglock": l.tag}})
                    })
                    .collect();
                (200, Value::Array(list))
            }
            _ => {
                let id = path.strip_prefix("/containers/").unwrap();
                match self.locks.iter().position(|l| l.id == id) {
                    Some(at) => {
                        self.locks.remove(at);
                        (204, Value::Null)
                    }
                    None => (404, json!({"message": format!("No such container: {id}")})),
                }
            }
        }
    }

    /// A load in the containerd image store, as containerd's
    /// `archive.ImportIndex` and dockerd 28's `LoadImage` do it: an OCI
    /// layout (`oci-layout` with a version) is read through `index.json`;
    /// otherwise each `manifest.json` entry is one index entry per RepoTag
    /// (one without). A named entry becomes an image of that name, an
    /// unnamed one a dangling image; one message each, in index order.
    fn containerd_load(&mut self, files: &HashMap<String, Vec<u8>>) -> String {
        let json = |name: &str| {
            files
                .get(name)
                .map(|data| serde_json::from_slice::<Value>(data).unwrap())
                .unwrap_or(Value::Null)
        };
        let layout = json("oci-layout")["imageLayoutVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty());
        let mut index: Vec<(String, Option<String>)> = Vec::new();
        if layout {
            for m in json("index.json")["manifests"].as_array().unwrap() {
                let named = |key: &str| {
                    m["annotations"][key]
                        .as_str()
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                };
                let name = named("io.containerd.image.name")
                    .or_else(|| named("org.opencontainers.image.ref.name"));
                index.push((m["digest"].as_str().unwrap().to_string(), name));
            }
        } else {
            for item in json("manifest.json").as_array().unwrap() {
                let digest = format!("sha256:{:064x}", 0xd000 + index.len());
                let tags: Vec<Option<String>> = match item["RepoTags"].as_array() {
                    Some(tags) if !tags.is_empty() => tags
                        .iter()
                        .map(|t| Some(t.as_str().unwrap().to_string()))
                        .collect(),
                    _ => vec![None],
                };
                index.extend(tags.into_iter().map(|t| (digest.clone(), t)));
            }
        }
        let mut stream = String::new();
        for (digest, name) in index {
            if !self.images.iter().any(|i| i.id == digest) {
                self.images.push(Image {
                    id: digest.clone(),
                    owner: None,
                    digests: Vec::new(),
                });
            }
            let line = match name {
                Some(name) => {
                    self.loaded_tags.push(name.clone());
                    self.tags.insert(familiar(&name), digest);
                    format!("Loaded image: {}\n", familiar(&name))
                }
                None => format!("Loaded image ID: {digest}\n"),
            };
            stream += &format!("{}\r\n", json!({ "stream": line }));
        }
        stream
    }

    fn resolve(&self, name: &str) -> Option<&Image> {
        if name.contains('@') {
            return self
                .images
                .iter()
                .find(|i| i.digests.iter().any(|d| short_name(d) == short_name(name)));
        }
        let id = self.tags.get(&familiar(name)).cloned().or_else(|| {
            let hex = name.strip_prefix("sha256:").unwrap_or(name);
            self.images
                .iter()
                .find(|i| i.id.starts_with(name) || i.id[7..].starts_with(hex))
                .map(|i| i.id.clone())
        })?;
        self.images.iter().find(|i| i.id == id)
    }

    fn new_image(&mut self, owner: Option<&'static str>) -> String {
        self.next += 1;
        let id = format!("sha256:{:064x}", self.next);
        self.images.push(Image {
            id: id.clone(),
            owner,
            digests: Vec::new(),
        });
        id
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        if method == "POST" && path == "/images/load" {
            let Some(body) = body else {
                return (500, json!({"message": "unexpected EOF"}));
            };
            if self.containerd {
                let mut files = HashMap::new();
                for entry in tar::Archive::new(body).entries().unwrap() {
                    let mut entry = entry.unwrap();
                    let path = entry.path().unwrap().to_string_lossy().into_owned();
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                    files.insert(path, data);
                }
                return (200, Value::String(self.containerd_load(&files)));
            }
            // As dockerd 20.10's image/tarexport/load.go: each manifest
            // entry is an image, tagged with its RepoTags ("Loaded image:
            // TAG"); when the last had none, one message lists every id.
            let mut manifest = Value::Null;
            for entry in tar::Archive::new(body).entries().unwrap() {
                let mut entry = entry.unwrap();
                if entry.path().unwrap().to_str() == Some("manifest.json") {
                    manifest = serde_json::from_reader(&mut entry).unwrap();
                }
            }
            let mut stream = String::new();
            let mut ids = String::new();
            let mut last_tagged = false;
            for item in manifest.as_array().unwrap() {
                let tags: Vec<String> = item["RepoTags"]
                    .as_array()
                    .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                self.loaded_tags.extend(tags.iter().cloned());
                let id = self.new_image(None);
                ids += &format!("Loaded image ID: {id}\n");
                for tag in &tags {
                    self.tags.insert(familiar(tag), id.clone());
                    stream += &format!(
                        "{}\r\n",
                        json!({"stream": format!("Loaded image: {tag}\n")})
                    );
                }
                last_tagged = !tags.is_empty();
            }
            if !last_tagged {
                stream += &format!("{}\r\n", json!({"stream": ids}));
            }
            return (200, Value::String(stream));
        }
        // Images made with their tags, as dockerd would tag them if asked.
        let made = |daemon: &mut Daemon, tags: Vec<String>| {
            let id = daemon.new_image(Some(MINE));
            for tag in tags.into_iter().filter(|t| !t.is_empty()) {
                daemon.tags.insert(familiar(&tag), id.clone());
            }
            id
        };
        let repo_tag = || match (param("repo"), param("tag")) {
            (repo, tag) if tag.is_empty() || repo.is_empty() => repo,
            (repo, tag) => format!("{repo}:{tag}"),
        };
        if method == "POST" && path == "/build" {
            let t = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "t")
                .map(|(_, v)| v.into_owned())
                .collect();
            let id = made(self, t);
            let quiet = param("q") == "1";
            return (200, Value::String(build_stream(&id, quiet)));
        }
        if method == "POST" && path == "/commit" {
            let id = made(self, vec![repo_tag()]);
            return (201, json!({"Id": id}));
        }
        if method == "POST" && path == "/images/create" && param("fromImage").is_empty() {
            let id = made(self, vec![repo_tag()]);
            let stream = format!(
                "{}\r\n{}\r\n",
                json!({"status": "Importing", "progressDetail": {}}),
                json!({"status": id})
            );
            return (200, Value::String(stream));
        }
        if method == "GET" && path == "/info" && self.containerd {
            return (
                200,
                json!({"Driver": "overlayfs",
                       "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}),
            );
        }
        if method == "GET" && path.starts_with("/containers/") {
            return (
                200,
                json!({"Id": "c0ffee", "Config": {"Labels": {KEY: MINE}}}),
            );
        }
        if let Some(name) = path
            .strip_prefix("/images/")
            .and_then(|p| p.strip_suffix("/json"))
        {
            return match self.resolve(name) {
                Some(image) => {
                    let tags: Vec<&String> = self
                        .tags
                        .iter()
                        .filter(|(_, id)| **id == image.id)
                        .map(|(t, _)| t)
                        .collect();
                    (
                        200,
                        json!({"Id": image.id, "RepoTags": tags, "RepoDigests": image.digests,
                               "Config": {"Labels": image.owner.map(|o| json!({KEY: o}))}}),
                    )
                }
                None => (404, json!({"message": format!("No such image: {name}")})),
            };
        }
        if let Some(name) = path
            .strip_prefix("/images/")
            .and_then(|p| p.strip_suffix("/tag"))
        {
            let Some(id) = self.resolve(name).map(|i| i.id.clone()) else {
                return (404, json!({"message": "No such image"}));
            };
            let tag = match param("tag").as_str() {
                "" => param("repo"),
                tag => format!("{}:{tag}", param("repo")),
            };
            self.tags.insert(familiar(&tag), id);
            return (201, Value::Null);
        }
        if method == "DELETE" {
            let name = path.strip_prefix("/images/").unwrap();
            self.tags.remove(&familiar(name));
            return (200, json!([{"Untagged": name}]));
        }
        if let Some(name) = path
            .strip_prefix("/distribution/")
            .and_then(|p| p.strip_suffix("/json"))
        {
            // As dockerd 20.10 and 28.5 answer (checked against a registry).
            if name.starts_with(UNREACHABLE) {
                let message = "Get \"http://127.0.0.1:5001/v2/\": dial tcp 127.0.0.1:5001: connect: connection refused";
                return (500, json!({ "message": message }));
            }
            return match self.registry.get(&familiar(name)) {
                Some(digest) => (
                    200,
                    json!({"Descriptor": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "digest": digest, "size": 527}, "Platforms": [{"architecture": "amd64", "os": "linux"}]}),
                ),
                None => (
                    404,
                    json!({"message": "manifest unknown: manifest unknown"}),
                ),
            };
        }
        if method == "POST" && path == "/images/create" && param("fromImage").contains('@') {
            return (200, Value::String(self.pull_by_digest(&param("fromImage"))));
        }
        if method == "POST" && path == "/images/create" && !param("fromImage").is_empty() {
            let id = self.new_image(None);
            let tag = format!("{}:{}", param("fromImage"), param("tag"));
            self.tags.insert(familiar(&tag), id);
            return (200, json!({"status": "Downloaded newer image"}));
        }
        (200, json!({"Id": "c0ffee"}))
    }

    /// A pull of `name@digest`, as dockerd 20.10 answers it: no tag is set,
    /// the image gets the digest reference (a new image unless one has it).
    fn pull_by_digest(&mut self, reference: &str) -> String {
        let (name, digest) = reference.split_once('@').unwrap();
        let known = self.images.iter().any(|i| {
            i.digests
                .iter()
                .any(|d| short_name(d) == short_name(reference))
        });
        if !known {
            self.new_image(None);
            let image = self.images.last_mut().unwrap();
            image.digests.push(reference.to_string());
        }
        let done = if known {
            "Image is up to date"
        } else {
            "Downloaded newer image"
        };
        let repo = short_name(name);
        [
            json!({"status": format!("Pulling from {repo}"), "id": reference}),
            json!({"status": "Pulling fs layer", "progressDetail": {}, "id": "1cde3b27ce98"}),
            json!({"status": "Pull complete", "progressDetail": {}, "id": "1cde3b27ce98"}),
            json!({"status": format!("Digest: {digest}")}),
            json!({"status": format!("Status: {done} for {}", short_name(reference))}),
        ]
        .iter()
        .map(|m| format!("{m}\r\n"))
        .collect()
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    mine: PathBuf,
    /// job-2's proxy, a second process in real life, on the same dockerd.
    theirs: PathBuf,
    plain: PathBuf,
    fake: Arc<Fake>,
    daemon: Arc<Mutex<Daemon>>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    fn tag(&self, tag: &str) -> Option<String> {
        self.daemon.lock().unwrap().tags.get(tag).cloned()
    }

    /// What reached the daemon but the proxies' version questions and the
    /// requests about tag locks.
    fn seen(&self) -> Vec<Seen> {
        let seen = self.fake.forwarded().into_iter();
        seen.filter(|s| !Daemon::is_lock_request(&s.method, &api_path(s), s.query()))
            .collect()
    }

    /// The requests that were not the proxy's own `GET /images/{tag}/json`.
    fn forwarded(&self) -> Vec<Seen> {
        let seen = self.seen().into_iter();
        seen.filter(|s| s.method != "GET").collect()
    }

    fn questions(&self) -> usize {
        let seen = self.seen();
        seen.iter()
            .filter(|s| s.method == "GET" && s.target.contains("/images/"))
            .count()
    }

    /// The id of the image the fake made last.
    fn newest(&self) -> String {
        let daemon = self.daemon.lock().unwrap();
        daemon.images.last().unwrap().id.clone()
    }

    /// Holds the next request to `path` (after dockerd got it whole) until
    /// the returned sender fires.
    fn slow(&self, path: &str) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.daemon.lock().unwrap().gate = Some((path.into(), rx));
        tx
    }

    /// Whether dockerd has got a request to `path`.
    fn got(&self, path: &str) -> bool {
        self.seen().iter().any(|s| s.target.contains(path))
    }

    fn forget(&self) {
        self.fake.forget();
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("dockerd.sock");
    let daemon = Arc::new(Mutex::new(Daemon::new()));
    let shutdown = CancellationToken::new();
    let answering = daemon.clone();
    let fake = Fake::dockerd_20()
        .answering(move |seen| answer(answering.clone(), seen))
        .spawn(&upstream);
    let mine = dir.path().join("mine.sock");
    let theirs = dir.path().join("theirs.sock");
    let plain = dir.path().join("plain.sock");
    let owned = |owner: &str| Policy {
        owner: Some((KEY.into(), owner.into())),
        ..Policy::default()
    };
    for (listen, policy) in [
        (&mine, owned(MINE)),
        (&theirs, owned(THEIRS)),
        (&plain, Policy::default()),
    ] {
        support::proxy::serve(&upstream, listen, policy, &shutdown).await;
    }
    Harness {
        _dir: dir,
        mine,
        theirs,
        plain,
        fake,
        daemon,
        shutdown,
    }
}

/// A request's path without its percent-encoding and API version.
fn api_path(seen: &Seen) -> String {
    let path = percent_encoding::percent_decode_str(seen.path()).decode_utf8_lossy();
    path.strip_prefix("/v1.41").unwrap_or(&path).to_string()
}

/// The daemon's answer to a request of a client, a tag question or a
/// request about a tag lock.
async fn answer(daemon: Arc<Mutex<Daemon>>, seen: Seen) -> Reply {
    let path = api_path(&seen);
    let (method, query, body) = (seen.method.as_str(), seen.query(), seen.bytes.as_deref());
    let gate = {
        let mut daemon = daemon.lock().unwrap();
        if Daemon::is_lock_request(method, &path, query) {
            let answer = daemon.lock_answer(method, &path, query, body.unwrap_or_default());
            daemon.lock_seen.push(seen.clone());
            return reply(answer);
        }
        match daemon.gate.take() {
            Some((gated, gate)) if gated == path => Some(gate),
            other => {
                daemon.gate = other;
                None
            }
        }
    };
    if let Some(gate) = gate {
        let _ = gate.await;
    }
    let answer = daemon.lock().unwrap().answer(method, &path, query, body);
    reply(answer)
}

fn reply((status, answer): (u16, Value)) -> Reply {
    Reply::json(
        status,
        match answer {
            Value::Null => String::new(),
            // A message stream, as it is.
            Value::String(stream) => stream,
            answer => answer.to_string(),
        },
    )
}

/// A classic builder's answer (API 1.41, BuildKit off) for a build that
/// made `id`, without its tags: dockerd tags only the `t` it got.
/// Quiet (`q`), only the id once it is done.
fn build_stream(id: &str, quiet: bool) -> String {
    let messages = if quiet {
        vec![json!({"stream": format!("{id}\n")})]
    } else {
        vec![
            json!({"stream": "Step 1/1 : FROM busybox\n"}),
            json!({"stream": " ---> 0123456789ab\n"}),
            json!({"id": "moby.image.id", "aux": {"ID": id}}),
            json!({"stream": format!("Successfully built {}\n", &id[7..19])}),
        ]
    };
    messages.iter().map(|m| format!("{m}\r\n")).collect()
}

/// A `docker save`-shaped archive tagged `tags`.
fn archive(tags: &[&str]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("abc/layer.tar", &[0; 2048]);
    add("c.json", b"{}");
    let manifest = json!([{"Config": "c.json", "RepoTags": tags, "Layers": ["abc/layer.tar"]}]);
    add("manifest.json", manifest.to_string().as_bytes());
    tar.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn refused(answer: &(u16, String), tag: &str) {
    assert_eq!(answer.0, 403, "{answer:?}");
    let message: Value = serde_json::from_str(&answer.1).unwrap();
    let message = message["message"].as_str().unwrap();
    assert!(
        message.contains(tag) && message.contains("another owner") && !message.contains('\n'),
        "{message}"
    );
}

#[tokio::test]
async fn tagging_over_another_owners_tag_is_refused_and_never_forwarded() {
    let h = start().await;
    for target in [
        "/v1.41/images/mine/tag?repo=app&tag=latest",
        "/v1.41/images/mine/tag?repo=docker.io/library/app",
        "/v1.41/images/mine/tag?repo=loaded",
    ] {
        let answer = call(&h.mine, "POST", target, Nothing).await;
        refused(
            &answer,
            if target.contains("loaded") {
                "loaded:latest"
            } else {
                "app:latest"
            },
        );
    }
    for target in [
        "/v1.41/build?t=ok&t=app",
        "/v1.41/commit?container=c&repo=app",
        "/v1.41/images/create?fromSrc=-&repo=app&tag=latest",
        "/v1.41/images/create?fromImage=app&tag=latest",
    ] {
        refused(&call(&h.mine, "POST", target, Nothing).await, "app:latest");
    }
    refused(
        &call(&h.mine, "DELETE", "/v1.41/images/app", Nothing).await,
        "app:latest",
    );
    let by_id = call(&h.mine, "DELETE", "/v1.41/images/theirs0?force=1", Nothing).await;
    assert_eq!(by_id.0, 403, "{by_id:?}");
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
    assert_eq!(h.lock_creates(), 0, "a refusal costs no lock container");
    assert_eq!(h.tag("app:latest").as_deref(), Some("sha256:theirs0000"));
    assert_eq!(h.tag("loaded:latest").as_deref(), Some("sha256:loaded0000"));
}

#[tokio::test]
async fn free_and_own_tags_move_and_a_tag_set_here_stays_movable() {
    let h = start().await;
    // A free tag: forwarded with the source's full id, then recorded.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/busybox/tag?repo=b-app&tag=latest",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    assert!(
        h.forwarded()[0]
            .target
            .starts_with("/v1.41/images/sha256:busybox000/tag?"),
        "{:?}",
        h.forwarded()
    );
    // b-app now points to an unlabelled image, but this proxy set it there.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=b-app",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:mine000000"));
    // A labelled image of mine: its tag moves.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/busybox/tag?repo=mine",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    h.forget();
    // Builds, commits and imports of free tags pass; commits and imports get
    // the owner label as the last change. Their tags are not forwarded:
    // the proxy sets them afterwards.
    for (target, status) in [
        ("/v1.41/build?t=b-new", 200),
        (
            "/v1.41/commit?container=c&repo=b-new&changes=ENV+A%3D1",
            201,
        ),
        ("/v1.41/images/create?fromSrc=-&repo=b-new", 200),
    ] {
        let answer = call(&h.mine, "POST", target, Nothing).await;
        assert_eq!(answer.0, status, "{target}: {answer:?}");
        assert!(!answer.1.contains("error"), "{target}: {answer:?}");
    }
    let forwarded: Vec<Seen> = h
        .forwarded()
        .into_iter()
        .filter(|s| !s.target.contains("/tag?"))
        .collect();
    assert_eq!(forwarded.len(), 3, "{forwarded:?}");
    assert!(forwarded[0].target.contains("labels="), "{forwarded:?}");
    for seen in &forwarded[1..] {
        assert!(
            seen.target
                .ends_with("changes=LABEL+%22ci.owner%22%3D%22job-1%22"),
            "{seen:?}"
        );
    }
    assert!(
        forwarded.iter().all(|s| !s.target.contains("b-new")),
        "{forwarded:?}"
    );
    assert_eq!(h.tag("b-new:latest").as_deref(), Some(&*h.newest()));
    // rmi of a tag set here passes and is forgotten.
    let answer = call(&h.mine, "DELETE", "/v1.41/images/b-app", Nothing).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(h.tag("b-app:latest"), None);
}

#[tokio::test]
async fn pulls_refresh_shared_images_but_record_only_free_tags() {
    let h = start().await;
    // busybox came from its own repository: any owner may pull it again...
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=busybox&tag=latest",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert!(
        answer
            .1
            .contains("Downloaded newer image for busybox:latest"),
        "{answer:?}"
    );
    assert_eq!(h.tag("busybox:latest"), Some(h.newest()));
    // ...but that does not make the tag the puller's.
    h.daemon
        .lock()
        .unwrap()
        .images
        .iter_mut()
        .for_each(|i| i.digests.clear());
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=busybox",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 403, "{answer:?}");
    // A free tag pulled here is recorded once the answer has streamed.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=b-pulled&tag=1",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=b-pulled&tag=1",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    let all = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=busybox",
        Nothing,
    )
    .await;
    assert_eq!(all.0, 403, "pull -a: {all:?}");
}

/// The messages of a streamed answer, parsed.
fn messages(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l.trim()).unwrap_or_else(|_| panic!("{body}")))
        .collect()
}

#[tokio::test]
async fn a_pull_goes_to_dockerd_by_digest_and_the_proxy_sets_the_tag() {
    let h = start().await;
    let (status, body) = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=b-pulled&tag=1&platform=linux%2Famd64",
        Nothing,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pulled = h.newest();
    // dockerd got the digest the registry had for the tag, and no tag.
    let d = digest(0xb1);
    assert_eq!(
        h.forwarded()
            .iter()
            .map(|s| s.target.clone())
            .collect::<Vec<_>>(),
        [
            format!(
                "/v1.41/images/create?fromImage=docker.io%2Flibrary%2Fb-pulled%40sha256%3A{}&platform=linux%2Famd64",
                &d[7..]
            ),
            format!("/v1.41/images/{pulled}/tag?repo=docker.io%2Flibrary%2Fb-pulled&tag=1"),
        ]
    );
    assert!(h.got("/v1.41/distribution/docker.io/library/b-pulled:1/json"));
    assert_eq!(h.tag("b-pulled:1"), Some(pulled.clone()));
    // What the client reads is a pull by tag.
    let read = messages(&body);
    assert_eq!(
        read[0],
        json!({"status": "Pulling from b-pulled", "id": "1"})
    );
    assert!(read.contains(&json!({"status": format!("Digest: {d}")})));
    assert_eq!(
        read.last().unwrap(),
        &json!({"status": "Status: Downloaded newer image for b-pulled:1"})
    );
    assert!(!body.contains('@') && !body.contains("error"), "{body}");
    // Again: nothing moves, and dockerd's word for that.
    h.forget();
    let (_, body) = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=b-pulled:1",
        Nothing,
    )
    .await;
    assert_eq!(
        messages(&body).last().unwrap(),
        &json!({"status": "Status: Image is up to date for b-pulled:1"}),
        "{body}"
    );
    assert!(tag_requests(&h).is_empty(), "{:?}", tag_requests(&h));
    assert_eq!(h.tag("b-pulled:1"), Some(pulled));
}

#[tokio::test]
async fn a_tag_taken_by_another_owner_during_a_slow_pull_is_not_moved() {
    let h = start().await;
    let (status, body) = race(
        &h,
        "/images/create",
        "/v1.41/images/create?fromImage=b-app&tag=latest",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let last = messages(&body).pop().unwrap();
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("dindbox: ")
            && error.contains("b-app:latest")
            && error.contains("another owner")
            && error.contains(&format!("pulled untagged: {}", &h.newest()[..19])),
        "{body}"
    );
    assert_eq!(last["errorDetail"]["message"], last["error"]);
    assert!(!body.contains("Status:"), "{body}");
    assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:theirs0000"));
    assert!(tag_requests(&h).is_empty(), "{:?}", tag_requests(&h));
}

#[tokio::test]
async fn a_pull_whose_tag_cannot_be_resolved_fails_and_nothing_is_pulled() {
    let h = start().await;
    for (target, status, said) in [
        (
            "/v1.41/images/create?fromImage=127.0.0.1:5001/b-x&tag=1",
            500,
            "connection refused",
        ),
        (
            "/v1.41/images/create?fromImage=b-nowhere:1",
            404,
            "manifest unknown",
        ),
    ] {
        let answer = call(&h.mine, "POST", target, Nothing).await;
        assert_eq!(answer.0, status, "{answer:?}");
        let message: Value = serde_json::from_str(&answer.1).unwrap();
        let message = message["message"].as_str().unwrap();
        assert!(
            message.starts_with("dindbox: could not resolve ")
                && message.contains("to a digest")
                && message.ends_with(said),
            "{message}"
        );
    }
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}

#[tokio::test]
async fn a_load_over_another_owners_tag_is_broken_off_before_dockerd_tags() {
    let h = start().await;
    for body in [
        archive(&["app:latest"]),
        gzip(&archive(&["x:1", "docker.io/library/app"])),
    ] {
        h.forget();
        let answer = call(&h.mine, "POST", "/v1.41/images/load?quiet=1", Tar(&body)).await;
        refused(&answer, "app:latest");
        let forwarded = h.forwarded();
        assert!(
            forwarded.iter().all(|s| s.bytes.is_none()),
            "dockerd must never get the whole archive: {forwarded:?}"
        );
        assert_eq!(h.tag("app:latest").as_deref(), Some("sha256:theirs0000"));
        assert_eq!(h.tag("x:1"), None);
    }
}

#[tokio::test]
async fn a_load_of_free_tags_passes_whole_and_its_tags_become_movable() {
    let h = start().await;
    for (body, tag) in [
        (archive(&["b-app:latest"]), "b-app"),
        (gzip(&archive(&["b-gz:1"])), "b-gz:1"),
    ] {
        h.forget();
        let answer = call(&h.mine, "POST", "/v1.41/images/load?quiet=1", Tar(&body)).await;
        assert_eq!(answer.0, 200, "{answer:?}");
        let shown = if tag.contains(':') {
            tag.to_string()
        } else {
            format!("{tag}:latest")
        };
        assert!(
            answer
                .1
                .contains(&format!("{{\"stream\":\"Loaded image: {shown}\\n\"}}")),
            "{answer:?}"
        );
        assert!(!answer.1.contains("Loaded image ID"), "{answer:?}");
        assert!(!answer.1.contains("error"), "{answer:?}");
        assert!(
            h.forwarded().iter().all(|s| s.bytes.is_some()),
            "{:?}",
            h.forwarded()
        );
        // dockerd loaded it untagged; the proxy set the tag on its id.
        assert!(h.daemon.lock().unwrap().loaded_tags.is_empty());
        assert_eq!(h.tag(&shown), Some(h.newest()));
        assert!(
            tag_requests(&h)
                .iter()
                .any(|t| t.starts_with(&format!("/v1.41/images/{}/tag?", h.newest()))),
            "{:?}",
            tag_requests(&h)
        );
        // Loaded here: movable and removable by this owner.
        let (repo, t) = tag.split_once(':').unwrap_or((tag, "latest"));
        let target = format!("/v1.41/images/mine/tag?repo={repo}&tag={t}");
        assert_eq!(call(&h.mine, "POST", &target, Nothing).await.0, 201);
    }
    // Loading it again over a tag this proxy set passes too.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        Tar(&archive(&["b-app:latest"])),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
}

#[tokio::test]
async fn hostile_load_archives_are_refused_with_a_reason() {
    let h = start().await;
    // A symlink named manifest.json.
    let mut tar = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, "manifest.json", "elsewhere.json")
        .unwrap();
    let symlinked = tar.into_inner().unwrap();
    let mut xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
    xz.extend([0; 600]);
    for (body, why) in [
        (symlinked, "not a regular file"),
        (xz, "xz-compressed"),
        (gzip(&gzip(&archive(&["b:1"]))), "compressed twice"),
        (archive(&["b:1"])[..700].to_vec(), "truncated"),
    ] {
        let (status, answer) = call(&h.mine, "POST", "/v1.41/images/load", Tar(&body)).await;
        assert_eq!(status, 400, "{why}: {answer}");
        assert!(answer.contains(why), "{why}: {answer}");
    }
    assert_eq!(h.daemon.lock().unwrap().next, 0, "nothing was loaded");
}

#[tokio::test]
async fn box_mode_checks_no_tag_and_streams_loads_untouched() {
    let h = start().await;
    let answer = call(
        &h.plain,
        "POST",
        "/v1.41/images/load",
        Tar(&archive(&["app:latest"])),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_ne!(h.tag("app:latest").as_deref(), Some("sha256:theirs0000"));
    assert_eq!(
        call(&h.plain, "POST", "/v1.41/images/mine/tag?repo=app", Nothing)
            .await
            .0,
        201
    );
    assert_eq!(
        h.questions(),
        0,
        "no extra round trip without an owner label"
    );
}

/// The requests the proxy made to set tags, in order.
fn tag_requests(h: &Harness) -> Vec<String> {
    h.forwarded()
        .into_iter()
        .filter(|s| s.target.contains("/tag?"))
        .map(|s| s.target)
        .collect()
}

#[tokio::test]
async fn a_build_tags_its_image_itself_and_prints_each_tag_as_dockerd_does() {
    let h = start().await;
    let answer = call(&h.mine, "POST", "/v1.41/build?t=b-app&t=b-app:v2", Nothing).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let id = h.newest();
    let build = &h.forwarded()[0];
    assert!(
        build.target.starts_with("/v1.41/build?") && !build.target.contains("t="),
        "dockerd gets no tag: {build:?}"
    );
    assert_eq!(
        tag_requests(&h),
        [
            format!("/v1.41/images/{id}/tag?repo=docker.io%2Flibrary%2Fb-app&tag=latest"),
            format!("/v1.41/images/{id}/tag?repo=docker.io%2Flibrary%2Fb-app&tag=v2"),
        ]
    );
    assert_eq!(h.tag("b-app:latest").as_deref(), Some(&*id));
    assert_eq!(h.tag("b-app:v2").as_deref(), Some(&*id));
    // dockerd's own lines, then the proxy's, in order, and no error.
    let lines = [
        format!("Successfully built {}", &id[7..19]),
        "Successfully tagged b-app:latest".into(),
        "Successfully tagged b-app:v2".into(),
    ];
    let at: Vec<usize> = lines
        .iter()
        .map(|l| {
            answer
                .1
                .find(l.as_str())
                .unwrap_or_else(|| panic!("{l}: {answer:?}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{answer:?}");
    assert!(!answer.1.contains("error"), "{answer:?}");
    // Quiet: no "Successfully" lines from the proxy either.
    let quiet = call(&h.mine, "POST", "/v1.41/build?t=b-q&q=1", Nothing).await;
    assert!(!quiet.1.contains("Successfully tagged"), "{quiet:?}");
    assert_eq!(h.tag("b-q:latest"), Some(h.newest()));
    // Set here: the tag stays movable by its owner.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=b-app",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
}

/// Starts `target` through job-1's proxy with dockerd holding it at `path`;
/// meanwhile job-2 takes `b-app:latest`; then lets dockerd answer.
async fn race(h: &Harness, path: &str, target: &'static str) -> (u16, String) {
    race_with(h, path, target, Vec::new()).await
}

/// [`race`] with a request body.
async fn race_with(h: &Harness, path: &str, target: &'static str, body: Vec<u8>) -> (u16, String) {
    let release = h.slow(path);
    let socket = h.mine.clone();
    let client = tokio::spawn(async move { call(&socket, "POST", target, Tar(&body)).await });
    for _ in 0..200 {
        if h.got(path) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(h.got(path), "dockerd got {target}");
    // Owner job-2 builds b-app meanwhile (its own proxy checked it free).
    h.daemon
        .lock()
        .unwrap()
        .tags
        .insert("b-app:latest".into(), "sha256:theirs0000".into());
    release.send(()).unwrap();
    client.await.unwrap()
}

#[tokio::test]
async fn a_tag_taken_by_another_owner_during_a_slow_build_is_not_moved() {
    let h = start().await;
    let (status, body) = race(&h, "/build", "/v1.41/build?t=b-mine&t=b-app").await;
    // The stream started well; its last message is the refusal.
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Successfully tagged b-mine:latest"), "{body}");
    let last = body
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_default();
    let last: Value = serde_json::from_str(last.trim()).unwrap_or_else(|_| panic!("{body}"));
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("dindbox: ")
            && error.contains("b-app:latest")
            && error.contains("another owner")
            && error.contains("built untagged"),
        "{body}"
    );
    assert_eq!(last["errorDetail"]["message"], last["error"]);
    assert!(!body.contains("Successfully tagged b-app"), "{body}");
    assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:theirs0000"));
    assert_eq!(h.tag("b-mine:latest"), Some(h.newest()));
}

#[tokio::test]
async fn a_tag_taken_during_a_commit_or_an_import_is_not_moved() {
    let h = start().await;
    let (status, body) = race(&h, "/commit", "/v1.41/commit?container=c&repo=b-app").await;
    assert_eq!(status, 403, "{body}");
    let message: Value = serde_json::from_str(&body).unwrap();
    let message = message["message"].as_str().unwrap();
    assert!(
        message.contains("b-app:latest") && message.contains("committed untagged"),
        "{message}"
    );
    assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:theirs0000"));
    h.daemon.lock().unwrap().tags.remove("b-app:latest");

    let (status, body) = race(
        &h,
        "/images/create",
        "/v1.41/images/create?fromSrc=-&repo=b-app&tag=latest",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&h.newest()) && body.contains(r#""error":"dindbox: "#),
        "{body}"
    );
    assert!(body.contains("imported untagged"), "{body}");
    assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:theirs0000"));
    assert!(tag_requests(&h).is_empty(), "{:?}", tag_requests(&h));
}

#[tokio::test]
async fn commits_and_imports_tag_their_image_themselves() {
    let h = start().await;
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/commit?container=c&repo=b-c&tag=1",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    let committed = h.newest();
    assert_eq!(
        serde_json::from_str::<Value>(&answer.1).unwrap()["Id"],
        committed
    );
    assert_eq!(h.tag("b-c:1").as_deref(), Some(&*committed));
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromSrc=-&repo=b-i",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert!(!answer.1.contains("error"), "{answer:?}");
    let imported = h.newest();
    assert_eq!(h.tag("b-i:latest").as_deref(), Some(&*imported));
    assert_eq!(tag_requests(&h).len(), 2, "{:?}", tag_requests(&h));
    assert!(
        h.forwarded()
            .iter()
            .filter(|s| !s.target.contains("/tag?"))
            .all(|s| !s.target.contains("repo=")),
        "{:?}",
        h.forwarded()
    );
}

#[tokio::test]
async fn a_tag_taken_by_another_owner_during_a_slow_load_is_not_moved() {
    let h = start().await;
    for (n, body) in [
        archive(&["b-mine:1", "b-app"]),
        gzip(&archive(&["b-mine:1", "b-app"])),
    ]
    .into_iter()
    .enumerate()
    {
        h.daemon.lock().unwrap().tags.remove("b-app:latest");
        h.forget();
        let (status, body) =
            race_with(&h, "/images/load", "/v1.41/images/load?quiet=1", body).await;
        assert_eq!(status, 200, "{n}: {body}");
        assert!(body.contains("Loaded image: b-mine:1"), "{body}");
        assert!(!body.contains("Loaded image: b-app"), "{body}");
        let last = body
            .lines()
            .rfind(|l| l.starts_with('{'))
            .unwrap_or_default();
        let last: Value = serde_json::from_str(last.trim()).unwrap_or_else(|_| panic!("{body}"));
        let error = last["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("dindbox: ")
                && error.contains("b-app:latest")
                && error.contains("another owner")
                && error.contains("loaded untagged"),
            "{body}"
        );
        assert_eq!(last["errorDetail"]["message"], last["error"]);
        assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:theirs0000"));
        assert_eq!(h.tag("b-mine:1"), Some(h.newest()));
        assert!(
            h.daemon.lock().unwrap().loaded_tags.is_empty(),
            "dockerd saw no tag"
        );
    }
}

/// An archive of two images, the second untagged (as `docker save a b`
/// makes when b has no tag).
fn two_images(first: &[&str], second: &[&str]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let manifest = json!([
        {"Config": "c.json", "RepoTags": first, "Layers": []},
        {"Config": "d.json", "RepoTags": second, "Layers": []},
    ]);
    for (name, data) in [
        ("c.json", b"{}".to_vec()),
        ("d.json", b"{}".to_vec()),
        ("manifest.json", manifest.to_string().into_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

#[tokio::test]
async fn each_image_of_a_load_gets_its_own_tags_and_untagged_ids_print_as_dockerd_prints_them() {
    let h = start().await;
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        Tar(&two_images(&["b-one:1"], &["b-two:2", "b-two:3"])),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let ids: Vec<String> = {
        let d = h.daemon.lock().unwrap();
        d.images[d.images.len() - 2..]
            .iter()
            .map(|i| i.id.clone())
            .collect()
    };
    assert_eq!(h.tag("b-one:1").as_ref(), Some(&ids[0]));
    assert_eq!(h.tag("b-two:2").as_ref(), Some(&ids[1]));
    assert_eq!(h.tag("b-two:3").as_ref(), Some(&ids[1]));
    assert!(
        answer.1.contains("Loaded image: b-one:1") && answer.1.contains("Loaded image: b-two:3"),
        "{answer:?}"
    );
    assert!(!answer.1.contains("Loaded image ID"), "{answer:?}");
    // The last image untagged: dockerd lists every id, and so does the proxy.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        Tar(&two_images(&["b-three:1"], &[])),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert!(answer.1.contains("Loaded image: b-three:1"), "{answer:?}");
    assert_eq!(
        answer.1.matches("Loaded image ID: sha256:").count(),
        2,
        "{answer:?}"
    );
    // A legacy archive with tags only in `repositories` is refused.
    let mut tar = tar::Builder::new(Vec::new());
    let data = br#"{"b-legacy":{"1":"abc"}}"#;
    let mut hd = tar::Header::new_ustar();
    hd.set_size(data.len() as u64);
    hd.set_mode(0o644);
    hd.set_cksum();
    tar.append_data(&mut hd, "repositories", &data[..]).unwrap();
    let (status, answer) = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        Tar(&tar.into_inner().unwrap()),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("repositories"), "{answer}");
    assert_eq!(h.tag("b-legacy:1"), None);
}

/// An archive with these files, in order.
fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// An index entry of `digest` with these annotations.
fn index_entry(digest: &str, annotations: Value) -> Value {
    json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "digest": digest, "size": 422, "annotations": annotations})
}

/// `docker save` of one image with two tags in dockerd 28's containerd
/// image store: an OCI layout whose index.json names the image once per
/// tag (the same digest twice), and a manifest.json with one entry.
fn containerd_save(digest: &str, tags: [&str; 2]) -> Vec<u8> {
    let named = |tag: &str| {
        index_entry(
            digest,
            json!({"io.containerd.image.name": format!("docker.io/library/{tag}"),
                   "org.opencontainers.image.ref.name": tag.rsplit_once(':').unwrap().1}),
        )
    };
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": [named(tags[0]), named(tags[1])]});
    let manifest = json!([{"Config": "blobs/sha256/c", "RepoTags": tags, "Layers": []}]);
    tar_of(&[
        ("blobs/sha256/c", b"{}".to_vec()),
        ("index.json", index.to_string().into_bytes()),
        ("manifest.json", manifest.to_string().into_bytes()),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ])
}

#[tokio::test]
async fn in_the_containerd_store_a_load_is_tagged_by_its_index_entries() {
    let h = start().await;
    h.daemon.lock().unwrap().containerd = true;
    let digest = format!("sha256:{:064x}", 0xc0);

    // One image, two tags: containerd loads two index entries (one id,
    // printed twice); each gets its tag.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        Tar(&containerd_save(&digest, ["c-one:latest", "c-one:v2"])),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(h.tag("c-one:latest").as_ref(), Some(&digest));
    assert_eq!(h.tag("c-one:v2").as_ref(), Some(&digest));
    assert!(
        answer.1.contains("Loaded image: c-one:latest")
            && answer.1.contains("Loaded image: c-one:v2"),
        "{answer:?}"
    );
    assert!(!answer.1.contains("Loaded image ID"), "{answer:?}");
    assert!(!answer.1.contains("dindbox:"), "{answer:?}");
    // dockerd got the archive without names.
    assert!(h.daemon.lock().unwrap().loaded_tags.is_empty());

    // An OCI layout without manifest.json (buildx --output type=oci): a
    // name only in the index, and an unnamed entry, whose id is printed as
    // containerd prints it.
    let named = format!("sha256:{:064x}", 0xc1);
    let unnamed = format!("sha256:{:064x}", 0xc2);
    let index = json!({"manifests": [
        index_entry(&named, json!({"org.opencontainers.image.ref.name": "c-oci:1"})),
        index_entry(&unnamed, json!({})),
    ]});
    let oci = tar_of(&[
        ("index.json", index.to_string().into_bytes()),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ]);
    let answer = call(&h.mine, "POST", "/v1.41/images/load", Tar(&oci)).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(h.tag("c-oci:1").as_ref(), Some(&named));
    assert!(answer.1.contains("Loaded image: c-oci:1"), "{answer:?}");
    assert!(
        answer.1.contains(&format!("Loaded image ID: {unnamed}")),
        "{answer:?}"
    );

    // A name of another owner's tag only in the index is refused, and the
    // tag stays theirs.
    let theirs = h.tag("app:latest");
    let index = json!({"manifests": [
        index_entry(&named, json!({"io.containerd.image.name": "docker.io/library/app:latest"})),
    ]});
    let oci = tar_of(&[
        ("index.json", index.to_string().into_bytes()),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ]);
    let answer = call(&h.mine, "POST", "/v1.41/images/load", Tar(&oci)).await;
    refused(&answer, "app:latest");
    assert_eq!(h.tag("app:latest"), theirs);
}

#[tokio::test]
async fn in_the_classic_store_the_same_archive_is_tagged_by_its_manifest() {
    let h = start().await;
    let digest = format!("sha256:{:064x}", 0xc0);
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        Tar(&containerd_save(&digest, ["k-one:latest", "k-one:v2"])),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let id = h.newest();
    assert_eq!(h.tag("k-one:latest").as_ref(), Some(&id));
    assert_eq!(h.tag("k-one:v2").as_ref(), Some(&id));
}

/// Waits (up to 5 s) until `done`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

impl Harness {
    /// How many lock containers the proxies tried to create.
    fn lock_creates(&self) -> usize {
        let daemon = self.daemon.lock().unwrap();
        daemon
            .lock_seen
            .iter()
            .filter(|s| s.method == "POST")
            .count()
    }

    fn locks(&self) -> Vec<Lock> {
        self.daemon.lock().unwrap().locks.clone()
    }

    /// A lock container left by another proxy, `age` seconds old.
    fn leave_lock(&self, tag: &str, age: i64) -> String {
        let parsed = dindbox::proxy::policy::images::tag_of(tag).unwrap();
        let mut daemon = self.daemon.lock().unwrap();
        let id = format!("lockleft{:056x}", daemon.locks.len());
        daemon.locks.push(Lock {
            name: dindbox::proxy::policy::taglock::lock_name(&parsed),
            id: id.clone(),
            created: unix_now() - age,
            tag: parsed.key(),
        });
        id
    }
}

#[tokio::test]
async fn two_owners_tagging_one_free_tag_at_once_set_it_once() {
    let h = start().await;
    // job-1's proxy has checked free:1 and its set is held at dockerd.
    let path = "/images/sha256:mine000000/tag";
    let release = h.slow(path);
    let mine = h.mine.clone();
    let first = tokio::spawn(async move {
        call(
            &mine,
            "POST",
            "/v1.41/images/mine/tag?repo=free&tag=1",
            Nothing,
        )
        .await
    });
    wait_until("dockerd got job-1's tag", || h.got(path)).await;
    // job-2's proxy tags the same free tag meanwhile: its lock is taken.
    let theirs = h.theirs.clone();
    let second = tokio::spawn(async move {
        call(
            &theirs,
            "POST",
            "/v1.41/images/theirs0/tag?repo=free&tag=1",
            Nothing,
        )
        .await
    });
    // (Without the lock, job-2 would find free:1 free and set it now.)
    wait_until("job-2 found the lock taken", || {
        h.lock_creates() >= 2 || second.is_finished()
    })
    .await;
    release.send(()).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.0, 201, "{first:?}");
    // job-2 got the lock once job-1 let it go, and found the tag job-1's.
    refused(&second.await.unwrap(), "free:1");
    assert_eq!(h.tag("free:1").as_deref(), Some("sha256:mine000000"));
    wait_until("every lock is released", || h.locks().is_empty()).await;
}

#[tokio::test]
async fn a_stale_lock_is_removed_by_its_id_and_the_tag_set() {
    let h = start().await;
    let stale = h.leave_lock("free:2", 120);
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=free&tag=2",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    assert_eq!(h.tag("free:2").as_deref(), Some("sha256:mine000000"));
    let removed: Vec<String> = {
        let daemon = h.daemon.lock().unwrap();
        let seen = daemon.lock_seen.iter().filter(|s| s.method == "DELETE");
        seen.map(|s| s.target.clone()).collect()
    };
    assert!(
        removed[0].contains(&format!("/containers/{stale}?")),
        "{removed:?}"
    );
    wait_until("every lock is released", || h.locks().is_empty()).await;
}

#[tokio::test]
async fn a_lock_held_too_long_refuses_the_tag_and_is_left_alone() {
    let h = start().await;
    let held = h.leave_lock("free:3", 0);
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=free&tag=3",
        Nothing,
    )
    .await;
    assert_eq!(answer.0, 409, "{answer:?}");
    let message: Value = serde_json::from_str(&answer.1).unwrap();
    assert_eq!(
        message["message"],
        "dindbox: tag free:3 is being set by another job, try again"
    );
    assert_eq!(h.tag("free:3"), None);
    assert!(!h.got("/images/sha256:mine000000/tag"));
    let locks = h.locks();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].id, held);
}

#[tokio::test]
async fn builds_loads_and_pulls_set_their_tags_under_the_lock_and_release_it() {
    let h = start().await;
    for (target, body) in [
        ("/v1.41/build?t=l-built", Vec::new()),
        ("/v1.41/images/load", archive(&["l-loaded:1"])),
        ("/v1.41/images/create?fromImage=b-pulled&tag=1", Vec::new()),
        ("/v1.41/commit?container=c&repo=l-committed", Vec::new()),
    ] {
        let before = h.lock_creates();
        let answer = call(&h.mine, "POST", target, Tar(&body)).await;
        assert!(answer.0 < 300, "{target}: {answer:?}");
        assert_eq!(h.lock_creates(), before + 1, "{target}");
        assert!(h.locks().is_empty(), "{target}: {:?}", h.locks());
    }
    for tag in [
        "l-built:latest",
        "l-loaded:1",
        "b-pulled:1",
        "l-committed:latest",
    ] {
        assert!(h.tag(tag).is_some(), "{tag}");
    }
}

#[tokio::test]
async fn tenants_cannot_create_or_rename_containers_to_a_lock_name() {
    let h = start().await;
    for target in [
        "/v1.41/containers/create?name=dindbox-taglock-28ec096a835a49537929b040aae40036",
        "/v1.41/containers/create?name=/dindbox-taglock-x",
        "/v1.41/containers/web/rename?name=dindbox-taglock-x",
    ] {
        let answer = call(&h.mine, "POST", target, Nothing).await;
        assert_eq!(answer.0, 403, "{target}: {answer:?}");
        assert!(answer.1.contains("tag locks"), "{answer:?}");
    }
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}
