//! `cambot sandbox run`, `cambot image build`, and the sandbox lines of `cambot doctor`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use cambot_agent::config::Config;
use cambot_core::GroupStore;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::RunId;
use cambot_protocol::TenantId;
use cambot_sandbox::BackendChoice;
use cambot_sandbox::BwrapBackend;
use cambot_sandbox::DockerBackend;
use cambot_sandbox::MountAllowlist;
use cambot_sandbox::PlanInput;
use cambot_sandbox::SandboxBackend;
use cambot_sandbox::SandboxConfig;
use cambot_sandbox::build_plan;
use clap::Args;
use clap::Subcommand;
use clap::ValueEnum;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum BackendFlag {
    Bwrap,
    Docker,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SandboxCommand {
    /// Run a command in a group's sandbox, under exactly the plan an agent run gets (mounts,
    /// uid, network, limits), streaming its output; exits with its exit code.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Backend (default: the config's `[sandbox] backend`).
    #[arg(long, value_enum)]
    backend: Option<BackendFlag>,
    #[arg(long, default_value = TenantId::DEFAULT)]
    tenant: String,
    #[arg(long, default_value = GroupFolder::MAIN)]
    group: String,
    /// Treat the group as its tenant's main group.
    #[arg(long)]
    main: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Build the Docker backend's image locally (no registry): host tools, their libraries and
    /// the runner.
    Build {
        /// Runner binary to include (default: `[sandbox] runner_path`, when it exists).
        #[arg(long)]
        runner: Option<PathBuf>,
    },
}

/// `[sandbox]` of the config.
pub(crate) fn sandbox_config(config: &Config) -> Result<SandboxConfig> {
    Ok(config.sandbox.clone())
}

async fn backend_for(cfg: &SandboxConfig) -> Result<Arc<dyn SandboxBackend>> {
    Ok(cambot_sandbox::select_backend(cfg).await?)
}

/// A group's plan input, sandbox config and operator allowlist, as a run start reads them:
/// the tenant must be known (only `default` without a database), and the group's container
/// config and its tenant's mount roots come from the store.
pub(crate) async fn group_plan_input(
    config: &Config,
    tenant: &str,
    group: &str,
    main: bool,
    backend: Option<BackendFlag>,
) -> Result<(PlanInput, SandboxConfig, MountAllowlist)> {
    let layout = DataLayout::new(&config.data_dir);
    let tenant = TenantId::new(tenant)?;
    let store = if layout.database().exists() {
        let store = cambot_agent::database::open_store(&layout).await?;
        crate::tenants_cmd::known_tenant(store.as_ref(), tenant.as_str()).await?;
        Some(store)
    } else {
        anyhow::ensure!(
            tenant.is_default(),
            "unknown tenant {tenant}: add it with `cambot tenants add {tenant}` (see `cambot tenants list`)"
        );
        None
    };
    let mut cfg = sandbox_config(config)?;
    if let Some(b) = backend {
        cfg.backend = match b {
            BackendFlag::Bwrap => BackendChoice::Bwrap,
            BackendFlag::Docker => BackendChoice::Docker,
        };
    }
    let group = GroupFolder::new(group)?;
    let run_id = RunId::from_bytes(rand::random());
    let mut input = PlanInput::new(
        layout.clone(),
        tenant.clone(),
        group.clone(),
        run_id.clone(),
    )
    .with_init_from(&cfg);
    input.is_main = main || group.is_main();
    input.timezone = config.timezone.clone();
    // The group's real settings and its tenant's mount roots, as a run start reads them.
    if let Some(store) = &store {
        input.container_config = store
            .registered_groups(&tenant)
            .await?
            .into_iter()
            .find(|g| g.folder == group)
            .and_then(|g| g.container_config);
        input.tenant_mounts =
            cambot_agent::tenant_mounts::tenant_mounts(store.as_ref(), &tenant).await?;
    }
    let allowlist =
        cambot_agent::tenant_mounts::operator_allowlist(&cfg, &layout, config.source.as_deref());
    Ok((input, cfg, allowlist))
}

pub(crate) async fn run(config: &Config, args: RunArgs) -> Result<ExitCode> {
    let (mut input, cfg, allowlist) =
        group_plan_input(config, &args.tenant, &args.group, args.main, args.backend).await?;
    let backend = backend_for(&cfg).await?;
    let layout = input.layout.clone();
    let run_id = input.run_id.clone();
    input.command = Some(args.command);
    let plan = build_plan(input, &cfg, &allowlist)?;
    for (req, why) in &plan.rejected_mounts {
        eprintln!("warning: extra mount {} refused: {why}", req.host_path);
    }
    let run_dir = layout.run_dir(&run_id);
    let mut child = backend.spawn(&plan).await?;
    if child.limits_degraded {
        eprintln!("warning: no cgroup rights here: limits degraded to rlimits");
    }
    let mut stdin = child.take_stdin();
    let mut stdout = std::mem::replace(&mut child.stdout, Box::new(tokio::io::empty()));
    let mut stderr = std::mem::replace(&mut child.stderr, Box::new(tokio::io::empty()));
    let feed = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut stdin).await;
        let _ = stdin.shutdown().await;
    });
    let out =
        tokio::spawn(async move { tokio::io::copy(&mut stdout, &mut tokio::io::stdout()).await });
    let err =
        tokio::spawn(async move { tokio::io::copy(&mut stderr, &mut tokio::io::stderr()).await });
    let hard = plan.timeouts.hard;
    let mut timed_out = false;
    let info = tokio::select! {
        r = child.wait() => r?,
        () = tokio::time::sleep(hard) => {
            timed_out = true;
            child.kill().await?;
            child.wait().await?
        }
        _ = tokio::signal::ctrl_c() => {
            child.kill().await?;
            child.wait().await?
        }
    };
    feed.abort();
    let _ = out.await;
    let _ = err.await;
    // The per-run dir was only a mount point for this command.
    let _ = std::fs::remove_dir(&run_dir);
    if timed_out {
        eprintln!("timed out after {hard:?}");
    }
    if info.oom_killed {
        eprintln!("killed by the memory limit");
    }
    let code = info.code.or(info.signal.map(|s| 128 + s)).unwrap_or(1);
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

