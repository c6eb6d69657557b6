//! The access log's own writer: one line per request, formatted straight into
//! a per-thread buffer (no `String` per field, no `format!`) and handed to a
//! writer thread through a bounded in-memory buffer, so a request never waits
//! on stderr. When stderr cannot keep up and the buffer is full, lines are
//! dropped and counted (`paygate_log_lines_dropped_total`) rather than slowing
//! requests down. Whether a line is written at all still follows the log
//! filter (`log.level`, `RUST_LOG`, reloads): the target is `paygate::access`.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The access log's target: filter on it like any other (`paygate::access=off`).
pub(crate) const TARGET: &str = "paygate::access";

/// What one access line records. To add a field, add it here and one
/// `field_*` call in [`AccessLine::write_json`] and [`AccessLine::write_text`].
pub(crate) struct AccessLine<'a> {
    pub(crate) method: &'a str,
    /// As received (not normalized): what an operator greps for.
    pub(crate) path: &'a str,
    pub(crate) http_status: u16,
    pub(crate) decision: &'a str,
    /// `None` for an anonymous request (logged as `-`).
    pub(crate) user_id: Option<&'a str>,
    pub(crate) latency: Duration,
    pub(crate) request_id: &'a str,
    /// The W3C trace id (32 hex digits) the upstream saw.
    pub(crate) trace_id: &'a str,
    pub(crate) peer: IpAddr,
}

/// Whether the filter lets access lines through now: checked before anything
/// is collected for the line.
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "paygate::access", tracing::Level::INFO)
}

/// Writes one access line (the caller checked [`enabled`]).
pub(crate) fn log(line: &AccessLine<'_>) {
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    }
    BUFFER.with(|buffer| {
        // A re-entrant call (impossible today) would find the buffer taken:
        // skip rather than panic.
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            return;
        };
        buffer.clear();
        if json() {
            line.write_json(&mut buffer);
        } else {
            line.write_text(&mut buffer);
        }
        sink().push(&buffer);
    });
}

/// Waits (at most `timeout`) until every line written so far reached stderr:
/// called once the server stopped, so no access line is lost at exit.
pub(crate) fn flush(timeout: Duration) {
    if STARTED.is_completed() {
        SINK.flush(timeout);
    }
}

/// 0: text, 1: JSON; set by `telemetry::install` with the rest of the logging.
static FORMAT: AtomicU8 = AtomicU8::new(0);

pub(super) fn set_json(json: bool) {
    FORMAT.store(u8::from(json), Ordering::Relaxed);
}

fn json() -> bool {
    FORMAT.load(Ordering::Relaxed) == 1
}

impl AccessLine<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(out, SystemTime::now());
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b"\",\"message\":\"request\"");
        json_str(out, "method", self.method);
        json_str(out, "path", self.path);
        json_raw(out, "http_status", |out| {
            push_u64(out, self.http_status.into())
        });
        json_str(out, "decision", self.decision);
        json_str(out, "user_id", self.user_id.unwrap_or("-"));
        json_raw(out, "latency_ms", |out| push_millis(out, self.latency));
        json_str(out, "request_id", self.request_id);
        json_str(out, "trace_id", self.trace_id);
        json_raw(out, "peer", |out| {
            out.push(b'"');
            push_ip(out, self.peer);
            out.push(b'"');
        });
        out.extend_from_slice(b"}\n");
    }

    /// The same fields as `key=value` after tracing's text prefix. Values a
    /// client chose are quoted and escaped, so a crafted one cannot forge a line.
    fn write_text(&self, out: &mut Vec<u8>) {
        push_timestamp(out, SystemTime::now());
        out.extend_from_slice(b"  INFO ");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b": request");
        text_raw(out, "method", self.method.as_bytes());
        text_quoted(out, "path", self.path);
        text_key(out, "http_status");
        push_u64(out, self.http_status.into());
        text_raw(out, "decision", self.decision.as_bytes());
        text_quoted(out, "user_id", self.user_id.unwrap_or("-"));
        text_key(out, "latency_ms");
        push_millis(out, self.latency);
        text_quoted(out, "request_id", self.request_id);
        text_raw(out, "trace_id", self.trace_id.as_bytes());
        text_key(out, "peer");
        push_ip(out, self.peer);
        out.push(b'\n');
    }
}

