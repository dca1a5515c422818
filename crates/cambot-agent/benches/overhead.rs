//! Orchestration overhead: from a message entering cambot (the channel hands it to the host) to
//! the first model request arriving at the upstream, through the real daemon, the real bwrap
//! sandbox, the real `cambot-runner` and the per-run gateway socket.
//!
//! - cold: every message starts a new sandbox (the previous run was closed);
//! - warm: every message is piped into a live run;
//! - baseline: the same HTTP request sent straight to the stand-in from here.
//!
//! Needs root, bwrap and the release binaries:
//! `cargo build --release --bins && cargo bench -p cambot-agent --bench overhead`
//! (`BENCH_RUNS`, default 50).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;
use cambot_agent::config::Config;
use cambot_agent::daemon::ChannelFactory;
use cambot_agent::daemon::Daemon;
use cambot_agent::production::production_runner;
use cambot_channels::Channel;
use cambot_protocol::TenantId;
use cambot_testkit::fake_channel::FakeChannel;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;
use cambot_testkit::standin::StandinHandle;

/// The allocator the `cambot` binary runs with (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .context("no target dir")?;
    for profile in ["release", "debug"] {
        let p = target.join(profile).join(name);
        if p.is_file() {
            if profile == "debug" {
                eprintln!(
                    "note: using the debug build of {name}: run `cargo build --release --bins` for real figures"
                );
            }
            return Ok(p);
        }
    }
    bail!("{name} is not built: run `cargo build --release --bins` first")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let p50 = percentile(&ms, 0.5);
    println!(
        "{label:<34} n={:<4} p50 {:>8.2} ms   p95 {:>8.2} ms   max {:>8.2} ms",
        ms.len(),
        p50,
        percentile(&ms, 0.95),
        ms[ms.len() - 1]
    );
    p50
}

struct Rig {
    daemon: Daemon,
    channel: Arc<FakeChannel>,
    standin: StandinHandle,
    _dir: tempfile::TempDir,
}

async fn rig(idle_timeout_ms: u64) -> Result<Rig> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let standin = Standin::anthropic()
        .fallback(Script::text("ok"))
        .start_tcp()
        .await?;
    let toml_text = format!(
        "[sandbox]\nbackend = \"bwrap\"\nrunner_path = \"{}\"\ninit_path = \"{}\"\n[router]\nidle_timeout_ms = {idle_timeout_ms}\n",
        bin("cambot-runner")?.display(),
        bin("cambot-sandbox-init")?.display()
    );
    let raw = toml::from_str(&toml_text)?;
    let cfg = Config::resolve(raw, None, Some(dir.path()), &|k| {
        (k == "TZ").then(|| "UTC".to_owned())
    })?;
    let base = standin.root_url();
    let env = move |k: &str| match k {
        "ANTHROPIC_API_KEY" => Some("k".to_owned()),
        "ANTHROPIC_BASE_URL" => Some(base.clone()),
        "ANTHROPIC_MODEL" => Some("m".to_owned()),
        _ => None,
    };
    let slot: Arc<Mutex<Option<Arc<FakeChannel>>>> = Arc::new(Mutex::new(None));
    let factory: ChannelFactory = {
        let slot = Arc::clone(&slot);
        Box::new(move |opts| {
            Box::pin(async move {
                let channel = FakeChannel::new(opts, "fake:");
                channel.connect().await?;
                if let Ok(mut s) = slot.lock() {
                    *s = Some(Arc::clone(&channel));
                }
                Ok(vec![channel as Arc<dyn Channel>])
            })
        })
    };
    let daemon = Daemon::start_with(&cfg, production_runner(&cfg, Arc::new(env)), factory).await?;
    let channel = slot
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .context("no channel")?;
    channel
        .register(&TenantId::default_tenant(), "fake:main", "main", None)
        .await?;
    Ok(Rig {
        daemon,
        channel,
        standin,
        _dir: dir,
    })
}

/// Sends one message and returns the time until its model request reached the stand-in.
async fn one(rig: &Rig, n: usize) -> Result<f64> {
    let before = rig.standin.request_count();
    let t0 = Instant::now();
    rig.channel
        .inject(
            &TenantId::default_tenant(),
            "fake:main",
            "bench",
            &format!("message {n}"),
        )
        .await?;
    tokio::time::timeout(
        Duration::from_secs(30),
        rig.standin.wait_for_requests(before + 1),
    )
    .await
    .context("no model request within 30 s")?;
    let at = recorded_at(&rig.standin, before).await?;
    let sent = rig.channel.wait_sent(n + 1, Duration::from_secs(30)).await;
    if sent.len() < n + 1 {
        bail!("reply {n} missing");
    }
    Ok(at.duration_since(t0).as_secs_f64() * 1000.0)
}

/// When request `index` reached the stand-in (its count can run a moment ahead of its log).
async fn recorded_at(standin: &StandinHandle, index: usize) -> Result<Instant> {
    for _ in 0..1000 {
        if let Some(r) = standin.request(index) {
            return Ok(r.at.into_std());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("request {index} was counted but never recorded")
}

async fn wait_closed(rig: &Rig) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rig.daemon.router().queue().is_idle() {
        if Instant::now() > deadline {
            bail!("the run did not close");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn baseline(runs: usize) -> Result<Vec<f64>> {
    let standin = Standin::anthropic()
        .fallback(Script::text("ok"))
        .start_tcp()
        .await?;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", standin.root_url());
    let body = serde_json::json!({"model": "m", "max_tokens": 16, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let before = standin.request_count();
        let t0 = Instant::now();
        let resp = client.post(&url).json(&body).send().await?;
        let _ = resp.bytes().await?;
        let at = recorded_at(&standin, before).await?;
        out.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn main() -> Result<()> {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!("orchestration overhead: message in -> first model request at the upstream ({runs} runs each)");
        let base = baseline(runs).await?;
        let base_p50 = report("baseline (direct HTTP to stand-in)", base);

        let cold = rig(1).await?;
        let mut cold_ms = Vec::with_capacity(runs);
        for n in 0..runs {
            wait_closed(&cold).await?;
            cold_ms.push(one(&cold, n).await?);
        }
        let cold_p50 = report("cold (new bwrap sandbox per message)", cold_ms);
        cold.daemon.shutdown().await;

        let warm = rig(600_000).await?;
        one(&warm, 0).await?; // starts the run
        let mut warm_ms = Vec::with_capacity(runs);
        for n in 1..=runs {
            warm_ms.push(one(&warm, n).await?);
        }
        let warm_p50 = report("warm (piped into the live run)", warm_ms);
        warm.daemon.shutdown().await;
        println!(
            "targets: warm p50 < 5 ms ({}), cold p50 < 30 ms ({}); baseline p50 {base_p50:.2} ms",
            if warm_p50 < 5.0 { "met" } else { "NOT met" },
            if cold_p50 < 30.0 { "met" } else { "NOT met" },
        );
        Ok(())
    })
}
