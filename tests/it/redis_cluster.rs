//! The Redis store on a Redis Cluster (`store.redis_mode = "cluster"`), end to
//! end: two gateways seeded with different nodes of a 3-master cluster.
//!
//! `readyz` answers 200, webhooks for users whose records live on different
//! masters are applied (no MOVED, no cross-slot error), paying users are let
//! through, and a webhook applied by one gateway changes the decision on the
//! other within a second (the invalidation `PUBLISH` reaches a subscriber on
//! another node). One cluster for the whole test keeps the wall time small;
//! failovers are covered by the store's own cluster tests.

use paygate_testkit::TestCluster;

use crate::support::jwt;
use crate::support::stripe::*;
use crate::support::*;

/// A gateway in cluster mode, seeded with `seed`, that caches for a minute so
/// only an invalidation can explain a change within a second.
async fn gateway_on(seed: &str, up: &Upstream) -> Gateway {
    let config = with_redis_and_stripe(Config::new(&up.url()), seed)
        .set_str("store.redis_mode", "cluster")
        .set_str("store.cache_ttl", "60s");
    let gw = Gateway::start(&config).await;
    until(
        &gw,
        DEADLINE,
        "readyz 200 on a healthy cluster",
        || get("/_paygate/readyz"),
        |r| r.status == 200,
    )
    .await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_a_cluster_apply_webhooks_on_every_master_and_invalidate_each_other() {
    let cluster = TestCluster::start(3, 0);
    let urls = cluster.urls();
    let up = Upstream::start().await;
    let a = gateway_on(&urls[0], &up).await;
    let b = gateway_on(&urls[1], &up).await;
    let t = jwt::now() - 3600;

    // One user per master (the store's key: `{prefix}{u:<user>}`).
    let mut users: Vec<(usize, String)> = Vec::new();
    for n in 0..1000 {
        let user = format!("cl{n}");
        let master = cluster.master_of(&format!("e2e:{{u:{user}}}"));
        if !users.iter().any(|(m, _)| *m == master) {
            users.push((master, user));
        }
        if users.len() == 3 {
            break;
        }
    }
    assert_eq!(users.len(), 3, "3 masters: {users:?}");

    // B caches every user as never subscribed, for a minute.
    for (_, user) in &users {
        assert_error(&b.send(banking(user)).await, 402, "CHECKOUT_REQUIRED");
    }
    // A applies their checkouts: each record on its own master.
    for (_, user) in &users {
        let (cus, sub) = (format!("cus_{user}"), format!("sub_{user}"));
        let event = checkout_completed(&format!("evt_cl_{user}"), user, &cus, &sub, t);
        apply(&a, &event).await;
    }
    for (master, user) in &users {
        let key = format!("e2e:{{u:{user}}}");
        assert_eq!(
            cluster.node(*master).keys(&key),
            vec![key.clone()],
            "{user}'s record is on master {master}"
        );
        // A paying user is let through on A, and on B within a second:
        // B heard A's invalidation through another node.
        until(
            &b,
            VISIBLE_WITHIN,
            &format!("B grants {user} after A applied the checkout"),
            || banking(user),
            is_forwarded,
        )
        .await;
        forwarded(&a, &up, banking(user)).await;
    }

    // The other way round: B cancels one, A (holding `active` in cache) refuses.
    let (_, user) = &users[2];
    let (cus, sub) = (format!("cus_{user}"), format!("sub_{user}"));
    apply(
        &b,
        &subscription_deleted(&format!("evt_cl_del_{user}"), &sub, &cus, t + 100),
    )
    .await;
    until(
        &a,
        VISIBLE_WITHIN,
        "A refuses after B applied the deletion",
        || banking(user),
        is_denied(402, "SUBSCRIPTION_REQUIRED"),
    )
    .await;

    // A redelivery is recognised on either gateway (the event id key is on
    // its own slot) and both stay ready.
    let again = deliver(
        &a,
        &subscription_deleted(&format!("evt_cl_del_{user}"), &sub, &cus, t + 100),
    )
    .await;
    assert_ack(&again, "duplicate");
    for gw in [&a, &b] {
        let ready = gw.send(get("/_paygate/readyz")).await;
        assert_eq!(ready.status, 200, "{:?}", ready.text());
    }
}
