//! The scheduler under paused tokio time, its firings run by a [`FakeExecutor`]: the test
//! sleeps across the window it checks, and tokio advances virtual time exactly to each timer
//! the scheduler sets, so firings happen on time in virtual time and the run log shows every
//! slot. (The agent's own executor, over its group queue, is tested in cambot-agent.)
#![allow(clippy::disallowed_methods)] // Opens the database file directly, as another process would.

use std::sync::Arc;
use std::time::Duration;

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
use cambot_protocol::TaskId;
use cambot_protocol::TenantId;
use cambot_scheduler::Clock;
use cambot_scheduler::Scheduler;
use cambot_scheduler::SchedulerSettings;
use cambot_scheduler::TokioClock;
use cambot_scheduler::cron::Schedule;
use chrono::DateTime;
use chrono::Utc;
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::support::FakeExecutor;
use super::support::RunTime;

/// A scheduler on a temp database under paused time, its firings run by a [`FakeExecutor`].
pub(crate) struct Harness {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) runner: FakeExecutor,
    pub(crate) clock: TokioClock,
    pub(crate) cancel: CancellationToken,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

impl Harness {
    pub(crate) fn new(start: &str, run_time: RunTime, max_concurrent: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("cambot.db")).unwrap());
        let runner = FakeExecutor::new(Arc::clone(&store), run_time, max_concurrent);
        let clock = TokioClock::starting_at(utc(start));
        let scheduler = Scheduler::new(
            Arc::clone(&store),
            Arc::new(runner.clone()),
            Arc::new(clock),
            SchedulerSettings::default(),
        );
        Self {
            store,
            scheduler,
            runner,
            clock,
            cancel: CancellationToken::new(),
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
        tz: &str,
        policy: MissedRunPolicy,
    ) -> ScheduledTask {
        let now = self.clock.now();
        let schedule = Schedule::parse(kind, value, tz.parse().unwrap(), now).unwrap();
        let task = ScheduledTask {
            id: TaskId::new(id).unwrap(),
            tenant: tenant(),
            group_folder: GroupFolder::new(folder).unwrap(),
            chat_jid: ChatJid::new(&format!("{folder}@g.us")).unwrap(),
            prompt: format!("run {id}"),
            schedule_type: schedule.schedule_type().into(),
            schedule_value: schedule.canonical_value(),
            timezone: tz.into(),
            context_mode: ContextMode::Isolated,
            missed_policy: policy,
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

/// Runs that finish at once.
pub(crate) fn quick() -> RunTime {
    Arc::new(|_| Duration::ZERO)
}

/// Runs that take `took`.
fn taking(took: Duration) -> RunTime {
    Arc::new(move |_| took)
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn cron_across_spring_forward_in_new_york() {
    let h = Harness::new("2026-03-06T12:00:00Z", quick(), 4);
    h.group("g").await;
    h.task(
        "ny",
        "g",
        "cron",
        "30 2 * * *",
        "America/New_York",
        MissedRunPolicy::Skip,
    )
    .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(4 * 86_400)).await;
    assert_eq!(
        h.slots("ny", TaskRunStatus::Success).await,
        vec![
            utc("2026-03-07T07:30:00Z"), // 02:30 EST
            utc("2026-03-08T07:00:00Z"), // 02:30 does not exist: the gap's end, 03:00 EDT
            utc("2026-03-09T06:30:00Z"), // 02:30 EDT
            utc("2026-03-10T06:30:00Z"),
        ]
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn cron_across_fall_back_in_london() {
    let h = Harness::new("2026-10-23T12:00:00Z", quick(), 4);
    h.group("g").await;
    h.task(
        "uk",
        "g",
        "cron",
        "30 1 * * *",
        "Europe/London",
        MissedRunPolicy::Skip,
    )
    .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(4 * 86_400)).await;
    assert_eq!(
        h.slots("uk", TaskRunStatus::Success).await,
        vec![
            utc("2026-10-24T00:30:00Z"), // 01:30 BST
            utc("2026-10-25T00:30:00Z"), // first 01:30 (BST) only; not again at 01:30 GMT
            utc("2026-10-26T01:30:00Z"), // 01:30 GMT
            utc("2026-10-27T01:30:00Z"),
        ]
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn interval_stays_on_its_grid_whatever_the_run_time() {
    let h = Harness::new("2026-01-01T00:00:00Z", taking(Duration::from_secs(3)), 4);
    h.group("g").await;
    h.task(
        "every10",
        "g",
        "interval",
        "10000",
        "UTC",
        MissedRunPolicy::Skip,
    )
    .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(65)).await;
    let expected: Vec<_> = (1..=6)
        .map(|k| utc("2026-01-01T00:00:00Z") + chrono::TimeDelta::seconds(10 * k))
        .collect();
    assert_eq!(
        h.slots("every10", TaskRunStatus::Success).await,
        expected,
        "anchored to the schedule, not to when runs end"
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_one_shot_in_the_past_fires_once_and_completes() {
    let h = Harness::new("2026-01-01T12:00:00Z", quick(), 4);
    h.group("g").await;
    h.task(
        "past",
        "g",
        "once",
        "2026-01-01T09:00:00Z",
        "UTC",
        MissedRunPolicy::Skip,
    )
    .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert_eq!(
        h.slots("past", TaskRunStatus::Success).await,
        vec![utc("2026-01-01T09:00:00Z")]
    );
    let task = h
        .store
        .task(&TaskId::new("past").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.next_run_ms, None);
    assert_eq!(h.runner.started().len(), 1);
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn ten_thousand_tasks_due_in_the_same_second_fire_once_each() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 64);
    for g in 0..100 {
        h.group(&format!("g{g}")).await;
    }
    for i in 0..10_000 {
        h.task(
            &format!("t{i}"),
            &format!("g{}", i % 100),
            "once",
            "+1s",
            "UTC",
            MissedRunPolicy::Skip,
        )
        .await;
    }
    h.start();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let mut fired = 0;
    for i in 0..10_000 {
        let runs = h
            .store
            .task_runs(&TaskId::new(&format!("t{i}")).unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(runs.len(), 1, "task t{i}: {runs:?}");
        assert_eq!(runs[0].status, TaskRunStatus::Success, "task t{i}");
        fired += 1;
    }
    assert_eq!(fired, 10_000);
    let mut prompts: Vec<String> = h.runner.started();
    assert_eq!(prompts.len(), 10_000, "runs started");
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 10_000, "no task started twice");
    h.cancel.cancel();
}

/// Seed DEFECT: a task running longer than the poll interval was queued (and run) again.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_task_running_longer_than_its_interval_is_never_started_twice() {
    let h = Harness::new(
        "2026-01-01T00:00:00Z",
        taking(Duration::from_millis(3_500)),
        4,
    );
    h.group("g").await;
    h.task(
        "slow",
        "g",
        "interval",
        "1000",
        "UTC",
        MissedRunPolicy::Skip,
    )
    .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        h.runner.max_live_runs(),
        1,
        "never two firings of one task at once"
    );
    let skipped = h.slots("slow", TaskRunStatus::Skipped).await;
    let ran = h.slots("slow", TaskRunStatus::Success).await;
    assert!(!skipped.is_empty(), "slots during a run are skipped");
    assert!(ran.len() >= 4, "{ran:?}");
    let mut all: Vec<_> = skipped.iter().chain(ran.iter()).collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        skipped.len() + ran.len(),
        "each slot recorded once"
    );
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_task_cancelled_after_its_claim_never_starts() {
    // A long task holds the group; the second task is claimed and waits behind it, then is
    // cancelled.
    let run_time: RunTime = Arc::new(|prompt| {
        if prompt.contains("blocker") {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        }
    });
    let h = Harness::new("2026-01-01T00:00:00Z", run_time, 4);
    h.group("g").await;
    h.task("blocker", "g", "once", "+1s", "UTC", MissedRunPolicy::Skip)
        .await;
    h.task("victim", "g", "once", "+2s", "UTC", MissedRunPolicy::Skip)
        .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        h.store
            .task_runs(&TaskId::new("victim").unwrap(), 10)
            .await
            .unwrap()
            .len(),
        1,
        "claimed"
    );
    h.store
        .delete_task(&TaskId::new("victim").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.runner.started(), vec!["run blocker".to_owned()]);
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn missed_run_policy_after_downtime() {
    let h = Harness::new("2026-01-01T12:00:00Z", quick(), 4);
    h.group("g").await;
    for (id, policy) in [
        ("skipper", MissedRunPolicy::Skip),
        ("catcher", MissedRunPolicy::RunOnce),
    ] {
        let t = h.task(id, "g", "interval", "3600000", "UTC", policy).await;
        // As if cambot was down for three hours: the stored next run is long past.
        h.store
            .set_task_status(
                &t.id,
                TaskStatus::Active,
                Some(Some(utc("2026-01-01T09:30:00Z").timestamp_millis())),
            )
            .await
            .unwrap();
    }
    h.start();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        h.slots("skipper", TaskRunStatus::Skipped).await,
        vec![utc("2026-01-01T09:30:00Z")]
    );
    assert!(h.slots("skipper", TaskRunStatus::Success).await.is_empty());
    assert_eq!(
        h.slots("catcher", TaskRunStatus::Success).await,
        vec![utc("2026-01-01T09:30:00Z")],
        "run_once fires the missed slot once"
    );
    for id in ["skipper", "catcher"] {
        let next = h
            .store
            .task(&TaskId::new(id).unwrap())
            .await
            .unwrap()
            .unwrap()
            .next_run_ms
            .unwrap();
        assert_eq!(
            next,
            utc("2026-01-01T12:30:00Z").timestamp_millis(),
            "{id}: next slot on the old grid"
        );
    }
    h.cancel.cancel();
}

/// Seed test (task-scheduler.test.ts): a due task whose folder is invalid is paused after one
/// pass instead of being retried.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_due_task_with_an_invalid_folder_is_paused() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 4);
    let conn = rusqlite::Connection::open(h._dir.path().join("cambot.db")).unwrap();
    conn.execute(
        "INSERT INTO scheduled_tasks (id, tenant, group_folder, chat_jid, prompt, schedule_type, schedule_value,
             timezone, next_run_ms, status, created_at)
         VALUES ('bad', 'default', '../../outside', 'x@g.us', 'p', 'once', '2025-01-01T00:00:00Z', 'UTC', 1, 'active', 'now')",
        [],
    )
    .unwrap();
    h.start();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status: String = conn
        .query_row(
            "SELECT status FROM scheduled_tasks WHERE id = 'bad'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "paused");
    let runs: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM task_runs WHERE task_id = 'bad' AND status = 'error'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(runs, 1, "one logged reason, no retry loop");
    assert!(h.runner.started().is_empty());
    h.cancel.cancel();
}

/// Seed DEFECT: a task whose group is no longer registered was retried every minute forever.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_task_whose_group_is_gone_is_paused_with_the_reason() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 4);
    h.group("g").await;
    h.task(
        "orphan",
        "g",
        "interval",
        "60000",
        "UTC",
        MissedRunPolicy::Skip,
    )
    .await;
    h.store
        .unregister_group(&tenant(), &ChatJid::new("g@g.us").unwrap())
        .await
        .unwrap();
    h.start();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let task = h
        .store
        .task(&TaskId::new("orphan").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, TaskStatus::Paused);
    assert!(task.last_result.unwrap().contains("Group not found: g"));
    assert_eq!(h.store.task_runs(&task.id, 100).await.unwrap().len(), 1);
    h.cancel.cancel();
}

