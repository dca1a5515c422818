//! The one place deciding what a test does when a tool it needs (installed by a
//! `scripts/setup/*.sh` script) is missing. Such tests are `#[ignore]`d, so plain `cargo test`
//! reports them as ignored; `scripts/test.sh` runs them (`--include-ignored`) with
//! `CAMBOT_REQUIRE_ALL=1`, where a missing tool fails the test saying what is missing. Run by
//! hand without that variable, a test whose tool is missing is skipped, loudly.

/// `Some(tool)` when found; `None` (after printing `SKIPPED <test>: <reason>`) when missing and
/// skipping is allowed. Panics when missing and `CAMBOT_REQUIRE_ALL=1`.
pub(crate) fn require_tool<T>(test: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(tool) => Some(tool),
        Err(reason) => {
            let required = std::env::var("CAMBOT_REQUIRE_ALL").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: {reason} (CAMBOT_REQUIRE_ALL=1 forbids skipping)"
            );
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}
