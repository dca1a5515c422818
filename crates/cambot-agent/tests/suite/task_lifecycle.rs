//! Task lifecycle through both front doors: the agent's IPC tools (under paused time, with a
//! running scheduler) and the admin CLI (`cambot tasks ...`, the real binary), which share the
//! rules of `cambot_scheduler::{pause_task, resume_task, cancel_task}`.

use std::path::Path;
use std::process::Command;
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
use cambot_core::TaskStore;
use cambot_gateway::HostToolError;
use cambot_gateway::IpcService;
use cambot_gateway::RunIdentity;
use cambot_gateway::SendLimits;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TaskId;
use cambot_protocol::ipc::ScheduleTaskRequest;
use cambot_protocol::ipc::TaskIdRequest;
use cambot_scheduler::Clock;
use cambot_scheduler::cron::Schedule;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use chrono::DateTime;
use chrono::TimeDelta;
use chrono::Utc;
use pretty_assertions::assert_eq;

use super::support::eventually;
use super::support::eventually_async;
use super::support::tenant;
use super::task_run::Harness;
use super::task_run::quick;
use super::task_run::utc;

fn ipc(h: &Harness, wake: bool) -> IpcService {
    let service = IpcService::new(
        h.store.clone(),
        DataLayout::new(h._dir.path()),
        Arc::new(|| {}),
        chrono_tz::UTC,
        Arc::new(|_| Box::pin(async {})),
        SendLimits::default(),
    );
    if wake {
        service.with_on_tasks_changed(h.scheduler.waker())
    } else {
        service
    }
}

fn caller(folder: &str) -> RunIdentity {
    RunIdentity {
        run_id: RunId::from_bytes(rand::random()),
        tenant: tenant(),
        folder: GroupFolder::new(folder).unwrap(),
        chat_jid: ChatJid::new(&format!("{folder}@g.us")).unwrap(),
        model_provider: None,
    }
}

fn schedule(kind: &str, value: &str, prompt: &str) -> ScheduleTaskRequest {
    ScheduleTaskRequest {
        prompt: prompt.into(),
        schedule_type: kind.into(),
        schedule_value: value.into(),
        context_mode: None,
        target_group_jid: None,
    }
}

fn id_req(id: &str) -> TaskIdRequest {
    TaskIdRequest { task_id: id.into() }
}

