//! Test support shared by the crates' tests (feature `test-util`): the byte
//! damage of the fuzz targets ([`mutate`]), and the servers of the
//! distributed backends: Redis, NATS and PostgreSQL tests read the server's URL from a
//! `BATON_TEST_*_URL` variable and skip, visibly, when it is unset, except in CI
//! (`CI` set), where a test that cannot reach its server must fail rather than
//! pass by skipping.

use std::io::Write as _;

/// The URL in `var`, or `None` after printing `skipped: <test>: set <var> (e.g.
/// <example>)` on stderr (past the test harness's capture), when it is unset or empty outside CI. The test is named
/// after the thread it runs on, which the test harness names after the test.
///
/// # Panics
///
/// When `var` is unset and `CI` is set.
pub fn server_url(var: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let test = current_test();
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {var} is not set, but CI is: this test needs its server");
            }
            // Written to stderr itself, not with `eprintln!`, which the test
            // harness captures and shows only for failing tests: a skip that
            // passes must still be seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: set {var} (e.g. {example})"
            );
            None
        }
    }
}

/// The running test's name, as the test harness names its thread.
fn current_test() -> String {
    match std::thread::current().name() {
        // The harness runs tests on the main thread when it runs one at a time.
        Some(name) if name != "main" => name.to_owned(),
        _ => "a test".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_test_it_runs_in() {
        let name = current_test();
        assert!(
            name == "testing::tests::names_the_test_it_runs_in" || name == "a test",
            "{name}"
        );
    }
}

/// Damage done to bytes by the fuzz targets (proptest strategies): a byte
/// flipped, deleted or inserted, or the rest cut off, as a bad disk, a
/// stray write or a broken client leaves them.
pub mod mutate {
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// One edit; positions are fractions of the length at the time.
    #[derive(Debug, Clone)]
    pub enum Edit {
        /// XOR a byte with a non-zero mask.
        Flip(Index, u8),
        /// Remove a byte.
        Delete(Index),
        /// Insert a byte.
        Insert(Index, u8),
        /// Truncate there.
        Cut(Index),
    }

    /// Edits, flips four times as often as the others; inserted bytes drawn
    /// from `inserted` half of the time (the characters that matter to the
    /// format at hand), any byte otherwise.
    pub fn edit(inserted: &'static [u8]) -> impl Strategy<Value = Edit> {
        let byte = prop_oneof![any::<u8>(), prop::sample::select(inserted.to_vec())];
        prop_oneof![
            4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            1 => any::<Index>().prop_map(Edit::Delete),
            1 => (any::<Index>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
            1 => any::<Index>().prop_map(Edit::Cut),
        ]
    }

    /// Applies `edits` in order (an emptied input stays empty).
    pub fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
        for e in edits {
            if bytes.is_empty() {
                return;
            }
            match *e {
                Edit::Flip(i, b) => {
                    let at = i.index(bytes.len());
                    bytes[at] ^= b | 1;
                }
                Edit::Delete(i) => {
                    bytes.remove(i.index(bytes.len()));
                }
                Edit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), b),
                Edit::Cut(i) => bytes.truncate(i.index(bytes.len())),
            }
        }
    }

    /// `PROPTEST_CASES`, or `default` for targets whose cases are costly.
    pub fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(default)
    }
}
