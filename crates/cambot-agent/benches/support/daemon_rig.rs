//! The daemon rig the end-to-end benches share (`overhead`, `workflow`): the release binaries,
//! a daemon on bwrap with a fake channel and a no-op stand-in model, and the percentile report.
#![allow(dead_code)]

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

pub(crate) fn bin(name: &str) -> Result<PathBuf> {
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

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn report(label: &str, mut ms: Vec<f64>) -> f64 {
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

pub(crate) struct Rig {
    pub(crate) daemon: Daemon,
    pub(crate) channel: Arc<FakeChannel>,
    pub(crate) standin: StandinHandle,
    _dir: tempfile::TempDir,
}

pub(crate) async fn rig(idle_timeout_ms: u64) -> Result<Rig> {
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

/// When request `index` reached the stand-in (its count can run a moment ahead of its log).
pub(crate) async fn recorded_at(standin: &StandinHandle, index: usize) -> Result<Instant> {
    for _ in 0..1000 {
        if let Some(r) = standin.request(index) {
            return Ok(r.at.into_std());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("request {index} was counted but never recorded")
}

pub(crate) async fn wait_closed(rig: &Rig) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rig.daemon.router().queue().is_idle() {
        if Instant::now() > deadline {
            bail!("the run did not close");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
