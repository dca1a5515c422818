//! Scheduler crash test: SIGKILL the daemon again and again while tasks fall due (intervals of
//! one to three seconds, cron every minute, one-shots spread over the run; both missed-run
//! policies), restart it each time, and then check the run log:
//!
//! - every slot of every task is logged at most once (a firing is never handed out twice), and
//!   every logged firing finished (`success`; interrupted firings are resumed after a restart);
//! - every one-shot ran exactly once and is `completed`, whatever its policy;
//! - a slot is missing from the log only when no daemon was up from the slot before it until
//!   it (both policies drop the intermediate slots of a downtime, by design), and a slot is
//!   `skipped` as missed only under the `skip` policy and only when no daemon was up from the
//!   slot until the grace had passed.
//!
//! "Up" is exact, not guessed: each child writes the wall time at which its daemon had started
//! (scheduler running), and the parent notes the wall time of each SIGKILL. The child is this
//! test binary re-executed with [`CHILD_ENV`] set (as in `crash.rs`).

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use cambot_agent::daemon::Daemon;
use cambot_core::ContextMode;
use cambot_core::GroupRegistration;
use cambot_core::GroupStore;
use cambot_core::MissedRunPolicy;
use cambot_core::ScheduledTask;
use cambot_core::SqliteStore;
use cambot_core::TaskStatus;
use cambot_core::TaskStore;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use cambot_scheduler::cron::Schedule;
use cambot_scheduler::cron::parse_time_zone;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use chrono::DateTime;
use chrono::TimeDelta;
use chrono::Utc;
use rand::Rng;
use rand::SeedableRng;

use super::support::config;
use super::support::fake_factory;
use super::support::tenant;

const CHILD_ENV: &str = "CAMBOT_SCHED_CRASH_CHILD_DIR";
const GROUPS: usize = 8;
const KILLS: usize = 50;
/// The daemons' missed-run grace (seconds): short, so that downtimes exercise both policies.
const GRACE_SECS: i64 = 1;
const MISSED_NOTE: &str = "missed while cambot was down";

/// The child: a daemon that runs until killed (or SIGTERM, at the end).
#[tokio::test]
#[ignore = "entry point of the scheduler crash test's child process, not a test by itself"]
async fn scheduler_crash_child_daemon() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir).to_owned();
    let rng = Arc::new(Mutex::new(
        rand::rngs::StdRng::seed_from_u64(rand::random()),
    ));
    // Runs take long enough that some kills land in the middle of one.
    let runner = ScriptedRunner::quiet(move |_, _| {
        Turn::silent().after(Duration::from_millis(rng.lock().unwrap().gen_range(5..250)))
    });
    let cfg = config(
        &dir,
        &format!(
            "max_concurrent_runs = 8\n[router]\nrecovery_sweep_secs = 1\n\
             [scheduler]\nmissed_grace_secs = {GRACE_SECS}\n"
        ),
    );
    let daemon = Daemon::start(&cfg, runner, fake_factory(Arc::new(Mutex::new(None)), None))
        .await
        .unwrap();
    // The scheduler is running from here on.
    let up = Utc::now().timestamp_millis();
    let tmp = dir.join(format!("up-{}.tmp", std::process::id()));
    std::fs::write(&tmp, up.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("up-{}", std::process::id()))).unwrap();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    term.recv().await;
    daemon.shutdown().await;
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::scheduler_crash::scheduler_crash_child_daemon",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The wall time (ms) at which the child's daemon was up, once it is.
fn up_time(dir: &Path, child: &Child) -> Option<i64> {
    std::fs::read_to_string(dir.join(format!("up-{}", child.id())))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn wait_up(dir: &Path, child: &Child) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = up_time(dir, child) {
            return t;
        }
        assert!(Instant::now() < deadline, "a daemon never came up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        sig,
    )
    .unwrap();
}

/// When daemons were up: `[up, killed]` in wall-clock ms.
struct Uptime(Vec<(i64, i64)>);

impl Uptime {
    /// Whether one daemon was up for the whole of `[from, to]`.
    fn covers(&self, from: i64, to: i64) -> bool {
        self.0.iter().any(|&(up, down)| up <= from && to <= down)
    }
}

/// The store as the parent uses it, from a plain thread (it sleeps, spawns and kills).
struct Blocking(SqliteStore, tokio::runtime::Runtime);

impl Blocking {
    fn open(path: &Path) -> Self {
        Self(
            SqliteStore::open(path).unwrap(),
            tokio::runtime::Runtime::new().unwrap(),
        )
    }

    fn create_task(&self, task: &ScheduledTask) -> cambot_core::Result<()> {
        self.1.block_on(self.0.create_task(task))
    }

    fn register_group(
        &self,
        reg: &GroupRegistration,
    ) -> cambot_core::Result<cambot_protocol::RegisteredGroup> {
        self.1.block_on(self.0.register_group(reg.clone()))
    }