/// Two schedulers on one database (two processes, or a future multi-node setup): the claim's
/// compare-and-swap hands each firing to exactly one of them.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn two_schedulers_on_one_database_fire_each_slot_once() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 16);
    for g in 0..10 {
        h.group(&format!("g{g}")).await;
    }
    for i in 0..200 {
        h.task(
            &format!("t{i}"),
            &format!("g{}", i % 10),
            "interval",
            "1000",
            "UTC",
            MissedRunPolicy::Skip,
        )
        .await;
    }
    let second_runner = FakeExecutor::new(Arc::clone(&h.store), quick(), 16);
    let second = Scheduler::new(
        Arc::clone(&h.store),
        Arc::new(second_runner.clone()),
        Arc::new(h.clock),
        SchedulerSettings::default(),
    );
    h.start();
    tokio::spawn(Arc::clone(&second).run(h.cancel.clone()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Stop claiming and let the firings in flight finish: a run started at the window's edge
    // records its outcome a few store writes later, and the log is read across many awaits.
    h.cancel.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut successes = 0;
    for i in 0..200 {
        let mut slots = h.slots(&format!("t{i}"), TaskRunStatus::Success).await;
        successes += slots.len();
        slots.extend(h.slots(&format!("t{i}"), TaskRunStatus::Skipped).await);
        let n = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), n, "t{i}: a slot was handed out twice");
        assert!(n >= 9, "t{i}: {n} slots");
    }
    // Which scheduler wins a slot is a race; what matters is that the runs started across both
    // equal the successful slots in the log: no firing executed twice, none without a log row.
    assert_eq!(
        h.runner.started().len() + second_runner.started().len(),
        successes,
        "runs started across both schedulers"
    );
}

/// Regression (found by the crash test): a one-shot whose time has sub-millisecond digits was
/// claimed, then its next run rounded back onto the same millisecond slot, so every pass in
/// that millisecond logged the slot again as "busy". A slot is logged once.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn a_one_shot_with_sub_millisecond_time_is_logged_once() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 4);
    h.group("g").await;
    h.task(
        "precise",
        "g",
        "once",
        "2026-01-01T00:00:05.000500Z",
        "UTC",
        MissedRunPolicy::Skip,
    )
    .await;
    h.start();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let runs = h
        .store
        .task_runs(&TaskId::new("precise").unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].status, TaskRunStatus::Success);
    h.cancel.cancel();
}
