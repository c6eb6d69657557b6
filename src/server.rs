//! Accepting connections: the HTTP/1.1 server loop, slow-client cut-off and
//! graceful drain. Knows nothing about paywalls; it hands each request to the
//! [`Gateway`].
//!
//! Shape borrowed from mini-redis: `run` takes an already-bound listener and a
//! shutdown future, so tests bind port 0 and trigger shutdown themselves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::gateway::Gateway;
use crate::proxy::headers::Peer;

/// Serves until `shutdown` resolves, then stops accepting, marks the gateway as
/// draining (readiness 503) and waits up to `server.shutdown_grace` for
/// in-flight requests. Returns `true` when every connection finished in time.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) -> bool {
    let config = gateway.config.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Cuts off clients that trickle their request head (slowloris).
        .header_read_timeout(config.server.header_timeout)
        .keep_alive(true);
    // Each connection task holds a clone of `alive`; once all are dropped,
    // `all_closed` yields None: that is how the drain knows it is done.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    // Flipped once on shutdown; every connection task watches it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let client = Peer::new(peer);
        let service = service_fn(move |request| {
            let gateway = gateway.clone();
            let client = client.clone();
            async move { Ok::<_, std::convert::Infallible>(gateway.handle(request, &client).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let alive = alive.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    // Finish the request in flight (if any), then close instead
                    // of waiting for the next keep-alive request.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(alive);
        });
    }

    drop(listener);
    gateway.start_draining();
    tracing::info!(grace = ?config.server.shutdown_grace, "draining in-flight requests");
    let _ = stop_tx.send(true);
    drop(alive);
    match tokio::time::timeout(config.server.shutdown_grace, all_closed.recv()).await {
        Ok(_) => {
            tracing::info!("drained; exiting");
            true
        }
        Err(_) => {
            tracing::warn!("shutdown grace elapsed with requests still in flight");
            false
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
