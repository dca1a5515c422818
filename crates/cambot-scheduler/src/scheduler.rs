//! The claim loop (seed-spec section 6, with its defects fixed).
//!
//! One task sleeps until the earliest `next_run` (no polling), wakes early when tasks change,
//! and claims every due firing in a transaction that also moves `next_run` forward
//! ([`cambot_core::Claim`]): a firing is handed out once, across crashes and restarts. Claimed
//! firings go to the [`TaskDispatcher`] (in cambot, the agent's group queue: tasks before
//! messages); a task whose previous firing is still running is never started again, its slot is
//! skipped. Firings interrupted by a crash are resumed at start-up. Missed slots follow the
//! task's policy (`skip` by default, `run_once`).

use std::sync::Arc;
use std::time::Duration;

use cambot_core::Claim;
use cambot_core::ScheduledTask;
use cambot_core::Store;
use cambot_core::StoreError;
use cambot_core::TaskRunStatus;
use chrono::DateTime;
use chrono::TimeDelta;
use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::cron::DueAction;
use crate::cron::decide_due;
use crate::firing::Firing;
use crate::firing::TaskDispatcher;
use crate::rules::stored_schedule;

/// Most due firings claimed per transaction.
const CLAIM_BATCH: usize = 512;
/// The longest the scheduler sleeps before re-reading the clock (wall-clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Scheduler settings.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    /// How late a firing may be and still count as on time (default
    /// [`crate::cron::DEFAULT_MISSED_GRACE`]).
    pub missed_grace: TimeDelta,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            missed_grace: crate::cron::DEFAULT_MISSED_GRACE,
        }
    }
}