/// With nothing scheduled the scheduler sleeps for minutes; a task created through IPC and due
/// in two seconds must still fire at its slot, because the IPC tools wake the scheduler.
#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn an_ipc_task_due_soon_fires_on_time_because_ipc_wakes_the_scheduler() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 4);
    h.group("g").await;
    h.start();
    tokio::time::sleep(Duration::from_secs(10)).await;

    // Control: the same change without the wake is not seen before the scheduler's long sleep
    // ends, which is what makes the assertion below meaningful.
    let unwoken = ipc(&h, false)
        .schedule_task(
            &caller("g"),
            schedule("once", "+2s", "quiet"),
            h.clock.now(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet = TaskId::new(&unwoken.task_id).unwrap();
    assert!(h.store.task_runs(&quiet, 10).await.unwrap().is_empty());

    let created_at = h.clock.now();
    let woken = ipc(&h, true)
        .schedule_task(&caller("g"), schedule("once", "+2s", "loud"), created_at)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        h.slots(&woken.task_id, TaskRunStatus::Success).await,
        vec![created_at + TimeDelta::seconds(2)],
        "fired at its slot"
    );
    let task = h
        .store
        .task(&TaskId::new(&woken.task_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    h.cancel.cancel();
}

#[tokio::test(start_paused = true, flavor = "current_thread")]
async fn ipc_pause_resume_and_cancel_follow_the_shared_rules() {
    let h = Harness::new("2026-01-01T00:00:00Z", quick(), 4);
    h.group("g").await;
    h.group("other").await;
    h.start();
    let service = ipc(&h, true);
    let me = caller("g");
    let hourly = service
        .schedule_task(&me, schedule("interval", "1h", "hourly"), h.clock.now())
        .await
        .unwrap()
        .task_id;
    let id = TaskId::new(&hourly).unwrap();
    assert_eq!(
        h.store.task(&id).await.unwrap().unwrap().next_run_ms,
        Some(utc("2026-01-01T01:00:00Z").timestamp_millis())
    );

    // Another group may not touch it.
    assert!(matches!(
        service.pause_task(&caller("other"), &id_req(&hourly)).await,
        Err(HostToolError::Forbidden(_))
    ));

    service.pause_task(&me, &id_req(&hourly)).await.unwrap();
    service.pause_task(&me, &id_req(&hourly)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3 * 3600 + 600)).await;
    assert!(
        h.slots(&hourly, TaskRunStatus::Success).await.is_empty(),
        "paused: no firing"
    );

    // Resume recomputes the next run from now, on the task's grid (the seed kept the stale
    // 01:00, so the task fired at once).
    service
        .resume_task(&me, &id_req(&hourly), h.clock.now())
        .await
        .unwrap();
    assert_eq!(
        h.store.task(&id).await.unwrap().unwrap().next_run_ms,
        Some(utc("2026-01-01T04:00:00Z").timestamp_millis())
    );
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        h.slots(&hourly, TaskRunStatus::Success).await,
        vec![utc("2026-01-01T04:00:00Z")]
    );

    // A completed one-shot is neither paused nor resumed: it would fire again.
    let once = service
        .schedule_task(&me, schedule("once", "+1m", "once"), h.clock.now())
        .await
        .unwrap()
        .task_id;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(h.slots(&once, TaskRunStatus::Success).await.len(), 1);
    for result in [
        service.pause_task(&me, &id_req(&once)).await,
        service
            .resume_task(&me, &id_req(&once), h.clock.now())
            .await,
    ] {
        match result {
            Err(HostToolError::BadRequest(why)) => assert!(why.contains("completed"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    service.cancel_task(&me, &id_req(&hourly)).await.unwrap();
    assert!(h.store.task(&id).await.unwrap().is_none());
    assert!(matches!(
        service.cancel_task(&me, &id_req(&hourly)).await,
        Err(HostToolError::NotFound(_))
    ));
    h.cancel.cancel();
}

// ---- the admin CLI, through the real binary ----

struct Cli {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn cambot(data_dir: &Path, args: &[&str]) -> Cli {
    let out = Command::new(env!("CARGO_BIN_EXE_cambot"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("CAMBOT_CONFIG")
        .env("RUST_LOG", "warn")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    Cli {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn register(store: &dyn Store, folder: &str) {
    store
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

async fn add_task(
    store: &dyn Store,
    id: &str,
    kind: &str,
    value: &str,
    status: TaskStatus,
    now: DateTime<Utc>,
) -> ScheduledTask {
    let task = ScheduledTask {
        status,
        ..add_task_row(id, kind, value, now)
    };
    store.create_task(&task).await.unwrap();
    task
}

async fn status_of(store: &dyn Store, id: &str) -> Option<(TaskStatus, Option<i64>)> {
    store
        .task(&TaskId::new(id).unwrap())
        .await
        .unwrap()
        .map(|t| (t.status, t.next_run_ms))
}

#[tokio::test]
async fn cli_lists_shows_pauses_resumes_cancels_and_prints_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&DataLayout::new(dir.path()).database()).unwrap();
    register(&store, "g").await;
    let created = Utc::now() - TimeDelta::hours(5);
    let hourly = add_task(
        &store,
        "hourly",
        "interval",
        "1h",
        TaskStatus::Active,
        created,
    )
    .await;
    add_task(
        &store,
        "done",
        "once",
        "2026-01-01T00:00:00Z",
        TaskStatus::Completed,
        created,
    )
    .await;
    let claimed = store
        .claim_firings(&[cambot_core::Claim {
            task_id: hourly.id.clone(),
            expected_next_run_ms: hourly.next_run_ms.unwrap(),
            new_next_run_ms: hourly.next_run_ms.map(|ms| ms + 3_600_000),
            scheduled_for_ms: hourly.next_run_ms.unwrap(),
            run_status: TaskRunStatus::Claimed,
            note: None,
        }])
        .await
        .unwrap();
    store
        .finish_task_run(
            claimed[0].unwrap(),
            &hourly.id,
            &cambot_core::RunOutcomeRecord {
                status: TaskRunStatus::Success,
                duration_ms: 42,
                result: Some("the hourly report".into()),
                error: None,
                completes_once: false,
            },
        )
        .await
        .unwrap();

    let list = cambot(dir.path(), &["tasks", "list"]);
    assert!(list.ok, "{}", list.stderr);
    assert!(list.stdout.contains("hourly") && list.stdout.contains("done"));
    let only_active = cambot(dir.path(), &["tasks", "list", "--status", "active"]);
    assert!(only_active.stdout.contains("hourly") && !only_active.stdout.contains("done"));
    let bad = cambot(dir.path(), &["tasks", "list", "--status", "bogus"]);
    assert!(
        !bad.ok && bad.stderr.contains("unknown status"),
        "{}",
        bad.stderr
    );

    let show = cambot(dir.path(), &["tasks", "show", "hourly"]);
    assert!(show.ok, "{}", show.stderr);
    for needle in [
        "interval 3600000",
        "prompt of hourly",
        "the hourly report",
        "success",
    ] {
        assert!(
            show.stdout.contains(needle),
            "{needle:?} in {}",
            show.stdout
        );
    }
    let runs = cambot(dir.path(), &["tasks", "runs", "hourly"]);
    assert!(
        runs.ok && runs.stdout.contains("the hourly report"),
        "{}",
        runs.stdout
    );

    let pause = cambot(dir.path(), &["tasks", "pause", "hourly"]);
    assert!(
        pause.ok && pause.stdout.contains("paused hourly"),
        "{}",
        pause.stderr
    );
    assert_eq!(
        status_of(&store, "hourly").await.unwrap().0,
        TaskStatus::Paused
    );
    let again = cambot(dir.path(), &["tasks", "pause", "hourly"]);
    assert!(again.ok && again.stdout.contains("already paused"));

    // Resume: next run recomputed from now, on the task's hourly grid.
    let before = Utc::now();
    let resume = cambot(dir.path(), &["tasks", "resume", "hourly"]);
    assert!(resume.ok, "{}", resume.stderr);
    let (status, next) = status_of(&store, "hourly").await.unwrap();
    assert_eq!(status, TaskStatus::Active);
    let next = next.unwrap();
    assert!(
        next > before.timestamp_millis(),
        "the stale next run was kept"
    );
    assert!(next <= Utc::now().timestamp_millis() + 3_600_000);
    assert_eq!(
        (next - hourly.next_run_ms.unwrap()) % 3_600_000,
        0,
        "off the grid"
    );

    // A completed one-shot cannot be resumed (it would fire again).
    let refused = cambot(dir.path(), &["tasks", "resume", "done"]);
    assert!(
        !refused.ok && refused.stderr.contains("completed"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        status_of(&store, "done").await.unwrap().0,
        TaskStatus::Completed
    );

    let cancel = cambot(dir.path(), &["tasks", "cancel", "hourly"]);
    assert!(cancel.ok, "{}", cancel.stderr);
    assert_eq!(status_of(&store, "hourly").await, None);
    let missing = cambot(dir.path(), &["tasks", "show", "hourly"]);
    assert!(!missing.ok && missing.stderr.contains("no task hourly"));

    let empty = tempfile::tempdir().unwrap();
    let nowhere = cambot(empty.path(), &["tasks", "list"]);
    assert!(!nowhere.ok && nowhere.stderr.contains("no database"));
}

/// The CLI changes the database of a running daemon; the daemon notices (SQLite
/// `data_version`) and fires the resumed task without waiting for its long idle sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_resume_reaches_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&DataLayout::new(dir.path()).database()).unwrap();
    register(&store, "g").await;
    // A one-shot paused before its time came: resumed, it fires at once.
    add_task(
        &store,
        "late",
        "once",
        "+1s",
        TaskStatus::Paused,
        Utc::now() - TimeDelta::minutes(1),
    )
    .await;
    let runner = ScriptedRunner::new(|_, _| Turn::reply("done"));
    let daemon = super::support::start_in(dir, runner.clone(), "").await;
    let data_dir = daemon.dir.path().to_owned();

    let list = tokio::task::spawn_blocking({
        let d = data_dir.clone();
        move || cambot(&d, &["tasks", "list"])
    })
    .await
    .unwrap();
    assert!(list.ok && list.stdout.contains("paused"), "{}", list.stderr);
    let resume =
        tokio::task::spawn_blocking(move || cambot(&data_dir, &["tasks", "resume", "late"]))
            .await
            .unwrap();
    assert!(resume.ok, "{}", resume.stderr);
    eventually_async("the resumed task ran", || async {
        store
            .task_runs(&TaskId::new("late").unwrap(), 10)
            .await
            .unwrap()
            .iter()
            .any(|r| r.status == TaskRunStatus::Success)
    })
    .await;
    assert_eq!(runner.started().len(), 1);
    assert_eq!(
        status_of(&store, "late").await.unwrap().0,
        TaskStatus::Completed
    );
    daemon.daemon.shutdown().await;
}

/// The admin CLI is another process writing the daemon's database: `cambot groups register`
/// while the daemon runs is picked up (its chat is answered), and `cambot tasks pause` stops a
/// task the daemon is firing every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_register_and_pause_reach_a_running_daemon() {
    let runner = ScriptedRunner::new(|_, _| Turn::reply("ok"));
    let t = super::support::start(runner.clone(), "").await;
    let data_dir = t.dir.path().to_owned();
    let cli = |args: &'static [&'static str]| {
        let d = data_dir.clone();
        tokio::task::spawn_blocking(move || cambot(&d, args))
    };

    let registered = cli(&[
        "groups",
        "register",
        "--jid",
        "fake:cli",
        "--name",
        "From the CLI",
        "--folder",
        "cli",
        "--requires-trigger",
        "false",
    ])
    .await
    .unwrap();
    assert!(registered.ok, "{}", registered.stderr);
    let chat = ChatJid::new("fake:cli").unwrap();
    let router = std::sync::Arc::clone(t.daemon.router());
    eventually("the daemon sees the registration", || {
        router.group_for(&tenant(), &chat).is_some()
    })
    .await;
    t.channel
        .inject(&tenant(), "fake:cli", "Alice", "hello")
        .await
        .unwrap();
    let sent = t.channel.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 1, "the CLI-registered chat is answered");

    // Another process creates a task firing every second; the daemon notices and fires it.
    let other = SqliteStore::open(&DataLayout::new(&data_dir).database()).unwrap();
    let now = Utc::now();
    let every_second = ScheduledTask {
        chat_jid: chat.clone(),
        group_folder: GroupFolder::new("cli").unwrap(),
        ..add_task_row("ticker", "interval", "1000", now)
    };
    other.create_task(&every_second).await.unwrap();
    let ticker = TaskId::new("ticker").unwrap();
    eventually_async("the daemon fires the task", || async {
        other
            .task_runs(&ticker, 100)
            .await
            .unwrap()
            .iter()
            .any(|r| r.status == TaskRunStatus::Success)
    })
    .await;

    let paused = cli(&["tasks", "pause", "ticker"]).await.unwrap();
    assert!(paused.ok, "{}", paused.stderr);
    // A firing claimed just before the pause may still finish; after that, nothing starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = runner.started().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runner.started().len(), started, "a paused task fired");
    assert_eq!(
        other.task(&ticker).await.unwrap().unwrap().status,
        TaskStatus::Paused
    );
    t.daemon.shutdown().await;
}

/// A task row due from `now` on (group `g`, isolated context).
fn add_task_row(id: &str, kind: &str, value: &str, now: DateTime<Utc>) -> ScheduledTask {
    let schedule = Schedule::parse(kind, value, chrono_tz::UTC, now).unwrap();
    ScheduledTask {
        id: TaskId::new(id).unwrap(),
        tenant: tenant(),
        group_folder: GroupFolder::new("g").unwrap(),
        chat_jid: ChatJid::new("g@g.us").unwrap(),
        prompt: format!("prompt of {id}"),
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
    }
}
