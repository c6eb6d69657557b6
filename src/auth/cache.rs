//! The verified-token cache: tokens that passed every check recently, so
//! that a repeat request skips the signature check, the hot path's largest
//! cost.
//!
//! It must never serve an identity past its token's `exp` (plus leeway), nor
//! one checked more than [`TTL_SECS`] ago, and it only ever holds tokens
//! that verified. A lookup is a shard read lock and a reference-count bump
//! (quick_cache, like the entitlement cache: see `store/cache.rs` for why
//! not moka); the time is the caller's `now`, read once per request.

use std::sync::Arc;

use super::claims::is_expired;
use super::identity::Identity;

/// How many verified tokens are remembered, and for how long at most. The age
/// bound also bounds how long a token signed by a key that was since removed
/// from the JWKS keeps working.
const CAPACITY: usize = 100_000;
pub(super) const TTL_SECS: i64 = 60;

/// Tokens that verified, keyed by the whole token text (not a hash of it: a
/// hash collision must never hand one user another's identity). Bounded in
/// size and age.
pub(super) struct VerifiedTokens {
    tokens: quick_cache::sync::Cache<String, Verified>,
}

/// One remembered token: who it is, and when it was checked (unix seconds, the
/// clock `exp` is compared with, so one clock read serves both checks).
#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    checked_at: i64,
}

/// What the cache knows about a token at a given time.
pub(super) enum Cached {
    /// Checked less than [`TTL_SECS`] ago and not expired: serve it.
    Fresh(Arc<Identity>),
    /// Remembered, but past its `exp` and the leeway: expired, whatever a
    /// new check would say (the entry is dropped).
    Expired,
    /// Unknown, or checked too long ago: verify it.
    Miss,
}

impl VerifiedTokens {
    pub(super) fn new() -> VerifiedTokens {
        VerifiedTokens {
            tokens: quick_cache::sync::Cache::new(CAPACITY),
        }
    }

    /// Looks `token` up at `now` (unix seconds). Expiry is checked on every
    /// hit, so a cached token is refused at the same second a fresh one
    /// would be.
    #[inline]
    pub(super) fn lookup(&self, token: &str, now: i64, leeway: u64) -> Cached {
        if let Some(hit) = self.tokens.get(token) {
            if is_expired(hit.identity.expires_at, now, leeway) {
                self.tokens.remove(token);
                return Cached::Expired;
            }
            if now - hit.checked_at < TTL_SECS {
                return Cached::Fresh(hit.identity);
            }
        }
        Cached::Miss
    }

    /// Remembers a token that verified at `now`.
    pub(super) fn remember(&self, token: &str, identity: Arc<Identity>, now: i64) {
        self.tokens.insert(
            token.to_string(),
            Verified {
                identity,
                checked_at: now,
            },
        );
    }

    /// Whether `token` is remembered at all, whatever its age.
    #[cfg(test)]
    pub(super) fn contains(&self, token: &str) -> bool {
        self.tokens.get(token).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock is a parameter, so the 60 s and the `exp` boundaries are
    /// tested to the second without waiting for either.
    #[test]
    fn an_entry_is_served_for_sixty_seconds_and_never_past_exp() {
        let cache = VerifiedTokens::new();
        let t0 = 1_750_000_000;
        let exp = t0 + 3600;
        let identity = Arc::new(Identity::new("alice".to_owned(), exp).unwrap());
        assert!(matches!(cache.lookup("tok", t0, 0), Cached::Miss));

        cache.remember("tok", Arc::clone(&identity), t0);
        match cache.lookup("tok", t0 + TTL_SECS - 1, 0) {
            Cached::Fresh(hit) => assert!(Arc::ptr_eq(&hit, &identity)),
            _ => panic!("a token checked 59 s ago is served"),
        }
        assert!(
            matches!(cache.lookup("tok", t0 + TTL_SECS, 0), Cached::Miss),
            "a token checked 60 s ago is checked again"
        );

        // Expired at exp + 1 (with no leeway), even when checked just before.
        cache.remember("tok", Arc::clone(&identity), exp - 10);
        assert!(matches!(cache.lookup("tok", exp, 0), Cached::Fresh(_)));
        assert!(matches!(cache.lookup("tok", exp + 1, 0), Cached::Expired));
        assert!(!cache.contains("tok"), "an expired entry is dropped");

        // The leeway moves the boundary, for cached tokens as for fresh ones.
        cache.remember("tok", Arc::clone(&identity), exp - 10);
        assert!(matches!(cache.lookup("tok", exp + 5, 5), Cached::Fresh(_)));
        assert!(matches!(cache.lookup("tok", exp + 6, 5), Cached::Expired));
    }
}
