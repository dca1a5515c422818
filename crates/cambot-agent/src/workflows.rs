//! Workflows in the daemon: the [`Engine`] wired to the group queue
//! ([`crate::workflow_steps::WorkflowSteps`]), the store's groups and the scheduler's cron
//! parser; every run driven on an owned task.
//!
//! - **Resume.** At start, every unfinished run is driven again ([`Workflows::resume`]).
//! - **Runs started elsewhere.** `cambot workflows run` only stores the run. The daemon notices
//!   other processes' commits through SQLite's `data_version` ([`Workflows::watch`], a pragma
//!   every [`WATCH_EVERY`]) and drives what is new. Without a daemon, a stored run waits for one.
//! - **Schedules.** [`Workflows::schedule`] fires each `[trigger] schedule` with the scheduler's
//!   cron engine and clock. A slot's run id is derived from the slot ([`scheduled_run_id`]) and
//!   the store creates a run id once, so a slot fires exactly once, across restarts. A daemon
//!   that was down fires the latest missed slot of the last day once (older ones are dropped).
//! - **Stop.** Drivers stop with the daemon's cancel token; a step the stop interrupted is
//!   `running` in the store and is retried at the next start (at-least-once).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cambot_core::Store;
use cambot_gateway::HostToolError;
use cambot_protocol::DataLayout;
use cambot_protocol::TenantId;
use cambot_protocol::ipc::WorkflowSummary;
use cambot_scheduler::Clock;
use cambot_scheduler::cron::CronExpr;
use cambot_workflows::Definition;
use cambot_workflows::Engine;
use cambot_workflows::ScheduleCheck;
use cambot_workflows::StepExecutor;
use cambot_workflows::StoreGroups;
use cambot_workflows::WorkflowError;
use chrono::DateTime;
use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the daemon checks for runs stored by another process.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How far back a daemon that was down looks for a missed slot.
const CATCH_UP: chrono::TimeDelta = chrono::TimeDelta::days(1);
/// Longest sleep of the schedule loop (definitions may change meanwhile).
const MAX_SCHEDULE_SLEEP: Duration = Duration::from_secs(60);

/// The `[trigger] schedule` check: a 5-field cron expression, as the scheduler reads it.
pub fn cron_check() -> ScheduleCheck {
    Arc::new(|s: &str| CronExpr::parse(s).map(drop).map_err(|e| e.to_string()))
}

/// The engine over `store`'s workflows and groups, running steps with `executor`.
pub fn engine(store: Arc<dyn Store>, executor: Arc<dyn StepExecutor>) -> Engine {
    let groups = StoreGroups(store.clone() as Arc<dyn cambot_core::GroupStore>);
    Engine::new(store, Arc::new(groups), executor).with_schedule_check(cron_check())
}

/// The run id of a schedule's slot: the same for every firing of that slot.
pub fn scheduled_run_id(tenant: &TenantId, workflow: &str, slot: DateTime<Utc>) -> String {
    format!("sched-{tenant}-{workflow}-{}", slot.timestamp_millis())
}

/// The daemon's workflows: its engine and the tasks that drive runs. Cheap to clone.
#[derive(Clone)]
pub struct Workflows {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Workflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflows").finish_non_exhaustive()
    }
}

