//! Which settings a reload cannot change: the listeners, the connection
//! limits and deadlines they were started with, the store connection and the
//! log format belong to the process. A reload keeps their running values and
//! names them, so the operator knows a restart is needed for those.

use super::Config;

/// Copies into `next` the running value of every setting that needs a
/// restart and that `next` changes, and returns the changed keys.
pub(crate) fn keep_restart_only(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    let (old, new) = (&running.server, &mut next.server);
    macro_rules! keep {
        ($key:literal, $old:expr, $new:expr) => {
            if $old != $new {
                $new = $old.clone();
                kept.push($key);
            }
        };
    }
    keep!("server.listen", old.listen, new.listen);
    keep!("server.workers", old.workers, new.workers);
    keep!(
        "server.max_connections",
        old.max_connections,
        new.max_connections
    );
    keep!(
        "server.header_timeout",
        old.header_timeout,
        new.header_timeout
    );
    keep!(
        "server.keepalive_timeout",
        old.keepalive_timeout,
        new.keepalive_timeout
    );
    keep!(
        "server.shutdown_grace",
        old.shutdown_grace,
        new.shutdown_grace
    );
    keep!("server.h2c", old.h2c, new.h2c);
    // TLS on or off is the listener's; the files' contents reload.
    if old.tls.is_some() != new.tls.is_some() {
        new.tls = old.tls.clone();
        kept.push("server.tls");
    }
    keep!("log.format", running.log.format, next.log.format);

    // The admin listener: started or not, and where, is fixed; its token reloads.
    match (&running.admin, &mut next.admin) {
        (Some(old), Some(new)) if old.listen != new.listen => {
            new.listen = old.listen;
            kept.push("admin.listen");
        }
        (Some(_), Some(_)) | (None, None) => {}
        (old, new) => {
            *new = old.clone();
            kept.push("admin");
        }
    }

    // The store was opened once; only the cache in front of it is rebuilt.
    let store_only = |config: &Config| {
        let mut store = config.store.clone();
        store.cache_ttl = Default::default();
        store.cache_capacity = 0;
        store.max_stale = Default::default();
        store.on_store_error = super::OnStoreError::Deny;
        format!("{store:?}")
    };
    if store_only(running) != store_only(next) {
        let cache = next.store.clone();
        next.store = running.store.clone();
        next.store.cache_ttl = cache.cache_ttl;
        next.store.cache_capacity = cache.cache_capacity;
        next.store.max_stale = cache.max_stale;
        next.store.on_store_error = cache.on_store_error;
        kept.push("store");
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn compile(extra: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n[upstream]\nurl = \"http://127.0.0.1:9000\"\n[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"\n{extra}"
        );
        Config::compile(&text, Path::new("."), &|_| None).expect("test config compiles")
    }

    #[test]
    fn reloadable_changes_are_not_reported() {
        let running = compile("[store]\ncache_ttl = \"5s\"\n[log]\nlevel = \"info\"");
        let mut next = compile("[store]\ncache_ttl = \"9s\"\n[log]\nlevel = \"debug\"");
        assert!(keep_restart_only(&running, &mut next).is_empty());
        assert_eq!(next.store.cache_ttl, Duration::from_secs(9));
        assert_eq!(next.log.level, "debug");
    }

    #[test]
    fn listener_store_and_format_changes_keep_the_running_value() {
        let running = compile("[store]\nkey_prefix = \"a:\"\ncache_ttl = \"5s\"");
        let mut next = compile(
            "[store]\nkey_prefix = \"b:\"\ncache_ttl = \"9s\"\n[log]\nformat = \"json\"\n[admin]\nlisten = \"127.0.0.1:9090\"",
        );
        next.server.listen = "127.0.0.1:8081".parse().unwrap();
        let kept = keep_restart_only(&running, &mut next);
        assert_eq!(kept, ["server.listen", "log.format", "admin", "store"]);
        assert_eq!(next.server.listen, running.server.listen);
        assert_eq!(next.log.format, running.log.format);
        assert!(next.admin.is_none());
        assert_eq!(next.store.key_prefix, "a:");
        // The cache in front of the store still takes the new value.
        assert_eq!(next.store.cache_ttl, Duration::from_secs(9));
    }
}
