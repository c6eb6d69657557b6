//! Header rewriting between client and upstream: hop-by-hop removal, identity
//! header stripping, `X-Forwarded-*` and `X-Request-Id`.
//!
//! All functions work in place on a `HeaderMap` and allocate nothing in the
//! common case (no hop-by-hop or spoofed headers present).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};
use ipnet::IpNet;

use crate::config::IdentityHeaders;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones proxies still see),
/// as parsed names so that nothing is parsed per request. The index of each is
/// what [`hop_index`] returns.
static HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("proxy-authenticate"),
    // Only meaningful with `Upgrade: h2c` (RFC 7540 §3.2), which is never passed on.
    HeaderName::from_static("http2-settings"),
];

/// Position of `name` in [`HOP_BY_HOP`]. A `match` on the text compiles to a
/// length switch plus one comparison: cheaper than comparing with nine names
/// (this runs for every header of every request and response).
fn hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authorization" => 7,
        "proxy-authenticate" => 8,
        "http2-settings" => 9,
        _ => return None,
    })
}

/// [`hop_index`] for a `Connection` token, whatever its case, without allocating.
fn hop_index_ignoring_case(token: &str) -> Option<usize> {
    let mut lower = [0u8; 20];
    let bytes = token.as_bytes();
    if bytes.len() > lower.len() {
        return None;
    }
    for (to, from) in lower.iter_mut().zip(bytes) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(&lower[..bytes.len()])
        .ok()
        .and_then(hop_index)
}

/// The client's address, with its `X-Forwarded-For` form made once per
/// connection rather than formatted on every request.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub ip_header: HeaderValue,
    /// The connection is TLS: `X-Forwarded-Proto` is `https`.
    pub tls: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Peer {
        let ip_header = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer {
            addr,
            ip_header,
            tls: false,
        }
    }

    /// The same peer, on a TLS connection.
    pub(crate) fn over_tls(self) -> Peer {
        Peer { tls: true, ..self }
    }
}

/// Removes hop-by-hop headers, including every header the `Connection` header
/// names. When `keep_upgrade` is set (a tunnelled WebSocket/Upgrade request or
/// its 101 answer) `Upgrade` and `Connection: upgrade` survive, because the next
/// hop needs them to agree to the protocol switch.
///
/// Returns whether a `Transfer-Encoding` header was there (found by the same
/// scan, so the caller needs no extra lookup).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> bool {
    // One pass over the names present (a handful) finds which hop-by-hop ones
    // are there; only those are then removed.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_index(name.as_str()) {
            present |= 1 << i;
        }
    }
    if present & 1 != 0 {
        // Names listed in `Connection` go too. The usual keep-alive values
        // ("keep-alive", "upgrade") are in the fixed list, so the vector is
        // only allocated for other names ("close" included: RFC 9110 §7.6.1
        // drops any field named by a connection option).
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            for token in value.to_str().unwrap_or("").split(',') {
                let token = token.trim();
                if token.is_empty() || (keep_upgrade && token.eq_ignore_ascii_case("upgrade")) {
                    continue;
                }
                // A fixed hop-by-hop name: if present, the scan above found it.
                if hop_index_ignoring_case(token).is_some() {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    // `TE: trailers` is the one TE value allowed end to end; HTTP/1.1 upstreams
    // do not need it, so it is dropped with the rest.
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0 || (keep_upgrade && (name == UPGRADE || name == CONNECTION)) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    present & (1 << 5) != 0
}

/// True when the request asks for a switch to WebSocket, the one protocol
/// paygate tunnels: `Connection: upgrade` and an `Upgrade` header
/// whose only protocol is `websocket` (any case, optionally versioned). Any
/// other upgrade (`h2c`, `TLS/1.0`, a list) is not one: its headers are
/// removed with the hop-by-hop ones and the request goes on as plain HTTP/1.1,
/// because an upstream that switched to HTTP/2 would then take streams for any
/// path with no check by paygate.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let (Some(upgrade), None) = (upgrades.next(), upgrades.next()) else {
        return false;
    };
    names_websocket(upgrade)
        && headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// True when an upstream's `101` agrees to WebSocket (and nothing else).
pub(crate) fn is_websocket_switch(headers: &HeaderMap) -> bool {
    headers.get(UPGRADE).is_some_and(names_websocket)
}

/// An `Upgrade` value that is exactly one protocol, `websocket` (any case,
/// optionally versioned: `websocket/13`).
fn names_websocket(value: &HeaderValue) -> bool {
    let protocol = value.to_str().unwrap_or("").trim();
    let name = protocol.split_once('/').map_or(protocol, |(name, _)| name);
    name.eq_ignore_ascii_case("websocket")
}

/// Bytes of a DNS name or IPv4 address: letters, digits, `-`, `.`, `_`.
static HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
        i += 1;
    }
    table
};

