//! End to end for `dindbox tenant` (issue 6, "Tenant lifecycle on one
//! host"), through the harness's outer dockerd as the "host" daemon:
//!
//! - two tenants created at once; each printed environment works with the
//!   real CLI (`docker version`, `docker load`, `docker run --rm busybox true`);
//! - tenant A's client certificate against tenant B's endpoint is refused
//!   (different CAs), and the other way round;
//! - `list` shows both healthy at the printed endpoints; outer limits,
//!   labels and restart policy are what was asked;
//! - `rm` keeps the volume and certificates (a re-created tenant still has
//!   its images), `rm --purge` removes them;
//! - everything is removed on failure too (a Drop guard).
//!
//! `bench_tenants_at_once` (ignored) measures time to healthy and RSS.
//!
//! Needs root; same harness as tests/e2e.rs (tests/e2e/harness.rs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, harness, run, Harness, Out, PREFIX};

const TENANT_TIMEOUT: Duration = Duration::from_secs(300);

/// Tenant names of this process: `e2e-PID-TAG`.
fn tenant_name(tag: &str) -> String {
    format!("e2e-{}-{tag}", std::process::id())
}

/// The tenants of this test, purged on drop (even on panic).
struct Tenants<'h> {
    h: &'h Harness,
    state: tempfile::TempDir,
    names: Vec<String>,
}

impl<'h> Tenants<'h> {
    fn new(h: &'h Harness) -> Self {
        remove_dead_runs_tenants(h);
        Tenants {
            h,
            state: tempfile::Builder::new()
                .prefix(PREFIX)
                .tempdir()
                .expect("a temp dir"),
            names: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        tenant_cmd(self.h, self.state.path(), args)
    }

    fn tenant(&self, args: &[&str]) -> Out {
        run(self.cmd(args), None, TENANT_TIMEOUT)
    }

    fn tenant_ok(&self, args: &[&str]) -> Out {
        let out = self.tenant(args);
        assert!(out.ok(), "{out}");
        out
    }

    fn register(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
    }
}

impl Drop for Tenants<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let out = self.tenant(&["rm", "--purge", name]);
            if !out.ok() {
                eprintln!("dindbox e2e: cleanup of tenant {name} failed:\n{out}");
            }
        }
    }
}

fn tenant_cmd(h: &Harness, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dindbox"));
    cmd.arg("tenant")
        .arg("--host")
        .arg(&h.outer)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("DOCKER_HOST");
    cmd
}

/// Tenants `e2e-PID-*` of test processes that are gone (a killed run).
fn remove_dead_runs_tenants(h: &Harness) {
    let names = h
        .outer(&[
            "ps",
            "-a",
            "--filter",
            "label=dindbox.tenant",
            "--format",
            "{{.Label \"dindbox.tenant\"}}",
        ])
        .stdout;
    let vols = h
        .outer(&[
            "volume",
            "ls",
            "--filter",
            "label=dindbox.tenant",
            "--format",
            "{{.Name}}",
        ])
        .stdout;
    let from_vols = vols
        .split_whitespace()
        .filter_map(|v| v.strip_prefix("dindbox-tenant-"))
        .map(str::to_owned);
    let mut all: Vec<String> = names
        .split_whitespace()
        .map(str::to_owned)
        .chain(from_vols)
        .collect();
    all.sort();
    all.dedup();
    for name in all {
        let mut parts = name.split('-');
        if parts.next() != Some("e2e") {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let tmp = std::env::temp_dir();
        let out = run(
            tenant_cmd(h, &tmp.join("dindbox-e2e-none"), &["rm", "--purge", &name]),
            None,
            TENANT_TIMEOUT,
        );
        eprintln!("dindbox e2e: removed leftover tenant {name}: {}", out.ok());
    }
}

/// What `tenant create` printed: DOCKER_HOST and DOCKER_CERT_PATH.
#[derive(Debug, Clone)]
struct ClientEnv {
    host: String,
    cert_path: PathBuf,
}

fn parse_env(out: &Out) -> ClientEnv {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("export "))
        .unwrap_or_else(|| panic!("no export line:\n{out}"));
    let value = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_string()
    };
    assert_eq!(value("DOCKER_TLS_VERIFY"), "1", "{line}");
    ClientEnv {
        host: value("DOCKER_HOST"),
        cert_path: PathBuf::from(value("DOCKER_CERT_PATH")),
    }
}

/// The real CLI with exactly this TLS environment.
fn docker(env: &ClientEnv, cert_path: &Path, args: &[&str], timeout: Duration) -> Out {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", &env.host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", cert_path)
        .env_remove("DOCKER_TLS")
        .env_remove("DOCKER_CONTEXT")
        .args(args);
    run(cmd, None, timeout)
}

