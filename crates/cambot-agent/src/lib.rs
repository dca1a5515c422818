//! # cambot-agent
//!
//! The orchestrator library behind the `cambot` binary.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod database;
pub mod formatting;
pub mod gateway;
mod group_cache;
pub mod host;
pub mod ipc;
pub mod local_model;
pub mod model_config;
pub mod outbox;
pub mod production;
pub mod queue;
pub mod router;
pub mod runner;
pub mod sandboxed;
pub mod schedule;
pub mod scheduler;
