//! # cambot-agent
//!
//! The orchestrator library behind the `cambot` binary.

pub mod agent_run;
pub mod config;
pub mod daemon;
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
pub mod sandboxed;
pub mod task_run;
pub mod web_host;