fn docker_ok(h: &Harness, name: &str, env: &ClientEnv, args: &[&str]) -> Out {
    let out = docker(env, &env.cert_path, args, Duration::from_secs(120));
    if !out.ok() {
        let logs = h.outer(&["logs", "--tail", "60", &format!("dindbox-tenant-{name}")]);
        panic!(
            "tenant {name}: command failed:\n{out}\n=== its log:\n{}{}",
            harness::strip_ansi(&logs.stdout),
            harness::strip_ansi(&logs.stderr)
        );
    }
    out
}

/// Creates tenants at once (one `tenant create` process each); returns each
/// one's env and how long its create took.
fn create_at_once(t: &mut Tenants, specs: &[(String, Vec<&str>)]) -> Vec<(ClientEnv, Duration)> {
    for (name, _) in specs {
        t.register(name);
    }
    let results: Vec<Out> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|(name, extra)| {
                let mut args = vec!["create", name.as_str(), "--image", &t.h.image];
                args.extend_from_slice(extra);
                let cmd = t.cmd(&args);
                s.spawn(move || run(cmd, None, TENANT_TIMEOUT))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    results
        .iter()
        .map(|out| {
            assert!(out.ok(), "tenant create failed:\n{out}");
            (parse_env(out), out.elapsed)
        })
        .collect()
}

fn volume_exists(h: &Harness, name: &str) -> bool {
    h.outer(&["volume", "inspect", &format!("dindbox-tenant-{name}")])
        .ok()
}

#[test]
fn two_tenants_each_reach_only_their_own_daemon() {
    let h = need_harness!();
    let mut t = Tenants::new(h);
    let (a, b) = (tenant_name("a"), tenant_name("b"));
    let created = create_at_once(
        &mut t,
        &[
            (a.clone(), vec!["--memory", "1g", "--pids-limit", "2000"]),
            (b.clone(), vec![]),
        ],
    );
    let (env_a, took_a) = created[0].clone();
    let (env_b, took_b) = created[1].clone();
    eprintln!(
        "tenants healthy: {a} in {:.1} s, {b} in {:.1} s (created at once)",
        took_a.as_secs_f64(),
        took_b.as_secs_f64()
    );
    assert_ne!(env_a.host, env_b.host);
    assert_eq!(
        env_a.cert_path,
        t.state.path().join(&a).join("certs/client")
    );

    // Each printed environment works with the real CLI.
    let tar = h.busybox_tar.to_string_lossy().into_owned();
    for (name, env) in [(&a, &env_a), (&b, &env_b)] {
        let out = docker_ok(
            h,
            name,
            env,
            &["version", "--format", "{{.Server.Version}}"],
        );
        assert!(!out.stdout.trim().is_empty(), "{out}");
        docker_ok(h, name, env, &["load", "-i", &tar]);
        docker_ok(h, name, env, &["run", "--rm", "busybox", "true"]);
    }

    // A's client certificate against B's endpoint, and the other way round:
    // different CAs, refused at the handshake.
    for (env, other) in [(&env_b, &env_a), (&env_a, &env_b)] {
        let out = docker(env, &other.cert_path, &["version"], Duration::from_secs(30));
        assert!(
            !out.ok() && !out.timed_out && !out.stdout.contains("Server:"),
            "another tenant's certificates must be refused:\n{out}"
        );
        assert!(
            out.stderr.contains("certificate"),
            "the refusal should be about the certificate:\n{out}"
        );
    }

    // The outer container is what was asked for.
    let inspect = h.outer(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}} \
         {{index .Config.Labels \"dindbox.tenant\"}} {{.HostConfig.Privileged}}",
        &format!("dindbox-tenant-{a}"),
    ]);
    assert_eq!(
        inspect.stdout.trim(),
        format!("1073741824 2000 unless-stopped {a} true"),
        "{inspect}"
    );
    let env_line = h.outer(&[
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        &format!("dindbox-tenant-{a}"),
    ]);
    assert!(
        env_line.stdout.contains("DINDBOX_MEMORY_LIMIT=768m")
            && env_line.stdout.contains("DINDBOX_PIDS_LIMIT=1488"),
        "{env_line}"
    );

    // list: both healthy, at the printed endpoints.
    let list = t.tenant_ok(&["list"]);
    for (name, env) in [(&a, &env_a), (&b, &env_b)] {
        let line = list
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols[1..],
            ["running", "healthy", env.host.as_str()],
            "{list}"
        );
    }

    // The same name twice: a clear error, nothing touched.
    let again = t.tenant(&["create", &b, "--image", &h.image]);
    assert!(
        !again.ok() && again.stderr.contains("already exists"),
        "{again}"
    );

    // logs: the box's own log, demultiplexed.
    let logs = t.tenant_ok(&["logs", &a]);
    let text = harness::strip_ansi(&format!("{}{}", logs.stdout, logs.stderr));
    assert!(text.contains("ready"), "{logs}");
    assert!(
        !text.contains('\u{1}') && !text.contains('\u{2}'),
        "framing left in:\n{logs}"
    );

    // rm keeps the volume and the certificates ...
    let rm = t.tenant_ok(&["rm", &a]);
    assert!(rm.stdout.contains("kept volume"), "{rm}");
    assert!(
        volume_exists(h, &a),
        "rm without --purge must keep the volume"
    );
    assert!(env_a.cert_path.join("key.pem").exists());
    assert!(
        !h.outer(&["container", "inspect", &format!("dindbox-tenant-{a}")])
            .ok(),
        "the container must be gone"
    );
    // ... so a re-created tenant still has its images, and the same CA.
    let (env_a2, took) = create_at_once(&mut t, &[(a.clone(), vec![])])[0].clone();
    eprintln!(
        "{a} re-created on its kept volume in {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(env_a2.cert_path, env_a.cert_path);
    docker_ok(h, &a, &env_a2, &["image", "inspect", "busybox"]);

    // rm --purge removes the volume and the state dir.
    let purge = t.tenant_ok(&["rm", "--purge", &a]);
    assert!(purge.stdout.contains("removed volume"), "{purge}");
    assert!(!volume_exists(h, &a), "rm --purge must remove the volume");
    assert!(!t.state.path().join(&a).exists());
    t.tenant_ok(&["rm", "--purge", &b]);
    assert!(!volume_exists(h, &b));
    let list = t.tenant_ok(&["list"]);
    assert!(
        !list.stdout.contains(&a) && !list.stdout.contains(&b),
        "{list}"
    );
    t.names.clear();
}

