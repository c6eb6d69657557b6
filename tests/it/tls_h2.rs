//! TLS and HTTP/2 (docs/configuration.md `[server.tls]`, `server.h2c`,
//! `upstream.http2`; docs/responses.md "gRPC"): the real binary serving a
//! certificate from a CA generated here, driven by hyper's HTTP/1.1 and HTTP/2
//! clients over rustls. Every rule of the HTTP/1.1 path holds per HTTP/2
//! stream: path normalization, identity-header stripping, `X-Forwarded-*`,
//! body limits, the paywall itself. gRPC callers get their refusals as gRPC
//! statuses, and an HTTP/2 upstream's trailers reach the client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::support::https::{self, h1_tls, h2_tls, send_h1, send_h2, streamed, whole, Answer};
use crate::support::jwt::token;
use crate::support::*;

/// A gateway serving TLS with a fresh CA, in front of a recording upstream.
async fn tls_world(
    adjust: impl FnOnce(Config) -> Config,
) -> (Upstream, Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let files = paygate_testkit::tls::generate(dir.path());
    let (up, gw) = world(|cfg| adjust(cfg.tls(&files))).await;
    (up, gw, dir)
}

fn ca(gw: &Gateway) -> &str {
    gw.ca.as_deref().expect("a TLS gateway")
}

/// A request for `target` on `https://app.example.com:8443` (the authority an
/// HTTP/2 client sends as `:authority`).
fn h2_get(target: &str) -> http::request::Builder {
    Request::get(format!("https://app.example.com:8443{target}"))
}

#[tokio::test]
async fn https_over_http1_and_h2_reaches_the_upstream_as_https() {
    let (up, gw, _dir) = tls_world(|cfg| cfg).await;

    let mut h1 = h1_tls(gw.addr, ca(&gw)).await;
    let request = Request::get("/health/one")
        .header("host", "app.example.com")
        .body(whole(""))
        .unwrap();
    let answer = send_h1(&mut h1, request).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.version, Version::HTTP_11);

    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;
    // Browsers split cookies over several fields on HTTP/2.
    let request = h2_get("/health/two")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(whole(""))
        .unwrap();
    let answer = send_h2(&mut h2, request).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.version, Version::HTTP_2);
    assert_eq!(answer.body, "upstream ok");

    let seen = up.wait_requests(2).await;
    assert_eq!(seen[0].target, "/health/one");
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen[0].header("x-forwarded-host"), Some("app.example.com"));
    assert_eq!(seen[1].target, "/health/two");
    assert_eq!(seen[1].header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen[1].header("x-forwarded-host"),
        Some("app.example.com:8443"),
        ":authority becomes X-Forwarded-Host"
    );
    assert_eq!(
        seen[1].header_all("cookie"),
        ["a=1; b=2"],
        "one Cookie field for an HTTP/1.1 upstream"
    );
    assert_ne!(
        seen[1].header("host"),
        Some("app.example.com:8443"),
        "the upstream gets its own Host"
    );
}

#[tokio::test]
async fn the_paywall_holds_for_each_h2_stream() {
    let (up, gw, _dir) = tls_world(|cfg| cfg).await;
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;

    let (mut h2_dave, mut h2_alice) = (h2.clone(), h2.clone());
    let anonymous = send_h2(&mut h2, h2_get("/api/banking/x").body(whole("")).unwrap());
    let dave = send_h2(
        &mut h2_dave,
        h2_get("/api/banking/x")
            .header("authorization", format!("Bearer {}", token("dave")))
            .body(whole(""))
            .unwrap(),
    );
    let alice = send_h2(
        &mut h2_alice,
        h2_get("/api/banking/x")
            .header("authorization", format!("Bearer {}", token("alice")))
            .body(whole(""))
            .unwrap(),
    );
    // Three streams in flight on one connection at once.
    let (anonymous, dave, alice) = tokio::join!(anonymous, dave, alice);
    let (anonymous, dave, alice) = (anonymous.unwrap(), dave.unwrap(), alice.unwrap());
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(anonymous.json()["code"], "UNAUTHENTICATED");
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    assert_eq!(dave.status, 402, "{dave:?}");
    assert_eq!(dave.json()["code"], "CHECKOUT_REQUIRED");
    assert_eq!(alice.status, 200, "{alice:?}");

    let seen = up.wait_requests(1).await;
    assert_eq!(seen.len(), 1, "only the subscriber's request is forwarded");
    assert_eq!(seen[0].header("x-user-id"), Some("alice"));
    assert_eq!(seen[0].header("x-subscription-status"), Some("active"));
}