    fn all_tasks(&self) -> cambot_core::Result<Vec<ScheduledTask>> {
        self.1.block_on(self.0.all_tasks())
    }

    fn unfinished_task_runs(&self) -> cambot_core::Result<Vec<cambot_core::TaskRun>> {
        self.1.block_on(self.0.unfinished_task_runs())
    }

    fn task_runs(
        &self,
        id: &TaskId,
        limit: usize,
    ) -> cambot_core::Result<Vec<cambot_core::TaskRun>> {
        self.1.block_on(self.0.task_runs(id, limit))
    }
}

fn add_task(
    store: &Blocking,
    id: String,
    group: usize,
    (kind, value, tz): (&str, &str, &str),
    policy: MissedRunPolicy,
    now: DateTime<Utc>,
) {
    let schedule = Schedule::parse(kind, value, parse_time_zone(tz).unwrap(), now).unwrap();
    store
        .create_task(&ScheduledTask {
            id: TaskId::new(&id).unwrap(),
            tenant: tenant(),
            group_folder: GroupFolder::new(&format!("g{group}")).unwrap(),
            chat_jid: ChatJid::new(&format!("fake:g{group}")).unwrap(),
            prompt: id.clone(),
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
        })
        .unwrap();
}

/// Creates the tasks; returns each task's first slot.
fn seed_tasks(store: &Blocking, rng: &mut impl Rng) -> HashMap<String, i64> {
    for g in 0..GROUPS {
        store
            .register_group(&GroupRegistration {
                tenant: tenant(),
                jid: ChatJid::new(&format!("fake:g{g}")).unwrap(),
                name: format!("g{g}"),
                folder: GroupFolder::new(&format!("g{g}")).unwrap(),
                trigger: "@Andy".into(),
                requires_trigger: Some(false),
                container_config: None,
            })
            .unwrap();
    }
    let now = Utc::now();
    let policies = [MissedRunPolicy::Skip, MissedRunPolicy::RunOnce];
    let mut n = 0;
    let mut next_group = || {
        n += 1;
        n % GROUPS
    };
    for (p, policy) in policies.into_iter().enumerate() {
        for every in ["1000", "1500", "2000", "3000"] {
            let spec = ("interval", every, "UTC");
            add_task(
                store,
                format!("i{every}-{p}"),
                next_group(),
                spec,
                policy,
                now,
            );
        }
        for (z, tz) in ["UTC", "America/New_York"].into_iter().enumerate() {
            let spec = ("cron", "* * * * *", tz);
            add_task(
                store,
                format!("cron{z}-{p}"),
                next_group(),
                spec,
                policy,
                now,
            );
        }
        for k in 0..10 {
            let at = format!("+{}s", rng.gen_range(1..60));
            let spec = ("once", at.as_str(), "UTC");
            add_task(
                store,
                format!("once{k}-{p}"),
                next_group(),
                spec,
                policy,
                now,
            );
        }
    }
    store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.id.to_string(), t.next_run_ms.unwrap()))
        .collect()
}

fn no_unfinished_runs(store: &Blocking) -> bool {
    store.unfinished_task_runs().unwrap().is_empty()
}

#[test]
fn sigkill_while_tasks_are_due_fires_each_slot_at_most_once_and_loses_only_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let layout = DataLayout::new(dir.path());
    let seed: u64 = std::env::var("CAMBOT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("scheduler crash test seed {seed} (set CAMBOT_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let store = Blocking::open(&layout.database());
    let first_slots = seed_tasks(&store, &mut rng);

    let mut uptime = Vec::new();
    let mut early_kills = 0;
    for round in 0..KILLS {
        let child = spawn_child(dir.path());
        if rng.gen_bool(0.2) {
            // Somewhere in start-up: recovery, resuming interrupted firings, the first pass.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        } else {
            wait_up(dir.path(), &child);
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..1500)));
        }
        let killed = Utc::now().timestamp_millis();
        signal(&child, nix::sys::signal::Signal::SIGKILL);
        let mut child = child;
        child.wait().unwrap();
        match up_time(dir.path(), &child) {
            Some(up) => uptime.push((up, killed)),
            None => early_kills += 1,
        }
        // Now and then a longer downtime, past the grace: the missed-run policies apply.
        if round % 8 == 3 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(2_000..3_000)));
        }
    }

    // A last daemon: wait until every one-shot has run and nothing is mid-flight, then stop it.
    let mut child = spawn_child(dir.path());
    let up = wait_up(dir.path(), &child);
    let settle = Utc::now() + TimeDelta::seconds(3);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = Utc::now() > settle
            && no_unfinished_runs(&store)
            && store
                .all_tasks()
                .unwrap()
                .iter()
                .all(|t| t.schedule_type != "once" || t.status == TaskStatus::Completed);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the last daemon did not settle");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = Utc::now().timestamp_millis();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
    uptime.push((up, stopped));
    let uptime = Uptime(uptime);

    let mut totals = Totals::default();
    for task in store.all_tasks().unwrap() {
        check_task(
            &store,
            &task,
            first_slots[task.id.as_str()],
            &uptime,
            &mut totals,
        );
    }
    println!(
        "scheduler crash test: {KILLS} kills ({early_kills} during start-up), {} slots logged, \
         {} fired, {} skipped as missed (policy skip), {} skipped while the previous firing ran, \
         {} run_once catch-ups, {} slots dropped during downtime",
        totals.logged,
        totals.fired,
        totals.missed_skipped,
        totals.busy_skipped,
        totals.caught_up,
        totals.dropped
    );
    // The run must have exercised what it checks.
    assert!(totals.missed_skipped > 0, "no missed slot under skip");
    assert!(totals.caught_up > 0, "no run_once catch-up");
    assert!(totals.dropped > 0, "no downtime long enough to drop a slot");
}

