#!/usr/bin/env bash
# The long mode of every property test of hostile input: the path
# normalizer and route matcher, the Stripe-Signature verifier, the event
# parser, and the JWT header and claims readers, each against a plain model
# written in the test. `cargo test` runs the same properties with a few hundred
# cases; this runs CASES (default 100,000) of each, in release mode.
#
#   bash benches/proptest.sh                  # ~3 minutes after the build
#   CASES=1000000 bash benches/proptest.sh
#
# A failure prints the shrunk input; proptest saves it under
# proptest-regressions/ so the fast mode replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
export PAYGATE_PROPTEST_CASES=${CASES:-100000}
# Every #[ignore]d test in the library is one of these long modes.
cargo test --release --lib -- --ignored
