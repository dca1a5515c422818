//! Task firings as agent runs: the scheduler (`cambot-scheduler`) with the agent's own
//! dispatcher ([`TaskExecutor`]: the real group queue and a scripted agent runner) under paused
//! tokio time. The scheduling rules themselves are tested in cambot-scheduler.

use std::sync::Arc;
use std::time::Duration;

use cambot_agent::agent_run::BoxFuture;
use cambot_agent::outbox::Outbox;
use cambot_agent::queue::GroupQueue;
use cambot_agent::queue::MessageProcessor;
use cambot_agent::queue::RetryPolicy;
use cambot_agent::queue::RunSlot;
use cambot_agent::task_run::TaskExecutor;
use cambot_core::ContextMode;
use cambot_core::GroupRegistration;
use cambot_core::MissedRunPolicy;
use cambot_core::ScheduledTask;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_core::TaskRunStatus;
use cambot_core::TaskStatus;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::GroupKey;
use cambot_protocol::TaskId;
use cambot_scheduler::Clock;
use cambot_scheduler::Scheduler;
use cambot_scheduler::SchedulerSettings;
use cambot_scheduler::TokioClock;
use cambot_scheduler::cron::Schedule;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use chrono::DateTime;
use chrono::Utc;
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::support::eventually_async;
use super::support::tenant;

struct NoMessages;

impl MessageProcessor for NoMessages {
    fn process_messages(&self, _key: GroupKey, _slot: RunSlot) -> BoxFuture<'static, bool> {
        Box::pin(async { true })
    }
}

/// A scheduler on a temp database under paused time, firing through the agent's executor
/// (shared with `task_lifecycle`).
pub(crate) struct Harness {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) runner: Arc<ScriptedRunner>,
    pub(crate) clock: TokioClock,
    pub(crate) cancel: CancellationToken,
    _processor: Arc<dyn MessageProcessor>,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

impl Harness {
    pub(crate) fn new(start: &str, runner: Arc<ScriptedRunner>, max_concurrent: usize) -> Self {
        Self::with_runner(start, runner.clone(), runner, max_concurrent)
    }

    /// Fires through `executor_runner` (`runner` is kept for tests that read its starts).
    pub(crate) fn with_runner(
        start: &str,
        executor_runner: Arc<dyn cambot_agent::agent_run::AgentRunner>,
        runner: Arc<ScriptedRunner>,
        max_concurrent: usize,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
        let processor: Arc<dyn MessageProcessor> = Arc::new(NoMessages);
        let queue = GroupQueue::new(
            Arc::downgrade(&processor),
            max_concurrent,
            RetryPolicy::default(),
        );
        let clock = TokioClock::starting_at(utc(start));
        let executor = TaskExecutor::new(store.clone(), queue, executor_runner, Outbox::new());
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(executor),
            Arc::new(clock),
            SchedulerSettings::default(),
        );
        Self {
            store,
            scheduler,
            runner,
            clock,
            cancel: CancellationToken::new(),
            _processor: processor,
            _dir: dir,
        }
    }

    pub(crate) async fn group(&self, folder: &str) {
        self.store
            .register_group(GroupRegistration {
                tenant: tenant(),
                jid: ChatJid::new(&format!("{folder}@g.us")).unwrap(),
                name: folder.into(),
                folder: GroupFolder::new(folder).unwrap(),
                trigger: "@Andy".into(),
                requires_trigger: None,
                container_config: None,
            })
            .await
            .unwrap();
    }

    pub(crate) async fn task(
        &self,
        id: &str,
        folder: &str,
        kind: &str,
        value: &str,
    ) -> ScheduledTask {
        let now = self.clock.now();
        let schedule = Schedule::parse(kind, value, chrono_tz::UTC, now).unwrap();
        let task = ScheduledTask {
            id: TaskId::new(id).unwrap(),
            tenant: tenant(),
            group_folder: GroupFolder::new(folder).unwrap(),
            chat_jid: ChatJid::new(&format!("{folder}@g.us")).unwrap(),
            prompt: format!("run {id}"),
            schedule_type: schedule.schedule_type().into(),
            schedule_value: schedule.canonical_value(),
            timezone: "UTC".into(),
            context_mode: ContextMode::Isolated,
            missed_policy: MissedRunPolicy::Skip,
            next_run_ms: schedule.first_run(now).map(|t| t.timestamp_millis()),
            last_run: None,
            last_result: None,
            status: TaskStatus::Active,
            created_at: now.to_rfc3339(),
        };
        self.store.create_task(&task).await.unwrap();
        task
    }

    pub(crate) fn start(&self) {
        tokio::spawn(Arc::clone(&self.scheduler).run(self.cancel.clone()));
    }

    /// Slots of a task's run log with the given status, oldest first.
    pub(crate) async fn slots(&self, id: &str, status: TaskRunStatus) -> Vec<DateTime<Utc>> {
        let mut runs = self
            .store
            .task_runs(&TaskId::new(id).unwrap(), 100_000)
            .await
            .unwrap();
        runs.reverse();
        runs.into_iter()
            .filter(|r| r.status == status)
            .map(|r| DateTime::<Utc>::from_timestamp_millis(r.scheduled_for_ms.unwrap()).unwrap())
            .collect()
    }
}

