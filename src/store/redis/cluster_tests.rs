//! The Redis store on a real Redis Cluster ([`TestCluster`]): the whole store
//! behaviour suite, records spread over several masters, readiness (failing
//! with a dead master, recovering by itself), and a user's master failed over
//! (coordinated, then by a crash) while updates go on.
//!
//! Each test owns its cluster (3 masters; 3 more nodes as replicas for the
//! failovers); they run in parallel, so the wall time is about one cluster
//! start plus the failovers: 5 to 8 s.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use paygate_testkit::{TestCluster, DEADLINE};

use super::*;
use crate::store::behaviour;

/// A user whose record lives on each master of `cluster` (by index).
fn users_on_every_master(cluster: &TestCluster, store: &RedisStore) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for n in 0.. {
        let user = format!("spread{n}");
        let master = cluster.master_of(&store.user_key(&user));
        if !found.iter().any(|(m, _)| *m == master) {
            found.push((master, user));
        }
        if found.len() == 3 {
            return found;
        }
        assert!(n < 1000, "3 masters never showed up: {found:?}");
    }
    unreachable!()
}

fn delivery(event_id: &str) -> Delivery {
    Delivery {
        event_id: event_id.into(),
        event_type: "t".into(),
        result: "applied".into(),
        at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_store_behaviour_suite_on_three_masters() {
    let cluster = TestCluster::start(3, 0);
    let store = RedisStore::new_cluster(&cluster.seed_url(), "t:").unwrap();
    behaviour::run_all(&store).await;

    // Users on different masters: each update, its invalidation, and the
    // completion of an event naming all of them (several slots) succeed.
    let users = users_on_every_master(&cluster, &store);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    store.spawn_invalidation_listener(move |change| {
        let _ = tx.send(change);
    });
    assert_eq!(rx.recv().await, Some(Invalidation::All));
    let names: Vec<String> = users.iter().map(|(_, u)| u.clone()).collect();
    for user in &names {
        let ent = Entitlement {
            customers: vec![format!("cus_{user}")],
            ..Default::default()
        };
        store.update(user, &|_| Some(ent.clone())).await.unwrap();
        assert_eq!(store.load(user).await.unwrap(), Some(ent.clone()));
    }
    store
        .complete_event("evt_spread", &names, &delivery("evt_spread"))
        .await
        .unwrap();
    assert!(store.event_seen("evt_spread").await.unwrap());
    assert_eq!(
        store.recent_deliveries(1).await.unwrap(),
        vec![delivery("evt_spread")]
    );
    for user in &names {
        let heard = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap();
        assert_eq!(heard, Some(Invalidation::User(user.clone())));
    }

    // Readiness means the cluster takes writes: a master without a replica
    // dies, the cluster reports a failure, and readiness fails with it.
    store.ping().await.unwrap();
    let (dead, _) = users[1];
    let (cluster, ()) = blocking(cluster, move |c| c.stop(dead)).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.ping().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ping still succeeds with a master's slots unserved"
        );
        // Polling interval, not a synchronization.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A store seeded with the dead node starts anyway (it connects lazily)
    // and fails; once the node is back, both stores recover by themselves.
    let late = RedisStore::new_cluster(&cluster.node_url(dead), "t:").unwrap();
    assert!(late.ping().await.is_err());
    let (_cluster, ()) = blocking(cluster, move |c| c.restart(dead)).await;
    for store in [&store, &late] {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while store.ping().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store does not recover when the cluster is whole again"
            );
            // Polling interval, not a synchronization.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store
            .update("after", &|_| Some(Entitlement::default()))
            .await
            .unwrap();
    }
}

/// Keeps adding customers to `user` (and completing an event for each) until
/// `stop`; returns the customers whose update was acknowledged and how many
/// operations failed.
fn spawn_writer(
    store: Arc<RedisStore>,
    user: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let (mut acked, mut failed) = (Vec::new(), 0usize);
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let customer = format!("cus_{n}");
            let add = |cur: Option<Entitlement>| {
                let mut e = cur.unwrap_or_default();
                if !e.customers.contains(&customer) {
                    e.customers.push(customer.clone());
                }
                Some(e)
            };
            match store.update(user, &add).await {
                Ok(_) => acked.push(customer),
                Err(_) => failed += 1,
            }
            let event = format!("evt_{user}_{n}");
            let users = [user.to_owned()];
            if store
                .complete_event(&event, &users, &delivery(&event))
                .await
                .is_err()
            {
                failed += 1;
            }
            n += 1;
        }
        (acked, failed)
    })
}

