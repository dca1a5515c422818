//! The engine: adds and lists definitions, starts runs, drives them step by step (the state
//! machine is in the private `drive` module) and cancels them.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use cambot_core::WorkflowDefRow;
use cambot_core::WorkflowRunRow;
use cambot_core::WorkflowRunState;
use cambot_core::WorkflowStepRow;
use cambot_core::WorkflowStore;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::definition::Definition;
use crate::error::DefinitionError;
use crate::error::InvalidDefinition;
use crate::error::Location;
use crate::error::Problem;
use crate::error::Result;
use crate::error::WorkflowError;
use crate::executor::GroupResolver;
use crate::executor::StepExecutor;

/// Checks a `[trigger] schedule` (the binary passes the scheduler's cron parser); the error
/// text is shown to the author.
pub type ScheduleCheck = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

/// How a driven run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run_id: String,
    pub state: WorkflowRunState,
    pub error: Option<String>,
    /// The last step's output when the run succeeded.
    pub output: Option<String>,
}

impl RunOutcome {
    pub(crate) fn of(run: &WorkflowRunRow) -> Self {
        let output = (run.state == WorkflowRunState::Succeeded)
            .then(|| run.steps.last().and_then(|s| s.output.clone()))
            .flatten();
        Self {
            run_id: run.id.clone(),
            state: run.state,
            error: run.error.clone(),
            output,
        }
    }
}

