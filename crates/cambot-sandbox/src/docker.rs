//! Docker backend (placeholder until the bollard implementation lands).

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::backend::BackendReport;
use crate::backend::SandboxBackend;
use crate::backend::SandboxChild;
use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::plan::RunPlan;

#[derive(Debug)]
pub struct DockerBackend {
    _cfg: SandboxConfig,
}

impl DockerBackend {
    pub fn connect(cfg: SandboxConfig) -> Result<Self, SandboxError> {
        Ok(Self { _cfg: cfg })
    }

    pub async fn cleanup_orphans(&self) {}
}

impl SandboxBackend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn spawn(&self, _plan: &RunPlan) -> BoxFuture<'_, Result<SandboxChild, SandboxError>> {
        async {
            Err(SandboxError::Unavailable(
                "docker backend not built yet".into(),
            ))
        }
        .boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<BackendReport, SandboxError>> {
        async {
            Err(SandboxError::Unavailable(
                "docker backend not built yet".into(),
            ))
        }
        .boxed()
    }
}
