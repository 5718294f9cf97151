//! Owner isolation (`dindbox proxy --owner-label`) through real sockets: the
//! fake dockerd of `tests/support/dockerd.rs` answering as a daemon that knows a few labelled containers, execs, networks and
//! volumes, and two proxies with different owners in front of it, as two CI
//! jobs on one host would have.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dindbox::proxy::policy::Policy;
use serde_json::{json, Value};
use support::dockerd::{Fake, Reply, Seen};
use support::proxy::{call, Sent::*};
use tokio_util::sync::CancellationToken;

const KEY: &str = "ci.owner";
const MINE: &str = "job-1";
const THEIRS: &str = "job-2";

/// What the fake dockerd knows: objects with labels.
struct Daemon {
    /// Swap the names `mine` and `theirs` right after answering the next
    /// container inspect: a rename between the proxy's check and its use.
    rename_after_inspect: bool,
    /// (id, name, owner)
    containers: Vec<(&'static str, &'static str, Option<&'static str>)>,
    /// (exec id, container id)
    execs: Vec<(&'static str, &'static str)>,
    /// (id, name, owner)
    networks: Vec<(&'static str, &'static str, Option<&'static str>)>,
    /// (name, labels)
    volumes: Vec<(String, Value)>,
}

impl Daemon {
    fn new() -> Daemon {
        Daemon {
            rename_after_inspect: false,
            containers: vec![
                ("aaaa1111", "mine", Some(MINE)),
                ("bbbb2222", "theirs", Some(THEIRS)),
                ("cccc3333", "nobodys", None),
                ("dddd4444", "my-binder", Some(MINE)),
                ("eeee5555", "host-sidecar", None),
            ],
            execs: vec![("e-mine", "aaaa1111"), ("e-theirs", "bbbb2222")],
            networks: vec![
                ("n1111", "mynet", Some(MINE)),
                ("n2222", "theirnet", Some(THEIRS)),
                ("n0000", "bridge", None),
            ],
            volumes: vec![
                ("myvol".into(), json!({ KEY: MINE })),
                ("theirvol".into(), json!({ KEY: THEIRS })),
                ("plainvol".into(), Value::Null),
                ("anon-mine".into(), json!({})),
                ("anon-theirs".into(), Value::Null),
                // Made on the daemon with the local driver's bind options.
                ("hostvol".into(), Value::Null),
            ],
        }
    }

    /// `GET /containers/{id}/json`'s `Mounts`: two containers bind host paths.
    fn container_mounts(id: &str) -> Value {
        match id {
            "dddd4444" => json!([{"Type": "bind", "Source": "/srv/mine", "Destination": "/b"}]),
            "eeee5555" => json!([{"Type": "bind", "Source": "/etc", "Destination": "/hostetc"}]),
            _ => json!([{"Type": "volume", "Name": "myvol", "Destination": "/data"}]),
        }
    }

    /// Anonymous volumes (no labels) and the container mounting each.
    fn mounts(&self) -> [(&'static str, &'static str); 2] {
        [("anon-mine", "aaaa1111"), ("anon-theirs", "bbbb2222")]
    }

    /// `GET /containers/json`, filtered by `label` and `volume` as dockerd does.
    fn list(&self, query: &str) -> Value {
        let filters: Value = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "filters")
            .and_then(|(_, v)| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        let wanted = |key: &str| -> Vec<String> {
            filters[key]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let list: Vec<Value> = self
            .containers
            .iter()
            .filter(|(_, _, owner)| {
                wanted("label")
                    .iter()
                    .all(|l| Some(l.as_str()) == owner.map(|o| format!("{KEY}={o}")).as_deref())
            })
            .filter(|(id, _, _)| {
                wanted("volume")
                    .iter()
                    .all(|v| self.mounts().iter().any(|(n, c)| n == v && c == id))
            })
            .map(|(id, _, _)| json!({ "Id": id }))
            .collect();
        Value::Array(list)
    }

    fn answer(&mut self, method: &str, path: &str, query: &str, body: &str) -> (u16, Value) {
        if (method, path) == ("GET", "/containers/json") {
            return (200, self.list(query));
        }
        let labels = |owner: Option<&str>| owner.map_or(Value::Null, |o| json!({ KEY: o }));
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["containers", name, "json"]) => {
                match self
                    .containers
                    .iter()
                    .find(|(id, n, _)| id.starts_with(name) || n == name)
                {
                    Some((id, n, owner)) => {
                        let answer = json!({"Id": id, "Name": format!("/{n}"), "Config": {"Labels": labels(*owner)},
                               "Mounts": Daemon::container_mounts(id)});
                        if std::mem::take(&mut self.rename_after_inspect) {
                            self.containers[0].1 = "theirs";
                            self.containers[1].1 = "mine";
                        }
                        (200, answer)
                    }
                    None => (
                        404,
                        json!({"message": format!("No such container: {name}")}),
                    ),
                }
            }
            // Two images whose working directories containers inherit; no
            // tags (every tag is free; tests/proxy_tags.rs has tagged images).
            ("GET", ["images", "wd-proc", "json"]) => (
                200,
                json!({"Id": "sha256:wdproc", "Config": {"WorkingDir": "/x/../proc/self/fd/7"}}),
            ),
            ("GET", ["images", "wd-app", "json"]) => (
                200,
                json!({"Id": "sha256:wdapp", "Config": {"WorkingDir": "/app"}}),
            ),
            ("GET", ["images", _, .., "json"]) => (404, json!({"message": "No such image"})),
            // A commit makes an image; the proxy then sets its tag itself.
            ("POST", ["commit"]) => (201, json!({"Id": format!("sha256:{}", "c".repeat(64))})),
            ("POST", ["images", .., "tag"]) => (201, Value::Null),
            ("GET", ["exec", id, "json"]) => match self.execs.iter().find(|(e, _)| e == id) {
                Some((e, c)) => (200, json!({"ID": e, "ContainerID": c})),
                None => (
                    404,
                    json!({"message": format!("No such exec instance: {id}")}),
                ),
            },
            ("GET", ["networks", name]) => {
                match self
                    .networks
                    .iter()
                    .find(|(id, n, _)| id == name || n == name)
                {
                    Some((id, n, owner)) => (
                        200,
                        json!({"Id": id, "Name": n, "Labels": labels(*owner),
                               "Containers": {"bbbb2222": {"Name": "theirs"}}}),
                    ),
                    None => (404, json!({"message": format!("network {name} not found")})),
                }
            }
            ("GET", ["volumes", name]) => match self.volumes.iter().find(|(n, _)| n == name) {
                Some((n, l)) => {
                    let options = match n.as_str() {
                        "hostvol" => json!({"type": "none", "o": "bind", "device": "/etc"}),
                        _ => Value::Null,
                    };
                    (
                        200,
                        json!({"Name": n, "Driver": "local", "Labels": l, "Options": options}),
                    )
                }
                None => (
                    404,
                    json!({"message": format!("get {name}: no such volume")}),
                ),
            },
            ("POST", ["volumes", "create"]) => {
                let request: Value = serde_json::from_str(body).unwrap_or_default();
                let name = request["Name"].as_str().unwrap_or("anon").to_string();
                // Like dockerd: an existing name answers with the existing volume.
                if let Some((n, l)) = self.volumes.iter().find(|(n, _)| *n == name) {
                    return (201, json!({"Name": n, "Labels": l}));
                }
                self.volumes.push((name.clone(), request["Labels"].clone()));
                (201, json!({"Name": name, "Labels": request["Labels"]}))
            }
            ("GET", ["system", "df"]) => (
                200,
                json!({"Images": [{"Id": "sha256:i"}],
                       "Containers": [{"Id": "aaaa1111", "Labels": {KEY: MINE}},
                                      {"Id": "bbbb2222", "Labels": {KEY: THEIRS}}],
                       "Volumes": [{"Name": "myvol", "Labels": {KEY: MINE}},
                                   {"Name": "theirvol", "Labels": {KEY: THEIRS}}]}),
            ),
            _ => (200, json!({"Id": "c0ffee", "Warnings": []})),
        }
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    /// The proxy of job-1 (`ci.owner=job-1`).
    mine: PathBuf,
    /// A proxy without an owner label (box mode).
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
    /// What reached the daemon but the proxy's own version question.
    fn seen(&self) -> Vec<Seen> {
        self.fake.forwarded()
    }

    fn forget(&self) {
        self.fake.forget();
    }

    /// The requests that were not the proxy's own ownership questions.
    fn forwarded(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !is_ownership_question(s))
            .collect()
    }
}

fn is_ownership_question(s: &Seen) -> bool {
    let path = s.target.split('?').next().unwrap();
    s.method == "GET"
        && (path.ends_with("/containers/json") && s.target.contains("volume%22")
            || path.ends_with("/json")
                && (path.contains("/containers/") || path.contains("/exec/"))
            || path.contains("/networks/")
            || path.contains("/volumes/")
            || path
                .strip_suffix("/json")
                .and_then(|p| p.split_once("/images/"))
                .is_some_and(|(_, name)| !name.is_empty()))
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("dockerd.sock");
    let daemon = Arc::new(Mutex::new(Daemon::new()));
    let shutdown = CancellationToken::new();
    let answering = daemon.clone();
    let fake = Fake::dockerd_20()
        .answering(move |seen| std::future::ready(answer(&answering, &seen)))
        .spawn(&upstream);
    let mine = dir.path().join("mine.sock");
    let plain = dir.path().join("plain.sock");
    let owned = Policy {
        labels: vec![("team".into(), "a".into())],
        owner: Some((KEY.into(), MINE.into())),
        ..Policy::default()
    };
    support::proxy::serve(&upstream, &mine, owned, &shutdown).await;
    support::proxy::serve(&upstream, &plain, Policy::default(), &shutdown).await;
    Harness {
        _dir: dir,
        mine,
        plain,
        fake,
        daemon,
        shutdown,
    }
}

/// The daemon's answer to a request of a client (or an ownership question).
fn answer(daemon: &Mutex<Daemon>, seen: &Seen) -> Reply {
    let path = seen.path();
    let path = path.strip_prefix("/v1.41").unwrap_or(path);
    let (status, answer) =
        daemon
            .lock()
            .unwrap()
            .answer(&seen.method, path, seen.query(), &seen.body);
    Reply::json(status, answer.to_string())
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The `filters` parameter of a forwarded target, parsed.
fn filters(target: &str) -> Value {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let value = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "filters")
        .map(|(_, v)| v.into_owned())
        .expect("a filters parameter");
    serde_json::from_str(&value).unwrap()
}

#[tokio::test]
async fn another_owners_container_looks_absent_on_every_id_endpoint() {
    let h = start().await;
    for (method, target) in [
        ("GET", "/v1.41/containers/theirs/json"),
        ("GET", "/containers/theirs/logs?stdout=1"),
        ("GET", "/containers/bbbb2222/archive?path=/etc"),
        ("GET", "/containers/bbbb/export"),
        ("POST", "/containers/theirs/kill"),
        ("POST", "/containers/theirs/attach?stream=1"),
        ("DELETE", "/containers/theirs?force=1"),
        ("GET", "/containers/nobodys/json"),
        ("GET", "/containers/ghost/json"),
    ] {
        let (status, body) = call(&h.mine, method, target, Nothing).await;
        assert_eq!(status, 404, "{method} {target}: {body}");
        assert!(
            message(&body).starts_with("No such container: "),
            "{method} {target}: {body}"
        );
    }
    let (status, body) = call(
        &h.mine,
        "POST",
        "/containers/theirs/exec",
        Json(r#"{"Cmd":["sh"]}"#),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(message(&body), "No such container: theirs");
    assert!(
        h.forwarded().is_empty(),
        "only ownership questions reached the daemon: {:?}",
        h.forwarded()
    );
}

#[tokio::test]
async fn ones_own_container_passes_pinned_to_its_full_id() {
    let h = start().await;
    let (status, _) = call(&h.mine, "GET", "/containers/mine/logs?stdout=1", Nothing).await;
    assert_eq!(status, 200);
    let (status, _) = call(&h.mine, "DELETE", "/containers/aaaa?force=1", Nothing).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &h.mine,
        "POST",
        "/containers/mine/exec",
        Json(r#"{"Cmd":["sh"]}"#),
    )
    .await;
    assert_eq!(status, 200);
    let targets: Vec<String> = h
        .forwarded()
        .iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .collect();
    assert_eq!(
        targets,
        [
            "GET /v1.41/containers/aaaa1111/logs?stdout=1",
            "DELETE /v1.41/containers/aaaa1111?force=1",
            "POST /v1.41/containers/aaaa1111/exec",
        ]
    );
}

#[tokio::test]
async fn execs_are_owned_through_their_container() {
    let h = start().await;
    for target in ["/exec/e-theirs/json", "/exec/nope/json"] {
        let (status, body) = call(&h.mine, "GET", target, Nothing).await;
        assert_eq!(status, 404, "{target}: {body}");
        assert!(
            message(&body).starts_with("No such exec instance: "),
            "{body}"
        );
    }
    let (status, body) = call(&h.mine, "POST", "/exec/e-theirs/start", Json("{}")).await;
    assert_eq!(status, 404, "{body}");
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
    let (status, _) = call(&h.mine, "POST", "/exec/e-mine/resize?h=10&w=10", Nothing).await;
    assert_eq!(status, 200);
    assert_eq!(h.forwarded().len(), 1, "{:?}", h.forwarded());
}

#[tokio::test]
async fn networks_and_volumes_of_another_owner_look_absent() {
    let h = start().await;
    for (method, target, expected) in [
        ("GET", "/networks/theirnet", "network theirnet not found"),
        ("DELETE", "/networks/n2222", "network n2222 not found"),
        ("GET", "/volumes/theirvol", "get theirvol: no such volume"),
        (
            "DELETE",
            "/volumes/plainvol",
            "get plainvol: no such volume",
        ),
    ] {
        let (status, body) = call(&h.mine, method, target, Nothing).await;
        assert_eq!(status, 404, "{method} {target}: {body}");
        assert_eq!(message(&body), expected);
    }
    let (status, body) = call(
        &h.mine,
        "POST",
        "/networks/theirnet/connect",
        Json(r#"{"Container":"mine"}"#),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // One's own network, another owner's container (in the body, any case).
    let (status, body) = call(
        &h.mine,
        "POST",
        "/networks/mynet/disconnect",
        Json(r#"{"container":"theirs","Force":true}"#),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(message(&body), "No such container: theirs");
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());

    let (status, _) = call(
        &h.mine,
        "POST",
        "/networks/mynet/connect",
        Json(r#"{"Container":"mine"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&h.mine, "GET", "/volumes/myvol", Nothing).await;
    assert_eq!(status, 200);
    let forwarded = h.forwarded();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0].target, "/v1.41/networks/n1111/connect");
    assert_eq!(
        forwarded[0].body,
        r#"{"Container":"aaaa1111","EndpointConfig":{"NetworkID":"n1111"}}"#
    );
}

#[tokio::test]
async fn the_bridge_network_is_shared_without_its_endpoints() {
    let h = start().await;
    let (status, body) = call(&h.mine, "GET", "/networks/bridge", Nothing).await;
    assert_eq!(status, 200, "{body}");
    let network: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(network["Name"], "bridge");
    assert_eq!(network["Containers"], json!({}), "{body}");
}

#[tokio::test]
async fn lists_prunes_and_events_get_the_owner_filter() {
    let h = start().await;
    let status_filter = "%7B%22status%22%3A%5B%22running%22%5D%7D"; // {"status":["running"]}
    for (method, target) in [
        (
            "GET",
            format!("/containers/json?all=1&filters={status_filter}"),
        ),
        ("GET", "/networks".to_string()),
        (
            "GET",
            "/volumes?filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D".to_string(),
        ),
        ("GET", "/events?since=1".to_string()),
        ("POST", "/containers/prune".to_string()),
        ("POST", "/networks/prune".to_string()),
        ("POST", "/volumes/prune".to_string()),
    ] {
        h.forget();
        let (status, body) = call(&h.mine, method, &target, Nothing).await;
        assert_eq!(status, 200, "{target}: {body}");
        let seen = h.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let filters = filters(&seen[0].target);
        assert_eq!(
            filters["label"]["ci.owner=job-1"],
            json!(true),
            "{target}: {filters}"
        );
        if target.contains("status") {
            assert_eq!(filters["status"], json!({"running": true}));
        }
        if target.contains("a%3Db") {
            assert_eq!(filters["label"]["a=b"], json!(true));
        }
    }
    let (status, body) = call(&h.mine, "GET", "/containers/json?filters=%5B%5D", Nothing).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn images_and_disk_usage() {
    let h = start().await;
    let (status, _) = call(&h.mine, "GET", "/images/json", Nothing).await;
    assert_eq!(status, 200);
    assert_eq!(
        h.seen()[0].target,
        "/v1.41/images/json",
        "images are shared"
    );
    let (status, body) = call(&h.mine, "GET", "/system/df", Nothing).await;
    assert_eq!(status, 200);
    let usage: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(usage["Containers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(usage["Containers"][0]["Id"], "aaaa1111");
    assert_eq!(usage["Volumes"][0]["Name"], "myvol");
    assert_eq!(usage["Volumes"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(usage["Images"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn a_create_naming_another_owners_objects_is_refused_and_never_forwarded() {
    let h = start().await;
    for (body, status, expected) in [
        (
            r#"{"Image":"b","HostConfig":{"VolumesFrom":["theirs:ro"]}}"#,
            404,
            "No such container: theirs",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Links":["/theirs:db"]}}"#,
            404,
            "No such container: /theirs",
        ),
        (
            r#"{"Image":"b","HostConfig":{"NetworkMode":"theirnet"}}"#,
            404,
            "network theirnet not found",
        ),
        (
            r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"mynet":{},"n2222":{}}}}"#,
            404,
            "network n2222 not found",
        ),
        (
            r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"mynet":{"Links":["theirs"]}}}}"#,
            404,
            "No such container: theirs",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Binds":["fresh:/data"]},"NetworkingConfig":{"EndpointsConfig":{"theirnet":{}}}}"#,
            404,
            "network theirnet not found",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Binds":["theirvol:/data"]}}"#,
            409,
            "dindbox: the volume name \"theirvol\" is taken by another owner on this daemon; choose another name",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Mounts":[{"Type":"volume","Source":"plainvol","Target":"/d"}]}}"#,
            409,
            "dindbox: the volume name \"plainvol\" is taken by another owner on this daemon; choose another name",
        ),
    ] {
        let (got, answer) = call(&h.mine, "POST", "/containers/create", Json(body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(message(&answer), expected, "{body}");
    }
    let creates: Vec<Seen> = h
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert!(creates.is_empty(), "the daemon saw {creates:?}");
}

#[tokio::test]
async fn a_create_naming_ones_own_objects_is_forwarded_with_the_owner_label() {
    let h = start().await;
    let body = r#"{"Image":"b","Labels":{"ci.owner":"job-2"},"HostConfig":{"VolumesFrom":["mine"],"Links":["mine:m"],"NetworkMode":"mynet","Binds":["myvol:/data"],
        "Mounts":[{"Type":"volume","Target":"/anon"}]},
        "NetworkingConfig":{"EndpointsConfig":{"mynet":{},"bridge":{}}}}"#;
    let (status, answer) = call(&h.mine, "POST", "/containers/create?name=x", Json(body)).await;
    assert_eq!(status, 200, "{answer}");
    let forwarded = h.forwarded();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    let create: Value = serde_json::from_str(&forwarded[0].body).unwrap();
    assert_eq!(create["Labels"], json!({"ci.owner": "job-1", "team": "a"}));
    assert_eq!(
        create["HostConfig"]["Mounts"][0]["VolumeOptions"]["Labels"],
        json!({"ci.owner": "job-1", "team": "a"}),
        "an anonymous volume dockerd creates is owned"
    );
    // Every reference is forwarded as the object that was checked.
    assert_eq!(create["HostConfig"]["VolumesFrom"], json!(["aaaa1111"]));
    assert_eq!(create["HostConfig"]["Links"], json!(["aaaa1111:m"]));
    assert_eq!(create["HostConfig"]["NetworkMode"], "n1111");
    assert_eq!(
        create["NetworkingConfig"]["EndpointsConfig"],
        json!({"n1111": {"NetworkID": "n1111"}, "bridge": {}})
    );
}

#[tokio::test]
async fn a_rename_after_the_check_cannot_point_a_reference_at_another_owners_container() {
    let h = start().await;
    for (body, field, expected) in [
        (
            r#"{"Image":"b","HostConfig":{"VolumesFrom":["mine:ro"]}}"#,
            "/HostConfig/VolumesFrom/0",
            "aaaa1111:ro",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Links":["mine:db"]}}"#,
            "/HostConfig/Links/0",
            "aaaa1111:db",
        ),
    ] {
        {
            let mut daemon = h.daemon.lock().unwrap();
            *daemon = Daemon::new();
            daemon.rename_after_inspect = true;
        }
        h.forget();
        let (status, answer) = call(&h.mine, "POST", "/containers/create", Json(body)).await;
        assert_eq!(status, 200, "{body}: {answer}");
        let creates: Vec<Value> = h
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST")
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect();
        assert_eq!(creates.len(), 1, "{creates:?}");
        // `mine` now names job-2's container; the checked id still names job-1's.
        assert_eq!(
            h.daemon.lock().unwrap().containers[1],
            ("bbbb2222", "mine", Some(THEIRS))
        );
        assert_eq!(creates[0].pointer(field).unwrap(), expected, "{body}");
    }
}

#[tokio::test]
async fn connect_and_disconnect_are_forwarded_by_the_checked_ids() {
    let h = start().await;
    let (status, answer) = call(
        &h.mine,
        "POST",
        "/networks/mynet/connect",
        // A tenant's own NetworkID is refused by the policy (issue 11, class 2);
        // the proxy sets the one it checked.
        Json(r#"{"Container":"mine","EndpointConfig":{"Aliases":["a"]}}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let forwarded = h.forwarded();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0].target, "/v1.41/networks/n1111/connect");
    let body: Value = serde_json::from_str(&forwarded[0].body).unwrap();
    assert_eq!(
        body,
        json!({"Container": "aaaa1111", "EndpointConfig": {"NetworkID": "n1111", "Aliases": ["a"]}}),
        "the container and the endpoint's NetworkID are the checked ids"
    );
    h.forget();
    let (status, answer) = call(
        &h.mine,
        "POST",
        "/networks/mynet/disconnect",
        Json(r#"{"Container":"/mine"}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let forwarded = h.forwarded();
    assert_eq!(forwarded[0].target, "/v1.41/networks/n1111/disconnect");
    assert_eq!(
        serde_json::from_str::<Value>(&forwarded[0].body).unwrap(),
        json!({"Container": "aaaa1111"})
    );
}

#[tokio::test]
async fn volumes_from_a_container_with_a_bind_mount_is_refused_in_every_mode() {
    let h = start().await;
    for (socket, source) in [
        (&h.mine, "my-binder"),
        (&h.plain, "host-sidecar"),
        (&h.plain, "eeee"),
        (&h.plain, "my-binder"),
    ] {
        h.forget();
        let body = format!(r#"{{"Image":"b","HostConfig":{{"VolumesFrom":["{source}:ro"]}}}}"#);
        let (status, answer) = call(socket, "POST", "/containers/create", Json(&body)).await;
        assert_eq!(status, 403, "{source}: {answer}");
        let message = message(&answer);
        assert!(
            message.starts_with(&format!(
                "dindbox: --volumes-from {source} is not allowed: "
            )),
            "{message}"
        );
        assert!(message.contains("\"bind\""), "{message}");
        let posts: Vec<Seen> = h
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect();
        assert!(posts.is_empty(), "the daemon saw {posts:?}");
    }
}

#[tokio::test]
async fn without_an_owner_label_volumes_from_costs_one_lookup_and_is_pinned() {
    let h = start().await;
    // A WorkingDir of its own: no image lookup (see the image test below).
    let body = r#"{"Image":"b","WorkingDir":"/w","HostConfig":{"VolumesFrom":["theirs:ro"],"Links":["theirs:t"],"NetworkMode":"theirnet"}}"#;
    let (status, answer) = call(&h.plain, "POST", "/containers/create", Json(body)).await;
    assert_eq!(status, 200, "{answer}");
    let seen = h.seen();
    assert_eq!(
        seen.len(),
        2,
        "one inspect of the source, then the create: {seen:?}"
    );
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/v1.41/containers/theirs/json");
    let create: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(create["HostConfig"]["VolumesFrom"], json!(["bbbb2222:ro"]));
    // Without owners nothing else is looked up or rewritten.
    assert_eq!(create["HostConfig"]["Links"], json!(["theirs:t"]));
    assert_eq!(create["HostConfig"]["NetworkMode"], "theirnet");
    assert!(create.get("NetworkingConfig").is_none(), "{create}");
    h.forget();
    let (status, answer) = call(
        &h.plain,
        "POST",
        "/containers/create",
        Json(r#"{"Image":"b","HostConfig":{"VolumesFrom":["gone"]}}"#),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(message(&answer), "No such container: gone");
    assert!(h.seen().iter().all(|s| s.method == "GET"), "{:?}", h.seen());
}

#[tokio::test]
async fn a_new_named_volume_is_created_owned_before_the_container() {
    let h = start().await;
    let body = r#"{"Image":"b","HostConfig":{"Binds":["fresh:/data"],"Mounts":[{"Type":"volume","Source":"cache","Target":"/c","VolumeOptions":{"Labels":{"kind":"cache"}}}]}}"#;
    let (status, answer) = call(&h.mine, "POST", "/containers/create", Json(body)).await;
    assert_eq!(status, 200, "{answer}");
    let posts: Vec<(String, Value)> = h
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .map(|s| (s.target, serde_json::from_str(&s.body).unwrap()))
        .collect();
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert_eq!(posts[0].0, "/v1.41/volumes/create");
    assert_eq!(
        posts[0].1,
        json!({"Name": "fresh", "Labels": {"team": "a", "ci.owner": "job-1"}})
    );
    assert_eq!(
        posts[1].1,
        json!({"Name": "cache", "Labels": {"kind": "cache", "team": "a", "ci.owner": "job-1"}})
    );
    assert_eq!(posts[2].0, "/v1.41/containers/create");
    // The job owns them now.
    let (status, _) = call(&h.mine, "GET", "/volumes/fresh", Nothing).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn creating_a_volume_whose_name_another_owner_holds_is_a_conflict() {
    let h = start().await;
    let (status, body) = call(
        &h.mine,
        "POST",
        "/volumes/create",
        Json(r#"{"Name":"theirvol"}"#),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        !body.contains("job-2"),
        "their labels are not shown: {body}"
    );
    let (status, body) = call(
        &h.mine,
        "POST",
        "/volumes/create",
        Json(r#"{"Name":"newvol","Labels":{"ci.owner":"job-2"}}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        created["Labels"]["ci.owner"], "job-1",
        "the owner label cannot be overridden"
    );
}

#[tokio::test]
async fn anonymous_volumes_belong_to_the_owner_of_the_containers_mounting_them() {
    let h = start().await;
    let (status, body) = call(&h.mine, "GET", "/volumes/anon-mine", Nothing).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&h.mine, "GET", "/volumes/anon-theirs", Nothing).await;
    assert_eq!(status, 404, "{body}");
    // What compose sends when it recreates a service: the old container's
    // anonymous volume, by name.
    let recreate = |volume: &str| {
        format!(
            r#"{{"Image":"postgres","HostConfig":{{"Mounts":[{{"Type":"volume","Source":"{volume}","Target":"/var/lib/postgresql/data"}}]}}}}"#
        )
    };
    let (status, body) = call(
        &h.mine,
        "POST",
        "/containers/create",
        Json(&recreate("anon-mine")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &h.mine,
        "POST",
        "/containers/create",
        Json(&recreate("anon-theirs")),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let creates: Vec<Seen> = h
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert!(creates[0].body.contains("anon-mine"), "{creates:?}");
}

#[tokio::test]
async fn commit_needs_an_owned_container() {
    let h = start().await;
    let (status, body) = call(&h.mine, "POST", "/commit?container=theirs&repo=x", Nothing).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(&h.mine, "POST", "/commit?container=mine&repo=x", Nothing).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        h.forwarded()[0].target,
        "/v1.41/commit?container=aaaa1111&changes=LABEL+%22ci.owner%22%3D%22job-1%22",
        "the committed image gets the owner label (and its tag afterwards)"
    );
    // The tag is set under its cross-proxy lock: a lock container created
    // before, removed by its id after.
    let forwarded = h.forwarded();
    assert!(
        forwarded[1]
            .target
            .starts_with("/v1.41/containers/create?name=dindbox-taglock-"),
        "{forwarded:?}"
    );
    assert_eq!(
        forwarded[2].target,
        format!(
            "/v1.41/images/sha256:{}/tag?repo=docker.io%2Flibrary%2Fx&tag=latest",
            "c".repeat(64)
        )
    );
    assert_eq!(forwarded[3].method, "DELETE");
    assert_eq!(forwarded[3].target, "/v1.41/containers/c0ffee?force=1");
}

#[tokio::test]
async fn without_an_owner_label_no_request_costs_an_extra_round_trip() {
    let h = start().await;
    for (method, target, body) in [
        ("GET", "/containers/theirs/json", Nothing),
        ("GET", "/containers/json", Nothing),
        ("POST", "/exec/e-theirs/resize", Nothing),
        (
            "POST",
            "/containers/create",
            Json(
                // With a WorkingDir of its own, so its image is not looked up,
                // and no named volume (each is looked up: see below).
                r#"{"Image":"b","WorkingDir":"/w","HostConfig":{"Links":["theirs"],"NetworkMode":"theirnet","Binds":["/anonymous"]}}"#,
            ),
        ),
    ] {
        h.forget();
        let (status, answer) = call(&h.plain, method, target, body).await;
        assert_eq!(status, 200, "{target}: {answer}");
        let seen = h.seen();
        assert_eq!(seen.len(), 1, "{target}: {seen:?}");
        assert!(!seen[0].target.contains("filters"), "{seen:?}");
        assert!(!seen[0].body.contains("ci.owner"), "{seen:?}");
    }
}

#[tokio::test]
async fn an_image_s_working_directory_is_checked_and_pinned_in_every_mode() {
    let h = start().await;
    for socket in [&h.mine, &h.plain] {
        h.forget();
        let (status, answer) = call(
            socket,
            "POST",
            "/containers/create",
            Json(r#"{"Image":"wd-proc"}"#),
        )
        .await;
        assert_eq!(status, 403, "{answer}");
        assert!(
            message(&answer).contains("the image's WorkingDir"),
            "{answer}"
        );
        let posts: Vec<Seen> = h
            .seen()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect();
        assert!(posts.is_empty(), "the daemon saw {posts:?}");

        h.forget();
        let (status, answer) = call(
            socket,
            "POST",
            "/containers/create",
            Json(r#"{"Image":"wd-app"}"#),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let create = h
            .seen()
            .into_iter()
            .find(|s| s.method == "POST")
            .expect("the create");
        let create: Value = serde_json::from_str(&create.body).unwrap();
        assert_eq!(
            create["WorkingDir"], "/app",
            "pinned to the image's checked directory"
        );

        // A request's own directory is checked as it is; the image is not asked.
        h.forget();
        let (status, answer) = call(
            socket,
            "POST",
            "/containers/create",
            Json(r#"{"Image":"wd-proc","WorkingDir":"/srv"}"#),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            h.seen().iter().all(|s| !s.target.contains("/images/")),
            "{:?}",
            h.seen()
        );
    }
}

#[tokio::test]
async fn without_an_owner_label_a_volume_made_with_driver_options_is_not_mounted() {
    let h = start().await;
    for bind in ["hostvol:/x", "hostvol:/x:ro"] {
        h.forget();
        let body =
            format!(r#"{{"Image":"b","WorkingDir":"/w","HostConfig":{{"Binds":["{bind}"]}}}}"#);
        let (status, answer) = call(&h.plain, "POST", "/containers/create", Json(&body)).await;
        assert_eq!(status, 403, "{answer}");
        assert!(message(&answer).contains("\"o\":\"bind\""), "{answer}");
        assert!(
            h.seen().iter().all(|s| s.method != "POST"),
            "{:?}",
            h.seen()
        );
    }
    let body = r#"{"Image":"b","WorkingDir":"/w","HostConfig":{"Mounts":[{"Type":"volume","Source":"hostvol","Target":"/x"}]}}"#;
    let (status, answer) = call(&h.plain, "POST", "/containers/create", Json(body)).await;
    assert_eq!(status, 403, "{answer}");
    // A plain volume, and one that does not exist yet, are mounted: one lookup each.
    h.forget();
    let body =
        r#"{"Image":"b","WorkingDir":"/w","HostConfig":{"Binds":["plainvol:/p","fresh:/f"]}}"#;
    let (status, answer) = call(&h.plain, "POST", "/containers/create", Json(body)).await;
    assert_eq!(status, 200, "{answer}");
    let targets: Vec<String> = h.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [
            "/v1.41/volumes/plainvol",
            "/v1.41/volumes/fresh",
            "/v1.41/containers/create"
        ],
    );
}