fn json_str(out: &mut Vec<u8>, key: &str, value: &str) {
    json_raw(out, key, |out| {
        out.push(b'"');
        escape_json(out, value);
        out.push(b'"');
    });
}

fn json_raw(out: &mut Vec<u8>, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    value(out);
}

fn text_key(out: &mut Vec<u8>, key: &str) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
}

fn text_raw(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    text_key(out, key);
    out.extend_from_slice(value);
}

fn text_quoted(out: &mut Vec<u8>, key: &str, value: &str) {
    text_key(out, key);
    out.push(b'"');
    escape_json(out, value);
    out.push(b'"');
}

/// JSON string escaping (RFC 8259): quote, backslash and control characters.
/// Most values need none: they are checked a byte at a time against a table
/// and copied in one piece.
fn escape_json(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let Some(first) = bytes.iter().position(|&b| ESCAPE[usize::from(b)]) else {
        out.extend_from_slice(bytes);
        return;
    };
    out.extend_from_slice(&bytes[..first]);
    escape_from(out, &bytes[first..]);
}

/// Bytes that cannot appear as themselves in a JSON string.
static ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0x7f] = true;
    table
};

#[cold]
fn escape_from(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

/// An IP address as text; IPv4 (the usual case) without the formatting
/// machinery.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                let _ = write!(out, "{v6}");
                return;
            }
        },
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, octet.into());
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Fixed width: `n` as `width` digits with leading zeros.
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Milliseconds with microsecond precision (`1.234`), a JSON number.
fn push_millis(out: &mut Vec<u8>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

/// RFC 3339 UTC with microseconds, the form the subscriber stamps its own
/// lines with (`2026-01-02T03:04:05.678901Z`). Log stamping only: no decision
/// reads this time. The date and time up to the second change once a second:
/// each thread keeps them formatted.
fn push_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let mut formatted = Vec::with_capacity(19);
        push_second(&mut formatted, secs);
        text.copy_from_slice(&formatted);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    out.push(b'.');
    push_padded(out, since.subsec_micros().into(), 6);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` (19 bytes) of Unix second `secs`.
fn push_second(out: &mut Vec<u8>, secs: u64) {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    push_padded(out, year.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_padded(out, month.into(), 2);
    out.push(b'-');
    push_padded(out, day.into(), 2);
    out.push(b'T');
    push_padded(out, of_day / 3600, 2);
    out.push(b':');
    push_padded(out, of_day / 60 % 60, 2);
    out.push(b':');
    push_padded(out, of_day % 60, 2);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Lines waiting for the writer thread, at most this many bytes (about 4,000
/// lines): past it, new lines are dropped and counted.
const CAPACITY: usize = 1 << 20;

/// How long the writer waits after a write before taking the next batch.
const GATHER: Duration = Duration::from_millis(5);

static SINK: Sink = Sink {
    state: Mutex::new(State {
        pending: Vec::new(),
        writer_asleep: false,
        writing: false,
        no_writer: false,
    }),
    lines: Condvar::new(),
    written: Condvar::new(),
};

/// Whether a line was ever written (the writer thread runs from then on).
static STARTED: Once = Once::new();

/// The bounded buffer between requests and the writer thread. Requests append
/// under a short lock (a copy of one line); the writer swaps the whole buffer
/// out and writes it with one call, so a busy server makes few writes.
struct Sink {
    state: Mutex<State>,
    /// The writer waits here for lines.
    lines: Condvar,
    /// [`flush`] waits here for the writer to catch up.
    written: Condvar,
}

struct State {
    pending: Vec<u8>,
    /// The writer sleeps on `lines`: only then is a wake-up (a syscall) needed.
    writer_asleep: bool,
    /// The writer is writing a batch it took out.
    writing: bool,
    /// No writer thread could be started: write in place.
    no_writer: bool,
}

fn sink() -> &'static Sink {
    STARTED.call_once(|| {
        let started = std::thread::Builder::new()
            .name("paygate-log".into())
            .spawn(|| writer(&SINK));
        if started.is_err() {
            SINK.lock().no_writer = true;
        }
    });
    &SINK
}

impl Sink {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.no_writer {
            drop(state);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        if state.pending.len() + line.len() > CAPACITY {
            drop(state);
            crate::metrics::log_line_dropped();
            return;
        }
        state.pending.extend_from_slice(line);
        if state.writer_asleep {
            state.writer_asleep = false;
            drop(state);
            self.lines.notify_one();
        }
    }

    fn flush(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.lock();
        while !state.no_writer && (state.writing || !state.pending.is_empty()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            state = match self.written.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

fn writer(sink: &'static Sink) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        {
            let mut state = sink.lock();
            state.writing = false;
            while state.pending.is_empty() {
                sink.written.notify_all();
                state.writer_asleep = true;
                state = sink.lines.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::swap(&mut state.pending, &mut batch);
            state.writer_asleep = false;
            state.writing = true;
        }
        // stderr is unbuffered: one write for the whole batch.
        let _ = std::io::stderr().lock().write_all(&batch);
        batch.clear();
        // A burst can grow the buffer; give back what a quiet server never needs.
        batch.shrink_to(64 * 1024);
        // Let lines gather: under load the writer is never asleep when a
        // request pushes, so requests make no wake-up calls and a write
        // carries many lines.
        std::thread::sleep(GATHER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            method: "GET",
            path: "/api/\"x\"\\\n",
            http_status: 402,
            decision: "checkout_required",
            user_id: Some("al\u{1}ice"),
            latency: Duration::from_micros(1_234_567),
            request_id: "req-1",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            peer: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn json_line_parses_and_has_every_field() {
        let mut out = Vec::new();
        line().write_json(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "paygate::access");
        assert_eq!(v["message"], "request");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/api/\"x\"\\\n");
        assert_eq!(v["http_status"], 402);
        assert_eq!(v["decision"], "checkout_required");
        assert_eq!(v["user_id"], "al\u{1}ice");
        assert_eq!(v["latency_ms"], 1234.567);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["peer"], "127.0.0.1");
        assert!(v.get("status").is_none());
        let stamp = v["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{stamp}"
        );
    }

    #[test]
    fn text_line_is_one_line() {
        let mut out = Vec::new();
        line().write_text(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("paygate::access: request method=GET path=\"/api/\\\"x\\\"\\\\\\n\" http_status=402"),
            "{text}"
        );
        assert!(text.contains("latency_ms=1234.567 "), "{text}");
    }

    #[test]
    fn a_full_buffer_drops_the_line_instead_of_growing() {
        let sink = Sink {
            state: Mutex::new(State {
                pending: vec![b'x'; CAPACITY - 10],
                writer_asleep: true,
                writing: false,
                no_writer: false,
            }),
            lines: Condvar::new(),
            written: Condvar::new(),
        };
        sink.push(b"0123456789");
        assert_eq!(sink.lock().pending.len(), CAPACITY);
        // The writer was asleep: it is woken once, and only once.
        assert!(!sink.lock().writer_asleep);
        sink.push(b"\n");
        assert_eq!(sink.lock().pending.len(), CAPACITY);
        assert!(crate::metrics::render().contains("paygate_log_lines_dropped_total 1"));
    }

    #[test]
    fn ips_and_escapes_match_the_standard_forms() {
        for ip in ["127.0.0.1", "0.0.0.0", "255.10.0.9", "::1", "2001:db8::7"] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
        let mut out = Vec::new();
        push_ip(&mut out, "::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(out, b"10.1.2.3");
        for text in ["plain", "a\"b\\c\u{0}\u{7f}\u{1f}é\t", "", "\n"] {
            let mut out = vec![b'"'];
            escape_json(&mut out, text);
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, text);
        }
    }

    #[test]
    fn timestamps_match_rfc3339() {
        for secs in [0u64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            let at = UNIX_EPOCH + Duration::new(secs, 5_000);
            let mut out = Vec::new();
            push_timestamp(&mut out, at);
            let expected = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap();
            let text = String::from_utf8(out).unwrap();
            let parsed =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            assert_eq!(parsed.unix_timestamp(), expected.unix_timestamp(), "{text}");
            assert!(text.ends_with(".000005Z"), "{text}");
        }
    }
}
