//! The daemon's [`StepExecutor`]: how a workflow step reaches the agent, the sandbox and the
//! outbox.
//!
//! `agent` and `command` steps enter the group's queue exactly as a scheduled task does
//! ([`GroupQueue::enqueue_task`]): the same per-group slot and global limit as chat messages,
//! no side lane. An `agent` step is a one-off run of the group through the [`AgentRunner`]
//! (its folder, memory files, tool policy, tenant credentials through the gateway, sandbox
//! plan and limits: all decided by the runner from the group's registration, as for any run).
//! A `command` step is `sh -c` under the group's sandbox plan ([`SandboxCommands`]). A `send`
//! step queues its text once per idempotency key in the outbox and wakes the delivery task.

use std::sync::Arc;

use cambot_core::OnceReply;
use cambot_core::Store;
use cambot_protocol::GroupKey;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::RunId;
use cambot_protocol::TaskId;
use cambot_protocol::reply::format_outbound;
use cambot_workflows::SessionMode;
use cambot_workflows::StepAction;
use cambot_workflows::StepCall;
use cambot_workflows::StepExecutor;
use cambot_workflows::StepFailure;
use cambot_workflows::StepFuture;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::agent_run::AgentRunner;
use crate::agent_run::RunEvent;
use crate::agent_run::RunOutcome;
use crate::agent_run::RunPurpose;
use crate::agent_run::RunRequest;
use crate::outbox::Outbox;
use crate::queue::GroupQueue;
use crate::queue::QueuedTask;
use crate::queue::RunSlot;
use crate::workflow_command::SandboxCommands;

/// Runs workflow steps through the group queue, the agent runner and the outbox.
#[derive(Clone)]
pub struct WorkflowSteps {
    store: Arc<dyn Store>,
    queue: GroupQueue,
    runner: Arc<dyn AgentRunner>,
    outbox: Outbox,
    commands: Option<Arc<SandboxCommands>>,
}

impl std::fmt::Debug for WorkflowSteps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowSteps").finish_non_exhaustive()
    }
}

impl WorkflowSteps {
    /// Without `commands`, a `command` step fails (tests with a scripted runner).
    pub fn new(
        store: Arc<dyn Store>,
        queue: GroupQueue,
        runner: Arc<dyn AgentRunner>,
        outbox: Outbox,
        commands: Option<Arc<SandboxCommands>>,
    ) -> Self {
        Self {
            store,
            queue,
            runner,
            outbox,
            commands,
        }
    }

