//! # cambot-agent
//!
//! The orchestrator library behind the `cambot` binary: config assembly, the router (message
//! loop), the group queue, task firings as agent runs, the daemon and its wiring. The cron
//! engine and task scheduler live in `cambot-scheduler`, the per-run host socket in
//! `cambot-gateway`.

#![forbid(unsafe_code)]

pub mod agent_run;
pub mod at_rest;
pub mod channel_secrets;
pub mod config;
pub mod daemon;
pub mod database;
pub mod documents;
pub mod formatting;
mod group_cache;
pub mod host;
pub mod local_model;
mod locks;
pub mod model_config;
pub mod outbox;
mod pipe_read;
pub mod production;
pub mod queue;
pub mod reply_caps;
pub mod router;
pub mod sandboxed;
pub mod task_run;
pub mod tenant_config;
pub mod tenant_model;
pub mod tenant_mounts;
pub mod uploads;
pub mod vault;
pub mod workflow_command;
pub mod workflow_steps;
pub mod workflows;
