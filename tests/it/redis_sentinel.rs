//! The Redis store behind Sentinel and next to replicas, with the real binary.
//!
//! - `readyz` means writable: `503` on a replica or a master short of
//!   `min-replicas-to-write`, `200` on a writable master.
//! - In sentinel mode with `min_replica_acks = 1`, a stream of webhooks keeps
//!   flowing through a forced failover (`SENTINEL FAILOVER`): answers during the
//!   switch may be `503` (Stripe redelivers them), but every webhook answered
//!   `2xx` is visible afterwards, through the gateway and on the new master.
//!
//! Each test owns its servers ([`TestSentinel`]); waits poll with deadlines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use paygate_testkit::TestSentinel;
use tokio::time::Instant;

use crate::support::jwt;
use crate::support::stripe::*;
use crate::support::*;

fn readyz() -> Request {
    get("/_paygate/readyz")
}

fn has_status(status: u16) -> impl Fn(&RawResponse) -> bool {
    move |resp: &RawResponse| resp.status == status
}

/// `readyz` reports a store that cannot take writes this soon (docs/operations.md).
const READYZ_WITHIN: Duration = Duration::from_secs(2);

/// The checkout of `user`, which grants access at once.
fn checkout(user: &str) -> serde_json::Value {
    checkout_completed(
        &format!("evt_checkout_{user}"),
        user,
        &format!("cus_{user}"),
        &format!("sub_{user}"),
        jwt::now() - 3600,
    )
}

/// A gateway in sentinel mode on `deployment`, `min_replica_acks = 1`.
/// `store.redis_url` names a closed port: in sentinel mode only its scheme,
/// credentials and database are used.
fn sentinel_config(deployment: &TestSentinel, up: &Upstream) -> Config {
    let urls: Vec<String> = deployment
        .sentinel_urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect();
    with_redis_and_stripe(Config::new(&up.url()), "redis://127.0.0.1:1/0")
        .set_str("store.redis_mode", "sentinel")
        .set("store.sentinel_urls", &format!("[{}]", urls.join(", ")))
        .set_str("store.sentinel_master", deployment.master_name())
        .set("store.min_replica_acks", "1")
        .set_str("store.replica_ack_timeout", "1s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_on_a_replica_and_200_on_a_writable_master() {
    let deployment = TestSentinel::start();
    let up = Upstream::start().await;
    let on_replica = Gateway::start(&with_redis_and_stripe(
        Config::new(&up.url()),
        &deployment.replica().url(),
    ))
    .await;
    let on_master = Gateway::start(&with_redis_and_stripe(
        Config::new(&up.url()),
        &deployment.master().url(),
    ))
    .await;
    until(
        &on_master,
        DEADLINE,
        "readyz 200 on the master",
        readyz,
        has_status(200),
    )
    .await;
    let resp = until(
        &on_replica,
        DEADLINE,
        "readyz 503 on the replica",
        readyz,
        has_status(503),
    )
    .await;
    assert!(
        resp.text().to_lowercase().contains("readonly"),
        "{}",
        resp.text()
    );

    // The master stops taking writes (too few replicas for
    // `min-replicas-to-write`): not ready within two seconds, and ready again
    // once it takes them.
    deployment
        .master()
        .command(&["CONFIG", "SET", "min-replicas-to-write", "2"]);
    until(
        &on_master,
        READYZ_WITHIN,
        "readyz 503 while the master refuses writes",
        readyz,
        has_status(503),
    )
    .await;
    deployment
        .master()
        .command(&["CONFIG", "SET", "min-replicas-to-write", "0"]);
    until(
        &on_master,
        READYZ_WITHIN,
        "readyz 200 once the master takes writes again",
        readyz,
        has_status(200),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_webhook_survives_a_sentinel_failover() {
    let deployment = TestSentinel::start();
    let up = Upstream::start().await;
    let gw = Gateway::start(&sentinel_config(&deployment, &up)).await;
    until(
        &gw,
        DEADLINE,
        "readyz 200 at start-up",
        readyz,
        has_status(200),
    )
    .await;
    apply(&gw, &checkout("first")).await;

    // Two lanes of webhooks, sequential within a lane, flow while the
    // failover runs, and go on until each has had 5 acknowledged after it.
    let switched = AtomicBool::new(false);
    // When each webhook that was not acknowledged was answered.
    let refusals = std::sync::Mutex::new(Vec::new());
    let lane = |lane: usize| {
        let (gw, switched, refusals) = (&gw, &switched, &refusals);
        async move {
            let mut answers: Vec<(String, u16)> = Vec::new();
            let mut acked_after = 0;
            let mut switched_at: Option<Instant> = None;
            for i in 0.. {
                let user = format!("l{lane}n{i}");
                let status = deliver(gw, &checkout(&user)).await.status;
                if !(200..300).contains(&status) {
                    refusals.lock().unwrap().push(Instant::now());
                }
                if switched.load(Ordering::SeqCst) {
                    let at = *switched_at.get_or_insert_with(Instant::now);
                    if (200..300).contains(&status) {
                        acked_after += 1;
                    }
                    assert!(
                        at.elapsed() < DEADLINE,
                        "lane {lane}: only {acked_after} webhooks acknowledged in {DEADLINE:?} \
                         after the failover: {answers:?}"
                    );
                }
                answers.push((user, status));
                if acked_after >= 5 {
                    break;
                }
            }
            answers
        }
    };
    let failover = async {
        let deployment = tokio::task::spawn_blocking(move || {
            let mut deployment = deployment;
            deployment.failover();
            deployment
        })
        .await
        .expect("failover");
        switched.store(true, Ordering::SeqCst);
        deployment
    };
    let (a, b, deployment) = tokio::join!(lane(0), lane(1), failover);

    let answers: Vec<(String, u16)> = a.into_iter().chain(b).collect();
    let acked: Vec<&String> = answers
        .iter()
        .filter(|(_, status)| (200..300).contains(status))
        .map(|(user, _)| user)
        .collect();
    let refused = answers.len() - acked.len();
    assert!(
        answers
            .iter()
            .all(|(_, status)| (200..300).contains(status) || *status == 503),
        "every answer is an acknowledgement or a 503 (Stripe redelivers): {answers:?}"
    );
    assert!(acked.len() >= 10, "{answers:?}");
    let refusals = refusals.into_inner().unwrap();
    let window = match (refusals.iter().min(), refusals.iter().max()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    eprintln!(
        "failover: {} webhooks, {} acknowledged, {refused} answered 503 over {window:?}",
        answers.len(),
        acked.len()
    );

    // Every acknowledged webhook is in force: on the new master, and through
    // the gateway.
    let master = deployment.master();
    for user in &acked {
        let stored = master.command(&["GET", &format!("e2e:{{u:{user}}}")]);
        assert!(
            stored.contains(&format!("cus_{user}")),
            "webhook for {user} was acknowledged but is not on the new master \
             ({} acknowledged, {refused} refused): {stored:?}",
            acked.len()
        );
        let resp = gw.send(banking(user)).await;
        assert!(
            is_forwarded(&resp),
            "{user} acknowledged but not granted: {} {}",
            resp.status,
            resp.text()
        );
    }
    until(
        &gw,
        DEADLINE,
        "readyz 200 after the failover",
        readyz,
        has_status(200),
    )
    .await;
}
