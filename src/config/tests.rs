//! Unit tests of the config compiler: defaults, every error reported, keys named.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "PAYGATE_JWT_SECRET" => Some("a-test-secret-of-32-bytes-length".into()),
        "STRIPE_WEBHOOK_SECRET" => Some("whsec_a,whsec_b".into()),
        "PAYGATE_ADMIN_TOKEN" => Some("admin-token-0123456789".into()),
        _ => None,
    }
}

fn compile(text: &str) -> Result<Config, ConfigErrors> {
    Config::compile(text, Path::new("."), &env)
}

fn keys(err: ConfigErrors) -> Vec<String> {
    err.0.into_iter().map(|e| e.key).collect()
}

const MINIMAL: &str = r#"
[upstream]
url = "http://127.0.0.1:8000"
[jwt]
secret_env = "PAYGATE_JWT_SECRET"
"#;

#[test]
fn minimal_config_gets_spec_defaults() {
    let c = compile(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_body, 10 << 20);
    assert_eq!(c.server.header_timeout, Duration::from_secs(10));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.server.workers, None, "one per CPU");
    assert_eq!(c.upstream.timeout, Duration::from_secs(30));
    assert_eq!(c.jwt.algorithms, vec![jsonwebtoken::Algorithm::HS256]);
    assert_eq!(c.jwt.leeway, 30);
    assert_eq!(c.jwt.user_claim, "sub");
    assert_eq!(c.store.cache_ttl, Duration::from_secs(5));
    assert_eq!(c.store.cache_capacity, 100_000);
    assert_eq!(c.store.on_store_error, OnStoreError::Stale);
    assert_eq!(c.access.default, Policy::Subscription);
    assert_eq!(
        c.access.rules.grant_statuses,
        vec![SubscriptionStatus::Active, SubscriptionStatus::Trialing]
    );
    assert_eq!(c.access.checkout_redirect, "/checkout");
    assert!(c.stripe.is_none());
    assert!(c.admin.is_none());
    assert_eq!(c.headers.user_id.as_str(), "x-user-id");
}

#[test]
fn shipped_example_configs_compile() {
    for file in ["config/paygate.toml", "config/demo.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let base = path.parent().unwrap();
        if let Err(e) = Config::compile(&text, base, &env) {
            panic!("{file} does not compile:\n{e}");
        }
    }
}

#[test]
fn full_spec_config_loads() {
    let text = r#"
[server]
listen = "127.0.0.1:8080"
max_body = "10MiB"
header_timeout = "10s"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
shutdown_grace = "30s"
workers = 1
[upstream]
url = "http://127.0.0.1:8000"
connect_timeout = "2s"
timeout = "30s"
[jwt]
algorithms = ["HS256"]
secret_env = "PAYGATE_JWT_SECRET"
issuer = "https://auth.example.com/"
audience = "api"
leeway = "30s"
user_claim = "user_id"
cookie = "access_token"
[store]
key_prefix = "paygate:"
cache_ttl = "5s"
cache_capacity = 100000
on_store_error = "deny"
max_stale = "5m"
[stripe]
webhook_path = "/stripe/webhook"
webhook_secret_env = "STRIPE_WEBHOOK_SECRET"
tolerance = "5m"
max_body = "2MiB"
user_metadata_keys = ["user_id", "djstripe_subscriber"]
api_base = "http://127.0.0.1:12111"
livemode = true
refetch = false
[access]
grant_statuses = ["active", "trialing"]
past_due_grace = "3d"
default = "subscription"
checkout_redirect = "/checkout"
expired_redirect = "/subscription/expired"
[[routes]]
prefix = "/health"
policy = "public"
[[routes]]
prefix = "/api/reports/export"
policy = "subscription"
features = ["export"]
methods = ["POST"]
[plans."price_123"]
features = ["export"]
[admin]
listen = "127.0.0.1:9090"
token_env = "PAYGATE_ADMIN_TOKEN"
[log]
format = "json"
"#;
    let c = compile(text).unwrap();
    let stripe = c.stripe.unwrap();
    assert_eq!(stripe.webhook_secrets, vec!["whsec_a", "whsec_b"]);
    assert_eq!(stripe.livemode, Some(true));
    assert_eq!(c.access.rules.past_due_grace, 3 * 86400);
    assert_eq!(c.access.rules.plans["price_123"], vec!["export"]);
    assert_eq!(c.routes.routes().len(), 2);
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.store.on_store_error, OnStoreError::Deny);
}

