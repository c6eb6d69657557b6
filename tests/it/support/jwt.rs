//! Tokens for the tests: well-formed ones signed with the test secret, and
//! hand-crafted bad ones (`alg: none`, wrong algorithm, tampered payload).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The HS256 secret every test config uses (`jwt.secret`).
pub(crate) const SECRET: &str = "paygate-e2e-secret-0123456789abcdef0123456789";

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `{"sub": user, "iat": now, "exp": now + 1h}`.
pub(crate) fn claims(user: &str) -> Value {
    json!({ "sub": user, "iat": now(), "exp": now() + 3600 })
}

/// A valid HS256 token for `user`.
pub(crate) fn token(user: &str) -> String {
    sign(&claims(user))
}

/// `claims` signed HS256 with [`SECRET`].
pub(crate) fn sign(claims: &Value) -> String {
    sign_hs(Algorithm::HS256, SECRET.as_bytes(), claims)
}

/// `claims` signed with an HMAC algorithm and any secret.
pub(crate) fn sign_hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).expect("encode jwt")
}

/// `claims` signed RS256 with [`RSA_PRIVATE_PEM`].
pub(crate) fn sign_rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("rsa key");
    encode(&Header::new(Algorithm::RS256), claims, &key).expect("encode jwt")
}

/// base64url without padding.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token assembled by hand from a header, claims and raw signature bytes.
pub(crate) fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(signature)
    )
}

/// An unsigned `alg: none` token (empty signature part).
pub(crate) fn alg_none(claims: &Value) -> String {
    forge(&json!({"alg": "none", "typ": "JWT"}), claims, b"")
}

/// `token` with its payload replaced by `claims`, header and signature kept.
pub(crate) fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token: {token}");
    format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// A 2048-bit RSA key pair made for these tests only (`openssl genrsa`).
pub(crate) const RSA_PRIVATE_PEM: &str = include_str!("rsa_private.pem");
pub(crate) const RSA_PUBLIC_PEM: &str = include_str!("rsa_public.pem");
