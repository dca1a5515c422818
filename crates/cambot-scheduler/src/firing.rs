//! A claimed firing on its way to a run, and the seam that runs it ([`TaskDispatcher`]).
//!
//! The scheduler claims a firing (its run-log row is `claimed`) and hands it to the dispatcher.
//! Whoever executes it goes through [`Firing::begin`] and [`StartedFiring::finish`], so the
//! run-log rules are the same for every executor: a task paused or cancelled after its claim
//! never starts (`cancelled`), a task whose group is gone is paused with the reason instead of
//! retried forever, and every started firing ends `success` or `error`.

use std::time::Duration;

use cambot_core::RunOutcomeRecord;
use cambot_core::ScheduledTask;
use cambot_core::Store;
use cambot_core::TaskRunStatus;
use cambot_core::TaskStatus;
use cambot_core::TaskStore;
use cambot_protocol::RegisteredGroup;

/// Longest result kept in the run log (characters).
const MAX_LOGGED_RESULT: usize = 2_000;

/// One claimed firing: the task as it was when claimed and its run-log row.
#[derive(Debug, Clone)]
pub struct Firing {
    pub task: ScheduledTask,
    /// The run-log row (`task_runs.id`) this firing continues.
    pub run_id: i64,
}

/// Runs claimed firings: in cambot, the agent's group queue and agent runner.
///
/// Contract for implementers:
/// - [`dispatch`](Self::dispatch) is called from the scheduler's loop once per claimed firing
///   and must not block: queue the firing and return. `true` means it was queued and will be
///   executed through [`Firing::begin`]. `false` means it was not (the task is already queued
///   or running, or intake is closed); the scheduler then records the slot `skipped`, unless
///   [`is_shutting_down`](Self::is_shutting_down) says intake is closing, in which case the row
///   stays `claimed` and the next start resumes it.
/// - A task must never run twice at once: refuse a task that is already queued or running.
pub trait TaskDispatcher: Send + Sync {
    /// Queues one claimed firing. Returns whether it was queued.
    fn dispatch(&self, firing: Firing) -> bool;

    /// Whether intake is shutting down (no new firings are accepted).
    fn is_shutting_down(&self) -> bool;
}

/// A firing cleared to run: the task as it is now and the group it runs in.
#[derive(Debug, Clone)]
pub struct StartedFiring {
    pub task: ScheduledTask,
    pub group: RegisteredGroup,
    run_id: i64,
}

/// How a started firing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiringEnd {
    /// The run finished; `result` is the reply it sent, if any.
    Success { result: Option<String> },
    /// The run failed or did not start.
    Error(String),
}

impl Firing {
    /// Re-checks the claim when its run is about to start and marks the row `running`.
    ///
    /// `None` when the firing must not run; its row already says why: `cancelled` (the task
    /// was paused or cancelled after the claim), or `error` with the task paused (its group is
    /// no longer registered; seed DEFECT: it was retried every minute forever). Also `None`
    /// when the store cannot be read (logged; the row stays as it is).
    pub async fn begin(&self, store: &dyn Store) -> Option<StartedFiring> {
        let claimed = &self.task;
        let task = match store.task(&claimed.id).await {
            Ok(Some(t)) if t.status.is_active() => t,
            Ok(_) => {
                let note = "paused or cancelled before it started";
                if let Err(e) = store
                    .set_task_run_status(self.run_id, TaskRunStatus::Cancelled, Some(note))
                    .await
                {
                    tracing::error!(task = %claimed.id, run = self.run_id, error = %e, "recording the cancelled firing failed");
                }
                return None;
            }
            Err(e) => {
                tracing::error!(task = %claimed.id, error = %e, "reading the task failed");
                return None;
            }
        };
        let group = match store.registered_group(&task.tenant, &task.chat_jid).await {
            Ok(Some(g)) if g.folder == task.group_folder => g,
            Ok(_) => {
                let reason = format!("Group not found: {}", task.group_folder);
                tracing::error!(task = %task.id, reason = %reason, "pausing task");
                if let Err(e) = store
                    .finish_task_run(self.run_id, &task.id, &failed(0, &reason, false))
                    .await
                {
                    tracing::error!(task = %task.id, run = self.run_id, error = %e, "recording the firing failed");
                }
                if let Err(e) = store
                    .set_task_status(&task.id, TaskStatus::Paused, None)
                    .await
                {
                    tracing::error!(task = %task.id, error = %e, "pausing the task failed");
                }
                return None;
            }
            Err(e) => {
                tracing::error!(task = %task.id, error = %e, "reading the task's group failed");
                return None;
            }
        };
        if let Err(e) = store.start_task_run(self.run_id).await {
            tracing::error!(task = %task.id, error = %e, "marking the firing running failed");
        }
        Some(StartedFiring {
            task,
            group,
            run_id: self.run_id,
        })
    }
}

impl StartedFiring {
    /// Records how the firing ended (a one-shot with no further slot becomes `completed`).
    pub async fn finish(&self, store: &dyn TaskStore, took: Duration, end: FiringEnd) {
        let duration_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        let once = self.task.schedule_type == "once";
        let outcome = match end {
            FiringEnd::Success { result } => RunOutcomeRecord {
                status: TaskRunStatus::Success,
                duration_ms,
                result: result.map(|r| r.chars().take(MAX_LOGGED_RESULT).collect()),
                error: None,
                completes_once: once,
            },
            FiringEnd::Error(error) => {
                tracing::warn!(task = %self.task.id, error = %error, "task firing failed");
                failed(duration_ms, &error, once)
            }
        };
        if let Err(e) = store
            .finish_task_run(self.run_id, &self.task.id, &outcome)
            .await
        {
            tracing::error!(task = %self.task.id, error = %e, "recording the firing failed");
        }
    }
}

fn failed(duration_ms: i64, error: &str, once: bool) -> RunOutcomeRecord {
    RunOutcomeRecord {
        status: TaskRunStatus::Error,
        duration_ms,
        result: None,
        error: Some(error.to_owned()),
        completes_once: once,
    }
}