#[test]
fn every_error_is_reported_with_its_key() {
    let text = r#"
[server]
listne = "127.0.0.1:8080"
max_body = "10 parsecs"
workers = 0
[upstream]
url = "ftp://nope"
timeout = "30"
[jwt]
algorithms = ["HS256", "HS999"]
secret_env = "UNSET_SECRET_VAR"
[access]
default = "open"
grant_statuses = ["active", "paid"]
[[routes]]
prefix = "api/x"
policy = "pubic"
[[routes]]
prefix = "/ok"
policy = "public"
polcy = "subscription"
[mystery]
"#;
    let err = compile(text).unwrap_err();
    let printed = err.to_string();
    let keys = keys(err);
    for expected in [
        "server.listne",
        "server.max_body",
        "server.workers",
        "upstream.url",
        "upstream.timeout",
        "jwt.algorithms[1]",
        "jwt.secret_env",
        "access.default",
        "access.grant_statuses[1]",
        "routes[0].prefix",
        "routes[0].policy",
        "routes[1].polcy",
        "mystery",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "missing error for {expected}: {keys:?}"
        );
    }
    assert!(printed.contains("UNSET_SECRET_VAR"), "{printed}");
    assert!(printed.lines().all(|l| l.starts_with("config error: ")));
}

#[test]
fn wrong_types_are_named() {
    let err = compile(&format!("{MINIMAL}\n[store]\ncache_capacity = \"lots\"\n")).unwrap_err();
    assert_eq!(keys(err), vec!["store.cache_capacity"]);
}

#[test]
fn duplicate_routes_and_reserved_prefixes_are_refused() {
    let text = format!(
        "{MINIMAL}\n[[routes]]\nprefix = \"/a\"\npolicy = \"public\"\n[[routes]]\nprefix = \"/a\"\npolicy = \"subscription\"\n[[routes]]\nprefix = \"/_paygate/x\"\npolicy = \"public\"\n"
    );
    let keys = keys(compile(&text).unwrap_err());
    assert!(keys.contains(&"routes[1].prefix".to_string()), "{keys:?}");
    assert!(keys.contains(&"routes[2].prefix".to_string()), "{keys:?}");
}

#[test]
fn same_prefix_with_disjoint_methods_is_fine() {
    let text = format!(
        "{MINIMAL}\n[[routes]]\nprefix = \"/a\"\npolicy = \"public\"\n[[routes]]\nprefix = \"/a\"\npolicy = \"subscription\"\nmethods = [\"POST\"]\n"
    );
    compile(&text).unwrap();
}

#[test]
fn route_matching_rules_are_compiled() {
    // A prefix cannot name `;parameters`, which matching ignores.
    let text = format!("{MINIMAL}\n[[routes]]\nprefix = \"/a;x\"\npolicy = \"public\"\n[[routes]]\nprefix = \"/b%3B\"\npolicy = \"public\"\n");
    assert_eq!(
        keys(compile(&text).unwrap_err()),
        vec!["routes[0].prefix", "routes[1].prefix"]
    );
    // A GET route also applies to HEAD, so a HEAD route on the same prefix is ambiguous.
    let text = format!("{MINIMAL}\n[[routes]]\nprefix = \"/a\"\npolicy = \"public\"\nmethods = [\"GET\"]\n[[routes]]\nprefix = \"/a\"\npolicy = \"subscription\"\nmethods = [\"head\"]\n");
    assert_eq!(keys(compile(&text).unwrap_err()), vec!["routes[1].prefix"]);
    // With case-insensitive paths `/API` and `/api` are one prefix, and `/_PayGate` is reserved.
    let routes = "[[routes]]\nprefix = \"/api\"\npolicy = \"public\"\n[[routes]]\nprefix = \"/API\"\npolicy = \"subscription\"\n[[routes]]\nprefix = \"/_PayGate\"\npolicy = \"public\"\n";
    let config = compile(&format!("{MINIMAL}\n{routes}")).unwrap();
    assert!(!config.routes.case_insensitive_paths());
    let text = format!("{MINIMAL}\n[access]\ncase_insensitive_paths = true\n{routes}");
    let mut refused = keys(compile(&text).unwrap_err());
    refused.sort();
    assert_eq!(refused, vec!["routes[1].prefix", "routes[2].prefix"]);
    let text = format!("{MINIMAL}\n[access]\ncase_insensitive_paths = true\n");
    assert!(compile(&text).unwrap().routes.case_insensitive_paths());
}

