//! What every property test of the crate shares (test builds only).

use proptest::prelude::ProptestConfig;
use proptest::test_runner::RngSeed;

/// A property's run: `cases` inputs (counted so that all property tests
/// together stay within seconds), from a fixed seed so that `make test` is
/// repeatable; `PROPTEST_RNG_SEED=<n>` explores other inputs. Failures print
/// the input, and no regression files are written into the tree.
pub fn cases(cases: u32) -> ProptestConfig {
    let config = ProptestConfig::default();
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: match config.rng_seed {
            RngSeed::Random => RngSeed::Fixed(0x5c1a_2026),
            chosen => chosen,
        },
        ..config
    }
}
