//! `paygate demo`: the quick start. A tiny echo "application" and paygate in
//! front of it, on the in-memory store seeded with the demo users, printing
//! curl commands with fresh tokens.
//!
//! The demo's config and users (`config/demo.toml`, `config/demo-users.json`)
//! are compiled into the binary, so the demo runs from any directory, and
//! `cargo run --release -- demo` builds only the binary's dependencies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Config;

use super::{fail, out};

const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
const DEMO_USERS: &str = include_str!("../../config/demo-users.json");

/// How long the printed tokens stay valid.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Runs the demo until Ctrl-C: paygate on `listen`, the echo app on `app_listen`.
pub(super) fn run(listen: SocketAddr, app_listen: SocketAddr) -> ExitCode {
    // The seed file must exist until the store has read it (while the gateway is built).
    let seed = match SeedDir::create() {
        Ok(seed) => seed,
        Err(e) => return fail(&e),
    };
    let mut config = match Config::compile(DEMO_CONFIG, &seed.0, &|_| None) {
        Ok(config) => config,
        Err(e) => return fail(&format!("the demo config: {e}")),
    };
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let app = match TcpListener::bind(app_listen).await {
            Ok(app) => app,
            Err(e) => return fail(&format!("--app-listen: cannot bind {app_listen}: {e}")),
        };
        let app_addr = match app.local_addr() {
            Ok(addr) => addr,
            Err(e) => return fail(&format!("--app-listen: {e}")),
        };
        tokio::spawn(echo_app(app));
        config.upstream.url = match format!("http://{app_addr}").parse() {
            Ok(url) => url,
            Err(e) => return fail(&format!("--app-listen: {e}")),
        };
        config.server.listen = listen;
        let listener = match crate::server::bind(listen) {
            Ok(listener) => listener,
            Err(e) => return fail(&format!("--listen: cannot bind {listen}: {e}")),
        };
        let addr = listener.local_addr().unwrap_or(listen);
        let jwt = config.jwt.clone();
        let gateway = match crate::gateway::Live::build(config).await {
            Ok(gateway) => gateway,
            Err(e) => return fail(&e),
        };
        drop(seed);
        // Printed once the gateway is built: every command below works now.
        let token = |user: &str| {
            crate::auth::mint_token(&jwt, user, TOKEN_TTL).unwrap_or_default()
        };
        out(format_args!(
            "paygate demo listening on http://{addr} (in-memory store, users from config/demo-users.json; \
             the app is an echo server on http://{app_addr})\n\n\
             Try it (tokens valid for 1 hour):\n\
             \x20 curl -i http://{addr}/health   # public\n\
             \x20 curl -i http://{addr}/api/banking   # 401 UNAUTHENTICATED\n\
             \x20 curl -i -H 'Authorization: Bearer {alice}' http://{addr}/api/banking   # alice: active -> forwarded\n\
             \x20 curl -i -H 'Authorization: Bearer {bob}' http://{addr}/api/banking   # bob: canceled -> 402 SUBSCRIPTION_REQUIRED\n\
             \x20 curl -i -H 'Authorization: Bearer {carol}' http://{addr}/api/banking   # carol: never subscribed -> 402 CHECKOUT_REQUIRED\n\
             \x20 curl -i -H 'Authorization: Bearer {dave}' http://{addr}/api/reports/export   # dave: trial without 'export' -> 402 UPGRADE_REQUIRED\n\
             \x20 curl -s -H 'Authorization: Bearer {dave}' http://{addr}/_paygate/me   # dave's plan state\n\
             \nCtrl-C to stop.\n",
            alice = token("alice"),
            bob = token("bob"),
            carol = token("carol"),
            dave = token("dave"),
        ));
        if crate::server::run(
            listener,
            None,
            gateway,
            None,
            crate::server::shutdown_signal(),
        )
        .await
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}

/// A temporary directory holding `demo-users.json` for the memory store's
/// `seed_file` (the store reads a file); removed when dropped.
struct SeedDir(PathBuf);

impl Drop for SeedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl SeedDir {
    fn create() -> Result<SeedDir, String> {
        let dir = std::env::temp_dir().join(format!("paygate-demo-{}", std::process::id()));
        // A fresh directory of our own, never one that was already there (a
        // leftover of a killed demo with the same pid is replaced).
        let created = match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_dir_all(&dir).and_then(|()| std::fs::create_dir(&dir))
            }
            other => other,
        };
        created
            .and_then(|()| std::fs::write(dir.join("demo-users.json"), DEMO_USERS))
            .map_err(|e| format!("cannot write the demo users to {}: {e}", dir.display()))?;
        Ok(SeedDir(dir))
    }
}

/// The stand-in application: echoes what it received, including the identity
/// headers paygate set, so you can see what your app would get.
async fn echo_app(app: TcpListener) {
    loop {
        let Ok((stream, _)) = app.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let mut seen = format!("app saw {} {}\n", req.method(), req.uri());
                for (name, value) in req.headers() {
                    if name.as_str().starts_with("x-") {
                        seen.push_str(&format!("  {}: {}\n", name, value.to_str().unwrap_or("?")));
                    }
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
