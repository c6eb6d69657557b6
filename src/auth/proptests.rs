//! Property tests of the token readers: hostile JWTs (headers and claims of
//! every JSON shape, duplicate and escaped member names, out-of-range numbers,
//! invalid strings, damaged base64 and segment counts) verified against a
//! plain model of the rules that `read_header` and `read_claims` document.
//!
//! Most tokens are signed with the configured secret, so that the signature
//! passes and the claims reader is what decides; others are unsigned, signed
//! with another key or algorithm, or damaged after signing. The clock is
//! pinned ([`NOW`]), so `exp`/`nbf` boundaries are tested exactly.
//!
//! `cargo test --lib auth::proptests` runs the fast mode; the long mode
//! (`PAYGATE_PROPTEST_CASES` cases, 100,000 by default) runs with
//! `cargo test --release --lib -- --ignored auth::proptests`.

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::extract::bearer_token;
use super::{authorization_bearer, AuthError, Authenticator, Credential, Identity, JwtSettings};
use crate::outbound::OutboundClient;

const SECRET: &[u8] = b"proptest-secret-of-a-reasonable-length!";
const OTHER_SECRET: &[u8] = b"not-the-configured-secret-at-all";
/// The pinned clock, unix seconds.
const NOW: i64 = 1_750_000_000;
const ISSUER: &str = "https://id.example/";
const AUDIENCE: &str = "api";
/// Stands for the configured user claim's name in generated claims.
const USER: &str = "\u{0}user claim";

fn fast_cases() -> u32 {
    512
}

fn long_cases() -> u32 {
    std::env::var("PAYGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

// ---- the settings the cases run under ----------------------------------------

/// Four configurations, so that the allowlist, the user claim's name, the
/// leeway and the iss/aud checks all vary. A case picks one by index.
fn all_settings() -> Vec<JwtSettings> {
    let base = JwtSettings {
        secret: Some(SECRET.to_vec()),
        ..super::test_support::settings(&[Algorithm::HS256])
    };
    vec![
        base.clone(),
        JwtSettings {
            algorithms: vec![Algorithm::HS256, Algorithm::HS512],
            user_claim: "user_id".to_owned(),
            leeway: 30,
            issuer: Some(ISSUER.to_owned()),
            audience: Some(AUDIENCE.to_owned()),
            ..base.clone()
        },
        JwtSettings {
            algorithms: vec![Algorithm::HS384],
            leeway: 60,
            audience: Some(AUDIENCE.to_owned()),
            ..base.clone()
        },
        JwtSettings {
            user_claim: "uid".to_owned(),
            leeway: 5,
            issuer: Some(ISSUER.to_owned()),
            ..base
        },
    ]
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    settings: Vec<JwtSettings>,
    authenticators: Vec<Authenticator>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let settings = all_settings();
        let authenticators = settings
            .iter()
            .map(|s| {
                runtime
                    .block_on(Authenticator::new(
                        s.clone(),
                        OutboundClient::for_tests(Duration::from_secs(1)),
                    ))
                    .expect("authenticator")
            })
            .collect();
        Harness {
            runtime,
            settings,
            authenticators,
        }
    })
}

// ---- generated JSON ---------------------------------------------------------

/// A JSON text as generated: enough structure to render it several ways and
/// to know what each part means, including texts no JSON parser accepts.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    /// An integer literal, possibly beyond 64 bits.
    Int(i128),
    /// The literal `-0`, which JSON parsers read as a float.
    NegZero,
    /// A float literal (always with a `.` or an exponent); `true`: exponent form.
    Float(f64, bool),
    /// `1e400`: beyond f64.
    OutOfRange,
    /// A string; `true`: every character written as a `\u` escape.
    Str(String, bool),
    Bad(Bad),
    Arr(Vec<J>),
    Obj(Vec<Member>),
    /// `n` nested empty arrays.
    Deep(usize),
}

/// Strings that are not valid JSON strings in one way or another.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// `"\udc00"`: no Unicode scalar value.
    LoneSurrogate,
    /// A byte that is not UTF-8.
    InvalidUtf8,
    /// A raw line feed inside the string.
    RawControl,
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    style: NameStyle,
    value: J,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NameStyle {
    Plain,
    /// Every character of the name as a `\u` escape: the same name to a parser.
    Escaped,
    /// A lone surrogate escape in front of the name: not a valid string.
    LoneSurrogate,
}

