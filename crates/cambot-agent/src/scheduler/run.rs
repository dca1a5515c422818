//! Executing one claimed firing inside its group's queue slot.

use std::sync::Arc;
use std::time::Instant;

use cambot_core::ContextMode;
use cambot_core::RunOutcomeRecord;
use cambot_core::ScheduledTask;
use cambot_protocol::RunId;

use super::Scheduler;
use crate::agent_run::RunEvent;
use crate::agent_run::RunOutcome;
use crate::agent_run::RunPurpose;
use crate::agent_run::RunRequest;
use crate::queue::RunSlot;
use cambot_protocol::reply::format_outbound;

impl Scheduler {
    pub(super) async fn execute(
        self: Arc<Self>,
        claimed: ScheduledTask,
        run_id: i64,
        slot: RunSlot,
    ) {
        // Re-checked at dispatch: a task paused or cancelled after its claim never starts.
        let task = match self.store.task(&claimed.id) {
            Ok(Some(t)) if t.status.is_active() => t,
            Ok(_) => {
                let _ = self.store.set_task_run_status(
                    run_id,
                    "cancelled",
                    Some("paused or cancelled before it started"),
                );
                return;
            }
            Err(e) => {
                tracing::error!(task = %claimed.id, error = %e, "reading the task failed");
                return;
            }
        };
        let group = match self.store.registered_group(&task.tenant, &task.chat_jid) {
            Ok(Some(g)) if g.folder == task.group_folder => g,
            Ok(_) => {
                // Seed DEFECT: retried every minute forever. Pause with the reason instead.
                let reason = format!("Group not found: {}", task.group_folder);
                tracing::error!(task = %task.id, reason = %reason, "pausing task");
                let _ = self
                    .store
                    .finish_task_run(run_id, &task.id, &failed(0, &reason, false));
                let _ = self
                    .store
                    .set_task_status(&task.id, cambot_core::TaskStatus::Paused);
                return;
            }
            Err(e) => {
                tracing::error!(task = %task.id, error = %e, "reading the task's group failed");
                return;
            }
        };
        if let Err(e) = self.store.start_task_run(run_id) {
            tracing::error!(task = %task.id, error = %e, "marking the firing running failed");
        }
        let started = Instant::now();
        let session_id = match task.context_mode {
            ContextMode::Group => self
                .store
                .session(&task.tenant, &task.group_folder)
                .ok()
                .flatten(),
            ContextMode::Isolated => None,
        };
        let request = RunRequest {
            run_id: RunId::from_bytes(rand::random()),
            group,
            chat_jid: task.chat_jid.clone(),
            prompt: task.prompt.clone(),
            session_id,
            purpose: RunPurpose::Task {
                task_id: task.id.clone(),
            },
        };
        let once = task.schedule_type == "once";
        let outcome = match self.runner.start(request).await {
            Ok(mut run) => {
                slot.register_run(run.control.clone(), None);
                let mut result: Option<String> = None;
                let mut error: Option<String> = None;
                while let Some(event) = run.events.recv().await {
                    match event {
                        RunEvent::Result { text, .. } => {
                            let reply = text.as_deref().map(format_outbound).unwrap_or_default();
                            if !reply.is_empty() {
                                let origin = format!("task:{}", task.id);
                                match self
                                    .store
                                    .commit_reply_async(
                                        &task.tenant,
                                        &task.chat_jid,
                                        &reply,
                                        &origin,
                                        None,
                                    )
                                    .await
                                {
                                    Ok(_) => self.outbox.kick(),
                                    Err(e) => error = Some(format!("saving the reply failed: {e}")),
                                }
                                result = Some(reply);
                            }
                            // A task is one prompt: finish after its first answer.
                            let control = run.control.clone();
                            let after = self.settings.close_after_result;
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
                let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
                match error {
                    Some(e) => failed(duration_ms, &e, once),
                    None => RunOutcomeRecord {
                        status: "success",
                        duration_ms,
                        result: result.map(|r| r.chars().take(2_000).collect()),
                        error: None,
                        completes_once: once,
                    },
                }
            }
            Err(e) => failed(0, &format!("run did not start: {e}"), once),
        };
        if outcome.status == "error" {
            tracing::warn!(task = %task.id, error = outcome.error.as_deref().unwrap_or(""), "task firing failed");
        }
        if let Err(e) = self.store.finish_task_run(run_id, &task.id, &outcome) {
            tracing::error!(task = %task.id, error = %e, "recording the firing failed");
        }
    }
}

fn failed(duration_ms: i64, error: &str, once: bool) -> RunOutcomeRecord {
    RunOutcomeRecord {
        status: "error",
        duration_ms,
        result: None,
        error: Some(error.to_owned()),
        completes_once: once,
    }
}
