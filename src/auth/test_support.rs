//! What the auth tests share: throwaway keys, settings and token builders,
//! a JWKS endpoint (on testkit's loopback server), and ways to move tokio's
//! clock without waiting for it.
//!
//! Test-only (`#[cfg(test)]`); nothing here may be used by production code.

use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use paygate_testkit::{Reply, TestServer};
use serde_json::{json, Value};

pub(super) use super::identity::TokenReason;
use super::{AuthError, Authenticator, JwtSettings};
use crate::outbound::OutboundClient;

// ---- keys, settings, tokens --------------------------------------------------

pub(super) const SECRET: &[u8] = b"test-secret-of-a-reasonable-length!";

// Throwaway keys generated once with openssl for these tests only.
pub(super) const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC3V0TQfpQC0+sU
CMPlOz33SCOox0h6NSEMTg6zxioi9TDQR1+gN3ExfB/fD1PpqFiv0TY9eQj0sXqo
ZIZ9n3fc3vMSqrD4ingzQ2brPF1BVxaVw0DbXFxHkDyn8AI9ScYIlRYlkkpU3+fT
ieOff8PB2Briuat8WmTrFRTxt2JDbxgcezJ6DCNKRV6mCs2HXoUWJDwljIpx8YyK
LM7XwwhKLsqWgpXj7YNSZYZ9RgQah49qDFVotYwq+4nHEiDnShPHtkILJoQT8Tz1
zryuygzOrzE7e3w15ZQhpeZzh6aV2YJjDXWbmWd4WWiRxJyguKrZIpsEtywEBSqr
Kgxc7BIdAgMBAAECgf9p5VGJZlDx+AUuyZZ/Cl+gl0DzIZ3VJm19LIprS+fT+KuM
kz/IH4XAYsBntJVBv3xDjKqcacVBDAtIdIh2XRWcSbn/hvmRNg2Qi50lyTltJTC1
cn8GdBMpZRfXl7r1jqncOeovBbqnKNTx+1QZhFlCiWeZXyYsLsIQCU4g3x6gdJmj
/Ke2puvE8ixOH7++TGhC+ggVroW3R6HsPJgV5OrRspuggXeG+XIEgysaOerlA7Vk
hckwkFOOTh9AAIWPheX1KbJi4WVW8/uMAxWCgs8wCb3MI1c2iz0jnvGNRpgoITG8
RxaFq0kNnOBDZcItIk0QN5V3Rlitc+3h2meLGWECgYEA9pnYqcznFkWuuFbO4aw4
5nnBtrt2Vo7qrqynF7SIeyM/VRYEIy7s+BvrCbnXSsu9KAz0eLRtMNSKHYXMysMU
eecizPYbPxyJyGOr3Oibmi6GErHxVZB15ZYlJ8CoDcFLgqM6vDlLBDIF7mk1KcKs
xu2eLvZ+CPcucgLXxgEO888CgYEAvlQtMBnNTyreX/r+lv+s1CXu0EKWg3EGejUh
kmW6rsbS6+TtTZyVWPDfEUWvzExwEh3SPgnubWqNpHdAcMVbf5THaUHgJmT7L9CM
46zutlZyDeXqiMz4Rpe/jSAhU/oXGSekonv/AMx5dH+MBrU+zv9HduoSUpkDgHYo
2X6wGlMCgYEAu3YgepRFZ2z5cTCsfGmLp8kPNXY0c4CZbsfZDfAzgEg/MNNXuddG
VSYD+pTH0RgoZ3XRsqCWEPTBOcgo8kpyGmlWzzCXbdan9ymt0HUTNJYBXdzfdQgo
V6tX+2w9VJeIa3rif4ueN0Y/tAlOXLyc02x3P4QqM26UZB89IExVrYkCgYEAjPDi
wZLp0W1KXUMN0p2kyzkH3trggJdrF4ZOxQ1mL9T2Dk9pVybUBZfhZ/X119Dm0NOa
g+xwzj+wghD4/El5l0GCZbStm2D+DYtfOZ4u64GaViZjBkjatdPbulMHuxsgjbUo
mlY+IMZKTnXBKJqA12J89lchmF7NFAzr9Rt2pxcCgYBegOy23CmJAicc4Wn6dTcZ
E75nVkAXc6wF+3bZIxHe3ZT1LdjygWrp4BXbIsIikqShCR918gUHsczBaZo7RMeF
1nu4np/B/MopTmhJWg4+8EcRfNbr4dMpciHBDUaz8dGFdBXTdpBnBjNiHBm4ZRZg
bRjul2IdL3d1Uzc3U40UTg==
-----END PRIVATE KEY-----
";
pub(super) const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAt1dE0H6UAtPrFAjD5Ts9
90gjqMdIejUhDE4Os8YqIvUw0EdfoDdxMXwf3w9T6ahYr9E2PXkI9LF6qGSGfZ93
3N7zEqqw+Ip4M0Nm6zxdQVcWlcNA21xcR5A8p/ACPUnGCJUWJZJKVN/n04njn3/D
wdga4rmrfFpk6xUU8bdiQ28YHHsyegwjSkVepgrNh16FFiQ8JYyKcfGMiizO18MI
Si7KloKV4+2DUmWGfUYEGoePagxVaLWMKvuJxxIg50oTx7ZCCyaEE/E89c68rsoM
zq8xO3t8NeWUIaXmc4emldmCYw11m5lneFlokcScoLiq2SKbBLcsBAUqqyoMXOwS
HQIDAQAB
-----END PUBLIC KEY-----
";
pub(super) const RSA_N: &str = "t1dE0H6UAtPrFAjD5Ts990gjqMdIejUhDE4Os8YqIvUw0EdfoDdxMXwf3w9T6ahYr9E2PXkI9LF6qGSGfZ933N7zEqqw-Ip4M0Nm6zxdQVcWlcNA21xcR5A8p_ACPUnGCJUWJZJKVN_n04njn3_Dwdga4rmrfFpk6xUU8bdiQ28YHHsyegwjSkVepgrNh16FFiQ8JYyKcfGMiizO18MISi7KloKV4-2DUmWGfUYEGoePagxVaLWMKvuJxxIg50oTx7ZCCyaEE_E89c68rsoMzq8xO3t8NeWUIaXmc4emldmCYw11m5lneFlokcScoLiq2SKbBLcsBAUqqyoMXOwSHQ";

