//! # cambot-agent
//!
//! The orchestrator library behind the `cambot` binary.

pub mod schedule;
