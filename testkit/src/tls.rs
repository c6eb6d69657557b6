//! Throwaway TLS material for tests: a CA, a server certificate for
//! `127.0.0.1`/`localhost` and a client certificate, written as PEM files, and
//! a [`TestRedis`] that serves TLS with them.
//!
//! Everything is generated fresh per call (nothing checked in can expire), and
//! the keys are test-only: this must never be used to make real certificates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::redis::{free_port, TestRedis};

/// Numbers the CAs this process generates, to give each its own name.
static CA_SERIAL: AtomicU64 = AtomicU64::new(0);

/// The PEM files [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate that signed both leaf certificates.
    pub ca_cert: PathBuf,
    /// Server certificate (SANs `127.0.0.1`, `localhost`) and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (for mutual TLS) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Generates a fresh CA with a server and a client certificate and writes them
/// into `dir` as `ca.pem`, `server.pem`, `server.key`, `client.pem`,
/// `client.key`. Two calls give two unrelated CAs (for "wrong CA" tests).
pub fn generate(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).expect("create the TLS dir");
    let ca = {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A distinct name per CA, as real CAs have: a verifier then sees a
        // certificate from another test CA as "unknown CA", not as a bad
        // signature from a CA it knows.
        let serial = CA_SERIAL.fetch_add(1, Ordering::Relaxed);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("paygate test CA {}-{serial}", std::process::id()),
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-sign the CA")
    };
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &ca).expect("sign the leaf");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        Vec::new(),
        "paygate test client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    };
    TlsFiles {
        ca_cert: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

/// Starts a `redis-server` that also serves TLS on a free port (see
/// [`TestRedis::tls_url`]) with `files`; `require_client_cert` turns on mutual
/// TLS (`--tls-auth-clients yes`). The plain port stays on for readiness.
pub fn start_redis(files: &TlsFiles, require_client_cert: bool) -> TestRedis {
    let port = free_port().to_string();
    let path = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    let (cert, key, ca) = (
        path(&files.server_cert),
        path(&files.server_key),
        path(&files.ca_cert),
    );
    TestRedis::start_with(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        if require_client_cert { "yes" } else { "no" },
    ])
}
