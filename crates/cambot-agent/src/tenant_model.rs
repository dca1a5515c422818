//! Which model a run uses: its tenant's provider (`cambot tenants update ID --provider NAME`)
//! when one is set, else the global choice. Read at every run start, so a change applies to the
//! tenant's next run without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use cambot_core::TenantStore;
use cambot_protocol::DataLayout;
use cambot_protocol::ModelChoice;
use cambot_protocol::TenantId;
use cambot_protocol::ToolPolicy;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_run::RunStartError;
use crate::local_model::LocalModelServer;
use crate::model_config::LOCAL_PROVIDER;
use crate::model_config::LocalModelSpec;

/// Each tenant's model: what a run start asks.
pub struct TenantModels {
    tenants: Arc<dyn TenantStore>,
    /// Every provider a tenant may choose (see `ResolvedModel::choices`).
    choices: BTreeMap<String, ModelChoice>,
    /// The configured tool policy (`[agent] tools`); runs on the embedded model get none.
    tools: ToolPolicy,
    /// Starts the embedded model the first time a tenant's run needs it (when it is not the
    /// global choice, the daemon did not start it).
    local: Option<LocalModelStarter>,
}

impl std::fmt::Debug for TenantModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantModels")
            .field("choices", &self.choices.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TenantModels {
    pub fn new(
        tenants: Arc<dyn TenantStore>,
        choices: BTreeMap<String, ModelChoice>,
        tools: ToolPolicy,
    ) -> Self {
        Self {
            tenants,
            choices,
            tools,
            local: None,
        }
    }

    /// Starts the embedded model on the first run of a tenant that chose it.
    #[must_use]
    pub fn with_local_starter(mut self, starter: LocalModelStarter) -> Self {
        self.local = Some(starter);
        self
    }

    /// The tenant's model and tool policy, or `None` when it uses the global choice. A provider
    /// that is no longer configured, or a tenant row that cannot be read, refuses the run: it
    /// never falls back to another provider (and its key).
    pub async fn for_tenant(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(ModelChoice, ToolPolicy)>, RunStartError> {
        let row = self.tenants.tenant(tenant).await.map_err(|e| {
            RunStartError::Refused(format!("cannot read the provider of tenant {tenant}: {e}"))
        })?;
        let Some(name) = row.and_then(|r| r.provider) else {
            return Ok(None);
        };
        let choice = self.choices.get(&name).cloned().ok_or_else(|| {
            RunStartError::Refused(format!(
                "tenant {tenant} uses provider {name:?}, which is not configured (known: {}); \
                 `cambot tenants update {tenant} --provider NAME` or --clear-provider",
                self.choices.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if choice.provider == LOCAL_PROVIDER {
            if let Some(starter) = &self.local {
                starter.ensure_started().await?;
            }
            // A 135M-parameter model cannot drive tools (see `production`).
            return Ok(Some((choice, ToolPolicy::None)));
        }
        Ok(Some((choice, self.tools)))
    }
}

/// What starting the embedded model needs, kept until a tenant's run asks for it.
pub struct LocalModelStarter {
    backend: Arc<dyn SandboxBackend>,
    sandbox: SandboxConfig,
    layout: DataLayout,
    spec: LocalModelSpec,
    require_pinned: bool,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Set once the server answered; runs waiting meanwhile queue on the lock.
    started: tokio::sync::Mutex<bool>,
}

impl LocalModelStarter {
    /// The arguments of [`LocalModelServer::start`], used on first need.
    pub fn new(
        backend: Arc<dyn SandboxBackend>,
        sandbox: SandboxConfig,
        layout: DataLayout,
        spec: LocalModelSpec,
        require_pinned: bool,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            backend,
            sandbox,
            layout,
            spec,
            require_pinned,
            tasks,
            cancel,
            started: tokio::sync::Mutex::new(false),
        }
    }

    async fn ensure_started(&self) -> Result<(), RunStartError> {
        let mut started = self.started.lock().await;
        if *started {
            return Ok(());
        }
        tracing::info!("a tenant chose the embedded local model: starting it");
        LocalModelServer::start(
            Arc::clone(&self.backend),
            &self.sandbox,
            &self.layout,
            &self.spec,
            self.require_pinned,
            &self.tasks,
            self.cancel.clone(),
        )
        .await
        .map_err(RunStartError::LocalModel)?;
        *started = true;
        Ok(())
    }
}
