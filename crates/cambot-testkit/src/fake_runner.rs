//! A scripted [`AgentRunner`] for orchestrator tests and benchmarks. It keeps the runner
//! contract of the real sandboxed runner: one `Result` per turn counting the inputs it answered,
//! follow-ups that arrive during a turn coalesced into the next turn, `Close` finishes, `Kill`
//! stops at once, and the event stream always ends with `Exited`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cambot_agent::agent_run::ActiveRun;
use cambot_agent::agent_run::AgentRunner;
use cambot_agent::agent_run::BoxFuture;
use cambot_agent::agent_run::RUN_CHANNEL_CAPACITY;
use cambot_agent::agent_run::RunControl;
use cambot_agent::agent_run::RunEvent;
use cambot_agent::agent_run::RunExit;
use cambot_agent::agent_run::RunInput;
use cambot_agent::agent_run::RunOutcome;
use cambot_agent::agent_run::RunRequest;
use cambot_agent::agent_run::RunStartError;
use tokio::sync::mpsc;

/// What one turn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Time the turn takes before its result.
    pub delay: Duration,
    /// Reply text (`None`: the turn produces no reply).
    pub reply: Option<String>,
    /// Fail the run instead of answering.
    pub fail: Option<String>,
    /// Stream these text deltas before the result.
    pub deltas: Vec<String>,
}

impl Turn {
    pub fn reply(text: impl Into<String>) -> Self {
        Self {
            delay: Duration::ZERO,
            reply: Some(text.into()),
            fail: None,
            deltas: Vec::new(),
        }
    }

    pub fn silent() -> Self {
        Self {
            delay: Duration::ZERO,
            reply: None,
            fail: None,
            deltas: Vec::new(),
        }
    }

    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            delay: Duration::ZERO,
            reply: None,
            fail: Some(reason.into()),
            deltas: Vec::new(),
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Decides each turn from the run request and the turn's prompt.
pub type Script = Arc<dyn Fn(&RunRequest, &str) -> Turn + Send + Sync>;

/// A record of one started run.
#[derive(Debug, Clone)]
pub struct StartedRun {
    pub request: RunRequest,
    /// Every turn's prompt, in order (the start prompt, then coalesced follow-ups).
    pub prompts: Arc<Mutex<Vec<String>>>,
}

pub struct ScriptedRunner {
    script: Script,
    /// How long `start` takes before the run exists (a sandbox takes ~100 ms).
    start_delay: Duration,
    started: Mutex<Vec<StartedRun>>,
    live: Arc<AtomicUsize>,
    max_live: Arc<AtomicUsize>,
    record: bool,
}

impl std::fmt::Debug for ScriptedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedRunner").finish_non_exhaustive()
    }
}

impl ScriptedRunner {
    pub fn new(script: impl Fn(&RunRequest, &str) -> Turn + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self::build(Arc::new(script), true))
    }

    /// Answers every turn with `echo: <prompt>`.
    pub fn echo() -> Arc<Self> {
        Self::new(|_, prompt| Turn::reply(format!("echo: {prompt}")))
    }

    /// Like [`ScriptedRunner::new`] but records nothing (benchmarks: no growing memory).
    pub fn quiet(script: impl Fn(&RunRequest, &str) -> Turn + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self::build(Arc::new(script), false))
    }

    fn build(script: Script, record: bool) -> Self {
        Self {
            script,
            start_delay: Duration::ZERO,
            started: Mutex::new(Vec::new()),
            live: Arc::new(AtomicUsize::new(0)),
            max_live: Arc::new(AtomicUsize::new(0)),
            record,
        }
    }

    /// Like [`ScriptedRunner::new`], but each `start` takes `delay` before it returns the run.
    pub fn slow_start(
        delay: Duration,
        script: impl Fn(&RunRequest, &str) -> Turn + Send + Sync + 'static,
    ) -> Arc<Self> {
        let mut runner = Self::build(Arc::new(script), true);
        runner.start_delay = delay;
        Arc::new(runner)
    }

    pub fn started(&self) -> Vec<StartedRun> {
        crate::locks::lock("scripted runs", &self.started).clone()
    }

    pub fn live_runs(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub fn max_live_runs(&self) -> usize {
        self.max_live.load(Ordering::SeqCst)
    }
}

