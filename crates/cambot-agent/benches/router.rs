//! Router throughput and latency through the real daemon: SQLite file store (WAL, group
//! commit), router, group queue, a no-op runner, 1,000 groups. Printed side by side with a
//! baseline measured in the same run: raw SQLite inserts of the same messages, in batched
//! transactions, with no router around them.
//!
//! Phases:
//! 1. baseline: the messages inserted into a bare SQLite file (WAL, `synchronous = NORMAL`, the
//!    same unique keys) in transactions of 256: the disk's and SQLite's ceiling here;
//! 2. sustained: producers inject back to back, each waiting until its message is stored;
//!    messages/second over the time from the first injection to the last dispatch;
//! 3. paced: messages offered at a fixed rate (default 5,000 msg/s) in an open loop; latency from
//!    "stored" (the host acknowledged the message) to "dispatched" (the runner got it in a
//!    prompt, starting a run or piped into a live one), p50/p99.
//!
//! `cargo bench -p cambot-agent --bench router` (env: BENCH_MESSAGES, default 100,000;
//! BENCH_GROUPS, 1,000; BENCH_RATE, 5,000; BENCH_PRODUCERS, 8).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_channels::Channel;
use cambot_protocol::TenantId;
use cambot_testkit::fake_channel::FakeChannel;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;

/// The allocator the `cambot` binary runs with (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds since `origin`, one slot per message (0 = not yet): lock-free, so measuring adds
/// no contention of its own.
struct Clock {
    origin: Instant,
    injected: Vec<AtomicU64>,
    stored: Vec<AtomicU64>,
    dispatched: Vec<AtomicU64>,
    dispatched_count: AtomicU64,
    duplicates: AtomicU64,
}

impl Clock {
    fn new(messages: usize) -> Self {
        let slots = || (0..messages).map(|_| AtomicU64::new(0)).collect();
        Self {
            origin: Instant::now(),
            injected: slots(),
            stored: slots(),
            dispatched: slots(),
            dispatched_count: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap()
            .max(1)
    }

    /// Per message, `to - from`, sorted. A message dispatched before its injection returned
    /// (routed inside the host's store-and-route call) counts as 0.
    fn spans(&self, from: &[AtomicU64], to: &[AtomicU64], total: usize) -> Vec<Duration> {
        let mut spans: Vec<Duration> = (0..total)
            .map(|i| {
                let (a, b) = (
                    from[i].load(Ordering::Relaxed),
                    to[i].load(Ordering::Relaxed),
                );
                Duration::from_nanos(b.saturating_sub(a))
            })
            .collect();
        spans.sort();
        spans
    }
}

fn ids_in(prompt: &str) -> impl Iterator<Item = u64> + '_ {
    prompt
        .split("</message>")
        .filter_map(|part| part.rsplit('>').next())
        .filter_map(|id| id.strip_prefix('n'))
        .filter_map(|n| n.parse().ok())
}

/// The baseline: the same messages inserted into a bare SQLite file in transactions of 256.
fn baseline(messages: usize, groups: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE messages (seq INTEGER NOT NULL, tenant TEXT NOT NULL, chat_jid TEXT NOT NULL,
             id TEXT NOT NULL, sender TEXT NOT NULL, sender_name TEXT NOT NULL,
             content TEXT NOT NULL, timestamp TEXT NOT NULL,
             UNIQUE (tenant, chat_jid, id));
         CREATE UNIQUE INDEX messages_chat_seq ON messages (tenant, chat_jid, seq);",
    )
    .unwrap();
    let start = Instant::now();
    let mut conn = conn;
    for batch in (0..messages).collect::<Vec<_>>().chunks(256) {
        let tx = conn.transaction().unwrap();
        for &n in batch {
            tx.prepare_cached(
                "INSERT INTO messages VALUES (?1, 'default', ?2, ?3, 'u', 'u', ?3, '2026-12-06T00:00:00.000Z')",
            )
            .unwrap()
            .execute(rusqlite::params![
                n as i64,
                format!("fake:g{}", n % groups),
                format!("n{n}")
            ])
            .unwrap();
        }
        tx.commit().unwrap();
    }
    messages as f64 / start.elapsed().as_secs_f64()
}

struct Phase {
    throughput: f64,
    injected_to_dispatched: Vec<Duration>,
    stored_to_dispatched: Vec<Duration>,
}