/// A header or claims text: the value, the whitespace between tokens, and
/// what follows the value.
#[derive(Clone, Debug)]
struct Top {
    value: J,
    ws: &'static str,
    trailing: Trailing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Trailing {
    Nothing,
    Whitespace,
    Garbage,
}

fn render_top(top: &Top, user_claim: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(top.ws.as_bytes());
    render(&top.value, top.ws, user_claim, &mut out);
    match top.trailing {
        Trailing::Nothing => {}
        Trailing::Whitespace => out.extend_from_slice(b" \n"),
        Trailing::Garbage => out.extend_from_slice(b" x"),
    }
    out
}

fn render(j: &J, ws: &str, user_claim: &str, out: &mut Vec<u8>) {
    match j {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        J::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        J::NegZero => out.extend_from_slice(b"-0"),
        J::Float(f, exponent) => out.extend_from_slice(float_literal(*f, *exponent).as_bytes()),
        J::OutOfRange => out.extend_from_slice(b"1e400"),
        J::Str(s, escaped) => render_str(s, *escaped, out),
        J::Bad(Bad::LoneSurrogate) => out.extend_from_slice(br#""a\udc00""#),
        J::Bad(Bad::InvalidUtf8) => out.extend_from_slice(b"\"a\xffb\""),
        J::Bad(Bad::RawControl) => out.extend_from_slice(b"\"a\nb\""),
        J::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(ws.as_bytes());
                render(item, ws, user_claim, out);
            }
            out.extend_from_slice(ws.as_bytes());
            out.push(b']');
        }
        J::Obj(members) => {
            out.push(b'{');
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(ws.as_bytes());
                let name = resolve(&member.name, user_claim);
                match member.style {
                    NameStyle::Plain => render_str(name, false, out),
                    NameStyle::Escaped => render_str(name, true, out),
                    NameStyle::LoneSurrogate => {
                        out.extend_from_slice(br#""\udc00"#);
                        let quoted = serde_json::to_string(name).expect("json");
                        out.extend_from_slice(&quoted.as_bytes()[1..]);
                    }
                }
                out.extend_from_slice(ws.as_bytes());
                out.push(b':');
                out.extend_from_slice(ws.as_bytes());
                render(&member.value, ws, user_claim, out);
            }
            out.extend_from_slice(ws.as_bytes());
            out.push(b'}');
        }
        J::Deep(n) => {
            out.extend(std::iter::repeat_n(b'[', *n));
            out.extend(std::iter::repeat_n(b']', *n));
        }
    }
}

fn render_str(s: &str, escaped: bool, out: &mut Vec<u8>) {
    if !escaped {
        out.extend_from_slice(serde_json::to_string(s).expect("json").as_bytes());
        return;
    }
    out.push(b'"');
    for unit in s.encode_utf16() {
        out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
    }
    out.push(b'"');
}

/// Rust's `{:?}` and `{:e}` of a finite f64 always read as a float in JSON.
fn float_literal(f: f64, exponent: bool) -> String {
    if exponent {
        format!("{f:e}")
    } else {
        format!("{f:?}")
    }
}

fn resolve<'a>(name: &'a str, user_claim: &'a str) -> &'a str {
    if name == USER {
        user_claim
    } else {
        name
    }
}

// ---- the model ----------------------------------------------------------------

/// What the model says verification gives.
#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Valid { user_id: String, expires_at: i64 },
    Expired,
    Invalid,
}

/// How a JSON value is met by paygate's readers: `Read` values are parsed
/// (strings decoded, numbers converted), `Skip` values are only scanned.
/// Scanning accepts what parsing refuses: a lone surrogate escape, a byte
/// that is not UTF-8, a number beyond f64. Both refuse a raw control
/// character in a string. Neither limits nesting, because paygate never
/// parses more than an array in an object in the top-level object: deeper
/// contents are always scanned.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// A claim paygate reads: an array's elements are read as `Element`s.
    Read,
    /// An element of a read array: an array's elements are skipped.
    Element,
    Skip,
}

/// Whether the value is accepted when met in `mode`. The values of an
/// object are always skipped (paygate reads no object's contents but the
/// top level's), but its member names are read when the object is.
fn well_formed(j: &J, mode: Mode) -> bool {
    match j {
        J::OutOfRange | J::Bad(Bad::LoneSurrogate | Bad::InvalidUtf8) => mode == Mode::Skip,
        J::Bad(Bad::RawControl) => false,
        J::Arr(items) => {
            let inner = if mode == Mode::Read {
                Mode::Element
            } else {
                Mode::Skip
            };
            items.iter().all(|item| well_formed(item, inner))
        }
        J::Obj(members) => members.iter().all(|m| {
            (mode == Mode::Skip || m.style != NameStyle::LoneSurrogate)
                && well_formed(&m.value, Mode::Skip)
        }),
        _ => true,
    }
}

/// The top-level members, if the text is an object a parser accepts as a
/// whole (not counting what the members' values hold).
fn top_members(top: &Top) -> Option<&[Member]> {
    let J::Obj(members) = &top.value else {
        return None;
    };
    let ok = top.trailing != Trailing::Garbage
        && members.iter().all(|m| m.style != NameStyle::LoneSurrogate);
    ok.then_some(members.as_slice())
}

fn count(members: &[Member], name: &str, user_claim: &str) -> usize {
    members
        .iter()
        .filter(|m| resolve(&m.name, user_claim) == name)
        .count()
}

