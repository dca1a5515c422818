//! cambot-sandbox integration tests: real bwrap (always) and real Docker (when dockerd is up).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod suite;