/// The scheduler. Cheap to share.
pub struct Scheduler {
    store: Arc<dyn Store>,
    dispatcher: Arc<dyn TaskDispatcher>,
    clock: Arc<dyn Clock>,
    wake: Notify,
    settings: SchedulerSettings,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler over `store` that hands claimed firings to `dispatcher`. Start it with
    /// [`Scheduler::run`].
    pub fn new(
        store: Arc<dyn Store>,
        dispatcher: Arc<dyn TaskDispatcher>,
        clock: Arc<dyn Clock>,
        settings: SchedulerSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            dispatcher,
            clock,
            wake: Notify::new(),
            settings,
        })
    }

    /// Tasks changed (created, resumed, ...): re-check the earliest due time now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A callback that wakes this scheduler, for services that change tasks (the IPC tools).
    /// Holds the scheduler weakly: it does nothing once the scheduler is gone.
    pub fn waker(self: &Arc<Self>) -> Arc<dyn Fn() + Send + Sync> {
        let me = Arc::downgrade(self);
        Arc::new(move || {
            if let Some(s) = me.upgrade() {
                s.wake();
            }
        })
    }

    /// Runs until `cancel`: resumes interrupted firings, then fires tasks as they fall due.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.resume_interrupted().await;
        loop {
            let now = self.clock.now();
            if let Err(e) = self.fire_due(now).await {
                tracing::error!(error = %e, "scheduler pass failed");
            }
            let wait = match self.store.next_due_ms().await {
                Ok(Some(ms)) => {
                    let now_ms = self.clock.now().timestamp_millis();
                    Duration::from_millis(u64::try_from(ms - now_ms).unwrap_or(0)).min(MAX_SLEEP)
                }
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::error!(error = %e, "reading the next due time failed");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Claims and queues every firing due at `now`. Returns how many were queued.
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut queued = 0;
        loop {
            let due = self.store.due_tasks(now_ms, CLAIM_BATCH).await?;
            if due.is_empty() {
                return Ok(queued);
            }
            let busy = self.store.tasks_with_unfinished_runs().await?;
            let mut claims = Vec::with_capacity(due.len());
            let mut tasks = Vec::with_capacity(due.len());
            for row in due {
                let task = match row.task {
                    Ok(t) => t,
                    Err(e) => {
                        // Seed behaviour kept, but with a reason: a task that cannot run is paused
                        // after one pass instead of retried forever.
                        tracing::error!(task = %row.id, error = %e, "stored task is invalid; pausing it");
                        self.store
                            .pause_invalid_task(&row.id, &e.to_string())
                            .await?;
                        continue;
                    }
                };
                let Some(next_ms) = task.next_run_ms else {
                    continue;
                };
                let schedule = match stored_schedule(&task, now) {
                    Ok(s) => s,
                    Err(reason) => {
                        tracing::error!(task = %task.id, reason = %reason, "task schedule is invalid; pausing it");
                        self.store
                            .pause_invalid_task(task.id.as_str(), &reason.to_string())
                            .await?;
                        continue;
                    }
                };
                let stored = DateTime::<Utc>::from_timestamp_millis(next_ms).unwrap_or(now);
                let decision = decide_due(
                    &schedule,
                    stored,
                    now,
                    task.missed_policy,
                    self.settings.missed_grace,
                );
                let mut new_next = decision.next_run.map(|t| t.timestamp_millis());
                if new_next.is_some_and(|n| n <= next_ms) {
                    // The schedule has sub-millisecond precision and its next time rounds onto
                    // the slot being claimed: that is this slot, so take the one after it.
                    new_next = DateTime::<Utc>::from_timestamp_millis(next_ms + 1)
                        .and_then(|after| schedule.next_run_after(after))
                        .map(|t| t.timestamp_millis())
                        .filter(|&n| n > next_ms);
                }
                let (status, note) = match decision.action {
                    DueAction::NotDue => continue,
                    DueAction::Skip { .. } => (
                        TaskRunStatus::Skipped,
                        Some("missed while cambot was down (policy: skip)".to_owned()),
                    ),
                    DueAction::Fire { .. } if busy.contains(task.id.as_str()) => (
                        TaskRunStatus::Skipped,
                        Some("the previous firing is still running".to_owned()),
                    ),
                    DueAction::Fire { .. } => (TaskRunStatus::Claimed, None),
                };
                claims.push(Claim {
                    task_id: task.id.clone(),
                    expected_next_run_ms: next_ms,
                    new_next_run_ms: new_next,
                    scheduled_for_ms: next_ms,
                    run_status: status,
                    note,
                });
                tasks.push(task);
            }
            if claims.is_empty() {
                continue;
            }
            let results = self.store.claim_firings(&claims).await?;
            for ((claim, task), run_id) in claims.iter().zip(tasks).zip(results) {
                let Some(run_id) = run_id else { continue };
                if claim.run_status == TaskRunStatus::Claimed {
                    self.dispatch(task, run_id).await;
                    queued += 1;
                } else {
                    tracing::info!(task = %claim.task_id, reason = claim.note.as_deref().unwrap_or(""), "firing skipped");
                }
            }
        }
    }

    /// Hands one claimed firing to the dispatcher; a firing it refuses is logged `skipped`.
    async fn dispatch(&self, task: ScheduledTask, run_id: i64) {
        let task_id = task.id.clone();
        let queued = self.dispatcher.dispatch(Firing { task, run_id });
        if !queued && !self.dispatcher.is_shutting_down() {
            let note = "the task is already queued or running";
            if let Err(e) = self
                .store
                .set_task_run_status(run_id, TaskRunStatus::Skipped, Some(note))
                .await
            {
                tracing::error!(task = %task_id, run = run_id, error = %e, "recording the refused firing failed");
            }
        }
    }

    /// Firings claimed or running when the process stopped: run them now (the same run-log row
    /// continues), or mark them interrupted when their task is gone or no longer active.
    async fn resume_interrupted(&self) {
        let runs = match self.store.unfinished_task_runs().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading interrupted firings failed");
                return;
            }
        };
        for run in runs {
            match self.store.task_of_run(run.id).await {
                Ok(Some(task)) if task.status.is_active() => {
                    tracing::info!(task = %task.id, run = run.id, "resuming a firing interrupted by a restart");
                    if let Err(e) = self
                        .store
                        .set_task_run_status(run.id, TaskRunStatus::Claimed, None)
                        .await
                    {
                        tracing::error!(task = %task.id, run = run.id, error = %e, "re-claiming the interrupted firing failed");
                    }
                    self.dispatch(task, run.id).await;
                }
                found => {
                    if let Err(e) = &found {
                        tracing::error!(run = run.id, error = %e, "reading the task of an interrupted firing failed");
                    }
                    let note = "cambot stopped during this firing";
                    if let Err(e) = self
                        .store
                        .set_task_run_status(run.id, TaskRunStatus::Interrupted, Some(note))
                        .await
                    {
                        tracing::error!(run = run.id, error = %e, "marking the firing interrupted failed");
                    }
                }
            }
        }
    }
}