/// Sum of VmRSS (kB) over the box's processes, and PID 1's (dindbox init).
fn box_rss(h: &Harness, container: &str) -> (u64, u64) {
    let out = h.outer(&[
        "exec",
        container,
        "sh",
        "-c",
        "for s in /proc/[0-9]*/status; do awk -v f=\"$s\" '/^VmRSS:/ {print f, $2}' \"$s\" 2>/dev/null; done",
    ]);
    let mut total = 0;
    let mut init = 0;
    for line in out.stdout.lines() {
        let mut w = line.split_whitespace();
        let (Some(file), Some(kb)) = (w.next(), w.next().and_then(|k| k.parse::<u64>().ok()))
        else {
            continue;
        };
        total += kb;
        if file == "/proc/1/status" {
            init = kb;
        }
    }
    (total, init)
}

/// `DINDBOX_TENANT_BENCH_N` (default 10) tenants created at once: time to
/// healthy of each, and idle RSS. Run with `--ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: cargo test --release --test e2e tenant:: -- --ignored --nocapture"]
fn bench_tenants_at_once() {
    let h = need_harness!();
    let n: usize = std::env::var("DINDBOX_TENANT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut t = Tenants::new(h);

    let one = tenant_name("solo");
    let started = Instant::now();
    create_at_once(&mut t, &[(one.clone(), vec![])]);
    eprintln!(
        "BENCH 1 tenant: healthy in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(10));
    let (total, init) = box_rss(h, &format!("dindbox-tenant-{one}"));
    eprintln!("BENCH idle RSS: dindbox (PID 1) {init} kB, whole box {total} kB");
    t.tenant_ok(&["rm", "--purge", &one]);

    let specs: Vec<(String, Vec<&str>)> = (0..n)
        .map(|i| (tenant_name(&format!("n{i}")), vec![]))
        .collect();
    let started = Instant::now();
    let created = create_at_once(&mut t, &specs);
    let mut times: Vec<f64> = created.iter().map(|(_, d)| d.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "BENCH {n} tenants at once: all healthy in {:.1} s; each: min {:.1} s, median {:.1} s, max {:.1} s",
        started.elapsed().as_secs_f64(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    std::thread::sleep(Duration::from_secs(10));
    let rss: Vec<(u64, u64)> = specs
        .iter()
        .map(|(name, _)| box_rss(h, &format!("dindbox-tenant-{name}")))
        .collect();
    let avg = |f: fn(&(u64, u64)) -> u64| rss.iter().map(f).sum::<u64>() / rss.len() as u64;
    eprintln!(
        "BENCH idle RSS with {n} up, per box: dindbox {} kB, whole box {} kB",
        avg(|r| r.1),
        avg(|r| r.0)
    );
}
