//! The agent loop of one turn: model call (streamed; text deltas forwarded as they arrive) →
//! tool calls → tool results → … → final text. Generic over [`Provider`], so tests drive it
//! with a scripted provider and the binary with the gateway provider.
//!
//! Stop rules, checked in this order: final text (a model answer with no tool call), wall
//! clock (the turn's deadline; a running tool is cancelled and its process group killed),
//! token budget and max iterations (checked after each model call, before running its tools).
//! A limit ends the turn with a `result` whose text says which limit stopped it; the run stays
//! alive for follow-ups. A failed model call ends the run with an `error`.

use std::time::Duration;

use cambot_protocol::RunnerToHost;
use cambot_protocol::StartInput;
use cambot_providers::Message;
use cambot_providers::MessageCollector;
use cambot_providers::ModelRequest;
use cambot_providers::Provider;
use cambot_providers::StopReason;
use cambot_providers::StreamEvent;
use cambot_providers::ToolResult;
use cambot_providers::ToolUse;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::compact;
use crate::env::RunnerEnv;
use crate::error::RunnerError;
use crate::memory;
use crate::session;
use crate::session::Session;
use crate::tools::Toolbox;

/// Why a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnStop {
    /// The model answered without asking for a tool.
    FinalText,
    /// `max_iterations` model calls were made.
    MaxIterations,
    /// The turn used more than `token_budget` tokens.
    TokenBudget,
    /// The turn ran past `wall_clock_secs`.
    WallClock,
}

/// The end of a turn: the reply text (if any) and why it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnEnd {
    pub text: Option<String>,
    pub stop: TurnStop,
}

/// One conversation: provider, tools, session and the channel events go to.
pub struct Agent<P> {
    provider: P,
    start: StartInput,
    env: RunnerEnv,
    tools: Toolbox,
    session: Session,
    events: mpsc::Sender<RunnerToHost>,
}

