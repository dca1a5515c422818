//! Workflow rows: definitions (TOML text per tenant), durable runs and their steps. The
//! `cambot-workflows` engine decides what the rows mean; this module only keeps them, and makes
//! each step transition one compare-and-set transaction so a stale writer cannot overwrite a
//! newer state.

use std::fmt;
use std::str::FromStr;

use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;

use crate::error::Result;
use crate::error::StoreError;
use crate::store::StoreFuture;

/// Where a workflow run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowRunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// Where one step of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowStepState {
    /// Not started, or waiting for its next attempt after a failed one.
    Pending,
    /// An attempt started (and, after a crash, may have been interrupted).
    Running,
    Succeeded,
    Failed,
    /// The run ended (cancelled or failed elsewhere) before this step finished.
    Cancelled,
}

impl WorkflowRunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != Self::Running
    }
}

impl WorkflowStepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for WorkflowRunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for WorkflowStepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowRunState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(StoreError::Invalid(format!("unknown run state {other:?}"))),
        })
    }
}

impl FromStr for WorkflowStepState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(StoreError::Invalid(format!("unknown step state {other:?}"))),
        })
    }
}

/// A stored workflow definition, as its author wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowDefRow {
    pub tenant: TenantId,
    pub name: String,
    pub toml: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One run with its steps (in definition order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRunRow {
    pub id: String,
    pub tenant: TenantId,
    pub workflow: String,
    /// The definition's TOML as it was when the run started.
    pub definition: String,
    /// The run's inputs, a JSON object of strings.
    pub inputs: String,
    pub state: WorkflowRunState,
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    pub steps: Vec<WorkflowStepRow>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowStepRow {
    /// Position in the definition, from 0.
    pub idx: u32,
    pub step_id: String,
    pub state: WorkflowStepState,
    /// Attempts started so far (an attempt interrupted by a crash counts).
    pub attempt: u32,
    pub output: Option<String>,
    pub error: Option<String>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

impl WorkflowStepRow {
    /// A step not started yet.
    pub fn pending(idx: u32, step_id: impl Into<String>) -> Self {
        Self {
            idx,
            step_id: step_id.into(),
            state: WorkflowStepState::Pending,
            attempt: 0,
            output: None,
            error: None,
            started_ms: None,
            finished_ms: None,
        }
    }
}

/// A step transition: applied only while the stored step still has `expected_state` and
/// `expected_attempt` and its run is still running (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowStepChange {
    pub tenant: TenantId,
    pub run_id: String,
    pub expected_state: WorkflowStepState,
    pub expected_attempt: u32,
    /// The step's new values (`idx` and `step_id` name the step).
    pub step: WorkflowStepRow,
    /// Ends the run in the same transaction (its last step succeeded, or a step failed for
    /// good); other unfinished steps become cancelled.
    pub finish_run: Option<(WorkflowRunState, Option<String>)>,
}

/// Workflow definitions and runs. Every write is one transaction.
pub trait WorkflowStore: Send + Sync {
    /// Stores a definition, replacing one of the same name (keeping its `created_ms`).
    /// Returns whether one was replaced.
    fn put_workflow_def(&self, row: WorkflowDefRow) -> StoreFuture<'_, bool>;

    fn workflow_def<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<WorkflowDefRow>>;

    /// One tenant's definitions, or every tenant's, by tenant and name.
    fn workflow_defs<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<WorkflowDefRow>>;

    /// Removes a definition (its runs stay). Returns whether it existed.
    fn delete_workflow_def<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Stores a new run and all its steps in one transaction. Returns false (and writes
    /// nothing) when a run with this id exists: a caller that derives the id from its trigger
    /// (a scheduler firing) starts each run once.
    fn create_workflow_run(&self, run: WorkflowRunRow) -> StoreFuture<'_, bool>;

    /// One run of a tenant, with its steps.
    fn workflow_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<WorkflowRunRow>>;

    /// A tenant's runs (of one workflow when given), newest first, with their steps.
    fn workflow_runs<'a>(
        &'a self,
        tenant: &'a TenantId,
        workflow: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<WorkflowRunRow>>;

    /// Every tenant's runs still `running` (after a restart: the ones to resume), oldest
    /// first, as `(tenant, run id)`.
    fn unfinished_workflow_runs(&self) -> StoreFuture<'_, Vec<(TenantId, String)>>;

    /// Applies a step transition (see [`WorkflowStepChange`]). Returns whether it applied.
    fn update_workflow_step(&self, change: WorkflowStepChange) -> StoreFuture<'_, bool>;

    /// Ends a running run (cancel, or a failure outside any step); its unfinished steps become
    /// cancelled. Returns whether the run was still running.
    fn finish_workflow_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        state: WorkflowRunState,
        error: Option<String>,
    ) -> StoreFuture<'a, bool>;

    /// Queues a reply in the outbox once per `idempotency_key`: a repeated call returns the
    /// first call's outbox id and queues nothing. Returns `(outbox id, newly queued)`.
    fn enqueue_reply_once(&self, send: OnceReply) -> StoreFuture<'_, (i64, bool)>;
}

/// A reply queued at most once (a workflow's `send` step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceReply {
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    pub text: String,
    /// Who produced it, as in the outbox: `workflow:<name>`.
    pub origin: String,
    pub idempotency_key: String,
}