pub(crate) async fn image(config: &Config, cmd: ImageCommand) -> Result<ExitCode> {
    let cfg = sandbox_config(config)?;
    let ImageCommand::Build { runner } = cmd;
    let runner = runner.or_else(|| Some(cfg.runner_path()).filter(|p| p.is_file()));
    let backend = DockerBackend::connect(cfg.clone())?;
    let report = cambot_sandbox::docker_image::build_image(&backend, runner.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "built {} ({} files, {} MB rootfs{}): {}",
        report.tag,
        report.files,
        report.rootfs_bytes / (1024 * 1024),
        match &runner {
            Some(r) => format!(", runner {}", r.display()),
            None => ", no runner".to_owned(),
        },
        report.id
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Doctor checks: (ok, what, detail). The sandbox check fails when no backend works (agents
/// would be refused); each backend's line is informational.
pub(crate) async fn doctor_checks(config: &Config) -> Vec<(bool, String, String)> {
    let mut checks = Vec::new();
    let cfg = match sandbox_config(config) {
        Ok(c) => c,
        Err(e) => return vec![(false, "sandbox config".to_owned(), format!("{e:#}"))],
    };
    let bwrap = async {
        let b = BwrapBackend::new(cfg.clone())?;
        b.probe().await
    };
    match bwrap.await {
        Ok(r) => {
            checks.push((
                true,
                "sandbox bwrap".to_owned(),
                format!(
                    "{}{}",
                    r.version,
                    if r.limits_degraded {
                        " (limits degraded: rlimits only, no cgroup rights)"
                    } else {
                        " (cgroup limits enforced)"
                    }
                ),
            ));
            for (k, v) in r.details {
                checks.push((true, format!("sandbox {k}"), v));
            }
        }
        Err(e) => checks.push((
            true,
            "sandbox bwrap".to_owned(),
            format!("unavailable: {e}"),
        )),
    }
    let docker = async {
        let d = DockerBackend::connect(cfg.clone())?;
        d.probe().await
    };
    checks.push(match docker.await {
        Ok(r) => (
            true,
            "sandbox docker".to_owned(),
            format!(
                "{} ({})",
                r.version,
                r.details
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Err(e) => (
            true,
            "sandbox docker".to_owned(),
            format!("unavailable: {e}"),
        ),
    });
    checks.push(match cambot_sandbox::select_backend(&cfg).await {
        Ok(b) => (
            true,
            "sandbox".to_owned(),
            format!("agents run under {}", b.name()),
        ),
        Err(e) => (false, "sandbox".to_owned(), e.to_string()),
    });
    checks
}
