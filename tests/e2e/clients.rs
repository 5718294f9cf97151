//! End to end with the clients users have (issue 12, "Clients users have"):
//! Docker Compose v2 and buildx through the proxy of a default box (the sid
//! image: dockerd 28.5 with BuildKit), driven twice:
//!
//! - with the box's own CLI (`docker exec BOX docker compose ...`: the
//!   box's /var/run/docker.sock is the proxy's socket), and
//! - with the host's CLI (`docker` 28.x on the published port), its compose
//!   and buildx plugins taken from the box's /usr/libexec/docker/cli-plugins
//!   into a temporary DOCKER_CONFIG.
//!
//! Each: `docker compose up -d --build --wait` of a project with two services
//! (one built), a user network, a named volume and a healthcheck
//! (`interval`, `retries`, `start_interval`: API 1.44) the second service waits for; `ps`; the second
//! service reads what the first serves over the network; a service asking
//! for `privileged: true` is refused with the proxy's reason; `down -v
//! --rmi local` leaves the daemon as it was (asked directly, not through the
//! proxy). Then `docker buildx build --load` (BuildKit through `/session`
//! and `/grpc`) of a multi-stage Dockerfile whose first stage writes to a
//! `RUN --mount=type=cache` directory: two builds, and the second image shows
//! the cache kept what the first wrote; the image runs.
//!
//! No registry: every base image is the harness's busybox, loaded into the
//! box. Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{self, run, DindBox, Harness, Out, Volume, DIRECT, PREFIX};

/// The compose project's name (its containers are `clients-web-1`, ...).
const PROJECT: &str = "clients";
/// Where the project goes inside the box (its /tmp is init's own tmpfs,
/// which `docker cp` cannot reach; /root can be written through `exec`).
const BOX_DIR: &str = "/root/clients";
/// Where Debian's docker-cli looks for its plugins.
const BOX_PLUGINS: &str = "/usr/libexec/docker/cli-plugins";
/// compose and buildx can take a while on a loaded machine.
const SLOW: Duration = Duration::from_secs(300);

const COMPOSE_YAML: &str = r#"services:
  web:
    build: ./web
    networks: [appnet]
    volumes: [data:/data]
    command: ["sh", "-c", "cat /built-by-compose > /data/index.html; exec httpd -f -p 8080 -h /data"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/index.html"]
      interval: 1s
      retries: 60
      start_period: 60s
      start_interval: 1s
  client:
    image: busybox
    networks: [appnet]
    depends_on:
      web:
        condition: service_healthy
    command: ["sh", "-c", "wget -qO- http://web:8080/index.html; exec sleep 600"]
    stop_grace_period: 1s
networks:
  appnet: {}
volumes:
  data: {}
"#;

const WEB_DOCKERFILE: &str =
    "FROM busybox\nRUN echo served-from-the-built-image > /built-by-compose\n";

/// An override file: the same project with a privileged service.
const PRIVILEGED_YAML: &str = r#"services:
  escalate:
    image: busybox
    privileged: true
    command: ["true"]
"#;

/// Stage one counts its runs in a cache mount; stage two is FROM scratch
/// with busybox's binary and what stage one saw.
const BUILDX_DOCKERFILE: &str = r#"FROM busybox AS build
ARG ROUND
RUN --mount=type=cache,target=/cache,id=dindbox-e2e-rounds \
    echo "round $ROUND" >> /cache/rounds && cp /cache/rounds /seen
FROM scratch
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /seen /seen
ENTRYPOINT ["/bin/busybox"]
"#;

/// Who runs the client commands.
enum Cli<'a> {
    /// `docker exec -w BOX_DIR BOX docker ...`: the box's CLI and plugins.
    InBox(&'a DindBox<'a>),
    /// The host's `docker` on the box's published API, with the plugins in
    /// `config` (DOCKER_CONFIG), in `dir`.
    Host {
        b: &'a DindBox<'a>,
        config: PathBuf,
        dir: PathBuf,
    },
}