fn find<'m>(members: &'m [Member], name: &str, user_claim: &str) -> Option<&'m J> {
    members
        .iter()
        .find(|m| resolve(&m.name, user_claim) == name)
        .map(|m| &m.value)
}

/// The header rules: an object with `alg` once (a string), `kid` at most
/// once (a string or null), no `crit` at all; anything else goes. Gives the
/// algorithm's name.
fn header_alg(top: &Top) -> Option<String> {
    let members = top_members(top)?;
    if count(members, "alg", "") != 1 || count(members, "kid", "") > 1 {
        return None;
    }
    if count(members, "crit", "") > 0 {
        return None;
    }
    let mut alg = None;
    for member in members {
        match (member.name.as_str(), &member.value) {
            ("alg", J::Str(name, _)) => alg = Some(name.clone()),
            ("alg", _) => return None,
            ("kid", J::Str(..) | J::Null) => {}
            ("kid", _) => return None,
            (_, value) if !well_formed(value, Mode::Skip) => return None,
            _ => {}
        }
    }
    alg
}

/// The user claim's value as a user id: a string of 1 to 256 characters
/// from `!` to `~` but `,`, or an integer within 64 bits in decimal.
fn model_user_id(j: &J) -> Option<String> {
    match j {
        J::Str(s, _) => {
            let ok = (1..=256).contains(&s.len())
                && s.chars().all(|c| ('!'..='~').contains(&c) && c != ',');
            ok.then(|| s.clone())
        }
        J::Int(n) if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(n) => {
            Some(n.to_string())
        }
        _ => None,
    }
}

/// A NumericDate: a number, not negative, rounded to the second, capped at
/// `i64::MAX`.
fn model_numeric_date(j: &J) -> Option<i64> {
    let capped = |f: f64| {
        if f >= i64::MAX as f64 {
            i64::MAX
        } else {
            f as i64
        }
    };
    match j {
        J::Int(n) if *n >= 0 => Some(i64::try_from(*n).unwrap_or(i64::MAX)),
        J::NegZero => Some(0),
        J::Float(f, exponent) => {
            // The value a parser reads from the literal.
            let read: f64 = serde_json::from_str(&float_literal(*f, *exponent)).expect("float");
            (read >= 0.0).then(|| capped(read.round()))
        }
        _ => None,
    }
}

/// The claims rules of `read_claims`, written out.
fn claims_verdict(top: &Top, settings: &JwtSettings) -> Verdict {
    let user_claim = settings.user_claim.as_str();
    let Some(members) = top_members(top) else {
        return Verdict::Invalid;
    };
    let read = [user_claim, "exp", "nbf", "iss", "aud"];
    for member in members {
        let name = resolve(&member.name, user_claim);
        let mode = if read.contains(&name) {
            Mode::Read
        } else {
            Mode::Skip
        };
        if !well_formed(&member.value, mode) {
            return Verdict::Invalid;
        }
    }
    let once = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", user_claim];
    if once.iter().any(|name| count(members, name, user_claim) > 1) {
        return Verdict::Invalid;
    }
    let Some(user_id) = find(members, user_claim, user_claim).and_then(model_user_id) else {
        return Verdict::Invalid;
    };
    let Some(exp) = find(members, "exp", user_claim).and_then(model_numeric_date) else {
        return Verdict::Invalid;
    };
    let leeway = settings.leeway as i64;
    if let Some(nbf) = find(members, "nbf", user_claim) {
        match model_numeric_date(nbf) {
            Some(nbf) if nbf <= NOW + leeway => {}
            _ => return Verdict::Invalid,
        }
    }
    if let Some(issuer) = &settings.issuer {
        match find(members, "iss", user_claim) {
            Some(J::Str(iss, _)) if iss == issuer => {}
            _ => return Verdict::Invalid,
        }
    }
    if let Some(audience) = &settings.audience {
        let is = |j: &J| matches!(j, J::Str(s, _) if s == audience);
        match find(members, "aud", user_claim) {
            Some(J::Str(aud, _)) if aud == audience => {}
            Some(J::Arr(items))
                if items.iter().all(|i| matches!(i, J::Str(..))) && items.iter().any(is) => {}
            _ => return Verdict::Invalid,
        }
    }
    if exp.saturating_add(leeway) < NOW {
        return Verdict::Expired;
    }
    Verdict::Valid {
        user_id,
        expires_at: exp,
    }
}

fn model(case: &Case, settings: &JwtSettings, token: &str, damaged: bool) -> Verdict {
    let Case::Token(parts) = case else {
        // Random text is never a token signed with the secret.
        return Verdict::Invalid;
    };
    if damaged || token.len() > 16 * 1024 {
        return Verdict::Invalid;
    }
    let Some(alg) = header_alg(&parts.header) else {
        return Verdict::Invalid;
    };
    if !settings.algorithms.iter().any(|a| format!("{a:?}") == alg) {
        return Verdict::Invalid;
    }
    if parts.signing != Signing::Correct {
        return Verdict::Invalid;
    }
    claims_verdict(&parts.claims, settings)
}