#[test]
fn asymmetric_algorithm_needs_a_key_and_hs_needs_a_secret() {
    let text =
        "[upstream]\nurl = \"http://127.0.0.1:1\"\n[jwt]\nalgorithms = [\"RS256\", \"HS256\"]\n";
    let keys = keys(compile(text).unwrap_err());
    assert!(keys.contains(&"jwt.algorithms".to_string()), "{keys:?}");
    assert!(keys.contains(&"jwt.secret_env".to_string()), "{keys:?}");
}

#[test]
fn stripe_section_needs_its_secret() {
    let text = format!("{MINIMAL}\n[stripe]\nwebhook_secret_env = \"NOPE\"\n");
    assert_eq!(
        keys(compile(&text).unwrap_err()),
        vec!["stripe.webhook_secret_env"]
    );
}

#[test]
fn upstream_with_path_is_refused() {
    let text = "[upstream]\nurl = \"http://127.0.0.1:8000/base\"\n[jwt]\nsecret_env = \"PAYGATE_JWT_SECRET\"\n";
    assert_eq!(keys(compile(text).unwrap_err()), vec!["upstream.url"]);
}

#[test]
fn production_redis_keys_compile_with_their_defaults() {
    let store = compile(MINIMAL).unwrap().store;
    assert_eq!(store.redis_mode, RedisMode::Standalone);
    assert_eq!(store.min_replica_acks, 0);
    assert_eq!(store.replica_ack_timeout, Duration::from_secs(1));
    assert_eq!(store.audit_max_entries, 50);
    assert_eq!(store.audit_ttl, Duration::from_secs(180 * 86_400));
    assert_eq!(store.event_ttl, Duration::from_secs(30 * 86_400));
    assert!(!store.is_redis());

    let sentinel = format!(
        "{MINIMAL}[store]\nredis_mode = \"sentinel\"\nsentinel_urls = [\"redis://127.0.0.1:26379\"]\n\
         sentinel_master = \"mymaster\"\nmin_replica_acks = 1\nreplica_ack_timeout = \"500ms\"\n\
         audit_max_entries = 10\naudit_ttl = \"7d\"\nevent_ttl = \"3d\"\n"
    );
    let store = compile(&sentinel).unwrap().store;
    assert_eq!(store.redis_mode, RedisMode::Sentinel);
    assert!(
        store.is_redis(),
        "sentinel mode is Redis without a redis_url"
    );
    assert_eq!(store.sentinel_master.as_deref(), Some("mymaster"));
    assert_eq!(store.min_replica_acks, 1);
    assert_eq!(store.replica_ack_timeout, Duration::from_millis(500));
    assert_eq!(store.audit_max_entries, 10);
    assert_eq!(store.event_ttl, Duration::from_secs(3 * 86_400));
}

