//! `dindbox snapshotter-server` through its socket, without containerd: a
//! tonic client of containerd's snapshots service plays the box's
//! containerd over a real unix socket.
//!
//! The server runs in its own mount namespace (`unshare --mount`), so its
//! mounts vanish with it; the test reads and writes a snapshot's mount
//! through `/proc/<server pid>/root/<host path>`, which resolves in that
//! namespace. Needs root (mounts); without it the tests skip loudly.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use std::time::{Duration, Instant};
use support::host_server::Launch;

use containerd_snapshots::api::snapshots::v1::snapshots_client::SnapshotsClient;
use containerd_snapshots::api::snapshots::v1::{
    CommitSnapshotRequest, Info, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
    ViewSnapshotRequest,
};
use containerd_snapshots::api::types::Mount;
use containerd_snapshots::tonic::transport::{Channel, Endpoint, Uri};
use containerd_snapshots::tonic::{Code, Status};
use tokio::net::UnixStream;

const PREFIX: &str = "/var/lib/dindbox-snapshots";

struct Server {
    child: Child,
    root: PathBuf,
    name: String,
    socket: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    /// A mount namespace of its own that outlives the server (`sleep` in
    /// it), so a crash leaves the server's mounts behind for the next run.
    holder: Option<Child>,
    /// `DINDBOX_SN_TEST_FAULT` for the next spawn.
    fault: Option<String>,
}

impl Server {
    fn start(root: &Path, name: &str, extra: &[&str]) -> Server {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Server::launch(root, name, extra, Launch::default(), None)
    }

    /// A server in a lasting mount namespace that aborts at `fault`.
    fn start_with_fault(root: &Path, name: &str, fault: &str) -> Server {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sleep", "600"])
            .spawn()
            .expect("spawn unshare sleep");
        // Until unshare has exec'd sleep in the new namespace.
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/ns/mnt", holder.id())).ok() == Some(ours.clone())
            || std::fs::read_to_string(format!("/proc/{}/comm", holder.id())).unwrap_or_default()
                != "sleep\n"
        {
            assert!(Instant::now() < deadline, "unshare did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let launch = Launch {
            namespace_of: Some(holder.id()),
            fault: Some(fault.to_string()),
        };
        Server::launch(root, name, Vec::new(), launch, Some(holder))
    }

    fn launch(
        root: &Path,
        name: &str,
        extra: Vec<String>,
        launch: Launch,
        holder: Option<Child>,
    ) -> Server {
        let socket = root.parent().unwrap().join(format!("{name}.sock"));
        let log = root.parent().unwrap().join(format!("{name}.log"));
        let child = spawn(root, name, &socket, &log, &extra, &launch);
        let server = Server {
            child,
            root: std::fs::canonicalize(root).unwrap(),
            name: name.to_string(),
            socket,
            log,
            extra,
            holder,
            fault: None,
        };
        server.wait_for_socket();
        server
    }

    /// Waits for the server to have exited (an abort).
    fn wait_for_crash(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the server exited cleanly: {status}");
    }

    /// Starts it again in the same namespace, without the fault.
    fn restart_after_crash(&mut self) {
        let launch = Launch {
            namespace_of: self.holder.as_ref().map(Child::id),
            fault: self.fault.take(),
        };
        let _ = std::fs::remove_file(&self.socket);
        self.respawn(&launch);
    }

    /// The same command again, started as `launch` says.
    fn respawn(&mut self, launch: &Launch) {
        self.child = spawn(
            &self.root,
            &self.name,
            &self.socket,
            &self.log,
            &self.extra,
            launch,
        );
        self.wait_for_socket();
    }

    /// Whether the server's namespace has a mount on `ROOT/NAME/shared/<id>`.
    fn is_mounted(&self, id: &str) -> bool {
        let pid = self.holder.as_ref().map_or(self.child.id(), Child::id);
        let target = self.root.join(&self.name).join("shared").join(id);
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap()
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(target.to_str().unwrap()))
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

    /// SIGKILL (a crash: the socket file stays, the namespace and its
    /// mounts go), then the same command again.
    fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.respawn(&Launch::default());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where a mount handed to the box is, as this process reaches it.
    fn host_view(&self, mount: &Mount) -> PathBuf {
        assert_eq!(mount.r#type, "bind", "{mount:?}");
        let rel = Path::new(&mount.source)
            .strip_prefix(PREFIX)
            .expect("a path below the container prefix");
        let host = self.root.join(&self.name).join("shared").join(rel);
        let pid = self.holder.as_ref().map_or(self.child.id(), Child::id);
        PathBuf::from(format!("/proc/{pid}/root")).join(host.strip_prefix("/").unwrap())
    }

    async fn client(&self) -> SnapshotsClient<Channel> {
        let socket = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                UnixStream::connect(socket.clone())
            }))
            .await
            .unwrap();
        SnapshotsClient::new(channel)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(holder) = &mut self.holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

fn spawn(
    root: &Path,
    name: &str,
    socket: &Path,
    log: &Path,
    extra: &[String],
    launch: &Launch,
) -> Child {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    support::host_server::spawn(
        "snapshotter-server",
        root,
        name,
        socket,
        log,
        &extra,
        launch,
    )
}

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("SKIP snapshotter {test}: needs root (mounts)");
    true
}

