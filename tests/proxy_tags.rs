//! Image tags in owner mode (`dindbox proxy --owner-label`), through real
//! sockets: a fake dockerd that knows images and tags, a proxy for job-1 in
//! front of it, and the tags of job-2 (images labelled `ci.owner=job-2`, or
//! loaded without labels) that job-1 must not move or remove.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dindbox::proxy::policy::Policy;
use dindbox::proxy::{ListenAddr, Listener, Proxy, ProxyConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

const KEY: &str = "ci.owner";
const MINE: &str = "job-1";
const THEIRS: &str = "job-2";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Whether the body arrived whole.
    whole: bool,
}

struct Image {
    id: String,
    owner: Option<&'static str>,
    digests: Vec<String>,
}

/// What the fake dockerd knows: images, and tags (`name:tag` → id).
struct Daemon {
    seen: Vec<Seen>,
    images: Vec<Image>,
    tags: HashMap<String, String>,
    next: usize,
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
            seen: Vec::new(),
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
        }
    }

    fn resolve(&self, name: &str) -> Option<&Image> {
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
        let id = format!("sha256:new{:07}", self.next);
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
            let mut tags = Vec::new();
            for entry in tar::Archive::new(body).entries().unwrap() {
                let mut entry = entry.unwrap();
                if entry.path().unwrap().to_str() == Some("manifest.json") {
                    let manifest: Value = serde_json::from_reader(&mut entry).unwrap();
                    for tag in manifest[0]["RepoTags"].as_array().unwrap() {
                        tags.push(tag.as_str().unwrap().to_string());
                    }
                }
            }
            let id = self.new_image(None);
            for tag in &tags {
                self.tags.insert(familiar(tag), id.clone());
            }
            return (
                200,
                json!({"stream": format!("Loaded image: {}\n", tags.join(","))}),
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
        if method == "POST" && path == "/images/create" && !param("fromImage").is_empty() {
            let id = self.new_image(None);
            let tag = format!("{}:{}", param("fromImage"), param("tag"));
            self.tags.insert(familiar(&tag), id);
            return (200, json!({"status": "Downloaded newer image"}));
        }
        (200, json!({"Id": "c0ffee"}))
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    mine: PathBuf,
    plain: PathBuf,
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

    /// The requests that were not the proxy's own `GET /images/{tag}/json`.
    fn forwarded(&self) -> Vec<Seen> {
        let seen = self.daemon.lock().unwrap().seen.clone();
        seen.into_iter().filter(|s| s.method != "GET").collect()
    }

    fn questions(&self) -> usize {
        let seen = self.daemon.lock().unwrap().seen.clone();
        seen.iter()
            .filter(|s| s.method == "GET" && s.target.contains("/images/"))
            .count()
    }

    fn forget(&self) {
        self.daemon.lock().unwrap().seen.clear();
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("dockerd.sock");
    let daemon = Arc::new(Mutex::new(Daemon::new()));
    let shutdown = CancellationToken::new();
    tokio::spawn(fake_dockerd(
        UnixListener::bind(&upstream).unwrap(),
        daemon.clone(),
    ));
    let mine = dir.path().join("mine.sock");
    let plain = dir.path().join("plain.sock");
    let owned = Policy {
        owner: Some((KEY.into(), MINE.into())),
        ..Policy::default()
    };
    for (listen, policy) in [(&mine, owned), (&plain, Policy::default())] {
        let proxy = Proxy::new(ProxyConfig {
            upstream: upstream.clone(),
            policy,
        });
        let listener = Listener::bind(&ListenAddr::Unix(listen.clone()))
            .await
            .unwrap();
        tokio::spawn(proxy.serve(listener, shutdown.clone()));
    }
    Harness {
        _dir: dir,
        mine,
        plain,
        daemon,
        shutdown,
    }
}

async fn fake_dockerd(listener: UnixListener, daemon: Arc<Mutex<Daemon>>) {
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let daemon = daemon.clone();
                async move { Ok::<_, std::convert::Infallible>(fake_response(req, daemon).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn fake_response(
    req: Request<Incoming>,
    daemon: Arc<Mutex<Daemon>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).ok();
    let mut daemon = daemon.lock().unwrap();
    daemon.seen.push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        whole: body.is_some(),
    });
    let path = parts.uri.path();
    let path = path.strip_prefix("/v1.41").unwrap_or(path);
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    let query = parts.uri.query().unwrap_or("");
    let (status, answer) = daemon.answer(parts.method.as_str(), &path, query, body.as_deref());
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(if answer.is_null() {
            String::new()
        } else {
            answer.to_string()
        })))
        .unwrap()
}

