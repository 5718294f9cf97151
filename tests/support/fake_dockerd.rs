//! A fake `dockerd` for the init integration tests (`tests/init.rs`).
//!
//! It listens on the socket given by `--host=unix://PATH` and answers
//! `GET /_ping` with 200 "OK" (HTTP/1.1, keep-alive), `GET /version` with its
//! versions, `POST .../containers/create` with 201 and an id (its body read
//! and dropped); anything else gets 404. Every answer states its newest API
//! version in `Api-Version`, as dockerd does.
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

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

    let conn_dir = dir.clone();
    let api: &'static str = std::env::var("FAKE_DOCKERD_API_VERSION")
        .unwrap_or_else(|_| "1.43".into())
        .leak();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = conn_dir.clone();
            std::thread::spawn(move || serve(conn, dir.as_deref(), api));
        }
    });

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

fn serve(conn: UnixStream, dir: Option<&Path>, api: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        // Skip headers, and a body of Content-Length bytes (the proxy frames
        // what it forwards with one).
        let mut length = 0u64;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).ok() != Some(length)
        {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        let ping = path == "/_ping" || path.ends_with("/_ping");
        // Creates (scripts/bench.sh's adversarial part) are answered as dockerd would.
        let (status, body) = if ping {
            ("200 OK", "OK".to_string())
        } else if method == "GET" && path.ends_with("/version") {
            let version = format!(
                "{{\"Version\":\"0.0.0-fake\",\"ApiVersion\":\"{api}\",\"MinAPIVersion\":\"1.24\"}}"
            );
            ("200 OK", version)
        } else if method == "POST" && path.ends_with("/containers/create") {
            (
                "201 Created",
                "{\"Id\":\"c0ffee\",\"Warnings\":[]}".to_string(),
            )
        } else {
            ("404 Not Found", "{\"message\":\"fake\"}".to_string())
        };
        let body = if method == "HEAD" { "" } else { &body };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nApi-Version: {api}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if ping {
            if let Some(dir) = dir {
                let _ = std::fs::write(dir.join("pinged"), "");
            }
        }
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
