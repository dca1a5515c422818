//! Tools that `scripts/setup/*.sh` installs. The tests needing one are `#[ignore]`d (plain
//! `cargo test` reports them as ignored); `scripts/test.sh` runs them with `--include-ignored`
//! and `CAMBOT_REQUIRE_ALL=1`, where a missing tool fails the test. Run by hand without that
//! variable, the test prints `SKIPPED <test>: <reason>` and returns.

use cambot_testkit::standin::llama::LlamaFiles;

/// The local model files, or `None` after printing why the test is skipped.
pub(crate) fn llama_files(test: &str) -> Option<LlamaFiles> {
    match LlamaFiles::from_env() {
        Ok(files) => Some(files),
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
