//! One run, from `start` to exit. The first turn answers the start prompt; `message` lines that
//! arrive meanwhile queue up and become the next turn together (newline-joined, counted in the
//! next `result`'s `inputs`); `close` (or the end of stdin) ends the run after the current turn.
//! Queued messages that no turn has started on stay unanswered, so the host keeps them.

use std::collections::VecDeque;

use cambot_protocol::HostToRunner;
use cambot_protocol::RunnerToHost;
use cambot_protocol::StartInput;
use cambot_protocol::run::SCHEDULED_TASK_PREFIX;
use cambot_providers::Provider;
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::env::RunnerEnv;
use crate::error::RunnerError;
use crate::io::Inbound;
use crate::session::Session;
use crate::tools::Confinement;
use crate::tools::HostClient;
use crate::tools::ToolContext;
use crate::tools::Toolbox;

async fn emit(events: &mpsc::Sender<RunnerToHost>, event: RunnerToHost) {
    if events.send(event).await.is_err() {
        tracing::debug!("event dropped: the stdout writer is gone");
    }
}

/// Waits for the `start` line. Malformed lines and anything else before it are reported as
/// `warning` events and skipped; `None` when input ends first.
pub async fn wait_for_start(
    inputs: &mut mpsc::Receiver<Inbound>,
    events: &mpsc::Sender<RunnerToHost>,
) -> Option<StartInput> {
    while let Some(item) = inputs.recv().await {
        match item {
            Ok(HostToRunner::Start(start)) => return Some(*start),
            Ok(other) => {
                let kind = match other {
                    HostToRunner::Message { .. } => "message",
                    _ => "close",
                };
                emit(
                    events,
                    RunnerToHost::Warning {
                        message: format!("protocol: got {kind} before start; ignored"),
                    },
                )
                .await;
            }
            Err(reason) => {
                emit(events, RunnerToHost::Warning { message: reason }).await;
            }
        }
    }
    None
}

/// The first turn's text: a scheduled task's prompt carries the fixed marker paragraph.
pub fn first_prompt(start: &StartInput) -> String {
    if start.is_scheduled_task {
        format!("{SCHEDULED_TASK_PREFIX}\n\n{}", start.prompt)
    } else {
        start.prompt.clone()
    }
}

/// Builds the run's agent: session (resumed or new), tools (confined to the workspace, host
/// tools over the socket).
pub fn build_agent<P: Provider>(
    provider: P,
    start: StartInput,
    env: RunnerEnv,
    events: mpsc::Sender<RunnerToHost>,
) -> Result<Agent<P>, RunnerError> {
    let group = env.group_dir();
    std::fs::create_dir_all(&group)
        .map_err(|e| RunnerError::io(format!("create {}", group.display()), e))?;
    let fs = Confinement::new(&env.workspace)
        .map_err(|e| RunnerError::io(format!("workspace {}", env.workspace.display()), e))?;
    let host = HostClient::new(&env.host_socket, &start.host_token)?;
    let tools = Toolbox::new(
        ToolContext {
            fs,
            limits: start.limits,
            host,
            extractor: crate::tools::extractor_path(),
            documents: crate::tools::DocumentCache::default(),
        },
        start.tools,
        start.is_main,
    );
    let session = Session::open(&env.session_dir(), start.session_id.as_deref())?;
    tracing::info!(
        run = %start.run_id,
        session = session.id(),
        resumed = session.resumed(),
        tools = tools.names().len(),
        "run started"
    );
    Ok(Agent::new(provider, start, env, tools, session, events))
}

/// What the input side asked for while a turn ran.
#[derive(Debug, Default)]
struct Pending {
    messages: VecDeque<String>,
    closing: bool,
    input_done: bool,
}

impl Pending {
    async fn take(&mut self, item: Option<Inbound>, events: &mpsc::Sender<RunnerToHost>) {
        match item {
            None => {
                self.input_done = true;
                self.closing = true;
            }
            Some(Ok(HostToRunner::Message { text })) => self.messages.push_back(text),
            Some(Ok(HostToRunner::Close)) => self.closing = true,
            Some(Ok(HostToRunner::Start(_))) => {
                emit(
                    events,
                    RunnerToHost::Warning {
                        message: "protocol: a second start was ignored".into(),
                    },
                )
                .await;
            }
            Some(Err(reason)) => {
                emit(events, RunnerToHost::Warning { message: reason }).await;
            }
        }
    }
}

/// Runs the conversation until `close` or the end of input. A fatal error is reported as an
/// `error` event and returned.
pub async fn run<P: Provider>(
    mut agent: Agent<P>,
    inputs: &mut mpsc::Receiver<Inbound>,
    events: &mpsc::Sender<RunnerToHost>,
) -> Result<(), RunnerError> {
    emit(events, RunnerToHost::Ready).await;
    let mut pending = Pending::default();
    pending.messages.push_back(first_prompt(agent.start()));
    loop {
        if pending.messages.is_empty() {
            if pending.closing {
                break;
            }
            let item = inputs.recv().await;
            pending.take(item, events).await;
            continue;
        }
        let batch: Vec<String> = pending.messages.drain(..).collect();
        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let outcome = {
            let turn = agent.turn(batch.join("\n"));
            tokio::pin!(turn);
            loop {
                tokio::select! {
                    biased;
                    out = &mut turn => break out,
                    item = inputs.recv(), if !pending.input_done => pending.take(item, events).await,
                }
            }
        };
        // Input that arrived while the turn was finishing counts as arrived during it.
        while !pending.input_done {
            match inputs.try_recv() {
                Ok(item) => pending.take(Some(item), events).await,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => pending.take(None, events).await,
            }
        }
        match outcome {
            Ok(end) => {
                emit(
                    events,
                    RunnerToHost::Result {
                        text: end.text,
                        session_id: Some(agent.session().id().to_owned()),
                        inputs: count,
                    },
                )
                .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "the turn failed; ending the run");
                emit(
                    events,
                    RunnerToHost::Error {
                        message: e.to_string(),
                        retryable: e.retryable(),
                    },
                )
                .await;
                return Err(e);
            }
        }
        if pending.closing {
            break;
        }
    }
    tracing::info!(session = agent.session().id(), "run finished");
    Ok(())
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
