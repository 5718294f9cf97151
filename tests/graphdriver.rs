//! `dindbox graphdriver-server` through its socket, without Docker: a small
//! hyper client plays the inner dockerd (empty `Host`, no Content-Type,
//! one keep-alive connection, a chunked ApplyDiff) through a whole layer
//! lifecycle, for both drivers, plus hostile calls.
//!
//! The server runs in its own mount namespace (`unshare --mount`), so its
//! overlay mounts vanish with it; the test reads and writes a layer through
//! `/proc/<server pid>/root/<host path>`, which resolves in that namespace.
//! Needs root (whiteout devices, chown); overlay also needs the kernel to
//! accept an overlay mount in a temp dir. Either missing skips loudly.

mod support;

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Child;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixStream;

/// A request body of unknown length: hyper sends it chunked, as Go's
/// plugin client does for ApplyDiff.
struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

struct Server {
    child: Child,
    tmp: tempfile::TempDir,
    log: PathBuf,
    socket: PathBuf,
}

impl Server {
    fn start(driver: &str, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("root")).unwrap();
        let socket = tmp.path().join("gd.sock");
        let log = tmp.path().join("server.log");
        let child = Self::spawn(tmp.path(), &socket, &log, driver, extra);
        let server = Server {
            child,
            tmp,
            log,
            socket,
        };
        server.wait_for_socket();
        server
    }

    fn spawn(tmp: &Path, socket: &Path, log: &Path, driver: &str, extra: &[&str]) -> Child {
        let args = [&["--driver", driver], extra].concat();
        support::host_server::spawn(
            "graphdriver-server",
            &tmp.join("root"),
            "box",
            socket,
            log,
            &args,
            &support::host_server::Launch::default(),
        )
    }

    fn wait_for_socket(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the server did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash: the socket file stays), then the same command again.
    fn crash_and_restart(&mut self, driver: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.tmp.path(), &self.socket, &self.log, driver, &[]);
        self.wait_for_socket();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// A container path the server handed out, as this process can reach
    /// it: `<root>/box` is what the box sees at /var/lib/docker, and the
    /// server's mounts live in its own namespace.
    fn host_view(&self, container_path: &str) -> PathBuf {
        let rel = Path::new(container_path)
            .strip_prefix("/var/lib/docker")
            .expect("a path below the container prefix");
        let host = std::fs::canonicalize(self.root())
            .unwrap()
            .join("box")
            .join(rel);
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
            .join(host.strip_prefix("/").unwrap())
    }

    async fn client(&self) -> Client {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM, so the server logs its summary; then make sure.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

struct Client {
    sender: SendRequest<AnyBody>,
}

impl Client {
    async fn send(&mut self, path: &str, body: AnyBody) -> (u16, Bytes) {
        let req = Request::post(path)
            .header("Host", "") // what dockerd 20.10.24 sends
            .header("Accept", "application/vnd.docker.plugins.v1.2+json")
            .body(body)
            .unwrap();
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    /// A JSON call; returns (status, decoded reply).
    async fn call(&mut self, method: &str, args: Value) -> (u16, Value) {
        let body = if args.is_null() {
            Bytes::new()
        } else {
            Bytes::from(format!("{args}\n"))
        };
        let (status, body) = self.send(method, Full::new(body).boxed()).await;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {body:?}"));
        (status, value)
    }

    async fn ok(&mut self, method: &str, args: Value) -> Value {
        let (status, value) = self.call(method, args.clone()).await;
        assert_eq!(status, 200, "{method} {args}: {value}");
        assert!(value.get("Err").is_none(), "{method} {args}: {value}");
        value
    }

    async fn apply_diff(&mut self, id: &str, parent: &str, tar: Vec<u8>) -> (u16, Value) {
        // Several chunks, and the trailing zero padding the layer store leaves.
        let mut chunks: VecDeque<Bytes> = tar.chunks(700).map(Bytes::copy_from_slice).collect();
        chunks.push_back(Bytes::from(vec![0u8; 4096]));
        let path = format!("/GraphDriver.ApplyDiff?id={id}&parent={parent}");
        let (status, body) = self.send(&path, Chunked(chunks).boxed()).await;
        (status, serde_json::from_slice(&body).unwrap())
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    /// A file with one xattr, as a PAX `SCHILY.xattr.NAME` record.
    XattrFile(&'a str, &'a [u8], &'a str, &'a [u8]),
}

fn layer_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_mode(0o755);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, data) => {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::XattrFile(p, data, key, value) => {
                let key = format!("SCHILY.xattr.{key}");
                b.append_pax_extensions([(key.as_str(), *value)]).unwrap();
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn tar_names(tar_bytes: &[u8]) -> Vec<String> {
    tar::Archive::new(tar_bytes)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

const BASE: &str = "b000000000000000000000000000000000000000000000000000000000000001";
const L2: &str = "b000000000000000000000000000000000000000000000000000000000000002";
const CTR: &str = "c000000000000000000000000000000000000000000000000000000000000003";
const HOME: &str = "/var/lib/docker/dindbox";

async fn lifecycle(driver: &str) {
    if !is_root() {
        eprintln!(
            "SKIP graphdriver {driver} lifecycle: needs root (whiteout devices, chown, mounts)"
        );
        return;
    }
    let server = Server::start(driver, &[]);
    let mut c = server.client().await;

    // Activation, with an empty body as the daemon sends it.
    let (status, body) = c
        .send("/Plugin.Activate", Full::new(Bytes::new()).boxed())
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"Implements": ["GraphDriver"]})
    );

    // Calls before Init say what to do.
    let (status, reply) = c.call("/GraphDriver.Get", json!({"ID": BASE})).await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"].as_str().unwrap().contains("Init first"),
        "{reply}"
    );

    let init = json!({"Home": HOME, "Opts": null, "UIDMaps": null, "GIDMaps": null});
    let (status, reply) = c.call("/GraphDriver.Init", init.clone()).await;
    if driver == "overlay" && status != 200 {
        let err = reply["Err"].as_str().unwrap_or_default().to_string();
        if err.contains("failed to mount the overlay") {
            eprintln!("SKIP graphdriver overlay lifecycle: the kernel refused overlay here: {err}");
            return;
        }
    }
    assert_eq!((status, &reply), (200, &json!({})), "{}", server.log());
    let caps = c.ok("/GraphDriver.Capabilities", json!({})).await;
    assert_eq!(
        caps,
        json!({"Capabilities": {"ReproducesExactDiffs": false}})
    );
    let status_reply = c.ok("/GraphDriver.Status", json!({})).await;
    assert!(status_reply["Status"].is_array(), "{status_reply}");

    // An image of two layers: files, dirs, a symlink; then a whiteout.
    c.ok("/GraphDriver.Create", json!({"ID": BASE})).await;
    let base = layer_tar(&[
        E::Dir("etc"),
        E::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        E::File("etc/hosts", b"127.0.0.1 localhost\n"),
        E::File("etc/motd", b"hello from base\n"),
        E::Dir("bin"),
        E::File("bin/busybox", &[0x7f, b'E', b'L', b'F']),
        E::Symlink("bin/sh", "busybox"),
    ]);
    let (status, reply) = c.apply_diff(BASE, "", base).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"Size": 30 + 20 + 16 + 4}));

    c.ok("/GraphDriver.Create", json!({"ID": L2, "Parent": BASE}))
        .await;
    let l2 = layer_tar(&[
        E::Dir("etc"),
        E::File("etc/.wh.motd", b""),
        E::File("etc/l2", b"layer two\n"),
    ]);
    let (status, reply) = c.apply_diff(L2, BASE, l2).await;
    assert_eq!(status, 200, "{reply}");

    // A container: its init layer, then its own.
    let init_layer = format!("{CTR}-init");
    c.ok(
        "/GraphDriver.CreateReadWrite",
        json!({"ID": init_layer, "Parent": L2}),
    )
    .await;
    c.ok(
        "/GraphDriver.CreateReadWrite",
        json!({"ID": CTR, "Parent": init_layer}),
    )
    .await;
    let exists = c.ok("/GraphDriver.Exists", json!({"ID": CTR})).await;
    assert_eq!(exists, json!({"Exists": true}));

    let got = c.ok("/GraphDriver.Get", json!({"ID": CTR})).await;
    let dir = got["Dir"].as_str().unwrap().to_string();
    assert!(
        dir.starts_with(&format!("{HOME}/")),
        "Dir in the container's view: {dir}"
    );
    let again = c.ok("/GraphDriver.Get", json!({"ID": CTR})).await;
    assert_eq!(again["Dir"], dir.as_str(), "Get is stable");
    let rootfs = server.host_view(&dir);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/l2")).unwrap(),
        "layer two\n"
    );
    assert!(
        !rootfs.join("etc/motd").exists(),
        "the second layer's whiteout hides etc/motd"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    // What a process in the container does.
    std::fs::write(rootfs.join("hello"), "world").unwrap();
    std::fs::remove_file(rootfs.join("etc/hosts")).unwrap();

    let changes = c
        .ok(
            "/GraphDriver.Changes",
            json!({"ID": CTR, "Parent": init_layer}),
        )
        .await;
    let changes: Vec<(String, u64)> = changes["Changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| {
            (
                ch["Path"].as_str().unwrap().to_string(),
                ch["Kind"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("/etc".to_string(), 0),
            ("/etc/hosts".to_string(), 2),
            ("/hello".to_string(), 1)
        ]
    );

    let (status, tar_bytes) = c
        .send(
            "/GraphDriver.Diff",
            Full::new(Bytes::from(
                json!({"ID": CTR, "Parent": init_layer}).to_string(),
            ))
            .boxed(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tar_names(&tar_bytes), ["etc/", "etc/.wh.hosts", "hello"]);
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut hello = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().as_ref() == b"hello")
        .unwrap();
    let mut text = String::new();
    hello.read_to_string(&mut text).unwrap();
    assert_eq!(text, "world");

    let size = c
        .ok(
            "/GraphDriver.DiffSize",
            json!({"ID": CTR, "Parent": init_layer}),
        )
        .await;
    assert_eq!(size, json!({"Size": 5}));

    let meta = c.ok("/GraphDriver.GetMetadata", json!({"ID": CTR})).await;
    for value in meta["Metadata"].as_object().unwrap().values() {
        for path in value.as_str().unwrap().split(':') {
            assert!(
                path.starts_with(&format!("{HOME}/")),
                "metadata in the container's view: {meta}"
            );
        }
    }

    // A commit of the container: its diff becomes a new image layer.
    let committed = "d000000000000000000000000000000000000000000000000000000000000004";
    c.ok(
        "/GraphDriver.Create",
        json!({"ID": committed, "Parent": L2}),
    )
    .await;
    let (status, reply) = c.apply_diff(committed, L2, tar_bytes.to_vec()).await;
    assert_eq!(status, 200, "{reply}");

    c.ok("/GraphDriver.Put", json!({"ID": CTR})).await;
    c.ok("/GraphDriver.Put", json!({"ID": CTR})).await;
    if driver == "overlay" {
        let merged = server.host_view(&dir);
        assert!(!merged.join("etc").exists(), "unmounted after the last Put");
    }

    // Errors a user can act on; Diff errors are non-200.
    let (status, reply) = c.call("/GraphDriver.Get", json!({"ID": "../../etc"})).await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"]
            .as_str()
            .unwrap()
            .contains("single path component"),
        "{reply}"
    );
    let (status, reply) = c.call("/GraphDriver.Get", json!({"ID": "nope"})).await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"].as_str().unwrap().contains("does not exist"),
        "{reply}"
    );
    let (status, _) = c
        .send(
            "/GraphDriver.Diff",
            Full::new(Bytes::from(r#"{"ID":"nope"}"#)).boxed(),
        )
        .await;
    assert_eq!(status, 500);

    for id in [committed, CTR, init_layer.as_str(), L2, BASE] {
        c.ok("/GraphDriver.Remove", json!({"ID": id})).await;
    }
    let exists = c.ok("/GraphDriver.Exists", json!({"ID": CTR})).await;
    assert_eq!(exists, json!({}));
    c.ok("/GraphDriver.Cleanup", json!({})).await;

    // Everything lived under <root>/box.
    let store = server.root().join("box/dindbox");
    assert!(store.is_dir());
    assert_eq!(
        std::fs::read_to_string(store.join(".dindbox-driver")).unwrap(),
        driver
    );
}

/// A file's `user.test` xattr goes in with ApplyDiff, is on the file in the
/// layer, and comes back out of Diff as a PAX `SCHILY.xattr.user.test` record.
async fn xattr_round_trip(driver: &str) {
    if !is_root() {
        eprintln!("SKIP graphdriver {driver} xattr round trip: needs root");
        return;
    }
    let server = Server::start(driver, &[]);
    let mut c = server.client().await;
    let init = json!({"Home": HOME, "Opts": null, "UIDMaps": null, "GIDMaps": null});
    let (status, reply) = c.call("/GraphDriver.Init", init).await;
    if driver == "overlay" && status != 200 {
        eprintln!("SKIP graphdriver overlay xattr round trip: {reply}");
        return;
    }
    c.ok("/GraphDriver.Create", json!({"ID": BASE})).await;
    let tar_in = layer_tar(&[
        E::Dir("etc"),
        E::XattrFile("etc/tagged", b"data", "user.test", b"42"),
    ]);
    let (status, reply) = c.apply_diff(BASE, "", tar_in).await;
    assert_eq!(status, 200, "{reply}");
    let dir = c.ok("/GraphDriver.Get", json!({"ID": BASE})).await;
    let on_disk = server
        .host_view(dir["Dir"].as_str().unwrap())
        .join("etc/tagged");
    assert_eq!(
        xattr::get(&on_disk, "user.test").unwrap().as_deref(),
        Some(&b"42"[..]),
        "{}",
        on_disk.display()
    );
    c.ok("/GraphDriver.Put", json!({"ID": BASE})).await;

    let (status, tar_out) = c
        .send(
            "/GraphDriver.Diff",
            Full::new(Bytes::from(json!({"ID": BASE}).to_string())).boxed(),
        )
        .await;
    assert_eq!(status, 200);
    let mut archive = tar::Archive::new(&tar_out[..]);
    let mut tagged = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().as_ref() == b"etc/tagged")
        .expect("etc/tagged in the diff");
    let records: Vec<(String, Vec<u8>)> = tagged
        .pax_extensions()
        .unwrap()
        .expect("PAX records on etc/tagged")
        .map(|x| {
            let x = x.unwrap();
            (x.key().unwrap().to_string(), x.value_bytes().to_vec())
        })
        .filter(|(k, _)| k.starts_with("SCHILY.xattr."))
        .collect();
    assert_eq!(
        records,
        vec![("SCHILY.xattr.user.test".to_string(), b"42".to_vec())]
    );
}