#[tokio::test]
async fn identity_headers_sent_on_a_stream_are_stripped() {
    let (up, gw, _dir) = tls_world(|cfg| cfg).await;
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;

    let spoofed = h2_get("/api/banking/x")
        .header("authorization", format!("Bearer {}", token("alice")))
        .header("x-user-id", "mallory")
        .header("x_user_id", "mallory")
        .header("x-subscription-status", "active")
        .header("x-entitlements", "everything")
        .body(whole(""))
        .unwrap();
    assert_eq!(send_h2(&mut h2, spoofed).await.unwrap().status, 200);
    let anonymous = h2_get("/health/x")
        .header("x-user-id", "admin")
        .header("x-entitlements", "everything")
        .body(whole(""))
        .unwrap();
    assert_eq!(send_h2(&mut h2, anonymous).await.unwrap().status, 200);

    let seen = up.wait_requests(2).await;
    assert_eq!(seen[0].header_all("x-user-id"), vec!["alice"]);
    assert!(seen[0].header("x_user_id").is_none());
    assert!(seen[0].header("x-entitlements").is_none());
    assert_eq!(seen[0].header_all("x-subscription-status"), vec!["active"]);
    assert!(
        seen[1].header("x-user-id").is_none(),
        "{:?}",
        seen[1].headers
    );
    assert!(seen[1].header("x-entitlements").is_none());
}

