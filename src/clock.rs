//! Wall-clock time as paygate reads it: Unix seconds, and their RFC 3339 form.
//!
//! Everything that needs "now" in whole seconds asks here, so there is one
//! definition of the clock at the bottom of the dependency graph. Access
//! decisions follow Stripe's clock (wall time), not a monotonic one; pure code
//! takes the time as a parameter instead of calling `unix_now`.

/// Seconds since the Unix epoch, UTC. Stripe's own resolution; every time in the
/// model uses it so comparisons never mix units.
pub(crate) type UnixTime = i64;

/// Now, in Unix seconds (0 if the system clock is set before 1970).
pub(crate) fn unix_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Sub-second part of now, in nanoseconds: a tie-breaker for ids made within
/// one second and a seed for per-process randomness.
pub(crate) fn subsec_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// A time as an RFC 3339 UTC string in JSON (`"2023-11-14T22:13:20Z"`), or
/// `null` when absent or out of range.
pub(crate) fn rfc3339(time: Option<UnixTime>) -> serde_json::Value {
    time.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(serde_json::Value::String)
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(Some(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(None), serde_json::Value::Null);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(super::unix_now() > 1_577_836_800);
    }
}
