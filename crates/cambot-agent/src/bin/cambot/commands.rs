//! Subcommand implementations.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use anyhow::Result;
use cambot_agent::config::Config;
use cambot_agent::daemon::Daemon;
use cambot_agent::daemon::configured_channels;
use cambot_channels::ChannelEvent;
use cambot_core::GroupRegistration;
use cambot_core::GroupStore;
use cambot_core::Store;
use cambot_core::TenantStore;
use cambot_protocol::ChatJid;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use clap::Subcommand;

use crate::Cli;
use crate::Command;
use crate::logging;
use crate::runtime;
use crate::tenants_cmd::known_tenant;
use crate::tenants_cmd::known_tenant_opt;

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List registered chats.
    List {
        /// Only this tenant (default: all).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Register a chat to a group folder (or update its registration).
    Register {
        #[arg(long)]
        jid: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        folder: String,
        /// Default: "@<assistant_name>".
        #[arg(long)]
        trigger: Option<String>,
        /// Whether messages must start with the trigger (default: yes, except in `main`).
        #[arg(long)]
        requires_trigger: Option<bool>,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Change a registered chat's extra mounts, timeout or trigger (validated as a run start
    /// validates them).
    Update(crate::groups_update_cmd::UpdateArgs),
}

fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::load(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        &|k| std::env::var(k).ok(),
    )?)
}

pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Run => run(config, false).await,
        Command::Chat { tenant } => {
            let mut config = config;
            if let Some(tenant) = tenant {
                chat_tenant(&mut config, &tenant).await?;
            }
            run(config, true).await
        }
        Command::Doctor => {
            let sandbox = crate::sandbox_cmd::doctor_checks(&config).await;
            doctor(&config, &sandbox).await
        }
        Command::Groups(cmd) => groups(&config, cmd).await,
        Command::Tenants(cmd) => crate::tenants_cmd::run(&config, cmd).await,
        Command::Users(cmd) => crate::users_cmd::run(&config, cmd).await,
        Command::Secrets(cmd) => crate::secrets_cmd::run(&config, cmd).await,
        Command::Tasks(cmd) => crate::tasks_cmd::run(&config, cmd).await,
        Command::Workflows(args) => crate::workflows_cmd::run(&config, args).await,
        Command::Models(cmd) => crate::models_cmd::run(&config, cmd),
        Command::Sandbox(crate::sandbox_cmd::SandboxCommand::Run(args)) => {
            crate::sandbox_cmd::run(&config, args).await
        }
        Command::Image(cmd) => crate::sandbox_cmd::image(&config, cmd).await,
        Command::Documents(cmd) => crate::documents_cmd::run(&config, cmd).await,
    }
}

