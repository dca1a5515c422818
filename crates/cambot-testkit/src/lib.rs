//! # cambot-testkit
//!
//! Dev-only support for cambot's tests and benchmarks: scripted stand-in model servers that
//! speak the exact wire formats (`standin`), a fake channel, a scripted fake agent runner, a
//! map-backed tenant vault (`secrets`) and temporary data directories. Nothing here is linked into the `cambot` binary.

pub mod documents;
pub mod fake_channel;
pub mod fake_runner;
pub mod http_target;
mod locks;
pub mod secrets;
pub mod standin;
pub mod uds;
