//! PID-1 role: the boot sequence of a dind box, readable top to bottom.
//! (Being written; see issue 3.)

use std::process::ExitCode;

/// `dindbox init` options; every one also comes from the environment.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InitArgs {}

pub fn main(_args: InitArgs) -> ExitCode {
    ExitCode::FAILURE
}
