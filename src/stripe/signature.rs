//! Verifies the `Stripe-Signature` header of a webhook delivery exactly as Stripe's SDKs do.
//!
//! Pure: the caller passes the header, the raw body, the configured secrets and the
//! current time, so every rule here is unit tested without a clock or a network. This
//! module must not parse the body (that is `event.rs`) or decide what to store.
//!
//! The header looks like `t=1700000000,v1=<hex>,v1=<hex>,v0=<hex>`. Stripe signs
//! `"{t}.{raw body}"` with HMAC-SHA256, keyed with the `whsec_...` secret string's UTF-8
//! bytes (not base64-decoded), and sends one `v1=` per active endpoint secret while a
//! secret is being rolled.
//!
//! Where the official SDKs (stripe-node, stripe-python, stripe-go) disagree, this module
//! takes the strictest reading, so it accepts no header that one of them rejects, with
//! one deliberate exception noted below:
//!
//! - No whitespace is accepted inside the header value. stripe-go rejects `t= 1`, and no
//!   SDK matches a ` v1=` key or a `v1` value with spaces. The optional whitespace around
//!   the whole field value is removed by the HTTP layer (RFC 9110 §5.5) before we see it.
//! - A pair without `=` (including the empty pair of a trailing comma) makes the header
//!   malformed, as in stripe-go.
//! - `t=` must appear exactly once and be plain ASCII digits (the SDKs take the first or
//!   the last one, and variously accept a sign, whitespace or trailing garbage).
//! - `v1=` values must be lowercase hex, as Stripe sends them: stripe-node and
//!   stripe-python compare hex strings, so an uppercase value never matches there. Values
//!   that are not lowercase hex are skipped, and count as "no match", not as malformed.
//! - Unknown schemes (`v0=`, a future `v2=`) are ignored, whatever their value holds.
//!   The exception: such a value may contain `=` (stripe-go refuses the whole header,
//!   stripe-node and stripe-python ignore the pair), so a future base64-valued scheme
//!   cannot break verification. It weakens nothing: a `v1` must still match.
//! - `|now - t| <= tolerance`: a timestamp too far in the future fails too, where the
//!   SDKs only reject old ones.
//!
//! Order of checks: the header is parsed first, then the timestamp is checked, then the
//! signature. The endpoint runs the first two before it reads a single byte of the body
//! (`SignatureHeader::from_request`, `SignatureHeader::check_time`): a request with
//! no usable header or a stale `t` is refused at once, so an attacker without the secret
//! cannot make the gateway hold a body for a delivery that could never verify. The price
//! is that a forged header with a stale `t` reports `TimestampOutOfTolerance` rather than
//! `NoMatch` (the SDKs check the signature first). Nothing leaks to an attacker by the
//! order: every variant is the same `400 BAD_SIGNATURE` with the same sentence.

use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused. Every variant answers `400 BAD_SIGNATURE`;
/// the variants exist for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carried no `Stripe-Signature` header, or an empty one.
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    /// The header is not a list of `key=value` pairs with exactly one integer `t=` (or
    /// the request carried the header twice, or with bytes that are not visible ASCII).
    #[error("malformed Stripe-Signature header")]
    MalformedHeader,
    /// The header is well formed but carries no `v1=` signature (e.g. only `v0=`).
    #[error("Stripe-Signature header has no v1 signature")]
    NoV1Signature,
    /// `t` is further from now than the tolerance (checked before the signature).
    #[error("Stripe-Signature timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    /// No `v1` signature matches the payload under any configured secret.
    #[error("no v1 signature matches the payload with any configured secret")]
    NoMatch,
}

impl SignatureError {
    /// The `reason` logged for a refusal (snake case, stable for log searches).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader => "no_signature_header",
            SignatureError::MalformedHeader => "malformed_signature_header",
            SignatureError::NoV1Signature => "no_v1_signature",
            SignatureError::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            SignatureError::NoMatch => "no_matching_signature",
        }
    }
}