impl Cli<'_> {
    fn docker(&self, args: &[&str]) -> Out {
        let cmd = match self {
            Cli::InBox(b) => {
                let mut all = vec!["exec", "-w", BOX_DIR, &b.name, "docker"];
                all.extend_from_slice(args);
                b.h.outer_cmd(&all)
            }
            Cli::Host { b, config, dir } => {
                let mut cmd = b.docker_cmd(args);
                // As a user runs it: BuildKit on (scripts/lib.sh turns it
                // off for the outer daemon, and `cargo test` under
                // scripts/test.sh inherits that).
                cmd.env("DOCKER_CONFIG", config)
                    .env_remove("DOCKER_BUILDKIT")
                    .current_dir(dir);
                cmd
            }
        };
        run(cmd, None, SLOW)
    }

    fn the_box(&self) -> &DindBox<'_> {
        match self {
            Cli::InBox(b) | Cli::Host { b, .. } => b,
        }
    }

    fn ok(&self, args: &[&str]) -> Out {
        let out = self.docker(args);
        self.the_box().expect_ok(&out);
        out
    }

    fn compose(&self, args: &[&str]) -> Out {
        let mut all = vec!["compose", "-p", PROJECT];
        all.extend_from_slice(args);
        self.docker(&all)
    }

    fn compose_ok(&self, args: &[&str]) -> Out {
        let out = self.compose(args);
        self.the_box().expect_ok(&out);
        out
    }
}

/// The project's files.
fn project_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("compose.yaml", COMPOSE_YAML),
        ("privileged.yaml", PRIVILEGED_YAML),
        ("web/Dockerfile", WEB_DOCKERFILE),
        ("buildx/Dockerfile", BUILDX_DOCKERFILE),
    ]
}

/// The project in a host temporary directory.
fn project_on_host() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir()
        .expect("temp dir");
    for (name, text) in project_files() {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
        std::fs::write(&path, text).expect("write a project file");
    }
    dir
}

/// The project in the box's BOX_DIR, sent as a tar on `docker exec`'s stdin.
fn project_in_box(b: &DindBox) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, text) in project_files() {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, text.as_bytes())
            .expect("tar a project file");
    }
    let tar = tar.into_inner().expect("the project tar");
    let script = format!("mkdir -p {BOX_DIR} && tar -x -C {BOX_DIR}");
    let out = run(
        b.h.outer_cmd(&["exec", "-i", &b.name, "sh", "-c", &script]),
        Some(&tar),
        Duration::from_secs(60),
    );
    b.expect_ok(&out);
}

/// The host CLI's plugins, copied out of the box into `config/cli-plugins`.
fn host_plugins(h: &Harness, b: &DindBox, config: &Path) {
    let plugins = config.join("cli-plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir cli-plugins");
    for plugin in ["docker-compose", "docker-buildx"] {
        let from = format!("{}:{BOX_PLUGINS}/{plugin}", b.name);
        let out = h.outer(&["cp", &from, plugins.to_str().unwrap()]);
        b.expect_ok(&out);
    }
}

/// What the box's daemon holds, asked directly (not through the proxy):
/// containers, volumes, networks and image tags, one list each.
fn daemon_state(b: &DindBox) -> String {
    b.exec_ok(&format!(
        "{DIRECT} ps -aq; echo --; {DIRECT} volume ls -q; echo --; \
         {DIRECT} network ls --format '{{{{.Name}}}}' | sort; echo --; \
         {DIRECT} images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | sort"
    ))
}

/// A box on the default image with busybox loaded, its engine checked.
fn default_box<'h>(h: &'h Harness, vol: &Volume, tag: &str) -> DindBox<'h> {
    let b = DindBox::start(h, tag, vol);
    let version = b.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        version.stdout.starts_with("28."),
        "the default image must run dockerd 28.x:\n{version}"
    );
    b.load_busybox();
    b
}

