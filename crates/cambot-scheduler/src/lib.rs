//! # cambot-scheduler
//!
//! Scheduled tasks for cambot: when a task fires, and that each firing is handed out exactly
//! once, across crashes and restarts.
//!
//! - [`cron`]: the schedule engine, pure functions only. [`cron::Schedule`] reads the IPC/CLI
//!   form `(schedule_type, schedule_value)`: 5-field cron expressions evaluated in the task's
//!   zone (with written-down DST rules, checked against Python croniter by
//!   `tests/suite/cron_differential.rs`), intervals on a fixed grid, and one-shots;
//!   [`cron::decide_due`] applies the missed-run policy.
//! - [`Scheduler`]: the claim loop. It sleeps until the earliest `next_run`, claims every due
//!   firing in the same transaction that moves `next_run` forward, and hands each claimed
//!   [`Firing`] to a [`TaskDispatcher`]. Firings a crash interrupted are resumed at start.
//! - [`TaskDispatcher`]: the seam to whoever runs a firing. In cambot the agent implements it
//!   (its group queue and agent runner); an executor goes through [`Firing::begin`] and
//!   [`StartedFiring::finish`] so the run-log rules hold for every executor.
//! - [`pause_task`], [`resume_task`], [`cancel_task`]: the lifecycle rules shared by the
//!   agent's IPC tools and the admin CLI.
//! - [`SchedulerConfig`]: the `[scheduler]` config section; [`Clock`]: where "now" comes from
//!   ([`TokioClock`] runs schedules in paused tokio time for tests).
//!
//! What it does not own: storage (tasks and the run log live behind `cambot-core`'s [`Store`]),
//! running agents, and delivering replies (both in `cambot-agent`).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn wire(
//! #     store: Arc<dyn cambot_core::Store>,
//! #     dispatcher: Arc<dyn cambot_scheduler::TaskDispatcher>,
//! # ) {
//! use cambot_scheduler::{Scheduler, SchedulerConfig, SystemClock};
//!
//! let settings = SchedulerConfig::default().settings();
//! let scheduler = Scheduler::new(store, dispatcher, Arc::new(SystemClock), settings);
//! tokio::spawn(scheduler.run(tokio_util::sync::CancellationToken::new()));
//! # }
//! ```
//!
//! [`Store`]: cambot_core::Store

#![forbid(unsafe_code)]

pub mod cron;

mod clock;
mod config;
mod firing;
mod lifecycle;
mod rules;
mod scheduler;

pub use clock::Clock;
pub use clock::SystemClock;
pub use clock::TokioClock;
pub use config::SchedulerConfig;
pub use firing::Firing;
pub use firing::FiringEnd;
pub use firing::StartedFiring;
pub use firing::TaskDispatcher;
pub use lifecycle::Change;
pub use lifecycle::TaskChangeError;
pub use lifecycle::cancel_task;
pub use lifecycle::load_task;
pub use lifecycle::pause_task;
pub use lifecycle::resume_task;
pub use rules::next_run_on_resume;
pub use rules::stored_schedule;
pub use scheduler::Scheduler;
pub use scheduler::SchedulerSettings;