#[derive(Default)]
struct Totals {
    logged: usize,
    fired: usize,
    missed_skipped: usize,
    busy_skipped: usize,
    caught_up: usize,
    dropped: usize,
}

fn check_task(
    store: &Blocking,
    task: &ScheduledTask,
    first: i64,
    uptime: &Uptime,
    totals: &mut Totals,
) {
    let id = task.id.as_str();
    let mut runs = store.task_runs(&task.id, 100_000).unwrap();
    runs.reverse();
    let mut seen = HashSet::new();
    for r in &runs {
        let slot = r
            .scheduled_for_ms
            .unwrap_or_else(|| panic!("{id}: a row without a slot: {r:?}"));
        assert!(
            seen.insert(slot),
            "{id}: slot {slot} logged twice: {runs:#?}"
        );
        totals.logged += 1;
        match r.status.as_str() {
            "success" => {
                totals.fired += 1;
                let started = DateTime::parse_from_rfc3339(&r.run_at)
                    .unwrap()
                    .timestamp_millis();
                // A late start can also be queueing behind other runs; count only firings
                // whose slot fell in a downtime.
                let late = started - slot > GRACE_SECS * 1000;
                if late
                    && task.missed_policy == MissedRunPolicy::RunOnce
                    && !uptime.covers(slot, slot + GRACE_SECS * 1000)
                {
                    totals.caught_up += 1;
                }
            }
            "skipped" => {
                let note = r.error.as_deref().unwrap_or("");
                if note.contains(MISSED_NOTE) {
                    assert_eq!(
                        task.missed_policy,
                        MissedRunPolicy::Skip,
                        "{id}: slot {slot} skipped as missed under run_once"
                    );
                    assert_ne!(task.schedule_type, "once", "{id}: a one-shot was skipped");
                    assert!(
                        !uptime.covers(slot, slot + GRACE_SECS * 1000),
                        "{id}: slot {slot} skipped as missed while a daemon was up"
                    );
                    totals.missed_skipped += 1;
                } else {
                    assert!(
                        note.contains("still running") || note.contains("already queued"),
                        "{id}: {r:?}"
                    );
                    totals.busy_skipped += 1;
                }
            }
            other => panic!("{id}: firing for slot {slot} ended {other}: {r:?}"),
        }
    }
    if task.schedule_type == "once" {
        assert_eq!(task.status, TaskStatus::Completed, "{id}");
        assert_eq!(runs.len(), 1, "{id}: {runs:?}");
        assert_eq!(runs[0].status, cambot_core::TaskRunStatus::Success, "{id}");
        assert_eq!(runs[0].scheduled_for_ms, Some(first), "{id}");
        return;
    }
    // Walk the schedule from the first slot to the task's final next run: every slot is
    // logged, or was dropped while no daemon was up since the slot before it.
    let tz = parse_time_zone(&task.timezone).unwrap();
    let start = DateTime::<Utc>::from_timestamp_millis(first).unwrap();
    let schedule = Schedule::parse(&task.schedule_type, &task.schedule_value, tz, start)
        .unwrap()
        .anchored_at(start);
    let end = task.next_run_ms.unwrap();
    let mut expected = 0;
    let mut previous: Option<i64> = None;
    let mut slot = first;
    while slot < end {
        expected += 1;
        if !seen.remove(&slot) {
            let from = previous.unwrap_or(slot);
            assert!(
                !uptime.covers(from, slot),
                "{id}: slot {slot} lost although a daemon was up from {from} until it"
            );
            totals.dropped += 1;
        }
        previous = Some(slot);
        let at = DateTime::<Utc>::from_timestamp_millis(slot).unwrap();
        slot = schedule.next_run_after(at).unwrap().timestamp_millis();
    }
    assert!(
        seen.is_empty(),
        "{id}: logged slots off the schedule: {seen:?}"
    );
    assert!(
        expected > 0 || task.schedule_type == "cron",
        "{id}: no slot checked"
    );
}
