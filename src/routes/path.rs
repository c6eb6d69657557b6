//! Normalizes a request path so that the path authorized is exactly the path forwarded.
//!
//! The gateway matches routes against the normalized path and forwards that same
//! normalized path upstream, so an attacker cannot reach `/api/banking` through a
//! spelling (`/api/./banking`, `/x/../api/banking`, `/api/%62anking`, `//api/banking`)
//! that the route table would not recognise but the application would. Paths that
//! cannot be made unambiguous (an encoded `/`, a backslash, a NUL, a broken escape,
//! a `..` above the root, a `.` or `..` carrying `;parameters`) are refused rather
//! than guessed at.
//!
//! `;parameters` themselves are kept: they are part of what is forwarded. How the
//! route table reads a segment without them is [`super`]'s business.
//!
//! This module is pure string work: no I/O, no configuration, and no allocation in
//! the common case where the path is already normal.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused. Every variant is answered `400 BAD_PATH`; the
/// variants exist so logs can say which rule the path broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (empty, `*`, or an absolute-form leftover).
    NotAbsolute,
    /// `%2F` / `%2f`: an encoded slash would let a segment hide a path separator
    /// from the route table while some upstreams decode it into a real one.
    EncodedSlash,
    /// A literal `\` or `%5C` / `%5c`: some servers (notably on Windows, and some
    /// frameworks) treat it as a separator, so it is refused like an encoded slash.
    Backslash,
    /// A literal NUL or `%00`: C-based upstreams may truncate the path there.
    Nul,
    /// A `%` not followed by two hexadecimal digits.
    MalformedEscape,
    /// A `..` segment that would climb above the root, e.g. `/..` or `/a/../..`.
    AboveRoot,
    /// A segment that is `.` or `..` once its `;parameters` are removed (`..;x`,
    /// `.;`, `%2e%2e;`, `..%3B`). Servlet containers drop the parameters and then
    /// resolve the dots (`/health/..;/api/banking` is `/api/banking` to Tomcat),
    /// while RFC 3986 sees an ordinary segment; there is no reading both agree on.
    /// An encoded `;` counts too, because some containers decode before they split.
    DotSegmentWithParameters,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self {
            PathError::NotAbsolute => "The request path does not start with '/'.",
            PathError::EncodedSlash => "The request path contains an encoded slash (%2F).",
            PathError::Backslash => "The request path contains a backslash.",
            PathError::Nul => "The request path contains a NUL character.",
            PathError::MalformedEscape => {
                "The request path contains a '%' not followed by two hex digits."
            }
            PathError::AboveRoot => "The request path climbs above the root with '..'.",
            PathError::DotSegmentWithParameters => {
                "The request path has a '.' or '..' segment with ';' parameters."
            }
        };
        f.write_str(reason)
    }
}

impl std::error::Error for PathError {}