#[tokio::test]
async fn vfs_keeps_xattrs_through_apply_diff_and_diff() {
    xattr_round_trip("vfs").await;
}

#[tokio::test]
async fn overlay_keeps_xattrs_through_apply_diff_and_diff() {
    xattr_round_trip("overlay").await;
}

#[tokio::test]
async fn vfs_lifecycle_over_the_socket() {
    lifecycle("vfs").await;
}

#[tokio::test]
async fn overlay_lifecycle_over_the_socket() {
    lifecycle("overlay").await;
}

#[tokio::test]
async fn hostile_init_and_apply_diff_are_refused() {
    if !is_root() {
        eprintln!("SKIP graphdriver hostile calls: needs root");
        return;
    }
    let server = Server::start("vfs", &["--max-bytes", "4K"]);
    let mut c = server.client().await;
    let outside = server.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // What the box could plant in its own area through the bind mount.
    std::fs::create_dir_all(server.root().join("box")).unwrap();
    std::os::unix::fs::symlink(&outside, server.root().join("box/planted")).unwrap();

    let escapes = [
        ("/var/lib/docker/../../../etc", "contains `..`"),
        ("/etc/docker", "not below /var/lib/docker"),
        ("var/lib/docker/gd", "not an absolute path"),
        ("/var/lib/docker/planted/gd", "symlink"),
    ];
    for (home, why) in escapes {
        let (status, reply) = c.call("/GraphDriver.Init", json!({"Home": home})).await;
        assert_eq!(status, 500, "{home}");
        let err = reply["Err"].as_str().unwrap();
        assert!(err.contains(why), "{home}: {err}");
    }
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "Init wrote outside"
    );

    c.ok("/GraphDriver.Init", json!({"Home": HOME})).await;
    c.ok("/GraphDriver.Create", json!({"ID": "evil"})).await;
    let hostile = layer_tar(&[
        E::Symlink("esc", outside.to_str().unwrap()),
        E::File("esc/pwned", b"gotcha"),
    ]);
    let (status, reply) = c.apply_diff("evil", "", hostile).await;
    assert_eq!(status, 500);
    let err = reply["Err"].as_str().unwrap();
    assert!(
        err.contains("\"esc/pwned\" is refused") && err.contains("symlink"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "ApplyDiff wrote outside"
    );

    // A bad ID in the query; the body is still read to its end.
    let (status, reply) = c
        .apply_diff("..", "", layer_tar(&[E::File("x", b"x")]))
        .await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"]
            .as_str()
            .unwrap()
            .contains("single path component"),
        "{reply}"
    );

    // --max-bytes 4K: a 5000-byte layer does not fit.
    c.ok("/GraphDriver.Create", json!({"ID": "big"})).await;
    let big = vec![7u8; 5000];
    let (status, reply) = c
        .apply_diff("big", "", layer_tar(&[E::File("blob", &big)]))
        .await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"].as_str().unwrap().contains("--max-bytes"),
        "{reply}"
    );
    // The connection is still usable after the refusals (keep-alive).
    c.ok("/GraphDriver.Remove", json!({"ID": "big"})).await;
    c.ok("/GraphDriver.Create", json!({"ID": "small"})).await;
    let (status, reply) = c
        .apply_diff("small", "", layer_tar(&[E::File("f", &[1; 1000])]))
        .await;
    assert_eq!((status, reply), (200, json!({"Size": 1000})));

    let (status, reply) = c.call("/GraphDriver.Frobnicate", json!({})).await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"]
            .as_str()
            .unwrap()
            .contains("not a graphdriver call"),
        "{reply}"
    );
}

