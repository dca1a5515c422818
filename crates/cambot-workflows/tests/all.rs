//! cambot-workflows integration tests: one binary, cases under `suite/`.
// Integration tests are test code: panicking on a broken precondition is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]
mod suite;
