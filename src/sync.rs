//! `paygate sync`: read-only backfill from the Stripe API (SPEC §7). (Being built.)

use std::process::ExitCode;

use crate::config::Config;

pub async fn run(_config: Config, _dry_run: bool) -> ExitCode {
    eprintln!("error: sync is not implemented yet");
    ExitCode::from(1)
}
