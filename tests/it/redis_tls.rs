//! The gateway on a Redis it reaches over TLS (`rediss://` with
//! `store.tls_ca_file`, and mutual TLS with `store.tls_client_cert_file` and
//! `store.tls_client_key_file`): ready, webhooks applied, paying users served;
//! and a CA that does not match keeps it unready with an error that names the
//! problem, never the URL's password; an unusable CA file stops `serve` at
//! start-up.

use paygate_testkit::tls::{self, TlsFiles};

use crate::support::jwt;
use crate::support::stripe::*;
use crate::support::*;

fn readyz() -> Request {
    get("/_paygate/readyz")
}

/// A gateway on `url` trusting `ca` (and presenting `identity`'s client
/// certificate, if any), with the standard Stripe settings.
async fn gateway(up: &Upstream, url: &str, ca: &TlsFiles, identity: Option<&TlsFiles>) -> Gateway {
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let mut config = with_redis_and_stripe(Config::new(&up.url()), url)
        .set_str("store.tls_ca_file", &path(&ca.ca_cert));
    if let Some(identity) = identity {
        config = config
            .set_str("store.tls_client_cert_file", &path(&identity.client_cert))
            .set_str("store.tls_client_key_file", &path(&identity.client_key));
    }
    Gateway::start(&config).await
}

fn checkout(user: &str) -> serde_json::Value {
    checkout_completed(
        &format!("evt_checkout_{user}"),
        user,
        &format!("cus_{user}"),
        &format!("sub_{user}"),
        jwt::now() - 3600,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_gateway_is_ready_applies_webhooks_and_serves_paying_users() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, false);
    let up = Upstream::start().await;
    let gw = gateway(&up, &redis.tls_url(), &files, None).await;

    until(&gw, DEADLINE, "readyz 200 over TLS", readyz, |r| {
        r.status == 200
    })
    .await;
    apply(&gw, &checkout("tia")).await;
    let got = forwarded(&gw, &up, banking("tia")).await;
    assert_eq!(got.header_all("x-user-id"), ["tia"]);
    // The state is in that Redis (read back over its plain port).
    assert!(!redis.keys("e2e:*").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_the_gateway_is_ready_and_applies_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, true);
    let up = Upstream::start().await;
    let gw = gateway(&up, &redis.tls_url(), &files, Some(&files)).await;

    until(&gw, DEADLINE, "readyz 200 over mutual TLS", readyz, |r| {
        r.status == 200
    })
    .await;
    apply(&gw, &checkout("mia")).await;
    forwarded(&gw, &up, banking("mia")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_the_server_keeps_the_gateway_unready() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(&dir.path().join("server"));
    let other = tls::generate(&dir.path().join("other"));
    let redis = tls::start_redis(&files, false);
    let up = Upstream::start().await;
    let url = redis
        .tls_url()
        .replace("rediss://", "rediss://default:s3cret-pw@");
    let gw = gateway(&up, &url, &other, None).await;

    let ready = gw.send(readyz()).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let resp = deliver(&gw, &checkout("uma")).await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    let log = gw.log();
    assert!(
        log.contains("certificate is not trusted") && log.contains("store.tls_ca_file"),
        "the log names the problem:\n{log}"
    );
    assert!(!log.contains("s3cret-pw"), "the password leaked:\n{log}");
    assert!(!ready.text().contains("s3cret-pw"));
    assert!(!resp.text().contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_without_a_certificate_stops_serve_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let up = Upstream::start().await;
    let config = with_redis_and_stripe(
        Config::new(&up.url()),
        "rediss://default:s3cret-pw@127.0.0.1:1/0",
    )
    .set_str("store.tls_ca_file", not_pem.to_str().unwrap());
    let Err(failure) = Gateway::try_start(&config).await else {
        panic!("paygate started with a CA file that holds no certificate");
    };
    assert!(
        failure.contains("store.tls_ca_file: no PEM certificate"),
        "{failure}"
    );
    assert!(!failure.contains("s3cret-pw"), "{failure}");
}
