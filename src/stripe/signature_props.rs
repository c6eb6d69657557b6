//! Property tests of `Stripe-Signature` verification against a reference model written
//! here by hand (split the header, HMAC-SHA256 with the `hmac` crate), on hostile
//! headers: many commas and `=`, duplicate keys, huge or signed or padded `t`, unicode,
//! empty parts, `v0`/`v1` mixes, and real signatures for the right and wrong `t`, body
//! and secret.
//!
//! Fast mode runs in `cargo test`; the `_long` variants are `#[ignore]`d and run
//! `PAYGATE_PROPTEST_CASES` cases (default 100,000):
//! `cargo test --release --lib -- --ignored signature_props`.

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::Sha256;

use super::signature::{sign, verify, SignatureError, SignatureHeader};
use super::testing::{check, FAST_CASES};

/// Secrets a case may configure; the last two are never the signer's in `Good` parts
/// unless picked, and `""` must never verify anything.
const SECRETS: [&str; 4] = [
    "whsec_test_secret",
    "whsec_rolled_secret",
    "whsec_ünïcödé_🔑",
    "",
];

// ---- the reference model ----

/// What the model says `verify` must return, with errors reduced to their variant.
fn model(
    header: &str,
    payload: &[u8],
    secrets: &[String],
    tolerance: i64,
    now: i64,
) -> Result<i64, SignatureError> {
    if header.is_empty() {
        return Err(SignatureError::MissingHeader);
    }
    let mut t: Option<i64> = None;
    let mut t_count = 0;
    let mut v1s: Vec<&str> = Vec::new();
    for pair in header.split(',') {
        let Some(eq) = pair.find('=') else {
            return Err(SignatureError::MalformedHeader);
        };
        let (key, value) = (&pair[..eq], &pair[eq + 1..]);
        if key == "t" {
            t_count += 1;
            // Decimal digits only, folded by hand with overflow checks.
            let mut parsed: Option<i64> = if value.is_empty() { None } else { Some(0) };
            for c in value.chars() {
                parsed = parsed.and_then(|n| {
                    let digit = c.to_digit(10)?;
                    n.checked_mul(10)?.checked_add(i64::from(digit))
                });
            }
            match parsed {
                Some(n) => t = Some(n),
                None => return Err(SignatureError::MalformedHeader),
            }
            if t_count > 1 {
                return Err(SignatureError::MalformedHeader);
            }
        } else if key == "v1" {
            v1s.push(value);
        }
    }
    let Some(t) = t else {
        return Err(SignatureError::MalformedHeader);
    };
    if v1s.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    if tolerance < 0 || (i128::from(now) - i128::from(t)).abs() > i128::from(tolerance) {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    let matched = secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .any(|secret| {
            let expected = hmac_hex(secret, &t.to_string(), payload);
            v1s.iter().any(|v| *v == expected)
        });
    if matched {
        Ok(t)
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// Lowercase hex of HMAC-SHA256 keyed with `secret` over `"{t}.{payload}"`.
fn hmac_hex(secret: &str, t: &str, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

// ---- hostile headers ----

/// How a `t=` value is written.
#[derive(Debug, Clone)]
enum TValue {
    /// The time the `Good` signatures were made for.
    Signed,
    /// The signing time moved by this much (may go negative: written with a `-`).
    Moved(i64),
    /// The signing time with leading zeros.
    Padded(usize),
    /// Digits beyond `i64` (`t` overflow).
    Huge(String),
    /// Anything at all.
    Junk(String),
}

/// How a `v1=` value is written.
#[derive(Debug, Clone)]
enum V1Value {
    /// The right signature under `SECRETS[i]`.
    Good(usize),
    /// A signature under `SECRETS[i]` for another `t`.
    OtherT(usize, i64),
    /// A signature under `SECRETS[i]` for the body with one more byte.
    OtherBody(usize),
    /// `Good(i)` in uppercase hex.
    Upper(usize),
    /// `Good(i)` cut to `n` digits.
    Cut(usize, usize),
    /// `Good(i)` with one digit changed.
    Flip(usize, Index),
    /// Anything at all.
    Junk(String),
}

#[derive(Debug, Clone)]
enum Part {
    T(TValue),
    V1(V1Value),
    /// Another key (`v0`, `V1`, ` v1`, `t ` …) with `v1`-like or junk values.
    Other(String, V1Value),
    /// A pair without `=`, an empty pair, or random text.
    Raw(String),
}

#[derive(Debug, Clone)]
struct HeaderCase {
    payload: Vec<u8>,
    /// Indices into `SECRETS` that are configured.
    configured: Vec<usize>,
    now: i64,
    tolerance: i64,
    header: String,
}

fn secret() -> impl Strategy<Value = usize> {
    0..SECRETS.len()
}

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{0,70}",
        "[t=v01,. +-]{0,12}",
        ".{0,24}",
        Just(String::new()),
    ]
}

fn t_value() -> impl Strategy<Value = TValue> {
    prop_oneof![
        6 => Just(TValue::Signed),
        2 => prop_oneof![-400i64..400, any::<i64>()].prop_map(TValue::Moved),
        1 => (1usize..30).prop_map(TValue::Padded),
        1 => "[1-9][0-9]{19,40}".prop_map(TValue::Huge),
        1 => junk().prop_map(TValue::Junk),
    ]
}

fn v1_value() -> impl Strategy<Value = V1Value> {
    prop_oneof![
        10 => secret().prop_map(V1Value::Good),
        1 => (secret(), prop_oneof![-3i64..3, any::<i64>()]).prop_map(|(s, d)| V1Value::OtherT(s, d)),
        1 => secret().prop_map(V1Value::OtherBody),
        1 => secret().prop_map(V1Value::Upper),
        1 => (secret(), 0usize..70).prop_map(|(s, n)| V1Value::Cut(s, n)),
        1 => (secret(), any::<Index>()).prop_map(|(s, i)| V1Value::Flip(s, i)),
        1 => junk().prop_map(V1Value::Junk),
    ]
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        1 => t_value().prop_map(Part::T),
        8 => v1_value().prop_map(Part::V1),
        2 => (
            prop_oneof![
                Just("v0".to_string()),
                Just("V1".to_string()),
                Just(" v1".to_string()),
                Just("v1 ".to_string()),
                Just("t ".to_string()),
                Just("v2".to_string()),
                Just(String::new()),
                "[a-z0-9=]{1,4}",
            ],
            v1_value()
        )
            .prop_map(|(key, value)| Part::Other(key, value)),
        1 => prop_oneof![Just(String::new()), "[^=,]{0,10}", ".{0,10}"].prop_map(Part::Raw),
    ]
}

/// A header's parts: mostly one `t` (usually the signing time) somewhere among `v1`
/// and other pairs, as Stripe sends it; sometimes no `t` or very many parts.
fn parts() -> impl Strategy<Value = Vec<Part>> {
    let t_first = prop_oneof![
        12 => Just(vec![Part::T(TValue::Signed)]),
        4 => t_value().prop_map(|t| vec![Part::T(t)]),
        1 => Just(Vec::new()),
    ];
    let rest = prop_oneof![
        8 => proptest::collection::vec(part(), 0..5),
        1 => proptest::collection::vec(part(), 0..200),
    ];
    (t_first, rest, any::<Index>()).prop_map(|(first, mut rest, at)| {
        // The `t` may stand anywhere: the SDKs do not care about order.
        let at = at.index(rest.len() + 1);
        for (i, part) in first.into_iter().enumerate() {
            rest.insert(at + i, part);
        }
        rest
    })
}

fn render_v1(value: &V1Value, payload: &[u8], signed_at: i64) -> String {
    let good = |i: usize| hmac_hex(SECRETS[i], &signed_at.to_string(), payload);
    match value {
        V1Value::Good(i) => good(*i),
        V1Value::OtherT(i, d) => hmac_hex(
            SECRETS[*i],
            &signed_at.wrapping_add(*d).to_string(),
            payload,
        ),
        V1Value::OtherBody(i) => hmac_hex(
            SECRETS[*i],
            &signed_at.to_string(),
            &[payload, b"x"].concat(),
        ),
        V1Value::Upper(i) => good(*i).to_uppercase(),
        V1Value::Cut(i, n) => good(*i).chars().take(*n).collect(),
        V1Value::Flip(i, at) => {
            let mut hex = good(*i).into_bytes();
            let at = at.index(hex.len());
            hex[at] = if hex[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(hex).expect("hex is ASCII")
        }
        V1Value::Junk(text) => text.clone(),
    }
}

fn render(parts: &[Part], payload: &[u8], signed_at: i64) -> String {
    let rendered: Vec<String> = parts
        .iter()
        .map(|part| match part {
            Part::T(TValue::Signed) => format!("t={signed_at}"),
            Part::T(TValue::Moved(d)) => format!("t={}", i128::from(signed_at) + i128::from(*d)),
            Part::T(TValue::Padded(zeros)) => format!("t={}{signed_at}", "0".repeat(*zeros)),
            Part::T(TValue::Huge(digits)) => format!("t={digits}"),
            Part::T(TValue::Junk(text)) => format!("t={text}"),
            Part::V1(value) => format!("v1={}", render_v1(value, payload, signed_at)),
            Part::Other(key, value) => format!("{key}={}", render_v1(value, payload, signed_at)),
            Part::Raw(text) => text.clone(),
        })
        .collect();
    rendered.join(",")
}

fn header_case() -> impl Strategy<Value = HeaderCase> {
    let signed_at = prop_oneof![
        4 => 1_600_000_000i64..1_900_000_000,
        1 => 0i64..10,
        1 => 0..=i64::MAX,
    ];
    let tolerance = prop_oneof![
        4 => Just(300i64),
        1 => Just(0i64),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ];
    let now_offset = prop_oneof![6 => -400i64..400, 1 => any::<i64>()];
    let parts = parts();
    let payload = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => ".{0,64}".prop_map(String::into_bytes),
    ];
    let configured = prop_oneof![
        1 => Just(Vec::new()),
        6 => proptest::collection::vec(secret(), 1..4),
    ];
    (payload, configured, signed_at, now_offset, tolerance, parts).prop_flat_map(
        |(payload, configured, signed_at, offset, tolerance, parts)| {
            let header = render(&parts, &payload, signed_at);
            let now = signed_at.saturating_add(offset);
            // Sometimes the header is replaced by text with no structure at all.
            let header = prop_oneof![
                12 => Just(header),
                1 => ".{0,80}",
                1 => "[tv01=,a-f0-9 ]{0,80}",
            ];
            header.prop_map(move |header| HeaderCase {
                payload: payload.clone(),
                configured: configured.clone(),
                now,
                tolerance,
                header,
            })
        },
    )
}

fn configured(case: &HeaderCase) -> Vec<String> {
    case.configured
        .iter()
        .map(|&i| SECRETS[i].to_string())
        .collect()
}

// ---- properties ----

/// `verify` never panics and answers exactly what the model answers; the pre-read
/// steps agree with it, and so does reading the header from a request.
fn verify_matches_the_model(case: HeaderCase) -> Result<(), TestCaseError> {
    let secrets = configured(&case);
    let expected = model(
        &case.header,
        &case.payload,
        &secrets,
        case.tolerance,
        case.now,
    );
    let got = verify(
        Some(&case.header),
        &case.payload,
        &secrets,
        case.tolerance,
        case.now,
    );
    prop_assert_eq!(&got, &expected, "header {:?}", case.header);

    // The same answer in the endpoint's order: parse, time, then the body in pieces.
    let pieces: Vec<&[u8]> = case.payload.chunks(7).collect();
    let split = SignatureHeader::parse(Some(&case.header)).and_then(|header| {
        header.check_time(case.tolerance, case.now)?;
        header.verify(&pieces, &secrets)?;
        Ok(header.timestamp)
    });
    prop_assert_eq!(&split, &expected);

    // As a request header (when it is a valid header value at all).
    if let Ok(value) = http::HeaderValue::from_str(&case.header) {
        let mut headers = http::HeaderMap::new();
        headers.insert("stripe-signature", value);
        let from_request = SignatureHeader::from_request(&headers);
        match (value_is_visible_ascii(&case.header), case.header.is_empty()) {
            (_, true) => prop_assert_eq!(from_request, Err(SignatureError::MissingHeader)),
            (true, false) => {
                prop_assert_eq!(from_request, SignatureHeader::parse(Some(&case.header)))
            }
            (false, false) => prop_assert_eq!(from_request, Err(SignatureError::MalformedHeader)),
        }
    }
    Ok(())
}

/// What `http::HeaderValue::to_str` accepts.
fn value_is_visible_ascii(text: &str) -> bool {
    text.bytes().all(|b| b == b'\t' || (32..127).contains(&b))
}

#[derive(Debug, Clone)]
struct SignedCase {
    payload: Vec<u8>,
    secret: String,
    /// Other configured secrets, around the signer's.
    others: Vec<String>,
    t: i64,
    tolerance: i64,
    now: i64,
    cuts: Vec<Index>,
}

fn signed_case() -> impl Strategy<Value = SignedCase> {
    let t = prop_oneof![3 => 1_600_000_000i64..1_900_000_000, 1 => 0..=i64::MAX];
    let tolerance = prop_oneof![3 => Just(300i64), 1 => 0..=i64::MAX];
    (
        proptest::collection::vec(any::<u8>(), 0..2048),
        ".{1,40}",
        proptest::collection::vec(".{0,20}", 0..3),
        t,
        tolerance,
        any::<Index>(),
        proptest::collection::vec(any::<Index>(), 0..5),
    )
        .prop_map(|(payload, secret, others, t, tolerance, skew, cuts)| {
            // Any `now` within the tolerance of `t`, kept inside i64.
            let low = t.saturating_sub(tolerance);
            let high = t.saturating_add(tolerance);
            let span = (i128::from(high) - i128::from(low)) as u128;
            let step = (skew.index(usize::MAX) as u128) % (span + 1);
            let now = (i128::from(low) + step as i128) as i64;
            SignedCase {
                payload,
                secret,
                others,
                t,
                tolerance,
                now,
                cuts,
            }
        })
}

/// What `sign` produces always verifies, whole or in any pieces, among other secrets.
fn signed_always_verifies(case: SignedCase) -> Result<(), TestCaseError> {
    let header = sign(&case.payload, &case.secret, case.t);
    let mut secrets = case.others.clone();
    secrets.insert(case.others.len() / 2, case.secret.clone());
    prop_assert_eq!(
        verify(
            Some(&header),
            &case.payload,
            &secrets,
            case.tolerance,
            case.now
        ),
        Ok(case.t)
    );
    let mut cuts: Vec<usize> = case
        .cuts
        .iter()
        .map(|i| i.index(case.payload.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([case.payload.len()]) {
        pieces.push(&case.payload[from..cut]);
        from = cut;
    }
    let parsed = SignatureHeader::parse(Some(&header)).expect("sign's header parses");
    prop_assert_eq!(parsed.verify(&pieces, &secrets), Ok(()));
    Ok(())
}

#[derive(Debug, Clone)]
struct MutatedCase {
    signed: SignedCase,
    at: Index,
    byte: u8,
    in_body: bool,
}

fn mutated_case() -> impl Strategy<Value = MutatedCase> {
    (signed_case(), any::<Index>(), any::<u8>(), any::<bool>()).prop_map(
        |(signed, at, byte, in_body)| MutatedCase {
            signed,
            at,
            byte,
            in_body,
        },
    )
}

/// Changing any one byte of the body or of the header makes verification fail.
fn any_single_byte_change_fails(case: MutatedCase) -> Result<(), TestCaseError> {
    let s = &case.signed;
    let header = sign(&s.payload, &s.secret, s.t);
    let secrets = vec![s.secret.clone()];
    if case.in_body && !s.payload.is_empty() {
        let mut body = s.payload.clone();
        let at = case.at.index(body.len());
        body[at] = if case.byte == body[at] {
            case.byte.wrapping_add(1)
        } else {
            case.byte
        };
        prop_assert_eq!(
            verify(Some(&header), &body, &secrets, s.tolerance, s.now),
            Err(SignatureError::NoMatch)
        );
    } else {
        let mut bytes = header.clone().into_bytes();
        let at = case.at.index(bytes.len());
        bytes[at] = if case.byte == bytes[at] {
            case.byte.wrapping_add(1)
        } else {
            case.byte
        };
        // A header that is not UTF-8 never reaches `verify` (see `from_request`).
        if let Ok(changed) = String::from_utf8(bytes) {
            let got = verify(Some(&changed), &s.payload, &secrets, s.tolerance, s.now);
            prop_assert!(got.is_err(), "{changed:?} verified: {got:?}");
        }
    }
    Ok(())
}

#[test]
fn signature_props_verify_matches_the_model() {
    check(FAST_CASES, header_case(), verify_matches_the_model);
}

#[test]
fn signature_props_signed_always_verifies() {
    check(FAST_CASES, signed_case(), signed_always_verifies);
}

#[test]
fn signature_props_any_single_byte_change_fails() {
    check(FAST_CASES, mutated_case(), any_single_byte_change_fails);
}

#[test]
#[ignore = "long mode: PAYGATE_PROPTEST_CASES cases (default 100,000)"]
fn signature_props_verify_matches_the_model_long() {
    check(
        super::testing::long_cases(),
        header_case(),
        verify_matches_the_model,
    );
}

#[test]
#[ignore = "long mode: PAYGATE_PROPTEST_CASES cases (default 100,000)"]
fn signature_props_signed_always_verifies_long() {
    check(
        super::testing::long_cases(),
        signed_case(),
        signed_always_verifies,
    );
}

#[test]
#[ignore = "long mode: PAYGATE_PROPTEST_CASES cases (default 100,000)"]
fn signature_props_any_single_byte_change_fails_long() {
    check(
        super::testing::long_cases(),
        mutated_case(),
        any_single_byte_change_fails,
    );
}

/// The model itself against hand-checked headers, so a wrong model cannot pass
/// vacuously.
#[test]
fn signature_props_the_model_agrees_with_hand_checked_cases() {
    let payload = b"{}";
    let t = 1_700_000_000i64;
    let good = hmac_hex(SECRETS[0], "1700000000", payload);
    let secrets = vec![SECRETS[0].to_string()];
    let cases = [
        (format!("t={t},v1={good}"), Ok(t)),
        (format!("t=0{t},v1={good}"), Ok(t)),
        (format!("v0=x,t={t},v1=zz,v1={good}"), Ok(t)),
        (
            format!("t={t},v1={}", good.to_uppercase()),
            Err(SignatureError::NoMatch),
        ),
        (format!("t={t}"), Err(SignatureError::NoV1Signature)),
        (
            format!("t={t},t={t},v1={good}"),
            Err(SignatureError::MalformedHeader),
        ),
        (
            format!("t=+{t},v1={good}"),
            Err(SignatureError::MalformedHeader),
        ),
        (
            format!("t={t},,v1={good}"),
            Err(SignatureError::MalformedHeader),
        ),
        (
            format!("t={}0,v1={good}", i64::MAX),
            Err(SignatureError::MalformedHeader),
        ),
        (String::new(), Err(SignatureError::MissingHeader)),
    ];
    for (header, expected) in cases {
        assert_eq!(
            model(&header, payload, &secrets, 300, t),
            expected,
            "{header}"
        );
        assert_eq!(
            verify(Some(&header), payload, &secrets, 300, t),
            expected,
            "{header}"
        );
    }
    assert_eq!(
        model(&format!("t={t},v1={good}"), payload, &secrets, 300, t + 301),
        Err(SignatureError::TimestampOutOfTolerance)
    );
}