// ---- building tokens -----------------------------------------------------------

#[derive(Clone, Debug)]
enum Case {
    Token(Box<TokenCase>),
    /// Random text in the characters of tokens and then some.
    Garbage(String),
}

#[derive(Clone, Debug)]
struct TokenCase {
    settings: usize,
    header: Top,
    claims: Top,
    signing: Signing,
    damage: Damage,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Signing {
    /// HMAC with the configured secret, by the header's HS algorithm (HS256
    /// when it names none).
    Correct,
    WrongSecret,
    /// By another HS algorithm than the header names.
    WrongAlgorithm,
    /// No signature at all (`alg: none` style).
    Empty,
}

/// Damage done to the compact token after signing.
#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    /// `=` padding after segment `.0`.
    Pad(usize),
    /// A character outside base64url at a position in segment `.0`.
    BadChar(usize, usize, char),
    /// The last character of segment `.0` changed to its neighbour in the
    /// alphabet: unused low bits set, or the decoded bytes changed.
    Flip(usize),
    /// Segment `.0` emptied.
    Empty(usize),
    /// Segment `.0` removed.
    Drop(usize),
    /// A fourth segment.
    Extra,
    /// Whitespace around the token.
    Space,
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The token, and the token before damage (equal when the damage changed
/// nothing).
fn build(case: &Case, settings: &JwtSettings) -> (String, String) {
    let parts = match case {
        Case::Garbage(text) => return (text.clone(), text.clone()),
        Case::Token(parts) => parts,
    };
    let header = render_top(&parts.header, &settings.user_claim);
    let claims = render_top(&parts.claims, &settings.user_claim);
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    // The algorithm the header names when it is an HS one, else HS256.
    let named = match &parts.header.value {
        J::Obj(members) => members.iter().find_map(|m| match (&*m.name, &m.value) {
            ("alg", J::Str(name, _)) => match name.as_str() {
                "HS256" => Some(Algorithm::HS256),
                "HS384" => Some(Algorithm::HS384),
                "HS512" => Some(Algorithm::HS512),
                _ => None,
            },
            _ => None,
        }),
        _ => None,
    }
    .unwrap_or(Algorithm::HS256);
    let sign = |secret: &[u8], alg| {
        jsonwebtoken::crypto::sign(signed.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .expect("sign")
    };
    let signature = match parts.signing {
        Signing::Correct => sign(SECRET, named),
        Signing::WrongSecret => sign(OTHER_SECRET, named),
        Signing::WrongAlgorithm => sign(
            SECRET,
            if named == Algorithm::HS512 {
                Algorithm::HS256
            } else {
                Algorithm::HS512
            },
        ),
        Signing::Empty => String::new(),
    };
    let token = format!("{signed}.{signature}");
    (damage(&token, parts.damage), token)
}

fn damage(token: &str, damage: Damage) -> String {
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    match damage {
        Damage::None => {}
        Damage::Pad(i) => segments[i % 3].push('='),
        Damage::BadChar(i, at, c) => {
            let segment = &mut segments[i % 3];
            if !segment.is_empty() {
                let at = at % segment.len();
                segment.replace_range(at..=at, &c.to_string());
            }
        }
        Damage::Flip(i) => {
            let segment = &mut segments[i % 3];
            if let Some(last) = segment.pop() {
                let index = B64URL.iter().position(|&b| b == last as u8).unwrap_or(0);
                segment.push(B64URL[(index + 1) % 64] as char);
            }
        }
        Damage::Empty(i) => segments[i % 3].clear(),
        Damage::Drop(i) => {
            segments.remove(i % 3);
        }
        Damage::Extra => segments.push("e30".to_owned()),
        Damage::Space => return format!(" {token}\t"),
    }
    segments.join(".")
}

// ---- strategies ------------------------------------------------------------------
//
// Most cases are a plausible token with a few things wrong, so that every
// rule is reached with the others passing; some are hostile throughout.

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\n\t ")]
}

fn trailing() -> impl Strategy<Value = Trailing> {
    prop_oneof![
        45 => Just(Trailing::Nothing),
        3 => Just(Trailing::Whitespace),
        1 => Just(Trailing::Garbage),
    ]
}

fn name_style() -> impl Strategy<Value = NameStyle> {
    prop_oneof![
        180 => Just(NameStyle::Plain),
        16 => Just(NameStyle::Escaped),
        1 => Just(NameStyle::LoneSurrogate),
    ]
}

/// A string that is a valid user id.
fn id_text() -> impl Strategy<Value = String> {
    "[!-+\\--~]{1,16}"
}

/// Strings of every kind: id-like, with whitespace, commas, controls,
/// non-ASCII, and around the 256-character limit.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => id_text(),
        2 => "[ -~]{0,12}",
        2 => "\\PC{0,8}",
        1 => "[\\x00-\\x1f\\x7f\\x{80}-\\x{ff}a]{1,4}",
        1 => (250usize..262, "[!-~ ,]").prop_map(|(n, c)| c.repeat(n)),
        2 => prop::sample::select(vec![
            "alice ", " alice", "alice\t", "alice,bob", "", "ünïcode", "\u{a0}alice", "alice\u{7f}",
            "a\"b", "a\\b", "a;b", "42", "-7", "alice",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn string() -> BoxedStrategy<J> {
    (text(), prop::bool::weighted(0.15))
        .prop_map(|(s, escaped)| J::Str(s, escaped))
        .boxed()
}

fn finite_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        prop::sample::select(vec![
            0.0, -0.0, 0.5, -0.5, 1.5, 42.0, 1e16, 9.3e18, 1.9e19, 1e300
        ]),
    ]
}

/// Values every JSON parser reads the same way.
fn clean_leaf() -> BoxedStrategy<J> {
    prop_oneof![
        1 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        1 => any::<i64>().prop_map(|n| J::Int(n.into())),
        1 => (finite_float(), any::<bool>()).prop_map(|(f, e)| J::Float(f, e)),
        2 => string(),
    ]
    .boxed()
}

/// Values that some readers refuse or read differently: numbers beyond 64
/// bits or beyond f64, `-0`, strings that are no Unicode or not JSON.
fn hostile_leaf() -> BoxedStrategy<J> {
    prop_oneof![
        1 => any::<u64>().prop_map(|n| J::Int(n.into())),
        1 => prop::sample::select(vec![
            i128::from(i64::MIN) - 1,
            i128::from(u64::MAX) + 1,
            10i128.pow(30),
            -(10i128.pow(30)),
        ])
        .prop_map(J::Int),
        1 => Just(J::NegZero),
        1 => Just(J::OutOfRange),
        2 => prop::sample::select(vec![Bad::LoneSurrogate, Bad::InvalidUtf8, Bad::RawControl])
            .prop_map(J::Bad),
    ]
    .boxed()
}

fn json_from(leaf: BoxedStrategy<J>) -> BoxedStrategy<J> {
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            prop::collection::vec((member_name(), name_style(), inner), 0..4).prop_map(|ms| {
                J::Obj(
                    ms.into_iter()
                        .map(|(name, style, value)| Member { name, style, value })
                        .collect(),
                )
            }),
        ]
    })
    .boxed()
}

