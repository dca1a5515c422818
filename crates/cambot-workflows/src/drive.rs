//! The durable state machine. Each loop re-reads the run from the store and advances its first
//! unfinished step: `running` is persisted before the step executes and its outcome after, each
//! as one compare-and-set transaction. So after a crash the stored rows say exactly where to
//! continue: a succeeded step is never run again, and a step left `running` was interrupted
//! mid-attempt and gets another attempt within its retries (at-least-once). A `send` step hands
//! the sender the same idempotency key on every attempt, which makes its message exactly-once.

use std::collections::BTreeMap;
use std::time::Duration;

use cambot_core::WorkflowRunRow;
use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepChange;
use cambot_core::WorkflowStepRow;
use cambot_core::WorkflowStepState;
use cambot_protocol::TenantId;
use tokio_util::sync::CancellationToken;

use crate::definition::Definition;
use crate::definition::Step;
use crate::definition::StepKind;
use crate::engine::Engine;
use crate::engine::RunOutcome;
use crate::error::Result;
use crate::error::WorkflowError;
use crate::executor::StepAction;
use crate::executor::StepCall;
use crate::executor::StepFailure;
use crate::template::Values;

/// How long a cancelled step's executor gets to stop its live work.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A step output larger than this fails the step (it is stored, and templated into later
/// steps).
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The longest wait before a retry.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The wait before attempt `attempt` (2 and up): 1 s, 2 s, 4 s, ... up to a minute.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(2).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_RETRY_DELAY)
}

/// The key a `send` step's message is queued under, the same for every attempt.
pub fn idempotency_key(run_id: &str, step_id: &str) -> String {
    format!("workflow:{run_id}/{step_id}")
}

/// Removes the run from the live map when its driver ends, however it ends.
struct LiveGuard<'a> {
    engine: &'a Engine,
    run_id: String,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.engine.live_runs().remove(&self.run_id);
    }
}

/// What to do with the first unfinished step.
enum Next<'a> {
    Finished(RunOutcome),
    /// Every step succeeded: end the run.
    Complete,
    /// The run cannot go on: end it failed with this error.
    Fail(String),
    Attempt {
        idx: usize,
        step: &'a Step,
        row: &'a WorkflowStepRow,
    },
}

impl Engine {
    /// Drives a run until it ends, from wherever its stored state is: a new run from its first
    /// step, a run interrupted by a crash from its first unfinished step. Returns how it ended.
    ///
    /// An error (the store failed) leaves the run `running` as stored; driving it again later
    /// continues it. Dropping the future stops the run the same way, as a crash would.
    pub async fn drive(&self, tenant: &TenantId, run_id: &str) -> Result<RunOutcome> {
        let token = CancellationToken::new();
        {
            let mut live = self.live_runs();
            if live.contains_key(run_id) {
                return Err(WorkflowError::AlreadyDriving(run_id.to_owned()));
            }
            live.insert(run_id.to_owned(), (tenant.clone(), token.clone()));
        }
        let _guard = LiveGuard {
            engine: self,
            run_id: run_id.to_owned(),
        };
        loop {
            let run = self
                .store
                .workflow_run(tenant, run_id)
                .await?
                .ok_or_else(|| WorkflowError::NoSuchRun(run_id.to_owned()))?;
            if run.state.is_finished() {
                return Ok(RunOutcome::of(&run));
            }
            let (def, inputs) = match parse_run(&run) {
                Ok(parsed) => parsed,
                Err(problem) => {
                    self.end_run(&run, WorkflowRunState::Failed, Some(problem))
                        .await?;
                    continue;
                }
            };
            match next(&run, &def) {
                Next::Finished(outcome) => return Ok(outcome),
                Next::Complete => {
                    self.end_run(&run, WorkflowRunState::Succeeded, None)
                        .await?;
                }
                Next::Fail(error) => {
                    self.end_run(&run, WorkflowRunState::Failed, Some(error))
                        .await?;
                }
                Next::Attempt { idx, step, row } => {
                    self.attempt(&run, &inputs, idx, step, row, &token).await?;
                }
            }
        }
    }

