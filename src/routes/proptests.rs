//! Property tests of the path normalizer and the route matcher against a plain
//! reference model of the rules (docs/configuration.md, "How a request is matched").
//!
//! The model is written to be obviously right rather than fast: it decodes the
//! whole path into a new string, splits it into a `Vec` of segments, resolves
//! dots with a stack, and matches routes by comparing lists of canonical
//! segment names. The generators build hostile paths from pieces chosen to
//! collide (separators, dots in every spelling, `;` and `%3B`, refused and kept
//! escapes, broken escapes, case variants, NUL, multi-byte characters).
//!
//! Each property runs a fast mode in `cargo test` and an `#[ignore]`d long mode
//! (`PAYGATE_PROPTEST_CASES`, default 100,000 cases):
//! `cargo test --release --lib -- --ignored routes::proptests::long_`.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use proptest::prelude::*;
use proptest::sample::select;

use super::path::{normalize, PathError};
use super::{Policy, Requirements, Route, RouteTable, BAD_METHOD_OVERRIDE};

/// Cases per property in the normal test run.
const FAST_CASES: u32 = 1_000;

fn fast() -> ProptestConfig {
    ProptestConfig {
        cases: FAST_CASES,
        ..ProptestConfig::default()
    }
}

/// The long mode's case count: `PAYGATE_PROPTEST_CASES`, else 100,000.
fn long() -> ProptestConfig {
    let cases = std::env::var("PAYGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// The name of a segment: what comes before its first `;` or `%3B` (either
/// case). In a decoded path a `%` only ever starts a kept escape, so looking
/// for the text `%3b` is exact.
fn ref_name(segment: &str) -> &str {
    let lower = segment.to_ascii_lowercase();
    let end = [lower.find(';'), lower.find("%3b")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len());
    &segment[..end]
}

fn ref_has_parameters(segment: &str) -> bool {
    ref_name(segment).len() != segment.len()
}

/// The path and routing rules for a request path, step by step.
fn ref_normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // 1. Characters and escapes, left to right: the first refused one wins.
    let chars: Vec<char> = raw.chars().collect();
    let mut decoded = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => return Err(PathError::Backslash),
            '\0' => return Err(PathError::Nul),
            '%' => {
                let hex: String = chars.iter().skip(i + 1).take(2).collect();
                if hex.chars().count() != 2 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(PathError::MalformedEscape);
                }
                let octet = u8::from_str_radix(&hex, 16).unwrap();
                match char::from(octet) {
                    '/' => return Err(PathError::EncodedSlash),
                    '\\' => return Err(PathError::Backslash),
                    '\0' => return Err(PathError::Nul),
                    c if is_unreserved(c) => decoded.push(c),
                    _ => {
                        decoded.push('%');
                        decoded.push_str(&hex);
                    }
                }
                i += 3;
            }
            c => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    // 2. A segment that is a dot segment once its parameters are removed.
    for segment in &segments {
        if ref_has_parameters(segment) && matches!(ref_name(segment), "." | "..") {
            return Err(PathError::DotSegmentWithParameters);
        }
    }
    // 3. Empty segments merged, dots resolved with a stack (RFC 3986 §5.2.4,
    // except that climbing above the root is refused rather than clamped).
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing = false;
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        match *segment {
            "" | "." => trailing = last,
            ".." => {
                stack.pop().ok_or(PathError::AboveRoot)?;
                trailing = last;
            }
            other => {
                stack.push(other);
                trailing = false;
            }
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    if trailing && !stack.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// A segment as matching compares it: escape hex digits upper-cased (`%c3` and
/// `%C3` are one octet), and every ASCII letter lower-cased when paths are
/// case-insensitive.
fn canonical(segment: &str, ignore_case: bool) -> String {
    let mut out = String::new();
    let mut hex_left = 0;
    for c in segment.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_uppercase());
            hex_left -= 1;
        } else {
            hex_left = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    if ignore_case {
        out = out.to_ascii_lowercase();
    }
    out
}

/// The path as Servlet containers match it: names of the non-empty segments.
fn stripped_view(path: &str, ignore_case: bool) -> Vec<String> {
    path.split('/')
        .map(ref_name)
        .filter(|s| !s.is_empty())
        .map(|s| canonical(s, ignore_case))
        .collect()
}

/// The path as written, as frameworks that keep `;` in a segment match it.
fn literal_view(path: &str, ignore_case: bool) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| canonical(s, ignore_case))
        .collect()
}

