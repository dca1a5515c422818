//! Picks the production agent runner and wires signals to shutdown.

use std::sync::Arc;

use anyhow::Result;
use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_agent::daemon::RunnerFactory;
use cambot_agent::model_config::resolve_model;
use cambot_agent::production::production_runner;
use tokio::signal::unix::SignalKind;
use tokio::signal::unix::signal;

/// The runner agents run under: sandboxed runs, built when the daemon starts (fails closed
/// when no sandbox backend works).
pub(crate) fn agent_runner(config: &Config) -> RunnerFactory {
    production_runner(config, Arc::new(|k: &str| std::env::var(k).ok()))
}

/// Which model agents would use, for `cambot doctor`.
pub(crate) fn model_check(config: &Config) -> Result<String> {
    let env = |k: &str| std::env::var(k).ok();
    let model = resolve_model(
        &config.model,
        &config.providers,
        &config.local_model,
        &config.data_dir,
        &env,
    )?;
    Ok(match model.local.as_ref().filter(|_| model.uses_local()) {
        Some(spec) => format!(
            "embedded local model {} (llama-server {})",
            spec.model_file.display(),
            spec.llama_server.display()
        ),
        None => format!(
            "provider {} ({}), model {}",
            model.choice.provider, model.choice.dialect, model.choice.model
        ),
    } + &format!(
        "; tenants may choose: {}",
        model.choices.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// Waits for SIGINT/SIGTERM (or for `until` to finish), then shuts the daemon down; a second
/// signal during the drain kills every live run.
pub(crate) async fn serve(
    daemon: Daemon,
    until: impl std::future::Future<Output = ()>,
) -> Result<bool> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = sigint.recv() => tracing::info!("SIGINT received"),
        _ = sigterm.recv() => tracing::info!("SIGTERM received"),
        () = until => {}
    }
    let router = Arc::clone(daemon.router());
    let shutdown = daemon.shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            drained = &mut shutdown => return Ok(drained),
            _ = sigint.recv() => {
                tracing::warn!("second signal: killing live runs");
                router.queue().kill_all().await;
            }
            _ = sigterm.recv() => {
                tracing::warn!("second signal: killing live runs");
                router.queue().kill_all().await;
            }
        }
    }
}
