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

use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;
use cambot_protocol::TenantId;
use cambot_testkit::standin::Script;
use cambot_testkit::standin::Standin;

#[path = "support/daemon_rig.rs"]
mod daemon_rig;

use daemon_rig::*;

/// The allocator the `cambot` binary runs with (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
