//! `SIGHUP`: reload the config file. A valid file becomes the running config
//! for the next request (routes, plans, access rules, JWT settings and keys,
//! upstream, headers, log level); an invalid one changes nothing and every
//! error is logged. Settings only a restart can change keep their running
//! value and are named in a warning.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{keep_restart_only, Config};
use crate::gateway::Live;
use crate::server::Tls;
use crate::telemetry::LogLevel;

/// What a reload changes besides the gateway itself.
pub(super) struct Reloader {
    pub(super) path: PathBuf,
    pub(super) live: Arc<Live>,
    pub(super) log: LogLevel,
    /// The listener's certificate, when it serves TLS.
    pub(super) tls: Option<Arc<Tls>>,
}

impl Reloader {
    /// Reloads on every `SIGHUP` for as long as the process runs. `hangups`
    /// was registered before the gateway started, so a `SIGHUP` at any moment
    /// (even while starting or draining) is a reload request, never the
    /// default action that would kill the process.
    #[cfg(unix)]
    pub(super) async fn run(self, mut hangups: tokio::signal::unix::Signal) {
        while hangups.recv().await.is_some() {
            tracing::info!(path = %self.path.display(), "SIGHUP received: reloading the config");
            let ok = self.reload().await;
            crate::metrics::config_reload(ok);
        }
    }

    /// One reload; `true` when the new config is now the running one.
    async fn reload(&self) -> bool {
        let mut next = match Config::load(&self.path) {
            Ok(config) => config,
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(key = %error.key, problem = %error.message, "config reload refused");
                }
                tracing::error!(
                    problems = errors.0.len(),
                    "config reload refused: the running config stays"
                );
                return false;
            }
        };
        let running = self.live.current().config.clone();
        for key in keep_restart_only(&running, &mut next) {
            tracing::warn!(
                key,
                "config reload: this setting needs a restart; its running value stays"
            );
        }
        let generation = match self.live.prepare(next.clone()).await {
            Ok(generation) => generation,
            Err(error) => {
                tracing::error!(%error, "config reload refused: the running config stays");
                return false;
            }
        };
        // The certificate last: it cannot fail half-way (it was read and
        // checked with the config), and nothing is installed if it does.
        if let (Some(tls), Some(files)) = (&self.tls, &next.server.tls) {
            if let Err(error) = tls.reload(files) {
                tracing::error!(%error, "config reload refused: the running config stays");
                return false;
            }
        }
        self.live.install(generation);
        if next.log.level != running.log.level {
            if let Err(error) = self.log.apply(&next.log) {
                tracing::warn!(%error, "config reload: log.level not changed");
            }
        }
        tracing::info!("config reloaded");
        true
    }
}