fn ref_covers(prefix: &str, view: &[String], ignore_case: bool) -> bool {
    let want = literal_view(prefix, ignore_case);
    view.len() >= want.len() && view[..want.len()] == want[..]
}

fn ref_applies(route: &Route, method: &str) -> bool {
    let method = method.to_ascii_uppercase();
    match &route.methods {
        None => true,
        Some(listed) => listed.iter().any(|m| {
            let m = m.as_str().to_ascii_uppercase();
            m == method || (m == "GET" && method == "HEAD")
        }),
    }
}

/// What identifies a route of a valid table: config refuses two routes with
/// the same prefix and overlapping methods.
type RouteId = Option<(String, Option<Vec<Method>>)>;

fn id_of(route: Option<&Route>) -> RouteId {
    route.map(|r| (r.prefix.clone(), r.methods.clone()))
}

/// The route the rules choose: among those that cover the view and apply to the
/// method, the one with the most segments; then method-restricted before
/// unrestricted; then config order.
fn ref_choose<'a>(
    routes: &'a [Route],
    ignore_case: bool,
    method: &str,
    view: &[String],
) -> Option<&'a Route> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| ref_covers(&r.prefix, view, ignore_case) && ref_applies(r, method))
        .min_by_key(|(i, r)| {
            (
                std::cmp::Reverse(literal_view(&r.prefix, ignore_case).len()),
                r.methods.is_none(),
                *i,
            )
        })
        .map(|(_, r)| r)
}

/// The methods override headers name, or the refusal.
fn ref_override_methods(headers: &[(&str, Vec<u8>)]) -> Result<Vec<String>, &'static str> {
    let mut methods = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "x-http-method-override" | "x-http-method" | "x-method-override"
        ) {
            continue;
        }
        if !value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(BAD_METHOD_OVERRIDE);
        }
        let text = String::from_utf8(value.clone()).unwrap();
        for element in text.split(',') {
            let element = element.trim_matches(|c| c == ' ' || c == '\t');
            if element.is_empty() {
                continue;
            }
            let token = element
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
            if !token {
                return Err(BAD_METHOD_OVERRIDE);
            }
            methods.push(element.to_string());
        }
    }
    Ok(methods)
}

/// Every route the request must pass, and the strictest policy among them.
fn ref_requirements(
    routes: &[Route],
    default: Policy,
    ignore_case: bool,
    method: &str,
    headers: &[(&str, Vec<u8>)],
    path: &str,
) -> Result<(Vec<RouteId>, Policy), &'static str> {
    let mut methods = vec![method.to_string()];
    methods.extend(ref_override_methods(headers)?);
    let mut chosen: Vec<RouteId> = Vec::new();
    let mut policy = Policy::Public;
    for m in &methods {
        for view in [
            stripped_view(path, ignore_case),
            literal_view(path, ignore_case),
        ] {
            let route = ref_choose(routes, ignore_case, m, &view);
            policy = policy.max(route.map_or(default, |r| r.policy));
            let id = id_of(route);
            if !chosen.contains(&id) {
                chosen.push(id);
            }
        }
    }
    Ok((chosen, policy))
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Pieces of hostile paths: separators, dots in every spelling, parameters,
/// refused and kept escapes, broken escapes, case variants, characters the
/// parser would never let through but the normalizer must still judge.
const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    "/",
    "//",
    "a",
    "b",
    "A",
    "api",
    "API",
    "banking",
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2E",
    ";",
    ";",
    ";x",
    ";jsessionid=1",
    "%3b",
    "%3B",
    "..;",
    ".;",
    "..%3b",
    "..%3B",
    ".%3B",
    "%41",
    "%61",
    "%62",
    "%7e",
    "%7E",
    "%2d",
    "%5f",
    "%20",
    "%C3%A9",
    "%c3%a9",
    "%25",
    "%253b",
    "%252e",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%00",
    "\0",
    "%",
    "%4",
    "%zz",
    "%g1",
    "?",
    "#",
    "~",
    "-",
    "_",
    "1",
    "0",
    "\u{e9}",
    "\u{65e5}",
    "\u{1f600}",
    "x.y",
    "=",
    ",",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => select(PIECES).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Mostly absolute paths, sometimes not, so `NotAbsolute` is exercised too.
