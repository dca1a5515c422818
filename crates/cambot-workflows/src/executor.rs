//! The seams the binary wires: who runs a step ([`StepExecutor`]) and which groups a tenant has
//! ([`GroupResolver`]). The engine knows no sandbox, queue, model or channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cambot_core::GroupStore;
use cambot_core::StoreFuture;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use tokio_util::sync::CancellationToken;

use crate::definition::SessionMode;

/// One attempt of one step, rendered and ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCall {
    pub tenant: TenantId,
    /// A group of `tenant` (the engine checked it just before the call).
    pub group: GroupFolder,
    pub workflow: String,
    pub run_id: String,
    pub step_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The step's limit; the engine also stops waiting (and cancels) when it passes.
    pub timeout: Duration,
    pub action: StepAction,
}

/// What to do, with the templates already rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// An agent run of the group with this prompt.
    Agent {
        prompt: String,
        session: SessionMode,
    },
    /// `sh -c command_line` under the group's sandbox plan; the output is its stdout. Every
    /// substituted value in it is one single-quoted word.
    Command { command_line: String },
    /// Post `text` to the group's chat. `idempotency_key` is the same for every attempt of this
    /// step of this run: the sender queues at most one message per key (the outbox's
    /// `enqueue_reply_once`), which is what makes the step exactly-once.
    Send {
        text: String,
        idempotency_key: String,
    },
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub message: String,
    /// Another attempt may succeed (a sandbox that did not start, a model error); a command's
    /// non-zero exit usually is not.
    pub retryable: bool,
}

impl StepFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What [`StepExecutor::execute`] returns: the step's output, or why the attempt failed.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<String, StepFailure>> + Send + 'a>>;

/// Runs steps. The binary's implementation sends agent and command steps through the group's
/// queue (same per-group slot and global limit as chat messages) and send steps through the
/// outbox.
pub trait StepExecutor: Send + Sync {
    /// Runs one attempt. When `cancel` fires (the run was cancelled, or the step timed out),
    /// stop the live work and return promptly; the engine has stopped waiting by then.
    fn execute(&self, call: StepCall, cancel: CancellationToken) -> StepFuture<'_>;
}

/// Which groups a tenant has: a workflow step may name only its own tenant's groups.
pub trait GroupResolver: Send + Sync {
    fn has_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, bool>;
}

/// [`GroupResolver`] over the store's group registrations: a folder is a group of a tenant when
/// the tenant has registered a chat to it.
#[derive(Clone)]
pub struct StoreGroups(pub Arc<dyn GroupStore>);

impl std::fmt::Debug for StoreGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreGroups").finish_non_exhaustive()
    }
}

impl GroupResolver for StoreGroups {
    fn has_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(!self.0.groups_in_folder(tenant, folder).await?.is_empty()) })
    }
}