pub(super) const EC1_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglgzzXhnQasGPTfox
J/vR8Wfws++xoHzbw0HaWmbl6cuhRANCAARE5X1qKcVOIvK8LjYMqVu1EswJ4uw9
np24H32rxP0QeP3Sger/gYqnlYmY1E743lsrXBTGIaV4hm4yJmZpFg+9
-----END PRIVATE KEY-----
";
pub(super) const EC1_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEROV9ainFTiLyvC42DKlbtRLMCeLs
PZ6duB99q8T9EHj90oHq/4GKp5WJmNRO+N5bK1wUxiGleIZuMiZmaRYPvQ==
-----END PUBLIC KEY-----
";
pub(super) const EC1_X: &str = "ROV9ainFTiLyvC42DKlbtRLMCeLsPZ6duB99q8T9EHg";
pub(super) const EC1_Y: &str = "_dKB6v-BiqeViZjUTvjeWytcFMYhpXiGbjImZmkWD70";

pub(super) const EC2_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkl9ZK1/3FnPK+V8h
jVqZcaZx14XEfiLt3N/UN4lhBJChRANCAASMg10ayB4IZmWAV9EcWxXiLxtbMnLE
rbsIatIOjSnvYsgaOysnbt+diRXFYdO/cLZCQB5THcF8asLV3ZSvdFxM
-----END PRIVATE KEY-----
";
pub(super) const EC2_X: &str = "jINdGsgeCGZlgFfRHFsV4i8bWzJyxK27CGrSDo0p72I";
pub(super) const EC2_Y: &str = "yBo7Kydu352JFcVh079wtkJAHlMdwXxqwtXdlK90XEw";

pub(super) const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHLLhcpKWMHW0RpY3kHfl8+yNE3XsuOIrLrR/1L9nXyI
-----END PRIVATE KEY-----
";
pub(super) const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEASU45WxP9f4gDsytCFYdlijCNdV/gJZpdoeyITByUeXM=
-----END PUBLIC KEY-----
";
pub(super) const ED_X: &str = "SU45WxP9f4gDsytCFYdlijCNdV_gJZpdoeyITByUeXM";

pub(super) fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

pub(super) fn settings(algorithms: &[Algorithm]) -> JwtSettings {
    JwtSettings {
        algorithms: algorithms.to_vec(),
        secret: Some(SECRET.to_vec()),
        public_key_pem: None,
        jwks_url: None,
        discovery: false,
        issuer: None,
        audience: None,
        leeway: 0,
        user_claim: "sub".to_owned(),
        cookie: None,
        jwks_refresh: Duration::from_secs(300),
        jwks_cooldown: Duration::from_secs(30),
    }
}

pub(super) fn public_key_settings(algorithm: Algorithm, pem: &str) -> JwtSettings {
    JwtSettings {
        secret: None,
        public_key_pem: Some(pem.as_bytes().to_vec()),
        ..settings(&[algorithm])
    }
}

pub(super) fn jwks_settings(url: String, algorithms: &[Algorithm]) -> JwtSettings {
    JwtSettings {
        secret: None,
        jwks_url: Some(url),
        ..settings(algorithms)
    }
}

