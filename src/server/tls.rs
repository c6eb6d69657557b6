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
        record_expiry(&key);
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
        record_expiry(&key);
        self.current.0.store(key);
        Ok(())
    }

    pub(super) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// Publishes the leaf certificate's `notAfter` for the expiry alert. A leaf
/// whose validity cannot be read (rustls accepted it, so this is unlikely)
/// leaves the gauge as it was rather than reporting a wrong date.
fn record_expiry(key: &CertifiedKey) {
    match key.cert.first().and_then(|leaf| not_after(leaf.as_ref())) {
        Some(unix) => crate::metrics::tls_certificate_expiry(unix),
        None => tracing::warn!("cannot read the certificate's expiry date; paygate_tls_certificate_expiry_timestamp_seconds not updated"),
    }
}

/// One DER element of `input`: its tag, its contents and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let len = rest[..octets]
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b));
        rest = &rest[octets..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The `notAfter` of an X.509 certificate, as Unix seconds. Walks
/// `Certificate → tbsCertificate → validity` (RFC 5280 4.1) by hand: the
/// dependency tree has no X.509 parser outside the tests, and this is the only
/// field needed.
fn not_after(cert: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let (SEQUENCE, cert, _) = der_element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if let (VERSION, _, after) = der_element(rest)? {
        rest = after;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = der_element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = der_element(rest)? else {
        return None;
    };
    let not_before_rest = der_element(validity)?.2;
    let (tag, text, _) = der_element(not_before_rest)?;
    asn1_time(tag, std::str::from_utf8(text).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 allows, as Unix seconds.
fn asn1_time(tag: u8, text: &str) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest[i..i + 2].parse::<u8>().ok();
    let month = time::Month::try_from(field(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
    let clock = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
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

    #[test]
    fn expiry_is_read_from_the_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = files(dir.path());
        let pem = std::fs::read(&config.cert_file).unwrap();
        let leaf = CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        // rcgen's default validity ends 4096-01-01, written as a GeneralizedTime.
        let expected = time::macros::datetime!(4096-01-01 0:00 UTC).unix_timestamp();
        assert_eq!(not_after(leaf.as_ref()), Some(expected));
        assert_eq!(not_after(&leaf.as_ref()[..40]), None, "truncated");
        assert_eq!(not_after(b"not DER"), None);
    }

    #[test]
    fn asn1_times_in_both_forms() {
        let t = |tag, text| asn1_time(tag, text);
        assert_eq!(t(0x17, "301231235959Z"), Some(1_924_991_999));
        assert_eq!(
            t(0x17, "500101000000Z"),
            Some(-631_152_000),
            "YY 50 is 1950"
        );
        assert_eq!(t(0x18, "20301231235959Z"), Some(1_924_991_999));
        assert_eq!(t(0x17, "301231235959"), None, "no Z");
        assert_eq!(t(0x17, "3012312359Z"), None, "no seconds");
        assert_eq!(t(0x18, "301231235959Z"), None, "short GeneralizedTime");
        assert_eq!(t(0x17, "301332235959Z"), None, "month 13");
        assert_eq!(t(0x04, "301231235959Z"), None, "not a time");
    }
}