impl<P: Provider> Agent<P> {
    pub fn new(
        provider: P,
        start: StartInput,
        env: RunnerEnv,
        tools: Toolbox,
        session: Session,
        events: mpsc::Sender<RunnerToHost>,
    ) -> Self {
        Self {
            provider,
            start,
            env,
            tools,
            session,
            events,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn tools(&self) -> &Toolbox {
        &self.tools
    }

    pub(crate) async fn emit(&self, event: RunnerToHost) {
        if self.events.send(event).await.is_err() {
            tracing::debug!("event dropped: the stdout writer is gone");
        }
    }

    /// Runs one turn for `user_text`. On error the turn leaves no trace in the transcript, so
    /// the host can retry the same input in a new run.
    pub async fn turn(&mut self, user_text: String) -> Result<TurnEnd, RunnerError> {
        compact::maybe_compact(self).await;
        let before = self.session.messages().len();
        let result = self.turn_inner(user_text).await;
        if result.is_err()
            && let Err(e) = self.session.truncate(before)
        {
            tracing::error!(error = %e, "rolling back the failed turn's transcript failed");
        }
        result
    }

    async fn turn_inner(&mut self, user_text: String) -> Result<TurnEnd, RunnerError> {
        let limits = self.start.limits;
        let deadline = Instant::now() + Duration::from_secs(limits.wall_clock_secs);
        let user_text = if self.start.tools == cambot_protocol::ToolPolicy::None {
            crate::memory::plain_chat_text(&user_text)
        } else {
            user_text
        };
        self.session.push(Message::user(user_text))?;
        let mut tokens = 0u64;
        let mut texts: Vec<String> = Vec::new();
        let max_iterations = limits.max_iterations.max(1);
        for iteration in 1..=max_iterations {
            let Ok(answer) = tokio::time::timeout_at(deadline, self.model_call()).await else {
                return Ok(self.stopped(TurnStop::WallClock, texts, tokens).await);
            };
            let answer = answer?;
            tokens += answer.usage.input_tokens + answer.usage.output_tokens;
            let text = answer.message.text();
            let calls: Vec<ToolUse> = answer.message.tool_uses().cloned().collect();
            self.session.push(answer.message)?;
            if calls.is_empty() {
                if answer.stop_reason == StopReason::PauseTurn {
                    continue;
                }
                return Ok(TurnEnd {
                    text: (!text.trim().is_empty()).then_some(text),
                    stop: TurnStop::FinalText,
                });
            }
            if !text.trim().is_empty() {
                texts.push(text);
            }
            let limit = if tokens >= limits.token_budget {
                Some(TurnStop::TokenBudget)
            } else if iteration == max_iterations {
                Some(TurnStop::MaxIterations)
            } else {
                None
            };
            if let Some(stop) = limit {
                let why = stop_reason_text(&stop, &self.start, tokens);
                let results = calls
                    .iter()
                    .map(|c| ToolResult::error(&c.id, format!("not run: {why}")))
                    .collect::<Vec<_>>();
                self.session.push(Message::tool_results(results))?;
                return Ok(self.stopped(stop, texts, tokens).await);
            }
            let (results, timed_out) = self.run_tools(&calls, deadline).await;
            self.session.push(Message::tool_results(results))?;
            if timed_out {
                return Ok(self.stopped(TurnStop::WallClock, texts, tokens).await);
            }
        }
        // Only `pause_turn` answers can get here.
        Ok(self.stopped(TurnStop::MaxIterations, texts, tokens).await)
    }

    /// Answers every call, in the order the model made them.
    async fn run_tools(&self, calls: &[ToolUse], deadline: Instant) -> (Vec<ToolResult>, bool) {
        let mut results = Vec::with_capacity(calls.len());
        let mut timed_out = false;
        for call in calls {
            if timed_out {
                results.push(ToolResult::error(
                    &call.id,
                    "not run: the turn's wall-clock limit was reached",
                ));
                continue;
            }
            let detail: String = format!("{} {}", call.name, call.input)
                .chars()
                .take(200)
                .collect();
            self.emit(RunnerToHost::Activity {
                kind: "tool_use".into(),
                detail: Some(detail),
            })
            .await;
            match tokio::time::timeout_at(deadline, self.tools.call(call)).await {
                Ok(r) => results.push(r),
                Err(_) => {
                    timed_out = true;
                    results.push(ToolResult::error(
                        &call.id,
                        "interrupted: the turn's wall-clock limit was reached",
                    ));
                }
            }
        }
        (results, timed_out)
    }

    /// One streamed model call over the current history.
    async fn model_call(&self) -> Result<cambot_providers::AssistantMessage, RunnerError> {
        let request = ModelRequest {
            model: Some(self.start.model.model.clone()),
            system: Some(memory::system_prompt(
                &self.start,
                &self.env,
                self.session.summary(),
            )),
            messages: session::repair(self.session.messages().to_vec()),
            tools: self.tools.definitions(),
            max_tokens: Some(self.start.model.max_tokens),
            ..ModelRequest::default()
        };
        let answer = self.stream(request, true).await?;
        Ok(answer)
    }

    /// Streams one request to completion, forwarding text deltas when `forward` is set, and
    /// reports its usage.
    pub(crate) async fn stream(
        &self,
        request: ModelRequest,
        forward: bool,
    ) -> Result<cambot_providers::AssistantMessage, RunnerError> {
        let mut stream = self.provider.stream(request);
        let mut collector = MessageCollector::new();
        while let Some(event) = stream.next().await {
            let event = event?;
            if forward && let StreamEvent::TextDelta { text } = &event {
                self.emit(RunnerToHost::TextDelta { text: text.clone() })
                    .await;
            }
            collector.push(&event);
        }
        let answer = collector.finish()?;
        self.emit(RunnerToHost::Usage {
            input_tokens: answer.usage.input_tokens,
            output_tokens: answer.usage.output_tokens,
        })
        .await;
        Ok(answer)
    }

    async fn stopped(&self, stop: TurnStop, texts: Vec<String>, tokens: u64) -> TurnEnd {
        let why = stop_reason_text(&stop, &self.start, tokens);
        tracing::warn!(reason = %why, "turn stopped by a limit");
        self.emit(RunnerToHost::Activity {
            kind: "stopped".into(),
            detail: Some(why.clone()),
        })
        .await;
        let mut text = texts.join("\n\n");
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!("[stopped: {why}]"));
        TurnEnd {
            text: Some(text),
            stop,
        }
    }

    pub(crate) fn start(&self) -> &StartInput {
        &self.start
    }

    pub(crate) fn env(&self) -> &RunnerEnv {
        &self.env
    }

    pub(crate) fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// The human-readable reason a limit stopped a turn.
pub fn stop_reason_text(stop: &TurnStop, start: &StartInput, tokens: u64) -> String {
    let l = &start.limits;
    match stop {
        TurnStop::FinalText => "final answer".into(),
        TurnStop::MaxIterations => format!(
            "max_iterations: this turn reached its limit of {} model calls",
            l.max_iterations
        ),
        TurnStop::TokenBudget => format!(
            "token_budget: this turn used {tokens} tokens, over its budget of {}",
            l.token_budget
        ),
        TurnStop::WallClock => format!(
            "wall_clock: this turn ran longer than its limit of {} s",
            l.wall_clock_secs
        ),
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