fn new_root() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    (tmp, root)
}

async fn prepare(
    c: &mut SnapshotsClient<Channel>,
    key: &str,
    parent: &str,
) -> Result<Vec<Mount>, Status> {
    prepare_labeled(c, key, parent, HashMap::new()).await
}

async fn prepare_labeled(
    c: &mut SnapshotsClient<Channel>,
    key: &str,
    parent: &str,
    labels: HashMap<String, String>,
) -> Result<Vec<Mount>, Status> {
    c.prepare(PrepareSnapshotRequest {
        snapshotter: "dindbox".into(),
        key: key.into(),
        parent: parent.into(),
        labels,
    })
    .await
    .map(|r| r.into_inner().mounts)
}

async fn view(c: &mut SnapshotsClient<Channel>, key: &str, parent: &str) -> Vec<Mount> {
    c.view(ViewSnapshotRequest {
        snapshotter: "dindbox".into(),
        key: key.into(),
        parent: parent.into(),
        labels: HashMap::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .mounts
}

async fn commit(c: &mut SnapshotsClient<Channel>, name: &str, key: &str) -> Result<(), Status> {
    c.commit(CommitSnapshotRequest {
        snapshotter: "dindbox".into(),
        name: name.into(),
        key: key.into(),
        labels: HashMap::from([("committed".to_string(), name.to_string())]),
    })
    .await
    .map(|_| ())
}

async fn remove(c: &mut SnapshotsClient<Channel>, key: &str) -> Result<(), Status> {
    c.remove(RemoveSnapshotRequest {
        snapshotter: "dindbox".into(),
        key: key.into(),
    })
    .await
    .map(|_| ())
}

async fn stat(c: &mut SnapshotsClient<Channel>, key: &str) -> Result<Info, Status> {
    c.stat(StatSnapshotRequest {
        snapshotter: "dindbox".into(),
        key: key.into(),
    })
    .await
    .map(|r| r.into_inner().info.unwrap())
}

async fn usage(c: &mut SnapshotsClient<Channel>, key: &str) -> (i64, i64) {
    let u = c
        .usage(UsageRequest {
            snapshotter: "dindbox".into(),
            key: key.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (u.size, u.inodes)
}

async fn walk(c: &mut SnapshotsClient<Channel>, filters: &[&str]) -> Result<Vec<String>, Status> {
    let mut stream = c
        .list(ListSnapshotsRequest {
            snapshotter: "dindbox".into(),
            filters: filters.iter().map(|s| s.to_string()).collect(),
        })
        .await?
        .into_inner();
    let mut names = Vec::new();
    while let Some(batch) = stream.message().await? {
        names.extend(batch.info.into_iter().map(|i| i.name));
    }
    names.sort();
    Ok(names)
}

fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
    result.expect_err("the call should fail").code()
}

#[tokio::test]
async fn a_layer_chain_through_prepare_commit_view_and_remove() {
    if skip_unless_root("lifecycle") {
        return;
    }
    let (_tmp, root) = new_root();
    let server = Server::start(&root, "box", &[]);
    let mut c = server.client().await;

    // Layer 1: a base with two files.
    let mounts = prepare(&mut c, "default/1/extract-a", "").await.unwrap();
    assert_eq!(mounts.len(), 1);
    assert!(mounts[0].source.starts_with(PREFIX), "{mounts:?}");
    assert!(mounts[0].options.contains(&"rw".to_string()));
    let a = server.host_view(&mounts[0]);
    std::fs::create_dir(a.join("etc")).unwrap();
    std::fs::write(a.join("etc/keep"), "keep\n").unwrap();
    std::fs::write(a.join("etc/gone"), "gone\n").unwrap();
    let (size, inodes) = usage(&mut c, "default/1/extract-a").await;
    assert!(size > 0 && inodes == 3, "{size} {inodes}");
    commit(&mut c, "sha256:A", "default/1/extract-a")
        .await
        .unwrap();
    assert_eq!(
        code(stat(&mut c, "default/1/extract-a").await),
        Code::NotFound
    );
    let info = stat(&mut c, "sha256:A").await.unwrap();
    assert_eq!(
        (info.kind, info.labels["committed"].as_str()),
        (3, "sha256:A")
    );

    // Layer 2 on it: deletes one file, adds another.
    let mounts = prepare(&mut c, "default/2/extract-b", "sha256:A")
        .await
        .unwrap();
    let b = server.host_view(&mounts[0]);
    assert_eq!(
        std::fs::read_to_string(b.join("etc/keep")).unwrap(),
        "keep\n"
    );
    std::fs::remove_file(b.join("etc/gone")).unwrap();
    std::fs::write(b.join("etc/new"), "new\n").unwrap();
    commit(&mut c, "sha256:B", "default/2/extract-b")
        .await
        .unwrap();

    // A view of the chain: the deletion holds, and it is read-only.
    let mounts = view(&mut c, "view-b", "sha256:B").await;
    assert!(mounts[0].options.contains(&"ro".to_string()));
    let v = server.host_view(&mounts[0]);
    assert!(v.join("etc/keep").exists() && v.join("etc/new").exists());
    assert!(!v.join("etc/gone").exists(), "a deleted file stays deleted");
    assert!(
        std::fs::write(v.join("etc/x"), "x").is_err(),
        "a view is read-only"
    );
    // A view of one layer, and a container's active snapshot on the chain.
    let one = server.host_view(&view(&mut c, "view-a", "sha256:A").await[0]);
    assert!(one.join("etc/gone").exists());
    let mounts = prepare(&mut c, "default/3/ctr", "sha256:B").await.unwrap();
    let ctr = server.host_view(&mounts[0]);
    std::fs::write(ctr.join("etc/keep"), "changed\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(v.join("etc/keep")).unwrap(),
        "keep\n",
        "a container's write stays in its own snapshot"
    );
    let again = c
        .mounts(MountsRequest {
            snapshotter: "dindbox".into(),
            key: "default/3/ctr".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(again, mounts);

    // The rules: no duplicates, parents must be committed, children first.
    assert_eq!(
        code(prepare(&mut c, "default/3/ctr", "").await),
        Code::AlreadyExists
    );
    assert_eq!(
        code(prepare(&mut c, "x", "default/3/ctr").await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(prepare(&mut c, "x", "sha256:none").await),
        Code::NotFound
    );
    assert_eq!(
        code(commit(&mut c, "sha256:B", "default/3/ctr").await),
        Code::AlreadyExists
    );
    assert_eq!(
        code(commit(&mut c, "n", "view-a").await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(remove(&mut c, "sha256:A").await),
        Code::FailedPrecondition
    );
    for key in ["default/3/ctr", "view-a", "view-b", "sha256:B", "sha256:A"] {
        remove(&mut c, key).await.unwrap();
    }
    assert!(
        !ctr.exists() && !v.exists(),
        "Remove unmounts and removes the mount point"
    );
    assert_eq!(walk(&mut c, &[]).await.unwrap(), Vec::<String>::new());
    let snapshots = root.join("box/snapshots");
    assert_eq!(std::fs::read_dir(snapshots).unwrap().count(), 0);
}

#[tokio::test]
async fn walk_filters_and_label_updates() {
    if skip_unless_root("walk") {
        return;
    }
    let (_tmp, root) = new_root();
    let server = Server::start(&root, "box", &[]);
    let mut c = server.client().await;
    let gc = HashMap::from([("containerd.io/gc.root".to_string(), "now".to_string())]);
    prepare_labeled(&mut c, "k/1", "", gc).await.unwrap();
    commit(&mut c, "L1", "k/1").await.unwrap();
    prepare(&mut c, "k/2", "L1").await.unwrap();
    view(&mut c, "v/1", "L1").await;

    let table: &[(&[&str], &[&str])] = &[
        (&[], &["L1", "k/2", "v/1"]),
        (&["kind==committed"], &["L1"]),
        (&["kind!=committed"], &["k/2", "v/1"]),
        (&["parent==L1,kind==active"], &["k/2"]),
        (&["kind==view", "kind==committed"], &["L1", "v/1"]),
        (&["name~=^k/"], &["k/2"]),
        (&[r#"labels."containerd.io/gc.root""#], &[]),
        (&["labels.committed==L1"], &["L1"]),
    ];
    for (filters, want) in table {
        assert_eq!(walk(&mut c, filters).await.unwrap(), *want, "{filters:?}");
    }
    assert_eq!(
        code(walk(&mut c, &["name~=("]).await),
        Code::InvalidArgument
    );

    // Update: one label set, one deleted, other fields refused.
    let mut info = stat(&mut c, "L1").await.unwrap();
    info.labels = HashMap::from([("a".to_string(), "1".to_string())]);
    let update = |info: Info, paths: &[&str]| UpdateSnapshotRequest {
        snapshotter: "dindbox".into(),
        info: Some(info),
        update_mask: Some(prost_types_mask(paths)),
    };
    let updated = c
        .update(update(info.clone(), &["labels.a", "labels.committed"]))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(updated.labels, info.labels);
    assert_eq!(
        walk(&mut c, &["labels.a==1"]).await.unwrap(),
        vec!["L1".to_string()]
    );
    assert_eq!(
        c.update(update(info.clone(), &["parent"]))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_restarted_server_keeps_snapshots_and_remounts_them() {
    if skip_unless_root("restart") {
        return;
    }
    let (_tmp, root) = new_root();
    let mut server = Server::start(&root, "box", &[]);
    let mut c = server.client().await;
    let base = server.host_view(&prepare(&mut c, "a", "").await.unwrap()[0]);
    std::fs::write(base.join("f"), "base\n").unwrap();
    commit(&mut c, "A", "a").await.unwrap();
    let mounts = prepare(&mut c, "ctr", "A").await.unwrap();
    std::fs::write(server.host_view(&mounts[0]).join("g"), "ctr\n").unwrap();
    // A crash mid-life: the record of an active snapshot, and a directory
    // no record owns (as a crash inside Prepare would leave).
    std::fs::create_dir_all(root.join("box/snapshots/999/fs")).unwrap();

    server.crash_and_restart();
    let mut c = server.client().await;
    assert_eq!(stat(&mut c, "A").await.unwrap().kind, 3);
    let again = c
        .mounts(MountsRequest {
            snapshotter: "dindbox".into(),
            key: "ctr".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(again, mounts);
    let ctr = server.host_view(&again[0]);
    assert_eq!(std::fs::read_to_string(ctr.join("f")).unwrap(), "base\n");
    assert_eq!(std::fs::read_to_string(ctr.join("g")).unwrap(), "ctr\n");
    assert!(
        !root.join("box/snapshots/999").exists(),
        "the orphan is swept"
    );
    assert_eq!(
        walk(&mut c, &[]).await.unwrap(),
        vec!["A".to_string(), "ctr".to_string()]
    );
}

#[tokio::test]
async fn the_quota_refuses_commits_and_prepares_past_it() {
    if skip_unless_root("quota") {
        return;
    }
    let (_tmp, root) = new_root();
    let server = Server::start(&root, "box", &["--max-bytes", "1m"]);
    let mut c = server.client().await;
    let small = server.host_view(&prepare(&mut c, "small", "").await.unwrap()[0]);
    std::fs::write(small.join("f"), vec![7u8; 100 * 1024]).unwrap();
    commit(&mut c, "S", "small").await.unwrap();
    let big = server.host_view(&prepare(&mut c, "big", "S").await.unwrap()[0]);
    std::fs::write(big.join("f"), vec![7u8; 2 * 1024 * 1024]).unwrap();
    let err = commit(&mut c, "B", "big").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("quota"), "{}", err.message());
    assert_eq!(
        code(prepare(&mut c, "more", "S").await),
        Code::ResourceExhausted
    );
    remove(&mut c, "big").await.unwrap();
    prepare(&mut c, "more", "S").await.unwrap();
}

#[tokio::test]
async fn hostile_keys_and_labels_reach_no_path() {
    if skip_unless_root("hostile") {
        return;
    }
    let (tmp, root) = new_root();
    let server = Server::start(&root, "box", &[]);
    let mut c = server.client().await;
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for key in ["../../outside/x", "/etc/passwd", "a/../../b", ".", ".."] {
        let mounts = prepare(&mut c, key, "").await.unwrap();
        assert!(mounts[0].source.starts_with(PREFIX), "{key}: {mounts:?}");
        assert!(!mounts[0].source.contains(".."), "{key}: {mounts:?}");
        commit(&mut c, &format!("{key}/committed"), key)
            .await
            .unwrap();
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(code(prepare(&mut c, "", "").await), Code::InvalidArgument);
    assert_eq!(
        code(prepare(&mut c, &"k".repeat(5000), "").await),
        Code::InvalidArgument
    );
    let huge = HashMap::from([("l".to_string(), "v".repeat(5000))]);
    assert_eq!(
        code(prepare_labeled(&mut c, "k", "", huge).await),
        Code::InvalidArgument
    );
    let many = (0..100)
        .map(|i| (format!("l{i}"), "v".repeat(1000)))
        .collect::<HashMap<_, _>>();
    assert_eq!(
        code(prepare_labeled(&mut c, "k", "", many).await),
        Code::InvalidArgument
    );
    assert_eq!(walk(&mut c, &["kind==active"]).await.unwrap().len(), 0);
    // A symlink planted where the server mounts next (ids 1-5 are taken)
    // is not followed: the Prepare fails and nothing is mounted outside.
    std::os::unix::fs::symlink(&outside, root.join("box/shared/6")).unwrap();
    let err = prepare(&mut c, "next", "").await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_eq!(code(stat(&mut c, "next").await), Code::NotFound);
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", server.child.id())).unwrap();
    assert!(
        !mountinfo.contains(outside.to_str().unwrap()),
        "{mountinfo}"
    );
}

#[tokio::test]
async fn two_boxes_on_one_root_cannot_reach_each_other() {
    if skip_unless_root("two boxes") {
        return;
    }
    let (_tmp, root) = new_root();
    let one = Server::start(&root, "one", &[]);
    let two = Server::start(&root, "two", &[]);
    let (mut c1, mut c2) = (one.client().await, two.client().await);
    let m = prepare(&mut c1, "a", "").await.unwrap();
    std::fs::write(one.host_view(&m[0]).join("secret"), "one\n").unwrap();
    commit(&mut c1, "A", "a").await.unwrap();
    assert_eq!(code(stat(&mut c2, "A").await), Code::NotFound);
    assert_eq!(code(prepare(&mut c2, "b", "A").await), Code::NotFound);
    assert_eq!(code(remove(&mut c2, "A").await), Code::NotFound);
    assert_eq!(walk(&mut c2, &[]).await.unwrap(), Vec::<String>::new());
    let m2 = prepare(&mut c2, "a", "").await.unwrap();
    assert!(!two.host_view(&m2[0]).join("secret").exists());
    assert_eq!(stat(&mut c1, "A").await.unwrap().name, "A");
}

#[tokio::test]
async fn extraction_overlays_are_volatile_and_remount_after_a_crash() {
    if skip_unless_root("volatile") {
        return;
    }
    let (_tmp, root) = new_root();
    let mut server = Server::start(&root, "box", &[]);
    let mut c = server.client().await;
    prepare(&mut c, "moby/1/extract-1-a sha256:A", "")
        .await
        .unwrap();
    commit(&mut c, "moby/2/sha256:A", "moby/1/extract-1-a sha256:A")
        .await
        .unwrap();
    let key = "moby/3/extract-2-b sha256:B";
    let mounts = prepare(&mut c, key, "moby/2/sha256:A").await.unwrap();
    prepare(&mut c, "moby/4/container", "moby/2/sha256:A")
        .await
        .unwrap();
    let mountinfo = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let overlays: Vec<String> = mountinfo(server.child.id())
        .lines()
        .filter(|l| l.contains(" - overlay ") && l.contains(&*root.to_string_lossy()))
        .map(String::from)
        .collect();
    assert_eq!(overlays.len(), 2, "{overlays:?}");
    assert_eq!(
        overlays.iter().filter(|l| l.contains("volatile")).count(),
        1,
        "only the extraction is volatile: {overlays:?}"
    );
    // The server crashes and its mounts go: the restarted one mounts the
    // extraction again, and it works on.
    server.crash_and_restart();
    let view = server.host_view(&mounts[0]);
    std::fs::write(view.join("after"), "x").unwrap();
    let mut c = server.client().await;
    commit(&mut c, "moby/5/sha256:B", key).await.unwrap();
    assert_eq!(stat(&mut c, "moby/5/sha256:B").await.unwrap().kind, 3);
}

#[tokio::test]
async fn a_crash_between_the_commit_record_and_the_unmount_leaves_a_consistent_store() {
    if skip_unless_root("crash mid-commit") {
        return;
    }
    let (_tmp, root) = new_root();
    let mut server = Server::start_with_fault(&root, "box", "after-commit-record");
    let mut c = server.client().await;
    let mounts = prepare(&mut c, "a", "").await.unwrap();
    std::fs::write(server.host_view(&mounts[0]).join("f"), "base\n").unwrap();
    let id = Path::new(&mounts[0].source)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let crashed = commit(&mut c, "A", "a").await;
    assert!(crashed.is_err(), "the commit answered: {crashed:?}");
    server.wait_for_crash();
    assert!(
        server.log().contains("aborting"),
        "the fault did not fire:\n{}",
        server.log()
    );
    assert!(server.is_mounted(&id), "the crash left no mount behind");
    server.restart_after_crash();

    let mut c = server.client().await;
    assert_eq!(stat(&mut c, "A").await.unwrap().kind, 3, "committed");
    assert_eq!(code(stat(&mut c, "a").await), Code::NotFound);
    assert!(
        !server.is_mounted(&id),
        "the committed snapshot is still mounted at shared/{id}:\n{}",
        server.log()
    );
    assert!(server
        .log()
        .contains("unmounting a committed snapshot a crash left mounted"));
    let (size, inodes) = usage(&mut c, "A").await;
    assert!(size > 0 && inodes == 1, "{size} {inodes}");
    let child = prepare(&mut c, "b", "A").await.unwrap();
    assert_eq!(
        std::fs::read_to_string(server.host_view(&child[0]).join("f")).unwrap(),
        "base\n"
    );
    assert_eq!(
        walk(&mut c, &[]).await.unwrap(),
        vec!["A".to_string(), "b".to_string()]
    );
    remove(&mut c, "b").await.unwrap();
    remove(&mut c, "A").await.unwrap();
    assert_eq!(walk(&mut c, &[]).await.unwrap(), Vec::<String>::new());
}