impl Workflows {
    /// Drivers are spawned on `tracker` and stop when `cancel` fires.
    pub fn new(
        engine: Arc<Engine>,
        store: Arc<dyn Store>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            engine,
            store,
            tracker,
            cancel,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Drives `run_id` on an owned task until it ends or the daemon stops. A run this daemon
    /// already drives is left to its driver.
    pub fn spawn_drive(&self, tenant: TenantId, run_id: String) {
        let engine = Arc::clone(&self.engine);
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                r = engine.drive(&tenant, &run_id) => match r {
                    Ok(outcome) => tracing::info!(run = %run_id, state = ?outcome.state, "workflow run ended"),
                    Err(WorkflowError::AlreadyDriving(_)) => {}
                    Err(e) => tracing::error!(run = %run_id, error = %e, "driving a workflow run failed; it resumes at the next start"),
                },
            }
        });
    }

    /// Starts a run of a stored workflow and drives it. Returns the run id.
    pub async fn start(
        &self,
        tenant: &TenantId,
        name: &str,
        inputs: BTreeMap<String, String>,
    ) -> Result<String, WorkflowError> {
        let id = self.engine.start(tenant, name, inputs).await?;
        self.spawn_drive(tenant.clone(), id.clone());
        Ok(id)
    }

    /// Drives every unfinished run nobody here drives yet. Returns how many there were.
    pub async fn resume(&self) -> Result<usize, WorkflowError> {
        let runs = self.engine.unfinished().await?;
        let count = runs.len();
        for (tenant, run_id) in runs {
            self.spawn_drive(tenant, run_id);
        }
        Ok(count)
    }

    /// Notices runs and definitions stored by another process (the CLI) until cancelled.
    pub async fn watch(self) {
        let mut seen = self.store.data_version().await.ok();
        let mut ticker = tokio::time::interval(WATCH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = self.store.data_version().await.ok();
            if now == seen {
                continue;
            }
            seen = now;
            if let Err(e) = self.resume().await {
                tracing::error!(error = %e, "looking for new workflow runs failed");
            }
            if let Err(e) = self.engine.stop_finished_elsewhere().await {
                tracing::error!(error = %e, "looking for cancelled workflow runs failed");
            }
            self.wake.notify_one();
        }
    }

    /// Fires `[trigger] schedule`s in `tz` by `clock` until cancelled.
    pub async fn schedule(self, clock: Arc<dyn Clock>, tz: chrono_tz::Tz) {
        let mut cursors: HashMap<(TenantId, String), (i64, DateTime<Utc>)> = HashMap::new();
        loop {
            let now = clock.now();
            let next = match self.fire_due(&mut cursors, now, tz).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "workflow schedule pass failed");
                    None
                }
            };
            let wait = next
                .and_then(|n| (n - clock.now()).to_std().ok())
                .unwrap_or(MAX_SCHEDULE_SLEEP)
                .min(MAX_SCHEDULE_SLEEP);
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts the latest due slot of every scheduled definition; returns the earliest next slot.
    async fn fire_due(
        &self,
        cursors: &mut HashMap<(TenantId, String), (i64, DateTime<Utc>)>,
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<Option<DateTime<Utc>>, WorkflowError> {
        let defs = self.store.workflow_defs(None).await?;
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut live = Vec::new();
        for row in defs {
            let Ok(def) = Definition::parse(&row.toml) else {
                continue;
            };
            let Some(expr) = def
                .schedule
                .as_deref()
                .and_then(|s| CronExpr::parse(s).ok())
            else {
                continue;
            };
            let key = (row.tenant.clone(), row.name.clone());
            live.push(key.clone());
            let since = DateTime::<Utc>::from_timestamp_millis(row.updated_ms)
                .unwrap_or(now)
                .max(now - CATCH_UP);
            let cursor = match cursors.get(&key) {
                Some((updated, cursor)) if *updated == row.updated_ms => *cursor,
                _ => since,
            };
            let mut latest = None;
            let mut at = cursor;
            let next = loop {
                match cambot_scheduler::cron::next_after(&expr, at, tz) {
                    Some(slot) if slot <= now => {
                        latest = Some(slot);
                        at = slot;
                    }
                    other => break other,
                }
            };
            if let Some(slot) = latest {
                let id = scheduled_run_id(&row.tenant, &row.name, slot);
                match self
                    .engine
                    .start_with_id(&row.tenant, &row.name, BTreeMap::new(), &id)
                    .await
                {
                    Ok(true) => self.spawn_drive(row.tenant.clone(), id),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(tenant = %row.tenant, workflow = %row.name, error = %e, "scheduled workflow run not started");
                    }
                }
            }
            cursors.insert(key, (row.updated_ms, latest.unwrap_or(cursor)));
            if let Some(n) = next {
                earliest = Some(earliest.map_or(n, |e| e.min(n)));
            }
        }
        cursors.retain(|k, _| live.contains(k));
        Ok(earliest)
    }
}