fn clean_json() -> BoxedStrategy<J> {
    json_from(clean_leaf())
}

/// Any JSON text, hostile parts included.
fn any_json() -> BoxedStrategy<J> {
    prop_oneof![
        12 => clean_json(),
        6 => json_from(prop_oneof![3 => clean_leaf(), 1 => hostile_leaf()].boxed()),
        1 => prop::sample::select(vec![2usize, 10, 150, 400]).prop_map(J::Deep),
    ]
    .boxed()
}

/// Names of members besides the ones a case sets on purpose: random ones,
/// near misses of the real ones, and now and then a real one (a duplicate).
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-z_]{1,8}",
        2 => "\\PC{0,6}",
        2 => prop::sample::select(vec!["Alg", "alg ", "Sub", "EXP", "Exp", "user-id", "typ", "cty"])
            .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "alg", "kid", "crit", "sub", "user_id", "uid", "exp", "nbf", "iat", "jti", "iss", "aud",
        ])
        .prop_map(str::to_owned),
    ]
}

fn with_probability<T: std::fmt::Debug + Clone>(
    p: f64,
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(p, s)
}

/// Extra members of no meaning to paygate.
fn extras() -> impl Strategy<Value = Vec<(String, J)>> {
    let value = prop_oneof![4 => clean_json(), 1 => any_json()];
    prop::collection::vec((member_name(), value), 0..3)
}

