//! Route table: segment-wise longest-prefix match of normalized paths to policies.
//!
//! Matching is only sound on paths that went through [`path::normalize`]: the
//! table compares bytes, so `/api/./banking` would slip past an `/api/banking`
//! route. The gateway normalizes once, matches the result and forwards that same
//! string. This module does no I/O and allocates nothing per request.

pub mod path;

use http::Method;

/// What a request needs before it is forwarded (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Methods the route applies to; `None` means every method. A request with
    /// another method falls through to the next-longest matching route.
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
}

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
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>, default: Policy) -> RouteTable {
        routes.sort_by_key(|route| {
            (
                std::cmp::Reverse(route.prefix.len()),
                route.methods.is_none(),
            )
        });
        RouteTable { routes, default }
    }

    /// The routes in matching order (longest prefix first), e.g. for `check-config`.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn default_policy(&self) -> Policy {
        self.default
    }

    /// `path` is already normalized.
    ///
    /// Returns the longest route whose prefix matches `path` on whole segments and
    /// whose `methods` (if any) include `method`, else the default policy.
    pub fn lookup(&self, method: &Method, path: &str) -> Matched<'_> {
        let found = self
            .routes
            .iter()
            .find(|route| prefix_matches(&route.prefix, path) && method_applies(route, method));
        match found {
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
}

/// True when `prefix` covers `path` on whole segments: `/api/banking` covers
/// `/api/banking`, `/api/banking/` and `/api/banking/x`, not `/api/bankingfoo`.
///
/// A prefix that ends in `/` (only the root, once validated) already ends on a
/// segment boundary, so any path starting with it is covered.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn method_applies(route: &Route, method: &Method) -> bool {
    match &route.methods {
        Some(methods) => methods.contains(method),
        None => true,
    }
}

/// Validation helper for config: returns Err(reason) if `prefix` is not a usable
/// route prefix.
///
/// A usable prefix starts with `/`, is already in the form [`path::normalize`]
/// produces (otherwise no normalized request path could ever match it), has no
/// `?` or `#` (routes match paths, never queries), has no trailing slash except
/// the root `/` itself (matching is by segment, so `/api/` would mean `/api`),
/// and has no whitespace or control characters, which `http` never lets into a
/// request path. The reason is a lowercase phrase for the config error line.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
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

    /// The example table from SPEC §2, with `default = "subscription"`.
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
}