/// Builds the daemon's workflows and starts their tasks on `background`: unfinished runs are
/// resumed, runs stored by the CLI are noticed, schedules fire. Errors reading the store are
/// logged (the watch retries).
pub(crate) async fn start_in_daemon(
    config: &crate::config::Config,
    store: &Arc<dyn Store>,
    queue: &crate::queue::GroupQueue,
    runner: &Arc<dyn crate::agent_run::AgentRunner>,
    outbox: &crate::outbox::Outbox,
    background: &TaskTracker,
    cancel: &CancellationToken,
) -> Workflows {
    let commands = crate::workflow_command::SandboxCommands::new(
        config.sandbox.clone(),
        DataLayout::new(&config.data_dir),
        config.source.clone(),
        config.timezone.clone(),
        store.clone() as Arc<dyn cambot_core::MountRootStore>,
    );
    let steps = crate::workflow_steps::WorkflowSteps::new(
        store.clone(),
        queue.clone(),
        Arc::clone(runner),
        outbox.clone(),
        Some(Arc::new(commands)),
    );
    let engine = Arc::new(engine(store.clone(), Arc::new(steps)));
    let workflows = Workflows::new(engine, store.clone(), background.clone(), cancel.clone());
    match workflows.resume().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(runs = n, "resuming unfinished workflow runs"),
        Err(e) => tracing::error!(error = %e, "reading unfinished workflow runs failed"),
    }
    background.spawn(workflows.clone().watch());
    let tz: chrono_tz::Tz = config.timezone.parse().unwrap_or(chrono_tz::UTC);
    background.spawn(
        workflows
            .clone()
            .schedule(Arc::new(cambot_scheduler::SystemClock), tz),
    );
    workflows
}

/// The agent tools `run_workflow` and `list_workflows` reach the daemon's workflows through
/// this; the gateway decides who may run what.
impl cambot_gateway::WorkflowHost for Workflows {
    fn list(
        &self,
        tenant: TenantId,
    ) -> crate::agent_run::BoxFuture<'_, Result<Vec<WorkflowSummary>, HostToolError>> {
        Box::pin(async move {
            let rows = self.engine.definitions(&tenant).await.map_err(host_error)?;
            Ok(rows
                .into_iter()
                .filter_map(|row| match Definition::parse(&row.toml) {
                    Ok(def) => Some(WorkflowSummary {
                        groups: def.groups().iter().map(ToString::to_string).collect(),
                        name: def.name,
                        inputs: def.inputs,
                        schedule: def.schedule,
                    }),
                    Err(e) => {
                        // A definition that stopped parsing cannot be run; the CLI shows it.
                        tracing::warn!(tenant = %tenant, workflow = %row.name, error = %e, "stored workflow does not parse; not offered to agents");
                        None
                    }
                })
                .collect())
        })
    }

    fn start(
        &self,
        tenant: TenantId,
        name: String,
        inputs: BTreeMap<String, String>,
    ) -> crate::agent_run::BoxFuture<'_, Result<String, HostToolError>> {
        Box::pin(async move {
            Workflows::start(self, &tenant, &name, inputs)
                .await
                .map_err(host_error)
        })
    }
}

/// The engine's error as the agent is told it; the tenant stays out of "no workflow" (the
/// caller's tenant is implied, and it reads like any missing workflow).
fn host_error(e: WorkflowError) -> HostToolError {
    match e {
        WorkflowError::NoSuchWorkflow { name, .. } => {
            HostToolError::NotFound(format!("no workflow named {name:?}"))
        }
        e @ (WorkflowError::UnknownInput { .. } | WorkflowError::MissingInput { .. }) => {
            HostToolError::BadRequest(e.to_string())
        }
        WorkflowError::Store(e) => HostToolError::Store(e),
        e => HostToolError::Internal(e.to_string()),
    }
}