pub(super) async fn authenticator(settings: JwtSettings) -> Authenticator {
    Authenticator::new(settings, OutboundClient::for_tests(Duration::from_secs(5)))
        .await
        .expect("authenticator")
}

pub(super) fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).expect("encode")
}

pub(super) fn hs256(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        None,
        claims,
    )
}

pub(super) fn es256(private: &str, kid: Option<&str>, claims: Value) -> String {
    let key = EncodingKey::from_ec_pem(private.as_bytes()).expect("ec key");
    sign(Algorithm::ES256, &key, kid, claims)
}

pub(super) fn valid_claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600})
}

/// Builds a token from raw JSON header and claims and a raw signature,
/// for the shapes no well-behaved library would produce.
pub(super) fn raw_token(header: &str, claims: &str, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        signature
    )
}

pub(super) fn jwk_ec(kid: &str, x: &str, y: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"})
}

pub(super) fn jwk_set(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Signs the header and payload of `token` with the test secret, so a
/// hand-written payload gets a valid HS256 signature.
pub(super) fn resign_hs256(token: &str) -> String {
    let mut parts = token.splitn(3, '.');
    let (header, payload) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let message = format!("{header}.{payload}");
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .expect("sign");
    format!("{message}.{signature}")
}

/// Signs a hand-written header and claims with the test secret (HS256
/// signature whatever the header says).
pub(super) fn signed_raw(header: &str, claims: &str) -> String {
    resign_hs256(&raw_token(header, claims, ""))
}

// ---- a JWKS endpoint ---------------------------------------------------------

/// Where [`JwksServer`] publishes its key set.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A JWKS endpoint on loopback (testkit's [`TestServer`]) whose document the
/// test can change, answer with an error status, or delay, and which counts
/// the fetches it receives.
pub(super) struct JwksServer {
    server: TestServer,
    /// The answer as last set; every change re-installs the whole route.
    reply: Mutex<Reply>,
}

impl JwksServer {
    pub(super) async fn start(body: String) -> JwksServer {
        let reply = Reply::new(200)
            .header("content-type", "application/json")
            .body(body);
        let server = TestServer::routes([("GET", JWKS_PATH, reply.clone())]).await;
        JwksServer {
            server,
            reply: Mutex::new(reply),
        }
    }

    pub(super) fn url(&self) -> String {
        format!("{}{JWKS_PATH}", self.server.url())
    }

    /// How many fetches the endpoint has received.
    pub(super) fn hits(&self) -> usize {
        self.server.requests().len()
    }

    pub(super) fn set_body(&self, body: String) {
        self.change(|reply| reply.body = body.into());
    }

    pub(super) fn set_status(&self, status: u16) {
        self.change(|reply| reply.status = status);
    }

    pub(super) fn set_delay(&self, delay: Duration) {
        self.change(|reply| reply.delay = delay);
    }

    fn change(&self, edit: impl FnOnce(&mut Reply)) {
        let mut reply = self.reply.lock().expect("reply lock");
        edit(&mut reply);
        self.server.route("GET", JWKS_PATH, reply.clone());
    }
}

// ---- the clock ---------------------------------------------------------------

/// Moves tokio's clock forward by `by` at once, as if that much time had
/// passed: timers due by then fire, and `tokio::time::Instant`, which the
/// JWKS cooldown and the refresher measure with, reads `by` later.
///
/// The clock is paused only for the jump. On a paused clock tokio skips to
/// the next timer whenever the runtime has nothing to run, and a test that
/// waits on a loopback socket would then see an HTTP timeout fire; so no
/// I/O ever runs on a paused clock here. Needs a current-thread runtime
/// (plain `#[tokio::test]`); call it when no fetch is in flight.
pub(super) async fn advance_clock(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// Yields to the runtime until `done` holds, so that other tasks and the
/// sockets they wait on make progress; never waits on the clock. Panics
/// after 10 s of real time, which only a hung test takes.
pub(super) async fn wait_until(mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < give_up,
            "condition not reached within 10 s"
        );
        tokio::task::yield_now().await;
    }
}

/// Runs every task until none can make progress (each waits on a timer not
/// yet due, or on a socket with nothing to read), then returns: on a paused
/// clock tokio moves time only once the runtime is idle, so a 1 ms sleep
/// ends exactly then. For asserting that something did *not* happen.
/// Current-thread runtime only.
pub(super) async fn settle() {
    tokio::time::pause();
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::time::resume();
}

/// An invalid-token refusal for `reason`, to compare results with (refusals
/// compare by reason; the detail is free text).
pub(super) fn invalid(reason: TokenReason) -> AuthError {
    AuthError::invalid(reason, "")
}