async fn phase(messages: usize, groups: usize, rate: Option<f64>) -> Phase {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(Clock::new(messages));
    let c = Arc::clone(&clock);
    let runner = ScriptedRunner::quiet(move |_, prompt| {
        let now = c.stamp();
        for id in ids_in(prompt) {
            if c.dispatched[id as usize].swap(now, Ordering::Relaxed) == 0 {
                c.dispatched_count.fetch_add(1, Ordering::Relaxed);
            } else {
                c.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        Turn::silent()
    });
    // One slot per group: this measures the orchestration path (store, router, queue, piping),
    // not the slot policy (which the queue tests cover).
    let raw = toml::from_str(&format!(
        "max_concurrent_runs = {groups}\n[router]\nidle_timeout_ms = 60000\nrecovery_sweep_secs = 0\n"
    ))
    .unwrap();
    let cfg = Config::resolve(raw, None, Some(dir.path()), &|k| {
        (k == "TZ").then(|| "UTC".into())
    })
    .unwrap();
    let slot = Arc::new(Mutex::new(None));
    let s2 = Arc::clone(&slot);
    let daemon = Daemon::start(
        &cfg,
        runner.clone(),
        Box::new(move |opts| {
            Box::pin(async move {
                let ch = FakeChannel::new(opts, "fake:");
                ch.connect().await?;
                *s2.lock().unwrap() = Some(Arc::clone(&ch));
                Ok(vec![ch as Arc<dyn Channel>])
            })
        }),
    )
    .await
    .unwrap();
    let channel = slot.lock().unwrap().clone().unwrap();
    let tenant = TenantId::default_tenant();
    for g in 0..groups {
        let (jid, folder) = (format!("fake:g{g}"), format!("g{g}"));
        channel
            .register(&tenant, &jid, &folder, Some(false))
            .await
            .unwrap();
    }
    let injector = Injector {
        channel,
        clock: Arc::clone(&clock),
        tenant,
        groups,
    };
    let start = Instant::now();
    let total = match rate {
        None => saturate(&injector, messages).await,
        Some(rate) => offer(&injector, messages, start, rate).await,
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while clock.dispatched_count.load(Ordering::Relaxed) < total as u64 {
        assert!(
            Instant::now() < deadline,
            "not every message was dispatched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        clock.duplicates.load(Ordering::Relaxed),
        0,
        "a message was dispatched twice"
    );
    let start_ns = u64::try_from(start.duration_since(clock.origin).as_nanos()).unwrap();
    let last_ns = clock.dispatched[..total]
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .max()
        .unwrap();
    let throughput = total as f64 / Duration::from_nanos(last_ns - start_ns).as_secs_f64();
    daemon.shutdown().await;
    Phase {
        throughput,
        injected_to_dispatched: clock.spans(&clock.injected, &clock.dispatched, total),
        stored_to_dispatched: clock.spans(&clock.stored, &clock.dispatched, total),
    }
}

/// What every injection needs; cloned into each task that injects.
#[derive(Clone)]
struct Injector {
    channel: Arc<FakeChannel>,
    clock: Arc<Clock>,
    tenant: TenantId,
    groups: usize,
}

impl Injector {
    async fn inject(&self, n: usize) {
        self.clock.injected[n].store(self.clock.stamp(), Ordering::Relaxed);
        let id = format!("n{n}");
        let jid = format!("fake:g{}", n % self.groups);
        self.channel
            .inject_with_id(&self.tenant, &jid, &id, "u", &id)
            .await
            .unwrap();
        self.clock.stored[n].store(self.clock.stamp(), Ordering::Relaxed);
    }
}

/// Producers (`BENCH_PRODUCERS`, like channels that each hand over one message at a time)
/// inject back to back, each waiting until its message is stored.
async fn saturate(injector: &Injector, messages: usize) -> usize {
    let producers = env_usize("BENCH_PRODUCERS", 8);
    let per = messages / producers;
    let mut handles = Vec::new();
    for p in 0..producers {
        let injector = injector.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                injector.inject(i * producers + p).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    per * producers
}

/// Offered load: message `n` is injected at `start + n / rate` whatever became of the messages
/// before it (an open loop, as many independent chats send); a closed loop would stop offering
/// load whenever the system slows down and hide the queueing this phase measures.
async fn offer(injector: &Injector, messages: usize, start: Instant, rate: f64) -> usize {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut in_flight = tokio::task::JoinSet::new();
    for n in 0..messages {
        tokio::time::sleep_until((start + interval.mul_f64(n as f64)).into()).await;
        let injector = injector.clone();
        in_flight.spawn(async move { injector.inject(n).await });
        while let Some(done) = in_flight.try_join_next() {
            done.unwrap();
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done.unwrap();
    }
    messages
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e3
}

/// The hypervisor's share of this VM's CPU time (steal, from `/proc/stat`) over `f`, in %.
fn with_steal<T>(f: impl FnOnce() -> T) -> (T, Option<f64>) {
    fn ticks() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let t: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        Some((*t.get(7)?, t.iter().take(8).sum()))
    }
    let before = ticks();
    let out = f();
    let steal = match (before, ticks()) {
        (Some((s0, a0)), Some((s1, a1))) if a1 > a0 => {
            Some((s1 - s0) as f64 * 100.0 / (a1 - a0) as f64)
        }
        _ => None,
    };
    (out, steal)
}

fn steal_note(steal: Option<f64>) -> String {
    steal.map_or_else(String::new, |s| format!(" (steal {s:.1} %)"))
}

fn main() {
    let messages = env_usize("BENCH_MESSAGES", 100_000);
    let groups = env_usize("BENCH_GROUPS", 1_000);
    let rate = env_usize("BENCH_RATE", 5_000) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("router bench: {messages} messages across {groups} groups, no-op runner");
    let (raw, steal) = with_steal(|| baseline(messages, groups));
    println!(
        "baseline, raw SQLite inserts in transactions of 256: {raw:.0} msg/s{}",
        steal_note(steal)
    );
    let (sustained, steal) = with_steal(|| rt.block_on(phase(messages, groups, None)));
    println!(
        "sustained ({} producers, closed loop): {:.0} msg/s = {:.2} x baseline; stored-to-dispatched p50 {:.2} ms, p99 {:.2} ms{}",
        env_usize("BENCH_PRODUCERS", 8),
        sustained.throughput,
        sustained.throughput / raw,
        pct(&sustained.stored_to_dispatched, 0.50),
        pct(&sustained.stored_to_dispatched, 0.99),
        steal_note(steal)
    );
    let (paced, steal) = with_steal(|| rt.block_on(phase(messages, groups, Some(rate))));
    println!(
        "paced at {rate:.0} msg/s offered: {:.0} msg/s delivered; stored-to-dispatched p50 {:.2} ms, p99 {:.2} ms; injected-to-dispatched p99 {:.2} ms{}",
        paced.throughput,
        pct(&paced.stored_to_dispatched, 0.50),
        pct(&paced.stored_to_dispatched, 0.99),
        pct(&paced.injected_to_dispatched, 0.99),
        steal_note(steal)
    );
}