pub(crate) fn quick() -> Arc<ScriptedRunner> {
    ScriptedRunner::new(|_, _| Turn::silent())
}

/// In real time: the reply is committed through the store's writer thread, which paused time
/// would not wait for.
#[tokio::test(flavor = "current_thread")]
async fn a_task_reply_is_cleaned_committed_and_logged() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("<internal>plan</internal>Done: 42"));
    let h = Harness::new("2026-01-01T00:00:00Z", runner, 4);
    h.group("g").await;
    h.task("report", "g", "once", "+1s").await;
    h.start();
    let id = TaskId::new("report").unwrap();
    eventually_async("the firing is logged", || async {
        h.store
            .task_runs(&id, 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.status == TaskRunStatus::Success)
    })
    .await;
    let started = h.runner.started();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].request.prompt, "run report");
    assert!(started[0].request.is_scheduled_task());
    let outbox = h.store.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].text, "Done: 42", "internal notes never leave");
    assert_eq!(outbox[0].origin, "task:report");
    let runs = h.store.task_runs(&id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].result.as_deref(), Some("Done: 42"));
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_failed_task_run_is_logged_with_its_reason() {
    let runner = ScriptedRunner::new(|_, _| Turn::fail("model unreachable"));
    let h = Harness::new("2026-01-01T00:00:00Z", runner, 4);
    h.group("g").await;
    h.task("flaky", "g", "once", "+1s").await;
    h.start();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let runs = h
        .store
        .task_runs(&TaskId::new("flaky").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, TaskRunStatus::Error);
    assert!(
        runs[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("model unreachable")),
        "{runs:?}"
    );
    h.cancel.cancel();
}

/// A claimed firing waits behind a long run in its group's queue; cancelled meanwhile, it never
/// starts (the executor re-checks it when its slot comes).
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_task_cancelled_while_queued_behind_a_run_never_starts() {
    let runner = ScriptedRunner::new(|req, _| {
        if req.prompt.contains("blocker") {
            Turn::silent().after(Duration::from_secs(30))
        } else {
            Turn::silent()
        }
    });
    let h = Harness::new("2026-01-01T00:00:00Z", runner, 4);
    h.group("g").await;
    h.task("blocker", "g", "once", "+1s").await;
    h.task("victim", "g", "once", "+2s").await;
    h.start();
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.store
        .delete_task(&TaskId::new("victim").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let prompts: Vec<String> = h
        .runner
        .started()
        .iter()
        .map(|r| r.request.prompt.clone())
        .collect();
    assert_eq!(prompts, vec!["run blocker".to_owned()]);
    h.cancel.cancel();
}