/// Verifies a webhook delivery and returns its signed `t=` timestamp.
///
/// `header`: the Stripe-Signature header value; `payload`: the raw body bytes exactly as
/// received; `secrets`: every configured `whsec_` secret (several during rotation, any
/// may match); `tolerance_secs`: the largest accepted `|now - t|` (a negative tolerance
/// accepts nothing); `now`: unix seconds, a parameter so the function stays pure.
///
/// The endpoint runs the same three steps, split around reading the body; this
/// whole form is for tests and benches.
#[cfg(any(test, feature = "bench"))]
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[String],
    tolerance_secs: i64,
    now: i64,
) -> Result<i64, SignatureError> {
    let header = SignatureHeader::parse(header)?;
    header.check_time(tolerance_secs, now)?;
    header.verify(&[payload], secrets)?;
    Ok(header.timestamp)
}

/// The `Stripe-Signature` header Stripe would send for `payload` signed with `secret` at
/// `timestamp` (`t=..,v1=..`). For tests and benches.
#[cfg(any(test, feature = "bench"))]
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac = keyed_mac(secret).expect("HMAC-SHA256 accepts keys of any length");
    update_signed_text(&mut mac, timestamp, &[payload]);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A parsed `Stripe-Signature` header: the signed timestamp and the decoded `v1` tags.
///
/// Everything in it can be checked before the body arrives except the tags themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignatureHeader {
    /// The `t=` value: unix seconds, the time Stripe signed the delivery.
    pub(crate) timestamp: i64,
    /// Decoded `v1` values of the right length for HMAC-SHA256. Others can never match
    /// and are dropped, so a header stuffed with garbage costs no comparisons.
    signatures: Vec<[u8; 32]>,
}

impl SignatureHeader {
    /// Parses a header value by the strict rules in the module documentation.
    pub(crate) fn parse(header: Option<&str>) -> Result<SignatureHeader, SignatureError> {
        match header {
            Some(value) if !value.is_empty() => parse_header(value),
            _ => Err(SignatureError::MissingHeader),
        }
    }

    /// The request's `Stripe-Signature` header, parsed. Sent twice, it is malformed:
    /// which of the two Stripe meant would be a guess, and Stripe sends one. Bytes
    /// outside visible ASCII make it malformed too (Stripe sends none).
    pub(crate) fn from_request(
        headers: &http::HeaderMap,
    ) -> Result<SignatureHeader, SignatureError> {
        let mut values = headers.get_all("stripe-signature").iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(SignatureError::MalformedHeader);
        }
        match first.map(http::HeaderValue::to_str) {
            None => Err(SignatureError::MissingHeader),
            Some(Ok(value)) => SignatureHeader::parse(Some(value)),
            Some(Err(_)) => Err(SignatureError::MalformedHeader),
        }
    }

    /// `|now - t| <= tolerance_secs` (a negative tolerance accepts nothing).
    pub(crate) fn check_time(&self, tolerance_secs: i64, now: i64) -> Result<(), SignatureError> {
        // `abs_diff` cannot overflow, unlike `now - t` with an attacker-chosen `t`.
        let within = u64::try_from(tolerance_secs)
            .is_ok_and(|tolerance| now.abs_diff(self.timestamp) <= tolerance);
        if within {
            Ok(())
        } else {
            Err(SignatureError::TimestampOutOfTolerance)
        }
    }

    /// Whether a `v1` tag is the HMAC of `"{t}.{payload}"` under one of `secrets`. The
    /// payload may come in pieces (as the body arrived): the MAC is computed over them
    /// in order, so the body never has to be copied into one buffer to be verified.
    pub(crate) fn verify<P: AsRef<[u8]>>(
        &self,
        payload: &[P],
        secrets: &[String],
    ) -> Result<(), SignatureError> {
        let matched = secrets.iter().any(|secret| {
            // An empty key is public knowledge: anyone can sign with it. A stray comma in
            // the secrets variable must not open the endpoint, so it is never tried.
            if secret.is_empty() {
                return false;
            }
            // HMAC accepts keys of any length, so this never skips a secret in practice;
            // skipping instead of panicking keeps the request path panic-free regardless.
            let Some(mut mac) = keyed_mac(secret) else {
                return false;
            };
            update_signed_text(&mut mac, self.timestamp, payload);
            // Finalized once per secret, whatever the number of `v1` values: a header
            // stuffed with thousands of them costs a 32-byte comparison each, not an
            // HMAC each. `CtOutput` compares in constant time.
            let expected = mac.finalize();
            self.signatures
                .iter()
                .any(|candidate| expected == CtOutput::new((*candidate).into()))
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

/// Parses a non-empty header value by the strict rules in the module documentation.
fn parse_header(header: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut saw_v1 = false;
    let mut signatures = Vec::new();

    for pair in header.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or(SignatureError::MalformedHeader)?;
        match key {
            "t" => {
                // A second `t=` would leave it ambiguous which time was signed.
                if timestamp.is_some() {
                    return Err(SignatureError::MalformedHeader);
                }
                timestamp = Some(parse_timestamp(value)?);
            }
            "v1" => {
                saw_v1 = true;
                if let Some(tag) = decode_tag(value) {
                    signatures.push(tag);
                }
            }
            // Unknown schemes (`v0`, future versions) are ignored, as every SDK does, so
            // Stripe can add a scheme without breaking verification.
            _ => {}
        }
    }

    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader)?;
    if !saw_v1 {
        return Err(SignatureError::NoV1Signature);
    }
    Ok(SignatureHeader {
        timestamp,
        signatures,
    })
}

/// `t=` is unix seconds written as plain ASCII digits; `str::parse` alone would also
/// accept a leading `+`, which Stripe never sends.
fn parse_timestamp(value: &str) -> Result<i64, SignatureError> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(SignatureError::MalformedHeader);
    }
    value.parse().map_err(|_| SignatureError::MalformedHeader)
}

