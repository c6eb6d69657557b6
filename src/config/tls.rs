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
