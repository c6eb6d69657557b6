//! The admin listener (SPEC §8) and `paygate user`. (Being built.)

use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::cli::UserAction;
use crate::config::Config;
use crate::gateway::Gateway;

/// Serves the admin API on its own listener until the process exits.
pub async fn run(_listener: TcpListener, _gateway: Arc<Gateway>) {}

pub async fn user_command(_config: Config, _action: UserAction) -> ExitCode {
    eprintln!("error: user commands are not implemented yet");
    ExitCode::from(1)
}
