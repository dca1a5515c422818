//! Router throughput and latency: at least 100,000 messages across 1,000 groups through the
//! real store (SQLite file, WAL), router and group queue, with a no-op runner.
//!
//! Two phases, both printed:
//! 1. saturation: producers inject as fast as the host accepts; messages/second = messages over
//!    the time from the first ingest to the last dispatch;
//! 2. paced: the same volume offered at a fixed rate (default 20,000 msg/s) in an open loop: each
//!    message is injected at its due time, whether or not the ones before it are stored yet.
//!
//! Both print ingest-to-dispatch latency p50/p99 per message (dispatch = the runner receiving the
//! message in a turn's prompt, whether it started a run or was piped into a live one), and the
//! share of the VM's CPU time the hypervisor took meanwhile (steal, from `/proc/stat`).
//!
//! `cargo bench -p cambot-agent --bench router` (env: BENCH_MESSAGES, BENCH_GROUPS, BENCH_RATE,
//! BENCH_PRODUCERS; BENCH_DEBUG=1 prints the five slowest messages of each phase and, per 100 ms
//! of ingest time, how many messages took over 5 ms, and the same for ingest-to-ack (until the
//! host has stored and routed the message); BENCH_PERF_CTL=<fifo> enables and disables
//! `perf record --control=fifo:<fifo>` around the paced phase only). BENCH_DEBUG=1 also prints
//! the CPU time each thread (by name) spent per message in each phase.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
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

/// Nanoseconds since `origin`, one slot per message id (0 = not yet): lock-free, so the
/// measuring adds no contention of its own.
struct Clock {
    origin: Instant,
    ingested: Vec<AtomicU64>,
    /// When the host returned from storing (and routing) the message.
    acked: Vec<AtomicU64>,
    dispatched: Vec<AtomicU64>,
    dispatched_count: AtomicU64,
    duplicates: AtomicU64,
}

impl Clock {
    /// Nanoseconds from `from[i]` to `to[i]` (0 when `to` comes first or is missing).
    fn span(from: &[AtomicU64], to: &[AtomicU64], i: usize) -> u64 {
        to[i]
            .load(Ordering::Relaxed)
            .saturating_sub(from[i].load(Ordering::Relaxed))
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap()
            .max(1)
    }
}

fn ids_in(prompt: &str) -> impl Iterator<Item = u64> + '_ {
    prompt
        .split("</message>")
        .filter_map(|part| part.rsplit('>').next())
        .filter_map(|id| id.strip_prefix('n'))
        .filter_map(|n| n.parse().ok())
}