#[tokio::test]
async fn a_hostile_path_is_judged_over_h2_as_over_http1() {
    let (up, gw, _dir) = tls_world(|cfg| cfg).await;
    let mut h1 = h1_tls(gw.addr, ca(&gw)).await;
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;

    for (target, status, code) in [
        ("/health/../api/banking", 401, Some("UNAUTHENTICATED")),
        ("/health/%2e%2e/api/banking", 401, Some("UNAUTHENTICATED")),
        ("/../api/banking", 400, Some("BAD_PATH")),
        ("/api/banking/../../health/live", 200, None),
    ] {
        let over_h1 = send_h1(
            &mut h1,
            Request::get(target)
                .header("host", "localhost")
                .body(whole(""))
                .unwrap(),
        )
        .await
        .unwrap();
        let over_h2 = send_h2(&mut h2, h2_get(target).body(whole("")).unwrap())
            .await
            .unwrap();
        for answer in [&over_h1, &over_h2] {
            assert_eq!(answer.status, status, "{target}: {answer:?}");
            if let Some(code) = code {
                assert_eq!(answer.json()["code"], code, "{target}");
            }
        }
    }
    let seen = up.wait_requests(2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    for recorded in seen {
        assert_eq!(recorded.target, "/health/live", "forwarded normalized");
    }
}

#[tokio::test]
async fn the_body_limit_holds_per_stream() {
    let (up, gw, _dir) = tls_world(|cfg| cfg.set_str("server.max_body", "1KiB")).await;
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;
    let post = |target: &str| Request::post(format!("https://localhost{target}"));

    // Declared up front (hyper sends content-length for a whole body).
    let declared = send_h2(
        &mut h2,
        post("/health/a").body(whole(vec![b'x'; 4096])).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(declared.status, 413, "{declared:?}");
    assert_eq!(declared.json()["code"], "PAYLOAD_TOO_LARGE");
    // Streamed without a length: cut off once it passes the limit.
    let chunks = vec![Bytes::from(vec![b'x'; 600]); 4];
    let streamed_big = send_h2(&mut h2, post("/health/b").body(streamed(chunks)).unwrap())
        .await
        .unwrap();
    assert_eq!(streamed_big.status, 413, "{streamed_big:?}");
    // A small streamed body passes whole, and the connection still serves.
    let small = vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
    let ok = send_h2(&mut h2, post("/health/c").body(streamed(small)).unwrap())
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{ok:?}");
    // The upstream answers only once it has read the whole body.
    let seen = up.requests();
    let small = seen.iter().find(|r| r.target == "/health/c").unwrap();
    assert_eq!(small.body, b"hello world");
    assert!(
        !up.arrivals().iter().any(|r| r.target == "/health/a"),
        "a body declared too large never reaches the upstream"
    );
}

#[tokio::test]
async fn grpc_callers_get_refusals_as_grpc_statuses() {
    let (_up, gw, _dir) = tls_world(|cfg| cfg).await;
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;
    let call = |bearer: Option<String>| {
        let mut request = Request::post("https://localhost/api/banking/bank.Ledger/List")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(user) = bearer {
            request = request.header("authorization", format!("Bearer {}", token(&user)));
        }
        request.body(whole(&b"\0\0\0\0\0"[..])).unwrap()
    };

    let unauthenticated = send_h2(&mut h2, call(None)).await.unwrap();
    assert_grpc(&unauthenticated, "16", "UNAUTHENTICATED");
    let unsubscribed = send_h2(&mut h2, call(Some("dave".into()))).await.unwrap();
    assert_grpc(&unsubscribed, "7", "CHECKOUT_REQUIRED");
    let canceled = send_h2(&mut h2, call(Some("bob".into()))).await.unwrap();
    assert_grpc(&canceled, "7", "SUBSCRIPTION_REQUIRED");

    // The same content type over HTTP/1.1 is not gRPC: the JSON refusal.
    let mut h1 = h1_tls(gw.addr, ca(&gw)).await;
    let request = Request::post("/api/banking/bank.Ledger/List")
        .header("host", "localhost")
        .header("content-type", "application/grpc")
        .body(whole(""))
        .unwrap();
    let answer = send_h1(&mut h1, request).await.unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["code"], "UNAUTHENTICATED");
}

#[track_caller]
fn assert_grpc(answer: &Answer, status: &str, message: &str) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/grpc"));
    // A trailers-only answer: grpc-status comes in the one HEADERS frame.
    assert_eq!(answer.header("grpc-status"), Some(status), "{answer:?}");
    assert_eq!(answer.header("grpc-message"), Some(message), "{answer:?}");
    assert!(answer.body.is_empty());
}

#[tokio::test]
async fn h2c_is_served_only_when_enabled() {
    let (up, gw) = world(|cfg| cfg).await;
    let refused = match https::h2c(gw.addr).await {
        Err(_) => true,
        Ok(mut sender) => send_h2(&mut sender, h2_get("/health/off").body(whole("")).unwrap())
            .await
            .is_err(),
    };
    assert!(refused, "HTTP/2 with prior knowledge is refused by default");

    let (up_on, gw_on) = world(|cfg| cfg.set("server.h2c", "true")).await;
    let mut sender = https::h2c(gw_on.addr).await.expect("h2c handshake");
    let request = Request::get(format!("http://app.example.com{}", "/health/on"))
        .body(whole(""))
        .unwrap();
    let answer = send_h2(&mut sender, request).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.version, Version::HTTP_2);
    let seen = up_on.wait_requests(1).await;
    assert_eq!(seen[0].target, "/health/on");
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen[0].header("x-forwarded-host"), Some("app.example.com"));
    // HTTP/1.1 still works on the same listener, and the paywall too.
    let plain = gw_on.send(get("/health/plain")).await;
    assert_eq!(plain.status, 200);
    let denied = send_h2(&mut sender, h2_get("/api/banking").body(whole("")).unwrap())
        .await
        .unwrap();
    assert_eq!(denied.status, 401);

    // Nothing reached the upstream of the gateway that refused.
    gw.assert_nothing_forwarded(&up).await;
}

