//! Webhook ingestion benchmark: signed `customer.subscription.updated` events for
//! distinct users, posted over loopback with concurrency 16 to a real `paygate
//! serve` backed by a real `redis-server` (both started here, on free ports).
//! Reports events/s and acknowledgement latency (p50/p99), then checks in Redis
//! that every acknowledged event was applied.
//!
//! Run: `cargo bench --features bench --bench ingest` (env: EVENTS=20000 CONCURRENCY=16)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const SECRET: &str = "whsec_bench_secret";

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let events = env_or("EVENTS", 20_000);
    let concurrency = env_or("CONCURRENCY", 16);

    let redis_port = free_port();
    let _redis = Guard(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        assert!(Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paygate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:9"
[jwt]
secret = "bench-secret-0123456789abcdef"
[store]
redis_url = "redis://127.0.0.1:{redis_port}/0"
[stripe]
webhook_secret = "{SECRET}"
[log]
level = "warn"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paygate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("paygate binary");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _paygate = Guard(child);
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    let url = format!("{base}/stripe/webhook");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Bodies are built and signed before timing starts: we measure paygate, not the driver.
    let bodies: Arc<Vec<(String, String)>> = Arc::new(
        (0..events)
            .map(|i| {
                let body = paygate::bench::sample_subscription_event(
                    &format!("evt_bench_{i}"),
                    &format!("sub_bench_{i}"),
                    &format!("cus_bench_{i}"),
                    "active",
                    now,
                    Some(&format!("user_{i}")),
                );
                let signature = paygate::bench::sign(body.as_bytes(), SECRET, now);
                (body, signature)
            })
            .collect(),
    );

    let (elapsed, mut latencies, failures) = runtime.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, next, bodies, url) =
                (client.clone(), next.clone(), bodies.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, signature)) = bodies.get(i) else {
                        break;
                    };
                    let request = http::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("stripe-signature", signature)
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    let sent = Instant::now();
                    match client.request(request).await {
                        Ok(response) => {
                            let ok = response.status() == 200;
                            let _ = response.into_body().collect().await;
                            latencies.push(sent.elapsed());
                            if !ok {
                                failures += 1;
                            }
                        }
                        Err(_) => failures += 1,
                    }
                }
                (latencies, failures)
            }));
        }
        let mut all = Vec::new();
        let mut failures = 0;
        for task in tasks {
            let (l, f) = task.await.unwrap();
            all.extend(l);
            failures += f;
        }
        (started.elapsed(), all, failures)
    });

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let rate = events as f64 / elapsed.as_secs_f64();

    // Every acknowledged event must be in Redis.
    let applied = runtime.block_on(async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/0")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut applied = 0;
        for i in 0..events {
            let raw: Option<String> = redis::cmd("GET")
                .arg(format!("paygate:{{u:user_{i}}}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if raw.is_some_and(|r| r.contains(&format!("sub_bench_{i}"))) {
                applied += 1;
            }
        }
        applied
    });

    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "webhook ingestion: {events} events, concurrency {concurrency}, redis on loopback"
    );
    let _ = writeln!(
        out,
        "  throughput   {rate:.0} events/s ({:.2} s)",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  ack latency  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
    let _ = writeln!(out, "  failures     {failures}");
    let _ = writeln!(
        out,
        "  applied      {applied}/{events} users found in Redis"
    );
    assert_eq!(failures, 0, "every event must be acknowledged");
    assert_eq!(applied, events, "every acknowledged event must be applied");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
