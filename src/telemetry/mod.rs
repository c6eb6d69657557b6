//! Logging setup: human text or JSON lines on stderr (stdout is reserved for
//! machine-readable output such as `paygate token` and the listening line),
//! with a level that a config reload can change. The access log has its own
//! buffered writer ([`access`]); repeated warnings go through a [`Throttle`];
//! spans go out over OTLP ([`otlp`]) when a collector is configured.

pub(crate) mod access;
pub(crate) mod otlp;
mod process;
mod throttle;

use crate::config::{LogConfig, LogFormat};
pub(crate) use throttle::Throttle;

/// Replaces the subscriber's filter.
type SetFilter = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;

/// Changes the running log filter (`log.level`) on a config reload.
pub(crate) struct LogLevel {
    /// `None` when `RUST_LOG` chose the filter: the environment outranks the
    /// file, on reload as at start.
    set: Option<SetFilter>,
}

impl LogLevel {
    /// Applies `log.level` from a reloaded config. The level was validated
    /// with the config, so only a missing subscriber (another one was already
    /// installed, as in tests) makes this fail.
    pub(crate) fn apply(&self, log: &LogConfig) -> Result<(), String> {
        match &self.set {
            Some(set) => set(tracing_subscriber::EnvFilter::new(&log.level)),
            None => {
                tracing::info!("RUST_LOG is set: it keeps choosing the log level over log.level");
                Ok(())
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(log: &LogConfig) {
    let _ = install(log);
}

/// [`init`], returning the handle a reload changes the level through.
pub(crate) fn install(log: &LogConfig) -> LogLevel {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok());
    let env_chose = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&log.level));
    // Colours only for a person at a terminal; CI logs and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    access::set_json(log.format == LogFormat::Json);
    crate::metrics::set_process_collector(process::render);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // The two formats are two subscriber types; the handle is boxed so the
    // reload code needs neither.
    let set: SetFilter = match log.format {
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
    };
    LogLevel {
        set: (!env_chose).then_some(set),
    }
}

/// Waits (briefly) until every access line written so far is on stderr: the
/// last thing before the process exits.
pub(crate) fn flush() {
    access::flush(std::time::Duration::from_secs(2));
}