#[tokio::test]
async fn an_h2_connection_is_idle_only_with_no_stream_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let files = paygate_testkit::tls::generate(dir.path());
    let release = Signal::new();
    let held = release.clone();
    let up = Upstream::with(move |request| match request.target.as_str() {
        "/health/hold" => Reply::HoldUntil(held.clone()),
        _ => Reply::Ok,
    })
    .await;
    let cfg = Config::new(&up.url())
        .set_str("server.keepalive_timeout", "1s")
        .tls(&files);
    let gw = Gateway::start(&cfg).await;

    // One connection with a stream in flight (its response held upstream)...
    let mut busy = h2_tls(gw.addr, ca(&gw)).await;
    let watch = busy.clone();
    let held_call = tokio::spawn(async move {
        send_h2(&mut busy, h2_get("/health/hold").body(whole("")).unwrap()).await
    });
    up.wait_arrivals(1).await;
    // ...and one opened after it, whose only stream completes.
    let mut idle = h2_tls(gw.addr, ca(&gw)).await;
    let answer = send_h2(&mut idle, h2_get("/health/quick").body(whole("")).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);

    // The idle one is closed after keepalive_timeout; the busy one, whose
    // deadline started earlier, is still open and its answer arrives.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !idle.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an idle HTTP/2 connection should be closed after keepalive_timeout"
        );
        // Polling interval, not a synchronization.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !watch.is_closed(),
        "a connection with a stream in flight is not idle"
    );
    release.fire();
    let answer = held_call.await.unwrap().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "upstream ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_h2_streams_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let files = paygate_testkit::tls::generate(dir.path());
    let release = Signal::new();
    let held = release.clone();
    let up = Upstream::with(move |_| Reply::HoldUntil(held.clone())).await;
    let mut gw = Gateway::start(&Config::new(&up.url()).tls(&files)).await;

    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;
    let in_flight = tokio::spawn(async move {
        send_h2(&mut h2, h2_get("/health/slow").body(whole("")).unwrap()).await
    });
    up.wait_arrivals(1).await;
    gw.signal("TERM");
    // Draining once the listener takes no new TLS connection.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while https::tls(gw.addr, ca(&gw), &[b"h2"]).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never stopped accepting after SIGTERM"
        );
        // Polling interval, not a synchronization.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The stream in flight on an open connection still finishes.
    release.fire();
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "upstream ok");
    let status = gw.wait_exit().await;
    assert_eq!(status.code(), Some(0), "log:\n{}", gw.log());
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_at_header_timeout() {
    let (up, gw, _dir) = tls_world(|cfg| cfg.set_str("server.header_timeout", "1s")).await;
    let mut conn = gw.connect().await;
    // The first byte of a TLS record, then nothing.
    conn.write(&[0x16]).await.unwrap();
    match conn.read_to_close().await {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            panic!("the handshake is still open long after header_timeout: {e}")
        }
        _ => {} // closed or reset
    }
    // The listener still serves.
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;
    let answer = send_h2(&mut h2, h2_get("/health/after").body(whole("")).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(up.wait_requests(1).await.len(), 1);
}

/// What the HTTP/2 upstream saw of one request.
#[derive(Debug, Clone)]
struct H2Seen {
    version: Version,
    path: String,
    te: Option<String>,
    content_type: Option<String>,
    forwarded_proto: Option<String>,
    user: Option<String>,
}