fn compose_round_trip(cli: &Cli) {
    let b = cli.the_box();
    let before = daemon_state(b);

    let version = cli.ok(&["compose", "version", "--short"]);
    assert!(
        version.stdout.trim().starts_with('2'),
        "compose v2 expected:\n{version}"
    );

    let up = cli.compose_ok(&["up", "-d", "--build", "--wait", "--wait-timeout", "120"]);
    eprintln!("compose up:\n{}{}", up.stdout, up.stderr);

    let ps = cli.compose_ok(&["ps", "--format", "{{.Service}} {{.State}} {{.Health}}"]);
    let mut lines: Vec<&str> = ps.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["client running ", "web running healthy"],
        "compose ps:\n{ps}"
    );

    // The client read the built image's file from the web service, over
    // the project's network, out of the named volume.
    let logs = cli.compose_ok(&["logs", "--no-log-prefix", "client"]);
    assert!(
        logs.stdout.contains("served-from-the-built-image"),
        "the client did not get the web service's page:\n{logs}"
    );
    let inspect = b.exec_ok(&format!(
        "{DIRECT} inspect -f '{{{{range $n, $_ := .NetworkSettings.Networks}}}}{{{{$n}}}}{{{{end}}}} \
         {{{{range .Mounts}}}}{{{{.Name}}}}{{{{end}}}} {{{{json .Config.Healthcheck.StartInterval}}}}' {PROJECT}-web-1"
    ));
    // compose refuses `start_interval` below API 1.44 ("requires Docker
    // Engine v25"): it reached dockerd because the proxy serves 1.51.
    assert_eq!(
        inspect.trim(),
        format!("{PROJECT}_appnet {PROJECT}_data 1000000000"),
        "the web service's network, volume and healthcheck start interval"
    );

    // The proxy is in the way: a privileged service is refused with its
    // reason, and no container of that service exists.
    let refused = cli.compose(&[
        "-f",
        "compose.yaml",
        "-f",
        "privileged.yaml",
        "up",
        "-d",
        "escalate",
    ]);
    assert!(
        !refused.ok() && refused.stderr.contains("dindbox:"),
        "a privileged service must be refused by the proxy:\n{refused}"
    );
    let escalated = b.exec_ok(&format!(
        "{DIRECT} ps -aq --filter label=com.docker.compose.service=escalate"
    ));
    assert_eq!(escalated.trim(), "", "a refused service left a container");

    let down = cli.compose_ok(&[
        "-f",
        "compose.yaml",
        "-f",
        "privileged.yaml",
        "down",
        "-v",
        "--rmi",
        "local",
    ]);
    eprintln!("compose down:\n{}{}", down.stdout, down.stderr);
    let after = daemon_state(b);
    assert_eq!(
        before, after,
        "`compose down -v --rmi local` must leave the daemon as it was"
    );
}

fn buildx_with_a_cache_mount(cli: &Cli, image: &str) {
    let b = cli.the_box();
    let version = cli.ok(&["buildx", "version"]);
    eprintln!("buildx: {}", version.stdout.trim());
    for round in ["1", "2"] {
        let arg = format!("ROUND={round}");
        let tag = format!("{image}:{round}");
        let out = cli.ok(&[
            "buildx",
            "build",
            "--progress",
            "plain",
            "--build-arg",
            &arg,
            "--load",
            "-t",
            &tag,
            "buildx",
        ]);
        assert!(
            out.stderr.contains("naming to docker.io/library/"),
            "buildx did not export to the daemon:\n{out}"
        );
    }
    let seen = cli.ok(&["run", "--rm", &format!("{image}:2"), "cat", "/seen"]);
    assert_eq!(
        seen.stdout, "round 1\nround 2\n",
        "the second build must see what the first wrote in the cache mount:\n{seen}"
    );
    let first = b.exec_ok(&format!("{DIRECT} run --rm {image}:1 cat /seen"));
    assert_eq!(first, "round 1\n");
}

#[test]
fn compose_and_buildx_with_the_box_cli() {
    let Some(h) = harness::harness() else {
        return;
    };
    let vol = Volume::new(h, "clients-box");
    let b = default_box(h, &vol, "clients-box");
    project_in_box(&b);
    let cli = Cli::InBox(&b);
    compose_round_trip(&cli);
    buildx_with_a_cache_mount(&cli, "buildx-box");
}

#[test]
fn compose_and_buildx_with_the_host_cli() {
    let Some(h) = harness::harness() else {
        return;
    };
    let vol = Volume::new(h, "clients-host");
    let b = default_box(h, &vol, "clients-host");
    let project = project_on_host();
    let config = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir()
        .expect("temp dir");
    host_plugins(h, &b, config.path());
    let cli = Cli::Host {
        b: &b,
        config: config.path().to_path_buf(),
        dir: project.path().to_path_buf(),
    };
    compose_round_trip(&cli);
    buildx_with_a_cache_mount(&cli, "buildx-host");
}