/// Decodes a `v1` value, or `None` when it is not 64 lowercase hex digits (so it cannot
/// match: a tag of another length never equals an HMAC-SHA256, and uppercase hex never
/// matches in the SDKs that compare hex text).
fn decode_tag(value: &str) -> Option<[u8; 32]> {
    let lowercase_hex = value
        .bytes()
        .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if !lowercase_hex || value.len() != 64 {
        return None;
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(value, &mut tag).ok()?;
    Some(tag)
}

/// Feeds `"{t}.{payload}"` to the MAC.
///
/// The timestamp is written back from the parsed integer, as every SDK does, so the
/// signed text is the canonical decimal form of `t`.
fn update_signed_text<P: AsRef<[u8]>>(mac: &mut HmacSha256, timestamp: i64, payload: &[P]) {
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    for piece in payload {
        mac.update(piece.as_ref());
    }
}

/// An HMAC-SHA256 keyed with the secret string's UTF-8 bytes (Stripe does not
/// base64-decode the part after `whsec_`).
fn keyed_mac(secret: &str) -> Option<HmacSha256> {
    <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use sha2::Digest;

    const VECTORS: &str = include_str!("../../tests/fixtures/stripe/signature-test-vectors.json");
    const BASIL_EVENT: &[u8] = include_bytes!(
        "../../tests/fixtures/stripe/constructed.event.customer.subscription.updated.basil-shape.json"
    );

    const SECRET: &str = "whsec_test_secret";
    const ROLLED: &str = "whsec_rolled_secret";
    const PAYLOAD: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
    const T: i64 = 1_700_000_000;
    const TOLERANCE: i64 = 300;

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("signature-test-vectors.json is JSON")
    }

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn text<'a>(value: &'a Value, key: &str) -> &'a str {
        value[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {key} is a string"))
    }

    fn int(value: &Value, key: &str) -> i64 {
        value[key]
            .as_i64()
            .unwrap_or_else(|| panic!("vector field {key} is an integer"))
    }

    /// The payload a vector signs: inline text, or a copied fixture file's exact bytes.
    fn vector_payload(vector: &Value) -> Vec<u8> {
        if let Some(payload) = vector["payload"].as_str() {
            return payload.as_bytes().to_vec();
        }
        match text(vector, "payload_file") {
            "constructed.event.customer.subscription.updated.basil-shape.json" => {
                BASIL_EVENT.to_vec()
            }
            other => panic!("vector names a payload file this test does not include: {other}"),
        }
    }

    fn valid_header() -> String {
        sign(PAYLOAD, SECRET, T)
    }

    // --- The published vectors ---

    #[test]
    fn every_positive_vector_verifies_and_sign_reproduces_its_header() {
        let vectors = vectors();
        let list = vectors["vectors"].as_array().expect("vectors is a list");
        assert_eq!(
            list.len(),
            4,
            "a vector was added: make sure this test covers it"
        );
        for vector in list {
            let name = text(vector, "name");
            let t = int(vector, "timestamp");
            let payload = vector_payload(vector);
            let header = text(vector, "header");
            if let Some(sha) = vector["payload_sha256"].as_str() {
                // Guards the copied fixture against an editor adding a final newline.
                assert_eq!(hex::encode(Sha256::digest(&payload)), sha, "{name}");
            }
            if vector.get("secret").is_some() {
                let secret = text(vector, "secret");
                assert_eq!(sign(&payload, secret, t), header, "{name}");
                if let Some(expected) = vector["expected_v1"].as_str() {
                    assert_eq!(header, format!("t={t},v1={expected}"), "{name}");
                }
                assert_eq!(
                    verify(Some(header), &payload, &secrets(&[secret]), TOLERANCE, t),
                    Ok(t),
                    "{name}"
                );
            } else {
                // The rotation vector: the header carries one v1 per secret, and either
                // configured secret alone verifies it.
                let old = text(vector, "old_secret");
                let new = text(vector, "new_secret");
                for configured in [&[old][..], &[new], &[old, new], &[new, old]] {
                    assert_eq!(
                        verify(Some(header), &payload, &secrets(configured), TOLERANCE, t),
                        Ok(t),
                        "{name} with {configured:?}"
                    );
                }
                let new_only = sign(&payload, new, t);
                assert!(
                    header.ends_with(&new_only["t=1700000000,".len()..]),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn hmac_only_vectors_confirm_the_key_is_the_secret_text() {
        let vectors = vectors();
        let block = &vectors["hmac_only_vectors_from_stripe_node_test_crypto_helpers_ts"];
        let secret = text(block, "secret");
        let cases = block["cases"].as_array().expect("cases is a list");
        assert_eq!(cases.len(), 3);
        for case in cases {
            let mut mac = keyed_mac(secret).expect("any key length");
            mac.update(text(case, "payload").as_bytes());
            assert_eq!(
                hex::encode(mac.finalize().into_bytes()),
                text(case, "expected"),
                "payload {:?}",
                case["payload"]
            );
        }
    }

    #[test]
    fn every_negative_vector_is_rejected_with_the_expected_error() {
        let vectors = vectors();
        let cases = vectors["negative_cases"]
            .as_array()
            .expect("negative_cases is a list");
        assert_eq!(
            cases.len(),
            4,
            "a case was added: give it an expectation below"
        );
        for case in cases {
            let name = text(case, "name");
            // Cases without a header reuse the compact vector's valid header and vary `now`.
            let header = case["header"].as_str().map_or_else(
                || sign(PAYLOAD, SECRET, int(case, "timestamp")),
                str::to_string,
            );
            let now = case["now"].as_i64().unwrap_or(T);
            let expected = if name.starts_with("v0-only") || name.starts_with("space after comma") {
                SignatureError::NoV1Signature
            } else if name.starts_with("too old") || name.starts_with("future timestamp") {
                SignatureError::TimestampOutOfTolerance
            } else {
                panic!("negative vector without an expectation: {name}");
            };
            assert_eq!(
                verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, now),
                Err(expected),
                "{name}"
            );
        }
    }

    // --- Rotation ---

    #[test]
    fn rotation_two_signatures_two_secrets_any_pair_matches() {
        let old = sign(PAYLOAD, SECRET, T);
        let new = sign(PAYLOAD, ROLLED, T);
        let new_v1 = new.split_once(",v1=").expect("sign output has v1").1;
        let both = format!("{old},v1={new_v1}");
        for configured in [
            &[SECRET][..],
            &[ROLLED],
            &[SECRET, ROLLED],
            &[ROLLED, SECRET],
        ] {
            assert_eq!(
                verify(Some(&both), PAYLOAD, &secrets(configured), TOLERANCE, T),
                Ok(T),
                "{configured:?}"
            );
        }
        // A single-signature header still verifies while two secrets are configured.
        assert_eq!(
            verify(
                Some(&new),
                PAYLOAD,
                &secrets(&[SECRET, ROLLED]),
                TOLERANCE,
                T
            ),
            Ok(T)
        );
        assert_eq!(
            verify(
                Some(&both),
                PAYLOAD,
                &secrets(&["whsec_other"]),
                TOLERANCE,
                T
            ),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn no_configured_secret_matches_nothing() {
        assert_eq!(
            verify(Some(&valid_header()), PAYLOAD, &[], TOLERANCE, T),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn an_empty_secret_never_verifies_even_a_header_signed_with_it() {
        let forged = sign(PAYLOAD, "", T);
        assert_eq!(
            verify(
                Some(&forged),
                PAYLOAD,
                &secrets(&["", SECRET]),
                TOLERANCE,
                T
            ),
            Err(SignatureError::NoMatch)
        );
        // The real secret next to the empty one still works.
        assert_eq!(
            verify(
                Some(&valid_header()),
                PAYLOAD,
                &secrets(&["", SECRET]),
                TOLERANCE,
                T
            ),
            Ok(T)
        );
    }

    #[test]
    fn the_key_is_not_base64_decoded_or_trimmed() {
        let header = valid_header();
        for wrong in ["test_secret", "whsec_test_secret ", "WHSEC_TEST_SECRET", ""] {
            assert_eq!(
                verify(Some(&header), PAYLOAD, &secrets(&[wrong]), TOLERANCE, T),
                Err(SignatureError::NoMatch),
                "{wrong:?}"
            );
        }
    }

    // --- Tampering ---

    #[test]
    fn tampered_payload_fails() {
        let header = valid_header();
        let mut tampered = PAYLOAD.to_vec();
        tampered[7] ^= 1;
        for payload in [&tampered[..], b"", &[PAYLOAD, b"\n"].concat()] {
            assert_eq!(
                verify(Some(&header), payload, &secrets(&[SECRET]), TOLERANCE, T),
                Err(SignatureError::NoMatch)
            );
        }
    }

    #[test]
    fn tampered_timestamp_fails_even_within_tolerance() {
        let v1 = valid_header().split_once(",v1=").expect("v1").1.to_string();
        let moved = format!("t={},v1={v1}", T + 1);
        assert_eq!(
            verify(Some(&moved), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn leading_zeros_in_t_sign_the_canonical_number_as_the_sdks_do() {
        // The SDKs parse `t` and sign the number they parsed; so do we. The header with
        // leading zeros therefore verifies against the canonical signature.
        let v1 = valid_header().split_once(",v1=").expect("v1").1.to_string();
        let padded = format!("t=0{T},v1={v1}");
        assert_eq!(
            verify(Some(&padded), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
            Ok(T)
        );
    }

    #[test]
    fn tampered_or_truncated_signature_fails() {
        let header = valid_header();
        let (prefix, v1) = header.split_once(",v1=").expect("v1");
        let flipped: String = v1
            .char_indices()
            .map(|(i, c)| {
                if i == 0 {
                    if c == '0' {
                        '1'
                    } else {
                        '0'
                    }
                } else {
                    c
                }
            })
            .collect();
        for bad in [
            flipped.as_str(),
            &v1[..62],
            &v1[..32],
            "",
            &format!("{v1}00"),
        ] {
            let header = format!("{prefix},v1={bad}");
            assert_eq!(
                verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Err(SignatureError::NoMatch),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn uppercase_or_non_hex_v1_does_not_match() {
        let header = valid_header();
        let (prefix, v1) = header.split_once(",v1=").expect("v1");
        for bad in [
            v1.to_uppercase(),
            format!("{}zz", &v1[..62]),
            format!("0x{v1}"),
        ] {
            let header = format!("{prefix},v1={bad}");
            assert_eq!(
                verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Err(SignatureError::NoMatch),
                "{bad}"
            );
        }
        // A garbage v1 next to a good one does not spoil the good one.
        let mixed = format!("{prefix},v1=nothex,v1={v1}");
        assert_eq!(
            verify(Some(&mixed), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
            Ok(T)
        );
    }

    // --- Time ---

    #[test]
    fn tolerance_is_inclusive_on_both_sides() {
        let header = valid_header();
        let check = |now| verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, now);
        assert_eq!(check(T + TOLERANCE), Ok(T));
        assert_eq!(check(T - TOLERANCE), Ok(T));
        assert_eq!(
            check(T + TOLERANCE + 1),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            check(T - TOLERANCE - 1),
            Err(SignatureError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let header = valid_header();
        for now in [T + 3600, T - 3600, 0, i64::MAX, i64::MIN] {
            assert_eq!(
                verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, now),
                Err(SignatureError::TimestampOutOfTolerance),
                "now = {now}"
            );
        }
    }

    #[test]
    fn zero_tolerance_accepts_only_the_same_second_and_negative_accepts_nothing() {
        let header = valid_header();
        let check =
            |tolerance, now| verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), tolerance, now);
        assert_eq!(check(0, T), Ok(T));
        assert_eq!(
            check(0, T + 1),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(check(-1, T), Err(SignatureError::TimestampOutOfTolerance));
    }

    #[test]
    fn the_time_is_checked_before_the_signature() {
        // The endpoint refuses a stale `t` before reading the body, so it cannot know
        // whether the signature would have matched: a forgery outside the tolerance
        // reports the time, and inside it `NoMatch`.
        let header = sign(PAYLOAD, "whsec_attacker", T);
        let check = |now| verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, now);
        assert_eq!(
            check(T + 10_000),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(check(T), Err(SignatureError::NoMatch));
    }

    #[test]
    fn thousands_of_v1_values_still_find_the_good_one() {
        // Each candidate is compared with one finalized tag per secret; none is hashed.
        let good = valid_header().split_once(",v1=").expect("v1").1.to_string();
        let mut header = format!("t={T}");
        for i in 0..5000 {
            header.push_str(&format!(",v1={i:064x}"));
        }
        assert_eq!(
            verify(
                Some(&header),
                PAYLOAD,
                &secrets(&[SECRET, ROLLED]),
                TOLERANCE,
                T
            ),
            Err(SignatureError::NoMatch)
        );
        header.push_str(&format!(",v1={good}"));
        assert_eq!(
            verify(
                Some(&header),
                PAYLOAD,
                &secrets(&[ROLLED, SECRET]),
                TOLERANCE,
                T
            ),
            Ok(T)
        );
    }

    #[test]
    fn the_pre_read_checks_need_no_body() {
        let header = SignatureHeader::parse(Some(&valid_header())).expect("parses");
        assert_eq!(header.timestamp, T);
        assert_eq!(header.check_time(TOLERANCE, T + TOLERANCE), Ok(()));
        assert_eq!(
            header.check_time(TOLERANCE, T - TOLERANCE - 1),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        // The body may then arrive in any pieces.
        let (a, b) = PAYLOAD.split_at(5);
        for pieces in [vec![PAYLOAD], vec![a, b], vec![b"".as_slice(), a, b"", b]] {
            assert_eq!(header.verify(&pieces, &secrets(&[SECRET])), Ok(()));
        }
        assert_eq!(
            header.verify(&[b, a], &secrets(&[SECRET])),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn the_request_header_is_taken_once_and_as_visible_ascii() {
        use http::{HeaderMap, HeaderValue};
        let mut headers = HeaderMap::new();
        assert_eq!(
            SignatureHeader::from_request(&headers),
            Err(SignatureError::MissingHeader)
        );
        headers.insert(
            "stripe-signature",
            HeaderValue::from_str(&valid_header()).unwrap(),
        );
        assert_eq!(
            SignatureHeader::from_request(&headers).map(|h| h.timestamp),
            Ok(T)
        );
        headers.append(
            "stripe-signature",
            HeaderValue::from_str(&valid_header()).unwrap(),
        );
        assert_eq!(
            SignatureHeader::from_request(&headers),
            Err(SignatureError::MalformedHeader)
        );
        let mut headers = HeaderMap::new();
        let mut bytes = valid_header().into_bytes();
        bytes.push(0xe9);
        headers.insert("stripe-signature", HeaderValue::from_bytes(&bytes).unwrap());
        assert_eq!(
            SignatureHeader::from_request(&headers),
            Err(SignatureError::MalformedHeader)
        );
    }

    #[test]
    fn reasons_name_each_refusal() {
        let all = [
            SignatureError::MissingHeader,
            SignatureError::MalformedHeader,
            SignatureError::NoV1Signature,
            SignatureError::TimestampOutOfTolerance,
            SignatureError::NoMatch,
        ];
        let reasons: std::collections::HashSet<_> =
            all.iter().map(SignatureError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(SignatureError::NoMatch.reason(), "no_matching_signature");
    }

    #[test]
    fn huge_timestamps_do_not_overflow() {
        let max = i64::MAX.to_string();
        let header = sign(PAYLOAD, SECRET, i64::MAX);
        assert!(header.starts_with(&format!("t={max},")));
        assert_eq!(
            verify(
                Some(&header),
                PAYLOAD,
                &secrets(&[SECRET]),
                TOLERANCE,
                i64::MAX
            ),
            Ok(i64::MAX)
        );
        assert_eq!(
            verify(
                Some(&header),
                PAYLOAD,
                &secrets(&[SECRET]),
                i64::MAX,
                i64::MIN
            ),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        let too_big = format!("t={max}0,v1=00");
        assert_eq!(
            verify(Some(&too_big), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
            Err(SignatureError::MalformedHeader)
        );
    }

    // --- Header shape ---

    #[test]
    fn missing_or_empty_header() {
        for header in [None, Some("")] {
            assert_eq!(
                verify(header, PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Err(SignatureError::MissingHeader)
            );
        }
    }

    #[test]
    fn garbled_headers_are_malformed() {
        let v1 = valid_header().split_once(",v1=").expect("v1").1.to_string();
        let cases = [
            "garbage".to_string(),
            ",".to_string(),
            format!("v1={v1}"),             // no t
            format!("t=,v1={v1}"),          // empty t
            format!("t=abc,v1={v1}"),       // not a number
            format!("t=-{T},v1={v1}"),      // signed
            format!("t=+{T},v1={v1}"),      // signed
            format!("t={T}.5,v1={v1}"),     // fractional
            format!("t={T}abc,v1={v1}"),    // stripe-node's parseInt would accept this
            format!("t={T},t={T},v1={v1}"), // duplicate t
            format!("t={T},v1={v1},"),      // trailing comma: an empty pair
            format!("t={T},,v1={v1}"),      // empty pair
            format!("t={T},v1{v1}"),        // pair without '='
            format!("t={T};v1={v1}"),       // wrong separator
            format!("t={T}\nv1={v1}"),      // wrong separator
        ];
        for header in &cases {
            assert_eq!(
                verify(Some(header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Err(SignatureError::MalformedHeader),
                "{header:?}"
            );
        }
    }

    #[test]
    fn no_v1_signature() {
        for header in [
            format!("t={T}"),
            format!("t={T},v0=abc,v2=def"),
            format!("t={T},V1=abc"),
        ] {
            assert_eq!(
                verify(Some(&header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Err(SignatureError::NoV1Signature),
                "{header}"
            );
        }
    }

    #[test]
    fn unknown_schemes_anywhere_are_ignored() {
        let v1 = valid_header().split_once(",v1=").expect("v1").1.to_string();
        let cases = [
            format!(
                "t={T},v1={v1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
            ),
            format!("v0=abc,t={T},v1={v1}"),
            format!("v1={v1},t={T}"),
            format!("t={T},v2=base64+value==,v1={v1}"), // '=' inside an unknown value
            format!("t={T},x=,v1={v1}"),
        ];
        for header in &cases {
            assert_eq!(
                verify(Some(header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Ok(T),
                "{header}"
            );
        }
    }

    #[test]
    fn whitespace_inside_the_header_is_not_accepted() {
        // stripe-go accepts no whitespace at all; stripe-node would take `t= 1` through
        // parseInt and python's int() would strip it, but none of them ever matches a
        // ` v1` key or a padded signature. We follow the strictest SDK.
        let v1 = valid_header().split_once(",v1=").expect("v1").1.to_string();
        let cases = [
            (format!("t={T}, v1={v1}"), SignatureError::NoV1Signature),
            (format!("t={T},v1 ={v1}"), SignatureError::NoV1Signature),
            (format!("t= {T},v1={v1}"), SignatureError::MalformedHeader),
            (format!("t={T} ,v1={v1}"), SignatureError::MalformedHeader),
            (format!(" t={T},v1={v1}"), SignatureError::MalformedHeader),
            (format!("t={T},v1= {v1}"), SignatureError::NoMatch),
            (format!("t={T},v1={v1} "), SignatureError::NoMatch),
            (format!("t={T},v1={v1}\t"), SignatureError::NoMatch),
        ];
        for (header, expected) in &cases {
            assert_eq!(
                verify(Some(header), PAYLOAD, &secrets(&[SECRET]), TOLERANCE, T),
                Err(expected.clone()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn sign_produces_the_stripe_header_shape() {
        let header = sign(b"", SECRET, 0);
        let (t, v1) = header.split_once(",v1=").expect("t then v1");
        assert_eq!(t, "t=0");
        assert_eq!(v1.len(), 64);
        assert!(v1.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(verify(Some(&header), b"", &secrets(&[SECRET]), 0, 0), Ok(0));
    }

    #[test]
    fn errors_have_readable_messages() {
        assert_eq!(
            SignatureError::MissingHeader.to_string(),
            "missing Stripe-Signature header"
        );
        assert!(SignatureError::NoMatch
            .to_string()
            .contains("no v1 signature"));
    }
}
