//! The Redis store over TLS (`rediss://`): server-authenticated and mutual TLS
//! against a real `redis-server`, and the misconfigurations that must fail
//! fast with an error naming the problem (never a hang, never the password).
//! Only the store's side is tested here; the binary's is in tests/it.

use std::path::Path;
use std::time::{Duration, Instant};

use paygate_testkit::tls::{self, TlsFiles};

use super::conn::{self, ConnectOptions};
use super::{RedisStore, Settings};
use crate::store::{EntitlementStore, Invalidation, StoreError};

/// Far above a failed handshake (about a second with the connection
/// manager's retries), far below "hangs".
const FAILS_WITHIN: Duration = Duration::from_secs(6);

fn options(url: &str, ca: Option<&Path>, identity: Option<&TlsFiles>) -> ConnectOptions {
    ConnectOptions {
        url: url.to_owned(),
        tls_ca_file: ca.map(Path::to_path_buf),
        tls_client_cert_file: identity.map(|f| f.client_cert.clone()),
        tls_client_key_file: identity.map(|f| f.client_key.clone()),
        ..ConnectOptions::default()
    }
}

fn store(url: &str, ca: Option<&Path>, identity: Option<&TlsFiles>) -> RedisStore {
    let topology = conn::connect(&options(url, ca, identity)).expect("the store opens");
    RedisStore::with(topology, "t:", Settings::default())
}

/// Pings `store`, which must fail within [`FAILS_WITHIN`]; returns the error.
async fn refused(store: &RedisStore) -> String {
    let started = Instant::now();
    let result = store.ping().await;
    assert!(
        started.elapsed() < FAILS_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected the store to be unavailable, got {result:?}");
    };
    // A write (a webhook) fails the same way.
    assert!(store.update("u", &|e| e).await.is_err());
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_store_behaviour_suite_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, false);
    let store = store(&redis.tls_url(), Some(&files.ca_cert), None);
    crate::store::behaviour::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_store_behaviour_suite_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, true);
    let store = store(&redis.tls_url(), Some(&files.ca_cert), Some(&files));
    crate::store::behaviour::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_travel_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, true);
    let store = store(&redis.tls_url(), Some(&files.ca_cert), Some(&files));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    store.spawn_invalidation_listener(move |change| {
        let _ = tx.send(change);
    });
    assert_eq!(rx.recv().await, Some(Invalidation::All));
    store.publish_invalidation(&["u1".into()]).await.unwrap();
    assert_eq!(rx.recv().await, Some(Invalidation::User("u1".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(&dir.path().join("server"));
    let other = tls::generate(&dir.path().join("other"));
    let redis = tls::start_redis(&files, false);
    let url = redis
        .tls_url()
        .replace("rediss://", "rediss://default:s3cret-pw@");
    let message = refused(&store(&url, Some(&other.ca_cert), None)).await;
    assert!(message.contains("not trusted"), "{message}");
    assert!(message.contains("store.tls_ca_file"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused_when_the_server_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, true);
    let message = refused(&store(&redis.tls_url(), Some(&files.ca_cert), None)).await;
    assert!(message.contains("client certificate"), "{message}");
    assert!(message.contains("store.tls_client_cert_file"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(&dir.path().join("server"));
    let other = tls::generate(&dir.path().join("other"));
    let redis = tls::start_redis(&files, true);
    let message = refused(&store(&redis.tls_url(), Some(&files.ca_cert), Some(&other))).await;
    assert!(message.contains("client certificate"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_url_against_the_tls_port_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let redis = tls::start_redis(&files, false);
    let plain = redis
        .tls_url()
        .replace("rediss://", "redis://default:s3cret-pw@");
    let message = refused(&store(&plain, None, None)).await;
    assert!(message.contains("rediss://"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
}

#[test]
fn unusable_tls_files_fail_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let files = tls::generate(dir.path());
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let url = "rediss://default:s3cret-pw@127.0.0.1:1/0";
    let error = |options: ConnectOptions| match conn::client(url, &options) {
        Ok(_) => panic!("{options:?} was accepted"),
        Err(e) => e.to_string(),
    };

    let message = error(options(url, Some(&not_pem), None));
    assert!(message.contains("store.tls_ca_file"), "{message}");
    let message = error(options(url, Some(&dir.path().join("missing.pem")), None));
    assert!(message.contains("store.tls_ca_file"), "{message}");
    let message = error(ConnectOptions {
        tls_client_key_file: Some(files.client_cert.clone()),
        ..options(url, None, Some(&files))
    });
    assert!(message.contains("store.tls_client_key_file"), "{message}");
    let message = error(ConnectOptions {
        tls_client_key_file: None,
        ..options(url, None, Some(&files))
    });
    assert!(message.contains("both"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");

    // A plain URL ignores the TLS settings; a good set builds a client.
    assert!(conn::client("redis://127.0.0.1:1/0", &options(url, Some(&not_pem), None)).is_ok());
    assert!(conn::client(url, &options(url, Some(&files.ca_cert), Some(&files))).is_ok());
}