    async fn execute_call(
        &self,
        call: StepCall,
        cancel: CancellationToken,
    ) -> Result<String, StepFailure> {
        let group = self.group(&call).await?;
        if let StepAction::Send {
            text,
            idempotency_key,
        } = &call.action
        {
            return self.send(&call, &group, text, idempotency_key).await;
        }
        let key = GroupKey::new(call.tenant.clone(), call.group.clone());
        // A fresh id per attempt: the queue refuses an id it already holds.
        let id = TaskId::new(&format!("wf-{}", RunId::from_bytes(rand::random())))
            .map_err(|e| StepFailure::fatal(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        let me = self.clone();
        let token = cancel.clone();
        let queued = self.queue.enqueue_task(
            &key,
            QueuedTask {
                id,
                run: Box::new(move |slot| {
                    Box::pin(async move {
                        let result = me.in_slot(call, group, token, slot).await;
                        let _ = tx.send(result);
                    })
                }),
            },
        );
        let result = if queued { rx.await.ok() } else { None };
        match result {
            Some(result) => result,
            // Shutdown dropped the queued step: leave it `running` as a crash would; the
            // daemon stops driving the run and the next start retries the step.
            None if self.queue.is_shutting_down() => std::future::pending().await,
            None => Err(StepFailure::retryable(
                "the group queue did not run the step",
            )),
        }
    }

    /// The step's group registration: its chat (where a `send` goes and what a run answers)
    /// and its sandbox settings.
    async fn group(&self, call: &StepCall) -> Result<RegisteredGroup, StepFailure> {
        let groups = self
            .store
            .groups_in_folder(&call.tenant, &call.group)
            .await
            .map_err(|e| StepFailure::retryable(format!("reading the group: {e}")))?;
        groups.into_iter().next().ok_or_else(|| {
            StepFailure::fatal(format!(
                "group {:?} has no registered chat",
                call.group.as_str()
            ))
        })
    }

    async fn send(
        &self,
        call: &StepCall,
        group: &RegisteredGroup,
        text: &str,
        idempotency_key: &str,
    ) -> Result<String, StepFailure> {
        let (outbox_id, fresh) = self
            .store
            .enqueue_reply_once(OnceReply {
                tenant: call.tenant.clone(),
                chat_jid: group.jid.clone(),
                text: text.to_owned(),
                origin: format!("workflow:{}", call.workflow),
                idempotency_key: idempotency_key.to_owned(),
            })
            .await
            .map_err(|e| StepFailure::retryable(format!("queueing the message: {e}")))?;
        tracing::debug!(run = %call.run_id, step = %call.step_id, outbox_id, fresh, "workflow message queued");
        self.outbox.kick();
        Ok(text.to_owned())
    }

    /// The step in its queue slot.
    async fn in_slot(
        &self,
        call: StepCall,
        group: RegisteredGroup,
        cancel: CancellationToken,
        slot: RunSlot,
    ) -> Result<String, StepFailure> {
        if cancel.is_cancelled() {
            return Err(StepFailure::fatal("cancelled before it started"));
        }
        match call.action {
            StepAction::Agent { prompt, session } => {
                self.agent(&group, prompt, session, &cancel, &slot).await
            }
            StepAction::Command { command_line } => match &self.commands {
                Some(commands) => {
                    commands
                        .run(&group, &command_line, call.timeout, &cancel)
                        .await
                }
                None => Err(StepFailure::fatal("command steps need a sandbox backend")),
            },
            StepAction::Send { .. } => Err(StepFailure::fatal("a send step is not queued")),
        }
    }

    /// One agent run of the group, as a scheduled task runs: the first answer is the output.
    async fn agent(
        &self,
        group: &RegisteredGroup,
        prompt: String,
        session: SessionMode,
        cancel: &CancellationToken,
        slot: &RunSlot,
    ) -> Result<String, StepFailure> {
        let session_id = match session {
            SessionMode::Group => self
                .store
                .session(&group.tenant, &group.folder)
                .await
                .map_err(|e| StepFailure::retryable(format!("reading the session: {e}")))?,
            SessionMode::Run => None,
        };
        let task_id = TaskId::new("workflow").map_err(|e| StepFailure::fatal(e.to_string()))?;
        let request = RunRequest {
            run_id: RunId::from_bytes(rand::random()),
            group: group.clone(),
            chat_jid: group.jid.clone(),
            prompt,
            session_id,
            purpose: RunPurpose::Task { task_id },
        };
        let mut run = self
            .runner
            .start(request)
            .await
            .map_err(|e| StepFailure::retryable(format!("the run did not start: {e}")))?;
        slot.register_run(run.control.clone(), None);
        let mut answer: Option<String> = None;
        let mut error: Option<String> = None;
        loop {
            let event = tokio::select! {
                e = run.events.recv() => e,
                () = cancel.cancelled() => {
                    run.control.kill().await;
                    error.get_or_insert_with(|| "cancelled".to_owned());
                    // Drain to the exit: nothing of the run may outlive the step.
                    while let Some(e) = run.events.recv().await {
                        if matches!(e, RunEvent::Exited(_)) { break; }
                    }
                    break;
                }
            };
            let Some(event) = event else { break };
            match event {
                RunEvent::Result {
                    text, session_id, ..
                } => {
                    if answer.is_none() {
                        answer = Some(text.as_deref().map(format_outbound).unwrap_or_default());
                    }
                    if session == SessionMode::Group
                        && let Some(sid) = session_id
                        && let Err(e) = self
                            .store
                            .set_session(&group.tenant, &group.folder, &sid)
                            .await
                    {
                        tracing::warn!(group = %group.folder, error = %e, "saving the session failed");
                    }
                    // A step is one prompt: finish after its first answer.
                    run.control.close();
                }
                RunEvent::Error { message, .. } => error = Some(message),
                RunEvent::Exited(exit) => {
                    if let RunOutcome::Failed { reason } = exit.outcome {
                        error.get_or_insert(reason);
                    }
                    break;
                }
                _ => {}
            }
        }
        match (answer, error) {
            (Some(answer), None) => Ok(answer),
            (_, Some(error)) => Err(StepFailure::retryable(error)),
            (None, None) => Err(StepFailure::retryable("the agent gave no answer")),
        }
    }
}

impl StepExecutor for WorkflowSteps {
    fn execute(&self, call: StepCall, cancel: CancellationToken) -> StepFuture<'_> {
        Box::pin(self.execute_call(call, cancel))
    }
}