fn header_top(settings: &JwtSettings) -> BoxedStrategy<Top> {
    let allowed: Vec<String> = settings
        .algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let alg = prop_oneof![
        20 => (prop::sample::select(allowed), prop::bool::weighted(0.1))
            .prop_map(|(a, escaped)| J::Str(a, escaped)),
        1 => prop::sample::select(vec!["HS256", "HS384", "HS512"])
            .prop_map(|a| J::Str(a.to_owned(), false)),
        1 => prop::sample::select(vec![
            "hs256", "RS256", "ES256", "EdDSA", "PS256", "none", "None", "", "HS256 ", " HS256",
            "HS256\u{0}",
        ])
        .prop_map(|a| J::Str(a.to_owned(), false)),
        1 => any_json(),
    ];
    let typ = prop_oneof![6 => Just(J::Str("JWT".to_owned(), false)), 1 => any_json()];
    let kid = prop_oneof![6 => string(), 1 => Just(J::Null), 1 => any_json()];
    let crit = prop_oneof![
        prop::sample::select(vec![
            J::Null,
            J::Arr(vec![]),
            J::Arr(vec![J::Str("b64".to_owned(), false)]),
            J::Str("b64".to_owned(), false),
            J::Obj(vec![]),
            J::Int(0),
        ]),
        any_json(),
    ];
    let huge =
        prop::sample::select(vec![1500usize, 20_000]).prop_map(|n| J::Str("x".repeat(n), false));
    let members = (
        with_probability(0.97, alg),
        with_probability(0.5, typ),
        with_probability(0.2, kid),
        with_probability(0.08, crit),
        with_probability(0.03, huge),
        extras(),
    );
    let members = members.prop_map(|(alg, typ, kid, crit, huge, extras)| {
        let mut named: Vec<(String, J)> = Vec::new();
        for (name, value) in [
            ("alg", alg),
            ("typ", typ),
            ("kid", kid),
            ("crit", crit),
            ("x5c", huge),
        ] {
            if let Some(value) = value {
                named.push((name.to_owned(), value));
            }
        }
        named.extend(extras);
        named
    });
    top(members)
}

/// A time `offset` seconds from [`NOW`], as a NumericDate or not, with the
/// boundaries of every configured leeway among the offsets. `future` leans
/// the offsets towards the future (for `exp`) or the past (for `nbf`).
fn time_value(future: bool) -> BoxedStrategy<J> {
    let sign = if future { 1 } else { -1 };
    let boundaries = prop::sample::select(vec![
        -3601i64, -61, -60, -59, -31, -30, -29, -6, -5, -4, -1, 0, 1, 4, 5, 6, 29, 30, 31, 59, 60,
        61, 3600,
    ]);
    let offset = prop_oneof![
        3 => prop::sample::select(vec![600i64, 3600, 86_400, 1_000_000_000]).prop_map(move |o| o * sign),
        3 => boundaries,
        1 => -200_000i64..200_000,
    ];
    prop_oneof![
        12 => offset.clone().prop_map(|o| J::Int((NOW + o).into())),
        2 => (offset.clone(), prop::sample::select(vec![0.0, 0.25, 0.4999, 0.5, 0.75, -0.5]), any::<bool>())
            .prop_map(|(o, frac, e)| J::Float((NOW + o) as f64 + frac, e)),
        1 => offset.prop_map(|o| J::Str((NOW + o).to_string(), false)),
        2 => prop::sample::select(vec![
            J::Null,
            J::NegZero,
            J::Int(0),
            J::Int(-1),
            J::Int(i128::from(i64::MAX)),
            J::Int(i128::from(u64::MAX)),
            J::Int(i128::from(u64::MAX) + 1),
            J::Int(i128::from(i64::MIN) - 1),
            J::Float(-0.0, false),
            J::Float(1e300, false),
            J::OutOfRange,
        ]),
        1 => any_json(),
    ]
    .boxed()
}

fn user_value() -> BoxedStrategy<J> {
    prop_oneof![
        10 => (id_text(), prop::bool::weighted(0.1)).prop_map(|(s, e)| J::Str(s, e)),
        6 => string(),
        3 => prop_oneof![
            any::<i64>().prop_map(|n| J::Int(n.into())),
            any::<u64>().prop_map(|n| J::Int(n.into())),
            (0i128..100_000).prop_map(J::Int),
        ],
        2 => any_json(),
    ]
    .boxed()
}

fn issuer_value() -> BoxedStrategy<J> {
    prop_oneof![
        8 => any::<bool>().prop_map(|e| J::Str(ISSUER.to_owned(), e)),
        1 => prop::sample::select(vec!["https://id.example", "https://evil.example/", "HTTPS://id.example/", ""])
            .prop_map(|s| J::Str(s.to_owned(), false)),
        1 => Just(J::Arr(vec![J::Str(ISSUER.to_owned(), false)])),
        1 => any_json(),
    ]
    .boxed()
}

fn audience_value() -> BoxedStrategy<J> {
    let element = prop_oneof![
        3 => Just(J::Str(AUDIENCE.to_owned(), false)),
        3 => prop::sample::select(vec!["web", "API", "api ", "admin"]).prop_map(|s| J::Str(s.to_owned(), false)),
        1 => any_json(),
    ];
    prop_oneof![
        6 => any::<bool>().prop_map(|e| J::Str(AUDIENCE.to_owned(), e)),
        1 => Just(J::Str("web".to_owned(), false)),
        4 => prop::collection::vec(element, 0..4).prop_map(J::Arr),
        1 => any_json(),
    ]
    .boxed()
}