async fn phase(messages: usize, groups: usize, rate: Option<f64>) -> (f64, Vec<Duration>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(Clock {
        origin: Instant::now(),
        ingested: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        dispatched: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        dispatched_count: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
    });
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
        channel
            .register(
                &tenant,
                &format!("fake:g{g}"),
                &format!("g{g}"),
                Some(false),
            )
            .await
            .unwrap();
    }
    let injector = Injector {
        channel,
        clock: Arc::clone(&clock),
        tenant,
        groups,
    };
    let perf_ctl = |cmd: &str| {
        if rate.is_some()
            && let Some(f) = std::env::var_os("BENCH_PERF_CTL")
        {
            std::fs::write(f, cmd).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    perf_ctl("enable\n");
    let cpu0 = cpu_by_thread();
    let ticks0 = vm_ticks();
    let start = Instant::now();
    let total = match rate {
        None => saturate(&injector, messages).await,
        Some(rate) => offer(&injector, messages, start, rate).await,
    };
    let ingest_done = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while clock.dispatched_count.load(Ordering::Relaxed) < total as u64 {
        assert!(
            Instant::now() < deadline,
            "not every message was dispatched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    perf_ctl("disable\n");
    let cpu1 = cpu_by_thread();
    let ticks1 = vm_ticks();
    // The hypervisor's share says how much of a slow run is the VM's: at 20k msg/s the work needs
    // about one of the two cores, so a few % of steal taken at the wrong moments shows in p99.
    if let (Some((steal0, all0)), Some((steal1, all1))) = (ticks0, ticks1)
        && all1 > all0
    {
        println!(
            "  steal time (the hypervisor's share of this VM's CPU time) while messages flowed: {:.1} %",
            (steal1 - steal0) as f64 * 100.0 / (all1 - all0) as f64
        );
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
    let last = Duration::from_nanos(last_ns - start_ns);
    let throughput = total as f64 / last.as_secs_f64();
    let latency_ns: Vec<u64> = (0..total)
        .map(|i| Clock::span(&clock.ingested, &clock.dispatched, i))
        .collect();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let mut spent: Vec<(String, u64)> = cpu1
            .iter()
            .map(|(name, ns)| {
                (
                    name.clone(),
                    ns.saturating_sub(cpu0.get(name).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, ns)| *ns > 0)
            .collect();
        spent.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
        let all: u64 = spent.iter().map(|(_, ns)| ns).sum();
        let per_thread: Vec<String> = spent
            .iter()
            .map(|(name, ns)| format!("{name} {:.1}", *ns as f64 / total as f64 / 1000.0))
            .collect();
        println!(
            "  CPU per message (µs): {:.1} = {}",
            all as f64 / total as f64 / 1000.0,
            per_thread.join(", ")
        );
        // Each group's first message starts its run; the rest are piped into a live one.
        let mut after_starts: Vec<u64> = latency_ns.get(groups..).unwrap_or_default().to_vec();
        after_starts.sort_unstable();
        if let Some(p99) = after_starts.get(after_starts.len() * 99 / 100) {
            println!(
                "  p99 without each group's first message: {:.2} ms",
                *p99 as f64 / 1e6
            );
        }
        // Where in time the slow messages are: per 100 ms of ingest time, how many took > 5 ms.
        let mut windows: std::collections::BTreeMap<u64, (usize, u64)> = Default::default();
        for (i, lat) in latency_ns.iter().enumerate() {
            let s = clock.ingested[i]
                .load(Ordering::Relaxed)
                .saturating_sub(start_ns);
            if *lat > 5_000_000 {
                let w = windows.entry(s / 100_000_000).or_default();
                w.0 += 1;
                w.1 = w.1.max(*lat);
            }
        }
        let line: Vec<String> = windows
            .iter()
            .map(|(w, (n, max))| format!("{}ms:{n}/{:.0}", w * 100, *max as f64 / 1e6))
            .collect();
        println!(
            "  over 5 ms, per 100 ms of ingest (count/max ms): {}",
            line.join(" ")
        );
        // The start burst in detail: per 10 ms of the first 200 ms, messages over 5 ms among
        // each group's first message (run starts) and among the rest.
        let mut fine: std::collections::BTreeMap<u64, (usize, usize, usize)> = Default::default();
        for (i, lat) in latency_ns.iter().enumerate() {
            let s = clock.ingested[i]
                .load(Ordering::Relaxed)
                .saturating_sub(start_ns);
            if s < 200_000_000 {
                let w = fine.entry(s / 10_000_000).or_default();
                w.0 += 1;
                if *lat > 5_000_000 {
                    if i < groups {
                        w.1 += 1;
                    } else {
                        w.2 += 1;
                    }
                }
            }
        }
        let line: Vec<String> = fine
            .iter()
            .map(|(w, (n, first, rest))| format!("{}:{n}/{first}/{rest}", w * 10))
            .collect();
        println!(
            "  first 200 ms per 10 ms (messages/starts over 5 ms/others over 5 ms): {}",
            line.join(" ")
        );
        // For the run starts: how long storing took (ingest to ack) and starting (ack to
        // dispatch).
        let starts = groups.min(total);
        let mut stored: Vec<u64> = (0..starts)
            .map(|i| Clock::span(&clock.ingested, &clock.acked, i))
            .collect();
        let mut started: Vec<u64> = (0..starts)
            .map(|i| Clock::span(&clock.acked, &clock.dispatched, i))
            .collect();
        stored.sort_unstable();
        started.sort_unstable();
        if starts > 0 {
            let q = |v: &[u64], p: usize| v[(v.len() - 1) * p / 100] as f64 / 1e6;
            println!(
                "  run starts: ingest to ack p50 {:.2} p90 {:.2} max {:.2} ms; ack to dispatch p50 {:.2} p90 {:.2} max {:.2} ms",
                q(&stored, 50),
                q(&stored, 90),
                q(&stored, 100),
                q(&started, 50),
                q(&started, 90),
                q(&started, 100)
            );
        }
        // Per 100 ms again: how long the host took to store and route (the channel's wait).
        let mut acks: Vec<u64> = (0..total)
            .map(|i| Clock::span(&clock.ingested, &clock.acked, i))
            .collect();
        let slow_acks: Vec<String> = {
            let mut w: std::collections::BTreeMap<u64, (usize, u64)> = Default::default();
            for (i, a) in acks.iter().enumerate() {
                if *a > 5_000_000 {
                    let s = clock.ingested[i]
                        .load(Ordering::Relaxed)
                        .saturating_sub(start_ns);
                    let e = w.entry(s / 100_000_000).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(*a);
                }
            }
            w.iter()
                .map(|(w, (n, max))| format!("{}ms:{n}/{:.0}", w * 100, *max as f64 / 1e6))
                .collect()
        };
        acks.sort_unstable();
        println!(
            "  ingest-to-ack p50 {:.2} ms, p99 {:.2} ms; acks over 5 ms: {}",
            acks[acks.len() / 2] as f64 / 1e6,
            acks[acks.len() * 99 / 100] as f64 / 1e6,
            slow_acks.join(" ")
        );
        let mut worst: Vec<(u64, usize)> = latency_ns.iter().copied().zip(0..).collect();
        worst.sort();
        for (lat, i) in worst.iter().rev().take(5) {
            let s = clock.ingested[*i].load(Ordering::Relaxed);
            println!(
                "  worst: message {i} (group {}) ingested at {:.1} ms: {:.1} ms",
                i % groups,
                (s.saturating_sub(start_ns)) as f64 / 1e6,
                *lat as f64 / 1e6
            );
        }
    }
    let mut latencies: Vec<Duration> = latency_ns.into_iter().map(Duration::from_nanos).collect();
    latencies.sort();
    let rss = rss_kib();
    println!(
        "  (ingest finished after {:.2} s, last dispatch after {:.2} s)",
        ingest_done.as_secs_f64(),
        last.as_secs_f64()
    );
    daemon.shutdown().await;
    (throughput, latencies, rss)
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
    /// Records now as message `n`'s ingest time.
    fn stamp(&self, n: usize) {
        self.clock.ingested[n].store(self.clock.stamp(), Ordering::Relaxed);
    }

    /// Hands message `n` to its group's chat and waits until it is stored.
    async fn inject(&self, n: usize) {
        let g = n % self.groups;
        let id = format!("n{n}");
        self.channel
            .inject_with_id(&self.tenant, &format!("fake:g{g}"), &id, "u", &id)
            .await
            .unwrap();
        self.clock.acked[n].store(self.clock.stamp(), Ordering::Relaxed);
    }
}

/// Saturation: `BENCH_PRODUCERS` producers (default 8, like channels that each hand over one
/// message at a time) inject back to back, each waiting until its message is stored. Returns
/// how many messages were injected.
async fn saturate(injector: &Injector, messages: usize) -> usize {
    let producers = env_usize("BENCH_PRODUCERS", 8);
    let per = messages / producers;
    let mut handles = Vec::new();
    for p in 0..producers {
        let injector = injector.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let n = i * producers + p;
                injector.stamp(n);
                injector.inject(n).await;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    per * producers
}

/// Offered load: message `n` is injected at `start + n / rate` whatever became of the messages
/// before it (an open loop, as 1,000 independent chats send). A closed loop of a few producers
/// would stop offering load whenever the system slows down, and hide exactly the queueing this
/// phase is there to measure.
async fn offer(injector: &Injector, messages: usize, start: Instant, rate: f64) -> usize {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut in_flight = tokio::task::JoinSet::new();
    for n in 0..messages {
        tokio::time::sleep_until((start + interval.mul_f64(n as f64)).into()).await;
        // Stamped before the task is spawned: time the runtime takes to start it counts.
        injector.stamp(n);
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

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn settle_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// The machine's steal and total CPU ticks (`/proc/stat`'s first line), if readable.
fn vm_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    Some((*ticks.get(7)?, ticks.iter().take(8).sum()))
}

/// Nanoseconds each thread name has run (`/proc/self/task/*/schedstat`), summed over threads
/// with the same name.
fn cpu_by_thread() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ran: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        *by_name.entry(name.trim().to_owned()).or_insert(0) += ran;
    }
    by_name
}

fn main() {
    let messages = env_usize("BENCH_MESSAGES", 100_000);
    let groups = env_usize("BENCH_GROUPS", 1_000);
    let rate = env_usize("BENCH_RATE", 20_000) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "router bench: {messages} messages across {groups} groups, SQLite file store ({}), no-op runner",
        if std::env::var_os("BENCH_NO_JOURNAL").is_some() {
            "no ingest journal"
        } else {
            "ingest journal"
        }
    );
    let (tput, lat, rss) = rt.block_on(phase(messages, groups, None));
    println!(
        "saturation: {:.0} messages/s; ingest-to-dispatch p50 {:.2} ms, p99 {:.2} ms (queueing included); RSS {} MiB",
        tput,
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        rss / 1024
    );
    // The first phase leaves ~100 MB of dirty file pages behind; let the kernel write them
    // back now, or its writeback throttles the second phase's first seconds.
    settle_disk();
    let (tput, lat, rss) = rt.block_on(phase(messages, groups, Some(rate)));
    println!(
        "paced at {:.0} msg/s offered: {:.0} messages/s delivered; ingest-to-dispatch p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; RSS {} MiB",
        rate,
        tput,
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        rss / 1024
    );
}
