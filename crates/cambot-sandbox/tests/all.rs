//! cambot-sandbox integration tests: real bwrap (always) and real Docker (when dockerd is up).
//! Each needs root and those tools, so each is `#[ignore]`d; `scripts/test.sh` runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod suite;
