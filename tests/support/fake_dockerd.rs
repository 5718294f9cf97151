//! A fake `dockerd` process for the integration tests that need one
//! (`tests/init.rs` supervises it, `tests/metrics.rs` kills it) and for
//! `scripts/bench-adversarial.sh`.
//!
//! It listens on the socket given by `--host=unix://PATH` and serves the
//! fake dockerd of the in-process tests (`tests/support/dockerd.rs`: it
//! answers `GET /version` with its versions and states its newest API version
//! in `Api-Version` on every answer, as dockerd does), answering `GET /_ping`
//! with 200 "OK", `POST .../containers/create` with 201 and an id (its body
//! read and dropped) and anything else with 404.
//! SIGTERM makes it exit 0. Behaviour and records, through the environment:
//! - `FAKE_DOCKERD_DIR`: where it records `starts` (one line per start),
//!   `fds-N` (the targets of its open fds at start N), `args-N` (its
//!   arguments at start N, one a line) and `pinged` (created on the first
//!   `/_ping` answered);
//! - `FAKE_DOCKERD_DELAY_MS`: wait this long before listening;
//! - `FAKE_DOCKERD_FAIL_STARTS`: on the first N starts (`all`: on every one),
//!   print what dockerd prints when containerd does not come up and exit 1
//!   before listening, leaving `FAKE_DOCKERD_PIDFILE` (if set) behind; every
//!   start records in `stale-pidfile-N` whether that file was there;
//! - `FAKE_DOCKERD_CRASH_AFTER_MS`: exit 42 this long after listening, on the
//!   first `FAKE_DOCKERD_CRASH_TIMES` starts (default 1);
//! - `FAKE_DOCKERD_IGNORE_TERM=1`: ignore SIGTERM;
//! - `FAKE_DOCKERD_API_VERSION`: its newest API version (default 1.43).
//!
//! SIGHUP creates `sighup` in `FAKE_DOCKERD_DIR`.
//!
//! It is a `[[bin]]` (not an example) so tests can find it through
//! `CARGO_BIN_EXE_fake-dockerd`; it is not part of the image.

mod dockerd;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dockerd::{Fake, Reply, Seen};

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

fn main() {
    let socket = std::env::args()
        .find_map(|a| a.strip_prefix("--host=unix://").map(PathBuf::from))
        .expect("fake-dockerd: needs --host=unix://PATH");
    let dir = std::env::var_os("FAKE_DOCKERD_DIR").map(PathBuf::from);
    let start = dir.as_deref().map(record_start).unwrap_or(1);

    use signal_hook::consts::{SIGHUP, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP]).expect("signals");
    if let Some(delay) = env_ms("FAKE_DOCKERD_DELAY_MS") {
        std::thread::sleep(delay);
    }
    let fail = match std::env::var("FAKE_DOCKERD_FAIL_STARTS").as_deref() {
        Ok("all") => true,
        Ok(n) => n.parse().is_ok_and(|n: usize| start <= n),
        Err(_) => false,
    };
    let pidfile = std::env::var_os("FAKE_DOCKERD_PIDFILE").map(PathBuf::from);
    if let (Some(dir), Some(pidfile)) = (&dir, &pidfile) {
        let seen = if pidfile.exists() { "yes" } else { "no" };
        let _ = std::fs::write(dir.join(format!("stale-pidfile-{start}")), seen);
    }
    if fail {
        if let Some(pidfile) = &pidfile {
            let _ = std::fs::write(pidfile, format!("{}\n", std::process::id()));
        }
        eprintln!("fake-dockerd: start {start}: starting containerd");
        eprintln!(
            "failed to start daemon: timeout waiting for containerd to start (fake start {start})"
        );
        std::process::exit(1);
    }
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).expect("fake-dockerd: bind");
    eprintln!(
        "fake-dockerd: start {start} listening on {}",
        socket.display()
    );

    if let Some(after) = env_ms("FAKE_DOCKERD_CRASH_AFTER_MS") {
        let times: usize = std::env::var("FAKE_DOCKERD_CRASH_TIMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        if start <= times {
            std::thread::spawn(move || {
                std::thread::sleep(after);
                eprintln!("fake-dockerd: crashing as told");
                std::process::exit(42);
            });
        }
    }

    let api: &'static str = std::env::var("FAKE_DOCKERD_API_VERSION")
        .unwrap_or_else(|_| "1.43".into())
        .leak();
    let pinged = dir.as_ref().map(|d| d.join("pinged"));
    let fake = Fake::new(api, "1.24")
        .answering(move |seen| std::future::ready(answer(&seen, pinged.as_deref())));
    std::thread::spawn(move || serve(fake, listener));

    let ignore_term = std::env::var("FAKE_DOCKERD_IGNORE_TERM").is_ok_and(|v| v == "1");
    let hup_record = dir.as_ref().map(|d| d.join("sighup"));
    for sig in signals.forever() {
        if sig == SIGHUP {
            eprintln!("fake-dockerd: SIGHUP (reload)");
            if let Some(path) = &hup_record {
                let _ = std::fs::write(path, "");
            }
            continue;
        }
        if ignore_term {
            eprintln!("fake-dockerd: ignoring SIGTERM");
            continue;
        }
        eprintln!("fake-dockerd: SIGTERM, exiting");
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    }
}

/// Appends a line to `starts`; returns this start's number. Also records fds.
fn record_start(dir: &Path) -> usize {
    let path = dir.join("starts");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{}", std::process::id()).unwrap();
    drop(f);
    let n = std::fs::read_to_string(&path).unwrap().lines().count();
    let mut fds = String::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            fds.push_str(&format!(
                "{} {}\n",
                entry.file_name().to_string_lossy(),
                target.display()
            ));
        }
    }
    std::fs::write(dir.join(format!("fds-{n}")), fds).unwrap();
    let args: String = std::env::args().skip(1).map(|a| a + "\n").collect();
    std::fs::write(dir.join(format!("args-{n}")), args).unwrap();
    n
}

/// Serves the fake on its own runtime until the process exits.
fn serve(fake: Fake, listener: UnixListener) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("fake-dockerd: runtime");
    runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .expect("fake-dockerd: nonblocking");
        let listener =
            tokio::net::UnixListener::from_std(listener).expect("fake-dockerd: listener");
        Arc::new(fake).serve(listener).await
    });
}

/// Pings (recorded in `pinged` once answered) and creates (scripts/bench.sh's
/// adversarial part) are answered as dockerd would; anything else is 404.
fn answer(seen: &Seen, pinged: Option<&Path>) -> Reply {
    let path = seen.path();
    if path == "/_ping" || path.ends_with("/_ping") {
        if let Some(pinged) = pinged {
            let _ = std::fs::write(pinged, "");
        }
        Reply::new(200, "OK").header("Content-Type", "text/plain")
    } else if seen.method == "POST" && path.ends_with("/containers/create") {
        Reply::json(201, r#"{"Id":"c0ffee","Warnings":[]}"#)
    } else {
        Reply::json(404, r#"{"message":"fake"}"#)
    }
}
