//! Picks the production agent runner and wires signals to shutdown.

use std::sync::Arc;

use anyhow::Result;
use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_agent::runner::AgentRunner;
use tokio::signal::unix::SignalKind;
use tokio::signal::unix::signal;

/// The runner agents run under: the sandboxed runner.
pub(crate) fn agent_runner(_config: &Config) -> Result<Arc<dyn AgentRunner>> {
    anyhow::bail!(
        "no agent runner is available in this build yet (the sandboxed runner lands with the sandbox issue); refusing to run agents"
    )
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