/// Waits until `user` has `count` customers (the writer got that far).
async fn until_customers(store: &RedisStore, user: &str, count: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store
        .load(user)
        .await
        .ok()
        .flatten()
        .is_none_or(|e| e.customers.len() < count)
    {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        // Polling interval, not a synchronization.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn customers(store: &RedisStore, user: &str) -> BTreeSet<String> {
    let ent = store.load(user).await.unwrap().unwrap_or_default();
    ent.customers.into_iter().collect()
}

/// Runs `f` on the cluster off the async threads (its waits block) and
/// hands the cluster back.
async fn blocking<T: Send + 'static>(
    cluster: TestCluster,
    f: impl FnOnce(&mut TestCluster) -> T + Send + 'static,
) -> (TestCluster, T) {
    tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let out = f(&mut cluster);
        (cluster, out)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_of_a_users_master_are_followed() {
    const USER: &str = "failover-user";
    let cluster = TestCluster::start(3, 1);
    let key = RedisStore::new_cluster(&cluster.seed_url(), "f:")
        .unwrap()
        .user_key(USER);
    let master = cluster.master_of(&key);
    let replica = cluster.replica_of(master);
    // Seeded with the node that will die last, so the invalidation listener
    // (subscribed on the seed) has to move to another node.
    let store = Arc::new(RedisStore::new_cluster(&cluster.node(replica).url(), "f:").unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    store.spawn_invalidation_listener(move |change| {
        let _ = tx.send(change);
    });
    assert_eq!(rx.recv().await, Some(Invalidation::All));

    // 1. A coordinated failover (`CLUSTER FAILOVER`) while a writer goes on:
    //    the old master answers MOVED, redis-rs follows it and re-reads the
    //    slot map; nothing acknowledged is lost and nothing fails.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(store.clone(), USER, stop.clone());
    until_customers(&store, USER, 20, "no writes got through").await;
    let (cluster, promoted) = blocking(cluster, move |c| c.failover(master)).await;
    assert_eq!(promoted, replica);
    assert_eq!(cluster.master_of(&key), replica);
    let before = customers(&store, USER).await.len();
    until_customers(&store, USER, before + 20, "writes stop after the failover").await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();
    let stored = customers(&store, USER).await;
    let lost: Vec<&String> = acked.iter().filter(|c| !stored.contains(*c)).collect();
    assert!(lost.is_empty(), "acknowledged updates lost: {lost:?}");
    assert_eq!(failed, 0, "operations failed during a coordinated failover");

    // 2. The new master (also the seed) crashes: its replica takes over after
    //    the node timeout. Operations fail while the slot has no master, then
    //    all succeed again once the client has the new slot map.
    while rx.try_recv().is_ok() {}
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(store.clone(), USER, stop.clone());
    let (cluster, promoted) = blocking(cluster, move |c| c.kill(replica)).await;
    assert_eq!(promoted, master);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.update(USER, &|c| c).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "updates never succeed after the master died"
        );
        // Polling interval, not a synchronization.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = customers(&store, USER).await.len();
    until_customers(&store, USER, before + 10, "writes stop after the crash").await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    for n in 0..10 {
        let event = format!("evt_after_{n}");
        let users = [USER.to_owned()];
        store.update(USER, &|c| c).await.unwrap();
        store
            .complete_event(&event, &users, &delivery(&event))
            .await
            .unwrap();
        assert!(store.event_seen(&event).await.unwrap());
    }
    store.ping().await.unwrap();

    // The listener lost its node (the seed) and resubscribed on another: it
    // announces a full invalidation, then hears the next change again.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let heard = tokio::time::timeout_at(deadline, rx.recv()).await;
        match heard.expect("the listener never resubscribed") {
            Some(Invalidation::All) => break,
            Some(Invalidation::User(_)) => continue,
            None => panic!("the listener stopped"),
        }
    }
    store.publish_invalidation(&["after".into()]).await.unwrap();
    let heard = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(Invalidation::User(u)) = rx.recv().await {
                if u == "after" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no invalidation heard after the seed died");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_an_error_not_a_hang() {
    let port = paygate_testkit::free_port();
    let store = RedisStore::new_cluster(&format!("redis://127.0.0.1:{port}/0"), "u:").unwrap();
    let started = tokio::time::Instant::now();
    assert!(store.load("u").await.is_err());
    assert!(store.ping().await.is_err());
    assert!(store.update("u", &|c| c).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "each operation is bounded: {:?}",
        started.elapsed()
    );
}