fn raw_path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.95),
        prop::collection::vec(piece(), 0..14),
    )
        .prop_map(|(absolute, pieces)| {
            let mut raw = if absolute {
                String::from("/")
            } else {
                String::new()
            };
            raw.extend(pieces);
            raw
        })
}

/// Segment names that route prefixes and paths share, with case and escape
/// variants, so that generated paths often fall under generated routes.
const NAMES: &[&str] = &[
    "a",
    "b",
    "api",
    "API",
    "Api",
    "banking",
    "Banking",
    "x",
    "caf%C3%A9",
    "caf%c3%a9",
    "CAF%c3%A9",
    "%E2%82%AC",
    "%e2%82%Ac",
    "~u",
];

/// Pieces of paths for matching: names, separators, parameters, dots.
fn routing_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(NAMES).prop_map(String::from),
        8 => Just("/".to_string()),
        2 => select(&[";", ";x", "%3b", "%3Bv=1", ";jsessionid=A"][..]).prop_map(String::from),
        1 => select(&[".", "..", "%2e", "//", "%61", "%41", "%2F", "z"][..]).prop_map(String::from),
    ]
}

fn routing_path() -> impl Strategy<Value = String> {
    prop::collection::vec(routing_piece(), 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
}

/// A path near one of the table's prefixes: the prefix's segments, each
/// spelled with some letters (and escape hex digits) in the other case, maybe
/// with parameters or a trailing extension of its name, maybe after an
/// empty segment with parameters or a detour through `..`; then any tail.
fn path_near(table: &Table) -> impl Strategy<Value = String> {
    let prefixes: Vec<String> = table
        .routes
        .iter()
        .map(|r| r.prefix.clone())
        .chain(["/".to_string()])
        .collect();
    let edit = (
        any::<u32>(),
        select(&["", "", "", ";", ";x", "%3B", "%3bq=1", "x", "%2e"][..]),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    );
    (
        select(prefixes),
        prop::collection::vec(edit, 4),
        routing_path(),
    )
        .prop_map(|(prefix, edits, tail)| {
            let mut out = String::new();
            for (segment, (flips, suffix, empty_before, detour)) in prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .zip(edits.iter().cycle())
            {
                out.push('/');
                if *empty_before {
                    out.push_str(";e/");
                }
                if *detour {
                    out.push_str("z/../");
                }
                out.extend(segment.chars().enumerate().map(|(i, c)| {
                    if flips & (1 << (i % 32)) != 0 {
                        if c.is_ascii_lowercase() {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    } else {
                        c
                    }
                }));
                out.push_str(suffix);
            }
            out.push_str(&tail);
            out
        })
}

/// A table and a path: mostly near one of its prefixes, sometimes anywhere.
fn table_and_path() -> impl Strategy<Value = (Table, String)> {
    table().prop_flat_map(|table| {
        let path = prop_oneof![3 => path_near(&table), 1 => routing_path()];
        (Just(table), path)
    })
}

const POLICIES: [Policy; 3] = [Policy::Public, Policy::Authenticated, Policy::Subscription];
const ROUTE_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PURGE"];

fn route() -> impl Strategy<Value = Route> {
    (
        prop::collection::vec(select(NAMES), 0..4),
        select(&POLICIES[..]),
        prop::option::weighted(0.4, prop::sample::subsequence(ROUTE_METHODS, 1..3)),
        prop::sample::subsequence(&["export", "pdf"][..], 0..3),
    )
        .prop_map(|(names, policy, methods, features)| Route {
            prefix: format!("/{}", names.join("/")),
            policy,
            features: if policy == Policy::Subscription {
                features.iter().map(|f| f.to_string()).collect()
            } else {
                Vec::new()
            },
            methods: methods.map(|ms| {
                ms.iter()
                    .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                    .collect()
            }),
        })
}

/// Drops routes that config would refuse as duplicates (same prefix, in the
/// table's case mode, and overlapping methods, `GET` covering `HEAD`).
fn valid_routes(routes: Vec<Route>, ignore_case: bool) -> Vec<Route> {
    let same_method = |m: &Method, n: &Method| {
        m == n || matches!((m.as_str(), n.as_str()), ("GET", "HEAD") | ("HEAD", "GET"))
    };
    let mut kept: Vec<Route> = Vec::new();
    for route in routes {
        assert_eq!(
            super::validate_prefix(&route.prefix),
            Ok(()),
            "{:?}",
            route.prefix
        );
        let duplicate = kept.iter().any(|k| {
            let same_prefix =
                canonical(&k.prefix, ignore_case) == canonical(&route.prefix, ignore_case);
            let overlap = match (&k.methods, &route.methods) {
                (None, None) => true,
                (Some(x), Some(y)) => x.iter().any(|m| y.iter().any(|n| same_method(m, n))),
                _ => false,
            };
            same_prefix && overlap
        });
        if !duplicate {
            kept.push(route);
        }
    }
    kept
}

/// A route table as config builds it, with the routes in config order.
#[derive(Debug, Clone)]
struct Table {
    routes: Vec<Route>,
    default: Policy,
    ignore_case: bool,
}

impl Table {
    fn build(&self) -> RouteTable {
        RouteTable::new(self.routes.clone(), self.default)
            .with_case_insensitive_paths(self.ignore_case)
    }
}

fn table() -> impl Strategy<Value = Table> {
    (
        prop::collection::vec(route(), 0..7),
        select(&POLICIES[..]),
        any::<bool>(),
    )
        .prop_map(|(routes, default, ignore_case)| Table {
            routes: valid_routes(routes, ignore_case),
            default,
            ignore_case,
        })
}

/// Request methods as clients spell them, standard or not.
const METHODS: &[&str] = &[
    "GET", "get", "Get", "HEAD", "head", "hEaD", "POST", "post", "Post", "PUT", "DELETE", "delete",
    "PURGE", "purge", "OPTIONS", "X-Y",
];

const OVERRIDE_NAMES: &[&str] = &[
    "X-HTTP-Method-Override",
    "x-http-method",
    "X-Method-Override",
    "X-HTTP-Method-Overrides",
    "X-Other",
];

const OVERRIDE_VALUES: &[&[u8]] = &[
    b"POST",
    b"post",
    b" DELETE ",
    b"PUT, DELETE",
    b"GET",
    b"HEAD",
    b"",
    b",",
    b"GET,,POST",
    b"\tpurge\t",
    b"P(ST",
    b"PO ST",
    b"P\xc3\x96ST",
    b"GET;x",
    b"X-Y",
];

fn overrides() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => prop::collection::vec((select(OVERRIDE_NAMES), select(OVERRIDE_VALUES).prop_map(<[u8]>::to_vec)), 1..4),
    ]
}

