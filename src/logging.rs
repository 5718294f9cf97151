//! Log set-up: human lines on a terminal, JSON lines with `LOG_FORMAT=json`.
//! The level comes from `DINDBOX_LOG` (an `EnvFilter` directive), `info` by default.

#![forbid(unsafe_code)]

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, before anything logs.
pub fn init() {
    let filter = EnvFilter::try_from_env("DINDBOX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