async fn run(mut config: Config, chat: bool) -> Result<ExitCode> {
    if chat {
        config.channels.cli.enabled = true;
    }
    logging::init(&config);
    for warning in &config.warnings {
        tracing::warn!(config = ?config.source, "{warning}");
    }
    let runner = runtime::agent_runner(&config);
    let mut daemon = Daemon::start_with(&config, runner, configured_channels(&config))
        .await
        .context("starting cambot")?;
    tracing::info!(data_dir = %config.data_dir.display(), "cambot is running");
    let events = daemon.take_events();
    let until = async move {
        // In chat mode, end of input means "answer what is pending, then exit".
        let Some(mut events) = events else {
            return std::future::pending().await;
        };
        while let Some(event) = events.recv().await {
            let ChannelEvent::InputClosed { channel } = event;
            if chat && channel == "cli" {
                return;
            }
        }
        std::future::pending().await
    };
    let router = std::sync::Arc::clone(daemon.router());
    let drained = if chat {
        let until = async {
            until.await;
            wait_idle(&router).await;
        };
        runtime::serve(daemon, until).await?
    } else {
        runtime::serve(daemon, until).await?
    };
    Ok(if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Points the terminal at `tenant`'s terminal group after checking the tenant exists and is
/// served. The default tenant keeps its terminal chat as before (`cli:console`, folder `main`).
async fn chat_tenant(config: &mut Config, tenant: &str) -> Result<()> {
    let layout = DataLayout::new(&config.data_dir);
    let store = cambot_agent::database::open_store(&layout).await?;
    let tenant = known_tenant(store.as_ref(), tenant).await?;
    let row = store
        .tenant(&tenant)
        .await?
        .with_context(|| format!("tenant {tenant} was removed meanwhile"))?;
    anyhow::ensure!(
        row.state == cambot_core::TenantState::Active,
        "tenant {tenant} is disabled: nothing would answer (`cambot tenants enable {tenant}`)"
    );
    config.channels.cli.terminal_group = !tenant.is_default();
    config.channels.cli.tenant = tenant;
    Ok(())
}

/// Chat mode after end of input: every message that will be answered has its reply
/// delivered (a live run that is only waiting for follow-ups is closed by the shutdown), or
/// nothing is running or queued any more (a run that gave up).
async fn wait_idle(router: &cambot_agent::router::Router) {
    loop {
        let delivered = router
            .store()
            .pending_outbox(1)
            .await
            .map(|r| r.is_empty())
            .unwrap_or(true);
        let idle = delivered && (router.queue().is_idle() || !router.has_unanswered().await);
        if idle {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn doctor(config: &Config, sandbox: &[(bool, String, String)]) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let mut checks: Vec<(bool, String, String)> = Vec::new();
    // Read before opening the store tightens them: a loose mode is reported once.
    let mode_lines = cambot_agent::at_rest::doctor_lines(&layout);
    let dir_ok = cambot_agent::at_rest::secure_data_dir(&layout).is_ok()
        && tempfile_in(layout.root()).is_ok();
    checks.push((
        dir_ok,
        "data directory".to_owned(),
        if dir_ok {
            format!("{} is writable", layout.root().display())
        } else {
            format!(
                "{} is not writable: choose another with --data-dir or CAMBOT_DATA_DIR",
                layout.root().display()
            )
        },
    ));
    let mut tenant_lines = Vec::new();
    match cambot_agent::database::open_store(&layout).await {
        Ok(store) => {
            // The files SQLite just created (a fresh install) are reported too, once.
            let mut files = mode_lines;
            for line in cambot_agent::at_rest::doctor_lines(&layout) {
                if !files.iter().any(|l| l.1 == line.1) {
                    files.push(line);
                }
            }
            checks.extend(files);
            checks.push((
                true,
                "database".to_owned(),
                format!(
                    "{} (schema v{})",
                    layout.database().display(),
                    store.schema_version().await.unwrap_or(0)
                ),
            ));
            checks.extend(crate::secrets_cmd::doctor_lines(config, store.clone()).await);
            tenant_lines = crate::tenants_cmd::doctor_lines(config, &layout, store.as_ref()).await;
        }
        Err(e) => {
            checks.extend(mode_lines);
            checks.push((false, "database".to_owned(), e.to_string()));
        }
    }
    let mut enabled = Vec::new();
    if config.channels.cli.enabled {
        enabled.push("cli".to_owned());
    }
    if config.channels.web.enabled {
        enabled.push(format!("web on http://{}/", config.channels.web.listen));
    }
    checks.push((
        !enabled.is_empty(),
        "channels".to_owned(),
        if enabled.is_empty() {
            "none enabled: `cambot run` would have nothing to listen on (enable [channels.cli] or [channels.web], or use `cambot chat`)".to_owned()
        } else {
            enabled.join(", ")
        },
    ));
    checks.push((true, "timezone".to_owned(), config.timezone.clone()));
    checks.extend(sandbox.iter().cloned());
    checks.push(match runtime::model_check(config) {
        Ok(detail) => (true, "model".to_owned(), detail),
        Err(e) => (false, "model".to_owned(), format!("{e:#}")),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "cambot {}", env!("CARGO_PKG_VERSION"))?;
    match &config.source {
        Some(p) => writeln!(out, "config: {}", p.display())?,
        None => writeln!(
            out,
            "config: built-in defaults (no --config / CAMBOT_CONFIG)"
        )?,
    }
    for (ok, what, detail) in &checks {
        writeln!(
            out,
            "[{}] {what}: {detail}",
            if *ok { " ok " } else { "FAIL" }
        )?;
    }
    for (ok, what, detail) in &tenant_lines {
        writeln!(
            out,
            "[{}] {what}: {detail}",
            if *ok { " ok " } else { "FAIL" }
        )?;
    }
    let failures = checks.iter().filter(|(ok, _, _)| !ok).count()
        + tenant_lines.iter().filter(|(ok, _, _)| !ok).count();
    if failures == 0 {
        writeln!(out, "all checks passed")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "{failures} check(s) failed (see above)")?;
        Ok(ExitCode::FAILURE)
    }
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".cambot-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

async fn groups(config: &Config, cmd: GroupsCommand) -> Result<ExitCode> {
    let layout = DataLayout::new(&config.data_dir);
    let store = cambot_agent::database::open_store(&layout).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupsCommand::List { tenant } => {
            let tenant = known_tenant_opt(store.as_ref(), tenant.as_deref()).await?;
            let groups = match tenant {
                Some(t) => store.registered_groups(&t).await?,
                None => store.all_registered_groups().await?,
            };
            if groups.is_empty() {
                writeln!(out, "no registered groups")?;
            }
            writeln!(
                out,
                "{:<10} {:<28} {:<16} {:<20} {:<12} TRIGGER REQUIRED",
                "TENANT", "JID", "FOLDER", "NAME", "TRIGGER"
            )?;
            for g in groups {
                let required =
                    cambot_agent::formatting::requires_trigger(g.is_main(), g.requires_trigger);
                writeln!(
                    out,
                    "{:<10} {:<28} {:<16} {:<20} {:<12} {}",
                    g.tenant,
                    g.jid,
                    g.folder,
                    g.name,
                    g.trigger,
                    if required { "yes" } else { "no" }
                )?;
                crate::groups_update_cmd::print_settings(&mut out, &g)?;
            }
        }
        GroupsCommand::Update(args) => {
            drop(out);
            return crate::groups_update_cmd::update(config, args).await;
        }
        GroupsCommand::Register {
            jid,
            name,
            folder,
            trigger,
            requires_trigger,
            tenant,
        } => {
            let reg = GroupRegistration {
                tenant: known_tenant(store.as_ref(), &tenant).await?,
                jid: ChatJid::new(&jid)?,
                name,
                folder: GroupFolder::new(&folder)?,
                trigger: trigger.unwrap_or_else(|| format!("@{}", config.assistant_name)),
                requires_trigger,
                container_config: None,
            };
            let dir = layout.group_dir(&reg.tenant, &reg.folder);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let g = store.register_group(reg).await?;
            writeln!(
                out,
                "registered {} -> {}/{} ({})",
                g.jid,
                g.tenant,
                g.folder,
                dir.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
