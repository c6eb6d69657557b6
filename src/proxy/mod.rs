//! Forwarding to the application: the pooled upstream client, the request
//! rewrite, and the protocol-switch (WebSocket) tunnel.
//!
//! This module never decides access; it is handed a request that already passed
//! the policy. It never buffers a body in either direction.

pub(crate) mod body;
pub(crate) mod headers;
pub(crate) mod pool;
pub(crate) mod trace;

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use crate::config::UpstreamConfig;
use crate::deny::Deny;
use crate::outbound::error_chain;
use crate::telemetry::Throttle;
pub(crate) use body::{BodyEnd, BodyWatch, BoxError, LimitedBody};
pub(crate) use pool::UpstreamBody;

/// The application behind the gateway and a connection pool to it.
pub(crate) struct Upstream {
    pool: pool::Pool,
    /// `Host` sent upstream: the upstream's own authority, precomputed once.
    host_header: HeaderValue,
    timeout: std::time::Duration,
}

impl Upstream {
    pub(crate) fn new(config: &UpstreamConfig) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        // Small request/response heads must not wait for Nagle's algorithm.
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http();
        // An `https://` upstream is offered (through ALPN) only the version
        // paygate will speak to it.
        let connector = if config.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let authority = config
            .url
            .authority()
            .cloned()
            .expect("config validated an authority");
        let host_header = HeaderValue::from_str(authority.as_str())
            .expect("an authority is a valid header value");
        let pool = pool::Pool::new(
            connector,
            config.url.clone(),
            config.pool_idle_timeout,
            config.http2,
        );
        Upstream {
            pool,
            host_header,
            timeout: config.timeout,
        }
    }

    /// The request target sent upstream (origin-form: the connection already
    /// knows the host) for a normalized path and the client's original query.
    pub(crate) fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, Deny> {
        let path_and_query = match query {
            Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
            None => PathAndQuery::try_from(path),
        }
        .map_err(|_| Deny::BadPath("the path cannot be forwarded".into()))?;
        Ok(Uri::from(path_and_query))
    }

    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// Sends the request and waits for the response head: without limit while
    /// the client is still sending the body (that has its own idle limit,
    /// `server.body_timeout`), then up to `upstream.timeout` (a slow
    /// upload is not an upstream timeout). The response body keeps streaming
    /// after this returns.
    pub(crate) async fn send(
        &self,
        request: Request<LimitedBody>,
        body: &BodyWatch,
    ) -> Result<Response<UpstreamBody>, Deny> {
        let sent = request.body().is_end_stream();
        let send = self.pool.send(request);
        tokio::pin!(send);
        if !sent {
            tokio::select! {
                biased;
                // The upstream may answer before the body is complete (an early 4xx).
                result = &mut send => return self.outcome(result, body),
                _ = body.ended() => {}
            }
        }
        match tokio::time::timeout(self.timeout, send).await {
            Err(_elapsed) => Err(Deny::UpstreamTimeout),
            Ok(result) => self.outcome(result, body),
        }
    }

    /// Maps a finished send to the response or the refusal; a failure caused by
    /// the client's body is the client's error, not the upstream's.
    fn outcome(
        &self,
        result: Result<Response<UpstreamBody>, pool::SendError>,
        body: &BodyWatch,
    ) -> Result<Response<UpstreamBody>, Deny> {
        let error = match result {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        match body.end() {
            BodyEnd::TooLarge => Err(Deny::PayloadTooLarge),
            BodyEnd::ClientError => {
                tracing::info!(error = %error_chain(&error), "client request body broke off; upstream request aborted");
                Err(Deny::BadRequest(
                    "the request body is malformed or incomplete",
                ))
            }
            BodyEnd::Stalled => {
                tracing::info!("client request body stalled past server.body_timeout; upstream request aborted");
                Err(Deny::RequestTimeout)
            }
            BodyEnd::Open | BodyEnd::Complete => {
                // A dead upstream fails every request: one line a second.
                static FAILED: Throttle = Throttle::new(std::time::Duration::from_secs(1));
                if let Some(admitted) = FAILED.admit() {
                    tracing::warn!(error = %error_chain(&error), connect = error.is_connect(), suppressed = admitted.suppressed, "upstream request failed");
                }
                Err(Deny::UpstreamUnavailable)
            }
        }
    }
}

/// After both sides agreed to switch protocols, copies bytes both ways until
/// either side closes. Runs as its own task so the 101 can be returned first.
pub(crate) fn spawn_tunnel(
    client_side: hyper::upgrade::OnUpgrade,
    upstream_side: hyper::upgrade::OnUpgrade,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client_side, upstream_side) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
}
