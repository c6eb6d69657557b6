//! Reading the public listener's certificate chain and key from their PEM
//! files into what rustls serves. Here, at the bottom, so that compiling the
//! config and reloading the certificate run the very same checks.
//!
//! Knows nothing about sockets or handshakes (that is `server::tls`).

use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::{ConfigError, TlsConfig};

/// Reads `cert_file` (the leaf first, then any intermediates) and `key_file`
/// (PKCS#8, PKCS#1 or SEC1) and checks that the key belongs to the leaf.
/// The error names the key of the file at fault.
pub(crate) fn certified_key(tls: &TlsConfig) -> Result<Arc<CertifiedKey>, ConfigError> {
    let error = |key: &str, message: String| ConfigError {
        key: format!("server.tls.{key}"),
        message,
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| error(key, format!("cannot read {}: {e}", path.display())))
    };
    let cert_pem = read("cert_file", &tls.cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            error(
                "cert_file",
                format!("{} is not valid PEM: {e}", tls.cert_file.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(error(
            "cert_file",
            format!(
                "{} holds no certificate (expected a PEM \"CERTIFICATE\" block)",
                tls.cert_file.display()
            ),
        ));
    }
    let key_pem = read("key_file", &tls.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "holds no private key (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)".to_string(),
            other => format!("is not a valid PEM private key: {other}"),
        };
        error("key_file", format!("{} {why}", tls.key_file.display()))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => error(
                "key_file",
                format!(
                    "{} does not match the certificate in {}",
                    tls.key_file.display(),
                    tls.cert_file.display()
                ),
            ),
            other => error(
                "key_file",
                format!("{} cannot be used: {other}", tls.key_file.display()),
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn compile(dir: &std::path::Path, extra: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:8000\"\n{extra}\n[jwt]\nsecret = \"a-test-secret-of-32-bytes-length\"\n"
        );
        Config::compile(&text, dir, &|_| None)
            .map_err(|e| e.0.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn edge_keys_default_off_and_compile_when_set() {
        let dir = tempfile::tempdir().unwrap();
        let plain = compile(dir.path(), "").unwrap();
        assert!(plain.server.tls.is_none());
        assert!(!plain.server.h2c);
        assert!(!plain.upstream.http2);

        let files = paygate_testkit::tls::generate(dir.path());
        let config = compile(
            dir.path(),
            "http2 = true\n[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"",
        )
        .unwrap();
        let tls = config.server.tls.unwrap();
        assert_eq!(
            tls.cert_file, files.server_cert,
            "relative to the config file"
        );
        assert_eq!(tls.key_file, files.server_key);
        assert!(config.upstream.http2);
        let h2c = compile(dir.path(), "[server]\nh2c = true").unwrap();
        assert!(h2c.server.h2c);
    }

    #[test]
    fn tls_mistakes_are_named_by_key() {
        let dir = tempfile::tempdir().unwrap();
        paygate_testkit::tls::generate(dir.path());
        let errors = |extra: &str| compile(dir.path(), extra).unwrap_err();

        let e = errors("[server.tls]\ncert_file = \"server.pem\"");
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.tls.key_file: is required")),
            "{e:?}"
        );
        let e = errors("[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"client.key\"");
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.tls.key_file:") && e.contains("does not match")),
            "{e:?}"
        );
        let e = errors("[server.tls]\ncert_file = \"missing.pem\"\nkey_file = \"server.key\"");
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.tls.cert_file: cannot read")),
            "{e:?}"
        );
        let e = errors("[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\nca_file = \"ca.pem\"");
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.tls.ca_file: unknown key")),
            "{e:?}"
        );
        let e = errors(
            "[server]\nh2c = true\n[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"",
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.h2c: is for a cleartext listener")),
            "{e:?}"
        );
        let e = errors("[server]\ntls = \"on\"\nh2c = \"yes\"");
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.tls: must be a table")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.starts_with("server.h2c: must be true or false")),
            "{e:?}"
        );
    }
}
