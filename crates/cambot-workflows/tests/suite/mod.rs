//! Fakes for the engine's seams: groups per tenant, a scripted step executor with a
//! deduplicating outbox, and a store that "crashes" after a given number of durable events.

mod crash;
mod definitions;
mod engine;
mod templates;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering;

use cambot_core::OnceReply;
use cambot_core::SqliteStore;
use cambot_core::StoreError;
use cambot_core::StoreFuture;
use cambot_core::WorkflowDefRow;
use cambot_core::WorkflowRunRow;
use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepChange;
use cambot_core::WorkflowStore;
use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use cambot_workflows::Engine;
use cambot_workflows::GroupResolver;
use cambot_workflows::StepAction;
use cambot_workflows::StepCall;
use cambot_workflows::StepExecutor;
use cambot_workflows::StepFailure;
use cambot_workflows::StepFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

pub(crate) fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Groups per tenant; a test may remove one after a workflow was added.
#[derive(Default)]
pub(crate) struct FakeGroups(Mutex<HashSet<(String, String)>>);

impl FakeGroups {
    pub(crate) fn with(groups: &[(&str, &str)]) -> Arc<Self> {
        let set = groups
            .iter()
            .map(|(t, g)| ((*t).to_owned(), (*g).to_owned()))
            .collect();
        Arc::new(Self(Mutex::new(set)))
    }

    pub(crate) fn remove(&self, tenant: &str, group: &str) {
        self.0
            .lock()
            .unwrap()
            .remove(&(tenant.to_owned(), group.to_owned()));
    }
}

impl GroupResolver for FakeGroups {
    fn has_group<'a>(
        &'a self,
        tenant: &'a TenantId,
        folder: &'a GroupFolder,
    ) -> StoreFuture<'a, bool> {
        let key = (tenant.to_string(), folder.to_string());
        let found = self.0.lock().unwrap().contains(&key);
        Box::pin(async move { Ok(found) })
    }
}

/// What a scripted step does on one attempt.
#[derive(Clone)]
pub(crate) enum Script {
    Ok(String),
    Fail(StepFailure),
    /// Waits until its token is cancelled (signals `started` first), then fails.
    Hang,
}

/// Shared by every "process" of a crash test: the outbox survives restarts.
#[derive(Default)]
pub(crate) struct FakeOutbox {
    /// Queued messages by idempotency key (the outbox's unique key).
    pub(crate) queued: Mutex<BTreeMap<String, String>>,
    /// Every send call, including repeats the key absorbed.
    pub(crate) calls: Mutex<Vec<String>>,
}

/// A step executor that follows per-step scripts (default: succeed with `<step id> output`)
/// and records every call. A send step queues into the shared [`FakeOutbox`].
pub(crate) struct FakeExecutor {
    scripts: Mutex<HashMap<String, VecDeque<Script>>>,
    pub(crate) calls: Mutex<Vec<StepCall>>,
    pub(crate) outbox: Arc<FakeOutbox>,
    pub(crate) started: Notify,
    pub(crate) saw_cancel: AtomicBool,
    /// Counts the effect as a durable event of a crash plan (see [`CrashPlan`]).
    pub(crate) crash: Option<Arc<CrashPlan>>,
}

impl FakeExecutor {
    pub(crate) fn new() -> Arc<Self> {
        Self::sharing(Arc::default(), None)
    }

    pub(crate) fn sharing(outbox: Arc<FakeOutbox>, crash: Option<Arc<CrashPlan>>) -> Arc<Self> {
        Arc::new(Self {
            scripts: Mutex::default(),
            calls: Mutex::default(),
            outbox,
            started: Notify::new(),
            saw_cancel: AtomicBool::new(false),
            crash,
        })
    }

    pub(crate) fn script(&self, step: &str, attempts: Vec<Script>) {
        self.scripts
            .lock()
            .unwrap()
            .insert(step.to_owned(), attempts.into());
    }

    pub(crate) fn calls_of(&self, step: &str) -> Vec<StepCall> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.step_id == step)
            .cloned()
            .collect()
    }
}

