//! Task lifecycle changes (pause, resume, cancel) with one set of rules for every caller: the
//! agent's IPC tools (after their seed authorization) and the admin CLI (`cambot tasks`).
//!
//! - pause: an active task becomes `paused`; pausing a paused task changes nothing. A firing
//!   already claimed is not lost track of: it is re-checked at dispatch and recorded `cancelled`.
//! - resume: a paused task becomes `active` with its next run recomputed from now (the seed kept
//!   the stale one, so a task paused for a week fired at once on resume). An interval stays on
//!   its grid; a one-shot keeps its time and fires at once if that has passed (it never ran).
//!   Resuming an active task changes nothing. A stored schedule that no longer parses is
//!   refused with the reason and the task stays paused.
//! - cancel: the task and its run log are deleted (seed behaviour); a claimed firing is
//!   re-checked at dispatch and never starts.
//! - A `completed` one-shot can be neither paused nor resumed: it would fire again.
//!
//! Callers that share a process with the scheduler then call [`crate::Scheduler::wake`]; the
//! CLI, in another process, is noticed by the daemon through the store's `data_version`.

use cambot_core::ScheduledTask;
use cambot_core::StoreError;
use cambot_core::TaskStatus;
use cambot_core::TaskStore;
use cambot_protocol::TaskId;
use chrono::DateTime;
use chrono::Utc;

use crate::cron::ScheduleError;
use crate::rules::next_run_on_resume;

/// Why a lifecycle change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TaskChangeError {
    #[error("no task {0}")]
    NotFound(TaskId),
    /// The change makes no sense for the task as it is (the message says why).
    #[error("{0}")]
    Refused(String),
    /// The stored schedule no longer parses, so no next run can be computed.
    #[error("task {id} cannot be resumed: {source}; it stays paused")]
    InvalidSchedule {
        id: TaskId,
        #[source]
        source: ScheduleError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The task changed.
    Applied,
    /// The task already was in the asked state.
    Unchanged,
}

/// Reads a task by id, or says it does not exist.
pub async fn load_task(
    store: &dyn TaskStore,
    id: &TaskId,
) -> Result<ScheduledTask, TaskChangeError> {
    store
        .task(id)
        .await?
        .ok_or_else(|| TaskChangeError::NotFound(id.clone()))
}

fn refuse_completed(task: &ScheduledTask, what: &str) -> Result<(), TaskChangeError> {
    if task.status == TaskStatus::Completed {
        return Err(TaskChangeError::Refused(format!(
            "task {} is completed (a one-shot that has run); it cannot be {what}",
            task.id
        )));
    }
    Ok(())
}

/// Pauses `task`.
pub async fn pause_task(
    store: &dyn TaskStore,
    task: &ScheduledTask,
) -> Result<Change, TaskChangeError> {
    refuse_completed(task, "paused")?;
    if task.status == TaskStatus::Paused {
        return Ok(Change::Unchanged);
    }
    if !store
        .set_task_status(&task.id, TaskStatus::Paused, None)
        .await?
    {
        return Err(TaskChangeError::NotFound(task.id.clone()));
    }
    Ok(Change::Applied)
}

/// Resumes `task`, recomputing its next run from `now`. Returns the change and the next run.
pub async fn resume_task(
    store: &dyn TaskStore,
    task: &ScheduledTask,
    now: DateTime<Utc>,
) -> Result<(Change, Option<DateTime<Utc>>), TaskChangeError> {
    refuse_completed(task, "resumed")?;
    let stored_next = task
        .next_run_ms
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    if task.status == TaskStatus::Active {
        return Ok((Change::Unchanged, stored_next));
    }
    let next =
        next_run_on_resume(task, now).map_err(|source| TaskChangeError::InvalidSchedule {
            id: task.id.clone(),
            source,
        })?;
    let Some(next) = next else {
        return Err(TaskChangeError::Refused(format!(
            "task {} has no future firing; it stays paused",
            task.id
        )));
    };
    if !store
        .set_task_status(
            &task.id,
            TaskStatus::Active,
            Some(Some(next.timestamp_millis())),
        )
        .await?
    {
        return Err(TaskChangeError::NotFound(task.id.clone()));
    }
    Ok((Change::Applied, Some(next)))
}

/// Cancels (deletes) `task` and its run log.
pub async fn cancel_task(
    store: &dyn TaskStore,
    task: &ScheduledTask,
) -> Result<Change, TaskChangeError> {
    if !store.delete_task(&task.id).await? {
        return Err(TaskChangeError::NotFound(task.id.clone()));
    }
    Ok(Change::Applied)
}
