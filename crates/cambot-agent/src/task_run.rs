//! Scheduled-task firings as agent runs: the agent's side of [`TaskDispatcher`].
//!
//! The scheduler (`cambot-scheduler`) claims a firing and hands it here; it is queued on its
//! group (tasks before messages, one run per group) and, when its slot comes, re-checked
//! ([`Firing::begin`]), run by the [`AgentRunner`], its reply cleaned and committed to the
//! outbox, and its outcome recorded ([`StartedFiring::finish`]).

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use cambot_core::ContextMode;
use cambot_core::NewReply;
use cambot_core::Store;
use cambot_protocol::GroupKey;
use cambot_protocol::RunId;
use cambot_protocol::reply::format_outbound;
use cambot_scheduler::Firing;
use cambot_scheduler::FiringEnd;
use cambot_scheduler::StartedFiring;
use cambot_scheduler::TaskDispatcher;

use crate::agent_run::AgentRunner;
use crate::agent_run::RunEvent;
use crate::agent_run::RunOutcome;
use crate::agent_run::RunPurpose;
use crate::agent_run::RunRequest;
use crate::outbox::Outbox;
use crate::queue::GroupQueue;
use crate::queue::QueuedTask;
use crate::queue::RunSlot;

/// Runs claimed firings in their group's queue slot. Cheap to clone.
#[derive(Clone)]
pub struct TaskExecutor {
    store: Arc<dyn Store>,
    queue: GroupQueue,
    runner: Arc<dyn AgentRunner>,
    outbox: Outbox,
    close_after_result: Duration,
}

impl std::fmt::Debug for TaskExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskExecutor").finish_non_exhaustive()
    }
}

impl TaskExecutor {
    /// Firings go through `queue`, run on `runner`; replies are committed to `store` and
    /// `outbox` is woken to deliver them.
    pub fn new(
        store: Arc<dyn Store>,
        queue: GroupQueue,
        runner: Arc<dyn AgentRunner>,
        outbox: Outbox,
    ) -> Self {
        Self {
            store,
            queue,
            runner,
            outbox,
            close_after_result: Duration::ZERO,
        }
    }

    /// Closes a task's run this long after its first reply (default: at once).
    #[must_use]
    pub fn with_close_after_result(mut self, after: Duration) -> Self {
        self.close_after_result = after;
        self
    }

    async fn execute(self, firing: Firing, slot: RunSlot) {
        let Some(started) = firing.begin(self.store.as_ref()).await else {
            return;
        };
        let (took, end) = self.run(&started, &slot).await;
        started.finish(self.store.as_ref(), took, end).await;
    }

    /// Runs the firing's prompt; returns how long it ran and how it ended.
    async fn run(&self, started: &StartedFiring, slot: &RunSlot) -> (Duration, FiringEnd) {
        let task = &started.task;
        let begun = Instant::now();
        let session_id = match task.context_mode {
            ContextMode::Group => self
                .store
                .session(&task.tenant, &task.group_folder)
                .await
                .ok()
                .flatten(),
            ContextMode::Isolated => None,
        };
        let request = RunRequest {
            run_id: RunId::from_bytes(rand::random()),
            group: started.group.clone(),
            chat_jid: task.chat_jid.clone(),
            prompt: task.prompt.clone(),
            session_id,
            purpose: RunPurpose::Task {
                task_id: task.id.clone(),
            },
        };
        let mut run = match self.runner.start(request).await {
            Ok(run) => run,
            Err(e @ crate::agent_run::RunStartError::MissingSecret { .. }) => {
                return (Duration::ZERO, FiringEnd::Error(e.to_string()));
            }
            Err(e) => {
                return (
                    Duration::ZERO,
                    FiringEnd::Error(format!("run did not start: {e}")),
                );
            }
        };
        slot.register_run(run.control.clone(), None);
        let mut result: Option<String> = None;
        let mut error: Option<String> = None;
        while let Some(event) = run.events.recv().await {
            match event {
                RunEvent::Result { text, .. } => {
                    let reply = text.as_deref().map(format_outbound).unwrap_or_default();
                    if !reply.is_empty() {
                        let commit = NewReply {
                            tenant: task.tenant.clone(),
                            chat_jid: task.chat_jid.clone(),
                            text: reply.clone(),
                            origin: format!("task:{}", task.id),
                            advance_to: None,
                        };
                        match self.store.commit_reply(commit).await {
                            Ok(_) => self.outbox.kick(),
                            Err(e) => error = Some(format!("saving the reply failed: {e}")),
                        }
                        result = Some(reply);
                    }
                    // A task is one prompt: finish after its first answer.
                    let control = run.control.clone();
                    let after = self.close_after_result;
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        control.close();
                    });
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
        let end = match error {
            Some(e) => FiringEnd::Error(e),
            None => FiringEnd::Success { result },
        };
        (begun.elapsed(), end)
    }
}

impl TaskDispatcher for TaskExecutor {
    /// Queues the firing on its group; false when the task is already queued or running there,
    /// or the queue is shutting down.
    fn dispatch(&self, firing: Firing) -> bool {
        let key = GroupKey::new(firing.task.tenant.clone(), firing.task.group_folder.clone());
        let id = firing.task.id.clone();
        let me = self.clone();
        self.queue.enqueue_task(
            &key,
            QueuedTask {
                id,
                run: Box::new(move |slot| Box::pin(me.execute(firing, slot))),
            },
        )
    }

    fn is_shutting_down(&self) -> bool {
        self.queue.is_shutting_down()
    }
}