/// Workflow definitions and runs of every tenant. Drive runs with [`Engine::drive`]; after a
/// restart, drive each of [`Engine::unfinished`].
pub struct Engine {
    pub(crate) store: Arc<dyn WorkflowStore>,
    pub(crate) groups: Arc<dyn GroupResolver>,
    pub(crate) executor: Arc<dyn StepExecutor>,
    schedule_check: Option<ScheduleCheck>,
    /// Runs this process is driving: their tenant and the token that stops their live step.
    pub(crate) live: Mutex<HashMap<String, (TenantId, CancellationToken)>>,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        groups: Arc<dyn GroupResolver>,
        executor: Arc<dyn StepExecutor>,
    ) -> Self {
        Self {
            store,
            groups,
            executor,
            schedule_check: None,
            live: Mutex::new(HashMap::new()),
            changes: watch::Sender::new(0),
        }
    }

    /// Checks `[trigger] schedule` with `check` on add. Without one, a schedule is only
    /// checked to be non-empty.
    pub fn with_schedule_check(mut self, check: ScheduleCheck) -> Self {
        self.schedule_check = Some(check);
        self
    }

    /// Bumped after every state change this engine persists (a `--wait` follower re-reads).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Checks a definition for `tenant` (form, schedule, and that every group is one of the
    /// tenant's) and stores it, replacing one of the same name. Returns it and whether one
    /// was replaced.
    pub async fn add(&self, tenant: &TenantId, toml: &str) -> Result<(Definition, bool)> {
        let def = Definition::parse(toml).map_err(WorkflowError::Invalid)?;
        let mut errors = Vec::new();
        if let (Some(check), Some(schedule)) = (&self.schedule_check, &def.schedule)
            && let Err(msg) = check(schedule)
        {
            errors.push(DefinitionError {
                location: Location::Trigger,
                key: Some("schedule".into()),
                problem: Problem::BadValue(msg),
            });
        }
        let mut known = HashMap::new();
        for (index, step) in def.steps.iter().enumerate() {
            let ours = match known.get(&step.group) {
                Some(ours) => *ours,
                None => {
                    let ours = self.groups.has_group(tenant, &step.group).await?;
                    known.insert(step.group.clone(), ours);
                    ours
                }
            };
            if !ours {
                errors.push(DefinitionError {
                    location: Location::Step {
                        index,
                        id: Some(step.id.clone()),
                    },
                    key: Some("group".into()),
                    problem: Problem::ForeignGroup(step.group.to_string()),
                });
            }
        }
        if !errors.is_empty() {
            return Err(WorkflowError::Invalid(InvalidDefinition(errors)));
        }
        let now = cambot_core::time::now_ms();
        let replaced = self
            .store
            .put_workflow_def(WorkflowDefRow {
                tenant: tenant.clone(),
                name: def.name.clone(),
                toml: toml.to_owned(),
                created_ms: now,
                updated_ms: now,
            })
            .await?;
        tracing::info!(tenant = %tenant, workflow = %def.name, replaced, "workflow added");
        Ok((def, replaced))
    }

    /// A tenant's definition by name.
    pub async fn definition(&self, tenant: &TenantId, name: &str) -> Result<Option<Definition>> {
        let Some(row) = self.store.workflow_def(tenant, name).await? else {
            return Ok(None);
        };
        Definition::parse(&row.toml)
            .map(Some)
            .map_err(WorkflowError::Invalid)
    }

    /// A tenant's stored definitions (as rows: a list shows them even if one stopped parsing).
    pub async fn definitions(&self, tenant: &TenantId) -> Result<Vec<WorkflowDefRow>> {
        Ok(self.store.workflow_defs(Some(tenant)).await?)
    }

    /// Removes a definition; its runs, finished or not, keep their own copy.
    pub async fn remove(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        Ok(self.store.delete_workflow_def(tenant, name).await?)
    }

    /// Starts a run of a stored workflow: inputs checked against its `[inputs]` (defaults
    /// filled in), the run and all its steps stored `pending`. Drive it with
    /// [`Engine::drive`]. Returns the run id.
    pub async fn start(
        &self,
        tenant: &TenantId,
        name: &str,
        inputs: BTreeMap<String, String>,
    ) -> Result<String> {
        let id = RunId::from_bytes(rand::random()).to_string();
        self.start_with_id(tenant, name, inputs, &id).await?;
        Ok(id)
    }

    /// [`Engine::start`] with the caller's run id; returns false (and starts nothing) when a
    /// run with that id exists. A scheduler firing passes an id derived from the firing, so a
    /// firing repeated after a crash starts its run once.
    pub async fn start_with_id(
        &self,
        tenant: &TenantId,
        name: &str,
        given: BTreeMap<String, String>,
        run_id: &str,
    ) -> Result<bool> {
        let Some(row) = self.store.workflow_def(tenant, name).await? else {
            return Err(WorkflowError::NoSuchWorkflow {
                tenant: tenant.to_string(),
                name: name.to_owned(),
            });
        };
        let def = Definition::parse(&row.toml).map_err(WorkflowError::Invalid)?;
        let inputs = resolve_inputs(&def, given)?;
        let inputs = serde_json::to_string(&inputs).map_err(|e| WorkflowError::CorruptRun {
            run: run_id.to_owned(),
            problem: e.to_string(),
        })?;
        let now = cambot_core::time::now_ms();
        let steps = def
            .steps
            .iter()
            .zip(0u32..)
            .map(|(s, idx)| WorkflowStepRow::pending(idx, s.id.clone()))
            .collect();
        let created = self
            .store
            .create_workflow_run(WorkflowRunRow {
                id: run_id.to_owned(),
                tenant: tenant.clone(),
                workflow: def.name.clone(),
                definition: row.toml,
                inputs,
                state: WorkflowRunState::Running,
                error: None,
                created_ms: now,
                updated_ms: now,
                finished_ms: None,
                steps,
            })
            .await?;
        if created {
            tracing::info!(tenant = %tenant, workflow = %def.name, run = %run_id, "workflow run started");
            self.changed();
        }
        Ok(created)
    }

    /// One run with its steps.
    pub async fn run(&self, tenant: &TenantId, run_id: &str) -> Result<Option<WorkflowRunRow>> {
        Ok(self.store.workflow_run(tenant, run_id).await?)
    }

    /// A tenant's runs (of one workflow when given), newest first.
    pub async fn runs(
        &self,
        tenant: &TenantId,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRow>> {
        Ok(self.store.workflow_runs(tenant, workflow, limit).await?)
    }

    /// Runs left `running` (by a crash or a stop): drive each to resume it.
    pub async fn unfinished(&self) -> Result<Vec<(TenantId, String)>> {
        Ok(self.store.unfinished_workflow_runs().await?)
    }

    /// Cancels a run: marked cancelled (its unfinished steps too) first, then its live step,
    /// if this process drives it, is told to stop. Returns whether the run was still running.
    pub async fn cancel(&self, tenant: &TenantId, run_id: &str) -> Result<bool> {
        let cancelled = self
            .store
            .finish_workflow_run(
                tenant,
                run_id,
                WorkflowRunState::Cancelled,
                Some("cancelled".into()),
            )
            .await?;
        if cancelled {
            tracing::info!(tenant = %tenant, run = %run_id, "workflow run cancelled");
            let token = self.live_runs().get(run_id).map(|(_, t)| t.clone());
            if let Some(token) = token {
                token.cancel();
            }
            self.changed();
        }
        Ok(cancelled)
    }

    /// Stops the live step of every run this engine drives that is stored finished: another
    /// process (`cambot workflows cancel`) cancelled it. Returns how many were stopped.
    pub async fn stop_finished_elsewhere(&self) -> Result<usize> {
        let live: Vec<(String, TenantId, CancellationToken)> = self
            .live_runs()
            .iter()
            .map(|(id, (tenant, token))| (id.clone(), tenant.clone(), token.clone()))
            .collect();
        let mut stopped = 0;
        for (id, tenant, token) in live {
            let finished = self
                .store
                .workflow_run(&tenant, &id)
                .await?
                .is_none_or(|run| run.state.is_finished());
            if finished && !token.is_cancelled() {
                tracing::info!(tenant = %tenant, run = %id, "workflow run ended elsewhere; stopping its live step");
                token.cancel();
                stopped += 1;
            }
        }
        Ok(stopped)
    }

    pub(crate) fn live_runs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (TenantId, CancellationToken)>> {
        // Nothing panics while holding it; a poisoned map is still a valid map.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The run's inputs: every given one declared, every declared one given or defaulted.
fn resolve_inputs(
    def: &Definition,
    mut given: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if let Some(name) = given.keys().find(|k| !def.inputs.contains_key(*k)) {
        let known: Vec<&str> = def.inputs.keys().map(String::as_str).collect();
        return Err(WorkflowError::UnknownInput {
            workflow: def.name.clone(),
            name: name.clone(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    for (name, default) in &def.inputs {
        if given.contains_key(name) {
            continue;
        }
        let Some(default) = default else {
            return Err(WorkflowError::MissingInput {
                workflow: def.name.clone(),
                name: name.clone(),
            });
        };
        given.insert(name.clone(), default.clone());
    }
    Ok(given)
}
