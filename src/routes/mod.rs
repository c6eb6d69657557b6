//! Route table: which policy a request's path and method select.
//!
//! Matching is only sound on paths that went through [`path::normalize`]: the
//! gateway normalizes once, matches the result and forwards that same string.
//! Matching then reads the path the way the application's framework may read it:
//! segment by segment, each without its `;parameters` (Servlet
//! containers drop them), case-insensitively when `access.case_insensitive_paths`
//! is set, and with the hex digits of escapes compared ignoring case (`%c3` and
//! `%C3` are the same octet to every decoder). Methods compare ignoring case, and
//! a route that lists `GET` also applies to `HEAD`.
//!
//! Where frameworks disagree on a reading, every reading must pass: a path with
//! `;parameters` is also matched as written (Django, Express and Go read `;` as an
//! ordinary character), and a method-override header names further methods
//! ([`RouteTable::requirements`]). This module does no I/O, and an ordinary
//! request (no `;`, no override header) allocates nothing.

pub(crate) mod path;
#[cfg(test)]
mod proptests;

use http::header::{HeaderMap, HeaderName};
use http::Method;

/// What a request needs before it is forwarded. Ordered from the
/// weakest to the strictest, so that the strictest of several readings is `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// No token needed; a valid one still sets the identity headers.
    Public,
    /// A valid JWT.
    Authenticated,
    /// A valid JWT and a subscription that grants access now (plus any features
    /// the route lists).
    Subscription,
}

impl Policy {
    /// Parses the config spelling. Case-sensitive, like every other config value.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "public" => Some(Policy::Public),
            "authenticated" => Some(Policy::Authenticated),
            "subscription" => Some(Policy::Subscription),
            _ => None,
        }
    }

    /// The config spelling, also used in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Policy::Public => "public",
            Policy::Authenticated => "authenticated",
            Policy::Subscription => "subscription",
        }
    }
}

/// One `[[routes]]` entry from the config.
#[derive(Debug, Clone)]
pub struct Route {
    /// Normalized path prefix, matched on whole segments (see [`validate_prefix`]).
    pub prefix: String,
    pub policy: Policy,
    /// Features the user's entitlement must all include; empty for none.
    pub features: Vec<String>,
    /// Methods the route applies to, compared ignoring case (`GET` covers `HEAD`
    /// too); `None` means every method. A request with another method falls
    /// through to the next-longest matching route.
    pub methods: Option<Vec<Method>>,
}

/// The outcome of a lookup: which route applied, or the default policy.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'a> {
    /// None when no route matched and the default policy applies
    pub route: Option<&'a Route>,
    pub policy: Policy,
    /// The matched route's features; empty for the default policy.
    pub features: &'a [String],
}

impl<'a> Matched<'a> {
    /// label for logs/metrics: the route prefix, or "default"
    pub fn label(&self) -> &'a str {
        match self.route {
            Some(route) => &route.prefix,
            None => "default",
        }
    }

    /// Same route (by identity), or both the default.
    fn is_same(&self, other: &Matched<'_>) -> bool {
        match (self.route, other.route) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// Every route one request must pass before it is forwarded.
///
/// An ordinary request has one reading: the route its own method and its path
/// (without `;parameters`) select. A request the application could read another
/// way has more, and it is forwarded only if it passes all of them: its path as
/// written when it has `;parameters`, and each method a method-override header
/// names (with both path readings).
#[derive(Debug, Clone)]
pub(crate) struct Requirements<'a> {
    /// The request's own method and its path without parameters: the route
    /// that names the request in logs and metrics.
    primary: Matched<'a>,
    /// The other readings that select a different route, without duplicates.
    /// Empty, and so never allocated, for an ordinary request.
    others: Vec<Matched<'a>>,
}

impl<'a> Requirements<'a> {
    /// The route of the request's own reading.
    #[cfg(test)]
    pub(crate) fn primary(&self) -> &Matched<'a> {
        &self.primary
    }

    /// The other readings' routes (empty for an ordinary request).
    #[cfg(test)]
    pub(crate) fn others(&self) -> &[Matched<'a>] {
        &self.others
    }

    /// Label for logs and metrics: the primary route's prefix, or "default".
    pub(crate) fn label(&self) -> &'a str {
        self.primary.label()
    }

    /// The strictest policy among the readings: a token is needed if any
    /// reading needs one, a subscription if any reading needs one.
    pub(crate) fn policy(&self) -> Policy {
        self.others
            .iter()
            .map(|m| m.policy)
            .fold(self.primary.policy, Policy::max)
    }

    /// Each reading's required features, the primary's first; an entitlement
    /// must satisfy every list.
    pub(crate) fn features(&self) -> impl Iterator<Item = &'a [String]> + '_ {
        std::iter::once(self.primary.features).chain(self.others.iter().map(|m| m.features))
    }

    fn add(&mut self, matched: Matched<'a>) {
        if !matched.is_same(&self.primary) && !self.others.iter().any(|m| m.is_same(&matched)) {
            self.others.push(matched);
        }
    }
}

/// The headers through which frameworks let a client name another method than
/// the request line's (Symfony, ASP.NET, Rack, Express's `method-override`, …).
pub(crate) const METHOD_OVERRIDE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Why [`RouteTable::requirements`] refused a request: answered `400 BAD_REQUEST`.
pub(crate) const BAD_METHOD_OVERRIDE: &str =
    "a method-override header is not a comma-separated list of HTTP methods";

/// The routes of the config, ordered for matching, plus the default policy.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Sorted by prefix length, longest first, and for equal prefixes with
    /// method-restricted routes before unrestricted ones. The first route that
    /// matches is then the answer, so `lookup` is a plain scan. The sort is
    /// stable, so otherwise equal routes keep their config order.
    routes: Vec<Route>,
    /// Policy for paths that no route matches (`access.default`).
    default: Policy,
    /// `access.case_insensitive_paths`: prefixes match ignoring ASCII case, for
    /// applications that route that way (Express, ASP.NET).
    ignore_case: bool,
}

