//! The command line: parses arguments and runs a subcommand. The only
//! place that prints for humans and chooses exit codes.

mod admin;
mod demo;
mod healthcheck;
mod reload;
mod sync;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{units::parse_duration, Config, Secrets};

#[derive(Debug, Parser)]
#[command(
    name = "paygate",
    version,
    about = "A reverse proxy that puts a Stripe subscription paywall in front of an API"
)]
pub(crate) struct Cli {
    /// Config file (default: $PAYGATE_CONFIG, else config/paygate.toml). Accepted anywhere on the line.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway.
    Serve,
    /// Validate the config and print a summary; exit 1 with one line per problem.
    CheckConfig,
    /// Mint a development JWT with the configured HS secret (prints only the token).
    Token {
        /// The user id to put in the configured user claim.
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Read-only backfill from the Stripe API into the store (never writes to Stripe).
    Sync {
        /// Print what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Inspect a user's entitlement, or grant/revoke a manual override.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Link a Stripe customer to a user (an operator link outranks every Stripe source).
    Customer {
        #[command(subcommand)]
        action: CustomerAction,
    },
    /// Exit 0 when the running gateway answers its liveness check, 1 otherwise (container HEALTHCHECK).
    Healthcheck {
        /// Ask the public listener (`/_paygate/healthz`) even when an admin listener is configured.
        #[arg(long)]
        public: bool,
        /// Give up after this long (connect, send, answer each).
        #[arg(long, default_value = "2s")]
        timeout: String,
    },
    /// The quick start: paygate in front of an echo app, with demo users; prints curl commands.
    ///
    /// Runs its built-in config (config/demo.toml) and users (config/demo-users.json)
    /// on the in-memory store, and prints curl commands with tokens valid for an hour.
    Demo {
        /// Where paygate listens.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo's echo application listens.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
        app_listen: SocketAddr,
    },
    /// Print shell completions (`paygate completions bash > /etc/bash_completion.d/paygate`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The secrets this command uses: only those must be set in the
    /// environment (`serve` and `check-config` need every one).
    fn secrets(&self) -> Secrets {
        match self {
            Command::Token { .. } => Secrets {
                jwt: true,
                ..Secrets::NONE
            },
            Command::Sync { .. } => Secrets {
                stripe_api_key: true,
                ..Secrets::NONE
            },
            // The health check reads only where the listeners are.
            Command::User { .. } | Command::Customer { .. } | Command::Healthcheck { .. } => {
                Secrets::NONE
            }
            _ => Secrets::ALL,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum CustomerAction {
    /// Move a customer and its subscriptions to a user; audited on both users.
    Link {
        /// The Stripe customer id, e.g. cus_123.
        id: String,
        /// The user id the customer belongs to.
        #[arg(long)]
        user: String,
        /// Why (kept in the audit trail of both users).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum UserAction {
    /// Show the stored entitlement, the decision it gives now, and the audit trail.
    Show { id: String },
    /// Grant access until a time (comp account), whatever the subscriptions say.
    Grant {
        id: String,
        /// RFC 3339 end of the grant, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        until: String,
        /// Extra features, comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Remove a manual override.
    Revoke { id: String },
}

impl Cli {
    fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("PAYGATE_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config/paygate.toml"))
    }
}

/// Parses `std::env::args` and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that read no config file.
    match &cli.command {
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "paygate", &mut text);
            out(format_args!("{}", String::from_utf8_lossy(&text)));
            return ExitCode::SUCCESS;
        }
        Command::Demo { listen, app_listen } => {
            if cli.config.is_some() {
                return fail("demo runs its built-in config (config/demo.toml); to run your own, use `paygate serve --config FILE`");
            }
            return demo::run(*listen, *app_listen);
        }
        _ => {}
    }
    let path = cli.config_path();
    let config = match Config::load_needing(&path, cli.command.secrets()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} problem(s); nothing was started",
                path.display(),
                errors.0.len()
            );
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            out(format_args!(
                "{}: OK\n{}\n",
                path.display(),
                config.summary()
            ));
            ExitCode::SUCCESS
        }
        Command::Token { user, ttl } => {
            let ttl = match parse_duration(&ttl) {
                Ok(ttl) if !ttl.is_zero() => ttl,
                Ok(_) => return fail("--ttl must be greater than zero"),
                Err(e) => return fail(&format!("--ttl: {e}")),
            };
            match crate::auth::mint_token(&config.jwt, &user, ttl) {
                Ok(token) => {
                    out(format_args!("{token}\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Serve => serve(config, path),
        Command::Sync { dry_run } => block_on(async {
            crate::telemetry::init(&config.log);
            sync::run(config, dry_run).await
        }),
        Command::User { action } => block_on(admin::user_command(config, action)),
        Command::Customer { action } => block_on(admin::customer_command(config, action)),
        Command::Healthcheck { public, timeout } => match parse_duration(&timeout) {
            Ok(timeout) if !timeout.is_zero() => healthcheck::run(&config, public, timeout),
            Ok(_) => fail("--timeout must be greater than zero"),
            Err(e) => fail(&format!("--timeout: {e}")),
        },
        // Handled above, before a config is read.
        Command::Demo { .. } | Command::Completions { .. } => ExitCode::SUCCESS,
    }
}

/// Runs a one-shot async command on a small runtime.
fn block_on(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    }
}

/// Writes a command's output to stdout. A closed pipe (the reader went away,
/// as in `paygate token | head -c0`) ends the process quietly with status 0,
/// as `rg` and `head` do, instead of `println!`'s panic and backtrace.
fn out(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints `error: {message}` on stderr; exit status 1.
fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn serve(config: Config, path: PathBuf) -> ExitCode {
    let log_level = crate::telemetry::install(&config.log);
    // One worker: a current-thread runtime, so a request never wakes another
    // thread (the upstream connection task and the client's run side by side).
    let mut builder = match config.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        // First of all: from here on a SIGHUP is a reload request, never the
        // default action (which ends the process).
        #[cfg(unix)]
        let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(e) => return fail(&format!("cannot handle SIGHUP: {e}")),
        };
        let listen = config.server.listen;
        let listener = match crate::server::bind(listen) {
            Ok(l) => l,
            Err(e) => return fail(&format!("server.listen: cannot bind {listen}: {e}")),
        };
        // Read before anything starts: a certificate that cannot be served
        // stops the start with its key named.
        let tls = match &config.server.tls {
            Some(tls) => match crate::server::Tls::load(tls) {
                Ok(tls) => Some(tls),
                Err(e) => return fail(&e),
            },
            None => None,
        };
        let gateway = match crate::gateway::Live::build(config).await {
            Ok(g) => g,
            Err(e) => return fail(&e),
        };
        let running = gateway.current().config.clone();
        let admin_listener = match running.admin.clone() {
            Some(admin) => match crate::server::bind(admin.listen) {
                Ok(l) => Some(l),
                Err(e) => return fail(&format!("admin.listen: cannot bind {}: {e}", admin.listen)),
            },
            None => None,
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| listen.to_string());
        tracing::info!(%addr, upstream = %running.upstream.url, store = gateway.current().entitlements.store().kind(), "paygate started");
        #[cfg(unix)]
        tokio::spawn(
            reload::Reloader {
                path,
                live: gateway.clone(),
                log: log_level,
                tls: tls.clone(),
            }
            .run(hangups),
        );
        // The first line on stdout: scripts and tests read the bound address from it.
        let mut stdout = std::io::stdout();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let _ = writeln!(stdout, "paygate listening on {scheme}://{addr}");
        if let Some(admin_listener) = &admin_listener {
            let admin_addr = admin_listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(stdout, "paygate admin listening on http://{admin_addr}");
        }
        let _ = stdout.flush();
        let shutdown = crate::server::shutdown_signal();
        if crate::server::run(listener, admin_listener, gateway, tls, shutdown).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}