    /// One attempt of step `idx`: checks, persists `running`, executes, persists the outcome.
    async fn attempt(
        &self,
        run: &WorkflowRunRow,
        inputs: &BTreeMap<String, String>,
        idx: usize,
        step: &Step,
        row: &WorkflowStepRow,
        token: &CancellationToken,
    ) -> Result<()> {
        let attempt = row.attempt + 1;
        let last = idx + 1 == run.steps.len();
        if attempt > step.retries + 1 {
            // Only a crash gets here: the interrupted attempt was the step's last.
            let error = format!(
                "interrupted by a restart during its last attempt ({} of {})",
                row.attempt,
                step.retries + 1
            );
            return self.fail_step(run, step, row, row.attempt, error).await;
        }
        if attempt > 1 {
            tokio::select! {
                () = tokio::time::sleep(retry_delay(attempt)) => {}
                () = token.cancelled() => return Ok(()),
            }
        }
        if !self.groups.has_group(&run.tenant, &step.group).await? {
            let error = format!(
                "group {:?} is not a group of tenant {}",
                step.group.as_str(),
                run.tenant
            );
            return self.fail_step(run, step, row, row.attempt, error).await;
        }
        let action = match render(run, inputs, step) {
            Ok(action) => action,
            Err(error) => return self.fail_step(run, step, row, row.attempt, error).await,
        };
        let started = WorkflowStepRow {
            state: WorkflowStepState::Running,
            attempt,
            output: None,
            error: None,
            started_ms: Some(cambot_core::time::now_ms()),
            finished_ms: None,
            ..row.clone()
        };
        if !self.transition(run, row, started.clone(), None).await? {
            return Ok(());
        }
        tracing::info!(run = %run.id, step = %step.id, attempt, "workflow step started");
        let call = StepCall {
            tenant: run.tenant.clone(),
            group: step.group.clone(),
            workflow: run.workflow.clone(),
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            attempt,
            timeout: step.timeout,
            action,
        };
        let step_token = token.child_token();
        let attempt_future = tokio::time::timeout(
            step.timeout,
            self.executor.execute(call, step_token.clone()),
        );
        tokio::pin!(attempt_future);
        let result = tokio::select! {
            biased;
            r = &mut attempt_future => {
                r.unwrap_or_else(|_| Err(StepFailure::retryable(format!(
                    "timed out after {} s", step.timeout.as_secs()
                ))))
            }
            () = token.cancelled() => {
                // The step's token fired with the run's: let the executor stop its live work
                // (kill a sandbox) before its future is dropped.
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut attempt_future).await;
                Err(StepFailure::fatal("cancelled"))
            }
        };
        // Whatever is left of the attempt (a timed-out sandbox) is told to stop.
        step_token.cancel();
        if token.is_cancelled() {
            // `cancel` already stored the run and its steps as cancelled.
            return Ok(());
        }
        let now = Some(cambot_core::time::now_ms());
        match result {
            Ok(output) if output.len() > MAX_OUTPUT_BYTES => {
                let error = format!(
                    "output of {} bytes is over the {MAX_OUTPUT_BYTES}-byte limit",
                    output.len()
                );
                self.fail_step(run, step, &started, attempt, error).await
            }
            Ok(output) => {
                tracing::info!(run = %run.id, step = %step.id, attempt, "workflow step succeeded");
                let done = WorkflowStepRow {
                    state: WorkflowStepState::Succeeded,
                    output: Some(output),
                    finished_ms: now,
                    ..started.clone()
                };
                let finish = last.then_some((WorkflowRunState::Succeeded, None));
                self.transition(run, &started, done, finish).await.map(drop)
            }
            Err(failure) if failure.retryable && attempt <= step.retries => {
                tracing::warn!(run = %run.id, step = %step.id, attempt, error = %failure.message, "workflow step attempt failed; retrying");
                let again = WorkflowStepRow {
                    state: WorkflowStepState::Pending,
                    error: Some(failure.message),
                    finished_ms: now,
                    ..started.clone()
                };
                self.transition(run, &started, again, None).await.map(drop)
            }
            Err(failure) => {
                self.fail_step(run, step, &started, attempt, failure.message)
                    .await
            }
        }
    }

    /// Marks the step failed for good and the run failed with it, in one transaction.
    async fn fail_step(
        &self,
        run: &WorkflowRunRow,
        step: &Step,
        row: &WorkflowStepRow,
        attempts: u32,
        error: String,
    ) -> Result<()> {
        tracing::warn!(run = %run.id, step = %step.id, attempts, error = %error, "workflow step failed");
        let run_error = format!("step {:?} failed: {error}", step.id);
        let failed = WorkflowStepRow {
            state: WorkflowStepState::Failed,
            attempt: attempts,
            error: Some(error),
            finished_ms: Some(cambot_core::time::now_ms()),
            ..row.clone()
        };
        let finish = Some((WorkflowRunState::Failed, Some(run_error)));
        self.transition(run, row, failed, finish).await.map(drop)
    }

    /// Applies one step transition from `from` (compare-and-set). Returns whether it applied;
    /// when it did not, someone else moved the run (a cancel) and the caller re-reads.
    async fn transition(
        &self,
        run: &WorkflowRunRow,
        from: &WorkflowStepRow,
        to: WorkflowStepRow,
        finish_run: Option<(WorkflowRunState, Option<String>)>,
    ) -> Result<bool> {
        let applied = self
            .store
            .update_workflow_step(WorkflowStepChange {
                tenant: run.tenant.clone(),
                run_id: run.id.clone(),
                expected_state: from.state,
                expected_attempt: from.attempt,
                step: to,
                finish_run,
            })
            .await?;
        self.changed();
        Ok(applied)
    }

    async fn end_run(
        &self,
        run: &WorkflowRunRow,
        state: WorkflowRunState,
        error: Option<String>,
    ) -> Result<()> {
        self.store
            .finish_workflow_run(&run.tenant, &run.id, state, error)
            .await?;
        self.changed();
        Ok(())
    }
}

