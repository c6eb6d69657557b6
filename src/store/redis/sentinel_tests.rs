//! The Redis store through Sentinel and next to replicas, against real
//! `redis-server`s: the behaviour suite (also with the master on TLS),
//! following a forced failover (commands and pub/sub), readiness that means
//! writable, and `WAIT` before an acknowledgement. Waits poll with a deadline;
//! nothing sleeps to synchronize.

use std::time::Duration;

use paygate_testkit::{tls, TestSentinel, DEADLINE};
use tokio::time::Instant;

use super::*;
use crate::store::EntitlementStore;

fn sentinel_store(deployment: &TestSentinel, acks: u32) -> RedisStore {
    RedisStore::new_sentinel(
        &deployment.sentinel_urls(),
        deployment.master_name(),
        "t:",
        acks,
    )
    .unwrap()
}

/// `SENTINEL FAILOVER`, run off the async workers (the testkit API blocks).
fn failover(deployment: &mut TestSentinel) -> u16 {
    tokio::task::block_in_place(|| deployment.failover())
}

fn grant(current: Option<Entitlement>) -> Option<Entitlement> {
    let mut next = current.unwrap_or_default();
    next.customers = vec!["cus_x".into()];
    Some(next)
}

/// Polls `check` until it is true, failing the test after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        // Polling interval, not a synchronization.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_store_behaviour_suite_through_sentinel() {
    let deployment = TestSentinel::start();
    let store = sentinel_store(&deployment, 1);
    crate::store::behaviour::run_all(&store).await;
    // The writes went to the master the sentinel named.
    assert!(!deployment.master().keys("t:*").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_masters_over_tls_pass_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let deployment = TestSentinel::start_tls(&files);
    // The base URL gives only the scheme (its address is never dialled); the
    // master's address is the TLS port the sentinel names.
    let topology = conn::connect(&ConnectOptions {
        url: "rediss://127.0.0.1:1/0".into(),
        tls_ca_file: Some(files.ca_cert.clone()),
        sentinel: Some(SentinelOptions {
            urls: deployment.sentinel_urls(),
            master: deployment.master_name().into(),
        }),
        ..ConnectOptions::default()
    })
    .unwrap();
    let settings = Settings {
        min_replica_acks: 1,
        replica_ack_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let store = RedisStore::with(topology, "t:", settings);
    crate::store::behaviour::run_all(&store).await;
    assert!(!deployment.master().keys("t:*").is_empty());
    // The port the sentinel names serves only TLS (a plain client is refused
    // there), so the suite ran over TLS.
    let plain = RedisStore::new(
        &deployment
            .master()
            .tls_url()
            .replace("rediss://", "redis://"),
        "t:",
    )
    .unwrap();
    assert!(plain.ping().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_master_through_a_failover() {
    let mut deployment = TestSentinel::start();
    let store = sentinel_store(&deployment, 1);
    let epoch = store.write_epoch();
    store.update("before", &grant).await.unwrap();
    store.confirm_writes(epoch).await.unwrap();
    store.ping().await.unwrap();

    let new_master = failover(&mut deployment);
    assert_eq!(deployment.master().port(), new_master);

    // Writes reach the new master without a restart, and readiness says so.
    eventually("a write succeeds after the failover", || async {
        store.update("after", &grant).await.is_ok()
    })
    .await;
    store.ping().await.unwrap();
    assert!(deployment
        .master()
        .command(&["GET", "t:{u:after}"])
        .contains("cus_x"));
    assert!(
        deployment
            .master()
            .command(&["GET", "t:{u:before}"])
            .contains("cus_x"),
        "a write confirmed by WAIT survives the failover"
    );
    assert_ne!(
        store.write_epoch(),
        epoch,
        "the switch moved the write epoch"
    );
    // Writes that straddled the switch are never confirmed.
    assert!(store.confirm_writes(epoch).await.is_err());
    let now = store.write_epoch();
    eventually("WAIT confirms on the new master", || async {
        store.confirm_writes(now).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_follow_the_master() {
    // Three sentinels (quorum 2): every one of them is subscribed to.
    let mut deployment = TestSentinel::start_with_sentinels(3);
    let store = sentinel_store(&deployment, 0);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    store.spawn_invalidation_listener(move |change| {
        let _ = tx.send(change);
    });
    assert_eq!(rx.recv().await, Some(Invalidation::All));
    failover(&mut deployment);
    // The switch is noticed (by `+switch-master` or a failed command) and the
    // listener resubscribes on the new master, announcing a full invalidation.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let _ = store.ping().await;
        if let Ok(Some(change)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
        {
            assert_eq!(change, Invalidation::All);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no resubscription after the failover"
        );
    }
    store.publish_invalidation(&["u1".into()]).await.unwrap();
    let got = tokio::time::timeout(DEADLINE, async {
        loop {
            match rx.recv().await {
                Some(Invalidation::User(u)) => return u,
                Some(Invalidation::All) => continue,
                None => panic!("listener ended"),
            }
        }
    })
    .await
    .expect("the publication on the new master reaches the listener");
    assert_eq!(got, "u1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_on_a_writable_master_and_wait_counts_replicas() {
    let deployment = TestSentinel::start();
    // Standalone, pointed at the replica: reachable but not writable.
    let on_replica = RedisStore::new(&deployment.replica().url(), "t:").unwrap();
    let refused = on_replica.ping().await.unwrap_err();
    assert!(refused.to_string().contains("READONLY") || refused.to_string().contains("replica"));
    let on_master = RedisStore::new(&deployment.master().url(), "t:").unwrap();
    on_master.ping().await.unwrap();

    // One replica: WAIT 1 confirms, WAIT 2 cannot.
    let one = RedisStore::new_with_acks(&deployment.master().url(), "t:", 1).unwrap();
    one.update("u", &grant).await.unwrap();
    one.confirm_writes(one.write_epoch()).await.unwrap();
    let two = RedisStore::new_with_acks(&deployment.master().url(), "t:", 2).unwrap();
    let error = two.confirm_writes(two.write_epoch()).await.unwrap_err();
    assert!(error.to_string().contains("1 of 2 replicas"), "{error}");

    // A master short of `min-replicas-to-write` is not ready either.
    deployment
        .master()
        .command(&["CONFIG", "SET", "min-replicas-to-write", "2"]);
    assert!(on_master.ping().await.is_err());
    deployment
        .master()
        .command(&["CONFIG", "SET", "min-replicas-to-write", "0"]);
    on_master.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sentinels_are_an_error_not_a_hang() {
    let urls = vec![format!(
        "redis://127.0.0.1:{}",
        paygate_testkit::free_port()
    )];
    let store = RedisStore::new_sentinel(&urls, "nobody", "t:", 0).unwrap();
    let started = Instant::now();
    assert!(store.ping().await.is_err());
    assert!(store.load("u").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