/// Normalizes the path part of a request target (no query, no fragment).
///
/// In order: percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are
/// decoded, duplicate slashes are merged, and `.` / `..` segments are resolved as
/// in RFC 3986 §5.2.4, except that a `..` above the root is an error instead of
/// being clamped. Every other escape is kept exactly as sent (`%20`, `%c3%a9`). A
/// trailing slash is preserved, and a final `.` or `..` segment leaves one
/// (`/a/b/.` → `/a/b/`, `/a/b/..` → `/a/`), as RFC 3986 does. A `;parameters`
/// part stays in its segment as sent; a segment that is a dot segment once its
/// parameters are removed is refused ([`PathError::DotSegmentWithParameters`]).
///
/// When a path breaks several rules, a character or escape error (anywhere) is
/// reported first, then a dot segment with parameters, then climbing above root.
///
/// Returns `Cow::Borrowed(raw)` when the path is already normal, which is the
/// common case and costs one scan and no allocation.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Every character- and escape-level error is found by this scan before any
    // segment is resolved, so the error reported for a path does not depend on
    // whether it also needed rewriting.
    if scan(raw)? {
        rewrite(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// What a valid `%XX` escape stands for.
enum Escape {
    /// An unreserved character, which is decoded to this ASCII byte.
    Unreserved(u8),
    /// Any other allowed octet, whose escape is kept as sent.
    Kept(u8),
}

/// Checks the whole path for refused characters and escapes, and reports whether
/// it needs rewriting (an escape to decode, an empty segment before the end, or a
/// `.` / `..` segment). `raw` starts with `/`.
fn scan(raw: &str) -> Result<bool, PathError> {
    let bytes = raw.as_bytes();
    let mut needs_rewrite = false;
    // Index just after the `/` that opened the current segment; byte 0 is a `/`.
    let mut segment_start = 1;
    // The current segment has a `;` or `%3B`, so its name must be checked for
    // dots when it ends. Kept as a flag so ordinary segments cost nothing more.
    let mut has_parameters = false;
    // Reported only once the whole path is free of character errors, so that
    // which error a path gets does not depend on where its segments end.
    let mut dot_with_parameters = false;
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                let segment = &bytes[segment_start..i];
                // A segment that ends here is followed by more path, so an empty
                // one is a `//` to merge; `.` and `..` need resolving anywhere.
                if is_removable(segment) {
                    needs_rewrite = true;
                }
                if has_parameters {
                    dot_with_parameters |= name_is_dot(segment);
                    has_parameters = false;
                }
                segment_start = i + 1;
            }
            b';' => has_parameters = true,
            b'%' => {
                match escape_at(bytes, i)? {
                    Escape::Unreserved(_) => needs_rewrite = true,
                    Escape::Kept(b';') => has_parameters = true,
                    Escape::Kept(_) => {}
                }
                // Skip the two hex digits, which escape_at has just checked.
                i += 2;
            }
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            _ => {}
        }
        i += 1;
    }
    // The last segment may be empty: that is a trailing slash, which is kept.
    let last = &bytes[segment_start..];
    if last == b"." || last == b".." {
        needs_rewrite = true;
    }
    if dot_with_parameters || (has_parameters && name_is_dot(last)) {
        return Err(PathError::DotSegmentWithParameters);
    }
    Ok(needs_rewrite)
}

/// True when the name of `segment` (what comes before its first `;` or `%3B`)
/// is `.` or `..`, each dot written as `.` or `%2E` in either case. Called only
/// for segments that have parameters: without them a dot segment is resolved.
fn name_is_dot(segment: &[u8]) -> bool {
    let mut dots = 0;
    let mut rest = segment;
    loop {
        match rest {
            [b'.', tail @ ..] => rest = tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => rest = tail,
            [] | [b';', ..] | [b'%', b'3', b'b' | b'B', ..] => return matches!(dots, 1 | 2),
            _ => return false,
        }
        dots += 1;
    }
}

/// True for segments that a rewrite drops or resolves when more path follows
/// them: empty (from `//`), `.` and `..`.
fn is_removable(segment: &[u8]) -> bool {
    matches!(segment, b"" | b"." | b"..")
}

/// Decodes the escape whose `%` is at `bytes[i]`, refusing the octets that could
/// change how the path splits into segments or where it ends.
fn escape_at(bytes: &[u8], i: usize) -> Result<Escape, PathError> {
    let (Some(hi), Some(lo)) = (
        bytes.get(i + 1).copied().and_then(hex_value),
        bytes.get(i + 2).copied().and_then(hex_value),
    ) else {
        return Err(PathError::MalformedEscape);
    };
    match (hi << 4) | lo {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        0 => Err(PathError::Nul),
        octet if is_unreserved(octet) => Ok(Escape::Unreserved(octet)),
        octet => Ok(Escape::Kept(octet)),
    }
}