/// Sends one request and returns (status, body).
async fn call(socket: &Path, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if !body.is_empty() {
        raw.extend_from_slice(b"Content-Type: application/x-tar\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(&raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("proxy answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&out).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
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
        let answer = call(&h.mine, "POST", target, b"").await;
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
        refused(&call(&h.mine, "POST", target, b"").await, "app:latest");
    }
    refused(
        &call(&h.mine, "DELETE", "/v1.41/images/app", b"").await,
        "app:latest",
    );
    let by_id = call(&h.mine, "DELETE", "/v1.41/images/theirs0?force=1", b"").await;
    assert_eq!(by_id.0, 403, "{by_id:?}");
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
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
        b"",
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
    let answer = call(&h.mine, "POST", "/v1.41/images/mine/tag?repo=b-app", b"").await;
    assert_eq!(answer.0, 201, "{answer:?}");
    assert_eq!(h.tag("b-app:latest").as_deref(), Some("sha256:mine000000"));
    // A labelled image of mine: its tag moves.
    let answer = call(&h.mine, "POST", "/v1.41/images/busybox/tag?repo=mine", b"").await;
    assert_eq!(answer.0, 201, "{answer:?}");
    h.forget();
    // Builds, commits and imports of free tags pass; commits and imports get
    // the owner label as the last change.
    for target in [
        "/v1.41/build?t=b-new",
        "/v1.41/commit?container=c&repo=b-new&changes=ENV+A%3D1",
        "/v1.41/images/create?fromSrc=-&repo=b-new",
    ] {
        let answer = call(&h.mine, "POST", target, b"").await;
        assert_eq!(answer.0, 200, "{target}: {answer:?}");
    }
    let forwarded = h.forwarded();
    assert!(forwarded[0].target.contains("labels="), "{forwarded:?}");
    for seen in &forwarded[1..] {
        assert!(
            seen.target
                .ends_with("changes=LABEL+%22ci.owner%22%3D%22job-1%22"),
            "{seen:?}"
        );
    }
    // rmi of a tag set here passes and is forgotten.
    let answer = call(&h.mine, "DELETE", "/v1.41/images/b-app", b"").await;
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
        b"",
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    // ...but that does not make the tag the puller's.
    h.daemon
        .lock()
        .unwrap()
        .images
        .iter_mut()
        .for_each(|i| i.digests.clear());
    let answer = call(&h.mine, "POST", "/v1.41/images/mine/tag?repo=busybox", b"").await;
    assert_eq!(answer.0, 403, "{answer:?}");
    // A free tag pulled here is recorded once the answer has streamed.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=b-pulled&tag=1",
        b"",
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/mine/tag?repo=b-pulled&tag=1",
        b"",
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    let all = call(
        &h.mine,
        "POST",
        "/v1.41/images/create?fromImage=busybox",
        b"",
    )
    .await;
    assert_eq!(all.0, 403, "pull -a: {all:?}");
}

#[tokio::test]
async fn a_load_over_another_owners_tag_is_broken_off_before_dockerd_tags() {
    let h = start().await;
    for body in [
        archive(&["app:latest"]),
        gzip(&archive(&["x:1", "docker.io/library/app"])),
    ] {
        h.forget();
        let answer = call(&h.mine, "POST", "/v1.41/images/load?quiet=1", &body).await;
        refused(&answer, "app:latest");
        let forwarded = h.forwarded();
        assert!(
            forwarded.iter().all(|s| !s.whole),
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
        let answer = call(&h.mine, "POST", "/v1.41/images/load?quiet=1", &body).await;
        assert_eq!(answer.0, 200, "{answer:?}");
        assert!(answer.1.contains("Loaded image"), "{answer:?}");
        assert!(h.forwarded().iter().all(|s| s.whole), "{:?}", h.forwarded());
        // Loaded here: movable and removable by this owner.
        let (repo, t) = tag.split_once(':').unwrap_or((tag, "latest"));
        let target = format!("/v1.41/images/mine/tag?repo={repo}&tag={t}");
        assert_eq!(call(&h.mine, "POST", &target, b"").await.0, 201);
    }
    // Loading it again over a tag this proxy set passes too.
    let answer = call(
        &h.mine,
        "POST",
        "/v1.41/images/load",
        &archive(&["b-app:latest"]),
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
        let (status, answer) = call(&h.mine, "POST", "/v1.41/images/load", &body).await;
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
        &archive(&["app:latest"]),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_ne!(h.tag("app:latest").as_deref(), Some("sha256:theirs0000"));
    assert_eq!(
        call(&h.plain, "POST", "/v1.41/images/mine/tag?repo=app", b"")
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
