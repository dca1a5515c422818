//! cambot-runner's integration tests: the real binary against a real host gateway socket whose
//! model upstream is the scripted Anthropic stand-in, and the protocol document's examples.
// Integration tests are test code: panicking on a broken precondition is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]
mod suite;
