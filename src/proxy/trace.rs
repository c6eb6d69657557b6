//! W3C trace context: reads the client's `traceparent`, and makes the one the
//! upstream gets: the same trace with paygate's own span as the parent, or a
//! new trace when the client sent none (or an invalid one).
//!
//! Runs on every request, so it parses the header bytes in place, draws ids
//! from a counter mixed with a per-process seed (no lock, no syscall) and
//! formats into a fixed buffer: the outgoing header value is the only
//! allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-` + 32 + `-` + 16 + `-` + 2: the length of a version-00 `traceparent`.
const LEN: usize = 55;

/// The `sampled` flag: set on traces paygate starts, since it records every
/// request (access log, and spans when export is on).
const SAMPLED: u8 = 0x01;

/// One request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub(crate) trace_id: [u8; 16],
    /// The client's span, when it sent a valid `traceparent`: the parent of
    /// paygate's span. `None` when paygate started the trace.
    pub(crate) parent_id: Option<[u8; 8]>,
    /// paygate's own span: the parent the upstream sees.
    pub(crate) span_id: [u8; 8],
    pub(crate) flags: u8,
}

/// A valid `traceparent` as a client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) trace_id: [u8; 16],
    pub(crate) parent_id: [u8; 8],
    pub(crate) flags: u8,
}

impl TraceContext {
    /// The context of a request with these headers: the client's trace
    /// continued when its `traceparent` is valid (exactly one, well formed),
    /// else a new trace. Either way paygate's span gets a new id.
    pub(crate) fn from_headers(headers: &HeaderMap) -> TraceContext {
        Self::from_values(headers.get_all(&TRACEPARENT).iter())
    }

    /// [`TraceContext::from_headers`] that also puts this context's
    /// `traceparent` in place of the client's, in one lookup of the name.
    pub(crate) fn replace_in(headers: &mut HeaderMap) -> TraceContext {
        match headers.entry(TRACEPARENT.clone()) {
            Entry::Occupied(mut entry) => {
                let trace = Self::from_values(entry.iter());
                // `insert` replaces every value the client sent.
                entry.insert(trace.header());
                trace
            }
            Entry::Vacant(entry) => {
                let trace = Self::from_values(std::iter::empty());
                entry.insert(trace.header());
                trace
            }
        }
    }

    fn from_values<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> TraceContext {
        let parent = match (values.next(), values.next()) {
            (Some(value), None) => parse(value.as_bytes()),
            // Several are as good as none: which one would the next hop read?
            _ => None,
        };
        match parent {
            Some(parent) => {
                let [span] = draw();
                TraceContext {
                    trace_id: parent.trace_id,
                    parent_id: Some(parent.parent_id),
                    span_id: span_id(span),
                    flags: parent.flags,
                }
            }
            None => {
                let [high, low, span] = draw();
                TraceContext {
                    trace_id: trace_id(high, low),
                    parent_id: None,
                    span_id: span_id(span),
                    flags: SAMPLED,
                }
            }
        }
    }

    /// Whether the client's trace is continued, so its `tracestate` goes on
    /// with it; a `tracestate` without a valid `traceparent` is dropped.
    pub(crate) fn continued(&self) -> bool {
        self.parent_id.is_some()
    }

    /// The `traceparent` the upstream gets: this trace, paygate's span.
    pub(crate) fn header(&self) -> HeaderValue {
        let text = format(&self.trace_id, &self.span_id, self.flags);
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The trace id as 32 lowercase hex digits (the access log's `trace_id`).
    pub(crate) fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex_into(&self.trace_id, &mut out);
        out
    }
}

/// Parses a `traceparent` value. Version 00 must be exactly
/// `00-{32 hex}-{16 hex}-{2 hex}`; a later version may carry more after a
/// `-` (read as version 00, as the W3C spec asks); version `ff`, uppercase
/// hex and all-zero ids are invalid.
pub(crate) fn parse(value: &[u8]) -> Option<Parent> {
    if value.len() < LEN {
        return None;
    }
    let version = hex_byte(value[0], value[1])?;
    match version {
        0xff => return None,
        0x00 if value.len() != LEN => return None,
        _ if value.len() > LEN && value[LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    hex_decode(&value[3..35], &mut trace_id)?;
    let mut parent_id = [0u8; 8];
    hex_decode(&value[36..52], &mut parent_id)?;
    let flags = hex_byte(value[53], value[54])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        parent_id,
        flags,
    })
}

/// A version-00 `traceparent`.
pub(crate) fn format(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> [u8; LEN] {
    let mut out = [b'-'; LEN];
    out[0] = b'0';
    out[1] = b'0';
    hex_into(trace_id, &mut out[3..35]);
    hex_into(span_id, &mut out[36..52]);
    hex_into(&[flags], &mut out[53..55]);
    out
}

/// Each byte's two lowercase hex digits: formatting is one load per byte.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    table
};

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

/// Lowercase hex only: the W3C grammar has no uppercase digits.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    Some((nibble(high)? << 4) | nibble(low)?)
}

fn hex_decode(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

/// The per-process seed, chosen once like the request id's prefix.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(crate::clock::unix_now());
        h.write_u32(crate::clock::subsec_nanos());
        h.write_u32(std::process::id());
        h.finish()
    })
}

/// `N` random-looking 64-bit draws: SplitMix64 over a shared counter (one
/// atomic add for all `N`). Its output is a bijection of the counter, so no two
/// draws of one process are equal (ids cannot collide within a process), and
/// the seed makes processes differ.
fn draw<const N: usize>() -> [u64; N] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let first = COUNTER.fetch_add(N as u64, Ordering::Relaxed);
    let seed = seed();
    std::array::from_fn(|i| {
        mix((first.wrapping_add(i as u64))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(seed))
    })
}