impl StepExecutor for FakeExecutor {
    fn execute(&self, call: StepCall, cancel: CancellationToken) -> StepFuture<'_> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(call.clone());
            let script = self
                .scripts
                .lock()
                .unwrap()
                .get_mut(&call.step_id)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| Script::Ok(format!("{} output", call.step_id)));
            let result = match script {
                Script::Ok(out) => {
                    if let StepAction::Send {
                        text,
                        idempotency_key,
                    } = &call.action
                    {
                        self.outbox
                            .calls
                            .lock()
                            .unwrap()
                            .push(idempotency_key.clone());
                        self.outbox
                            .queued
                            .lock()
                            .unwrap()
                            .entry(idempotency_key.clone())
                            .or_insert_with(|| text.clone());
                    }
                    Ok(out)
                }
                Script::Fail(f) => Err(f),
                Script::Hang => {
                    self.started.notify_one();
                    cancel.cancelled().await;
                    self.saw_cancel.store(true, Ordering::SeqCst);
                    Err(StepFailure::retryable("stopped"))
                }
            };
            // The process may die right after the effect, before the engine hears of it.
            if let Some(plan) = &self.crash
                && plan.tick().is_err()
            {
                return Err(StepFailure::retryable("the process died"));
            }
            result
        })
    }
}

/// How many durable events (store writes, step effects) happen before the simulated process
/// dies; after that every store call fails, as if nothing more ran.
pub(crate) struct CrashPlan {
    remaining: AtomicI64,
    crashed: AtomicBool,
}

impl CrashPlan {
    pub(crate) fn after(events: i64) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicI64::new(events),
            crashed: AtomicBool::new(false),
        })
    }

    pub(crate) fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Counts one event; Err when the process is (now) dead.
    pub(crate) fn tick(&self) -> Result<(), StoreError> {
        if self.crashed() || self.remaining.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(StoreError::Invalid("simulated crash".into()));
        }
        Ok(())
    }

    fn alive(&self) -> Result<(), StoreError> {
        if self.crashed() {
            return Err(StoreError::Invalid("simulated crash".into()));
        }
        Ok(())
    }
}

/// A real SQLite store behind a [`CrashPlan`]: each write is one event, applied only while the
/// process is alive.
pub(crate) struct CrashStore {
    pub(crate) inner: SqliteStore,
    pub(crate) plan: Arc<CrashPlan>,
}

impl CrashStore {
    fn write<'a, T: Send + 'a>(&'a self, f: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        Box::pin(async move {
            self.plan.tick()?;
            f.await
        })
    }

    fn read<'a, T: Send + 'a>(&'a self, f: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        Box::pin(async move {
            self.plan.alive()?;
            f.await
        })
    }
}

impl WorkflowStore for CrashStore {
    fn put_workflow_def(&self, row: WorkflowDefRow) -> StoreFuture<'_, bool> {
        self.write(self.inner.put_workflow_def(row))
    }
    fn workflow_def<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, Option<WorkflowDefRow>> {
        self.read(self.inner.workflow_def(tenant, name))
    }
    fn workflow_defs<'a>(
        &'a self,
        tenant: Option<&'a TenantId>,
    ) -> StoreFuture<'a, Vec<WorkflowDefRow>> {
        self.read(self.inner.workflow_defs(tenant))
    }
    fn delete_workflow_def<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
    ) -> StoreFuture<'a, bool> {
        self.write(self.inner.delete_workflow_def(tenant, name))
    }
    fn create_workflow_run(&self, run: WorkflowRunRow) -> StoreFuture<'_, bool> {
        self.write(self.inner.create_workflow_run(run))
    }
    fn workflow_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<WorkflowRunRow>> {
        self.read(self.inner.workflow_run(tenant, id))
    }
    fn workflow_runs<'a>(
        &'a self,
        tenant: &'a TenantId,
        workflow: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<WorkflowRunRow>> {
        self.read(self.inner.workflow_runs(tenant, workflow, limit))
    }
    fn unfinished_workflow_runs(&self) -> StoreFuture<'_, Vec<(TenantId, String)>> {
        self.read(self.inner.unfinished_workflow_runs())
    }
    fn update_workflow_step(&self, change: WorkflowStepChange) -> StoreFuture<'_, bool> {
        self.write(self.inner.update_workflow_step(change))
    }
    fn finish_workflow_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
        state: WorkflowRunState,
        error: Option<String>,
    ) -> StoreFuture<'a, bool> {
        self.write(self.inner.finish_workflow_run(tenant, id, state, error))
    }
    fn enqueue_reply_once(&self, send: OnceReply) -> StoreFuture<'_, (i64, bool)> {
        self.write(self.inner.enqueue_reply_once(send))
    }
}

/// An engine over an in-memory SQLite store with the given groups and executor.
pub(crate) fn engine(
    groups: Arc<FakeGroups>,
    executor: Arc<FakeExecutor>,
) -> (SqliteStore, Engine) {
    let store = SqliteStore::open_in_memory().unwrap();
    let engine = Engine::new(Arc::new(store.clone()), groups, executor);
    (store, engine)
}