fn header_map(headers: &[(&str, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("host", HeaderValue::from_static("paygate.test"));
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    map
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// `normalize` agrees with the model, its output is a fixed point, and the
/// output has no dot segment (also once parameters are removed), no `//`, and
/// no escape of an unreserved character.
fn check_normalize(raw: &str) -> Result<(), TestCaseError> {
    let got = normalize(raw).map(Cow::into_owned);
    prop_assert_eq!(&got, &ref_normalize(raw), "normalize({:?})", raw);
    let Ok(out) = got else { return Ok(()) };
    match normalize(&out) {
        Ok(Cow::Borrowed(again)) => prop_assert_eq!(again, out.as_str()),
        other => prop_assert!(false, "normalize({:?}) = {:?}, from {:?}", out, other, raw),
    }
    prop_assert_eq!(
        matches!(normalize(raw), Ok(Cow::Borrowed(_))),
        out == raw,
        "borrowed iff unchanged: {:?}",
        raw
    );
    prop_assert!(out.starts_with('/'));
    prop_assert!(!out.contains("//"), "{:?} -> {:?}", raw, out);
    for segment in out.split('/') {
        prop_assert!(!matches!(segment, "." | ".."), "{:?} -> {:?}", raw, out);
        prop_assert!(
            !matches!(ref_name(segment), "." | ".."),
            "{:?} -> {:?}",
            raw,
            out
        );
    }
    let decoded_escape = out
        .match_indices('%')
        .filter_map(|(i, _)| out.get(i + 1..i + 3))
        .filter_map(|hex| u8::from_str_radix(hex, 16).ok())
        .any(|octet| is_unreserved(char::from(octet)));
    prop_assert!(!decoded_escape, "{:?} -> {:?}", raw, out);
    if raw.starts_with('/') && raw.ends_with('/') {
        prop_assert!(out.ends_with('/'), "{:?} -> {:?}", raw, out);
    }
    Ok(())
}

/// On a normalized path: `lookup` is the model's choice for the stripped
/// reading, `requirements` are the model's set of routes and strictest policy
/// (own method and override methods, both path readings), refused exactly when
/// the model refuses, and `is_under` / `is_at` agree with the model.
fn check_routing(
    table: &Table,
    method: &str,
    raw: &str,
    headers: &[(&str, Vec<u8>)],
) -> Result<(), TestCaseError> {
    let Ok(path) = normalize(raw) else {
        return Ok(());
    };
    let built = table.build();
    let request_method = Method::from_bytes(method.as_bytes()).unwrap();
    let stripped = stripped_view(&path, table.ignore_case);

    let expected = ref_choose(&table.routes, table.ignore_case, method, &stripped);
    let got = built.lookup(&request_method, &path);
    prop_assert_eq!(
        id_of(got.route),
        id_of(expected),
        "lookup({} {:?}) in {:?}",
        method,
        path,
        table
    );
    prop_assert_eq!(got.policy, expected.map_or(table.default, |r| r.policy));

    let expected = ref_requirements(
        &table.routes,
        table.default,
        table.ignore_case,
        method,
        headers,
        &path,
    );
    let got = built.requirements(&request_method, &header_map(headers), &path);
    match (got, expected) {
        (Ok(got), Ok((routes, policy))) => {
            let got_routes = requirement_ids(&got);
            prop_assert_eq!(
                got_routes.len(),
                routes.len(),
                "{:?} vs {:?} for {} {:?} {:?}",
                got_routes,
                routes,
                method,
                path,
                headers
            );
            for id in &routes {
                prop_assert!(
                    got_routes.contains(id),
                    "missing {:?} in {:?} for {} {:?} {:?}",
                    id,
                    got_routes,
                    method,
                    path,
                    headers
                );
            }
            prop_assert_eq!(got.policy(), policy);
            prop_assert_eq!(got.features().count(), routes.len());
        }
        (Err(got), Err(expected)) => prop_assert_eq!(got, expected),
        (got, expected) => prop_assert!(
            false,
            "requirements {:?} vs model {:?} for {:?}",
            got.map(|r| requirement_ids(&r)),
            expected,
            headers
        ),
    }

    for prefix in table
        .routes
        .iter()
        .map(|r| r.prefix.as_str())
        .chain(["/_paygate", "/stripe/webhook"])
    {
        let want = literal_view(prefix, table.ignore_case);
        prop_assert_eq!(
            built.is_under(&path, prefix),
            ref_covers(prefix, &stripped, table.ignore_case),
            "is_under({:?}, {:?})",
            path,
            prefix
        );
        prop_assert_eq!(
            built.is_at(&path, prefix),
            stripped == want,
            "is_at({:?}, {:?})",
            path,
            prefix
        );
    }
    Ok(())
}

fn requirement_ids(requirements: &Requirements<'_>) -> Vec<RouteId> {
    std::iter::once(requirements.primary())
        .chain(requirements.others())
        .map(|m| id_of(m.route))
        .collect()
}

proptest! {
    #![proptest_config(fast())]

    #[test]
    fn normalize_matches_the_reference(raw in raw_path()) {
        check_normalize(&raw)?;
    }

    #[test]
    fn routing_matches_the_reference(
        (table, raw) in table_and_path(),
        method in select(METHODS),
        headers in overrides(),
    ) {
        check_routing(&table, method, &raw, &headers)?;
    }

    #[test]
    fn routing_of_hostile_paths_matches_the_reference(
        table in table(),
        method in select(METHODS),
        raw in raw_path(),
    ) {
        check_routing(&table, method, &raw, &[])?;
    }
}

proptest! {
    #![proptest_config(long())]

    #[test]
    #[ignore = "long mode: cargo test --release --lib -- --ignored routes::proptests::long_"]
    fn long_normalize_matches_the_reference(raw in raw_path()) {
        check_normalize(&raw)?;
    }

    #[test]
    #[ignore = "long mode: cargo test --release --lib -- --ignored routes::proptests::long_"]
    fn long_routing_matches_the_reference(
        (table, raw) in table_and_path(),
        method in select(METHODS),
        headers in overrides(),
    ) {
        check_routing(&table, method, &raw, &headers)?;
    }

    #[test]
    #[ignore = "long mode: cargo test --release --lib -- --ignored routes::proptests::long_"]
    fn long_routing_of_hostile_paths_matches_the_reference(
        table in table(),
        method in select(METHODS),
        raw in raw_path(),
    ) {
        check_routing(&table, method, &raw, &[])?;
    }
}

/// The model itself, on the examples the rules are written for, so that a
/// wrong model cannot make the properties pass vacuously.
#[test]
fn the_model_reads_the_documented_examples() {
    assert_eq!(
        ref_normalize("/health/..;/api/banking"),
        Err(PathError::DotSegmentWithParameters)
    );
    assert_eq!(
        ref_normalize("/health/..%3B/api"),
        Err(PathError::DotSegmentWithParameters)
    );
    assert_eq!(
        ref_normalize("/a/%2e%2e;x"),
        Err(PathError::DotSegmentWithParameters)
    );
    assert_eq!(ref_normalize("/a/;x/../b").as_deref(), Ok("/a/b"));
    assert_eq!(
        ref_normalize("/api/banking;jsessionid=x").as_deref(),
        Ok("/api/banking;jsessionid=x")
    );
    assert_eq!(stripped_view("/api;/banking;x", false), ["api", "banking"]);
    assert_eq!(
        stripped_view("/;x/API/caf%c3%a9%3Bq", true),
        ["api", "caf%c3%a9"]
    );
    assert_eq!(literal_view("/api;/banking", false), ["api;", "banking"]);
    let export = Route {
        prefix: "/api/reports/export".into(),
        policy: Policy::Subscription,
        features: vec!["export".into()],
        methods: Some(vec![Method::POST]),
    };
    let get_only = Route {
        prefix: "/api".into(),
        policy: Policy::Authenticated,
        features: Vec::new(),
        methods: Some(vec![Method::GET]),
    };
    let routes = [export, get_only];
    let view = stripped_view("/api/reports/export", false);
    assert_eq!(
        ref_choose(&routes, false, "post", &view).map(|r| r.policy),
        Some(Policy::Subscription)
    );
    assert_eq!(
        ref_choose(&routes, false, "HEAD", &view).map(|r| r.policy),
        Some(Policy::Authenticated)
    );
    assert!(ref_choose(&routes, false, "PUT", &view).is_none());
    let headers = [("X-HTTP-Method-Override", b"POST".to_vec())];
    let (chosen, policy) = ref_requirements(
        &routes,
        Policy::Public,
        false,
        "GET",
        &headers,
        "/api/reports/export",
    )
    .unwrap();
    assert_eq!(chosen.len(), 2);
    assert_eq!(policy, Policy::Subscription);
}