#[test]
fn production_redis_mistakes_are_named_by_key() {
    let cases: &[(&str, &str)] = &[
        ("redis_mode = \"replicated\"", "store.redis_mode"),
        ("redis_mode = \"sentinel\"\nsentinel_master = \"m\"", "store.sentinel_urls"),
        (
            "redis_mode = \"sentinel\"\nsentinel_urls = [\"redis://127.0.0.1:26379\"]",
            "store.sentinel_master",
        ),
        (
            "redis_mode = \"sentinel\"\nsentinel_urls = [\"http://x\"]\nsentinel_master = \"m\"",
            "store.sentinel_urls",
        ),
        ("redis_mode = \"cluster\"", "store.redis_url"),
        (
            "redis_url = \"redis://127.0.0.1:7000\"\nredis_mode = \"cluster\"\nmin_replica_acks = 1",
            "store.min_replica_acks",
        ),
        (
            "redis_url = \"redis://127.0.0.1:6379\"\nsentinel_master = \"m\"",
            "store.redis_mode",
        ),
        ("tls_ca_file = \"/nonexistent/ca.pem\"", "store.tls_ca_file"),
        (
            "tls_client_cert_file = \"Cargo.toml\"",
            "store.tls_client_cert_file",
        ),
        ("min_replica_acks = 17", "store.min_replica_acks"),
        ("audit_max_entries = 0", "store.audit_max_entries"),
        ("event_ttl = \"0s\"", "store.event_ttl"),
        ("audit_ttl = \"soon\"", "store.audit_ttl"),
    ];
    for (lines, key) in cases {
        let text = format!("{MINIMAL}[store]\n{lines}\n");
        let err = compile(&text).expect_err(lines);
        let found = keys(err);
        assert!(
            found.iter().any(|k| k == key),
            "{lines:?}: expected an error on {key}, got {found:?}"
        );
    }
}

#[test]
fn issuer_with_discovery_is_enough_and_allows_the_asymmetric_algorithms() {
    let c = compile(
        "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nissuer = \"https://id.example.com/\"\ndiscovery = true\n",
    )
    .unwrap();
    assert!(c.jwt.discovery);
    assert_eq!(c.jwt.issuer.as_deref(), Some("https://id.example.com/"));
    assert!(c.jwt.secret.is_none() && c.jwt.jwks_url.is_none());
    use jsonwebtoken::Algorithm::*;
    assert_eq!(
        c.jwt.algorithms,
        vec![RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
    );
    // A configured jwks_url alone gets the same default.
    let c = compile(
        "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\njwks_url = \"https://id.example.com/jwks\"\n",
    )
    .unwrap();
    assert!(!c.jwt.discovery);
    assert!(c
        .jwt
        .algorithms
        .iter()
        .all(|a| !matches!(a, HS256 | HS384 | HS512)));
    // An explicit list still wins.
    let c = compile(
        "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nissuer = \"https://id.example.com\"\ndiscovery = true\nalgorithms = [\"ES256\"]\n",
    )
    .unwrap();
    assert_eq!(c.jwt.algorithms, vec![ES256]);
}

#[test]
fn discovery_mistakes_are_named_by_key() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\ndiscovery = true\n";
    let cases = [
        ("", "jwt.discovery", "needs jwt.issuer"),
        (
            "issuer = \"https://id.example.com\"\njwks_url = \"https://id.example.com/jwks\"\n",
            "jwt.discovery",
            "jwt.jwks_url",
        ),
        (
            "issuer = \"https://id.example.com\"\npublic_key_file = \"Cargo.toml\"\n",
            "jwt.discovery",
            "jwt.public_key_file",
        ),
        (
            "issuer = \"https://id.example.com\"\nsecret_env = \"PAYGATE_JWT_SECRET\"\n",
            "jwt.discovery",
            "jwt.secret_env",
        ),
        ("issuer = \"id.example.com\"\n", "jwt.issuer", "http(s) URL"),
        (
            "issuer = \"https://id.example.com/?tenant=1\"\n",
            "jwt.issuer",
            "http(s) URL",
        ),
    ];
    for (lines, key, words) in cases {
        let text = format!("{base}{lines}");
        let err = compile(&text).expect_err(lines);
        assert!(
            err.0
                .iter()
                .any(|e| e.key == key && e.message.contains(words)),
            "{lines:?}: expected {key}: ...{words}..., got {err}"
        );
    }
    let err = compile("[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\ndiscovery = \"yes\"\n")
        .expect_err("not a bool");
    assert!(keys(err).iter().any(|k| k == "jwt.discovery"));
}

