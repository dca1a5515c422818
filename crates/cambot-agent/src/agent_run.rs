//! The seam between the orchestrator and whatever executes an agent run: [`AgentRunner`].
//!
//! The production implementation starts `cambot-runner` in a sandbox; tests and benchmarks use
//! scripted runners. A run is: start → a stream of [`RunEvent`]s ending with
//! [`RunEvent::Exited`] → done. While it is alive, [`RunControl`] pipes follow-up messages into
//! it, asks it to close, or kills it.

use std::future::Future;
use std::pin::Pin;

use cambot_protocol::ChatJid;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::RunId;
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;
use tokio::sync::mpsc;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Capacity of a run's event and input channels.
pub const RUN_CHANNEL_CAPACITY: usize = 256;

/// What a run is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPurpose {
    /// Answer a chat's pending messages.
    Messages,
    /// Execute a scheduled task.
    Task { task_id: TaskId },
}

/// Everything needed to start one run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub run_id: RunId,
    /// The registration of the chat this run answers (tenant, folder, sandbox settings).
    pub group: RegisteredGroup,
    pub chat_jid: ChatJid,
    pub prompt: String,
    pub session_id: Option<String>,
    pub purpose: RunPurpose,
}

impl RunRequest {
    pub fn is_scheduled_task(&self) -> bool {
        matches!(self.purpose, RunPurpose::Task { .. })
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Exited cleanly (including an idle close, and a timeout after output: seed rule).
    Success,
    /// Failed: spawn error, non-zero exit, protocol error, timeout without output.
    Failed { reason: String },
}

/// The last event of every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExit {
    pub outcome: RunOutcome,
    /// The sandbox could not enforce every limit (no cgroup rights): rlimits only.
    pub limits_degraded: bool,
}

/// What a run reports while alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    Ready,
    Activity {
        kind: String,
        detail: Option<String>,
    },
    TextDelta(String),
    /// A turn finished; `inputs` host inputs are answered by it (see the protocol docs).
    Result {
        text: Option<String>,
        session_id: Option<String>,
        inputs: u32,
    },
    Error {
        message: String,
        retryable: bool,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
    /// Always the last event.
    Exited(RunExit),
}

/// Input to a live run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunInput {
    /// A follow-up message: the next turn.
    Message(String),
    /// Finish the current turn, then exit.
    Close,
    /// Stop now; nothing may remain running.
    Kill,
}

/// A cloneable handle to a live run's input.
#[derive(Debug, Clone)]
pub struct RunControl {
    tx: mpsc::Sender<RunInput>,
}

impl RunControl {
    pub fn new(tx: mpsc::Sender<RunInput>) -> Self {
        Self { tx }
    }

    /// Queues a follow-up; false when the run no longer accepts input.
    pub fn send_message(&self, text: String) -> bool {
        self.tx.try_send(RunInput::Message(text)).is_ok()
    }

    /// Asks the run to finish. Idempotent.
    pub fn close(&self) {
        let _ = self.tx.try_send(RunInput::Close);
    }

    /// Kills the run, waiting for room in the input channel if needed.
    pub async fn kill(&self) {
        let _ = self.tx.send(RunInput::Kill).await;
    }

    /// Whether the run has stopped reading input.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A started run.
#[derive(Debug)]
pub struct ActiveRun {
    pub events: mpsc::Receiver<RunEvent>,
    pub control: RunControl,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunStartError {
    #[error("no sandbox backend is available: {0}")]
    NoBackend(String),
    /// The configured sandbox backend cannot be used.
    #[error("no sandbox backend is available: {0}")]
    Backend(#[source] cambot_sandbox::SandboxError),
    #[error("cannot start the run: {0}")]
    Spawn(String),
    /// The sandbox did not start.
    #[error("cannot start the run: {0}")]
    Sandbox(#[source] cambot_sandbox::SandboxError),
    /// The run's host socket could not be opened.
    #[error("cannot start the run: {0}")]
    Socket(#[source] cambot_gateway::GatewayError),
    /// The embedded model server did not start.
    #[error("cannot start the run: {0}")]
    LocalModel(#[source] crate::local_model::LocalModelError),
    /// A run directory could not be prepared; `what` says which step on which path.
    #[error("cannot start the run: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The runner started but did not read its start input; `stderr` is the end of its log.
    #[error(
        "cannot start the run: the runner did not take its start input: {source}; stderr: {stderr}"
    )]
    StartInput {
        #[source]
        source: std::io::Error,
        stderr: String,
    },
    #[error("run refused: {0}")]
    Refused(String),
    /// The run's tenant has no key for its provider: answered in the chat, never retried
    /// (waiting does not add a secret). Displays exactly `tenant T has no secret 'NAME'`.
    #[error("tenant {tenant} has no secret '{name}'")]
    MissingSecret { tenant: TenantId, name: String },
    /// The vault cannot be opened (missing or wrong master key).
    #[error("the vault cannot be opened: {0}")]
    Vault(#[source] crate::vault::VaultError),
    /// The model settings cannot be used.
    #[error("run refused: {0}")]
    Model(#[source] crate::model_config::ModelConfigError),
    /// The model gateway refused its settings (air-gapped mode, HTTP client).
    #[error("run refused: {0}")]
    Gateway(#[source] cambot_gateway::GatewayError),
    /// The run's sandbox cannot be planned (runner missing, root uid, bad limits).
    #[error("run refused: {0}")]
    Plan(#[source] cambot_sandbox::PlanError),
}

/// Starts agent runs.
///
/// Contract for implementers: `start` returns once the run is started (or failed to start).
/// The returned event stream must end with exactly one [`RunEvent::Exited`], also when the run
/// is killed, and after it nothing of the run may still execute. A `Result` event is emitted per
/// finished turn, `Error` at most once before exit.
pub trait AgentRunner: Send + Sync {
    fn start(&self, request: RunRequest) -> BoxFuture<'_, Result<ActiveRun, RunStartError>>;
}
