//! Micro-benchmarks of the per-request hot path: path normalize + route match,
//! token check, cached entitlement lookup, decision, and all of them together.
//!
//! Run: `cargo bench --features bench --bench hot_path`

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::Method;
use paygate::bench::{
    decide, mint_token, normalize, AccessSummary, Authenticator, Config, Entitlement,
    EntitlementCache, EntitlementStore, MemoryStore, OutboundClient, Subscription,
    SubscriptionStatus,
};

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:1"
[jwt]
secret = "bench-secret-0123456789abcdef0123"
[[routes]]
prefix = "/health"
policy = "public"
[[routes]]
prefix = "/api/subscriptions"
policy = "authenticated"
[[routes]]
prefix = "/api/banking"
policy = "subscription"
[[routes]]
prefix = "/api/reports/export"
policy = "subscription"
features = ["export"]
[plans."price_pro"]
features = ["export"]
"#;

fn entitlement() -> Entitlement {
    Entitlement {
        customers: vec!["cus_1".into()],
        subscriptions: vec![Subscription {
            id: "sub_1".into(),
            customer: "cus_1".into(),
            status: SubscriptionStatus::Active,
            created: 1_700_000_000,
            current_period_end: Some(2_000_000_000),
            trial_start: None,
            trial_end: None,
            cancel_at_period_end: false,
            price_ids: vec!["price_pro".into()],
            product_ids: vec!["prod_1".into()],
            past_due_since: None,
        }],
        ..Default::default()
    }
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = Config::compile(CONFIG, Path::new("."), &|_| None).unwrap();
    let auth = runtime
        .block_on(Authenticator::new(
            config.jwt.clone(),
            OutboundClient::new(Duration::from_secs(1), &Default::default()).unwrap(),
        ))
        .unwrap();
    let auth = Arc::new(auth);
    let token = mint_token(&config.jwt, "user-42", Duration::from_secs(3600)).unwrap();
    let store = Arc::new(MemoryStore::new());
    runtime
        .block_on(store.update("user-42", &|_| Some(entitlement())))
        .unwrap();
    let cache = EntitlementCache::new(
        store,
        Duration::from_secs(3600),
        10_000,
        None,
        config.access.rules.clone(),
    );
    runtime.block_on(cache.get("user-42")).unwrap();
    let rules = &config.access.rules;
    let now = 1_750_000_000;

    c.bench_function("path_normalize_and_route_match", |b| {
        b.iter(|| {
            let path = normalize(black_box("/api/reports/export/2024")).unwrap();
            black_box(config.routes.lookup(&Method::POST, &path).policy);
        })
    });
    c.bench_function("path_normalize_hostile", |b| {
        b.iter(|| {
            black_box(
                normalize(black_box("/api/./x/%62anking//a/../reports"))
                    .unwrap()
                    .len(),
            )
        })
    });
    c.bench_function("entitlement_cached_lookup", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cache.get(black_box("user-42")).await.unwrap()) })
    });
    let ent = entitlement();
    let required = vec!["export".to_string()];
    // From the stored record (what a cache load does, plus the summary it keeps)
    // and from the cached summary (what a request does).
    c.bench_function("decision", |b| {
        b.iter(|| black_box(decide(Some(black_box(&ent)), rules, &required, now)))
    });
    c.bench_function("decision_summarize", |b| {
        b.iter(|| black_box(AccessSummary::new(Some(black_box(&ent)), rules, now)))
    });
    let summary = AccessSummary::new(Some(&ent), rules, now);
    c.bench_function("decision_cached_summary", |b| {
        b.iter(|| black_box(black_box(&summary).check(&required).is_ok()))
    });
    c.bench_function("hot_path_total", |b| {
        b.to_async(&runtime).iter(|| async {
            let path = normalize(black_box("/api/reports/export")).unwrap();
            let matched = config.routes.lookup(&Method::POST, &path);
            let identity = auth.verify(black_box(&token)).await.unwrap();
            let found = cache.get(&identity.user_id).await.unwrap();
            black_box(found.check(matched.features).is_ok())
        })
    });
}

/// A JWT signed with `alg` over `{sub, exp}` using a PEM private key from benches/keys.
fn mint_asymmetric(alg: jsonwebtoken::Algorithm, private_pem: &[u8]) -> String {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => {
            jsonwebtoken::EncodingKey::from_rsa_pem(private_pem).unwrap()
        }
        _ => jsonwebtoken::EncodingKey::from_ec_pem(private_pem).unwrap(),
    };
    let claims = serde_json::json!({"sub": "user-42", "exp": 4_000_000_000u64});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
}

/// Token verification per algorithm, with the verified-token cache (a repeat
/// token, the common case) and without it (the first request of a token).
fn token_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config::compile(CONFIG, Path::new("."), &|_| None).unwrap();
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/keys");
    let hs = config.jwt.clone();
    let hs_token = mint_token(&hs, "user-42", Duration::from_secs(3600)).unwrap();
    let mut cases = vec![("hs256", hs, hs_token)];
    for (name, alg, file) in [
        ("rs256", jsonwebtoken::Algorithm::RS256, "rs256"),
        ("es256", jsonwebtoken::Algorithm::ES256, "es256"),
    ] {
        let mut settings = config.jwt.clone();
        settings.algorithms = vec![alg];
        settings.secret = None;
        settings.public_key_pem =
            Some(std::fs::read(keys.join(format!("{file}.pub.pem"))).unwrap());
        let token = mint_asymmetric(
            alg,
            &std::fs::read(keys.join(format!("{file}.key.pem"))).unwrap(),
        );
        cases.push((name, settings, token));
    }
    for (name, settings, token) in cases {
        let auth = runtime
            .block_on(Authenticator::new(
                settings,
                OutboundClient::new(Duration::from_secs(1), &Default::default()).unwrap(),
            ))
            .unwrap();
        runtime.block_on(auth.verify(&token)).unwrap();
        c.bench_function(&format!("jwt_{name}_uncached"), |b| {
            b.to_async(&runtime).iter(|| async {
                black_box(auth.verify_uncached(black_box(&token)).await.unwrap())
            })
        });
        c.bench_function(&format!("jwt_{name}_cached"), |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(auth.verify(black_box(&token)).await.unwrap()) })
        });
    }
}

/// Webhook signature check + event parse for a real-size (basil-shape) payload.
fn webhook(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "tests/fixtures/stripe/constructed.event.customer.subscription.updated.basil-shape.json",
    );
    let body = std::fs::read(path).unwrap();
    let secrets = vec!["whsec_bench".to_string()];
    let t = 1_700_000_000;
    let header = paygate::bench::sign(&body, &secrets[0], t);
    let keys = vec!["user_id".to_string()];
    c.bench_function(&format!("webhook_verify_and_parse_{}b", body.len()), |b| {
        b.iter(|| {
            paygate::bench::verify(Some(black_box(&header)), black_box(&body), &secrets, 300, t)
                .unwrap();
            black_box(paygate::bench::parse_event(black_box(&body), &keys).unwrap())
        })
    });
}

criterion_group!(benches, hot_path, token_check, webhook);
criterion_main!(benches);