fn claims_top() -> BoxedStrategy<Top> {
    // Registered claims paygate does not check (`sub` is the user claim
    // under some settings, a duplicate then).
    let registered = (
        prop::sample::subsequence(vec!["iat", "jti"], 0..=2),
        with_probability(0.1, Just("sub")),
    )
        .prop_flat_map(|(mut names, sub)| {
            names.extend(sub);
            let values = prop::collection::vec(
                prop_oneof![4 => time_value(false), 1 => any_json()],
                names.len(),
            );
            (Just(names), values)
        })
        .prop_map(|(names, values)| {
            names
                .into_iter()
                .map(str::to_owned)
                .zip(values)
                .collect::<Vec<_>>()
        });
    let members = (
        with_probability(0.95, user_value()),
        with_probability(0.95, time_value(true)),
        with_probability(0.3, time_value(false)),
        with_probability(0.8, issuer_value()),
        with_probability(0.8, audience_value()),
        registered,
        extras(),
    );
    let members = members.prop_map(|(user, exp, nbf, iss, aud, registered, extras)| {
        let mut named: Vec<(String, J)> = Vec::new();
        for (name, value) in [
            (USER, user),
            ("exp", exp),
            ("nbf", nbf),
            ("iss", iss),
            ("aud", aud),
        ] {
            if let Some(value) = value {
                named.push((name.to_owned(), value));
            }
        }
        named.extend(registered);
        named.extend(extras);
        named
    });
    top(members)
}

/// An object of `members` (sometimes one of them twice, in shuffled order,
/// with names written in several ways), or now and then another JSON value
/// at the top.
fn top(members: impl Strategy<Value = Vec<(String, J)>> + 'static) -> BoxedStrategy<Top> {
    let object = (
        members,
        with_probability(0.06, (any::<prop::sample::Index>(), any_json())),
    )
        .prop_flat_map(|(mut named, duplicate)| {
            if let Some((index, value)) = duplicate {
                if !named.is_empty() {
                    let name = named[index.index(named.len())].0.clone();
                    named.push((name, value));
                }
            }
            let n = named.len();
            (
                Just(named).prop_shuffle(),
                prop::collection::vec(name_style(), n),
            )
        })
        .prop_map(|(named, styles)| {
            J::Obj(
                named
                    .into_iter()
                    .zip(styles)
                    .map(|((name, value), style)| Member { name, style, value })
                    .collect(),
            )
        });
    let value = prop_oneof![
        60 => object,
        1 => any_json(),
    ];
    (value, ws(), trailing())
        .prop_map(|(value, ws, trailing)| Top {
            value,
            ws,
            trailing,
        })
        .boxed()
}

fn signing() -> impl Strategy<Value = Signing> {
    prop_oneof![
        24 => Just(Signing::Correct),
        1 => Just(Signing::WrongSecret),
        1 => Just(Signing::WrongAlgorithm),
        1 => Just(Signing::Empty),
    ]
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    let segment = 0usize..3;
    prop_oneof![
        60 => Just(Damage::None),
        1 => segment.clone().prop_map(Damage::Pad),
        1 => (segment.clone(), any::<usize>(), prop::sample::select(vec!['+', '/', '=', '!', ' ', '\t', '.', '*', 'é']))
            .prop_map(|(i, at, c)| Damage::BadChar(i, at, c)),
        1 => segment.clone().prop_map(Damage::Flip),
        1 => segment.clone().prop_map(Damage::Empty),
        1 => segment.prop_map(Damage::Drop),
        1 => Just(Damage::Extra),
        1 => Just(Damage::Space),
    ]
}

fn case() -> BoxedStrategy<Case> {
    let settings = all_settings();
    let token = (0..settings.len())
        .prop_flat_map(move |index| {
            (
                Just(index),
                header_top(&settings[index]),
                claims_top(),
                signing(),
                damage_strategy(),
            )
        })
        .prop_map(|(settings, header, claims, signing, damage)| {
            Case::Token(Box::new(TokenCase {
                settings,
                header,
                claims,
                signing,
                damage,
            }))
        });
    prop_oneof![
        30 => token,
        1 => "[A-Za-z0-9_\\-.=+/ ]{0,120}".prop_map(Case::Garbage),
    ]
    .boxed()
}

// ---- the properties --------------------------------------------------------------

fn verdict(result: &Result<Identity, AuthError>) -> Result<Verdict, TestCaseError> {
    Ok(match result {
        Ok(identity) => Verdict::Valid {
            user_id: identity.user_id.clone(),
            expires_at: identity.expires_at,
        },
        Err(AuthError::Expired) => Verdict::Expired,
        Err(AuthError::Invalid { .. }) => Verdict::Invalid,
        Err(AuthError::Missing) => return Err(TestCaseError::fail("verify answered Missing")),
    })
}

