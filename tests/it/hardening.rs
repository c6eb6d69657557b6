//! README's "Security" classes against the real binary: protocol switches, client framing
//! errors, slow and stalled bodies, connection limits and deadlines, hostile
//! `Host` values, HTTP/2 prior knowledge, and a Redis that restarted under an
//! idle gateway. Each test reproduces an attack or a fault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::jwt::token;
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

// ---- protocol switches ----

/// What an h2c-capable application (hypercorn, for one) saw.
#[derive(Default)]
struct H2cSeen {
    heads: Vec<String>,
    /// Bytes received after a `101`: HTTP/2 frames reaching the application.
    tunnelled: Vec<u8>,
}

async fn h2c_upstream() -> (RawUpstream, Arc<Mutex<H2cSeen>>) {
    (
        RawUpstream::start().await,
        Arc::new(Mutex::new(H2cSeen::default())),
    )
}

/// Serves `raw` as an application that answers `101` to `Upgrade: h2c` (or to
/// everything when `always_switch`) and then reads whatever follows as
/// HTTP/2; other requests get `200 plain` on the same keep-alive connection.
fn serve_h2c(raw: RawUpstream, seen: Arc<Mutex<H2cSeen>>, always_switch: bool) {
    tokio::spawn(async move {
        loop {
            let mut s = raw.accept().await;
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let (head, leftover) = match timeout(DEADLINE, read_head_or_eof(&mut s)).await {
                        Ok(Some(pair)) => pair,
                        _ => return,
                    };
                    let switch =
                        always_switch || head.to_ascii_lowercase().contains("upgrade: h2c");
                    seen.lock().unwrap().heads.push(head);
                    if switch {
                        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n").await;
                        seen.lock().unwrap().tunnelled.extend_from_slice(&leftover);
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            seen.lock().unwrap().tunnelled.extend_from_slice(&buf[..n]);
                        }
                        return;
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

/// Reads one request head, or `None` at EOF.
async fn read_head_or_eof(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The client preface of HTTP/2 plus a HEADERS-like frame for a protected path.
fn h2_preface_and_request() -> Vec<u8> {
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    wire.extend_from_slice(&[0, 0, 13, 1, 5, 0, 0, 0, 1]); // HEADERS, stream 1
    wire.extend_from_slice(b"/api/banking\0");
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_on_a_public_route_is_not_passed_on() {
    let (raw, seen) = h2c_upstream().await;
    let gw = Gateway::start(&Config::new(&raw.url())).await;
    serve_h2c(raw, seen.clone(), false);

    let mut conn = gw.connect().await;
    let req = get("/health")
        .header("Connection", "Upgrade, HTTP2-Settings")
        .header("Upgrade", "h2c")
        .header("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .header("X-User-Id", "admin");
    let resp = conn.request(&req).await;
    assert_eq!(
        resp.status, 200,
        "the request goes on as plain HTTP/1.1: {resp:?}"
    );
    assert_eq!(resp.body, b"plain");
    // The client then speaks HTTP/2 as if the switch had happened.
    let _ = conn.write(&h2_preface_and_request()).await;
    let _ = timeout(DEADLINE, conn.try_read_response()).await;

    let seen = seen.lock().unwrap();
    assert_eq!(seen.heads.len(), 1, "{:?}", seen.heads);
    let head = seen.heads[0].to_ascii_lowercase();
    for gone in ["upgrade:", "http2-settings:", "x-user-id:"] {
        assert!(!head.contains(gone), "the upstream received {gone}: {head}");
    }
    assert!(!head.contains("connection: upgrade"), "{head}");
    assert!(
        seen.tunnelled.is_empty(),
        "HTTP/2 bytes reached the application: {:?}",
        seen.tunnelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_without_a_websocket_request_never_reaches_the_client() {
    // An upstream that switches protocols whatever it is asked.
    let (raw, seen) = h2c_upstream().await;
    let gw = Gateway::start(&Config::new(&raw.url())).await;
    serve_h2c(raw, seen.clone(), true);

    for req in [
        get("/health"),
        get("/health")
            .header("Connection", "Upgrade")
            .header("Upgrade", "h2c"),
    ] {
        let mut conn = gw.connect().await;
        let resp = conn.request(&req).await;
        assert_error(&resp, 502, "UPSTREAM_UNAVAILABLE");
        let _ = conn.write(&h2_preface_and_request()).await;
        let _ = timeout(DEADLINE, conn.try_read_response()).await;
    }
    let mut conn = gw.connect().await;
    let resp = conn
        .request(
            &get("/health")
                .header("Upgrade", "TLS/1.0")
                .header("Connection", "Upgrade"),
        )
        .await;
    assert_error(&resp, 502, "UPSTREAM_UNAVAILABLE");
    assert!(
        seen.lock().unwrap().tunnelled.is_empty(),
        "bytes were tunnelled after a refused 101"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_gets_goaway_http_1_1_required() {
    let (up, gw) = world(|c| c).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&h2_preface_and_request()).await.unwrap();
    let mut got = Vec::new();
    let _ = timeout(DEADLINE, s.read_to_end(&mut got))
        .await
        .expect("the gateway closes the connection");
    // SETTINGS, then GOAWAY(last stream 0, HTTP_1_1_REQUIRED).
    let goaway: &[u8] = &[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd];
    assert!(
        got.windows(goaway.len()).any(|w| w == goaway),
        "no GOAWAY(HTTP_1_1_REQUIRED) in {got:?}"
    );
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_and_not_forwarded() {
    let (up, gw) = world(|c| c).await;
    let resp = gw
        .send(request("CONNECT", "/api/banking").bearer(&token("alice")))
        .await;
    assert_error(&resp, 405, "METHOD_NOT_ALLOWED");
    gw.assert_nothing_forwarded(&up).await;
}

// ---- client framing ----

/// Whatever reached the upstream for `/api/banking/upload` was aborted: the
/// upstream never saw a complete request body.
async fn assert_uploads_aborted(gw: &Gateway, up: &Upstream) {
    gw.barrier(up).await;
    for got in up
        .requests()
        .iter()
        .filter(|r| r.target == "/api/banking/upload")
    {
        assert!(
            !got.body_complete,
            "the upstream got a complete body: {got:?}"
        );
    }
}

fn chunked_head(target: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        token("alice")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_sizes_are_400_bad_request_not_502() {
    let (up, gw) = world(|c| c).await;
    for size in ["ffffffffffffffffff", "-1", "0x3", "zz"] {
        let mut conn = gw.connect().await;
        let wire = format!(
            "{}3\r\nabc\r\n{size}\r\nabc\r\n0\r\n\r\n",
            chunked_head("/api/banking/upload")
        );
        let _ = conn.write(wire.as_bytes()).await;
        let resp = conn.read_response().await;
        assert_error(&resp, 400, "BAD_REQUEST");
    }
    // Whatever reached the upstream was aborted, never a complete request.
    assert_uploads_aborted(&gw, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_a_half_close_is_400() {
    let (up, gw) = world(|c| c).await;
    let (stream, _) = gw.connect().await.into_parts();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n0123456789",
        token("alice")
    );
    write.write_all(head.as_bytes()).await.unwrap();
    write.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(DEADLINE, read.read_to_end(&mut got))
        .await
        .expect("answered and closed")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"BAD_REQUEST\""), "{text}");
    assert_uploads_aborted(&gw, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_on_get_reaches_the_upstream() {
    let (up, gw) = world(|c| c).await;
    let mut conn = gw.connect().await;
    let wire = "GET /health HTTP/1.1\r\nHost: paygate.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    conn.write(wire.as_bytes()).await.unwrap();
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        up.only_request().await.body,
        b"hello",
        "the GET body was dropped"
    );
}

// ---- slow and stalled bodies ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_an_upstream_timeout() {
    // The upload takes longer than upstream.timeout; the healthy upstream
    // answers at once when it has the body.
    let (up, gw) = world(|c| c.set_str("upstream.timeout", "1s")).await;
    let mut conn = gw.connect().await;
    let piece = vec![b'x'; 20_000];
    let head = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        token("alice"),
        piece.len() * 6
    );
    conn.write(head.as_bytes()).await.unwrap();
    for _ in 0..6 {
        // The slow client under test, not a synchronization.
        sleep(Duration::from_millis(350)).await;
        conn.write(&piece).await.unwrap();
    }
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(up.only_request().await.body_len, 120_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_408_request_timeout() {
    let (up, gw) = world(|c| c.set_str("server.body_timeout", "1s")).await;
    let mut conn = gw.connect().await;
    let head = format!(
        "POST /api/banking/upload HTTP/1.1\r\nHost: paygate.test\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n0123456789",
        token("alice")
    );
    conn.write(head.as_bytes()).await.unwrap();
    let resp = conn.read_response().await;
    assert_error(&resp, 408, "REQUEST_TIMEOUT");
    assert_uploads_aborted(&gw, &up).await;
    assert!(
        gw.log().contains("body_timeout"),
        "the refusal is logged with its reason"
    );
}

// ---- connections ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_until_one_closes() {
    let (_up, gw) = world(|c| c.set("server.max_connections", "2")).await;
    let mut first = gw.connect().await;
    let mut second = gw.connect().await;
    assert_eq!(first.request(&get("/health")).await.status, 200);
    assert_eq!(second.request(&get("/health")).await.status, 200);

    let mut third = gw.connect().await;
    third.write(&get("/health").to_bytes()).await.unwrap();
    assert!(
        timeout(Duration::from_millis(500), third.try_read_head())
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    drop(first);
    let head = third.read_head().await;
    assert_eq!(head.status, 200, "served once a slot freed: {head:?}");
    assert_eq!(second.request(&get("/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let (_up, gw) = world(|c| c.set_str("server.keepalive_timeout", "1s")).await;
    let mut conn = gw.connect().await;
    assert_eq!(conn.request(&get("/health")).await.status, 200);
    let (mut stream, _) = conn.into_parts();
    let mut byte = [0u8; 1];
    let read = timeout(DEADLINE, stream.read(&mut byte))
        .await
        .expect("the idle connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_timeout_longer_than_header_timeout_is_honoured() {
    let (_up, gw) = world(|c| {
        c.set_str("server.header_timeout", "1s")
            .set_str("server.keepalive_timeout", "30s")
    })
    .await;
    let mut conn = gw.connect().await;
    assert_eq!(conn.request(&get("/health")).await.status, 200);
    // Idle for longer than header_timeout: an idle connection is not a slow head.
    sleep(Duration::from_millis(2500)).await;
    assert_eq!(conn.request(&get("/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_backlog_holds_a_burst_of_a_thousand_connections() {
    // One connection slot, taken: nothing more is accepted, so every new
    // connection waits in the kernel's queue. With the old backlog of 128 the
    // queue overflowed and connects hung in SYN retransmits.
    let (_up, gw) = world(|c| c.set("server.max_connections", "1")).await;
    let mut held = gw.connect().await;
    assert_eq!(held.request(&get("/health")).await.status, 200);
    let mut queued = Vec::new();
    for i in 0..1000 {
        let stream = timeout(DEADLINE, TcpStream::connect(gw.addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i} was not queued"))
            .expect("connect");
        queued.push(stream);
    }
    drop(held);
    // The queue drains in order once slots free up: the last one is served.
    drop(queued.drain(..999));
    let mut last = RawConn::from_stream(queued.pop().unwrap());
    assert_eq!(last.request(&get("/health")).await.status, 200);
}

// ---- Host ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_in_an_absolute_target_is_400_and_not_forwarded() {
    let (up, gw) = world(|c| c).await;
    let resp = gw.send(get("http://user:pw@evil/health")).await;
    assert_error(&resp, 400, "BAD_REQUEST");
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_are_not_one_plain_authority_are_400() {
    let (up, gw) = world(|c| c).await;
    for req in [
        get("/health").header("Host", "evil.example/x"),
        get("/health").header("Host", "a.example, b.example"),
        get("/health").header("Host", "user@evil.example"),
        get("/health")
            .header("Host", "a.example")
            .header("Host", "b.example"),
    ] {
        let resp = gw.send(req).await;
        assert_error(&resp, 400, "BAD_REQUEST");
    }
    gw.assert_nothing_forwarded(&up).await;

    let got = forwarded(&gw, &up, get("http://app.example:8443/health")).await;
    assert_eq!(got.header("x-forwarded-host"), Some("app.example:8443"));
    let got = forwarded(&gw, &up, get("/health").header("Host", "[::1]:8080")).await;
    assert_eq!(got.header("x-forwarded-host"), Some("[::1]:8080"));
}

// ---- the store ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_store_command_after_a_redis_restart_succeeds() {
    let (mut redis, _up, gw) = redis_world(|c| {
        c.set_str("store.on_store_error", "deny")
            .set_str("store.cache_ttl", "1s")
    })
    .await;
    // The pooled connection is made and used.
    let resp = gw
        .send(get("/api/banking").bearer(&token("before-restart")))
        .await;
    assert_error(&resp, 402, "CHECKOUT_REQUIRED");
    redis.stop();
    redis.restart();
    // The gateway was idle through the restart; its pooled connection is dead.
    let resp = gw
        .send(get("/api/banking").bearer(&token("after-restart")))
        .await;
    assert_error(&resp, 402, "CHECKOUT_REQUIRED");
}

// ---- the parser's own limits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_the_documented_limits_are_431_and_not_forwarded() {
    let (up, gw) = world(|c| c).await;
    // A 70 KiB header value: over the 64 KiB head limit.
    let resp = gw
        .send(get("/health").header("X-Big", &"a".repeat(70 * 1024)))
        .await;
    assert_eq!(resp.status, 431, "{resp:?}");
    // 101 header lines: over the 100-header limit.
    let mut many = get("/health");
    for i in 0..101 {
        many = many.header(&format!("X-H{i}"), "1");
    }
    let resp = gw.send(many).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    // Just under both limits is served.
    let mut ok = get("/health").header("X-Big", &"a".repeat(60 * 1024));
    for i in 0..90 {
        ok = ok.header(&format!("X-H{i}"), "1");
    }
    assert_eq!(gw.send(ok).await.status, 200);
    assert_eq!(
        up.requests().len(),
        1,
        "only the request within the limits was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_outlives_the_http_deadlines() {
    let raw = RawUpstream::start().await;
    let cfg = Config::new(&raw.url())
        .set_str("server.keepalive_timeout", "1s")
        .set_str("server.header_timeout", "1s");
    let gw = Gateway::start(&cfg).await;
    // The application: switches to WebSocket, then echoes every byte.
    tokio::spawn(async move {
        let mut s = raw.accept().await;
        let _ = read_request_head(&mut s).await;
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut conn = gw.connect().await;
    let req = get("/api/banking/ws")
        .bearer(&token("alice"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13");
    conn.write(&req.to_bytes()).await.unwrap();
    assert_eq!(conn.read_head().await.status, 101);
    let (mut stream, _) = conn.into_parts();
    // Quiet for longer than both HTTP deadlines: a tunnel is not an idle
    // keep-alive connection.
    sleep(Duration::from_millis(2500)).await;
    stream.write_all(b"still here").await.unwrap();
    let mut echo = [0u8; 10];
    timeout(DEADLINE, stream.read_exact(&mut echo))
        .await
        .expect("echo")
        .expect("the tunnel is open");
    assert_eq!(&echo, b"still here");
}
