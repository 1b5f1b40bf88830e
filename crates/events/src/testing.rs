//! Test support shared by every crate whose tests need a real server (feature
//! `test-util`): Redis, NATS and PostgreSQL tests read the server's URL from a
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
