//! Workflow overhead: the time from a trigger to the agent's first model request at the
//! stand-in, for a workflow with one `agent` step (`Workflows::start`) and for the same agent
//! run triggered by a chat message. Both are cold runs (a new sandbox each time) on the real
//! daemon, bwrap, `cambot-runner` and gateway; the model is a no-op stand-in. The difference is
//! what a workflow step adds (stored run and step rows, the queue hand-off).
//!
//! `cargo build --release --bins && cargo bench -p cambot-agent --bench workflow`
//! (`BENCH_RUNS`, default 50).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use cambot_protocol::TenantId;

#[path = "support/daemon_rig.rs"]
mod daemon_rig;

use daemon_rig::*;

/// The allocator the `cambot` binary runs with (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const WORKFLOW: &str = r#"
name = "bench"
[[steps]]
id = "ask"
type = "agent"
group = "main"
prompt = "message"
"#;

/// Time from `trigger` to the model request it causes, in ms; then waits until the run is over.
async fn measure<F: std::future::Future<Output = Result<()>>>(
    rig: &Rig,
    trigger: F,
) -> Result<f64> {
    let before = rig.standin.request_count();
    let t0 = Instant::now();
    trigger.await?;
    tokio::time::timeout(
        Duration::from_secs(30),
        rig.standin.wait_for_requests(before + 1),
    )
    .await
    .context("no model request within 30 s")?;
    let at = recorded_at(&rig.standin, before).await?;
    wait_closed(rig).await?;
    Ok(at.duration_since(t0).as_secs_f64() * 1000.0)
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
    rt.block_on(async move {
        let rig = rig(1).await?;
        let tenant = TenantId::default_tenant();
        let wf = rig.daemon.workflows();
        wf.engine().add(&tenant, WORKFLOW).await?;
        let (mut message, mut workflow) = (Vec::new(), Vec::new());
        // Interleaved, so drift (caches, the disk) hits both alike; the first pair warms up.
        for n in 0..=runs {
            let m = measure(&rig, async {
                rig.channel
                    .inject(&tenant, "fake:main", "bench", &format!("message {n}"))
                    .await?;
                Ok(())
            })
            .await?;
            let w = measure(&rig, async {
                wf.start(&tenant, "bench", BTreeMap::new()).await?;
                Ok(())
            })
            .await?;
            if n > 0 {
                message.push(m);
                workflow.push(w);
            }
        }
        let m = report("message -> model request (cold)", message);
        let w = report("workflow agent step -> request", workflow);
        println!("added by a workflow step at p50: {:+.2} ms", w - m);
        rig.daemon.shutdown().await;
        Ok(())
    })
}