/// What one method selects for one path.
#[derive(Debug, Clone, Copy)]
struct Selection<'a> {
    /// The route of the path read without `;parameters`; `None` is the default.
    stripped: Option<&'a Route>,
    /// When the path read as written selects something else: that route
    /// (`Some(None)` for the default).
    literal: Option<Option<&'a Route>>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>, default: Policy) -> RouteTable {
        routes.sort_by_key(|route| {
            (
                std::cmp::Reverse(route.prefix.len()),
                route.methods.is_none(),
            )
        });
        RouteTable {
            routes,
            default,
            ignore_case: false,
        }
    }

    /// Matches prefixes ignoring ASCII case (`access.case_insensitive_paths`).
    pub fn with_case_insensitive_paths(mut self, ignore_case: bool) -> RouteTable {
        self.ignore_case = ignore_case;
        self
    }

    /// The routes in matching order (longest prefix first), e.g. for `check-config`.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn default_policy(&self) -> Policy {
        self.default
    }

    pub fn case_insensitive_paths(&self) -> bool {
        self.ignore_case
    }

    /// `path` is already normalized.
    ///
    /// Returns the longest route whose prefix covers `path` on whole segments
    /// (each read without its `;parameters`) and whose `methods` (if any) include
    /// `method`, else the default policy. This is one reading of the request;
    /// the gateway asks [`RouteTable::requirements`] for all of them.
    pub fn lookup(&self, method: &Method, path: &str) -> Matched<'_> {
        self.matched(self.select(method, path).stripped)
    }

    /// Every route the request must pass (see [`Requirements`]): its own
    /// method's, the literal path's when it has `;parameters`, and those of each
    /// method named by a [`METHOD_OVERRIDE_HEADERS`] header (several headers and
    /// comma-separated values: every one). `path` is already normalized.
    ///
    /// An override value that is not a comma-separated list of method tokens is
    /// refused ([`BAD_METHOD_OVERRIDE`]) rather than guessed at: frameworks
    /// differ on what they make of it. Empty list elements are skipped.
    #[inline]
    pub(crate) fn requirements<'a>(
        &'a self,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Requirements<'a>, &'static str> {
        let own = self.select(method, path);
        let mut requirements = Requirements {
            primary: self.matched(own.stripped),
            others: Vec::new(),
        };
        // The rare readings are looked at out of line, so the common path is
        // one scan of the routes and one pass over the header names.
        if own.literal.is_some() || headers.keys().any(is_method_override) {
            self.add_other_readings(&mut requirements, own.literal, headers, path)?;
        }
        Ok(requirements)
    }

    /// The readings besides the request's own: its literal path's route, and
    /// every method named by an override header (both path readings each).
    #[cold]
    #[inline(never)]
    fn add_other_readings<'a>(
        &'a self,
        requirements: &mut Requirements<'a>,
        literal: Option<Option<&'a Route>>,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<(), &'static str> {
        if let Some(literal) = literal {
            requirements.add(self.matched(literal));
        }
        for name in &METHOD_OVERRIDE_HEADERS {
            for value in headers.get_all(name) {
                let value = value.to_str().map_err(|_| BAD_METHOD_OVERRIDE)?;
                for named in value.split(',').map(|m| m.trim_matches([' ', '\t'])) {
                    if named.is_empty() {
                        continue;
                    }
                    // `http` accepts exactly the RFC 9110 tokens as methods.
                    let Ok(named) = Method::from_bytes(named.as_bytes()) else {
                        return Err(BAD_METHOD_OVERRIDE);
                    };
                    let selection = self.select(&named, path);
                    requirements.add(self.matched(selection.stripped));
                    if let Some(literal) = selection.literal {
                        requirements.add(self.matched(literal));
                    }
                }
            }
        }
        Ok(())
    }

    /// True when `path` (normalized) is `prefix` or under it, read the way routes
    /// are: without `;parameters`, ignoring case if configured. For the
    /// gateway's own `/_paygate` paths, which must not be forwarded in any
    /// spelling the application could read as them.
    #[inline]
    pub(crate) fn is_under(&self, path: &str, prefix: &str) -> bool {
        cover(prefix.as_bytes(), path.as_bytes(), self.ignore_case) != Cover::No
    }

    /// True when `path` (normalized) names `target` itself, read the way routes
    /// are (parameters, empty segments and a trailing slash do not count). For
    /// the webhook path.
    pub(crate) fn is_at(&self, path: &str, target: &str) -> bool {
        if cover(target.as_bytes(), path.as_bytes(), self.ignore_case) == Cover::No {
            return false;
        }
        let mut names = names(path.as_bytes());
        segments(target.as_bytes()).all(|want| {
            names
                .next()
                .is_some_and(|got| same_segment(want, got, self.ignore_case))
        }) && names.next().is_none()
    }

    fn matched<'a>(&'a self, route: Option<&'a Route>) -> Matched<'a> {
        match route {
            Some(route) => Matched {
                route: Some(route),
                policy: route.policy,
                features: &route.features,
            },
            None => Matched {
                route: None,
                policy: self.default,
                features: &[],
            },
        }
    }

    /// One scan of the routes for one method, giving both path readings. A
    /// prefix has no `;`, so every route that covers the literal path also
    /// covers the stripped one; the literal reading is therefore the first
    /// route at or after the stripped one that covers the path as written.
    #[inline]
    fn select(&self, method: &Method, path: &str) -> Selection<'_> {
        let mut stripped = None;
        for route in &self.routes {
            let cover = cover(route.prefix.as_bytes(), path.as_bytes(), self.ignore_case);
            if cover == Cover::No || !method_applies(route, method) {
                continue;
            }
            match (cover, stripped) {
                (Cover::Both, None) => {
                    return Selection {
                        stripped: Some(route),
                        literal: None,
                    }
                }
                (Cover::Both, Some(first)) => {
                    return Selection {
                        stripped: Some(first),
                        literal: Some(Some(route)),
                    }
                }
                (Cover::Stripped, None) => stripped = Some(route),
                _ => {}
            }
        }
        Selection {
            stripped,
            literal: stripped.map(|_| None),
        }
    }
}

/// Compared as `HeaderName`s: a standard header (most of a request's) differs
/// from these custom ones by its representation alone, without reading text.
fn is_method_override(name: &HeaderName) -> bool {
    METHOD_OVERRIDE_HEADERS.iter().any(|known| known == name)
}