/// True when `value` is a plain `host[:port]` authority: a DNS name or IPv4
/// address (letters, digits, `-`, `.`, `_`), or a bracketed IPv6 literal, with
/// an optional decimal port. No userinfo, no path, no spaces, nothing a
/// framework could read as another host (`a@b`, `a,b`, `a/b`). The upstream
/// builds absolute URLs from `X-Forwarded-Host`, so nothing else may reach it.
pub(crate) fn is_valid_authority(value: &[u8]) -> bool {
    if value.is_empty() || value.len() > 255 + 6 {
        return false;
    }
    let (host, port) = if value[0] == b'[' {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (&value[..=close], &value[close + 1..])
    } else {
        // One pass with a table: this runs on every forwarded request.
        let end = value
            .iter()
            .position(|&b| !HOST_BYTE[b as usize])
            .unwrap_or(value.len());
        (&value[..end], &value[end..])
    };
    !host.is_empty()
        && match port {
            [] => true,
            [b':', digits @ ..] => {
                !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        }
}

/// Compares a header name with an identity header name the way a framework
/// would read it: case-insensitively and with `_` read as `-` (Django turns both
/// `X-User-Id` and `X_User_Id` into `HTTP_X_USER_ID`).
fn same_identity_name(name: &str, identity: &str) -> bool {
    name.len() == identity.len()
        && name.bytes().zip(identity.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            let b = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
            a == b
        })
}

/// Removes every client-sent header that could be mistaken for an identity header.
pub(crate) fn strip_identity(headers: &mut HeaderMap, identity: &IdentityHeaders) {
    let targets = [
        identity.user_id.as_str(),
        identity.status.as_str(),
        identity.entitlements.as_str(),
    ];
    loop {
        let found = headers
            .keys()
            .find(|k| targets.iter().any(|t| same_identity_name(k.as_str(), t)))
            .cloned();
        match found {
            Some(name) => {
                headers.remove(name);
            }
            None => break,
        }
    }
}

/// Sets `X-Forwarded-For/Proto/Host`. Values the client sent are kept (and the
/// peer appended) only when the peer is a trusted proxy; anyone else could
/// otherwise claim any address.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &Peer,
    trusted_proxies: &[IpNet],
    original_host: Option<&HeaderValue>,
) {
    let ip: IpAddr = peer.addr.ip();
    let trusted = trusted_proxies.iter().any(|net| net.contains(&ip));
    // Several X-Forwarded-For lines are one comma-separated list (RFC 9110 §5.3).
    let mut xff = String::new();
    if trusted {
        for prior in headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let prior = prior.trim();
            if !prior.is_empty() {
                xff.push_str(prior);
                xff.push_str(", ");
            }
        }
    }
    if xff.is_empty() {
        // The common case: just the peer, already formatted for this connection.
        headers.insert(X_FORWARDED_FOR.clone(), peer.ip_header.clone());
    } else if let Ok(value) = HeaderValue::from_str(&(xff + peer.ip_header.to_str().unwrap_or("")))
    {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if peer.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    // A trusted proxy's value is kept only when it is one valid authority.
    let keep_forwarded_host = trusted
        && {
            let mut values = headers.get_all(&X_FORWARDED_HOST).iter();
            matches!((values.next(), values.next()), (Some(v), None) if is_valid_authority(v.as_bytes()))
        };
    if !keep_forwarded_host {
        match original_host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST.clone(), host.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// The request id: the client's if it looks sane (so ids correlate across
/// services), else a fresh one. "Sane" = 1..=128 visible ASCII characters, so a
/// client cannot inject log-breaking or huge values.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let bytes = v.as_bytes();
        if !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic()) {
            return v.clone();
        }
    }
    new_request_id()
}

