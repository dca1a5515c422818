//! Scheduler firing lateness with 100,000 scheduled tasks: the real scheduler on a SQLite file in
//! WAL mode, its firings run by a bench executor that keeps the group queue's guarantees (one
//! run per group, at most `BENCH_CONCURRENCY` runs) and whose runs do nothing.
//!
//! Every task is an `interval` task whose period equals the spread window (default 50 s), and the
//! tasks' first slots are spread evenly over that window, so the daemon fires a steady
//! `tasks / spread` firings per second (2,000/s by default) for the whole measurement
//! (default 60 s: every task fires at least once). Lateness = the moment the runner is asked to
//! start the run minus the slot the firing was scheduled for (claim, dispatch, the wait for the
//! group and a run slot, and the start-of-run bookkeeping included). Printed: p50/p90/p99/max
//! lateness, firings, slots skipped because the previous firing still ran, duplicates (must be
//! 0), and the process's RSS (VmRSS now, VmHWM peak).
//!
//! `cargo bench -p cambot-scheduler --bench scheduler`
//! (env: BENCH_TASKS, BENCH_GROUPS, BENCH_SPREAD_SECS, BENCH_SECS, BENCH_CONCURRENCY).
#![allow(clippy::disallowed_methods)] // Inspects the database file directly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use cambot_core::GroupStore;
use cambot_core::SqliteStore;
use cambot_core::Store;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupKey;
use cambot_protocol::TaskId;
use cambot_scheduler::Firing;
use cambot_scheduler::FiringEnd;
use cambot_scheduler::Scheduler;
use cambot_scheduler::SchedulerConfig;
use cambot_scheduler::SystemClock;
use cambot_scheduler::TaskDispatcher;
use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The allocator the `cambot` binary runs with (see cambot-agent's `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Per task: its first slot and period (µs), the last slot it fired; shared counters.
struct Tally {
    anchor_us: Vec<i64>,
    period_us: i64,
    last_slot: Vec<AtomicI64>,
    lateness_us: Mutex<Vec<(i64, i64)>>,
    duplicates: AtomicU64,
    measure_from_us: i64,
}

impl Tally {
    fn record(&self, task: usize) {
        let now = now_us();
        let anchor = self.anchor_us[task];
        // The slot being fired: the latest one not after now (lateness is far below a period).
        let slot = anchor + (now - anchor).div_euclid(self.period_us) * self.period_us;
        if self.last_slot[task].swap(slot, Ordering::Relaxed) == slot {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        if slot >= self.measure_from_us {
            self.lateness_us.lock().unwrap().push((slot, now - slot));
        }
    }
}

/// Runs firings as the agent's group queue would (one per group, `concurrency` at once) with a
/// run that only records its lateness.
#[derive(Clone)]
struct BenchExecutor {
    store: Arc<dyn Store>,
    tally: Arc<Tally>,
    slots: Arc<Semaphore>,
    groups: Arc<Mutex<HashMap<GroupKey, Arc<tokio::sync::Mutex<()>>>>>,
    queued: Arc<Mutex<HashSet<TaskId>>>,
}

impl BenchExecutor {
    async fn execute(self, firing: Firing) {
        let key = GroupKey::new(firing.task.tenant.clone(), firing.task.group_folder.clone());
        let group = Arc::clone(self.groups.lock().unwrap().entry(key).or_default());
        {
            let _turn = group.lock().await;
            let _slot = self.slots.acquire().await.unwrap();
            if let Some(started) = firing.begin(self.store.as_ref()).await {
                if let Some(i) = started
                    .task
                    .id
                    .as_str()
                    .strip_prefix('t')
                    .and_then(|n| n.parse().ok())
                {
                    self.tally.record(i);
                }
                started
                    .finish(
                        self.store.as_ref(),
                        Duration::ZERO,
                        FiringEnd::Success { result: None },
                    )
                    .await;
            }
        }
        self.queued.lock().unwrap().remove(&firing.task.id);
    }
}

impl TaskDispatcher for BenchExecutor {
    fn dispatch(&self, firing: Firing) -> bool {
        if !self.queued.lock().unwrap().insert(firing.task.id.clone()) {
            return false;
        }
        tokio::spawn(self.clone().execute(firing));
        true
    }

    fn is_shutting_down(&self) -> bool {
        false
    }
}

/// Registers the groups, then writes the tasks straight into the database in one transaction
/// (100,000 separate commits would only measure set-up).
async fn seed(db: &std::path::Path, tasks: usize, groups: usize, first_us: i64, period_us: i64) {
    let store = SqliteStore::open(db).unwrap();
    for g in 0..groups {
        store
            .register_group(cambot_core::GroupRegistration {
                tenant: cambot_protocol::TenantId::default_tenant(),
                jid: cambot_protocol::ChatJid::new(&format!("fake:g{g}")).unwrap(),
                name: format!("g{g}"),
                folder: cambot_protocol::GroupFolder::new(&format!("g{g}")).unwrap(),
                trigger: "@Andy".into(),
                requires_trigger: Some(false),
                container_config: None,
            })
            .await
            .unwrap();
    }
    drop(store);
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO scheduled_tasks (id, tenant, group_folder, chat_jid, prompt, schedule_type,
                     schedule_value, timezone, context_mode, missed_policy, next_run_ms, status, created_at)
                 VALUES (?1, 'default', ?2, ?3, 'tick', 'interval', ?4, 'UTC', 'isolated', 'skip', ?5,
                     'active', '2026-01-01T00:00:00.000Z')",
            )
            .unwrap();
        for i in 0..tasks {
            let g = i % groups;
            insert
                .execute(rusqlite::params![
                    format!("t{i}"),
                    format!("g{g}"),
                    format!("fake:g{g}"),
                    (period_us / 1000).to_string(),
                    (first_us + anchor_offset(i, tasks, period_us)) / 1000,
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Task `i`'s first slot, relative to the first one: spread evenly over a period, whole ms.
fn anchor_offset(i: usize, tasks: usize, period_us: i64) -> i64 {
    (i as i64 * (period_us / 1000) / tasks as i64) * 1000
}

/// Per window of slots (`BENCH_SERIES` ms): firings, p50/p99/max lateness (where stalls are).
fn print_series(samples: &[(i64, i64)], from_us: i64, window_ms: i64) {
    let mut by_sec: std::collections::BTreeMap<i64, Vec<i64>> = std::collections::BTreeMap::new();
    for &(slot, late) in samples {
        by_sec
            .entry((slot - from_us) / (window_ms.max(1) * 1000))
            .or_default()
            .push(late);
    }
    for (sec, mut late) in by_sec {
        late.sort_unstable();
        println!(
            "  window {sec:>4}: {:>5} firings, p50 {:>7.1} ms, p99 {:>7.1} ms, max {:>7.1} ms",
            late.len(),
            pct(&late, 0.5),
            pct(&late, 0.99),
            pct(&late, 1.0)
        );
    }
}

fn pct(sorted: &[i64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let tasks = env_usize("BENCH_TASKS", 100_000);
    let groups = env_usize("BENCH_GROUPS", 1_000);
    let spread_secs = env_usize("BENCH_SPREAD_SECS", 50);
    let measure_secs = env_usize("BENCH_SECS", 60);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let period_us = i64::try_from(spread_secs).unwrap() * 1_000_000;

    let dir = tempfile::tempdir().unwrap();
    let db = DataLayout::new(dir.path()).database();
    let set_up = Instant::now();
    // Slots start a few seconds out: time to start the daemon; the first second is warm-up.
    let first_us = (now_us() / 1000 + 4_000) * 1000;
    seed(&db, tasks, groups, first_us, period_us).await;
    println!(
        "scheduler bench: {tasks} interval tasks in {groups} groups, period {spread_secs} s \
         (≈{:.0} firings/s), {concurrency} concurrent runs, measuring {measure_secs} s \
         (set-up {:.1} s)",
        tasks as f64 / spread_secs as f64,
        set_up.elapsed().as_secs_f64()
    );

    let tally = Arc::new(Tally {
        anchor_us: (0..tasks)
            .map(|i| first_us + anchor_offset(i, tasks, period_us))
            .collect(),
        period_us,
        last_slot: (0..tasks).map(|_| AtomicI64::new(i64::MIN)).collect(),
        lateness_us: Mutex::new(Vec::with_capacity(tasks * 2)),
        duplicates: AtomicU64::new(0),
        measure_from_us: first_us + 1_000_000,
    });
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let executor = BenchExecutor {
        store: Arc::clone(&store),
        tally: Arc::clone(&tally),
        slots: Arc::new(Semaphore::new(concurrency)),
        groups: Arc::default(),
        queued: Arc::default(),
    };
    let scheduler = Scheduler::new(
        store,
        Arc::new(executor),
        Arc::new(SystemClock),
        SchedulerConfig::default().settings(),
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(Arc::clone(&scheduler).run(cancel.clone()));
    let rss_idle = status_kib("VmRSS:");
    let end_us = first_us + 1_000_000 + i64::try_from(measure_secs).unwrap() * 1_000_000;
    tokio::time::sleep(Duration::from_micros(
        u64::try_from(end_us - now_us()).unwrap_or(0),
    ))
    .await;
    let rss = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    cancel.cancel();
    running.await.unwrap();

    let samples = tally.lateness_us.lock().unwrap().clone();
    if let Some(window_ms) = std::env::var("BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        print_series(&samples, tally.measure_from_us, window_ms);
    }
    let mut late: Vec<i64> = samples.iter().map(|&(_, l)| l).collect();
    late.sort_unstable();
    let skipped: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM task_runs WHERE status = 'skipped'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!late.is_empty(), "nothing fired");
    println!(
        "  firings measured: {} ({:.0}/s); lateness p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms",
        late.len(),
        late.len() as f64 / measure_secs as f64,
        pct(&late, 0.50),
        pct(&late, 0.90),
        pct(&late, 0.99),
        pct(&late, 1.0)
    );
    println!(
        "  slots skipped (previous firing still running): {skipped}; duplicates: {}",
        tally.duplicates.load(Ordering::Relaxed)
    );
    println!(
        "  RSS: {:.1} MiB after start-up, {:.1} MiB at the end, peak (VmHWM) {:.1} MiB",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    assert_eq!(
        tally.duplicates.load(Ordering::Relaxed),
        0,
        "a slot fired twice"
    );
}