/// The run's definition copy and inputs, or why they no longer read back.
fn parse_run(
    run: &WorkflowRunRow,
) -> std::result::Result<(Definition, BTreeMap<String, String>), String> {
    let def = Definition::parse(&run.definition)
        .map_err(|e| format!("its stored definition no longer parses: {e}"))?;
    let inputs = serde_json::from_str(&run.inputs)
        .map_err(|e| format!("its stored inputs no longer parse: {e}"))?;
    let ids_match = def.steps.len() == run.steps.len()
        && def
            .steps
            .iter()
            .zip(&run.steps)
            .all(|(d, r)| d.id == r.step_id);
    if !ids_match {
        return Err("its stored steps do not match its definition".into());
    }
    Ok((def, inputs))
}

fn next<'a>(run: &'a WorkflowRunRow, def: &'a Definition) -> Next<'a> {
    if run.state.is_finished() {
        return Next::Finished(RunOutcome::of(run));
    }
    let Some(idx) = run
        .steps
        .iter()
        .position(|s| s.state != WorkflowStepState::Succeeded)
    else {
        return Next::Complete;
    };
    let row = &run.steps[idx];
    match row.state {
        WorkflowStepState::Pending | WorkflowStepState::Running => Next::Attempt {
            idx,
            step: &def.steps[idx],
            row,
        },
        // A step ends failed or cancelled only together with its run; seen alone, the run is
        // ended the same way.
        WorkflowStepState::Failed | WorkflowStepState::Cancelled => Next::Fail(
            row.error
                .clone()
                .unwrap_or_else(|| format!("step {:?} did not finish", row.step_id)),
        ),
        WorkflowStepState::Succeeded => Next::Complete,
    }
}

/// The step's action with its template rendered against the inputs and earlier outputs.
fn render(
    run: &WorkflowRunRow,
    inputs: &BTreeMap<String, String>,
    step: &Step,
) -> std::result::Result<StepAction, String> {
    let outputs: BTreeMap<String, String> = run
        .steps
        .iter()
        .filter(|s| s.state == WorkflowStepState::Succeeded)
        .filter_map(|s| Some((s.step_id.clone(), s.output.clone()?)))
        .collect();
    let values = Values {
        inputs,
        outputs: &outputs,
    };
    let text = |r: std::result::Result<String, _>| {
        r.map_err(|e: crate::template::TemplateError| {
            format!("key {:?}: {e}", step.kind.body_key())
        })
    };
    Ok(match step.kind {
        StepKind::Agent => StepAction::Agent {
            prompt: text(step.body.render(values))?,
            session: step.session,
        },
        StepKind::Command => StepAction::Command {
            command_line: text(step.body.render_command(values))?,
        },
        StepKind::Send => StepAction::Send {
            text: text(step.body.render(values))?,
            idempotency_key: idempotency_key(&run.id, &step.id),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_a_minute() {
        let waits: Vec<u64> = (2..10).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