/// Verification never panics and agrees with the model: accepted exactly
/// when the model says valid, with the model's user id and expiry; expired
/// exactly when the model says so. The cached path agrees with the fresh
/// one, an accepted id is a valid header value, and a remembered token is
/// expired once its time (and the leeway) is up.
fn check(case: &Case) -> Result<(), TestCaseError> {
    let harness = harness();
    let index = match case {
        Case::Token(parts) => parts.settings,
        Case::Garbage(_) => 0,
    };
    let (settings, auth) = (&harness.settings[index], &harness.authenticators[index]);
    let (token, undamaged) = build(case, settings);
    let expected = model(case, settings, &token, token != undamaged);

    let fresh = harness
        .runtime
        .block_on(auth.verify_uncached_at(&token, NOW));
    prop_assert_eq!(verdict(&fresh)?, expected.clone(), "token {:?}", token);
    for _ in 0..2 {
        let cached = harness.runtime.block_on(auth.verify_at(&token, NOW));
        let cached = cached.map(|identity| (*identity).clone());
        prop_assert_eq!(
            verdict(&cached)?,
            expected.clone(),
            "cached, token {:?}",
            token
        );
    }
    if let Ok(identity) = &fresh {
        prop_assert!(super::is_valid_user_id(&identity.user_id));
        prop_assert_eq!(identity.user_header.as_bytes(), identity.user_id.as_bytes());
        let after = identity
            .expires_at
            .checked_add(settings.leeway as i64)
            .and_then(|t| t.checked_add(1));
        if let Some(after) = after {
            let late = harness.runtime.block_on(auth.verify_at(&token, after));
            prop_assert_eq!(late.err(), Some(AuthError::Expired));
        }
    }
    Ok(())
}

/// The bearer parser, modelled as words: the value split on spaces and tabs,
/// the first word the scheme, the token everything from the second word to
/// the end of the last.
fn model_bearer(value: &str) -> Option<&str> {
    let words: Vec<&str> = value.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    if words.len() < 2 || !words[0].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let offset = |w: &str| w.as_ptr() as usize - value.as_ptr() as usize;
    let last = words[words.len() - 1];
    Some(&value[offset(words[1])..offset(last) + last.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fast_cases(), ..ProptestConfig::default() })]

    #[test]
    fn hostile_tokens_match_the_model(case in case()) {
        check(&case)?;
    }

    #[test]
    fn bearer_header_parsing_matches_the_model(
        values in prop::collection::vec("[ \t]{0,2}((?i)bearer|basic|bear|bearer[a-z])?[ \t]{0,3}[!-~ \t]{0,12}", 0..3),
    ) {
        let mut headers = HeaderMap::new();
        for value in &values {
            headers.append(http::header::AUTHORIZATION, HeaderValue::from_str(value).expect("value"));
        }
        for value in &values {
            prop_assert_eq!(bearer_token(value), model_bearer(value), "{:?}", value);
        }
        let expected = match values.as_slice() {
            [] => Credential::None,
            [one] => model_bearer(one).map_or(Credential::None, Credential::Token),
            _ => Credential::Ambiguous,
        };
        prop_assert_eq!(authorization_bearer(&headers), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: long_cases(), ..ProptestConfig::default() })]

    #[test]
    #[ignore = "long mode: cargo test --release --lib -- --ignored auth::proptests"]
    fn hostile_tokens_match_the_model_long(case in case()) {
        check(&case)?;
    }

    #[test]
    #[ignore = "long mode: cargo test --release --lib -- --ignored auth::proptests"]
    fn bearer_header_parsing_matches_the_model_long(
        value in "[ \t]{0,2}((?i)bearer|basic)?[ \t]{0,3}[!-~ \t]{0,12}",
    ) {
        prop_assert_eq!(bearer_token(&value), model_bearer(&value), "{:?}", value);
    }
}

/// The generator must reach every verdict often enough for the properties to
/// mean something: a drift to "everything invalid" would pass them vacuously.
#[test]
fn generated_tokens_reach_every_verdict() {
    use proptest::strategy::ValueTree;
    use std::collections::BTreeMap;

    let harness = harness();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = case();
    let (mut valid, mut expired, mut invalid) = (0, 0, 0);
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let total = 2000;
    for _ in 0..total {
        let case = strategy.new_tree(&mut runner).expect("tree").current();
        let index = match &case {
            Case::Token(parts) => parts.settings,
            Case::Garbage(_) => 0,
        };
        let (token, undamaged) = build(&case, &harness.settings[index]);
        match model(&case, &harness.settings[index], &token, token != undamaged) {
            Verdict::Valid { .. } => valid += 1,
            Verdict::Expired => expired += 1,
            Verdict::Invalid => invalid += 1,
        }
        let result = harness
            .runtime
            .block_on(harness.authenticators[index].verify_uncached_at(&token, NOW));
        if let Err(error @ AuthError::Invalid { .. }) = result {
            *reasons.entry(error.reason().as_str()).or_default() += 1;
        }
    }
    eprintln!(
        "valid {valid}, expired {expired}, invalid {invalid} of {total}; reasons {reasons:#?}"
    );
    assert!(valid * 12 >= total, "valid {valid} of {total}");
    assert!(expired * 50 >= total, "expired {expired} of {total}");
    assert!(invalid * 5 >= total, "invalid {invalid} of {total}");
}