/// The daemon calls Init once, when it starts: a server restarted under a
/// running daemon must serve its next calls from the Home recorded by the
/// previous process (regression: every call failed with "Init first").
#[tokio::test]
async fn a_restarted_server_serves_without_a_new_init() {
    if !is_root() {
        eprintln!("SKIP graphdriver restart: needs root");
        return;
    }
    let mut server = Server::start("vfs", &[]);
    let mut c = server.client().await;
    c.ok("/GraphDriver.Init", json!({"Home": HOME})).await;
    c.ok("/GraphDriver.Create", json!({"ID": BASE})).await;
    let (status, reply) = c
        .apply_diff(BASE, "", layer_tar(&[E::File("kept", b"still here\n")]))
        .await;
    assert_eq!(status, 200, "{reply}");
    drop(c);

    server.crash_and_restart("vfs");
    let mut c = server.client().await;
    let dir = c.ok("/GraphDriver.Get", json!({"ID": BASE})).await;
    let dir = dir["Dir"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(server.host_view(&dir).join("kept")).unwrap(),
        "still here\n"
    );
    c.ok("/GraphDriver.Put", json!({"ID": BASE})).await;
    let top = "c000000000000000000000000000000000000000000000000000000000000002";
    c.ok("/GraphDriver.Create", json!({"ID": top, "Parent": BASE}))
        .await;
    assert!(
        server
            .log()
            .contains("re-opened the Home of the previous run"),
        "{}",
        server.log()
    );
    drop(c);

    // The record sits in the box's own area, so the box can rewrite it: it
    // is validated like any Init, and a bad one only means waiting for Init.
    let record = server.root().join("box/.dindbox-init-home");
    std::fs::write(&record, "/var/lib/docker/../../../etc").unwrap();
    server.crash_and_restart("vfs");
    let mut c = server.client().await;
    let (status, reply) = c.call("/GraphDriver.Get", json!({"ID": BASE})).await;
    assert_eq!(status, 500);
    assert!(
        reply["Err"].as_str().unwrap().contains("Init first"),
        "{reply}"
    );
    assert!(
        server.log().contains("could not re-open the Home"),
        "{}",
        server.log()
    );
    // A symlink planted there is not followed.
    std::fs::remove_file(&record).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &record).unwrap();
    server.crash_and_restart("vfs");
    let mut c2 = server.client().await;
    let (status, _) = c2.call("/GraphDriver.Get", json!({"ID": BASE})).await;
    assert_eq!(status, 500);
    // The daemon's Init still works and records the Home again.
    drop(c);
    c2.ok("/GraphDriver.Init", json!({"Home": HOME})).await;
    c2.ok("/GraphDriver.Get", json!({"ID": BASE})).await;
    assert_eq!(std::fs::read_to_string(&record).unwrap(), HOME);
}
