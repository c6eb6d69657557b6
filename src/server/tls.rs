//! TLS on the public listener: the rustls server configuration (TLS 1.2 and
//! 1.3, the `ring` provider, ALPN `h2` then `http/1.1`) and the certificate
//! behind it, swappable while running.
//!
//! The certificate sits behind a resolver that hands each handshake the
//! current one, so a reload changes what new handshakes see while existing
//! connections keep their session. Reading and checking the PEM files is
//! `config::tls`'s job (the same check `check-config` runs).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::tls::certified_key;
use crate::config::TlsConfig;

/// The ALPN protocol ids offered, in order of preference.
pub(crate) const ALPN_H2: &[u8] = b"h2";
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The listener's TLS: what accepts handshakes and the certificate they get.
/// Public with [`run`], which takes it; `reload` swaps the certificate.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<CurrentCert>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// Hands every handshake the certificate loaded last.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl Tls {
    /// Reads the certificate chain and key; the error names the config key at fault.
    pub fn load(config: &TlsConfig) -> Result<Arc<Tls>, String> {
        let key = certified_key(config).map_err(|e| e.to_string())?;
        let current = Arc::new(CurrentCert(ArcSwap::new(key)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("server.tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        Ok(Arc::new(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
        }))
    }

    /// Reads the files again and, if they are good, serves them to every new
    /// handshake; on an error the current certificate stays.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), String> {
        let key = certified_key(config).map_err(|e| e.to_string())?;
        self.current.0.store(key);
        Ok(())
    }

    pub(super) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn files(dir: &std::path::Path) -> (TlsConfig, Vec<u8>) {
        let generated = paygate_testkit::tls::generate(dir);
        let config = TlsConfig {
            cert_file: generated.server_cert,
            key_file: generated.server_key,
        };
        (config, std::fs::read(generated.ca_cert).unwrap())
    }

    /// Handshakes with `tls` trusting `ca_pem`; returns the leaf presented and
    /// the ALPN protocol chosen.
    async fn handshake(tls: &Tls, ca_pem: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
        let (client_side, server_side) = tokio::io::duplex(64 * 1024);
        let acceptor = tls.acceptor().clone();
        let server = tokio::spawn(async move {
            if let Ok(mut stream) = acceptor.accept(server_side).await {
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte).await;
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("localhost").unwrap();
        let result = connector.connect(name, client_side).await;
        let out = match result {
            Ok(mut stream) => {
                let (_, session) = stream.get_ref();
                let leaf = session.peer_certificates().unwrap()[0].to_vec();
                let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                let _ = stream.write_all(b"x").await;
                Ok((leaf, alpn))
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = server.await;
        out
    }

    #[tokio::test]
    async fn reload_serves_the_new_certificate_to_new_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let (first, first_ca) = files(&dir.path().join("a"));
        let (second, second_ca) = files(&dir.path().join("b"));
        let tls = Tls::load(&first).unwrap();

        let (leaf, alpn) = handshake(&tls, &first_ca).await.unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "h2 is preferred");
        let first_leaf = CertificateDer::pem_file_iter(&first.cert_file)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(leaf, first_leaf.to_vec());

        tls.reload(&second).unwrap();
        let (leaf, _) = handshake(&tls, &second_ca).await.unwrap();
        assert_ne!(leaf, first_leaf.to_vec(), "the new certificate is served");
        assert!(
            handshake(&tls, &first_ca).await.is_err(),
            "a client trusting only the old CA no longer verifies the server"
        );

        // A bad reload keeps what is served and names the key.
        let broken = TlsConfig {
            cert_file: second.cert_file.clone(),
            key_file: first.key_file.clone(),
        };
        let error = tls.reload(&broken).unwrap_err();
        assert!(error.starts_with("server.tls.key_file:"), "{error}");
        handshake(&tls, &second_ca).await.unwrap();
    }

    #[test]
    fn load_names_the_key_of_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let (good, _) = files(dir.path());
        let missing = TlsConfig {
            cert_file: dir.path().join("nope.pem"),
            key_file: good.key_file.clone(),
        };
        let error = Tls::load(&missing).unwrap_err();
        assert!(
            error.starts_with("server.tls.cert_file: cannot read"),
            "{error}"
        );
        let swapped = TlsConfig {
            cert_file: good.key_file.clone(),
            key_file: good.cert_file.clone(),
        };
        let error = Tls::load(&swapped).unwrap_err();
        assert!(error.starts_with("server.tls.cert_file:"), "{error}");
        assert!(error.contains("no certificate"), "{error}");
        let no_key = TlsConfig {
            cert_file: good.cert_file.clone(),
            key_file: good.cert_file.clone(),
        };
        let error = Tls::load(&no_key).unwrap_err();
        assert!(error.starts_with("server.tls.key_file:"), "{error}");
        assert!(error.contains("no private key"), "{error}");
    }
}