/// A process-unique id: a random 64-bit prefix chosen at start plus a counter.
/// Unique without a syscall or lock per request.
pub(crate) fn new_request_id() -> HeaderValue {
    // The prefix's 16 hex digits are written once; each id only adds the counter's.
    static PREFIX: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(crate::clock::unix_now());
        h.write_u32(crate::clock::subsec_nanos());
        h.write_u32(std::process::id());
        hex16(h.finish())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    text[..16].copy_from_slice(prefix);
    text[16..].copy_from_slice(&hex16(n));
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// 16 lowercase hex digits of `n` (`format!` showed in profiles).
fn hex16(n: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Joins the `Cookie` fields an HTTP/2 client split into crumbs (browsers do,
/// for header compression) into the one field HTTP/1.1 allows, with `; `
/// between them (RFC 9113 §8.2.3): an HTTP/1.1 application often reads only
/// the first `Cookie` line.
pub(crate) fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let joined = headers
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Replaces `Host` with the upstream's authority (the original goes to `X-Forwarded-Host`).
pub(crate) fn set_host(headers: &mut HeaderMap, authority: &HeaderValue) {
    headers.insert(HOST, authority.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> IdentityHeaders {
        IdentityHeaders {
            user_id: HeaderName::from_static("x-user-id"),
            status: HeaderName::from_static("x-subscription-status"),
            entitlements: HeaderName::from_static("x-entitlements"),
        }
    }

    #[test]
    fn identity_headers_are_stripped_in_every_spelling() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "1".parse().unwrap());
        h.append("x_user_id", "2".parse().unwrap());
        h.append("X_Subscription_Status", "active".parse().unwrap());
        h.append("x-entitlements", "all".parse().unwrap());
        h.append("x-user-idx", "keep".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        strip_identity(&mut h, &identity());
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "x-user-idx"]);
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Secret-Hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["accept"]
        );
    }

    #[test]
    fn connection_tokens_are_matched_whatever_their_case() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Close, KEEP-ALIVE, x-Other".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-other", "1".parse().unwrap());
        h.insert(
            "close",
            "not a hop-by-hop header, but named".parse().unwrap(),
        );
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            vec!["accept"],
            "a field named like a connection option goes too"
        );
        assert_eq!(hop_index_ignoring_case("Proxy-Authorization"), Some(7));
        assert_eq!(
            hop_index_ignoring_case("a-token-longer-than-twenty-bytes"),
            None
        );
    }

    #[test]
    fn upgrade_survives_when_tunnelling() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn only_websocket_is_an_upgrade_and_other_upgrade_headers_go() {
        let upgrade = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                "connection",
                "keep-alive, Upgrade, HTTP2-Settings".parse().unwrap(),
            );
            h.insert("upgrade", value.parse().unwrap());
            h
        };
        assert!(is_websocket_upgrade(&upgrade("websocket")));
        assert!(is_websocket_upgrade(&upgrade("WebSocket")));
        assert!(is_websocket_upgrade(&upgrade("websocket/13")));
        for other in [
            "h2c",
            "TLS/1.0",
            "websocket, h2c",
            "h2c, websocket",
            "websockets",
            "",
        ] {
            assert!(!is_websocket_upgrade(&upgrade(other)), "{other:?}");
        }
        let mut two = upgrade("websocket");
        two.append("upgrade", "h2c".parse().unwrap());
        assert!(
            !is_websocket_upgrade(&two),
            "two Upgrade lines are not one protocol"
        );
        let mut no_connection = upgrade("websocket");
        no_connection.remove("connection");
        assert!(!is_websocket_upgrade(&no_connection));

        let mut h = upgrade("h2c");
        h.insert(
            "http2-settings",
            "AAMAAABkAAQCAAAAAAIAAAAA".parse().unwrap(),
        );
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["accept"]
        );
        assert!(is_websocket_switch(&upgrade("WebSocket")));
        assert!(!is_websocket_switch(&upgrade("h2c")));
    }

    #[test]
    fn only_plain_authorities_are_valid_hosts() {
        for good in [
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "a_b.internal",
            "localhost",
        ] {
            assert!(is_valid_authority(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "",
            "user:pw@evil",
            "user@evil",
            "evil/x",
            "a b",
            "a,b",
            "example.com:",
            "example.com:port",
            "example.com:123456",
            "[::1",
            "[]",
            "[zz]",
            ":80",
            "a:1:2",
            "evil\\x",
            "evil?x",
            "evil#x",
            "[::1]x",
            "é.com",
        ] {
            assert!(!is_valid_authority(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_valid_authority("a".repeat(300).as_bytes()));
    }

    #[test]
    fn forwarded_host_from_a_trusted_proxy_is_kept_only_when_valid() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let host = HeaderValue::from_static("gateway.example.com");
        let peer = Peer::new("10.1.1.1:1234".parse().unwrap());
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
        set_forwarded(&mut h, &peer, &trusted, Some(&host));
        assert_eq!(h["x-forwarded-host"], "app.example.com");
        for bad in ["user:pw@evil", "a.example, b.example"] {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-host", bad.parse().unwrap());
            set_forwarded(&mut h, &peer, &trusted, Some(&host));
            assert_eq!(h["x-forwarded-host"], "gateway.example.com", "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let host = HeaderValue::from_static("app.example.com");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.append("x-forwarded-for", "5.6.7.8".parse().unwrap());
        set_forwarded(
            &mut h,
            &Peer::new("10.1.1.1:1234".parse().unwrap()),
            &trusted,
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8, 10.1.1.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.com");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "evil".parse().unwrap());
        set_forwarded(
            &mut h,
            &Peer::new("192.0.2.7:1234".parse().unwrap()),
            &trusted,
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example.com");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        let peer = Peer::new("192.0.2.7:1234".parse().unwrap()).over_tls();
        set_forwarded(&mut h, &peer, &trusted, Some(&host));
        assert_eq!(h["x-forwarded-proto"], "https", "a TLS connection is https");
    }

    #[test]
    fn http2_cookie_crumbs_become_one_field() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2; c=3".parse().unwrap());
        h.append("cookie", "d=4".parse().unwrap());
        join_cookie_crumbs(&mut h);
        assert_eq!(
            h.get_all("cookie").iter().collect::<Vec<_>>(),
            ["a=1; b=2; c=3; d=4"]
        );
        let mut one = HeaderMap::new();
        one.insert("cookie", "a=1".parse().unwrap());
        join_cookie_crumbs(&mut one);
        assert_eq!(one["cookie"], "a=1");
        join_cookie_crumbs(&mut HeaderMap::new());
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_unique_otherwise() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", "has space".parse().unwrap());
        let a = request_id(&h);
        let b = request_id(&HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .to_str()
            .unwrap()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let (a, b) = (
            u128::from_str_radix(a.to_str().unwrap(), 16).unwrap(),
            u128::from_str_radix(b.to_str().unwrap(), 16).unwrap(),
        );
        assert_eq!(a >> 64, b >> 64, "one process prefix");
        assert_eq!((b as u64).wrapping_sub(a as u64), 1, "then a counter");
    }
}
