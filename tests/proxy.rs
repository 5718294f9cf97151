//! The proxy through real sockets: the fake dockerd of
//! `tests/support/dockerd.rs` (hyper on a unix socket) that records what
//! reaches it, and clients that write raw HTTP bytes, so framing
//! tricks and hijacks are tested as they travel.
//!
//! The fake states its newest API version as dockerd does (`Api-Version` on
//! every answer, `/version`) and refuses versions outside its own range in
//! dockerd's words; most tests run it at 1.41 (dockerd 20.10), the API
//! version window's tests (issue 12) at 1.51 (28.5) and 1.56 (newer than the
//! policy knows).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dindbox::proxy::{ListenAddr, Listener};
use support::dockerd::{Fake, Seen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

struct Harness {
    _dir: tempfile::TempDir,
    proxy_socket: PathBuf,
    fake: Arc<Fake>,
    shutdown: CancellationToken,
}

impl Harness {
    /// What reached the daemon from clients: all but the proxy's own `GET
    /// /version` that learns the daemon's newest version (the one request
    /// the proxy sends without a version).
    fn forwarded(&self) -> Vec<Seen> {
        self.fake.forwarded()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A proxy in front of a fake dockerd 20.10 (API 1.41).
async fn start() -> Harness {
    start_with(Fake::dockerd_20()).await
}

/// A proxy in front of `fake`, which answers `/_ping`, `/version` and
/// creates, records every request, states its newest API version on every
/// answer, and on attach answers `101` and then echoes in upper case until
/// EOF, then writes "bye" (`support::dockerd::basic`).
async fn start_with(fake: Fake) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake.spawn(&dir.path().join("dockerd.sock"));
    let shutdown = CancellationToken::new();
    let proxy_socket = dir.path().join("proxy.sock");
    support::proxy::serve(
        &dir.path().join("dockerd.sock"),
        &proxy_socket,
        Default::default(),
        &shutdown,
    )
    .await;
    Harness {
        _dir: dir,
        proxy_socket,
        fake,
        shutdown,
    }
}

/// Writes raw bytes, half-closes, and returns everything the proxy answered.
async fn exchange(socket: &Path, raw: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(raw).await.unwrap();
    stream.shutdown().await.unwrap();
    read_answer(&mut stream).await
}

/// Everything the proxy answers on `stream` until it closes (within 5 s).
async fn read_answer(stream: &mut UnixStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("proxy answered in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn post(target: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn creates(fake: &Fake) -> Vec<Seen> {
    fake.seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.target.contains("/create"))
        .collect()
}

#[tokio::test]
async fn ping_passes_through() {
    let h = start().await;
    let answer = exchange(
        &h.proxy_socket,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");
}

#[tokio::test]
async fn privileged_create_is_refused_with_a_docker_style_message_and_never_forwarded() {
    let h = start().await;
    let answer = exchange(
        &h.proxy_socket,
        &post(
            "/v1.41/containers/create",
            r#"{"Image":"busybox","HostConfig":{"privileged":true}}"#,
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    assert!(
        answer.contains(
            r#"{"message":"dindbox: privileged mode is not allowed: HostConfig.Privileged=true"#
        ),
        "{answer}"
    );
    assert!(
        creates(&h.fake).is_empty(),
        "the daemon saw {:?}",
        creates(&h.fake)
    );
}

#[tokio::test]
async fn allowed_create_forwards_the_canonical_body_it_checked() {
    let h = start().await;
    let body = r#"{"Image":"busybox","hostconfig":{"Privileged":true,"privileged":false}}"#;
    let answer = exchange(
        &h.proxy_socket,
        &post("/v1.41/containers/%63reate?name=x", body),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = creates(&h.fake);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1.41/containers/create?name=x");
    let forwarded = r#"{"Image":"busybox","HostConfig":{"Privileged":false,"CgroupnsMode":"private","IpcMode":"private"}}"#;
    assert_eq!(seen[0].body, forwarded);
    assert_eq!(
        seen[0].content_length().as_deref(),
        Some(forwarded.len().to_string().as_str())
    );
}

#[tokio::test]
async fn chunked_bodies_are_read_whole_and_checked() {
    let h = start().await;
    let body = r#"{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#;
    let (a, b) = body.split_at(10);
    let raw = format!(
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let answer = exchange(&h.proxy_socket, raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("adding capabilities is not allowed"),
        "{answer}"
    );
    assert!(creates(&h.fake).is_empty());
}

#[tokio::test]
async fn content_length_and_chunked_together_cannot_smuggle_a_second_request() {
    let h = start().await;
    // A front end that trusted Content-Length would see one harmless body;
    // the hidden request must never reach the daemon unchecked.
    let hidden = String::from_utf8(post(
        "/containers/create",
        r#"{"HostConfig":{"Privileged":true}}"#,
    ))
    .unwrap();
    let raw = format!(
        "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{hidden}"
    );
    let _ = exchange(&h.proxy_socket, raw.as_bytes()).await;
    for seen in creates(&h.fake) {
        assert!(
            !seen.body.to_ascii_lowercase().contains("privileged"),
            "smuggled: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_fake_upgrade_on_a_plain_endpoint_does_not_tunnel_the_next_request() {
    let h = start().await;
    let mut raw =
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
            .to_vec();
    raw.extend(post(
        "/containers/create",
        r#"{"HostConfig":{"Binds":["/:/host"]}}"#,
    ));
    let answer = exchange(&h.proxy_socket, &raw).await;
    assert!(
        answer.contains("a host bind mount is not allowed"),
        "{answer}"
    );
    assert!(
        creates(&h.fake).is_empty(),
        "the daemon saw {:?}",
        creates(&h.fake)
    );
    let pings = h.forwarded();
    assert_eq!(
        pings.len(),
        1,
        "only the ping reached the daemon: {pings:?}"
    );
}

#[tokio::test]
async fn attach_is_spliced_both_ways_after_101_with_half_close() {
    let h = start().await;
    let mut stream = UnixStream::connect(&h.proxy_socket).await.unwrap();
    stream
        .write_all(b"POST /v1.41/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: tcp"), "{head}");
    stream.write_all(b"hello from stdin").await.unwrap();
    stream.shutdown().await.unwrap(); // stdin EOF: output must still arrive
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("stream closed in time")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rest), "HELLO FROM STDINbye");
}

#[tokio::test]
async fn a_dead_daemon_gets_a_clear_503() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let listen = dir.path().join("proxy.sock");
    support::proxy::serve(
        &dir.path().join("nobody.sock"),
        &listen,
        Default::default(),
        &shutdown,
    )
    .await;
    let answer = exchange(
        &listen,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("the inner dockerd is not answering"),
        "{answer}"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_and_a_live_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves the file behind
    let listener = Listener::bind(&ListenAddr::Unix(path.clone()))
        .await
        .expect("stale socket replaced");
    let err = Listener::bind(&ListenAddr::Unix(path.clone()))
        .await
        .err()
        .expect("live socket refused");
    assert!(err.to_string().contains("already served"), "{err}");
    drop(listener);
}

/// `GET target` on a connection of its own; the whole answer.
async fn get(socket: &Path, target: &str) -> String {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    exchange(socket, raw.as_bytes()).await
}

/// The `Api-Version` an answer states.
fn stated_api(answer: &str) -> Option<String> {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("api-version: ")
            .map(str::to_owned)
    })
}

fn targets(h: &Harness) -> Vec<String> {
    h.forwarded().into_iter().map(|s| s.target).collect()
}

#[tokio::test]
async fn a_request_is_forwarded_at_the_version_it_names() {
    let h = start_with(Fake::new("1.51", "1.24")).await;
    let answer = exchange(
        &h.proxy_socket,
        &post("/v1.51/containers/create", r#"{"Image":"busybox"}"#),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(get(&h.proxy_socket, "/v1.44/_ping").await.ends_with("OK"));
    assert_eq!(
        targets(&h),
        [
            "/v1.51/images/busybox/json",
            "/v1.51/containers/create",
            "/v1.44/_ping"
        ],
        "each at its own version, the proxy's own lookup (the image's WorkingDir) too"
    );
}

#[tokio::test]
async fn an_unversioned_request_is_forwarded_at_the_newest_version_both_sides_know() {
    for (daemon, served) in [("1.41", "1.41"), ("1.51", "1.51"), ("1.56", "1.55")] {
        let h = start_with(Fake::new(daemon, "1.24")).await;
        let answer = get(&h.proxy_socket, "/_ping").await;
        assert!(answer.ends_with("OK"), "{daemon}: {answer}");
        assert_eq!(
            stated_api(&answer).as_deref(),
            Some(served),
            "{daemon}: {answer}"
        );
        let answer = exchange(
            &h.proxy_socket,
            &post("/containers/create", r#"{"Image":"busybox"}"#),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{daemon}: {answer}");
        assert_eq!(
            targets(&h),
            [
                format!("/v{served}/_ping"),
                format!("/v{served}/images/busybox/json"),
                format!("/v{served}/containers/create")
            ],
            "daemon {daemon}"
        );
        // The proxy asked the daemon once, before the first request.
        let all = h.fake.seen().len();
        let learned = all - h.forwarded().len();
        assert_eq!(learned, 1, "daemon {daemon}");
    }
}

#[tokio::test]
async fn a_version_newer_than_the_daemons_is_refused_in_dockerds_words() {
    let h = start_with(Fake::new("1.51", "1.24")).await;
    for target in ["/v1.52/version", "/v1.55/_ping"] {
        let answer = get(&h.proxy_socket, target).await;
        let version = &target[2..6];
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(
            answer.ends_with(&format!(
                r#"{{"message":"client version {version} is too new. Maximum supported API version is 1.51"}}"#
            )),
            "{target}: {answer}"
        );
        assert_eq!(stated_api(&answer).as_deref(), Some("1.51"), "{answer}");
    }
    let answer = get(&h.proxy_socket, "/v1.23/_ping").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"),
        "{answer}"
    );
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}

#[tokio::test]
async fn a_daemon_newer_than_the_policy_is_advertised_at_the_policys_newest() {
    let h = start_with(Fake::new("1.56", "1.40")).await;
    let answer = get(&h.proxy_socket, "/version").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(stated_api(&answer).as_deref(), Some("1.55"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["ApiVersion"], "1.55", "{body}");
    assert_eq!(
        body["Components"][0]["Details"]["ApiVersion"], "1.55",
        "the Engine component's too (`docker version` prints it): {body}"
    );
    assert_eq!(body["MinAPIVersion"], "1.40", "the daemon's minimum stays");
    assert_eq!(body["Components"][0]["Details"]["MinAPIVersion"], "1.40");
    assert_eq!(body["Version"], "99.0.0");

    let answer = get(&h.proxy_socket, "/v1.56/_ping").await;
    assert!(
        answer.ends_with(
            r#"{"message":"client version 1.56 is too new. Maximum supported API version is 1.55"}"#
        ),
        "{answer}"
    );
    assert_eq!(targets(&h), ["/v1.55/version"]);
}

#[tokio::test]
async fn a_version_below_the_daemons_own_minimum_is_answered_by_the_daemon() {
    // dockerd 29.0 to 29.2 serve 1.44 and up; the proxy serves from 1.24.
    let h = start_with(Fake::new("1.52", "1.44")).await;
    let answer = get(&h.proxy_socket, "/v1.41/version").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.ends_with(r#"{"message":"client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"}"#),
        "{answer}"
    );
    assert_eq!(targets(&h), ["/v1.41/version"]);
}

#[tokio::test]
async fn a_daemon_upgraded_underneath_is_followed() {
    let h = start().await;
    assert_eq!(
        stated_api(&get(&h.proxy_socket, "/_ping").await).as_deref(),
        Some("1.41")
    );
    assert!(get(&h.proxy_socket, "/v1.51/_ping")
        .await
        .starts_with("HTTP/1.1 400"));
    h.fake.set_max("1.51");
    // The next answer states the new version; the proxy serves it from then on.
    let answer = get(&h.proxy_socket, "/v1.41/_ping").await;
    assert_eq!(stated_api(&answer).as_deref(), Some("1.51"), "{answer}");
    assert!(get(&h.proxy_socket, "/v1.51/_ping").await.ends_with("OK"));
    assert!(get(&h.proxy_socket, "/_ping").await.ends_with("OK"));
    assert_eq!(
        targets(&h),
        [
            "/v1.41/_ping",
            "/v1.41/_ping",
            "/v1.51/_ping",
            "/v1.51/_ping"
        ]
    );
}

#[tokio::test]
async fn a_proxy_started_before_its_daemon_learns_the_version_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (upstream, listen) = (
        dir.path().join("dockerd.sock"),
        dir.path().join("proxy.sock"),
    );
    support::proxy::serve(&upstream, &listen, Default::default(), &shutdown).await;
    let answer = get(&listen, "/_ping").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(stated_api(&answer), None, "no version to state yet");

    let fake = Fake::new("1.51", "1.24").spawn(&upstream);
    let answer = get(&listen, "/_ping").await;
    assert!(answer.ends_with("OK"), "{answer}");
    assert_eq!(stated_api(&answer).as_deref(), Some("1.51"), "{answer}");
    let targets: Vec<String> = fake.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/version", "/v1.51/_ping"]);
    shutdown.cancel();
}

#[tokio::test]
async fn endpoints_off_the_allow_list_never_reach_the_daemon() {
    let h = start().await;
    for (raw, why) in [
        (
            &post("/v1.41/plugins/pull?remote=evil", "[]")[..],
            "plugins are off",
        ),
        (
            &post("/v1.41/swarm/join", r#"{"RemoteAddrs":["10.0.0.1"]}"#)[..],
            "swarm mode is off",
        ),
        (
            b"GET /debug/pprof/ HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
            "the daemon's internals",
        ),
        (
            b"GET /v1.41/debug/vars HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
            "the daemon's internals",
        ),
    ] {
        let answer = exchange(&h.proxy_socket, raw).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains(why), "{answer}");
    }
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}

fn get_request(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Splits a raw answer into its head (lower-cased) and its body.
fn head_and_body(answer: &str) -> (String, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    (head.to_ascii_lowercase(), body)
}

/// Issue 12: docker-py cleans up as against a plain daemon (`leave_swarm`
/// takes 503 for "not in a swarm", `plugins.list()` wants a list): a family
/// that is off answers as dockerd 28.5 with that feature off, with dockerd's
/// own headers, and nothing reaches the daemon; the way in stays refused.
#[tokio::test]
async fn families_that_are_off_answer_as_docker_with_the_feature_off_without_the_daemon() {
    let h = start().await;
    // dockerd's headers are learnt from its answers (every client pings first).
    let ping = exchange(&h.proxy_socket, &get_request("/_ping")).await;
    assert!(ping.starts_with("HTTP/1.1 200"), "{ping}");
    let not_manager = r#"{"message":"This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."}"#;
    let privileged_service = r#"{"TaskTemplate":{"ContainerSpec":{"Image":"busybox","Mounts":[{"Type":"bind","Source":"/","Target":"/host"}]}}}"#;
    for (raw, status, body) in [
        (get_request("/v1.41/swarm"), "503", not_manager),
        (
            get_request("/v1.41/services?filters=%7B%7D"),
            "503",
            not_manager,
        ),
        (
            post("/v1.41/services/create", privileged_service),
            "503",
            not_manager,
        ),
        (
            post("/v1.41/swarm/leave?force=1", ""),
            "503",
            r#"{"message":"This node is not part of a swarm"}"#,
        ),
        (get_request("/v1.41/plugins"), "200", "[]"),
        (
            get_request("/v1.41/plugins/vieux/sshfs:latest/json"),
            "404",
            r#"{"message":"plugin \"vieux/sshfs:latest\" not found"}"#,
        ),
        (
            get_request("/v1.41/containers/c/checkpoints"),
            "501",
            r#"{"message":"This experimental feature is disabled by default. Start the Docker daemon in experimental mode in order to enable it."}"#,
        ),
    ] {
        let answer = exchange(&h.proxy_socket, &raw).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        let (head, answered) = head_and_body(&answer);
        assert_eq!(answered, body, "{answer}");
        for header in [
            "content-type: application/json",
            "server: docker/27.0.0 (linux)",
            "api-version: 1.41",
            "ostype: linux",
            "docker-experimental: false",
        ] {
            assert!(head.contains(header), "no {header:?} in:\n{answer}");
        }
    }
    let init = exchange(&h.proxy_socket, &post("/v1.41/swarm/init", "{}")).await;
    assert!(init.starts_with("HTTP/1.1 403"), "{init}");
    assert!(
        init.contains("dindbox: POST /swarm/init is not allowed: swarm mode is off"),
        "{init}"
    );
    let seen: Vec<String> = h.forwarded().into_iter().map(|s| s.target).collect();
    assert_eq!(seen, ["/v1.41/_ping"], "only the ping reached the daemon");
}

/// The Docker CLI may still be writing a body when the proxy has refused its
/// request on the headers alone (`docker swarm init` with swarm off): the
/// proxy reads the body before it answers and closes, so the client's write
/// does not hit a closed socket (the CLI's "write: broken pipe") and the
/// client reads the refusal.
#[tokio::test]
async fn a_refusal_on_the_headers_waits_for_the_body_still_being_sent() {
    let h = start().await;
    let body = r#"{"ListenAddr":"0.0.0.0:2377","ForceNewCluster":false}"#;
    let head = format!(
        "POST /v1.41/swarm/init HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = UnixStream::connect(&h.proxy_socket).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(body.as_bytes())
        .await
        .expect("the proxy still reads the body of a request it refused");
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("dindbox: POST /swarm/init is not allowed: swarm mode is off"),
        "{answer}"
    );
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}

/// A client that waits for `100 Continue` before sending the body gets the
/// refusal at once instead (the proxy does not read a body it refused).
#[tokio::test]
async fn a_refusal_on_the_headers_answers_a_client_waiting_for_100_continue() {
    let h = start().await;
    let head = "POST /v1.41/swarm/init HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    let mut stream = UnixStream::connect(&h.proxy_socket).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // Within read_answer's 5 s: the refusal, without waiting for the body.
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}

#[tokio::test]
async fn form_encoded_bodies_cannot_override_checked_query_parameters() {
    let h = start().await;
    let body = "networkmode=host";
    let raw = format!(
        "POST /v1.41/build?networkmode=default HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&h.proxy_socket, raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(h.forwarded().is_empty(), "{:?}", h.forwarded());
}

#[tokio::test]
async fn two_different_content_lengths_are_refused_before_the_daemon() {
    let h = start().await;
    let raw = b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}{\"HostConfig\":{\"Privileged\":true}}    ";
    let answer = exchange(&h.proxy_socket, raw).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        creates(&h.fake).is_empty(),
        "the daemon saw {:?}",
        creates(&h.fake)
    );
}

#[tokio::test]
async fn http_1_0_with_transfer_encoding_is_refused() {
    let h = start().await;
    let raw = b"POST /containers/create HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let answer = exchange(&h.proxy_socket, raw).await;
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.0 400"),
        "{answer}"
    );
    assert!(
        creates(&h.fake).is_empty(),
        "the daemon saw {:?}",
        creates(&h.fake)
    );
}

#[tokio::test]
async fn every_pipelined_request_is_checked_not_just_the_first() {
    let h = start().await;
    let mut raw = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n".to_vec();
    raw.extend(b"POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"Image\":\"busy\"}\n".iter());
    raw.extend(post(
        "/containers/create",
        r#"{"HostConfig":{"CapAdd":["ALL"]}}"#,
    ));
    let answer = exchange(&h.proxy_socket, &raw).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(
        answer.contains("adding capabilities is not allowed"),
        "{answer}"
    );
    let seen = creates(&h.fake);
    assert_eq!(
        seen.len(),
        1,
        "only the benign create reached the daemon: {seen:?}"
    );
    assert!(!seen[0].body.contains("CapAdd"), "{seen:?}");
}

#[tokio::test]
async fn oversized_json_bodies_get_a_clear_413() {
    let h = start().await;
    let body = format!(r#"{{"Image":"b","Env":["{}"]}}"#, "x".repeat(9 << 20));
    let stream = UnixStream::connect(&h.proxy_socket).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // The proxy answers and closes once the limit is passed; the rest of the
    // write may fail, the answer must still be readable.
    tokio::spawn(async move {
        let _ = write.write_all(&post("/containers/create", &body)).await;
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..200.min(answer.len())]
    );
    assert!(
        answer.contains("larger than the 8 MiB limit"),
        "{}",
        &answer[..300.min(answer.len())]
    );
    assert!(creates(&h.fake).is_empty());
}

/// A proxy in front of a dockerd 20.10 whose records number each request's
/// connection (in the order connections carried their first one). With
/// `close_after_each`, it closes each connection after one answer without
/// saying so, as a daemon does with a connection it let idle out.
async fn start_counting(close_after_each: bool) -> Harness {
    let fake = Fake::dockerd_20();
    start_with(if close_after_each {
        fake.closing_after_each_answer()
    } else {
        fake
    })
    .await
}

/// The connection of every request that reached the daemon from clients.
fn connections(h: &Harness) -> Vec<usize> {
    h.forwarded().iter().map(|s| s.connection).collect()
}

/// Sends one `GET /_ping` on an open connection and reads its whole answer.
async fn ping_on(stream: &mut UnixStream) -> String {
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nOK") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("proxy answered in time")
            .unwrap();
        assert!(n > 0, "proxy closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_client_connection_keeps_one_connection_to_dockerd() {
    let h = start_counting(false).await;
    let mut first = UnixStream::connect(&h.proxy_socket).await.unwrap();
    let mut second = UnixStream::connect(&h.proxy_socket).await.unwrap();
    for _ in 0..3 {
        assert!(ping_on(&mut first).await.starts_with("HTTP/1.1 200"));
        assert!(ping_on(&mut second).await.starts_with("HTTP/1.1 200"));
    }
    let mut connections = connections(&h);
    assert_eq!(connections.len(), 6);
    connections.dedup();
    assert_eq!(
        connections,
        [0, 1, 0, 1, 0, 1],
        "one upstream connection per client connection"
    );
}

#[tokio::test]
async fn a_request_after_dockerd_closed_the_idle_connection_goes_on_a_new_one() {
    let h = start_counting(true).await;
    let mut client = UnixStream::connect(&h.proxy_socket).await.unwrap();
    for round in 0..3 {
        let answer = ping_on(&mut client).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
        // Sometimes the proxy has seen the close before the next request, sometimes not.
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(connections(&h), [0, 1, 2]);
}

#[tokio::test]
async fn a_request_without_host_reaches_dockerd_with_one() {
    let h = start_counting(false).await;
    let answer = exchange(&h.proxy_socket, b"GET /_ping HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let seen = h.forwarded();
    assert!(seen[0].headers.contains_key("host"), "{seen:?}");
}

/// `{"Image":"busybox","Labels":{"0":"","1":"",...}}`: many distinct map keys,
/// the body that took the quadratic decoder 29 s at 160k keys (issue 11).
fn many_labels(keys: usize) -> String {
    let keys: Vec<String> = (0..keys).map(|i| format!(r#""{i}":"""#)).collect();
    format!(r#"{{"Image":"busybox","Labels":{{{}}}}}"#, keys.join(","))
}

/// Like [`exchange`], with a hang guard generous enough for a debug build.
async fn exchange_slow(socket: &Path, raw: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(raw).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut out))
        .await
        .expect("proxy answered (hang guard)")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The test runtime has one thread, which also serves the proxy: had the
/// four heavy checks run on it, no ping could be answered while one ran.
#[tokio::test]
async fn heavy_body_checks_leave_the_io_workers_to_other_clients() {
    let h = start().await;
    let raw = post("/v1.41/containers/create", &many_labels(100_000));
    assert!(raw.len() > 1 << 20);
    let heavy: Vec<_> = (0..4)
        .map(|_| {
            let (socket, raw) = (h.proxy_socket.clone(), raw.clone());
            tokio::spawn(async move { exchange_slow(&socket, &raw).await })
        })
        .collect();
    let mut bystander = UnixStream::connect(&h.proxy_socket).await.unwrap();
    // Pings while any heavy request is unanswered.
    let mut answered_meanwhile = 0;
    while !heavy.iter().all(|task| task.is_finished()) {
        let answer = ping_on(&mut bystander).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answered_meanwhile += 1;
    }
    for task in heavy {
        let answer = task.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{}",
            &answer[..200.min(answer.len())]
        );
    }
    assert_eq!(creates(&h.fake).len(), 4);
    // Checked on the runtime's thread, 6 were (between the checks); off it,
    // thousands.
    assert!(
        answered_meanwhile >= 50,
        "only {answered_meanwhile} pings answered while the heavy checks ran"
    );
}

#[tokio::test]
async fn bodies_beyond_the_value_limit_are_refused_before_the_daemon() {
    let h = start().await;
    let zeros = vec!["0"; 300_000].join(",");
    let body = format!(r#"{{"Image":"busybox","Cmd":[{zeros}]}}"#);
    let answer = exchange_slow(&h.proxy_socket, &post("/v1.41/containers/create", &body)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(
            r#"{"message":"dindbox: the request body has more than 262144 JSON values"}"#
        ),
        "{answer}"
    );
    assert!(creates(&h.fake).is_empty());
}

/// Eight chunked creates that never finish their bodies hold the whole
/// budget of bodies in flight (8 x the 8 MiB limit): the next create waits,
/// then gets a 503; once they are gone, creates go through again.
#[tokio::test]
async fn bodies_in_flight_are_bounded_and_the_rest_get_a_503() {
    let h = start().await;
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = UnixStream::connect(&h.proxy_socket).await.unwrap();
        stream
            .write_all(
                b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n\
                  Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\n{\"Ima\r\n",
            )
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Let the proxy read those heads and reserve their share.
    for stream in &mut stalled {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        assert!(read.is_err(), "a stalled request got an answer");
    }
    let body = r#"{"Image":"busybox"}"#;
    let answer = exchange_slow(&h.proxy_socket, &post("/v1.41/containers/create", body)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(r#"{"message":"dindbox: the proxy is busy checking other requests' bodies (64 MiB in flight)"#),
        "{answer}"
    );
    // Bodies the proxy does not inspect are streamed, not held: not refused.
    let ping = exchange(
        &h.proxy_socket,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ping.starts_with("HTTP/1.1 200"), "{ping}");
    drop(stalled);
    let answer = exchange_slow(&h.proxy_socket, &post("/v1.41/containers/create", body)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(creates(&h.fake).len(), 1);
}