/// SplitMix64's finalizer: a bijection that spreads every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A span id from one draw, never all zero (invalid in the W3C grammar).
fn span_id(draw: u64) -> [u8; 8] {
    draw.max(1).to_be_bytes()
}

/// A trace id from two draws, never all zero: the first half alone is
/// unique within the process.
fn trace_id(high: u64, low: u64) -> [u8; 16] {
    ((u128::from(high.max(1)) << 64) | u128::from(low)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_in_reads_and_replaces_the_clients_traceparent_in_one_go() {
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(client));
        let trace = TraceContext::replace_in(&mut headers);
        assert!(trace.continued());
        assert_eq!(headers.get_all(&TRACEPARENT).iter().count(), 1);
        assert_eq!(headers[&TRACEPARENT], trace.header());
        assert!(headers[&TRACEPARENT]
            .to_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(headers[&TRACEPARENT], client);

        // Two values are as good as none: a new trace, one value left.
        headers.append(&TRACEPARENT, HeaderValue::from_static(client));
        let again = TraceContext::replace_in(&mut headers);
        assert!(!again.continued());
        assert_eq!(headers.get_all(&TRACEPARENT).iter().count(), 1);
        assert_eq!(headers[&TRACEPARENT], again.header());

        // None at all: a new trace is started and sent.
        let mut empty = HeaderMap::new();
        let fresh = TraceContext::replace_in(&mut empty);
        assert!(!fresh.continued());
        assert_eq!(empty[&TRACEPARENT], fresh.header());
    }

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_valid_traceparent_parses() {
        let parent = parse(VALID.as_bytes()).unwrap();
        assert_eq!(
            hex::encode(parent.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(hex::encode(parent.parent_id), "b7ad6b7169203331");
        assert_eq!(parent.flags, 1);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00",
            // all-zero ids
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            // version ff
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            // uppercase hex
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
            // wrong separators or lengths
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
            " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            // a later version with trailing data not after a dash
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future";
        assert_eq!(parse(later.as_bytes()), parse(VALID.as_bytes()));
        let exact = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(parse(exact.as_bytes()).is_some());
    }

    #[test]
    fn the_client_trace_is_continued_with_a_new_span() {
        let ctx = TraceContext::from_headers(&headers(&[("traceparent", VALID)]));
        assert!(ctx.continued());
        assert_eq!(
            &ctx.trace_id_hex(),
            b"0af7651916cd43dd8448eb211c80319c",
            "same trace"
        );
        let sent = ctx.header();
        let sent = parse(sent.as_bytes()).expect("a valid traceparent");
        assert_eq!(sent.trace_id, ctx.trace_id);
        assert_ne!(
            hex::encode(sent.parent_id),
            "b7ad6b7169203331",
            "our own span"
        );
        assert_eq!(sent.parent_id, ctx.span_id);
        assert_eq!(sent.flags, 1);
    }

    #[test]
    fn without_a_valid_traceparent_a_new_trace_starts() {
        for h in [
            headers(&[]),
            headers(&[("traceparent", "garbage")]),
            // two are ambiguous
            headers(&[("traceparent", VALID), ("traceparent", VALID)]),
        ] {
            let ctx = TraceContext::from_headers(&h);
            assert!(!ctx.continued());
            assert_ne!(
                hex::encode(ctx.trace_id),
                "0af7651916cd43dd8448eb211c80319c"
            );
            let sent = parse(ctx.header().as_bytes()).expect("a valid traceparent");
            assert_eq!(sent.trace_id, ctx.trace_id);
            assert_eq!(sent.flags, SAMPLED);
        }
    }

    #[test]
    fn new_ids_differ() {
        let ids: std::collections::HashSet<[u8; 16]> = (0..10_000)
            .map(|_| TraceContext::from_headers(&HeaderMap::new()).trace_id)
            .collect();
        assert_eq!(ids.len(), 10_000);
        let spans: std::collections::HashSet<[u8; 8]> = (0..10_000)
            .map(|_| TraceContext::from_headers(&HeaderMap::new()).span_id)
            .collect();
        assert_eq!(spans.len(), 10_000);
    }

    #[test]
    fn format_and_parse_round_trip_for_any_ids() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        runner
            .run(
                &(any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>()),
                |(trace_id, span_id, flags)| {
                    let text = format(&trace_id, &span_id, flags);
                    let parsed = parse(&text);
                    if trace_id == [0; 16] || span_id == [0; 8] {
                        prop_assert_eq!(parsed, None);
                    } else {
                        prop_assert_eq!(
                            parsed,
                            Some(Parent {
                                trace_id,
                                parent_id: span_id,
                                flags
                            })
                        );
                    }
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_only_the_grammar_parses() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 1024,
            ..Config::default()
        });
        // Mutating one byte of a valid value: valid only if it stays lowercase hex
        // in a hex position (and not the version turned ff, nor ids turned zero).
        runner
            .run(
                &(
                    0usize..LEN,
                    any::<u8>(),
                    proptest::collection::vec(any::<u8>(), 0..80),
                ),
                |(at, byte, random)| {
                    let _ = parse(&random);
                    let mut value = VALID.as_bytes().to_vec();
                    value[at] = byte;
                    let dash = matches!(at, 2 | 35 | 52);
                    let expect_valid = if dash {
                        byte == b'-'
                    } else {
                        nibble(byte).is_some() && !(at < 2 && value[..2] == *b"ff")
                    };
                    prop_assert_eq!(parse(&value).is_some(), expect_valid, "{:?}", value);
                    Ok(())
                },
            )
            .unwrap();
    }
}
