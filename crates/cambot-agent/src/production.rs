//! The runner `cambot run` and `cambot chat` use: sandboxed runs, the configured (or embedded
//! local) model behind the host gateway. Fails closed: no sandbox backend, no agents.

use std::sync::Arc;

use cambot_gateway::Gateway;
use cambot_sandbox::SandboxConfig;

use crate::agent_run::AgentRunner;
use crate::agent_run::RunStartError;
use crate::config::Config;
use crate::daemon::RunnerContext;
use crate::daemon::RunnerFactory;
use crate::local_model::LocalModelServer;
use crate::model_config::resolve_model;
use crate::sandboxed::RunnerSettings;
use crate::sandboxed::SandboxedRunner;
use crate::tenant_model::LocalModelStarter;
use crate::tenant_model::TenantModels;
use crate::vault::DaemonVault;

/// Reads an environment variable (the process environment in production, a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds the production runner when the daemon starts. `env_lookup` reads the provider
/// variables (`ANTHROPIC_API_KEY`...): the process environment in production.
pub fn production_runner(config: &Config, env_lookup: EnvLookup) -> RunnerFactory {
    let config = config.clone();
    Box::new(move |ctx: RunnerContext| {
        Box::pin(async move {
            let runner: Arc<dyn AgentRunner> =
                Arc::new(build_sandboxed_runner(&config, &ctx, env_lookup.as_ref()).await?);
            Ok(runner)
        })
    })
}

/// The runner [`production_runner`] builds, for callers that want its gateway (tests read its
/// connection counters).
pub async fn build_sandboxed_runner(
    config: &Config,
    ctx: &RunnerContext,
    env_lookup: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> Result<SandboxedRunner, RunStartError> {
    let model = resolve_model(
        &config.model,
        &config.providers,
        &config.local_model,
        &config.data_dir,
        env_lookup,
    )
    .map_err(RunStartError::Model)?;
    let sandbox: &SandboxConfig = &config.sandbox;
    let backend = cambot_sandbox::select_backend(sandbox)
        .await
        .map_err(RunStartError::Backend)?;
    tracing::info!(
        backend = backend.name(),
        provider = %model.choice.provider,
        model = %model.choice.model,
        "agents run sandboxed"
    );
    let configured_tools = config.agent.tools;
    let uses_local = model.uses_local();
    let mut tenant_models = TenantModels::new(
        Arc::clone(&ctx.store) as Arc<dyn cambot_core::TenantStore>,
        model.choices.clone(),
        configured_tools,
    );
    if let Some(spec) = model.local.as_ref().filter(|_| uses_local) {
        LocalModelServer::start(
            Arc::clone(&backend),
            sandbox,
            &ctx.layout,
            spec,
            config.model.air_gapped,
            &ctx.background,
            ctx.cancel.clone(),
        )
        .await
        .map_err(RunStartError::LocalModel)?;
    } else if let Some(spec) = &model.local {
        tenant_models = tenant_models.with_local_starter(LocalModelStarter::new(
            Arc::clone(&backend),
            sandbox.clone(),
            ctx.layout.clone(),
            spec.clone(),
            config.model.air_gapped,
            ctx.background.clone(),
            ctx.cancel.clone(),
        ));
    }
    // One vault per daemon: the one it opened at start (in use, or needed by the web channel),
    // else one opened on first need from the same key location.
    let secrets: Arc<dyn cambot_gateway::TenantSecrets> = match &ctx.vault {
        Some(vault) => Arc::clone(vault) as Arc<dyn cambot_gateway::TenantSecrets>,
        None => {
            let key_location = match &config.master_key {
                Some(location) => location.clone(),
                None => {
                    crate::vault::master_key::locate(env_lookup, nix::unistd::geteuid().as_raw())
                        .map_err(RunStartError::Vault)?
                }
            };
            Arc::new(
                DaemonVault::open(
                    Arc::clone(&ctx.store) as Arc<dyn cambot_core::VaultStore>,
                    key_location,
                    &config.data_dir,
                )
                .await
                .map_err(RunStartError::Vault)?,
            )
        }
    };
    let policy = config.model.gateway_policy();
    let mut gateway =
        Gateway::builder(Arc::clone(&ctx.ipc), model.upstreams, policy).secrets(secrets);
    for (tenant, rules) in &config.fetch_credentials {
        gateway = gateway.fetch_credentials(tenant.clone(), rules.clone());
    }
    let gateway = gateway.build().map_err(RunStartError::Gateway)?;
    Ok(SandboxedRunner::new(
        backend,
        sandbox.clone(),
        ctx.layout.clone(),
        gateway,
        RunnerSettings {
            assistant_name: config.assistant_name.clone(),
            timezone: config.timezone.clone(),
            model: model.choice,
            // A 135M-parameter model cannot drive tools, and their schemas would fill its
            // context: the embedded model chats.
            tools: if uses_local {
                cambot_protocol::ToolPolicy::None
            } else {
                config.agent.tools
            },
            limits: config.agent.limits(),
            reply_caps: config.agent.reply_caps(),
            config_file: config.source.clone(),
            budget: config.agent.run_budget(),
        },
        Some(Arc::clone(&ctx.store) as Arc<dyn cambot_core::MountRootStore>),
    )
    .with_tenant_models(tenant_models))
}