impl AgentRunner for ScriptedRunner {
    fn start(&self, request: RunRequest) -> BoxFuture<'_, Result<ActiveRun, RunStartError>> {
        let prompts = Arc::new(Mutex::new(Vec::new()));
        if self.record {
            crate::locks::lock("scripted runs", &self.started).push(StartedRun {
                request: request.clone(),
                prompts: Arc::clone(&prompts),
            });
        }
        let (event_tx, events) = mpsc::channel(RUN_CHANNEL_CAPACITY);
        let (input_tx, input_rx) = mpsc::channel(RUN_CHANNEL_CAPACITY);
        let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_live.fetch_max(now, Ordering::SeqCst);
        let live = Arc::clone(&self.live);
        let script = Arc::clone(&self.script);
        let record = self.record;
        let start_delay = self.start_delay;
        tokio::spawn(async move {
            tokio::time::sleep(start_delay).await;
            let outcome = run_turns(&script, &request, input_rx, &event_tx, &prompts, record).await;
            live.fetch_sub(1, Ordering::SeqCst);
            let _ = event_tx
                .send(RunEvent::Exited(RunExit {
                    outcome,
                    limits_degraded: false,
                }))
                .await;
        });
        Box::pin(async move {
            tokio::time::sleep(start_delay).await;
            Ok(ActiveRun {
                events,
                control: RunControl::new(input_tx),
            })
        })
    }
}

async fn run_turns(
    script: &Script,
    request: &RunRequest,
    mut input: mpsc::Receiver<RunInput>,
    events: &mpsc::Sender<RunEvent>,
    prompts: &Mutex<Vec<String>>,
    record: bool,
) -> RunOutcome {
    let _ = events.send(RunEvent::Ready).await;
    let mut prompt = request.prompt.clone();
    let mut inputs: u32 = 1;
    let mut closing = false;
    let session = format!("session-{}", request.group.folder);
    loop {
        if record {
            crate::locks::lock("scripted prompts", prompts).push(prompt.clone());
        }
        let turn = script(request, &prompt);
        // Follow-ups that arrive while the turn works are coalesced into the next turn.
        let mut next: Vec<String> = Vec::new();
        if turn.delay.is_zero() {
            // An instant turn arms no timer: a zero sleep still waits for the timer wheel's next
            // tick and wakes its driver, which the router bench would count as the router's cost.
            tokio::task::yield_now().await;
        } else {
            let sleep = tokio::time::sleep(turn.delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    got = input.recv() => match got {
                        Some(RunInput::Message(text)) => next.push(text),
                        Some(RunInput::Close) => closing = true,
                        Some(RunInput::Kill) | None => {
                            return RunOutcome::Failed { reason: "killed".into() };
                        }
                    },
                }
            }
        }
        for delta in &turn.deltas {
            let _ = events.send(RunEvent::TextDelta(delta.clone())).await;
        }
        if let Some(reason) = turn.fail {
            let _ = events
                .send(RunEvent::Error {
                    message: reason.clone(),
                    retryable: true,
                })
                .await;
            return RunOutcome::Failed { reason };
        }
        let _ = events
            .send(RunEvent::Result {
                text: turn.reply,
                session_id: Some(session.clone()),
                inputs,
            })
            .await;
        // Drain what is already waiting, then (if nothing) wait for input or close.
        while let Ok(got) = input.try_recv() {
            match got {
                RunInput::Message(text) => next.push(text),
                RunInput::Close => closing = true,
                RunInput::Kill => {
                    return RunOutcome::Failed {
                        reason: "killed".into(),
                    };
                }
            }
        }
        if next.is_empty() {
            if closing {
                return RunOutcome::Success;
            }
            match input.recv().await {
                Some(RunInput::Message(text)) => next.push(text),
                Some(RunInput::Close) => return RunOutcome::Success,
                Some(RunInput::Kill) | None => {
                    return RunOutcome::Failed {
                        reason: "killed".into(),
                    };
                }
            }
            while let Ok(got) = input.try_recv() {
                match got {
                    RunInput::Message(text) => next.push(text),
                    RunInput::Close => closing = true,
                    RunInput::Kill => {
                        return RunOutcome::Failed {
                            reason: "killed".into(),
                        };
                    }
                }
            }
        }
        inputs = u32::try_from(next.len()).unwrap_or(u32::MAX);
        prompt = next.join("\n");
    }
}