/// RFC 9110 `token`: what a method name is made of.
/// Whether `route` applies to a request with `method`: ASCII case is ignored
/// (frameworks such as Django and hypercorn upper-case the method), and a route
/// that lists `GET` also applies to `HEAD`, which servers answer with the GET
/// handler.
#[inline]
fn method_applies(route: &Route, method: &Method) -> bool {
    match &route.methods {
        Some(methods) => listed_apply(methods, method),
        None => true,
    }
}

/// Out of line: most routes list no methods, and the comparison is not worth
/// setting up for them.
#[inline(never)]
fn listed_apply(methods: &[Method], method: &Method) -> bool {
    methods
        .iter()
        .any(|listed| listed == method || listed_covers(listed, method))
}

/// The comparison behind [`method_applies`] once the methods are not equal:
/// `post` is `POST` (an extension method to `http`), and `GET` covers `HEAD`.
fn listed_covers(listed: &Method, method: &Method) -> bool {
    let (listed, method) = (listed.as_str(), method.as_str());
    listed.eq_ignore_ascii_case(method)
        || (listed.eq_ignore_ascii_case("GET") && method.eq_ignore_ascii_case("HEAD"))
}

/// How a prefix covers a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cover {
    No,
    /// Only once `;parameters` are removed (`/api;x/banking`, `/api/banking;x`).
    Stripped,
    /// As written, and so also without parameters.
    Both,
}

/// How `prefix` (validated: normalized, no `;`) covers `path` on whole segments:
/// `/api/banking` covers `/api/banking`, `/api/banking/x` and, without
/// parameters, `/api/banking;x` and `/api;x/banking`; never `/api/bankingfoo`.
///
/// This runs for every route on every request, so the common case is one
/// comparison up to the first differing byte, eight bytes at a time, and a look
/// at that byte. Before it, path and prefix agree byte for byte, so the path
/// has no parameters there (a prefix has none) and, being normalized, no empty
/// segment. Only a byte that could start parameters (`;`, `%`), be the same
/// letter in another case (case-insensitive paths, escape hex digits), or sit
/// inside an escape (which could be `%3B`) can make another reading cover the
/// path, and sends it to [`cover_slowly`].
#[inline(always)]
fn cover(prefix: &[u8], path: &[u8], ignore_case: bool) -> Cover {
    // No reading makes a path longer (parameters only ever go, and case or
    // escape spelling keeps the length), so a shorter path is never covered.
    if path.len() < prefix.len() {
        return Cover::No;
    }
    let i = common_len(prefix, path);
    let next = path.get(i).copied();
    if i == prefix.len() {
        // A prefix ending in `/` (only the root, once validated) ends on a
        // segment boundary; otherwise the path must not go on with the name.
        return match next {
            None | Some(b'/') => Cover::Both,
            Some(_) if prefix.ends_with(b"/") => Cover::Both,
            Some(b';' | b'%') => cover_slowly(prefix, path, ignore_case),
            Some(_) => Cover::No,
        };
    }
    let (Some(byte), Some(&want)) = (next, prefix.get(i)) else {
        return Cover::No;
    };
    // An escape's `%` just before `i` was the prefix's too; the path's escape
    // may still be `%3B`.
    let in_escape = |back: usize| i >= back && path[i - back] == b'%';
    if byte == b';' || byte == b'%' || byte | 0x20 == want | 0x20 || in_escape(1) || in_escape(2) {
        return cover_slowly(prefix, path, ignore_case);
    }
    Cover::No
}

/// [`cover`] for the paths that need more than one comparison: the path as
/// written, with bytes that differ but count as equal (letters when case is
/// ignored, escape hex digits always); failing that, the segment-wise reading
/// without parameters.
#[cold]
#[inline(never)]
fn cover_slowly(prefix: &[u8], path: &[u8], ignore_case: bool) -> Cover {
    let mut i = common_len(prefix, path);
    while i < prefix.len()
        && path
            .get(i)
            .is_some_and(|&byte| same_letter(prefix, i, byte, ignore_case))
    {
        i += 1;
        i += common_len(&prefix[i..], &path[i..]);
    }
    let literal =
        i == prefix.len() && (prefix.ends_with(b"/") || matches!(path.get(i), None | Some(b'/')));
    if literal {
        Cover::Both
    } else if segments_cover(prefix, path, ignore_case) {
        Cover::Stripped
    } else {
        Cover::No
    }
}