#[test]
fn outbound_ca_file_is_resolved_read_and_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = paygate_testkit::tls::generate(dir.path());
    let text = format!("{MINIMAL}[outbound]\nca_file = \"ca.pem\"\n");
    let c = Config::compile(&text, dir.path(), &env).unwrap();
    assert_eq!(c.outbound.ca_file.as_deref(), Some(tls.ca_cert.as_path()));
    assert!(compile(MINIMAL).unwrap().outbound.ca_file.is_none());

    for (file, words) in [
        ("missing.pem", "cannot read"),
        // A key is PEM, but not a certificate.
        ("server.key", "no certificate"),
    ] {
        let text = format!("{MINIMAL}[outbound]\nca_file = \"{file}\"\n");
        let err = Config::compile(&text, dir.path(), &env).expect_err(file);
        assert!(
            err.0
                .iter()
                .any(|e| e.key == "outbound.ca_file" && e.message.contains(words)),
            "{file}: {err}"
        );
    }
    let err = compile(&format!("{MINIMAL}[outbound]\nca_fil = \"ca.pem\"\n")).expect_err("typo");
    assert!(keys(err).iter().any(|k| k.starts_with("outbound.ca_fil")));
}

/// `env` plus the given overrides, as a container would set them.
fn compile_with(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.to_string())
            .or_else(|| env(name))
    };
    Config::compile(text, Path::new("."), &lookup)
}

