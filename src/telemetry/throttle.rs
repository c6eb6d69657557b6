//! Rate limit for a warning that can repeat once per request (a store outage,
//! a dead upstream): at most one line per period, carrying how many similar
//! ones were left out since the previous. Lock-free: two atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One kind of repeated warning. Kept in a `static` next to the line it limits.
pub(crate) struct Throttle {
    period_ms: u64,
    /// Monotonic milliseconds (since the first check in the process) from
    /// which the next line may be written.
    next_ms: AtomicU64,
    /// Lines left out since the last one written.
    suppressed: AtomicU64,
}

/// What the caller writes with an admitted line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// Similar lines left out since the previous admitted one.
    pub(crate) suppressed: u64,
}

impl Throttle {
    /// At most one line per `period`.
    pub(crate) const fn new(period: Duration) -> Throttle {
        Throttle {
            period_ms: period.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some` when this occurrence should be logged (with the count of the
    /// ones left out before it), `None` when it is only counted.
    pub(crate) fn admit(&self) -> Option<Admitted> {
        self.admit_at(now_ms())
    }

    fn admit_at(&self, now_ms: u64) -> Option<Admitted> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.period_ms,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(Admitted {
                suppressed: self.suppressed.swap(0, Ordering::AcqRel),
            });
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // +1 so the very first check (at 0) is past the initial `next_ms`.
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_left_out() {
        let throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.admit_at(1), Some(Admitted { suppressed: 0 }));
        for t in 2..500 {
            assert_eq!(throttle.admit_at(t), None);
        }
        assert_eq!(throttle.admit_at(1000), None);
        assert_eq!(throttle.admit_at(1001), Some(Admitted { suppressed: 499 }));
        assert_eq!(throttle.admit_at(1002), None);
        // A quiet spell: the next one is written with what came before it.
        assert_eq!(throttle.admit_at(9000), Some(Admitted { suppressed: 1 }));
        assert_eq!(throttle.admit_at(10_001), Some(Admitted { suppressed: 0 }));
    }

    #[test]
    fn concurrent_callers_admit_one_per_period() {
        let throttle = std::sync::Arc::new(Throttle::new(Duration::from_secs(3600)));
        let admitted: u64 = (0..4)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    (0..10_000).filter(|_| throttle.admit().is_some()).count() as u64
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 1);
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 39_999);
    }
}
