//! Test support: a scripted in-memory [`Provider`] and a workspace in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::ModelChoice;
use cambot_protocol::RunId;
use cambot_protocol::RunLimits;
use cambot_protocol::RunnerToHost;
use cambot_protocol::StartInput;
use cambot_protocol::TenantId;
use cambot_protocol::ToolPolicy;
use cambot_providers::Dialect;
use cambot_providers::EventStream;
use cambot_providers::InvalidToolInput;
use cambot_providers::ModelRequest;
use cambot_providers::Provider;
use cambot_providers::ProviderError;
use cambot_providers::StopReason;
use cambot_providers::StreamEvent;
use cambot_providers::Usage;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::agent::Agent;
use crate::env::RunnerEnv;

/// One scripted answer.
pub(crate) enum Reply {
    Events(Vec<StreamEvent>),
    /// Never answers (wall-clock tests under paused time).
    Stall,
    /// Answers once the gate opens.
    Gated(oneshot::Receiver<()>, Vec<StreamEvent>),
    Fail(ProviderError),
}

fn usage(input: u64, output: u64) -> StreamEvent {
    StreamEvent::Usage(Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    })
}

/// A final text answer, streamed in two deltas.
pub(crate) fn text(t: &str) -> Reply {
    Reply::Events(text_events(t))
}

pub(crate) fn text_events(t: &str) -> Vec<StreamEvent> {
    let mid = t
        .char_indices()
        .nth(t.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    vec![
        StreamEvent::MessageStart {
            id: Some("msg_1".into()),
            model: Some("scripted".into()),
        },
        usage(10, 1),
        StreamEvent::TextDelta {
            text: t[..mid].to_owned(),
        },
        StreamEvent::TextDelta {
            text: t[mid..].to_owned(),
        },
        usage(10, 5),
        StreamEvent::Stop {
            reason: StopReason::EndTurn,
            stop_sequence: None,
        },
    ]
}

/// Tool calls `(id, name, input)`, in order, with `tokens` output tokens.
pub(crate) fn tools_with_usage(calls: &[(&str, &str, Value)], tokens: u64) -> Reply {
    let mut ev = vec![StreamEvent::MessageStart {
        id: None,
        model: None,
    }];
    for (id, name, input) in calls {
        ev.push(StreamEvent::ToolCallStart {
            id: (*id).into(),
            name: (*name).into(),
        });
        ev.push(StreamEvent::ToolArgsDelta {
            id: (*id).into(),
            fragment: input.to_string(),
        });
        ev.push(StreamEvent::ToolCallEnd {
            id: (*id).into(),
            input: input.clone(),
            invalid_input: None,
        });
    }
    ev.push(usage(10, tokens));
    ev.push(StreamEvent::Stop {
        reason: StopReason::ToolUse,
        stop_sequence: None,
    });
    Reply::Events(ev)
}

pub(crate) fn tools(calls: &[(&str, &str, Value)]) -> Reply {
    tools_with_usage(calls, 5)
}

/// A tool call whose arguments were not valid JSON.
pub(crate) fn invalid_tool(id: &str, name: &str, raw: &str) -> Reply {
    Reply::Events(vec![
        StreamEvent::ToolCallStart {
            id: id.into(),
            name: name.into(),
        },
        StreamEvent::ToolCallEnd {
            id: id.into(),
            input: serde_json::json!({}),
            invalid_input: Some(InvalidToolInput {
                raw: raw.into(),
                error: "EOF while parsing an object".into(),
            }),
        },
        usage(10, 5),
        StreamEvent::Stop {
            reason: StopReason::ToolUse,
            stop_sequence: None,
        },
    ])
}

/// A provider answering from a script and recording every request.
#[derive(Clone, Default)]
pub(crate) struct Scripted {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<ModelRequest>>>,
}

impl Scripted {
    pub(crate) fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self {
            replies: Arc::new(Mutex::new(replies.into_iter().collect())),
            requests: Arc::default(),
        }
    }

    pub(crate) fn push(&self, reply: Reply) {
        self.replies.lock().unwrap().push_back(reply);
    }

    pub(crate) fn requests(&self) -> Vec<ModelRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn stream(&self, request: ModelRequest) -> EventStream {
        self.requests.lock().unwrap().push(request);
        let reply = self.replies.lock().unwrap().pop_front();
        match reply {
            Some(Reply::Events(ev)) => futures::stream::iter(ev.into_iter().map(Ok)).boxed(),
            Some(Reply::Stall) => futures::stream::pending().boxed(),
            Some(Reply::Gated(gate, ev)) => futures::stream::once(async move {
                let _ = gate.await;
                futures::stream::iter(ev.into_iter().map(Ok))
            })
            .flatten()
            .boxed(),
            Some(Reply::Fail(e)) => futures::stream::iter([Err(e)]).boxed(),
            None => {
                futures::stream::iter([Err(ProviderError::Decode("the script ran out".into()))])
                    .boxed()
            }
        }
    }
}

pub(crate) fn start_input(limits: RunLimits) -> StartInput {
    StartInput {
        run_id: RunId::from_bytes([7; 16]),
        tenant: TenantId::default_tenant(),
        group_folder: GroupFolder::new("family").unwrap(),
        chat_jid: ChatJid::new("cli:family").unwrap(),
        is_main: false,
        prompt: "hello".into(),
        session_id: None,
        is_scheduled_task: false,
        assistant_name: "Andy".into(),
        timezone: "Europe/Paris".into(),
        local_clock: None,
        host_token: "tok".into(),
        model: ModelChoice {
            provider: "scripted".into(),
            dialect: "anthropic".into(),
            model: "scripted-1".into(),
            max_tokens: 1000,
        },
        tools: ToolPolicy::Full,
        limits,
    }
}

/// A workspace (`group/`, `global/`, `session/`) in a temp dir.
pub(crate) struct World {
    _dir: tempfile::TempDir,
    pub(crate) env: RunnerEnv,
}

impl World {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("workspace");
        for d in ["group", "global", "session"] {
            std::fs::create_dir_all(ws.join(d)).unwrap();
        }
        let env = RunnerEnv::new(dir.path().join("no-host.sock"), ws);
        Self { _dir: dir, env }
    }

    pub(crate) fn agent(
        &self,
        provider: Scripted,
        start: StartInput,
    ) -> (Agent<Scripted>, mpsc::Receiver<RunnerToHost>) {
        let (tx, rx) = mpsc::channel(1024);
        let agent = crate::driver::build_agent(provider, start, self.env.clone(), tx).unwrap();
        (agent, rx)
    }
}

/// Every event queued so far.
pub(crate) fn drain(rx: &mut mpsc::Receiver<RunnerToHost>) -> Vec<RunnerToHost> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}