#[test]
fn environment_overrides_replace_listen_upstream_and_redis() {
    let c = compile_with(
        MINIMAL,
        &[
            ("PAYGATE_LISTEN", "0.0.0.0:9999"),
            ("PAYGATE_UPSTREAM_URL", "http://app:3000"),
            ("PAYGATE_REDIS_URL", "redis://redis:6379/0"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(c.upstream.url.to_string(), "http://app:3000/");
    assert_eq!(c.store.redis_url.as_deref(), Some("redis://redis:6379/0"));

    // Unset or empty: the file's values stand.
    let c = compile_with(MINIMAL, &[("PAYGATE_LISTEN", "")]).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.upstream.url.to_string(), "http://127.0.0.1:8000/");
    assert_eq!(c.store.redis_url, None);
}

#[test]
fn environment_override_wins_over_the_file() {
    let text = format!("{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\n[store]\nredis_url = \"redis://file:6379\"\n");
    let c = compile_with(
        &text,
        &[
            ("PAYGATE_LISTEN", "127.0.0.1:2"),
            ("PAYGATE_REDIS_URL", "redis://env:6379"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:2");
    assert_eq!(c.store.redis_url.as_deref(), Some("redis://env:6379"));
}

#[test]
fn environment_overrides_are_validated_and_named() {
    let err = compile_with(
        MINIMAL,
        &[
            ("PAYGATE_LISTEN", "not-an-address"),
            ("PAYGATE_UPSTREAM_URL", "ftp://app"),
            ("PAYGATE_REDIS_URL", "http://redis:6379"),
        ],
    )
    .unwrap_err();
    let mut found = keys(err);
    found.sort();
    assert_eq!(
        found,
        [
            "PAYGATE_LISTEN (server.listen)",
            "PAYGATE_REDIS_URL (store.redis_url)",
            "PAYGATE_UPSTREAM_URL (upstream.url)",
        ]
    );
}

#[test]
fn upstream_override_stands_in_for_a_missing_section() {
    let text = "[jwt]\nsecret_env = \"PAYGATE_JWT_SECRET\"\n";
    assert!(compile_with(text, &[]).is_err(), "no upstream at all");
    let c = compile_with(text, &[("PAYGATE_UPSTREAM_URL", "http://app:3000")]).unwrap();
    assert_eq!(c.upstream.url.to_string(), "http://app:3000/");
}

fn messages(err: ConfigErrors) -> Vec<String> {
    err.0.into_iter().map(|e| e.to_string()).collect()
}

#[test]
fn a_toml_syntax_error_names_its_line_and_column_but_not_the_line() {
    let text =
        "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nsecret = \"hunter2-unterminated\n";
    let errors = messages(compile(text).unwrap_err());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("config: not valid TOML at line 4, column "),
        "{errors:?}"
    );
    assert!(!errors[0].contains("hunter2"), "{errors:?}");

    // Columns count characters, not bytes.
    let text = "[upstream]\nurl = \"http://127.0.0.1:8000\"\n# é\n  = 1\n";
    let errors = messages(compile(text).unwrap_err());
    assert!(
        errors[0].starts_with("config: not valid TOML at line 4, column 3: "),
        "{errors:?}"
    );
}

#[test]
fn line_column_counts_lines_and_characters_from_one() {
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("abc\nde", 4), (2, 1));
    assert_eq!(line_column("abc\nde", 6), (2, 3));
    assert_eq!(line_column("é\nxé!", 6), (2, 3), "after x and é");
    assert_eq!(line_column("ab", 99), (1, 3), "past the end: the end");
}

#[test]
fn an_unknown_key_names_the_known_key_it_is_close_to() {
    let text = format!("{MINIMAL}\n[server]\nlistne = \"127.0.0.1:1\"\nshutdown_gracee = \"1s\"\nfoo = 1\n[[routes]]\nprefix = \"/a\"\npolcy = \"public\"\n[stor]\n");
    let errors = messages(compile(&text).unwrap_err());
    for expected in [
        "server.listne: unknown key; did you mean `listen`?",
        "server.shutdown_gracee: unknown key; did you mean `shutdown_grace`?",
        "server.foo: unknown key",
        "routes[0].polcy: unknown key; did you mean `policy`?",
        "stor: unknown section or key; did you mean `store`?",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "{expected:?} in {errors:?}"
        );
    }
}

#[test]
fn only_a_near_key_is_suggested() {
    use super::reader::closest;
    let known = ["url", "listen", "timeout", "connect_timeout"];
    assert_eq!(closest("lisen", known), Some("listen"), "one deletion");
    assert_eq!(closest("listne", known), Some("listen"), "one swap");
    assert_eq!(closest("LISTEN", known), Some("listen"), "case");
    assert_eq!(closest("conect_timout", known), Some("connect_timeout"));
    assert_eq!(
        closest("ttl", known),
        None,
        "two edits in three letters is another word"
    );
    assert_eq!(closest("lstn", known), None);
    assert_eq!(closest("anything", []), None);
}

#[test]
fn only_the_secrets_a_command_needs_must_be_set() {
    let text = "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nsecret_env = \"NOPE_JWT\"\n\
                [stripe]\nwebhook_secret_env = \"NOPE_WHSEC\"\napi_key_env = \"NOPE_API\"\n\
                [admin]\ntoken_env = \"NOPE_ADMIN\"\n";
    let compile_for = |needs| Config::compile_needing(text, Path::new("."), &env, needs);

    // serve and check-config: every unset variable is named.
    let all = keys(compile(text).unwrap_err());
    assert_eq!(
        all,
        [
            "jwt.secret_env",
            "stripe.webhook_secret_env",
            "stripe.api_key_env",
            "admin.token_env"
        ],
        "{all:?}"
    );
    // A command that needs none compiles, with the secrets left out.
    let c = compile_for(Secrets::NONE).unwrap();
    assert!(c.jwt.secret.is_none());
    let stripe = c.stripe.unwrap();
    assert!(stripe.webhook_secrets.is_empty() && stripe.api_key.is_none());
    // A command that needs one is told about that one only.
    let sync = Secrets {
        stripe_api_key: true,
        ..Secrets::NONE
    };
    assert_eq!(keys(compile_for(sync).unwrap_err()), ["stripe.api_key_env"]);
    let token = Secrets {
        jwt: true,
        ..Secrets::NONE
    };
    assert_eq!(keys(compile_for(token).unwrap_err()), ["jwt.secret_env"]);

    // The default STRIPE_WEBHOOK_SECRET is needed only with the webhook.
    let text = "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nsecret = \"0123456789abcdef\"\n[stripe]\n";
    let none = |_: &str| None;
    assert_eq!(
        keys(Config::compile(text, Path::new("."), &none).unwrap_err()),
        ["stripe.webhook_secret_env"]
    );
    assert!(Config::compile_needing(text, Path::new("."), &none, Secrets::NONE).is_ok());

    // Configuration mistakes are errors whatever the command needs.
    let both = "[upstream]\nurl = \"http://127.0.0.1:8000\"\n[jwt]\nsecret = \"0123456789abcdef\"\nsecret_env = \"NOPE_JWT\"\n";
    assert_eq!(
        keys(Config::compile_needing(both, Path::new("."), &none, Secrets::NONE).unwrap_err()),
        ["jwt.secret"]
    );
}
