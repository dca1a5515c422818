//! # cambot-agent
//!
//! The orchestrator library behind the `cambot` binary.

pub mod queue;
pub mod runner;
pub mod schedule;