/// A cleartext HTTP/2 server (prior knowledge, like a gRPC backend) answering
/// every request with a gRPC-style response: one DATA frame, then trailers.
/// Returns its address, what it saw, and how many connections it accepted.
async fn h2_upstream() -> (SocketAddr, Arc<Mutex<Vec<H2Seen>>>, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<H2Seen>>> = Arc::default();
    let connections: Arc<Mutex<usize>> = Arc::default();
    let (seen_in, connections_in) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            *connections_in.lock().unwrap() += 1;
            let seen = seen_in.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let header = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    seen.lock().unwrap().push(H2Seen {
                        version: request.version(),
                        path: request.uri().path().to_owned(),
                        te: header("te"),
                        content_type: header("content-type"),
                        forwarded_proto: header("x-forwarded-proto"),
                        user: header("x-user-id"),
                    });
                    let _ = request.into_body().collect().await;
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    trailers.insert("grpc-message", "fine".parse().unwrap());
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let body = StreamBody::new(futures_util::stream::iter(frames));
                    let response = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(body)
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, seen, connections)
}

#[tokio::test]
async fn an_http2_upstream_gets_streams_and_its_trailers_reach_the_client() {
    let (addr, seen, connections) = h2_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let files = paygate_testkit::tls::generate(dir.path());
    let cfg = Config::new(&format!("http://{addr}"))
        .set("upstream.http2", "true")
        .tls(&files);
    let gw = Gateway::start(&cfg).await;
    let mut h2 = h2_tls(gw.addr, ca(&gw)).await;

    let call = |user: &str| {
        Request::post("https://localhost/api/banking/bank.Ledger/List")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {}", token(user)))
            .body(whole(&b"\0\0\0\0\0"[..]))
            .unwrap()
    };
    let mut h2_second = h2.clone();
    let (first, second) = tokio::join!(
        send_h2(&mut h2_second, call("alice")),
        send_h2(&mut h2, call("carol"))
    );
    for answer in [first.unwrap(), second.unwrap()] {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/grpc"));
        assert_eq!(&answer.body[..], b"\0\0\0\0\x02hi");
        let trailers = answer.trailers.as_ref().expect("the upstream's trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "fine");
    }

    // HTTP/1.1 from the client also goes out as HTTP/2.
    let mut h1 = h1_tls(gw.addr, ca(&gw)).await;
    let request = Request::get("/health/h1")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    assert_eq!(send_h1(&mut h1, request).await.unwrap().status, 200);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let mut users: Vec<_> = seen.iter().filter_map(|s| s.user.clone()).collect();
    users.sort();
    assert_eq!(users, ["alice", "carol"]);
    for request in &seen {
        assert_eq!(request.version, Version::HTTP_2, "{request:?}");
        assert_eq!(request.te.as_deref(), Some("trailers"), "{request:?}");
        assert_eq!(request.forwarded_proto.as_deref(), Some("https"));
    }
    assert_eq!(seen[0].path, "/api/banking/bank.Ledger/List");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/grpc"));
    assert_eq!(
        *connections.lock().unwrap(),
        1,
        "every request is a stream of one connection"
    );
}

#[test]
fn bad_tls_files_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let files = paygate_testkit::tls::generate(&dir.path().join("one"));
    let other = paygate_testkit::tls::generate(&dir.path().join("two"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let base = Config::new("http://127.0.0.1:9");
    let check = |cfg: Config| {
        let config_dir = tempfile::tempdir().unwrap();
        let path = cfg.write_to(config_dir.path());
        let out = paygate()
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let missing = check(
        base.clone()
            .tls(&files)
            .set_str("server.tls.cert_file", "nope.pem"),
    );
    assert!(
        missing.contains("server.tls.cert_file: cannot read"),
        "{missing}"
    );
    let mismatched = check(
        base.clone()
            .tls(&files)
            .file("tls-key.pem", &read(&other.server_key)),
    );
    assert!(
        mismatched.contains("server.tls.key_file:") && mismatched.contains("does not match"),
        "{mismatched}"
    );
    let not_a_cert = check(
        base.clone()
            .tls(&files)
            .file("tls-cert.pem", &read(&files.server_key)),
    );
    assert!(
        not_a_cert.contains("server.tls.cert_file:") && not_a_cert.contains("no certificate"),
        "{not_a_cert}"
    );
    let no_key = check(base.clone().tls(&files).unset("server.tls.key_file"));
    assert!(
        no_key.contains("server.tls.key_file: is required"),
        "{no_key}"
    );
}
