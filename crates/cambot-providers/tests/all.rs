//! cambot-providers' integration tests: one binary, cases under `suite/`. Every dialect runs
//! against the wire-exact stand-ins of `cambot_testkit::standin`; `local_model` runs against
//! the real `llama-server` with SmolLM2.
// Integration tests are test code: panicking on a broken precondition is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]
mod suite;