/// The value of one hexadecimal digit (either case).
pub(crate) fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3 unreserved characters: their escaped and literal forms are
/// equivalent, so decoding them never changes what the path means.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Builds the normal form of a path that `scan` accepted and flagged.
///
/// Decoded characters are never `/` (an encoded slash is refused), so the raw
/// path's segments are exactly the decoded path's segments. Each segment is
/// therefore decoded straight onto the output and then kept, dropped or resolved,
/// which needs one allocation in total. `out` holds `/segment` pieces without a
/// trailing slash; an empty `out` is the root.
fn rewrite(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut trailing_slash = false;
    // `raw` starts with the ASCII byte `/`, so index 1 is a character boundary.
    let mut segments = raw.get(1..).unwrap_or_default().split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        let start = out.len();
        out.push('/');
        decode_into(segment, &mut out)?;
        match &out[start + 1..] {
            // An empty segment is a merged `//`, or a trailing slash when last.
            "" | "." => {
                out.truncate(start);
                trailing_slash = is_last;
            }
            ".." => {
                out.truncate(start);
                match out.rfind('/') {
                    Some(parent) => out.truncate(parent),
                    None => return Err(PathError::AboveRoot),
                }
                trailing_slash = is_last;
            }
            _ => trailing_slash = false,
        }
    }
    // The root is written as `/`, and a path that ended in a directory keeps the
    // slash that says so.
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends `segment` to `out` with its unreserved escapes decoded and every other
/// escape copied as sent.
fn decode_into(segment: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    // Start of the literal run not yet copied. Runs are cut only at `%`, which is
    // ASCII, so every cut is a character boundary even in non-ASCII paths; `get`
    // keeps that a checked fact rather than a panic.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        out.push_str(segment.get(copied..i).ok_or(PathError::MalformedEscape)?);
        match escape_at(bytes, i)? {
            Escape::Unreserved(byte) => out.push(char::from(byte)),
            Escape::Kept(_) => {
                out.push_str(segment.get(i..i + 3).ok_or(PathError::MalformedEscape)?);
            }
        }
        i += 3;
        copied = i;
    }
    out.push_str(segment.get(copied..).ok_or(PathError::MalformedEscape)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize(raw).map(Cow::into_owned)
    }

    fn assert_norm(raw: &str, expected: &str) {
        assert_eq!(norm(raw), Ok(expected.to_string()), "normalize({raw:?})");
    }

    fn assert_err(raw: &str, expected: PathError) {
        assert_eq!(norm(raw), Err(expected), "normalize({raw:?})");
    }

    fn is_borrowed(raw: &str) -> bool {
        matches!(normalize(raw), Ok(Cow::Borrowed(_)))
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for raw in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/api/banking",
            "/api/banking/x",
            "/api/banking/",
            "/a.b/c..d/.e/..f/g.",
            "/...",
            "/a/.../b",
            "/%20",
            "/a%20b/%C3%A9",
            "/%c3%a9",
            "/%25",
            "/%3F%23",
            "/caf\u{e9}/\u{1f600}",
            "/a?b",
            "/~user/-_",
        ] {
            match normalize(raw) {
                Ok(Cow::Borrowed(out)) => assert_eq!(out, raw),
                other => panic!("normalize({raw:?}) = {other:?}, want Borrowed"),
            }
        }
    }

    #[test]
    fn changed_paths_are_owned() {
        for raw in ["//", "/a//b", "/./a", "/a/..", "/%41", "/a/%2e"] {
            assert!(
                matches!(normalize(raw), Ok(Cow::Owned(_))),
                "normalize({raw:?}) should allocate"
            );
        }
    }

    #[test]
    fn root() {
        assert_norm("/", "/");
        assert!(is_borrowed("/"));
        assert_norm("//", "/");
        assert_norm("///", "/");
        assert_norm("/.", "/");
        assert_norm("/./", "/");
        assert_norm("/%2e", "/");
        assert_norm("/a/..", "/");
        assert_norm("/a/../", "/");
        assert_norm("/a/b/../..", "/");
    }

    #[test]
    fn not_absolute() {
        assert_err("", PathError::NotAbsolute);
        assert_err("a/b", PathError::NotAbsolute);
        assert_err("*", PathError::NotAbsolute);
        assert_err("http://x/a", PathError::NotAbsolute);
        assert_err("%2Fa", PathError::NotAbsolute);
        assert_err("\u{e9}/a", PathError::NotAbsolute);
        assert_err("./a", PathError::NotAbsolute);
    }

    #[test]
    fn duplicate_slashes_are_merged_anywhere() {
        assert_norm("//a", "/a");
        assert_norm("/a//b", "/a/b");
        assert_norm("/a///b", "/a/b");
        assert_norm("/a/b//", "/a/b/");
        assert_norm("/api//banking", "/api/banking");
        assert_norm("//api//banking//x", "/api/banking/x");
    }

    #[test]
    fn dot_segments() {
        assert_norm("/a/./b", "/a/b");
        assert_norm("/api/./banking", "/api/banking");
        assert_norm("/a/b/../c", "/a/c");
        assert_norm("/api/banking/../banking/x", "/api/banking/x");
        assert_norm("/x/../api/banking", "/api/banking");
        assert_norm("/a/b/c/../../d", "/a/d");
        assert_norm("/./././a", "/a");
    }

    #[test]
    fn trailing_slash_is_preserved() {
        assert_norm("/a/b/", "/a/b/");
        assert!(is_borrowed("/a/b/"));
        assert_norm("/a/b/.", "/a/b/");
        assert_norm("/a/b/..", "/a/");
        assert_norm("/a/b/./", "/a/b/");
        assert_norm("/a/b/../", "/a/");
        assert_norm("/a/./b", "/a/b");
        assert_norm("/a/%2e", "/a/");
        assert_norm("/a/b/%2e%2e", "/a/");
    }

    #[test]
    fn slashes_are_merged_before_dots_resolve() {
        // RFC 3986 alone would pop the empty segment and give `/a/b`; merging
        // first means `..` pops `a`.
        assert_norm("/a//../b", "/b");
        assert_norm("/a//..", "/");
        assert_norm("/a/b//../c", "/a/c");
        assert_norm("/a/.//b", "/a/b");
        assert_err("//..", PathError::AboveRoot);
        assert_err("/a//../..", PathError::AboveRoot);
    }

    #[test]
    fn dots_that_are_not_dot_segments_are_kept() {
        assert_norm("/a./b", "/a./b");
        assert_norm("/.a/b", "/.a/b");
        assert_norm("/a/...", "/a/...");
        assert_norm("/a/..b", "/a/..b");
        assert_norm("/a/b..", "/a/b..");
        assert_norm("/a/%2e%2e%2e", "/a/...");
        assert_norm("/a/.%2e.", "/a/...");
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_norm("/api/%62anking", "/api/banking");
        assert_norm("/%41", "/A");
        assert_norm("/%61%62%63", "/abc");
        assert_norm("/%30%39", "/09");
        assert_norm("/%2D%2d%5F%5f%7E%7e%2E", "/--__~~.");
        assert_norm("/a%2Eb", "/a.b");
        assert_norm("/%7Euser", "/~user");
        assert_norm("/%7a%5A", "/zZ");
    }

    #[test]
    fn decoded_dots_are_dot_segments() {
        assert_norm("/a/%2E%2E/b", "/b");
        assert_norm("/a/%2e%2e/b", "/b");
        assert_norm("/a/.%2e/b", "/b");
        assert_norm("/a/%2e./b", "/b");
        assert_norm("/a/%2e/b", "/a/b");
        assert_norm("/a/%2E/b", "/a/b");
        assert_err("/%2e%2e/etc", PathError::AboveRoot);
        assert_err("/%2e%2e/x", PathError::AboveRoot);
        assert_err("/%2E%2E", PathError::AboveRoot);
    }

    #[test]
    fn other_escapes_are_kept_as_sent() {
        assert_norm("/a%20b", "/a%20b");
        assert_norm("/caf%C3%A9", "/caf%C3%A9");
        assert_norm("/caf%c3%a9", "/caf%c3%a9");
        assert_norm("/%25", "/%25");
        // `%25` is `%` and stays encoded, so it never starts a new escape.
        assert_norm("/%2541", "/%2541");
        assert_norm("/%3f/%23/%3B", "/%3f/%23/%3B");
        assert_norm("/%0A%7F%FF%80", "/%0A%7F%FF%80");
        // Kept and decoded escapes side by side, with the kept case untouched.
        assert_norm("/%41%c3%a9%2e", "/A%c3%a9.");
        assert_norm("/x/%2e%2e/%C3%A9", "/%C3%A9");
    }

    #[test]
    fn encoded_slash_is_refused() {
        assert_err("/%2F", PathError::EncodedSlash);
        assert_err("/%2f", PathError::EncodedSlash);
        assert_err("/api/banking%2Fx", PathError::EncodedSlash);
        assert_err("/a/..%2f", PathError::EncodedSlash);
        assert_err("/a/..%2F..%2Fetc", PathError::EncodedSlash);
    }

    #[test]
    fn backslash_is_refused() {
        assert_err("/a\\b", PathError::Backslash);
        assert_err("\\", PathError::NotAbsolute);
        assert_err("/\\", PathError::Backslash);
        assert_err("/a/..\\..\\etc", PathError::Backslash);
        assert_err("/%5c", PathError::Backslash);
        assert_err("/%5C", PathError::Backslash);
        assert_err("/a%5cb", PathError::Backslash);
    }

    #[test]
    fn nul_is_refused() {
        assert_err("/%00", PathError::Nul);
        assert_err("/a%00.txt", PathError::Nul);
        assert_err("/a\0b", PathError::Nul);
        assert_err("/\0", PathError::Nul);
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_err("/%zz", PathError::MalformedEscape);
        assert_err("/%4", PathError::MalformedEscape);
        assert_err("/%", PathError::MalformedEscape);
        assert_err("/a%", PathError::MalformedEscape);
        assert_err("/%g1", PathError::MalformedEscape);
        assert_err("/%1g", PathError::MalformedEscape);
        assert_err("/%%41", PathError::MalformedEscape);
        assert_err("/%4/", PathError::MalformedEscape);
        assert_err("/%-1", PathError::MalformedEscape);
        assert_err("/%+1", PathError::MalformedEscape);
        // A `%` before a multi-byte character must not slice inside it.
        assert_err("/%\u{e9}", PathError::MalformedEscape);
        assert_err("/%4\u{e9}", PathError::MalformedEscape);
        assert_err("/a/%\u{1f600}", PathError::MalformedEscape);
    }

    #[test]
    fn above_root_is_refused_not_clamped() {
        assert_err("/..", PathError::AboveRoot);
        assert_err("/../", PathError::AboveRoot);
        assert_err("/../a", PathError::AboveRoot);
        assert_err("/a/../..", PathError::AboveRoot);
        assert_err("/a/../../b", PathError::AboveRoot);
        assert_err("/./..", PathError::AboveRoot);
        assert_err("/a/b/../../../c", PathError::AboveRoot);
    }

    #[test]
    fn character_errors_win_over_above_root() {
        // The scan checks every character before any `..` is resolved, so the
        // reported error does not depend on where the `..` sits.
        assert_err("/../%zz", PathError::MalformedEscape);
        assert_err("/../%2f", PathError::EncodedSlash);
        assert_err("/../a\\", PathError::Backslash);
    }

    #[test]
    fn first_character_error_is_reported() {
        assert_err("/%2f%5c", PathError::EncodedSlash);
        assert_err("/%5c%2f", PathError::Backslash);
        assert_err("/\0%zz", PathError::Nul);
        assert_err("/%zz\0", PathError::MalformedEscape);
    }

    #[test]
    fn non_ascii_paths() {
        assert_norm("/caf\u{e9}", "/caf\u{e9}");
        assert_norm("/\u{e9}//\u{e9}/./x", "/\u{e9}/\u{e9}/x");
        assert_norm("/\u{1f600}/../\u{65e5}\u{672c}", "/\u{65e5}\u{672c}");
        assert_norm("/\u{e9}%41\u{e9}", "/\u{e9}A\u{e9}");
        assert_norm("/\u{e9}%20\u{e9}", "/\u{e9}%20\u{e9}");
        assert_norm("/\u{e9}%2e%2e", "/\u{e9}..");
        assert_norm("/\u{e9}/%2e%2e", "/");
        assert_err("/\u{e9}\\", PathError::Backslash);
    }

    #[test]
    fn parameters_are_kept_as_sent() {
        assert!(is_borrowed("/api/banking;jsessionid=x"));
        assert!(is_borrowed("/api;/banking"));
        assert!(is_borrowed("/;jsessionid=x"));
        assert!(is_borrowed("/a;b=c;d/e;f/"));
        assert!(is_borrowed("/a%3Bb/c%3b"));
        assert!(is_borrowed("/...;x/a.;b/..a;c"));
        assert_norm("/a;x/./b;y", "/a;x/b;y");
        assert_norm("/a;%41/%62", "/a;A/b");
        // A segment that has only parameters is an ordinary segment to RFC 3986:
        // `..` removes it like any other.
        assert_norm("/a/;x/../b", "/a/b");
        assert_norm("/a;x/..", "/");
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for raw in [
            "/health/..;/api/banking",
            "/health/..;x/api/banking",
            "/health/..;jsessionid=1/api",
            "/health/..%3b/api/banking",
            "/health/..%3B/api/banking",
            "/health/%2e%2e;/api/banking",
            "/health/%2E%2E%3B/api/banking",
            "/health/.%2e;x/api",
            "/a/.;/b",
            "/a/.;x",
            "/a/%2e;",
            "/..;",
            "/a/..;x/../b",
            "/a/..;/..;/b",
            "/a/..;b;c/d",
        ] {
            assert_err(raw, PathError::DotSegmentWithParameters);
        }
    }

    #[test]
    fn dots_with_parameters_that_are_not_dot_segments_are_kept() {
        for raw in [
            "/a/...;x",
            "/a/..b;x",
            "/a/;../b",
            "/a/x..;y",
            "/a/x.%3B.",
            "/a/%2e%2e%2e;",
        ] {
            let normal = norm(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert!(normal.starts_with("/a/"), "{raw:?} -> {normal:?}");
        }
        // Only `;` and `%3B` start parameters: other escapes are name characters.
        assert_norm("/a/..%3F/b", "/a/..%3F/b");
        assert_norm("/a/..%2C/b", "/a/..%2C/b");
    }

    #[test]
    fn errors_are_ordered_characters_then_parameters_then_above_root() {
        assert_err("/..;/%zz", PathError::MalformedEscape);
        assert_err("/..;/a\\b", PathError::Backslash);
        assert_err("/../..;", PathError::DotSegmentWithParameters);
        assert_err("/..;/..", PathError::DotSegmentWithParameters);
    }

    #[test]
    fn query_is_not_special() {
        // The caller passes the path only; a `?` that reaches us is path data.
        assert_norm("/a?b=1", "/a?b=1");
        assert_norm("/a/./b?x=../y", "/a/b?x=../y");
    }

    #[test]
    fn display_is_a_sentence() {
        for error in [
            PathError::NotAbsolute,
            PathError::EncodedSlash,
            PathError::Backslash,
            PathError::Nul,
            PathError::MalformedEscape,
            PathError::AboveRoot,
            PathError::DotSegmentWithParameters,
        ] {
            let text = error.to_string();
            assert!(text.starts_with("The request path"), "{text}");
            assert!(text.ends_with('.'), "{text}");
            let _: &dyn std::error::Error = &error;
        }
    }
}
