//! The proxy itself: headers, streaming both ways, upgrades, limits, upstream failures, and process lifecycle.
//!
//! docs/responses.md says what the upstream receives, that bodies stream
//! without buffering, and fixes the 413/502/504 answers and the limits;
//! docs/operations.md covers draining on SIGTERM and the health endpoints. Streaming and draining
//! are tested by causality: the upstream holds part of its answer until the
//! test releases it, so nothing depends on how fast anything runs.

use std::io;
use std::time::Duration;

use crate::support::jwt::token;
use crate::support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant};

// ---- what the upstream receives ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_removed() {
    let (up, gw) = world(|c| c).await;
    let req = get("/api/banking")
        .bearer(&token("alice"))
        .header("Connection", "keep-alive, X-Hop-Custom")
        .header("X-Hop-Custom", "for the gateway only")
        .header("Keep-Alive", "timeout=5, max=100")
        .header("Proxy-Connection", "keep-alive")
        .header("TE", "trailers")
        .header("Trailer", "X-Checksum")
        .header("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0")
        .header("X-End-To-End", "kept");
    let got = forwarded(&gw, &up, req).await;
    for name in [
        "x-hop-custom",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "proxy-authorization",
        "upgrade",
    ] {
        assert_eq!(
            got.header(name),
            None,
            "hop-by-hop header {name} reached the upstream"
        );
    }
    if let Some(conn) = got.header("connection") {
        assert!(
            !conn.to_ascii_lowercase().contains("x-hop-custom"),
            "the client's Connection header was forwarded: {conn}"
        );
    }
    assert_eq!(got.header_all("x-end-to-end"), ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_removed() {
    // RFC 9110 §7.6.1 applies to responses as much as to requests.
    let up = Upstream::with(|_| Reply::Custom {
        status: 200,
        headers: vec![
            ("Connection".into(), "X-Resp-Hop".into()),
            ("X-Resp-Hop".into(), "upstream internal".into()),
            ("Keep-Alive".into(), "timeout=99".into()),
            ("Proxy-Connection".into(), "keep-alive".into()),
            ("X-Resp-Kept".into(), "yes".into()),
        ],
        body: "hello".into(),
    })
    .await;
    let gw = Gateway::start(&Config::new(&up.url())).await;
    let resp = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello");
    for name in ["x-resp-hop", "keep-alive", "proxy-connection"] {
        assert_eq!(
            resp.header(name),
            None,
            "hop-by-hop response header {name} reached the client"
        );
    }
    assert_eq!(resp.header("x-resp-kept"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let (up, gw) = world(|c| c).await;
    let req = get("/api/banking")
        .bearer(&token("alice"))
        .header("Host", "shop.example.com")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.example");
    let got = forwarded(&gw, &up, req).await;
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("x-forwarded-host"), ["shop.example.com"]);
    assert_eq!(
        got.header_all("host"),
        [up.addr.to_string()],
        "Host is the upstream's authority"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_is_appended() {
    let (up, gw) = world(|c| c.set("server.trusted_proxies", r#"["127.0.0.0/8"]"#)).await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking")
            .bearer(&token("alice"))
            .header("X-Forwarded-For", "203.0.113.9, 198.51.100.7"),
    )
    .await;
    let xff: Vec<String> = got
        .header_all("x-forwarded-for")
        .iter()
        .flat_map(|v| comma_list(v))
        .collect();
    assert_eq!(xff, ["203.0.113.9", "198.51.100.7", "127.0.0.1"]);

    // Several header lines are one comma-separated list (RFC 9110 §5.3).
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking")
            .bearer(&token("alice"))
            .header("X-Forwarded-For", "203.0.113.9")
            .header("X-Forwarded-For", "198.51.100.7"),
    )
    .await;
    let xff: Vec<String> = got
        .header_all("x-forwarded-for")
        .iter()
        .flat_map(|v| comma_list(v))
        .collect();
    assert_eq!(xff, ["203.0.113.9", "198.51.100.7", "127.0.0.1"]);

    let got = forwarded(&gw, &up, get("/api/banking").bearer(&token("alice"))).await;
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_outside_trusted_proxies_is_untrusted() {
    let (up, gw) = world(|c| {
        c.set(
            "server.trusted_proxies",
            r#"["10.0.0.0/8", "192.168.0.0/16"]"#,
        )
    })
    .await;
    let got = forwarded(
        &gw,
        &up,
        get("/api/banking")
            .bearer(&token("alice"))
            .header("X-Forwarded-For", "10.1.2.3"),
    )
    .await;
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_is_kept() {
    let (up, gw) = world(|c| c).await;
    let resp = gw
        .send(
            get("/api/banking")
                .bearer(&token("alice"))
                .header("X-Request-Id", "req-abc-123"),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-request-id"), Some("req-abc-123"));
    let got = up.only_request().await;
    assert_eq!(got.header_all("x-request-id"), ["req-abc-123"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_generated_when_absent() {
    let (up, gw) = world(|c| c).await;
    let first = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    let second = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    let got = up.wait_requests(2).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("x-request-id").unwrap_or_default())
        .collect();
    assert!(
        ids.iter().all(|id| !id.is_empty()),
        "upstream got ids {ids:?}"
    );
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    assert_eq!(
        first.header("x-request-id"),
        Some(ids[0]),
        "the client sees the id the upstream got"
    );
    assert_eq!(second.header("x-request-id"), Some(ids[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_made_responses_carry_the_request_id() {
    let (_up, gw) = world(|c| c).await;
    let responses = [
        gw.send(get("/api/banking").header("X-Request-Id", "given-1"))
            .await,
        gw.send(
            get("/api/banking")
                .bearer(&token("dave"))
                .header("X-Request-Id", "given-2"),
        )
        .await,
        gw.send(get("/api%2fbanking").header("X-Request-Id", "given-3"))
            .await,
        gw.send(get("/_paygate/nope").header("X-Request-Id", "given-4"))
            .await,
        gw.send(get("/_paygate/healthz").header("X-Request-Id", "given-5"))
            .await,
    ];
    for (i, resp) in responses.iter().enumerate() {
        assert_eq!(
            resp.header("x-request-id"),
            Some(format!("given-{}", i + 1).as_str()),
            "{resp:?}"
        );
    }
    let resp = gw.send(get("/api/banking")).await;
    assert!(
        resp.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "a 401 gets a generated id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (up, gw) = world(|c| c).await;
    let alice = token("alice");
    let mut conn = gw.connect().await;
    let r1 = conn.request(&get("/api/banking/1").bearer(&alice)).await;
    let r2 = conn
        .request(&post("/api/banking/2", "two").bearer(&alice))
        .await;
    let r3 = conn.request(&get("/health/3")).await;
    for r in [&r1, &r2, &r3] {
        assert!(r.status == 200 && r.answered_by_upstream(), "{r:?}");
    }
    let got = up.wait_requests(3).await;
    let targets: Vec<&str> = got.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/api/banking/1", "/api/banking/2", "/health/3"]);
    assert_eq!(got[1].body, b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_length_headers_cannot_smuggle_a_request() {
    // RFC 9112 §6.3: with both Transfer-Encoding and Content-Length the
    // message is suspect. Whatever the gateway makes of it (refuse it, or
    // frame it one way), the request hidden in the body must never reach the
    // upstream past the paywall, and the upstream must never see both headers.
    let (up, gw) = world(|c| c).await;
    let smuggled = "GET /api/banking/smuggled HTTP/1.1\r\nHost: paygate.test\r\n\r\n";
    let wire = format!(
        "POST /health HTTP/1.1\r\nHost: paygate.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\n{smuggled}GET /health/after HTTP/1.1\r\nHost: paygate.test\r\nConnection: close\r\n\r\n",
        5 + smuggled.len()
    );
    let mut conn = gw.connect().await;
    let _ = conn.write(wire.as_bytes()).await;
    match conn.read_to_close().await {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            panic!("the gateway kept the connection open: {e}")
        }
        _ => {}
    }
    let got = gw.barrier(&up).await;
    let total = up.arrivals().len();
    up.wait_requests(total).await;
    for r in &got {
        assert!(
            !r.target.contains("smuggled"),
            "a smuggled request reached the upstream: {r:#?}"
        );
        assert!(
            r.header("content-length").is_none() || r.header("transfer-encoding").is_none(),
            "the upstream got both Content-Length and Transfer-Encoding: {r:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_responses_pass_through_unchanged() {
    let up = Upstream::with(|r| Reply::Custom {
        status: if r.path().ends_with("/gone") {
            410
        } else {
            503
        },
        headers: vec![
            ("Content-Type".into(), "text/plain".into()),
            ("Retry-After".into(), "7".into()),
        ],
        body: "application says no".into(),
    })
    .await;
    let gw = Gateway::start(&Config::new(&up.url())).await;
    for (target, status) in [("/api/banking/down", 503), ("/api/banking/gone", 410)] {
        let resp = gw.send(get(target).bearer(&token("alice"))).await;
        assert_eq!(resp.status, status);
        assert!(resp.answered_by_upstream());
        assert_eq!(resp.text(), "application says no");
        assert_eq!(resp.header("retry-after"), Some("7"));
    }
}

/// The upstream connection pool: one connection serves request after request,
/// concurrent requests need at most one connection each, and connections come
/// back after every kind of answer (with a body, empty, an error status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let up = Upstream::with(|r| match r.path() {
        "/api/banking/empty" => Reply::Custom {
            status: 204,
            headers: vec![],
            body: Default::default(),
        },
        "/api/banking/missing" => Reply::Custom {
            status: 404,
            headers: vec![],
            body: "no such thing".into(),
        },
        _ => Reply::Ok,
    })
    .await;
    let gw = Gateway::start(&Config::new(&up.url())).await;
    let alice = token("alice");
    for i in 0..30 {
        let target = [
            "/api/banking/x",
            "/api/banking/empty",
            "/api/banking/missing",
        ][i % 3];
        let resp = gw.send(get(target).bearer(&alice)).await;
        assert!(resp.answered_by_upstream(), "{target}: {resp:?}");
    }
    assert_eq!(
        up.connections(),
        1,
        "30 sequential requests, one upstream connection"
    );
    let burst = (0..8).map(|_| gw.send(get("/api/banking/x").bearer(&alice)));
    for resp in futures_util::future::join_all(burst).await {
        assert_eq!(resp.status, 200);
    }
    let after_burst = up.connections();
    assert!(
        after_burst <= 9,
        "8 concurrent requests opened {after_burst} connections in all"
    );
    for _ in 0..10 {
        assert_eq!(
            gw.send(get("/api/banking/x").bearer(&alice)).await.status,
            200
        );
    }
    assert_eq!(
        up.connections(),
        after_burst,
        "pooled connections are reused after a burst"
    );
}

/// An upstream that closes every connection after its answer: each request
/// gets a fresh connection and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_after_each_answer_is_not_an_error() {
    let up = Upstream::with(|_| Reply::Custom {
        status: 200,
        headers: vec![("Connection".into(), "close".into())],
        body: "bye".into(),
    })
    .await;
    let gw = Gateway::start(&Config::new(&up.url())).await;
    for _ in 0..5 {
        let resp = gw.send(get("/api/banking/x").bearer(&token("alice"))).await;
        assert_eq!((resp.status, resp.text()), (200, "bye".to_string()));
    }
    assert_eq!(up.connections(), 5);
}

/// Connections idle longer than `upstream.pool_idle_timeout` are not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_expire() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&Config::new(&up.url()).set_str("upstream.pool_idle_timeout", "200ms"))
        .await;
    assert_eq!(
        gw.send(get("/api/banking/x").bearer(&token("alice")))
            .await
            .status,
        200
    );
    assert_eq!(up.connections(), 1);
    // The passage of time is what is tested (the reaper runs every 100 ms): wait
    // past the timeout, then ask again, until a new connection shows up. A
    // request that still found the old connection proves nothing yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.connections() == 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle connection was never closed"
        );
        sleep(Duration::from_millis(400)).await;
        assert_eq!(
            gw.send(get("/api/banking/x").bearer(&token("alice")))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        up.connections(),
        2,
        "the idle connection was closed, a new one opened"
    );
}

/// Reads response heads until a final (non-1xx) one.
async fn read_final_head(conn: &mut RawConn) -> ResponseHead {
    loop {
        let head = conn.read_head().await;
        if head.status >= 200 {
            return head;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_upload_is_forwarded() {
    let (up, gw) = world(|c| c).await;
    let mut conn = gw.connect().await;
    let head = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 11\r\nExpect: 100-continue\r\n\r\n",
        token("alice")
    );
    conn.write(head.as_bytes()).await.unwrap();
    // The body is sent only once the gateway asks for it (RFC 9110 §10.1.1).
    let interim = conn.read_head().await;
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before the body: {interim:?}"
    );
    conn.write(b"hello world").await.unwrap();
    let fin = read_final_head(&mut conn).await;
    let body = conn.read_body(&fin).await.unwrap();
    assert_eq!(
        fin.status,
        200,
        "{fin:?} {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(up.only_request().await.body, b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_on_a_denied_route_is_answered_without_the_body() {
    let (up, gw) = world(|c| c).await;
    let mut conn = gw.connect().await;
    let head = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 11\r\nExpect: 100-continue\r\n\r\n",
        token("dave")
    );
    conn.write(head.as_bytes()).await.unwrap();
    // The body never comes: the decision needs only the head.
    let fin = read_final_head(&mut conn).await;
    let body = conn.read_body(&fin).await.unwrap();
    assert_eq!(fin.status, 402, "{fin:?}");
    let json: Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(json["code"], "CHECKOUT_REQUIRED");
    gw.assert_nothing_forwarded(&up).await;
}

// ---- bodies stream both ways ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_arrives_intact() {
    let (up, gw) = world(|c| c).await;
    let mut conn = gw.connect().await;
    let mut wire = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        token("alice")
    )
    .into_bytes();
    let mut sent = Vec::new();
    for i in 0..40u32 {
        let chunk: Vec<u8> = (0..(1000 + i * 97)).map(|j| (j * 31 + i) as u8).collect();
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(&chunk);
        wire.extend_from_slice(b"\r\n");
        sent.extend_from_slice(&chunk);
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    conn.write(&wire).await.unwrap();
    let resp = conn.read_response().await;
    assert!(
        resp.status == 200 && resp.answered_by_upstream(),
        "{resp:?}"
    );
    let got = up.only_request().await;
    assert!(got.body_complete);
    assert_eq!(got.body_len, sent.len() as u64);
    assert_eq!(got.body, sent);
}

/// Deterministic, incompressible-looking bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_upload_arrives_intact_in_bounded_memory() {
    const TOTAL: usize = 256 << 20;
    const CHUNK: usize = 64 << 10;
    const RSS_LIMIT_KIB: u64 = 100 * 1024;
    let (up, gw) = world(|c| {
        c.set_str("server.max_body", "1GiB")
            .set_str("upstream.timeout", "600s")
    })
    .await;

    let mut conn = gw.connect().await;
    let head = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {TOTAL}\r\n\r\n",
        token("alice")
    );
    conn.write(head.as_bytes()).await.unwrap();
    let mut block = noise(CHUNK, 0x5eed);
    let mut sum = Checksum::default();
    let mut peak_kib = gw.rss_kib();
    for i in 0..TOTAL / CHUNK {
        // Every block differs, so a gateway that dropped or reordered one is caught.
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        sum.update(&block);
        if let Err(e) = conn.write(&block).await {
            let answer = conn.try_read_response().await;
            panic!(
                "upload broke off after {} MiB: {e}; gateway answered {answer:?}",
                (i * CHUNK) >> 20
            );
        }
        if i % 32 == 0 {
            peak_kib = peak_kib.max(gw.rss_kib());
        }
    }
    let resp = conn.read_response().await;
    peak_kib = peak_kib.max(gw.rss_kib());
    assert!(
        resp.status == 200 && resp.answered_by_upstream(),
        "{resp:?}"
    );

    eprintln!(
        "paygate RSS peaked at {peak_kib} KiB while streaming {} MiB",
        TOTAL >> 20
    );

    let got = up.only_request().await;
    assert!(got.body_complete);
    assert_eq!(got.body_len, TOTAL as u64);
    assert_eq!(got.body_checksum, sum.0, "the upstream got different bytes");
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "paygate's RSS peaked at {} MiB while streaming 256 MiB: the body is buffered",
        peak_kib / 1024
    );
}

/// Reads the next piece of a streamed body (a chunk, or whatever bytes came).
async fn next_piece(conn: &mut RawConn, head: &ResponseHead) -> Option<Vec<u8>> {
    if head.is_chunked() {
        conn.read_chunk().await
    } else {
        match conn.read_some().await {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => panic!("reading the streamed body: {e}"),
        }
    }
}

fn streaming_upstream(go: &Signal) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let go = go.clone();
    move |r| {
        if r.path() == "/api/banking/events" {
            Reply::Stream {
                first: "data: first\n\n".into(),
                then: go.clone(),
                rest: "data: rest\n\n".into(),
            }
        } else if r.path() == "/api/banking/stuck" {
            Reply::Never
        } else {
            Reply::Ok
        }
    }
}

/// Opens `/api/banking/events` and reads until the first event arrived.
async fn open_stream(gw: &Gateway) -> (RawConn, ResponseHead) {
    let mut conn = gw.connect().await;
    conn.write(
        &get("/api/banking/events")
            .bearer(&token("alice"))
            .to_bytes(),
    )
    .await
    .unwrap();
    let head = conn.try_read_head().await.unwrap_or_else(|e| {
        panic!("no response head while the upstream holds the rest of its body (buffered?): {e}")
    });
    assert_eq!(head.status, 200);
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("data: first\n\n") {
        let piece = next_piece(&mut conn, &head)
            .await
            .expect("the stream ended before its first event");
        received.extend_from_slice(&piece);
    }
    assert_eq!(received, b"data: first\n\n");
    (conn, head)
}

/// Reads the rest of a streamed body to its end.
async fn read_rest(conn: &mut RawConn, head: &ResponseHead) -> Vec<u8> {
    let mut rest = Vec::new();
    while let Some(piece) = next_piece(conn, head).await {
        rest.extend_from_slice(&piece);
    }
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_response_reaches_the_client_before_the_upstream_finishes() {
    let go = Signal::new();
    let up = Upstream::with(streaming_upstream(&go)).await;
    let gw = Gateway::start(&Config::new(&up.url())).await;
    let (mut conn, head) = open_stream(&gw).await;
    // The client has the first event while the upstream is still holding the
    // rest: the gateway did not wait for the whole body.
    assert!(!go.is_fired());
    go.fire();
    assert_eq!(read_rest(&mut conn, &head).await, b"data: rest\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_bounds_the_head_not_a_streaming_body() {
    let go = Signal::new();
    let up = Upstream::with(streaming_upstream(&go)).await;
    let gw = Gateway::start(&Config::new(&up.url()).set_str("upstream.timeout", "1s")).await;
    let (mut conn, head) = open_stream(&gw).await;
    // A request started after the stream's head times out only once
    // `upstream.timeout` has passed, so the stream is older than that now.
    let stuck = gw
        .send(get("/api/banking/stuck").bearer(&token("alice")))
        .await;
    assert_error(&stuck, 504, "UPSTREAM_TIMEOUT");
    go.fire();
    assert_eq!(read_rest(&mut conn, &head).await, b"data: rest\n\n");
}

// ---- limits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_over_max_body_is_413_and_not_forwarded() {
    let (up, gw) = world(|c| c.set_str("server.max_body", "1KiB")).await;
    let mut conn = gw.connect().await;
    // Head and body in one write, so the gateway can answer without leaving
    // unread bytes behind (which would make the kernel reset the connection).
    let _ = conn
        .write(
            &post("/api/banking/upload", vec![b'x'; 2048])
                .bearer(&token("alice"))
                .to_bytes(),
        )
        .await;
    let resp = conn.read_response().await;
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_exactly_max_body_is_forwarded() {
    let (up, gw) = world(|c| c.set_str("server.max_body", "1KiB")).await;
    let body = noise(1024, 7);
    let got = forwarded(
        &gw,
        &up,
        post("/api/banking/upload", body.clone()).bearer(&token("alice")),
    )
    .await;
    assert_eq!(got.body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_growing_past_max_body_is_413_and_aborted_upstream() {
    const LIMIT: u64 = 64 << 10;
    let (up, gw) = world(|c| c.set_str("server.max_body", "64KiB")).await;
    let mut conn = gw.connect().await;
    let mut wire = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        token("alice")
    )
    .into_bytes();
    // 96 KiB in 16 KiB chunks and no last chunk: the body is still open when
    // it crosses the limit.
    for _ in 0..6 {
        wire.extend_from_slice(b"4000\r\n");
        wire.extend_from_slice(&[b'x'; 0x4000]);
        wire.extend_from_slice(b"\r\n");
    }
    let _ = conn.write(&wire).await;
    let resp = conn.read_response().await;
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE");

    // Whatever reached the upstream was aborted, never completed.
    let partial = gw.barrier(&up).await;
    let total = up.arrivals().len();
    for got in up
        .wait_requests(total)
        .await
        .iter()
        .filter(|r| r.target == "/api/banking/upload")
    {
        assert!(
            !got.body_complete,
            "the upstream got a complete body past max_body: {} bytes",
            got.body_len
        );
        assert!(
            got.body_len <= LIMIT,
            "the upstream got {} bytes, over max_body",
            got.body_len
        );
    }
    assert!(partial.len() <= 1, "{partial:#?}");
}

// ---- upgrades ----

/// Parses a request head into its request line and lowercased headers.
fn parse_request_head(head: &str) -> (String, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (request_line, headers)
}

fn upgrade_request(target: &str) -> Request {
    get(target)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let raw_up = RawUpstream::start().await;
    let gw = Gateway::start(&Config::new(&raw_up.url())).await;
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    // The application: answers 101, then echoes every byte back.
    tokio::spawn(async move {
        let mut s = raw_up.accept().await;
        let (head, leftover) = read_request_head(&mut s).await;
        let _ = head_tx.send(head);
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await
        .unwrap();
        s.write_all(&leftover).await.unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let mut conn = gw.connect().await;
    let req = upgrade_request("/api/banking/ws")
        .bearer(&token("alice"))
        .header("X-User-Id", "admin");
    conn.write(&req.to_bytes()).await.unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 101, "{head:?}");
    assert!(
        head.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{head:?}"
    );

    let messages: [Vec<u8>; 3] = [
        b"hello through the tunnel".to_vec(),
        (0..=255u8).collect(),
        noise(100_000, 3),
    ];
    for msg in &messages {
        conn.write(msg).await.unwrap();
        let echo = conn
            .read_exact(msg.len())
            .await
            .expect("echo through the tunnel");
        assert_eq!(&echo, msg);
    }

    let upstream_head = timeout(DEADLINE, head_rx).await.unwrap().unwrap();
    let (line, headers) = parse_request_head(&upstream_head);
    assert_eq!(line, "GET /api/banking/ws HTTP/1.1");
    let get_all = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get_all("upgrade"), ["websocket"], "{upstream_head}");
    assert!(
        get_all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("upgrade")),
        "the upstream must see Connection: upgrade: {upstream_head}"
    );
    assert_eq!(get_all("sec-websocket-key"), ["dGhlIHNhbXBsZSBub25jZQ=="]);
    assert_eq!(get_all("x-user-id"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_refused_when_the_policy_fails() {
    let (up, gw) = world(|c| c).await;
    let resp = gw
        .send(upgrade_request("/api/banking/ws").bearer(&token("dave")))
        .await;
    assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    let resp = gw.send(upgrade_request("/api/banking/ws")).await;
    assert_error(&resp, 401, "UNAUTHENTICATED");
    gw.assert_nothing_forwarded(&up).await;
}

// ---- upstream failures ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_connections_is_502() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = Gateway::start(&Config::new(&format!("http://127.0.0.1:{closed_port}"))).await;
    let resp = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    assert_error(&resp, 502, "UPSTREAM_UNAVAILABLE");
    let resp = gw.send(get("/health")).await;
    assert_error(&resp, 502, "UPSTREAM_UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_the_connection_is_502() {
    let raw_up = RawUpstream::start().await;
    let gw = Gateway::start(&Config::new(&raw_up.url())).await;
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut s = raw_up.accept().await;
        let (head, _) = read_request_head(&mut s).await;
        let _ = head_tx.send(head);
        drop(s); // closes without an answer
                 // Keep accepting (and closing) in case the gateway retries.
        loop {
            let mut s = raw_up.accept().await;
            let _ = read_request_head(&mut s).await;
        }
    });
    let resp = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    assert_error(&resp, 502, "UPSTREAM_UNAVAILABLE");
    let head = head_rx.await.unwrap();
    assert!(head.starts_with("GET /api/banking HTTP/1.1\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let up = Upstream::with(|_| Reply::Never).await;
    let gw = Gateway::start(&Config::new(&up.url()).set_str("upstream.timeout", "1s")).await;
    let resp = gw.send(get("/api/banking").bearer(&token("alice"))).await;
    assert_error(&resp, 504, "UPSTREAM_TIMEOUT");
    assert_eq!(up.wait_arrivals(1).await.len(), 1);
}

// ---- process lifecycle and operations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_endpoints_answer() {
    let (up, gw) = world(|c| c).await;
    for path in ["/_paygate/healthz", "/_paygate/readyz"] {
        let resp = gw.send(get(path)).await;
        assert_eq!(resp.status, 200, "{path}: {:?}", resp.text());
        assert!(!resp.answered_by_upstream());
        assert!(resp.header("x-request-id").is_some());
    }
    let resp = gw.send(get("/_paygate/nope")).await;
    assert_error(&resp, 404, "NOT_FOUND");
    gw.assert_nothing_forwarded(&up).await;
}

/// Polls until the gateway shows it acted on a shutdown signal: `readyz`
/// answers 503, or new connections are refused or closed.
async fn wait_until_draining(gw: &Gateway) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(gw.addr),
        )
        .await
        {
            Ok(Err(_)) => return,
            Ok(Ok(stream)) => {
                let mut conn = RawConn::from_stream(stream);
                if conn
                    .write(&get("/_paygate/readyz").to_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                match timeout(Duration::from_secs(2), conn.try_read_response()).await {
                    Ok(Ok(resp)) if resp.status == 503 => return,
                    Ok(Err(_)) => return,
                    _ => {}
                }
            }
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never started draining after the signal"
        );
        // Polling interval, not a synchronization.
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_in_flight_request_then_exits_zero() {
    let release = Signal::new();
    let held = release.clone();
    let up = Upstream::with(move |_| Reply::HoldUntil(held.clone())).await;
    let mut gw = Gateway::start(&Config::new(&up.url())).await;

    let addr = gw.addr;
    let alice = token("alice");
    let client =
        tokio::spawn(async move { send(addr, get("/api/banking/slow").bearer(&alice)).await });
    up.wait_arrivals(1).await; // the request is now in flight at the upstream
    gw.signal("TERM");
    wait_until_draining(&gw).await;
    release.fire();

    let resp = client.await.expect("the in-flight request got an answer");
    assert!(
        resp.status == 200 && resp.answered_by_upstream(),
        "{resp:?}"
    );
    assert_eq!(resp.text(), "upstream ok");
    let status = gw.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "paygate must exit 0 after draining; log:\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_an_idle_gateway_with_exit_zero() {
    let (_up, mut gw) = world(|c| c).await;
    gw.signal("INT");
    let status = gw.wait_exit().await;
    assert_eq!(status.code(), Some(0), "log:\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_the_drain() {
    let up = Upstream::with(|_| Reply::Never).await;
    let mut gw = Gateway::start(
        &Config::new(&up.url())
            .set_str("server.shutdown_grace", "1s")
            .set_str("upstream.timeout", "300s"),
    )
    .await;
    let addr = gw.addr;
    let alice = token("alice");
    let client = tokio::spawn(async move {
        let mut conn = RawConn::connect(addr).await;
        let _ = conn
            .write(&get("/api/banking/forever").bearer(&alice).to_bytes())
            .await;
        let _ = conn.try_read_response().await;
    });
    up.wait_arrivals(1).await;
    gw.signal("TERM");
    // Exits although the request never completes (the exit code is not
    // specified for a drain cut short).
    gw.wait_exit().await;
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_finishes_its_headers_is_disconnected() {
    let (up, gw) = world(|c| c.set_str("server.header_timeout", "1s")).await;
    let mut conn = gw.connect().await;
    conn.write(b"GET /health HTTP/1.1\r\nHost: paygate.test\r\nX-Slow: ")
        .await
        .unwrap();
    match conn.read_to_close().await {
        Ok(_) => {} // closed (possibly after a 408)
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            panic!("the connection is still open long after header_timeout: {e}")
        }
        Err(_) => {} // reset
    }
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected() {
    let (_up, gw) = world(|c| c.set_str("server.header_timeout", "1s")).await;
    let mut conn = gw.connect().await;
    match conn.read_to_close().await {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            panic!(
                "a connection that never sent a byte is still open long after header_timeout: {e}"
            )
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_headers_are_cut_off_at_header_timeout() {
    // A slowloris client keeps sending header bytes; the limit is on the whole
    // head, not on the gap between bytes. The pacing below is the behaviour
    // under test, not a synchronization.
    let (_up, gw) = world(|c| c.set_str("server.header_timeout", "1s")).await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        if wr
            .write_all(b"GET /health HTTP/1.1\r\nHost: paygate.test\r\n")
            .await
            .is_err()
        {
            return;
        }
        for i in 0..100 {
            sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Trickle-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = timeout(DEADLINE, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "a client trickling header lines was never disconnected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_json_with_the_spec_fields() {
    let (_up, gw) = world(|c| c).await;
    let resp = gw.send(get("/api/banking").bearer(&token("bob"))).await;
    let body: Value = assert_error(&resp, 402, "SUBSCRIPTION_REQUIRED");
    for key in ["error", "code", "redirect", "status"] {
        assert!(body.get(key).is_some(), "missing {key} in {body}");
    }
}
