//! The 60-second demo: a tiny echo "application" on 127.0.0.1:8000 and paygate in
//! front of it on 127.0.0.1:8080, using `config/demo.toml` (in-memory store seeded
//! from `config/demo-users.json`). Prints curl commands with fresh tokens.
//!
//! Run: `cargo run --release --example demo`

// The demo's job is to print instructions for a human.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = paygate::Config::load(&config_path).map_err(|e| e.to_string())?;
    paygate::init_logging(&config.log);

    // The stand-in application: echoes what it received, including the identity
    // headers paygate set, so you can see what your app would get.
    let app = tokio::net::TcpListener::bind(
        config
            .upstream
            .url
            .authority()
            .map(|a| a.as_str())
            .unwrap_or("127.0.0.1:8000"),
    )
    .await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = app.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let mut seen = format!("app saw {} {}\n", req.method(), req.uri());
                    for (name, value) in req.headers() {
                        if name.as_str().starts_with("x-") {
                            seen.push_str(&format!(
                                "  {}: {}\n",
                                name,
                                value.to_str().unwrap_or("?")
                            ));
                        }
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let listener = paygate::server::bind(config.server.listen)?;
    let addr = listener.local_addr()?;
    let token = |user: &str| {
        paygate::mint_token(&config.jwt, user, Duration::from_secs(3600)).unwrap_or_default()
    };
    println!("paygate demo listening on http://{addr} (in-memory store, users from config/demo-users.json)\n");
    println!("Try it (tokens valid for 1 hour):");
    println!("  curl -i http://{addr}/health                                   # public");
    println!(
        "  curl -i http://{addr}/api/banking                              # 401 UNAUTHENTICATED"
    );
    println!("  curl -i -H 'Authorization: Bearer {}' http://{addr}/api/banking   # alice: active -> forwarded", token("alice"));
    println!("  curl -i -H 'Authorization: Bearer {}' http://{addr}/api/banking   # bob: canceled -> 402 SUBSCRIPTION_REQUIRED", token("bob"));
    println!("  curl -i -H 'Authorization: Bearer {}' http://{addr}/api/banking   # carol: never subscribed -> 402 CHECKOUT_REQUIRED", token("carol"));
    println!("  curl -i -H 'Authorization: Bearer {}' http://{addr}/api/reports/export   # dave: trial without 'export' -> 402 UPGRADE_REQUIRED", token("dave"));
    println!(
        "  curl -s -H 'Authorization: Bearer {}' http://{addr}/_paygate/me   # dave's plan state",
        token("dave")
    );
    println!("\nCtrl-C to stop.");

    let gateway = paygate::Live::build(config).await?;
    paygate::server::run(
        listener,
        None,
        gateway,
        None,
        paygate::server::shutdown_signal(),
    )
    .await;
    Ok(())
}
