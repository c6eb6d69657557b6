//! `paygate sync [--dry-run]`: the command around the sync engine (`crate::sync`):
//! checks the key and the store, shows progress on stderr, prints the summary on
//! stdout (or, when it stops, what it did and a failure line) and chooses the
//! exit code.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::outbound::OutboundClient;
use crate::stripe::api::StripeApi;
use crate::sync::{sync, Progress, Report, SyncOptions};

use super::fail;

/// Deadline for one HTTP exchange with Stripe (a page of 100 expanded
/// subscriptions can take a few seconds to render on Stripe's side).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Without a terminal, a progress line at most this often (and a last one at the end).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Runs `paygate sync [--dry-run]`: summary on stdout, progress and errors on
/// stderr; exit 0 when every page was read and applied, 1 otherwise.
pub(super) async fn run(config: Config, dry_run: bool) -> ExitCode {
    let Some(stripe) = config.stripe.clone() else {
        return fail("sync needs a [stripe] section with api_key_env (or api_key): the secret key it reads Stripe with");
    };
    let Some(api_key) = stripe.api_key.clone().filter(|k| !k.is_empty()) else {
        return fail("sync needs stripe.api_key_env (or stripe.api_key): the secret key it reads Stripe with");
    };
    if let (Some(configured), Some(key_live)) =
        (stripe.livemode, crate::stripe::api::key_livemode(&api_key))
    {
        if configured != key_live {
            let mode = |live: bool| if live { "live" } else { "test" };
            return fail(&format!(
                "stripe.livemode is {configured} but the API key is a {} key: sync would write {} data into a {} store",
                mode(key_live),
                mode(key_live),
                mode(configured)
            ));
        }
    }
    if !config.store.is_redis() {
        eprintln!(
            "warning: store.redis_url is not set, so this sync runs against an in-memory store that ends with \
             this command: no gateway will see its result. Treat it as a demonstration (or use --dry-run); \
             set store.redis_url to backfill the store the gateways share."
        );
    }
    let store = match crate::store::open(&config.store) {
        Ok(store) => store,
        Err(e) => return fail(&e),
    };
    if let Err(e) = store.ping().await {
        return fail(&format!(
            "the store is unreachable ({e}); nothing was read or written"
        ));
    }

    let http = match OutboundClient::new(REQUEST_TIMEOUT, &config.outbound) {
        Ok(http) => http,
        Err(e) => return fail(&e),
    };
    let api = StripeApi::new(&stripe.api_base, &api_key, http);
    let options = SyncOptions {
        dry_run,
        user_metadata_keys: stripe.user_metadata_keys.clone(),
    };
    let mut line = ProgressLine::new(std::io::stderr().is_terminal());
    eprintln!(
        "sync: reading subscriptions from {}{}",
        stripe.api_base,
        if dry_run {
            " (dry run: nothing will be written)"
        } else {
            ""
        }
    );
    let result = sync(&api, store, &options, &mut |p| line.update(p)).await;
    line.finish();
    let mut stdout = std::io::stdout();
    match result {
        Ok(report) => {
            let _ = write!(stdout, "{report}");
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(failure) => {
            // Not the summary: a summary reads as a finished sync. What was
            // done, then one line saying it failed.
            let _ = write!(stdout, "{}", failed(&failure.partial));
            let _ = stdout.flush();
            let what = if dry_run {
                "nothing was written"
            } else {
                "what was written so far stays; it is safe to re-run"
            };
            fail(&format!("sync stopped: {}; {what}", failure.error))
        }
    }
}

/// The stdout of a sync that stopped: the changes made (or, in a dry run,
/// found) before it stopped, and a `sync FAILED` line.
fn failed(partial: &Report) -> String {
    let mut text = String::new();
    let would = if partial.dry_run { "would " } else { "" };
    for change in &partial.changes {
        let _ = writeln!(text, "{would}{change}");
    }
    let done = if partial.dry_run {
        "found before it stopped (dry run: nothing was written)"
    } else {
        "written before it stopped"
    };
    let _ = writeln!(
        text,
        "sync FAILED after reading {} subscriptions of {} customers in {} pages: {} change(s) {done}",
        partial.subscriptions_read,
        partial.customers_read,
        partial.pages,
        partial.changes.len()
    );
    text
}

/// The progress display on stderr: one line redrawn in place on a terminal, a
/// plain line every few seconds otherwise (logs, CI).
struct ProgressLine {
    terminal: bool,
    started: Instant,
    last_line: Option<Instant>,
    last: Option<Progress>,
    frame: usize,
}

impl ProgressLine {
    fn new(terminal: bool) -> Self {
        ProgressLine {
            terminal,
            started: Instant::now(),
            last_line: None,
            last: None,
            frame: 0,
        }
    }

    fn update(&mut self, p: &Progress) {
        self.last = Some(*p);
        if self.terminal {
            // Stripe does not say how many subscriptions there are, so the bar
            // shows activity, not a fraction.
            const WIDTH: usize = 20;
            let position = self.frame % (2 * (WIDTH - 3));
            let position = if position < WIDTH - 3 {
                position
            } else {
                2 * (WIDTH - 3) - position
            };
            self.frame += 1;
            let mut bar = String::new();
            for i in 0..WIDTH {
                bar.push(if (position..position + 3).contains(&i) {
                    '='
                } else {
                    ' '
                });
            }
            let mut line = String::new();
            let _ = write!(
                line,
                "\r\x1b[2Ksync [{bar}] page {} · {} subscriptions · {} customers · {} changes · {:.0?}",
                p.pages,
                p.subscriptions,
                p.customers,
                p.changes,
                self.started.elapsed()
            );
            eprint!("{line}");
            let _ = std::io::stderr().flush();
        } else if self
            .last_line
            .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY)
        {
            self.last_line = Some(Instant::now());
            eprintln!(
                "sync: page {}: {} subscriptions, {} customers read, {} changes",
                p.pages, p.subscriptions, p.customers, p.changes
            );
        }
    }

    fn finish(&mut self) {
        let Some(p) = self.last else { return };
        if self.terminal {
            eprintln!();
        }
        eprintln!(
            "sync: done reading: {} pages, {} subscriptions, {} customers in {:.1?}",
            p.pages,
            p.subscriptions,
            p.customers,
            self.started.elapsed()
        );
    }
}
