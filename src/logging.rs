//! Log set-up: human lines (coloured only on a terminal), JSON lines with
//! `LOG_FORMAT=json`. The level comes from `DINDBOX_LOG` (an `EnvFilter`
//! directive), `info` by default, `debug` with [`init_with_debug`].

#![forbid(unsafe_code)]

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, before anything logs.
pub fn init() {
    install(EnvFilter::try_from_env("DINDBOX_LOG").unwrap_or_else(|_| EnvFilter::new("info")));
}

/// As [`init`], at debug level unless `DINDBOX_LOG` says otherwise.
pub fn init_with_debug(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    install(EnvFilter::try_from_env("DINDBOX_LOG").unwrap_or_else(|_| EnvFilter::new(default)));
}

fn install(filter: EnvFilter) {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