/// How many leading bytes `a` and `b` share, compared a word at a time.
#[inline(always)]
fn common_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while let (Some(&x), Some(&y)) = (a[i..].first_chunk::<8>(), b[i..].first_chunk::<8>()) {
        let diff = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// True when two bytes at `prefix[i]` and in the path count as equal although
/// they differ: letters ignoring case when configured, and the hex digits of an
/// escape always (`prefix[i-1]` or `prefix[i-2]` is its `%`).
fn same_letter(prefix: &[u8], i: usize, byte: u8, ignore_case: bool) -> bool {
    prefix[i].eq_ignore_ascii_case(&byte)
        && (ignore_case || (i >= 1 && prefix[i - 1] == b'%') || (i >= 2 && prefix[i - 2] == b'%'))
}

/// `;` or an encoded `;` (`%3B`, either case), which starts a segment's parameters.
fn starts_parameters(rest: &[u8]) -> bool {
    match rest {
        [b';', ..] => true,
        [b'%', b'3', b, ..] => b.eq_ignore_ascii_case(&b'b'),
        _ => false,
    }
}

/// The segment-wise reading: `prefix`'s segments against the names of `path`'s
/// non-empty segments.
fn segments_cover(prefix: &[u8], path: &[u8], ignore_case: bool) -> bool {
    let mut names = names(path);
    segments(prefix).all(|want| {
        names
            .next()
            .is_some_and(|got| same_segment(want, got, ignore_case))
    })
}

/// The non-empty segments of a prefix.
fn segments(prefix: &[u8]) -> impl Iterator<Item = &[u8]> {
    prefix.split(|&b| b == b'/').filter(|s| !s.is_empty())
}

/// The path's segments as a Servlet container matches them: each without its
/// `;parameters`, and those left empty dropped (it merges the `//` that
/// removing `/;x` leaves).
fn names(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .map(name)
        .filter(|s| !s.is_empty())
}

/// A segment without its parameters: what comes before its first `;` or `%3B`.
fn name(segment: &[u8]) -> &[u8] {
    let end = (0..segment.len())
        .find(|&i| starts_parameters(&segment[i..]))
        .unwrap_or(segment.len());
    &segment[..end]
}

fn same_segment(want: &[u8], got: &[u8], ignore_case: bool) -> bool {
    want.len() == got.len()
        && want
            .iter()
            .zip(got)
            .enumerate()
            .all(|(i, (&w, &g))| w == g || same_letter(want, i, g, ignore_case))
}

/// Validation helper for config: returns Err(reason) if `prefix` is not a usable
/// route prefix.
///
/// A usable prefix starts with `/`, is already in the form [`path::normalize`]
/// produces (otherwise no normalized request path could ever match it), has no
/// `?` or `#` (routes match paths, never queries), has no trailing slash except
/// the root `/` itself (matching is by segment, so `/api/` would mean `/api`),
/// has no `;` or `%3B` (they start a segment's parameters, which matching
/// ignores), and has no whitespace or control characters, which `http` never
/// lets into a request path. The reason is a lowercase phrase for the config
/// error line.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty; use \"/\" to match every path".to_string());
    }
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with '/'"));
    }
    if let Some(c) = prefix.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!(
            "{prefix:?} contains {c:?}; a prefix matches the path only, not a query or fragment"
        ));
    }
    if (0..prefix.len()).any(|i| starts_parameters(&prefix.as_bytes()[i..])) {
        return Err(format!(
            "{prefix:?} contains ';' or '%3B', which start path parameters; matching ignores parameters, so a prefix cannot name them"
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| c.is_ascii_control() || c.is_whitespace())
    {
        return Err(format!(
            "{prefix:?} contains {c:?}, which never appears in a request path; percent-encode it"
        ));
    }
    let normal = path::normalize(prefix)
        .map_err(|error| format!("{prefix:?} is not a valid path: {error}"))?;
    // Matching is by whole segments, so a trailing slash adds nothing; the
    // suggestion drops it so that following it gives a prefix that passes.
    let suggested = match normal.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    if suggested != prefix {
        let problem = if normal == prefix {
            "must not end with '/' (prefixes match whole segments)"
        } else {
            "is not in normalized form"
        };
        return Err(format!("{prefix:?} {problem}; write it as {suggested:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, policy: Policy) -> Route {
        Route {
            prefix: prefix.to_string(),
            policy,
            features: Vec::new(),
            methods: None,
        }
    }

    fn with_features(mut route: Route, features: &[&str]) -> Route {
        route.features = features.iter().map(|f| f.to_string()).collect();
        route
    }

    fn with_methods(mut route: Route, methods: &[Method]) -> Route {
        route.methods = Some(methods.to_vec());
        route
    }

    /// The example table of `config/paygate.toml`, with `default = "subscription"`.
    fn spec_table() -> RouteTable {
        RouteTable::new(
            vec![
                route("/health", Policy::Public),
                route("/api/subscriptions", Policy::Authenticated),
                route("/api/banking", Policy::Subscription),
                with_methods(
                    with_features(
                        route("/api/reports/export", Policy::Subscription),
                        &["export"],
                    ),
                    &[Method::POST],
                ),
            ],
            Policy::Subscription,
        )
    }

    fn label(table: &RouteTable, method: &Method, path: &str) -> String {
        table.lookup(method, path).label().to_string()
    }

    #[test]
    fn policy_parse_and_as_str_round_trip() {
        for policy in [Policy::Public, Policy::Authenticated, Policy::Subscription] {
            assert_eq!(Policy::parse(policy.as_str()), Some(policy));
        }
        assert_eq!(Policy::parse("public"), Some(Policy::Public));
        assert_eq!(Policy::parse("authenticated"), Some(Policy::Authenticated));
        assert_eq!(Policy::parse("subscription"), Some(Policy::Subscription));
        for bad in [
            "",
            "Public",
            "PUBLIC",
            " public",
            "auth",
            "subscriptions",
            "none",
        ] {
            assert_eq!(Policy::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let table = RouteTable::new(
            vec![route("/api/banking", Policy::Public)],
            Policy::Subscription,
        );
        for path in [
            "/api/banking",
            "/api/banking/",
            "/api/banking/x",
            "/api/banking/x/y",
        ] {
            assert_eq!(label(&table, &Method::GET, path), "/api/banking", "{path}");
        }
        for path in [
            "/api/bankingfoo",
            "/api/banking.json",
            "/api/bankin",
            "/api",
            "/api/",
            "/",
            "/x/api/banking",
        ] {
            assert_eq!(label(&table, &Method::GET, path), "default", "{path}");
        }
    }

    #[test]
    fn matching_is_case_sensitive() {
        let table = spec_table();
        let matched = table.lookup(&Method::GET, "/api/BANKING");
        assert!(matched.route.is_none());
        assert_eq!(matched.label(), "default");
        assert_eq!(label(&table, &Method::GET, "/Health"), "default");
    }

    #[test]
    fn longest_prefix_wins_whatever_the_config_order() {
        let routes = vec![
            route("/api", Policy::Authenticated),
            route("/api/banking/public", Policy::Public),
            route("/api/banking", Policy::Subscription),
        ];
        let mut reversed = routes.clone();
        reversed.reverse();
        for routes in [routes, reversed] {
            let table = RouteTable::new(routes, Policy::Public);
            let at = |path| table.lookup(&Method::GET, path);
            assert_eq!(at("/api/banking/public/x").policy, Policy::Public);
            assert_eq!(at("/api/banking/public").label(), "/api/banking/public");
            assert_eq!(at("/api/banking/publicity").label(), "/api/banking");
            assert_eq!(at("/api/banking/x").policy, Policy::Subscription);
            assert_eq!(at("/api/banking").label(), "/api/banking");
            assert_eq!(at("/api/other").policy, Policy::Authenticated);
            assert_eq!(at("/api").label(), "/api");
            assert_eq!(at("/apix").label(), "default");
            assert_eq!(at("/other").policy, Policy::Public);
        }
    }

    #[test]
    fn routes_are_kept_longest_first() {
        let table = RouteTable::new(
            vec![
                route("/", Policy::Public),
                route("/a/b", Policy::Public),
                route("/a", Policy::Public),
                route("/a/bc", Policy::Public),
            ],
            Policy::Public,
        );
        let prefixes: Vec<&str> = table.routes().iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/a/bc", "/a/b", "/a", "/"]);
    }

    #[test]
    fn default_applies_when_nothing_matches() {
        for default in [Policy::Public, Policy::Authenticated, Policy::Subscription] {
            let table = RouteTable::new(vec![route("/health", Policy::Public)], default);
            assert_eq!(table.default_policy(), default);
            let matched = table.lookup(&Method::GET, "/api/x");
            assert!(matched.route.is_none());
            assert_eq!(matched.policy, default);
            assert!(matched.features.is_empty());
            assert_eq!(matched.label(), "default");
        }
    }

    #[test]
    fn empty_table_uses_default() {
        let table = RouteTable::new(Vec::new(), Policy::Authenticated);
        assert!(table.routes().is_empty());
        let matched = table.lookup(&Method::DELETE, "/");
        assert_eq!(matched.policy, Policy::Authenticated);
        assert_eq!(matched.label(), "default");
    }

    #[test]
    fn root_prefix_matches_everything() {
        let table = RouteTable::new(
            vec![
                route("/", Policy::Authenticated),
                route("/health", Policy::Public),
            ],
            Policy::Subscription,
        );
        for path in ["/", "/x", "/api/banking", "/healthz", "/health/"] {
            let matched = table.lookup(&Method::GET, path);
            let expected = if path.starts_with("/health/") {
                "/health"
            } else {
                "/"
            };
            assert_eq!(matched.label(), expected, "{path}");
        }
        assert_eq!(
            table.lookup(&Method::GET, "/anything").policy,
            Policy::Authenticated
        );
        assert_eq!(table.lookup(&Method::GET, "/health").policy, Policy::Public);
    }

    #[test]
    fn methods_narrow_a_route_and_fall_through() {
        let table = spec_table();
        let post = table.lookup(&Method::POST, "/api/reports/export");
        assert_eq!(post.label(), "/api/reports/export");
        assert_eq!(post.policy, Policy::Subscription);
        assert_eq!(post.features, ["export".to_string()]);
        assert_eq!(
            table
                .lookup(&Method::POST, "/api/reports/export/csv")
                .features,
            ["export"]
        );

        // GET is not listed, so the route does not apply and, with no shorter
        // route covering it, the default policy does.
        let get = table.lookup(&Method::GET, "/api/reports/export");
        assert!(get.route.is_none());
        assert_eq!(get.policy, Policy::Subscription);
        assert!(get.features.is_empty());
    }

    #[test]
    fn methods_fall_through_to_the_next_longest_route() {
        let table = RouteTable::new(
            vec![
                route("/api", Policy::Authenticated),
                with_methods(
                    route("/api/reports", Policy::Public),
                    &[Method::GET, Method::HEAD],
                ),
                with_methods(
                    with_features(
                        route("/api/reports/export", Policy::Subscription),
                        &["export"],
                    ),
                    &[Method::POST],
                ),
            ],
            Policy::Subscription,
        );
        let at = |method: Method, path| table.lookup(&method, path).label().to_string();
        assert_eq!(
            at(Method::POST, "/api/reports/export"),
            "/api/reports/export"
        );
        assert_eq!(at(Method::GET, "/api/reports/export"), "/api/reports");
        assert_eq!(at(Method::HEAD, "/api/reports/export"), "/api/reports");
        assert_eq!(at(Method::PUT, "/api/reports/export"), "/api");
        assert_eq!(at(Method::PUT, "/api/reports"), "/api");
        assert_eq!(at(Method::GET, "/api/reports"), "/api/reports");
        assert_eq!(at(Method::POST, "/other"), "default");
    }

    #[test]
    fn method_specific_route_wins_over_same_prefix() {
        let specific = with_methods(
            with_features(
                route("/api/reports", Policy::Subscription),
                &["export", "pdf"],
            ),
            &[Method::POST],
        );
        let general = route("/api/reports", Policy::Authenticated);
        // Whichever comes first in the config, the POST-only route wins for POST.
        for routes in [
            vec![general.clone(), specific.clone()],
            vec![specific, general],
        ] {
            let table = RouteTable::new(routes, Policy::Public);
            let post = table.lookup(&Method::POST, "/api/reports/x");
            assert_eq!(post.policy, Policy::Subscription);
            assert_eq!(post.features, ["export", "pdf"]);
            assert_eq!(post.label(), "/api/reports");
            let get = table.lookup(&Method::GET, "/api/reports/x");
            assert_eq!(get.policy, Policy::Authenticated);
            assert!(get.features.is_empty());
            assert_eq!(get.label(), "/api/reports");
        }
    }

    #[test]
    fn extension_methods_and_empty_method_lists() {
        let purge = Method::from_bytes(b"PURGE").expect("valid method token");
        let table = RouteTable::new(
            vec![
                with_methods(
                    route("/cache", Policy::Authenticated),
                    std::slice::from_ref(&purge),
                ),
                with_methods(route("/never", Policy::Public), &[]),
            ],
            Policy::Subscription,
        );
        assert_eq!(table.lookup(&purge, "/cache/x").label(), "/cache");
        assert_eq!(table.lookup(&Method::GET, "/cache/x").label(), "default");
        assert_eq!(table.lookup(&Method::GET, "/never").label(), "default");
    }

    #[test]
    fn spec_table_examples() {
        let table = spec_table();
        let at = |path| table.lookup(&Method::GET, path);
        assert_eq!(at("/health").policy, Policy::Public);
        assert_eq!(at("/health/live").policy, Policy::Public);
        assert_eq!(at("/healthz").label(), "default");
        assert_eq!(at("/api/subscriptions/42").policy, Policy::Authenticated);
        assert_eq!(at("/api/banking/accounts").policy, Policy::Subscription);
        assert_eq!(at("/api/banking/accounts").label(), "/api/banking");
        assert_eq!(at("/api/bankingfoo").label(), "default");
        assert_eq!(at("/").label(), "default");
    }

    #[test]
    fn normalized_spellings_reach_the_same_route() {
        let table = spec_table();
        for raw in [
            "/api/banking/x",
            "/api/banking/../banking/x",
            "/api/./banking/x",
            "/api//banking/x",
            "/api/%62anking/x",
            "/x/%2E%2E/api/banking/x",
            "//api/banking/x",
        ] {
            let normal = path::normalize(raw).expect("valid path");
            assert_eq!(normal, "/api/banking/x", "{raw}");
            assert_eq!(
                table.lookup(&Method::GET, &normal).label(),
                "/api/banking",
                "{raw}"
            );
        }
        assert_eq!(
            path::normalize("/api/banking%2Fx"),
            Err(path::PathError::EncodedSlash)
        );
        assert_eq!(
            path::normalize("/api/banking/x").ok(),
            Some("/api/banking/x".into())
        );
    }

    #[test]
    fn label_is_prefix_or_default() {
        let table = spec_table();
        assert_eq!(table.lookup(&Method::GET, "/health").label(), "/health");
        assert_eq!(table.lookup(&Method::GET, "/nope").label(), "default");
        let matched = table.lookup(&Method::GET, "/health/x");
        assert_eq!(matched.route.map(|r| r.prefix.as_str()), Some("/health"));
    }

    #[test]
    fn validate_prefix_accepts_normal_prefixes() {
        for prefix in [
            "/",
            "/health",
            "/api/banking",
            "/api/reports/export",
            "/a.b",
            "/...",
            "/%20x",
            "/caf%C3%A9",
            "/caf\u{e9}",
            "/~user",
            "/_paygate",
        ] {
            assert_eq!(validate_prefix(prefix), Ok(()), "{prefix:?}");
        }
    }

    #[test]
    fn validate_prefix_rejects_unusable_prefixes() {
        for prefix in [
            "",
            "api",
            "*",
            "/api/",
            "/api//",
            "//",
            "/api//banking",
            "/api/./banking",
            "/api/../banking",
            "/api/.",
            "/..",
            "/%62anking",
            "/%2e",
            "/a%2Fb",
            "/a\\b",
            "/a%5Cb",
            "/a%00",
            "/a\0",
            "/a%zz",
            "/a%4",
            "/api?x=1",
            "/api#top",
            "/a b",
            "/a\tb",
            "/a\n",
        ] {
            let result = validate_prefix(prefix);
            assert!(result.is_err(), "{prefix:?} should be rejected");
        }
    }

    #[test]
    fn validate_prefix_reasons_say_what_to_write() {
        let reason = validate_prefix("/api/").expect_err("trailing slash");
        assert!(reason.contains("\"/api\""), "{reason}");
        let reason = validate_prefix("/api//banking").expect_err("not normal");
        assert!(reason.contains("\"/api/banking\""), "{reason}");
        let reason = validate_prefix("/api/./x/").expect_err("not normal, trailing slash");
        assert!(reason.contains("write it as \"/api/x\""), "{reason}");
        let reason = validate_prefix("/a%2Fb").expect_err("encoded slash");
        assert!(reason.contains("encoded slash"), "{reason}");
        let reason = validate_prefix("/api?x").expect_err("query");
        assert!(reason.contains("query"), "{reason}");
    }

    #[test]
    fn every_validated_prefix_matches_itself() {
        // A prefix that passes validation must be reachable: normalizing it as a
        // request path gives it back, and it then matches its own route.
        for prefix in ["/", "/health", "/api/banking", "/%20x", "/caf\u{e9}"] {
            assert_eq!(validate_prefix(prefix), Ok(()));
            let table = RouteTable::new(vec![route(prefix, Policy::Public)], Policy::Subscription);
            let normal = path::normalize(prefix).expect("valid");
            assert_eq!(table.lookup(&Method::GET, &normal).label(), prefix);
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).expect("method token")
    }

    /// The routes `requirements` asks the request to pass, primary first.
    fn required(
        table: &RouteTable,
        method_name: &str,
        pairs: &[(&str, &str)],
        path: &str,
    ) -> Vec<String> {
        let requirements = table
            .requirements(&method(method_name), &headers(pairs), path)
            .expect("valid request");
        std::iter::once(requirements.primary())
            .chain(requirements.others())
            .map(|m| m.label().to_string())
            .collect()
    }

    #[test]
    fn parameters_are_ignored_for_matching() {
        let table = RouteTable::new(
            vec![
                route("/api/banking", Policy::Subscription),
                route("/health", Policy::Public),
            ],
            Policy::Public,
        );
        for path in [
            "/api/banking;jsessionid=x",
            "/api;/banking",
            "/api;x=1/banking;y/z",
            "/;x/api/banking",
            "/api/;x/banking",
            "/api/banking;",
            "/api/banking/;x",
            "/api/banking%3Bjsessionid=x",
            "/api%3b/banking",
            "/api/banking;a;b/x;c",
        ] {
            assert_eq!(label(&table, &Method::GET, path), "/api/banking", "{path}");
        }
        for path in [
            "/api/bankingfoo;x",
            "/api/bank;ing",
            "/api;/bankin",
            "/api/x;/banking",
            "/;api/banking",
            "/api/banking%3F;x",
        ] {
            assert_eq!(label(&table, &Method::GET, path), "default", "{path}");
        }
    }

    #[test]
    fn an_encoded_semicolon_where_a_prefix_has_an_escape_still_starts_parameters() {
        // Found by the property test: path and prefix share the `%`, then part
        // inside the escape; the `%3b` segment has no name and is skipped.
        let table = RouteTable::new(
            vec![route("/%E2%82%AC/x", Policy::Subscription)],
            Policy::Public,
        );
        for path in [
            "/%3b/%E2%82%AC/x",
            "/%3B/%e2%82%ac/x/",
            "/%E2%82%AC%3b/x",
            "/%E2%82%AC/%3Bq/x",
        ] {
            assert_eq!(label(&table, &Method::GET, path), "/%E2%82%AC/x", "{path}");
        }
        assert_eq!(label(&table, &Method::GET, "/%3F/%E2%82%AC/x"), "default");
    }

    #[test]
    fn a_path_with_parameters_must_pass_its_literal_reading_too() {
        let table = RouteTable::new(
            vec![
                route("/api", Policy::Subscription),
                route("/api/public", Policy::Public),
                route("/health", Policy::Public),
            ],
            Policy::Authenticated,
        );
        // Servlet containers read `/api/public`; Django or Express read a
        // segment `public;x` under `/api`: both must pass.
        let readings = required(&table, "GET", &[], "/api/public;x");
        assert_eq!(readings, ["/api/public", "/api"]);
        let requirements = table
            .requirements(&Method::GET, &HeaderMap::new(), "/api/public;x")
            .expect("valid");
        assert_eq!(requirements.label(), "/api/public");
        assert_eq!(requirements.policy(), Policy::Subscription);
        assert_eq!(
            required(&table, "GET", &[], "/health;jsessionid=1"),
            ["/health", "default"]
        );
        // Parameters after the matched segments change nothing.
        assert_eq!(
            required(&table, "GET", &[], "/api/public/x;y"),
            ["/api/public"]
        );
        assert_eq!(
            required(&table, "GET", &[], "/api/public/;y"),
            ["/api/public"]
        );
        // An ordinary request has one reading and allocates nothing for others.
        let plain = table
            .requirements(&Method::GET, &HeaderMap::new(), "/api/public/x")
            .expect("valid");
        assert!(plain.others().is_empty());
        assert_eq!(plain.others.capacity(), 0);
    }

    #[test]
    fn case_insensitive_paths_are_opt_in() {
        let routes = vec![
            route("/api/banking", Policy::Subscription),
            route("/Health", Policy::Public),
        ];
        let sensitive = RouteTable::new(routes.clone(), Policy::Public);
        assert!(!sensitive.case_insensitive_paths());
        let insensitive = RouteTable::new(routes, Policy::Public).with_case_insensitive_paths(true);
        assert!(insensitive.case_insensitive_paths());
        for path in [
            "/API/BANKING",
            "/Api/Banking/x",
            "/api/bAnKiNg;x",
            "/API;/banking",
        ] {
            assert_eq!(label(&sensitive, &Method::GET, path), "default", "{path}");
            assert_eq!(
                label(&insensitive, &Method::GET, path),
                "/api/banking",
                "{path}"
            );
        }
        assert_eq!(label(&insensitive, &Method::GET, "/health/x"), "/Health");
        assert_eq!(label(&sensitive, &Method::GET, "/health/x"), "default");
        assert_eq!(
            label(&insensitive, &Method::GET, "/api/bankingX"),
            "default"
        );
        // Only ASCII folds: `É` is not `é`.
        let accents = RouteTable::new(
            vec![route("/caf\u{e9}", Policy::Public)],
            Policy::Subscription,
        )
        .with_case_insensitive_paths(true);
        assert_eq!(label(&accents, &Method::GET, "/CAF\u{e9}"), "/caf\u{e9}");
        assert_eq!(label(&accents, &Method::GET, "/caf\u{c9}"), "default");
    }

    #[test]
    fn escape_hex_digits_compare_ignoring_case() {
        // `%c3%a9` and `%C3%A9` are the same octets to every decoder.
        let table = RouteTable::new(
            vec![route("/caf%C3%A9", Policy::Subscription)],
            Policy::Public,
        );
        for path in ["/caf%C3%A9", "/caf%c3%a9/x", "/caf%C3%a9;x", "/caf%c3%A9"] {
            assert_eq!(label(&table, &Method::GET, path), "/caf%C3%A9", "{path}");
        }
        for path in ["/CAF%C3%A9", "/caf%C3%A8", "/caf%C3%A9x"] {
            assert_eq!(label(&table, &Method::GET, path), "default", "{path}");
        }
    }

    #[test]
    fn methods_compare_ignoring_case() {
        let table = spec_table();
        for name in ["POST", "post", "Post", "pOsT"] {
            let matched = table.lookup(&method(name), "/api/reports/export");
            assert_eq!(matched.label(), "/api/reports/export", "{name}");
            assert_eq!(matched.features, ["export"], "{name}");
        }
        assert_eq!(
            table
                .lookup(&method("posts"), "/api/reports/export")
                .label(),
            "default"
        );
        assert_eq!(
            table.lookup(&method("pos"), "/api/reports/export").label(),
            "default"
        );
    }

    #[test]
    fn a_get_route_applies_to_head() {
        let table = RouteTable::new(
            vec![
                with_methods(route("/docs", Policy::Public), &[Method::GET]),
                with_methods(route("/probe", Policy::Public), &[Method::HEAD]),
            ],
            Policy::Subscription,
        );
        for name in ["GET", "get", "HEAD", "head", "Head"] {
            assert_eq!(label(&table, &method(name), "/docs/x"), "/docs", "{name}");
        }
        assert_eq!(label(&table, &Method::POST, "/docs/x"), "default");
        // The converse does not hold: a HEAD route is not a GET route.
        assert_eq!(label(&table, &Method::HEAD, "/probe"), "/probe");
        assert_eq!(label(&table, &Method::GET, "/probe"), "default");
    }

    #[test]
    fn method_override_headers_add_the_named_methods_routes() {
        let table = spec_table();
        let path = "/api/reports/export";
        for name in [
            "X-HTTP-Method-Override",
            "X-HTTP-Method",
            "X-Method-Override",
            "x-http-method-override",
        ] {
            let readings = required(&table, "GET", &[(name, "POST")], path);
            assert_eq!(readings, ["default", "/api/reports/export"], "{name}");
        }
        let requirements = table
            .requirements(
                &Method::GET,
                &headers(&[("X-HTTP-Method-Override", "post")]),
                path,
            )
            .expect("valid");
        assert_eq!(requirements.label(), "default");
        assert_eq!(requirements.policy(), Policy::Subscription);
        let features: Vec<&[String]> = requirements.features().collect();
        assert_eq!(features, [&[][..], &["export".to_string()][..]]);
        // Naming the request's own method, or one that selects the same route,
        // adds nothing.
        assert_eq!(
            required(&table, "POST", &[("X-HTTP-Method", "POST")], path),
            [path]
        );
        assert_eq!(
            required(&table, "GET", &[("X-HTTP-Method", "DELETE")], path),
            ["default"]
        );
        // Unrelated headers with similar names are not overrides.
        assert_eq!(
            required(&table, "GET", &[("X-HTTP-Method-Overrides", "POST")], path),
            ["default"]
        );
        assert_eq!(
            required(&table, "GET", &[("X-Method", "POST")], path),
            ["default"]
        );
    }

    #[test]
    fn every_overriding_method_must_pass() {
        let table = RouteTable::new(
            vec![
                with_methods(route("/r", Policy::Public), &[Method::GET]),
                with_methods(route("/r", Policy::Authenticated), &[Method::PUT]),
                with_methods(route("/r", Policy::Subscription), &[Method::DELETE]),
            ],
            Policy::Public,
        );
        let all = |pairs: &[(&str, &str)]| {
            let mut labels: Vec<Policy> = table
                .requirements(&Method::GET, &headers(pairs), "/r")
                .map(|r| {
                    std::iter::once(*r.primary())
                        .chain(r.others().iter().copied())
                        .map(|m| m.policy)
                        .collect()
                })
                .expect("valid");
            labels.sort();
            labels
        };
        let everything = [Policy::Public, Policy::Authenticated, Policy::Subscription];
        assert_eq!(
            all(&[("X-HTTP-Method-Override", "PUT, DELETE")]),
            everything
        );
        assert_eq!(
            all(&[
                ("X-HTTP-Method-Override", "PUT"),
                ("X-HTTP-Method-Override", "delete")
            ]),
            everything
        );
        assert_eq!(
            all(&[
                ("X-HTTP-Method-Override", "PUT"),
                ("X-Method-Override", " DELETE\t")
            ]),
            everything
        );
        assert_eq!(
            all(&[("X-HTTP-Method", "PUT,,")]),
            [Policy::Public, Policy::Authenticated]
        );
        // An empty value names no method.
        assert_eq!(all(&[("X-HTTP-Method", "")]), [Policy::Public]);
        assert_eq!(all(&[("X-HTTP-Method", " , ")]), [Policy::Public]);
    }

    #[test]
    fn a_method_override_that_is_not_a_method_list_is_refused() {
        let table = spec_table();
        for value in ["P(ST", "PO ST", "GET;x", "POST, GE\"T", "{}"] {
            let result = table.requirements(
                &Method::GET,
                &headers(&[("X-HTTP-Method-Override", value)]),
                "/x",
            );
            assert_eq!(result.err(), Some(BAD_METHOD_OVERRIDE), "{value:?}");
        }
        let mut map = HeaderMap::new();
        map.insert(
            "x-method-override",
            http::HeaderValue::from_bytes(b"P\xc3\x96ST").expect("obs-text"),
        );
        assert_eq!(
            table.requirements(&Method::GET, &map, "/x").err(),
            Some(BAD_METHOD_OVERRIDE)
        );
        // Extension methods are methods.
        assert!(table
            .requirements(&Method::GET, &headers(&[("X-HTTP-Method", "PURGE")]), "/x")
            .is_ok());
    }

    #[test]
    fn override_and_parameters_combine() {
        let table = RouteTable::new(
            vec![
                route("/api", Policy::Authenticated),
                with_methods(
                    with_features(route("/api/export", Policy::Subscription), &["export"]),
                    &[Method::POST],
                ),
            ],
            Policy::Public,
        );
        let readings = required(
            &table,
            "GET",
            &[("X-HTTP-Method-Override", "POST")],
            "/api/export;x",
        );
        assert_eq!(readings, ["/api", "/api/export"]);
    }

    #[test]
    fn gateway_paths_are_recognised_in_every_reading() {
        let sensitive = spec_table();
        for path in [
            "/_paygate",
            "/_paygate/healthz",
            "/_paygate;x/healthz",
            "/;x/_paygate",
            "/_paygate%3B/me",
        ] {
            assert!(sensitive.is_under(path, "/_paygate"), "{path}");
        }
        for path in ["/_paygatex", "/_PAYGATE/healthz", "/x/_paygate", "/"] {
            assert!(!sensitive.is_under(path, "/_paygate"), "{path}");
        }
        let insensitive = spec_table().with_case_insensitive_paths(true);
        assert!(insensitive.is_under("/_PAYGATE/healthz", "/_paygate"));
        assert!(insensitive.is_under("/_PayGate;x", "/_paygate"));
    }

    #[test]
    fn is_at_names_exactly_the_target() {
        let table = spec_table();
        let webhook = "/stripe/webhook";
        for path in [
            "/stripe/webhook",
            "/stripe/webhook/",
            "/stripe/webhook;x",
            "/stripe;/webhook",
            "/stripe/webhook/;x",
            "/;a/stripe/webhook",
        ] {
            assert!(table.is_at(path, webhook), "{path}");
        }
        for path in [
            "/stripe/webhook/x",
            "/stripe/webhooks",
            "/stripe",
            "/STRIPE/webhook",
            "/x/stripe/webhook",
        ] {
            assert!(!table.is_at(path, webhook), "{path}");
        }
        assert!(spec_table()
            .with_case_insensitive_paths(true)
            .is_at("/Stripe/WEBHOOK", webhook));
    }

    #[test]
    fn policies_are_ordered_by_strictness() {
        assert!(Policy::Public < Policy::Authenticated);
        assert!(Policy::Authenticated < Policy::Subscription);
    }

    #[test]
    fn validate_prefix_refuses_parameters() {
        for prefix in ["/api;x", "/api/banking;", "/;", "/api%3Bx", "/api%3b"] {
            let reason = validate_prefix(prefix).expect_err(prefix);
            assert!(reason.contains("parameters"), "{reason}");
        }
        assert_eq!(validate_prefix("/api%3Ax"), Ok(()));
    }
}
