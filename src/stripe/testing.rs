//! What the property tests of this module share: the case counts of the fast and long
//! modes, and a runner that reports the shrunk input of a failure.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// Cases per property in `cargo test`.
pub(crate) const FAST_CASES: u32 = 512;

/// Cases per property in the `#[ignore]`d long mode: `PAYGATE_PROPTEST_CASES`, else
/// 100,000.
pub(crate) fn long_cases() -> u32 {
    std::env::var("PAYGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Runs `property` on `cases` inputs from `strategy`; a failure panics with the
/// shrunk input, and its seed is kept in `proptest-regressions/` to be replayed.
pub(crate) fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    if let Err(failure) = TestRunner::new(config).run(&strategy, property) {
        panic!("{failure}");
    }
}
