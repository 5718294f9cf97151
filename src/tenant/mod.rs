//! `dindbox tenant create|list|rm|logs`: one dindbox box per tenant on this
//! host, through the host's Docker API ([`crate::engine`] over its unix socket).
//!
//! A tenant NAME is a container and a volume `dindbox-tenant-NAME` (labelled
//! `dindbox.tenant=NAME`) and a cert dir `STATE_DIR/NAME/certs` mounted at
//! /certs (docker:dind's `DOCKER_TLS_CERTDIR` layout). Its API is published
//! over TLS with client certificates; `create` prints the client environment.

#![forbid(unsafe_code)]

pub mod host;
pub mod logs;
pub mod spec;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::bytesize;
use crate::engine::Engine;
use spec::{object_name, validate_name, HealthTiming, TenantSpec, LABEL};

/// `dindbox tenant` options.
#[derive(clap::Args, Debug, Clone)]
pub struct TenantArgs {
    /// The HOST Docker daemon (a unix socket: unix:///path).
    #[arg(
        long,
        global = true,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub host: String,
    /// Where each tenant's certificates live (STATE_DIR/NAME/certs).
    #[arg(
        long,
        global = true,
        env = "DINDBOX_TENANT_STATE_DIR",
        default_value = "/var/lib/dindbox/tenants"
    )]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum TenantCommand {
    /// Create and start a tenant box, wait until it is healthy, print its client environment.
    Create(CreateArgs),
    /// The tenants: state, health, endpoint.
    #[command(alias = "ls")]
    List,
    /// Stop a tenant gracefully and remove its container (its volume and certificates stay unless --purge).
    Rm(RmArgs),
    /// A tenant box's own log.
    Logs(LogsArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// The tenant name (lower-case letters, digits, '-').
    pub name: String,
    /// Host port for the TLS API (default: a free one picked by Docker).
    #[arg(long)]
    pub port: Option<u16>,
    /// Host address to publish on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_ip: IpAddr,
    /// Memory limit of the whole box (outer): 2g, 512m.
    #[arg(long, value_parser = bytesize::parse_positive_i64)]
    pub memory: Option<i64>,
    /// Pids limit of the whole box (outer).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub pids_limit: Option<i64>,
    /// The inner containers' shared memory budget (DINDBOX_MEMORY_LIMIT);
    /// default: --memory minus 256m when --memory is set.
    #[arg(long, value_parser = bytesize::parse_positive_i64)]
    pub budget: Option<i64>,
    /// The inner containers' shared pids budget (DINDBOX_PIDS_LIMIT);
    /// default: --pids-limit minus 512 when --pids-limit is set.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub pids_budget: Option<i64>,
    /// The dindbox image.
    #[arg(long, default_value = "dindbox:dev")]
    pub image: String,
    /// More names or addresses for the server certificate (DOCKER_TLS_SAN syntax: DNS:x,IP:y).
    #[arg(long = "san", value_delimiter = ',')]
    pub sans: Vec<String>,
    /// Seconds to wait for the box to become healthy.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RmArgs {
    pub name: String,
    /// Also remove the tenant's volume (its images and containers) and its certificates.
    #[arg(long)]
    pub purge: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    pub name: String,
    /// Keep streaming new lines.
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u64>,
    /// Prefix each line with Docker's timestamp.
    #[arg(long, short)]
    pub timestamps: bool,
}

pub fn main(args: TenantArgs) -> anyhow::Result<()> {
    let socket = host::socket_of(&args.host)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let docker = Engine::new(&socket);
    runtime.block_on(async {
        match &args.command {
            TenantCommand::Create(c) => create(&docker, &args.state_dir, c).await,
            TenantCommand::List => list(&docker).await,
            TenantCommand::Rm(r) => rm(&docker, &args.state_dir, r).await,
            TenantCommand::Logs(l) => logs(&docker, l).await,
        }
    })
}

fn progress(msg: &str) {
    eprintln!("dindbox tenant: {msg}");
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

async fn create(docker: &Engine, state_dir: &Path, args: &CreateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let name = args.name.as_str();
    validate_name(name)?;
    let (memory, pids_limit) = (args.memory, args.pids_limit);
    let budget = spec::derive_budget(memory, args.budget)?;
    let pids_budget = spec::derive_pids_budget(pids_limit, args.pids_budget)?;
    let sans = args.sans.join(",");
    crate::tls::parse_sans(&sans).context("--san")?;
    let object = object_name(name);

    let version = docker.get("/version").await?;
    let api_version = version["ApiVersion"].as_str().unwrap_or("1.41").to_string();

    // Nothing is made before these checks pass.
    match docker.get(&format!("/containers/{object}/json")).await {
        Ok(_) => bail!(
            "tenant {name} already exists (container {object}); `dindbox tenant rm {name}` first"
        ),
        Err(e) if e.is_status(StatusCode::NOT_FOUND) => {}
        Err(e) => return Err(e.into()),
    }
    let image_path = format!(
        "/images/{}/json",
        percent_encoding::utf8_percent_encode(&args.image, percent_encoding::NON_ALPHANUMERIC)
    );
    if let Err(e) = docker.get(&image_path).await {
        if e.is_status(StatusCode::NOT_FOUND) {
            return Err(anyhow::Error::new(e).context(format!(
                "image {} is not on the host daemon (build or pull it first, or pass --image)",
                args.image
            )));
        }
        return Err(e.into());
    }

    let tenant_dir = absolute(state_dir)?.join(name);
    let certs_dir = tenant_dir.join("certs");
    std::fs::create_dir_all(&certs_dir)
        .with_context(|| format!("cannot create {}", certs_dir.display()))?;

    // The volume: kept by `rm` without --purge, so it may already exist.
    match docker.get(&format!("/volumes/{object}")).await {
        Ok(v) => {
            if v["Labels"][LABEL].as_str() != Some(name) {
                bail!(
                    "volume {object} exists but is not labelled {LABEL}={name}; \
                     remove or rename it first"
                );
            }
            progress(&format!(
                "reusing the kept volume {object} (its images and containers)"
            ));
        }
        Err(e) if e.is_status(StatusCode::NOT_FOUND) => {
            docker
                .json(
                    Method::POST,
                    "/volumes/create",
                    Some(&spec::volume_body(name)),
                )
                .await?;
        }
        Err(e) => return Err(e.into()),
    }

    let tenant = TenantSpec {
        name: name.to_string(),
        image: args.image.clone(),
        bind_ip: args.bind_ip,
        port: args.port,
        memory,
        pids_limit,
        budget,
        pids_budget,
        certs_dir: certs_dir.clone(),
        extra_sans: args.sans.clone(),
        health: HealthTiming::for_api(&api_version),
    };
    let create = docker
        .json(
            Method::POST,
            &format!("/containers/create?name={object}"),
            Some(&spec::create_body(&tenant)),
        )
        .await;
    match create {
        Err(e) if e.is_status(StatusCode::CONFLICT) => {
            return Err(anyhow::Error::new(e).context(format!(
                "tenant {name} already exists (`dindbox tenant rm {name}` first)"
            )))
        }
        other => other?,
    };
    let start = docker
        .call(Method::POST, &format!("/containers/{object}/start"), None)
        .await;
    if let Err(e) = start {
        return Err(anyhow::Error::new(e).context(format!(
            "container {object} was created but does not start; \
             `dindbox tenant rm {name}` removes it"
        )));
    }
    progress(&format!(
        "started {object} ({}); waiting until it is healthy",
        limits_text(&tenant)
    ));

    let inspect = wait_healthy(docker, name, Duration::from_secs(args.timeout)).await?;
    let (host_ip, port) = spec::published_port(&inspect)
        .with_context(|| format!("{object} is healthy but publishes no 2376/tcp port"))?;
    progress(&format!(
        "{object} is healthy after {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    println!(
        "{}",
        spec::client_env(&spec::endpoint(&host_ip, port), &certs_dir.join("client"))
    );
    Ok(())
}

fn limits_text(t: &TenantSpec) -> String {
    let show = |v: Option<i64>| v.map(spec::human).unwrap_or_else(|| "unlimited".into());
    let show_count = |v: Option<i64>| {
        v.map(|n| n.to_string())
            .unwrap_or_else(|| "unlimited".into())
    };
    format!(
        "memory {}, pids {}, inner budget {} and {} pids",
        show(t.memory),
        show_count(t.pids_limit),
        show(t.budget),
        show_count(t.pids_budget)
    )
}

/// Polls the container until its health check passes; fails early when it
/// exits or turns unhealthy, and on timeout, with its last log lines.
async fn wait_healthy(docker: &Engine, name: &str, timeout: Duration) -> anyhow::Result<Value> {
    let object = object_name(name);
    let deadline = Instant::now() + timeout;
    loop {
        let inspect = docker.get(&format!("/containers/{object}/json")).await?;
        let state = &inspect["State"];
        let status = state["Status"].as_str().unwrap_or("?");
        let health = state["Health"]["Status"].as_str().unwrap_or("none");
        let problem = match (status, health) {
            ("running", "healthy") => return Ok(inspect),
            (_, "unhealthy") => Some(format!("{object} is unhealthy")),
            ("exited" | "dead", _) => Some(format!(
                "{object} exited with code {} before it was healthy",
                state["ExitCode"]
            )),
            _ if Instant::now() >= deadline => Some(format!(
                "{object} is not healthy within {} s (state {status}, health {health}, \
                 restarts {})",
                timeout.as_secs(),
                inspect["RestartCount"]
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            let tail = tail_log(docker, &object, 30)
                .await
                .unwrap_or_else(|e| format!("(no log: {e:#})"));
            let last_check = state["Health"]["Log"]
                .as_array()
                .and_then(|l| l.last())
                .and_then(|c| c["Output"].as_str())
                .map(|o| format!("\nlast health check: {}", o.trim()))
                .unwrap_or_default();
            bail!(
                "{problem}; it is left for inspection (`dindbox tenant logs {name}`, \
                 `dindbox tenant rm {name}`){last_check}\n--- last log lines of {object}:\n{tail}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The last `lines` lines of a container's log, stdout and stderr together.
async fn tail_log(docker: &Engine, object: &str, lines: u64) -> anyhow::Result<String> {
    let response = docker
        .call(
            Method::GET,
            &format!("/containers/{object}/logs?stdout=1&stderr=1&tail={lines}"),
            None,
        )
        .await?;
    let bytes = response.into_body().collect().await?.to_bytes();
    let frames = logs::demux(&bytes).map_err(anyhow::Error::msg)?;
    let text: Vec<u8> = frames.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    Ok(logs::last_lines(
        &String::from_utf8_lossy(&text),
        lines as usize,
    ))
}

/// One row of `tenant list`.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub state: String,
    pub health: String,
    pub endpoint: String,
}

/// A row from a container inspect answer.
pub fn row(inspect: &Value) -> Row {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    Row {
        name: text(&inspect["Config"]["Labels"][LABEL]),
        state: text(&inspect["State"]["Status"]),
        health: inspect["State"]["Health"]["Status"]
            .as_str()
            .unwrap_or("-")
            .to_string(),
        endpoint: spec::published_port(inspect)
            .map(|(ip, port)| spec::endpoint(&ip, port))
            .unwrap_or_else(|| "-".into()),
    }
}

/// The table `tenant list` prints.
pub fn table(rows: &[Row]) -> String {
    let mut out = Vec::new();
    let header = Row {
        name: "NAME".into(),
        state: "STATE".into(),
        health: "HEALTH".into(),
        endpoint: "ENDPOINT".into(),
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let w = |f: fn(&Row) -> usize| all.iter().map(|r| f(r)).max().unwrap_or(0);
    let (wn, ws, wh) = (
        w(|r| r.name.len()),
        w(|r| r.state.len()),
        w(|r| r.health.len()),
    );
    for r in all {
        out.push(format!(
            "{:wn$}  {:ws$}  {:wh$}  {}",
            r.name, r.state, r.health, r.endpoint
        ));
    }
    out.join("\n")
}

async fn list(docker: &Engine) -> anyhow::Result<()> {
    let filters = json!({ "label": [LABEL] }).to_string();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("all", "1")
        .append_pair("filters", &filters)
        .finish();
    let containers = docker.get(&format!("/containers/json?{query}")).await?;
    let mut rows = Vec::new();
    for c in containers.as_array().into_iter().flatten() {
        let Some(id) = c["Id"].as_str() else { continue };
        match docker.get(&format!("/containers/{id}/json")).await {
            Ok(inspect) => rows.push(row(&inspect)),
            // Removed between the list and the inspect.
            Err(e) if e.is_status(StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e.into()),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    println!("{}", table(&rows));
    Ok(())
}

async fn rm(docker: &Engine, state_dir: &Path, args: &RmArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    validate_name(name)?;
    let object = object_name(name);
    let mut tenant_dir = absolute(state_dir)?.join(name);
    match docker.get(&format!("/containers/{object}/json")).await {
        Ok(inspect) => {
            if let Some(dir) = spec::tenant_dir_of(&inspect, name) {
                tenant_dir = dir;
            }
            if inspect["Config"]["Labels"][LABEL].as_str() != Some(name) {
                bail!(
                    "container {object} is not labelled {LABEL}={name}: not a tenant, left alone"
                );
            }
            progress(&format!(
                "stopping {object} (up to {} s for its graceful stop)",
                spec::STOP_TIMEOUT_SECS
            ));
            docker
                .call(
                    Method::POST,
                    &format!("/containers/{object}/stop?t={}", spec::STOP_TIMEOUT_SECS),
                    None,
                )
                .await?;
            docker
                .call(Method::DELETE, &format!("/containers/{object}"), None)
                .await?;
            println!("removed tenant {name} (container {object})");
        }
        Err(e) if e.is_status(StatusCode::NOT_FOUND) && args.purge => {
            println!("tenant {name} has no container; purging what is left");
        }
        Err(e) if e.is_status(StatusCode::NOT_FOUND) => {
            return Err(anyhow::Error::new(e).context(format!("no tenant {name}")))
        }
        Err(e) => return Err(e.into()),
    }
    if !args.purge {
        println!(
            "kept volume {object} and {} (its certificates): `dindbox tenant create {name}` \
             reuses them, `dindbox tenant rm --purge {name}` removes them",
            tenant_dir.display()
        );
        return Ok(());
    }
    match docker
        .call(Method::DELETE, &format!("/volumes/{object}"), None)
        .await
    {
        Ok(_) => println!("removed volume {object}"),
        Err(e) if e.is_status(StatusCode::NOT_FOUND) => println!("no volume {object}"),
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_dir_all(&tenant_dir) {
        Ok(()) => println!("removed {}", tenant_dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", tenant_dir.display())),
    }
    Ok(())
}

async fn logs(docker: &Engine, args: &LogsArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let object = object_name(&args.name);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("stdout", "1").append_pair("stderr", "1");
    if args.follow {
        query.append_pair("follow", "1");
    }
    if args.timestamps {
        query.append_pair("timestamps", "1");
    }
    if let Some(n) = args.tail {
        query.append_pair("tail", &n.to_string());
    }
    let response = docker
        .call(
            Method::GET,
            &format!("/containers/{object}/logs?{}", query.finish()),
            None,
        )
        .await
        .map_err(|e| {
            if e.is_status(StatusCode::NOT_FOUND) {
                anyhow::Error::new(e).context(format!("no tenant {}", args.name))
            } else {
                e.into()
            }
        })?;
    let mut body = response.into_body();
    let mut demuxer = logs::Demuxer::default();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the log stream")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for (stream, bytes) in demuxer.push(&data).map_err(anyhow::Error::msg)? {
            let result = match stream {
                logs::Stream::Stderr => err.write_all(&bytes).and_then(|()| err.flush()),
                _ => out.write_all(&bytes).and_then(|()| out.flush()),
            };
            if let Err(e) = result {
                // The reader went away (`| head`): done.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_from_inspect() {
        let inspect = json!({
            "Config": { "Labels": { "dindbox.tenant": "a" } },
            "State": { "Status": "running", "Health": { "Status": "healthy" } },
            "NetworkSettings": { "Ports": { "2376/tcp": [{ "HostIp": "127.0.0.1", "HostPort": "49153" }] } },
        });
        assert_eq!(
            row(&inspect),
            Row {
                name: "a".into(),
                state: "running".into(),
                health: "healthy".into(),
                endpoint: "tcp://127.0.0.1:49153".into()
            }
        );
        let stopped = json!({
            "Config": { "Labels": { "dindbox.tenant": "b" } },
            "State": { "Status": "exited" },
            "NetworkSettings": { "Ports": {} },
        });
        let r = row(&stopped);
        assert_eq!((r.health.as_str(), r.endpoint.as_str()), ("-", "-"));
        let t = table(&[row(&inspect), r]);
        assert_eq!(
            t,
            "NAME  STATE    HEALTH   ENDPOINT\n\
             a     running  healthy  tcp://127.0.0.1:49153\n\
             b     exited   -        -"
        );
    }
}
